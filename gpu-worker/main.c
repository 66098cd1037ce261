/* main.c - the greta-gpu-worker process: owns the model and the KV cache and
 * runs the steps of all active sequences together.
 *
 *   greta-gpu-worker --instance NAME [--backend cpu|gpu] [--threads N]
 * (the supervisor passes backend and threads as `greta up` stored them in the
 * segment; the model path comes from the segment)
 *
 * Sockets: ROUTER GRETA_EP_WORKER (Submit, Cancel, Release, StatsRequest),
 * PULL GRETA_EP_STEP_DONE (StepDone from the sampler), PUSH to the sampler
 * (StepReady) and to the tokenizer (TokenEvent).
 *
 * One step: every ACTIVE slot contributes the tokens its KV cache lacks
 * (history[seq_len .. n_tokens), a prefill chunk or the last token), up to
 * n_batch in all (the engine's default, as in process: the backend's
 * prefill chunk, GRETA_PREFILL_CHUNK when set, capped at n_ctx and at least
 * the slot count; the startup log line gives it), the generating slots
 * first (one token each), then the prompts' chunks in what is left; the
 * logits of each slot whose history is complete go to the segment;
 * step_ready and its doorbell; wait for the sampler (step_done
 * and its doorbell; StepReady sent every 500 ms meanwhile); append each slot's token
 * (history first, then n_tokens, release); finish on EOS (not appended),
 * max_tokens, a full context, the tokenizer's stop_hit, or Cancel.
 *
 * Hand-off (proto/handoff.h): each logits row goes to the sampler whole, or,
 * where that is exact for the request, as its top-1 / top-k with the
 * log-sum-exp of the row (reduced by the backend's forward_topk when it has
 * one and every row of the step is reduced, else here on the host).
 * GRETA_HANDOFF=full forces whole rows. Stats report the rows of each kind
 * and the round trip of each hand-off (StepReady written -> step_done seen).
 *
 * Restart rules: everything lives in the segment. A new worker starts with an
 * empty KV cache, so each ACTIVE slot rebuilds it from its history the way
 * it was built (the prompt in chunks, then one generated token per step:
 * the same logits on the CPU and the GPU backend) and asks the sampler again for the token at
 * n_tokens, which the counter-based RNG makes the same token. Steps are
 * numbered from max(step_ready, step_done) + 1, so a late message of the dead
 * worker's step is recognised as stale.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "common/gguf.h"
#include "engine.h"
#include "proto/handoff.h"
#include "proto/msg.h"
#include "proto/stage.h"
#include "proto/zsock.h"
#include "sampler/sampler.h"
#include "tokenizer/tokenizer.h"

#define RESEND_MS 500
#define DOORBELL_WAIT_US 2000 /* longest wait for the sampler between looks at the sockets */

_Static_assert(GRETA_SHM_MAX_TOPK <= GRETA_BACKEND_TOPK_MAX, "forward_topk takes every k a top-k row holds");
#define MAX_BATCH_HIST 64

typedef struct worker {
    greta_stage_ctx c;
    greta_engine *eng;
    int32_t eos;
    int32_t n_vocab, n_batch;
    void *rpc;    /* ROUTER */
    void *done;   /* PULL StepDone */
    void *ready;  /* PUSH StepReady */
    void *events; /* PUSH TokenEvent */
    uint64_t step;
    /* per-step scratch */
    int32_t *tokens, *pos, *seq;
    uint8_t *want;
    int32_t *row_slot; /* [n_slots] slot of each logits row */
    uint64_t *queued_ns; /* [n_slots] Submit time (trace: queue_wait), 0 when reported */
    /* hand-off */
    int force_full;      /* GRETA_HANDOFF=full */
    int32_t *row_k;      /* [n_slots] top-k entries of each row (0: full row) */
    int32_t *row_mode;   /* [n_slots] greta_logits_mode of each row */
    int32_t *tk_ids;     /* [n_slots * topk_max] reduction scratch */
    float *tk_vals;      /* [n_slots * topk_max] */
    float *tk_lse;       /* [n_slots] */
    /* stats */
    uint64_t requests, steps, tokens_out;
    uint32_t max_batch;
    uint64_t batch_hist[MAX_BATCH_HIST];
    uint64_t rows_full, rows_reduced;
    uint64_t mixed_steps; /* steps with a prompt chunk and generating slots' tokens */
    uint64_t handoffs;   /* round trips timed; the last ones are in the ring */
    uint32_t handoff_ring[GRETA_MSG_MAX_HANDOFF_SAMPLES]; /* ns, [handoffs % size] is the oldest when full */
    uint32_t handoff_out[GRETA_MSG_MAX_HANDOFF_SAMPLES];  /* Stats scratch: oldest first */
} worker;

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static greta_shm_slot *slot_at(worker *w, uint32_t i)
{
    return greta_shm_slot_at(w->c.shm, i);
}

