/* util.h - small helpers shared by the engine modules: error text, aligned memory, hashing. */
#ifndef CVY_UTIL_H
#define CVY_UTIL_H

#include <stddef.h>
#include <stdint.h>
#include "convoy.h"

/* Formats a message into err (if not NULL) and returns status s, so callers can write
 * `return cvy_fail(err, CVY_ERR_FORMAT, "...", ...)`. */
cvy_status cvy_fail(cvy_error *err, cvy_status s, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* 64-byte aligned allocation of n bytes (n may be 0), zero-filled so every page is touched
 * now rather than on the first run. From 2 MB on (weights, activation arenas) it is 2 MB
 * aligned and asks for transparent huge pages, which Debian grants on request (madvise):
 * a layer's weights and maps then cost a few TLB entries instead of hundreds. Free with
 * cvy_free_aligned. NULL on failure. */
void *cvy_alloc_aligned(size_t n);
void cvy_free_aligned(void *p);

/* FNV-1a 64-bit hash of a buffer. */
uint64_t cvy_hash64(const void *data, size_t n);

/* a*b into *out; returns 0 on overflow of size_t. */
static inline int cvy_mul_ok(size_t a, size_t b, size_t *out)
{
    if (a != 0 && b > SIZE_MAX / a) return 0;
    *out = a * b;
    return 1;
}

static inline size_t cvy_round_up(size_t n, size_t to) { return (n + to - 1) / to * to; }

#endif
