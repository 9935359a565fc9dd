/* kernels_avx512.c - AVX-512 kernels, built with AVX-512 flags for this file only and chosen
 * at run time. The table starts as a copy of the AVX2 one and replaces what has an AVX-512
 * version: the two convolution GEMMs (OpenBLAS is pinned to its AVX2 kernel here), fully
 * connected layers, depthwise convolution, max and average pooling and the Winograd
 * transforms. */
#include <immintrin.h>
#include <math.h>
#include <pthread.h>

#include "kernels.h"

#define MR 8         /* rows (output channels) per micro-tile: divides common channel counts */
#define NV 3         /* zmm vectors of columns per micro-tile */
#define NR (16 * NV) /* columns (output pixels) per micro-tile */

/* exp(x) for 16 floats: the same reduction and polynomial as the AVX2 kernel. */
static inline __m512 exp16(__m512 x)
{
    x = _mm512_min_ps(_mm512_max_ps(x, _mm512_set1_ps(-87.3f)), _mm512_set1_ps(88.3f));
    __m512 fx = _mm512_roundscale_ps(
        _mm512_fmadd_ps(x, _mm512_set1_ps(1.44269504088896341f), _mm512_set1_ps(0.5f)),
        _MM_FROUND_TO_NEG_INF | _MM_FROUND_NO_EXC);
    x = _mm512_fnmadd_ps(fx, _mm512_set1_ps(0.693359375f), x);
    x = _mm512_fnmadd_ps(fx, _mm512_set1_ps(-2.12194440e-4f), x);
    __m512 y = _mm512_set1_ps(1.9875691500e-4f);
    y = _mm512_fmadd_ps(y, x, _mm512_set1_ps(1.3981999507e-3f));
    y = _mm512_fmadd_ps(y, x, _mm512_set1_ps(8.3334519073e-3f));
    y = _mm512_fmadd_ps(y, x, _mm512_set1_ps(4.1665795894e-2f));
    y = _mm512_fmadd_ps(y, x, _mm512_set1_ps(1.6666665459e-1f));
    y = _mm512_fmadd_ps(y, x, _mm512_set1_ps(5.0000001201e-1f));
    y = _mm512_fmadd_ps(y, _mm512_mul_ps(x, x), _mm512_add_ps(x, _mm512_set1_ps(1.0f)));
    __m512i e =
        _mm512_slli_epi32(_mm512_add_epi32(_mm512_cvtps_epi32(fx), _mm512_set1_epi32(127)), 23);
    return _mm512_mul_ps(y, _mm512_castsi512_ps(e));
}

/* The activation of 16 values, same formulas as cvy_act1. */
static inline __m512 act16(__m512 v, const act_params *a)
{
    const __m512 zero = _mm512_setzero_ps(), one = _mm512_set1_ps(1.0f);
    switch (a->type) {
    case ACT_NONE: return v;
    case ACT_RELU: return _mm512_max_ps(v, zero);
    case ACT_CLIP:
        return _mm512_min_ps(_mm512_max_ps(v, _mm512_set1_ps(a->a)), _mm512_set1_ps(a->b));
    case ACT_LEAKY: {
        __mmask16 neg = _mm512_cmp_ps_mask(v, zero, _CMP_LT_OQ);
        return _mm512_mask_mul_ps(v, neg, v, _mm512_set1_ps(a->a));
    }
    case ACT_SIGMOID: return _mm512_div_ps(one, _mm512_add_ps(one, exp16(_mm512_sub_ps(zero, v))));
    case ACT_HARDSIGMOID: {
        __m512 t = _mm512_add_ps(_mm512_mul_ps(_mm512_set1_ps(a->a), v), _mm512_set1_ps(a->b));
        return _mm512_min_ps(_mm512_max_ps(t, zero), one);
    }
    case ACT_HARDSWISH: {
        __m512 t = _mm512_add_ps(_mm512_div_ps(v, _mm512_set1_ps(6.0f)), _mm512_set1_ps(0.5f));
        return _mm512_mul_ps(v, _mm512_min_ps(_mm512_max_ps(t, zero), one));
    }
    }
    return v;
}

/* act16 with the activation type a compile-time constant after inlining (-1: any type);
 * lo, hi hold the clip bounds. */
static inline __attribute__((always_inline)) __m512 act16k(__m512 v, int type, __m512 lo, __m512 hi,
                                                           const act_params *a)
{
    if (type == ACT_CLIP) return _mm512_min_ps(_mm512_max_ps(v, lo), hi);
    if (type == ACT_RELU) return _mm512_max_ps(v, _mm512_setzero_ps());
    if (type == ACT_NONE) return v;
    return act16(v, a);
}

/* Calls CALL(type) with the activation type as a constant for the common ones. */
#define BY_ACT(act, CALL)                                                                          \
    switch ((act)->type) {                                                                         \
    case ACT_CLIP: CALL(ACT_CLIP); break;                                                          \
    case ACT_RELU: CALL(ACT_RELU); break;                                                          \
    case ACT_NONE: CALL(ACT_NONE); break;                                                          \
    default: CALL(-1); break;                                                                      \
    }

/* Panels of mr rows: the panel of rows [r0, r0 + mr) holds, from r0 * k, for each q < k the
 * mr values a[r0 + r][q] (zero rows past m): one broadcast or one vector per q. */
static void pack_panels(const float *a, int m, int k, int mr, float *out)
{
    for (int p = 0; p < (m + mr - 1) / mr; p++)
        for (int q = 0; q < k; q++)
            for (int r = 0; r < mr; r++) {
                int row = p * mr + r;
                out[((size_t)p * k + q) * mr + r] = row < m ? a[(size_t)row * k + q] : 0.0f;
            }
}

/* Floats pack_panels writes for an m x k matrix in panels of mr rows. */
static size_t panels_size(int m, int k, int mr)
{
    return (size_t)((m + mr - 1) / mr) * mr * (size_t)k;
}

static size_t packed_size(int m, int k) { return panels_size(m, k, MR); }
static void pack(const float *a, int m, int k, float *out) { pack_panels(a, m, k, MR, out); }

static inline __mmask16 cols_mask(int n) { return n >= 16 ? 0xffff : (__mmask16)((1u << n) - 1); }

/* Where a strip of columns [j, j + nc) lands in the output: from offset o, vector v's
 * columns go to o + at[v] under mask vm[v]; with period set and a padding column in the
 * strip the valid columns are packed (compress on store, expand on load). */
typedef struct strip_map {
    size_t o;
    __mmask16 vm[NV];
    int at[NV];
    int packed;
} strip_map;

/* Output position of B column j: j itself, or with a period the number of valid columns
 * before it (the first valid one at or after it). */
static size_t out_pos(const gemm_b *bs, int j)
{
    if (!bs->period) return (size_t)j;
    int x = j % bs->period;
    return (size_t)(j / bs->period) * bs->valid + (size_t)(x < bs->valid ? x : bs->valid);
}

static void strip_map_init(strip_map *sm, const gemm_b *bs, int j, int nc)
{
    sm->o = out_pos(bs, j);
    sm->packed = bs->period != 0;
    for (int v = 0; v < NV; v++) {
        sm->vm[v] = nc > 16 * v ? cols_mask(nc - 16 * v) : 0;
        sm->at[v] = 16 * v;
    }
    if (!bs->period) return;
    int x = j % bs->period;
    if (x + nc <= bs->valid) { /* no padding column in the strip: plain stores (ResNet-18 1%) */
        sm->packed = 0;
        return;
    }
    uint64_t bits = 0;
    for (int l = 0, xl = x; l < nc; l++, xl = xl + 1 == bs->period ? 0 : xl + 1)
        if (xl < bs->valid) bits |= 1ull << l;
    for (int v = 0; v < NV; v++) {
        sm->vm[v] = (__mmask16)(bits >> (16 * v));
        sm->at[v] = v ? sm->at[v - 1] + __builtin_popcount(sm->vm[v - 1]) : 0;
    }
}

/* Copies rows [q0, q0 + kc) of B's columns [j, j + nc) into bp, NR floats per row, zeros
 * past nc (the prologue, when set, makes them something else: those columns are dropped),
 * so the micro-kernel reads one contiguous, L1-resident strip. The prologue rounds the
 * product and the sum apart, as the depthwise kernel does for a standalone batch-norm, so
 * folding it changes no result. */
