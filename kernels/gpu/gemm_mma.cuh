/* gemm_mma.cuh - the matrix-core GEMM kernel template (prefill), one tiling
 * design with two inner back ends. Included by gemm_mma.cu (the library's
 * instances and dispatcher) and by tests/perf/gemm-bench.cu (tuning
 * variants).
 *
 *   y[t][r] (+)= sum_i x[t][i] * W[r][i]        (see prefill_ops.h)
 *
 * Tiling (both vendors)
 *   block   MMA_THREADS = 256 threads; output tile BM tokens x BN weight rows;
 *           k in steps of BK. Shared memory holds two stages of
 *           xs[BM][BK + 8] and ws[BN][BK + 8] in fp16 (the 8-element pad
 *           puts the 8 rows an ldmatrix phase reads in distinct banks).
 *   loading each thread owns BM*BK/256 consecutive activations of one token
 *           row and BN*BK/256 consecutive weights of one weight row (whole
 *           8-element groups, decoded by gpu_deq<TYPE>::load from
 *           dequant.cuh, bit-exact with greta_dequant_row). The
 *           activations of step s+1 are loaded into registers before the
 *           MMAs of step s; after them the weights of step s+1 are decoded,
 *           everything is rounded to fp16 and stored into the other stage:
 *           one barrier per step (MMA_PIPE_* below for the variants).
 *   warps   GRETA_WARP from the portability header: 8 warps of 32 on NVIDIA,
 *           4 wavefronts of 64 on AMD, laid out WARPS_M x WARPS_N over the
 *           block tile (WARPS_M = 2 for BM >= 64); warp tile WTM x WTN.
 *   MMA     NVIDIA: mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32, the
 *           A (activation) and B (weight) fragments loaded with ldmatrix.x4;
 *           AMD gfx9 (CDNA): __builtin_amdgcn_mfma_f32_32x32x8f16, the
 *           fragments read as 4 halves per lane. M = tokens, N = weight
 *           rows, K = the reduction, so both operands are K-contiguous
 *           ("row.col") and a thread's accumulators are adjacent outputs of
 *           one token row.
 */
#ifndef GRETA_GPU_GEMM_MMA_CUH
#define GRETA_GPU_GEMM_MMA_CUH

#include "dequant.cuh"

#define MMA_THREADS 256
#define MMA_PAD 8 /* halves of padding per shared-memory row */

#if defined(GRETA_GPU_HIP) && defined(__HIP_DEVICE_COMPILE__) && !defined(__GFX9__)
#error "gemm_mma: the AMD back end needs MFMA (gfx9 / CDNA: gfx908, gfx90a, gfx942)"
#endif

/* Bytes of dynamic shared memory a tile configuration needs. */
__host__ __device__ constexpr int gemm_mma_smem_bytes(int bm, int bn, int bk)
{
    return 2 * (bm + bn) * (bk + MMA_PAD) * 2;
}

/* Blocks per multiprocessor the register budget is set for: two, except the
 * largest tile with the long k step, which needs more than 128 registers. */
__host__ __device__ constexpr int gemm_mma_min_blocks(int bm, int bn, int bk)
{
    return bm * bn >= 128 * 128 && bk >= 64 ? 1 : 2;
}

/* How many k steps ahead the weight lines are prefetched into L2 (the next
 * step's lines go to L1). */
#define MMA_PREFETCH_STEPS 4

/* Where the weights of step s+1 are decoded: before the MMAs of step s
 * (EARLY), after them (LATE, the library's), or after them from lines
 * prefetched into L1/L2 while the MMAs ran (PREFETCH). EARLY and PREFETCH
 * exist for gemm-bench: on the H100 LATE was the fastest of the three on
 * all eight 7B shapes (e.g. Q4_K 11008x4096, 512 tokens: 449 / 468 / 581
 * us for LATE / EARLY / PREFETCH), the prefetches costing more than they
 * hide. */
