/*
 * idx.c - IDX (MNIST) reader, see idx.h.
 */
#include "idx.h"

#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <zlib.h>

/* Formats "PATH: message" into err (when not NULL); returns -1. */
static int idx_fail(cvy_error *err, const char *path, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int idx_fail(cvy_error *err, const char *path, const char *fmt, ...)
{
    if (err) {
        char tmp[sizeof err->msg];
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(tmp, sizeof tmp, fmt, ap);
        va_end(ap);
        snprintf(err->msg, sizeof err->msg, "%.200s: %.300s", path, tmp);
    }
    return -1;
}

/* Reads up to n bytes; returns the number read (short on end of file) or -1 on a read or
 * decompression error (message in err). */
static long long gz_read_full(gzFile f, void *buf, size_t n, const char *path, cvy_error *err)
{
    unsigned char *p = buf;
    size_t got = 0;
    while (got < n) {
        size_t want = n - got > (1u << 30) ? (1u << 30) : n - got;
        int r = gzread(f, p + got, (unsigned)want);
        if (r < 0) {
            int code = 0;
            const char *m = gzerror(f, &code);
            idx_fail(err, path, "read error: %s",
                     code == Z_ERRNO ? strerror(errno) : (m && *m ? m : "corrupt gzip data"));
            return -1;
        }
        if (r == 0) break;
        got += (size_t)r;
    }
    return (long long)got;
}

static uint32_t be32(const unsigned char *b)
{
    return (uint32_t)b[0] << 24 | (uint32_t)b[1] << 16 | (uint32_t)b[2] << 8 | (uint32_t)b[3];
}

/* Names the kind of a magic number for error messages. */
static const char *magic_kind(uint32_t m)
{
    if (m == IDX_MAGIC_U8_IMAGES) return " (an u8 image file)";
    if (m == IDX_MAGIC_U8_LABELS) return " (an u8 label file)";
    if ((m >> 16) == 0 && (m & 0xff) >= 1 && (m & 0xff) <= 4)
        return " (an IDX file of another element type or rank)";
    return " (not an IDX file)";
}

/* Reads an IDX file whose magic must be `magic` with ndim = magic & 0xff dims (1..3).
 * On success *data holds product(dims) bytes (malloc'ed) and dims[] the header sizes. */
static int idx_read(const char *path, uint32_t magic, uint32_t *dims, uint8_t **data,
                    cvy_error *err)
{
    *data = NULL;
    int ndim = (int)(magic & 0xff);
    errno = 0;
    gzFile f = gzopen(path, "rb");
    if (!f) return idx_fail(err, path, "%s", errno ? strerror(errno) : "cannot open");
    unsigned char hdr[16];
    size_t hsize = 4 + 4 * (size_t)ndim;
    long long r = gz_read_full(f, hdr, hsize, path, err);
    if (r < 0) goto fail;
    if (r < 4) {
        idx_fail(err, path, "truncated: %lld bytes, too short for an IDX header", r);
        goto fail;
    }
    uint32_t m = be32(hdr);
    if (m != magic) {
        idx_fail(err, path, "magic 0x%08x%s, expected 0x%08x%s", m, magic_kind(m), magic,
                 magic_kind(magic));
        goto fail;
    }
    if ((size_t)r < hsize) {
        idx_fail(err, path, "truncated header: %lld of %zu bytes", r, hsize);
        goto fail;
    }
    unsigned long long total = 1;
    for (int i = 0; i < ndim; i++) {
        dims[i] = be32(hdr + 4 + 4 * i);
        if (i > 0 && (dims[i] == 0 || dims[i] > IDX_MAX_SIDE)) {
            idx_fail(err, path, "dimension %d is %u (must be 1..%d)", i, dims[i], IDX_MAX_SIDE);
            goto fail;
        }
        if (i == 0 && dims[i] > INT_MAX) {
            idx_fail(err, path, "item count %u is too large", dims[i]);
            goto fail;
        }
        total *= dims[i];
        if (total > IDX_MAX_BYTES) {
            idx_fail(err, path, "payload of more than %llu bytes is not supported",
                     (unsigned long long)IDX_MAX_BYTES);
            goto fail;
        }
    }
    *data = malloc(total ? (size_t)total : 1);
    if (!*data) {
        idx_fail(err, path, "out of memory for %llu bytes", total);
        goto fail;
    }
    r = gz_read_full(f, *data, (size_t)total, path, err);
    if (r < 0) goto fail;
    if ((unsigned long long)r != total) {
        idx_fail(err, path, "truncated: header announces %llu data bytes, file has %lld", total, r);
        goto fail;
    }
    unsigned char extra;
    r = gz_read_full(f, &extra, 1, path, err);
    if (r < 0) goto fail;
    if (r != 0) {
        idx_fail(err, path, "unexpected data after the %llu bytes the header announces", total);
        goto fail;
    }
    gzclose(f);
    return 0;
fail:
    free(*data);
    *data = NULL;
    gzclose(f);
    return -1;
}

int idx_read_images(const char *path, idx_images *out, cvy_error *err)
{
    memset(out, 0, sizeof *out);
    uint32_t dims[3];
    uint8_t *data;
    if (idx_read(path, IDX_MAGIC_U8_IMAGES, dims, &data, err)) return -1;
    out->count = (int)dims[0];
    out->rows = (int)dims[1];
    out->cols = (int)dims[2];
    out->pixels = data;
    return 0;
}

int idx_read_labels(const char *path, idx_labels *out, cvy_error *err)
{
    memset(out, 0, sizeof *out);
    uint32_t dims[1];
    uint8_t *data;
    if (idx_read(path, IDX_MAGIC_U8_LABELS, dims, &data, err)) return -1;
    out->count = (int)dims[0];
    out->labels = data;
    return 0;
}

void idx_images_free(idx_images *im)
{
    if (!im) return;
    free(im->pixels);
    memset(im, 0, sizeof *im);
}

void idx_labels_free(idx_labels *lb)
{
    if (!lb) return;
    free(lb->labels);
    memset(lb, 0, sizeof *lb);
}
