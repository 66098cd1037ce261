/* client.h - talking to a running instance (greta run/chat/batch, tests).
 *
 * A client has one DEALER to the tokenizer and one to the gpu-worker, both
 * with the same routing id (Submit.client), so the tokenizer can stream the
 * text deltas of its requests to it. Every call has a deadline; a request
 * that gets no answer is sent again (all requests are idempotent by request
 * id), so a stage restarted in the middle costs time, not the request.
 *
 * Streaming is reliable end to end: the client keeps the index of the next
 * generated token it expects, drops deltas it already has (counted as
 * duplicates), and sends Resume{next} after a gap or after resume_ms of
 * silence; the tokenizer rebuilds the text from the token history in the
 * segment and sends again from there.
 *
 *   greta_client *c; greta_client_open("default", &c, &err);
 *   uint64_t rid = greta_client_request_id();
 *   greta_client_encode(c, rid, "Once", 4, 1, &ids, &n, &err);
 *   greta_client_submit(c, rid, &req, &err);
 *   greta_client_stream(c, rid, 0, on_delta, ctx, &res, &err);
 *   greta_client_release(c, rid, &err);
 */
#ifndef GRETA_PROTO_CLIENT_H
#define GRETA_PROTO_CLIENT_H

#include <stddef.h>
#include <stdint.h>

#include "common/error.h"

typedef struct greta_client greta_client;

/* Logit bias: `bias` is added to the logit of `token` (-INFINITY bans it). */
typedef struct greta_client_bias {
    int32_t token;
    float bias;
} greta_client_bias;

/* Sampling follows sampler/sampler.h (same fields, same order of
 * operations); the worker checks every value and answers a bad one with an
 * Error naming the field (greta_client_submit returns it). A zeroed struct
 * plus prompt and max_tokens is a greedy request without penalties. */
typedef struct greta_client_request {
    const int32_t *prompt;   /* [n_prompt] token ids */
    size_t n_prompt;
    int32_t max_tokens;
    float temperature;       /* 0: greedy */
    int32_t top_k;
    float top_p;             /* 0 or 1: off */
    float min_p;
    float repeat_penalty;    /* 0 or 1: off */
    int32_t repeat_last_n;   /* window of the penalties: 0 none (penalties off), -1 the whole history */
    uint64_t seed;
    const char *const *stop; /* [n_stop] stop strings */
    size_t n_stop;
    float frequency_penalty; /* [-2, 2], 0: off */
    float presence_penalty;  /* [-2, 2], 0: off */
    const greta_client_bias *bias; /* [n_bias], n_bias <= 64 (GRETA_MSG_MAX_BIAS) */
    size_t n_bias;
} greta_client_request;

/* One generated token's text (may be empty: len 0, text possibly NULL).
 * Nonzero return: stop streaming
 * (greta_client_stream returns GRETA_ERR_STATE; the request keeps running). */
typedef int (*greta_client_delta_fn)(void *ctx, uint32_t token_index, int32_t token, const char *text, size_t len,
                                     int batch_size);

typedef struct greta_client_result {
    int finish_reason;          /* greta.FinishReason */
    uint32_t prompt_tokens;
    uint32_t completion_tokens;
    uint32_t duplicates;        /* deltas received twice and dropped */
    uint32_t resumes;           /* Resume messages sent after the first */
    uint32_t max_batch;         /* largest batch_size seen in the deltas */
} greta_client_result;

int greta_client_open(const char *instance, greta_client **out, greta_error *err);
void greta_client_close(greta_client **c);

/* Deadline of one call without progress (default 30000 ms) and the silence
 * after which a stream is resumed (default 1000 ms). */
void greta_client_set_timeouts(greta_client *c, int call_ms, int resume_ms);

/* A fresh random request id (never 0). */
uint64_t greta_client_request_id(void);

/* Encodes text (add_bos: prepend BOS). *ids is malloc'ed. */
int greta_client_encode(greta_client *c, uint64_t rid, const char *text, size_t len, int add_bos, int32_t **ids,
                        size_t *n, greta_error *err);
/* Encodes a chat with the model's template; roles[i] is "system", "user" or
 * "assistant". */
int greta_client_encode_chat(greta_client *c, uint64_t rid, const char *const *roles, const char *const *contents,
                             size_t n_msgs, int32_t **ids, size_t *n, greta_error *err);

/* Submits (or finds again, for the same rid) a request. *slot may be NULL. */
int greta_client_submit(greta_client *c, uint64_t rid, const greta_client_request *req, int *slot,
                        greta_error *err);
/* Streams generated tokens from `from_token` until Finished. The final
 * held-back text (Finished.tail) is passed to on_delta with token_index =
 * completion_tokens. */
int greta_client_stream(greta_client *c, uint64_t rid, uint32_t from_token, greta_client_delta_fn on_delta,
                        void *ctx, greta_client_result *res, greta_error *err);
int greta_client_cancel(greta_client *c, uint64_t rid, greta_error *err);
/* Frees the request's slot (an unknown request counts as released). */
int greta_client_release(greta_client *c, uint64_t rid, greta_error *err);

/* Sends raw bytes to the tokenizer or worker socket (tests of bad input) and
 * returns the first reply within timeout_ms: 1 and *code, *msg (msg may be
 * NULL) for an Error, 2 for another message, 0 for none. */
int greta_client_send_raw(greta_client *c, int to_worker, const void *data, size_t len, int timeout_ms, int *code,
                          char *msg, size_t msg_cap);

/* Stats of the worker (to_worker) or tokenizer: max_batch, steps, ... */
int greta_client_stats(greta_client *c, int to_worker, uint32_t *max_batch, uint64_t *steps, uint64_t *rejected,
                       greta_error *err);

#define GRETA_CLIENT_HANDOFF_SAMPLES 4096 /* = GRETA_MSG_MAX_HANDOFF_SAMPLES */

/* The gpu-worker's counters, including the logits hand-off to the sampler. */
typedef struct greta_client_worker_stats {
    uint64_t requests, steps, tokens, rejected;
    uint32_t max_batch, active;
    uint64_t rows_full;    /* logits rows handed over whole */
    uint64_t rows_reduced; /* rows handed over as top-k / top-1 + log-sum-exp */
    uint64_t handoffs;     /* hand-offs timed since the worker started */
    uint64_t mixed_steps;  /* steps with a prompt chunk beside generating sequences' tokens */
    uint64_t lookahead_hits, lookahead_misses; /* the GPU backend's greedy lookahead (0 elsewhere) */
    uint32_t n_handoff_ns; /* entries of handoff_ns */
    /* the most recent round trips (StepReady written -> the sampler's
     * step_done seen), nanoseconds, oldest first */
    uint32_t handoff_ns[GRETA_CLIENT_HANDOFF_SAMPLES];
} greta_client_worker_stats;

int greta_client_worker_stats_get(greta_client *c, greta_client_worker_stats *out, greta_error *err);

#endif
