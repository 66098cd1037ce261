/* attention.cuh - the pieces of attention.cu that tests/perf/attn-bench.cu
 * also compiles: the split rows and their merge (both attention kernels),
 * and the decode kernel (attention_dec_kernel). See attention.cu for the
 * blocks, splits and the partial buffer. */
#ifndef GRETA_GPU_ATTENTION_CUH
#define GRETA_GPU_ATTENTION_CUH

#include "gpu_ops.h"
#include "kv_io.cuh"

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
 * memory as attention_kernel's warps do. The template's DPL (dims per lane,
 * 8 in the library) lets tests/perf/attn-bench.cu build 16 dims per lane
 * (G = head_dim / 16: 3 shuffles per position instead of 4); on the H100 it
 * was no faster in the engine (bench/results/
 * 2026-11-27-gpu-h100-decode-experiments-0d85de2.txt). */
#define DEC_U 4
/* The one-block shape for short contexts (greta_gpu_attention_decode's
 * one_block): 256 threads, 8 positions per group in flight, so one turn
 * covers 128 positions of a 128-dim head, and no split to merge. */
#define DEC1_THREADS 256
#define DEC1_U 8
/* With PREF (decode table 1, greta_gpu_set_decode_table): the turns whose
 * rows a block prefetches into L2 before it waits for the previous kernel
 * (the Q/K/V product). H100, 7B at depth 4096, tg128 (one lease, twice):
 * no prefetch 312.0 / 310.6; 1 turn 317.1 / 316.2; 2 turns 316.9 / 316.7;
 * 4 turns 312.9 / 313.6; 8 (the whole chunk) 295.7 / 293.7. */
#define DEC_PREF_TURNS 2

