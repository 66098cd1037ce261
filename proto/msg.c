/* msg.c - see msg.h. */
#include "msg.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

void greta_msg_init(Greta__Envelope *env, uint64_t request_id)
{
    greta__envelope__init(env);
    env->version = GRETA_PROTO_VERSION;
    env->request_id = request_id;
}

int greta_msg_pack(const Greta__Envelope *env, uint8_t **out, size_t *out_len, greta_error *err)
{
    *out = NULL;
    *out_len = 0;
    if (env->version != GRETA_PROTO_VERSION)
        return greta_error_set(err, GRETA_ERR_INVALID, "envelope.version: %u, this build speaks %u",
                               env->version, GRETA_PROTO_VERSION);
    if (env->body_case == GRETA__ENVELOPE__BODY__NOT_SET)
        return greta_error_set(err, GRETA_ERR_INVALID, "envelope.body: not set");
    size_t n = protobuf_c_message_get_packed_size(&env->base);
    if (n > GRETA_MSG_MAX)
        return greta_error_set(err, GRETA_ERR_LIMIT, "message %s: %zu bytes exceeds the limit of %u",
                               greta_msg_body_name(env->body_case), n, GRETA_MSG_MAX);
    uint8_t *buf = malloc(n ? n : 1);
    if (!buf)
        return greta_error_set(err, GRETA_ERR_NOMEM, "message: out of memory (%zu bytes)", n);
    size_t w = protobuf_c_message_pack(&env->base, buf);
    if (w != n) {
        free(buf);
        return greta_error_set(err, GRETA_ERR_INVALID, "message: packed %zu of %zu bytes", w, n);
    }
    *out = buf;
    *out_len = n;
    return GRETA_OK;
}

const char *greta_msg_body_name(int body_case)
{
    switch (body_case) {
    case GRETA__ENVELOPE__BODY_HELLO: return "hello";
    case GRETA__ENVELOPE__BODY_HEARTBEAT: return "heartbeat";
    case GRETA__ENVELOPE__BODY_ENCODE: return "encode";
    case GRETA__ENVELOPE__BODY_ENCODED: return "encoded";
    case GRETA__ENVELOPE__BODY_SUBMIT: return "submit";
    case GRETA__ENVELOPE__BODY_SUBMITTED: return "submitted";
    case GRETA__ENVELOPE__BODY_CANCEL: return "cancel";
    case GRETA__ENVELOPE__BODY_RELEASE: return "release";
    case GRETA__ENVELOPE__BODY_ACK: return "ack";
    case GRETA__ENVELOPE__BODY_STEP_READY: return "step_ready";
    case GRETA__ENVELOPE__BODY_STEP_DONE: return "step_done";
    case GRETA__ENVELOPE__BODY_TOKEN_EVENT: return "token_event";
    case GRETA__ENVELOPE__BODY_RESUME: return "resume";
    case GRETA__ENVELOPE__BODY_TEXT_DELTA: return "text_delta";
    case GRETA__ENVELOPE__BODY_FINISHED: return "finished";
    case GRETA__ENVELOPE__BODY_ERROR: return "error";
    case GRETA__ENVELOPE__BODY_STATS_REQUEST: return "stats_request";
    case GRETA__ENVELOPE__BODY_STATS: return "stats";
    case GRETA__ENVELOPE__BODY_CONTROL: return "control";
    case GRETA__ENVELOPE__BODY_CONTROL_REPLY: return "control_reply";
    case GRETA__ENVELOPE__BODY__NOT_SET: return "none";
    default: return "unknown";
    }
}

static int bad(greta_error *err, const char *field, const char *what)
{
    return greta_error_set(err, GRETA_ERR_FORMAT, "%s: %s", field, what);
}