static void pack_strip(const gemm_b *bs, int j, int nc, int q0, int kc, float *bp)
{
    __mmask16 mk[NV];
    for (int v = 0; v < NV; v++) mk[v] = nc > 16 * v ? cols_mask(nc - 16 * v) : 0;
    for (int q = 0; q < kc; q++) {
        const float *src =
            bs->off ? bs->b + bs->off[q0 + q] + j : bs->b + (size_t)(q0 + q) * bs->ldb + j;
        float *dst = bp + (size_t)q * NR;
        /* the next strip's part of this row: B rows lie a map apart, too many streams for
         * the hardware prefetcher (DenseNet-121 b1 6% faster, SqueezeNet, ResNet-50 2%) */
        for (int v = 0; v < NV; v++) _mm_prefetch((const char *)(src + NR + 16 * v), _MM_HINT_T0);
        if (!bs->pre_scale) {
            for (int v = 0; v < NV; v++)
                _mm512_store_ps(dst + 16 * v, _mm512_maskz_loadu_ps(mk[v], src + 16 * v));
            continue;
        }
        __m512 sc = _mm512_set1_ps(bs->pre_scale[q0 + q]),
               sh = _mm512_set1_ps(bs->pre_shift[q0 + q]);
        for (int v = 0; v < NV; v++)
            _mm512_store_ps(
                dst + 16 * v,
                act16(_mm512_add_ps(_mm512_mul_ps(_mm512_maskz_loadu_ps(mk[v], src + 16 * v), sc),
                                    sh),
                      bs->pre_act));
    }
}

/* The last k block's stores: bias, then residual, then activation, with the activation type
 * (-1: any) and the packing of the columns (compress on store) constants after inlining and
 * the masks and offsets hoisted out of the row loop (per-vector branches cost more than the
 * FMAs of a short k). */
static inline __attribute__((always_inline)) void
epi_last(__m512 acc[NV][MR], const int live, int mr, const strip_map *sm, float *c, size_t ldc,
         const float *bias, const float *res, size_t ldres, const int type, const int packed,
         const act_params *act)
{
    const __m512 lo = _mm512_set1_ps(act->a), hi = _mm512_set1_ps(act->b);
    __mmask16 vm[NV];
    size_t at[NV];
    for (int v = 0; v < NV; v++) vm[v] = sm->vm[v], at[v] = sm->o + (size_t)sm->at[v];
#pragma GCC unroll 8
    for (int r = 0; r < MR; r++) {
        if (r >= mr) break;
        const __m512 vb = _mm512_set1_ps(bias ? bias[r] : 0.0f);
        float *cr = c + (size_t)r * ldc;
        const float *rr = res ? res + (size_t)r * ldres : NULL;
#pragma GCC unroll 3
        for (int v = 0; v < live; v++) {
            __m512 x = _mm512_add_ps(acc[v][r], vb);
            if (rr)
                x = _mm512_add_ps(x, packed ? _mm512_maskz_expandloadu_ps(vm[v], rr + at[v])
                                            : _mm512_maskz_loadu_ps(vm[v], rr + at[v]));
            x = act16k(x, type, lo, hi, act);
            if (packed)
                _mm512_mask_compressstoreu_ps(cr + at[v], vm[v], x);
            else
                _mm512_mask_storeu_ps(cr + at[v], vm[v], x);
        }
    }
}

/* One micro-tile over a packed strip: mr <= MR rows, LIVE vectors of columns, kc rows of k.
 * first: start from zero, else from the partial sums stored in c; last: apply bias, residual
 * and activation, else store the partial sums. Summation stays in q order either way. */
#define TILE_BODY(LIVE)                                                                            \
    do {                                                                                           \
        __m512 acc[NV][MR];                                                                        \
        const int nlive = (LIVE);                                                                  \
        _Pragma("GCC unroll 8") for (int r = 0; r < MR; r++)                                       \
            _Pragma("GCC unroll 3") for (int v = 0; v < LIVE; v++) acc[v][r] =                     \
                first || r >= mr ? _mm512_setzero_ps() : load_part(sm, c + (size_t)r * ldc, v);    \
        for (int q = 0; q < kc; q++) {                                                             \
            const float *bq = bp + (size_t)q * NR;                                                 \
            __m512 bv[NV];                                                                         \
            _Pragma("GCC unroll 3") for (int v = 0; v < LIVE; v++) bv[v] =                         \
                _mm512_load_ps(bq + 16 * v);                                                       \
            const float *aq = ap + (size_t)q * MR;                                                 \
            _mm_prefetch((const char *)(aq + PF_AHEAD), _MM_HINT_T0);                              \
            _Pragma("GCC unroll 8") for (int r = 0; r < MR; r++)                                   \
            {                                                                                      \
                __m512 av = _mm512_set1_ps(aq[r]);                                                 \
                _Pragma("GCC unroll 3") for (int v = 0; v < LIVE; v++) acc[v][r] =                 \
                    _mm512_fmadd_ps(av, bv[v], acc[v][r]);                                         \
            }                                                                                      \
        }                                                                                          \
        if (last && sm->packed) {                                                                  \
            BY_ACT(act, EPI_PACKED)                                                                \
        } else if (last) {                                                                         \
            BY_ACT(act, EPI_PLAIN)                                                                 \
        } else                                                                                     \
            _Pragma("GCC unroll 8") for (int r = 0; r < MR; r++)                                   \
            {                                                                                      \
                if (r >= mr) break;                                                                \
                _Pragma("GCC unroll 3") for (int v = 0; v < LIVE; v++)                             \
                    store_part(sm, c + (size_t)r * ldc, v, acc[v][r]);                             \
            }                                                                                      \
    } while (0)
#define EPI_PLAIN(T)  epi_last(acc, nlive, mr, sm, c, ldc, bias, res, ldres, T, 0, act)
#define EPI_PACKED(T) epi_last(acc, nlive, mr, sm, c, ldc, bias, res, ldres, T, 1, act)

#define PF_AHEAD 256 /* floats of packed A prefetched ahead: weights often come from memory */

static inline __m512 load_part(const strip_map *sm, const float *cr, int v)
{
    if (!sm->vm[v]) return _mm512_setzero_ps();
    const float *p = cr + sm->o + sm->at[v];
    return sm->packed ? _mm512_maskz_expandloadu_ps(sm->vm[v], p)
                      : _mm512_maskz_loadu_ps(sm->vm[v], p);
}

/* Stores partial sums (a k block before the last) where load_part reads them back. */
static inline void store_part(const strip_map *sm, float *cr, int v, __m512 x)
{
    if (!sm->vm[v]) return;
    float *p = cr + sm->o + sm->at[v];
    if (sm->packed)
        _mm512_mask_compressstoreu_ps(p, sm->vm[v], x);
    else
        _mm512_mask_storeu_ps(p, sm->vm[v], x);
}

static void tile(const float *ap, int kc, const float *bp, int live, const strip_map *sm, float *c,
                 size_t ldc, int mr, int first, int last, const float *bias, const float *res,
                 size_t ldres, const act_params *act)
{
    if (live == 3)
        TILE_BODY(3);
    else if (live == 2)
        TILE_BODY(2);
    else
        TILE_BODY(1);
}

#define KC 256 /* k rows per packed strip: 256 x 48 floats = 48 KB */

/* Before a panel's last k block, when there is a residual and a next panel: that panel's
 * residual rows (up to MR rows of `live` vectors, `rows` left), which its epilogue would
 * otherwise wait for, and its output rows for writing (ResNet-50 2% faster each; layers
 * without a residual measured level with the output prefetch). */
static inline void prefetch_next_panel(const float *res, size_t ldres, float *c, size_t ldc,
                                       int rows, int live)
{
    for (int r = 0; r < rows && r < MR; r++)
        for (int v = 0; v < live; v++) {
            _mm_prefetch((const char *)(res + r * ldres + 16 * v), _MM_HINT_T0);
            _mm_prefetch((const char *)(c + r * ldc + 16 * v), _MM_HINT_ET0);
        }
}

/* Column strips of NR outer, k blocks of KC, row panels inner: each strip block is packed
 * once and stays in L1 while every panel of A streams past it. Uses a thread-local strip
 * buffer (48 KB, touched on a thread's first call). */
static void gemm(const float *packed, int m, int k, const gemm_b *bs, int j0, int n, float *c,
                 size_t ldc, const float *bias, const float *res, size_t ldres,
                 const act_params *act)
{
    static _Thread_local float strip[KC * NR] __attribute__((aligned(64)));
    for (int j = j0; j < j0 + n; j += NR) {
        int nc = j0 + n - j < NR ? j0 + n - j : NR, live = (nc + 15) / 16;
        strip_map sm;
        strip_map_init(&sm, bs, j, nc);
        for (int q0 = 0; q0 < k; q0 += KC) {
            int kc = k - q0 < KC ? k - q0 : KC;
            pack_strip(bs, j, nc, q0, kc, strip);
            for (int p = 0; p * MR < m; p++) {
                int r0 = p * MR, mr = m - r0 < MR ? m - r0 : MR;
                if (res && q0 + kc == k && r0 + MR < m)
                    prefetch_next_panel(res + (size_t)(r0 + MR) * ldres + sm.o, ldres,
                                        c + (size_t)(r0 + MR) * ldc + sm.o, ldc, m - r0 - MR, live);
                tile(packed + (size_t)p * k * MR + (size_t)q0 * MR, kc, strip, live, &sm,
                     c + (size_t)r0 * ldc, ldc, mr, q0 == 0, q0 + kc == k, bias ? bias + r0 : NULL,
                     res ? res + (size_t)r0 * ldres : NULL, ldres, act);
            }
        }
    }
}

