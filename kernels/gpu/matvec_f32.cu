/* matvec_f32.cu - the decode GEMV "v3" (decode_ops.h): the kernels are in
 * matvec_f32.cuh; here the library's instances, argument checks and
 * launches. */
#include "decode_ops.h"
#include "matvec_f32.cuh"

/* ---- host side -------------------------------------------------------------------- */

extern "C" int greta_gpu_matvec_f32_supported(uint32_t type, int64_t k)
{
    return (type == GGML_TYPE_Q4_K || type == GGML_TYPE_Q6_K) && k > 0 && k % QK_K == 0;
}

static int mv3_check_x(const float *x, int64_t ld_x, int64_t k, int32_t n_tok, greta_error *err)
{
    if (!x || k <= 0 || k % QK_K != 0 || ld_x < k || ld_x % 4 != 0 || n_tok < 0 || n_tok > GRETA_GPU_MATVEC_MAX_TOK)
        return greta_error_set(err, GRETA_ERR_INVALID,
                               "matvec_f32: bad input (k %lld must be a multiple of 256, ld_x %lld a multiple of 4 "
                               ">= k, tokens %d in 0..%d)",
                               (long long)k, (long long)ld_x, n_tok, GRETA_GPU_MATVEC_MAX_TOK);
    return 0;
}

static int mv3_check_mat(const char *what, const greta_gpu_mv_mat *m, int64_t k, int32_t n_tok, int need_y,
                         greta_error *err)
{
    if (!greta_gpu_matvec_f32_supported(m->type, k))
        return greta_error_set(err, GRETA_ERR_UNSUPPORTED, "%s: no kernel for %s at row length %lld", what,
                               ggml_type_name(m->type), (long long)k);
    if (!m->w || m->n <= 0 || (need_y && (!m->y || (n_tok > 1 && m->ld_y < m->n))))
        return greta_error_set(err, GRETA_ERR_INVALID, "%s: bad matrix (%lld rows, ld_y %lld)", what,
                               (long long)m->n, (long long)m->ld_y);
    return 0;
}


/* The fusion arguments of one call; 0 or a GRETA_ERR_INVALID naming what
 * is wrong. */
static int mv3_check_fuse(const char *what, const greta_gpu_mv_fuse *f, const greta_gpu_mv_mat *m, int n_mat,
                          greta_error *err)
{
    if (!f || !f->cs)
        return 0;
    const int64_t kv_n = (int64_t)f->n_kv_heads * f->head_dim;
    if (n_mat != 3 || f->head_dim <= 0 || f->head_dim % 2 != 0 || f->rope_dim <= 0 || f->rope_dim % 2 != 0 ||
        f->rope_dim > f->head_dim || f->n_kv_heads <= 0 || f->n_ctx <= 0 || m[0].n % f->head_dim != 0 ||
        m[1].n != kv_n || m[2].n != kv_n || !f->d_pos || !f->d_seq || !f->k_cache || !f->v_cache ||
        (f->kv != GRETA_GPU_KV_F16 && f->kv != GRETA_GPU_KV_F32))
        return greta_error_set(err, GRETA_ERR_INVALID,
                               "%s: bad Q/K/V fusion (%d matrices of %lld, %lld, %lld rows; head_dim %d, "
                               "rope_dim %d, kv heads %d, n_ctx %d)",
                               what, n_mat, (long long)m[0].n, (long long)(n_mat > 1 ? m[1].n : 0),
                               (long long)(n_mat > 2 ? m[2].n : 0), f->head_dim, f->rope_dim, f->n_kv_heads,
                               f->n_ctx);
    return 0;
}

