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
 * step S; it is answered with StepDone{S} once S is sampled. While steps
 * come fast (a GPU decode stream: at most GRETA_SHM_SPIN_STREAM_US apart) it
 * waits for the next one spinning, up to twice the last interval
 * (greta_shm_spin_budget), instead of sleeping on the doorbell: a futex
 * wake-up cost tens of microseconds per token, up to 3% of a 2.4 ms step.
 *
 * A slot's row is the full logits (logits_mode FULL: greta_sampler_sample)
 * or, where the worker reduced it (TOP1/TOPK, proto/handoff.h), n_topk
 * {id, logit} entries of the slot's top-k row and topk_lse
 * (greta_sampler_sample_reduced); both give the same token.
 *
 * Rows in parallel: a step with at least PARALLEL_MIN_ROWS full rows (the
 * expensive ones: a draw over the whole vocabulary) is sampled on the thread
 * pool of kernels/cpu/threads.h, one greta_sampler context ("lane") per pool
 * thread (at most MAX_LANES, no more than the CPUs this process may use); each row's token depends only on the row,
 * so the tokens are those of one thread. The results are published by the
 * main thread in slot order, as before.
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

#include "kernels/cpu/threads.h"
#include "proto/handoff.h"
#include "proto/msg.h"
#include "proto/stage.h"
#include "proto/zsock.h"
#include "sampler.h"

#define IDLE_WAIT_US 50000 /* longest sleep on the doorbell between looks at the socket */

#define MAX_LANES 8
#define PARALLEL_MIN_ROWS 4 /* full rows in a step before the pool is used */

struct sampler_stage;

/* What one thread samples with: its own work buffers. */
typedef struct lane {
    greta_sampler *smp;
    int32_t *tk_ids; /* [topk_max] a reduced row, as the sampler library takes it */
    float *tk_vals;  /* [topk_max] */
    uint64_t reduced;
    struct sampler_stage *s;
} lane;

/* One row of a step. */
typedef struct row_job {
    uint32_t slot, n_tokens;
    uint64_t counter; /* the RNG counter: tokens generated so far */
    int32_t tok;
    int rc;
    uint64_t t0, t1; /* trace span */
    greta_error err;
} row_job;

typedef struct sampler_stage {
    greta_stage_ctx c;
    void *in;  /* PULL: StepReady */
    void *out; /* PUSH: StepDone */
    lane lanes[MAX_LANES]; /* lanes[t]: pool thread t's (0: the main thread) */
    int n_lanes;
    greta_threadpool *pool; /* n_lanes threads */
    row_job *jobs;          /* [n_slots] */
    uint64_t steps, tokens, parallel_steps;
} sampler_stage;

