/* client.c - see client.h. */
#include "client.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <unistd.h>

#include "endpoint.h"
#include "msg.h"
#include "zsock.h"

#define RESEND_MS 1000

struct greta_client {
    void *zctx;
    void *tok; /* DEALER -> tokenizer */
    void *wrk; /* DEALER -> gpu-worker */
    char id[GRETA_MSG_MAX_CLIENT_ID + 1];
    int call_ms, resume_ms;
};

uint64_t greta_client_request_id(void)
{
    uint64_t r = 0;
    while (r == 0) {
        if (getrandom(&r, sizeof r, 0) != (ssize_t)sizeof r)
            r = ((uint64_t)getpid() << 32) ^ (uint64_t)greta_now_ms() ^ (uint64_t)(uintptr_t)&r;
    }
    return r;
}

int greta_client_open(const char *instance, greta_client **out, greta_error *err)
{
    *out = NULL;
    char dir[GRETA_PATH_MAX], tp[GRETA_PATH_MAX], wp[GRETA_PATH_MAX];
    int rc = greta_runtime_dir(instance, dir, sizeof dir, err);
    if (rc == 0)
        rc = greta_endpoint_path(dir, GRETA_EP_TOKENIZER, tp, sizeof tp, err);
    if (rc == 0)
        rc = greta_endpoint_path(dir, GRETA_EP_WORKER, wp, sizeof wp, err);
    if (rc < 0)
        return rc;
    greta_client *c = calloc(1, sizeof *c);
    if (!c)
        return greta_error_set(err, GRETA_ERR_NOMEM, "client: out of memory");
    c->call_ms = 30000;
    c->resume_ms = 1000;
    snprintf(c->id, sizeof c->id, "c%d-%016llx", (int)getpid(), (unsigned long long)greta_client_request_id());
    c->zctx = zmq_ctx_new();
    c->tok = greta_zsock_new(c->zctx, ZMQ_DEALER, err);
    c->wrk = c->tok ? greta_zsock_new(c->zctx, ZMQ_DEALER, err) : NULL;
    rc = c->wrk ? 0 : GRETA_ERR_IO;
    if (rc == 0)
        rc = greta_zsock_set_id(c->tok, c->id, strlen(c->id), err);
    if (rc == 0)
        rc = greta_zsock_set_id(c->wrk, c->id, strlen(c->id), err);
    if (rc == 0)
        rc = greta_zsock_connect(c->tok, tp, err);
    if (rc == 0)
        rc = greta_zsock_connect(c->wrk, wp, err);
    if (rc < 0) {
        greta_client_close(&c);
        return rc;
    }
    *out = c;
    return GRETA_OK;
}

void greta_client_close(greta_client **pc)
{
    if (!pc || !*pc)
        return;
    greta_client *c = *pc;
    greta_zsock_close(&c->tok);
    greta_zsock_close(&c->wrk);
    if (c->zctx)
        zmq_ctx_term(c->zctx);
    free(c);
    *pc = NULL;
}

void greta_client_set_timeouts(greta_client *c, int call_ms, int resume_ms)
{
    if (call_ms > 0)
        c->call_ms = call_ms;
    if (resume_ms > 0)
        c->resume_ms = resume_ms;
}

/* Sends env on sock until a reply of type `want` (or Error) for its request
 * id arrives, resending every RESEND_MS, for at most c->call_ms. */
static int call(greta_client *c, void *sock, const Greta__Envelope *env, int want, Greta__Envelope **out,
                greta_error *err)
{
    *out = NULL;
    int64_t deadline = greta_now_ms() + c->call_ms, resend = 0;
    for (;;) {
        int64_t now = greta_now_ms();
        if (now >= deadline)
            return greta_error_set(err, GRETA_ERR_TIMEOUT, "%s: no answer in %d ms (is the instance up?)",
                                   greta_msg_body_name(env->body_case), c->call_ms);
        if (now >= resend) {
            int rc = greta_zsend(sock, NULL, 0, env, err);
            if (rc < 0 && rc != GRETA_ERR_TIMEOUT)
                return rc;
            resend = now + RESEND_MS;
        }
        int64_t wait = (resend < deadline ? resend : deadline) - now;
        greta_zmsg m;
        int r = greta_zrecv(sock, 0, &m, (int)(wait > 0 ? wait : 0), err);
        if (r < 0)
            return r;
        if (r == 0)
            continue;
        if (m.env && m.request_id == env->request_id) {
            if ((int)m.env->body_case == want) {
                *out = m.env;
                return GRETA_OK;
            }
            if (m.env->body_case == GRETA__ENVELOPE__BODY_ERROR) {
                char msg[400];
                greta_msg_cstr(m.env->error->message, msg, sizeof msg);
                int code = m.env->error->code;
                greta_zmsg_clear(&m);
                return greta_error_set(err, code, "%s", msg);
            }
        }
        greta_zmsg_clear(&m);
    }
}

