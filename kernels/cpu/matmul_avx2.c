/* matmul_avx2.c - AVX2 + F16C versions of the two matmul steps (matmul.h).
 *
 * Both compute exactly what the reference computes, in the same order:
 *   - dequantization: the fp32 operations of kernels/quant.h's decoders
 *     (int -> float conversions are exact; d1 * q then - m1; (d * sc) * q),
 *     one multiply and one subtract each, never fused;
 *   - dot product: lanes acc[i % 32] as four 8-wide registers (register k
 *     holds lanes 8k..8k+7), multiply then add, the tail in scalar code on the
 *     stored lanes, then the reference's reduction tree.
 * tests/engine/test_matmul.c compares both with the reference bit for bit.
 *
 * The file is compiled for AVX2 through a target pragma and only called
 * after greta_cpu_avx2_available() said the CPU has it.
 */
#include "matmul.h"

#include "kernels/quant.h"
#include "ops.h"

#if defined(__x86_64__) && defined(__GNUC__)
#pragma GCC target("avx2,f16c")
#include <immintrin.h>

int greta_cpu_avx2_available(void)
{
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("f16c");
}

/* 8 bytes at p (unsigned / signed) -> 8 floats. */
static inline __m256 u8x8_to_ps(__m128i v)
{
    return _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(v));
}
static inline __m256 i8x8_to_ps(__m128i v)
{
    return _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(v));
}

/* 32 bytes (u8 values) -> y[0..31] = d * v - m (m may be NULL for d * v). */
static inline void store32_u8(float *y, __m256i v, __m256 d, const __m256 *m)
{
    const __m128i lo = _mm256_castsi256_si128(v);
    const __m128i hi = _mm256_extracti128_si256(v, 1);
    __m256 f[4] = {u8x8_to_ps(lo), u8x8_to_ps(_mm_srli_si128(lo, 8)),
                   u8x8_to_ps(hi), u8x8_to_ps(_mm_srli_si128(hi, 8))};
    for (int k = 0; k < 4; k++) {
        __m256 p = _mm256_mul_ps(d, f[k]);
        if (m)
            p = _mm256_sub_ps(p, *m);
        _mm256_storeu_ps(y + 8 * k, p);
    }
}

static void dequant_q4_0(const block_q4_0 *b, float *y, int64_t nb)
{
    const __m128i mask = _mm_set1_epi8(15);
    const __m256i eight = _mm256_set1_epi32(8);
    for (int64_t i = 0; i < nb; i++, y += QK4_0) {
        const __m256 d = _mm256_set1_ps(greta_fp16_to_f32(b[i].d));
        const __m128i q = _mm_loadu_si128((const __m128i *)(const void *)b[i].qs);
        const __m128i lo = _mm_and_si128(q, mask);
        const __m128i hi = _mm_and_si128(_mm_srli_epi16(q, 4), mask);
        const __m128i parts[4] = {lo, _mm_srli_si128(lo, 8), hi, _mm_srli_si128(hi, 8)};
        for (int k = 0; k < 4; k++) {
            const __m256i v = _mm256_sub_epi32(_mm256_cvtepu8_epi32(parts[k]), eight);
            _mm256_storeu_ps(y + 8 * k, _mm256_mul_ps(_mm256_cvtepi32_ps(v), d));
        }
    }
}

static void dequant_q8_0(const block_q8_0 *b, float *y, int64_t nb)
{
    for (int64_t i = 0; i < nb; i++, y += QK8_0) {
        const __m256 d = _mm256_set1_ps(greta_fp16_to_f32(b[i].d));
        for (int k = 0; k < 4; k++) {
            const __m128i q = _mm_loadl_epi64((const __m128i *)(const void *)(b[i].qs + 8 * k));
            _mm256_storeu_ps(y + 8 * k, _mm256_mul_ps(i8x8_to_ps(q), d));
        }
    }
}

