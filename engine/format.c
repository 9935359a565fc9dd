/* format.c - reading and writing .cvy files. Every field read from a file is checked before
 * it is used; see docs/model-format.md for the layout. */
#include "format.h"

#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "util.h"

#define HEADER_SIZE   64
#define ENTRY_SIZE    32
#define PREPROC_SIZE  64
#define GRAPH_HEADER  32
#define TENSOR_REC    48
#define NODE_REC      192
#define MAX_SECTIONS  16
#define GOLDEN_HEADER 32
#define N_SEC_TYPES   6 /* types 1..5 */

static const char MAGIC[8] = {'C', 'V', 'Y', 'M', 'O', 'D', 'E', 'L'};

static const char *const OP_NAMES[OP_COUNT_] = {
    [OP_CONV] = "Conv",
    [OP_MAXPOOL] = "MaxPool",
    [OP_AVGPOOL] = "AveragePool",
    [OP_GLOBALAVGPOOL] = "GlobalAveragePool",
    [OP_RELU] = "Relu",
    [OP_CLIP] = "Clip",
    [OP_LEAKYRELU] = "LeakyRelu",
    [OP_SIGMOID] = "Sigmoid",
    [OP_HARDSIGMOID] = "HardSigmoid",
    [OP_HARDSWISH] = "HardSwish",
    [OP_ADD] = "Add",
    [OP_MUL] = "Mul",
    [OP_CONCAT] = "Concat",
    [OP_FLATTEN] = "Flatten",
    [OP_RESHAPE] = "Reshape",
    [OP_GEMM] = "Gemm",
    [OP_BATCHNORM] = "BatchNormalization",
    [OP_SOFTMAX] = "Softmax",
    [OP_IDENTITY] = "Identity",
};

static const char *const SECTION_NAMES[N_SEC_TYPES] = {"?",       "GRAPH",  "WEIGHTS",
                                                       "PREPROC", "LABELS", "GOLDEN"};

const char *fmt_op_name(uint32_t op)
{
    return (op > 0 && op < OP_COUNT_) ? OP_NAMES[op] : "unknown";
}

static uint32_t rd32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}
static uint64_t rd64(const uint8_t *p) { return (uint64_t)rd32(p) | (uint64_t)rd32(p + 4) << 32; }
static float rdf(const uint8_t *p)
{
    uint32_t u = rd32(p);
    float f;
    memcpy(&f, &u, 4);
    return f;
}
static void wr32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++) p[i] = (uint8_t)(v >> (8 * i));
}
static void wr64(uint8_t *p, uint64_t v)
{
    wr32(p, (uint32_t)v);
    wr32(p + 4, (uint32_t)(v >> 32));
}
static void wrf(uint8_t *p, float f)
{
    uint32_t u;
    memcpy(&u, &f, 4);
    wr32(p, u);
}

static uint32_t crc(const uint8_t *p, size_t n)
{
    uLong c = crc32(0L, Z_NULL, 0);
    while (n > 0) { /* zlib takes uInt lengths */
        uInt chunk = n > (1u << 30) ? (1u << 30) : (uInt)n;
        c = crc32(c, p, chunk);
        p += chunk;
        n -= chunk;
    }
    return (uint32_t)c;
}

uint64_t fmt_tensor_elems(const fmt_tensor *t)
{
    uint64_t n = 1;
    for (uint32_t i = 0; i < t->ndim && i < 4; i++) n *= t->dims[i];
    return n;
}

/* ---- parsing ---------------------------------------------------------------------------- */

typedef struct section {
    uint64_t off, size;
    int present;
} section;

