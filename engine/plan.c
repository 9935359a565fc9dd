/* plan.c - turns a parsed .cvy graph into an execution plan: checks every node (operator,
 * attributes, input kinds, shapes), orders nodes topologically, folds batch-norm into the
 * preceding conv, fuses bias + residual add + activation into conv and gemm epilogues, packs
 * weights into one aligned block and places every activation in one arena by liveness. */
#include "plan.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"
#include "winograd.h"

typedef struct builder {
    const fmt_model *fm;
    plan *p;
    cvy_error *err;
    float *w; /* weight store, grown while planning */
    size_t nw, capw;
    int *producer;  /* node producing each tensor, -1 */
    int *consumers; /* number of node inputs reading each tensor (+1 for the graph output) */
    int *order;     /* nodes in topological order */
    char *done;     /* node already folded into an earlier step */
    int cap_steps;
} builder;

#define NODE_FAIL(b, i, s, ...) node_fail(b, i, s, __VA_ARGS__)

/* Formats "node <i> '<name>' (<Op>): <message>" into the error. */
__attribute__((format(printf, 4, 5))) static cvy_status node_fail(builder *b, int i, cvy_status s,
                                                                  const char *fmt, ...)
{
    char msg[400];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    const fmt_node *n = &b->fm->nodes[i];
    return cvy_fail(b->err, s, "node %d '%s' (%s): %s", i, n->name, fmt_op_name(n->op), msg);
}

/* Appends n floats (copied bytewise: src may be unaligned, or NULL for zeros) to the weight
 * store at a 16-float aligned offset. Returns the offset, or SIZE_MAX on OOM. */
static size_t wpush(builder *b, const void *src, size_t n)
{
    size_t off = cvy_round_up(b->nw, 16);
    if (off + n > b->capw) {
        size_t cap = b->capw ? b->capw : 4096;
        while (cap < off + n) cap *= 2;
        float *w = realloc(b->w, cap * sizeof(float));
        if (!w) return SIZE_MAX;
        b->w = w;
        b->capw = cap;
    }
    memset(b->w + b->nw, 0, (off - b->nw) * sizeof(float));
    if (src)
        memcpy(b->w + off, src, n * sizeof(float));
    else
        memset(b->w + off, 0, n * sizeof(float));
    b->nw = off + n;
    return off;
}

static float wget(const fmt_tensor *t, size_t i)
{
    float v;
    memcpy(&v, (const char *)t->data + i * sizeof(float), sizeof v);
    return v;
}

static step *new_step(builder *b, int node, step_kind kind, const char *algo)
{
    plan *p = b->p;
    if (p->n_steps == b->cap_steps) {
        int cap = b->cap_steps ? 2 * b->cap_steps : 16;
        step *s = realloc(p->steps, (size_t)cap * sizeof *s);
        if (!s) return NULL;
        p->steps = s;
        b->cap_steps = cap;
    }
    step *s = &p->steps[p->n_steps++];
    memset(s, 0, sizeof *s);
    const fmt_node *n = &b->fm->nodes[node];
    s->kind = kind;
    s->algo = algo;
    s->pre_w = s->pre_b = SIZE_MAX;
    memcpy(s->name, n->name, sizeof s->name);
    snprintf(s->op, sizeof s->op, "%s", fmt_op_name(n->op));
    s->residual = -1;
    s->w_off = s->b_off = SIZE_MAX;
    s->n_in = 1;
    s->in[0] = (int)n->in[0];
    s->out = (int)n->out;
    return s;
}

static void op_append(step *s, uint32_t op)
{
    size_t l = strlen(s->op);
    snprintf(s->op + l, sizeof s->op - l, "+%s", fmt_op_name(op));
}

static value *val(builder *b, uint32_t t) { return &b->p->values[t]; }

static int is_act(uint32_t t, const fmt_model *fm) { return fm->tensors[t].kind == FMT_ACTIVATION; }

static void set_shape(value *v, int ndim, const int *dims)
{
    v->ndim = ndim;
    v->size = 1;
    for (int i = 0; i < ndim; i++) {
        v->dims[i] = dims[i];
        v->size *= (size_t)dims[i];
    }
    v->used = 1;
}

/* ---- graph checks: producers, topological order, dead nodes ------------------------------ */

static cvy_status check_graph(builder *b)
{
    const fmt_model *fm = b->fm;
    int nt = (int)fm->n_tensors, nn = (int)fm->n_nodes;
    /* images are (C, H, W); non-image models (ONNX imports) may take 1 or 2 dims per item */
    if (!is_act(fm->input, fm) || fm->tensors[fm->input].ndim < 1 ||
        fm->tensors[fm->input].ndim > 3)
        return cvy_fail(b->err, CVY_ERR_FORMAT,
                        "graph input tensor %u must be an activation with dims (C, H, W)",
                        fm->input);
    if (!is_act(fm->output, fm))
        return cvy_fail(b->err, CVY_ERR_FORMAT, "graph output tensor %u is not an activation",
                        fm->output);
    for (int t = 0; t < nt; t++) b->producer[t] = -1;
    for (int i = 0; i < nn; i++) {
        const fmt_node *n = &fm->nodes[i];
        if (!is_act(n->out, fm))
            return NODE_FAIL(b, i, CVY_ERR_FORMAT, "output tensor %u is a weight", n->out);
        if (n->out == fm->input) return NODE_FAIL(b, i, CVY_ERR_FORMAT, "writes the graph input");
        if (b->producer[n->out] >= 0)
            return NODE_FAIL(b, i, CVY_ERR_FORMAT, "tensor %u already produced by node %d", n->out,
                             b->producer[n->out]);
        b->producer[n->out] = i;
        for (uint32_t k = 0; k < n->n_in; k++) b->consumers[n->in[k]]++;
    }
    b->consumers[fm->output]++;
    for (int i = 0; i < nn; i++) {
        const fmt_node *n = &fm->nodes[i];
        for (uint32_t k = 0; k < n->n_in; k++) {
            uint32_t t = n->in[k];
            if (is_act(t, fm) && t != fm->input && b->producer[t] < 0)
                return NODE_FAIL(b, i, CVY_ERR_FORMAT, "input tensor %u is never produced", t);
        }
    }
    if (fm->output != fm->input && b->producer[fm->output] < 0)
        return cvy_fail(b->err, CVY_ERR_FORMAT, "graph output tensor %u is never produced",
                        fm->output);

    /* Kahn's algorithm over node dependencies, keeping file order among ready nodes. */
    int *indeg = calloc((size_t)nn, sizeof *indeg);
    if (!indeg) return cvy_fail(b->err, CVY_ERR_NOMEM, "out of memory");
    for (int i = 0; i < nn; i++)
        for (uint32_t k = 0; k < fm->nodes[i].n_in; k++)
            if (b->producer[fm->nodes[i].in[k]] >= 0) indeg[i]++;
    int head = 0, count = 0;
    for (int i = 0; i < nn; i++)
        if (indeg[i] == 0) b->order[count++] = i;
    while (head < count) {
        int i = b->order[head++];
        uint32_t out = fm->nodes[i].out;
        for (int j = 0; j < nn; j++)
            for (uint32_t k = 0; k < fm->nodes[j].n_in; k++)
                if (fm->nodes[j].in[k] == out && --indeg[j] == 0) b->order[count++] = j;
    }
    free(indeg);
    if (count != nn) return cvy_fail(b->err, CVY_ERR_FORMAT, "the graph has a cycle");

    /* every node must feed the output */
    char *live = calloc((size_t)nt, 1);
    if (!live) return cvy_fail(b->err, CVY_ERR_NOMEM, "out of memory");
    live[fm->output] = 1;
    for (int o = nn - 1; o >= 0; o--) {
        const fmt_node *n = &fm->nodes[b->order[o]];
        if (!live[n->out]) continue;
        for (uint32_t k = 0; k < n->n_in; k++) live[n->in[k]] = 1;
    }
    for (int i = 0; i < nn; i++)
        if (!live[fm->nodes[i].out]) {
            free(live);
            return NODE_FAIL(b, i, CVY_ERR_FORMAT, "does not contribute to the graph output");
        }
    free(live);
    return CVY_OK;
}

/* The single node reading tensor t, or -1 if none, several, or t is the graph output. */
static int sole_consumer(builder *b, uint32_t t)
{
    if (b->consumers[t] != 1 || t == b->fm->output) return -1;
    for (uint32_t i = 0; i < b->fm->n_nodes; i++)
        for (uint32_t k = 0; k < b->fm->nodes[i].n_in; k++)
            if (b->fm->nodes[i].in[k] == t) return (int)i;
    return -1;
}

/* Fills act from an activation node; returns 0 if the node is no activation. */
static int node_act(const fmt_node *n, act_params *act)
{
    switch (n->op) {
    case OP_RELU: *act = (act_params){ACT_RELU, 0, 0}; return 1;
    case OP_CLIP: *act = (act_params){ACT_CLIP, n->fa[0], n->fa[1]}; return 1;
    case OP_LEAKYRELU: *act = (act_params){ACT_LEAKY, n->fa[0], 0}; return 1;
    case OP_SIGMOID: *act = (act_params){ACT_SIGMOID, 0, 0}; return 1;
    case OP_HARDSIGMOID: *act = (act_params){ACT_HARDSIGMOID, n->fa[0], n->fa[1]}; return 1;
    case OP_HARDSWISH: *act = (act_params){ACT_HARDSWISH, 0, 0}; return 1;
    default: return 0;
    }
}

static cvy_status check_act_params(builder *b, int i, const act_params *a)
{
    if (a->type == ACT_CLIP && !(a->a <= a->b))
        return NODE_FAIL(b, i, CVY_ERR_UNSUPPORTED, "Clip min %g > max %g", a->a, a->b);
    if (!isfinite(a->a) && a->type != ACT_CLIP)
        return NODE_FAIL(b, i, CVY_ERR_UNSUPPORTED, "non-finite attribute");
    return CVY_OK;
}

/* If step s's output has a sole consumer that is an activation, fold it into s. */
static cvy_status fuse_act(builder *b, step *s)
{
    if (s->act.type != ACT_NONE) return CVY_OK;
    int c = sole_consumer(b, (uint32_t)s->out);
    act_params a;
    if (c < 0 || !node_act(&b->fm->nodes[c], &a)) return CVY_OK;
    cvy_status st = check_act_params(b, c, &a);
    if (st != CVY_OK) return st;
    s->act = a;
    op_append(s, b->fm->nodes[c].op);
    b->done[c] = 1;
    value *from = val(b, (uint32_t)s->out), *to = val(b, b->fm->nodes[c].out);
    set_shape(to, from->ndim, from->dims);
    s->out = (int)b->fm->nodes[c].out;
    return CVY_OK;
}

