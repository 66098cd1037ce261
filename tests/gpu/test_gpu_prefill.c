/* test_gpu_prefill.c - the GPU backend's prefill paths (issue 8): the
 * kernels they add and each path end to end against the CPU reference.
 *
 *   kernels    greta_gpu_dequant_f16 bit-exact with fp16(greta_dequant_row)
 *              for every weight type; rmsnorm_f16 / swiglu_f16 within one
 *              fp16 rounding of the fp32 ops; the cuBLAS GEMM (where built)
 *              against a float64 product of the same fp16 operands,
 *              |d| <= 1e-3 * sum|w x| + 1e-6 (fp32 accumulation); bad
 *              arguments.
 *   paths      for V1, MMA, DQMMA and CUBLAS (where built), each forced through
 *              greta_gpu_backend_opts.prefill:
 *              - stories260K, the 200 greedy ids of stories260K-greedy.json
 *                as one batch (logits of every row): each row's top-1 is the
 *                next greedy id, and every row is within 0.05 x its standard
 *                deviation of the CPU backend's row (the fp16 KV cache and,
 *                for MMA/DQMMA/CUBLAS, fp16 GEMM operands; the largest ratio is
 *                printed);
 *              - two sequences interleaved in one batch (A: 20 tokens, B: 3,
 *                A: 20 more): flash runs and per-token rows mixed, the
 *                second run of A reading keys the first one stored; the same
 *                bound against the CPU backend on the same batch;
 *              - quant/: each fixture of gqa-greedy.json, prompt and its 16
 *                greedy ids teacher-forced as one short batch (20..25
 *                tokens): rows np-1+g give ids[g] as top-1, same bound.
 *   selector   GRETA_GPU_PREFILL picks the path of greta_gpu_backend_create
 *              (reported by greta_gpu_backend_prefill); unknown values fail
 *              create and plan naming the variable; a bad opts value fails.
 * Without a GPU every test is skipped with a message.
 */
#include <cjson/cJSON.h>
#include <math.h>
#include <string.h>

#include "gpu-worker/cpu_backend.h"
#include "gpu-worker/gpu_backend.h"
#include "gpu_test_util.h"
#include "kernels/cpu/ops.h"
#include "kernels/cpu/quantize.h"
#include "kernels/gpu/prefill_ops.h"
#include "kernels/quant.h"

#define PATH_TOL 0.05 /* max |gpu - cpu| / std(cpu row) */

static const int all_paths[] = {GRETA_GPU_PREFILL_V1, GRETA_GPU_PREFILL_MMA, GRETA_GPU_PREFILL_DQMMA,
#if defined(GRETA_HAVE_GPU_BLAS)
                                GRETA_GPU_PREFILL_CUBLAS
#endif
};
#define N_PATHS (int)(sizeof all_paths / sizeof all_paths[0])

/* ---- kernels ------------------------------------------------------------------------ */

