/*
 * server_main.c - end-to-end tests of convoyd (Check + libcurl).
 *
 * Every test talks to the real build/convoyd (CONVOY_BUILD, default build) on a free
 * 127.0.0.1 port with a temporary model directory holding models/fashion-mnist.cvy. Most
 * tests share one daemon started before the suite runs; those that need other settings or
 * signals start their own. All loops are bounded in count and time.
 */
#include "convoy.h"
#include "server_util.h"

#include <check.h>
#include <curl/curl.h>
#include <jansson.h>
#include <math.h>
#include <pthread.h>
#include <stdint.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>

static tserver G; /* shared daemon */
static timg IMG[TS_NIMG];
static const char *const G_ARGS[] = {
    "--max-body", "300000", "--max-pixels", "1000000", "--max-batch", "16", NULL};

/* ---- helpers ------------------------------------------------------------------------------ */

static json_t *parse(const tresp *r)
{
    json_error_t je;
    json_t *j = r->body ? json_loads(r->body, 0, &je) : NULL;
    ck_assert_msg(j != NULL, "response is not JSON (status %ld): %s", r->status,
                  r->body ? r->body : "(no body)");
    return j;
}

/* Asserts status and a {"error": {"code": code, "message": ...}} body. */
static void expect_error(const tresp *r, long status, const char *code)
{
    ck_assert_msg(r->curl_code == 0, "curl error %d", r->curl_code);
    ck_assert_msg(r->status == status, "expected %ld, got %ld: %s", status, r->status,
                  r->body ? r->body : "");
    json_t *j = parse(r);
    json_t *e = json_object_get(j, "error");
    ck_assert_msg(json_is_object(e), "no error object: %s", r->body);
    ck_assert_str_eq(json_string_value(json_object_get(e, "code")), code);
    ck_assert(json_string_length(json_object_get(e, "message")) > 0);
    json_decref(j);
}

/* Asserts a v2 {"error": "..."} body. */
static void expect_v2_error(const tresp *r, long status)
{
    ck_assert_msg(r->status == status, "expected %ld, got %ld: %s", status, r->status,
                  r->body ? r->body : "");
    json_t *j = parse(r);
    ck_assert_msg(json_is_string(json_object_get(j, "error")), "bad v2 error: %s", r->body);
    json_decref(j);
}

/* Checks a 200 /classify answer of model for images idx[0..n) with k predictions each. */
static void expect_results_of(const tresp *r, const char *model, const int *idx, int n, int k)
{
    ck_assert_msg(r->status == 200, "status %ld: %s", r->status, r->body ? r->body : "");
    json_t *j = parse(r);
    ck_assert_str_eq(json_string_value(json_object_get(j, "model")), model);
    ck_assert_int_eq((int)json_string_length(json_object_get(j, "model_version")), 16);
    ck_assert(json_integer_value(json_object_get(j, "batch_size")) >= 1);
    json_t *t = json_object_get(j, "timing_ms");
    ck_assert(json_is_number(json_object_get(t, "queue")));
    ck_assert(json_is_number(json_object_get(t, "decode")));
    ck_assert(json_is_number(json_object_get(t, "inference")));
    ck_assert(json_is_number(json_object_get(t, "total")));
    json_t *res = json_object_get(j, "results");
    ck_assert_int_eq((int)json_array_size(res), n);
    for (int i = 0; i < n; i++) {
        json_t *p = json_object_get(json_array_get(res, (size_t)i), "predictions");
        ck_assert_int_eq((int)json_array_size(p), k);
        double prev = 2;
        for (int q = 0; q < k; q++) {
            json_t *pq = json_array_get(p, (size_t)q);
            double sc = json_number_value(json_object_get(pq, "score"));
            ck_assert(sc <= prev + 1e-7 && sc >= 0 && sc <= 1.0 + 1e-6);
            prev = sc;
            ck_assert(json_is_string(json_object_get(pq, "label")));
        }
        json_t *top = json_array_get(p, 0);
        int index = (int)json_integer_value(json_object_get(top, "index"));
        const char *label = json_string_value(json_object_get(top, "label"));
        ck_assert_msg(ts_top1_ok(&IMG[idx[i]], index, label), "%s: got %d (%s)", IMG[idx[i]].name,
                      index, label ? label : "?");
    }
    json_decref(j);
}

static void expect_results(const tresp *r, const int *idx, int n, int k)
{
    expect_results_of(r, "fashion-mnist", idx, n, k);
}

/* ---- endpoints ---------------------------------------------------------------------------- */

START_TEST(test_health)
{
    tresp r = ts_http(&G, "GET", "/healthz", NULL, NULL, 0, NULL);
    ck_assert_int_eq(r.status, 200);
    json_t *j = parse(&r);
    ck_assert_str_eq(json_string_value(json_object_get(j, "status")), "ok");
    json_decref(j);
    ts_resp_free(&r);
    r = ts_http(&G, "GET", "/readyz", NULL, NULL, 0, NULL);
    ck_assert_int_eq(r.status, 200);
    ts_resp_free(&r);
}
END_TEST

START_TEST(test_models)
{
    tresp r = ts_http(&G, "GET", "/models", NULL, NULL, 0, NULL);
    ck_assert_int_eq(r.status, 200);
    json_t *j = parse(&r);
    json_t *list = json_object_get(j, "models");
    ck_assert_int_eq((int)json_array_size(list), 1);
    json_t *m = json_array_get(list, 0);
    ck_assert_str_eq(json_string_value(json_object_get(m, "name")), "fashion-mnist");
    ck_assert_str_eq(json_string_value(json_object_get(m, "state")), "ready");
    ck_assert_int_eq((int)json_string_length(json_object_get(m, "version")), 16);
    ck_assert_int_eq((int)json_integer_value(json_object_get(m, "labels")), 10);
    json_t *shape = json_object_get(json_object_get(m, "input"), "shape");
    ck_assert_int_eq((int)json_integer_value(json_array_get(shape, 0)), 1);
    ck_assert_int_eq((int)json_integer_value(json_array_get(shape, 1)), 28);
    ck_assert_int_eq((int)json_integer_value(json_array_get(shape, 2)), 28);
    ck_assert(json_is_number(json_object_get(m, "loaded_at")));
    ck_assert(json_object_get(m, "last_error") != NULL);
    json_decref(j);
    ts_resp_free(&r);

    r = ts_http(&G, "GET", "/models/fashion-mnist", NULL, NULL, 0, NULL);
    ck_assert_int_eq(r.status, 200);
    j = parse(&r);
    ck_assert_str_eq(json_string_value(json_object_get(j, "name")), "fashion-mnist");
    json_decref(j);
    ts_resp_free(&r);

    r = ts_http(&G, "GET", "/models/nope", NULL, NULL, 0, NULL);
    expect_error(&r, 404, "model_not_found");
    ts_resp_free(&r);
}
END_TEST

START_TEST(test_classify_raw)
{
    const char *ctypes[] = {"image/png", "application/octet-stream", NULL};
    for (int i = 0; i < TS_NIMG; i++) {
        const char *path = i % 2 ? "/classify" : "/models/fashion-mnist/classify";
        tresp r = ts_http(&G, "POST", path, ctypes[i % 3], IMG[i].data, IMG[i].len, NULL);
        expect_results(&r, &i, 1, 5);
        ts_resp_free(&r);
    }
    int i = 3;
    tresp r = ts_http(&G, "POST", "/classify?model=fashion-mnist&top_k=3", "image/png", IMG[i].data,
                      IMG[i].len, NULL);
    expect_results(&r, &i, 1, 3);
    ts_resp_free(&r);
    r = ts_http(&G, "POST", "/classify?top_k=50", "image/png", IMG[i].data, IMG[i].len, NULL);
    expect_results(&r, &i, 1, 10); /* clamped to the class count */
    ts_resp_free(&r);
}
END_TEST