/* Reads the section table into secs[type]. */
static cvy_status parse_table(const uint8_t *b, size_t size, section secs[N_SEC_TYPES],
                              cvy_error *err)
{
    uint32_t count = rd32(b + 24);
    uint64_t table = rd64(b + 32);
    if (count < 1 || count > MAX_SECTIONS)
        return cvy_fail(err, CVY_ERR_FORMAT, "header: section count %u out of range 1..%d", count,
                        MAX_SECTIONS);
    if (table != HEADER_SIZE)
        return cvy_fail(err, CVY_ERR_FORMAT, "header: section table offset %llu is not 64",
                        (unsigned long long)table);
    uint64_t table_end = table + (uint64_t)count * ENTRY_SIZE;
    if (table_end > size)
        return cvy_fail(err, CVY_ERR_FORMAT, "section table: ends at %llu, past the file end %zu",
                        (unsigned long long)table_end, size);
    uint64_t starts[MAX_SECTIONS], ends[MAX_SECTIONS];
    for (uint32_t i = 0; i < count; i++) {
        const uint8_t *e = b + table + (uint64_t)i * ENTRY_SIZE;
        uint32_t type = rd32(e), flags = rd32(e + 4), sum = rd32(e + 24);
        uint64_t off = rd64(e + 8), len = rd64(e + 16);
        if (type < FMT_SEC_GRAPH || type > FMT_SEC_GOLDEN)
            return cvy_fail(err, CVY_ERR_FORMAT, "section table: entry %u has unknown type %u", i,
                            type);
        const char *nm = SECTION_NAMES[type];
        if (secs[type].present)
            return cvy_fail(err, CVY_ERR_FORMAT, "section table: %s appears twice", nm);
        if (flags != 0 || rd32(e + 28) != 0)
            return cvy_fail(err, CVY_ERR_FORMAT, "section %s: non-zero flags or reserved field",
                            nm);
        if (off % 64 != 0)
            return cvy_fail(err, CVY_ERR_FORMAT, "section %s: offset %llu not 64-byte aligned", nm,
                            (unsigned long long)off);
        if (off < table_end || off > size || len > size - off)
            return cvy_fail(err, CVY_ERR_FORMAT,
                            "section %s: bytes %llu..%llu lie outside the file (size %zu)", nm,
                            (unsigned long long)off, (unsigned long long)(off + len), size);
        for (uint32_t j = 0; j < i; j++)
            if (off < ends[j] && starts[j] < off + len)
                return cvy_fail(err, CVY_ERR_FORMAT, "section %s overlaps another section", nm);
        starts[i] = off;
        ends[i] = off + len;
        if (crc(b + off, len) != sum)
            return cvy_fail(err, CVY_ERR_CHECKSUM, "section %s: checksum mismatch (corrupt file)",
                            nm);
        secs[type] = (section){off, len, 1};
    }
    for (int t = FMT_SEC_GRAPH; t <= FMT_SEC_PREPROC; t++)
        if (!secs[t].present)
            return cvy_fail(err, CVY_ERR_FORMAT, "required section %s is missing",
                            SECTION_NAMES[t]);
    return CVY_OK;
}

static cvy_status parse_preproc(const uint8_t *p, uint64_t len, cvy_preproc *pp, cvy_error *err)
{
    if (len != PREPROC_SIZE)
        return cvy_fail(err, CVY_ERR_FORMAT, "section PREPROC: size %llu, expected %d",
                        (unsigned long long)len, PREPROC_SIZE);
    uint32_t w = rd32(p), h = rd32(p + 4), color = rd32(p + 8), resize = rd32(p + 12);
    uint32_t shorter = rd32(p + 16);
    if (w < 1 || h < 1 || w > 16384 || h > 16384)
        return cvy_fail(err, CVY_ERR_FORMAT, "PREPROC: input size %ux%u out of range", w, h);
    if (color > CVY_COLOR_BGR)
        return cvy_fail(err, CVY_ERR_FORMAT, "PREPROC: unknown color mode %u", color);
    if (resize > CVY_RESIZE_SHORTER_CROP)
        return cvy_fail(err, CVY_ERR_FORMAT, "PREPROC: unknown resize mode %u", resize);
    if (shorter > 65536)
        return cvy_fail(err, CVY_ERR_FORMAT, "PREPROC: resize_shorter %u out of range", shorter);
    pp->width = (int)w;
    pp->height = (int)h;
    pp->color = (cvy_color)color;
    pp->resize = (cvy_resize)resize;
    pp->resize_shorter = (int)shorter;
    pp->scale = rdf(p + 20);
    for (int c = 0; c < 3; c++) {
        pp->mean[c] = rdf(p + 24 + 4 * c);
        pp->std[c] = rdf(p + 36 + 4 * c);
    }
    int nch = color == CVY_COLOR_GRAY ? 1 : 3;
    if (!(pp->scale == pp->scale) || pp->scale == 0.0f)
        return cvy_fail(err, CVY_ERR_FORMAT, "PREPROC: scale must be a non-zero number");
    for (int c = 0; c < nch; c++)
        if (!(pp->std[c] > 0.0f || pp->std[c] < 0.0f) || !(pp->mean[c] == pp->mean[c]))
            return cvy_fail(err, CVY_ERR_FORMAT, "PREPROC: channel %d has std 0 or NaN mean", c);
    return CVY_OK;
}

