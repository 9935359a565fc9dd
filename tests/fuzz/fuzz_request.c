/* fuzz_request.c - libFuzzer harness for a whole request short of the socket: what convoyd
 * does with a POST once libmicrohttpd has read it. Input, HTTP-like:
 *
 *   POST /classify?top_k=3 HTTP/1.1          (or /models/M/classify, /v2/models/M/infer)
 *   Content-Type: image/png                  (a few headers, LF or CRLF)
 *   Inference-Header-Content-Length: 123
 *
 *   <body>
 *
 * /classify bodies go through srv_body_parse, /v2 bodies through the v2 parser; images are
 * decoded and preprocessed by srv_decode_image with the pixel limit (what srv_decode_images
 * runs for each image), and the batch is run through models/fashion-mnist.cvy (or
 * $CONVOY_FUZZ_MODEL), loaded once, on one engine thread, then its top-k taken. Routing,
 * the registry and the batcher (server/http.c, registry.c, batcher.c) are not part of it.
 * Errors are fine; crashes, leaks and bad reads are not. tests/server_fuzzregress.c includes
 * this file to replay the seeds and regressions through request_run. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "body.h"
#include "convoy.h"
#include "decode.h"
#include "v2_parse.h"

#define MAX_IMAGES 4
#define MAX_PIXELS 1000000L
#define TOP_K      5

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

typedef struct model {
    cvy_model *m;
    cvy_context *ctx;
    int c, h, w;
    size_t in_size, out_size;
} model;

/* Loads the model once; aborts when it cannot (the harness is useless without it). */
static const model *the_model(void)
{
    static model md;
    if (md.m) return &md;
    const char *path = getenv("CONVOY_FUZZ_MODEL");
    if (!path) path = "models/fashion-mnist.cvy";
    cvy_engine_params p = cvy_engine_default_params();
    p.threads = 1;
    cvy_engine *eng;
    cvy_error err;
    if (cvy_engine_create(&p, &eng, &err) != CVY_OK ||
        cvy_model_load_file(eng, path, &md.m, &err) != CVY_OK ||
        cvy_context_create(md.m, MAX_IMAGES, &md.ctx, &err) != CVY_OK) {
        fprintf(stderr, "fuzz_request: %s: %s\n", path, err.msg);
        abort();
    }
    cvy_model_input_shape(md.m, &md.c, &md.h, &md.w);
    md.in_size = cvy_model_input_size(md.m);
    md.out_size = cvy_model_output_size(md.m);
    return &md;
}

/* The parts of the request the handlers look at. */
typedef struct req {
    char path[256];
    char ctype[256]; /* "" if absent */
    char hcl[32];    /* Inference-Header-Content-Length, "" if absent */
    int has_ctype, has_hcl;
    const char *body;
    size_t len;
} req;

/* Copies a header value (after "Name:" and blanks) of length n. */
static void header_value(char *dst, size_t dn, const char *v, size_t n)
{
    while (n && (*v == ' ' || *v == '\t')) v++, n--;
    size_t k = n < dn - 1 ? n : dn - 1;
    memcpy(dst, v, k);
    dst[k] = 0;
}

/* Splits the input into request line, headers and body. Returns 0, or -1 if it is no POST. */
static int split(const char *in, size_t size, req *r)
{
    memset(r, 0, sizeof *r);
    const char *end = in + size, *p = in;
    for (int line = 0; p < end; line++) {
        const char *eol = memchr(p, '\n', (size_t)(end - p));
        if (!eol) return -1; /* no blank line: no body */
        size_t n = (size_t)(eol - p);
        if (n && p[n - 1] == '\r') n--;
        if (line == 0) {
            if (n < 6 || memcmp(p, "POST /", 6) != 0) return -1;
            const char *sp = memchr(p + 5, ' ', n - 5);
            size_t pl = (size_t)((sp ? sp : p + n) - (p + 5));
            if (pl >= sizeof r->path) return -1;
            memcpy(r->path, p + 5, pl);
        } else if (n == 0) {
            p = eol + 1;
            break;
        } else if (n > 13 && strncasecmp(p, "Content-Type:", 13) == 0) {
            header_value(r->ctype, sizeof r->ctype, p + 13, n - 13);
            r->has_ctype = 1;
        } else if (n > 32 && strncasecmp(p, "Inference-Header-Content-Length:", 32) == 0) {
            header_value(r->hcl, sizeof r->hcl, p + 32, n - 32);
            r->has_hcl = 1;
        }
        p = eol + 1;
    }
    char *q = strchr(r->path, '?'); /* the query (model=, top_k=) is not looked at */
    if (q) *q = 0;
    r->body = p;
    r->len = (size_t)(end - p);
    return 0;
}

