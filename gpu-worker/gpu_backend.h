/* gpu_backend.h - the GPU backend (backend.h) over kernels/gpu (CUDA or HIP).
 *
 * Built when GRETA_GPU is cuda or hip (then GRETA_HAVE_GPU is defined).
 *
 * Device memory, all allocated once at create (greta_gpu_backend_plan gives
 * the sizes and checks them against the GPU's free memory first):
 *   weights   every model tensor in its native GGUF blocks, as in the file
 *             (no repack, no second copy; a tied lm_head reuses token_embd),
 *             each tensor 256-byte aligned inside one allocation
 *   KV cache  fp16, per layer [n_seq][n_kv_heads][n_ctx][head_dim] for K and V
 *             (fp32 on request, for measurements: greta_gpu_backend_create_opts)
 *   scratch   fp32 activations for n_batch tokens: x, xn [n_batch][dim],
 *             q, att [n_batch][n_heads*head_dim], k, v [n_batch][kv_dim],
 *             gate, up [n_batch][ffn_dim], rope [n_batch][rope_dim],
 *             logits [n_batch][vocab], attention partials, token/pos/seq/row
 *             ids (room for [4][n_batch], laid out [4][T] for a batch of T
 *             tokens), top-k results (ids, values, log-sum-exp packed for
 *             one copy back); for the mma and cublas
 *             prefill paths fp16 activations [n_batch][max(dim, ffn)] and,
 *             cublas only, one decoded fp16 layer matrix (gpu_prefill.h)
 * Host: page-locked staging for the ids and for [n_batch][vocab] logits.
 *
 * A forward call copies the batch's ids to the device, runs every op on the
 * GPU (embedding, RMSNorm, matrix products, RoPE, KV append, attention,
 * SwiGLU, final norm, lm_head) on one stream, and synchronizes once, when
 * the logits are copied back to page-locked memory. forward_topk (backend.h)
 * instead picks each row's k best logits and log-sum-exp on the GPU and
 * copies only those. Nothing is allocated per call.
 *
 * Precision: weights are decoded exactly and every product accumulates in
 * fp32; the KV cache is fp16: keys and values keep 11 significant bits
 * (relative rounding error up to 2^-12), the one place the GPU path departs
 * from the fp32 CPU reference beyond summation order. greta parity
 * --gpu-kv f32 measures what that costs (bench/results/).
 */
#ifndef GRETA_GPU_BACKEND_H
#define GRETA_GPU_BACKEND_H

#include <stdint.h>

#include "backend.h"
#include "kernels/gpu/gpu_ops.h"

extern const greta_backend_kind greta_gpu_backend_kind;

/* Sizes of everything create will allocate (weights, KV cache, scratch on
 * the device; logits_bytes = the engine's host rows plus the page-locked
 * staging rows). Opens GPU 0 and fails with GRETA_ERR_NOMEM and a message
 * giving each part when the device part does not fit its free memory (a
 * context too long for the GPU included); GRETA_ERR_UNSUPPORTED when there
 * is no GPU. */
int greta_gpu_backend_plan(const greta_model *m, const greta_backend_params *p, greta_mem_plan *plan,
                           greta_error *err);
int greta_gpu_backend_create(const greta_model *m, const greta_backend_params *p, greta_backend **out,
                             greta_error *err);

/* Options beyond the common params. kv_type: GRETA_GPU_KV_F16 is the
 * engine's cache; GRETA_GPU_KV_F32 doubles the cache to measure what fp16
 * costs (greta parity --gpu-kv f32). greta_gpu_backend_create (the backend
 * kind: greta run, bench, the gpu-worker) and greta_gpu_backend_plan take
 * it from GRETA_GPU_KV (f16, the default, or f32; anything else fails with
 * GRETA_ERR_INVALID); here the option decides. */