static cvy_status parse_labels(const uint8_t *p, uint64_t len, fmt_model *m, cvy_error *err)
{
    if (len < 4) return cvy_fail(err, CVY_ERR_FORMAT, "section LABELS: shorter than 4 bytes");
    uint32_t count = rd32(p);
    if (count > (1u << 20) || count > (len - 4) / 4)
        return cvy_fail(err, CVY_ERR_FORMAT, "LABELS: count %u does not fit the section", count);
    m->labels = calloc(count ? count : 1, sizeof(char *));
    if (!m->labels) return cvy_fail(err, CVY_ERR_NOMEM, "LABELS: out of memory");
    uint64_t pos = 4;
    for (uint32_t i = 0; i < count; i++) {
        if (len - pos < 4) return cvy_fail(err, CVY_ERR_FORMAT, "LABELS: label %u truncated", i);
        uint32_t n = rd32(p + pos);
        pos += 4;
        if (n > FMT_MAX_LABEL || n > len - pos)
            return cvy_fail(err, CVY_ERR_FORMAT, "LABELS: label %u has bad length %u", i, n);
        for (uint32_t k = 0; k < n; k++)
            if (p[pos + k] < 0x20 || p[pos + k] == 0x7f)
                return cvy_fail(err, CVY_ERR_FORMAT, "LABELS: label %u has a control character", i);
        m->labels[i] = malloc(n + 1);
        if (!m->labels[i]) return cvy_fail(err, CVY_ERR_NOMEM, "LABELS: out of memory");
        memcpy(m->labels[i], p + pos, n);
        m->labels[i][n] = 0;
        m->n_labels = (int)i + 1;
        pos += n;
    }
    if (pos != len)
        return cvy_fail(err, CVY_ERR_FORMAT, "LABELS: %llu trailing bytes",
                        (unsigned long long)(len - pos));
    return CVY_OK;
}

static cvy_status parse_golden(const uint8_t *p, uint64_t len, fmt_model *m, cvy_error *err)
{
    if (len < GOLDEN_HEADER)
        return cvy_fail(err, CVY_ERR_FORMAT, "section GOLDEN: shorter than its header");
    uint32_t n = rd32(p), in = rd32(p + 4), out = rd32(p + 8);
    float rtol = rdf(p + 12), atol = rdf(p + 16);
    if (n < 1 || n > FMT_MAX_GOLDEN || in < 1 || in > FMT_MAX_DIM || out < 1 || out > FMT_MAX_DIM)
        return cvy_fail(err, CVY_ERR_FORMAT, "GOLDEN: %u images of %u -> %u floats out of range", n,
                        in, out);
    if (!(rtol >= 0.0f && rtol < 1e30f) || !(atol >= 0.0f && atol < 1e30f))
        return cvy_fail(err, CVY_ERR_FORMAT, "GOLDEN: tolerances must be finite and >= 0");
    if (rd32(p + 20) || rd32(p + 24) || rd32(p + 28))
        return cvy_fail(err, CVY_ERR_FORMAT, "GOLDEN: reserved fields not zero");
    uint64_t floats = (uint64_t)n * in + (uint64_t)n * out;
    if (len != GOLDEN_HEADER + floats * 4)
        return cvy_fail(err, CVY_ERR_FORMAT, "GOLDEN: size %llu, its counts need %llu",
                        (unsigned long long)len, (unsigned long long)(GOLDEN_HEADER + floats * 4));
    float *data = malloc(floats * sizeof(float));
    if (!data) return cvy_fail(err, CVY_ERR_NOMEM, "GOLDEN: out of memory");
    for (uint64_t i = 0; i < floats; i++) data[i] = rdf(p + GOLDEN_HEADER + 4 * i);
    int r = fmt_set_golden(m, n, in, data, out, data + (size_t)n * in, rtol, atol);
    free(data);
    return r == 0 ? CVY_OK : cvy_fail(err, CVY_ERR_NOMEM, "GOLDEN: out of memory");
}

