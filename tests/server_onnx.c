/* server_onnx.c - convoyd serving <name>.onnx straight from its model directory, with labels
 * and preprocessing from the optional <name>.json sidecar: the answer equals the engine's own
 * run of the same conversion, and a bad sidecar fails the load with a message naming it. */
#include "server_util.h"

#include <check.h>
#include <jansson.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "convoy.h"

#define ONNX "tests/data/zoo/tutorial_cnn.onnx"

static void write_text(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    ck_assert_ptr_nonnull(f);
    fputs(text, f);
    fclose(f);
}

static void copy_file(const char *from, const char *to)
{
    size_t n;
    unsigned char *b = ts_read_file(from, &n);
    ck_assert_ptr_nonnull(b);
    FILE *f = fopen(to, "wb");
    ck_assert_ptr_nonnull(f);
    ck_assert_uint_eq(fwrite(b, 1, n, f), n);
    fclose(f);
    free(b);
}

/* GET /models/{name} until its state is `want` (bounded); returns the last description. */
static json_t *wait_state(const tserver *s, const char *name, const char *want)
{
    char path[256];
    snprintf(path, sizeof path, "/models/%s", name);
    json_t *j = NULL;
    for (long end = ts_now_ms() + 15000; ts_now_ms() < end; usleep(50000)) {
        json_decref(j);
        tresp r = ts_http(s, "GET", path, NULL, NULL, 0, NULL);
        j = r.status == 200 ? json_loads(r.body, 0, NULL) : NULL;
        ts_resp_free(&r);
        const char *st = json_string_value(json_object_get(j, "state"));
        if (st && strcmp(st, want) == 0) return j;
    }
    return j;
}

START_TEST(test_onnx_with_sidecar)
{
    tserver s;
    ck_assert_int_eq(ts_start(&s, 1, NULL), 0);
    char p[512];
    snprintf(p, sizeof p, "%s/tut.onnx", s.dir);
    copy_file(ONNX, p);
    snprintf(p, sizeof p, "%s/tut.txt", s.dir);
    write_text(p, "l0\nl1\nl2\nl3\nl4\nl5\nl6\nl7\nl8\nl9\n");
    snprintf(p, sizeof p, "%s/tut.json", s.dir);
    write_text(p, "{\"labels\": \"tut.txt\", \"scale\": 0.00392156863, \"mean\": 0.286, "
                  "\"std\": [0.353]}");
    snprintf(p, sizeof p, "%s/bad.onnx", s.dir);
    copy_file(ONNX, p);
    snprintf(p, sizeof p, "%s/bad.json", s.dir);
    write_text(p, "{\"colour\": \"rgb\"}");
    kill(s.pid, SIGHUP);

    json_t *d = wait_state(&s, "tut", "ready");
    ck_assert_msg(d && !strcmp(json_string_value(json_object_get(d, "state")), "ready"),
                  "tut.onnx did not load");
    json_decref(d);
    d = wait_state(&s, "bad", "failed");
    ck_assert_ptr_nonnull(d);
    const char *why = json_string_value(json_object_get(d, "last_error"));
    ck_assert_msg(why && strstr(why, "unknown field \"colour\""), "last_error: %s", why);
    json_decref(d);

    /* the daemon's answer equals the engine's own run of the same conversion */
    size_t n;
    unsigned char *png = ts_read_file("tests/data/fashion_00.png", &n);
    ck_assert_ptr_nonnull(png);
    tresp r = ts_http(&s, "POST", "/models/tut/classify?top_k=3", "image/png", png, n, NULL);
    ck_assert_msg(r.status == 200, "status %ld: %s", r.status, r.body);
    json_t *j = json_loads(r.body, 0, NULL);
    json_t *top = json_array_get(
        json_object_get(json_array_get(json_object_get(j, "results"), 0), "predictions"), 0);

    cvy_engine *e;
    cvy_model *m;
    cvy_image img;
    cvy_error err;
    ck_assert_int_eq(cvy_engine_create(NULL, &e, &err), CVY_OK);
    cvy_onnx_options o = cvy_onnx_default_options();
    char labels[600];
    snprintf(labels, sizeof labels, "%s/tut.txt", s.dir);
    o.labels_path = labels;
    o.scale = 0.00392156863f;
    o.mean[0] = o.mean[1] = o.mean[2] = 0.286f;
    o.std[0] = o.std[1] = o.std[2] = 0.353f;
    ck_assert_msg(cvy_model_load_onnx(e, ONNX, &o, &m, &err) == CVY_OK, "%s", err.msg);
    ck_assert_int_eq(cvy_image_decode(png, n, 1, 0, &img, &err), CVY_OK);
    float in[28 * 28], out[10];
    ck_assert_int_eq(cvy_image_preprocess(m, &img, in, &err), CVY_OK);
    cvy_context *c;
    ck_assert_int_eq(cvy_context_create(m, 1, &c, &err), CVY_OK);
    ck_assert_int_eq(cvy_context_run(c, 1, in, out, &err), CVY_OK);
    cvy_prediction want;
    ck_assert_int_eq(cvy_model_topk(m, out, 1, &want), 1);
    ck_assert_int_eq(json_integer_value(json_object_get(top, "index")), want.index);
    ck_assert_str_eq(json_string_value(json_object_get(top, "label")), want.label);
    ck_assert_double_eq_tol(json_number_value(json_object_get(top, "score")), want.score, 1e-5);
    ck_assert_str_eq(json_string_value(json_object_get(j, "model_version")), cvy_model_hash(m));
    cvy_context_destroy(c);
    cvy_image_release(&img);
    cvy_model_free(m);
    cvy_engine_destroy(e);
    json_decref(j);
    ts_resp_free(&r);
    free(png);
    ck_assert_int_eq(ts_stop(&s, SIGTERM, 10000), 0);
    ts_cleanup(&s);
}
END_TEST

Suite *onnx_server_suite(void)
{
    Suite *s = suite_create("convoyd-onnx");
    TCase *tc = tcase_create("sidecar");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_onnx_with_sidecar);
    suite_add_tcase(s, tc);
    return s;
}
