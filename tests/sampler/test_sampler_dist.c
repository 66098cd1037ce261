/* test_sampler_dist.c - the sampler draws from the documented distributions.
 *
 * Chi-square goodness of fit: N = 20000 draws with a fixed seed against the
 * softmax of a fixed 16-token logit vector (temperature applied, truncated
 * sets renormalized), computed here independently with libm. Threshold: the
 * chi-square critical value at p = 0.001 for the test's degrees of freedom
 * (every expected count >= 5 is asserted). Tokens outside a truncated set
 * must never be drawn. Each test also checks that the statistic rejects a
 * wrong distribution (so the test can fail).
 *
 * Also: a 300-token draw across the two-level walk's blocks; top-p and top-k
 * over 32000 flat logits (a top-p cut inside a bucket of thousands); top-p
 * cuts among ties and with most tokens at -inf; the partial selections
 * (select.h) against a sort.
 */
#include "test_util.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sampler.h"
#include "select.h"

enum { V = 16, N = 20000 };

/* Logits in no particular order; two ties (ids 4/11 and 6/13). */
static const float LOGITS[V] = {0.3f, 2.0f, -1.0f, 1.2f,  -0.5f, 1.5f,  0.8f, -2.0f,
                                0.0f, -1.3f, 1.0f, -0.5f, -0.2f, 0.8f, -2.5f, 0.5f};

/* Chi-square critical values at p = 0.001, df = 1..20. */
static const double CHI2_CRIT_001[21] = {0,      10.828, 13.816, 16.266, 18.467, 20.515, 22.458,
                                         24.322, 26.124, 27.877, 29.588, 31.264, 32.909, 34.528,
                                         36.123, 37.697, 39.252, 40.790, 42.312, 43.820, 45.315};

/* Expected distribution: softmax at temperature 1 for the truncations, keep[]
 * marks the survivors, then temperature t over the survivors. */
static void expected_probs(double t, const int *keep, double *prob)
{
    double mx = -INFINITY, z = 0.0;
    for (int i = 0; i < V; i++)
        if (keep[i] && LOGITS[i] > mx)
            mx = LOGITS[i];
    for (int i = 0; i < V; i++) {
        prob[i] = keep[i] ? exp(((double)LOGITS[i] - mx) / t) : 0.0;
        z += prob[i];
    }
    for (int i = 0; i < V; i++)
        prob[i] /= z;
}

/* Ranks of the tokens: order[0] is the best (higher logit, then lower id). */
static void rank_tokens(int *order)
{
    for (int i = 0; i < V; i++)
        order[i] = i;
    for (int i = 0; i < V; i++)
        for (int j = i + 1; j < V; j++) {
            float a = LOGITS[order[i]], b = LOGITS[order[j]];
            if (b > a || (b == a && order[j] < order[i])) {
                int t = order[i];
                order[i] = order[j];
                order[j] = t;
            }
        }
}

static void draw(const greta_sampler_params *p, long *count)
{
    greta_sampler *s = NULL;
    greta_error err = {0};
    assert_int_equal(greta_sampler_create(V, &s, &err), GRETA_OK);
    greta_sampler_state st;
    greta_sampler_state_init(&st, p, 0);
    memset(count, 0, V * sizeof *count);
    for (int k = 0; k < N; k++) {
        int32_t tok = -1;
        assert_int_equal(greta_sampler_sample(s, &st, LOGITS, NULL, 0, &tok, NULL, &err),
                         GRETA_OK);
        assert_true(tok >= 0 && tok < V);
        count[tok]++;
    }
    greta_sampler_destroy(&s);
}

/* Chi-square statistic; tokens with probability 0 must have count 0.
 * Returns the statistic and sets *df. */