static const cvy_gemm GEMM_LANES = {.name = "lanes=columns",
                                    .mr = MR,
                                    .prologue = 1,
                                    .part_kc = KC,
                                    .packed_size = packed_size,
                                    .pack = pack,
                                    .run = gemm};

/* Four 4 x 4 transposes, one per 128-bit block: out[i] block j holds element i of that
 * block of in[0], in[1], in[2] and in[3]. */
static inline void transpose4_blocks(const __m512 in[4], __m512 out[4])
{
    __m512 p0 = _mm512_unpacklo_ps(in[0], in[1]), p1 = _mm512_unpackhi_ps(in[0], in[1]);
    __m512 p2 = _mm512_unpacklo_ps(in[2], in[3]), p3 = _mm512_unpackhi_ps(in[2], in[3]);
    out[0] = _mm512_shuffle_ps(p0, p2, 0x44);
    out[1] = _mm512_shuffle_ps(p0, p2, 0xee);
    out[2] = _mm512_shuffle_ps(p1, p3, 0x44);
    out[3] = _mm512_shuffle_ps(p1, p3, 0xee);
}

/* In-place 16 x 16 transpose: afterwards x[r] lane c holds what x[c] lane r held. 4 x 4
 * transposes within each 128-bit block, then a 4 x 4 transpose of the blocks. */
static inline void transpose16(__m512 x[16])
{
    __m512 t[16];
    for (int g = 0; g < 4; g++) /* t[4g + i] block j, lane a: x[4g + a] lane 4j + i */
        transpose4_blocks(x + 4 * g, t + 4 * g);
    for (int i = 0; i < 4; i++) { /* x[4j + i] = block j of t[i], t[4 + i], t[8 + i], t[12 + i] */
        __m512 u0 = _mm512_shuffle_f32x4(t[i], t[4 + i], 0x44),
               u1 = _mm512_shuffle_f32x4(t[i], t[4 + i], 0xee);
        __m512 u2 = _mm512_shuffle_f32x4(t[8 + i], t[12 + i], 0x44),
               u3 = _mm512_shuffle_f32x4(t[8 + i], t[12 + i], 0xee);
        x[i] = _mm512_shuffle_f32x4(u0, u2, 0x88);
        x[4 + i] = _mm512_shuffle_f32x4(u0, u2, 0xdd);
        x[8 + i] = _mm512_shuffle_f32x4(u1, u3, 0x88);
        x[12 + i] = _mm512_shuffle_f32x4(u1, u3, 0xdd);
    }
}

/* ---- GEMM for few columns: output channels in the lanes ---------------------------------
 * For small maps (7x7, 14x14, Winograd tiles of small maps) 16 columns per vector waste
 * lanes; here a micro-tile is up to 3 vectors of 16 output channels times up to FNJ columns,
 * each column a broadcast of one B value. The packed A block (48 rows x FKC) stays in L1
 * while the column tiles pass; partial sums wait in a stack buffer between k blocks. */
#define FMR         16  /* rows per packed panel: one vector of output channels */
#define FNV         3   /* panels (vectors) per micro-tile */
#define FNJ         8   /* columns per micro-tile */
#define FKC         128 /* k rows per block: 3 x 128 x 16 floats = 24 KB of A */
#define FEW_MAX_N   256 /* columns per call at most */
#define FEW_PF_ROWS 16  /* B rows prefetched ahead */
#define FC_GROUP    64  /* images per pass of the fully connected kernel over its weights */

static size_t few_packed_size(int m, int k) { return panels_size(m, k, FMR); }
static void few_pack(const float *a, int m, int k, float *out) { pack_panels(a, m, k, FMR, out); }

/* live panels (vectors of rows) x nj columns over kc rows of k: ap is panel 0 at this k
 * block (the others ps floats apart); B's row q is b + off[q] (off set) or b + q * ldb, at
 * the tile's first column, columns ldj apart; sums go to (first: from zero, else from)
 * part[j * FNV * FMR + 16 * v]. pfa: prefetch A ahead, for the first tile over an A block
 * (the others find it in L1: their prefetches only took load slots, 2% of these layers). */
static inline __attribute__((always_inline)) void
few_tile(const float *ap, size_t ps, int kc, const float *b, const int32_t *off, size_t ldb,
         size_t ldj, float *part, int first, const int live, const int nj, const int pfa)
{
    __m512 acc[FNV][FNJ];
#pragma GCC unroll 8
    for (int j = 0; j < nj; j++)
#pragma GCC unroll 3
        for (int v = 0; v < live; v++)
            acc[v][j] = first ? _mm512_setzero_ps() : _mm512_load_ps(part + j * FNV * FMR + 16 * v);
    for (int q = 0; q < kc; q++) {
        __m512 av[FNV];
        const float *bq = off ? b + off[q] : b + (size_t)q * ldb;
        if (!off && ldj == 1) /* plain B rows come from L2 or another core's cache */
            _mm_prefetch((const char *)(bq + FEW_PF_ROWS * ldb), _MM_HINT_T0);
#pragma GCC unroll 3
        for (int v = 0; v < live; v++) {
            av[v] = _mm512_loadu_ps(ap + v * ps + (size_t)q * FMR);
            if (pfa)
                _mm_prefetch((const char *)(ap + v * ps + (size_t)q * FMR + PF_AHEAD), _MM_HINT_T0);
        }
#pragma GCC unroll 8
        for (int j = 0; j < nj; j++) {
            __m512 bb = _mm512_set1_ps(bq[j * ldj]);
#pragma GCC unroll 3
            for (int v = 0; v < live; v++) acc[v][j] = _mm512_fmadd_ps(av[v], bb, acc[v][j]);
        }
    }
#pragma GCC unroll 8
    for (int j = 0; j < nj; j++)
#pragma GCC unroll 3
        for (int v = 0; v < live; v++) _mm512_store_ps(part + j * FNV * FMR + 16 * v, acc[v][j]);
}

#define FEW_CASE(L, J)                                                                             \
    case (L)*16 + (J):                                                                             \
        few_tile(ap, ps, kc, b, off, ldb, LDJ, part, first, L, J, PFA);                            \
        break;
#define FEW_CASES(L)                                                                               \
    FEW_CASE(L, 1)                                                                                 \
    FEW_CASE(L, 2)                                                                                 \
    FEW_CASE(L, 3) FEW_CASE(L, 4) FEW_CASE(L, 5) FEW_CASE(L, 6) FEW_CASE(L, 7) FEW_CASE(L, 8)

#define FEW_SWITCH                                                                                 \
    switch (live * 16 + nj) {                                                                      \
        FEW_CASES(1)                                                                               \
        FEW_CASES(2)                                                                               \
        FEW_CASES(3)                                                                               \
    default: break;                                                                                \
    }

/* few_tile with live and nj as constants, so the accumulators stay in registers: B's
 * columns adjacent (convolutions), A prefetched or not (pfa) ... */
static void few_tile_any(const float *ap, size_t ps, int kc, const float *b, const int32_t *off,
                         size_t ldb, float *part, int first, int live, int nj, int pfa)
{
#define LDJ 1
    if (pfa) {
#define PFA 1
        FEW_SWITCH
#undef PFA
    } else {
#define PFA 0
        FEW_SWITCH
#undef PFA
    }
#undef LDJ
}

/* ... or B's columns ldj apart (fully connected: the images' input rows), A prefetched. */
static void few_tile_strided(const float *ap, size_t ps, int kc, const float *b, size_t ldj,
                             float *part, int first, int live, int nj)
{
    const int32_t *off = NULL;
    size_t ldb = 1;
#define LDJ ldj
#define PFA 1
    FEW_SWITCH
#undef PFA
#undef LDJ
}

/* The few-column GEMM (the gemm contract, n <= FEW_MAX_N). Columns are cut into tiles of up
 * to FNJ consecutive B columns; with a period, tiles stop at each row's valid columns and
 * the padding columns are skipped. */
