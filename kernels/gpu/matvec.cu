/* matvec.cu - weight matrix times a few activation vectors (decode).
 *
 * One warp per weight row. K-quant rows (Q4_K, Q5_K, Q6_K) go by units of
 * 32 or 64 elements with 16-byte loads (vdot.cuh): a warp of 32 reads four
 * Q4_K blocks per step. Other types: lane l decodes groups l, l + GRETA_WARP,
 * ... of 8 elements (1 for F32/F16/BF16) with gpu_deq. Each lane multiplies
 * what it decoded with the same columns of up to 4 activation rows, and the
 * warp sums in fp32: the weights are read once for up to 4 tokens (twice
 * for 5..GRETA_GPU_MATVEC_MAX_TOK).
 */
#include "dequant.cuh"
#include "gpu_ops.h"
#include "vdot.cuh"

#define MATVEC_BLOCK 256
#define MATVEC_NT 4 /* most tokens of one launch */

template <int G> __device__ inline void load_x(const float *p, float *v)
{
    if (G == 8) {
        const float4 a = ((const float4 *)p)[0], b = ((const float4 *)p)[1];
        v[0] = a.x; v[1] = a.y; v[2] = a.z; v[3] = a.w;
        v[4] = b.x; v[5] = b.y; v[6] = b.z; v[7] = b.w;
    } else {
#pragma unroll
        for (int j = 0; j < G; j++)
            v[j] = p[j];
    }
}

template <uint32_t TYPE, int NT>
__global__ void __launch_bounds__(MATVEC_BLOCK)
matvec_kernel(const uint8_t *__restrict__ w, int64_t row_bytes, int64_t k, int64_t n,
              const float *__restrict__ x, int64_t ld_x, float *__restrict__ y, int64_t ld_y, int accumulate)
{
    constexpr int G = gpu_deq<TYPE>::G;
    const int lane = threadIdx.x % GRETA_WARP;
    const int64_t n_warps = (int64_t)gridDim.x * (blockDim.x / GRETA_WARP);
    /* Rows are spread over the warps of the grid; the host sizes the grid
     * for 32-wide warps, so with 64-wide warps each warp takes two rows. */
    for (int64_t row = (int64_t)blockIdx.x * (blockDim.x / GRETA_WARP) + threadIdx.x / GRETA_WARP; row < n;
         row += n_warps) {
        const uint8_t *wr = w + row * row_bytes;
        float acc[NT];
#pragma unroll
        for (int t = 0; t < NT; t++)
            acc[t] = 0.0f;
        if constexpr (gpu_vdot<TYPE>::available) {
            /* K-quants: whole units of 32 or 64 elements per lane (vdot.cuh) */
            const int64_t n_units = k / gpu_vdot<TYPE>::UNIT;
            /* unrolled so that several units' loads are in flight at once
             * (a 4096-wide Q4_K row is 4 steps of a 32-lane warp) */
#pragma unroll 4
            for (int64_t u = lane; u < n_units; u += GRETA_WARP)
                gpu_vdot<TYPE>::template dot<NT>(wr, u, x, ld_x, acc);
        } else {
            const int64_t n_groups = k / G;
#pragma unroll 2
            for (int64_t g = lane; g < n_groups; g += GRETA_WARP) {
                float wv[G];
                gpu_deq<TYPE>::load(wr, g * G, wv);
#pragma unroll
                for (int t = 0; t < NT; t++) {
                    float xv[G];
                    load_x<G>(x + t * ld_x + g * G, xv);
#pragma unroll
                    for (int j = 0; j < G; j++)
                        acc[t] += wv[j] * xv[j];
                }
            }
        }
#pragma unroll
        for (int t = 0; t < NT; t++)
            acc[t] = gpu_warp_sum(acc[t]);
        if (lane == 0) {
#pragma unroll
            for (int t = 0; t < NT; t++) {
                float *yp = y + t * ld_y + row;
                *yp = accumulate ? *yp + acc[t] : acc[t];
            }
        }
    }
}

template <uint32_t TYPE, int NT>
static void matvec_go(gpu_stream_t st, unsigned blocks, const void *w, int64_t row_bytes, int64_t k, int64_t n,
                      const float *x, int64_t ld_x, float *y, int64_t ld_y, int accumulate)
{
    matvec_kernel<TYPE, NT><<<blocks, MATVEC_BLOCK, 0, st>>>((const uint8_t *)w, row_bytes, k, n, x, ld_x, y, ld_y,
                                                             accumulate);
}

template <uint32_t TYPE>
static int matvec_launch(gpu_stream_t st, const void *w, int64_t row_bytes, int64_t k, int64_t n, const float *x,
                         int64_t ld_x, int32_t n_tok, float *y, int64_t ld_y, int accumulate, greta_error *err)
{
    const int64_t rows_per_block = MATVEC_BLOCK / GPU_MIN_WARP; /* see the kernel */
    const unsigned blocks = (unsigned)((n + rows_per_block - 1) / rows_per_block);
    /* kernels for 1..MATVEC_NT tokens; a larger batch (up to
     * GRETA_GPU_MATVEC_MAX_TOK) runs as several launches, each reading the
     * weights once (fewer instantiations: they dominate compile time) */
    for (int32_t t0 = 0; t0 < n_tok; t0 += MATVEC_NT) {
        const float *xt = x + t0 * ld_x;
        float *yt = y + t0 * ld_y;
        switch (n_tok - t0 < MATVEC_NT ? n_tok - t0 : MATVEC_NT) {
        case 1: matvec_go<TYPE, 1>(st, blocks, w, row_bytes, k, n, xt, ld_x, yt, ld_y, accumulate); break;
        case 2: matvec_go<TYPE, 2>(st, blocks, w, row_bytes, k, n, xt, ld_x, yt, ld_y, accumulate); break;
        case 3: matvec_go<TYPE, 3>(st, blocks, w, row_bytes, k, n, xt, ld_x, yt, ld_y, accumulate); break;
        default: matvec_go<TYPE, 4>(st, blocks, w, row_bytes, k, n, xt, ld_x, yt, ld_y, accumulate); break;
        }
    }
    GPU_CHECK(gpu_last_error(), err);
    return 0;
}

extern "C" int greta_gpu_matvec(greta_gpu_stream *s, uint32_t type, const void *w, int64_t k, int64_t n,
                                const float *x, int64_t ld_x, int32_t n_tok, float *y, int64_t ld_y, int accumulate,
                                greta_error *err)
{
    auto fn = GPU_LAUNCHER_FOR(type, matvec_launch);
    if (!fn)
        return greta_error_set(err, GRETA_ERR_UNSUPPORTED, "matvec: no GPU kernel for type %s", ggml_type_name(type));
    const uint64_t row_bytes = ggml_row_bytes(type, (uint64_t)k);
    if (k <= 0 || n <= 0 || row_bytes == 0 || ld_x < k || ld_y < n || n_tok < 0 ||
        n_tok > GRETA_GPU_MATVEC_MAX_TOK)
        return greta_error_set(err, GRETA_ERR_INVALID, "matvec: bad shape (type %s, k %lld, n %lld, tokens %d)",
                               ggml_type_name(type), (long long)k, (long long)n, n_tok);
    if (ggml_type_block_elems(type) > 1 && ld_x % 4 != 0)
        return greta_error_set(err, GRETA_ERR_INVALID, "matvec: ld_x %lld must be a multiple of 4", (long long)ld_x);
    if (n_tok == 0)
        return 0;
    return fn((gpu_stream_t)s, w, (int64_t)row_bytes, k, n, x, ld_x, n_tok, y, ld_y, accumulate, err);
}
