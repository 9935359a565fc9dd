/* kernels.h - the compute kernels, each a plain C reference (kernels_ref.c) plus optimized
 * variants (kernels_avx2.c, ...) chosen once at engine creation through cvy_kernels.
 *
 * Layout: activations are NCHW float32; kernels below work on one image ("x is (C, H, W)")
 * unless said otherwise. No kernel allocates memory; all are thread-safe on disjoint outputs. */
#ifndef CVY_KERNELS_H
#define CVY_KERNELS_H

#include <stddef.h>
#include <stdint.h>
#include "convoy.h"

/* Activations, fusable into conv/gemm epilogues. */
typedef enum act_type {
    ACT_NONE = 0,
    ACT_RELU,
    ACT_CLIP,        /* min(max(x, a), b) */
    ACT_LEAKY,       /* x >= 0 ? x : a*x */
    ACT_SIGMOID,     /* 1/(1+exp(-x)) */
    ACT_HARDSIGMOID, /* max(0, min(1, a*x + b)) */
    ACT_HARDSWISH,   /* x * max(0, min(1, x/6 + 1/2)) */
} act_type;

typedef struct act_params {
    act_type type;
    float a, b;
} act_params;

/* Spatial geometry of a conv or pool over one image. */
typedef struct conv_geom {
    int c_in, h_in, w_in;
    int c_out, h_out, w_out;
    int kh, kw, sh, sw, pt, pl, pb, pr, dh, dw; /* pads: top, left, bottom, right */
    int group;
} conv_geom;

/* The B operand of the conv GEMM. Row q of B is b + q*ldb (im2col panels, 1x1 inputs) or,
 * when off is set, b + off[q]: implicit convolution over a zero-padded input, where column j
 * is a position in the padded image. Columns map to outputs: with period 0, column j is
 * output j; otherwise of each `period` columns the first `valid` are outputs, packed row by
 * row (j = y*period + x is output y*valid + x when x < valid, and no output otherwise). */
typedef struct gemm_b {
    const float *b;
    size_t ldb;
    const int32_t *off;
    int period, valid;
    /* When pre_scale is set, row q of B is read as pre_act(pre_scale[q] * b + pre_shift[q]):
     * a batch-norm + activation on the conv's input folded into its read. Plain strided B
     * only (no padding to keep zero); cvy_gemm.prologue says whether a GEMM takes it. */
    const float *pre_scale, *pre_shift;
    const act_params *pre_act;
} gemm_b;

/* An own GEMM for convolutions. Weights are packed once at load by pack into panels of mr
 * rows (packed_size floats for an m x k matrix; a panel of rows [r0, r0 + mr) starts at
 * r0 * k); run then computes, for rows r < m and columns j in [j0, j0 + n):
 *   out[r][j] = act(sum_q a[r][q] * B[q][j] + bias[r] + res[r][j])
 * where B and the output positions come from a gemm_b; every element is summed in q order
 * from zero, then bias, then residual, so blocking and the choice of GEMM never change a
 * result. bias and res may be NULL. max_n > 0: at most max_n columns (B's, padding
 * included) per call. Each residual element is read just before the output element at the
 * same place is written, so c may be res (in place) unless partial sums wait in the output:
 * part_kc > 0 when they do for k > part_kc. Thread-safe on disjoint outputs. */
typedef struct cvy_gemm {
    const char *name;
    int mr, max_n;
    int prologue;  /* honours gemm_b.pre_scale */
    int part_kc;   /* k rows per block when partial sums wait in c between blocks; 0: never */
    int pass_rows; /* rows per pass when it reads B in place (a call of fewer rows repeats no
                    * packing); 0: it packs B in every call */
    size_t (*packed_size)(int m, int k);
    void (*pack)(const float *a, int m, int k, float *packed);
    void (*run)(const float *packed, int m, int k, const gemm_b *b, int j0, int n, float *c,
                size_t ldc, const float *bias, const float *res, size_t ldres,
                const act_params *act);
} cvy_gemm;

