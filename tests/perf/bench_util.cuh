/* bench_util.cuh - pieces the CUDA benchmarks share (gemv-bench,
 * attn-bench): the error check of a runtime call, and the read-only floor
 * kernel. Define BENCH_NAME (the program's name, a string) first. */
#ifndef GRETA_BENCH_UTIL_CUH
#define GRETA_BENCH_UTIL_CUH

#include <stdint.h>
#include <stdio.h>

/* In main (or a function returning int): return 1 after printing the failure. */
#define CK(call)                                                                        \
    do {                                                                                \
        cudaError_t e_ = (call);                                                        \
        if (e_ != cudaSuccess) {                                                        \
            fprintf(stderr, "%s: %s: %s\n", BENCH_NAME, #call, cudaGetErrorString(e_)); \
            return 1;                                                                   \
        }                                                                               \
    } while (0)

/* The practical floor for reading na + nb 16-byte words (a, then b) in one
 * launch: every byte once, 4 loads in flight per thread, nothing computed. */
__global__ void stream_kernel(const uint4 *__restrict__ a, int64_t na, const uint4 *__restrict__ b, int64_t nb,
                              float *y)
{
    uint32_t acc = 0;
    const int64_t stride = (int64_t)gridDim.x * blockDim.x;
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < na + nb; i += 4 * stride) {
        uint4 v[4];
#pragma unroll
        for (int j = 0; j < 4; j++) {
            const int64_t e = i + j * stride;
            v[j] = e < na ? a[e] : e < na + nb ? b[e - na] : make_uint4(0, 0, 0, 0);
        }
#pragma unroll
        for (int j = 0; j < 4; j++)
            acc ^= v[j].x ^ v[j].y ^ v[j].z ^ v[j].w;
    }
    if (acc == 0x9e3779b9u)
        y[0] = 1.0f;
}

/* The time per launch in us of `iters` calls of launch(i), between two events. */
template <class F> static int time_launches(int iters, F launch, double *us)
{
    cudaEvent_t e0, e1;
    CK(cudaEventCreate(&e0));
    CK(cudaEventCreate(&e1));
    CK(cudaEventRecord(e0));
    for (int i = 0; i < iters; i++)
        launch(i);
    CK(cudaEventRecord(e1));
    CK(cudaEventSynchronize(e1));
    CK(cudaGetLastError());
    float ms = 0;
    CK(cudaEventElapsedTime(&ms, e0, e1));
    CK(cudaEventDestroy(e0));
    CK(cudaEventDestroy(e1));
    *us = ms * 1e3 / iters;
    return 0;
}

#endif