/* Q4_K and Q5_K share the structure; qh is NULL for Q4_K. */
static void dequant_k45(float d_, float dmin_, const uint8_t *scales, const uint8_t *qs,
                        const uint8_t *qh, float *y)
{
    const __m256i mask = _mm256_set1_epi8(15);
    const __m256i sixteen = _mm256_set1_epi8(16);
    const __m256i hbits = qh ? _mm256_loadu_si256((const __m256i *)(const void *)qh) : _mm256_setzero_si256();
    for (int c = 0; c < 4; c++) {
        uint8_t sc, m;
        greta_k_scale_min(2 * c, scales, &sc, &m);
        const __m256 d1 = _mm256_set1_ps(d_ * (float)sc);
        const __m256 m1 = _mm256_set1_ps(dmin_ * (float)m);
        greta_k_scale_min(2 * c + 1, scales, &sc, &m);
        const __m256 d2 = _mm256_set1_ps(d_ * (float)sc);
        const __m256 m2 = _mm256_set1_ps(dmin_ * (float)m);
        const __m256i q = _mm256_loadu_si256((const __m256i *)(const void *)(qs + 32 * c));
        __m256i lo = _mm256_and_si256(q, mask);
        __m256i hi = _mm256_and_si256(_mm256_srli_epi16(q, 4), mask);
        if (qh) {
            const __m256i u1 = _mm256_set1_epi8((char)(1u << (2 * c)));
            const __m256i u2 = _mm256_set1_epi8((char)(2u << (2 * c)));
            const __m256i b1 = _mm256_cmpeq_epi8(_mm256_and_si256(hbits, u1), u1);
            const __m256i b2 = _mm256_cmpeq_epi8(_mm256_and_si256(hbits, u2), u2);
            lo = _mm256_add_epi8(lo, _mm256_and_si256(b1, sixteen));
            hi = _mm256_add_epi8(hi, _mm256_and_si256(b2, sixteen));
        }
        store32_u8(y + 64 * c, lo, d1, &m1);
        store32_u8(y + 64 * c + 32, hi, d2, &m2);
    }
}

static void dequant_q6_K(const block_q6_K *b, float *y, int64_t nb)
{
    const __m256i m4 = _mm256_set1_epi8(15);
    const __m256i m3 = _mm256_set1_epi8(3);
    const __m256i m30 = _mm256_set1_epi8(0x30);
    const __m256i m0c = _mm256_set1_epi8(0x0c);
    const __m256i off = _mm256_set1_epi8(32);
    for (int64_t i = 0; i < nb; i++, y += QK_K) {
        const float d = greta_fp16_to_f32(b[i].d);
        for (int h = 0; h < 2; h++) {
            const uint8_t *ql = b[i].ql + 64 * h;
            const __m256i l0 = _mm256_loadu_si256((const __m256i *)(const void *)ql);
            const __m256i l1 = _mm256_loadu_si256((const __m256i *)(const void *)(ql + 32));
            const __m256i qh = _mm256_loadu_si256((const __m256i *)(const void *)(b[i].qh + 32 * h));
            const int8_t *sc = b[i].scales + 8 * h;
            __m256i q[4];
            q[0] = _mm256_or_si256(_mm256_and_si256(l0, m4), _mm256_slli_epi16(_mm256_and_si256(qh, m3), 4));
            q[1] = _mm256_or_si256(_mm256_and_si256(l1, m4), _mm256_slli_epi16(_mm256_and_si256(qh, m0c), 2));
            q[2] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l0, 4), m4), _mm256_and_si256(qh, m30));
            q[3] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l1, 4), m4),
                                   _mm256_and_si256(_mm256_srli_epi16(qh, 2), m30));
            for (int g = 0; g < 4; g++) {
                const __m256i v = _mm256_sub_epi8(q[g], off); /* -32..31 */
                const __m128i lo = _mm256_castsi256_si128(v);
                const __m128i hi = _mm256_extracti128_si256(v, 1);
                const __m256 s0 = _mm256_set1_ps(d * (float)sc[0 + 2 * g]);
                const __m256 s1 = _mm256_set1_ps(d * (float)sc[1 + 2 * g]);
                float *yg = y + 128 * h + 32 * g;
                _mm256_storeu_ps(yg + 0, _mm256_mul_ps(s0, i8x8_to_ps(lo)));
                _mm256_storeu_ps(yg + 8, _mm256_mul_ps(s0, i8x8_to_ps(_mm_srli_si128(lo, 8))));
                _mm256_storeu_ps(yg + 16, _mm256_mul_ps(s1, i8x8_to_ps(hi)));
                _mm256_storeu_ps(yg + 24, _mm256_mul_ps(s1, i8x8_to_ps(_mm_srli_si128(hi, 8))));
            }
        }
    }
}

