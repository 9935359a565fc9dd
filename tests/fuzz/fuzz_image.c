/* fuzz_image.c - libFuzzer harness for the image path convoyd uses: header probe, decode with
 * the pixel limit checked from the header first, then preprocessing to a gray 28x28 stretch
 * and an RGB 32x32 shorter-side crop. Errors are fine; crashes, leaks and bad reads are not. */
#include <stdint.h>
#include <stdlib.h>

#include "convoy.h"
#include "image.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const cvy_preproc specs[2] = {
        {.width = 28,
         .height = 28,
         .color = CVY_COLOR_GRAY,
         .resize = CVY_RESIZE_STRETCH,
         .scale = 1.0f / 255,
         .mean = {0.5f},
         .std = {0.25f, 1, 1}},
        {.width = 32,
         .height = 32,
         .color = CVY_COLOR_BGR,
         .resize = CVY_RESIZE_SHORTER_CROP,
         .resize_shorter = 36,
         .scale = 1.0f / 255,
         .mean = {0.4f, 0.4f, 0.4f},
         .std = {0.2f, 0.2f, 0.2f}},
    };
    static float out[3 * 32 * 32];
    int w, h, ch;
    cvy_error err;
    if (cvy_image_probe(data, size, &w, &h, &ch, &err) != CVY_OK) return 0;
    for (int s = 0; s < 2; s++) {
        cvy_image img;
        if (cvy_image_decode(data, size, s == 0 ? 1 : 3, 1L << 22, &img, &err) != CVY_OK) continue;
        (void)cvy_image_preprocess_spec(&specs[s], &img, out, &err);
        cvy_image_release(&img);
    }
    return 0;
}
