/* fuzz_body.c - libFuzzer harness for the /classify body parser (raw image, multipart with
 * top_k/model fields, JSON with base64 images) and srv_body_free. Input: the Content-Type
 * header value on the first line (so the content-type matching is fuzzed too), then the
 * body. The status must be one srv_body_parse documents, every image must lie inside the
 * body or its own decoded buffer, and everything is freed. Errors are fine; crashes, leaks
 * and bad reads are not. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "body.h"

#define MAX_IMAGES 8

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static volatile unsigned sink;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const uint8_t *nl = memchr(data, '\n', size);
    size_t cl = nl ? (size_t)(nl - data) : size;
    char *ctype = malloc(cl + 1);
    if (!ctype) return 0;
    memcpy(ctype, data, cl);
    ctype[cl] = 0;
    size_t len = nl ? size - cl - 1 : 0;
    char *body = malloc(len ? len : 1); /* its own allocation: overreads are caught */
    if (!body) abort();
    memcpy(body, nl ? nl + 1 : data, len);
    srv_body b;
    const char *code = NULL;
    char msg[512];
    int st =
        srv_body_parse(*ctype ? ctype : NULL, body, len, MAX_IMAGES, &b, &code, msg, sizeof msg);
    if (st != 0 && st != 400 && st != 413 && st != 415 && st != 500) abort();
    if (st && (!code || !*msg)) abort();
    if (!st) {
        if (b.n < 1 || b.n > MAX_IMAGES || b.top_k < 0 || b.top_k > 1000000) abort();
        unsigned sum = 0;
        for (int i = 0; i < b.n; i++) {
            const srv_image_src *s = &b.images[i];
            int inside =
                (const char *)s->data >= body && (const char *)s->data + s->size <= body + len;
            if (!s->data || (!inside && s->data != s->owned)) abort();
            for (size_t k = 0; k < s->size; k++) /* every byte readable */
                sum += s->data[k];
        }
        sink = sum; /* keeps the reads */
    }
    srv_body_free(&b);
    free(body);
    free(ctype);
    return 0;
}
