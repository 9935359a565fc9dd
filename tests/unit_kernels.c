/* unit_kernels.c - every optimized kernel against its reference twin over random and odd
 * shapes. Tolerances: exact where the arithmetic is the same; FMA or reordered sums (depthwise,
 * global average) within 1e-5 relative + 1e-6 absolute; sigmoid's polynomial exp 1e-6. */
#include <check.h>

#include <stdio.h>

#include "engine.h"
#include "kernels.h"
#include "testmodel.h"
#include "winograd.h"

static const act_params ACTS[] = {
    {ACT_NONE, 0, 0},
    {ACT_RELU, 0, 0},
    {ACT_CLIP, 0.0f, 6.0f},
    {ACT_CLIP, -0.5f, 0.25f},
    {ACT_LEAKY, 0.1f, 0},
    {ACT_SIGMOID, 0, 0},
    {ACT_HARDSIGMOID, 0.2f, 0.5f},
    {ACT_HARDSWISH, 0, 0},
};
#define N_ACTS (int)(sizeof ACTS / sizeof ACTS[0])

static const cvy_kernels *opt(void)
{
    ck_assert_ptr_nonnull(cvy_kernels_avx2());
    return cvy_kernels_avx2();
}

START_TEST(act_and_bias_act_match_reference)
{
    tm_seed(1);
    for (int a = 0; a < N_ACTS; a++) {
        double tol_r = ACTS[a].type == ACT_SIGMOID ? 1e-6 : 0.0;
        for (int trial = 0; trial < 20; trial++) {
            int rows = tm_randint(1, 9), cols = tm_randint(1, 77);
            size_t ld = (size_t)cols + (size_t)tm_randint(0, 5), n = (size_t)rows * ld;
            float *y1 = malloc(n * 4), *y2 = malloc(n * 4), *res = malloc(n * 4), bias[9];
            tm_fill(y1, n);
            for (size_t i = 0; i < n; i++) y1[i] *= 8.0f; /* cover every branch of clip etc */
            memcpy(y2, y1, n * 4);
            tm_fill(res, n);
            tm_fill(bias, 9);
            const float *r = trial % 2 ? res : NULL;
            cvy_kernels_ref()->bias_act(y1, rows, cols, ld, bias, r, ld, &ACTS[a]);
            opt()->bias_act(y2, rows, cols, ld, bias, r, ld, &ACTS[a]);
            ck_assert_msg(tm_err(y2, y1, n, 1e-7, tol_r) <= 1.0, "bias_act %d", a);
            cvy_kernels_ref()->act(res, y1, n, &ACTS[a]);
            opt()->act(res, y2, n, &ACTS[a]);
            ck_assert_msg(tm_err(y2, y1, n, 1e-7, tol_r) <= 1.0, "act %d", a);
            free(y1), free(y2), free(res);
        }
    }
}
END_TEST

/* A random pool/depthwise geometry with odd sizes, every padding side, stride 1..3. */
static conv_geom random_geom(int pool)
{
    conv_geom g = {0};
    g.c_in = g.c_out = tm_randint(1, 19);
    g.h_in = tm_randint(3, 23);
    g.w_in = tm_randint(3, 37);
    g.kh = tm_randint(1, 5);
    g.kw = tm_randint(1, 5);
    g.sh = tm_randint(1, 3);
    g.sw = tm_randint(1, 3);
    g.dh = pool ? 1 : tm_randint(1, 2);
    g.dw = pool ? 1 : tm_randint(1, 2);
    int ekh = (g.kh - 1) * g.dh + 1, ekw = (g.kw - 1) * g.dw + 1;
    g.pt = tm_randint(0, ekh - 1);
    g.pb = tm_randint(0, ekh - 1);
    g.pl = tm_randint(0, ekw - 1);
    g.pr = tm_randint(0, ekw - 1);
    if (g.h_in + g.pt + g.pb < ekh) g.h_in = ekh;
    if (g.w_in + g.pl + g.pr < ekw) g.w_in = ekw;
    g.h_out = (g.h_in + g.pt + g.pb - ekh) / g.sh + 1;
    g.w_out = (g.w_in + g.pl + g.pr - ekw) / g.sw + 1;
    g.group = g.c_in;
    return g;
}

