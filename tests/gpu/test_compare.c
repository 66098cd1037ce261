/* test_compare.c - frontend/compare.c, the logit comparison `greta parity`
 * and `greta drift` share: top-k against a brute-force oracle (ties, NaN,
 * infinities), the nearest-rank quantile against sorting, one row's figures
 * against hand-computed values, the log-sum-exp at large logits, the
 * argument parsers, and feeding a CPU backend in chunks of any size giving
 * the same logits (stories260K). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "test_util.h"

#include "frontend/compare.h"
#include "common/model.h"

/* ---- oracles ------------------------------------------------------------------------ */

/* The k best ids by repeated selection: the definition compare.h gives. */
static void topk_oracle(const float *x, int32_t n, int32_t k, int32_t *ids)
{
    for (int32_t j = 0; j < k; j++) {
        int32_t best = -1;
        for (int32_t i = 0; i < n; i++) {
            if (isnan(x[i]))
                continue;
            int taken = 0;
            for (int32_t q = 0; q < j; q++)
                taken |= ids[q] == i;
            if (!taken && (best < 0 || x[i] > x[best]))
                best = i;
        }
        ids[j] = best;
    }
}

static int cmp_total(const void *a, const void *b)
{
    const double x = *(const double *)a, y = *(const double *)b;
    if (isnan(x) || isnan(y))
        return isnan(x) - isnan(y);
    return (x > y) - (x < y);
}

static uint64_t rng = 0x9e3779b97f4a7c15ull;
static uint32_t next_u32(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (uint32_t)(rng >> 11);
}

/* ---- tests ---------------------------------------------------------------------------- */

static void test_topk_matches_oracle(void **state)
{
    (void)state;
    float x[64];
    for (int trial = 0; trial < 2000; trial++) {
        const int32_t n = 1 + (int32_t)(next_u32() % 64);
        const int levels = 1 + (int)(next_u32() % 8); /* few levels: many ties */
        for (int32_t i = 0; i < n; i++) {
            const uint32_t r = next_u32() % 100;
            x[i] = r < 5 ? NAN : r < 8 ? INFINITY : r < 11 ? -INFINITY : (float)(next_u32() % (uint32_t)levels) - 3.0f;
        }
        for (int32_t k = 1; k <= GRETA_COMPARE_MAX_K; k++) {
            int32_t got[GRETA_COMPARE_MAX_K], want[GRETA_COMPARE_MAX_K];
            greta_compare_topk(x, n, k, got);
            topk_oracle(x, n, k, want);
            for (int32_t j = 0; j < k; j++)
                if (got[j] != want[j])
                    fail_msg("trial %d n %d k %d: rank %d is id %d, want %d", trial, n, k, j, got[j], want[j]);
        }
    }
    /* known order: ties go to the lower id, NaN never, -1 past the numbers */
    const float y[6] = {1.0f, NAN, 3.0f, 3.0f, -INFINITY, 2.0f};
    int32_t ids[8];
    greta_compare_topk(y, 6, 7, ids);
    const int32_t want[7] = {2, 3, 5, 0, 4, -1, -1};
    assert_memory_equal(ids, want, sizeof want);
}

static void test_topk_overlap(void **state)
{
    (void)state;
    const float a[8] = {8, 7, 6, 5, 4, 3, 2, 1};
    const float b[8] = {1, 7, 6, 5, 4, 3, 2, 8}; /* ids 0 and 7 swap places */
    assert_true(greta_compare_topk_overlap(a, a, 8, 5) == 1.0);
    assert_true(greta_compare_topk_overlap(a, b, 8, 5) == 0.8); /* {0..4} vs {7,1,2,3,4} */
    assert_true(greta_compare_topk_overlap(a, b, 8, 1) == 0.0);
    assert_true(greta_compare_topk_overlap(a, b, 8, 8) == 1.0);
}