static void test_dequant_f16(void **state)
{
    GPU_OR_SKIP();
    static const uint32_t types[] = {GGML_TYPE_Q4_K, GGML_TYPE_Q6_K, GGML_TYPE_Q5_K, GGML_TYPE_Q8_0,
                                     GGML_TYPE_Q4_0, GGML_TYPE_F16,  GGML_TYPE_BF16, GGML_TYPE_F32};
    greta_error err = {0};
    uint64_t seed = 11;
    for (size_t ti = 0; ti < sizeof types / sizeof types[0]; ti++) {
        const uint32_t type = types[ti];
        const int64_t k = ggml_type_block_elems(type) == 1 ? 172 : 768, n = 37, ld = k + 8;
        const uint64_t rb = ggml_row_bytes(type, (uint64_t)k);
        uint8_t *q = xmalloc(rb * n);
        float *row = xmalloc(sizeof(float) * k);
        uint16_t *want = xmalloc(sizeof(uint16_t) * ld * n), *got = xmalloc(sizeof(uint16_t) * ld * n);
        memset(want, 0, sizeof(uint16_t) * ld * n);
        for (int64_t r = 0; r < n; r++) {
            for (int64_t i = 0; i < k; i++)
                row[i] = (r % 5 == 2 ? 3.0f : 0.04f) * trng_f(&seed);
            assert_int_equal(greta_quantize_row(type, row, q + rb * r, k), 0);
            assert_int_equal(greta_dequant_row(type, q + rb * r, row, k), 0);
            for (int64_t i = 0; i < k; i++)
                want[r * ld + i] = greta_f32_to_fp16(row[i]);
        }
        void *dq = dev_upload(q, rb * n);
        uint16_t *dout = dev_alloc(sizeof(uint16_t) * ld * n);
        EXPECT_OK(greta_gpu_dequant_f16(NULL, type, dq, k, n, dout, ld, &err));
        dev_download(got, dout, sizeof(uint16_t) * ld * n);
        for (int64_t r = 0; r < n; r++)
            for (int64_t i = 0; i < k; i++)
                if (got[r * ld + i] != want[r * ld + i])
                    fail_msg("dequant_f16 %s row %lld col %lld: 0x%04x, expected 0x%04x", ggml_type_name(type),
                             (long long)r, (long long)i, got[r * ld + i], want[r * ld + i]);
        if (ggml_type_block_elems(type) > 1) /* one 16-byte store per group: aligned rows only */
            assert_int_equal(greta_gpu_dequant_f16(NULL, type, dq, k, n, dout + 1, ld, &err), GRETA_ERR_INVALID);
        greta_gpu_free(dq);
        greta_gpu_free(dout);
        free(q), free(row), free(want), free(got);
    }
    assert_int_equal(greta_gpu_dequant_f16(NULL, GGML_TYPE_Q8_K, NULL, 256, 1, NULL, 256, &err), GRETA_ERR_UNSUPPORTED);
    assert_int_equal(greta_gpu_dequant_f16(NULL, GGML_TYPE_Q4_K, NULL, 100, 1, NULL, 100, &err), GRETA_ERR_INVALID);
    assert_int_equal(greta_gpu_dequant_f16(NULL, GGML_TYPE_Q4_K, NULL, 256, 1, NULL, 128, &err), GRETA_ERR_INVALID);
}

/* |fp16 value - fp32 value| within one rounding to fp16 */
static void expect_one_rounding(const char *what, const uint16_t *h, const float *f, int64_t n)
{
    for (int64_t i = 0; i < n; i++) {
        const double v = greta_fp16_to_f32(h[i]);
        if (!(fabs(v - f[i]) <= fabs((double)f[i]) * (1.0 / 2048.0) + 6e-8))
            fail_msg("%s [%lld]: fp16 %.8g vs fp32 %.8g", what, (long long)i, v, f[i]);
    }
}

static void test_act_f16(void **state)
{
    GPU_OR_SKIP();
    greta_error err = {0};
    const int32_t T = 5;
    const int64_t n = 300, ld = 320;
    uint64_t seed = 5;
    float *x = xmalloc(sizeof(float) * T * ld), *w = xmalloc(sizeof(float) * n), *up = xmalloc(sizeof(float) * T * ld);
    for (int64_t i = 0; i < T * ld; i++)
        x[i] = 3.0f * trng_f(&seed), up[i] = trng_f(&seed);
    for (int64_t i = 0; i < n; i++)
        w[i] = 1.0f + 0.5f * trng_f(&seed);
    float *dx = dev_upload(x, sizeof(float) * T * ld), *dw = dev_upload(w, sizeof(float) * n);
    float *dup = dev_upload(up, sizeof(float) * T * ld), *dref = dev_alloc(sizeof(float) * T * ld);
    uint16_t *dh = dev_alloc(sizeof(uint16_t) * T * ld);
    float *ref = xmalloc(sizeof(float) * T * ld);
    uint16_t *h = xmalloc(sizeof(uint16_t) * T * ld);
    /* RMSNorm */
    EXPECT_OK(greta_gpu_rmsnorm(NULL, dx, ld, dw, dref, ld, T, n, 1e-5f, &err));
    EXPECT_OK(greta_gpu_rmsnorm_f16(NULL, dx, ld, dw, dh, ld, T, n, 1e-5f, &err));
    dev_download(ref, dref, sizeof(float) * T * ld);
    dev_download(h, dh, sizeof(uint16_t) * T * ld);
    for (int32_t t = 0; t < T; t++)
        expect_one_rounding("rmsnorm_f16", h + t * ld, ref + t * ld, n);
    /* SwiGLU: the fp32 op overwrites gate, so it runs on a copy */
    float *dg = dev_upload(x, sizeof(float) * T * ld);
    EXPECT_OK(greta_gpu_swiglu_f16(NULL, dx, dup, ld, T, n, dh, ld, &err));
    EXPECT_OK(greta_gpu_swiglu(NULL, dg, dup, ld, T, n, &err));
    dev_download(ref, dg, sizeof(float) * T * ld);
    dev_download(h, dh, sizeof(uint16_t) * T * ld);
    for (int32_t t = 0; t < T; t++)
        expect_one_rounding("swiglu_f16", h + t * ld, ref + t * ld, n);
    assert_int_equal(greta_gpu_rmsnorm_f16(NULL, dx, 10, dw, dh, ld, T, n, 1e-5f, &err), GRETA_ERR_INVALID);
    assert_int_equal(greta_gpu_swiglu_f16(NULL, dx, dup, ld, T, n, dh, 10, &err), GRETA_ERR_INVALID);
    greta_gpu_free(dx), greta_gpu_free(dw), greta_gpu_free(dup), greta_gpu_free(dref), greta_gpu_free(dh);
    greta_gpu_free(dg);
    free(x), free(w), free(up), free(ref), free(h);
}

