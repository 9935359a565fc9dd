/* exec.c - run contexts: the activation arena and scratch of one model at one maximum batch,
 * and the execution of the plan's steps on the engine's thread pool. Nothing here allocates
 * after cvy_context_create. */
#include <cblas.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "engine.h"
#include "util.h"
#include "winograd.h"

#define PARALLEL_MIN_FLOPS 2e5 /* steps smaller than this run on the calling thread alone */
#define SMALL_MAP          64  /* conv outputs per image from which steps run layer by layer */

struct cvy_context {
    const cvy_model *m;
    int max_batch;
    int threads;
    float *arena;   /* max_batch * plan.arena_floats */
    float *scratch; /* threads * plan.scratch_floats */
    float *input;   /* max_batch * input size: the context's own input buffer */
    float **ptr;    /* per value: where image 0 of it lives during the current run */
    float *fc_in;   /* max_batch * k floats: contiguous input rows for fully connected steps */
    int split;      /* steps [0, split) may run image by image (see cvy_context_run) */
    int profiling;
    double *layer_ms; /* per step, the last run's wall time when profiling */
};

cvy_status cvy_context_create(const cvy_model *m, int max_batch, cvy_context **out, cvy_error *err)
{
    if (!m || !out) return cvy_fail(err, CVY_ERR_ARG, "context: NULL model or out");
    *out = NULL;
    if (max_batch < 1 || max_batch > 65536)
        return cvy_fail(err, CVY_ERR_ARG, "context: max batch %d out of range 1..65536", max_batch);
    const plan *p = &m->plan;
    cvy_context *c = calloc(1, sizeof *c);
    if (!c) return cvy_fail(err, CVY_ERR_NOMEM, "context: out of memory");
    size_t arena, scratch, input;
    if (!cvy_mul_ok(p->arena_floats, (size_t)max_batch * sizeof(float), &arena) ||
        !cvy_mul_ok(p->scratch_floats, (size_t)m->eng->threads * sizeof(float), &scratch) ||
        !cvy_mul_ok(m->in_size, (size_t)max_batch * sizeof(float), &input)) {
        free(c);
        return cvy_fail(err, CVY_ERR_NOMEM, "context: sizes overflow");
    }
    c->m = m;
    c->max_batch = max_batch;
    c->threads = m->eng->threads;
    c->arena = cvy_alloc_aligned(arena); /* zeroed: every page touched now */
    c->scratch = cvy_alloc_aligned(scratch);
    c->input = cvy_alloc_aligned(input);
    c->ptr = calloc((size_t)p->n_values, sizeof *c->ptr);
    c->layer_ms = calloc((size_t)p->n_steps + 1, sizeof *c->layer_ms);
    /* Steps [0, split) may run whole images per worker: up to the first fully connected
     * step, and up to the first conv of a small map (<= 64 outputs), whose large weights
     * are better read once per layer for the whole batch than once per image. */
    size_t fc_k = 0;
    c->split = p->n_steps;
    for (int i = p->n_steps - 1; i >= 0; i--) {
        const step *s = &p->steps[i];
        if (s->kind == S_GEMM && (size_t)s->k > fc_k) fc_k = (size_t)s->k;
        if (s->kind == S_GEMM || ((s->kind == S_CONV_GEMM || s->kind == S_CONV_WINO) &&
                                  s->g.h_out * s->g.w_out <= SMALL_MAP))
            c->split = i;
    }
    if (fc_k && max_batch > 1) /* k <= arena per image, so this size cannot overflow */
        c->fc_in = cvy_alloc_aligned(fc_k * (size_t)max_batch * sizeof(float));
    if (!c->arena || !c->scratch || !c->input || !c->ptr || !c->layer_ms ||
        (fc_k && max_batch > 1 && !c->fc_in)) {
        cvy_context_destroy(c);
        return cvy_fail(err, CVY_ERR_NOMEM, "context: out of memory for a batch of %d (%zu MiB)",
                        max_batch, (arena + scratch + input) >> 20);
    }
    /* image i of value v lives at ptr[v] + i * arena_floats: each image has its own copy of
     * the planned arena, so images can run through the steps independently */
    for (int v = 0; v < p->n_values; v++)
        c->ptr[v] = c->arena + p->values[p->values[v].root].offset + p->values[v].view_off;
    *out = c;
    return CVY_OK;
}

void cvy_context_destroy(cvy_context *c)
{
    if (!c) return;
    cvy_free_aligned(c->arena);
    cvy_free_aligned(c->scratch);
    cvy_free_aligned(c->input);
    cvy_free_aligned(c->fc_in);
    free(c->ptr);
    free(c->layer_ms);
    free(c);
}

