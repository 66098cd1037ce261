/* sampler.c - penalties, top-k, top-p, min-p, temperature and the seeded draw.
 * The order of operations and the reduced-candidate rules are in sampler.h. */
#include "sampler.h"

#include <assert.h>
#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "detmath.h"
#include "rng.h"
#include "select.h"

/* The state lives in shared memory: its layout must not move. */
_Static_assert(sizeof(greta_logit_bias) == 8, "greta_logit_bias layout");
_Static_assert(offsetof(greta_sampler_params, top_k) == 24, "params layout");
_Static_assert(offsetof(greta_sampler_params, seed) == 32, "params layout");
_Static_assert(offsetof(greta_sampler_params, n_bias) == 40, "params layout");
_Static_assert(offsetof(greta_sampler_params, bias) == 48, "params layout");
_Static_assert(sizeof(greta_sampler_params) == 560, "params layout");
_Static_assert(offsetof(greta_sampler_state, seq_id) == 560, "state layout");
_Static_assert(sizeof(greta_sampler_state) == 576, "state layout");

#define DRAW_BLOCK 64       /* candidates per block of the two-level draw */
#define TOP_P_BUCKETS 512   /* histogram of (max - logit) for the top-p cut */
#define TOP_P_RANGE 40.0f   /* logits further below the max share the last bucket */

struct greta_sampler {
    int32_t vocab;
    float *in_l;     /* [vocab] logits after bias/penalties; reduced-path candidates */
    int32_t *in_id;  /* [vocab] reduced-path candidate ids */
    float *logit;    /* [vocab] survivors of the last truncation step: logits */
    int32_t *id;     /* [vocab]   their token ids */
    float *w;        /* [vocab] weights (softmax numerators) of candidate i */
    int32_t *bucket; /* [vocab] top-p: histogram bucket of candidate i */
    float *sel_l;    /* [vocab] top-p: candidates of the bucket holding the cut */
    int32_t *sel_id; /* [vocab]   their ids */
    float *sel_w;    /* [vocab]   their weights at temperature 1 */
    double *bsum;    /* [vocab / DRAW_BLOCK + 1] block sums of w for the draw */
    uint32_t *count; /* [vocab] occurrence counts / marks, all zero between calls */
};

/* ---- parameters -------------------------------------------------------- */

void greta_sampler_params_default(greta_sampler_params *p)
{
    memset(p, 0, sizeof *p);
    p->temperature = 1.0f;
    p->top_p = 1.0f;
    p->min_p = 0.0f;
    p->repeat_penalty = 1.0f;
    p->penalty_last_n = 64;
}

int greta_sampler_params_validate(const greta_sampler_params *p, int32_t vocab,
                                  greta_error *err)
{
    const int inv = GRETA_ERR_INVALID;
    if (vocab < 1)
        return greta_error_set(err, inv, "sampler: vocab = %d must be >= 1", (int)vocab);
    if (!isfinite(p->temperature) || p->temperature < 0.0f)
        return greta_error_set(err, inv,
                               "sampler: temperature = %g must be a finite number >= 0 "
                               "(0 = greedy)", (double)p->temperature);
    if (p->top_k < 0)
        return greta_error_set(err, inv, "sampler: top_k = %d must be >= 0 (0 = off)",
                               (int)p->top_k);
    if (!(p->top_p > 0.0f && p->top_p <= 1.0f))
        return greta_error_set(err, inv, "sampler: top_p = %g must be in (0, 1] (1 = off)",
                               (double)p->top_p);
    if (!(p->min_p >= 0.0f && p->min_p <= 1.0f))
        return greta_error_set(err, inv, "sampler: min_p = %g must be in [0, 1] (0 = off)",
                               (double)p->min_p);
    if (!(p->repeat_penalty > 0.0f && p->repeat_penalty <= GRETA_SAMPLER_MAX_REPEAT_PENALTY))
        return greta_error_set(err, inv,
                               "sampler: repeat_penalty = %g must be in (0, %g] (1 = off)",
                               (double)p->repeat_penalty,
                               (double)GRETA_SAMPLER_MAX_REPEAT_PENALTY);
    const float fmax = GRETA_SAMPLER_MAX_FREQ_PENALTY;
    if (!(p->frequency_penalty >= -fmax && p->frequency_penalty <= fmax))
        return greta_error_set(err, inv,
                               "sampler: frequency_penalty = %g must be in [%g, %g] (0 = off)",
                               (double)p->frequency_penalty, -(double)fmax, (double)fmax);
    if (!(p->presence_penalty >= -fmax && p->presence_penalty <= fmax))
        return greta_error_set(err, inv,
                               "sampler: presence_penalty = %g must be in [%g, %g] (0 = off)",
                               (double)p->presence_penalty, -(double)fmax, (double)fmax);
    if (p->penalty_last_n < -1)
        return greta_error_set(err, inv,
                               "sampler: penalty_last_n = %d must be >= -1 "
                               "(-1 = whole history, 0 = off)", (int)p->penalty_last_n);
    if (p->n_bias > GRETA_SAMPLER_MAX_BIAS)
        return greta_error_set(err, GRETA_ERR_LIMIT,
                               "sampler: n_bias = %u exceeds the limit of %d logit-bias entries",
                               (unsigned)p->n_bias, GRETA_SAMPLER_MAX_BIAS);
    for (uint32_t i = 0; i < p->n_bias; i++) {
        const greta_logit_bias *b = &p->bias[i];
        if (b->token < 0 || b->token >= vocab)
            return greta_error_set(err, inv,
                                   "sampler: bias[%u].token = %d is outside the vocabulary "
                                   "[0, %d)", (unsigned)i, (int)b->token, (int)vocab);
        if (isnan(b->bias) || (isinf(b->bias) && b->bias > 0.0f))
            return greta_error_set(err, inv,
                                   "sampler: bias[%u].bias = %g for token %d must be finite "
                                   "or -inf", (unsigned)i, (double)b->bias, (int)b->token);
    }
    return GRETA_OK;
}