START_TEST(depthwise_matches_reference)
{
    tm_seed(2);
    for (int trial = 0; trial < 300; trial++) {
        conv_geom g = random_geom(0);
        if (trial % 3 == 0)
            g.sw = 2, g.w_out = (g.w_in + g.pl + g.pr - ((g.kw - 1) * g.dw + 1)) / 2 + 1;
        size_t nx = (size_t)g.c_in * g.h_in * g.w_in, ny = (size_t)g.c_out * g.h_out * g.w_out;
        size_t nw = (size_t)g.c_out * g.kh * g.kw;
        float *x = malloc(nx * 4), *w = malloc(nw * 4), *b = malloc((size_t)g.c_out * 4);
        float *y1 = malloc(ny * 4), *y2 = malloc(ny * 4);
        tm_fill(x, nx), tm_fill(w, nw), tm_fill(b, (size_t)g.c_out);
        const act_params *a = &ACTS[trial % N_ACTS];
        size_t xcs = (size_t)g.h_in * g.w_in, ycs = (size_t)g.h_out * g.w_out;
        cvy_kernels_ref()->depthwise(x, xcs, w, b, y1, ycs, &g, 0, g.c_out, a);
        opt()->depthwise(x, xcs, w, b, y2, ycs, &g, 0, g.c_out, a);
        ck_assert_msg(tm_err(y2, y1, ny, 1e-5, 1e-5) <= 1.0, "depthwise trial %d", trial);
        if (cvy_cpu_has(CVY_ISA_AVX512)) {
            cvy_kernels_avx512()->depthwise(x, xcs, w, b, y2, ycs, &g, 0, g.c_out, a);
            ck_assert_msg(tm_err(y2, y1, ny, 1e-5, 1e-5) <= 1.0, "depthwise512 trial %d", trial);
        }
        free(x), free(w), free(b), free(y1), free(y2);
    }
}
END_TEST

/* The shapes the window kernels specialise: 3x3 (and 5x5) depthwise and 3x3 max pooling,
 * dilation 1, stride 1 and 2, pad 0..2 on each side, widths 1..70 (one or several 16-lane
 * vectors per row, and planes small enough for the flat layout), channel ranges not
 * starting at 0, and channels further apart than their planes. */
START_TEST(window_kernels_match_reference)
{
    tm_seed(12);
    for (int trial = 0; trial < 400; trial++) {
        conv_geom g = {0};
        int k = trial % 7 == 6 ? 5 : 3;
        g.c_in = g.c_out = g.group = tm_randint(1, 9);
        g.h_in = tm_randint(1, 40);
        g.w_in = trial % 4 == 0 ? tm_randint(1, 12) : tm_randint(1, 70);
        g.kh = g.kw = k;
        g.sh = tm_randint(1, 2);
        g.sw = tm_randint(1, 2);
        g.dh = g.dw = 1;
        g.pt = tm_randint(0, k - 1);
        g.pb = trial % 2 ? g.pt : tm_randint(0, k - 1);
        g.pl = tm_randint(0, k - 1);
        g.pr = trial % 2 ? g.pl : tm_randint(0, k - 1);
        if (g.h_in + g.pt + g.pb < k) g.h_in = k;
        if (g.w_in + g.pl + g.pr < k) g.w_in = k;
        g.h_out = (g.h_in + g.pt + g.pb - k) / g.sh + 1;
        g.w_out = (g.w_in + g.pl + g.pr - k) / g.sw + 1;
        size_t nx = (size_t)g.c_in * g.h_in * g.w_in, ny = (size_t)g.c_out * g.h_out * g.w_out;
        size_t nw = (size_t)g.c_out * k * k;
        float *x = malloc(nx * 4), *w = malloc(nw * 4), *b = malloc((size_t)g.c_out * 4);
        float *y1 = malloc(ny * 4), *y2 = malloc(ny * 4);
        tm_fill(x, nx), tm_fill(w, nw), tm_fill(b, (size_t)g.c_out);
        for (size_t i = 0; i < nx; i++) x[i] *= 8.0f; /* cover both clip bounds */
        const act_params *a = &ACTS[trial % N_ACTS];
        int c0 = g.c_out > 1 ? tm_randint(0, g.c_out - 1) : 0;
        size_t skip = (size_t)c0 * g.h_out * g.w_out;
        const cvy_kernels *tabs[2] = {opt(),
                                      cvy_cpu_has(CVY_ISA_AVX512) ? cvy_kernels_avx512() : NULL};
        size_t xp = (size_t)g.h_in * g.w_in, yp = (size_t)g.h_out * g.w_out;
        cvy_kernels_ref()->depthwise(x, xp, w, b, y1, yp, &g, c0, g.c_out, a);
        for (int t = 0; t < 2 && tabs[t]; t++) {
            memset(y2, 0, ny * 4);
            tabs[t]->depthwise(x, xp, w, b, y2, yp, &g, c0, g.c_out, a);
            ck_assert_msg(tm_err(y2 + skip, y1 + skip, ny - skip, 1e-5, 1e-5) <= 1.0,
                          "%s depthwise trial %d", tabs[t]->name, trial);
            for (size_t i = 0; i < skip; i++) ck_assert(y2[i] == 0.0f);
        }
        /* channels further apart than their planes (a band of rows in a larger map): the
         * same bits, and nothing written between the planes */
        size_t xcs = xp + (size_t)tm_randint(1, 40), ycs = yp + (size_t)tm_randint(1, 40);
        float *xs = malloc((size_t)g.c_in * xcs * 4), *ys = malloc((size_t)g.c_out * ycs * 4);
        for (int c = 0; c < g.c_in; c++) memcpy(xs + c * xcs, x + c * xp, xp * 4);
        for (int t = 0; t < 3; t++) {
            const cvy_kernels *kt = t == 2 ? cvy_kernels_ref() : tabs[t];
            if (!kt) continue;
            for (size_t i = 0; i < (size_t)g.c_out * ycs; i++) ys[i] = -7.0f;
            kt->depthwise(xs, xcs, w, b, ys, ycs, &g, c0, g.c_out, a);
            for (int c = 0; c < g.c_out; c++)
                for (size_t i = 0; i < ycs; i++) {
                    float want = c >= c0 && i < yp ? y1[c * yp + i] : -7.0f;
                    float got = ys[c * ycs + i];
                    ck_assert_msg(t == 2 ? got == want
                                         : fabsf(got - want) <= 1e-5f + 1e-5f * fabsf(want),
                                  "%s strided depthwise trial %d", kt->name, trial);
                }
        }
        free(xs), free(ys);
        cvy_kernels_ref()->maxpool(x, y1, &g, c0, g.c_out);
        for (int t = 0; t < 2 && tabs[t]; t++) {
            tabs[t]->maxpool(x, y2, &g, c0, g.c_out);
            ck_assert_msg(tm_err(y2 + skip, y1 + skip, ny - skip, 1e-30, 0.0) <= 1.0,
                          "%s maxpool trial %d", tabs[t]->name, trial);
        }
        free(x), free(w), free(b), free(y1), free(y2);
    }
}
END_TEST

