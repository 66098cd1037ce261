/* kv_store.cu - appends a batch's keys and values to the KV cache.
 * Cache layout of one layer: [n_seq][n_kv_heads][n_ctx][head_dim], so the
 * positions a head attends to are one contiguous run. fp16 values are
 * rounded to nearest even. */
#include "gpu_ops.h"
#include "kv_io.cuh"
#include "rope.cuh"

/* grid (n_tok), block 256 */
template <typename KVT>
__global__ void kv_store_kernel(const float *__restrict__ k, const float *__restrict__ v, int64_t ld,
                                const int32_t *__restrict__ pos, const int32_t *__restrict__ seq,
                                KVT *__restrict__ kc, KVT *__restrict__ vc, int32_t n_kv_heads, int32_t head_dim,
                                int32_t n_ctx)
{
    const int32_t p = pos[blockIdx.x], sq = seq[blockIdx.x];
    if (p < 0 || p >= n_ctx || sq < 0)
        return; /* checked by the caller */
    const float *kt = k + (int64_t)blockIdx.x * ld;
    const float *vt = v + (int64_t)blockIdx.x * ld;
    const int n = n_kv_heads * head_dim;
    for (int i = threadIdx.x; i < n; i += blockDim.x) {
        const int h = i / head_dim, d = i % head_dim;
        const int64_t off = kv_offset(sq, h, p, d, n_kv_heads, n_ctx, head_dim);
        kc[off] = kv_io<KVT>::from_float(kt[i]);
        vc[off] = kv_io<KVT>::from_float(vt[i]);
    }
}

extern "C" size_t greta_gpu_kv_elem_bytes(greta_gpu_kv_type kv)
{
    return kv == GRETA_GPU_KV_F32 ? 4 : 2;
}

extern "C" int greta_gpu_kv_store(greta_gpu_stream *s, const float *k, const float *v, int64_t ld, int32_t n_tok,
                                  const int32_t *d_pos, const int32_t *d_seq, void *k_cache, void *v_cache,
                                  greta_gpu_kv_type kv, int32_t n_kv_heads, int32_t head_dim, int32_t n_ctx,
                                  greta_error *err)
{
    if (n_kv_heads <= 0 || head_dim <= 0 || head_dim % 2 != 0 || n_ctx <= 0 ||
        ld < (int64_t)n_kv_heads * head_dim || n_tok < 0 || (kv != GRETA_GPU_KV_F16 && kv != GRETA_GPU_KV_F32))
        return greta_error_set(err, GRETA_ERR_INVALID, "kv_store: bad shape (kv heads %d, head_dim %d, n_ctx %d)",
                               n_kv_heads, head_dim, n_ctx);
    if (n_tok == 0)
        return 0;
    const gpu_stream_t st = (gpu_stream_t)s;
    if (kv == GRETA_GPU_KV_F16)
        kv_store_kernel<uint16_t><<<n_tok, 256, 0, st>>>(k, v, ld, d_pos, d_seq, (uint16_t *)k_cache,
                                                         (uint16_t *)v_cache, n_kv_heads, head_dim, n_ctx);
    else
        kv_store_kernel<float><<<n_tok, 256, 0, st>>>(k, v, ld, d_pos, d_seq, (float *)k_cache, (float *)v_cache,
                                                      n_kv_heads, head_dim, n_ctx);
    GPU_CHECK(gpu_last_error(), err);
    return 0;
}

/* grid (n_tok), block 1024: thread j takes pairs j, j + 1024, ... of q's
 * heads, then of k's heads (rotated, stored, cached) and v's (cached); the
 * buffers do not overlap (__restrict__), so the loads of all iterations can
 * be in flight together. */