void greta_sampler_state_init(greta_sampler_state *st, const greta_sampler_params *p,
                              uint64_t seq_id)
{
    memset(st, 0, sizeof *st);
    st->params = *p;
    st->seq_id = seq_id;
    st->step = 0;
}

static int penalties_active(const greta_sampler_params *p)
{
    return p->penalty_last_n != 0 &&
           (p->repeat_penalty != 1.0f || p->frequency_penalty != 0.0f ||
            p->presence_penalty != 0.0f);
}

int greta_sampler_needs_full_logits(const greta_sampler_params *p)
{
    if (p->n_bias > 0 || penalties_active(p))
        return 1;
    if (p->temperature == 0.0f)
        return 0;
    return p->top_k > 0 ? 0 : 1;
}

int32_t greta_sampler_reduced_count(const greta_sampler_params *p, int32_t vocab)
{
    if (greta_sampler_needs_full_logits(p))
        return 0;
    if (p->temperature == 0.0f)
        return 1;
    return p->top_k < vocab ? p->top_k : vocab;
}

/* ---- context ----------------------------------------------------------- */

int greta_sampler_create(int32_t vocab, greta_sampler **out, greta_error *err)
{
    *out = NULL;
    if (vocab < 1 || vocab > GRETA_SAMPLER_MAX_VOCAB)
        return greta_error_set(err, GRETA_ERR_LIMIT,
                               "sampler: vocab = %d must be in [1, %d]", (int)vocab,
                               GRETA_SAMPLER_MAX_VOCAB);
    greta_sampler *s = calloc(1, sizeof *s);
    if (!s)
        return greta_error_set(err, GRETA_ERR_NOMEM, "sampler: out of memory");
    size_t n = (size_t)vocab;
    s->vocab = vocab;
    s->in_l = malloc(n * sizeof *s->in_l);
    s->in_id = malloc(n * sizeof *s->in_id);
    s->logit = malloc(n * sizeof *s->logit);
    s->id = malloc(n * sizeof *s->id);
    s->w = malloc(n * sizeof *s->w);
    s->bucket = malloc(n * sizeof *s->bucket);
    s->sel_l = malloc(n * sizeof *s->sel_l);
    s->sel_id = malloc(n * sizeof *s->sel_id);
    s->sel_w = malloc(n * sizeof *s->sel_w);
    s->bsum = malloc((n / DRAW_BLOCK + 1) * sizeof *s->bsum);
    s->count = calloc(n, sizeof *s->count);
    if (!s->in_l || !s->in_id || !s->logit || !s->id || !s->w || !s->bucket || !s->sel_l || !s->sel_id || !s->sel_w ||
        !s->bsum || !s->count) {
        greta_sampler_destroy(&s);
        return greta_error_set(err, GRETA_ERR_NOMEM,
                               "sampler: out of memory for vocab %d", (int)vocab);
    }
    *out = s;
    return GRETA_OK;
}

