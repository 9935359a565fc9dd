/*
 * unit_image.c - tests of engine/image.c: probe, decode (PNG, BMP, PGM made here with
 * stb_image_write or by hand), rejection of corrupt/truncated/oversized input, and the
 * preprocessing paths (colour, stretch, shorter side + crop, normalisation) through
 * cvy_image_preprocess_spec.
 */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <stb_image_resize.h>
#include <stb_image_write.h>

#include "convoy.h"
#include "image.h"

/* ---- encoders ---------------------------------------------------------------------------- */

typedef struct membuf {
    unsigned char *data;
    size_t size;
} membuf;

static void mb_write(void *ctx, void *data, int size)
{
    membuf *mb = ctx;
    mb->data = realloc(mb->data, mb->size + (size_t)size);
    ck_assert_ptr_nonnull(mb->data);
    memcpy(mb->data + mb->size, data, (size_t)size);
    mb->size += (size_t)size;
}

static membuf make_png(int w, int h, int c, const unsigned char *px)
{
    membuf mb = {NULL, 0};
    ck_assert_int_ne(stbi_write_png_to_func(mb_write, &mb, w, h, c, px, w * c), 0);
    return mb;
}

static membuf make_bmp(int w, int h, int c, const unsigned char *px)
{
    membuf mb = {NULL, 0};
    ck_assert_int_ne(stbi_write_bmp_to_func(mb_write, &mb, w, h, c, px), 0);
    return mb;
}

/* A binary PGM (P5) with the given header size and `n` bytes of pixel data. */
static membuf make_pgm(int w, int h, const unsigned char *px, size_t n)
{
    membuf mb = {NULL, 0};
    char hdr[64];
    int hl = snprintf(hdr, sizeof hdr, "P5\n%d %d\n255\n", w, h);
    mb_write(&mb, hdr, hl);
    if (n) mb_write(&mb, (void *)px, (int)n);
    return mb;
}

/* Deterministic test pattern. */
static void pattern(unsigned char *px, size_t n, unsigned seed)
{
    for (size_t i = 0; i < n; i++)
        px[i] = (unsigned char)((i * 37u + seed * 11u + (i >> 3) * 5u) & 0xff);
}

/* ---- decode ------------------------------------------------------------------------------ */

START_TEST(decode_png_gray)
{
    unsigned char px[6 * 5];
    pattern(px, sizeof px, 1);
    membuf mb = make_png(6, 5, 1, px);
    cvy_image img;
    cvy_error err = {{0}};
    ck_assert_int_eq(cvy_image_decode(mb.data, mb.size, 1, 0, &img, &err), CVY_OK);
    ck_assert_int_eq(img.width, 6);
    ck_assert_int_eq(img.height, 5);
    ck_assert_int_eq(img.channels, 1);
    ck_assert_mem_eq(img.pixels, px, sizeof px);
    cvy_image_release(&img);
    ck_assert_ptr_null(img.pixels);

    /* gray decoded as RGB: replicated */
    ck_assert_int_eq(cvy_image_decode(mb.data, mb.size, 3, 0, &img, &err), CVY_OK);
    ck_assert_int_eq(img.channels, 3);
    for (int i = 0; i < 30; i++) {
        ck_assert_uint_eq(img.pixels[3 * i], px[i]);
        ck_assert_uint_eq(img.pixels[3 * i + 1], px[i]);
        ck_assert_uint_eq(img.pixels[3 * i + 2], px[i]);
    }
    cvy_image_release(&img);
    cvy_image_release(&img); /* twice is fine */
    cvy_image_release(NULL);
    free(mb.data);
}
END_TEST

