/* compare.c - logit-row comparison and report plumbing shared by
 * `greta parity` and `greta drift` (compare.h). */
#include "compare.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "gpu-worker/cpu_backend.h"
#include "kernels/cpu/ops.h"
#ifdef GRETA_HAVE_GPU
#include "gpu-worker/gpu_backend.h"
#endif

/* ---- arguments ---------------------------------------------------------------------- */

int greta_compare_parse_int(const char *s, int32_t lo, int32_t hi, int32_t *out)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end || v < lo || v > hi)
        return -1;
    *out = (int32_t)v;
    return 0;
}

int greta_compare_parse_double(const char *s, double lo, double hi, double *out)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || *end || !(v >= lo && v <= hi))
        return -1;
    *out = v;
    return 0;
}

/* ---- statistics ------------------------------------------------------------------- */

/* Total order for selection: numbers ascending, NaN above everything. */
static int before(double a, double b)
{
    return a < b || (!isnan(a) && isnan(b));
}

double greta_compare_quantile(double *v, size_t n, double q)
{
    if (n == 0)
        return 0.0;
    size_t rank = (size_t)ceil(q * (double)n);
    if (rank < 1)
        rank = 1;
    if (rank > n)
        rank = n;
    const size_t want = rank - 1;
    /* quickselect (Hoare partition, median of three) */
    size_t lo = 0, hi = n - 1;
    while (lo < hi) {
        const size_t mid = lo + (hi - lo) / 2;
        double a = v[lo], b = v[mid], c = v[hi], pivot;
        if (before(a, b))
            pivot = before(b, c) ? b : (before(a, c) ? c : a);
        else
            pivot = before(a, c) ? a : (before(b, c) ? c : b);
        size_t i = lo, j = hi;
        for (;;) {
            while (before(v[i], pivot))
                i++;
            while (before(pivot, v[j]))
                j--;
            if (i >= j)
                break;
            const double t = v[i];
            v[i] = v[j];
            v[j] = t;
            i++;
            j--;
        }
        /* v[lo..j] <= pivot <= v[j+1..hi] */
        if (want <= j)
            hi = j;
        else
            lo = j + 1;
    }
    return v[want];
}

void greta_compare_topk(const float *x, int32_t n, int32_t k, int32_t *ids)
{
    if (k > GRETA_COMPARE_MAX_K)
        k = GRETA_COMPARE_MAX_K;
    int32_t m = 0;
    for (int32_t i = 0; i < n && k > 0; i++) {
        if (isnan(x[i]))
            continue;
        if (m == k && !(x[i] > x[ids[k - 1]]))
            continue;
        int32_t j = m < k ? m++ : k - 1;
        while (j > 0 && x[ids[j - 1]] < x[i]) {
            ids[j] = ids[j - 1];
            j--;
        }
        ids[j] = i;
    }
    for (int32_t j = m; j < k; j++)
        ids[j] = -1;
}

double greta_compare_topk_overlap(const float *a, const float *b, int32_t n, int32_t k)
{
    if (k > GRETA_COMPARE_MAX_K)
        k = GRETA_COMPARE_MAX_K;
    if (k <= 0)
        return 0.0;
    int32_t ia[GRETA_COMPARE_MAX_K], ib[GRETA_COMPARE_MAX_K], common = 0;
    greta_compare_topk(a, n, k, ia);
    greta_compare_topk(b, n, k, ib);
    for (int32_t i = 0; i < k; i++)
        for (int32_t j = 0; j < k; j++)
            common += ia[i] >= 0 && ia[i] == ib[j];
    return (double)common / k;
}

double greta_compare_log_sum_exp(const float *x, int32_t n)
{
    double m = -INFINITY;
    for (int32_t i = 0; i < n; i++)
        if (x[i] > m)
            m = x[i];
    double s = 0.0;
    for (int32_t i = 0; i < n; i++)
        s += exp((double)x[i] - m);
    return m + log(s);
}