void greta_sampler_destroy(greta_sampler **s)
{
    if (!s || !*s)
        return;
    free((*s)->in_l);
    free((*s)->in_id);
    free((*s)->logit);
    free((*s)->id);
    free((*s)->w);
    free((*s)->bucket);
    free((*s)->sel_l);
    free((*s)->sel_id);
    free((*s)->sel_w);
    free((*s)->bsum);
    free((*s)->count);
    free(*s);
    *s = NULL;
}

int32_t greta_sampler_vocab(const greta_sampler *s)
{
    return s->vocab;
}

/* ---- steps 2-3: bias and penalties --------------------------------------- */

/* Window of the history the penalties read. */
static size_t penalty_window(const greta_sampler_params *p, size_t n_history)
{
    if (!penalties_active(p))
        return 0;
    if (p->penalty_last_n < 0 || (size_t)p->penalty_last_n > n_history)
        return n_history;
    return (size_t)p->penalty_last_n;
}

static int check_history(const int32_t *win, size_t n, size_t first, int32_t vocab,
                         greta_error *err)
{
    for (size_t i = 0; i < n; i++)
        if (win[i] < 0 || win[i] >= vocab)
            return greta_error_set(err, GRETA_ERR_INVALID,
                                   "sampler: history[%zu] = %d is outside the vocabulary "
                                   "[0, %d)", first + i, (int)win[i], (int)vocab);
    return GRETA_OK;
}

/* Applies bias and penalties to logits[vocab] (indexed by token id). The
 * history window must have been checked. */
static void apply_mods(greta_sampler *s, const greta_sampler_params *p, float *logits,
                       const int32_t *win, size_t n_win)
{
    for (uint32_t i = 0; i < p->n_bias; i++)
        logits[p->bias[i].token] += p->bias[i].bias;
    if (n_win == 0)
        return;
    uint32_t *count = s->count;
    for (size_t i = 0; i < n_win; i++)
        count[win[i]]++;
    const float rp = p->repeat_penalty, fp = p->frequency_penalty, pp = p->presence_penalty;
    for (size_t i = 0; i < n_win; i++) {
        int32_t t = win[i];
        uint32_t c = count[t];
        if (c == 0)
            continue; /* already applied */
        count[t] = 0;
        float l = logits[t];
        l = l <= 0.0f ? l * rp : l / rp;
        l -= (float)c * fp + pp;
        logits[t] = l;
    }
}

int greta_sampler_apply_penalties(greta_sampler *s, const greta_sampler_params *p,
                                  float *logits, const int32_t *history, size_t n_history,
                                  greta_error *err)
{
    int rc = greta_sampler_params_validate(p, s->vocab, err);
    if (rc)
        return rc;
    size_t n_win = penalty_window(p, n_history);
    const int32_t *win = n_win ? history + (n_history - n_win) : NULL;
    if ((rc = check_history(win, n_win, n_history - n_win, s->vocab, err)))
        return rc;
    apply_mods(s, p, logits, win, n_win);
    return GRETA_OK;
}

/* ---- scans -------------------------------------------------------------- */

/* Four-float vectors (GCC/Clang vector extension; compiles for any target,
 * scalar where it has no SIMD). */
typedef float f4 __attribute__((vector_size(16)));
typedef int32_t i4 __attribute__((vector_size(16)));

/* Maximum of x[0..n) and whether any x is NaN; 8 floats per step. */
static float scan_max(const float *x, size_t n, int *has_nan)
{
    const f4 ninf = {-INFINITY, -INFINITY, -INFINITY, -INFINITY};
    f4 m0 = ninf, m1 = ninf;
    i4 nan = {0, 0, 0, 0};
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        f4 a, b;
        memcpy(&a, x + i, sizeof a);
        memcpy(&b, x + i + 4, sizeof b);
        nan |= (a != a) | (b != b);
        i4 ga = a > m0, gb = b > m1; /* false for NaN: m keeps its value */
        m0 = (f4)((ga & (i4)a) | (~ga & (i4)m0));
        m1 = (f4)((gb & (i4)b) | (~gb & (i4)m1));
    }
    float r = -INFINITY;
    int any = 0;
    for (int j = 0; j < 4; j++) {
        r = m0[j] > r ? m0[j] : r;
        r = m1[j] > r ? m1[j] : r;
        any |= nan[j];
    }
    for (; i < n; i++) {
        any |= x[i] != x[i];
        r = x[i] > r ? x[i] : r;
    }
    *has_nan = any != 0;
    return r;
}

