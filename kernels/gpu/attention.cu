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
#include "gpu_ops.h"
#include "kv_io.cuh"

#define ATT_THREADS 128
#define ATT_MAX_HEAD_DIM 256
#define ATT_P 8                                          /* positions per warp step */
#define ATT_NP (ATT_MAX_HEAD_DIM / (2 * GRETA_WARP))      /* dim pairs per lane */
#define ATT_MAX_WARPS (ATT_THREADS / GRETA_WARP)

/* The partial buffer (gpu_ops.h): GRETA_GPU_ATTENTION_SPLIT_ROWS counters
 * (uint32, one per (t, h): t * n_heads + h), then the rows (m, l,
 * acc[head_dim]) of split sp of (t, h). */
__device__ inline unsigned int *att_count(float *partial, int t, int h, int32_t n_heads)
{
    return (unsigned int *)partial + ((int64_t)t * n_heads + h);
}
__device__ inline float *att_row(float *partial, int t, int h, int sp, int32_t n_heads, int head_dim, int32_t n_split)
{
    return partial + GRETA_GPU_ATTENTION_SPLIT_ROWS + (((int64_t)t * n_heads + h) * n_split + sp) * (head_dim + 2);
}

/* The positions [start, end) of split sp when the positions a token at
 * position p sees (0..p, at most n_ctx of them) are cut into n_split equal
 * chunks (empty past the last position). */
__device__ inline void att_split_range(int32_t p, int32_t n_ctx, int32_t n_split, int sp, int32_t &start, int32_t &end)
{
    const int32_t len = p < n_ctx ? p + 1 : n_ctx;
    const int32_t chunk = (len + n_split - 1) / n_split;
    start = sp * chunk;
    end = start + chunk < len ? start + chunk : len;
}

/* Combines n online-softmax states (state i: max m[i * ms], sum l[i * ms],
 * weighted values acc[i * as ..+head_dim]; m = -inf for a state that saw
 * no position) into o[d] for this thread's d (tid, + blockDim.x, ...),
 * divided by the combined sum when `norm`; *mm_out, *ll_out get the
 * combined max and sum. Both ends of attention use it: a block's slots
 * (att_merge_slots) and the splits of one (token, head) (att_merge_last). */
__device__ inline void att_combine(int n, const float *m, const float *l, int64_t ms, const float *acc, int64_t as,
                                   int head_dim, bool norm, float *o, float *mm_out, float *ll_out)
{
    float mm = -INFINITY;
    for (int i = 0; i < n; i++)
        mm = fmaxf(mm, m[i * ms]);
    float ll = 0.0f;
    for (int i = 0; i < n; i++)
        if (m[i * ms] > -INFINITY)
            ll += l[i * ms] * expf(m[i * ms] - mm);
    for (int d = threadIdx.x; d < head_dim; d += blockDim.x) {
        float a = 0.0f;
        for (int i = 0; i < n; i++)
            if (m[i * ms] > -INFINITY)
                a += acc[i * as + d] * expf(m[i * ms] - mm);
        o[d] = norm ? a / ll : a;
    }
    *mm_out = mm;
    *ll_out = ll;
}

/* The end of a block with n_split > 1, after it wrote its partial row of
 * (t, h): the last of the n_split blocks of (t, h) to get here combines the
 * rows into the normalized row of out (the arithmetic and order of the
 * former attention_merge_kernel, so the same bits). The (t, h) counter
 * says how many blocks came before; the last one sets it back to 0 for the
 * next launch (or graph replay). The fences around the count (the
 * grid-barrier pattern: block barrier, then one thread's device fence and
 * atomic) make the rows that the other blocks wrote before counting visible
 * to the last block's plain loads after its own fence. */
__device__ inline void att_merge_last(float *partial, int t, int h, int32_t n_heads, int head_dim, int32_t n_split,
                                      float *out, int64_t ld_out)
{
    __shared__ int last;
    __syncthreads(); /* the block's row written */
    if (threadIdx.x == 0) {
        __threadfence(); /* release the row (all the block's writes, by the barrier) before the count */
        unsigned int *count = att_count(partial, t, h, n_heads);
        last = atomicAdd(count, 1u) == (unsigned int)n_split - 1;
        if (last)
            *count = 0; /* every block of (t, h) has counted: ready for the next launch */
    }
    __syncthreads();
    if (!last)
        return;
    __threadfence(); /* acquire: the other blocks' rows, counted before ours */
    const float *pp = att_row(partial, t, h, 0, n_heads, head_dim, n_split);
    float mm, ll;
    att_combine(n_split, pp, pp + 1, head_dim + 2, pp + 2, head_dim + 2, head_dim, true,
                out + (int64_t)t * ld_out + (int64_t)h * head_dim, &mm, &ll);
}

/* The end of an attention block, after a barrier: n_slots running softmax
 * states in shared memory (max m, sum l, acc rows of `stride` floats; m =
 * -inf for a slot that saw no position) combined into the block's output:
 * the normalized row of token t, head h (n_split 1), else the split's
 * partial (m, l, acc), which att_merge_last combines with the other
 * splits'. Every thread of the block calls it (it has barriers). */
