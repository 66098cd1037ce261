/* test_cpu_kv_f16.c - the CPU reference with an fp16-valued KV cache
 * (greta_cpu_backend_opts.kv_f16, what `greta parity` gates the GPU backend
 * against), on stories260K:
 *   - every cached key and value is an fp16 value; in layer 0, whose inputs
 *     do not depend on the cache, they are exactly the fp32 backend's values
 *     rounded to nearest even; the fp32 backend's cache holds values that
 *     are not fp16 values (so the check can fail);
 *   - the logits differ from the fp32 backend's, but little (top-1 the same
 *     at every position, max |d| / std of the row below 1e-2);
 *   - deterministic: a second backend fed token by token gives the same
 *     logits bit for bit as one prefill;
 *   - the detail string says so; greta_cpu_backend_create keeps fp32;
 *     kv_view refuses bad positions and other backends. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/model.h"
#include "gpu-worker/cpu_backend.h"
#include "kernels/cpu/ops.h"
#include "kernels/quant.h"
#include "test_util.h"

#define N_TOK 12

static const int32_t toks[N_TOK] = {1, 403, 407, 261, 378, 432, 290, 314, 282, 380, 271, 263};

static greta_backend *make(const greta_model *m, int kv_f16)
{
    const greta_backend_params p = {.n_ctx = 32, .n_seq = 1, .n_batch = N_TOK, .n_threads = 2};
    const greta_cpu_backend_opts o = {.kv_f16 = kv_f16};
    greta_backend *b = NULL;
    greta_error err = {0};
    if (greta_cpu_backend_create_opts(m, &p, &o, &b, &err))
        fail_msg("create: %s", err.msg);
    return b;
}

/* Feeds toks[start..start+n) at their positions, logits of every token to out[n][vocab]. */
static void feed(greta_backend *b, int32_t start, int32_t n, float *out)
{
    int32_t pos[N_TOK], seq[N_TOK] = {0};
    uint8_t want[N_TOK];
    for (int32_t i = 0; i < n; i++) {
        pos[i] = start + i;
        want[i] = 1;
    }
    const greta_batch batch = {.n_tokens = n, .tokens = toks + start, .pos = pos, .seq = seq, .want_logits = want};
    greta_error err = {0};
    if (b->ops->forward(b, &batch, out, &err))
        fail_msg("forward: %s", err.msg);
}

static int is_fp16_value(float x)
{
    return greta_fp16_to_f32(greta_f32_to_fp16(x)) == x;
}