static uint32_t n_slots(worker *w)
{
    return greta_shm_hdr(w->c.shm)->n_slots;
}

static void finish(worker *w, uint32_t i, int reason)
{
    greta_shm_slot *sl = slot_at(w, i);
    atomic_store(&sl->finish_reason, (uint32_t)reason);
    atomic_store_explicit(&sl->state, GRETA_SLOT_FINISHED, memory_order_release);
}

static void send_event(worker *w, uint32_t i, uint32_t index, int32_t tok, int finished)
{
    greta_shm_slot *sl = slot_at(w, i);
    Greta__Envelope env;
    Greta__TokenEvent ev = GRETA__TOKEN_EVENT__INIT;
    greta_msg_init(&env, atomic_load(&sl->request_id));
    ev.slot = (int32_t)i;
    ev.index = index;
    ev.token = tok;
    ev.step = w->step;
    ev.batch_size = (int32_t)atomic_load(&sl->batch_size);
    ev.finished = finished;
    env.body_case = GRETA__ENVELOPE__BODY_TOKEN_EVENT;
    env.token_event = &ev;
    greta_zsend(w->events, NULL, 0, &env, NULL); /* a wake-up: the segment is authoritative */
}

/* ---- requests ------------------------------------------------------------------ */

static int find_request(worker *w, uint64_t rid)
{
    for (uint32_t i = 0; i < n_slots(w); i++) {
        greta_shm_slot *sl = slot_at(w, i);
        if (atomic_load(&sl->state) != GRETA_SLOT_FREE && atomic_load(&sl->request_id) == rid)
            return (int)i;
    }
    return -1;
}

static int submit(worker *w, uint64_t rid, const Greta__Submit *s, int *slot_out, int *existing, greta_error *err)
{
    greta_shm_header *h = greta_shm_hdr(w->c.shm);
    int i = find_request(w, rid);
    if (i >= 0) {
        *slot_out = i;
        *existing = 1;
        return GRETA_OK;
    }
    *existing = 0;
    if (s->n_prompt > h->n_ctx)
        return greta_error_set(err, GRETA_ERR_LIMIT, "submit.prompt: %zu tokens do not fit a context of %u",
                               s->n_prompt, h->n_ctx);
    for (size_t k = 0; k < s->n_prompt; k++)
        if (s->prompt[k] >= w->n_vocab)
            return greta_error_set(err, GRETA_ERR_FORMAT, "submit.prompt[%zu]: token %d outside the vocabulary of %d",
                                   k, s->prompt[k], w->n_vocab);
    greta_sampler_params p;
    greta_sampler_params_default(&p);
    const Greta__SamplingParams *sp = s->sampling;
    p.temperature = sp ? sp->temperature : 0.0f;
    p.top_k = sp ? sp->top_k : 0;
    p.top_p = sp && sp->top_p > 0.0f ? sp->top_p : 1.0f;
    p.min_p = sp ? sp->min_p : 0.0f;
    p.repeat_penalty = sp && sp->repeat_penalty > 0.0f ? sp->repeat_penalty : 1.0f;
    p.penalty_last_n = sp ? sp->repeat_last_n : 0;
    p.seed = sp ? sp->seed : 0;
    p.frequency_penalty = sp ? sp->frequency_penalty : 0.0f;
    p.presence_penalty = sp ? sp->presence_penalty : 0.0f;
    p.n_bias = sp ? (uint32_t)sp->n_logit_bias : 0; /* <= GRETA_MSG_MAX_BIAS: checked by greta_msg_unpack */
    for (uint32_t k = 0; k < p.n_bias; k++) {
        if (sp->logit_bias[k]->token >= w->n_vocab)
            return greta_error_set(err, GRETA_ERR_FORMAT,
                                   "submit.sampling.logit_bias[%u].token: %d outside the vocabulary of %d", k,
                                   sp->logit_bias[k]->token, w->n_vocab);
        p.bias[k].token = sp->logit_bias[k]->token;
        p.bias[k].bias = sp->logit_bias[k]->bias;
    }
    int rc = greta_sampler_params_validate(&p, w->n_vocab, err);
    if (rc < 0)
        return greta_error_prefix(err, "submit.sampling");
    /* a free slot, else the oldest finished one whose Finished was delivered */
    int pick = -1;
    for (uint32_t k = 0; k < n_slots(w) && pick < 0; k++)
        if (atomic_load(&slot_at(w, k)->state) == GRETA_SLOT_FREE)
            pick = (int)k;
    for (uint32_t k = 0; k < n_slots(w) && pick < 0; k++)
        if (atomic_load(&slot_at(w, k)->state) == GRETA_SLOT_FINISHED && atomic_load(&slot_at(w, k)->delivered))
            pick = (int)k;
    if (pick < 0)
        return greta_error_set(err, GRETA_ERR_LIMIT, "all %u slots are busy; retry later", n_slots(w));
    greta_shm_slot *sl = slot_at(w, (uint32_t)pick);
    atomic_store(&sl->state, GRETA_SLOT_FREE);
    greta_engine_seq_clear(w->eng, pick, NULL);
    atomic_fetch_add(&sl->generation, 1);
    atomic_store(&sl->request_id, rid);
    sl->client_len = (uint32_t)(s->client.len < GRETA_SHM_CLIENT_LEN ? s->client.len : GRETA_SHM_CLIENT_LEN);
    if (sl->client_len)
        memcpy(sl->client, s->client.data, sl->client_len);
    sl->prompt_len = (uint32_t)s->n_prompt;
    sl->max_tokens = (uint32_t)s->max_tokens;
    greta_handoff_store_params(sl, &p);
    sl->n_stop = (uint32_t)s->n_stop;
    memset(sl->stop, 0, sizeof sl->stop);
    for (size_t k = 0; k < s->n_stop; k++)
        memcpy(sl->stop[k], s->stop[k].data, s->stop[k].len); /* <= 63 bytes: checked by greta_msg_unpack */
    memcpy(greta_shm_tokens(w->c.shm, (uint32_t)pick), s->prompt, s->n_prompt * sizeof(int32_t));
    atomic_store(&sl->n_tokens, (uint32_t)s->n_prompt);
    atomic_store(&sl->finish_reason, 0);
    atomic_store(&sl->batch_size, 0);
    atomic_store(&sl->logits_mode, GRETA_LOGITS_FULL);
    atomic_store(&sl->logits_step, 0);
    atomic_store(&sl->sampled_len, UINT32_MAX);
    atomic_store(&sl->sampled_step, 0);
    atomic_store(&sl->text_tokens, 0);
    atomic_store(&sl->text_offset, 0);
    atomic_store(&sl->stop_hit, 0);
    atomic_store(&sl->delivered, 0);
    atomic_store_explicit(&sl->state, GRETA_SLOT_ACTIVE, memory_order_release);
    w->queued_ns[pick] = w->c.trace ? greta_trace_now_ns() : 0;
    w->requests++;
    *slot_out = pick;
    return GRETA_OK;
}

