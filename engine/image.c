/*
 * image.c - image probing, decoding and preprocessing (public cvy_image_* functions).
 *
 * Decoding and resizing use Debian's libstb (stb_image, stb_image_resize); the implementations
 * live in libstb.so, so this file only includes the headers. stbi_failure_reason() is
 * thread-local in this stb version, so reading it right after a failed call is thread-safe.
 */
#include "image.h"
#include "util.h"

#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <stb_image.h>
#include <stb_image_resize.h>

/* Largest intermediate image (resized before the center crop), in pixels. */
#define MAX_RESIZE_PIXELS ((size_t)1 << 28)

/* The reason stb gave for its last failure on this thread, never NULL. */
static const char *stb_reason(void)
{
    const char *r = stbi_failure_reason();
    return r ? r : "unknown reason";
}

/* Checks the arguments shared by probe and decode. */
static cvy_status check_buffer(const void *data, size_t size, cvy_error *err)
{
    if (!data) return cvy_fail(err, CVY_ERR_ARG, "image: data is NULL");
    if (size == 0) return cvy_fail(err, CVY_ERR_IMAGE, "image: empty (0 bytes)");
    if (size > INT_MAX)
        return cvy_fail(err, CVY_ERR_LIMIT,
                        "image: %zu bytes is larger than the %d bytes "
                        "supported",
                        size, INT_MAX);
    return CVY_OK;
}

/* Checks decoded or announced dimensions against the fixed limits. */
static cvy_status check_dims(int w, int h, cvy_error *err)
{
    if (w <= 0 || h <= 0) return cvy_fail(err, CVY_ERR_IMAGE, "image: invalid size %dx%d", w, h);
    if (w > CVY_IMAGE_MAX_DIM || h > CVY_IMAGE_MAX_DIM)
        return cvy_fail(err, CVY_ERR_LIMIT,
                        "image: size %dx%d exceeds the maximum side of %d "
                        "pixels",
                        w, h, CVY_IMAGE_MAX_DIM);
    return CVY_OK;
}

/* Index just past the pixel data a binary PNM (P5/P6) header announces, parsed the way
 * stb_image parses it (whitespace and # comments, width, height, maxval, one separator). */
static uint64_t pnm_data_end(const uint8_t *d, size_t n, uint64_t w, uint64_t h, int comp)
{
    size_t i = 2;
    uint64_t maxv = 0;
    for (int k = 0; k < 3; k++) {
        for (;;) {
            while (i < n && (d[i] == ' ' || (d[i] >= '\t' && d[i] <= '\r'))) i++;
            if (i < n && d[i] == '#') {
                while (i < n && d[i] != '\n' && d[i] != '\r') i++;
                continue;
            }
            break;
        }
        maxv = 0;
        while (i < n && d[i] >= '0' && d[i] <= '9' && maxv < 1000000)
            maxv = maxv * 10 + (uint64_t)(d[i++] - '0');
    }
    return (uint64_t)i + 1 + w * h * (uint64_t)comp * (maxv > 255 ? 2 : 1);
}

/* 1 when the buffer starts with the signature of a format stb recognises by magic; a buffer
 * stb accepts without one is TGA (its last guess). */
static int has_magic(const uint8_t *d, size_t n)
{
    static const struct {
        const char *sig;
        size_t len;
    } sigs[] = {
        {"\xff\xd8", 2},         {"\x89PNG", 4}, {"GIF8", 4}, {"BM", 2},          {"8BPS", 4},
        {"\x53\x80\xf6\x34", 4}, {"P5", 2},      {"P6", 2},   {"#?RADIANCE", 10}, {"#?RGBE", 6},
    };
    for (size_t i = 0; i < sizeof sigs / sizeof sigs[0]; i++)
        if (n >= sigs[i].len && memcmp(d, sigs[i].sig, sigs[i].len) == 0) return 1;
    return 0;
}

/* stb_image copies the raw pixel data of binary PNM and uncompressed TGA files with an
 * unchecked read: a truncated file "decodes" to uninitialised memory. Reject those files
 * here when they are shorter than their header requires. */
