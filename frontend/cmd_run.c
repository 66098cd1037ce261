/* cmd_run.c - `greta run`: generate text from a prompt, streaming it.
 *
 *   greta run [--inproc | --instance NAME] [-m MODEL] [-p PROMPT | -f FILE] [-n N]
 *             [-c CTX] [--temp T] [--top-k K] [--top-p P] [--min-p P]
 *             [--repeat-penalty R] [--seed S] [-t THREADS] [--backend cpu|gpu]
 *
 * stdout: the prompt, then the generated text as it comes, then a newline.
 * stderr: model and memory plan, sampling settings, and llama.cpp-style
 * timings at the end.
 *
 * Two modes, same text for the same flags:
 *   pipeline (default)  the request goes to instance NAME (default "default")
 *       when it is up; else a temporary instance with this command's model
 *       (named default-PID when no --instance was given, so concurrent
 *       commands each have their own),
 *       backend, context (-c) and threads (-t) is started and stopped again at
 *       the end, also on Ctrl-C / SIGTERM (frontend/instance.h; its watchdog
 *       covers kill -9). The prompt is encoded by the tokenizer stage, the
 *       sampling flags travel in the Submit, the text deltas are streamed.
 *       With a running instance, -m, -c, -t and --backend must match what it
 *       serves (else an error: nothing is silently ignored). Timings are
 *       measured here: load time = starting the temporary instance (0 for a
 *       running one), prompt eval = Submit to the first token's text (prefill
 *       plus the first sampling and the hops), eval = first token to Finished.
 *   --inproc  every stage runs in this process (model load included).
 *
 * Environment: GRETA_MODEL_DIR / GRETA_TESTDATA locate the default model
 * (engine.h); GRETA_MEM_AVAILABLE (bytes) replaces MemAvailable in the
 * memory check (in process, or before a temporary instance is started).
 *
 * Exit status: 0 ok, 1 runtime failure (model, memory, instance, generation),
 * 2 usage, 128 + signal after Ctrl-C / SIGTERM in pipeline mode.
 */
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "commands.h"
#include "gpu-worker/engine.h"
#include "instance.h"
#include "proto/client.h"
#include "proto/endpoint.h"
#include "proto/msg.h"
#include "proto/shm.h"
#include "sampler/sampler.h"
#include "tokenizer/tokenizer.h"

#define RUN_DEFAULT_N 256
#define RUN_MAX_PROMPT_FILE ((size_t)64 << 20)

static void usage(FILE *out)
{
    fprintf(out,
            "usage: greta run [--inproc | --instance NAME] [-m MODEL] [-p PROMPT | -f FILE] [-n N]\n"
            "                 [-c CTX] [--temp T] [--top-k K] [--top-p P] [--min-p P]\n"
            "                 [--repeat-penalty R] [--seed S] [-t THREADS] [--backend cpu|gpu]\n"
            "  Generates text from PROMPT (default: empty, i.e. BOS alone) and streams it,\n"
            "  through the pipeline instance NAME (default 'default') when it is up, else\n"
            "  through a temporary instance started for this command and stopped after it\n"
            "  (without --instance: its own, default-PID, never shared with another command).\n"
            "  -m MODEL          GGUF model (default: %s from $GRETA_MODEL_DIR, default\n"
            "                    ~/.cache/greta/models, or the test data folder)\n"
            "  -p PROMPT         prompt text; -f FILE reads it from a file\n"
            "  -n N              tokens to generate (default %d; stops early at EOS or a full context)\n"
            "  -c CTX            context length (default: the model's, at most %d)\n"
            "  --temp T          temperature (default 0.8; 0 = greedy)\n"
            "  --top-k K         keep the K most likely tokens (default 40; 0 = off)\n"
            "  --top-p P         nucleus sampling threshold in (0, 1] (default 0.95)\n"
            "  --min-p P         drop tokens below P * p(best) (default 0.05; 0 = off)\n"
            "  --repeat-penalty R  penalty on the last 64 tokens (default 1.0 = off)\n"
            "  --seed S          RNG seed (default: from the clock, printed)\n"
            "  -t THREADS        CPU threads (default: all this process may use)\n"
            "  --backend B       cpu (default) or gpu\n"
            "  --instance NAME   pipeline instance to use or start (default 'default'); a\n"
            "                    running one must match -m, -c, -t and --backend when given\n"
            "  --inproc          run every stage in this process instead of the pipeline\n"
            "Environment: GRETA_MEM_AVAILABLE=BYTES replaces MemAvailable in the memory check\n"
            "(in process, or before a temporary instance is started).\n"
            "Exit status: 0 ok, 1 runtime failure, 2 usage, 128+N after signal N (pipeline).\n",
            GRETA_DEFAULT_MODEL, RUN_DEFAULT_N, GRETA_DEFAULT_CTX_MAX);
}

