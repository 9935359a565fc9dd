/* onnx_import.c - ONNX (protobuf-c, generated from Debian's onnx.proto) -> fmt_model.
 *
 * Every ONNX value becomes either a constant (initializers, Constant nodes and everything
 * computed only from constants and from the now-fixed input shape: the shape arithmetic
 * exporters emit) or an activation of the engine graph. Activations keep their full ONNX dims
 * here; dim 0 is the batch (unless unit_batch), and the engine sees dims[1..] per image.
 * Operators map onto the engine's set (docs/model-format.md); a few without an engine kernel
 * are rewritten exactly: a constant Pad becomes the padding of the next Conv/pool or a one-hot
 * depthwise conv, and Transpose/Slice/Gather/Split/ReduceMean of an activation become a 1x1
 * conv whose weights are a 0/1 (or 1/n) matrix on the leading dims.
 */
#include "onnx_import.h"

#include <errno.h>
#include <fcntl.h>
#include <float.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "onnx.pb-c.h"
#include "util.h"

#define MAXR            8          /* largest ONNX rank handled while folding */
#define MAX_MAP_WEIGHTS (1u << 24) /* largest one-hot matrix for the 1x1-conv rewrites */
#define MAX_ONNX_BYTES  (4ull << 30)
#define MAX_FOLDED      (1u << 27) /* largest constant computed while folding, in elements */

enum { V_NONE, V_ACT, V_CONST };
enum {
    DT_FLOAT = 1,
    DT_UINT8,
    DT_INT8,
    DT_UINT16,
    DT_INT16,
    DT_INT32,
    DT_INT64,
    DT_STRING,
    DT_BOOL,
    DT_FLOAT16,
    DT_DOUBLE,
    DT_UINT32,
    DT_UINT64
};

typedef struct oval {
    char *name;
    int kind;
    int rank;
    int64_t dims[MAXR]; /* full ONNX dims (the batch first unless unit_batch) */
    int t;              /* V_ACT: fmt tensor index */
    int is_int;         /* V_CONST: integer or bool dtype */
    double *v;          /* V_CONST: n values */
    size_t n;
    int pad[4]; /* V_ACT with pending: a zero Pad (t, l, b, r) not yet applied to t */
    int pending;
    const char *why; /* V_NONE: why the value is not available */
    /* V_ACT made by a 1x1-conv map (see emit_lmap): t's data is lm_w (lm_cout x lm_cin)
     * applied to the (lm_cin, lm_s) view of tensor lm_src, so a following map composes */
    const float *lm_w;
    int lm_src;
    size_t lm_cin, lm_cout;
    int64_t lm_s;
} oval;

typedef struct imp {
    fmt_model *m;
    cvy_error *err;
    int opset;
    int bo;        /* 1: dim 0 is the batch; 0: implicit batch of 1 */
    int64_t batch; /* the declared batch, reported by Shape */
    oval *vals;
    int nv, capv;
    const Onnx__NodeProto *node;
    int node_idx;
    const char *dir;
    int one_d;      /* converting a 1-D Conv/pool as 2-D with H = 1 */
    size_t in_size; /* floats per item of the graph input */
    float **mats;   /* matrices the lm_w tags point to */
    int n_mats, cap_mats;
    size_t const_elems; /* values of every constant made so far */
    size_t data_elems;  /* of which read from tensors of the file */
} imp;

/* Constant folding may make FOLD_BASE values plus FOLD_RATIO per value the file holds: enough
 * for any real network's reshapes and transposes of its weights, while a few hundred bytes of
 * crafted graph cannot make the importer fold billions of values. */
#define FOLD_BASE (1u << 24)
#define FOLD_RATIO 4

/* ---- errors ------------------------------------------------------------------------------ */

/* "node <i> '<name>' (<Op>): <message>" for the node being converted. */
__attribute__((format(printf, 3, 4))) static cvy_status nfail(imp *im, cvy_status s,
                                                              const char *fmt, ...)
{
    char msg[360];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (!im->node) return cvy_fail(im->err, s, "%s", msg);
    const char *nm = im->node->name && *im->node->name ? im->node->name
                     : im->node->n_output              ? im->node->output[0]
                                                       : "";
    return cvy_fail(im->err, s, "node %d '%.60s' (%.40s): %s", im->node_idx, nm,
                    im->node->op_type ? im->node->op_type : "?", msg);
}

#define NOMEM(im) nfail(im, CVY_ERR_NOMEM, "out of memory")

/* ---- values ------------------------------------------------------------------------------ */

static size_t prod(const int64_t *d, int a, int b)
{
    size_t n = 1;
    for (int i = a; i < b; i++) n *= (size_t)d[i];
    return n;
}

/* Product of dims [0, r), or SIZE_MAX when it exceeds MAX_FOLDED (no overflow). */
static size_t prod_capped(const int64_t *d, int r)
{
    size_t n = 1;
    for (int i = 0; i < r; i++) {
        if (d[i] < 0 || (d[i] && n > MAX_FOLDED / (size_t)d[i])) return SIZE_MAX;
        n *= (size_t)d[i];
    }
    return n;
}

static oval *find(imp *im, const char *name)
{
    for (int i = im->nv - 1; i >= 0; i--)
        if (strcmp(im->vals[i].name, name) == 0) return &im->vals[i];
    return NULL;
}

/* Appends a value named name (shadowing an older one). NULL on OOM. */
static oval *add_val(imp *im, const char *name, int kind)
{
    if (im->nv == im->capv) {
        int cap = im->capv ? 2 * im->capv : 256;
        oval *v = realloc(im->vals, (size_t)cap * sizeof *v);
        if (!v) return NULL;
        im->vals = v;
        im->capv = cap;
    }
    oval *v = &im->vals[im->nv];
    memset(v, 0, sizeof *v);
    v->name = strdup(name);
    if (!v->name) return NULL;
    v->kind = kind;
    v->t = -1;
    im->nv++;
    return v;
}

static oval *add_const(imp *im, const char *name, int rank, const int64_t *dims_in, int is_int)
{
    int64_t dims[MAXR]; /* dims_in may point into vals, which add_val may move */
    memcpy(dims, dims_in, (size_t)rank * sizeof *dims);
    size_t n = prod(dims, 0, rank);
    oval *v = add_val(im, name, V_CONST);
    if (!v) return NULL;
    v->rank = rank;
    memcpy(v->dims, dims, (size_t)rank * sizeof *dims);
    v->is_int = is_int;
    v->n = n;
    v->v = calloc(n ? n : 1, sizeof(double));
    if (v->v) im->const_elems += n;
    return v->v ? v : NULL;
}

static oval *add_act(imp *im, const char *name, int rank, const int64_t *dims_in, int t)
{
    int64_t dims[MAXR]; /* dims_in may point into vals, which add_val may move */
    memcpy(dims, dims_in, (size_t)rank * sizeof *dims);
    oval *v = add_val(im, name, V_ACT);
    if (!v) return NULL;
    v->rank = rank;
    memcpy(v->dims, dims, (size_t)rank * sizeof *dims);
    v->t = t;
    return v;
}

/* ---- tensors ----------------------------------------------------------------------------- */

static float half_to_float(uint16_t h)
{
    int s = h >> 15, e = (h >> 10) & 31, f = h & 1023;
    float v = e == 0    ? ldexpf((float)f, -24)
              : e == 31 ? (f ? NAN : INFINITY)
                        : ldexpf((float)(f | 1024), e - 25);
    return s ? -v : v;
}

static size_t dtype_size(int dt)
{
    switch (dt) {
    case DT_UINT8:
    case DT_INT8:
    case DT_BOOL: return 1;
    case DT_UINT16:
    case DT_INT16:
    case DT_FLOAT16: return 2;
    case DT_FLOAT:
    case DT_INT32:
    case DT_UINT32: return 4;
    case DT_INT64:
    case DT_DOUBLE:
    case DT_UINT64: return 8;
    }
    return 0;
}

static double raw_value(const uint8_t *p, int dt)
{
    union {
        uint8_t b[8];
        float f;
        double d;
        int64_t i64;
        uint64_t u64;
        int32_t i32;
        uint32_t u32;
        int16_t i16;
        uint16_t u16;
        int8_t i8;
    } u;
    memcpy(u.b, p, dtype_size(dt));
    switch (dt) {
    case DT_FLOAT: return u.f;
    case DT_UINT8:
    case DT_BOOL: return u.b[0];
    case DT_INT8: return u.i8;
    case DT_UINT16: return u.u16;
    case DT_INT16: return u.i16;
    case DT_INT32: return u.i32;
    case DT_INT64: return (double)u.i64;
    case DT_FLOAT16: return half_to_float(u.u16);
    case DT_DOUBLE: return u.d;
    case DT_UINT32: return u.u32;
    case DT_UINT64: return (double)u.u64;
    }
    return 0;
}

/* Reads external data (location/offset/length relative to dir) into a malloc'd buffer. */
static cvy_status read_external(imp *im, const Onnx__TensorProto *t, size_t want, uint8_t **out)
{
    const char *loc = NULL;
    long long off = 0, len = -1;
    for (size_t i = 0; i < t->n_external_data; i++) {
        const Onnx__StringStringEntryProto *e = t->external_data[i];
        if (!e->key || !e->value) continue;
        if (!strcmp(e->key, "location"))
            loc = e->value;
        else if (!strcmp(e->key, "offset"))
            off = atoll(e->value);
        else if (!strcmp(e->key, "length"))
            len = atoll(e->value);
    }
    const char *tn = t->name ? t->name : "";
    if (!loc || strstr(loc, "..") || loc[0] == '/')
        return nfail(im, CVY_ERR_FORMAT, "tensor '%.80s': bad external data location", tn);
    if (len >= 0 && (size_t)len != want)
        return nfail(im, CVY_ERR_FORMAT, "tensor '%.80s': external length %lld, expected %zu", tn,
                     len, want);
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", im->dir ? im->dir : ".", loc);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return nfail(im, CVY_ERR_IO, "tensor '%.80s': external data file %.200s: %s", tn, path,
                     strerror(errno));
    uint8_t *b = malloc(want ? want : 1);
    if (!b) {
        close(fd);
        return NOMEM(im);
    }
    size_t got = 0;
    while (got < want) {
        ssize_t r = pread(fd, b + got, want - got, (off_t)off + (off_t)got);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) break;
        got += (size_t)r;
    }
    close(fd);
    if (got != want) {
        free(b);
        return nfail(im, CVY_ERR_IO, "tensor '%.80s': external data file %.200s is too short", tn,
                     path);
    }
    *out = b;
    return CVY_OK;
}

/* Converts a TensorProto into a constant value named name. */
static cvy_status tensor_const(imp *im, const Onnx__TensorProto *t, const char *name, oval **out)
{
    const char *tn = name ? name : "";
    int dt = t->has_data_type ? t->data_type : 0;
    if (dtype_size(dt) == 0)
        return nfail(im, CVY_ERR_UNSUPPORTED, "tensor '%.80s': data type %d is not supported", tn,
                     dt);
    if (t->n_dims > MAXR)
        return nfail(im, CVY_ERR_UNSUPPORTED, "tensor '%.80s': rank %zu > %d", tn, t->n_dims, MAXR);
    int64_t dims[MAXR];
    size_t n = 1;
    for (size_t d = 0; d < t->n_dims; d++) {
        if (t->dims[d] < 0 || t->dims[d] > (1ll << 31))
            return nfail(im, CVY_ERR_FORMAT, "tensor '%.80s': dim %zu = %lld", tn, d,
                         (long long)t->dims[d]);
        dims[d] = t->dims[d];
        if (!cvy_mul_ok(n, (size_t)dims[d], &n) || n > (1ull << 31))
            return nfail(im, CVY_ERR_FORMAT, "tensor '%.80s' is too large", tn);
    }
    int is_int = !(dt == DT_FLOAT || dt == DT_DOUBLE || dt == DT_FLOAT16);
    size_t es = dtype_size(dt);
    int external =
        t->has_data_location && t->data_location == ONNX__TENSOR_PROTO__DATA_LOCATION__EXTERNAL;
    size_t have = dt == DT_FLOAT                       ? t->n_float_data
                  : dt == DT_INT64                     ? t->n_int64_data
                  : dt == DT_DOUBLE                    ? t->n_double_data
                  : dt == DT_UINT32 || dt == DT_UINT64 ? t->n_uint64_data
                                                       : t->n_int32_data;
    /* the file must hold the values before room for them is allocated (dims alone can claim
     * gigabytes) */
    if (!external && t->has_raw_data && t->raw_data.len != n * es)
        return nfail(im, CVY_ERR_FORMAT, "tensor '%.80s': %zu raw bytes for %zu values", tn,
                     t->raw_data.len, n);
    if (!external && !t->has_raw_data && have != n)
        return nfail(im, CVY_ERR_FORMAT, "tensor '%.80s': %zu values for %zu elements", tn, have,
                     n);
    oval *v = add_const(im, tn, (int)t->n_dims, dims, is_int);
    if (!v) return NOMEM(im);
    im->data_elems += n;
    uint8_t *ext = NULL;
    const uint8_t *raw = NULL;
    if (external) {
        cvy_status s = read_external(im, t, n * es, &ext);
        if (s != CVY_OK) return s;
        raw = ext;
    } else if (t->has_raw_data) {
        raw = t->raw_data.data;
    }
    if (raw) {
        for (size_t i = 0; i < n; i++) v->v[i] = raw_value(raw + i * es, dt);
        free(ext);
    } else {
        for (size_t i = 0; i < n; i++) {
            switch (dt) {
            case DT_FLOAT: v->v[i] = t->float_data[i]; break;
            case DT_INT64: v->v[i] = (double)t->int64_data[i]; break;
            case DT_DOUBLE: v->v[i] = t->double_data[i]; break;
            case DT_UINT32:
            case DT_UINT64: v->v[i] = (double)t->uint64_data[i]; break;
            case DT_FLOAT16: v->v[i] = half_to_float((uint16_t)t->int32_data[i]); break;
            default: v->v[i] = t->int32_data[i];
            }
        }
    }
    if (dt == DT_FLOAT)
        for (size_t i = 0; i < n; i++) v->v[i] = (float)v->v[i];
    *out = v;
    return CVY_OK;
}

cvy_status onnx_tensor_read(const void *buf, size_t size, onnx_tensor *out, cvy_error *err)
{
    memset(out, 0, sizeof *out);
    Onnx__TensorProto *t = onnx__tensor_proto__unpack(NULL, size, buf);
    if (!t) return cvy_fail(err, CVY_ERR_FORMAT, "not a TensorProto");
    imp im = {.err = err};
    oval *v = NULL;
    cvy_status s = tensor_const(&im, t, t->name, &v);
    if (s == CVY_OK) {
        out->dtype = t->data_type;
        out->rank = v->rank;
        memcpy(out->dims, v->dims, sizeof out->dims);
        out->n = v->n;
        out->data = v->n ? malloc(v->n * sizeof(float)) : NULL;
        if (v->n && !out->data) s = cvy_fail(err, CVY_ERR_NOMEM, "out of memory");
        for (size_t i = 0; s == CVY_OK && i < v->n; i++) out->data[i] = (float)v->v[i];
    }
    for (int i = 0; i < im.nv; i++) {
        free(im.vals[i].name);
        free(im.vals[i].v);
    }
    free(im.vals);
    onnx__tensor_proto__free_unpacked(t, NULL);
    return s;
}

/* ---- attributes -------------------------------------------------------------------------- */

static const Onnx__AttributeProto *attr(imp *im, const char *name)
{
    for (size_t i = 0; i < im->node->n_attribute; i++)
        if (im->node->attribute[i]->name && !strcmp(im->node->attribute[i]->name, name))
            return im->node->attribute[i];
    return NULL;
}

static int64_t attr_i(imp *im, const char *name, int64_t def)
{
    const Onnx__AttributeProto *a = attr(im, name);
    return a && a->has_i ? a->i : def;
}

static float attr_f(imp *im, const char *name, float def)
{
    const Onnx__AttributeProto *a = attr(im, name);
    return a && a->has_f ? a->f : def;
}

/* Copies an INTS attribute; returns its length, or -1 when absent. */
static int attr_ints(imp *im, const char *name, int64_t *out, int max)
{
    const Onnx__AttributeProto *a = attr(im, name);
    if (!a) return -1;
    int n = (int)a->n_ints < max ? (int)a->n_ints : max;
    for (int i = 0; i < n; i++) out[i] = a->ints[i];
    return (int)a->n_ints;
}

static int attr_is(imp *im, const char *name, const char *val)
{
    const Onnx__AttributeProto *a = attr(im, name);
    if (!a || !a->has_s) return 0;
    return a->s.len == strlen(val) && memcmp(a->s.data, val, a->s.len) == 0;
}

