/* kv_io.cuh - loads and stores of KV cache elements (fp16 or fp32), shared
 * by kv_store.cu and attention.cu. Values go in pairs (head_dim is even),
 * so a lane reads 4 (fp16) or 8 (fp32) bytes at once. */
#ifndef GRETA_GPU_KV_IO_CUH
#define GRETA_GPU_KV_IO_CUH

#include "gpu_port.h"

/* Element (seq, head, pos, d) of one layer's K or V cache, laid out
 * [n_seq][n_kv_heads][n_ctx][head_dim] (gpu_ops.h): a head's positions are
 * one contiguous run. */
__host__ __device__ inline int64_t kv_offset(int64_t seq, int64_t head, int64_t pos, int64_t d, int64_t n_kv_heads,
                                             int64_t n_ctx, int64_t head_dim)
{
    return ((seq * n_kv_heads + head) * n_ctx + pos) * head_dim + d;
}

template <typename KVT> struct kv_io;

template <> struct kv_io<uint16_t> {
    __device__ static float2 load2(const uint16_t *p)
    {
        const uint32_t u = *(const uint32_t *)p;
        return make_float2(gpu_half_to_float((uint16_t)(u & 0xffffu)), gpu_half_to_float((uint16_t)(u >> 16)));
    }
    __device__ static uint16_t from_float(float f) { return gpu_float_to_half(f); }
};

template <> struct kv_io<float> {
    __device__ static float2 load2(const float *p) { return *(const float2 *)p; }
    __device__ static float from_float(float f) { return f; }
};

#endif
