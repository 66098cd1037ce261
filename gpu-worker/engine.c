/* engine.c - model + backend + generation loop (see engine.h). */
#include "engine.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cpu_backend.h"
#include "kernels/cpu/ops.h"
#include "kernels/cpu/threads.h"
#ifdef GRETA_HAVE_GPU
#include "gpu_backend.h"
#endif

struct greta_engine {
    greta_model *model;
    greta_backend *backend;
    greta_backend_params bp; /* resolved */
    greta_mem_plan plan;
    double load_s;
    float *logits;     /* [n_batch][vocab] */
    int32_t *history;  /* [n_ctx + 1] token history of the running generation */
    int32_t *pos;      /* [n_batch] batch scratch */
    int32_t *seq;      /* [n_batch] */
};

double greta_now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

void greta_engine_params_default(greta_engine_params *p)
{
    memset(p, 0, sizeof *p);
    p->backend = "cpu";
}

/* ---- backends and memory plan -------------------------------------------------- */

static int find_kind(const char *name, const greta_backend_kind **out, greta_error *err)
{
    if (!name || !strcmp(name, "cpu")) {
        *out = &greta_cpu_backend_kind;
        return GRETA_OK;
    }
    if (!strcmp(name, "gpu")) {
#ifdef GRETA_HAVE_GPU
        *out = &greta_gpu_backend_kind;
        return GRETA_OK;
#else
        return greta_error_set(err, GRETA_ERR_UNSUPPORTED,
                               "backend 'gpu': this greta was not built with GPU support "
                               "(GRETA_GPU=none); rebuild with -DGRETA_GPU=cuda or -DGRETA_GPU=hip, "
                               "or use --backend cpu");
#endif
    }
    return greta_error_set(err, GRETA_ERR_INVALID, "backend '%s' is not one of cpu, gpu", name);
}

int greta_engine_prefill_chunk(const char *backend, int32_t *chunk, greta_error *err)
{
    *chunk = backend && !strcmp(backend, "gpu") ? GRETA_GPU_PREFILL_CHUNK : GRETA_DEFAULT_BATCH;
    const char *e = getenv("GRETA_PREFILL_CHUNK");
    if (!e || !*e)
        return GRETA_OK;
    char *end = NULL;
    errno = 0;
    const long v = strtol(e, &end, 10);
    if (errno || end == e || *end || v < 1 || v > 65535)
        return greta_error_set(err, GRETA_ERR_INVALID,
                               "environment variable GRETA_PREFILL_CHUNK='%.40s': expected a whole number of tokens "
                               "in 1..65535",
                               e);
    *chunk = (int32_t)v;
    return GRETA_OK;
}

static int resolve_params(const greta_model *m, const greta_engine_params *p, greta_backend_params *bp,
                          greta_error *err)
{
    memset(bp, 0, sizeof *bp);
    if (p->n_ctx < 0 || p->n_seq < 0 || p->n_batch < 0 || p->n_threads < 0)
        return greta_error_set(err, GRETA_ERR_INVALID,
                               "negative n_ctx (%d), n_seq (%d), n_batch (%d) or n_threads (%d)",
                               p->n_ctx, p->n_seq, p->n_batch, p->n_threads);
    bp->n_ctx = p->n_ctx;
    if (bp->n_ctx == 0) {
        uint32_t c = m->cfg.context_length;
        bp->n_ctx = (int32_t)(c == 0 || c > GRETA_DEFAULT_CTX_MAX ? GRETA_DEFAULT_CTX_MAX : c);
    }
    bp->n_seq = p->n_seq ? p->n_seq : 1;
    if (p->n_batch) {
        bp->n_batch = p->n_batch;
    } else {
        int32_t chunk;
        const int rc = greta_engine_prefill_chunk(p->backend, &chunk, err);
        if (rc)
            return rc;
        bp->n_batch = bp->n_ctx < chunk ? bp->n_ctx : chunk;
        if (bp->n_batch < bp->n_seq) /* room for one decode token of every sequence */
            bp->n_batch = bp->n_seq;
    }
    bp->n_threads = p->n_threads ? p->n_threads : greta_threads_available();
    bp->cpu_isa = p->cpu_isa;
    return GRETA_OK;
}

int greta_engine_plan_model(const greta_model *m, const greta_engine_params *p,
                            greta_backend_params *resolved, greta_mem_plan *plan, greta_error *err)
{
    const greta_backend_kind *kind = NULL;
    greta_backend_params bp;
    int rc = find_kind(p->backend, &kind, err);
    if (!rc)
        rc = resolve_params(m, p, &bp, err);
    if (!rc)
        rc = kind->plan(m, &bp, plan, err);
    if (rc)
        return rc;
    /* the engine's own buffers: history [n_ctx + 1], pos and seq [n_batch] */
    const uint64_t own = ((uint64_t)bp.n_ctx + 1 + 2 * (uint64_t)bp.n_batch) * sizeof(int32_t);
    plan->scratch_bytes += own;
    plan->total_bytes += own;
    if (resolved)
        *resolved = bp;
    return GRETA_OK;
}