/* Every attribute of the node must be in the space-separated list known. */
static cvy_status check_attrs(imp *im, const char *known)
{
    for (size_t i = 0; i < im->node->n_attribute; i++) {
        const char *n = im->node->attribute[i]->name ? im->node->attribute[i]->name : "";
        const char *p = known;
        size_t l = strlen(n);
        int ok = 0;
        /* an empty name matches nowhere (strstr would find it at every byte, past the end) */
        while (l && !ok && (p = strstr(p, n)) != NULL) {
            ok = (p == known || p[-1] == ' ') && (p[l] == ' ' || p[l] == '\0');
            p++;
        }
        if (!ok) return nfail(im, CVY_ERR_UNSUPPORTED, "attribute '%.60s' is not supported", n);
    }
    return CVY_OK;
}

/* ---- emitting engine nodes --------------------------------------------------------------- */

static const char *node_name(imp *im)
{
    if (im->node->name && *im->node->name) return im->node->name;
    return im->node->n_output ? im->node->output[0] : im->node->op_type;
}

/* Adds node op over in[] producing a new activation; returns its tensor index or -1. */
static int emit(imp *im, uint32_t op, int n_in, const int *in, const int32_t *ia, const float *fa)
{
    int t = fmt_add_activation(im->m, 0, NULL);
    if (t < 0) return -1;
    uint32_t u[FMT_MAX_INPUTS];
    for (int k = 0; k < n_in; k++) u[k] = (uint32_t)in[k];
    const char *nm = node_name(im);
    size_t l = strlen(nm);
    if (l > FMT_NAME_LEN) nm += l - FMT_NAME_LEN; /* keep the distinctive tail */
    if (fmt_add_node(im->m, op, (uint32_t)n_in, u, (uint32_t)t, ia, fa, nm) < 0) return -1;
    return t;
}

/* A weight holding c's values with the given dims (c's own when dims is NULL). */
static int weight_of(imp *im, const oval *c, int ndim, const int64_t *dims)
{
    if (!dims) {
        ndim = c->rank;
        dims = c->dims;
    }
    uint32_t d[4];
    int nd = 0;
    for (int i = 0; i < ndim; i++) {
        if (ndim - i > 4 && dims[i] == 1) continue; /* drop leading ones */
        if (nd == 4 || dims[i] < 1 || dims[i] > (int64_t)FMT_MAX_DIM) return -2;
        d[nd++] = (uint32_t)dims[i];
    }
    float *f = malloc((c->n ? c->n : 1) * sizeof(float));
    if (!f) return -1;
    for (size_t i = 0; i < c->n; i++) f[i] = (float)c->v[i];
    int t = fmt_add_weight(im->m, (uint32_t)nd, d, f);
    free(f);
    return t;
}

static int weight_raw(imp *im, int ndim, const uint32_t *dims, const float *data)
{
    return fmt_add_weight(im->m, (uint32_t)ndim, dims, data);
}

/* Reshape activation t (any shape) to per-image dims pd[0..nd). */
static int emit_reshape(imp *im, int t, int nd, const int64_t *pd)
{
    int32_t ia[16] = {0};
    if (nd < 1 || nd > 4) return -2;
    ia[0] = nd;
    for (int i = 0; i < nd; i++) {
        if (pd[i] < 1 || pd[i] > (int64_t)FMT_MAX_DIM) return -2;
        ia[1 + i] = (int32_t)pd[i];
    }
    return emit(im, OP_RESHAPE, 1, &t, ia, NULL);
}

static cvy_status check_emit(imp *im, int t)
{
    if (t == -2) return nfail(im, CVY_ERR_UNSUPPORTED, "a per-image shape the engine cannot hold");
    if (t < 0) return NOMEM(im);
    return CVY_OK;
}

/* Registers output k of the node as activation t with full dims. */
static cvy_status set_out(imp *im, int k, int t, int rank, const int64_t *dims)
{
    cvy_status s = check_emit(im, t);
    if (s != CVY_OK) return s;
    if (rank - im->bo < 1 || rank - im->bo > 4)
        return nfail(im, CVY_ERR_UNSUPPORTED,
                     "output has %d dims per image; the engine takes 1 to 4", rank - im->bo);
    if ((size_t)k >= im->node->n_output || !*im->node->output[k]) return CVY_OK;
    return add_act(im, im->node->output[k], rank, dims, t) ? CVY_OK : NOMEM(im);
}

/* Applies a pending zero Pad to v as a depthwise conv with a one-hot kernel. */
static cvy_status materialize(imp *im, oval *v)
{
    if (v->kind != V_ACT || !v->pending) return CVY_OK;
    int r = v->rank, flat = r - im->bo == 2; /* (C, L): padded as (C, 1, L) */
    int c = (int)v->dims[r - (flat ? 2 : 3)];
    int t0 = v->t;
    if (flat) {
        int64_t pd[3] = {c, 1, v->dims[r - 1] - v->pad[1] - v->pad[3]};
        if ((t0 = emit_reshape(im, t0, 3, pd)) < 0) return check_emit(im, t0);
    }
    int pt = v->pad[0], pl = v->pad[1], pb = v->pad[2], pr = v->pad[3];
    int kh = pt + pb + 1, kw = pl + pr + 1;
    size_t nw = (size_t)c * kh * kw;
    float *w = calloc(nw, sizeof(float));
    if (!w) return NOMEM(im);
    for (int ch = 0; ch < c; ch++) w[((size_t)ch * kh + pb) * kw + pr] = 1.0f;
    uint32_t wd[4] = {(uint32_t)c, 1, (uint32_t)kh, (uint32_t)kw};
    int wt = weight_raw(im, 4, wd, w);
    free(w);
    if (wt < 0) return NOMEM(im);
    int32_t ia[16] = {0};
    ia[A_KH] = kh;
    ia[A_KW] = kw;
    ia[A_SH] = ia[A_SW] = ia[A_DH] = ia[A_DW] = 1;
    ia[A_PT] = ia[A_PB] = kh - 1;
    ia[A_PL] = ia[A_PR] = kw - 1;
    ia[A_GROUP] = c;
    int in[2] = {t0, wt};
    int t = emit(im, OP_CONV, 2, in, ia, NULL);
    if (t < 0) return NOMEM(im);
    if (flat && (t = emit_reshape(im, t, 2, v->dims + r - 2)) < 0) return check_emit(im, t);
    v->t = t;
    v->pending = 0;
    return CVY_OK;
}

/* ---- constant folding helpers ------------------------------------------------------------ */

static int64_t ival(double d)
{
    if (isnan(d)) return 0; /* converting NaN is undefined; shapes and indices of 0 are checked */
    if (d >= 9.2e18) return INT64_MAX;
    if (d <= -9.2e18) return INT64_MIN;
    return (int64_t)d;
}

/* Normalizes axis a into [0, r); returns -1 when out of range. */
static int norm_axis(int64_t a, int r)
{
    if (a < 0) a += r;
    return a < 0 || a >= r ? -1 : (int)a;
}

/* Reads an optional integer list input (k) or attribute (name) into out. Returns the count,
 * -1 when absent, -2 when the input is not a constant. */
static int ints_in_or_attr(imp *im, oval **in, int nin, int k, const char *name, int64_t *out,
                           int max)
{
    if (k < nin && in[k]) {
        if (in[k]->kind != V_CONST) return -2;
        int n = (int)in[k]->n < max ? (int)in[k]->n : max;
        for (int i = 0; i < n; i++) out[i] = ival(in[k]->v[i]);
        return (int)in[k]->n;
    }
    return name ? attr_ints(im, name, out, max) : -1;
}

/* Strides of dims (row-major). */
static void strides(const int64_t *d, int r, size_t *st)
{
    size_t s = 1;
    for (int i = r - 1; i >= 0; i--) {
        st[i] = s;
        s *= (size_t)d[i];
    }
}

static int bcast(const oval *a, const oval *b, int *r, int64_t *od)
{
    *r = a->rank > b->rank ? a->rank : b->rank;
    for (int i = 0; i < *r; i++) {
        int ia = i - (*r - a->rank), ib = i - (*r - b->rank);
        int64_t x = ia >= 0 ? a->dims[ia] : 1, y = ib >= 0 ? b->dims[ib] : 1;
        if (x != y && x != 1 && y != 1) return 0;
        od[i] = x == 1 ? y : x;
    }
    return 1;
}

/* Index into a broadcast operand for flat output index o. */
static size_t bidx(const oval *a, int r, const int64_t *od, size_t o)
{
    size_t st[MAXR], idx = 0;
    strides(a->dims, a->rank, st);
    for (int i = r - 1; i >= 0; i--) {
        size_t c = o % (size_t)od[i];
        o /= (size_t)od[i];
        int ia = i - (r - a->rank);
        if (ia >= 0 && a->dims[ia] != 1) idx += c * st[ia];
    }
    return idx;
}

/* Folds an elementwise binary op over constants. */
static cvy_status fold_binary(imp *im, const char *op, oval *a, oval *b, const char *out)
{
    int r;
    int64_t od[MAXR];
    if (!bcast(a, b, &r, od)) return nfail(im, CVY_ERR_SHAPE, "shapes do not broadcast");
    if (prod_capped(od, r) == SIZE_MAX)
        return nfail(im, CVY_ERR_UNSUPPORTED, "folds to more than %u values", MAX_FOLDED);
    int is_int = a->is_int && b->is_int;
    if (!strcmp(op, "Equal") || !strcmp(op, "Less") || !strcmp(op, "Greater")) is_int = 1;
    oval *c = add_const(im, out, r, od, is_int);
    if (!c) return NOMEM(im);
    a = find(im, im->node->input[0]); /* add_const may have moved the array */
    b = find(im, im->node->input[1]);
    for (size_t o = 0; o < c->n; o++) {
        double x = a->v[bidx(a, r, od, o)], y = b->v[bidx(b, r, od, o)], z;
        switch (op[0]) {
        case 'A': z = x + y; break;
        case 'S': z = x - y; break;
        case 'M':
            z = !strcmp(op, "Mul") ? x * y : !strcmp(op, "Max") ? fmax(x, y) : fmin(x, y);
            break;
        case 'D':
            if (is_int && y == 0) return nfail(im, CVY_ERR_SHAPE, "integer division by zero");
            z = is_int ? (double)(ival(x) / ival(y)) : x / y;
            break;
        case 'P': z = pow(x, y); break;
        case 'E': z = x == y; break;
        case 'L': z = x < y; break;
        default: z = x > y; break;
        }
        if (!is_int) z = (float)z;
        c->v[o] = z;
    }
    return CVY_OK;
}

/* ---- graph input ------------------------------------------------------------------------- */

static const Onnx__TensorShapeProto *input_shape(const Onnx__ValueInfoProto *vi)
{
    if (!vi->type || vi->type->value_case != ONNX__TYPE_PROTO__VALUE_TENSOR_TYPE ||
        !vi->type->tensor_type)
        return NULL;
    return vi->type->tensor_type->shape;
}

/* ---- operators --------------------------------------------------------------------------- */

typedef cvy_status (*op_fn)(imp *im, oval **in, int nin);

/* The activation input k (materializing a pending Pad). */
static cvy_status need_act(imp *im, oval **in, int nin, int k, oval **out)
{
    if (k >= nin || !in[k]) return nfail(im, CVY_ERR_FORMAT, "input %d is missing", k);
    if (in[k]->kind != V_ACT)
        return nfail(im, CVY_ERR_UNSUPPORTED,
                     "input %d ('%.60s') must be computed from the "
                     "graph input",
                     k, in[k]->name);
    cvy_status s = materialize(im, in[k]);
    *out = in[k];
    return s;
}

static cvy_status need_const(imp *im, oval **in, int nin, int k, const char *what, oval **out)
{
    if (k >= nin || !in[k]) return nfail(im, CVY_ERR_FORMAT, "input %s is missing", what);
    if (in[k]->kind != V_CONST)
        return nfail(im, CVY_ERR_UNSUPPORTED, "input %s ('%.60s') must be a constant", what,
                     in[k]->name);
    *out = in[k];
    return CVY_OK;
}

/* Spatial attributes of Conv and the pools, for per-image input (C, H, W) and kernel kh x kw
 * (0: from kernel_shape). Fills ia[A_KH..A_DW]. */
static cvy_status spatial_attrs(imp *im, const oval *x, int kh, int kw, int32_t *ia)
{
    int64_t k[4], s[4] = {1, 1}, d[4] = {1, 1}, p[8] = {0, 0, 0, 0};
    int nk = attr_ints(im, "kernel_shape", k, 4);
    if (im->one_d && nk == 1) k[1] = k[0], k[0] = 1, nk = 2;
    if (nk >= 0 && nk != 2)
        return nfail(im, CVY_ERR_UNSUPPORTED,
                     "attribute 'kernel_shape': %d spatial dims; "
                     "only 2-D is supported",
                     nk);
    if (nk < 0 && kh == 0) return nfail(im, CVY_ERR_FORMAT, "attribute 'kernel_shape' missing");
    if (nk < 0) {
        k[0] = kh;
        k[1] = kw;
    } else if (kh && (k[0] != kh || k[1] != kw)) {
        return nfail(im, CVY_ERR_SHAPE, "attribute 'kernel_shape' (%lld, %lld) differs from W",
                     (long long)k[0], (long long)k[1]);
    }
    int ns = attr_ints(im, "strides", s, 4), nd = attr_ints(im, "dilations", d, 4);
    int np = attr_ints(im, "pads", p, 8);
    if (im->one_d) { /* 1-D attributes: H gets kernel 1, stride 1, no padding */
        if ((ns >= 0 && ns != 1) || (nd >= 0 && nd != 1) || (np >= 0 && np != 2))
            return nfail(im, CVY_ERR_UNSUPPORTED,
                         "attribute 'kernel_shape'/'strides'/"
                         "'dilations'/'pads': wrong length for 1-D");
        if (ns >= 0) s[1] = s[0], s[0] = 1, ns = 2;
        if (nd >= 0) d[1] = d[0], d[0] = 1, nd = 2;
        if (np >= 0) p[3] = p[1], p[1] = p[0], p[0] = p[2] = 0, np = 4;
    }
    if ((ns >= 0 && ns != 2) || (nd >= 0 && nd != 2) || (np >= 0 && np != 4))
        return nfail(im, CVY_ERR_UNSUPPORTED,
                     "attribute 'strides'/'dilations'/'pads': wrong "
                     "length for 2-D");
    for (int i = 0; i < 2; i++)
        if (k[i] < 1 || s[i] < 1 || d[i] < 1 || k[i] > 4096 || s[i] > 4096 || d[i] > 4096)
            return nfail(im, CVY_ERR_UNSUPPORTED,
                         "attribute 'kernel_shape'/'strides'/'dilations' out of range");
    const Onnx__AttributeProto *ap = attr(im, "auto_pad");
    int64_t hw[2] = {x->dims[x->rank - 2], x->dims[x->rank - 1]};
    if (ap && !attr_is(im, "auto_pad", "NOTSET")) {
        int upper = attr_is(im, "auto_pad", "SAME_UPPER"),
            lower = attr_is(im, "auto_pad", "SAME_LOWER");
        if (attr_is(im, "auto_pad", "VALID")) {
            memset(p, 0, sizeof p);
        } else if (upper || lower) {
            for (int i = 0; i < 2; i++) {
                int64_t out = (hw[i] + s[i] - 1) / s[i];
                int64_t total = (out - 1) * s[i] + (k[i] - 1) * d[i] + 1 - hw[i];
                if (total < 0) total = 0;
                p[i] = upper ? total / 2 : total - total / 2;
                p[i + 2] = total - p[i];
            }
        } else {
            return nfail(im, CVY_ERR_UNSUPPORTED, "attribute 'auto_pad' has an unknown value");
        }
    }
    for (int i = 0; i < 4; i++)
        if (p[i] < 0 || p[i] > 4096)
            return nfail(im, CVY_ERR_UNSUPPORTED, "attribute 'pads': %lld out of range",
                         (long long)p[i]);
    ia[A_KH] = (int32_t)k[0];
    ia[A_KW] = (int32_t)k[1];
    ia[A_SH] = (int32_t)s[0];
    ia[A_SW] = (int32_t)s[1];
    ia[A_PT] = (int32_t)p[0];
    ia[A_PL] = (int32_t)p[1];
    ia[A_PB] = (int32_t)p[2];
    ia[A_PR] = (int32_t)p[3];
    ia[A_DH] = (int32_t)d[0];
    ia[A_DW] = (int32_t)d[1];
    return CVY_OK;
}

/* Output H/W of a window op (ceil as the engine computes it). */
static void window_out(const int32_t *ia, int ceil_mode, int64_t h, int64_t w, int64_t *oh,
                       int64_t *ow)
{
    int64_t in[2] = {h, w}, o[2];
    for (int i = 0; i < 2; i++) {
        int64_t k = (int64_t)(ia[A_KH + i] - 1) * ia[A_DH + i] + 1, s = ia[A_SH + i];
        int64_t pb = ia[A_PT + i], pe = ia[A_PB + i], hp = in[i] + pb + pe;
        o[i] = ceil_mode ? (hp - k + s - 1) / s + 1 : (hp - k) / s + 1;
        if (ceil_mode && (o[i] - 1) * s >= in[i] + pb) o[i]--;
    }
    *oh = o[0];
    *ow = o[1];
}