static int encode_common(greta_client *c, Greta__Envelope *env, int32_t **ids, size_t *n, greta_error *err)
{
    Greta__Envelope *r = NULL;
    int rc = call(c, c->tok, env, GRETA__ENVELOPE__BODY_ENCODED, &r, err);
    if (rc < 0)
        return greta_error_prefix(err, "encode");
    *n = r->encoded->n_tokens;
    *ids = malloc((*n ? *n : 1) * sizeof **ids);
    if (!*ids) {
        greta_msg_free(&r);
        return greta_error_set(err, GRETA_ERR_NOMEM, "encode: out of memory");
    }
    memcpy(*ids, r->encoded->tokens, *n * sizeof **ids);
    greta_msg_free(&r);
    return GRETA_OK;
}

int greta_client_encode(greta_client *c, uint64_t rid, const char *text, size_t len, int add_bos, int32_t **ids,
                        size_t *n, greta_error *err)
{
    Greta__Envelope env;
    Greta__Encode e = GRETA__ENCODE__INIT;
    greta_msg_init(&env, rid);
    e.text.data = (uint8_t *)(uintptr_t)text;
    e.text.len = len;
    e.add_bos = add_bos != 0;
    env.body_case = GRETA__ENVELOPE__BODY_ENCODE;
    env.encode = &e;
    return encode_common(c, &env, ids, n, err);
}

int greta_client_encode_chat(greta_client *c, uint64_t rid, const char *const *roles, const char *const *contents,
                             size_t n_msgs, int32_t **ids, size_t *n, greta_error *err)
{
    Greta__ChatMessage *msgs = calloc(n_msgs ? n_msgs : 1, sizeof *msgs);
    Greta__ChatMessage **pm = calloc(n_msgs ? n_msgs : 1, sizeof *pm);
    if (!msgs || !pm) {
        free(msgs);
        free(pm);
        return greta_error_set(err, GRETA_ERR_NOMEM, "encode: out of memory");
    }
    for (size_t i = 0; i < n_msgs; i++) {
        greta__chat_message__init(&msgs[i]);
        msgs[i].role = greta_msg_bytes(roles[i]);
        msgs[i].content = greta_msg_bytes(contents[i]);
        pm[i] = &msgs[i];
    }
    Greta__Envelope env;
    Greta__Encode e = GRETA__ENCODE__INIT;
    greta_msg_init(&env, rid);
    e.n_messages = n_msgs;
    e.messages = pm;
    env.body_case = GRETA__ENVELOPE__BODY_ENCODE;
    env.encode = &e;
    int rc = encode_common(c, &env, ids, n, err);
    free(msgs);
    free(pm);
    return rc;
}

int greta_client_submit(greta_client *c, uint64_t rid, const greta_client_request *req, int *slot,
                        greta_error *err)
{
    Greta__Envelope env;
    Greta__Submit s = GRETA__SUBMIT__INIT;
    Greta__SamplingParams sp = GRETA__SAMPLING_PARAMS__INIT;
    ProtobufCBinaryData stops[GRETA_MSG_MAX_STOP];
    Greta__LogitBias bias[GRETA_MSG_MAX_BIAS];
    Greta__LogitBias *pbias[GRETA_MSG_MAX_BIAS];
    if (req->n_stop > GRETA_MSG_MAX_STOP)
        return greta_error_set(err, GRETA_ERR_LIMIT, "submit: %zu stop strings, at most %d", req->n_stop,
                               GRETA_MSG_MAX_STOP);
    if (req->n_bias > GRETA_MSG_MAX_BIAS)
        return greta_error_set(err, GRETA_ERR_LIMIT, "submit: %zu logit-bias entries, at most %d", req->n_bias,
                               GRETA_MSG_MAX_BIAS);
    for (size_t i = 0; i < req->n_bias; i++) {
        greta__logit_bias__init(&bias[i]);
        bias[i].token = req->bias[i].token;
        bias[i].bias = req->bias[i].bias;
        pbias[i] = &bias[i];
    }
    greta_msg_init(&env, rid);
    sp.temperature = req->temperature;
    sp.top_k = req->top_k;
    sp.top_p = req->top_p;
    sp.min_p = req->min_p;
    sp.repeat_penalty = req->repeat_penalty;
    sp.repeat_last_n = req->repeat_last_n;
    sp.seed = req->seed;
    sp.frequency_penalty = req->frequency_penalty;
    sp.presence_penalty = req->presence_penalty;
    sp.n_logit_bias = req->n_bias;
    sp.logit_bias = pbias;
    s.client = greta_msg_bytes(c->id);
    s.n_prompt = req->n_prompt;
    s.prompt = (int32_t *)req->prompt;
    s.max_tokens = req->max_tokens;
    s.sampling = &sp;
    for (size_t i = 0; i < req->n_stop; i++)
        stops[i] = greta_msg_bytes(req->stop[i]);
    s.n_stop = req->n_stop;
    s.stop = stops;
    env.body_case = GRETA__ENVELOPE__BODY_SUBMIT;
    env.submit = &s;
    Greta__Envelope *r = NULL;
    int rc = call(c, c->wrk, &env, GRETA__ENVELOPE__BODY_SUBMITTED, &r, err);
    if (rc < 0)
        return greta_error_prefix(err, "submit");
    if (slot)
        *slot = r->submitted->slot;
    greta_msg_free(&r);
    return GRETA_OK;
}