static void gemm_few(const float *packed, int m, int k, const gemm_b *bs, int j0, int n, float *c,
                     size_t ldc, const float *bias, const float *res, size_t ldres,
                     const act_params *act)
{
    float part[FEW_MAX_N * FNV * FMR] __attribute__((aligned(64)));
    int tj[FEW_MAX_N], tw[FEW_MAX_N], nt = 0, nout = 0;
    for (int j = j0; j < j0 + n;) {
        int x = bs->period ? j % bs->period : 0, run = j0 + n - j;
        if (bs->period && x >= bs->valid) {
            j += bs->period - x;
            continue;
        }
        if (bs->period && run > bs->valid - x) run = bs->valid - x;
        if (run > FNJ) run = FNJ;
        tj[nt] = j, tw[nt++] = run;
        nout += run;
        j += run;
    }
    size_t o0 = out_pos(bs, j0); /* output position of the first valid column */
    size_t ps = (size_t)FMR * k;
    int panels = (m + FMR - 1) / FMR;
    for (int r0 = 0, live; r0 < m; r0 += live * FMR) {
        /* passes of FNV panels, but two of two rather than FNV then one (64 rows: 32 + 32,
         * whose micro-tiles have twice the FMAs per B broadcast of a lone panel's) */
        int left = panels - r0 / FMR;
        live = left == FNV + 1 ? 2 : left > FNV ? FNV : left;
        for (int q0 = 0; q0 < k; q0 += FKC) {
            int kc = k - q0 < FKC ? k - q0 : FKC;
            const float *ap = packed + (size_t)r0 * k + (size_t)q0 * FMR;
            const float *b = bs->off ? bs->b : bs->b + (size_t)q0 * bs->ldb;
            const int32_t *off = bs->off ? bs->off + q0 : NULL;
            /* with a residual, the last k block spreads over its tiles the prefetches of
             * the epilogue's lines: residual rows and output rows for writing, the other
             * core's more often than not (ResNet-50 b1 1% faster) */
            int pf = 0, lines = (nout + 15) / 16;
            int pf_end =
                res && q0 + kc >= k ? (m - r0 < live * FMR ? m - r0 : live * FMR) * lines : 0;
            for (int t = 0, o = 0; t < nt; o += tw[t++]) {
                for (int end = (int)((long)pf_end * (t + 1) / nt); pf < end; pf++) {
                    size_t row = (size_t)(r0 + pf / lines), col = o0 + 16 * (size_t)(pf % lines);
                    _mm_prefetch((const char *)(res + row * ldres + col), _MM_HINT_T0);
                    _mm_prefetch((const char *)(c + row * ldc + col), _MM_HINT_ET0);
                }
                few_tile_any(ap, ps, kc, b + tj[t], off, bs->ldb, part + o * FNV * FMR, q0 == 0,
                             live, tw[t], t == 0);
            }
        }
        /* epilogue: blocks of 16 columns x 16 rows transposed in registers, so each output
         * row is one masked store (scatters cost several times more here) */
        for (int v = 0; v < live; v++) {
            int r = r0 + 16 * v, rows = m - r < 16 ? m - r : 16;
            for (int ob = 0; ob < nout; ob += 16) {
                int nc = nout - ob < 16 ? nout - ob : 16;
                __mmask16 cm = cols_mask(nc);
                __m512 x[16];
                for (int i = 0; i < 16; i++)
                    x[i] = i < nc ? _mm512_load_ps(part + (ob + i) * FNV * FMR + 16 * v)
                                  : _mm512_setzero_ps();
                transpose16(x);
                for (int l = 0; l < rows; l++) {
                    __m512 y = _mm512_add_ps(x[l], _mm512_set1_ps(bias ? bias[r + l] : 0.0f));
                    size_t o = o0 + (size_t)ob;
                    if (res)
                        y = _mm512_add_ps(
                            y, _mm512_maskz_loadu_ps(cm, res + (size_t)(r + l) * ldres + o));
                    _mm512_mask_storeu_ps(c + (size_t)(r + l) * ldc + o, cm, act16(y, act));
                }
            }
        }
    }
}

static const cvy_gemm GEMM_FEW = {.name = "lanes=channels",
                                  .mr = FMR,
                                  .max_n = FEW_MAX_N,
                                  .pass_rows = FNV * FMR,
                                  .packed_size = few_packed_size,
                                  .pack = few_pack,
                                  .run = gemm_few};

/* ---- fully connected: output neurons in the lanes ---------------------------------------
 * The weights packed in panels of 16 neurons (fc_pack, as the few-column GEMM's); a micro-
 * tile is up to 3 panels x FNJ images, each image's input value broadcast. A block of 48
 * neurons x FKC weights stays in L1 while up to FC_GROUP images pass it, so each weight
 * comes from memory once per call, however many images (the row-dot kernels read every
 * weight row once per 4 images). Every output is summed in k order from zero, then bias,
 * then activation, whatever n and the tile it falls in: batching never changes a result. */
static void fc_lanes(const float *x, int n, int k, const float *w, int o0, int o1,
                     const float *bias, float *y, size_t ldy, const act_params *act)
{
    float part[FC_GROUP * FNV * FMR] __attribute__((aligned(64)));
    size_t ps = (size_t)FMR * k;
    int p0 = o0 / FMR, np = (o1 + FMR - 1) / FMR - p0, nt = (np + FNV - 1) / FNV;
    for (int i0 = 0; i0 < n; i0 += FC_GROUP) {
        int ni = n - i0 < FC_GROUP ? n - i0 : FC_GROUP;
        for (int t = 0; t < nt; t++) { /* tiles of panels, as even as can be */
            int pa = p0 + t * np / nt, live = p0 + (t + 1) * np / nt - pa;
            for (int q0 = 0; q0 < k; q0 += FKC) {
                int kc = k - q0 < FKC ? k - q0 : FKC;
                const float *ap = w + (size_t)pa * ps + (size_t)q0 * FMR;
                for (int i = 0; i < ni; i += FNJ)
                    few_tile_strided(ap, ps, kc, x + (size_t)(i0 + i) * k + q0, (size_t)k,
                                     part + i * FNV * FMR, q0 == 0, live,
                                     ni - i < FNJ ? ni - i : FNJ);
            }
            for (int v = 0; v < live; v++) { /* rows [r, r + 16) of o0..o1 */
                int r = (pa + v) * FMR;
                __mmask16 mk = cols_mask(o1 - r);
                if (r < o0) mk &= (__mmask16)(0xffffu << (o0 - r));
                __m512 vb = _mm512_maskz_loadu_ps(mk, bias + r);
                for (int i = 0; i < ni; i++) {
                    __m512 s = _mm512_add_ps(_mm512_load_ps(part + i * FNV * FMR + 16 * v), vb);
                    _mm512_mask_storeu_ps(y + (size_t)(i0 + i) * ldy + r, mk, act16(s, act));
                }
            }
        }
    }
}

/* ---- depthwise convolution and max pooling: windows over rows of 16 outputs ------------- */

/* Lanes l < 16 whose input index s + l lies in [0, n). */
static inline __mmask16 range_mask(int s, int n)
{
    int lo = s < 0 ? -s : 0, hi = n - s < 16 ? n - s : 16;
    if (hi <= lo) return 0;
    uint32_t bits = ((hi >= 32 ? 0u : (1u << hi)) - 1u) & ~((1u << lo) - 1u);
    return (__mmask16)bits;
}

#define WIN_MAXK 7  /* taps per direction the window kernels take */
#define WIN_MAXV 64 /* 16-lane vectors per output row (rows) or per plane (flat) */

/* Load masks of one layer, computed once per call. Rows layout (every stride-1/2 layer):
 * vector v of an output row covers outputs 16v.. and tap kx reads input columns from
 * 16v*sw - pl + kx*dw; lo/hi are the lanes of the one (stride 1) or two (stride 2) 16-float
 * loads that fall inside the row. Flat layout (stride 1 with w_out == w_in, small planes):
 * vector v covers outputs 16v.. of the whole plane; tap t = ky*kw + kx reads it shifted by
 * (ky*dh - pt)*w + kx*dw - pl, valid in lanes tap[v][t]. */
typedef struct win_masks {
    int flat, nv;
    __mmask16 out[WIN_MAXV];
    __mmask16 lo[WIN_MAXV][WIN_MAXK], hi[WIN_MAXV][WIN_MAXK];
    __mmask16 tap[WIN_MAXV][WIN_MAXK * WIN_MAXK];
} win_masks;

/* Fills m for g; returns 0 when g is outside what the window kernels take (then the caller
 * falls back). Flat is chosen when it needs fewer vectors than rows. */
