/*
 * v2_parse.h - the parsing half of POST /v2/models/{m}/infer (see v2.h for the protocol),
 * without HTTP: the body (a JSON header, optionally followed by binary tensor data) becomes
 * a validated description of the one input and of the requested output. In two stages
 * because convoyd looks the model up between them (a malformed body is refused before an
 * unknown model is).
 */
#ifndef SRV_V2_PARSE_H
#define SRV_V2_PARSE_H

#include "body.h"

#include <jansson.h>
#include <stddef.h>

typedef struct srv_v2_infer {
    json_t *root;    /* the JSON header (owned) */
    const char *bin; /* binary tensor data after the header (points into the body) */
    size_t bin_len;
    json_t *id;          /* "id" when it is a string (borrowed from root), else NULL */
    int binary_out;      /* answer with the binary tensor extension */
    int classification;  /* > 0: top-k "score:index:label" strings instead of raw output */
    long timeout_us;     /* parameters.timeout, 0 = none */
    int n;               /* images in the batch */
    float *input;        /* FP32: n model inputs (malloc'd), else NULL */
    srv_image_src *imgs; /* BYTES: n encoded images (malloc'd), else NULL */
} srv_v2_infer;

/* Stage 1: splits body at hcl (the Inference-Header-Content-Length header, NULL if absent)
 * and parses the JSON header into q (cleared first). Returns 0, or an HTTP status (400)
 * with an error code and message. Free q with srv_v2_infer_free either way. */
int srv_v2_infer_json(const char *body, size_t len, const char *hcl, srv_v2_infer *q,
                      const char **code, char *msg, size_t msgn);

/* Stage 2: checks the single input against the model's input shape c x h x w and the limit
 * of max_images per request, reads the requested outputs and the timeout, and copies FP32
 * data into q->input or collects (base64-decoded) BYTES images into q->imgs. Returns 0, or
 * an HTTP status (400, 413, 500) with an error code and message. */
int srv_v2_infer_inputs(srv_v2_infer *q, int c, int h, int w, int max_images, const char **code,
                        char *msg, size_t msgn);

/* Frees what q owns (q itself is the caller's). */
void srv_v2_infer_free(srv_v2_infer *q);

#endif
