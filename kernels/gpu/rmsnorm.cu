/* rmsnorm.cu - RMSNorm of each token row; the sum of squares in fp32.
 *
 * Rows of up to RMS_THREADS * 4 * RMS_V values with 16-byte aligned rows go
 * to rmsnorm_reg_kernel: every thread loads its float4s of x and w at once
 * into registers, the block sums the squares, the results are written from
 * the registers (one memory round trip each way: a decode step runs 65 of
 * these per token, so their latency counts). Other rows: rmsnorm_kernel.
 * Both compute o = (x * r) * w with r = 1 / sqrtf(mean + eps); out may be x.
 * Both are launched with gpu_launch_pdl (gpu_port.h) and let the next kernel
 * launch before their own wait: a decode RMSNorm is one block between two
 * products, so the next product's blocks take the SM slots the previous
 * product frees in its tail and load their first weights there, instead of
 * after that product has finished. Safe because a kernel's reads of data
 * (after its wait) still follow this kernel's completion, which follows
 * this kernel's wait on the one before; before its wait a kernel reads
 * only constants (gpu_port.h). H100, 7B Q4_K_M, same lease: tg128 383.4 /
 * 382.5 against 377.9 / 378.6 tokens/s, 286.2 / 284.8 against 283.4 /
 * 284.0 at depth 4096. (The same early trigger in the decode attention was
 * 3.5% slower at depth 0: the product's early blocks then compete with it.) */
#include "act16.cuh"
#include "decode_ops.h"
#include "gpu_ops.h"
#include "gpu_port.h"

/* grid (n_tok), block 256. */
__global__ void rmsnorm_kernel(const float *x, int64_t ld_x, const float *__restrict__ w,
                               float *out, int64_t ld_out, int64_t n, float eps)
{
    __shared__ float scratch[GPU_MAX_WARPS];
    gpu_pdl_trigger(); /* the next kernel may launch now (see the top) */
    gpu_pdl_wait();    /* launched with gpu_launch_pdl: x comes from the previous kernel */
    const float *xr = x + (int64_t)blockIdx.x * ld_x;
    float *o = out + (int64_t)blockIdx.x * ld_out;
    float ss = 0.0f;
    for (int64_t i = threadIdx.x; i < n; i += blockDim.x)
        ss += xr[i] * xr[i];
    ss = gpu_block_sum(ss, scratch);
    const float mean = ss / (float)n;
    const float r = 1.0f / sqrtf(mean + eps);
    for (int64_t i = threadIdx.x; i < n; i += blockDim.x) {
        const float xs = xr[i] * r;
        o[i] = xs * w[i];
    }
}

#define RMS_THREADS 1024
#define RMS_V 4

/* grid (n_tok), block RMS_THREADS; n % 4 == 0, n <= RMS_THREADS * 4 * RMS_V,
 * rows 16-byte aligned. With a16 (n % 256 == 0) the normalized rows also go
 * there as a16 (act16.cuh, rows of ld_a bytes). */
__global__ void __launch_bounds__(RMS_THREADS) rmsnorm_reg_kernel(const float *x, int64_t ld_x,
                                                                  const float *__restrict__ w, float *out,
                                                                  int64_t ld_out, int64_t n, float eps,
                                                                  uint8_t *a16, int64_t ld_a)
{
    __shared__ float scratch[GPU_MAX_WARPS];
    gpu_pdl_trigger(); /* the next kernel may launch now (see the top) */
    gpu_pdl_wait();    /* launched with gpu_launch_pdl: x comes from the previous kernel */
    const float4 *xr = (const float4 *)(x + (int64_t)blockIdx.x * ld_x), *w4 = (const float4 *)w;
    float4 *o = (float4 *)(out + (int64_t)blockIdx.x * ld_out);
    const int n4 = (int)(n / 4);
    float4 v[RMS_V], g[RMS_V];
    float ss = 0.0f;
#pragma unroll
    for (int j = 0; j < RMS_V; j++) {
        const int i = threadIdx.x + j * RMS_THREADS;
        if (i < n4) {
            v[j] = xr[i];
            g[j] = w4[i];
            ss += (v[j].x * v[j].x + v[j].y * v[j].y) + (v[j].z * v[j].z + v[j].w * v[j].w);
        }
    }
    ss = gpu_block_sum(ss, scratch); /* its barriers order every load before any store (out may be x) */
    const float mean = ss / (float)n;
    const float r = 1.0f / sqrtf(mean + eps);
#pragma unroll
    for (int j = 0; j < RMS_V; j++) {
        const int i = threadIdx.x + j * RMS_THREADS;
        float4 y = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
        if (i < n4) {
            y = make_float4((v[j].x * r) * g[j].x, (v[j].y * r) * g[j].y, (v[j].z * r) * g[j].z,
                            (v[j].w * r) * g[j].w);
            o[i] = y;
        }
        if (a16 && j * RMS_THREADS < n4) /* block-uniform: every lane of each warp shuffles */
            a16_store4(y, i, i < n4, a16 + (int64_t)blockIdx.x * ld_a, n);
    }
}