static cvy_status parse_tensor(const uint8_t *r, uint32_t i, const section *w, const uint8_t *b,
                               fmt_tensor *t, cvy_error *err)
{
    t->kind = rd32(r);
    t->ndim = rd32(r + 4);
    for (int d = 0; d < 4; d++) t->dims[d] = rd32(r + 8 + 4 * d);
    uint64_t off = rd64(r + 24), nbytes = rd64(r + 32);
    if (t->kind > FMT_WEIGHT)
        return cvy_fail(err, CVY_ERR_FORMAT, "tensor %u: unknown kind %u", i, t->kind);
    if (t->ndim > 4) return cvy_fail(err, CVY_ERR_SHAPE, "tensor %u: ndim %u > 4", i, t->ndim);
    if (rd32(r + 40) || rd32(r + 44))
        return cvy_fail(err, CVY_ERR_FORMAT, "tensor %u: reserved fields not zero", i);
    uint64_t elems = 1;
    for (uint32_t d = 0; d < 4; d++) {
        if (d >= t->ndim) {
            if (t->dims[d] != 0)
                return cvy_fail(err, CVY_ERR_FORMAT, "tensor %u: unused dim %u not zero", i, d);
            continue;
        }
        if (t->dims[d] < 1 || t->dims[d] > FMT_MAX_DIM)
            return cvy_fail(err, CVY_ERR_SHAPE, "tensor %u: dim %u = %u out of range 1..%u", i, d,
                            t->dims[d], FMT_MAX_DIM);
        elems *= t->dims[d];
        if (elems > FMT_MAX_ELEMS)
            return cvy_fail(err, CVY_ERR_SHAPE, "tensor %u: more than 2^31 elements", i);
    }
    if (t->kind == FMT_ACTIVATION) {
        if (off || nbytes)
            return cvy_fail(err, CVY_ERR_FORMAT, "tensor %u: activation with weight data", i);
        return CVY_OK;
    }
    if (nbytes != elems * 4)
        return cvy_fail(err, CVY_ERR_SHAPE, "tensor %u: %llu bytes of data, dims need %llu", i,
                        (unsigned long long)nbytes, (unsigned long long)(elems * 4));
    if (off % 64 != 0)
        return cvy_fail(err, CVY_ERR_FORMAT, "tensor %u: weight offset %llu not 64-byte aligned", i,
                        (unsigned long long)off);
    if (off > w->size || nbytes > w->size - off)
        return cvy_fail(err, CVY_ERR_FORMAT,
                        "tensor %u: weight bytes %llu..%llu outside WEIGHTS (size %llu)", i,
                        (unsigned long long)off, (unsigned long long)(off + nbytes),
                        (unsigned long long)w->size);
    t->data = (const float *)(b + w->off + off);
    return CVY_OK;
}

static cvy_status parse_node(const uint8_t *r, uint32_t i, uint32_t n_tensors, fmt_node *nd,
                             cvy_error *err)
{
    nd->op = rd32(r);
    nd->n_in = rd32(r + 4);
    for (int k = 0; k < FMT_MAX_INPUTS; k++) nd->in[k] = rd32(r + 8 + 4 * k);
    nd->out = rd32(r + 32);
    for (int k = 0; k < 16; k++) nd->ia[k] = (int32_t)rd32(r + 36 + 4 * k);
    for (int k = 0; k < 8; k++) nd->fa[k] = rdf(r + 100 + 4 * k);
    memcpy(nd->name, r + 132, FMT_NAME_LEN);
    nd->name[FMT_NAME_LEN] = 0;
    for (int k = 0; k < FMT_NAME_LEN && nd->name[k]; k++)
        if ((unsigned char)nd->name[k] < 0x20) nd->name[k] = '?';
    if (nd->op == 0 || nd->op >= OP_COUNT_)
        return cvy_fail(err, CVY_ERR_UNSUPPORTED, "node %u '%s': unknown op %u", i, nd->name,
                        nd->op);
    if (nd->n_in < 1 || nd->n_in > FMT_MAX_INPUTS)
        return cvy_fail(err, CVY_ERR_FORMAT, "node %u '%s': %u inputs, must be 1..%d", i, nd->name,
                        nd->n_in, FMT_MAX_INPUTS);
    for (uint32_t k = 0; k < FMT_MAX_INPUTS; k++) {
        if (k >= nd->n_in) {
            if (nd->in[k] != 0)
                return cvy_fail(err, CVY_ERR_FORMAT, "node %u '%s': unused input slot not zero", i,
                                nd->name);
        } else if (nd->in[k] >= n_tensors) {
            return cvy_fail(err, CVY_ERR_FORMAT, "node %u '%s': input %u is tensor %u of %u", i,
                            nd->name, k, nd->in[k], n_tensors);
        }
    }
    if (nd->out >= n_tensors)
        return cvy_fail(err, CVY_ERR_FORMAT, "node %u '%s': output is tensor %u of %u", i, nd->name,
                        nd->out, n_tensors);
    return CVY_OK;
}

