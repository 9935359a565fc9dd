/* kernels_avx2.c - AVX2 + FMA kernels, built with -mavx2 -mfma for this file only and
 * chosen at run time. Each has its reference twin in kernels_ref.c; tests compare them. */
#include <immintrin.h>
#include <math.h>
#include <string.h>

#include "kernels.h"
#include "winograd.h"

/* exp(x) for 8 floats, Cephes-style range reduction and polynomial, about 2 ulp. */
static inline __m256 exp8(__m256 x)
{
    x = _mm256_min_ps(_mm256_max_ps(x, _mm256_set1_ps(-87.3f)), _mm256_set1_ps(88.3f));
    __m256 fx = _mm256_floor_ps(
        _mm256_fmadd_ps(x, _mm256_set1_ps(1.44269504088896341f), _mm256_set1_ps(0.5f)));
    x = _mm256_fnmadd_ps(fx, _mm256_set1_ps(0.693359375f), x);
    x = _mm256_fnmadd_ps(fx, _mm256_set1_ps(-2.12194440e-4f), x);
    __m256 y = _mm256_set1_ps(1.9875691500e-4f);
    y = _mm256_fmadd_ps(y, x, _mm256_set1_ps(1.3981999507e-3f));
    y = _mm256_fmadd_ps(y, x, _mm256_set1_ps(8.3334519073e-3f));
    y = _mm256_fmadd_ps(y, x, _mm256_set1_ps(4.1665795894e-2f));
    y = _mm256_fmadd_ps(y, x, _mm256_set1_ps(1.6666665459e-1f));
    y = _mm256_fmadd_ps(y, x, _mm256_set1_ps(5.0000001201e-1f));
    y = _mm256_fmadd_ps(y, _mm256_mul_ps(x, x), _mm256_add_ps(x, _mm256_set1_ps(1.0f)));
    __m256i e =
        _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(fx), _mm256_set1_epi32(127)), 23);
    return _mm256_mul_ps(y, _mm256_castsi256_ps(e));
}

/* The activation of 8 values, same formulas as cvy_act1. */
static inline __m256 act8(__m256 v, const act_params *a)
{
    const __m256 zero = _mm256_setzero_ps(), one = _mm256_set1_ps(1.0f);
    switch (a->type) {
    case ACT_NONE: return v;
    case ACT_RELU: return _mm256_max_ps(v, zero);
    case ACT_CLIP:
        return _mm256_min_ps(_mm256_max_ps(v, _mm256_set1_ps(a->a)), _mm256_set1_ps(a->b));
    case ACT_LEAKY: {
        __m256 neg = _mm256_mul_ps(v, _mm256_set1_ps(a->a));
        return _mm256_blendv_ps(neg, v, _mm256_cmp_ps(v, zero, _CMP_GE_OQ));
    }
    case ACT_SIGMOID: return _mm256_div_ps(one, _mm256_add_ps(one, exp8(_mm256_sub_ps(zero, v))));
    case ACT_HARDSIGMOID: {
        __m256 t = _mm256_add_ps(_mm256_mul_ps(_mm256_set1_ps(a->a), v), _mm256_set1_ps(a->b));
        return _mm256_min_ps(_mm256_max_ps(t, zero), one);
    }
    case ACT_HARDSWISH: {
        __m256 t = _mm256_add_ps(_mm256_div_ps(v, _mm256_set1_ps(6.0f)), _mm256_set1_ps(0.5f));
        return _mm256_mul_ps(v, _mm256_min_ps(_mm256_max_ps(t, zero), one));
    }
    }
    return v;
}

static void avx2_act(const float *x, float *y, size_t n, const act_params *act)
{
    size_t i = 0;
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(y + i, act8(_mm256_loadu_ps(x + i), act));
    for (; i < n; i++) y[i] = cvy_act1(x[i], act);
}

