/* test_sampler.c - exact results of the sampler: RNG known answers, greedy,
 * fixed-seed token sequences (and their independence of call history),
 * penalties and logit bias on the modified logits, validation messages,
 * NaN/-inf logits, and the reduced candidate path against the full path.
 *
 * The expected token sequences were computed by a separate Python model of
 * the documented algorithm (Philox4x32-10 written again from the paper,
 * u = (out0 << 21 ^ out1 >> 11) * 2^-53, survivors walked as documented in
 * sampler.h, libm exp), with every u at least 1e-3 away from a boundary.
 */
#include "test_util.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "detmath.h"
#include "rng.h"
#include "sampler.h"

static void expect_error(int rc, const greta_error *err, int code, const char *needle)
{
    if (rc != code || !strstr(err->msg, needle))
        fail_msg("expected status %d with '%s', got %d: '%s'", code, needle, rc, err->msg);
}

static greta_sampler *make_sampler(int32_t vocab)
{
    greta_sampler *s = NULL;
    greta_error err = {0};
    assert_int_equal(greta_sampler_create(vocab, &s, &err), GRETA_OK);
    assert_non_null(s);
    return s;
}

/* Small deterministic generator for test data (not the sampler's RNG). */
static uint64_t lcg_state = 1;
static double lcg_unit(void)
{
    lcg_state = lcg_state * 6364136223846793005ull + 1442695040888963407ull;
    return (double)(lcg_state >> 11) * 0x1.0p-53;
}

/* ---- RNG ----------------------------------------------------------------- */

static void test_philox_known_answers(void **unused)
{
    /* Random123 kat_vectors, "philox4x32 10" lines: ctr[4] key[2] -> out[4]. */
    static const uint32_t kat[3][10] = {
        {0, 0, 0, 0, 0, 0, 0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8},
        {0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff, 0x408f276d,
         0x41c83b0e, 0xa20bc7c6, 0x6d5451fd},
        {0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344, 0xa4093822, 0x299f31d0, 0xd16cfe09,
         0x94fdcceb, 0x5001e420, 0x24126ea1},
    };
    for (int i = 0; i < 3; i++) {
        uint32_t out[4];
        greta_philox4x32_10(&kat[i][0], &kat[i][4], out);
        for (int j = 0; j < 4; j++)
            assert_int_equal(out[j], kat[i][6 + j]);
    }
}

static void test_uniform_exact(void **unused)
{
    assert_true(greta_sampler_uniform(0, 0, 0) == 0x1.989fa35785a70p-2);
    assert_true(greta_sampler_uniform(42, 0, 7) == 0x1.6ef60ec5a1e12p-2);
    assert_true(greta_sampler_uniform(0xDEADBEEFCAFEF00Dull, 3, 1000000) ==
                0x1.74d9a00f86c48p-1);
    assert_true(greta_sampler_uniform(1, 2, (1ull << 32) + 5) == 0x1.2ca7e202b57b0p-3);
    /* each of seed, seq_id and step changes the draw */
    double u = greta_sampler_uniform(5, 6, 7);
    assert_true(u != greta_sampler_uniform(5 + (1ull << 32), 6, 7));
    assert_true(u != greta_sampler_uniform(5, 6 + (1ull << 32), 7));
    assert_true(u != greta_sampler_uniform(5, 6, 7 + (1ull << 32)));
}

/* The deterministic exp against libm; its fixed points. */
static void test_det_exp(void **unused)
{
    double worst = 0.0;
    for (int i = 0; i <= 860000; i++) {
        float x = -(float)i * 1e-4f;
        double e = exp((double)x);
        double r = fabs((double)greta_det_exp(x) - e) / e;
        worst = r > worst ? r : worst;
    }
    printf("  det_exp: worst relative error on [-86, 0]: %.3g\n", worst);
    assert_true(worst < 3e-7);
    assert_true(greta_det_exp(0.0f) == 1.0f);
    assert_true(greta_det_exp(-0.0f) == 1.0f);
    assert_true(greta_det_exp(-86.5f) == 0.0f);
    assert_true(greta_det_exp(-INFINITY) == 0.0f);
    assert_true(greta_det_exp(-3.0e38f) == 0.0f);
    /* bit-exact values (any change of the formula changes seeded outputs) */
    assert_true(greta_det_exp(-1.0f) == 0x1.78b564p-2f);
    assert_true(greta_det_exp(-10.5f) == 0x1.cdfc26p-16f);
    const float w[11] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 0.5f};
    assert_true(greta_det_sum(w, 11) == 55.5);
}

/* ---- greedy -------------------------------------------------------------- */

