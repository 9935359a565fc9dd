/* plan.h - a model compiled for execution: values (activation buffers) placed in one arena,
 * steps in topological order with fused epilogues and pre-packed weights. Built once at load
 * by plan_build (plan.c), read-only afterwards, executed by exec.c. */
#ifndef CVY_PLAN_H
#define CVY_PLAN_H

#include <stddef.h>
#include <stdint.h>
#include "convoy.h"
#include "format.h"
#include "kernels.h"

typedef struct value {
    int ndim; /* per image, batch excluded */
    int dims[4];
    size_t size;     /* floats per image */
    int root;        /* the value whose storage this one shares (itself unless a view) */
    size_t view_off; /* floats into each image of root where this value starts (concat parts) */
    int first, last; /* first step writing it, last step reading it (root only) */
    size_t offset;   /* arena offset in floats per image; times max_batch at run time */
    int used;        /* an activation that exists in the graph */
} value;

typedef enum step_kind {
    S_CONV_GEMM, /* im2col (or none for 1x1) + sgemm + fused epilogue */
    S_CONV_DW,   /* depthwise kernel */
    S_CONV_REF,  /* reference direct conv (CVY_ISA_REF) */
    S_CONV_WINO, /* Winograd F(4,3): transforms around 36 GEMMs */
    S_MAXPOOL,
    S_AVGPOOL,
    S_GAP,
    S_ACT,
    S_BINARY,
    S_CONCAT,
    S_GEMM,
    S_SOFTMAX,
    S_COPY, /* the output is a view of the input: copy to the user's buffer */
} step_kind;

enum bin_mode { BIN_SAME, BIN_CHAN, BIN_GENERAL };

typedef struct step {
    step_kind kind;
    char name[FMT_NAME_LEN + 1];
    char op[64];          /* fused op label, e.g. "Conv+BatchNormalization+Relu" */
    const char *algo;     /* kernel choice */
    const cvy_gemm *gemm; /* conv: the own GEMM it runs on, NULL: OpenBLAS or none */
    int in[FMT_MAX_INPUTS];
    int n_in;
    int out;
    int residual; /* value added in the epilogue, or -1 */
    act_params act;

    conv_geom g; /* conv and pools */
    int count_pad;
    size_t w_off, b_off; /* offsets into the model's weight block (floats); SIZE_MAX = none */

    /* Gemm: y (N, nout) = x (N, k) W' + bias, W packed as (nout, k) */
    int k, nout;

    /* binary: input 1 may be a constant (b_off) */
    int bin_mode, mul, b_const;
    int chan_c, chan_hw; /* BIN_CHAN: input 1 holds chan_c values, each over chan_hw */
    int bshape[2][5];    /* general broadcast: dims of each input padded to 5 (batch first) */
    int oshape[5];

    /* concat: per image, outer = prod(dims before axis) */
    int outer;
    size_t inner[FMT_MAX_INPUTS]; /* floats per outer slice of each input */

    /* softmax: per image outer x n x inner */
    int sm_outer, sm_n, sm_inner;

    size_t params;
    double flops;
    size_t scratch; /* floats of per-thread scratch this step needs */
    int tasks;      /* parallel tasks per image (conv column chunks / channel blocks) */
    int chunk;      /* conv: output columns per task (implicit: output rows per task;
                     * Winograd: tiles per task); depthwise and pools: channels per task */
    int rows;       /* conv: output channels per task (a multiple of gemm_mr), 0 = all */
    int implicit;   /* conv over a zero-padded copy of the input, no im2col (stride 1 or 2) */
    int im2col;     /* conv: B is an im2col panel in scratch (neither a 1x1 nor implicit) */
    int splits;     /* Winograd: output-channel parts per tile chunk (2 when <= 3 chunks) */
    int with_next;  /* runs in one pool run with the next step, which is independent of it
                     * (pair_steps in plan.c) */
    /* implicit conv with the max pool after it fused (fuse_pool in plan.c): pool is its
     * geometry, chunk pool output rows per task, out the pool's output; each task's conv
     * rows go to its scratch at pool_off */
    int pooled;
    conv_geom pool;
    size_t pool_off;
    /* 1x1 conv in row parts with the global average pool after it fused (fuse_gap): each
     * task's rows go to its scratch, their means to out, the pool's output */
    int gap;
    int hp, wp;    /* implicit: padded input size */
    int32_t *boff; /* implicit: offset of each k row in the padded input (owned) */
    /* 1x1 conv: a batch-norm + activation of its input applied as the GEMM reads it (scale at
     * pre_w, shift at pre_b, SIZE_MAX: none) */
    size_t pre_w, pre_b;
    act_params pre_act;
    /* depthwise: the 1x1 convs before and after it (owned, or NULL), run inside it band by
     * band of its output rows (fuse_pre, fuse_post in plan.c); chunk is then output rows
     * per band and tasks bands per image; with post, out and residual are post's */
    struct step *pre, *post;
} step;

typedef struct plan {
    int n_values;
    value *values;
    int n_steps;
    step *steps;
    int input, output;
    size_t arena_floats;   /* per image */
    size_t scratch_floats; /* per thread, max over steps */
    float *weights;        /* one aligned block */
    size_t n_weights;
    size_t params;
    double flops;
    const cvy_kernels *kern;
    int use_blas;
    int winograd; /* Winograd allowed */
} plan;

/* Validates fm's graph semantics, infers shapes, fuses and plans. kern picks the kernels
 * (ref: no BLAS, direct reference conv). On failure the message names the node. */
cvy_status plan_build(const fmt_model *fm, const cvy_kernels *kern, int use_blas, int winograd,
                      plan *out, cvy_error *err);
void plan_free(plan *p);

#define CONV_CHUNK            512 /* output columns per im2col+sgemm task: fixed, not thread-dependent */
#define GEMM_CHUNK            64                /* output neurons per fully-connected task */
#define PLAN_MAX_ARENA_FLOATS ((size_t)1 << 28) /* 1 GiB of activations per image at most */
#define CONV_PANEL_FLOATS     (256 * 1024)      /* im2col panel (k x chunk) budget: 1 MiB */
#define FEW_COLS              64  /* columns per call up to which convs use the few-column GEMM */
#define FEW_COLS_LONG         256 /* ... or with k >= FEW_LONG_K, this many */
#define FEW_LONG_K            256
#define BAND_FLOATS           (192 * 1024) /* depthwise bands: at most 768 KiB of rows per thread ... */
#define BAND_MIN_ROWS         4            /* ... of at least this many depthwise output rows */
#define POOL_ROWS_FLOATS      (128 * 1024) /* conv + pool: conv rows a task keeps in scratch */
#define PASS_PART_FLOPS       2e6 /* 1x1 row parts of one GEMM pass: at least this much work each */

#endif
