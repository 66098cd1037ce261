/* batch_request.h - one line of an OpenAI Batch API input file, checked, and
 * the output line that answers it (greta batch, frontend/cmd_batch.c).
 *
 * Input line (JSON object):
 *   {"custom_id": "req-1", "method": "POST", "url": "/v1/chat/completions",
 *    "body": {"messages": [{"role": "user", "content": "Hi"}], "max_tokens": 32,
 *             "temperature": 0.8, "top_p": 0.95, "seed": 7, "stop": ["\n\n"]}}
 *   url "/v1/completions" takes body.prompt (a string, a list of one string,
 *   or a list of token ids) instead of body.messages.
 * Checked fields (an error message names the first bad one, e.g.
 * "body.temperature: must be a number in 0..2 (got 3)"):
 *   custom_id  string, 1..GRETA_BATCH_MAX_ID bytes (unique in the file: the
 *              caller checks that)
 *   method     "POST"
 *   url        "/v1/chat/completions" or "/v1/completions"
 *   body.messages  1..256 of {role: system|developer|user|assistant,
 *              content: string or [{type: "text", text: string}, ...]}
 *   body.prompt    see above
 *   max_tokens (chat also max_completion_tokens) integer >= 1; default: chat
 *              up to the end of the context, completions 16 (as OpenAI)
 *   temperature number 0..2 (default 1), top_p number in (0, 1] (default 1)
 *   seed       integer, |seed| <= 2^53 (default: a hash of custom_id, so
 *              every run of the same file gives the same text)
 *   stop       string or list of up to 4 strings of 1..63 bytes
 *   frequency_penalty, presence_penalty  numbers in -2..2 (default 0), over
 *              the whole token history (prompt and generated tokens)
 *   logit_bias {"<token id>": number in -100..100, ...}, at most 64 entries;
 *              the number is added to the token's logit
 *   n (only 1), stream (only false), logprobs (only false/null), echo (only
 *   false), best_of (only 1), suffix (only null): anything else is refused,
 *   never ignored.
 *   Other fields (model, user, metadata, ...) are ignored; model is echoed.
 *
 * Output line (one JSON object, no newline in it):
 *   {"id": "batch_req_<rid>", "custom_id": "req-1",
 *    "response": {"status_code": 200, "request_id": "<rid>", "body": {
 *       "id": "chatcmpl-<rid>", "object": "chat.completion", "created": <unix s>,
 *       "model": "...", "choices": [{"index": 0, "message": {"role": "assistant",
 *       "content": "..."}, "logprobs": null, "finish_reason": "stop"|"length"}],
 *       "usage": {"prompt_tokens": P, "completion_tokens": C, "total_tokens": P+C}}},
 *    "error": null}
 *   (completions: "cmpl-<rid>", "text_completion", choices[{"text", "index",
 *   "logprobs", "finish_reason"}]). A refused line:
 *   {"id": "batch_req_line<N>", "custom_id": "..." or null, "response": null,
 *    "error": {"code": "invalid_json"|"invalid_request"|"duplicate_custom_id"|
 *              "unsupported_url"|"prompt_too_long"|"generation_failed",
 *              "message": "...", "line": N}}
 * <rid> is the request id as 16 hex digits. Generated text that is not valid
 * UTF-8 (or holds NUL bytes) has those bytes replaced by U+FFFD.
 */
#ifndef GRETA_FRONTEND_BATCH_REQUEST_H
#define GRETA_FRONTEND_BATCH_REQUEST_H

#include <stddef.h>
#include <stdint.h>

#include "common/error.h"

#define GRETA_BATCH_MAX_ID 512
#define GRETA_BATCH_MAX_MSGS 256
#define GRETA_BATCH_MAX_STOP 4
#define GRETA_BATCH_MAX_STOP_LEN 63
#define GRETA_BATCH_CODE_MAX 32
#define GRETA_BATCH_MAX_BIAS 64 /* = GRETA_MSG_MAX_BIAS */

typedef enum greta_batch_kind {
    GRETA_BATCH_CHAT = 0,       /* /v1/chat/completions */
    GRETA_BATCH_COMPLETION = 1, /* /v1/completions */
} greta_batch_kind;

typedef struct greta_batch_req {
    size_t line;     /* 1-based line number in the input file */
    char *custom_id; /* NULL when missing or not a string */
    greta_batch_kind kind;
    /* chat: n_msgs messages */
    size_t n_msgs;
    char **roles;    /* [n_msgs] "system", "user", "assistant" */
    char **contents; /* [n_msgs] */
    /* completions: text prompt or token ids */
    char *prompt;        /* NULL when ids are given */
    int32_t *prompt_ids; /* [n_prompt_ids] */
    size_t n_prompt_ids;
    int32_t max_tokens; /* 0: up to the end of the context */
    float temperature, top_p;
    float frequency_penalty, presence_penalty;
    size_t n_bias;
    struct {
        int32_t token;
        float bias;
    } bias[GRETA_BATCH_MAX_BIAS];
    uint64_t seed;
    size_t n_stop;
    char *stop[GRETA_BATCH_MAX_STOP];
    char *model; /* body.model (echoed), may be NULL */
    /* refused lines */
    int bad; /* 1: the line is refused, see code/message */
    char code[GRETA_BATCH_CODE_MAX];
    char message[GRETA_ERROR_MSG_MAX];
} greta_batch_req;

/* Parses one input line (len bytes, no newline). Always fills *r (free it
 * with greta_batch_req_free); returns 0, or -1 with r->bad, r->code and
 * r->message set (r->custom_id is kept when it was readable). */
int greta_batch_req_parse(const char *text, size_t len, size_t line, greta_batch_req *r);
void greta_batch_req_free(greta_batch_req *r);
/* Marks r as refused (printf-style message). */
void greta_batch_req_refuse(greta_batch_req *r, const char *code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* The default seed of a request: 64-bit FNV-1a of custom_id. */
uint64_t greta_batch_hash(const void *data, size_t len);

typedef struct greta_batch_result {
    uint64_t request_id;
    const char *text; /* generated text, len bytes (any bytes) */
    size_t len;
    int finish_reason; /* greta.FinishReason: EOS/STOP -> "stop", LENGTH/CONTEXT -> "length" */
    uint32_t prompt_tokens, completion_tokens;
    int64_t created;   /* unix seconds */
    const char *model; /* model name for the body when the request gave none */
} greta_batch_result;

/* Output line of a request that was answered (malloc'ed, no newline). */
char *greta_batch_format_response(const greta_batch_req *r, const greta_batch_result *res);
/* Output line of a refused request (r->bad). */
char *greta_batch_format_error(const greta_batch_req *r);

/* Copies len bytes, replacing invalid UTF-8 and NUL bytes by U+FFFD;
 * malloc'ed and NUL-terminated. */
char *greta_batch_utf8_clean(const char *s, size_t len);

#endif
