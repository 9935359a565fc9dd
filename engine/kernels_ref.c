/* kernels_ref.c - plain C reference kernels. Straightforward loops in the order the maths
 * reads; the whole project builds with -ffp-contract=off, so no FMA sneaks in here. */
#include "kernels.h"
#include "winograd.h"

#include <float.h>
#include <math.h>
#include <string.h>

float cvy_act1(float v, const act_params *act)
{
    switch (act->type) {
    case ACT_NONE: return v;
    case ACT_RELU: return v > 0.0f ? v : 0.0f;
    case ACT_CLIP: return v < act->a ? act->a : (v > act->b ? act->b : v);
    case ACT_LEAKY: return v >= 0.0f ? v : act->a * v;
    case ACT_SIGMOID: return 1.0f / (1.0f + expf(-v));
    case ACT_HARDSIGMOID: {
        float t = act->a * v + act->b;
        return t < 0.0f ? 0.0f : (t > 1.0f ? 1.0f : t);
    }
    case ACT_HARDSWISH: {
        float t = v / 6.0f + 0.5f;
        t = t < 0.0f ? 0.0f : (t > 1.0f ? 1.0f : t);
        return v * t;
    }
    }
    return v;
}

static void ref_bias_act(float *y, int rows, int cols, size_t ld, const float *bias,
                         const float *res, size_t res_ld, const act_params *act)
{
    for (int r = 0; r < rows; r++) {
        float *row = y + (size_t)r * ld;
        const float *rr = res ? res + (size_t)r * res_ld : NULL;
        float b = bias ? bias[r] : 0.0f;
        for (int j = 0; j < cols; j++) {
            float v = row[j] + b;
            if (rr) v += rr[j];
            row[j] = cvy_act1(v, act);
        }
    }
}

static void ref_act(const float *x, float *y, size_t n, const act_params *act)
{
    for (size_t i = 0; i < n; i++) y[i] = cvy_act1(x[i], act);
}

void cvy_conv_ref(const float *x, const float *w, const float *bias, float *y, const conv_geom *g,
                  const act_params *act)
{
    int cin_g = g->c_in / g->group, cout_g = g->c_out / g->group;
    for (int oc = 0; oc < g->c_out; oc++) {
        int grp = oc / cout_g;
        for (int oy = 0; oy < g->h_out; oy++) {
            for (int ox = 0; ox < g->w_out; ox++) {
                float acc = 0.0f;
                for (int ic = 0; ic < cin_g; ic++) {
                    const float *xc = x + (size_t)(grp * cin_g + ic) * g->h_in * g->w_in;
                    const float *wc = w + ((size_t)oc * cin_g + ic) * g->kh * g->kw;
                    for (int ky = 0; ky < g->kh; ky++) {
                        int iy = oy * g->sh - g->pt + ky * g->dh;
                        if (iy < 0 || iy >= g->h_in) continue;
                        for (int kx = 0; kx < g->kw; kx++) {
                            int ix = ox * g->sw - g->pl + kx * g->dw;
                            if (ix < 0 || ix >= g->w_in) continue;
                            acc += xc[(size_t)iy * g->w_in + ix] * wc[ky * g->kw + kx];
                        }
                    }
                }
                if (bias) acc += bias[oc];
                y[((size_t)oc * g->h_out + oy) * g->w_out + ox] = cvy_act1(acc, act);
            }
        }
    }
}

static void ref_phase_rows(const float *src, int n, int pl, int wp, float *dst0, float *dst1)
{
    for (int x = 0; x < wp; x++)
        for (int p = 0; p < 2; p++) {
            float *d = p ? dst1 : dst0;
            int i = 2 * x + p - pl;
            if (d) d[x] = i >= 0 && i < n ? src[i] : 0.0f;
        }
}

