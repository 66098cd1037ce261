/* main.c - the greta-tokenizer process: encodes prompts (plain or with the
 * model's chat template) and turns generated tokens into text deltas.
 *
 *   greta-tokenizer --instance NAME
 *
 * Sockets: ROUTER GRETA_EP_TOKENIZER (Encode -> Encoded, Resume -> TextDelta
 * ... Finished, StatsRequest -> Stats), PULL GRETA_EP_TOKEN_EVENTS
 * (TokenEvent wake-ups from the worker).
 *
 * Streaming: for each active slot the tokenizer pushes the generated tokens
 * (history[prompt_len ..]) through the incremental detokenizer and sends
 * one TextDelta per token to the client (routing id from the slot, or of
 * its last Resume). Stop strings are matched on the text, across token
 * boundaries: text that could be the start of a stop string is held back
 * until it cannot; on a match the text ends before the stop string, the
 * slot's stop_hit is set (the worker finishes it) and Finished{STOP} follows.
 *
 * Restart rules: the text of a request is a pure function of its tokens, so
 * the tokenizer keeps nothing it cannot rebuild. A new tokenizer replays each
 * active slot's first text_tokens tokens silently (already sent) and goes on
 * from there; a client that missed deltas asks again with Resume{from}.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "chat.h"
#include "common/gguf.h"
#include "proto/msg.h"
#include "proto/stage.h"
#include "proto/zsock.h"
#include "tokenizer.h"

typedef struct stream {
    int used;
    uint64_t request_id;
    uint32_t generation;
    greta_detok_state detok;
    char *text;            /* decoded text so far (released + held back) */
    size_t len, cap;
    uint64_t *tok_end;     /* [n_ctx] released bytes after generated token i */
    uint32_t n_done;       /* generated tokens processed */
    uint64_t released;     /* bytes released to the client */
    int stopped;           /* a stop string matched */
    int final;             /* the end is known (tail computed) */
    int finished_sent;
    uint32_t reason;       /* greta.FinishReason once final */
    size_t tail_len;       /* text[released .. released + tail_len) is the tail */
    uint8_t client[GRETA_ZRID_MAX];
    size_t client_len;
} stream;

typedef struct tok_stage {
    greta_stage_ctx c;
    gguf_file *gguf;
    greta_tokenizer *tok;
    greta_chat_template tmpl;
    void *rpc;    /* ROUTER */
    void *events; /* PULL */
    stream *streams; /* [n_slots] */
    char *piece;     /* scratch for one push */
    size_t piece_cap;
    uint64_t encoded, deltas;
} tok_stage;

/* ---- text of one stream ---------------------------------------------------------- */

static int append(stream *st, const char *b, size_t n)
{
    if (st->len + n + 1 > st->cap) {
        size_t cap = st->cap ? st->cap : 256;
        while (cap < st->len + n + 1)
            cap *= 2;
        char *p = realloc(st->text, cap);
        if (!p)
            return -1;
        st->text = p;
        st->cap = cap;
    }
    memcpy(st->text + st->len, b, n);
    st->len += n;
    st->text[st->len] = '\0';
    return 0;
}

/* Where the releasable text ends: before a stop string (sets *hit), or before
 * the longest suffix that could still become one. */
static size_t release_end(const stream *st, const greta_shm_slot *sl, int *hit)
{
    *hit = 0;
    if (sl->n_stop == 0)
        return st->len;
    size_t best = st->len;
    size_t from = st->released > GRETA_SHM_STOP_LEN ? st->released - GRETA_SHM_STOP_LEN : 0;
    for (uint32_t k = 0; k < sl->n_stop && k < GRETA_SHM_STOP_MAX; k++) {
        const char *s = sl->stop[k];
        size_t sn = strnlen(s, GRETA_SHM_STOP_LEN - 1);
        if (!sn)
            continue;
        const char *hay = st->text + from;
        const char *m = memmem(hay, st->len - from, s, sn);
        if (m && (size_t)(m - st->text) < best) {
            best = (size_t)(m - st->text);
            *hit = 1;
        }
    }
    if (*hit)
        return best < st->released ? st->released : best;
    size_t hold = 0;
    for (uint32_t k = 0; k < sl->n_stop && k < GRETA_SHM_STOP_MAX; k++) {
        const char *s = sl->stop[k];
        size_t sn = strnlen(s, GRETA_SHM_STOP_LEN - 1);
        for (size_t h = sn > 1 ? sn - 1 : 0; h > hold; h--)
            if (h <= st->len && !memcmp(st->text + st->len - h, s, h)) {
                hold = h;
                break;
            }
    }
    size_t end = st->len - hold;
    return end < st->released ? st->released : end;
}

