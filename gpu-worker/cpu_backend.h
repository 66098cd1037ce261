/* cpu_backend.h - the FP32 CPU reference backend (backend.h).
 *
 * Weights are read in place from the mmapped GGUF file in their own types
 * (kernels/cpu/matmul.h dequantizes rows on the fly); norm vectors are
 * copied once. The KV cache is fp32:
 *   key_cache, value_cache: [n_seq][n_layers][n_ctx][n_kv_heads * head_dim]
 * and the activations live in one arena sized at create from the config and
 * the params (see greta_cpu_backend_plan); forward() allocates nothing.
 *
 * Determinism: every value is computed by one thread with the fixed-order
 * ops of kernels/cpu/ops.h, so a sequence's logits are bit-identical
 * whether it runs alone or batched with others, whether its prompt is fed
 * in one prefill or token by token, with any thread count, and with the
 * reference or the AVX2 kernels.
 */
#ifndef GRETA_CPU_BACKEND_H
#define GRETA_CPU_BACKEND_H

#include "backend.h"

extern const greta_backend_kind greta_cpu_backend_kind;

int greta_cpu_backend_plan(const greta_model *m, const greta_backend_params *p,
                           greta_mem_plan *plan, greta_error *err);
int greta_cpu_backend_create(const greta_model *m, const greta_backend_params *p,
                             greta_backend **out, greta_error *err);

#endif