static void send_resume(greta_client *c, uint64_t rid, uint32_t from)
{
    Greta__Envelope env;
    Greta__Resume r = GRETA__RESUME__INIT;
    greta_msg_init(&env, rid);
    r.from_token = from;
    env.body_case = GRETA__ENVELOPE__BODY_RESUME;
    env.resume = &r;
    greta_zsend(c->tok, NULL, 0, &env, NULL);
}

int greta_client_stream(greta_client *c, uint64_t rid, uint32_t from_token, greta_client_delta_fn on_delta,
                        void *ctx, greta_client_result *res, greta_error *err)
{
    memset(res, 0, sizeof *res);
    uint32_t next = from_token;
    int64_t now = greta_now_ms();
    int64_t last_progress = now, last_rx = now, last_resume = now;
    send_resume(c, rid, next);
    for (;;) {
        now = greta_now_ms();
        if (now - last_progress > c->call_ms)
            return greta_error_set(err, GRETA_ERR_TIMEOUT, "stream: no progress in %d ms (at token %u)", c->call_ms,
                                   next);
        if (now - last_rx >= c->resume_ms) {
            send_resume(c, rid, next);
            res->resumes++;
            last_rx = last_resume = now;
        }
        greta_zmsg m;
        int r = greta_zrecv(c->tok, 0, &m, 50, err);
        if (r < 0)
            return r;
        if (r == 0)
            continue;
        if (!m.env || m.request_id != rid) {
            greta_zmsg_clear(&m);
            continue;
        }
        last_rx = greta_now_ms();
        switch (m.env->body_case) {
        case GRETA__ENVELOPE__BODY_TEXT_DELTA: {
            const Greta__TextDelta *d = m.env->text_delta;
            if (d->token_index < next) {
                res->duplicates++;
            } else if (d->token_index > next) {
                if (last_rx - last_resume > 100) { /* a gap: ask again from where we are */
                    send_resume(c, rid, next);
                    res->resumes++;
                    last_resume = last_rx;
                }
            } else {
                if ((uint32_t)d->batch_size > res->max_batch)
                    res->max_batch = (uint32_t)d->batch_size;
                if (on_delta && on_delta(ctx, d->token_index, d->token, (const char *)d->text.data, d->text.len,
                                         d->batch_size)) {
                    greta_zmsg_clear(&m);
                    return greta_error_set(err, GRETA_ERR_STATE, "stream: stopped by the caller");
                }
                next++;
                last_progress = last_rx;
            }
            break;
        }
        case GRETA__ENVELOPE__BODY_FINISHED: {
            const Greta__Finished *f = m.env->finished;
            if (f->completion_tokens > next) {
                if (last_rx - last_resume > 100) {
                    send_resume(c, rid, next);
                    res->resumes++;
                    last_resume = last_rx;
                }
                break;
            }
            if (f->completion_tokens < next) {
                greta_zmsg_clear(&m);
                return greta_error_set(err, GRETA_ERR_STATE, "stream: Finished after %u tokens, but %u arrived",
                                       f->completion_tokens, next);
            }
            if (f->tail.len && on_delta)
                on_delta(ctx, f->completion_tokens, -1, (const char *)f->tail.data, f->tail.len, 0);
            res->finish_reason = f->reason;
            res->prompt_tokens = f->prompt_tokens;
            res->completion_tokens = f->completion_tokens;
            greta_zmsg_clear(&m);
            return GRETA_OK;
        }
        case GRETA__ENVELOPE__BODY_ERROR: {
            char msg[400];
            greta_msg_cstr(m.env->error->message, msg, sizeof msg);
            int code = m.env->error->code;
            greta_zmsg_clear(&m);
            return greta_error_set(err, code, "stream: %s", msg);
        }
        default:
            break;
        }
        greta_zmsg_clear(&m);
    }
}

