/* decode_ops.h - the decode (batch 1..8) kernels of issue 7: activations
 * quantized to int8 once per input, integer dot products (dp4a / sdot4)
 * against the native K-quant blocks, and the fusions that save launches.
 * Plain C, same conventions as gpu_ops.h (0 or a negative greta_status,
 * asynchronous on the stream, nothing allocated).
 *
 * q8 activations (greta_gpu_q8_row_bytes(k) bytes per token, k % 256 == 0),
 * for one token of k values x:
 *   int8  q[k]        q[i] = rint(x[i] / d_b), b = i / 32 (|q| <= 127)
 *   float d[k / 32]   d_b = max |x| over block b / 127 (0 for a zero block)
 *   float s[k / 32]   the fp32 sum of x over block b (the K-quant min term)
 *   int32 t[k / 16]   the sum of q over each 16 values (the Q6_K offset 32)
 * Rows of n_tok tokens follow each other. Error of d_b * q[i] against x[i]:
 * at most d_b / 2 = max|x| / 254 over the block.
 */
#ifndef GRETA_GPU_DECODE_OPS_H
#define GRETA_GPU_DECODE_OPS_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#include "gpu_ops.h"

/* Bytes of one token's q8 activations of k values (k % 256 == 0), else 0. */
int64_t greta_gpu_q8_row_bytes(int64_t k);

/* x [n_tok][k] (rows ld_x) -> q8 [n_tok][greta_gpu_q8_row_bytes(k)]. */
int greta_gpu_quantize_q8(greta_gpu_stream *s, const float *x, int64_t ld_x, int32_t n_tok, int64_t k, void *q8,
                          greta_error *err);

/* RMSNorm as greta_gpu_rmsnorm (same arithmetic, same fp32 result in out),
 * and the normalized rows quantized to q8 in the same launch. n % 256 == 0. */
int greta_gpu_rmsnorm_q8(greta_gpu_stream *s, const float *x, int64_t ld_x, const float *w, float *out,
                         int64_t ld_out, int32_t n_tok, int64_t n, float eps, void *q8, greta_error *err);

/* One weight matrix of a decode product: n rows of k values (GGUF type,
 * native blocks, device), output y [n_tok][ld_y]. */
typedef struct greta_gpu_mv_mat {
    uint32_t type;
    const void *w;
    int64_t n;
    float *y;
    int64_t ld_y;
} greta_gpu_mv_mat;

/* Nonzero when greta_gpu_matvec_q8 has a kernel for type at row length k
 * (Q4_K and Q6_K, k % 256 == 0). */
int greta_gpu_matvec_q8_supported(uint32_t type, int64_t k);

/* y_i[t] (+)= W_i x[t] for n_mat (1..3) matrices that share the input
 * (q8 of n_tok <= GRETA_GPU_MATVEC_MAX_TOK tokens of k values): one launch
 * per 4 tokens, one warp per row, 16-byte weight loads, integer dot
 * products, fp32 scaling and accumulation. */
int greta_gpu_matvec_q8(greta_gpu_stream *s, const void *q8, int64_t k, int32_t n_tok, const greta_gpu_mv_mat *m,
                        int n_mat, int accumulate, greta_error *err);

/* The FFN input half in one launch: out[t][r] = silu(g) * u with
 * g = dot(gate row r, x[t]), u = dot(up row r, x[t]), silu(g) = g / (1 + expf(-g)).
 * gate->n == up->n; the y fields of gate and up are unused. */
int greta_gpu_matvec_q8_glu(greta_gpu_stream *s, const void *q8, int64_t k, int32_t n_tok, const greta_gpu_mv_mat *gate,
                            const greta_gpu_mv_mat *up, float *out, int64_t ld_out, greta_error *err);

/* ---- v3: fp32 activations (matvec_f32.cu) ----------------------------------
 * The same fp32 arithmetic as greta_gpu_matvec (no activation rounding), R
 * rows per warp, codes to floats by byte permutes, Q/K/V or gate/up in one
 * launch. Q4_K and Q6_K at k % 256 == 0; the other types stay on
 * greta_gpu_matvec. */
int greta_gpu_matvec_f32_supported(uint32_t type, int64_t k);

/* Fusions of greta_gpu_matvec_f32 / _glu (NULL: none).
 *   norm_w  RMSNorm of each x[t] over its k values with these weights (as
 *           greta_gpu_rmsnorm, eps) before the products: y = W (x*g) / rms
 *   cs      the Q/K/V of a decode step (3 matrices: q, k, v): q and k are
 *           rotated as greta_gpu_rope with the table cs [n_tok][rope_dim]
 *           (heads of head_dim), and k and v are also written into
 *           k_cache / v_cache as greta_gpu_kv_store does (d_pos, d_seq,
 *           n_kv_heads, n_ctx, kv). */