static void test_greedy(void **unused)
{
    greta_sampler *s = make_sampler(6);
    greta_sampler_params p;
    greta_sampler_params_default(&p);
    p.temperature = 0.0f;
    greta_sampler_state st;
    greta_sampler_state_init(&st, &p, 0);
    greta_error err = {0};
    int32_t tok = -1;
    float lp = 1.0f;

    const float a[6] = {0.5f, 2.0f, -1.0f, 2.0f, -INFINITY, 1.0f};
    assert_int_equal(greta_sampler_sample(s, &st, a, NULL, 0, &tok, &lp, &err), GRETA_OK);
    assert_int_equal(tok, 1); /* tie 1/3: lowest id */
    double z = 0.0;
    for (int i = 0; i < 6; i++)
        z += exp((double)a[i]);
    assert_float_equal(lp, 2.0 - log(z), 1e-5);
    assert_int_equal(st.step, 1);

    /* negative logits only, max at the end */
    const float b[6] = {-5.0f, -4.0f, -3.0f, -9.0f, -INFINITY, -0.5f};
    assert_int_equal(greta_sampler_sample(s, &st, b, NULL, 0, &tok, NULL, &err), GRETA_OK);
    assert_int_equal(tok, 5);
    assert_int_equal(st.step, 2);

    /* a tiny (even subnormal) temperature: only the tied maxima 1 and 3 */
    greta_sampler_params tiny = p;
    tiny.temperature = 1e-40f;
    greta_sampler_state_init(&st, &tiny, 0);
    int seen[6] = {0};
    for (int k = 0; k < 200; k++) {
        assert_int_equal(greta_sampler_sample(s, &st, a, NULL, 0, &tok, NULL, &err), GRETA_OK);
        seen[tok]++;
    }
    assert_true(seen[1] > 50 && seen[3] > 50 && seen[1] + seen[3] == 200);

    /* top-k/top-p/min-p do not change greedy */
    p.top_k = 2;
    p.top_p = 0.1f;
    p.min_p = 0.9f;
    greta_sampler_state_init(&st, &p, 0);
    assert_int_equal(greta_sampler_sample(s, &st, a, NULL, 0, &tok, NULL, &err), GRETA_OK);
    assert_int_equal(tok, 1);

    /* bias moves the argmax; a penalty can too (token 1 is in the history) */
    greta_sampler_params_default(&p);
    p.temperature = 0.0f;
    p.n_bias = 1;
    p.bias[0] = (greta_logit_bias){5, 1.5f};
    greta_sampler_state_init(&st, &p, 0);
    assert_int_equal(greta_sampler_sample(s, &st, a, NULL, 0, &tok, &lp, &err), GRETA_OK);
    assert_int_equal(tok, 5);
    z = 0.0;
    for (int i = 0; i < 6; i++)
        z += exp((double)a[i] + (i == 5 ? 1.5 : 0.0));
    assert_float_equal(lp, 2.5 - log(z), 1e-5);
    greta_sampler_params_default(&p);
    p.temperature = 0.0f;
    p.repeat_penalty = 1.5f;
    greta_sampler_state_init(&st, &p, 0);
    const int32_t hist[2] = {1, 4};
    assert_int_equal(greta_sampler_sample(s, &st, a, hist, 2, &tok, NULL, &err), GRETA_OK);
    assert_int_equal(tok, 3); /* 2.0 / 1.5 < 2.0 */
    greta_sampler_destroy(&s);
    assert_null(s);
    greta_sampler_destroy(&s); /* destroying NULL is fine */
}

/* Greedy against a plain loop on vocabularies that end mid-group, with ties
 * placed across lanes, groups and the tail; with and without a bias (which
 * takes the copy path). */
static void test_greedy_ties(void **unused)
{
    greta_error err = {0};
    lcg_state = 777;
    for (int32_t vocab = 1; vocab <= 40; vocab++) {
        greta_sampler *s = make_sampler(vocab);
        float l[40];
        for (int trial = 0; trial < 30; trial++) {
            for (int i = 0; i < vocab; i++)
                l[i] = (float)(int)(lcg_unit() * 6.0) - 3.0f; /* many ties */
            if (trial % 5 == 0)
                l[(int)(lcg_unit() * vocab)] = -INFINITY;
            for (int biased = 0; biased < 2; biased++) {
                greta_sampler_params p;
                greta_sampler_params_default(&p);
                p.temperature = 0.0f;
                int32_t bt = (int32_t)(lcg_unit() * vocab);
                if (biased) {
                    p.n_bias = 1;
                    p.bias[0] = (greta_logit_bias){bt, 1.0f};
                }
                int want = -1;
                float best = -INFINITY;
                for (int i = 0; i < vocab; i++) {
                    float v = l[i] + (biased && i == bt ? 1.0f : 0.0f);
                    if (v > best) {
                        best = v;
                        want = i;
                    }
                }
                greta_sampler_state st;
                greta_sampler_state_init(&st, &p, 0);
                int32_t tok = -1;
                int rc = greta_sampler_sample(s, &st, l, NULL, 0, &tok, NULL, &err);
                if (want < 0) {
                    assert_int_equal(rc, GRETA_ERR_INVALID);
                } else {
                    assert_int_equal(rc, GRETA_OK);
                    if (tok != want)
                        fail_msg("vocab %d trial %d biased %d: token %d, want %d", vocab,
                                 trial, biased, tok, want);
                }
            }
        }
        greta_sampler_destroy(&s);
    }
}

/* ---- fixed seeds --------------------------------------------------------- */

/* logits log(1..4): probabilities 0.1, 0.2, 0.3, 0.4 */
static const float L4[4] = {0.0f, 0.6931471824645996f, 1.0986123085021973f,
                            1.3862943649291992f};
static const int32_t SEQ42[16] = {3, 3, 3, 3, 2, 2, 1, 2, 2, 1, 2, 2, 2, 1, 1, 3};

