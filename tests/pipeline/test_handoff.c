/* test_handoff.c - the logits hand-off helpers (proto/handoff.h): GRETA_HANDOFF
 * parsing, slot parameters in and out of the segment, the mode each request
 * gets, and the host reduction, which must make greta_sampler_sample_reduced
 * pick exactly the token greta_sampler_sample picks from the full row. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "test_util.h"

#include "proto/handoff.h"

static void test_parse(void **state)
{
    (void)state;
    greta_error err = {0};
    int full = 7;
    assert_int_equal(greta_handoff_parse(NULL, &full, &err), 0);
    assert_int_equal(full, 0);
    assert_int_equal(greta_handoff_parse("", &full, &err), 0);
    assert_int_equal(full, 0);
    assert_int_equal(greta_handoff_parse("auto", &full, &err), 0);
    assert_int_equal(full, 0);
    assert_int_equal(greta_handoff_parse("full", &full, &err), 0);
    assert_int_equal(full, 1);
    assert_int_equal(greta_handoff_parse("Full", &full, &err), GRETA_ERR_INVALID);
    assert_non_null(strstr(err.msg, "GRETA_HANDOFF: 'Full'"));
}

static void test_params_roundtrip(void **state)
{
    (void)state;
    greta_sampler_params p, q;
    greta_sampler_params_default(&p);
    p.temperature = 0.7f;
    p.top_k = 33;
    p.top_p = 0.9f;
    p.min_p = 0.05f;
    p.repeat_penalty = 1.15f;
    p.penalty_last_n = -1;
    p.seed = 0x123456789abcull;
    p.frequency_penalty = -0.5f;
    p.presence_penalty = 1.25f;
    p.n_bias = GRETA_SAMPLER_MAX_BIAS;
    for (uint32_t i = 0; i < p.n_bias; i++) {
        p.bias[i].token = (int32_t)(i * 7);
        p.bias[i].bias = i == 3 ? -INFINITY : (float)i * 0.25f - 4.0f;
    }
    greta_shm_slot *sl = calloc(1, sizeof *sl);
    assert_non_null(sl);
    greta_handoff_store_params(sl, &p);
    greta_handoff_load_params(sl, &q);
    assert_memory_equal(&p, &q, sizeof p);
    /* a corrupt count in the segment is clamped, never read past the array */
    sl->n_bias = 1000;
    greta_handoff_load_params(sl, &q);
    assert_int_equal(q.n_bias, GRETA_SHM_MAX_BIAS);
    free(sl);
}

static void test_mode(void **state)
{
    (void)state;
    greta_sampler_params p;
    int32_t k = -1;
    greta_sampler_params_default(&p);
    p.temperature = 0.0f;
    assert_int_equal(greta_handoff_mode(&p, 512, 64, 0, &k), GRETA_LOGITS_TOP1);
    assert_int_equal(k, 1);
    assert_int_equal(greta_handoff_mode(&p, 512, 64, 1, &k), GRETA_LOGITS_FULL); /* GRETA_HANDOFF=full */
    assert_int_equal(k, 0);
    p.repeat_penalty = 1.1f; /* active (penalty_last_n 64) */
    assert_int_equal(greta_handoff_mode(&p, 512, 64, 0, &k), GRETA_LOGITS_FULL);
    p.penalty_last_n = 0; /* window 0: penalties off */
    assert_int_equal(greta_handoff_mode(&p, 512, 64, 0, &k), GRETA_LOGITS_TOP1);
    p.penalty_last_n = 64;
    p.repeat_penalty = 1.0f;
    p.frequency_penalty = 0.2f;
    assert_int_equal(greta_handoff_mode(&p, 512, 64, 0, &k), GRETA_LOGITS_FULL);
    p.frequency_penalty = 0.0f;
    p.presence_penalty = -0.2f;
    assert_int_equal(greta_handoff_mode(&p, 512, 64, 0, &k), GRETA_LOGITS_FULL);
    p.presence_penalty = 0.0f;
    p.n_bias = 1;
    p.bias[0].token = 5;
    p.bias[0].bias = -INFINITY;
    assert_int_equal(greta_handoff_mode(&p, 512, 64, 0, &k), GRETA_LOGITS_FULL);
    p.n_bias = 0;
    p.temperature = 0.8f;
    p.top_k = 40;
    assert_int_equal(greta_handoff_mode(&p, 512, 64, 0, &k), GRETA_LOGITS_TOPK);
    assert_int_equal(k, 40);
    p.top_p = 0.9f; /* top-p and min-p inside a top-k: still exact */
    p.min_p = 0.05f;
    assert_int_equal(greta_handoff_mode(&p, 512, 64, 0, &k), GRETA_LOGITS_TOPK);
    assert_int_equal(k, 40);
    p.top_k = 100; /* more than a top-k row holds */
    assert_int_equal(greta_handoff_mode(&p, 512, 64, 0, &k), GRETA_LOGITS_FULL);
    assert_int_equal(greta_handoff_mode(&p, 50, 64, 0, &k), GRETA_LOGITS_TOPK); /* top_k >= vocab: all 50 */
    assert_int_equal(k, 50);
    p.top_k = 0; /* top-p over the whole vocabulary */
    assert_int_equal(greta_handoff_mode(&p, 512, 64, 0, &k), GRETA_LOGITS_FULL);
    assert_int_equal(k, 0);
}

