/* backend.h - the interface every compute backend implements (CPU reference,
 * GPU). The engine drives a backend with batches of tokens; each token
 * belongs to a sequence slot and has a position. The backend owns the KV
 * cache for n_seq slots of n_ctx positions each.
 *
 * A backend is an ops table plus an opaque context, so the engine, the
 * pipeline worker and the tests can use either backend the same way. Each
 * backend kind also says, before anything is allocated, how much memory it
 * will take (greta_mem_plan): the engine prints that plan and checks it
 * against the memory available. After create, a backend allocates nothing:
 * every buffer is sized from the model config and the params.
 */
#ifndef GRETA_BACKEND_H
#define GRETA_BACKEND_H

#include <stdint.h>

#include "../common/error.h"
#include "../common/model.h"

typedef struct greta_batch {
    int32_t n_tokens;
    const int32_t *tokens;      /* [n_tokens] token ids */
    const int32_t *pos;         /* [n_tokens] position within its sequence */
    const int32_t *seq;         /* [n_tokens] sequence slot, 0 <= seq < n_seq */
    const uint8_t *want_logits; /* [n_tokens] nonzero: return this token's logits;
                                   NULL: only the last token of the batch */
} greta_batch;

typedef struct greta_backend_params {
    int32_t n_ctx;     /* positions per sequence */
    int32_t n_seq;     /* sequence slots in the KV cache */
    int32_t n_batch;   /* most tokens in one forward call */
    int32_t n_threads; /* CPU threads (CPU backend) */
    int32_t cpu_isa;   /* CPU backend: greta_cpu_isa of kernels/cpu/matmul.h
                          (0 auto, 1 plain C reference, 2 AVX2) */
} greta_backend_params;

/* Memory a backend needs for a model and params, in bytes. */
typedef struct greta_mem_plan {
    const char *backend;     /* "cpu", "gpu" */
    const char *kv_where;    /* where KV cache and scratch live: "host RAM", "device" */
    uint64_t weights_bytes;  /* model tensors (the CPU backend reads the mmapped file) */
    uint64_t kv_bytes;       /* K and V caches of all n_seq sequences */
    uint64_t scratch_bytes;  /* activations for n_batch tokens, per-thread buffers */
    uint64_t logits_bytes;   /* the engine's output rows [n_batch][vocab] fp32 */
    uint64_t total_bytes;    /* sum of the above */
} greta_mem_plan;

typedef struct greta_backend greta_backend;

/* Largest k forward_topk is asked for (the pipeline's top-k rows hold at
 * most this many entries: GRETA_SHM_MAX_TOPK). */
#define GRETA_BACKEND_TOPK_MAX 256

typedef struct greta_backend_ops {
    const char *name; /* "cpu", "gpu" */
    /* Runs the batch; writes one row of vocab_size fp32 logits per requested
     * token, in batch order, to logits. Tokens of one sequence must come in
     * increasing position order; positions must continue the sequence's KV
     * (the first token of sequence s in a batch has position seq_len(s)).
     * A batch that breaks a rule is refused before anything changes. */
    int (*forward)(greta_backend *b, const greta_batch *batch, float *logits, greta_error *err);
    /* Optional (NULL: the pipeline worker reduces the logits of forward on
     * the host). Runs the batch exactly like forward, but instead of the
     * logits rows writes, for each requested row r (batch order, as forward's
     * rows), the k best tokens of the row, best first (higher logit; equal
     * logits: lower id), to ids[r*k .. r*k+k) and their logits to
     * vals[r*k .. r*k+k), and lse[r] = log(sum over the vocabulary of
     * exp(logit)), computed stably (max + log(sum exp(logit - max)),
     * accumulated in fp32 or better). Logits are the same values forward
     * would return. 1 <= k <= GRETA_BACKEND_TOPK_MAX and k <= vocab_size; a
     * k outside, like any bad batch, is refused before anything changes.
     * A row with a NaN or +inf logit must get a NaN or +inf lse (the stable
     * formula does that by itself): the sampler then refuses the row, as it
     * refuses such a full row. */
    int (*forward_topk)(greta_backend *b, const greta_batch *batch, int32_t k, int32_t *ids, float *vals,
                        float *lse, greta_error *err);
    /* Forgets positions >= n_keep of sequence seq (0 clears it). */
    int (*seq_truncate)(greta_backend *b, int32_t seq, int32_t n_keep, greta_error *err);
    /* Positions held for sequence seq (0 for an empty slot). */
    int32_t (*seq_len)(const greta_backend *b, int32_t seq);
    void (*destroy)(greta_backend *b);
} greta_backend_ops;

struct greta_backend {
    const greta_backend_ops *ops;
    const greta_model *model;
    greta_backend_params params; /* as resolved by create (AUTO choices made) */
    char detail[96];             /* one line for logs: "avx2, 2 threads" */
    void *impl;
};

/* A kind of backend: how much memory it needs, and how to make one. */
typedef struct greta_backend_kind {
    const char *name;
    /* Fills plan (logits_bytes and total_bytes included) without allocating. */
    int (*plan)(const greta_model *m, const greta_backend_params *p, greta_mem_plan *plan,
                greta_error *err);
    int (*create)(const greta_model *m, const greta_backend_params *p, greta_backend **out,
                  greta_error *err);
} greta_backend_kind;

/* Destroys through the ops table and sets *b to NULL. */
static inline void greta_backend_destroy(greta_backend **b)
{
    if (b && *b) {
        (*b)->ops->destroy(*b);
        *b = 0;
    }
}

#endif
