/* unit_engine.c - whole models through the public API: the optimized engine against the
 * reference engine (CVY_ISA_REF: direct loops, no BLAS) on every op over random and odd shapes;
 * batch and thread independence; batch-norm folding and residual fusion against hand-written
 * maths; contexts, queries and top-k. Tolerance against the reference: 1e-4 relative + 1e-5
 * absolute (sums of up to a few thousand products in a different order, with FMA). */
#include <check.h>
#include <stdio.h>

#include "engine.h"
#include "kernels.h"
#include "plan.h"
#include "pool.h"
#include "winograd.h"
#include "testmodel.h"

/* ref: direct loops; opt: the best ISA (AVX-512 here); avx2: the AVX2 + OpenBLAS path, forced
 * so every build tests it too. */
static cvy_engine *eng_ref, *eng_opt, *eng_opt1, *eng_avx2, *eng_avx2_1;

static void setup(void)
{
    eng_ref = tm_engine(CVY_ISA_REF, 1);
    eng_opt = tm_engine(CVY_ISA_AUTO, 2);
    eng_opt1 = tm_engine(CVY_ISA_AUTO, 1);
    eng_avx2 = tm_engine(CVY_ISA_AVX2, 2);
    eng_avx2_1 = tm_engine(CVY_ISA_AVX2, 1);
    ck_assert_str_eq(cvy_engine_isa(eng_avx2), "avx2");
}

static void teardown(void)
{
    cvy_engine_destroy(eng_ref);
    cvy_engine_destroy(eng_opt);
    cvy_engine_destroy(eng_opt1);
    cvy_engine_destroy(eng_avx2);
    cvy_engine_destroy(eng_avx2_1);
}

/* Builds the same model three times (same seed), runs it on the reference, the best and the
 * AVX2 engine with batch n, and checks both optimized outputs against the reference.
 * build() returns the output tensor. */
typedef uint32_t (*builder_fn)(fmt_model *m, int variant);

static void compare(builder_fn build, int variant, int n, const char *what)
{
    cvy_engine *engines[3] = {eng_ref, eng_opt, eng_avx2};
    cvy_model *models[3];
    for (int e = 0; e < 3; e++) {
        fmt_model m;
        tm_seed(1000 + (unsigned)variant);
        uint32_t out = build(&m, variant);
        models[e] = tm_load(engines[e], &m, out);
    }
    size_t in = cvy_model_input_size(models[0]) * (size_t)n;
    size_t on = cvy_model_output_size(models[0]) * (size_t)n;
    float *x = malloc(in * sizeof(float));
    tm_fill(x, in);
    float *want = tm_run(models[0], n, x);
    for (int e = 1; e < 3; e++) {
        ck_assert_uint_eq(on, cvy_model_output_size(models[e]) * (size_t)n);
        float *got = tm_run(models[e], n, x);
        double err = tm_err(got, want, on, 1e-5, 1e-4);
        ck_assert_msg(err <= 1.0, "%s variant %d batch %d on %s: error %.3g of tolerance", what,
                      variant, n, cvy_engine_isa(engines[e]), err);
        free(got);
    }
    free(x), free(want);
    for (int e = 0; e < 3; e++) cvy_model_free(models[e]);
}

/* Conv with random geometry: odd channel counts, every padding side, stride 1-2, dilation
 * 1-2, groups (plain, grouped, depthwise, depthwise multiplier 2), optional bias and act. */
static uint32_t build_conv(fmt_model *m, int v)
{
    int cin = tm_randint(1, 13), h = tm_randint(5, 19), w = tm_randint(5, 23);
    int kind = v % 4, group = 1;
    if (kind == 1 && cin % 2 == 0) group = 2;
    if (kind == 2) group = cin;
    if (kind == 3) group = cin;
    int cout = kind == 2 ? cin : kind == 3 ? 2 * cin : group * tm_randint(1, 11);
    int kh = tm_randint(1, 5), kw = tm_randint(1, 5), dh = tm_randint(1, 2), dw = tm_randint(1, 2);
    int ekh = (kh - 1) * dh + 1, ekw = (kw - 1) * dw + 1;
    if (h < ekh) h = ekh;
    if (w < ekw) w = ekw;
    uint32_t x = tm_begin(m, cin, h, w);
    int wd[4] = {cout, cin / group, kh, kw}, bd[1] = {cout};
    uint32_t in[3] = {x, tm_weight(m, 4, wd, 0.5f), tm_weight(m, 1, bd, 0.5f)};
    int32_t ia[16] = {kh,
                      kw,
                      tm_randint(1, 2),
                      tm_randint(1, 2),
                      tm_randint(0, ekh - 1),
                      tm_randint(0, ekw - 1),
                      tm_randint(0, ekh - 1),
                      tm_randint(0, ekw - 1),
                      dh,
                      dw,
                      group};
    uint32_t y = tm_node(m, OP_CONV, v % 3 ? 3 : 2, in, ia, NULL, "conv");
    static const uint32_t acts[] = {OP_RELU,    OP_CLIP,        OP_LEAKYRELU,
                                    OP_SIGMOID, OP_HARDSIGMOID, OP_HARDSWISH};
    if (v % 5 != 0) {
        float fa[8] = {0.0f, 6.0f};
        uint32_t op = acts[v % 6];
        if (op == OP_LEAKYRELU) fa[0] = 0.1f;
        if (op == OP_HARDSIGMOID) fa[0] = 0.2f, fa[1] = 0.5f;
        y = tm_node(m, op, 1, &y, NULL, fa, "act");
    }
    return y;
}

/* Stride-2 convs as the AVX-512 engine runs them over phase planes: ResNet-like stems (7x7
 * or 3x3 on 3 channels, large maps), 3x3 and 1x1 downsamplers, and small maps with k >= 1024
 * whose output channels are split (the few-column GEMM); odd sizes and every padding. Stems
 * up to 130 wide have rows of up to 65 outputs, so some 48-column strips of the GEMM lie
 * inside a row (plain stores) and others span a padding column (packed stores). */
static uint32_t build_strided(fmt_model *m, int v)
{
    static const int ks[] = {7, 3, 3, 1, 3};
    int kind = v % 5, k = ks[kind], pad = kind == 3 ? 0 : tm_randint(0, k / 2 + (v % 2));
    int cin = kind < 2 ? 3 : kind == 4 ? 128 : tm_randint(5, 40);
    int cout = kind == 4 ? tm_randint(64, 72) : tm_randint(4, 40);
    int h = kind == 4 ? tm_randint(9, 14) : tm_randint(k, kind < 2 ? 60 : 30);
    int w = kind == 4 ? tm_randint(9, 14) : tm_randint(k, kind < 2 ? 130 : 30);
    uint32_t x = tm_begin(m, cin, h, w);
    int wd[4] = {cout, cin, k, k}, bd[1] = {cout};
    uint32_t in[3] = {x, tm_weight(m, 4, wd, 0.3f), tm_weight(m, 1, bd, 0.5f)};
    int32_t ia[16] = {k, k, 2, 2, pad, pad, tm_randint(0, pad), tm_randint(0, pad), 1, 1, 1};
    uint32_t y = tm_node(m, OP_CONV, 3, in, ia, NULL, "conv");
    return v % 2 ? tm_node(m, OP_RELU, 1, &y, NULL, NULL, "relu") : y;
}

static uint32_t build_pool(fmt_model *m, int v)
{
    /* every fourth: a max pool of stride 2 over 2 or 3 columns (their own AVX-512 loop),
     * up to 35 outputs a row */
    int s2 = v % 4 == 2;
    int c = tm_randint(1, 17), h = tm_randint(4, 20), w = tm_randint(4, s2 ? 70 : 30);
    uint32_t x = tm_begin(m, c, h, w);
    int k = s2 ? tm_randint(2, 3) : tm_randint(1, 4), s = s2 ? 2 : tm_randint(1, 3);
    int kw = s2 ? tm_randint(2, 3) : k + v % 2;
    int32_t ia[16] = {k,
                      kw,
                      s,
                      s,
                      tm_randint(0, k - 1),
                      tm_randint(0, kw - 1),
                      tm_randint(0, k - 1),
                      tm_randint(0, kw - 1),
                      1,
                      1,
                      0,
                      v % 3 == 0,
                      v % 2};
    return tm_node(m, v % 2 ? OP_AVGPOOL : OP_MAXPOOL, 1, &x, ia, NULL, "pool");
}

/* A conv (3x3, 5x5 or 7x7, stride 1 or 2, padded or not) with bias and relu, then a max pool
 * of stride 2 over 2 or 3 rows (padded or not, ceil_mode or not): the planner fuses the pool
 * into the conv on the own GEMM (v % 4 == 3: 16-40 rows and 48+ channels, so several bands
 * with rows shared between them), which must not change a bit. */