static void test_seed_sequence(void **unused)
{
    greta_sampler *s = make_sampler(4);
    greta_sampler_params p;
    greta_sampler_params_default(&p);
    p.seed = 42;
    greta_sampler_state st;
    greta_sampler_state_init(&st, &p, 0);
    greta_error err = {0};
    for (int k = 0; k < 16; k++) {
        int32_t tok = -1;
        assert_int_equal(greta_sampler_sample(s, &st, L4, NULL, 0, &tok, NULL, &err), GRETA_OK);
        assert_int_equal(tok, SEQ42[k]);
    }
    assert_int_equal(st.step, 16);

    /* Restart at step k with a fresh context, after unrelated calls on other
     * sequences and seeds: the same draws. */
    greta_sampler *s2 = make_sampler(4);
    for (int k = 0; k < 16; k += 5) {
        greta_sampler_state other;
        greta_sampler_params q = p;
        q.seed = 99;
        greta_sampler_state_init(&other, &q, 1);
        for (int j = 0; j < 3; j++) {
            int32_t t;
            assert_int_equal(greta_sampler_sample(s2, &other, L4, NULL, 0, &t, NULL, &err), 0);
        }
        greta_sampler_state again;
        greta_sampler_state_init(&again, &p, 0);
        again.step = (uint64_t)k;
        for (int j = k; j < 16; j++) {
            int32_t tok = -1;
            assert_int_equal(greta_sampler_sample(s2, &again, L4, NULL, 0, &tok, NULL, &err),
                             GRETA_OK);
            assert_int_equal(tok, SEQ42[j]);
        }
    }

    /* 64-bit seed, another sequence id, a step past 2^20 */
    static const int32_t seq_dead[8] = {3, 2, 0, 1, 2, 2, 2, 3};
    p.seed = 0xDEADBEEFCAFEF00Dull;
    greta_sampler_state_init(&st, &p, 3);
    st.step = 1000000;
    for (int k = 0; k < 8; k++) {
        int32_t tok = -1;
        assert_int_equal(greta_sampler_sample(s, &st, L4, NULL, 0, &tok, NULL, &err), GRETA_OK);
        assert_int_equal(tok, seq_dead[k]);
    }
    greta_sampler_destroy(&s);
    greta_sampler_destroy(&s2);
}

/* The whole pipeline with ties (ids 3 and 5), fixed seed. */
static void test_seed_pipeline(void **unused)
{
    static const float l8[8] = {1.5f, -0.25f, 3.0f, 2.0f, 0.5f, 2.0f, -1.0f, 2.75f};
    static const int32_t want_trunc[16] = {7, 3, 2, 2, 2, 7, 7, 2, 7, 2, 3, 2, 5, 3, 7, 2};
    static const int32_t want_temp[16] = {3, 7, 2, 2, 2, 3, 3, 2, 5, 3, 7, 3, 7, 7, 4, 3};
    greta_sampler *s = make_sampler(8);
    greta_error err = {0};
    greta_sampler_params p;
    greta_sampler_params_default(&p);
    p.seed = 7;
    p.temperature = 0.7f;
    p.top_k = 5;
    p.top_p = 0.9f;
    p.min_p = 0.05f;
    greta_sampler_state st;
    greta_sampler_state_init(&st, &p, 1);
    for (int k = 0; k < 16; k++) {
        int32_t tok = -1;
        assert_int_equal(greta_sampler_sample(s, &st, l8, NULL, 0, &tok, NULL, &err), GRETA_OK);
        assert_int_equal(tok, want_trunc[k]);
    }
    /* top-p without top-k: the survivors are walked in token id order */
    static const int32_t want_idorder[16] = {3, 3, 2, 5, 7, 2, 7, 3, 7, 7, 7, 3, 5, 7, 2, 7};
    greta_sampler_params_default(&p);
    p.seed = 8;
    p.temperature = 0.9f;
    p.top_p = 0.85f;
    p.min_p = 0.1f;
    greta_sampler_state_init(&st, &p, 0);
    for (int k = 0; k < 16; k++) {
        int32_t tok = -1;
        assert_int_equal(greta_sampler_sample(s, &st, l8, NULL, 0, &tok, NULL, &err), GRETA_OK);
        assert_int_equal(tok, want_idorder[k]);
    }
    greta_sampler_params_default(&p);
    p.seed = 7;
    p.temperature = 1.3f;
    greta_sampler_state_init(&st, &p, 1);
    for (int k = 0; k < 16; k++) {
        int32_t tok = -1;
        assert_int_equal(greta_sampler_sample(s, &st, l8, NULL, 0, &tok, NULL, &err), GRETA_OK);
        assert_int_equal(tok, want_temp[k]);
    }
    greta_sampler_destroy(&s);
}

/* ---- penalties and bias on the logits ------------------------------------ */

