/* matmul.h - products with weights in their GGUF types, on the CPU.
 *
 *   y[t][r] = dot(W[r], x[t])    t in 0..n_tok-1, r in 0..n_out-1
 *
 * W is a GGUF weight matrix: n_out rows of n_in elements of one type (F32,
 * F16, BF16, Q4_0, Q8_0, Q4_K, Q5_K, Q6_K), row r at byte r * row_bytes
 * (row_bytes = ggml_row_bytes(type, n_in)).  x: [n_tok][n_in] fp32,
 * y: [n_tok][n_out] fp32.
 *
 * Each row is dequantized on the fly into fp32 (kernels/quant.h's decoders,
 * bit-exact) and multiplied with the canonical dot product of ops.h; one
 * thread computes each output element whole, so y does not depend on n_tok,
 * on how tokens are batched, or on the thread count.
 *
 * Instruction sets: GRETA_CPU_ISA_REF is the plain C reference;
 * GRETA_CPU_ISA_AVX2 (x86-64 with AVX2 and F16C, chosen at run time) computes
 * the same operations in the same order with 8-wide vectors, so its results
 * are bit-identical to the reference (tests/engine/test_matmul.c checks it
 * for every type).
 */
#ifndef GRETA_CPU_MATMUL_H
#define GRETA_CPU_MATMUL_H

#include <stdint.h>

#include "common/error.h"
#include "threads.h"

typedef enum greta_cpu_isa {
    GRETA_CPU_ISA_AUTO = 0, /* the best one this CPU runs */
    GRETA_CPU_ISA_REF = 1,  /* plain C */
    GRETA_CPU_ISA_AVX2 = 2, /* x86-64 AVX2 + F16C */
} greta_cpu_isa;

/* AUTO becomes the best available ISA; asking for one this CPU (or build)
 * cannot run is GRETA_ERR_UNSUPPORTED. */
int greta_cpu_isa_resolve(greta_cpu_isa want, greta_cpu_isa *out, greta_error *err);
/* "ref", "avx2" ("auto" for AUTO). */
const char *greta_cpu_isa_name(greta_cpu_isa isa);
/* Parses "auto", "ref" or "avx2"; GRETA_ERR_INVALID otherwise. */
int greta_cpu_isa_parse(const char *s, greta_cpu_isa *out, greta_error *err);

/* Whether greta_cpu_matmul handles this type (a row length must also be a
 * multiple of its block size). */
int greta_cpu_matmul_supports(uint32_t type);

/* Floats of the `work` buffer greta_cpu_matmul needs for rows of n_in
 * elements with a pool of n_threads threads. */
int64_t greta_cpu_matmul_work_floats(int64_t n_in, int n_threads);

/* y = W x as above. isa must be resolved (not AUTO); work holds
 * greta_cpu_matmul_work_floats(n_in, greta_threadpool_size(pool)) floats.
 * Programmer errors (unsupported type, n_in not a multiple of the block)
 * assert: the backend checks every tensor when it loads a model. */
void greta_cpu_matmul(greta_threadpool *pool, greta_cpu_isa isa, float *work,
                      uint32_t type, const void *w, int64_t n_in, int64_t n_out,
                      const float *x, int64_t n_tok, float *y);

/* The two steps, per ISA (exposed for the tests that compare ISAs):
 * dequantize n elements of one row (from a block boundary), and the
 * canonical dot product of ops.h. */
void greta_cpu_dequant_row_isa(greta_cpu_isa isa, uint32_t type, const void *row, float *y, int64_t n);
float greta_cpu_dot_isa(greta_cpu_isa isa, const float *a, const float *b, int64_t n);

/* AVX2 kernels (matmul_avx2.c); available() is 0 where the CPU or the build
 * lacks AVX2/F16C, and then the others must not be called. */
int greta_cpu_avx2_available(void);
void greta_cpu_avx2_dequant_row(uint32_t type, const void *row, float *y, int64_t n);
float greta_cpu_avx2_dot(const float *a, const float *b, int64_t n);
/* dot(dequantize(row), x) in one pass, nothing stored in between: the same
 * bits as the two steps (matmul uses it for a single token). */
float greta_cpu_avx2_dot_row(uint32_t type, const void *row, const float *x, int64_t n);
/* out[t] = dot(a, b_t) for two vectors b0, b1, sharing the loads of a. */
void greta_cpu_avx2_dot2(const float *a, const float *b0, const float *b1, int64_t n, float out[2]);

#endif