START_TEST(decode_png_rgb_and_rgba)
{
    unsigned char px[7 * 3 * 4];
    pattern(px, sizeof px, 2);
    membuf mb = make_png(7, 3, 3, px);
    cvy_image img;
    cvy_error err = {{0}};
    ck_assert_int_eq(cvy_image_decode(mb.data, mb.size, 3, 21, &img, &err), CVY_OK);
    ck_assert_int_eq(img.width, 7);
    ck_assert_int_eq(img.height, 3);
    ck_assert_mem_eq(img.pixels, px, 7 * 3 * 3);
    cvy_image_release(&img);
    ck_assert_int_eq(cvy_image_decode(mb.data, mb.size, 1, 0, &img, &err), CVY_OK);
    ck_assert_int_eq(img.channels, 1);
    cvy_image_release(&img);
    free(mb.data);

    /* RGBA: alpha dropped */
    mb = make_png(7, 3, 4, px);
    ck_assert_int_eq(cvy_image_decode(mb.data, mb.size, 3, 0, &img, &err), CVY_OK);
    for (int i = 0; i < 21; i++) ck_assert_mem_eq(img.pixels + 3 * i, px + 4 * i, 3);
    cvy_image_release(&img);
    free(mb.data);
}
END_TEST

START_TEST(decode_bmp)
{
    unsigned char px[5 * 4 * 3];
    pattern(px, sizeof px, 3);
    membuf mb = make_bmp(5, 4, 3, px);
    cvy_image img;
    cvy_error err = {{0}};
    ck_assert_int_eq(cvy_image_decode(mb.data, mb.size, 3, 0, &img, &err), CVY_OK);
    ck_assert_int_eq(img.width, 5);
    ck_assert_int_eq(img.height, 4);
    ck_assert_mem_eq(img.pixels, px, sizeof px);
    cvy_image_release(&img);
    free(mb.data);
}
END_TEST

START_TEST(decode_pgm)
{
    unsigned char px[3 * 2] = {0, 1, 2, 128, 254, 255};
    membuf mb = make_pgm(3, 2, px, sizeof px);
    cvy_image img;
    cvy_error err = {{0}};
    ck_assert_int_eq(cvy_image_decode(mb.data, mb.size, 1, 6, &img, &err), CVY_OK);
    ck_assert_int_eq(img.width, 3);
    ck_assert_int_eq(img.height, 2);
    ck_assert_mem_eq(img.pixels, px, sizeof px);
    cvy_image_release(&img);
    free(mb.data);
}
END_TEST

START_TEST(decode_rejects_garbage)
{
    unsigned char junk[300];
    pattern(junk, sizeof junk, 4);
    cvy_image img;
    cvy_error err = {{0}};
    ck_assert_int_eq(cvy_image_decode(junk, sizeof junk, 3, 0, &img, &err), CVY_ERR_IMAGE);
    ck_assert_ptr_null(img.pixels);
    ck_assert_int_gt(strlen(err.msg), 0);

    /* a PNG whose compressed data is overwritten */
    unsigned char px[16 * 16];
    pattern(px, sizeof px, 5);
    membuf mb = make_png(16, 16, 1, px);
    ck_assert_uint_gt(mb.size, 60);
    memset(mb.data + 41, 0xA5, mb.size - 41 - 12);
    err.msg[0] = '\0';
    ck_assert_int_eq(cvy_image_decode(mb.data, mb.size, 1, 0, &img, &err), CVY_ERR_IMAGE);
    ck_assert_ptr_null(img.pixels);
    ck_assert_ptr_nonnull(strstr(err.msg, "image"));
    free(mb.data);
}
END_TEST

START_TEST(decode_rejects_truncated)
{
    unsigned char px[32 * 32 * 3];
    pattern(px, sizeof px, 6);
    membuf mb = make_png(32, 32, 3, px);
    cvy_image img;
    cvy_error err = {{0}};
    /* cut in the header, and in the middle of the data */
    ck_assert_int_eq(cvy_image_decode(mb.data, 20, 3, 0, &img, &err), CVY_ERR_IMAGE);
    ck_assert_int_eq(cvy_image_decode(mb.data, mb.size / 2, 3, 0, &img, &err), CVY_ERR_IMAGE);
    ck_assert_ptr_null(img.pixels);
    free(mb.data);

    /* PGM with half its pixels */
    mb = make_pgm(32, 32, px, 512);
    ck_assert_int_eq(cvy_image_decode(mb.data, mb.size, 1, 0, &img, &err), CVY_ERR_IMAGE);
    free(mb.data);
}
END_TEST