static void test_penalties_exact(void **unused)
{
    enum { V = 10 };
    const float base[V] = {2.0f, -1.0f, 0.0f, 3.5f, -2.5f, 1.0f, 0.25f, -0.75f, 4.0f, 1.5f};
    /* history: token 8 only outside the last 6; window = {3, 1, 3, 2, 3, 4} */
    const int32_t hist[9] = {8, 8, 5, 3, 1, 3, 2, 3, 4};
    greta_sampler *s = make_sampler(V);
    greta_error err = {0};
    greta_sampler_params p;
    float l[V];

    /* repeat penalty only: positive divided, zero and negative multiplied */
    greta_sampler_params_default(&p);
    p.repeat_penalty = 2.0f;
    p.penalty_last_n = 6;
    memcpy(l, base, sizeof l);
    assert_int_equal(greta_sampler_apply_penalties(s, &p, l, hist, 9, &err), GRETA_OK);
    float want[V];
    memcpy(want, base, sizeof want);
    want[3] = 3.5f / 2.0f;
    want[1] = -1.0f * 2.0f;
    want[2] = 0.0f;
    want[4] = -2.5f * 2.0f;
    for (int i = 0; i < V; i++)
        assert_true(l[i] == want[i]);

    /* frequency + presence: logit -= count * f + p, after the repeat penalty */
    p.repeat_penalty = 1.25f;
    p.frequency_penalty = 0.5f;
    p.presence_penalty = 0.25f;
    memcpy(l, base, sizeof l);
    assert_int_equal(greta_sampler_apply_penalties(s, &p, l, hist, 9, &err), GRETA_OK);
    memcpy(want, base, sizeof want);
    want[3] = 3.5f / 1.25f - (3.0f * 0.5f + 0.25f);
    want[1] = -1.0f * 1.25f - (1.0f * 0.5f + 0.25f);
    want[2] = 0.0f * 1.25f - (1.0f * 0.5f + 0.25f);
    want[4] = -2.5f * 1.25f - (1.0f * 0.5f + 0.25f);
    for (int i = 0; i < V; i++)
        assert_true(l[i] == want[i]);

    /* penalty_last_n = -1: the whole history (token 8 twice, token 5 once) */
    p.penalty_last_n = -1;
    memcpy(l, base, sizeof l);
    assert_int_equal(greta_sampler_apply_penalties(s, &p, l, hist, 9, &err), GRETA_OK);
    want[8] = 4.0f / 1.25f - (2.0f * 0.5f + 0.25f);
    want[5] = 1.0f / 1.25f - (1.0f * 0.5f + 0.25f);
    for (int i = 0; i < V; i++)
        assert_true(l[i] == want[i]);

    /* a window longer than the history is the whole history */
    p.penalty_last_n = 1000;
    memcpy(l, base, sizeof l);
    assert_int_equal(greta_sampler_apply_penalties(s, &p, l, hist, 9, &err), GRETA_OK);
    for (int i = 0; i < V; i++)
        assert_true(l[i] == want[i]);

    /* penalty_last_n = 0: nothing changes, the history is not even read */
    p.penalty_last_n = 0;
    memcpy(l, base, sizeof l);
    const int32_t junk[2] = {-5, 99};
    assert_int_equal(greta_sampler_apply_penalties(s, &p, l, junk, 2, &err), GRETA_OK);
    assert_memory_equal(l, base, sizeof l);

    /* bias comes first, then the penalty sees the biased logit; repeated bias
     * entries add up; -inf stays -inf under penalties */
    greta_sampler_params_default(&p);
    p.repeat_penalty = 2.0f;
    p.presence_penalty = 1.0f;
    p.penalty_last_n = 3;
    p.n_bias = 4;
    p.bias[0] = (greta_logit_bias){1, 3.0f};  /* -1 + 3 = 2 -> 2/2 - 1 = 0 */
    p.bias[1] = (greta_logit_bias){9, -1.0f}; /* not in the window */
    p.bias[2] = (greta_logit_bias){9, -0.5f};
    p.bias[3] = (greta_logit_bias){2, -INFINITY};
    const int32_t h2[3] = {1, 2, 1};
    memcpy(l, base, sizeof l);
    assert_int_equal(greta_sampler_apply_penalties(s, &p, l, h2, 3, &err), GRETA_OK);
    memcpy(want, base, sizeof want);
    want[1] = 0.0f;
    want[9] = 0.0f;
    want[2] = -INFINITY;
    for (int i = 0; i < V; i++)
        assert_true(l[i] == want[i]);
    greta_sampler_destroy(&s);
}

/* Banned tokens are never drawn; a large bias makes a token the only choice. */
static void test_logit_bias_sampling(void **unused)
{
    enum { V = 8 };
    const float l[V] = {3.0f, 2.9f, 2.8f, 0.0f, 0.1f, 0.2f, 0.3f, 0.4f};
    greta_sampler *s = make_sampler(V);
    greta_error err = {0};
    greta_sampler_params p;
    greta_sampler_params_default(&p);
    p.seed = 3;
    p.n_bias = 3;
    for (int i = 0; i < 3; i++)
        p.bias[i] = (greta_logit_bias){i, -INFINITY};
    greta_sampler_state st;
    greta_sampler_state_init(&st, &p, 0);
    int seen[V] = {0};
    for (int k = 0; k < 2000; k++) {
        int32_t tok;
        assert_int_equal(greta_sampler_sample(s, &st, l, NULL, 0, &tok, NULL, &err), GRETA_OK);
        seen[tok]++;
    }
    for (int i = 0; i < 3; i++)
        assert_int_equal(seen[i], 0);
    for (int i = 3; i < V; i++)
        assert_true(seen[i] > 200); /* about 400 each */

    p.n_bias = 1;
    p.bias[0] = (greta_logit_bias){3, 100.0f};
    greta_sampler_state_init(&st, &p, 0);
    for (int k = 0; k < 200; k++) {
        int32_t tok;
        float lp;
        assert_int_equal(greta_sampler_sample(s, &st, l, NULL, 0, &tok, &lp, &err), GRETA_OK);
        assert_int_equal(tok, 3);
        assert_true(lp > -1e-30f && lp <= 0.0f);
    }
    greta_sampler_destroy(&s);
}

