/* compare.h - what `greta parity` and `greta drift` share: comparing a test
 * backend's logits with the CPU reference's, row by row, and the plumbing
 * around it (backends, feeding tokens, report metadata).
 *
 * Row comparison (ref = the reference's logits, test = the test backend's,
 * both n floats over the vocabulary), greta_compare_row:
 *   top1_ref/test  argmax of each row (greta_cpu_argmax: lowest id on ties)
 *   top5, top10    |top-k(ref) & top-k(test)| / k (top-k: greta_compare_topk)
 *   std_ref        standard deviation of the ref row (population)
 *   max_abs        max_i |test_i - ref_i|
 *   max_rel        max_abs / std_ref (std_ref 0 counts as 1)
 *   p99_rel        99th percentile over i of |test_i - ref_i| / std_ref
 *                  (nearest rank); p99_abs = p99_rel * std_ref
 *   kl             KL(softmax(ref) || softmax(test)) in double, clamped at 0
 *   nan_inf        non-finite values in the test row
 * A non-finite difference counts as +inf in max and p99.
 */
#ifndef GRETA_FRONTEND_COMPARE_H
#define GRETA_FRONTEND_COMPARE_H

#include <stddef.h>
#include <stdint.h>

#include <cJSON.h>

#include "common/error.h"
#include "gpu-worker/backend.h"

#define GRETA_COMPARE_MAX_K 16

typedef struct greta_compare_row_stats {
    int32_t top1_ref, top1_test;
    double top5, top10;
    double std_ref, max_abs, max_rel, p99_abs, p99_rel, kl;
    int64_t nan_inf;
} greta_compare_row_stats;

/* Compares one row. rel[n] receives |test_i - ref_i| / std (for pooling
 * over positions); scratch[n] is working space. */
void greta_compare_row(const float *ref, const float *test, int32_t n, greta_compare_row_stats *st, double *rel,
                       double *scratch);

/* The k (<= GRETA_COMPARE_MAX_K) best ids of x[n], best first, the lower id
 * first among equal values; NaN never; -1 fills the rest when fewer than k
 * values are numbers. */
void greta_compare_topk(const float *x, int32_t n, int32_t k, int32_t *ids);

/* |top-k(a) & top-k(b)| / k for rows a, b of n values. */
double greta_compare_topk_overlap(const float *a, const float *b, int32_t n, int32_t k);

/* The q-quantile (0 < q <= 1) of v[n] by nearest rank: the ceil(q * n)-th
 * smallest value (NaN ordered above +inf). Reorders v. 0 when n == 0. */
double greta_compare_quantile(double *v, size_t n, double q);

/* log(sum_i exp(x_i)) in double, computed stably. */
double greta_compare_log_sum_exp(const float *x, int32_t n);

/* Command-line numbers: 0, or -1 when s is not a whole decimal number
 * (resp. a number) in lo..hi. */
int greta_compare_parse_int(const char *s, int32_t lo, int32_t hi, int32_t *out);
int greta_compare_parse_double(const char *s, double lo, double hi, double *out);

/* A backend of kind "cpu" or "gpu" (kv_f32: the GPU's fp32 KV cache;
 * act_f32: the GPU's decode products from fp32 activations, decode kernels
 * v5, instead of v6's 16-bit codes; both for measurements, the CPU backend
 * is fp32 either way). GRETA_ERR_UNSUPPORTED with a message naming the fix
 * when this greta has no GPU support. */
int greta_compare_backend_create(const char *kind, int kv_f32, int act_f32, const greta_model *m,
                                 const greta_backend_params *p, greta_backend **out, greta_error *err);

/* A backend of kind "cpu" or "gpu" whose KV cache holds fp16 values
 * (kv_f16 != 0: the GPU's fp16 cache; on the CPU, fp32 storage holding
 * values rounded to fp16, cpu_backend.h) or fp32 values. */
int greta_compare_backend_create_kv(const char *kind, int kv_f16, const greta_model *m, const greta_backend_params *p,
                                    greta_backend **out, greta_error *err);

/* Feeds toks[0..n) at positions start.. of sequence 0 in chunks of at most
 * n_batch, logits wanted at every position; rows land in logits[n][vocab]. */
int greta_compare_feed(greta_backend *b, const int32_t *toks, int32_t n, int32_t start, int32_t n_batch,
                       float *logits, greta_error *err);

/* Reads a text file (64 MiB at most) into a NUL-terminated buffer; NULL
 * with the reason (prefixed by `tool`) on stderr. */
char *greta_compare_read_text(const char *tool, const char *path, size_t *len);

/* The commit this greta reports (what every JSON report records): the
 * environment variable GRETA_COMMIT when set and not empty (the GPU
 * machine has no git; its run scripts pass the commit this way), else `git
 * rev-parse --verify HEAD` of the source tree when that prints a full object
 * name, else "unknown". Writes it to out[n]; returns where it came from: */
#define GRETA_COMMIT_FROM_ENV "$GRETA_COMMIT"
#define GRETA_COMMIT_FROM_GIT "git rev-parse HEAD at run time"
#define GRETA_COMMIT_FROM_NONE "none (no $GRETA_COMMIT, no git)"
const char *greta_compare_commit(char *out, size_t n);

/* 1 when git sees uncommitted changes to tracked files of the source tree,
 * 0 when it sees none, -1 when git cannot tell (no git, not a work tree). */
int greta_compare_commit_dirty(void);

/* Adds "tool", "date" (UTC, ISO 8601) and "commit" (greta_compare_commit)
 * to root. */
void greta_compare_json_meta(cJSON *root, const char *tool);

/* For a GPU backend, adds the device to obj: "device" (name), "arch", "api",
 * "driver_version" and "runtime_version" (as the runtime reports them;
 * CUDA: 13000 = 13.0), "total_mem_bytes", "free_mem_after_load_bytes",
 * and "settings" (greta_gpu_backend_settings_get: "decode_kernels" "v1".."v8",
 * "prefill", "kv_cache" "fp16" or "fp32", booleans "graph", "lookahead",
 * "early_launch").
 * Adds nothing for other backends or without GPU support. */
void greta_compare_json_gpu(cJSON *obj, const greta_backend *b);

/* Adds the test backend's name, detail and greta_compare_json_gpu to obj. */
void greta_compare_json_backend(cJSON *obj, const greta_backend *b);

/* Writes root to path (pretty-printed with formatted != 0); 0 or -1 with
 * the reason (prefixed by `tool`) on stderr. */
int greta_compare_json_write(const cJSON *root, const char *path, int formatted, const char *tool);

#endif
