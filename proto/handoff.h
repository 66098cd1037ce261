/* handoff.h - the per-step logits hand-off between gpu-worker and sampler:
 * a slot's sampling parameters in the segment, how much of a logits row a
 * request needs, and the exact reduction of a row on the host.
 *
 * Modes (proto/shm.h greta_logits_mode), chosen per slot and step by the
 * worker from the slot's parameters (sampler/sampler.h says when a reduced
 * set is exact: greta_sampler_needs_full_logits):
 *   FULL  the whole row, fp32 [n_vocab], in the slot's logits row;
 *   TOP1  greedy without bias or penalties: the best token (n_topk = 1);
 *   TOPK  top-k sampling without bias or penalties: the k = min(top_k,
 *         vocab) best tokens (n_topk = k <= topk_max).
 * TOP1 and TOPK write {id, logit} entries best first (higher logit; equal
 * logits: lower id) into the slot's top-k row, and topk_lse = log-sum-exp of
 * the whole row; the sampler then calls greta_sampler_sample_reduced, which
 * gives the same token as greta_sampler_sample on the full row.
 * GRETA_HANDOFF=full in the worker's environment (inherited from `greta up`)
 * forces FULL for every request; GRETA_HANDOFF=auto (or unset) reduces where
 * it is exact.
 *
 * Who computes the reduction: the backend, when it offers forward_topk
 * (gpu-worker/backend.h) and every row of the step is reduced; otherwise the
 * worker, from the full logits, with greta_handoff_reduce().
 */
#ifndef GRETA_PROTO_HANDOFF_H
#define GRETA_PROTO_HANDOFF_H

#include <stdint.h>

#include "common/error.h"
#include "sampler/sampler.h"
#include "shm.h"

/* GRETA_HANDOFF: NULL, "" or "auto" -> *force_full = 0; "full" -> 1;
 * anything else is an error naming the variable. */
int greta_handoff_parse(const char *value, int *force_full, greta_error *err);

/* The worker's Submit: stores validated parameters into the slot (the
 * worker-at-Submit fields: temperature .. bias). */
void greta_handoff_store_params(greta_shm_slot *sl, const greta_sampler_params *p);

/* The sampler (and the worker's mode choice): the slot's parameters as the
 * sampler library takes them. n_bias is clamped to GRETA_SHM_MAX_BIAS;
 * greta_sampler_params_validate checks the rest. */
void greta_handoff_load_params(const greta_shm_slot *sl, greta_sampler_params *p);

/* The mode for a request: GRETA_LOGITS_FULL (*k = 0), GRETA_LOGITS_TOP1
 * (*k = 1) or GRETA_LOGITS_TOPK (*k = min(top_k, vocab)). FULL when
 * force_full, when the request needs the full logits, or when k > topk_max. */
int greta_handoff_mode(const greta_sampler_params *p, int32_t vocab, uint32_t topk_max, int force_full, int32_t *k);

/* The reduction the sampler needs, from a full row logits[vocab]: the k best
 * tokens, best first (higher logit; equal logits: lower id), to ids[k] /
 * vals[k], and *lse = max + log(sum exp(logit - max)) over all vocab logits,
 * the exponentials from the sampler's deterministic exp, summed in double
 * (the same value greta_sampler_sample computes).
 * 1 <= k <= min(vocab, GRETA_SHM_MAX_TOPK).
 * GRETA_ERR_INVALID for a NaN or +inf logit, or when every logit is -inf (the
 * worker then hands over the full row, and the sampler reports it). */
int greta_handoff_reduce(const float *logits, int32_t vocab, int32_t k, int32_t *ids, float *vals, float *lse,
                         greta_error *err);

#endif