static uint32_t build_conv_pool(fmt_model *m, int v)
{
    int tall = v % 4 == 3, cin = tm_randint(1, 8),
        cout = tall ? tm_randint(48, 64) : tm_randint(1, 20);
    int h = tall ? tm_randint(24, 40) : tm_randint(16, 24), w = tm_randint(16, 40);
    uint32_t x = tm_begin(m, cin, h, w);
    int k = 3 + 2 * (v % 3), s = 1 + (v / 3) % 2, p = v % 5 == 0 ? 0 : k / 2;
    int32_t ck[16] = {k, k, s, s, p, p, p, p, 1, 1, 1};
    int wd[4] = {cout, cin, k, k}, bd[1] = {cout};
    uint32_t a[3] = {x, tm_weight(m, 4, wd, 0.3f), tm_weight(m, 1, bd, 0.5f)};
    uint32_t y = tm_node(m, OP_CONV, 3, a, ck, NULL, "conv");
    y = tm_node(m, OP_RELU, 1, &y, NULL, NULL, "relu");
    int pk = 2 + v % 2, pp = (v / 2) % 2 && pk == 3;
    int32_t pool[16] = {pk, pk, 2, 2, pp, pp, pp, pp, 1, 1, 0, (v / 4) % 2};
    return tm_node(m, OP_MAXPOOL, 1, &y, pool, NULL, "pool");
}

/* GlobalAveragePool -> Flatten -> Gemm (both transB) -> act -> Softmax. */
static uint32_t build_head(fmt_model *m, int v)
{
    int c = tm_randint(1, 70), h = tm_randint(1, 9), w = tm_randint(1, 9);
    uint32_t x = tm_begin(m, c, h, w);
    uint32_t g = tm_node(m, OP_GLOBALAVGPOOL, 1, &x, NULL, NULL, "gap");
    uint32_t f = tm_node(m, OP_FLATTEN, 1, &g, NULL, NULL, "flat");
    int nout = tm_randint(1, 150), tb = v % 2;
    int wd[2] = {tb ? nout : c, tb ? c : nout}, bd[1] = {nout};
    uint32_t in[3] = {f, tm_weight(m, 2, wd, 0.5f), tm_weight(m, 1, bd, 0.5f)};
    int32_t ia[16] = {tb};
    float fa[8] = {0.7f, 1.3f};
    uint32_t y = tm_node(m, OP_GEMM, 3, in, ia, fa, "fc");
    y = tm_node(m, OP_RELU, 1, &y, NULL, NULL, "relu");
    int32_t sm[16] = {-1};
    return tm_node(m, OP_SOFTMAX, 1, &y, sm, NULL, "softmax");
}

/* Add/Mul with every broadcast form: same shape, per-channel constant, per-image channel
 * vector (squeeze-excite), scalar, row broadcast (general path). */
static uint32_t build_binary(fmt_model *m, int v)
{
    int c = tm_randint(1, 12), h = tm_randint(1, 9), w = tm_randint(1, 11);
    uint32_t x = tm_begin(m, c, h, w);
    uint32_t op = v % 2 ? OP_MUL : OP_ADD, other;
    switch (v % 5) {
    case 0: other = tm_node(m, OP_SIGMOID, 1, &x, NULL, NULL, "s"); break;
    case 1: {
        int d[4] = {1, c, 1, 1};
        other = tm_weight(m, 4, d, 1.0f);
        break;
    }
    case 2: {
        uint32_t g = tm_node(m, OP_GLOBALAVGPOOL, 1, &x, NULL, NULL, "gap");
        other = tm_node(m, OP_HARDSIGMOID, 1, &g, NULL, (float[8]){0.2f, 0.5f}, "hs");
        break;
    }
    case 3: {
        int d[1] = {1};
        other = tm_weight(m, 1, d, 1.0f);
        break;
    }
    default: {
        int d[1] = {w};
        other = tm_weight(m, 1, d, 1.0f);
        break;
    }
    }
    uint32_t in[2] = {v % 3 ? x : other, v % 3 ? other : x};
    return tm_node(m, op, 2, in, NULL, NULL, "bin");
}

/* Concat of two branches along channels, Reshape and Identity views in between. */
static uint32_t build_concat(fmt_model *m, int v)
{
    int c = tm_randint(1, 9), h = tm_randint(2, 8), w = tm_randint(2, 8);
    uint32_t x = tm_begin(m, c, h, w);
    uint32_t a = tm_node(m, OP_RELU, 1, &x, NULL, NULL, "a");
    uint32_t b = tm_node(m, OP_SIGMOID, 1, &x, NULL, NULL, "b");
    b = tm_node(m, OP_IDENTITY, 1, &b, NULL, NULL, "id");
    uint32_t in[3] = {a, b, x};
    int32_t ia[16] = {v % 3 - (v % 2 ? 3 : 0)}; /* axis 0..2, sometimes negative */
    if (ia[0] < -3) ia[0] = 0;
    uint32_t y = tm_node(m, OP_CONCAT, 3, in, ia, NULL, "cat");
    int32_t rs[16] = {2, -1, h * w};
    if (ia[0] == 0 || ia[0] == -3) y = tm_node(m, OP_RESHAPE, 1, &y, rs, NULL, "reshape");
    return tm_node(m, OP_LEAKYRELU, 1, &y, NULL, (float[8]){0.3f}, "leaky");
}

/* One feature map concatenated with itself (and with a second one) along channels: each
 * slice must hold it, so it cannot be written in place once. */
static uint32_t build_concat_twice(fmt_model *m, int v)
{
    int c = tm_randint(1, 9), h = tm_randint(2, 8), w = tm_randint(2, 8);
    uint32_t x = tm_begin(m, c, h, w);
    uint32_t a = tm_node(m, OP_RELU, 1, &x, NULL, NULL, "a");
    uint32_t b = v % 2 ? tm_node(m, OP_SIGMOID, 1, &x, NULL, NULL, "b") : a;
    uint32_t in[3] = {a, b, a};
    int32_t ia[16] = {0};
    uint32_t y = tm_node(m, OP_CONCAT, 3, in, ia, NULL, "cat");
    return tm_node(m, OP_LEAKYRELU, 1, &y, NULL, (float[8]){0.3f}, "leaky");
}

/* Wide 1x1 convs on small maps (more output channels than pixels: the planner splits their
 * rows over tasks), bias, relu6 and a residual add fused; the last two with 450+ inputs on
 * 7x7 to 9x9 maps, enough work to split into parts of a GEMM pass. */
static const int pointwise_couts[] = {64, 72, 100, 255, 256, 300, 384, 1000, 400};
#define N_POINTWISE ((int)(sizeof pointwise_couts / sizeof pointwise_couts[0]))
static uint32_t build_pointwise(fmt_model *m, int v)
{
    int big = v % N_POINTWISE >= N_POINTWISE - 2;
    int cin = big ? tm_randint(450, 520) : tm_randint(1, 40);
    int h = tm_randint(big ? 7 : 1, 9), w = tm_randint(big ? 7 : 1, 9);
    int cout = pointwise_couts[v % N_POINTWISE];
    uint32_t x = tm_begin(m, cin, h, w);
    int32_t k1[16] = {1, 1, 1, 1, 0, 0, 0, 0, 1, 1, 1};
    int wd[4] = {cout, cin, 1, 1}, bd[1] = {cout};
    uint32_t a[3] = {x, tm_weight(m, 4, wd, 0.3f), tm_weight(m, 1, bd, 0.5f)};
    uint32_t b[2] = {x, tm_weight(m, 4, wd, 0.3f)};
    uint32_t y = tm_node(m, OP_CONV, 3, a, k1, NULL, "pw1");
    y = tm_node(m, OP_CLIP, 1, &y, NULL, (float[8]){0.0f, 6.0f}, "relu6");
    uint32_t z = tm_node(m, OP_CONV, 2, b, k1, NULL, "pw2");
    uint32_t add[2] = {z, y};
    return tm_node(m, OP_ADD, 2, add, NULL, NULL, "add");
}

/* A 1x1 conv plus a residual that is another 1x1 conv's output: variant % 4 == 0 on a
 * 24x24 map with 300 inputs (the columns GEMM, whose partial sums wait in its output for k
 * over 256), 1 on the same map with up to 40 inputs, 2 on a 6x6 map with 300 inputs (the
 * few-column GEMM), 3 as 1 with the residual read again afterwards. */
static uint32_t build_residual(fmt_model *m, int v)
{
    int kind = v % 4, hw = kind == 2 ? 6 : 24, cin = kind % 2 ? tm_randint(1, 40) : 300;
    int cout = tm_randint(8, 70);
    uint32_t x = tm_begin(m, cin, hw, hw);
    int32_t k1[16] = {1, 1, 1, 1, 0, 0, 0, 0, 1, 1, 1};
    int wd[4] = {cout, cin, 1, 1}, bd[1] = {cout};
    uint32_t a[3] = {x, tm_weight(m, 4, wd, 0.1f), tm_weight(m, 1, bd, 0.5f)};
    uint32_t b[3] = {x, tm_weight(m, 4, wd, 0.1f), tm_weight(m, 1, bd, 0.5f)};
    uint32_t y = tm_node(m, OP_CONV, 3, a, k1, NULL, "res");
    uint32_t z = tm_node(m, OP_CONV, 3, b, k1, NULL, "conv");
    uint32_t add[2] = {z, y};
    z = tm_node(m, OP_ADD, 2, add, NULL, NULL, "add");
    z = tm_node(m, OP_RELU, 1, &z, NULL, NULL, "relu");
    if (kind != 3) return z;
    uint32_t again[2] = {z, y};
    return tm_node(m, OP_ADD, 2, again, NULL, NULL, "again");
}