static void reply(worker *w, const greta_zmsg *m, Greta__Envelope *env)
{
    greta_zsend(w->rpc, m->rid, m->rid_len, env, NULL);
}

static void handle_rpc(worker *w, greta_zmsg *m)
{
    if (!m->env) {
        greta_stage_reject(&w->c, w->rpc, m->rid, m->rid_len, m->request_id, m->err.code, m->err.msg);
        return;
    }
    Greta__Envelope env;
    greta_msg_init(&env, m->request_id);
    Greta__Ack ack = GRETA__ACK__INIT;
    greta_error err = {0};
    switch (m->env->body_case) {
    case GRETA__ENVELOPE__BODY_SUBMIT: {
        int slot = -1, existing = 0;
        if (submit(w, m->request_id, m->env->submit, &slot, &existing, &err) < 0) {
            greta_stage_reject(&w->c, w->rpc, m->rid, m->rid_len, m->request_id, err.code, err.msg);
            return;
        }
        Greta__Submitted r = GRETA__SUBMITTED__INIT;
        r.slot = slot;
        r.existing = existing;
        r.prompt_tokens = slot_at(w, (uint32_t)slot)->prompt_len;
        env.body_case = GRETA__ENVELOPE__BODY_SUBMITTED;
        env.submitted = &r;
        reply(w, m, &env);
        if (!existing)
            greta_stage_log(&w->c, "request %016llx: slot %d, %u prompt tokens, max %u",
                            (unsigned long long)m->request_id, slot, r.prompt_tokens,
                            slot_at(w, (uint32_t)slot)->max_tokens);
        return;
    }
    case GRETA__ENVELOPE__BODY_CANCEL:
    case GRETA__ENVELOPE__BODY_RELEASE: {
        int i = find_request(w, m->request_id);
        if (i < 0) {
            greta_stage_reject(&w->c, w->rpc, m->rid, m->rid_len, m->request_id, GRETA_ERR_NOT_FOUND,
                               "unknown request id");
            return;
        }
        greta_shm_slot *sl = slot_at(w, (uint32_t)i);
        if (atomic_load(&sl->state) == GRETA_SLOT_ACTIVE)
            finish(w, (uint32_t)i, GRETA__FINISH_REASON__FINISH_CANCELLED);
        if (m->env->body_case == GRETA__ENVELOPE__BODY_RELEASE) {
            atomic_store(&sl->state, GRETA_SLOT_FREE);
            atomic_store(&sl->request_id, 0);
            greta_engine_seq_clear(w->eng, i, NULL);
        }
        env.body_case = GRETA__ENVELOPE__BODY_ACK;
        env.ack = &ack;
        reply(w, m, &env);
        return;
    }
    case GRETA__ENVELOPE__BODY_STATS_REQUEST: {
        Greta__Stats st = GRETA__STATS__INIT;
        st.stage = GRETA__STAGE__STAGE_WORKER;
        st.pid = (int32_t)getpid();
        st.requests = w->requests;
        st.steps = w->steps;
        st.tokens = w->tokens_out;
        st.max_batch = w->max_batch;
        uint32_t nb = w->max_batch + 1 < MAX_BATCH_HIST ? w->max_batch + 1 : MAX_BATCH_HIST;
        st.n_batch_hist = nb;
        st.batch_hist = w->batch_hist;
        st.rejected = w->c.rejected;
        for (uint32_t i = 0; i < n_slots(w); i++)
            st.active += atomic_load(&slot_at(w, i)->state) == GRETA_SLOT_ACTIVE;
        st.rows_full = w->rows_full;
        st.rows_reduced = w->rows_reduced;
        st.handoffs = w->handoffs;
        st.mixed_steps = w->mixed_steps;
        greta_engine_lookahead(w->eng, &st.lookahead_hits, &st.lookahead_misses);
        const uint64_t cap = GRETA_MSG_MAX_HANDOFF_SAMPLES;
        const uint64_t nh = w->handoffs < cap ? w->handoffs : cap;
        for (uint64_t k = 0; k < nh; k++)
            w->handoff_out[k] = w->handoff_ring[(w->handoffs - nh + k) % cap];
        st.n_handoff_ns = (size_t)nh;
        st.handoff_ns = w->handoff_out;
        env.body_case = GRETA__ENVELOPE__BODY_STATS;
        env.stats = &st;
        reply(w, m, &env);
        return;
    }
    default: {
        char why[96];
        snprintf(why, sizeof why, "the gpu-worker does not take %s messages", greta_msg_body_name(m->env->body_case));
        greta_stage_reject(&w->c, w->rpc, m->rid, m->rid_len, m->request_id, GRETA_ERR_INVALID, why);
        return;
    }
    }
}