void greta_compare_row(const float *ref, const float *test, int32_t n, greta_compare_row_stats *st, double *rel,
                       double *scratch)
{
    double s = 0.0, s2 = 0.0;
    st->nan_inf = 0;
    for (int32_t i = 0; i < n; i++) {
        s += ref[i];
        s2 += (double)ref[i] * ref[i];
        if (!isfinite(test[i]))
            st->nan_inf++;
    }
    const double mean = s / n;
    double sd = sqrt(fmax(s2 / n - mean * mean, 0.0));
    st->std_ref = sd;
    if (sd == 0.0)
        sd = 1.0;
    st->max_abs = 0.0;
    for (int32_t i = 0; i < n; i++) {
        const double d = fabs((double)test[i] - ref[i]);
        rel[i] = isfinite(d) ? d / sd : INFINITY;
        if (!(d <= st->max_abs))
            st->max_abs = isfinite(d) ? d : INFINITY;
    }
    st->max_rel = st->max_abs / sd;
    st->top1_ref = (int32_t)greta_cpu_argmax(ref, n);
    st->top1_test = (int32_t)greta_cpu_argmax(test, n);
    st->top5 = greta_compare_topk_overlap(ref, test, n, 5);
    st->top10 = greta_compare_topk_overlap(ref, test, n, 10);
    const double lr = greta_compare_log_sum_exp(ref, n), lt = greta_compare_log_sum_exp(test, n);
    double kl = 0.0;
    for (int32_t i = 0; i < n; i++) {
        const double lp = (double)ref[i] - lr, lq = (double)test[i] - lt;
        kl += exp(lp) * (lp - lq);
    }
    st->kl = kl > 0.0 ? kl : 0.0; /* >= 0; a negative sum is rounding (NaN stays NaN) */
    if (isnan(kl))
        st->kl = NAN;
    memcpy(scratch, rel, sizeof(double) * (size_t)n);
    st->p99_rel = greta_compare_quantile(scratch, (size_t)n, 0.99);
    st->p99_abs = st->p99_rel * sd;
}

/* ---- backends ------------------------------------------------------------------------ */

/* A backend of kind "cpu" or "gpu": kv_f16 the fp16 KV cache, and for the
 * GPU decode_kernels (greta_gpu_backend_opts; 0: the default). */
static int backend_create(const char *kind, int kv_f16, int decode_kernels, const greta_model *m,
                          const greta_backend_params *p, greta_backend **out, greta_error *err)
{
    if (!strcmp(kind, "cpu")) {
        const greta_cpu_backend_opts co = {.kv_f16 = kv_f16};
        return greta_cpu_backend_create_opts(m, p, &co, out, err);
    }
#ifdef GRETA_HAVE_GPU
    const greta_gpu_backend_opts go = {.kv_type = kv_f16 ? GRETA_GPU_KV_F16 : GRETA_GPU_KV_F32,
                                       .decode_kernels = decode_kernels};
    return greta_gpu_backend_create_opts(m, p, &go, out, err);
#else
    (void)kv_f16, (void)decode_kernels;
    return greta_error_set(err, GRETA_ERR_UNSUPPORTED,
                           "backend 'gpu': this greta was not built with GPU support (GRETA_GPU=none); "
                           "rebuild with -DGRETA_GPU=cuda or -DGRETA_GPU=hip, or use --test cpu");
#endif
}

int greta_compare_backend_create(const char *kind, int kv_f32, int act_f32, const greta_model *m,
                                 const greta_backend_params *p, greta_backend **out, greta_error *err)
{
    /* act_f32: decode v5, the last decode path with fp32 inputs to every product */
    return backend_create(kind, strcmp(kind, "cpu") ? !kv_f32 : 0, act_f32 ? 5 : 0, m, p, out, err);
}

