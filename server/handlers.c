/*
 * handlers.c - see handlers.h.
 */
#include "handlers.h"
#include "decode.h"
#include "log.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int srv_decode_images(srv_req *r, const srv_image_src *imgs, int n)
{
    const cvy_model *m = r->model->m;
    size_t in_size = cvy_model_input_size(m), out_size = cvy_model_output_size(m);
    long max_pixels = r->app->cfg->max_pixels;
    int64_t t0 = srv_now_ns();
    r->input = malloc(sizeof(float) * in_size * (size_t)n);
    r->output = malloc(sizeof(float) * out_size * (size_t)n);
    if (!r->input || !r->output) {
        srv_respond_error(r, 500, "internal", "out of memory for %d images", n);
        return -1;
    }
    for (int i = 0; i < n; i++) {
        const char *code = "bad_image";
        char msg[512];
        int st = srv_decode_image(m, max_pixels, &imgs[i], r->input + in_size * (size_t)i, &code,
                                  msg, sizeof msg);
        if (st) {
            srv_respond_error(r, st, code, "%s", msg);
            return -1;
        }
    }
    r->n = n;
    r->decode_ns = srv_now_ns() - t0;
    srv_hist_observe(&r->model->mm->decode_s, (double)r->decode_ns / 1e9);
    return 0;
}

/* A small JSON writer for the hot /classify answer (jansson's object tree and number
 * formatting cost more than the rest of a request's HTTP work). */
typedef struct jw {
    char *p;
    size_t len, cap;
    int oom;
} jw;

static void jw_reserve(jw *w, size_t n)
{
    if (w->oom || w->len + n + 1 <= w->cap) return;
    size_t nc = (w->cap + n + 1) * 2;
    char *np = realloc(w->p, nc);
    if (!np) {
        w->oom = 1;
        return;
    }
    w->p = np;
    w->cap = nc;
}

static void jw_raw(jw *w, const char *s)
{
    size_t n = strlen(s);
    jw_reserve(w, n);
    if (w->oom) return;
    memcpy(w->p + w->len, s, n);
    w->len += n;
}