/* A pre-activation block (DenseNet, ResNet v2): 3x3 conv whose output is also the residual,
 * then a standalone batch-norm + ReLU (or ReLU6) read only by a 1x1 conv, which folds it into
 * its input reads on the AVX-512 path; odd variants give the batch-norm a second reader,
 * which keeps it a step of its own. */
static uint32_t build_preact(fmt_model *m, int v)
{
    int c = tm_randint(1, 15), h = tm_randint(1, 20), w = tm_randint(1, 20); /* no Winograd */
    int co = tm_randint(1, 70);
    uint32_t x = tm_begin(m, c, h, w);
    int32_t k1[16] = {1, 1, 1, 1, 0, 0, 0, 0, 1, 1, 1}, k3[16] = {3, 3, 1, 1, 1, 1, 1, 1, 1, 1, 1};
    int w3[4] = {c, c, 3, 3}, w1[4] = {co, c, 1, 1}, cd[1] = {c}, wb[4] = {c, co, 1, 1};
    uint32_t a[2] = {x, tm_weight(m, 4, w3, 0.3f)};
    uint32_t y = tm_node(m, OP_CONV, 2, a, k3, NULL, "conv3");
    uint32_t bn[5] = {y, tm_weight(m, 1, cd, 1.0f), tm_weight(m, 1, cd, 0.5f),
                      tm_weight(m, 1, cd, 0.5f), tm_weight(m, 1, cd, 0.0f)};
    float *var = (float *)m->tensors[bn[4]].data;
    for (int q = 0; q < c; q++) var[q] = 0.5f + var[q] * var[q];
    uint32_t z = tm_node(m, OP_BATCHNORM, 5, bn, NULL, (float[8]){1e-5f}, "bn");
    z = v % 4 < 2 ? tm_node(m, OP_RELU, 1, &z, NULL, NULL, "relu")
                  : tm_node(m, OP_CLIP, 1, &z, NULL, (float[8]){0.0f, 6.0f}, "relu6");
    uint32_t p1[2] = {z, tm_weight(m, 4, w1, 0.3f)};
    uint32_t u = tm_node(m, OP_CONV, 2, p1, k1, NULL, "conv1");
    uint32_t p2[2] = {u, tm_weight(m, 4, wb, 0.3f)};
    u = tm_node(m, OP_CONV, 2, p2, k1, NULL, "back");
    uint32_t add[2] = {u, y};
    u = tm_node(m, OP_ADD, 2, add, NULL, NULL, "add");
    if (v % 2 == 0) return u;
    uint32_t add2[2] = {u, z}; /* a second reader of the normalised map */
    return tm_node(m, OP_ADD, 2, add2, NULL, NULL, "add2");
}

/* A MobileNetV2 block: 1x1 expand + ReLU6, 3x3 depthwise (stride 1 or 2) + ReLU6, 1x1
 * project, plus the input when the shapes allow; odd variants add a depthwise conv without
 * activation straight into a residual Add. Channel counts cross the fused block sizes. */
static uint32_t build_inverted(fmt_model *m, int v)
{
    static const int mults[] = {1, 3, 6, 9};
    int c = tm_randint(1, 24), h = tm_randint(2, 30), w = tm_randint(2, 30);
    int e = c * mults[v % 4] + (v % 3 == 2 ? 5 : 0), stride = v % 5 == 1 ? 2 : 1;
    uint32_t x = tm_begin(m, c, h, w);
    int32_t k1[16] = {1, 1, 1, 1, 0, 0, 0, 0, 1, 1, 1};
    int32_t dwk[16] = {3, 3, stride, stride, 1, 1, 1, 1, 1, 1, e};
    int we[4] = {e, c, 1, 1}, wdw[4] = {e, 1, 3, 3}, wp[4] = {c, e, 1, 1}, be[1] = {e};
    uint32_t a[3] = {x, tm_weight(m, 4, we, 0.4f), tm_weight(m, 1, be, 0.2f)};
    uint32_t y = tm_node(m, OP_CONV, 3, a, k1, NULL, "expand");
    y = tm_node(m, OP_CLIP, 1, &y, NULL, (float[8]){0.0f, 6.0f}, "relu6a");
    uint32_t d[3] = {y, tm_weight(m, 4, wdw, 0.4f), tm_weight(m, 1, be, 0.2f)};
    y = tm_node(m, OP_CONV, 3, d, dwk, NULL, "dw");
    y = tm_node(m, OP_CLIP, 1, &y, NULL, (float[8]){0.0f, 6.0f}, "relu6b");
    if (v % 2) { /* depthwise straight into an Add */
        int32_t dw1[16] = {3, 3, 1, 1, 1, 1, 1, 1, 1, 1, e};
        uint32_t d2[2] = {y, tm_weight(m, 4, wdw, 0.4f)};
        uint32_t z = tm_node(m, OP_CONV, 2, d2, dw1, NULL, "dw_res");
        uint32_t add[2] = {z, y};
        y = tm_node(m, OP_ADD, 2, add, NULL, NULL, "dw_add");
    }
    uint32_t pr[2] = {y, tm_weight(m, 4, wp, 0.3f)};
    y = tm_node(m, OP_CONV, 2, pr, k1, NULL, "project");
    if (stride == 2) return y;
    uint32_t add[2] = {y, x};
    return tm_node(m, OP_ADD, 2, add, NULL, NULL, "add");
}

/* A SqueezeNet fire module: squeeze 1x1 + relu, then 1x1 and 3x3 expands (and with v % 3 == 2 a
 * max-pool branch) concatenated along channels, then a 1x1 conv reading the concat. With
 * `views` every branch passes through an Identity, which keeps the concat a copy; without,
 * the branches are written straight into the concat output. Same weights either way. */
static uint32_t build_fire(fmt_model *m, int v, int views)
{
    int c = tm_randint(2, 9), h = tm_randint(3, 13), w = tm_randint(3, 13);
    int sq = tm_randint(1, 7), e1 = tm_randint(1, 9), e3 = tm_randint(1, 9);
    uint32_t x = tm_begin(m, c, h, w);
    int32_t k1[16] = {1, 1, 1, 1, 0, 0, 0, 0, 1, 1, 1}, k3[16] = {3, 3, 1, 1, 1, 1, 1, 1, 1, 1, 1};
    int ws[4] = {sq, c, 1, 1}, w1[4] = {e1, sq, 1, 1}, w3[4] = {e3, sq, 3, 3};
    uint32_t in[3] = {x, tm_weight(m, 4, ws, 0.5f)};
    uint32_t s = tm_node(m, OP_CONV, 2, in, k1, NULL, "squeeze");
    s = tm_node(m, OP_RELU, 1, &s, NULL, NULL, "squeeze_relu");
    uint32_t a[2] = {s, tm_weight(m, 4, w1, 0.5f)}, b[2] = {s, tm_weight(m, 4, w3, 0.3f)};
    uint32_t br[3];
    br[0] = tm_node(m, OP_CONV, 2, a, k1, NULL, "expand1");
    br[0] = tm_node(m, OP_RELU, 1, &br[0], NULL, NULL, "expand1_relu");
    br[1] = tm_node(m, OP_CONV, 2, b, k3, NULL, "expand3");
    br[1] = tm_node(m, OP_RELU, 1, &br[1], NULL, NULL, "expand3_relu");
    int n = 2;
    if (v % 3 == 2) {
        int32_t pool[16] = {3, 3, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0};
        br[n++] = tm_node(m, OP_MAXPOOL, 1, &s, pool, NULL, "pool");
    }
    for (int q = 0; q < n && views; q++)
        br[q] = tm_node(m, OP_IDENTITY, 1, &br[q], NULL, NULL, "id");
    int32_t ax[16] = {v % 2 ? 0 : -3};
    uint32_t y = tm_node(m, OP_CONCAT, (int)n, br, ax, NULL, "cat");
    int wo[4] = {5, e1 + e3 + (n == 3 ? sq : 0), 1, 1};
    uint32_t o[2] = {y, tm_weight(m, 4, wo, 0.3f)};
    return tm_node(m, OP_CONV, 2, o, k1, NULL, "out");
}