/* The phase rows of a stride-2 conv: every row length from 1 to 70 (vector bodies and
 * tails), left padding 0-3, output widths from short of the row to past it, one phase and
 * two; each source exactly n floats long, so a read past it shows under ASan. */
START_TEST(phase_rows_match_reference)
{
    tm_seed(5);
    const cvy_kernels *tabs[2] = {opt(), cvy_cpu_has(CVY_ISA_AVX512) ? cvy_kernels_avx512() : NULL};
    for (int n = 1; n <= 70; n++)
        for (int pl = 0; pl <= 3; pl++)
            for (int wp = (n + 1) / 2 - 1; wp <= (n + pl) / 2 + 2; wp++) {
                if (wp < 1) continue;
                float *src = malloc((size_t)n * 4), *want = malloc((size_t)wp * 8);
                float *got = malloc((size_t)(wp + 1) * 8);
                tm_fill(src, (size_t)n);
                cvy_kernels_ref()->phase_rows(src, n, pl, wp, want, want + wp);
                for (int x = 0; x < wp; x++) { /* the reference against the definition */
                    int i = 2 * x - pl;
                    ck_assert(want[x] == (i >= 0 && i < n ? src[i] : 0.0f));
                    ck_assert(want[wp + x] == (i + 1 >= 0 && i + 1 < n ? src[i + 1] : 0.0f));
                }
                for (int t = 0; t < 2 && tabs[t]; t++)
                    for (int two = 0; two < 2; two++) {
                        for (int x = 0; x < 2 * wp + 2; x++) got[x] = 12345.0f;
                        tabs[t]->phase_rows(src, n, pl, wp, got, two ? got + wp + 1 : NULL);
                        ck_assert_msg(
                            memcmp(got, want, (size_t)wp * 4) == 0 &&
                                (!two || memcmp(got + wp + 1, want + wp, (size_t)wp * 4) == 0),
                            "%s phase rows n %d pl %d wp %d", tabs[t]->name, n, pl, wp);
                        ck_assert_msg(got[wp] == 12345.0f && got[2 * wp + 1] == 12345.0f,
                                      "%s phase rows n %d pl %d wp %d wrote past wp", tabs[t]->name,
                                      n, pl, wp);
                    }
                free(src), free(want), free(got);
            }
}
END_TEST