/* ---- validation ---------------------------------------------------------- */

static void test_validation(void **unused)
{
    greta_error err = {0};
    greta_sampler_params p;
#define BAD(field_set, code, needle)                                                  \
    do {                                                                              \
        greta_sampler_params_default(&p);                                             \
        field_set;                                                                    \
        expect_error(greta_sampler_params_validate(&p, 100, &err), &err, code, needle); \
    } while (0)
    greta_sampler_params_default(&p);
    assert_int_equal(greta_sampler_params_validate(&p, 100, &err), GRETA_OK);
    BAD(p.temperature = -0.5f, GRETA_ERR_INVALID, "temperature = -0.5 must be");
    BAD(p.temperature = NAN, GRETA_ERR_INVALID, "temperature = nan");
    BAD(p.temperature = INFINITY, GRETA_ERR_INVALID, "temperature = inf");
    BAD(p.top_k = -1, GRETA_ERR_INVALID, "top_k = -1 must be >= 0");
    BAD(p.top_p = 0.0f, GRETA_ERR_INVALID, "top_p = 0 must be in (0, 1]");
    BAD(p.top_p = 1.5f, GRETA_ERR_INVALID, "top_p = 1.5 must be in (0, 1]");
    BAD(p.top_p = NAN, GRETA_ERR_INVALID, "top_p = nan");
    BAD(p.min_p = -0.1f, GRETA_ERR_INVALID, "min_p = -0.1 must be in [0, 1]");
    BAD(p.min_p = 1.01f, GRETA_ERR_INVALID, "min_p = 1.01");
    BAD(p.repeat_penalty = 0.0f, GRETA_ERR_INVALID, "repeat_penalty = 0 must be in (0, 10]");
    BAD(p.repeat_penalty = 11.0f, GRETA_ERR_INVALID, "repeat_penalty = 11");
    BAD(p.frequency_penalty = 2.5f, GRETA_ERR_INVALID, "frequency_penalty = 2.5 must be in [-2, 2]");
    BAD(p.frequency_penalty = NAN, GRETA_ERR_INVALID, "frequency_penalty = nan");
    BAD(p.presence_penalty = -3.0f, GRETA_ERR_INVALID, "presence_penalty = -3 must be in [-2, 2]");
    BAD(p.penalty_last_n = -2, GRETA_ERR_INVALID, "penalty_last_n = -2 must be >= -1");
    BAD(p.n_bias = 65, GRETA_ERR_LIMIT, "n_bias = 65 exceeds the limit of 64");
    BAD((p.n_bias = 2, p.bias[1] = (greta_logit_bias){100, 1.0f}), GRETA_ERR_INVALID,
        "bias[1].token = 100 is outside the vocabulary [0, 100)");
    BAD((p.n_bias = 1, p.bias[0] = (greta_logit_bias){-1, 1.0f}), GRETA_ERR_INVALID,
        "bias[0].token = -1");
    BAD((p.n_bias = 1, p.bias[0] = (greta_logit_bias){7, NAN}), GRETA_ERR_INVALID,
        "bias[0].bias = nan for token 7 must be finite or -inf");
    BAD((p.n_bias = 1, p.bias[0] = (greta_logit_bias){7, INFINITY}), GRETA_ERR_INVALID,
        "bias[0].bias = inf");
#undef BAD
    /* edges that are valid */
    greta_sampler_params_default(&p);
    p.temperature = 0.0f;
    p.top_p = 1.0f;
    p.min_p = 1.0f;
    p.repeat_penalty = 10.0f;
    p.frequency_penalty = -2.0f;
    p.presence_penalty = 2.0f;
    p.penalty_last_n = -1;
    p.n_bias = 64;
    for (int i = 0; i < 64; i++)
        p.bias[i] = (greta_logit_bias){99 - i, i % 2 ? -INFINITY : -3.0f};
    assert_int_equal(greta_sampler_params_validate(&p, 100, &err), GRETA_OK);
    expect_error(greta_sampler_params_validate(&p, 0, &err), &err, GRETA_ERR_INVALID,
                 "vocab = 0");

    greta_sampler *s = NULL;
    expect_error(greta_sampler_create(0, &s, &err), &err, GRETA_ERR_LIMIT, "vocab = 0 must be");
    assert_null(s);
    expect_error(greta_sampler_create(GRETA_SAMPLER_MAX_VOCAB + 1, &s, &err), &err,
                 GRETA_ERR_LIMIT, "must be in [1, 16777216]");

    /* the sample calls validate too, and leave the state alone on error */
    s = make_sampler(4);
    greta_sampler_params_default(&p);
    p.top_p = 2.0f;
    greta_sampler_state st;
    greta_sampler_state_init(&st, &p, 0);
    st.step = 5;
    int32_t tok = -7;
    expect_error(greta_sampler_sample(s, &st, L4, NULL, 0, &tok, NULL, &err), &err,
                 GRETA_ERR_INVALID, "top_p = 2");
    assert_int_equal(tok, -7);
    assert_int_equal(st.step, 5);
    assert_int_equal(greta_sampler_vocab(s), 4);
    greta_sampler_destroy(&s);
}