static double chi_square(const long *count, const double *prob, int *df)
{
    double chi = 0.0;
    int cats = 0;
    for (int i = 0; i < V; i++) {
        if (prob[i] == 0.0) {
            if (count[i] != 0)
                fail_msg("token %d has probability 0 but was drawn %ld times", i, count[i]);
            continue;
        }
        double e = prob[i] * N;
        if (e < 5.0)
            fail_msg("expected count %.2f of token %d is below 5: use more draws", e, i);
        chi += (count[i] - e) * (count[i] - e) / e;
        cats++;
    }
    *df = cats - 1;
    return chi;
}

/* Draws with p, checks the fit against keep[] at temperature t, and that a
 * wrong distribution (keep_wrong at t_wrong) is rejected. */
static void check_fit(const char *name, const greta_sampler_params *p, double t,
                      const int *keep, double t_wrong, const int *keep_wrong)
{
    long count[V];
    double prob[V], wrong[V];
    draw(p, count);
    expected_probs(t, keep, prob);
    int df;
    double chi = chi_square(count, prob, &df);
    assert_true(df >= 1 && df <= 20);
    printf("  %-12s chi2 = %7.2f  df = %2d  critical(p=0.001) = %.3f\n", name, chi, df,
           CHI2_CRIT_001[df]);
    assert_true(chi < CHI2_CRIT_001[df]);
    /* power: the wrong distribution gives a huge statistic */
    expected_probs(t_wrong, keep_wrong, wrong);
    double chi_w = 0.0;
    for (int i = 0; i < V; i++) {
        double e = wrong[i] * N;
        if (e > 0.0)
            chi_w += (count[i] - e) * (count[i] - e) / e;
    }
    printf("  %-12s wrong-distribution chi2 = %.1f\n", name, chi_w);
    assert_true(chi_w > 3.0 * CHI2_CRIT_001[df]);
}

static void test_temperature(void **unused)
{
    int all[V];
    for (int i = 0; i < V; i++)
        all[i] = 1;
    greta_sampler_params p;
    greta_sampler_params_default(&p);
    p.seed = 11;
    p.temperature = 0.8f;
    check_fit("temp 0.8", &p, 0.8, all, 1.0, all);
    p.temperature = 1.0f;
    check_fit("temp 1.0", &p, 1.0, all, 0.8, all);
    p.temperature = 2.5f;
    p.seed = 12;
    check_fit("temp 2.5", &p, 2.5, all, 1.8, all);
}

static void test_top_k(void **unused)
{
    int order[V], keep[V] = {0}, all[V];
    rank_tokens(order);
    for (int i = 0; i < V; i++)
        all[i] = 1;
    for (int i = 0; i < 5; i++)
        keep[order[i]] = 1;
    /* ids 6 and 13 tie (0.8) at ranks 4 and 5: k = 5 keeps the lower id */
    assert_true(keep[6] && !keep[13]);
    greta_sampler_params p;
    greta_sampler_params_default(&p);
    p.seed = 21;
    p.top_k = 5;
    p.temperature = 0.9f;
    check_fit("top-k 5", &p, 0.9, keep, 0.9, all);
    memset(keep, 0, sizeof keep);
    for (int i = 0; i < 9; i++)
        keep[order[i]] = 1;
    p.top_k = 9;
    p.temperature = 1.0f;
    check_fit("top-k 9", &p, 1.0, keep, 1.0, all);
}

static void test_top_p(void **unused)
{
    int order[V], keep[V] = {0}, all[V];
    rank_tokens(order);
    for (int i = 0; i < V; i++)
        all[i] = 1;
    double prob[V];
    expected_probs(1.0, all, prob);
    double cum = 0.0;
    int kept = 0;
    for (int i = 0; i < V && cum < 0.8; i++) {
        keep[order[i]] = 1;
        cum += prob[order[i]];
        kept++;
    }
    assert_true(kept >= 4 && kept < V);
    greta_sampler_params p;
    greta_sampler_params_default(&p);
    p.seed = 31;
    p.top_p = 0.8f;
    p.temperature = 0.7f; /* the cut uses temperature 1, the draw 0.7 */
    check_fit("top-p 0.8", &p, 0.7, keep, 0.7, all);
}