__device__ inline void att_merge_slots(int n_slots, const float *sm_m, const float *sm_l, const float *sm_acc,
                                       int stride, int head_dim, int t, int h, int sp, int32_t n_heads,
                                       int32_t n_split, float *partial, float *out, int64_t ld_out)
{
    float mm, ll;
    if (n_split == 1) {
        att_combine(n_slots, sm_m, sm_l, 1, sm_acc, stride, head_dim, true,
                    out + (int64_t)t * ld_out + (int64_t)h * head_dim, &mm, &ll);
        return;
    }
    float *pp = att_row(partial, t, h, sp, n_heads, head_dim, n_split);
    att_combine(n_slots, sm_m, sm_l, 1, sm_acc, stride, head_dim, false, pp + 2, &mm, &ll);
    if (threadIdx.x == 0) {
        pp[0] = mm;
        pp[1] = ll;
    }
    att_merge_last(partial, t, h, n_heads, head_dim, n_split, out, ld_out);
}

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

/* ---- decode attention (issue 7, the v3 decode path) -----------------------------------
 *
 * attention_dec_kernel: the same blocks (head, token, split), chunks and
 * partial format as attention_kernel, with the work inside a block cut for
 * long contexts: a group of G = head_dim / 8 lanes takes one position at a
 * time, each lane 8 dims (one 16-byte load of an fp16 K row and one of the
 * V row), the q.k sum needs log2(G) shuffles inside the group (instead of a
 * whole-warp reduction per position), and each group keeps its own online
 * softmax (m, l, acc[8] per lane) over positions start + slot, + SLOTS, ...
 * with DEC_U positions' K and V loads in flight. The groups merge in shared
 * memory as attention_kernel's warps do. */
#define DEC_U 4
/* The one-block shape for short contexts (greta_gpu_attention_decode's
 * one_block): 256 threads, 8 positions per group in flight, so one turn
 * covers 128 positions of a 128-dim head, and no split to merge. */
#define DEC1_THREADS 256
#define DEC1_U 8

template <typename KVT> struct kv8;
template <> struct kv8<uint16_t> {
    typedef uint4 raw;
    __device__ static raw load(const uint16_t *p) { return *(const uint4 *)p; }
    __device__ static void unpack(const raw &r, float (&v)[8])
    {
        const uint32_t w[4] = {r.x, r.y, r.z, r.w};
#pragma unroll
        for (int i = 0; i < 4; i++) {
            v[2 * i] = gpu_half_to_float((uint16_t)(w[i] & 0xffffu));
            v[2 * i + 1] = gpu_half_to_float((uint16_t)(w[i] >> 16));
        }
    }
};
template <> struct kv8<float> {
    struct raw {
        float4 a, b;
    };
    __device__ static raw load(const float *p)
    {
        raw r;
        r.a = ((const float4 *)p)[0];
        r.b = ((const float4 *)p)[1];
        return r;
    }
    __device__ static void unpack(const raw &r, float (&v)[8])
    {
        v[0] = r.a.x, v[1] = r.a.y, v[2] = r.a.z, v[3] = r.a.w;
        v[4] = r.b.x, v[5] = r.b.y, v[6] = r.b.z, v[7] = r.b.w;
    }
};

/* sum over the G lanes of a group (aligned, G a power of two <= GRETA_WARP) */
template <int G> __device__ inline float group_sum(float v)
{
#pragma unroll
    for (int m = G / 2; m > 0; m >>= 1)
        v += gpu_shfl_xor(v, m);
    return v;
}

/* One turn of a group: the K and V rows of its U positions j0, j0 +
 * SLOTS, ... (those below end), loaded together. */
template <typename KVT, int U> struct dec_turn {
    typename kv8<KVT>::raw kr[U], vr[U];
    template <int SLOTS, int HD> __device__ __forceinline__ void load(const KVT *kb, const KVT *vb, int32_t j0, int32_t end)
    {
#pragma unroll
        for (int u = 0; u < U; u++) {
            const int32_t j = j0 + u * SLOTS;
            if (j < end) {
                kr[u] = kv8<KVT>::load(kb + (int64_t)j * HD);
                vr[u] = kv8<KVT>::load(vb + (int64_t)j * HD);
            }
        }
    }
    /* the group's online softmax (m, l, acc) over the turn's positions;
     * every lane of the warp must call it (group shuffles) */
    template <int G, int SLOTS> __device__ __forceinline__ void consume(int32_t j0, int32_t end, const float (&qv)[8],
                                                                       float scale, float &m, float &l,
                                                                       float (&acc)[8]) const
    {
        float s[U], mx = m;
#pragma unroll
        for (int u = 0; u < U; u++) {
            float kv[8], d = 0.0f;
            if (j0 + u * SLOTS < end) {
                kv8<KVT>::unpack(kr[u], kv);
#pragma unroll
                for (int i = 0; i < 8; i++)
                    d += qv[i] * kv[i];
            }
            s[u] = group_sum<G>(d) * scale; /* every lane of the warp shuffles */
            if (j0 + u * SLOTS < end)
                mx = fmaxf(mx, s[u]);
        }
        const float corr = expf(m - mx);
        l *= corr;
#pragma unroll
        for (int i = 0; i < 8; i++)
            acc[i] *= corr;
#pragma unroll
        for (int u = 0; u < U; u++) {
            if (j0 + u * SLOTS < end) {
                const float e = expf(s[u] - mx);
                float vv[8];
                kv8<KVT>::unpack(vr[u], vv);
                l += e;
#pragma unroll
                for (int i = 0; i < 8; i++)
                    acc[i] += e * vv[i];
            }
        }
        m = mx;
    }
};