/* ---- bad logits and history ---------------------------------------------- */

static void test_bad_logits(void **unused)
{
    greta_sampler *s = make_sampler(4);
    greta_error err = {0};
    greta_sampler_params p;
    greta_sampler_params_default(&p);
    greta_sampler_state st;
    greta_sampler_state_init(&st, &p, 0);
    int32_t tok = -7;
    for (int greedy = 0; greedy < 2; greedy++) {
        st.params.temperature = greedy ? 0.0f : 1.0f;
        const float nan_l[4] = {0.0f, 1.0f, NAN, 2.0f};
        expect_error(greta_sampler_sample(s, &st, nan_l, NULL, 0, &tok, NULL, &err), &err,
                     GRETA_ERR_INVALID, "logits[2] is NaN");
        const float inf_l[4] = {0.0f, 1.0f, 2.0f, INFINITY};
        expect_error(greta_sampler_sample(s, &st, inf_l, NULL, 0, &tok, NULL, &err), &err,
                     GRETA_ERR_INVALID, "logits[3] is +inf");
        const float ninf[4] = {-INFINITY, -INFINITY, -INFINITY, -INFINITY};
        expect_error(greta_sampler_sample(s, &st, ninf, NULL, 0, &tok, NULL, &err), &err,
                     GRETA_ERR_INVALID, "all 4 logits are -inf: no token can be chosen");
    }
    assert_int_equal(tok, -7);
    assert_int_equal(st.step, 0);

    /* -inf tokens are never drawn; only one finite token -> always it */
    const float one[4] = {-INFINITY, -INFINITY, 0.5f, -INFINITY};
    st.params.temperature = 5.0f;
    for (int k = 0; k < 50; k++) {
        float lp;
        assert_int_equal(greta_sampler_sample(s, &st, one, NULL, 0, &tok, &lp, &err), GRETA_OK);
        assert_int_equal(tok, 2);
        assert_float_equal(lp, 0.0f, 1e-7);
    }

    /* bias that bans every finite token */
    st.params.n_bias = 1;
    st.params.bias[0] = (greta_logit_bias){2, -INFINITY};
    expect_error(greta_sampler_sample(s, &st, one, NULL, 0, &tok, NULL, &err), &err,
                 GRETA_ERR_INVALID, "-inf after logit bias and penalties");

    /* a bias that overflows a huge logit to +inf */
    const float huge[4] = {3e38f, 0.0f, 0.0f, 0.0f};
    st.params.bias[0] = (greta_logit_bias){0, 1e38f};
    expect_error(greta_sampler_sample(s, &st, huge, NULL, 0, &tok, NULL, &err), &err,
                 GRETA_ERR_INVALID, "logit of token 0 overflowed to +inf");

    /* history tokens in the window must be in the vocabulary */
    st.params.n_bias = 0;
    st.params.repeat_penalty = 1.1f;
    st.params.penalty_last_n = 2;
    const int32_t hist[4] = {-3, 1, 4, 0}; /* index 0 is outside the window */
    expect_error(greta_sampler_sample(s, &st, L4, hist, 4, &tok, NULL, &err), &err,
                 GRETA_ERR_INVALID, "history[2] = 4 is outside the vocabulary [0, 4)");
    float l[4];
    memcpy(l, L4, sizeof l);
    expect_error(greta_sampler_apply_penalties(s, &st.params, l, hist, 4, &err), &err,
                 GRETA_ERR_INVALID, "history[2] = 4");
    assert_memory_equal(l, L4, sizeof l);
    const int32_t ok_hist[4] = {-3, 1, 3, 0};
    assert_int_equal(greta_sampler_sample(s, &st, L4, ok_hist, 4, &tok, NULL, &err), GRETA_OK);
    greta_sampler_destroy(&s);
}

/* ---- reduced candidate set ----------------------------------------------- */

static void test_needs_full_logits(void **unused)
{
    greta_sampler_params p;
    greta_sampler_params_default(&p);
    assert_int_equal(greta_sampler_needs_full_logits(&p), 1); /* plain temperature */
    p.temperature = 0.0f;
    assert_int_equal(greta_sampler_needs_full_logits(&p), 0);
    assert_int_equal(greta_sampler_reduced_count(&p, 100), 1);
    p.temperature = 0.8f;
    p.top_k = 40;
    p.top_p = 0.9f;
    p.min_p = 0.05f;
    assert_int_equal(greta_sampler_needs_full_logits(&p), 0);
    assert_int_equal(greta_sampler_reduced_count(&p, 100), 40);
    assert_int_equal(greta_sampler_reduced_count(&p, 30), 30);
    p.repeat_penalty = 1.1f;
    assert_int_equal(greta_sampler_needs_full_logits(&p), 1);
    assert_int_equal(greta_sampler_reduced_count(&p, 100), 0);
    p.penalty_last_n = 0; /* penalties off */
    assert_int_equal(greta_sampler_needs_full_logits(&p), 0);
    p.n_bias = 1;
    p.bias[0] = (greta_logit_bias){1, 0.5f};
    assert_int_equal(greta_sampler_needs_full_logits(&p), 1);
    p.n_bias = 0;
    p.top_k = 0; /* top-p over the whole vocabulary */
    assert_int_equal(greta_sampler_needs_full_logits(&p), 1);
    p.temperature = 0.0f;
    p.presence_penalty = 0.5f;
    p.penalty_last_n = 64;
    assert_int_equal(greta_sampler_needs_full_logits(&p), 1);
}

