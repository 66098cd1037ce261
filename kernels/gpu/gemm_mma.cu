/* gemm_mma.cu - the library's instances of the matrix-core GEMM
 * (gemm_mma.cuh) and its dispatcher; the fp32 -> fp16 activation converter.
 *
 * Tiles (tokens x weight rows; k steps of 32 unless named K64):
 *   128x128      the prefill workhorse: each decoded weight tile serves 128
 *                tokens; 64 fp32 accumulators per thread, 2 blocks per SM.
 *   64x128       twice the blocks (rarely the best: kept for tuning).
 *   64x64        small and medium batches: four times the blocks.
 *   128x128 K64, 64x128 K64  fewer, longer steps (72 / 55 KiB of shared
 *                memory, opted in); AUTO does not pick them yet.
 * AUTO estimates each tile's time as (blocks per multiprocessor, rounded up)
 * x (tile area) x (relative cost per element: 1.0, 1.45, 1.06), fitted to
 * gemm-bench on an H100 (132 SMs): 9..256 tokens -> 64x64, 512 tokens ->
 * 128x128 for 4096 rows and 32000 rows, 64x64 for 11008 rows.
 *
 * Measured (H100 80GB HBM3, 2026-11-26, gemm-bench; Q4_K, 4096x4096, fp32
 * activations): 512 tokens about 250-290 us (60-70 TFLOP/s; best tile with
 * fp16 activations 217 us, 79 TFLOP/s); cuBLAS fp16 on the dequantized
 * weights 28.5 us (603 TFLOP/s). The kernel is bound by the lock-step of
 * its 8 warps per multiprocessor (decode, barrier, MMA in turn), not by
 * memory: see the report of issue 8 for the next steps.
 *
 * Threshold against the GEMV (GRETA_GPU_MMA_MIN_TOK, prefill_ops.h): at 8
 * tokens greta_gpu_matvec takes 73 us and this kernel 100-120 us for
 * 4096x4096 Q4_K; from 9 tokens the GEMV no longer applies and this kernel
 * (97-120 us up to 128 tokens) is about 2x faster than the CUDA-core
 * greta_gpu_gemm (240-260 us), so it takes over right after the GEMV.
 */
#include "gemm_mma.cuh"
#if defined(GRETA_GPU_CUDA)
#include "gemm_wgmma.cuh"
#endif
#include "gpu_ops.h"
#include "prefill_ops.h"

#define MMA_BK 32

template <uint32_t TYPE, typename XT>
static int gemm_mma_tiles(gpu_stream_t st, greta_gpu_mma_tile tile, const void *w, int64_t row_bytes, int64_t k,
                          int64_t n, const XT *x, int64_t ld_x, int32_t n_tok, float *y, int64_t ld_y,
                          int accumulate, greta_error *err)
{
    switch (tile) {
    case GRETA_GPU_MMA_128x128:
        return gemm_mma_launch<TYPE, XT, 128, 128, MMA_BK>(st, w, row_bytes, k, n, x, ld_x, n_tok, y, ld_y,
                                                           accumulate, err);
    case GRETA_GPU_MMA_64x128:
        return gemm_mma_launch<TYPE, XT, 64, 128, MMA_BK>(st, w, row_bytes, k, n, x, ld_x, n_tok, y, ld_y,
                                                          accumulate, err);
    case GRETA_GPU_MMA_128x128_K64:
#if defined(GRETA_GPU_CUDA)
        return gemm_mma_launch<TYPE, XT, 128, 128, 64>(st, w, row_bytes, k, n, x, ld_x, n_tok, y, ld_y, accumulate,
                                                       err);
#else /* 72 KiB of shared memory: more than a CDNA block's 64 KiB of LDS */
        return gemm_mma_launch<TYPE, XT, 128, 128, MMA_BK>(st, w, row_bytes, k, n, x, ld_x, n_tok, y, ld_y,
                                                           accumulate, err);
#endif
    case GRETA_GPU_MMA_64x128_K64:
        return gemm_mma_launch<TYPE, XT, 64, 128, 64>(st, w, row_bytes, k, n, x, ld_x, n_tok, y, ld_y, accumulate,
                                                      err);
    default:
        return gemm_mma_launch<TYPE, XT, 64, 64, MMA_BK>(st, w, row_bytes, k, n, x, ld_x, n_tok, y, ld_y,
                                                         accumulate, err);
    }
}

