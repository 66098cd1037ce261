/* test_gpu_decode.c - the decode kernels of issue 7 (kernels/gpu/decode_ops.h)
 * against the CPU reference, and the backend's decode settings.
 *
 * Tolerances (x's int8 error e_b = max|x| over its 32-block / 254):
 *   quantize_q8     d = max|x|/127 and q = rint(x * 127/max|x|) bit-exact (the
 *                   same fp32 operations), block sums within 1e-6 * sum|x|,
 *                   16-sums of q exact
 *   rmsnorm_q8      out within greta_gpu_rmsnorm's test bound of
 *                   greta_cpu_rmsnorm (4e-6 * |cpu| + 1e-7 * max|x*w|), its q8
 *                   the quantization of that out (as above)
 *   matvec_q8       |gpu - ref| <= 1.001 * sum_i |w_i| e_b(i)
 *                                 + 1e-5 * sum_i |w_i| (|x_i| + e_b(i)),
 *                   ref = sum_i w_i x_i in double over the exact weights; 1..3
 *                   matrices of mixed types per launch, 1..8 tokens, overwrite
 *                   and accumulate
 *   matvec_q8_glu   silu(g) * u within the bound that the g and u bounds give
 *   backend         quant/gqa-Q4_K_M.gguf: greedy ids of gqa-greedy.json with
 *                   kernels v1/v2 x graph on/off; graph replay bit-identical to
 *                   launching; v2 logits differ from v1 (the option acts) by
 *                   < 5% of the logits' spread; GRETA_GPU_KERNELS /
 *                   GRETA_GPU_GRAPH select the same as the options, bad values
 *                   fail create naming the variable
 */
#include <math.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "gpu-worker/gpu_backend.h"
#include "gpu_test_util.h"
#include "kernels/cpu/ops.h"
#include "kernels/cpu/quantize.h"
#include "kernels/gpu/decode_ops.h"
#include "kernels/quant.h"

/* Activations with blocks of very different magnitude (and a zero block). */
static float *make_x(int64_t k, int32_t n_tok, uint64_t seed)
{
    float *x = xmalloc(sizeof(float) * (size_t)(k * n_tok));
    for (int64_t i = 0; i < k * n_tok; i++) {
        const int64_t b = (i % k) / 32;
        const float amp = b % 5 == 1 ? 20.0f : b % 5 == 2 ? 0.001f : 1.0f;
        x[i] = b == 3 ? 0.0f : amp * trng_f(&seed);
    }
    return x;
}

/* Checks a q8 row (decode_ops.h) against the quantization of x [k]. */
static void check_q8_row(const uint8_t *row, const float *x, int64_t k, const char *what)
{
    const int8_t *q = (const int8_t *)row;
    const float *d = (const float *)(row + k), *s = (const float *)(row + k + k / 8);
    const int32_t *t = (const int32_t *)(row + k + k / 4);
    for (int64_t b = 0; b < k / 32; b++) {
        float amax = 0.0f;
        double sum = 0.0, sabs = 0.0;
        for (int i = 0; i < 32; i++) {
            amax = fmaxf(amax, fabsf(x[32 * b + i]));
            sum += x[32 * b + i];
            sabs += fabs(x[32 * b + i]);
        }
        const float dd = amax / 127.0f, id = amax > 0.0f ? 127.0f / amax : 0.0f;
        if (d[b] != dd)
            fail_msg("%s block %lld: d %.9g, expected %.9g", what, (long long)b, d[b], dd);
        if (!(fabs(s[b] - sum) <= 1e-6 * sabs + 1e-30))
            fail_msg("%s block %lld: sum %.9g, expected %.9g", what, (long long)b, s[b], sum);
        int t0 = 0, t1 = 0;
        for (int i = 0; i < 32; i++) {
            const int want = (int)rintf(x[32 * b + i] * id);
            if (q[32 * b + i] != want)
                fail_msg("%s value %lld: q %d, expected %d", what, (long long)(32 * b + i), q[32 * b + i], want);
            if (i < 16)
                t0 += want;
            else
                t1 += want;
        }
        if (t[2 * b] != t0 || t[2 * b + 1] != t1)
            fail_msg("%s block %lld: 16-sums %d %d, expected %d %d", what, (long long)b, t[2 * b], t[2 * b + 1], t0,
                     t1);
    }
}

