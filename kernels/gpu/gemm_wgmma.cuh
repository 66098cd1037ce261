/* gemm_wgmma.cuh - greta_gpu_gemm_f16's Hopper kernel: warpgroup MMA
 * (wgmma.mma_async, sm_90a) on fp16 tiles in shared memory. Included by
 * gemm_mma.cu in CUDA builds only (AMD: gemm_f16_kernel's MFMA back end).
 *
 *   y[t][r] (+)= sum_i x[t][i] * w[r][i]      (as gemm_f16_kernel)
 *
 * Block: 256 threads = two warpgroups; output tile 128 tokens x 128 weight
 * rows, warpgroup g takes tokens 64g..64g+63 with one m64n128k16 wgmma per
 * 16 values of k. k steps of WG_BK (64: one 128-byte row of fp16 per tile
 * row) through WG_S shared-memory stages, filled with gpu_cp_async16
 * WG_S - 2 steps ahead, so the MMAs of one step stay in flight while the
 * next step's are issued (wgmma.wait_group 1) without a stage being
 * overwritten under them.
 * Shared-memory layout: wgmma's 128-byte swizzle, K-major: tile row r is
 * 128 bytes at (r / 8) * 1024 + (r % 8) * 128, its 16-byte piece c stored at
 * piece c ^ (r % 8) (stages 1024-byte aligned); the descriptor's stride
 * byte offset (next 8 rows) is 1024 and each 16 values of k start 32 bytes
 * further.
 * Accumulators (wgmma's m64nN f32 layout): thread l of warp w of the
 * warpgroup holds, for each 8-column block j, rows 16w + l/4 (+8) and
 * columns 8j + 2(l%4) (+1) in d[4j .. 4j+3].
 */
#ifndef GRETA_GPU_GEMM_WGMMA_CUH
#define GRETA_GPU_GEMM_WGMMA_CUH

#include "gemm_mma.cuh" /* tile_copier */

#define WG_BM 128
#define WG_BN 128
#define WG_BK 64
#define WG_S 5
#define WG_THREADS 256

__host__ __device__ constexpr int gemm_wgmma_smem_bytes()
{
    return WG_S * (WG_BM + WG_BN) * WG_BK * 2 + 1024; /* + alignment of the stages to 1024 bytes */
}

#if defined(__CUDA_ARCH__) && defined(__CUDA_ARCH_FEAT_SM90_ALL)
#define GRETA_WGMMA 1
#endif

#if defined(GRETA_WGMMA)
/* shared-memory matrix descriptor: start address, leading and stride byte
 * offsets (all >> 4), 128-byte swizzle (mode 1 in bits 62-63) */
__device__ __forceinline__ uint64_t wg_desc(const void *smem, uint32_t lbo, uint32_t sbo)
{
    const uint32_t a = (uint32_t)__cvta_generic_to_shared(smem);
    return (uint64_t)((a >> 4) & 0x3FFF) | (uint64_t)((lbo >> 4) & 0x3FFF) << 16 |
           (uint64_t)((sbo >> 4) & 0x3FFF) << 32 | (uint64_t)1 << 62;
}

__device__ __forceinline__ void wg_mma_m64n128k16(float (&d)[64], uint64_t da, uint64_t db)
{
    asm volatile("{\n"
                 ".reg .pred p;\n"
                 "setp.ne.b32 p, %66, 0;\n"
                 "wgmma.mma_async.sync.aligned.m64n128k16.f32.f16.f16 "
                 "{%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31, %32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, %45, %46, %47, %48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63}, %64, %65, p, 1, 1, 0, 0;\n"
                 "}\n"
                 : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]), "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]), "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]), "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31]), "+f"(d[32]), "+f"(d[33]), "+f"(d[34]), "+f"(d[35]), "+f"(d[36]), "+f"(d[37]), "+f"(d[38]), "+f"(d[39]), "+f"(d[40]), "+f"(d[41]), "+f"(d[42]), "+f"(d[43]), "+f"(d[44]), "+f"(d[45]), "+f"(d[46]), "+f"(d[47]), "+f"(d[48]), "+f"(d[49]), "+f"(d[50]), "+f"(d[51]), "+f"(d[52]), "+f"(d[53]), "+f"(d[54]), "+f"(d[55]), "+f"(d[56]), "+f"(d[57]), "+f"(d[58]), "+f"(d[59]), "+f"(d[60]), "+f"(d[61]), "+f"(d[62]), "+f"(d[63])
                 : "l"(da), "l"(db), "r"(1));
}

