/* unit_format.c - the .cvy file: round trip, and every kind of damage rejected with its own
 * status and a message naming what is wrong. */
#include <check.h>
#include <stdio.h>
#include <zlib.h>

#include "format.h"
#include "testmodel.h"

/* A small valid model: conv -> relu -> maxpool -> flatten -> gemm -> softmax, with labels. */
static void small_model(fmt_model *m)
{
    tm_seed(11);
    uint32_t x = tm_begin(m, 1, 8, 8);
    int wd[4] = {4, 1, 3, 3}, bd[1] = {4}, gd[2] = {3, 64}, gb[1] = {3};
    uint32_t in[3] = {x, tm_weight(m, 4, wd, 0.5f), tm_weight(m, 1, bd, 0.1f)};
    int32_t conv[16] = {3, 3, 1, 1, 1, 1, 1, 1, 1, 1, 1};
    uint32_t c = tm_node(m, OP_CONV, 3, in, conv, NULL, "conv1");
    uint32_t r = tm_node(m, OP_RELU, 1, &c, NULL, NULL, "relu1");
    int32_t pool[16] = {2, 2, 2, 2, 0, 0, 0, 0, 1, 1};
    uint32_t p = tm_node(m, OP_MAXPOOL, 1, &r, pool, NULL, "pool1");
    uint32_t f = tm_node(m, OP_FLATTEN, 1, &p, NULL, NULL, "flat");
    uint32_t gin[3] = {f, tm_weight(m, 2, gd, 0.3f), tm_weight(m, 1, gb, 0.1f)};
    int32_t gi[16] = {1};
    float gf[8] = {1.0f, 1.0f};
    uint32_t g = tm_node(m, OP_GEMM, 3, gin, gi, gf, "fc");
    int32_t sm[16] = {-1};
    m->output = tm_node(m, OP_SOFTMAX, 1, &g, sm, NULL, "softmax");
    m->output_kind = 1;
    fmt_add_label(m, "cat");
    fmt_add_label(m, "dog");
    fmt_add_label(m, "ship");
    float g_in[2 * 64], g_out[2 * 3];
    tm_fill(g_in, 2 * 64);
    tm_fill(g_out, 2 * 3);
    fmt_set_golden(m, 2, 64, g_in, 3, g_out, 1e-4f, 1e-5f);
}

static uint8_t *small_file(size_t *size)
{
    fmt_model m;
    small_model(&m);
    uint8_t *buf;
    cvy_error err;
    ck_assert_int_eq(fmt_serialize(&m, &buf, size, &err), CVY_OK);
    fmt_model_clear(&m);
    return buf;
}

static uint32_t rd32(const uint8_t *p)
{
    return p[0] | p[1] << 8 | p[2] << 16 | (uint32_t)p[3] << 24;
}
static uint64_t rd64(const uint8_t *p) { return rd32(p) | (uint64_t)rd32(p + 4) << 32; }
static void wr32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++) p[i] = (uint8_t)(v >> 8 * i);
}

/* Offset and size of section `type` in a serialized file. */
static void section(const uint8_t *b, uint32_t type, uint64_t *off, uint64_t *len)
{
    uint32_t n = rd32(b + 24);
    for (uint32_t i = 0; i < n; i++) {
        const uint8_t *e = b + 64 + 32 * i;
        if (rd32(e) == type) {
            *off = rd64(e + 8);
            *len = rd64(e + 16);
            return;
        }
    }
    ck_abort_msg("no section %u", type);
}

/* Recomputes every checksum so a deliberate edit reaches the structural checks. */
static void refresh_crcs(uint8_t *b)
{
    uint32_t n = rd32(b + 24);
    for (uint32_t i = 0; i < n; i++) {
        uint8_t *e = b + 64 + 32 * i;
        wr32(e + 24, (uint32_t)crc32(0, b + rd64(e + 8), (uInt)rd64(e + 16)));
    }
    wr32(b + 60, (uint32_t)crc32(0, b, 60));
}

static cvy_status parse(const uint8_t *b, size_t size, cvy_error *err)
{
    fmt_model m;
    cvy_status s = fmt_parse(b, size, &m, err);
    fmt_model_clear(&m);
    return s;
}

/* Loads through the public API (structure + graph checks). */
static cvy_status load(const uint8_t *b, size_t size, cvy_error *err)
{
    cvy_engine *e = tm_engine(CVY_ISA_AUTO, 1);
    cvy_model *m = NULL;
    cvy_status s = cvy_model_load_memory(e, b, size, &m, err);
    ck_assert(s == CVY_OK ? m != NULL : m == NULL);
    cvy_model_free(m);
    cvy_engine_destroy(e);
    return s;
}