static int check_sampling(const Greta__SamplingParams *s, greta_error *err)
{
    if (!s)
        return GRETA_OK; /* defaults: greedy */
    if (!isfinite(s->temperature) || s->temperature < 0.0f || s->temperature > 100.0f)
        return greta_error_set(err, GRETA_ERR_FORMAT,
                               "submit.sampling.temperature: %g outside [0, 100]", (double)s->temperature);
    if (s->top_k < 0)
        return greta_error_set(err, GRETA_ERR_FORMAT, "submit.sampling.top_k: %d is negative", s->top_k);
    if (!isfinite(s->top_p) || s->top_p < 0.0f || s->top_p > 1.0f)
        return greta_error_set(err, GRETA_ERR_FORMAT, "submit.sampling.top_p: %g outside [0, 1]",
                               (double)s->top_p);
    if (!isfinite(s->min_p) || s->min_p < 0.0f || s->min_p > 1.0f)
        return greta_error_set(err, GRETA_ERR_FORMAT, "submit.sampling.min_p: %g outside [0, 1]",
                               (double)s->min_p);
    if (!isfinite(s->repeat_penalty) || s->repeat_penalty < 0.0f || s->repeat_penalty > 100.0f)
        return greta_error_set(err, GRETA_ERR_FORMAT,
                               "submit.sampling.repeat_penalty: %g outside [0, 100]",
                               (double)s->repeat_penalty);
    if (s->repeat_last_n < -1)
        return greta_error_set(err, GRETA_ERR_FORMAT,
                               "submit.sampling.repeat_last_n: %d, must be -1 (whole history) or more",
                               s->repeat_last_n);
    if (!isfinite(s->frequency_penalty) || fabsf(s->frequency_penalty) > GRETA_MSG_MAX_PENALTY)
        return greta_error_set(err, GRETA_ERR_FORMAT, "submit.sampling.frequency_penalty: %g outside [-%g, %g]",
                               (double)s->frequency_penalty, (double)GRETA_MSG_MAX_PENALTY,
                               (double)GRETA_MSG_MAX_PENALTY);
    if (!isfinite(s->presence_penalty) || fabsf(s->presence_penalty) > GRETA_MSG_MAX_PENALTY)
        return greta_error_set(err, GRETA_ERR_FORMAT, "submit.sampling.presence_penalty: %g outside [-%g, %g]",
                               (double)s->presence_penalty, (double)GRETA_MSG_MAX_PENALTY,
                               (double)GRETA_MSG_MAX_PENALTY);
    if (s->n_logit_bias > GRETA_MSG_MAX_BIAS)
        return greta_error_set(err, GRETA_ERR_LIMIT, "submit.sampling.logit_bias: %zu entries exceed the limit of %d",
                               s->n_logit_bias, GRETA_MSG_MAX_BIAS);
    for (size_t i = 0; i < s->n_logit_bias; i++) {
        const Greta__LogitBias *b = s->logit_bias[i];
        if (b->token < 0)
            return greta_error_set(err, GRETA_ERR_FORMAT, "submit.sampling.logit_bias[%zu].token: %d is negative", i,
                                   b->token);
        if (isnan(b->bias) || b->bias == INFINITY)
            return greta_error_set(err, GRETA_ERR_FORMAT,
                                   "submit.sampling.logit_bias[%zu].bias: %g (must be finite, or -inf to ban)", i,
                                   (double)b->bias);
    }
    return GRETA_OK;
}

static int needs_request_id(int body_case)
{
    switch (body_case) {
    case GRETA__ENVELOPE__BODY_ENCODE:
    case GRETA__ENVELOPE__BODY_SUBMIT:
    case GRETA__ENVELOPE__BODY_CANCEL:
    case GRETA__ENVELOPE__BODY_RELEASE:
    case GRETA__ENVELOPE__BODY_RESUME:
    case GRETA__ENVELOPE__BODY_TEXT_DELTA:
    case GRETA__ENVELOPE__BODY_FINISHED:
        return 1;
    default:
        return 0;
    }
}

