/*
 * npy.c - numpy .npy reader and writer for float32 arrays (see npy.h).
 *
 * Format (numpy.lib.format): magic "\x93NUMPY", u8 major, u8 minor, header length (u16 LE
 * for 1.0, u32 LE for 2.0), then an ASCII Python dict literal such as
 * {'descr': '<f4', 'fortran_order': False, 'shape': (16, 1, 28, 28), } padded with spaces and
 * ended by '\n' so that the data starts at a multiple of 64 bytes, then the raw data.
 * The data is copied with memcpy: this assumes a little-endian host (x86-64).
 */
#include "npy.h"

#include <errno.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char NPY_MAGIC[6] = {'\x93', 'N', 'U', 'M', 'P', 'Y'};

/* Formats a message into err (when not NULL); returns -1. */
static int npy_fail(cvy_error *err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int npy_fail(cvy_error *err, const char *fmt, ...)
{
    if (err) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err->msg, sizeof err->msg, fmt, ap);
        va_end(ap);
    }
    return -1;
}

void npy_free(npy_array *a)
{
    if (!a) return;
    free(a->data);
    memset(a, 0, sizeof *a);
}

/* ---- header dict parsing ----------------------------------------------------------------- */

typedef struct hdr_parser {
    const char *p, *end;
} hdr_parser;

static void hp_skip_ws(hdr_parser *h)
{
    while (h->p < h->end && (*h->p == ' ' || *h->p == '\t' || *h->p == '\n' || *h->p == '\r'))
        h->p++;
}

/* Parses a quoted Python string (no escapes) into buf. Returns 0 or -1. */
static int hp_string(hdr_parser *h, char *buf, size_t cap)
{
    hp_skip_ws(h);
    if (h->p >= h->end || (*h->p != '\'' && *h->p != '"')) return -1;
    char q = *h->p++;
    size_t n = 0;
    while (h->p < h->end && *h->p != q) {
        if (*h->p == '\\' || n + 1 >= cap) return -1;
        buf[n++] = *h->p++;
    }
    if (h->p >= h->end) return -1;
    h->p++;
    buf[n] = '\0';
    return 0;
}

/* Consumes character c after optional whitespace. Returns 0 when found. */
static int hp_expect(hdr_parser *h, char c)
{
    hp_skip_ws(h);
    if (h->p < h->end && *h->p == c) {
        h->p++;
        return 0;
    }
    return -1;
}

/* Consumes the bare word w (True/False). */
static int hp_word(hdr_parser *h, const char *w)
{
    hp_skip_ws(h);
    size_t n = strlen(w);
    if ((size_t)(h->end - h->p) >= n && memcmp(h->p, w, n) == 0) {
        h->p += n;
        return 0;
    }
    return -1;
}

/* Parses a shape tuple "(a, b, )" into dims. Returns 0, -1 on syntax error, -2 when there are
 * more than NPY_MAX_DIMS dims, -3 when a dim is too large. */
static int hp_shape(hdr_parser *h, int *ndim, size_t *dims)
{
    if (hp_expect(h, '(')) return -1;
    int n = 0;
    for (;;) {
        hp_skip_ws(h);
        if (h->p < h->end && *h->p == ')') {
            h->p++;
            break;
        }
        if (h->p >= h->end || *h->p < '0' || *h->p > '9') return -1;
        uint64_t v = 0;
        while (h->p < h->end && *h->p >= '0' && *h->p <= '9') {
            v = v * 10 + (uint64_t)(*h->p++ - '0');
            if (v > ((uint64_t)1 << 40)) return -3;
        }
        if (h->p < h->end && *h->p == 'L') /* written by Python 2 */
            h->p++;
        if (n == NPY_MAX_DIMS) return -2;
        dims[n++] = (size_t)v;
        hp_skip_ws(h);
        if (h->p < h->end && *h->p == ',') {
            h->p++;
            continue;
        }
        if (hp_expect(h, ')')) return -1;
        break;
    }
    *ndim = n;
    return 0;
}

