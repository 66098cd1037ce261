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

typedef struct greta_client_request {
    const int32_t *prompt;   /* [n_prompt] token ids */
    size_t n_prompt;
    int32_t max_tokens;
    float temperature;       /* 0: greedy */
    int32_t top_k;
    float top_p;             /* 0 or 1: off */
    float min_p;
    float repeat_penalty;    /* 0 or 1: off */
    int32_t repeat_last_n;
    uint64_t seed;
    const char *const *stop; /* [n_stop] stop strings */
    size_t n_stop;
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

#endif