int cvy_context_max_batch(const cvy_context *c) { return c->max_batch; }
void cvy_context_set_profiling(cvy_context *c, int on) { c->profiling = on != 0; }
const double *cvy_context_layer_ms(const cvy_context *c)
{
    return c->profiling ? c->layer_ms : NULL;
}

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec * 1e-6;
}
float *cvy_context_input(cvy_context *c) { return c->input; }

/* ---- step execution ------------------------------------------------------------------------ */

typedef struct job {
    cvy_context *c;
    const step *s;
    int img0, n;     /* images [img0, img0 + n) */
    const float *fc; /* S_GEMM: the images' input rows, contiguous (run_step) */
} job;

static const float *W(const job *j, size_t off)
{
    return off == SIZE_MAX ? NULL : j->c->m->plan.weights + off;
}

static size_t vsize(const job *j, int v) { return j->c->m->plan.values[v].size; }

/* Floats from one image of value v to the next: the arena per image, or for the graph input
 * and its views (the caller's contiguous buffer) the input size. */
static size_t istride(const job *j, int v)
{
    const plan *p = &j->c->m->plan;
    return p->values[v].root == p->input ? p->values[p->input].size : p->arena_floats;
}

/* Prefetches rows [y0, y1] (clipped to the map) of the channel plane xc (h x w) for a
 * padding copy two channels ahead: the input usually comes from the previous step's tasks
 * on both cores, and a row or two per channel is too short a stream for the hardware
 * prefetcher (ResNet-50 2.5% faster). */
static void prefetch_rows(const float *xc, int h, int w, int y0, int y1)
{
    y0 = y0 < 0 ? 0 : y0;
    y1 = y1 >= h ? h - 1 : y1;
    for (const float *p = xc + (size_t)y0 * w, *e = xc + (size_t)(y1 + 1) * w; p < e; p += 16)
        __builtin_prefetch(p, 0, 3);
}

/* Copies output rows [r0, r1)'s input window of one group into the padded layout
 * (cin_g x hp rows of wp floats, zero borders; a row's right padding is the next row's left
 * padding, see padded_pitch) at pad, and zeroes the left padding of the row after the window,
 * which the last taps read. */
static void pad_rows(const float *x, float *pad, const step *s, int cin_g, int r0, int r1)
{
    const conv_geom *g = &s->g;
    int last = r1 - 1 + (g->kh - 1) * g->dh; /* last padded row the chunk reads */
    size_t plane = (size_t)g->h_in * g->w_in;
    for (int ic = 0; ic < cin_g; ic++) {
        const float *xc = x + (size_t)ic * plane;
        if (ic + 2 < cin_g)
            prefetch_rows(xc + 2 * plane, g->h_in, g->w_in, r0 - g->pt, last - g->pt);
        for (int py = r0; py <= last; py++) {
            float *row = pad + ((size_t)ic * s->hp + py) * s->wp;
            int iy = py - g->pt;
            if (iy < 0 || iy >= g->h_in) {
                memset(row, 0, (size_t)s->wp * sizeof(float));
                continue;
            }
            memset(row, 0, (size_t)g->pl * sizeof(float));
            memcpy(row + g->pl, xc + (size_t)iy * g->w_in, (size_t)g->w_in * sizeof(float));
            memset(row + g->pl + g->w_in, 0, (size_t)(s->wp - g->pl - g->w_in) * sizeof(float));
        }
        memset(pad + ((size_t)ic * s->hp + last + 1) * s->wp, 0, (size_t)g->pl * sizeof(float));
    }
}

/* Stride 2: copies the input window of output rows [r0, r1) of one group as phase planes
 * (cin_g x phases x hp rows of wp floats; phase (py, px) row y, column x holds padded input
 * row 2y + py, column 2x + px, zeros outside the input), so that tap (ky, kx) of output
 * (oy, ox) is row oy + ky/2, column ox + kx/2 of phase (ky & 1, kx & 1): the stride-1
 * GEMM over row offsets serves stride 2 too. */
