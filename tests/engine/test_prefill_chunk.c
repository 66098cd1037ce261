/* test_prefill_chunk.c - the prefill chunk (issue 8): GRETA_PREFILL_CHUNK
 * sets the default n_batch, so greta_engine_prefill feeds a long prompt in
 * chunks of that many tokens.
 *
 *   - unset: the default GRETA_DEFAULT_BATCH (capped by n_ctx), and
 *     GRETA_GPU_PREFILL_CHUNK for the GPU backend's name;
 *   - GRETA_PREFILL_CHUNK=5: n_batch 5, and a 40-token prompt prefilled in
 *     8 chunks gives logits bit-identical to one chunk (the CPU backend's
 *     determinism contract), then the same greedy continuation;
 *   - an explicit n_batch wins over the variable;
 *   - bad values (0, 70000, "abc", "12x", "-3") fail the engine open with
 *     GRETA_ERR_INVALID naming the variable.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "etest.h"
#include "test_util.h"

#define N_PROMPT 40

static void prompt_ids(int32_t *ids)
{
    ids[0] = 1;
    for (int i = 1; i < N_PROMPT; i++)
        ids[i] = 2 + (i * 37) % 500;
}

/* Prefills the prompt into a fresh engine (n_batch 0 = the default) and
 * copies the last logits; returns the engine's n_batch. */
static int32_t prefill_logits(const char *model, int32_t n_batch, float *out, int32_t *vocab)
{
    greta_engine *e = etest_open(model, 64, 1, n_batch, 1, 0);
    const int32_t nb = greta_engine_backend_params(e)->n_batch;
    int32_t ids[N_PROMPT];
    prompt_ids(ids);
    const float *logits = NULL;
    greta_error err = {0};
    if (greta_engine_prefill(e, 0, ids, N_PROMPT, &logits, &err))
        fail_msg("prefill: %s", err.msg);
    *vocab = (int32_t)greta_engine_config(e)->vocab_size;
    memcpy(out, logits, sizeof(float) * (size_t)*vocab);
    assert_int_equal(greta_engine_seq_len(e, 0), N_PROMPT);
    greta_engine_destroy(&e);
    return nb;
}

static void test_default_and_chunked(void **state)
{
    (void)state;
    GRETA_TESTDATA_OR_SKIP(model, "stories260K.gguf");
    char path[4096];
    snprintf(path, sizeof path, "%s", model);
    float *one = malloc(sizeof(float) * 4096), *chunked = malloc(sizeof(float) * 4096);
    assert_non_null(one);
    assert_non_null(chunked);
    int32_t vocab = 0;

    unsetenv("GRETA_PREFILL_CHUNK");
    int32_t chunk = 0;
    greta_error err = {0};
    assert_int_equal(greta_engine_prefill_chunk(NULL, &chunk, &err), 0);
    assert_int_equal(chunk, GRETA_DEFAULT_BATCH);
    assert_int_equal(greta_engine_prefill_chunk("cpu", &chunk, &err), 0);
    assert_int_equal(chunk, GRETA_DEFAULT_BATCH);
    assert_int_equal(greta_engine_prefill_chunk("gpu", &chunk, &err), 0);
    assert_int_equal(chunk, GRETA_GPU_PREFILL_CHUNK);
    /* n_ctx 64 caps the default */
    assert_int_equal(prefill_logits(path, 0, one, &vocab), 64 < GRETA_DEFAULT_BATCH ? 64 : GRETA_DEFAULT_BATCH);
    assert_true(vocab > 0 && vocab <= 4096);

    setenv("GRETA_PREFILL_CHUNK", "5", 1);
    assert_int_equal(greta_engine_prefill_chunk("gpu", &chunk, &err), 0);
    assert_int_equal(chunk, 5);
    int32_t v2 = 0;
    assert_int_equal(prefill_logits(path, 0, chunked, &v2), 5);
    assert_int_equal(v2, vocab);
    assert_memory_equal(one, chunked, sizeof(float) * (size_t)vocab);

    /* an explicit n_batch wins */
    assert_int_equal(prefill_logits(path, 16, chunked, &v2), 16);
    assert_memory_equal(one, chunked, sizeof(float) * (size_t)vocab);
    unsetenv("GRETA_PREFILL_CHUNK");
    free(one);
    free(chunked);
}

static void test_bad_values(void **state)
{
    (void)state;
    GRETA_TESTDATA_OR_SKIP(model, "stories260K.gguf");
    const char *bad[] = {"0", "70000", "abc", "12x", "-3", " "};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        setenv("GRETA_PREFILL_CHUNK", bad[i], 1);
        int32_t chunk = 0;
        greta_error err = {0};
        assert_int_equal(greta_engine_prefill_chunk("cpu", &chunk, &err), GRETA_ERR_INVALID);
        assert_non_null(strstr(err.msg, "GRETA_PREFILL_CHUNK"));
        greta_engine_params p;
        greta_engine_params_default(&p);
        p.n_ctx = 64;
        p.n_threads = 1;
        greta_engine *e = NULL;
        greta_error e2 = {0};
        assert_int_equal(greta_engine_open(model, &p, &e, &e2), GRETA_ERR_INVALID);
        assert_null(e);
        if (!strstr(e2.msg, "GRETA_PREFILL_CHUNK"))
            fail_msg("value '%s': message '%s' does not name the variable", bad[i], e2.msg);
    }
    unsetenv("GRETA_PREFILL_CHUNK");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_default_and_chunked),
        cmocka_unit_test(test_bad_values),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