/* register budget: MV3_MIN_BLOCKS blocks per SM for one token; two
 * tokens need more registers (at 4 blocks they spill): 2. Rows longer than
 * one unit per thread (k > 32 * MV3_BLOCK: the 7B w_down, k = 11008, 2.7
 * units a thread) also take the budget of 2 blocks per SM (255 registers):
 * the compiler then keeps the next unit's loads in flight while a unit is
 * used. H100, 7B Q4_K_M, same lease: tg128 390.6 / 392.9 against 381.9 /
 * 384.1 with 3 blocks per SM, 290.3 / 290.5 against 287.1 / 286.9 at depth
 * 4096; 4 blocks per SM: 368.3 / 367.8 (another lease: 391.4 / 387.7
 * against 385.4 / 380.4). */
#define MV3_LONG_MIN_BLOCKS 2
/* The a16 products' launch shapes (greta_gpu_set_decode_table): 0, v6's
 * (MV3_ROWS rows per group, MV3_MIN_BLOCKS blocks per SM everywhere); 1,
 * v7's table, chosen per product and weight type from gemv-bench
 * (bench/results/2026-11-27-gpu-h100-decode-v7.txt, H100 us per launch,
 * v6's shape against v7's):
 *   Q/K/V (the fused one):   4 rows per group, 6 blocks per SM (80
 *                            registers): 15.8 against 16.3;
 *   gate + up, Q4_K:         4 + 4 rows, 4 blocks per SM (128 registers):
 *                            23.3 against 25.1; Q6_K keeps 3 (its units
 *                            need more registers: 4 spill).
 * One token; two tokens keep their budget of 2 blocks per SM. */
#define MV3_QKV_ROWS 4       /* table 1: rows per group of the fused Q/K/V product */
#define MV3_QKV_MIN_BLOCKS 6 /* table 1: its blocks per SM */
#define MV3_GLU_Q4K_MIN_BLOCKS 4 /* table 1: blocks per SM of gate + up in Q4_K */

/* Decode table 2 (v8): the long-row product (k > 32 * MV3_BLOCK: the 7B
 * w_down, 512 groups of 8 rows) in a grid the GPU holds at once, MINB
 * blocks per SM (the register budget it is compiled for), with the same
 * number of groups per block (mv_groups' grid-stride loop): the 512 groups
 * as 256 blocks of 2 instead of 512 blocks in 1.94 waves of 264, so no
 * block starts only when another ends. H100, 7B Q4_K_M, one lease, two
 * rounds: w_down 18.0 -> 17.2 us a layer, tg128 439.6 / 439.3 -> 443.7 /
 * 444.2, at depth 4096 321.5 / 320.9 -> 323.1 / 323.5; the same for w_o (k
 * 4096, 3 blocks per SM) was slower (8.0 -> 8.4 us: fewer of its blocks
 * load weights during the attention before it), and 3 groups a block
 * (171 blocks) much slower (409 t/s). Same results: the groups' sums do
 * not depend on the block that takes them. */
static unsigned balanced_grid(unsigned groups, int minb)
{
    const int sms = greta_gpu_decode_sm_count();
    if (sms <= 0)
        return groups;
    const unsigned hold = (unsigned)sms * (unsigned)minb;
    if (groups <= hold)
        return groups;
    const unsigned per = (groups + hold - 1) / hold; /* groups per block */
    return (groups + per - 1) / per;
}

/* Launched with gpu_launch_pdl: the blocks load their first weights while
 * the previous kernel of the stream finishes (gpu_port.h). blocks: the
 * grid (<= groups; each block takes groups blockIdx.x, + gridDim.x, ...). */