static void pad_phases(const cvy_kernels *k, const float *x, float *pad, const step *s, int cin_g,
                       int r0, int r1)
{
    const conv_geom *g = &s->g;
    int ny = g->kh > 1 ? 2 : 1, nx = g->kw > 1 ? 2 : 1;
    int last = r1 - 1 + (g->kh - 1) / 2; /* last phase row the chunk reads */
    size_t plane = (size_t)s->hp * s->wp, in_plane = (size_t)g->h_in * g->w_in;
    for (int ic = 0; ic < cin_g; ic++) {
        const float *xc = x + (size_t)ic * in_plane;
        if (ic + 2 < cin_g)
            prefetch_rows(xc + 2 * in_plane, g->h_in, g->w_in, 2 * r0 - g->pt,
                          2 * last + ny - 1 - g->pt);
        for (int y = r0; y <= last; y++)
            for (int py = 0; py < ny; py++) { /* input rows in order */
                float *row = pad + ((size_t)(ic * ny + py) * nx * s->hp + y) * s->wp;
                float *odd = nx > 1 ? row + plane : NULL; /* phase (py, 1) */
                int iy = 2 * y + py - g->pt;
                if (iy < 0 || iy >= g->h_in) {
                    memset(row, 0, (size_t)s->wp * sizeof(float));
                    if (odd) memset(odd, 0, (size_t)s->wp * sizeof(float));
                } else
                    k->phase_rows(xc + (size_t)iy * g->w_in, g->w_in, g->pl, s->wp, row, odd);
            }
    }
}

/* The padded input of an implicit conv, for output rows [r0, r1). */
static void pad_input(const cvy_kernels *k, const float *x, float *pad, const step *s, int cin_g,
                      int r0, int r1)
{
    if (s->g.sh == 2)
        pad_phases(k, x, pad, s, cin_g, r0, r1);
    else
        pad_rows(x, pad, s, cin_g, r0, r1);
}

/* B of a 1x1 conv: its input x (cols per channel), with the folded batch-norm prologue. */
static gemm_b pointwise_b(const job *j, const float *x, int cols)
{
    const step *s = j->s;
    gemm_b bs = {.b = x, .ldb = (size_t)cols};
    if (s->pre_w != SIZE_MAX) {
        bs.pre_scale = W(j, s->pre_w);
        bs.pre_shift = W(j, s->pre_b);
        bs.pre_act = &s->pre_act;
    }
    return bs;
}

/* Band `band` of pool output rows of an implicit conv with its max pool fused (group 1):
 * the conv rows the band's windows read, from the padded input, into scratch + pool_off as
 * a (C, rows, W) map, then the pool from there into y (via the scratch after it). */
static void pooled_rows(const job *j, const step *s, const float *x, float *y, const float *bias,
                        float *scratch, int band)
{
    const conv_geom *g = &s->g, *pg = &s->pool;
    const cvy_kernels *kern = j->c->m->plan.kern;
    int p0 = band * s->chunk, p1 = p0 + s->chunk < pg->h_out ? p0 + s->chunk : pg->h_out;
    int first = p0 * pg->sh - pg->pt, last = (p1 - 1) * pg->sh - pg->pt + pg->kh - 1;
    int r0 = first < 0 ? 0 : first, r1 = last < g->h_out ? last + 1 : g->h_out;
    int k = g->c_in * g->kh * g->kw;
    size_t plane = (size_t)(r1 - r0) * g->w_out;
    float *cy = scratch + s->pool_off;
    pad_input(kern, x, scratch, s, g->c_in, r0, r1);
    /* B from padded row r0 on: the GEMM's column 0 is output row r0's first column */
    gemm_b bs = {
        .b = scratch + (size_t)r0 * s->wp, .off = s->boff, .period = s->wp, .valid = g->w_out};
    s->gemm->run(W(j, s->w_off), g->c_out, k, &bs, 0, (r1 - r0) * s->wp, cy, plane, bias, NULL, 0,
                 &s->act);
    conv_geom gb = *pg; /* the band's window: its conv rows, padding only where the map ends */
    gb.h_in = r1 - r0;
    gb.pt = r0 - first;
    gb.pb = last + 1 - r1;
    gb.h_out = p1 - p0;
    /* one pool call for all channels into a band-sized map after the conv rows, then each
     * channel's rows to their place (a call per channel set the kernel's masks up each time:
     * the tutorial CNN at batch 16 6% slower) */
    float *py = cy + cvy_round_up((size_t)g->c_out * plane, 16);
    size_t nb = (size_t)(p1 - p0) * pg->w_out, out_plane = (size_t)pg->h_out * pg->w_out;
    kern->maxpool(cy, py, &gb, 0, g->c_out);
    for (int c = 0; c < g->c_out; c++)
        memcpy(y + c * out_plane + (size_t)p0 * pg->w_out, py + c * nb, nb * sizeof(float));
}

/* One (image, group, chunk) of a GEMM conv, epilogue fused. Three ways to feed B: the input
 * itself (1x1), a padded copy read through row offsets (stride 1), or an im2col panel. */