/* An uncompressed 8-bit gray TGA (type 3), top-left origin, with n of its w*h pixels. */
static membuf make_tga(int w, int h, const unsigned char *px, size_t n)
{
    unsigned char hdr[18] = {0};
    hdr[2] = 3;
    hdr[12] = (unsigned char)w;
    hdr[13] = (unsigned char)(w >> 8);
    hdr[14] = (unsigned char)h;
    hdr[15] = (unsigned char)(h >> 8);
    hdr[16] = 8;
    hdr[17] = 0x20;
    membuf mb = {NULL, 0};
    mb_write(&mb, hdr, sizeof hdr);
    if (n) mb_write(&mb, (void *)px, (int)n);
    return mb;
}

START_TEST(decode_tga_and_truncated_raw)
{
    /* stb copies raw PNM/TGA pixels with an unchecked read; truncation must be caught */
    unsigned char px[8 * 8];
    pattern(px, sizeof px, 11);
    cvy_image img;
    cvy_error err = {{0}};
    membuf mb = make_tga(8, 8, px, sizeof px);
    ck_assert_msg(cvy_image_decode(mb.data, mb.size, 1, 0, &img, &err) == CVY_OK, "%s", err.msg);
    ck_assert_mem_eq(img.pixels, px, sizeof px);
    cvy_image_release(&img);
    free(mb.data);
    mb = make_tga(8, 8, px, sizeof px - 1);
    ck_assert_int_eq(cvy_image_decode(mb.data, mb.size, 1, 0, &img, &err), CVY_ERR_IMAGE);
    ck_assert_ptr_nonnull(strstr(err.msg, "truncated"));
    free(mb.data);
    mb = make_pgm(8, 8, px, sizeof px - 1);
    ck_assert_int_eq(cvy_image_decode(mb.data, mb.size, 1, 0, &img, &err), CVY_ERR_IMAGE);
    ck_assert_ptr_nonnull(strstr(err.msg, "truncated"));
    free(mb.data);
    /* P6 with a comment in the header, complete */
    const char *hdr = "P6\n# comment\n2 1\n255\n";
    unsigned char p6[64];
    memcpy(p6, hdr, strlen(hdr));
    memcpy(p6 + strlen(hdr), "\x01\x02\x03\x04\x05\x06", 6);
    ck_assert_int_eq(cvy_image_decode(p6, strlen(hdr) + 6, 3, 0, &img, &err), CVY_OK);
    ck_assert_mem_eq(img.pixels, "\x01\x02\x03\x04\x05\x06", 6);
    cvy_image_release(&img);
    ck_assert_int_eq(cvy_image_decode(p6, strlen(hdr) + 5, 3, 0, &img, &err), CVY_ERR_IMAGE);
}
END_TEST

START_TEST(decode_bad_args)
{
    unsigned char px[4] = {1, 2, 3, 4};
    membuf mb = make_png(2, 2, 1, px);
    cvy_image img;
    cvy_error err = {{0}};
    ck_assert_int_eq(cvy_image_decode(NULL, 10, 1, 0, &img, &err), CVY_ERR_ARG);
    ck_assert_int_eq(cvy_image_decode(mb.data, 0, 1, 0, &img, &err), CVY_ERR_IMAGE);
    ck_assert_int_eq(cvy_image_decode(mb.data, mb.size, 2, 0, &img, &err), CVY_ERR_ARG);
    ck_assert_int_eq(cvy_image_decode(mb.data, mb.size, 4, 0, &img, &err), CVY_ERR_ARG);
    ck_assert_int_eq(cvy_image_decode(mb.data, mb.size, 1, 0, NULL, &err), CVY_ERR_ARG);
    /* err may be NULL */
    ck_assert_int_eq(cvy_image_decode(NULL, 10, 1, 0, &img, NULL), CVY_ERR_ARG);
    free(mb.data);
}
END_TEST

