/* util.c - status names, error formatting, aligned memory and hashing. */
#include "util.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

const char *cvy_status_str(cvy_status s)
{
    switch (s) {
    case CVY_OK: return "ok";
    case CVY_ERR_ARG: return "invalid argument";
    case CVY_ERR_NOMEM: return "out of memory";
    case CVY_ERR_IO: return "i/o error";
    case CVY_ERR_FORMAT: return "malformed model file";
    case CVY_ERR_VERSION: return "unsupported format version";
    case CVY_ERR_CHECKSUM: return "checksum mismatch";
    case CVY_ERR_SHAPE: return "invalid shape";
    case CVY_ERR_UNSUPPORTED: return "unsupported";
    case CVY_ERR_IMAGE: return "invalid image";
    case CVY_ERR_LIMIT: return "limit exceeded";
    case CVY_ERR_INTERNAL: return "internal error";
    case CVY_ERR_MISMATCH: return "self-test mismatch";
    }
    return "unknown status";
}

cvy_status cvy_fail(cvy_error *err, cvy_status s, const char *fmt, ...)
{
    if (err) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err->msg, sizeof err->msg, fmt, ap);
        va_end(ap);
    }
    return s;
}

#define HUGE_PAGE ((size_t)2 << 20)

void *cvy_alloc_aligned(size_t n)
{
    void *p = NULL;
    size_t sz = cvy_round_up(n ? n : 1, 64);
    size_t align = sz >= HUGE_PAGE ? HUGE_PAGE : 64;
    if (sz < n || posix_memalign(&p, align, sz) != 0) return NULL;
    if (align == HUGE_PAGE) madvise(p, sz, MADV_HUGEPAGE);
    memset(p, 0, sz);
    return p;
}

void cvy_free_aligned(void *p) { free(p); }

uint64_t cvy_hash64(const void *data, size_t n)
{
    const uint8_t *p = data;
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < n; i++) {
        h ^= p[i];
        h *= 1099511628211ull;
    }
    return h;
}
