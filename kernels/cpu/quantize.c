/* quantize.c - reference quantizers (see quantize.h for the method per type). */
#include "quantize.h"

#include <math.h>
#include <string.h>

#include "common/error.h"
#include "kernels/quant.h"

/* Below this a group is treated as all zero. */
#define GROUP_EPS 1e-15f

/* round(v) clamped to [lo, hi]; clamping first keeps huge values defined. */
static int qround(float v, int lo, int hi)
{
    if (!(v > (float)lo)) /* also catches NaN, which callers never pass */
        return lo;
    if (v > (float)hi)
        return hi;
    return (int)lrintf(v); /* round half to even, like ggml's nearest_int */
}

/* ---- Q8_0 -------------------------------------------------------------------- */

static void quant_q8_0(const float *x, block_q8_0 *y, int64_t nb)
{
    for (int64_t i = 0; i < nb; i++, x += QK8_0) {
        float amax = 0.0f;
        for (int j = 0; j < QK8_0; j++)
            amax = fmaxf(amax, fabsf(x[j]));
        const float d = amax / 127.0f;
        const float id = d != 0.0f ? 1.0f / d : 0.0f;
        y[i].d = greta_f32_to_fp16(d);
        for (int j = 0; j < QK8_0; j++)
            y[i].qs[j] = (int8_t)qround(x[j] * id, -127, 127);
    }
}

/* ---- Q4_0 -------------------------------------------------------------------- */

/* Codes of x for the stored scale df (nearest, clamped to -8..7) and the
 * squared error of the decoded values, decoded as greta_dequant_block_q4_0 does. */
static float q4_0_codes(const float *x, float df, int8_t *l)
{
    const float id = 1.0f / df;
    float err = 0.0f;
    for (int j = 0; j < QK4_0; j++) {
        l[j] = (int8_t)qround(x[j] * id, -8, 7);
        const float e = x[j] - (float)l[j] * df;
        err += e * e;
    }
    return err;
}

static void quant_q4_0(const float *x, block_q4_0 *y, int64_t nb)
{
    for (int64_t i = 0; i < nb; i++, x += QK4_0) {
        float amax = 0.0f, max = 0.0f;
        for (int j = 0; j < QK4_0; j++) {
            if (fabsf(x[j]) > amax) {
                amax = fabsf(x[j]);
                max = x[j];
            }
        }
        int8_t best_l[QK4_0] = {0}, l[QK4_0];
        greta_fp16 best_d = 0;
        if (amax >= GROUP_EPS) {
            float best_err = INFINITY;
            /* Candidate inverse scales: the extreme value on code -8 (the
             * plain rule, c = 0) or +7, stretched by up to +-1 code. Each is
             * refitted by least squares and judged with its fp16 scale. */
            for (int side = 0; side < 2; side++) {
                for (int c = -10; c <= 10; c++) {
                    const float top = side == 0 ? -(8.0f + 0.1f * (float)c) : 7.0f + 0.1f * (float)c;
                    const float iscale = top / max;
                    float slx = 0.0f, sll = 0.0f;
                    for (int j = 0; j < QK4_0; j++) {
                        const int q = qround(x[j] * iscale, -8, 7);
                        slx += x[j] * (float)q;
                        sll += (float)(q * q);
                    }
                    float dc[2] = {1.0f / iscale, sll > 0.0f ? slx / sll : 0.0f};
                    for (int k = 0; k < 2; k++) {
                        const greta_fp16 h = greta_f32_to_fp16(dc[k]);
                        const float df = greta_fp16_to_f32(h);
                        if (!(fabsf(df) > 0.0f) || isinf(df))
                            continue;
                        const float err = q4_0_codes(x, df, l);
                        if (err < best_err) {
                            best_err = err;
                            best_d = h;
                            memcpy(best_l, l, sizeof l);
                        }
                    }
                }
            }
        }
        y[i].d = best_d;
        for (int j = 0; j < QK4_0 / 2; j++)
            y[i].qs[j] = (uint8_t)((best_l[j] + 8) | ((best_l[j + QK4_0 / 2] + 8) << 4));
    }
}

