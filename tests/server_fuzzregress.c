/*
 * server_fuzzregress.c - replays the seeds and every input a fuzzer ever failed on of the
 * server harnesses (tests/fuzz/{seeds,regressions}/{multipart,body,v2,request}/) through
 * the same code as the harnesses, linked in from the server's HTTP-free modules. Each input
 * must be answered with a documented status; each seed must parse to the images it holds,
 * and the request seeds must reach the model. No daemon is started.
 */
#include "body.h"
#include "multipart.h"
#include "v2_parse.h"

#include <check.h>
#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz/fuzz_request.c" /* request_run: the fuzz_request harness */

/* Reads a whole file; NULL if it cannot. */
static char *slurp(const char *path, size_t *size)
{
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *b = malloc(n > 0 ? (size_t)n : 1);
    *size = b && fread(b, 1, (size_t)n, f) == (size_t)n ? (size_t)n : 0;
    fclose(f);
    return b;
}

/* The first line of an input (a header value, NUL-terminated in head) and what follows. */
static const char *split_line(const char *in, size_t size, char *head, size_t hn, size_t *rest)
{
    const char *nl = memchr(in, '\n', size);
    size_t l = nl ? (size_t)(nl - in) : size;
    snprintf(head, hn, "%.*s", (int)l, in);
    *rest = nl ? size - l - 1 : 0;
    return nl ? nl + 1 : in + size;
}

/* What a seed must parse to: file name -> images (or parts); -1 for regressions. */
typedef struct expect {
    const char *file;
    int n;
} expect;

static int expected(const expect *e, const char *path)
{
    const char *base = strrchr(path, '/') ? strrchr(path, '/') + 1 : path;
    for (; e->file; e++)
        if (strcmp(e->file, base) == 0) return e->n;
    ck_abort_msg("%s: a seed without an expected count", path);
    return -1;
}

static const expect MULTIPART[] = {{"crlf", 4}, {"lf-quoted", 1}, {"empty-part", 1}, {NULL, 0}};
static const expect BODY[] = {
    {"raw-png", 1}, {"raw-none", 1},      {"multipart", 2}, {"multipart-lf", 1},
    {"json", 2},    {"json-data-url", 1}, {NULL, 0}};
static const expect V2[] = {{"fp32-nested", 2}, {"fp32-flat", 1},    {"bytes-b64", 2},
                            {"fp32-binary", 1}, {"bytes-binary", 2}, {NULL, 0}};
static const expect REQUEST[] = {{"classify-raw", 1},
                                 {"classify-multipart", 2},
                                 {"classify-json", 2},
                                 {"v2-fp32", 1},
                                 {"v2-bytes", 2},
                                 {"v2-binary", 1},
                                 {NULL, 0}};

/* As fuzz_multipart: Content-Type line, then the body. */
static void replay_multipart(const char *path, int want, char *in, size_t size)
{
    char ct[512], boundary[80], err[200];
    size_t len;
    const char *body = split_line(in, size, ct, sizeof ct, &len);
    srv_part parts[16];
    int np = -1;
    if (srv_multipart_boundary(ct, boundary, sizeof boundary) == 0) {
        np = srv_multipart_parse(body, len, boundary, parts, 16, err, sizeof err);
        ck_assert_int_ge(np, -1);
        ck_assert_int_le(np, 16);
        for (int i = 0; i < np; i++)
            ck_assert(parts[i].data >= body && parts[i].data + parts[i].size <= body + len);
    }
    if (want >= 0) ck_assert_msg(np == want, "%s: %d parts, expected %d", path, np, want);
}

/* As fuzz_body: Content-Type line (empty: none), then the body; at most 8 images. */
static void replay_body(const char *path, int want, char *in, size_t size)
{
    char ct[512], msg[512];
    size_t len;
    const char *body = split_line(in, size, ct, sizeof ct, &len);
    srv_body b;
    const char *code = NULL;
    int st = srv_body_parse(*ct ? ct : NULL, body, len, 8, &b, &code, msg, sizeof msg);
    ck_assert_msg(st == 0 || st == 400 || st == 413 || st == 415 || st == 500, "%s: %d", path, st);
    if (st) ck_assert_msg(code && *msg, "%s: status %d without a code and message", path, st);
    if (want >= 0) {
        ck_assert_msg(st == 0, "%s: %d %s", path, st, msg);
        ck_assert_msg(b.n == want, "%s: %d images, expected %d", path, b.n, want);
        for (int i = 0; i < b.n; i++) ck_assert_uint_gt(b.images[i].size, 0);
        if (strcmp(strrchr(path, '/') + 1, "multipart") == 0) {
            ck_assert_int_eq(b.top_k, 3);
            ck_assert_str_eq(b.model, "fashion-mnist");
        }
    }
    srv_body_free(&b);
}