static int win_init(win_masks *m, const conv_geom *g)
{
    if (g->kh > WIN_MAXK || g->kw > WIN_MAXK || g->sw > 2) return 0;
    int nrow = (g->w_out + 15) / 16, plane = g->h_out * g->w_out, nflat = (plane + 15) / 16;
    m->flat = g->sw == 1 && g->sh == 1 && g->w_out == g->w_in && nflat <= WIN_MAXV &&
              nflat < g->h_out * nrow;
    if (!m->flat) {
        if (nrow > WIN_MAXV) return 0;
        m->nv = nrow;
        for (int v = 0; v < nrow; v++) {
            m->out[v] = cols_mask(g->w_out - 16 * v);
            for (int kx = 0; kx < g->kw; kx++) {
                int s = 16 * v * g->sw - g->pl + kx * g->dw;
                m->lo[v][kx] = range_mask(s, g->w_in);
                m->hi[v][kx] = g->sw == 2 ? range_mask(s + 16, g->w_in) : 0;
            }
        }
        return 1;
    }
    m->nv = nflat;
    const __m512i lane = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
    const __m512i zero = _mm512_setzero_si512();
    const __m512 rw = _mm512_set1_ps((float)g->w_out);
    for (int v = 0; v < nflat; v++) {
        __m512i i = _mm512_add_epi32(lane, _mm512_set1_epi32(16 * v));
        /* oy = floor((i + 0.5) / w): exact, i and w are small integers */
        __m512 fi = _mm512_add_ps(_mm512_cvtepi32_ps(i), _mm512_set1_ps(0.5f));
        __m512i oy = _mm512_cvttps_epi32(_mm512_div_ps(fi, rw));
        __m512i ox = _mm512_sub_epi32(i, _mm512_mullo_epi32(oy, _mm512_set1_epi32(g->w_out)));
        __mmask16 live = _mm512_cmplt_epi32_mask(i, _mm512_set1_epi32(plane));
        m->out[v] = live;
        for (int ky = 0; ky < g->kh; ky++) {
            __m512i iy = _mm512_add_epi32(oy, _mm512_set1_epi32(ky * g->dh - g->pt));
            __mmask16 rows = live & _mm512_cmpge_epi32_mask(iy, zero) &
                             _mm512_cmplt_epi32_mask(iy, _mm512_set1_epi32(g->h_in));
            for (int kx = 0; kx < g->kw; kx++) {
                __m512i ix = _mm512_add_epi32(ox, _mm512_set1_epi32(kx * g->dw - g->pl));
                m->tap[v][ky * g->kw + kx] =
                    rows & _mm512_cmpge_epi32_mask(ix, zero) &
                    _mm512_cmplt_epi32_mask(ix, _mm512_set1_epi32(g->w_in));
            }
        }
    }
    return 1;
}

/* The 16 inputs of tap kx for vector v of a row xr, out-of-row lanes = fill. Stride 2 keeps
 * the even lanes of 32 neighbours. */
static inline __m512 win_load(const win_masks *m, const float *xr, int v, int kx, int sw, int pl,
                              int dw, __m512 fill)
{
    const float *p = xr + 16 * v * sw - pl + kx * dw;
    __m512 a = _mm512_mask_loadu_ps(fill, m->lo[v][kx], p);
    if (sw == 1) return a;
    const __m512i even =
        _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
    return _mm512_permutex2var_ps(a, even, _mm512_mask_loadu_ps(fill, m->hi[v][kx], p + 16));
}

/* Depthwise conv of one channel, rows layout, any kernel up to WIN_MAXK. The sum runs over
 * the taps in (ky, kx) order from zero, then the bias, as the reference (a tap outside the
 * input adds an exact zero). */
static void dw_rows(const win_masks *m, const float *xc, const float *wc, float b, float *yc,
                    const conv_geom *g, const act_params *act)
{
    __m512 vb = _mm512_set1_ps(b);
    for (int oy = 0; oy < g->h_out; oy++) {
        float *yr = yc + (size_t)oy * g->w_out;
        int iy0 = oy * g->sh - g->pt;
        for (int v = 0; v < m->nv; v++) {
            __m512 acc = _mm512_setzero_ps();
            for (int ky = 0; ky < g->kh; ky++) {
                int iy = iy0 + ky * g->dh;
                if (iy < 0 || iy >= g->h_in) continue;
                const float *xr = xc + (size_t)iy * g->w_in;
                for (int kx = 0; kx < g->kw; kx++)
                    acc = _mm512_fmadd_ps(
                        win_load(m, xr, v, kx, g->sw, g->pl, g->dw, _mm512_setzero_ps()),
                        _mm512_set1_ps(wc[ky * g->kw + kx]), acc);
            }
            _mm512_mask_storeu_ps(yr + 16 * v, m->out[v], act16(_mm512_add_ps(acc, vb), act));
        }
    }
}

/* The three taps of one input row r (NULL: outside the input) for vector v, stride 1. */
#define DW3_ROW_S1(r, w0, w1, w2)                                                                  \
    if (r) {                                                                                       \
        const float *p = (r) + 16 * v - pl;                                                        \
        acc = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m->lo[v][0], p), w0, acc);                     \
        acc = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m->lo[v][1], p + 1), w1, acc);                 \
        acc = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m->lo[v][2], p + 2), w2, acc);                 \
    }
/* Stride 2: the 32 inputs from the first tap give taps 0 (even lanes) and 1 (odd lanes). */
#define DW3_ROW_S2(r, w0, w1, w2)                                                                  \
    if (r) {                                                                                       \
        const float *p = (r) + 32 * v - pl;                                                        \
        __m512 a = _mm512_maskz_loadu_ps(m->lo[v][0], p);                                          \
        __m512 c = _mm512_maskz_loadu_ps(m->hi[v][0], p + 16);                                     \
        __m512 d = _mm512_maskz_loadu_ps(m->lo[v][2], p + 2);                                      \
        __m512 e = _mm512_maskz_loadu_ps(m->hi[v][2], p + 18);                                     \
        acc = _mm512_fmadd_ps(_mm512_permutex2var_ps(a, even, c), w0, acc);                        \
        acc = _mm512_fmadd_ps(_mm512_permutex2var_ps(a, odd, c), w1, acc);                         \
        acc = _mm512_fmadd_ps(_mm512_permutex2var_ps(d, even, e), w2, acc);                        \
    }

/* 3x3 depthwise, dilation 1, stride 1 or 2 of one channel, rows layout, weights in
 * registers; same arithmetic as dw_rows. */
static inline __attribute__((always_inline)) void dw3_rows(const win_masks *m, const float *xc,
                                                           const float *wc, float b, float *yc,
                                                           const conv_geom *g,
                                                           const act_params *act, int SW, int ACT)
{
    const __m512 alo = _mm512_set1_ps(act->a), ahi = _mm512_set1_ps(act->b);
    const __m512i even =
        _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
    const __m512i odd =
        _mm512_setr_epi32(1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31);
    const __m512 w0 = _mm512_set1_ps(wc[0]), w1 = _mm512_set1_ps(wc[1]), w2 = _mm512_set1_ps(wc[2]),
                 w3 = _mm512_set1_ps(wc[3]), w4 = _mm512_set1_ps(wc[4]), w5 = _mm512_set1_ps(wc[5]),
                 w6 = _mm512_set1_ps(wc[6]), w7 = _mm512_set1_ps(wc[7]), w8 = _mm512_set1_ps(wc[8]),
                 vb = _mm512_set1_ps(b);
    int pl = g->pl;
    (void)even, (void)odd;
    for (int oy = 0; oy < g->h_out; oy++) {
        float *yr = yc + (size_t)oy * g->w_out;
        int iy = oy * g->sh - g->pt;
        const float *r0 = iy >= 0 && iy < g->h_in ? xc + (size_t)iy * g->w_in : NULL;
        const float *r1 = iy + 1 >= 0 && iy + 1 < g->h_in ? xc + (size_t)(iy + 1) * g->w_in : NULL;
        const float *r2 = iy + 2 >= 0 && iy + 2 < g->h_in ? xc + (size_t)(iy + 2) * g->w_in : NULL;
        for (int v = 0; v < m->nv; v++) {
            __m512 acc = _mm512_setzero_ps();
            if (SW == 1) {
                DW3_ROW_S1(r0, w0, w1, w2)
                DW3_ROW_S1(r1, w3, w4, w5)
                DW3_ROW_S1(r2, w6, w7, w8)
            } else {
                DW3_ROW_S2(r0, w0, w1, w2)
                DW3_ROW_S2(r1, w3, w4, w5)
                DW3_ROW_S2(r2, w6, w7, w8)
            }
            _mm512_mask_storeu_ps(yr + 16 * v, m->out[v],
                                  act16k(_mm512_add_ps(acc, vb), ACT, alo, ahi, act));
        }
    }
}

/* Depthwise conv of one channel, flat layout (see win_masks). */
static void dw_flat(const win_masks *m, const float *xc, const float *wc, float b, float *yc,
                    const conv_geom *g, const act_params *act)
{
    __m512 vb = _mm512_set1_ps(b);
    for (int v = 0; v < m->nv; v++) {
        __m512 acc = _mm512_setzero_ps();
        for (int ky = 0; ky < g->kh; ky++) {
            const float *xr = xc + 16 * v + (ky * g->dh - g->pt) * g->w_in - g->pl;
            for (int kx = 0; kx < g->kw; kx++)
                acc = _mm512_fmadd_ps(
                    _mm512_maskz_loadu_ps(m->tap[v][ky * g->kw + kx], xr + kx * g->dw),
                    _mm512_set1_ps(wc[ky * g->kw + kx]), acc);
        }
        _mm512_mask_storeu_ps(yc + 16 * v, m->out[v], act16(_mm512_add_ps(acc, vb), act));
    }
}