int greta_compare_backend_create_kv(const char *kind, int kv_f16, const greta_model *m, const greta_backend_params *p,
                                    greta_backend **out, greta_error *err)
{
    return backend_create(kind, kv_f16, 0, m, p, out, err);
}

int greta_compare_feed(greta_backend *b, const int32_t *toks, int32_t n, int32_t start, int32_t n_batch,
                       float *logits, greta_error *err)
{
    if (n_batch < 1)
        return greta_error_set(err, GRETA_ERR_INVALID, "feed: n_batch %d < 1", n_batch);
    int32_t *pos = malloc(sizeof(int32_t) * (size_t)n_batch), *seq = calloc((size_t)n_batch, sizeof(int32_t));
    uint8_t *want = malloc((size_t)n_batch);
    const int32_t vocab = (int32_t)b->model->cfg.vocab_size;
    int rc = GRETA_OK;
    if (!pos || !seq || !want) {
        rc = greta_error_set(err, GRETA_ERR_NOMEM, "feed: out of memory");
        goto done;
    }
    memset(want, 1, (size_t)n_batch);
    for (int32_t done = 0; done < n && !rc;) {
        const int32_t k = n - done < n_batch ? n - done : n_batch;
        for (int32_t i = 0; i < k; i++)
            pos[i] = start + done + i;
        const greta_batch batch = {.n_tokens = k, .tokens = toks + done, .pos = pos, .seq = seq, .want_logits = want};
        if ((rc = b->ops->forward(b, &batch, logits + (size_t)done * vocab, err)))
            break;
        done += k;
    }
done:
    free(pos);
    free(seq);
    free(want);
    return rc;
}

/* ---- files and JSON ---------------------------------------------------------------------- */

char *greta_compare_read_text(const char *tool, const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        fprintf(stderr, "%s: cannot open %s: %s\n", tool, path, strerror(errno));
        return NULL;
    }
    size_t cap = 4096, n = 0;
    char *buf = malloc(cap);
    while (buf) {
        if (n + 1 >= cap) {
            char *nb = cap < ((size_t)64 << 20) ? realloc(buf, cap * 2) : NULL;
            if (!nb) {
                fprintf(stderr, "%s: %s is too large (64 MiB at most)\n", tool, path);
                free(buf);
                buf = NULL;
                break;
            }
            buf = nb;
            cap *= 2;
        }
        size_t r = fread(buf + n, 1, cap - n - 1, f);
        n += r;
        if (r == 0)
            break;
    }
    fclose(f);
    if (buf)
        buf[n] = '\0';
    *len = n;
    return buf;
}

/* The first line of a shell command's output into out ("" when there is
 * none; the rest is read and dropped); 0 when the command exited with
 * status 0. */
static int run_line(const char *cmd, char *out, size_t n)
{
    out[0] = '\0';
    FILE *p = popen(cmd, "r");
    if (!p)
        return -1;
    if (fgets(out, (int)n, p))
        out[strcspn(out, "\n")] = '\0';
    else
        out[0] = '\0';
    char drop[256];
    while (fread(drop, 1, sizeof drop, p) > 0)
        ;
    const int st = pclose(p);
    return st == 0 ? 0 : -1;
}

/* 1 when s is a full git object name: 40 (SHA-1) or 64 (SHA-256) hex digits. */
static int is_object_name(const char *s)
{
    const size_t n = strlen(s);
    return (n == 40 || n == 64) && strspn(s, "0123456789abcdef") == n;
}

const char *greta_compare_commit(char *out, size_t n)
{
    const char *env_commit = getenv("GRETA_COMMIT");
    if (env_commit && *env_commit) {
        snprintf(out, n, "%s", env_commit);
        return GRETA_COMMIT_FROM_ENV;
    }
    char line[128];
    if (run_line("git -C '" GRETA_SOURCE_DIR "' rev-parse --verify -q HEAD 2>/dev/null", line, sizeof line) == 0 &&
        is_object_name(line)) {
        snprintf(out, n, "%s", line);
        return GRETA_COMMIT_FROM_GIT;
    }
    snprintf(out, n, "unknown");
    return GRETA_COMMIT_FROM_NONE;
}

