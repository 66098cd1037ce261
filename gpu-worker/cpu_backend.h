/* cpu_backend.h - the FP32 CPU reference backend (backend.h).
 *
 * Weights are read in place from the mmapped GGUF file in their own types
 * (kernels/cpu/matmul.h dequantizes rows on the fly); norm vectors are
 * copied once. The KV cache is fp32:
 *   key_cache, value_cache: [n_seq][n_layers][n_ctx][n_kv_heads * head_dim]
 * With greta_cpu_backend_opts.kv_f16 each key and value is rounded to fp16
 * and back as it is stored (greta_f32_to_fp16: round to nearest even, the
 * rounding of the GPU backend's fp16 cache, kernels/gpu/kv_store.cu, checked
 * bit for bit by tests/gpu/test_gpu_ops.c), so the cache holds exactly the
 * values an fp16 cache would; the storage stays fp32 and nothing else changes.
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
/* An fp32 KV cache (kv_f16 0), as greta_cpu_backend_create. */
int greta_cpu_backend_create(const greta_model *m, const greta_backend_params *p,
                             greta_backend **out, greta_error *err);

/* Options beyond the common params. kv_f16: store keys and values rounded
 * to fp16 (see above); the detail string then ends in ", fp16 KV". */
typedef struct greta_cpu_backend_opts {
    int kv_f16;
} greta_cpu_backend_opts;

/* o NULL: the defaults (all zero). */
int greta_cpu_backend_create_opts(const greta_model *m, const greta_backend_params *p,
                                  const greta_cpu_backend_opts *o, greta_backend **out, greta_error *err);

/* Read-only views of the cached keys and values of (seq, layer, pos), kv_dim
 * floats each (for tests and tools). GRETA_ERR_INVALID for a backend that is
 * not a CPU backend or a position the sequence has not stored. */
int greta_cpu_backend_kv_view(const greta_backend *b, int32_t seq, int32_t layer, int32_t pos, const float **k,
                              const float **v, greta_error *err);

#endif