static cvy_status check_complete(const uint8_t *d, size_t n, int w, int h, int comp, cvy_error *err)
{
    uint64_t need = 0;
    const char *fmt = NULL;
    if (n >= 2 && d[0] == 'P' && (d[1] == '5' || d[1] == '6')) {
        need = pnm_data_end(d, n, (uint64_t)w, (uint64_t)h, comp);
        fmt = "PNM";
    } else if (!has_magic(d, n) && n >= 18 && d[2] >= 1 && d[2] <= 3) {
        /* uncompressed TGA: header, image id, palette (indexed only), then the pixels */
        uint64_t pal = d[2] == 1 ? (uint64_t)(d[5] | d[6] << 8) * (uint64_t)((d[7] + 7) / 8) : 0;
        need = 18 + (uint64_t)d[0] + pal + (uint64_t)w * (uint64_t)h * (uint64_t)((d[16] + 7) / 8);
        fmt = "TGA";
    }
    if (fmt && need > n)
        return cvy_fail(err, CVY_ERR_IMAGE,
                        "image: truncated %s: %dx%d needs %llu bytes, "
                        "got %zu",
                        fmt, w, h, (unsigned long long)need, n);
    return CVY_OK;
}

/* Reads the header only. width/height/channels may be NULL; channels is the file's own count
 * (1 gray, 2 gray+alpha, 3 RGB, 4 RGBA). Thread-safe. */
cvy_status cvy_image_probe(const void *data, size_t size, int *width, int *height, int *channels,
                           cvy_error *err)
{
    cvy_status st = check_buffer(data, size, err);
    if (st != CVY_OK) return st;
    int w = 0, h = 0, c = 0;
    if (!stbi_info_from_memory(data, (int)size, &w, &h, &c))
        return cvy_fail(err, CVY_ERR_IMAGE, "image: unrecognised or corrupt header (%s)",
                        stb_reason());
    if (width) *width = w;
    if (height) *height = h;
    if (channels) *channels = c;
    return CVY_OK;
}

/* Decodes to 1 (gray) or 3 (RGB) channels after checking the header against the size limits.
 * On success out->pixels is owned by the caller (cvy_image_release); on failure out is zeroed.
 * Thread-safe. */
cvy_status cvy_image_decode(const void *data, size_t size, int channels, long max_pixels,
                            cvy_image *out, cvy_error *err)
{
    if (!out) return cvy_fail(err, CVY_ERR_ARG, "image: out is NULL");
    memset(out, 0, sizeof *out);
    if (channels != 1 && channels != 3)
        return cvy_fail(err, CVY_ERR_ARG, "image: channels must be 1 or 3, not %d", channels);
    if (max_pixels < 0)
        return cvy_fail(err, CVY_ERR_ARG, "image: max_pixels must be >= 0, not %ld", max_pixels);

    int w = 0, h = 0, file_c = 0;
    cvy_status st = cvy_image_probe(data, size, &w, &h, &file_c, err);
    if (st != CVY_OK) return st;
    if ((st = check_dims(w, h, err)) != CVY_OK) return st;
    long pixels = (long)w * (long)h; /* <= 2^32: fits a 64-bit long */
    if (max_pixels > 0 && pixels > max_pixels)
        return cvy_fail(err, CVY_ERR_LIMIT, "image: %dx%d = %ld pixels exceeds the limit of %ld", w,
                        h, pixels, max_pixels);

    if ((st = check_complete(data, size, w, h, file_c, err)) != CVY_OK) return st;

    int dw = 0, dh = 0, dc = 0;
    stbi_uc *px = stbi_load_from_memory(data, (int)size, &dw, &dh, &dc, channels);
    if (!px)
        return cvy_fail(err, CVY_ERR_IMAGE, "image: cannot decode %dx%d image (%s)", w, h,
                        stb_reason());
    if (dw != w || dh != h) {
        stbi_image_free(px);
        return cvy_fail(err, CVY_ERR_IMAGE,
                        "image: header says %dx%d but the data decodes to "
                        "%dx%d",
                        w, h, dw, dh);
    }
    /* stbi_image_free is free() in the default build; copy anyway so cvy_image_release can
     * use plain free() regardless of how libstb was configured. */
    size_t bytes = (size_t)w * (size_t)h * (size_t)channels;
    uint8_t *own = malloc(bytes);
    if (!own) {
        stbi_image_free(px);
        return cvy_fail(err, CVY_ERR_NOMEM, "image: out of memory for %dx%d pixels", w, h);
    }
    memcpy(own, px, bytes);
    stbi_image_free(px);
    out->width = w;
    out->height = h;
    out->channels = channels;
    out->pixels = own;
    return CVY_OK;
}

/* Frees the pixels of img and zeroes it. Accepts NULL and already released images. */
void cvy_image_release(cvy_image *img)
{
    if (!img) return;
    free(img->pixels);
    memset(img, 0, sizeof *img);
}