/* A little ResNet-ish net: conv-BN-relu, residual conv-BN + add + relu, pool, head. */
static uint32_t build_net(fmt_model *m, int v)
{
    int c = 3 + v % 2 * 2;
    uint32_t x = tm_begin(m, 3, 17, 15);
    int wd[4] = {c, 3, 3, 3}, cd[1] = {c}, w2[4] = {c, c, 3, 3};
    uint32_t ci[3] = {x, tm_weight(m, 4, wd, 0.4f), tm_weight(m, 1, cd, 0.1f)};
    int32_t conv[16] = {3, 3, 1, 1, 1, 1, 1, 1, 1, 1, 1};
    uint32_t y = tm_node(m, OP_CONV, 3, ci, conv, NULL, "conv1");
    uint32_t bn[5] = {y, tm_weight(m, 1, cd, 1.0f), tm_weight(m, 1, cd, 0.5f),
                      tm_weight(m, 1, cd, 0.5f), tm_weight(m, 1, cd, 0.0f)};
    for (int k = 0; k < 5; k++) /* variance must be positive */
        if (k == 4) {
            float *var = (float *)m->tensors[bn[4]].data;
            for (int q = 0; q < c; q++) var[q] = 0.5f + var[q] * var[q];
        }
    float eps[8] = {1e-5f};
    y = tm_node(m, OP_BATCHNORM, 5, bn, NULL, eps, "bn1");
    y = tm_node(m, OP_RELU, 1, &y, NULL, NULL, "relu1");
    uint32_t c2[2] = {y, tm_weight(m, 4, w2, 0.3f)};
    uint32_t z = tm_node(m, OP_CONV, 2, c2, conv, NULL, "conv2");
    uint32_t add[2] = {v % 2 ? z : y, v % 2 ? y : z};
    z = tm_node(m, OP_ADD, 2, add, NULL, NULL, "add");
    z = tm_node(m, OP_RELU, 1, &z, NULL, NULL, "relu2");
    int32_t pool[16] = {3, 3, 2, 2, 1, 1, 1, 1, 1, 1, 0, 1};
    z = tm_node(m, OP_MAXPOOL, 1, &z, pool, NULL, "pool");
    z = tm_node(m, OP_FLATTEN, 1, &z, NULL, NULL, "flat");
    int fd[2] = {10, c * 9 * 8};
    uint32_t g[2] = {z, tm_weight(m, 2, fd, 0.2f)};
    float fa[8] = {1.0f, 1.0f};
    int32_t tb[16] = {1};
    z = tm_node(m, OP_GEMM, 2, g, tb, fa, "fc");
    int32_t sm[16] = {-1};
    m->output_kind = 1;
    return tm_node(m, OP_SOFTMAX, 1, &z, sm, NULL, "softmax");
}

/* 3x3 stride-1 convs wide enough for Winograd F(4,3) (and with at least half as many outputs
 * as inputs, which small maps need for it): odd sizes, every padding, residual and
 * activation, one tile chunk (split by channels) and several, and (v % 6 == 5) maps of at
 * most 16 tiles with 128+ inputs, whose GEMMs the few-column kernel runs, and (v % 6 == 4)
 * 144+ channels in and out on 36-81 tiles, in chunks of half WINO_CHUNK tiles (a task's
 * data over WINO_TASK_FLOATS), the last one mostly short; the others keep WINO_CHUNK tiles.
 * Winograd's rounding error is bounded against the direct reference: max |diff| <= 2e-5 *
 * max |ref| (worst seen 8.1e-6). */
static uint32_t build_wino(fmt_model *m, int v)
{
    int cin = tm_randint(16, 40), cout = tm_randint((cin + 1) / 2 > 16 ? (cin + 1) / 2 : 16, 45);
    int h = v % 2 ? tm_randint(8, 15) : tm_randint(20, 40), w = tm_randint(8, 37);
    if (v % 6 == 5) /* 8..14 output rows and columns whatever the padding: 4 x 4 tiles */
        cin = tm_randint(128, 140), cout = tm_randint(70, 90), h = tm_randint(10, 14),
        w = tm_randint(10, 14);
    if (v % 6 == 4)
        cin = tm_randint(72, 90), cout = tm_randint(72, 90), h = tm_randint(24, 32),
        w = tm_randint(24, 32);
    uint32_t x = tm_begin(m, cin, h, w);
    int wd[4] = {cout, cin, 3, 3}, bd[1] = {cout};
    uint32_t in[3] = {x, tm_weight(m, 4, wd, 0.3f), tm_weight(m, 1, bd, 0.5f)};
    int32_t ia[16] = {
        3, 3, 1, 1, tm_randint(0, 2), tm_randint(0, 2), tm_randint(0, 2), tm_randint(0, 2),
        1, 1, 1};
    uint32_t y = tm_node(m, OP_CONV, 3, in, ia, NULL, "wino");
    if (v % 3 == 0 && ia[A_PT] + ia[A_PB] == 2 && ia[A_PL] + ia[A_PR] == 2 && cin == cout) {
        uint32_t add[2] = {y, x};
        y = tm_node(m, OP_ADD, 2, add, NULL, NULL, "add");
    }
    if (v % 2) y = tm_node(m, OP_RELU, 1, &y, NULL, NULL, "relu");
    return y;
}

START_TEST(winograd_error_is_bounded)
{
    double worst = 0.0;
    for (int v = 0; v < 24; v++) {
        int n = v % 4 == 0 ? 16 : 1;
        fmt_model m;
        tm_seed(2000 + (unsigned)v);
        cvy_model *ref = tm_load(eng_ref, &m, build_wino(&m, v));
        tm_seed(2000 + (unsigned)v);
        cvy_model *opt = tm_load(eng_opt, &m, build_wino(&m, v));
        cvy_layer_info li;
        ck_assert_int_eq(cvy_model_layer(opt, 0, &li), CVY_OK);
        if (cvy_cpu_has(CVY_ISA_AVX512)) {
            ck_assert_str_eq(li.algo, v % 6 == 5 ? "winograd-f43-oc" : "winograd-f43");
            const step *st = &opt->plan.steps[0]; /* tiles per task */
            ck_assert_int_eq(st->chunk, v % 6 == 4 ? WINO_CHUNK / 2 : WINO_CHUNK);
        }
        size_t in = cvy_model_input_size(ref) * (size_t)n, on = cvy_model_output_size(ref) * n;
        float *x = malloc(in * sizeof(float));
        tm_fill(x, in);
        float *a = tm_run(ref, n, x), *b = tm_run(opt, n, x);
        double maxref = 0.0, maxdiff = 0.0;
        for (size_t i = 0; i < on; i++) {
            maxref = fmax(maxref, fabs(a[i]));
            maxdiff = fmax(maxdiff, fabs((double)a[i] - b[i]));
        }
        ck_assert_msg(maxdiff <= 2e-5 * maxref, "variant %d: max diff %.3g of max %.3g", v, maxdiff,
                      maxref);
        worst = fmax(worst, maxdiff / maxref);
        free(x), free(a), free(b);
        cvy_model_free(ref);
        cvy_model_free(opt);
    }
    fprintf(stderr, "winograd F(4,3): worst max|diff|/max|ref| = %.3g\n", worst);
}
END_TEST

START_TEST(conv_matches_reference)
{
    for (int v = 0; v < 80; v++) compare(build_conv, v, v % 4 == 0 ? 16 : 1 + v % 3, "conv");
}
END_TEST

START_TEST(strided_matches_reference)
{
    for (int v = 0; v < 30; v++) compare(build_strided, v, v % 3 == 0 ? 5 : 1, "strided conv");
}
END_TEST

START_TEST(pools_match_reference)
{
    for (int v = 0; v < 60; v++) compare(build_pool, v, 1 + v % 16, "pool");
}
END_TEST

START_TEST(conv_pool_matches_reference)
{
    int fused = 0;
    for (int v = 0; v < 40; v++) {
        compare(build_conv_pool, v, v % 5 == 0 ? 3 : 1, "conv+pool");
        fmt_model m;
        tm_seed(1000 + (unsigned)v);
        cvy_model *model = tm_load(eng_opt, &m, build_conv_pool(&m, v));
        cvy_layer_info li;
        ck_assert_int_eq(cvy_model_layer(model, 0, &li), CVY_OK);
        fused += cvy_model_layer_count(model) == 1 && strcmp(li.op, "Conv+Relu+MaxPool") == 0;
        cvy_model_free(model);
    }
    if (cvy_cpu_has(CVY_ISA_AVX512)) ck_assert_int_ge(fused, 30);
}
END_TEST

START_TEST(head_matches_reference)
{
    for (int v = 0; v < 30; v++) compare(build_head, v, v % 2 ? 16 : 1, "head");
}
END_TEST

START_TEST(binary_matches_reference)
{
    for (int v = 0; v < 40; v++) compare(build_binary, v, 1 + v % 4, "binary");
}
END_TEST

START_TEST(concat_matches_reference)
{
    for (int v = 0; v < 12; v++) compare(build_concat, v, 1 + v % 3, "concat");
    /* computed by hand too: the engines share the planner */
    for (int v = 0; v < 4; v++) {
        fmt_model m;
        tm_seed(4000 + (unsigned)v);
        cvy_model *model = tm_load(eng_opt, &m, build_concat_twice(&m, v));
        int n = 1 + v % 3;
        size_t in = cvy_model_input_size(model), on = cvy_model_output_size(model);
        ck_assert_uint_eq(on, 3 * in);
        float *x = malloc(n * in * sizeof(float));
        tm_fill(x, n * in);
        float *y = tm_run(model, n, x);
        for (int i = 0; i < n; i++)
            for (size_t q = 0; q < on; q++) {
                float a = x[i * in + q % in],
                      part = q / in == 1 && v % 2 ? 1.0f / (1.0f + expf(-a)) : (a > 0 ? a : 0.0f);
                float want = part >= 0 ? part : 0.3f * part;
                ck_assert_msg(fabsf(y[i * on + q] - want) <= 1e-6f + 1e-6f * fabsf(want),
                              "concat twice %d image %d: output %zu %g != %g", v, i, q,
                              y[i * on + q], want);
            }
        free(x), free(y);
        cvy_model_free(model);
    }
}
END_TEST

/* Whether values a and b share floats of an image's arena (never for the graph input). */
static int shares_arena(const plan *p, int a, int b)
{
    const value *v = p->values;
    if (v[a].root == p->input || v[b].root == p->input) return 0;
    size_t alo = v[v[a].root].offset + v[a].view_off, blo = v[v[b].root].offset + v[b].view_off;
    return alo < blo + v[b].size && blo < alo + v[a].size;
}