template <typename KVT>
__global__ void __launch_bounds__(1024) rope_kv_kernel(float *__restrict__ q, int64_t ld_q, float *__restrict__ k,
                                                       const float *__restrict__ v, int64_t ld_kv,
                               int32_t n_heads, int32_t n_kv_heads, int32_t head_dim, int32_t rope_dim,
                               const float *__restrict__ cs, const int32_t *__restrict__ pos,
                               const int32_t *__restrict__ seq, KVT *__restrict__ kc, KVT *__restrict__ vc,
                               int32_t n_ctx)
{
    const int32_t p = pos[blockIdx.x], sq = seq[blockIdx.x];
    const float *c = cs + (int64_t)blockIdx.x * rope_dim;
    const int half_rope = rope_dim / 2, half_dim = head_dim / 2;
    float *qt = q + (int64_t)blockIdx.x * ld_q;
    for (int j = threadIdx.x; j < n_heads * half_rope; j += blockDim.x) {
        const int h = j / half_rope, i = j % half_rope;
        gpu_rope_pair(qt + (int64_t)h * head_dim + 2 * i, c, i);
    }
    float *kt = k + (int64_t)blockIdx.x * ld_kv;
    const float *vt = v + (int64_t)blockIdx.x * ld_kv;
    const bool store = p >= 0 && p < n_ctx && sq >= 0; /* checked by the caller */
    for (int j = threadIdx.x; j < n_kv_heads * half_dim; j += blockDim.x) {
        const int h = j / half_dim, i = j % half_dim;
        float *kp = kt + (int64_t)h * head_dim + 2 * i;
        if (i < half_rope)
            gpu_rope_pair(kp, c, i);
        if (store) {
            const int64_t off = kv_offset(sq, h, p, 2 * i, n_kv_heads, n_ctx, head_dim);
            kc[off] = kv_io<KVT>::from_float(kp[0]);
            kc[off + 1] = kv_io<KVT>::from_float(kp[1]);
            vc[off] = kv_io<KVT>::from_float(vt[(int64_t)h * head_dim + 2 * i]);
            vc[off + 1] = kv_io<KVT>::from_float(vt[(int64_t)h * head_dim + 2 * i + 1]);
        }
    }
}

extern "C" int greta_gpu_rope_kv_store(greta_gpu_stream *s, float *q, int64_t ld_q, float *k, const float *v,
                                       int64_t ld_kv, int32_t n_tok, int32_t n_heads, int32_t n_kv_heads,
                                       int32_t head_dim, int32_t rope_dim, const float *cs, const int32_t *d_pos,
                                       const int32_t *d_seq, void *k_cache, void *v_cache, greta_gpu_kv_type kv,
                                       int32_t n_ctx, greta_error *err)
{
    if (rope_dim <= 0 || rope_dim % 2 != 0 || rope_dim > head_dim || head_dim % 2 != 0 || n_heads <= 0 ||
        n_kv_heads <= 0 || n_ctx <= 0 || ld_q < (int64_t)n_heads * head_dim || ld_kv < (int64_t)n_kv_heads * head_dim ||
        n_tok < 0 || n_tok > 65535 || (kv != GRETA_GPU_KV_F16 && kv != GRETA_GPU_KV_F32))
        return greta_error_set(err, GRETA_ERR_INVALID,
                               "rope_kv_store: bad shape (heads %d, kv heads %d, head_dim %d, rope_dim %d, n_ctx %d)",
                               n_heads, n_kv_heads, head_dim, rope_dim, n_ctx);
    if (n_tok == 0)
        return 0;
    const gpu_stream_t st = (gpu_stream_t)s;
    if (kv == GRETA_GPU_KV_F16)
        rope_kv_kernel<uint16_t><<<n_tok, 1024, 0, st>>>(q, ld_q, k, v, ld_kv, n_heads, n_kv_heads, head_dim, rope_dim,
                                                        cs, d_pos, d_seq, (uint16_t *)k_cache, (uint16_t *)v_cache,
                                                        n_ctx);
    else
        rope_kv_kernel<float><<<n_tok, 1024, 0, st>>>(q, ld_q, k, v, ld_kv, n_heads, n_kv_heads, head_dim, rope_dim, cs,
                                                     d_pos, d_seq, (float *)k_cache, (float *)v_cache, n_ctx);
    GPU_CHECK(gpu_last_error(), err);
    return 0;
}
