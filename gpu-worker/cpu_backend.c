/* cpu_backend.c - the FP32 CPU reference backend (see cpu_backend.h).
 *
 * Layout of the file, llama2.c style:
 *   config and weights     sizes and weight views taken from greta_model
 *   run state              the arena of activations, KV cache, slot table
 *   memory plan            sizes of all of the above, computed once
 *   forward pass           embedding, layers (attention, FFN), lm_head
 *   create / destroy
 */
#include "cpu_backend.h"
#include "backend_common.h"

#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/cpu/matmul.h"
#include "kernels/cpu/ops.h"
#include "kernels/cpu/threads.h"
#include "kernels/quant.h"

/* Limits on the params (documented ranges; the memory check comes on top). */
#define CPU_MAX_CTX (1 << 24)
#define CPU_MAX_SEQ 4096
#define CPU_MAX_BATCH (1 << 16)

/* ---- config and weights ------------------------------------------------- */

typedef greta_backend_shape cpu_config; /* backend_common.h */

/* A weight matrix used as y = W x: n_out rows of n_in elements, GGUF type. */
typedef struct cpu_weight {
    uint32_t type;
    const void *data; /* inside the mapping */
    int64_t n_in, n_out;
} cpu_weight;

typedef struct cpu_layer {
    const float *attn_norm; /* [dim] (copy in the arena) */
    const float *ffn_norm;  /* [dim] */
    cpu_weight wq;          /* [dim -> q_dim] */
    cpu_weight wk, wv;      /* [dim -> kv_dim] */
    cpu_weight wo;          /* [q_dim -> dim] */
    cpu_weight w_gate;      /* [dim -> ffn_dim] */
    cpu_weight w_up;        /* [dim -> ffn_dim] */
    cpu_weight w_down;      /* [ffn_dim -> dim] */
} cpu_layer;

/* ---- run state ----------------------------------------------------------- */

/* Offsets, in floats, of the buffers inside the arena. */
typedef struct cpu_layout {
    uint64_t x, xb, xb2, q, k, v, hb, hb2, rope, att, work, norms;
    uint64_t total; /* floats */
} cpu_layout;

typedef struct cpu_backend {
    greta_backend base;
    cpu_config c;
    int64_t n_ctx, n_seq, n_batch;
    int n_threads;
    int kv_f16; /* keys and values rounded to fp16 as they are stored */
    greta_cpu_isa isa;
    greta_threadpool *pool;

    cpu_weight tok_embd;     /* [dim -> vocab] rows are embeddings */
    cpu_weight output;       /* [dim -> vocab] lm_head (== tok_embd when tied) */
    const float *output_norm; /* [dim] */
    cpu_layer *layers;       /* [n_layers] */

    float *arena;
    float *x;     /* [n_batch][dim]      residual stream */
    float *xb;    /* [n_batch][dim]      normalized block input / block output */
    float *xb2;   /* [n_batch][q_dim]    attention output, before wo */
    float *q;     /* [n_batch][q_dim]    queries */
    float *k;     /* [n_batch][kv_dim]   new keys */
    float *v;     /* [n_batch][kv_dim]   new values */
    float *hb;    /* [n_batch][ffn_dim]  gate, then silu(gate) * up */
    float *hb2;   /* [n_batch][ffn_dim]  up */
    float *rope;  /* [n_batch][rope_dim] (cos, sin) pairs of each token's position */
    float *att;   /* [n_threads][n_ctx]  attention weights of one (token, head) */
    float *work;  /* matmul row buffers, greta_cpu_matmul_work_floats(max n_in) */
    float *norms; /* [2 * n_layers + 1][dim] copies of the norm vectors */

    float *key_cache;   /* [n_seq][n_layers][n_ctx][kv_dim] */
    float *value_cache; /* [n_seq][n_layers][n_ctx][kv_dim] */
    int32_t *seq_len;   /* [n_seq] positions held per sequence */
    int32_t *next_pos;  /* [n_seq] scratch of batch validation */
    int32_t *sel;       /* [n_batch] batch indices whose logits are returned */
} cpu_backend;