static void test_min_p(void **unused)
{
    int keep[V], all[V];
    double mx = -INFINITY;
    for (int i = 0; i < V; i++)
        mx = LOGITS[i] > mx ? LOGITS[i] : mx;
    int kept = 0;
    for (int i = 0; i < V; i++) {
        all[i] = 1;
        keep[i] = exp((double)LOGITS[i] - mx) >= 0.2;
        kept += keep[i];
    }
    assert_true(kept >= 4 && kept < V);
    greta_sampler_params p;
    greta_sampler_params_default(&p);
    p.seed = 41;
    p.min_p = 0.2f;
    p.temperature = 1.2f;
    check_fit("min-p 0.2", &p, 1.2, keep, 1.2, all);
}

/* Temperature over 300 tokens (the draw walks 5 blocks of 64): counts of the
 * 17 groups token % 17 (17 is prime to 64, so a token or a block drawn in
 * place of its neighbour moves weight between groups) against the grouped
 * softmax. */
static void test_temperature_blocks(void **unused)
{
    enum { BV = 300, G = 17 };
    float l[BV];
    uint64_t x = 1234;
    for (int i = 0; i < BV; i++) {
        x = x * 6364136223846793005ull + 1442695040888963407ull;
        l[i] = (float)((double)(x >> 11) * 0x1.0p-53 * 4.0 - 2.0);
    }
    const double t = 0.9;
    double mx = -INFINITY, z = 0.0, prob[G] = {0};
    for (int i = 0; i < BV; i++)
        mx = l[i] > mx ? l[i] : mx;
    for (int i = 0; i < BV; i++)
        z += exp(((double)l[i] - mx) / t);
    for (int i = 0; i < BV; i++)
        prob[i % G] += exp(((double)l[i] - mx) / t) / z;
    greta_sampler *s = NULL;
    greta_error err = {0};
    assert_int_equal(greta_sampler_create(BV, &s, &err), GRETA_OK);
    greta_sampler_params p;
    greta_sampler_params_default(&p);
    p.seed = 51;
    p.temperature = (float)t;
    greta_sampler_state st;
    greta_sampler_state_init(&st, &p, 0);
    long count[G] = {0};
    for (int k = 0; k < N; k++) {
        int32_t tok;
        assert_int_equal(greta_sampler_sample(s, &st, l, NULL, 0, &tok, NULL, &err), GRETA_OK);
        count[tok % G]++;
    }
    double chi = 0.0;
    for (int g = 0; g < G; g++) {
        double e = prob[g] * N;
        assert_true(e >= 5.0);
        chi += (count[g] - e) * (count[g] - e) / e;
    }
    printf("  %-12s chi2 = %7.2f  df = %2d  critical(p=0.001) = %.3f\n", "temp blocks", chi,
           G - 1, CHI2_CRIT_001[G - 1]);
    assert_true(chi < CHI2_CRIT_001[G - 1]);
    greta_sampler_destroy(&s);
}

/* A large, flat vocabulary (logits in [0, 0.5)): the top-p cut falls inside a
 * histogram bucket of thousands of tokens (weighted quickselect); top-k 5000
 * uses the quickselect branch of the top-k selection. */
