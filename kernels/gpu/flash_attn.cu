/* flash_attn.cu - causal prefill attention of one sequence's chunk of
 * queries, flash-attention style: tiles of queries against tiles of keys,
 * online softmax in fp32, GQA-aware, optionally storing the chunk's keys
 * and values into the fp16 KV cache in the same launch (prefill_ops.h).
 *
 * Cache layout (kv_store.cu): [n_seq][n_kv_heads][n_ctx][head_dim] fp16, so
 * the positions one head attends to are one contiguous run.
 *
 * Keys of positions >= p0 come from k_new/v_new when given (rounded to
 * fp16, the values kv_store would store), older ones from the cache. The
 * cache rows of the chunk are written by the blocks of the first query head
 * of each group (h % group == 0), each block its own query rows' positions:
 * every new position is written once, and no block of the launch reads a
 * cache row that is being written.
 *
 * Two kernels, one algorithm. Query tiles are scheduled last-first (the
 * causal work grows with the position). Every query row sees key 0 in its
 * first key tile, so the running max is finite after it and fully masked
 * later tiles add exactly zero.
 *   fa_mma   NVIDIA, head_dim 64 / 128: 4 warps, 64 queries (16 per warp)
 *            x 64 keys per step; S = Q K^T and O += P V with
 *            mma.sync m16n8k16 (fp16 in, fp32 accumulate), Q kept in
 *            registers as A fragments, K and V tiles in shared memory
 *            (ldmatrix, .trans for V), P reused from the S accumulators as
 *            the A fragments of the second product.
 *   fa_tiled any head_dim 1..256 (and AMD for now): 128 threads, 16
 *            queries x 16 keys per step on the CUDA cores, 8 threads per
 *            query row; K/V tiles in shared memory as fp16, Q as fp32.
 */
#include "gemm_mma.cuh"
#include "gpu_ops.h"
#include "kv_io.cuh" /* kv_offset */
#include "prefill_ops.h"

#define FA_MAX_HEAD_DIM 256
#define FA_LOG2E 1.4426950408889634f

/* Row `pos` of kv head kvh: from the chunk's fp32 inputs (rounded to fp16)
 * for pos >= p0 when they are given, else from the cache. */
__device__ inline uint16_t fa_kv_at(const float *nw, int64_t ld_kv, const uint16_t *cache, int64_t base, int32_t p0,
                                    int32_t pos, int kvh, int head_dim, int d)
{
    if (nw && pos >= p0)
        return gpu_float_to_half(nw[(int64_t)(pos - p0) * ld_kv + (int64_t)kvh * head_dim + d]);
    return cache[base + (int64_t)pos * head_dim + d];
}

/* The fused store: rows [r0, r1) of the chunk, kv head kvh. */
__device__ inline void fa_store_new(const float *kn, const float *vn, int64_t ld_kv, uint16_t *kc, uint16_t *vc,
                                    int64_t base, int32_t p0, int32_t r0, int32_t r1, int kvh, int head_dim)
{
    const int n = (r1 - r0) * head_dim;
    for (int idx = threadIdx.x; idx < n; idx += blockDim.x) {
        const int32_t r = r0 + idx / head_dim;
        const int d = idx % head_dim;
        const int64_t src = (int64_t)r * ld_kv + (int64_t)kvh * head_dim + d;
        const int64_t dst = base + (int64_t)(p0 + r) * head_dim + d;
        kc[dst] = gpu_float_to_half(kn[src]);
        vc[dst] = gpu_float_to_half(vn[src]);
    }
}

/* ---- tiled kernel (CUDA cores, any head_dim) ------------------------------------ */

#define FAT_BQ 16
#define FAT_BK 16
#define FAT_THREADS 128
#define FAT_SUB (FAT_THREADS / FAT_BQ)           /* threads per query row: 8 */
#define FAT_NI (FA_MAX_HEAD_DIM / FAT_SUB)       /* dims per thread: 32 */

