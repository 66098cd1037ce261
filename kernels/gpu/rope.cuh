/* rope.cuh - one RoPE rotation of an adjacent pair, shared by rope.cu and
 * the fused RoPE + KV cache launch of kv_store.cu: the four rounded
 * products and two sums of greta_cpu_rope, so GPU and CPU agree bit for bit
 * on equal inputs. */
#ifndef GRETA_GPU_ROPE_CUH
#define GRETA_GPU_ROPE_CUH

#include "gpu_port.h"

/* (p[0], p[1]) rotated by cos c[2i], sin c[2i+1]. */
__device__ inline void gpu_rope_pair(float *p, const float *c, int i)
{
    const float co = c[2 * i], si = c[2 * i + 1];
    const float x0 = p[0], x1 = p[1];
    const float a = gpu_mul_rn(x0, co), b = gpu_mul_rn(x1, si);
    const float e = gpu_mul_rn(x0, si), f = gpu_mul_rn(x1, co);
    p[0] = gpu_sub_rn(a, b);
    p[1] = gpu_add_rn(e, f);
}

/* The table row of position p (greta_gpu_rope_table): pairs i = first,
 * first + step, ... of rope_dim / 2. */
__device__ inline void gpu_rope_table_row(int32_t p, int32_t rope_dim, float freq_base, float freq_scale, float *c,
                                          int first, int step)
{
    for (int i = first; i < rope_dim / 2; i += step) {
        const double inv_freq = pow((double)freq_base, -2.0 * i / (double)rope_dim);
        const double theta = (double)p * (double)freq_scale * inv_freq;
        c[2 * i] = (float)cos(theta);
        c[2 * i + 1] = (float)sin(theta);
    }
}

#endif
