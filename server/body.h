/*
 * body.h - the image-carrying bodies of POST /classify.
 *
 *   raw bytes           any other Content-Type (image/png, image/jpeg, application/octet-
 *                       stream, none): the body is one encoded image, sniffed by content.
 *   multipart/form-data every part is an image, except fields named top_k or model
 *                       without a filename, which set those parameters.
 *   application/json    {"images": ["<base64>" | {"b64": "<base64>"}, ...], "top_k": K,
 *                       "model": NAME}
 */
#ifndef SRV_BODY_H
#define SRV_BODY_H

#include <stddef.h>

typedef struct srv_image_src {
    const unsigned char *data; /* encoded image */
    size_t size;
    unsigned char *owned; /* decoded base64, freed by srv_body_free */
    char what[160];       /* names the image in messages: "image 2", "part 'b' (x.png)" */
} srv_image_src;

typedef struct srv_body {
    srv_image_src *images;
    int n;
    int top_k;       /* from the body; 0 = not given */
    char model[128]; /* from the body; "" = not given */
} srv_body;

/* Parses body by content type. Returns 0, or an HTTP status (400, 413, 415) with an error
 * code and message. */
int srv_body_parse(const char *ctype, const char *body, size_t len, int max_images, srv_body *out,
                   const char **code, char *msg, size_t msgn);
void srv_body_free(srv_body *b);

#endif
