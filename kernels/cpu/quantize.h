/* quantize.h - reference quantizers: rows of fp32 into GGUF blocks.
 *
 * The block layouts are those of kernels/quant.h (and FORMATS.md); decoding
 * is greta_dequant_row() there. Quantizing is the slow, careful direction:
 *
 *   Q8_0  d = max|x| / 127, q = round(x / d).
 *   Q4_0  q in -8..7: candidate scales around max/-8 and max/7 are each
 *         refitted by least squares, rounded to fp16, re-applied, and the
 *         one with the smallest squared error wins.
 *   Q4_K, Q5_K  per sub-block of 32 a weighted least-squares fit of
 *         (scale, min), weights av + |x_i| (av = sqrt(2 mean x^2) over the
 *         super-block), over 81 candidate inverse scales around nmax/range;
 *         the eight scales and the eight mins are then fitted to 6-bit codes
 *         times the super-block's d / dmin (the same weighted search, plus
 *         single-code refinement, weighted by each sub-block's total weight),
 *         and every code is recomputed with the scales actually stored.
 *   Q6_K  per sub-block of 16 a weighted (x^2) least-squares scale over 73
 *         candidates with codes -32..31; the sixteen scales are quantized to
 *         int8 against the fp16 d, and the codes recomputed.
 *   F16, BF16 round to nearest even; F32 copies.
 *
 * A row is a whole number of blocks. Everything is scalar C, computed in a
 * fixed order: the output depends only on the input row.
 */
#ifndef GRETA_CPU_QUANTIZE_H
#define GRETA_CPU_QUANTIZE_H

#include <stdbool.h>
#include <stdint.h>

/* True for the ggml types greta_quantize_row() can write:
 * F32, F16, BF16, Q8_0, Q4_0, Q4_K, Q5_K, Q6_K. */
bool greta_quantize_supported(uint32_t type);

/* Quantizes n fp32 values x into `out` (ggml_row_bytes(type, n) bytes).
 * Returns 0; GRETA_ERR_UNSUPPORTED for a type not listed above;
 * GRETA_ERR_INVALID when n is not a positive multiple of the type's block
 * size, or when x holds a NaN or infinity and the type is a block format
 * (F32/F16/BF16 carry them through). */
int greta_quantize_row(uint32_t type, const float *x, void *out, int64_t n);

/* Packing helpers, the inverse of the decode helpers in quant.h (shared with
 * the synthetic-model generator). Codes are unsigned as stored: Q4_K 0..15,
 * Q5_K 0..31, Q6_K 0..63 (value + 32), in element order. */
void greta_pack_k_scales(const uint8_t sc[8], const uint8_t m[8], uint8_t out[12]);
void greta_pack_q4_K_codes(const uint8_t L[256], uint8_t qs[128]);
void greta_pack_q5_K_codes(const uint8_t L[256], uint8_t qh[32], uint8_t qs[128]);
void greta_pack_q6_K_codes(const uint8_t L[256], uint8_t ql[128], uint8_t qh[64]);

#endif
