/* format.h - the .cvy file (docs/model-format.md): parse with full structural validation, and
 * serialize. The same fmt_model struct is the result of parsing and the input of writing, so
 * importers build one and call fmt_serialize. */
#ifndef CVY_FORMAT_H
#define CVY_FORMAT_H

#include <stddef.h>
#include <stdint.h>
#include "convoy.h"

#define FMT_VERSION     1
#define FMT_MAX_INPUTS  6
#define FMT_NAME_LEN    60
#define FMT_MAX_TENSORS 65536
#define FMT_MAX_DIM     (1u << 24)
#define FMT_MAX_ELEMS   (1ull << 31)
#define FMT_MAX_LABEL   255

enum fmt_section {
    FMT_SEC_GRAPH = 1,
    FMT_SEC_WEIGHTS = 2,
    FMT_SEC_PREPROC = 3,
    FMT_SEC_LABELS = 4,
    FMT_SEC_GOLDEN = 5
};
#define FMT_MAX_GOLDEN 64
enum fmt_tensor_kind { FMT_ACTIVATION = 0, FMT_WEIGHT = 1 };

/* Operator codes, fixed forever (append only). */
enum fmt_op {
    OP_CONV = 1,
    OP_MAXPOOL = 2,
    OP_AVGPOOL = 3,
    OP_GLOBALAVGPOOL = 4,
    OP_RELU = 5,
    OP_CLIP = 6,
    OP_LEAKYRELU = 7,
    OP_SIGMOID = 8,
    OP_HARDSIGMOID = 9,
    OP_HARDSWISH = 10,
    OP_ADD = 11,
    OP_MUL = 12,
    OP_CONCAT = 13,
    OP_FLATTEN = 14,
    OP_RESHAPE = 15,
    OP_GEMM = 16,
    OP_BATCHNORM = 17,
    OP_SOFTMAX = 18,
    OP_IDENTITY = 19,
    OP_COUNT_ = 20
};

/* Attribute slots of Conv and the pools (ia[]). */
enum { A_KH, A_KW, A_SH, A_SW, A_PT, A_PL, A_PB, A_PR, A_DH, A_DW, A_GROUP, A_CEIL, A_COUNT_PAD };

typedef struct fmt_tensor {
    uint32_t kind; /* enum fmt_tensor_kind */
    uint32_t ndim;
    uint32_t dims[4];
    const float *data; /* weights: points into the parsed buffer or into owned memory */
    int owned;         /* data was allocated by fmt_add_weight */
} fmt_tensor;

typedef struct fmt_node {
    uint32_t op;
    uint32_t n_in;
    uint32_t in[FMT_MAX_INPUTS];
    uint32_t out;
    int32_t ia[16];
    float fa[8];
    char name[FMT_NAME_LEN + 1];
} fmt_node;

typedef struct fmt_model {
    uint32_t n_tensors, n_nodes;
    fmt_tensor *tensors;
    fmt_node *nodes;
    uint32_t input, output, output_kind;
    cvy_preproc preproc;
    int n_labels;
    char **labels;
    /* optional self-test: n_golden images (golden_in_size floats each) and the outputs
     * (golden_out_size floats each) they must give within golden_rtol/golden_atol; owned */
    uint32_t n_golden, golden_in_size, golden_out_size;
    float golden_rtol, golden_atol;
    float *golden_in, *golden_out;
} fmt_model;

/* Parses and validates the structure of a .cvy buffer (header, table, checksums, records,
 * index ranges, weight placement). Weight data pointers point into buf, which must outlive
 * the result. Operator semantics and shapes are checked later by the graph module. On failure
 * out is left empty. */
cvy_status fmt_parse(const void *buf, size_t size, fmt_model *out, cvy_error *err);

/* Serializes m into a new malloc'd buffer (*out, *size). Fails on counts out of range. */
cvy_status fmt_serialize(const fmt_model *m, uint8_t **out, size_t *size, cvy_error *err);

/* Frees what fmt_parse or the builders below allocated and zeroes m. */
void fmt_model_clear(fmt_model *m);

/* Builders for importers and tests. Each returns the new tensor index, or -1 on OOM. */
int fmt_add_activation(fmt_model *m, uint32_t ndim, const uint32_t *dims);
int fmt_add_weight(fmt_model *m, uint32_t ndim, const uint32_t *dims, const float *data);
/* Appends a node; returns its index or -1 on OOM. ia/fa may be NULL (zeros). */
int fmt_add_node(fmt_model *m, uint32_t op, uint32_t n_in, const uint32_t *in, uint32_t out,
                 const int32_t *ia, const float *fa, const char *name);
int fmt_add_label(fmt_model *m, const char *label);
/* Copies n golden input/output pairs into m (replacing any); returns 0, or -1 on OOM. */
int fmt_set_golden(fmt_model *m, uint32_t n, uint32_t in_size, const float *in, uint32_t out_size,
                   const float *out, float rtol, float atol);

/* Number of elements of a tensor record (product of dims; 1 for ndim 0 weights). */
uint64_t fmt_tensor_elems(const fmt_tensor *t);
const char *fmt_op_name(uint32_t op);

#endif