template <uint32_t TYPE>
static int gemm_mma_f32x(gpu_stream_t st, greta_gpu_mma_tile tile, const void *w, int64_t row_bytes, int64_t k,
                         int64_t n, const void *x, int64_t ld_x, int32_t n_tok, float *y, int64_t ld_y,
                         int accumulate, greta_error *err)
{
    return gemm_mma_tiles<TYPE, float>(st, tile, w, row_bytes, k, n, (const float *)x, ld_x, n_tok, y, ld_y,
                                       accumulate, err);
}

template <uint32_t TYPE>
static int gemm_mma_f16x(gpu_stream_t st, greta_gpu_mma_tile tile, const void *w, int64_t row_bytes, int64_t k,
                         int64_t n, const void *x, int64_t ld_x, int32_t n_tok, float *y, int64_t ld_y,
                         int accumulate, greta_error *err)
{
    return gemm_mma_tiles<TYPE, uint16_t>(st, tile, w, row_bytes, k, n, (const uint16_t *)x, ld_x, n_tok, y, ld_y,
                                          accumulate, err);
}

static int mma_sm_count(void)
{
    int dev = 0, v = 0;
#if defined(GRETA_GPU_HIP)
    if (hipGetDevice(&dev) != hipSuccess || hipDeviceGetAttribute(&v, hipDeviceAttributeMultiprocessorCount, dev) != hipSuccess)
        return 0;
#else
    if (cudaGetDevice(&dev) != cudaSuccess || cudaDeviceGetAttribute(&v, cudaDevAttrMultiProcessorCount, dev) != cudaSuccess)
        return 0;
#endif
    return v;
}

/* One tile of a picker's table: shape, blocks sharing an SM, relative
 * cost per output element and k step. */
typedef struct tile_cost {
    greta_gpu_mma_tile tile;
    int bm, bn, per_sm;
    double cost;
} tile_cost;

/* The tile with the least estimated time: (waves of resident blocks) x
 * (blocks sharing an SM in a wave) x (tile area) x (cost). */
static greta_gpu_mma_tile pick_tile(const tile_cost *tiles, size_t count, int64_t n, int32_t n_tok)
{
    int sms = mma_sm_count();
    if (sms <= 0)
        sms = 1;
    greta_gpu_mma_tile best = tiles[0].tile;
    double best_t = 0.0;
    for (size_t i = 0; i < count; i++) {
        const int64_t blocks = ((int64_t)n_tok + tiles[i].bm - 1) / tiles[i].bm * ((n + tiles[i].bn - 1) / tiles[i].bn);
        const int64_t slots = (int64_t)sms * tiles[i].per_sm, waves = (blocks + slots - 1) / slots;
        const int64_t on_sm = (blocks + sms - 1) / sms, shared = on_sm < tiles[i].per_sm ? on_sm : tiles[i].per_sm;
        const double t = (double)waves * (double)shared * tiles[i].bm * tiles[i].bn * tiles[i].cost;
        if (i == 0 || t < best_t)
            best = tiles[i].tile, best_t = t;
    }
    return best;
}

extern "C" greta_gpu_mma_tile greta_gpu_gemm_mma_pick(int64_t n, int32_t n_tok)
{
    static const tile_cost tiles[] = {
        {GRETA_GPU_MMA_128x128, 128, 128, 1, 1.0},
        {GRETA_GPU_MMA_64x128, 64, 128, 1, 1.45},
        {GRETA_GPU_MMA_64x64, 64, 64, 1, 1.06},
    };
    return pick_tile(tiles, sizeof tiles / sizeof tiles[0], n, n_tok);
}

