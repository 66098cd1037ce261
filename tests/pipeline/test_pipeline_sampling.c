/* test_pipeline_sampling.c - sampling parameters and the logits hand-off
 * through the multi-process pipeline, against the in-process engine and
 * sampler library (stories260K, CPU backend, 1 thread).
 *
 *   test_pipeline_sampling GROUP   (one ctest entry per group, each its own instance)
 * groups:
 *   sampling  frequency/presence penalties and logit bias reach the sampler:
 *             the pipeline's tokens equal the libraries' for the same
 *             parameters and seed; bias -inf on the greedy token gives the
 *             runner-up; bad values get an Error naming the field and the
 *             stages keep serving.
 *   handoff   greedy and top-k requests go to the sampler reduced (top-1 /
 *             top-k + log-sum-exp), others whole (Stats counters); the tokens
 *             are the same with GRETA_HANDOFF=full, which reduces nothing; a
 *             bad GRETA_HANDOFF value stops the worker from starting.
 *   bench     `greta bench --pipeline`: same tokens in and out of process,
 *             the JSON fields, an existing instance via --instance.
 *   parallel  six seeded temperature requests at once (full-vocabulary rows,
 *             submitted while the sampler is held, so the worker batches
 *             them): each equals its in-process run, and where this process may
 *             use two or more CPUs the sampler shared steps out to its
 *             threads (its "stopping" log line counts them).
 */
#include <cjson/cJSON.h>
#include <math.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "test_util.h"

#include "gpu-worker/engine.h"
#include "pipeline_fixture.h"
#include "proto/client.h"
#include "proto/msg.h"
#include "sampler/sampler.h"
#include "tokenizer/tokenizer.h"

#define MAX_GEN 96

/* ---- the in-process reference: engine + sampler library ------------------------- */

typedef struct gen_out {
    int32_t ids[MAX_GEN];
    size_t n;
    int eos; /* stopped on EOS (the pipeline: FINISH_EOS) */
} gen_out;

static greta_engine *g_eng;
static greta_sampler *g_smp;
static int32_t g_eos = -1, g_vocab;

static void inproc_open(void)
{
    if (g_eng)
        return;
    greta_error err = {0};
    greta_engine_params ep;
    greta_engine_params_default(&ep);
    ep.n_ctx = 256;
    ep.n_threads = 1;
    if (greta_engine_open(g_model, &ep, &g_eng, &err) < 0)
        fail_msg("engine: %s", err.msg);
    g_vocab = (int32_t)greta_engine_config(g_eng)->vocab_size;
    greta_tokenizer *tok = NULL;
    assert_int_equal(greta_tokenizer_create_from_gguf(greta_engine_model(g_eng)->file, &tok, &err), 0);
    g_eos = greta_tokenizer_eos(tok);
    greta_tokenizer_destroy(&tok);
    assert_int_equal(greta_sampler_create(g_vocab, &g_smp, &err), 0);
}

static void inproc_close(void)
{
    greta_engine_destroy(&g_eng);
    greta_sampler_destroy(&g_smp);
}

/* What the pipeline does for one request: prefill, then sample (full logits,
 * the history so far, RNG counter = tokens generated) and feed each token. */
static void inproc_generate(const int32_t *prompt, size_t n_prompt, int max_tokens, const greta_sampler_params *p,
                            gen_out *out)
{
    inproc_open();
    greta_error err = {0};
    int32_t hist[256];
    assert_true(n_prompt + (size_t)max_tokens <= 256 && max_tokens <= MAX_GEN);
    memcpy(hist, prompt, n_prompt * sizeof *hist);
    size_t len = n_prompt;
    memset(out, 0, sizeof *out);
    const float *logits = NULL;
    assert_int_equal(greta_engine_seq_clear(g_eng, 0, &err), 0);
    assert_int_equal(greta_engine_prefill(g_eng, 0, prompt, (int32_t)n_prompt, &logits, &err), 0);
    greta_sampler_state st;
    greta_sampler_state_init(&st, p, 0);
    for (int i = 0; i < max_tokens; i++) {
        int32_t tok = -1;
        if (greta_sampler_sample(g_smp, &st, logits, hist, len, &tok, NULL, &err) < 0)
            fail_msg("in-process sampling: %s", err.msg);
        if (tok == g_eos) {
            out->eos = 1;
            break;
        }
        hist[len++] = tok;
        out->ids[out->n++] = tok;
        if (i + 1 == max_tokens)
            break;
        const int32_t pos = (int32_t)len - 1, seq = 0;
        const greta_batch b = {.n_tokens = 1, .tokens = &tok, .pos = &pos, .seq = &seq};
        assert_int_equal(greta_engine_forward(g_eng, &b, &logits, &err), 0);
    }
}