static size_t fat_smem_bytes(int head_dim)
{
    return (size_t)FAT_BQ * head_dim * 4 + 2 * (size_t)FAT_BK * head_dim * 2 + (size_t)FAT_BQ * FAT_BK * 4;
}

/* grid (ceil(n_tok / 16), n_heads), block 128, dynamic smem fat_smem_bytes */
__global__ void __launch_bounds__(FAT_THREADS)
fa_tiled_kernel(const float *__restrict__ q, int64_t ld_q, const float *kn, const float *vn, int64_t ld_kv,
                uint16_t *kc, uint16_t *vc, int32_t seq, int32_t p0, int32_t n_tok, int32_t n_heads,
                int32_t n_kv_heads, int32_t head_dim, int32_t n_ctx, float *__restrict__ out, int64_t ld_out)
{
    extern __shared__ uint4 fa_tiled_smem[];
    float *qs = (float *)fa_tiled_smem;                     /* [BQ][D] */
    uint16_t *ks = (uint16_t *)(qs + FAT_BQ * head_dim);    /* [BK][D] */
    uint16_t *vs = ks + FAT_BK * head_dim;                  /* [BK][D] */
    float *ps = (float *)(vs + FAT_BK * head_dim);          /* [BQ][BK] */
    const int D = head_dim;
    const int32_t q0 = (int32_t)(gridDim.x - 1 - blockIdx.x) * FAT_BQ;
    const int h = blockIdx.y, group = n_heads / n_kv_heads, kvh = h / group;
    const int32_t rows = min(FAT_BQ, n_tok - q0);
    const int32_t n_keys = p0 + q0 + rows; /* keys 0 .. last query position */
    const int64_t base = kv_offset(seq, kvh, 0, 0, n_kv_heads, n_ctx, D);
    const float scale = 1.0f / sqrtf((float)D);

    if (kn && h % group == 0)
        fa_store_new(kn, vn, ld_kv, kc, vc, base, p0, q0, q0 + rows, kvh, D);
    for (int idx = threadIdx.x; idx < FAT_BQ * D; idx += FAT_THREADS) {
        const int i = idx / D, d = idx % D;
        qs[idx] = i < rows ? q[(int64_t)(q0 + i) * ld_q + (int64_t)h * D + d] : 0.0f;
    }
    const int i = threadIdx.x / FAT_SUB, sub = threadIdx.x % FAT_SUB;
    const int32_t qpos = p0 + q0 + i;
    float acc[FAT_NI];
#pragma unroll
    for (int u = 0; u < FAT_NI; u++)
        acc[u] = 0.0f;
    float m = -INFINITY, l = 0.0f;
    for (int32_t j0 = 0; j0 < n_keys; j0 += FAT_BK) {
        __syncthreads(); /* the previous tile is consumed (and qs is written) */
        for (int idx = threadIdx.x; idx < FAT_BK * D; idx += FAT_THREADS) {
            const int jj = idx / D, d = idx % D;
            const int32_t pos = j0 + jj;
            uint16_t kv = 0, vv = 0;
            if (pos < n_keys) {
                kv = fa_kv_at(kn, ld_kv, kc, base, p0, pos, kvh, D, d);
                vv = fa_kv_at(vn, ld_kv, vc, base, p0, pos, kvh, D, d);
            }
            ks[idx] = kv, vs[idx] = vv;
        }
        __syncthreads();
        float s[FAT_BK / FAT_SUB];
        float mx = -INFINITY;
#pragma unroll
        for (int c = 0; c < FAT_BK / FAT_SUB; c++) {
            const int jj = sub + FAT_SUB * c;
            s[c] = -INFINITY;
            if (j0 + jj <= qpos) {
                const float *qr = qs + i * D;
                const uint16_t *kr = ks + jj * D;
                float dot = 0.0f;
                for (int d = 0; d < D; d++)
                    dot += qr[d] * gpu_half_to_float(kr[d]);
                s[c] = dot * scale;
            }
            mx = fmaxf(mx, s[c]);
        }
#pragma unroll
        for (int o = FAT_SUB / 2; o > 0; o >>= 1)
            mx = fmaxf(mx, gpu_shfl_xor(mx, o));
        const float m_new = fmaxf(m, mx);
        const float corr = expf(m - m_new);
        float ls = 0.0f;
#pragma unroll
        for (int c = 0; c < FAT_BK / FAT_SUB; c++) {
            const float p = expf(s[c] - m_new);
            ps[i * FAT_BK + sub + FAT_SUB * c] = p;
            ls += p;
        }
#pragma unroll
        for (int o = FAT_SUB / 2; o > 0; o >>= 1)
            ls += gpu_shfl_xor(ls, o);
        l = l * corr + ls;
        m = m_new;
        __syncthreads(); /* ps complete */
#pragma unroll
        for (int u = 0; u < FAT_NI; u++) {
            const int d = sub + FAT_SUB * u;
            if (d < D) {
                float a = acc[u] * corr;
                for (int jj = 0; jj < FAT_BK; jj++)
                    a += ps[i * FAT_BK + jj] * gpu_half_to_float(vs[jj * D + d]);
                acc[u] = a;
            }
        }
    }
    if (i < rows) {
        float *o = out + (int64_t)(q0 + i) * ld_out + (int64_t)h * D;
#pragma unroll
        for (int u = 0; u < FAT_NI; u++) {
            const int d = sub + FAT_SUB * u;
            if (d < D)
                o[d] = acc[u] / l;
        }
    }
}