START_TEST(decode_pixel_limit_before_decode)
{
    /* a header announcing 20000 x 20000 with almost no data: the limit must be reported
     * (not a decode failure), so the header was checked before decoding */
    unsigned char px[16] = {0};
    membuf mb = make_pgm(20000, 20000, px, sizeof px);
    cvy_image img;
    cvy_error err = {{0}};
    ck_assert_int_eq(cvy_image_decode(mb.data, mb.size, 1, 1000000, &img, &err), CVY_ERR_LIMIT);
    ck_assert_ptr_null(img.pixels);
    ck_assert_ptr_nonnull(strstr(err.msg, "20000x20000"));
    ck_assert_ptr_nonnull(strstr(err.msg, "1000000"));
    /* without a limit the same buffer fails to decode instead */
    ck_assert_int_eq(cvy_image_decode(mb.data, mb.size, 1, 0, &img, &err), CVY_ERR_IMAGE);
    free(mb.data);

    /* exactly at the limit passes, one above fails */
    unsigned char px2[10 * 10];
    pattern(px2, sizeof px2, 7);
    mb = make_png(10, 10, 1, px2);
    ck_assert_int_eq(cvy_image_decode(mb.data, mb.size, 1, 100, &img, &err), CVY_OK);
    cvy_image_release(&img);
    ck_assert_int_eq(cvy_image_decode(mb.data, mb.size, 1, 99, &img, &err), CVY_ERR_LIMIT);
    ck_assert_ptr_nonnull(strstr(err.msg, "10x10"));
    free(mb.data);
}
END_TEST

START_TEST(decode_dimension_limits)
{
    unsigned char px[16] = {0};
    cvy_image img;
    cvy_error err = {{0}};
    membuf mb = make_pgm(70000, 1, px, sizeof px); /* wider than 1 << 16 */
    ck_assert_int_eq(cvy_image_decode(mb.data, mb.size, 1, 0, &img, &err), CVY_ERR_LIMIT);
    ck_assert_ptr_nonnull(strstr(err.msg, "70000"));
    free(mb.data);
    mb = make_pgm(0, 5, px, sizeof px);
    ck_assert_int_eq(cvy_image_decode(mb.data, mb.size, 1, 0, &img, &err), CVY_ERR_IMAGE);
    free(mb.data);
}
END_TEST

START_TEST(probe_header)
{
    unsigned char px[5 * 7 * 4];
    pattern(px, sizeof px, 8);
    membuf mb = make_png(5, 7, 4, px);
    int w = 0, h = 0, c = 0;
    cvy_error err = {{0}};
    ck_assert_int_eq(cvy_image_probe(mb.data, mb.size, &w, &h, &c, &err), CVY_OK);
    ck_assert_int_eq(w, 5);
    ck_assert_int_eq(h, 7);
    ck_assert_int_eq(c, 4);
    /* only the header is needed */
    ck_assert_int_eq(cvy_image_probe(mb.data, 40, &w, &h, NULL, &err), CVY_OK);
    free(mb.data);

    mb = make_bmp(9, 2, 3, px);
    ck_assert_int_eq(cvy_image_probe(mb.data, mb.size, &w, &h, &c, &err), CVY_OK);
    ck_assert_int_eq(w, 9);
    ck_assert_int_eq(h, 2);
    ck_assert_int_eq(c, 3);
    free(mb.data);

    ck_assert_int_eq(cvy_image_probe(px, sizeof px, &w, &h, &c, &err), CVY_ERR_IMAGE);
    ck_assert_int_eq(cvy_image_probe(NULL, 5, &w, &h, &c, &err), CVY_ERR_ARG);
    ck_assert_int_eq(cvy_image_probe(px, 0, &w, &h, &c, &err), CVY_ERR_IMAGE);
}
END_TEST

/* ---- preprocess -------------------------------------------------------------------------- */

static cvy_preproc spec(int w, int h, cvy_color color, cvy_resize resize, int shorter)
{
    cvy_preproc p;
    memset(&p, 0, sizeof p);
    p.width = w;
    p.height = h;
    p.color = color;
    p.resize = resize;
    p.resize_shorter = shorter;
    p.scale = 1.0f;
    for (int i = 0; i < 3; i++) {
        p.mean[i] = 0.0f;
        p.std[i] = 1.0f;
    }
    return p;
}

