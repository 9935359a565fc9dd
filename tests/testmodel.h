/* testmodel.h - helpers for engine tests: a deterministic random generator and small builders
 * that make .cvy models in memory through the format module. Header-only (static). */
#ifndef CVY_TESTMODEL_H
#define CVY_TESTMODEL_H

#include <check.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "convoy.h"
#include "format.h"

static unsigned long long tm_state = 88172645463325252ull;

static inline void tm_seed(unsigned long long s) { tm_state = s * 2654435761ull + 1; }

/* Uniform float in [-1, 1). */
static inline float tm_rand(void)
{
    tm_state ^= tm_state << 13;
    tm_state ^= tm_state >> 7;
    tm_state ^= tm_state << 17;
    return (float)((tm_state >> 11) * (1.0 / 9007199254740992.0)) * 2.0f - 1.0f;
}

static inline int tm_randint(int lo, int hi) /* inclusive */
{
    return lo + (int)((tm_rand() + 1.0f) * 0.5f * (float)(hi - lo + 1)) % (hi - lo + 1);
}

static inline void tm_fill(float *x, size_t n)
{
    for (size_t i = 0; i < n; i++) x[i] = tm_rand();
}

/* Starts a model with a (c, h, w) input; returns the input tensor index. */
static inline uint32_t tm_begin(fmt_model *m, int c, int h, int w)
{
    memset(m, 0, sizeof *m);
    uint32_t d[3] = {(uint32_t)c, (uint32_t)h, (uint32_t)w};
    m->input = (uint32_t)fmt_add_activation(m, 3, d);
    m->preproc = (cvy_preproc){.width = w,
                               .height = h,
                               .color = c == 1 ? CVY_COLOR_GRAY : CVY_COLOR_RGB,
                               .scale = 1.0f,
                               .mean = {0, 0, 0},
                               .std = {1, 1, 1}};
    return m->input;
}

/* A random weight tensor of the given dims. */
static inline uint32_t tm_weight(fmt_model *m, int ndim, const int *dims, float scale)
{
    uint32_t d[4] = {0};
    size_t n = 1;
    for (int i = 0; i < ndim; i++) {
        d[i] = (uint32_t)dims[i];
        n *= (size_t)dims[i];
    }
    float *data = malloc(n * sizeof(float) + 4);
    for (size_t i = 0; i < n; i++) data[i] = tm_rand() * scale;
    int t = fmt_add_weight(m, (uint32_t)ndim, d, data);
    free(data);
    return (uint32_t)t;
}

/* Appends a node writing a fresh activation; returns that activation's index. */
static inline uint32_t tm_node(fmt_model *m, uint32_t op, int n_in, const uint32_t *in,
                               const int32_t *ia, const float *fa, const char *name)
{
    uint32_t out = (uint32_t)fmt_add_activation(m, 0, NULL);
    fmt_add_node(m, op, (uint32_t)n_in, in, out, ia, fa, name);
    return out;
}

/* Serializes m (making `out` the graph output) and loads it with engine e. Clears m. */
static inline cvy_model *tm_load(cvy_engine *e, fmt_model *m, uint32_t out)
{
    m->output = out;
    uint8_t *buf;
    size_t size;
    cvy_error err = {{0}};
    ck_assert_int_eq(fmt_serialize(m, &buf, &size, &err), CVY_OK);
    fmt_model_clear(m);
    cvy_model *model = NULL;
    cvy_status s = cvy_model_load_memory(e, buf, size, &model, &err);
    free(buf);
    ck_assert_msg(s == CVY_OK, "load failed: %s", err.msg);
    return model;
}

/* Runs n images through model on a fresh context; returns malloc'd outputs. */
static inline float *tm_run(cvy_model *model, int n, const float *in)
{
    cvy_context *c = NULL;
    cvy_error err;
    ck_assert_int_eq(cvy_context_create(model, n, &c, &err), CVY_OK);
    float *out = malloc((size_t)n * cvy_model_output_size(model) * sizeof(float));
    ck_assert_int_eq(cvy_context_run(c, n, in, out, &err), CVY_OK);
    cvy_context_destroy(c);
    return out;
}

static inline cvy_engine *tm_engine(cvy_isa isa, int threads)
{
    cvy_engine *e = NULL;
    cvy_engine_params p = cvy_engine_default_params();
    p.isa = isa;
    p.threads = threads;
    ck_assert_int_eq(cvy_engine_create(&p, &e, NULL), CVY_OK);
    return e;
}

/* max |a-b| / (atol + rtol*|b|) over n values: <= 1 means within tolerance. */
static inline double tm_err(const float *a, const float *b, size_t n, double atol, double rtol)
{
    double worst = 0.0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - (double)b[i]) / (atol + rtol * fabs((double)b[i]));
        if (d > worst || d != d) worst = d != d ? INFINITY : d;
    }
    return worst;
}

#endif