static void test_large_vocab_truncation(void **unused)
{
    enum { BIG = 32000 };
    float *l = malloc(BIG * sizeof *l);
    float *sorted = malloc(BIG * sizeof *sorted);
    int32_t *ord = malloc(BIG * sizeof *ord);
    int32_t *rank_of = malloc(BIG * sizeof *rank_of);
    assert_true(l && sorted && ord && rank_of);
    uint64_t x = 77;
    for (int i = 0; i < BIG; i++) {
        x = x * 6364136223846793005ull + 1442695040888963407ull;
        l[i] = (float)((double)(x >> 11) * 0x1.0p-53) * 0.5f; /* logits in [0, 0.5) */
    }
    /* ranks by a full sort (greta_select_top with k = n is checked against
     * qsort in test_select) */
    greta_select_top(l, NULL, BIG, BIG, sorted, ord);
    for (int i = 0; i < BIG; i++)
        rank_of[ord[i]] = i;
    /* size of the top-p 0.5 set */
    double mx = sorted[0], z = 0.0, cum = 0.0;
    for (int i = 0; i < BIG; i++)
        z += exp((double)sorted[i] - mx);
    int cut = 0;
    while (cum < 0.5 * z)
        cum += exp((double)sorted[cut++] - mx);
    assert_true(cut > 10000);

    greta_sampler *s = NULL;
    greta_error err = {0};
    assert_int_equal(greta_sampler_create(BIG, &s, &err), GRETA_OK);
    greta_sampler_params p;
    greta_sampler_params_default(&p);
    p.seed = 5;
    p.top_p = 0.5f;
    greta_sampler_state st;
    greta_sampler_state_init(&st, &p, 0);
    int max_rank = 0;
    for (int k = 0; k < 100; k++) {
        int32_t tok;
        assert_int_equal(greta_sampler_sample(s, &st, l, NULL, 0, &tok, NULL, &err), GRETA_OK);
        /* inside the set (a margin of 2 for rounding at its boundary) */
        assert_true(rank_of[tok] < cut + 2);
        max_rank = rank_of[tok] > max_rank ? rank_of[tok] : max_rank;
    }
    assert_true(max_rank > cut / 2); /* the draws spread over the whole set */

    p.top_p = 1.0f;
    p.top_k = 5000;
    greta_sampler_state_init(&st, &p, 0);
    max_rank = 0;
    for (int k = 0; k < 100; k++) {
        int32_t tok;
        assert_int_equal(greta_sampler_sample(s, &st, l, NULL, 0, &tok, NULL, &err), GRETA_OK);
        assert_true(rank_of[tok] < 5000);
        max_rank = rank_of[tok] > max_rank ? rank_of[tok] : max_rank;
    }
    assert_true(max_rank > 2500);
    greta_sampler_destroy(&s);
    free(rank_of);
    free(ord);
    free(sorted);
    free(l);
}

/* ---- partial selection --------------------------------------------------- */

typedef struct { float l; int32_t id; } pair;

static int cmp_pair(const void *a, const void *b)
{
    const pair *x = a, *y = b;
    if (x->l != y->l)
        return x->l > y->l ? -1 : 1;
    return x->id < y->id ? -1 : (x->id > y->id);
}

/* greta_select_top from src (ids = index, or ids given in reverse order)
 * against qsort; the input must stay untouched. */
static void check_select(const float *src, size_t n, size_t k)
{
    float *l = malloc(n * sizeof *l), *out_l = malloc(n * sizeof *out_l);
    int32_t *id = malloc(n * sizeof *id), *out_id = malloc(n * sizeof *out_id);
    pair *ref = malloc(n * sizeof *ref);
    assert_true(l && out_l && id && out_id && ref);
    for (int with_ids = 0; with_ids < 2; with_ids++) {
        for (size_t i = 0; i < n; i++) {
            l[i] = src[i];
            id[i] = (int32_t)(n - 1 - i);
            ref[i] = (pair){src[i], with_ids ? id[i] : (int32_t)i};
        }
        qsort(ref, n, sizeof *ref, cmp_pair);
        greta_select_top(l, with_ids ? id : NULL, n, k, out_l, out_id);
        for (size_t i = 0; i < k; i++) {
            if (out_l[i] != ref[i].l || out_id[i] != ref[i].id)
                fail_msg("n %zu k %zu ids %d: position %zu has (%g, %d), want (%g, %d)", n, k,
                         with_ids, i, (double)out_l[i], out_id[i], (double)ref[i].l, ref[i].id);
        }
        for (size_t i = 0; i < n; i++)
            assert_true(l[i] == src[i] && id[i] == (int32_t)(n - 1 - i));
        size_t best = greta_select_best(l, id, n);
        if (with_ids)
            assert_int_equal(id[best], ref[0].id);
    }
    free(ref);
    free(out_id);
    free(id);
    free(out_l);
    free(l);
}