/* ---- the pipeline ----------------------------------------------------------------- */

static int on_delta(void *ctx, uint32_t index, int32_t token, const char *text, size_t len, int batch)
{
    gen_out *o = ctx;
    (void)text;
    (void)len;
    (void)batch;
    if (token >= 0) {
        assert_int_equal(index, o->n);
        assert_true(o->n < MAX_GEN);
        o->ids[o->n++] = token;
    }
    return 0;
}

/* Submits req, streams it to the end, releases it. */
static int pipe_generate(greta_client *c, const greta_client_request *req, gen_out *o, greta_error *err)
{
    memset(o, 0, sizeof *o);
    uint64_t rid = greta_client_request_id();
    int rc = greta_client_submit(c, rid, req, NULL, err);
    if (rc < 0)
        return rc;
    greta_client_result res;
    rc = greta_client_stream(c, rid, 0, on_delta, o, &res, err);
    if (rc < 0)
        return rc;
    assert_int_equal(res.completion_tokens, o->n);
    o->eos = res.finish_reason == GRETA__FINISH_REASON__FINISH_EOS;
    return greta_client_release(c, rid, err);
}

static void request_params(const greta_client_request *r, greta_sampler_params *p)
{
    greta_sampler_params_default(p);
    p->temperature = r->temperature;
    p->top_k = r->top_k;
    p->top_p = r->top_p > 0.0f ? r->top_p : 1.0f;
    p->min_p = r->min_p;
    p->repeat_penalty = r->repeat_penalty > 0.0f ? r->repeat_penalty : 1.0f;
    p->penalty_last_n = r->repeat_last_n;
    p->seed = r->seed;
    p->frequency_penalty = r->frequency_penalty;
    p->presence_penalty = r->presence_penalty;
    p->n_bias = (uint32_t)r->n_bias;
    for (size_t i = 0; i < r->n_bias; i++) {
        p->bias[i].token = r->bias[i].token;
        p->bias[i].bias = r->bias[i].bias;
    }
}

static void print_ids(const char *what, const gen_out *o)
{
    fprintf(stderr, "%s (%zu%s):", what, o->n, o->eos ? ", eos" : "");
    for (size_t i = 0; i < o->n; i++)
        fprintf(stderr, " %d", o->ids[i]);
    fprintf(stderr, "\n");
}

/* The pipeline's tokens for req equal the in-process ones; returns them. */
static void expect_same_as_inproc(greta_client *c, const greta_client_request *req, gen_out *pipe, const char *what)
{
    greta_error err = {0};
    if (pipe_generate(c, req, pipe, &err) < 0)
        fail_msg("%s: %s", what, err.msg);
    greta_sampler_params p;
    request_params(req, &p);
    gen_out ref;
    inproc_generate(req->prompt, req->n_prompt, req->max_tokens, &p, &ref);
    if (pipe->n != ref.n || pipe->eos != ref.eos || memcmp(pipe->ids, ref.ids, ref.n * sizeof ref.ids[0])) {
        print_ids("pipeline", pipe);
        print_ids("in-process", &ref);
        fail_msg("%s: the pipeline's tokens differ from the in-process engine + sampler", what);
    }
    fprintf(stderr, "%s: %zu tokens, identical in and out of process\n", what, pipe->n);
}

static int same_ids(const gen_out *a, const gen_out *b)
{
    return a->n == b->n && a->eos == b->eos && !memcmp(a->ids, b->ids, a->n * sizeof a->ids[0]);
}

static int32_t *encode(greta_client *c, const char *text, size_t *n)
{
    int32_t *ids = NULL;
    greta_error err = {0};
    if (greta_client_encode(c, greta_client_request_id(), text, strlen(text), 1, &ids, n, &err) < 0)
        fail_msg("encode: %s", err.msg);
    return ids;
}

static void expect_submit_error(greta_client *c, const greta_client_request *req, int code, const char *want)
{
    greta_error err = {0};
    int rc = greta_client_submit(c, greta_client_request_id(), req, NULL, &err);
    fprintf(stderr, "  refused: %d %s\n", rc, err.msg);
    assert_int_equal(rc, code);
    if (!strstr(err.msg, want))
        fail_msg("expected '%s' in '%s'", want, err.msg);
}

