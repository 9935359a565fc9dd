/* unit_fuzzregress.c - replays the fuzz seeds and every input a fuzzer ever crashed on
 * (tests/fuzz/{seeds,regressions}/) of the engine-only harnesses (cvy, image, onnx) through
 * the same paths as the harnesses: each must load or be rejected cleanly. Seeds of the model
 * loader and the ONNX importer must load and pass their self-test. The server harnesses'
 * inputs are replayed by tests/server_fuzzregress.c. */
#include <check.h>
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "convoy.h"
#include "format.h"
#include "image.h"
#include "onnx_import.h"

/* Reads a whole file; NULL if it cannot. */
static uint8_t *slurp(const char *path, size_t *size)
{
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *b = malloc(n > 0 ? (size_t)n : 1);
    *size = b && fread(b, 1, (size_t)n, f) == (size_t)n ? (size_t)n : 0;
    fclose(f);
    return b;
}

/* Calls fn on every regular file of dir; returns how many. */
static int each_file(const char *dir, void (*fn)(const char *path, int seed), int seed)
{
    DIR *d = opendir(dir);
    if (!d) return 0;
    int n = 0;
    for (struct dirent *e; (e = readdir(d));) {
        if (e->d_name[0] == '.' || strcmp(e->d_name, "README") == 0) continue;
        char path[1024];
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        fn(path, seed);
        n++;
    }
    closedir(d);
    return n;
}

static void replay_cvy(const char *path, int seed)
{
    cvy_engine_params p = cvy_engine_default_params();
    p.threads = 1;
    cvy_engine *eng;
    ck_assert_int_eq(cvy_engine_create(&p, &eng, NULL), CVY_OK);
    size_t size;
    uint8_t *b = slurp(path, &size);
    ck_assert_ptr_nonnull(b);
    cvy_model *m = NULL;
    cvy_error err;
    cvy_status s = cvy_model_load_memory(eng, b, size, &m, &err);
    if (seed) ck_assert_msg(s == CVY_OK, "%s: %s", path, err.msg);
    if (s == CVY_OK) {
        int n;
        s = cvy_model_self_test(m, &n, &err);
        if (seed) ck_assert_msg(s == CVY_OK, "%s: %s", path, err.msg);
    } else {
        ck_assert_msg(strlen(err.msg) > 0, "%s: rejected without a message", path);
    }
    cvy_model_free(m);
    free(b);
    cvy_engine_destroy(eng);
}

static void replay_image(const char *path, int seed)
{
    static const cvy_preproc spec = {.width = 28,
                                     .height = 28,
                                     .color = CVY_COLOR_RGB,
                                     .resize = CVY_RESIZE_SHORTER_CROP,
                                     .scale = 1.0f,
                                     .std = {1, 1, 1}};
    static float out[3 * 28 * 28];
    size_t size;
    uint8_t *b = slurp(path, &size);
    ck_assert_ptr_nonnull(b);
    cvy_image img;
    cvy_error err;
    cvy_status s = cvy_image_decode(b, size, 3, 1L << 22, &img, &err);
    if (seed) ck_assert_msg(s == CVY_OK, "%s: %s", path, err.msg);
    if (s == CVY_OK) {
        ck_assert_int_eq(cvy_image_preprocess_spec(&spec, &img, out, &err), CVY_OK);
        cvy_image_release(&img);
    }
    free(b);
}

/* As fuzz_onnx: import with dim 0 as the batch, else with an implicit batch; what converts
 * must load. Seeds must convert, load and pass their self-test. */
static void replay_onnx(const char *path, int seed)
{
    cvy_engine_params p = cvy_engine_default_params();
    p.threads = 1;
    cvy_engine *eng;
    ck_assert_int_eq(cvy_engine_create(&p, &eng, NULL), CVY_OK);
    size_t size;
    uint8_t *b = slurp(path, &size);
    ck_assert_ptr_nonnull(b);
    cvy_error err;
    fmt_model fm;
    cvy_status s = CVY_ERR_FORMAT;
    for (int unit = 0; unit < 2 && s != CVY_OK; unit++) {
        onnx_import_opts o = {.dir = "/nonexistent/convoy-fuzz", .unit_batch = unit};
        s = onnx_import(b, size, &o, &fm, &err);
        if (s != CVY_OK) ck_assert_msg(strlen(err.msg) > 0, "%s: rejected without a message", path);
    }
    if (seed) ck_assert_msg(s == CVY_OK, "%s: %s", path, err.msg);
    if (s == CVY_OK) {
        uint8_t *cvy = NULL;
        size_t n = 0;
        ck_assert_int_eq(fmt_serialize(&fm, &cvy, &n, &err), CVY_OK);
        cvy_model *m = NULL;
        s = cvy_model_load_memory(eng, cvy, n, &m, &err);
        if (seed) ck_assert_msg(s == CVY_OK, "%s: %s", path, err.msg);
        int ok;
        if (s == CVY_OK) s = cvy_model_self_test(m, &ok, &err);
        if (seed) ck_assert_msg(s == CVY_OK, "%s: self-test: %s", path, err.msg);
        cvy_model_free(m);
        free(cvy);
        fmt_model_clear(&fm);
    }
    free(b);
    cvy_engine_destroy(eng);
}

START_TEST(seeds_and_regressions_replay)
{
    ck_assert_int_ge(each_file("tests/fuzz/seeds/cvy", replay_cvy, 1), 2);
    ck_assert_int_ge(each_file("tests/fuzz/seeds/image", replay_image, 1), 8);
    ck_assert_int_ge(each_file("tests/fuzz/seeds/onnx", replay_onnx, 1), 13);
    each_file("tests/fuzz/regressions/cvy", replay_cvy, 0);
    each_file("tests/fuzz/regressions/image", replay_image, 0);
    ck_assert_int_ge(each_file("tests/fuzz/regressions/onnx", replay_onnx, 0), 1);
}
END_TEST

Suite *fuzzregress_suite(void)
{
    Suite *s = suite_create("fuzzregress");
    TCase *tc = tcase_create("replay");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, seeds_and_regressions_replay);
    suite_add_tcase(s, tc);
    return s;
}