/* ---- argument parsing ---------------------------------------------------- */

static int parse_i32(const char *flag, const char *s, int32_t lo, int32_t hi, int32_t *out)
{
    char *end;
    errno = 0;
    long v = s ? strtol(s, &end, 10) : 0;
    if (!s || end == s || *end != '\0' || errno || v < lo || v > hi) {
        fprintf(stderr, "greta run: %s needs an integer in %d..%d (got '%s')\n", flag, lo, hi,
                s ? s : "");
        return -1;
    }
    *out = (int32_t)v;
    return 0;
}

static int parse_f32(const char *flag, const char *s, float *out)
{
    char *end;
    errno = 0;
    float v = s ? strtof(s, &end) : 0.0f;
    if (!s || end == s || *end != '\0' || errno || !isfinite(v)) {
        fprintf(stderr, "greta run: %s needs a number (got '%s')\n", flag, s ? s : "");
        return -1;
    }
    *out = v;
    return 0;
}

static int parse_u64(const char *flag, const char *s, uint64_t *out)
{
    char *end;
    errno = 0;
    if (!s || *s == '-' || *s == '\0') {
        fprintf(stderr, "greta run: %s needs a non-negative integer (got '%s')\n", flag, s ? s : "");
        return -1;
    }
    unsigned long long v = strtoull(s, &end, 10);
    if (*end != '\0' || errno) {
        fprintf(stderr, "greta run: %s needs a non-negative integer (got '%s')\n", flag, s);
        return -1;
    }
    *out = v;
    return 0;
}

/* ---- streaming output ------------------------------------------------------ */

typedef struct run_ctx {
    const greta_tokenizer *tok;
    greta_detok_state detok;
    char *buf;       /* [buf_cap] one push's bytes */
    size_t buf_cap;
    greta_sampler *sampler;
    greta_sampler_state sstate;
    int failed;      /* a detok error (reported once) */
} run_ctx;

static int on_token(void *ctx, int32_t token)
{
    run_ctx *r = ctx;
    size_t n = 0;
    greta_error err = {0};
    if (greta_detok_push(r->tok, &r->detok, token, r->buf, r->buf_cap, &n, &err)) {
        fprintf(stderr, "\ngreta run: %s\n", err.msg);
        r->failed = 1;
        return 1;
    }
    fwrite(r->buf, 1, n, stdout);
    fflush(stdout);
    return 0;
}

static int sample(void *ctx, const float *logits, int32_t n_vocab, const int32_t *history,
                  int32_t n_history, int32_t *token, greta_error *err)
{
    run_ctx *r = ctx;
    return greta_sampler_sample(r->sampler, &r->sstate, logits, history, (size_t)n_history, token,
                                NULL, err);
}

static char *read_prompt_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        fprintf(stderr, "greta run: -f %s: %s\n", path, strerror(errno));
        return NULL;
    }
    size_t cap = 4096, n = 0;
    char *buf = malloc(cap);
    while (buf) {
        if (n == cap) {
            if (cap >= RUN_MAX_PROMPT_FILE) {
                fprintf(stderr, "greta run: -f %s: the prompt file is larger than %zu MiB\n", path,
                        RUN_MAX_PROMPT_FILE >> 20);
                free(buf);
                buf = NULL;
                break;
            }
            char *nb = realloc(buf, cap * 2);
            if (!nb) {
                free(buf);
                buf = NULL;
                break;
            }
            buf = nb;
            cap *= 2;
        }
        size_t got = fread(buf + n, 1, cap - n, f);
        n += got;
        if (got == 0) {
            if (ferror(f)) {
                fprintf(stderr, "greta run: -f %s: read error\n", path);
                free(buf);
                buf = NULL;
            }
            break;
        }
    }
    fclose(f);
    if (buf)
        *len = n;
    return buf;
}

