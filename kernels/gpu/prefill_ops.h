/* prefill_ops.h - C interface of the prefill kernels (issue 8): the
 * matrix-core GEMM over native GGUF weight blocks (gemm_mma.cu) and the
 * flash-attention prefill (flash_attn.cu). Plain C, conventions as in
 * gpu_ops.h: every function returns 0 or a negative greta_status and fills
 * err; device pointers; asynchronous on the stream (NULL = legacy default);
 * nothing allocates or synchronizes with the host.
 *
 * GEMM
 *   y[t][r] (+)= sum_i x[t][i] * W[r][i],  t < n_tok, r < n, i < k
 *   W: n rows of k elements in the file's native blocks (row r at byte
 *      r * ggml_row_bytes(type, k)); types F32, F16, BF16, Q4_0, Q8_0, Q4_K,
 *      Q5_K, Q6_K. x: fp32 or fp16 (raw IEEE bits), rows of ld_x elements.
 *   Both operands are rounded to fp16 in shared memory (weights decoded by
 *   dequant.cuh, bit-exact with greta_dequant_row, then rounded once) and
 *   multiplied on the tensor cores (NVIDIA mma.sync m16n8k16, AMD MFMA
 *   32x32x8) with fp32 accumulation. Error bound against an exact product of
 *   the decoded weights and the fp32 activations:
 *       |y - ref| <= 3e-3 * sum_i |W[r][i] * x[t][i]|   (k <= 16384)
 *   (two fp16 roundings, 2 * 2^-11, plus the tensor cores' fp32 accumulation,
 *   at most k * 2^-23, as a worst case; typical errors are far smaller). Weights or
 *   activations beyond the fp16 range (|v| > 65504) become infinite: fine
 *   for LLM weights and normalized activations, not a general fp32 GEMM.
 *
 *   Use it from n_tok >= GRETA_GPU_MMA_MIN_TOK (up to the GEMV's limit the
 *   GEMV, which reads the weights once for all tokens, is faster; beyond
 *   it this kernel is about 2x faster than greta_gpu_gemm: gemm_mma.cu).
 *
 * Flash attention (prefill of one sequence)
 *   The n_tok queries q[t] ([n_heads * head_dim], rows ld_q) are the tokens
 *   at positions p0 .. p0 + n_tok - 1 of sequence `seq`; token t attends to
 *   positions 0 .. p0 + t (causal) of that sequence in the fp16 KV cache
 *   (layout of gpu_ops.h: [n_seq][n_kv_heads][n_ctx][head_dim] per layer),
 *   query head h reading kv head h / (n_heads / n_kv_heads). Scores are
 *   scaled by 1/sqrt(head_dim); online softmax and sums in fp32.
 *   KV store fused: with k_new/v_new (the chunk's keys and values, fp32,
 *   [n_tok][n_kv_heads * head_dim], rows ld_kv) the positions p0.. are read
 *   from them (rounded to fp16 exactly as greta_gpu_kv_store stores them)
 *   and written to the cache by the same launch, so no separate kv_store is
 *   needed; with k_new = v_new = NULL the cache must already hold them.
 *   head_dim 64 and 128 use the tensor cores on NVIDIA (Q, K, P and V in
 *   fp16, fp32 accumulation); other head dims (1..256), and AMD for now, use
 *   a CUDA-core tiled kernel with the same online softmax.
 */
#ifndef GRETA_GPU_PREFILL_OPS_H
#define GRETA_GPU_PREFILL_OPS_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#include "common/error.h"
#include "kernels/gpu/gpu_ops.h"

/* Smallest batch for which the backend should prefer greta_gpu_gemm_mma:
 * right after the GEMV's limit (measurements in gemm_mma.cu). */
#define GRETA_GPU_MMA_MIN_TOK (GRETA_GPU_MATVEC_MAX_TOK + 1)

/* Block tiles (tokens x weight rows). AUTO picks one from the shape and the
 * device's multiprocessor count; the others exist for tests and tuning. */