START_TEST(test_classify_multipart)
{
    CURL *c = curl_easy_init();
    curl_mime *mime = curl_mime_init(c);
    int idx[] = {5, 1, 12};
    for (int k = 0; k < 3; k++) {
        curl_mimepart *p = curl_mime_addpart(mime);
        char name[16];
        snprintf(name, sizeof name, "img%d", k);
        curl_mime_name(p, name);
        curl_mime_filename(p, IMG[idx[k]].name);
        curl_mime_type(p, "image/png");
        curl_mime_data(p, (const char *)IMG[idx[k]].data, IMG[idx[k]].len);
    }
    curl_mimepart *p = curl_mime_addpart(mime);
    curl_mime_name(p, "top_k");
    curl_mime_data(p, "2", CURL_ZERO_TERMINATED);
    char url[128];
    snprintf(url, sizeof url, "http://127.0.0.1:%d/classify", G.port);
    char *body = NULL;
    size_t len = 0;
    FILE *mem = open_memstream(&body, &len);
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_MIMEPOST, mime);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, mem);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, 20000L);
    CURLcode cc = curl_easy_perform(c);
    fclose(mem);
    tresp r = {0};
    r.curl_code = (int)cc;
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &r.status);
    r.body = body;
    r.len = len;
    expect_results(&r, idx, 3, 2);
    ts_resp_free(&r);
    curl_mime_free(mime);
    curl_easy_cleanup(c);
}
END_TEST

START_TEST(test_classify_json)
{
    int idx[] = {7, 0, 15, 2};
    json_t *imgs = json_array();
    for (int k = 0; k < 4; k++) {
        char *b = ts_b64(IMG[idx[k]].data, IMG[idx[k]].len);
        if (k == 1)
            json_array_append_new(imgs, json_pack("{s:s}", "b64", b));
        else
            json_array_append_new(imgs, json_string(b));
        free(b);
    }
    json_t *req = json_pack("{s:o,s:i}", "images", imgs, "top_k", 4);
    char *s = json_dumps(req, JSON_COMPACT);
    json_decref(req);
    tresp r = ts_http(&G, "POST", "/classify", "application/json", s, strlen(s), NULL);
    expect_results(&r, idx, 4, 4);
    ts_resp_free(&r);
    free(s);
}
END_TEST

/* 40 images in one request with max-batch 16: split over three batches, answered in order. */
START_TEST(test_classify_split)
{
    int idx[40];
    json_t *imgs = json_array();
    for (int k = 0; k < 40; k++) {
        idx[k] = (k * 7) % TS_NIMG;
        char *b = ts_b64(IMG[idx[k]].data, IMG[idx[k]].len);
        json_array_append_new(imgs, json_string(b));
        free(b);
    }
    json_t *req = json_pack("{s:o}", "images", imgs);
    char *s = json_dumps(req, JSON_COMPACT);
    json_decref(req);
    tresp r = ts_http(&G, "POST", "/classify", "application/json", s, strlen(s), NULL);
    expect_results(&r, idx, 40, 5);
    json_t *j = parse(&r);
    ck_assert_int_eq((int)json_integer_value(json_object_get(j, "batch_size")), 16);
    json_decref(j);
    ts_resp_free(&r);
    free(s);
}
END_TEST

/* ---- errors ------------------------------------------------------------------------------- */