static void test_blas_gemm(void **state)
{
#if !defined(GRETA_HAVE_GPU_BLAS)
    fprintf(stderr, "SKIPPED: this build has no cuBLAS path\n");
    skip();
#else
    GPU_OR_SKIP();
    greta_error err = {0};
    const int64_t k = 96, n = 70, ld_w = 104, ld_x = 100, ld_y = 80;
    const int32_t T = 13;
    uint64_t seed = 3;
    uint16_t *w = xmalloc(2 * n * ld_w), *x = xmalloc(2 * T * ld_x);
    for (int64_t i = 0; i < n * ld_w; i++)
        w[i] = greta_f32_to_fp16(0.1f * trng_f(&seed));
    for (int64_t i = 0; i < T * ld_x; i++)
        x[i] = greta_f32_to_fp16(2.0f * trng_f(&seed));
    float *y0 = xmalloc(sizeof(float) * T * ld_y), *y = xmalloc(sizeof(float) * T * ld_y);
    for (int64_t i = 0; i < T * ld_y; i++)
        y0[i] = trng_f(&seed);
    uint16_t *dw = dev_upload(w, 2 * n * ld_w), *dx = dev_upload(x, 2 * T * ld_x);
    greta_gpu_blas *b = NULL;
    EXPECT_OK(greta_gpu_blas_create(&b, &err));
    for (int acc = 0; acc < 2; acc++) {
        float *dy = dev_upload(y0, sizeof(float) * T * ld_y);
        EXPECT_OK(greta_gpu_blas_gemm_f16(b, NULL, dw, ld_w, k, n, dx, ld_x, T, dy, ld_y, acc, &err));
        dev_download(y, dy, sizeof(float) * T * ld_y);
        for (int32_t t = 0; t < T; t++)
            for (int64_t r = 0; r < ld_y; r++) {
                const float got = y[t * ld_y + r];
                if (r >= n) { /* beyond the n outputs: untouched */
                    assert_true(got == y0[t * ld_y + r]);
                    continue;
                }
                double ref = acc ? y0[t * ld_y + r] : 0.0, mag = 0.0;
                for (int64_t i = 0; i < k; i++) {
                    const double p = (double)greta_fp16_to_f32(w[r * ld_w + i]) * greta_fp16_to_f32(x[t * ld_x + i]);
                    ref += p, mag += fabs(p);
                }
                if (!(fabs(got - ref) <= 1e-3 * mag + 1e-6))
                    fail_msg("blas gemm (accumulate %d) y[%d][%lld] = %.7g, reference %.7g", acc, t, (long long)r,
                             got, ref);
            }
        greta_gpu_free(dy);
    }
    assert_int_equal(greta_gpu_blas_gemm_f16(b, NULL, dw, 10, k, n, dx, ld_x, T, NULL, ld_y, 0, &err),
                     GRETA_ERR_INVALID);
    greta_gpu_blas_destroy(&b);
    assert_null(b);
    greta_gpu_free(dw), greta_gpu_free(dx);
    free(w), free(x), free(y0), free(y);
#endif
}

