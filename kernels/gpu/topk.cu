/* topk.cu - argmax and top-k of logits rows on the GPU, plus the row's
 * log-sum-exp, so a greedy request reads back one id and a top-k sampler k
 * values instead of the whole vocabulary.
 *
 * Order: larger value first, lower index first among equal values, NaN after
 * every number (never chosen while numbers remain). One block per row:
 *   1. radix select: each value becomes an order-preserving 32-bit key (NaN
 *      the smallest); four passes of 8-bit histograms find the key T of the
 *      k-th best element and how many of the chosen ones equal T;
 *   2. the elements above T, and the lowest-index ones equal to T (each
 *      thread scans a contiguous slice; a block prefix sum ranks the equal
 *      ones in index order), are gathered in shared memory;
 *   3. each of the k entries finds its rank by comparing with the others.
 * Every pass reads the row (it stays in L1/L2): about 6 reads of a 32000-entry
 * row for k > 1. k = 1 (greedy) is one pass that also makes the
 * log-sum-exp: each thread keeps its best (key, index) and an online max m
 * and sum s of exp(x - m) (s rescaled when m grows), combined over the
 * block as sum of s_t * exp(m_t - M) (lse_add, lse_block; k > 1 makes its
 * log-sum-exp the same way, in one more pass). In fp32; a NaN or +inf in
 * the row makes the log-sum-exp NaN, -inf entries add nothing. (The former k = 1
 * path, an argmax pass and two more for max and sum, took 18.8 us per
 * 32000-entry row on the H200 in a decode step;
 * bench/results/2026-11-27-gpu-h200-decode-v5.txt.) */
#include "gpu_ops.h"
#include "gpu_port.h"

#define TOPK_THREADS 1024
#define TOPK_V 8 /* float4 loads in flight per thread (k = 1) */

/* Ascending key order = ascending float order; NaN below -inf. */
__device__ inline uint32_t topk_key(float f)
{
    if (isnan(f))
        return 0u;
    const uint32_t u = __float_as_uint(f);
    return (u & 0x80000000u) ? ~u : (u | 0x80000000u);
}

/* Inclusive prefix sum over the block (blockDim.x <= 1024); scratch holds
 * GPU_MAX_WARPS ints. */
__device__ inline int block_scan_incl(int v, int *scratch)
{
    const int lane = threadIdx.x % GRETA_WARP, warp = threadIdx.x / GRETA_WARP;
    const int n_warps = blockDim.x / GRETA_WARP;
#pragma unroll
    for (int o = 1; o < GRETA_WARP; o <<= 1) {
#if defined(GRETA_GPU_HIP)
        const int y = __shfl_up(v, o, GRETA_WARP);
#else
        const int y = __shfl_up_sync(GPU_FULL_MASK, v, o, GRETA_WARP);
#endif
        if (lane >= o)
            v += y;
    }
    __syncthreads();
    if (lane == GRETA_WARP - 1)
        scratch[warp] = v;
    __syncthreads();
    int base = 0;
    for (int w = 0; w < warp && w < n_warps; w++)
        base += scratch[w];
    return v + base;
}

/* (key, index) a comes before b: larger key, then lower index */
__device__ inline bool topk_before(uint32_t ka, int ia, uint32_t kb, int ib)
{
    return ka > kb || (ka == kb && ia < ib);
}

/* One value into a thread's online log-sum-exp state (m, s): s is the sum
 * of exp(x - m) over the values seen, m their max; NaN or +inf sets bad. */
__device__ inline void lse_add(float v, float &m, float &s, bool &bad)
{
    if (isnan(v) || v == INFINITY)
        bad = true;
    else if (v == -INFINITY)
        return; /* exp(-inf) = 0, even before the first finite value */
    else if (v > m) {
        s = s * expf(m - v) + 1.0f;
        m = v;
    } else {
        s += expf(v - m);
    }
}

/* The warp's combined lse_add state into every lane's (m, s, bad): a
 * butterfly over the lanes' states. */
__device__ inline void lse_warp_merge(float &m, float &s, bool &bad)
{
#pragma unroll
    for (int o = GRETA_WARP / 2; o > 0; o >>= 1) {
        const float om = __int_as_float(gpu_shfl_xor(__float_as_int(m), o));
        const float os = __int_as_float(gpu_shfl_xor(__float_as_int(s), o));
        bad = gpu_shfl_xor((int)bad, o) || bad;
        const float mm = fmaxf(m, om);
        s = (m == -INFINITY ? 0.0f : s * expf(m - mm)) + (om == -INFINITY ? 0.0f : os * expf(om - mm));
        m = mm;
    }
}