static uint32_t build_fire_plain(fmt_model *m, int v) { return build_fire(m, v, 0); }

/* Steps run two at a time (with_next) write nothing the other reads or writes, so any order
 * of their tasks gives the reference's outputs; fire modules pair their expand convs. */
START_TEST(paired_steps_are_independent)
{
    static const builder_fn builders[] = {build_fire_plain, build_net,  build_residual,
                                          build_pointwise,  build_conv, build_strided};
    int pairs = 0;
    for (int b = 0; b < (int)(sizeof builders / sizeof builders[0]); b++)
        for (int v = 0; v < 12; v++) {
            if (b == 0) compare(build_fire_plain, v, 1 + v % 4, "fire");
            fmt_model m;
            tm_seed(1000 + (unsigned)v);
            m.output = builders[b](&m, v);
            plan p;
            cvy_error err = {{0}};
            ck_assert_int_eq(
                plan_build(&m,
                           cvy_cpu_has(CVY_ISA_AVX512) ? cvy_kernels_avx512() : cvy_kernels_avx2(),
                           1, 1, &p, &err),
                CVY_OK);
            int fire_pairs = 0;
            for (int i = 0; i < p.n_steps; i++) {
                const step *x = &p.steps[i];
                if (!x->with_next) continue;
                ck_assert_int_lt(i + 1, p.n_steps);
                const step *y = x + 1;
                fire_pairs += b == 0;
                pairs++;
                for (int q = 0; q < 2; q++, x = y, y = &p.steps[i]) { /* both ways */
                    ck_assert(!shares_arena(&p, x->out, y->out));
                    if (y->residual >= 0) ck_assert(!shares_arena(&p, x->out, y->residual));
                    for (int k = 0; k < y->n_in; k++)
                        ck_assert_msg(!shares_arena(&p, x->out, y->in[k]),
                                      "builder %d variant %d: step %d writes what %d reads", b, v,
                                      (int)(x - p.steps), (int)(y - p.steps));
                }
            }
            if (b == 0) ck_assert_msg(fire_pairs >= 1, "fire %d: expand convs not paired", v);
            plan_free(&p);
            fmt_model_clear(&m);
        }
    ck_assert_int_ge(pairs, 12);
}
END_TEST

/* Concat parts written in place give the same outputs, bit for bit, as the copying concat,
 * on every engine and batch size, with one step fewer. */
START_TEST(concat_in_place_matches_copy)
{
    cvy_engine *engines[3] = {eng_ref, eng_opt, eng_avx2};
    for (int v = 0; v < 12; v++)
        for (int e = 0; e < 3; e++) {
            cvy_model *mo[2];
            for (int views = 0; views < 2; views++) {
                fmt_model m;
                tm_seed(3000 + (unsigned)v);
                uint32_t out = build_fire(&m, v, views);
                mo[views] = tm_load(engines[e], &m, out);
            }
            ck_assert_int_eq(cvy_model_layer_count(mo[0]) + 1, cvy_model_layer_count(mo[1]));
            int n = 1 + v % 4;
            size_t in = cvy_model_input_size(mo[0]) * (size_t)n;
            size_t on = cvy_model_output_size(mo[0]) * (size_t)n;
            float *x = malloc(in * sizeof(float));
            tm_fill(x, in);
            float *got = tm_run(mo[0], n, x), *want = tm_run(mo[1], n, x);
            for (size_t i = 0; i < on; i++)
                ck_assert_msg(got[i] == want[i], "fire %d on %s: output %zu %g != %g", v,
                              cvy_engine_isa(engines[e]), i, got[i], want[i]);
            free(x), free(got), free(want);
            cvy_model_free(mo[0]), cvy_model_free(mo[1]);
        }
}
END_TEST

/* A wide 1x1 conv with relu (or relu6 and a residual) on a small map, then a global average
 * pool, which the planner fuses into the conv when its rows are split: row parts of one
 * GEMM pass (v % 5 == 4: 450+ inputs, 1000 channels) or halves of several passes. */
static uint32_t build_conv_gap(fmt_model *m, int v)
{
    static const int couts[] = {64, 100, 300, 640, 1000};
    int big = v % 5 == 4, cin = big ? tm_randint(450, 520) : tm_randint(1, 40);
    int h = tm_randint(big ? 7 : 1, 9), w = tm_randint(big ? 7 : 1, 9), cout = couts[v % 5];
    uint32_t x = tm_begin(m, cin, h, w);
    int32_t k1[16] = {1, 1, 1, 1, 0, 0, 0, 0, 1, 1, 1};
    int wd[4] = {cout, cin, 1, 1}, bd[1] = {cout};
    uint32_t a[3] = {x, tm_weight(m, 4, wd, 0.3f), tm_weight(m, 1, bd, 0.5f)};
    uint32_t y = tm_node(m, OP_CONV, 3, a, k1, NULL, "conv");
    if (v % 2) {
        uint32_t r[2] = {x, tm_weight(m, 4, wd, 0.3f)};
        uint32_t add[2] = {tm_node(m, OP_CONV, 2, r, k1, NULL, "res"), y};
        y = tm_node(m, OP_ADD, 2, add, NULL, NULL, "add");
        y = tm_node(m, OP_CLIP, 1, &y, NULL, (float[8]){0.0f, 6.0f}, "relu6");
    } else
        y = tm_node(m, OP_RELU, 1, &y, NULL, NULL, "relu");
    return tm_node(m, OP_GLOBALAVGPOOL, 1, &y, NULL, NULL, "gap");
}

START_TEST(conv_gap_matches_reference)
{
    int fused = 0;
    for (int v = 0; v < 20; v++) {
        compare(build_conv_gap, v, 1 + v % 3, "conv+gap");
        fmt_model m;
        tm_seed(1000 + (unsigned)v);
        cvy_model *model = tm_load(eng_opt, &m, build_conv_gap(&m, v));
        int n = cvy_model_layer_count(model);
        cvy_layer_info li;
        ck_assert_int_eq(cvy_model_layer(model, n - 1, &li), CVY_OK);
        fused += strstr(li.op, "+GlobalAveragePool") != NULL;
        cvy_model_free(model);
    }
    if (cvy_cpu_has(CVY_ISA_AVX512)) ck_assert_int_ge(fused, 8);
}
END_TEST

/* ... and their row parts where they have more than twice as many output channels as
 * pixels: on the few-column GEMM (AVX-512) two halves, or with 384+ output channels and
 * PASS_PART_FLOPS per pass one task per pass of its rows, the last part short when the pass
 * does not divide them. */
START_TEST(pointwise_matches_reference)
{
    for (int v = 0; v < 3 * N_POINTWISE; v++) {
        compare(build_pointwise, v, 1 + v % 3, "pointwise");
        if (!cvy_cpu_has(CVY_ISA_AVX512)) continue;
        fmt_model m;
        tm_seed(1000 + (unsigned)v);
        m.output = build_pointwise(&m, v);
        plan p;
        cvy_error err = {{0}};
        ck_assert_int_eq(plan_build(&m, cvy_kernels_avx512(), 1, 1, &p, &err), CVY_OK);
        int cout = pointwise_couts[v % N_POINTWISE];
        for (int i = 0; i < p.n_steps; i++) {
            const step *st = &p.steps[i];
            ck_assert_ptr_eq(st->gemm, cvy_kernels_avx512()->gemm_few);
            if (cout <= 2 * st->g.h_out * st->g.w_out) { /* column halves instead */
                ck_assert_int_eq(st->rows, 0);
                continue;
            }
            int pass = st->gemm->pass_rows, want = 2;
            if (cout >= 8 * pass &&
                2.0 * st->g.c_in * st->g.h_out * st->g.w_out * pass >= PASS_PART_FLOPS)
                want = (cout + pass - 1) / pass;
            ck_assert_msg(st->rows > 0 && st->tasks == want,
                          "variant %d, %d channels: %d tasks of %d rows, want %d tasks", v, cout,
                          st->tasks, st->rows, want);
        }
        plan_free(&p);
        fmt_model_clear(&m);
    }
}
END_TEST

START_TEST(inverted_matches_reference)
{
    for (int v = 0; v < 20; v++) compare(build_inverted, v, 1 + v % 3, "inverted");
}
END_TEST

/* MobileNetV2's inverted residual block, which the plan runs in bands (fuse_pre, fuse_post):
 * an expansion 1x1 conv + clip (pre, unless v % 4 == 3), a depthwise conv, and a projection
 * 1x1 conv (post, unless v % 3 == 0), with the block's input added when v % 3 == 2 and the
 * stride is 1. Part 0 builds the block, parts 1, 2, 3 the 1x1, the depthwise conv and the
 * projection alone (without the residual), with the same weights.
 * Variants: stride 1 and 2, kernels 3 and 5, every padding, dilation 2, odd sizes, and small
 * maps (v % 8 == 5: more expanded channels than columns, so the 1x1 alone splits its rows;
 * v % 12 == 11: a projection alone, as MobileNetV2's 7x7 blocks). */
typedef struct banded {
    int pre, post, res;
    int c, e, h, w, ho, wo;
} banded;

