/*
 * convoy.h - the public API of the convoy CNN inference engine.
 *
 * The engine loads a serialized CNN (a .cvy file, see docs/model-format.md), plans it once
 * (topological order, batch-norm folded, conv+bias+activation fused, one activation arena)
 * and runs batches of NCHW float32 images through it.
 *
 * Objects and their lifetimes:
 *   cvy_engine   CPU features, kernel dispatch and the one thread pool. Create one per process.
 *   cvy_model    A loaded, planned model with pre-packed weights. Read-only after load, shared
 *                by any number of threads. Must be freed before its engine is destroyed.
 *   cvy_context  Per-run state (activation arena, scratch) for one model and a maximum batch.
 *                One thread uses a context at a time; several contexts of the same or of
 *                different models may run at once.
 *
 * Typical use:
 *
 *     cvy_engine *eng; cvy_model *m; cvy_context *ctx; cvy_error err;
 *     cvy_engine_params ep = cvy_engine_default_params();
 *     if (cvy_engine_create(&ep, &eng, &err) != CVY_OK) die(err.msg);
 *     if (cvy_model_load_file(eng, "models/fashion-mnist.cvy", &m, &err) != CVY_OK) die(err.msg);
 *     if (cvy_context_create(m, 16, &ctx, &err) != CVY_OK) die(err.msg);
 *     float *in = cvy_context_input(ctx);        // 16 * cvy_model_input_size(m) floats
 *     ... fill n images (decode with cvy_image_decode, then cvy_image_preprocess) ...
 *     cvy_context_run(ctx, n, NULL, out, &err);  // out: n * cvy_model_output_size(m) floats
 *     cvy_prediction top[5];
 *     int k = cvy_model_topk(m, out, 5, top);    // labels and probabilities of image 0
 *     cvy_context_destroy(ctx); cvy_model_free(m); cvy_engine_destroy(eng);
 *
 * Errors: every fallible call returns a cvy_status and, when err is not NULL, leaves a message
 * naming what went wrong in err->msg. No function calls exit() or abort() on bad input.
 * Every destroy/free function accepts NULL.
 */
#ifndef CONVOY_H
#define CONVOY_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---- status and errors ---------------------------------------------------------------- */

typedef enum cvy_status {
    CVY_OK = 0,
    CVY_ERR_ARG = -1,         /* an argument from the caller is invalid */
    CVY_ERR_NOMEM = -2,       /* an allocation failed */
    CVY_ERR_IO = -3,          /* a file could not be opened or read */
    CVY_ERR_FORMAT = -4,      /* malformed model file: magic, sizes, offsets, references */
    CVY_ERR_VERSION = -5,     /* model file format version not supported */
    CVY_ERR_CHECKSUM = -6,    /* a checksum in the model file does not match */
    CVY_ERR_SHAPE = -7,       /* shapes are inconsistent, absurd or overflow */
    CVY_ERR_UNSUPPORTED = -8, /* unknown operator or unsupported attribute value */
    CVY_ERR_IMAGE = -9,       /* the image is corrupt or of an unsupported format */
    CVY_ERR_LIMIT = -10,      /* the image exceeds a configured limit (pixels) */
    CVY_ERR_INTERNAL = -11,   /* a broken invariant: a bug in convoy */
    CVY_ERR_MISMATCH = -12,   /* the model's golden self-test gave other outputs */
} cvy_status;

/* Short constant name of a status ("ok", "format", ...). Never NULL. Thread-safe. */
const char *cvy_status_str(cvy_status s);

/* Caller-owned error detail, filled on failure by any function that takes one. */
typedef struct cvy_error {
    char msg[512];
} cvy_error;

/* ---- engine ----------------------------------------------------------------------------- */

typedef struct cvy_engine cvy_engine;

typedef enum cvy_isa {
    CVY_ISA_AUTO = 0,   /* best the CPU has (env CONVOY_ISA=ref|avx2|avx512 caps it) */
    CVY_ISA_REF = 1,    /* plain C reference kernels only */
    CVY_ISA_AVX2 = 2,   /* AVX2 + FMA */
    CVY_ISA_AVX512 = 3, /* AVX-512F (falls back to AVX2 kernels where none exists) */
} cvy_isa;

typedef struct cvy_engine_params {
    int threads;  /* threads that run kernels, the caller included; 0 = online CPUs */
    cvy_isa isa;  /* highest instruction set to use */
    int winograd; /* 1: Winograd F(4,3) for 3x3 stride-1 convolutions where it pays (AVX-512;
                   * about 1e-6 relative error, see the README); 0: direct convolution only */
} cvy_engine_params;

/* Defaults: threads = 0 (all cores), isa = AUTO, winograd = 1 (0 when the environment sets
 * CONVOY_WINOGRAD=0). */
cvy_engine_params cvy_engine_default_params(void);

/* Detects the CPU, picks kernels and starts the thread pool (threads-1 workers; the calling
 * thread is worker 0 of every run). Idle workers sleep, they do not spin. */
