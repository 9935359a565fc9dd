/*
 * v2.c - see v2.h.
 */
#include "v2.h"
#include "b64.h"
#include "handlers.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static json_t *tensor_meta(const char *name, const char *dt, json_t *shape)
{
    return json_pack("{s:s,s:s,s:o}", "name", name, "datatype", dt, "shape", shape);
}

static void model_metadata(srv_req *r)
{
    if (srv_req_model(r) < 0) return;
    const cvy_model *m = r->model->m;
    int c, h, w;
    cvy_model_input_shape(m, &c, &h, &w);
    json_t *o = json_object();
    json_object_set_new(o, "name", json_string(r->model->name));
    json_object_set_new(o, "versions", json_pack("[s]", r->model->hash));
    json_object_set_new(o, "platform", json_string("convoy"));
    json_object_set_new(o, "inputs",
                        json_pack("[o,o]",
                                  tensor_meta("input", "FP32", json_pack("[i,i,i,i]", -1, c, h, w)),
                                  tensor_meta("images", "BYTES", json_pack("[i]", -1))));
    json_object_set_new(
        o, "outputs",
        json_pack("[o]", tensor_meta("output", "FP32",
                                     json_pack("[i,i]", -1, (int)cvy_model_output_size(m)))));
    srv_respond_json(r, 200, o);
}

typedef struct v2_ctx {
    json_t *id;
    int binary_out;     /* answer with the binary tensor extension */
    int classification; /* > 0: top-k "score:index:label" strings instead of raw output */
} v2_ctx;

static void v2_ctx_free(void *p)
{
    v2_ctx *c = p;
    if (c) {
        json_decref(c->id);
        free(c);
    }
}

/* Appends a 4-byte little-endian length and the bytes to a growing buffer. */
static int put_bytes(char **buf, size_t *len, size_t *cap, const char *s, size_t n)
{
    if (*len + 4 + n > *cap) {
        size_t nc = (*cap + 4 + n) * 2;
        char *nb = realloc(*buf, nc);
        if (!nb) return -1;
        *buf = nb;
        *cap = nc;
    }
    uint32_t l = (uint32_t)n;
    unsigned char *d = (unsigned char *)*buf + *len;
    d[0] = (unsigned char)l, d[1] = (unsigned char)(l >> 8), d[2] = (unsigned char)(l >> 16),
    d[3] = (unsigned char)(l >> 24);
    memcpy(*buf + *len + 4, s, n);
    *len += 4 + n;
    return 0;
}

static void finish_infer(srv_req *r)
{
    if (srv_req_job_failed(r)) return;
    v2_ctx *c = r->ctx;
    const cvy_model *m = r->model->m;
    size_t out_size = cvy_model_output_size(m);
    size_t total = out_size * (size_t)r->n;
    json_t *out = json_object();
    char *bin = NULL;
    size_t bin_len = 0, bin_cap = 0;
    json_object_set_new(out, "name", json_string("output"));
    if (c->classification > 0) {
        int k = c->classification < (int)out_size ? c->classification : (int)out_size;
        cvy_prediction *preds = malloc(sizeof *preds * (size_t)k);
        json_t *data = json_array();
        for (int i = 0; preds && i < r->n; i++) {
            int got = cvy_model_topk(m, r->output + out_size * (size_t)i, k, preds);
            for (int j = 0; j < got; j++) {
                char sbuf[256];
                int sl =
                    snprintf(sbuf, sizeof sbuf, "%f:%d%s%.200s", preds[j].score, preds[j].index,
                             preds[j].label ? ":" : "", preds[j].label ? preds[j].label : "");
                if (c->binary_out)
                    put_bytes(&bin, &bin_len, &bin_cap, sbuf, (size_t)sl);
                else
                    json_array_append_new(data, json_string(sbuf));
            }
        }
        free(preds);
        json_object_set_new(out, "datatype", json_string("BYTES"));
        json_object_set_new(out, "shape", json_pack("[i,i]", r->n, k));
        if (c->binary_out)
            json_decref(data);
        else
            json_object_set_new(out, "data", data);
    } else {
        json_object_set_new(out, "datatype", json_string("FP32"));
        json_object_set_new(out, "shape", json_pack("[i,i]", r->n, (int)out_size));
        if (c->binary_out) {
            bin_len = total * sizeof(float);
            bin = malloc(bin_len ? bin_len : 1);
            if (bin) memcpy(bin, r->output, bin_len); /* little-endian host */
        } else {
            json_t *data = json_array();
            for (size_t i = 0; i < total; i++)
                json_array_append_new(data, json_real(r->output[i]));
            json_object_set_new(out, "data", data);
        }
    }
    if (c->binary_out && !bin) {
        json_decref(out);
        srv_respond_error(r, 500, "internal", "out of memory");
        return;
    }
    if (c->binary_out)
        json_object_set_new(out, "parameters",
                            json_pack("{s:I}", "binary_data_size", (json_int_t)bin_len));
    json_t *o = json_object();
    json_object_set_new(o, "model_name", json_string(r->model->name));
    json_object_set_new(o, "model_version", json_string(r->model->hash));
    if (c->id) json_object_set(o, "id", c->id);
    json_object_set_new(o, "parameters", json_pack("{s:i}", "batch_size", r->job.batch_size));
    json_object_set_new(o, "outputs", json_pack("[o]", out));
    if (!c->binary_out) {
        srv_respond_json(r, 200, o);
        return;
    }
    char *js = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(9));
    json_decref(o);
    char *body = js ? malloc(strlen(js) + bin_len + 1) : NULL;
    if (!body) {
        free(js);
        free(bin);
        srv_respond_error(r, 500, "internal", "out of memory");
        return;
    }
    size_t jl = strlen(js);
    memcpy(body, js, jl);
    memcpy(body + jl, bin, bin_len);
    free(js);
    free(bin);
    char hl[32];
    snprintf(hl, sizeof hl, "%zu", jl);
    srv_respond_buffer(r, 200, "application/octet-stream", body, jl + bin_len,
                       "Inference-Header-Content-Length", hl);
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
    if (!isfinite(d)) return -1;
    dst[(*n)++] = (float)d;
    return (long)*n;
}