START_TEST(pools_match_reference)
{
    tm_seed(3);
    for (int trial = 0; trial < 300; trial++) {
        conv_geom g = random_geom(1);
        if (trial % 2 == 0) { /* the common 2x2 / 3x3 stride-2 windows, rows up to 100 wide
                               * (3x3: vectors inside the row load without masks, border ones
                               * with) */
            g.w_in = tm_randint(3, 100);
            g.kh = g.kw = 2 + trial % 4 / 2;
            g.sh = g.sw = 2;
            g.pt = g.pb = g.pl = g.pr = trial % 4 / 2;
            g.h_out = (g.h_in + g.pt + g.pb - g.kh) / 2 + 1;
            g.w_out = (g.w_in + g.pl + g.pr - g.kw) / 2 + 1;
        }
        if (trial % 3 == 0) { /* ceil_mode: a last window may reach past the padding */
            g.h_out = (g.h_in + g.pt + g.pb - g.kh + g.sh - 1) / g.sh + 1;
            g.w_out = (g.w_in + g.pl + g.pr - g.kw + g.sw - 1) / g.sw + 1;
            if ((g.h_out - 1) * g.sh >= g.h_in + g.pt) g.h_out--;
            if ((g.w_out - 1) * g.sw >= g.w_in + g.pl) g.w_out--;
        }
        size_t nx = (size_t)g.c_in * g.h_in * g.w_in, ny = (size_t)g.c_out * g.h_out * g.w_out;
        float *x = malloc(nx * 4), *y1 = malloc(ny * 4), *y2 = malloc(ny * 4);
        tm_fill(x, nx);
        cvy_kernels_ref()->maxpool(x, y1, &g, 0, g.c_out);
        opt()->maxpool(x, y2, &g, 0, g.c_out);
        ck_assert_msg(memcmp(y1, y2, ny * 4) == 0, "maxpool trial %d", trial);
        if (cvy_cpu_has(CVY_ISA_AVX512)) {
            memset(y2, 0, ny * 4);
            cvy_kernels_avx512()->maxpool(x, y2, &g, 0, g.c_out);
            ck_assert_msg(memcmp(y1, y2, ny * 4) == 0, "maxpool512 trial %d", trial);
        }
        cvy_kernels_ref()->avgpool(x, y1, &g, 0, g.c_out, trial % 2);
        opt()->avgpool(x, y2, &g, 0, g.c_out, trial % 2);
        ck_assert_msg(tm_err(y2, y1, ny, 1e-6, 1e-5) <= 1.0, "avgpool trial %d", trial);
        if (cvy_cpu_has(CVY_ISA_AVX512)) { /* same sums in the same order: same bits */
            memset(y2, 0, ny * 4);
            cvy_kernels_avx512()->avgpool(x, y2, &g, 0, g.c_out, trial % 2);
            ck_assert_msg(memcmp(y1, y2, ny * 4) == 0, "avgpool512 trial %d", trial);
        }
        free(x), free(y1), free(y2);
    }
}
END_TEST

START_TEST(avgpool_count_include_pad_semantics)
{
    /* 1x3x3 input of ones, kernel 3, pad 1, stride 1: corners see 4 cells of 9 */
    conv_geom g = {.c_in = 1,
                   .c_out = 1,
                   .h_in = 3,
                   .w_in = 3,
                   .h_out = 3,
                   .w_out = 3,
                   .kh = 3,
                   .kw = 3,
                   .sh = 1,
                   .sw = 1,
                   .pt = 1,
                   .pl = 1,
                   .pb = 1,
                   .pr = 1,
                   .dh = 1,
                   .dw = 1,
                   .group = 1};
    float x[9], y[9];
    for (int i = 0; i < 9; i++) x[i] = 1.0f;
    cvy_kernels_ref()->avgpool(x, y, &g, 0, 1, 1);
    ck_assert_float_eq_tol(y[0], 4.0f / 9.0f, 1e-6);
    ck_assert_float_eq_tol(y[4], 1.0f, 1e-6);
    cvy_kernels_ref()->avgpool(x, y, &g, 0, 1, 0);
    ck_assert_float_eq_tol(y[0], 1.0f, 1e-6);
    /* ceil_mode window past the padding: 1x4 row, kernel 3 stride 2 no pad -> 2 outputs, the
     * second covers cells 2..4 of which only 2 and 3 exist and no padding: divisor 2 */
    conv_geom c = {.c_in = 1,
                   .c_out = 1,
                   .h_in = 1,
                   .w_in = 4,
                   .h_out = 1,
                   .w_out = 2,
                   .kh = 1,
                   .kw = 3,
                   .sh = 1,
                   .sw = 2,
                   .dh = 1,
                   .dw = 1,
                   .group = 1};
    float r[4] = {1, 2, 3, 5}, o[2];
    cvy_kernels_ref()->avgpool(r, o, &c, 0, 1, 1);
    ck_assert_float_eq_tol(o[0], 2.0f, 1e-6);
    ck_assert_float_eq_tol(o[1], 4.0f, 1e-6);
}
END_TEST

