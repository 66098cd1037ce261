/* vdot.cuh - dot products of one K-quant weight row with activation rows,
 * in units sized for wide loads (the decode GEMV, matvec.cu).
 *
 * gpu_vdot<TYPE>::UNIT elements form one unit; a lane takes whole units:
 *   Q4_K  32 elements: bytes qs[32c + 16h .. +16] of a block (one 16-byte
 *         load), the low nibbles are elements 64c + 16h + i (sub-block 2c),
 *         the high ones 64c + 32 + 16h + i (sub-block 2c + 1); 8 units per
 *         block, so a warp of 32 reads 4 consecutive blocks per step.
 *   Q5_K  the same, plus qh[16h .. +16] (16 bytes): bit 2c (low nibble) or
 *         2c + 1 (high nibble) adds 16.
 *   Q6_K  64 elements: ql[64h + 16g ..], ql[64h + 32 + 16g ..], qh[32h + 16g ..]
 *         (16 bytes each, read as 2-byte words: 210-byte blocks are only
 *         2-byte aligned); quarter q of the half uses scale 8h + g + 2q.
 * The scale/min pairs come from greta_k_scale_min (kernels/quant.h). A unit
 * adds, per activation row, d1 * sum(q * x) - m1 * sum(x) per sub-block:
 * the same value as the dot product of the decoded weights, summed in
 * another order (fp32 throughout).
 */
#ifndef GRETA_GPU_VDOT_CUH
#define GRETA_GPU_VDOT_CUH

#include "gpu_port.h"
#include "kernels/quant.h"

/* sum(q[i] * x[i]) and sum(x[i]) over 16 nibbles (shift 0 or 4) of 16 bytes. */
__device__ inline void vdot_nib16(const uint32_t w[4], int shift, const float *x, float &sqx, float &sx)
{
    const float4 *x4 = (const float4 *)x;
#pragma unroll
    for (int j = 0; j < 4; j++) {
        const float4 xv = x4[j];
        const uint32_t b = w[j] >> shift;
        sqx += (float)(b & 15) * xv.x + (float)((b >> 8) & 15) * xv.y + (float)((b >> 16) & 15) * xv.z +
               (float)((b >> 24) & 15) * xv.w;
        sx += (xv.x + xv.y) + (xv.z + xv.w);
    }
}

/* The scale/min pairs of sub-blocks 2c and 2c + 1 (greta_k_scale_min), with
 * c a run-time value: one branch per c keeps every index into the 12 scale
 * bytes a constant, so they stay in registers. */
template <int C>
__device__ inline void kscales_c(const uint8_t *sc, uint8_t *s1, uint8_t *m1, uint8_t *s2, uint8_t *m2)
{
    greta_k_scale_min(2 * C, sc, s1, m1);
    greta_k_scale_min(2 * C + 1, sc, s2, m2);
}

__device__ inline void kscales_pair(int c, const uint8_t *sc, uint8_t *s1, uint8_t *m1, uint8_t *s2, uint8_t *m2)
{
    switch (c) {
    case 0: kscales_c<0>(sc, s1, m1, s2, m2); break;
    case 1: kscales_c<1>(sc, s1, m1, s2, m2); break;
    case 2: kscales_c<2>(sc, s1, m1, s2, m2); break;
    default: kscales_c<3>(sc, s1, m1, s2, m2); break;
    }
}

template <uint32_t TYPE> struct gpu_vdot {
    static constexpr bool available = false;
};

