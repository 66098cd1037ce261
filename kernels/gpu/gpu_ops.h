/* gpu_ops.h - C interface of the GPU kernels (kernels/gpu/<op>.cu) and of
 * the few runtime services the backend needs. Plain C: gpu-worker and the
 * tests include it without any vendor header; the sources behind it compile
 * as CUDA (nvcc) or HIP (clang -x hip) from one text (gpu_port.h).
 *
 * Conventions
 *   - Every function returns 0 or a negative greta_status and fills err
 *     (GRETA_ERR_GPU for a runtime failure, GRETA_ERR_INVALID for bad
 *     arguments, GRETA_ERR_UNSUPPORTED for a weight type without kernels).
 *     Nothing aborts.
 *   - Pointers named d_* or documented "device" are device memory. Ops are
 *     asynchronous on the given stream (NULL = the legacy default stream);
 *     they allocate nothing and never synchronize with the host.
 *   - Weight matrices are GGUF tensors in their native blocks, uploaded as
 *     they are in the file: n rows of k elements, row r at byte
 *     r * ggml_row_bytes(type, k) (kernels/quant.h). Types: F32, F16, BF16,
 *     Q4_0, Q8_0, Q4_K, Q5_K, Q6_K.
 *   - Activations are fp32, row-major [tokens][features] with a leading
 *     dimension (ld, in elements) per buffer.
 *   - Positions, sequence slots and token ids are read from device memory,
 *     so a step can later be captured into a graph and replayed.
 *   - KV cache (fp16, or fp32 for measurements), one layer:
 *     [n_seq][n_kv_heads][n_ctx][head_dim].
 */
#ifndef GRETA_GPU_OPS_H
#define GRETA_GPU_OPS_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#include "common/error.h"

/* ---- runtime ------------------------------------------------------------- */



typedef struct greta_gpu_stream greta_gpu_stream; /* a CUDA/HIP stream */
typedef struct greta_gpu_event greta_gpu_event;   /* a CUDA/HIP event */
typedef struct greta_gpu_graph greta_gpu_graph;   /* an instantiated graph */

typedef struct greta_gpu_info {
    int device;
    char name[256];        /* "NVIDIA H100 80GB HBM3" */
    char arch[64];         /* "sm_90", "gfx942" */
    char api[16];          /* "cuda" or "hip" */
    int driver_version;    /* as the runtime reports it (CUDA: 13000 = 13.0) */
    int runtime_version;
    int warp_size;         /* 32 or 64: host code sizes launches with this */
    int sm_count;          /* multiprocessors / compute units */
    uint64_t total_mem;    /* bytes */
    uint64_t free_mem;     /* bytes free when queried */
} greta_gpu_info;

/* Devices visible to this process; 0 when there is no GPU or no driver. */
int greta_gpu_device_count(void);
/* Makes device the current one for this thread and describes it. */
int greta_gpu_open(int device, greta_gpu_info *info, greta_error *err);
int greta_gpu_mem_info(uint64_t *free_bytes, uint64_t *total_bytes, greta_error *err);

int greta_gpu_alloc(void **p, size_t n, greta_error *err);
void greta_gpu_free(void *p);
/* Page-locked host memory (fast, asynchronous copies). */
int greta_gpu_alloc_host(void **p, size_t n, greta_error *err);
/* Page-locked host memory that kernels can write (*dev: its address on the
 * device; results land in host memory, visible once the writing kernel's
 * work is waited for). Freed by greta_gpu_free_host. */
int greta_gpu_alloc_host_mapped(void **p, void **dev, size_t n, greta_error *err);
void greta_gpu_free_host(void *p);

typedef enum greta_gpu_copy_dir { GRETA_GPU_H2D = 0, GRETA_GPU_D2H = 1, GRETA_GPU_D2D = 2 } greta_gpu_copy_dir;
int greta_gpu_copy(void *dst, const void *src, size_t n, greta_gpu_copy_dir dir, greta_gpu_stream *s,
                   greta_error *err);
int greta_gpu_memset(void *dst, int value, size_t n, greta_gpu_stream *s, greta_error *err);

int greta_gpu_stream_create(greta_gpu_stream **s, greta_error *err);
void greta_gpu_stream_destroy(greta_gpu_stream **s);
int greta_gpu_stream_sync(greta_gpu_stream *s, greta_error *err);

/* Programmatic dependent launch for the decode kernels that support it
 * (gpu_port.h: RMSNorm, the matvec_f32 / matrix-core GEMVs, decode
 * attention): on, each may start while the previous kernel finishes,
 * loading its weights meanwhile. Process-wide, default off; NVIDIA sm_90+
 * only: returns 0 where it has no effect (HIP, older GPUs: it stays off).
 * Results are the same bits either way. */
