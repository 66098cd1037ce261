/* prefill_act.cu - the small kernels of the prefill path (prefill_ops.h):
 * weights decoded to fp16 rows (the operand of a vendor fp16 GEMM), and
 * RMSNorm / SwiGLU writing their result as fp16 (the activation operand of
 * the matrix-core GEMMs), so no separate fp32 -> fp16 pass is needed.
 *
 * Precision: every value is computed exactly as in rmsnorm.cu / swiglu.cu /
 * dequant.cuh (fp32) and rounded once to fp16 (round to nearest even), so
 * greta_gpu_rmsnorm_f16 == greta_gpu_f32_to_f16(greta_gpu_rmsnorm) bit for
 * bit, and greta_gpu_dequant_f16 == fp16(greta_dequant_row).
 */
#include "dequant.cuh"
#include "gpu_ops.h"
#include "prefill_ops.h"

/* ---- weights -> fp16 ------------------------------------------------------------ */

/* Block types: one 8-element group per thread, one 16-byte store.
 * grid (ceil(groups / 256)), block 256; groups = n_rows * k / 8. */
template <uint32_t TYPE>
__global__ void __launch_bounds__(256)
dequant_f16_group_kernel(const uint8_t *__restrict__ w, int64_t row_bytes, int64_t k, int64_t groups,
                         uint16_t *__restrict__ out, int64_t ld_out)
{
    const int64_t g = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (g >= groups)
        return;
    const int64_t per_row = k / 8;
    const int64_t r = g / per_row, c = (g - r * per_row) * 8;
    float v[8];
    gpu_deq<TYPE>::load(w + r * row_bytes, c, v);
    uint32_t h[4];
#pragma unroll
    for (int j = 0; j < 4; j++)
        h[j] = (uint32_t)gpu_float_to_half(v[2 * j]) | ((uint32_t)gpu_float_to_half(v[2 * j + 1]) << 16);
    *(uint4 *)(out + r * ld_out + c) = make_uint4(h[0], h[1], h[2], h[3]);
}

/* Float types (any k): one element per thread. grid (ceil(k / 256), n_rows
 * in chunks of 65535 via blockIdx.y + row0). */
template <uint32_t TYPE>
__global__ void __launch_bounds__(256)
dequant_f16_elem_kernel(const uint8_t *__restrict__ w, int64_t row_bytes, int64_t k, int64_t row0,
                        uint16_t *__restrict__ out, int64_t ld_out)
{
    const int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    const int64_t r = row0 + blockIdx.y;
    if (i >= k)
        return;
    float v;
    gpu_deq<TYPE>::load(w + r * row_bytes, i, &v);
    out[r * ld_out + i] = gpu_float_to_half(v);
}

template <uint32_t TYPE>
static int dequant_f16_launch(gpu_stream_t st, const void *w, int64_t k, int64_t n_rows, uint16_t *out,
                              int64_t ld_out, greta_error *err)
{
    const int64_t row_bytes = (int64_t)ggml_row_bytes(TYPE, (uint64_t)k);
    if constexpr (gpu_deq<TYPE>::G == 8) {
        const int64_t groups = n_rows * (k / 8);
        const int64_t blocks = (groups + 255) / 256;
        if (blocks > 2147483647)
            return greta_error_set(err, GRETA_ERR_INVALID, "dequant_f16: %lld rows of %lld are too many",
                                   (long long)n_rows, (long long)k);
        dequant_f16_group_kernel<TYPE><<<(unsigned)blocks, 256, 0, st>>>((const uint8_t *)w, row_bytes, k, groups,
                                                                         out, ld_out);
        GPU_CHECK(gpu_last_error(), err);
    } else {
        for (int64_t r0 = 0; r0 < n_rows; r0 += 65535) {
            const int64_t rows = n_rows - r0 < 65535 ? n_rows - r0 : 65535;
            dequant_f16_elem_kernel<TYPE><<<dim3((unsigned)((k + 255) / 256), (unsigned)rows), 256, 0, st>>>(
                (const uint8_t *)w, row_bytes, k, r0, out, ld_out);
            GPU_CHECK(gpu_last_error(), err);
        }
    }
    return 0;
}