/* A PNG header announcing w x h pixels, with no image data after it. */
static size_t fake_png(unsigned char *out, unsigned w, unsigned h)
{
    static const unsigned char sig[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
    memcpy(out, sig, 8);
    unsigned char *c = out + 8;
    c[0] = c[1] = c[2] = 0;
    c[3] = 13;
    memcpy(c + 4, "IHDR", 4);
    unsigned char *d = c + 8;
    d[0] = (unsigned char)(w >> 24), d[1] = (unsigned char)(w >> 16);
    d[2] = (unsigned char)(w >> 8), d[3] = (unsigned char)w;
    d[4] = (unsigned char)(h >> 24), d[5] = (unsigned char)(h >> 16);
    d[6] = (unsigned char)(h >> 8), d[7] = (unsigned char)h;
    d[8] = 8, d[9] = 0, d[10] = 0, d[11] = 0, d[12] = 0;
    uLong crc = crc32(0, c + 4, 17);
    unsigned char *k = d + 13;
    k[0] = (unsigned char)(crc >> 24), k[1] = (unsigned char)(crc >> 16);
    k[2] = (unsigned char)(crc >> 8), k[3] = (unsigned char)crc;
    return 8 + 25;
}

/* POSTs an oversized body to /classify. The server answers and closes while curl may still be
 * sending: curl then sometimes reports the reset (error 55/56) instead of the answer, so
 * that TCP race is retried (at most 5 times). */
static tresp post_oversized(const char *body, size_t len, const char *const *headers)
{
    tresp r;
    for (int t = 0; t < 5; t++) {
        r = ts_http(&G, "POST", "/classify", "image/png", body, len, headers);
        if ((r.curl_code != 55 && r.curl_code != 56) || t == 4) break;
        ts_resp_free(&r);
    }
    return r;
}

START_TEST(test_errors)
{
    tresp r;
    /* unknown model */
    r = ts_http(&G, "POST", "/classify?model=nope", "image/png", IMG[0].data, IMG[0].len, NULL);
    expect_error(&r, 404, "model_not_found");
    ts_resp_free(&r);
    r = ts_http(&G, "POST", "/models/nope/classify", "image/png", IMG[0].data, IMG[0].len, NULL);
    expect_error(&r, 404, "model_not_found");
    ts_resp_free(&r);
    /* unknown endpoint */
    r = ts_http(&G, "GET", "/nothing/here", NULL, NULL, 0, NULL);
    expect_error(&r, 404, "not_found");
    ts_resp_free(&r);
    /* wrong method */
    r = ts_http(&G, "GET", "/classify", NULL, NULL, 0, NULL);
    expect_error(&r, 405, "method_not_allowed");
    ts_resp_free(&r);
    r = ts_http(&G, "POST", "/healthz", "text/plain", "x", 1, NULL);
    expect_error(&r, 405, "method_not_allowed");
    ts_resp_free(&r);
    r = ts_http(&G, "DELETE", "/models", NULL, NULL, 0, NULL);
    expect_error(&r, 405, "method_not_allowed");
    ts_resp_free(&r);
    /* body over the limit (300000 here): refused from Content-Length */
    size_t big = 400000;
    char *b = calloc(1, big);
    r = post_oversized(b, big, NULL);
    expect_error(&r, 413, "body_too_large");
    ts_resp_free(&r);
    free(b);
    /* the same without Content-Length (chunked): refused once it grows past the limit */
    const char *chunked[] = {"Transfer-Encoding: chunked", NULL};
    b = calloc(1, big);
    r = post_oversized(b, big, chunked);
    expect_error(&r, 413, "body_too_large");
    ts_resp_free(&r);
    free(b);
    /* too many pixels, from the header alone */
    unsigned char png[64];
    size_t pl = fake_png(png, 2000, 1000);
    r = ts_http(&G, "POST", "/classify", "image/png", png, pl, NULL);
    expect_error(&r, 413, "image_too_large");
    ts_resp_free(&r);
    /* unsupported format */
    r = ts_http(&G, "POST", "/classify", "image/png", "hello, world", 12, NULL);
    expect_error(&r, 415, "unsupported_image");
    ts_resp_free(&r);
    /* corrupt image: a valid header with no data */
    pl = fake_png(png, 28, 28);
    r = ts_http(&G, "POST", "/classify", "image/png", png, pl, NULL);
    expect_error(&r, 400, "corrupt_image");
    ts_resp_free(&r);
    /* empty body */
    r = ts_http(&G, "POST", "/classify", "image/png", "", 0, NULL);
    expect_error(&r, 400, "empty_body");
    ts_resp_free(&r);
    /* malformed JSON, base64, multipart */
    r = ts_http(&G, "POST", "/classify", "application/json", "{\"images\": [", 12, NULL);
    expect_error(&r, 400, "bad_json");
    ts_resp_free(&r);
    r = ts_http(&G, "POST", "/classify", "application/json", "{\"images\": [\"@@@@\"]}", 20, NULL);
    expect_error(&r, 400, "bad_base64");
    ts_resp_free(&r);
    const char *mp = "--xyz\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\nabc";
    r = ts_http(&G, "POST", "/classify", "multipart/form-data; boundary=xyz", mp, strlen(mp), NULL);
    expect_error(&r, 400, "bad_multipart");
    ts_resp_free(&r);
    r = ts_http(&G, "POST", "/classify", "multipart/form-data", mp, strlen(mp), NULL);
    expect_error(&r, 400, "bad_multipart");
    ts_resp_free(&r);
    /* the corrupt part is named in the message */
    const char *mp2 = "--b\r\nContent-Disposition: form-data; name=\"one\"; filename=\"x.png\"\r\n"
                      "Content-Type: image/png\r\n\r\nnot a png\r\n--b--\r\n";
    r = ts_http(&G, "POST", "/classify", "multipart/form-data; boundary=b", mp2, strlen(mp2), NULL);
    expect_error(&r, 415, "unsupported_image");
    ck_assert_msg(strstr(r.body, "x.png") != NULL, "part not named: %s", r.body);
    ts_resp_free(&r);
    /* bad parameters */
    r = ts_http(&G, "POST", "/classify?top_k=zero", "image/png", IMG[0].data, IMG[0].len, NULL);
    expect_error(&r, 400, "bad_top_k");
    ts_resp_free(&r);
    const char *hdr[] = {"X-Request-Timeout: soon", NULL};
    r = ts_http(&G, "POST", "/classify", "image/png", IMG[0].data, IMG[0].len, hdr);
    expect_error(&r, 400, "bad_timeout");
    ts_resp_free(&r);
    /* the daemon is still fine */
    int i = 0;
    r = ts_http(&G, "POST", "/classify", "image/png", IMG[0].data, IMG[0].len, NULL);
    expect_results(&r, &i, 1, 5);
    ts_resp_free(&r);
}
END_TEST

START_TEST(test_queue_full)
{
    tserver s;
    const char *args[] = {"--max-queue", "2", NULL};
    ck_assert_int_eq(ts_start(&s, 1, args), 0);
    json_t *imgs = json_array();
    for (int k = 0; k < 3; k++) {
        char *b = ts_b64(IMG[k].data, IMG[k].len);
        json_array_append_new(imgs, json_string(b));
        free(b);
    }
    json_t *req = json_pack("{s:o}", "images", imgs);
    char *body = json_dumps(req, JSON_COMPACT);
    json_decref(req);
    tresp r = ts_http(&s, "POST", "/classify", "application/json", body, strlen(body), NULL);
    expect_error(&r, 503, "queue_full");
    ck_assert_str_eq(r.retry_after, "1");
    ts_resp_free(&r);
    free(body);
    int i = 4;
    r = ts_http(&s, "POST", "/classify", "image/png", IMG[i].data, IMG[i].len, NULL);
    expect_results(&r, &i, 1, 5);
    ts_resp_free(&r);
    ck_assert_int_eq(ts_stop(&s, SIGTERM, 15000), 0);
    ts_cleanup(&s);
}
END_TEST

START_TEST(test_deadline)
{
    tserver s;
    /* a lone image waits up to 300 ms for a fuller batch, so a 30 ms deadline passes */
    const char *args[] = {"--max-delay-us", "300000", NULL};
    ck_assert_int_eq(ts_start(&s, 1, args), 0);
    const char *hdr[] = {"X-Request-Timeout: 30", NULL};
    tresp r = ts_http(&s, "POST", "/classify", "image/png", IMG[1].data, IMG[1].len, hdr);
    expect_error(&r, 504, "deadline_exceeded");
    ts_resp_free(&r);
    r = ts_http(&s, "POST", "/classify?timeout_ms=30", "image/png", IMG[1].data, IMG[1].len, NULL);
    expect_error(&r, 504, "deadline_exceeded");
    ts_resp_free(&r);
    /* without a short deadline it runs after the wait */
    int i = 1;
    r = ts_http(&s, "POST", "/classify", "image/png", IMG[i].data, IMG[i].len, NULL);
    expect_results(&r, &i, 1, 5);
    ck_assert(r.seconds >= 0.25);
    ts_resp_free(&r);
    r = ts_http(&s, "GET", "/metrics", NULL, NULL, 0, NULL);
    ck_assert(ts_metric(r.body, "convoy_deadline_exceeded_total{model=\"fashion-mnist\"}") == 2);
    ck_assert(ts_metric(r.body, "convoy_requests_total{model=\"fashion-mnist\",code=\"504\"}") == 2);
    ts_resp_free(&r);

    /* a client that gives up while queued frees its slot: the entry is dropped, not run */
    CURL *h = curl_easy_init();
    char url[128];
    snprintf(url, sizeof url, "http://127.0.0.1:%d/classify", s.port);
    struct curl_slist *hl = curl_slist_append(NULL, "Content-Type: image/png");
    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, hl);
    curl_easy_setopt(h, CURLOPT_POSTFIELDS, IMG[1].data);
    curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE, (long)IMG[1].len);
    curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, 60L);
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    ck_assert_int_eq(curl_easy_perform(h), CURLE_OPERATION_TIMEDOUT);
    curl_slist_free_all(hl);
    curl_easy_cleanup(h);
    double cancelled = 0;
    for (int t = 0; t < 100 && cancelled < 1; t++) {
        usleep(20000);
        r = ts_http(&s, "GET", "/metrics", NULL, NULL, 0, NULL);
        cancelled = ts_metric(r.body, "convoy_cancelled_total{model=\"fashion-mnist\"}");
        ts_resp_free(&r);
    }
    ck_assert_msg(cancelled == 1, "cancelled = %g", cancelled);
    r = ts_http(&s, "POST", "/classify", "image/png", IMG[i].data, IMG[i].len, NULL);
    expect_results(&r, &i, 1, 5);
    ts_resp_free(&r);
    ck_assert_int_eq(ts_stop(&s, SIGTERM, 15000), 0);
    ts_cleanup(&s);
}
END_TEST

/* ---- load ---------------------------------------------------------------------------------- */

typedef struct client {
    const tserver *s;
    int id, requests;
    int ok, wrong, failed;
    int stop_on_refused; /* SIGTERM test: stop when the port closes */
    int drained, refused;
    long max_ms;
    char first_error[256];
} client;