/* Converts interleaved pixels from sc to dc channels (1 or 3). dc == 3 with bgr set swaps R
 * and B. Gray from colour uses luma 0.299 R + 0.587 G + 0.114 B, rounded half up (exact integer
 * arithmetic). dst holds n * dc bytes. */
static void convert_color(const uint8_t *src, int sc, uint8_t *dst, int dc, int bgr, size_t n)
{
    if (dc == 1) {
        for (size_t i = 0; i < n; i++) {
            const uint8_t *s = src + 3 * i;
            dst[i] = (uint8_t)((299u * s[0] + 587u * s[1] + 114u * s[2] + 500u) / 1000u);
        }
    } else if (sc == 1) {
        for (size_t i = 0; i < n; i++) dst[3 * i] = dst[3 * i + 1] = dst[3 * i + 2] = src[i];
    } else {
        for (size_t i = 0; i < n; i++) {
            dst[3 * i] = src[3 * i + (bgr ? 2 : 0)];
            dst[3 * i + 1] = src[3 * i + 1];
            dst[3 * i + 2] = src[3 * i + (bgr ? 0 : 2)];
        }
    }
}

/* Validates a preprocessing spec; returns its channel count (1 or 3) or 0 with err filled. */
static int check_spec(const cvy_preproc *p, cvy_error *err)
{
    if (p->width <= 0 || p->height <= 0 || p->width > CVY_IMAGE_MAX_DIM ||
        p->height > CVY_IMAGE_MAX_DIM) {
        cvy_fail(err, CVY_ERR_ARG, "preprocess: invalid input size %dx%d", p->width, p->height);
        return 0;
    }
    if (p->color != CVY_COLOR_GRAY && p->color != CVY_COLOR_RGB && p->color != CVY_COLOR_BGR) {
        cvy_fail(err, CVY_ERR_ARG, "preprocess: unknown colour mode %d", (int)p->color);
        return 0;
    }
    if (p->resize != CVY_RESIZE_STRETCH && p->resize != CVY_RESIZE_SHORTER_CROP) {
        cvy_fail(err, CVY_ERR_ARG, "preprocess: unknown resize mode %d", (int)p->resize);
        return 0;
    }
    if (p->resize_shorter < 0 || p->resize_shorter > CVY_IMAGE_MAX_DIM) {
        cvy_fail(err, CVY_ERR_ARG, "preprocess: invalid resize_shorter %d", p->resize_shorter);
        return 0;
    }
    int c = p->color == CVY_COLOR_GRAY ? 1 : 3;
    for (int i = 0; i < c; i++) {
        if (!(p->std[i] != 0.0f) || !isfinite(p->std[i]) || !isfinite(p->mean[i])) {
            cvy_fail(err, CVY_ERR_ARG, "preprocess: channel %d has invalid mean %g / std %g", i,
                     (double)p->mean[i], (double)p->std[i]);
            return 0;
        }
    }
    if (!isfinite(p->scale)) {
        cvy_fail(err, CVY_ERR_ARG, "preprocess: invalid scale %g", (double)p->scale);
        return 0;
    }
    return c;
}

/* Size of the image before the center crop for SHORTER_CROP: the shorter side becomes
 * resize_shorter (0: min(width, height)) keeping the aspect ratio. If that would leave a side
 * smaller than the crop (resize_shorter smaller than the input size), the scale is raised so
 * that the crop fits. */
static void shorter_side_size(const cvy_preproc *p, int w, int h, int *nw, int *nh)
{
    int64_t s =
        p->resize_shorter ? p->resize_shorter : (p->width < p->height ? p->width : p->height);
    int64_t a = w, b = h; /* the result is a x b, rounded half up */
    if (w <= h) {
        a = s;
        b = ((int64_t)h * s + w / 2) / w;
    } else {
        b = s;
        a = ((int64_t)w * s + h / 2) / h;
    }
    if (a < p->width || b < p->height) {
        /* scale f = max(W / w, H / h), compared exactly as W * h vs H * w */
        if ((int64_t)p->width * h >= (int64_t)p->height * w) {
            a = p->width;
            b = ((int64_t)h * p->width + w / 2) / w;
        } else {
            b = p->height;
            a = ((int64_t)w * p->height + h / 2) / h;
        }
        if (a < p->width) a = p->width;
        if (b < p->height) b = p->height;
    }
    *nw = a > INT_MAX ? INT_MAX : (int)a;
    *nh = b > INT_MAX ? INT_MAX : (int)b;
}

