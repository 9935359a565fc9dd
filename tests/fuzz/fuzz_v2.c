/* fuzz_v2.c - libFuzzer harness for the KServe v2 infer request parser (v2_parse.h) for a
 * model input of 1x2x2 and at most 4 images. Input: the Inference-Header-Content-Length
 * header value on the first line (an empty line: no such header), then the body: JSON,
 * optionally followed by binary tensor data. A request that parses must describe 1..4 images:
 * finite FP32 data of the model's shape, or encoded images inside the body or their own
 * decoded buffers. Errors are fine; crashes, leaks and bad reads are not. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "v2_parse.h"

#define C          1
#define H          2
#define W          2
#define MAX_IMAGES 4

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static volatile unsigned sink;

/* Checks a parsed request against what the handler relies on; aborts when it is wrong. */
static void check(const srv_v2_infer *q, const char *body, size_t len)
{
    if (q->n < 1 || q->n > MAX_IMAGES || q->classification < 0 || q->timeout_us < 0) abort();
    if (!q->input == !q->imgs) abort(); /* exactly one of the two */
    if (q->input) {
        for (size_t i = 0; i < (size_t)q->n * C * H * W; i++)
            if (!isfinite(q->input[i])) abort();
        return;
    }
    unsigned sum = 0;
    for (int i = 0; i < q->n; i++) {
        const srv_image_src *s = &q->imgs[i];
        int inside = (const char *)s->data >= body && (const char *)s->data + s->size <= body + len;
        if (!s->data || (!inside && s->data != s->owned)) abort();
        for (size_t k = 0; k < s->size; k++) sum += s->data[k];
    }
    sink = sum; /* keeps the reads */
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const uint8_t *nl = memchr(data, '\n', size);
    if (!nl) return 0;
    size_t hl = (size_t)(nl - data);
    char *hcl = malloc(hl + 1);
    size_t len = size - hl - 1;
    char *body = malloc(len ? len : 1); /* its own allocation: overreads are caught */
    if (!hcl || !body) abort();
    memcpy(hcl, data, hl);
    hcl[hl] = 0;
    memcpy(body, nl + 1, len);
    srv_v2_infer q;
    const char *code = NULL;
    char msg[512];
    int st = srv_v2_infer_json(body, len, hl ? hcl : NULL, &q, &code, msg, sizeof msg);
    if (!st) st = srv_v2_infer_inputs(&q, C, H, W, MAX_IMAGES, &code, msg, sizeof msg);
    if (st != 0 && st != 400 && st != 413 && st != 500) abort();
    if (st && (!code || !*msg)) abort();
    if (!st) check(&q, body, len);
    srv_v2_infer_free(&q);
    free(body);
    free(hcl);
    return 0;
}