static void avx2_bias_act(float *y, int rows, int cols, size_t ld, const float *bias,
                          const float *res, size_t res_ld, const act_params *act)
{
    for (int r = 0; r < rows; r++) {
        float *row = y + (size_t)r * ld;
        const float *rr = res ? res + (size_t)r * res_ld : NULL;
        float b = bias ? bias[r] : 0.0f;
        __m256 vb = _mm256_set1_ps(b);
        int j = 0;
        for (; j + 8 <= cols; j += 8) {
            __m256 v = _mm256_add_ps(_mm256_loadu_ps(row + j), vb);
            if (rr) v = _mm256_add_ps(v, _mm256_loadu_ps(rr + j));
            _mm256_storeu_ps(row + j, act8(v, act));
        }
        for (; j < cols; j++) {
            float v = row[j] + b;
            if (rr) v += rr[j];
            row[j] = cvy_act1(v, act);
        }
    }
}

/* 8 inputs at x[0], x[s], ..., x[7s] for stride s of 1 or 2. */
static inline __m256 load_strided(const float *x, int s)
{
    if (s == 1) return _mm256_loadu_ps(x);
    __m256 a = _mm256_loadu_ps(x), b = _mm256_loadu_ps(x + 8);
    __m256 ev = _mm256_shuffle_ps(a, b, _MM_SHUFFLE(2, 0, 2, 0));
    return _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(ev), _MM_SHUFFLE(3, 1, 2, 0)));
}

/* Output columns [lo, hi) whose every horizontal tap lies inside the input row. For stride 2
 * the 16-float loads also need room for one extra element past the last tap. */
static void interior(const conv_geom *g, int *lo, int *hi)
{
    int ext = (g->kw - 1) * g->dw;
    int l = (g->pl + g->sw - 1) / g->sw;
    int last_ok = g->w_in - 1 - ext + g->pl - (g->sw == 2 ? 1 : 0); /* ox*sw <= last_ok */
    int h = last_ok < 0 ? 0 : last_ok / g->sw + 1;
    if (h > g->w_out) h = g->w_out;
    if (l > h) l = h;
    *lo = l;
    *hi = h;
}

/* One phase row: zeros, then every other float from src + 2 * x0 + p - pl (two 8-float
 * loads, shuffle and lane permute per 8 outputs, scalar tail), then zeros. */
static void avx2_phase_row(const float *src, int n, int pl, int p, int wp, float *dst)
{
    int x0 = (pl - p + 1) / 2, x1 = (n + pl - p + 1) / 2; /* outputs with a source: x0 <= x1 */
    if (x0 > wp) x0 = wp;
    if (x1 > wp) x1 = wp;
    memset(dst, 0, (size_t)x0 * sizeof(float));
    const float *s = src + 2 * x0 + p - pl;
    int i = 0, m = x1 - x0;
    for (; i + 9 <= m; i += 8) { /* reads s[2i] to s[2i + 15] <= s[2m - 2] */
        __m256 a = _mm256_loadu_ps(s + 2 * i), b = _mm256_loadu_ps(s + 2 * i + 8);
        __m256 e = _mm256_shuffle_ps(a, b, 0x88); /* a0 a2 b0 b2 | a4 a6 b4 b6 */
        _mm256_storeu_ps(dst + x0 + i,
                         _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(e), 0xd8)));
    }
    for (; i < m; i++) dst[x0 + i] = s[2 * i];
    memset(dst + x1, 0, (size_t)(wp - x1) * sizeof(float));
}

static void avx2_phase_rows(const float *src, int n, int pl, int wp, float *dst0, float *dst1)
{
    avx2_phase_row(src, n, pl, 0, wp, dst0);
    if (dst1) avx2_phase_row(src, n, pl, 1, wp, dst1);
}