typedef enum greta_gpu_mma_tile {
    GRETA_GPU_MMA_AUTO = 0,
    GRETA_GPU_MMA_128x128 = 1,
    GRETA_GPU_MMA_64x128 = 2,
    GRETA_GPU_MMA_64x64 = 3,
    GRETA_GPU_MMA_128x128_K64 = 4, /* k steps of 64 (AMD: runs as 128x128, LDS limit) */
    GRETA_GPU_MMA_64x128_K64 = 5,
    GRETA_GPU_MMA_TILE_COUNT = 6
} greta_gpu_mma_tile;

/* Activation element type of the GEMM input. */
typedef enum greta_gpu_act { GRETA_GPU_ACT_F32 = 0, GRETA_GPU_ACT_F16 = 1 } greta_gpu_act;

/* fp32 activations (drop-in for greta_gpu_gemm). */
int greta_gpu_gemm_mma(greta_gpu_stream *s, uint32_t type, const void *w, int64_t k, int64_t n, const float *x,
                       int64_t ld_x, int32_t n_tok, float *y, int64_t ld_y, int accumulate, greta_error *err);

/* fp16 activations (raw bits): half the activation traffic. */
int greta_gpu_gemm_mma_f16(greta_gpu_stream *s, uint32_t type, const void *w, int64_t k, int64_t n,
                           const uint16_t *x, int64_t ld_x, int32_t n_tok, float *y, int64_t ld_y, int accumulate,
                           greta_error *err);

/* Either activation type and an explicit tile (GRETA_GPU_MMA_AUTO or one of
 * the tiles); the two functions above are this with AUTO. */
int greta_gpu_gemm_mma_ex(greta_gpu_stream *s, uint32_t type, const void *w, int64_t k, int64_t n, const void *x,
                          greta_gpu_act act, int64_t ld_x, int32_t n_tok, float *y, int64_t ld_y, int accumulate,
                          greta_gpu_mma_tile tile, greta_error *err);

/* The tile AUTO chooses for this shape on the current device. */
greta_gpu_mma_tile greta_gpu_gemm_mma_pick(int64_t n, int32_t n_tok);

/* y[t][r] (+)= sum_i x[t][i] * w[r][i] with fp16 weights w (rows of ld_w
 * elements: F16 weights, or greta_gpu_dequant_f16's output) and fp16
 * activations x, summed in fp32 on the matrix cores (the same tiles and
 * tolerance as greta_gpu_gemm_mma; tile AUTO picks as
 * greta_gpu_gemm_mma_pick). The tiles are copied into shared memory several
 * steps ahead of the MMAs (asynchronously on NVIDIA sm_80+). Needs k, ld_w
 * and ld_x multiples of 8 and w, x 16-byte aligned; else GRETA_ERR_INVALID. */
int greta_gpu_gemm_f16(greta_gpu_stream *s, const uint16_t *w, int64_t ld_w, int64_t k, int64_t n,
                       const uint16_t *x, int64_t ld_x, int32_t n_tok, float *y, int64_t ld_y, int accumulate,
                       greta_gpu_mma_tile tile, greta_error *err);

/* On NVIDIA Hopper (a build with sm_90a code on a compute capability 9.0
 * GPU) greta_gpu_gemm_f16 with tile AUTO and at least
 * GRETA_GPU_WGMMA_MIN_TOK tokens runs a warpgroup-MMA kernel (wgmma, 128 x
 * 128 tiles; kernels/gpu/gemm_wgmma.cuh) instead of the mma.sync tiles,
 * with the same bound. greta_gpu_wgmma_available: 1 when it can;
 * greta_gpu_set_wgmma(0) turns it off process-wide (for comparisons; on by
 * default), returning whether it is now in use. */
#define GRETA_GPU_WGMMA_MIN_TOK 64
int greta_gpu_wgmma_available(void);
int greta_gpu_set_wgmma(int on);

