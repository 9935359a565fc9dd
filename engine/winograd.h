/* winograd.h - Winograd F(4x4, 3x3) for 3x3 stride-1 convolutions: each 4x4 output tile comes
 * from a 6x6 input tile through 36 element-wise products summed over input channels, i.e. 36
 * GEMMs of (out channels x in channels) by (in channels x tiles): 4x fewer multiplications
 * than direct convolution, paid for with input and output transforms and a rounding error
 * that tests bound against direct convolution. */
#ifndef CVY_WINOGRAD_H
#define CVY_WINOGRAD_H

#include <stddef.h>

#define WINO_TILE  4  /* outputs per tile side */
#define WINO_ALPHA 6  /* input tile side: 4 + 3 - 1 */
#define WINO_POS   36 /* transformed positions */
#define WINO_CHUNK 32 /* tiles per GEMM call (columns of the 36 GEMMs), at most */
/* A task's transformed input and products (WINO_POS x (C_in + C_out) floats per tile): a map
 * of 33-96 tiles (28x28) where WINO_CHUNK tiles take more than this many floats and half as
 * many do not runs 16 tiles per task (640 KB stays in a 1 MB L2, and 49+ tiles then need
 * no channel split: ResNet's 28x28 128 -> 128 0.75 -> 0.64 ms on one core). Larger maps keep
 * 32 (VGG's 112x112 64 -> 128 3% slower at 16: twice the weight passes, GEMMs one vector
 * wide). */
#define WINO_TASK_FLOATS (160 * 1024)
#define WINO_FEW_TILES   16 /* maps of at most this many tiles use the few-column GEMM */

/* U = G g G^T for one 3x3 kernel g (row-major), 36 values, in double precision. */
void wino_kernel(const float *g, double u[WINO_POS]);

/* V = B^T d B for the 6x6 input tile at (y0, x0) of one channel x (h x w), zero outside;
 * writes v[p * vstride] for the 36 positions p. */
void wino_input(const float *x, int h, int w, int y0, int x0, float *v, size_t vstride);

/* Floats from one of the 36 positions of V (or M) to the next, for rows (channels) of ld
 * floats each: 16 more than the rows take, so that the positions a transform touches
 * together do not all fall in one L1 set, as they did whenever the rows took a multiple of
 * 4 KB (ResNet-18 4%, DenseNet-121 5% faster). Keeps positions 64-byte aligned. */
static inline size_t wino_pos_stride(size_t rows, size_t ld) { return rows * ld + 16; }

/* The input transform of tiles [t0, t1) for channels [0, cin) of x (cin x h x w): tile t sits
 * at input (t / tw * 4 - pt, t % tw * 4 - pl); writes v[p * vps + ic * ldv + t - t0] for the
 * 36 positions p (vps >= cin * ldv). Reference version; kernels may vectorize it
 * (cvy_kernels.wino_input). */
void wino_input_tiles(const float *x, int cin, int h, int w, int pt, int pl, int tw, int t0, int t1,
                      float *v, size_t ldv, size_t vps);

/* Y = A^T m A: the 4x4 outputs of 36 transformed values m[p * mstride]. */
void wino_output(const float *m, size_t mstride, float y[WINO_TILE][WINO_TILE]);

/* The output transform and epilogue of tiles [t0, t1) and output channels [o0, o1): the 36
 * values of (oc, t) are m[q * mps + (oc - o0) * ldm + t - t0]; writes y (C_out x
 * h_out x w_out): act(Y + bias[oc] + res) for the tile's cells inside the image; res (same
 * layout as y) may be NULL. Reference version; kernels may vectorize it. */
struct act_params;
void wino_output_tiles(const float *m, size_t mps, size_t ldm, int o0, int o1, int t0, int t1,
                       int tw, int h_out, int w_out, const float *bias, const float *res, float *y,
                       const struct act_params *act);

#endif