template <int NT, int R, int MINB, bool A16>
static gpu_error_t mv3_go(gpu_stream_t st, unsigned groups, const mv3_args &A, const void *x, int64_t ld_x,
                          int64_t k, int accumulate, unsigned blocks = 0)
{
    const dim3 grid(blocks ? blocks : groups), block(MV3_BLOCK);
    if constexpr (A16) { /* normalized already: no fused RMSNorm */
        if (A.cs)
            return gpu_launch_pdl(mv3_kernel<NT, false, true, R, MINB, true>, grid, block, st, A, x, ld_x, k,
                                  accumulate);
        return gpu_launch_pdl(mv3_kernel<NT, false, false, R, MINB, true>, grid, block, st, A, x, ld_x, k,
                              accumulate);
    } else {
        if (A.cs && A.gamma)
            return gpu_launch_pdl(mv3_kernel<NT, true, true, R, MINB>, grid, block, st, A, x, ld_x, k, accumulate);
        if (A.cs)
            return gpu_launch_pdl(mv3_kernel<NT, false, true, R, MINB>, grid, block, st, A, x, ld_x, k, accumulate);
        if (A.gamma)
            return gpu_launch_pdl(mv3_kernel<NT, true, false, R, MINB>, grid, block, st, A, x, ld_x, k, accumulate);
        return gpu_launch_pdl(mv3_kernel<NT, false, false, R, MINB>, grid, block, st, A, x, ld_x, k, accumulate);
    }
}

/* A.end for groups of R rows; returns the number of groups. */
static int64_t mv3_ends(mv3_args &A, const greta_gpu_mv_mat *m, int n_mat, int R)
{
    int64_t end = 0;
    for (int i = 0; i < MV3_MAX_MATS; i++) {
        if (i < n_mat)
            end += (m[i].n + R - 1) / R;
        A.end[i] = end;
    }
    return end;
}

/* The a16 input (act16.cuh): rows of ld_a bytes, 16-byte aligned. */
static int a16_check(const void *a, int64_t ld_a, int64_t k, int32_t n_tok, const char *what, greta_error *err)
{
    if (!a16_rows_ok(a, ld_a, k) || n_tok < 0 || n_tok > GRETA_GPU_MATVEC_MAX_TOK)
        return greta_error_set(err, GRETA_ERR_INVALID,
                               "%s: bad a16 input (k %lld must be a multiple of 256, row stride %lld a multiple of "
                               "16 >= %lld bytes, 16-byte aligned, tokens %d in 0..%d)",
                               what, (long long)k, (long long)ld_a, (long long)a16_row_bytes(k), n_tok,
                               GRETA_GPU_MATVEC_MAX_TOK);
    return 0;
}

/* Row t0 of x: fp32 rows of ld_x floats, or (A16) a16 rows of ld_x bytes. */
template <bool A16> static const void *x_row(const void *x, int64_t t0, int64_t ld_x)
{
    return A16 ? (const void *)((const uint8_t *)x + t0 * ld_x) : (const void *)((const float *)x + t0 * ld_x);
}

/* greta_gpu_matvec_f32 (A16 false: x fp32, rows of ld_x floats) and
 * greta_gpu_matvec_a16 (A16: x the a16 rows, ld_x bytes), inputs checked
 * but for the matrices and fusions. */