/* Channel blocks of a depthwise conv or pool: about 16 channels each, in an even number of
 * blocks when there is more than one, so two workers get equal shares. Sets s->chunk
 * (channels per task) and s->tasks. */
static void channel_blocks(step *s, int channels)
{
    int t = (channels + 15) / 16;
    if (t > 1 && t % 2) t++;
    s->chunk = (channels + t - 1) / t;
    s->tasks = (channels + s->chunk - 1) / s->chunk;
}

/* ---- Conv ---------------------------------------------------------------------------------- */

static cvy_status spatial(builder *b, int i, const value *x, int is_conv, conv_geom *g,
                          int *ceil_mode)
{
    const fmt_node *n = &b->fm->nodes[i];
    const int32_t *a = n->ia;
    if (x->ndim != 3)
        return NODE_FAIL(b, i, CVY_ERR_SHAPE, "input must be (C, H, W), has %d dims", x->ndim);
    *g = (conv_geom){.c_in = x->dims[0],
                     .h_in = x->dims[1],
                     .w_in = x->dims[2],
                     .kh = a[A_KH],
                     .kw = a[A_KW],
                     .sh = a[A_SH],
                     .sw = a[A_SW],
                     .pt = a[A_PT],
                     .pl = a[A_PL],
                     .pb = a[A_PB],
                     .pr = a[A_PR],
                     .dh = a[A_DH],
                     .dw = a[A_DW],
                     .group = 1};
    if (g->kh < 1 || g->kw < 1 || g->kh > 4096 || g->kw > 4096)
        return NODE_FAIL(b, i, CVY_ERR_UNSUPPORTED, "kernel %dx%d out of range", g->kh, g->kw);
    if (g->sh < 1 || g->sw < 1 || g->sh > 4096 || g->sw > 4096)
        return NODE_FAIL(b, i, CVY_ERR_UNSUPPORTED, "stride %dx%d out of range", g->sh, g->sw);
    if (g->dh < 1 || g->dw < 1 || g->dh > 4096 || g->dw > 4096)
        return NODE_FAIL(b, i, CVY_ERR_UNSUPPORTED, "dilation %dx%d out of range", g->dh, g->dw);
    int ekh = (g->kh - 1) * g->dh + 1, ekw = (g->kw - 1) * g->dw + 1;
    if (g->pt < 0 || g->pl < 0 || g->pb < 0 || g->pr < 0 || g->pt >= ekh || g->pb >= ekh ||
        g->pl >= ekw || g->pr >= ekw)
        return NODE_FAIL(b, i, CVY_ERR_UNSUPPORTED,
                         "pads (%d,%d,%d,%d) must be >= 0 and smaller than the kernel", g->pt,
                         g->pl, g->pb, g->pr);
    long hp = (long)g->h_in + g->pt + g->pb, wp = (long)g->w_in + g->pl + g->pr;
    if (hp < ekh || wp < ekw)
        return NODE_FAIL(b, i, CVY_ERR_SHAPE, "kernel %dx%d larger than padded input %ldx%ld", ekh,
                         ekw, hp, wp);
    *ceil_mode = is_conv ? 0 : a[A_CEIL];
    if (*ceil_mode != 0 && *ceil_mode != 1)
        return NODE_FAIL(b, i, CVY_ERR_UNSUPPORTED, "ceil_mode %d", *ceil_mode);
    long oh = (hp - ekh) / g->sh + 1, ow = (wp - ekw) / g->sw + 1;
    if (*ceil_mode) {
        oh = (hp - ekh + g->sh - 1) / g->sh + 1;
        ow = (wp - ekw + g->sw - 1) / g->sw + 1;
        /* a window may not start inside the bottom/right padding (PyTorch, ONNX reference) */
        if ((oh - 1) * g->sh >= (long)g->h_in + g->pt) oh--;
        if ((ow - 1) * g->sw >= (long)g->w_in + g->pl) ow--;
    }
    g->h_out = (int)oh;
    g->w_out = (int)ow;
    g->c_out = g->c_in;
    return CVY_OK;
}

static cvy_status weight_dims(builder *b, int i, uint32_t t, int ndim, const int *want,
                              const char *what)
{
    const fmt_tensor *w = &b->fm->tensors[t];
    if (w->kind != FMT_WEIGHT)
        return NODE_FAIL(b, i, CVY_ERR_FORMAT, "%s (tensor %u) must be a weight", what, t);
    int ok = (int)w->ndim == ndim;
    for (int d = 0; ok && d < ndim; d++) ok = want[d] < 0 || (int)w->dims[d] == want[d];
    if (!ok) return NODE_FAIL(b, i, CVY_ERR_SHAPE, "%s (tensor %u) has the wrong shape", what, t);
    return CVY_OK;
}

/* Output columns per im2col/1x1 task of a conv with `cols` outputs and k rows of B, fixed
 * per layer (never by thread count): at least two chunks when the map is not tiny, so a
 * single image still spreads over two cores, and the column panel stays in L2. Halves are
 * rounded up to `unit` columns: 16, a vector, for the columns GEMM; 8, a micro-tile, for the
 * few-column one (14x14: 104 + 92 rather than 112 + 84, ResNet-50's layer3 1x1s 9% faster). */
static size_t conv_chunk(size_t cols, size_t k, size_t unit)
{
    size_t chunk = cols <= 32 ? cols : cvy_round_up((cols + 1) / 2, unit);
    size_t kcap = (CONV_PANEL_FLOATS / k) / 32 * 32;
    if (chunk > kcap) chunk = kcap < 32 ? 32 : kcap;
    return chunk > CONV_CHUNK ? CONV_CHUNK : chunk;
}

/* Row pitch of a conv's zero-padded input copy. Stride 1: a row's right padding shares the
 * zeros of the next row's left padding, so rows are w_in + max(pl, pr) apart (fewer padding
 * columns for the GEMM to compute and drop); the last tap of the last output reads
 * w_in + pl + pr - 1 from its row start, within the next row's left zeros. Stride 2 (phase
 * planes, see pad_phases in exec.c): w_out + (kw - 1) / 2, the last tap's column. */
static int padded_pitch(const conv_geom *g)
{
    if (g->sw == 2) return g->w_out + (g->kw - 1) / 2;
    return g->w_in + (g->pl > g->pr ? g->pl : g->pr);
}

/* Folds BatchNormalization node bn into per-output-channel weights w (oc rows of k floats)
 * and bias, in double precision. */
static cvy_status fold_bn(builder *b, int bn, int oc, size_t k, float *w, float *bias)
{
    const fmt_node *n = &b->fm->nodes[bn];
    int want[1] = {oc};
    static const char *names[4] = {"scale", "bias", "mean", "var"};
    if (n->n_in != 5) return NODE_FAIL(b, bn, CVY_ERR_FORMAT, "needs 5 inputs");
    for (int j = 1; j < 5; j++) {
        cvy_status s = weight_dims(b, bn, n->in[j], 1, want, names[j - 1]);
        if (s != CVY_OK) return s;
    }
    double eps = n->fa[0];
    if (!(eps >= 0.0)) return NODE_FAIL(b, bn, CVY_ERR_UNSUPPORTED, "epsilon %g must be >= 0", eps);
    const fmt_tensor *sc = &b->fm->tensors[n->in[1]], *bi = &b->fm->tensors[n->in[2]];
    const fmt_tensor *me = &b->fm->tensors[n->in[3]], *va = &b->fm->tensors[n->in[4]];
    for (int c = 0; c < oc; c++) {
        double v = (double)wget(va, (size_t)c) + eps;
        if (!(v > 0.0))
            return NODE_FAIL(b, bn, CVY_ERR_UNSUPPORTED, "variance + epsilon <= 0 at channel %d",
                             c);
        double s = (double)wget(sc, (size_t)c) / sqrt(v);
        for (size_t j = 0; j < k; j++) w[(size_t)c * k + j] = (float)(w[(size_t)c * k + j] * s);
        bias[c] = (float)(((double)bias[c] - wget(me, (size_t)c)) * s + wget(bi, (size_t)c));
    }
    return CVY_OK;
}

/* Whether step a is a standalone affine map (batch-norm, maybe with an activation) whose
 * output is value x, read by one consumer only and with no views: a prologue candidate. */
static int affine_feeds(builder *b, const step *a, int x)
{
    const plan *p = b->p;
    if (a->kind != S_CONV_DW || strcmp(a->algo, "affine") != 0 || a->out != x ||
        sole_consumer(b, (uint32_t)a->out) < 0 || p->values[a->out].root != a->out)
        return 0;
    for (int u = 0; u < p->n_values; u++)
        if (u != a->out && p->values[u].root == a->out) return 0; /* it has views */
    return 1;
}

/* Replaces the last two steps, first and second, with f, their fusion, whose map `hidden`
 * (first's output) is never materialised: f's parameters, FLOPs and op label cover both. */
static void replace_last_two(plan *p, step *f, const step *first, const step *second, int hidden)
{
    f->params = first->params + second->params;
    f->flops = first->flops + second->flops;
    snprintf(f->op, sizeof f->op, "%.31s+%.31s", first->op, second->op);
    p->values[hidden].used = 0;
    p->steps[p->n_steps - 2] = *f;
    p->n_steps--;
}

/* Folds a standalone batch-norm + activation step ("affine", DenseNet's and pre-activation
 * ResNets' norm-relu before a 1x1 conv) into the 1x1 conv st that follows it and alone reads
 * its output: the conv's GEMM applies it while packing its input, and the normalised map is
 * never written out. st is the last step, the affine one the step before. */
static void fuse_prologue(builder *b, step *st)
{
    plan *p = b->p;
    if (p->n_steps < 2 || !st->gemm || !st->gemm->prologue || st->implicit || st->im2col ||
        st->g.kh != 1 || st->g.kw != 1 || st->g.sh != 1 || st->g.sw != 1 || st->g.group != 1)
        return;
    step *a = &p->steps[p->n_steps - 2];
    if (!affine_feeds(b, a, st->in[0])) return;
    step f = *st;
    f.in[0] = a->in[0];
    f.pre_w = a->w_off;
    f.pre_b = a->b_off;
    f.pre_act = a->act;
    replace_last_two(p, &f, a, st, a->out);
}