/* 3x3 dilation 1 flat layout, weights in registers; same arithmetic as dw_flat. */
static inline __attribute__((always_inline)) void dw3_flat(const win_masks *m, const float *xc,
                                                           const float *wc, float b, float *yc,
                                                           const conv_geom *g,
                                                           const act_params *act, int ACT)
{
    const __m512 alo = _mm512_set1_ps(act->a), ahi = _mm512_set1_ps(act->b);
    const __m512 w0 = _mm512_set1_ps(wc[0]), w1 = _mm512_set1_ps(wc[1]), w2 = _mm512_set1_ps(wc[2]),
                 w3 = _mm512_set1_ps(wc[3]), w4 = _mm512_set1_ps(wc[4]), w5 = _mm512_set1_ps(wc[5]),
                 w6 = _mm512_set1_ps(wc[6]), w7 = _mm512_set1_ps(wc[7]), w8 = _mm512_set1_ps(wc[8]),
                 vb = _mm512_set1_ps(b);
    int w = g->w_in;
    const float *x0 = xc - g->pt * w - g->pl;
    for (int v = 0; v < m->nv; v++) {
        const float *p = x0 + 16 * v;
        const __mmask16 *t = m->tap[v];
        __m512 acc = _mm512_setzero_ps();
        acc = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(t[0], p), w0, acc);
        acc = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(t[1], p + 1), w1, acc);
        acc = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(t[2], p + 2), w2, acc);
        acc = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(t[3], p + w), w3, acc);
        acc = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(t[4], p + w + 1), w4, acc);
        acc = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(t[5], p + w + 2), w5, acc);
        acc = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(t[6], p + 2 * w), w6, acc);
        acc = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(t[7], p + 2 * w + 1), w7, acc);
        acc = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(t[8], p + 2 * w + 2), w8, acc);
        _mm512_mask_storeu_ps(yc + 16 * v, m->out[v],
                              act16k(_mm512_add_ps(acc, vb), ACT, alo, ahi, act));
    }
}

/* Every tap a masked load with masks computed once per call (win_masks), so borders,
 * padding and short rows need no scalar path; 3x3 dilation-1 kernels get unrolled copies
 * with the weights in registers. */
static void depthwise(const float *x, size_t xcs, const float *w, const float *bias, float *y,
                      size_t ycs, const conv_geom *g, int c0, int c1, const act_params *act)
{
    win_masks m;
    if (!win_init(&m, g)) {
        cvy_kernels_avx2()->depthwise(x, xcs, w, bias, y, ycs, g, c0, c1, act);
        return;
    }
    int k33 = g->kh == 3 && g->kw == 3 && g->dh == 1 && g->dw == 1;
    for (int c = c0; c < c1; c++) {
        const float *xc = x + (size_t)c * xcs;
        const float *wc = w + (size_t)c * g->kh * g->kw;
        float *yc = y + (size_t)c * ycs, b = bias ? bias[c] : 0.0f;
#define DW3_FLAT(t) dw3_flat(&m, xc, wc, b, yc, g, act, t)
#define DW3_S1(t)   dw3_rows(&m, xc, wc, b, yc, g, act, 1, t)
#define DW3_S2(t)   dw3_rows(&m, xc, wc, b, yc, g, act, 2, t)
        if (m.flat && k33)
            BY_ACT(act, DW3_FLAT)
        else if (m.flat)
            dw_flat(&m, xc, wc, b, yc, g, act);
        else if (k33 && g->sw == 1)
            BY_ACT(act, DW3_S1)
        else if (k33)
            BY_ACT(act, DW3_S2)
        else
            dw_rows(&m, xc, wc, b, yc, g, act);
    }
}

/* ---- Winograd F(4,3) input transform, 16 tiles at a time -------------------------------- */

/* o = B^T d on 16 lanes: the scalar formulas of winograd.c, operation for operation. */
static inline void bt16(const __m512 d[6], __m512 o[6])
{
    const __m512 c4 = _mm512_set1_ps(4.0f), c5 = _mm512_set1_ps(5.0f), c2 = _mm512_set1_ps(2.0f);
    const __m512 m4 = _mm512_set1_ps(-4.0f), m2 = _mm512_set1_ps(-2.0f);
    o[0] = _mm512_add_ps(_mm512_sub_ps(_mm512_mul_ps(c4, d[0]), _mm512_mul_ps(c5, d[2])), d[4]);
    o[1] = _mm512_add_ps(
        _mm512_add_ps(_mm512_sub_ps(_mm512_mul_ps(m4, d[1]), _mm512_mul_ps(c4, d[2])), d[3]), d[4]);
    o[2] = _mm512_add_ps(
        _mm512_sub_ps(_mm512_sub_ps(_mm512_mul_ps(c4, d[1]), _mm512_mul_ps(c4, d[2])), d[3]), d[4]);
    o[3] = _mm512_add_ps(
        _mm512_add_ps(_mm512_sub_ps(_mm512_mul_ps(m2, d[1]), d[2]), _mm512_mul_ps(c2, d[3])), d[4]);
    o[4] = _mm512_add_ps(
        _mm512_sub_ps(_mm512_sub_ps(_mm512_mul_ps(c2, d[1]), d[2]), _mm512_mul_ps(c2, d[3])), d[4]);
    o[5] = _mm512_add_ps(_mm512_sub_ps(_mm512_mul_ps(c4, d[1]), _mm512_mul_ps(c5, d[3])), d[5]);
}

/* Row r of 16 tiles' 6 x 6 windows, one zmm per window column: for each tile a masked
 * 8-float load (tiles l and l + 8 in the two halves of a zmm), then an 8 x 8 transpose in
 * each half: about 30 shuffles where 6 gathers cost several times more. */
static inline void wino_rows16(const float *xc, const int32_t base[16], const __mmask8 keep[16],
                               __m512 d[6])
{
    __m512 z[8], s[8];
    for (int l = 0; l < 8; l++)
        z[l] =
            _mm512_insertf32x8(_mm512_castps256_ps512(_mm256_maskz_loadu_ps(keep[l], xc + base[l])),
                               _mm256_maskz_loadu_ps(keep[l + 8], xc + base[l + 8]), 1);
    transpose4_blocks(z, s);         /* per 128-bit block: columns of tiles 0-3 (8-11) */
    transpose4_blocks(z + 4, s + 4); /* ... and of tiles 4-7 (12-15) */
    /* column c: lane (c / 4) of each 256-bit half of s[c % 4] (tiles 0-3, 8-11) and of
     * s[4 + c % 4] (tiles 4-7, 12-15) */
    const __m512i lo = _mm512_setr_epi32(0, 1, 2, 3, 16, 17, 18, 19, 8, 9, 10, 11, 24, 25, 26, 27);
    const __m512i hi =
        _mm512_setr_epi32(4, 5, 6, 7, 20, 21, 22, 23, 12, 13, 14, 15, 28, 29, 30, 31);
    for (int c = 0; c < 4; c++) d[c] = _mm512_permutex2var_ps(s[c], lo, s[4 + c]);
    for (int c = 4; c < 6; c++) d[c] = _mm512_permutex2var_ps(s[c - 4], hi, s[c]);
}

/* Groups of 16 tiles: per lane, the input offset of the tile's corner and which of its
 * cells lie inside the image; then per channel the 6 rows of windows (wino_rows16) and the
 * transform. */
static void wino_input16(const float *x, int cin, int h, int w, int pt, int pl, int tw, int t0,
                         int t1, float *v, size_t ldv, size_t vps)
{
    for (int g0 = t0; g0 < t1; g0 += 16) {
        int n = t1 - g0 < 16 ? t1 - g0 : 16;
        int32_t base[6][16];
        __mmask8 keep[6][16];  /* window row r of tile l: its columns inside the image */
        int ylo = h, yhi = -1; /* the image rows the group reads */
        for (int l = 0; l < 16; l++) {
            int t = g0 + (l < n ? l : n - 1), y0 = t / tw * 4 - pt, x0 = t % tw * 4 - pl;
            ylo = y0 < ylo ? y0 : ylo;
            yhi = y0 + 5 > yhi ? y0 + 5 : yhi;
            unsigned cm = 0;
            for (int c = 0; c < 6; c++)
                if (x0 + c >= 0 && x0 + c < w) cm |= 1u << c;
            for (int r = 0; r < 6; r++) {
                base[r][l] = (y0 + r) * w + x0;
                keep[r][l] = l < n && y0 + r >= 0 && y0 + r < h ? (__mmask8)cm : 0;
            }
        }
        ylo = ylo < 0 ? 0 : ylo;
        yhi = yhi >= h ? h - 1 : yhi;
        for (int ic = 0; ic < cin; ic++) {
            const float *xc = x + (size_t)ic * h * w;
            /* those rows of a channel two ahead: too scattered for the hardware prefetcher */
            if (ic + 2 < cin)
                for (const float *p = xc + (size_t)2 * h * w + (size_t)ylo * w,
                                 *e = xc + (size_t)2 * h * w + (size_t)(yhi + 1) * w;
                     p < e; p += 16)
                    _mm_prefetch((const char *)p, _MM_HINT_T0);
            __m512 d[6][6], t[6][6];
            for (int r = 0; r < 6; r++) wino_rows16(xc, base[r], keep[r], d[r]);
            for (int c = 0; c < 6; c++) {
                __m512 col[6] = {d[0][c], d[1][c], d[2][c], d[3][c], d[4][c], d[5][c]}, o[6];
                bt16(col, o);
                for (int r = 0; r < 6; r++) t[r][c] = o[r];
            }
            __mmask16 store = cols_mask(n);
            for (int r = 0; r < 6; r++) {
                __m512 o[6];
                bt16(t[r], o);
                for (int c = 0; c < 6; c++)
                    _mm512_mask_storeu_ps(
                        v + (size_t)(r * 6 + c) * vps + (size_t)ic * ldv + (g0 - t0), store, o[c]);
            }
        }
    }
}