static void conv_gemm_task(void *arg, int task, int thread)
{
    const job *j = arg;
    const step *s = j->s;
    const conv_geom *g = &s->g;
    const cvy_kernels *kern = j->c->m->plan.kern;
    int img = j->img0 + task / s->tasks, r = task % s->tasks;
    int cols = g->h_out * g->w_out, nchunks = s->tasks / g->group;
    if (s->rows) { /* a row part: all columns, output channels [m0, m1), group 1 */
        int m0 = r * s->rows, m1 = m0 + s->rows < g->c_out ? m0 + s->rows : g->c_out;
        const float *x = j->c->ptr[s->in[0]] + img * istride(j, s->in[0]);
        float *scratch = j->c->scratch + (size_t)thread * j->c->m->plan.scratch_floats;
        int k = g->c_in * g->kh * g->kw, n = cols;
        gemm_b bs = pointwise_b(j, x, cols); /* 1x1: the input is B */
        if (s->implicit) {                   /* the whole padded input */
            pad_input(kern, x, scratch, s, g->c_in, 0, g->h_out);
            bs = (gemm_b){.b = scratch, .off = s->boff, .period = s->wp, .valid = g->w_out};
            n = g->h_out * s->wp;
        } else if (s->im2col) { /* the whole im2col panel */
            kern->im2col(x, scratch, g, g->c_in, 0, cols);
            bs.b = scratch;
        }
        float *y = j->c->ptr[s->out] + img * istride(j, s->out) + (size_t)m0 * (s->gap ? 1 : cols);
        const float *res = s->residual < 0 ? NULL
                                           : j->c->ptr[s->residual] +
                                                 img * istride(j, s->residual) + (size_t)m0 * cols;
        float *c = s->gap ? scratch : y; /* fused pool: the rows in scratch, their means to y */
        s->gemm->run(W(j, s->w_off) + (size_t)m0 * k, m1 - m0, k, &bs, 0, n, c, (size_t)cols,
                     W(j, s->b_off) + m0, res, (size_t)cols, &s->act);
        if (s->gap) kern->gap(scratch, y, m1 - m0, cols);
        return;
    }
    int grp = r / nchunks, chunk = r % nchunks;
    int cin_g = g->c_in / g->group, cout_g = g->c_out / g->group;
    int k = cin_g * g->kh * g->kw;
    const float *x =
        j->c->ptr[s->in[0]] + img * istride(j, s->in[0]) + (size_t)grp * cin_g * g->h_in * g->w_in;
    float *y = j->c->ptr[s->out] + img * istride(j, s->out) + (size_t)grp * cout_g * cols;
    const float *res = NULL;
    if (s->residual >= 0)
        res = j->c->ptr[s->residual] + img * istride(j, s->residual) + (size_t)grp * cout_g * cols;
    const float *bias = W(j, s->b_off) + (size_t)grp * cout_g;
    float *scratch = j->c->scratch + (size_t)thread * j->c->m->plan.scratch_floats;

    if (s->pooled) {
        pooled_rows(j, s, x, y, bias, scratch, chunk);
        return;
    }
    if (s->implicit) {
        int r0 = chunk * s->chunk, r1 = r0 + s->chunk < g->h_out ? r0 + s->chunk : g->h_out;
        pad_input(kern, x, scratch, s, cin_g, r0, r1);
        gemm_b bs = {.b = scratch, .off = s->boff, .period = s->wp, .valid = g->w_out};
        const float *w = W(j, s->w_off) + (size_t)grp * s->gemm->packed_size(cout_g, k);
        s->gemm->run(w, cout_g, k, &bs, r0 * s->wp, (r1 - r0) * s->wp, y, (size_t)cols, bias, res,
                     (size_t)cols, &s->act);
        return;
    }
    int c0 = chunk * s->chunk, c1 = c0 + s->chunk < cols ? c0 + s->chunk : cols;
    gemm_b bs = pointwise_b(j, x, cols); /* 1x1 stride 1: the input is B */
    int j0 = c0;
    float *yc = y;
    const float *rc = res;
    if (s->im2col) { /* im2col panel of this chunk: its column 0 is output c0 */
        kern->im2col(x, scratch, g, cin_g, c0, c1);
        bs = (gemm_b){.b = scratch, .ldb = (size_t)(c1 - c0)};
        j0 = 0;
        yc = y + c0;
        rc = res ? res + c0 : NULL;
    }
    if (s->gemm) { /* own kernel on pre-packed weights, epilogue inside */
        const float *w = W(j, s->w_off) + (size_t)grp * s->gemm->packed_size(cout_g, k);
        s->gemm->run(w, cout_g, k, &bs, j0, c1 - c0, yc, (size_t)cols, bias, rc, (size_t)cols,
                     &s->act);
        return;
    }
    const float *w = W(j, s->w_off) + (size_t)grp * cout_g * k;
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, cout_g, c1 - c0, k, 1.0f, w, k,
                bs.b + j0, (int)bs.ldb, 0.0f, y + c0, cols);
    kern->bias_act(y + c0, cout_g, c1 - c0, (size_t)cols, bias, res ? res + c0 : NULL, (size_t)cols,
                   &s->act);
}

