/* kv_store.cu - appends a batch's keys and values to the KV cache.
 * Cache layout of one layer: [n_seq][n_kv_heads][n_ctx][head_dim], so the
 * positions a head attends to are one contiguous run. fp16 values are
 * rounded to nearest even. */
#include "gpu_ops.h"
#include "kv_io.cuh"

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
        const int64_t off = (((int64_t)sq * n_kv_heads + h) * n_ctx + p) * head_dim + d;
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