static void test_quantile_matches_sort(void **state)
{
    (void)state;
    enum { N = 300 };
    double v[N], s[N];
    const double qs[] = {0.01, 0.5, 0.9, 0.99, 1.0};
    for (int trial = 0; trial < 500; trial++) {
        const size_t n = 1 + next_u32() % N;
        for (size_t i = 0; i < n; i++) {
            const uint32_t r = next_u32() % 100;
            v[i] = r < 3 ? NAN : r < 6 ? INFINITY : (double)(next_u32() % 50) / 7.0;
        }
        memcpy(s, v, n * sizeof *v);
        qsort(s, n, sizeof *s, cmp_total);
        for (size_t q = 0; q < sizeof qs / sizeof qs[0]; q++) {
            double w[N];
            memcpy(w, v, n * sizeof *v);
            size_t rank = (size_t)ceil(qs[q] * (double)n);
            rank = rank < 1 ? 1 : rank;
            const double got = greta_compare_quantile(w, n, qs[q]), want = s[rank - 1];
            if (!(got == want || (isnan(got) && isnan(want))))
                fail_msg("trial %d n %zu q %g: %g, want %g", trial, n, qs[q], got, want);
        }
    }
    double one = 4.0;
    assert_true(greta_compare_quantile(&one, 1, 0.99) == 4.0);
    assert_true(greta_compare_quantile(NULL, 0, 0.99) == 0.0);
    /* nearest rank: the 99th of 100 values 1..100 is 99 */
    double h[100];
    for (int i = 0; i < 100; i++)
        h[i] = 100 - i;
    assert_true(greta_compare_quantile(h, 100, 0.99) == 99.0);
}

static void test_row_known_values(void **state)
{
    (void)state;
    /* ref has mean 1.5 and std sqrt(1.25); test moves the last logit by 0.5 */
    const float ref[4] = {0.0f, 1.0f, 2.0f, 3.0f}, test[4] = {0.0f, 1.0f, 2.0f, 3.5f};
    double rel[4], scratch[4];
    greta_compare_row_stats st;
    greta_compare_row(ref, test, 4, &st, rel, scratch);
    const double sd = sqrt(1.25);
    assert_true(fabs(st.std_ref - sd) < 1e-12);
    assert_true(st.max_abs == 0.5);
    assert_true(fabs(st.max_rel - 0.5 / sd) < 1e-12);
    assert_true(fabs(st.p99_rel - 0.5 / sd) < 1e-12); /* rank ceil(3.96) = 4 of 4 */
    assert_true(fabs(st.p99_abs - 0.5) < 1e-12);
    assert_true(rel[0] == 0.0 && rel[1] == 0.0 && rel[2] == 0.0 && fabs(rel[3] - 0.5 / sd) < 1e-12);
    assert_int_equal(st.top1_ref, 3);
    assert_int_equal(st.top1_test, 3);
    assert_true(st.top5 == 4.0 / 5.0); /* only 4 ids exist */
    assert_int_equal(st.nan_inf, 0);
    /* KL(p || q) by hand in double */
    double zp = 0, zq = 0, kl = 0;
    for (int i = 0; i < 4; i++) {
        zp += exp(ref[i]);
        zq += exp(test[i]);
    }
    for (int i = 0; i < 4; i++)
        kl += exp(ref[i]) / zp * ((ref[i] - log(zp)) - (test[i] - log(zq)));
    assert_true(fabs(st.kl - kl) < 1e-12 && st.kl > 0);

    /* a constant shift: same distribution, KL 0 (to rounding), max |d| 5 */
    const float shifted[4] = {5.0f, 6.0f, 7.0f, 8.0f};
    greta_compare_row(ref, shifted, 4, &st, rel, scratch);
    assert_true(st.max_abs == 5.0);
    assert_true(st.kl < 1e-12);
    assert_true(st.top5 == 0.8 && st.top10 == 0.4);

    /* identical rows: exactly zero */
    greta_compare_row(ref, ref, 4, &st, rel, scratch);
    assert_true(st.max_abs == 0.0 && st.max_rel == 0.0 && st.p99_rel == 0.0 && st.kl == 0.0);

    /* non-finite test values are counted and make the difference infinite */
    const float bad[4] = {0.0f, NAN, 2.0f, INFINITY};
    greta_compare_row(ref, bad, 4, &st, rel, scratch);
    assert_int_equal(st.nan_inf, 2);
    assert_true(isinf(st.max_abs) && isinf(st.max_rel) && isinf(st.p99_rel));
    assert_true(isinf(rel[1]) && isinf(rel[3]));

    /* a constant ref row: std 0 counts as 1 */
    const float flat[4] = {2.0f, 2.0f, 2.0f, 2.0f}, flat2[4] = {2.0f, 2.0f, 2.25f, 2.0f};
    greta_compare_row(flat, flat2, 4, &st, rel, scratch);
    assert_true(st.std_ref == 0.0 && st.max_rel == 0.25 && st.p99_abs == 0.25);
}