/* ---- memory plan ---------------------------------------------------------- */

static int add_u64(uint64_t *acc, uint64_t v)
{
    return __builtin_add_overflow(*acc, v, acc);
}

static int mul3_u64(uint64_t a, uint64_t b, uint64_t c, uint64_t *out)
{
    uint64_t t;
    return __builtin_mul_overflow(a, b, &t) || __builtin_mul_overflow(t, c, out);
}


static int check_params(const greta_model *m, const greta_backend_params *p, greta_error *err)
{
    int rc = greta_backend_check_limits(m, p, CPU_MAX_CTX, CPU_MAX_SEQ, CPU_MAX_BATCH, err);
    if (rc)
        return rc;
    if (p->n_threads < 1 || p->n_threads > GRETA_THREADS_MAX)
        return greta_error_set(err, GRETA_ERR_INVALID, "threads (n_threads) %d is outside 1..%d",
                               p->n_threads, GRETA_THREADS_MAX);
    if (p->cpu_isa < GRETA_CPU_ISA_AUTO || p->cpu_isa > GRETA_CPU_ISA_AVX2)
        return greta_error_set(err, GRETA_ERR_INVALID, "cpu_isa %d is not 0 (auto), 1 (ref) or 2 (avx2)",
                               p->cpu_isa);
    return GRETA_OK;
}

static uint64_t tensor_bytes(const gguf_tensor *t)
{
    return t ? t->nbytes : 0;
}

static uint64_t model_weight_bytes(const greta_model *m)
{
    uint64_t n = tensor_bytes(m->tok_embd) + tensor_bytes(m->output_norm);
    if (m->output != m->tok_embd)
        n += tensor_bytes(m->output);
    for (uint32_t l = 0; l < m->cfg.n_layers; l++) {
        const greta_layer_weights *L = &m->layers[l];
        n += tensor_bytes(L->attn_norm) + tensor_bytes(L->ffn_norm) + tensor_bytes(L->wq) +
             tensor_bytes(L->wk) + tensor_bytes(L->wv) + tensor_bytes(L->wo) +
             tensor_bytes(L->w_gate) + tensor_bytes(L->w_up) + tensor_bytes(L->w_down);
    }
    return n;
}

/* The arena: each buffer rounded up to 16 floats (64 bytes). */
static int arena_layout(const cpu_config *c, const greta_backend_params *p, cpu_layout *L)
{
    const uint64_t nb = (uint64_t)p->n_batch, nt = (uint64_t)p->n_threads;
    int64_t max_in = c->dim;
    if (c->q_dim > max_in)
        max_in = c->q_dim;
    if (c->ffn_dim > max_in)
        max_in = c->ffn_dim;
    struct {
        uint64_t *off;
        uint64_t a, b;
    } items[] = {
        {&L->x, nb, (uint64_t)c->dim},          {&L->xb, nb, (uint64_t)c->dim},
        {&L->xb2, nb, (uint64_t)c->q_dim},      {&L->q, nb, (uint64_t)c->q_dim},
        {&L->k, nb, (uint64_t)c->kv_dim},       {&L->v, nb, (uint64_t)c->kv_dim},
        {&L->hb, nb, (uint64_t)c->ffn_dim},     {&L->hb2, nb, (uint64_t)c->ffn_dim},
        {&L->rope, nb, (uint64_t)c->rope_dim},  {&L->att, nt, (uint64_t)p->n_ctx},
        {&L->work, 1, (uint64_t)greta_cpu_matmul_work_floats(max_in, p->n_threads)},
        {&L->norms, 2 * (uint64_t)c->n_layers + 1, (uint64_t)c->dim},
    };
    uint64_t off = 0;
    for (size_t i = 0; i < sizeof items / sizeof items[0]; i++) {
        uint64_t n;
        if (__builtin_mul_overflow(items[i].a, items[i].b, &n) || add_u64(&n, 15))
            return -1;
        n &= ~(uint64_t)15;
        *items[i].off = off;
        if (add_u64(&off, n))
            return -1;
    }
    L->total = off;
    return 0;
}

