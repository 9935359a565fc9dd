/*
 * v2_parse.c - see v2_parse.h.
 */
#include "v2_parse.h"
#include "b64.h"

#include <float.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Sets the error code and message; returns status. */
static int fail(const char **code, char *msg, size_t msgn, int status, const char *c,
                const char *fmt, ...) __attribute__((format(printf, 6, 7)));
static int fail(const char **code, char *msg, size_t msgn, int status, const char *c,
                const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, msgn, fmt, ap);
    va_end(ap);
    *code = c;
    return status;
}

int srv_v2_infer_json(const char *body, size_t len, const char *hcl, srv_v2_infer *q,
                      const char **code, char *msg, size_t msgn)
{
    memset(q, 0, sizeof *q);
    /* Binary tensor extension: a JSON header of Inference-Header-Content-Length bytes, then
     * the raw tensor data of the inputs that give parameters.binary_data_size. */
    size_t json_len = len;
    if (hcl) {
        char *end;
        unsigned long long v = strtoull(hcl, &end, 10);
        if (end == hcl || *end || v > len)
            return fail(code, msg, msgn, 400, "bad_request",
                        "Inference-Header-Content-Length %.30s exceeds the body", hcl);
        json_len = (size_t)v;
    }
    if (!body) body = "";
    q->bin = body + json_len;
    q->bin_len = len - json_len;
    json_error_t je;
    q->root = json_loadb(body, json_len, 0, &je);
    if (!q->root)
        return fail(code, msg, msgn, 400, "bad_json", "malformed JSON at line %d column %d: %s",
                    je.line, je.column, je.text);
    return 0;
}

/* Flattens nested arrays of numbers into dst (capacity cap). Returns count or -1. */
static long flatten(json_t *a, float *dst, size_t cap, size_t *n)
{
    if (json_is_array(a)) {
        size_t i;
        json_t *v;
        json_array_foreach(a, i, v)
        {
            if (flatten(v, dst, cap, n) < 0) return -1;
        }
        return (long)*n;
    }
    if (!json_is_number(a) || *n >= cap) return -1;
    double d = json_number_value(a);
    if (!(fabs(d) <= FLT_MAX)) return -1; /* not finite as a float (1e39 would become inf) */
    dst[(*n)++] = (float)d;
    return (long)*n;
}

/* Reads the requested outputs: binary data and classification (Triton extensions). */
static int parse_outputs(srv_v2_infer *q, const char **code, char *msg, size_t msgn)
{
    json_t *params = json_object_get(q->root, "parameters");
    if (params && json_is_true(json_object_get(params, "binary_data_output"))) q->binary_out = 1;
    json_t *outs = json_object_get(q->root, "outputs");
    if (!outs) return 0;
    if (!json_is_array(outs))
        return fail(code, msg, msgn, 400, "bad_request", "\"outputs\" must be an array");
    size_t i;
    json_t *o;
    json_array_foreach(outs, i, o)
    {
        const char *name = json_string_value(json_object_get(o, "name"));
        if (!name || strcmp(name, "output") != 0)
            return fail(code, msg, msgn, 400, "bad_request",
                        "unknown output '%.60s': the only output is \"output\"",
                        name ? name : "(none)");
        json_t *op = json_object_get(o, "parameters");
        if (!op) continue;
        json_t *bd = json_object_get(op, "binary_data");
        if (bd) q->binary_out = json_is_true(bd);
        json_t *cl = json_object_get(op, "classification");
        if (cl) {
            if (!json_is_integer(cl) || json_integer_value(cl) < 1 ||
                json_integer_value(cl) > 1000000)
                return fail(code, msg, msgn, 400, "bad_request",
                            "parameters.classification must be a positive integer");
            q->classification = (int)json_integer_value(cl);
        }
    }
    return 0;
}

