/* sampler-bench.c - microseconds per sample of the sampler at vocab 32000.
 *
 * Logits: 8 vectors of 32000 Gaussian values (std 3, a fixed generator),
 * cycled so one vector is not learned by the branch predictor. History: 256
 * random tokens. Each case: 200 warm-up samples, then 5 runs of 2000 samples;
 * prints the mean and the min/max of the per-run means. Wall clock
 * (CLOCK_MONOTONIC). Every case runs with the vocabulary-wide loops as AVX2
 * code (where the CPU has it) and as baseline code (greta_sampler_set_simd):
 * the checksums of the two must match. Usage: sampler-bench (no arguments).
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "sampler.h"

enum { VOCAB = 32000, NVEC = 8, HIST = 256, WARMUP = 200, RUNS = 5, ITERS = 2000 };

static uint64_t rng = 0x9E3779B97F4A7C15ull;
static double unit(void)
{
    rng = rng * 6364136223846793005ull + 1442695040888963407ull;
    return ((double)(rng >> 11) + 0.5) * 0x1.0p-53;
}

static double now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e6 + (double)ts.tv_nsec / 1e3;
}

typedef struct bench_case {
    const char *name;
    int reduced; /* 1: reduced path from the top-64 candidates */
    greta_sampler_params p;
} bench_case;

static float *logits[NVEC];
static int32_t cand_id[NVEC][64];
static float cand_l[NVEC][64];
static float cand_lse[NVEC];
static int32_t history[HIST];

static const float *sort_base;
static int by_logit_desc(const void *a, const void *b)
{
    float x = sort_base[*(const int32_t *)a], y = sort_base[*(const int32_t *)b];
    return x > y ? -1 : x < y ? 1 : *(const int32_t *)a - *(const int32_t *)b;
}

/* Top 64 of vector v and its log-sum-exp (setup only, not timed). */
static int make_candidates(int v)
{
    const float *l = logits[v];
    int32_t *idx = malloc(VOCAB * sizeof *idx);
    if (!idx)
        return 1;
    for (int i = 0; i < VOCAB; i++)
        idx[i] = i;
    sort_base = l;
    qsort(idx, VOCAB, sizeof *idx, by_logit_desc);
    for (int c = 0; c < 64; c++) {
        cand_id[v][c] = idx[c];
        cand_l[v][c] = l[idx[c]];
    }
    free(idx);
    double mx = cand_l[v][0], z = 0.0;
    for (int i = 0; i < VOCAB; i++)
        z += exp((double)l[i] - mx);
    cand_lse[v] = (float)(mx + log(z));
    return 0;
}

static int run_case(greta_sampler *s, const bench_case *bc)
{
    greta_sampler_state st;
    greta_sampler_state_init(&st, &bc->p, 0);
    greta_error err = {0};
    double means[RUNS];
    long sink = 0;
    for (int r = -1; r < RUNS; r++) {
        int n = r < 0 ? WARMUP : ITERS;
        double t0 = now_us();
        for (int i = 0; i < n; i++) {
            int v = i % NVEC;
            int32_t tok;
            int rc = bc->reduced
                         ? greta_sampler_sample_reduced(s, &st, cand_id[v], cand_l[v], 64,
                                                        cand_lse[v], &tok, NULL, &err)
                         : greta_sampler_sample(s, &st, logits[v], history, HIST, &tok, NULL,
                                                &err);
            if (rc) {
                fprintf(stderr, "sampler-bench: %s: %s\n", bc->name, err.msg);
                return 1;
            }
            sink += tok;
        }
        if (r >= 0)
            means[r] = (now_us() - t0) / n;
    }
    double mean = 0.0, lo = means[0], hi = means[0];
    for (int r = 0; r < RUNS; r++) {
        mean += means[r] / RUNS;
        lo = means[r] < lo ? means[r] : lo;
        hi = means[r] > hi ? means[r] : hi;
    }
    printf("%-44s %-8s %8.2f us/sample  (runs %.2f..%.2f)  [checksum %ld]\n", bc->name,
           greta_sampler_simd_active() ? "avx2" : "baseline", mean, lo, hi, sink);
    return 0;
}

int main(void)
{
    for (int v = 0; v < NVEC; v++) {
        logits[v] = malloc(VOCAB * sizeof(float));
        if (!logits[v])
            return 1;
        for (int i = 0; i < VOCAB; i++) /* Box-Muller, std 3 */
            logits[v][i] = (float)(3.0 * sqrt(-2.0 * log(unit())) * cos(6.283185307179586 * unit()));
        if (make_candidates(v))
            return 1;
    }
    for (int i = 0; i < HIST; i++)
        history[i] = (int32_t)(unit() * VOCAB);

    greta_sampler *s = NULL;
    greta_error err = {0};
    if (greta_sampler_create(VOCAB, &s, &err)) {
        fprintf(stderr, "sampler-bench: %s\n", err.msg);
        return 1;
    }
    bench_case cases[5];
    for (int i = 0; i < 5; i++)
        greta_sampler_params_default(&cases[i].p);
    cases[0].name = "greedy";
    cases[0].reduced = 0;
    cases[0].p.temperature = 0.0f;
    cases[1].name = "top-k 40, temp 0.8";
    cases[1].reduced = 0;
    cases[1].p.top_k = 40;
    cases[1].p.temperature = 0.8f;
    cases[2].name = "top-p 0.9, temp 0.8, penalties (last 64)";
    cases[2].reduced = 0;
    cases[2].p.top_p = 0.9f;
    cases[2].p.temperature = 0.8f;
    cases[2].p.repeat_penalty = 1.1f;
    cases[2].p.frequency_penalty = 0.1f;
    cases[2].p.presence_penalty = 0.1f;
    cases[2].p.penalty_last_n = 64;
    cases[3].name = "temp 0.8 only (full vocabulary draw)";
    cases[3].reduced = 0;
    cases[3].p.temperature = 0.8f;
    cases[4].name = "reduced path: top-k 40 of 64 candidates";
    cases[4].reduced = 1;
    cases[4].p.top_k = 40;
    cases[4].p.temperature = 0.8f;
    printf("sampler-bench: vocab %d, logits N(0, 3^2), %d samples x %d runs\n", VOCAB, ITERS,
           RUNS);
    int rc = 0;
    for (int i = 0; i < 5 && !rc; i++) {
        greta_sampler_set_simd(1);
        rc = run_case(s, &cases[i]);
        greta_sampler_set_simd(0);
        if (!rc)
            rc = run_case(s, &cases[i]);
    }
    greta_sampler_destroy(&s);
    for (int v = 0; v < NVEC; v++)
        free(logits[v]);
    return rc;
}