static double gib(uint64_t b)
{
    return (double)b / (1024.0 * 1024.0 * 1024.0);
}

static double mib(uint64_t b)
{
    return (double)b / (1024.0 * 1024.0);
}

int greta_engine_plan_check(const greta_mem_plan *plan, uint64_t available, greta_error *err)
{
    /* Only the CPU backend keeps weights, KV cache and scratch in host RAM;
     * the GPU backend checks those against the GPU's free memory itself and
     * needs host RAM for the logits (and the engine's small buffers). */
    const int on_host = !plan->backend || strcmp(plan->backend, "cpu") == 0;
    const uint64_t need = on_host ? plan->total_bytes : plan->logits_bytes;
    if (available == 0 || need <= available)
        return GRETA_OK;
    return greta_error_set(err, GRETA_ERR_NOMEM,
                           "memory plan: needs %.2f GiB (weights %.2f + KV cache %.2f + scratch %.2f + "
                           "logits %.2f) but only %.2f GiB are available; lower the context length "
                           "(-c) or the number of sequences",
                           gib(plan->total_bytes), gib(plan->weights_bytes), gib(plan->kv_bytes),
                           gib(plan->scratch_bytes), gib(plan->logits_bytes), gib(available));
}

void greta_engine_plan_format(const greta_mem_plan *plan, const greta_backend_params *bp, char *buf,
                              size_t size)
{
    snprintf(buf, size,
             "memory plan (%s backend, n_ctx %d, n_seq %d, n_batch %d):\n"
             "  weights  %10.2f MiB (%s)\n"
             "  KV cache %10.2f MiB (%s)\n"
             "  scratch  %10.2f MiB\n"
             "  logits   %10.2f MiB\n"
             "  total    %10.2f MiB\n",
             plan->backend, bp->n_ctx, bp->n_seq, bp->n_batch, mib(plan->weights_bytes),
             strcmp(plan->backend, "cpu") == 0 ? "mmapped" : "uploaded to the GPU", mib(plan->kv_bytes),
             plan->kv_where, mib(plan->scratch_bytes), mib(plan->logits_bytes),
             mib(plan->total_bytes));
}

uint64_t greta_engine_mem_available(void)
{
    FILE *f = fopen("/proc/meminfo", "r");
    if (!f)
        return 0;
    char line[256];
    uint64_t kb = 0;
    while (fgets(line, sizeof line, f))
        if (sscanf(line, "MemAvailable: %" SCNu64 " kB", &kb) == 1)
            break;
    fclose(f);
    return kb * 1024;
}

/* ---- open / destroy --------------------------------------------------------------- */

void greta_engine_destroy(greta_engine **pe)
{
    if (!pe || !*pe)
        return;
    greta_engine *e = *pe;
    greta_backend_destroy(&e->backend);
    greta_model_close(&e->model);
    free(e->logits);
    free(e->history);
    free(e->pos);
    free(e->seq);
    free(e);
    *pe = NULL;
}

int greta_engine_from_model(greta_model *m, const greta_engine_params *p, greta_engine **out,
                            greta_error *err)
{
    *out = NULL;
    const double t0 = greta_now_s();
    const greta_backend_kind *kind = NULL;
    int rc = find_kind(p->backend, &kind, err);
    if (rc)
        return rc;
    greta_engine *e = calloc(1, sizeof *e);
    if (!e)
        return greta_error_set(err, GRETA_ERR_NOMEM, "engine: out of memory");
    if ((rc = greta_engine_plan_model(m, p, &e->bp, &e->plan, err))) {
        free(e);
        return rc;
    }
    const uint64_t avail = p->mem_available ? p->mem_available : greta_engine_mem_available();
    if ((rc = greta_engine_plan_check(&e->plan, avail, err))) {
        free(e);
        return rc;
    }
    e->logits = malloc(e->plan.logits_bytes ? (size_t)e->plan.logits_bytes : 1);
    e->history = malloc(((size_t)e->bp.n_ctx + 1) * sizeof(int32_t));
    e->pos = malloc((size_t)e->bp.n_batch * sizeof(int32_t));
    e->seq = malloc((size_t)e->bp.n_batch * sizeof(int32_t));
    if (!e->logits || !e->history || !e->pos || !e->seq) {
        const double want = mib(e->plan.logits_bytes);
        greta_engine_destroy(&e); /* e->model is still NULL: the caller keeps m */
        return greta_error_set(err, GRETA_ERR_NOMEM, "engine: out of memory for %.1f MiB of logits", want);
    }
    if ((rc = kind->create(m, &e->bp, &e->backend, err))) {
        greta_engine_destroy(&e);
        return rc;
    }
    e->bp = e->backend->params; /* with the backend's own choices (cpu_isa) */
    e->model = m;
    e->load_s = greta_now_s() - t0;
    *out = e;
    return GRETA_OK;
}

