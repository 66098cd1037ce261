/* main.c - the greta-sampler process: chooses every token of the pipeline.
 *
 *   greta-sampler --instance NAME
 *
 * Per step the gpu-worker writes the logits rows of the step's slots into the
 * segment, stores header.step_ready = S and rings the ready doorbell
 * (proto/shm.h). The sampler samples each slot whose logits_step is S
 * (params, history and the RNG counter from the slot), writes sampled_token
 * / sampled_len / sampled_step, stores header.step_done = S and rings the done
 * doorbell. StepReady{S} arrives only when the worker waited RESEND_MS for
 * step S; it is answered with StepDone{S} once S is sampled.
 *
 * A slot's row is the full logits (logits_mode FULL: greta_sampler_sample)
 * or, where the worker reduced it (TOP1/TOPK, proto/handoff.h), n_topk
 * {id, logit} entries of the slot's top-k row and topk_lse
 * (greta_sampler_sample_reduced); both give the same token.
 *
 * Restart rules: the sampler keeps no state of its own. The RNG counter of a
 * draw is the number of tokens the sequence generated so far (n_tokens -
 * prompt_len), so sampling a step again (after a worker or sampler restart)
 * gives the same token. At start, and whenever nothing arrives for a while,
 * it looks at step_ready > step_done in the segment, so a StepReady lost with
 * a dead sampler is not needed.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proto/handoff.h"
#include "proto/msg.h"
#include "proto/stage.h"
#include "proto/zsock.h"
#include "sampler.h"

#define IDLE_WAIT_US 50000 /* longest sleep on the doorbell between looks at the socket */

typedef struct sampler_stage {
    greta_stage_ctx c;
    greta_sampler *smp;
    void *in;   /* PULL: StepReady */
    void *out;  /* PUSH: StepDone */
    int32_t *tk_ids; /* [topk_max] a reduced row, as the sampler library takes it */
    float *tk_vals;  /* [topk_max] */
    uint64_t steps, tokens, reduced;
} sampler_stage;

/* Samples one slot from its full or reduced row. */
static int sample_slot(sampler_stage *s, uint32_t i, greta_shm_slot *sl, greta_sampler_state *st, uint32_t n_tokens,
                       int32_t *tok, greta_error *err)
{
    greta_shm *shm = s->c.shm;
    greta_shm_header *h = greta_shm_hdr(shm);
    const uint32_t mode = atomic_load(&sl->logits_mode);
    if (mode == GRETA_LOGITS_FULL)
        return greta_sampler_sample(s->smp, st, greta_shm_logits(shm, i), greta_shm_tokens(shm, i), n_tokens, tok,
                                    NULL, err);
    if (mode != GRETA_LOGITS_TOPK && mode != GRETA_LOGITS_TOP1)
        return greta_error_set(err, GRETA_ERR_FORMAT, "slot %u: logits_mode %u is not full, top-k or top-1", i, mode);
    const uint32_t n = atomic_load(&sl->n_topk);
    if (n == 0 || n > h->topk_max)
        return greta_error_set(err, GRETA_ERR_FORMAT, "slot %u: n_topk %u outside 1..%u", i, n, h->topk_max);
    const greta_shm_topk *tk = greta_shm_topk_row(shm, i);
    for (uint32_t j = 0; j < n; j++) {
        s->tk_ids[j] = tk[j].id;
        s->tk_vals[j] = tk[j].logit;
    }
    s->reduced++;
    return greta_sampler_sample_reduced(s->smp, st, s->tk_ids, s->tk_vals, n, sl->topk_lse, tok, NULL, err);
}

static void send_done(sampler_stage *s, uint64_t step, const int32_t *slots, const int32_t *toks, size_t n)
{
    Greta__Envelope env;
    Greta__StepDone d = GRETA__STEP_DONE__INIT;
    greta_msg_init(&env, 0);
    d.step = step;
    d.n_slots = n;
    d.slots = (int32_t *)slots;
    d.n_tokens = n;
    d.tokens = (int32_t *)toks;
    env.body_case = GRETA__ENVELOPE__BODY_STEP_DONE;
    env.step_done = &d;
    greta_error err = {0};
    if (greta_zsend(s->out, NULL, 0, &env, &err) < 0)
        greta_stage_log(&s->c, "StepDone %llu not sent: %s", (unsigned long long)step, err.msg);
}

