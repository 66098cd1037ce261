/* test_engine.c - the CPU reference engine against the expected outputs in
 * the test data, and its determinism rules:
 *   - stories260K greedy from BOS (200 ids, text) and logits at positions 0..3;
 *   - every quantized model of quant/: prompt ids and 16 greedy ids;
 *   - llama-2-tiny-random (F16, 32000-token vocab) loads and generates;
 *   - bit-identical logits: prefill vs token by token, alone vs batched with
 *     other sequences, 1/2/3 threads, reference vs AVX2 kernels;
 *   - the rope settings of the file reach the forward pass;
 *   - bad batches are refused with messages and change nothing. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "etest.h"
#include "kernels/cpu/matmul.h"
#include "kernels/quant.h"
#include "sampler/sampler.h"
#include "test_util.h"
#include "tokenizer/tokenizer.h"

static int logits_finite(const float *x, int64_t n)
{
    for (int64_t i = 0; i < n; i++)
        if (!isfinite(x[i]))
            return 0;
    return 1;
}

/* ---- stories260K ------------------------------------------------------------ */

typedef struct sampler_ctx {
    greta_sampler *s;
    greta_sampler_state st;
} sampler_ctx;

static int sample_with_library(void *ctx, const float *logits, int32_t n_vocab, const int32_t *history,
                               int32_t n_history, int32_t *token, greta_error *err)
{
    sampler_ctx *c = ctx;
    return greta_sampler_sample(c->s, &c->st, logits, history, (size_t)n_history, token, NULL, err);
}

static void test_stories_greedy(void **state)
{
    GRETA_TESTDATA_OR_SKIP(model, "stories260K.gguf");
    char mpath[4096];
    snprintf(mpath, sizeof mpath, "%s", model);
    GRETA_TESTDATA_OR_SKIP(jpath, "stories260K-greedy.json");
    cJSON *j = etest_json_load(jpath);
    int32_t n_ids;
    int32_t *ids = etest_json_ids(cJSON_GetObjectItem(j, "ids"), &n_ids);
    assert_int_equal(n_ids, 201);

    greta_engine *e = etest_open(mpath, 0, 0, 0, 2, 0);
    greta_error err = {0};
    int32_t out[200];
    greta_gen_stats st;

    /* built-in greedy */
    static double steps[200];
    greta_generate_params gp = {.prompt = ids, .n_prompt = 1, .n_predict = 200, .eos_token = -1,
                                .tokens_out = out, .step_seconds = steps};
    assert_int_equal(greta_engine_generate(e, &gp, &st, &err), 0);
    assert_int_equal(st.n_generated, 200);
    assert_int_equal(st.n_prompt, 1);
    assert_int_equal(st.n_decode, 199);
    assert_int_equal(st.stop, GRETA_STOP_LENGTH);
    double sum = 0;
    for (int i = 1; i < 200; i++) {
        assert_true(steps[i] > 0);
        sum += steps[i];
    }
    assert_true(steps[0] >= st.prompt_s && st.ttft_s >= steps[0]);
    assert_true(sum <= st.decode_s * 1.000001 + 1e-9 && sum >= st.decode_s * 0.999999 - 1e-9);
    assert_true(st.total_s >= st.ttft_s + st.decode_s * 0.999999);
    for (int i = 0; i < 200; i++)
        if (out[i] != ids[i + 1])
            fail_msg("generated token %d is %d, expected %d", i, out[i], ids[i + 1]);

    /* the sampler library at temperature 0 picks the same tokens */
    sampler_ctx sc;
    greta_sampler_params sp;
    greta_sampler_params_default(&sp);
    sp.temperature = 0;
    assert_int_equal(greta_sampler_create(512, &sc.s, &err), 0);
    greta_sampler_state_init(&sc.st, &sp, 0);
    memset(out, 0, sizeof out);
    gp.sample = sample_with_library;
    gp.sample_ctx = &sc;
    assert_int_equal(greta_engine_generate(e, &gp, &st, &err), 0);
    assert_memory_equal(out, ids + 1, sizeof out);
    greta_sampler_destroy(&sc.s);

    /* the decoded text */
    greta_tokenizer *tok = NULL;
    assert_int_equal(greta_tokenizer_create_from_gguf(greta_engine_model(e)->file, &tok, &err), 0);
    char text[8192];
    size_t len = 0;
    assert_int_equal(greta_tokenizer_decode(tok, out, 200, 0, text, sizeof text, &len, &err), 0);
    assert_string_equal(text, cJSON_GetObjectItem(j, "expected_text")->valuestring);
    greta_tokenizer_destroy(&tok);

    greta_engine_destroy(&e);
    assert_null(e);
    free(ids);
    cJSON_Delete(j);
}