static void stream_free(stream *st)
{
    free(st->text);
    free(st->tok_end);
    memset(st, 0, sizeof *st);
}

static int stream_init(tok_stage *t, stream *st, uint32_t i, greta_shm_slot *sl)
{
    stream_free(st);
    st->tok_end = calloc(greta_shm_hdr(t->c.shm)->n_ctx + 1, sizeof *st->tok_end);
    if (!st->tok_end)
        return -1;
    st->used = 1;
    st->request_id = atomic_load(&sl->request_id);
    st->generation = atomic_load(&sl->generation);
    /* as `greta run`: a continuation of prompt text keeps its leading space;
     * text after BOS alone loses it (SentencePiece) */
    greta_detok_init(&st->detok, sl->prompt_len > 1 ? GRETA_DECODE_KEEP_SPACE : 0);
    st->client_len = sl->client_len < GRETA_SHM_CLIENT_LEN ? sl->client_len : GRETA_SHM_CLIENT_LEN;
    memcpy(st->client, sl->client, st->client_len);
    (void)i;
    return 0;
}

/* ---- sending -------------------------------------------------------------------- */

static void send_delta(tok_stage *t, stream *st, greta_shm_slot *sl, uint32_t i)
{
    uint64_t a = i ? st->tok_end[i - 1] : 0, b = st->tok_end[i];
    Greta__Envelope env;
    Greta__TextDelta d = GRETA__TEXT_DELTA__INIT;
    greta_msg_init(&env, st->request_id);
    d.token_index = i;
    d.token = greta_shm_tokens(t->c.shm, (uint32_t)(sl - greta_shm_slot_at(t->c.shm, 0)))[sl->prompt_len + i];
    d.text_offset = a;
    d.text.data = (uint8_t *)st->text + a;
    d.text.len = (size_t)(b - a);
    d.batch_size = (int32_t)atomic_load(&sl->batch_size);
    env.body_case = GRETA__ENVELOPE__BODY_TEXT_DELTA;
    env.text_delta = &d;
    uint64_t t0 = GRETA_TRACE_BEGIN(t->c.trace);
    greta_zsend(t->rpc, st->client, st->client_len, &env, NULL);
    GRETA_TRACE_END(t->c.trace, "deliver", t0, st->request_id, "token", i);
    t->deltas++;
}

static void send_finished(tok_stage *t, stream *st, greta_shm_slot *sl)
{
    Greta__Envelope env;
    Greta__Finished f = GRETA__FINISHED__INIT;
    greta_msg_init(&env, st->request_id);
    f.reason = (Greta__FinishReason)st->reason;
    f.prompt_tokens = sl->prompt_len;
    f.completion_tokens = st->n_done;
    f.tail.data = (uint8_t *)st->text + st->released;
    f.tail.len = st->tail_len;
    f.text_offset = st->released;
    f.n_deltas = st->n_done;
    env.body_case = GRETA__ENVELOPE__BODY_FINISHED;
    env.finished = &f;
    greta_zsend(t->rpc, st->client, st->client_len, &env, NULL);
}

/* Processes the slot's new tokens (up to `limit` generated tokens); sends a
 * delta per token and the Finished when `send`. */