START_TEST(gap_and_binary_match_reference)
{
    tm_seed(4);
    for (int trial = 0; trial < 100; trial++) {
        int c = tm_randint(1, 40), hw = tm_randint(1, 100);
        size_t n = (size_t)c * hw;
        float *a = malloc(n * 4), *b = malloc(n * 4), *y1 = malloc(n * 4), *y2 = malloc(n * 4);
        tm_fill(a, n), tm_fill(b, n);
        cvy_kernels_ref()->gap(a, y1, c, hw);
        opt()->gap(a, y2, c, hw);
        ck_assert(tm_err(y2, y1, (size_t)c, 1e-6, 1e-5) <= 1.0);
        for (int mul = 0; mul < 2; mul++) {
            cvy_kernels_ref()->binary(a, b, y1, n, mul);
            opt()->binary(a, b, y2, n, mul);
            ck_assert(memcmp(y1, y2, n * 4) == 0);
            cvy_kernels_ref()->binary_chan(a, b, y1, c, hw, mul);
            opt()->binary_chan(a, b, y2, c, hw, mul);
            ck_assert(memcmp(y1, y2, n * 4) == 0);
        }
        free(a), free(b), free(y1), free(y2);
    }
}
END_TEST

START_TEST(im2col_chunks_cover_reference_conv)
{
    /* conv through im2col chunks + naive matmul equals the direct reference conv */
    tm_seed(5);
    for (int trial = 0; trial < 60; trial++) {
        conv_geom g = random_geom(0);
        if (trial % 2) { /* wide rows, so the vector copies run */
            g.w_in = tm_randint(20, 70);
            g.w_out = (g.w_in + g.pl + g.pr - ((g.kw - 1) * g.dw + 1)) / g.sw + 1;
        }
        g.group = 1;
        g.c_out = tm_randint(1, 7);
        int k = g.c_in * g.kh * g.kw, cols = g.h_out * g.w_out;
        float *x = malloc((size_t)g.c_in * g.h_in * g.w_in * 4),
              *w = malloc((size_t)g.c_out * k * 4);
        float *y1 = malloc((size_t)g.c_out * cols * 4), *y2 = calloc((size_t)g.c_out * cols, 4);
        float *col = malloc((size_t)k * cols * 4);
        tm_fill(x, (size_t)g.c_in * g.h_in * g.w_in), tm_fill(w, (size_t)g.c_out * k);
        act_params none = {ACT_NONE, 0, 0};
        cvy_conv_ref(x, w, NULL, y1, &g, &none);
        int chunk = tm_randint(1, cols);
        for (int c0 = 0; c0 < cols; c0 += chunk) {
            int c1 = c0 + chunk < cols ? c0 + chunk : cols;
            size_t ncol = (size_t)k * (c1 - c0);
            cvy_im2col(x, col, &g, g.c_in, c0, c1);
            float *col2 = malloc(ncol * 4 + 4);
            opt()->im2col(x, col2, &g, g.c_in, c0, c1);
            ck_assert_mem_eq(col, col2, ncol * 4);
            free(col2);
            for (int oc = 0; oc < g.c_out; oc++)
                for (int j = 0; j < c1 - c0; j++) {
                    float acc = 0.0f;
                    for (int q = 0; q < k; q++)
                        acc += w[(size_t)oc * k + q] * col[(size_t)q * (c1 - c0) + j];
                    y2[(size_t)oc * cols + c0 + j] = acc;
                }
        }
        ck_assert_msg(tm_err(y2, y1, (size_t)g.c_out * cols, 1e-5, 1e-5) <= 1.0, "trial %d", trial);
        free(x), free(w), free(y1), free(y2), free(col);
    }
}
END_TEST