/* FP32 [N, c, h, w], from nested "data" or bsize bytes of binary data, into q->input. */
static int parse_fp32(srv_v2_infer *q, json_t *shape, json_t *data, int bds, size_t bsize,
                      const int *chw, int max_images, const char **code, char *msg, size_t msgn)
{
    int mc = chw[0], mh = chw[1], mw = chw[2];
    json_int_t dims[4];
    if (json_array_size(shape) != 4)
        return fail(code, msg, msgn, 400, "bad_shape", "FP32 input shape must be [N, %d, %d, %d]",
                    mc, mh, mw);
    for (int i = 0; i < 4; i++) {
        json_t *d = json_array_get(shape, (size_t)i);
        dims[i] = json_is_integer(d) ? json_integer_value(d) : -1;
    }
    if (dims[0] < 1 || dims[1] != mc || dims[2] != mh || dims[3] != mw)
        return fail(code, msg, msgn, 400, "bad_shape",
                    "FP32 input shape must be [N, %d, %d, %d] with N >= 1", mc, mh, mw);
    if (dims[0] > max_images)
        return fail(code, msg, msgn, 413, "too_many_images", "N = %lld exceeds the limit of %d",
                    (long long)dims[0], max_images);
    int n = (int)dims[0];
    size_t want = (size_t)mc * (size_t)mh * (size_t)mw * (size_t)n;
    q->input = malloc(sizeof(float) * (want ? want : 1));
    if (!q->input) return fail(code, msg, msgn, 500, "internal", "out of memory");
    if (bds) {
        if (bsize != want * sizeof(float))
            return fail(code, msg, msgn, 400, "bad_data",
                        "binary_data_size %zu is not %zu floats for shape [%d, %d, %d, %d]", bsize,
                        want, n, mc, mh, mw);
        memcpy(q->input, q->bin, bsize); /* little-endian host */
        for (size_t i = 0; i < want; i++)
            if (!isfinite(q->input[i]))
                return fail(code, msg, msgn, 400, "bad_data", "element %zu is not finite", i);
    } else {
        size_t got = 0;
        if (flatten(data, q->input, want, &got) < 0 || got != want)
            return fail(code, msg, msgn, 400, "bad_data",
                        "input data must hold exactly %zu finite numbers for shape "
                        "[%d, %d, %d, %d]",
                        want, n, mc, mh, mw);
    }
    q->n = n;
    return 0;
}

/* BYTES [N] or [N, 1]: base64 strings in "data", or 4-byte little-endian length + bytes per
 * element in the binary data, into q->imgs. */
static int parse_bytes(srv_v2_infer *q, json_t *shape, json_t *data, int bds, size_t bsize,
                       int max_images, const char **code, char *msg, size_t msgn)
{
    json_t *d0 = json_array_get(shape, 0);
    size_t nd = json_array_size(shape);
    json_t *d1 = json_array_get(shape, 1);
    if (!json_is_integer(d0) || json_integer_value(d0) < 1 || nd < 1 || nd > 2 ||
        (nd == 2 && (!json_is_integer(d1) || json_integer_value(d1) != 1)))
        return fail(code, msg, msgn, 400, "bad_shape", "BYTES input shape must be [N] or [N, 1]");
    json_int_t n = json_integer_value(d0);
    if (n > max_images)
        return fail(code, msg, msgn, 413, "too_many_images", "%lld images exceed the limit of %d",
                    (long long)n, max_images);
    if (!bds && (!json_is_array(data) || json_array_size(data) != (size_t)n))
        return fail(code, msg, msgn, 400, "bad_data",
                    "BYTES input data must be an array of %lld base64 images", (long long)n);
    srv_image_src *imgs = calloc((size_t)n, sizeof *imgs);
    if (!imgs) return fail(code, msg, msgn, 500, "internal", "out of memory");
    q->imgs = imgs;
    q->n = (int)n; /* srv_v2_infer_free frees the decoded ones */
    size_t off = 0;
    for (json_int_t i = 0; i < n; i++) {
        snprintf(imgs[i].what, sizeof imgs[i].what, "image %lld", (long long)i + 1);
        if (bds) { /* 4-byte little-endian length, then the encoded image */
            const unsigned char *p = (const unsigned char *)q->bin + off;
            size_t l = 0;
            if (off + 4 <= bsize)
                l = p[0] | (size_t)p[1] << 8 | (size_t)p[2] << 16 | (size_t)p[3] << 24;
            if (off + 4 > bsize || l > bsize - off - 4)
                return fail(code, msg, msgn, 400, "bad_data",
                            "BYTES element %lld runs past binary_data_size", (long long)i);
            imgs[i].data = p + 4;
            imgs[i].size = l;
            off += 4 + l;
            continue;
        }
        json_t *v = json_array_get(data, (size_t)i);
        if (json_is_object(v)) v = json_object_get(v, "b64");
        if (!json_is_string(v) ||
            !(imgs[i].owned =
                  srv_b64_decode(json_string_value(v), json_string_length(v), &imgs[i].size)))
            return fail(code, msg, msgn, 400, "bad_base64", "BYTES element %lld: malformed base64",
                        (long long)i);
        imgs[i].data = imgs[i].owned;
    }
    return 0;
}