void greta_cpu_avx2_dequant_row(uint32_t type, const void *row, float *y, int64_t n)
{
    const uint8_t *p = row;
    switch (type) {
    case GGML_TYPE_F16: {
        int64_t i = 0;
        for (; i + 8 <= n; i += 8)
            _mm256_storeu_ps(y + i, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(const void *)(p + 2 * i))));
        if (i < n)
            greta_dequant_row(type, p + 2 * i, y + i, n - i);
        return;
    }
    case GGML_TYPE_BF16: {
        int64_t i = 0;
        for (; i + 8 <= n; i += 8) {
            const __m256i v = _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)(const void *)(p + 2 * i)));
            _mm256_storeu_ps(y + i, _mm256_castsi256_ps(_mm256_slli_epi32(v, 16)));
        }
        if (i < n)
            greta_dequant_row(type, p + 2 * i, y + i, n - i);
        return;
    }
    case GGML_TYPE_Q4_0:
        dequant_q4_0(row, y, n / QK4_0);
        return;
    case GGML_TYPE_Q8_0:
        dequant_q8_0(row, y, n / QK8_0);
        return;
    case GGML_TYPE_Q4_K: {
        const block_q4_K *b = row;
        for (int64_t i = 0; i < n / QK_K; i++)
            dequant_k45(greta_fp16_to_f32(b[i].d), greta_fp16_to_f32(b[i].dmin), b[i].scales,
                        b[i].qs, NULL, y + i * QK_K);
        return;
    }
    case GGML_TYPE_Q5_K: {
        const block_q5_K *b = row;
        for (int64_t i = 0; i < n / QK_K; i++)
            dequant_k45(greta_fp16_to_f32(b[i].d), greta_fp16_to_f32(b[i].dmin), b[i].scales,
                        b[i].qs, b[i].qh, y + i * QK_K);
        return;
    }
    case GGML_TYPE_Q6_K:
        dequant_q6_K(row, y, n / QK_K);
        return;
    default: /* F32 and anything the reference decodes */
        greta_dequant_row(type, row, y, n);
        return;
    }
}

/* ---- fused dequantize + dot (one row, one token) -----------------------------
 * The same values and the same order as dequantizing the row and then taking
 * the canonical dot product: element i of the row is multiplied with x[i]
 * and added to lane i % 32, that is to register (i % 32) / 8, and each lane
 * receives its elements in increasing order. Nothing is stored in between. */

typedef struct lanes4 {
    __m256 a[4]; /* a[k] holds lanes 8k..8k+7 */
} lanes4;

static inline void lanes_add(lanes4 *acc, int k, __m256 w, const float *x)
{
    acc->a[k] = _mm256_add_ps(acc->a[k], _mm256_mul_ps(w, _mm256_loadu_ps(x)));
}

static inline __m256i u8x8_epi32(const uint8_t *p)
{
    return _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)(const void *)p));
}

static void fused_k45(const uint8_t *row, int q5, const float *x, int64_t nb, lanes4 *out)
{
    lanes4 a = *out, *acc = &a; /* in registers */
    const __m256i m15 = _mm256_set1_epi32(15), one = _mm256_set1_epi32(1);
    const size_t bytes = q5 ? sizeof(block_q5_K) : sizeof(block_q4_K);
    for (int64_t b = 0; b < nb; b++, x += QK_K) {
        const uint8_t *blk = row + (size_t)b * bytes;
        const block_q4_K *b4 = (const block_q4_K *)(const void *)blk;
        const block_q5_K *b5 = (const block_q5_K *)(const void *)blk;
        const float d = greta_fp16_to_f32(q5 ? b5->d : b4->d);
        const float dmin = greta_fp16_to_f32(q5 ? b5->dmin : b4->dmin);
        const uint8_t *scales = q5 ? b5->scales : b4->scales;
        const uint8_t *qs = q5 ? b5->qs : b4->qs;
        for (int c = 0; c < 4; c++) {
            uint8_t sc, m;
            greta_k_scale_min(2 * c, scales, &sc, &m);
            const __m256 d1 = _mm256_set1_ps(d * (float)sc), m1 = _mm256_set1_ps(dmin * (float)m);
            greta_k_scale_min(2 * c + 1, scales, &sc, &m);
            const __m256 d2 = _mm256_set1_ps(d * (float)sc), m2 = _mm256_set1_ps(dmin * (float)m);
#pragma GCC unroll 4
            for (int j = 0; j < 4; j++) {
                const __m256i v = u8x8_epi32(qs + 32 * c + 8 * j);
                __m256i lo = _mm256_and_si256(v, m15);
                __m256i hi = _mm256_srli_epi32(v, 4);
                if (q5) {
                    const __m256i h = u8x8_epi32(b5->qh + 8 * j);
                    lo = _mm256_add_epi32(lo, _mm256_slli_epi32(_mm256_and_si256(_mm256_srli_epi32(h, 2 * c), one), 4));
                    hi = _mm256_add_epi32(hi, _mm256_slli_epi32(_mm256_and_si256(_mm256_srli_epi32(h, 2 * c + 1), one), 4));
                }
                const __m256 wl = _mm256_sub_ps(_mm256_mul_ps(d1, _mm256_cvtepi32_ps(lo)), m1);
                const __m256 wh = _mm256_sub_ps(_mm256_mul_ps(d2, _mm256_cvtepi32_ps(hi)), m2);
                lanes_add(acc, j, wl, x + 64 * c + 8 * j);
                lanes_add(acc, j, wh, x + 64 * c + 32 + 8 * j);
            }
        }
    }
    *out = a;
}