START_TEST(pre_gray_normalise)
{
    unsigned char px[4] = {0, 51, 102, 255};
    cvy_image img = {2, 2, 1, px};
    cvy_preproc p = spec(2, 2, CVY_COLOR_GRAY, CVY_RESIZE_STRETCH, 0);
    p.scale = 1.0f / 255.0f;
    p.mean[0] = 0.5f;
    p.std[0] = 0.25f;
    float out[4];
    cvy_error err = {{0}};
    ck_assert_int_eq(cvy_image_preprocess_spec(&p, &img, out, &err), CVY_OK);
    const float want[4] = {-2.0f, -1.2f, -0.4f, 2.0f};
    for (int i = 0; i < 4; i++) ck_assert_float_eq_tol(out[i], want[i], 1e-5f);
}
END_TEST

START_TEST(pre_gray_from_rgb_luma)
{
    unsigned char px[5 * 3] = {10, 200, 30, 255, 0, 0, 0, 255, 0, 0, 0, 255, 100, 100, 100};
    cvy_image img = {5, 1, 3, px};
    cvy_preproc p = spec(5, 1, CVY_COLOR_GRAY, CVY_RESIZE_STRETCH, 0);
    float out[5];
    cvy_error err = {{0}};
    ck_assert_int_eq(cvy_image_preprocess_spec(&p, &img, out, &err), CVY_OK);
    /* 0.299 R + 0.587 G + 0.114 B rounded: 123.81, 76.245, 149.685, 29.07, 100 */
    const float want[5] = {124, 76, 150, 29, 100};
    for (int i = 0; i < 5; i++) ck_assert_float_eq(out[i], want[i]);
}
END_TEST

START_TEST(pre_rgb_bgr_from_gray_and_swap)
{
    unsigned char g[2] = {77, 200};
    cvy_image gi = {2, 1, 1, g};
    cvy_preproc p = spec(2, 1, CVY_COLOR_RGB, CVY_RESIZE_STRETCH, 0);
    p.mean[0] = 1;
    p.mean[1] = 2;
    p.mean[2] = 3;
    p.std[2] = 2;
    float out[6];
    cvy_error err = {{0}};
    ck_assert_int_eq(cvy_image_preprocess_spec(&p, &gi, out, &err), CVY_OK);
    const float want_g[6] = {76, 199, 75, 198, 37, 98.5f}; /* CHW */
    for (int i = 0; i < 6; i++) ck_assert_float_eq(out[i], want_g[i]);

    unsigned char rgb[6] = {1, 2, 3, 4, 5, 6};
    cvy_image ci = {2, 1, 3, rgb};
    p = spec(2, 1, CVY_COLOR_RGB, CVY_RESIZE_STRETCH, 0);
    ck_assert_int_eq(cvy_image_preprocess_spec(&p, &ci, out, &err), CVY_OK);
    const float want_rgb[6] = {1, 4, 2, 5, 3, 6};
    for (int i = 0; i < 6; i++) ck_assert_float_eq(out[i], want_rgb[i]);
    p.color = CVY_COLOR_BGR;
    ck_assert_int_eq(cvy_image_preprocess_spec(&p, &ci, out, &err), CVY_OK);
    const float want_bgr[6] = {3, 6, 2, 5, 1, 4};
    for (int i = 0; i < 6; i++) ck_assert_float_eq(out[i], want_bgr[i]);
    ck_assert_mem_eq(rgb, ((unsigned char[6]){1, 2, 3, 4, 5, 6}), 6); /* input untouched */
}
END_TEST