/* The block's combined lse_add state (mm, ss, any_bad) from every
 * thread's (m, s, bad), for every thread; contains barriers (call from
 * all threads). */
__device__ inline void lse_block_state(float m, float s, bool bad, float &mm_out, float &ss_out, bool &bad_out)
{
    __shared__ float wm[GPU_MAX_WARPS], ws[GPU_MAX_WARPS];
    __shared__ int wbad[GPU_MAX_WARPS];
    __shared__ float r_m, r_s;
    __shared__ int r_bad;
    const int lane = threadIdx.x % GRETA_WARP, warp = threadIdx.x / GRETA_WARP;
    const int n_warps = blockDim.x / GRETA_WARP;
    lse_warp_merge(m, s, bad);
    if (lane == 0) {
        wm[warp] = m;
        ws[warp] = s;
        wbad[warp] = bad;
    }
    __syncthreads();
    if (threadIdx.x == 0) {
        float mm = wm[0];
        for (int w = 1; w < n_warps; w++)
            mm = fmaxf(mm, wm[w]);
        float ss = 0.0f;
        int any_bad = 0;
        for (int w = 0; w < n_warps; w++) {
            if (wm[w] > -INFINITY)
                ss += ws[w] * expf(wm[w] - mm);
            any_bad |= wbad[w];
        }
        r_m = mm;
        r_s = ss;
        r_bad = any_bad;
    }
    __syncthreads();
    mm_out = r_m;
    ss_out = r_s;
    bad_out = r_bad != 0;
}

/* The log-sum-exp of a combined state: NaN when a value was NaN or +inf,
 * or when every value was -inf. */
__device__ inline float lse_value(float mm, float ss, bool bad)
{
    return bad || mm == -INFINITY ? NAN : mm + logf(ss);
}

/* The row's log-sum-exp from every thread's lse_add state (m, s, bad)
 * (lse_value of lse_block_state). Every thread gets it; contains barriers
 * (call from all threads). */
__device__ inline float lse_block(float m, float s, bool bad)
{
    float mm, ss;
    bool b;
    lse_block_state(m, s, bad, mm, ss, b);
    return lse_value(mm, ss, b);
}

/* The warp's best (key, index) by topk_before into every lane's (k, i): a
 * butterfly, so any order of the lanes gives the same winner. */
__device__ inline void topk_warp_best(uint32_t &k, int &i)
{
#pragma unroll
    for (int o = GRETA_WARP / 2; o > 0; o >>= 1) {
        const uint32_t ok = (uint32_t)gpu_shfl_xor((int)k, o);
        const int oi = gpu_shfl_xor(i, o);
        if (topk_before(ok, oi, k, i)) {
            k = ok;
            i = oi;
        }
    }
}

/* k = 1 and the log-sum-exp in one pass over xr[0..n) (indices i0 + i):
 * a block-wide reduction of (key, index) into thread 0's bk, bi (key 0 and
 * index i0 + n when n is 0) and of the threads' lse_add states into every
 * thread's (mm, ss, any_bad). */