/* As fuzz_v2: Inference-Header-Content-Length line (empty: none), then the body; a model
 * input of 1x2x2, at most 4 images. */
static void replay_v2(const char *path, int want, char *in, size_t size)
{
    char hcl[64], msg[512];
    size_t len;
    const char *body = split_line(in, size, hcl, sizeof hcl, &len);
    srv_v2_infer q;
    const char *code = NULL;
    int st = srv_v2_infer_json(body, len, *hcl ? hcl : NULL, &q, &code, msg, sizeof msg);
    if (!st) st = srv_v2_infer_inputs(&q, 1, 2, 2, 4, &code, msg, sizeof msg);
    ck_assert_msg(st == 0 || st == 400 || st == 413 || st == 500, "%s: %d", path, st);
    if (st) ck_assert_msg(code && *msg, "%s: status %d without a code and message", path, st);
    for (int i = 0; !st && q.input && i < q.n * 4; i++)
        ck_assert_msg(isfinite(q.input[i]), "%s: element %d is not finite", path, i);
    if (want >= 0) {
        ck_assert_msg(st == 0, "%s: %d %s", path, st, msg);
        ck_assert_msg(q.n == want, "%s: %d images, expected %d", path, q.n, want);
        ck_assert_msg(!q.input != !q.imgs, "%s: both or neither of FP32 and BYTES", path);
        ck_assert_msg(q.id && strcmp(json_string_value(q.id), "r1") == 0, "%s: id", path);
    }
    srv_v2_infer_free(&q);
}

/* As fuzz_request: the whole request, through models/fashion-mnist.cvy. */
static void replay_request(const char *path, int want, char *in, size_t size)
{
    int images = -1;
    int st = request_run((const uint8_t *)in, size, &images);
    ck_assert_msg(st == -1 || st == 0 || st == 400 || st == 404 || st == 413 || st == 415 ||
                      st == 500,
                  "%s: %d", path, st);
    if (want >= 0) {
        ck_assert_msg(st == 0, "%s: status %d", path, st);
        ck_assert_msg(images == want, "%s: %d images run, expected %d", path, images, want);
    }
}

typedef void (*replay_fn)(const char *path, int want, char *in, size_t size);

/* Replays every file of tests/fuzz/<kind>/<name>; seeds with their expected count. Returns
 * how many. */
static int replay_dir(const char *kind, const char *name, replay_fn fn, const expect *e)
{
    char dir[256];
    snprintf(dir, sizeof dir, "tests/fuzz/%s/%s", kind, name);
    DIR *d = opendir(dir);
    if (!d) return 0;
    int n = 0;
    for (struct dirent *de; (de = readdir(d));) {
        if (de->d_name[0] == '.' || strcmp(de->d_name, "README") == 0) continue;
        char path[512];
        snprintf(path, sizeof path, "%s/%s", dir, de->d_name);
        size_t size;
        char *in = slurp(path, &size);
        ck_assert_ptr_nonnull(in);
        fn(path, e ? expected(e, path) : -1, in, size);
        free(in);
        n++;
    }
    closedir(d);
    return n;
}

START_TEST(multipart_replay)
{
    ck_assert_int_eq(replay_dir("seeds", "multipart", replay_multipart, MULTIPART), 3);
    replay_dir("regressions", "multipart", replay_multipart, NULL);
}
END_TEST

START_TEST(body_replay)
{
    ck_assert_int_eq(replay_dir("seeds", "body", replay_body, BODY), 6);
    replay_dir("regressions", "body", replay_body, NULL);
}
END_TEST

START_TEST(v2_replay)
{
    ck_assert_int_eq(replay_dir("seeds", "v2", replay_v2, V2), 5);
    replay_dir("regressions", "v2", replay_v2, NULL);
}
END_TEST

START_TEST(request_replay)
{
    ck_assert_int_eq(replay_dir("seeds", "request", replay_request, REQUEST), 6);
    replay_dir("regressions", "request", replay_request, NULL);
}
END_TEST

Suite *fuzzregress_server_suite(void)
{
    Suite *s = suite_create("fuzzregress-server");
    TCase *tc = tcase_create("replay");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, multipart_replay);
    tcase_add_test(tc, body_replay);
    tcase_add_test(tc, v2_replay);
    tcase_add_test(tc, request_replay);
    suite_add_tcase(s, tc);
    return s;
}