/* Field checks that need no stage state. */
static int validate(const Greta__Envelope *e, greta_error *err)
{
    if (e->version != GRETA_PROTO_VERSION)
        return greta_error_set(err, GRETA_ERR_UNSUPPORTED,
                               "envelope.version: %u, this build speaks protocol version %u",
                               e->version, GRETA_PROTO_VERSION);
    if (e->body_case == GRETA__ENVELOPE__BODY__NOT_SET)
        return bad(err, "envelope.body", "no message body");
    if (needs_request_id(e->body_case) && e->request_id == 0)
        return greta_error_set(err, GRETA_ERR_FORMAT, "envelope.request_id: 0 in a %s message",
                               greta_msg_body_name(e->body_case));
    switch (e->body_case) {
    case GRETA__ENVELOPE__BODY_HELLO:
    case GRETA__ENVELOPE__BODY_HEARTBEAT: {
        int pid = e->body_case == GRETA__ENVELOPE__BODY_HELLO ? e->hello->pid : e->heartbeat->pid;
        if (pid <= 0)
            return greta_error_set(err, GRETA_ERR_FORMAT, "%s.pid: %d is not a process id",
                                   greta_msg_body_name(e->body_case), pid);
        break;
    }
    case GRETA__ENVELOPE__BODY_ENCODE:
        if (e->encode->n_messages > GRETA_MSG_MAX_CHAT)
            return greta_error_set(err, GRETA_ERR_LIMIT, "encode.messages: %zu exceeds the limit of %d",
                                   e->encode->n_messages, GRETA_MSG_MAX_CHAT);
        for (size_t i = 0; i < e->encode->n_messages; i++)
            if (e->encode->messages[i]->role.len == 0)
                return greta_error_set(err, GRETA_ERR_FORMAT, "encode.messages[%zu].role: empty", i);
        break;
    case GRETA__ENVELOPE__BODY_SUBMIT: {
        const Greta__Submit *s = e->submit;
        if (s->client.len > GRETA_MSG_MAX_CLIENT_ID)
            return greta_error_set(err, GRETA_ERR_LIMIT, "submit.client: %zu bytes exceeds %d",
                                   s->client.len, GRETA_MSG_MAX_CLIENT_ID);
        if (s->n_prompt == 0)
            return bad(err, "submit.prompt", "empty");
        for (size_t i = 0; i < s->n_prompt; i++)
            if (s->prompt[i] < 0)
                return greta_error_set(err, GRETA_ERR_FORMAT, "submit.prompt[%zu]: negative token id %d",
                                       i, s->prompt[i]);
        if (s->max_tokens <= 0)
            return greta_error_set(err, GRETA_ERR_FORMAT, "submit.max_tokens: %d is not positive",
                                   s->max_tokens);
        if (s->n_stop > GRETA_MSG_MAX_STOP)
            return greta_error_set(err, GRETA_ERR_LIMIT, "submit.stop: %zu strings exceed the limit of %d",
                                   s->n_stop, GRETA_MSG_MAX_STOP);
        for (size_t i = 0; i < s->n_stop; i++)
            if (s->stop[i].len == 0 || s->stop[i].len > GRETA_MSG_MAX_STOP_LEN)
                return greta_error_set(err, GRETA_ERR_LIMIT, "submit.stop[%zu]: %zu bytes, must be 1..%d",
                                       i, s->stop[i].len, GRETA_MSG_MAX_STOP_LEN);
        return check_sampling(s->sampling, err);
    }
    case GRETA__ENVELOPE__BODY_STEP_READY:
        if (e->step_ready->n_slots > GRETA_MSG_MAX_SLOTS)
            return greta_error_set(err, GRETA_ERR_LIMIT, "step_ready.slots: %zu exceeds %d",
                                   e->step_ready->n_slots, GRETA_MSG_MAX_SLOTS);
        for (size_t i = 0; i < e->step_ready->n_slots; i++)
            if (e->step_ready->slots[i] < 0)
                return greta_error_set(err, GRETA_ERR_FORMAT, "step_ready.slots[%zu]: negative", i);
        break;
    case GRETA__ENVELOPE__BODY_STEP_DONE:
        if (e->step_done->n_slots > GRETA_MSG_MAX_SLOTS)
            return greta_error_set(err, GRETA_ERR_LIMIT, "step_done.slots: %zu exceeds %d",
                                   e->step_done->n_slots, GRETA_MSG_MAX_SLOTS);
        if (e->step_done->n_tokens != e->step_done->n_slots)
            return greta_error_set(err, GRETA_ERR_FORMAT, "step_done.tokens: %zu tokens for %zu slots",
                                   e->step_done->n_tokens, e->step_done->n_slots);
        break;
    case GRETA__ENVELOPE__BODY_STATS:
        if (e->stats->n_handoff_ns > GRETA_MSG_MAX_HANDOFF_SAMPLES)
            return greta_error_set(err, GRETA_ERR_LIMIT, "stats.handoff_ns: %zu samples exceed %d",
                                   e->stats->n_handoff_ns, GRETA_MSG_MAX_HANDOFF_SAMPLES);
        break;
    case GRETA__ENVELOPE__BODY_TOKEN_EVENT:
        if (e->token_event->slot < 0)
            return bad(err, "token_event.slot", "negative");
        break;
    case GRETA__ENVELOPE__BODY_CONTROL:
        if (e->control->command != GRETA__CONTROL__COMMAND__STATUS &&
            e->control->command != GRETA__CONTROL__COMMAND__RESTART &&
            e->control->command != GRETA__CONTROL__COMMAND__SHUTDOWN)
            return greta_error_set(err, GRETA_ERR_FORMAT, "control.command: unknown value %d",
                                   (int)e->control->command);
        break;
    case GRETA__ENVELOPE__BODY_ERROR:
        if (e->error->code >= 0)
            return greta_error_set(err, GRETA_ERR_FORMAT, "error.code: %d is not negative", e->error->code);
        break;
    default:
        break;
    }
    return GRETA_OK;
}