/* Samples step `step` for every slot whose logits belong to it. */
static void sample_step(sampler_stage *s, uint64_t step)
{
    greta_shm *shm = s->c.shm;
    greta_shm_header *h = greta_shm_hdr(shm);
    size_t n = 0;
    for (uint32_t i = 0; i < h->n_slots; i++) {
        greta_shm_slot *sl = greta_shm_slot_at(shm, i);
        if (atomic_load_explicit(&sl->state, memory_order_acquire) != GRETA_SLOT_ACTIVE ||
            atomic_load(&sl->logits_step) != step)
            continue;
        uint64_t t0 = GRETA_TRACE_BEGIN(s->c.trace);
        uint32_t n_tokens = atomic_load_explicit(&sl->n_tokens, memory_order_acquire);
        greta_sampler_params p;
        greta_handoff_load_params(sl, &p);
        greta_sampler_state st;
        greta_sampler_state_init(&st, &p, 0);
        st.step = n_tokens >= sl->prompt_len ? n_tokens - sl->prompt_len : 0;
        uint64_t counter = st.step;
        int32_t tok = -1;
        greta_error err = {0};
        int rc;
        if (n_tokens == 0 || n_tokens > h->n_ctx)
            rc = greta_error_set(&err, GRETA_ERR_STATE, "slot %u: n_tokens %u outside 1..%u", i, n_tokens, h->n_ctx);
        else
            rc = sample_slot(s, i, sl, &st, n_tokens, &tok, &err);
        if (rc < 0) {
            greta_stage_log(&s->c, "slot %u request %016llx: sampling failed: %s", i,
                            (unsigned long long)atomic_load(&sl->request_id), err.msg);
            tok = -1;
        }
        atomic_store(&sl->sampled_token, tok);
        atomic_store(&sl->sampled_len, n_tokens);
        atomic_store(&sl->rng_counter, counter);
        atomic_store_explicit(&sl->sampled_step, step, memory_order_release);
        GRETA_TRACE_END(s->c.trace, "sample", t0, atomic_load(&sl->request_id), "step", (int64_t)step);
        n++;
    }
    atomic_store_explicit(&h->step_done, step, memory_order_release);
    greta_shm_ring(&h->done_bell, (uint32_t)step);
    s->steps++;
    s->tokens += n;
}

/* Samples the pending step, if any. */
static void catch_up(sampler_stage *s)
{
    greta_shm_header *h = greta_shm_hdr(s->c.shm);
    uint64_t ready = atomic_load_explicit(&h->step_ready, memory_order_acquire);
    uint64_t done = atomic_load(&h->step_done);
    if (ready > done)
        sample_step(s, ready);
}

