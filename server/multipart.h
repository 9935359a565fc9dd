/*
 * multipart.h - multipart/form-data parsing (RFC 7578) of a complete body in memory.
 *
 * Parts point into the body; nothing is copied.
 */
#ifndef SRV_MULTIPART_H
#define SRV_MULTIPART_H

#include <stddef.h>

typedef struct srv_part {
    const char *data; /* part body */
    size_t size;
    char name[64];          /* form field name ("" if none) */
    char filename[128];     /* "" if none */
    char content_type[128]; /* "" if none */
    int has_filename;
} srv_part;

/* Extracts the boundary parameter of a Content-Type header into buf. Returns 0 or -1. */
int srv_multipart_boundary(const char *content_type, char *buf, size_t n);

/* Parses body into at most max parts. Returns the number of parts (>= 0), or -1 with a
 * message in err when the body is malformed or has more than max parts. */
int srv_multipart_parse(const char *body, size_t len, const char *boundary, srv_part *parts,
                        int max, char *err, size_t errn);

#endif