int greta_gpu_set_pdl(int on);
int greta_gpu_pdl_enabled(void);

/* The decode kernels' tuning table (process-wide, default 0): 0, decode
 * v6's; 1, v7's: the a16 products' launch shapes per product and weight
 * type (matvec_f32.cu) and the decode attention's L2 prefetch of its first
 * rows before it waits for the previous kernel (attention.cuh); 2, v8's:
 * 1, and the long-row product (the FFN's w_down) in a grid that the GPU
 * holds at once, every block taking the same number of row groups
 * (matvec_f32.cu; the SM count of the current device is read when the
 * table is set, table 1 where it cannot be). The same results either way.
 * Returns the table in use. */
int greta_gpu_set_decode_table(int table);
int greta_gpu_decode_table(void);
int greta_gpu_decode_sm_count(void); /* table 2's SM count; 0 otherwise */

int greta_gpu_event_create(greta_gpu_event **e, greta_error *err);
void greta_gpu_event_destroy(greta_gpu_event **e);
int greta_gpu_event_record(greta_gpu_event *e, greta_gpu_stream *s, greta_error *err);
/* Waits until the work recorded before e has run. */
int greta_gpu_event_sync(greta_gpu_event *e, greta_error *err);
/* Waits for `end`, then gives the milliseconds between the two events. */
int greta_gpu_event_elapsed(greta_gpu_event *start, greta_gpu_event *end, float *ms, greta_error *err);

/* Graphs: work issued on s between begin and end is recorded, not run;
 * end instantiates it. Launching replays it on a stream. */
int greta_gpu_graph_begin(greta_gpu_stream *s, greta_error *err);
int greta_gpu_graph_end(greta_gpu_stream *s, greta_gpu_graph **g, greta_error *err);
int greta_gpu_graph_launch(greta_gpu_graph *g, greta_gpu_stream *s, greta_error *err);
void greta_gpu_graph_destroy(greta_gpu_graph **g);

/* ---- ops (one per kernels/gpu/<op>.cu) ------------------------------------- */

/* embed.cu: out[i][0..dim-1] = row d_ids[i] of the table (n_vocab rows of
 * dim elements, any supported type), dequantized to fp32, i < n. Ids must be
 * in 0..n_vocab-1 (checked by the caller; an id outside gives a row of NaN). */
int greta_gpu_embed(greta_gpu_stream *s, uint32_t type, const void *table, int64_t dim, int64_t n_vocab,
                    const int32_t *d_ids, int32_t n, float *out, int64_t ld_out, greta_error *err);
/* greta_gpu_embed and greta_gpu_rope_table (d_pos, rope_dim, freq_base,
 * freq_scale, cs) in one launch: the same values. */
int greta_gpu_embed_rope(greta_gpu_stream *s, uint32_t type, const void *table, int64_t dim, int64_t n_vocab,
                         const int32_t *d_ids, int32_t n, float *out, int64_t ld_out, const int32_t *d_pos,
                         int32_t rope_dim, float freq_base, float freq_scale, float *cs, greta_error *err);

/* rmsnorm.cu: out[t] = (x[t] * r) * w, r = 1 / sqrtf(sum(x[t]^2) / n + eps),
 * the sum in fp32; w is fp32 [n]. out may equal x. */
int greta_gpu_rmsnorm(greta_gpu_stream *s, const float *x, int64_t ld_x, const float *w, float *out,
                      int64_t ld_out, int32_t n_tok, int64_t n, float eps, greta_error *err);

/* matvec.cu: y[t][r] (+)= dot(W[r], x[t]) for t < n_tok <= GRETA_GPU_MATVEC_MAX_TOK:
 * one warp per row, the row read once for all tokens, fp32 accumulation.
 * accumulate != 0 adds to y (the residual add), else overwrites. */
#define GRETA_GPU_MATVEC_MAX_TOK 8
int greta_gpu_matvec(greta_gpu_stream *s, uint32_t type, const void *w, int64_t k, int64_t n,
                     const float *x, int64_t ld_x, int32_t n_tok, float *y, int64_t ld_y, int accumulate,
                     greta_error *err);

/* gemm.cu: the same product for any n_tok: 64x64 output tiles, weights
 * dequantized to fp32 in shared memory, fp32 accumulation. */
int greta_gpu_gemm(greta_gpu_stream *s, uint32_t type, const void *w, int64_t k, int64_t n, const float *x,
                   int64_t ld_x, int32_t n_tok, float *y, int64_t ld_y, int accumulate, greta_error *err);

