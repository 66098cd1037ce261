/* cmd_bench.c - `greta bench`: prompt-processing and generation speed, like
 * llama-bench.
 *
 *   greta bench [-m MODEL] [-p 512] [-n 128] [-d 0,4096] [-r 5] [-t N[,N...]]
 *               [--backend cpu|gpu] [--cpu-isa auto|ref|avx2] [--json FILE]
 *
 * For each thread count and depth d (tokens already in the KV cache):
 *   pp<P>: P prompt tokens in one prefill (chunks of n_batch), timed until the
 *          first token is picked (argmax of the last logits): tokens/s = P / t,
 *          and that t is the time to first token;
 *   tg<N>: N greedy steps (argmax of the logits, then a forward pass of that
 *          token), timed per step: tokens/s = N / sum, p50/p99 of the steps.
 *          Where the backend picks top-k itself (the GPU backend's
 *          forward_topk, the gpu-worker's path for greedy requests) each
 *          forward returns only its argmax token (k = 1), as in serving;
 *          else the host takes the argmax of the logits. The JSON says
 *          which ("argmax": "backend" or "host"), and how many steps the
 *          GPU backend's greedy lookahead had enqueued before the call
 *          that took them ("lookahead_hits") or enqueued for nothing
 *          ("lookahead_misses": the one after the last step of each
 *          repetition, discarded by the next forward).
 * Each test runs -r times after an untimed warm-up (one forward of one
 * token and, with -p, one prefill of P tokens, so lazily loaded kernels
 * and libraries are not timed); the figures
 * are the mean and sample standard deviation over the repetitions (wall
 * clock, token read-back included). At depth 0 the tg test starts from BOS
 * alone, so its tokens are the greedy tokens of `greta run -n N --temp 0`
 * with an empty prompt; they are written to the JSON with their text.
 * Prompt and depth tokens are a fixed pseudo-random sequence (BOS first).
 *
 * The JSON holds the machine, backend, commit (greta_compare_commit:
 * $GRETA_COMMIT, else git rev-parse HEAD at run time, else "unknown";
 * "commit_source" says which, "commit_dirty" is null without git), for the
 * GPU backend the device ("gpu": name, arch, api, driver and runtime
 * versions, total and free-after-load memory, and the settings it resolved:
 * decode kernels, prefill path, KV cache type, graph, lookahead, early
 * launch), the model's size and hash
 * (sha256 of the whole file up to 64 MiB; above that, sha256 of the first
 * 16 MiB, the last 16 MiB and the size as 8 bytes little-endian;
 * "hash_method" says which), the flags and every sample.
 *
 * --pipeline: generation through the multi-process pipeline against the
 * same generation in process, in one run. It starts a temporary instance
 * (`greta up --instance bench-<pid> --slots 1` with the same model, backend
 * and threads; `greta down` at the end) or uses a running one (--instance
 * NAME: its model, backend and threads then apply to both sides). Each
 * repetition runs N tokens from BOS in process (engine + sampler library:
 * sample, then forward, timed per step, as tg<N> above: N samples and N
 * forward passes) and then as one request through the pipeline (tokens/s =
 * tokens / the time from Submit to the last streamed token: the BOS forward,
 * N - 1 more and N samples, plus everything the pipeline adds; the per-token
 * p50/p99 there are the gaps between streamed tokens as the client sees
 * them). Sampling: --temp, --top-k, --seed
 * (default greedy). The two token sequences must be identical, token for
 * token, in every repetition, or the command fails (exit 1) after writing the
 * JSON. overhead_pct = (in-process t/s / pipeline t/s - 1) * 100, the extra
 * time per token. The hand-off round trip (StepReady written -> the sampler's
 * step_done seen, the worker's own timing) comes from the worker's Stats:
 * p50/p99 in microseconds over the timed requests' steps, with the rows the
 * worker handed over reduced (top-1/top-k) or whole.
 *
 * Exit status: 0 ok, 1 runtime failure (or different tokens), 2 usage.
 */
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cJSON.h>

#include "common/utf8.h"
#include "commands.h"
#include "compare.h"
#include "gpu-worker/engine.h"
#ifdef GRETA_HAVE_GPU
#include "gpu-worker/gpu_backend.h"
#endif
#include "kernels/cpu/matmul.h"
#include "kernels/cpu/ops.h"
#include "proto/client.h"
#include "proto/endpoint.h"
#include "proto/msg.h"
#include "proto/shm.h"
#include "sampler/sampler.h"
#include "tokenizer/tokenizer.h"

#define BENCH_MAX_LIST 16
#define HASH_FULL_LIMIT ((uint64_t)64 << 20)
#define HASH_PART ((uint64_t)16 << 20)

static void usage(FILE *out)
{
    fprintf(out,
            "usage: greta bench [-m MODEL] [-p N] [-n N] [-d D[,D...]] [-r R] [-t T[,T...]]\n"
            "                   [--backend cpu|gpu] [--cpu-isa auto|ref|avx2] [--profile] [--json FILE]\n"
            "       greta bench --pipeline [--instance NAME] [-m MODEL] [-n N] [-r R] [-t T]\n"
            "                   [--temp T] [--top-k K] [--seed S] [--backend cpu|gpu] [--json FILE]\n"
            "  -m MODEL      GGUF model (default: %s, found as greta run finds it)\n"
            "  -p N          prompt tokens of the pp test (default 512; 0 = no pp test)\n"
            "  -n N          generated tokens of the tg test (default 128; 0 = no tg test)\n"
            "  -d D,...      depths: tokens already in the context (default 0)\n"
            "  -r R          repetitions (default 5)\n"
            "  -t T,...      thread counts (default: all this process may use)\n"
            "  --backend B   cpu (default) or gpu\n"
            "  --cpu-isa I   CPU kernels: auto (default), ref (plain C) or avx2\n"
            "  --json FILE   also write the results as JSON\n"
            "  --profile     --backend gpu: after the tests, one more tg<N> per depth with GPU\n"
            "                events around each block of a decode step (graph off), and a\n"
            "                table of ms per token, share of the step and GB/s per block\n"
            "  --pipeline    tg<N> through the multi-process pipeline vs in process (same\n"
            "                tokens required), with the per-step hand-off round trip\n"
            "  --instance NAME  --pipeline: use this running instance (default: start a\n"
            "                temporary one, bench-<pid>)\n"
            "  --temp T, --top-k K, --seed S  --pipeline: sampling (default greedy)\n"
            "Environment: GRETA_MEM_AVAILABLE=BYTES replaces MemAvailable in the memory check.\n"
            "Exit status: 0 ok, 1 runtime failure, 2 usage.\n",
            GRETA_DEFAULT_MODEL);
}

/* ---- SHA-256 (FIPS 180-4) ------------------------------------------------ */

typedef struct sha256_ctx {
    uint32_t h[8];
    uint64_t len;     /* bytes hashed */
    uint8_t buf[64];
    size_t n;         /* bytes in buf */
} sha256_ctx;

static const uint32_t sha256_k[64] = {
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
    0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
    0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
    0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
    0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
    0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
    0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
    0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
};

static uint32_t rotr(uint32_t x, int n)
{
    return (x >> n) | (x << (32 - n));
}

static void sha256_init(sha256_ctx *c)
{
    static const uint32_t h0[8] = {0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a,
                                   0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19};
    memcpy(c->h, h0, sizeof h0);
    c->len = 0;
    c->n = 0;
}

static void sha256_block(sha256_ctx *c, const uint8_t *p)
{
    uint32_t w[64];
    for (int i = 0; i < 16; i++)
        w[i] = (uint32_t)p[4 * i] << 24 | (uint32_t)p[4 * i + 1] << 16 | (uint32_t)p[4 * i + 2] << 8 |
               p[4 * i + 3];
    for (int i = 16; i < 64; i++) {
        const uint32_t s0 = rotr(w[i - 15], 7) ^ rotr(w[i - 15], 18) ^ (w[i - 15] >> 3);
        const uint32_t s1 = rotr(w[i - 2], 17) ^ rotr(w[i - 2], 19) ^ (w[i - 2] >> 10);
        w[i] = w[i - 16] + s0 + w[i - 7] + s1;
    }
    uint32_t a = c->h[0], b = c->h[1], cc = c->h[2], d = c->h[3];
    uint32_t e = c->h[4], f = c->h[5], g = c->h[6], h = c->h[7];
    for (int i = 0; i < 64; i++) {
        const uint32_t S1 = rotr(e, 6) ^ rotr(e, 11) ^ rotr(e, 25);
        const uint32_t ch = (e & f) ^ (~e & g);
        const uint32_t t1 = h + S1 + ch + sha256_k[i] + w[i];
        const uint32_t S0 = rotr(a, 2) ^ rotr(a, 13) ^ rotr(a, 22);
        const uint32_t maj = (a & b) ^ (a & cc) ^ (b & cc);
        const uint32_t t2 = S0 + maj;
        h = g;
        g = f;
        f = e;
        e = d + t1;
        d = cc;
        cc = b;
        b = a;
        a = t1 + t2;
    }
    c->h[0] += a;
    c->h[1] += b;
    c->h[2] += cc;
    c->h[3] += d;
    c->h[4] += e;
    c->h[5] += f;
    c->h[6] += g;
    c->h[7] += h;
}

