/* quant_mix.h - model file types ("Q4_K_M") and the tensor type each one
 * gives every tensor, shared by `greta quantize` and `greta synth`.
 *
 * Rules (those of llama.cpp's llama-quantize for the same names, so a file
 * made here has the same per-tensor types as one made there; n = number of
 * layers, i = the layer of a blk.i.* tensor, integer division):
 *   - tensors with one dimension are F32;
 *   - every other tensor gets the base type, except:
 *   - output.weight: Q6_K, unless the base is Q8_0 (then Q8_0);
 *   - Q4_K_M, Q5_K_M: attn_v.weight and ffn_down.weight of layer i are Q6_K
 *     when i < n/8, or i >= 7n/8, or (i - n/8) % 3 == 2;
 *   - Q4_K_S: attn_v.weight of layers i < 4 and ffn_down.weight of layers
 *     i < n/8 are Q5_K;
 *   - a row length (ne[0]) that the chosen type's block does not divide falls
 *     back to Q8_0 when it is a multiple of 32, else to F16.
 */
#ifndef GRETA_CPU_QUANT_MIX_H
#define GRETA_CPU_QUANT_MIX_H

#include <stdbool.h>
#include <stdint.h>

typedef struct greta_ftype {
    const char *name;   /* "Q4_K_M" */
    uint32_t file_type; /* general.file_type value (llama_ftype id) */
    uint32_t base;      /* ggml type of most matrices */
} greta_ftype;

/* The file type of that name (case-sensitive), or NULL. */
const greta_ftype *greta_ftype_find(const char *name);
/* The i-th file type, NULL past the end (for usage messages). */
const greta_ftype *greta_ftype_at(unsigned i);

/* Layer index of a "blk.<i>." tensor name, or -1. */
int greta_tensor_layer(const char *name);

/* The ggml type the file type gives tensor `name` of shape ne[0..n_dims-1]
 * in a model of n_layers layers. *wanted (if not NULL) receives the type the
 * rules asked for before a row-length fallback; they differ on fallback. */
uint32_t greta_ftype_tensor_type(const greta_ftype *ft, const char *name, uint32_t n_dims,
                                 const uint64_t *ne, uint32_t n_layers, uint32_t *wanted);

/* The -t/--threads argument of `greta quantize` and `greta synth`: a decimal
 * count in 1..GRETA_THREADS_MAX (kernels/cpu/threads.h); 0 when invalid. */
int greta_quant_threads_parse(const char *s);
/* Their default thread count: the online cores, clamped to 1..GRETA_THREADS_MAX. */
int greta_quant_threads_default(void);

#endif