static int simple(greta_client *c, uint64_t rid, int body, greta_error *err)
{
    Greta__Envelope env;
    Greta__Cancel cn = GRETA__CANCEL__INIT;
    Greta__Release rl = GRETA__RELEASE__INIT;
    greta_msg_init(&env, rid);
    env.body_case = body;
    if (body == GRETA__ENVELOPE__BODY_CANCEL)
        env.cancel = &cn;
    else
        env.release = &rl;
    Greta__Envelope *r = NULL;
    int rc = call(c, c->wrk, &env, GRETA__ENVELOPE__BODY_ACK, &r, err);
    greta_msg_free(&r);
    return rc;
}

int greta_client_cancel(greta_client *c, uint64_t rid, greta_error *err)
{
    return simple(c, rid, GRETA__ENVELOPE__BODY_CANCEL, err);
}

int greta_client_release(greta_client *c, uint64_t rid, greta_error *err)
{
    int rc = simple(c, rid, GRETA__ENVELOPE__BODY_RELEASE, err);
    if (rc == GRETA_ERR_NOT_FOUND) {
        greta_error_clear(err);
        return GRETA_OK;
    }
    return rc;
}

int greta_client_send_raw(greta_client *c, int to_worker, const void *data, size_t len, int timeout_ms, int *code,
                          char *msg, size_t msg_cap)
{
    void *sock = to_worker ? c->wrk : c->tok;
    if (greta_zsend_raw(sock, NULL, 0, data, len, NULL) < 0)
        return -1;
    greta_zmsg m;
    int r = greta_zrecv(sock, 0, &m, timeout_ms, NULL);
    if (r != 1)
        return 0;
    int kind = 2;
    if (m.env && m.env->body_case == GRETA__ENVELOPE__BODY_ERROR) {
        kind = 1;
        if (code)
            *code = m.env->error->code;
        if (msg)
            greta_msg_cstr(m.env->error->message, msg, msg_cap);
    }
    greta_zmsg_clear(&m);
    return kind;
}

int greta_client_stats(greta_client *c, int to_worker, uint32_t *max_batch, uint64_t *steps, uint64_t *rejected,
                       greta_error *err)
{
    Greta__Envelope env;
    Greta__StatsRequest sr = GRETA__STATS_REQUEST__INIT;
    greta_msg_init(&env, greta_client_request_id());
    env.body_case = GRETA__ENVELOPE__BODY_STATS_REQUEST;
    env.stats_request = &sr;
    Greta__Envelope *r = NULL;
    int rc = call(c, to_worker ? c->wrk : c->tok, &env, GRETA__ENVELOPE__BODY_STATS, &r, err);
    if (rc < 0)
        return rc;
    if (max_batch)
        *max_batch = r->stats->max_batch;
    if (steps)
        *steps = r->stats->steps;
    if (rejected)
        *rejected = r->stats->rejected;
    greta_msg_free(&r);
    return GRETA_OK;
}

_Static_assert(GRETA_CLIENT_HANDOFF_SAMPLES == GRETA_MSG_MAX_HANDOFF_SAMPLES, "hand-off sample count");

int greta_client_worker_stats_get(greta_client *c, greta_client_worker_stats *out, greta_error *err)
{
    Greta__Envelope env;
    Greta__StatsRequest sr = GRETA__STATS_REQUEST__INIT;
    greta_msg_init(&env, greta_client_request_id());
    env.body_case = GRETA__ENVELOPE__BODY_STATS_REQUEST;
    env.stats_request = &sr;
    Greta__Envelope *r = NULL;
    int rc = call(c, c->wrk, &env, GRETA__ENVELOPE__BODY_STATS, &r, err);
    if (rc < 0)
        return greta_error_prefix(err, "stats");
    const Greta__Stats *st = r->stats;
    out->requests = st->requests;
    out->steps = st->steps;
    out->tokens = st->tokens;
    out->rejected = st->rejected;
    out->max_batch = st->max_batch;
    out->active = st->active;
    out->rows_full = st->rows_full;
    out->rows_reduced = st->rows_reduced;
    out->handoffs = st->handoffs;
    out->mixed_steps = st->mixed_steps;
    out->lookahead_hits = st->lookahead_hits;
    out->lookahead_misses = st->lookahead_misses;
    out->n_handoff_ns = (uint32_t)st->n_handoff_ns; /* <= GRETA_MSG_MAX_HANDOFF_SAMPLES: checked by unpack */
    if (st->n_handoff_ns)
        memcpy(out->handoff_ns, st->handoff_ns, st->n_handoff_ns * sizeof out->handoff_ns[0]);
    greta_msg_free(&r);
    return GRETA_OK;
}