/* Serves requests for up to timeout_ms. */
static void serve_rpc(worker *w, int timeout_ms)
{
    greta_zmsg m;
    greta_error err = {0};
    int r = greta_zrecv(w->rpc, 1, &m, timeout_ms, &err);
    while (r == 1) {
        handle_rpc(w, &m);
        greta_zmsg_clear(&m);
        r = greta_zrecv(w->rpc, 1, &m, 0, &err);
    }
}

/* ---- steps ------------------------------------------------------------------------ */

/* Reads what waits on the step socket: junk is rejected, StepDone messages
 * only wake us (the segment's step_done is what counts). */
static void drain_done(worker *w)
{
    greta_zmsg m;
    greta_error err = {0};
    while (greta_zrecv(w->done, 0, &m, 0, &err) == 1) {
        if (!m.env)
            greta_stage_reject(&w->c, NULL, NULL, 0, m.request_id, m.err.code, m.err.msg);
        else if (m.env->body_case != GRETA__ENVELOPE__BODY_STEP_DONE)
            greta_stage_reject(&w->c, NULL, NULL, 0, m.request_id, GRETA_ERR_INVALID,
                               "the step socket takes StepDone messages only");
        greta_zmsg_clear(&m);
    }
}

static void send_ready(worker *w, uint32_t batch_size, const int32_t *slots, size_t n)
{
    Greta__Envelope env;
    Greta__StepReady r = GRETA__STEP_READY__INIT;
    greta_msg_init(&env, 0);
    r.step = w->step;
    r.batch_size = (int32_t)batch_size;
    r.n_slots = n;
    r.slots = (int32_t *)slots;
    env.body_case = GRETA__ENVELOPE__BODY_STEP_READY;
    env.step_ready = &r;
    greta_zsend(w->ready, NULL, 0, &env, NULL);
}

/* Waits until the sampler finished w->step: on the segment's done doorbell,
 * serving requests every DOORBELL_WAIT_US and sending StepReady again every
 * RESEND_MS (a sampler that missed the doorbell). 0, or -1 when stopping. */
static int wait_sampler(worker *w, uint32_t batch_size, const int32_t *slots, size_t n)
{
    greta_shm_header *h = greta_shm_hdr(w->c.shm);
    int64_t resend_at = greta_now_ms() + RESEND_MS;
    while (!greta_stage_stopping()) {
        const uint32_t seen = atomic_load_explicit(&h->done_bell, memory_order_acquire);
        if (atomic_load_explicit(&h->step_done, memory_order_acquire) >= w->step)
            return 0;
        if (greta_shm_wait(&h->done_bell, seen, DOORBELL_WAIT_US) &&
            atomic_load_explicit(&h->step_done, memory_order_acquire) >= w->step)
            return 0;
        zmq_pollitem_t it[2] = {{w->done, 0, ZMQ_POLLIN, 0}, {w->rpc, 0, ZMQ_POLLIN, 0}};
        zmq_poll(it, 2, 0);
        greta_heartbeat_progress(w->c.hb);
        if (it[1].revents & ZMQ_POLLIN)
            serve_rpc(w, 0);
        drain_done(w);
        if (greta_now_ms() >= resend_at) {
            send_ready(w, batch_size, slots, n);
            resend_at = greta_now_ms() + RESEND_MS;
        }
    }
    return -1;
}