START_TEST(round_trip)
{
    fmt_model a;
    small_model(&a);
    size_t size;
    uint8_t *buf;
    ck_assert_int_eq(fmt_serialize(&a, &buf, &size, NULL), CVY_OK);
    fmt_model b;
    cvy_error err;
    ck_assert_msg(fmt_parse(buf, size, &b, &err) == CVY_OK, "%s", err.msg);
    ck_assert_uint_eq(a.n_tensors, b.n_tensors);
    ck_assert_uint_eq(a.n_nodes, b.n_nodes);
    ck_assert_uint_eq(a.output, b.output);
    ck_assert_uint_eq(b.output_kind, 1);
    ck_assert_int_eq(b.n_labels, 3);
    ck_assert_uint_eq(b.n_golden, 2);
    ck_assert_uint_eq(b.golden_in_size, 64);
    ck_assert_mem_eq(a.golden_out, b.golden_out, 6 * sizeof(float));
    ck_assert_float_eq(b.golden_rtol, 1e-4f);
    ck_assert_str_eq(b.labels[2], "ship");
    ck_assert_int_eq(b.preproc.width, 8);
    for (uint32_t t = 0; t < a.n_tensors; t++) {
        ck_assert_uint_eq(a.tensors[t].kind, b.tensors[t].kind);
        ck_assert_uint_eq(a.tensors[t].ndim, b.tensors[t].ndim);
        if (a.tensors[t].kind == FMT_WEIGHT) {
            ck_assert_uint_eq(((uintptr_t)b.tensors[t].data - (uintptr_t)buf) % 64, 0);
            ck_assert_mem_eq(a.tensors[t].data, b.tensors[t].data,
                             fmt_tensor_elems(&a.tensors[t]) * 4);
        }
    }
    for (uint32_t i = 0; i < a.n_nodes; i++) {
        ck_assert_str_eq(a.nodes[i].name, b.nodes[i].name);
        ck_assert_mem_eq(a.nodes[i].ia, b.nodes[i].ia, sizeof a.nodes[i].ia);
    }
    /* serializing the parse result gives the same bytes */
    uint8_t *again;
    size_t size2;
    ck_assert_int_eq(fmt_serialize(&b, &again, &size2, NULL), CVY_OK);
    ck_assert_uint_eq(size, size2);
    ck_assert_mem_eq(buf, again, size);
    ck_assert_int_eq(load(buf, size, &err), CVY_OK);
    free(again);
    free(buf);
    fmt_model_clear(&a);
    fmt_model_clear(&b);
}
END_TEST

START_TEST(header_damage)
{
    size_t size;
    uint8_t *b = small_file(&size);
    cvy_error err;
    b[0] ^= 1;
    ck_assert_int_eq(parse(b, size, &err), CVY_ERR_FORMAT);
    ck_assert_ptr_nonnull(strstr(err.msg, "magic"));
    b[0] ^= 1;
    b[8] = 2; /* version, header checksum stale */
    ck_assert_int_eq(parse(b, size, &err), CVY_ERR_CHECKSUM);
    ck_assert_ptr_nonnull(strstr(err.msg, "header"));
    refresh_crcs(b);
    ck_assert_int_eq(parse(b, size, &err), CVY_ERR_VERSION);
    ck_assert_ptr_nonnull(strstr(err.msg, "version 2"));
    free(b);
}
END_TEST

START_TEST(bit_flips_in_every_section)
{
    size_t size;
    uint8_t *b = small_file(&size);
    static const char *names[] = {"", "GRAPH", "WEIGHTS", "PREPROC", "LABELS", "GOLDEN"};
    cvy_error err;
    for (uint32_t t = 1; t <= 5; t++) {
        uint64_t off, len;
        section(b, t, &off, &len);
        for (uint64_t pos = off; pos < off + len; pos += len / 7 + 1) {
            b[pos] ^= 0x10;
            ck_assert_int_eq(parse(b, size, &err), CVY_ERR_CHECKSUM);
            ck_assert_msg(strstr(err.msg, names[t]) != NULL, "%s: %s", names[t], err.msg);
            b[pos] ^= 0x10;
        }
    }
    /* every single-bit flip anywhere is caught (header, table, sections, padding aside) */
    for (size_t pos = 0; pos < size; pos++) {
        uint8_t keep = b[pos];
        b[pos] ^= (uint8_t)(1u << (pos % 8));
        cvy_status s = load(b, size, &err);
        if (s == CVY_OK) { /* only alignment padding between sections may be ignored */
            int inside = pos < 64 + 32 * 5;
            for (uint32_t t = 1; t <= 5; t++) {
                uint64_t off, len;
                section(b, t, &off, &len);
                inside |= pos >= off && pos < off + len;
            }
            ck_assert_msg(!inside, "flip at %zu not detected", pos);
        }
        b[pos] = keep;
    }
    free(b);
}
END_TEST