static void test_stories_logits(void **state)
{
    GRETA_TESTDATA_OR_SKIP(model, "stories260K.gguf");
    char mpath[4096];
    snprintf(mpath, sizeof mpath, "%s", model);
    GRETA_TESTDATA_OR_SKIP(jpath, "stories260K-greedy.json");
    cJSON *j = etest_json_load(jpath);
    int32_t n_ids;
    int32_t *ids = etest_json_ids(cJSON_GetObjectItem(j, "ids"), &n_ids);
    const cJSON *L = cJSON_GetObjectItem(j, "logits");
    assert_int_equal(cJSON_GetArraySize(L), 4);
    static float got[4 * 512];
    for (int isa = GRETA_CPU_ISA_REF; isa <= GRETA_CPU_ISA_AVX2; isa++) {
        if (isa == GRETA_CPU_ISA_AVX2 && !greta_cpu_avx2_available())
            continue;
        greta_engine *e = etest_open(mpath, 64, 1, 0, 1, isa);
        etest_all_logits(e, ids, 4, got);
        double maxdiff = 0;
        for (int p = 0; p < 4; p++) {
            const cJSON *row = cJSON_GetArrayItem(L, p);
            assert_int_equal(cJSON_GetArraySize(row), 512);
            for (int v = 0; v < 512; v++) {
                double d = fabs(got[p * 512 + v] - cJSON_GetArrayItem(row, v)->valuedouble);
                if (d > maxdiff)
                    maxdiff = d;
            }
        }
        print_message("stories260K logits 0..3 (%s): max |diff| vs float64 = %.3g\n",
                      greta_cpu_isa_name((greta_cpu_isa)isa), maxdiff);
        assert_true(maxdiff < 1e-4);
        greta_engine_destroy(&e);
    }
    free(ids);
    cJSON_Delete(j);
}

/* ---- quant/ models ------------------------------------------------------------------ */