/* ---- tensor-core kernel (NVIDIA, head_dim 64 / 128) -------------------------------- */

#if defined(GRETA_GPU_CUDA)
#define FAM_BQ 64
#define FAM_BK 64
#define FAM_THREADS 128

__device__ inline uint32_t fa_pack_half2(float lo, float hi)
{
    const __half2 h = __floats2half2_rn(lo, hi);
    return *(const uint32_t *)&h;
}

/* grid (ceil(n_tok / 64), n_heads), block 128 */
template <int D>
__global__ void __launch_bounds__(FAM_THREADS)
fa_mma_kernel(const float *__restrict__ q, int64_t ld_q, const float *kn, const float *vn, int64_t ld_kv, uint16_t *kc,
              uint16_t *vc, int32_t seq, int32_t p0, int32_t n_tok, int32_t n_heads, int32_t n_kv_heads,
              int32_t n_ctx, float *__restrict__ out, int64_t ld_out)
{
    constexpr int LDK = D + 8; /* halves per shared row: conflict-free ldmatrix */
    constexpr int CH = D / 8;  /* 8-element chunks per row */
    __shared__ __align__(16) __half ks[FAM_BK * LDK];
    __shared__ __align__(16) __half vs[FAM_BK * LDK];
    const int32_t q0 = (int32_t)(gridDim.x - 1 - blockIdx.x) * FAM_BQ;
    const int h = blockIdx.y, group = n_heads / n_kv_heads, kvh = h / group;
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, g = lane >> 2, qd = lane & 3;
    const int32_t rows = min(FAM_BQ, n_tok - q0);
    const int32_t n_keys = p0 + q0 + rows;
    const int64_t base = kv_offset(seq, kvh, 0, 0, n_kv_heads, n_ctx, D);
    const float sl2 = FA_LOG2E / sqrtf((float)D); /* scores in log2 units */

    if (kn && h % group == 0)
        fa_store_new(kn, vn, ld_kv, kc, vc, base, p0, q0, q0 + rows, kvh, D);

    /* Q (fp16) through ks into A fragments */
    for (int idx = threadIdx.x; idx < FAM_BQ * CH; idx += FAM_THREADS) {
        const int r = idx / CH, c = (idx % CH) * 8;
        uint4 u = make_uint4(0, 0, 0, 0);
        if (r < rows) {
            const float *src = q + (int64_t)(q0 + r) * ld_q + (int64_t)h * D + c;
            u.x = fa_pack_half2(src[0], src[1]), u.y = fa_pack_half2(src[2], src[3]);
            u.z = fa_pack_half2(src[4], src[5]), u.w = fa_pack_half2(src[6], src[7]);
        }
        *(uint4 *)(ks + r * LDK + c) = u;
    }
    __syncthreads();
    uint32_t qf[D / 16][4];
#pragma unroll
    for (int kk = 0; kk < D / 16; kk++)
        mma_ldmatrix_x4(qf[kk], ks + (warp * 16 + (lane & 15)) * LDK + kk * 16 + (lane >> 4) * 8);

    float o[D / 8][4];
#pragma unroll
    for (int j = 0; j < D / 8; j++)
        o[j][0] = o[j][1] = o[j][2] = o[j][3] = 0.0f;
    float m0 = -INFINITY, m1 = -INFINITY, l0 = 0.0f, l1 = 0.0f;
    const int32_t qpos0 = p0 + q0 + warp * 16 + g, qpos1 = qpos0 + 8;
    const int32_t warp_last = p0 + q0 + warp * 16 + 15;

    for (int32_t j0 = 0; j0 < n_keys; j0 += FAM_BK) {
        __syncthreads(); /* previous tile (or the Q staging) consumed */
        for (int idx = threadIdx.x; idx < FAM_BK * CH; idx += FAM_THREADS) {
            const int jj = idx / CH, c = (idx % CH) * 8;
            const int32_t pos = j0 + jj;
            uint4 ku = make_uint4(0, 0, 0, 0), vu = make_uint4(0, 0, 0, 0);
            if (pos < n_keys) {
                if (kn && pos >= p0) {
                    const float *ksrc = kn + (int64_t)(pos - p0) * ld_kv + (int64_t)kvh * D + c;
                    const float *vsrc = vn + (int64_t)(pos - p0) * ld_kv + (int64_t)kvh * D + c;
                    ku.x = fa_pack_half2(ksrc[0], ksrc[1]), ku.y = fa_pack_half2(ksrc[2], ksrc[3]);
                    ku.z = fa_pack_half2(ksrc[4], ksrc[5]), ku.w = fa_pack_half2(ksrc[6], ksrc[7]);
                    vu.x = fa_pack_half2(vsrc[0], vsrc[1]), vu.y = fa_pack_half2(vsrc[2], vsrc[3]);
                    vu.z = fa_pack_half2(vsrc[4], vsrc[5]), vu.w = fa_pack_half2(vsrc[6], vsrc[7]);
                } else {
                    ku = *(const uint4 *)(kc + base + (int64_t)pos * D + c);
                    vu = *(const uint4 *)(vc + base + (int64_t)pos * D + c);
                }
            }
            *(uint4 *)(ks + jj * LDK + c) = ku;
            *(uint4 *)(vs + jj * LDK + c) = vu;
        }
        __syncthreads();
        if (j0 > warp_last)
            continue; /* every key of this tile is after this warp's queries */

        /* S = Q K^T: 16 rows x 64 keys per warp */
        float s[8][4];
#pragma unroll
        for (int j = 0; j < 8; j++)
            s[j][0] = s[j][1] = s[j][2] = s[j][3] = 0.0f;
#pragma unroll
        for (int kk = 0; kk < D / 16; kk++)
#pragma unroll
            for (int j = 0; j < 8; j += 2) {
                uint32_t r[4];
                mma_ldmatrix_x4(r, ks + (j * 8 + (lane & 7) + ((lane >> 4) << 3)) * LDK + kk * 16 +
                                       ((lane >> 3) & 1) * 8);
                mma_16816(s[j], qf[kk], r[0], r[1]);
                mma_16816(s[j + 1], qf[kk], r[2], r[3]);
            }
        /* scale, causal mask, running max */
        float mx0 = -INFINITY, mx1 = -INFINITY;
#pragma unroll
        for (int j = 0; j < 8; j++)
#pragma unroll
            for (int e = 0; e < 2; e++) {
                const int32_t key = j0 + j * 8 + 2 * qd + e;
                s[j][e] = key <= qpos0 ? s[j][e] * sl2 : -INFINITY;
                s[j][2 + e] = key <= qpos1 ? s[j][2 + e] * sl2 : -INFINITY;
                mx0 = fmaxf(mx0, s[j][e]);
                mx1 = fmaxf(mx1, s[j][2 + e]);
            }
#pragma unroll
        for (int x = 1; x <= 2; x <<= 1) {
            mx0 = fmaxf(mx0, __shfl_xor_sync(0xffffffffu, mx0, x));
            mx1 = fmaxf(mx1, __shfl_xor_sync(0xffffffffu, mx1, x));
        }
        const float mn0 = fmaxf(m0, mx0), mn1 = fmaxf(m1, mx1);
        const float c0 = exp2f(m0 - mn0), c1 = exp2f(m1 - mn1);
        m0 = mn0, m1 = mn1;
        float ls0 = 0.0f, ls1 = 0.0f;
#pragma unroll
        for (int j = 0; j < 8; j++) {
            s[j][0] = exp2f(s[j][0] - mn0), s[j][1] = exp2f(s[j][1] - mn0);
            s[j][2] = exp2f(s[j][2] - mn1), s[j][3] = exp2f(s[j][3] - mn1);
            ls0 += s[j][0] + s[j][1];
            ls1 += s[j][2] + s[j][3];
        }
        l0 = l0 * c0 + ls0; /* this thread's columns; the quad is summed at the end */
        l1 = l1 * c1 + ls1;
#pragma unroll
        for (int j = 0; j < D / 8; j++)
            o[j][0] *= c0, o[j][1] *= c0, o[j][2] *= c1, o[j][3] *= c1;
        /* O += P V: the S accumulators of key tiles 2kk, 2kk+1 are the A
         * fragment of keys 16kk .. 16kk+15 */
#pragma unroll
        for (int kk = 0; kk < FAM_BK / 16; kk++) {
            uint32_t a[4];
            a[0] = fa_pack_half2(s[2 * kk][0], s[2 * kk][1]);
            a[1] = fa_pack_half2(s[2 * kk][2], s[2 * kk][3]);
            a[2] = fa_pack_half2(s[2 * kk + 1][0], s[2 * kk + 1][1]);
            a[3] = fa_pack_half2(s[2 * kk + 1][2], s[2 * kk + 1][3]);
#pragma unroll
            for (int dj = 0; dj < D / 8; dj += 2) {
                uint32_t r[4];
                mma_ldmatrix_x4_trans(r, vs + (kk * 16 + (lane & 7) + ((lane >> 3) & 1) * 8) * LDK + dj * 8 +
                                             (lane >> 4) * 8);
                mma_16816(o[dj], a, r[0], r[1]);
                mma_16816(o[dj + 1], a, r[2], r[3]);
            }
        }
    }
#pragma unroll
    for (int x = 1; x <= 2; x <<= 1) {
        l0 += __shfl_xor_sync(0xffffffffu, l0, x);
        l1 += __shfl_xor_sync(0xffffffffu, l1, x);
    }
    const int32_t r0 = q0 + warp * 16 + g, r1 = r0 + 8;
#pragma unroll
    for (int j = 0; j < D / 8; j++)
#pragma unroll
        for (int e = 0; e < 2; e++) {
            const int d = j * 8 + 2 * qd + e;
            if (r0 < n_tok)
                out[(int64_t)r0 * ld_out + (int64_t)h * D + d] = o[j][e] / l0;
            if (r1 < n_tok)
                out[(int64_t)r1 * ld_out + (int64_t)h * D + d] = o[j][2 + e] / l1;
        }
}
#endif