static void *client_main(void *arg)
{
    client *c = arg;
    CURL *h = curl_easy_init();
    char url[128];
    snprintf(url, sizeof url, "http://127.0.0.1:%d/classify", c->s->port);
    struct curl_slist *hl = curl_slist_append(NULL, "Content-Type: image/png");
    for (int k = 0; k < c->requests; k++) {
        int i = (c->id * 5 + k) % TS_NIMG;
        char *body = NULL;
        size_t len = 0;
        FILE *mem = open_memstream(&body, &len);
        curl_easy_setopt(h, CURLOPT_URL, url);
        curl_easy_setopt(h, CURLOPT_HTTPHEADER, hl);
        curl_easy_setopt(h, CURLOPT_POSTFIELDS, IMG[i].data);
        curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE, (long)IMG[i].len);
        curl_easy_setopt(h, CURLOPT_WRITEDATA, mem);
        curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, 30000L);
        curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
        long t0 = ts_now_ms();
        CURLcode cc = curl_easy_perform(h);
        long ms = ts_now_ms() - t0;
        fclose(mem);
        if (ms > c->max_ms) c->max_ms = ms;
        long status = 0;
        curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
        if (cc == CURLE_COULDNT_CONNECT && c->stop_on_refused) {
            c->refused++;
            free(body);
            break;
        }
        if (cc != CURLE_OK) {
            c->failed++;
            if (!*c->first_error)
                snprintf(c->first_error, sizeof c->first_error, "curl: %s", curl_easy_strerror(cc));
            free(body);
            if (c->stop_on_refused) break;
            continue;
        }
        json_error_t je;
        json_t *j = json_loads(body ? body : "", 0, &je);
        if (status == 200 && j) {
            json_t *top = json_array_get(
                json_object_get(json_array_get(json_object_get(j, "results"), 0), "predictions"),
                0);
            int idx = (int)json_integer_value(json_object_get(top, "index"));
            if (ts_top1_ok(&IMG[i], idx, json_string_value(json_object_get(top, "label"))))
                c->ok++;
            else
                c->wrong++;
        } else if (status == 503 && c->stop_on_refused && j &&
                   json_is_string(json_object_get(json_object_get(j, "error"), "code")) &&
                   strcmp(json_string_value(json_object_get(json_object_get(j, "error"), "code")),
                          "draining") == 0) {
            c->drained++;
        } else {
            c->failed++;
            if (!*c->first_error)
                snprintf(c->first_error, sizeof c->first_error, "status %ld: %.200s", status,
                         body ? body : "");
        }
        json_decref(j);
        free(body);
    }
    curl_slist_free_all(hl);
    curl_easy_cleanup(h);
    return NULL;
}

START_TEST(test_concurrent_64)
{
    enum { NC = 64, PER = 12 };
    static client cl[NC];
    pthread_t th[NC];
    memset(cl, 0, sizeof cl);
    for (int k = 0; k < NC; k++) {
        cl[k].s = &G;
        cl[k].id = k;
        cl[k].requests = PER;
        ck_assert_int_eq(pthread_create(&th[k], NULL, client_main, &cl[k]), 0);
    }
    int ok = 0;
    for (int k = 0; k < NC; k++) {
        pthread_join(th[k], NULL);
        ck_assert_msg(cl[k].failed == 0 && cl[k].wrong == 0, "client %d: %d failed, %d wrong: %s",
                      k, cl[k].failed, cl[k].wrong, cl[k].first_error);
        ok += cl[k].ok;
    }
    ck_assert_int_eq(ok, NC * PER);
    tresp r = ts_http(&G, "GET", "/metrics", NULL, NULL, 0, NULL);
    ck_assert_int_eq(r.status, 200);
    double le1 = ts_metric(r.body, "convoy_batch_size_bucket{model=\"fashion-mnist\",le=\"1\"}");
    double all = ts_metric(r.body, "convoy_batch_size_count{model=\"fashion-mnist\"}");
    ck_assert_msg(all > 0 && all > le1, "no batch larger than one: %g of %g", le1, all);
    double images = ts_metric(r.body, "convoy_images_total{model=\"fashion-mnist\"}");
    ck_assert(images >= NC * PER);
    ck_assert(ts_metric(r.body, "convoy_requests_total{model=\"fashion-mnist\",code=\"200\"}") >=
              NC * PER);
    ck_assert(ts_metric(r.body, "convoy_queue_depth{model=\"fashion-mnist\"}") == 0);
    ck_assert(strstr(r.body, "convoy_request_duration_seconds_bucket") != NULL);
    ck_assert(strstr(r.body, "convoy_queue_duration_seconds_bucket") != NULL);
    ck_assert(strstr(r.body, "convoy_inference_duration_seconds_bucket") != NULL);
    ck_assert(ts_metric(r.body, "convoy_model_loads_total") >= 1);
    ck_assert(ts_metric(r.body, "convoy_model_load_failures_total") == 0);
    ck_assert(ts_metric(r.body, "process_resident_memory_bytes") > 0);
    ts_resp_free(&r);
}
END_TEST

typedef struct slow {
    const unsigned char *data;
    size_t len, pos;
} slow;

static size_t slow_read(char *buf, size_t size, size_t nm, void *ud)
{
    slow *s = ud;
    (void)size;
    (void)nm;
    if (s->pos >= s->len) return 0;
    usleep(40000); /* 8 bytes every 40 ms: about 2 s for the image */
    size_t n = s->len - s->pos < 8 ? s->len - s->pos : 8;
    memcpy(buf, s->data + s->pos, n);
    s->pos += n;
    return n;
}

typedef struct slow_result {
    long status;
    int ok;
    long ms;
} slow_result;

static void *slow_main(void *arg)
{
    slow_result *res = arg;
    int i = 9;
    slow s = {IMG[i].data, IMG[i].len, 0};
    CURL *h = curl_easy_init();
    char url[128];
    snprintf(url, sizeof url, "http://127.0.0.1:%d/classify", G.port);
    struct curl_slist *hl = curl_slist_append(NULL, "Content-Type: image/png");
    hl = curl_slist_append(hl, "Expect:");
    char *body = NULL;
    size_t len = 0;
    FILE *mem = open_memstream(&body, &len);
    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, hl);
    curl_easy_setopt(h, CURLOPT_POST, 1L);
    curl_easy_setopt(h, CURLOPT_READFUNCTION, slow_read);
    curl_easy_setopt(h, CURLOPT_READDATA, &s);
    curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE, (long)IMG[i].len);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, mem);
    curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, 30000L);
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    long t0 = ts_now_ms();
    curl_easy_perform(h);
    res->ms = ts_now_ms() - t0;
    fclose(mem);
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &res->status);
    json_t *j = json_loads(body ? body : "", 0, NULL);
    json_t *top = json_array_get(
        json_object_get(json_array_get(json_object_get(j, "results"), 0), "predictions"), 0);
    res->ok = j && ts_top1_ok(&IMG[i], (int)json_integer_value(json_object_get(top, "index")),
                              json_string_value(json_object_get(top, "label")));
    json_decref(j);
    free(body);
    curl_slist_free_all(hl);
    curl_easy_cleanup(h);
    return NULL;
}

START_TEST(test_slow_client)
{
    slow_result res = {0};
    pthread_t th;
    ck_assert_int_eq(pthread_create(&th, NULL, slow_main, &res), 0);
    usleep(100000);
    long t0 = ts_now_ms();
    for (int k = 0; k < 20; k++) {
        int i = k % TS_NIMG;
        tresp r = ts_http(&G, "POST", "/classify", "image/png", IMG[i].data, IMG[i].len, NULL);
        expect_results(&r, &i, 1, 5);
        ck_assert_msg(r.seconds < 1.5, "a fast request took %.3f s", r.seconds);
        ts_resp_free(&r);
    }
    long fast_ms = ts_now_ms() - t0;
    pthread_join(th, NULL);
    ck_assert_msg(res.status == 200 && res.ok, "slow client got %ld", res.status);
    ck_assert_msg(res.ms > fast_ms, "slow upload (%ld ms) was not slower than the fast ones (%ld)",
                  res.ms, fast_ms);
}
END_TEST

START_TEST(test_sigterm_under_load)
{
    enum { NC = 16, PER = 400 };
    tserver s;
    const char *args[] = {"--drain-ms", "5000", NULL};
    ck_assert_int_eq(ts_start(&s, 1, args), 0);
    static client cl[NC];
    pthread_t th[NC];
    memset(cl, 0, sizeof cl);
    for (int k = 0; k < NC; k++) {
        cl[k].s = &s;
        cl[k].id = k;
        cl[k].requests = PER;
        cl[k].stop_on_refused = 1;
        ck_assert_int_eq(pthread_create(&th[k], NULL, client_main, &cl[k]), 0);
    }
    usleep(400000);
    int code = ts_stop(&s, SIGTERM, 10000);
    int ok = 0, drained = 0, refused = 0;
    for (int k = 0; k < NC; k++) {
        pthread_join(th[k], NULL);
        ck_assert_msg(cl[k].failed == 0 && cl[k].wrong == 0, "client %d: %d failed, %d wrong: %s",
                      k, cl[k].failed, cl[k].wrong, cl[k].first_error);
        ok += cl[k].ok;
        drained += cl[k].drained;
        refused += cl[k].refused;
    }
    ck_assert_int_eq(code, 0);
    ck_assert_msg(ok > 0, "no request succeeded before SIGTERM");
    fprintf(stderr, "sigterm: %d answered, %d drained (503), %d refused connections\n", ok, drained,
            refused);
    ts_cleanup(&s);
}
END_TEST