extern "C" int greta_gpu_gemm_mma_ex(greta_gpu_stream *s, uint32_t type, const void *w, int64_t k, int64_t n,
                                     const void *x, greta_gpu_act act, int64_t ld_x, int32_t n_tok, float *y,
                                     int64_t ld_y, int accumulate, greta_gpu_mma_tile tile, greta_error *err)
{
    auto fn = act == GRETA_GPU_ACT_F16 ? GPU_LAUNCHER_FOR(type, gemm_mma_f16x) : GPU_LAUNCHER_FOR(type, gemm_mma_f32x);
    if (!fn)
        return greta_error_set(err, GRETA_ERR_UNSUPPORTED, "gemm_mma: no GPU kernel for type %s", ggml_type_name(type));
    const uint64_t row_bytes = ggml_row_bytes(type, (uint64_t)k);
    if (act != GRETA_GPU_ACT_F32 && act != GRETA_GPU_ACT_F16)
        return greta_error_set(err, GRETA_ERR_INVALID, "gemm_mma: bad activation type %d", (int)act);
    if ((int)tile < 0 || tile >= GRETA_GPU_MMA_TILE_COUNT)
        return greta_error_set(err, GRETA_ERR_INVALID, "gemm_mma: bad tile %d", (int)tile);
    if (k <= 0 || n <= 0 || row_bytes == 0 || ld_x < k || ld_y < n || n_tok < 0 || n / 64 >= 65535)
        return greta_error_set(err, GRETA_ERR_INVALID, "gemm_mma: bad shape (type %s, k %lld, n %lld, tokens %d)",
                               ggml_type_name(type), (long long)k, (long long)n, n_tok);
    if (n_tok == 0)
        return 0;
    if (!w || !x || !y)
        return greta_error_set(err, GRETA_ERR_INVALID, "gemm_mma: null operand");
    if (tile == GRETA_GPU_MMA_AUTO)
        tile = greta_gpu_gemm_mma_pick(n, n_tok);
    return fn((gpu_stream_t)s, tile, w, (int64_t)row_bytes, k, n, x, ld_x, n_tok, y, ld_y, accumulate, err);
}

extern "C" int greta_gpu_gemm_mma(greta_gpu_stream *s, uint32_t type, const void *w, int64_t k, int64_t n,
                                  const float *x, int64_t ld_x, int32_t n_tok, float *y, int64_t ld_y, int accumulate,
                                  greta_error *err)
{
    return greta_gpu_gemm_mma_ex(s, type, w, k, n, x, GRETA_GPU_ACT_F32, ld_x, n_tok, y, ld_y, accumulate,
                                 GRETA_GPU_MMA_AUTO, err);
}

extern "C" int greta_gpu_gemm_mma_f16(greta_gpu_stream *s, uint32_t type, const void *w, int64_t k, int64_t n,
                                      const uint16_t *x, int64_t ld_x, int32_t n_tok, float *y, int64_t ld_y,
                                      int accumulate, greta_error *err)
{
    return greta_gpu_gemm_mma_ex(s, type, w, k, n, x, GRETA_GPU_ACT_F16, ld_x, n_tok, y, ld_y, accumulate,
                                 GRETA_GPU_MMA_AUTO, err);
}

/* ---- fp16 x fp16 (gemm_f16_kernel) ------------------------------------------------ */

/* gemm_f16's configurations: k step and stages of the 128x128 tile (one
 * block per SM) and the 64x128 one (two), from gemm-bench --f16 on an H200
 * (2026-11-26, 7B shapes, 512 tokens; bench/results/2026-11-26-gpu-h200-
 * gemm-f16.txt): k steps of 64 in 3 stages were within 3% of the best of
 * 9 variants on the four shapes (k 32..128, 3..8 stages). AMD: k steps of
 * 32 in 3 stages, within a block's 64 KiB of LDS. */
