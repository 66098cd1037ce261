/* gemm.cu - weight matrix times many activation rows (prefill).
 *
 * y[t][r] (+)= dot(W[r], x[t]). Output tiles of 64 rows x 64 tokens per
 * block of 256 threads; per step of 32 along k, the block decodes its
 * 64 x 32 weight tile to fp32 in shared memory (one 8-element group per
 * thread for block types) and stages the 64 x 32 activation tile, then each
 * thread accumulates a 4 x 4 sub-tile in fp32 registers. Plain fp32 FMA:
 * the matrix-core version is a later step.
 */
#include "dequant.cuh"
#include "gpu_ops.h"

#define GEMM_BM 64 /* weight rows per tile */
#define GEMM_BN 64 /* tokens per tile */
#define GEMM_BK 32
#define GEMM_THREADS 256

template <uint32_t TYPE>
__global__ void __launch_bounds__(GEMM_THREADS)
gemm_kernel(const uint8_t *__restrict__ w, int64_t row_bytes, int64_t k, int64_t n, const float *__restrict__ x,
            int64_t ld_x, int32_t n_tok, float *__restrict__ y, int64_t ld_y, int accumulate)
{
    constexpr int G = gpu_deq<TYPE>::G;
    __shared__ float ws[GEMM_BK][GEMM_BM + 1];
    __shared__ float xs[GEMM_BK][GEMM_BN + 1];
    const int tid = threadIdx.x;
    const int tx = tid % 16, ty = tid / 16;
    const int64_t row0 = (int64_t)blockIdx.x * GEMM_BM;
    const int64_t tok0 = (int64_t)blockIdx.y * GEMM_BN;
    /* loader roles: 64 rows (or tokens) x 4 groups of 8 along k */
    const int lr = tid / 4, lk = (tid % 4) * 8;
    const int64_t wrow = row0 + lr;
    const int64_t xtok = tok0 + lr;
    const uint8_t *wr = w + (wrow < n ? wrow : 0) * row_bytes;
    const float *xr = x + (xtok < n_tok ? xtok : 0) * ld_x;

    float acc[4][4];
#pragma unroll
    for (int i = 0; i < 4; i++)
#pragma unroll
        for (int j = 0; j < 4; j++)
            acc[i][j] = 0.0f;

    for (int64_t k0 = 0; k0 < k; k0 += GEMM_BK) {
        float wv[8];
        const int64_t kk = k0 + lk;
        if (G == 8) {
            /* block types: k is a multiple of 32, the group is whole */
            if (wrow < n) {
                gpu_deq<TYPE>::load(wr, kk, wv);
            } else {
#pragma unroll
                for (int j = 0; j < 8; j++)
                    wv[j] = 0.0f;
            }
        } else {
#pragma unroll
            for (int j = 0; j < 8; j++) {
                if (wrow < n && kk + j < k)
                    gpu_deq<TYPE>::load(wr, kk + j, &wv[j]);
                else
                    wv[j] = 0.0f;
            }
        }
#pragma unroll
        for (int j = 0; j < 8; j++)
            ws[lk + j][lr] = wv[j];
#pragma unroll
        for (int j = 0; j < 8; j++)
            xs[lk + j][lr] = (xtok < n_tok && kk + j < k) ? xr[kk + j] : 0.0f;
        __syncthreads();
#pragma unroll 8
        for (int q = 0; q < GEMM_BK; q++) {
            float a[4], b[4];
#pragma unroll
            for (int i = 0; i < 4; i++)
                a[i] = ws[q][tx + 16 * i];
#pragma unroll
            for (int j = 0; j < 4; j++)
                b[j] = xs[q][ty + 16 * j];
#pragma unroll
            for (int i = 0; i < 4; i++)
#pragma unroll
                for (int j = 0; j < 4; j++)
                    acc[i][j] += a[i] * b[j];
        }
        __syncthreads();
    }
#pragma unroll
    for (int j = 0; j < 4; j++) {
        const int64_t t = tok0 + ty + 16 * j;
        if (t >= n_tok)
            continue;
#pragma unroll
        for (int i = 0; i < 4; i++) {
            const int64_t r = row0 + tx + 16 * i;
            if (r < n) {
                float *yp = y + t * ld_y + r;
                *yp = accumulate ? *yp + acc[i][j] : acc[i][j];
            }
        }
    }
}

template <uint32_t TYPE>
static int gemm_launch(gpu_stream_t st, const void *w, int64_t row_bytes, int64_t k, int64_t n, const float *x,
                       int64_t ld_x, int32_t n_tok, float *y, int64_t ld_y, int accumulate, greta_error *err)
{
    const dim3 grid((unsigned)((n + GEMM_BM - 1) / GEMM_BM), (unsigned)((n_tok + GEMM_BN - 1) / GEMM_BN));
    gemm_kernel<TYPE><<<grid, GEMM_THREADS, 0, st>>>((const uint8_t *)w, row_bytes, k, n, x, ld_x, n_tok, y, ld_y,
                                                     accumulate);
    GPU_CHECK(gpu_last_error(), err);
    return 0;
}

extern "C" int greta_gpu_gemm(greta_gpu_stream *s, uint32_t type, const void *w, int64_t k, int64_t n,
                              const float *x, int64_t ld_x, int32_t n_tok, float *y, int64_t ld_y, int accumulate,
                              greta_error *err)
{
    auto fn = GPU_LAUNCHER_FOR(type, gemm_launch);
    if (!fn)
        return greta_error_set(err, GRETA_ERR_UNSUPPORTED, "gemm: no GPU kernel for type %s", ggml_type_name(type));
    const uint64_t row_bytes = ggml_row_bytes(type, (uint64_t)k);
    if (k <= 0 || n <= 0 || row_bytes == 0 || ld_x < k || ld_y < n || n_tok < 0 || n / GEMM_BM >= 2147483647)
        return greta_error_set(err, GRETA_ERR_INVALID, "gemm: bad shape (type %s, k %lld, n %lld, tokens %d)",
                               ggml_type_name(type), (long long)k, (long long)n, n_tok);
    if (n_tok == 0)
        return 0;
    return fn((gpu_stream_t)s, w, (int64_t)row_bytes, k, n, x, ld_x, n_tok, y, ld_y, accumulate, err);
}
