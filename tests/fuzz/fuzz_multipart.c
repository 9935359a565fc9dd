/* fuzz_multipart.c - libFuzzer harness for the multipart/form-data parser convoyd runs on
 * /classify bodies. Input: the Content-Type header value on the first line, then the body.
 * The boundary comes from srv_multipart_boundary as in body.c; every part returned must lie
 * inside the body with NUL-terminated names. Errors are fine; crashes and bad reads are not. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "multipart.h"

#define MAX_PARTS 16

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const uint8_t *nl = memchr(data, '\n', size);
    size_t cl = nl ? (size_t)(nl - data) : size;
    char *ctype = malloc(cl + 1);
    if (!ctype) return 0;
    memcpy(ctype, data, cl);
    ctype[cl] = 0;
    /* the body in its own allocation, so reads past its end are caught */
    size_t len = nl ? size - cl - 1 : 0;
    char *body = malloc(len ? len : 1);
    if (!body) abort();
    memcpy(body, nl ? nl + 1 : data, len);
    char boundary[80], err[200];
    srv_part parts[MAX_PARTS];
    if (srv_multipart_boundary(ctype, boundary, sizeof boundary) == 0) {
        if (strlen(boundary) > 70) abort();
        int np = srv_multipart_parse(body, len, boundary, parts, MAX_PARTS, err, sizeof err);
        if (np < -1 || np > MAX_PARTS) abort();
        if (np < 0 && strlen(err) == 0) abort();
        for (int i = 0; i < np; i++) {
            const srv_part *p = &parts[i];
            if (p->data < body || p->size > len || p->data + p->size > body + len) abort();
            if (strnlen(p->name, sizeof p->name) == sizeof p->name ||
                strnlen(p->filename, sizeof p->filename) == sizeof p->filename ||
                strnlen(p->content_type, sizeof p->content_type) == sizeof p->content_type)
                abort();
        }
    }
    free(body);
    free(ctype);
    return 0;
}