static void test_log_sum_exp(void **state)
{
    (void)state;
    const float big[2] = {1000.0f, 1000.0f};
    assert_true(fabs(greta_compare_log_sum_exp(big, 2) - (1000.0 + log(2.0))) < 1e-9);
    const float mixed[3] = {-1000.0f, 0.0f, -INFINITY};
    assert_true(fabs(greta_compare_log_sum_exp(mixed, 3)) < 1e-12);
}

static void test_parse(void **state)
{
    (void)state;
    int32_t i = -7;
    double d = -7;
    assert_int_equal(greta_compare_parse_int("12", 1, 20, &i), 0);
    assert_int_equal(i, 12);
    assert_int_equal(greta_compare_parse_int("21", 1, 20, &i), -1);
    assert_int_equal(greta_compare_parse_int("0", 1, 20, &i), -1);
    assert_int_equal(greta_compare_parse_int("3x", 1, 20, &i), -1);
    assert_int_equal(greta_compare_parse_int("", 1, 20, &i), -1);
    assert_int_equal(greta_compare_parse_int("99999999999999999999", 1, 20, &i), -1);
    assert_int_equal(i, 12);
    assert_int_equal(greta_compare_parse_double("1e-3", 0, HUGE_VAL, &d), 0);
    assert_true(d == 1e-3);
    assert_int_equal(greta_compare_parse_double("nan", 0, HUGE_VAL, &d), -1);
    assert_int_equal(greta_compare_parse_double("-1", 0, HUGE_VAL, &d), -1);
    assert_int_equal(greta_compare_parse_double("1e-3 ", 0, HUGE_VAL, &d), -1);
}

static void test_feed_chunks(void **state)
{
    (void)state;
    GRETA_TESTDATA_OR_SKIP(path, "stories260K.gguf");
    greta_error err = {0};
    greta_model *m = NULL;
    assert_int_equal(greta_model_open(path, &m, &err), 0);
    const int32_t vocab = (int32_t)m->cfg.vocab_size, n = 12;
    const int32_t toks[12] = {1, 403, 407, 261, 378, 426, 271, 260, 284, 263, 270, 291};
    float *a = malloc(sizeof(float) * (size_t)n * vocab), *b = malloc(sizeof(float) * (size_t)n * vocab);
    assert_non_null(a);
    assert_non_null(b);
    const greta_backend_params bp = {.n_ctx = 32, .n_seq = 1, .n_batch = 12, .n_threads = 1};
    greta_backend *x = NULL, *y = NULL;
    assert_int_equal(greta_compare_backend_create("cpu", 0, 0, m, &bp, &x, &err), 0);
    assert_int_equal(greta_compare_backend_create("cpu", 0, 0, m, &bp, &y, &err), 0);
    /* one batch of 12 against chunks of 5 (5, 5, 2): the same rows, bit for bit */
    assert_int_equal(greta_compare_feed(x, toks, n, 0, 12, a, &err), 0);
    assert_int_equal(greta_compare_feed(y, toks, n, 0, 5, b, &err), 0);
    assert_memory_equal(a, b, sizeof(float) * (size_t)n * vocab);
    assert_int_equal(x->ops->seq_len(x, 0), n);
    /* the positions continue the sequence: a wrong start is refused */
    assert_int_not_equal(greta_compare_feed(x, toks, 1, 3, 1, a, &err), 0);
    assert_int_equal(greta_compare_feed(x, toks, 1, 0, 0, a, &err), GRETA_ERR_INVALID);
    greta_backend_destroy(&x);
    greta_backend_destroy(&y);
#ifndef GRETA_HAVE_GPU
    assert_int_equal(greta_compare_backend_create("gpu", 0, 0, m, &bp, &x, &err), GRETA_ERR_UNSUPPORTED);
    assert_non_null(strstr(err.msg, "--test cpu"));
    assert_null(x);
#endif
    free(a);
    free(b);
    greta_model_close(&m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_topk_matches_oracle), cmocka_unit_test(test_topk_overlap),
        cmocka_unit_test(test_quantile_matches_sort), cmocka_unit_test(test_row_known_values),
        cmocka_unit_test(test_log_sum_exp), cmocka_unit_test(test_parse),
        cmocka_unit_test(test_feed_chunks),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