int greta_cpu_backend_plan(const greta_model *m, const greta_backend_params *p,
                           greta_mem_plan *plan, greta_error *err)
{
    memset(plan, 0, sizeof *plan);
    int rc = check_params(m, p, err);
    if (rc)
        return rc;
    cpu_config c;
    greta_backend_shape_from_model(m, &c);
    cpu_layout L;
    uint64_t kv, logits;
    if (arena_layout(&c, p, &L) != 0 ||
        mul3_u64((uint64_t)p->n_seq * (uint64_t)c.n_layers, (uint64_t)p->n_ctx, (uint64_t)c.kv_dim, &kv) ||
        mul3_u64(kv, 2, sizeof(float), &kv) ||
        mul3_u64((uint64_t)p->n_batch, (uint64_t)c.vocab, sizeof(float), &logits))
        return greta_error_set(err, GRETA_ERR_LIMIT, "memory plan: sizes overflow 64 bits "
                               "(n_ctx %d, n_seq %d, n_batch %d)", p->n_ctx, p->n_seq, p->n_batch);
    plan->backend = "cpu";
    plan->kv_where = "host RAM, fp32";
    plan->weights_bytes = model_weight_bytes(m);
    plan->kv_bytes = kv;
    plan->scratch_bytes = L.total * sizeof(float) +
                          (2 * (uint64_t)p->n_seq + (uint64_t)p->n_batch) * sizeof(int32_t);
    plan->logits_bytes = logits;
    uint64_t total = plan->weights_bytes;
    if (add_u64(&total, plan->kv_bytes) || add_u64(&total, plan->scratch_bytes) ||
        add_u64(&total, plan->logits_bytes))
        return greta_error_set(err, GRETA_ERR_LIMIT, "memory plan: total overflows 64 bits");
    plan->total_bytes = total;
    return GRETA_OK;
}

/* ---- forward pass ------------------------------------------------------------ */

static float *kv_at(const cpu_backend *b, float *cache, int64_t seq, int64_t layer, int64_t pos)
{
    return cache + ((seq * b->c.n_layers + layer) * b->n_ctx + pos) * b->c.kv_dim;
}

/* One token's keys or values into the cache: copied, or with kv_f16 each
 * value rounded to fp16 (nearest even) and back. */
static void kv_store_row(float *dst, const float *src, int64_t n, int kv_f16)
{
    if (!kv_f16) {
        memcpy(dst, src, (size_t)n * sizeof(float));
        return;
    }
    for (int64_t i = 0; i < n; i++)
        dst[i] = greta_fp16_to_f32(greta_f32_to_fp16(src[i]));
}

static void matmul(cpu_backend *b, const cpu_weight *w, const float *x, int64_t n_tok, float *y)
{
    greta_cpu_matmul(b->pool, b->isa, b->work, w->type, w->data, w->n_in, w->n_out, x, n_tok, y);
}

/* Per-token jobs: rows [begin, end) of the batch. */
typedef struct row_job {
    cpu_backend *b;
    const float *w;      /* norm weights */
    float *in, *out;     /* [n][width] */
    int64_t width;
} row_job;

static void rmsnorm_rows(void *ctx, int64_t begin, int64_t end, int thread)
{
    const row_job *j = ctx;
    for (int64_t t = begin; t < end; t++)
        greta_cpu_rmsnorm(j->out + t * j->width, j->in + t * j->width, j->w, j->width, j->b->c.eps);
}

static void swiglu_rows(void *ctx, int64_t begin, int64_t end, int thread)
{
    const row_job *j = ctx;
    const int64_t n = j->b->c.ffn_dim;
    for (int64_t t = begin; t < end; t++)
        greta_cpu_swiglu(j->b->hb + t * n, j->b->hb2 + t * n, n);
}

static void rmsnorm_all(cpu_backend *b, const float *w, float *in, float *out, int64_t n_tok)
{
    row_job j = {.b = b, .w = w, .in = in, .out = out, .width = b->c.dim};
    greta_threadpool_run_work(b->pool, n_tok, n_tok * b->c.dim * 4, rmsnorm_rows, &j);
}