/* Samples one slot from its full or reduced row. */
static int sample_slot(lane *ln, uint32_t i, greta_shm_slot *sl, greta_sampler_state *st, uint32_t n_tokens,
                       int32_t *tok, greta_error *err)
{
    greta_shm *shm = ln->s->c.shm;
    greta_shm_header *h = greta_shm_hdr(shm);
    const uint32_t mode = atomic_load(&sl->logits_mode);
    if (mode == GRETA_LOGITS_FULL)
        return greta_sampler_sample(ln->smp, st, greta_shm_logits(shm, i), greta_shm_tokens(shm, i), n_tokens, tok,
                                    NULL, err);
    if (mode != GRETA_LOGITS_TOPK && mode != GRETA_LOGITS_TOP1)
        return greta_error_set(err, GRETA_ERR_FORMAT, "slot %u: logits_mode %u is not full, top-k or top-1", i, mode);
    const uint32_t n = atomic_load(&sl->n_topk);
    if (n == 0 || n > h->topk_max)
        return greta_error_set(err, GRETA_ERR_FORMAT, "slot %u: n_topk %u outside 1..%u", i, n, h->topk_max);
    const greta_shm_topk *tk = greta_shm_topk_row(shm, i);
    for (uint32_t j = 0; j < n; j++) {
        ln->tk_ids[j] = tk[j].id;
        ln->tk_vals[j] = tk[j].logit;
    }
    ln->reduced++;
    return greta_sampler_sample_reduced(ln->smp, st, ln->tk_ids, ln->tk_vals, n, sl->topk_lse, tok, NULL, err);
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

/* Samples one row of the step with ln's buffers. */
static void run_job(lane *ln, row_job *j)
{
    sampler_stage *s = ln->s;
    greta_shm *shm = s->c.shm;
    greta_shm_slot *sl = greta_shm_slot_at(shm, j->slot);
    j->t0 = GRETA_TRACE_BEGIN(s->c.trace);
    greta_sampler_params p;
    greta_handoff_load_params(sl, &p);
    greta_sampler_state st;
    greta_sampler_state_init(&st, &p, 0);
    st.step = j->counter;
    j->tok = -1;
    if (j->n_tokens == 0 || j->n_tokens > greta_shm_hdr(shm)->n_ctx)
        j->rc = greta_error_set(&j->err, GRETA_ERR_STATE, "slot %u: n_tokens %u outside 1..%u", j->slot, j->n_tokens,
                                greta_shm_hdr(shm)->n_ctx);
    else
        j->rc = sample_slot(ln, j->slot, sl, &st, j->n_tokens, &j->tok, &j->err);
    j->t1 = s->c.trace ? greta_trace_now_ns() : 0;
}

/* greta_task_fn: rows [begin, end) of the step with pool thread t's lane. */
static void run_rows(void *ctx, int64_t begin, int64_t end, int t)
{
    sampler_stage *s = ctx;
    for (int64_t k = begin; k < end; k++)
        run_job(&s->lanes[t], &s->jobs[k]);
}

/* Samples step `step` for every slot whose logits belong to it. */
static void sample_step(sampler_stage *s, uint64_t step)
{
    greta_shm *shm = s->c.shm;
    greta_shm_header *h = greta_shm_hdr(shm);
    size_t n = 0, full = 0;
    for (uint32_t i = 0; i < h->n_slots; i++) {
        greta_shm_slot *sl = greta_shm_slot_at(shm, i);
        if (atomic_load_explicit(&sl->state, memory_order_acquire) != GRETA_SLOT_ACTIVE ||
            atomic_load(&sl->logits_step) != step)
            continue;
        row_job *j = &s->jobs[n++];
        memset(j, 0, sizeof *j);
        j->slot = i;
        j->n_tokens = atomic_load_explicit(&sl->n_tokens, memory_order_acquire);
        j->counter = j->n_tokens >= sl->prompt_len ? j->n_tokens - sl->prompt_len : 0;
        full += atomic_load(&sl->logits_mode) == GRETA_LOGITS_FULL;
    }
    if (s->n_lanes > 1 && full >= PARALLEL_MIN_ROWS) {
        greta_threadpool_run(s->pool, (int64_t)n, run_rows, s);
        s->parallel_steps++;
    } else {
        run_rows(s, 0, (int64_t)n, 0);
    }
    for (size_t k = 0; k < n; k++) { /* publish, in slot order */
        row_job *j = &s->jobs[k];
        greta_shm_slot *sl = greta_shm_slot_at(shm, j->slot);
        if (j->rc < 0) {
            greta_stage_log(&s->c, "slot %u request %016llx: sampling failed: %s", j->slot,
                            (unsigned long long)atomic_load(&sl->request_id), j->err.msg);
            j->tok = -1;
        }
        atomic_store(&sl->sampled_token, j->tok);
        atomic_store(&sl->sampled_len, j->n_tokens);
        atomic_store(&sl->rng_counter, j->counter);
        atomic_store_explicit(&sl->sampled_step, step, memory_order_release);
        if (s->c.trace)
            greta_trace_span(s->c.trace, "sample", j->t0, j->t1, atomic_load(&sl->request_id), "step",
                             (int64_t)step);
    }
    atomic_store_explicit(&h->step_done, step, memory_order_release);
    greta_shm_ring(&h->done_bell, (uint32_t)step);
    s->steps++;
    s->tokens += n;
}

/* The lanes (a sampler context and buffers each) and the pool. */
static int lanes_start(sampler_stage *s, greta_error *err)
{
    greta_shm_header *h = greta_shm_hdr(s->c.shm);
    const int cpus = greta_threads_available();
    s->n_lanes = cpus < MAX_LANES ? cpus : MAX_LANES;
    if ((uint32_t)s->n_lanes > h->n_slots)
        s->n_lanes = (int)h->n_slots;
    if (s->n_lanes < 1)
        s->n_lanes = 1;
    s->jobs = calloc(h->n_slots ? h->n_slots : 1, sizeof *s->jobs);
    if (!s->jobs)
        return greta_error_set(err, GRETA_ERR_NOMEM, "sampler: out of memory");
    const uint32_t tkm = h->topk_max ? h->topk_max : 1;
    for (int k = 0; k < s->n_lanes; k++) {
        lane *ln = &s->lanes[k];
        ln->s = s;
        int rc = greta_sampler_create((int32_t)h->n_vocab, &ln->smp, err);
        if (rc)
            return rc;
        ln->tk_ids = calloc(tkm, sizeof *ln->tk_ids);
        ln->tk_vals = calloc(tkm, sizeof *ln->tk_vals);
        if (!ln->tk_ids || !ln->tk_vals)
            return greta_error_set(err, GRETA_ERR_NOMEM, "sampler: out of memory");
    }
    return greta_threadpool_create(s->n_lanes, &s->pool, err);
}

static void lanes_stop(sampler_stage *s)
{
    greta_threadpool_destroy(&s->pool);
    for (int k = 0; k < MAX_LANES; k++) {
        greta_sampler_destroy(&s->lanes[k].smp);
        free(s->lanes[k].tk_ids);
        free(s->lanes[k].tk_vals);
    }
    free(s->jobs);
    s->jobs = NULL;
}

/* Samples the pending step, if any; 1 when it did. */
static int catch_up(sampler_stage *s)
{
    greta_shm_header *h = greta_shm_hdr(s->c.shm);
    uint64_t ready = atomic_load_explicit(&h->step_ready, memory_order_acquire);
    uint64_t done = atomic_load(&h->step_done);
    if (ready <= done)
        return 0;
    sample_step(s, ready);
    return 1;
}

static int64_t mono_us(void)
{
    return (int64_t)(greta_trace_now_ns() / 1000);
}

/* The step clock: when the last step was sampled and the distance of the
 * last two, for greta_shm_spin_budget. */
typedef struct step_clock {
    int64_t last_us, interval_us;
} step_clock;

static void step_clock_tick(step_clock *k)
{
    const int64_t now = mono_us();
    k->interval_us = k->last_us ? now - k->last_us : 0;
    k->last_us = now;
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
        rc = lanes_start(&s, &err);
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
        lanes_stop(&s);
        greta_zsock_close(&s.in);
        greta_zsock_close(&s.out);
        greta_stage_fini(&s.c);
        return 1;
    }
    greta_stage_log(&s.c, "sampling threads: %d (a step with %d or more full-vocabulary rows is shared out)",
                    s.n_lanes, PARALLEL_MIN_ROWS);

    greta_heartbeat_ready(s.c.hb);
    greta_shm_header *hdr = greta_shm_hdr(s.c.shm);
    step_clock clk = {0, 0};
    while (!greta_stage_stopping()) {
        /* the doorbell first: read it, look for a pending step (also one
         * left by a dead sampler), then wait until it rings: spinning
         * through a fast decode stream's step, else briefly, then asleep */
        const uint32_t seen = atomic_load_explicit(&hdr->ready_bell, memory_order_acquire);
        if (catch_up(&s))
            step_clock_tick(&clk);
        const int spin = greta_shm_spin_budget(clk.last_us ? mono_us() - clk.last_us : -1, clk.interval_us);
        greta_shm_wait_spin(&hdr->ready_bell, seen, spin, IDLE_WAIT_US);
        greta_heartbeat_progress(s.c.hb);
        if (catch_up(&s))
            step_clock_tick(&clk);
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
    uint64_t reduced = 0;
    for (int k = 0; k < s.n_lanes; k++)
        reduced += s.lanes[k].reduced;
    greta_stage_log(&s.c,
                    "stopping: %llu steps (%llu sampled by %d threads), %llu tokens (%llu from reduced rows), "
                    "%llu rejected",
                    (unsigned long long)s.steps, (unsigned long long)s.parallel_steps, s.n_lanes,
                    (unsigned long long)s.tokens, (unsigned long long)reduced, (unsigned long long)s.c.rejected);
    lanes_stop(&s);
    greta_zsock_close(&s.in);
    greta_zsock_close(&s.out);
    greta_stage_fini(&s.c);
    return 0;
}