typedef struct greta_gpu_backend_opts {
    greta_gpu_kv_type kv_type;
    /* Decode (batches of <= GRETA_GPU_MATVEC_MAX_TOK tokens), issue 7.
     * decode_kernels: 0 = GRETA_GPU_KERNELS (v1..v8, default v8), 1 =
     * the fp32 GEMV of issue 5, 2 = int8 activations + integer GEMV with
     * fused RMSNorm/quantize, Q/K/V and gate/up/SiLU, 3 = the fp32 GEMV of
     * matvec_f32.cu with Q/K/V (+ RoPE, KV cache) and gate/up/SiLU fused,
     * and flash-decoding attention, 4 = 3 with programmatic dependent
     * launch (each decode kernel starts while the previous one finishes;
     * NVIDIA sm_90+, elsewhere the same as 3; greta_gpu_set_pdl), 5 = 4
     * with one block per (token, head) in the decode attention while every
     * position is below 256 (greta_gpu_attention_decode's `one_block`), 6 =
     * 5 with the products after an RMSNorm (Q/K/V, gate/up, lm_head) from
     * its output as 16-bit codes (greta_gpu_rmsnorm_a16, greta_gpu_matvec_a16:
     * within half a step of 1/32767 of each 16 values' largest), 7 = 6 with
     * the tuning table of greta_gpu_set_decode_table (launch shapes, the
     * attention's prefetch; the same results), 8 = 7 with table 2 (the
     * FFN's w_down in a grid the GPU holds at once; the same results).
     * graph: 0 = GRETA_GPU_GRAPH (0|1, default 1), 1 = capture each decode
     * step's launches once per token count and replay them, 2 = launch them
     * one by one. Bad values (options or variables) fail create. */
    int decode_kernels;
    int graph;
    /* lookahead: 0 = GRETA_GPU_LOOKAHEAD (0|1, default 1), 1 = on, 2 =
     * off. On: a greedy step (forward_topk with k 1 of one token, graph
     * on) enqueues the next step of its sequence before it waits for its
     * own result, with the GPU's top-1 as that step's token; the next call
     * that asks for exactly that step (same sequence, next position, that
     * token, k 1) takes its result, so the GPU never waits for the host
     * between greedy steps. Any other call discards it (after it ran: its
     * cache row lies past the sequence's length, rewritten before use).
     * The same results either way (greta_gpu_backend_lookahead). */
    int lookahead;
    /* Prefill (batches of more than GRETA_GPU_MATVEC_MAX_TOK tokens), issue 8:
     * greta_gpu_prefill below (0 = AUTO: GRETA_GPU_PREFILL, else the
     * build's default). */
    int prefill;
} greta_gpu_backend_opts;

/* Prefill paths (greta_gpu_backend_opts.prefill, GRETA_GPU_PREFILL). The
 * matrix products and the attention of sequence runs (consecutive positions
 * of one sequence, at least GRETA_GPU_FLASH_MIN_RUN tokens, fp16 KV cache)
 * differ; every other op is shared.
 *   V1      fp32 CUDA-core tiles (greta_gpu_gemm) and the per-token
 *           attention after a kv_store: the issue 5 path, for comparison.
 *   MMA     our matrix-core GEMM on the native weight blocks
 *           (greta_gpu_gemm_mma_f16; RMSNorm and SwiGLU write fp16) and
 *           flash attention with the KV store fused (greta_gpu_flash_attn):
 *           the portable path (NVIDIA mma.sync, AMD MFMA).
 *   CUBLAS  each weight matrix decoded to an fp16 scratch (one at a time,
 *           sliced by rows when larger: no second copy of the weights), then
 *           cuBLAS fp16 GEMM with fp32 accumulation; the same attention.
 *           CUDA builds that found cuBLAS only (GRETA_HAVE_GPU_BLAS).
 *   DQMMA   CUBLAS's decoding into the same scratch, then our own matrix-core
 *           GEMM on the fp16 weights (greta_gpu_gemm_f16: tiles copied into
 *           shared memory ahead of the MMAs); the same attention. Every
 *           build (NVIDIA mma.sync, AMD MFMA).
 *   AUTO    GRETA_GPU_PREFILL (auto, v1, mma, cublas or dqmma) when set,
 *           else CUBLAS where built (measured faster: docs/GPU.md), else
 *           DQMMA.
 * MMA, CUBLAS and DQMMA round both GEMM operands to fp16 (fp32
 * accumulation). */
typedef enum greta_gpu_prefill {
    GRETA_GPU_PREFILL_AUTO = 0,
    GRETA_GPU_PREFILL_V1 = 1,
    GRETA_GPU_PREFILL_MMA = 2,
    GRETA_GPU_PREFILL_CUBLAS = 3,
    GRETA_GPU_PREFILL_DQMMA = 4
} greta_gpu_prefill;
/* Shortest run of one sequence's consecutive positions in a batch that
 * goes to flash attention (shorter ones: the per-token kernel). */
#define GRETA_GPU_FLASH_MIN_RUN 16