static void test_quant_models_greedy(void **state)
{
    GRETA_TESTDATA_OR_SKIP(jpath, "quant/gqa-greedy.json");
    cJSON *j = etest_json_load(jpath);
    const cJSON *models = cJSON_GetObjectItem(j, "models");
    const char *expect[] = {"gqa-Q4_K_M.gguf", "gqa-Q4_K_S.gguf", "gqa-Q5_K_M.gguf", "gqa-Q6_K.gguf",
                            "gqa-Q8_0.gguf", "gqa-Q4_0.gguf", "gqa-BF16.gguf"};
    for (size_t mi = 0; mi < sizeof expect / sizeof expect[0]; mi++) {
        const cJSON *cases = cJSON_GetObjectItem(models, expect[mi]);
        assert_non_null(cases);
        char rel[256];
        snprintf(rel, sizeof rel, "quant/%s", expect[mi]);
        GRETA_TESTDATA_OR_SKIP(mpath, rel);
        greta_engine *e = etest_open(mpath, 128, 1, 0, 2, 0);
        const greta_model_config *cfg = greta_engine_config(e);
        assert_true(fabsf(cfg->rope_freq_base - 10011.0f) < 1e-3f); /* the non-default base */
        assert_true(cfg->n_kv_heads < cfg->n_heads);                 /* GQA */
        greta_tokenizer *tok = NULL;
        greta_error err = {0};
        assert_int_equal(greta_tokenizer_create_from_gguf(greta_engine_model(e)->file, &tok, &err), 0);
        const cJSON *c;
        int n_cases = 0;
        cJSON_ArrayForEach(c, cases) {
            int32_t n_prompt, n_want;
            int32_t *prompt = etest_json_ids(cJSON_GetObjectItem(c, "prompt_ids"), &n_prompt);
            int32_t *want = etest_json_ids(cJSON_GetObjectItem(c, "ids"), &n_want);
            assert_int_equal(n_want, 16);
            /* the prompt's ids, from the tokenizer with the model's flags */
            const char *text = cJSON_GetObjectItem(c, "prompt")->valuestring;
            int32_t enc[64];
            size_t n_enc = 0;
            assert_int_equal(greta_tokenizer_encode(tok, text, strlen(text), greta_tokenizer_default_flags(tok),
                                                    enc, 64, &n_enc, &err), 0);
            assert_int_equal((int32_t)n_enc, n_prompt);
            assert_memory_equal(enc, prompt, sizeof(int32_t) * (size_t)n_prompt);
            /* prefill + 16 greedy steps */
            int32_t out[16];
            greta_gen_stats st;
            greta_generate_params gp = {.prompt = prompt, .n_prompt = n_prompt, .n_predict = 16,
                                        .eos_token = -1, .tokens_out = out};
            assert_int_equal(greta_engine_generate(e, &gp, &st, &err), 0);
            for (int i = 0; i < 16; i++)
                if (out[i] != want[i])
                    fail_msg("%s '%s': token %d is %d, expected %d", expect[mi], text, i, out[i], want[i]);
            free(prompt);
            free(want);
            n_cases++;
        }
        assert_true(n_cases >= 1);
        greta_tokenizer_destroy(&tok);
        greta_engine_destroy(&e);
    }
    cJSON_Delete(j);
}

static void test_llama2_tiny_random(void **state)
{
    GRETA_TESTDATA_OR_SKIP(mpath, "llama-2-tiny-random.gguf");
    greta_engine *e = etest_open(mpath, 64, 1, 0, 2, 0);
    const greta_model_config *cfg = greta_engine_config(e);
    assert_int_equal(cfg->vocab_size, 32000);
    assert_int_equal(greta_engine_model(e)->layers[0].wq->type, GGML_TYPE_F16);
    const int32_t prompt[3] = {1, 15043, 3186}; /* BOS "Hello world" */
    int32_t out[12];
    greta_gen_stats st;
    greta_error err = {0};
    greta_generate_params gp = {.prompt = prompt, .n_prompt = 3, .n_predict = 12, .eos_token = -1,
                                .tokens_out = out};
    assert_int_equal(greta_engine_generate(e, &gp, &st, &err), 0);
    assert_int_equal(st.n_generated, 12);
    for (int i = 0; i < 12; i++)
        assert_true(out[i] >= 0 && out[i] < 32000);
    static float logits[3 * 32000];
    etest_all_logits(e, prompt, 3, logits);
    assert_true(logits_finite(logits, 3 * 32000));
    /* F16 weights: reference and AVX2 kernels agree bit for bit */
    if (greta_cpu_avx2_available()) {
        static float ref[3 * 32000];
        greta_engine *r = etest_open(mpath, 64, 1, 0, 1, GRETA_CPU_ISA_REF);
        etest_all_logits(r, prompt, 3, ref);
        assert_memory_equal(ref, logits, sizeof ref);
        greta_engine_destroy(&r);
    }
    greta_engine_destroy(&e);
}

/* ---- determinism ------------------------------------------------------------------------ */