START_TEST(fc_matches_reference_and_ignores_batch)
{
    tm_seed(6);
    const cvy_kernels *tables[2] = {opt(),
                                    cvy_cpu_has(CVY_ISA_AVX512) ? cvy_kernels_avx512() : opt()};
    for (int trial = 0; trial < 120; trial++) {
        const cvy_kernels *kt = tables[trial % 2];
        int n = tm_randint(1, trial % 3 ? 9 : 70), k = tm_randint(1, 300), nout = tm_randint(1, 70);
        int o0 = tm_randint(0, nout - 1), o1 = tm_randint(o0 + 1, nout);
        float *x = malloc((size_t)n * k * 4), *w = malloc((size_t)nout * k * 4);
        float *bias = malloc((size_t)nout * 4);
        float *y1 = calloc((size_t)n * nout, 4), *y2 = calloc((size_t)n * nout, 4);
        float *y3 = calloc((size_t)nout, 4);
        tm_fill(x, (size_t)n * k), tm_fill(w, (size_t)nout * k), tm_fill(bias, (size_t)nout);
        const act_params *a = &ACTS[trial % N_ACTS];
        float *wk = w; /* the weights in the kernel's layout */
        if (kt->fc_pack) {
            wk = malloc(kt->fc_packed_size(nout, k) * 4);
            kt->fc_pack(w, nout, k, wk);
        }
        cvy_kernels_ref()->fc(x, n, k, w, o0, o1, bias, y1, (size_t)nout, a);
        kt->fc(x, n, k, wk, o0, o1, bias, y2, (size_t)nout, a);
        ck_assert_msg(tm_err(y2, y1, (size_t)n * nout, 1e-5, 1e-5) <= 1.0, "trial %d", trial);
        for (int i = 0; i < n * nout; i++) /* outputs outside [o0, o1) untouched */
            if (i % nout < o0 || i % nout >= o1) ck_assert(y2[i] == 0.0f);
        for (int i = 0; i < n; i++) { /* one image alone gives the same bits */
            kt->fc(x + (size_t)i * k, 1, k, wk, o0, o1, bias, y3, (size_t)nout, a);
            ck_assert_mem_eq(y3 + o0, y2 + (size_t)i * nout + o0, (size_t)(o1 - o0) * 4);
        }
        if (wk != w) free(wk);
        free(x), free(w), free(bias), free(y1), free(y2), free(y3);
    }
}
END_TEST

/* The AVX-512 GEMM against a naive product, over odd m, n, k (k up to 800: several packed k
 * blocks, partial sums kept in the output between them), with bias and every activation,
 * each with and without a residual, on plain and padded (period) columns; computing the
 * columns in pieces gives the same bits as all at once. */
START_TEST(gemm_avx512_matches_reference)
{
    if (!cvy_cpu_has(CVY_ISA_AVX512)) {
        fprintf(stderr, "gemm_avx512_matches_reference: no AVX-512 on this CPU, not run\n");
        return;
    }
    const cvy_kernels *k5 = cvy_kernels_avx512();
    const cvy_gemm *gk = k5->gemm;
    ck_assert_ptr_nonnull(gk);
    tm_seed(8);
    for (int trial = 0; trial < 80; trial++) {
        int m = tm_randint(1, 40), k = tm_randint(1, trial % 4 ? 300 : 800), n = tm_randint(1, 100);
        size_t ldb = (size_t)n + (size_t)tm_randint(0, 9), ldc = (size_t)n + 3;
        float *a = malloc((size_t)m * k * 4), *b = malloc((size_t)k * ldb * 4);
        float *bias = malloc((size_t)m * 4), *res = malloc((size_t)m * ldc * 4);
        float *p = malloc(gk->packed_size(m, k) * 4);
        float *c1 = calloc((size_t)m * ldc, 4), *c2 = calloc((size_t)m * ldc, 4);
        float *want = calloc((size_t)m * ldc, 4);
        tm_fill(a, (size_t)m * k), tm_fill(b, (size_t)k * ldb), tm_fill(bias, (size_t)m);
        tm_fill(res, (size_t)m * ldc);
        const act_params *act = &ACTS[trial % N_ACTS];
        const float *r = (trial / N_ACTS) % 2 ? res : NULL; /* every activation with and without */
        for (int i = 0; i < m; i++)
            for (int j = 0; j < n; j++) {
                double s = 0;
                for (int q = 0; q < k; q++)
                    s += (double)a[(size_t)i * k + q] * b[(size_t)q * ldb + j];
                float v = (float)s + bias[i];
                if (r) v += r[(size_t)i * ldc + j];
                want[(size_t)i * ldc + j] = cvy_act1(v, act);
            }
        gk->pack(a, m, k, p);
        gemm_b bs = {.b = b, .ldb = ldb};
        gk->run(p, m, k, &bs, 0, n, c1, ldc, bias, r, ldc, act);
        ck_assert_msg(tm_err(c1, want, (size_t)m * ldc, 1e-5, 1e-4) <= 1.0, "trial %d", trial);
        int split = tm_randint(1, n); /* the same columns in two calls */
        gk->run(p, m, k, &bs, 0, split, c2, ldc, bias, r, ldc, act);
        if (split < n) gk->run(p, m, k, &bs, split, n - split, c2, ldc, bias, r, ldc, act);
        ck_assert_mem_eq(c1, c2, (size_t)m * ldc * 4);
        /* virtual columns: every third column of B is padding, dropped from the output */
        int period = 3, nv = (n + 1) / 2 * 3 / 2 + 1, valid = 2;
        if (nv * 1 > (int)ldb) nv = (int)ldb;
        int32_t *off = malloc((size_t)k * sizeof(int32_t));
        for (int q = 0; q < k; q++) off[q] = (int32_t)((size_t)q * ldb);
        gemm_b vb = {.b = b, .off = off, .period = period, .valid = valid};
        memset(c2, 0, (size_t)m * ldc * 4);
        gk->run(p, m, k, &vb, 0, nv, c2, ldc, bias, r, ldc, act);
        for (int i = 0; i < m; i++)
            for (int jv = 0; jv < nv; jv++) {
                if (jv % period >= valid) continue;
                size_t o = (size_t)(jv / period) * valid + (size_t)(jv % period);
                double s = 0;
                for (int q = 0; q < k; q++)
                    s += (double)a[(size_t)i * k + q] * b[(size_t)q * ldb + jv];
                float v = (float)s + bias[i];
                if (r) v += r[(size_t)i * ldc + o];
                v = cvy_act1(v, act);
                ck_assert_msg(fabs(c2[(size_t)i * ldc + o] - v) <= 1e-5 + 1e-4 * fabs(v),
                              "virtual trial %d", trial);
            }
        free(off);
        free(a), free(b), free(bias), free(res), free(p), free(c1), free(c2), free(want);
    }
}
END_TEST