static void test_quantize_q8(void **state)
{
    GPU_OR_SKIP();
    greta_error err = {0};
    const int64_t k = 768, ld = 1000;
    const int32_t n_tok = 3;
    float *x = make_x(ld, n_tok, 5);
    const int64_t rb = greta_gpu_q8_row_bytes(k);
    assert_int_equal(rb, k + k / 2);
    assert_int_equal(greta_gpu_q8_row_bytes(100), 0);
    float *d_x = dev_upload(x, sizeof(float) * (size_t)(ld * n_tok));
    uint8_t *d_q = dev_alloc((size_t)(rb * n_tok));
    EXPECT_OK(greta_gpu_quantize_q8(NULL, d_x, ld, n_tok, k, d_q, &err));
    uint8_t *h = xmalloc((size_t)(rb * n_tok));
    dev_download(h, d_q, (size_t)(rb * n_tok));
    for (int32_t t = 0; t < n_tok; t++)
        check_q8_row(h + t * rb, x + t * ld, k, "quantize_q8");
    /* RMSNorm + quantize */
    float *w = xmalloc(sizeof(float) * (size_t)k);
    uint64_t seed = 9;
    for (int64_t i = 0; i < k; i++)
        w[i] = 1.0f + 0.5f * trng_f(&seed);
    float *d_w = dev_upload(w, sizeof(float) * (size_t)k);
    float *d_out = dev_alloc(sizeof(float) * (size_t)(k * n_tok));
    EXPECT_OK(greta_gpu_rmsnorm_q8(NULL, d_x, ld, d_w, d_out, k, n_tok, k, 1e-5f, d_q, &err));
    float *out = xmalloc(sizeof(float) * (size_t)(k * n_tok)), *ref = xmalloc(sizeof(float) * (size_t)k);
    dev_download(out, d_out, sizeof(float) * (size_t)(k * n_tok));
    dev_download(h, d_q, (size_t)(rb * n_tok));
    for (int32_t t = 0; t < n_tok; t++) {
        greta_cpu_rmsnorm(ref, x + t * ld, w, k, 1e-5f);
        float mx = 0.0f;
        for (int64_t i = 0; i < k; i++)
            mx = fmaxf(mx, fabsf(ref[i]));
        for (int64_t i = 0; i < k; i++)
            if (!(fabsf(out[t * k + i] - ref[i]) <= 4e-6f * fabsf(ref[i]) + 1e-7f * mx))
                fail_msg("rmsnorm_q8 token %d [%lld]: %.9g, cpu %.9g", t, (long long)i, out[t * k + i], ref[i]);
        check_q8_row(h + t * rb, out + t * k, k, "rmsnorm_q8");
    }
    greta_gpu_free(d_x), greta_gpu_free(d_q), greta_gpu_free(d_w), greta_gpu_free(d_out);
    free(x), free(h), free(w), free(out), free(ref);
}

/* Reference and bound of one row r (k values) against token row x. */
static void dot_ref(const float *w, const float *x, int64_t k, double *ref, double *tol)
{
    double s = 0.0, qe = 0.0, mag = 0.0;
    for (int64_t b = 0; b < k / 32; b++) {
        float amax = 0.0f;
        for (int i = 0; i < 32; i++)
            amax = fmaxf(amax, fabsf(x[32 * b + i]));
        const double e = amax / 254.0;
        for (int i = 0; i < 32; i++) {
            const int64_t j = 32 * b + i;
            s += (double)w[j] * x[j];
            qe += fabs(w[j]) * e;
            mag += fabs(w[j]) * (fabs(x[j]) + e);
        }
    }
    *ref = s;
    *tol = 1.001 * qe + 1e-5 * mag + 1e-30;
}

