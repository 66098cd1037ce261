/* cmd_drift.c - `greta drift`: the FP16-vs-FP32 numerical stability report.
 * The GPU backend against the FP32 CPU reference over long generations.
 *
 *   greta drift [-m MODEL | --all MODEL...] [-p PROMPT | -f FILE] [-n N]
 *               [-t THREADS] [--test gpu|cpu] [--variants LIST]
 *               [--past-context] [--json FILE] [--md FILE]
 *
 * For each model:
 *   reference  the CPU backend reads the prompt (BOS + text, one prefill) and
 *              then generates N tokens greedily; its logits at each of the
 *              n_prompt + N positions are kept. Its greedy tokens are both
 *              the teacher sequence and the reference's free-running output.
 *   variants   the test backend as the engine runs it ("default") and with
 *              one block switched to FP32 ("kv-f32": the GPU's fp32 KV cache
 *              instead of fp16; "act-f32": the decode products after an
 *              RMSNorm from fp32 activations, decode kernels v5, instead of
 *              v6's 16-bit codes; greta_gpu_backend_opts), or both
 *              ("all-f32"). For each:
 *     teacher-forced  the reference's sequence is fed the same way (prompt as
 *              one prefill, then one token at a time) and every logit row is
 *              compared with the reference's (compare.h): top-1 agreement,
 *              top-5 and top-10 overlap, max and p99 |d| (absolute and over
 *              the reference row's std), KL(ref || test), NaN/Inf;
 *     free-running    the test backend generates N tokens greedily from the
 *              same prompt on its own logits: the first generated index where
 *              its token differs from the reference's, and NaN/Inf.
 *   blocks     which block contributes most: the default variant's pooled p99
 *              |d|/sd and mean KL against those with a block switched to
 *              FP32. Blocks that are FP32 on the GPU already (attention
 *              accumulation, softmax, RMSNorm, GEMV accumulation: the decode
 *              kernels of gpu_backend.h accumulate every product in fp32) have
 *              no switch and contribute 0 by construction; the variant with
 *              every switch at FP32 shows the residual (summation order).
 * Summaries: overall, and in 10 windows of consecutive positions; per
 * position rows for the first variant in the JSON.
 *
 * N is clamped to the model's context (noted in the report) unless
 * --past-context lets positions run past it (the backends accept any n_ctx;
 * the model was not trained there, which a numerical comparison need not
 * care about). --test cpu compares the reference with a second CPU backend:
 * every figure must be exactly 0 (the tool's self-check).
 *
 * Output: the Markdown report on stdout (and in --md FILE), progress on
 * stderr, JSON with --json (device, driver, date, commit as greta parity).
 * With several models the files are rewritten after each one ("complete":
 * false until the end), and a model that cannot be measured is reported as
 * such while the others still run. Exit: 0 done, 1 a model could not be
 * measured or a file not written, 2 usage.
 */
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cJSON.h>

#include "commands.h"
#include "compare.h"
#include "gpu-worker/engine.h"
#include "kernels/cpu/ops.h"
#include "tokenizer/tokenizer.h"

#define DRIFT_DEFAULT_N 1000
#define DRIFT_MAX_MODELS 64
#define DRIFT_WINDOWS 10

/* ---- variants and blocks ------------------------------------------------------------ */

typedef struct drift_variant {
    const char *name;
    const char *what;  /* one line for the report */
    const char *block; /* the block this variant switches to FP32, NULL for none */
    int kv_f32, act_f32;
    int gpu_only;
} drift_variant;

static const drift_variant k_variants[] = {
    {"default", "the backend as the engine runs it", NULL, 0, 0, 0},
    {"kv-f32", "KV cache in fp32 instead of fp16 (greta_gpu_backend_opts.kv_type)", "KV cache", 1, 0, 1},
    {"act-f32",
     "products after an RMSNorm from fp32 activations instead of 16-bit codes (decode kernels v5, "
     "greta_gpu_backend_opts.decode_kernels)",
     "GEMV inputs after RMSNorm", 0, 1, 1},
    {"all-f32", "both switches: fp32 KV cache and fp32 activations (what is left: summation order)", NULL, 1, 1, 1},
};
#define N_VARIANTS ((int)(sizeof k_variants / sizeof k_variants[0]))

/* The blocks the report covers; switch = the variant that makes it FP32,
 * NULL when the GPU computes it in FP32 already. */
static const struct {
    const char *block, *gpu, *variant;
} k_blocks[] = {
    {"KV cache", "fp16 storage (keys, values)", "kv-f32"},
    {"GEMV inputs after RMSNorm", "16-bit codes, a scale per 16 values (decode v6: Q/K/V, gate/up, lm_head)",
     "act-f32"},
    {"attention accumulation", "fp32 (QK dot products, P.V sums)", NULL},
    {"softmax", "fp32 (online, in the attention kernel)", NULL},
    {"norms (RMSNorm)", "fp32", NULL},
    {"GEMV accumulation", "fp32 (decode matrix-vector products)", NULL},
};

/* ---- options ------------------------------------------------------------------------------ */

typedef struct drift_opts {
    const char *models[DRIFT_MAX_MODELS];
    int n_models, all;
    const char *prompt, *prompt_file, *test, *json, *md;
    int32_t n, threads;
    int variants[N_VARIANTS]; /* indexes into k_variants, in the order given */
    int n_variants;
    int past_context;
} drift_opts;

