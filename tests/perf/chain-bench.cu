/* chain-bench.cu - what the launches of a decode step cost, measured on the
 * weight bytes alone: the question behind issue 7's next lever (a
 * persistent decode kernel). Not a test: it prints numbers.
 *
 *   chain-bench [STEPS] [LAYERS]   (defaults 20 steps, 32 layers)
 *
 * A "step" is the Llama-2-7B Q4_K_M decode chain at depth 0 without the
 * arithmetic: per layer 7 stages, RMSNorm (16 KB in, 16 KB out), Q/K/V
 * (28.3 MB of weights), attention (a small stage, as at depth 0), w_o
 * (9.4 MB), RMSNorm, gate+up (50.7 MB), w_down (25.4 MB); then a last
 * RMSNorm and lm_head (107.5 MB, Q6_K): 3.75 GB and 226 stages, each
 * stage depending on the one before (it reads what that one wrote). Three
 * ways to run it:
 *
 *   launches   one kernel per stage, as the engine does: weight stages
 *              in blocks of 128 threads that load their 16 KB (8 x 16
 *              bytes a thread) before the early-launch wait (PDL), then
 *              read the previous stage's output, reduce and store; small
 *              stages one block of 1024 threads that triggers first
 *              (rmsnorm.cu's order); the 226 launches captured once in a
 *              CUDA graph and replayed;
 *   persistent one cooperative kernel per step (SMs x BPS blocks of 256
 *              threads, all resident): each stage a grid-stride read of
 *              its bytes (4 x 16 bytes in flight a thread), a grid
 *              barrier between stages; with "prefetch" every thread loads
 *              its first 4 words of the next stage before the barrier (the
 *              weights do not depend on it), so the stream does not stop
 *              while the grid waits;
 *   floor      stream_kernel over the same 3.75 GB in one launch.
 *
 * The difference between a way and the floor, divided by the 226 stages,
 * is what a stage boundary costs that way.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define BENCH_NAME "chain-bench"
#include "kernels/gpu/gpu_ops.h" /* greta_gpu_set_pdl: gpu_launch_pdl asks for early launch */
#include "kernels/gpu/gpu_port.h"
#include "tests/perf/bench_util.cuh"

#define MAX_STAGES 1024
#define X_U32 4096 /* a stage's output (and the next one's input x): 16 KB */
#define LA_THREADS 128
#define LA_WORDS 8 /* words per thread of a launches-way weight block: 16 KB a block */
#define PB_THREADS 256
#define PB_INFLIGHT 4

typedef struct stage {
    const uint4 *w; /* NULL: a small stage */
    int64_t n16;    /* 16-byte words of weights */
} stage;

__constant__ stage c_stages[MAX_STAGES];

/* acc ^ every 32-bit word of v (what keeps the loads of v live). */
template <int N> __device__ inline uint32_t xor_words(const uint4 (&v)[N], uint32_t acc)
{
#pragma unroll
    for (int j = 0; j < N; j++)
        acc ^= v[j].x ^ v[j].y ^ v[j].z ^ v[j].w;
    return acc;
}

/* The XOR of acc over the block (NW warps of 32; red: NW words of shared
 * memory), for thread 0; contains a barrier. */
template <int NW> __device__ inline uint32_t block_xor(uint32_t acc, uint32_t *red)
{
#pragma unroll
    for (int o = 16; o > 0; o >>= 1)
        acc ^= __shfl_xor_sync(0xffffffffu, acc, o);
    if (threadIdx.x % 32 == 0)
        red[threadIdx.x / 32] = acc;
    __syncthreads();
    uint32_t all = 0;
    if (threadIdx.x == 0)
        for (int w = 0; w < NW; w++)
            all ^= red[w];
    return all;
}

/* ---- the launches way ----------------------------------------------------------------- */

/* A weight stage's block: its 16 KB before the wait, then the previous
 * stage's output (x), a block reduction, one store. */