template <> struct gpu_vdot<GGML_TYPE_Q4_K> {
    static constexpr bool available = true;
    static constexpr int UNIT = 32;
    template <int NT>
    __device__ static void dot(const uint8_t *row, int64_t u, const float *x, int64_t ld_x, float *acc)
    {
        const block_q4_K *b = (const block_q4_K *)(row + (u >> 3) * sizeof(block_q4_K));
        const int c = (int)(u >> 1) & 3, h = (int)u & 1;
        const uint4 q = *(const uint4 *)(b->qs + 32 * c + 16 * h);
        const uint32_t w[4] = {q.x, q.y, q.z, q.w};
        const uint32_t hd = *(const uint32_t *)b; /* d, dmin */
        uint8_t sc[K_SCALE_SIZE];
        *(uint32_t *)&sc[0] = *(const uint32_t *)&b->scales[0];
        *(uint32_t *)&sc[4] = *(const uint32_t *)&b->scales[4];
        *(uint32_t *)&sc[8] = *(const uint32_t *)&b->scales[8];
        uint8_t s1, m1, s2, m2;
        kscales_pair(c, sc, &s1, &m1, &s2, &m2);
        const float d = gpu_half_to_float((uint16_t)(hd & 0xffffu)), dmin = gpu_half_to_float((uint16_t)(hd >> 16));
        const float d1 = d * (float)s1, mm1 = dmin * (float)m1, d2 = d * (float)s2, mm2 = dmin * (float)m2;
        const int64_t e = (u >> 3) * QK_K + 64 * c + 16 * h;
#pragma unroll
        for (int t = 0; t < NT; t++) {
            float sqa = 0.0f, sxa = 0.0f, sqb = 0.0f, sxb = 0.0f;
            vdot_nib16(w, 0, x + t * ld_x + e, sqa, sxa);
            vdot_nib16(w, 4, x + t * ld_x + e + 32, sqb, sxb);
            acc[t] += (d1 * sqa - mm1 * sxa) + (d2 * sqb - mm2 * sxb);
        }
    }
};

template <> struct gpu_vdot<GGML_TYPE_Q5_K> {
    static constexpr bool available = true;
    static constexpr int UNIT = 32;
    template <int NT>
    __device__ static void dot(const uint8_t *row, int64_t u, const float *x, int64_t ld_x, float *acc)
    {
        const block_q5_K *b = (const block_q5_K *)(row + (u >> 3) * sizeof(block_q5_K));
        const int c = (int)(u >> 1) & 3, h = (int)u & 1;
        const uint4 q = *(const uint4 *)(b->qs + 32 * c + 16 * h);
        const uint4 qh = *(const uint4 *)(b->qh + 16 * h);
        const uint32_t w[4] = {q.x, q.y, q.z, q.w}, hw[4] = {qh.x, qh.y, qh.z, qh.w};
        const uint32_t hd = *(const uint32_t *)b;
        uint8_t sc[K_SCALE_SIZE];
        *(uint32_t *)&sc[0] = *(const uint32_t *)&b->scales[0];
        *(uint32_t *)&sc[4] = *(const uint32_t *)&b->scales[4];
        *(uint32_t *)&sc[8] = *(const uint32_t *)&b->scales[8];
        uint8_t s1, m1, s2, m2;
        kscales_pair(c, sc, &s1, &m1, &s2, &m2);
        const float d = gpu_half_to_float((uint16_t)(hd & 0xffffu)), dmin = gpu_half_to_float((uint16_t)(hd >> 16));
        const float d1 = d * (float)s1, mm1 = dmin * (float)m1, d2 = d * (float)s2, mm2 = dmin * (float)m2;
        /* 5-bit codes: nibble | (bit << 4), bit 2c for the low nibbles, 2c + 1 for the high */
        uint32_t lo[4], hi[4];
#pragma unroll
        for (int j = 0; j < 4; j++) {
            const uint32_t bl = (hw[j] >> (2 * c)) & 0x01010101u, bh = (hw[j] >> (2 * c + 1)) & 0x01010101u;
            lo[j] = (w[j] & 0x0f0f0f0fu) | (bl << 4);
            hi[j] = ((w[j] >> 4) & 0x0f0f0f0fu) | (bh << 4);
        }
        const int64_t e = (u >> 3) * QK_K + 64 * c + 16 * h;
#pragma unroll
        for (int t = 0; t < NT; t++) {
            const float4 *xa = (const float4 *)(x + t * ld_x + e), *xb = (const float4 *)(x + t * ld_x + e + 32);
            float sqa = 0.0f, sxa = 0.0f, sqb = 0.0f, sxb = 0.0f;
#pragma unroll
            for (int j = 0; j < 4; j++) {
                const float4 va = xa[j], vb = xb[j];
                sqa += (float)(lo[j] & 31) * va.x + (float)((lo[j] >> 8) & 31) * va.y +
                       (float)((lo[j] >> 16) & 31) * va.z + (float)(lo[j] >> 24) * va.w;
                sxa += (va.x + va.y) + (va.z + va.w);
                sqb += (float)(hi[j] & 31) * vb.x + (float)((hi[j] >> 8) & 31) * vb.y +
                       (float)((hi[j] >> 16) & 31) * vb.z + (float)(hi[j] >> 24) * vb.w;
                sxb += (vb.x + vb.y) + (vb.z + vb.w);
            }
            acc[t] += (d1 * sqa - mm1 * sxa) + (d2 * sqb - mm2 * sxb);
        }
    }
};