/* ---- paths end to end ------------------------------------------------------------------ */

static cJSON *load_json(const char *path)
{
    size_t n = 0;
    char *text = greta_read_file(path, &n);
    assert_non_null(text);
    cJSON *j = cJSON_Parse(text);
    free(text);
    assert_non_null(j);
    return j;
}

static double row_std(const float *x, int64_t n)
{
    double s = 0.0, s2 = 0.0;
    for (int64_t i = 0; i < n; i++)
        s += x[i], s2 += (double)x[i] * x[i];
    const double mean = s / (double)n;
    return sqrt(s2 / (double)n - mean * mean);
}

/* Runs the batch (every row's logits) on a fresh backend; out [n][vocab]. */
static void run_rows(greta_model *m, int path, int32_t n_ctx, int32_t n_seq, const greta_batch *bt, float *out)
{
    greta_error err = {0};
    greta_backend_params p = {.n_ctx = n_ctx, .n_seq = n_seq, .n_batch = bt->n_tokens, .n_threads = 4};
    greta_backend *b = NULL;
    if (path < 0) {
        EXPECT_OK(greta_cpu_backend_create(m, &p, &b, &err));
    } else {
        const greta_gpu_backend_opts o = {.kv_type = GRETA_GPU_KV_F16, .prefill = path};
        EXPECT_OK(greta_gpu_backend_create_opts(m, &p, &o, &b, &err));
        assert_int_equal(greta_gpu_backend_prefill(b), path);
    }
    EXPECT_OK(b->ops->forward(b, bt, out, &err));
    greta_backend_destroy(&b);
}

/* Largest max|gpu - cpu| / std(cpu row) over the rows; fails above PATH_TOL. */
static double compare_rows(const char *what, const float *gpu, const float *cpu, int32_t rows, int32_t vocab)
{
    double worst = 0.0;
    for (int32_t r = 0; r < rows; r++) {
        const float *g = gpu + (size_t)r * vocab, *c = cpu + (size_t)r * vocab;
        const double sd = row_std(c, vocab);
        double d = 0.0;
        for (int32_t i = 0; i < vocab; i++)
            d = fmax(d, fabs((double)g[i] - c[i]));
        if (!(d <= PATH_TOL * sd))
            fail_msg("%s row %d: max |gpu - cpu| %.4g > %.2f x std %.4g", what, r, d, PATH_TOL, sd);
        worst = fmax(worst, d / sd);
    }
    return worst;
}

static void test_paths_stories(void **state)
{
    GPU_OR_SKIP();
    GRETA_TESTDATA_OR_SKIP(found, "stories260K.gguf");
    char mp[4096];
    snprintf(mp, sizeof mp, "%s", found);
    GRETA_TESTDATA_OR_SKIP(json_path, "stories260K-greedy.json");
    cJSON *j = load_json(json_path);
    const cJSON *ids = cJSON_GetObjectItem(j, "ids");
    assert_true(cJSON_GetArraySize(ids) >= 201);
    greta_model *m = NULL;
    greta_error err = {0};
    EXPECT_OK(greta_model_open(mp, &m, &err));
    const int32_t vocab = (int32_t)m->cfg.vocab_size, N = 200;
    int32_t tok[200], pos[200], sq[200];
    uint8_t want[200];
    for (int32_t i = 0; i < N; i++)
        tok[i] = cJSON_GetArrayItem(ids, i)->valueint, pos[i] = i, sq[i] = 0, want[i] = 1;
    const greta_batch one = {.n_tokens = N, .tokens = tok, .pos = pos, .seq = sq, .want_logits = want};
    /* A[0..19], B[0..2], A[20..39] */
    int32_t it[43], ip[43], is[43];
    for (int32_t i = 0; i < 43; i++) {
        const int a = i < 20 || i >= 23;
        const int32_t p = i < 20 ? i : i < 23 ? i - 20 : i - 3;
        it[i] = a ? tok[p] : tok[p + 100], ip[i] = p, is[i] = a ? 0 : 1;
    }
    const greta_batch two = {.n_tokens = 43, .tokens = it, .pos = ip, .seq = is, .want_logits = want};
    float *cpu = xmalloc(sizeof(float) * N * (size_t)vocab), *gpu = xmalloc(sizeof(float) * N * (size_t)vocab);
    float *cpu2 = xmalloc(sizeof(float) * 43 * (size_t)vocab);
    run_rows(m, -1, 256, 1, &one, cpu);
    run_rows(m, -1, 64, 2, &two, cpu2);
    for (int pi = 0; pi < N_PATHS; pi++) {
        const char *name = greta_gpu_prefill_name(all_paths[pi]);
        run_rows(m, all_paths[pi], 256, 1, &one, gpu);
        for (int32_t r = 0; r < N; r++) {
            const int64_t top = greta_cpu_argmax(gpu + (size_t)r * vocab, vocab);
            if (top != cJSON_GetArrayItem(ids, r + 1)->valueint)
                fail_msg("path %s, stories260K row %d: top-1 %lld, greedy id %d", name, r, (long long)top,
                         cJSON_GetArrayItem(ids, r + 1)->valueint);
        }
        const double w1 = compare_rows(name, gpu, cpu, N, vocab);
        run_rows(m, all_paths[pi], 64, 2, &two, gpu);
        const double w2 = compare_rows(name, gpu, cpu2, 43, vocab);
        print_message("path %-6s stories260K: 200-token prefill max |gpu - cpu| / std %.3g; two interleaved "
                      "sequences %.3g\n",
                      name, w1, w2);
    }
    free(cpu), free(gpu), free(cpu2);
    greta_model_close(&m);
    cJSON_Delete(j);
}