/* "auto", "v1", "mma", "cublas", "dqmma"; NULL outside the enum. */
const char *greta_gpu_prefill_name(int p);
/* Parses one of those names into *out; GRETA_ERR_INVALID naming them. */
int greta_gpu_prefill_parse(const char *s, int *out, greta_error *err);
/* The prefill path a GPU backend resolved at create (never AUTO); AUTO for
 * a backend that is not a GPU backend. */
int greta_gpu_backend_prefill(const greta_backend *b);
int greta_gpu_backend_create_opts(const greta_model *m, const greta_backend_params *p,
                                  const greta_gpu_backend_opts *o, greta_backend **out, greta_error *err);

/* Decode profile (greta bench --profile, issue 7). While it is on, every
 * decode step (batches of <= GRETA_GPU_MATVEC_MAX_TOK tokens) runs its
 * launches one by one, without the graph, with a GPU event at each block
 * boundary; each block's time is the time between its events:
 *   OTHER    embedding lookup and the RoPE table (once per step)
 *   QKV      attention RMSNorm + the Q, K, V products + RoPE + the KV
 *            cache update (v3: the last three in one launch)
 *   ATTN     attention over the cache
 *   WO       the attention output product (+ residual)
 *   FFN_W13  FFN RMSNorm + gate and up products + SiLU * up
 *   FFN_W2   the down product (+ residual)
 *   LM_HEAD  final RMSNorm + lm_head of the rows with logits
 * bytes: the weight bytes those blocks read (ATTN: the KV cache bytes read
 * at the steps' positions). With the profile off a step has no events. */
typedef enum greta_gpu_prof_block {
    GRETA_GPU_PROF_OTHER = 0,
    GRETA_GPU_PROF_QKV,
    GRETA_GPU_PROF_ATTN,
    GRETA_GPU_PROF_WO,
    GRETA_GPU_PROF_FFN_W13,
    GRETA_GPU_PROF_FFN_W2,
    GRETA_GPU_PROF_LM_HEAD,
    GRETA_GPU_PROF_N
} greta_gpu_prof_block;

typedef struct greta_gpu_profile {
    int64_t steps, tokens;          /* decode steps profiled, tokens in them */
    double ms[GRETA_GPU_PROF_N];    /* GPU milliseconds, summed over the steps */
    double bytes[GRETA_GPU_PROF_N]; /* bytes read, summed over the steps */
} greta_gpu_profile;

/* "other", "qkv", "attention", "wo", "ffn_w1w3", "ffn_w2", "lm_head". */
const char *greta_gpu_prof_block_name(int blk);
/* Starts (and zeroes) the profile; GRETA_ERR_INVALID for a backend that is
 * not a GPU backend. */
int greta_gpu_backend_profile_start(greta_backend *b, greta_error *err);
/* Stops it; the totals go to *out (may be NULL). Steps return to the graph. */
int greta_gpu_backend_profile_stop(greta_backend *b, greta_gpu_profile *out, greta_error *err);

/* What a GPU backend resolved at create from its options and the
 * variables (GRETA_GPU_KERNELS, _PREFILL, _KV, _GRAPH, _LOOKAHEAD):
 * decode_kernels 1..8, prefill a greta_gpu_prefill (never AUTO), the KV
 * cache type, graph and lookahead 0 or 1 (lookahead 1 only with the
 * graph, as it runs), pdl 1 where decode kernels launch early.
 * GRETA_ERR_INVALID for a backend that is not a GPU backend. */
typedef struct greta_gpu_backend_settings {
    int decode_kernels, prefill;
    greta_gpu_kv_type kv_type;
    int graph, lookahead, pdl;
} greta_gpu_backend_settings;
int greta_gpu_backend_settings_get(const greta_backend *b, greta_gpu_backend_settings *out, greta_error *err);

/* Nonzero when b is a GPU backend. */
int greta_gpu_backend_is(const greta_backend *b);
/* Lookahead steps taken (hits) and discarded (misses) since create;
 * GRETA_ERR_INVALID for a backend that is not a GPU backend. */
int greta_gpu_backend_lookahead(const greta_backend *b, uint64_t *hits, uint64_t *misses, greta_error *err);

/* The device and the device bytes of a GPU backend (NULL args are skipped). */
typedef struct greta_gpu_backend_mem {
    uint64_t weights_bytes, kv_bytes, scratch_bytes; /* device */
    uint64_t pinned_bytes;                           /* page-locked host staging */
    uint64_t free_after_load;                        /* device bytes free after create */
} greta_gpu_backend_mem;
int greta_gpu_backend_info(const greta_backend *b, greta_gpu_info *info, greta_gpu_backend_mem *mem,
                           greta_error *err);

#endif