/* The few-column GEMM (output channels in the lanes) gives the same bits as the columns-in-
 * lanes GEMM: plain and padded (period) B, bias, residual, every activation, m tails of
 * 1-47 rows past the 48-row passes (49-64 rows: two passes of 32), k across several 128-row
 * blocks, column sub-ranges. */
START_TEST(gemm_few_matches_gemm)
{
    if (!cvy_cpu_has(CVY_ISA_AVX512)) {
        fprintf(stderr, "gemm_few_matches_gemm: no AVX-512 on this CPU, not run\n");
        return;
    }
    const cvy_gemm *gl = cvy_kernels_avx512()->gemm, *gf = cvy_kernels_avx512()->gemm_few;
    ck_assert_ptr_nonnull(gf);
    tm_seed(9);
    for (int trial = 0; trial < 120; trial++) {
        int m = tm_randint(1, 150), k = tm_randint(1, trial % 3 ? 200 : 700);
        int period = trial % 2 ? tm_randint(2, 12) : 0, valid = period ? tm_randint(1, period) : 0;
        int n = tm_randint(1, gf->max_n), j0 = tm_randint(0, 20);
        int ncols = period ? (j0 + n) / period * valid + valid : j0 + n; /* outputs reached */
        size_t ldb = (size_t)(j0 + n) + (size_t)tm_randint(0, 5), ldc = (size_t)ncols + 2;
        float *a = malloc((size_t)m * k * 4), *b = malloc((size_t)k * ldb * 4);
        float *bias = malloc((size_t)m * 4), *res = malloc((size_t)m * ldc * 4);
        float *pl = malloc(gl->packed_size(m, k) * 4), *pf = malloc(gf->packed_size(m, k) * 4);
        float *c1 = calloc((size_t)m * ldc, 4), *c2 = calloc((size_t)m * ldc, 4);
        int32_t *off = malloc((size_t)k * sizeof(int32_t));
        tm_fill(a, (size_t)m * k), tm_fill(b, (size_t)k * ldb), tm_fill(bias, (size_t)m);
        tm_fill(res, (size_t)m * ldc);
        for (int q = 0; q < k; q++) off[q] = (int32_t)((size_t)q * ldb);
        gl->pack(a, m, k, pl);
        gf->pack(a, m, k, pf);
        const act_params *act = &ACTS[trial % N_ACTS];
        const float *r = trial % 4 < 2 ? res : NULL;
        const float *bi = trial % 5 ? bias : NULL;
        gemm_b bs = period ? (gemm_b){.b = b, .off = off, .period = period, .valid = valid}
                           : (gemm_b){.b = b, .ldb = ldb};
        gl->run(pl, m, k, &bs, j0, n, c1, ldc, bi, r, ldc, act);
        gf->run(pf, m, k, &bs, j0, n, c2, ldc, bi, r, ldc, act);
        ck_assert_msg(memcmp(c1, c2, (size_t)m * ldc * 4) == 0,
                      "trial %d: m %d k %d n %d j0 %d period %d valid %d", trial, m, k, n, j0,
                      period, valid);
        free(a), free(b), free(bias), free(res), free(pl), free(pf), free(c1), free(c2), free(off);
    }
}
END_TEST

