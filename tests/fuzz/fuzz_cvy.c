/* fuzz_cvy.c - libFuzzer harness for the model loader: any bytes go to cvy_model_load_memory;
 * a model that loads is self-tested and run once on a zero batch, as convoyd would. The
 * harness must never crash, leak or read out of bounds; errors are fine. */
#include <stdint.h>
#include <stdlib.h>

#include "convoy.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static cvy_engine *eng;
    if (!eng) {
        cvy_engine_params p = cvy_engine_default_params();
        p.threads = 1;
        if (cvy_engine_create(&p, &eng, NULL) != CVY_OK) abort();
    }
    cvy_model *m = NULL;
    cvy_error err;
    if (cvy_model_load_memory(eng, data, size, &m, &err) != CVY_OK) return 0;
    int n = 0;
    (void)cvy_model_self_test(m, &n, &err);
    cvy_context *c = NULL;
    /* skip runs of models too big to be interesting (the limit is the loader's business) */
    if (cvy_model_input_size(m) < (1u << 20) && cvy_context_create(m, 2, &c, &err) == CVY_OK) {
        float *out = calloc(2 * cvy_model_output_size(m) + 1, sizeof(float));
        if (out) (void)cvy_context_run(c, 2, NULL, out, &err);
        free(out);
        cvy_context_destroy(c);
    }
    cvy_model_free(m);
    return 0;
}