static void check_matvec_q8(const uint32_t *types, int n_mat, int64_t k, const int64_t *ns, int32_t n_tok,
                            uint64_t seed)
{
    greta_error err = {0};
    void *q[3];
    float *deq[3], *d_y[3], *y0[3];
    void *d_w[3];
    greta_gpu_mv_mat m[3];
    float *x = make_x(k, n_tok, seed);
    const int64_t rb = greta_gpu_q8_row_bytes(k);
    float *d_x = dev_upload(x, sizeof(float) * (size_t)(k * n_tok));
    uint8_t *d_q = dev_alloc((size_t)(rb * n_tok));
    EXPECT_OK(greta_gpu_quantize_q8(NULL, d_x, k, n_tok, k, d_q, &err));
    for (int i = 0; i < n_mat; i++) {
        make_weights(types[i], k, ns[i], seed + 100 * i, &q[i], &deq[i]);
        d_w[i] = dev_upload(q[i], ggml_row_bytes(types[i], (uint64_t)k) * (size_t)ns[i]);
        y0[i] = xmalloc(sizeof(float) * (size_t)(ns[i] * n_tok));
        for (int64_t j = 0; j < ns[i] * n_tok; j++)
            y0[i][j] = trng_f(&seed);
        d_y[i] = dev_upload(y0[i], sizeof(float) * (size_t)(ns[i] * n_tok));
        m[i] = (greta_gpu_mv_mat){.type = types[i], .w = d_w[i], .n = ns[i], .y = d_y[i], .ld_y = ns[i]};
    }
    for (int acc = 0; acc < 2; acc++) {
        if (acc)
            for (int i = 0; i < n_mat; i++) /* back to y0 to accumulate onto it */
                EXPECT_OK(greta_gpu_copy(d_y[i], y0[i], sizeof(float) * (size_t)(ns[i] * n_tok), GRETA_GPU_H2D,
                                         NULL, &err));
        EXPECT_OK(greta_gpu_matvec_q8(NULL, d_q, k, n_tok, m, n_mat, acc, &err));
        for (int i = 0; i < n_mat; i++) {
            float *y = xmalloc(sizeof(float) * (size_t)(ns[i] * n_tok));
            dev_download(y, d_y[i], sizeof(float) * (size_t)(ns[i] * n_tok));
            for (int32_t t = 0; t < n_tok; t++)
                for (int64_t r = 0; r < ns[i]; r++) {
                    double ref, tol;
                    dot_ref(deq[i] + r * k, x + t * k, k, &ref, &tol);
                    const double base = acc ? y0[i][t * ns[i] + r] : 0.0;
                    const double got = y[t * ns[i] + r];
                    if (!(fabs(got - (base + ref)) <= tol + 1e-6 * fabs(base)))
                        fail_msg("matvec_q8 %s (matrix %d of %d) k %lld tokens %d acc %d: y[%d][%lld] = %.9g, "
                                 "ref %.9g, tol %.3g",
                                 ggml_type_name(types[i]), i, n_mat, (long long)k, n_tok, acc, t, (long long)r, got,
                                 base + ref, tol);
                }
            free(y);
        }
    }
    for (int i = 0; i < n_mat; i++) {
        greta_gpu_free(d_w[i]), greta_gpu_free(d_y[i]);
        free(q[i]), free(deq[i]), free(y0[i]);
    }
    greta_gpu_free(d_x), greta_gpu_free(d_q);
    free(x);
}