/* ---- groups --------------------------------------------------------------------------- */

static void test_sampling(void **state)
{
    (void)state;
    GRETA_TESTDATA_OR_SKIP(model_path, "stories260K.gguf");
    (void)model_path;
    assert_int_equal(greta_up(NULL), 0);
    greta_error err = {0};
    greta_client *c = NULL;
    assert_int_equal(greta_client_open(g_instance, &c, &err), 0);
    size_t n_prompt = 0;
    int32_t *prompt = encode(c, "Once upon a time", &n_prompt);

    /* plain greedy, the baseline the penalties and bias must change */
    greta_client_request plain = {.prompt = prompt, .n_prompt = n_prompt, .max_tokens = 80};
    gen_out g0, o;
    expect_same_as_inproc(c, &plain, &g0, "greedy");
    assert_int_equal(g0.n, 80);

    /* greedy with frequency and presence penalties over the whole history */
    greta_client_request pen = plain;
    pen.frequency_penalty = 0.5f;
    pen.presence_penalty = 0.5f;
    pen.repeat_last_n = -1;
    expect_same_as_inproc(c, &pen, &o, "greedy, frequency 0.5, presence 0.5, window -1");
    assert_false(same_ids(&o, &g0));

    /* seeded: top-p, min-p, all three penalties and a bias list (a token
     * repeated: the biases add up; one banned) */
    const greta_client_bias bias[3] = {{g0.ids[2], 2.0f}, {g0.ids[5], -INFINITY}, {g0.ids[2], 1.0f}};
    greta_client_request full = plain;
    full.temperature = 0.9f;
    full.top_p = 0.95f;
    full.min_p = 0.02f;
    full.repeat_penalty = 1.1f;
    full.repeat_last_n = 64;
    full.frequency_penalty = 0.4f;
    full.presence_penalty = -0.3f;
    full.seed = 1234;
    full.bias = bias;
    full.n_bias = 3;
    expect_same_as_inproc(c, &full, &o, "seeded, top-p/min-p, repeat/frequency/presence, bias");
    for (size_t i = 0; i < o.n; i++)
        assert_int_not_equal(o.ids[i], g0.ids[5]);
    /* the same without the bias differs (the bias reached the sampler) */
    greta_client_request nobias = full;
    nobias.n_bias = 0;
    gen_out o2;
    expect_same_as_inproc(c, &nobias, &o2, "seeded, penalties, no bias");
    assert_false(same_ids(&o, &o2));
    /* top-k sampling with a penalty (full logits despite the top-k) */
    greta_client_request topk = plain;
    topk.temperature = 0.8f;
    topk.top_k = 20;
    topk.repeat_penalty = 1.3f;
    topk.repeat_last_n = 32;
    topk.seed = 9;
    expect_same_as_inproc(c, &topk, &o, "top-k 20, repeat 1.3");

    /* bias -inf on the greedy token: the runner-up of the same logits comes
     * instead, and the banned token never appears */
    inproc_open();
    const float *logits = NULL;
    assert_int_equal(greta_engine_seq_clear(g_eng, 0, &err), 0);
    assert_int_equal(greta_engine_prefill(g_eng, 0, prompt, (int32_t)n_prompt, &logits, &err), 0);
    int32_t second = -1;
    for (int32_t t = 0; t < g_vocab; t++)
        if (t != g0.ids[0] && (second < 0 || logits[t] > logits[second]))
            second = t;
    assert_true(logits[g0.ids[0]] >= logits[second]);
    const greta_client_bias ban[1] = {{g0.ids[0], -INFINITY}};
    greta_client_request banned = plain;
    banned.bias = ban;
    banned.n_bias = 1;
    expect_same_as_inproc(c, &banned, &o, "greedy, greedy token banned");
    fprintf(stderr, "banned %d: first token %d (runner-up %d)\n", g0.ids[0], o.ids[0], second);
    assert_int_equal(o.ids[0], second);
    for (size_t i = 0; i < o.n; i++)
        assert_int_not_equal(o.ids[i], g0.ids[0]);

    /* bad values: an Error naming the field; the stages keep serving */
    greta_client_request bad = plain;
    bad.frequency_penalty = 2.5f;
    expect_submit_error(c, &bad, GRETA_ERR_FORMAT, "submit.sampling.frequency_penalty: 2.5");
    bad = plain;
    bad.presence_penalty = NAN;
    expect_submit_error(c, &bad, GRETA_ERR_FORMAT, "submit.sampling.presence_penalty");
    bad = plain;
    bad.repeat_last_n = -2;
    expect_submit_error(c, &bad, GRETA_ERR_FORMAT, "submit.sampling.repeat_last_n");
    const greta_client_bias oov[1] = {{g_vocab, 1.0f}};
    bad = plain;
    bad.bias = oov;
    bad.n_bias = 1;
    expect_submit_error(c, &bad, GRETA_ERR_FORMAT, "submit.sampling.logit_bias[0].token");
    const greta_client_bias pinf[2] = {{3, 1.0f}, {4, INFINITY}};
    bad.bias = pinf;
    bad.n_bias = 2;
    expect_submit_error(c, &bad, GRETA_ERR_FORMAT, "submit.sampling.logit_bias[1].bias");
    const greta_client_bias neg[1] = {{-1, 1.0f}};
    bad.bias = neg;
    bad.n_bias = 1;
    expect_submit_error(c, &bad, GRETA_ERR_FORMAT, "submit.sampling.logit_bias[0].token: -1");
    greta_client_bias many[GRETA_MSG_MAX_BIAS + 1];
    for (int i = 0; i <= GRETA_MSG_MAX_BIAS; i++)
        many[i] = (greta_client_bias){i, 0.5f};
    bad.bias = many;
    bad.n_bias = GRETA_MSG_MAX_BIAS + 1;
    expect_submit_error(c, &bad, GRETA_ERR_LIMIT, "logit-bias entries"); /* refused by the client */
    { /* ... and by the worker, when a peer sends it anyway */
        Greta__Envelope env;
        Greta__Submit s = GRETA__SUBMIT__INIT;
        Greta__SamplingParams sp = GRETA__SAMPLING_PARAMS__INIT;
        Greta__LogitBias lb[GRETA_MSG_MAX_BIAS + 1], *plb[GRETA_MSG_MAX_BIAS + 1];
        for (int i = 0; i <= GRETA_MSG_MAX_BIAS; i++) {
            greta__logit_bias__init(&lb[i]);
            lb[i].token = i;
            lb[i].bias = 0.5f;
            plb[i] = &lb[i];
        }
        sp.n_logit_bias = GRETA_MSG_MAX_BIAS + 1;
        sp.logit_bias = plb;
        s.n_prompt = n_prompt;
        s.prompt = prompt;
        s.max_tokens = 4;
        s.sampling = &sp;
        greta_msg_init(&env, 0x5151);
        env.body_case = GRETA__ENVELOPE__BODY_SUBMIT;
        env.submit = &s;
        uint8_t *buf = NULL;
        size_t len = 0;
        assert_int_equal(greta_msg_pack(&env, &buf, &len, &err), 0);
        int code = 0;
        char msg[512] = "";
        assert_int_equal(greta_client_send_raw(c, 1, buf, len, 5000, &code, msg, sizeof msg), 1);
        free(buf);
        fprintf(stderr, "  refused: %d %s\n", code, msg);
        assert_int_equal(code, GRETA_ERR_LIMIT);
        assert_non_null(strstr(msg, "submit.sampling.logit_bias: 65 entries"));
    }
    uint64_t rejected = 0;
    assert_int_equal(greta_client_stats(c, 1, NULL, NULL, &rejected, &err), 0);
    assert_true(rejected >= 7);
    expect_same_as_inproc(c, &plain, &o, "greedy again");
    assert_true(same_ids(&o, &g0));
    assert_int_equal(count_in_log("supervisor", "restart stage="), 0);
    free(prompt);
    greta_client_close(&c);
    inproc_close();
}

