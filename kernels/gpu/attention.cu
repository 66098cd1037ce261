/* attention.cu - causal grouped-query attention over the KV cache, for
 * prefill and decode alike.
 *
 * Block (head h, token t, split sp) of ATT_THREADS threads: the positions
 * 0..pos[t] of the token's sequence are cut into n_split equal chunks
 * (computed on the device from pos[t], so a captured step stays valid as
 * the context grows). Each warp takes ATT_P consecutive positions at a time
 * (then skips the other warps' groups): lane i holds the dim pairs
 * (2i, 2i+1), (2i + 2W, 2i + 2W + 1), ... (W = GRETA_WARP) of q and of the
 * running output, loads the ATT_P keys' pairs at once, reduces the ATT_P
 * dot products across the warp, and updates the online softmax (running max
 * m and sum l, fp32) and the weighted sum of values. The warps merge in
 * shared memory (att_merge_slots); with n_split == 1 the block writes the
 * normalized output.
 *
 * With n_split > 1 (flash-decoding: decode uses many blocks per head) the
 * chunks are combined in the same launch (att_merge_last), not by a second
 * kernel: each block writes its (m, l, acc) row to `partial`, fences, and
 * adds one to the (t, h) counter (atomicAdd); the block that sees
 * n_split - 1 is the last of (t, h): it reads the n_split rows, combines
 * them as the former merge kernel did and writes the normalized output, and
 * sets the counter back to 0, so the next launch (or a replay of a captured
 * graph) starts from zero. The counters are the first
 * GRETA_GPU_ATTENTION_SPLIT_ROWS words of `partial`, at the same place
 * whatever the call's shape (calls of different n_tok and n_split share one
 * buffer, and another shape's rows must never land on them); the rows
 * follow. greta_gpu_attention_partial_init zeroes the counters once, before
 * the first use (outside graph capture).
 */
#include "attention.cuh"

#define ATT_THREADS 128
#define ATT_MAX_HEAD_DIM 256
#define ATT_P 8                                          /* positions per warp step */
#define ATT_NP (ATT_MAX_HEAD_DIM / (2 * GRETA_WARP))      /* dim pairs per lane */
#define ATT_MAX_WARPS (ATT_THREADS / GRETA_WARP)

template <typename KVT>
__global__ void __launch_bounds__(ATT_THREADS)
attention_kernel(const float *__restrict__ q, int64_t ld_q, const KVT *__restrict__ kc, const KVT *__restrict__ vc,
                 const int32_t *__restrict__ pos, const int32_t *__restrict__ seq, int32_t n_heads,
                 int32_t n_kv_heads, int32_t head_dim, int32_t n_ctx, int32_t n_split, float *__restrict__ partial,
                 float *__restrict__ out, int64_t ld_out)
{
    __shared__ float sm_m[ATT_MAX_WARPS], sm_l[ATT_MAX_WARPS];
    __shared__ float sm_acc[ATT_MAX_WARPS][ATT_MAX_HEAD_DIM];
    const int h = blockIdx.x, t = blockIdx.y, sp = blockIdx.z;
    const int lane = threadIdx.x % GRETA_WARP, warp = threadIdx.x / GRETA_WARP;
    const int n_warps = blockDim.x / GRETA_WARP;
    const int32_t p = pos[t], sq = seq[t];
    int32_t start, end;
    att_split_range(p, n_ctx, n_split, sp, start, end);
    const int kvh = h / (n_heads / n_kv_heads);
    const int half_dim = head_dim / 2;
    const float scale = 1.0f / sqrtf((float)head_dim);

    float2 qv[ATT_NP], acc[ATT_NP];
    const float *qt = q + (int64_t)t * ld_q + (int64_t)h * head_dim;
#pragma unroll
    for (int ni = 0; ni < ATT_NP; ni++) {
        const int pi = lane + ni * GRETA_WARP;
        qv[ni] = pi < half_dim ? make_float2(qt[2 * pi], qt[2 * pi + 1]) : make_float2(0.0f, 0.0f);
        acc[ni] = make_float2(0.0f, 0.0f);
    }
    float m = -INFINITY, l = 0.0f;
    const int64_t base = kv_offset(sq, kvh, 0, 0, n_kv_heads, n_ctx, head_dim);
    const KVT *kb = kc + base, *vb = vc + base;
    for (int32_t j0 = start + warp * ATT_P; j0 < end; j0 += n_warps * ATT_P) {
        float s[ATT_P];
#pragma unroll
        for (int i = 0; i < ATT_P; i++) {
            s[i] = 0.0f;
            if (j0 + i < end) {
                const KVT *kj = kb + (int64_t)(j0 + i) * head_dim;
#pragma unroll
                for (int ni = 0; ni < ATT_NP; ni++) {
                    const int pi = lane + ni * GRETA_WARP;
                    if (pi < half_dim) {
                        const float2 kk = kv_io<KVT>::load2(kj + 2 * pi);
                        s[i] += qv[ni].x * kk.x + qv[ni].y * kk.y;
                    }
                }
            }
        }
        float mx = m;
#pragma unroll
        for (int i = 0; i < ATT_P; i++) {
            s[i] = gpu_warp_sum(s[i]) * scale;
            if (j0 + i < end)
                mx = fmaxf(mx, s[i]);
        }
        const float corr = expf(m - mx);
        float e[ATT_P], esum = 0.0f;
#pragma unroll
        for (int i = 0; i < ATT_P; i++) {
            e[i] = j0 + i < end ? expf(s[i] - mx) : 0.0f;
            esum += e[i];
        }
        l = l * corr + esum;
#pragma unroll
        for (int ni = 0; ni < ATT_NP; ni++) {
            acc[ni].x *= corr;
            acc[ni].y *= corr;
        }
#pragma unroll
        for (int i = 0; i < ATT_P; i++) {
            if (j0 + i < end) {
                const KVT *vj = vb + (int64_t)(j0 + i) * head_dim;
#pragma unroll
                for (int ni = 0; ni < ATT_NP; ni++) {
                    const int pi = lane + ni * GRETA_WARP;
                    if (pi < half_dim) {
                        const float2 vv = kv_io<KVT>::load2(vj + 2 * pi);
                        acc[ni].x += e[i] * vv.x;
                        acc[ni].y += e[i] * vv.y;
                    }
                }
            }
        }
        m = mx;
    }
    /* merge the warps */
    if (lane == 0) {
        sm_m[warp] = m;
        sm_l[warp] = l;
    }
#pragma unroll
    for (int ni = 0; ni < ATT_NP; ni++) {
        const int pi = lane + ni * GRETA_WARP;
        if (pi < half_dim) {
            sm_acc[warp][2 * pi] = acc[ni].x;
            sm_acc[warp][2 * pi + 1] = acc[ni].y;
        }
    }
    __syncthreads();
    att_merge_slots(n_warps, sm_m, sm_l, &sm_acc[0][0], ATT_MAX_HEAD_DIM, head_dim, t, h, sp, n_heads, n_split, partial,
                    out, ld_out);
}

