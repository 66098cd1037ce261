/* dequant.cuh - on-GPU decoding of GGUF weight rows, in groups.
 *
 * gpu_deq<TYPE>::load(row, k0, w) writes the G elements k0 .. k0+G-1 of one
 * weight row (row = the row's first byte, in the file's native blocks) to
 * w[0..G-1] as fp32. G is 8 for the block types (k0 a multiple of 8) and 1
 * for F32/F16/BF16. The 8 elements of a group share one (sub-)block scale,
 * so a group needs one scale decode and one 8-byte load of codes.
 *
 * The formats are those of kernels/quant.h (block structs, the 6-bit scale
 * unpacking greta_k_scale_min()); the values are bit-identical to
 * greta_dequant_row(): fp16 -> fp32 is exact in hardware, and the products
 * are rounded as written (gpu_mul_rn / gpu_sub_rn never fuse into an FMA).
 *
 * Weights are used in place, no repack: block sizes of 18 (Q4_0), 34 (Q8_0)
 * and 210 (Q6_K) bytes only guarantee 2-byte alignment, so those codes are
 * read bytewise; Q4_K (144) and Q5_K (176) codes are read 8 bytes at once.
 */
#ifndef GRETA_GPU_DEQUANT_CUH
#define GRETA_GPU_DEQUANT_CUH

#include "gpu_port.h"
#include "kernels/quant.h"

/* 8 bytes at p (any alignment), little-endian. */
__device__ inline uint64_t gpu_load8_u(const uint8_t *p)
{
    uint64_t v = 0;
#pragma unroll
    for (int i = 0; i < 8; i++)
        v |= (uint64_t)p[i] << (8 * i);
    return v;
}

/* 8 bytes at an 8-byte aligned p. */
__device__ inline uint64_t gpu_load8_a(const uint8_t *p) { return *(const uint64_t *)p; }

__device__ inline float gpu_fp16_at(const uint8_t *p) { return gpu_half_to_float((uint16_t)(p[0] | (p[1] << 8))); }

template <uint32_t TYPE> struct gpu_deq;

template <> struct gpu_deq<GGML_TYPE_F32> {
    static constexpr int G = 1;
    __device__ static void load(const uint8_t *row, int64_t k0, float *w) { w[0] = ((const float *)row)[k0]; }
};

template <> struct gpu_deq<GGML_TYPE_F16> {
    static constexpr int G = 1;
    __device__ static void load(const uint8_t *row, int64_t k0, float *w)
    {
        w[0] = gpu_half_to_float(((const uint16_t *)row)[k0]);
    }
};

template <> struct gpu_deq<GGML_TYPE_BF16> {
    static constexpr int G = 1;
    __device__ static void load(const uint8_t *row, int64_t k0, float *w)
    {
        w[0] = __uint_as_float((uint32_t)((const uint16_t *)row)[k0] << 16);
    }
};

template <> struct gpu_deq<GGML_TYPE_Q4_0> {
    static constexpr int G = 8;
    __device__ static void load(const uint8_t *row, int64_t k0, float *w)
    {
        const uint8_t *b = row + (k0 / QK4_0) * sizeof(block_q4_0);
        const int e = (int)(k0 % QK4_0); /* 0, 8, 16, 24 */
        const float d = gpu_fp16_at(b + offsetof(block_q4_0, d));
        const uint64_t q = gpu_load8_u(b + offsetof(block_q4_0, qs) + (e & 15));
        const int shift = e >= 16 ? 4 : 0;
#pragma unroll
        for (int j = 0; j < 8; j++)
            w[j] = gpu_mul_rn((float)((int)((q >> (8 * j + shift)) & 15) - 8), d);
    }
};

template <> struct gpu_deq<GGML_TYPE_Q8_0> {
    static constexpr int G = 8;
    __device__ static void load(const uint8_t *row, int64_t k0, float *w)
    {
        const uint8_t *b = row + (k0 / QK8_0) * sizeof(block_q8_0);
        const int e = (int)(k0 % QK8_0);
        const float d = gpu_fp16_at(b + offsetof(block_q8_0, d));
        const uint64_t q = gpu_load8_u(b + offsetof(block_q8_0, qs) + e);
#pragma unroll
        for (int j = 0; j < 8; j++)
            w[j] = gpu_mul_rn((float)(int8_t)(q >> (8 * j)), d);
    }
};

