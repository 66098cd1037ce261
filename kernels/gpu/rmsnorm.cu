/* rmsnorm.cu - RMSNorm of each token row; the sum of squares in fp32. */
#include "gpu_ops.h"
#include "gpu_port.h"

/* grid (n_tok), block 256. */
__global__ void rmsnorm_kernel(const float *__restrict__ x, int64_t ld_x, const float *__restrict__ w,
                               float *out, int64_t ld_out, int64_t n, float eps)
{
    __shared__ float scratch[GPU_MAX_WARPS];
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

extern "C" int greta_gpu_rmsnorm(greta_gpu_stream *s, const float *x, int64_t ld_x, const float *w, float *out,
                                 int64_t ld_out, int32_t n_tok, int64_t n, float eps, greta_error *err)
{
    if (n <= 0 || ld_x < n || ld_out < n || n_tok < 0)
        return greta_error_set(err, GRETA_ERR_INVALID, "rmsnorm: bad shape (n %lld)", (long long)n);
    if (n_tok == 0)
        return 0;
    rmsnorm_kernel<<<n_tok, 256, 0, (gpu_stream_t)s>>>(x, ld_x, w, out, ld_out, n, eps);
    GPU_CHECK(gpu_last_error(), err);
    return 0;
}