/* Whether value t, written by one step, is read by one node only and has no views: a map a
 * fusion may keep from ever being written out. */
static int private_map(builder *b, int t)
{
    const plan *p = b->p;
    if (sole_consumer(b, (uint32_t)t) < 0 || p->values[t].root != t) return 0;
    for (int u = 0; u < p->n_values; u++)
        if (u != t && p->values[u].root == t) return 0; /* it has views */
    return 1;
}

/* Whether step a is a plain 1x1 conv (no padding, stride, groups or prologue) on an own GEMM:
 * one that can run on any range of columns of its input (all of its rows, whatever row
 * split it has on its own). */
static int plain_pointwise(const step *a)
{
    const conv_geom *g = &a->g;
    return a->kind == S_CONV_GEMM && a->gemm && g->kh == 1 && g->kw == 1 && g->sh == 1 &&
           g->sw == 1 && !g->pt && !g->pl && !g->pb && !g->pr && g->group == 1 && !a->implicit &&
           !a->scratch && a->pre_w == SIZE_MAX;
}

/* Band layout of depthwise step st with the 1x1 convs pre (before it, its rows computed per
 * band) and post (after it, fed per band) fused, either may be NULL: the most output rows
 * per band whose scratch (pre's rows the band reads, (rows - 1) * sh + reach of them, and the
 * band's depthwise rows for post) fits BAND_FLOATS, at most half the map, in an even number
 * of bands so two workers get equal shares. Sets st->chunk (rows per band), st->tasks and
 * st->scratch; returns 0, changing nothing, when under BAND_MIN_ROWS rows fit. */
static int set_bands(step *st, const step *pre, const step *post)
{
    const conv_geom *g = &st->g;
    long in_row = pre ? (long)g->c_in * g->w_in : 0, out_row = post ? (long)g->c_out * g->w_out : 0;
    long reach = (long)(g->kh - 1) * g->dh + 1;
    long avail = BAND_FLOATS - in_row * (reach - g->sh), per = in_row * g->sh + out_row;
    long rows = avail > 0 ? avail / per : 0, half = (g->h_out + 1) / 2;
    if (rows > half) rows = half;
    if (rows < BAND_MIN_ROWS) return 0;
    long bands = (g->h_out + rows - 1) / rows;
    bands += bands % 2;
    rows = (g->h_out + bands - 1) / bands;
    st->chunk = (int)rows;
    st->tasks = (int)((g->h_out + rows - 1) / rows);
    /* the two parts each rounded up to 16 floats, and room for a vector's overreach */
    st->scratch = (size_t)(in_row * ((rows - 1) * g->sh + reach) + out_row * rows) + 48;
    return 1;
}

/* Runs the 1x1 conv before depthwise step st (the last two steps) inside st, band by band,
 * when st alone reads its map (MobileNetV2's expansions): a task computes the 1x1's rows
 * that one band of st's output rows reads into the thread's scratch, then those output rows,
 * so the map never leaves the core's cache: large maps (112x112 to 28x28) are not written
 * to memory and read back, small ones (14x14) are not split between the cores by channels
 * for the 1x1 and read across by the depthwise conv (MobileNetV2's 14x14 blocks up to 11%
 * faster with their projections in too, at batch 1 and 16). Neighbouring bands both compute
 * the rows they share; the results are those of the two steps apart, bit for bit (each
 * column of a GEMM and each output row of the depthwise kernel come out the same whatever
 * range is run). */
static cvy_status fuse_pre(builder *b, step *st)
{
    plan *p = b->p;
    if (p->n_steps < 2 || strcmp(st->algo, "depthwise") != 0) return CVY_OK;
    step *a = &p->steps[p->n_steps - 2], f = *st;
    if (!plain_pointwise(a) || a->gemm->max_n || a->out != st->in[0] || a->residual >= 0 ||
        !private_map(b, a->out) || !set_bands(&f, a, NULL))
        return CVY_OK;
    if (!(f.pre = malloc(sizeof *f.pre))) return cvy_fail(b->err, CVY_ERR_NOMEM, "out of memory");
    *f.pre = *a;
    f.in[0] = a->in[0];
    f.algo = "1x1+dw-bands";
    replace_last_two(p, &f, a, st, a->out);
    return CVY_OK;
}

/* Runs 1x1 conv st (the last step) inside the depthwise step before it, on each band of its
 * output rows as the depthwise kernel leaves them in the thread's scratch, when st alone
 * reads the depthwise map (MobileNetV2's projections, and its first block's depthwise conv
 * on the stem's map): the depthwise map never leaves the core's cache (7x7 blocks too: 4-17%
 * faster than the depthwise conv by channels and the 1x1 after it). The residual, if any, is
 * st's. Same bits as the two steps apart. */
static cvy_status fuse_post(builder *b, step *st)
{
    plan *p = b->p;
    if (p->n_steps < 2 || !plain_pointwise(st)) return CVY_OK;
    step *d = &p->steps[p->n_steps - 2], f = *d;
    if (d->kind != S_CONV_DW || d->post || (!d->pre && strcmp(d->algo, "depthwise") != 0) ||
        d->out != st->in[0] || !private_map(b, d->out) || !set_bands(&f, d->pre, st) ||
        (st->gemm->max_n && f.chunk * d->g.w_out > st->gemm->max_n))
        return CVY_OK;
    if (!(f.post = malloc(sizeof *f.post))) return cvy_fail(b->err, CVY_ERR_NOMEM, "out of memory");
    *f.post = *st;
    f.out = st->out;
    f.residual = st->residual; /* read by post: kept live until this step */
    f.algo = d->pre ? "1x1+dw+1x1-bands" : "dw+1x1-bands";
    replace_last_two(p, &f, d, st, d->out);
    return CVY_OK;
}