/* Worker stats around one request: rows handed over whole / reduced. */
typedef struct rows {
    uint64_t full, reduced, handoffs;
} rows;

static rows worker_rows(greta_client *c, greta_client_worker_stats *st)
{
    greta_error err = {0};
    if (greta_client_worker_stats_get(c, st, &err) < 0)
        fail_msg("stats: %s", err.msg);
    return (rows){st->rows_full, st->rows_reduced, st->handoffs};
}

#define N_HANDOFF_REQ 5

/* Runs the hand-off requests on the running instance; checks each against
 * the in-process reference and the row counters (force_full: GRETA_HANDOFF=full). */
static void handoff_requests(gen_out *out, int force_full)
{
    greta_error err = {0};
    greta_client *c = NULL;
    assert_int_equal(greta_client_open(g_instance, &c, &err), 0);
    size_t n_prompt = 0;
    int32_t *prompt = encode(c, "", &n_prompt); /* BOS */
    greta_client_request base = {.prompt = prompt, .n_prompt = n_prompt, .max_tokens = 48};
    greta_client_request req[N_HANDOFF_REQ];
    const int reducible[N_HANDOFF_REQ] = {1, 1, 1, 0, 0};
    for (int i = 0; i < N_HANDOFF_REQ; i++)
        req[i] = base;
    /* 0: greedy (top-1); 1: seeded top-k; 2: top-k with top-p and min-p inside */
    req[1].temperature = 0.8f;
    req[1].top_k = 40;
    req[1].seed = 42;
    req[2].temperature = 1.0f;
    req[2].top_k = 20;
    req[2].top_p = 0.9f;
    req[2].min_p = 0.05f;
    req[2].seed = 7;
    /* 3: top-k larger than a top-k row (64): full; 4: top-p alone: full */
    req[3].temperature = 0.8f;
    req[3].top_k = 100;
    req[3].seed = 42;
    req[4].temperature = 0.8f;
    req[4].top_p = 0.9f;
    req[4].seed = 3;
    static greta_client_worker_stats st; /* 16 KiB of samples */
    uint64_t total_rows = 0;
    for (int i = 0; i < N_HANDOFF_REQ; i++) {
        rows before = worker_rows(c, &st);
        char what[64];
        snprintf(what, sizeof what, "hand-off request %d (%s)", i, force_full ? "full" : "auto");
        expect_same_as_inproc(c, &req[i], &out[i], what);
        rows after = worker_rows(c, &st);
        /* one row per sampled token (an EOS is sampled, not appended) */
        const uint64_t n_rows = out[i].n + (uint64_t)out[i].eos;
        const uint64_t red = after.reduced - before.reduced, full = after.full - before.full;
        fprintf(stderr, "  rows: %llu reduced, %llu full; %u hand-off samples\n", (unsigned long long)red,
                (unsigned long long)full, st.n_handoff_ns);
        assert_int_equal(red, force_full || !reducible[i] ? 0 : n_rows);
        assert_int_equal(full, force_full || !reducible[i] ? n_rows : 0);
        assert_int_equal(after.handoffs - before.handoffs, n_rows);
        total_rows += n_rows;
    }
    /* the round trips were timed: one sample per hand-off, none zero */
    assert_int_equal(st.handoffs, total_rows); /* a fresh instance */
    assert_int_equal(st.n_handoff_ns, st.handoffs < GRETA_CLIENT_HANDOFF_SAMPLES ? st.handoffs
                                                                                 : GRETA_CLIENT_HANDOFF_SAMPLES);
    for (uint32_t i = 0; i < st.n_handoff_ns; i++)
        assert_true(st.handoff_ns[i] > 0);
    free(prompt);
    greta_client_close(&c);
}