/* One (image, chunk of tiles, output-channel part) of a Winograd conv: input transform of
 * the chunk's tiles for every input channel, 36 GEMMs, output transform with bias, residual
 * and activation. Scratch: V (36 positions of C_in x chunk, wino_pos_stride apart), then M
 * (36 of part x chunk). */
static void wino_task(void *arg, int task, int thread)
{
    const job *j = arg;
    const step *s = j->s;
    const conv_geom *g = &s->g;
    const cvy_kernels *kern = j->c->m->plan.kern;
    int img = j->img0 + task / s->tasks, r = task % s->tasks, chunk = r / s->splits,
        part = r % s->splits;
    int tw = (g->w_out + 3) / 4, tiles = ((g->h_out + 3) / 4) * tw;
    int ld = s->chunk, t0 = chunk * ld, t1 = t0 + ld < tiles ? t0 + ld : tiles;
    int nt = t1 - t0, cin = g->c_in, cout = g->c_out, mr = s->gemm->mr;
    /* output channels [o0, o1): parts start on a packed panel boundary */
    int ocs = (cout + s->splits - 1) / s->splits;
    ocs = (ocs + mr - 1) / mr * mr;
    int o0 = part * ocs, o1 = o0 + ocs < cout ? o0 + ocs : cout;
    const float *x = j->c->ptr[s->in[0]] + img * istride(j, s->in[0]);
    float *y = j->c->ptr[s->out] + img * istride(j, s->out);
    const float *res =
        s->residual >= 0 ? j->c->ptr[s->residual] + img * istride(j, s->residual) : NULL;
    float *v = j->c->scratch + (size_t)thread * j->c->m->plan.scratch_floats;
    size_t vps = wino_pos_stride((size_t)cin, (size_t)ld),
           mps = wino_pos_stride((size_t)ocs, (size_t)ld);
    float *mm = v + WINO_POS * vps;
    kern->wino_input(x, cin, g->h_in, g->w_in, g->pt, g->pl, tw, t0, t1, v, (size_t)ld, vps);
    size_t per = s->gemm->packed_size(cout, cin);
    const float *u = W(j, s->w_off) + (size_t)(o0 / mr) * mr * cin;
    act_params none = {ACT_NONE, 0, 0};
    for (int q = 0; q < WINO_POS; q++) {
        gemm_b bs = {.b = v + q * vps, .ldb = (size_t)ld};
        s->gemm->run(u + (size_t)q * per, o1 - o0, cin, &bs, 0, nt, mm + q * mps, (size_t)ld, NULL,
                     NULL, 0, &none);
    }
    kern->wino_output(mm, mps, (size_t)ld, o0, o1, t0, t1, tw, g->h_out, g->w_out, W(j, s->b_off),
                      res, y, &s->act);
}

static void conv_ref_task(void *arg, int task, int thread)
{
    (void)thread;
    const job *j = arg;
    int img = j->img0 + task;
    const step *s = j->s;
    const float *x = j->c->ptr[s->in[0]] + img * istride(j, s->in[0]);
    float *y = j->c->ptr[s->out] + img * istride(j, s->out);
    cvy_conv_ref(x, W(j, s->w_off), W(j, s->b_off), y, &s->g, &s->act);
}

/* Channel-block tasks: depthwise conv and pools, s->chunk channels per task. */
static void channel_task(void *arg, int task, int thread)
{
    (void)thread;
    const job *j = arg;
    const step *s = j->s;
    const cvy_kernels *k = j->c->m->plan.kern;
    int img = j->img0 + task / s->tasks, c0 = (task % s->tasks) * s->chunk;
    int c1 = c0 + s->chunk < s->g.c_out ? c0 + s->chunk : s->g.c_out;
    const float *x = j->c->ptr[s->in[0]] + img * istride(j, s->in[0]);
    float *y = j->c->ptr[s->out] + img * istride(j, s->out);
    if (s->kind == S_CONV_DW)
        k->depthwise(x, (size_t)s->g.h_in * s->g.w_in, W(j, s->w_off), W(j, s->b_off), y,
                     (size_t)s->g.h_out * s->g.w_out, &s->g, c0, c1, &s->act);
    else if (s->kind == S_MAXPOOL)
        k->maxpool(x, y, &s->g, c0, c1);
    else
        k->avgpool(x, y, &s->g, c0, c1, s->count_pad);
}