static cvy_status plan_conv(builder *b, int i)
{
    const fmt_node *n = &b->fm->nodes[i];
    value *x = val(b, n->in[0]);
    conv_geom g;
    int ceil_mode;
    cvy_status s = spatial(b, i, x, 1, &g, &ceil_mode);
    if (s != CVY_OK) return s;
    if (n->n_in < 2 || n->n_in > 3)
        return NODE_FAIL(b, i, CVY_ERR_FORMAT, "needs inputs x, W and optional B");
    const fmt_tensor *wt = &b->fm->tensors[n->in[1]];
    g.group = n->ia[A_GROUP];
    if (g.group < 1 || g.c_in % g.group != 0)
        return NODE_FAIL(b, i, CVY_ERR_UNSUPPORTED, "group %d does not divide %d channels", g.group,
                         g.c_in);
    int want[4] = {-1, g.c_in / g.group, g.kh, g.kw};
    if ((s = weight_dims(b, i, n->in[1], 4, want, "W")) != CVY_OK) return s;
    g.c_out = (int)wt->dims[0];
    if (g.c_out % g.group != 0)
        return NODE_FAIL(b, i, CVY_ERR_UNSUPPORTED, "group %d does not divide %d outputs", g.group,
                         g.c_out);
    int want_b[1] = {g.c_out};
    if (n->n_in == 3 && (s = weight_dims(b, i, n->in[2], 1, want_b, "B")) != CVY_OK) return s;

    size_t k = (size_t)(g.c_in / g.group) * g.kh * g.kw;
    size_t nw = (size_t)g.c_out * k;
    float *w = malloc(nw * sizeof(float)), *bias = calloc((size_t)g.c_out, sizeof(float));
    if (!w || !bias) {
        free(w);
        free(bias);
        return cvy_fail(b->err, CVY_ERR_NOMEM, "out of memory packing conv weights");
    }
    memcpy(w, wt->data, nw * sizeof(float));
    if (n->n_in == 3) memcpy(bias, b->fm->tensors[n->in[2]].data, (size_t)g.c_out * sizeof(float));

    int dw = g.group == g.c_in && g.group == g.c_out;
    int pointwise = g.kh == 1 && g.kw == 1 && g.sh == 1 && g.sw == 1 && g.pt == 0 && g.pl == 0 &&
                    g.pb == 0 && g.pr == 0;
    step_kind kind = !b->p->use_blas ? S_CONV_REF : dw ? S_CONV_DW : S_CONV_GEMM;
    int own = kind == S_CONV_GEMM && b->p->kern->gemm != NULL; /* own GEMM, else OpenBLAS */
    /* Winograd where it pays: enough channels for the transforms to amortise, enough tiles
     * for the GEMMs to fill their columns and to reuse its transformed weights (four times
     * the direct ones: at batch 1 a 7x7 map's 4 tiles leave it bound by memory) */
    const cvy_kernels *kern = b->p->kern;
    int wino = own && b->p->winograd && g.kh == 3 && g.kw == 3 && g.sh == 1 && g.sw == 1 &&
               g.dh == 1 && g.dw == 1 && g.group == 1 && g.c_in >= 16 && g.c_out >= 16 &&
               g.h_out >= 8 && g.w_out >= 8;
    /* ... but not where the few-column GEMM takes the direct conv (small maps) and the output
     * has under half the input's channels: there the input transform, done by each of the
     * channel halves a small map is split into, outweighs the multiplications it saves
     * (DenseNet-121's 14x14 128 -> 32: 0.19 ms Winograd, 0.12 ms direct, one core) */
    size_t few_cols = k >= FEW_LONG_K ? FEW_COLS_LONG : FEW_COLS; /* what it takes for this k */
    if (wino && kern->gemm_few && (size_t)g.h_out * padded_pitch(&g) <= few_cols &&
        2 * g.c_out < g.c_in)
        wino = 0;
    if (wino) kind = S_CONV_WINO;
    /* which own GEMM: few columns per call put output channels in the lanes (B columns of
     * a padded input include its padding columns) */
    int s2 = g.sh == 2 && g.sw == 2 && g.dh == 1 && g.dw == 1; /* as phase planes */
    int implicit = own && !wino && !pointwise && ((g.sh == 1 && g.sw == 1) || s2);
    size_t cols = (size_t)g.h_out * g.w_out;
    size_t bcols = implicit ? (size_t)g.h_out * padded_pitch(&g) : cols;
    const cvy_gemm *gk = own ? kern->gemm : NULL;
    /* ... unless a batch-norm before a 1x1 would fuse into the other one's packing */
    int prologue = pointwise && g.group == 1 && b->p->n_steps > 0 &&
                   affine_feeds(b, &b->p->steps[b->p->n_steps - 1], (int)n->in[0]);
    if (own && kern->gemm_few && !wino && !prologue &&
        (bcols <= few_cols || (!implicit && conv_chunk(cols, k, 16) <= few_cols)))
        gk = kern->gemm_few;
    /* Winograd on a map of at most WINO_FEW_TILES tiles (14x14, 13x13): its 36 GEMMs have as
     * few columns, which the few-column GEMM fills better when their k (c_in) is long
     * (ResNet's 14x14 256 -> 256: 1.5 -> 1.2 ms on one core; SqueezeNet's 13x13 48 -> 192
     * would lose 5%) */
    if (wino && kern->gemm_few && g.c_in >= 128 &&
        ((g.h_out + 3) / 4) * ((g.w_out + 3) / 4) <= WINO_FEW_TILES)
        gk = kern->gemm_few;
    int few = gk && gk == kern->gemm_few;
    const char *algo = kind == S_CONV_REF    ? "direct-ref"
                       : kind == S_CONV_DW   ? "depthwise"
                       : kind == S_CONV_WINO ? (few ? "winograd-f43-oc" : "winograd-f43")
                       : pointwise           ? (few   ? "1x1-gemm-oc"
                                                : own ? "1x1-gemm"
                                                      : "1x1-sgemm")
                       : implicit            ? (few ? "padded+gemm-oc" : "padded+gemm")
                       : own                 ? (few ? "im2col+gemm-oc" : "im2col+gemm")
                                             : "im2col+sgemm";
    step *st = new_step(b, i, kind, algo);
    if (!st) {
        free(w);
        free(bias);
        return cvy_fail(b->err, CVY_ERR_NOMEM, "out of memory");
    }
    st->g = g;
    st->gemm = gk;
    int dims[3] = {g.c_out, g.h_out, g.w_out};
    set_shape(val(b, n->out), 3, dims);

    /* batch-norm folding */
    int c = sole_consumer(b, n->out);
    if (c >= 0 && b->fm->nodes[c].op == OP_BATCHNORM && b->fm->nodes[c].in[0] == n->out) {
        s = fold_bn(b, c, g.c_out, k, w, bias);
        if (s != CVY_OK) {
            free(w);
            free(bias);
            return s;
        }
        b->done[c] = 1;
        op_append(st, OP_BATCHNORM);
        set_shape(val(b, b->fm->nodes[c].out), 3, dims);
        st->out = (int)b->fm->nodes[c].out;
    }
    if (wino) { /* U = G g G^T per (oc, ic), one packed OC x IC matrix per position */
        size_t per = gk->packed_size(g.c_out, g.c_in);
        float *u = malloc((size_t)WINO_POS * g.c_out * g.c_in * sizeof(float));
        st->w_off = u ? wpush(b, NULL, per * WINO_POS) : SIZE_MAX;
        for (int oc = 0; st->w_off != SIZE_MAX && oc < g.c_out; oc++)
            for (int ic = 0; ic < g.c_in; ic++) {
                double t[WINO_POS];
                wino_kernel(w + ((size_t)oc * g.c_in + ic) * 9, t);
                for (int q = 0; q < WINO_POS; q++)
                    u[((size_t)q * g.c_out + oc) * g.c_in + ic] = (float)t[q];
            }
        for (int q = 0; st->w_off != SIZE_MAX && q < WINO_POS; q++)
            gk->pack(u + (size_t)q * g.c_out * g.c_in, g.c_out, g.c_in,
                     b->w + st->w_off + (size_t)q * per);
        free(u);
    } else if (own) { /* pre-pack each group's rows into the kernel's panels */
        int cout_g = g.c_out / g.group;
        size_t per = gk->packed_size(cout_g, (int)k);
        st->w_off = wpush(b, NULL, per * (size_t)g.group);
        for (int q = 0; st->w_off != SIZE_MAX && q < g.group; q++)
            gk->pack(w + (size_t)q * cout_g * k, cout_g, (int)k,
                     b->w + st->w_off + (size_t)q * per);
    } else {
        st->w_off = wpush(b, w, nw);
    }
    st->b_off = wpush(b, bias, (size_t)g.c_out);
    free(w);
    free(bias);
    if (st->w_off == SIZE_MAX || st->b_off == SIZE_MAX)
        return cvy_fail(b->err, CVY_ERR_NOMEM, "out of memory packing conv weights");

    if ((s = fuse_act(b, st)) != CVY_OK) return s;
    /* residual: Add(conv, other) of equal shapes, then maybe an activation (not for the
     * depthwise kernel, which has no residual input) */
    c = sole_consumer(b, (uint32_t)st->out);
    if (st->act.type == ACT_NONE && kind != S_CONV_REF && kind != S_CONV_DW && c >= 0 &&
        b->fm->nodes[c].op == OP_ADD && b->fm->nodes[c].n_in == 2) {
        const fmt_node *add = &b->fm->nodes[c];
        uint32_t other = add->in[0] == (uint32_t)st->out ? add->in[1] : add->in[0];
        value *ov = val(b, other);
        if (other != (uint32_t)st->out && is_act(other, b->fm) && ov->used &&
            ov->size == val(b, (uint32_t)st->out)->size && ov->ndim == 3 &&
            ov->dims[0] == dims[0] && ov->dims[1] == dims[1] && ov->dims[2] == dims[2]) {
            st->residual = (int)other;
            b->done[c] = 1;
            op_append(st, OP_ADD);
            set_shape(val(b, add->out), 3, dims);
            st->out = (int)add->out;
            if ((s = fuse_act(b, st)) != CVY_OK) return s;
        }
    }
    st->params = nw + (n->n_in == 3 ? (size_t)g.c_out : 0);
    st->flops = 2.0 * (double)nw * (double)cols;
    if (wino) {
        /* chunks of WINO_CHUNK tiles; a map of two or three takes chunks of half as many
         * instead where only those keep a task's data in L2 (from four chunks on, no part
         * is split by output channels and repeats the input transform); up to three chunks
         * are split by channels */
        int tiles = ((g.h_out + 3) / 4) * ((g.w_out + 3) / 4);
        size_t task = (size_t)WINO_POS * ((size_t)g.c_in + (size_t)g.c_out) * WINO_CHUNK;
        int half = tiles > WINO_CHUNK && tiles <= 3 * WINO_CHUNK && task > WINO_TASK_FLOATS &&
                   task / 2 <= WINO_TASK_FLOATS;
        st->chunk = half ? WINO_CHUNK / 2 : WINO_CHUNK;
        int chunks = (tiles + st->chunk - 1) / st->chunk;
        st->splits = chunks <= 3 && g.c_out >= 32 ? 2 : 1; /* few chunks: balance by channels */
        st->tasks = chunks * st->splits;
        size_t mr = (size_t)gk->mr;
        size_t ocs = ((size_t)g.c_out + st->splits - 1) / (size_t)st->splits;
        ocs = (ocs + mr - 1) / mr * mr; /* parts start on packed panel boundaries */
        st->scratch = WINO_POS * (wino_pos_stride((size_t)g.c_in, (size_t)st->chunk) +
                                  wino_pos_stride(ocs, (size_t)st->chunk));
    } else if (kind == S_CONV_GEMM) {
        size_t chunk = conv_chunk(cols, k, few ? 8 : 16);
        st->chunk = (int)chunk;
        st->tasks = g.group * (int)((cols + chunk - 1) / chunk);
        st->scratch = pointwise ? 0 : k * chunk;
        st->im2col = !pointwise && !implicit;
        if (implicit) { /* row chunks fixed per layer: at least two when there are two rows */
            int cin_g = g.c_in / g.group;
            /* stride 2: per channel ny x nx phase planes of hp rows */
            int ny = s2 && g.kh > 1 ? 2 : 1, nx = s2 && g.kw > 1 ? 2 : 1;
            st->implicit = 1;
            st->hp = s2 ? g.h_out + (g.kh - 1) / 2 : g.h_in + g.pt + g.pb;
            st->wp = padded_pitch(&g);
            int rows = (g.h_out + 1) / 2, cap = 1024 / st->wp;
            if (rows > cap) rows = cap;
            st->chunk = rows < 1 ? 1 : rows;
            st->tasks = g.group * ((g.h_out + st->chunk - 1) / st->chunk);
            st->scratch = (size_t)cin_g * ny * nx * st->hp * st->wp + (size_t)st->wp +
                          (size_t)(g.kw - 1) * g.dw + 16;
            st->boff = malloc(k * sizeof(int32_t));
            if (!st->boff) return cvy_fail(b->err, CVY_ERR_NOMEM, "out of memory");
            size_t q = 0;
            for (int ic = 0; ic < cin_g; ic++)
                for (int ky = 0; ky < g.kh; ky++)
                    for (int kx = 0; kx < g.kw; kx++) { /* tap's plane, row and column */
                        int plane = s2 ? (ic * ny + (ky & 1)) * nx + (kx & 1) : ic;
                        int row = s2 ? ky / 2 : ky * g.dh, col = s2 ? kx / 2 : kx * g.dw;
                        st->boff[q++] = (int32_t)(((size_t)plane * st->hp + (size_t)row) * st->wp +
                                                  (size_t)col);
                    }
        }
        /* A conv with more output channels than columns (small maps) splits its rows
         * instead: each task then reads part of the weights, the larger operand, and all of
         * the small input (packed, padded or as an im2col panel, in each task), rather than
         * all weights for part of the columns. Two halves where every task packs the whole
         * input, so more parts cost more than they balance. A 1x1 whose GEMM reads B in
         * place (the few-column one) packs nothing: with enough rows it takes one task per
         * pass of that GEMM's rows, claimed as workers come free, because the previous VM's
         * two cores ran apart for seconds at a time (an FMA loop pinned to each: 60-128
         * against 168-172 GFLOP/s within a minute, no steal time) and two equal halves left
         * the faster one waiting (SqueezeNet's classifier alone on two threads: 0.93 of the
         * halves' median time; ResNet-50's 1x1s on 7x7 and 14x14 maps 0.92-0.96). A 1x1 on
         * the few-column GEMM keeps its column halves up to twice as many output channels
         * as columns: each task then reads half of the input (written by both cores) and
         * all weights, which measured faster than all of the input and half the weights
         * (ResNet-50's 14x14 1024 -> 256: 0.68 -> 0.58 ms at batch 1). */
        size_t wide = pointwise && few ? 2 * cols : cols;
        int split = own && g.group == 1 && (size_t)g.c_out > wide && g.c_out >= 64 &&
                    (pointwise || (few && bcols <= FEW_COLS));
        if (split) {
            int mr = gk->mr;
            st->rows = (g.c_out + 1) / 2;
            st->rows = (st->rows + mr - 1) / mr * mr;
            /* at least 8 parts (fewer balance worse) of enough work to pay for their claims
             * (MobileNetV2's 7x7 1x1s, 0.8 MFLOP per pass: 1-5% slower in parts) */
            if (pointwise && gk->pass_rows && g.c_out >= 8 * gk->pass_rows &&
                2.0 * (double)k * (double)cols * gk->pass_rows >= PASS_PART_FLOPS)
                st->rows = gk->pass_rows;
            st->chunk = (int)cols;
            st->tasks = (g.c_out + st->rows - 1) / st->rows;
            if (st->im2col) st->scratch = k * cols;
        }
        if (pointwise) {
            fuse_prologue(b, st); /* may merge st into the step before */
            return fuse_post(b, &b->p->steps[b->p->n_steps - 1]);
        }
    } else {
        if (kind == S_CONV_DW) {
            channel_blocks(st, g.c_out);
            return fuse_pre(b, st);
        }
        st->tasks = 1;
    }
    return CVY_OK;
}