static void usage(FILE *out)
{
    fprintf(out,
            "usage: greta drift [-m MODEL | --all MODEL...] [-p PROMPT | -f FILE] [-n N] [-t THREADS]\n"
            "                   [--test gpu|cpu] [--variants LIST] [--past-context] [--json FILE] [--md FILE]\n"
            "\n"
            "FP16-vs-FP32 numerical stability: the GPU backend against the FP32 CPU reference\n"
            "over a long generation, teacher-forced (the reference's greedy tokens fed to both)\n"
            "and free-running (each generates greedily; the first position where they differ),\n"
            "with each switchable block set to FP32 in turn.\n"
            "\n"
            "  -m MODEL        GGUF model (default: %s from the model folders)\n"
            "  --all MODEL...  every model named after it (options may still follow)\n"
            "  -p PROMPT       prompt text (BOS is added); default: BOS alone\n"
            "  -f FILE         read the prompt from FILE\n"
            "  -n N            generated tokens (default %d); clamped to the model's context\n"
            "  -t THREADS      CPU reference threads (default: all CPUs)\n"
            "  --test B        backend compared with the reference: gpu (default) or cpu\n"
            "                  (cpu: a second CPU backend; every difference must be 0)\n"
            "  --variants L    comma-separated: default (the engine's backend), kv-f32 (GPU KV\n"
            "                  cache in fp32), act-f32 (GPU products from fp32 activations),\n"
            "                  all-f32 (both); default: all four (gpu), default (cpu)\n"
            "  --past-context  let -n run past the model's context length instead of clamping\n"
            "  --json FILE     write the report as JSON (per-position rows of the first variant)\n"
            "  --md FILE       also write the Markdown report (printed on stdout) to FILE\n",
            GRETA_DEFAULT_MODEL, DRIFT_DEFAULT_N);
}

static int parse_variants(const char *s, drift_opts *o)
{
    o->n_variants = 0;
    const char *p = s;
    while (*p) {
        const size_t len = strcspn(p, ",");
        int found = -1;
        for (int v = 0; v < N_VARIANTS; v++)
            if (strlen(k_variants[v].name) == len && !strncmp(p, k_variants[v].name, len))
                found = v;
        if (found < 0) {
            fprintf(stderr, "greta drift: --variants: unknown variant '%.*s' (known: default, kv-f32, act-f32, all-f32)\n",
                    (int)len, p);
            return -1;
        }
        for (int i = 0; i < o->n_variants; i++)
            if (o->variants[i] == found) {
                fprintf(stderr, "greta drift: --variants: '%s' is given twice\n", k_variants[found].name);
                return -1;
            }
        o->variants[o->n_variants++] = found;
        p += len;
        if (*p == ',') {
            p++;
            if (!*p) {
                fprintf(stderr, "greta drift: --variants: empty name at the end of '%s'\n", s);
                return -1;
            }
        }
    }
    if (o->n_variants == 0) {
        fprintf(stderr, "greta drift: --variants is empty\n");
        return -1;
    }
    return 0;
}

/* 0 ok, 1 --help shown, 2 usage error. */
static int parse_args(int argc, char **argv, drift_opts *o)
{
    const char *variants = NULL;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            return 1;
        }
        if (!strcmp(a, "--all")) {
            o->all = 1;
            continue;
        }
        if (!strcmp(a, "--past-context")) {
            o->past_context = 1;
            continue;
        }
        if (a[0] != '-' || !a[1]) { /* a model of --all */
            if (!o->all) {
                fprintf(stderr, "greta drift: unexpected argument '%s' (models after --all, or -m MODEL)\n", a);
                return 2;
            }
            if (o->n_models == DRIFT_MAX_MODELS) {
                fprintf(stderr, "greta drift: at most %d models\n", DRIFT_MAX_MODELS);
                return 2;
            }
            o->models[o->n_models++] = a;
            continue;
        }
        if (i + 1 >= argc) {
            fprintf(stderr, "greta drift: unknown option or missing value: %s\n", a);
            usage(stderr);
            return 2;
        }
        const char *v = argv[++i];
        if (!strcmp(a, "-m")) {
            if (o->n_models == DRIFT_MAX_MODELS) {
                fprintf(stderr, "greta drift: at most %d models\n", DRIFT_MAX_MODELS);
                return 2;
            }
            o->models[o->n_models++] = v;
        } else if (!strcmp(a, "-p")) {
            o->prompt = v;
        } else if (!strcmp(a, "-f")) {
            o->prompt_file = v;
        } else if (!strcmp(a, "-n")) {
            if (greta_compare_parse_int(v, 1, 1 << 20, &o->n)) {
                fprintf(stderr, "greta drift: -n must be an integer in 1..1048576 (got '%s')\n", v);
                return 2;
            }
        } else if (!strcmp(a, "-t")) {
            if (greta_compare_parse_int(v, 1, 256, &o->threads)) {
                fprintf(stderr, "greta drift: -t must be an integer in 1..256 (got '%s')\n", v);
                return 2;
            }
        } else if (!strcmp(a, "--test")) {
            if (strcmp(v, "gpu") && strcmp(v, "cpu")) {
                fprintf(stderr, "greta drift: --test must be gpu or cpu (got '%s')\n", v);
                return 2;
            }
            o->test = v;
        } else if (!strcmp(a, "--variants")) {
            variants = v;
        } else if (!strcmp(a, "--json")) {
            o->json = v;
        } else if (!strcmp(a, "--md")) {
            o->md = v;
        } else {
            fprintf(stderr, "greta drift: unknown option: %s\n", a);
            usage(stderr);
            return 2;
        }
    }
    if (o->prompt && o->prompt_file) {
        fprintf(stderr, "greta drift: give -p or -f, not both\n");
        return 2;
    }
    if (o->all && o->n_models == 0) {
        fprintf(stderr, "greta drift: --all needs the models after it\n");
        return 2;
    }
    if (!o->all && o->n_models > 1) {
        fprintf(stderr, "greta drift: one -m MODEL, or --all MODEL... for several\n");
        return 2;
    }
    const int gpu = !strcmp(o->test, "gpu");
    if (variants) {
        if (parse_variants(variants, o))
            return 2;
    } else {
        o->n_variants = 0;
        for (int v = 0; v < N_VARIANTS; v++)
            if (gpu || !k_variants[v].gpu_only)
                o->variants[o->n_variants++] = v;
    }
    for (int i = 0; i < o->n_variants && !gpu; i++)
        if (k_variants[o->variants[i]].gpu_only) {
            fprintf(stderr, "greta drift: variant '%s' switches a GPU block; with --test cpu only 'default'\n",
                    k_variants[o->variants[i]].name);
            return 2;
        }
    return 0;
}

