/* sidecar.h - the optional <name>.json next to a <name>.onnx in the model directory: the
 * labels and preprocessing an ONNX file cannot carry, with the fields of `convoy convert`'s
 * flags: {"labels": "labels.txt", "size": "224x224", "color": "rgb", "mean": [0.485, 0.456,
 * 0.406], "std": [0.229, 0.224, 0.225], "scale": 0.00392157, "resize": "shorter-side-crop",
 * "resize_shorter": 256}. Every field is optional; unknown fields are an error. */
#ifndef SRV_SIDECAR_H
#define SRV_SIDECAR_H

#include <stddef.h>

#include "convoy.h"

/* Fills *o (starting from cvy_onnx_default_options) from the sidecar at json_path; a missing
 * file leaves the defaults. A "labels" file name is resolved in dir and written to
 * labels_buf (o->labels_path then points at it); it may not contain '/' or start with '.'.
 * Returns 0, or -1 with a message naming the field in err. Thread-safe. */
int srv_sidecar_read(const char *json_path, const char *dir, cvy_onnx_options *o,
                     char *labels_buf, size_t labels_len, char *err, size_t err_len);

#endif