/* ---- pools, activations, elementwise ------------------------------------------------------- */

/* The step just planned when node i's input is its output and node i its only reader (a
 * step node i may run inside), else NULL. */
static step *feeding_step(builder *b, int i)
{
    const fmt_node *n = &b->fm->nodes[i];
    if (b->p->n_steps == 0) return NULL;
    step *st = &b->p->steps[b->p->n_steps - 1];
    return st->out == (int)n->in[0] && sole_consumer(b, n->in[0]) == i ? st : NULL;
}

/* Fuses max pool node i into the step before it when that is an implicit conv on an own GEMM
 * (no residual, no row parts) whose output only the pool reads: each task then computes the
 * conv rows that a band of pool rows needs into its scratch, where the pool reads them, and
 * the conv's map (SqueezeNet's and ResNet's stems: 3.2 MB) is never written to memory and
 * read back. Bands of conv rows overlap by the pool's window less its stride (one row of a
 * 3x3 stride-2 pool), so bands are as tall as POOL_ROWS_FLOATS allows, in two at least.
 * Returns 1 if fused. */
static int fuse_pool(builder *b, int i, const conv_geom *g)
{
    step *st = feeding_step(b, i);
    if (!st || st->kind != S_CONV_GEMM || !st->implicit || !st->gemm || st->residual >= 0 ||
        st->rows || st->g.group != 1 || g->dh != 1 || g->dw != 1 || g->sh > g->kh)
        return 0;
    size_t row = (size_t)st->g.c_out * st->g.w_out; /* floats per conv row, all channels */
    int conv_rows = (int)(POOL_ROWS_FLOATS / row), prow = (conv_rows - g->kh) / g->sh + 1;
    if (prow < 2) return 0;
    if (prow > (g->h_out + 1) / 2) prow = (g->h_out + 1) / 2; /* two tasks at least */
    st->pooled = 1;
    st->pool = *g;
    st->chunk = prow;
    st->tasks = (g->h_out + prow - 1) / prow;
    st->pool_off = cvy_round_up(st->scratch, 16);
    st->scratch = st->pool_off + cvy_round_up((size_t)((prow - 1) * g->sh + g->kh) * row, 16) +
                  (size_t)g->c_out * prow * g->w_out; /* conv rows, then the band's pool rows */
    st->flops += (double)g->c_out * g->h_out * g->w_out * g->kh * g->kw;
    op_append(st, OP_MAXPOOL);
    st->out = (int)b->fm->nodes[i].out;
    return 1;
}

static cvy_status plan_pool(builder *b, int i)
{
    const fmt_node *n = &b->fm->nodes[i];
    conv_geom g;
    int ceil_mode;
    cvy_status s = spatial(b, i, val(b, n->in[0]), 0, &g, &ceil_mode);
    if (s != CVY_OK) return s;
    if (n->n_in != 1) return NODE_FAIL(b, i, CVY_ERR_FORMAT, "takes one input");
    int avg = n->op == OP_AVGPOOL;
    if (avg && (g.dh != 1 || g.dw != 1))
        return NODE_FAIL(b, i, CVY_ERR_UNSUPPORTED, "dilation is not supported for AveragePool");
    int cp = n->ia[A_COUNT_PAD];
    if (cp != 0 && cp != 1) return NODE_FAIL(b, i, CVY_ERR_UNSUPPORTED, "count_include_pad %d", cp);
    int dims[3] = {g.c_out, g.h_out, g.w_out};
    if (!avg && fuse_pool(b, i, &g)) {
        set_shape(val(b, n->out), 3, dims);
        return CVY_OK;
    }
    step *st = new_step(b, i, avg ? S_AVGPOOL : S_MAXPOOL, "direct");
    if (!st) return cvy_fail(b->err, CVY_ERR_NOMEM, "out of memory");
    st->g = g;
    st->count_pad = cp;
    set_shape(val(b, n->out), 3, dims);
    st->flops = (double)g.c_out * g.h_out * g.w_out * g.kh * g.kw;
    channel_blocks(st, g.c_out);
    return CVY_OK;
}

/* Fuses global average pool node i into the step before it when that is a 1x1 conv split
 * into row parts (whole rows per task) whose output only the pool reads: each task keeps
 * its rows in scratch and writes their means, so the map (SqueezeNet's classifier: 676 KB)
 * is never written out and the pool is no step of its own, on one thread. Same kernel for
 * the means, same bits. Returns 1 if fused. */
static int fuse_gap(builder *b, int i)
{
    step *st = feeding_step(b, i);
    if (!st || st->kind != S_CONV_GEMM || !st->rows || st->implicit || st->im2col ||
        st->pre_w != SIZE_MAX)
        return 0;
    st->gap = 1;
    st->scratch = (size_t)st->rows * st->g.h_out * st->g.w_out;
    st->flops += (double)st->g.c_out * st->g.h_out * st->g.w_out;
    op_append(st, OP_GLOBALAVGPOOL);
    st->out = (int)b->fm->nodes[i].out;
    return 1;
}

static cvy_status plan_gap(builder *b, int i)
{
    const fmt_node *n = &b->fm->nodes[i];
    value *x = val(b, n->in[0]);
    if (x->ndim != 3 || n->n_in != 1)
        return NODE_FAIL(b, i, CVY_ERR_SHAPE, "takes one input of dims (C, H, W)");
    int dims[3] = {x->dims[0], 1, 1};
    if (fuse_gap(b, i)) {
        set_shape(val(b, n->out), 3, dims);
        return CVY_OK;
    }
    step *st = new_step(b, i, S_GAP, "direct");
    if (!st) return cvy_fail(b->err, CVY_ERR_NOMEM, "out of memory");
    set_shape(val(b, n->out), 3, dims);
    st->flops = (double)x->size;
    st->tasks = 1;
    return CVY_OK;
}

static cvy_status plan_act(builder *b, int i)
{
    const fmt_node *n = &b->fm->nodes[i];
    value *x = val(b, n->in[0]);
    if (n->n_in != 1) return NODE_FAIL(b, i, CVY_ERR_FORMAT, "takes one input");
    step *st = new_step(b, i, S_ACT, "elementwise");
    if (!st) return cvy_fail(b->err, CVY_ERR_NOMEM, "out of memory");
    node_act(n, &st->act);
    cvy_status s = check_act_params(b, i, &st->act);
    if (s != CVY_OK) return s;
    set_shape(val(b, n->out), x->ndim, x->dims);
    st->flops = (double)x->size;
    st->tasks = 1;
    return CVY_OK;
}

/* Shape of input t padded on the left to 5 dims, the batch (or a weight's leading dim) first. */
static void pad5(builder *b, uint32_t t, int out[5])
{
    for (int d = 0; d < 5; d++) out[d] = 1;
    if (is_act(t, b->fm)) {
        value *v = val(b, t);
        out[4 - v->ndim] = -1; /* the batch */
        for (int d = 0; d < v->ndim; d++) out[5 - v->ndim + d] = v->dims[d];
    } else {
        const fmt_tensor *w = &b->fm->tensors[t];
        for (uint32_t d = 0; d < w->ndim; d++) out[5 - w->ndim + d] = (int)w->dims[d];
    }
}

