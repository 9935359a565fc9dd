/*
 * handlers.h - the convoy endpoints: /classify, /models, /healthz, /readyz, /metrics.
 */
#ifndef SRV_HANDLERS_H
#define SRV_HANDLERS_H

#include "body.h"
#include "http.h"

/* Answers (or queues) a request for one of R_HEALTHZ .. R_CLASSIFY, on an HTTP thread. */
void srv_handle(srv_req *r);

/* Decodes and preprocesses n encoded images for r->model into a new r->input and allocates
 * r->output; r->n = n. Answers 413/415/400 itself and returns -1 on failure. */
int srv_decode_images(srv_req *r, const srv_image_src *imgs, int n);

#endif
