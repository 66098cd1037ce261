/* test_gpu_e2e.c - the GPU backend end to end.
 *
 *   stories260K: greedy from BOS reproduces all 200 ids of
 *     stories260K-greedy.json (top-1 chosen on the GPU), and the logits at
 *     positions 0..3 match the float64 reference within 0.02 (the fp16 KV
 *     cache alone moves them by up to 7.6e-3 in a float64 model of it; fp32
 *     everywhere else adds ~1e-5);
 *   the same 201 ids fed as one prefill (the GEMM path) give, at every
 *     position, the next id as top-1 and logits within 1e-3 * std of the
 *     token-by-token run with the fp32 prefill path (v1), 2e-2 * std with
 *     the fp16-operand paths (mma, cublas: test_gpu_prefill measures them
 *     at <= 0.008 * std from the CPU reference, the decode at 0.005);
 *   quant/: every model of quant/gqa-greedy.json reproduces the 16 greedy
 *     ids of each prompt (prompt as one prefill, full logits read back);
 *   batch rules (refused batches change nothing), two sequences in one
 *     batch, seq_truncate, forward_topk against forward's logits, the fp32
 *     KV cache option (measurements), and the memory check for a context
 *     too large.
 */
#include <cjson/cJSON.h>
#include <math.h>
#include <string.h>

#include "gpu-worker/gpu_backend.h"
#include "gpu_test_util.h"
#include "kernels/cpu/ops.h"

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

static greta_backend *open_gpu(const char *path, greta_model **m, int32_t n_ctx, int32_t n_seq, int32_t n_batch)
{
    greta_error err = {0};
    EXPECT_OK(greta_model_open(path, m, &err));
    greta_backend_params p = {.n_ctx = n_ctx, .n_seq = n_seq, .n_batch = n_batch, .n_threads = 1};
    greta_backend *b = NULL;
    EXPECT_OK(greta_gpu_backend_create(*m, &p, &b, &err));
    assert_true(greta_gpu_backend_is(b));
    assert_string_equal(b->ops->name, "gpu");
    return b;
}

static double row_std(const float *x, int64_t n)
{
    double s = 0.0, s2 = 0.0;
    for (int64_t i = 0; i < n; i++) {
        s += x[i];
        s2 += (double)x[i] * x[i];
    }
    const double mean = s / (double)n;
    return sqrt(s2 / (double)n - mean * mean);
}

