/* backend.h - the interface every compute backend implements (CPU reference,
 * GPU). The engine drives a backend with batches of tokens; each token
 * belongs to a sequence slot and has a position. The backend owns the KV
 * cache for n_seq slots of n_ctx positions each.
 *
 * A backend is an ops table plus an opaque context, so the engine, the
 * pipeline worker and the tests can use either backend the same way.
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
} greta_backend_params;

typedef struct greta_backend greta_backend;

typedef struct greta_backend_ops {
    const char *name; /* "cpu", "gpu" */
    /* Runs the batch; writes one row of vocab_size fp32 logits per requested
     * token, in batch order, to logits. Tokens of one sequence must come in
     * increasing position order; positions must continue the sequence's KV. */
    int (*forward)(greta_backend *b, const greta_batch *batch, float *logits, greta_error *err);
    /* Forgets positions >= n_keep of sequence seq (0 clears it). */
    int (*seq_truncate)(greta_backend *b, int32_t seq, int32_t n_keep, greta_error *err);
    void (*destroy)(greta_backend *b);
} greta_backend_ops;

struct greta_backend {
    const greta_backend_ops *ops;
    const greta_model *model;
    greta_backend_params params;
    void *impl;
};

#endif
