/* sampler.h - choose the next token from a step's logits.
 *
 * Pieces:
 *   greta_sampler_params  what the request asked for (plain struct, no pointers)
 *   greta_sampler_state   params + RNG counter of one sequence; lives in the
 *                         shared-memory slot table, so it is position-independent
 *                         and has a fixed layout (sizes asserted in sampler.c)
 *   greta_sampler         opaque per-process context: work buffers sized for the
 *                         vocabulary, so nothing is allocated per token
 *
 * Order of operations (greta_sampler_sample, full logits of V tokens):
 *   1. input check: a NaN or +inf logit is an error; -inf means "never".
 *   2. logit bias: logit[token] += bias for each (token, bias) pair; a pair may
 *      repeat a token (the biases add up); bias -inf bans the token.
 *   3. penalties (llama.cpp semantics) over the window = the last
 *      penalty_last_n tokens of the history (-1: all of it, 0: no penalties).
 *      For each distinct token t of the window, seen c times:
 *        logit = logit <= 0 ? logit * repeat_penalty : logit / repeat_penalty
 *        logit -= c * frequency_penalty + presence_penalty   (c > 0 here)
 *   4. all logits -inf (or one overflowed to +inf) -> error.
 *   5. temperature 0: greedy argmax, the lowest token id wins ties. Done.
 *   6. top-k (top_k > 0): keep the top_k largest logits (ties: lower id first),
 *      sorted by descending logit. top_k >= V keeps all (still sorted).
 *   7. top-p (top_p < 1): softmax of the survivors at temperature 1; keep the
 *      shortest run of best tokens (descending logit, ties by lower id) whose
 *      cumulative probability reaches top_p (the token that crosses it is
 *      kept; at least one token). Survivors keep their order.
 *   8. min-p (min_p > 0): keep survivors with p >= min_p * p_max, i.e.
 *      exp(logit - max_logit) >= min_p (softmax of the survivors, temp. 1).
 *   9. temperature: weight w = exp((logit - max_logit) * (1 / temperature)),
 *      1 / temperature computed in float and capped at FLT_MAX.
 *  10. draw: u = uniform(seed, seq_id, step) in [0,1) (rng.h); walk the
 *      survivors - in descending logit order after a top-k, else in token id
 *      order - and take the first whose cumulative weight exceeds u * sum(w).
 *   Each truncation renormalizes over its survivors (as llama.cpp does), so
 *   steps 7-8 after a top-k only need the top-k candidates.
 *   Weights come from our own exp() (detmath.h: IEEE float +, * and bit
 *   operations, relative error < 3e-7) and are summed in double in a fixed
 *   order, so the same seed and logits give the same token on every machine.
 *   Nothing sorts the whole vocabulary: top-k is a heap scan (or quickselect
 *   for k > 1024) and top-p without top-k a histogram of the logits plus a
 *   selection inside the one bucket where the cut falls.
 *
 * Reduced candidate set (greta_sampler_sample_reduced): the GPU may hand over
 * only its exact top-N (ids + logits, any order) and the log-sum-exp of all V
 * logits. That is exact when greta_sampler_needs_full_logits() is 0:
 *   - no logit bias and no active penalty (they could move any token), and
 *   - temperature 0 (needs N >= 1: top-1), or top_k > 0 (needs N >= top_k, or
 *     N = V when top_k >= V); top-p and min-p then work inside the top-k.
 * top-p or min-p without top-k (over the whole vocabulary), penalties or bias
 * need the full logits. greta_sampler_reduced_count() says how many
 * candidates a request needs. Ties at the top-k boundary are broken by lower id
 * here; a GPU top-N that breaks them otherwise may pick another tied token.
 *
 * RNG: the draw for a sequence's step k is Philox4x32-10 of (seed, seq_id, k)
 * and depends on nothing else. state->step counts the tokens sampled so far
 * (greedy steps count too). seq_id is the sequence's index inside its request
 * (0 for a single completion), not its slot, so a seed gives the same text in
 * any slot and after a restart.
 */
#ifndef GRETA_SAMPLER_H
#define GRETA_SAMPLER_H

#include <stddef.h>
#include <stdint.h>

#include "common/error.h"

#define GRETA_SAMPLER_MAX_BIAS 64        /* logit-bias entries per request */
#define GRETA_SAMPLER_MAX_VOCAB (1 << 24) /* largest vocabulary a context takes */

/* Validated ranges (greta_sampler_params_validate). */
#define GRETA_SAMPLER_MAX_REPEAT_PENALTY 10.0f  /* repeat_penalty in (0, 10] */
#define GRETA_SAMPLER_MAX_FREQ_PENALTY 2.0f     /* frequency/presence in [-2, 2] */

typedef struct greta_logit_bias {
    int32_t token; /* in [0, vocab) */
    float bias;    /* added to the logit: finite, or -INFINITY to ban */
} greta_logit_bias;