static void test_handoff(void **state)
{
    (void)state;
    GRETA_TESTDATA_OR_SKIP(model_path, "stories260K.gguf");
    (void)model_path;
    gen_out autom[N_HANDOFF_REQ], fullm[N_HANDOFF_REQ];
    assert_int_equal(greta_up(NULL), 0);
    assert_int_equal(count_in_log("gpu-worker", "logits hand-off: reduced where exact"), 1);
    handoff_requests(autom, 0);
    greta_down();

    setenv("GRETA_HANDOFF", "full", 1); /* the stages inherit greta up's environment */
    int rc = greta_up(NULL);
    unsetenv("GRETA_HANDOFF");
    assert_int_equal(rc, 0);
    assert_int_equal(count_in_log("gpu-worker", "logits hand-off: full rows (GRETA_HANDOFF=full)"), 1);
    handoff_requests(fullm, 1);
    for (int i = 0; i < N_HANDOFF_REQ; i++)
        assert_true(same_ids(&autom[i], &fullm[i]));
    greta_down();

    setenv("GRETA_HANDOFF", "fastest", 1);
    rc = greta_up(NULL);
    unsetenv("GRETA_HANDOFF");
    assert_int_equal(rc, 1);
    assert_true(count_in_log("gpu-worker", "GRETA_HANDOFF: 'fastest' is not 'auto' or 'full'") >= 1);
    inproc_close();
}