/* Parses the header dict; fills ndim/dims. Returns 0 or -1 with err. */
static int parse_header(const char *text, size_t len, int *ndim, size_t *dims, cvy_error *err)
{
    hdr_parser h = {text, text + len};
    int have_descr = 0, have_order = 0, have_shape = 0;
    char key[32], descr[32];

    if (hp_expect(&h, '{')) return npy_fail(err, "npy: header is not a Python dict");
    for (;;) {
        hp_skip_ws(&h);
        if (h.p < h.end && *h.p == '}') {
            h.p++;
            break;
        }
        if (hp_string(&h, key, sizeof key) || hp_expect(&h, ':'))
            return npy_fail(err, "npy: malformed header dict");
        if (strcmp(key, "descr") == 0) {
            if (hp_string(&h, descr, sizeof descr))
                return npy_fail(err, "npy: header 'descr' is not a simple dtype string "
                                     "(structured dtypes are not supported)");
            if (strcmp(descr, "<f4") != 0)
                return npy_fail(err,
                                "npy: dtype '%s' is not supported (only '<f4', "
                                "little-endian float32)",
                                descr);
            have_descr = 1;
        } else if (strcmp(key, "fortran_order") == 0) {
            if (hp_word(&h, "True") == 0)
                return npy_fail(err, "npy: Fortran-order arrays are not supported (save a "
                                     "C-contiguous array)");
            if (hp_word(&h, "False"))
                return npy_fail(err, "npy: header 'fortran_order' is not True or False");
            have_order = 1;
        } else if (strcmp(key, "shape") == 0) {
            int r = hp_shape(&h, ndim, dims);
            if (r == -2)
                return npy_fail(err, "npy: more than %d dimensions are not supported",
                                NPY_MAX_DIMS);
            if (r == -3) return npy_fail(err, "npy: a dimension in the shape is absurdly large");
            if (r) return npy_fail(err, "npy: malformed 'shape' tuple in header");
            have_shape = 1;
        } else {
            return npy_fail(err, "npy: unexpected header key '%s'", key);
        }
        hp_skip_ws(&h);
        if (h.p < h.end && *h.p == ',') {
            h.p++;
            continue;
        }
        if (hp_expect(&h, '}')) return npy_fail(err, "npy: malformed header dict");
        break;
    }
    hp_skip_ws(&h);
    if (h.p != h.end) return npy_fail(err, "npy: unexpected text after the header dict");
    if (!have_descr || !have_order || !have_shape)
        return npy_fail(err, "npy: header lacks '%s'",
                        !have_descr   ? "descr"
                        : !have_order ? "fortran_order"
                                      : "shape");
    return 0;
}

/* ---- reading ----------------------------------------------------------------------------- */

int npy_read_memory(const void *buf, size_t size, npy_array *out, cvy_error *err)
{
    if (!out) return npy_fail(err, "npy: out is NULL");
    memset(out, 0, sizeof *out);
    if (!buf && size) return npy_fail(err, "npy: buffer is NULL");
    const unsigned char *b = buf;
    if (size < 10)
        return npy_fail(err, "npy: truncated: %zu bytes is too short for an .npy header", size);
    if (memcmp(b, NPY_MAGIC, sizeof NPY_MAGIC) != 0)
        return npy_fail(err, "npy: not an .npy file (bad magic)");
    unsigned major = b[6], minor = b[7];
    size_t hlen, hstart;
    if (major == 1) {
        hlen = (size_t)b[8] | (size_t)b[9] << 8;
        hstart = 10;
    } else if (major == 2) {
        if (size < 12)
            return npy_fail(err, "npy: truncated: %zu bytes is too short for a v2.0 header", size);
        hlen = (size_t)b[8] | (size_t)b[9] << 8 | (size_t)b[10] << 16 | (size_t)b[11] << 24;
        hstart = 12;
    } else {
        return npy_fail(err, "npy: format version %u.%u is not supported (1.0 and 2.0 are)", major,
                        minor);
    }
    if (minor != 0)
        return npy_fail(err, "npy: format version %u.%u is not supported (1.0 and 2.0 are)", major,
                        minor);
    if (hlen > size - hstart)
        return npy_fail(err, "npy: truncated: header of %zu bytes but only %zu bytes follow", hlen,
                        size - hstart);

    int ndim = 0;
    size_t dims[NPY_MAX_DIMS] = {0};
    if (parse_header((const char *)b + hstart, hlen, &ndim, dims, err)) return -1;
    size_t count = 1;
    for (int i = 0; i < ndim; i++) {
        if (dims[i] && count > SIZE_MAX / 4 / dims[i])
            return npy_fail(err, "npy: shape is too large");
        count *= dims[i];
    }
    size_t data_off = hstart + hlen, have = size - data_off, need = count * sizeof(float);
    if (have < need)
        return npy_fail(err, "npy: truncated: shape needs %zu bytes of data but the file has %zu",
                        need, have);
    if (have > need)
        return npy_fail(err, "npy: %zu unexpected bytes after the array data", have - need);

    float *data = NULL;
    if (count) {
        data = malloc(need);
        if (!data) return npy_fail(err, "npy: out of memory for %zu floats", count);
        memcpy(data, b + data_off, need);
    }
    out->ndim = ndim;
    memcpy(out->dims, dims, sizeof dims);
    out->count = count;
    out->data = data;
    return 0;
}

