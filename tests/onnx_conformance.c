/*
 * onnx_conformance.c - build/test_onnx: runs the ONNX backend node tests that Debian's
 * libonnx-testdata ships (data/node/test_*) through the importer and the engine.
 *
 *   build/test_onnx [DIR [TEST...]]   DIR defaults to /usr/share/libonnx-testdata/data/node
 *
 * For each test: load model.onnx, feed test_data_set_N/input_0.pb as the batch (the other
 * graph inputs are bound as constants from their .pb at conversion time), compare every
 * output_k.pb (rtol 1e-3, atol 1e-5). A test is "unsupported" when the importer or the engine
 * says CVY_ERR_UNSUPPORTED (or its tensors cannot be expressed: non-float data, empty
 * tensors), with the reason; any other error or a wrong value is a failure. The exit status is
 * non-zero when a test whose operators are all claimed by convoy fails.
 */
#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "convoy.h"
#include "onnx.pb-c.h"
#include "onnx_import.h"

#define RTOL   1e-3
#define ATOL   1e-5
#define MAX_IO 16

/* Operators convoy claims: every test made only of these must pass. */
static const char *const CLAIMED[] = {"Conv",        "MaxPool",
                                      "AveragePool", "GlobalAveragePool",
                                      "Relu",        "Clip",
                                      "LeakyRelu",   "Sigmoid",
                                      "HardSigmoid", "HardSwish",
                                      "Add",         "Mul",
                                      "Concat",      "Flatten",
                                      "Reshape",     "Gemm",
                                      "MatMul",      "BatchNormalization",
                                      "Softmax",     "Dropout",
                                      "Identity",    "Pad",
                                      "Transpose",   "Split",
                                      "ReduceMean",  "Squeeze",
                                      "Unsqueeze",   "Constant",
                                      "Div",         "Sub",
                                      NULL};

enum { R_PASS, R_FAIL, R_UNSUP };

static int read_all(const char *path, uint8_t **buf, size_t *size)
{
    FILE *f = fopen(path, "rb");
    if (!f) return -1;
    size_t cap = 1 << 16, n = 0;
    uint8_t *b = malloc(cap);
    for (size_t r; b && (r = fread(b + n, 1, cap - n, f)) > 0;) {
        n += r;
        if (n == cap) {
            uint8_t *nb = realloc(b, cap *= 2);
            if (!nb) {
                free(b);
                b = NULL;
            }
            b = nb;
        }
    }
    fclose(f);
    if (!b) return -1;
    *buf = b;
    *size = n;
    return 0;
}

static int is_claimed(const char *op)
{
    for (int i = 0; CLAIMED[i]; i++)
        if (!strcmp(CLAIMED[i], op)) return 1;
    return 0;
}

typedef struct tensor_file {
    uint8_t *pb;
    size_t size;
    onnx_tensor t;
} tensor_file;

static int load_tensor(const char *dir, const char *kind, int k, tensor_file *tf, char *why,
                       size_t wl)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/%s_%d.pb", dir, kind, k);
    memset(tf, 0, sizeof *tf);
    if (read_all(path, &tf->pb, &tf->size) != 0) return -1;
    cvy_error err;
    if (onnx_tensor_read(tf->pb, tf->size, &tf->t, &err) != CVY_OK) {
        snprintf(why, wl, "%s_%d.pb: %s", kind, k, err.msg);
        return -2;
    }
    return 0;
}

static void free_tensor(tensor_file *tf)
{
    free(tf->pb);
    free(tf->t.data);
    memset(tf, 0, sizeof *tf);
}