START_TEST(truncation_everywhere)
{
    size_t size;
    uint8_t *b = small_file(&size);
    cvy_error err;
    /* at every section boundary and every 61 bytes in between */
    for (size_t cut = 0; cut < size; cut += (cut % 64 == 0) ? 1 : 61) {
        cvy_status s = load(b, cut, &err);
        ck_assert_msg(s == CVY_ERR_FORMAT, "cut at %zu gave %d", cut, s);
        ck_assert_msg(strlen(err.msg) > 0, "no message");
    }
    for (uint32_t t = 1; t <= 5; t++) {
        uint64_t off, len;
        section(b, t, &off, &len);
        ck_assert_int_eq(load(b, off, &err), CVY_ERR_FORMAT);
        ck_assert_int_eq(load(b, off + len - 1, &err), CVY_ERR_FORMAT);
    }
    free(b);
}
END_TEST

/* Edits the GRAPH section of a fresh file with valid checksums and returns the load status. */
static cvy_status graph_edit(size_t rec_off, uint32_t value, cvy_error *err)
{
    size_t size;
    uint8_t *b = small_file(&size);
    uint64_t off, len;
    section(b, 1, &off, &len);
    ck_assert_uint_lt(rec_off, len);
    wr32(b + off + rec_off, value);
    refresh_crcs(b);
    cvy_status s = load(b, size, err);
    free(b);
    return s;
}

#define TENSOR(i)   (32 + 48 * (size_t)(i))
#define NODE(i, nt) (32 + 48 * (size_t)(nt) + 192 * (size_t)(i))

START_TEST(hostile_graphs)
{
    fmt_model m;
    small_model(&m);
    uint32_t nt = m.n_tensors;
    fmt_model_clear(&m);
    cvy_error err;
    /* tensor 1 is the conv weight (4,1,3,3) */
    ck_assert_int_eq(graph_edit(TENSOR(1) + 8, 0, &err), CVY_ERR_SHAPE);        /* zero dim */
    ck_assert_int_eq(graph_edit(TENSOR(1) + 8, 1u << 30, &err), CVY_ERR_SHAPE); /* absurd dim */
    ck_assert_ptr_nonnull(strstr(err.msg, "tensor 1"));
    ck_assert_int_eq(graph_edit(TENSOR(1) + 4, 7, &err), CVY_ERR_SHAPE);               /* ndim */
    ck_assert_int_eq(graph_edit(TENSOR(1) + 24, 64u * 1000000, &err), CVY_ERR_FORMAT); /* offset */
    ck_assert_ptr_nonnull(strstr(err.msg, "outside WEIGHTS"));
    ck_assert_int_eq(graph_edit(TENSOR(1) + 24, 4, &err), CVY_ERR_FORMAT); /* misaligned */
    ck_assert_int_eq(graph_edit(TENSOR(1) + 32, 12, &err), CVY_ERR_SHAPE); /* byte count */
    ck_assert_int_eq(graph_edit(TENSOR(0) + 8, 3, &err), CVY_ERR_FORMAT);  /* input vs PREPROC */
    /* nodes: 0 conv, 1 relu, 2 pool, 3 flatten, 4 gemm, 5 softmax */
    ck_assert_int_eq(graph_edit(NODE(1, nt), 999, &err), CVY_ERR_UNSUPPORTED); /* op */
    ck_assert_ptr_nonnull(strstr(err.msg, "relu1"));
    ck_assert_int_eq(graph_edit(NODE(1, nt) + 8, 9999, &err), CVY_ERR_FORMAT); /* input index */
    ck_assert_int_eq(graph_edit(NODE(0, nt) + 36, 5, &err), CVY_ERR_SHAPE);    /* kernel vs W */
    ck_assert_ptr_nonnull(strstr(err.msg, "conv1"));
    ck_assert_int_eq(graph_edit(NODE(0, nt) + 36 + 4 * A_SH, 0, &err), CVY_ERR_UNSUPPORTED);
    ck_assert_int_eq(graph_edit(NODE(0, nt) + 36 + 4 * A_PT, 9, &err), CVY_ERR_UNSUPPORTED);
    ck_assert_int_eq(graph_edit(NODE(0, nt) + 36 + 4 * A_GROUP, 3, &err), CVY_ERR_UNSUPPORTED);
    ck_assert_int_eq(graph_edit(NODE(2, nt) + 36 + 4 * A_CEIL, 5, &err), CVY_ERR_UNSUPPORTED);
    /* relu reads the pool's output: a cycle */
    small_model(&m);
    uint32_t conv_out = m.nodes[0].out, pool_out = m.nodes[2].out, flat_out = m.nodes[3].out;
    fmt_model_clear(&m);
    ck_assert_int_eq(graph_edit(NODE(1, nt) + 8, pool_out, &err), CVY_ERR_FORMAT);
    ck_assert_ptr_nonnull(strstr(err.msg, "cycle"));
    /* the pool writes the conv's output too: two producers */
    ck_assert_int_eq(graph_edit(NODE(2, nt) + 32, conv_out, &err), CVY_ERR_FORMAT);
    ck_assert_ptr_nonnull(strstr(err.msg, "already produced"));
    /* the graph output points at the flatten: gemm and softmax become dead */
    ck_assert_int_eq(graph_edit(12, flat_out, &err), CVY_ERR_FORMAT);
    ck_assert_ptr_nonnull(strstr(err.msg, "does not contribute"));
}
END_TEST