static banded banded_shape(int v)
{
    tm_seed(3000 + (unsigned)v);
    banded b = {.pre = v % 4 != 3, .post = v % 3 != 0};
    int lo = b.pre ? 46 : 100; /* maps as MobileNetV2's 56x56 and 112x112 */
    b.c = tm_randint(1, 16), b.e = tm_randint(64, 100), b.h = tm_randint(lo, lo + 24),
    b.w = tm_randint(lo, lo + 24);
    if (v % 8 == 5) /* stride 2, 7+ output rows */
        b.e = tm_randint(401, 440), b.h = tm_randint(18, 20), b.w = tm_randint(18, 20);
    else if (v % 12 == 11)
        b.h = tm_randint(15, 17), b.w = tm_randint(15, 17);
    b.res = b.post && v % 2 == 0 && v % 3 == 2;
    return b;
}

static uint32_t build_banded(fmt_model *m, int v, int part)
{
    banded b = banded_shape(v);
    int k = v % 5 == 4 ? 5 : 3, s = 1 + v % 2, d = v % 7 == 6 ? 2 : 1, ek = (k - 1) * d + 1;
    int32_t dwk[16] = {k,
                       k,
                       s,
                       s,
                       tm_randint(0, k - 1),
                       tm_randint(0, k - 1),
                       tm_randint(0, k - 1),
                       tm_randint(0, k - 1),
                       d,
                       d,
                       b.e};
    if (b.res) /* the output keeps the input's size */
        dwk[4] = dwk[6] = (ek - 1) / 2, dwk[5] = dwk[7] = ek - 1 - (ek - 1) / 2;
    b.ho = (b.h + dwk[4] + dwk[6] - ek) / s + 1, b.wo = (b.w + dwk[5] + dwk[7] - ek) / s + 1;
    int32_t k1[16] = {1, 1, 1, 1, 0, 0, 0, 0, 1, 1, 1};
    int cin = b.pre ? b.c : b.e, cout = b.res ? cin : b.c + 3;
    int we[4] = {b.e, b.c, 1, 1}, wdw[4] = {b.e, 1, k, k}, be[1] = {b.e};
    int wp[4] = {cout, b.e, 1, 1}, bp[1] = {cout};
    uint32_t x = tm_begin(m,
                          part == 0   ? cin
                          : part == 1 ? b.c
                                      : b.e,
                          part == 3 ? b.ho : b.h, part == 3 ? b.wo : b.w),
             y = x;
    if (b.pre) { /* the expansion's weights, drawn whatever the part */
        uint32_t a[3] = {x, tm_weight(m, 4, we, 0.4f), tm_weight(m, 1, be, 0.2f)};
        if (part <= 1) {
            y = tm_node(m, OP_CONV, 3, a, k1, NULL, "expand");
            y = v % 5 ? tm_node(m, OP_CLIP, 1, &y, NULL, (float[8]){0.0f, 6.0f}, "relu6")
                      : tm_node(m, OP_RELU, 1, &y, NULL, NULL, "relu");
            if (part == 1) return y;
        }
    }
    uint32_t dd[3] = {y, tm_weight(m, 4, wdw, 0.4f), tm_weight(m, 1, be, 0.2f)};
    if (part == 0 || part == 2) {
        y = tm_node(m, OP_CONV, 3, dd, dwk, NULL, "dw");
        if (v % 2 || b.post) y = tm_node(m, OP_CLIP, 1, &y, NULL, (float[8]){0.0f, 6.0f}, "relu6b");
        if (part == 2 || !b.post) return y;
    }
    uint32_t pr[3] = {y, tm_weight(m, 4, wp, 0.3f), tm_weight(m, 1, bp, 0.1f)};
    y = tm_node(m, OP_CONV, 3, pr, k1, NULL, "project");
    if (part == 0 && b.res) {
        uint32_t add[2] = {y, x};
        y = tm_node(m, OP_ADD, 2, add, NULL, NULL, "add");
    }
    return y;
}

/* The banded block gives the bits of its layers run one after the other (the residual added
 * as the GEMM's epilogue adds it, after the bias), at batch 1 and 3, on two threads and one. */
START_TEST(banded_block_matches_layers)
{
    int avx512 = strcmp(cvy_engine_isa(eng_opt), "avx512") == 0;
    for (int v = 0; v < 24; v++) {
        banded b = banded_shape(v);
        fmt_model m;
        cvy_model *all = tm_load(eng_opt, &m, build_banded(&m, v, 0));
        cvy_model *all1 = tm_load(eng_opt1, &m, build_banded(&m, v, 0));
        cvy_model *part[4] = {NULL};
        for (int p = 1; p <= 3; p++)
            if ((p != 1 || b.pre) && (p != 3 || b.post))
                part[p] = tm_load(eng_opt, &m, build_banded(&m, v, p));
        cvy_layer_info li;
        ck_assert_int_eq(cvy_model_layer(all, 0, &li), CVY_OK);
        const char *want_algo = b.pre && b.post ? "1x1+dw+1x1-bands"
                                : b.pre         ? "1x1+dw-bands"
                                : b.post        ? "dw+1x1-bands"
                                                : "depthwise";
        if (avx512) ck_assert_str_eq(li.algo, want_algo);
        ck_assert_int_eq(cvy_model_layer_count(all), 1);
        for (int n = 1; n <= 3; n += 2) {
            size_t in = cvy_model_input_size(all) * (size_t)n;
            size_t on = cvy_model_output_size(all) * (size_t)n;
            float *x = malloc(in * sizeof(float));
            tm_fill(x, in);
            float *want = x, *next;
            for (int p = 1; p <= 3; p++)
                if (part[p]) {
                    next = tm_run(part[p], n, want);
                    if (want != x) free(want);
                    want = next;
                }
            if (b.res)
                for (size_t i = 0; i < on; i++) want[i] += x[i];
            float *got = tm_run(all, n, x), *got1 = tm_run(all1, n, x);
            ck_assert_msg(memcmp(got, want, on * sizeof(float)) == 0, "variant %d batch %d", v, n);
            ck_assert_msg(memcmp(got1, want, on * sizeof(float)) == 0,
                          "variant %d batch %d, one thread", v, n);
            free(x), free(want), free(got), free(got1);
        }
        cvy_model_free(all), cvy_model_free(all1);
        for (int p = 1; p <= 3; p++) cvy_model_free(part[p]);
    }
}
END_TEST

START_TEST(preact_matches_reference)
{
    for (int v = 0; v < 12; v++) compare(build_preact, v, 1 + v % 3, "preact");
    fmt_model m; /* folded when the 1x1 conv alone reads it */
    tm_seed(5);
    cvy_model *model = tm_load(eng_opt, &m, build_preact(&m, 0));
    int folded = 0;
    for (int l = 0; l < cvy_model_layer_count(model); l++) {
        cvy_layer_info li;
        ck_assert_int_eq(cvy_model_layer(model, l, &li), CVY_OK);
        folded += strncmp(li.op, "BatchNormalization+Relu+Conv", 28) == 0;
    }
    ck_assert_int_eq(folded, strcmp(cvy_engine_isa(eng_opt), "avx512") == 0);
    cvy_model_free(model);
}
END_TEST

START_TEST(net_matches_reference)
{
    for (int v = 0; v < 4; v++) compare(build_net, v, v < 2 ? 1 : 16, "net");
}
END_TEST

/* A conv writes its output over its residual where the residual dies with it and its GEMM
 * keeps no partial sums in the output (AVX-512's own GEMMs; not OpenBLAS's), and the outputs
 * still match the reference. */
START_TEST(residual_in_place_matches_reference)
{
    for (int v = 0; v < 12; v++) {
        compare(build_residual, v, 1 + v % 3, "residual");
        for (int avx512 = 0; avx512 < 2; avx512++) {
            if (avx512 && !cvy_cpu_has(CVY_ISA_AVX512)) continue;
            fmt_model m;
            tm_seed(1000 + (unsigned)v);
            m.output = build_residual(&m, v);
            plan p;
            cvy_error err = {{0}};
            const cvy_kernels *kern = avx512 ? cvy_kernels_avx512() : cvy_kernels_avx2();
            ck_assert_int_eq(plan_build(&m, kern, 1, 1, &p, &err), CVY_OK);
            const step *st = &p.steps[1]; /* conv + add + relu */
            ck_assert_int_ge(st->residual, 0);
            int shared = p.values[st->out].root == p.values[st->residual].root;
            ck_assert_msg(shared == (avx512 && v % 4 != 0 && v % 4 != 3),
                          "variant %d on %s: output %s its residual", v, kern->name,
                          shared ? "over" : "not over");
            plan_free(&p);
            fmt_model_clear(&m);
        }
    }
}
END_TEST

/* The plan fuses BN into conv1, relu into both convs and the Add into conv2. */
START_TEST(fusion_is_planned)
{
    fmt_model m;
    tm_seed(1000);
    uint32_t out = build_net(&m, 0);
    cvy_model *model = tm_load(eng_opt, &m, out);
    cvy_layer_info li;
    ck_assert_int_eq(cvy_model_layer(model, 0, &li), CVY_OK);
    ck_assert_str_eq(li.op, "Conv+BatchNormalization+Relu");
    ck_assert_int_eq(cvy_model_layer(model, 1, &li), CVY_OK);
    ck_assert_str_eq(li.op, "Conv+Add+Relu");
    ck_assert_int_eq(cvy_model_layer_count(model), 5); /* conv, conv, pool, fc, softmax */
    ck_assert_int_eq(cvy_model_layer(model, 5, &li), CVY_ERR_ARG);
    cvy_model_free(model);
}
END_TEST