/* o = A^T m on 16 lanes, operation for operation as winograd.c. */
static inline void at16(const __m512 m[6], __m512 o[4])
{
    __m512 a = _mm512_add_ps(m[1], m[2]), b = _mm512_sub_ps(m[1], m[2]);
    __m512 c = _mm512_add_ps(m[3], m[4]), d = _mm512_sub_ps(m[3], m[4]);
    o[0] = _mm512_add_ps(_mm512_add_ps(m[0], a), c);
    o[1] = _mm512_add_ps(b, _mm512_mul_ps(_mm512_set1_ps(2.0f), d));
    o[2] = _mm512_add_ps(a, _mm512_mul_ps(_mm512_set1_ps(4.0f), c));
    o[3] = _mm512_add_ps(_mm512_add_ps(b, _mm512_mul_ps(_mm512_set1_ps(8.0f), d)), m[5]);
}

/* 16 tiles per step: contiguous loads of the 36 values, the transform on vectors, then each
 * tile's 4 rows stored (masked at the image border). The stores are short and close
 * together, so lines another core holds (the next layer read them there) stalled them: the
 * lines of the channel WINO_PF_AHEAD on are prefetched for writing (one task's output
 * transform on the second core took 4x the first's; SqueezeNet 6-7% faster, a 16 -> 64 3x3
 * at 55x55 alone 8-22%). */
#define WINO_PF_AHEAD 2
static void wino_output16(const float *m, size_t mps, size_t ldm, int o0, int o1, int t0, int t1,
                          int tw, int h_out, int w_out, const float *bias, const float *res,
                          float *y, const act_params *act)
{
    size_t cols = (size_t)h_out * w_out;
    for (int g0 = t0; g0 < t1; g0 += 16) {
        int n = t1 - g0 < 16 ? t1 - g0 : 16;
        int32_t base[16];
        __mmask8 keep[4][16]; /* output row a of tile l: its valid columns, 0 when none */
        for (int l = 0; l < 16; l++) {
            int t = g0 + (l < n ? l : n - 1), oy = t / tw * 4, ox = t % tw * 4;
            base[l] = oy * w_out + ox;
            int wcols = w_out - ox < 4 ? w_out - ox : 4;
            for (int a = 0; a < 4; a++)
                keep[a][l] = l < n && oy + a < h_out ? (__mmask8)((1u << wcols) - 1) : 0;
        }
        __mmask16 live = cols_mask(n);
        for (int oc = o0; oc < o1; oc++) {
            const float *mo = m + (size_t)(oc - o0) * ldm + (g0 - t0);
            __m512 t[4][6];
            for (int c = 0; c < 6; c++) {
                __m512 col[6], o[4];
                for (int r = 0; r < 6; r++)
                    col[r] = _mm512_maskz_loadu_ps(live, mo + (size_t)(r * 6 + c) * mps);
                at16(col, o);
                for (int r = 0; r < 4; r++) t[r][c] = o[r];
            }
            __m512 vb = _mm512_set1_ps(bias[oc]);
            float *yo = y + (size_t)oc * cols;
            if (oc + WINO_PF_AHEAD < o1) /* lines the other core has read: ask for them early */
                for (int a = 0; a < 4; a++) {
                    const float *yp = yo + WINO_PF_AHEAD * cols + a * w_out;
                    for (int l = 0; l < n; l += 4) { /* both ends of four tiles' columns */
                        int e = l + 3 < n ? l + 3 : n - 1;
                        _mm_prefetch((const char *)(yp + base[l]), _MM_HINT_ET0);
                        _mm_prefetch((const char *)(yp + base[e] + 3), _MM_HINT_ET0);
                    }
                }
            const float *ro = res ? res + (size_t)oc * cols : NULL;
            for (int a = 0; a < 4; a++) {
                __m512 out[4], u[4];
                at16(t[a], out); /* out[b] lane l: row a, column b of tile l */
                /* u[i] block j holds the 4 columns of tile 4j + i: one 128-bit store per
                 * tile instead of a scatter */
                transpose4_blocks(out, u);
                for (int i = 0; i < 4; i++) {
                    __m512 val = _mm512_add_ps(u[i], vb);
                    if (ro) {
#define RES4(l) _mm_maskz_loadu_ps(keep[a][l], ro + base[l] + a * w_out)
                        __m512 r = _mm512_castps128_ps512(RES4(i));
                        r = _mm512_insertf32x4(r, RES4(4 + i), 1);
                        r = _mm512_insertf32x4(r, RES4(8 + i), 2);
                        r = _mm512_insertf32x4(r, RES4(12 + i), 3);
#undef RES4
                        val = _mm512_add_ps(val, r);
                    }
                    val = act16(val, act);
                    _mm_mask_storeu_ps(yo + base[i] + a * w_out, keep[a][i],
                                       _mm512_castps512_ps128(val));
                    _mm_mask_storeu_ps(yo + base[4 + i] + a * w_out, keep[a][4 + i],
                                       _mm512_extractf32x4_ps(val, 1));
                    _mm_mask_storeu_ps(yo + base[8 + i] + a * w_out, keep[a][8 + i],
                                       _mm512_extractf32x4_ps(val, 2));
                    _mm_mask_storeu_ps(yo + base[12 + i] + a * w_out, keep[a][12 + i],
                                       _mm512_extractf32x4_ps(val, 3));
                }
            }
        }
    }
}

/* ---- max pooling ---------------------------------------------------------------------------- */

/* Max pooling of one channel, rows layout; out-of-input lanes load -inf. */
static inline __attribute__((always_inline)) void pool_rows(const win_masks *m, const float *xc,
                                                            float *yc, const conv_geom *g, int KH,
                                                            int KW, int SW)
{
    const __m512 ninf = _mm512_set1_ps(-INFINITY);
    for (int oy = 0; oy < g->h_out; oy++) {
        float *yr = yc + (size_t)oy * g->w_out;
        int iy0 = oy * g->sh - g->pt;
        for (int v = 0; v < m->nv; v++) {
            __m512 mx = ninf;
            for (int ky = 0; ky < KH; ky++) {
                int iy = iy0 + ky * g->dh;
                if (iy < 0 || iy >= g->h_in) continue;
                const float *xr = xc + (size_t)iy * g->w_in;
                for (int kx = 0; kx < KW; kx++)
                    mx = _mm512_max_ps(mx, win_load(m, xr, v, kx, SW, g->pl, g->dw, ninf));
            }
            _mm512_mask_storeu_ps(yr + 16 * v, m->out[v], mx);
        }
    }
}

/* Stride-2 max pooling with 2 or 3 tap columns (dilation 1) of one channel, rows layout:
 * the vertical max of the window's input rows first, on the 32 raw neighbours of each load
 * pair (and, for 3 columns, the one column after them), then one even/odd split per tap
 * column; the third column is the first shifted by two (alignr), not two more loads across
 * cache lines, and vectors whose columns all lie inside the row load without masks (a 3x3
 * pool of 64 x 111 x 111: 125 -> 84 us; the 2x2 pools, on short rows here, measured no
 * faster unmasked). Max is exact in any order. */