static void test_reduced_equals_full(void **unused)
{
    enum { V = 3000, N = 64, STEPS = 300 };
    static float logits[V];
    lcg_state = 12345;
    for (int i = 0; i < V; i++)
        logits[i] = (float)(6.0 * lcg_unit() - 3.0 + (lcg_unit() < 0.01 ? 6.0 : 0.0));
    logits[17] = logits[2000]; /* a tie */
    logits[99] = -INFINITY;
    /* the top N by (logit desc, id asc), shuffled, plus the lse */
    static int32_t order[V];
    for (int i = 0; i < V; i++)
        order[i] = i;
    for (int i = 0; i < N; i++) { /* selection sort of the first N */
        int b = i;
        for (int j = i + 1; j < V; j++) {
            float lj = logits[order[j]], lb = logits[order[b]];
            if (lj > lb || (lj == lb && order[j] < order[b]))
                b = j;
        }
        int32_t t = order[i];
        order[i] = order[b];
        order[b] = t;
    }
    int32_t ids[N];
    float cl[N];
    for (int i = 0; i < N; i++)
        ids[i] = order[i];
    for (int i = N - 1; i > 0; i--) {
        int j = (int)(lcg_unit() * (i + 1));
        int32_t t = ids[i];
        ids[i] = ids[j];
        ids[j] = t;
    }
    for (int i = 0; i < N; i++)
        cl[i] = logits[ids[i]];
    double mx = logits[order[0]], z = 0.0;
    for (int i = 0; i < V; i++)
        z += exp((double)logits[i] - mx);
    const float lse = (float)(mx + log(z));

    struct { float t; int32_t k; float p, m; } cfg[] = {
        {0.0f, 0, 1.0f, 0.0f},   {0.8f, 40, 1.0f, 0.0f},  {1.0f, 40, 0.9f, 0.05f},
        {1.5f, 64, 0.95f, 0.0f}, {0.5f, 10, 1.0f, 0.2f},  {2.0f, 1, 1.0f, 0.0f},
    };
    greta_sampler *s = make_sampler(V);
    greta_error err = {0};
    for (size_t c = 0; c < sizeof cfg / sizeof cfg[0]; c++) {
        greta_sampler_params p;
        greta_sampler_params_default(&p);
        p.temperature = cfg[c].t;
        p.top_k = cfg[c].k;
        p.top_p = cfg[c].p;
        p.min_p = cfg[c].m;
        p.seed = 1000 + c;
        assert_int_equal(greta_sampler_needs_full_logits(&p), 0);
        greta_sampler_state full, red;
        greta_sampler_state_init(&full, &p, 2);
        greta_sampler_state_init(&red, &p, 2);
        int distinct = 0, last = -1;
        for (int k = 0; k < STEPS; k++) {
            int32_t t1, t2;
            float lp1, lp2;
            assert_int_equal(greta_sampler_sample(s, &full, logits, NULL, 0, &t1, &lp1, &err),
                             GRETA_OK);
            assert_int_equal(greta_sampler_sample_reduced(s, &red, ids, cl, N, lse, &t2, &lp2,
                                                          &err), GRETA_OK);
            assert_int_equal(t1, t2);
            assert_float_equal(lp1, lp2, 2e-4);
            distinct += t1 != last;
            last = t1;
        }
        assert_int_equal(full.step, red.step);
        if (cfg[c].t > 0.0f && cfg[c].k > 1)
            assert_true(distinct > 10); /* really sampling */
    }

    /* errors of the reduced path */
    greta_sampler_params p;
    greta_sampler_params_default(&p);
    p.top_k = 40;
    greta_sampler_state st;
    greta_sampler_state_init(&st, &p, 0);
    int32_t tok = -7;
    expect_error(greta_sampler_sample_reduced(s, &st, ids, cl, 39, lse, &tok, NULL, &err), &err,
                 GRETA_ERR_INVALID, "39 candidates given; this request needs 40");
    st.params.n_bias = 1;
    st.params.bias[0] = (greta_logit_bias){5, 1.0f};
    expect_error(greta_sampler_sample_reduced(s, &st, ids, cl, N, lse, &tok, NULL, &err), &err,
                 GRETA_ERR_INVALID, "needs the full logits");
    st.params.n_bias = 0;
    int32_t bad_ids[N];
    float bad_l[N];
    memcpy(bad_ids, ids, sizeof bad_ids);
    bad_ids[50] = ids[3];
    expect_error(greta_sampler_sample_reduced(s, &st, bad_ids, cl, N, lse, &tok, NULL, &err),
                 &err, GRETA_ERR_INVALID, "ids[50]");
    expect_error(greta_sampler_sample_reduced(s, &st, bad_ids, cl, N, lse, &tok, NULL, &err),
                 &err, GRETA_ERR_INVALID, "appears twice");
    bad_ids[50] = V;
    expect_error(greta_sampler_sample_reduced(s, &st, bad_ids, cl, N, lse, &tok, NULL, &err),
                 &err, GRETA_ERR_INVALID, "ids[50] = 3000 is outside the vocabulary");
    memcpy(bad_l, cl, sizeof bad_l);
    bad_l[7] = NAN;
    expect_error(greta_sampler_sample_reduced(s, &st, ids, bad_l, N, lse, &tok, NULL, &err),
                 &err, GRETA_ERR_INVALID, "candidate logits[7] is NaN");
    expect_error(greta_sampler_sample_reduced(s, &st, ids, cl, N, (float)mx - 1.0f, &tok, NULL,
                                              &err), &err, GRETA_ERR_INVALID, "lse = ");
    expect_error(greta_sampler_sample_reduced(s, &st, ids, cl, N, NAN, &tok, NULL, &err), &err,
                 GRETA_ERR_INVALID, "lse = nan must be finite");
    for (int i = 0; i < N; i++)
        bad_l[i] = -INFINITY;
    expect_error(greta_sampler_sample_reduced(s, &st, ids, bad_l, N, lse, &tok, NULL, &err),
                 &err, GRETA_ERR_INVALID, "all 64 candidate logits are -inf");
    assert_int_equal(tok, -7);
    assert_int_equal(st.step, 0);
    /* after all those errors the marks are clean: the good call still works */
    assert_int_equal(greta_sampler_sample_reduced(s, &st, ids, cl, N, lse, &tok, NULL, &err),
                     GRETA_OK);
    greta_sampler_destroy(&s);
}