static int is_true(json_t *v)
{
    return json_is_true(v);
}

/* Reads the requested outputs: binary data and classification (Triton extensions). */
static int parse_outputs(srv_req *r, json_t *root, v2_ctx *c)
{
    json_t *params = json_object_get(root, "parameters");
    if (params && is_true(json_object_get(params, "binary_data_output"))) c->binary_out = 1;
    json_t *outs = json_object_get(root, "outputs");
    if (!outs) return 0;
    if (!json_is_array(outs)) {
        srv_respond_error(r, 400, "bad_request", "\"outputs\" must be an array");
        return -1;
    }
    size_t i;
    json_t *o;
    json_array_foreach(outs, i, o)
    {
        const char *name = json_string_value(json_object_get(o, "name"));
        if (!name || strcmp(name, "output") != 0) {
            srv_respond_error(r, 400, "bad_request",
                              "unknown output '%.60s': the only output "
                              "is \"output\"",
                              name ? name : "(none)");
            return -1;
        }
        json_t *op = json_object_get(o, "parameters");
        if (!op) continue;
        json_t *bd = json_object_get(op, "binary_data");
        if (bd) c->binary_out = is_true(bd);
        json_t *cl = json_object_get(op, "classification");
        if (cl) {
            if (!json_is_integer(cl) || json_integer_value(cl) < 1 ||
                json_integer_value(cl) > 1000000) {
                srv_respond_error(r, 400, "bad_request",
                                  "parameters.classification must be a positive integer");
                return -1;
            }
            c->classification = (int)json_integer_value(cl);
        }
    }
    return 0;
}