/* BN folding checked against conv then batch-norm computed by hand in double. */
START_TEST(batchnorm_folding_is_exact)
{
    fmt_model m;
    tm_seed(7);
    int c = 6;
    uint32_t x = tm_begin(&m, 2, 6, 7);
    int wd[4] = {c, 2, 3, 3}, cd[1] = {c};
    uint32_t ci[2] = {x, tm_weight(&m, 4, wd, 1.0f)};
    int32_t conv[16] = {3, 3, 1, 1, 0, 0, 0, 0, 1, 1, 1};
    uint32_t y = tm_node(&m, OP_CONV, 2, ci, conv, NULL, "conv");
    float sc[6], bi[6], me[6], va[6];
    tm_fill(sc, 6), tm_fill(bi, 6), tm_fill(me, 6), tm_fill(va, 6);
    for (int k = 0; k < 6; k++) va[k] = va[k] * va[k] + 0.1f;
    uint32_t bn[5] = {y, (uint32_t)fmt_add_weight(&m, 1, (uint32_t[]){6}, sc),
                      (uint32_t)fmt_add_weight(&m, 1, (uint32_t[]){6}, bi),
                      (uint32_t)fmt_add_weight(&m, 1, (uint32_t[]){6}, me),
                      (uint32_t)fmt_add_weight(&m, 1, (uint32_t[]){6}, va)};
    (void)cd;
    const float *w = m.tensors[ci[1]].data;
    float wcopy[6 * 2 * 9];
    memcpy(wcopy, w, sizeof wcopy);
    y = tm_node(&m, OP_BATCHNORM, 5, bn, NULL, (float[8]){1e-3f}, "bn");
    cvy_model *model = tm_load(eng_opt, &m, y);
    float in[2 * 6 * 7], raw[6 * 4 * 5];
    tm_fill(in, sizeof in / 4);
    conv_geom g = {.c_in = 2,
                   .h_in = 6,
                   .w_in = 7,
                   .c_out = 6,
                   .h_out = 4,
                   .w_out = 5,
                   .kh = 3,
                   .kw = 3,
                   .sh = 1,
                   .sw = 1,
                   .dh = 1,
                   .dw = 1,
                   .group = 1};
    act_params none = {ACT_NONE, 0, 0};
    cvy_conv_ref(in, wcopy, NULL, raw, &g, &none);
    float *got = tm_run(model, 1, in);
    for (int k = 0; k < 6; k++)
        for (int p = 0; p < 20; p++) {
            double want = (raw[k * 20 + p] - me[k]) / sqrt((double)va[k] + 1e-3) * sc[k] + bi[k];
            ck_assert_double_eq_tol(got[k * 20 + p], want, 1e-5 + 1e-5 * fabs(want));
        }
    free(got);
    cvy_model_free(model);
}
END_TEST

/* Each image's output is bit-identical whether it runs alone, in a batch of 16 (whole images
 * per worker) or of 5 (four whole, one spread over the workers step by step), and with 1 or
 * 2 threads, on the best ISA and on the AVX2 + OpenBLAS path. */
START_TEST(batch_and_threads_do_not_change_outputs)
{
    for (int v = 0; v < 4; v++) {
        fmt_model m;
        cvy_engine *e2 = v < 2 ? eng_opt : eng_avx2, *e1 = v < 2 ? eng_opt1 : eng_avx2_1;
        tm_seed(1000 + (unsigned)v);
        cvy_model *two = tm_load(e2, &m, build_net(&m, v));
        tm_seed(1000 + (unsigned)v);
        cvy_model *one = tm_load(e1, &m, build_net(&m, v));
        size_t in = cvy_model_input_size(two), on = cvy_model_output_size(two);
        float *x = malloc(16 * in * sizeof(float));
        tm_fill(x, 16 * in);
        float *b16 = tm_run(two, 16, x), *b16t1 = tm_run(one, 16, x);
        ck_assert_mem_eq(b16, b16t1, 16 * on * sizeof(float));
        float *b5 = tm_run(two, 5, x);
        ck_assert_mem_eq(b5, b16, 5 * on * sizeof(float));
        free(b5);
        for (int i = 0; i < 16; i += 5) {
            float *b1 = tm_run(two, 1, x + i * in), *b1t1 = tm_run(one, 1, x + i * in);
            ck_assert_mem_eq(b1, b16 + i * on, on * sizeof(float));
            ck_assert_mem_eq(b1t1, b16 + i * on, on * sizeof(float));
            free(b1), free(b1t1);
        }
        free(x), free(b16), free(b16t1);
        cvy_model_free(one);
        cvy_model_free(two);
    }
}
END_TEST

/* The pool runs every task exactly once per run, over many runs of varied sizes, with the
 * thread index always in range. */
typedef struct pool_probe {
    int *hits;
    int threads;
    int bad;
} pool_probe;

static void probe_task(void *arg, int task, int thread)
{
    pool_probe *pp = arg;
    __atomic_add_fetch(&pp->hits[task], 1, __ATOMIC_RELAXED);
    if (thread < 0 || thread >= pp->threads) __atomic_store_n(&pp->bad, 1, __ATOMIC_RELAXED);
}

START_TEST(pool_runs_each_task_once)
{
    cvy_pool *p = cvy_pool_create(3);
    ck_assert_ptr_nonnull(p);
    int hits[257];
    pool_probe pp = {hits, 3, 0};
    for (int run = 0; run < 3000; run++) {
        int n = 1 + run % 257;
        memset(hits, 0, sizeof hits);
        cvy_pool_run(p, n, 1 + run % 4, probe_task, &pp);
        for (int i = 0; i < n; i++)
            ck_assert_msg(hits[i] == 1, "run %d task %d: %d", run, i, hits[i]);
        for (int i = n; i < 257; i++) ck_assert_int_eq(hits[i], 0);
    }
    ck_assert_int_eq(pp.bad, 0);
    cvy_pool_destroy(p);
    cvy_pool_destroy(NULL);
}
END_TEST

START_TEST(context_and_queries)
{
    fmt_model m;
    tm_seed(1000);
    cvy_model *model = tm_load(eng_opt, &m, build_net(&m, 0));
    int c, h, w;
    cvy_model_input_shape(model, &c, &h, &w);
    ck_assert_int_eq(c, 3);
    ck_assert_int_eq(h, 17);
    ck_assert_int_eq(w, 15);
    ck_assert_uint_eq(cvy_model_input_size(model), 3 * 17 * 15);
    ck_assert_uint_eq(cvy_model_output_size(model), 10);
    ck_assert_int_eq(cvy_model_output_is_probability(model), 1);
    ck_assert_int_eq(strlen(cvy_model_hash(model)), 16);
    ck_assert(cvy_model_flops(model) > 2.0 * 3 * 17 * 15 * 27);
    ck_assert_ptr_null(cvy_model_label(model, 0));
    cvy_context *ctx;
    cvy_error err;
    ck_assert_int_eq(cvy_context_create(model, 0, &ctx, &err), CVY_ERR_ARG);
    ck_assert_int_eq(cvy_context_create(model, 4, &ctx, &err), CVY_OK);
    ck_assert_int_eq(cvy_context_max_batch(ctx), 4);
    float out[50];
    ck_assert_int_eq(cvy_context_run(ctx, 5, NULL, out, &err), CVY_ERR_ARG);
    ck_assert_ptr_nonnull(strstr(err.msg, "batch 5"));
    ck_assert_int_eq(cvy_context_run(ctx, 0, NULL, out, &err), CVY_ERR_ARG);
    tm_fill(cvy_context_input(ctx), 2 * 3 * 17 * 15);
    ck_assert_int_eq(cvy_context_run(ctx, 2, NULL, out, &err), CVY_OK);
    for (int i = 0; i < 2; i++) {
        double s = 0.0;
        for (int k = 0; k < 10; k++) s += out[i * 10 + k];
        ck_assert_double_eq_tol(s, 1.0, 1e-5);
        cvy_prediction top[12];
        ck_assert_int_eq(cvy_model_topk(model, out + i * 10, 12, top), 10);
        for (int k = 1; k < 10; k++) ck_assert(top[k - 1].score >= top[k].score);
        ck_assert_float_eq(top[0].score, out[i * 10 + top[0].index]);
    }
    ck_assert_ptr_null(cvy_context_layer_ms(ctx));
    cvy_context_set_profiling(ctx, 1);
    ck_assert_int_eq(cvy_context_run(ctx, 2, NULL, out, &err), CVY_OK);
    const double *ms = cvy_context_layer_ms(ctx);
    ck_assert_ptr_nonnull(ms);
    for (int i = 0; i < cvy_model_layer_count(model); i++) ck_assert(ms[i] >= 0.0 && ms[i] < 1e4);
    cvy_context_destroy(ctx);
    cvy_context_destroy(NULL);
    cvy_model_free(model);
    cvy_model_free(NULL);
    cvy_engine_destroy(NULL);
}
END_TEST