static cvy_status plan_binary(builder *b, int i)
{
    const fmt_node *n = &b->fm->nodes[i];
    if (n->n_in != 2) return NODE_FAIL(b, i, CVY_ERR_FORMAT, "takes two inputs");
    uint32_t a = n->in[0], c = n->in[1];
    if (!is_act(a, b->fm) && !is_act(c, b->fm))
        return NODE_FAIL(b, i, CVY_ERR_UNSUPPORTED, "both inputs are constants");
    int sa[5], sc[5], so[5];
    pad5(b, a, sa);
    pad5(b, c, sc);
    /* the batch sits at one position per activation input; they must agree */
    int nb = -1;
    for (int d = 0; d < 5; d++) {
        if (sa[d] == -1 || sc[d] == -1) {
            if (nb >= 0 && nb != d)
                return NODE_FAIL(b, i, CVY_ERR_SHAPE, "inputs of different rank");
            nb = d;
        }
    }
    for (int d = 0; d < 5; d++) {
        int x = sa[d] == -1 ? 1 : sa[d], y = sc[d] == -1 ? 1 : sc[d];
        if (x != y && x != 1 && y != 1)
            return NODE_FAIL(b, i, CVY_ERR_SHAPE, "shapes do not broadcast (dim %d: %d vs %d)", d,
                             x, y);
        so[d] = x > y ? x : y;
    }
    if (so[nb] != 1)
        return NODE_FAIL(b, i, CVY_ERR_SHAPE, "a constant may not broadcast over the batch");
    for (int d = 0; d < nb; d++)
        if (so[d] != 1)
            return NODE_FAIL(b, i, CVY_ERR_SHAPE, "a constant has more dims than the activation");
    int odims[4], ond = 4 - nb;
    for (int d = 0; d < ond; d++) odims[d] = so[nb + 1 + d];
    /* make input 0 the full-shape activation when the op allows swapping (it is commutative) */
    int full_a = is_act(a, b->fm) && val(b, a)->size == (size_t)so[1] * so[2] * so[3] * so[4];
    if (!full_a) {
        uint32_t t = a;
        a = c;
        c = t;
        int tmp[5];
        memcpy(tmp, sa, sizeof tmp);
        memcpy(sa, sc, sizeof sa);
        memcpy(sc, tmp, sizeof sc);
    }
    step *st = new_step(b, i, S_BINARY, "elementwise");
    if (!st) return cvy_fail(b->err, CVY_ERR_NOMEM, "out of memory");
    st->mul = n->op == OP_MUL;
    st->in[0] = (int)a;
    st->n_in = 2;
    st->in[1] = (int)c;
    for (int d = 0; d < 5; d++) {
        st->bshape[0][d] = sa[d] == -1 ? 0 : sa[d]; /* 0 marks the batch */
        st->bshape[1][d] = sc[d] == -1 ? 0 : sc[d];
        st->oshape[d] = so[d];
    }
    set_shape(val(b, n->out), ond, odims);
    size_t osz = val(b, n->out)->size;
    int a_full = is_act(a, b->fm) && val(b, a)->size == osz;
    size_t csz = is_act(c, b->fm) ? val(b, c)->size : (size_t)fmt_tensor_elems(&b->fm->tensors[c]);
    st->bin_mode = BIN_GENERAL;
    if (a_full && csz == osz) {
        st->bin_mode = BIN_SAME;
    } else if (a_full && csz == 1) {
        st->bin_mode = BIN_CHAN;
        st->chan_c = 1;
        st->chan_hw = (int)osz;
    } else if (a_full && ond == 3 && sc[nb + 1] == odims[0] && sc[nb + 2] == 1 && sc[nb + 3] == 1) {
        st->bin_mode = BIN_CHAN;
        st->chan_c = odims[0];
        st->chan_hw = (int)(osz / (size_t)odims[0]);
    }
    if (!is_act(c, b->fm)) {
        st->b_const = 1;
        st->b_off = wpush(b, b->fm->tensors[c].data, csz);
        if (st->b_off == SIZE_MAX) return cvy_fail(b->err, CVY_ERR_NOMEM, "out of memory");
        st->n_in = 1;
        st->params = csz;
    }
    st->flops = (double)osz;
    st->tasks = 1;
    return CVY_OK;
}

/* ---- Concat, views, Gemm, Softmax -------------------------------------------------------- */

/* Whether node op reads its activation inputs per image at the root's stride, so it may
 * read a value that is a prefix view of a larger one. */
static int reads_views(uint32_t op)
{
    switch (op) {
    case OP_CONV:
    case OP_BATCHNORM:
    case OP_RELU:
    case OP_CLIP:
    case OP_LEAKYRELU:
    case OP_SIGMOID:
    case OP_HARDSIGMOID:
    case OP_HARDSWISH:
    case OP_MAXPOOL:
    case OP_AVGPOOL:
    case OP_GLOBALAVGPOOL:
    case OP_CONCAT: return 1;
    default: return 0;
    }
}

/* Whether every reader of value t reads views (see reads_views). */
static int readers_read_views(builder *b, uint32_t t)
{
    for (uint32_t c = 0; c < b->fm->n_nodes; c++)
        for (uint32_t k = 0; k < b->fm->nodes[c].n_in; k++)
            if (b->fm->nodes[c].in[k] == t && !reads_views(b->fm->nodes[c].op)) return 0;
    return t != b->fm->output;
}

#define CHAIN_MAX 512 /* feature maps a dense block may concatenate */

/* Appends to list (n entries so far) what concat node c concatenates, with inputs made by
 * concat nodes of the same axis expanded (the importer nests long concats). Returns the new
 * count, -1 past CHAIN_MAX. */
static int concat_leaves(const builder *b, uint32_t c, uint32_t *list, int n)
{
    const fmt_node *nd = &b->fm->nodes[c];
    for (uint32_t k = 0; k < nd->n_in && n >= 0; k++) {
        int pn = b->producer[nd->in[k]];
        if (pn >= 0 && b->fm->nodes[pn].op == OP_CONCAT && b->fm->nodes[pn].ia[0] == nd->ia[0])
            n = concat_leaves(b, (uint32_t)pn, list, n);
        else if (n == CHAIN_MAX)
            n = -1;
        else
            list[n++] = nd->in[k];
    }
    return n;
}

/* Whether leaf t may become a slice of value r at offset off: already is, or is a per-image
 * step's output (not Gemm, a copy or the graph input) whose own views (a one-input concat)
 * are read only by view readers. */
static int chain_leaf_ok(builder *b, int t, int r, size_t off)
{
    plan *p = b->p;
    const value *v = &p->values[t];
    if (v->root == r) return v->view_off == off;
    if (v->root != t || t == p->input || (uint32_t)t == b->fm->output) return 0;
    for (int u = 0; u < p->n_values; u++)
        if (u != t && p->values[u].root == t && !readers_read_views(b, (uint32_t)u)) return 0;
    int producer = -1;
    for (int k = 0; k < p->n_steps - 1; k++)
        if (p->steps[k].out == t) producer = k;
    return producer >= 0 && p->steps[producer].kind != S_GEMM && p->steps[producer].kind != S_COPY;
}

/* A concat whose inputs are each one contiguous slab per image (outer == 1) needs no copy
 * when every input is written by an earlier step straight into its slab: the inputs become
 * views of the output. Dense blocks (DenseNet) chain such concats, each one's feature list
 * (nested concats expanded) a prefix of the next: all of them and their feature maps become
 * views of the longest one's output, so every feature map is written once into its slice.
 * Node i's output must then be read only by view readers (unless it is that longest one),
 * and no feature map may appear twice (it would need two slices). Returns 1 when the concat
 * needs no step. */
static int concat_in_place(builder *b, int i)
{
    const fmt_model *fm = b->fm;
    plan *p = b->p;
    int ok = 0, top = i, nl, ntop;
    uint32_t *leaves = malloc(2 * CHAIN_MAX * sizeof *leaves), *other = leaves + CHAIN_MAX;
    if (!leaves) goto done;
    ntop = nl = concat_leaves(b, (uint32_t)i, leaves, 0);
    if (nl < 1) goto done;
    for (uint32_t c = 0; c < fm->n_nodes; c++) {
        if (fm->nodes[c].op != OP_CONCAT || fm->nodes[c].ia[0] != fm->nodes[i].ia[0]) continue;
        int no = concat_leaves(b, c, other, 0);
        if (no > ntop && memcmp(other, leaves, (size_t)nl * sizeof *leaves) == 0)
            top = (int)c, ntop = no;
    }
    int r = (int)fm->nodes[top].out;
    if (top != i && !readers_read_views(b, fm->nodes[i].out)) goto done;
    size_t off = 0;
    for (int q = 0; q < nl; q++) {
        for (int e = 0; e < q; e++)
            if (leaves[e] == leaves[q]) goto done;
        if (!chain_leaf_ok(b, (int)leaves[q], r, off)) goto done;
        off += p->values[leaves[q]].size;
    }
    off = 0;
    for (int q = 0; q < nl; q++) {
        int t = (int)leaves[q];
        if (p->values[t].root != r)
            for (int u = 0; u < p->n_values; u++)
                if (p->values[u].root == t) { /* t itself and its views */
                    p->values[u].root = r;
                    p->values[u].view_off += off;
                }
        off += p->values[t].size;
    }
    if (top != i) {
        p->values[fm->nodes[i].out].root = r;
        p->values[fm->nodes[i].out].view_off = 0;
    }
    ok = 1;
done:
    free(leaves);
    return ok;
}

static cvy_status plan_concat(builder *b, int i)
{
    const fmt_node *n = &b->fm->nodes[i];
    value *x0 = val(b, n->in[0]);
    int r = x0->ndim, axis = n->ia[0];
    if (axis < 0) axis += r;
    if (axis < 0 || axis >= r)
        return NODE_FAIL(b, i, CVY_ERR_UNSUPPORTED, "axis %d out of range", n->ia[0]);
    int dims[4];
    memcpy(dims, x0->dims, sizeof dims);
    dims[axis] = 0;
    step *st = new_step(b, i, S_CONCAT, "copy");
    if (!st) return cvy_fail(b->err, CVY_ERR_NOMEM, "out of memory");
    st->n_in = (int)n->n_in;
    st->outer = 1;
    for (int d = 0; d < axis; d++) st->outer *= x0->dims[d];
    for (uint32_t k = 0; k < n->n_in; k++) {
        if (!is_act(n->in[k], b->fm))
            return NODE_FAIL(b, i, CVY_ERR_UNSUPPORTED, "constant inputs are not supported");
        value *x = val(b, n->in[k]);
        if (x->ndim != r) return NODE_FAIL(b, i, CVY_ERR_SHAPE, "inputs of different rank");
        for (int d = 0; d < r; d++)
            if (d != axis && x->dims[d] != x0->dims[d])
                return NODE_FAIL(b, i, CVY_ERR_SHAPE, "input %u differs in dim %d", k, d);
        dims[axis] += x->dims[axis];
        st->in[k] = (int)n->in[k];
        st->inner[k] = x->size / (size_t)st->outer;
    }
    if (dims[axis] > (int)FMT_MAX_DIM) return NODE_FAIL(b, i, CVY_ERR_SHAPE, "too large");
    set_shape(val(b, n->out), r, dims);
    st->tasks = 1;
    if (st->outer == 1 && concat_in_place(b, i)) b->p->n_steps--; /* no copy left to do */
    return CVY_OK;
}