/* ---- greta bench --pipeline ------------------------------------------------------------ */

static cJSON *read_json(const char *path)
{
    size_t n;
    char *text = greta_read_file(path, &n);
    if (!text)
        fail_msg("%s: not written", path);
    cJSON *root = cJSON_Parse(text);
    free(text);
    if (!root)
        fail_msg("%s: not JSON", path);
    return root;
}

static double num(const cJSON *o, const char *key)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    if (!cJSON_IsNumber(v))
        fail_msg("JSON: no number '%s'", key);
    return v->valuedouble;
}

/* Runs bench --pipeline with `args` into `json`; the "pipeline" object. */
static cJSON *bench(const char *args, const char *json, cJSON **root)
{
    unlink(json);
    assert_int_equal(run_cmd("%s bench --pipeline %s --json %s", g_greta_bin, args, json), 0);
    *root = read_json(json);
    cJSON *pj = cJSON_GetObjectItemCaseSensitive(*root, "pipeline");
    assert_non_null(pj);
    /* the fields every run has */
    assert_true(cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(pj, "tokens_identical")));
    const cJSON *in = cJSON_GetObjectItemCaseSensitive(pj, "inproc");
    const cJSON *pp = cJSON_GetObjectItemCaseSensitive(pj, "pipeline");
    assert_true(num(in, "tokens_per_s_mean") > 0 && num(pp, "tokens_per_s_mean") > 0);
    const double ovh = num(pj, "overhead_pct");
    const double want = (num(in, "tokens_per_s_mean") / num(pp, "tokens_per_s_mean") - 1) * 100;
    assert_true(fabs(ovh - want) < 1e-6 * fmax(1, fabs(want)));
    assert_true(num(pj, "handoff_us_p50") > 0 && num(pj, "handoff_us_p99") >= num(pj, "handoff_us_p50"));
    const int n_gen = (int)num(pj, "n_generated");
    assert_int_equal(cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(pj, "tokens")), n_gen);
    /* one hand-off per sampled token of every timed repetition */
    const int r = (int)num(cJSON_GetObjectItemCaseSensitive(*root, "flags"), "r");
    assert_int_equal((int)num(pj, "handoff_samples"), r * n_gen);
    assert_int_equal((int)(num(pj, "handoff_rows_reduced") + num(pj, "handoff_rows_full")), r * n_gen);
    /* the CPU backend takes no step ahead (the GPU's: test_bench_gpu) */
    assert_true(num(pj, "lookahead_hits") == 0 && num(pj, "lookahead_misses") == 0);
    assert_non_null(cJSON_GetObjectItemCaseSensitive(*root, "commit"));
    assert_non_null(cJSON_GetObjectItemCaseSensitive(*root, "machine"));
    return pj;
}

static void tokens_of(const cJSON *pj, int32_t *ids, int n)
{
    const cJSON *t = cJSON_GetObjectItemCaseSensitive(pj, "tokens");
    assert_int_equal(cJSON_GetArraySize(t), n);
    for (int i = 0; i < n; i++)
        ids[i] = cJSON_GetArrayItem(t, i)->valueint;
}