static void test_kv_f16(void **state)
{
    (void)state;
    GRETA_TESTDATA_OR_SKIP(path, "stories260K.gguf");
    greta_model *m = NULL;
    greta_error err = {0};
    if (greta_model_open(path, &m, &err))
        fail_msg("%s", err.msg);
    const int32_t vocab = (int32_t)m->cfg.vocab_size, layers = (int32_t)m->cfg.n_layers;
    const int32_t kv_dim = (int32_t)(m->cfg.n_kv_heads * m->cfg.head_dim);
    greta_backend *f32 = make(m, 0), *f16 = make(m, 1), *again = make(m, 1);
    ASSERT_CONTAINS(f16->detail, ", fp16 KV");
    assert_null(strstr(f32->detail, "fp16"));
    float *a = malloc(sizeof(float) * N_TOK * (size_t)vocab), *b = malloc(sizeof(float) * N_TOK * (size_t)vocab),
          *c = malloc(sizeof(float) * N_TOK * (size_t)vocab);
    assert_true(a && b && c);
    feed(f32, 0, N_TOK, a);
    feed(f16, 0, N_TOK, b);
    for (int32_t t = 0; t < N_TOK; t++) /* token by token */
        feed(again, t, 1, c + (size_t)t * vocab);

    /* the cache: fp16 values; layer 0 = the fp32 backend's values rounded */
    int64_t not_f16_in_f32 = 0, checked = 0;
    for (int32_t l = 0; l < layers; l++)
        for (int32_t p = 0; p < N_TOK; p++) {
            const float *k16, *v16, *k32, *v32;
            assert_int_equal(greta_cpu_backend_kv_view(f16, 0, l, p, &k16, &v16, &err), 0);
            assert_int_equal(greta_cpu_backend_kv_view(f32, 0, l, p, &k32, &v32, &err), 0);
            for (int32_t i = 0; i < kv_dim; i++) {
                if (!is_fp16_value(k16[i]) || !is_fp16_value(v16[i]))
                    fail_msg("layer %d pos %d [%d]: %.9g / %.9g are not fp16 values", l, p, i, k16[i], v16[i]);
                not_f16_in_f32 += !is_fp16_value(k32[i]) + !is_fp16_value(v32[i]);
                if (l == 0) {
                    assert_true(k16[i] == greta_fp16_to_f32(greta_f32_to_fp16(k32[i])));
                    assert_true(v16[i] == greta_fp16_to_f32(greta_f32_to_fp16(v32[i])));
                }
                checked += 2;
            }
        }
    print_message("%lld cached values checked; %lld of the fp32 cache's are not fp16 values\n", (long long)checked,
                  (long long)not_f16_in_f32);
    assert_true(not_f16_in_f32 > checked / 2);

    /* logits: close to the fp32 reference, not equal; deterministic */
    double max_rel = 0.0;
    int64_t differ = 0;
    for (int32_t t = 0; t < N_TOK; t++) {
        const float *ra = a + (size_t)t * vocab, *rb = b + (size_t)t * vocab;
        double s = 0, s2 = 0, md = 0;
        for (int32_t i = 0; i < vocab; i++) {
            s += ra[i];
            s2 += (double)ra[i] * ra[i];
            const double d = fabs((double)ra[i] - rb[i]);
            md = d > md ? d : md;
            differ += ra[i] != rb[i];
        }
        const double sd = sqrt(s2 / vocab - (s / vocab) * (s / vocab));
        max_rel = md / sd > max_rel ? md / sd : max_rel;
        assert_int_equal(greta_cpu_argmax(ra, vocab), greta_cpu_argmax(rb, vocab));
    }
    print_message("fp16-KV vs fp32-KV logits: %lld of %d differ, max |d|/sd %.3g\n", (long long)differ,
                  N_TOK * vocab, max_rel);
    assert_true(differ > 0);
    assert_true(max_rel > 0.0 && max_rel < 1e-2);
    assert_memory_equal(b, c, sizeof(float) * N_TOK * (size_t)vocab);

    /* kv_view: bad positions and layers, a sequence that was never fed */
    const float *k, *v;
    assert_int_equal(greta_cpu_backend_kv_view(f16, 0, 0, N_TOK, &k, &v, &err), GRETA_ERR_INVALID);
    ASSERT_CONTAINS(err.msg, "position 12");
    assert_int_equal(greta_cpu_backend_kv_view(f16, 0, layers, 0, &k, &v, &err), GRETA_ERR_INVALID);
    assert_int_equal(greta_cpu_backend_kv_view(f16, 1, 0, 0, &k, &v, &err), GRETA_ERR_INVALID);
    assert_int_equal(greta_cpu_backend_kv_view(f16, 0, 0, -1, &k, &v, &err), GRETA_ERR_INVALID);

    free(a);
    free(b);
    free(c);
    greta_backend_destroy(&f32);
    greta_backend_destroy(&f16);
    greta_backend_destroy(&again);
    greta_model_close(&m);
}

/* greta_cpu_backend_create is the fp32 cache, NULL options too */
static void test_default_is_f32(void **state)
{
    (void)state;
    GRETA_TESTDATA_OR_SKIP(path, "stories260K.gguf");
    greta_model *m = NULL;
    greta_error err = {0};
    if (greta_model_open(path, &m, &err))
        fail_msg("%s", err.msg);
    const int32_t vocab = (int32_t)m->cfg.vocab_size;
    const greta_backend_params p = {.n_ctx = 32, .n_seq = 1, .n_batch = N_TOK, .n_threads = 1};
    greta_backend *x = NULL, *y = NULL, *z = make(m, 0);
    assert_int_equal(greta_cpu_backend_create(m, &p, &x, &err), 0);
    assert_int_equal(greta_cpu_backend_create_opts(m, &p, NULL, &y, &err), 0);
    float *a = malloc(sizeof(float) * N_TOK * (size_t)vocab), *b = malloc(sizeof(float) * N_TOK * (size_t)vocab),
          *c = malloc(sizeof(float) * N_TOK * (size_t)vocab);
    assert_true(a && b && c);
    feed(x, 0, N_TOK, a);
    feed(y, 0, N_TOK, b);
    feed(z, 0, N_TOK, c);
    assert_memory_equal(a, b, sizeof(float) * N_TOK * (size_t)vocab);
    assert_memory_equal(a, c, sizeof(float) * N_TOK * (size_t)vocab);
    free(a);
    free(b);
    free(c);
    greta_backend_destroy(&x);
    greta_backend_destroy(&y);
    greta_backend_destroy(&z);
    greta_model_close(&m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_kv_f16),
        cmocka_unit_test(test_default_is_f32),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