/* Flatten, Reshape, Identity: the output shares the input's storage. */
static cvy_status plan_view(builder *b, int i)
{
    const fmt_node *n = &b->fm->nodes[i];
    if (n->n_in != 1 || !is_act(n->in[0], b->fm))
        return NODE_FAIL(b, i, CVY_ERR_UNSUPPORTED, "takes one activation input");
    value *x = val(b, n->in[0]), *y = val(b, n->out);
    int dims[4] = {0}, nd;
    if (n->op == OP_IDENTITY) {
        nd = x->ndim;
        memcpy(dims, x->dims, sizeof dims);
    } else if (n->op == OP_FLATTEN) {
        nd = 1;
        dims[0] = (int)x->size;
        if (x->size > FMT_MAX_DIM) return NODE_FAIL(b, i, CVY_ERR_SHAPE, "too large");
    } else {
        nd = n->ia[0];
        if (nd < 1 || nd > 4) return NODE_FAIL(b, i, CVY_ERR_UNSUPPORTED, "ndim %d", nd);
        int infer = -1;
        size_t known = 1;
        for (int d = 0; d < nd; d++) {
            int v = n->ia[1 + d];
            if (v == 0 && d < x->ndim) v = x->dims[d];
            if (v == -1) {
                if (infer >= 0) return NODE_FAIL(b, i, CVY_ERR_SHAPE, "two -1 dims");
                infer = d;
                continue;
            }
            if (v < 1 || v > (int)FMT_MAX_DIM)
                return NODE_FAIL(b, i, CVY_ERR_SHAPE, "dim %d = %d", d, n->ia[1 + d]);
            dims[d] = v;
            known *= (size_t)v;
        }
        if (infer >= 0) {
            if (known == 0 || x->size % known != 0 || x->size / known > FMT_MAX_DIM)
                return NODE_FAIL(b, i, CVY_ERR_SHAPE, "cannot infer the -1 dim");
            dims[infer] = (int)(x->size / known);
        }
    }
    set_shape(y, nd, dims);
    if (y->size != x->size)
        return NODE_FAIL(b, i, CVY_ERR_SHAPE, "reshape from %zu to %zu elements per image", x->size,
                         y->size);
    y->root = x->root;
    return CVY_OK;
}

static cvy_status plan_gemm(builder *b, int i)
{
    const fmt_node *n = &b->fm->nodes[i];
    value *x = val(b, n->in[0]);
    if (n->n_in < 2 || n->n_in > 3 || !is_act(n->in[0], b->fm))
        return NODE_FAIL(b, i, CVY_ERR_FORMAT, "needs inputs x, W and optional B");
    const fmt_tensor *wt = &b->fm->tensors[n->in[1]];
    int transb = n->ia[0];
    if (wt->kind != FMT_WEIGHT || wt->ndim != 2 || (transb != 0 && transb != 1))
        return NODE_FAIL(b, i, CVY_ERR_UNSUPPORTED, "W must be a 2-D weight, transB 0 or 1");
    int k = (int)(transb ? wt->dims[1] : wt->dims[0]);
    int nout = (int)(transb ? wt->dims[0] : wt->dims[1]);
    if ((size_t)k != x->size)
        return NODE_FAIL(b, i, CVY_ERR_SHAPE, "input has %zu values per image, W expects %d",
                         x->size, k);
    float alpha = n->fa[0], beta = n->fa[1];
    if (!isfinite(alpha) || !isfinite(beta))
        return NODE_FAIL(b, i, CVY_ERR_UNSUPPORTED, "alpha/beta must be finite");
    size_t nb = 0;
    if (n->n_in == 3) {
        const fmt_tensor *bt = &b->fm->tensors[n->in[2]];
        nb = (size_t)fmt_tensor_elems(bt);
        if (bt->kind != FMT_WEIGHT || (nb != (size_t)nout && nb != 1))
            return NODE_FAIL(b, i, CVY_ERR_SHAPE, "B must hold %d or 1 values", nout);
    }
    size_t nw = (size_t)k * nout;
    float *w = malloc(nw * sizeof(float)), *bias = calloc((size_t)nout, sizeof(float));
    if (!w || !bias) {
        free(w);
        free(bias);
        return cvy_fail(b->err, CVY_ERR_NOMEM, "out of memory packing gemm weights");
    }
    for (int o = 0; o < nout; o++) /* pack as (nout, k), alpha folded in */
        for (int j = 0; j < k; j++)
            w[(size_t)o * k + j] =
                alpha * wget(wt, transb ? (size_t)o * k + j : (size_t)j * nout + o);
    for (int o = 0; o < nout && nb; o++)
        bias[o] = beta * wget(&b->fm->tensors[n->in[2]], nb == 1 ? 0 : (size_t)o);
    const cvy_kernels *kern = b->p->kern;
    step *st = new_step(b, i, S_GEMM,
                        kern->fc_pack    ? "fc-lanes"
                        : b->p->use_blas ? "fc-blocked"
                                         : "fc-ref");
    if (!st) {
        free(w);
        free(bias);
        return cvy_fail(b->err, CVY_ERR_NOMEM, "out of memory");
    }
    if (kern->fc_pack) { /* the kernel's own layout, packed in place */
        st->w_off = wpush(b, NULL, kern->fc_packed_size(nout, k));
        if (st->w_off != SIZE_MAX) kern->fc_pack(w, nout, k, b->w + st->w_off);
    } else {
        st->w_off = wpush(b, w, nw);
    }
    st->b_off = wpush(b, bias, (size_t)nout);
    free(w);
    free(bias);
    if (st->w_off == SIZE_MAX || st->b_off == SIZE_MAX)
        return cvy_fail(b->err, CVY_ERR_NOMEM, "out of memory");
    st->k = k;
    st->nout = nout;
    int dims[1] = {nout};
    set_shape(val(b, n->out), 1, dims);
    st->params = nw + nb;
    st->flops = 2.0 * (double)nw;
    st->tasks = (nout + GEMM_CHUNK - 1) / GEMM_CHUNK;
    return fuse_act(b, st);
}

static cvy_status plan_softmax(builder *b, int i)
{
    const fmt_node *n = &b->fm->nodes[i];
    value *x = val(b, n->in[0]);
    int axis = n->ia[0];
    if (axis < 0) axis += x->ndim;
    if (axis < 0 || axis >= x->ndim || n->n_in != 1)
        return NODE_FAIL(b, i, CVY_ERR_UNSUPPORTED, "one input and axis in range (%d)", n->ia[0]);
    step *st = new_step(b, i, S_SOFTMAX, "direct");
    if (!st) return cvy_fail(b->err, CVY_ERR_NOMEM, "out of memory");
    st->sm_outer = 1;
    st->sm_inner = 1;
    for (int d = 0; d < axis; d++) st->sm_outer *= x->dims[d];
    for (int d = axis + 1; d < x->ndim; d++) st->sm_inner *= x->dims[d];
    st->sm_n = x->dims[axis];
    set_shape(val(b, n->out), x->ndim, x->dims);
    st->flops = 3.0 * (double)x->size;
    st->tasks = 1;
    return CVY_OK;
}

/* Standalone BatchNormalization: a per-channel affine map, run as a 1x1 depthwise conv. */
static cvy_status plan_bn(builder *b, int i)
{
    const fmt_node *n = &b->fm->nodes[i];
    value *x = val(b, n->in[0]);
    if (x->ndim < 1) return NODE_FAIL(b, i, CVY_ERR_SHAPE, "input has no channel dim");
    int c = x->dims[0];
    size_t hw = x->size / (size_t)c;
    float *w = malloc((size_t)c * sizeof(float)), *bias = calloc((size_t)c, sizeof(float));
    if (!w || !bias) {
        free(w);
        free(bias);
        return cvy_fail(b->err, CVY_ERR_NOMEM, "out of memory");
    }
    for (int k = 0; k < c; k++) w[k] = 1.0f;
    cvy_status s = fold_bn(b, i, c, 1, w, bias);
    step *st =
        s == CVY_OK ? new_step(b, i, b->p->use_blas ? S_CONV_DW : S_CONV_REF, "affine") : NULL;
    if (st) {
        st->w_off = wpush(b, w, (size_t)c);
        st->b_off = wpush(b, bias, (size_t)c);
    }
    free(w);
    free(bias);
    if (s != CVY_OK) return s;
    if (!st || st->w_off == SIZE_MAX || st->b_off == SIZE_MAX)
        return cvy_fail(b->err, CVY_ERR_NOMEM, "out of memory");
    st->g = (conv_geom){.c_in = c,
                        .h_in = 1,
                        .w_in = (int)hw,
                        .c_out = c,
                        .h_out = 1,
                        .w_out = (int)hw,
                        .kh = 1,
                        .kw = 1,
                        .sh = 1,
                        .sw = 1,
                        .dh = 1,
                        .dw = 1,
                        .group = c};
    set_shape(val(b, n->out), x->ndim, x->dims);
    st->params = 4 * (size_t)c;
    st->flops = 2.0 * (double)x->size;
    channel_blocks(st, c);
    return fuse_act(b, st);
}

/* ---- liveness and arena ------------------------------------------------------------------ */

/* First step writing and last step reading each root value (the output's: past the last
 * step), in its first and last; -1 when none. */
static void liveness(plan *p)
{
    value *v = p->values;
    for (int t = 0; t < p->n_values; t++) v[t].first = v[t].last = -1;
    for (int s = 0; s < p->n_steps; s++) {
        step *st = &p->steps[s];
        int r = v[st->out].root;
        if (v[r].first < 0) v[r].first = s;
        for (int k = 0; k < st->n_in; k++) v[v[st->in[k]].root].last = s;
        if (st->residual >= 0) v[v[st->residual].root].last = s;
    }
    v[v[p->output].root].last = p->n_steps;
}

/* Whether step st can write its output over its residual (all of its root's storage, which
 * no later step may read): a conv on an own GEMM that keeps no partial sums in its output
 * for this k, or a Winograd conv (their epilogues read each residual element just before
 * writing the output element at the same place, in the same task), that does not also read
 * the residual as an input, not banded, with both values plain arena values of one size. */
static int residual_in_place(const plan *p, const step *st)
{
    const value *v = p->values;
    int r = st->residual, o = st->out;
    if (r < 0 || st->pre || st->post || v[o].root != o || v[r].root == p->input ||
        v[r].view_off != 0 || v[r].size != v[o].size || v[v[r].root].size != v[o].size)
        return 0;
    r = v[r].root;
    if (st->kind == S_CONV_GEMM) {
        int k = st->g.c_in / st->g.group * st->g.kh * st->g.kw;
        if (!st->gemm || (st->gemm->part_kc > 0 && k > st->gemm->part_kc)) return 0;
    } else if (st->kind != S_CONV_WINO)
        return 0;
    for (int k = 0; k < st->n_in; k++)
        if (v[st->in[k]].root == r) return 0;
    return 1;
}

/* Convs whose residual dies with them write their output over it (its views follow): the
 * epilogue then reads and writes the same lines, where a separate output costs a second
 * stream and a read for ownership of every line it writes (ResNet-50's 56x56 1x1 + residual
 * 7% faster), and the arena needs less. Before plan_arena, which places the shared root. */