/* Request parameters. Layout (bytes): 0 temperature, 4 top_p, 8 min_p,
 * 12 repeat_penalty, 16 frequency_penalty, 20 presence_penalty, 24 top_k,
 * 28 penalty_last_n, 32 seed, 40 n_bias, 44 reserved, 48 bias[64]; 560 total. */
typedef struct greta_sampler_params {
    float temperature;       /* >= 0; 0 = greedy */
    float top_p;             /* (0, 1]; 1 = off */
    float min_p;             /* [0, 1]; 0 = off */
    float repeat_penalty;    /* (0, 10]; 1 = off */
    float frequency_penalty; /* [-2, 2]; 0 = off */
    float presence_penalty;  /* [-2, 2]; 0 = off */
    int32_t top_k;           /* >= 0; 0 = off */
    int32_t penalty_last_n;  /* >= -1; window of recent tokens, -1 = whole history */
    uint64_t seed;           /* RNG key */
    uint32_t n_bias;         /* used entries of bias[], <= GRETA_SAMPLER_MAX_BIAS */
    uint32_t reserved;       /* 0 */
    greta_logit_bias bias[GRETA_SAMPLER_MAX_BIAS];
} greta_sampler_params;

/* Per-sequence sampling state (in the slot table). Layout: 0 params (560),
 * 560 seq_id, 568 step; 576 bytes, alignment 8. */
typedef struct greta_sampler_state {
    greta_sampler_params params;
    uint64_t seq_id; /* index of the sequence inside its request */
    uint64_t step;   /* RNG counter: tokens sampled so far */
} greta_sampler_state;

typedef struct greta_sampler greta_sampler;

/* The vocabulary-wide loops run as AVX2 code where the CPU has it (x86-64)
 * and as the build's baseline code otherwise; both give the same bits.
 * greta_sampler_set_simd(0) forces the baseline code for the whole process
 * (tests, benchmarks); greta_sampler_simd_active says which one runs. */
void greta_sampler_set_simd(int on);
int greta_sampler_simd_active(void);

/* Neutral parameters: temperature 1, top_k 0, top_p 1, min_p 0, repeat 1,
 * frequency 0, presence 0, penalty_last_n 64, seed 0, no bias. */
void greta_sampler_params_default(greta_sampler_params *p);

/* Checks every field against the ranges above for a vocabulary of `vocab`
 * tokens; the error message names the field and its value. */
int greta_sampler_params_validate(const greta_sampler_params *p, int32_t vocab,
                                  greta_error *err);

/* state = { *p, seq_id, step 0 }. */
void greta_sampler_state_init(greta_sampler_state *st, const greta_sampler_params *p,
                              uint64_t seq_id);

/* 1 when the request needs the full logits, 0 when a reduced candidate set
 * is exact for it (see the top of this file). */
int greta_sampler_needs_full_logits(const greta_sampler_params *p);

/* Number of top candidates the reduced path needs for this request (1 for
 * greedy, min(top_k, vocab) for top-k sampling), 0 when it needs full logits. */
int32_t greta_sampler_reduced_count(const greta_sampler_params *p, int32_t vocab);

/* Context with work buffers for a vocabulary of `vocab` tokens
 * (1..GRETA_SAMPLER_MAX_VOCAB); about 40 bytes per token. */
int greta_sampler_create(int32_t vocab, greta_sampler **out, greta_error *err);
void greta_sampler_destroy(greta_sampler **s);
int32_t greta_sampler_vocab(const greta_sampler *s);

/* Steps 2-3 alone, in place on logits[vocab] (for callers that want the
 * modified logits, and for tests). Validates p and the history window. */
int greta_sampler_apply_penalties(greta_sampler *s, const greta_sampler_params *p,
                                  float *logits, const int32_t *history, size_t n_history,
                                  greta_error *err);

/* Samples one token from logits[vocab] (not modified). history[n_history] is
 * the sequence's tokens so far (prompt + generated, oldest first); only its
 * last penalty_last_n entries are read, and each must be in [0, vocab).
 * On success sets *token, and *logprob when not NULL (log-softmax of the token
 * after bias and penalties, temperature 1, over the whole vocabulary), and
 * advances st->step. On error st is unchanged. */
int greta_sampler_sample(greta_sampler *s, greta_sampler_state *st, const float *logits,
                         const int32_t *history, size_t n_history, int32_t *token,
                         float *logprob, greta_error *err);

/* The same from a reduced candidate set: ids[n] / logits[n] (any order,
 * distinct ids in [0, vocab)) are the top-n of the vocabulary and lse the
 * log-sum-exp of all vocab logits. Fails (GRETA_ERR_INVALID) when the request
 * needs full logits or n < greta_sampler_reduced_count(). *logprob is
 * logit - lse. Same result as greta_sampler_sample on the full logits. */
int greta_sampler_sample_reduced(greta_sampler *s, greta_sampler_state *st,
                                 const int32_t *ids, const float *logits, size_t n, float lse,
                                 int32_t *token, float *logprob, greta_error *err);

#endif