static void test_stories_greedy(void **state)
{
    GPU_OR_SKIP();
    GRETA_TESTDATA_OR_SKIP(model_path, "stories260K.gguf");
    char mp[4096];
    snprintf(mp, sizeof mp, "%s", model_path);
    GRETA_TESTDATA_OR_SKIP(json_path, "stories260K-greedy.json");
    cJSON *j = load_json(json_path);
    const cJSON *ids = cJSON_GetObjectItem(j, "ids"), *ref_logits = cJSON_GetObjectItem(j, "logits");
    assert_int_equal(cJSON_GetArraySize(ids), 201);
    greta_model *m = NULL;
    greta_backend *b = open_gpu(mp, &m, 256, 1, 256);
    const int32_t vocab = (int32_t)m->cfg.vocab_size;
    greta_error err = {0};
    float *logits = xmalloc(sizeof(float) * (size_t)vocab);
    float *step_logits = xmalloc(sizeof(float) * 201 * (size_t)vocab); /* token-by-token rows */
    int32_t tok = 1, seq = 0;
    for (int32_t pos = 0; pos < 200; pos++) {
        const greta_batch batch = {.n_tokens = 1, .tokens = &tok, .pos = &pos, .seq = &seq};
        int32_t next;
        float val, lse;
        if (pos < 4 || pos % 50 == 0) {
            /* full logits: compare with the reference, and top-1 with the GPU's */
            EXPECT_OK(b->ops->forward(b, &batch, logits, &err));
            memcpy(step_logits + (size_t)pos * vocab, logits, sizeof(float) * (size_t)vocab);
            next = (int32_t)greta_cpu_argmax(logits, vocab);
            if (pos < 4) {
                const cJSON *row = cJSON_GetArrayItem(ref_logits, pos);
                for (int32_t i = 0; i < vocab; i++) {
                    const double want = cJSON_GetArrayItem(row, i)->valuedouble;
                    if (!(fabs(logits[i] - want) <= 0.02))
                        fail_msg("stories260K logits pos %d id %d: %.6f, reference %.6f", pos, i, logits[i], want);
                }
            }
        } else {
            EXPECT_OK(b->ops->forward_topk(b, &batch, 1, &next, &val, &lse, &err));
            assert_true(isfinite(val) && isfinite(lse) && lse >= val);
        }
        const int32_t want = cJSON_GetArrayItem(ids, pos + 1)->valueint;
        if (next != want)
            fail_msg("stories260K greedy: step %d gave id %d, expected %d", pos, next, want);
        tok = next;
    }
    assert_int_equal(b->ops->seq_len(b, 0), 200);

    /* the whole sequence again as one prefill, logits at every position */
    int32_t all[201], pos[201], sq[201];
    uint8_t want_all[201];
    for (int i = 0; i < 201; i++) {
        all[i] = cJSON_GetArrayItem(ids, i)->valueint;
        pos[i] = i;
        sq[i] = 0;
        want_all[i] = 1;
    }
    EXPECT_OK(b->ops->seq_truncate(b, 0, 0, &err));
    assert_int_equal(b->ops->seq_len(b, 0), 0);
    float *pre = xmalloc(sizeof(float) * 200 * (size_t)vocab);
    const greta_batch pb = {.n_tokens = 200, .tokens = all, .pos = pos, .seq = sq, .want_logits = want_all};
    EXPECT_OK(b->ops->forward(b, &pb, pre, &err));
    for (int32_t p = 0; p < 200; p++) {
        const float *row = pre + (size_t)p * vocab;
        if (greta_cpu_argmax(row, vocab) != all[p + 1])
            fail_msg("stories260K prefill: position %d top-1 %lld, expected %d", p,
                     (long long)greta_cpu_argmax(row, vocab), all[p + 1]);
        if (p < 4 || p % 50 == 0) {
            const float *dec = step_logits + (size_t)p * vocab;
            const double tol =
                (greta_gpu_backend_prefill(b) == GRETA_GPU_PREFILL_V1 ? 1e-3 : 2e-2) * row_std(dec, vocab);
            for (int32_t i = 0; i < vocab; i++)
                if (!(fabs((double)row[i] - dec[i]) <= tol))
                    fail_msg("prefill vs decode at position %d id %d: %.7g vs %.7g", p, i, row[i], dec[i]);
        }
    }
    free(pre);
    free(logits);
    free(step_logits);
    greta_backend_destroy(&b);
    greta_model_close(&m);
    cJSON_Delete(j);
}