cvy_status cvy_engine_create(const cvy_engine_params *p, cvy_engine **out, cvy_error *err);
void cvy_engine_destroy(cvy_engine *e);
int cvy_engine_threads(const cvy_engine *e);
/* Name of the instruction set the kernels use: "ref", "avx2" or "avx512". */
const char *cvy_engine_isa(const cvy_engine *e);

/* ---- models ----------------------------------------------------------------------------- */

typedef struct cvy_model cvy_model;

typedef enum cvy_color { CVY_COLOR_GRAY = 0, CVY_COLOR_RGB = 1, CVY_COLOR_BGR = 2 } cvy_color;
typedef enum cvy_resize {
    CVY_RESIZE_STRETCH = 0,      /* scale to width x height, ignoring the aspect ratio */
    CVY_RESIZE_SHORTER_CROP = 1, /* shorter side to resize_shorter, then center crop */
} cvy_resize;

/* How an image becomes the model's input: decode, convert colour, resize, then per channel
 * value = (pixel * scale - mean[c]) / std[c], laid out CHW. */
typedef struct cvy_preproc {
    int width, height; /* model input size in pixels */
    cvy_color color;   /* GRAY: 1 channel; RGB/BGR: 3 channels in that order */
    cvy_resize resize;
    int resize_shorter; /* SHORTER_CROP only: length of the shorter side before the crop
                         * (0 = min(width, height); never less than the crop needs) */
    float scale;        /* e.g. 1/255 */
    float mean[3], std[3];
} cvy_preproc;

/* Loads and plans a model for engine e. The file is validated completely before use; a
 * truncated, corrupted or hostile file yields an error naming what is wrong. load_memory
 * copies what it needs from data. The model keeps a pointer to e. Thread-safe. */
cvy_status cvy_model_load_file(cvy_engine *e, const char *path, cvy_model **out, cvy_error *err);
cvy_status cvy_model_load_memory(cvy_engine *e, const void *data, size_t size, cvy_model **out,
                                 cvy_error *err);
void cvy_model_free(cvy_model *m);

/* Queries: all read-only and thread-safe. */
void cvy_model_input_shape(const cvy_model *m, int *c, int *h, int *w);
size_t cvy_model_input_size(const cvy_model *m);         /* floats per image: C*H*W */
size_t cvy_model_output_size(const cvy_model *m);        /* floats per image in the output */
int cvy_model_output_is_probability(const cvy_model *m); /* 1: ends in softmax; 0: logits */
const cvy_preproc *cvy_model_preproc(const cvy_model *m);
int cvy_model_label_count(const cvy_model *m);
/* Label i, or NULL when the model has no label i. The string lives as long as m. */
const char *cvy_model_label(const cvy_model *m, int i);
/* 16 lowercase hex digits: a hash of the model file's bytes (the model version). */
const char *cvy_model_hash(const cvy_model *m);
size_t cvy_model_param_count(const cvy_model *m);
double cvy_model_flops(const cvy_model *m); /* floating-point operations per image */
size_t cvy_model_file_size(const cvy_model *m);

/* Golden self-test: runs the inputs the model file carries (its optional GOLDEN section) and
 * compares the outputs with the ones stored beside them, within the stored tolerances.
 * *images (may be NULL) receives how many were checked, 0 when the file carries none.
 * Returns CVY_OK, or CVY_ERR_MISMATCH naming the first value that differs. Creates and
 * frees its own context (allocates); thread-safe. */
cvy_status cvy_model_self_test(const cvy_model *m, int *images, cvy_error *err);

/* One step of the plan (after fusion), for `convoy inspect`. Strings live as long as m. */
typedef struct cvy_layer_info {
    const char *name; /* node name from the file (first node of a fused group) */
    const char *op;   /* e.g. "Conv+Relu", "MaxPool", "Gemm" */
    const char *algo; /* kernel chosen at load, e.g. "im2col+sgemm", "depthwise-avx2" */
    int ndim;         /* output dims per image (batch excluded) */
    int dims[4];
    size_t params;
    double flops; /* per image */
} cvy_layer_info;
int cvy_model_layer_count(const cvy_model *m);
cvy_status cvy_model_layer(const cvy_model *m, int i, cvy_layer_info *out);

/* One classification result. label may be NULL if the model has no labels. */
typedef struct cvy_prediction {
    int index;
    float score; /* probability (softmax applied when the model outputs logits) */
    const char *label;
} cvy_prediction;

/* The k best classes of one image's output row (cvy_model_output_size(m) floats), best
 * first, ties by lower index. Returns how many were written (min(k, classes)). */
int cvy_model_topk(const cvy_model *m, const float *row, int k, cvy_prediction *out);

/* ---- run contexts ----------------------------------------------------------------------- */

typedef struct cvy_context cvy_context;

/* Allocates and touches the activation arena and scratch for batches of up to max_batch
 * images. Nothing is allocated by cvy_context_run afterwards. */