static void infer(srv_req *r)
{
    /* Binary tensor extension: a JSON header of Inference-Header-Content-Length bytes, then
     * the raw tensor data of the inputs that give parameters.binary_data_size. */
    size_t json_len = r->len;
    const char *hcl = srv_req_header(r, "Inference-Header-Content-Length");
    if (hcl) {
        char *end;
        unsigned long long v = strtoull(hcl, &end, 10);
        if (end == hcl || *end || v > r->len) {
            srv_respond_error(r, 400, "bad_request",
                              "Inference-Header-Content-Length %.30s exceeds the body", hcl);
            return;
        }
        json_len = (size_t)v;
    }
    const char *bin = (r->body ? r->body : "") + json_len;
    size_t bin_len = r->len - json_len;

    json_error_t je;
    json_t *root = json_loadb(r->body ? r->body : "", json_len, 0, &je);
    if (!root) {
        srv_respond_error(r, 400, "bad_json", "malformed JSON at line %d column %d: %s", je.line,
                          je.column, je.text);
        return;
    }
    v2_ctx *c = calloc(1, sizeof *c);
    if (!c) {
        json_decref(root);
        srv_respond_error(r, 500, "internal", "out of memory");
        return;
    }
    r->ctx = c;
    r->ctx_free = v2_ctx_free;
    if (srv_req_model(r) < 0) goto out;
    json_t *id = json_object_get(root, "id");
    if (json_is_string(id)) c->id = json_incref(id);
    json_t *inputs = json_object_get(root, "inputs");
    if (!json_is_object(root) || !json_is_array(inputs) || json_array_size(inputs) != 1) {
        srv_respond_error(r, 400, "bad_request",
                          "expected {\"inputs\": [one tensor]} with exactly one input");
        goto out;
    }
    if (parse_outputs(r, root, c) < 0) goto out;
    long timeout_us = 0;
    json_t *params = json_object_get(root, "parameters");
    json_t *to = params ? json_object_get(params, "timeout") : NULL;
    if (to) {
        if (!json_is_integer(to) || json_integer_value(to) < 1) {
            srv_respond_error(r, 400, "bad_request",
                              "parameters.timeout must be a positive integer (microseconds)");
            goto out;
        }
        timeout_us = (long)json_integer_value(to);
    }
    json_t *in = json_array_get(inputs, 0);
    json_t *shape = json_object_get(in, "shape");
    json_t *dtype = json_object_get(in, "datatype");
    json_t *data = json_object_get(in, "data");
    json_t *bds = json_object_get(json_object_get(in, "parameters"), "binary_data_size");
    if (bds && (!json_is_integer(bds) || json_integer_value(bds) < 0 ||
                (size_t)json_integer_value(bds) > bin_len)) {
        srv_respond_error(r, 400, "bad_data",
                          "binary_data_size does not match the %zu bytes "
                          "after the JSON header",
                          bin_len);
        goto out;
    }
    size_t bsize = bds ? (size_t)json_integer_value(bds) : 0;
    if (!json_is_array(shape) || !json_is_string(dtype) || (!data && !bds)) {
        srv_respond_error(r, 400, "bad_request",
                          "input 0 needs \"name\", \"shape\", \"datatype\" and \"data\" (or "
                          "parameters.binary_data_size)");
        goto out;
    }
    const cvy_model *m = r->model->m;
    int mc, mh, mw;
    cvy_model_input_shape(m, &mc, &mh, &mw);
    const char *dt = json_string_value(dtype);
    int max_images = r->app->cfg->max_images;
    if (strcmp(dt, "FP32") == 0) {
        json_int_t dims[4];
        if (json_array_size(shape) != 4) {
            srv_respond_error(r, 400, "bad_shape", "FP32 input shape must be [N, %d, %d, %d]", mc,
                              mh, mw);
            goto out;
        }
        for (int i = 0; i < 4; i++) {
            json_t *d = json_array_get(shape, (size_t)i);
            dims[i] = json_is_integer(d) ? json_integer_value(d) : -1;
        }
        if (dims[0] < 1 || dims[1] != mc || dims[2] != mh || dims[3] != mw) {
            srv_respond_error(r, 400, "bad_shape",
                              "FP32 input shape must be [N, %d, %d, %d] with N >= 1", mc, mh, mw);
            goto out;
        }
        if (dims[0] > max_images) {
            srv_respond_error(r, 413, "too_many_images", "N = %lld exceeds the limit of %d",
                              (long long)dims[0], max_images);
            goto out;
        }
        int n = (int)dims[0];
        size_t in_size = cvy_model_input_size(m);
        size_t want = in_size * (size_t)n;
        r->input = malloc(sizeof(float) * want);
        r->output = malloc(sizeof(float) * cvy_model_output_size(m) * (size_t)n);
        if (!r->input || !r->output) {
            srv_respond_error(r, 500, "internal", "out of memory");
            goto out;
        }
        if (bds) {
            if (bsize != want * sizeof(float)) {
                srv_respond_error(r, 400, "bad_data",
                                  "binary_data_size %zu is not %zu floats for shape "
                                  "[%d, %d, %d, %d]",
                                  bsize, want, n, mc, mh, mw);
                goto out;
            }
            memcpy(r->input, bin, bsize); /* little-endian host */
            for (size_t i = 0; i < want; i++)
                if (!isfinite(r->input[i])) {
                    srv_respond_error(r, 400, "bad_data", "element %zu is not finite", i);
                    goto out;
                }
        } else {
            size_t got = 0;
            if (flatten(data, r->input, want, &got) < 0 || got != want) {
                srv_respond_error(r, 400, "bad_data",
                                  "input data must hold exactly %zu finite numbers for shape "
                                  "[%d, %d, %d, %d]",
                                  want, n, mc, mh, mw);
                goto out;
            }
        }
        r->n = n;
    } else if (strcmp(dt, "BYTES") == 0) {
        json_t *d0 = json_array_get(shape, 0);
        size_t nd = json_array_size(shape);
        json_t *d1 = json_array_get(shape, 1);
        if (!json_is_integer(d0) || json_integer_value(d0) < 1 || nd < 1 || nd > 2 ||
            (nd == 2 && (!json_is_integer(d1) || json_integer_value(d1) != 1))) {
            srv_respond_error(r, 400, "bad_shape", "BYTES input shape must be [N] or [N, 1]");
            goto out;
        }
        json_int_t n = json_integer_value(d0);
        if (n > max_images) {
            srv_respond_error(r, 413, "too_many_images", "%lld images exceed the limit of %d",
                              (long long)n, max_images);
            goto out;
        }
        if (!bds && (!json_is_array(data) || json_array_size(data) != (size_t)n)) {
            srv_respond_error(r, 400, "bad_data",
                              "BYTES input data must be an array of %lld base64 images",
                              (long long)n);
            goto out;
        }
        srv_image_src *imgs = calloc((size_t)n, sizeof *imgs);
        if (!imgs) {
            srv_respond_error(r, 500, "internal", "out of memory");
            goto out;
        }
        int bad = 0;
        size_t off = 0;
        for (json_int_t i = 0; i < n && !bad; i++) {
            snprintf(imgs[i].what, sizeof imgs[i].what, "image %lld", (long long)i + 1);
            if (bds) { /* 4-byte little-endian length, then the encoded image */
                const unsigned char *p = (const unsigned char *)bin + off;
                if (off + 4 > bsize) {
                    bad = 1;
                } else {
                    size_t l = p[0] | (size_t)p[1] << 8 | (size_t)p[2] << 16 | (size_t)p[3] << 24;
                    if (l > bsize - off - 4) {
                        bad = 1;
                    } else {
                        imgs[i].data = p + 4;
                        imgs[i].size = l;
                        off += 4 + l;
                    }
                }
                if (bad)
                    srv_respond_error(r, 400, "bad_data",
                                      "BYTES element %lld runs past binary_data_size",
                                      (long long)i);
                continue;
            }
            json_t *v = json_array_get(data, (size_t)i);
            if (json_is_object(v)) v = json_object_get(v, "b64");
            if (!json_is_string(v) ||
                !(imgs[i].owned =
                      srv_b64_decode(json_string_value(v), json_string_length(v), &imgs[i].size))) {
                srv_respond_error(r, 400, "bad_base64", "BYTES element %lld: malformed base64",
                                  (long long)i);
                bad = 1;
                break;
            }
            imgs[i].data = imgs[i].owned;
        }
        int rc = bad ? -1 : srv_decode_images(r, imgs, (int)n);
        for (json_int_t i = 0; i < n; i++)
            free(imgs[i].owned);
        free(imgs);
        if (rc < 0) goto out;
    } else {
        srv_respond_error(r, 400, "bad_datatype",
                          "datatype %.20s is not supported: use FP32 [N,%d,%d,%d] or BYTES [N]", dt,
                          mc, mh, mw);
        goto out;
    }
    if (srv_req_deadline(r, timeout_us) < 0) goto out;
    json_decref(root);
    free(r->body);
    r->body = NULL;
    srv_req_submit(r, finish_infer);
    return;
out:
    json_decref(root);
}