/* Writes row r of the step into its slot: the full logits, or the top-k /
 * top-1 with the log-sum-exp, from the backend (logits NULL: w->tk_* hold
 * kmax entries per row) or reduced here from the full row. */
static void hand_over(worker *w, int32_t r, uint32_t batch_size, const float *logits, int32_t kmax)
{
    const uint32_t i = (uint32_t)w->row_slot[r];
    greta_shm_slot *sl = slot_at(w, i);
    greta_shm_topk *tk = greta_shm_topk_row(w->c.shm, i);
    int32_t mode = w->row_mode[r], k = w->row_k[r];
    float lse = 0.0f;
    if (!logits) { /* the backend's reduction: the first k of its kmax are the top-k */
        for (int32_t j = 0; j < k; j++) {
            tk[j].id = w->tk_ids[(size_t)r * (size_t)kmax + (size_t)j];
            tk[j].logit = w->tk_vals[(size_t)r * (size_t)kmax + (size_t)j];
        }
        lse = w->tk_lse[r];
    } else if (mode != GRETA_LOGITS_FULL) {
        greta_error rerr = {0};
        const float *row = logits + (size_t)r * (size_t)w->n_vocab;
        if (greta_handoff_reduce(row, w->n_vocab, k, w->tk_ids, w->tk_vals, &lse, &rerr) == 0) {
            for (int32_t j = 0; j < k; j++) {
                tk[j].id = w->tk_ids[j];
                tk[j].logit = w->tk_vals[j];
            }
        } else {
            mode = GRETA_LOGITS_FULL; /* the sampler reports the bad row */
        }
    }
    if (mode == GRETA_LOGITS_FULL) {
        k = 0;
        memcpy(greta_shm_logits(w->c.shm, i), logits + (size_t)r * (size_t)w->n_vocab,
               (size_t)w->n_vocab * sizeof(float));
        w->rows_full++;
    } else {
        w->rows_reduced++;
    }
    sl->topk_lse = lse;
    atomic_store(&sl->n_topk, (uint32_t)k);
    atomic_store(&sl->logits_mode, (uint32_t)mode);
    atomic_store(&sl->batch_size, batch_size);
    atomic_store_explicit(&sl->logits_step, w->step, memory_order_release); /* last: the row is complete */
}