/* Fully connected: output neurons [o0, o1) for all images of the job, activation fused. */
static void gemm_task(void *arg, int task, int thread)
{
    (void)thread;
    const job *j = arg;
    const step *s = j->s;
    int o0 = task * GEMM_CHUNK, o1 = o0 + GEMM_CHUNK < s->nout ? o0 + GEMM_CHUNK : s->nout;
    j->c->m->plan.kern->fc(j->fc, j->n, s->k, W(j, s->w_off), o0, o1, W(j, s->b_off),
                           j->c->ptr[s->out] + j->img0 * istride(j, s->out), istride(j, s->out),
                           &s->act);
}

/* General broadcasting for Add/Mul: strides from the padded 5-d shapes (batch dim = 0). */
static void binary_general(const job *j, int img, const float *a, const float *b, float *y)
{
    const step *s = j->s;
    size_t st[2][5];
    for (int q = 0; q < 2; q++) {
        size_t acc = 1;
        for (int d = 4; d >= 0; d--) {
            int dim = s->bshape[q][d];
            st[q][d] = (dim == 1) ? 0 : acc;
            if (dim > 1) acc *= (size_t)dim;
        }
    }
    (void)img;
    size_t i = 0;
    const int *o = s->oshape;
    for (int d1 = 0; d1 < o[1]; d1++)
        for (int d2 = 0; d2 < o[2]; d2++)
            for (int d3 = 0; d3 < o[3]; d3++)
                for (int d4 = 0; d4 < o[4]; d4++, i++) {
                    size_t ia = d1 * st[0][1] + d2 * st[0][2] + d3 * st[0][3] + d4 * st[0][4];
                    size_t ib = d1 * st[1][1] + d2 * st[1][2] + d3 * st[1][3] + d4 * st[1][4];
                    y[i] = s->mul ? a[ia] * b[ib] : a[ia] + b[ib];
                }
}

/* One band of output rows [y0, y1) of a depthwise step with 1x1 convs fused around it
 * (fuse_pre, fuse_post in plan.c). With pre, pre's output rows [ra, rb) that the band reads
 * go to the thread's scratch as a (C, rb - ra, W) map, else the band reads them in place;
 * the depthwise kernel makes the band from them, its geometry moved to the band (top
 * padding only in the first); with post, into scratch too, where post's GEMM reads it. */
static void band_task(void *arg, int task, int thread)
{
    const job *j = arg;
    const step *s = j->s, *pre = s->pre, *post = s->post;
    const conv_geom *g = &s->g;
    int img = j->img0 + task / s->tasks, y0 = (task % s->tasks) * s->chunk;
    int y1 = y0 + s->chunk < g->h_out ? y0 + s->chunk : g->h_out;
    int first = y0 * g->sh - g->pt, last = (y1 - 1) * g->sh - g->pt + (g->kh - 1) * g->dh;
    int ra = first < 0 ? 0 : first, rb = last < g->h_in ? last + 1 : g->h_in;
    size_t wi = (size_t)g->w_in, plane = (size_t)g->h_out * g->w_out;
    size_t nb = (size_t)(y1 - y0) * g->w_out; /* the band's output columns */
    float *scratch = j->c->scratch + (size_t)thread * j->c->m->plan.scratch_floats;
    conv_geom gb = *g;
    gb.h_in = rb - ra;
    gb.pt = ra - first;
    gb.pb = last + 1 - rb;
    gb.h_out = y1 - y0;
    const float *x = j->c->ptr[s->in[0]] + img * istride(j, s->in[0]);
    size_t xcs = (size_t)g->h_in * wi;
    if (pre) {
        size_t n = (size_t)(rb - ra) * wi;
        job jp = *j;
        jp.s = pre;
        gemm_b bs = pointwise_b(&jp, x + (size_t)ra * wi, g->h_in * g->w_in);
        pre->gemm->run(W(j, pre->w_off), pre->g.c_out, pre->g.c_in, &bs, 0, (int)n, scratch, n,
                       W(j, pre->b_off), NULL, 0, &pre->act);
        x = scratch, xcs = n;
        scratch += cvy_round_up((size_t)pre->g.c_out * n, 16); /* the dw band after it */
    } else
        x += (size_t)ra * wi;
    float *y = j->c->ptr[s->out] + img * istride(j, s->out) + (size_t)y0 * g->w_out;
    j->c->m->plan.kern->depthwise(x, xcs, W(j, s->w_off), W(j, s->b_off), post ? scratch : y,
                                  post ? nb : plane, &gb, 0, g->c_out, &s->act);
    if (!post) return;
    gemm_b bs = {.b = scratch, .ldb = nb};
    const float *res =
        post->residual < 0
            ? NULL
            : j->c->ptr[post->residual] + img * istride(j, post->residual) + (size_t)y0 * g->w_out;
    post->gemm->run(W(j, post->w_off), post->g.c_out, post->g.c_in, &bs, 0, (int)nb, y, plane,
                    W(j, post->b_off), res, plane, &post->act);
}