static cvy_status parse_graph(const uint8_t *b, const section *g, const section *w, fmt_model *m,
                              cvy_error *err)
{
    const uint8_t *p = b + g->off;
    if (g->size < GRAPH_HEADER)
        return cvy_fail(err, CVY_ERR_FORMAT, "section GRAPH: shorter than its header");
    uint32_t nt = rd32(p), nn = rd32(p + 4);
    if (nt < 1 || nt > FMT_MAX_TENSORS || nn < 1 || nn > FMT_MAX_TENSORS)
        return cvy_fail(err, CVY_ERR_FORMAT, "GRAPH: %u tensors and %u nodes, each must be 1..%d",
                        nt, nn, FMT_MAX_TENSORS);
    uint64_t need = GRAPH_HEADER + (uint64_t)nt * TENSOR_REC + (uint64_t)nn * NODE_REC;
    if (g->size != need)
        return cvy_fail(err, CVY_ERR_FORMAT, "GRAPH: size %llu, its counts need %llu",
                        (unsigned long long)g->size, (unsigned long long)need);
    m->input = rd32(p + 8);
    m->output = rd32(p + 12);
    m->output_kind = rd32(p + 16);
    if (m->input >= nt || m->output >= nt)
        return cvy_fail(err, CVY_ERR_FORMAT, "GRAPH: input/output tensor index out of range");
    if (m->output_kind > 1)
        return cvy_fail(err, CVY_ERR_FORMAT, "GRAPH: unknown output kind %u", m->output_kind);
    if (rd32(p + 20) || rd32(p + 24) || rd32(p + 28))
        return cvy_fail(err, CVY_ERR_FORMAT, "GRAPH: reserved header fields not zero");
    m->tensors = calloc(nt, sizeof *m->tensors);
    m->nodes = calloc(nn, sizeof *m->nodes);
    if (!m->tensors || !m->nodes) return cvy_fail(err, CVY_ERR_NOMEM, "GRAPH: out of memory");
    m->n_tensors = nt;
    m->n_nodes = nn;
    for (uint32_t i = 0; i < nt; i++) {
        cvy_status s =
            parse_tensor(p + GRAPH_HEADER + (uint64_t)i * TENSOR_REC, i, w, b, &m->tensors[i], err);
        if (s != CVY_OK) return s;
    }
    const uint8_t *nodes = p + GRAPH_HEADER + (uint64_t)nt * TENSOR_REC;
    for (uint32_t i = 0; i < nn; i++) {
        cvy_status s = parse_node(nodes + (uint64_t)i * NODE_REC, i, nt, &m->nodes[i], err);
        if (s != CVY_OK) return s;
    }
    return CVY_OK;
}