static void test_bench(void **state)
{
    (void)state;
    GRETA_TESTDATA_OR_SKIP(model_path, "stories260K.gguf");
    (void)model_path;
    GRETA_TESTDATA_OR_SKIP(greedy_path, "stories260K-greedy.json");
    cJSON *gref = read_json(greedy_path);
    const cJSON *gids = cJSON_GetObjectItemCaseSensitive(gref, "ids"); /* BOS, then the greedy tokens */
    enum { N = 24 };
    const char *dir = greta_test_tmpdir("pipeline_bench");
    char json[4200], args[8192];
    snprintf(json, sizeof json, "%s/bench.json", dir);

    /* a temporary instance: greedy tokens of the reference, all top-1 hand-offs */
    snprintf(args, sizeof args, "-m %s -n %d -r 2 -t 1", g_model, N);
    cJSON *root;
    cJSON *pj = bench(args, json, &root);
    int32_t greedy[N], a[N], b[N];
    tokens_of(pj, greedy, N);
    for (int i = 0; i < N; i++)
        assert_int_equal(greedy[i], cJSON_GetArrayItem(gids, i + 1)->valueint);
    assert_int_equal((int)num(pj, "handoff_rows_reduced"), 2 * N);
    assert_true(cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(pj, "instance_started")));
    const char *tmp = cJSON_GetObjectItemCaseSensitive(pj, "instance")->valuestring;
    assert_true(!strncmp(tmp, "bench-", 6));
    assert_int_equal(run_cmd("%s status --instance %s >/dev/null 2>&1", g_greta_bin, tmp), 1); /* gone again */
    char tmpdir[GRETA_PATH_MAX];
    greta_error err = {0};
    assert_int_equal(greta_runtime_dir(tmp, tmpdir, sizeof tmpdir, &err), 0);
    assert_int_equal(access(tmpdir, F_OK), -1); /* with its runtime directory */
    cJSON_Delete(root);

    /* a running instance: its model; seeded top-k sampling (reduced rows) */
    assert_int_equal(greta_up("--ctx 40"), 0);
    snprintf(args, sizeof args, "--instance %s -n %d -r 1 --temp 0.8 --top-k 40 --seed 7", g_instance, N);
    pj = bench(args, json, &root);
    assert_string_equal(cJSON_GetObjectItemCaseSensitive(pj, "instance")->valuestring, g_instance);
    assert_false(cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(pj, "instance_started")));
    assert_int_equal((int)num(pj, "handoff_rows_reduced"), N);
    tokens_of(pj, a, N);
    assert_true(memcmp(a, greedy, sizeof a) != 0); /* --temp */
    cJSON_Delete(root);
    snprintf(args, sizeof args, "--instance %s -n %d -r 1 --temp 0.8 --top-k 40 --seed 8", g_instance, N);
    pj = bench(args, json, &root);
    tokens_of(pj, b, N);
    assert_true(memcmp(a, b, sizeof a) != 0); /* --seed */
    cJSON_Delete(root);
    snprintf(args, sizeof args, "--instance %s -n %d -r 1 --temp 0.8 --top-k 100 --seed 7", g_instance, N);
    pj = bench(args, json, &root); /* --top-k: 100 is more than a top-k row holds: full rows */
    assert_int_equal((int)num(pj, "handoff_rows_full"), N);
    cJSON_Delete(root);
    assert_int_equal(run_cmd("%s status --instance %s >/dev/null", g_greta_bin, g_instance), 0); /* still up */

    /* usage and runtime errors */
    assert_int_equal(run_cmd("%s bench --instance %s -n 4", g_greta_bin, g_instance), 2);
    assert_int_equal(run_cmd("%s bench --temp 0.5 -n 4 -m %s", g_greta_bin, g_model), 2);
    assert_int_equal(run_cmd("%s bench --pipeline -p 16 -n 4 -m %s", g_greta_bin, g_model), 2);
    assert_int_equal(run_cmd("%s bench --pipeline --instance %s -m %s -n 4", g_greta_bin, g_instance, g_model), 2);
    assert_int_equal(run_cmd("%s bench --pipeline --instance %s -n 4 --temp -1", g_greta_bin, g_instance), 2);
    assert_int_equal(run_cmd("%s bench --pipeline --instance nosuch-%d -n 4", g_greta_bin, (int)getpid()), 1);
    assert_int_equal(run_cmd("%s bench --pipeline --instance %s -n 39", g_greta_bin, g_instance), 1); /* ctx 40 */
    cJSON_Delete(gref);
}

/* ---- parallel: rows of one step sampled by several threads ------------------------ */

#define PAR_N 6