static void test_paths_quant_short(void **state)
{
    GPU_OR_SKIP();
    GRETA_TESTDATA_OR_SKIP(json_path, "quant/gqa-greedy.json");
    cJSON *j = load_json(json_path);
    int n_models = 0;
    for (const cJSON *mj = cJSON_GetObjectItem(j, "models")->child; mj; mj = mj->next) {
        char name[256], path[4096];
        snprintf(name, sizeof name, "quant/%s", mj->string);
        const char *found = greta_testdata_find(name);
        if (!found)
            continue;
        snprintf(path, sizeof path, "%s", found);
        greta_model *m = NULL;
        greta_error err = {0};
        EXPECT_OK(greta_model_open(path, &m, &err));
        const int32_t vocab = (int32_t)m->cfg.vocab_size;
        double worst[4] = {0};
        for (const cJSON *pj = mj->child; pj; pj = pj->next) {
            const cJSON *pids = cJSON_GetObjectItem(pj, "prompt_ids"), *gids = cJSON_GetObjectItem(pj, "ids");
            const int32_t np = cJSON_GetArraySize(pids), ng = cJSON_GetArraySize(gids), n = np + ng - 1;
            int32_t tok[64], pos[64], sq[64];
            uint8_t want[64];
            assert_true(n <= 64 && n > GRETA_GPU_MATVEC_MAX_TOK);
            for (int32_t i = 0; i < n; i++) {
                tok[i] = i < np ? cJSON_GetArrayItem(pids, i)->valueint : cJSON_GetArrayItem(gids, i - np)->valueint;
                pos[i] = i, sq[i] = 0, want[i] = 1;
            }
            const greta_batch bt = {.n_tokens = n, .tokens = tok, .pos = pos, .seq = sq, .want_logits = want};
            float *cpu = xmalloc(sizeof(float) * n * (size_t)vocab), *gpu = xmalloc(sizeof(float) * n * (size_t)vocab);
            run_rows(m, -1, 64, 1, &bt, cpu);
            for (int pi = 0; pi < N_PATHS; pi++) {
                run_rows(m, all_paths[pi], 64, 1, &bt, gpu);
                for (int32_t g = 0; g < ng; g++) {
                    const int64_t top = greta_cpu_argmax(gpu + (size_t)(np - 1 + g) * vocab, vocab);
                    if (top != cJSON_GetArrayItem(gids, g)->valueint)
                        fail_msg("%s path %s: greedy token %d is %lld, expected %d", mj->string,
                                 greta_gpu_prefill_name(all_paths[pi]), g, (long long)top,
                                 cJSON_GetArrayItem(gids, g)->valueint);
                }
                worst[pi] = fmax(worst[pi], compare_rows(mj->string, gpu, cpu, n, vocab));
            }
            free(cpu), free(gpu);
        }
        for (int pi = 0; pi < N_PATHS; pi++)
            print_message("%s path %-6s: greedy ids reproduced, max |gpu - cpu| / std %.3g\n", mj->string,
                          greta_gpu_prefill_name(all_paths[pi]), worst[pi]);
        greta_model_close(&m);
        n_models++;
    }
    assert_true(n_models > 0 || !getenv("GRETA_REQUIRE_TESTDATA"));
    cJSON_Delete(j);
}