static void test_select(void **unused)
{
    enum { M = 5000 };
    float *a = malloc(M * sizeof *a);
    assert_non_null(a);
    uint64_t x = 3;
    const size_t ks[] = {0, 1, 2, 7, 64, 1024, 1025, 2500, 4999, 5000};
    for (int pattern = 0; pattern < 5; pattern++) {
        for (int i = 0; i < M; i++) {
            x = x * 6364136223846793005ull + 1442695040888963407ull;
            switch (pattern) {
            case 0: a[i] = (float)(x >> 40) / 1000.0f; break;        /* random */
            case 1: a[i] = (float)((x >> 40) % 7); break;             /* many ties */
            case 2: a[i] = (float)i; break;                           /* ascending */
            case 3: a[i] = (float)(M - i); break;                     /* descending */
            default: a[i] = (float)(i < M / 2 ? i : M - i); break;    /* organ pipe */
            }
        }
        if (pattern == 0)
            a[17] = -INFINITY;
        for (size_t j = 0; j < sizeof ks / sizeof ks[0]; j++)
            check_select(a, M, ks[j]);
    }
    check_select(a, 1, 1);
    free(a);
}

/* greta_select_mass against a sort and a sequential walk. Weights are small
 * integers, so every sum is exact and the cut must match exactly. */
static void test_select_mass(void **unused)
{
    enum { M = 3000 };
    float *l = malloc(M * sizeof *l), *w = malloc(M * sizeof *w);
    int32_t *id = malloc(M * sizeof *id);
    pair *ref = malloc(M * sizeof *ref);
    float *rw = malloc(M * sizeof *rw);
    assert_true(l && w && id && ref && rw);
    uint64_t x = 9;
    for (int pattern = 0; pattern < 3; pattern++) {
        for (size_t n = 1; n <= M; n = n * 3 + 1) {
            double total = 0.0;
            for (size_t i = 0; i < n; i++) {
                x = x * 6364136223846793005ull + 1442695040888963407ull;
                float v = pattern == 0 ? (float)(x >> 40) : pattern == 1 ? (float)((x >> 40) % 5)
                                                                          : (float)i;
                ref[i] = (pair){v, (int32_t)i};
                rw[i] = (float)((x >> 20) % 4); /* weights 0..3, some 0 */
                total += rw[i];
            }
            for (int f = 1; f <= 10; f++) {
                double target = total * f / 10.0;
                for (size_t i = 0; i < n; i++) {
                    l[i] = ref[i].l;
                    id[i] = ref[i].id;
                    w[i] = rw[i];
                }
                size_t m = greta_select_mass(l, id, w, n, target);
                /* reference: sort, walk */
                pair *sorted = malloc(n * sizeof *sorted);
                assert_non_null(sorted);
                memcpy(sorted, ref, n * sizeof *sorted);
                qsort(sorted, n, sizeof *sorted, cmp_pair);
                double cum = 0.0;
                size_t want = n;
                for (size_t i = 0; i < n; i++) {
                    cum += rw[sorted[i].id];
                    if (cum >= target) {
                        want = i + 1;
                        break;
                    }
                }
                if (m != want)
                    fail_msg("pattern %d n %zu target %g: cut %zu, want %zu", pattern, n, target,
                             m, want);
                /* [0, m) is the set of the m best, the m-th best at m - 1 */
                assert_true(l[m - 1] == sorted[m - 1].l && id[m - 1] == sorted[m - 1].id);
                for (size_t i = 0; i < m; i++) {
                    int in = 0;
                    for (size_t j = 0; j < m && !in; j++)
                        in = sorted[j].id == id[i];
                    assert_true(in);
                    assert_true(w[i] == rw[id[i]] && l[i] == ref[id[i]].l);
                }
                free(sorted);
            }
        }
    }
    free(rw);
    free(ref);
    free(id);
    free(w);
    free(l);
}