__device__ inline void topk_argmax_block(const float *xr, int n, int i0, uint32_t &bk_out, int &bi_out, float &mm,
                                         float &ss, bool &any_bad)
{
    __shared__ uint32_t wk[GPU_MAX_WARPS];
    __shared__ int wi[GPU_MAX_WARPS];
    const int lane = threadIdx.x % GRETA_WARP, warp = threadIdx.x / GRETA_WARP;
    const int n_warps = blockDim.x / GRETA_WARP;
    uint32_t bk = 0;
    int bi = n; /* none yet: key 0 ranks last, and any real index wins a tie */
    float m = -INFINITY, s = 0.0f;
    bool bad = false;
    auto take = [&](float v, int i) {
        const uint32_t key = topk_key(v);
        if (topk_before(key, i, bk, bi)) {
            bk = key;
            bi = i;
        }
        lse_add(v, m, s, bad);
    };
    int done = 0;
    if ((uintptr_t)xr % 16 == 0) {
        /* float4 loads, TOPK_V of them in flight per thread before any is used (one pass over a
         * 32000-entry row: one memory round trip, not one per element) */
        const float4 *x4 = (const float4 *)xr;
        const int n4 = n / 4;
        for (int b = 0; b < n4; b += TOPK_V * (int)blockDim.x) {
            float4 v[TOPK_V];
#pragma unroll
            for (int j = 0; j < TOPK_V; j++) {
                const int i = b + j * (int)blockDim.x + (int)threadIdx.x;
                if (i < n4)
                    v[j] = x4[i];
            }
#pragma unroll
            for (int j = 0; j < TOPK_V; j++) {
                const int i = b + j * (int)blockDim.x + (int)threadIdx.x;
                if (i < n4) {
                    take(v[j].x, 4 * i);
                    take(v[j].y, 4 * i + 1);
                    take(v[j].z, 4 * i + 2);
                    take(v[j].w, 4 * i + 3);
                }
            }
        }
        done = 4 * n4;
    }
    for (int i = done + (int)threadIdx.x; i < n; i += blockDim.x)
        take(xr[i], i);
    topk_warp_best(bk, bi);
    if (lane == 0) {
        wk[warp] = bk;
        wi[warp] = bi;
    }
    lse_block_state(m, s, bad, mm, ss, any_bad); /* its barriers also publish wk, wi */
    if (threadIdx.x == 0) {
        for (int w = 1; w < n_warps; w++)
            if (topk_before(wk[w], wi[w], bk, bi)) {
                bk = wk[w];
                bi = wi[w];
            }
        bk_out = bk;
        bi_out = i0 + bi;
    }
    __syncthreads();
}

__global__ void __launch_bounds__(TOPK_THREADS)
topk_kernel(const float *__restrict__ x, int64_t ld_x, int n, int k, int32_t *__restrict__ ids,
            float *__restrict__ vals, float *__restrict__ lse)
{
    __shared__ int whist[GPU_MAX_WARPS][256]; /* per-warp histograms: less atomic contention */
    __shared__ int hist[256];
    __shared__ int sh_digit, sh_need;
    __shared__ int scan_scratch[GPU_MAX_WARPS];
    __shared__ uint32_t sel_key[GRETA_GPU_TOPK_MAX];
    __shared__ int sel_id[GRETA_GPU_TOPK_MAX];
    __shared__ int sel_count;
    const float *xr = x + (int64_t)blockIdx.x * ld_x;
    const int warp = threadIdx.x / GRETA_WARP, n_warps = blockDim.x / GRETA_WARP;

    if (k == 1) {
        uint32_t bk;
        int bi;
        float mm, ss;
        bool bad;
        topk_argmax_block(xr, n, 0, bk, bi, mm, ss, bad);
        if (threadIdx.x == 0) {
            ids[blockIdx.x] = bi;
            vals[blockIdx.x] = xr[bi];
            if (lse)
                lse[blockIdx.x] = lse_value(mm, ss, bad);
        }
        return;
    } else {
        /* 1. radix select of the k-th largest key */
        uint32_t prefix = 0, mask = 0;
        int need = k; /* how many still to choose inside the current prefix */
        for (int shift = 24; shift >= 0; shift -= 8) {
            for (int i = threadIdx.x; i < GPU_MAX_WARPS * 256; i += blockDim.x)
                (&whist[0][0])[i] = 0;
            __syncthreads();
            for (int i = threadIdx.x; i < n; i += blockDim.x) {
                const uint32_t key = topk_key(xr[i]);
                if ((key & mask) == prefix)
                    atomicAdd(&whist[warp][(key >> shift) & 255u], 1);
            }
            __syncthreads();
            for (int b = threadIdx.x; b < 256; b += blockDim.x) {
                int c = 0;
                for (int w = 0; w < n_warps; w++)
                    c += whist[w][b];
                hist[b] = c;
            }
            __syncthreads();
            if (threadIdx.x == 0) {
                int acc = 0, d = 255;
                for (; d > 0; d--) {
                    if (acc + hist[d] >= need)
                        break;
                    acc += hist[d];
                }
                sh_digit = d;
                sh_need = need - acc;
            }
            __syncthreads();
            prefix |= (uint32_t)sh_digit << shift;
            mask |= 255u << shift;
            need = sh_need;
            __syncthreads();
        }
        const uint32_t T = prefix; /* the k-th key; `need` of the chosen equal it */

        /* 2. gather: keys above T, then the `need` lowest-index keys equal to T */
        if (threadIdx.x == 0)
            sel_count = 0;
        const int per = (n + blockDim.x - 1) / blockDim.x;
        const int lo = threadIdx.x * per, hi = lo + per < n ? lo + per : n;
        int n_eq = 0;
        __syncthreads();
        for (int i = lo; i < hi; i++) {
            const uint32_t key = topk_key(xr[i]);
            if (key > T) {
                const int slot = atomicAdd(&sel_count, 1);
                sel_key[slot] = key;
                sel_id[slot] = i;
            } else if (key == T) {
                n_eq++;
            }
        }
        const int eq_before = block_scan_incl(n_eq, scan_scratch) - n_eq;
        __syncthreads();
        const int n_gt = sel_count;
        if (eq_before < need) {
            int r = eq_before;
            for (int i = lo; i < hi && r < need; i++)
                if (topk_key(xr[i]) == T) {
                    sel_key[n_gt + r] = T;
                    sel_id[n_gt + r] = i;
                    r++;
                }
        }
        __syncthreads();

        /* 3. order the k entries: key descending, index ascending */
        for (int e = threadIdx.x; e < k; e += blockDim.x) {
            const uint32_t ke = sel_key[e];
            const int ie = sel_id[e];
            int rank = 0;
            for (int j = 0; j < k; j++) {
                const uint32_t kj = sel_key[j];
                rank += kj > ke || (kj == ke && sel_id[j] < ie);
            }
            ids[(int64_t)blockIdx.x * k + rank] = ie;
            vals[(int64_t)blockIdx.x * k + rank] = xr[ie];
        }
    }

    if (lse) { /* one pass, as for k = 1 */
        float m = -INFINITY, s = 0.0f;
        bool bad = false;
        for (int i = threadIdx.x; i < n; i += blockDim.x)
            lse_add(xr[i], m, s, bad);
        const float l = lse_block(m, s, bad);
        if (threadIdx.x == 0)
            lse[blockIdx.x] = l;
    }
}