typedef struct bg_req {
    const tserver *s;
    int i;
    tresp r;
} bg_req;

static void *bg_main(void *arg)
{
    bg_req *b = arg;
    b->r = ts_http(b->s, "POST", "/classify", "image/png", IMG[b->i].data, IMG[b->i].len, NULL);
    return NULL;
}

/* Waits (bounded) until n images are queued for fashion-mnist. */
static void wait_queued(const tserver *s, int n)
{
    double d = -1;
    for (int t = 0; t < 300 && d != n; t++) {
        tresp r = ts_http(s, "GET", "/metrics", NULL, NULL, 0, NULL);
        d = r.body ? ts_metric(r.body, "convoy_queue_depth{model=\"fashion-mnist\"}") : -1;
        ts_resp_free(&r);
        if (d != n) usleep(10000);
    }
    ck_assert_msg(d == n, "queue depth %g, expected %d", d, n);
}

/* SIGTERM while a request is queued: it still gets its answer; a new request on an open
 * connection gets 503 draining, readiness is off, new connections are refused, exit 0. */
START_TEST(test_drain)
{
    tserver s;
    const char *args[] = {"--max-delay-us", "2000000", "--drain-ms", "8000", NULL};
    ck_assert_int_eq(ts_start(&s, 1, args), 0);
    /* two keep-alive connections opened before SIGTERM */
    CURL *h = curl_easy_init(), *h2 = curl_easy_init();
    char url[128];
    snprintf(url, sizeof url, "http://127.0.0.1:%d/healthz", s.port);
    FILE *devnull = fopen("/dev/null", "w");
    CURL *hs[2] = {h, h2};
    for (int k = 0; k < 2; k++) {
        curl_easy_setopt(hs[k], CURLOPT_URL, url);
        curl_easy_setopt(hs[k], CURLOPT_WRITEDATA, devnull);
        curl_easy_setopt(hs[k], CURLOPT_TIMEOUT_MS, 10000L);
        ck_assert_int_eq(curl_easy_perform(hs[k]), CURLE_OK);
    }

    bg_req b = {&s, 6, {0}};
    pthread_t th;
    ck_assert_int_eq(pthread_create(&th, NULL, bg_main, &b), 0);
    wait_queued(&s, 1); /* the request is now waiting for a fuller batch */
    kill(s.pid, SIGTERM);

    /* readiness turns off */
    snprintf(url, sizeof url, "http://127.0.0.1:%d/readyz", s.port);
    curl_easy_setopt(h2, CURLOPT_URL, url);
    long st = 0;
    for (int t = 0; t < 300 && st != 503; t++) {
        ck_assert_int_eq(curl_easy_perform(h2), CURLE_OK);
        curl_easy_getinfo(h2, CURLINFO_RESPONSE_CODE, &st);
        if (st != 503) usleep(10000);
    }
    ck_assert_int_eq(st, 503);
    curl_easy_cleanup(h2);
    usleep(50000);

    /* same connection, new request: 503 draining */
    snprintf(url, sizeof url, "http://127.0.0.1:%d/classify", s.port);
    char *body = NULL;
    size_t len = 0;
    FILE *mem = open_memstream(&body, &len);
    struct curl_slist *hl = curl_slist_append(NULL, "Content-Type: image/png");
    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, hl);
    curl_easy_setopt(h, CURLOPT_POSTFIELDS, IMG[0].data);
    curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE, (long)IMG[0].len);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, mem);
    CURLcode cc = curl_easy_perform(h);
    fclose(mem);
    tresp r = {0};
    r.curl_code = (int)cc;
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &r.status);
    r.body = body;
    expect_error(&r, 503, "draining");
    ts_resp_free(&r);
    curl_slist_free_all(hl);
    curl_easy_cleanup(h);
    fclose(devnull);

    /* new connections are refused */
    r = ts_http(&s, "GET", "/healthz", NULL, NULL, 0, NULL);
    ck_assert_int_eq(r.curl_code, CURLE_COULDNT_CONNECT);
    ts_resp_free(&r);

    pthread_join(th, NULL);
    expect_results(&b.r, &b.i, 1, 5);
    ts_resp_free(&b.r);
    int code = ts_stop(&s, SIGTERM, 10000);
    ck_assert_int_eq(code, 0);
    ts_cleanup(&s);
}
END_TEST

/* A queued request that cannot finish within drain-ms is answered 503 and the daemon exits
 * 0 in bounded time. */
START_TEST(test_drain_timeout)
{
    tserver s;
    const char *args[] = {"--max-delay-us", "5000000", "--drain-ms", "300", NULL};
    ck_assert_int_eq(ts_start(&s, 1, args), 0);
    bg_req b = {&s, 3, {0}};
    pthread_t th;
    ck_assert_int_eq(pthread_create(&th, NULL, bg_main, &b), 0);
    wait_queued(&s, 1);
    long t0 = ts_now_ms();
    int code = ts_stop(&s, SIGTERM, 10000);
    long ms = ts_now_ms() - t0;
    pthread_join(th, NULL);
    ck_assert_int_eq(code, 0);
    ck_assert_msg(ms < 2500, "exit took %ld ms", ms);
    expect_error(&b.r, 503, "shutting_down");
    ts_resp_free(&b.r);
    ts_cleanup(&s);
}
END_TEST

/* ---- KServe v2 ---------------------------------------------------------------------------- */

/* The engine's own output on a tensor of n images (n * input_size floats). */
static float *engine_run(const float *input, int n, size_t *in_size, size_t *out_size)
{
    cvy_engine *eng;
    cvy_model *m;
    cvy_context *ctx;
    cvy_error err;
    cvy_engine_params ep = cvy_engine_default_params();
    ep.threads = 1;
    ck_assert_int_eq(cvy_engine_create(&ep, &eng, &err), CVY_OK);
    ck_assert_msg(cvy_model_load_file(eng, "models/fashion-mnist.cvy", &m, &err) == CVY_OK, "%s",
                  err.msg);
    ck_assert_int_eq(cvy_context_create(m, n, &ctx, &err), CVY_OK);
    *in_size = cvy_model_input_size(m);
    *out_size = cvy_model_output_size(m);
    float *out = malloc(sizeof(float) * *out_size * (size_t)n);
    ck_assert_int_eq(cvy_context_run(ctx, n, input, out, &err), CVY_OK);
    cvy_context_destroy(ctx);
    cvy_model_free(m);
    cvy_engine_destroy(eng);
    return out;
}

/* The 16 test images decoded and preprocessed as the server does. */
static float *images_tensor(void)
{
    cvy_engine *eng;
    cvy_model *m;
    cvy_error err;
    cvy_engine_params ep = cvy_engine_default_params();
    ep.threads = 1;
    ck_assert_int_eq(cvy_engine_create(&ep, &eng, &err), CVY_OK);
    ck_assert_int_eq(cvy_model_load_file(eng, "models/fashion-mnist.cvy", &m, &err), CVY_OK);
    size_t in_size = cvy_model_input_size(m);
    float *t = malloc(sizeof(float) * in_size * TS_NIMG);
    for (int i = 0; i < TS_NIMG; i++) {
        cvy_image img;
        ck_assert_int_eq(cvy_image_decode(IMG[i].data, IMG[i].len, 1, 0, &img, &err), CVY_OK);
        ck_assert_int_eq(cvy_image_preprocess(m, &img, t + in_size * (size_t)i, &err), CVY_OK);
        cvy_image_release(&img);
    }
    cvy_model_free(m);
    cvy_engine_destroy(eng);
    return t;
}