/* ---- K-quants: scale/min fit ---------------------------------------------------- */

/* Fits x[i] ~ scale * L[i] - mn with L in 0..nmax and mn >= 0, minimizing the
 * weighted squared error. Starts from the min..max grid, then tries inverse
 * scales (nmax + rmin + rdelta*k) / (max - min), k = 0..nstep: each gives codes,
 * for which (scale, min) are solved in closed form; the lowest error wins.
 * Returns the scale and stores mn (the amount subtracted) in *out_min. */
static float fit_scale_min(int n, int nmax, const float *x, const float *w, uint8_t *L,
                           float *out_min, float rmin, float rdelta, int nstep)
{
    float lo = x[0], hi = x[0], sw = 0.0f, swx = 0.0f;
    for (int i = 0; i < n; i++) {
        lo = fminf(lo, x[i]);
        hi = fmaxf(hi, x[i]);
        sw += w[i];
        swx += w[i] * x[i];
    }
    if (lo > 0.0f)
        lo = 0.0f; /* the offset only ever subtracts */
    if (hi == lo) {
        memset(L, 0, (size_t)n);
        *out_min = -lo;
        return 0.0f;
    }
    float iscale = (float)nmax / (hi - lo);
    float scale = 1.0f / iscale, min = lo;
    float best = 0.0f;
    for (int i = 0; i < n; i++) {
        L[i] = (uint8_t)qround(iscale * (x[i] - lo), 0, nmax);
        const float e = scale * (float)L[i] + min - x[i];
        best += w[i] * e * e;
    }
    uint8_t cand[32];
    for (int k = 0; k <= nstep; k++) {
        iscale = (rmin + rdelta * (float)k + (float)nmax) / (hi - lo);
        float sl = 0.0f, sll = 0.0f, sxl = 0.0f;
        for (int i = 0; i < n; i++) {
            const int q = qround(iscale * (x[i] - lo), 0, nmax);
            cand[i] = (uint8_t)q;
            sl += w[i] * (float)q;
            sll += w[i] * (float)(q * q);
            sxl += w[i] * (float)q * x[i];
        }
        const float det = sw * sll - sl * sl;
        if (!(det > 0.0f))
            continue;
        float s = (sw * sxl - swx * sl) / det;
        float m = (sll * swx - sl * sxl) / det;
        if (m > 0.0f) { /* a positive offset cannot be stored: refit the scale alone */
            m = 0.0f;
            s = sxl / sll;
        }
        float err = 0.0f;
        for (int i = 0; i < n; i++) {
            const float e = s * (float)cand[i] + m - x[i];
            err += w[i] * e * e;
        }
        if (err < best) {
            best = err;
            scale = s;
            min = m;
            memcpy(L, cand, (size_t)n);
        }
    }
    *out_min = -min;
    return scale;
}

void greta_pack_k_scales(const uint8_t ls[8], const uint8_t lm[8], uint8_t out[K_SCALE_SIZE])
{
    for (int j = 0; j < 4; j++) {
        out[j] = (uint8_t)((ls[j] & 63) | ((ls[j + 4] >> 4) << 6));
        out[j + 4] = (uint8_t)((lm[j] & 63) | ((lm[j + 4] >> 4) << 6));
        out[j + 8] = (uint8_t)((ls[j + 4] & 15) | ((lm[j + 4] & 15) << 4));
    }
}

void greta_pack_q4_K_codes(const uint8_t L[QK_K], uint8_t qs[QK_K / 2])
{
    for (int c = 0; c < 4; c++)
        for (int l = 0; l < 32; l++)
            qs[32 * c + l] = (uint8_t)((L[64 * c + l] & 15) | ((L[64 * c + 32 + l] & 15) << 4));
}

