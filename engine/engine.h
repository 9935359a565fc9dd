/* engine.h - the internal layout of the public handles, shared by engine.c, model.c and
 * exec.c. Nothing outside engine/ includes this. */
#ifndef CVY_ENGINE_H
#define CVY_ENGINE_H

#include "convoy.h"
#include "format.h"
#include "kernels.h"
#include "plan.h"
#include "pool.h"

struct cvy_engine {
    int threads;
    cvy_isa isa; /* what the kernels use */
    int winograd;
    const cvy_kernels *kern;
    cvy_pool *pool;
};

struct cvy_model {
    cvy_engine *eng;
    plan plan;
    cvy_preproc pre;
    int in_c, in_h, in_w;
    size_t in_size, out_size;
    int output_prob;
    int n_labels;
    char **labels;
    char hash[17];
    size_t file_size;
    /* golden self-test from the file (n_golden = 0: none) */
    int n_golden;
    float golden_rtol, golden_atol;
    float *golden_in, *golden_out;
};

/* CPU features: 1 if the CPU and OS support the ISA's instructions and registers. */
int cvy_cpu_has(cvy_isa isa);

#endif