/* 16 bytes at a 2-byte aligned address, as four little-endian words. */
__device__ inline void vdot_load16_a2(const uint8_t *p, uint32_t w[4])
{
    const uint16_t *h = (const uint16_t *)p;
#pragma unroll
    for (int j = 0; j < 4; j++)
        w[j] = (uint32_t)h[2 * j] | ((uint32_t)h[2 * j + 1] << 16);
}

/* The same 16 bytes as 4 little-endian words from 5 aligned 32-bit loads
 * and a funnel shift (fewer load instructions; the bytes up to p + 18 must
 * be readable: inside a Q6_K block for its ql/qh runs). Used by the v2/v3
 * decode GEMVs (matvec_q8.cu, matvec_f32.cuh). */
__device__ inline void vdot_load16_a2w(const uint8_t *p, uint32_t w[4])
{
    const uintptr_t a = (uintptr_t)p;
    const uint32_t *base = (const uint32_t *)(a & ~(uintptr_t)3);
    const int sh = (int)(a & 3) * 8;
    uint32_t v[5];
#pragma unroll
    for (int j = 0; j < 5; j++)
        v[j] = base[j];
#pragma unroll
    for (int j = 0; j < 4; j++)
        w[j] = (uint32_t)((((uint64_t)v[j + 1] << 32) | v[j]) >> sh);
}

template <> struct gpu_vdot<GGML_TYPE_Q6_K> {
    static constexpr bool available = true;
    static constexpr int UNIT = 64;
    template <int NT>
    __device__ static void dot(const uint8_t *row, int64_t u, const float *x, int64_t ld_x, float *acc)
    {
        const block_q6_K *b = (const block_q6_K *)(row + (u >> 2) * sizeof(block_q6_K));
        const int h = (int)(u >> 1) & 1, g = (int)u & 1;
        uint32_t la[4], lb[4], qh[4];
        vdot_load16_a2(b->ql + 64 * h + 16 * g, la);
        vdot_load16_a2(b->ql + 64 * h + 32 + 16 * g, lb);
        vdot_load16_a2(b->qh + 32 * h + 16 * g, qh);
        const float d = gpu_half_to_float(*(const uint16_t *)&b->d);
        float ds[4];
#pragma unroll
        for (int q = 0; q < 4; q++)
            ds[q] = d * (float)b->scales[8 * h + g + 2 * q];
        /* 6-bit codes of the four quarters: quarter q takes la/lb low/high
         * nibbles and bits 2q, 2q + 1 of qh */
        uint32_t code[4][4];
#pragma unroll
        for (int j = 0; j < 4; j++) {
            code[0][j] = (la[j] & 0x0f0f0f0fu) | ((qh[j] & 0x03030303u) << 4);
            code[1][j] = (lb[j] & 0x0f0f0f0fu) | (((qh[j] >> 2) & 0x03030303u) << 4);
            code[2][j] = ((la[j] >> 4) & 0x0f0f0f0fu) | (((qh[j] >> 4) & 0x03030303u) << 4);
            code[3][j] = ((lb[j] >> 4) & 0x0f0f0f0fu) | (((qh[j] >> 6) & 0x03030303u) << 4);
        }
        const int64_t e = (u >> 2) * QK_K + 128 * h + 16 * g;
#pragma unroll
        for (int t = 0; t < NT; t++) {
            float r = 0.0f;
#pragma unroll
            for (int q = 0; q < 4; q++) {
                const float4 *xq = (const float4 *)(x + t * ld_x + e + 32 * q);
                float sq = 0.0f, sx = 0.0f;
#pragma unroll
                for (int j = 0; j < 4; j++) {
                    const float4 v = xq[j];
                    const uint32_t cw = code[q][j];
                    sq += (float)(cw & 63) * v.x + (float)((cw >> 8) & 63) * v.y + (float)((cw >> 16) & 63) * v.z +
                          (float)(cw >> 24) * v.w;
                    sx += (v.x + v.y) + (v.z + v.w);
                }
                r += ds[q] * (sq - 32.0f * sx);
            }
            acc[t] += r;
        }
    }
};

#endif