static void sha256_update(sha256_ctx *c, const void *data, size_t n)
{
    const uint8_t *p = data;
    c->len += n;
    while (n > 0) {
        size_t k = 64 - c->n < n ? 64 - c->n : n;
        memcpy(c->buf + c->n, p, k);
        c->n += k;
        p += k;
        n -= k;
        if (c->n == 64) {
            sha256_block(c, c->buf);
            c->n = 0;
        }
    }
}

static void sha256_final(sha256_ctx *c, char hex[65])
{
    const uint64_t bits = c->len * 8;
    const uint8_t pad = 0x80, zero = 0;
    sha256_update(c, &pad, 1);
    while (c->n != 56)
        sha256_update(c, &zero, 1);
    uint8_t lenb[8];
    for (int i = 0; i < 8; i++)
        lenb[i] = (uint8_t)(bits >> (56 - 8 * i));
    sha256_update(c, lenb, 8);
    for (int i = 0; i < 8; i++)
        snprintf(hex + 8 * i, 9, "%08x", c->h[i]);
}

/* Hashes [off, off + n) of f into c. */
static int hash_range(FILE *f, uint64_t off, uint64_t n, sha256_ctx *c)
{
    static uint8_t buf[1 << 16];
    if (fseeko(f, (off_t)off, SEEK_SET) != 0)
        return -1;
    while (n > 0) {
        size_t k = n < sizeof buf ? (size_t)n : sizeof buf;
        if (fread(buf, 1, k, f) != k)
            return -1;
        sha256_update(c, buf, k);
        n -= k;
    }
    return 0;
}

/* sha256 of the file, or of its ends for big files; *method says which. */
static int model_hash(const char *path, uint64_t *size, char hex[65], const char **method)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return -1;
    int rc = -1;
    if (fseeko(f, 0, SEEK_END) == 0) {
        const off_t end = ftello(f);
        sha256_ctx c;
        sha256_init(&c);
        *size = (uint64_t)end;
        if (*size <= HASH_FULL_LIMIT) {
            *method = "sha256 of the whole file";
            rc = hash_range(f, 0, *size, &c);
        } else {
            *method = "sha256 of the first 16 MiB + the last 16 MiB + the file size (u64 little-endian)";
            rc = hash_range(f, 0, HASH_PART, &c);
            if (!rc)
                rc = hash_range(f, *size - HASH_PART, HASH_PART, &c);
            uint8_t le[8];
            for (int i = 0; i < 8; i++)
                le[i] = (uint8_t)(*size >> (8 * i));
            sha256_update(&c, le, 8);
        }
        if (!rc)
            sha256_final(&c, hex);
    }
    fclose(f);
    return rc;
}

/* ---- machine and commit ---------------------------------------------------- */

static void read_cpu_model(char *out, size_t n)
{
    snprintf(out, n, "unknown");
    FILE *f = fopen("/proc/cpuinfo", "r");
    if (!f)
        return;
    char line[512];
    while (fgets(line, sizeof line, f)) {
        if (!strncmp(line, "model name", 10)) {
            char *p = strchr(line, ':');
            if (p) {
                p++;
                while (*p == ' ')
                    p++;
                p[strcspn(p, "\n")] = '\0';
                snprintf(out, n, "%s", p);
            }
            break;
        }
    }
    fclose(f);
}

static uint64_t mem_total(void)
{
    FILE *f = fopen("/proc/meminfo", "r");
    uint64_t kb = 0;
    if (!f)
        return 0;
    char line[256];
    while (fgets(line, sizeof line, f))
        if (sscanf(line, "MemTotal: %" SCNu64 " kB", &kb) == 1)
            break;
    fclose(f);
    return kb * 1024;
}

/* 1-minute load average (other processes competing for the cores), or -1. */
static double load_avg(void)
{
    double l = -1;
    FILE *f = fopen("/proc/loadavg", "r");
    if (f) {
        if (fscanf(f, "%lf", &l) != 1)
            l = -1;
        fclose(f);
    }
    return l;
}

/* ---- argument parsing ---------------------------------------------------------- */

static int parse_int(const char *flag, const char *s, long lo, long hi, int32_t *out)
{
    char *end;
    errno = 0;
    long v = s ? strtol(s, &end, 10) : 0;
    if (!s || end == s || *end != '\0' || errno || v < lo || v > hi) {
        fprintf(stderr, "greta bench: %s needs an integer in %ld..%ld (got '%s')\n", flag, lo, hi,
                s ? s : "");
        return -1;
    }
    *out = (int32_t)v;
    return 0;
}

/* Comma-separated integers in lo..hi; at most BENCH_MAX_LIST. */
static int parse_list(const char *flag, const char *s, long lo, long hi, int32_t *out, int *n)
{
    *n = 0;
    if (!s || !*s) {
        fprintf(stderr, "greta bench: %s needs a value\n", flag);
        return -1;
    }
    char tmp[256];
    snprintf(tmp, sizeof tmp, "%s", s);
    char *save = NULL;
    for (char *tokp = strtok_r(tmp, ",", &save); tokp; tokp = strtok_r(NULL, ",", &save)) {
        if (*n == BENCH_MAX_LIST) {
            fprintf(stderr, "greta bench: %s takes at most %d values\n", flag, BENCH_MAX_LIST);
            return -1;
        }
        if (parse_int(flag, tokp, lo, hi, &out[*n]))
            return -1;
        (*n)++;
    }
    if (*n == 0) {
        fprintf(stderr, "greta bench: %s needs a value\n", flag);
        return -1;
    }
    return 0;
}

/* ---- statistics -------------------------------------------------------------------- */

static void mean_std(const double *x, int n, double *mean, double *sd)
{
    double s = 0;
    for (int i = 0; i < n; i++)
        s += x[i];
    *mean = n ? s / n : 0;
    double v = 0;
    for (int i = 0; i < n; i++)
        v += (x[i] - *mean) * (x[i] - *mean);
    *sd = n > 1 ? sqrt(v / (n - 1)) : 0;
}