template <typename KVT> struct kv8;
template <> struct kv8<uint16_t> {
    typedef uint4 raw;
    /* read once per step: streamed (evict first), so the rows do not push
     * the next products' weights out of L2; attn-bench (H100, 4096
     * positions, 17 splits): 30.6 against 31.6 us a launch */
    __device__ static raw load(const uint16_t *p) { return gpu_load_stream16(p); }
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

/* DPL values of a K or V row (DPL a multiple of 8): DPL / 8 kv8 loads. */
template <typename KVT, int DPL> struct kvrow {
    typename kv8<KVT>::raw r[DPL / 8];
    __device__ __forceinline__ void load(const KVT *p)
    {
#pragma unroll
        for (int c = 0; c < DPL / 8; c++)
            r[c] = kv8<KVT>::load(p + 8 * c);
    }
    __device__ __forceinline__ void unpack(float (&v)[DPL]) const
    {
#pragma unroll
        for (int c = 0; c < DPL / 8; c++) {
            float t[8];
            kv8<KVT>::unpack(r[c], t);
#pragma unroll
            for (int i = 0; i < 8; i++)
                v[8 * c + i] = t[i];
        }
    }
};

/* One turn of a group: the K and V rows of its U positions j0, j0 +
 * SLOTS, ... (those below end), loaded together; each lane DPL dims. */
template <typename KVT, int U, int DPL> struct dec_turn {
    kvrow<KVT, DPL> kr[U], vr[U];
    template <int SLOTS, int HD> __device__ __forceinline__ void load(const KVT *kb, const KVT *vb, int32_t j0, int32_t end)
    {
#pragma unroll
        for (int u = 0; u < U; u++) {
            const int32_t j = j0 + u * SLOTS;
            if (j < end) {
                kr[u].load(kb + (int64_t)j * HD);
                vr[u].load(vb + (int64_t)j * HD);
            }
        }
    }
    /* the group's online softmax (m, l, acc) over the turn's positions;
     * every lane of the warp must call it (group shuffles) */
    template <int G, int SLOTS> __device__ __forceinline__ void consume(int32_t j0, int32_t end, const float (&qv)[DPL],
                                                                       float scale, float &m, float &l,
                                                                       float (&acc)[DPL]) const
    {
        float s[U], mx = m;
#pragma unroll
        for (int u = 0; u < U; u++) {
            float kv[DPL], d = 0.0f;
            if (j0 + u * SLOTS < end) {
                kr[u].unpack(kv);
#pragma unroll
                for (int i = 0; i < DPL; i++)
                    d += qv[i] * kv[i];
            }
            s[u] = group_sum<G>(d) * scale; /* every lane of the warp shuffles */
            if (j0 + u * SLOTS < end)
                mx = fmaxf(mx, s[u]);
        }
        const float corr = expf(m - mx);
        l *= corr;
#pragma unroll
        for (int i = 0; i < DPL; i++)
            acc[i] *= corr;
#pragma unroll
        for (int u = 0; u < U; u++) {
            if (j0 + u * SLOTS < end) {
                const float e = expf(s[u] - mx);
                float vv[DPL];
                vr[u].unpack(vv);
                l += e;
#pragma unroll
                for (int i = 0; i < DPL; i++)
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

/* L2 prefetches of the K and V rows of a group's first `turns` turns from
 * position j0 (those below end): the bytes dec_turn::load reads. A lane's
 * DPL values (DPL * sizeof(KVT) bytes, aligned to that size) lie in
 * whole 32-byte sectors, one prefetch each (one for 8 fp16 values, which
 * lie in one sector). */
template <typename KVT, int U, int SLOTS, int HD, int DPL>
__device__ __forceinline__ void dec_prefetch(const KVT *kb, const KVT *vb, int32_t j0, int32_t end, int turns)
{
    constexpr int SECT = (int)(DPL * sizeof(KVT) + 31) / 32, PER = 32 / (int)sizeof(KVT);
    for (int u = 0; u < U * turns; u++) {
        const int32_t j = j0 + u * SLOTS;
        if (j < end) {
#pragma unroll
            for (int c = 0; c < SECT; c++) {
                gpu_prefetch_l2(kb + (int64_t)j * HD + c * PER);
                gpu_prefetch_l2(vb + (int64_t)j * HD + c * PER);
            }
        }
    }
}

template <typename KVT, int G, int THREADS, int U, bool PREF, int DPL = 8>
__global__ void __launch_bounds__(THREADS) attention_dec_kernel(const GPU_GRID_CONSTANT dec_args A)
{
    constexpr int HD = DPL * G, SLOTS = THREADS / G, STEP = SLOTS * U;
    __shared__ float sm_m[SLOTS], sm_l[SLOTS];
    __shared__ float sm_acc[SLOTS][HD];
    const KVT *kc = (const KVT *)A.kc, *vc = (const KVT *)A.vc;
    const int32_t n_heads = A.n_heads, n_kv_heads = A.n_kv_heads, n_ctx = A.n_ctx, n_split = A.n_split;
    const int h = blockIdx.x, t = blockIdx.y, sp = blockIdx.z;
    const int slot = threadIdx.x / G, gl = threadIdx.x % G;
    const int kvh = h / (n_heads / n_kv_heads);
    /* the loop runs the same turns in every group of a warp (its shuffles
     * need all lanes): jw is the warp's first slot, the group's position
     * j0 = jw + its offset in the warp */
    const int wslot0 = (threadIdx.x / GRETA_WARP) * (GRETA_WARP / G), off = slot - wslot0;
    int32_t p = 0, sq = 0, start = 0, end = 0;
    const KVT *kb = nullptr, *vb = nullptr;
    const auto where = [&]() {
        p = A.pos[t], sq = A.seq[t];
        att_split_range(p, n_ctx, n_split, sp, start, end);
        const int64_t base = kv_offset(sq, kvh, 0, gl * DPL, n_kv_heads, n_ctx, HD);
        kb = kc + base, vb = vc + base;
    };
    if (PREF) {
        /* the first DEC_PREF_TURNS turns' rows into L2 while the previous
         * kernel finishes: pos and seq are read before the wait (gpu_ops.h:
         * the kernel just before must not write them); the rows are only a
         * hint (the previous kernel may be writing one of them: the loads
         * after the wait see its writes, as L2 is where they land) */
        where();
        dec_prefetch<KVT, U, SLOTS, HD, DPL>(kb, vb, start + wslot0 + off, end, DEC_PREF_TURNS);
    }
    gpu_pdl_wait(); /* launched with gpu_launch_pdl: q and the cache come from the previous kernel (so not
                       __restrict__: the compiler must not move their loads above the wait) */
    gpu_pdl_trigger();
    if (!PREF)
        where();
    const float scale = 1.0f / sqrtf((float)HD);
    float qv[DPL], acc[DPL];
    const float *qt = A.q + (int64_t)t * A.ld_q + (int64_t)h * HD + gl * DPL;
#pragma unroll
    for (int i = 0; i < DPL; i++) {
        qv[i] = qt[i];
        acc[i] = 0.0f;
    }
    float m = -INFINITY, l = 0.0f;
    for (int32_t jw = start + wslot0; jw < end; jw += STEP) {
        dec_turn<KVT, U, DPL> a;
        a.template load<SLOTS, HD>(kb, vb, jw + off, end);
        a.template consume<G, SLOTS>(jw + off, end, qv, scale, m, l, acc);
    }
    if (gl == 0) {
        sm_m[slot] = m;
        sm_l[slot] = l;
    }
#pragma unroll
    for (int i = 0; i < DPL; i++)
        sm_acc[slot][gl * DPL + i] = acc[i];
    __syncthreads();
    att_merge_slots(SLOTS, sm_m, sm_l, &sm_acc[0][0], HD, HD, t, h, sp, n_heads, n_split, A.partial, A.out,
                    A.ld_out);
}

#endif