/* llama.cpp-style timings; load_s: model load (in process) or instance start. */
static void print_timings(double load_s, const greta_gen_stats *st)
{
    const double load_ms = load_s * 1e3;
    const double p_ms = st->prompt_s * 1e3, d_ms = st->decode_s * 1e3;
    fprintf(stderr, "\n");
    fprintf(stderr, "greta:        load time = %10.2f ms\n", load_ms);
    fprintf(stderr,
            "greta: prompt eval time = %10.2f ms / %5d tokens (%8.2f ms per token, %8.2f tokens per second)\n",
            p_ms, st->n_prompt, st->n_prompt ? p_ms / st->n_prompt : 0.0,
            p_ms > 0 ? st->n_prompt / st->prompt_s : 0.0);
    fprintf(stderr,
            "greta:        eval time = %10.2f ms / %5d runs   (%8.2f ms per token, %8.2f tokens per second)\n",
            d_ms, st->n_decode, st->n_decode ? d_ms / st->n_decode : 0.0,
            d_ms > 0 ? st->n_decode / st->decode_s : 0.0);
    fprintf(stderr,
            "greta:        generated = %10d tokens (%.2f tokens per second after the first; first token after %.2f ms)\n",
            st->n_generated, st->decode_s > 0 ? st->n_decode / st->decode_s : 0.0, st->ttft_s * 1e3);
    fprintf(stderr, "greta:       total time = %10.2f ms / %5d tokens\n", (st->total_s) * 1e3 + load_ms,
            st->n_prompt + st->n_generated);
}

static void print_sampling(const greta_sampler_params *sp)
{
    fprintf(stderr, "greta run: sampling: temp %.3g, top-k %d, top-p %.3g, min-p %.3g, repeat-penalty %.3g, seed %" PRIu64 "\n",
            (double)sp->temperature, sp->top_k, (double)sp->top_p, (double)sp->min_p, (double)sp->repeat_penalty,
            sp->seed);
}

static void print_model(const char *path, const greta_model *m)
{
    fprintf(stderr, "greta run: model %s (%" PRIu32 " layers, dim %" PRIu32 ", vocab %" PRIu32 ")\n", path,
            m->cfg.n_layers, m->cfg.dim, m->cfg.vocab_size);
}

/* What the command line asked for (both modes). */
typedef struct run_opts {
    const char *model_path; /* NULL: default (in process / temporary) or the instance's */
    const char *instance;   /* NULL: "default" */
    int inproc;
    int32_t n_predict;
    greta_engine_params ep; /* n_ctx, n_threads 0 and backend NULL: not given */
    greta_sampler_params sp;
} run_opts;

/* ---- in process --------------------------------------------------------------- */