/* scan_max that also returns the first index of the maximum (greedy): each
 * lane keeps the first index of its own maximum, then the lowest index among
 * the lanes holding the overall maximum wins. n must be < 2^31. */
static float scan_argmax(const float *x, size_t n, int *has_nan, size_t *arg)
{
    const f4 ninf = {-INFINITY, -INFINITY, -INFINITY, -INFINITY};
    f4 m0 = ninf, m1 = ninf;
    i4 nan = {0, 0, 0, 0}, a0 = {0, 1, 2, 3}, a1 = {4, 5, 6, 7};
    i4 c0 = a0, c1 = a1;
    const i4 step = {8, 8, 8, 8};
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        f4 a, b;
        memcpy(&a, x + i, sizeof a);
        memcpy(&b, x + i + 4, sizeof b);
        nan |= (a != a) | (b != b);
        i4 ga = a > m0, gb = b > m1;
        m0 = (f4)((ga & (i4)a) | (~ga & (i4)m0));
        m1 = (f4)((gb & (i4)b) | (~gb & (i4)m1));
        a0 = (ga & c0) | (~ga & a0);
        a1 = (gb & c1) | (~gb & a1);
        c0 += step;
        c1 += step;
    }
    float r = -INFINITY;
    size_t best = 0;
    int any = 0;
    for (int j = 0; j < 4; j++) {
        any |= nan[j];
        if (m0[j] > r || (m0[j] == r && (size_t)a0[j] < best)) {
            r = m0[j];
            best = (size_t)a0[j];
        }
        if (m1[j] > r || (m1[j] == r && (size_t)a1[j] < best)) {
            r = m1[j];
            best = (size_t)a1[j];
        }
    }
    for (; i < n; i++) {
        any |= x[i] != x[i];
        if (x[i] > r) {
            r = x[i];
            best = i;
        }
    }
    *has_nan = any != 0;
    *arg = best;
    return r;
}

/* Index of the first x[i] == v, or n. */
static size_t first_equal(const float *x, size_t n, float v)
{
    for (size_t i = 0; i < n; i++)
        if (x[i] == v)
            return i;
    return n;
}

/* Index of the first NaN or +inf in x[0..n), or n. */
static size_t find_bad(const float *x, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (isnan(x[i]) || (isinf(x[i]) && x[i] > 0.0f))
            return i;
    return n;
}

/* ---- the vocabulary-wide loops, plain and AVX2 --------------------------------
 *
 * The loops over the whole vocabulary (weights, top-p buckets, sums) are
 * compiled twice from one body: for the build's baseline and, on x86-64, for
 * AVX2 (picked at run time when the CPU has it; greta_sampler_set_simd).
 * Both run the same IEEE float/double operations per element in the same
 * order (no FMA: the project builds with -ffp-contract=off), so they give
 * the same bits; tests/sampler checks it. */
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define SAMPLER_HAVE_AVX2 1
#define SAMPLER_AVX2 __attribute__((target("avx2")))
#else
#define SAMPLER_HAVE_AVX2 0
#endif
#define SAMPLER_BODY static inline __attribute__((always_inline))

static int g_simd = 1; /* greta_sampler_set_simd */

void greta_sampler_set_simd(int on) { g_simd = on != 0; }

int greta_sampler_simd_active(void)
{
#if SAMPLER_HAVE_AVX2
    static int have = -1;
    if (have < 0)
        have = __builtin_cpu_supports("avx2") ? 1 : 0;
    return g_simd && have;
#else
    return 0;
#endif
}

/* w[i] = exp((l[i] - max) * inv_t), i < n; inv_t = 1 / temperature, at most
 * FLT_MAX (so 0 * inv_t = 0: temperatures below 1 / FLT_MAX act as that). */
SAMPLER_BODY void weights_body(const float *restrict l, float *restrict w, size_t n, float max, float inv_t)
{
    for (size_t i = 0; i < n; i++)
        w[i] = greta_det_exp((l[i] - max) * inv_t);
}