__global__ void __launch_bounds__(LA_THREADS) la_weights(const uint4 *__restrict__ w, int64_t n16, const uint32_t *x,
                                                         uint32_t *y)
{
    __shared__ uint32_t red[LA_THREADS / 32];
    const int64_t base = (int64_t)blockIdx.x * LA_THREADS * LA_WORDS + threadIdx.x;
    uint4 v[LA_WORDS];
#pragma unroll
    for (int j = 0; j < LA_WORDS; j++) {
        const int64_t e = base + (int64_t)j * LA_THREADS;
        v[j] = e < n16 ? w[e] : make_uint4(0, 0, 0, 0);
    }
    gpu_pdl_wait();
    gpu_pdl_trigger();
    const uint32_t all = block_xor<LA_THREADS / 32>(xor_words(v, x[threadIdx.x % X_U32]), red);
    if (threadIdx.x == 0)
        y[blockIdx.x % X_U32] = all;
}

/* A small stage: one block reads the 16 KB x and writes 16 KB (as an RMSNorm). */
__global__ void __launch_bounds__(1024) la_small(const uint32_t *x, uint32_t *y)
{
    __shared__ uint32_t red[32];
    gpu_pdl_trigger();
    gpu_pdl_wait();
    const uint4 v = ((const uint4 *)x)[threadIdx.x];
    const uint32_t all = block_xor<32>(v.x ^ v.y ^ v.z ^ v.w, red); /* thread 0's: the row's "norm" */
    ((uint4 *)y)[threadIdx.x] = make_uint4(v.x ^ all, v.y, v.z, v.w);
}

/* ---- the persistent way --------------------------------------------------------------- */

/* All blocks of the grid (resident: a cooperative launch) wait for each
 * other: the last to arrive resets the count and moves the generation on. */
__device__ inline void grid_barrier(unsigned int *count, volatile unsigned int *gen)
{
    __syncthreads();
    if (threadIdx.x == 0) {
        const unsigned int g = *gen;
        __threadfence();
        if (atomicAdd(count, 1u) == gridDim.x - 1) {
            *count = 0;
            __threadfence();
            atomicAdd((unsigned int *)gen, 1u);
        } else {
            while (*gen == g)
                __nanosleep(20);
        }
        __threadfence();
    }
    __syncthreads();
}

template <bool PREFETCH>
__global__ void __launch_bounds__(PB_THREADS) pb_chain(int n_stages, uint32_t *xy, unsigned int *bar)
{
    __shared__ uint32_t red[PB_THREADS / 32];
    const int64_t tid = (int64_t)blockIdx.x * PB_THREADS + threadIdx.x, stride = (int64_t)gridDim.x * PB_THREADS;
    uint4 pre[PB_INFLIGHT];
    bool have_pre = false;
    uint32_t carry = 0;
    for (int s = 0; s < n_stages; s++) {
        const uint32_t *x = xy + (s & 1) * X_U32;
        uint32_t *y = xy + ((s + 1) & 1) * X_U32;
        const stage st = c_stages[s];
        uint32_t acc = carry ^ x[tid % X_U32];
        if (!st.w) { /* small: block 0 reads x and writes y */
            if (blockIdx.x == 0) {
                for (int i = threadIdx.x; i < X_U32 / 4; i += PB_THREADS) {
                    const uint4 v = ((const uint4 *)x)[i];
                    ((uint4 *)y)[i] = make_uint4(v.x ^ acc, v.y, v.z, v.w);
                }
            }
        } else {
            int64_t i = tid;
            if (have_pre) { /* the first words, loaded before the barrier */
                acc = xor_words(pre, acc);
                i += PB_INFLIGHT * stride;
                have_pre = false;
            }
            for (; i < st.n16; i += PB_INFLIGHT * stride) {
                uint4 v[PB_INFLIGHT];
#pragma unroll
                for (int j = 0; j < PB_INFLIGHT; j++) {
                    const int64_t e = i + j * stride;
                    v[j] = e < st.n16 ? st.w[e] : make_uint4(0, 0, 0, 0);
                }
                acc = xor_words(v, acc);
            }
            const uint32_t all = block_xor<PB_THREADS / 32>(acc, red);
            if (threadIdx.x == 0)
                y[blockIdx.x % X_U32] = all;
        }
        if (PREFETCH && s + 1 < n_stages && c_stages[s + 1].w) {
            const stage nx = c_stages[s + 1];
#pragma unroll
            for (int j = 0; j < PB_INFLIGHT; j++) {
                const int64_t e = tid + j * stride;
                pre[j] = e < nx.n16 ? nx.w[e] : make_uint4(0, 0, 0, 0);
            }
            have_pre = true;
        }
        carry = acc;
        grid_barrier(bar, bar + 1);
    }
    if (carry == 0x9e3779b9u)
        xy[2 * X_U32] = carry;
}