/* ---- statistics over positions -------------------------------------------------------------- */

typedef struct pos_row {
    int32_t token;            /* the token fed at this position */
    greta_compare_row_stats c;
} pos_row;

typedef struct tf_summary {
    int32_t from, to;         /* positions [from, to) */
    int64_t agree, nan_inf;
    int32_t first_top1_miss;  /* first position where top-1 differs, -1 if none */
    double top5, top10, max_abs, max_rel, p99_rel, p99_abs_max, mean_kl, max_kl;
} tf_summary;

/* Summary of rows [from, to); rel holds their pooled |d|/sd (reordered). */
static void summarize(const pos_row *rows, int32_t from, int32_t to, double *rel, size_t n_rel, tf_summary *s)
{
    memset(s, 0, sizeof *s);
    s->from = from;
    s->to = to;
    s->first_top1_miss = -1;
    double kl = 0.0;
    for (int32_t p = from; p < to; p++) {
        const greta_compare_row_stats *c = &rows[p].c;
        if (c->top1_ref == c->top1_test)
            s->agree++;
        else if (s->first_top1_miss < 0)
            s->first_top1_miss = p;
        s->nan_inf += c->nan_inf;
        s->top5 += c->top5;
        s->top10 += c->top10;
        kl += c->kl;
        if (!(c->max_abs <= s->max_abs))
            s->max_abs = c->max_abs;
        if (!(c->max_rel <= s->max_rel))
            s->max_rel = c->max_rel;
        if (!(c->p99_abs <= s->p99_abs_max))
            s->p99_abs_max = c->p99_abs;
        if (!(c->kl <= s->max_kl))
            s->max_kl = c->kl;
    }
    const double n = to > from ? (double)(to - from) : 1.0;
    s->top5 /= n;
    s->top10 /= n;
    s->mean_kl = kl / n;
    s->p99_rel = greta_compare_quantile(rel, n_rel, 0.99);
}

/* ---- one model -------------------------------------------------------------------------------- */

typedef struct variant_result {
    const drift_variant *v;
    char detail[96];
    double s_tf, s_fr;
    tf_summary all, win[DRIFT_WINDOWS];
    int n_win;
    pos_row *rows;        /* [n_pos] */
    int32_t *fr_tokens;   /* [n_gen] free-running greedy tokens */
    int32_t fr_first_div; /* first generated index that differs from the reference, -1 if none */
    int64_t fr_nan_inf;
} variant_result;

typedef struct model_result {
    const char *path;
    greta_model_config cfg;
    int32_t n_prompt, n_gen, n_requested;
    int clamped;
    double s_ref;
    char ref_detail[96];
    int32_t *ids; /* [n_prompt + n_gen] the reference's sequence */
    variant_result var[N_VARIANTS];
    int n_var;
    char error[GRETA_ERROR_MSG_MAX + 256]; /* why the model could not be measured; "" when it was */
} model_result;

static void model_result_free(model_result *r)
{
    for (int i = 0; i < r->n_var; i++) {
        free(r->var[i].rows);
        free(r->var[i].fr_tokens);
    }
    free(r->ids);
    memset(r, 0, sizeof *r);
}

/* Teacher-forced and free-running runs of one variant against the
 * reference logits lr ([n_pos][vocab]). */
static int run_variant(const drift_opts *o, const greta_model *m, const greta_backend_params *bp, model_result *r,
                       const float *lr, variant_result *vr, cJSON *backend_json, greta_error *err)
{
    const int32_t vocab = (int32_t)m->cfg.vocab_size, n_prompt = r->n_prompt, n_gen = r->n_gen;
    const int32_t n_pos = n_prompt + n_gen;
    greta_backend *test = NULL;
    /* rows of one feed: the whole prompt, or one token */
    float *lt = malloc(sizeof(float) * (size_t)n_prompt * (size_t)vocab);
    double *rel = malloc(sizeof(double) * (size_t)n_pos * (size_t)vocab);
    double *scratch = malloc(sizeof(double) * (size_t)vocab);
    vr->rows = calloc((size_t)n_pos, sizeof *vr->rows);
    vr->fr_tokens = calloc((size_t)n_gen + 1, sizeof *vr->fr_tokens);
    int rc = GRETA_OK;
    if (!lt || !rel || !scratch || !vr->rows || !vr->fr_tokens) {
        rc = greta_error_set(err, GRETA_ERR_NOMEM, "out of memory for %d positions of %d logits", n_pos, vocab);
        goto done;
    }
    if ((rc = greta_compare_backend_create(o->test, vr->v->kv_f32, vr->v->act_f32, m, bp, &test, err)))
        goto done;
    snprintf(vr->detail, sizeof vr->detail, "%s", test->detail);
    if (backend_json && !cJSON_GetObjectItem(backend_json, "name"))
        greta_compare_json_backend(backend_json, test);

    /* teacher-forced */
    double t0 = greta_now_s();
    for (int32_t done = 0; done < n_pos;) {
        const int32_t k = done < n_prompt ? n_prompt : 1; /* the prompt as one prefill, then one at a time */
        if ((rc = greta_compare_feed(test, r->ids + done, k, done, bp->n_batch, lt, err)))
            goto done;
        for (int32_t i = 0; i < k; i++) {
            const int32_t p = done + i;
            vr->rows[p].token = r->ids[p];
            greta_compare_row(lr + (size_t)p * vocab, lt + (size_t)i * vocab, vocab, &vr->rows[p].c,
                              rel + (size_t)p * vocab, scratch);
        }
        done += k;
    }
    vr->s_tf = greta_now_s() - t0;
    const int32_t wsize = (n_pos + DRIFT_WINDOWS - 1) / DRIFT_WINDOWS;
    vr->n_win = 0;
    for (int32_t from = 0; from < n_pos; from += wsize) {
        const int32_t to = from + wsize < n_pos ? from + wsize : n_pos;
        summarize(vr->rows, from, to, rel + (size_t)from * vocab, (size_t)(to - from) * vocab, &vr->win[vr->n_win++]);
    }
    summarize(vr->rows, 0, n_pos, rel, (size_t)n_pos * vocab, &vr->all);

    /* free-running */
    t0 = greta_now_s();
    if ((rc = test->ops->seq_truncate(test, 0, 0, err)) ||
        (rc = greta_compare_feed(test, r->ids, n_prompt, 0, bp->n_batch, lt, err)))
        goto done;
    const float *last = lt + (size_t)(n_prompt - 1) * vocab;
    vr->fr_first_div = -1;
    vr->fr_nan_inf = 0;
    for (int32_t p = 0; p < n_prompt; p++)
        for (int32_t i = 0; i < vocab; i++)
            vr->fr_nan_inf += !isfinite(lt[(size_t)p * vocab + i]);
    for (int32_t g = 0; g < n_gen; g++) {
        int32_t tok = (int32_t)greta_cpu_argmax(last, vocab);
        vr->fr_tokens[g] = tok;
        if (vr->fr_first_div < 0 && tok != r->ids[n_prompt + g])
            vr->fr_first_div = g;
        if (g + 1 == n_gen)
            break; /* the last token's logits are not needed */
        if ((rc = greta_compare_feed(test, &tok, 1, n_prompt + g, 1, lt, err)))
            goto done;
        last = lt;
        for (int32_t i = 0; i < vocab; i++)
            vr->fr_nan_inf += !isfinite(lt[i]);
    }
    vr->s_fr = greta_now_s() - t0;
done:
    greta_backend_destroy(&test);
    free(lt);
    free(rel);
    free(scratch);
    return rc;
}