static void test_quant_greedy(void **state)
{
    GPU_OR_SKIP();
    GRETA_TESTDATA_OR_SKIP(json_path, "quant/gqa-greedy.json");
    cJSON *j = load_json(json_path);
    const cJSON *models = cJSON_GetObjectItem(j, "models");
    int n_models = 0;
    for (const cJSON *mj = models->child; mj; mj = mj->next) {
        char name[256];
        snprintf(name, sizeof name, "quant/%s", mj->string);
        const char *found = greta_testdata_find(name);
        if (!found)
            continue; /* the message is printed (or the test failed under GRETA_REQUIRE_TESTDATA) */
        char path[4096];
        snprintf(path, sizeof path, "%s", found);
        greta_model *m = NULL;
        greta_backend *b = open_gpu(path, &m, 64, 1, 32);
        const int32_t vocab = (int32_t)m->cfg.vocab_size;
        float *logits = xmalloc(sizeof(float) * (size_t)vocab);
        greta_error err = {0};
        int n_prompts = 0;
        for (const cJSON *pj = mj->child; pj; pj = pj->next, n_prompts++) {
            const cJSON *pids = cJSON_GetObjectItem(pj, "prompt_ids"), *want = cJSON_GetObjectItem(pj, "ids");
            const int32_t np = cJSON_GetArraySize(pids), ng = cJSON_GetArraySize(want);
            int32_t toks[64], pos[64], sq[64];
            assert_true(np + ng <= 64);
            for (int32_t i = 0; i < np; i++) {
                toks[i] = cJSON_GetArrayItem(pids, i)->valueint;
                pos[i] = i;
                sq[i] = 0;
            }
            EXPECT_OK(b->ops->seq_truncate(b, 0, 0, &err));
            const greta_batch pb = {.n_tokens = np, .tokens = toks, .pos = pos, .seq = sq};
            EXPECT_OK(b->ops->forward(b, &pb, logits, &err));
            for (int32_t g = 0; g < ng; g++) {
                const int32_t id = (int32_t)greta_cpu_argmax(logits, vocab);
                const int32_t expect = cJSON_GetArrayItem(want, g)->valueint;
                if (id != expect)
                    fail_msg("%s prompt %d: generated token %d is %d, expected %d", mj->string, n_prompts, g, id,
                             expect);
                const int32_t p = np + g;
                const greta_batch db = {.n_tokens = 1, .tokens = &id, .pos = &p, .seq = sq};
                if (g + 1 < ng)
                    EXPECT_OK(b->ops->forward(b, &db, logits, &err));
            }
        }
        print_message("%s: %d prompts reproduced on the GPU\n", mj->string, n_prompts);
        n_models++;
        free(logits);
        greta_backend_destroy(&b);
        greta_model_close(&m);
    }
    assert_true(n_models > 0 || !getenv("GRETA_REQUIRE_TESTDATA"));
    cJSON_Delete(j);
}