START_TEST(hostile_sections)
{
    size_t size;
    uint8_t *b = small_file(&size);
    cvy_error err;
    uint64_t off, len;
    /* PREPROC std of zero */
    section(b, 3, &off, &len);
    uint8_t keep[64];
    memcpy(keep, b + off, 64);
    memset(b + off + 36, 0, 4);
    refresh_crcs(b);
    ck_assert_int_eq(load(b, size, &err), CVY_ERR_FORMAT);
    ck_assert_ptr_nonnull(strstr(err.msg, "PREPROC"));
    memcpy(b + off, keep, 64);
    /* GOLDEN: counts that do not match its size, or the model */
    section(b, 5, &off, &len);
    wr32(b + off, 3);
    refresh_crcs(b);
    ck_assert_int_eq(load(b, size, &err), CVY_ERR_FORMAT);
    ck_assert_ptr_nonnull(strstr(err.msg, "GOLDEN"));
    wr32(b + off, 2);
    refresh_crcs(b);
    ck_assert_int_eq(load(b, size, &err), CVY_OK);
    /* LABELS: a length past the end */
    section(b, 4, &off, &len);
    wr32(b + off + 4, 1000);
    refresh_crcs(b);
    ck_assert_int_eq(load(b, size, &err), CVY_ERR_FORMAT);
    ck_assert_ptr_nonnull(strstr(err.msg, "LABELS"));
    free(b);
    /* a section table entry pointing past the end, a duplicate type, an unknown type */
    b = small_file(&size);
    wr32(b + 64 + 8, (uint32_t)size + 64);
    refresh_crcs(b);
    ck_assert_int_eq(load(b, size, &err), CVY_ERR_FORMAT);
    free(b);
    b = small_file(&size);
    wr32(b + 64 + 32, 1);
    refresh_crcs(b);
    ck_assert_int_eq(load(b, size, &err), CVY_ERR_FORMAT);
    ck_assert_ptr_nonnull(strstr(err.msg, "twice"));
    wr32(b + 64 + 32, 77);
    refresh_crcs(b);
    ck_assert_int_eq(load(b, size, &err), CVY_ERR_FORMAT);
    ck_assert_ptr_nonnull(strstr(err.msg, "unknown type"));
    free(b);
    /* random garbage never crashes */
    tm_seed(99);
    for (int i = 0; i < 200; i++) {
        size_t n = (size_t)tm_randint(0, 600);
        uint8_t *g = malloc(n + 1);
        for (size_t k = 0; k < n; k++) g[k] = (uint8_t)tm_randint(0, 255);
        if (n >= 8) memcpy(g, "CVYMODEL", 8);
        ck_assert_int_ne(load(g, n, &err), CVY_OK);
        free(g);
    }
}
END_TEST

Suite *format_suite(void)
{
    Suite *s = suite_create("format");
    TCase *tc = tcase_create("cvy");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, round_trip);
    tcase_add_test(tc, header_damage);
    tcase_add_test(tc, bit_flips_in_every_section);
    tcase_add_test(tc, truncation_everywhere);
    tcase_add_test(tc, hostile_graphs);
    tcase_add_test(tc, hostile_sections);
    suite_add_tcase(s, tc);
    return s;
}
