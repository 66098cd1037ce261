#include "backend_common.h"

#include <inttypes.h>
#include <string.h>

void greta_backend_shape_from_model(const greta_model *m, greta_backend_shape *s)
{
    const greta_model_config *mc = &m->cfg;
    s->dim = mc->dim;
    s->n_layers = mc->n_layers;
    s->n_heads = mc->n_heads;
    s->n_kv_heads = mc->n_kv_heads;
    s->head_dim = mc->head_dim;
    s->q_dim = (int64_t)mc->n_heads * mc->head_dim;
    s->kv_dim = (int64_t)mc->n_kv_heads * mc->head_dim;
    s->ffn_dim = mc->ffn_dim;
    s->vocab = mc->vocab_size;
    s->rope_dim = mc->rope_dim;
    s->rope_base = mc->rope_freq_base;
    s->rope_scale = mc->rope_freq_scale;
    s->eps = mc->rms_eps;
}

int greta_backend_check_limits(const greta_model *m, const greta_backend_params *p, int32_t max_ctx,
                               int32_t max_seq, int32_t max_batch, greta_error *err)
{
    const greta_model_config *mc = &m->cfg;
    if (p->n_ctx < 1 || p->n_ctx > max_ctx)
        return greta_error_set(err, GRETA_ERR_INVALID, "context length (n_ctx) %d is outside 1..%d", p->n_ctx,
                               max_ctx);
    if (p->n_seq < 1 || p->n_seq > max_seq)
        return greta_error_set(err, GRETA_ERR_INVALID, "sequences (n_seq) %d is outside 1..%d", p->n_seq,
                               max_seq);
    if (p->n_batch < 1 || p->n_batch > max_batch)
        return greta_error_set(err, GRETA_ERR_INVALID, "batch size (n_batch) %d is outside 1..%d", p->n_batch,
                               max_batch);
    if (mc->n_heads == 0 || mc->n_kv_heads == 0 || mc->n_heads % mc->n_kv_heads != 0)
        return greta_error_set(err, GRETA_ERR_FORMAT,
                               "head_count %" PRIu32 " is not a multiple of head_count_kv %" PRIu32, mc->n_heads,
                               mc->n_kv_heads);
    return GRETA_OK;
}

int greta_backend_check_batch(const greta_batch *batch, int64_t n_batch, int64_t vocab, int64_t n_seq,
                              int64_t n_ctx, const int32_t *seq_len, int32_t *next_pos, greta_error *err)
{
    if (!batch || batch->n_tokens < 1 || batch->n_tokens > n_batch)
        return greta_error_set(err, GRETA_ERR_INVALID, "batch: n_tokens %d is outside 1..%" PRId64,
                               batch ? batch->n_tokens : 0, n_batch);
    if (!batch->tokens || !batch->pos || !batch->seq)
        return greta_error_set(err, GRETA_ERR_INVALID, "batch: tokens, pos and seq are required");
    memcpy(next_pos, seq_len, (size_t)n_seq * sizeof(int32_t));
    for (int32_t i = 0; i < batch->n_tokens; i++) {
        const int32_t tok = batch->tokens[i], seq = batch->seq[i], pos = batch->pos[i];
        if (tok < 0 || tok >= vocab)
            return greta_error_set(err, GRETA_ERR_INVALID,
                                   "batch: tokens[%d] = %d is outside the vocabulary 0..%" PRId64, i, tok,
                                   vocab - 1);
        if (seq < 0 || seq >= n_seq)
            return greta_error_set(err, GRETA_ERR_INVALID, "batch: seq[%d] = %d is outside 0..%" PRId64, i, seq,
                                   n_seq - 1);
        if (pos != next_pos[seq])
            return greta_error_set(err, GRETA_ERR_INVALID,
                                   "batch: pos[%d] = %d but sequence %d continues at position %d", i, pos, seq,
                                   next_pos[seq]);
        if (pos >= n_ctx)
            return greta_error_set(err, GRETA_ERR_LIMIT,
                                   "batch: pos[%d] = %d does not fit the context of %" PRId64
                                   " positions (sequence %d is full)",
                                   i, pos, n_ctx, seq);
        next_pos[seq] = pos + 1;
    }
    return GRETA_OK;
}