static void ref_depthwise(const float *x, size_t xcs, const float *w, const float *bias, float *y,
                          size_t ycs, const conv_geom *g, int c0, int c1, const act_params *act)
{
    for (int c = c0; c < c1; c++) {
        const float *xc = x + (size_t)c * xcs;
        const float *wc = w + (size_t)c * g->kh * g->kw;
        float *yc = y + (size_t)c * ycs;
        for (int oy = 0; oy < g->h_out; oy++)
            for (int ox = 0; ox < g->w_out; ox++) {
                float acc = 0.0f;
                for (int ky = 0; ky < g->kh; ky++) {
                    int iy = oy * g->sh - g->pt + ky * g->dh;
                    if (iy < 0 || iy >= g->h_in) continue;
                    for (int kx = 0; kx < g->kw; kx++) {
                        int ix = ox * g->sw - g->pl + kx * g->dw;
                        if (ix < 0 || ix >= g->w_in) continue;
                        acc += xc[(size_t)iy * g->w_in + ix] * wc[ky * g->kw + kx];
                    }
                }
                if (bias) acc += bias[c];
                yc[(size_t)oy * g->w_out + ox] = cvy_act1(acc, act);
            }
    }
}

static void ref_maxpool(const float *x, float *y, const conv_geom *g, int c0, int c1)
{
    for (int c = c0; c < c1; c++) {
        const float *xc = x + (size_t)c * g->h_in * g->w_in;
        float *yc = y + (size_t)c * g->h_out * g->w_out;
        for (int oy = 0; oy < g->h_out; oy++)
            for (int ox = 0; ox < g->w_out; ox++) {
                float m = -INFINITY;
                for (int ky = 0; ky < g->kh; ky++) {
                    int iy = oy * g->sh - g->pt + ky * g->dh;
                    if (iy < 0 || iy >= g->h_in) continue;
                    for (int kx = 0; kx < g->kw; kx++) {
                        int ix = ox * g->sw - g->pl + kx * g->dw;
                        if (ix < 0 || ix >= g->w_in) continue;
                        float v = xc[(size_t)iy * g->w_in + ix];
                        if (v > m || v != v) m = v;
                    }
                }
                yc[(size_t)oy * g->w_out + ox] = m;
            }
    }
}

/* ONNX AveragePool: with count_include_pad the divisor counts the window's cells inside the
 * padded input [-pt, H+pb) x [-pl, W+pr), never those a ceil_mode window adds beyond it. */
static void ref_avgpool(const float *x, float *y, const conv_geom *g, int c0, int c1, int count_pad)
{
    for (int c = c0; c < c1; c++) {
        const float *xc = x + (size_t)c * g->h_in * g->w_in;
        float *yc = y + (size_t)c * g->h_out * g->w_out;
        for (int oy = 0; oy < g->h_out; oy++)
            for (int ox = 0; ox < g->w_out; ox++) {
                float acc = 0.0f;
                int n = 0, npad = 0;
                for (int ky = 0; ky < g->kh; ky++) {
                    int iy = oy * g->sh - g->pt + ky;
                    for (int kx = 0; kx < g->kw; kx++) {
                        int ix = ox * g->sw - g->pl + kx;
                        if (iy >= 0 && iy < g->h_in && ix >= 0 && ix < g->w_in) {
                            acc += xc[(size_t)iy * g->w_in + ix];
                            n++;
                        } else if (iy < g->h_in + g->pb && ix < g->w_in + g->pr) {
                            npad++;
                        }
                    }
                }
                int div = count_pad ? n + npad : n;
                yc[(size_t)oy * g->w_out + ox] = div > 0 ? acc / (float)div : 0.0f;
            }
    }
}

static void ref_gap(const float *x, float *y, int channels, int hw)
{
    for (int c = 0; c < channels; c++) {
        float acc = 0.0f;
        for (int i = 0; i < hw; i++) acc += x[(size_t)c * hw + i];
        y[c] = acc / (float)hw;
    }
}

static void ref_binary(const float *a, const float *b, float *y, size_t n, int mul)
{
    if (mul)
        for (size_t i = 0; i < n; i++) y[i] = a[i] * b[i];
    else
        for (size_t i = 0; i < n; i++) y[i] = a[i] + b[i];
}

static void ref_binary_chan(const float *a, const float *b, float *y, int channels, int hw, int mul)
{
    for (int c = 0; c < channels; c++) {
        const float *ac = a + (size_t)c * hw;
        float *yc = y + (size_t)c * hw;
        float v = b[c];
        if (mul)
            for (int i = 0; i < hw; i++) yc[i] = ac[i] * v;
        else
            for (int i = 0; i < hw; i++) yc[i] = ac[i] + v;
    }
}