int main(int argc, char **argv)
{
    sampler_stage s;
    memset(&s, 0, sizeof s);
    greta_error err = {0};
    char in_path[GRETA_PATH_MAX], out_path[GRETA_PATH_MAX];
    int rc = greta_stage_init(&s.c, GRETA_STAGE_SAMPLER, argc, argv, &err);
    for (int i = 1; rc == 0 && i < argc; i++)
        if (argv[i])
            rc = greta_error_set(&err, GRETA_ERR_INVALID, "unknown argument '%s'", argv[i]);
    if (rc == 0)
        rc = greta_sampler_create((int32_t)greta_shm_hdr(s.c.shm)->n_vocab, &s.smp, &err);
    if (rc == 0) {
        const uint32_t tkm = greta_shm_hdr(s.c.shm)->topk_max;
        s.tk_ids = calloc(tkm ? tkm : 1, sizeof *s.tk_ids);
        s.tk_vals = calloc(tkm ? tkm : 1, sizeof *s.tk_vals);
        if (!s.tk_ids || !s.tk_vals)
            rc = greta_error_set(&err, GRETA_ERR_NOMEM, "sampler: out of memory");
    }
    if (rc == 0)
        rc = greta_stage_endpoint(&s.c, GRETA_EP_STEP_READY, in_path, sizeof in_path, &err);
    if (rc == 0)
        rc = greta_stage_endpoint(&s.c, GRETA_EP_STEP_DONE, out_path, sizeof out_path, &err);
    if (rc == 0) {
        s.in = greta_zsock_new(s.c.zctx, ZMQ_PULL, &err);
        s.out = s.in ? greta_zsock_new(s.c.zctx, ZMQ_PUSH, &err) : NULL;
        if (!s.out)
            rc = GRETA_ERR_IO;
    }
    if (rc == 0)
        rc = greta_zsock_bind(s.in, in_path, &err);
    if (rc == 0)
        rc = greta_zsock_connect(s.out, out_path, &err);
    if (rc < 0) {
        fprintf(stderr, "greta-sampler: %s\n", err.msg);
        free(s.tk_ids);
        free(s.tk_vals);
        greta_zsock_close(&s.in);
        greta_zsock_close(&s.out);
        greta_sampler_destroy(&s.smp);
        greta_stage_fini(&s.c);
        return 1;
    }

    greta_heartbeat_ready(s.c.hb);
    greta_shm_header *hdr = greta_shm_hdr(s.c.shm);
    while (!greta_stage_stopping()) {
        /* the doorbell first: read it, look for a pending step (also one
         * left by a dead sampler), then sleep until it rings */
        const uint32_t seen = atomic_load_explicit(&hdr->ready_bell, memory_order_acquire);
        catch_up(&s);
        greta_shm_wait(&hdr->ready_bell, seen, IDLE_WAIT_US);
        greta_heartbeat_progress(s.c.hb);
        catch_up(&s);
        greta_zmsg m;
        int r;
        while ((r = greta_zrecv(s.in, 0, &m, 0, &err)) == 1) {
            if (!m.env)
                greta_stage_reject(&s.c, NULL, NULL, 0, m.request_id, m.err.code, m.err.msg);
            else if (m.env->body_case != GRETA__ENVELOPE__BODY_STEP_READY)
                greta_stage_reject(&s.c, NULL, NULL, 0, m.request_id, GRETA_ERR_INVALID,
                                   "the sampler takes StepReady messages only");
            else {
                uint64_t step = m.env->step_ready->step;
                greta_shm_header *h = greta_shm_hdr(s.c.shm);
                if (step == atomic_load(&h->step_done)) {
                    /* asked again (our StepDone was lost): answer from the segment */
                    send_done(&s, step, NULL, NULL, 0);
                } else if (step != atomic_load_explicit(&h->step_ready, memory_order_acquire)) {
                    greta_stage_log(&s.c, "StepReady %llu is stale (step_ready %llu); ignored",
                                    (unsigned long long)step, (unsigned long long)atomic_load(&h->step_ready));
                } else { /* the worker missed our doorbell or we missed its: sample, then answer */
                    catch_up(&s);
                    if (step == atomic_load(&h->step_done))
                        send_done(&s, step, NULL, NULL, 0);
                }
            }
            greta_zmsg_clear(&m);
        }
        if (r < 0)
            greta_stage_log(&s.c, "receive: %s", err.msg);
    }
    greta_stage_log(&s.c, "stopping: %llu steps, %llu tokens (%llu from reduced rows), %llu rejected",
                    (unsigned long long)s.steps, (unsigned long long)s.tokens, (unsigned long long)s.reduced,
                    (unsigned long long)s.c.rejected);
    free(s.tk_ids);
    free(s.tk_vals);
    greta_zsock_close(&s.in);
    greta_zsock_close(&s.out);
    greta_sampler_destroy(&s.smp);
    greta_stage_fini(&s.c);
    return 0;
}