/* ---- k = 1 over several blocks a row ------------------------------------------------
 * One block of TOPK_THREADS works through a 32000-entry row in about 13 us
 * (H100, in a decode step; ncu: about 60 instructions an element, the
 * online log-sum-exp's branches and exp()s, on one SM), most of a greedy
 * step's time after lm_head. With scratch, row r is cut into TOPK_SPLITS
 * chunks (multiples of 4 values, so float4 loads stay aligned) taken by
 * blocks of TOPK_SPLIT_THREADS; each stores its best (key, index) and its
 * log-sum-exp state (m, s, bad) in the scratch, counts itself (the
 * att_merge_last pattern: barrier, one thread's fence and atomic) and the
 * last of the row merges the chunks with one warp, a lane per chunk (a
 * merge by one thread, reading the chunks one after another, took 11.7 us:
 * a round trip to L2 per read): the same id and value, the log-sum-exp
 * summed in another order. */
#define TOPK_SPLITS 16
#define TOPK_SPLIT_THREADS 256

struct topk_part {
    uint32_t key;
    int idx;
    float m, s;
    int bad;
};

/* scratch: n_rows counters (uint32), then, from a 16-byte boundary
 * (topk_parts_offset), n_rows x TOPK_SPLITS parts */
static int64_t topk_parts_offset(int32_t n_rows)
{
    return ((int64_t)n_rows * 4 + 15) / 16 * 16;
}

static int64_t topk_scratch_bytes(int32_t n_rows)
{
    return topk_parts_offset(n_rows) + (int64_t)n_rows * TOPK_SPLITS * (int64_t)sizeof(topk_part);
}