/* Reads a whole file into a malloc'ed buffer. Returns 0 or -1 with err. */
static int read_whole_file(const char *path, unsigned char **buf, size_t *size, cvy_error *err)
{
    FILE *f = fopen(path, "rb");
    if (!f) return npy_fail(err, "%s: %s", path, strerror(errno));
    size_t cap = 1 << 16, n = 0;
    unsigned char *b = malloc(cap);
    if (!b) {
        fclose(f);
        return npy_fail(err, "%s: out of memory", path);
    }
    for (;;) {
        if (n == cap) {
            unsigned char *nb = cap > SIZE_MAX / 2 ? NULL : realloc(b, cap * 2);
            if (!nb) {
                free(b);
                fclose(f);
                return npy_fail(err, "%s: out of memory", path);
            }
            b = nb;
            cap *= 2;
        }
        size_t r = fread(b + n, 1, cap - n, f);
        n += r;
        if (r == 0) break;
    }
    int bad = ferror(f);
    fclose(f);
    if (bad) {
        free(b);
        return npy_fail(err, "%s: read error", path);
    }
    *buf = b;
    *size = n;
    return 0;
}

int npy_read(const char *path, npy_array *out, cvy_error *err)
{
    if (out) memset(out, 0, sizeof *out);
    unsigned char *buf = NULL;
    size_t size = 0;
    if (read_whole_file(path, &buf, &size, err)) return -1;
    int r = npy_read_memory(buf, size, out, err);
    free(buf);
    if (r && err) {
        /* prefix the path: "npy: ..." becomes "PATH: ..." */
        char tmp[sizeof err->msg];
        const char *m = strncmp(err->msg, "npy: ", 5) == 0 ? err->msg + 5 : err->msg;
        snprintf(tmp, sizeof tmp, "%s", m);
        snprintf(err->msg, sizeof err->msg, "%.200s: %.300s", path, tmp);
    }
    return r;
}

/* ---- writing ----------------------------------------------------------------------------- */

int npy_write_memory(const float *data, int ndim, const size_t *dims, void **out_buf,
                     size_t *out_size, cvy_error *err)
{
    if (!out_buf || !out_size || ndim < 0 || ndim > NPY_MAX_DIMS || (ndim && !dims))
        return npy_fail(err, "npy: invalid arguments to npy_write");
    size_t count = 1;
    for (int i = 0; i < ndim; i++) {
        if (dims[i] && count > SIZE_MAX / 8 / dims[i])
            return npy_fail(err, "npy: shape is too large");
        count *= dims[i];
    }
    if (count && !data) return npy_fail(err, "npy: data is NULL");

    char shape[128];
    size_t sl = 0;
    shape[sl++] = '(';
    for (int i = 0; i < ndim; i++)
        sl += (size_t)snprintf(shape + sl, sizeof shape - sl, i ? " %zu," : "%zu,", dims[i]);
    if (ndim > 1) sl--; /* numpy writes (3,) for one dim and (2, 3) for more */
    shape[sl++] = ')';
    shape[sl] = '\0';

    char dict[256];
    int dl = snprintf(dict, sizeof dict, "{'descr': '<f4', 'fortran_order': False, 'shape': %s, }",
                      shape);
    /* header = magic(6) + version(2) + len(2) + dict + padding + '\n', total % 64 == 0 */
    size_t pre = 10, total = pre + (size_t)dl + 1;
    total = (total + 63) / 64 * 64;
    size_t hlen = total - pre, bytes = count * sizeof(float);
    unsigned char *b = malloc(total + bytes);
    if (!b) return npy_fail(err, "npy: out of memory for %zu bytes", total + bytes);
    memcpy(b, NPY_MAGIC, sizeof NPY_MAGIC);
    b[6] = 1;
    b[7] = 0;
    b[8] = (unsigned char)(hlen & 0xff);
    b[9] = (unsigned char)(hlen >> 8);
    memcpy(b + pre, dict, (size_t)dl);
    memset(b + pre + dl, ' ', hlen - (size_t)dl - 1);
    b[total - 1] = '\n';
    if (bytes) memcpy(b + total, data, bytes);
    *out_buf = b;
    *out_size = total + bytes;
    return 0;
}

int npy_write(const char *path, const float *data, int ndim, const size_t *dims, cvy_error *err)
{
    void *buf;
    size_t size = 0;
    if (npy_write_memory(data, ndim, dims, &buf, &size, err)) return -1;
    FILE *f = fopen(path, "wb");
    if (!f) {
        free(buf);
        return npy_fail(err, "%s: %s", path, strerror(errno));
    }
    size_t w = fwrite(buf, 1, size, f);
    free(buf);
    if (w != size) {
        int e = errno;
        fclose(f);
        return npy_fail(err, "%s: write failed: %s", path, strerror(e));
    }
    if (fclose(f) != 0) return npy_fail(err, "%s: write failed: %s", path, strerror(errno));
    return 0;
}