/* Logits of seq 0 fed token by token: out[n][vocab]. */
static void stepwise_logits(greta_engine *e, const int32_t *tokens, int32_t n, float *out)
{
    greta_error err = {0};
    const int32_t vocab = (int32_t)greta_engine_config(e)->vocab_size;
    assert_int_equal(greta_engine_seq_clear(e, 0, &err), 0);
    for (int32_t i = 0; i < n; i++) {
        const float *l = NULL;
        assert_int_equal(greta_engine_prefill(e, 0, tokens + i, 1, &l, &err), 0);
        memcpy(out + (size_t)i * vocab, l, sizeof(float) * (size_t)vocab);
    }
}

/* Prefill vs token by token, and across threads and ISAs, for one model. */
static void check_bit_identity(const char *path, const int32_t *tokens, int32_t n)
{
    greta_engine *e = etest_open(path, 64, 1, 0, 2, 0);
    const size_t vocab = greta_engine_config(e)->vocab_size;
    float *a = malloc(sizeof(float) * vocab * (size_t)n), *b = malloc(sizeof(float) * vocab * (size_t)n);
    assert_true(a && b);
    etest_all_logits(e, tokens, n, a);
    stepwise_logits(e, tokens, n, b);
    assert_memory_equal(a, b, sizeof(float) * vocab * (size_t)n);
    greta_engine_destroy(&e);
    const int configs[][2] = {{1, GRETA_CPU_ISA_REF}, {3, GRETA_CPU_ISA_REF}, {3, GRETA_CPU_ISA_AUTO}};
    for (int c = 0; c < 3; c++) {
        e = etest_open(path, 64, 1, 0, configs[c][0], configs[c][1]);
        etest_all_logits(e, tokens, n, b);
        if (memcmp(a, b, sizeof(float) * vocab * (size_t)n) != 0)
            fail_msg("%s: logits differ with %d threads, %s kernels", path, configs[c][0],
                     greta_cpu_isa_name((greta_cpu_isa)configs[c][1]));
        greta_engine_destroy(&e);
    }
    free(a);
    free(b);
}

static void test_bit_identical_prefill_threads_isa(void **state)
{
    GRETA_TESTDATA_OR_SKIP(s, "stories260K.gguf");
    const int32_t toks[12] = {1, 403, 407, 261, 378, 432, 383, 286, 261, 376, 298, 315};
    char path[4096];
    snprintf(path, sizeof path, "%s", s);
    check_bit_identity(path, toks, 12);
    const char *quant[] = {"quant/gqa-Q4_K_M.gguf", "quant/gqa-Q5_K_M.gguf", "quant/gqa-Q6_K.gguf",
                           "quant/gqa-Q8_0.gguf", "quant/gqa-Q4_0.gguf", "quant/gqa-BF16.gguf"};
    for (size_t i = 0; i < sizeof quant / sizeof quant[0]; i++) {
        GRETA_TESTDATA_OR_SKIP(q, quant[i]);
        snprintf(path, sizeof path, "%s", q);
        check_bit_identity(path, toks, 6);
    }
}

/* Sequence A alone, token by token, vs A batched with B and C in mixed
 * batches (B's prompt prefilled in the same batch as A's decode steps). */