/* Records why a model failed (and prints it); returns 1. */
static int model_fail(model_result *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int model_fail(model_result *r, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(r->error, sizeof r->error, fmt, ap);
    va_end(ap);
    fprintf(stderr, "greta drift: %s: %s\n", r->path, r->error);
    return 1;
}

static int run_model(const drift_opts *o, const char *path, const char *text, size_t text_len, model_result *r,
                     cJSON *backend_json)
{
    greta_error err = {0};
    greta_model *m = NULL;
    greta_tokenizer *tok = NULL;
    greta_backend *ref = NULL;
    float *lr = NULL;
    int status = 1;
    r->path = path;
    if (greta_model_open(path, &m, &err) || greta_tokenizer_create_from_gguf(m->file, &tok, &err)) {
        model_fail(r, "%s", err.msg);
        goto done;
    }
    r->cfg = m->cfg;
    const int32_t vocab = (int32_t)m->cfg.vocab_size;
    size_t cap = greta_tokenizer_max_tokens(text_len) + 2, n_prompt = 0;
    int32_t *pids = malloc(cap * sizeof *pids);
    if (!pids || greta_tokenizer_encode(tok, text, text_len, greta_tokenizer_default_flags(tok), pids, cap, &n_prompt,
                                        &err)) {
        model_fail(r, "prompt: %s", pids ? err.msg : "out of memory");
        free(pids);
        goto done;
    }
    if (n_prompt == 0) {
        model_fail(r, "the prompt is empty and the model adds no BOS token");
        free(pids);
        goto done;
    }
    r->n_prompt = (int32_t)n_prompt;
    r->n_requested = o->n;
    r->n_gen = o->n;
    const int64_t ctx = m->cfg.context_length;
    if (!o->past_context && ctx > 0 && (int64_t)n_prompt + o->n > ctx) {
        if ((int64_t)n_prompt >= ctx) {
            model_fail(r, "%zu prompt tokens fill the model's context of %" PRId64, n_prompt, ctx);
            free(pids);
            goto done;
        }
        r->n_gen = (int32_t)(ctx - (int64_t)n_prompt);
        r->clamped = 1;
    }
    const int32_t n_pos = r->n_prompt + r->n_gen;
    r->ids = malloc(sizeof(int32_t) * (size_t)n_pos);
    lr = malloc(sizeof(float) * (size_t)n_pos * (size_t)vocab);
    if (!r->ids || !lr) {
        model_fail(r, "out of memory for %d rows of %d logits", n_pos, vocab);
        free(pids);
        goto done;
    }
    memcpy(r->ids, pids, n_prompt * sizeof *pids);
    free(pids);
    greta_backend_params bp = {.n_ctx = n_pos, .n_seq = 1, .n_batch = n_pos < 512 ? n_pos : 512};
    bp.n_threads = o->threads;
    if (!bp.n_threads) {
        long c = sysconf(_SC_NPROCESSORS_ONLN);
        bp.n_threads = c < 1 ? 1 : c > 256 ? 256 : (int32_t)c;
    }
    fprintf(stderr, "greta drift: %s: %d prompt tokens + %d generated%s\n", path, r->n_prompt, r->n_gen,
            r->clamped ? " (clamped to the model's context)" : "");

    /* the reference: prompt, then greedy */
    double t0 = greta_now_s();
    if (greta_compare_backend_create("cpu", 0, 0, m, &bp, &ref, &err) ||
        greta_compare_feed(ref, r->ids, r->n_prompt, 0, bp.n_batch, lr, &err))
        goto fail_err;
    snprintf(r->ref_detail, sizeof r->ref_detail, "%s", ref->detail);
    for (int32_t g = 0; g < r->n_gen; g++) {
        const int32_t p = r->n_prompt + g;
        r->ids[p] = (int32_t)greta_cpu_argmax(lr + (size_t)(p - 1) * vocab, vocab);
        if (greta_compare_feed(ref, r->ids + p, 1, p, 1, lr + (size_t)p * vocab, &err))
            goto fail_err;
    }
    r->s_ref = greta_now_s() - t0;
    greta_backend_destroy(&ref);
    fprintf(stderr, "greta drift: reference cpu (%s): %d positions in %.1f s\n", r->ref_detail, n_pos, r->s_ref);

    for (int i = 0; i < o->n_variants; i++) {
        variant_result *vr = &r->var[r->n_var++];
        vr->v = &k_variants[o->variants[i]];
        if (run_variant(o, m, &bp, r, lr, vr, backend_json, &err))
            goto fail_err;
        fprintf(stderr,
                "greta drift: %s %s: teacher-forced top-1 %.2f%%, p99 |d|/sd %.3e, mean KL %.3e, NaN/Inf %" PRId64
                " (%.1f s); free-running first divergence %s%d (%.1f s)\n",
                o->test, vr->v->name, 100.0 * (double)vr->all.agree / n_pos, vr->all.p99_rel, vr->all.mean_kl,
                vr->all.nan_inf + vr->fr_nan_inf, vr->s_tf, vr->fr_first_div < 0 ? "none in " : "at generated token ",
                vr->fr_first_div < 0 ? r->n_gen : vr->fr_first_div, vr->s_fr);
    }
    status = 0;
    goto done;
fail_err:
    model_fail(r, "%s", err.msg);
done:
    greta_backend_destroy(&ref);
    greta_tokenizer_destroy(&tok);
    greta_model_close(&m);
    free(lr);
    return status;
}

/* ---- Markdown ------------------------------------------------------------------------------------ */

static const char *base_name(const char *path)
{
    const char *s = strrchr(path, '/');
    return s ? s + 1 : path;
}

static const variant_result *find_variant(const model_result *r, const char *name)
{
    for (int i = 0; i < r->n_var; i++)
        if (!strcmp(r->var[i].v->name, name))
            return &r->var[i];
    return NULL;
}

static void md_divergence(FILE *f, const model_result *r, const variant_result *v)
{
    if (v->fr_first_div < 0)
        fprintf(f, "none in %d", r->n_gen);
    else
        fprintf(f, "token %d (position %d)", v->fr_first_div, r->n_prompt + v->fr_first_div);
}

static void md_model(FILE *f, const drift_opts *o, const model_result *r)
{
    const int32_t n_pos = r->n_prompt + r->n_gen;
    fprintf(f, "## %s\n\n", base_name(r->path));
    if (r->error[0]) {
        fprintf(f, "Not measured: %s\n\n", r->error);
        return;
    }
    fprintf(f, "dim %u, %u layers, %u heads (%u KV), vocab %u, context %u. %d prompt token%s + %d generated "
               "= %d positions",
            r->cfg.dim, r->cfg.n_layers, r->cfg.n_heads, r->cfg.n_kv_heads, r->cfg.vocab_size, r->cfg.context_length,
            r->n_prompt, r->n_prompt == 1 ? "" : "s", r->n_gen, n_pos);
    if (r->clamped)
        fprintf(f, " (%d asked for: clamped to the model's context)", r->n_requested);
    else if (r->cfg.context_length > 0 && (uint32_t)n_pos > r->cfg.context_length)
        fprintf(f, " (past the model's context of %u: --past-context)", r->cfg.context_length);
    fprintf(f, ". Reference: cpu (%s), %.1f s.\n\n", r->ref_detail, r->s_ref);

    fprintf(f, "| variant | top-1 | top-5 | top-10 | max \\|d\\| | max \\|d\\|/sd | p99 \\|d\\|/sd | mean KL | max KL "
               "| NaN/Inf | first top-1 miss | free-running divergence |\n");
    fprintf(f, "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |\n");
    for (int i = 0; i < r->n_var; i++) {
        const variant_result *v = &r->var[i];
        const tf_summary *s = &v->all;
        fprintf(f, "| %s %s | %.2f%% | %.4f | %.4f | %.3e | %.3e | %.3e | %.3e | %.3e | %" PRId64 " | ", o->test,
                v->v->name, 100.0 * (double)s->agree / n_pos, s->top5, s->top10, s->max_abs, s->max_rel, s->p99_rel,
                s->mean_kl, s->max_kl, s->nan_inf + v->fr_nan_inf);
        if (s->first_top1_miss < 0)
            fprintf(f, "none | ");
        else
            fprintf(f, "%d | ", s->first_top1_miss);
        md_divergence(f, r, v);
        fprintf(f, " |\n");
    }
    fprintf(f, "\n");

    if (r->n_var > 0) {
        const variant_result *v = &r->var[0];
        fprintf(f, "Teacher-forced, %s %s, by position:\n\n", o->test, v->v->name);
        fprintf(f, "| positions | top-1 | top-5 | top-10 | max \\|d\\|/sd | p99 \\|d\\|/sd | max p99 \\|d\\| "
                   "| mean KL | max KL | NaN/Inf |\n");
        fprintf(f, "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n");
        for (int w = 0; w < v->n_win; w++) {
            const tf_summary *s = &v->win[w];
            fprintf(f, "| %d-%d | %.2f%% | %.4f | %.4f | %.3e | %.3e | %.3e | %.3e | %.3e | %" PRId64 " |\n", s->from,
                    s->to - 1, 100.0 * (double)s->agree / (s->to - s->from), s->top5, s->top10, s->max_rel,
                    s->p99_rel, s->p99_abs_max, s->mean_kl, s->max_kl, s->nan_inf);
        }
        fprintf(f, "\n");
    }

    const variant_result *def = find_variant(r, "default");
    if (def && strcmp(o->test, "cpu")) {
        fprintf(f, "Blocks (teacher-forced, pooled p99 |d|/sd and mean KL; share = the part of the default "
                   "variant's figure that switching the block to FP32 removes):\n\n");
        fprintf(f, "| block | on the GPU | switched to FP32 by | p99 \\|d\\|/sd | mean KL | share of p99 | share of KL "
                   "|\n| --- | --- | --- | ---: | ---: | ---: | ---: |\n");
        fprintf(f, "| (none: default) | | | %.3e | %.3e | | |\n", def->all.p99_rel, def->all.mean_kl);
        for (size_t b = 0; b < sizeof k_blocks / sizeof k_blocks[0]; b++) {
            if (!k_blocks[b].variant) {
                fprintf(f, "| %s | %s | already FP32 | | | 0 | 0 |\n", k_blocks[b].block, k_blocks[b].gpu);
                continue;
            }
            const variant_result *sw = find_variant(r, k_blocks[b].variant);
            if (!sw) {
                fprintf(f, "| %s | %s | --variants %s (not run) | | | | |\n", k_blocks[b].block, k_blocks[b].gpu,
                        k_blocks[b].variant);
                continue;
            }
            const double sp = def->all.p99_rel > 0 ? 1.0 - sw->all.p99_rel / def->all.p99_rel : 0.0;
            const double sk = def->all.mean_kl > 0 ? 1.0 - sw->all.mean_kl / def->all.mean_kl : 0.0;
            fprintf(f, "| %s | %s | %s | %.3e | %.3e | %.1f%% | %.1f%% |\n", k_blocks[b].block, k_blocks[b].gpu,
                    k_blocks[b].variant, sw->all.p99_rel, sw->all.mean_kl, 100.0 * sp, 100.0 * sk);
        }
        fprintf(f, "\n");
        if (r->n_prompt > 1)
            fprintf(f, "Positions 0-%d (the prompt) went through the prefill kernels in one batch; the rest through "
                       "the decode kernels, which the block column describes.\n\n",
                    r->n_prompt - 1);
    }
}

static void md_report(FILE *f, const drift_opts *o, const model_result *res, int n_res, const char *prompt)
{
    fprintf(f, "# greta drift: %s against the FP32 CPU reference\n\n", o->test);
    fprintf(f, "Prompt: %s%s%s; greedy, %d tokens asked for. Variants: ", prompt[0] ? "\"" : "BOS alone",
            prompt[0] ? prompt : "", prompt[0] ? "\" (after BOS)" : "", o->n);
    for (int i = 0; i < o->n_variants; i++)
        fprintf(f, "%s`%s` (%s)", i ? ", " : "", k_variants[o->variants[i]].name, k_variants[o->variants[i]].what);
    fprintf(f, ".\n\n");
    if (n_res > 1) {
        const char *first = k_variants[o->variants[0]].name;
        fprintf(f, "| model | positions | top-1 | top-10 | p99 \\|d\\|/sd | max \\|d\\| | mean KL | NaN/Inf | "
                   "free-running divergence |\n| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |\n");
        for (int m = 0; m < n_res; m++) {
            const model_result *r = &res[m];
            const variant_result *v = find_variant(r, first);
            if (r->error[0] || !v) {
                fprintf(f, "| %s | not measured (below) | | | | | | | |\n", base_name(r->path));
                continue;
            }
            const int32_t n_pos = r->n_prompt + r->n_gen;
            fprintf(f, "| %s | %d | %.2f%% | %.4f | %.3e | %.3e | %.3e | %" PRId64 " | ", base_name(r->path), n_pos,
                    100.0 * (double)v->all.agree / n_pos, v->all.top10, v->all.p99_rel, v->all.max_abs,
                    v->all.mean_kl, v->all.nan_inf + v->fr_nan_inf);
            md_divergence(f, r, v);
            fprintf(f, " |\n");
        }
        fprintf(f, "\n(variant `%s`)\n\n", first);
    }
    for (int m = 0; m < n_res; m++)
        md_model(f, o, &res[m]);
}

/* ---- JSON ------------------------------------------------------------------------------------------------ */

/* A number with 4 significant digits (null when not finite): keeps the
 * per-position arrays small. */
static cJSON *num4(double v)
{
    char buf[32];
    if (!isfinite(v))
        return cJSON_CreateNull();
    snprintf(buf, sizeof buf, "%.4g", v);
    return cJSON_CreateRaw(buf);
}

static cJSON *json_summary(const tf_summary *s)
{
    cJSON *j = cJSON_CreateObject();
    const double n = s->to > s->from ? (double)(s->to - s->from) : 1.0;
    cJSON_AddNumberToObject(j, "from", s->from);
    cJSON_AddNumberToObject(j, "to", s->to);
    cJSON_AddNumberToObject(j, "top1_agreement", (double)s->agree / n);
    cJSON_AddNumberToObject(j, "first_top1_miss", s->first_top1_miss);
    cJSON_AddNumberToObject(j, "top5_overlap", s->top5);
    cJSON_AddNumberToObject(j, "top10_overlap", s->top10);
    cJSON_AddNumberToObject(j, "max_abs_diff", s->max_abs);
    cJSON_AddNumberToObject(j, "max_rel_diff", s->max_rel);
    cJSON_AddNumberToObject(j, "p99_rel_diff", s->p99_rel);
    cJSON_AddNumberToObject(j, "max_p99_abs_diff", s->p99_abs_max);
    cJSON_AddNumberToObject(j, "mean_kl", s->mean_kl);
    cJSON_AddNumberToObject(j, "max_kl", s->max_kl);
    cJSON_AddNumberToObject(j, "nan_inf", (double)s->nan_inf);
    return j;
}

static cJSON *json_positions(const variant_result *v, int32_t n_pos)
{
    cJSON *j = cJSON_CreateObject();
    static const char *const cols[] = {"token", "top1_ref", "top1_test", "top5_overlap", "top10_overlap",
                                       "std_ref", "max_abs_diff", "max_rel_diff", "p99_abs_diff", "p99_rel_diff",
                                       "kl", "nan_inf"};
    for (size_t c = 0; c < sizeof cols / sizeof cols[0]; c++) {
        cJSON *a = cJSON_AddArrayToObject(j, cols[c]);
        for (int32_t p = 0; p < n_pos; p++) {
            const greta_compare_row_stats *s = &v->rows[p].c;
            cJSON *x;
            switch (c) {
            case 0: x = cJSON_CreateNumber(v->rows[p].token); break;
            case 1: x = cJSON_CreateNumber(s->top1_ref); break;
            case 2: x = cJSON_CreateNumber(s->top1_test); break;
            case 3: x = num4(s->top5); break;
            case 4: x = num4(s->top10); break;
            case 5: x = num4(s->std_ref); break;
            case 6: x = num4(s->max_abs); break;
            case 7: x = num4(s->max_rel); break;
            case 8: x = num4(s->p99_abs); break;
            case 9: x = num4(s->p99_rel); break;
            case 10: x = num4(s->kl); break;
            default: x = cJSON_CreateNumber((double)s->nan_inf); break;
            }
            cJSON_AddItemToArray(a, x);
        }
    }
    return j;
}

static cJSON *json_model(const drift_opts *o, const model_result *r)
{
    const int32_t n_pos = r->n_prompt + r->n_gen;
    cJSON *j = cJSON_CreateObject();
    cJSON_AddStringToObject(j, "path", r->path);
    if (r->error[0]) {
        cJSON_AddStringToObject(j, "error", r->error);
        return j;
    }
    cJSON_AddNumberToObject(j, "vocab", r->cfg.vocab_size);
    cJSON_AddNumberToObject(j, "dim", r->cfg.dim);
    cJSON_AddNumberToObject(j, "n_layers", r->cfg.n_layers);
    cJSON_AddNumberToObject(j, "context_length", r->cfg.context_length);
    cJSON_AddNumberToObject(j, "n_prompt", r->n_prompt);
    cJSON_AddNumberToObject(j, "n_requested", r->n_requested);
    cJSON_AddNumberToObject(j, "n_generated", r->n_gen);
    cJSON_AddNumberToObject(j, "positions", n_pos);
    cJSON_AddBoolToObject(j, "clamped_to_context", r->clamped);
    cJSON_AddBoolToObject(j, "past_context", r->cfg.context_length > 0 && (uint32_t)n_pos > r->cfg.context_length);
    cJSON *ref = cJSON_AddObjectToObject(j, "reference");
    cJSON_AddStringToObject(ref, "detail", r->ref_detail);
    cJSON_AddNumberToObject(ref, "seconds", r->s_ref);
    cJSON_AddItemToObject(ref, "tokens", cJSON_CreateIntArray(r->ids + r->n_prompt, r->n_gen));
    cJSON_AddItemToObject(j, "prompt_tokens", cJSON_CreateIntArray(r->ids, r->n_prompt));
    cJSON *vars = cJSON_AddArrayToObject(j, "variants");
    for (int i = 0; i < r->n_var; i++) {
        const variant_result *v = &r->var[i];
        cJSON *vj = cJSON_CreateObject();
        cJSON_AddStringToObject(vj, "name", v->v->name);
        cJSON_AddStringToObject(vj, "description", v->v->what);
        cJSON_AddStringToObject(vj, "backend_detail", v->detail);
        if (!strcmp(o->test, "gpu")) {
            cJSON_AddStringToObject(vj, "kv_cache", v->v->kv_f32 ? "fp32" : "fp16");
            cJSON_AddStringToObject(vj, "activations", v->v->act_f32 ? "fp32" : "default");
        }
        cJSON *tf = cJSON_AddObjectToObject(vj, "teacher_forced");
        cJSON_AddNumberToObject(tf, "seconds", v->s_tf);
        cJSON_AddItemToObject(tf, "summary", json_summary(&v->all));
        cJSON *wins = cJSON_AddArrayToObject(tf, "windows");
        for (int w = 0; w < v->n_win; w++)
            cJSON_AddItemToArray(wins, json_summary(&v->win[w]));
        if (i == 0)
            cJSON_AddItemToObject(tf, "positions", json_positions(v, n_pos));
        cJSON *fr = cJSON_AddObjectToObject(vj, "free_running");
        cJSON_AddNumberToObject(fr, "seconds", v->s_fr);
        cJSON_AddNumberToObject(fr, "n_generated", r->n_gen);
        if (v->fr_first_div < 0) {
            cJSON_AddNullToObject(fr, "first_divergence");
            cJSON_AddNullToObject(fr, "first_divergence_pos");
        } else {
            cJSON_AddNumberToObject(fr, "first_divergence", v->fr_first_div);
            cJSON_AddNumberToObject(fr, "first_divergence_pos", r->n_prompt + v->fr_first_div);
        }
        cJSON_AddNumberToObject(fr, "nan_inf", (double)v->fr_nan_inf);
        cJSON_AddItemToObject(fr, "tokens", cJSON_CreateIntArray(v->fr_tokens, r->n_gen));
        cJSON_AddNumberToObject(vj, "nan_inf", (double)(v->all.nan_inf + v->fr_nan_inf));
        cJSON_AddItemToArray(vars, vj);
    }
    const variant_result *def = find_variant(r, "default");
    cJSON *blocks = cJSON_AddArrayToObject(j, "blocks");
    for (size_t b = 0; b < sizeof k_blocks / sizeof k_blocks[0] && def && strcmp(o->test, "cpu"); b++) {
        cJSON *bj = cJSON_CreateObject();
        cJSON_AddStringToObject(bj, "block", k_blocks[b].block);
        cJSON_AddStringToObject(bj, "gpu_precision", k_blocks[b].gpu);
        const variant_result *sw = k_blocks[b].variant ? find_variant(r, k_blocks[b].variant) : NULL;
        if (!k_blocks[b].variant) {
            cJSON_AddNullToObject(bj, "switch");
            cJSON_AddStringToObject(bj, "status", "already fp32");
            cJSON_AddNumberToObject(bj, "p99_rel_share", 0);
            cJSON_AddNumberToObject(bj, "mean_kl_share", 0);
        } else {
            cJSON_AddStringToObject(bj, "switch", k_blocks[b].variant);
            cJSON_AddStringToObject(bj, "status", sw ? "measured" : "not run");
            if (sw) {
                cJSON_AddNumberToObject(bj, "p99_rel_diff", sw->all.p99_rel);
                cJSON_AddNumberToObject(bj, "mean_kl", sw->all.mean_kl);
                cJSON_AddNumberToObject(bj, "p99_rel_share",
                                        def->all.p99_rel > 0 ? 1.0 - sw->all.p99_rel / def->all.p99_rel : 0.0);
                cJSON_AddNumberToObject(bj, "mean_kl_share",
                                        def->all.mean_kl > 0 ? 1.0 - sw->all.mean_kl / def->all.mean_kl : 0.0);
            }
        }
        cJSON_AddItemToArray(blocks, bj);
    }
    return j;
}

/* ---- the command -------------------------------------------------------------------------------------------- */

/* Writes --md and --json for the first n_res models (after each model, so a
 * run stopped early leaves what it measured); the final call also prints the
 * Markdown on stdout. 0 or -1. */
static int write_reports(const drift_opts *o, const model_result *res, int n_res, const char *text,
                         cJSON *backend_json, int final)
{
    char *md = NULL;
    size_t md_len = 0;
    FILE *mf = open_memstream(&md, &md_len);
    if (!mf) {
        fprintf(stderr, "greta drift: out of memory for the report\n");
        return -1;
    }
    md_report(mf, o, res, n_res, text);
    if (!final)
        fprintf(mf, "(%d of %d models so far: the run has not finished)\n", n_res, o->n_models);
    if (fclose(mf) != 0 || !md) {
        free(md);
        fprintf(stderr, "greta drift: out of memory for the report\n");
        return -1;
    }
    int rc = 0;
    if (final) {
        fputs(md, stdout);
        fflush(stdout);
    }
    if (o->md) {
        FILE *f = fopen(o->md, "w");
        int ok = f && fputs(md, f) >= 0;
        if (f && fclose(f) != 0)
            ok = 0;
        if (!ok) {
            fprintf(stderr, "greta drift: cannot write %s\n", o->md);
            rc = -1;
        } else if (final) {
            fprintf(stderr, "greta drift: wrote %s\n", o->md);
        }
    }
    free(md);
    if (o->json && rc == 0) {
        cJSON *root = cJSON_CreateObject();
        greta_compare_json_meta(root, "greta drift");
        cJSON_AddBoolToObject(root, "complete", final);
        cJSON *st = cJSON_AddObjectToObject(root, "settings");
        cJSON_AddStringToObject(st, "test", o->test);
        cJSON_AddStringToObject(st, "prompt", text);
        cJSON_AddNumberToObject(st, "n_requested", o->n);
        cJSON_AddBoolToObject(st, "past_context", o->past_context);
        cJSON_AddNumberToObject(st, "windows", DRIFT_WINDOWS);
        cJSON *va = cJSON_AddArrayToObject(st, "variants");
        for (int i = 0; i < o->n_variants; i++)
            cJSON_AddItemToArray(va, cJSON_CreateString(k_variants[o->variants[i]].name));
        cJSON_AddItemReferenceToObject(root, "test_backend", backend_json);
        const char *ref_detail = "";
        for (int m = n_res - 1; m >= 0; m--)
            if (res[m].ref_detail[0])
                ref_detail = res[m].ref_detail;
        cJSON_AddStringToObject(root, "reference_backend", ref_detail);
        cJSON *models = cJSON_AddArrayToObject(root, "models");
        for (int m = 0; m < n_res; m++)
            cJSON_AddItemToArray(models, json_model(o, &res[m]));
        rc = greta_compare_json_write(root, o->json, 1, "greta drift");
        cJSON_Delete(root);
        if (rc == 0 && final)
            fprintf(stderr, "greta drift: wrote %s\n", o->json);
    }
    return rc;
}

int cmd_drift(int argc, char **argv)
{
    drift_opts o = {.test = "gpu", .n = DRIFT_DEFAULT_N};
    int rc = parse_args(argc, argv, &o);
    if (rc)
        return rc == 1 ? 0 : 2;

    greta_error err = {0};
    char default_path[4096];
    if (o.n_models == 0) {
        if (greta_engine_default_model(default_path, sizeof default_path, &err)) {
            fprintf(stderr, "greta drift: %s\n", err.msg);
            return 1;
        }
        o.models[o.n_models++] = default_path;
    }
    char *file_text = NULL;
    const char *text = o.prompt ? o.prompt : "";
    size_t text_len = strlen(text);
    if (o.prompt_file) {
        if (!(file_text = greta_compare_read_text("greta drift", o.prompt_file, &text_len)))
            return 1;
        text = file_text;
    }

    int status = 1;
    model_result *res = calloc((size_t)o.n_models, sizeof *res);
    cJSON *backend_json = cJSON_CreateObject();
    if (!res || !backend_json) {
        fprintf(stderr, "greta drift: out of memory\n");
        goto done;
    }
    /* every model, also after one failed: the report says which could not be
     * measured; the files are rewritten after each model */
    int n_failed = 0;
    for (int i = 0; i < o.n_models; i++) {
        n_failed += run_model(&o, o.models[i], text, text_len, &res[i], backend_json) != 0;
        if (i + 1 < o.n_models && (o.md || o.json) &&
            write_reports(&o, res, i + 1, text, backend_json, 0) < 0)
            goto done;
    }
    if (write_reports(&o, res, o.n_models, text, backend_json, 1) < 0)
        goto done;
    status = n_failed ? 1 : 0;
    if (n_failed)
        fprintf(stderr, "greta drift: %d of %d models could not be measured\n", n_failed, o.n_models);
done:
    cJSON_Delete(backend_json);
    for (int i = 0; res && i < o.n_models; i++)
        model_result_free(&res[i]);
    free(res);
    free(file_text);
    return status;
}