extern "C" int greta_gpu_dequant_f16(greta_gpu_stream *s, uint32_t type, const void *w, int64_t k, int64_t n_rows,
                                     uint16_t *out, int64_t ld_out, greta_error *err)
{
    auto fn = GPU_LAUNCHER_FOR(type, dequant_f16_launch);
    if (!fn)
        return greta_error_set(err, GRETA_ERR_UNSUPPORTED, "dequant_f16: no GPU kernel for type %s",
                               ggml_type_name(type));
    const uint32_t be = ggml_type_block_elems(type);
    if (k <= 0 || n_rows < 0 || ld_out < k || ggml_row_bytes(type, (uint64_t)k) == 0 ||
        (be > 1 && (k % 8 != 0 || ld_out % 8 != 0 || (uintptr_t)out % 16 != 0)) || (k + 255) / 256 > 2147483647)
        return greta_error_set(err, GRETA_ERR_INVALID,
                               "dequant_f16: bad shape (type %s, k %lld, rows %lld, ld_out %lld; block types need "
                               "16-byte aligned rows)",
                               ggml_type_name(type), (long long)k, (long long)n_rows, (long long)ld_out);
    if (n_rows == 0)
        return 0;
    if (!w || !out)
        return greta_error_set(err, GRETA_ERR_INVALID, "dequant_f16: null operand");
    return fn((gpu_stream_t)s, w, k, n_rows, out, ld_out, err);
}

/* ---- RMSNorm -> fp16 -------------------------------------------------------------- */

/* grid (n_tok), block 256: rmsnorm.cu's arithmetic, then one rounding. */
__global__ void rmsnorm_f16_kernel(const float *__restrict__ x, int64_t ld_x, const float *__restrict__ w,
                                   uint16_t *__restrict__ out, int64_t ld_out, int64_t n, float eps)
{
    __shared__ float scratch[GPU_MAX_WARPS];
    const float *xr = x + (int64_t)blockIdx.x * ld_x;
    uint16_t *o = out + (int64_t)blockIdx.x * ld_out;
    float ss = 0.0f;
    for (int64_t i = threadIdx.x; i < n; i += blockDim.x)
        ss += xr[i] * xr[i];
    ss = gpu_block_sum(ss, scratch);
    const float mean = ss / (float)n;
    const float r = 1.0f / sqrtf(mean + eps);
    for (int64_t i = threadIdx.x; i < n; i += blockDim.x) {
        const float xs = xr[i] * r;
        o[i] = gpu_float_to_half(xs * w[i]);
    }
}

extern "C" int greta_gpu_rmsnorm_f16(greta_gpu_stream *s, const float *x, int64_t ld_x, const float *w,
                                     uint16_t *out, int64_t ld_out, int32_t n_tok, int64_t n, float eps,
                                     greta_error *err)
{
    if (n <= 0 || ld_x < n || ld_out < n || n_tok < 0)
        return greta_error_set(err, GRETA_ERR_INVALID, "rmsnorm_f16: bad shape (n %lld)", (long long)n);
    if (n_tok == 0)
        return 0;
    rmsnorm_f16_kernel<<<n_tok, 256, 0, (gpu_stream_t)s>>>(x, ld_x, w, out, ld_out, n, eps);
    GPU_CHECK(gpu_last_error(), err);
    return 0;
}

/* ---- SwiGLU -> fp16 ---------------------------------------------------------------- */

/* grid (min(ceil(n / 256), 1024), n_tok), block 256: swiglu.cu's arithmetic. */
__global__ void swiglu_f16_kernel(const float *__restrict__ gate, const float *__restrict__ up, int64_t ld,
                                  int64_t n, uint16_t *__restrict__ out, int64_t ld_out)
{
    const float *g = gate + (int64_t)blockIdx.y * ld;
    const float *u = up + (int64_t)blockIdx.y * ld;
    uint16_t *o = out + (int64_t)blockIdx.y * ld_out;
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x) {
        const float v = g[i];
        const float silu = v / (1.0f + expf(-v));
        o[i] = gpu_float_to_half(silu * u[i]);
    }
}

extern "C" int greta_gpu_swiglu_f16(greta_gpu_stream *s, const float *gate, const float *up, int64_t ld,
                                    int32_t n_tok, int64_t n, uint16_t *out, int64_t ld_out, greta_error *err)
{
    if (n <= 0 || ld < n || ld_out < n || n_tok < 0 || n_tok > 65535)
        return greta_error_set(err, GRETA_ERR_INVALID, "swiglu_f16: bad shape (n %lld, tokens %d)", (long long)n,
                               n_tok);
    if (n_tok == 0)
        return 0;
    int64_t blocks = (n + 255) / 256;
    if (blocks > 1024)
        blocks = 1024;
    swiglu_f16_kernel<<<dim3((unsigned)blocks, (unsigned)n_tok), 256, 0, (gpu_stream_t)s>>>(gate, up, ld, n, out,
                                                                                            ld_out);
    GPU_CHECK(gpu_last_error(), err);
    return 0;
}
