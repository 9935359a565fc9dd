/* onnx_import.h - ONNX ModelProto -> fmt_model (a .cvy in memory). The public entry points
 * (cvy_onnx_convert, cvy_model_load_onnx) live in onnx_import.c; this header adds the knobs
 * the conformance runner needs. */
#ifndef CVY_ONNX_IMPORT_H
#define CVY_ONNX_IMPORT_H

#include <stddef.h>
#include <stdint.h>

#include "convoy.h"
#include "format.h"

/* A graph input other than the first, bound as a constant from a serialized TensorProto. */
typedef struct onnx_binding {
    const char *name;
    const void *pb; /* TensorProto bytes */
    size_t size;
} onnx_binding;

typedef struct onnx_import_opts {
    const cvy_onnx_options *pub; /* NULL: cvy_onnx_default_options() */
    const char *dir;             /* directory of the model file, for external data (NULL: ".") */
    int unit_batch;   /* 0: dim 0 of the graph input is the batch (the usual case); 1: the
                       * ONNX tensors carry no batch dim, an implicit batch of 1 is added */
    int output_index; /* the graph output that becomes the model output */
    const onnx_binding *bind;
    int n_bind;
} onnx_import_opts;

/* Converts a serialized ModelProto into *out (cleared first). On failure out is left empty
 * and err names the node, operator and attribute at fault. */
cvy_status onnx_import(const void *buf, size_t size, const onnx_import_opts *o, fmt_model *out,
                       cvy_error *err);

/* A dense float tensor read from a serialized TensorProto (test data). */
typedef struct onnx_tensor {
    int dtype; /* ONNX TensorProto.DataType */
    int rank;
    int64_t dims[8];
    size_t n;
    float *data; /* malloc'd, n floats (NULL when n == 0) */
} onnx_tensor;

/* Reads a TensorProto; numeric dtypes are converted to float. Free data with free(). */
cvy_status onnx_tensor_read(const void *buf, size_t size, onnx_tensor *out, cvy_error *err);

#endif
