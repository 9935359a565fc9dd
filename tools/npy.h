/*
 * npy.h - read and write numpy .npy files holding little-endian float32 ('<f4') arrays in C
 * order with at most 4 dimensions. Reads format versions 1.0 and 2.0; writes 1.0 (a header of at
 * most 4 dims always fits). Other dtypes, Fortran order, truncated or trailing data are
 * reported as errors with a message in err->msg.
 */
#ifndef CONVOY_NPY_H
#define CONVOY_NPY_H

#include <stddef.h>

#include "convoy.h"

#define NPY_MAX_DIMS 4

typedef struct npy_array {
    int ndim;                  /* 0..NPY_MAX_DIMS (0: a scalar, one element) */
    size_t dims[NPY_MAX_DIMS]; /* unused dims are 0 */
    size_t count;              /* number of elements: product of dims */
    float *data;               /* owned, count floats (malloc'ed; NULL when count == 0) */
} npy_array;

/* Parses an .npy image held in memory. On success fills out (free with npy_free) and returns
 * 0; on failure returns -1, leaves out zeroed and writes a message to err (if not NULL). */
int npy_read_memory(const void *buf, size_t size, npy_array *out, cvy_error *err);

/* Reads the .npy file at path; same contract as npy_read_memory. */
int npy_read(const char *path, npy_array *out, cvy_error *err);

/* Serializes count = product(dims) floats as an .npy image. On success *out_buf is a malloc'ed
 * buffer of *out_size bytes owned by the caller; returns 0, or -1 with err filled. */
int npy_write_memory(const float *data, int ndim, const size_t *dims, void **out_buf,
                     size_t *out_size, cvy_error *err);

/* Writes data with shape dims[0..ndim) to path ('<f4', C order). Returns 0 or -1 with err. */
int npy_write(const char *path, const float *data, int ndim, const size_t *dims, cvy_error *err);

/* Frees the array's data and zeroes it. Accepts NULL. */
void npy_free(npy_array *a);

#endif /* CONVOY_NPY_H */
