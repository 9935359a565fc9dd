/*
 * unit_npy.c - tests of tools/npy.c: round trips through memory and files, numpy-written
 * v1.0 / v2.0 headers (built by hand here), and the errors for other dtypes, Fortran order,
 * too many dims, bad magic, truncation and trailing data.
 */
#include <check.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../tools/npy.h"

/* Builds an .npy image by hand: version major.0, the given dict padded to a multiple of 64
 * (numpy's layout), then nbytes of data. */
static unsigned char *build_npy(int major, const char *dict, const void *data, size_t nbytes,
                                size_t *size)
{
    size_t pre = major == 1 ? 10 : 12, dl = strlen(dict);
    size_t total = (pre + dl + 1 + 63) / 64 * 64, hlen = total - pre;
    unsigned char *b = malloc(total + nbytes + 1);
    ck_assert_ptr_nonnull(b);
    memcpy(b, "\x93NUMPY", 6);
    b[6] = (unsigned char)major;
    b[7] = 0;
    b[8] = (unsigned char)(hlen & 0xff);
    b[9] = (unsigned char)(hlen >> 8);
    if (major == 2) {
        b[10] = (unsigned char)(hlen >> 16);
        b[11] = (unsigned char)(hlen >> 24);
    }
    memcpy(b + pre, dict, dl);
    memset(b + pre + dl, ' ', hlen - dl - 1);
    b[total - 1] = '\n';
    if (nbytes) memcpy(b + total, data, nbytes);
    *size = total + nbytes;
    return b;
}

START_TEST(roundtrip_memory)
{
    float data[2 * 3 * 4 * 5];
    for (size_t i = 0; i < sizeof data / sizeof data[0]; i++) data[i] = (float)i * 0.25f - 7.0f;
    size_t dims[4] = {2, 3, 4, 5};
    for (int nd = 0; nd <= 4; nd++) {
        void *buf;
        size_t size;
        cvy_error err = {{0}};
        ck_assert_int_eq(npy_write_memory(data, nd, dims, &buf, &size, &err), 0);
        /* header padded so that the data starts at a multiple of 64 */
        size_t count = 1;
        for (int i = 0; i < nd; i++) count *= dims[i];
        ck_assert_uint_eq((size - count * 4) % 64, 0);
        npy_array a;
        ck_assert_msg(npy_read_memory(buf, size, &a, &err) == 0, "%s", err.msg);
        ck_assert_int_eq(a.ndim, nd);
        ck_assert_uint_eq(a.count, count);
        for (int i = 0; i < nd; i++) ck_assert_uint_eq(a.dims[i], dims[i]);
        ck_assert_mem_eq(a.data, data, count * 4);
        npy_free(&a);
        free(buf);
    }
}
END_TEST

START_TEST(roundtrip_file)
{
    char path[] = "/tmp/convoy-npy-XXXXXX";
    int fd = mkstemp(path);
    ck_assert_int_ge(fd, 0);
    close(fd);
    float data[6] = {1.5f, -2, 3, 1e-30f, 4e30f, 0};
    size_t dims[2] = {2, 3};
    cvy_error err = {{0}};
    ck_assert_int_eq(npy_write(path, data, 2, dims, &err), 0);
    npy_array a;
    ck_assert_int_eq(npy_read(path, &a, &err), 0);
    ck_assert_int_eq(a.ndim, 2);
    ck_assert_uint_eq(a.dims[0], 2);
    ck_assert_uint_eq(a.dims[1], 3);
    ck_assert_mem_eq(a.data, data, sizeof data);
    npy_free(&a);
    npy_free(NULL);

    /* the header is what numpy writes */
    FILE *f = fopen(path, "rb");
    char hdr[129] = {0};
    ck_assert_uint_eq(fread(hdr, 1, 128, f), 128); /* 10 + 118 header bytes */
    fclose(f);
    ck_assert_ptr_nonnull(strstr(hdr + 10, "{'descr': '<f4', 'fortran_order': False, "
                                           "'shape': (2, 3), }"));
    ck_assert_int_eq(hdr[8], 118);
    ck_assert_int_eq(hdr[127], '\n');
    unlink(path);

    ck_assert_int_ne(npy_read("/nonexistent/x.npy", &a, &err), 0);
    ck_assert_ptr_nonnull(strstr(err.msg, "/nonexistent/x.npy"));
    ck_assert_int_ne(npy_write("/nonexistent/x.npy", data, 2, dims, &err), 0);
}
END_TEST