void greta_pack_q5_K_codes(const uint8_t L[QK_K], uint8_t qh[QK_K / 8], uint8_t qs[QK_K / 2])
{
    memset(qh, 0, QK_K / 8);
    for (int c = 0; c < 4; c++) {
        for (int l = 0; l < 32; l++) {
            const int lo = L[64 * c + l], hi = L[64 * c + 32 + l];
            qh[l] |= (uint8_t)(((lo >> 4) & 1) << (2 * c));
            qh[l] |= (uint8_t)(((hi >> 4) & 1) << (2 * c + 1));
            qs[32 * c + l] = (uint8_t)((lo & 15) | ((hi & 15) << 4));
        }
    }
}

void greta_pack_q6_K_codes(const uint8_t L[QK_K], uint8_t ql[QK_K / 2], uint8_t qh[QK_K / 4])
{
    for (int h = 0; h < 2; h++) {
        const uint8_t *Lh = L + 128 * h;
        uint8_t *qlh = ql + 64 * h, *qhh = qh + 32 * h;
        for (int l = 0; l < 32; l++) {
            qlh[l] = (uint8_t)((Lh[l] & 15) | ((Lh[l + 64] & 15) << 4));
            qlh[l + 32] = (uint8_t)((Lh[l + 32] & 15) | ((Lh[l + 96] & 15) << 4));
            qhh[l] = (uint8_t)(((Lh[l] >> 4) & 3) | (((Lh[l + 32] >> 4) & 3) << 2) |
                               (((Lh[l + 64] >> 4) & 3) << 4) | (((Lh[l + 96] >> 4) & 3) << 6));
        }
    }
}

/* Quantizes n non-negative values x (the sub-block scales or mins) to codes
 * 0..nmax times one scale, minimizing the w-weighted squared error: the best
 * of nine inverse scales (nmax + 0.1k) / max, its least-squares scale, then
 * up to five passes that move single codes while that lowers the error
 * (maximizing (sum w x L)^2 / sum w L^2). Returns the scale. */
static float fit_superscale(int n, int nmax, const float *x, const float *w, uint8_t *L)
{
    float max = 0.0f;
    for (int i = 0; i < n; i++)
        max = fmaxf(max, x[i]);
    if (max < GROUP_EPS) {
        memset(L, 0, (size_t)n);
        return 0.0f;
    }
    float iscale = (float)nmax / max, best = 0.0f;
    for (int i = 0; i < n; i++) {
        const float e = x[i] - (float)qround(iscale * x[i], 0, nmax) / iscale;
        best += w[i] * e * e;
    }
    for (int k = -4; k <= 4; k++) {
        if (k == 0)
            continue;
        const float is = (0.1f * (float)k + (float)nmax) / max;
        float err = 0.0f;
        for (int i = 0; i < n; i++) {
            const float e = x[i] - (float)qround(is * x[i], 0, nmax) / is;
            err += w[i] * e * e;
        }
        if (err < best) {
            best = err;
            iscale = is;
        }
    }
    float slx = 0.0f, sll = 0.0f;
    for (int i = 0; i < n; i++) {
        L[i] = (uint8_t)qround(iscale * x[i], 0, nmax);
        slx += w[i] * x[i] * (float)L[i];
        sll += w[i] * (float)(L[i] * L[i]);
    }
    for (int pass = 0; pass < 5; pass++) {
        int changed = 0;
        for (int i = 0; i < n; i++) {
            const float a = slx - w[i] * x[i] * (float)L[i];
            const float b = sll - w[i] * (float)(L[i] * L[i]);
            if (!(a > 0.0f && b > 0.0f))
                continue;
            const int q = qround(x[i] * b / a, 0, nmax);
            if (q == L[i])
                continue;
            const float a2 = a + w[i] * x[i] * (float)q, b2 = b + w[i] * (float)(q * q);
            if (a2 * a2 * sll > slx * slx * b2) {
                L[i] = (uint8_t)q;
                slx = a2;
                sll = b2;
                changed++;
            }
        }
        if (!changed)
            break;
    }
    return sll > 0.0f ? slx / sll : 0.0f;
}

