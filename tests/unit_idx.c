/*
 * unit_idx.c - tests of tools/idx.c: small IDX files written plain and gzipped to a temporary
 * directory, read back; wrong magic, wrong kind, bad sizes, truncation and trailing data are
 * rejected.
 */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <zlib.h>

#include "../tools/idx.h"

static char g_dir[64];

static void setup(void)
{
    strcpy(g_dir, "/tmp/convoy-idx-XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(g_dir));
}

static void teardown(void)
{
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_dir);
    if (system(cmd) != 0) fprintf(stderr, "cannot remove %s\n", g_dir);
}

/* Writes header words (big-endian) then n payload bytes to g_dir/name, gzipped or not.
 * Returns the path (static buffer per call slot). */
static const char *write_idx(const char *name, int gz, const uint32_t *words, int nwords,
                             const unsigned char *payload, size_t n)
{
    static char paths[4][128];
    static int slot;
    char *path = paths[slot++ & 3];
    snprintf(path, 128, "%s/%s", g_dir, name);
    unsigned char *buf = malloc(4 * (size_t)nwords + n + 1);
    for (int i = 0; i < nwords; i++) {
        buf[4 * i] = (unsigned char)(words[i] >> 24);
        buf[4 * i + 1] = (unsigned char)(words[i] >> 16);
        buf[4 * i + 2] = (unsigned char)(words[i] >> 8);
        buf[4 * i + 3] = (unsigned char)words[i];
    }
    if (n) memcpy(buf + 4 * nwords, payload, n);
    size_t total = 4 * (size_t)nwords + n;
    if (gz) {
        gzFile f = gzopen(path, "wb");
        ck_assert_ptr_nonnull(f);
        ck_assert_int_eq(gzwrite(f, buf, (unsigned)total), (int)total);
        ck_assert_int_eq(gzclose(f), Z_OK);
    } else {
        FILE *f = fopen(path, "wb");
        ck_assert_ptr_nonnull(f);
        ck_assert_uint_eq(fwrite(buf, 1, total, f), total);
        fclose(f);
    }
    free(buf);
    return path;
}

START_TEST(read_images_and_labels)
{
    unsigned char px[3 * 4 * 5], lab[3] = {7, 0, 9};
    for (size_t i = 0; i < sizeof px; i++) px[i] = (unsigned char)(i * 13);
    for (int gz = 0; gz <= 1; gz++) {
        uint32_t iw[4] = {0x803, 3, 4, 5}, lw[2] = {0x801, 3};
        const char *ip = write_idx(gz ? "img.gz" : "img", gz, iw, 4, px, sizeof px);
        const char *lp = write_idx(gz ? "lab.gz" : "lab", gz, lw, 2, lab, 3);
        idx_images im;
        idx_labels lb;
        cvy_error err = {{0}};
        ck_assert_msg(idx_read_images(ip, &im, &err) == 0, "%s", err.msg);
        ck_assert_int_eq(im.count, 3);
        ck_assert_int_eq(im.rows, 4);
        ck_assert_int_eq(im.cols, 5);
        ck_assert_mem_eq(im.pixels, px, sizeof px);
        ck_assert_msg(idx_read_labels(lp, &lb, &err) == 0, "%s", err.msg);
        ck_assert_int_eq(lb.count, 3);
        ck_assert_mem_eq(lb.labels, lab, 3);
        idx_images_free(&im);
        idx_labels_free(&lb);
        idx_images_free(NULL);
        idx_labels_free(NULL);
    }
}
END_TEST

/* Expects reading the given file as images (or labels) to fail mentioning `want`. */
static void expect_fail(const char *path, int images, const char *want)
{
    idx_images im;
    idx_labels lb;
    cvy_error err = {{0}};
    int r = images ? idx_read_images(path, &im, &err) : idx_read_labels(path, &lb, &err);
    ck_assert_int_ne(r, 0);
    if (images)
        ck_assert_ptr_null(im.pixels);
    else
        ck_assert_ptr_null(lb.labels);
    ck_assert_msg(strstr(err.msg, want) != NULL, "'%s' lacks '%s'", err.msg, want);
    ck_assert_ptr_nonnull(strstr(err.msg, path));
}

START_TEST(rejects_bad_files)
{
    unsigned char px[2 * 3 * 3] = {0};
    for (int gz = 0; gz <= 1; gz++) {
        uint32_t bad_magic[4] = {0x12345678, 2, 3, 3};
        expect_fail(write_idx("a", gz, bad_magic, 4, px, 18), 1, "magic");
        uint32_t float_idx[4] = {0x0D03, 2, 3, 3};
        expect_fail(write_idx("b", gz, float_idx, 4, px, 18), 1, "magic");
        /* a label file read as images and the reverse */
        uint32_t lw[2] = {0x801, 18};
        expect_fail(write_idx("c", gz, lw, 2, px, 18), 1, "label");
        uint32_t iw[4] = {0x803, 2, 3, 3};
        expect_fail(write_idx("d", gz, iw, 4, px, 18), 0, "image");
        /* truncated payload, trailing payload, truncated header */
        expect_fail(write_idx("e", gz, iw, 4, px, 17), 1, "truncated");
        uint32_t lw2[2] = {0x801, 17};
        expect_fail(write_idx("f", gz, lw2, 2, px, 18), 0, "after");
        expect_fail(write_idx("g", gz, iw, 2, NULL, 0), 1, "truncated");
        expect_fail(write_idx("h", gz, iw, 0, NULL, 0), 1, "truncated");
        /* absurd sizes */
        uint32_t zero_rows[4] = {0x803, 2, 0, 3};
        expect_fail(write_idx("i", gz, zero_rows, 4, px, 0), 1, "dimension");
        uint32_t huge[4] = {0x803, 0x7fffffff, 60000, 60000};
        expect_fail(write_idx("j", gz, huge, 4, px, 18), 1, "not supported");
    }
    expect_fail("/nonexistent/idx", 1, "No such file");
}
END_TEST

START_TEST(rejects_corrupt_gzip)
{
    unsigned char px[64 * 64];
    for (size_t i = 0; i < sizeof px; i++) px[i] = (unsigned char)(i * 7 + (i >> 5));
    uint32_t iw[4] = {0x803, 1, 64, 64};
    const char *p = write_idx("z.gz", 1, iw, 4, px, sizeof px);
    /* flip bytes in the middle of the deflate stream */
    FILE *f = fopen(p, "r+b");
    ck_assert_ptr_nonnull(f);
    fseek(f, 0, SEEK_END);
    long size = ftell(f);
    ck_assert_int_gt(size, 40);
    unsigned char junk[16];
    memset(junk, 0xff, sizeof junk);
    fseek(f, size / 2, SEEK_SET);
    fwrite(junk, 1, sizeof junk, f);
    fclose(f);
    idx_images im;
    cvy_error err = {{0}};
    ck_assert_int_ne(idx_read_images(p, &im, &err), 0);
    ck_assert_ptr_null(im.pixels);
    ck_assert_int_gt(strlen(err.msg), 0);
}
END_TEST

Suite *idx_suite(void)
{
    Suite *s = suite_create("idx");
    TCase *tc = tcase_create("idx");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, read_images_and_labels);
    tcase_add_test(tc, rejects_bad_files);
    tcase_add_test(tc, rejects_corrupt_gzip);
    suite_add_tcase(s, tc);
    return s;
}