START_TEST(topk_softmaxes_logits)
{
    fmt_model m;
    tm_seed(5);
    uint32_t x = tm_begin(&m, 1, 1, 4);
    uint32_t y = tm_node(&m, OP_FLATTEN, 1, &x, NULL, NULL, "flat");
    fmt_add_label(&m, "a");
    fmt_add_label(&m, "b");
    fmt_add_label(&m, "c");
    fmt_add_label(&m, "d");
    cvy_model *model = tm_load(eng_opt, &m, y);
    float logits[4] = {1.0f, 3.0f, 2.0f, 3.0f};
    cvy_prediction p[2];
    ck_assert_int_eq(cvy_model_topk(model, logits, 2, p), 2);
    ck_assert_int_eq(p[0].index, 1); /* ties: lower index first */
    ck_assert_int_eq(p[1].index, 3);
    ck_assert_str_eq(p[0].label, "b");
    double z = exp(1.0) + 2 * exp(3.0) + exp(2.0);
    ck_assert_double_eq_tol(p[0].score, exp(3.0) / z, 1e-6);
    /* the output is a view of the input: the copy step still delivers it */
    float *o = tm_run(model, 1, logits);
    ck_assert_mem_eq(o, logits, sizeof logits);
    free(o);
    cvy_model_free(model);
}
END_TEST

/* A model carrying its own outputs as golden data passes its self-test; a changed golden
 * value fails it with CVY_ERR_MISMATCH, and golden data of the wrong size fails the load. */
START_TEST(golden_self_test)
{
    for (int variant = 0; variant < 3; variant++) {
        fmt_model m;
        tm_seed(1000);
        uint32_t out = build_net(&m, 0);
        m.output = out;
        float in[3 * 3 * 17 * 15], want[3 * 10];
        tm_fill(in, sizeof in / 4);
        { /* the model's own outputs, from a copy of the same graph */
            fmt_model copy;
            tm_seed(1000);
            cvy_model *ref = tm_load(eng_opt, &copy, build_net(&copy, 0));
            float *o = tm_run(ref, 3, in);
            memcpy(want, o, sizeof want);
            free(o);
            cvy_model_free(ref);
        }
        if (variant == 1) want[17] += 0.01f;
        ck_assert_int_eq(
            fmt_set_golden(&m, 3, variant == 2 ? 7 : 3 * 17 * 15, in, 10, want, 1e-5f, 1e-6f), 0);
        uint8_t *buf;
        size_t size;
        ck_assert_int_eq(fmt_serialize(&m, &buf, &size, NULL), CVY_OK);
        fmt_model_clear(&m);
        cvy_model *model = NULL;
        cvy_error err;
        cvy_status s = cvy_model_load_memory(eng_opt, buf, size, &model, &err);
        free(buf);
        if (variant == 2) {
            ck_assert_int_eq(s, CVY_ERR_FORMAT);
            ck_assert_ptr_nonnull(strstr(err.msg, "GOLDEN"));
            continue;
        }
        ck_assert_int_eq(s, CVY_OK);
        int n = -1;
        s = cvy_model_self_test(model, &n, &err);
        if (variant == 0) {
            ck_assert_msg(s == CVY_OK, "%s", err.msg);
            ck_assert_int_eq(n, 3);
        } else {
            ck_assert_int_eq(s, CVY_ERR_MISMATCH);
            ck_assert_ptr_nonnull(strstr(err.msg, "image 1 output 7"));
            ck_assert_int_eq(n, 0);
        }
        cvy_model_free(model);
    }
}
END_TEST

/* The shipped model carries torch's outputs for four test images: every ISA reproduces them. */
START_TEST(default_model_passes_its_self_test)
{
    cvy_engine *engines[3] = {eng_ref, eng_opt, eng_avx2};
    for (int e = 0; e < 3; e++) {
        cvy_model *m = NULL;
        cvy_error err;
        ck_assert_msg(cvy_model_load_file(engines[e], "models/fashion-mnist.cvy", &m, &err) ==
                          CVY_OK,
                      "%s", err.msg);
        int n = 0;
        ck_assert_msg(cvy_model_self_test(m, &n, &err) == CVY_OK, "%s: %s",
                      cvy_engine_isa(engines[e]), err.msg);
        ck_assert_int_eq(n, 4);
        cvy_model_free(m);
    }
}
END_TEST

START_TEST(bad_graph_semantics_are_named)
{
    cvy_error err;
    struct {
        int what;
        cvy_status want;
        const char *msg;
    } cases[] = {
        {0, CVY_ERR_SHAPE, "fc"},            /* gemm K mismatch */
        {1, CVY_ERR_SHAPE, "bin"},           /* shapes that do not broadcast */
        {2, CVY_ERR_SHAPE, "cat"},           /* concat of mismatched dims */
        {3, CVY_ERR_SHAPE, "reshape"},       /* reshape to the wrong element count */
        {4, CVY_ERR_UNSUPPORTED, "clip"},    /* clip min > max */
        {5, CVY_ERR_SHAPE, "MiB per image"}, /* activations beyond the arena limit */
    };
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        fmt_model m;
        tm_seed(3);
        uint32_t x = cases[k].what == 5 ? tm_begin(&m, 1, 16384, 16384) : tm_begin(&m, 2, 4, 4);
        uint32_t y = 0;
        if (cases[k].what == 0) {
            int wd[2] = {5, 31};
            uint32_t f = tm_node(&m, OP_FLATTEN, 1, &x, NULL, NULL, "flat");
            uint32_t in[2] = {f, tm_weight(&m, 2, wd, 1.0f)};
            y = tm_node(&m, OP_GEMM, 2, in, (int32_t[16]){1}, (float[8]){1, 1}, "fc");
        } else if (cases[k].what == 1) {
            int d[1] = {3};
            uint32_t in[2] = {x, tm_weight(&m, 1, d, 1.0f)};
            y = tm_node(&m, OP_ADD, 2, in, NULL, NULL, "bin");
        } else if (cases[k].what == 2) {
            int32_t pool[16] = {2, 2, 2, 2, 0, 0, 0, 0, 1, 1};
            uint32_t p = tm_node(&m, OP_MAXPOOL, 1, &x, pool, NULL, "pool");
            uint32_t in[2] = {x, p};
            y = tm_node(&m, OP_CONCAT, 2, in, NULL, NULL, "cat");
        } else if (cases[k].what == 3) {
            y = tm_node(&m, OP_RESHAPE, 1, &x, (int32_t[16]){2, 5, 7}, NULL, "reshape");
        } else if (cases[k].what == 4) {
            y = tm_node(&m, OP_CLIP, 1, &x, NULL, (float[8]){2.0f, 1.0f}, "clip");
        } else { /* two live 16384x16384 activations: 2 GiB per image */
            uint32_t a = tm_node(&m, OP_RELU, 1, &x, NULL, NULL, "relu");
            uint32_t b = tm_node(&m, OP_SIGMOID, 1, &a, NULL, NULL, "sig");
            uint32_t in2[2] = {a, b};
            y = tm_node(&m, OP_ADD, 2, in2, NULL, NULL, "add");
        }
        m.output = y;
        uint8_t *buf;
        size_t size;
        ck_assert_int_eq(fmt_serialize(&m, &buf, &size, NULL), CVY_OK);
        fmt_model_clear(&m);
        cvy_model *model = NULL;
        cvy_status s = cvy_model_load_memory(eng_opt, buf, size, &model, &err);
        ck_assert_msg(s == cases[k].want, "case %zu: %d (%s)", k, s, err.msg);
        ck_assert_msg(strstr(err.msg, cases[k].msg) != NULL, "case %zu: %s", k, err.msg);
        ck_assert_ptr_null(model);
        free(buf);
    }
}
END_TEST

Suite *engine_suite(void)
{
    Suite *s = suite_create("engine");
    TCase *tc = tcase_create("models");
    tcase_set_timeout(tc, 120);
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, conv_matches_reference);
    tcase_add_test(tc, strided_matches_reference);
    tcase_add_test(tc, winograd_error_is_bounded);
    tcase_add_test(tc, pools_match_reference);
    tcase_add_test(tc, conv_pool_matches_reference);
    tcase_add_test(tc, conv_gap_matches_reference);
    tcase_add_test(tc, head_matches_reference);
    tcase_add_test(tc, binary_matches_reference);
    tcase_add_test(tc, concat_matches_reference);
    tcase_add_test(tc, pointwise_matches_reference);
    tcase_add_test(tc, concat_in_place_matches_copy);
    tcase_add_test(tc, paired_steps_are_independent);
    tcase_add_test(tc, inverted_matches_reference);
    tcase_add_test(tc, banded_block_matches_layers);
    tcase_add_test(tc, preact_matches_reference);
    tcase_add_test(tc, net_matches_reference);
    tcase_add_test(tc, residual_in_place_matches_reference);
    tcase_add_test(tc, fusion_is_planned);
    tcase_add_test(tc, batchnorm_folding_is_exact);
    tcase_add_test(tc, batch_and_threads_do_not_change_outputs);
    tcase_add_test(tc, context_and_queries);
    tcase_add_test(tc, pool_runs_each_task_once);
    tcase_add_test(tc, topk_softmaxes_logits);
    tcase_add_test(tc, bad_graph_semantics_are_named);
    tcase_add_test(tc, golden_self_test);
    tcase_add_test(tc, default_model_passes_its_self_test);
    suite_add_tcase(s, tc);
    return s;
}