/* ---- the selector ------------------------------------------------------------------------- */

static void test_selector(void **state)
{
    GPU_OR_SKIP();
    GRETA_TESTDATA_OR_SKIP(found, "stories260K.gguf");
    greta_model *m = NULL;
    greta_error err = {0};
    EXPECT_OK(greta_model_open(found, &m, &err));
    greta_backend_params p = {.n_ctx = 32, .n_seq = 1, .n_batch = 16, .n_threads = 1};
    greta_backend *b = NULL;
    for (int i = 0; i <= GRETA_GPU_PREFILL_DQMMA; i++) {
        int back = -1;
        assert_int_equal(greta_gpu_prefill_parse(greta_gpu_prefill_name(i), &back, &err), 0);
        assert_int_equal(back, i);
    }
    assert_null(greta_gpu_prefill_name(5));
    /* the variable picks the path of the default create */
    const char *names[] = {"v1", "mma", "dqmma", "auto", ""};
#if defined(GRETA_HAVE_GPU_BLAS)
    const int def = GRETA_GPU_PREFILL_CUBLAS;
#else
    const int def = GRETA_GPU_PREFILL_DQMMA;
#endif
    const int want[] = {GRETA_GPU_PREFILL_V1, GRETA_GPU_PREFILL_MMA, GRETA_GPU_PREFILL_DQMMA, def, def};
    for (int i = 0; i < 5; i++) {
        setenv("GRETA_GPU_PREFILL", names[i], 1);
        EXPECT_OK(greta_gpu_backend_create(m, &p, &b, &err));
        assert_int_equal(greta_gpu_backend_prefill(b), want[i]);
        greta_backend_destroy(&b);
    }
    setenv("GRETA_GPU_PREFILL", "tensor", 1);
    assert_int_equal(greta_gpu_backend_create(m, &p, &b, &err), GRETA_ERR_INVALID);
    assert_null(b);
    assert_non_null(strstr(err.msg, "GRETA_GPU_PREFILL"));
    greta_mem_plan plan;
    assert_int_equal(greta_gpu_backend_plan(m, &p, &plan, &err), GRETA_ERR_INVALID);
    assert_non_null(strstr(err.msg, "GRETA_GPU_PREFILL"));
    /* explicit options win over the variable */
    const greta_gpu_backend_opts o = {.kv_type = GRETA_GPU_KV_F16, .prefill = GRETA_GPU_PREFILL_V1};
    EXPECT_OK(greta_gpu_backend_create_opts(m, &p, &o, &b, &err));
    assert_int_equal(greta_gpu_backend_prefill(b), GRETA_GPU_PREFILL_V1);
    greta_backend_destroy(&b);
    unsetenv("GRETA_GPU_PREFILL");
#if !defined(GRETA_HAVE_GPU_BLAS)
    const greta_gpu_backend_opts oc = {.kv_type = GRETA_GPU_KV_F16, .prefill = GRETA_GPU_PREFILL_CUBLAS};
    assert_int_equal(greta_gpu_backend_create_opts(m, &p, &oc, &b, &err), GRETA_ERR_UNSUPPORTED);
#endif
    const greta_gpu_backend_opts bad = {.kv_type = GRETA_GPU_KV_F16, .prefill = 9};
    assert_int_equal(greta_gpu_backend_create_opts(m, &p, &bad, &b, &err), GRETA_ERR_INVALID);
    assert_null(b);
    assert_int_equal(greta_gpu_backend_prefill(NULL), GRETA_GPU_PREFILL_AUTO);
    greta_model_close(&m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_dequant_f16),     cmocka_unit_test(test_act_f16),
        cmocka_unit_test(test_blas_gemm),       cmocka_unit_test(test_paths_stories),
        cmocka_unit_test(test_paths_quant_short), cmocka_unit_test(test_selector),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
