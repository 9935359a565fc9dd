/* winograd.c - the F(4x4, 3x3) transforms (Lavin and Gray's points 0, +-1, +-2, inf). */
#include "winograd.h"

#include "kernels.h"

/* o = G g for a column of 3 (G is 6x3). */
static void g_col(const double g[3], double o[6])
{
    o[0] = g[0] / 4.0;
    o[1] = -(g[0] + g[1] + g[2]) / 6.0;
    o[2] = -(g[0] - g[1] + g[2]) / 6.0;
    o[3] = g[0] / 24.0 + g[1] / 12.0 + g[2] / 6.0;
    o[4] = g[0] / 24.0 - g[1] / 12.0 + g[2] / 6.0;
    o[5] = g[2];
}

void wino_kernel(const float *g, double u[WINO_POS])
{
    double t[6][3]; /* G g: 6 x 3 */
    for (int c = 0; c < 3; c++) {
        double col[3] = {g[c], g[3 + c], g[6 + c]}, o[6];
        g_col(col, o);
        for (int r = 0; r < 6; r++) t[r][c] = o[r];
    }
    for (int r = 0; r < 6; r++) /* (G g) G^T: G applied to each row */
        g_col(t[r], &u[r * 6]);
}

/* o = B^T d for 6 values. */
static inline void bt(const float d[6], float o[6])
{
    o[0] = 4.0f * d[0] - 5.0f * d[2] + d[4];
    o[1] = -4.0f * d[1] - 4.0f * d[2] + d[3] + d[4];
    o[2] = 4.0f * d[1] - 4.0f * d[2] - d[3] + d[4];
    o[3] = -2.0f * d[1] - d[2] + 2.0f * d[3] + d[4];
    o[4] = 2.0f * d[1] - d[2] - 2.0f * d[3] + d[4];
    o[5] = 4.0f * d[1] - 5.0f * d[3] + d[5];
}

void wino_input(const float *x, int h, int w, int y0, int x0, float *v, size_t vstride)
{
    float d[6][6], t[6][6];
    for (int r = 0; r < 6; r++) {
        int iy = y0 + r;
        for (int c = 0; c < 6; c++) {
            int ix = x0 + c;
            d[r][c] = (iy >= 0 && iy < h && ix >= 0 && ix < w) ? x[(size_t)iy * w + ix] : 0.0f;
        }
    }
    for (int c = 0; c < 6; c++) { /* columns: t = B^T d */
        float col[6] = {d[0][c], d[1][c], d[2][c], d[3][c], d[4][c], d[5][c]}, o[6];
        bt(col, o);
        for (int r = 0; r < 6; r++) t[r][c] = o[r];
    }
    for (int r = 0; r < 6; r++) { /* rows: (B^T d) B */
        float o[6];
        bt(t[r], o);
        for (int c = 0; c < 6; c++) v[(size_t)(r * 6 + c) * vstride] = o[c];
    }
}

void wino_input_tiles(const float *x, int cin, int h, int w, int pt, int pl, int tw, int t0, int t1,
                      float *v, size_t ldv, size_t vps)
{
    for (int ic = 0; ic < cin; ic++)
        for (int t = t0; t < t1; t++)
            wino_input(x + (size_t)ic * h * w, h, w, t / tw * 4 - pt, t % tw * 4 - pl,
                       v + (size_t)ic * ldv + (t - t0), vps);
}

/* o = A^T m for 6 values (A^T is 4x6). */
static inline void at(const float m[6], float o[4])
{
    float a = m[1] + m[2], b = m[1] - m[2], c = m[3] + m[4], d = m[3] - m[4];
    o[0] = m[0] + a + c;
    o[1] = b + 2.0f * d;
    o[2] = a + 4.0f * c;
    o[3] = b + 8.0f * d + m[5];
}

void wino_output(const float *m, size_t mstride, float y[WINO_TILE][WINO_TILE])
{
    float t[4][6];
    for (int c = 0; c < 6; c++) {
        float col[6], o[4];
        for (int r = 0; r < 6; r++) col[r] = m[(size_t)(r * 6 + c) * mstride];
        at(col, o);
        for (int r = 0; r < 4; r++) t[r][c] = o[r];
    }
    for (int r = 0; r < 4; r++) at(t[r], y[r]);
}

void wino_output_tiles(const float *m, size_t mps, size_t ldm, int o0, int o1, int t0, int t1,
                       int tw, int h_out, int w_out, const float *bias, const float *res, float *y,
                       const act_params *act)
{
    size_t cols = (size_t)h_out * w_out;
    for (int oc = o0; oc < o1; oc++)
        for (int t = t0; t < t1; t++) {
            float out[WINO_TILE][WINO_TILE];
            wino_output(m + (size_t)(oc - o0) * ldm + (t - t0), mps, out);
            int oy0 = t / tw * 4, ox0 = t % tw * 4;
            for (int a = 0; a < 4 && oy0 + a < h_out; a++)
                for (int b = 0; b < 4 && ox0 + b < w_out; b++) {
                    size_t o = (size_t)oc * cols + (size_t)(oy0 + a) * w_out + ox0 + b;
                    float val = out[a][b] + bias[oc];
                    if (res) val += res[o];
                    y[o] = cvy_act1(val, act);
                }
        }
}
