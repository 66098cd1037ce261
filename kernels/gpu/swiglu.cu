/* swiglu.cu - gate = silu(gate) * up, elementwise, fp32. */
#include "gpu_ops.h"
#include "gpu_port.h"

__global__ void swiglu_kernel(float *gate, const float *__restrict__ up, int64_t ld, int64_t n)
{
    float *g = gate + (int64_t)blockIdx.y * ld;
    const float *u = up + (int64_t)blockIdx.y * ld;
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x) {
        const float v = g[i];
        const float silu = v / (1.0f + expf(-v));
        g[i] = silu * u[i];
    }
}

extern "C" int greta_gpu_swiglu(greta_gpu_stream *s, float *gate, const float *up, int64_t ld, int32_t n_tok,
                                int64_t n, greta_error *err)
{
    if (n <= 0 || ld < n || n_tok < 0 || n_tok > 65535)
        return greta_error_set(err, GRETA_ERR_INVALID, "swiglu: bad shape (n %lld, tokens %d)", (long long)n, n_tok);
    if (n_tok == 0)
        return 0;
    int64_t blocks = (n + 255) / 256;
    if (blocks > 1024)
        blocks = 1024;
    swiglu_kernel<<<dim3((unsigned)blocks, (unsigned)n_tok), 256, 0, (gpu_stream_t)s>>>(gate, up, ld, n);
    GPU_CHECK(gpu_last_error(), err);
    return 0;
}