/* out[t][i] = fp16 bits of x[t][i] (round to nearest even, as
 * greta_f32_to_fp16), t < n_rows, i < n. */
int greta_gpu_f32_to_f16(greta_gpu_stream *s, const float *x, int64_t ld_x, int32_t n_rows, int64_t n,
                         uint16_t *out, int64_t ld_out, greta_error *err);

/* Causal prefill attention of one sequence's chunk (see the top of this
 * file). Requires 0 <= p0, p0 + n_tok <= n_ctx, 0 <= seq, n_heads a multiple
 * of n_kv_heads, 1 <= head_dim <= 256. */
int greta_gpu_flash_attn(greta_gpu_stream *s, const float *q, int64_t ld_q, const float *k_new, const float *v_new,
                         int64_t ld_kv, uint16_t *k_cache, uint16_t *v_cache, int32_t seq, int32_t p0, int32_t n_tok,
                         int32_t n_heads, int32_t n_kv_heads, int32_t head_dim, int32_t n_ctx, float *out,
                         int64_t ld_out, greta_error *err);

/* 1 when greta_gpu_flash_attn runs the tensor-core kernel for head_dim on
 * this build (NVIDIA, head_dim 64 or 128), else 0 (the tiled fallback). */
int greta_gpu_flash_attn_uses_mma(int32_t head_dim);

/* ---- the prefill path's small kernels (prefill_act.cu) ----------------------------
 * Each value computed as by the fp32 op named and rounded once to fp16
 * (round to nearest even). */

/* out[r][i] = fp16 bits of W[r][i] (W: n_rows rows of k elements in the
 * native blocks, as greta_dequant_row decodes them), rows of ld_out. Block
 * types need k and ld_out multiples of 8 and out 16-byte aligned (one
 * 16-byte store per 8-element group). */
int greta_gpu_dequant_f16(greta_gpu_stream *s, uint32_t type, const void *w, int64_t k, int64_t n_rows,
                          uint16_t *out, int64_t ld_out, greta_error *err);

/* greta_gpu_rmsnorm (gpu_ops.h) with an fp16 output. */
int greta_gpu_rmsnorm_f16(greta_gpu_stream *s, const float *x, int64_t ld_x, const float *w, uint16_t *out,
                          int64_t ld_out, int32_t n_tok, int64_t n, float eps, greta_error *err);

/* out[t][i] = fp16(silu(gate[t][i]) * up[t][i]) (greta_gpu_swiglu with an
 * fp16 output; gate is not modified). */
int greta_gpu_swiglu_f16(greta_gpu_stream *s, const float *gate, const float *up, int64_t ld, int32_t n_tok,
                         int64_t n, uint16_t *out, int64_t ld_out, greta_error *err);

/* ---- vendor GEMM (gemm_blas.cu): CUDA builds that found cuBLAS only ---------------
 * Defined only where GRETA_HAVE_GPU_BLAS is defined (a PUBLIC compile
 * definition of greta_kernels_gpu); the portable path is greta_gpu_gemm_mma.
 *   y[t][r] (+)= sum_i x[t][i] * W[r][i]
 * W: fp16 bits, n rows of ld_w (>= k); x: fp16 bits, n_tok rows of ld_x;
 * y: fp32 rows of ld_y; fp32 accumulation on the tensor cores. Asynchronous
 * on s. One handle per stream user; not thread-safe. */
typedef struct greta_gpu_blas greta_gpu_blas;
int greta_gpu_blas_create(greta_gpu_blas **b, greta_error *err);
void greta_gpu_blas_destroy(greta_gpu_blas **b);
int greta_gpu_blas_gemm_f16(greta_gpu_blas *b, greta_gpu_stream *s, const uint16_t *w, int64_t ld_w, int64_t k,
                            int64_t n, const uint16_t *x, int64_t ld_x, int32_t n_tok, float *y, int64_t ld_y,
                            int accumulate, greta_error *err);

#ifdef __cplusplus
}
#endif

#endif
