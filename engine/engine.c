/* engine.c - CPU detection, kernel dispatch and the engine handle. */
#include "engine.h"

#include <cblas.h>
#include <cpuid.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "util.h"

/* OpenBLAS runs single-threaded inside our pool (no oversubscription). */
extern void openblas_set_num_threads(int);

static uint64_t xgetbv0(void)
{
    uint32_t lo, hi;
    __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    return (uint64_t)hi << 32 | lo;
}

int cvy_cpu_has(cvy_isa isa)
{
    unsigned a, b, c, d;
    if (isa == CVY_ISA_REF || isa == CVY_ISA_AUTO) return 1;
    if (!__get_cpuid(1, &a, &b, &c, &d)) return 0;
    int osxsave = (c >> 27) & 1, fma = (c >> 12) & 1, avx = (c >> 28) & 1;
    if (!osxsave || !avx || !fma) return 0;
    uint64_t xcr0 = xgetbv0();
    if ((xcr0 & 6) != 6) return 0; /* XMM and YMM state saved by the OS */
    if (!__get_cpuid_count(7, 0, &a, &b, &c, &d)) return 0;
    int avx2 = (b >> 5) & 1, avx512f = (b >> 16) & 1;
    if (isa == CVY_ISA_AVX2) return avx2;
    return avx2 && avx512f && (xcr0 & 0xe0) == 0xe0; /* opmask, ZMM hi256, hi16 ZMM */
}

cvy_engine_params cvy_engine_default_params(void)
{
    const char *w = getenv("CONVOY_WINOGRAD");
    return (cvy_engine_params){
        .threads = 0, .isa = CVY_ISA_AUTO, .winograd = !(w && strcmp(w, "0") == 0)};
}

/* The ISA asked for, capped by CONVOY_ISA and by the CPU. */
static cvy_isa pick_isa(cvy_isa want)
{
    const char *env = getenv("CONVOY_ISA");
    cvy_isa cap = CVY_ISA_AVX512;
    if (env && strcmp(env, "ref") == 0)
        cap = CVY_ISA_REF;
    else if (env && strcmp(env, "avx2") == 0)
        cap = CVY_ISA_AVX2;
    cvy_isa isa = want == CVY_ISA_AUTO ? CVY_ISA_AVX512 : want;
    if (isa > cap) isa = cap;
    while (isa > CVY_ISA_REF && !cvy_cpu_has(isa)) isa--;
    return isa;
}

cvy_status cvy_engine_create(const cvy_engine_params *p, cvy_engine **out, cvy_error *err)
{
    cvy_engine_params d = cvy_engine_default_params();
    if (!p) p = &d;
    if (!out) return cvy_fail(err, CVY_ERR_ARG, "engine: out is NULL");
    *out = NULL;
    if (p->threads < 0 || p->threads > 1024)
        return cvy_fail(err, CVY_ERR_ARG, "engine: threads %d out of range 0..1024", p->threads);
    if (p->isa < CVY_ISA_AUTO || p->isa > CVY_ISA_AVX512)
        return cvy_fail(err, CVY_ERR_ARG, "engine: unknown isa %d", (int)p->isa);
    cvy_engine *e = calloc(1, sizeof *e);
    if (!e) return cvy_fail(err, CVY_ERR_NOMEM, "engine: out of memory");
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    e->threads = p->threads > 0 ? p->threads : (cores > 0 ? (int)cores : 1);
    e->isa = pick_isa(p->isa);
    e->winograd = p->winograd != 0;
    e->kern = e->isa == CVY_ISA_AVX512 ? cvy_kernels_avx512()
              : e->isa == CVY_ISA_AVX2 ? cvy_kernels_avx2()
                                       : cvy_kernels_ref();
    e->pool = cvy_pool_create(e->threads);
    if (!e->pool) {
        free(e);
        return cvy_fail(err, CVY_ERR_NOMEM, "engine: cannot start %d threads", p->threads);
    }
    openblas_set_num_threads(1);
    *out = e;
    return CVY_OK;
}

void cvy_engine_destroy(cvy_engine *e)
{
    if (!e) return;
    cvy_pool_destroy(e->pool);
    free(e);
}

int cvy_engine_threads(const cvy_engine *e) { return e->threads; }

const char *cvy_engine_isa(const cvy_engine *e)
{
    return e->isa == CVY_ISA_AVX512 ? "avx512" : e->isa == CVY_ISA_AVX2 ? "avx2" : "ref";
}
