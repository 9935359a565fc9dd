/*
 * body.c - see body.h.
 */
#include "body.h"
#include "b64.h"
#include "multipart.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

static int ctype_is(const char *ct, const char *type)
{
    size_t l = strlen(type);
    if (!ct) return 0;
    while (*ct == ' ')
        ct++;
    return strncasecmp(ct, type, l) == 0 && (ct[l] == 0 || ct[l] == ';' || ct[l] == ' ');
}

static int parse_top_k(const char *s, size_t len, int *out)
{
    char buf[32];
    if (len == 0 || len >= sizeof buf) return -1;
    memcpy(buf, s, len);
    buf[len] = 0;
    char *end;
    long v = strtol(buf, &end, 10);
    while (*end == ' ' || *end == '\r' || *end == '\n')
        end++;
    if (end == buf || *end || v < 1 || v > 1000000) return -1;
    *out = (int)v;
    return 0;
}

static int parse_json(const char *body, size_t len, int max_images, srv_body *out,
                      const char **code, char *msg, size_t msgn)
{
    json_error_t je;
    json_t *root = json_loadb(body, len, 0, &je);
    if (!root) {
        *code = "bad_json";
        snprintf(msg, msgn, "malformed JSON at line %d column %d: %s", je.line, je.column, je.text);
        return 400;
    }
    int st = 0;
    json_t *imgs = json_object_get(root, "images");
    json_t *tk = json_object_get(root, "top_k");
    json_t *md = json_object_get(root, "model");
    if (!json_is_object(root) || !json_is_array(imgs)) {
        *code = "bad_json";
        snprintf(msg, msgn, "expected an object with an \"images\" array of base64 strings");
        st = 400;
        goto done;
    }
    if (tk) {
        if (!json_is_integer(tk) || json_integer_value(tk) < 1 ||
            json_integer_value(tk) > 1000000) {
            *code = "bad_top_k";
            snprintf(msg, msgn, "\"top_k\" must be a positive integer");
            st = 400;
            goto done;
        }
        out->top_k = (int)json_integer_value(tk);
    }
    if (md) {
        if (!json_is_string(md) || json_string_length(md) >= sizeof out->model) {
            *code = "bad_json";
            snprintf(msg, msgn, "\"model\" must be a model name");
            st = 400;
            goto done;
        }
        snprintf(out->model, sizeof out->model, "%s", json_string_value(md));
    }
    size_t n = json_array_size(imgs);
    if (n == 0) {
        *code = "no_images";
        snprintf(msg, msgn, "\"images\" is empty");
        st = 400;
        goto done;
    }
    if (n > (size_t)max_images) {
        *code = "too_many_images";
        snprintf(msg, msgn, "%zu images exceed the limit of %d per request", n, max_images);
        st = 413;
        goto done;
    }
    out->images = calloc(n, sizeof *out->images);
    if (!out->images) {
        *code = "internal";
        snprintf(msg, msgn, "out of memory");
        st = 500;
        goto done;
    }
    for (size_t i = 0; i < n; i++) {
        json_t *it = json_array_get(imgs, i);
        if (json_is_object(it)) it = json_object_get(it, "b64");
        srv_image_src *s = &out->images[out->n++];
        snprintf(s->what, sizeof s->what, "image %zu", i + 1);
        if (!json_is_string(it)) {
            *code = "bad_json";
            snprintf(msg, msgn, "image %zu: expected a base64 string", i + 1);
            st = 400;
            goto done;
        }
        s->owned = srv_b64_decode(json_string_value(it), json_string_length(it), &s->size);
        if (!s->owned) {
            *code = "bad_base64";
            snprintf(msg, msgn, "image %zu: malformed base64", i + 1);
            st = 400;
            goto done;
        }
        s->data = s->owned;
    }
done:
    json_decref(root);
    return st;
}

static int parse_multipart(const char *ct, const char *body, size_t len, int max_images,
                           srv_body *out, const char **code, char *msg, size_t msgn)
{
    char boundary[80];
    if (srv_multipart_boundary(ct, boundary, sizeof boundary) < 0) {
        *code = "bad_multipart";
        snprintf(msg, msgn, "multipart/form-data without a valid boundary parameter");
        return 400;
    }
    int maxp = max_images + 8;
    srv_part *parts = calloc((size_t)maxp, sizeof *parts);
    if (!parts) {
        *code = "internal";
        snprintf(msg, msgn, "out of memory");
        return 500;
    }
    char err[200];
    int np = srv_multipart_parse(body, len, boundary, parts, maxp, err, sizeof err);
    int st = 0;
    if (np < 0) {
        *code = "bad_multipart";
        snprintf(msg, msgn, "%s", err);
        st = 400;
        goto done;
    }
    out->images = calloc((size_t)np + 1, sizeof *out->images);
    if (!out->images) {
        *code = "internal";
        snprintf(msg, msgn, "out of memory");
        st = 500;
        goto done;
    }
    for (int i = 0; i < np; i++) {
        srv_part *p = &parts[i];
        if (!p->has_filename && strcmp(p->name, "top_k") == 0) {
            if (parse_top_k(p->data, p->size, &out->top_k) < 0) {
                *code = "bad_top_k";
                snprintf(msg, msgn, "part 'top_k': not a positive integer");
                st = 400;
                goto done;
            }
            continue;
        }
        if (!p->has_filename && strcmp(p->name, "model") == 0) {
            size_t l = p->size < sizeof out->model - 1 ? p->size : sizeof out->model - 1;
            memcpy(out->model, p->data, l);
            out->model[l] = 0;
            continue;
        }
        if (out->n >= max_images) {
            *code = "too_many_images";
            snprintf(msg, msgn, "more than %d images in one request", max_images);
            st = 413;
            goto done;
        }
        srv_image_src *s = &out->images[out->n++];
        s->data = (const unsigned char *)p->data;
        s->size = p->size;
        if (p->has_filename)
            snprintf(s->what, sizeof s->what, "part %d '%.60s' (%.60s)", i + 1, p->name,
                     p->filename);
        else
            snprintf(s->what, sizeof s->what, "part %d '%.60s'", i + 1, p->name);
    }
    if (out->n == 0) {
        *code = "no_images";
        snprintf(msg, msgn, "the multipart body has no image parts");
        st = 400;
    }
done:
    free(parts);
    return st;
}

int srv_body_parse(const char *ctype, const char *body, size_t len, int max_images, srv_body *out,
                   const char **code, char *msg, size_t msgn)
{
    memset(out, 0, sizeof *out);
    if (!body || len == 0) {
        *code = "empty_body";
        snprintf(msg, msgn,
                 "the request has no body: send an image, multipart/form-data or "
                 "JSON {\"images\": [...]}");
        return 400;
    }
    if (ctype_is(ctype, "application/json"))
        return parse_json(body, len, max_images, out, code, msg, msgn);
    if (ctype_is(ctype, "multipart/form-data"))
        return parse_multipart(ctype, body, len, max_images, out, code, msg, msgn);
    out->images = calloc(1, sizeof *out->images);
    if (!out->images) {
        *code = "internal";
        snprintf(msg, msgn, "out of memory");
        return 500;
    }
    out->n = 1;
    out->images[0].data = (const unsigned char *)body;
    out->images[0].size = len;
    snprintf(out->images[0].what, sizeof out->images[0].what, "body");
    return 0;
}

void srv_body_free(srv_body *b)
{
    if (!b->images) return;
    for (int i = 0; i < b->n; i++)
        free(b->images[i].owned);
    free(b->images);
    b->images = NULL;
    b->n = 0;
}