/* Per-image steps that are cheap or sequential: binary, concat, gap, act, softmax, copy. */
static void image_task(void *arg, int task, int thread)
{
    (void)thread;
    const job *j = arg;
    int img = j->img0 + task;
    const step *s = j->s;
    const cvy_kernels *k = j->c->m->plan.kern;
    const float *x = j->c->ptr[s->in[0]] + img * istride(j, s->in[0]);
    size_t osz = vsize(j, s->out);
    float *y = j->c->ptr[s->out] + img * istride(j, s->out);
    switch (s->kind) {
    case S_BINARY: {
        const float *b =
            s->b_const ? W(j, s->b_off) : j->c->ptr[s->in[1]] + img * istride(j, s->in[1]);
        if (s->bin_mode == BIN_SAME)
            k->binary(x, b, y, osz, s->mul);
        else if (s->bin_mode == BIN_CHAN)
            k->binary_chan(x, b, y, s->chan_c, s->chan_hw, s->mul);
        else
            binary_general(j, img, x, b, y);
        break;
    }
    case S_CONCAT: {
        float *dst = y;
        for (int o = 0; o < s->outer; o++)
            for (int q = 0; q < s->n_in; q++) {
                const float *src = j->c->ptr[s->in[q]] + img * istride(j, s->in[q]);
                memcpy(dst, src + (size_t)o * s->inner[q], s->inner[q] * sizeof(float));
                dst += s->inner[q];
            }
        break;
    }
    case S_GAP: k->gap(x, y, (int)osz, (int)(vsize(j, s->in[0]) / osz)); break;
    case S_ACT: k->act(x, y, osz, &s->act); break;
    case S_SOFTMAX:
        for (int o = 0; o < s->sm_outer; o++) {
            const float *xo = x + (size_t)o * s->sm_n * s->sm_inner;
            float *yo = y + (size_t)o * s->sm_n * s->sm_inner;
            if (s->sm_inner == 1) {
                cvy_softmax(xo, yo, s->sm_n);
                continue;
            }
            for (int in = 0; in < s->sm_inner; in++) { /* strided: rare, plain loops */
                float mx = xo[in];
                for (int q = 1; q < s->sm_n; q++)
                    if (xo[(size_t)q * s->sm_inner + in] > mx)
                        mx = xo[(size_t)q * s->sm_inner + in];
                float sum = 0.0f;
                for (int q = 0; q < s->sm_n; q++) {
                    float e = expf(xo[(size_t)q * s->sm_inner + in] - mx);
                    yo[(size_t)q * s->sm_inner + in] = e;
                    sum += e;
                }
                for (int q = 0; q < s->sm_n; q++) yo[(size_t)q * s->sm_inner + in] /= sum;
            }
        }
        break;
    case S_COPY: memcpy(y, x, osz * sizeof(float)); break;
    default: break;
    }
}

/* The task function of a step and its tasks per image (fully connected: per job). */
static cvy_task_fn step_fn(const step *s, int *per_image)
{
    *per_image = 1;
    switch (s->kind) {
    case S_CONV_GEMM: *per_image = s->tasks; return conv_gemm_task;
    case S_CONV_REF: return conv_ref_task;
    case S_CONV_WINO: *per_image = s->tasks; return wino_task;
    case S_CONV_DW: *per_image = s->tasks; return s->pre || s->post ? band_task : channel_task;
    case S_MAXPOOL:
    case S_AVGPOOL: *per_image = s->tasks; return channel_task;
    case S_GEMM: *per_image = s->tasks; return gemm_task;
    default: return image_task;
    }
}

/* Step s for images [img0, img0 + n), its tasks spread over the pool. */
static void run_step(cvy_context *c, const step *s, int img0, int n)
{
    job j = {c, s, img0, n, NULL};
    int per, threads = s->flops * n < PARALLEL_MIN_FLOPS ? 1 : c->threads;
    cvy_task_fn fn = step_fn(s, &per);
    if (s->kind == S_GEMM) { /* one job over all images: their rows, gathered when strided */
        size_t st = istride(&j, s->in[0]);
        j.fc = c->ptr[s->in[0]] + (size_t)img0 * st;
        if (n > 1 && st != (size_t)s->k) {
            for (int i = 0; i < n; i++)
                memcpy(c->fc_in + (size_t)i * s->k, j.fc + (size_t)i * st,
                       (size_t)s->k * sizeof(float));
            j.fc = c->fc_in;
        }
        cvy_pool_run(c->m->eng->pool, per, threads, fn, &j);
        return;
    }
    cvy_pool_run(c->m->eng->pool, n * per, threads, fn, &j);
}