static int run_inproc(run_opts *o, const char *text, size_t text_len)
{
    greta_error err = {0};
    const char *model_path = o->model_path;
    char default_path[4096];
    if (!model_path) {
        if (greta_engine_default_model(default_path, sizeof default_path, &err)) {
            fprintf(stderr, "greta run: %s\n", err.msg);
            return 1;
        }
        model_path = default_path;
    }
    greta_engine_params ep = o->ep;
    greta_sampler_params sp = o->sp;

    int status = 1;
    greta_engine *e = NULL;
    greta_tokenizer *tok = NULL;
    greta_sampler *sampler = NULL;
    int32_t *ids = NULL;
    run_ctx r = {0};

    if (greta_engine_open(model_path, &ep, &e, &err)) {
        fprintf(stderr, "greta run: %s\n", err.msg);
        goto done;
    }
    const greta_model *m = greta_engine_model(e);
    const greta_backend_params *bp = greta_engine_backend_params(e);
    char plan[1024];
    greta_engine_plan_format(greta_engine_plan(e), bp, plan, sizeof plan);
    print_model(model_path, m);
    fprintf(stderr, "greta run: backend %s (%s)\n%s", greta_engine_backend_name(e),
            greta_engine_backend_detail(e), plan);
    if (m->cfg.context_length > 0 && (uint32_t)bp->n_ctx > m->cfg.context_length)
        fprintf(stderr, "greta run: note: -c %d is longer than the model's training context (%" PRIu32 ")\n",
                bp->n_ctx, m->cfg.context_length);

    if (greta_tokenizer_create_from_gguf(m->file, &tok, &err) ||
        greta_sampler_create((int32_t)m->cfg.vocab_size, &sampler, &err)) {
        fprintf(stderr, "greta run: %s\n", err.msg);
        goto done;
    }
    if (greta_sampler_params_validate(&sp, (int32_t)m->cfg.vocab_size, &err)) {
        fprintf(stderr, "greta run: %s\n", err.msg);
        status = 2;
        goto done;
    }
    print_sampling(&sp);

    /* encode: the model's default flags (BOS for Llama) */
    size_t cap = greta_tokenizer_max_tokens(text_len) + 2, n_ids = 0;
    ids = malloc(cap * sizeof *ids);
    if (!ids) {
        fprintf(stderr, "greta run: out of memory for the prompt\n");
        goto done;
    }
    if (greta_tokenizer_encode(tok, text, text_len, greta_tokenizer_default_flags(tok), ids, cap, &n_ids, &err)) {
        fprintf(stderr, "greta run: prompt: %s\n", err.msg);
        goto done;
    }
    if (n_ids == 0) {
        fprintf(stderr, "greta run: the prompt is empty and the model adds no BOS token\n");
        goto done;
    }
    if (n_ids > (size_t)bp->n_ctx) {
        fprintf(stderr, "greta run: the prompt has %zu tokens but the context holds %d (-c)\n", n_ids,
                bp->n_ctx);
        goto done;
    }

    r.tok = tok;
    r.sampler = sampler;
    greta_sampler_state_init(&r.sstate, &sp, 0);
    greta_detok_init(&r.detok, text_len > 0 ? GRETA_DECODE_KEEP_SPACE : 0);
    r.buf_cap = greta_detok_max_out(tok);
    r.buf = malloc(r.buf_cap);
    if (!r.buf) {
        fprintf(stderr, "greta run: out of memory\n");
        goto done;
    }

    fwrite(text, 1, text_len, stdout);
    fflush(stdout);
    greta_generate_params gp = {
        .seq = 0,
        .prompt = ids,
        .n_prompt = (int32_t)n_ids,
        .n_predict = o->n_predict,
        .eos_token = greta_tokenizer_eos(tok),
        .sample = sample,
        .sample_ctx = &r,
        .on_token = on_token,
        .token_ctx = &r,
    };
    greta_gen_stats st;
    if (greta_engine_generate(e, &gp, &st, &err)) {
        fprintf(stderr, "\ngreta run: %s\n", err.msg);
        goto done;
    }
    if (r.failed)
        goto done;
    size_t n = 0;
    if (greta_detok_flush(tok, &r.detok, r.buf, r.buf_cap, &n, &err) == 0)
        fwrite(r.buf, 1, n, stdout);
    fputc('\n', stdout);
    fflush(stdout);
    if (st.stop == GRETA_STOP_CONTEXT)
        fprintf(stderr, "greta run: stopped: the context of %d positions is full (-c)\n", bp->n_ctx);
    else if (st.stop == GRETA_STOP_EOS)
        fprintf(stderr, "greta run: stopped at end of text (EOS)\n");
    print_timings(greta_engine_load_seconds(e), &st);
    status = 0;

done:
    free(r.buf);
    free(ids);
    greta_sampler_destroy(&sampler);
    greta_tokenizer_destroy(&tok);
    greta_engine_destroy(&e);
    return status;
}

/* ---- through the pipeline ------------------------------------------------------- */

static volatile sig_atomic_t g_signal; /* the first SIGINT / SIGTERM seen, else 0 */

/* The first signal asks the command to stop (cancel the request, take the
 * temporary instance down); a second one kills it at once (the instance's
 * watchdog still runs `greta down`). */