/* One forward pass over all active slots; 1 if it did work, 0 if idle, -1 stopping. */
static int step(worker *w)
{
    greta_shm *shm = w->c.shm;
    greta_shm_header *h = greta_shm_hdr(shm);
    int32_t nt = 0, rows = 0, batch_slots = 0, prefill = 0, decode_tokens = 0;
    int32_t slots[GRETA_SHM_MAX_SLOTS];
    /* Two passes: first every slot that decodes (one token each), then the
     * prompts in chunks with what is left of n_batch, so a long prompt never
     * holds back the sequences that are generating (chunked prefill). */
    for (int pass = 0; pass < 2; pass++)
        for (uint32_t i = 0; i < n_slots(w) && nt < w->n_batch; i++) {
            greta_shm_slot *sl = slot_at(w, i);
            if (atomic_load_explicit(&sl->state, memory_order_acquire) != GRETA_SLOT_ACTIVE)
                continue;
            int32_t n = (int32_t)atomic_load(&sl->n_tokens);
            int32_t cached = greta_engine_seq_len(w->eng, (int32_t)i);
            /* Feed the prompt in chunks and each generated token on its own,
             * also when a restarted worker rebuilds the KV cache from the
             * history: the rebuild then repeats the original computation
             * step for step, so the GPU backend (whose prefill and decode
             * kernels round differently) gives the same logits as before
             * the restart. */
            int32_t prompt = (int32_t)sl->prompt_len;
            if (prompt <= 0 || prompt > n)
                prompt = n;
            const int decoding = cached < n && cached >= prompt;
            if (decoding != (pass == 0))
                continue; /* the other pass's slot (each slot is looked at once a step) */
            if (atomic_load(&sl->stop_hit)) {
                finish(w, i, GRETA__FINISH_REASON__FINISH_STOP);
                continue;
            }
            if (cached >= n) { /* no logits for the last token: feed it again */
                greta_engine_seq_clear(w->eng, (int32_t)i, NULL);
                cached = 0;
            }
            int32_t need = cached < prompt ? prompt - cached : 1;
            int32_t take = need < w->n_batch - nt ? need : w->n_batch - nt;
            const int32_t *hist = greta_shm_tokens(shm, i);
            for (int32_t k = 0; k < take; k++) {
                w->tokens[nt] = hist[cached + k];
                w->pos[nt] = cached + k;
                w->seq[nt] = (int32_t)i;
                w->want[nt] = 0;
                nt++;
            }
            if (take > 1)
                prefill = 1;
            if (decoding)
                decode_tokens += take;
            if (cached + take == n) {
                w->want[nt - 1] = 1;
                w->row_slot[rows++] = (int32_t)i;
            }
            slots[batch_slots++] = (int32_t)i;
            if (w->queued_ns[i]) {
                GRETA_TRACE_END(w->c.trace, "queue_wait", w->queued_ns[i], atomic_load(&sl->request_id), "slot", i);
                w->queued_ns[i] = 0;
            }
        }
    if (nt == 0)
        return 0;
    w->step++;
    if (prefill && decode_tokens > 0)
        w->mixed_steps++;
    /* how each row goes to the sampler; the backend reduces when it can do
     * it for every row */
    int32_t kmax = 0, all_reduced = rows > 0;
    for (int32_t r = 0; r < rows; r++) {
        greta_sampler_params p;
        greta_handoff_load_params(slot_at(w, (uint32_t)w->row_slot[r]), &p);
        w->row_mode[r] = greta_handoff_mode(&p, w->n_vocab, h->topk_max, w->force_full, &w->row_k[r]);
        all_reduced &= w->row_mode[r] != GRETA_LOGITS_FULL;
        kmax = w->row_k[r] > kmax ? w->row_k[r] : kmax;
    }
    const int on_backend = all_reduced && greta_engine_has_forward_topk(w->eng);
    uint64_t t0 = GRETA_TRACE_BEGIN(w->c.trace);
    greta_batch b = {.n_tokens = nt, .tokens = w->tokens, .pos = w->pos, .seq = w->seq, .want_logits = w->want};
    const float *logits = NULL;
    greta_error err = {0};
    int frc = on_backend ? greta_engine_forward_topk(w->eng, &b, kmax, w->tk_ids, w->tk_vals, w->tk_lse, &err)
                         : greta_engine_forward(w->eng, &b, &logits, &err);
    if (frc < 0) {
        greta_stage_log(&w->c, "step %llu: forward failed: %s; finishing its requests", (unsigned long long)w->step,
                        err.msg);
        for (int32_t k = 0; k < batch_slots; k++)
            finish(w, (uint32_t)slots[k], GRETA__FINISH_REASON__FINISH_ERROR);
        return 1;
    }
    uint64_t rid1 = batch_slots == 1 ? atomic_load(&slot_at(w, (uint32_t)slots[0])->request_id) : 0;
    GRETA_TRACE_END(w->c.trace, prefill ? "prefill" : "decode_step", t0, rid1, "batch", batch_slots);
    w->steps++;
    if ((uint32_t)batch_slots > w->max_batch)
        w->max_batch = (uint32_t)batch_slots;
    w->batch_hist[batch_slots < MAX_BATCH_HIST ? batch_slots : MAX_BATCH_HIST - 1]++;
    if (rows == 0)
        return 1; /* prefill chunks only: nothing to sample yet */

    uint64_t t1 = GRETA_TRACE_BEGIN(w->c.trace);
    for (int32_t r = 0; r < rows; r++)
        hand_over(w, r, (uint32_t)batch_slots, on_backend ? NULL : logits, kmax);
    const uint64_t ready_ns = now_ns();
    atomic_store_explicit(&h->step_ready, w->step, memory_order_release);
    greta_shm_ring(&h->ready_bell, (uint32_t)w->step); /* StepReady itself only if the sampler does not answer */
    if (wait_sampler(w, (uint32_t)batch_slots, w->row_slot, (size_t)rows) < 0)
        return -1;
    const uint64_t rt = now_ns() - ready_ns;
    w->handoff_ring[w->handoffs % GRETA_MSG_MAX_HANDOFF_SAMPLES] = rt < UINT32_MAX ? (uint32_t)rt : UINT32_MAX;
    w->handoffs++;
    GRETA_TRACE_END(w->c.trace, "logits_handoff", t1, rid1, "step", (int64_t)w->step);

    for (int32_t r = 0; r < rows; r++) {
        uint32_t i = (uint32_t)w->row_slot[r];
        greta_shm_slot *sl = slot_at(w, i);
        if (atomic_load(&sl->state) != GRETA_SLOT_ACTIVE)
            continue; /* cancelled while sampling */
        uint32_t n = atomic_load(&sl->n_tokens);
        if (atomic_load_explicit(&sl->sampled_step, memory_order_acquire) != w->step ||
            atomic_load(&sl->sampled_len) != n) {
            greta_stage_log(&w->c, "slot %u: no token for step %llu; asking again next step", i,
                            (unsigned long long)w->step);
            continue;
        }
        int32_t tok = atomic_load(&sl->sampled_token);
        uint32_t gen = n - sl->prompt_len;
        if (tok < 0) {
            finish(w, i, GRETA__FINISH_REASON__FINISH_ERROR);
        } else if (tok == w->eos) {
            finish(w, i, GRETA__FINISH_REASON__FINISH_EOS);
        } else {
            greta_shm_tokens(shm, i)[n] = tok;
            atomic_store_explicit(&sl->n_tokens, n + 1, memory_order_release);
            atomic_store(&sl->last_step, w->step);
            w->tokens_out++;
            gen++;
            if (gen >= sl->max_tokens)
                finish(w, i, GRETA__FINISH_REASON__FINISH_LENGTH);
            else if (n >= h->n_ctx) /* sampled at the last position: nowhere to feed it, as in process */
                finish(w, i, GRETA__FINISH_REASON__FINISH_CONTEXT);
        }
        send_event(w, i, gen ? gen - 1 : 0, tok, atomic_load(&sl->state) != GRETA_SLOT_ACTIVE);
    }
    return 1;
}

