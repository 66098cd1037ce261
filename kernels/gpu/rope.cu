/* rope.cu - rotary position embedding ("normal" mode: adjacent pairs).
 *
 * The table of cos/sin per token is computed once per forward call in
 * double and rounded once to fp32, exactly as the CPU reference
 * (greta_cpu_rope_table); the rotation then uses the same four rounded
 * products and two sums as greta_cpu_rope, so GPU and CPU agree bit for bit
 * on this op. */
#include "gpu_ops.h"
#include "gpu_port.h"
#include "rope.cuh"

/* grid (n_tok), block 128 */
__global__ void rope_table_kernel(const int32_t *__restrict__ pos, int32_t rope_dim, float freq_base,
                                  float freq_scale, float *__restrict__ cs)
{
    gpu_rope_table_row(pos[blockIdx.x], rope_dim, freq_base, freq_scale, cs + (int64_t)blockIdx.x * rope_dim,
                       (int)threadIdx.x, (int)blockDim.x);
}

/* grid (n_tok), block 256: thread j rotates pairs j, j + 256, ... of all heads */
__global__ void rope_kernel(float *x, int64_t ld_x, int32_t n_heads, int32_t head_dim, int32_t rope_dim,
                            const float *__restrict__ cs)
{
    float *xt = x + (int64_t)blockIdx.x * ld_x;
    const float *c = cs + (int64_t)blockIdx.x * rope_dim;
    const int half = rope_dim / 2;
    for (int j = threadIdx.x; j < n_heads * half; j += blockDim.x) {
        const int h = j / half, i = j % half;
        gpu_rope_pair(xt + (int64_t)h * head_dim + 2 * i, c, i);
    }
}

extern "C" int greta_gpu_rope_table(greta_gpu_stream *s, const int32_t *d_pos, int32_t n_tok, int32_t rope_dim,
                                    float freq_base, float freq_scale, float *cs, greta_error *err)
{
    if (rope_dim <= 0 || rope_dim % 2 != 0 || n_tok < 0)
        return greta_error_set(err, GRETA_ERR_INVALID, "rope: rope_dim %d must be even and positive", rope_dim);
    if (n_tok == 0)
        return 0;
    rope_table_kernel<<<n_tok, 128, 0, (gpu_stream_t)s>>>(d_pos, rope_dim, freq_base, freq_scale, cs);
    GPU_CHECK(gpu_last_error(), err);
    return 0;
}

extern "C" int greta_gpu_rope(greta_gpu_stream *s, float *x, int64_t ld_x, int32_t n_tok, int32_t n_heads,
                              int32_t head_dim, int32_t rope_dim, const float *cs, greta_error *err)
{
    if (rope_dim <= 0 || rope_dim % 2 != 0 || rope_dim > head_dim || n_heads <= 0 ||
        ld_x < (int64_t)n_heads * head_dim || n_tok < 0)
        return greta_error_set(err, GRETA_ERR_INVALID, "rope: bad shape (heads %d, head_dim %d, rope_dim %d)",
                               n_heads, head_dim, rope_dim);
    if (n_tok == 0)
        return 0;
    rope_kernel<<<n_tok, 256, 0, (gpu_stream_t)s>>>(x, ld_x, n_heads, head_dim, rope_dim, cs);
    GPU_CHECK(gpu_last_error(), err);
    return 0;
}