static void test_matvec_q8(void **state)
{
    GPU_OR_SKIP();
    const uint32_t types[] = {GGML_TYPE_Q4_K, GGML_TYPE_Q6_K};
    const int64_t ks[] = {256, 768, 11008};
    const int32_t toks[] = {1, 2, 5, 8};
    for (int ti = 0; ti < 2; ti++)
        for (int ki = 0; ki < 3; ki++)
            for (int j = 0; j < 4; j++) {
                const int64_t n[1] = {ks[ki] > 4096 ? 40 : (j == 0 ? 1 : 301)};
                check_matvec_q8(&types[ti], 1, ks[ki], n, toks[j], 11 * ti + 3 * ki + j);
            }
    /* Q/K/V-like: three matrices, mixed types, one launch */
    const uint32_t mix[3] = {GGML_TYPE_Q4_K, GGML_TYPE_Q4_K, GGML_TYPE_Q6_K};
    const int64_t ns[3] = {256, 64, 67};
    check_matvec_q8(mix, 3, 512, ns, 1, 77);
    check_matvec_q8(mix, 3, 512, ns, 6, 78);
}

static void test_matvec_q8_glu(void **state)
{
    GPU_OR_SKIP();
    greta_error err = {0};
    const int64_t k = 768, n = 301;
    for (int32_t n_tok = 1; n_tok <= 5; n_tok += 4) {
        void *qg, *qu;
        float *dg, *du;
        make_weights(GGML_TYPE_Q4_K, k, n, 3, &qg, &dg);
        make_weights(GGML_TYPE_Q6_K, k, n, 4, &qu, &du);
        float *x = make_x(k, n_tok, 17);
        const int64_t rb = greta_gpu_q8_row_bytes(k);
        float *d_x = dev_upload(x, sizeof(float) * (size_t)(k * n_tok));
        uint8_t *d_q = dev_alloc((size_t)(rb * n_tok));
        void *d_g = dev_upload(qg, ggml_row_bytes(GGML_TYPE_Q4_K, k) * n);
        void *d_u = dev_upload(qu, ggml_row_bytes(GGML_TYPE_Q6_K, k) * n);
        float *d_o = dev_alloc(sizeof(float) * (size_t)(n * n_tok));
        const greta_gpu_mv_mat g = {.type = GGML_TYPE_Q4_K, .w = d_g, .n = n},
                               u = {.type = GGML_TYPE_Q6_K, .w = d_u, .n = n};
        EXPECT_OK(greta_gpu_quantize_q8(NULL, d_x, k, n_tok, k, d_q, &err));
        EXPECT_OK(greta_gpu_matvec_q8_glu(NULL, d_q, k, n_tok, &g, &u, d_o, n, &err));
        float *o = xmalloc(sizeof(float) * (size_t)(n * n_tok));
        dev_download(o, d_o, sizeof(float) * (size_t)(n * n_tok));
        for (int32_t t = 0; t < n_tok; t++)
            for (int64_t r = 0; r < n; r++) {
                double gr, gt, ur, ut;
                dot_ref(dg + r * k, x + t * k, k, &gr, &gt);
                dot_ref(du + r * k, x + t * k, k, &ur, &ut);
                const double sg = gr / (1.0 + exp(-gr)), ref = sg * ur;
                const double tol = 1.1 * gt * (fabs(ur) + ut) + (fabs(sg) + 1.1 * gt) * ut + 1e-5 * fabs(ref) + 1e-30;
                if (!(fabs(o[t * n + r] - ref) <= tol))
                    fail_msg("matvec_q8_glu tokens %d: out[%d][%lld] = %.9g, ref %.9g, tol %.3g", n_tok, t,
                             (long long)r, o[t * n + r], ref, tol);
            }
        greta_gpu_free(d_x), greta_gpu_free(d_q), greta_gpu_free(d_g), greta_gpu_free(d_u), greta_gpu_free(d_o);
        free(qg), free(qu), free(dg), free(du), free(x), free(o);
    }
}