static void expect_v2_output(const tresp *r, const float *want, int n, size_t out_size)
{
    ck_assert_msg(r->status == 200, "status %ld: %s", r->status, r->body ? r->body : "");
    json_t *j = parse(r);
    ck_assert_str_eq(json_string_value(json_object_get(j, "model_name")), "fashion-mnist");
    ck_assert_str_eq(json_string_value(json_object_get(j, "id")), "req-7");
    json_t *o = json_array_get(json_object_get(j, "outputs"), 0);
    ck_assert_str_eq(json_string_value(json_object_get(o, "datatype")), "FP32");
    json_t *shape = json_object_get(o, "shape");
    ck_assert_int_eq((int)json_integer_value(json_array_get(shape, 0)), n);
    ck_assert_int_eq((int)json_integer_value(json_array_get(shape, 1)), (int)out_size);
    json_t *data = json_object_get(o, "data");
    ck_assert_int_eq((int)json_array_size(data), n * (int)out_size);
    double maxd = 0;
    for (size_t i = 0; i < json_array_size(data); i++) {
        double d = fabs(json_number_value(json_array_get(data, i)) - want[i]);
        if (d > maxd) maxd = d;
    }
    ck_assert_msg(maxd <= 1e-4, "v2 output differs from the engine by %g", maxd);
    json_decref(j);
}

START_TEST(test_v2)
{
    tresp r = ts_http(&G, "GET", "/v2", NULL, NULL, 0, NULL);
    ck_assert_int_eq(r.status, 200);
    json_t *j = parse(&r);
    ck_assert_str_eq(json_string_value(json_object_get(j, "name")), "convoy");
    ck_assert(json_is_string(json_object_get(j, "version")));
    ck_assert(json_is_array(json_object_get(j, "extensions")));
    json_decref(j);
    ts_resp_free(&r);
    const char *ok_paths[] = {"/v2/health/live", "/v2/health/ready",
                              "/v2/models/fashion-mnist/ready",
                              "/v2/models/fashion-mnist/versions/1/ready"};
    for (int k = 0; k < 4; k++) {
        r = ts_http(&G, "GET", ok_paths[k], NULL, NULL, 0, NULL);
        ck_assert_msg(r.status == 200, "%s: %ld", ok_paths[k], r.status);
        ts_resp_free(&r);
    }
    r = ts_http(&G, "GET", "/v2/models/fashion-mnist", NULL, NULL, 0, NULL);
    ck_assert_int_eq(r.status, 200);
    j = parse(&r);
    ck_assert_str_eq(json_string_value(json_object_get(j, "name")), "fashion-mnist");
    ck_assert(json_is_array(json_object_get(j, "versions")));
    ck_assert(json_is_string(json_object_get(j, "platform")));
    json_t *in = json_array_get(json_object_get(j, "inputs"), 0);
    ck_assert_str_eq(json_string_value(json_object_get(in, "datatype")), "FP32");
    json_t *shape = json_object_get(in, "shape");
    ck_assert_int_eq((int)json_integer_value(json_array_get(shape, 0)), -1);
    ck_assert_int_eq((int)json_integer_value(json_array_get(shape, 3)), 28);
    ck_assert(json_is_array(json_object_get(j, "outputs")));
    json_decref(j);
    ts_resp_free(&r);
    r = ts_http(&G, "GET", "/v2/models/nope", NULL, NULL, 0, NULL);
    expect_v2_error(&r, 404);
    ts_resp_free(&r);
    r = ts_http(&G, "POST", "/v2/models/nope/infer", "application/json", "{}", 2, NULL);
    expect_v2_error(&r, 404);
    ts_resp_free(&r);
    r = ts_http(&G, "GET", "/v2/models/fashion-mnist/infer", NULL, NULL, 0, NULL);
    expect_v2_error(&r, 405);
    ts_resp_free(&r);
    r = ts_http(&G, "POST", "/v2/models/fashion-mnist/infer", "application/json", "{", 1, NULL);
    expect_v2_error(&r, 400);
    ts_resp_free(&r);
}
END_TEST

START_TEST(test_v2_infer)
{
    /* FP32: the reference batch tests/data/fashion_batch16.npy [16, 1, 28, 28], flat data.
     * The answer must equal the engine's output on it (and PyTorch's within 1e-4). */
    size_t count = 0, tcount = 0, in_size, out_size;
    float *input = ts_read_npy_f32("tests/data/fashion_batch16.npy", &count);
    ck_assert_msg(input != NULL, "cannot read tests/data/fashion_batch16.npy");
    float *want = engine_run(input, TS_NIMG, &in_size, &out_size);
    ck_assert_int_eq((int)count, (int)in_size * TS_NIMG);
    float *torch = ts_read_npy_f32("tests/data/fashion_batch16_out.npy", &tcount);
    ck_assert_msg(torch != NULL && tcount == out_size * TS_NIMG, "bad fashion_batch16_out.npy");

    json_t *data = json_array();
    for (size_t i = 0; i < in_size * TS_NIMG; i++)
        json_array_append_new(data, json_real(input[i]));
    json_t *req = json_pack("{s:s,s:[{s:s,s:[i,i,i,i],s:s,s:o}]}", "id", "req-7", "inputs", "name",
                            "input", "shape", TS_NIMG, 1, 28, 28, "datatype", "FP32", "data", data);
    char *s = json_dumps(req, JSON_COMPACT);
    json_decref(req);
    tresp r = ts_http(&G, "POST", "/v2/models/fashion-mnist/infer", "application/json", s,
                      strlen(s), NULL);
    expect_v2_output(&r, want, TS_NIMG, out_size);
    expect_v2_output(&r, torch, TS_NIMG, out_size);
    ts_resp_free(&r);
    free(s);
    free(want);
    free(torch);

    /* BYTES: the encoded images, decoded by the server */
    float *tensor = images_tensor();
    want = engine_run(tensor, TS_NIMG, &in_size, &out_size);
    free(tensor);
    json_t *imgs = json_array();
    for (int i = 0; i < TS_NIMG; i++) {
        char *b = ts_b64(IMG[i].data, IMG[i].len);
        json_array_append_new(imgs, json_string(b));
        free(b);
    }
    req = json_pack("{s:s,s:[{s:s,s:[i],s:s,s:o}]}", "id", "req-7", "inputs", "name", "images",
                    "shape", TS_NIMG, "datatype", "BYTES", "data", imgs);
    s = json_dumps(req, JSON_COMPACT);
    json_decref(req);
    r = ts_http(&G, "POST", "/v2/models/fashion-mnist/infer", "application/json", s, strlen(s),
                NULL);
    expect_v2_output(&r, want, TS_NIMG, out_size);
    ts_resp_free(&r);
    free(s);

    /* wrong shape, wrong datatype, short data */
    const char *bad[] = {
        "{\"inputs\":[{\"name\":\"input\",\"shape\":[1,3,28,28],\"datatype\":\"FP32\","
        "\"data\":[0]}]}",
        "{\"inputs\":[{\"name\":\"input\",\"shape\":[1,1,28,28],\"datatype\":\"INT8\","
        "\"data\":[0]}]}",
        "{\"inputs\":[{\"name\":\"input\",\"shape\":[1,1,28,28],\"datatype\":\"FP32\","
        "\"data\":[0,1,2]}]}",
        "{\"inputs\":[]}",
    };
    for (int k = 0; k < 4; k++) {
        r = ts_http(&G, "POST", "/v2/models/fashion-mnist/infer", "application/json", bad[k],
                    strlen(bad[k]), NULL);
        expect_v2_error(&r, 400);
        ts_resp_free(&r);
    }
    free(input);
    free(want);
}
END_TEST