/* 1: path is /classify or /models/NAME/classify; 2: /v2/models/NAME[/versions/V]/infer. */
static int route(const char *path)
{
    size_t n = strlen(path);
    if (strcmp(path, "/classify") == 0) return 1;
    if (strncmp(path, "/models/", 8) == 0 && n > 17 && strcmp(path + n - 9, "/classify") == 0)
        return 1;
    if (strncmp(path, "/v2/models/", 11) == 0 && n > 17 && strcmp(path + n - 6, "/infer") == 0)
        return 2;
    return 0;
}

/* Decodes n images into in; 0 or the status convoyd would answer. */
static int decode_all(const model *md, const srv_image_src *imgs, int n, float *in)
{
    for (int i = 0; i < n; i++) {
        const char *code = NULL;
        char msg[512];
        int st = srv_decode_image(md->m, MAX_PIXELS, &imgs[i], in + md->in_size * (size_t)i, &code,
                                  msg, sizeof msg);
        if (st != 0 && st != 400 && st != 413 && st != 415) abort();
        if (st) return st;
    }
    return 0;
}

/* Runs n inputs and takes the top k of each row, as the finish functions do; returns n. */
static int run(const model *md, const float *in, int n, int k)
{
    static float out[MAX_IMAGES * 1024];
    cvy_prediction preds[TOP_K];
    cvy_error err;
    if (n < 1 || n > MAX_IMAGES || md->out_size > 1024) abort();
    if (cvy_context_run(md->ctx, n, in, out, &err) != CVY_OK) abort();
    if (k > TOP_K) k = TOP_K;
    for (int i = 0; i < n; i++)
        if (cvy_model_topk(md->m, out + md->out_size * (size_t)i, k, preds) > k) abort();
    return n;
}

/* POST /classify: body by content type, images, batch. Returns 0 with *images run, or the
 * status convoyd would answer. */
static int classify(const model *md, const req *r, float *in, int *images)
{
    srv_body b;
    const char *code = NULL;
    char msg[512];
    int st = srv_body_parse(r->has_ctype ? r->ctype : NULL, r->body, r->len, MAX_IMAGES, &b, &code,
                            msg, sizeof msg);
    if (!st) st = decode_all(md, b.images, b.n, in);
    if (!st) *images = run(md, in, b.n, b.top_k ? b.top_k : TOP_K);
    srv_body_free(&b);
    return st;
}

/* POST /v2/models/M/infer: both parser stages, then FP32 data or decoded BYTES images.
 * Returns as classify. */
static int infer(const model *md, const req *r, float *in, int *images)
{
    srv_v2_infer q;
    const char *code = NULL;
    char msg[512];
    int st =
        srv_v2_infer_json(r->body, r->len, r->has_hcl ? r->hcl : NULL, &q, &code, msg, sizeof msg);
    if (!st) st = srv_v2_infer_inputs(&q, md->c, md->h, md->w, MAX_IMAGES, &code, msg, sizeof msg);
    int k = q.classification ? q.classification : TOP_K;
    if (!st && q.input)
        *images = run(md, q.input, q.n, k);
    else if (!st && (st = decode_all(md, q.imgs, q.n, in)) == 0)
        *images = run(md, in, q.n, k);
    srv_v2_infer_free(&q);
    return st;
}

/* Runs one request. Returns 0 when it reached the model (*images run), -1 when the input is
 * no POST request, else the status convoyd would answer (400, 404, 413, 415, 500). */
static int request_run(const uint8_t *data, size_t size, int *images)
{
    const model *md = the_model();
    req r;
    *images = 0;
    if (split((const char *)data, size, &r) < 0) return -1;
    int rt = route(r.path);
    if (!rt) return 404;
    /* the body in its own allocation, as convoyd holds it: overreads are caught */
    char *body = malloc(r.len ? r.len : 1);
    float *in = malloc(sizeof(float) * md->in_size * MAX_IMAGES);
    if (!body || !in) abort();
    memcpy(body, r.body, r.len);
    r.body = body;
    int st = rt == 1 ? classify(md, &r, in, images) : infer(md, &r, in, images);
    free(in);
    free(body);
    return st;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    int images;
    int st = request_run(data, size, &images);
    if (st != -1 && st != 0 && st != 400 && st != 404 && st != 413 && st != 415 && st != 500)
        abort();
    return 0;
}