static void fused_q6_K(const block_q6_K *blk, const float *x, int64_t nb, lanes4 *out)
{
    lanes4 a = *out, *acc = &a; /* in registers */
    const __m256i m15 = _mm256_set1_epi32(15), m3 = _mm256_set1_epi32(3), off = _mm256_set1_epi32(32);
    for (int64_t b = 0; b < nb; b++, x += QK_K) {
        const float d = greta_fp16_to_f32(blk[b].d);
        for (int h = 0; h < 2; h++) {
            const uint8_t *ql = blk[b].ql + 64 * h, *qh = blk[b].qh + 32 * h;
            const int8_t *sc = blk[b].scales + 8 * h;
            const float *xh = x + 128 * h;
#pragma GCC unroll 4
            for (int j = 0; j < 4; j++) {
                const int s = j / 2; /* l / 16 for l in 8j..8j+7 */
                const __m256i l0 = u8x8_epi32(ql + 8 * j), l1 = u8x8_epi32(ql + 32 + 8 * j);
                const __m256i hb = u8x8_epi32(qh + 8 * j);
                const __m256i q[4] = {
                    _mm256_or_si256(_mm256_and_si256(l0, m15), _mm256_slli_epi32(_mm256_and_si256(hb, m3), 4)),
                    _mm256_or_si256(_mm256_and_si256(l1, m15),
                                    _mm256_slli_epi32(_mm256_and_si256(_mm256_srli_epi32(hb, 2), m3), 4)),
                    _mm256_or_si256(_mm256_srli_epi32(l0, 4),
                                    _mm256_slli_epi32(_mm256_and_si256(_mm256_srli_epi32(hb, 4), m3), 4)),
                    _mm256_or_si256(_mm256_srli_epi32(l1, 4), _mm256_slli_epi32(_mm256_srli_epi32(hb, 6), 4)),
                };
#pragma GCC unroll 4
                for (int g = 0; g < 4; g++) {
                    const __m256 scale = _mm256_set1_ps(d * (float)sc[s + 2 * g]);
                    const __m256 w = _mm256_mul_ps(scale, _mm256_cvtepi32_ps(_mm256_sub_epi32(q[g], off)));
                    lanes_add(acc, j, w, xh + 32 * g + 8 * j);
                }
            }
        }
    }
    *out = a;
}

static void fused_q8_0(const block_q8_0 *blk, const float *x, int64_t nb, lanes4 *out)
{
    lanes4 a = *out, *acc = &a; /* in registers */
    for (int64_t b = 0; b < nb; b++, x += QK8_0) {
        const __m256 d = _mm256_set1_ps(greta_fp16_to_f32(blk[b].d));
#pragma GCC unroll 4
        for (int k = 0; k < 4; k++) {
            const __m128i q = _mm_loadl_epi64((const __m128i *)(const void *)(blk[b].qs + 8 * k));
            lanes_add(acc, k, _mm256_mul_ps(i8x8_to_ps(q), d), x + 8 * k);
        }
    }
    *out = a;
}