/* bucket[i] = min((max - l[i]) * scale, last) truncated, w[i] = exp(l[i] - max) */
SAMPLER_BODY void buckets_body(const float *restrict l, int32_t *restrict bucket, float *restrict w, size_t n,
                               float max, float scale, float last)
{
    for (size_t i = 0; i < n; i++) {
        float d = (max - l[i]) * scale; /* >= 0, +inf for -inf logits */
        bucket[i] = (int32_t)(d < last ? d : last);
        w[i] = greta_det_exp(l[i] - max);
    }
}

static void weights_plain(const float *restrict l, float *restrict w, size_t n, float max, float inv_t)
{
    weights_body(l, w, n, max, inv_t);
}
static void buckets_plain(const float *restrict l, int32_t *restrict bucket, float *restrict w, size_t n, float max,
                          float scale, float last)
{
    buckets_body(l, bucket, w, n, max, scale, last);
}
static double sum_plain(const float *w, size_t n) { return greta_det_sum(w, n); }
#if SAMPLER_HAVE_AVX2
SAMPLER_AVX2 static void weights_avx2(const float *restrict l, float *restrict w, size_t n, float max, float inv_t)
{
    weights_body(l, w, n, max, inv_t);
}
SAMPLER_AVX2 static void buckets_avx2(const float *restrict l, int32_t *restrict bucket, float *restrict w, size_t n,
                                      float max, float scale, float last)
{
    buckets_body(l, bucket, w, n, max, scale, last);
}
SAMPLER_AVX2 static double sum_avx2(const float *w, size_t n) { return greta_det_sum(w, n); }
#endif

static void weights(const float *restrict l, float *restrict w, size_t n, float max, float inv_t)
{
#if SAMPLER_HAVE_AVX2
    if (greta_sampler_simd_active()) {
        weights_avx2(l, w, n, max, inv_t);
        return;
    }
#endif
    weights_plain(l, w, n, max, inv_t);
}

static void buckets(const float *restrict l, int32_t *restrict bucket, float *restrict w, size_t n, float max,
                    float scale, float last)
{
#if SAMPLER_HAVE_AVX2
    if (greta_sampler_simd_active()) {
        buckets_avx2(l, bucket, w, n, max, scale, last);
        return;
    }
#endif
    buckets_plain(l, bucket, w, n, max, scale, last);
}

/* greta_det_sum (detmath.h), compiled for the active ISA */
static double wsum(const float *w, size_t n)
{
#if SAMPLER_HAVE_AVX2
    if (greta_sampler_simd_active())
        return sum_avx2(w, n);
#endif
    return sum_plain(w, n);
}

/* ---- steps 6-10 --------------------------------------------------------- */

/* The draw: the first index whose cumulative weight exceeds u * total. Two
 * levels: the walk goes over block sums (the same numbers that make the
 * total), then inside the chosen block. */
static size_t draw_index(const float *w, size_t n, double *bsum, double u)
{
    const size_t nb = (n + DRAW_BLOCK - 1) / DRAW_BLOCK;
    double total = 0.0;
    for (size_t b = 0; b < nb; b++) {
        size_t lo = b * DRAW_BLOCK;
        bsum[b] = wsum(w + lo, n - lo < DRAW_BLOCK ? n - lo : DRAW_BLOCK);
        total += bsum[b];
    }
    const double target = u * total;
    double cum = 0.0;
    for (size_t b = 0; b < nb; b++) {
        if (cum + bsum[b] <= target) {
            cum += bsum[b];
            continue;
        }
        size_t lo = b * DRAW_BLOCK, hi = n - lo < DRAW_BLOCK ? n : lo + DRAW_BLOCK;
        for (size_t i = lo; i < hi; i++) {
            cum += (double)w[i];
            if (cum > target)
                return i;
        }
        for (size_t i = hi; i-- > lo;) /* rounding: the block's last weight */
            if (w[i] > 0.0f)
                return i;
    }
    for (size_t i = n; i-- > 0;) /* rounding left target at the total */
        if (w[i] > 0.0f)
            return i;
    return 0;
}

/* Top-p over l[0..n) sorted best first: the length of the shortest prefix
 * whose weight (temperature 1) reaches top_p of the total. */