#define MMA_PIPE_EARLY 0
#define MMA_PIPE_LATE 1
#define MMA_PIPE_PREFETCH 2

/* ---- activation staging: fp32 or fp16 (raw bits) rows ------------------------ */

template <typename XT, int N> struct mma_x_stage;

/* fp32 activations: kept as fp32 in registers, rounded when stored. */
template <int N> struct mma_x_stage<float, N> {
    static_assert(N % 4 == 0, "4-element chunks");
    float v[N];
    __device__ void load(const float *row, int64_t c, int64_t k, bool ok, bool vec)
    {
#pragma unroll
        for (int i = 0; i < N; i += 4) {
            const int64_t cc = c + i;
            if (ok && vec && cc + 4 <= k) {
                const float4 f = *(const float4 *)(row + cc);
                v[i] = f.x, v[i + 1] = f.y, v[i + 2] = f.z, v[i + 3] = f.w;
            } else {
#pragma unroll
                for (int j = 0; j < 4; j++)
                    v[i + j] = (ok && cc + j < k) ? row[cc + j] : 0.0f;
            }
        }
    }
    __device__ void store(__half *dst) const
    {
#pragma unroll
        for (int i = 0; i < N; i += 4) {
            const __half2 a = __floats2half2_rn(v[i], v[i + 1]);
            const __half2 b = __floats2half2_rn(v[i + 2], v[i + 3]);
            uint2 u;
            u.x = *(const uint32_t *)&a;
            u.y = *(const uint32_t *)&b;
            *(uint2 *)dst = u, dst += 4;
        }
    }
};

/* fp16 activations: the raw bits, two per word. */
template <int N> struct mma_x_stage<uint16_t, N> {
    static_assert(N % 4 == 0, "4-element chunks");
    uint32_t v[N / 2];
    __device__ void load(const uint16_t *row, int64_t c, int64_t k, bool ok, bool vec)
    {
#pragma unroll
        for (int i = 0; i < N; i += 4) {
            const int64_t cc = c + i;
            if (ok && vec && cc + 4 <= k) {
                const uint2 u = *(const uint2 *)(row + cc);
                v[i / 2] = u.x, v[i / 2 + 1] = u.y;
            } else {
                uint32_t h[4];
#pragma unroll
                for (int j = 0; j < 4; j++)
                    h[j] = (ok && cc + j < k) ? row[cc + j] : 0u;
                v[i / 2] = h[0] | (h[1] << 16);
                v[i / 2 + 1] = h[2] | (h[3] << 16);
            }
        }
    }
    __device__ void store(__half *dst) const
    {
#pragma unroll
        for (int i = 0; i < N; i += 4) {
            uint2 u;
            u.x = v[i / 2], u.y = v[i / 2 + 1];
            *(uint2 *)dst = u, dst += 4;
        }
    }
};

/* ---- weight staging: decoded fp32 groups, rounded when stored --------------- */