/* Adds a pending zero Pad of x into ia's pads when the result stays valid; returns 1 then. */
static int fold_pad(const oval *x, int32_t *ia)
{
    if (!x->pending) return 1;
    int ekh = (ia[A_KH] - 1) * ia[A_DH] + 1, ekw = (ia[A_KW] - 1) * ia[A_DW] + 1;
    int p[4] = {ia[A_PT] + x->pad[0], ia[A_PL] + x->pad[1], ia[A_PB] + x->pad[2],
                ia[A_PR] + x->pad[3]};
    if (p[0] >= ekh || p[2] >= ekh || p[1] >= ekw || p[3] >= ekw) return 0;
    ia[A_PT] = p[0];
    ia[A_PL] = p[1];
    ia[A_PB] = p[2];
    ia[A_PR] = p[3];
    return 1;
}

/* The input as it was before a pending Pad (or itself), its dims as the folded op sees them. */
static void unpadded_hw(const oval *x, int64_t *h, int64_t *w)
{
    *h = x->dims[x->rank - 2] - (x->pending ? x->pad[0] + x->pad[2] : 0);
    *w = x->dims[x->rank - 1] - (x->pending ? x->pad[1] + x->pad[3] : 0);
}

static cvy_status need_image(imp *im, const oval *x)
{
    if (x->rank - im->bo != 3)
        return nfail(im, CVY_ERR_UNSUPPORTED,
                     "input has %d dims per image; only 2-D (C, H, W) images are supported",
                     x->rank - im->bo);
    return CVY_OK;
}

/* A 1-D Conv or pool (per-item (C, L)) run as 2-D on the view (C, 1, L). */
static cvy_status one_d(imp *im, oval **in, int nin, op_fn fn)
{
    oval *x = in[0], w4;
    cvy_status s;
    if (x->kind != V_ACT) return nfail(im, CVY_ERR_UNSUPPORTED, "input 0 is a constant");
    oval x4 = *x; /* a pending Pad stays pending: the 2-D op may fold it */
    int r = x->rank;
    int64_t pd[3] = {x->dims[r - 2], 1, x->dims[r - 1] - (x->pending ? x->pad[1] + x->pad[3] : 0)};
    x4.rank = r + 1;
    x4.dims[r - 1] = 1;
    x4.dims[r] = x->dims[r - 1];
    x4.t = emit_reshape(im, x->t, 3, pd);
    if (x4.t < 0) return check_emit(im, x4.t);
    oval *in4[3] = {&x4, nin > 1 ? in[1] : NULL, nin > 2 ? in[2] : NULL};
    if (nin > 1 && in[1] && in[1]->kind == V_CONST && in[1]->rank == 3) {
        w4 = *in[1];
        w4.rank = 4;
        w4.dims[3] = w4.dims[2];
        w4.dims[2] = 1;
        in4[1] = &w4;
    }
    im->one_d = 1;
    s = fn(im, in4, nin < 3 ? nin : 3);
    im->one_d = 0;
    if (s != CVY_OK) return s;
    oval *y = find(im, im->node->output[0]);
    if (!y) return nfail(im, CVY_ERR_INTERNAL, "1-D output missing");
    int64_t od[MAXR];
    memcpy(od, y->dims, sizeof od);
    od[r - 1] = od[r];
    int t = emit_reshape(im, y->t, r - im->bo, od + im->bo);
    return set_out(im, 0, t, r, od);
}

static cvy_status op_conv(imp *im, oval **in, int nin)
{
    cvy_status s = check_attrs(im, "auto_pad dilations group kernel_shape pads strides");
    oval *x = in[0], *w, *b = NULL;
    if (s == CVY_OK && !im->one_d && x->kind == V_ACT && x->rank - im->bo == 2)
        return one_d(im, in, nin, op_conv);
    if (s == CVY_OK && (!x || x->kind != V_ACT))
        return nfail(im, CVY_ERR_UNSUPPORTED, "input X must be computed from the graph input");
    if (s == CVY_OK) s = need_image(im, x);
    if (s == CVY_OK) s = need_const(im, in, nin, 1, "W", &w);
    if (s == CVY_OK && nin > 2 && in[2]) s = need_const(im, in, nin, 2, "B", &b);
    if (s != CVY_OK) return s;
    if (w->rank != 4)
        return nfail(im, CVY_ERR_UNSUPPORTED, "W has %d dims; only 2-D convolution is supported",
                     w->rank);
    int32_t ia[16] = {0};
    /* own pads (auto_pad sees the padded input), then a pending zero Pad folded on top */
    if ((s = spatial_attrs(im, x, (int)w->dims[2], (int)w->dims[3], ia)) != CVY_OK) return s;
    if (x->pending && !fold_pad(x, ia) && (s = materialize(im, x)) != CVY_OK) return s;
    int64_t h, wd;
    unpadded_hw(x, &h, &wd);
    int64_t group = attr_i(im, "group", 1);
    int64_t c = x->dims[x->rank - 3];
    if (group < 1 || c % group || w->dims[1] * group != c || w->dims[0] % group)
        return nfail(im, CVY_ERR_SHAPE,
                     "attribute 'group' %lld does not fit %lld channels and "
                     "W (%lld, %lld, ...)",
                     (long long)group, (long long)c, (long long)w->dims[0], (long long)w->dims[1]);
    if (b && (b->n != (size_t)w->dims[0]))
        return nfail(im, CVY_ERR_SHAPE, "B has %zu values for %lld outputs", b->n,
                     (long long)w->dims[0]);
    ia[A_GROUP] = (int32_t)group;
    int wt, bt = b ? weight_of(im, b, 1, &w->dims[0]) : 0, tx = x->t;
    size_t oc = (size_t)w->dims[0], lc = x->lm_cin;
    int pointwise = ia[A_KH] == 1 && ia[A_KW] == 1 && ia[A_SH] == 1 && ia[A_SW] == 1 && !ia[A_PT] &&
                    !ia[A_PL] && !ia[A_PB] && !ia[A_PR] && group == 1;
    if (pointwise && x->lm_w && !x->pending && x->lm_s == h * wd && x->lm_cout == (size_t)c &&
        lc * oc < lc * (size_t)c + oc * (size_t)c && lc * oc <= MAX_MAP_WEIGHTS) {
        /* a 1x1 conv of a channel map (e.g. ShuffleNet's split) reads the map's input with
         * W * M as weights; the map's own conv usually has no reader left */
        float *wm = calloc(oc * lc, sizeof *wm);
        if (!wm) return NOMEM(im);
        for (size_t o = 0; o < oc; o++)
            for (size_t k = 0; k < (size_t)c; k++) {
                float a = (float)w->v[o * (size_t)c + k];
                if (a == 0.0f) continue;
                for (size_t j = 0; j < lc; j++) wm[o * lc + j] += a * x->lm_w[k * lc + j];
            }
        uint32_t d4[4] = {(uint32_t)oc, (uint32_t)lc, 1, 1};
        wt = weight_raw(im, 4, d4, wm);
        free(wm);
        int64_t pd[3] = {(int64_t)lc, h, wd};
        tx = emit_reshape(im, x->lm_src, 3, pd);
        if (tx < 0) return check_emit(im, tx);
    } else {
        wt = weight_of(im, w, 0, NULL);
    }
    if (wt < 0 || bt < 0) return check_emit(im, wt < 0 ? wt : bt);
    int ins[3] = {tx, wt, bt};
    int64_t od[MAXR];
    memcpy(od, x->dims, sizeof od);
    int64_t oh, ow;
    window_out(ia, 0, h, wd, &oh, &ow);
    if (oh < 1 || ow < 1) return nfail(im, CVY_ERR_SHAPE, "kernel larger than the padded input");
    od[x->rank - 3] = w->dims[0];
    od[x->rank - 2] = oh;
    od[x->rank - 1] = ow;
    return set_out(im, 0, emit(im, OP_CONV, b ? 3 : 2, ins, ia, NULL), x->rank, od);
}

static cvy_status op_pool(imp *im, oval **in, int nin)
{
    int avg = !strcmp(im->node->op_type, "AveragePool");
    cvy_status s = check_attrs(im, avg ? "auto_pad ceil_mode count_include_pad kernel_shape "
                                         "pads strides dilations"
                                       : "auto_pad ceil_mode dilations kernel_shape pads "
                                         "storage_order strides");
    oval *x = in[0];
    if (s == CVY_OK && (!x || x->kind != V_ACT))
        return nfail(im, CVY_ERR_UNSUPPORTED, "input X must be computed from the graph input");
    if (s == CVY_OK && !im->one_d && x->rank - im->bo == 2) return one_d(im, in, nin, op_pool);
    if (s == CVY_OK) s = need_image(im, x);
    if (s != CVY_OK) return s;
    if (im->node->n_output > 1 && *im->node->output[1])
        return nfail(im, CVY_ERR_UNSUPPORTED, "output 'Indices' is not supported");
    int ceil_mode = (int)attr_i(im, "ceil_mode", 0), cip = (int)attr_i(im, "count_include_pad", 0);
    if (attr_i(im, "storage_order", 0) != 0)
        return nfail(im, CVY_ERR_UNSUPPORTED, "attribute 'storage_order' 1");
    int32_t ia[16] = {0};
    if ((s = spatial_attrs(im, x, 0, 0, ia)) != CVY_OK) return s;
    /* a pending zero Pad folds into an average pool that counts the padding */
    if (x->pending) {
        int own = ia[A_PT] || ia[A_PL] || ia[A_PB] || ia[A_PR];
        if (!(avg && (cip || !own) && !ceil_mode && fold_pad(x, ia)) &&
            (s = materialize(im, x)) != CVY_OK)
            return s;
        if (x->pending) cip = 1;
    }
    int64_t h, w;
    unpadded_hw(x, &h, &w);
    if (avg && (ia[A_DH] != 1 || ia[A_DW] != 1))
        return nfail(im, CVY_ERR_UNSUPPORTED, "attribute 'dilations' of AveragePool");
    ia[A_CEIL] = ceil_mode;
    ia[A_COUNT_PAD] = avg ? cip : 0;
    int64_t od[MAXR], oh, ow;
    memcpy(od, x->dims, sizeof od);
    window_out(ia, ceil_mode, h, w, &oh, &ow);
    if (oh < 1 || ow < 1) return nfail(im, CVY_ERR_SHAPE, "kernel larger than the padded input");
    od[x->rank - 2] = oh;
    od[x->rank - 1] = ow;
    return set_out(im, 0, emit(im, avg ? OP_AVGPOOL : OP_MAXPOOL, 1, &x->t, ia, NULL), x->rank, od);
}

/* Mean (or max, when max is set) over per-image dims [from, r) of x, keeping them as 1s:
 * a view (P, 1, S) and GlobalAveragePool, or a MaxPool whose window is the whole map. */
static cvy_status emit_reduce_suffix(imp *im, oval *x, int from, int max, int *t_out, int64_t *od)
{
    int r = x->rank, bo = im->bo;
    int64_t p = (int64_t)prod(x->dims, bo, from), sz = (int64_t)prod(x->dims, from, r);
    int t = x->t, view = !(r - bo == 3 && from == r - 2);
    int64_t kh = view ? 1 : x->dims[r - 2], kw = view ? sz : x->dims[r - 1];
    if (view) {
        int64_t pd[3] = {p, 1, sz};
        t = emit_reshape(im, t, 3, pd);
        if (t < 0) return check_emit(im, t);
    }
    if (max) {
        if (kh > 4096 || kw > 4096)
            return nfail(im, CVY_ERR_UNSUPPORTED, "a %lldx%lld max window is too large",
                         (long long)kh, (long long)kw);
        int32_t ia[16] = {0};
        ia[A_KH] = (int32_t)kh;
        ia[A_KW] = (int32_t)kw;
        ia[A_SH] = ia[A_SW] = ia[A_DH] = ia[A_DW] = 1;
        t = emit(im, OP_MAXPOOL, 1, &t, ia, NULL);
    } else {
        t = emit(im, OP_GLOBALAVGPOOL, 1, &t, NULL, NULL);
    }
    if (t < 0) return NOMEM(im);
    memcpy(od, x->dims, sizeof(int64_t) * MAXR);
    for (int i = from; i < r; i++) od[i] = 1;
    if (view) {
        t = emit_reshape(im, t, r - bo, od + bo);
        if (t < 0) return check_emit(im, t);
    }
    *t_out = t;
    return CVY_OK;
}

static cvy_status op_gap(imp *im, oval **in, int nin)
{
    oval *x;
    cvy_status s = check_attrs(im, "");
    if (s == CVY_OK) s = need_act(im, in, nin, 0, &x);
    if (s != CVY_OK) return s;
    if (x->rank - im->bo < 2)
        return nfail(im, CVY_ERR_UNSUPPORTED, "input needs channels and spatial dims");
    int t;
    int64_t od[MAXR];
    int max = !strcmp(im->node->op_type, "GlobalMaxPool");
    if ((s = emit_reduce_suffix(im, x, im->bo + 1, max, &t, od)) != CVY_OK) return s;
    return set_out(im, 0, t, x->rank, od);
}

/* A linear map on the leading per-image dims of x, done as a 1x1 conv: the per-image tensor
 * is viewed as (C, 1, S) with S = the product of dims [keep, r) (unchanged), and output row o
 * (of Cout) is sum_j coef[o][j] x[src[o][j]]. rows gives, per output row, n sources. */
typedef struct lmap {
    size_t cin, cout;
    float *w; /* cout x cin */
} lmap;

static cvy_status emit_lmap(imp *im, oval *x, int keep, const lmap *lm, int out_rank,
                            const int64_t *od, int k_out)
{
    int bo = im->bo;
    int64_t s = (int64_t)prod(x->dims, keep, x->rank);
    size_t cin = lm->cin, cout = lm->cout, n;
    int src = x->t;
    /* a map of a map (e.g. the Slices after a ShuffleNet channel shuffle): one conv from
     * the first map's input, the first conv then usually has no reader left */
    float *w = NULL;
    if (x->lm_w && x->lm_s == s && x->lm_cout == cin && cvy_mul_ok(cout, x->lm_cin, &n) &&
        n <= MAX_MAP_WEIGHTS) {
        if (!(w = calloc(n ? n : 1, sizeof *w))) return NOMEM(im);
        for (size_t o = 0; o < cout; o++)
            for (size_t k = 0; k < cin; k++) {
                float a = lm->w[o * cin + k];
                if (a == 0.0f) continue;
                for (size_t j = 0; j < x->lm_cin; j++)
                    w[o * x->lm_cin + j] += a * x->lm_w[k * x->lm_cin + j];
            }
        cin = x->lm_cin;
        src = x->lm_src;
    } else {
        n = cin * cout; /* lmap_alloc checked the product */
        if (!(w = malloc((n ? n : 1) * sizeof *w))) return NOMEM(im);
        memcpy(w, lm->w, cin * cout * sizeof *w);
    }
    if (im->n_mats == im->cap_mats) { /* keep w: the output's tag points to it */
        int cap = im->cap_mats ? 2 * im->cap_mats : 16;
        float **m = realloc(im->mats, (size_t)cap * sizeof *m);
        if (!m) {
            free(w);
            return NOMEM(im);
        }
        im->mats = m;
        im->cap_mats = cap;
    }
    im->mats[im->n_mats++] = w;
    int64_t pd[3] = {(int64_t)cin, 1, s};
    int t = emit_reshape(im, src, 3, pd);
    if (t < 0) return check_emit(im, t);
    uint32_t wd[4] = {(uint32_t)cout, (uint32_t)cin, 1, 1};
    int wt = weight_raw(im, 4, wd, w);
    if (wt < 0) return NOMEM(im);
    int32_t ia[16] = {0};
    ia[A_KH] = ia[A_KW] = ia[A_SH] = ia[A_SW] = ia[A_DH] = ia[A_DW] = ia[A_GROUP] = 1;
    int ins[2] = {t, wt};
    t = emit(im, OP_CONV, 2, ins, ia, NULL);
    if (t < 0) return NOMEM(im);
    t = emit_reshape(im, t, out_rank - bo, od + bo);
    cvy_status st = set_out(im, k_out, t, out_rank, od);
    if (st != CVY_OK || (size_t)k_out >= im->node->n_output || !*im->node->output[k_out]) return st;
    oval *y = find(im, im->node->output[k_out]);
    y->lm_w = w;
    y->lm_src = src;
    y->lm_cin = cin;
    y->lm_cout = cout;
    y->lm_s = s;
    return CVY_OK;
}

static cvy_status lmap_alloc(imp *im, lmap *lm, size_t cin, size_t cout)
{
    size_t n;
    if (!cvy_mul_ok(cin, cout, &n) || n > MAX_MAP_WEIGHTS || cin > FMT_MAX_DIM ||
        cout > FMT_MAX_DIM)
        return nfail(im, CVY_ERR_UNSUPPORTED,
                     "needs a data-movement kernel the engine lacks "
                     "(a %zux%zu map is too large to run as a 1x1 conv)",
                     cout, cin);
    lm->cin = cin;
    lm->cout = cout;
    lm->w = calloc(n ? n : 1, sizeof(float));
    return lm->w ? CVY_OK : NOMEM(im);
}