cvy_status fmt_parse(const void *buf, size_t size, fmt_model *out, cvy_error *err)
{
    const uint8_t *b = buf;
    memset(out, 0, sizeof *out);
    if (!buf || size < HEADER_SIZE)
        return cvy_fail(err, CVY_ERR_FORMAT, "file too short (%zu bytes) for a .cvy header", size);
    if (memcmp(b, MAGIC, 8) != 0)
        return cvy_fail(err, CVY_ERR_FORMAT, "bad magic: not a .cvy model file");
    if (crc(b, 60) != rd32(b + 60))
        return cvy_fail(err, CVY_ERR_CHECKSUM, "header checksum mismatch (corrupt header)");
    uint32_t version = rd32(b + 8);
    if (version != FMT_VERSION)
        return cvy_fail(err, CVY_ERR_VERSION, "format version %u not supported (this is %d)",
                        version, FMT_VERSION);
    if (rd32(b + 12) != HEADER_SIZE || rd32(b + 28) != 0)
        return cvy_fail(err, CVY_ERR_FORMAT, "header: bad header size or flags");
    for (int i = 40; i < 60; i++)
        if (b[i]) return cvy_fail(err, CVY_ERR_FORMAT, "header: reserved bytes not zero");
    uint64_t fsize = rd64(b + 16);
    if (fsize != size)
        return cvy_fail(err, CVY_ERR_FORMAT, "file is %zu bytes, header says %llu (truncated?)",
                        size, (unsigned long long)fsize);
    section secs[N_SEC_TYPES] = {{0}};
    cvy_status s = parse_table(b, size, secs, err);
    if (s == CVY_OK)
        s = parse_preproc(b + secs[FMT_SEC_PREPROC].off, secs[FMT_SEC_PREPROC].size, &out->preproc,
                          err);
    if (s == CVY_OK && secs[FMT_SEC_LABELS].present)
        s = parse_labels(b + secs[FMT_SEC_LABELS].off, secs[FMT_SEC_LABELS].size, out, err);
    if (s == CVY_OK) s = parse_graph(b, &secs[FMT_SEC_GRAPH], &secs[FMT_SEC_WEIGHTS], out, err);
    if (s == CVY_OK && secs[FMT_SEC_GOLDEN].present)
        s = parse_golden(b + secs[FMT_SEC_GOLDEN].off, secs[FMT_SEC_GOLDEN].size, out, err);
    if (s != CVY_OK) fmt_model_clear(out);
    return s;
}

/* ---- writing ---------------------------------------------------------------------------- */