START_TEST(pre_stretch_resize)
{
    /* a constant image stays constant under any resampling filter */
    unsigned char px[7 * 5];
    memset(px, 90, sizeof px);
    cvy_image img = {7, 5, 1, px};
    cvy_preproc p = spec(3, 3, CVY_COLOR_GRAY, CVY_RESIZE_STRETCH, 0);
    float out[9];
    cvy_error err = {{0}};
    ck_assert_int_eq(cvy_image_preprocess_spec(&p, &img, out, &err), CVY_OK);
    for (int i = 0; i < 9; i++) ck_assert_float_eq(out[i], 90.0f);

    /* a gradient: same bytes as stbir_resize_uint8 itself, ignoring the aspect ratio */
    unsigned char grad[8 * 6 * 3], want[4 * 5 * 3];
    pattern(grad, sizeof grad, 9);
    cvy_image ci = {8, 6, 3, grad};
    p = spec(4, 5, CVY_COLOR_RGB, CVY_RESIZE_STRETCH, 0);
    float out3[3 * 20];
    ck_assert_int_eq(cvy_image_preprocess_spec(&p, &ci, out3, &err), CVY_OK);
    ck_assert_int_ne(stbir_resize_uint8(grad, 8, 6, 0, want, 4, 5, 0, 3), 0);
    for (int c = 0; c < 3; c++)
        for (int i = 0; i < 20; i++) ck_assert_float_eq(out3[c * 20 + i], (float)want[i * 3 + c]);
}
END_TEST

START_TEST(pre_crop_without_resize)
{
    /* 6x4, shorter side already 4: no resize, center crop 4x4 skips column 0 and 5 */
    unsigned char px[6 * 4];
    for (int y = 0; y < 4; y++)
        for (int x = 0; x < 6; x++) px[y * 6 + x] = (unsigned char)(x + 10 * y);
    cvy_image img = {6, 4, 1, px};
    cvy_preproc p = spec(4, 4, CVY_COLOR_GRAY, CVY_RESIZE_SHORTER_CROP, 4);
    float out[16];
    cvy_error err = {{0}};
    ck_assert_int_eq(cvy_image_preprocess_spec(&p, &img, out, &err), CVY_OK);
    for (int y = 0; y < 4; y++)
        for (int x = 0; x < 4; x++) ck_assert_float_eq(out[y * 4 + x], (float)(x + 1 + 10 * y));

    /* the same transposed (4 wide, 6 tall) crops rows 1..4; resize_shorter 0 = min(W, H) */
    unsigned char tp[4 * 6];
    for (int y = 0; y < 6; y++)
        for (int x = 0; x < 4; x++) tp[y * 4 + x] = (unsigned char)(x + 10 * y);
    cvy_image ti = {4, 6, 1, tp};
    p.resize_shorter = 0;
    ck_assert_int_eq(cvy_image_preprocess_spec(&p, &ti, out, &err), CVY_OK);
    for (int y = 0; y < 4; y++)
        for (int x = 0; x < 4; x++) ck_assert_float_eq(out[y * 4 + x], (float)(x + 10 * (y + 1)));
}
END_TEST

/* Checks preprocess output against stbir to rw x rh then a center crop of W x H. */
static void check_crop(const unsigned char *px, int w, int h, int c, cvy_color color, int W, int H,
                       int shorter, int rw, int rh)
{
    cvy_image img = {w, h, c, (uint8_t *)px};
    cvy_preproc p = spec(W, H, color, CVY_RESIZE_SHORTER_CROP, shorter);
    float *out = malloc(sizeof(float) * (size_t)(W * H * c));
    unsigned char *r = malloc((size_t)(rw * rh * c));
    cvy_error err = {{0}};
    ck_assert_int_eq(cvy_image_preprocess_spec(&p, &img, out, &err), CVY_OK);
    ck_assert_int_ne(stbir_resize_uint8(px, w, h, 0, r, rw, rh, 0, c), 0);
    int x0 = (rw - W) / 2, y0 = (rh - H) / 2;
    for (int ch = 0; ch < c; ch++)
        for (int y = 0; y < H; y++)
            for (int x = 0; x < W; x++)
                ck_assert_float_eq(out[(ch * H + y) * W + x],
                                   (float)r[((y + y0) * rw + x + x0) * c + ch]);
    free(r);
    free(out);
}