static void residuals_in_place(plan *p)
{
    value *v = p->values;
    liveness(p);
    for (int s = 0; s < p->n_steps; s++) {
        const step *st = &p->steps[s];
        if (!residual_in_place(p, st)) continue;
        int r = v[st->residual].root, o = st->out;
        if (v[r].last != s) continue;
        for (int t = 0; t < p->n_values; t++)
            if (v[t].root == o) v[t].root = r; /* o itself (view_off 0) and its views */
        v[r].last = v[o].last;
    }
}

static int by_size_desc(const void *pa, const void *pb, void *ctx)
{
    const value *v = ctx;
    size_t a = v[*(const int *)pa].size, c = v[*(const int *)pb].size;
    return a < c ? 1 : a > c ? -1 : *(const int *)pa - *(const int *)pb;
}

/* Places every non-input root value at the lowest arena offset free during its lifetime. */
static cvy_status plan_arena(builder *b)
{
    plan *p = b->p;
    value *v = p->values;
    liveness(p);
    int *roots = malloc((size_t)p->n_values * sizeof *roots), nr = 0;
    if (!roots) return cvy_fail(b->err, CVY_ERR_NOMEM, "out of memory");
    for (int t = 0; t < p->n_values; t++)
        if (v[t].used && v[t].root == t && t != p->input && v[t].first >= 0) roots[nr++] = t;
    qsort_r(roots, (size_t)nr, sizeof *roots, by_size_desc, v);
    size_t top = 0;
    for (int i = 0; i < nr; i++) {
        value *a = &v[roots[i]];
        size_t need = cvy_round_up(a->size, 16), off = 0;
        for (int moved = 1; moved;) { /* first fit above every overlapping placed value */
            moved = 0;
            for (int j = 0; j < i; j++) {
                value *c = &v[roots[j]];
                if (c->last < a->first || a->last < c->first) continue;
                size_t cend = c->offset + cvy_round_up(c->size, 16);
                if (off < cend && c->offset < off + need) {
                    off = cend;
                    moved = 1;
                }
            }
        }
        a->offset = off;
        if (off + need > top) top = off + need;
    }
    free(roots);
    p->arena_floats = top;
    if (top > PLAN_MAX_ARENA_FLOATS)
        return cvy_fail(b->err, CVY_ERR_SHAPE,
                        "activations need %zu MiB per image, more than the %d MiB limit", top >> 18,
                        (int)(PLAN_MAX_ARENA_FLOATS >> 18));
    return CVY_OK;
}

/* ---- independent steps -------------------------------------------------------------------- */

/* Whether values a and b share arena floats (per image; the graph input and its views live in
 * the caller's buffer, which no step writes). */
static int overlap(const plan *p, int a, int b)
{
    const value *v = p->values;
    if (v[a].root == p->input || v[b].root == p->input) return 0;
    size_t alo = v[v[a].root].offset + v[a].view_off, blo = v[v[b].root].offset + v[b].view_off;
    return alo < blo + v[b].size && blo < alo + v[a].size;
}

/* Whether step a writes anything step b reads or writes (a writes only its output: scratch
 * is per thread, residuals in place are its output's storage). */
static int clobbers(const plan *p, const step *a, const step *b)
{
    if (overlap(p, a->out, b->out) || (b->residual >= 0 && overlap(p, a->out, b->residual)))
        return 1;
    for (int k = 0; k < b->n_in; k++)
        if (overlap(p, a->out, b->in[k])) return 1;
    return 0;
}

static int pairable(const step *s)
{
    return s->kind == S_CONV_GEMM || s->kind == S_CONV_WINO || s->kind == S_CONV_DW ||
           s->kind == S_MAXPOOL || s->kind == S_AVGPOOL;
}

/* Marks consecutive steps that may run at the same time, two by two: convs and pools neither
 * of which writes what the other reads or writes, with the arena as placed (a value that dies
 * at the first may share storage with one born at the second). SqueezeNet's expand 1x1 and
 * 3x3 convs, ResNet's downsample and first 1x1 of a stage: exec.c runs each pair's tasks in
 * one pool run, so the workers balance over both and meet once. */
static void pair_steps(plan *p)
{
    for (int i = 0; i + 1 < p->n_steps; i++) {
        step *a = &p->steps[i], *b = &p->steps[i + 1];
        if (!pairable(a) || !pairable(b) || clobbers(p, a, b) || clobbers(p, b, a)) continue;
        a->with_next = 1;
        i++;
    }
}

/* ---- driver ------------------------------------------------------------------------------- */

static cvy_status plan_node(builder *b, int i)
{
    const fmt_node *n = &b->fm->nodes[i];
    for (uint32_t k = 0; k < n->n_in; k++)
        if (is_act(n->in[k], b->fm) && !val(b, n->in[k])->used)
            return NODE_FAIL(b, i, CVY_ERR_INTERNAL, "input %u has no shape", n->in[k]);
    if (!is_act(n->in[0], b->fm) && n->op != OP_ADD && n->op != OP_MUL)
        return NODE_FAIL(b, i, CVY_ERR_UNSUPPORTED, "first input must be an activation");
    switch (n->op) {
    case OP_CONV: return plan_conv(b, i);
    case OP_MAXPOOL:
    case OP_AVGPOOL: return plan_pool(b, i);
    case OP_GLOBALAVGPOOL: return plan_gap(b, i);
    case OP_RELU:
    case OP_CLIP:
    case OP_LEAKYRELU:
    case OP_SIGMOID:
    case OP_HARDSIGMOID:
    case OP_HARDSWISH: return plan_act(b, i);
    case OP_ADD:
    case OP_MUL: return plan_binary(b, i);
    case OP_CONCAT: return plan_concat(b, i);
    case OP_FLATTEN:
    case OP_RESHAPE:
    case OP_IDENTITY: return plan_view(b, i);
    case OP_GEMM: return plan_gemm(b, i);
    case OP_BATCHNORM: return plan_bn(b, i);
    case OP_SOFTMAX: return plan_softmax(b, i);
    }
    return NODE_FAIL(b, i, CVY_ERR_UNSUPPORTED, "unknown operator %u", n->op);
}

/* Checks the declared dims of every activation against the inferred ones. */
static cvy_status check_declared(builder *b)
{
    for (uint32_t t = 0; t < b->fm->n_tensors; t++) {
        const fmt_tensor *ft = &b->fm->tensors[t];
        const value *v = &b->p->values[t];
        if (ft->kind != FMT_ACTIVATION || ft->ndim == 0 || !v->used) continue;
        int ok = (int)ft->ndim == v->ndim;
        for (int d = 0; ok && d < v->ndim; d++) ok = (int)ft->dims[d] == v->dims[d];
        if (!ok)
            return cvy_fail(b->err, CVY_ERR_SHAPE,
                            "tensor %u: declared dims differ from the inferred ones", t);
    }
    return CVY_OK;
}

cvy_status plan_build(const fmt_model *fm, const cvy_kernels *kern, int use_blas, int winograd,
                      plan *out, cvy_error *err)
{
    memset(out, 0, sizeof *out);
    out->kern = kern;
    out->use_blas = use_blas;
    out->winograd = winograd;
    builder b = {.fm = fm, .p = out, .err = err};
    size_t nt = fm->n_tensors, nn = fm->n_nodes;
    out->values = calloc(nt, sizeof *out->values);
    b.producer = calloc(nt, sizeof *b.producer);
    b.consumers = calloc(nt, sizeof *b.consumers);
    b.order = calloc(nn, sizeof *b.order);
    b.done = calloc(nn, 1);
    cvy_status s = CVY_OK;
    if (!out->values || !b.producer || !b.consumers || !b.order || !b.done)
        s = cvy_fail(err, CVY_ERR_NOMEM, "out of memory planning the graph");
    out->n_values = (int)nt;
    out->input = (int)fm->input;
    out->output = (int)fm->output;
    for (size_t t = 0; out->values && t < nt; t++) out->values[t].root = (int)t;
    if (s == CVY_OK) s = check_graph(&b);
    if (s == CVY_OK) {
        const fmt_tensor *in = &fm->tensors[fm->input];
        int dims[3] = {(int)in->dims[0], (int)in->dims[1], (int)in->dims[2]};
        set_shape(&out->values[fm->input], (int)in->ndim, dims);
    }
    for (size_t o = 0; s == CVY_OK && o < nn; o++)
        if (!b.done[b.order[o]]) s = plan_node(&b, b.order[o]);
    if (s == CVY_OK) s = check_declared(&b);
    if (s == CVY_OK && out->values[out->output].root == out->input) {
        /* the output is (a view of) the input: one copy step */
        step *st = new_step(&b, b.order[nn - 1], S_COPY, "copy");
        if (!st)
            s = cvy_fail(err, CVY_ERR_NOMEM, "out of memory");
        else {
            st->in[0] = out->input;
            st->out = out->output;
            st->tasks = 1;
            out->values[out->output].root = out->output;
        }
    }
    if (s == CVY_OK) residuals_in_place(out);
    if (s == CVY_OK) s = plan_arena(&b);
    if (s == CVY_OK) pair_steps(out);
    if (s == CVY_OK) {
        out->weights = cvy_alloc_aligned(b.nw * sizeof(float));
        if (!out->weights)
            s = cvy_fail(err, CVY_ERR_NOMEM, "out of memory for weights");
        else if (b.nw)
            memcpy(out->weights, b.w, b.nw * sizeof(float));
        out->n_weights = b.nw;
    }
    for (int k = 0; s == CVY_OK && k < out->n_steps; k++) {
        out->params += out->steps[k].params;
        out->flops += out->steps[k].flops;
        if (out->steps[k].scratch > out->scratch_floats)
            out->scratch_floats = out->steps[k].scratch;
    }
    free(b.w);
    free(b.producer);
    free(b.consumers);
    free(b.order);
    free(b.done);
    if (s != CVY_OK) plan_free(out);
    return s;
}

void plan_free(plan *p)
{
    if (!p) return;
    for (int i = 0; i < p->n_steps; i++) {
        free(p->steps[i].boff);
        free(p->steps[i].pre);
        free(p->steps[i].post);
    }
    free(p->values);
    free(p->steps);
    cvy_free_aligned(p->weights);
    memset(p, 0, sizeof *p);
}