int srv_v2_infer_inputs(srv_v2_infer *q, int c, int h, int w, int max_images, const char **code,
                        char *msg, size_t msgn)
{
    json_t *root = q->root;
    json_t *id = json_object_get(root, "id");
    if (json_is_string(id)) q->id = id;
    json_t *inputs = json_object_get(root, "inputs");
    if (!json_is_object(root) || !json_is_array(inputs) || json_array_size(inputs) != 1)
        return fail(code, msg, msgn, 400, "bad_request",
                    "expected {\"inputs\": [one tensor]} with exactly one input");
    int st = parse_outputs(q, code, msg, msgn);
    if (st) return st;
    json_t *params = json_object_get(root, "parameters");
    json_t *to = params ? json_object_get(params, "timeout") : NULL;
    if (to) {
        if (!json_is_integer(to) || json_integer_value(to) < 1)
            return fail(code, msg, msgn, 400, "bad_request",
                        "parameters.timeout must be a positive integer (microseconds)");
        q->timeout_us = (long)json_integer_value(to);
    }
    json_t *in = json_array_get(inputs, 0);
    json_t *shape = json_object_get(in, "shape");
    json_t *dtype = json_object_get(in, "datatype");
    json_t *data = json_object_get(in, "data");
    json_t *bds = json_object_get(json_object_get(in, "parameters"), "binary_data_size");
    if (bds && (!json_is_integer(bds) || json_integer_value(bds) < 0 ||
                (size_t)json_integer_value(bds) > q->bin_len))
        return fail(code, msg, msgn, 400, "bad_data",
                    "binary_data_size does not match the %zu bytes after the JSON header",
                    q->bin_len);
    size_t bsize = bds ? (size_t)json_integer_value(bds) : 0;
    if (!json_is_array(shape) || !json_is_string(dtype) || (!data && !bds))
        return fail(code, msg, msgn, 400, "bad_request",
                    "input 0 needs \"name\", \"shape\", \"datatype\" and \"data\" (or "
                    "parameters.binary_data_size)");
    const char *dt = json_string_value(dtype);
    const int chw[3] = {c, h, w};
    if (strcmp(dt, "FP32") == 0)
        return parse_fp32(q, shape, data, bds != NULL, bsize, chw, max_images, code, msg, msgn);
    if (strcmp(dt, "BYTES") == 0)
        return parse_bytes(q, shape, data, bds != NULL, bsize, max_images, code, msg, msgn);
    return fail(code, msg, msgn, 400, "bad_datatype",
                "datatype %.20s is not supported: use FP32 [N,%d,%d,%d] or BYTES [N]", dt, c, h, w);
}

void srv_v2_infer_free(srv_v2_infer *q)
{
    for (int i = 0; q->imgs && i < q->n; i++) free(q->imgs[i].owned);
    free(q->imgs);
    free(q->input);
    json_decref(q->root);
    memset(q, 0, sizeof *q);
}
