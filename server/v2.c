/*
 * v2.c - see v2.h.
 */
#include "v2.h"
#include "handlers.h"
#include "v2_parse.h"

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

/* Parses the body (v2_parse.h), looks the model up, and decodes BYTES images or takes the FP32
 * tensor as the batch input before queueing it. */
static void infer(srv_req *r)
{
    srv_v2_infer q;
    const char *code = "bad_request";
    char msg[512];
    const char *hcl = srv_req_header(r, "Inference-Header-Content-Length");
    int st = srv_v2_infer_json(r->body, r->len, hcl, &q, &code, msg, sizeof msg);
    if (st) {
        srv_respond_error(r, st, code, "%s", msg);
        goto out;
    }
    v2_ctx *c = calloc(1, sizeof *c);
    if (!c) {
        srv_respond_error(r, 500, "internal", "out of memory");
        goto out;
    }
    r->ctx = c;
    r->ctx_free = v2_ctx_free;
    if (srv_req_model(r) < 0) goto out;
    const cvy_model *m = r->model->m;
    int mc, mh, mw;
    cvy_model_input_shape(m, &mc, &mh, &mw);
    st = srv_v2_infer_inputs(&q, mc, mh, mw, r->app->cfg->max_images, &code, msg, sizeof msg);
    if (st) {
        srv_respond_error(r, st, code, "%s", msg);
        goto out;
    }
    if (q.id) c->id = json_incref(q.id);
    c->binary_out = q.binary_out;
    c->classification = q.classification;
    if (q.input) { /* FP32: the tensor is the batch */
        r->output = malloc(sizeof(float) * cvy_model_output_size(m) * (size_t)q.n);
        if (!r->output) {
            srv_respond_error(r, 500, "internal", "out of memory");
            goto out;
        }
        r->input = q.input;
        q.input = NULL;
        r->n = q.n;
    } else if (srv_decode_images(r, q.imgs, q.n) < 0) {
        goto out;
    }
    if (srv_req_deadline(r, q.timeout_us) < 0) goto out;
    srv_v2_infer_free(&q);
    free(r->body);
    r->body = NULL;
    srv_req_submit(r, finish_infer);
    return;
out:
    srv_v2_infer_free(&q);
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
        int ok = !r->draining && srv_registry_ready(r->app->reg, why, sizeof why);
        srv_respond_json(r, ok ? 200 : 503, json_pack("{s:b}", "ready", ok));
        break;
    }
    case R_V2_MODEL:
        model_metadata(r);
        break;
    case R_V2_MODEL_READY: {
        if (srv_req_model(r) < 0) break;
        int ok = !r->draining;
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