/* ---- main ------------------------------------------------------------------------- */

static int open_engine(worker *w, const char *backend, int threads, greta_error *err)
{
    greta_shm_header *h = greta_shm_hdr(w->c.shm);
    greta_engine_params ep;
    greta_engine_params_default(&ep);
    ep.backend = backend && *backend ? backend : (h->backend[0] ? h->backend : "cpu");
    ep.n_ctx = (int32_t)h->n_ctx;
    ep.n_seq = (int32_t)h->n_slots;
    /* n_batch 0: the engine's choice, as in process (`greta run --inproc`,
     * `greta bench`): the backend's prefill chunk (GRETA_PREFILL_CHUNK, else
     * 1024 on the GPU, 512 on the CPU) capped at n_ctx, and at least one
     * decode token of every slot in a step */
    ep.n_batch = 0;
    ep.n_threads = threads >= 0 ? threads : h->n_threads;
    int rc = greta_engine_open(h->model_path, &ep, &w->eng, err);
    if (rc < 0)
        return greta_error_prefix(err, "model '%s'", h->model_path);
    const greta_model_config *cfg = greta_engine_config(w->eng);
    if (cfg->vocab_size != h->n_vocab)
        return greta_error_set(err, GRETA_ERR_STATE, "model vocabulary %u differs from the segment's %u",
                               cfg->vocab_size, h->n_vocab);
    w->n_vocab = (int32_t)cfg->vocab_size;
    w->n_batch = greta_engine_backend_params(w->eng)->n_batch;
    if (w->n_batch < (int32_t)h->n_slots)
        return greta_error_set(err, GRETA_ERR_LIMIT, "n_batch %d is smaller than the %u slots", w->n_batch,
                               h->n_slots);
    greta_tokenizer *tok = NULL;
    w->eos = -1;
    if (greta_tokenizer_create_from_gguf(greta_engine_model(w->eng)->file, &tok, err) == 0) {
        w->eos = greta_tokenizer_eos(tok);
        greta_tokenizer_destroy(&tok);
    }
    size_t nb = (size_t)w->n_batch;
    w->tokens = calloc(nb, sizeof *w->tokens);
    w->pos = calloc(nb, sizeof *w->pos);
    w->seq = calloc(nb, sizeof *w->seq);
    w->want = calloc(nb, 1);
    w->row_slot = calloc(h->n_slots, sizeof *w->row_slot);
    w->queued_ns = calloc(h->n_slots, sizeof *w->queued_ns);
    w->row_k = calloc(h->n_slots, sizeof *w->row_k);
    w->row_mode = calloc(h->n_slots, sizeof *w->row_mode);
    const size_t tk = (size_t)h->n_slots * (h->topk_max ? h->topk_max : 1);
    w->tk_ids = calloc(tk, sizeof *w->tk_ids);
    w->tk_vals = calloc(tk, sizeof *w->tk_vals);
    w->tk_lse = calloc(h->n_slots, sizeof *w->tk_lse);
    if (!w->tokens || !w->pos || !w->seq || !w->want || !w->row_slot || !w->queued_ns || !w->row_k ||
        !w->row_mode || !w->tk_ids || !w->tk_vals || !w->tk_lse)
        return greta_error_set(err, GRETA_ERR_NOMEM, "worker: out of memory");
    greta_stage_log(&w->c, "model %s loaded in %.3f s (%s, %s), %u slots x %u ctx, n_batch %d, eos %d",
                    h->model_path, greta_engine_load_seconds(w->eng), greta_engine_backend_name(w->eng),
                    greta_engine_backend_detail(w->eng), h->n_slots, h->n_ctx, w->n_batch, w->eos);
    greta_stage_log(&w->c, "logits hand-off: %s", w->force_full ? "full rows (GRETA_HANDOFF=full)"
                                                  : greta_engine_has_forward_topk(w->eng)
                                                      ? "reduced where exact (top-k from the backend)"
                                                      : "reduced where exact (top-k on the host)");
    return GRETA_OK;
}