/* Multi-index helpers over dims d[0..r). */
static void unravel(size_t i, const int64_t *d, int r, int64_t *idx)
{
    for (int k = r - 1; k >= 0; k--) {
        idx[k] = (int64_t)(i % (size_t)d[k]);
        i /= (size_t)d[k];
    }
}

static size_t ravel(const int64_t *idx, const int64_t *d, int r)
{
    size_t i = 0;
    for (int k = 0; k < r; k++) i = i * (size_t)d[k] + (size_t)idx[k];
    return i;
}

/* Transpose of an activation: perm must keep the batch; dims from the first moved one up to the
 * last moved one become a channel permutation. */
static cvy_status act_transpose(imp *im, oval *x, const int64_t *perm)
{
    int r = x->rank, bo = im->bo;
    if (bo && perm[0] != 0)
        return nfail(im, CVY_ERR_UNSUPPORTED, "attribute 'perm' moves the batch dim");
    int64_t od[MAXR];
    for (int i = 0; i < r; i++) od[i] = x->dims[perm[i]];
    int keep = r;
    while (keep > bo && perm[keep - 1] == keep - 1) keep--;
    /* only dims of size > 1 moving matters: otherwise it is a reshape */
    int moves = 0, last = -1;
    for (int i = bo; i < r; i++)
        if (x->dims[perm[i]] > 1) {
            if ((int)perm[i] < last) moves = 1;
            last = (int)perm[i];
        }
    if (!moves) return set_out(im, 0, emit_reshape(im, x->t, r - bo, od + bo), r, od);
    lmap lm;
    size_t c = prod(x->dims, bo, keep);
    cvy_status s = lmap_alloc(im, &lm, c, c);
    if (s != CVY_OK) return s;
    int64_t oi[MAXR], si[MAXR];
    for (size_t o = 0; o < c; o++) {
        unravel(o, od + bo, keep - bo, oi + bo);
        for (int i = bo; i < keep; i++) si[perm[i]] = oi[i];
        lm.w[o * c + ravel(si + bo, x->dims + bo, keep - bo)] = 1.0f;
    }
    s = emit_lmap(im, x, keep, &lm, r, od, 0);
    free(lm.w);
    return s;
}

/* Selection along one axis: output index j along axis takes input index sel[j]. Emitted as a
 * linear map over dims [bo, axis]. */
static cvy_status act_select(imp *im, oval *x, int axis, const int64_t *sel, int64_t nsel,
                             int k_out, int out_rank, const int64_t *od)
{
    int bo = im->bo;
    if (axis < bo) return nfail(im, CVY_ERR_UNSUPPORTED, "selects along the batch dim");
    int64_t idims[MAXR], odims[MAXR];
    memcpy(idims, x->dims, sizeof idims);
    memcpy(odims, x->dims, sizeof odims);
    odims[axis] = nsel;
    size_t cin = prod(idims, bo, axis + 1), cout = prod(odims, bo, axis + 1);
    lmap lm;
    cvy_status s = lmap_alloc(im, &lm, cin, cout);
    if (s != CVY_OK) return s;
    int64_t oi[MAXR];
    for (size_t o = 0; o < cout; o++) {
        unravel(o, odims + bo, axis + 1 - bo, oi + bo);
        oi[axis] = sel[oi[axis]];
        lm.w[o * cin + ravel(oi + bo, idims + bo, axis + 1 - bo)] = 1.0f;
    }
    s = emit_lmap(im, x, axis + 1, &lm, out_rank, od, k_out);
    free(lm.w);
    return s;
}

static cvy_status op_act(imp *im, oval **in, int nin)
{
    const char *op = im->node->op_type;
    oval *x;
    cvy_status s = need_act(im, in, nin, 0, &x);
    if (s != CVY_OK) return s;
    float fa[8] = {0};
    uint32_t code;
    if (!strcmp(op, "Relu")) {
        code = OP_RELU;
        s = check_attrs(im, "");
    } else if (!strcmp(op, "Sigmoid")) {
        code = OP_SIGMOID;
        s = check_attrs(im, "");
    } else if (!strcmp(op, "HardSwish")) {
        code = OP_HARDSWISH;
        s = check_attrs(im, "");
    } else if (!strcmp(op, "LeakyRelu")) {
        code = OP_LEAKYRELU;
        s = check_attrs(im, "alpha");
        fa[0] = attr_f(im, "alpha", 0.01f);
    } else if (!strcmp(op, "HardSigmoid")) {
        code = OP_HARDSIGMOID;
        s = check_attrs(im, "alpha beta");
        fa[0] = attr_f(im, "alpha", 0.2f);
        fa[1] = attr_f(im, "beta", 0.5f);
    } else { /* Clip */
        code = OP_CLIP;
        s = check_attrs(im, "min max");
        fa[0] = attr_f(im, "min", -INFINITY);
        fa[1] = attr_f(im, "max", INFINITY);
        for (int k = 1; s == CVY_OK && k < 3 && k < nin; k++) {
            oval *c;
            if (!in[k]) continue;
            if ((s = need_const(im, in, nin, k, k == 1 ? "min" : "max", &c)) != CVY_OK) break;
            if (c->n != 1)
                return nfail(im, CVY_ERR_SHAPE, "input %s must be a scalar",
                             k == 1 ? "min" : "max");
            fa[k - 1] = (float)c->v[0];
        }
    }
    if (s != CVY_OK) return s;
    return set_out(im, 0, emit(im, code, 1, &x->t, NULL, fa), x->rank, x->dims);
}

/* Binary op between activation x and constant c (x op c, or c op x when c_first). */
static cvy_status binary_const(imp *im, const char *op, oval *x, oval *c, int c_first)
{
    int bo = im->bo, r = x->rank;
    int cr = c->rank;
    int64_t cd[MAXR];
    memcpy(cd, c->dims, sizeof cd);
    int off = 0;
    while (cr - off > r - bo && cd[off] == 1) off++;
    if (cr - off > r - bo)
        return nfail(im, CVY_ERR_UNSUPPORTED,
                     "constant '%.60s' would broadcast over the batch "
                     "(rank %d against %d dims per image)",
                     c->name, cr, r - bo);
    for (int i = 0; i < cr - off; i++) {
        int64_t xd = x->dims[r - (cr - off) + i];
        if (cd[off + i] != 1 && cd[off + i] != xd)
            return nfail(im, CVY_ERR_UNSUPPORTED,
                         "constant '%.60s' broadcasts the activation "
                         "to a larger shape",
                         c->name);
    }
    /* the constant with transformed values */
    double *tv = malloc((c->n ? c->n : 1) * sizeof *tv);
    if (!tv) return NOMEM(im);
    int code = OP_ADD, neg_x = 0;
    for (size_t i = 0; i < c->n; i++) {
        double v = c->v[i];
        if (!strcmp(op, "Add"))
            tv[i] = v;
        else if (!strcmp(op, "Mul"))
            tv[i] = v, code = OP_MUL;
        else if (!strcmp(op, "Sub"))
            tv[i] = c_first ? v : -v, neg_x = c_first;
        else
            tv[i] = 1.0 / v, code = OP_MUL; /* Div x / c */
    }
    if (!strcmp(op, "Div") && c_first) {
        free(tv);
        return nfail(im, CVY_ERR_UNSUPPORTED, "division by an activation");
    }
    oval tmp = *c;
    tmp.v = tv;
    int wt = weight_of(im, &tmp, cr - off, cd + off);
    free(tv);
    if (wt < 0) return check_emit(im, wt);
    int t = x->t;
    if (neg_x) { /* c - x = x * -1 + c */
        float m1 = -1.0f;
        int w1 = weight_raw(im, 0, NULL, &m1);
        int ins[2] = {t, w1};
        if (w1 < 0 || (t = emit(im, OP_MUL, 2, ins, NULL, NULL)) < 0) return NOMEM(im);
    }
    int ins[2] = {t, wt};
    return set_out(im, 0, emit(im, (uint32_t)code, 2, ins, NULL, NULL), r, x->dims);
}

/* a op b for two values (at least one an activation); registers output 0. */
static cvy_status binary(imp *im, const char *op, oval *a, oval *b)
{
    if (a->kind == V_CONST && b->kind == V_CONST)
        return nfail(im, CVY_ERR_INTERNAL, "binary of two constants");
    if (a->kind == V_CONST) return binary_const(im, op, b, a, 1);
    if (b->kind == V_CONST) return binary_const(im, op, a, b, 0);
    cvy_status s = materialize(im, a);
    if (s == CVY_OK) s = materialize(im, b);
    if (s != CVY_OK) return s;
    if (a->rank != b->rank)
        return nfail(im, CVY_ERR_UNSUPPORTED, "activations of rank %d and %d", a->rank, b->rank);
    int r;
    int64_t od[MAXR];
    if (!bcast(a, b, &r, od)) return nfail(im, CVY_ERR_SHAPE, "shapes do not broadcast");
    if (im->bo && (a->dims[0] != b->dims[0]))
        return nfail(im, CVY_ERR_UNSUPPORTED, "broadcasts over the batch dim");
    if (!strcmp(op, "Div")) return nfail(im, CVY_ERR_UNSUPPORTED, "division by an activation");
    int tb = b->t;
    if (!strcmp(op, "Sub")) {
        float m1 = -1.0f;
        int w1 = weight_raw(im, 0, NULL, &m1);
        int ins[2] = {tb, w1};
        if (w1 < 0 || (tb = emit(im, OP_MUL, 2, ins, NULL, NULL)) < 0) return NOMEM(im);
    }
    int ins[2] = {a->t, tb};
    return set_out(im, 0, emit(im, !strcmp(op, "Mul") ? OP_MUL : OP_ADD, 2, ins, NULL, NULL), r,
                   od);
}

static cvy_status op_binary(imp *im, oval **in, int nin)
{
    cvy_status s = check_attrs(im, "");
    if (s != CVY_OK) return s;
    if (nin != 2 || !in[0] || !in[1]) return nfail(im, CVY_ERR_FORMAT, "needs two inputs");
    return binary(im, im->node->op_type, in[0], in[1]);
}

/* Sum / Mean of n inputs: a chain of Adds (then a Mul by 1/n). */
static cvy_status op_sum(imp *im, oval **in, int nin)
{
    cvy_status s = check_attrs(im, "");
    if (s != CVY_OK) return s;
    int first = -1;
    for (int k = 0; k < nin && first < 0; k++)
        if (in[k] && in[k]->kind == V_ACT) first = k;
    if (first < 0) return nfail(im, CVY_ERR_UNSUPPORTED, "all inputs are constants");
    oval cur = *in[first];
    const char *out = im->node->output[0];
    for (int k = 0; k < nin; k++) {
        if (k == first) continue;
        if (!in[k]) return nfail(im, CVY_ERR_FORMAT, "input %d is missing", k);
        oval other = *find(im, im->node->input[k]);
        if ((s = binary(im, "Add", &cur, &other)) != CVY_OK) return s;
        cur = *find(im, out);
    }
    if (!strcmp(im->node->op_type, "Mean") && nin > 1) {
        double inv = 1.0 / nin;
        oval c = {.name = "1/n", .kind = V_CONST, .rank = 0, .v = &inv, .n = 1};
        return binary(im, "Mul", &cur, &c);
    }
    return nin == 1
               ? set_out(im, 0, emit(im, OP_IDENTITY, 1, &cur.t, NULL, NULL), cur.rank, cur.dims)
               : CVY_OK;
}

/* PRelu(x, slope) = relu(x) + (-slope) * relu(-x), exact for finite x. */
static cvy_status op_prelu(imp *im, oval **in, int nin)
{
    cvy_status s = check_attrs(im, "");
    oval *x, *slope;
    if (s == CVY_OK) s = need_act(im, in, nin, 0, &x);
    if (s == CVY_OK) s = need_const(im, in, nin, 1, "slope", &slope);
    if (s != CVY_OK) return s;
    oval xv = *x, sv = *slope;
    double *neg = malloc((sv.n ? sv.n : 1) * sizeof *neg);
    if (!neg) return NOMEM(im);
    for (size_t i = 0; i < sv.n; i++) neg[i] = -sv.v[i];
    sv.v = neg;
    float m1 = -1.0f;
    int w1 = weight_raw(im, 0, NULL, &m1);
    int ins[2] = {xv.t, w1};
    int pos = emit(im, OP_RELU, 1, &xv.t, NULL, NULL);
    int t = w1 < 0 || pos < 0 ? -1 : emit(im, OP_MUL, 2, ins, NULL, NULL);
    if (t >= 0) t = emit(im, OP_RELU, 1, &t, NULL, NULL);
    if (t < 0) {
        free(neg);
        return NOMEM(im);
    }
    oval nx = xv; /* relu(-x), then times -slope */
    nx.t = t;
    nx.lm_w = NULL;
    s = binary(im, "Mul", &nx, &sv);
    free(neg);
    if (s != CVY_OK) return s;
    oval prod_v = *find(im, im->node->output[0]), pv = xv;
    pv.t = pos;
    pv.lm_w = NULL;
    return binary(im, "Add", &pv, &prod_v);
}

/* A constant as an activation (the engine's Concat reads activations only): the graph input
 * averaged to one value m per item, then a Gemm 0 * m + c. Exact for finite inputs. The
 * constant must not vary over the batch. Returns the tensor, or an error. */
static cvy_status const_as_act(imp *im, const oval *c, int *t_out)
{
    int bo = im->bo;
    if (c->rank - bo < 1 || c->rank - bo > 4 || (bo && c->dims[0] != 1))
        return nfail(im, CVY_ERR_UNSUPPORTED,
                     "constant input '%.60s' of rank %d cannot be one "
                     "item's data%s",
                     c->name, c->rank, bo ? " (it must have batch dim 1)" : "");
    size_t n = prod(c->dims, bo, c->rank);
    int64_t pd[3] = {1, 1, (int64_t)im->in_size};
    int t = emit_reshape(im, (int)im->m->input, 3, pd);
    if (t >= 0) t = emit(im, OP_GLOBALAVGPOOL, 1, &t, NULL, NULL);
    float *z = calloc(n ? n : 1, sizeof *z);
    if (!z) return NOMEM(im);
    uint32_t wd[2] = {1, (uint32_t)n};
    int wt = t >= 0 ? weight_raw(im, 2, wd, z) : -1;
    free(z);
    int64_t bd[1] = {(int64_t)n};
    int bt = wt >= 0 ? weight_of(im, c, 1, bd) : -1;
    float fa[8] = {1.0f, 1.0f};
    int ins[3] = {t, wt, bt};
    if (bt >= 0) t = emit(im, OP_GEMM, 3, ins, NULL, fa);
    if (bt >= 0 && t >= 0) t = emit_reshape(im, t, c->rank - bo, c->dims + bo);
    if (bt < 0 || t < 0) return check_emit(im, bt < 0 ? bt : t);
    *t_out = t;
    return CVY_OK;
}

static cvy_status op_concat(imp *im, oval **in, int nin)
{
    cvy_status s = check_attrs(im, "axis");
    if (s != CVY_OK) return s;
    oval *x0 = NULL;
    for (int k = 0; k < nin && !x0; k++)
        if (in[k] && in[k]->kind == V_ACT) x0 = in[k];
    if (!x0) return nfail(im, CVY_ERR_INTERNAL, "no activation input");
    int r = x0->rank, axis = norm_axis(attr_i(im, "axis", 1), r);
    if (axis < 0) return nfail(im, CVY_ERR_FORMAT, "attribute 'axis' out of range");
    if (axis < im->bo) return nfail(im, CVY_ERR_UNSUPPORTED, "attribute 'axis' is the batch");
    int64_t od[MAXR];
    memcpy(od, x0->dims, sizeof od);
    od[axis] = 0;
    int ts[64] = {0}, nt = 0;
    for (int k = 0; k < nin; k++) {
        oval *x = in[k];
        if (!x) return nfail(im, CVY_ERR_FORMAT, "input %d is missing", k);
        if (x->kind == V_ACT && (s = materialize(im, x)) != CVY_OK) return s;
        if (x->rank != r) return nfail(im, CVY_ERR_SHAPE, "inputs of different rank");
        for (int d = 0; d < r; d++)
            if (d != axis && x->dims[d] != x0->dims[d])
                return nfail(im, CVY_ERR_SHAPE, "input %d differs in dim %d", k, d);
        od[axis] += x->dims[axis];
        if (nt == 64) return nfail(im, CVY_ERR_UNSUPPORTED, "more than 64 inputs");
        if (x->kind == V_CONST) {
            if ((s = const_as_act(im, x, &ts[nt++])) != CVY_OK) return s;
        } else {
            ts[nt++] = x->t;
        }
    }
    int32_t ia[16] = {axis - im->bo};
    if (nt == 1) return set_out(im, 0, emit(im, OP_IDENTITY, 1, ts, NULL, NULL), r, od);
    /* the engine concatenates up to 6 inputs: chain */
    int t = emit(im, OP_CONCAT, nt < 6 ? nt : 6, ts, ia, NULL);
    for (int k = 6; t >= 0 && k < nt; k += 5) {
        int g[6] = {t}, n = 1;
        for (int j = k; j < nt && n < 6; j++) g[n++] = ts[j];
        t = emit(im, OP_CONCAT, n, g, ia, NULL);
    }
    return set_out(im, 0, t, r, od);
}