__global__ void __launch_bounds__(TOPK_SPLIT_THREADS)
topk1_split_kernel(const float *__restrict__ x, int64_t ld_x, int n, int chunk, int32_t *__restrict__ ids,
                   float *__restrict__ vals, float *__restrict__ lse, unsigned int *count, topk_part *parts,
                   int32_t *next)
{
    __shared__ int last;
    const int row = blockIdx.y, sp = blockIdx.x;
    const float *xr = x + (int64_t)row * ld_x;
    const int i0 = sp * chunk, i1 = i0 + chunk < n ? i0 + chunk : n;
    uint32_t bk;
    int bi;
    float mm, ss;
    bool bad;
    topk_argmax_block(xr + i0, i1 > i0 ? i1 - i0 : 0, i0, bk, bi, mm, ss, bad);
    topk_part *pr = parts + (int64_t)row * TOPK_SPLITS;
    if (threadIdx.x == 0) {
        pr[sp] = topk_part{bk, bi, mm, ss, (int)bad};
        __threadfence(); /* release the part before the count */
        last = atomicAdd(count + row, 1u) == TOPK_SPLITS - 1;
        if (last)
            count[row] = 0; /* every chunk of the row has counted: ready for the next call */
    }
    __syncthreads();
    if (!last || threadIdx.x >= GRETA_WARP)
        return;
    __threadfence(); /* acquire: the parts the other blocks stored before counting */
    /* the first warp: lane j loads part j (one round trip for all), then
     * butterflies combine them: the argmax (topk_warp_best) and the
     * log-sum-exp states (lse_warp_merge) */
    static_assert(TOPK_SPLITS <= GRETA_WARP, "a lane per chunk");
    const int j = (int)threadIdx.x;
    uint32_t k = 0;
    int id = n; /* lanes past the chunks: key 0 and an index after every real one lose */
    float m = -INFINITY, sum = 0.0f;
    bool any = false;
    if (j < TOPK_SPLITS) {
        const volatile topk_part *vp = pr + j; /* from L2: written by other blocks */
        k = vp->key;
        id = vp->idx;
        m = vp->m;
        sum = vp->s;
        any = vp->bad != 0;
    }
    topk_warp_best(k, id);
    lse_warp_merge(m, sum, any);
    if (j == 0) {
        ids[row] = id;
        vals[row] = xr[id];
        if (lse)
            lse[row] = lse_value(m, sum, any);
        if (next) { /* greta_gpu_topk1_next (one row) */
            next[0] = id;
            next[1] += 1;
        }
    }
}

/* greta_gpu_topk1_next after the one-block kernel: one thread */
__global__ void topk_next_kernel(const int32_t *ids, int32_t *next)
{
    next[0] = ids[0];
    next[1] += 1;
}

extern "C" int64_t greta_gpu_topk_scratch_bytes(int32_t n_rows)
{
    return n_rows > 0 ? topk_scratch_bytes(n_rows) : 0;
}

/* greta_gpu_topk, and with next (one row, k 1) greta_gpu_topk1_next */
static int topk_go(greta_gpu_stream *s, const float *x, int64_t ld_x, int32_t n_rows, int64_t n, int32_t k,
                   int32_t *ids, float *vals, float *lse, void *scratch, int32_t *next, greta_error *err)
{
    if (n <= 0 || n > (1 << 30) || ld_x < n || n_rows < 0 || k < 1 || k > GRETA_GPU_TOPK_MAX || k > n)
        return greta_error_set(err, GRETA_ERR_INVALID, "topk: bad arguments (n %lld, k %d, most %d)", (long long)n, k,
                               GRETA_GPU_TOPK_MAX);
    if (n_rows == 0)
        return 0;
    if (scratch && k == 1 && n >= 4 * TOPK_SPLITS && n_rows <= 65535) {
        const int chunk = (int)((n + TOPK_SPLITS - 1) / TOPK_SPLITS + 3) / 4 * 4;
        unsigned int *count = (unsigned int *)scratch;
        topk_part *parts = (topk_part *)((uint8_t *)scratch + topk_parts_offset(n_rows));
        topk1_split_kernel<<<dim3(TOPK_SPLITS, n_rows), TOPK_SPLIT_THREADS, 0, (gpu_stream_t)s>>>(
            x, ld_x, (int)n, chunk, ids, vals, lse, count, parts, next);
        GPU_CHECK(gpu_last_error(), err);
        return 0;
    }
    topk_kernel<<<n_rows, TOPK_THREADS, 0, (gpu_stream_t)s>>>(x, ld_x, (int)n, k, ids, vals, lse);
    if (next)
        topk_next_kernel<<<1, 1, 0, (gpu_stream_t)s>>>(ids, next);
    GPU_CHECK(gpu_last_error(), err);
    return 0;
}

extern "C" int greta_gpu_topk(greta_gpu_stream *s, const float *x, int64_t ld_x, int32_t n_rows, int64_t n,
                              int32_t k, int32_t *ids, float *vals, float *lse, void *scratch, greta_error *err)
{
    return topk_go(s, x, ld_x, n_rows, n, k, ids, vals, lse, scratch, NULL, err);
}

extern "C" int greta_gpu_topk1_next(greta_gpu_stream *s, const float *x, int64_t n, int32_t *id, float *val,
                                    float *lse, void *scratch, int32_t *next, greta_error *err)
{
    if (!next)
        return greta_error_set(err, GRETA_ERR_INVALID, "topk1_next: no next step's ints");
    return topk_go(s, x, n, 1, n, 1, id, val, lse, scratch, next, err);
}