static void advance(tok_stage *t, uint32_t i, uint32_t limit, int send)
{
    greta_shm *shm = t->c.shm;
    greta_shm_slot *sl = greta_shm_slot_at(shm, i);
    stream *st = &t->streams[i];
    uint32_t state = atomic_load_explicit(&sl->state, memory_order_acquire);
    uint32_t n = atomic_load_explicit(&sl->n_tokens, memory_order_acquire);
    uint32_t avail = n > sl->prompt_len ? n - sl->prompt_len : 0;
    if (avail > limit)
        avail = limit;
    const int32_t *hist = greta_shm_tokens(shm, i);
    while (!st->stopped && st->n_done < avail) {
        uint64_t t0 = GRETA_TRACE_BEGIN(t->c.trace);
        size_t nb = 0;
        greta_error err = {0};
        if (greta_detok_push(t->tok, &st->detok, hist[sl->prompt_len + st->n_done], t->piece, t->piece_cap, &nb,
                             &err) < 0 ||
            append(st, t->piece, nb) < 0) {
            greta_stage_log(&t->c, "slot %u request %016llx: token %u: %s", i, (unsigned long long)st->request_id,
                            st->n_done, err.msg[0] ? err.msg : "out of memory");
            nb = 0;
        }
        int hit;
        size_t end = release_end(st, sl, &hit);
        GRETA_TRACE_END(t->c.trace, "detokenize", t0, st->request_id, "token", st->n_done);
        st->tok_end[st->n_done] = end;
        st->released = end;
        st->n_done++;
        if (send)
            send_delta(t, st, sl, st->n_done - 1);
        if (hit) {
            st->stopped = 1;
            atomic_store(&sl->stop_hit, 1);
        }
        if (send) {
            atomic_store(&sl->text_offset, st->released);
            atomic_store(&sl->text_tokens, st->n_done);
        }
    }
    if (!st->final && (st->stopped || (state == GRETA_SLOT_FINISHED && st->n_done == avail && limit == UINT32_MAX))) {
        if (st->stopped) {
            st->reason = GRETA__FINISH_REASON__FINISH_STOP;
            st->tail_len = 0;
        } else {
            size_t nb = 0;
            greta_detok_flush(t->tok, &st->detok, t->piece, t->piece_cap, &nb, NULL);
            append(st, t->piece, nb);
            st->reason = atomic_load(&sl->finish_reason);
            st->tail_len = st->len - st->released; /* held-back text is released at the end */
        }
        st->final = 1;
    }
    if (st->final && send && !st->finished_sent) {
        send_finished(t, st, sl);
        st->finished_sent = 1;
        atomic_store(&sl->delivered, 1);
    }
}

/* Makes sure slot i has a stream for its current request; a new one replays
 * the tokens already sent. 0 if the slot has no request. */
static int ensure_stream(tok_stage *t, uint32_t i)
{
    greta_shm_slot *sl = greta_shm_slot_at(t->c.shm, i);
    stream *st = &t->streams[i];
    uint32_t state = atomic_load_explicit(&sl->state, memory_order_acquire);
    if (state == GRETA_SLOT_FREE) {
        if (st->used)
            stream_free(st);
        return 0;
    }
    if (st->used && st->request_id == atomic_load(&sl->request_id) && st->generation == atomic_load(&sl->generation))
        return 1;
    if (stream_init(t, st, i, sl) < 0)
        return 0;
    uint32_t sent = atomic_load(&sl->text_tokens);
    if (sent) {
        advance(t, i, sent, 0);
        if (atomic_load(&sl->delivered)) {
            advance(t, i, UINT32_MAX, 0);
            st->finished_sent = 1;
        }
        greta_stage_log(&t->c, "slot %u request %016llx: resumed after %u tokens (%llu bytes)", i,
                        (unsigned long long)st->request_id, st->n_done, (unsigned long long)st->released);
    }
    return 1;
}