cvy_status fmt_serialize(const fmt_model *m, uint8_t **out, size_t *size, cvy_error *err)
{
    *out = NULL;
    *size = 0;
    if (m->n_tensors < 1 || m->n_tensors > FMT_MAX_TENSORS || m->n_nodes < 1 ||
        m->n_nodes > FMT_MAX_TENSORS)
        return cvy_fail(err, CVY_ERR_ARG, "cannot write %u tensors / %u nodes", m->n_tensors,
                        m->n_nodes);
    /* Section sizes; weights get 64-byte aligned offsets in order. */
    uint64_t wsize = 0;
    for (uint32_t i = 0; i < m->n_tensors; i++)
        if (m->tensors[i].kind == FMT_WEIGHT)
            wsize = cvy_round_up(wsize, 64) + fmt_tensor_elems(&m->tensors[i]) * 4;
    uint64_t gsize =
        GRAPH_HEADER + (uint64_t)m->n_tensors * TENSOR_REC + (uint64_t)m->n_nodes * NODE_REC;
    uint64_t lsize = 4;
    for (int i = 0; i < m->n_labels; i++) lsize += 4 + strlen(m->labels[i]);
    uint64_t gold = m->n_golden ? GOLDEN_HEADER + 4 * ((uint64_t)m->n_golden * m->golden_in_size +
                                                       (uint64_t)m->n_golden * m->golden_out_size)
                                : 0;
    /* the sections present, in type order */
    int types[N_SEC_TYPES], nsec = 0;
    uint64_t off[N_SEC_TYPES] = {0},
             len[N_SEC_TYPES] = {0, gsize, wsize, PREPROC_SIZE, lsize, gold};
    for (int t = 1; t < N_SEC_TYPES; t++)
        if (t <= FMT_SEC_PREPROC || (t == FMT_SEC_LABELS && m->n_labels > 0) ||
            (t == FMT_SEC_GOLDEN && m->n_golden > 0))
            types[nsec++] = t;
    uint64_t pos = cvy_round_up(HEADER_SIZE + (uint64_t)nsec * ENTRY_SIZE, 64), total = 0;
    for (int i = 0; i < nsec; i++) {
        off[types[i]] = pos;
        total = pos + len[types[i]];
        pos = cvy_round_up(total, 64);
    }
    uint8_t *b = calloc(1, total);
    if (!b)
        return cvy_fail(err, CVY_ERR_NOMEM, "out of memory writing a %llu-byte model",
                        (unsigned long long)total);

    /* GRAPH and WEIGHTS */
    uint8_t *g = b + off[FMT_SEC_GRAPH];
    wr32(g, m->n_tensors);
    wr32(g + 4, m->n_nodes);
    wr32(g + 8, m->input);
    wr32(g + 12, m->output);
    wr32(g + 16, m->output_kind);
    uint64_t wpos = 0;
    for (uint32_t i = 0; i < m->n_tensors; i++) {
        const fmt_tensor *t = &m->tensors[i];
        uint8_t *r = g + GRAPH_HEADER + (uint64_t)i * TENSOR_REC;
        wr32(r, t->kind);
        wr32(r + 4, t->ndim);
        for (uint32_t d = 0; d < t->ndim && d < 4; d++) wr32(r + 8 + 4 * d, t->dims[d]);
        if (t->kind != FMT_WEIGHT) continue;
        uint64_t n = fmt_tensor_elems(t);
        wpos = cvy_round_up(wpos, 64);
        wr64(r + 24, wpos);
        wr64(r + 32, n * 4);
        uint8_t *dst = b + off[FMT_SEC_WEIGHTS] + wpos;
        for (uint64_t k = 0; k < n; k++) wrf(dst + 4 * k, t->data[k]);
        wpos += n * 4;
    }
    uint8_t *nodes = g + GRAPH_HEADER + (uint64_t)m->n_tensors * TENSOR_REC;
    for (uint32_t i = 0; i < m->n_nodes; i++) {
        const fmt_node *nd = &m->nodes[i];
        uint8_t *r = nodes + (uint64_t)i * NODE_REC;
        wr32(r, nd->op);
        wr32(r + 4, nd->n_in);
        for (uint32_t k = 0; k < nd->n_in && k < FMT_MAX_INPUTS; k++)
            wr32(r + 8 + 4 * k, nd->in[k]);
        wr32(r + 32, nd->out);
        for (int k = 0; k < 16; k++) wr32(r + 36 + 4 * k, (uint32_t)nd->ia[k]);
        for (int k = 0; k < 8; k++) wrf(r + 100 + 4 * k, nd->fa[k]);
        strncpy((char *)r + 132, nd->name, FMT_NAME_LEN);
    }

    /* PREPROC */
    uint8_t *p = b + off[FMT_SEC_PREPROC];
    const cvy_preproc *pp = &m->preproc;
    wr32(p, (uint32_t)pp->width);
    wr32(p + 4, (uint32_t)pp->height);
    wr32(p + 8, (uint32_t)pp->color);
    wr32(p + 12, (uint32_t)pp->resize);
    wr32(p + 16, (uint32_t)pp->resize_shorter);
    wrf(p + 20, pp->scale);
    for (int c = 0; c < 3; c++) {
        wrf(p + 24 + 4 * c, pp->mean[c]);
        wrf(p + 36 + 4 * c, pp->std[c]);
    }

    /* GOLDEN */
    if (m->n_golden) {
        uint8_t *q = b + off[FMT_SEC_GOLDEN];
        size_t nin = (size_t)m->n_golden * m->golden_in_size;
        size_t nout = (size_t)m->n_golden * m->golden_out_size;
        wr32(q, m->n_golden);
        wr32(q + 4, m->golden_in_size);
        wr32(q + 8, m->golden_out_size);
        wrf(q + 12, m->golden_rtol);
        wrf(q + 16, m->golden_atol);
        for (size_t i = 0; i < nin; i++) wrf(q + GOLDEN_HEADER + 4 * i, m->golden_in[i]);
        for (size_t i = 0; i < nout; i++) wrf(q + GOLDEN_HEADER + 4 * (nin + i), m->golden_out[i]);
    }

    /* LABELS */
    if (m->n_labels > 0) {
        uint8_t *l = b + off[FMT_SEC_LABELS];
        wr32(l, (uint32_t)m->n_labels);
        uint64_t lp = 4;
        for (int i = 0; i < m->n_labels; i++) {
            uint32_t n = (uint32_t)strlen(m->labels[i]);
            wr32(l + lp, n);
            memcpy(l + lp + 4, m->labels[i], n);
            lp += 4 + n;
        }
    }

    /* header and table last: they hold the checksums */
    memcpy(b, MAGIC, 8);
    wr32(b + 8, FMT_VERSION);
    wr32(b + 12, HEADER_SIZE);
    wr64(b + 16, total);
    wr32(b + 24, (uint32_t)nsec);
    wr64(b + 32, HEADER_SIZE);
    for (int i = 0; i < nsec; i++) {
        uint8_t *e = b + HEADER_SIZE + i * ENTRY_SIZE;
        int t = types[i];
        wr32(e, (uint32_t)t);
        wr64(e + 8, off[t]);
        wr64(e + 16, len[t]);
        wr32(e + 24, crc(b + off[t], len[t]));
    }
    wr32(b + 60, crc(b, 60));
    *out = b;
    *size = total;
    return CVY_OK;
}