/* Writes row[t] = src[(ox + t) * sw + base] for t < run, zero where the index falls outside
 * [0, w_in): a zero prefix, a copied middle (memcpy for stride 1), a zero suffix. */
static void im2col_run(float *row, const float *src, int ox, int run, int sw, int base, int w_in)
{
    int lo = base >= 0 ? 0 : (-base + sw - 1) / sw;             /* first ox with ix >= 0 */
    int hi = w_in - 1 - base < 0 ? -1 : (w_in - 1 - base) / sw; /* last ox with ix < w_in */
    int a = lo > ox ? lo : ox, b = hi + 1 < ox + run ? hi + 1 : ox + run;
    if (b < a) b = a;
    if (a > ox + run) a = b = ox + run;
    /* plain loops: runs are one output row, usually too short for memcpy/memset calls */
    for (int o = ox; o < a; o++) row[o - ox] = 0.0f;
    if (sw == 1)
        for (int o = a; o < b; o++) row[o - ox] = src[o + base];
    else
        for (int o = a; o < b; o++) row[o - ox] = src[o * sw + base];
    for (int o = b; o < ox + run; o++) row[o - ox] = 0.0f;
}

void cvy_im2col(const float *x, float *col, const conv_geom *g, int cin_g, int col0, int col1)
{
    int ncols = col1 - col0;
    for (int ic = 0; ic < cin_g; ic++) {
        const float *xc = x + (size_t)ic * g->h_in * g->w_in;
        for (int ky = 0; ky < g->kh; ky++)
            for (int kx = 0; kx < g->kw; kx++) {
                float *row = col + ((size_t)(ic * g->kh + ky) * g->kw + kx) * ncols;
                int oy = col0 / g->w_out, ox = col0 % g->w_out, base = kx * g->dw - g->pl;
                for (int j = 0; j < ncols; oy++, ox = 0) { /* one output row at a time */
                    int run = g->w_out - ox < ncols - j ? g->w_out - ox : ncols - j;
                    int iy = oy * g->sh - g->pt + ky * g->dh;
                    if (iy < 0 || iy >= g->h_in)
                        for (int t = 0; t < run; t++) row[j + t] = 0.0f;
                    else
                        im2col_run(row + j, xc + (size_t)iy * g->w_in, ox, run, g->sw, base,
                                   g->w_in);
                    j += run;
                }
            }
    }
}

void cvy_softmax(const float *x, float *y, int n)
{
    float m = -INFINITY;
    for (int i = 0; i < n; i++)
        if (x[i] > m) m = x[i];
    double sum = 0.0;
    for (int i = 0; i < n; i++) {
        y[i] = expf(x[i] - m);
        sum += y[i];
    }
    float inv = (float)(1.0 / sum);
    for (int i = 0; i < n; i++) y[i] *= inv;
}

static void ref_fc(const float *x, int n, int k, const float *w, int o0, int o1, const float *bias,
                   float *y, size_t ldy, const act_params *act)
{
    for (int i = 0; i < n; i++)
        for (int o = o0; o < o1; o++) {
            float acc = 0.0f;
            for (int q = 0; q < k; q++) acc += x[(size_t)i * k + q] * w[(size_t)o * k + q];
            y[(size_t)i * ldy + o] = cvy_act1(acc + bias[o], act);
        }
}

static const cvy_kernels REF = {
    .name = "ref",
    .bias_act = ref_bias_act,
    .act = ref_act,
    .depthwise = ref_depthwise,
    .phase_rows = ref_phase_rows,
    .maxpool = ref_maxpool,
    .avgpool = ref_avgpool,
    .gap = ref_gap,
    .binary = ref_binary,
    .binary_chan = ref_binary_chan,
    .fc = ref_fc,
    .im2col = cvy_im2col,
    .wino_input = wino_input_tiles,
    .wino_output = wino_output_tiles,
};

const cvy_kernels *cvy_kernels_ref(void) { return &REF; }