/* The shape checks both attention entry points share. */
static int att_check(const char *what, int32_t n_tok, int32_t n_heads, int32_t n_kv_heads, int32_t head_dim,
                     int32_t n_ctx, int32_t n_split, int64_t ld_q, int64_t ld_out, const float *partial,
                     greta_gpu_kv_type kv, greta_error *err)
{
    if (n_heads <= 0 || n_kv_heads <= 0 || n_heads % n_kv_heads != 0 || head_dim <= 0 || head_dim % 2 != 0 ||
        head_dim > ATT_MAX_HEAD_DIM || n_ctx <= 0 || n_split < 1 || n_split > 65535 || n_heads > 65535 ||
        n_tok < 0 || n_tok > 65535 || ld_q < (int64_t)n_heads * head_dim || ld_out < (int64_t)n_heads * head_dim ||
        (n_split > 1 && !partial) || (kv != GRETA_GPU_KV_F16 && kv != GRETA_GPU_KV_F32))
        return greta_error_set(err, GRETA_ERR_INVALID,
                               "%s: bad shape (heads %d, kv heads %d, head_dim %d, n_ctx %d, split %d)", what,
                               n_heads, n_kv_heads, head_dim, n_ctx, n_split);
    if (n_split > 1 && (int64_t)n_tok * n_heads > GRETA_GPU_ATTENTION_SPLIT_ROWS)
        return greta_error_set(err, GRETA_ERR_INVALID,
                               "%s: %d tokens x %d heads split in %d (at most %d token-heads with splits)", what,
                               n_tok, n_heads, n_split, GRETA_GPU_ATTENTION_SPLIT_ROWS);
    return 0;
}

template <typename KVT, int THREADS, int U, bool PREF>
static gpu_error_t attention_dec_go(gpu_stream_t st, dim3 grid, int32_t head_dim, const dec_args &A)
{
#define DEC_CASE(G)                                                                                            \
    case 8 * G:                                                                                                \
        return gpu_launch_pdl(attention_dec_kernel<KVT, G, THREADS, U, PREF>, grid, dim3(THREADS), st, A);
    switch (head_dim) {
        DEC_CASE(1)
        DEC_CASE(2)
        DEC_CASE(4)
        DEC_CASE(8)
        DEC_CASE(16)
        DEC_CASE(32)
    default: break;
    }
#undef DEC_CASE
    return gpu_success; /* head_dim checked by the caller */
}

/* The shape for the cache type: one block per (token, head), or split;
 * with decode table 1, the L2 prefetch before the wait (PREF). */
template <typename KVT>
static gpu_error_t attention_dec_shape(gpu_stream_t st, dim3 grid, int32_t head_dim, int one_block, const dec_args &A)
{
    if (greta_gpu_decode_table() >= 1)
        return one_block ? attention_dec_go<KVT, DEC1_THREADS, DEC1_U, true>(st, grid, head_dim, A)
                         : attention_dec_go<KVT, ATT_THREADS, DEC_U, true>(st, grid, head_dim, A);
    return one_block ? attention_dec_go<KVT, DEC1_THREADS, DEC1_U, false>(st, grid, head_dim, A)
                     : attention_dec_go<KVT, ATT_THREADS, DEC_U, false>(st, grid, head_dim, A);
}