/* ---- builders ----------------------------------------------------------------------------- */

void fmt_model_clear(fmt_model *m)
{
    if (!m) return;
    for (uint32_t i = 0; i < m->n_tensors; i++)
        if (m->tensors[i].owned) free((void *)m->tensors[i].data);
    for (int i = 0; i < m->n_labels; i++) free(m->labels[i]);
    free(m->labels);
    free(m->golden_in);
    free(m->golden_out);
    free(m->tensors);
    free(m->nodes);
    memset(m, 0, sizeof *m);
}

static int add_tensor(fmt_model *m, uint32_t kind, uint32_t ndim, const uint32_t *dims)
{
    if (ndim > 4) return -1;
    fmt_tensor *t = realloc(m->tensors, (m->n_tensors + 1) * sizeof *t);
    if (!t) return -1;
    m->tensors = t;
    fmt_tensor *n = &t[m->n_tensors];
    memset(n, 0, sizeof *n);
    n->kind = kind;
    n->ndim = ndim;
    for (uint32_t d = 0; d < ndim; d++) n->dims[d] = dims[d];
    return (int)m->n_tensors++;
}

int fmt_add_activation(fmt_model *m, uint32_t ndim, const uint32_t *dims)
{
    return add_tensor(m, FMT_ACTIVATION, ndim, dims);
}

int fmt_add_weight(fmt_model *m, uint32_t ndim, const uint32_t *dims, const float *data)
{
    int i = add_tensor(m, FMT_WEIGHT, ndim, dims);
    if (i < 0) return -1;
    fmt_tensor *t = &m->tensors[i];
    size_t n = (size_t)fmt_tensor_elems(t);
    float *copy = malloc(n * sizeof(float) + 1);
    if (!copy) {
        m->n_tensors--;
        return -1;
    }
    if (data)
        memcpy(copy, data, n * sizeof(float));
    else
        memset(copy, 0, n * sizeof(float));
    t->data = copy;
    t->owned = 1;
    return i;
}

int fmt_add_node(fmt_model *m, uint32_t op, uint32_t n_in, const uint32_t *in, uint32_t out,
                 const int32_t *ia, const float *fa, const char *name)
{
    if (n_in > FMT_MAX_INPUTS) return -1;
    fmt_node *nodes = realloc(m->nodes, (m->n_nodes + 1) * sizeof *nodes);
    if (!nodes) return -1;
    m->nodes = nodes;
    fmt_node *n = &nodes[m->n_nodes];
    memset(n, 0, sizeof *n);
    n->op = op;
    n->n_in = n_in;
    for (uint32_t k = 0; k < n_in; k++) n->in[k] = in[k];
    n->out = out;
    if (ia) memcpy(n->ia, ia, sizeof n->ia);
    if (fa) memcpy(n->fa, fa, sizeof n->fa);
    if (name) strncpy(n->name, name, FMT_NAME_LEN);
    return (int)m->n_nodes++;
}

int fmt_add_label(fmt_model *m, const char *label)
{
    char **l = realloc(m->labels, (size_t)(m->n_labels + 1) * sizeof *l);
    if (!l) return -1;
    m->labels = l;
    size_t n = strlen(label);
    if (n > FMT_MAX_LABEL) n = FMT_MAX_LABEL;
    char *c = malloc(n + 1);
    if (!c) return -1;
    memcpy(c, label, n);
    c[n] = 0;
    m->labels[m->n_labels] = c;
    return m->n_labels++;
}

int fmt_set_golden(fmt_model *m, uint32_t n, uint32_t in_size, const float *in, uint32_t out_size,
                   const float *out, float rtol, float atol)
{
    float *gi = malloc((size_t)n * in_size * sizeof(float) + 1);
    float *go = malloc((size_t)n * out_size * sizeof(float) + 1);
    if (!gi || !go) {
        free(gi);
        free(go);
        return -1;
    }
    memcpy(gi, in, (size_t)n * in_size * sizeof(float));
    memcpy(go, out, (size_t)n * out_size * sizeof(float));
    free(m->golden_in);
    free(m->golden_out);
    m->golden_in = gi;
    m->golden_out = go;
    m->n_golden = n;
    m->golden_in_size = in_size;
    m->golden_out_size = out_size;
    m->golden_rtol = rtol;
    m->golden_atol = atol;
    return 0;
}