static void avx2_depthwise(const float *x, size_t xcs, const float *w, const float *bias, float *y,
                           size_t ycs, const conv_geom *g, int c0, int c1, const act_params *act)
{
    if (g->sw > 2) {
        cvy_kernels_ref()->depthwise(x, xcs, w, bias, y, ycs, g, c0, c1, act);
        return;
    }
    int lo, hi;
    interior(g, &lo, &hi);
    for (int c = c0; c < c1; c++) {
        const float *xc = x + (size_t)c * xcs;
        const float *wc = w + (size_t)c * g->kh * g->kw;
        float *yc = y + (size_t)c * ycs;
        float b = bias ? bias[c] : 0.0f;
        for (int oy = 0; oy < g->h_out; oy++) {
            float *yr = yc + (size_t)oy * g->w_out;
            for (int ox = 0; ox < g->w_out; ox++) {
                if (ox == lo) { /* vector interior */
                    for (; ox + 8 <= hi; ox += 8) {
                        __m256 acc = _mm256_setzero_ps();
                        for (int ky = 0; ky < g->kh; ky++) {
                            int iy = oy * g->sh - g->pt + ky * g->dh;
                            if (iy < 0 || iy >= g->h_in) continue;
                            const float *xr = xc + (size_t)iy * g->w_in + ox * g->sw - g->pl;
                            for (int kx = 0; kx < g->kw; kx++)
                                acc = _mm256_fmadd_ps(load_strided(xr + kx * g->dw, g->sw),
                                                      _mm256_set1_ps(wc[ky * g->kw + kx]), acc);
                        }
                        acc = _mm256_add_ps(acc, _mm256_set1_ps(b));
                        _mm256_storeu_ps(yr + ox, act8(acc, act));
                    }
                    if (ox >= g->w_out) break;
                }
                float acc = 0.0f;
                for (int ky = 0; ky < g->kh; ky++) {
                    int iy = oy * g->sh - g->pt + ky * g->dh;
                    if (iy < 0 || iy >= g->h_in) continue;
                    for (int kx = 0; kx < g->kw; kx++) {
                        int ix = ox * g->sw - g->pl + kx * g->dw;
                        if (ix < 0 || ix >= g->w_in) continue;
                        acc = fmaf(xc[(size_t)iy * g->w_in + ix], wc[ky * g->kw + kx], acc);
                    }
                }
                yr[ox] = cvy_act1(acc + b, act);
            }
        }
    }
}

/* 2x2 windows, stride 2, no padding, no dilation: the commonest pool, one output row at a
 * time: vertical max of two input rows, then the max of each horizontal pair; masked loads
 * for the row's tail. */
