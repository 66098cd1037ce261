/* kv_io.cuh - loads and stores of KV cache elements (fp16 or fp32), shared
 * by kv_store.cu and attention.cu. Values go in pairs (head_dim is even),
 * so a lane reads 4 (fp16) or 8 (fp32) bytes at once. */
#ifndef GRETA_GPU_KV_IO_CUH
#define GRETA_GPU_KV_IO_CUH

#include "gpu_port.h"

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