static cvy_status reshape_to(imp *im, oval *x, int r, const int64_t *od)
{
    if (im->bo && (r < 1 || od[0] != x->dims[0]))
        return nfail(im, CVY_ERR_UNSUPPORTED, "changes the batch dim (%lld to %lld)",
                     (long long)x->dims[0], r ? (long long)od[0] : 0LL);
    if (prod(od, 0, r) != prod(x->dims, 0, x->rank))
        return nfail(im, CVY_ERR_SHAPE, "reshape from %zu to %zu elements",
                     prod(x->dims, 0, x->rank), prod(od, 0, r));
    oval tag = *x; /* a reshape keeps the flat layout: a map's tag stays valid */
    cvy_status s = set_out(im, 0, emit_reshape(im, x->t, r - im->bo, od + im->bo), r, od);
    if (s != CVY_OK || !tag.lm_w) return s;
    oval *y = find(im, im->node->output[0]);
    y->lm_w = tag.lm_w;
    y->lm_src = tag.lm_src;
    y->lm_cin = tag.lm_cin;
    y->lm_cout = tag.lm_cout;
    y->lm_s = tag.lm_s;
    return CVY_OK;
}

/* Resolves an ONNX Reshape target (0 = copy, -1 = infer) against dims d. */
static cvy_status reshape_dims(imp *im, const int64_t *d, int r, const int64_t *sh, int n,
                               int allowzero, int64_t *od)
{
    size_t total = prod(d, 0, r), known = 1;
    int infer = -1;
    if (n > MAXR) return nfail(im, CVY_ERR_UNSUPPORTED, "shape of rank %d", n);
    for (int i = 0; i < n; i++) {
        od[i] = sh[i];
        if (sh[i] == 0 && !allowzero) {
            if (i >= r) return nfail(im, CVY_ERR_SHAPE, "shape copies dim %d of rank %d", i, r);
            od[i] = d[i];
        }
        if (od[i] == -1) {
            if (infer >= 0) return nfail(im, CVY_ERR_SHAPE, "shape has two -1");
            infer = i;
        } else if (od[i] < 1) {
            return nfail(im, CVY_ERR_UNSUPPORTED, "shape dim %d = %lld", i, (long long)od[i]);
        } else {
            known *= (size_t)od[i];
        }
    }
    if (infer >= 0) {
        if (known == 0 || total % known) return nfail(im, CVY_ERR_SHAPE, "cannot infer -1");
        od[infer] = (int64_t)(total / known);
    } else if (known != total) {
        return nfail(im, CVY_ERR_SHAPE, "reshape from %zu to %zu elements", total, known);
    }
    return CVY_OK;
}

static cvy_status op_reshape(imp *im, oval **in, int nin)
{
    cvy_status s = check_attrs(im, "allowzero shape");
    oval *x = in[0];
    int64_t sh[MAXR + 1], od[MAXR];
    int n = s == CVY_OK ? ints_in_or_attr(im, in, nin, 1, "shape", sh, MAXR + 1) : 0;
    if (s != CVY_OK) return s;
    if (n == -2)
        return nfail(im, CVY_ERR_UNSUPPORTED,
                     "input 'shape' is not a constant "
                     "(it could not be folded for the fixed input size)");
    if (n < 0) return nfail(im, CVY_ERR_FORMAT, "input 'shape' is missing");
    if ((s = reshape_dims(im, x->dims, x->rank, sh, n, (int)attr_i(im, "allowzero", 0), od)))
        return s;
    if (x->kind == V_CONST) {
        oval *c = add_const(im, im->node->output[0], n, od, x->is_int);
        if (!c) return NOMEM(im);
        x = find(im, im->node->input[0]);
        memcpy(c->v, x->v, x->n * sizeof(double));
        return CVY_OK;
    }
    if ((s = need_act(im, in, nin, 0, &x)) != CVY_OK) return s;
    return reshape_to(im, x, n, od);
}

static cvy_status op_flatten(imp *im, oval **in, int nin)
{
    cvy_status s = check_attrs(im, "axis");
    oval *x;
    if (s == CVY_OK) s = need_act(im, in, nin, 0, &x);
    if (s != CVY_OK) return s;
    int64_t a = attr_i(im, "axis", 1);
    if (a < 0) a += x->rank;
    if (a < 0 || a > x->rank) return nfail(im, CVY_ERR_FORMAT, "attribute 'axis' out of range");
    int64_t od[2] = {(int64_t)prod(x->dims, 0, (int)a), (int64_t)prod(x->dims, (int)a, x->rank)};
    if (im->bo && a == 1) return set_out(im, 0, emit(im, OP_FLATTEN, 1, &x->t, NULL, NULL), 2, od);
    return reshape_to(im, x, 2, od);
}

static cvy_status op_squeeze(imp *im, oval **in, int nin, int un)
{
    cvy_status s = check_attrs(im, "axes");
    if (s != CVY_OK) return s;
    oval *x = in[0];
    int64_t axes[MAXR];
    int na = ints_in_or_attr(im, in, nin, 1, "axes", axes, MAXR);
    if (na == -2) return nfail(im, CVY_ERR_UNSUPPORTED, "input 'axes' is not a constant");
    int r = x->rank, orank = un ? r + (na > 0 ? na : 0) : r;
    if (na > MAXR || orank > MAXR) return nfail(im, CVY_ERR_UNSUPPORTED, "rank above %d", MAXR);
    char mark[MAXR] = {0};
    int64_t od[MAXR];
    int on = 0;
    if (un) {
        if (na < 0) return nfail(im, CVY_ERR_FORMAT, "attribute 'axes' is missing");
        for (int i = 0; i < na; i++) {
            int a = norm_axis(axes[i], orank);
            if (a < 0 || mark[a]) return nfail(im, CVY_ERR_FORMAT, "attribute 'axes' invalid");
            mark[a] = 1;
        }
        for (int i = 0, k = 0; i < orank; i++) od[on++] = mark[i] ? 1 : x->dims[k++];
    } else {
        for (int i = 0; i < (na < 0 ? 0 : na); i++) {
            int a = norm_axis(axes[i], r);
            if (a < 0 || x->dims[a] != 1)
                return nfail(im, CVY_ERR_FORMAT, "attribute 'axes': axis %lld is not of size 1",
                             (long long)axes[i]);
            mark[a] = 1;
        }
        for (int i = 0; i < r; i++)
            if (!(na < 0 ? x->dims[i] == 1 && !(im->bo && i == 0 && x->kind == V_ACT) : mark[i]))
                od[on++] = x->dims[i];
    }
    if (x->kind == V_CONST) {
        oval *c = add_const(im, im->node->output[0], on, od, x->is_int);
        if (!c) return NOMEM(im);
        x = find(im, im->node->input[0]);
        memcpy(c->v, x->v, x->n * sizeof(double));
        return CVY_OK;
    }
    if ((s = need_act(im, in, nin, 0, &x)) != CVY_OK) return s;
    return reshape_to(im, x, on, od);
}

static cvy_status op_gemm(imp *im, oval **in, int nin)
{
    int mm = !strcmp(im->node->op_type, "MatMul");
    cvy_status s = check_attrs(im, mm ? "" : "alpha beta transA transB broadcast");
    oval *x, *w, *b = NULL;
    if (s == CVY_OK) s = need_act(im, in, nin, 0, &x);
    if (s == CVY_OK) s = need_const(im, in, nin, 1, "B", &w);
    if (s == CVY_OK && !mm && nin > 2 && in[2]) s = need_const(im, in, nin, 2, "C", &b);
    if (s != CVY_OK) return s;
    if (!mm && attr_i(im, "transA", 0))
        return nfail(im, CVY_ERR_UNSUPPORTED, "attribute 'transA' 1 (A is an activation)");
    int transb = mm ? 0 : (int)attr_i(im, "transB", 0);
    float fa[8] = {mm ? 1.0f : attr_f(im, "alpha", 1.0f), mm ? 1.0f : attr_f(im, "beta", 1.0f)};
    int r = x->rank;
    if (w->rank != 2) return nfail(im, CVY_ERR_UNSUPPORTED, "B must be 2-D, has %d dims", w->rank);
    if (r - im->bo != 1 && prod(x->dims, im->bo, r - 1) != 1)
        return nfail(im, CVY_ERR_UNSUPPORTED,
                     "A has %d dims per image; only one row per image "
                     "is supported",
                     r - im->bo);
    int64_t k = transb ? w->dims[1] : w->dims[0], nout = transb ? w->dims[0] : w->dims[1];
    if (x->dims[r - 1] != k)
        return nfail(im, CVY_ERR_SHAPE, "A has %lld columns, B expects %lld",
                     (long long)x->dims[r - 1], (long long)k);
    if (b && b->n != 1 && (b->n != (size_t)nout || b->dims[b->rank - 1] != nout))
        return nfail(im, CVY_ERR_UNSUPPORTED,
                     "C of shape %zu values: only (N) or scalar bias "
                     "(one row per batch)",
                     b->n);
    int wt = weight_of(im, w, 0, NULL);
    int64_t bd[1] = {(int64_t)(b ? b->n : 1)};
    int bt = b ? weight_of(im, b, 1, bd) : 0;
    if (wt < 0 || bt < 0) return check_emit(im, wt < 0 ? wt : bt);
    int32_t ia[16] = {transb};
    int ins[3] = {x->t, wt, bt};
    int t = emit(im, OP_GEMM, b ? 3 : 2, ins, ia, fa);
    int64_t od[MAXR];
    memcpy(od, x->dims, sizeof od);
    od[r - 1] = nout;
    if (t >= 0 && r - im->bo != 1) t = emit_reshape(im, t, r - im->bo, od + im->bo);
    return set_out(im, 0, t, r, od);
}

static cvy_status op_bn(imp *im, oval **in, int nin)
{
    cvy_status s = check_attrs(im, "epsilon momentum spatial is_test training_mode "
                                   "consumed_inputs");
    oval *x, *c[4];
    static const char *names[4] = {"scale", "B", "mean", "var"};
    if (s == CVY_OK) s = need_act(im, in, nin, 0, &x);
    for (int k = 0; s == CVY_OK && k < 4; k++) s = need_const(im, in, nin, k + 1, names[k], &c[k]);
    if (s != CVY_OK) return s;
    if (attr_i(im, "training_mode", 0) || attr_i(im, "spatial", 1) != 1)
        return nfail(im, CVY_ERR_UNSUPPORTED, "attribute 'training_mode'/'spatial'");
    for (size_t k = 1; k < im->node->n_output; k++)
        if (*im->node->output[k])
            return nfail(im, CVY_ERR_UNSUPPORTED, "training outputs are not supported");
    if (x->rank - im->bo < 1) return nfail(im, CVY_ERR_SHAPE, "no channel dim");
    int64_t ch = x->dims[im->bo];
    if (im->bo != 1) return nfail(im, CVY_ERR_UNSUPPORTED, "channels are not dim 1");
    int ins[5] = {x->t};
    for (int k = 0; k < 4; k++) {
        if (c[k]->n != (size_t)ch)
            return nfail(im, CVY_ERR_SHAPE, "input %s has %zu values for %lld channels", names[k],
                         c[k]->n, (long long)ch);
        if ((ins[k + 1] = weight_of(im, c[k], 1, &ch)) < 0) return check_emit(im, ins[k + 1]);
    }
    float fa[8] = {attr_f(im, "epsilon", 1e-5f)};
    return set_out(im, 0, emit(im, OP_BATCHNORM, 5, ins, NULL, fa), x->rank, x->dims);
}

static cvy_status op_softmax(imp *im, oval **in, int nin)
{
    cvy_status s = check_attrs(im, "axis");
    oval *x;
    if (s == CVY_OK) s = need_act(im, in, nin, 0, &x);
    if (s != CVY_OK) return s;
    int r = x->rank, bo = im->bo;
    int axis = norm_axis(attr_i(im, "axis", im->opset >= 13 ? -1 : 1), r);
    if (axis < 0) return nfail(im, CVY_ERR_FORMAT, "attribute 'axis' out of range");
    int32_t ia[16] = {0};
    if (im->opset >= 13 || axis == r - 1) {
        if (axis < bo) return nfail(im, CVY_ERR_UNSUPPORTED, "attribute 'axis' is the batch");
        ia[0] = axis - bo;
        return set_out(im, 0, emit(im, OP_SOFTMAX, 1, &x->t, ia, NULL), r, x->dims);
    }
    /* opset < 13: softmax over the flattened dims [axis, r) */
    if (axis < bo) return nfail(im, CVY_ERR_UNSUPPORTED, "attribute 'axis' is the batch");
    int64_t pd[MAXR];
    int nd = 0;
    for (int i = bo; i < axis; i++) pd[nd++] = x->dims[i];
    pd[nd++] = (int64_t)prod(x->dims, axis, r);
    int t = emit_reshape(im, x->t, nd, pd);
    ia[0] = nd - 1;
    if (t >= 0) t = emit(im, OP_SOFTMAX, 1, &t, ia, NULL);
    if (t >= 0) t = emit_reshape(im, t, r - bo, x->dims + bo);
    return set_out(im, 0, t, r, x->dims);
}

static cvy_status op_alias(imp *im, oval **in, int nin)
{
    int drop = !strcmp(im->node->op_type, "Dropout");
    cvy_status s = check_attrs(im, drop ? "ratio seed is_test" : "");
    if (s != CVY_OK) return s;
    if (nin < 1 || !in[0]) return nfail(im, CVY_ERR_FORMAT, "input missing");
    if (drop && nin > 2 && in[2]) {
        if (in[2]->kind != V_CONST || in[2]->n != 1)
            return nfail(im, CVY_ERR_UNSUPPORTED, "input 'training_mode' must be a constant");
        if (in[2]->v[0] != 0) return nfail(im, CVY_ERR_UNSUPPORTED, "training_mode is true");
    }
    if (drop && im->node->n_output > 1 && *im->node->output[1])
        return nfail(im, CVY_ERR_UNSUPPORTED, "output 'mask' is not supported");
    oval src = *in[0];
    oval *v = add_val(im, im->node->output[0], src.kind);
    if (!v) return NOMEM(im);
    char *name = v->name;
    *v = src;
    v->name = name;
    if (src.kind == V_CONST) {
        v->v = malloc((src.n ? src.n : 1) * sizeof(double));
        if (!v->v) return NOMEM(im);
        memcpy(v->v, src.v, src.n * sizeof(double));
    }
    return CVY_OK;
}

static cvy_status op_pad(imp *im, oval **in, int nin)
{
    cvy_status s = check_attrs(im, "mode pads value");
    if (s != CVY_OK) return s;
    if (attr(im, "mode") && !attr_is(im, "mode", "constant"))
        return nfail(im, CVY_ERR_UNSUPPORTED, "attribute 'mode': only 'constant' is supported");
    oval *x;
    if ((s = need_act(im, in, nin, 0, &x)) != CVY_OK) return s;
    int r = x->rank;
    int64_t p[2 * MAXR];
    int np = ints_in_or_attr(im, in, nin, 1, "pads", p, 2 * MAXR);
    if (np == -2) return nfail(im, CVY_ERR_UNSUPPORTED, "input 'pads' is not a constant");
    if (np != 2 * r) return nfail(im, CVY_ERR_FORMAT, "'pads' has %d values for rank %d", np, r);
    if (nin > 3 && in[3]) return nfail(im, CVY_ERR_UNSUPPORTED, "input 'axes'");
    double value = attr_f(im, "value", 0.0f);
    if (nin > 2 && in[2]) {
        if (in[2]->kind != V_CONST || in[2]->n != 1)
            return nfail(im, CVY_ERR_UNSUPPORTED, "input 'constant_value' must be a scalar");
        value = in[2]->v[0];
    }
    int64_t od[MAXR];
    for (int i = 0; i < r; i++) {
        if (p[i] < 0 || p[r + i] < 0)
            return nfail(im, CVY_ERR_UNSUPPORTED, "negative pads (cropping)");
        if (p[i] > 1024 || p[r + i] > 1024) /* checked before the narrowing to int below */
            return nfail(im, CVY_ERR_UNSUPPORTED, "pads above 1024");
        int flat_ok = r - im->bo == 2 && i == r - 1; /* (C, L): pad L */
        if ((p[i] || p[r + i]) && !flat_ok && (r - im->bo != 3 || i < r - 2))
            return nfail(im, CVY_ERR_UNSUPPORTED,
                         "pads outside the H and W of a (C, H, W) "
                         "image (or the L of a (C, L) sequence)");
        od[i] = x->dims[i] + p[i] + p[r + i];
    }
    int flat = r - im->bo == 2;
    if (r - im->bo != 3 && !flat)
        return set_out(im, 0, emit(im, OP_IDENTITY, 1, &x->t, NULL, NULL), r, od);
    int pt = flat ? 0 : (int)p[r - 2], pl = (int)p[r - 1];
    int pb = flat ? 0 : (int)p[2 * r - 2], pr = (int)p[2 * r - 1];
    int t = x->t;
    if (value != 0) { /* pad(x, v) = pad(x - v, 0) + v */
        float m = (float)-value;
        int wt = weight_raw(im, 0, NULL, &m);
        int ins[2] = {t, wt};
        if (wt < 0 || (t = emit(im, OP_ADD, 2, ins, NULL, NULL)) < 0) return NOMEM(im);
    }
    oval *v = add_act(im, im->node->output[0], r, od, t);
    if (!v) return NOMEM(im);
    v->pending = 1;
    v->pad[0] = pt;
    v->pad[1] = pl;
    v->pad[2] = pb;
    v->pad[3] = pr;
    if (value == 0) return CVY_OK;
    if ((s = materialize(im, v)) != CVY_OK) return s;
    float m = (float)value;
    int wt = weight_raw(im, 0, NULL, &m);
    int ins[2] = {v->t, wt};
    if (wt < 0 || (v->t = emit(im, OP_ADD, 2, ins, NULL, NULL)) < 0) return NOMEM(im);
    return CVY_OK;
}