template <bool A16>
static int mv3_run(greta_gpu_stream *s, const void *x, int64_t ld_x, int64_t k, int32_t n_tok,
                   const greta_gpu_mv_mat *m, int n_mat, int accumulate, const greta_gpu_mv_fuse *fuse,
                   greta_error *err)
{
    const char *what = A16 ? "matvec_a16" : "matvec_f32";
    int rc;
    if (!m || n_mat < 1 || n_mat > MV3_MAX_MATS)
        return greta_error_set(err, GRETA_ERR_INVALID, "%s: %d matrices (1..%d)", what, n_mat, MV3_MAX_MATS);
    mv3_args A;
    memset(&A, 0, sizeof A);
    for (int i = 0; i < n_mat; i++) {
        if ((rc = mv3_check_mat(what, &m[i], k, n_tok, 1, err)))
            return rc;
        A.w[i] = (const uint8_t *)m[i].w;
        A.y[i] = m[i].y;
        A.n[i] = m[i].n;
        A.ld_y[i] = m[i].ld_y;
        A.type[i] = m[i].type;
        A.row_bytes[i] = (int64_t)ggml_row_bytes(m[i].type, (uint64_t)k);
    }
    if ((rc = mv3_check_fuse(what, fuse, m, n_mat, err)))
        return rc;
    if (A16 && fuse && fuse->norm_w)
        return greta_error_set(err, GRETA_ERR_INVALID, "%s: the activations are normalized already", what);
    if (fuse && fuse->norm_w) {
        A.gamma = fuse->norm_w;
        A.eps = fuse->eps;
    }
    if (fuse && fuse->cs) {
        A.cs = fuse->cs;
        A.pos = fuse->d_pos;
        A.seq = fuse->d_seq;
        A.rope[0] = A.rope[1] = 1;
        A.cache[1] = fuse->k_cache;
        A.cache[2] = fuse->v_cache;
        A.head_dim = fuse->head_dim;
        A.rope_dim = fuse->rope_dim;
        A.n_kv_heads = fuse->n_kv_heads;
        A.n_ctx = fuse->n_ctx;
        A.kv_f32 = fuse->kv == GRETA_GPU_KV_F32;
    }
    const gpu_stream_t st = (gpu_stream_t)s;
    const bool narrow = A16 && greta_gpu_decode_table() >= 1 && A.cs; /* v7's Q/K/V shape for one token */
    const unsigned groups = (unsigned)mv3_ends(A, m, n_mat, MV3_ROWS);
    for (int32_t t0 = 0; t0 < n_tok; t0 += MV3_NT) {
        mv3_args At = A;
        for (int i = 0; i < n_mat; i++)
            At.y[i] = A.y[i] + t0 * A.ld_y[i];
        if (A.cs) {
            At.cs = A.cs + (int64_t)t0 * A.rope_dim;
            At.pos = A.pos + t0;
            At.seq = A.seq + t0;
        }
        const void *xt = x_row<A16>(x, t0, ld_x);
        if (narrow && n_tok - t0 == 1) { /* A.end stays in MV3_ROWS groups for the other launches */
            const unsigned groups_qkv = (unsigned)mv3_ends(At, m, n_mat, MV3_QKV_ROWS);
            GPU_CHECK((mv3_go<1, MV3_QKV_ROWS, MV3_QKV_MIN_BLOCKS, A16>(st, groups_qkv, At, xt, ld_x, k, accumulate)),
                      err);
        } else if (n_tok - t0 == 1 && k / 32 > MV3_BLOCK)
            GPU_CHECK((mv3_go<1, MV3_ROWS, MV3_LONG_MIN_BLOCKS, A16>(st, groups, At, xt, ld_x, k, accumulate,
                                                                    balanced_grid(groups, MV3_LONG_MIN_BLOCKS))),
                      err);
        else if (n_tok - t0 == 1)
            GPU_CHECK((mv3_go<1, MV3_ROWS, MV3_MIN_BLOCKS, A16>(st, groups, At, xt, ld_x, k, accumulate)), err);
        else
            GPU_CHECK((mv3_go<2, MV3_ROWS, 2, A16>(st, groups, At, xt, ld_x, k, accumulate)), err);
    }
    return 0;
}

extern "C" int greta_gpu_matvec_f32(greta_gpu_stream *s, const float *x, int64_t ld_x, int64_t k, int32_t n_tok,
                                    const greta_gpu_mv_mat *m, int n_mat, int accumulate,
                                    const greta_gpu_mv_fuse *fuse, greta_error *err)
{
    const int rc = mv3_check_x(x, ld_x, k, n_tok, err);
    return rc ? rc : mv3_run<false>(s, x, ld_x, k, n_tok, m, n_mat, accumulate, fuse, err);
}

extern "C" int greta_gpu_matvec_a16(greta_gpu_stream *s, const void *a16, int64_t ld_a, int64_t k, int32_t n_tok,
                                    const greta_gpu_mv_mat *m, int n_mat, int accumulate,
                                    const greta_gpu_mv_fuse *fuse, greta_error *err)
{
    const int rc = a16_check(a16, ld_a, k, n_tok, "matvec_a16", err);
    return rc ? rc : mv3_run<true>(s, a16, ld_a, k, n_tok, m, n_mat, accumulate, fuse, err);
}