static void test_batch_rules(void **state)
{
    GPU_OR_SKIP();
    GRETA_TESTDATA_OR_SKIP(model_path, "stories260K.gguf");
    greta_model *m = NULL;
    greta_backend *b = open_gpu(model_path, &m, 32, 2, 8);
    const int32_t vocab = (int32_t)m->cfg.vocab_size;
    greta_error err = {0};
    float *l2 = xmalloc(sizeof(float) * 2 * (size_t)vocab), *l1 = xmalloc(sizeof(float) * (size_t)vocab);
    /* refused batches: wrong position, token out of range, full context, bad slot */
    int32_t tok = 1, pos = 1, seq = 0;
    greta_batch bad = {.n_tokens = 1, .tokens = &tok, .pos = &pos, .seq = &seq};
    assert_int_equal(b->ops->forward(b, &bad, l1, &err), GRETA_ERR_INVALID);
    assert_non_null(strstr(err.msg, "continues at position 0"));
    pos = 0;
    tok = vocab;
    assert_int_equal(b->ops->forward(b, &bad, l1, &err), GRETA_ERR_INVALID);
    tok = 1;
    seq = 2;
    assert_int_equal(b->ops->forward(b, &bad, l1, &err), GRETA_ERR_INVALID);
    assert_int_equal(b->ops->seq_len(b, 0), 0);
    /* two sequences in one batch = each alone */
    const int32_t toks2[] = {1, 1}, pos2[] = {0, 0}, seq2[] = {0, 1};
    const uint8_t want2[] = {1, 1};
    const greta_batch b2 = {.n_tokens = 2, .tokens = toks2, .pos = pos2, .seq = seq2, .want_logits = want2};
    EXPECT_OK(b->ops->forward(b, &b2, l2, &err));
    assert_int_equal(b->ops->seq_len(b, 0), 1);
    assert_int_equal(b->ops->seq_len(b, 1), 1);
    const int32_t nxt[] = {100, 200}, posn[] = {1, 1};
    const greta_batch bn = {.n_tokens = 2, .tokens = nxt, .pos = posn, .seq = seq2, .want_logits = want2};
    EXPECT_OK(b->ops->forward(b, &bn, l2, &err));
    /* sequence 1 again alone: truncate to 1 and redo its second token */
    EXPECT_OK(b->ops->seq_truncate(b, 1, 1, &err));
    assert_int_equal(b->ops->seq_len(b, 1), 1);
    seq = 1;
    pos = 1;
    tok = 200;
    const greta_batch b1 = {.n_tokens = 1, .tokens = &tok, .pos = &pos, .seq = &seq};
    EXPECT_OK(b->ops->forward(b, &b1, l1, &err));
    const double tol = 1e-5 * row_std(l1, vocab);
    for (int32_t i = 0; i < vocab; i++)
        if (!(fabs((double)l1[i] - l2[vocab + i]) <= tol))
            fail_msg("sequence 1 batched with 0 differs from alone at id %d: %.9g vs %.9g", i, l2[vocab + i], l1[i]);
    /* the context is full after n_ctx positions */
    EXPECT_OK(b->ops->seq_truncate(b, 0, 0, &err));
    int32_t t32[32], p32[32], s32[32];
    for (int i = 0; i < 32; i++)
        t32[i] = 1, p32[i] = i, s32[i] = 0;
    for (int i = 0; i < 32; i += 8) {
        const greta_batch bb = {.n_tokens = 8, .tokens = t32 + i, .pos = p32 + i, .seq = s32};
        EXPECT_OK(b->ops->forward(b, &bb, l1, &err));
    }
    pos = 32;
    seq = 0;
    assert_int_equal(b->ops->forward(b, &b1, l1, &err), GRETA_ERR_LIMIT);
    /* more tokens than n_batch */
    const greta_batch big = {.n_tokens = 9, .tokens = t32, .pos = p32, .seq = s32};
    assert_int_equal(b->ops->forward(b, &big, l1, &err), GRETA_ERR_INVALID);
    free(l1), free(l2);
    greta_backend_destroy(&b);
    assert_null(b);
    greta_model_close(&m);
}

/* The fp32 cache (measurements only) against the fp16 one: twice the bytes,
 * and the logits at positions 0..3 within 1e-4 of the float64 reference
 * (fp32 everywhere: a float64 model of it gives 5e-6), closer than fp16. */