extern "C" int greta_gpu_attention_decode_supported(int32_t head_dim)
{
    return head_dim == 8 || head_dim == 16 || head_dim == 32 || head_dim == 64 || head_dim == 128 ||
           head_dim == 256;
}

extern "C" int greta_gpu_attention_decode(greta_gpu_stream *s, const float *q, int64_t ld_q, const void *k_cache,
                                          const void *v_cache, greta_gpu_kv_type kv, const int32_t *d_pos,
                                          const int32_t *d_seq, int32_t n_tok, int32_t n_heads, int32_t n_kv_heads,
                                          int32_t head_dim, int32_t n_ctx, int32_t n_split, int one_block,
                                          float *partial, float *out, int64_t ld_out, greta_error *err)
{
    if (!greta_gpu_attention_decode_supported(head_dim))
        return greta_error_set(err, GRETA_ERR_UNSUPPORTED,
                               "attention_decode: head_dim %d (8, 16, 32, 64, 128 or 256)", head_dim);
    int rc = att_check("attention_decode", n_tok, n_heads, n_kv_heads, head_dim, n_ctx, n_split, ld_q, ld_out,
                       partial, kv, err);
    if (rc)
        return rc;
    if (ld_q % 4 != 0)
        return greta_error_set(err, GRETA_ERR_INVALID, "attention_decode: ld_q %lld is not a multiple of 4",
                               (long long)ld_q);
    if (one_block && n_split != 1)
        return greta_error_set(err, GRETA_ERR_INVALID, "attention_decode: one block per head with %d splits",
                               n_split);
    if (n_tok == 0)
        return 0;
    const gpu_stream_t st = (gpu_stream_t)s;
    const dim3 grid(n_heads, n_tok, n_split);
    const dec_args A = {q, ld_q, k_cache, v_cache, d_pos, d_seq, n_heads, n_kv_heads, n_ctx, n_split, partial, out,
                        ld_out};
    const gpu_error_t e = kv == GRETA_GPU_KV_F16 ? attention_dec_shape<uint16_t>(st, grid, head_dim, one_block, A)
                                                 : attention_dec_shape<float>(st, grid, head_dim, one_block, A);
    GPU_CHECK(e, err);
    return 0;
}

extern "C" int64_t greta_gpu_attention_partial_floats(int32_t n_tok, int32_t n_heads, int32_t head_dim,
                                                      int32_t n_split)
{
    /* the counters (uint32, the size of a float), then the rows */
    return n_split <= 1 ? 0
                        : GRETA_GPU_ATTENTION_SPLIT_ROWS + (int64_t)n_tok * n_heads * n_split * (head_dim + 2);
}

extern "C" int greta_gpu_attention_partial_init(greta_gpu_stream *s, float *partial, int32_t n_tok, int32_t n_heads,
                                                int32_t head_dim, int32_t n_split, greta_error *err)
{
    if (greta_gpu_attention_partial_floats(n_tok, n_heads, head_dim, n_split) == 0)
        return 0;
    if (!partial)
        return greta_error_set(err, GRETA_ERR_INVALID, "attention_partial_init: no buffer (split %d)", n_split);
    GPU_CHECK(gpu_memset_async(partial, 0, sizeof(uint32_t) * GRETA_GPU_ATTENTION_SPLIT_ROWS, (gpu_stream_t)s), err);
    return 0;
}

extern "C" int greta_gpu_attention(greta_gpu_stream *s, const float *q, int64_t ld_q, const void *k_cache,
                                   const void *v_cache, greta_gpu_kv_type kv, const int32_t *d_pos,
                                   const int32_t *d_seq, int32_t n_tok, int32_t n_heads, int32_t n_kv_heads,
                                   int32_t head_dim, int32_t n_ctx, int32_t n_split, float *partial, float *out,
                                   int64_t ld_out, greta_error *err)
{
    const int rc = att_check("attention", n_tok, n_heads, n_kv_heads, head_dim, n_ctx, n_split, ld_q, ld_out,
                             partial, kv, err);
    if (rc)
        return rc;
    if (n_tok == 0)
        return 0;
    const gpu_stream_t st = (gpu_stream_t)s;
    const dim3 grid(n_heads, n_tok, n_split);
    if (kv == GRETA_GPU_KV_F16)
        attention_kernel<uint16_t><<<grid, ATT_THREADS, 0, st>>>(
            q, ld_q, (const uint16_t *)k_cache, (const uint16_t *)v_cache, d_pos, d_seq, n_heads, n_kv_heads,
            head_dim, n_ctx, n_split, partial, out, ld_out);
    else
        attention_kernel<float><<<grid, ATT_THREADS, 0, st>>>(q, ld_q, (const float *)k_cache,
                                                             (const float *)v_cache, d_pos, d_seq, n_heads,
                                                             n_kv_heads, head_dim, n_ctx, n_split, partial, out,
                                                             ld_out);
    GPU_CHECK(gpu_last_error(), err);
    return 0;
}