static void maxpool_2x2s2(const float *x, float *y, const conv_geom *g, int c0, int c1)
{
    const __m256i even = _mm256_setr_epi32(0, 2, 4, 6, 1, 3, 5, 7);
    for (int c = c0; c < c1; c++) {
        const float *xc = x + (size_t)c * g->h_in * g->w_in;
        float *yc = y + (size_t)c * g->h_out * g->w_out;
        for (int oy = 0; oy < g->h_out; oy++) {
            const float *r0 = xc + (size_t)(2 * oy) * g->w_in, *r1 = r0 + g->w_in;
            float *yr = yc + (size_t)oy * g->w_out;
            for (int ox = 0; ox < g->w_out; ox += 4) {
                int left = 2 * (g->w_out - ox); /* inputs still needed in this row */
                __m256i m = _mm256_cmpgt_epi32(_mm256_set1_epi32(left < 8 ? left : 8),
                                               _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
                __m256 v = _mm256_max_ps(_mm256_maskload_ps(r0 + 2 * ox, m),
                                         _mm256_maskload_ps(r1 + 2 * ox, m));
                v = _mm256_permutevar8x32_ps(v, even); /* evens | odds */
                __m128 p = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
                if (g->w_out - ox >= 4) {
                    _mm_storeu_ps(yr + ox, p);
                } else {
                    float t[4];
                    _mm_storeu_ps(t, p);
                    for (int q = 0; q < g->w_out - ox; q++) yr[ox + q] = t[q];
                }
            }
        }
    }
}

static void avx2_maxpool(const float *x, float *y, const conv_geom *g, int c0, int c1)
{
    if (g->kh == 2 && g->kw == 2 && g->sh == 2 && g->sw == 2 && g->dh == 1 && g->dw == 1 &&
        g->pt == 0 && g->pl == 0 && 2 * g->h_out <= g->h_in && 2 * g->w_out <= g->w_in) {
        maxpool_2x2s2(x, y, g, c0, c1);
        return;
    }
    if (g->sw > 2) {
        cvy_kernels_ref()->maxpool(x, y, g, c0, c1);
        return;
    }
    int lo, hi;
    interior(g, &lo, &hi);
    for (int c = c0; c < c1; c++) {
        const float *xc = x + (size_t)c * g->h_in * g->w_in;
        float *yc = y + (size_t)c * g->h_out * g->w_out;
        for (int oy = 0; oy < g->h_out; oy++) {
            float *yr = yc + (size_t)oy * g->w_out;
            for (int ox = 0; ox < g->w_out; ox++) {
                if (ox == lo) {
                    for (; ox + 8 <= hi; ox += 8) {
                        __m256 m = _mm256_set1_ps(-INFINITY);
                        for (int ky = 0; ky < g->kh; ky++) {
                            int iy = oy * g->sh - g->pt + ky * g->dh;
                            if (iy < 0 || iy >= g->h_in) continue;
                            const float *xr = xc + (size_t)iy * g->w_in + ox * g->sw - g->pl;
                            for (int kx = 0; kx < g->kw; kx++)
                                m = _mm256_max_ps(m, load_strided(xr + kx * g->dw, g->sw));
                        }
                        _mm256_storeu_ps(yr + ox, m);
                    }
                    if (ox >= g->w_out) break;
                }
                float m = -INFINITY;
                for (int ky = 0; ky < g->kh; ky++) {
                    int iy = oy * g->sh - g->pt + ky * g->dh;
                    if (iy < 0 || iy >= g->h_in) continue;
                    for (int kx = 0; kx < g->kw; kx++) {
                        int ix = ox * g->sw - g->pl + kx * g->dw;
                        if (ix < 0 || ix >= g->w_in) continue;
                        float v = xc[(size_t)iy * g->w_in + ix];
                        if (v > m) m = v;
                    }
                }
                yr[ox] = m;
            }
        }
    }
}

static void avx2_avgpool(const float *x, float *y, const conv_geom *g, int c0, int c1,
                         int count_pad)
{
    cvy_kernels_ref()->avgpool(x, y, g, c0, c1, count_pad);
}

static void avx2_gap(const float *x, float *y, int channels, int hw)
{
    for (int c = 0; c < channels; c++) {
        const float *xc = x + (size_t)c * hw;
        __m256 acc = _mm256_setzero_ps();
        int i = 0;
        for (; i + 8 <= hw; i += 8) acc = _mm256_add_ps(acc, _mm256_loadu_ps(xc + i));
        __m128 s4 = _mm_add_ps(_mm256_castps256_ps128(acc), _mm256_extractf128_ps(acc, 1));
        s4 = _mm_add_ps(s4, _mm_movehl_ps(s4, s4));
        s4 = _mm_add_ss(s4, _mm_movehdup_ps(s4));
        float s = _mm_cvtss_f32(s4);
        for (; i < hw; i++) s += xc[i];
        y[c] = s / (float)hw;
    }
}

static void avx2_binary(const float *a, const float *b, float *y, size_t n, int mul)
{
    size_t i = 0;
    if (mul)
        for (; i + 8 <= n; i += 8)
            _mm256_storeu_ps(y + i, _mm256_mul_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i)));
    else
        for (; i + 8 <= n; i += 8)
            _mm256_storeu_ps(y + i, _mm256_add_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i)));
    for (; i < n; i++) y[i] = mul ? a[i] * b[i] : a[i] + b[i];
}