static size_t top_p_sorted(greta_sampler *s, const float *l, size_t n, double top_p, float max)
{
    float *w = s->w;
    weights(l, w, n, max, 1.0f);
    const double target = top_p * wsum(w, n);
    double cum = 0.0;
    for (size_t i = 0; i < n; i++) {
        cum += (double)w[i];
        if (cum >= target)
            return i + 1;
    }
    return n;
}

/* Top-p over unsorted candidates l/id[0..n) (id NULL: id = index) without
 * sorting them. A histogram of (max - logit) in TOP_P_BUCKETS buckets
 * (monotone: a better candidate never lands in a later bucket) gives each
 * bucket's weight; the buckets before the one where the cumulative weight
 * reaches the target are kept whole, and greta_select_mass finds the cut
 * inside that bucket. The survivors go to s->logit/s->id in their input
 * order (l may be s->logit itself). Returns their number. */
static size_t top_p_unsorted(greta_sampler *s, const float *l, const int32_t *id, size_t n,
                             double top_p, float max)
{
    float *w = s->w, *out_l = s->logit;
    int32_t *bucket = s->bucket, *out_id = s->id;
    const float scale = (float)TOP_P_BUCKETS / TOP_P_RANGE, last = (float)(TOP_P_BUCKETS - 1);
    buckets(l, bucket, w, n, max, scale, last);
    /* Bucket weights and counts; 4 interleaved histograms (i mod 4) so that
     * neighbours in the same bucket do not wait on each other. */
    double mass4[4][TOP_P_BUCKETS];
    uint32_t count4[4][TOP_P_BUCKETS];
    memset(mass4, 0, sizeof mass4);
    memset(count4, 0, sizeof count4);
    size_t i = 0;
    for (; i + 4 <= n; i += 4) {
        for (int j = 0; j < 4; j++) {
            mass4[j][bucket[i + j]] += (double)w[i + j];
            count4[j][bucket[i + j]]++;
        }
    }
    for (; i < n; i++) {
        mass4[0][bucket[i]] += (double)w[i];
        count4[0][bucket[i]]++;
    }
    double mass[TOP_P_BUCKETS], z = 0.0;
    for (int b = 0; b < TOP_P_BUCKETS; b++) {
        mass[b] = (mass4[0][b] + mass4[1][b]) + (mass4[2][b] + mass4[3][b]);
        z += mass[b];
    }
    const double target = top_p * z;
    double cum = 0.0;
    size_t kept = 0; /* candidates in buckets <= cb */
    int32_t cb = 0;  /* the bucket holding the cut */
    for (; cb < TOP_P_BUCKETS - 1; cb++) {
        kept += (count4[0][cb] + count4[1][cb]) + (count4[2][cb] + count4[3][cb]);
        if (cum + mass[cb] >= target)
            break;
        cum += mass[cb];
    }
    if (cb == TOP_P_BUCKETS - 1)
        kept = n;
    /* Keep buckets <= cb, in order, branch-free (a branch on scattered
     * survivors would mispredict): write every candidate, advance only past
     * the kept ones (k <= i, so l may be out_l). When few are kept, groups of
     * 8 with none kept are skipped first. */
    size_t k = 0;
    i = 0;
    if (kept * 8 < n) {
        for (; i + 8 <= n; i += 8) {
            int any = 0;
            for (int j = 0; j < 8; j++)
                any |= bucket[i + j] <= cb;
            if (!any)
                continue;
            for (size_t j = i; j < i + 8; j++) {
                int32_t b = bucket[j];
                out_l[k] = l[j];
                out_id[k] = id ? id[j] : (int32_t)j;
                w[k] = w[j];
                bucket[k] = b;
                k += b <= cb;
            }
        }
    }
    for (; i < n; i++) {
        int32_t b = bucket[i];
        out_l[k] = l[i];
        out_id[k] = id ? id[i] : (int32_t)i;
        w[k] = w[i];
        bucket[k] = b;
        k += b <= cb;
    }
    assert(k == kept);
    n = k;
    /* the cut inside bucket cb */
    size_t m = 0;
    for (i = 0; i < n; i++) {
        s->sel_l[m] = out_l[i];
        s->sel_id[m] = out_id[i];
        s->sel_w[m] = w[i];
        m += bucket[i] == cb;
    }
    float tl = INFINITY; /* keep the candidates better than or equal to (tl, tid) */
    int32_t tid = -1;
    if (m > 0) {
        size_t cut = greta_select_mass(s->sel_l, s->sel_id, s->sel_w, m, target - cum);
        tl = s->sel_l[cut - 1];
        tid = s->sel_id[cut - 1];
    }
    k = 0;
    for (i = 0; i < n; i++) {
        float x = out_l[i];
        int32_t t = out_id[i];
        int keep = (bucket[i] < cb) | ((x > tl) | ((x == tl) & (t <= tid)));
        out_l[k] = x;
        out_id[k] = t;
        k += (size_t)keep;
    }
    assert(k > 0);
    return k;
}

