/* cmd_run.c - `greta run`: generate text from a prompt, streaming it.
 *
 *   greta run [--inproc] [-m MODEL] [-p PROMPT | -f FILE] [-n N] [-c CTX]
 *             [--temp T] [--top-k K] [--top-p P] [--min-p P]
 *             [--repeat-penalty R] [--seed S] [-t THREADS] [--backend cpu|gpu]
 *
 * stdout: the prompt, then the generated text as it comes, then a newline.
 * stderr: model and memory plan, sampling settings, and llama.cpp-style
 * timings at the end. Everything runs in this process (--inproc is the only
 * mode until the pipeline exists; the flag is accepted and changes nothing).
 *
 * Environment: GRETA_MODEL_DIR / GRETA_TESTDATA locate the default model
 * (engine.h); GRETA_MEM_AVAILABLE (bytes) replaces MemAvailable in the
 * memory check.
 *
 * Exit status: 0 ok, 1 runtime failure (model, memory, generation), 2 usage.
 */
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "commands.h"
#include "gpu-worker/engine.h"
#include "sampler/sampler.h"
#include "tokenizer/tokenizer.h"

#define RUN_DEFAULT_N 256
#define RUN_MAX_PROMPT_FILE ((size_t)64 << 20)

static void usage(FILE *out)
{
    fprintf(out,
            "usage: greta run [--inproc] [-m MODEL] [-p PROMPT | -f FILE] [-n N] [-c CTX]\n"
            "                 [--temp T] [--top-k K] [--top-p P] [--min-p P]\n"
            "                 [--repeat-penalty R] [--seed S] [-t THREADS] [--backend cpu|gpu]\n"
            "  Generates text from PROMPT (default: empty, i.e. BOS alone) and streams it.\n"
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
            "  --inproc          run every stage in this process (the only mode for now)\n"
            "Environment: GRETA_MEM_AVAILABLE=BYTES replaces MemAvailable in the memory check.\n"
            "Exit status: 0 ok, 1 runtime failure, 2 usage.\n",
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

static void print_timings(const greta_engine *e, const greta_gen_stats *st)
{
    const double load_ms = greta_engine_load_seconds(e) * 1e3;
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

int cmd_run(int argc, char **argv)
{
    const char *model_path = NULL, *prompt_arg = NULL, *prompt_file = NULL;
    int32_t n_predict = RUN_DEFAULT_N;
    greta_engine_params ep;
    greta_engine_params_default(&ep);
    greta_sampler_params sp;
    greta_sampler_params_default(&sp);
    sp.temperature = 0.8f;
    sp.top_k = 40;
    sp.top_p = 0.95f;
    sp.min_p = 0.05f;
    sp.repeat_penalty = 1.0f;
    int have_seed = 0;

    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        int rc = 0;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            return 0;
        }
        if (!strcmp(a, "--inproc"))
            continue; /* the only mode until the pipeline exists */
        if (!v) {
            fprintf(stderr, "greta run: %s needs a value (or is unknown; see greta run --help)\n", a);
            return 2;
        }
        if (!strcmp(a, "-m") || !strcmp(a, "--model")) {
            model_path = v;
        } else if (!strcmp(a, "-p") || !strcmp(a, "--prompt")) {
            prompt_arg = v;
        } else if (!strcmp(a, "-f") || !strcmp(a, "--file")) {
            prompt_file = v;
        } else if (!strcmp(a, "-n") || !strcmp(a, "--n-predict")) {
            rc = parse_i32(a, v, 0, 1 << 24, &n_predict);
        } else if (!strcmp(a, "-c") || !strcmp(a, "--ctx-size")) {
            rc = parse_i32(a, v, 1, 1 << 24, &ep.n_ctx);
        } else if (!strcmp(a, "-t") || !strcmp(a, "--threads")) {
            rc = parse_i32(a, v, 1, 256, &ep.n_threads);
        } else if (!strcmp(a, "--temp")) {
            rc = parse_f32(a, v, &sp.temperature);
        } else if (!strcmp(a, "--top-k")) {
            rc = parse_i32(a, v, 0, INT32_MAX, &sp.top_k);
        } else if (!strcmp(a, "--top-p")) {
            rc = parse_f32(a, v, &sp.top_p);
        } else if (!strcmp(a, "--min-p")) {
            rc = parse_f32(a, v, &sp.min_p);
        } else if (!strcmp(a, "--repeat-penalty")) {
            rc = parse_f32(a, v, &sp.repeat_penalty);
        } else if (!strcmp(a, "--seed")) {
            rc = parse_u64(a, v, &sp.seed);
            have_seed = 1;
        } else if (!strcmp(a, "--backend")) {
            ep.backend = v;
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
    if (ep.backend && strcmp(ep.backend, "cpu") && strcmp(ep.backend, "gpu")) {
        fprintf(stderr, "greta run: --backend must be cpu or gpu (got '%s')\n", ep.backend);
        return 2;
    }
    const char *mem_env = getenv("GRETA_MEM_AVAILABLE");
    if (mem_env && *mem_env && parse_u64("GRETA_MEM_AVAILABLE", mem_env, &ep.mem_available))
        return 2;
    if (!have_seed)
        sp.seed = (uint64_t)time(NULL);

    greta_error err = {0};
    char default_path[4096];
    if (!model_path) {
        if (greta_engine_default_model(default_path, sizeof default_path, &err)) {
            fprintf(stderr, "greta run: %s\n", err.msg);
            return 1;
        }
        model_path = default_path;
    }

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

    int status = 1;
    greta_engine *e = NULL;
    greta_tokenizer *tok = NULL;
    greta_sampler *sampler = NULL;
    int32_t *ids = NULL, *out_ids = NULL;
    run_ctx r = {0};

    if (greta_engine_open(model_path, &ep, &e, &err)) {
        fprintf(stderr, "greta run: %s\n", err.msg);
        goto done;
    }
    const greta_model *m = greta_engine_model(e);
    const greta_backend_params *bp = greta_engine_backend_params(e);
    char plan[1024];
    greta_engine_plan_format(greta_engine_plan(e), bp, plan, sizeof plan);
    fprintf(stderr, "greta run: model %s (%" PRIu32 " layers, dim %" PRIu32 ", vocab %" PRIu32 ")\n",
            model_path, m->cfg.n_layers, m->cfg.dim, m->cfg.vocab_size);
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
    fprintf(stderr, "greta run: sampling: temp %.3g, top-k %d, top-p %.3g, min-p %.3g, repeat-penalty %.3g, seed %" PRIu64 "\n",
            (double)sp.temperature, sp.top_k, (double)sp.top_p, (double)sp.min_p, (double)sp.repeat_penalty,
            sp.seed);

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
        .n_predict = n_predict,
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
    print_timings(e, &st);
    status = 0;

done:
    free(r.buf);
    free(ids);
    free(out_ids);
    free(file_text);
    greta_sampler_destroy(&sampler);
    greta_tokenizer_destroy(&tok);
    greta_engine_destroy(&e);
    return status;
}
