/* b64.c - see b64.h. */
#include "b64.h"

#include <stdlib.h>
#include <string.h>

static int b64_val(unsigned char c)
{
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    if (c == '+' || c == '-') return 62;
    if (c == '/' || c == '_') return 63;
    return -1;
}

unsigned char *srv_b64_decode(const char *s, size_t len, size_t *out_len)
{
    if (len > 5 && strncmp(s, "data:", 5) == 0) {
        const char *comma = memchr(s, ',', len);
        if (!comma) return NULL;
        len -= (size_t)(comma + 1 - s);
        s = comma + 1;
    }
    unsigned char *out = malloc(len / 4 * 3 + 3);
    if (!out) return NULL;
    size_t n = 0;
    unsigned acc = 0;
    int bits = 0, pad = 0, chars = 0;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == ' ' || c == '\n' || c == '\r' || c == '\t') continue;
        if (c == '=') {
            pad++;
            continue;
        }
        int v = b64_val(c);
        if (v < 0 || pad) { /* bad character, or data after padding */
            free(out);
            return NULL;
        }
        chars++;
        acc = (acc << 6) | (unsigned)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out[n++] = (unsigned char)(acc >> bits);
            acc &= (1u << bits) - 1;
        }
    }
    /* A lone trailing char (chars % 4 == 1) or too much padding is malformed. */
    if (chars % 4 == 1 || pad > 2 || (pad && (chars + pad) % 4 != 0)) {
        free(out);
        return NULL;
    }
    *out_len = n;
    return out;
}