static void on_signal(int sig)
{
    if (g_signal) {
        signal(sig, SIG_DFL);
        raise(sig);
        return;
    }
    g_signal = sig;
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

typedef struct pipe_stream {
    uint32_t tokens; /* token deltas received */
    double t_first, t_last;
} pipe_stream;

static int on_delta(void *ctx, uint32_t token_index, int32_t token, const char *text, size_t len,
                    int batch_size)
{
    (void)token_index;
    (void)batch_size;
    pipe_stream *ps = ctx;
    if (token >= 0) { /* not the held-back tail of Finished */
        double t = now_s();
        if (ps->tokens++ == 0)
            ps->t_first = t;
        ps->t_last = t;
    }
    if (len) {
        fwrite(text, 1, len, stdout);
        fflush(stdout);
    }
    return g_signal != 0;
}

/* "1 thread", "4 threads" or "all CPUs" (0) */
static void thread_text(int32_t n, char *buf, size_t size)
{
    if (n > 0)
        snprintf(buf, size, "%d thread%s", n, n == 1 ? "" : "s");
    else
        snprintf(buf, size, "all CPUs");
}

/* With a running instance, every flag that shapes it must match it. */
static int check_running(const run_opts *o, const greta_instance *in)
{
    const char *name = greta_instance_name(in);
    if (o->ep.n_ctx && (uint32_t)o->ep.n_ctx != greta_instance_n_ctx(in)) {
        fprintf(stderr,
                "greta run: instance %s has a context of %u, not -c %d (leave out -c, use another --instance, or "
                "--inproc)\n",
                name, greta_instance_n_ctx(in), o->ep.n_ctx);
        return -1;
    }
    if (o->ep.backend && strcmp(o->ep.backend, greta_instance_backend(in))) {
        fprintf(stderr,
                "greta run: instance %s runs the %s backend, not --backend %s (leave out --backend, use another "
                "--instance, or --inproc)\n",
                name, greta_instance_backend(in), o->ep.backend);
        return -1;
    }
    if (o->ep.n_threads && o->ep.n_threads != greta_instance_n_threads(in)) {
        char have[32];
        thread_text(greta_instance_n_threads(in), have, sizeof have);
        fprintf(stderr,
                "greta run: instance %s runs its worker with %s, not -t %d (leave out -t, use another "
                "--instance, or --inproc)\n",
                name, have, o->ep.n_threads);
        return -1;
    }
    return 0;
}

/* The memory plan of a temporary instance (one slot, as in process), checked
 * before anything is started. */
static int plan_temporary(const run_opts *o, const greta_model *m, greta_error *err)
{
    greta_engine_params ep = o->ep;
    ep.n_seq = 1;
    greta_backend_params bp;
    greta_mem_plan plan;
    int rc = greta_engine_plan_model(m, &ep, &bp, &plan, err);
    if (rc < 0)
        return rc;
    if ((rc = greta_engine_plan_check(&plan, ep.mem_available ? ep.mem_available : greta_engine_mem_available(),
                                      err)) < 0)
        return rc;
    char text[1024];
    greta_engine_plan_format(&plan, &bp, text, sizeof text);
    fprintf(stderr, "greta run: backend %s (temporary instance)\n%s", plan.backend, text);
    if (m->cfg.context_length > 0 && (uint32_t)bp.n_ctx > m->cfg.context_length)
        fprintf(stderr, "greta run: note: -c %d is longer than the model's training context (%" PRIu32 ")\n",
                bp.n_ctx, m->cfg.context_length);
    return GRETA_OK;
}

static int run_pipeline(run_opts *o, const char *text, size_t text_len)
{
    greta_error err = {0};
    const char *name = o->instance ? o->instance : "default";
    if (o->ep.n_ctx && (o->ep.n_ctx < 2 || (uint32_t)o->ep.n_ctx > GRETA_SHM_MAX_CTX)) {
        fprintf(stderr, "greta run: -c needs 2..%u positions for the pipeline (got %d; --inproc takes 1)\n",
                GRETA_SHM_MAX_CTX, o->ep.n_ctx);
        return 2;
    }
    int up = greta_instance_is_up(name, &err);
    if (up < 0) {
        fprintf(stderr, "greta run: %s\n", err.msg);
        return 1;
    }

    struct sigaction sa, old_int, old_term;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal; /* no SA_RESTART: waits return early */
    sigemptyset(&sa.sa_mask);
    g_signal = 0;
    sigaction(SIGINT, &sa, &old_int);
    sigaction(SIGTERM, &sa, &old_term);

    int status = 1;
    greta_model *m = NULL;
    greta_tokenizer *tok = NULL;
    greta_instance *in = NULL;
    greta_client *c = NULL;
    int32_t *ids = NULL;
    uint64_t rid = 0;
    int submitted = 0;
    char default_path[4096];
    const char *model_arg = o->model_path; /* -m, or the default model of a temporary instance */
    double load_s = 0.0;

    /* the model: the one a temporary instance would load, else the running one's */
    if (!up) {
        const char *path = o->model_path;
        if (!path) {
            if (greta_engine_default_model(default_path, sizeof default_path, &err)) {
                fprintf(stderr, "greta run: %s\n", err.msg);
                goto done;
            }
            path = default_path;
            model_arg = path;
        }
        if (greta_model_open(path, &m, &err)) {
            fprintf(stderr, "greta run: %s\n", err.msg);
            goto done;
        }
        print_model(path, m);
        if (plan_temporary(o, m, &err) < 0) {
            fprintf(stderr, "greta run: %s\n", err.msg);
            goto done;
        }
        if (greta_sampler_params_validate(&o->sp, (int32_t)m->cfg.vocab_size, &err)) {
            fprintf(stderr, "greta run: %s\n", err.msg);
            status = 2;
            goto done;
        }
    }
    greta_instance_opts io = {
        .name = o->instance, /* NULL: "default" if up, else a private temporary one */
        .model = model_arg,
        .slots = 1,
        .log = stderr,
        .backend = o->ep.backend,
        .ctx = o->ep.n_ctx,
        .threads = o->ep.n_threads,
    };
    const double t_load = now_s();
    if (greta_instance_open(&io, &in, &err) < 0) {
        fprintf(stderr, "greta run: %s\n", err.msg);
        goto done;
    }
    if (greta_instance_temporary(in))
        load_s = now_s() - t_load;
    if (g_signal)
        goto done;
    if (!greta_instance_temporary(in)) {
        if (check_running(o, in) < 0) {
            status = 2;
            goto done;
        }
        if (!m) {
            if (greta_model_open(greta_instance_model(in), &m, &err)) {
                fprintf(stderr, "greta run: %s\n", err.msg);
                goto done;
            }
            print_model(greta_instance_model(in), m);
        }
        if (greta_sampler_params_validate(&o->sp, (int32_t)greta_instance_n_vocab(in), &err)) {
            fprintf(stderr, "greta run: %s\n", err.msg);
            status = 2;
            goto done;
        }
    }
    char threads[32];
    thread_text(greta_instance_n_threads(in), threads, sizeof threads);
    fprintf(stderr, "greta run: instance %s (%s): backend %s (%s), context %u, %u slot%s\n", greta_instance_name(in),
            greta_instance_temporary(in) ? "temporary, stops at the end of this command" : "running, reused",
            greta_instance_backend(in), threads, greta_instance_n_ctx(in), greta_instance_n_slots(in),
            greta_instance_n_slots(in) == 1 ? "" : "s");
    print_sampling(&o->sp);

    /* the model's encode flags, as in process: BOS / EOS from its tokenizer keys */
    name = greta_instance_name(in);
    if (greta_tokenizer_create_from_gguf(m->file, &tok, &err) < 0 || greta_client_open(name, &c, &err) < 0) {
        fprintf(stderr, "greta run: %s\n", err.msg);
        goto done;
    }
    const uint32_t flags = greta_tokenizer_default_flags(tok);
    rid = greta_client_request_id();
    size_t n_ids = 0;
    if (greta_client_encode(c, rid, text, text_len, (flags & GRETA_ENCODE_ADD_BOS) != 0, &ids, &n_ids, &err) < 0) {
        fprintf(stderr, "greta run: prompt: %s\n", err.msg);
        goto done;
    }
    if (flags & GRETA_ENCODE_ADD_EOS) {
        int32_t *grown = realloc(ids, (n_ids + 1) * sizeof *ids);
        if (!grown) {
            fprintf(stderr, "greta run: out of memory for the prompt\n");
            goto done;
        }
        ids = grown;
        ids[n_ids++] = greta_tokenizer_eos(tok);
    }
    const uint32_t n_ctx = greta_instance_n_ctx(in);
    if (n_ids == 0) {
        fprintf(stderr, "greta run: the prompt is empty and the model adds no BOS token\n");
        goto done;
    }
    if (n_ids >= n_ctx) {
        fprintf(stderr,
                "greta run: the prompt has %zu tokens and leaves no room in the context of %u (-c; --inproc "
                "generates one token into a full context)\n",
                n_ids, n_ctx);
        goto done;
    }

    fwrite(text, 1, text_len, stdout);
    fflush(stdout);
    greta_gen_stats st;
    memset(&st, 0, sizeof st);
    st.n_prompt = (int32_t)n_ids;
    greta_client_result res;
    memset(&res, 0, sizeof res);
    pipe_stream ps = {0};
    if (o->n_predict > 0) {
        greta_client_request q = {
            .prompt = ids,
            .n_prompt = n_ids,
            .max_tokens = o->n_predict,
            .temperature = o->sp.temperature,
            .top_k = o->sp.top_k,
            .top_p = o->sp.top_p,
            .min_p = o->sp.min_p,
            .repeat_penalty = o->sp.repeat_penalty,
            .repeat_last_n = o->sp.penalty_last_n,
            .seed = o->sp.seed,
            .frequency_penalty = o->sp.frequency_penalty,
            .presence_penalty = o->sp.presence_penalty,
        };
        const double t0 = now_s();
        int rc = greta_client_submit(c, rid, &q, NULL, &err);
        submitted = 1;
        if (rc == 0 && !g_signal)
            rc = greta_client_stream(c, rid, 0, on_delta, &ps, &res, &err);
        const double t_end = now_s();
        if (g_signal)
            goto done;
        if (rc < 0) {
            fprintf(stderr, "\ngreta run: %s\n", err.msg);
            goto done;
        }
        if (res.finish_reason != GRETA__FINISH_REASON__FINISH_LENGTH &&
            res.finish_reason != GRETA__FINISH_REASON__FINISH_EOS &&
            res.finish_reason != GRETA__FINISH_REASON__FINISH_CONTEXT) {
            fprintf(stderr, "\ngreta run: the instance ended the request (%s; see the logs of instance %s)\n",
                    res.finish_reason == GRETA__FINISH_REASON__FINISH_CANCELLED ? "cancelled" : "error", name);
            goto done;
        }
        st.n_generated = (int32_t)res.completion_tokens;
        st.total_s = t_end - t0;
        if (ps.tokens) {
            st.ttft_s = st.prompt_s = ps.t_first - t0;
            st.decode_s = t_end - ps.t_first;
            /* forward passes after the first token, as in process: the one
             * that produced EOS counts, a full context stops before one */
            st.n_decode = (int32_t)res.completion_tokens - 1 +
                          (res.finish_reason == GRETA__FINISH_REASON__FINISH_EOS ? 1 : 0);
        } else {
            st.ttft_s = st.prompt_s = st.total_s;
        }
    }
    fputc('\n', stdout);
    fflush(stdout);
    if (res.finish_reason == GRETA__FINISH_REASON__FINISH_CONTEXT)
        fprintf(stderr, "greta run: stopped: the context of %u positions is full (-c)\n", n_ctx);
    else if (res.finish_reason == GRETA__FINISH_REASON__FINISH_EOS)
        fprintf(stderr, "greta run: stopped at end of text (EOS)\n");
    print_timings(load_s, &st);
    status = 0;

done:
    if (g_signal) {
        fprintf(stderr, "\ngreta run: interrupted (%s)%s\n", g_signal == SIGINT ? "SIGINT" : "SIGTERM",
                in && greta_instance_temporary(in) ? ": stopping the temporary instance" : "");
        status = 128 + g_signal;
    }
    if (c && submitted) {
        greta_error e2 = {0};
        if (status != 0)
            greta_client_cancel(c, rid, &e2);
        greta_client_release(c, rid, &e2);
    }
    free(ids);
    greta_client_close(&c);
    greta_tokenizer_destroy(&tok);
    greta_model_close(&m);
    greta_instance_close(&in);
    sigaction(SIGINT, &old_int, NULL);
    sigaction(SIGTERM, &old_term, NULL);
    return status;
}

/* ---- the command ---------------------------------------------------------------- */

int cmd_run(int argc, char **argv)
{
    run_opts o;
    memset(&o, 0, sizeof o);
    const char *prompt_arg = NULL, *prompt_file = NULL;
    o.n_predict = RUN_DEFAULT_N;
    greta_engine_params_default(&o.ep);
    o.ep.backend = NULL; /* not given: the running instance's, else cpu */
    greta_sampler_params_default(&o.sp);
    o.sp.temperature = 0.8f;
    o.sp.top_k = 40;
    o.sp.top_p = 0.95f;
    o.sp.min_p = 0.05f;
    o.sp.repeat_penalty = 1.0f;
    int have_seed = 0;

    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        int rc = 0;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            return 0;
        }
        if (!strcmp(a, "--inproc")) {
            o.inproc = 1;
            continue;
        }
        if (!v) {
            fprintf(stderr, "greta run: %s needs a value (or is unknown; see greta run --help)\n", a);
            return 2;
        }
        if (!strcmp(a, "-m") || !strcmp(a, "--model")) {
            o.model_path = v;
        } else if (!strcmp(a, "--instance")) {
            o.instance = v;
        } else if (!strcmp(a, "-p") || !strcmp(a, "--prompt")) {
            prompt_arg = v;
        } else if (!strcmp(a, "-f") || !strcmp(a, "--file")) {
            prompt_file = v;
        } else if (!strcmp(a, "-n") || !strcmp(a, "--n-predict")) {
            rc = parse_i32(a, v, 0, 1 << 24, &o.n_predict);
        } else if (!strcmp(a, "-c") || !strcmp(a, "--ctx-size")) {
            rc = parse_i32(a, v, 1, 1 << 24, &o.ep.n_ctx);
        } else if (!strcmp(a, "-t") || !strcmp(a, "--threads")) {
            rc = parse_i32(a, v, 1, 256, &o.ep.n_threads);
        } else if (!strcmp(a, "--temp")) {
            rc = parse_f32(a, v, &o.sp.temperature);
        } else if (!strcmp(a, "--top-k")) {
            rc = parse_i32(a, v, 0, INT32_MAX, &o.sp.top_k);
        } else if (!strcmp(a, "--top-p")) {
            rc = parse_f32(a, v, &o.sp.top_p);
        } else if (!strcmp(a, "--min-p")) {
            rc = parse_f32(a, v, &o.sp.min_p);
        } else if (!strcmp(a, "--repeat-penalty")) {
            rc = parse_f32(a, v, &o.sp.repeat_penalty);
        } else if (!strcmp(a, "--seed")) {
            rc = parse_u64(a, v, &o.sp.seed);
            have_seed = 1;
        } else if (!strcmp(a, "--backend")) {
            o.ep.backend = v;
        } else {
            fprintf(stderr, "greta run: unknown option '%s' (see greta run --help)\n", a);
            return 2;
        }
        if (rc)
            return 2;
        i++;
    }
    if (prompt_arg && prompt_file) {
        fprintf(stderr, "greta run: give -p or -f, not both\n");
        return 2;
    }
    if (o.ep.backend && strcmp(o.ep.backend, "cpu") && strcmp(o.ep.backend, "gpu")) {
        fprintf(stderr, "greta run: --backend must be cpu or gpu (got '%s')\n", o.ep.backend);
        return 2;
    }
    greta_error err = {0};
    if (o.inproc && o.instance) {
        fprintf(stderr, "greta run: --instance is for the pipeline; --inproc uses none (give one of them)\n");
        return 2;
    }
    if (o.instance && greta_instance_check(o.instance, &err) < 0) {
        fprintf(stderr, "greta run: --instance: %s\n", err.msg);
        return 2;
    }
    const char *mem_env = getenv("GRETA_MEM_AVAILABLE");
    if (mem_env && *mem_env && parse_u64("GRETA_MEM_AVAILABLE", mem_env, &o.ep.mem_available))
        return 2;
    if (!have_seed)
        o.sp.seed = (uint64_t)time(NULL);

    /* prompt text */
    char *file_text = NULL;
    const char *text = prompt_arg ? prompt_arg : "";
    size_t text_len = strlen(text);
    if (prompt_file) {
        file_text = read_prompt_file(prompt_file, &text_len);
        if (!file_text)
            return 1;
        text = file_text;
    }
    int status = o.inproc ? run_inproc(&o, text, text_len) : run_pipeline(&o, text, text_len);
    free(file_text);
    return status;
}
