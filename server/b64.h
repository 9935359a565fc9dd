/*
 * b64.h - base64 decoding (RFC 4648, standard and URL-safe alphabets, padding optional,
 * whitespace ignored). Optional "data:<type>;base64," prefixes are skipped.
 */
#ifndef SRV_B64_H
#define SRV_B64_H

#include <stddef.h>

/* Decodes len chars of s. Returns a malloc'ed buffer (caller frees) and its size in *out_len,
 * or NULL on malformed input or allocation failure. */
unsigned char *srv_b64_decode(const char *s, size_t len, size_t *out_len);

#endif
