/* multipart.c - see multipart.h. */
#include "multipart.h"

#include <ctype.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

/* Copies the value of parameter `key` (token or quoted string) from a header value. */
static int header_param(const char *v, size_t vlen, const char *key, char *buf, size_t n)
{
    size_t klen = strlen(key);
    const char *end = v + vlen;
    const char *p = v;
    while (p < end) {
        const char *semi = memchr(p, ';', (size_t)(end - p));
        if (!semi) break;
        p = semi + 1;
        while (p < end && (*p == ' ' || *p == '\t'))
            p++;
        if ((size_t)(end - p) > klen && strncasecmp(p, key, klen) == 0 && p[klen] == '=') {
            p += klen + 1;
            size_t j = 0;
            if (p < end && *p == '"') {
                p++;
                while (p < end && *p != '"') {
                    if (*p == '\\' && p + 1 < end) p++;
                    if (j + 1 < n) buf[j++] = *p;
                    p++;
                }
            } else {
                while (p < end && *p != ';' && *p != ' ' && *p != '\t') {
                    if (j + 1 < n) buf[j++] = *p;
                    p++;
                }
            }
            buf[j] = 0;
            return 0;
        }
    }
    return -1;
}

int srv_multipart_boundary(const char *content_type, char *buf, size_t n)
{
    if (!content_type) return -1;
    if (header_param(content_type, strlen(content_type), "boundary", buf, n) < 0 || !*buf)
        return -1;
    return strlen(buf) <= 70 ? 0 : -1;
}

static const char *find(const char *h, size_t hlen, const char *needle, size_t nlen)
{
    return memmem(h, hlen, needle, nlen);
}

int srv_multipart_parse(const char *body, size_t len, const char *boundary, srv_part *parts,
                        int max, char *err, size_t errn)
{
    char delim[80];
    int dl = snprintf(delim, sizeof delim, "--%s", boundary);
    const char *end = body + len;
    /* The first delimiter may sit at the very start or after a preamble line. */
    const char *p = find(body, len, delim, (size_t)dl);
    if (!p) {
        snprintf(err, errn, "multipart body has no boundary '%s'", boundary);
        return -1;
    }
    int np = 0;
    for (;;) {
        p += dl;
        if (end - p >= 2 && p[0] == '-' && p[1] == '-') return np; /* closing delimiter */
        /* skip transport padding and CRLF after the delimiter */
        while (p < end && (*p == ' ' || *p == '\t'))
            p++;
        if (end - p >= 2 && p[0] == '\r' && p[1] == '\n')
            p += 2;
        else if (p < end && *p == '\n')
            p += 1;
        else {
            snprintf(err, errn, "multipart part %d: malformed boundary line", np + 1);
            return -1;
        }
        if (np >= max) {
            snprintf(err, errn, "multipart body has more than %d parts", max);
            return -1;
        }
        srv_part *pt = &parts[np];
        memset(pt, 0, sizeof *pt);
        /* headers */
        for (;;) {
            const char *eol = memchr(p, '\n', (size_t)(end - p));
            if (!eol) {
                snprintf(err, errn, "multipart part %d: truncated headers", np + 1);
                return -1;
            }
            size_t hl = (size_t)(eol - p);
            if (hl && p[hl - 1] == '\r') hl--;
            if (hl == 0) {
                p = eol + 1;
                break;
            }
            const char *colon = memchr(p, ':', hl);
            if (!colon) {
                snprintf(err, errn, "multipart part %d: malformed header line", np + 1);
                return -1;
            }
            size_t nl = (size_t)(colon - p);
            const char *v = colon + 1;
            while (v < p + hl && (*v == ' ' || *v == '\t'))
                v++;
            size_t vl = (size_t)(p + hl - v);
            if (nl == 19 && strncasecmp(p, "Content-Disposition", 19) == 0) {
                header_param(v, vl, "name", pt->name, sizeof pt->name);
                if (header_param(v, vl, "filename", pt->filename, sizeof pt->filename) == 0)
                    pt->has_filename = 1;
            } else if (nl == 12 && strncasecmp(p, "Content-Type", 12) == 0) {
                size_t c = vl < sizeof pt->content_type - 1 ? vl : sizeof pt->content_type - 1;
                memcpy(pt->content_type, v, c);
                pt->content_type[c] = 0;
            }
            p = eol + 1;
        }
        /* body up to CRLF--boundary */
        char nd[84];
        int ndl = snprintf(nd, sizeof nd, "\r\n%s", delim);
        const char *q = find(p, (size_t)(end - p), nd, (size_t)ndl);
        int crlf = 2;
        if (!q) { /* tolerate bare LF line ends */
            ndl = snprintf(nd, sizeof nd, "\n%s", delim);
            q = find(p, (size_t)(end - p), nd, (size_t)ndl);
            crlf = 1;
        }
        if (!q) {
            snprintf(err, errn, "multipart part %d: no closing boundary", np + 1);
            return -1;
        }
        pt->data = p;
        pt->size = (size_t)(q - p);
        np++;
        p = q + crlf;
    }
}