template <int NT, int R, int MINB, bool A16>
static gpu_error_t glu_go(gpu_stream_t st, unsigned groups, uint32_t type, const uint8_t *wg, const uint8_t *wu,
                          int64_t rb, int64_t n, const void *x, int64_t ld_x, int64_t k, const float *g, float eps,
                          float *out, int64_t ld_out)
{
    const dim3 grid(groups), block(MV3_BLOCK);
    if constexpr (A16)
        return gpu_launch_pdl(mv3_glu_kernel<NT, false, R, MINB, true>, grid, block, st, type, wg, wu, rb, n, x, ld_x,
                              k, g, eps, out, ld_out);
    if (g)
        return gpu_launch_pdl(mv3_glu_kernel<NT, true, R, MINB>, grid, block, st, type, wg, wu, rb, n, x, ld_x, k,
                              g, eps, out, ld_out);
    return gpu_launch_pdl(mv3_glu_kernel<NT, false, R, MINB>, grid, block, st, type, wg, wu, rb, n, x, ld_x, k, g,
                          eps, out, ld_out);
}

template <bool A16>
static int glu_run(greta_gpu_stream *s, const void *x, int64_t ld_x, int64_t k, int32_t n_tok,
                   const greta_gpu_mv_mat *gate, const greta_gpu_mv_mat *up, const greta_gpu_mv_fuse *fuse,
                   float *out, int64_t ld_out, greta_error *err)
{
    const char *what = A16 ? "matvec_a16_glu" : "matvec_f32_glu";
    int rc;
    if (!gate || !up || !out)
        return greta_error_set(err, GRETA_ERR_INVALID, "%s: missing gate, up or output", what);
    if ((rc = mv3_check_mat(what, gate, k, n_tok, 0, err)) || (rc = mv3_check_mat(what, up, k, n_tok, 0, err)))
        return rc;
    if (gate->type != up->type || gate->n != up->n || (n_tok > 1 && ld_out < gate->n))
        return greta_error_set(err, GRETA_ERR_INVALID,
                               "%s: gate (%s, %lld rows) and up (%s, %lld rows) must match, ld_out %lld", what,
                               ggml_type_name(gate->type), (long long)gate->n, ggml_type_name(up->type),
                               (long long)up->n, (long long)ld_out);
    if (fuse && fuse->cs) /* (the a16 entry point takes no fusions) */
        return greta_error_set(err, GRETA_ERR_INVALID, "%s: the Q/K/V fusion does not apply", what);
    const int64_t rb = (int64_t)ggml_row_bytes(gate->type, (uint64_t)k);
    const gpu_stream_t st = (gpu_stream_t)s;
    const float *g = fuse ? fuse->norm_w : NULL;
    const float eps = fuse ? fuse->eps : 0.0f;
    const uint8_t *wg = (const uint8_t *)gate->w, *wu = (const uint8_t *)up->w;
    const int64_t n = gate->n;
    const unsigned groups = (unsigned)((n + MV3_GLU_ROWS - 1) / MV3_GLU_ROWS);
    for (int32_t t0 = 0; t0 < n_tok; t0 += MV3_NT) {
        const void *xt = x_row<A16>(x, t0, ld_x);
        float *ot = out + t0 * ld_out;
        if (n_tok - t0 == 1 && A16 && greta_gpu_decode_table() >= 1 && gate->type == GGML_TYPE_Q4_K)
            GPU_CHECK((glu_go<1, MV3_GLU_ROWS, MV3_GLU_Q4K_MIN_BLOCKS, A16>(st, groups, gate->type, wg, wu, rb, n, xt,
                                                                               ld_x, k, g, eps, ot, ld_out)),
                      err);
        else if (n_tok - t0 == 1)
            GPU_CHECK((glu_go<1, MV3_GLU_ROWS, MV3_MIN_BLOCKS, A16>(st, groups, gate->type, wg, wu, rb, n, xt, ld_x,
                                                                       k, g, eps, ot, ld_out)),
                      err);
        else
            GPU_CHECK((glu_go<2, MV3_GLU_ROWS, 2, A16>(st, groups, gate->type, wg, wu, rb, n, xt, ld_x, k, g, eps, ot,
                                                          ld_out)),
                      err);
    }
    return 0;
}

