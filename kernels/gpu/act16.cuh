/* act16.cuh - 16-bit decode activations ("a16", decode v6): one token's k
 * values (k % 256 == 0) as
 *   int16 q[k]       q[i] = rint(x[i] / d_b), b = i / 16, |q| <= 32767
 *   float d[k / 16]  d_b = max |x| over block b / 32767 (0 for a zero block)
 *   float s[k / 16]  the fp32 sum of x over block b
 * a16_row_bytes(k) bytes, 16-byte aligned pieces; the rows of a batch
 * follow each other at a stride the caller gives (bytes, a multiple of 16).
 * |d_b q[i] - x[i]| <= d_b / 2 (plus one rounding of x[i] / d_b): about 15
 * bits of each block's largest value, against 24 for fp32 and 11 for fp16.
 * Blocks of 16 values, the halves a product's thread takes per weight unit:
 * a large value costs precision only to the 15 others of its block.
 * The products (matvec_f32.cuh, unit_dot_a16) multiply the codes by the
 * weight codes with 16 x 8-bit integer dot products (gpu_dp2a_*), exact in
 * int32, and scale in fp32; s carries the K-quant min and the Q6_K offset
 * terms at fp32 precision.
 *
 * Written by greta_gpu_rmsnorm_a16 (with the RMSNorm, rmsnorm.cu) or
 * greta_gpu_quantize_a16 (matvec_f32.cu), both through a16_store4. */
#ifndef GRETA_GPU_ACT16_CUH
#define GRETA_GPU_ACT16_CUH

#include "gpu_port.h"

/* Byte offsets of a row's scales and sums, and its size. */
__host__ __device__ constexpr int64_t a16_d_off(int64_t k)
{
    return 2 * k;
}
__host__ __device__ constexpr int64_t a16_s_off(int64_t k)
{
    return a16_d_off(k) + 4 * (k / 16);
}
__host__ __device__ constexpr int64_t a16_row_bytes(int64_t k)
{
    return a16_s_off(k) + 4 * (k / 16);
}

/* Whether a16 rows of k values at a, ld_a bytes apart, are laid out as the
 * kernels need: k a multiple of 256, rows of at least a16_row_bytes(k),
 * 16-byte aligned. */
static inline bool a16_rows_ok(const void *a, int64_t ld_a, int64_t k)
{
    return a && k > 0 && k % 256 == 0 && ld_a >= a16_row_bytes(k) && ld_a % 16 == 0 && (uintptr_t)a % 16 == 0;
}

/* Where the scales and the sums of a row of k values start. */
__device__ inline const float *a16_d(const uint8_t *row, int64_t k)
{
    return (const float *)(row + a16_d_off(k));
}
__device__ inline const float *a16_s(const uint8_t *row, int64_t k)
{
    return (const float *)(row + a16_s_off(k));
}

/* Values 4 * i4 .. 4 * i4 + 3 of a row (v) into its a16 form. Called by
 * every lane of the warp together (shuffles): the 4 lanes of each aligned
 * group of 4 hold the 4 float4 of one 16-value block, in order; a lane
 * with `valid` false (its group past the row's end) passes any v and
 * stores nothing. The same on 32- and 64-wide warps (xor shuffles below 4). */
__device__ inline void a16_store4(float4 v, int64_t i4, bool valid, uint8_t *row, int64_t k)
{
    float amax = fmaxf(fmaxf(fabsf(v.x), fabsf(v.y)), fmaxf(fabsf(v.z), fabsf(v.w)));
    float sum = (v.x + v.y) + (v.z + v.w);
#pragma unroll
    for (int m = 2; m > 0; m >>= 1) {
        amax = fmaxf(amax, gpu_shfl_xor(amax, m));
        sum += gpu_shfl_xor(sum, m);
    }
    if (!valid)
        return;
    const float inv = amax > 0.0f ? 32767.0f / amax : 0.0f;
    const int q0 = (int)rintf(v.x * inv), q1 = (int)rintf(v.y * inv), q2 = (int)rintf(v.z * inv),
              q3 = (int)rintf(v.w * inv);
    uint2 packed;
    packed.x = ((uint32_t)q0 & 0xffffu) | ((uint32_t)q1 << 16);
    packed.y = ((uint32_t)q2 & 0xffffu) | ((uint32_t)q3 << 16);
    *(uint2 *)(row + 8 * i4) = packed;
    if ((i4 & 3) == 0) {
        ((float *)(row + a16_d_off(k)))[i4 >> 2] = amax / 32767.0f;
        ((float *)(row + a16_s_off(k)))[i4 >> 2] = sum;
    }
}

#endif