/* Shared by Q4_K and Q5_K: fits the eight sub-blocks of one super-block
 * (weights av + |x_i|, av = sqrt(2 mean(x^2)) over the super-block; 81
 * candidate inverse scales (nmax - 2 + 0.05k) / range), fits
 * the 6-bit scale and min codes with the sub-blocks' total weights, stores
 * d, dmin and the packed scales, and writes the final codes into L (0..nmax)
 * recomputed with the stored scales. */
static void k_superblock(const float *x, int nmax, greta_fp16 *d_out, greta_fp16 *dmin_out,
                         uint8_t scales_out[K_SCALE_SIZE], uint8_t L[QK_K])
{
    float w[32], sc[8], mn[8], sw[8];
    float s2 = 0.0f;
    for (int l = 0; l < QK_K; l++)
        s2 += x[l] * x[l];
    const float av = sqrtf(2.0f * s2 / (float)QK_K);
    for (int j = 0; j < 8; j++) {
        const float *xs = x + 32 * j;
        sw[j] = 0.0f;
        for (int l = 0; l < 32; l++) {
            w[l] = av + fabsf(xs[l]);
            sw[j] += w[l];
        }
        sc[j] = fit_scale_min(32, nmax, xs, w, L + 32 * j, &mn[j], -2.0f, 0.05f, 80);
    }
    uint8_t ls[8], lm[8];
    const float d = fit_superscale(8, 63, sc, sw, ls);
    const float dmin = fit_superscale(8, 63, mn, sw, lm);
    greta_pack_k_scales(ls, lm, scales_out);
    *d_out = greta_f32_to_fp16(d);
    *dmin_out = greta_f32_to_fp16(dmin);
    const float df = greta_fp16_to_f32(*d_out);
    const float dminf = greta_fp16_to_f32(*dmin_out);
    for (int j = 0; j < 8; j++) {
        const float ds = df * (float)ls[j];
        if (ds == 0.0f)
            continue; /* keep the fit's codes; they decode to -dm anyway */
        const float dm = dminf * (float)lm[j];
        for (int l = 0; l < 32; l++)
            L[32 * j + l] = (uint8_t)qround((x[32 * j + l] + dm) / ds, 0, nmax);
    }
}

static void quant_q4_K(const float *x, block_q4_K *y, int64_t nb)
{
    uint8_t L[QK_K];
    for (int64_t i = 0; i < nb; i++, x += QK_K) {
        k_superblock(x, 15, &y[i].d, &y[i].dmin, y[i].scales, L);
        greta_pack_q4_K_codes(L, y[i].qs);
    }
}

static void quant_q5_K(const float *x, block_q5_K *y, int64_t nb)
{
    uint8_t L[QK_K];
    for (int64_t i = 0; i < nb; i++, x += QK_K) {
        k_superblock(x, 31, &y[i].d, &y[i].dmin, y[i].scales, L);
        greta_pack_q5_K_codes(L, y[i].qh, y[i].qs);
    }
}

/* ---- Q6_K -------------------------------------------------------------------- */

/* Symmetric fit x ~ scale * q, q in -nmax..nmax-1, weights x^2: candidate
 * inverse scales -(nmax + 0.05k)/max for k = -36..36, each with its least-squares
 * scale; maximizing (sum w x q)^2 / (sum w q^2) minimizes the error. */
static float fit_scale_sym(int n, int nmax, const float *x, int8_t *q)
{
    float amax = 0.0f, max = 0.0f;
    for (int i = 0; i < n; i++) {
        if (fabsf(x[i]) > amax) {
            amax = fabsf(x[i]);
            max = x[i];
        }
    }
    if (amax < GROUP_EPS) {
        memset(q, 0, (size_t)n);
        return 0.0f;
    }
    float scale = 0.0f, best = -1.0f;
    for (int k = -36; k <= 36; k++) {
        const float iscale = -((float)nmax + 0.05f * (float)k) / max;
        float sxq = 0.0f, sqq = 0.0f;
        for (int i = 0; i < n; i++) {
            const int l = qround(iscale * x[i], -nmax, nmax - 1);
            const float wi = x[i] * x[i];
            sxq += wi * x[i] * (float)l;
            sqq += wi * (float)(l * l);
        }
        if (sqq > 0.0f && (best < 0.0f || sxq * sxq > best * sqq)) {
            scale = sxq / sqq;
            best = scale * sxq;
            for (int i = 0; i < n; i++)
                q[i] = (int8_t)qround(iscale * x[i], -nmax, nmax - 1);
        }
    }
    return scale;
}