START_TEST(pre_crop_with_resize)
{
    unsigned char px[12 * 8 * 3];
    pattern(px, sizeof px, 10);
    /* 12x8 -> shorter side 4 -> 6x4 -> crop 4x4 at x 1 */
    check_crop(px, 12, 8, 1, CVY_COLOR_GRAY, 4, 4, 4, 6, 4);
    check_crop(px, 12, 8, 1, CVY_COLOR_GRAY, 4, 4, 0, 6, 4);
    /* 8x12 (tall) -> 4x6, RGB; 12x8 -> shorter 6 -> 9x6 -> crop 4x4 at (2, 1) */
    check_crop(px, 8, 12, 3, CVY_COLOR_RGB, 4, 4, 4, 4, 6);
    check_crop(px, 12, 8, 3, CVY_COLOR_RGB, 4, 4, 6, 9, 6);
    /* 10x7 -> shorter 5: 10 * 5 / 7 = 7.14 -> 7x5 -> crop 3x3 at (2, 1) */
    check_crop(px, 10, 7, 1, CVY_COLOR_GRAY, 3, 3, 5, 7, 5);
    /* resize_shorter smaller than the crop: scaled up so the crop fits (8x8 -> 4x4) */
    check_crop(px, 8, 8, 1, CVY_COLOR_GRAY, 4, 4, 2, 4, 4);
}
END_TEST

START_TEST(pre_bad_args)
{
    unsigned char px[4] = {0};
    cvy_image img = {2, 2, 1, px};
    float out[16];
    cvy_error err = {{0}};
    cvy_preproc p = spec(2, 2, CVY_COLOR_GRAY, CVY_RESIZE_STRETCH, 0);
    p.std[0] = 0;
    ck_assert_int_eq(cvy_image_preprocess_spec(&p, &img, out, &err), CVY_ERR_ARG);
    p = spec(0, 2, CVY_COLOR_GRAY, CVY_RESIZE_STRETCH, 0);
    ck_assert_int_eq(cvy_image_preprocess_spec(&p, &img, out, &err), CVY_ERR_ARG);
    p = spec(2, 2, (cvy_color)7, CVY_RESIZE_STRETCH, 0);
    ck_assert_int_eq(cvy_image_preprocess_spec(&p, &img, out, &err), CVY_ERR_ARG);
    p = spec(2, 2, CVY_COLOR_GRAY, CVY_RESIZE_STRETCH, 0);
    cvy_image two = {2, 2, 2, px};
    ck_assert_int_eq(cvy_image_preprocess_spec(&p, &two, out, &err), CVY_ERR_ARG);
    cvy_image none = {2, 2, 1, NULL};
    ck_assert_int_eq(cvy_image_preprocess_spec(&p, &none, out, &err), CVY_ERR_ARG);
    ck_assert_int_eq(cvy_image_preprocess_spec(&p, &img, NULL, &err), CVY_ERR_ARG);
    ck_assert_int_eq(cvy_image_preprocess(NULL, &img, out, &err), CVY_ERR_ARG);
}
END_TEST

Suite *image_suite(void)
{
    Suite *s = suite_create("image");
    TCase *tc = tcase_create("decode");
    tcase_add_test(tc, decode_png_gray);
    tcase_add_test(tc, decode_png_rgb_and_rgba);
    tcase_add_test(tc, decode_bmp);
    tcase_add_test(tc, decode_pgm);
    tcase_add_test(tc, decode_rejects_garbage);
    tcase_add_test(tc, decode_rejects_truncated);
    tcase_add_test(tc, decode_tga_and_truncated_raw);
    tcase_add_test(tc, decode_bad_args);
    tcase_add_test(tc, decode_pixel_limit_before_decode);
    tcase_add_test(tc, decode_dimension_limits);
    tcase_add_test(tc, probe_header);
    suite_add_tcase(s, tc);
    tc = tcase_create("preprocess");
    tcase_add_test(tc, pre_gray_normalise);
    tcase_add_test(tc, pre_gray_from_rgb_luma);
    tcase_add_test(tc, pre_rgb_bgr_from_gray_and_swap);
    tcase_add_test(tc, pre_stretch_resize);
    tcase_add_test(tc, pre_crop_without_resize);
    tcase_add_test(tc, pre_crop_with_resize);
    tcase_add_test(tc, pre_bad_args);
    suite_add_tcase(s, tc);
    return s;
}
