/* detmath.h - deterministic exp() and sums for the sampler (internal).
 *
 * libm's expf() may differ by an ulp between library versions, which would
 * let the same seed pick another token on another machine. These use only
 * IEEE float/double +, *, comparisons and bit operations (no FMA: the build
 * passes -ffp-contract=off), so every machine gets the same bits. They are
 * branch-free so that the loops calling them vectorize.
 *
 * Weights are floats (relative error a few 1e-7, plenty for sampling); every
 * sum of weights is taken in double.
 */
#ifndef GRETA_SAMPLER_DETMATH_H
#define GRETA_SAMPLER_DETMATH_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

/* 2^kf for an integral kf in [-126, 0]. */
static inline float greta_det_pow2i(float kf)
{
    float t = kf + 0x1.8p23f; /* kf now sits in the low mantissa bits */
    uint32_t bits;
    memcpy(&bits, &t, sizeof bits);
    bits = (bits + 127u) << 23; /* exponent field = kf + 127 */
    float r;
    memcpy(&r, &bits, sizeof r);
    return r;
}

/* exp(x) for x <= 0 (callers pass logit - max, or that over a temperature;
 * never NaN). Relative error below 3e-7; x < -86 (and -inf) give exactly 0,
 * so no result is subnormal; exp(0) = 1 exactly. */
static inline float greta_det_exp(float x)
{
    const float shift = 0x1.8p23f; /* adding and subtracting it rounds to an integer */
    float xc = x < -86.0f ? -86.0f : x;
    float kf = (xc * 0x1.715476p+0f + shift) - shift; /* round(x / ln2), in [-124, 0] */
    float r = xc - kf * 0x1.62ep-1f;                  /* ln2 high part: kf * it is exact */
    r = r - kf * 0x1.0bfbe8p-15f;                     /* ln2 low part; |r| <= ln2 / 2 */
    float p = 1.0f / 720.0f;                          /* Taylor series to r^6, Horner */
    p = p * r + 1.0f / 120.0f;
    p = p * r + 1.0f / 24.0f;
    p = p * r + 1.0f / 6.0f;
    p = p * r + 0.5f;
    p = p * r + 1.0f;
    p = p * r + 1.0f;
    float v = p * greta_det_pow2i(kf);
    return x < -86.0f ? 0.0f : v;
}

/* Sum of w[0..n) in double, in a fixed order: 8 interleaved partial sums
 * (lane j takes the elements i = j mod 8 of the whole groups of 8), combined
 * pairwise, then the tail in order. */
static inline double greta_det_sum(const float *w, size_t n)
{
    double a[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    size_t i = 0;
    for (; i + 8 <= n; i += 8)
        for (int j = 0; j < 8; j++)
            a[j] += (double)w[i + j];
    double s = ((a[0] + a[1]) + (a[2] + a[3])) + ((a[4] + a[5]) + (a[6] + a[7]));
    for (; i < n; i++)
        s += (double)w[i];
    return s;
}

#endif