int greta_msg_unpack(const void *data, size_t len, Greta__Envelope **out, uint64_t *request_id,
                     greta_error *err)
{
    *out = NULL;
    if (request_id)
        *request_id = 0;
    if (len > GRETA_MSG_MAX)
        return greta_error_set(err, GRETA_ERR_LIMIT, "message: %zu bytes exceeds the limit of %u (oversized)",
                               len, GRETA_MSG_MAX);
    if (len == 0)
        return greta_error_set(err, GRETA_ERR_FORMAT, "message: empty (no envelope)");
    Greta__Envelope *e = greta__envelope__unpack(NULL, len, data);
    if (!e)
        return greta_error_set(err, GRETA_ERR_FORMAT,
                               "message: %zu bytes are not a valid greta.Envelope (malformed or truncated protobuf)",
                               len);
    if (request_id)
        *request_id = e->request_id;
    int rc = validate(e, err);
    if (rc < 0) {
        greta__envelope__free_unpacked(e, NULL);
        return rc;
    }
    *out = e;
    return GRETA_OK;
}

void greta_msg_free(Greta__Envelope **env)
{
    if (env && *env) {
        greta__envelope__free_unpacked(*env, NULL);
        *env = NULL;
    }
}

ProtobufCBinaryData greta_msg_bytes(const char *s)
{
    ProtobufCBinaryData b = {s ? strlen(s) : 0, (uint8_t *)(uintptr_t)s};
    return b;
}

char *greta_msg_cstr(ProtobufCBinaryData b, char *buf, size_t n)
{
    size_t k = b.len < n - 1 ? b.len : n - 1;
    if (k)
        memcpy(buf, b.data, k);
    buf[k] = '\0';
    return buf;
}