template <uint32_t TYPE, int N> struct mma_w_stage {
    static_assert(N % 8 == 0, "whole 8-element groups");
    float v[N];
    __device__ void load(const uint8_t *row, int64_t c, int64_t k, bool ok)
    {
        if constexpr (gpu_deq<TYPE>::G == 8) {
            /* block types: k is a multiple of 32, so a group is in or out */
#pragma unroll
            for (int g = 0; g < N / 8; g++) {
                if (ok && c + 8 * g < k) {
                    gpu_deq<TYPE>::load(row, c + 8 * g, &v[8 * g]);
                } else {
#pragma unroll
                    for (int j = 0; j < 8; j++)
                        v[8 * g + j] = 0.0f;
                }
            }
        } else {
#pragma unroll
            for (int j = 0; j < N; j++) {
                if (ok && c + j < k)
                    gpu_deq<TYPE>::load(row, c + j, &v[j]);
                else
                    v[j] = 0.0f;
            }
        }
    }
    /* Cache hints for the bytes that load() will read for elements
     * c .. c+N-1: the first, middle and last byte of their blocks (a block
     * of at most 210 bytes spans at most three 128-byte lines, and the
     * middle byte lies in the middle one). No effect on AMD. */
    template <bool L1> __device__ static void prefetch(const uint8_t *row, int64_t c, int64_t k, bool ok)
    {
#if defined(GRETA_GPU_CUDA)
        if (!ok || c >= k)
            return;
        const int64_t be = (int64_t)ggml_type_block_elems(TYPE), bb = (int64_t)ggml_type_block_bytes(TYPE);
        const int64_t e1 = c + N < k ? c + N : k;
        const int64_t lo = c / be * bb, hi = ((e1 - 1) / be + 1) * bb;
        const uint8_t *p[3] = {row + lo, row + (lo + hi) / 2, row + hi - 1};
#pragma unroll
        for (int i = 0; i < 3; i++) {
            if (L1)
                asm volatile("prefetch.global.L1 [%0];\n" ::"l"(p[i]));
            else
                asm volatile("prefetch.global.L2 [%0];\n" ::"l"(p[i]));
        }
#endif
    }

    __device__ void store(__half *dst) const
    {
#pragma unroll
        for (int i = 0; i < N; i += 8) {
            __half2 h[4];
#pragma unroll
            for (int j = 0; j < 4; j++)
                h[j] = __floats2half2_rn(v[i + 2 * j], v[i + 2 * j + 1]);
            uint4 u;
            u.x = *(const uint32_t *)&h[0];
            u.y = *(const uint32_t *)&h[1];
            u.z = *(const uint32_t *)&h[2];
            u.w = *(const uint32_t *)&h[3];
            *(uint4 *)(dst + i) = u;
        }
    }
};

/* ---- the inner back ends ------------------------------------------------------ */

#if defined(GRETA_GPU_CUDA)
/* A 16x16 (or two 16x8) fp16 fragment(s) from shared memory. */
__device__ inline void mma_ldmatrix_x4(uint32_t r[4], const __half *p)
{
    const uint32_t a = (uint32_t)__cvta_generic_to_shared(p);
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(a)
                 : "memory");
}

__device__ inline void mma_ldmatrix_x4_trans(uint32_t r[4], const __half *p)
{
    const uint32_t a = (uint32_t)__cvta_generic_to_shared(p);
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(a)
                 : "memory");
}