static void test_bad_arguments(void **state)
{
    GPU_OR_SKIP();
    greta_error err = {0};
    float *d = dev_alloc(1 << 16);
    assert_false(greta_gpu_matvec_q8_supported(GGML_TYPE_Q8_0, 256));
    assert_false(greta_gpu_matvec_q8_supported(GGML_TYPE_Q4_K, 100));
    assert_true(greta_gpu_matvec_q8_supported(GGML_TYPE_Q6_K, 512));
    greta_gpu_mv_mat m[4] = {{.type = GGML_TYPE_Q4_K, .w = d, .n = 4, .y = d, .ld_y = 4}};
    m[1] = m[2] = m[3] = m[0];
    assert_int_equal(greta_gpu_quantize_q8(NULL, d, 100, 1, 100, d, &err), GRETA_ERR_INVALID);
    assert_non_null(strstr(err.msg, "quantize_q8"));
    assert_int_equal(greta_gpu_rmsnorm_q8(NULL, d, 300, d, d, 300, 1, 300, 1e-5f, d, &err), GRETA_ERR_INVALID);
    assert_int_equal(greta_gpu_matvec_q8(NULL, d, 256, 9, m, 1, 0, &err), GRETA_ERR_INVALID);
    assert_int_equal(greta_gpu_matvec_q8(NULL, d, 256, 1, m, 4, 0, &err), GRETA_ERR_INVALID);
    assert_int_equal(greta_gpu_matvec_q8(NULL, d, 100, 1, m, 1, 0, &err), GRETA_ERR_INVALID);
    m[0].type = GGML_TYPE_F16;
    assert_int_equal(greta_gpu_matvec_q8(NULL, d, 256, 1, m, 1, 0, &err), GRETA_ERR_UNSUPPORTED);
    assert_non_null(strstr(err.msg, "F16"));
    m[0].type = GGML_TYPE_Q4_K;
    m[1].n = 5;
    assert_int_equal(greta_gpu_matvec_q8_glu(NULL, d, 256, 1, &m[0], &m[1], d, 8, &err), GRETA_ERR_INVALID);
    greta_gpu_free(d);
}

/* ---- backend settings ----------------------------------------------------------- */

typedef struct run_out {
    int32_t ids[64];
    float *last; /* logits of the last decode step */
} run_out;

/* Greedy generation of the first prompt of model `name` in gqa-greedy.json
 * with the given options; returns 0 or the create error. */
static int greedy_run(const char *path, const cJSON *prompt, const greta_gpu_backend_opts *o, run_out *out,
                      greta_error *cerr)
{
    greta_error err = {0};
    greta_model *m = NULL;
    EXPECT_OK(greta_model_open(path, &m, &err));
    greta_backend_params p = {.n_ctx = 64, .n_seq = 1, .n_batch = 32, .n_threads = 1};
    greta_backend *b = NULL;
    int rc = greta_gpu_backend_create_opts(m, &p, o, &b, cerr);
    if (rc) {
        greta_model_close(&m);
        return rc;
    }
    const int32_t vocab = (int32_t)m->cfg.vocab_size;
    float *logits = xmalloc(sizeof(float) * (size_t)vocab);
    const cJSON *pids = cJSON_GetObjectItem(prompt, "prompt_ids"), *want = cJSON_GetObjectItem(prompt, "ids");
    const int32_t np = cJSON_GetArraySize(pids), ng = cJSON_GetArraySize(want);
    int32_t toks[64], pos[64], sq[64] = {0};
    assert_true(np + ng <= 64);
    for (int32_t i = 0; i < np; i++) {
        toks[i] = cJSON_GetArrayItem(pids, i)->valueint;
        pos[i] = i;
    }
    const greta_batch pb = {.n_tokens = np, .tokens = toks, .pos = pos, .seq = sq};
    EXPECT_OK(b->ops->forward(b, &pb, logits, &err));
    for (int32_t g = 0; g < ng; g++) {
        const int32_t id = (int32_t)greta_cpu_argmax(logits, vocab);
        out->ids[g] = id;
        if (id != cJSON_GetArrayItem(want, g)->valueint)
            fail_msg("kernels %d graph %d: token %d is %d, expected %d", o->decode_kernels, o->graph, g, id,
                     cJSON_GetArrayItem(want, g)->valueint);
        const int32_t ps = np + g;
        const greta_batch db = {.n_tokens = 1, .tokens = &id, .pos = &ps, .seq = sq};
        EXPECT_OK(b->ops->forward(b, &db, logits, &err));
    }
    out->last = logits;
    greta_backend_destroy(&b);
    greta_model_close(&m);
    return 0;
}

