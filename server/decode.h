/*
 * decode.h - one encoded image of a request -> the model's input tensor, with the limits
 * convoyd applies (the pixel limit is checked on the header before anything is decoded).
 * No HTTP here: handlers.c answers the status this returns, fuzz_request calls it directly.
 */
#ifndef SRV_DECODE_H
#define SRV_DECODE_H

#include "body.h"
#include "convoy.h"

#include <stddef.h>

/* Probes src, refuses more than max_pixels pixels, decodes it with the model's channel count
 * and preprocesses it into out (cvy_model_input_size(m) floats). Returns 0, or an HTTP
 * status (415 not an image, 413 too large, 400 corrupt) with an error code and a message
 * naming the image by src->what. */
int srv_decode_image(const cvy_model *m, long max_pixels, const srv_image_src *src, float *out,
                     const char **code, char *msg, size_t msgn);

#endif