/* Steps 6-10 for temperature > 0 over the candidates l/id[0..n) (id NULL:
 * id = index; read only, not s->logit/s->id, which take each step's
 * survivors), whose maximum is `max` (finite). Returns the token, and its
 * logit in *picked_logit. */
static int32_t sample_candidates(greta_sampler *s, const greta_sampler_params *p,
                                 const float *l, const int32_t *id, size_t n, float max, double u,
                                 float *picked_logit)
{
    float *w = s->w;
    int sorted = 0;
    assert(l != s->logit);
    if (p->top_k > 0) { /* 6 */
        size_t k = (size_t)p->top_k < n ? (size_t)p->top_k : n;
        greta_select_top(l, id, n, k, s->logit, s->id);
        l = s->logit;
        id = s->id;
        n = k;
        sorted = 1;
    }
    if (p->top_p < 1.0f) { /* 7 */
        if (sorted) {
            n = top_p_sorted(s, l, n, (double)p->top_p, max);
        } else {
            n = top_p_unsorted(s, l, id, n, (double)p->top_p, max);
            l = s->logit;
            id = s->id;
        }
    }
    if (p->min_p > 0.0f) { /* 8: keep p >= min_p * p_max, in order (m <= i) */
        float *out_l = s->logit;
        int32_t *out_id = s->id;
        weights(l, w, n, max, 1.0f);
        size_t m = 0;
        for (size_t i = 0; i < n; i++) {
            if (w[i] >= p->min_p) {
                out_l[m] = l[i];
                out_id[m] = id ? id[i] : (int32_t)i;
                m++;
            }
        }
        l = out_l;
        id = out_id;
        n = m;
    }
    float inv_t = 1.0f / p->temperature;        /* 9 */
    weights(l, w, n, max, inv_t <= FLT_MAX ? inv_t : FLT_MAX);
    size_t pick = draw_index(w, n, s->bsum, u); /* 10 */
    *picked_logit = l[pick];
    return id ? id[pick] : (int32_t)pick;
}

/* ---- entry points ------------------------------------------------------- */

static int bad_logit(const char *what, size_t i, float x, greta_error *err)
{
    return greta_error_set(err, GRETA_ERR_INVALID, "sampler: %s[%zu] is %s", what, i,
                           isnan(x) ? "NaN" : "+inf");
}

int greta_sampler_sample(greta_sampler *s, greta_sampler_state *st, const float *logits,
                         const int32_t *history, size_t n_history, int32_t *token,
                         float *logprob, greta_error *err)
{
    const greta_sampler_params *p = &st->params;
    const size_t n = (size_t)s->vocab;
    int rc = greta_sampler_params_validate(p, s->vocab, err);
    if (rc)
        return rc;
    const size_t n_win = penalty_window(p, n_history);
    const int32_t *win = n_win ? history + (n_history - n_win) : NULL;
    if ((rc = check_history(win, n_win, n_history - n_win, s->vocab, err)))
        return rc;

    /* 1. input check (greedy without bias/penalties: also the argmax) */
    const int mods = p->n_bias > 0 || n_win > 0;
    const int greedy = p->temperature == 0.0f;
    int has_nan;
    size_t arg = 0;
    float max = greedy && !mods ? scan_argmax(logits, n, &has_nan, &arg)
                                : scan_max(logits, n, &has_nan);
    if (has_nan || max == INFINITY) {
        size_t i = find_bad(logits, n);
        return bad_logit("logits", i, logits[i], err);
    }
    /* 2-3. bias and penalties, on a copy */
    const float *l = logits;
    if (mods) {
        memcpy(s->in_l, logits, n * sizeof *s->in_l);
        apply_mods(s, p, s->in_l, win, n_win);
        l = s->in_l;
        max = greedy ? scan_argmax(l, n, &has_nan, &arg) : scan_max(l, n, &has_nan);
        if (max == INFINITY)
            return greta_error_set(err, GRETA_ERR_INVALID,
                                   "sampler: logit of token %zu overflowed to +inf after logit "
                                   "bias and penalties", first_equal(l, n, max));
    }
    /* 4. */
    if (max == -INFINITY)
        return greta_error_set(err, GRETA_ERR_INVALID,
                               "sampler: all %zu logits are -inf%s: no token can be chosen", n,
                               mods ? " after logit bias and penalties" : "");
    double lse = 0.0;
    if (logprob) {
        weights(l, s->w, n, max, 1.0f);
        lse = (double)max + log(wsum(s->w, n));
    }
    int32_t tok;
    float tok_logit;
    if (greedy) { /* 5. the first maximum */
        tok = (int32_t)arg;
        tok_logit = max;
    } else {
        double u = greta_sampler_uniform(p->seed, st->seq_id, st->step);
        tok = sample_candidates(s, p, l, NULL, n, max, u, &tok_logit);
    }
    *token = tok;
    if (logprob) {
        double lp = (double)tok_logit - lse;
        *logprob = (float)(lp > 0.0 ? 0.0 : lp);
    }
    st->step++;
    return GRETA_OK;
}