static void fused_q4_0(const block_q4_0 *blk, const float *x, int64_t nb, lanes4 *out)
{
    lanes4 a = *out, *acc = &a; /* in registers */
    const __m256i m15 = _mm256_set1_epi32(15), eight = _mm256_set1_epi32(8);
    for (int64_t b = 0; b < nb; b++, x += QK4_0) {
        const __m256 d = _mm256_set1_ps(greta_fp16_to_f32(blk[b].d));
#pragma GCC unroll 2
        for (int k = 0; k < 2; k++) {
            const __m256i v = u8x8_epi32(blk[b].qs + 8 * k);
            const __m256i lo = _mm256_sub_epi32(_mm256_and_si256(v, m15), eight);
            const __m256i hi = _mm256_sub_epi32(_mm256_srli_epi32(v, 4), eight);
            lanes_add(acc, k, _mm256_mul_ps(_mm256_cvtepi32_ps(lo), d), x + 8 * k);
            lanes_add(acc, 2 + k, _mm256_mul_ps(_mm256_cvtepi32_ps(hi), d), x + 16 + 8 * k);
        }
    }
    *out = a;
}

/* F16 / BF16 / F32: whole groups of 32, then the tail on the stored lanes. */
static int64_t fused_float(uint32_t type, const uint8_t *row, const float *x, int64_t n, lanes4 *acc)
{
    int64_t i = 0;
    for (; i + GRETA_DOT_LANES <= n; i += GRETA_DOT_LANES)
        for (int k = 0; k < 4; k++) {
            const int64_t e = i + 8 * k;
            __m256 w;
            if (type == GGML_TYPE_F16) {
                w = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(const void *)(row + 2 * e)));
            } else if (type == GGML_TYPE_BF16) {
                const __m256i v = _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)(const void *)(row + 2 * e)));
                w = _mm256_castsi256_ps(_mm256_slli_epi32(v, 16));
            } else {
                w = _mm256_loadu_ps((const float *)(const void *)(row + 4 * e));
            }
            lanes_add(acc, k, w, x + e);
        }
    return i;
}

float greta_cpu_avx2_dot_row(uint32_t type, const void *row, const float *x, int64_t n)
{
    lanes4 acc = {{_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps()}};
    int64_t done = n;
    switch (type) {
    case GGML_TYPE_Q4_K: fused_k45(row, 0, x, n / QK_K, &acc); break;
    case GGML_TYPE_Q5_K: fused_k45(row, 1, x, n / QK_K, &acc); break;
    case GGML_TYPE_Q6_K: fused_q6_K(row, x, n / QK_K, &acc); break;
    case GGML_TYPE_Q8_0: fused_q8_0(row, x, n / QK8_0, &acc); break;
    case GGML_TYPE_Q4_0: fused_q4_0(row, x, n / QK4_0, &acc); break;
    default: done = fused_float(type, row, x, n, &acc); break;
    }
    float lanes[GRETA_DOT_LANES];
    for (int k = 0; k < 4; k++)
        _mm256_storeu_ps(lanes + 8 * k, acc.a[k]);
    if (done < n) { /* float types: the tail, lane (i % 32) as always */
        float tail[GRETA_DOT_LANES];
        greta_dequant_row(type, (const uint8_t *)row + ggml_row_bytes(type, (uint64_t)done), tail, n - done);
        greta_cpu_dot_accum(lanes, tail, x + done, n - done);
    }
    return greta_cpu_dot_reduce(lanes);
}

float greta_cpu_avx2_dot(const float *a, const float *b, int64_t n)
{
    __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
    __m256 acc2 = _mm256_setzero_ps(), acc3 = _mm256_setzero_ps();
    int64_t i = 0;
    for (; i + GRETA_DOT_LANES <= n; i += GRETA_DOT_LANES) {
        acc0 = _mm256_add_ps(acc0, _mm256_mul_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i)));
        acc1 = _mm256_add_ps(acc1, _mm256_mul_ps(_mm256_loadu_ps(a + i + 8), _mm256_loadu_ps(b + i + 8)));
        acc2 = _mm256_add_ps(acc2, _mm256_mul_ps(_mm256_loadu_ps(a + i + 16), _mm256_loadu_ps(b + i + 16)));
        acc3 = _mm256_add_ps(acc3, _mm256_mul_ps(_mm256_loadu_ps(a + i + 24), _mm256_loadu_ps(b + i + 24)));
    }
    float acc[GRETA_DOT_LANES];
    _mm256_storeu_ps(acc + 0, acc0);
    _mm256_storeu_ps(acc + 8, acc1);
    _mm256_storeu_ps(acc + 16, acc2);
    _mm256_storeu_ps(acc + 24, acc3);
    /* the tail starts at a multiple of 32, so lane i % 32 is (i - start) % 32 */
    greta_cpu_dot_accum(acc, a + i, b + i, n - i);
    return greta_cpu_dot_reduce(acc);
}