START_TEST(numpy_headers_v1_v2)
{
    float data[3] = {1, 2, 3};
    const char *dicts[] = {
        "{'descr': '<f4', 'fortran_order': False, 'shape': (3,), }",
        "{\"descr\": \"<f4\", \"fortran_order\": False, \"shape\": (3,)}",
        "{'shape': (1, 3), 'fortran_order': False, 'descr': '<f4'}",
        "{'descr':'<f4','fortran_order':False,'shape':(3L,),}",
    };
    for (int major = 1; major <= 2; major++) {
        for (size_t d = 0; d < sizeof dicts / sizeof dicts[0]; d++) {
            size_t size;
            unsigned char *b = build_npy(major, dicts[d], data, sizeof data, &size);
            npy_array a;
            cvy_error err = {{0}};
            ck_assert_msg(npy_read_memory(b, size, &a, &err) == 0, "v%d %s: %s", major, dicts[d],
                          err.msg);
            ck_assert_uint_eq(a.count, 3);
            ck_assert_mem_eq(a.data, data, sizeof data);
            npy_free(&a);
            free(b);
        }
    }
    /* a 0-d array: one element */
    size_t size;
    unsigned char *b =
        build_npy(1, "{'descr': '<f4', 'fortran_order': False, 'shape': (), }", data, 4, &size);
    npy_array a;
    cvy_error err = {{0}};
    ck_assert_int_eq(npy_read_memory(b, size, &a, &err), 0);
    ck_assert_int_eq(a.ndim, 0);
    ck_assert_uint_eq(a.count, 1);
    npy_free(&a);
    free(b);
}
END_TEST

/* Expects reading dict + nbytes of data to fail with a message containing `want`. */
static void expect_error(int major, const char *dict, size_t nbytes, const char *want)
{
    static float zeros[64];
    size_t size;
    unsigned char *b = build_npy(major, dict, zeros, nbytes, &size);
    npy_array a;
    cvy_error err = {{0}};
    ck_assert_int_ne(npy_read_memory(b, size, &a, &err), 0);
    ck_assert_ptr_null(a.data);
    ck_assert_msg(strstr(err.msg, want) != NULL, "'%s' lacks '%s'", err.msg, want);
    free(b);
}

START_TEST(rejects_bad_dtype_and_order)
{
    expect_error(1, "{'descr': '<f8', 'fortran_order': False, 'shape': (3,), }", 24, "<f8");
    expect_error(1, "{'descr': '>f4', 'fortran_order': False, 'shape': (3,), }", 12, ">f4");
    expect_error(1, "{'descr': '|u1', 'fortran_order': False, 'shape': (3,), }", 3, "|u1");
    expect_error(1, "{'descr': '<i4', 'fortran_order': False, 'shape': (3,), }", 12, "<i4");
    expect_error(1, "{'descr': [('a', '<f4')], 'fortran_order': False, 'shape': (3,), }", 12,
                 "structured");
    expect_error(1, "{'descr': '<f4', 'fortran_order': True, 'shape': (2, 2), }", 16, "Fortran");
    expect_error(1, "{'descr': '<f4', 'fortran_order': False, 'shape': (1, 1, 1, 1, 2), }", 8,
                 "dimensions");
    expect_error(1, "{'descr': '<f4', 'shape': (2,), }", 8, "fortran_order");
    expect_error(1, "{'descr': '<f4', 'fortran_order': False, 'shape': (2,), 'x': 1}", 8, "'x'");
    expect_error(1, "['<f4']", 8, "dict");
}
END_TEST

START_TEST(rejects_truncation_and_trailing)
{
    const char *dict = "{'descr': '<f4', 'fortran_order': False, 'shape': (4, 2), }";
    expect_error(1, dict, 31, "truncated");
    expect_error(1, dict, 0, "truncated");
    expect_error(2, dict, 16, "truncated");
    expect_error(1, dict, 36, "after");

    /* cut inside the magic / header */
    float data[8] = {0};
    size_t size;
    unsigned char *b = build_npy(1, dict, data, sizeof data, &size);
    npy_array a;
    cvy_error err = {{0}};
    ck_assert_int_ne(npy_read_memory(b, 8, &a, &err), 0);
    ck_assert_ptr_nonnull(strstr(err.msg, "truncated"));
    ck_assert_int_ne(npy_read_memory(b, 40, &a, &err), 0);
    ck_assert_ptr_nonnull(strstr(err.msg, "truncated"));
    /* bad magic, unsupported version */
    b[1] = 'X';
    ck_assert_int_ne(npy_read_memory(b, size, &a, &err), 0);
    ck_assert_ptr_nonnull(strstr(err.msg, "magic"));
    b[1] = 'N';
    b[6] = 4;
    ck_assert_int_ne(npy_read_memory(b, size, &a, &err), 0);
    ck_assert_ptr_nonnull(strstr(err.msg, "version"));
    free(b);
}
END_TEST

Suite *npy_suite(void)
{
    Suite *s = suite_create("npy");
    TCase *tc = tcase_create("npy");
    tcase_add_test(tc, roundtrip_memory);
    tcase_add_test(tc, roundtrip_file);
    tcase_add_test(tc, numpy_headers_v1_v2);
    tcase_add_test(tc, rejects_bad_dtype_and_order);
    tcase_add_test(tc, rejects_truncation_and_trailing);
    suite_add_tcase(s, tc);
    return s;
}