int greta_sampler_sample_reduced(greta_sampler *s, greta_sampler_state *st,
                                 const int32_t *ids, const float *logits, size_t n, float lse,
                                 int32_t *token, float *logprob, greta_error *err)
{
    const greta_sampler_params *p = &st->params;
    const int32_t vocab = s->vocab;
    int rc = greta_sampler_params_validate(p, vocab, err);
    if (rc)
        return rc;
    if (greta_sampler_needs_full_logits(p))
        return greta_error_set(err, GRETA_ERR_INVALID,
                               "sampler: this request needs the full logits (logit bias, "
                               "penalties, or top-p/min-p sampling without top_k)");
    const size_t need = (size_t)greta_sampler_reduced_count(p, vocab);
    if (n < need || n > (size_t)vocab)
        return greta_error_set(err, GRETA_ERR_INVALID,
                               "sampler: %zu candidates given; this request needs %zu to %d "
                               "(temperature %g, top_k %d)", n, need, (int)vocab,
                               (double)p->temperature, (int)p->top_k);
    float *l = s->in_l;
    int32_t *id = s->in_id;
    uint32_t *mark = s->count;
    size_t i;
    rc = GRETA_OK;
    for (i = 0; i < n; i++) {
        int32_t t = ids[i];
        float x = logits[i];
        if (t < 0 || t >= vocab) {
            rc = greta_error_set(err, GRETA_ERR_INVALID,
                                 "sampler: candidate ids[%zu] = %d is outside the vocabulary "
                                 "[0, %d)", i, (int)t, (int)vocab);
            break;
        }
        if (mark[t]) {
            rc = greta_error_set(err, GRETA_ERR_INVALID,
                                 "sampler: candidate ids[%zu] = %d appears twice", i, (int)t);
            break;
        }
        if (isnan(x) || x == INFINITY) {
            rc = bad_logit("candidate logits", i, x, err);
            break;
        }
        mark[t] = 1;
        id[i] = t;
        l[i] = x;
    }
    for (size_t j = 0; j < i; j++) /* the marks must go back to zero */
        mark[ids[j]] = 0;
    if (rc)
        return rc;
    size_t best = greta_select_best(l, id, n);
    const float max = l[best];
    if (max == -INFINITY)
        return greta_error_set(err, GRETA_ERR_INVALID,
                               "sampler: all %zu candidate logits are -inf: no token can be "
                               "chosen", n);
    if (!isfinite(lse) || lse < max - 1e-3f * fmaxf(1.0f, fabsf(max)))
        return greta_error_set(err, GRETA_ERR_INVALID,
                               "sampler: lse = %g must be finite and >= the largest candidate "
                               "logit %g", (double)lse, (double)max);
    int32_t tok;
    float tok_logit;
    if (p->temperature == 0.0f) {
        tok = id[best];
        tok_logit = max;
    } else {
        double u = greta_sampler_uniform(p->seed, st->seq_id, st->step);
        tok = sample_candidates(s, p, l, id, n, max, u, &tok_logit);
    }
    *token = tok;
    if (logprob) {
        double lp = (double)tok_logit - (double)lse;
        *logprob = (float)(lp > 0.0 ? 0.0 : lp);
    }
    st->step++;
    return GRETA_OK;
}