static void avx2_binary_chan(const float *a, const float *b, float *y, int channels, int hw,
                             int mul)
{
    for (int c = 0; c < channels; c++) {
        const float *ac = a + (size_t)c * hw;
        float *yc = y + (size_t)c * hw;
        __m256 v = _mm256_set1_ps(b[c]);
        int i = 0;
        if (mul)
            for (; i + 8 <= hw; i += 8)
                _mm256_storeu_ps(yc + i, _mm256_mul_ps(_mm256_loadu_ps(ac + i), v));
        else
            for (; i + 8 <= hw; i += 8)
                _mm256_storeu_ps(yc + i, _mm256_add_ps(_mm256_loadu_ps(ac + i), v));
        for (; i < hw; i++) yc[i] = mul ? ac[i] * b[c] : ac[i] + b[c];
    }
}

/* Horizontal sum of 8 lanes in a fixed order. */
static inline float hsum8(__m256 v)
{
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

/* Lanes [0, r) set, for masked loads of a k tail of r < 8 floats. */
static inline __m256i tail_mask(int r)
{
    return _mm256_cmpgt_epi32(_mm256_set1_epi32(r), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}

/* One element: the arithmetic every block variant below repeats per element. */
static void dot1x1(const float *x, int k, const float *w, float out[1][1])
{
    __m256 acc = _mm256_setzero_ps();
    int q = 0;
    for (; q + 8 <= k; q += 8)
        acc = _mm256_fmadd_ps(_mm256_loadu_ps(x + q), _mm256_loadu_ps(w + q), acc);
    if (q < k) {
        __m256i m = tail_mask(k - q);
        acc = _mm256_fmadd_ps(_mm256_maskload_ps(x + q, m), _mm256_maskload_ps(w + q, m), acc);
    }
    out[0][0] = hsum8(acc);
}

/* 4 images x 4 outputs: 16 accumulators, each loaded vector used four times. */
static void dot4x4(const float *x, int k, const float *w, float out[4][4])
{
    __m256 acc[4][4];
#pragma GCC unroll 4
    for (int i = 0; i < 4; i++)
#pragma GCC unroll 4
        for (int o = 0; o < 4; o++) acc[i][o] = _mm256_setzero_ps();
    int q = 0;
    for (; q + 8 <= k; q += 8) {
        __m256 wv[4], xv;
#pragma GCC unroll 4
        for (int o = 0; o < 4; o++) wv[o] = _mm256_loadu_ps(w + (size_t)o * k + q);
#pragma GCC unroll 4
        for (int i = 0; i < 4; i++) {
            xv = _mm256_loadu_ps(x + (size_t)i * k + q);
#pragma GCC unroll 4
            for (int o = 0; o < 4; o++) acc[i][o] = _mm256_fmadd_ps(xv, wv[o], acc[i][o]);
        }
    }
    if (q < k) {
        __m256i m = tail_mask(k - q);
#pragma GCC unroll 4
        for (int i = 0; i < 4; i++) {
            __m256 xv = _mm256_maskload_ps(x + (size_t)i * k + q, m);
#pragma GCC unroll 4
            for (int o = 0; o < 4; o++)
                acc[i][o] =
                    _mm256_fmadd_ps(xv, _mm256_maskload_ps(w + (size_t)o * k + q, m), acc[i][o]);
        }
    }
#pragma GCC unroll 4
    for (int i = 0; i < 4; i++)
#pragma GCC unroll 4
        for (int o = 0; o < 4; o++) out[i][o] = hsum8(acc[i][o]);
}

/* 1 image x 4 outputs: the x vector is loaded once for four dot products. */
static void dot1x4(const float *x, int k, const float *w, float out[1][4])
{
    __m256 acc[4] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(),
                     _mm256_setzero_ps()};
    int q = 0;
    for (; q + 8 <= k; q += 8) {
        __m256 xv = _mm256_loadu_ps(x + q);
#pragma GCC unroll 4
        for (int o = 0; o < 4; o++)
            acc[o] = _mm256_fmadd_ps(xv, _mm256_loadu_ps(w + (size_t)o * k + q), acc[o]);
    }
    if (q < k) {
        __m256i m = tail_mask(k - q);
        __m256 xv = _mm256_maskload_ps(x + q, m);
        for (int o = 0; o < 4; o++)
            acc[o] = _mm256_fmadd_ps(xv, _mm256_maskload_ps(w + (size_t)o * k + q, m), acc[o]);
    }
    for (int o = 0; o < 4; o++) out[0][o] = hsum8(acc[o]);
}

#include "fc_blocked.h"

/* row[t] = src[(ox + t) * sw + base] for t < run, zero where the index leaves [0, w_in):
 * branch-free, 8 outputs per step, lanes outside the row masked off (masked lanes of a
 * masked load neither read memory nor fault). */
static void im2col_run(float *row, const float *src, int ox, int run, int sw, int base, int w_in)
{
    const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    for (int t = 0; t < run; t += 8) {
        __m256i o = _mm256_add_epi32(_mm256_set1_epi32(ox + t), lane);
        __m256i ix =
            _mm256_add_epi32(_mm256_mullo_epi32(o, _mm256_set1_epi32(sw)), _mm256_set1_epi32(base));
        __m256i ok = _mm256_and_si256(_mm256_cmpgt_epi32(ix, _mm256_set1_epi32(-1)),
                                      _mm256_cmpgt_epi32(_mm256_set1_epi32(w_in), ix));
        __m256 v;
        if (sw == 1)
            v = _mm256_maskload_ps(src + (ox + t + base), ok);
        else
            v = _mm256_mask_i32gather_ps(_mm256_setzero_ps(), src, ix, _mm256_castsi256_ps(ok), 4);
        __m256i keep = _mm256_cmpgt_epi32(_mm256_set1_epi32(run - t), lane);
        _mm256_maskstore_ps(row + t, keep, v);
    }
}

static void avx2_im2col(const float *x, float *col, const conv_geom *g, int cin_g, int col0,
                        int col1)
{
    int ncols = col1 - col0;
    for (int ic = 0; ic < cin_g; ic++) {
        const float *xc = x + (size_t)ic * g->h_in * g->w_in;
        for (int ky = 0; ky < g->kh; ky++)
            for (int kx = 0; kx < g->kw; kx++) {
                float *row = col + ((size_t)(ic * g->kh + ky) * g->kw + kx) * ncols;
                int oy = col0 / g->w_out, ox = col0 % g->w_out, base = kx * g->dw - g->pl;
                for (int j = 0; j < ncols; oy++, ox = 0) {
                    int run = g->w_out - ox < ncols - j ? g->w_out - ox : ncols - j;
                    int iy = oy * g->sh - g->pt + ky * g->dh;
                    if (iy < 0 || iy >= g->h_in)
                        memset(row + j, 0, (size_t)run * sizeof(float));
                    else
                        im2col_run(row + j, xc + (size_t)iy * g->w_in, ox, run, g->sw, base,
                                   g->w_in);
                    j += run;
                }
            }
    }
}

static const cvy_kernels AVX2 = {
    .name = "avx2",
    .bias_act = avx2_bias_act,
    .act = avx2_act,
    .depthwise = avx2_depthwise,
    .maxpool = avx2_maxpool,
    .avgpool = avx2_avgpool,
    .gap = avx2_gap,
    .binary = avx2_binary,
    .binary_chan = avx2_binary_chan,
    .fc = fc_blocked,
    .phase_rows = avx2_phase_rows,
    .im2col = avx2_im2col,
    .wino_input = wino_input_tiles,
    .wino_output = wino_output_tiles,
};

const cvy_kernels *cvy_kernels_avx2(void) { return &AVX2; }