static inline __attribute__((always_inline)) void
pool_s2_rows(const win_masks *m, const float *xc, float *yc, const conv_geom *g, const int KW)
{
    const __m512 ninf = _mm512_set1_ps(-INFINITY);
    const __m512i even =
        _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
    const __m512i odd =
        _mm512_setr_epi32(1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31);
    for (int oy = 0; oy < g->h_out; oy++) {
        float *yr = yc + (size_t)oy * g->w_out;
        const float *rows[WIN_MAXK];
        int nr = 0;
        for (int ky = 0; ky < g->kh; ky++) {
            int iy = oy * g->sh - g->pt + ky;
            if (iy >= 0 && iy < g->h_in) rows[nr++] = xc + (size_t)iy * g->w_in - g->pl;
        }
        for (int v = 0; v < m->nv; v++) {
            int s = 32 * v - g->pl; /* first input column of the vector's windows */
            __mmask16 l0 = m->lo[v][0], h0 = m->hi[v][0];
            __m512 a = ninf, c = ninf, n = ninf;
            if (KW == 3 && s >= 0 && s + 33 <= g->w_in) {
                for (int r = 0; r < nr; r++) {
                    const float *p = rows[r] + 32 * v;
                    a = _mm512_max_ps(a, _mm512_loadu_ps(p));
                    c = _mm512_max_ps(c, _mm512_loadu_ps(p + 16));
                    n = _mm512_max_ps(n, _mm512_set1_ps(p[32]));
                }
            } else {
                int next = KW == 3 && s + 32 >= 0 && s + 32 < g->w_in; /* column s + 32 */
                for (int r = 0; r < nr; r++) {
                    const float *p = rows[r] + 32 * v;
                    a = _mm512_max_ps(a, _mm512_mask_loadu_ps(ninf, l0, p));
                    c = _mm512_max_ps(c, _mm512_mask_loadu_ps(ninf, h0, p + 16));
                    if (next) n = _mm512_max_ps(n, _mm512_set1_ps(p[32]));
                }
            }
            __m512 mx = _mm512_max_ps(_mm512_permutex2var_ps(a, even, c),
                                      _mm512_permutex2var_ps(a, odd, c));
            if (KW == 3) { /* columns 2, 4, .., 32: the pair shifted by two */
                __m512 a2 = _mm512_castsi512_ps(
                    _mm512_alignr_epi32(_mm512_castps_si512(c), _mm512_castps_si512(a), 2));
                __m512 c2 = _mm512_castsi512_ps(
                    _mm512_alignr_epi32(_mm512_castps_si512(n), _mm512_castps_si512(c), 2));
                mx = _mm512_max_ps(mx, _mm512_permutex2var_ps(a2, even, c2));
            }
            _mm512_mask_storeu_ps(yr + 16 * v, m->out[v], mx);
        }
    }
}

/* Max pooling of one channel, flat layout. */
static void pool_flat(const win_masks *m, const float *xc, float *yc, const conv_geom *g)
{
    const __m512 ninf = _mm512_set1_ps(-INFINITY);
    for (int v = 0; v < m->nv; v++) {
        __m512 mx = ninf;
        for (int ky = 0; ky < g->kh; ky++) {
            const float *xr = xc + 16 * v + (ky * g->dh - g->pt) * g->w_in - g->pl;
            for (int kx = 0; kx < g->kw; kx++)
                mx = _mm512_max_ps(
                    mx, _mm512_mask_loadu_ps(ninf, m->tap[v][ky * g->kw + kx], xr + kx * g->dw));
        }
        _mm512_mask_storeu_ps(yc + 16 * v, m->out[v], mx);
    }
}

/* Every tap a masked load filled with -inf (masks from win_init), so borders, padding and
 * ceil_mode windows need no scalar path; stride 2 over 2 or 3 columns (the common pools)
 * has its own loop. */
static void maxpool(const float *x, float *y, const conv_geom *g, int c0, int c1)
{
    win_masks m;
    if (!win_init(&m, g)) {
        cvy_kernels_avx2()->maxpool(x, y, g, c0, c1);
        return;
    }
    for (int c = c0; c < c1; c++) {
        const float *xc = x + (size_t)c * g->h_in * g->w_in;
        float *yc = y + (size_t)c * g->h_out * g->w_out;
        if (m.flat)
            pool_flat(&m, xc, yc, g);
        else if (g->kw == 3 && g->sw == 2 && g->dh == 1 && g->dw == 1)
            pool_s2_rows(&m, xc, yc, g, 3);
        else if (g->kw == 2 && g->sw == 2 && g->dh == 1 && g->dw == 1)
            pool_s2_rows(&m, xc, yc, g, 2);
        else
            pool_rows(&m, xc, yc, g, g->kh, g->kw, g->sw);
    }
}

/* ---- phase-plane rows --------------------------------------------------------------------- */

/* Both phase rows, 16 outputs of each per step from two loads (zeros outside the row) and
 * two two-source permutes. */
static void phase_rows(const float *src, int n, int pl, int wp, float *dst0, float *dst1)
{
    const __m512i ev = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30),
                  od = _mm512_setr_epi32(1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31);
    for (int x = 0; x < wp; x += 16) {
        int s = 2 * x - pl;
        __m512 a = _mm512_maskz_loadu_ps(range_mask(s, n), src + s);
        __m512 b = _mm512_maskz_loadu_ps(range_mask(s + 16, n), src + s + 16);
        __mmask16 k = cols_mask(wp - x);
        _mm512_mask_storeu_ps(dst0 + x, k, _mm512_permutex2var_ps(a, ev, b));
        if (dst1) _mm512_mask_storeu_ps(dst1 + x, k, _mm512_permutex2var_ps(a, od, b));
    }
}

/* ---- average pooling ------------------------------------------------------------------------ */

/* Taps of a window starting at padded position o (stride s, k taps) that count in the
 * divisor: inside the input [0, n), or with count_pad inside the input and the explicit
 * padding, never beyond it (ceil_mode). As the reference counts them. */
static int pool_taps(int o, int s, int pad, int k, int n, int pad_end, int count_pad)
{
    int c = 0;
    for (int t = 0; t < k; t++) {
        int i = o * s - pad + t;
        c += count_pad ? i < n + pad_end : i >= 0 && i < n;
    }
    return c;
}

/* Average pooling (dilation 1), rows layout: taps summed in (ky, kx) order from zero,
 * out-of-input lanes loading zeros (never -0: the sum starts at +0, so adding +0 changes
 * nothing), then one division by the window's count, as the reference does; the count is a
 * product of a row factor and a column factor, exact in float. */
static void avgpool(const float *x, float *y, const conv_geom *g, int c0, int c1, int count_pad)
{
    win_masks m;
    if (g->dh != 1 || g->dw != 1 || !win_init(&m, g) || m.flat) {
        cvy_kernels_avx2()->avgpool(x, y, g, c0, c1, count_pad);
        return;
    }
    float fx[WIN_MAXV * 16] __attribute__((aligned(64)));
    for (int ox = 0; ox < m.nv * 16; ox++)
        fx[ox] = (float)pool_taps(ox, g->sw, g->pl, g->kw, g->w_in, g->pr, count_pad);
    const __m512 zero = _mm512_setzero_ps();
    for (int c = c0; c < c1; c++) {
        const float *xc = x + (size_t)c * g->h_in * g->w_in;
        float *yc = y + (size_t)c * g->h_out * g->w_out;
        for (int oy = 0; oy < g->h_out; oy++) {
            float *yr = yc + (size_t)oy * g->w_out;
            int iy0 = oy * g->sh - g->pt;
            __m512 fy = _mm512_set1_ps(
                (float)pool_taps(oy, g->sh, g->pt, g->kh, g->h_in, g->pb, count_pad));
            for (int v = 0; v < m.nv; v++) {
                __m512 acc = zero;
                for (int ky = 0; ky < g->kh; ky++) {
                    int iy = iy0 + ky;
                    if (iy < 0 || iy >= g->h_in) continue;
                    const float *xr = xc + (size_t)iy * g->w_in;
                    for (int kx = 0; kx < g->kw; kx++)
                        acc = _mm512_add_ps(acc, win_load(&m, xr, v, kx, g->sw, g->pl, 1, zero));
                }
                __m512 div = _mm512_mul_ps(fy, _mm512_load_ps(fx + 16 * v));
                __mmask16 some = _mm512_cmp_ps_mask(div, zero, _CMP_GT_OQ);
                _mm512_mask_storeu_ps(yr + 16 * v, m.out[v], _mm512_maskz_div_ps(some, acc, div));
            }
        }
    }
}

static cvy_kernels AVX512;
static pthread_once_t once = PTHREAD_ONCE_INIT;

static void init(void)
{
    AVX512 = *cvy_kernels_avx2();
    AVX512.name = "avx512";
    AVX512.gemm = &GEMM_LANES;
    AVX512.gemm_few = &GEMM_FEW;
    AVX512.fc = fc_lanes;
    AVX512.avgpool = avgpool;
    AVX512.phase_rows = phase_rows;
    AVX512.fc_packed_size = few_packed_size;
    AVX512.fc_pack = few_pack;
    AVX512.depthwise = depthwise;
    AVX512.maxpool = maxpool;
    AVX512.wino_input = wino_input16;
    AVX512.wino_output = wino_output16;
}

const cvy_kernels *cvy_kernels_avx512(void)
{
    pthread_once(&once, init);
    return &AVX512;
}