/* Rows and weights as rmsnorm_reg_kernel loads them: float4s. */
static int rms_rows_aligned(const float *x, int64_t ld_x, const float *w, const float *out, int64_t ld_out)
{
    return ((uintptr_t)x | (uintptr_t)w | (uintptr_t)out) % 16 == 0 && ld_x % 4 == 0 && ld_out % 4 == 0;
}

extern "C" int greta_gpu_rmsnorm(greta_gpu_stream *s, const float *x, int64_t ld_x, const float *w, float *out,
                                 int64_t ld_out, int32_t n_tok, int64_t n, float eps, greta_error *err)
{
    if (n <= 0 || ld_x < n || ld_out < n || n_tok < 0)
        return greta_error_set(err, GRETA_ERR_INVALID, "rmsnorm: bad shape (n %lld)", (long long)n);
    if (n_tok == 0)
        return 0;
    const int aligned = rms_rows_aligned(x, ld_x, w, out, ld_out) && n % 4 == 0;
    const gpu_stream_t st = (gpu_stream_t)s;
    if (aligned && n <= (int64_t)RMS_THREADS * 4 * RMS_V)
        GPU_CHECK(gpu_launch_pdl(rmsnorm_reg_kernel, dim3(n_tok), dim3(RMS_THREADS), st, x, ld_x, w, out, ld_out, n,
                                 eps, (uint8_t *)NULL, (int64_t)0),
                  err);
    else
        GPU_CHECK(gpu_launch_pdl(rmsnorm_kernel, dim3(n_tok), dim3(256), st, x, ld_x, w, out, ld_out, n, eps), err);
    return 0;
}

extern "C" int greta_gpu_rmsnorm_a16_supported(int64_t n)
{
    return n > 0 && n % 256 == 0 && n <= (int64_t)RMS_THREADS * 4 * RMS_V;
}

extern "C" int greta_gpu_rmsnorm_a16(greta_gpu_stream *s, const float *x, int64_t ld_x, const float *w, float *out,
                                     int64_t ld_out, int32_t n_tok, int64_t n, float eps, void *a16, int64_t ld_a,
                                     greta_error *err)
{
    const int aligned = rms_rows_aligned(x, ld_x, w, out, ld_out);
    if (!x || !w || !out || !greta_gpu_rmsnorm_a16_supported(n) || !a16_rows_ok(a16, ld_a, n) || ld_x < n ||
        ld_out < n || n_tok < 0 || !aligned)
        return greta_error_set(err, GRETA_ERR_INVALID,
                               "rmsnorm_a16: bad arguments (n %lld must be a multiple of 256 up to %d, rows and "
                               "a16 stride %lld aligned to 16 bytes)",
                               (long long)n, RMS_THREADS * 4 * RMS_V, (long long)ld_a);
    if (n_tok == 0)
        return 0;
    GPU_CHECK(gpu_launch_pdl(rmsnorm_reg_kernel, dim3(n_tok), dim3(RMS_THREADS), (gpu_stream_t)s, x, ld_x, w, out,
                             ld_out, n, eps, (uint8_t *)a16, ld_a),
              err);
    return 0;
}
