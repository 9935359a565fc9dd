/* gemm_bench.c - GFLOP/s of the engine's own GEMMs on one core, on convolution-shaped
 * problems, with the weights in cache ("hot") and after a 64 MB sweep has evicted them
 * ("cold", as in a network where each layer's weights come from L3 or memory), next to an
 * FMA-only loop's rate (the core's peak). `make bench-gemm`; a benchmark, not a test. */
#include <immintrin.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "engine.h"
#include "kernels.h"
#include "util.h"

static double now_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

/* 24 independent FMA chains, as many as the micro-kernels keep: the core's FMA rate. */
__attribute__((target("avx512f"))) static double peak_gflops(void)
{
    __m512 a[24], b = _mm512_set1_ps(0.9999f), c = _mm512_set1_ps(1e-4f);
    for (int i = 0; i < 24; i++) a[i] = _mm512_set1_ps((float)i * 1e-3f);
    long n = 20000000;
    double t0 = now_s();
    for (long i = 0; i < n; i++)
#pragma GCC unroll 24
        for (int j = 0; j < 24; j++) a[j] = _mm512_fmadd_ps(a[j], b, c);
    double dt = now_s() - t0;
    float sink = 0;
    for (int i = 0; i < 24; i++) sink += _mm512_reduce_add_ps(a[i]);
    if (sink == 12345.0f) puts(""); /* keeps the loop */
    return (double)n * 24 * 32 / dt * 1e-9;
}

/* Best time of `reps` calls of g on an m x k by k x n problem; cold sweeps `junk` first. */
static double best_s(const cvy_gemm *g, const float *packed, int m, int k, int n, const float *b,
                     float *c, int cold, char *junk, size_t njunk, int reps)
{
    gemm_b bs = {.b = b, .ldb = (size_t)n};
    act_params none = {ACT_NONE, 0, 0};
    double best = 1e9;
    for (int r = 0; r < reps; r++) {
        if (cold)
            for (size_t i = 0; i < njunk; i += 64) junk[i]++;
        double t0 = now_s();
        g->run(packed, m, k, &bs, 0, n, c, (size_t)n, NULL, NULL, 0, &none);
        double dt = now_s() - t0;
        if (dt < best) best = dt;
    }
    return best;
}

int main(void)
{
    const cvy_kernels *kern = cvy_kernels_avx512();
    if (!kern || !cvy_cpu_has(CVY_ISA_AVX512)) {
        puts("gemm_bench: no AVX-512 on this CPU, nothing to measure");
        return 0;
    }
    /* m (output channels), k (input channels x taps), n (output pixels per call) */
    static const int shapes[][3] = {
        {256, 1024, 196}, /* ResNet-50 layer3 1x1 */
        {64, 256, 512},   /* layer1 1x1, one column chunk */
        {256, 64, 512},   /* layer1 1x1 expand, short k */
        {128, 1152, 400}, /* 3x3 via im2col */
        {256, 256, 32},   /* a Winograd position */
        {512, 4608, 49},  /* layer4 3x3, 7x7 map */
        {512, 2048, 49},  /* layer4 1x1, 7x7 map */
        {320, 960, 49},   /* MobileNetV2 7x7 project 1x1 */
        {64, 800, 224},   /* tutorial CNN conv2, 5x5 over a padded 14x14 map */
        {64, 147, 1440},  /* ResNet stem, 7x7/2 over phase planes, one 12-row chunk */
    };
    size_t njunk = (size_t)64 << 20;
    char *junk = malloc(njunk);
    if (!junk) return 1;
    memset(junk, 1, njunk);
    printf("one core, FMA peak %.1f GFLOP/s\n", peak_gflops());
    printf("%5s %5s %5s  %-15s %8s %8s\n", "m", "k", "n", "gemm", "hot", "cold");
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        int m = shapes[s][0], k = shapes[s][1], n = shapes[s][2];
        /* 64-byte aligned, as the engine's weights and activations are */
        float *a = cvy_alloc_aligned((size_t)m * k * sizeof(float));
        float *b = cvy_alloc_aligned((size_t)k * n * sizeof(float));
        float *c = cvy_alloc_aligned((size_t)m * n * sizeof(float));
        if (!a || !b || !c) return 1;
        for (size_t i = 0; i < (size_t)m * k; i++) a[i] = (float)(i % 97) * 0.01f - 0.5f;
        for (size_t i = 0; i < (size_t)k * n; i++) b[i] = (float)(i % 89) * 0.01f - 0.4f;
        const cvy_gemm *gs[2] = {kern->gemm, kern->gemm_few};
        for (int gi = 0; gi < 2; gi++) {
            const cvy_gemm *g = gs[gi];
            if (!g || (g->max_n && n > g->max_n)) continue;
            float *p = cvy_alloc_aligned(g->packed_size(m, k) * sizeof(float));
            if (!p) return 1;
            g->pack(a, m, k, p);
            double fl = 2.0 * m * k * n;
            double hot = best_s(g, p, m, k, n, b, c, 0, junk, njunk, 20);
            double cold = best_s(g, p, m, k, n, b, c, 1, junk, njunk, 10);
            printf("%5d %5d %5d  %-15s %8.1f %8.1f\n", m, k, n, g->name, fl / hot * 1e-9,
                   fl / cold * 1e-9);
            cvy_free_aligned(p);
        }
        cvy_free_aligned(a), cvy_free_aligned(b), cvy_free_aligned(c);
    }
    free(junk);
    return 0;
}