int greta_engine_open(const char *model_path, const greta_engine_params *p, greta_engine **out,
                      greta_error *err)
{
    *out = NULL;
    const double t0 = greta_now_s();
    greta_model *m = NULL;
    int rc = greta_model_open(model_path, &m, err);
    if (rc)
        return rc;
    if ((rc = greta_engine_from_model(m, p, out, err))) {
        greta_model_close(&m);
        return rc;
    }
    (*out)->load_s = greta_now_s() - t0;
    return GRETA_OK;
}

const greta_model *greta_engine_model(const greta_engine *e) { return e->model; }
const greta_model_config *greta_engine_config(const greta_engine *e) { return &e->model->cfg; }
const greta_mem_plan *greta_engine_plan(const greta_engine *e) { return &e->plan; }
const greta_backend_params *greta_engine_backend_params(const greta_engine *e) { return &e->bp; }
const char *greta_engine_backend_name(const greta_engine *e) { return e->backend->ops->name; }
const char *greta_engine_backend_detail(const greta_engine *e) { return e->backend->detail; }

void greta_engine_lookahead(const greta_engine *e, uint64_t *hits, uint64_t *misses)
{
    *hits = *misses = 0;
#ifdef GRETA_HAVE_GPU
    greta_error err = {0};
    if (greta_gpu_backend_is(e->backend) && greta_gpu_backend_lookahead(e->backend, hits, misses, &err) != GRETA_OK)
        *hits = *misses = 0;
#endif
}
greta_backend *greta_engine_backend(greta_engine *e) { return e->backend; }
double greta_engine_load_seconds(const greta_engine *e) { return e->load_s; }

/* ---- one step at a time ------------------------------------------------------------- */

int greta_engine_forward(greta_engine *e, const greta_batch *batch, const float **logits,
                         greta_error *err)
{
    int rc = e->backend->ops->forward(e->backend, batch, e->logits, err);
    if (rc == 0 && logits)
        *logits = e->logits;
    return rc;
}

int greta_engine_has_forward_topk(const greta_engine *e)
{
    return e->backend->ops->forward_topk != NULL;
}

int greta_engine_forward_topk(greta_engine *e, const greta_batch *batch, int32_t k, int32_t *ids, float *vals,
                              float *lse, greta_error *err)
{
    if (!e->backend->ops->forward_topk)
        return greta_error_set(err, GRETA_ERR_UNSUPPORTED, "backend '%s' has no forward_topk",
                               e->backend->ops->name);
    return e->backend->ops->forward_topk(e->backend, batch, k, ids, vals, lse, err);
}

int greta_engine_prefill(greta_engine *e, int32_t seq, const int32_t *tokens, int32_t n,
                         const float **logits, greta_error *err)
{
    if (n < 1 || !tokens)
        return greta_error_set(err, GRETA_ERR_INVALID, "prefill: no tokens");
    if (seq < 0 || seq >= e->bp.n_seq)
        return greta_error_set(err, GRETA_ERR_INVALID, "prefill: sequence %d is outside 0..%d", seq,
                               e->bp.n_seq - 1);
    const int32_t start = greta_engine_seq_len(e, seq);
    if ((int64_t)start + n > e->bp.n_ctx)
        return greta_error_set(err, GRETA_ERR_LIMIT,
                               "prefill: %d tokens after %d held do not fit the context of %d positions",
                               n, start, e->bp.n_ctx);
    for (int32_t done = 0; done < n;) {
        const int32_t k = n - done < e->bp.n_batch ? n - done : e->bp.n_batch;
        for (int32_t i = 0; i < k; i++) {
            e->pos[i] = start + done + i;
            e->seq[i] = seq;
        }
        const greta_batch b = {.n_tokens = k, .tokens = tokens + done, .pos = e->pos, .seq = e->seq};
        int rc = greta_engine_forward(e, &b, logits, err);
        if (rc)
            return rc;
        done += k;
    }
    return GRETA_OK;
}

int greta_engine_seq_clear(greta_engine *e, int32_t seq, greta_error *err)
{
    return e->backend->ops->seq_truncate(e->backend, seq, 0, err);
}

int32_t greta_engine_seq_len(const greta_engine *e, int32_t seq)
{
    return e->backend->ops->seq_len(e->backend, seq);
}

/* ---- the generation loop ----------------------------------------------------------------- */

