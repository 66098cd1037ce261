/* select.c - partial selection by a heap scan or a quickselect; see select.h.
 * Every helper takes an optional weight array w (NULL: none) that moves with
 * the candidates. */
#include "select.h"

#include <string.h>

/* a is better than b: higher logit, then lower id. */
static inline int better(const float *l, const int32_t *id, size_t a, size_t b)
{
    return l[a] > l[b] || (l[a] == l[b] && id[a] < id[b]);
}

static inline void swap_c(float *l, int32_t *id, float *w, size_t a, size_t b)
{
    float tl = l[a];
    l[a] = l[b];
    l[b] = tl;
    int32_t ti = id[a];
    id[a] = id[b];
    id[b] = ti;
    if (w) {
        float tw = w[a];
        w[a] = w[b];
        w[b] = tw;
    }
}

/* Heap over [0, n) with the WORST candidate at the root: each parent is
 * worse than its children. */
static void sift_down(float *l, int32_t *id, float *w, size_t i, size_t n)
{
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= n)
            return;
        if (c + 1 < n && better(l, id, c, c + 1))
            c++; /* the worse child */
        if (!better(l, id, i, c))
            return;
        swap_c(l, id, w, i, c);
        i = c;
    }
}

static void heap_build(float *l, int32_t *id, float *w, size_t n)
{
    for (size_t i = n / 2; i-- > 0;)
        sift_down(l, id, w, i, n);
}

/* Heap of [0, n) -> sorted best first (the worst goes to the end first). */
static void heap_sort(float *l, int32_t *id, float *w, size_t n)
{
    for (size_t end = n; end-- > 1;) {
        swap_c(l, id, w, 0, end);
        sift_down(l, id, w, 0, end);
    }
}

/* hl/hid[0, k) := the k best of l/id[0, n) (id NULL: id = index) as a heap,
 * by scanning the input once. */
static void heap_select(const float *l, const int32_t *id, size_t n, size_t k, float *hl,
                        int32_t *hid)
{
    for (size_t i = 0; i < k; i++) {
        hl[i] = l[i];
        hid[i] = id ? id[i] : (int32_t)i;
    }
    heap_build(hl, hid, NULL, k);
    float th = hl[0]; /* the worst kept: most candidates fail the first test */
    int32_t th_id = hid[0];
    for (size_t j = k; j < n; j++) {
        float x = l[j];
        if (x < th)
            continue;
        int32_t t = id ? id[j] : (int32_t)j;
        if (x == th && t > th_id)
            continue;
        hl[0] = x;
        hid[0] = t;
        sift_down(hl, hid, NULL, 0, k);
        th = hl[0];
        th_id = hid[0];
    }
}

/* Moves the median of a, b, c to position `to`. */
static void median3_to(float *l, int32_t *id, float *w, size_t a, size_t b, size_t c,
                       size_t to)
{
    size_t m;
    if (better(l, id, a, b))
        m = better(l, id, b, c) ? b : (better(l, id, a, c) ? c : a);
    else
        m = better(l, id, a, c) ? a : (better(l, id, b, c) ? c : b);
    if (m != to)
        swap_c(l, id, w, m, to);
}

/* Lomuto partition of [lo, hi) around a median-of-3 pivot. Returns the
 * pivot's final place p: [lo, p) better, (p, hi) worse. *mass (if w) gets
 * the weight of [lo, p), summed in scan order. */
static size_t partition(float *l, int32_t *id, float *w, size_t lo, size_t hi, double *mass)
{
    size_t last = hi - 1;
    median3_to(l, id, w, lo, lo + (hi - lo) / 2, last, last);
    size_t store = lo;
    double m = 0.0;
    for (size_t i = lo; i < last; i++) {
        if (better(l, id, i, last)) {
            if (w)
                m += (double)w[i];
            swap_c(l, id, w, i, store++);
        }
    }
    swap_c(l, id, w, store, last);
    *mass = m;
    return store;
}

static int depth_limit(size_t n)
{
    int depth = 8;
    for (size_t m = n; m > 1; m >>= 1)
        depth += 2;
    return depth;
}

/* Partitions so that [0, k) holds the k best (unsorted). */
static void quick_select(float *l, int32_t *id, size_t n, size_t k)
{
    size_t lo = 0, hi = n;
    int depth = depth_limit(n);
    while (lo < k && k < hi) {
        if (depth-- == 0) { /* bad pivots: finish with a heap sort of the range */
            heap_build(l + lo, id + lo, NULL, hi - lo);
            heap_sort(l + lo, id + lo, NULL, hi - lo);
            return;
        }
        double unused;
        size_t p = partition(l, id, NULL, lo, hi, &unused);
        if (p == k)
            return;
        if (k < p)
            hi = p;
        else
            lo = p + 1;
    }
}

void greta_select_top(const float *l, const int32_t *id, size_t n, size_t k, float *out_l,
                      int32_t *out_id)
{
    if (k > n)
        k = n;
    if (k == 0)
        return;
    if (k <= 1024) {
        heap_select(l, id, n, k, out_l, out_id);
    } else {
        memcpy(out_l, l, n * sizeof *out_l);
        for (size_t i = 0; i < n; i++)
            out_id[i] = id ? id[i] : (int32_t)i;
        quick_select(out_l, out_id, n, k);
        heap_build(out_l, out_id, NULL, k);
    }
    heap_sort(out_l, out_id, NULL, k);
}

size_t greta_select_mass(float *l, int32_t *id, float *w, size_t n, double target)
{
    size_t lo = 0, hi = n;
    double acc = 0.0; /* weight of [0, lo), all better than [lo, hi) */
    int depth = depth_limit(n);
    while (hi - lo > 32 && depth-- > 0) {
        double mass;
        size_t p = partition(l, id, w, lo, hi, &mass);
        if (acc + mass >= target) {
            hi = p; /* the cut is inside the better side */
        } else {
            acc += mass;
            acc += (double)w[p];
            if (acc >= target)
                return p + 1;
            lo = p + 1;
        }
    }
    /* small range (or bad pivots): sort it and walk */
    heap_build(l + lo, id + lo, w + lo, hi - lo);
    heap_sort(l + lo, id + lo, w + lo, hi - lo);
    for (size_t i = lo; i < hi; i++) {
        acc += (double)w[i];
        if (acc >= target)
            return i + 1;
    }
    return hi;
}

size_t greta_select_best(const float *logit, const int32_t *id, size_t n)
{
    size_t best = 0;
    for (size_t i = 1; i < n; i++)
        if (better(logit, id, i, best))
            best = i;
    return best;
}