extern "C" int greta_gpu_flash_attn_uses_mma(int32_t head_dim)
{
#if defined(GRETA_GPU_CUDA)
    return head_dim == 64 || head_dim == 128;
#else
    return 0;
#endif
}

extern "C" int greta_gpu_flash_attn(greta_gpu_stream *s, const float *q, int64_t ld_q, const float *k_new,
                                    const float *v_new, int64_t ld_kv, uint16_t *k_cache, uint16_t *v_cache,
                                    int32_t seq, int32_t p0, int32_t n_tok, int32_t n_heads, int32_t n_kv_heads,
                                    int32_t head_dim, int32_t n_ctx, float *out, int64_t ld_out, greta_error *err)
{
    if (n_heads <= 0 || n_kv_heads <= 0 || n_heads % n_kv_heads != 0 || n_heads > 65535 || head_dim <= 0 ||
        head_dim > FA_MAX_HEAD_DIM || n_ctx <= 0 || n_tok < 0 || p0 < 0 || seq < 0 || p0 > n_ctx - n_tok ||
        ld_q < (int64_t)n_heads * head_dim || ld_out < (int64_t)n_heads * head_dim)
        return greta_error_set(err, GRETA_ERR_INVALID,
                               "flash_attn: bad shape (heads %d, kv heads %d, head_dim %d, n_ctx %d, p0 %d, "
                               "tokens %d, seq %d)",
                               n_heads, n_kv_heads, head_dim, n_ctx, p0, n_tok, seq);
    if ((k_new == NULL) != (v_new == NULL) || (k_new && ld_kv < (int64_t)n_kv_heads * head_dim))
        return greta_error_set(err, GRETA_ERR_INVALID,
                               "flash_attn: k_new and v_new go together, rows of at least n_kv_heads * head_dim");
    if (n_tok == 0)
        return 0;
    if (!q || !k_cache || !v_cache || !out)
        return greta_error_set(err, GRETA_ERR_INVALID, "flash_attn: null operand");
    const gpu_stream_t st = (gpu_stream_t)s;
#if defined(GRETA_GPU_CUDA)
    /* the tensor-core kernel reads cache rows 16 bytes at a time */
    if (greta_gpu_flash_attn_uses_mma(head_dim) && ((uintptr_t)k_cache | (uintptr_t)v_cache) % 16 == 0) {
        const dim3 grid((unsigned)((n_tok + FAM_BQ - 1) / FAM_BQ), (unsigned)n_heads);
        if (head_dim == 64)
            fa_mma_kernel<64><<<grid, FAM_THREADS, 0, st>>>(q, ld_q, k_new, v_new, ld_kv, k_cache, v_cache, seq, p0,
                                                            n_tok, n_heads, n_kv_heads, n_ctx, out, ld_out);
        else
            fa_mma_kernel<128><<<grid, FAM_THREADS, 0, st>>>(q, ld_q, k_new, v_new, ld_kv, k_cache, v_cache, seq, p0,
                                                             n_tok, n_heads, n_kv_heads, n_ctx, out, ld_out);
        GPU_CHECK(gpu_last_error(), err);
        return 0;
    }
#endif
    const dim3 grid((unsigned)((n_tok + FAT_BQ - 1) / FAT_BQ), (unsigned)n_heads);
    fa_tiled_kernel<<<grid, FAT_THREADS, fat_smem_bytes(head_dim), st>>>(q, ld_q, k_new, v_new, ld_kv, k_cache,
                                                                         v_cache, seq, p0, n_tok, n_heads, n_kv_heads,
                                                                         head_dim, n_ctx, out, ld_out);
    GPU_CHECK(gpu_last_error(), err);
    return 0;
}