__device__ __forceinline__ void wg_fence(void)
{
    asm volatile("wgmma.fence.sync.aligned;\n" ::: "memory");
}
__device__ __forceinline__ void wg_commit(void)
{
    asm volatile("wgmma.commit_group.sync.aligned;\n" ::: "memory");
}
template <int N> __device__ __forceinline__ void wg_wait(void)
{
    asm volatile("wgmma.wait_group.sync.aligned %0;\n" ::"n"(N) : "memory");
}
/* makes this thread's generic-proxy writes to shared memory (cp.async)
 * visible to the async proxy that wgmma reads through */
__device__ __forceinline__ void wg_fence_proxy(void)
{
    asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory");
}
#endif

/* 1 in *ok when this build has the wgmma kernel for the running GPU. */
__global__ void gemm_wgmma_probe(int *ok)
{
#if defined(GRETA_WGMMA)
    *ok = 1;
#else
    *ok = 0;
#endif
}

__global__ void __launch_bounds__(WG_THREADS, 1)
gemm_wgmma_kernel(const uint16_t *__restrict__ w, int64_t ld_w, int64_t k, int64_t n, const uint16_t *__restrict__ x,
                  int64_t ld_x, int32_t n_tok, float *__restrict__ y, int64_t ld_y, int accumulate)
{
#if defined(GRETA_WGMMA)
    static_assert(WG_BK == 64, "one 128-byte swizzled row per tile row");
    extern __shared__ uint4 gemm_wgmma_smem[];
    uint8_t *xs = (uint8_t *)(((uintptr_t)gemm_wgmma_smem + 1023) & ~(uintptr_t)1023); /* [S][BM rows][128 B] */
    uint8_t *ws = xs + WG_S * WG_BM * WG_BK * 2;                                        /* [S][BN rows][128 B] */
    const int tid = threadIdx.x, wg = tid / 128;
    const int64_t tok0 = (int64_t)blockIdx.x * WG_BM, row0 = (int64_t)blockIdx.y * WG_BN;
    const int64_t n_steps = (k + WG_BK - 1) / WG_BK;

    tile_copier<WG_BM, WG_BN, WG_BK / 8, WG_THREADS> cp;
    cp.init(x, ld_x, tok0, n_tok, w, ld_w, row0, n, tid,
            [](int r, int c) { return (r >> 3) * 1024 + (r & 7) * 128 + ((c ^ (r & 7)) << 4); });
    auto issue = [&](int64_t s) {
        if (s < n_steps)
            cp.issue(xs + (int)(s % WG_S) * WG_BM * WG_BK * 2, ws + (int)(s % WG_S) * WG_BN * WG_BK * 2, s * WG_BK, k,
                     x, w);
        gpu_cp_async_commit();
    };

    float d[64];
#pragma unroll
    for (int i = 0; i < 64; i++)
        d[i] = 0.0f;
#pragma unroll
    for (int s = 0; s < WG_S - 2; s++)
        issue(s);
    for (int64_t s = 0; s < n_steps; s++) {
        gpu_cp_async_wait<WG_S - 3>();
        wg_fence_proxy();
        __syncthreads(); /* step s is in; step s - 2's MMAs are complete (waited below) */
        issue(s + WG_S - 2); /* into step s - 2's stage */
        const uint8_t *xa = xs + (int)(s % WG_S) * WG_BM * WG_BK * 2 + wg * 64 * 128;
        const uint8_t *wb = ws + (int)(s % WG_S) * WG_BN * WG_BK * 2;
        wg_fence();
#pragma unroll
        for (int kk = 0; kk < WG_BK / 16; kk++)
            wg_mma_m64n128k16(d, wg_desc(xa + kk * 32, 16, 1024), wg_desc(wb + kk * 32, 16, 1024));
        wg_commit();
        wg_wait<1>(); /* step s - 1's MMAs are done; step s's may run on */
    }
    wg_wait<0>();
    /* epilogue */
    const int lt = tid % 128, wrp = lt / 32, l = lt % 32;
#pragma unroll
    for (int h = 0; h < 2; h++) {
        const int64_t t = tok0 + 64 * wg + 16 * wrp + l / 4 + 8 * h;
        if (t >= n_tok)
            continue;
        float *yr = y + t * ld_y;
#pragma unroll
        for (int j = 0; j < 16; j++)
#pragma unroll
            for (int e = 0; e < 2; e++) {
                const int64_t r = row0 + 8 * j + 2 * (l % 4) + e;
                if (r < n)
                    yr[r] = accumulate ? yr[r] + d[4 * j + 2 * h + e] : d[4 * j + 2 * h + e];
            }
    }
#endif
}

#endif