typedef struct greta_gpu_mv_fuse {
    const float *norm_w;
    float eps;
    const float *cs;
    int32_t rope_dim, head_dim, n_kv_heads, n_ctx;
    const int32_t *d_pos, *d_seq;
    void *k_cache, *v_cache;
    greta_gpu_kv_type kv;
} greta_gpu_mv_fuse;

/* y_i[t] (+)= W_i x[t] for n_mat (1..3) matrices sharing the input x
 * [n_tok][ld_x] (n_tok <= GRETA_GPU_MATVEC_MAX_TOK, ld_x % 4 == 0): one
 * launch per 2 tokens, with the fusions of fuse (may be NULL). */
int greta_gpu_matvec_f32(greta_gpu_stream *s, const float *x, int64_t ld_x, int64_t k, int32_t n_tok,
                         const greta_gpu_mv_mat *m, int n_mat, int accumulate, const greta_gpu_mv_fuse *fuse,
                         greta_error *err);

/* out[t][r] = silu(g) * u, g = dot(gate row r, x[t]), u = dot(up row r,
 * x[t]), silu(g) = g / (1 + expf(-g)) (as greta_gpu_swiglu); gate and up of
 * one type and shape; their y fields are unused. fuse (may be NULL): its
 * norm_w/eps (RMSNorm of x) as for greta_gpu_matvec_f32; the Q/K/V
 * fields must be unset. */
int greta_gpu_matvec_f32_glu(greta_gpu_stream *s, const float *x, int64_t ld_x, int64_t k, int32_t n_tok,
                             const greta_gpu_mv_mat *gate, const greta_gpu_mv_mat *up, const greta_gpu_mv_fuse *fuse,
                             float *out, int64_t ld_out, greta_error *err);

/* ---- v6: 16-bit activations ("a16", act16.cuh) -----------------------------
 * One token's k values (k % 256 == 0) as int16 codes with an fp32 scale per
 * 16 values (the block's max |x| / 32767) and the fp32 sum of each block:
 * greta_gpu_a16_row_bytes(k) bytes. A code is within half a scale step of
 * x (15 bits of the block's largest value). The products multiply
 * the codes with the weight codes in integer dot products (exact), so they
 * issue about half of v3's instructions per weight; see docs/GPU.md. */
int64_t greta_gpu_a16_row_bytes(int64_t k); /* 0 unless k > 0 and k % 256 == 0 */

/* x [n_tok][k] (rows ld_x floats, 16-byte aligned) -> a16 rows of ld_a
 * bytes (a multiple of 16, >= greta_gpu_a16_row_bytes(k)). */
int greta_gpu_quantize_a16(greta_gpu_stream *s, const float *x, int64_t ld_x, int32_t n_tok, int64_t k, void *a16,
                           int64_t ld_a, greta_error *err);

/* Nonzero when greta_gpu_rmsnorm_a16 takes rows of n values (n % 256 ==
 * 0, at most the width its one-block kernel holds in registers). */
int greta_gpu_rmsnorm_a16_supported(int64_t n);

/* greta_gpu_rmsnorm (the same fp32 result in out), and the normalized rows
 * also as a16 (rows of ld_a bytes) in the same launch; n as above. */
int greta_gpu_rmsnorm_a16(greta_gpu_stream *s, const float *x, int64_t ld_x, const float *w, float *out,
                          int64_t ld_out, int32_t n_tok, int64_t n, float eps, void *a16, int64_t ld_a,
                          greta_error *err);

/* greta_gpu_matvec_f32 / _glu from a16 inputs (rows of ld_a bytes, n_tok <=
 * GRETA_GPU_MATVEC_MAX_TOK): the same matrices, groups and fusions (the
 * Q/K/V one included) except the RMSNorm (fuse->norm_w must be unset).
 * Bound per output: |y - W x| <= 1e-5 * sum |w x| + sum_i |w_i| d_b(i) / 2. */
int greta_gpu_matvec_a16(greta_gpu_stream *s, const void *a16, int64_t ld_a, int64_t k, int32_t n_tok,
                         const greta_gpu_mv_mat *m, int n_mat, int accumulate, const greta_gpu_mv_fuse *fuse,
                         greta_error *err);
int greta_gpu_matvec_a16_glu(greta_gpu_stream *s, const void *a16, int64_t ld_a, int64_t k, int32_t n_tok,
                             const greta_gpu_mv_mat *gate, const greta_gpu_mv_mat *up, float *out, int64_t ld_out,
                             greta_error *err);

#ifdef __cplusplus
}
#endif

#endif