static void quant_q6_K(const float *x, block_q6_K *y, int64_t nb)
{
    int8_t q[QK_K];
    uint8_t L[QK_K];
    for (int64_t i = 0; i < nb; i++, x += QK_K) {
        float sc[16], max_sc = 0.0f, amax_sc = 0.0f;
        for (int j = 0; j < 16; j++) {
            sc[j] = fit_scale_sym(16, 32, x + 16 * j, q + 16 * j);
            if (fabsf(sc[j]) > amax_sc) {
                amax_sc = fabsf(sc[j]);
                max_sc = sc[j];
            }
        }
        memset(&y[i], 0, sizeof y[i]);
        if (amax_sc < GROUP_EPS) {
            /* all zero: codes 32 decode to 0 with d = 0 */
            memset(L, 32, sizeof L);
        } else {
            const float iscale = -128.0f / max_sc;
            y[i].d = greta_f32_to_fp16(1.0f / iscale);
            const float d = greta_fp16_to_f32(y[i].d);
            for (int j = 0; j < 16; j++)
                y[i].scales[j] = (int8_t)qround(iscale * sc[j], -128, 127);
            for (int j = 0; j < 16; j++) {
                const float ds = d * (float)y[i].scales[j];
                for (int l = 0; l < 16; l++) {
                    const int v = ds != 0.0f ? qround(x[16 * j + l] / ds, -32, 31) : 0;
                    L[16 * j + l] = (uint8_t)(v + 32);
                }
            }
        }
        greta_pack_q6_K_codes(L, y[i].ql, y[i].qh);
    }
}

/* ---- entry point --------------------------------------------------------------- */

bool greta_quantize_supported(uint32_t type)
{
    switch (type) {
    case GGML_TYPE_F32: case GGML_TYPE_F16: case GGML_TYPE_BF16: case GGML_TYPE_Q8_0:
    case GGML_TYPE_Q4_0: case GGML_TYPE_Q4_K: case GGML_TYPE_Q5_K: case GGML_TYPE_Q6_K:
        return true;
    default:
        return false;
    }
}

int greta_quantize_row(uint32_t type, const float *x, void *out, int64_t n)
{
    if (!greta_quantize_supported(type))
        return GRETA_ERR_UNSUPPORTED;
    const int64_t be = ggml_type_block_elems(type);
    if (n <= 0 || n % be != 0)
        return GRETA_ERR_INVALID;
    if (be > 1)
        for (int64_t i = 0; i < n; i++)
            if (!isfinite(x[i]))
                return GRETA_ERR_INVALID;
    uint8_t *p = out;
    switch (type) {
    case GGML_TYPE_F32:
        memcpy(out, x, (size_t)n * sizeof(float));
        break;
    case GGML_TYPE_F16:
        for (int64_t i = 0; i < n; i++) {
            const greta_fp16 h = greta_f32_to_fp16(x[i]);
            memcpy(p + 2 * i, &h, 2);
        }
        break;
    case GGML_TYPE_BF16:
        for (int64_t i = 0; i < n; i++) {
            const greta_bf16 h = greta_f32_to_bf16(x[i]);
            memcpy(p + 2 * i, &h, 2);
        }
        break;
    case GGML_TYPE_Q8_0: quant_q8_0(x, out, n / be); break;
    case GGML_TYPE_Q4_0: quant_q4_0(x, out, n / be); break;
    case GGML_TYPE_Q4_K: quant_q4_K(x, out, n / be); break;
    case GGML_TYPE_Q5_K: quant_q5_K(x, out, n / be); break;
    case GGML_TYPE_Q6_K: quant_q6_K(x, out, n / be); break;
    default: return GRETA_ERR_UNSUPPORTED;
    }
    return 0;
}