static cvy_status op_reducemean(imp *im, oval **in, int nin)
{
    cvy_status s = check_attrs(im, "axes keepdims noop_with_empty_axes");
    oval *x;
    if (s == CVY_OK) s = need_act(im, in, nin, 0, &x);
    if (s != CVY_OK) return s;
    int r = x->rank, bo = im->bo;
    int64_t axes[MAXR];
    int na = ints_in_or_attr(im, in, nin, 1, "axes", axes, MAXR);
    if (na == -2) return nfail(im, CVY_ERR_UNSUPPORTED, "input 'axes' is not a constant");
    char red[MAXR] = {0};
    if (na <= 0) {
        if (na == 0 && attr_i(im, "noop_with_empty_axes", 0))
            return set_out(im, 0, emit(im, OP_IDENTITY, 1, &x->t, NULL, NULL), r, x->dims);
        for (int i = 0; i < r; i++) red[i] = 1;
    }
    for (int i = 0; i < na; i++) {
        int a = norm_axis(axes[i], r);
        if (a < 0) return nfail(im, CVY_ERR_FORMAT, "attribute 'axes' out of range");
        red[a] = 1;
    }
    if (bo && red[0] && x->dims[0] != 1)
        return nfail(im, CVY_ERR_UNSUPPORTED, "reduces over the batch dim");
    red[0] = bo ? 0 : red[0];
    int keep = (int)attr_i(im, "keepdims", 1);
    int64_t kd[MAXR], od[MAXR];
    int on = 0;
    for (int i = 0; i < r; i++) {
        kd[i] = red[i] ? 1 : x->dims[i];
        if (!red[i] || keep) od[on++] = kd[i];
    }
    if (on == 0) return nfail(im, CVY_ERR_UNSUPPORTED, "reduces to a scalar");
    /* split: a reduced suffix runs as GlobalAveragePool, the rest as a 1x1-conv average */
    int from = r;
    while (from > bo && red[from - 1]) from--;
    int t = x->t;
    oval cur = *x;
    if (from < r) {
        int64_t gd[MAXR];
        if (from == bo) { /* everything: one mean */
            int64_t pd[3] = {1, 1, (int64_t)prod(x->dims, bo, r)};
            t = emit_reshape(im, t, 3, pd);
            if (t >= 0) t = emit(im, OP_GLOBALAVGPOOL, 1, &t, NULL, NULL);
            if (t < 0) return check_emit(im, t);
            for (int i = 0; i < r; i++) gd[i] = i < bo ? x->dims[i] : 1;
        } else if ((s = emit_reduce_suffix(im, x, from, 0, &t, gd)) != CVY_OK) {
            return s;
        }
        cur.t = t;
        cur.lm_w = NULL;
        memcpy(cur.dims, gd, sizeof gd);
    }
    int any = 0, last = -1;
    for (int i = bo; i < from; i++)
        if (red[i] && cur.dims[i] > 1) any = 1, last = i;
    if (!any) return set_out(im, 0, emit_reshape(im, t, on - bo, od + bo), on, od);
    /* average over the remaining reduced axes up to 'last' */
    size_t cin = prod(cur.dims, bo, last + 1);
    int64_t md[MAXR];
    memcpy(md, cur.dims, sizeof md);
    for (int i = bo; i <= last; i++)
        if (red[i]) md[i] = 1;
    size_t cout = prod(md, bo, last + 1), n = cin / cout;
    lmap lm;
    if ((s = lmap_alloc(im, &lm, cin, cout)) != CVY_OK) return s;
    int64_t ii[MAXR];
    for (size_t j = 0; j < cin; j++) {
        unravel(j, cur.dims + bo, last + 1 - bo, ii + bo);
        for (int i = bo; i <= last; i++)
            if (red[i]) ii[i] = 0;
        lm.w[ravel(ii + bo, md + bo, last + 1 - bo) * cin + j] = (float)(1.0 / (double)n);
    }
    s = emit_lmap(im, &cur, last + 1, &lm, on, od, 0);
    free(lm.w);
    return s;
}

/* Slice / Gather / Split / Transpose: fold on constants, 1x1-conv maps on activations. */
static cvy_status op_transpose(imp *im, oval **in, int nin)
{
    cvy_status s = check_attrs(im, "perm");
    if (s != CVY_OK) return s;
    if (nin < 1 || !in[0]) return nfail(im, CVY_ERR_FORMAT, "input missing");
    oval *x = in[0];
    int r = x->rank;
    int64_t perm[MAXR];
    int np = attr_ints(im, "perm", perm, MAXR);
    if (np < 0)
        for (int i = 0; i < r; i++) perm[i] = r - 1 - i;
    else if (np != r)
        return nfail(im, CVY_ERR_FORMAT, "attribute 'perm' has %d values", np);
    char seen[MAXR] = {0};
    for (int i = 0; i < r; i++) {
        if (perm[i] < 0 || perm[i] >= r || seen[perm[i]])
            return nfail(im, CVY_ERR_FORMAT, "attribute 'perm' is not a permutation");
        seen[perm[i]] = 1;
    }
    if (x->kind == V_CONST) {
        int64_t od[MAXR];
        for (int i = 0; i < r; i++) od[i] = x->dims[perm[i]];
        oval *c = add_const(im, im->node->output[0], r, od, x->is_int);
        if (!c) return NOMEM(im);
        x = find(im, im->node->input[0]);
        int64_t oi[MAXR], si[MAXR];
        for (size_t o = 0; o < c->n; o++) {
            unravel(o, od, r, oi);
            for (int i = 0; i < r; i++) si[perm[i]] = oi[i];
            c->v[o] = x->v[ravel(si, x->dims, r)];
        }
        return CVY_OK;
    }
    if ((s = need_act(im, in, nin, 0, &x)) != CVY_OK) return s;
    return act_transpose(im, x, perm);
}

/* Selection along axis of constant x into a new constant named out. */
static cvy_status const_select(imp *im, const char *xname, int axis, const int64_t *sel,
                               int64_t nsel, const char *out, int orank, const int64_t *od)
{
    oval *x = find(im, xname);
    int64_t xd[MAXR];
    int r = x->rank;
    memcpy(xd, x->dims, sizeof xd);
    oval *c = add_const(im, out, orank, od, x->is_int);
    if (!c) return NOMEM(im);
    x = find(im, xname);
    int64_t sd[MAXR];
    memcpy(sd, xd, sizeof sd);
    sd[axis] = nsel;
    int64_t ii[MAXR];
    size_t n = prod(sd, 0, r);
    for (size_t o = 0; o < n; o++) {
        unravel(o, sd, r, ii);
        ii[axis] = sel[ii[axis]];
        c->v[o] = x->v[ravel(ii, xd, r)];
    }
    return CVY_OK;
}

static cvy_status op_gather(imp *im, oval **in, int nin)
{
    cvy_status s = check_attrs(im, "axis");
    oval *x = in[0], *idx;
    if (s == CVY_OK) s = need_const(im, in, nin, 1, "indices", &idx);
    if (s != CVY_OK) return s;
    int r = x->rank, axis = norm_axis(attr_i(im, "axis", 0), r);
    if (axis < 0) return nfail(im, CVY_ERR_FORMAT, "attribute 'axis' out of range");
    int orank = r - 1 + idx->rank;
    if (orank > MAXR) return nfail(im, CVY_ERR_UNSUPPORTED, "rank above %d", MAXR);
    int64_t od[MAXR], nsel = (int64_t)idx->n;
    int64_t *sel = malloc((idx->n ? idx->n : 1) * sizeof *sel);
    if (!sel) return NOMEM(im);
    for (size_t i = 0; i < idx->n; i++) {
        int64_t v = ival(idx->v[i]);
        if (v < 0) v += x->dims[axis];
        if (v < 0 || v >= x->dims[axis]) {
            free(sel);
            return nfail(im, CVY_ERR_SHAPE, "index %lld out of range", (long long)idx->v[i]);
        }
        sel[i] = v;
    }
    int on = 0;
    for (int i = 0; i < axis; i++) od[on++] = x->dims[i];
    for (int i = 0; i < idx->rank; i++) od[on++] = idx->dims[i];
    for (int i = axis + 1; i < r; i++) od[on++] = x->dims[i];
    if (x->kind == V_CONST)
        s = const_select(im, im->node->input[0], axis, sel, nsel, im->node->output[0], on, od);
    else if ((s = need_act(im, in, nin, 0, &x)) == CVY_OK)
        s = nsel ? act_select(im, x, axis, sel, nsel, 0, on, od)
                 : nfail(im, CVY_ERR_UNSUPPORTED, "empty indices");
    free(sel);
    return s;
}

static cvy_status op_slice(imp *im, oval **in, int nin)
{
    cvy_status s = check_attrs(im, "axes ends starts");
    if (s != CVY_OK) return s;
    oval *x = in[0];
    int r = x->rank;
    int64_t st[MAXR], en[MAXR], ax[MAXR], sp[MAXR];
    int ns = ints_in_or_attr(im, in, nin, 1, "starts", st, MAXR);
    int ne = ints_in_or_attr(im, in, nin, 2, "ends", en, MAXR);
    int na = ints_in_or_attr(im, in, nin, 3, "axes", ax, MAXR);
    int nsp = ints_in_or_attr(im, in, nin, 4, NULL, sp, MAXR);
    if (ns == -2 || ne == -2 || na == -2 || nsp == -2)
        return nfail(im, CVY_ERR_UNSUPPORTED, "starts/ends/axes/steps must be constants");
    if (ns < 0 || ns != ne || (na >= 0 && na != ns) || (nsp >= 0 && nsp != ns) || ns > r)
        return nfail(im, CVY_ERR_FORMAT, "inconsistent starts/ends/axes/steps");
    int64_t b[MAXR], e[MAXR], step[MAXR];
    for (int i = 0; i < r; i++) b[i] = 0, e[i] = x->dims[i], step[i] = 1;
    for (int i = 0; i < ns; i++) {
        int a = na >= 0 ? norm_axis(ax[i], r) : i;
        if (a < 0) return nfail(im, CVY_ERR_FORMAT, "axis out of range");
        int64_t d = x->dims[a], stp = nsp >= 0 ? sp[i] : 1;
        if (stp == 0) return nfail(im, CVY_ERR_FORMAT, "step 0");
        /* a step beyond the dim selects at most one element, as a step of the dim does;
         * clamped, the size arithmetic below cannot overflow */
        int64_t dmax = d > 0 ? d : 1;
        stp = stp > dmax ? dmax : stp < -dmax ? -dmax : stp;
        int64_t s0 = st[i], e0 = en[i];
        if (s0 < 0) s0 += d;
        if (e0 < 0) e0 += d;
        if (stp > 0) {
            s0 = s0 < 0 ? 0 : s0 > d ? d : s0;
            e0 = e0 < 0 ? 0 : e0 > d ? d : e0;
        } else {
            s0 = s0 < 0 ? -1 : s0 > d - 1 ? d - 1 : s0;
            e0 = e0 < -1 ? -1 : e0 > d - 1 ? d - 1 : e0;
        }
        b[a] = s0, e[a] = e0, step[a] = stp;
    }
    int64_t od[MAXR];
    for (int i = 0; i < r; i++) {
        int64_t n = step[i] > 0 ? (e[i] - b[i] + step[i] - 1) / step[i]
                                : (b[i] - e[i] - step[i] - 1) / -step[i];
        od[i] = n < 0 ? 0 : n;
    }
    if (x->kind == V_CONST) {
        oval *c = add_const(im, im->node->output[0], r, od, x->is_int);
        if (!c) return NOMEM(im);
        x = find(im, im->node->input[0]);
        int64_t ii[MAXR];
        for (size_t o = 0; o < c->n; o++) {
            unravel(o, od, r, ii);
            for (int i = 0; i < r; i++) ii[i] = b[i] + ii[i] * step[i];
            c->v[o] = x->v[ravel(ii, x->dims, r)];
        }
        return CVY_OK;
    }
    if ((s = need_act(im, in, nin, 0, &x)) != CVY_OK) return s;
    if (prod(od, 0, r) == 0) return nfail(im, CVY_ERR_UNSUPPORTED, "empty result");
    /* one selection per sliced axis, the last one registered */
    oval cur = *x;
    int sliced[MAXR], nsl = 0;
    for (int i = 0; i < r; i++)
        if (od[i] != x->dims[i] || b[i] != 0) sliced[nsl++] = i;
    if (nsl == 0) return set_out(im, 0, emit(im, OP_IDENTITY, 1, &x->t, NULL, NULL), r, od);
    for (int k = 0; k < nsl; k++) {
        int a = sliced[k];
        int64_t sel[4096];
        if (od[a] > 4096) return nfail(im, CVY_ERR_UNSUPPORTED, "slice of more than 4096");
        for (int64_t j = 0; j < od[a]; j++) sel[j] = b[a] + j * step[a];
        int64_t nd[MAXR];
        memcpy(nd, cur.dims, sizeof nd);
        nd[a] = od[a];
        if ((s = act_select(im, &cur, a, sel, od[a], 0, r, nd)) != CVY_OK) return s;
        oval *o = find(im, im->node->output[0]);
        cur = *o;
    }
    return CVY_OK;
}

static cvy_status op_split(imp *im, oval **in, int nin)
{
    cvy_status s = check_attrs(im, "axis split num_outputs");
    if (s != CVY_OK) return s;
    oval *x = in[0];
    int r = x->rank, axis = norm_axis(attr_i(im, "axis", 0), r);
    if (axis < 0) return nfail(im, CVY_ERR_FORMAT, "attribute 'axis' out of range");
    int no = (int)im->node->n_output;
    int64_t sz[64];
    if (no > 64) return nfail(im, CVY_ERR_UNSUPPORTED, "more than 64 outputs");
    int n = ints_in_or_attr(im, in, nin, 1, "split", sz, 64);
    if (n == -2) return nfail(im, CVY_ERR_UNSUPPORTED, "input 'split' is not a constant");
    if (n < 0) {
        if (x->dims[axis] % no) return nfail(im, CVY_ERR_SHAPE, "dim not divisible");
        for (int k = 0; k < no; k++) sz[k] = x->dims[axis] / no;
    } else if (n != no) {
        return nfail(im, CVY_ERR_FORMAT, "'split' has %d sizes for %d outputs", n, no);
    }
    int64_t off = 0;
    for (int k = 0; k < no; k++) {
        int64_t sel[4096], od[MAXR];
        if (sz[k] > 4096 || sz[k] < 0) return nfail(im, CVY_ERR_UNSUPPORTED, "split size");
        if (off + sz[k] > x->dims[axis]) return nfail(im, CVY_ERR_SHAPE, "split sizes too big");
        for (int64_t j = 0; j < sz[k]; j++) sel[j] = off + j;
        memcpy(od, x->dims, sizeof od);
        od[axis] = sz[k];
        x = find(im, im->node->input[0]);
        if (x->kind == V_CONST) {
            s = const_select(im, im->node->input[0], axis, sel, sz[k], im->node->output[k], r, od);
        } else {
            if ((s = materialize(im, x)) != CVY_OK) return s;
            oval cur = *x;
            s = act_select(im, &cur, axis, sel, sz[k], k, r, od);
        }
        if (s != CVY_OK) return s;
        off += sz[k];
    }
    return CVY_OK;
}

/* ---- pure constant operators ------------------------------------------------------------- */