/* Two independent steps as one pool run: tasks [0, n0) are the first's, the rest the
 * second's. */
typedef struct pair_job {
    job j[2];
    cvy_task_fn fn[2];
    int n0;
} pair_job;

static void pair_task(void *arg, int task, int thread)
{
    const pair_job *pj = arg;
    if (task < pj->n0)
        pj->fn[0]((void *)&pj->j[0], task, thread);
    else
        pj->fn[1]((void *)&pj->j[1], task - pj->n0, thread);
}

/* Steps a and b (a->with_next) for images [img0, img0 + n) in one pool run, the tasks of the
 * one with more work per task first, so that the smaller ones even out the end. */
static void run_pair(cvy_context *c, const step *a, const step *b, int img0, int n)
{
    const step *s[2] = {a, b};
    int per[2];
    cvy_task_fn fn[2] = {step_fn(a, &per[0]), step_fn(b, &per[1])};
    int f = b->flops / per[1] > a->flops / per[0]; /* the one run first */
    pair_job pj = {
        {{c, s[f], img0, n, NULL}, {c, s[!f], img0, n, NULL}}, {fn[f], fn[!f]}, n * per[f]};
    int threads = (a->flops + b->flops) * n < PARALLEL_MIN_FLOPS ? 1 : c->threads;
    cvy_pool_run(c->m->eng->pool, n * (per[0] + per[1]), threads, pair_task, &pj);
}

/* One image through steps [0, split) on the calling worker, every task in turn. */
static void image_chain_task(void *arg, int img, int thread)
{
    cvy_context *c = arg;
    const plan *p = &c->m->plan;
    for (int i = 0; i < c->split; i++) {
        job j = {c, &p->steps[i], img, 1, NULL}; /* steps before split: no fully connected */
        int per;
        cvy_task_fn fn = step_fn(j.s, &per);
        for (int t = 0; t < per; t++) fn(&j, t, thread);
    }
}

cvy_status cvy_context_run(cvy_context *c, int n, const float *input, float *output, cvy_error *err)
{
    if (!c || !output) return cvy_fail(err, CVY_ERR_ARG, "run: NULL context or output");
    if (n < 1 || n > c->max_batch)
        return cvy_fail(err, CVY_ERR_ARG, "run: batch %d outside 1..%d", n, c->max_batch);
    const plan *p = &c->m->plan;
    /* the graph input and its views read straight from the caller's (or our) buffer */
    const float *in = input ? input : c->input;
    for (int v = 0; v < p->n_values; v++)
        if (p->values[v].root == p->input) c->ptr[v] = (float *)in;
    unsigned fpu = cvy_fpu_enter();
    /* Whole images per worker through steps [0, split) while there are at least as many
     * images left as workers: no synchronisation between steps, and each image's activations
     * stay in its core's cache. The remaining images, and every step from split on, run step
     * by step with each step's tasks spread over the workers. Same arithmetic either way.
     * Profiling times steps, so it runs everything step by step. */
    int whole = c->profiling || c->split == 0 ? 0 : n / c->threads * c->threads;
    if (whole) cvy_pool_run(c->m->eng->pool, whole, c->threads, image_chain_task, c);
    /* the steps follow one another closely: the workers wait for the next awake (a sleeping
     * worker joins a step late, after a wake-up the caller pays for) */
    cvy_pool_hold(c->m->eng->pool, 1);
    for (int i = 0; i < p->n_steps; i++) {
        int img0 = i < c->split ? whole : 0;
        if (img0 == n) continue;
        /* a pair of independent steps in one run (profiling times them one by one) */
        if (p->steps[i].with_next && !c->profiling && (i + 1 < c->split ? whole : 0) == img0) {
            run_pair(c, &p->steps[i], &p->steps[i + 1], img0, n - img0);
            i++;
            continue;
        }
        double t0 = c->profiling ? now_ms() : 0.0;
        run_step(c, &p->steps[i], img0, n - img0);
        if (c->profiling) c->layer_ms[i] = now_ms() - t0;
    }
    cvy_pool_hold(c->m->eng->pool, 0);
    cvy_fpu_leave(fpu);
    job j = {c, NULL, 0, n, NULL};
    for (int i = 0; i < n; i++)
        memcpy(output + (size_t)i * c->m->out_size,
               c->ptr[p->output] + (size_t)i * istride(&j, p->output),
               c->m->out_size * sizeof(float));
    return CVY_OK;
}