static void test_parallel(void **state)
{
    (void)state;
    GRETA_TESTDATA_OR_SKIP(model_path, "stories260K.gguf");
    (void)model_path;
    /* the sampler is held (SIGSTOP) below: more than the fixture's 1 s hang timeout on a loaded
     * machine must not get it restarted */
    setenv("GRETA_HANG_TIMEOUT_MS", "10000", 1);
    assert_int_equal(greta_up("--slots 6"), 0);
    greta_error err = {0};
    greta_client *c = NULL;
    assert_int_equal(greta_client_open(g_instance, &c, &err), 0);
    size_t n_prompt = 0;
    int32_t *prompt = encode(c, "Once upon a time", &n_prompt);
    /* all six submitted back to back (one client, no waiting for tokens)
     * while the sampler is held (SIGSTOP): the gpu-worker admits them into
     * slots while it waits for the sampler's answer to its first step, so
     * the steps after it carry all six rows even on a loaded machine, where
     * 90 tokens of one request can be over before the next is submitted;
     * then each is streamed from its first token (the tokenizer keeps a
     * request until it is released). (Holding the gpu-worker instead held
     * the submissions too, until the supervisor restarted it as hung.) */
    greta_shm *shm = attach();
    const int spid = atomic_load(&greta_shm_stage_at(shm, GRETA_STAGE_SAMPLER)->pid);
    assert_true(spid > 0);
    assert_int_equal(kill(spid, SIGSTOP), 0);
    greta_client_request reqs[PAR_N];
    uint64_t rids[PAR_N];
    gen_out outs[PAR_N];
    for (int k = 0; k < PAR_N; k++) {
        reqs[k] = (greta_client_request){.prompt = prompt,
                                         .n_prompt = n_prompt,
                                         .max_tokens = 90,
                                         .temperature = 0.9f,
                                         .seed = 100 + (uint64_t)k};
        rids[k] = greta_client_request_id();
        if (greta_client_submit(c, rids[k], &reqs[k], NULL, &err) < 0) {
            kill(spid, SIGCONT);
            fail_msg("submit %d: %s", k, err.msg);
        }
    }
    usleep(100 * 1000); /* the tokenizer and the gpu-worker take them in meanwhile (hang timeout here: 10 s) */
    kill(spid, SIGCONT);
    greta_shm_detach(&shm);
    for (int k = 0; k < PAR_N; k++) {
        memset(&outs[k], 0, sizeof outs[k]);
        greta_client_result res;
        if (greta_client_stream(c, rids[k], 0, on_delta, &outs[k], &res, &err) < 0 ||
            greta_client_release(c, rids[k], &err) < 0)
            fail_msg("request %d: %s", k, err.msg);
        assert_int_equal(res.completion_tokens, outs[k].n);
        outs[k].eos = res.finish_reason == GRETA__FINISH_REASON__FINISH_EOS;
    }
    greta_client_close(&c);
    int distinct = 0;
    for (int k = 0; k < PAR_N; k++) {
        greta_sampler_params p;
        request_params(&reqs[k], &p);
        gen_out ref;
        inproc_generate(prompt, n_prompt, reqs[k].max_tokens, &p, &ref);
        if (!same_ids(&outs[k], &ref)) {
            print_ids("pipeline", &outs[k]);
            print_ids("in-process", &ref);
            fail_msg("request %d (seed %llu): the pipeline's tokens differ from the in-process ones", k,
                     (unsigned long long)reqs[k].seed);
        }
        distinct += k > 0 && !same_ids(&outs[k], &outs[0]);
    }
    assert_true(distinct > 0); /* the seeds give different samples */
    free(prompt);
    greta_down();
    const int threads_line = count_in_log("sampler", "sampling threads: ");
    assert_int_equal(threads_line, 1);
    if (count_in_log("sampler", "sampling threads: 1 ") == 1) {
        fprintf(stderr, "one CPU for this process: the sampler has one thread, nothing to share out\n");
    } else {
        /* some step had four or more full rows: "(N sampled by T threads)" with N > 0 */
        assert_int_equal(count_in_log("sampler", "(0 sampled by"), 0);
        assert_int_equal(count_in_log("sampler", " sampled by "), 1);
    }
    inproc_close();
}

int main(int argc, char **argv)
{
    g_group = argc > 1 ? argv[1] : "sampling";
    signal(SIGPIPE, SIG_IGN);
    struct CMUnitTest t;
    if (!strcmp(g_group, "sampling"))
        t = (struct CMUnitTest)cmocka_unit_test_setup_teardown(test_sampling, pipeline_setup, pipeline_teardown);
    else if (!strcmp(g_group, "handoff"))
        t = (struct CMUnitTest)cmocka_unit_test_setup_teardown(test_handoff, pipeline_setup, pipeline_teardown);
    else if (!strcmp(g_group, "bench"))
        t = (struct CMUnitTest)cmocka_unit_test_setup_teardown(test_bench, pipeline_setup, pipeline_teardown);
    else if (!strcmp(g_group, "parallel"))
        t = (struct CMUnitTest)cmocka_unit_test_setup_teardown(test_parallel, pipeline_setup, pipeline_teardown);
    else {
        fprintf(stderr, "unknown group '%s'\n", g_group);
        return 2;
    }
    t.name = g_group;
    const struct CMUnitTest tests[] = {t};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
