/* backend_common.h - checks and shapes every backend shares (CPU reference,
 * GPU): the model's dimensions as the forward pass uses them, the limits of
 * the backend parameters, and the validation of a batch against the KV
 * state. A backend calls these before it changes anything. */
#ifndef GRETA_BACKEND_COMMON_H
#define GRETA_BACKEND_COMMON_H

#include <stdint.h>

#include "backend.h"

/* The model's dimensions, widened for index arithmetic. */
typedef struct greta_backend_shape {
    int64_t dim;        /* embedding width */
    int64_t n_layers;
    int64_t n_heads;    /* query heads */
    int64_t n_kv_heads; /* key/value heads (GQA: n_heads / n_kv_heads queries share one) */
    int64_t head_dim;
    int64_t q_dim;      /* n_heads * head_dim */
    int64_t kv_dim;     /* n_kv_heads * head_dim */
    int64_t ffn_dim;
    int64_t vocab;
    int64_t rope_dim;   /* rotated dims at the start of each head (even, <= head_dim) */
    float rope_base, rope_scale, eps;
} greta_backend_shape;

void greta_backend_shape_from_model(const greta_model *m, greta_backend_shape *s);

/* n_ctx, n_seq and n_batch within 1..max_*, and n_heads a multiple of n_kv_heads. */
int greta_backend_check_limits(const greta_model *m, const greta_backend_params *p, int32_t max_ctx,
                               int32_t max_seq, int32_t max_batch, greta_error *err);

/* Checks a batch against the KV state without changing it: every token in the
 * vocabulary, every seq in 0..n_seq-1, positions continuing each sequence
 * (seq_len[n_seq]) and inside the context. Fills next_pos[n_seq] with each
 * sequence's length after the batch. */
int greta_backend_check_batch(const greta_batch *batch, int64_t n_batch, int64_t vocab, int64_t n_seq,
                              int64_t n_ctx, const int32_t *seq_len, int32_t *next_pos, greta_error *err);

#endif