template <> struct gpu_deq<GGML_TYPE_Q4_K> {
    static constexpr int G = 8;
    __device__ static void load(const uint8_t *row, int64_t k0, float *w)
    {
        const block_q4_K *b = (const block_q4_K *)(row + (k0 / QK_K) * sizeof(block_q4_K));
        const int e = (int)(k0 % QK_K);
        const int c = e >> 6, r = e & 63, hi = r >> 5, l = r & 31;
        uint8_t sc, m;
        greta_k_scale_min(2 * c + hi, b->scales, &sc, &m);
        const float d1 = gpu_mul_rn(gpu_half_to_float(b->d), (float)sc);
        const float m1 = gpu_mul_rn(gpu_half_to_float(b->dmin), (float)m);
        const uint64_t q = gpu_load8_a(b->qs + 32 * c + l);
        const int shift = 4 * hi;
#pragma unroll
        for (int j = 0; j < 8; j++)
            w[j] = gpu_sub_rn(gpu_mul_rn(d1, (float)((q >> (8 * j + shift)) & 15)), m1);
    }
};

template <> struct gpu_deq<GGML_TYPE_Q5_K> {
    static constexpr int G = 8;
    __device__ static void load(const uint8_t *row, int64_t k0, float *w)
    {
        const block_q5_K *b = (const block_q5_K *)(row + (k0 / QK_K) * sizeof(block_q5_K));
        const int e = (int)(k0 % QK_K);
        const int c = e >> 6, r = e & 63, hi = r >> 5, l = r & 31;
        uint8_t sc, m;
        greta_k_scale_min(2 * c + hi, b->scales, &sc, &m);
        const float d1 = gpu_mul_rn(gpu_half_to_float(b->d), (float)sc);
        const float m1 = gpu_mul_rn(gpu_half_to_float(b->dmin), (float)m);
        const uint64_t q = gpu_load8_a(b->qs + 32 * c + l);
        const uint64_t h = gpu_load8_a(b->qh + l);
        const int shift = 4 * hi;
        const int hbit = 2 * c + hi; /* bit (1 << 2c) or (2 << 2c) */
#pragma unroll
        for (int j = 0; j < 8; j++) {
            const int v = (int)((q >> (8 * j + shift)) & 15) + (int)(((h >> (8 * j + hbit)) & 1) << 4);
            w[j] = gpu_sub_rn(gpu_mul_rn(d1, (float)v), m1);
        }
    }
};

template <> struct gpu_deq<GGML_TYPE_Q6_K> {
    static constexpr int G = 8;
    __device__ static void load(const uint8_t *row, int64_t k0, float *w)
    {
        const block_q6_K *b = (const block_q6_K *)(row + (k0 / QK_K) * sizeof(block_q6_K));
        const int e = (int)(k0 % QK_K);
        const int h = e >> 7, r = e & 127, qq = r >> 5, l = r & 31;
        /* quarter qq: ql[l] low, ql[l+32] low, ql[l] high, ql[l+32] high */
        const uint64_t ql = gpu_load8_u(b->ql + 64 * h + l + 32 * (qq & 1));
        const uint64_t qh = gpu_load8_u(b->qh + 32 * h + l);
        const float ds = gpu_mul_rn(gpu_fp16_at((const uint8_t *)&b->d), (float)b->scales[8 * h + (l >> 4) + 2 * qq]);
        const int lshift = 4 * (qq >> 1), hshift = 2 * qq;
#pragma unroll
        for (int j = 0; j < 8; j++) {
            const int v = (int)(((ql >> (8 * j + lshift)) & 15) | (((qh >> (8 * j + hshift)) & 3) << 4)) - 32;
            w[j] = gpu_mul_rn(ds, (float)v);
        }
    }
};

/* The type switch of every op: returns &LAUNCHER<type> (a function template
 * instantiated per weight type), or NULL for a type without a decoder. */
#define GPU_LAUNCHER_FOR(type, LAUNCHER)                                       \
    ((type) == GGML_TYPE_F32 ? &LAUNCHER<GGML_TYPE_F32>                        \
     : (type) == GGML_TYPE_F16 ? &LAUNCHER<GGML_TYPE_F16>                      \
     : (type) == GGML_TYPE_BF16 ? &LAUNCHER<GGML_TYPE_BF16>                    \
     : (type) == GGML_TYPE_Q4_0 ? &LAUNCHER<GGML_TYPE_Q4_0>                    \
     : (type) == GGML_TYPE_Q8_0 ? &LAUNCHER<GGML_TYPE_Q8_0>                    \
     : (type) == GGML_TYPE_Q4_K ? &LAUNCHER<GGML_TYPE_Q4_K>                    \
     : (type) == GGML_TYPE_Q5_K ? &LAUNCHER<GGML_TYPE_Q5_K>                    \
     : (type) == GGML_TYPE_Q6_K ? &LAUNCHER<GGML_TYPE_Q6_K>                    \
                                : nullptr)

#endif