/* Attention of (token, head) items [begin, end) of one layer. The keys and
 * values of every token of the batch are already in the cache. */
typedef struct attn_job {
    cpu_backend *b;
    const greta_batch *batch;
    int64_t layer;
} attn_job;

static void attention_items(void *ctx, int64_t begin, int64_t end, int thread)
{
    const attn_job *j = ctx;
    cpu_backend *b = j->b;
    const cpu_config *c = &b->c;
    const int64_t group = c->n_heads / c->n_kv_heads;
    const float scale_div = sqrtf((float)c->head_dim);
    float *att = b->att + (int64_t)thread * b->n_ctx;
    for (int64_t item = begin; item < end; item++) {
        const int64_t t = item / c->n_heads, h = item % c->n_heads;
        const int64_t seq = j->batch->seq[t], n_pos = (int64_t)j->batch->pos[t] + 1;
        const int64_t kvh = h / group;
        const float *qh = b->q + t * c->q_dim + h * c->head_dim;
        const float *keys = kv_at(b, b->key_cache, seq, j->layer, 0) + kvh * c->head_dim;
        const float *vals = kv_at(b, b->value_cache, seq, j->layer, 0) + kvh * c->head_dim;
        for (int64_t p = 0; p < n_pos; p++)
            att[p] = greta_cpu_dot_isa(b->isa, qh, keys + p * c->kv_dim, c->head_dim) / scale_div;
        greta_cpu_softmax(att, n_pos);
        greta_cpu_weighted_sum(b->xb2 + t * c->q_dim + h * c->head_dim, att, vals, n_pos, c->kv_dim,
                               c->head_dim);
    }
}

/* Checks the batch against the KV state; fills next_pos. Changes nothing. */
static int check_batch(cpu_backend *b, const greta_batch *batch, greta_error *err)
{
    return greta_backend_check_batch(batch, b->n_batch, b->c.vocab, b->n_seq, b->n_ctx, b->seq_len, b->next_pos,
                                     err);
}