static void scan(tok_stage *t)
{
    uint32_t n = greta_shm_hdr(t->c.shm)->n_slots;
    for (uint32_t i = 0; i < n; i++)
        if (ensure_stream(t, i))
            advance(t, i, UINT32_MAX, 1);
}

/* ---- requests ------------------------------------------------------------------------ */

static int role_of(ProtobufCBinaryData r, greta_chat_role *out)
{
    char s[16];
    greta_msg_cstr(r, s, sizeof s);
    if (r.len < sizeof s && !strcmp(s, "system"))
        *out = GRETA_ROLE_SYSTEM;
    else if (r.len < sizeof s && !strcmp(s, "user"))
        *out = GRETA_ROLE_USER;
    else if (r.len < sizeof s && !strcmp(s, "assistant"))
        *out = GRETA_ROLE_ASSISTANT;
    else
        return -1;
    return 0;
}

static int encode(tok_stage *t, const Greta__Encode *e, int32_t **ids, size_t *n, greta_error *err)
{
    *ids = NULL;
    *n = 0;
    size_t max;
    int rc;
    if (e->n_messages) {
        greta_chat_msg *msgs = calloc(e->n_messages, sizeof *msgs);
        if (!msgs)
            return greta_error_set(err, GRETA_ERR_NOMEM, "encode: out of memory");
        size_t total = 0;
        for (size_t k = 0; k < e->n_messages; k++) {
            if (role_of(e->messages[k]->role, &msgs[k].role) < 0) {
                free(msgs);
                return greta_error_set(err, GRETA_ERR_FORMAT,
                                       "encode.messages[%zu].role: not system, user or assistant", k);
            }
            msgs[k].content = (const char *)e->messages[k]->content.data;
            msgs[k].len = e->messages[k]->content.len;
            total += msgs[k].len + 64;
        }
        max = greta_tokenizer_max_tokens(total) + 64;
        *ids = malloc(max * sizeof **ids);
        rc = *ids ? greta_chat_render_ids(t->tmpl, t->tok, msgs, e->n_messages, true, *ids, max, n, err)
                  : greta_error_set(err, GRETA_ERR_NOMEM, "encode: out of memory");
        free(msgs);
    } else {
        max = greta_tokenizer_max_tokens(e->text.len) + 2;
        *ids = malloc(max * sizeof **ids);
        rc = *ids ? greta_tokenizer_encode(t->tok, (const char *)e->text.data, e->text.len,
                                           e->add_bos ? GRETA_ENCODE_ADD_BOS : 0, *ids, max, n, err)
                  : greta_error_set(err, GRETA_ERR_NOMEM, "encode: out of memory");
    }
    if (rc < 0) {
        free(*ids);
        *ids = NULL;
        *n = 0;
    }
    return rc;
}

static int find_request(tok_stage *t, uint64_t rid)
{
    uint32_t n = greta_shm_hdr(t->c.shm)->n_slots;
    for (uint32_t i = 0; i < n; i++) {
        greta_shm_slot *sl = greta_shm_slot_at(t->c.shm, i);
        if (atomic_load(&sl->state) != GRETA_SLOT_FREE && atomic_load(&sl->request_id) == rid)
            return (int)i;
    }
    return -1;
}

