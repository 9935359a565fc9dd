/*
 * idx.h - read IDX files, the MNIST / Fashion-MNIST format: a big-endian header (magic
 * 0x00000803 + n, rows, cols for u8 images; 0x00000801 + n for u8 labels) followed by the
 * bytes. Plain and gzip-compressed files are both accepted (zlib's gzread reads either).
 * Sizes are validated: truncated files, trailing data, absurd sizes and the wrong kind of
 * file are errors with a message in err->msg.
 */
#ifndef CONVOY_IDX_H
#define CONVOY_IDX_H

#include <stddef.h>
#include <stdint.h>

#include "convoy.h"

#define IDX_MAGIC_U8_LABELS 0x00000801u
#define IDX_MAGIC_U8_IMAGES 0x00000803u
#define IDX_MAX_SIDE        65536        /* largest rows or cols accepted */
#define IDX_MAX_BYTES       (1ull << 32) /* largest payload accepted */

typedef struct idx_images {
    int count, rows, cols;
    uint8_t *pixels; /* owned: count * rows * cols bytes, image after image, row-major */
} idx_images;

typedef struct idx_labels {
    int count;
    uint8_t *labels; /* owned: count bytes */
} idx_labels;

/* Reads an u8 image file. Returns 0 (free with idx_images_free) or -1 with err filled and
 * out zeroed. Thread-safe (no shared state). */
int idx_read_images(const char *path, idx_images *out, cvy_error *err);

/* Reads an u8 label file. Returns 0 (free with idx_labels_free) or -1 with err filled. */
int idx_read_labels(const char *path, idx_labels *out, cvy_error *err);

/* Free the owned buffers and zero the struct. Accept NULL. */
void idx_images_free(idx_images *im);
void idx_labels_free(idx_labels *lb);

#endif /* CONVOY_IDX_H */