/* ---- main ------------------------------------------------------------------------------- */

int main(int argc, char **argv)
{
    const int steps = argc > 1 ? atoi(argv[1]) : 20;
    const int layers = argc > 2 ? atoi(argv[2]) : 32;
    if (steps < 1 || layers < 1 || layers * 7 + 2 > MAX_STAGES) {
        fprintf(stderr, "usage: chain-bench [STEPS >= 1] [LAYERS 1..%d]\n", (MAX_STAGES - 2) / 7);
        return 2;
    }
    /* bytes of the 7B Q4_K_M weights (Q4_K: 144 bytes per 256 values, Q6_K: 210) */
    const int64_t qkv = 12288LL * 4096 / 256 * 144, wo = 4096LL * 4096 / 256 * 144,
                  gateup = 2LL * 11008 * 4096 / 256 * 144, down = 4096LL * 11008 / 256 * 144,
                  head = 32000LL * 4096 / 256 * 210;
    const int64_t per_layer[7] = {0, qkv, 0, wo, 0, gateup, down};
    stage h[MAX_STAGES];
    int n = 0;
    int64_t total = 0;
    for (int l = 0; l < layers; l++)
        for (int i = 0; i < 7; i++) {
            h[n].w = NULL;
            h[n++].n16 = per_layer[i] / 16;
            total += per_layer[i];
        }
    h[n].w = NULL, h[n++].n16 = 0;
    h[n].w = NULL, h[n++].n16 = head / 16;
    total += head;
    uint8_t *wbuf;
    CK(cudaMalloc(&wbuf, (size_t)total));
    CK(cudaMemset(wbuf, 0x5a, (size_t)total));
    int64_t off = 0;
    for (int i = 0; i < n; i++)
        if (h[i].n16) {
            h[i].w = (const uint4 *)(wbuf + off);
            off += h[i].n16 * 16;
        }
    CK(cudaMemcpyToSymbol(c_stages, h, sizeof(stage) * (size_t)n));
    uint32_t *xy;
    unsigned int *bar;
    float *y1;
    CK(cudaMalloc(&xy, (2 * X_U32 + 1) * sizeof(uint32_t)));
    CK(cudaMemset(xy, 0, (2 * X_U32 + 1) * sizeof(uint32_t)));
    CK(cudaMalloc(&bar, 2 * sizeof(unsigned int)));
    CK(cudaMemset(bar, 0, 2 * sizeof(unsigned int)));
    CK(cudaMalloc(&y1, sizeof(float)));
    cudaDeviceProp prop;
    CK(cudaGetDeviceProperties(&prop, 0));
    printf("chain-bench: %s, %d SMs, %d layers: %d stages, %.2f GB of weights a step, %d steps per way\n",
           prop.name, prop.multiProcessorCount, layers, n, total / 1e9, steps);
    printf("| way | us a step | GB/s | us a stage boundary over the floor |\n| --- | ---: | ---: | ---: |\n");

    /* the floor */
    double floor_us;
    for (int i = 0; i < 2; i++)
        stream_kernel<<<prop.multiProcessorCount * 8, 256>>>((const uint4 *)wbuf, total / 16, (const uint4 *)wbuf, 0,
                                                             y1);
    if (time_launches(
            steps,
            [&](int) {
                stream_kernel<<<prop.multiProcessorCount * 8, 256>>>((const uint4 *)wbuf, total / 16,
                                                                    (const uint4 *)wbuf, 0, y1);
            },
            &floor_us))
        return 1;
    printf("| floor (one stream_kernel) | %.1f | %.0f | - |\n", floor_us, total / (floor_us * 1e-6) / 1e9);

    /* launches, captured in a graph */
    if (!greta_gpu_set_pdl(1)) {
        fprintf(stderr, "chain-bench: this GPU has no early launch (PDL needs sm_90)\n");
        return 1;
    }
    cudaStream_t st;
    CK(cudaStreamCreateWithFlags(&st, cudaStreamNonBlocking));
    cudaGraph_t graph;
    cudaGraphExec_t exec;
    CK(cudaStreamBeginCapture(st, cudaStreamCaptureModeGlobal));
    for (int s = 0; s < n; s++) {
        const uint32_t *x = xy + (s & 1) * X_U32;
        uint32_t *y = xy + ((s + 1) & 1) * X_U32;
        if (h[s].w) {
            const unsigned blocks = (unsigned)((h[s].n16 + LA_THREADS * LA_WORDS - 1) / (LA_THREADS * LA_WORDS));
            CK(gpu_launch_pdl(la_weights, dim3(blocks), dim3(LA_THREADS), st, h[s].w, h[s].n16, x, y));
        } else {
            CK(gpu_launch_pdl(la_small, dim3(1), dim3(1024), st, x, y));
        }
    }
    CK(cudaStreamEndCapture(st, &graph));
    CK(cudaGraphInstantiate(&exec, graph, 0));
    for (int i = 0; i < 2; i++)
        CK(cudaGraphLaunch(exec, st));
    CK(cudaStreamSynchronize(st));
    double la_us;
    {
        cudaEvent_t e0, e1;
        CK(cudaEventCreate(&e0));
        CK(cudaEventCreate(&e1));
        CK(cudaEventRecord(e0, st));
        for (int i = 0; i < steps; i++)
            CK(cudaGraphLaunch(exec, st));
        CK(cudaEventRecord(e1, st));
        CK(cudaEventSynchronize(e1));
        float ms = 0;
        CK(cudaEventElapsedTime(&ms, e0, e1));
        la_us = ms * 1e3 / steps;
    }
    printf("| launches (PDL, graph) | %.1f | %.0f | %.2f |\n", la_us, total / (la_us * 1e-6) / 1e9,
           (la_us - floor_us) / n);

    /* persistent, without and with the prefetch across the barrier */
    for (int pf = 0; pf < 2; pf++) {
        void (*k)(int, uint32_t *, unsigned int *) = pf ? pb_chain<true> : pb_chain<false>;
        int per_sm = 0;
        CK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, k, PB_THREADS, 0));
        for (int bps = 1; bps <= per_sm && bps <= 4; bps *= 2) {
            const dim3 grid((unsigned)(prop.multiProcessorCount * bps)), block(PB_THREADS);
            int n_stages = n;
            void *args[] = {&n_stages, &xy, &bar};
            for (int i = 0; i < 2; i++)
                CK(cudaLaunchCooperativeKernel((void *)k, grid, block, args, 0, st));
            CK(cudaStreamSynchronize(st));
            cudaEvent_t e0, e1;
            CK(cudaEventCreate(&e0));
            CK(cudaEventCreate(&e1));
            CK(cudaEventRecord(e0, st));
            for (int i = 0; i < steps; i++)
                CK(cudaLaunchCooperativeKernel((void *)k, grid, block, args, 0, st));
            CK(cudaEventRecord(e1, st));
            CK(cudaEventSynchronize(e1));
            float ms = 0;
            CK(cudaEventElapsedTime(&ms, e0, e1));
            const double us = ms * 1e3 / steps;
            printf("| persistent, %d blocks/SM%s | %.1f | %.0f | %.2f |\n", bps, pf ? ", prefetch" : "", us,
                   total / (us * 1e-6) / 1e9, (us - floor_us) / n);
            fflush(stdout);
        }
    }
    CK(cudaGraphExecDestroy(exec));
    CK(cudaGraphDestroy(graph));
    CK(cudaStreamDestroy(st));
    CK(cudaFree(wbuf));
    CK(cudaFree(xy));
    CK(cudaFree(bar));
    CK(cudaFree(y1));
    return 0;
}