typedef struct cvy_kernels {
    const char *name; /* "ref", "avx2", "avx512" */

    /* y[r*ld + j] = act(y[r*ld + j] + bias[r] + res[r*ld + j]) for r < rows, j < cols;
     * bias and res may be NULL. The conv/gemm epilogue. */
    void (*bias_act)(float *y, int rows, int cols, size_t ld, const float *bias, const float *res,
                     size_t res_ld, const act_params *act);

    /* Elementwise activation y[i] = act(x[i]), i < n (x == y allowed). */
    void (*act)(const float *x, float *y, size_t n, const act_params *act);

    /* Depthwise conv (group == c_in == c_out) of channels [c0, c1) of one image.
     * x (C, H, W) with channels xcs floats apart, w (C, KH, KW), bias (C) or NULL, y (C, OH,
     * OW) with channels ycs floats apart, activation fused. */
    void (*depthwise)(const float *x, size_t xcs, const float *w, const float *bias, float *y,
                      size_t ycs, const conv_geom *g, int c0, int c1, const act_params *act);

    /* Max / average pooling of channels [c0, c1) of one image. For average pooling
     * count_pad says whether cells of the explicit padding count in the divisor; cells a
     * ceil_mode window reaches beyond the padding never count. */
    void (*maxpool)(const float *x, float *y, const conv_geom *g, int c0, int c1);
    void (*avgpool)(const float *x, float *y, const conv_geom *g, int c0, int c1, int count_pad);

    /* y[c] = mean of x[c*hw .. c*hw+hw), c < channels. */
    void (*gap)(const float *x, float *y, int channels, int hw);

    /* Elementwise y = a + b or a * b over n elements (mul = 0 / 1). */
    void (*binary)(const float *a, const float *b, float *y, size_t n, int mul);
    /* Fully connected, y[i*ldy + o] = act(bias[o] + dot(x_i, w_o)) for images i < n and
     * outputs o in [o0, o1); x (n, k) rows, w the (nout, k) rows as fc_pack laid them out
     * (as they are when fc_pack is NULL). Each element's arithmetic is the same whatever n
     * and the block it falls in, so batching never changes a result. */
    void (*fc)(const float *x, int n, int k, const float *w, int o0, int o1, const float *bias,
               float *y, size_t ldy, const act_params *act);
    /* fc's weight layout, made once at load: fc_packed_size(nout, k) floats. NULL: rows. */
    size_t (*fc_packed_size)(int nout, int k);
    void (*fc_pack)(const float *w, int nout, int k, float *packed);
    /* The phase rows of one input row (n floats, pl columns of left padding) for a stride-2
     * conv: dst0[x] = src[2x - pl] and, when dst1 is set, dst1[x] = src[2x + 1 - pl], for
     * x < wp, zero where the index falls outside [0, n). Reads src[0] to src[n - 1] only. */
    void (*phase_rows)(const float *src, int n, int pl, int wp, float *dst0, float *dst1);
    /* im2col, as cvy_im2col below (the reference). */
    void (*im2col)(const float *x, float *col, const conv_geom *g, int cin_g, int col0, int col1);

    /* Own GEMMs for convolutions (NULL: the engine uses OpenBLAS sgemm): gemm for any
     * column count, gemm_few (NULL when absent) for few columns, which puts output channels
     * in the vector lanes instead of columns. */
    const struct cvy_gemm *gemm;
    const struct cvy_gemm *gemm_few;
    /* Winograd F(4,3) input transform, as wino_input_tiles in winograd.h (the reference). */
    void (*wino_input)(const float *x, int cin, int h, int w, int pt, int pl, int tw, int t0,
                       int t1, float *v, size_t ldv, size_t vps);
    /* Winograd output transform + epilogue, as wino_output_tiles (the reference). */
    void (*wino_output)(const float *m, size_t mps, size_t ldm, int o0, int o1, int t0, int t1,
                        int tw, int h_out, int w_out, const float *bias, const float *res, float *y,
                        const act_params *act);
    /* y[c*hw + i] = a[c*hw + i] (+ or *) b[c], channel broadcast. */
    void (*binary_chan)(const float *a, const float *b, float *y, int channels, int hw, int mul);
} cvy_kernels;

/* The reference table and the optimized ones (NULL where the build lacks the ISA). */
const cvy_kernels *cvy_kernels_ref(void);
const cvy_kernels *cvy_kernels_avx2(void);
const cvy_kernels *cvy_kernels_avx512(void);

/* Reference convolution, direct loops, for tests and CVY_ISA_REF: one image, all groups.
 * x (C_in, H, W), w (C_out, C_in/group, KH, KW), bias (C_out) or NULL, y (C_out, OH, OW). */
void cvy_conv_ref(const float *x, const float *w, const float *bias, float *y, const conv_geom *g,
                  const act_params *act);

/* im2col of one group of one image for output columns [col0, col1) (column = oy*OW + ox):
 * col (K = cin_g*KH*KW rows, ld = col1-col0), padded cells zero. x points at the group's
 * first input channel. */
void cvy_im2col(const float *x, float *col, const conv_geom *g, int cin_g, int col0, int col1);

/* Softmax over n values: y = exp(x - max) / sum. Reference only (tiny). */
void cvy_softmax(const float *x, float *y, int n);

/* Scalar activation, shared by every table for tails. */
float cvy_act1(float v, const act_params *act);

#endif