static void test_bit_identical_batched_sequences(void **state)
{
    GRETA_TESTDATA_OR_SKIP(s, "stories260K.gguf");
    const int32_t A[8] = {1, 403, 407, 261, 378, 432, 383, 286};
    const int32_t B[8] = {1, 338, 381, 261, 370, 300, 301, 302};
    const int32_t C[8] = {1, 291, 280, 294, 269, 265, 268, 315};
    const int32_t V = 512;
    static float alone_a[8 * 512], alone_b[8 * 512], alone_c[8 * 512];
    greta_engine *e = etest_open(s, 32, 3, 0, 2, 0);
    stepwise_logits(e, A, 8, alone_a);
    stepwise_logits(e, B, 8, alone_b);
    stepwise_logits(e, C, 8, alone_c);
    greta_error err = {0};
    for (int q = 0; q < 3; q++)
        assert_int_equal(greta_engine_seq_clear(e, q, &err), 0);
    /* step 0: A0 A1 | B0..B4 (prefill) in one batch; C waits.
     * step 1: C0 C1 C2 | A2 | B5.  steps 2..: A, B, C one token each. */
    int32_t ia = 0, ib = 0, ic = 0;
    for (int step = 0; ia < 8 || ib < 8 || ic < 8; step++) {
        int32_t tok[16], pos[16], seq[16];
        uint8_t want[16];
        int n = 0;
        const int na = step == 0 ? 2 : 1, nb = step == 0 ? 5 : 1, nc = step == 0 ? 0 : step == 1 ? 3 : 1;
        for (int k = 0; k < nc && ic < 8; k++, n++, ic++) {
            tok[n] = C[ic], pos[n] = ic, seq[n] = 2, want[n] = 1;
        }
        for (int k = 0; k < na && ia < 8; k++, n++, ia++) {
            tok[n] = A[ia], pos[n] = ia, seq[n] = 0, want[n] = 1;
        }
        for (int k = 0; k < nb && ib < 8; k++, n++, ib++) {
            tok[n] = B[ib], pos[n] = ib, seq[n] = 1, want[n] = 1;
        }
        const greta_batch b = {.n_tokens = n, .tokens = tok, .pos = pos, .seq = seq, .want_logits = want};
        const float *l = NULL;
        assert_int_equal(greta_engine_forward(e, &b, &l, &err), 0);
        for (int i = 0; i < n; i++) {
            const float *alone = seq[i] == 0 ? alone_a : seq[i] == 1 ? alone_b : alone_c;
            if (memcmp(l + (size_t)i * V, alone + (size_t)pos[i] * V, sizeof(float) * V) != 0)
                fail_msg("step %d: sequence %d position %d differs from its run alone", step, seq[i], pos[i]);
        }
    }
    assert_int_equal(greta_engine_seq_len(e, 1), 8);
    greta_engine_destroy(&e);
}

/* ---- config reaches the forward pass ------------------------------------------------------- */

static void test_rope_settings_used(void **state)
{
    GRETA_TESTDATA_OR_SKIP(s, "stories260K.gguf");
    char src[4096];
    snprintf(src, sizeof src, "%s", s);
    const char *dir = greta_test_tmpdir("engine_rope");
    assert_non_null(dir);
    char same[4200], scaled[4200], based[4200];
    snprintf(same, sizeof same, "%s/factor1.gguf", dir);
    snprintf(scaled, sizeof scaled, "%s/factor2.gguf", dir);
    snprintf(based, sizeof based, "%s/base10000.gguf", dir);
    etest_write_variant(src, same, ETEST_KEEP_TYPE, "llama.rope.scaling.factor", 1.0f);
    etest_write_variant(src, scaled, ETEST_KEEP_TYPE, "llama.rope.scaling.factor", 2.0f);
    etest_write_variant(src, based, ETEST_KEEP_TYPE, "llama.rope.freq_base", 10000.0f);
    const int32_t toks[6] = {1, 403, 407, 261, 378, 432};
    static float a[6 * 512], b[6 * 512];
    greta_engine *e = etest_open(src, 16, 1, 0, 1, 0);
    etest_all_logits(e, toks, 6, a);
    greta_engine_destroy(&e);
    /* scaling factor 1 and an explicit base of 10000 are the defaults: same bits */
    e = etest_open(same, 16, 1, 0, 1, 0);
    etest_all_logits(e, toks, 6, b);
    assert_memory_equal(a, b, sizeof a);
    greta_engine_destroy(&e);
    e = etest_open(based, 16, 1, 0, 1, 0);
    etest_all_logits(e, toks, 6, b);
    assert_memory_equal(a, b, sizeof a);
    greta_engine_destroy(&e);
    /* factor 2: position 0 has no rotation (same logits), later ones differ */
    e = etest_open(scaled, 16, 1, 0, 1, 0);
    assert_true(fabsf(greta_engine_config(e)->rope_freq_scale - 0.5f) < 1e-7f);
    etest_all_logits(e, toks, 6, b);
    assert_memory_equal(a, b, sizeof(float) * 512);
    assert_memory_not_equal(a + 5 * 512, b + 5 * 512, sizeof(float) * 512);
    greta_engine_destroy(&e);
}