/* The AVX2 and baseline builds of the vocabulary-wide loops give the same
 * bits: tokens and log-probabilities over many draws, every sampling mode
 * that reads the whole vocabulary, a vocabulary that is not a multiple of
 * the vector width, -inf logits. */
static void test_simd_equals_baseline(void **unused)
{
    (void)unused;
    const int32_t vocabs[2] = {32000, 1001};
    for (int vi = 0; vi < 2; vi++) {
        const int32_t V = vocabs[vi];
        greta_sampler *s = make_sampler(V);
        float *l = malloc(sizeof(float) * (size_t)V);
        assert_non_null(l);
        int32_t hist[64];
        for (int i = 0; i < 64; i++)
            hist[i] = (int32_t)(lcg_unit() * V);
        greta_sampler_params ps[4];
        for (int c = 0; c < 4; c++)
            greta_sampler_params_default(&ps[c]);
        ps[0].temperature = 0.8f; /* full draw */
        ps[1].temperature = 0.7f, ps[1].top_p = 0.9f; /* top-p without top-k */
        ps[2].temperature = 1.3f, ps[2].min_p = 0.01f, ps[2].repeat_penalty = 1.2f, ps[2].frequency_penalty = 0.3f;
        ps[3].temperature = 1.0f, ps[3].top_p = 0.5f, ps[3].presence_penalty = -0.5f, ps[3].penalty_last_n = -1;
        int differ_from_greedy = 0;
        for (int c = 0; c < 4; c++)
            for (int draw = 0; draw < 40; draw++) {
                for (int32_t i = 0; i < V; i++)
                    l[i] = (float)(6.0 * lcg_unit() - 3.0);
                l[draw % V] = -INFINITY;
                int32_t tok[2];
                float lp[2];
                for (int mode = 0; mode < 2; mode++) {
                    greta_sampler_set_simd(mode);
                    greta_sampler_state st;
                    greta_sampler_state_init(&st, &ps[c], 3);
                    st.step = (uint64_t)draw;
                    greta_error err = {0};
                    assert_int_equal(greta_sampler_sample(s, &st, l, hist, 64, &tok[mode], &lp[mode], &err), 0);
                }
                if (tok[0] != tok[1] || memcmp(&lp[0], &lp[1], sizeof lp[0]))
                    fail_msg("vocab %d case %d draw %d: baseline token %d (logprob %.9g), simd token %d (%.9g)", V,
                             c, draw, tok[0], lp[0], tok[1], lp[1]);
                int32_t best = 0;
                for (int32_t i = 1; i < V; i++)
                    best = l[i] > l[best] ? i : best;
                differ_from_greedy += tok[0] != best;
            }
        assert_true(differ_from_greedy > 0); /* the draws sample, not argmax */
        greta_sampler_set_simd(1);
        free(l);
        greta_sampler_destroy(&s);
    }
    /* the switch acts: baseline when off, AVX2 when on and the CPU has it */
    greta_sampler_set_simd(0);
    assert_false(greta_sampler_simd_active());
    greta_sampler_set_simd(1);
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
    assert_int_equal(greta_sampler_simd_active(), __builtin_cpu_supports("avx2") ? 1 : 0);
#else
    assert_false(greta_sampler_simd_active());
#endif
    print_message("simd active here: %d\n", greta_sampler_simd_active());
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_philox_known_answers),
        cmocka_unit_test(test_uniform_exact),
        cmocka_unit_test(test_det_exp),
        cmocka_unit_test(test_greedy),
        cmocka_unit_test(test_greedy_ties),
        cmocka_unit_test(test_seed_sequence),
        cmocka_unit_test(test_seed_pipeline),
        cmocka_unit_test(test_penalties_exact),
        cmocka_unit_test(test_logit_bias_sampling),
        cmocka_unit_test(test_validation),
        cmocka_unit_test(test_bad_logits),
        cmocka_unit_test(test_needs_full_logits),
        cmocka_unit_test(test_reduced_equals_full),
        cmocka_unit_test(test_simd_equals_baseline),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