static cvy_status op_constant(imp *im, oval **in, int nin)
{
    (void)in;
    (void)nin;
    const char *out = im->node->output[0];
    if (im->node->n_attribute != 1)
        return nfail(im, CVY_ERR_UNSUPPORTED, "needs exactly one value attribute");
    const Onnx__AttributeProto *a = im->node->attribute[0];
    const char *n = a->name ? a->name : "";
    oval *v = NULL;
    if (!strcmp(n, "value") && a->t) {
        cvy_status s = tensor_const(im, a->t, out, &v);
        return s;
    }
    int64_t d1 = 0;
    if (!strcmp(n, "value_float")) {
        if (!(v = add_const(im, out, 0, &d1, 0))) return NOMEM(im);
        v->v[0] = a->f;
    } else if (!strcmp(n, "value_int")) {
        if (!(v = add_const(im, out, 0, &d1, 1))) return NOMEM(im);
        v->v[0] = (double)a->i;
    } else if (!strcmp(n, "value_floats")) {
        d1 = (int64_t)a->n_floats;
        if (!(v = add_const(im, out, 1, &d1, 0))) return NOMEM(im);
        for (size_t i = 0; i < a->n_floats; i++) v->v[i] = a->floats[i];
    } else if (!strcmp(n, "value_ints")) {
        d1 = (int64_t)a->n_ints;
        if (!(v = add_const(im, out, 1, &d1, 1))) return NOMEM(im);
        for (size_t i = 0; i < a->n_ints; i++) v->v[i] = (double)a->ints[i];
    } else {
        return nfail(im, CVY_ERR_UNSUPPORTED, "attribute '%.60s' is not supported", n);
    }
    return CVY_OK;
}

static cvy_status op_shape(imp *im, oval **in, int nin)
{
    cvy_status s = check_attrs(im, "start end");
    if (s != CVY_OK) return s;
    if (nin < 1 || !in[0]) return nfail(im, CVY_ERR_FORMAT, "input missing");
    oval x = *in[0];
    int r = x.rank;
    int64_t st = attr_i(im, "start", 0), en = attr_i(im, "end", r);
    if (st < 0) st += r;
    if (en < 0) en += r;
    st = st < 0 ? 0 : st > r ? r : st;
    en = en < 0 ? 0 : en > r ? r : en;
    int64_t n = en > st ? en - st : 0;
    oval *c = add_const(im, im->node->output[0], 1, &n, 1);
    if (!c) return NOMEM(im);
    for (int64_t i = 0; i < n; i++) c->v[i] = (double)x.dims[st + i];
    return CVY_OK;
}

static cvy_status op_const_misc(imp *im, oval **in, int nin)
{
    const char *op = im->node->op_type;
    const char *out = im->node->output[0];
    if (nin == 1 && in[0]->kind == V_ACT && !strcmp(op, "Cast") &&
        attr_i(im, "to", 0) == DT_FLOAT) { /* float to float: nothing to do */
        oval src = *in[0];
        cvy_status s = materialize(im, &src);
        if (s != CVY_OK) return s;
        return set_out(im, 0, emit(im, OP_IDENTITY, 1, &src.t, NULL, NULL), src.rank, src.dims);
    }
    if (nin == 1 && in[0]->kind == V_ACT && !strcmp(op, "Neg")) { /* x * -1 */
        oval src = *in[0];
        cvy_status s = materialize(im, &src);
        float m1 = -1.0f;
        int w1 = weight_raw(im, 0, NULL, &m1);
        int ins[2] = {src.t, w1};
        if (s != CVY_OK) return s;
        if (w1 < 0) return NOMEM(im);
        return set_out(im, 0, emit(im, OP_MUL, 2, ins, NULL, NULL), src.rank, src.dims);
    }
    for (int k = 0; k < nin; k++)
        if (in[k] && in[k]->kind != V_CONST)
            return nfail(im, CVY_ERR_UNSUPPORTED,
                         "input %d ('%.60s') must be a constant (the "
                         "engine has no %s kernel)",
                         k, in[k]->name, op);
    if (nin < 1 || !in[0]) return nfail(im, CVY_ERR_FORMAT, "input missing");
    oval *x = in[0];
    if (!strcmp(op, "Cast")) {
        cvy_status s = check_attrs(im, "to saturate");
        if (s != CVY_OK) return s;
        int to = (int)attr_i(im, "to", DT_FLOAT);
        if (!dtype_size(to)) return nfail(im, CVY_ERR_UNSUPPORTED, "attribute 'to' = %d", to);
        int is_int = !(to == DT_FLOAT || to == DT_DOUBLE || to == DT_FLOAT16);
        oval *c = add_const(im, out, x->rank, x->dims, is_int);
        if (!c) return NOMEM(im);
        x = find(im, im->node->input[0]);
        for (size_t i = 0; i < x->n; i++) {
            double v = x->v[i];
            c->v[i] = to == DT_BOOL ? (v != 0) : is_int ? trunc(v) : to == DT_FLOAT ? (float)v : v;
        }
        return CVY_OK;
    }
    if (!strcmp(op, "Add") || !strcmp(op, "Sub") || !strcmp(op, "Mul") || !strcmp(op, "Div") ||
        !strcmp(op, "Pow") || !strcmp(op, "Equal") || !strcmp(op, "Less") ||
        !strcmp(op, "Greater") || !strcmp(op, "Max") || !strcmp(op, "Min")) {
        if (nin != 2 || !in[1]) return nfail(im, CVY_ERR_FORMAT, "needs two inputs");
        return fold_binary(im, op, in[0], in[1], out);
    }
    if (!strcmp(op, "Neg") || !strcmp(op, "Floor") || !strcmp(op, "Ceil") || !strcmp(op, "Sqrt") ||
        !strcmp(op, "Relu") || !strcmp(op, "Sigmoid") || !strcmp(op, "Abs") || !strcmp(op, "Not")) {
        oval *c = add_const(im, out, x->rank, x->dims, x->is_int);
        if (!c) return NOMEM(im);
        x = find(im, im->node->input[0]);
        for (size_t i = 0; i < x->n; i++) {
            double v = x->v[i];
            c->v[i] = op[0] == 'N' && op[1] == 'e' ? -v
                      : op[0] == 'F'               ? floor(v)
                      : op[0] == 'C'               ? ceil(v)
                      : op[1] == 'q'               ? sqrt(v)
                      : op[0] == 'R'               ? fmax(v, 0)
                      : op[1] == 'i'               ? 1 / (1 + exp(-v))
                      : op[0] == 'A'               ? fabs(v)
                                                   : (v == 0);
            if (!c->is_int) c->v[i] = (float)c->v[i];
        }
        return CVY_OK;
    }
    if (!strcmp(op, "ConstantOfShape")) {
        int64_t d[MAXR];
        if (x->n > MAXR) return nfail(im, CVY_ERR_UNSUPPORTED, "rank above %d", MAXR);
        for (size_t i = 0; i < x->n; i++) d[i] = ival(x->v[i]);
        int rank = (int)x->n;
        if (prod_capped(d, rank) == SIZE_MAX)
            return nfail(im, CVY_ERR_UNSUPPORTED, "a constant of more than %u values", MAX_FOLDED);
        const Onnx__AttributeProto *a = attr(im, "value");
        double val = 0;
        int is_int = 0;
        if (a && a->t) {
            oval *tv;
            cvy_status s = tensor_const(im, a->t, "", &tv);
            if (s != CVY_OK) return s;
            val = tv->n ? tv->v[0] : 0;
            is_int = tv->is_int;
        }
        oval *c = add_const(im, out, rank, d, is_int);
        if (!c) return NOMEM(im);
        for (size_t i = 0; i < c->n; i++) c->v[i] = val;
        return CVY_OK;
    }
    if (!strcmp(op, "Range")) {
        if (nin != 3 || !in[1] || !in[2]) return nfail(im, CVY_ERR_FORMAT, "needs 3 inputs");
        double st = x->v[0], lim = in[1]->v[0], d = in[2]->v[0];
        int is_int = x->is_int;
        if (d == 0) return nfail(im, CVY_ERR_FORMAT, "delta 0");
        int64_t n = (int64_t)ceil((lim - st) / d);
        if (n < 0) n = 0;
        if (n > (1 << 24)) return nfail(im, CVY_ERR_UNSUPPORTED, "range too long");
        oval *c = add_const(im, out, 1, &n, is_int);
        if (!c) return NOMEM(im);
        for (int64_t i = 0; i < n; i++) c->v[i] = st + (double)i * d;
        return CVY_OK;
    }
    if (!strcmp(op, "Expand")) { /* numpy broadcast of x to shape */
        if (nin != 2 || !in[1]) return nfail(im, CVY_ERR_FORMAT, "needs input 'shape'");
        oval shp = {.rank = (int)in[1]->n};
        if (in[1]->n > MAXR) return nfail(im, CVY_ERR_UNSUPPORTED, "rank above %d", MAXR);
        for (size_t i = 0; i < in[1]->n; i++) shp.dims[i] = ival(in[1]->v[i]);
        int r;
        int64_t od[MAXR];
        if (!bcast(x, &shp, &r, od)) return nfail(im, CVY_ERR_SHAPE, "cannot expand");
        if (prod_capped(od, r) == SIZE_MAX)
            return nfail(im, CVY_ERR_UNSUPPORTED, "expands to more than %u values", MAX_FOLDED);
        oval *c = add_const(im, out, r, od, x->is_int);
        if (!c) return NOMEM(im);
        x = find(im, im->node->input[0]);
        for (size_t o = 0; o < c->n; o++) c->v[o] = x->v[bidx(x, r, od, o)];
        return CVY_OK;
    }
    if (!strcmp(op, "Where")) { /* cond ? a : b, broadcast */
        if (nin != 3 || !in[1] || !in[2]) return nfail(im, CVY_ERR_FORMAT, "needs 3 inputs");
        oval ab = {.rank = 0};
        int r, r2;
        int64_t d1[MAXR], od[MAXR];
        if (!bcast(in[1], in[2], &r, d1)) return nfail(im, CVY_ERR_SHAPE, "no broadcast");
        ab.rank = r;
        memcpy(ab.dims, d1, sizeof d1);
        if (!bcast(x, &ab, &r2, od)) return nfail(im, CVY_ERR_SHAPE, "no broadcast");
        if (prod_capped(od, r2) == SIZE_MAX)
            return nfail(im, CVY_ERR_UNSUPPORTED, "folds to more than %u values", MAX_FOLDED);
        int is_int = in[1]->is_int && in[2]->is_int;
        oval *c = add_const(im, out, r2, od, is_int);
        if (!c) return NOMEM(im);
        oval *cd = find(im, im->node->input[0]), *a = find(im, im->node->input[1]);
        oval *b = find(im, im->node->input[2]);
        for (size_t o = 0; o < c->n; o++)
            c->v[o] = cd->v[bidx(cd, r2, od, o)] != 0 ? a->v[bidx(a, r2, od, o)]
                                                      : b->v[bidx(b, r2, od, o)];
        return CVY_OK;
    }
    return nfail(im, CVY_ERR_UNSUPPORTED, "operator %s is not supported", op);
}

/* ---- dispatch ---------------------------------------------------------------------------- */

static cvy_status op_flatten_any(imp *im, oval **in, int nin)
{
    if (in[0] && in[0]->kind == V_CONST) {
        oval *x = in[0];
        int64_t a = attr_i(im, "axis", 1);
        if (a < 0) a += x->rank;
        if (a < 0 || a > x->rank) return nfail(im, CVY_ERR_FORMAT, "attribute 'axis'");
        int64_t od[2] = {(int64_t)prod(x->dims, 0, (int)a),
                         (int64_t)prod(x->dims, (int)a, x->rank)};
        oval *c = add_const(im, im->node->output[0], 2, od, x->is_int);
        if (!c) return NOMEM(im);
        x = find(im, im->node->input[0]);
        memcpy(c->v, x->v, x->n * sizeof(double));
        return CVY_OK;
    }
    return op_flatten(im, in, nin);
}

static cvy_status op_squeeze_d(imp *im, oval **in, int nin) { return op_squeeze(im, in, nin, 0); }
static cvy_status op_unsqueeze(imp *im, oval **in, int nin) { return op_squeeze(im, in, nin, 1); }

static cvy_status op_concat_any(imp *im, oval **in, int nin)
{
    int all_const = 1;
    for (int k = 0; k < nin; k++)
        if (!in[k] || in[k]->kind != V_CONST) all_const = 0;
    if (!all_const) return op_concat(im, in, nin);
    int r = in[0]->rank, axis = norm_axis(attr_i(im, "axis", 0), r);
    if (axis < 0) return nfail(im, CVY_ERR_FORMAT, "attribute 'axis' out of range");
    int64_t od[MAXR];
    memcpy(od, in[0]->dims, sizeof od);
    od[axis] = 0;
    for (int k = 0; k < nin; k++) {
        if (in[k]->rank != r) return nfail(im, CVY_ERR_SHAPE, "inputs of different rank");
        od[axis] += in[k]->dims[axis];
    }
    oval *c = add_const(im, im->node->output[0], r, od, in[0]->is_int);
    if (!c) return NOMEM(im);
    size_t outer = prod(od, 0, axis), pos = 0;
    for (size_t o = 0; o < outer; o++)
        for (int k = 0; k < nin; k++) {
            oval *x = find(im, im->node->input[k]);
            size_t blk = prod(x->dims, axis, r);
            memcpy(c->v + pos, x->v + o * blk, blk * sizeof(double));
            pos += blk;
        }
    return CVY_OK;
}

typedef struct op_entry {
    const char *name;
    op_fn fn;
} op_entry;

static const op_entry OPS[] = {
    {"Conv", op_conv},
    {"MaxPool", op_pool},
    {"AveragePool", op_pool},
    {"GlobalAveragePool", op_gap},
    {"GlobalMaxPool", op_gap},
    {"Relu", op_act},
    {"Clip", op_act},
    {"LeakyRelu", op_act},
    {"Sigmoid", op_act},
    {"HardSigmoid", op_act},
    {"HardSwish", op_act},
    {"Add", op_binary},
    {"Sub", op_binary},
    {"Mul", op_binary},
    {"Div", op_binary},
    {"Sum", op_sum},
    {"Mean", op_sum},
    {"PRelu", op_prelu},
    {"Concat", op_concat_any},
    {"Flatten", op_flatten_any},
    {"Reshape", op_reshape},
    {"Gemm", op_gemm},
    {"MatMul", op_gemm},
    {"BatchNormalization", op_bn},
    {"Softmax", op_softmax},
    {"Dropout", op_alias},
    {"Identity", op_alias},
    {"Pad", op_pad},
    {"Transpose", op_transpose},
    {"Split", op_split},
    {"Slice", op_slice},
    {"Gather", op_gather},
    {"ReduceMean", op_reducemean},
    {"Squeeze", op_squeeze_d},
    {"Unsqueeze", op_unsqueeze},
    {"Constant", op_constant},
    {"Shape", op_shape},
};

/* Ops folded when all inputs are constants (besides those handling constants themselves). */
static int foldable(const char *op)
{
    static const char *const F[] = {"Add",     "Sub",   "Mul",    "Div",   "Cast",
                                    "Neg",     "Floor", "Ceil",   "Sqrt",  "Relu",
                                    "Sigmoid", "Abs",   "Pow",    "Equal", "Less",
                                    "Greater", "Max",   "Min",    "Not",   "ConstantOfShape",
                                    "Range",   "Where", "Expand", NULL};
    for (int i = 0; F[i]; i++)
        if (!strcmp(F[i], op)) return 1;
    return 0;
}

static cvy_status convert_node(imp *im)
{
    const Onnx__NodeProto *n = im->node;
    if (!n->op_type) return nfail(im, CVY_ERR_FORMAT, "no op_type");
    if (n->domain && *n->domain && strcmp(n->domain, "ai.onnx"))
        return nfail(im, CVY_ERR_UNSUPPORTED, "domain '%.60s' is not supported", n->domain);
    if (n->n_output < 1 || !n->output[0] || !*n->output[0])
        return nfail(im, CVY_ERR_UNSUPPORTED, "the first output is unnamed (unused)");
    if (n->n_input > 64) return nfail(im, CVY_ERR_UNSUPPORTED, "more than 64 inputs");
    oval *in[64] = {0};
    int nin = (int)n->n_input, all_const = nin > 0;
    /* look up the inputs by name; pointers into vals stay valid until the next add_val */
    for (int k = 0; k < nin; k++) {
        in[k] = NULL;
        if (!n->input[k] || !*n->input[k]) continue;
        in[k] = find(im, n->input[k]);
        if (!in[k])
            return nfail(im, CVY_ERR_FORMAT, "input '%.80s' is not produced by an earlier node",
                         n->input[k]);
        if (in[k]->kind == V_NONE)
            return nfail(im, CVY_ERR_UNSUPPORTED, "input '%.80s': %s", n->input[k], in[k]->why);
        if (in[k]->kind != V_CONST) all_const = 0;
    }
    const char *op = n->op_type;
    for (size_t i = 0; i < sizeof OPS / sizeof OPS[0]; i++)
        if (!strcmp(OPS[i].name, op)) {
            if (strcmp(op, "Constant") && (nin < 1 || !in[0]))
                return nfail(im, CVY_ERR_FORMAT, "input 0 is missing");
            /* elementwise ops of constants fold */
            if (all_const && foldable(op)) return op_const_misc(im, in, nin);
            if (all_const && (!strcmp(op, "Identity") || !strcmp(op, "Dropout")))
                return op_alias(im, in, nin);
            return OPS[i].fn(im, in, nin);
        }
    if (foldable(op) && nin > 0 && in[0]) return op_const_misc(im, in, nin);
    return nfail(im, CVY_ERR_UNSUPPORTED, "operator %s is not supported", op);
}