/* Triton's binary tensor extension (what tritonclient sends by default) and the
 * classification extension. */
START_TEST(test_v2_binary)
{
    size_t count = 0, in_size, out_size;
    float *input = ts_read_npy_f32("tests/data/fashion_batch16.npy", &count);
    ck_assert(input != NULL);
    float *want = engine_run(input, TS_NIMG, &in_size, &out_size);
    size_t bytes = count * sizeof(float);
    char hdr[512];
    int hl = snprintf(hdr, sizeof hdr,
                      "{\"id\":\"req-7\",\"inputs\":[{\"name\":\"input\",\"shape\":[16,1,28,"
                      "28],\"datatype\":\"FP32\",\"parameters\":{\"binary_data_size\":%zu}}],"
                      "\"outputs\":[{\"name\":\"output\",\"parameters\":{\"binary_data\":true}}]}",
                      bytes);
    char *body = malloc((size_t)hl + bytes);
    memcpy(body, hdr, (size_t)hl);
    memcpy(body + hl, input, bytes);
    char ihcl[80];
    snprintf(ihcl, sizeof ihcl, "Inference-Header-Content-Length: %d", hl);
    const char *h[] = {ihcl, NULL};
    tresp r = ts_http(&G, "POST", "/v2/models/fashion-mnist/infer", "application/octet-stream",
                      body, (size_t)hl + bytes, h);
    ck_assert_msg(r.status == 200, "status %ld: %.300s", r.status, r.body ? r.body : "");
    ck_assert(r.infer_header_len > 0 && (size_t)r.infer_header_len < r.len);
    json_t *j = json_loadb(r.body, (size_t)r.infer_header_len, 0, NULL);
    ck_assert(j != NULL);
    ck_assert_str_eq(json_string_value(json_object_get(j, "id")), "req-7");
    json_t *o = json_array_get(json_object_get(j, "outputs"), 0);
    size_t obytes = (size_t)json_integer_value(
        json_object_get(json_object_get(o, "parameters"), "binary_data_size"));
    ck_assert_int_eq((int)obytes, (int)(out_size * TS_NIMG * sizeof(float)));
    ck_assert_int_eq((int)(r.len - (size_t)r.infer_header_len), (int)obytes);
    const float *got = (const float *)(r.body + r.infer_header_len);
    for (size_t i = 0; i < out_size * TS_NIMG; i++) {
        float g;
        memcpy(&g, got + i, sizeof g);
        ck_assert_msg(fabsf(g - want[i]) <= 1e-4f, "output %zu: %g vs %g", i, g, want[i]);
    }
    json_decref(j);
    ts_resp_free(&r);
    free(body);
    free(input);
    free(want);

    /* BYTES elements in binary (4-byte length + PNG), classification top-3 as JSON */
    size_t total = 0;
    for (int i = 0; i < TS_NIMG; i++)
        total += 4 + IMG[i].len;
    hl = snprintf(hdr, sizeof hdr,
                  "{\"inputs\":[{\"name\":\"images\",\"shape\":[16],\"datatype\":\"BYTES\","
                  "\"parameters\":{\"binary_data_size\":%zu}}],\"outputs\":[{\"name\":"
                  "\"output\",\"parameters\":{\"classification\":3}}]}",
                  total);
    body = malloc((size_t)hl + total);
    memcpy(body, hdr, (size_t)hl);
    size_t off = (size_t)hl;
    for (int i = 0; i < TS_NIMG; i++) {
        uint32_t l = (uint32_t)IMG[i].len;
        unsigned char le[4] = {(unsigned char)l, (unsigned char)(l >> 8), (unsigned char)(l >> 16),
                               (unsigned char)(l >> 24)};
        memcpy(body + off, le, 4);
        memcpy(body + off + 4, IMG[i].data, IMG[i].len);
        off += 4 + IMG[i].len;
    }
    snprintf(ihcl, sizeof ihcl, "Inference-Header-Content-Length: %d", hl);
    r = ts_http(&G, "POST", "/v2/models/fashion-mnist/infer", "application/octet-stream", body, off,
                h);
    ck_assert_msg(r.status == 200, "status %ld: %.300s", r.status, r.body ? r.body : "");
    ck_assert_int_eq(r.infer_header_len, -1);
    j = parse(&r);
    o = json_array_get(json_object_get(j, "outputs"), 0);
    ck_assert_str_eq(json_string_value(json_object_get(o, "datatype")), "BYTES");
    json_t *data = json_object_get(o, "data");
    ck_assert_int_eq((int)json_array_size(data), 3 * TS_NIMG);
    for (int i = 0; i < TS_NIMG; i++) {
        const char *top = json_string_value(json_array_get(data, (size_t)i * 3));
        const char *c1 = top ? strchr(top, ':') : NULL;
        ck_assert_msg(c1 != NULL, "bad classification string");
        int idx = atoi(c1 + 1);
        const char *c2 = strchr(c1 + 1, ':');
        ck_assert_msg(ts_top1_ok(&IMG[i], idx, c2 ? c2 + 1 : NULL), "%s: %s", IMG[i].name, top);
    }
    json_decref(j);
    ts_resp_free(&r);
    /* a binary_data_size larger than the data */
    snprintf(ihcl, sizeof ihcl, "Inference-Header-Content-Length: %d", hl);
    r = ts_http(&G, "POST", "/v2/models/fashion-mnist/infer", "application/octet-stream", body,
                (size_t)hl + 10, h);
    expect_v2_error(&r, 400);
    ts_resp_free(&r);
    free(body);
}
END_TEST

/* ---- configuration and lifecycle ---------------------------------------------------------- */