int greta_compare_commit_dirty(void)
{
    char line[8];
    if (run_line("git -C '" GRETA_SOURCE_DIR "' status --porcelain --untracked-files=no 2>/dev/null", line,
                 sizeof line) != 0)
        return -1;
    return line[0] != '\0';
}

void greta_compare_json_meta(cJSON *root, const char *tool)
{
    char date[64], commit[128];
    time_t now = time(NULL);
    struct tm tmv;
    gmtime_r(&now, &tmv);
    strftime(date, sizeof date, "%Y-%m-%dT%H:%M:%SZ", &tmv);
    greta_compare_commit(commit, sizeof commit);
    cJSON_AddStringToObject(root, "tool", tool);
    cJSON_AddStringToObject(root, "date", date);
    cJSON_AddStringToObject(root, "commit", commit);
}

void greta_compare_json_gpu(cJSON *obj, const greta_backend *b)
{
#ifdef GRETA_HAVE_GPU
    greta_gpu_info gi;
    greta_gpu_backend_mem mem;
    greta_error err = {0};
    if (greta_gpu_backend_is(b) && greta_gpu_backend_info(b, &gi, &mem, &err) == 0) {
        cJSON_AddStringToObject(obj, "device", gi.name);
        cJSON_AddStringToObject(obj, "arch", gi.arch);
        cJSON_AddStringToObject(obj, "api", gi.api);
        cJSON_AddNumberToObject(obj, "driver_version", gi.driver_version);
        cJSON_AddNumberToObject(obj, "runtime_version", gi.runtime_version);
        cJSON_AddNumberToObject(obj, "total_mem_bytes", (double)gi.total_mem);
        cJSON_AddNumberToObject(obj, "free_mem_after_load_bytes", (double)mem.free_after_load);
    }
    greta_gpu_backend_settings st;
    if (greta_gpu_backend_settings_get(b, &st, &err) == 0) {
        char kernels[8];
        snprintf(kernels, sizeof kernels, "v%d", st.decode_kernels);
        cJSON *sj = cJSON_AddObjectToObject(obj, "settings");
        cJSON_AddStringToObject(sj, "decode_kernels", kernels);
        cJSON_AddStringToObject(sj, "prefill", greta_gpu_prefill_name(st.prefill));
        cJSON_AddStringToObject(sj, "kv_cache", st.kv_type == GRETA_GPU_KV_F32 ? "fp32" : "fp16");
        cJSON_AddBoolToObject(sj, "graph", st.graph);
        cJSON_AddBoolToObject(sj, "lookahead", st.lookahead);
        cJSON_AddBoolToObject(sj, "early_launch", st.pdl);
    }
#else
    (void)obj;
    (void)b;
#endif
}

void greta_compare_json_backend(cJSON *obj, const greta_backend *b)
{
    cJSON_AddStringToObject(obj, "name", b->ops->name);
    cJSON_AddStringToObject(obj, "detail", b->detail);
    greta_compare_json_gpu(obj, b);
}

int greta_compare_json_write(const cJSON *root, const char *path, int formatted, const char *tool)
{
    char *js = formatted ? cJSON_Print(root) : cJSON_PrintUnformatted(root);
    FILE *f = js ? fopen(path, "w") : NULL;
    const int printed = js != NULL;
    int ok = f && fputs(js, f) >= 0 && fputc('\n', f) != EOF;
    if (f && fclose(f) != 0)
        ok = 0;
    free(js);
    if (!ok) {
        fprintf(stderr, "%s: cannot write %s: %s\n", tool, path, printed ? strerror(errno) : "out of memory");
        return -1;
    }
    return 0;
}