/* rope.cu: the rotation table cs[t][rope_dim] for the positions d_pos[t]:
 * cs[2i] = cos(theta_i), cs[2i+1] = sin(theta_i),
 * theta_i = pos * freq_scale * base^(-2i / rope_dim), computed in double and
 * rounded once (as kernels/cpu/ops.h greta_cpu_rope_table). */
int greta_gpu_rope_table(greta_gpu_stream *s, const int32_t *d_pos, int32_t n_tok, int32_t rope_dim,
                         float freq_base, float freq_scale, float *cs, greta_error *err);
/* Rotates adjacent pairs (x[2i], x[2i+1]), 2i < rope_dim, of each of n_heads
 * heads of head_dim in x[t] (row ld_x) by cs[t] (as greta_cpu_rope). */
int greta_gpu_rope(greta_gpu_stream *s, float *x, int64_t ld_x, int32_t n_tok, int32_t n_heads,
                   int32_t head_dim, int32_t rope_dim, const float *cs, greta_error *err);

/* KV cache element type: fp16 is the cache of the engine; fp32 exists to
 * measure what the fp16 cache costs (greta parity --gpu-kv f32). */
typedef enum greta_gpu_kv_type { GRETA_GPU_KV_F16 = 0, GRETA_GPU_KV_F32 = 1 } greta_gpu_kv_type;
/* Bytes of one cached value. */
size_t greta_gpu_kv_elem_bytes(greta_gpu_kv_type kv);

/* kv_store.cu: writes k[t], v[t] ([n_kv_heads * head_dim] fp32, rows ld) into
 * the cache (rounded to nearest for fp16) at (d_seq[t], head, d_pos[t]).
 * head_dim must be even. */
int greta_gpu_kv_store(greta_gpu_stream *s, const float *k, const float *v, int64_t ld, int32_t n_tok,
                       const int32_t *d_pos, const int32_t *d_seq, void *k_cache, void *v_cache,
                       greta_gpu_kv_type kv, int32_t n_kv_heads, int32_t head_dim, int32_t n_ctx, greta_error *err);
/* kv_store.cu, decode (issue 7): greta_gpu_rope on q (n_heads) and on k
 * (n_kv_heads), then greta_gpu_kv_store of the rotated k and of v, in one
 * launch; the same arithmetic, so the same bits in q, k and the cache.
 * q rows ld_q, k and v rows ld_kv. */
int greta_gpu_rope_kv_store(greta_gpu_stream *s, float *q, int64_t ld_q, float *k, const float *v, int64_t ld_kv,
                            int32_t n_tok, int32_t n_heads, int32_t n_kv_heads, int32_t head_dim, int32_t rope_dim,
                            const float *cs, const int32_t *d_pos, const int32_t *d_seq, void *k_cache,
                            void *v_cache, greta_gpu_kv_type kv, int32_t n_ctx, greta_error *err);

/* attention.cu: causal grouped-query attention for prefill and decode.
 * Token t (query q[t], [n_heads * head_dim], rows ld_q) attends to positions
 * 0..d_pos[t] of sequence d_seq[t] in the cache (head h reads kv head
 * h / (n_heads / n_kv_heads)); score = dot(q, k) * (1 / sqrt(head_dim)),
 * softmax and weighted sum in fp32 (online softmax). The positions are split
 * into n_split chunks of ceil((d_pos[t] + 1) / n_split) handled by separate
 * blocks (flash-decoding) and combined in the same launch (the last block of
 * each token and head to finish merges the chunks). head_dim even, <= 256.
 *
 * With n_split > 1, partial is a device buffer of (at least)
 * greta_gpu_attention_partial_floats(n_tok, n_heads, head_dim, n_split)
 * floats (0 for n_split 1: partial unused, may be NULL): first
 * GRETA_GPU_ATTENTION_SPLIT_ROWS uint32 counters, one per (token, head),
 * then the chunks' (m, l, acc) rows. n_tok * n_heads must be at most
 * GRETA_GPU_ATTENTION_SPLIT_ROWS when n_split > 1 (else GRETA_ERR_INVALID).
 * The counters must be zero before the first call:
 * greta_gpu_attention_partial_init (or a memset of the whole buffer to 0),
 * once, after allocation and outside graph capture. Each call leaves them
 * zero again, so captured graphs replay without re-initialization, and one
 * buffer serves calls of any shape it is large enough for (the counters
 * sit at the same place for every shape). Calls sharing a buffer must not
 * run concurrently. */