static void handle_rpc(tok_stage *t, greta_zmsg *m)
{
    if (!m->env) {
        greta_stage_reject(&t->c, t->rpc, m->rid, m->rid_len, m->request_id, m->err.code, m->err.msg);
        return;
    }
    Greta__Envelope env;
    greta_msg_init(&env, m->request_id);
    greta_error err = {0};
    switch (m->env->body_case) {
    case GRETA__ENVELOPE__BODY_ENCODE: {
        uint64_t t0 = GRETA_TRACE_BEGIN(t->c.trace);
        int32_t *ids;
        size_t n;
        if (encode(t, m->env->encode, &ids, &n, &err) < 0) {
            greta_stage_reject(&t->c, t->rpc, m->rid, m->rid_len, m->request_id, err.code, err.msg);
            return;
        }
        Greta__Encoded r = GRETA__ENCODED__INIT;
        r.n_tokens = n;
        r.tokens = ids;
        env.body_case = GRETA__ENVELOPE__BODY_ENCODED;
        env.encoded = &r;
        if (greta_zsend(t->rpc, m->rid, m->rid_len, &env, &err) < 0)
            greta_stage_reject(&t->c, t->rpc, m->rid, m->rid_len, m->request_id, err.code, err.msg);
        free(ids);
        GRETA_TRACE_END(t->c.trace, "encode", t0, m->request_id, "tokens", (int64_t)n);
        t->encoded++;
        return;
    }
    case GRETA__ENVELOPE__BODY_RESUME: {
        int i = find_request(t, m->request_id);
        if (i < 0 || !ensure_stream(t, (uint32_t)i)) {
            greta_stage_reject(&t->c, t->rpc, m->rid, m->rid_len, m->request_id, GRETA_ERR_NOT_FOUND,
                               "unknown request id");
            return;
        }
        stream *st = &t->streams[i];
        greta_shm_slot *sl = greta_shm_slot_at(t->c.shm, (uint32_t)i);
        st->client_len = m->rid_len;
        memcpy(st->client, m->rid, m->rid_len);
        advance(t, (uint32_t)i, UINT32_MAX, 0); /* catch up silently, then send from `from` */
        for (uint32_t k = m->env->resume->from_token; k < st->n_done; k++)
            send_delta(t, st, sl, k);
        atomic_store(&sl->text_offset, st->released);
        atomic_store(&sl->text_tokens, st->n_done);
        if (st->final) {
            send_finished(t, st, sl);
            st->finished_sent = 1;
            atomic_store(&sl->delivered, 1);
        }
        return;
    }
    case GRETA__ENVELOPE__BODY_STATS_REQUEST: {
        Greta__Stats s = GRETA__STATS__INIT;
        s.stage = GRETA__STAGE__STAGE_TOKENIZER;
        s.pid = (int32_t)getpid();
        s.requests = t->encoded;
        s.tokens = t->deltas;
        s.rejected = t->c.rejected;
        env.body_case = GRETA__ENVELOPE__BODY_STATS;
        env.stats = &s;
        greta_zsend(t->rpc, m->rid, m->rid_len, &env, NULL);
        return;
    }
    default: {
        char why[96];
        snprintf(why, sizeof why, "the tokenizer does not take %s messages", greta_msg_body_name(m->env->body_case));
        greta_stage_reject(&t->c, t->rpc, m->rid, m->rid_len, m->request_id, GRETA_ERR_INVALID, why);
        return;
    }
    }
}

/* ---- main ------------------------------------------------------------------------------ */

static int open_all(tok_stage *t, greta_error *err)
{
    greta_shm_header *h = greta_shm_hdr(t->c.shm);
    int rc = gguf_open(h->model_path, &t->gguf, err);
    if (rc < 0)
        return greta_error_prefix(err, "model '%s'", h->model_path);
    if ((rc = greta_tokenizer_create_from_gguf(t->gguf, &t->tok, err)) < 0)
        return rc;
    if ((uint32_t)greta_tokenizer_vocab_size(t->tok) != h->n_vocab)
        return greta_error_set(err, GRETA_ERR_STATE, "vocabulary of %d tokens, the segment says %u",
                               greta_tokenizer_vocab_size(t->tok), h->n_vocab);
    char note[GRETA_CHAT_NOTE_MAX];
    if ((rc = greta_chat_template_select(t->gguf, t->tok, NULL, &t->tmpl, note, err)) < 0)
        return rc;
    t->piece_cap = greta_detok_max_out(t->tok);
    t->piece = malloc(t->piece_cap);
    t->streams = calloc(h->n_slots, sizeof *t->streams);
    if (!t->piece || !t->streams)
        return greta_error_set(err, GRETA_ERR_NOMEM, "tokenizer: out of memory");
    char rpc[GRETA_PATH_MAX], ev[GRETA_PATH_MAX];
    if ((rc = greta_stage_endpoint(&t->c, GRETA_EP_TOKENIZER, rpc, sizeof rpc, err)) < 0 ||
        (rc = greta_stage_endpoint(&t->c, GRETA_EP_TOKEN_EVENTS, ev, sizeof ev, err)) < 0)
        return rc;
    t->rpc = greta_zsock_new(t->c.zctx, ZMQ_ROUTER, err);
    t->events = greta_zsock_new(t->c.zctx, ZMQ_PULL, err);
    if (!t->rpc || !t->events)
        return GRETA_ERR_IO;
    if ((rc = greta_zsock_bind(t->rpc, rpc, err)) < 0 || (rc = greta_zsock_bind(t->events, ev, err)) < 0)
        return rc;
    greta_stage_log(&t->c, "vocabulary %d tokens, chat template %s%s%s", greta_tokenizer_vocab_size(t->tok),
                    greta_chat_template_name(t->tmpl), note[0] ? "; " : "", note);
    return GRETA_OK;
}

