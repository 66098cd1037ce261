/* quant.h - GGUF tensor types and quant blocks, defined once.
 *
 * Compiles as C11, as CUDA and as HIP. Every block has a static assert on its
 * size, and each type has one decode helper used by every consumer (the CPU
 * reference, the quantizers' tests and the GPU kernels). The formats are those
 * of ../shared/docs/FORMATS.md; the reference values are fp32 products in the
 * written order, so the CPU build compiles this with -ffp-contract=off to stay
 * bit-exact with ggml's reference dequantizer.
 */
#ifndef GRETA_QUANT_H
#define GRETA_QUANT_H

#include <stdint.h>
#include <string.h>

#if defined(__CUDACC__) || defined(__HIPCC__) || defined(__HIP__)
#define GRETA_HD __host__ __device__ inline
#else
#define GRETA_HD static inline
#endif

#ifdef __cplusplus
#define GRETA_STATIC_ASSERT(c, m) static_assert(c, m)
#else
#define GRETA_STATIC_ASSERT(c, m) _Static_assert(c, m)
#endif

/* ggml type ids as stored in GGUF tensor infos. */
typedef enum ggml_type {
    GGML_TYPE_F32 = 0,
    GGML_TYPE_F16 = 1,
    GGML_TYPE_Q4_0 = 2,
    GGML_TYPE_Q4_1 = 3,
    GGML_TYPE_Q5_0 = 6,
    GGML_TYPE_Q5_1 = 7,
    GGML_TYPE_Q8_0 = 8,
    GGML_TYPE_Q8_1 = 9,
    GGML_TYPE_Q2_K = 10,
    GGML_TYPE_Q3_K = 11,
    GGML_TYPE_Q4_K = 12,
    GGML_TYPE_Q5_K = 13,
    GGML_TYPE_Q6_K = 14,
    GGML_TYPE_Q8_K = 15,
    GGML_TYPE_BF16 = 30,
    GGML_TYPE_COUNT = 40 /* ids at or above this are rejected by the reader */
} ggml_type;

#define QK4_0 32
#define QK8_0 32
#define QK_K 256
#define K_SCALE_SIZE 12

typedef uint16_t greta_fp16; /* IEEE half, raw bits */
typedef uint16_t greta_bf16; /* top 16 bits of an fp32 */

/* Q4_0: element j<16 = ((qs[j] & 15) - 8) * d, element j+16 = ((qs[j] >> 4) - 8) * d */
typedef struct block_q4_0 {
    greta_fp16 d;
    uint8_t qs[QK4_0 / 2];
} block_q4_0;
GRETA_STATIC_ASSERT(sizeof(block_q4_0) == 18, "block_q4_0 size");

/* Q8_0: qs[j] * d */
typedef struct block_q8_0 {
    greta_fp16 d;
    int8_t qs[QK8_0];
} block_q8_0;
GRETA_STATIC_ASSERT(sizeof(block_q8_0) == 34, "block_q8_0 size");

/* Q4_K: 8 sub-blocks of 32 with 6-bit scales and mins (see FORMATS.md) */
typedef struct block_q4_K {
    greta_fp16 d;
    greta_fp16 dmin;
    uint8_t scales[K_SCALE_SIZE];
    uint8_t qs[QK_K / 2];
} block_q4_K;
GRETA_STATIC_ASSERT(sizeof(block_q4_K) == 144, "block_q4_K size");

/* Q5_K: as Q4_K plus a fifth bit per element in qh */
typedef struct block_q5_K {
    greta_fp16 d;
    greta_fp16 dmin;
    uint8_t scales[K_SCALE_SIZE];
    uint8_t qh[QK_K / 8];
    uint8_t qs[QK_K / 2];
} block_q5_K;
GRETA_STATIC_ASSERT(sizeof(block_q5_K) == 176, "block_q5_K size");

/* Q6_K: 16 sub-blocks of 16 with int8 scales; d is last */
typedef struct block_q6_K {
    uint8_t ql[QK_K / 2];
    uint8_t qh[QK_K / 4];
    int8_t scales[QK_K / 16];
    greta_fp16 d;
} block_q6_K;
GRETA_STATIC_ASSERT(sizeof(block_q6_K) == 210, "block_q6_K size");

/* Q8_K: activation format (never in files) */
typedef struct block_q8_K {
    float d;
    int8_t qs[QK_K];
    int16_t bsums[QK_K / 16];
} block_q8_K;
GRETA_STATIC_ASSERT(sizeof(block_q8_K) == 292, "block_q8_K size");