int greta_engine_generate(greta_engine *e, const greta_generate_params *gp, greta_gen_stats *st,
                          greta_error *err)
{
    memset(st, 0, sizeof *st);
    const int32_t vocab = (int32_t)e->model->cfg.vocab_size;
    if (gp->n_prompt < 1 || !gp->prompt)
        return greta_error_set(err, GRETA_ERR_INVALID, "generate: the prompt is empty (give at least BOS)");
    if (gp->n_predict < 0)
        return greta_error_set(err, GRETA_ERR_INVALID, "generate: n_predict %d is negative", gp->n_predict);
    if (gp->n_prompt > e->bp.n_ctx)
        return greta_error_set(err, GRETA_ERR_LIMIT,
                               "generate: the prompt has %d tokens but the context holds %d (-c)",
                               gp->n_prompt, e->bp.n_ctx);
    int rc = greta_engine_seq_clear(e, gp->seq, err);
    if (rc)
        return rc;
    memcpy(e->history, gp->prompt, (size_t)gp->n_prompt * sizeof(int32_t));
    int32_t n_hist = gp->n_prompt;

    const double t0 = greta_now_s();
    const float *logits = NULL;
    if ((rc = greta_engine_prefill(e, gp->seq, gp->prompt, gp->n_prompt, &logits, err)))
        return rc;
    st->n_prompt = gp->n_prompt;
    double t_prev = greta_now_s();
    st->prompt_s = t_prev - t0;
    st->stop = GRETA_STOP_LENGTH;

    for (int32_t i = 0; i < gp->n_predict; i++) {
        if (i > 0) { /* feed the previous token */
            if (greta_engine_seq_len(e, gp->seq) >= e->bp.n_ctx) {
                st->stop = GRETA_STOP_CONTEXT;
                break;
            }
            const int32_t pos = greta_engine_seq_len(e, gp->seq);
            const greta_batch b = {.n_tokens = 1, .tokens = &e->history[n_hist - 1], .pos = &pos, .seq = &gp->seq};
            if ((rc = greta_engine_forward(e, &b, &logits, err)))
                return rc;
            st->n_decode++;
        }
        int32_t tok;
        if (gp->sample) {
            if ((rc = gp->sample(gp->sample_ctx, logits, vocab, e->history, n_hist, &tok, err)))
                return rc;
            if (tok < 0 || tok >= vocab)
                return greta_error_set(err, GRETA_ERR_INVALID, "generate: sampler returned token %d", tok);
        } else {
            tok = (int32_t)greta_cpu_argmax(logits, vocab);
        }
        const double t = greta_now_s();
        if (i == 0)
            st->ttft_s = t - t0;
        else
            st->decode_s += t - t_prev;
        if (gp->step_seconds)
            gp->step_seconds[i] = i == 0 ? st->ttft_s : t - t_prev;
        t_prev = t;
        if (tok == gp->eos_token) {
            st->stop = GRETA_STOP_EOS;
            break;
        }
        e->history[n_hist++] = tok;
        if (gp->tokens_out)
            gp->tokens_out[st->n_generated] = tok;
        st->n_generated++;
        if (gp->on_token && gp->on_token(gp->token_ctx, tok)) {
            st->stop = GRETA_STOP_CALLBACK;
            break;
        }
    }
    st->total_s = greta_now_s() - t0;
    return GRETA_OK;
}

/* ---- default model ----------------------------------------------------------------------- */

static int file_exists(const char *path)
{
    return access(path, R_OK) == 0;
}

int greta_engine_default_model(char *path, size_t size, greta_error *err)
{
    char models[2048], data[2048];
    const char *env = getenv("GRETA_MODEL_DIR");
    const char *home = getenv("HOME");
    if (env && *env)
        snprintf(models, sizeof models, "%s", env);
    else
        snprintf(models, sizeof models, "%s/.cache/greta/models", home && *home ? home : ".");
    env = getenv("GRETA_TESTDATA");
    if (env && *env)
        snprintf(data, sizeof data, "%s", env);
    else
        snprintf(data, sizeof data, "%s/../shared/testdata", GRETA_SOURCE_DIR);
    const char *dirs[2] = {models, data};
    for (int i = 0; i < 2; i++) {
        int n = snprintf(path, size, "%s/%s", dirs[i], GRETA_DEFAULT_MODEL);
        if (n > 0 && (size_t)n < size && file_exists(path))
            return GRETA_OK;
    }
    if (size)
        path[0] = '\0';
    return greta_error_set(err, GRETA_ERR_NOT_FOUND,
                           "no model given (-m) and the default model %s is not in %s (GRETA_MODEL_DIR) "
                           "nor in %s (GRETA_TESTDATA); get it with deploy/fetch-testdata.sh, "
                           "or pass -m MODEL",
                           GRETA_DEFAULT_MODEL, models, data);
}