/* The vectorized Winograd input transform gives the reference's bits (same operations). */
START_TEST(winograd_input_matches_reference)
{
    if (!cvy_cpu_has(CVY_ISA_AVX512)) {
        fprintf(stderr, "winograd_input_matches_reference: no AVX-512 on this CPU, not run\n");
        return;
    }
    tm_seed(9);
    for (int trial = 0; trial < 40; trial++) {
        int cin = tm_randint(1, 5), h = tm_randint(3, 30), w = tm_randint(3, 30);
        int pt = tm_randint(0, 2), pl = tm_randint(0, 2);
        int tw = (w + pl + tm_randint(0, 2) - 2 + 3) / 4, th = (h + pt - 2 + 3) / 4;
        if (tw < 1) tw = 1;
        if (th < 1) th = 1;
        int tiles = tw * th, t0 = tm_randint(0, tiles - 1), t1 = tm_randint(t0 + 1, tiles);
        /* positions cin * ldv apart or further (wino_pos_stride pads them) */
        size_t ldv = 40, vps = (size_t)cin * ldv + (size_t)tm_randint(0, 20), nv = 36 * vps;
        float *x = malloc((size_t)cin * h * w * 4), *v1 = calloc(nv, 4), *v2 = calloc(nv, 4);
        tm_fill(x, (size_t)cin * h * w);
        wino_input_tiles(x, cin, h, w, pt, pl, tw, t0, t1, v1, ldv, vps);
        cvy_kernels_avx512()->wino_input(x, cin, h, w, pt, pl, tw, t0, t1, v2, ldv, vps);
        ck_assert_mem_eq(v1, v2, nv * 4);
        free(x), free(v1), free(v2);
    }
}
END_TEST

/* The vectorized Winograd output transform against the reference, with residual and every
 * activation (exact but for the sigmoid's polynomial). */
START_TEST(winograd_output_matches_reference)
{
    if (!cvy_cpu_has(CVY_ISA_AVX512)) {
        fprintf(stderr, "winograd_output_matches_reference: no AVX-512 on this CPU, not run\n");
        return;
    }
    tm_seed(10);
    for (int trial = 0; trial < 40; trial++) {
        int h = tm_randint(1, 30), w = tm_randint(1, 30), tw = (w + 3) / 4, th = (h + 3) / 4;
        int cout = tm_randint(1, 9), o0 = tm_randint(0, cout - 1), o1 = tm_randint(o0 + 1, cout);
        int tiles = tw * th, t0 = tm_randint(0, tiles - 1), t1 = tm_randint(t0 + 1, tiles);
        size_t ldm = 40, mps = (size_t)(o1 - o0) * ldm + (size_t)tm_randint(0, 20), nm = 36 * mps,
               ny = (size_t)cout * h * w;
        float *m = malloc(nm * 4), *res = malloc(ny * 4), *bias = malloc((size_t)cout * 4);
        float *y1 = calloc(ny, 4), *y2 = calloc(ny, 4);
        tm_fill(m, nm), tm_fill(res, ny), tm_fill(bias, (size_t)cout);
        const act_params *a = &ACTS[trial % N_ACTS];
        const float *r = trial % 2 ? res : NULL;
        wino_output_tiles(m, mps, ldm, o0, o1, t0, t1, tw, h, w, bias, r, y1, a);
        cvy_kernels_avx512()->wino_output(m, mps, ldm, o0, o1, t0, t1, tw, h, w, bias, r, y2, a);
        ck_assert_msg(tm_err(y2, y1, ny, 1e-7, a->type == ACT_SIGMOID ? 1e-6 : 0.0) <= 1.0,
                      "trial %d", trial);
        free(m), free(res), free(bias), free(y1), free(y2);
    }
}
END_TEST

Suite *kernels_suite(void)
{
    Suite *s = suite_create("kernels");
    TCase *tc = tcase_create("vs-reference");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, act_and_bias_act_match_reference);
    tcase_add_test(tc, depthwise_matches_reference);
    tcase_add_test(tc, window_kernels_match_reference);
    tcase_add_test(tc, pools_match_reference);
    tcase_add_test(tc, phase_rows_match_reference);
    tcase_add_test(tc, avgpool_count_include_pad_semantics);
    tcase_add_test(tc, gap_and_binary_match_reference);
    tcase_add_test(tc, im2col_chunks_cover_reference_conv);
    tcase_add_test(tc, fc_matches_reference_and_ignores_batch);
    tcase_add_test(tc, gemm_avx512_matches_reference);
    tcase_add_test(tc, gemm_few_matches_gemm);
    tcase_add_test(tc, winograd_input_matches_reference);
    tcase_add_test(tc, winograd_output_matches_reference);
    suite_add_tcase(s, tc);
    return s;
}