/* Top-p cuts that fall among tied logits, in the histogram's last bucket, and
 * with most of the vocabulary at -inf. */
static void test_top_p_edges(void **unused)
{
    enum { BV = 1000 };
    float l[BV];
    greta_sampler *s = NULL;
    greta_error err = {0};
    assert_int_equal(greta_sampler_create(BV, &s, &err), GRETA_OK);
    struct { float tail; float top_p; } cases[] = {
        {-5.0f, 0.9f},    /* cut among 990 tied logits: the lowest ids are kept */
        {-45.0f, 0.9f},   /* the tail is beyond the histogram range: set = the top 10 */
        {-60.0f, 0.99999994f},
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        for (int i = 0; i < BV; i++)
            l[i] = i % 100 == 7 ? 0.0f : cases[c].tail; /* 10 tokens at 0: 7, 107, ... */
        /* expected set: the 10 zeros, then the tail by id */
        double z = 10.0 + 990.0 * exp((double)cases[c].tail), cum = 0.0;
        double target = (double)cases[c].top_p * z;
        int n_tail = 0;
        cum = 10.0;
        while (cum < target && n_tail < 990) {
            cum += exp((double)cases[c].tail);
            n_tail++;
        }
        greta_sampler_params p;
        greta_sampler_params_default(&p);
        p.top_p = cases[c].top_p;
        p.seed = 40 + c;
        greta_sampler_state st;
        greta_sampler_state_init(&st, &p, 0);
        int max_tail_rank = -1;
        for (int k = 0; k < 400; k++) {
            int32_t tok;
            assert_int_equal(greta_sampler_sample(s, &st, l, NULL, 0, &tok, NULL, &err), 0);
            if (tok % 100 != 7) { /* a tail token: its rank among the tail by id */
                int rank = tok - (tok / 100 + (tok % 100 > 7 ? 1 : 0));
                assert_true(rank < n_tail + 1); /* one of margin for rounding */
                max_tail_rank = rank > max_tail_rank ? rank : max_tail_rank;
            }
        }
        printf("  top-p edge %zu: %d tail tokens in the set, highest drawn tail rank %d\n", c,
               n_tail, max_tail_rank);
        if (n_tail > 100)
            assert_true(max_tail_rank > n_tail / 2);
        else
            assert_true(max_tail_rank == -1 || max_tail_rank < n_tail);
    }
    /* all but three tokens at -inf */
    for (int i = 0; i < BV; i++)
        l[i] = -INFINITY;
    l[500] = 1.0f;
    l[20] = 0.0f;
    l[999] = -1.0f;
    greta_sampler_params p;
    greta_sampler_params_default(&p);
    p.top_p = 0.8f; /* p = 0.665, 0.245, 0.09: keeps 500 and 20 */
    greta_sampler_state st;
    greta_sampler_state_init(&st, &p, 0);
    int seen[3] = {0, 0, 0};
    for (int k = 0; k < 300; k++) {
        int32_t tok;
        assert_int_equal(greta_sampler_sample(s, &st, l, NULL, 0, &tok, NULL, &err), 0);
        assert_true(tok == 500 || tok == 20);
        seen[tok == 500 ? 0 : 1]++;
    }
    assert_true(seen[0] > 150 && seen[1] > 40);
    greta_sampler_destroy(&s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_select),
        cmocka_unit_test(test_select_mass),
        cmocka_unit_test(test_top_p_edges),
        cmocka_unit_test(test_temperature),
        cmocka_unit_test(test_temperature_blocks),
        cmocka_unit_test(test_top_k),
        cmocka_unit_test(test_top_p),
        cmocka_unit_test(test_min_p),
        cmocka_unit_test(test_large_vocab_truncation),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