#define GRETA_GPU_ATTENTION_SPLIT_ROWS 16384
int64_t greta_gpu_attention_partial_floats(int32_t n_tok, int32_t n_heads, int32_t head_dim, int32_t n_split);
/* Zeroes the counters of partial (an async memset on stream s); nothing when
 * greta_gpu_attention_partial_floats(n_tok, n_heads, head_dim, n_split) is
 * 0 (n_split 1). The counters do not depend on the shape: one call with any
 * shape that has splits covers every later use of the buffer. */
int greta_gpu_attention_partial_init(greta_gpu_stream *s, float *partial, int32_t n_tok, int32_t n_heads,
                                     int32_t head_dim, int32_t n_split, greta_error *err);
int greta_gpu_attention(greta_gpu_stream *s, const float *q, int64_t ld_q, const void *k_cache,
                        const void *v_cache, greta_gpu_kv_type kv, const int32_t *d_pos, const int32_t *d_seq,
                        int32_t n_tok, int32_t n_heads, int32_t n_kv_heads, int32_t head_dim, int32_t n_ctx,
                        int32_t n_split, float *partial, float *out, int64_t ld_out, greta_error *err);
/* attention.cu, decode (issue 7): the same result as greta_gpu_attention
 * (another summation order) from a kernel cut for long contexts: a group
 * of head_dim / 8 lanes per position, 16-byte K/V loads, per-group online
 * softmax. head_dim 8, 16, 32, 64, 128 or 256 (else GRETA_ERR_UNSUPPORTED),
 * ld_q % 4 == 0. one_block (n_split must be 1): one block of 256 threads
 * per (token, head) with 128 positions of a 128-dim head in flight, for
 * short contexts, where the split's merge (a global round trip, a fence and
 * an atomic) costs more than the positions. With decode table 1
 * (greta_gpu_set_decode_table) each block reads d_pos and d_seq before it
 * waits for the previous kernel (early launch) to prefetch its first K/V
 * rows: the kernel just before must not write them. */
int greta_gpu_attention_decode_supported(int32_t head_dim);
int greta_gpu_attention_decode(greta_gpu_stream *s, const float *q, int64_t ld_q, const void *k_cache,
                               const void *v_cache, greta_gpu_kv_type kv, const int32_t *d_pos, const int32_t *d_seq,
                               int32_t n_tok, int32_t n_heads, int32_t n_kv_heads, int32_t head_dim, int32_t n_ctx,
                               int32_t n_split, int one_block, float *partial, float *out, int64_t ld_out,
                               greta_error *err);

/* swiglu.cu: gate[t][i] = silu(gate[t][i]) * up[t][i], silu(g) = g / (1 + expf(-g)),
 * i < n; gate and up rows of ld. */
int greta_gpu_swiglu(greta_gpu_stream *s, float *gate, const float *up, int64_t ld, int32_t n_tok, int64_t n,
                     greta_error *err);

/* gather.cu: out[i] = x[d_rows[i]] (n columns), i < n_rows. */
int greta_gpu_gather_rows(greta_gpu_stream *s, const float *x, int64_t ld_x, const int32_t *d_rows,
                          int32_t n_rows, int64_t n, float *out, int64_t ld_out, greta_error *err);

/* topk.cu: for each of n_rows rows of x (n values, row ld_x): the k largest
 * values in descending order (ties: lower index first; NaN never chosen
 * while a number remains) to ids[r][k], vals[r][k], and the log-sum-exp of
 * the row to lse[r] (lse may be NULL; NaN when the row holds a NaN or +inf).
 * k = 1 is argmax. 1 <= k <= GRETA_GPU_TOPK_MAX. scratch (may be NULL):
 * greta_gpu_topk_scratch_bytes(n_rows) bytes of device memory, zeroed
 * before its first use (each call leaves it ready for the next; calls that
 * may run at the same time need their own); with it, k = 1 spreads each
 * row over several blocks (topk.cu): the same ids and values, the
 * log-sum-exp added in another order. */
#define GRETA_GPU_TOPK_MAX 256
int64_t greta_gpu_topk_scratch_bytes(int32_t n_rows);
int greta_gpu_topk(greta_gpu_stream *s, const float *x, int64_t ld_x, int32_t n_rows, int64_t n, int32_t k,
                   int32_t *ids, float *vals, float *lse, void *scratch, greta_error *err);
/* greta_gpu_topk of one row with k = 1 (the same results), which also
 * makes next, a decode step's ints on the device (token, position, ...),
 * those of the step after: next[0] = the argmax, next[1] += 1, the rest
 * unchanged (the GPU backend's greedy lookahead: no copy between steps). */
int greta_gpu_topk1_next(greta_gpu_stream *s, const float *x, int64_t n, int32_t *id, float *val, float *lse,
                         void *scratch, int32_t *next, greta_error *err);

#ifdef __cplusplus
}
#endif

#endif