static int open_sockets(worker *w, greta_error *err)
{
    char p[4][GRETA_PATH_MAX];
    const char *names[4] = {GRETA_EP_WORKER, GRETA_EP_STEP_DONE, GRETA_EP_STEP_READY, GRETA_EP_TOKEN_EVENTS};
    for (int i = 0; i < 4; i++)
        if (greta_stage_endpoint(&w->c, names[i], p[i], sizeof p[i], err) < 0)
            return err->code;
    w->rpc = greta_zsock_new(w->c.zctx, ZMQ_ROUTER, err);
    w->done = greta_zsock_new(w->c.zctx, ZMQ_PULL, err);
    w->ready = greta_zsock_new(w->c.zctx, ZMQ_PUSH, err);
    w->events = greta_zsock_new(w->c.zctx, ZMQ_PUSH, err);
    if (!w->rpc || !w->done || !w->ready || !w->events)
        return GRETA_ERR_IO;
    int rc = greta_zsock_bind(w->rpc, p[0], err);
    if (rc == 0)
        rc = greta_zsock_bind(w->done, p[1], err);
    if (rc == 0)
        rc = greta_zsock_connect(w->ready, p[2], err);
    if (rc == 0)
        rc = greta_zsock_connect(w->events, p[3], err);
    return rc;
}

int main(int argc, char **argv)
{
    worker w;
    memset(&w, 0, sizeof w);
    greta_error err = {0};
    int rc = greta_stage_init(&w.c, GRETA_STAGE_WORKER, argc, argv, &err);
    const char *backend = NULL;
    int threads = -1;
    for (int i = 1; rc == 0 && i < argc; i++) {
        if (!argv[i])
            continue;
        if (!strcmp(argv[i], "--backend") && i + 1 < argc)
            backend = argv[++i];
        else if (!strcmp(argv[i], "--threads") && i + 1 < argc)
            threads = atoi(argv[++i]);
        else
            rc = greta_error_set(&err, GRETA_ERR_INVALID, "unknown argument '%s'", argv[i]);
    }
    if (rc == 0)
        rc = greta_handoff_parse(getenv("GRETA_HANDOFF"), &w.force_full, &err);
    if (rc == 0)
        rc = open_engine(&w, backend, threads, &err);
    if (rc == 0)
        rc = open_sockets(&w, &err);
    if (rc == 0) {
        greta_shm_header *h = greta_shm_hdr(w.c.shm);
        uint64_t a = atomic_load(&h->step_ready), b = atomic_load(&h->step_done);
        w.step = a > b ? a : b;
        uint32_t resumed = 0;
        for (uint32_t i = 0; i < h->n_slots; i++)
            resumed += atomic_load(&slot_at(&w, i)->state) == GRETA_SLOT_ACTIVE;
        if (resumed)
            greta_stage_log(&w.c, "resuming %u active sequence(s) from their token histories (step %llu)", resumed,
                            (unsigned long long)w.step);
        greta_heartbeat_ready(w.c.hb);
    }
    while (rc == 0 && !greta_stage_stopping()) {
        int did = step(&w);
        if (did < 0)
            break;
        greta_heartbeat_progress(w.c.hb);
        if (did) {
            serve_rpc(&w, 0);
        } else { /* idle: wait for requests, keep the step socket clean */
            zmq_pollitem_t it[2] = {{w.rpc, 0, ZMQ_POLLIN, 0}, {w.done, 0, ZMQ_POLLIN, 0}};
            zmq_poll(it, 2, 20);
            serve_rpc(&w, 0);
        }
        drain_done(&w);
    }
    if (rc < 0)
        fprintf(stderr, "greta-gpu-worker: %s\n", err.msg);
    else
        greta_stage_log(&w.c, "stopping: %llu requests, %llu steps, %llu tokens, max batch %u, %llu rejected",
                        (unsigned long long)w.requests, (unsigned long long)w.steps,
                        (unsigned long long)w.tokens_out, w.max_batch, (unsigned long long)w.c.rejected);
    greta_zsock_close(&w.rpc);
    greta_zsock_close(&w.done);
    greta_zsock_close(&w.ready);
    greta_zsock_close(&w.events);
    greta_engine_destroy(&w.eng);
    free(w.tokens);
    free(w.pos);
    free(w.seq);
    free(w.want);
    free(w.row_slot);
    free(w.queued_ns);
    free(w.row_k);
    free(w.row_mode);
    free(w.tk_ids);
    free(w.tk_vals);
    free(w.tk_lse);
    greta_stage_fini(&w.c);
    return rc < 0 ? 1 : 0;
}