static int run_capture(const char *cmd, char *out, size_t n)
{
    FILE *p = popen(cmd, "r");
    if (!p) return -1;
    size_t got = fread(out, 1, n - 1, p);
    out[got] = 0;
    int st = pclose(p);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

START_TEST(test_config)
{
    char cmd[1024], out[8192];
    const char *b = ts_build_dir();
    char file[] = "/tmp/convoyd-cfg-XXXXXX";
    int fd = mkstemp(file);
    ck_assert(fd >= 0);
    const char *js = "{\"max-batch\": 8, \"max_queue\": 77, \"log-level\": \"warn\", "
                     "\"max-delay-us\": 100}";
    ck_assert(write(fd, js, strlen(js)) == (ssize_t)strlen(js));
    close(fd);
    /* file < env < CLI */
    snprintf(cmd, sizeof cmd,
             "CONVOY_MAX_BATCH=12 CONVOY_MAX_DELAY_US=200 %s/convoyd --config %s "
             "--max-delay-us 300 --print-config",
             b, file);
    ck_assert_int_eq(run_capture(cmd, out, sizeof out), 0);
    json_t *j = json_loads(out, 0, NULL);
    ck_assert_msg(j != NULL, "not JSON: %s", out);
    ck_assert_int_eq((int)json_integer_value(json_object_get(j, "max-batch")), 12);
    ck_assert_int_eq((int)json_integer_value(json_object_get(j, "max-queue")), 77);
    ck_assert_int_eq((int)json_integer_value(json_object_get(j, "max-delay-us")), 300);
    ck_assert_str_eq(json_string_value(json_object_get(j, "log-level")), "warn");
    ck_assert_str_eq(json_string_value(json_object_get(j, "listen")), "127.0.0.1:8080");
    json_decref(j);
    /* invalid values refuse to start, naming the option */
    const char *bad[][2] = {
        {"--max-batch 0", "max-batch"},    {"--threads many", "threads"},
        {"--log-level loud", "log-level"}, {"--no-such-option 1", "no-such-option"},
        {"--listen nocolon", "listen"},    {"--listen 127.0.0.1:99999", "listen"},
    };
    for (int k = 0; k < 6; k++) {
        snprintf(cmd, sizeof cmd, "%s/convoyd %s --print-config 2>&1", b, bad[k][0]);
        int rc = run_capture(cmd, out, sizeof out);
        ck_assert_msg(rc != 0, "%s: accepted", bad[k][0]);
        ck_assert_msg(strstr(out, bad[k][1]) != NULL, "%s: message does not name it: %s", bad[k][0],
                      out);
    }
    snprintf(cmd, sizeof cmd, "%s/convoyd --models /nonexistent/models 2>&1", b);
    ck_assert(run_capture(cmd, out, sizeof out) != 0);
    ck_assert_msg(strstr(out, "option models") != NULL, "%s", out);
    snprintf(cmd, sizeof cmd, "CONVOY_MAX_QUEUE=-5 %s/convoyd --print-config 2>&1", b);
    ck_assert(run_capture(cmd, out, sizeof out) != 0);
    ck_assert(strstr(out, "max-queue") && strstr(out, "CONVOY_MAX_QUEUE"));
    unlink(file);
}
END_TEST

START_TEST(test_sighup_and_models)
{
    tserver s;
    ck_assert_int_eq(ts_start(&s, 1, NULL), 0);
    char src[512], dst[512], cmd[2048];
    snprintf(src, sizeof src, "%s/fashion-mnist.cvy", s.dir);
    snprintf(dst, sizeof dst, "%s/second.cvy", s.dir);
    snprintf(cmd, sizeof cmd, "cp -L '%s' '%s' && printf 'junk' > '%s/broken.cvy'", src, dst,
             s.dir);
    ck_assert_int_eq(system(cmd), 0);
    kill(s.pid, SIGHUP);
    /* wait for the rescan to finish: 3 entries, none loading */
    int n = 0, loading = 1;
    for (int t = 0; t < 300 && (n != 3 || loading); t++) {
        usleep(20000);
        tresp r = ts_http(&s, "GET", "/models", NULL, NULL, 0, NULL);
        json_t *j = json_loads(r.body ? r.body : "", 0, NULL);
        json_t *list = json_object_get(j, "models");
        n = (int)json_array_size(list);
        loading = 0;
        for (int k = 0; k < n; k++)
            if (strcmp(json_string_value(json_object_get(json_array_get(list, (size_t)k), "state")),
                       "loading") == 0)
                loading = 1;
        json_decref(j);
        ts_resp_free(&r);
    }
    ck_assert_int_eq(n, 3);
    ck_assert_int_eq(loading, 0);
    /* two models: a request naming none is ambiguous; naming one works */
    tresp r = ts_http(&s, "POST", "/classify", "image/png", IMG[2].data, IMG[2].len, NULL);
    expect_error(&r, 400, "model_required");
    ts_resp_free(&r);
    int i = 2;
    r = ts_http(&s, "POST", "/models/second/classify", "image/png", IMG[i].data, IMG[i].len, NULL);
    ck_assert_int_eq(r.status, 200);
    ts_resp_free(&r);
    /* the broken file makes the daemon unready, with a reason */
    r = ts_http(&s, "GET", "/readyz", NULL, NULL, 0, NULL);
    ck_assert_int_eq(r.status, 503);
    ck_assert_msg(strstr(r.body, "broken") != NULL, "%s", r.body);
    ts_resp_free(&r);
    r = ts_http(&s, "GET", "/models/broken", NULL, NULL, 0, NULL);
    json_t *j = parse(&r);
    ck_assert_str_eq(json_string_value(json_object_get(j, "state")), "failed");
    ck_assert(json_is_string(json_object_get(j, "last_error")));
    json_decref(j);
    ts_resp_free(&r);

    /* a reload that fails keeps the running version and records the error */
    r = ts_http(&s, "GET", "/models/second", NULL, NULL, 0, NULL);
    j = parse(&r);
    char version[32];
    snprintf(version, sizeof version, "%s", json_string_value(json_object_get(j, "version")));
    json_decref(j);
    ts_resp_free(&r);
    snprintf(cmd, sizeof cmd, "truncate -s 1000 '%s'", dst);
    ck_assert_int_eq(system(cmd), 0);
    kill(s.pid, SIGHUP);
    int has_error = 0;
    for (int t = 0; t < 300 && !has_error; t++) {
        usleep(20000);
        r = ts_http(&s, "GET", "/models/second", NULL, NULL, 0, NULL);
        j = json_loads(r.body ? r.body : "", 0, NULL);
        has_error = json_is_string(json_object_get(j, "last_error"));
        if (has_error) {
            ck_assert_str_eq(json_string_value(json_object_get(j, "state")), "ready");
            ck_assert_str_eq(json_string_value(json_object_get(j, "version")), version);
        }
        json_decref(j);
        ts_resp_free(&r);
    }
    ck_assert_msg(has_error, "the failed reload was not reported");
    r = ts_http(&s, "POST", "/models/second/classify", "image/png", IMG[i].data, IMG[i].len, NULL);
    expect_results_of(&r, "second", &i, 1, 5);
    ts_resp_free(&r);
    r = ts_http(&s, "GET", "/metrics", NULL, NULL, 0, NULL);
    ck_assert(ts_metric(r.body, "convoy_model_load_failures_total") >= 2);
    ts_resp_free(&r);
    ck_assert_int_eq(ts_stop(&s, SIGTERM, 15000), 0);
    ts_cleanup(&s);
}
END_TEST

static Suite *server_suite(void)
{
    Suite *s = suite_create("convoyd");
    TCase *api = tcase_create("api");
    tcase_set_timeout(api, 60);
    tcase_add_test(api, test_health);
    tcase_add_test(api, test_models);
    tcase_add_test(api, test_classify_raw);
    tcase_add_test(api, test_classify_multipart);
    tcase_add_test(api, test_classify_json);
    tcase_add_test(api, test_classify_split);
    tcase_add_test(api, test_errors);
    tcase_add_test(api, test_v2);
    tcase_add_test(api, test_v2_infer);
    tcase_add_test(api, test_v2_binary);
    tcase_add_test(api, test_concurrent_64);
    tcase_add_test(api, test_slow_client);
    suite_add_tcase(s, api);
    TCase *own = tcase_create("own-daemon");
    tcase_set_timeout(own, 90);
    tcase_add_test(own, test_queue_full);
    tcase_add_test(own, test_deadline);
    tcase_add_test(own, test_config);
    tcase_add_test(own, test_sighup_and_models);
    tcase_add_test(own, test_drain);
    tcase_add_test(own, test_drain_timeout);
    tcase_add_test(own, test_sigterm_under_load);
    suite_add_tcase(s, own);
    return s;
}

int main(void)
{
    curl_global_init(CURL_GLOBAL_ALL);
    signal(SIGPIPE, SIG_IGN);
    if (ts_load_images(IMG) < 0) {
        fprintf(stderr, "test_server: test data missing\n");
        return 1;
    }
    if (ts_start(&G, 1, G_ARGS) < 0) {
        fprintf(stderr, "test_server: cannot start %s/convoyd (log: %s)\n", ts_build_dir(), G.log);
        ts_cleanup(&G);
        return 1;
    }
    SRunner *sr = srunner_create(server_suite());
    extern Suite *reload_suite(void); /* tests/server_reload.c */
    srunner_add_suite(sr, reload_suite());
    extern Suite *onnx_server_suite(void); /* tests/server_onnx.c */
    srunner_add_suite(sr, onnx_server_suite());
    extern Suite *fuzzregress_server_suite(void); /* tests/server_fuzzregress.c */
    srunner_add_suite(sr, fuzzregress_server_suite());
    extern Suite *hostile_suite(void); /* tests/server_hostile.c */
    srunner_add_suite(sr, hostile_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    int code = ts_stop(&G, SIGTERM, 15000);
    if (code != 0) {
        fprintf(stderr, "test_server: shared daemon exited with %d (log: %s)\n", code, G.log);
        failed++;
    }
    ts_cleanup(&G);
    curl_global_cleanup();
    return failed ? 1 : 0;
}