/* Two canonical dot products that share a: out[t] = dot(a, b_t). Each is
 * computed exactly as greta_cpu_avx2_dot computes it; sharing the loads of a
 * only saves memory traffic (prefill, where one row meets many tokens). */
void greta_cpu_avx2_dot2(const float *a, const float *b0, const float *b1, int64_t n, float out[2])
{
    __m256 p0 = _mm256_setzero_ps(), p1 = _mm256_setzero_ps(), p2 = _mm256_setzero_ps(), p3 = _mm256_setzero_ps();
    __m256 q0 = _mm256_setzero_ps(), q1 = _mm256_setzero_ps(), q2 = _mm256_setzero_ps(), q3 = _mm256_setzero_ps();
    int64_t i = 0;
    for (; i + GRETA_DOT_LANES <= n; i += GRETA_DOT_LANES) {
        const __m256 a0 = _mm256_loadu_ps(a + i), a1 = _mm256_loadu_ps(a + i + 8);
        const __m256 a2 = _mm256_loadu_ps(a + i + 16), a3 = _mm256_loadu_ps(a + i + 24);
        p0 = _mm256_add_ps(p0, _mm256_mul_ps(a0, _mm256_loadu_ps(b0 + i)));
        q0 = _mm256_add_ps(q0, _mm256_mul_ps(a0, _mm256_loadu_ps(b1 + i)));
        p1 = _mm256_add_ps(p1, _mm256_mul_ps(a1, _mm256_loadu_ps(b0 + i + 8)));
        q1 = _mm256_add_ps(q1, _mm256_mul_ps(a1, _mm256_loadu_ps(b1 + i + 8)));
        p2 = _mm256_add_ps(p2, _mm256_mul_ps(a2, _mm256_loadu_ps(b0 + i + 16)));
        q2 = _mm256_add_ps(q2, _mm256_mul_ps(a2, _mm256_loadu_ps(b1 + i + 16)));
        p3 = _mm256_add_ps(p3, _mm256_mul_ps(a3, _mm256_loadu_ps(b0 + i + 24)));
        q3 = _mm256_add_ps(q3, _mm256_mul_ps(a3, _mm256_loadu_ps(b1 + i + 24)));
    }
    float la[GRETA_DOT_LANES], lb[GRETA_DOT_LANES];
    _mm256_storeu_ps(la + 0, p0);
    _mm256_storeu_ps(la + 8, p1);
    _mm256_storeu_ps(la + 16, p2);
    _mm256_storeu_ps(la + 24, p3);
    _mm256_storeu_ps(lb + 0, q0);
    _mm256_storeu_ps(lb + 8, q1);
    _mm256_storeu_ps(lb + 16, q2);
    _mm256_storeu_ps(lb + 24, q3);
    greta_cpu_dot_accum(la, a + i, b0 + i, n - i);
    greta_cpu_dot_accum(lb, a + i, b1 + i, n - i);
    out[0] = greta_cpu_dot_reduce(la);
    out[1] = greta_cpu_dot_reduce(lb);
}

#else /* not x86-64 GCC/Clang: no AVX2 path */

int greta_cpu_avx2_available(void)
{
    return 0;
}

void greta_cpu_avx2_dequant_row(uint32_t type, const void *row, float *y, int64_t n)
{
    greta_dequant_row(type, row, y, n);
}

float greta_cpu_avx2_dot(const float *a, const float *b, int64_t n)
{
    return greta_cpu_dot(a, b, n);
}

void greta_cpu_avx2_dot2(const float *a, const float *b0, const float *b1, int64_t n, float out[2])
{
    out[0] = greta_cpu_dot(a, b0, n);
    out[1] = greta_cpu_dot(a, b1, n);
}

float greta_cpu_avx2_dot_row(uint32_t type, const void *row, const float *x, int64_t n)
{
    float w[GRETA_DOT_LANES * 8], acc[GRETA_DOT_LANES] = {0};
    for (int64_t i = 0; i < n; i += GRETA_DOT_LANES * 8) {
        const int64_t k = n - i < GRETA_DOT_LANES * 8 ? n - i : GRETA_DOT_LANES * 8;
        greta_dequant_row(type, (const uint8_t *)row + ggml_row_bytes(type, (uint64_t)i), w, k);
        greta_cpu_dot_accum(acc, w, x + i, k);
    }
    return greta_cpu_dot_reduce(acc);
}

#endif