/* ---- whole model ------------------------------------------------------------------------- */

/* Removes nodes not on a path to the output and weights no node reads; renumbers tensors. */
static cvy_status prune(fmt_model *m, cvy_error *err)
{
    uint32_t nt = m->n_tensors, nn = m->n_nodes;
    char *live = calloc(nt, 1), *keep = calloc(nn ? nn : 1, 1);
    int32_t *map = malloc(nt * sizeof *map);
    if (!live || !keep || !map) {
        free(live), free(keep), free(map);
        return cvy_fail(err, CVY_ERR_NOMEM, "out of memory");
    }
    /* nodes were appended in topological order: walk backwards */
    live[m->output] = 1;
    live[m->input] = 1;
    for (int i = (int)nn - 1; i >= 0; i--) {
        if (!live[m->nodes[i].out]) continue;
        keep[i] = 1;
        for (uint32_t k = 0; k < m->nodes[i].n_in; k++) live[m->nodes[i].in[k]] = 1;
    }
    uint32_t t2 = 0;
    for (uint32_t t = 0; t < nt; t++) {
        map[t] = live[t] ? (int32_t)t2 : -1;
        if (live[t])
            m->tensors[t2++] = m->tensors[t];
        else if (m->tensors[t].owned)
            free((void *)m->tensors[t].data);
    }
    m->n_tensors = t2;
    uint32_t n2 = 0;
    for (uint32_t i = 0; i < nn; i++) {
        if (!keep[i]) continue;
        fmt_node nd = m->nodes[i];
        for (uint32_t k = 0; k < nd.n_in; k++) nd.in[k] = (uint32_t)map[nd.in[k]];
        nd.out = (uint32_t)map[nd.out];
        m->nodes[n2++] = nd;
    }
    m->n_nodes = n2;
    m->input = (uint32_t)map[m->input];
    m->output = (uint32_t)map[m->output];
    free(live), free(keep), free(map);
    return CVY_OK;
}

static cvy_status read_labels(fmt_model *m, const char *path, cvy_error *err)
{
    FILE *f = fopen(path, "r");
    if (!f) return cvy_fail(err, CVY_ERR_IO, "labels %.200s: %s", path, strerror(errno));
    char line[1024];
    cvy_status s = CVY_OK;
    while (s == CVY_OK && fgets(line, sizeof line, f)) {
        size_t l = strlen(line);
        while (l && (line[l - 1] == '\n' || line[l - 1] == '\r')) line[--l] = 0;
        for (size_t i = 0; i < l; i++)
            if ((unsigned char)line[i] < 32) line[i] = ' ';
        if (fmt_add_label(m, line) < 0) s = cvy_fail(err, CVY_ERR_NOMEM, "out of memory");
    }
    fclose(f);
    return s;
}

static cvy_status import_graph(imp *im, const Onnx__ModelProto *mp, const onnx_import_opts *o,
                               const cvy_onnx_options *po)
{
    const Onnx__GraphProto *g = mp->graph;
    if (!g) return cvy_fail(im->err, CVY_ERR_FORMAT, "the model has no graph");
    im->opset = 0;
    for (size_t i = 0; i < mp->n_opset_import; i++) {
        const Onnx__OperatorSetIdProto *os = mp->opset_import[i];
        if ((!os->domain || !*os->domain || !strcmp(os->domain, "ai.onnx")) && os->has_version)
            im->opset = (int)os->version;
    }
    if (im->opset == 0) im->opset = 1;
    /* opsets 7..17 are the target; older files load when every attribute is one we know
     * (each operator's whitelist rejects the legacy ones whose semantics differ) */
    if (im->opset < 1 || im->opset > 17)
        return cvy_fail(im->err, CVY_ERR_UNSUPPORTED,
                        "opset %d is not supported (convoy reads opsets 7 to 17)", im->opset);
    cvy_status s = CVY_OK;
    for (size_t i = 0; s == CVY_OK && i < g->n_initializer; i++) {
        oval *v;
        s = tensor_const(im, g->initializer[i], g->initializer[i]->name, &v);
    }
    if (s == CVY_OK && g->n_sparse_initializer)
        return cvy_fail(im->err, CVY_ERR_UNSUPPORTED, "sparse initializers are not supported");
    /* the graph input: the first one that is no initializer; others must be bound */
    const Onnx__ValueInfoProto *gin = NULL;
    for (size_t i = 0; s == CVY_OK && i < g->n_input; i++) {
        const char *nm = g->input[i]->name ? g->input[i]->name : "";
        if (find(im, nm)) continue;
        if (!gin) {
            gin = g->input[i];
            continue;
        }
        int bound = 0;
        for (int k = 0; k < o->n_bind; k++)
            if (!strcmp(o->bind[k].name, nm)) {
                Onnx__TensorProto *tp =
                    onnx__tensor_proto__unpack(NULL, o->bind[k].size, o->bind[k].pb);
                if (!tp)
                    return cvy_fail(im->err, CVY_ERR_FORMAT, "binding '%.80s': bad tensor", nm);
                oval *v;
                s = tensor_const(im, tp, nm, &v);
                onnx__tensor_proto__free_unpacked(tp, NULL);
                bound = 1;
                break;
            }
        if (!bound && s == CVY_OK)
            return cvy_fail(im->err, CVY_ERR_UNSUPPORTED,
                            "graph input '%.80s': convoy models "
                            "take one input (the image batch)",
                            nm);
    }
    if (s != CVY_OK) return s;
    if (!gin) return cvy_fail(im->err, CVY_ERR_FORMAT, "the graph has no input");
    const char *gname = gin->name ? gin->name : "";
    const Onnx__TensorShapeProto *sh = input_shape(gin);
    if (!sh)
        return cvy_fail(im->err, CVY_ERR_UNSUPPORTED,
                        "graph input '%.80s' is not a tensor "
                        "with a shape",
                        gname);
    if (gin->type->tensor_type->elem_type != DT_FLOAT)
        return cvy_fail(im->err, CVY_ERR_UNSUPPORTED,
                        "graph input '%.80s' has data type %d; "
                        "only float is supported",
                        gname, gin->type->tensor_type->elem_type);
    int r = (int)sh->n_dim;
    im->bo = o->unit_batch ? 0 : 1;
    if (r - im->bo < 1 || r - im->bo > 3)
        return cvy_fail(im->err, CVY_ERR_UNSUPPORTED,
                        "graph input '%.80s' has %d dims; convoy "
                        "takes 1 to 3 dims per image",
                        gname, r - im->bo);
    int64_t dims[MAXR];
    for (int i = 0; i < r; i++) {
        const Onnx__TensorShapeProto__Dimension *d = sh->dim[i];
        int fixed = d->value_case == ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_VALUE &&
                    d->dim_value > 0;
        dims[i] = fixed ? d->dim_value : -1;
        int want = 0;
        if (r - im->bo == 3 && i == r - 2) want = po->height;
        if (r - im->bo == 3 && i == r - 1) want = po->width;
        if (want > 0) {
            if (fixed && dims[i] != want)
                return cvy_fail(im->err, CVY_ERR_SHAPE,
                                "graph input '%.80s': dim %d is fixed "
                                "at %lld, not %d",
                                gname, i, (long long)dims[i], want);
            dims[i] = want;
        }
        if (dims[i] < 0 && i == 0 && im->bo) dims[i] = 1;
        if (dims[i] < 0)
            return cvy_fail(im->err, CVY_ERR_SHAPE,
                            "graph input '%.80s': dim %d ('%.40s') is "
                            "dynamic; give the input size (--size HxW)",
                            gname, i,
                            d->value_case == ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_PARAM &&
                                    d->dim_param
                                ? d->dim_param
                                : "?");
        if (dims[i] > (int64_t)FMT_MAX_DIM)
            return cvy_fail(im->err, CVY_ERR_SHAPE, "graph input '%.80s': dim %d too large", gname,
                            i);
    }
    im->batch = im->bo ? dims[0] : 1;
    im->in_size = prod(dims, im->bo, r);
    uint32_t pd[3];
    for (int i = im->bo; i < r; i++) pd[i - im->bo] = (uint32_t)dims[i];
    int tin = fmt_add_activation(im->m, (uint32_t)(r - im->bo), pd);
    if (tin < 0 || !add_act(im, gname, r, dims, tin)) return NOMEM(im);
    im->m->input = (uint32_t)tin;

    for (size_t i = 0; s == CVY_OK && i < g->n_node; i++) {
        im->node = g->node[i];
        im->node_idx = (int)i;
        s = convert_node(im);
        size_t folded = im->const_elems - im->data_elems;
        if (s == CVY_OK && folded > FOLD_BASE + FOLD_RATIO * im->data_elems)
            s = nfail(im, CVY_ERR_LIMIT,
                      "constant folding made %zu values from %zu in the file (limit %zu)",
                      folded, im->data_elems, (size_t)FOLD_BASE + FOLD_RATIO * im->data_elems);
    }
    im->node = NULL;
    if (s != CVY_OK) return s;
    if (o->output_index < 0 || (size_t)o->output_index >= g->n_output)
        return cvy_fail(im->err, CVY_ERR_FORMAT, "the graph has no output %d", o->output_index);
    const char *oname = g->output[o->output_index]->name;
    oval *ov = oname ? find(im, oname) : NULL;
    if (!ov)
        return cvy_fail(im->err, CVY_ERR_FORMAT, "graph output '%.80s' is never produced",
                        oname ? oname : "");
    if (ov->kind != V_ACT)
        return cvy_fail(im->err, CVY_ERR_UNSUPPORTED,
                        "graph output '%.80s' does not depend on "
                        "the input (it is a constant)",
                        oname);
    if ((s = materialize(im, ov)) != CVY_OK) return s;
    int tout = ov->t;
    if (tout == tin || im->m->n_nodes == 0) {
        tout = fmt_add_activation(im->m, 0, NULL);
        uint32_t u = (uint32_t)ov->t;
        if (tout < 0 ||
            fmt_add_node(im->m, OP_IDENTITY, 1, &u, (uint32_t)tout, NULL, NULL, oname) < 0)
            return NOMEM(im);
    }
    im->m->output = (uint32_t)tout;
    /* probabilities when the output is a softmax, possibly viewed through reshapes */
    for (uint32_t t = (uint32_t)tout, hops = 0; hops < im->m->n_nodes; hops++) {
        const fmt_node *p = NULL;
        for (uint32_t i = 0; i < im->m->n_nodes && !p; i++)
            if (im->m->nodes[i].out == t) p = &im->m->nodes[i];
        if (!p) break;
        if (p->op == OP_SOFTMAX) im->m->output_kind = 1;
        if (p->op != OP_RESHAPE && p->op != OP_FLATTEN && p->op != OP_IDENTITY) break;
        t = p->in[0];
    }
    if ((s = prune(im->m, im->err)) != CVY_OK) return s;

    /* preprocessing */
    cvy_preproc *pp = &im->m->preproc;
    int nd = r - im->bo;
    int64_t c = nd == 3 ? dims[im->bo] : 1;
    pp->height = nd == 3 ? (int)dims[r - 2] : 1;
    pp->width = nd == 3 ? (int)dims[r - 1] : 1;
    if (pp->height > 16384 || pp->width > 16384)
        return cvy_fail(im->err, CVY_ERR_SHAPE, "input %dx%d is larger than 16384", pp->height,
                        pp->width);
    int color = po->color;
    if (color < 0) color = c == 3 ? CVY_COLOR_RGB : CVY_COLOR_GRAY;
    if (color < 0 || color > CVY_COLOR_BGR)
        return cvy_fail(im->err, CVY_ERR_ARG, "color %d is not a cvy_color", po->color);
    if (nd == 3 && (c == 1 || c == 3) && (color == CVY_COLOR_GRAY) != (c == 1))
        return cvy_fail(im->err, CVY_ERR_ARG, "color %s does not fit %lld input channels",
                        color == CVY_COLOR_GRAY ? "gray" : "rgb/bgr", (long long)c);
    pp->color = (cvy_color)color;
    pp->resize = po->resize;
    pp->resize_shorter = po->resize_shorter;
    pp->scale = po->scale;
    for (int k = 0; k < 3; k++) {
        pp->mean[k] = po->mean[k];
        pp->std[k] = po->std[k];
    }
    if (po->labels_path && (s = read_labels(im->m, po->labels_path, im->err)) != CVY_OK) return s;
    return CVY_OK;
}

cvy_status onnx_import(const void *buf, size_t size, const onnx_import_opts *o, fmt_model *out,
                       cvy_error *err)
{
    memset(out, 0, sizeof *out);
    onnx_import_opts defo = {0};
    if (!o) o = &defo;
    cvy_onnx_options dpub = cvy_onnx_default_options();
    const cvy_onnx_options *po = o->pub ? o->pub : &dpub;
    Onnx__ModelProto *mp = onnx__model_proto__unpack(NULL, size, buf);
    if (!mp) return cvy_fail(err, CVY_ERR_FORMAT, "not an ONNX model (protobuf parse failed)");
    imp im = {.m = out, .err = err, .dir = o->dir};
    cvy_status s = import_graph(&im, mp, o, po);
    for (int i = 0; i < im.nv; i++) {
        free(im.vals[i].name);
        free(im.vals[i].v);
    }
    free(im.vals);
    for (int i = 0; i < im.n_mats; i++) free(im.mats[i]);
    free(im.mats);
    onnx__model_proto__free_unpacked(mp, NULL);
    if (s != CVY_OK) fmt_model_clear(out);
    return s;
}

/* ---- public API -------------------------------------------------------------------------- */

cvy_onnx_options cvy_onnx_default_options(void)
{
    cvy_onnx_options o;
    memset(&o, 0, sizeof o);
    o.color = -1;
    o.scale = 1.0f / 255.0f;
    for (int k = 0; k < 3; k++) o.std[k] = 1.0f;
    o.resize = CVY_RESIZE_STRETCH;
    return o;
}

static cvy_status read_whole(const char *path, uint8_t **buf, size_t *size, cvy_error *err)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return cvy_fail(err, CVY_ERR_IO, "%.300s: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) ||
        (unsigned long long)st.st_size > MAX_ONNX_BYTES) {
        close(fd);
        return cvy_fail(err, CVY_ERR_IO, "%.300s: not a regular file below 4 GiB", path);
    }
    size_t n = (size_t)st.st_size, got = 0;
    uint8_t *b = malloc(n ? n : 1);
    if (!b) {
        close(fd);
        return cvy_fail(err, CVY_ERR_NOMEM, "%.300s: out of memory", path);
    }
    while (got < n) {
        ssize_t r = read(fd, b + got, n - got);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) break;
        got += (size_t)r;
    }
    close(fd);
    *buf = b;
    *size = got;
    return CVY_OK;
}

cvy_status cvy_onnx_convert(const char *onnx_path, const cvy_onnx_options *o, uint8_t **cvy_out,
                            size_t *size, cvy_error *err)
{
    if (!onnx_path || !cvy_out || !size)
        return cvy_fail(err, CVY_ERR_ARG, "onnx: NULL path or output");
    *cvy_out = NULL;
    *size = 0;
    uint8_t *buf = NULL;
    size_t n = 0;
    cvy_status s = read_whole(onnx_path, &buf, &n, err);
    if (s != CVY_OK) return s;
    char dir[4096];
    snprintf(dir, sizeof dir, "%s", onnx_path);
    char *slash = strrchr(dir, '/');
    if (slash)
        *slash = 0;
    else
        snprintf(dir, sizeof dir, ".");
    onnx_import_opts io = {.pub = o, .dir = dir};
    fmt_model m;
    s = onnx_import(buf, n, &io, &m, err);
    free(buf);
    if (s == CVY_OK) s = fmt_serialize(&m, cvy_out, size, err);
    fmt_model_clear(&m);
    if (s != CVY_OK && err) {
        char tmp[sizeof err->msg];
        snprintf(tmp, sizeof tmp, "%.200s: %.300s", onnx_path, err->msg);
        memcpy(err->msg, tmp, sizeof tmp);
    }
    return s;
}

cvy_status cvy_model_load_onnx(cvy_engine *e, const char *path, const cvy_onnx_options *o,
                               cvy_model **out, cvy_error *err)
{
    if (!e || !path || !out) return cvy_fail(err, CVY_ERR_ARG, "onnx: NULL argument");
    *out = NULL;
    uint8_t *b;
    size_t n;
    cvy_status s = cvy_onnx_convert(path, o, &b, &n, err);
    if (s != CVY_OK) return s;
    s = cvy_model_load_memory(e, b, n, out, err);
    free(b);
    return s;
}