/* Logits with many exact ties and some -inf, from a fixed LCG. */
static void make_logits(float *l, int32_t n, uint32_t seed)
{
    uint32_t x = seed * 2654435761u + 1;
    for (int32_t i = 0; i < n; i++) {
        x = x * 1664525u + 1013904223u;
        uint32_t r = x >> 8;
        if (r % 97 == 0)
            l[i] = -INFINITY;
        else if (r % 3 == 0)
            l[i] = (float)(r % 16) * 0.5f - 2.0f; /* few distinct values: ties */
        else
            l[i] = ((float)(r % 100000) / 100000.0f) * 12.0f - 6.0f;
    }
}

static void check_reduction(const float *l, int32_t n, int32_t k, const int32_t *ids, const float *vals, float lse)
{
    /* best first; ties by lower id; each entry is the logit of its id */
    for (int32_t j = 0; j < k; j++) {
        assert_true(ids[j] >= 0 && ids[j] < n);
        assert_true(vals[j] == l[ids[j]]);
        if (j > 0)
            assert_true(vals[j - 1] > vals[j] || (vals[j - 1] == vals[j] && ids[j - 1] < ids[j]));
    }
    /* nothing left out is better than the last entry */
    for (int32_t i = 0; i < n; i++) {
        int in = 0;
        for (int32_t j = 0; j < k && !in; j++)
            in = ids[j] == i;
        if (!in)
            assert_false(l[i] > vals[k - 1] || (l[i] == vals[k - 1] && i < ids[k - 1]));
    }
    double m = -INFINITY, s = 0;
    for (int32_t i = 0; i < n; i++)
        m = l[i] > m ? l[i] : m;
    for (int32_t i = 0; i < n; i++)
        s += exp((double)l[i] - m);
    const double ref = m + log(s);
    assert_true(fabs((double)lse - ref) <= 1e-6 * fmax(1.0, fabs(ref)));
}

static void test_reduce_exact(void **state)
{
    (void)state;
    const int32_t vocabs[] = {7, 512, 32000};
    const int32_t ks[] = {1, 5, 40, 64};
    greta_error err = {0};
    for (size_t vi = 0; vi < sizeof vocabs / sizeof vocabs[0]; vi++) {
        const int32_t n = vocabs[vi];
        float *l = malloc((size_t)n * sizeof *l);
        greta_sampler *smp = NULL;
        assert_int_equal(greta_sampler_create(n, &smp, &err), 0);
        int32_t ids[64];
        float vals[64];
        const uint32_t trials = n > 1000 ? 2 : 6;
        for (uint32_t trial = 0; trial < trials; trial++) {
            make_logits(l, n, trial + 17 * (uint32_t)vi);
            for (size_t ki = 0; ki < sizeof ks / sizeof ks[0]; ki++) {
                const int32_t k = ks[ki] < n ? ks[ki] : n;
                float lse = 0;
                assert_int_equal(greta_handoff_reduce(l, n, k, ids, vals, &lse, &err), 0);
                check_reduction(l, n, k, ids, vals, lse);
                /* the sampler's choice from the reduction = its choice from the row */
                greta_sampler_params p;
                greta_sampler_params_default(&p);
                const float temps[3] = {0.0f, 0.8f, 1.3f};
                for (int ti = 0; ti < 3; ti++) {
                    p.temperature = temps[ti];
                    p.top_k = ti == 0 ? 0 : k;
                    p.top_p = ti == 2 ? 0.9f : 1.0f;
                    p.min_p = ti == 2 ? 0.05f : 0.0f;
                    int32_t want = 0;
                    if (greta_handoff_mode(&p, n, 64, 0, &want) == GRETA_LOGITS_FULL || want > k)
                        continue;
                    for (uint64_t seed = 0; seed < 25; seed++) {
                        p.seed = seed;
                        greta_sampler_state a, b;
                        greta_sampler_state_init(&a, &p, 0);
                        greta_sampler_state_init(&b, &p, 0);
                        a.step = b.step = seed * 3;
                        int32_t ta = -1, tb = -2;
                        float la = 0, lb = 0;
                        assert_int_equal(greta_sampler_sample(smp, &a, l, NULL, 0, &ta, &la, &err), 0);
                        assert_int_equal(greta_sampler_sample_reduced(smp, &b, ids, vals, (size_t)want, lse, &tb, &lb,
                                                                      &err),
                                         0);
                        if (ta != tb)
                            fail_msg("vocab %d k %d temp %g seed %llu: full picks %d, reduced %d", n, k,
                                     (double)p.temperature, (unsigned long long)seed, ta, tb);
                        assert_true(fabsf(la - lb) <= 1e-5f * fmaxf(1.0f, fabsf(la)));
                        if (ti == 0)
                            break; /* greedy ignores the seed */
                    }
                }
            }
        }
        /* bad rows are refused (the worker then hands over the full row) */
        float lse = 0;
        l[n / 2] = NAN;
        assert_int_equal(greta_handoff_reduce(l, n, 1, ids, vals, &lse, &err), GRETA_ERR_INVALID);
        l[n / 2] = INFINITY;
        assert_int_equal(greta_handoff_reduce(l, n, 1, ids, vals, &lse, &err), GRETA_ERR_INVALID);
        for (int32_t i = 0; i < n; i++)
            l[i] = -INFINITY;
        assert_int_equal(greta_handoff_reduce(l, n, 1, ids, vals, &lse, &err), GRETA_ERR_INVALID);
        assert_non_null(strstr(err.msg, "-inf"));
        greta_sampler_destroy(&smp);
        free(l);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse),
        cmocka_unit_test(test_params_roundtrip),
        cmocka_unit_test(test_mode),
        cmocka_unit_test(test_reduce_exact),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