cvy_status cvy_context_create(const cvy_model *m, int max_batch, cvy_context **out, cvy_error *err);
void cvy_context_destroy(cvy_context *c);
int cvy_context_max_batch(const cvy_context *c);
/* The context's own input buffer: max_batch * cvy_model_input_size floats, NCHW. */
float *cvy_context_input(cvy_context *c);

/* Runs n images (1 <= n <= max_batch). input: n*C*H*W floats (any alignment), or NULL to use
 * the context's input buffer. output: n * cvy_model_output_size floats. Each image's output does
 * not depend on n, on the other images, or on the thread count. Not thread-safe per context. */
cvy_status cvy_context_run(cvy_context *c, int n, const float *input, float *output,
                           cvy_error *err);

/* Profiling: when on, every run records the wall time of each plan step (one per
 * cvy_model_layer), read back with cvy_context_layer_ms after the run: an array of
 * cvy_model_layer_count(m) milliseconds, valid until the next run. Off by default; the
 * timing costs two clock reads per step. */
void cvy_context_set_profiling(cvy_context *c, int on);
const double *cvy_context_layer_ms(const cvy_context *c);

/* ---- images ----------------------------------------------------------------------------- */

/* A decoded 8-bit image, rows top to bottom, channels interleaved (1 gray, 3 RGB). */
typedef struct cvy_image {
    int width, height, channels;
    uint8_t *pixels; /* owned; release with cvy_image_release */
} cvy_image;

/* Reads only the header of an encoded image (JPEG, PNG, BMP, GIF, TGA, PNM, ...): its size
 * and the file's own channel count (1 gray, 2 gray+alpha, 3 RGB, 4 RGBA). Thread-safe. */
cvy_status cvy_image_probe(const void *data, size_t size, int *width, int *height, int *channels,
                           cvy_error *err);

/* Decodes an image to 8-bit gray or RGB (as `channels` asks: 1 or 3). The header is checked
 * first: more than max_pixels pixels (0 = no limit) returns CVY_ERR_LIMIT before decoding.
 * Thread-safe. */
cvy_status cvy_image_decode(const void *data, size_t size, int channels, long max_pixels,
                            cvy_image *out, cvy_error *err);
void cvy_image_release(cvy_image *img);

/* Applies the model's preprocessing (colour, resize, scale, mean/std) to img and writes
 * cvy_model_input_size(m) floats, CHW, to out. Thread-safe. */
cvy_status cvy_image_preprocess(const cvy_model *m, const cvy_image *img, float *out,
                                cvy_error *err);

/* ---- ONNX import ------------------------------------------------------------------------ */

/* How an ONNX file becomes a model: what the file cannot say (labels, the image size when H/W
 * are dynamic, the preprocessing). The same fields as `convoy convert`'s flags and as the
 * optional `<name>.json` sidecar convoyd reads next to `<name>.onnx`. */
typedef struct cvy_onnx_options {
    const char *labels_path; /* text file, one label per line (NULL: no labels) */
    int width, height;       /* input size; 0 = the model's own (required when H/W are dynamic;
                              * must agree with fixed dims) */
    int color;               /* a cvy_color, or -1: GRAY for 1 channel, RGB for 3 */
    float scale;             /* applied to the 0..255 pixel first */
    float mean[3], std[3];   /* per channel: value = (pixel * scale - mean[c]) / std[c] */
    cvy_resize resize;
    int resize_shorter; /* SHORTER_CROP only, see cvy_preproc */
} cvy_onnx_options;

/* Defaults: no labels, the model's size, color -1 (from the channel count), scale 1/255,
 * mean 0, std 1, resize STRETCH. */
cvy_onnx_options cvy_onnx_default_options(void);

/* Converts the ONNX model at onnx_path (opsets 7..17; external data is read relative to the
 * file's directory) into .cvy bytes: initializers become weights, shape arithmetic (Shape,
 * Gather, Slice, Squeeze/Unsqueeze, Concat, Cast, Constant) is folded for the fixed input
 * size, Pad is folded into the following Conv/pool, Div/Sub by constants become Mul/Add,
 * Dropout/Identity vanish; batch-norm and activations stay nodes that the planner fuses.
 * o may be NULL (defaults). On success *cvy_out is a malloc'd buffer of *size bytes that the
 * caller free()s. On failure err names the node, operator and attribute (or the file
 * problem) and nothing is returned. Thread-safe. */
cvy_status cvy_onnx_convert(const char *onnx_path, const cvy_onnx_options *o, uint8_t **cvy_out,
                            size_t *size, cvy_error *err);

/* cvy_onnx_convert followed by cvy_model_load_memory: loads an .onnx file directly. */
cvy_status cvy_model_load_onnx(cvy_engine *e, const char *path, const cvy_onnx_options *o,
                               cvy_model **out, cvy_error *err);

#ifdef __cplusplus
}
#endif
#endif /* CONVOY_H */