/* ---- bad input ------------------------------------------------------------------------------ */

static void test_bad_batches(void **state)
{
    GRETA_TESTDATA_OR_SKIP(s, "stories260K.gguf");
    greta_engine *e = etest_open(s, 8, 2, 4, 1, 0);
    greta_error err = {0};
    const float *l = NULL;
    int32_t tok[5] = {1, 403, 407, 261, 378}, pos[5] = {0, 1, 2, 3, 4}, seq[5] = {0, 0, 0, 0, 0};
    greta_batch b = {.n_tokens = 2, .tokens = tok, .pos = pos, .seq = seq};
    struct {
        int32_t n, tok0, pos1, seq1;
        int code;
        const char *msg;
    } bad[] = {
        {0, 1, 1, 0, GRETA_ERR_INVALID, "n_tokens 0"},
        {5, 1, 1, 0, GRETA_ERR_INVALID, "n_tokens 5"},
        {2, -1, 1, 0, GRETA_ERR_INVALID, "tokens[0] = -1"},
        {2, 512, 1, 0, GRETA_ERR_INVALID, "tokens[0] = 512"},
        {2, 1, 2, 0, GRETA_ERR_INVALID, "pos[1] = 2 but sequence 0 continues at position 1"},
        {2, 1, 1, 2, GRETA_ERR_INVALID, "seq[1] = 2"},
        {2, 1, 1, -1, GRETA_ERR_INVALID, "seq[1] = -1"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        b.n_tokens = bad[i].n;
        tok[0] = bad[i].tok0;
        pos[1] = bad[i].pos1;
        seq[1] = bad[i].seq1;
        assert_int_equal(greta_engine_forward(e, &b, &l, &err), bad[i].code);
        if (!strstr(err.msg, bad[i].msg))
            fail_msg("case %zu: message '%s' lacks '%s'", i, err.msg, bad[i].msg);
        assert_int_equal(greta_engine_seq_len(e, 0), 0); /* nothing changed */
    }
    tok[0] = 1;
    pos[1] = 1;
    seq[1] = 0;
    b.n_tokens = 2;
    assert_int_equal(greta_engine_forward(e, &b, &l, &err), 0);
    assert_int_equal(greta_engine_seq_len(e, 0), 2);
    /* a batch must continue the sequence */
    b.n_tokens = 1;
    assert_int_equal(greta_engine_forward(e, &b, &l, &err), GRETA_ERR_INVALID);
    assert_non_null(strstr(err.msg, "continues at position 2"));
    /* fill the context of 8, then one more */
    int32_t more[6] = {261, 378, 432, 383, 286, 261};
    assert_int_equal(greta_engine_prefill(e, 0, more, 6, &l, &err), 0);
    assert_int_equal(greta_engine_seq_len(e, 0), 8);
    assert_int_equal(greta_engine_prefill(e, 0, more, 1, &l, &err), GRETA_ERR_LIMIT);
    assert_non_null(strstr(err.msg, "context of 8"));
    int32_t p8 = 8, s0 = 0;
    const greta_batch full = {.n_tokens = 1, .tokens = more, .pos = &p8, .seq = &s0};
    assert_int_equal(greta_engine_forward(e, &full, &l, &err), GRETA_ERR_LIMIT);
    /* truncation */
    assert_int_equal(greta_engine_seq_clear(e, 5, &err), GRETA_ERR_INVALID);
    assert_int_equal(greta_engine_seq_clear(e, 0, &err), 0);
    assert_int_equal(greta_engine_seq_len(e, 0), 0);
    /* generate: empty prompt, prompt longer than the context */
    greta_gen_stats st;
    greta_generate_params gp = {.prompt = tok, .n_prompt = 0, .n_predict = 4, .eos_token = -1};
    assert_int_equal(greta_engine_generate(e, &gp, &st, &err), GRETA_ERR_INVALID);
    int32_t long_prompt[9] = {1, 2, 3, 4, 5, 6, 7, 8, 9};
    gp.prompt = long_prompt;
    gp.n_prompt = 9;
    assert_int_equal(greta_engine_generate(e, &gp, &st, &err), GRETA_ERR_LIMIT);
    assert_non_null(strstr(err.msg, "context holds 8"));
    /* the context ends generation early */
    gp.n_prompt = 1;
    gp.n_predict = 50;
    assert_int_equal(greta_engine_generate(e, &gp, &st, &err), 0);
    assert_int_equal(st.stop, GRETA_STOP_CONTEXT);
    assert_int_equal(st.n_generated, 8);
    /* eos stops it too and is not passed on */
    int32_t out[50];
    gp.tokens_out = out;
    gp.n_predict = 5;
    assert_int_equal(greta_engine_generate(e, &gp, &st, &err), 0);
    gp.eos_token = out[2];
    int32_t again[50];
    gp.tokens_out = again;
    assert_int_equal(greta_engine_generate(e, &gp, &st, &err), 0);
    assert_int_equal(st.stop, GRETA_STOP_EOS);
    assert_true(st.n_generated <= 2);
    greta_engine_destroy(&e);
}

static void test_bad_params(void **state)
{
    GRETA_TESTDATA_OR_SKIP(s, "stories260K.gguf");
    greta_engine_params p;
    greta_engine *e = NULL;
    greta_error err = {0};
    greta_engine_params_default(&p);
#ifndef GRETA_HAVE_GPU
    p.backend = "gpu";
    assert_int_equal(greta_engine_open(s, &p, &e, &err), GRETA_ERR_UNSUPPORTED);
    assert_non_null(strstr(err.msg, "not built with GPU support"));
#endif
    p.backend = "tpu";
    assert_int_equal(greta_engine_open(s, &p, &e, &err), GRETA_ERR_INVALID);
    assert_non_null(strstr(err.msg, "'tpu'"));
    greta_engine_params_default(&p);
    p.n_threads = 1000;
    assert_int_equal(greta_engine_open(s, &p, &e, &err), GRETA_ERR_INVALID);
    assert_non_null(strstr(err.msg, "n_threads"));
    greta_engine_params_default(&p);
    p.n_ctx = -3;
    assert_int_equal(greta_engine_open(s, &p, &e, &err), GRETA_ERR_INVALID);
    greta_engine_params_default(&p);
    p.n_ctx = (1 << 24) + 1;
    assert_int_equal(greta_engine_open(s, &p, &e, &err), GRETA_ERR_INVALID);
    assert_non_null(strstr(err.msg, "n_ctx"));
    greta_engine_params_default(&p);
    p.cpu_isa = 9;
    assert_int_equal(greta_engine_open(s, &p, &e, &err), GRETA_ERR_INVALID);
    assert_null(e);
    assert_int_equal(greta_engine_open("/nonexistent/model.gguf", &p, &e, &err) < 0, 1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_stories_greedy),
        cmocka_unit_test(test_stories_logits),
        cmocka_unit_test(test_quant_models_greedy),
        cmocka_unit_test(test_llama2_tiny_random),
        cmocka_unit_test(test_bit_identical_prefill_threads_isa),
        cmocka_unit_test(test_bit_identical_batched_sequences),
        cmocka_unit_test(test_rope_settings_used),
        cmocka_unit_test(test_bad_batches),
        cmocka_unit_test(test_bad_params),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