/* Runs one data set; returns R_*, with the reason in why. */
static int run_set(cvy_engine *eng, const uint8_t *model, size_t msize, const Onnx__ModelProto *mp,
                   const char *set, char *why, size_t wl)
{
    const Onnx__GraphProto *g = mp->graph;
    /* graph inputs that are not initializers, in order */
    const char *names[MAX_IO];
    int nin = 0;
    for (size_t i = 0; i < g->n_input && nin < MAX_IO; i++) {
        int init = 0;
        for (size_t j = 0; j < g->n_initializer; j++)
            if (g->initializer[j]->name && !strcmp(g->initializer[j]->name, g->input[i]->name))
                init = 1;
        if (!init) names[nin++] = g->input[i]->name;
    }
    tensor_file in[MAX_IO], out[MAX_IO];
    int n_in = 0, n_out = 0, res = R_PASS;
    memset(in, 0, sizeof in);
    memset(out, 0, sizeof out);
    for (int k = 0; k < nin; k++) {
        int r = load_tensor(set, "input", k, &in[k], why, wl);
        if (r == -1) break;
        n_in = k + 1;
        if (r == -2) {
            res = R_UNSUP;
            goto done;
        }
    }
    for (int k = 0; k < MAX_IO; k++) {
        int r = load_tensor(set, "output", k, &out[k], why, wl);
        if (r == -1) break;
        n_out = k + 1;
        if (r == -2) {
            res = R_UNSUP;
            goto done;
        }
    }
    if (n_in < 1 || n_in != nin || n_out < 1) {
        snprintf(why, wl, "%d inputs for %d graph inputs, %d outputs", n_in, nin, n_out);
        res = n_in == 0 ? R_UNSUP : R_FAIL;
        goto done;
    }
    if (in[0].t.dtype != 1) {
        snprintf(why, wl, "input of data type %d (only float)", in[0].t.dtype);
        res = R_UNSUP;
        goto done;
    }
    if (in[0].t.n == 0) {
        snprintf(why, wl, "empty input tensor");
        res = R_UNSUP;
        goto done;
    }
    onnx_binding bind[MAX_IO];
    for (int k = 1; k < n_in; k++) bind[k - 1] = (onnx_binding){names[k], in[k].pb, in[k].size};
    for (int o = 0; o < n_out && res == R_PASS; o++) {
        if (out[o].t.dtype != 1) {
            snprintf(why, wl, "output %d of data type %d (only float)", o, out[o].t.dtype);
            res = R_UNSUP;
            break;
        }
        cvy_model *m = NULL;
        cvy_error err = {{0}}, err1 = {{0}};
        cvy_status s = CVY_ERR_INTERNAL, s1 = CVY_OK;
        int unit = 0;
        for (unit = 0; unit < 2; unit++) {
            onnx_import_opts io = {.unit_batch = unit,
                                   .output_index = o,
                                   .bind = bind,
                                   .n_bind = n_in - 1,
                                   .dir = set};
            fmt_model fm;
            s = onnx_import(model, msize, &io, &fm, &err);
            uint8_t *cvy = NULL;
            size_t cs = 0;
            if (s == CVY_OK) s = fmt_serialize(&fm, &cvy, &cs, &err);
            fmt_model_clear(&fm);
            if (s == CVY_OK) s = cvy_model_load_memory(eng, cvy, cs, &m, &err);
            free(cvy);
            if (s == CVY_OK) break;
            if (unit == 0) {
                s1 = s;
                err1 = err;
            }
        }
        if (s != CVY_OK) { /* report the first (usual batch) attempt's reason */
            snprintf(why, wl, "%s", err1.msg);
            res = s1 == CVY_ERR_UNSUPPORTED ? R_UNSUP : R_FAIL;
            break;
        }
        int n = unit ? 1 : (int)in[0].t.dims[0];
        size_t isz = cvy_model_input_size(m), osz = cvy_model_output_size(m);
        if (n < 1 || (size_t)n * isz != in[0].t.n || (size_t)n * osz != out[o].t.n) {
            snprintf(why, wl, "sizes: batch %d x %zu in (have %zu), x %zu out (expect %zu)", n, isz,
                     in[0].t.n, osz, out[o].t.n);
            res = R_FAIL;
        }
        cvy_context *ctx = NULL;
        float *y = res == R_PASS ? malloc(out[o].t.n * sizeof(float)) : NULL;
        if (res == R_PASS && (!y || cvy_context_create(m, n, &ctx, &err) != CVY_OK ||
                              cvy_context_run(ctx, n, in[0].t.data, y, &err) != CVY_OK)) {
            snprintf(why, wl, "run: %s", err.msg);
            res = R_FAIL;
        }
        for (size_t i = 0; res == R_PASS && i < out[o].t.n; i++) {
            double a = y[i], b = out[o].t.data[i];
            int ok = (a != a && b != b) || (a == b) || fabs(a - b) <= ATOL + RTOL * fabs(b);
            if (!ok) {
                snprintf(why, wl, "output %d[%zu] = %.7g, expected %.7g", o, i, a, b);
                res = R_FAIL;
            }
        }
        free(y);
        cvy_context_destroy(ctx);
        cvy_model_free(m);
    }
done:
    for (int k = 0; k < MAX_IO; k++) {
        free_tensor(&in[k]);
        free_tensor(&out[k]);
    }
    return res;
}