/* ---- type traits ---------------------------------------------------------- */

/* Elements per block; 0 for a type this project does not support. */
GRETA_HD uint32_t ggml_type_block_elems(uint32_t t)
{
    switch (t) {
    case GGML_TYPE_F32: case GGML_TYPE_F16: case GGML_TYPE_BF16: return 1;
    case GGML_TYPE_Q4_0: return QK4_0;
    case GGML_TYPE_Q8_0: return QK8_0;
    case GGML_TYPE_Q4_K: case GGML_TYPE_Q5_K: case GGML_TYPE_Q6_K: case GGML_TYPE_Q8_K: return QK_K;
    default: return 0;
    }
}

/* Bytes per block; 0 for an unsupported type. */
GRETA_HD uint32_t ggml_type_block_bytes(uint32_t t)
{
    switch (t) {
    case GGML_TYPE_F32: return 4;
    case GGML_TYPE_F16: return 2;
    case GGML_TYPE_BF16: return 2;
    case GGML_TYPE_Q4_0: return sizeof(block_q4_0);
    case GGML_TYPE_Q8_0: return sizeof(block_q8_0);
    case GGML_TYPE_Q4_K: return sizeof(block_q4_K);
    case GGML_TYPE_Q5_K: return sizeof(block_q5_K);
    case GGML_TYPE_Q6_K: return sizeof(block_q6_K);
    case GGML_TYPE_Q8_K: return sizeof(block_q8_K);
    default: return 0;
    }
}

/* Name as ggml prints it ("Q4_K"); "?" for ids it does not know. Host only. */
static inline const char *ggml_type_name(uint32_t t)
{
    switch (t) {
    case GGML_TYPE_F32: return "F32";
    case GGML_TYPE_F16: return "F16";
    case GGML_TYPE_Q4_0: return "Q4_0";
    case GGML_TYPE_Q4_1: return "Q4_1";
    case GGML_TYPE_Q5_0: return "Q5_0";
    case GGML_TYPE_Q5_1: return "Q5_1";
    case GGML_TYPE_Q8_0: return "Q8_0";
    case GGML_TYPE_Q8_1: return "Q8_1";
    case GGML_TYPE_Q2_K: return "Q2_K";
    case GGML_TYPE_Q3_K: return "Q3_K";
    case GGML_TYPE_Q4_K: return "Q4_K";
    case GGML_TYPE_Q5_K: return "Q5_K";
    case GGML_TYPE_Q6_K: return "Q6_K";
    case GGML_TYPE_Q8_K: return "Q8_K";
    case GGML_TYPE_BF16: return "BF16";
    default: return "?";
    }
}

/* Types a model tensor may have in this project (Q8_K is activation-only). */
GRETA_HD int ggml_type_supported(uint32_t t)
{
    return ggml_type_block_elems(t) != 0 && t != GGML_TYPE_Q8_K;
}

/* ---- scalar conversions ----------------------------------------------------- */

