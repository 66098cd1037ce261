/* topk.cu - argmax and top-k of logits rows on the GPU, plus the row's
 * log-sum-exp, so a greedy request reads back one id and a top-k sampler k
 * values instead of the whole vocabulary.
 *
 * Order: larger value first, lower index first among equal values, NaN after
 * every number. One block per row; k passes, each finding the best element
 * strictly after the previously chosen one in that order (rows stay in
 * L1/L2; k is small). */
#include "gpu_ops.h"
#include "gpu_port.h"

#define TOPK_THREADS 1024

struct cand {
    float v;
    int nan;
    int i; /* -1: none */
};

/* a comes before b */
__device__ inline bool cand_before(const cand &a, const cand &b)
{
    if (a.i < 0)
        return false;
    if (b.i < 0)
        return true;
    if (a.nan != b.nan)
        return !a.nan;
    if (a.v != b.v)
        return a.v > b.v;
    return a.i < b.i;
}

__device__ inline cand warp_best(cand c)
{
#pragma unroll
    for (int m = GRETA_WARP / 2; m > 0; m >>= 1) {
        cand o;
        o.v = gpu_shfl_xor(c.v, m);
        o.nan = gpu_shfl_xor(c.nan, m);
        o.i = gpu_shfl_xor(c.i, m);
        if (cand_before(o, c))
            c = o;
    }
    return c;
}

__global__ void __launch_bounds__(TOPK_THREADS)
topk_kernel(const float *__restrict__ x, int64_t ld_x, int64_t n, int32_t k, int32_t *__restrict__ ids,
            float *__restrict__ vals, float *__restrict__ lse)
{
    __shared__ cand sc[GPU_MAX_WARPS];
    __shared__ float sf[GPU_MAX_WARPS];
    const float *xr = x + (int64_t)blockIdx.x * ld_x;
    const int lane = threadIdx.x % GRETA_WARP, warp = threadIdx.x / GRETA_WARP;
    const int n_warps = blockDim.x / GRETA_WARP;
    cand prev;
    prev.i = -1;
    prev.v = 0.0f;
    prev.nan = 0;
    for (int r = 0; r < k; r++) {
        cand best;
        best.i = -1;
        best.v = 0.0f;
        best.nan = 0;
        for (int64_t i = threadIdx.x; i < n; i += blockDim.x) {
            cand c;
            c.v = xr[i];
            c.nan = isnan(c.v) ? 1 : 0;
            c.i = (int)i;
            if ((r == 0 || cand_before(prev, c)) && cand_before(c, best))
                best = c;
        }
        best = warp_best(best);
        if (lane == 0)
            sc[warp] = best;
        __syncthreads();
        if (warp == 0) {
            cand c;
            if (lane < n_warps) {
                c = sc[lane];
            } else {
                c.i = -1;
                c.v = 0.0f;
                c.nan = 0;
            }
            c = warp_best(c);
            if (lane == 0)
                sc[0] = c;
        }
        __syncthreads();
        prev = sc[0];
        __syncthreads(); /* sc is rewritten by the next pass */
        if (threadIdx.x == 0) {
            ids[(int64_t)blockIdx.x * k + r] = prev.i;
            vals[(int64_t)blockIdx.x * k + r] = prev.i >= 0 ? xr[prev.i] : -INFINITY;
        }
    }
    if (lse) {
        float m = -INFINITY;
        for (int64_t i = threadIdx.x; i < n; i += blockDim.x)
            m = fmaxf(m, xr[i]);
        m = gpu_block_max(m, sf);
        float s = 0.0f;
        for (int64_t i = threadIdx.x; i < n; i += blockDim.x)
            s += expf(xr[i] - m);
        s = gpu_block_sum(s, sf);
        if (threadIdx.x == 0)
            lse[blockIdx.x] = m + logf(s);
    }
}

extern "C" int greta_gpu_topk(greta_gpu_stream *s, const float *x, int64_t ld_x, int32_t n_rows, int64_t n,
                              int32_t k, int32_t *ids, float *vals, float *lse, greta_error *err)
{
    if (n <= 0 || n > 2147483647 || ld_x < n || n_rows < 0 || k < 1 || k > GRETA_GPU_TOPK_MAX || k > n)
        return greta_error_set(err, GRETA_ERR_INVALID, "topk: bad arguments (n %lld, k %d)", (long long)n, k);
    if (n_rows == 0)
        return 0;
    topk_kernel<<<n_rows, TOPK_THREADS, 0, (gpu_stream_t)s>>>(x, ld_x, n, k, ids, vals, lse);
    GPU_CHECK(gpu_last_error(), err);
    return 0;
}