int main(int argc, char **argv)
{
    tok_stage t;
    memset(&t, 0, sizeof t);
    greta_error err = {0};
    int rc = greta_stage_init(&t.c, GRETA_STAGE_TOKENIZER, argc, argv, &err);
    for (int i = 1; rc == 0 && i < argc; i++)
        if (argv[i])
            rc = greta_error_set(&err, GRETA_ERR_INVALID, "unknown argument '%s'", argv[i]);
    if (rc == 0)
        rc = open_all(&t, &err);
    if (rc == 0) {
        scan(&t); /* resume the streams of a dead tokenizer */
        greta_heartbeat_ready(t.c.hb);
    }
    while (rc == 0 && !greta_stage_stopping()) {
        zmq_pollitem_t it[2] = {{t.rpc, 0, ZMQ_POLLIN, 0}, {t.events, 0, ZMQ_POLLIN, 0}};
        zmq_poll(it, 2, 20);
        greta_heartbeat_progress(t.c.hb);
        greta_zmsg m;
        while (greta_zrecv(t.events, 0, &m, 0, &err) == 1) {
            if (!m.env)
                greta_stage_reject(&t.c, NULL, NULL, 0, m.request_id, m.err.code, m.err.msg);
            else if (m.env->body_case != GRETA__ENVELOPE__BODY_TOKEN_EVENT)
                greta_stage_reject(&t.c, NULL, NULL, 0, m.request_id, GRETA_ERR_INVALID,
                                   "the event socket takes TokenEvent messages only");
            else if ((uint32_t)m.env->token_event->slot >= greta_shm_hdr(t.c.shm)->n_slots)
                greta_stage_reject(&t.c, NULL, NULL, 0, m.request_id, GRETA_ERR_FORMAT,
                                   "token_event.slot: outside the slot table");
            greta_zmsg_clear(&m);
        }
        scan(&t); /* the segment is authoritative: events only wake us */
        for (int k = 0; k < 64 && greta_zrecv(t.rpc, 1, &m, 0, &err) == 1; k++) {
            handle_rpc(&t, &m);
            greta_zmsg_clear(&m);
        }
    }
    if (rc < 0)
        fprintf(stderr, "greta-tokenizer: %s\n", err.msg);
    else
        greta_stage_log(&t.c, "stopping: %llu encodes, %llu deltas, %llu rejected", (unsigned long long)t.encoded,
                        (unsigned long long)t.deltas, (unsigned long long)t.c.rejected);
    if (t.streams)
        for (uint32_t i = 0; i < greta_shm_hdr(t.c.shm)->n_slots; i++)
            stream_free(&t.streams[i]);
    free(t.streams);
    free(t.piece);
    greta_zsock_close(&t.rpc);
    greta_zsock_close(&t.events);
    greta_tokenizer_destroy(&t.tok);
    gguf_close(&t.gguf);
    greta_stage_fini(&t.c);
    return rc < 0 ? 1 : 0;
}