extern "C" int greta_gpu_matvec_f32_glu(greta_gpu_stream *s, const float *x, int64_t ld_x, int64_t k, int32_t n_tok,
                                        const greta_gpu_mv_mat *gate, const greta_gpu_mv_mat *up,
                                        const greta_gpu_mv_fuse *fuse, float *out, int64_t ld_out, greta_error *err)
{
    const int rc = mv3_check_x(x, ld_x, k, n_tok, err);
    return rc ? rc : glu_run<false>(s, x, ld_x, k, n_tok, gate, up, fuse, out, ld_out, err);
}

extern "C" int greta_gpu_matvec_a16_glu(greta_gpu_stream *s, const void *a16, int64_t ld_a, int64_t k,
                                        int32_t n_tok, const greta_gpu_mv_mat *gate, const greta_gpu_mv_mat *up,
                                        float *out, int64_t ld_out, greta_error *err)
{
    const int rc = a16_check(a16, ld_a, k, n_tok, "matvec_a16_glu", err);
    return rc ? rc : glu_run<true>(s, a16, ld_a, k, n_tok, gate, up, NULL, out, ld_out, err);
}

/* ---- the a16 activations (act16.cuh) ---------------------------------------------- */

extern "C" int64_t greta_gpu_a16_row_bytes(int64_t k)
{
    return k > 0 && k % QK_K == 0 ? a16_row_bytes(k) : 0;
}

#define A16_THREADS 256

/* grid (k / 4 / A16_THREADS rounded up, n_tok): a thread per 4 values */
__global__ void __launch_bounds__(A16_THREADS) quantize_a16_kernel(const float *x, int64_t ld_x, int64_t k,
                                                                   uint8_t *a, int64_t ld_a)
{
    gpu_pdl_wait(); /* launched with gpu_launch_pdl: x comes from the previous kernel */
    gpu_pdl_trigger();
    const int64_t i4 = (int64_t)blockIdx.x * A16_THREADS + threadIdx.x;
    const bool valid = i4 < k / 4; /* whole 16-value blocks: k % 256 == 0 */
    const float4 v = valid ? ((const float4 *)(x + blockIdx.y * ld_x))[i4] : make_float4(0.0f, 0.0f, 0.0f, 0.0f);
    a16_store4(v, i4, valid, a + blockIdx.y * ld_a, k);
}

extern "C" int greta_gpu_quantize_a16(greta_gpu_stream *s, const float *x, int64_t ld_x, int32_t n_tok, int64_t k,
                                      void *a16, int64_t ld_a, greta_error *err)
{
    int rc = a16_check(a16, ld_a, k, n_tok, "quantize_a16", err);
    if (rc)
        return rc;
    if (!x || ld_x < k || ld_x % 4 != 0 || (uintptr_t)x % 16 != 0)
        return greta_error_set(err, GRETA_ERR_INVALID, "quantize_a16: bad input (ld_x %lld, k %lld)",
                               (long long)ld_x, (long long)k);
    if (n_tok == 0)
        return 0;
    const dim3 grid((unsigned)((k / 4 + A16_THREADS - 1) / A16_THREADS), (unsigned)n_tok);
    GPU_CHECK(gpu_launch_pdl(quantize_a16_kernel, grid, dim3(A16_THREADS), (gpu_stream_t)s, x, ld_x, k,
                             (uint8_t *)a16, ld_a),
              err);
    return 0;
}