#if defined(GRETA_GPU_HIP)
#define F16_BK_128 32
#define F16_S_128 3
#define F16_BK_64 32
#define F16_S_64 3
#else
#define F16_BK_128 64
#define F16_S_128 3
#define F16_BK_64 64
#define F16_S_64 4
#endif

/* AUTO for gemm_f16's mma.sync / MFMA tiles: pick_tile with costs fitted
 * to gemm-bench --f16 (H200, 512 tokens). */
static greta_gpu_mma_tile gemm_f16_pick(int64_t n, int32_t n_tok)
{
    static const tile_cost tiles[] = {
        {GRETA_GPU_MMA_128x128, 128, 128, 1, 1.0},
        {GRETA_GPU_MMA_64x128, 64, 128, 2, 1.0},
        {GRETA_GPU_MMA_64x64, 64, 64, 2, 1.3},
    };
    return pick_tile(tiles, sizeof tiles / sizeof tiles[0], n, n_tok);
}

/* ---- the Hopper kernel (gemm_wgmma.cuh) ----------------------------------------- */

static int g_wgmma_on = 1; /* greta_gpu_set_wgmma */

extern "C" int greta_gpu_wgmma_available(void)
{
#if defined(GRETA_GPU_CUDA)
    static int avail = -1; /* probed once: the build has sm_90a code and the GPU runs it */
    if (avail < 0) {
        int dev = 0, major = 0, *d_ok = NULL, ok = 0;
        avail = 0;
        if (cudaGetDevice(&dev) == cudaSuccess &&
            cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev) == cudaSuccess && major == 9 &&
            cudaMalloc(&d_ok, sizeof(int)) == cudaSuccess) {
            gemm_wgmma_probe<<<1, 1>>>(d_ok);
            if (cudaGetLastError() == cudaSuccess && cudaMemcpy(&ok, d_ok, sizeof ok, cudaMemcpyDeviceToHost) == cudaSuccess)
                avail = ok == 1;
            cudaFree(d_ok);
        }
        (void)cudaGetLastError(); /* a failed probe is an answer, not an error for later calls */
    }
    return avail;
#else
    return 0;
#endif
}

extern "C" int greta_gpu_set_wgmma(int on)
{
    g_wgmma_on = on != 0;
    return g_wgmma_on && greta_gpu_wgmma_available();
}

#if defined(GRETA_GPU_CUDA)
static int gemm_wgmma_launch(gpu_stream_t st, const uint16_t *w, int64_t ld_w, int64_t k, int64_t n,
                             const uint16_t *x, int64_t ld_x, int32_t n_tok, float *y, int64_t ld_y, int accumulate,
                             greta_error *err)
{
    constexpr int smem = gemm_wgmma_smem_bytes();
    GPU_CHECK(gpu_smem_opt_in<gemm_wgmma_kernel>(smem), err);
    const dim3 grid((unsigned)((n_tok + WG_BM - 1) / WG_BM), (unsigned)((n + WG_BN - 1) / WG_BN));
    gemm_wgmma_kernel<<<grid, WG_THREADS, smem, st>>>(w, ld_w, k, n, x, ld_x, n_tok, y, ld_y, accumulate);
    GPU_CHECK(gpu_last_error(), err);
    return 0;
}
#endif