/* See image.h. Order: colour conversion at the source size, one stbir resize (skipped when
 * the size already matches), center crop, normalisation into CHW floats. */
cvy_status cvy_image_preprocess_spec(const cvy_preproc *p, const cvy_image *img, float *out,
                                     cvy_error *err)
{
    if (!p || !img || !out) return cvy_fail(err, CVY_ERR_ARG, "preprocess: NULL argument");
    if (!img->pixels || (img->channels != 1 && img->channels != 3))
        return cvy_fail(err, CVY_ERR_ARG,
                        "preprocess: image has no pixels or %d channels "
                        "(need 1 or 3)",
                        img->channels);
    cvy_status st = check_dims(img->width, img->height, err);
    if (st != CVY_OK) return st;
    int c = check_spec(p, err);
    if (!c) return CVY_ERR_ARG;

    const int w = img->width, h = img->height, W = p->width, H = p->height;
    const size_t n_in = (size_t)w * (size_t)h;
    uint8_t *conv = NULL, *resized = NULL;
    const uint8_t *src = img->pixels; /* w x h, c channels */
    int bgr = p->color == CVY_COLOR_BGR;

    if (img->channels != c || bgr) {
        conv = malloc(n_in * (size_t)c);
        if (!conv)
            return cvy_fail(err, CVY_ERR_NOMEM, "preprocess: out of memory (%dx%d image)", w, h);
        convert_color(img->pixels, img->channels, conv, c, bgr, n_in);
        src = conv;
    }

    /* Resize to rw x rh, then crop W x H at (x0, y0). */
    int rw = W, rh = H;
    if (p->resize == CVY_RESIZE_SHORTER_CROP) shorter_side_size(p, w, h, &rw, &rh);
    if (rw != w || rh != h) {
        if ((size_t)rw * (size_t)rh > MAX_RESIZE_PIXELS) {
            free(conv);
            return cvy_fail(err, CVY_ERR_LIMIT,
                            "preprocess: resizing %dx%d to %dx%d exceeds "
                            "the limit of %zu pixels",
                            w, h, rw, rh, MAX_RESIZE_PIXELS);
        }
        resized = malloc((size_t)rw * (size_t)rh * (size_t)c);
        if (!resized) {
            free(conv);
            return cvy_fail(err, CVY_ERR_NOMEM, "preprocess: out of memory resizing to %dx%d", rw,
                            rh);
        }
        if (!stbir_resize_uint8(src, w, h, 0, resized, rw, rh, 0, c)) {
            free(resized);
            free(conv);
            return cvy_fail(err, CVY_ERR_NOMEM, "preprocess: resize %dx%d -> %dx%d failed", w, h,
                            rw, rh);
        }
        src = resized;
    }
    const int x0 = (rw - W) / 2, y0 = (rh - H) / 2;

    const size_t plane = (size_t)W * (size_t)H;
    for (int ch = 0; ch < c; ch++) {
        const float scale = p->scale, mean = p->mean[ch], sd = p->std[ch];
        float *o = out + (size_t)ch * plane;
        for (int y = 0; y < H; y++) {
            const uint8_t *row = src + ((size_t)(y + y0) * (size_t)rw + (size_t)x0) * (size_t)c;
            for (int x = 0; x < W; x++)
                o[(size_t)y * W + x] = ((float)row[(size_t)x * c + ch] * scale - mean) / sd;
        }
    }
    free(resized);
    free(conv);
    return CVY_OK;
}

/* Public entry: takes the spec from the model and checks it agrees with the model's input
 * size before writing cvy_model_input_size(m) floats. Thread-safe. */
cvy_status cvy_image_preprocess(const cvy_model *m, const cvy_image *img, float *out,
                                cvy_error *err)
{
    if (!m || !img || !out) return cvy_fail(err, CVY_ERR_ARG, "preprocess: NULL argument");
    const cvy_preproc *p = cvy_model_preproc(m);
    if (!p) return cvy_fail(err, CVY_ERR_INTERNAL, "preprocess: model has no preprocessing spec");
    size_t c = p->color == CVY_COLOR_GRAY ? 1 : 3;
    size_t want =
        c * (size_t)(p->width > 0 ? p->width : 0) * (size_t)(p->height > 0 ? p->height : 0);
    if (want != cvy_model_input_size(m))
        return cvy_fail(err, CVY_ERR_INTERNAL,
                        "preprocess: spec gives %zu floats per image but "
                        "the model input has %zu",
                        want, cvy_model_input_size(m));
    return cvy_image_preprocess_spec(p, img, out, err);
}
