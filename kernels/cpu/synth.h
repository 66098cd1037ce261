/* synth.h - synthetic Llama models with random weights, written directly in
 * a quantized format (`greta synth`): benchmark models of real shapes
 * (Llama-2 7B/13B/70B) without real weights.
 *
 * Blocks are generated directly, not quantized from floats: random codes and
 * scales calibrated so the dequantized weights have mean 0 and standard
 * deviation GRETA_SYNTH_STD (0.02). Codes are the difference of two uniform
 * k-bit integers (a symmetric triangular distribution around the zero code),
 * sub-block scales are uniform in a range, the block scale d is jittered
 * by +-25%, and the K-quant mins are set to centre each sub-block; no group
 * of 32 codes is all zero, so no block decodes to all zeros. Norm vectors
 * are exactly 1.0 (F32).
 *
 * Determinism: every block is a pure function of (seed, tensor name, block
 * index) through a counter-based hash (splitmix64 finalizer), so the file is
 * identical for any thread count or write order.
 *
 * Tensor order: token_embd, then per layer attn_norm, attn_q, attn_k,
 * attn_v, attn_output, ffn_norm, ffn_gate, ffn_up, ffn_down, then
 * output_norm and output (types from quant_mix.h).
 */
#ifndef GRETA_CPU_SYNTH_H
#define GRETA_CPU_SYNTH_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "common/error.h"
#include "quant_mix.h"

#define GRETA_SYNTH_STD 0.02f

typedef struct greta_synth_preset {
    const char *name;
    uint32_t dim, n_layers, n_heads, n_kv_heads, ffn_dim, context;
    float rope_base, rms_eps;
} greta_synth_preset;

/* Preset by name (llama2-7b, llama2-13b, llama2-70b, tiny, small), or NULL. */
const greta_synth_preset *greta_synth_preset_find(const char *name);
/* The i-th preset, NULL past the end. */
const greta_synth_preset *greta_synth_preset_at(unsigned i);

/* Writes n_blocks random blocks of a block type (Q8_0, Q4_0, Q4_K, Q5_K,
 * Q6_K) into out: blocks first_block .. first_block+n_blocks-1 of the tensor
 * whose name hashes to tensor_key (greta_synth_tensor_key). Returns 0 or
 * GRETA_ERR_UNSUPPORTED for another type. */
int greta_synth_blocks(uint32_t type, uint64_t seed, uint64_t tensor_key, uint64_t first_block,
                       uint64_t n_blocks, void *out);
uint64_t greta_synth_tensor_key(const char *name);

typedef struct greta_synth_opts {
    const greta_synth_preset *preset;
    const greta_ftype *ftype;
    const char *vocab_path; /* GGUF with tokenizer.* keys (tokens give the vocab size) */
    const char *out_path;   /* ignored for dry_run */
    uint64_t seed;
    int n_threads;          /* 1..GRETA_THREADS_MAX */
    bool dry_run;           /* compute the layout and size, write nothing */
    FILE *log;              /* summary lines; may be NULL */
} greta_synth_opts;

typedef struct greta_synth_result {
    uint64_t file_size;   /* exact bytes of the file (written or not) */
    uint64_t n_params;
    uint64_t n_tensors;
    uint32_t vocab_size;
} greta_synth_result;

/* Builds the model described by opts. Errors name the vocab file or field. */
int greta_synth_model(const greta_synth_opts *opts, greta_synth_result *res, greta_error *err);

#endif
