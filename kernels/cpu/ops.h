/* ops.h - CPU reference ops of the Llama forward pass (the FP32 oracle).
 *
 * Everything computes in fp32 with a fixed order of operations, compiled
 * with -ffp-contract=off (no fused multiply-add), so a result depends only
 * on its inputs: never on the batch it was computed in, the thread that
 * computed it or the instruction set used (see matmul.h).
 *
 * The canonical dot product (every dot in the engine uses it):
 *   acc[32] = 0
 *   for i in 0..n-1:  acc[i % 32] = acc[i % 32] + a[i] * b[i]   (product rounded, then sum)
 *   r[k] = (acc[k] + acc[k+8]) + (acc[k+16] + acc[k+24])       k = 0..7
 *   s[k] = r[k] + r[k+4]                                         k = 0..3
 *   u[k] = s[k] + s[k+2]                                         k = 0..1
 *   result = u[0] + u[1]
 * Thirty-two running sums (four 8-wide vector registers) and a fixed tree:
 * a SIMD version reproduces it bit for bit, and each running sum adds only
 * n/32 terms, which keeps the rounding error small.
 */
#ifndef GRETA_CPU_OPS_H
#define GRETA_CPU_OPS_H

#include <stdint.h>

#define GRETA_DOT_LANES 32

/* acc[i % 32] += a[i] * b[i] for i in 0..n-1 (the accumulation step). */
void greta_cpu_dot_accum(float acc[GRETA_DOT_LANES], const float *a, const float *b, int64_t n);
/* The fixed reduction tree of the 32 running sums. */
float greta_cpu_dot_reduce(const float acc[GRETA_DOT_LANES]);
/* Canonical dot product of two fp32 vectors of n elements. */
float greta_cpu_dot(const float *a, const float *b, int64_t n);

/* out[i] = (x[i] * s) * w[i] with s = 1 / sqrtf(dot(x, x) / n + eps).
 * out may alias x. */
void greta_cpu_rmsnorm(float *out, const float *x, const float *w, int64_t n, float eps);

/* Rotation table for one position: cs[2i] = cos(theta_i), cs[2i+1] = sin(theta_i),
 * theta_i = pos * freq_scale * base^(-2i / rope_dim), i in 0..rope_dim/2-1,
 * computed in double and rounded once to fp32.  cs: [rope_dim]. */
void greta_cpu_rope_table(float *cs, int32_t rope_dim, int32_t pos, float freq_base, float freq_scale);

/* Llama's "normal" rotary mode on x: [n_heads][head_dim]: in every head the
 * pairs (x[2i], x[2i+1]), 2i < rope_dim, turn by theta_i:
 *   x0' = x0*c - x1*s,  x1' = x0*s + x1*c. */
void greta_cpu_rope(float *x, int32_t n_heads, int32_t head_dim, int32_t rope_dim, const float *cs);

/* In-place softmax over x[0..n-1]: max, exp(x - max) in order, sum in order,
 * then each divided by the sum. */
void greta_cpu_softmax(float *x, int64_t n);

/* gate[i] = silu(gate[i]) * up[i], silu(g) = g / (1 + expf(-g)). */
void greta_cpu_swiglu(float *gate, const float *up, int64_t n);

/* x[i] += y[i]. */
void greta_cpu_add(float *x, const float *y, int64_t n);

/* out[i] = sum over j in 0..n_pos-1, in order, of w[j] * v[j*stride + i],
 * for i in 0..n-1 (attention's weighted sum of values). */
void greta_cpu_weighted_sum(float *out, const float *w, const float *v, int64_t n_pos,
                            int64_t stride, int64_t n);

/* Index of the largest value; the lowest index wins a tie; NaN never wins. */
int64_t greta_cpu_argmax(const float *x, int64_t n);

#endif
