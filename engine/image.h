/*
 * image.h - internal helpers of engine/image.c shared with the unit tests.
 */
#ifndef CONVOY_IMAGE_H
#define CONVOY_IMAGE_H

#include "convoy.h"

/* Largest width or height cvy_image_decode and the preprocessing accept. */
#define CVY_IMAGE_MAX_DIM (1 << 16)

/* cvy_image_preprocess with the preprocessing spec given directly instead of taken from a
 * model: colour conversion, resize (stretch or shorter side + center crop), then
 * (pixel * scale - mean[c]) / std[c], written CHW to out (channels(p) * p->height * p->width
 * floats, channels 1 for GRAY, 3 otherwise). img is not modified. Allocates temporaries with
 * malloc and frees them before returning. Thread-safe. */
cvy_status cvy_image_preprocess_spec(const cvy_preproc *p, const cvy_image *img, float *out,
                                     cvy_error *err);

#endif /* CONVOY_IMAGE_H */