static void test_kv_cache_types(void **state)
{
    GPU_OR_SKIP();
    GRETA_TESTDATA_OR_SKIP(model_found, "stories260K.gguf");
    char mp[4096];
    snprintf(mp, sizeof mp, "%s", model_found);
    GRETA_TESTDATA_OR_SKIP(json_path, "stories260K-greedy.json");
    cJSON *j = load_json(json_path);
    const cJSON *ids = cJSON_GetObjectItem(j, "ids"), *ref_logits = cJSON_GetObjectItem(j, "logits");
    greta_model *m = NULL;
    greta_error err = {0};
    EXPECT_OK(greta_model_open(mp, &m, &err));
    const int32_t vocab = (int32_t)m->cfg.vocab_size;
    float *logits = xmalloc(sizeof(float) * (size_t)vocab);
    greta_backend_params p = {.n_ctx = 64, .n_seq = 1, .n_batch = 8, .n_threads = 1};
    double maxdiff[2];
    uint64_t kv_bytes[2];
    for (int kt = 0; kt < 2; kt++) {
        const greta_gpu_backend_opts o = {.kv_type = kt ? GRETA_GPU_KV_F32 : GRETA_GPU_KV_F16};
        greta_backend *b = NULL;
        EXPECT_OK(greta_gpu_backend_create_opts(m, &p, &o, &b, &err));
        greta_gpu_backend_mem mem;
        EXPECT_OK(greta_gpu_backend_info(b, NULL, &mem, &err));
        kv_bytes[kt] = mem.kv_bytes;
        maxdiff[kt] = 0.0;
        int32_t seq = 0;
        for (int32_t pos = 0; pos < 4; pos++) {
            const int32_t tok = cJSON_GetArrayItem(ids, pos)->valueint;
            const greta_batch batch = {.n_tokens = 1, .tokens = &tok, .pos = &pos, .seq = &seq};
            EXPECT_OK(b->ops->forward(b, &batch, logits, &err));
            const cJSON *row = cJSON_GetArrayItem(ref_logits, pos);
            for (int32_t i = 0; i < vocab; i++)
                maxdiff[kt] = fmax(maxdiff[kt], fabs(logits[i] - cJSON_GetArrayItem(row, i)->valuedouble));
        }
        greta_backend_destroy(&b);
    }
    print_message("stories260K logits at positions 0..3 vs float64: fp16 KV cache max |d| %.3g, fp32 %.3g\n",
                  maxdiff[0], maxdiff[1]);
    assert_int_equal(kv_bytes[1], 2 * kv_bytes[0]);
    assert_true(maxdiff[1] <= 1e-4);
    assert_true(maxdiff[0] > maxdiff[1]);
    const greta_gpu_backend_opts bad = {.kv_type = (greta_gpu_kv_type)5};
    greta_backend *b = NULL;
    assert_int_equal(greta_gpu_backend_create_opts(m, &p, &bad, &b, &err), GRETA_ERR_INVALID);
    assert_null(b);
    free(logits);
    greta_model_close(&m);
    cJSON_Delete(j);
}

/* forward_topk returns the k best of the logits forward would return (same
 * position run twice: the kernels are deterministic), ids in the same order,
 * and the row's log-sum-exp. */
static void test_forward_topk(void **state)
{
    GPU_OR_SKIP();
    GRETA_TESTDATA_OR_SKIP(model_path, "stories260K.gguf");
    greta_model *m = NULL;
    greta_backend *b = open_gpu(model_path, &m, 64, 1, 16);
    const int32_t vocab = (int32_t)m->cfg.vocab_size;
    greta_error err = {0};
    float *full = xmalloc(sizeof(float) * 3 * (size_t)vocab);
    const int32_t toks[] = {1, 403, 407}, pos[] = {0, 1, 2}, sq[] = {0, 0, 0};
    const uint8_t want[] = {1, 0, 1};
    const greta_batch bb = {.n_tokens = 3, .tokens = toks, .pos = pos, .seq = sq, .want_logits = want};
    EXPECT_OK(b->ops->forward(b, &bb, full, &err));
    const int32_t ks[] = {1, 7, 256};
    for (int ki = 0; ki < 3; ki++) {
        const int32_t k = ks[ki];
        int32_t *ids = xmalloc(sizeof(int32_t) * 2 * (size_t)k);
        float *vals = xmalloc(sizeof(float) * 2 * (size_t)k), lse[2];
        EXPECT_OK(b->ops->seq_truncate(b, 0, 0, &err));
        EXPECT_OK(b->ops->forward_topk(b, &bb, k, ids, vals, lse, &err));
        assert_int_equal(b->ops->seq_len(b, 0), 3);
        for (int r = 0; r < 2; r++) {
            const float *row = full + (size_t)r * vocab;
            double mx = -INFINITY, s = 0.0;
            for (int32_t i = 0; i < vocab; i++)
                mx = fmax(mx, row[i]);
            for (int32_t i = 0; i < vocab; i++)
                s += exp((double)row[i] - mx);
            if (!(fabs(lse[r] - (mx + log(s))) <= 1e-4))
                fail_msg("forward_topk k %d row %d: lse %.7g, want %.7g", k, r, lse[r], mx + log(s));
            for (int32_t j = 0; j < k; j++) {
                const int32_t id = ids[r * k + j];
                assert_true(id >= 0 && id < vocab);
                assert_memory_equal(&vals[r * k + j], &row[id], sizeof(float));
                if (j > 0) {
                    const int32_t p = ids[r * k + j - 1];
                    assert_true(row[p] > row[id] || (row[p] == row[id] && p < id));
                }
            }
            /* nothing left out is better than the last one taken */
            const int32_t last = ids[r * k + k - 1];
            for (int32_t i = 0; i < vocab; i++) {
                int taken = 0;
                for (int32_t j = 0; j < k && !taken; j++)
                    taken = ids[r * k + j] == i;
                if (!taken)
                    assert_true(row[i] < row[last] || (row[i] == row[last] && i > last));
            }
        }
        free(ids);
        free(vals);
    }
    /* k out of range is refused and changes nothing */
    int32_t id;
    float val, lse;
    const int32_t t3 = 1, p3 = 3;
    const greta_batch one = {.n_tokens = 1, .tokens = &t3, .pos = &p3, .seq = sq};
    assert_int_equal(b->ops->forward_topk(b, &one, 0, &id, &val, &lse, &err), GRETA_ERR_INVALID);
    assert_int_equal(b->ops->forward_topk(b, &one, vocab + 1, &id, &val, &lse, &err), GRETA_ERR_INVALID);
    assert_int_equal(b->ops->seq_len(b, 0), 3);
    free(full);
    greta_backend_destroy(&b);
    greta_model_close(&m);
}