GRETA_HD float greta_bits_to_f32(uint32_t u)
{
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

GRETA_HD uint32_t greta_f32_to_bits(float f)
{
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    return u;
}

/* Exact fp16 -> fp32, subnormals, infinities and NaN included. */
GRETA_HD float greta_fp16_to_f32(greta_fp16 h)
{
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    uint32_t exp = (h >> 10) & 0x1fu;
    uint32_t man = h & 0x3ffu;
    uint32_t bits;
    if (exp == 0x1f) {
        bits = sign | 0x7f800000u | (man << 13);
    } else if (exp != 0) {
        bits = sign | ((exp + 112u) << 23) | (man << 13);
    } else if (man == 0) {
        bits = sign;
    } else {
        /* subnormal: normalize */
        int e = -1;
        do {
            man <<= 1;
            e++;
        } while ((man & 0x400u) == 0);
        bits = sign | ((uint32_t)(112 - e) << 23) | ((man & 0x3ffu) << 13);
    }
    return greta_bits_to_f32(bits);
}

/* fp32 -> fp16, round to nearest even (what ggml's converters do). */
GRETA_HD greta_fp16 greta_f32_to_fp16(float f)
{
    uint32_t x = greta_f32_to_bits(f);
    uint32_t sign = (x >> 16) & 0x8000u;
    uint32_t absx = x & 0x7fffffffu;
    if (absx > 0x7f800000u) /* NaN: keep it quiet */
        return (greta_fp16)(sign | 0x7e00u | ((absx >> 13) & 0x3ffu));
    if (absx >= 0x47800000u) /* >= 65536 rounds to inf, or is inf */
        return (greta_fp16)(sign | 0x7c00u);
    if (absx < 0x38800000u) { /* below the smallest normal half: subnormal or zero */
        if (absx < 0x33000000u) /* < 2^-25 rounds to zero */
            return (greta_fp16)sign;
        uint32_t e = absx >> 23;
        uint32_t m = (absx & 0x7fffffu) | 0x800000u;
        uint32_t shift = 126u - e; /* 14 + (113 - e) - 1 */
        uint32_t half_m = m >> shift;
        uint32_t rem = m & ((1u << shift) - 1u);
        uint32_t halfway = 1u << (shift - 1u);
        if (rem > halfway || (rem == halfway && (half_m & 1u)))
            half_m++;
        return (greta_fp16)(sign | half_m);
    }
    uint32_t base = absx - 0x38000000u; /* rebias exponent 127 -> 15 */
    uint32_t h = base >> 13;
    uint32_t rem = base & 0x1fffu;
    if (rem > 0x1000u || (rem == 0x1000u && (h & 1u)))
        h++;
    return (greta_fp16)(sign | h);
}

GRETA_HD float greta_bf16_to_f32(greta_bf16 b)
{
    return greta_bits_to_f32((uint32_t)b << 16);
}

/* fp32 -> bf16, round to nearest even; NaN stays NaN. */
GRETA_HD greta_bf16 greta_f32_to_bf16(float f)
{
    uint32_t x = greta_f32_to_bits(f);
    if ((x & 0x7fffffffu) > 0x7f800000u)
        return (greta_bf16)((x >> 16) | 0x40u);
    return (greta_bf16)((x + 0x7fffu + ((x >> 16) & 1u)) >> 16);
}

/* ---- decode helpers ----------------------------------------------------------- */

/* The 6-bit scale/min pair j (0..7) of a Q4_K or Q5_K block. */
GRETA_HD void greta_k_scale_min(int j, const uint8_t *scales, uint8_t *sc, uint8_t *m)
{
    if (j < 4) {
        *sc = scales[j] & 63;
        *m = scales[j + 4] & 63;
    } else {
        *sc = (uint8_t)((scales[j + 4] & 15) | ((scales[j - 4] >> 6) << 4));
        *m = (uint8_t)((scales[j + 4] >> 4) | ((scales[j] >> 6) << 4));
    }
}

GRETA_HD void greta_dequant_block_q4_0(const block_q4_0 *b, float *y)
{
    const float d = greta_fp16_to_f32(b->d);
    for (int j = 0; j < QK4_0 / 2; j++) {
        const int x0 = (b->qs[j] & 15) - 8;
        const int x1 = (b->qs[j] >> 4) - 8;
        y[j] = (float)x0 * d;
        y[j + QK4_0 / 2] = (float)x1 * d;
    }
}

GRETA_HD void greta_dequant_block_q8_0(const block_q8_0 *b, float *y)
{
    const float d = greta_fp16_to_f32(b->d);
    for (int j = 0; j < QK8_0; j++)
        y[j] = (float)b->qs[j] * d;
}

GRETA_HD void greta_dequant_block_q4_K(const block_q4_K *b, float *y)
{
    const float d = greta_fp16_to_f32(b->d);
    const float dmin = greta_fp16_to_f32(b->dmin);
    const uint8_t *q = b->qs;
    for (int c = 0; c < 4; c++) {
        uint8_t sc, m;
        greta_k_scale_min(2 * c, b->scales, &sc, &m);
        const float d1 = d * (float)sc;
        const float m1 = dmin * (float)m;
        greta_k_scale_min(2 * c + 1, b->scales, &sc, &m);
        const float d2 = d * (float)sc;
        const float m2 = dmin * (float)m;
        for (int l = 0; l < 32; l++) {
            const float p = d1 * (float)(q[l] & 15);
            y[64 * c + l] = p - m1;
        }
        for (int l = 0; l < 32; l++) {
            const float p = d2 * (float)(q[l] >> 4);
            y[64 * c + 32 + l] = p - m2;
        }
        q += 32;
    }
}

GRETA_HD void greta_dequant_block_q5_K(const block_q5_K *b, float *y)
{
    const float d = greta_fp16_to_f32(b->d);
    const float dmin = greta_fp16_to_f32(b->dmin);
    const uint8_t *q = b->qs;
    for (int c = 0; c < 4; c++) {
        uint8_t sc, m;
        greta_k_scale_min(2 * c, b->scales, &sc, &m);
        const float d1 = d * (float)sc;
        const float m1 = dmin * (float)m;
        greta_k_scale_min(2 * c + 1, b->scales, &sc, &m);
        const float d2 = d * (float)sc;
        const float m2 = dmin * (float)m;
        const uint8_t u1 = (uint8_t)(1u << (2 * c));
        const uint8_t u2 = (uint8_t)(2u << (2 * c));
        for (int l = 0; l < 32; l++) {
            const int v = (q[l] & 15) + ((b->qh[l] & u1) ? 16 : 0);
            const float p = d1 * (float)v;
            y[64 * c + l] = p - m1;
        }
        for (int l = 0; l < 32; l++) {
            const int v = (q[l] >> 4) + ((b->qh[l] & u2) ? 16 : 0);
            const float p = d2 * (float)v;
            y[64 * c + 32 + l] = p - m2;
        }
        q += 32;
    }
}

GRETA_HD void greta_dequant_block_q6_K(const block_q6_K *b, float *y)
{
    const float d = greta_fp16_to_f32(b->d);
    for (int h = 0; h < 2; h++) {
        const uint8_t *ql = b->ql + 64 * h;
        const uint8_t *qh = b->qh + 32 * h;
        const int8_t *sc = b->scales + 8 * h;
        float *yh = y + 128 * h;
        for (int l = 0; l < 32; l++) {
            const int s = l / 16;
            const int q1 = ((ql[l] & 15) | (((qh[l] >> 0) & 3) << 4)) - 32;
            const int q2 = ((ql[l + 32] & 15) | (((qh[l] >> 2) & 3) << 4)) - 32;
            const int q3 = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32;
            const int q4 = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32;
            yh[l] = (d * (float)sc[s + 0]) * (float)q1;
            yh[l + 32] = (d * (float)sc[s + 2]) * (float)q2;
            yh[l + 64] = (d * (float)sc[s + 4]) * (float)q3;
            yh[l + 96] = (d * (float)sc[s + 6]) * (float)q4;
        }
    }
}

/* Dequantizes n elements (a multiple of the type's block size) starting at a
 * block boundary of row data `x`. Returns 0, or -1 for an unsupported type. */
GRETA_HD int greta_dequant_row(uint32_t type, const void *x, float *y, int64_t n)
{
    const uint8_t *p = (const uint8_t *)x;
    switch (type) {
    case GGML_TYPE_F32:
        memcpy(y, x, (size_t)n * sizeof(float));
        return 0;
    case GGML_TYPE_F16:
        for (int64_t i = 0; i < n; i++) {
            greta_fp16 h;
            memcpy(&h, p + 2 * i, 2);
            y[i] = greta_fp16_to_f32(h);
        }
        return 0;
    case GGML_TYPE_BF16:
        for (int64_t i = 0; i < n; i++) {
            greta_bf16 h;
            memcpy(&h, p + 2 * i, 2);
            y[i] = greta_bf16_to_f32(h);
        }
        return 0;
    case GGML_TYPE_Q4_0:
        for (int64_t i = 0; i < n / QK4_0; i++)
            greta_dequant_block_q4_0((const block_q4_0 *)p + i, y + i * QK4_0);
        return 0;
    case GGML_TYPE_Q8_0:
        for (int64_t i = 0; i < n / QK8_0; i++)
            greta_dequant_block_q8_0((const block_q8_0 *)p + i, y + i * QK8_0);
        return 0;
    case GGML_TYPE_Q4_K:
        for (int64_t i = 0; i < n / QK_K; i++)
            greta_dequant_block_q4_K((const block_q4_K *)p + i, y + i * QK_K);
        return 0;
    case GGML_TYPE_Q5_K:
        for (int64_t i = 0; i < n / QK_K; i++)
            greta_dequant_block_q5_K((const block_q5_K *)p + i, y + i * QK_K);
        return 0;
    case GGML_TYPE_Q6_K:
        for (int64_t i = 0; i < n / QK_K; i++)
            greta_dequant_block_q6_K((const block_q6_K *)p + i, y + i * QK_K);
        return 0;
    default:
        return -1;
    }
}

/* Bytes of a row of n elements, or 0 when n is not a multiple of the block. */
GRETA_HD uint64_t ggml_row_bytes(uint32_t type, uint64_t n)
{
    const uint32_t be = ggml_type_block_elems(type);
    if (be == 0 || n % be != 0)
        return 0;
    return n / be * ggml_type_block_bytes(type);
}

#endif