static void test_backend_settings(void **state)
{
    GPU_OR_SKIP();
    GRETA_TESTDATA_OR_SKIP(json_found, "quant/gqa-greedy.json");
    char json_path[4096]; /* the macro's path may not outlive the next use */
    snprintf(json_path, sizeof json_path, "%s", json_found);
    GRETA_TESTDATA_OR_SKIP(model_path, "quant/gqa-Q4_K_M.gguf");
    size_t n = 0;
    char *text = greta_read_file(json_path, &n);
    assert_non_null(text);
    cJSON *j = cJSON_Parse(text);
    free(text);
    assert_non_null(j);
    const cJSON *prompt = cJSON_GetObjectItem(cJSON_GetObjectItem(j, "models"), "gqa-Q4_K_M.gguf")->child;
    assert_non_null(prompt);
    unsetenv("GRETA_GPU_KERNELS");
    unsetenv("GRETA_GPU_GRAPH");
    greta_error err = {0};
    run_out r[4];
    for (int i = 0; i < 4; i++) {
        const greta_gpu_backend_opts o = {.kv_type = GRETA_GPU_KV_F16, .decode_kernels = 1 + i / 2, .graph = 1 + i % 2};
        EXPECT_OK(greedy_run(model_path, prompt, &o, &r[i], &err));
    }
    const int vocab = 512;
    double lo = 1e30, hi = -1e30, maxd = 0.0;
    for (int v = 0; v < vocab; v++) {
        lo = fmin(lo, r[0].last[v]), hi = fmax(hi, r[0].last[v]);
        maxd = fmax(maxd, fabs((double)r[0].last[v] - r[2].last[v]));
    }
    /* graph replay = the same kernels launched one by one */
    assert_memory_equal(r[0].last, r[1].last, sizeof(float) * vocab);
    assert_memory_equal(r[2].last, r[3].last, sizeof(float) * vocab);
    print_message("v1 vs v2 (int8 activations): max |d logit| %.3g, logit range %.3g\n", maxd, hi - lo);
    assert_true(maxd > 0.0);
    assert_true(maxd < 0.05 * (hi - lo));
    /* the variables select the same as the options */
    setenv("GRETA_GPU_KERNELS", "v1", 1);
    setenv("GRETA_GPU_GRAPH", "0", 1);
    const greta_gpu_backend_opts dflt = {.kv_type = GRETA_GPU_KV_F16};
    run_out e;
    EXPECT_OK(greedy_run(model_path, prompt, &dflt, &e, &err));
    assert_memory_equal(e.last, r[1].last, sizeof(float) * vocab);
    free(e.last);
    setenv("GRETA_GPU_KERNELS", "v3", 1);
    assert_int_equal(greedy_run(model_path, prompt, &dflt, &e, &err), GRETA_ERR_INVALID);
    assert_non_null(strstr(err.msg, "GRETA_GPU_KERNELS"));
    unsetenv("GRETA_GPU_KERNELS");
    setenv("GRETA_GPU_GRAPH", "yes", 1);
    assert_int_equal(greedy_run(model_path, prompt, &dflt, &e, &err), GRETA_ERR_INVALID);
    assert_non_null(strstr(err.msg, "GRETA_GPU_GRAPH"));
    unsetenv("GRETA_GPU_GRAPH");
    const greta_gpu_backend_opts bad = {.kv_type = GRETA_GPU_KV_F16, .decode_kernels = 3};
    assert_int_equal(greedy_run(model_path, prompt, &bad, &e, &err), GRETA_ERR_INVALID);
    for (int i = 0; i < 4; i++)
        free(r[i].last);
    cJSON_Delete(j);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_quantize_q8),   cmocka_unit_test(test_matvec_q8),
        cmocka_unit_test(test_matvec_q8_glu), cmocka_unit_test(test_bad_arguments),
        cmocka_unit_test(test_backend_settings),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