static int cmp_double(const void *a, const void *b)
{
    const double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Nearest-rank percentile of sorted x[n]. */
static double percentile(const double *sorted, int n, double q)
{
    if (n == 0)
        return 0;
    int k = (int)ceil(q / 100.0 * n) - 1;
    if (k < 0)
        k = 0;
    if (k >= n)
        k = n - 1;
    return sorted[k];
}

/* Fixed pseudo-random tokens (splitmix64), BOS first when bos >= 0. */
static void fill_tokens(int32_t *t, int32_t n, int32_t vocab, int32_t bos, uint64_t seed)
{
    uint64_t s = seed;
    for (int32_t i = 0; i < n; i++) {
        uint64_t z = (s += 0x9e3779b97f4a7c15ull);
        z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
        z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
        z ^= z >> 31;
        t[i] = (int32_t)(z % (uint64_t)vocab);
    }
    if (n > 0 && bos >= 0)
        t[0] = bos;
}

/* ---- the tests -------------------------------------------------------------------------- */

typedef struct bench_opts {
    const char *model;
    int32_t p, n, r;
    int32_t depths[BENCH_MAX_LIST];
    int n_depths;
    int32_t threads[BENCH_MAX_LIST];
    int n_threads;
    const char *backend;
    greta_cpu_isa isa;
    const char *json;
    uint64_t mem_available;
    int profile; /* --profile */
    /* --pipeline */
    int pipeline;
    const char *instance;
    float temp;
    int32_t top_k;
    uint64_t seed;
} bench_opts;

static double now(void)
{
    return greta_now_s();
}

/* Clears sequence 0 and prefills n context tokens (untimed). */
static int fill_context(greta_engine *e, const int32_t *ctx, int32_t n, const float **logits,
                        greta_error *err)
{
    int rc = greta_engine_seq_clear(e, 0, err);
    if (!rc && n > 0)
        rc = greta_engine_prefill(e, 0, ctx, n, logits, err);
    return rc;
}

static cJSON *run_pp(greta_engine *e, const bench_opts *o, int32_t depth, const int32_t *ctx,
                     const int32_t *prompt, double *tps_mean, double *ttft_ms, greta_error *err)
{
    const int32_t vocab = (int32_t)greta_engine_config(e)->vocab_size;
    double tps[64], t_s[64];
    for (int rep = 0; rep < o->r; rep++) {
        const float *logits = NULL;
        if (fill_context(e, ctx, depth, &logits, err))
            return NULL;
        const double t0 = now();
        if (greta_engine_prefill(e, 0, prompt, o->p, &logits, err))
            return NULL;
        volatile int64_t first = greta_cpu_argmax(logits, vocab);
        (void)first;
        t_s[rep] = now() - t0;
        tps[rep] = o->p / t_s[rep];
    }
    double m, sd, tm, tsd;
    mean_std(tps, o->r, &m, &sd);
    mean_std(t_s, o->r, &tm, &tsd);
    *tps_mean = m;
    *ttft_ms = tm * 1e3;
    cJSON *j = cJSON_CreateObject();
    char name[64];
    snprintf(name, sizeof name, "pp%d", o->p);
    cJSON_AddStringToObject(j, "test", name);
    cJSON_AddNumberToObject(j, "n_prompt", o->p);
    cJSON_AddNumberToObject(j, "n_gen", 0);
    cJSON_AddNumberToObject(j, "depth", depth);
    cJSON_AddNumberToObject(j, "tokens_per_s_mean", m);
    cJSON_AddNumberToObject(j, "tokens_per_s_std", sd);
    cJSON_AddNumberToObject(j, "ttft_ms_mean", tm * 1e3);
    cJSON_AddNumberToObject(j, "ttft_ms_std", tsd * 1e3);
    cJSON_AddItemToObject(j, "samples_tokens_per_s", cJSON_CreateDoubleArray(tps, o->r));
    return j;
}

static cJSON *run_tg(greta_engine *e, const bench_opts *o, int32_t depth, const int32_t *ctx,
                     int32_t bos, const greta_tokenizer *tok, double *tps_mean, double *p50,
                     double *p99, greta_error *err)
{
    const int32_t vocab = (int32_t)greta_engine_config(e)->vocab_size;
    double tps[64];
    double *steps = malloc((size_t)o->r * (size_t)o->n * sizeof(double));
    int32_t *ids = malloc((size_t)o->n * sizeof(int32_t));
    cJSON *j = NULL;
    if (!steps || !ids) {
        greta_error_set(err, GRETA_ERR_NOMEM, "bench: out of memory");
        goto out;
    }
    const int on_backend = greta_engine_has_forward_topk(e);
    uint64_t hits0, misses0, hits1, misses1;
    greta_engine_lookahead(e, &hits0, &misses0);
    for (int rep = 0; rep < o->r; rep++) {
        const float *logits = NULL;
        const int32_t bos_only[1] = {bos < 0 ? 0 : bos};
        if (fill_context(e, depth > 0 ? ctx : bos_only, depth > 0 ? depth : 1, &logits, err))
            goto out;
        double total = 0;
        int32_t top = -1; /* the backend's argmax of the last forward */
        for (int32_t i = 0; i < o->n; i++) {
            const double t0 = now();
            const int32_t next = top >= 0 ? top : (int32_t)greta_cpu_argmax(logits, vocab);
            const int32_t pos = greta_engine_seq_len(e, 0);
            const int32_t seq = 0;
            const greta_batch b = {.n_tokens = 1, .tokens = &next, .pos = &pos, .seq = &seq};
            float val, lse;
            if (on_backend ? greta_engine_forward_topk(e, &b, 1, &top, &val, &lse, err)
                           : greta_engine_forward(e, &b, &logits, err))
                goto out;
            const double dt = now() - t0;
            steps[rep * o->n + i] = dt;
            total += dt;
            if (rep == 0)
                ids[i] = next;
        }
        tps[rep] = o->n / total;
    }
    greta_engine_lookahead(e, &hits1, &misses1);
    double m, sd;
    mean_std(tps, o->r, &m, &sd);
    const int ns = o->r * o->n;
    qsort(steps, (size_t)ns, sizeof *steps, cmp_double);
    *tps_mean = m;
    *p50 = percentile(steps, ns, 50) * 1e3;
    *p99 = percentile(steps, ns, 99) * 1e3;
    j = cJSON_CreateObject();
    char name[64];
    snprintf(name, sizeof name, "tg%d", o->n);
    cJSON_AddStringToObject(j, "test", name);
    cJSON_AddNumberToObject(j, "n_prompt", 0);
    cJSON_AddNumberToObject(j, "n_gen", o->n);
    cJSON_AddNumberToObject(j, "depth", depth);
    cJSON_AddStringToObject(j, "argmax", on_backend ? "backend" : "host");
    /* steps the GPU backend had enqueued before the call that took them
     * (greedy lookahead), and steps it enqueued that no call took */
    cJSON_AddNumberToObject(j, "lookahead_hits", (double)(hits1 - hits0));
    cJSON_AddNumberToObject(j, "lookahead_misses", (double)(misses1 - misses0));
    cJSON_AddNumberToObject(j, "tokens_per_s_mean", m);
    cJSON_AddNumberToObject(j, "tokens_per_s_std", sd);
    cJSON_AddNumberToObject(j, "ms_per_token_p50", *p50);
    cJSON_AddNumberToObject(j, "ms_per_token_p99", *p99);
    cJSON_AddItemToObject(j, "samples_tokens_per_s", cJSON_CreateDoubleArray(tps, o->r));
    cJSON_AddItemToObject(j, "tokens", cJSON_CreateIntArray(ids, o->n));
    if (tok) {
        size_t len = 0;
        greta_error derr = {0};
        const uint32_t flags = depth > 0 ? GRETA_DECODE_KEEP_SPACE : 0;
        greta_tokenizer_decode(tok, ids, (size_t)o->n, flags, NULL, 0, &len, &derr);
        char *text = malloc(len + 1);
        if (text && greta_tokenizer_decode(tok, ids, (size_t)o->n, flags, text, len + 1, &len, &derr) == 0) {
            char *clean = greta_utf8_sanitize(text, len); /* generated bytes may split a UTF-8 sequence */
            if (clean)
                cJSON_AddStringToObject(j, "text", clean);
            free(clean);
        }
        free(text);
    }
out:
    free(steps);
    free(ids);
    return j;
}

/* Everything one bench run shares across thread counts. */
typedef struct bench_run {
    const bench_opts *o;
    const int32_t *ctx_tokens; /* [max depth] */
    int32_t *prompt;           /* [p] */
    int32_t vocab, bos, eos;   /* eos: -1 when unknown */
    const greta_tokenizer *tok; /* may be NULL */
    const char *model_name;
    double size_mib;
    uint64_t n_params;
    cJSON *results, *root;
} bench_run;

#ifdef GRETA_HAVE_GPU
/* --profile: one tg<N> run per depth with the decode profile on; a table per
 * depth and a JSON object with the per-block figures. tps_off: the tg<N>
 * tokens/s of the same depth measured just before, profile off. */
static int bench_profile(bench_run *br, greta_engine *e, int32_t depth, double tps_off, greta_error *err)
{
    const bench_opts *o = br->o;
    bench_opts one = *o;
    one.r = 1;
    greta_backend *be = greta_engine_backend(e);
    int rc = greta_gpu_backend_profile_start(be, err);
    if (rc)
        return rc;
    double tps = 0, p50 = 0, p99 = 0;
    cJSON *r = run_tg(e, &one, depth, br->ctx_tokens, br->bos, NULL, &tps, &p50, &p99, err);
    greta_gpu_profile pr;
    greta_error serr = {0};
    rc = greta_gpu_backend_profile_stop(be, &pr, &serr);
    if (!r)
        return err->code ? err->code : GRETA_ERR_NOMEM;
    cJSON_Delete(r);
    if (rc) {
        *err = serr;
        return rc;
    }
    if (pr.tokens < 1)
        return greta_error_set(err, GRETA_ERR_STATE, "profile: no decode step was profiled");
    double total = 0;
    for (int k = 0; k < GRETA_GPU_PROF_N; k++)
        total += pr.ms[k];
    printf("\nprofile tg%d @ d%d: %" PRId64 " steps, GPU events around each block (graph off)\n", o->n, depth,
           pr.steps);
    printf("tokens/s: %.2f profile off (graph), %.2f profile on; GPU time per token %.3f ms\n", tps_off, tps,
           total / (double)pr.tokens);
    printf("| block | ms/token | share | GB/s |\n|---|---:|---:|---:|\n");
    cJSON *j = cJSON_CreateObject(), *blocks = cJSON_CreateArray();
    cJSON_AddNumberToObject(j, "depth", depth);
    cJSON_AddNumberToObject(j, "n_gen", o->n);
    cJSON_AddNumberToObject(j, "steps", (double)pr.steps);
    cJSON_AddNumberToObject(j, "tokens_per_s_profile_off", tps_off);
    cJSON_AddNumberToObject(j, "tokens_per_s_profile_on", tps);
    cJSON_AddNumberToObject(j, "gpu_ms_per_token", total / (double)pr.tokens);
    for (int k = 0; k < GRETA_GPU_PROF_N; k++) {
        const double ms = pr.ms[k] / (double)pr.tokens;
        const double gbs = pr.ms[k] > 0 ? pr.bytes[k] / (pr.ms[k] * 1e-3) / 1e9 : 0.0;
        const double share = total > 0 ? 100.0 * pr.ms[k] / total : 0.0;
        printf("| %s | %.4f | %.1f%% | %.0f |\n", greta_gpu_prof_block_name(k), ms, share, gbs);
        cJSON *bj = cJSON_CreateObject();
        cJSON_AddStringToObject(bj, "block", greta_gpu_prof_block_name(k));
        cJSON_AddNumberToObject(bj, "ms_per_token", ms);
        cJSON_AddNumberToObject(bj, "share_pct", share);
        cJSON_AddNumberToObject(bj, "bytes_per_token", pr.bytes[k] / (double)pr.tokens);
        cJSON_AddNumberToObject(bj, "gb_per_s", gbs);
        cJSON_AddItemToArray(blocks, bj);
    }
    fflush(stdout);
    cJSON_AddItemToObject(j, "blocks", blocks);
    cJSON *arr = cJSON_GetObjectItem(br->root, "profile");
    if (!arr) {
        arr = cJSON_CreateArray();
        cJSON_AddItemToObject(br->root, "profile", arr);
    }
    cJSON_AddItemToArray(arr, j);
    return GRETA_OK;
}
#endif

/* All tests (every depth, pp and tg) with one engine of ep->n_threads threads. */
static int bench_threads(bench_run *br, const greta_engine_params *ep, int first, greta_error *err)
{
    const bench_opts *o = br->o;
    greta_engine *e = NULL;
    int rc = greta_engine_open(o->model, ep, &e, err);
    if (rc)
        return rc;
    if (first) {
        char plan[1024];
        greta_engine_plan_format(greta_engine_plan(e), greta_engine_backend_params(e), plan, sizeof plan);
        fprintf(stderr, "%s", plan);
        cJSON_AddStringToObject(br->root, "backend", greta_engine_backend_name(e));
        cJSON_AddStringToObject(br->root, "cpu_isa",
                                greta_cpu_isa_name((greta_cpu_isa)greta_engine_backend_params(e)->cpu_isa));
        if (!strcmp(greta_engine_backend_name(e), "gpu"))
            greta_compare_json_gpu(cJSON_AddObjectToObject(br->root, "gpu"), greta_engine_backend(e));
    }
    /* warm-up: one forward pass (pages the weights in), then one prefill of
     * the prompt's length: the prefill path's kernels and libraries load
     * lazily at their first call (cuBLAS: about 10 ms at pp512, 70 ms at
     * pp4096), which would otherwise land in the first timed repetition */
    const float *logits;
    const int32_t warm = br->bos >= 0 && br->bos < br->vocab ? br->bos : 0;
    rc = fill_context(e, &warm, 1, &logits, err);
    if (!rc && o->p > 1) {
        fill_tokens(br->prompt, o->p, br->vocab, br->bos, 2);
        rc = fill_context(e, br->prompt, o->p, &logits, err);
    }
    for (int di = 0; di < o->n_depths && !rc; di++) {
        const int32_t d = o->depths[di];
        char dsuf[32] = "";
        if (d > 0)
            snprintf(dsuf, sizeof dsuf, " @ d%d", d);
        for (int kind = 0; kind < 2 && !rc; kind++) {
            if ((kind == 0 && o->p == 0) || (kind == 1 && o->n == 0))
                continue;
            double tps = 0, ttft = 0, p50 = 0, p99 = 0;
            cJSON *r;
            if (kind == 0) {
                fill_tokens(br->prompt, o->p, br->vocab, d == 0 ? br->bos : -1, 2);
                r = run_pp(e, o, d, br->ctx_tokens, br->prompt, &tps, &ttft, err);
            } else {
                r = run_tg(e, o, d, br->ctx_tokens, br->bos, br->tok, &tps, &p50, &p99, err);
            }
            if (!r) {
                rc = err->code ? err->code : GRETA_ERR_NOMEM;
                break;
            }
            cJSON_AddNumberToObject(r, "threads", ep->n_threads);
            cJSON_AddStringToObject(r, "backend_detail", greta_engine_backend_detail(e));
            cJSON_AddItemToArray(br->results, r);
            const double sd = cJSON_GetObjectItem(r, "tokens_per_s_std")->valuedouble;
            char cols[96];
            if (kind == 0)
                snprintf(cols, sizeof cols, "%.2f | | ", ttft);
            else
                snprintf(cols, sizeof cols, "| %.2f | %.2f ", p50, p99);
            printf("| %s | %.2f MiB | %.2f M | %s | %d | %s%d%s | %.2f ± %.2f | %s|\n", br->model_name, br->size_mib,
                   (double)br->n_params / 1e6, greta_engine_backend_name(e), ep->n_threads, kind ? "tg" : "pp",
                   kind ? o->n : o->p, dsuf, tps, sd, cols);
            fflush(stdout);
#ifdef GRETA_HAVE_GPU
            if (kind == 1 && o->profile && (rc = bench_profile(br, e, d, tps, err)))
                break;
#endif
        }
    }
    greta_engine_destroy(&e);
    return rc;
}

/* ---- --pipeline: the multi-process pipeline vs in process ------------------------ */

/* Runs `greta ARGS...` (this binary) with its stdout on our stderr; its exit status. */
static int run_greta(char *const *args)
{
    char self[4096];
    ssize_t k = readlink("/proc/self/exe", self, sizeof self - 1);
    if (k <= 0)
        return -1;
    self[k] = '\0';
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    if (pid < 0)
        return -1;
    if (pid == 0) {
        dup2(STDERR_FILENO, STDOUT_FILENO);
        execv(self, args);
        _exit(127);
    }
    int st = 0;
    while (waitpid(pid, &st, 0) < 0)
        if (errno != EINTR)
            return -1;
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

/* What an instance runs (from its segment header). */
typedef struct instance_info {
    char model[GRETA_SHM_PATH_LEN];
    char backend[16];
    int32_t threads;
    uint32_t n_ctx;
} instance_info;

static int instance_read(const char *instance, instance_info *ii, greta_error *err)
{
    char name[128];
    greta_shm *shm = NULL;
    int rc = greta_shm_name(instance, name, sizeof name, err);
    if (rc == 0)
        rc = greta_shm_attach(name, &shm, err);
    if (rc < 0)
        return greta_error_prefix(err, "instance '%s' (is it up?)", instance);
    const greta_shm_header *h = greta_shm_hdr(shm);
    if (!greta_shm_owner_alive(shm)) {
        greta_shm_detach(&shm);
        return greta_error_set(err, GRETA_ERR_STATE, "instance '%s' is not running (greta up --instance %s)",
                               instance, instance);
    }
    snprintf(ii->model, sizeof ii->model, "%s", h->model_path);
    snprintf(ii->backend, sizeof ii->backend, "%s", h->backend[0] ? h->backend : "cpu");
    ii->threads = h->n_threads;
    ii->n_ctx = h->n_ctx;
    greta_shm_detach(&shm);
    return GRETA_OK;
}

/* One pipeline request's stream: token ids and the time each arrived. */
typedef struct pipe_stream {
    int32_t *ids;
    double *t;
    int32_t n, cap;
} pipe_stream;

static int on_pipe_delta(void *ctx, uint32_t index, int32_t token, const char *text, size_t len, int batch)
{
    pipe_stream *ps = ctx;
    (void)text;
    (void)len;
    (void)batch;
    if (token < 0 || (int32_t)index != ps->n || ps->n >= ps->cap)
        return token < 0 ? 0 : 1;
    ps->t[ps->n] = now();
    ps->ids[ps->n++] = token;
    return 0;
}

/* Summary of one side: tokens/s per repetition and per-token times (ms). */
typedef struct side {
    double tps[64];
    double *step_ms; /* [r * n] */
    int n_steps;
    double request_ms[64];
} side;

static cJSON *side_json(const char *mode, const side *sd, int r, double *mean, double *p50, double *p99)
{
    double m, sdv;
    mean_std(sd->tps, r, &m, &sdv);
    qsort(sd->step_ms, (size_t)sd->n_steps, sizeof *sd->step_ms, cmp_double);
    *mean = m;
    *p50 = percentile(sd->step_ms, sd->n_steps, 50);
    *p99 = percentile(sd->step_ms, sd->n_steps, 99);
    cJSON *j = cJSON_CreateObject();
    cJSON_AddStringToObject(j, "mode", mode);
    cJSON_AddNumberToObject(j, "tokens_per_s_mean", m);
    cJSON_AddNumberToObject(j, "tokens_per_s_std", sdv);
    cJSON_AddNumberToObject(j, "ms_per_token_p50", *p50);
    cJSON_AddNumberToObject(j, "ms_per_token_p99", *p99);
    cJSON_AddItemToObject(j, "samples_tokens_per_s", cJSON_CreateDoubleArray(sd->tps, r));
    return j;
}

static int cmp_u32(const void *a, const void *b)
{
    const uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return (x > y) - (x < y);
}

/* The in-process side of one repetition: BOS, then n x (sample, forward). */
static int inproc_rep(greta_engine *e, greta_sampler *smp, const greta_sampler_params *sp, const bench_run *br,
                      int32_t *ids, int32_t *hist, double *step_ms, int32_t *n_out, double *tps, greta_error *err)
{
    const bench_opts *o = br->o;
    const float *logits = NULL;
    const int32_t bos = br->bos >= 0 && br->bos < br->vocab ? br->bos : 0;
    int rc = fill_context(e, &bos, 1, &logits, err);
    if (rc)
        return rc;
    greta_sampler_state st;
    greta_sampler_state_init(&st, sp, 0);
    hist[0] = bos;
    int32_t len = 1, n = 0;
    double total = 0;
    for (int32_t i = 0; i < o->n; i++) {
        const double t0 = now();
        int32_t next = -1;
        if ((rc = greta_sampler_sample(smp, &st, logits, hist, (size_t)len, &next, NULL, err)))
            return rc;
        if (next == br->eos)
            break;
        hist[len++] = next;
        const int32_t pos = len - 1, seq = 0;
        const greta_batch b = {.n_tokens = 1, .tokens = &next, .pos = &pos, .seq = &seq};
        if ((rc = greta_engine_forward(e, &b, &logits, err)))
            return rc;
        const double dt = now() - t0;
        step_ms[n] = dt * 1e3;
        total += dt;
        ids[n++] = next;
    }
    *n_out = n;
    *tps = total > 0 ? n / total : 0;
    return GRETA_OK;
}

/* The pipeline side of one repetition: one request of n tokens from BOS. */
static int pipeline_rep(greta_client *c, const greta_client_request *req, pipe_stream *ps, double *step_ms,
                        double *tps, double *request_ms, greta_error *err)
{
    ps->n = 0;
    const uint64_t rid = greta_client_request_id();
    const double t0 = now();
    int rc = greta_client_submit(c, rid, req, NULL, err);
    greta_client_result res;
    if (rc == 0)
        rc = greta_client_stream(c, rid, 0, on_pipe_delta, ps, &res, err);
    const double t1 = now();
    greta_error rerr = {0};
    greta_client_release(c, rid, &rerr);
    if (rc < 0)
        return rc;
    if ((int32_t)res.completion_tokens != ps->n)
        return greta_error_set(err, GRETA_ERR_STATE, "pipeline: %u tokens finished, %d streamed",
                               res.completion_tokens, ps->n);
    for (int32_t i = 1; i < ps->n; i++)
        step_ms[i - 1] = (ps->t[i] - ps->t[i - 1]) * 1e3;
    *tps = ps->n > 0 && ps->t[ps->n - 1] > t0 ? ps->n / (ps->t[ps->n - 1] - t0) : 0;
    *request_ms = (t1 - t0) * 1e3;
    return GRETA_OK;
}

/* Both sides, every repetition; fills the "pipeline" object of root. Returns
 * 0, 1 when the tokens differ (JSON still written), or a negative status. */
static int bench_pipeline(bench_run *br, const char *instance, int started, const greta_engine_params *ep,
                          greta_error *err)
{
    const bench_opts *o = br->o;
    const int32_t n = o->n;
    greta_engine *e = NULL;
    greta_sampler *smp = NULL;
    greta_client *c = NULL;
    greta_client_worker_stats *ws0 = calloc(2, sizeof *ws0), *ws1 = ws0 ? ws0 + 1 : NULL;
    int32_t *ref = malloc((size_t)n * sizeof *ref), *ids = malloc((size_t)n * sizeof *ids);
    int32_t *hist = malloc(((size_t)n + 2) * sizeof *hist);
    side in = {0}, pp = {0};
    in.step_ms = malloc((size_t)o->r * (size_t)n * sizeof(double));
    pp.step_ms = malloc((size_t)o->r * (size_t)n * sizeof(double));
    pipe_stream ps = {.ids = malloc((size_t)n * sizeof(int32_t)), .t = malloc((size_t)n * sizeof(double)), .cap = n};
    uint32_t *hs = NULL;
    int rc = 0, differ = 0, n_ref = -1;
    if (!ws0 || !ref || !ids || !hist || !in.step_ms || !pp.step_ms || !ps.ids || !ps.t) {
        rc = greta_error_set(err, GRETA_ERR_NOMEM, "bench: out of memory");
        goto out;
    }
    greta_sampler_params sp;
    greta_sampler_params_default(&sp);
    sp.temperature = o->temp;
    sp.top_k = o->top_k;
    sp.seed = o->seed;
    sp.penalty_last_n = 0;
    if ((rc = greta_sampler_params_validate(&sp, br->vocab, err)) < 0) {
        greta_error_prefix(err, "--temp/--top-k/--seed");
        goto out;
    }
    const int32_t bos = br->bos >= 0 && br->bos < br->vocab ? br->bos : 0;
    greta_client_request req = {.prompt = &bos, .n_prompt = 1, .max_tokens = n, .temperature = o->temp,
                                .top_k = o->top_k, .seed = o->seed};
    if ((rc = greta_engine_open(o->model, ep, &e, err)) < 0 || (rc = greta_sampler_create(br->vocab, &smp, err)) < 0 ||
        (rc = greta_client_open(instance, &c, err)) < 0)
        goto out;
    cJSON_AddStringToObject(br->root, "backend", greta_engine_backend_name(e));
    cJSON_AddStringToObject(br->root, "cpu_isa",
                            greta_cpu_isa_name((greta_cpu_isa)greta_engine_backend_params(e)->cpu_isa));
    /* warm-up: a forward in process, a short request through the pipeline */
    const float *logits;
    if ((rc = fill_context(e, &bos, 1, &logits, err)) < 0)
        goto out;
    greta_client_request warm = req;
    warm.max_tokens = n < 4 ? n : 4;
    double dummy_tps, dummy_ms;
    pipe_stream wps = ps;
    if ((rc = pipeline_rep(c, &warm, &wps, pp.step_ms, &dummy_tps, &dummy_ms, err)) < 0 ||
        (rc = greta_client_worker_stats_get(c, ws0, err)) < 0)
        goto out;
    for (int rep = 0; rep < o->r; rep++) {
        int32_t got = 0;
        if ((rc = inproc_rep(e, smp, &sp, br, ids, hist, in.step_ms + in.n_steps, &got, &in.tps[rep], err)) < 0)
            goto out;
        in.n_steps += got;
        if (n_ref < 0) {
            memcpy(ref, ids, (size_t)got * sizeof *ref);
            n_ref = got;
        }
        if (got != n_ref || memcmp(ids, ref, (size_t)got * sizeof *ref)) {
            rc = greta_error_set(err, GRETA_ERR_STATE, "in process: repetition %d gave other tokens", rep);
            goto out;
        }
        if ((rc = pipeline_rep(c, &req, &ps, pp.step_ms + pp.n_steps, &pp.tps[rep], &pp.request_ms[rep], err)) < 0)
            goto out;
        pp.n_steps += ps.n > 0 ? ps.n - 1 : 0;
        if (ps.n != n_ref || memcmp(ps.ids, ref, (size_t)n_ref * sizeof *ref)) {
            int32_t at = 0;
            while (at < ps.n && at < n_ref && ps.ids[at] == ref[at])
                at++;
            fprintf(stderr, "greta bench: repetition %d: the pipeline's tokens differ from the in-process ones at "
                    "token %d (pipeline %d tokens, in process %d)\n", rep, at, ps.n, n_ref);
            differ = 1;
        }
    }
    if ((rc = greta_client_worker_stats_get(c, ws1, err)) < 0)
        goto out;
    /* the hand-offs of the timed requests: the last (handoffs1 - handoffs0) samples */
    uint64_t nh = ws1->handoffs - ws0->handoffs;
    const uint32_t take = (uint32_t)(nh < ws1->n_handoff_ns ? nh : ws1->n_handoff_ns);
    hs = malloc((take ? take : 1) * sizeof *hs);
    if (!hs) {
        rc = greta_error_set(err, GRETA_ERR_NOMEM, "bench: out of memory");
        goto out;
    }
    memcpy(hs, ws1->handoff_ns + (ws1->n_handoff_ns - take), take * sizeof *hs);
    qsort(hs, take, sizeof *hs, cmp_u32);
    double hp50 = 0, hp99 = 0, hmean = 0;
    if (take) {
        int k50 = (int)ceil(0.50 * take) - 1, k99 = (int)ceil(0.99 * take) - 1;
        hp50 = hs[k50 < 0 ? 0 : k50] / 1e3;
        hp99 = hs[k99 < 0 ? 0 : k99] / 1e3;
        for (uint32_t i = 0; i < take; i++)
            hmean += hs[i] / 1e3;
        hmean /= take;
    }

    double in_m, in_p50, in_p99, pp_m, pp_p50, pp_p99;
    cJSON *pj = cJSON_AddObjectToObject(br->root, "pipeline");
    cJSON_AddStringToObject(pj, "instance", instance);
    cJSON_AddBoolToObject(pj, "instance_started", started);
    char name[32];
    snprintf(name, sizeof name, "tg%d", n);
    cJSON_AddStringToObject(pj, "test", name);
    cJSON_AddNumberToObject(pj, "n_gen", n);
    cJSON_AddNumberToObject(pj, "n_generated", n_ref);
    cJSON_AddNumberToObject(pj, "temperature", o->temp);
    cJSON_AddNumberToObject(pj, "top_k", o->top_k);
    cJSON_AddNumberToObject(pj, "seed", (double)o->seed);
    cJSON_AddNumberToObject(pj, "threads", ep->n_threads);
    cJSON_AddItemToObject(pj, "inproc", side_json("inproc", &in, o->r, &in_m, &in_p50, &in_p99));
    cJSON *pside = side_json("pipeline", &pp, o->r, &pp_m, &pp_p50, &pp_p99);
    cJSON_AddItemToObject(pside, "request_ms", cJSON_CreateDoubleArray(pp.request_ms, o->r));
    cJSON_AddItemToObject(pj, "pipeline", pside);
    const double overhead = pp_m > 0 ? (in_m / pp_m - 1.0) * 100.0 : 0;
    cJSON_AddNumberToObject(pj, "overhead_pct", overhead);
    cJSON_AddNumberToObject(pj, "handoff_us_p50", hp50);
    cJSON_AddNumberToObject(pj, "handoff_us_p99", hp99);
    cJSON_AddNumberToObject(pj, "handoff_us_mean", hmean);
    cJSON_AddNumberToObject(pj, "handoff_samples", take);
    cJSON_AddNumberToObject(pj, "handoff_rows_reduced", (double)(ws1->rows_reduced - ws0->rows_reduced));
    cJSON_AddNumberToObject(pj, "handoff_rows_full", (double)(ws1->rows_full - ws0->rows_full));
    /* the worker's greedy steps enqueued before the sampler answered, during the timed requests */
    cJSON_AddNumberToObject(pj, "lookahead_hits", (double)(ws1->lookahead_hits - ws0->lookahead_hits));
    cJSON_AddNumberToObject(pj, "lookahead_misses", (double)(ws1->lookahead_misses - ws0->lookahead_misses));
    cJSON_AddBoolToObject(pj, "tokens_identical", !differ);
    cJSON_AddItemToObject(pj, "tokens", cJSON_CreateIntArray(ref, n_ref));
    if (br->tok && n_ref > 0) {
        size_t len = 0;
        greta_error derr = {0};
        greta_tokenizer_decode(br->tok, ref, (size_t)n_ref, 0, NULL, 0, &len, &derr);
        char *text = malloc(len + 1);
        if (text && greta_tokenizer_decode(br->tok, ref, (size_t)n_ref, 0, text, len + 1, &len, &derr) == 0) {
            char *clean = greta_utf8_sanitize(text, len);
            if (clean)
                cJSON_AddStringToObject(pj, "text", clean);
            free(clean);
        }
        free(text);
    }
    printf("| %s | inproc | %d | %s | %.2f ± %.2f | %.3f | %.3f |\n", br->model_name, ep->n_threads, name, in_m,
           cJSON_GetObjectItem(cJSON_GetObjectItem(pj, "inproc"), "tokens_per_s_std")->valuedouble, in_p50, in_p99);
    printf("| %s | pipeline | %d | %s | %.2f ± %.2f | %.3f | %.3f |\n", br->model_name, ep->n_threads, name, pp_m,
           cJSON_GetObjectItem(pside, "tokens_per_s_std")->valuedouble, pp_p50, pp_p99);
    printf("pipeline overhead %+.1f%% per token; hand-off round trip p50 %.1f us, p99 %.1f us (%u steps: %llu "
           "reduced rows, %llu full; worker lookahead %llu hits, %llu misses); tokens %s\n",
           overhead, hp50, hp99, take, (unsigned long long)(ws1->rows_reduced - ws0->rows_reduced),
           (unsigned long long)(ws1->rows_full - ws0->rows_full),
           (unsigned long long)(ws1->lookahead_hits - ws0->lookahead_hits),
           (unsigned long long)(ws1->lookahead_misses - ws0->lookahead_misses), differ ? "DIFFER" : "identical");
    fflush(stdout);
    rc = differ;
out:
    greta_client_close(&c);
    greta_sampler_destroy(&smp);
    greta_engine_destroy(&e);
    free(ws0);
    free(ref);
    free(ids);
    free(hist);
    free(in.step_ms);
    free(pp.step_ms);
    free(ps.ids);
    free(ps.t);
    free(hs);
    return rc;
}

/* Machine, commit, model and flags; the results last. */
static void add_meta(cJSON *root, const bench_opts *o, const char *hex, const char *hash_method, uint64_t file_size,
                     uint64_t n_params, double load_before, int32_t n_ctx)
{
    char host[256] = "", cpu[256], commit[128];
    gethostname(host, sizeof host - 1);
    read_cpu_model(cpu, sizeof cpu);
    const char *commit_source = greta_compare_commit(commit, sizeof commit);
    const int dirty = !strcmp(commit_source, GRETA_COMMIT_FROM_GIT) ? greta_compare_commit_dirty() : -1;
    struct utsname un;
    char os[300] = "unknown";
    if (uname(&un) == 0)
        snprintf(os, sizeof os, "%s %s %s", un.sysname, un.release, un.machine);

    cJSON *mach = cJSON_AddObjectToObject(root, "machine");
    cJSON_AddStringToObject(mach, "hostname", host);
    cJSON_AddStringToObject(mach, "cpu", cpu);
    cJSON_AddNumberToObject(mach, "cpus_online", (double)sysconf(_SC_NPROCESSORS_ONLN));
    cJSON_AddNumberToObject(mach, "mem_total_bytes", (double)mem_total());
    cJSON_AddStringToObject(mach, "os", os);
    cJSON_AddStringToObject(mach, "avx2", greta_cpu_avx2_available() ? "yes" : "no");
    cJSON_AddNumberToObject(mach, "loadavg_1min_before", load_before);
    cJSON_AddNumberToObject(mach, "loadavg_1min_after", load_avg());
    cJSON_AddStringToObject(root, "commit", commit);
    cJSON_AddStringToObject(root, "commit_source", commit_source);
    if (dirty < 0)
        cJSON_AddNullToObject(root, "commit_dirty");
    else
        cJSON_AddBoolToObject(root, "commit_dirty", dirty);
    cJSON *mj = cJSON_AddObjectToObject(root, "model");
    cJSON_AddStringToObject(mj, "path", o->model);
    cJSON_AddNumberToObject(mj, "size_bytes", (double)file_size);
    cJSON_AddNumberToObject(mj, "n_params", (double)n_params);
    cJSON_AddStringToObject(mj, "sha256", hex);
    cJSON_AddStringToObject(mj, "hash_method", hash_method);
    cJSON *fl = cJSON_AddObjectToObject(root, "flags");
    if (!o->pipeline) {
        cJSON_AddNumberToObject(fl, "p", o->p);
        cJSON_AddItemToObject(fl, "d", cJSON_CreateIntArray(o->depths, o->n_depths));
    }
    cJSON_AddNumberToObject(fl, "n", o->n);
    cJSON_AddNumberToObject(fl, "r", o->r);
    cJSON_AddItemToObject(fl, "t", cJSON_CreateIntArray(o->threads, o->n_threads));
    cJSON_AddStringToObject(fl, "backend", o->backend);
    cJSON_AddStringToObject(fl, "cpu_isa", greta_cpu_isa_name(o->isa));
    cJSON_AddNumberToObject(fl, "n_ctx", n_ctx);
    if (o->pipeline) {
        cJSON_AddBoolToObject(fl, "pipeline", 1);
        cJSON_AddStringToObject(fl, "instance", o->instance ? o->instance : "");
        cJSON_AddNumberToObject(fl, "temp", o->temp);
        cJSON_AddNumberToObject(fl, "top_k", o->top_k);
        cJSON_AddNumberToObject(fl, "seed", (double)o->seed);
    }
}

static int write_json(cJSON *root, const char *path)
{
    char *s = cJSON_Print(root);
    FILE *f = s ? fopen(path, "w") : NULL;
    int ok = f && fputs(s, f) >= 0 && fputc('\n', f) != EOF;
    if (f && fclose(f) != 0)
        ok = 0;
    free(s);
    if (!ok) {
        fprintf(stderr, "greta bench: cannot write %s: %s\n", path, strerror(errno));
        return -1;
    }
    fprintf(stderr, "greta bench: wrote %s\n", path);
    return 0;
}

static int parse_float(const char *flag, const char *s, double lo, double hi, float *out)
{
    char *end;
    errno = 0;
    double v = s ? strtod(s, &end) : 0;
    if (!s || end == s || *end != '\0' || errno || !(v >= lo && v <= hi)) {
        fprintf(stderr, "greta bench: %s needs a number in %g..%g (got '%s')\n", flag, lo, hi, s ? s : "");
        return -1;
    }
    *out = (float)v;
    return 0;
}

int cmd_bench(int argc, char **argv)
{
    bench_opts o = {.p = 512, .n = 128, .r = 5, .n_depths = 1, .backend = "cpu", .isa = GRETA_CPU_ISA_AUTO};
    o.depths[0] = 0;
    int set_p = 0, set_d = 0, set_backend = 0, set_sampling = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        int rc = 0;
        greta_error perr = {0};
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            return 0;
        }
        if (!strcmp(a, "--pipeline")) {
            o.pipeline = 1;
            continue;
        }
        if (!strcmp(a, "--profile")) {
            o.profile = 1;
            continue;
        }
        if (!v) {
            fprintf(stderr, "greta bench: %s needs a value (or is unknown; see greta bench --help)\n", a);
            return 2;
        }
        if (!strcmp(a, "-m") || !strcmp(a, "--model"))
            o.model = v;
        else if (!strcmp(a, "-p") || !strcmp(a, "--n-prompt")) {
            rc = parse_int(a, v, 0, 1 << 20, &o.p);
            set_p = 1;
        } else if (!strcmp(a, "-n") || !strcmp(a, "--n-gen"))
            rc = parse_int(a, v, 0, 1 << 20, &o.n);
        else if (!strcmp(a, "-r") || !strcmp(a, "--repetitions"))
            rc = parse_int(a, v, 1, 64, &o.r);
        else if (!strcmp(a, "-d") || !strcmp(a, "--n-depth")) {
            rc = parse_list(a, v, 0, 1 << 22, o.depths, &o.n_depths);
            set_d = 1;
        } else if (!strcmp(a, "-t") || !strcmp(a, "--threads"))
            rc = parse_list(a, v, 1, 256, o.threads, &o.n_threads);
        else if (!strcmp(a, "--backend")) {
            o.backend = v;
            set_backend = 1;
        } else if (!strcmp(a, "--cpu-isa")) {
            if (greta_cpu_isa_parse(v, &o.isa, &perr)) {
                fprintf(stderr, "greta bench: --%s\n", perr.msg);
                return 2;
            }
        } else if (!strcmp(a, "--json"))
            o.json = v;
        else if (!strcmp(a, "--instance"))
            o.instance = v;
        else if (!strcmp(a, "--temp")) {
            rc = parse_float(a, v, 0, 100, &o.temp);
            set_sampling = 1;
        } else if (!strcmp(a, "--top-k")) {
            rc = parse_int(a, v, 0, 1 << 24, &o.top_k);
            set_sampling = 1;
        } else if (!strcmp(a, "--seed")) {
            char *end;
            errno = 0;
            o.seed = strtoull(v, &end, 10);
            if (end == v || *end || errno || *v == '-') {
                fprintf(stderr, "greta bench: --seed needs an unsigned integer (got '%s')\n", v);
                return 2;
            }
            set_sampling = 1;
        } else {
            fprintf(stderr, "greta bench: unknown option '%s' (see greta bench --help)\n", a);
            return 2;
        }
        if (rc)
            return 2;
        i++;
    }
    if (strcmp(o.backend, "cpu") && strcmp(o.backend, "gpu")) {
        fprintf(stderr, "greta bench: --backend must be cpu or gpu (got '%s')\n", o.backend);
        return 2;
    }
    if (o.profile && (strcmp(o.backend, "gpu") || o.pipeline || o.n < 1)) {
        fprintf(stderr, "greta bench: --profile times the GPU decode step: it needs --backend gpu and -n >= 1, "
                        "without --pipeline\n");
        return 2;
    }
#ifndef GRETA_HAVE_GPU
    if (o.profile) {
        fprintf(stderr, "greta bench: --profile: this greta was not built with GPU support (GRETA_GPU=none)\n");
        return 2;
    }
#endif
    if (!o.pipeline && (o.instance || set_sampling)) {
        fprintf(stderr, "greta bench: --instance, --temp, --top-k and --seed go with --pipeline\n");
        return 2;
    }
    if (o.pipeline) {
        if (set_p || set_d || o.n_threads > 1 || o.n < 1) {
            fprintf(stderr, "greta bench: --pipeline runs tg<N> only: no -p or -d, one -t, -n >= 1\n");
            return 2;
        }
        if (o.instance && (o.model || set_backend || o.n_threads)) {
            fprintf(stderr, "greta bench: with --instance the instance's model, backend and threads apply "
                            "(no -m, --backend or -t)\n");
            return 2;
        }
        greta_error ierr = {0};
        if (o.instance && greta_instance_check(o.instance, &ierr) < 0) {
            fprintf(stderr, "greta bench: --instance: %s\n", ierr.msg);
            return 2;
        }
        o.p = 0;
    }
    if (o.p == 0 && o.n == 0) {
        fprintf(stderr, "greta bench: nothing to do (-p 0 and -n 0)\n");
        return 2;
    }
    const char *mem_env = getenv("GRETA_MEM_AVAILABLE");
    if (mem_env && *mem_env) {
        char *end;
        errno = 0;
        unsigned long long v = strtoull(mem_env, &end, 10);
        if (*end || errno || *mem_env == '-') {
            fprintf(stderr, "greta bench: GRETA_MEM_AVAILABLE must be a byte count (got '%s')\n", mem_env);
            return 2;
        }
        o.mem_available = v;
    }

    greta_error err = {0};
    char default_path[4096];
    instance_info ii = {0};
    if (o.pipeline && o.instance) { /* the instance's model, backend and threads */
        if (instance_read(o.instance, &ii, &err) < 0) {
            fprintf(stderr, "greta bench: %s\n", err.msg);
            return 1;
        }
        if (ii.n_ctx < (uint32_t)o.n + 2) {
            fprintf(stderr, "greta bench: instance '%s' has a context of %u positions; -n %d needs %d\n", o.instance,
                    ii.n_ctx, o.n, o.n + 2);
            return 1;
        }
        o.model = ii.model;
        o.backend = ii.backend;
        if (ii.threads > 0) {
            o.threads[0] = ii.threads;
            o.n_threads = 1;
        }
    }
    if (!o.model) {
        if (greta_engine_default_model(default_path, sizeof default_path, &err)) {
            fprintf(stderr, "greta bench: %s\n", err.msg);
            return 1;
        }
        o.model = default_path;
    }
    int32_t max_depth = 0;
    for (int i = 0; i < o.n_depths && !o.pipeline; i++)
        if (o.depths[i] > max_depth)
            max_depth = o.depths[i];

    int status = 1;
    greta_model *model = NULL;
    greta_tokenizer *tok = NULL;
    int32_t *ctx_tokens = NULL, *prompt = NULL;
    cJSON *root = cJSON_CreateObject(), *results = cJSON_CreateArray();
    char hex[65] = "";
    const char *hash_method = "";
    uint64_t file_size = 0;
    char temp_instance[GRETA_INSTANCE_MAX + 1] = "";

    if (model_hash(o.model, &file_size, hex, &hash_method) != 0) {
        fprintf(stderr, "greta bench: cannot read %s: %s\n", o.model, strerror(errno));
        goto done;
    }
    if (greta_model_open(o.model, &model, &err)) {
        fprintf(stderr, "greta bench: %s\n", err.msg);
        goto done;
    }
    const int32_t vocab = (int32_t)model->cfg.vocab_size;
    greta_error terr = {0};
    if (greta_tokenizer_create_from_gguf(model->file, &tok, &terr))
        fprintf(stderr, "greta bench: no tokenizer (%s); generated text is left out\n", terr.msg);
    const int32_t bos = tok ? greta_tokenizer_bos(tok) : 1;
    const int32_t eos = tok ? greta_tokenizer_eos(tok) : -1;
    uint64_t n_params = 0;
    for (uint64_t i = 0; i < gguf_n_tensors(model->file); i++)
        n_params += gguf_tensor_at(model->file, i)->n_elements;

    ctx_tokens = malloc(((size_t)max_depth + 1) * sizeof(int32_t));
    prompt = malloc(((size_t)o.p + 1) * sizeof(int32_t));
    if (!ctx_tokens || !prompt || !root || !results) {
        fprintf(stderr, "greta bench: out of memory\n");
        goto done;
    }
    fill_tokens(ctx_tokens, max_depth, vocab, bos, 1);

    if (o.n_threads == 0) {
        greta_engine_params dp;
        greta_engine_params_default(&dp);
        greta_backend_params bp;
        greta_mem_plan plan;
        if (greta_engine_plan_model(model, &dp, &bp, &plan, &err)) {
            fprintf(stderr, "greta bench: %s\n", err.msg);
            goto done;
        }
        o.threads[0] = bp.n_threads;
        o.n_threads = 1;
    }
    const int32_t need = o.p > o.n + 1 ? o.p : o.n + 1;
    greta_engine_params ep;
    greta_engine_params_default(&ep);
    ep.backend = o.backend;
    ep.n_ctx = max_depth + need + (o.pipeline ? 1 : 0);
    ep.cpu_isa = (int32_t)o.isa;
    ep.mem_available = o.mem_available;

    const double load_before = load_avg();
    {
        char date[64];
        const time_t tnow = time(NULL);
        struct tm tmv;
        gmtime_r(&tnow, &tmv);
        strftime(date, sizeof date, "%Y-%m-%dT%H:%M:%SZ", &tmv);
        cJSON_AddStringToObject(root, "tool", o.pipeline ? "greta bench --pipeline" : "greta bench");
        cJSON_AddStringToObject(root, "date", date); /* the start, UTC */
    }
    const double size_mib = (double)file_size / (1024.0 * 1024.0);
    bench_run br = {.o = &o, .ctx_tokens = ctx_tokens, .prompt = prompt, .vocab = vocab, .bos = bos, .eos = eos,
                    .tok = tok, .model_name = strrchr(o.model, '/') ? strrchr(o.model, '/') + 1 : o.model,
                    .size_mib = size_mib, .n_params = n_params, .results = results, .root = root};
    int differ = 0;
    if (o.pipeline) {
        ep.n_threads = o.threads[0];
        const char *inst = o.instance;
        if (!inst) { /* a temporary instance with the same model, backend and threads */
            snprintf(temp_instance, sizeof temp_instance, "bench-%d", (int)getpid());
            char ctx[32], thr[32];
            snprintf(ctx, sizeof ctx, "%d", ep.n_ctx);
            snprintf(thr, sizeof thr, "%d", ep.n_threads);
            char *up[] = {"greta", "up", "-m", (char *)o.model, "--instance", temp_instance, "--backend",
                          (char *)o.backend, "-t", thr, "--slots", "1", "--ctx", ctx, NULL};
            fprintf(stderr, "greta bench: starting instance %s\n", temp_instance);
            if (run_greta(up) != 0) {
                fprintf(stderr, "greta bench: `greta up --instance %s` failed\n", temp_instance);
                goto done;
            }
            inst = temp_instance;
        }
        printf("| model | mode | threads | test | t/s | p50 ms | p99 ms |\n");
        printf("| --- | --- | ---: | --- | ---: | ---: | ---: |\n");
        int rc = bench_pipeline(&br, inst, !o.instance, &ep, &err);
        if (rc < 0) {
            fprintf(stderr, "greta bench: %s\n", err.msg);
            goto done;
        }
        differ = rc;
    } else {
        printf("| model | size | params | backend | threads | test | t/s | TTFT ms | p50 ms | p99 ms |\n");
        printf("| --- | ---: | ---: | --- | ---: | --- | ---: | ---: | ---: | ---: |\n");
        for (int ti = 0; ti < o.n_threads; ti++) {
            ep.n_threads = o.threads[ti];
            if (bench_threads(&br, &ep, ti == 0, &err)) {
                fprintf(stderr, "greta bench: %s\n", err.msg);
                goto done;
            }
        }
    }

    if (o.json) {
        add_meta(root, &o, hex, hash_method, file_size, n_params, load_before, ep.n_ctx);
        if (!o.pipeline) { /* --pipeline: its results are in "pipeline" */
            cJSON_AddItemToObject(root, "results", results);
            results = NULL;
        }
        if (write_json(root, o.json) < 0)
            goto done;
    }
    if (differ) {
        fprintf(stderr, "greta bench: the pipeline and the in-process run gave different tokens\n");
        goto done;
    }
    status = 0;

done:
    if (temp_instance[0]) {
        char *down[] = {"greta", "down", "--instance", temp_instance, NULL};
        char dir[GRETA_PATH_MAX];
        greta_error derr = {0};
        if (run_greta(down) != 0)
            fprintf(stderr, "greta bench: `greta down --instance %s` failed\n", temp_instance);
        else if (greta_runtime_dir(temp_instance, dir, sizeof dir, &derr) == 0) {
            if (status == 0)
                greta_runtime_dir_clean(dir, 1); /* its logs too */
            else
                fprintf(stderr, "greta bench: the stage logs of %s stay in %s\n", temp_instance, dir);
        }
    }
    cJSON_Delete(results);
    cJSON_Delete(root);
    free(ctx_tokens);
    free(prompt);
    greta_tokenizer_destroy(&tok);
    greta_model_close(&model);
    return status;
}