/* c[16x8] += a[16x16] * b[16x8], fp16 inputs, fp32 accumulators. */
__device__ inline void mma_16816(float c[4], const uint32_t a[4], uint32_t b0, uint32_t b1)
{
    asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
                 "{%0,%1,%2,%3};\n"
                 : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

/* mma.sync m16n8k16: thread (g = lane / 4, q = lane % 4) holds
 * c[0..1] at (row g, cols 2q, 2q+1) and c[2..3] at (row g + 8, same cols). */
template <int BM, int BN, int BK> struct mma_core {
    static constexpr int WARPS = MMA_THREADS / GRETA_WARP;
    static constexpr int WARPS_M = BM >= 64 ? 2 : 1, WARPS_N = WARPS / WARPS_M;
    static constexpr int WTM = BM / WARPS_M, WTN = BN / WARPS_N;
    static constexpr int MI = WTM / 16, NI = WTN / 8;
    static constexpr int LDS = BK + MMA_PAD;
    static_assert(MI >= 1 && NI >= 2 && NI % 2 == 0 && BK % 16 == 0, "tile shape");
    float acc[MI][NI][4];

    __device__ void zero()
    {
#pragma unroll
        for (int i = 0; i < MI; i++)
#pragma unroll
            for (int j = 0; j < NI; j++)
#pragma unroll
                for (int e = 0; e < 4; e++)
                    acc[i][j][e] = 0.0f;
    }

    /* The A (activation) and B (weight) fragments of k slice kk. */
    __device__ void frags(const __half *xs, const __half *ws, int wm, int wn, int lane, int kk, uint32_t (&a)[MI][4],
                          uint32_t (&b)[NI][2]) const
    {
#pragma unroll
        for (int i = 0; i < MI; i++)
            mma_ldmatrix_x4(a[i], xs + (wm * WTM + i * 16 + (lane & 15)) * LDS + kk + (lane >> 4) * 8);
#pragma unroll
        for (int j = 0; j < NI; j += 2) {
            uint32_t r[4];
            mma_ldmatrix_x4(r, ws + (wn * WTN + j * 8 + (lane & 7) + ((lane >> 4) << 3)) * LDS + kk +
                                   ((lane >> 3) & 1) * 8);
            b[j][0] = r[0], b[j][1] = r[1], b[j + 1][0] = r[2], b[j + 1][1] = r[3];
        }
    }

    /* One BK step over the stage (xs, ws); wm, wn: this warp's position. */
    __device__ void step(const __half *xs, const __half *ws, int wm, int wn, int lane)
    {
#pragma unroll
        for (int kk = 0; kk < BK; kk += 16) {
            uint32_t a[MI][4], b[NI][2];
            frags(xs, ws, wm, wn, lane, kk, a, b);
#pragma unroll
            for (int i = 0; i < MI; i++)
#pragma unroll
                for (int j = 0; j < NI; j++)
                    mma_16816(acc[i][j], a[i], b[j][0], b[j][1]);
        }
    }

    __device__ void store(float *y, int64_t ld_y, int64_t tok0, int64_t row0, int32_t n_tok, int64_t n,
                          int accumulate, int wm, int wn, int lane) const
    {
        const int g = lane >> 2, q = lane & 3;
#pragma unroll
        for (int i = 0; i < MI; i++)
#pragma unroll
            for (int h = 0; h < 2; h++) {
                const int64_t t = tok0 + wm * WTM + i * 16 + g + 8 * h;
                if (t >= n_tok)
                    continue;
                float *yr = y + t * ld_y;
#pragma unroll
                for (int j = 0; j < NI; j++)
#pragma unroll
                    for (int e = 0; e < 2; e++) {
                        const int64_t r = row0 + wn * WTN + j * 8 + 2 * q + e;
                        if (r < n)
                            yr[r] = accumulate ? yr[r] + acc[i][j][2 * h + e] : acc[i][j][2 * h + e];
                    }
            }
    }
};

#else /* AMD */

typedef _Float16 mma_f16x4 __attribute__((ext_vector_type(4)));
typedef float mma_f32x16 __attribute__((ext_vector_type(16)));

/* MFMA 32x32x8 f16 on a wavefront of 64: lane l holds A[l % 32][4 (l / 32) ..
 * +3] and B[4 (l / 32) .. +3][l % 32]; accumulator e of lane l is
 * D[8 (e / 4) + 4 (l / 32) + e % 4][l % 32]. */
template <int BM, int BN, int BK> struct mma_core {
    static constexpr int WARPS = MMA_THREADS / GRETA_WARP;
    static constexpr int WARPS_M = BM >= 64 ? 2 : 1, WARPS_N = WARPS / WARPS_M;
    static constexpr int WTM = BM / WARPS_M, WTN = BN / WARPS_N;
    static constexpr int MI = WTM / 32, NI = WTN / 32;
    static constexpr int LDS = BK + MMA_PAD;
    static_assert(MI >= 1 && NI >= 1 && BK % 8 == 0, "tile shape");
    mma_f32x16 acc[MI][NI];

    __device__ void zero()
    {
#pragma unroll
        for (int i = 0; i < MI; i++)
#pragma unroll
            for (int j = 0; j < NI; j++)
#pragma unroll
                for (int e = 0; e < 16; e++)
                    acc[i][j][e] = 0.0f;
    }

    __device__ void step(const __half *xs, const __half *ws, int wm, int wn, int lane)
    {
#if defined(__HIP_DEVICE_COMPILE__)
#pragma unroll
        for (int kk = 0; kk < BK; kk += 8) {
            mma_f16x4 a[MI], b[NI];
#pragma unroll
            for (int i = 0; i < MI; i++)
                a[i] = *(const mma_f16x4 *)(xs + (wm * WTM + i * 32 + (lane & 31)) * LDS + kk + (lane >> 5) * 4);
#pragma unroll
            for (int j = 0; j < NI; j++)
                b[j] = *(const mma_f16x4 *)(ws + (wn * WTN + j * 32 + (lane & 31)) * LDS + kk + (lane >> 5) * 4);
#pragma unroll
            for (int i = 0; i < MI; i++)
#pragma unroll
                for (int j = 0; j < NI; j++)
                    acc[i][j] = __builtin_amdgcn_mfma_f32_32x32x8f16(a[i], b[j], acc[i][j], 0, 0, 0);
        }
#endif
    }

    __device__ void store(float *y, int64_t ld_y, int64_t tok0, int64_t row0, int32_t n_tok, int64_t n,
                          int accumulate, int wm, int wn, int lane) const
    {
#pragma unroll
        for (int i = 0; i < MI; i++)
#pragma unroll
            for (int j = 0; j < NI; j++) {
                const int64_t r = row0 + wn * WTN + j * 32 + (lane & 31);
                if (r >= n)
                    continue;
#pragma unroll
                for (int e = 0; e < 16; e++) {
                    const int64_t t = tok0 + wm * WTM + i * 32 + 8 * (e / 4) + 4 * (lane >> 5) + e % 4;
                    if (t < n_tok) {
                        float *yp = y + t * ld_y + r;
                        *yp = accumulate ? *yp + acc[i][j][e] : acc[i][j][e];
                    }
                }
            }
    }
};
#endif

/* ---- the kernel ------------------------------------------------------------------ */

/* grid (ceil(n_tok / BM), ceil(n / BN)): consecutive blocks share a weight
 * tile, so it is read from memory once and from L2 by the others.
 * Dynamic shared memory: gemm_mma_smem_bytes(BM, BN, BK). x_vec: x and ld_x
 * allow aligned 4-element loads (16 bytes fp32, 8 bytes fp16). */
template <uint32_t TYPE, typename XT, int BM, int BN, int BK, int PIPE = MMA_PIPE_LATE>
__global__ void __launch_bounds__(MMA_THREADS, gemm_mma_min_blocks(BM, BN, BK))
gemm_mma_kernel(const uint8_t *__restrict__ w, int64_t row_bytes, int64_t k, int64_t n, const XT *__restrict__ x,
                int64_t ld_x, int32_t n_tok, float *__restrict__ y, int64_t ld_y, int accumulate, int x_vec)
{
    typedef mma_core<BM, BN, BK> core_t;
    constexpr int LDS = core_t::LDS;
    constexpr int XPT = BM * BK / MMA_THREADS, WPT = BN * BK / MMA_THREADS;
    static_assert(XPT >= 4 && WPT >= 8 && BK % XPT == 0 && BK % WPT == 0, "loader shape");
    extern __shared__ uint4 gemm_mma_smem[];
    __half *xs = (__half *)gemm_mma_smem;   /* [2][BM][LDS] */
    __half *ws = xs + 2 * BM * LDS;          /* [2][BN][LDS] */

    const int tid = threadIdx.x, lane = tid % GRETA_WARP, warp = tid / GRETA_WARP;
    const int wm = warp / core_t::WARPS_N, wn = warp % core_t::WARPS_N;
    const int64_t tok0 = (int64_t)blockIdx.x * BM, row0 = (int64_t)blockIdx.y * BN;

    /* loader roles */
    const int xr = tid / (BK / XPT), xc = (tid % (BK / XPT)) * XPT;
    const int wr = tid / (BK / WPT), wc = (tid % (BK / WPT)) * WPT;
    const bool x_ok = tok0 + xr < n_tok, w_ok = row0 + wr < n;
    const XT *xrow = x + (x_ok ? tok0 + xr : 0) * ld_x;
    const uint8_t *wrow = w + (w_ok ? row0 + wr : 0) * row_bytes;
    const bool vec = x_vec != 0;

    mma_x_stage<XT, XPT> xst;
    mma_w_stage<TYPE, WPT> wst;
    core_t core;
    core.zero();

    const int64_t n_steps = (k + BK - 1) / BK;
    xst.load(xrow, xc, k, x_ok, vec);
    wst.load(wrow, wc, k, w_ok);
    xst.store(xs + xr * LDS + xc);
    wst.store(ws + wr * LDS + wc);
    __syncthreads();
    for (int64_t s = 0; s < n_steps; s++) {
        const int cur = (int)(s & 1);
        const bool more = s + 1 < n_steps;
        const int64_t k1 = (s + 1) * BK;
        if (more) {
            xst.load(xrow, k1 + xc, k, x_ok, vec); /* raw, consumed after the MMAs */
            if constexpr (PIPE == MMA_PIPE_PREFETCH) {
                mma_w_stage<TYPE, WPT>::template prefetch<true>(wrow, k1 + wc, k, w_ok);
                mma_w_stage<TYPE, WPT>::template prefetch<false>(wrow, k1 + MMA_PREFETCH_STEPS * BK + wc, k, w_ok);
            } else if constexpr (PIPE == MMA_PIPE_EARLY) {
                wst.load(wrow, k1 + wc, k, w_ok);
            }
        }
        core.step(xs + cur * BM * LDS, ws + cur * BN * LDS, wm, wn, lane);
        if (more) {
            if constexpr (PIPE != MMA_PIPE_EARLY)
                wst.load(wrow, k1 + wc, k, w_ok); /* decoded from the prefetched lines */
            xst.store(xs + (cur ^ 1) * BM * LDS + xr * LDS + xc);
            wst.store(ws + (cur ^ 1) * BN * LDS + wr * LDS + wc);
        }
        __syncthreads();
    }
    core.store(y, ld_y, tok0, row0, n_tok, n, accumulate, wm, wn, lane);
}

/* Launches one configuration; the caller has checked the arguments. Raises
 * the dynamic shared-memory limit once when a configuration needs more than
 * the default 48 KiB (NVIDIA only; the library's tiles stay below it). */
template <uint32_t TYPE, typename XT, int BM, int BN, int BK, int PIPE = MMA_PIPE_LATE>
static int gemm_mma_launch(gpu_stream_t st, const void *w, int64_t row_bytes, int64_t k, int64_t n, const XT *x,
                           int64_t ld_x, int32_t n_tok, float *y, int64_t ld_y, int accumulate, greta_error *err)
{
    constexpr int smem = gemm_mma_smem_bytes(BM, BN, BK);
#if defined(GRETA_GPU_CUDA)
    GPU_CHECK((gpu_smem_opt_in<gemm_mma_kernel<TYPE, XT, BM, BN, BK, PIPE>>(smem)), err);
#else
    static_assert(smem <= 64 * 1024, "AMD: at most 64 KiB of LDS per block");
#endif
    const size_t align = sizeof(XT) * 4;
    const int x_vec = (ld_x % 4 == 0) && ((uintptr_t)x % align == 0);
    const dim3 grid((unsigned)((n_tok + BM - 1) / BM), (unsigned)((n + BN - 1) / BN));
    gemm_mma_kernel<TYPE, XT, BM, BN, BK, PIPE><<<grid, MMA_THREADS, smem, st>>>(
        (const uint8_t *)w, row_bytes, k, n, x, ld_x, n_tok, y, ld_y, accumulate, x_vec);
    GPU_CHECK(gpu_last_error(), err);
    return 0;
}

/* ---- fp16 x fp16: the weights decoded beforehand --------------------------------
 * y[t][r] (+)= sum_i x[t][i] * w[r][i] with both operands fp16 in memory
 * (w: rows of ld_w elements, e.g. greta_gpu_dequant_f16's output), the same
 * tiles, shared-memory layout and inner back ends (mma_core) as
 * gemm_mma_kernel, but nothing is decoded or converted in the loop: each
 * step's tiles are copied straight into shared memory GEMM_F16_STAGES - 1
 * steps ahead (gpu_cp_async16: 16-byte pieces of 8 elements; rows past n_tok
 * or n and pieces past k are zero-filled), so the copies of later steps
 * overlap the MMAs of this one and one barrier per step remains. Needs k,
 * ld_x and ld_w multiples of 8 and x, w 16-byte aligned (checked by the
 * launcher). */
#ifndef GEMM_F16_STAGES
#if defined(GRETA_GPU_HIP)
#define GEMM_F16_STAGES 3 /* 60 KiB for 128x128: within a CDNA block's 64 KiB of LDS */
#else
#define GEMM_F16_STAGES 4
#endif
#endif

/* A thread's share of copying one k step of a tile of ROWS rows into
 * shared memory: 16-byte pieces of 8 values at fixed (row, piece) places,
 * sources kept in registers and advanced by the step's first column c0 (the
 * per-step address arithmetic cost 20-30% of gemm_f16_kernel's time
 * before). Rows from `first` on at or past `limit`, and pieces past k, are
 * zero-filled. dst(r, c) is the byte offset of row r's piece c in a stage
 * (the kernel's layout). */
template <int ROWS, int CPR, int THREADS> struct tile_pieces {
    static constexpr int P = ROWS * CPR / THREADS;
    static_assert((ROWS * CPR) % THREADS == 0, "whole pieces per thread");
    const uint16_t *src[P];
    int dst[P], col[P];
    bool ok[P];

    template <class DST>
    __device__ __forceinline__ void init(const uint16_t *a, int64_t ld, int64_t first, int64_t limit, int tid, DST d)
    {
#pragma unroll
        for (int j = 0; j < P; j++) {
            const int i = tid + j * THREADS, r = i / CPR, c = i % CPR;
            ok[j] = first + r < limit;
            src[j] = a + (ok[j] ? (first + r) * ld + 8 * c : 0);
            dst[j] = d(r, c), col[j] = 8 * c;
        }
    }

    /* the step at column c0 into the stage at `to` (a: any readable address
     * of the operand, the source of the zero-filled pieces) */
    __device__ __forceinline__ void issue(uint8_t *to, int64_t c0, int64_t k, const uint16_t *a) const
    {
#pragma unroll
        for (int j = 0; j < P; j++) {
            const bool g = ok[j] && c0 + col[j] < k;
            gpu_cp_async16(to + dst[j], g ? src[j] + c0 : a, g ? 16 : 0);
        }
    }
};

/* An activation tile (XR rows, tokens tok0..n_tok) and a weight tile (WR
 * rows, rows row0..n) of one k step (tile_pieces each). */
template <int XR, int WR, int CPR, int THREADS> struct tile_copier {
    tile_pieces<XR, CPR, THREADS> xp;
    tile_pieces<WR, CPR, THREADS> wp;

    template <class DST>
    __device__ __forceinline__ void init(const uint16_t *x, int64_t ld_x, int64_t tok0, int32_t n_tok,
                                         const uint16_t *w, int64_t ld_w, int64_t row0, int64_t n, int tid, DST dst)
    {
        xp.init(x, ld_x, tok0, n_tok, tid, dst);
        wp.init(w, ld_w, row0, n, tid, dst);
    }

    /* the step at column c0 into the stage at xd / wd (no commit) */
    __device__ __forceinline__ void issue(uint8_t *xd, uint8_t *wd, int64_t c0, int64_t k, const uint16_t *x,
                                          const uint16_t *w) const
    {
        xp.issue(xd, c0, k, x);
        wp.issue(wd, c0, k, w);
    }
};

__host__ __device__ constexpr int gemm_f16_smem_bytes(int bm, int bn, int bk, int stages = GEMM_F16_STAGES)
{
    return stages * (bm + bn) * (bk + MMA_PAD) * 2;
}

template <int BM, int BN, int BK, int S = GEMM_F16_STAGES, int MINB = gemm_mma_min_blocks(BM, BN, BK)>
__global__ void __launch_bounds__(MMA_THREADS, MINB)
gemm_f16_kernel(const uint16_t *__restrict__ w, int64_t ld_w, int64_t k, int64_t n, const uint16_t *__restrict__ x,
                int64_t ld_x, int32_t n_tok, float *__restrict__ y, int64_t ld_y, int accumulate)
{
    typedef mma_core<BM, BN, BK> core_t;
    constexpr int LDS = core_t::LDS, CPR = BK / 8; /* 16-byte pieces per tile row */
    extern __shared__ uint4 gemm_mma_smem[];
    __half *xs = (__half *)gemm_mma_smem; /* [S][BM][LDS] */
    __half *ws = xs + S * BM * LDS;       /* [S][BN][LDS] */

    const int tid = threadIdx.x, lane = tid % GRETA_WARP, warp = tid / GRETA_WARP;
    const int wm = warp / core_t::WARPS_N, wn = warp % core_t::WARPS_N;
    const int64_t tok0 = (int64_t)blockIdx.x * BM, row0 = (int64_t)blockIdx.y * BN;
    const int64_t n_steps = (k + BK - 1) / BK;

    tile_copier<BM, BN, CPR, MMA_THREADS> cp;
    cp.init(x, ld_x, tok0, n_tok, w, ld_w, row0, n, tid, [](int r, int c) { return (r * LDS + 8 * c) * 2; });
    /* step s's tiles into stage s % S, then one commit (also when past the end) */
    auto issue = [&](int64_t s) {
        if (s < n_steps)
            cp.issue((uint8_t *)(xs + (int)(s % S) * BM * LDS), (uint8_t *)(ws + (int)(s % S) * BN * LDS), s * BK, k,
                     x, w);
        gpu_cp_async_commit();
    };

    core_t core;
    core.zero();
#pragma unroll
    for (int s = 0; s < S - 1; s++)
        issue(s);
    for (int64_t s = 0; s < n_steps; s++) {
        gpu_cp_async_wait<S - 2>();
        __syncthreads(); /* step s is in; every warp is done with step s - 1's stage */
        issue(s + S - 1);
        core.step(xs + (int)(s % S) * BM * LDS, ws + (int)(s % S) * BN * LDS, wm, wn, lane);
    }
    core.store(y, ld_y, tok0, row0, n_tok, n, accumulate, wm, wn, lane);
}

template <int BM, int BN, int BK, int S = GEMM_F16_STAGES, int MINB = gemm_mma_min_blocks(BM, BN, BK)>
static int gemm_f16_launch(gpu_stream_t st, const uint16_t *w, int64_t ld_w, int64_t k, int64_t n,
                           const uint16_t *x, int64_t ld_x, int32_t n_tok, float *y, int64_t ld_y, int accumulate,
                           greta_error *err)
{
    constexpr int smem = gemm_f16_smem_bytes(BM, BN, BK, S);
#if defined(GRETA_GPU_CUDA)
    GPU_CHECK((gpu_smem_opt_in<gemm_f16_kernel<BM, BN, BK, S, MINB>>(smem)), err);
#else
    static_assert(smem <= 64 * 1024, "AMD: at most 64 KiB of LDS per block");
#endif
    const dim3 grid((unsigned)((n_tok + BM - 1) / BM), (unsigned)((n + BN - 1) / BN));
    gemm_f16_kernel<BM, BN, BK, S, MINB><<<grid, MMA_THREADS, smem, st>>>(w, ld_w, k, n, x, ld_x, n_tok, y, ld_y,
                                                                          accumulate);
    GPU_CHECK(gpu_last_error(), err);
    return 0;
}

#endif