static int cpu_forward(greta_backend *base, const greta_batch *batch, float *logits, greta_error *err)
{
    cpu_backend *b = base->impl;
    const cpu_config *c = &b->c;
    int rc = check_batch(b, batch, err);
    if (rc)
        return rc;
    const int64_t T = batch->n_tokens;
    int64_t max_pos = 1; /* positions the longest attention reads (work estimate) */
    for (int64_t t = 0; t < T; t++)
        if (batch->pos[t] + 1 > max_pos)
            max_pos = batch->pos[t] + 1;

    /* token embeddings and rotation tables */
    const uint64_t embd_row = ggml_row_bytes(b->tok_embd.type, (uint64_t)c->dim);
    for (int64_t t = 0; t < T; t++) {
        const uint8_t *row = (const uint8_t *)b->tok_embd.data + (uint64_t)batch->tokens[t] * embd_row;
        greta_cpu_dequant_row_isa(b->isa, b->tok_embd.type, row, b->x + t * c->dim, c->dim);
        greta_cpu_rope_table(b->rope + t * c->rope_dim, (int32_t)c->rope_dim, batch->pos[t],
                             c->rope_base, c->rope_scale);
    }

    for (int64_t l = 0; l < c->n_layers; l++) {
        const cpu_layer *L = &b->layers[l];

        /* attention: xb = rmsnorm(x); q, k, v; RoPE; K/V into the cache */
        rmsnorm_all(b, L->attn_norm, b->x, b->xb, T);
        matmul(b, &L->wq, b->xb, T, b->q);
        matmul(b, &L->wk, b->xb, T, b->k);
        matmul(b, &L->wv, b->xb, T, b->v);
        for (int64_t t = 0; t < T; t++) {
            const float *cs = b->rope + t * c->rope_dim;
            greta_cpu_rope(b->q + t * c->q_dim, (int32_t)c->n_heads, (int32_t)c->head_dim,
                           (int32_t)c->rope_dim, cs);
            greta_cpu_rope(b->k + t * c->kv_dim, (int32_t)c->n_kv_heads, (int32_t)c->head_dim,
                           (int32_t)c->rope_dim, cs);
            kv_store_row(kv_at(b, b->key_cache, batch->seq[t], l, batch->pos[t]), b->k + t * c->kv_dim, c->kv_dim,
                         b->kv_f16);
            kv_store_row(kv_at(b, b->value_cache, batch->seq[t], l, batch->pos[t]), b->v + t * c->kv_dim, c->kv_dim,
                         b->kv_f16);
        }
        attn_job aj = {.b = b, .batch = batch, .layer = l};
        greta_threadpool_run_work(b->pool, T * c->n_heads, T * c->q_dim * 2 * max_pos, attention_items, &aj);
        matmul(b, &L->wo, b->xb2, T, b->xb);
        greta_cpu_add(b->x, b->xb, T * c->dim);

        /* feed-forward: x += w_down(silu(w_gate xb) * (w_up xb)), xb = rmsnorm(x) */
        rmsnorm_all(b, L->ffn_norm, b->x, b->xb, T);
        matmul(b, &L->w_gate, b->xb, T, b->hb);
        matmul(b, &L->w_up, b->xb, T, b->hb2);
        row_job sj = {.b = b};
        greta_threadpool_run_work(b->pool, T, T * c->ffn_dim * 16, swiglu_rows, &sj);
        matmul(b, &L->w_down, b->hb, T, b->xb);
        greta_cpu_add(b->x, b->xb, T * c->dim);
    }

    /* final norm and lm_head for the tokens whose logits are wanted */
    int64_t n_sel = 0;
    for (int64_t t = 0; t < T; t++)
        if (batch->want_logits ? batch->want_logits[t] != 0 : t == T - 1)
            b->sel[n_sel++] = (int32_t)t;
    for (int64_t i = 0; i < n_sel; i++)
        greta_cpu_rmsnorm(b->xb + i * c->dim, b->x + (int64_t)b->sel[i] * c->dim, b->output_norm,
                          c->dim, c->eps);
    if (n_sel > 0)
        matmul(b, &b->output, b->xb, n_sel, logits);

    memcpy(b->seq_len, b->next_pos, (size_t)b->n_seq * sizeof(int32_t));
    return GRETA_OK;
}

static int cpu_seq_truncate(greta_backend *base, int32_t seq, int32_t n_keep, greta_error *err)
{
    cpu_backend *b = base->impl;
    if (seq < 0 || seq >= b->n_seq)
        return greta_error_set(err, GRETA_ERR_INVALID, "seq_truncate: sequence %d is outside 0..%" PRId64,
                               seq, b->n_seq - 1);
    if (n_keep < 0)
        return greta_error_set(err, GRETA_ERR_INVALID, "seq_truncate: n_keep %d is negative", n_keep);
    if (n_keep < b->seq_len[seq])
        b->seq_len[seq] = n_keep;
    return GRETA_OK;
}

static int32_t cpu_seq_len(const greta_backend *base, int32_t seq)
{
    const cpu_backend *b = base->impl;
    return seq >= 0 && seq < b->n_seq ? b->seq_len[seq] : 0;
}

static const greta_backend_ops cpu_ops;

int greta_cpu_backend_kv_view(const greta_backend *base, int32_t seq, int32_t layer, int32_t pos, const float **k,
                              const float **v, greta_error *err)
{
    if (!base || base->ops != &cpu_ops)
        return greta_error_set(err, GRETA_ERR_INVALID, "kv_view: not a CPU backend");
    const cpu_backend *b = base->impl;
    if (seq < 0 || seq >= b->n_seq || layer < 0 || layer >= b->c.n_layers || pos < 0 || pos >= b->seq_len[seq])
        return greta_error_set(err, GRETA_ERR_INVALID,
                               "kv_view: sequence %d, layer %d, position %d: outside the %" PRId64
                               " sequences, %" PRId64 " layers or the sequence's cached positions",
                               seq, layer, pos, b->n_seq, b->c.n_layers);
    *k = kv_at(b, b->key_cache, seq, layer, pos);
    *v = kv_at(b, b->value_cache, seq, layer, pos);
    return GRETA_OK;
}