/* The arguments of one decode attention launch (greta_gpu_attention_decode's). */
struct dec_args {
    const float *q;
    int64_t ld_q;
    const void *kc, *vc;
    const int32_t *pos, *seq;
    int32_t n_heads, n_kv_heads, n_ctx, n_split;
    float *partial, *out;
    int64_t ld_out;
};

template <typename KVT, int G, int THREADS, int U>
__global__ void __launch_bounds__(THREADS) attention_dec_kernel(const GPU_GRID_CONSTANT dec_args A)
{
    constexpr int HD = 8 * G, SLOTS = THREADS / G, STEP = SLOTS * U;
    __shared__ float sm_m[SLOTS], sm_l[SLOTS];
    __shared__ float sm_acc[SLOTS][HD];
    gpu_pdl_wait(); /* launched with gpu_launch_pdl: q and the cache come from the previous kernel (so not
                       __restrict__: the compiler must not move their loads above the wait) */
    gpu_pdl_trigger();
    const float *q = A.q;
    const KVT *kc = (const KVT *)A.kc, *vc = (const KVT *)A.vc;
    const int32_t n_heads = A.n_heads, n_kv_heads = A.n_kv_heads, n_ctx = A.n_ctx, n_split = A.n_split;
    const int64_t ld_q = A.ld_q;
    const int h = blockIdx.x, t = blockIdx.y, sp = blockIdx.z;
    const int slot = threadIdx.x / G, gl = threadIdx.x % G;
    const int32_t p = A.pos[t], sq = A.seq[t];
    int32_t start, end;
    att_split_range(p, n_ctx, n_split, sp, start, end);
    const int kvh = h / (n_heads / n_kv_heads);
    const float scale = 1.0f / sqrtf((float)HD);
    float qv[8], acc[8];
    const float *qt = q + (int64_t)t * ld_q + (int64_t)h * HD + gl * 8;
#pragma unroll
    for (int i = 0; i < 8; i++) {
        qv[i] = qt[i];
        acc[i] = 0.0f;
    }
    float m = -INFINITY, l = 0.0f;
    const int64_t base = kv_offset(sq, kvh, 0, gl * 8, n_kv_heads, n_ctx, HD);
    const KVT *kb = kc + base, *vb = vc + base;
    /* the loop runs the same turns in every group of a warp (its shuffles
     * need all lanes): jw is the warp's first slot, the group's position
     * j0 = jw + its offset in the warp */
    const int wslot0 = (threadIdx.x / GRETA_WARP) * (GRETA_WARP / G), off = slot - wslot0;
    for (int32_t jw = start + wslot0; jw < end; jw += STEP) {
        dec_turn<KVT, U> a;
        a.template load<SLOTS, HD>(kb, vb, jw + off, end);
        a.template consume<G, SLOTS>(jw + off, end, qv, scale, m, l, acc);
    }
    if (gl == 0) {
        sm_m[slot] = m;
        sm_l[slot] = l;
    }
#pragma unroll
    for (int i = 0; i < 8; i++)
        sm_acc[slot][gl * 8 + i] = acc[i];
    __syncthreads();
    att_merge_slots(SLOTS, sm_m, sm_l, &sm_acc[0][0], HD, HD, t, h, sp, n_heads, n_split, A.partial, A.out,
                    A.ld_out);
}

template <typename KVT, int THREADS, int U>
static gpu_error_t attention_dec_go(gpu_stream_t st, dim3 grid, int32_t head_dim, const dec_args &A)
{
#define DEC_CASE(G)                                                                                            \
    case 8 * G:                                                                                                \
        return gpu_launch_pdl(attention_dec_kernel<KVT, G, THREADS, U>, grid, dim3(THREADS), st, A);
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

/* The shape for the cache type: one block per (token, head), or split. */
template <typename KVT>
static gpu_error_t attention_dec_shape(gpu_stream_t st, dim3 grid, int32_t head_dim, int one_block, const dec_args &A)
{
    return one_block ? attention_dec_go<KVT, DEC1_THREADS, DEC1_U>(st, grid, head_dim, A)
                     : attention_dec_go<KVT, ATT_THREADS, DEC_U>(st, grid, head_dim, A);
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