static int run_test(cvy_engine *eng, const char *dir, const char *name, int *claimed, char *why,
                    size_t wl)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/%s/model.onnx", dir, name);
    uint8_t *model;
    size_t msize;
    *claimed = 0;
    if (read_all(path, &model, &msize) != 0) {
        snprintf(why, wl, "no model.onnx");
        return R_UNSUP;
    }
    Onnx__ModelProto *mp = onnx__model_proto__unpack(NULL, msize, model);
    if (!mp || !mp->graph) {
        snprintf(why, wl, "model.onnx does not parse");
        free(model);
        if (mp) onnx__model_proto__free_unpacked(mp, NULL);
        return R_FAIL;
    }
    *claimed = mp->graph->n_node > 0;
    for (size_t i = 0; i < mp->graph->n_node; i++)
        if (!mp->graph->node[i]->op_type || !is_claimed(mp->graph->node[i]->op_type)) *claimed = 0;
    int res = R_UNSUP;
    snprintf(why, wl, "no test data set");
    for (int k = 0; k < 64; k++) {
        char set[4096];
        struct stat st;
        snprintf(set, sizeof set, "%s/%s/test_data_set_%d", dir, name, k);
        if (stat(set, &st) != 0) break;
        res = run_set(eng, model, msize, mp, set, why, wl);
        if (res != R_PASS) break;
    }
    onnx__model_proto__free_unpacked(mp, NULL);
    free(model);
    return res;
}

static int by_name(const struct dirent **a, const struct dirent **b)
{
    return strcmp((*a)->d_name, (*b)->d_name);
}

static int test_dir(const struct dirent *d) { return strncmp(d->d_name, "test_", 5) == 0; }

int main(int argc, char **argv)
{
    int ai = 1;
    const char *dir = ai < argc ? argv[ai++] : "/usr/share/libonnx-testdata/data/node";
    cvy_engine *eng;
    cvy_error err;
    cvy_engine_params ep = cvy_engine_default_params();
    ep.threads = 1;
    if (cvy_engine_create(&ep, &eng, &err) != CVY_OK) {
        fprintf(stderr, "test_onnx: %s\n", err.msg);
        return 1;
    }
    struct dirent **list = NULL;
    int n = 0;
    if (ai < argc) {
        n = argc - ai;
        list = calloc((size_t)n, sizeof *list);
        for (int i = 0; i < n; i++) {
            list[i] = calloc(1, sizeof **list);
            snprintf(list[i]->d_name, sizeof list[i]->d_name, "%s", argv[ai + i]);
        }
    } else {
        n = scandir(dir, &list, test_dir, by_name);
        if (n < 0) {
            fprintf(stderr, "test_onnx: cannot read %s (install libonnx-testdata)\n", dir);
            cvy_engine_destroy(eng);
            return 1;
        }
    }
    int passed = 0, failed = 0, unsup = 0, claimed_failed = 0;
    for (int i = 0; i < n; i++) {
        char why[600] = "";
        int claimed;
        int r = run_test(eng, dir, list[i]->d_name, &claimed, why, sizeof why);
        if (r == R_PASS) {
            passed++;
            printf("passed      %s\n", list[i]->d_name);
        } else if (r == R_FAIL) {
            failed++;
            claimed_failed += claimed;
            printf("failed      %s%s: %s\n", list[i]->d_name, claimed ? " [claimed]" : "", why);
        } else {
            unsup++;
            printf("unsupported %s: %s\n", list[i]->d_name, why);
        }
        free(list[i]);
    }
    free(list);
    cvy_engine_destroy(eng);
    printf("%d unsupported; %d failed tests use only claimed operators\n", unsup, claimed_failed);
    printf("%d passed, %d failed\n", passed, failed);
    return claimed_failed ? 1 : 0;
}