extern "C" int greta_gpu_gemm_f16(greta_gpu_stream *s, const uint16_t *w, int64_t ld_w, int64_t k, int64_t n,
                                  const uint16_t *x, int64_t ld_x, int32_t n_tok, float *y, int64_t ld_y,
                                  int accumulate, greta_gpu_mma_tile tile, greta_error *err)
{
    if (!w || !x || !y || k <= 0 || k % 8 != 0 || n <= 0 || n_tok < 0 || ld_w < k || ld_w % 8 != 0 || ld_x < k ||
        ld_x % 8 != 0 || (n_tok > 1 && ld_y < n) || (uintptr_t)w % 16 != 0 || (uintptr_t)x % 16 != 0)
        return greta_error_set(err, GRETA_ERR_INVALID,
                               "gemm_f16: bad arguments (k %lld, n %lld, tokens %d, ld_w %lld, ld_x %lld, ld_y %lld: "
                               "k and the strides must be multiples of 8, w and x 16-byte aligned)",
                               (long long)k, (long long)n, n_tok, (long long)ld_w, (long long)ld_x, (long long)ld_y);
    if ((int)tile < 0 || tile >= GRETA_GPU_MMA_TILE_COUNT)
        return greta_error_set(err, GRETA_ERR_INVALID, "gemm_f16: tile %d is not 0..%d", (int)tile,
                               GRETA_GPU_MMA_TILE_COUNT - 1);
    if (n_tok == 0)
        return 0;
    if ((n_tok + 63) / 64 > 2147483647 || (n + 63) / 64 > 65535)
        return greta_error_set(err, GRETA_ERR_INVALID, "gemm_f16: %d tokens x %lld rows is too large a grid", n_tok,
                               (long long)n);
    const gpu_stream_t st = (gpu_stream_t)s;
#if defined(GRETA_GPU_CUDA)
    if (tile == GRETA_GPU_MMA_AUTO && n_tok >= GRETA_GPU_WGMMA_MIN_TOK && g_wgmma_on && greta_gpu_wgmma_available())
        return gemm_wgmma_launch(st, w, ld_w, k, n, x, ld_x, n_tok, y, ld_y, accumulate, err);
#endif
    if (tile == GRETA_GPU_MMA_AUTO)
        tile = gemm_f16_pick(n, n_tok);
    switch (tile) {
    case GRETA_GPU_MMA_128x128:
    case GRETA_GPU_MMA_128x128_K64: /* the k step is the configuration's (below) */
        return gemm_f16_launch<128, 128, F16_BK_128, F16_S_128, 1>(st, w, ld_w, k, n, x, ld_x, n_tok, y, ld_y,
                                                                  accumulate, err);
    case GRETA_GPU_MMA_64x128:
    case GRETA_GPU_MMA_64x128_K64:
        return gemm_f16_launch<64, 128, F16_BK_64, F16_S_64, 2>(st, w, ld_w, k, n, x, ld_x, n_tok, y, ld_y,
                                                               accumulate, err);
    default:
        return gemm_f16_launch<64, 64, MMA_BK>(st, w, ld_w, k, n, x, ld_x, n_tok, y, ld_y, accumulate, err);
    }
}

/* ---- fp32 -> fp16 rows ----------------------------------------------------------- */

/* grid (ceil(n / 1024), n_rows), block 256: 4 elements per thread */
__global__ void f32_to_f16_kernel(const float *__restrict__ x, int64_t ld_x, int64_t n, uint16_t *__restrict__ out,
                                  int64_t ld_out)
{
    const float *xr = x + (int64_t)blockIdx.y * ld_x;
    uint16_t *o = out + (int64_t)blockIdx.y * ld_out;
    const int64_t i0 = ((int64_t)blockIdx.x * blockDim.x + threadIdx.x) * 4;
#pragma unroll
    for (int j = 0; j < 4; j++)
        if (i0 + j < n)
            o[i0 + j] = gpu_float_to_half(xr[i0 + j]);
}

extern "C" int greta_gpu_f32_to_f16(greta_gpu_stream *s, const float *x, int64_t ld_x, int32_t n_rows, int64_t n,
                                    uint16_t *out, int64_t ld_out, greta_error *err)
{
    if (n <= 0 || n_rows < 0 || n_rows > 65535 || ld_x < n || ld_out < n || (n + 1023) / 1024 > 2147483647)
        return greta_error_set(err, GRETA_ERR_INVALID, "f32_to_f16: bad shape (rows %d, n %lld)", n_rows,
                               (long long)n);
    if (n_rows == 0)
        return 0;
    f32_to_f16_kernel<<<dim3((unsigned)((n + 1023) / 1024), (unsigned)n_rows), 256, 0, (gpu_stream_t)s>>>(
        x, ld_x, n, out, ld_out);
    GPU_CHECK(gpu_last_error(), err);
    return 0;
}