static void jw_fmt(jw *w, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void jw_fmt(jw *w, const char *fmt, ...)
{
    char buf[128];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    if (n > 0) jw_raw(w, buf);
}

/* A JSON string: quotes, backslashes and control characters escaped. */
static void jw_str(jw *w, const char *s)
{
    jw_reserve(w, strlen(s) * 6 + 2);
    if (w->oom) return;
    char *d = w->p + w->len;
    *d++ = '"';
    for (const unsigned char *c = (const unsigned char *)s; *c; c++) {
        if (*c == '"' || *c == '\\') {
            *d++ = '\\';
            *d++ = (char)*c;
        } else if (*c < 0x20) {
            d += sprintf(d, "\\u%04x", *c);
        } else {
            *d++ = (char)*c;
        }
    }
    *d++ = '"';
    w->len = (size_t)(d - w->p);
}

static void finish_classify(srv_req *r)
{
    if (srv_req_job_failed(r)) return;
    const cvy_model *m = r->model->m;
    size_t out_size = cvy_model_output_size(m);
    int k = r->top_k;
    cvy_prediction *preds = malloc(sizeof *preds * (size_t)k);
    jw w = {malloc(1024), 0, 1024, 0};
    if (!preds || !w.p) {
        free(preds);
        free(w.p);
        srv_respond_error(r, 500, "internal", "out of memory");
        return;
    }
    const srv_job *j = &r->job;
    jw_raw(&w, "{\"model\":");
    jw_str(&w, r->model->name);
    jw_raw(&w, ",\"model_version\":");
    jw_str(&w, r->model->hash);
    jw_raw(&w, ",\"results\":[");
    for (int i = 0; i < r->n; i++) {
        int got = cvy_model_topk(m, r->output + out_size * (size_t)i, k, preds);
        jw_raw(&w, i ? ",{\"predictions\":[" : "{\"predictions\":[");
        for (int q = 0; q < got; q++) {
            jw_raw(&w, q ? ",{\"label\":" : "{\"label\":");
            if (preds[q].label)
                jw_str(&w, preds[q].label);
            else
                jw_raw(&w, "null");
            jw_fmt(&w, ",\"index\":%d,\"score\":%.7g}", preds[q].index, (double)preds[q].score);
        }
        jw_raw(&w, "]}");
    }
    free(preds);
    double queue_ms = (double)(j->t_start_ns - j->t_enqueue_ns) / 1e6;
    jw_fmt(&w, "],\"batch_size\":%d,\"timing_ms\":{\"queue\":%.3f,\"decode\":%.3f,", j->batch_size,
           queue_ms, (double)r->decode_ns / 1e6);
    jw_fmt(&w, "\"inference\":%.3f,\"total\":%.3f},\"request_id\":%llu}", (double)j->infer_ns / 1e6,
           (double)(srv_now_ns() - r->t0_ns) / 1e6, (unsigned long long)r->id);
    srv_hist_observe(&r->model->mm->queue_s, queue_ms / 1e3);
    if (w.oom) {
        free(w.p);
        srv_respond_error(r, 500, "internal", "out of memory");
        return;
    }
    srv_respond_text(r, 200, "application/json", w.p, w.len);
}

static void handle_classify(srv_req *r)
{
    const char *ct = srv_req_header(r, "Content-Type");
    srv_body b;
    const char *code = "bad_request";
    char msg[512];
    int st =
        srv_body_parse(ct, r->body, r->len, r->app->cfg->max_images, &b, &code, msg, sizeof msg);
    if (st) {
        srv_body_free(&b);
        srv_respond_error(r, st, code, "%s", msg);
        return;
    }
    if (!*r->name && !srv_req_arg(r, "model") && *b.model)
        snprintf(r->name, sizeof r->name, "%s", b.model);
    if (srv_req_model(r) < 0) {
        srv_body_free(&b);
        return;
    }
    int k = b.top_k ? b.top_k : r->app->cfg->top_k;
    const char *qk = srv_req_arg(r, "top_k");
    if (qk) {
        char *end;
        errno = 0;
        long v = strtol(qk, &end, 10);
        if (errno || end == qk || *end || v < 1 || v > 1000000) {
            srv_body_free(&b);
            srv_respond_error(r, 400, "bad_top_k", "top_k: '%.40s' is not a positive integer", qk);
            return;
        }
        k = (int)v;
    }
    int classes = (int)cvy_model_output_size(r->model->m);
    r->top_k = k < classes ? k : classes;
    if (srv_req_deadline(r, 0) < 0 || srv_decode_images(r, b.images, b.n) < 0) {
        srv_body_free(&b);
        return;
    }
    srv_body_free(&b);
    /* The encoded body is no longer needed while the request waits. */
    free(r->body);
    r->body = NULL;
    srv_req_submit(r, finish_classify);
}

static void handle_models(srv_req *r)
{
    if (r->route == R_MODELS) {
        json_t *list = srv_registry_describe(r->app->reg, NULL);
        srv_respond_json(r, 200, json_pack("{s:o}", "models", list));
        return;
    }
    json_t *one = srv_registry_describe(r->app->reg, r->name);
    if (!one) {
        srv_respond_error(r, 404, "model_not_found", "unknown model '%s'", r->name);
        return;
    }
    srv_respond_json(r, 200, one);
}

void srv_handle(srv_req *r)
{
    switch (r->route) {
    case R_HEALTHZ:
        srv_respond_json(r, 200, json_pack("{s:s}", "status", "ok"));
        break;
    case R_READYZ: {
        char why[512];
        if (r->draining)
            srv_respond_json(r, 503,
                             json_pack("{s:s,s:s}", "status", "not_ready", "reason",
                                       "draining: the server is shutting down"));
        else if (!srv_registry_ready(r->app->reg, why, sizeof why))
            srv_respond_json(r, 503, json_pack("{s:s,s:s}", "status", "not_ready", "reason", why));
        else
            srv_respond_json(r, 200, json_pack("{s:s}", "status", "ready"));
        break;
    }
    case R_MODELS:
    case R_MODEL:
        handle_models(r);
        break;
    case R_METRICS: {
        size_t len = 0;
        char *text = srv_metrics_render(srv_registry_depth, r->app->reg, &len);
        if (!text) {
            srv_respond_error(r, 500, "internal", "out of memory");
            break;
        }
        srv_respond_text(r, 200, "text/plain; version=0.0.4; charset=utf-8", text, len);
        break;
    }
    case R_CLASSIFY:
        handle_classify(r);
        break;
    default:
        srv_respond_error(r, 404, "not_found", "no such endpoint");
        break;
    }
}
