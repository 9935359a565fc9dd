/* fuzz_onnx.c - libFuzzer harness for the ONNX importer: any bytes go to onnx_import (the
 * in-memory core of cvy_onnx_convert), first with dim 0 as the batch, then, if that fails,
 * with an implicit batch as the backend node tests need. A model that converts is serialized,
 * loaded, self-tested and run once on a zero batch, as `convoy convert` + convoyd would.
 * External data is looked up in a directory that does not exist: the harness reads no files.
 * Errors are fine; crashes, leaks and bad reads are not. */
#include <stdint.h>
#include <stdlib.h>

#include "convoy.h"
#include "format.h"
#include "onnx_import.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Loads the converted model and runs it once, unless it is too big to be interesting. */
static void load_and_run(cvy_engine *eng, const fmt_model *fm)
{
    uint8_t *buf = NULL;
    size_t n = 0;
    cvy_error err;
    if (fmt_serialize(fm, &buf, &n, &err) != CVY_OK) return;
    cvy_model *m = NULL;
    if (cvy_model_load_memory(eng, buf, n, &m, &err) == CVY_OK) {
        int ok = 0;
        (void)cvy_model_self_test(m, &ok, &err);
        cvy_context *c = NULL;
        if (cvy_model_input_size(m) < (1u << 20) && cvy_context_create(m, 1, &c, &err) == CVY_OK) {
            float *out = calloc(cvy_model_output_size(m) + 1, sizeof(float));
            if (out) (void)cvy_context_run(c, 1, NULL, out, &err);
            free(out);
            cvy_context_destroy(c);
        }
        cvy_model_free(m);
    }
    free(buf);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static cvy_engine *eng;
    if (!eng) {
        cvy_engine_params p = cvy_engine_default_params();
        p.threads = 1;
        if (cvy_engine_create(&p, &eng, NULL) != CVY_OK) abort();
    }
    for (int unit = 0; unit < 2; unit++) {
        onnx_import_opts o = {.dir = "/nonexistent/convoy-fuzz", .unit_batch = unit};
        fmt_model fm;
        cvy_error err;
        if (onnx_import(data, size, &o, &fm, &err) != CVY_OK) continue;
        load_and_run(eng, &fm);
        fmt_model_clear(&fm);
        break;
    }
    return 0;
}