/* ---- create / destroy ------------------------------------------------------- */

static void cpu_destroy(greta_backend *base)
{
    if (!base)
        return;
    cpu_backend *b = base->impl;
    greta_threadpool_destroy(&b->pool);
    free(b->layers);
    free(b->arena);
    free(b->key_cache);
    free(b->value_cache);
    free(b->seq_len);
    free(b->next_pos);
    free(b->sel);
    free(b);
}

static const greta_backend_ops cpu_ops = {
    .name = "cpu",
    .forward = cpu_forward,
    .seq_truncate = cpu_seq_truncate,
    .seq_len = cpu_seq_len,
    .destroy = cpu_destroy,
};

static int weight_view(const gguf_tensor *t, int64_t n_in, int64_t n_out, cpu_weight *w, greta_error *err)
{
    if (!greta_cpu_matmul_supports(t->type))
        return greta_error_set(err, GRETA_ERR_UNSUPPORTED, "tensor '%s': type %s is not supported by the CPU backend",
                               t->name, ggml_type_name(t->type));
    if ((int64_t)t->ne[0] != n_in || (int64_t)t->ne[1] != n_out || ggml_row_bytes(t->type, t->ne[0]) == 0)
        return greta_error_set(err, GRETA_ERR_FORMAT,
                               "tensor '%s': shape [%" PRIu64 ", %" PRIu64 "] of type %s, expected [%" PRId64
                               ", %" PRId64 "] with rows a multiple of %u",
                               t->name, t->ne[0], t->ne[1], ggml_type_name(t->type), n_in, n_out,
                               ggml_type_block_elems(t->type));
    w->type = t->type;
    w->data = t->data;
    w->n_in = n_in;
    w->n_out = n_out;
    return GRETA_OK;
}

static int norm_copy(const gguf_tensor *t, int64_t dim, float *dst, greta_error *err)
{
    if (t->type != GGML_TYPE_F32 || (int64_t)t->ne[0] != dim)
        return greta_error_set(err, GRETA_ERR_FORMAT, "tensor '%s': norm weights must be F32 [%" PRId64 "]",
                               t->name, dim);
    memcpy(dst, t->data, (size_t)dim * sizeof(float));
    return GRETA_OK;
}

static int bind_weights(cpu_backend *b, const greta_model *m, greta_error *err)
{
    const cpu_config *c = &b->c;
    int rc = weight_view(m->tok_embd, c->dim, c->vocab, &b->tok_embd, err);
    if (!rc)
        rc = weight_view(m->output, c->dim, c->vocab, &b->output, err);
    if (!rc)
        rc = norm_copy(m->output_norm, c->dim, b->norms + 2 * c->n_layers * c->dim, err);
    b->output_norm = b->norms + 2 * c->n_layers * c->dim;
    for (int64_t l = 0; l < c->n_layers && !rc; l++) {
        const greta_layer_weights *M = &m->layers[l];
        cpu_layer *L = &b->layers[l];
        float *an = b->norms + 2 * l * c->dim, *fn = an + c->dim;
        L->attn_norm = an;
        L->ffn_norm = fn;
        if ((rc = norm_copy(M->attn_norm, c->dim, an, err)) || (rc = norm_copy(M->ffn_norm, c->dim, fn, err)) ||
            (rc = weight_view(M->wq, c->dim, c->q_dim, &L->wq, err)) ||
            (rc = weight_view(M->wk, c->dim, c->kv_dim, &L->wk, err)) ||
            (rc = weight_view(M->wv, c->dim, c->kv_dim, &L->wv, err)) ||
            (rc = weight_view(M->wo, c->q_dim, c->dim, &L->wo, err)) ||
            (rc = weight_view(M->w_gate, c->dim, c->ffn_dim, &L->w_gate, err)) ||
            (rc = weight_view(M->w_up, c->dim, c->ffn_dim, &L->w_up, err)) ||
            (rc = weight_view(M->w_down, c->ffn_dim, c->dim, &L->w_down, err)))
            break;
    }
    return rc;
}

