/*
 * decode.c - see decode.h.
 */
#include "decode.h"

#include <stdio.h>

int srv_decode_image(const cvy_model *m, long max_pixels, const srv_image_src *src, float *out,
                     const char **code, char *msg, size_t msgn)
{
    int channels = cvy_model_preproc(m)->color == CVY_COLOR_GRAY ? 1 : 3;
    cvy_error err;
    int w, h, c;
    cvy_status st = cvy_image_probe(src->data, src->size, &w, &h, &c, &err);
    if (st != CVY_OK) {
        *code = "unsupported_image";
        snprintf(msg, msgn, "%s: not an image in a supported format (%.200s)", src->what, err.msg);
        return 415;
    }
    if ((long long)w * h > max_pixels) {
        *code = "image_too_large";
        snprintf(msg, msgn, "%s: %dx%d is %lld pixels, more than the limit of %ld", src->what, w, h,
                 (long long)w * h, max_pixels);
        return 413;
    }
    cvy_image img;
    st = cvy_image_decode(src->data, src->size, channels, max_pixels, &img, &err);
    if (st == CVY_ERR_LIMIT) {
        *code = "image_too_large";
        snprintf(msg, msgn, "%s: %.200s", src->what, err.msg);
        return 413;
    }
    if (st != CVY_OK) {
        *code = "corrupt_image";
        snprintf(msg, msgn, "%s: cannot decode: %.200s", src->what, err.msg);
        return 400;
    }
    st = cvy_image_preprocess(m, &img, out, &err);
    cvy_image_release(&img);
    if (st != CVY_OK) {
        *code = "bad_image";
        snprintf(msg, msgn, "%s: cannot preprocess: %.200s", src->what, err.msg);
        return 400;
    }
    return 0;
}