static void test_memory_check(void **state)
{
    GPU_OR_SKIP();
    GRETA_TESTDATA_OR_SKIP(model_path, "stories260K.gguf");
    greta_model *m = NULL;
    greta_error err = {0};
    EXPECT_OK(greta_model_open(model_path, &m, &err));
    /* 16M positions x 4096 sequences of fp16 KV: far beyond any GPU */
    greta_backend_params p = {.n_ctx = 1 << 24, .n_seq = 4096, .n_batch = 512, .n_threads = 1};
    greta_mem_plan plan;
    assert_int_equal(greta_gpu_backend_plan(m, &p, &plan, &err), GRETA_ERR_NOMEM);
    assert_non_null(strstr(err.msg, "GPU memory"));
    assert_non_null(strstr(err.msg, "KV cache"));
    greta_backend *b = NULL;
    assert_int_equal(greta_gpu_backend_create(m, &p, &b, &err), GRETA_ERR_NOMEM);
    assert_null(b);
    /* a plan that fits reports every part */
    p.n_ctx = 256;
    p.n_seq = 2;
    EXPECT_OK(greta_gpu_backend_plan(m, &p, &plan, &err));
    assert_string_equal(plan.backend, "gpu");
    assert_int_equal(plan.kv_bytes, 2ull * 2 * m->cfg.n_layers * 2 * 256 * m->cfg.n_kv_heads * m->cfg.head_dim);
    assert_true(plan.weights_bytes >= 1185376 - 14176 && plan.scratch_bytes > 0);
    assert_true(plan.total_bytes == plan.weights_bytes + plan.kv_bytes + plan.scratch_bytes + plan.logits_bytes);
    EXPECT_OK(greta_gpu_backend_create(m, &p, &b, &err));
    greta_gpu_info info;
    greta_gpu_backend_mem mem;
    EXPECT_OK(greta_gpu_backend_info(b, &info, &mem, &err));
    assert_int_equal(mem.kv_bytes, plan.kv_bytes);
    assert_int_equal(mem.weights_bytes, plan.weights_bytes);
    assert_true(mem.free_after_load > 0);
    greta_backend_destroy(&b);
    greta_model_close(&m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_stories_greedy),
        cmocka_unit_test(test_quant_greedy),
        cmocka_unit_test(test_batch_rules),
        cmocka_unit_test(test_kv_cache_types),
        cmocka_unit_test(test_forward_topk),
        cmocka_unit_test(test_memory_check),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