static void *alloc_floats(uint64_t n)
{
    if (n > SIZE_MAX / sizeof(float))
        return NULL;
    void *p = NULL;
    if (posix_memalign(&p, 64, (size_t)(n ? n : 1) * sizeof(float)) != 0)
        return NULL;
    return p;
}

int greta_cpu_backend_create(const greta_model *m, const greta_backend_params *p,
                             greta_backend **out, greta_error *err)
{
    return greta_cpu_backend_create_opts(m, p, NULL, out, err);
}

int greta_cpu_backend_create_opts(const greta_model *m, const greta_backend_params *p,
                                  const greta_cpu_backend_opts *o, greta_backend **out, greta_error *err)
{
    *out = NULL;
    greta_mem_plan plan;
    int rc = greta_cpu_backend_plan(m, p, &plan, err);
    if (rc)
        return rc;
    greta_cpu_isa isa;
    if ((rc = greta_cpu_isa_resolve((greta_cpu_isa)p->cpu_isa, &isa, err)))
        return rc;
    cpu_backend *b = calloc(1, sizeof *b);
    if (!b)
        return greta_error_set(err, GRETA_ERR_NOMEM, "cpu backend: out of memory");
    b->base.ops = &cpu_ops;
    b->base.model = m;
    b->base.params = *p;
    b->base.params.cpu_isa = (int32_t)isa;
    b->base.impl = b;
    greta_backend_shape_from_model(m, &b->c);
    b->n_ctx = p->n_ctx;
    b->n_seq = p->n_seq;
    b->n_batch = p->n_batch;
    b->n_threads = p->n_threads;
    b->isa = isa;
    b->kv_f16 = o && o->kv_f16;
    snprintf(b->base.detail, sizeof b->base.detail, "%s kernels, %d thread%s%s", greta_cpu_isa_name(isa),
             p->n_threads, p->n_threads == 1 ? "" : "s", b->kv_f16 ? ", fp16 KV" : "");

    cpu_layout L;
    (void)arena_layout(&b->c, p, &L); /* checked by the plan */
    b->arena = alloc_floats(L.total);
    b->key_cache = calloc(1, plan.kv_bytes / 2);
    b->value_cache = calloc(1, plan.kv_bytes / 2);
    b->seq_len = calloc((size_t)p->n_seq, sizeof(int32_t));
    b->next_pos = calloc((size_t)p->n_seq, sizeof(int32_t));
    b->sel = calloc((size_t)p->n_batch, sizeof(int32_t));
    b->layers = calloc((size_t)b->c.n_layers + 1, sizeof *b->layers);
    if (!b->arena || !b->key_cache || !b->value_cache || !b->seq_len || !b->next_pos || !b->sel ||
        !b->layers) {
        cpu_destroy(&b->base);
        return greta_error_set(err, GRETA_ERR_NOMEM,
                               "cpu backend: cannot allocate %" PRIu64 " MiB of KV cache and scratch",
                               (plan.kv_bytes + plan.scratch_bytes) >> 20);
    }
    memset(b->arena, 0, (size_t)L.total * sizeof(float));
    b->x = b->arena + L.x;
    b->xb = b->arena + L.xb;
    b->xb2 = b->arena + L.xb2;
    b->q = b->arena + L.q;
    b->k = b->arena + L.k;
    b->v = b->arena + L.v;
    b->hb = b->arena + L.hb;
    b->hb2 = b->arena + L.hb2;
    b->rope = b->arena + L.rope;
    b->att = b->arena + L.att;
    b->work = b->arena + L.work;
    b->norms = b->arena + L.norms;
    if ((rc = bind_weights(b, m, err)) ||
        (rc = greta_threadpool_create(p->n_threads, &b->pool, err))) {
        cpu_destroy(&b->base);
        return rc;
    }
    *out = &b->base;
    return GRETA_OK;
}

const greta_backend_kind greta_cpu_backend_kind = {
    .name = "cpu",
    .plan = greta_cpu_backend_plan,
    .create = greta_cpu_backend_create,
};
