/* model.h - Llama model description read from a GGUF file.
 *
 * greta_model_open() maps the file, derives the config from the llama.* keys
 * and resolves every tensor the forward pass needs, checking names, shapes
 * and types. Backends (CPU reference, GPU) read weights through this struct.
 */
#ifndef GRETA_MODEL_H
#define GRETA_MODEL_H

#include <stdbool.h>
#include <stdint.h>

#include "error.h"
#include "gguf.h"

typedef struct greta_model_config {
    uint32_t vocab_size;     /* llama.vocab_size, or the tokenizer.ggml.tokens length */
    uint32_t dim;            /* llama.embedding_length */
    uint32_t n_layers;       /* llama.block_count */
    uint32_t n_heads;        /* llama.attention.head_count */
    uint32_t n_kv_heads;     /* llama.attention.head_count_kv (default n_heads) */
    uint32_t head_dim;       /* dim / n_heads */
    uint32_t ffn_dim;        /* llama.feed_forward_length */
    uint32_t context_length; /* llama.context_length */
    uint32_t rope_dim;       /* llama.rope.dimension_count (default head_dim) */
    float rope_freq_base;    /* llama.rope.freq_base (default 10000) */
    float rope_freq_scale;   /* 1 / llama.rope.scaling.factor for linear scaling, else 1 */
    float rms_eps;           /* llama.attention.layer_norm_rms_epsilon (default 1e-5) */
    bool tied_output;        /* no output.weight: lm_head uses token_embd.weight */
} greta_model_config;

typedef struct greta_layer_weights {
    const gguf_tensor *attn_norm; /* [dim] F32 */
    const gguf_tensor *wq;        /* [dim, dim]            (ne0 = input) */
    const gguf_tensor *wk;        /* [dim, n_kv_heads*head_dim] */
    const gguf_tensor *wv;        /* [dim, n_kv_heads*head_dim] */
    const gguf_tensor *wo;        /* [dim, dim] */
    const gguf_tensor *ffn_norm;  /* [dim] F32 */
    const gguf_tensor *w_gate;    /* [dim, ffn_dim] */
    const gguf_tensor *w_up;      /* [dim, ffn_dim] */
    const gguf_tensor *w_down;    /* [ffn_dim, dim] */
} greta_layer_weights;

typedef struct greta_model {
    gguf_file *file;
    greta_model_config cfg;
    const gguf_tensor *tok_embd;    /* [dim, vocab] */
    const gguf_tensor *output_norm; /* [dim] */
    const gguf_tensor *output;      /* [dim, vocab]; == tok_embd when tied */
    greta_layer_weights *layers;    /* [n_layers] */
} greta_model;

/* Reads the config from llama.* keys. Unsupported architectures and missing
 * or inconsistent keys give a clear error. */
int greta_model_config_read(const gguf_file *f, greta_model_config *cfg, greta_error *err);

/* Opens the file, reads the config and resolves/validates all tensors. */
int greta_model_open(const char *path, greta_model **out, greta_error *err);
/* Same over an already open file (e.g. gguf_open_memory). On success the
 * model owns f (greta_model_close closes it); on failure the caller keeps it. */
int greta_model_from_gguf(gguf_file *f, greta_model **out, greta_error *err);
void greta_model_close(greta_model **m);

#endif
