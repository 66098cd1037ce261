/* gather.cu - copies selected rows (the tokens whose logits are wanted). */
#include "gpu_ops.h"
#include "gpu_port.h"

__global__ void gather_kernel(const float *__restrict__ x, int64_t ld_x, const int32_t *__restrict__ rows,
                              int64_t n, float *__restrict__ out, int64_t ld_out)
{
    const float *src = x + (int64_t)rows[blockIdx.x] * ld_x;
    float *dst = out + (int64_t)blockIdx.x * ld_out;
    for (int64_t i = threadIdx.x; i < n; i += blockDim.x)
        dst[i] = src[i];
}

extern "C" int greta_gpu_gather_rows(greta_gpu_stream *s, const float *x, int64_t ld_x, const int32_t *d_rows,
                                     int32_t n_rows, int64_t n, float *out, int64_t ld_out, greta_error *err)
{
    if (n <= 0 || ld_x < n || ld_out < n || n_rows < 0)
        return greta_error_set(err, GRETA_ERR_INVALID, "gather: bad shape (n %lld)", (long long)n);
    if (n_rows == 0)
        return 0;
    gather_kernel<<<n_rows, 256, 0, (gpu_stream_t)s>>>(x, ld_x, d_rows, n, out, ld_out);
    GPU_CHECK(gpu_last_error(), err);
    return 0;
}