void srv_v2_handle(srv_req *r)
{
    char why[512];
    switch (r->route) {
    case R_V2:
        srv_respond_json(r, 200,
                         json_pack("{s:s,s:s,s:[s,s,s]}", "name", "convoy", "version", "0.1.0",
                                   "extensions", "binary_tensor_data", "classification",
                                   "model_repository"));
        break;
    case R_V2_LIVE:
        srv_respond_json(r, 200, json_pack("{s:b}", "live", 1));
        break;
    case R_V2_READY: {
        int ok =
            !atomic_load(&r->app->draining) && srv_registry_ready(r->app->reg, why, sizeof why);
        srv_respond_json(r, ok ? 200 : 503, json_pack("{s:b}", "ready", ok));
        break;
    }
    case R_V2_MODEL:
        model_metadata(r);
        break;
    case R_V2_MODEL_READY: {
        if (srv_req_model(r) < 0) break;
        int ok = !atomic_load(&r->app->draining);
        srv_respond_json(r, ok ? 200 : 503,
                         json_pack("{s:s,s:b}", "name", r->model->name, "ready", ok));
        break;
    }
    case R_V2_INFER:
        infer(r);
        break;
    default:
        srv_respond_error(r, 404, "not_found", "no such endpoint");
        break;
    }
}
