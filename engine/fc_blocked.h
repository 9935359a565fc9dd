/* fc_blocked.h - the block schedule of the fully connected kernels, shared by the ISA files:
 * each includes this after defining, for its vector width,
 *   static void dot4x4(const float *x, int k, const float *w, float out[4][4]);
 *   static void dot1x4(const float *x, int k, const float *w, float out[1][4]);
 *   static void dot1x1(const float *x, int k, const float *w, float out[1][1]);
 * (dot products of 4 or 1 image rows with 4 or 1 weight rows, every element summed the same
 * way whatever the block) and gets fc_blocked, the cvy_kernels.fc entry. */
#ifndef CVY_FC_BLOCKED_H
#define CVY_FC_BLOCKED_H

/* Outputs outer, images inner: each block of 4 weight rows is read from memory once and
 * reused for every image while it sits in cache. */
static void fc_blocked(const float *x, int n, int k, const float *w, int o0, int o1,
                       const float *bias, float *y, size_t ldy, const act_params *act)
{
    int o = o0;
    for (; o + 4 <= o1; o += 4) {
        const float *wo = w + (size_t)o * k;
        int i = 0;
        for (; i + 4 <= n; i += 4) {
            float r[4][4];
            dot4x4(x + (size_t)i * k, k, wo, r);
            for (int a = 0; a < 4; a++)
                for (int b = 0; b < 4; b++)
                    y[(size_t)(i + a) * ldy + o + b] = cvy_act1(r[a][b] + bias[o + b], act);
        }
        for (; i < n; i++) {
            float r[1][4];
            dot1x4(x + (size_t)i * k, k, wo, r);
            for (int b = 0; b < 4; b++)
                y[(size_t)i * ldy + o + b] = cvy_act1(r[0][b] + bias[o + b], act);
        }
    }
    for (; o < o1; o++)
        for (int i = 0; i < n; i++) {
            float r[1][1];
            dot1x1(x + (size_t)i * k, k, w + (size_t)o * k, r);
            y[(size_t)i * ldy + o] = cvy_act1(r[0][0] + bias[o], act);
        }
}

#endif
