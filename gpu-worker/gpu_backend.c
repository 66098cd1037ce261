/* gpu_backend.c - the GPU backend (see gpu_backend.h).
 *
 * Layout of the file:
 *   config and weights   sizes from greta_model, device weight views
 *   memory plan          every device and pinned buffer, sized once
 *   forward pass         batch checks, ids upload, the layer loop, lm_head
 *   create / destroy
 */
#include "gpu_backend.h"
#include "backend_common.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gpu_prefill.h"
#include "kernels/gpu/decode_ops.h"
#include "kernels/quant.h"

#define GPU_MAX_CTX (1 << 24)
#define GPU_MAX_SEQ 4096
#define GPU_MAX_BATCH 65535 /* one grid dimension */
#define GPU_ALIGN 256
/* Device memory kept free beyond the plan (runtime, kernels, fragmentation). */
#define GPU_RESERVE_BYTES ((uint64_t)512 << 20)
/* v5 decode: steps whose positions are all below this use the one-block
 * attention (greta_gpu_attention_decode's one_block: no split to merge) and
 * a graph of their own; longer contexts the split kernel. H200, 7B: tg128
 * 392-397 against 376-382 tokens/s with the split kernel (the first 128
 * positions); at depth 128, 262 / 257 with the bound at 256 / 128 (that run
 * had a prefetch experiment on, slower for both; same lease). H100, tg128
 * from depth 256 / 512: 365.3 / 347.5 with the bound at 1024 against 367.0
 * / 360.1 at 256 (bench/results/2026-11-27-gpu-h200-decode-v5.txt). */
#define DEC_ONE_BLOCK_MAX 256

/* ---- config and weights ------------------------------------------------- */

typedef greta_backend_shape gpu_config; /* backend_common.h */

/* A weight matrix used as y = W x: n_out rows of n_in elements (GGUF type),
 * in device memory. */
typedef struct gpu_weight {
    uint32_t type;
    const void *d; /* device */
    int64_t n_in, n_out;
} gpu_weight;

typedef struct gpu_layer {
    const float *attn_norm, *ffn_norm; /* device [dim] */
    gpu_weight wq, wk, wv, wo, w_gate, w_up, w_down;
} gpu_layer;

/* Offsets (bytes) of the scratch buffers inside one device allocation. */
typedef struct gpu_layout {
    uint64_t x, xn, q, k, v, att, gate, up, rope, logits, partial, ints, topk, topk_scratch;
    uint64_t q8; /* decode: int8 activations of up to GRETA_GPU_MATVEC_MAX_TOK tokens (decode_ops.h) */
    uint64_t xh, wh, xh_elems, wh_elems; /* prefill, issue 8: fp16 scratch (gpu_prefill.h) */
    uint64_t total;
} gpu_layout;

typedef struct gpu_backend {
    greta_backend base;
    gpu_config c;
    int64_t n_ctx, n_seq, n_batch;
    greta_gpu_info info;
    greta_gpu_stream *stream;
    greta_gpu_kv_type kv; /* fp16 (the default) or fp32 (measurements) */

    uint8_t *d_weights; /* one allocation, see weights_layout */
    uint64_t weights_bytes;
    gpu_weight tok_embd, output;
    const float *output_norm;
    gpu_layer *layers; /* [n_layers] */

    uint8_t *d_kv;     /* K then V: [2][n_layers][n_seq][n_kv_heads][n_ctx][head_dim], fp16 or fp32 */
    uint64_t kv_bytes;
    uint8_t *d_scratch;
    gpu_layout L;
    float *x, *xn, *q, *k, *v, *att, *gate, *up, *rope, *logits, *partial; /* device, see the layout */
    int32_t *d_ints;   /* [4][T] for a batch of T tokens: tokens, pos, seq, selected rows (run_batch) */
    int32_t *d_topk;   /* a forward_topk's results as h_topk gets them */
    void *d_topk_scratch; /* greta_gpu_topk's (zeroed with the scratch) */

    int32_t *h_ints;   /* pinned, the same (the room of [4][n_batch]): one copy of 4 x T values a step */
    float *h_logits;   /* pinned [n_batch][vocab] */
    uint8_t *h_topk;   /* pinned: a forward_topk's n ids, n vals, n_sel lse (n = n_sel * k), one copy */
    /* greedy lookahead (greta_gpu_backend_opts.lookahead; forward_topk): a
     * step's result slot i (id, val, lse) alternates between the step being
     * read and the one enqueued after it; the top-1 kernel writes it into
     * host memory (no copy), and la_ev[i] is recorded after that kernel */
    int lookahead;
    int32_t *h_la;     /* pinned, mapped [2][4]: slot i at 4 * i */
    int32_t *d_la;     /* its address on the device */
    greta_gpu_event *la_ev[2];
    int la_on;         /* a step of (la_seq, la_pos, la_tok) is enqueued into slot la_slot */
    int la_slot;
    int32_t la_seq, la_pos, la_tok;
    uint64_t la_hits, la_misses;
    uint64_t pinned_bytes;
    uint64_t free_after_load;

    int32_t *seq_len;  /* [n_seq] */
    int32_t *next_pos; /* [n_seq] batch validation scratch */

    /* decode (n_tok <= GRETA_GPU_MATVEC_MAX_TOK), issue 7: see decode_settings */
    int kernels;       /* 1: fp32 GEMV (matvec.cu) of issue 5; 2: int8 activations (matvec_q8.cu) and fusions;
                          3: fp32 GEMV with R rows per warp and fusions (matvec_f32.cu);
                          4: 3 with programmatic dependent launch (greta_gpu_set_pdl);
                          5: 4 with the one-block decode attention below DEC_ONE_BLOCK_MAX positions;
                          6: 5 with the products after an RMSNorm from its a16 activations (a16_on);
                          7: 6 with v7's launch shapes (greta_gpu_set_decode_table);
                          8: 7 with table 2's grid for w_down (the same results) */
    int use_graph;     /* capture the decode step once per token count, then replay */
    int pdl;           /* v4+: programmatic dependent launch on (greta_gpu_set_pdl; NVIDIA sm_90+) */
    int v2_layers;     /* every layer matrix has a matvec_q8 kernel */
    int v2_output;     /* lm_head has one */
    void *q8;          /* device: v2's int8 or v6's a16 activations (act_row_bytes per token) */
    /* [n_tok - 1][1: one-block attention (v5, every position < DEC_ONE_BLOCK_MAX), else 0] */
    greta_gpu_graph *graphs[GRETA_GPU_MATVEC_MAX_TOK][2];
    int32_t graph_nsel[GRETA_GPU_MATVEC_MAX_TOK][2]; /* rows with logits the graph was captured for */

    /* prefill (n_tok > GRETA_GPU_MATVEC_MAX_TOK), issue 8: see prefill_step */
    gpu_prefill pf;

    /* decode profile (greta_gpu_backend_profile_start): events at block
     * boundaries of the steps run while it is on (graphs off then) */
    int prof_on;
    greta_gpu_event **prof_ev; /* [prof_cap] */
    int8_t *prof_blk;          /* [prof_cap]: block of the interval that ends at event i */
    int prof_cap, prof_used;
    int64_t prof_tokens; /* tokens of the step being profiled */
    double prof_block_bytes[GRETA_GPU_PROF_N]; /* weight bytes one step reads per block */
    greta_gpu_profile prof;
} gpu_backend;

static int add_u64(uint64_t *acc, uint64_t v) { return __builtin_add_overflow(*acc, v, acc); }

static uint64_t align_up(uint64_t v) { return (v + GPU_ALIGN - 1) & ~(uint64_t)(GPU_ALIGN - 1); }


static int check_params(const greta_model *m, const greta_backend_params *p, greta_error *err)
{
    const greta_model_config *mc = &m->cfg;
    int rc = greta_backend_check_limits(m, p, GPU_MAX_CTX, GPU_MAX_SEQ, GPU_MAX_BATCH, err);
    if (rc)
        return rc;
    if (mc->head_dim == 0 || mc->head_dim > 256 || mc->head_dim % 2 != 0)
        return greta_error_set(err, GRETA_ERR_UNSUPPORTED,
                               "head dimension %" PRIu32 " is not an even number in 2..256 (GPU attention)", mc->head_dim);
    if (mc->rope_dim == 0 || mc->rope_dim % 2 != 0 || mc->rope_dim > mc->head_dim)
        return greta_error_set(err, GRETA_ERR_FORMAT, "rope dimension %" PRIu32 " must be even and <= head dim %" PRIu32,
                               mc->rope_dim, mc->head_dim);
    return GRETA_OK;
}

/* Every tensor the forward pass reads, in upload order; tok_embd and output
 * share one slot when tied. Returns the count (<= cap). */
static int model_tensors(const greta_model *m, const gguf_tensor **t, int cap)
{
    int n = 0;
#define PUSH(x)                  \
    do {                         \
        if (n < cap)             \
            t[n] = (x);          \
        n++;                     \
    } while (0)
    PUSH(m->tok_embd);
    PUSH(m->output_norm);
    if (m->output != m->tok_embd)
        PUSH(m->output);
    for (uint32_t l = 0; l < m->cfg.n_layers; l++) {
        const greta_layer_weights *L = &m->layers[l];
        PUSH(L->attn_norm);
        PUSH(L->wq);
        PUSH(L->wk);
        PUSH(L->wv);
        PUSH(L->wo);
        PUSH(L->ffn_norm);
        PUSH(L->w_gate);
        PUSH(L->w_up);
        PUSH(L->w_down);
    }
#undef PUSH
    return n;
}

static int n_model_tensors(const greta_model *m)
{
    return 2 + (m->output != m->tok_embd) + 9 * (int)m->cfg.n_layers;
}

static uint64_t weights_total(const greta_model *m, const gguf_tensor **t, int n)
{
    (void)m;
    uint64_t s = 0;
    for (int i = 0; i < n; i++)
        s += align_up(t[i]->nbytes);
    return s;
}

/* Attention splits for a batch of n_tok tokens: about four blocks per
 * multiprocessor when the batch is small (decode), one chunk otherwise. */
static int32_t attention_splits(const gpu_config *c, int64_t n_ctx, int sm_count, int64_t n_tok)
{
    const int64_t blocks = n_tok * c->n_heads;
    const int64_t want = 4 * (int64_t)sm_count;
    if (blocks >= want)
        return 1;
    int64_t s = (want + blocks - 1) / blocks;
    const int64_t by_ctx = (n_ctx + 63) / 64; /* at least 64 positions per chunk */
    if (s > by_ctx)
        s = by_ctx;
    return s < 1 ? 1 : (int32_t)s;
}

/* The longest input of a decode product, rounded up to 256 (q8 rows). */
static int64_t q8_k(const gpu_config *c)
{
    int64_t k = c->dim > c->q_dim ? c->dim : c->q_dim;
    k = k > c->ffn_dim ? k : c->ffn_dim;
    return (k + 255) / 256 * 256;
}

/* Bytes per token of the quantized-activation scratch (b->q8): v2's int8
 * rows of any product input, or v6's a16 rows of an RMSNorm output. */
static uint64_t act_row_bytes(const gpu_config *c)
{
    const uint64_t q8 = (uint64_t)greta_gpu_q8_row_bytes(q8_k(c)), a16 = (uint64_t)greta_gpu_a16_row_bytes(c->dim);
    return q8 > a16 ? q8 : a16;
}

/* The largest input (k) and the largest layer matrix of the model. */
static void prefill_dims(const gpu_config *c, int64_t *max_k, int64_t *max_w)
{
    int64_t k = c->dim > c->q_dim ? c->dim : c->q_dim;
    *max_k = k > c->ffn_dim ? k : c->ffn_dim;
    const int64_t w[] = {c->q_dim * c->dim, c->kv_dim * c->dim, c->ffn_dim * c->dim};
    *max_w = 0;
    for (size_t i = 0; i < sizeof w / sizeof w[0]; i++)
        *max_w = w[i] > *max_w ? w[i] : *max_w;
}

static int scratch_layout(const gpu_config *c, const greta_backend_params *p, int sm_count, int prefill,
                          gpu_layout *L)
{
    int64_t max_k, max_w;
    prefill_dims(c, &max_k, &max_w);
    gpu_prefill_sizes(prefill, p->n_batch, max_k, max_w, &L->xh_elems, &L->wh_elems);
    const uint64_t nb = (uint64_t)p->n_batch;
    uint64_t partial = 0;
    for (int64_t t = 1; t <= p->n_batch; t++) {
        const int32_t s = attention_splits(c, p->n_ctx, sm_count, t);
        if (s == 1)
            break;
        const uint64_t f = (uint64_t)greta_gpu_attention_partial_floats((int32_t)t, (int32_t)c->n_heads,
                                                                        (int32_t)c->head_dim, s);
        if (f > partial)
            partial = f;
    }
    struct {
        uint64_t *off;
        uint64_t n, size;
    } items[] = {
        {&L->x, nb * c->dim, 4},       {&L->xn, nb * c->dim, 4},         {&L->q, nb * c->q_dim, 4},
        {&L->k, nb * c->kv_dim, 4},    {&L->v, nb * c->kv_dim, 4},       {&L->att, nb * c->q_dim, 4},
        {&L->gate, nb * c->ffn_dim, 4}, {&L->up, nb * c->ffn_dim, 4},    {&L->rope, nb * c->rope_dim, 4},
        {&L->logits, nb * c->vocab, 4}, {&L->partial, partial, 4},       {&L->ints, 4 * nb, 4},
        {&L->topk, nb * (2 * GRETA_GPU_TOPK_MAX + 1), 4},
        {&L->topk_scratch, (uint64_t)greta_gpu_topk_scratch_bytes((int32_t)nb), 1},
        {&L->q8, act_row_bytes(c) * (nb < GRETA_GPU_MATVEC_MAX_TOK ? nb : GRETA_GPU_MATVEC_MAX_TOK), 1},
        {&L->xh, L->xh_elems, 2},      {&L->wh, L->wh_elems, 2},
    };
    uint64_t off = 0;
    for (size_t i = 0; i < sizeof items / sizeof items[0]; i++) {
        uint64_t bytes;
        if (__builtin_mul_overflow(items[i].n, items[i].size, &bytes))
            return -1;
        *items[i].off = off;
        if (add_u64(&off, align_up(bytes)))
            return -1;
    }
    L->total = off;
    return 0;
}

static double gib(uint64_t b) { return (double)b / (1024.0 * 1024.0 * 1024.0); }

/* ---- memory plan ----------------------------------------------------------- */

typedef struct gpu_sizes {
    uint64_t weights, kv, scratch, pinned, logits_host;
    gpu_layout L;
} gpu_sizes;

static int compute_sizes(const greta_model *m, const greta_backend_params *p, int sm_count, greta_gpu_kv_type kvt,
                         int prefill, gpu_sizes *s, greta_error *err)
{
    gpu_config c;
    greta_backend_shape_from_model(m, &c);
    const int nt = n_model_tensors(m);
    const gguf_tensor **t = calloc((size_t)nt, sizeof *t);
    if (!t)
        return greta_error_set(err, GRETA_ERR_NOMEM, "gpu backend: out of memory");
    model_tensors(m, t, nt);
    s->weights = weights_total(m, t, nt);
    free(t);
    uint64_t kv = 2 * (uint64_t)greta_gpu_kv_elem_bytes(kvt);
    if (__builtin_mul_overflow(kv, (uint64_t)c.n_layers * (uint64_t)p->n_seq, &kv) ||
        __builtin_mul_overflow(kv, (uint64_t)p->n_ctx * (uint64_t)c.kv_dim, &kv) ||
        scratch_layout(&c, p, sm_count, prefill, &s->L) != 0)
        return greta_error_set(err, GRETA_ERR_LIMIT, "memory plan: sizes overflow 64 bits (n_ctx %d, n_seq %d, n_batch %d)",
                               p->n_ctx, p->n_seq, p->n_batch);
    s->kv = kv;
    s->scratch = s->L.total;
    s->logits_host = (uint64_t)p->n_batch * (uint64_t)c.vocab * sizeof(float);
    s->pinned = align_up(4 * (uint64_t)p->n_batch * sizeof(int32_t)) + align_up(s->logits_host) +
                align_up((uint64_t)p->n_batch * (2 * GRETA_GPU_TOPK_MAX + 1) * 4) + align_up(8 * sizeof(int32_t));
    return GRETA_OK;
}

/* Checks the device part of the plan against the free memory of the GPU. */
static int check_fit(const gpu_sizes *s, const greta_gpu_info *info, const greta_backend_params *p,
                     greta_error *err)
{
    const uint64_t need = s->weights + s->kv + s->scratch + GPU_RESERVE_BYTES;
    if (need <= info->free_mem)
        return GRETA_OK;
    return greta_error_set(err, GRETA_ERR_NOMEM,
                           "GPU memory: the model needs %.2f GiB on %s (weights %.2f + KV cache %.2f for "
                           "n_ctx %d x n_seq %d + scratch %.2f + %.2f reserved) but only %.2f GiB of %.2f are "
                           "free; lower the context length (-c), the sequences or the batch size",
                           gib(need), info->name, gib(s->weights), gib(s->kv), p->n_ctx, p->n_seq, gib(s->scratch),
                           gib(GPU_RESERVE_BYTES), gib(info->free_mem), gib(info->total_mem));
}

/* The KV cache of the engine's GPU backend (greta_gpu_backend_create and
 * _plan; greta_gpu_backend_create_opts takes its type from the options):
 * GRETA_GPU_KV=f16 (the default) or f32, twice the bytes and no flash
 * attention in prefill. With GRETA_GPU_PREFILL=v1 and GRETA_GPU_KERNELS=v5
 * it makes the fp32 configuration (fp32 operands throughout; docs/GPU.md,
 * "Precision"). */
static int kv_setting(greta_gpu_kv_type *out, greta_error *err)
{
    const char *e = getenv("GRETA_GPU_KV");
    *out = GRETA_GPU_KV_F16;
    if (!e || !*e || !strcmp(e, "f16"))
        return GRETA_OK;
    if (strcmp(e, "f32"))
        return greta_error_set(err, GRETA_ERR_INVALID, "GRETA_GPU_KV='%.40s': expected f16 or f32", e);
    *out = GRETA_GPU_KV_F32;
    return GRETA_OK;
}

int greta_gpu_backend_plan(const greta_model *m, const greta_backend_params *p, greta_mem_plan *plan,
                           greta_error *err)
{
    memset(plan, 0, sizeof *plan);
    int rc = check_params(m, p, err);
    if (rc)
        return rc;
    greta_gpu_kv_type kv;
    greta_gpu_info info;
    if ((rc = kv_setting(&kv, err)) || (rc = greta_gpu_open(0, &info, err)))
        return rc;
    gpu_sizes s;
    int prefill;
    if ((rc = gpu_prefill_resolve(GRETA_GPU_PREFILL_AUTO, &prefill, err)) ||
        (rc = compute_sizes(m, p, info.sm_count, kv, prefill, &s, err)) || (rc = check_fit(&s, &info, p, err)))
        return rc;
    plan->backend = "gpu";
    plan->kv_where = kv == GRETA_GPU_KV_F32 ? "GPU memory, fp32" : "GPU memory, fp16";
    plan->weights_bytes = s.weights;
    plan->kv_bytes = s.kv;
    plan->scratch_bytes = s.scratch;
    plan->logits_bytes = s.logits_host + s.pinned;
    plan->total_bytes = s.weights + s.kv + s.scratch + plan->logits_bytes;
    return GRETA_OK;
}

/* ---- forward pass ------------------------------------------------------------- */

static void *k_cache(const gpu_backend *b, int64_t layer)
{
    return b->d_kv + (uint64_t)layer * b->n_seq * b->n_ctx * b->c.kv_dim * greta_gpu_kv_elem_bytes(b->kv);
}

static void *v_cache(const gpu_backend *b, int64_t layer)
{
    return b->d_kv +
           ((uint64_t)b->c.n_layers + layer) * b->n_seq * b->n_ctx * b->c.kv_dim * greta_gpu_kv_elem_bytes(b->kv);
}

/* y (+)= W x for n_tok rows: the GEMV kernel for small batches, the
 * prefill path's GEMM otherwise (gpu_prefill.h; V1: the fp32 tiles). */
static int matmul(gpu_backend *b, const gpu_weight *w, const float *x, int64_t n_tok, float *y, int accumulate,
                  greta_error *err)
{
    if (n_tok <= GRETA_GPU_MATVEC_MAX_TOK)
        return greta_gpu_matvec(b->stream, w->type, w->d, w->n_in, w->n_out, x, w->n_in, (int32_t)n_tok, y,
                                w->n_out, accumulate, err);
    return gpu_prefill_matmul(&b->pf, b->stream, w->type, w->d, w->n_in, w->n_out, x, NULL, w->n_in, (int32_t)n_tok,
                              y, w->n_out, accumulate, err);
}

static int check_batch(gpu_backend *b, const greta_batch *batch, greta_error *err)
{
    return greta_backend_check_batch(batch, b->n_batch, b->c.vocab, b->n_seq, b->n_ctx, b->seq_len, b->next_pos,
                                     err);
}

/* ---- decode step (issue 7) --------------------------------------------------------- */

/* An on/off setting (default on): the option (1 on, 2 off, 0 the variable),
 * else the variable `var` ("0" or "1"). */
static int onoff_setting(int opt, const char *what, const char *var, int *out, greta_error *err)
{
    const char *e = getenv(var);
    *out = 1;
    if (opt == 1 || opt == 2)
        *out = opt == 1;
    else if (opt != 0)
        return greta_error_set(err, GRETA_ERR_INVALID, "gpu backend: %s %d is not 0, 1 or 2", what, opt);
    else if (e && *e) {
        if (strcmp(e, "0") && strcmp(e, "1"))
            return greta_error_set(err, GRETA_ERR_INVALID, "%s='%.40s': expected 0 or 1", var, e);
        *out = e[0] == '1';
    }
    return GRETA_OK;
}

/* GRETA_GPU_KERNELS=v1..v8, GRETA_GPU_GRAPH=0|1 and GRETA_GPU_LOOKAHEAD=0|1
 * (the options win when set): v1 is the fp32 GEMV of issue 5; v2 quantizes each product's
 * input to int8 once and runs the integer GEMV of matvec_q8.cu with
 * RMSNorm + quantize, Q/K/V and gate/up + SiLU fused into single launches
 * (on the random-weight 7B model its int8 activations move the logits far
 * beyond the parity limits: opt-in, see docs/GPU.md); v3 keeps fp32
 * activations with the GEMV of matvec_f32.cu (R rows per warp, Q/K/V and
 * gate/up + SiLU fused) where the types have it (Q4_K, Q6_K), v1
 * elsewhere; v4 is v3 with programmatic dependent launch (gpu_port.h:
 * each RMSNorm, GEMV and attention kernel starts while the previous one
 * finishes, the GEMVs loading their first weights meanwhile; the same
 * results); v5 is v4 with the one-block decode attention at short
 * contexts; v6 is v5 with the products that follow an RMSNorm (Q/K/V,
 * gate/up, lm_head) reading its output as 16-bit codes (act16.cuh, written
 * by the norm in the same launch) with integer dot products; v7 is v6
 * with the tuning table of greta_gpu_set_decode_table (launch shapes, the
 * attention's prefetch; the same results); v8 (the default) is v7 with
 * table 2 (w_down in a grid the GPU holds at once; the same results). The graph
 * (default on) records a decode step once per token count and replays it;
 * the greedy lookahead (default on, with the graph) is la_forward's. */
static int decode_settings(gpu_backend *b, const greta_model *m, const greta_gpu_backend_opts *o, greta_error *err)
{
    const char *ek = getenv("GRETA_GPU_KERNELS");
    b->kernels = 8;
    if (o->decode_kernels >= 1 && o->decode_kernels <= 8)
        b->kernels = o->decode_kernels;
    else if (o->decode_kernels != 0)
        return greta_error_set(err, GRETA_ERR_INVALID, "gpu backend: decode_kernels %d is not 0..8",
                               o->decode_kernels);
    else if (ek && *ek) {
        if (ek[0] == 'v' && ek[1] >= '1' && ek[1] <= '8' && !ek[2])
            b->kernels = ek[1] - '0';
        else
            return greta_error_set(err, GRETA_ERR_INVALID,
                                   "GRETA_GPU_KERNELS='%.40s': expected v1, v2, v3, v4, v5, v6, v7 or v8", ek);
    }
    int rc = onoff_setting(o->graph, "graph", "GRETA_GPU_GRAPH", &b->use_graph, err);
    if (!rc)
        rc = onoff_setting(o->lookahead, "lookahead", "GRETA_GPU_LOOKAHEAD", &b->lookahead, err);
    if (rc)
        return rc;
    const gpu_config *c = &b->c;
    b->v2_layers = c->dim % 256 == 0 && c->q_dim % 256 == 0 && c->ffn_dim % 256 == 0;
    for (uint32_t l = 0; l < m->cfg.n_layers && b->v2_layers; l++) {
        const greta_layer_weights *L = &m->layers[l];
        const gguf_tensor *t[7] = {L->wq, L->wk, L->wv, L->wo, L->w_gate, L->w_up, L->w_down};
        for (int i = 0; i < 7; i++)
            if (!greta_gpu_matvec_q8_supported(t[i]->type, (int64_t)t[i]->ne[0]))
                b->v2_layers = 0;
    }
    b->v2_output = greta_gpu_matvec_q8_supported(m->output->type, c->dim);
    return GRETA_OK;
}

static greta_gpu_mv_mat mv_of(const gpu_weight *w, float *y)
{
    const greta_gpu_mv_mat r = {.type = w->type, .w = w->d, .n = w->n_out, .y = y, .ld_y = w->n_out};
    return r;
}

/* y_i (+)= W_i x for n (1..3) matrices sharing the input x [T][k]: one
 * matvec_f32 launch (v3/v4) when every matrix has its kernel, else one v1
 * GEMV each. */
static int mv_group(gpu_backend *b, const gpu_weight *const *w, float *const *y, int n, const float *x, int64_t T,
                    int accumulate, greta_error *err)
{
    int fused = b->kernels >= 3;
    for (int i = 0; i < n; i++)
        fused = fused && greta_gpu_matvec_f32_supported(w[i]->type, w[i]->n_in) && w[i]->n_in == w[0]->n_in;
    if (fused) {
        greta_gpu_mv_mat m[3];
        for (int i = 0; i < n; i++)
            m[i] = mv_of(w[i], y[i]);
        return greta_gpu_matvec_f32(b->stream, x, w[0]->n_in, w[0]->n_in, (int32_t)T, m, n, accumulate, NULL, err);
    }
    for (int i = 0; i < n; i++) {
        const int rc = matmul(b, w[i], x, T, y[i], accumulate, err);
        if (rc)
            return rc;
    }
    return GRETA_OK;
}

/* v3 has a kernel for w (and v3 or later is chosen). */
static int v3_ok(const gpu_backend *b, const gpu_weight *w)
{
    return b->kernels >= 3 && greta_gpu_matvec_f32_supported(w->type, w->n_in);
}

/* v6: the RMSNorm before a product also writes its output as a16 (into
 * b->q8, rows of a16_ld bytes) and the product reads that. */
static int a16_on(const gpu_backend *b)
{
    return b->kernels >= 6 && greta_gpu_rmsnorm_a16_supported(b->c.dim);
}

static int64_t a16_ld(const gpu_backend *b)
{
    return greta_gpu_a16_row_bytes(b->c.dim);
}

/* RMSNorm of T rows of b->x-like input xs (weights w) into b->xn, and with
 * v6 into b->q8 as a16 too. */
static int norm_in(gpu_backend *b, const float *xs, const float *w, int64_t T, greta_error *err)
{
    const gpu_config *c = &b->c;
    if (a16_on(b))
        return greta_gpu_rmsnorm_a16(b->stream, xs, c->dim, w, b->xn, c->dim, (int32_t)T, c->dim, c->eps, b->q8,
                                     a16_ld(b), err);
    return greta_gpu_rmsnorm(b->stream, xs, c->dim, w, b->xn, c->dim, (int32_t)T, c->dim, c->eps, err);
}

/* RoPE of b->q and b->k, then k and v into layer l's cache: one launch for
 * v3, issue 5's three otherwise. */
static int rope_and_cache(gpu_backend *b, int64_t l, int64_t T, const int32_t *d_pos, const int32_t *d_seq,
                          greta_error *err)
{
    const gpu_config *c = &b->c;
    const int32_t t = (int32_t)T;
    greta_gpu_stream *s = b->stream;
    int rc;
    if (b->kernels >= 3)
        return greta_gpu_rope_kv_store(s, b->q, c->q_dim, b->k, b->v, c->kv_dim, t, (int32_t)c->n_heads,
                                       (int32_t)c->n_kv_heads, (int32_t)c->head_dim, (int32_t)c->rope_dim, b->rope,
                                       d_pos, d_seq, k_cache(b, l), v_cache(b, l), b->kv, (int32_t)b->n_ctx, err);
    if ((rc = greta_gpu_rope(s, b->q, c->q_dim, t, (int32_t)c->n_heads, (int32_t)c->head_dim, (int32_t)c->rope_dim,
                             b->rope, err)) ||
        (rc = greta_gpu_rope(s, b->k, c->kv_dim, t, (int32_t)c->n_kv_heads, (int32_t)c->head_dim,
                             (int32_t)c->rope_dim, b->rope, err)))
        return rc;
    return greta_gpu_kv_store(s, b->k, b->v, c->kv_dim, t, d_pos, d_seq, k_cache(b, l), v_cache(b, l), b->kv,
                              (int32_t)c->n_kv_heads, (int32_t)c->head_dim, (int32_t)b->n_ctx, err);
}

/* The attention inputs of layer l: RMSNorm, q, k, v, RoPE of q and k, k
 * and v into the cache. v3: RMSNorm, then one launch (matvec_f32 with its
 * Q/K/V fusion); else RMSNorm, the products, then RoPE + cache (one launch
 * for v3 when a matrix has no v3 kernel, three for v1/v2's kernels).
 * matvec_f32 can also fuse the RMSNorm, but on the H200 that was slower
 * (every block re-reads the norm weights: 28.4 us against 17.4 + 3.4 us
 * for the 7B Q/K/V, ncu; docs/GPU.md; in v5 with both norms fused, tg128
 * 372 against 401 tokens/s), so the norm stays a launch. */
static int attn_in(gpu_backend *b, const gpu_layer *L, int64_t l, int64_t T, const int32_t *d_pos,
                   const int32_t *d_seq, greta_error *err)
{
    const gpu_config *c = &b->c;
    const int32_t t = (int32_t)T;
    greta_gpu_stream *s = b->stream;
    int rc;
    if ((rc = norm_in(b, b->x, L->attn_norm, T, err)))
        return rc;
    if (v3_ok(b, &L->wq) && v3_ok(b, &L->wk) && v3_ok(b, &L->wv)) {
        const greta_gpu_mv_mat qkv[3] = {mv_of(&L->wq, b->q), mv_of(&L->wk, b->k), mv_of(&L->wv, b->v)};
        const greta_gpu_mv_fuse f = {.cs = b->rope,
                                     .rope_dim = (int32_t)c->rope_dim,
                                     .head_dim = (int32_t)c->head_dim,
                                     .n_kv_heads = (int32_t)c->n_kv_heads,
                                     .n_ctx = (int32_t)b->n_ctx,
                                     .d_pos = d_pos,
                                     .d_seq = d_seq,
                                     .k_cache = k_cache(b, l),
                                     .v_cache = v_cache(b, l),
                                     .kv = b->kv};
        if (a16_on(b))
            return greta_gpu_matvec_a16(s, b->q8, a16_ld(b), c->dim, t, qkv, 3, 0, &f, err);
        return greta_gpu_matvec_f32(s, b->xn, c->dim, c->dim, t, qkv, 3, 0, &f, err);
    }
    const gpu_weight *w[3] = {&L->wq, &L->wk, &L->wv};
    float *const y[3] = {b->q, b->k, b->v};
    if ((rc = mv_group(b, w, y, 3, b->xn, T, 0, err)))
        return rc;
    return rope_and_cache(b, l, T, d_pos, d_seq, err);
}

/* The FFN input half: b->gate = silu(W_gate xn) * (W_up xn), xn the FFN
 * RMSNorm of b->x (its own launch: see attn_in). */
static int ffn_glu(gpu_backend *b, const gpu_layer *L, int64_t T, greta_error *err)
{
    const gpu_config *c = &b->c;
    int rc = norm_in(b, b->x, L->ffn_norm, T, err);
    if (!rc && v3_ok(b, &L->w_gate) && L->w_gate.type == L->w_up.type) {
        const greta_gpu_mv_mat g = mv_of(&L->w_gate, NULL), u = mv_of(&L->w_up, NULL);
        if (a16_on(b))
            return greta_gpu_matvec_a16_glu(b->stream, b->q8, a16_ld(b), c->dim, (int32_t)T, &g, &u, b->gate,
                                            c->ffn_dim, err);
        return greta_gpu_matvec_f32_glu(b->stream, b->xn, c->dim, c->dim, (int32_t)T, &g, &u, NULL, b->gate,
                                        c->ffn_dim, err);
    }
    if (!rc)
        rc = matmul(b, &L->w_gate, b->xn, T, b->gate, 0, err);
    if (!rc)
        rc = matmul(b, &L->w_up, b->xn, T, b->up, 0, err);
    if (!rc)
        rc = greta_gpu_swiglu(b->stream, b->gate, b->up, c->ffn_dim, (int32_t)T, c->ffn_dim, err);
    return rc;
}

/* Records the event that ends an interval of block blk (profile on). */
static int prof_mark(gpu_backend *b, int blk, greta_error *err)
{
    if (!b->prof_on)
        return GRETA_OK;
    if (b->prof_used >= b->prof_cap)
        return greta_error_set(err, GRETA_ERR_STATE, "profile: more than %d marks in one step", b->prof_cap);
    b->prof_blk[b->prof_used] = (int8_t)blk;
    return greta_gpu_event_record(b->prof_ev[b->prof_used++], b->stream, err);
}

/* In the step functions below: return the status of a failing call (rc in scope). */
#define TRY(call)              \
    do {                       \
        if ((rc = (call)) != 0) \
            return rc;         \
    } while (0)

/* One decode step of T <= GRETA_GPU_MATVEC_MAX_TOK tokens whose ids are
 * already in d_ints, with the kernels b->kernels picks (the same ops as
 * run_batch's loop for v1); one_block: every position is below
 * DEC_ONE_BLOCK_MAX and v5 is on (the one-block decode attention). Host
 * values used: T, n_sel and one_block only, so it can be captured into a
 * graph. */
static int decode_step(gpu_backend *b, int64_t T, int32_t n_sel, int one_block, greta_error *err)
{
    const gpu_config *c = &b->c;
    const int32_t *d_tok = b->d_ints, *d_pos = b->d_ints + T, *d_seq = b->d_ints + 2 * T, *d_sel = b->d_ints + 3 * T;
    const int32_t splits = attention_splits(c, b->n_ctx, b->info.sm_count, T);
    const int v2 = b->kernels == 2 && b->v2_layers;
    const int32_t t = (int32_t)T;
    greta_gpu_stream *s = b->stream;
    int rc;
    b->prof_used = 0;
    TRY(prof_mark(b, -1, err));
    TRY(greta_gpu_embed_rope(s, b->tok_embd.type, b->tok_embd.d, c->dim, c->vocab, d_tok, t, b->x, c->dim, d_pos,
                             (int32_t)c->rope_dim, c->rope_base, c->rope_scale, b->rope, err));
    TRY(prof_mark(b, GRETA_GPU_PROF_OTHER, err));
    for (int64_t l = 0; l < c->n_layers; l++) {
        const gpu_layer *L = &b->layers[l];
        if (v2) {
            const greta_gpu_mv_mat qkv[3] = {mv_of(&L->wq, b->q), mv_of(&L->wk, b->k), mv_of(&L->wv, b->v)};
            TRY(greta_gpu_rmsnorm_q8(s, b->x, c->dim, L->attn_norm, b->xn, c->dim, t, c->dim, c->eps, b->q8, err));
            TRY(greta_gpu_matvec_q8(s, b->q8, c->dim, t, qkv, 3, 0, err));
            TRY(rope_and_cache(b, l, T, d_pos, d_seq, err));
        } else {
            TRY(attn_in(b, L, l, T, d_pos, d_seq, err));
        }
        TRY(prof_mark(b, GRETA_GPU_PROF_QKV, err));
        if (b->kernels >= 3 && greta_gpu_attention_decode_supported((int32_t)c->head_dim))
            TRY(greta_gpu_attention_decode(s, b->q, c->q_dim, k_cache(b, l), v_cache(b, l), b->kv, d_pos, d_seq, t,
                                           (int32_t)c->n_heads, (int32_t)c->n_kv_heads, (int32_t)c->head_dim,
                                           (int32_t)b->n_ctx, one_block ? 1 : splits, one_block, b->partial, b->att,
                                           c->q_dim, err));
        else
            TRY(greta_gpu_attention(s, b->q, c->q_dim, k_cache(b, l), v_cache(b, l), b->kv, d_pos, d_seq, t,
                                    (int32_t)c->n_heads, (int32_t)c->n_kv_heads, (int32_t)c->head_dim,
                                    (int32_t)b->n_ctx, splits, b->partial, b->att, c->q_dim, err));
        TRY(prof_mark(b, GRETA_GPU_PROF_ATTN, err));
        if (v2) {
            const greta_gpu_mv_mat wo = mv_of(&L->wo, b->x), gate = mv_of(&L->w_gate, NULL),
                                   up = mv_of(&L->w_up, NULL), down = mv_of(&L->w_down, b->x);
            TRY(greta_gpu_quantize_q8(s, b->att, c->q_dim, t, c->q_dim, b->q8, err));
            TRY(greta_gpu_matvec_q8(s, b->q8, c->q_dim, t, &wo, 1, 1, err));
            TRY(prof_mark(b, GRETA_GPU_PROF_WO, err));
            TRY(greta_gpu_rmsnorm_q8(s, b->x, c->dim, L->ffn_norm, b->xn, c->dim, t, c->dim, c->eps, b->q8, err));
            TRY(greta_gpu_matvec_q8_glu(s, b->q8, c->dim, t, &gate, &up, b->gate, c->ffn_dim, err));
            TRY(prof_mark(b, GRETA_GPU_PROF_FFN_W13, err));
            TRY(greta_gpu_quantize_q8(s, b->gate, c->ffn_dim, t, c->ffn_dim, b->q8, err));
            TRY(greta_gpu_matvec_q8(s, b->q8, c->ffn_dim, t, &down, 1, 1, err));
        } else {
            const gpu_weight *wo[1] = {&L->wo}, *wd[1] = {&L->w_down};
            float *const yx[1] = {b->x};
            TRY(mv_group(b, wo, yx, 1, b->att, T, 1, err));
            TRY(prof_mark(b, GRETA_GPU_PROF_WO, err));
            TRY(ffn_glu(b, L, T, err));
            TRY(prof_mark(b, GRETA_GPU_PROF_FFN_W13, err));
            TRY(mv_group(b, wd, yx, 1, b->gate, T, 1, err));
        }
        TRY(prof_mark(b, GRETA_GPU_PROF_FFN_W2, err));
    }
    if (n_sel > 0) {
        /* the rows with logits; every row (run_batch lists them in order: n_sel == T) needs no gather */
        const float *xs = b->x;
        if (n_sel != T) {
            TRY(greta_gpu_gather_rows(s, b->x, c->dim, d_sel, n_sel, c->dim, b->q, c->dim, err));
            xs = b->q;
        }
        if (b->kernels == 2 && b->v2_output && c->dim % 256 == 0) {
            const greta_gpu_mv_mat out = mv_of(&b->output, b->logits);
            TRY(greta_gpu_rmsnorm_q8(s, xs, c->dim, b->output_norm, b->xn, c->dim, n_sel, c->dim, c->eps, b->q8,
                                     err));
            TRY(greta_gpu_matvec_q8(s, b->q8, c->dim, n_sel, &out, 1, 0, err));
        } else {
            const gpu_weight *wout[1] = {&b->output};
            float *const ylog[1] = {b->logits};
            TRY(norm_in(b, xs, b->output_norm, n_sel, err));
            if (a16_on(b) && v3_ok(b, &b->output)) {
                const greta_gpu_mv_mat out = mv_of(&b->output, b->logits);
                TRY(greta_gpu_matvec_a16(s, b->q8, a16_ld(b), c->dim, n_sel, &out, 1, 0, NULL, err));
            } else {
                TRY(mv_group(b, wout, ylog, 1, b->xn, n_sel, 0, err));
            }
        }
        TRY(prof_mark(b, GRETA_GPU_PROF_LM_HEAD, err));
    }
    return GRETA_OK;
}

/* decode_step through a graph captured for (T, n_sel, one_block) and
 * replayed after; positions, sequences and ids live in d_ints, so steps
 * replay unchanged. */
static int decode_graph(gpu_backend *b, int64_t T, int32_t n_sel, int one_block, greta_error *err)
{
    greta_gpu_graph **g = &b->graphs[T - 1][one_block];
    if (*g && b->graph_nsel[T - 1][one_block] != n_sel)
        greta_gpu_graph_destroy(g);
    if (!*g) {
        int rc = greta_gpu_graph_begin(b->stream, err);
        if (rc)
            return rc;
        rc = decode_step(b, T, n_sel, one_block, err);
        greta_error e2 = {0};
        const int rc2 = greta_gpu_graph_end(b->stream, g, rc ? &e2 : err);
        if (rc) {
            greta_gpu_graph_destroy(g);
            return rc;
        }
        if (rc2)
            return rc2;
        b->graph_nsel[T - 1][one_block] = n_sel;
    }
    return greta_gpu_graph_launch(*g, b->stream, err);
}

/* ---- prefill step (issue 8) ---------------------------------------------------------- */

/* kv_store + the per-token attention for rows t0 .. t0+n-1 of a batch of T
 * tokens (d_ints laid out [4][T]) of layer l. */
static int attention_rows(gpu_backend *b, int64_t l, int64_t T, int64_t t0, int64_t n, greta_error *err)
{
    if (n == 0)
        return GRETA_OK;
    const gpu_config *c = &b->c;
    const int32_t *d_pos = b->d_ints + T + t0, *d_seq = b->d_ints + 2 * T + t0;
    const int32_t splits = attention_splits(c, b->n_ctx, b->info.sm_count, n);
    int rc = greta_gpu_kv_store(b->stream, b->k + t0 * c->kv_dim, b->v + t0 * c->kv_dim, c->kv_dim, (int32_t)n, d_pos,
                                d_seq, k_cache(b, l), v_cache(b, l), b->kv, (int32_t)c->n_kv_heads,
                                (int32_t)c->head_dim, (int32_t)b->n_ctx, err);
    if (!rc)
        rc = greta_gpu_attention(b->stream, b->q + t0 * c->q_dim, c->q_dim, k_cache(b, l), v_cache(b, l), b->kv, d_pos,
                                 d_seq, (int32_t)n, (int32_t)c->n_heads, (int32_t)c->n_kv_heads, (int32_t)c->head_dim,
                                 (int32_t)b->n_ctx, splits, b->partial, b->att + t0 * c->q_dim, c->q_dim, err);
    return rc;
}

/* Attention of layer l for the batch, KV store included: each run of one
 * sequence's consecutive positions of at least GRETA_GPU_FLASH_MIN_RUN
 * tokens by flash attention (KV store fused; fp16 cache), the rows between
 * such runs (decode tokens, short runs) by attention_rows, segment by
 * segment in batch order, so a segment sees the keys earlier ones stored. */
static int prefill_attention(gpu_backend *b, int64_t l, const greta_batch *batch, greta_error *err)
{
    const gpu_config *c = &b->c;
    const int64_t T = batch->n_tokens;
    const int flash = b->kv == GRETA_GPU_KV_F16;
    int64_t rest = 0;
    int rc;
    for (int64_t t = 0; t < T;) {
        int64_t e = t + 1;
        while (e < T && batch->seq[e] == batch->seq[t] && batch->pos[e] == batch->pos[e - 1] + 1)
            e++;
        if (flash && e - t >= GRETA_GPU_FLASH_MIN_RUN) {
            if ((rc = attention_rows(b, l, T, rest, t - rest, err)) ||
                (rc = greta_gpu_flash_attn(b->stream, b->q + t * c->q_dim, c->q_dim, b->k + t * c->kv_dim,
                                           b->v + t * c->kv_dim, c->kv_dim, (uint16_t *)k_cache(b, l),
                                           (uint16_t *)v_cache(b, l), batch->seq[t], batch->pos[t], (int32_t)(e - t),
                                           (int32_t)c->n_heads, (int32_t)c->n_kv_heads, (int32_t)c->head_dim,
                                           (int32_t)b->n_ctx, b->att + t * c->q_dim, c->q_dim, err)))
                return rc;
            rest = e;
        }
        t = e;
    }
    return attention_rows(b, l, T, rest, T - rest, err);
}

/* A batch of more than GRETA_GPU_MATVEC_MAX_TOK tokens (ids already in
 * d_ints) with the prefill path b->pf.mode (MMA or CUBLAS): RMSNorm and
 * SwiGLU write fp16 rows into pf.xh, the GEMM inputs; the products write
 * fp32 (the residual adds accumulate into x); attention by
 * prefill_attention; the lm_head rows as in run_batch. */
static int prefill_step(gpu_backend *b, const greta_batch *batch, int32_t n_sel, greta_error *err)
{
    const gpu_config *c = &b->c;
    const int32_t t = batch->n_tokens;
    const int32_t *d_tok = b->d_ints, *d_pos = b->d_ints + t, *d_sel = b->d_ints + 3 * t; /* [4][t] (run_batch) */
    greta_gpu_stream *s = b->stream;
    uint16_t *xh = b->pf.xh;
    int rc;
#define MM(w, ld, y, acc)                                                                                      \
    gpu_prefill_matmul(&b->pf, s, (w)->type, (w)->d, (w)->n_in, (w)->n_out, NULL, xh, (ld), t, (y), (w)->n_out, \
                       (acc), err)
    TRY(greta_gpu_embed_rope(s, b->tok_embd.type, b->tok_embd.d, c->dim, c->vocab, d_tok, t, b->x, c->dim, d_pos,
                             (int32_t)c->rope_dim, c->rope_base, c->rope_scale, b->rope, err));
    for (int64_t l = 0; l < c->n_layers; l++) {
        const gpu_layer *L = &b->layers[l];
        TRY(greta_gpu_rmsnorm_f16(s, b->x, c->dim, L->attn_norm, xh, c->dim, t, c->dim, c->eps, err));
        TRY(MM(&L->wq, c->dim, b->q, 0));
        TRY(MM(&L->wk, c->dim, b->k, 0));
        TRY(MM(&L->wv, c->dim, b->v, 0));
        TRY(greta_gpu_rope(s, b->q, c->q_dim, t, (int32_t)c->n_heads, (int32_t)c->head_dim, (int32_t)c->rope_dim,
                           b->rope, err));
        TRY(greta_gpu_rope(s, b->k, c->kv_dim, t, (int32_t)c->n_kv_heads, (int32_t)c->head_dim,
                           (int32_t)c->rope_dim, b->rope, err));
        TRY(prefill_attention(b, l, batch, err));
        TRY(greta_gpu_f32_to_f16(s, b->att, c->q_dim, t, c->q_dim, xh, c->q_dim, err));
        TRY(MM(&L->wo, c->q_dim, b->x, 1));
        TRY(greta_gpu_rmsnorm_f16(s, b->x, c->dim, L->ffn_norm, xh, c->dim, t, c->dim, c->eps, err));
        TRY(MM(&L->w_gate, c->dim, b->gate, 0));
        TRY(MM(&L->w_up, c->dim, b->up, 0));
        TRY(greta_gpu_swiglu_f16(s, b->gate, b->up, c->ffn_dim, t, c->ffn_dim, xh, c->ffn_dim, err));
        TRY(MM(&L->w_down, c->ffn_dim, b->x, 1));
    }
    if (n_sel > 0) {
        TRY(greta_gpu_gather_rows(s, b->x, c->dim, d_sel, n_sel, c->dim, b->q, c->dim, err));
        TRY(greta_gpu_rmsnorm(s, b->q, c->dim, b->output_norm, b->xn, c->dim, n_sel, c->dim, c->eps, err));
        TRY(matmul(b, &b->output, b->xn, n_sel, b->logits, 0, err));
    }
#undef MM
    return GRETA_OK;
}

/* Whether a decode step whose last position is pmax takes v5's one-block
 * attention (every position below DEC_ONE_BLOCK_MAX). */
static int one_block_for(const gpu_backend *b, int32_t pmax)
{
    return b->kernels >= 5 && greta_gpu_attention_decode_supported((int32_t)b->c.head_dim) &&
           pmax < DEC_ONE_BLOCK_MAX;
}

/* Runs the whole batch on the stream, up to the logits of the selected rows
 * in b->logits ([n_sel][vocab], device). Does not wait for the GPU. */
static int run_batch(gpu_backend *b, const greta_batch *batch, int32_t *n_sel_out, greta_error *err)
{
    const gpu_config *c = &b->c;
    const int64_t T = batch->n_tokens; /* the ints of this batch laid out [4][T] */
    int32_t *h_tok = b->h_ints, *h_pos = b->h_ints + T, *h_seq = b->h_ints + 2 * T, *h_sel = b->h_ints + 3 * T;
    int32_t n_sel = 0;
    memcpy(h_tok, batch->tokens, (size_t)T * sizeof(int32_t));
    memcpy(h_pos, batch->pos, (size_t)T * sizeof(int32_t));
    memcpy(h_seq, batch->seq, (size_t)T * sizeof(int32_t));
    for (int64_t t = 0; t < T; t++)
        if (batch->want_logits ? batch->want_logits[t] != 0 : t == T - 1)
            h_sel[n_sel++] = (int32_t)t;
    *n_sel_out = n_sel;
    const int32_t *d_tok = b->d_ints, *d_pos = b->d_ints + T, *d_seq = b->d_ints + 2 * T, *d_sel = b->d_ints + 3 * T;
    const int32_t splits = attention_splits(c, b->n_ctx, b->info.sm_count, T);
    greta_gpu_stream *s = b->stream;
    int rc;
    TRY(greta_gpu_copy(b->d_ints, b->h_ints, 4 * (size_t)T * sizeof(int32_t), GRETA_GPU_H2D, s, err));
    int32_t pmax = 0;
    for (int64_t t = 0; t < T; t++)
        pmax = batch->pos[t] > pmax ? batch->pos[t] : pmax;
    const int one_block = one_block_for(b, pmax);
    if (T <= GRETA_GPU_MATVEC_MAX_TOK && b->use_graph && !b->prof_on)
        return decode_graph(b, T, n_sel, one_block, err);
    if (T <= GRETA_GPU_MATVEC_MAX_TOK) {
        b->prof_tokens = T;
        if (b->prof_on) /* KV bytes the attention reads: every layer, K and V, positions 0..pos */
            for (int64_t t = 0; t < T; t++)
                b->prof.bytes[GRETA_GPU_PROF_ATTN] += (double)(batch->pos[t] + 1) * (double)c->kv_dim *
                                                      (b->kv == GRETA_GPU_KV_F32 ? 4.0 : 2.0) * 2.0 *
                                                      (double)c->n_layers;
        return decode_step(b, T, n_sel, one_block, err);
    }
    if (T > GRETA_GPU_MATVEC_MAX_TOK && b->pf.mode != GRETA_GPU_PREFILL_V1)
        return prefill_step(b, batch, n_sel, err);
    TRY(greta_gpu_embed_rope(s, b->tok_embd.type, b->tok_embd.d, c->dim, c->vocab, d_tok, (int32_t)T, b->x, c->dim,
                             d_pos, (int32_t)c->rope_dim, c->rope_base, c->rope_scale, b->rope, err));
    for (int64_t l = 0; l < c->n_layers; l++) {
        const gpu_layer *L = &b->layers[l];
        TRY(greta_gpu_rmsnorm(s, b->x, c->dim, L->attn_norm, b->xn, c->dim, (int32_t)T, c->dim, c->eps, err));
        TRY(matmul(b, &L->wq, b->xn, T, b->q, 0, err));
        TRY(matmul(b, &L->wk, b->xn, T, b->k, 0, err));
        TRY(matmul(b, &L->wv, b->xn, T, b->v, 0, err));
        TRY(greta_gpu_rope(s, b->q, c->q_dim, (int32_t)T, (int32_t)c->n_heads, (int32_t)c->head_dim,
                           (int32_t)c->rope_dim, b->rope, err));
        TRY(greta_gpu_rope(s, b->k, c->kv_dim, (int32_t)T, (int32_t)c->n_kv_heads, (int32_t)c->head_dim,
                           (int32_t)c->rope_dim, b->rope, err));
        TRY(greta_gpu_kv_store(s, b->k, b->v, c->kv_dim, (int32_t)T, d_pos, d_seq, k_cache(b, l), v_cache(b, l),
                               b->kv, (int32_t)c->n_kv_heads, (int32_t)c->head_dim, (int32_t)b->n_ctx, err));
        TRY(greta_gpu_attention(s, b->q, c->q_dim, k_cache(b, l), v_cache(b, l), b->kv, d_pos, d_seq, (int32_t)T,
                                (int32_t)c->n_heads, (int32_t)c->n_kv_heads, (int32_t)c->head_dim, (int32_t)b->n_ctx,
                                splits, b->partial, b->att, c->q_dim, err));
        TRY(matmul(b, &L->wo, b->att, T, b->x, 1, err));
        TRY(greta_gpu_rmsnorm(s, b->x, c->dim, L->ffn_norm, b->xn, c->dim, (int32_t)T, c->dim, c->eps, err));
        TRY(matmul(b, &L->w_gate, b->xn, T, b->gate, 0, err));
        TRY(matmul(b, &L->w_up, b->xn, T, b->up, 0, err));
        TRY(greta_gpu_swiglu(s, b->gate, b->up, c->ffn_dim, (int32_t)T, c->ffn_dim, err));
        TRY(matmul(b, &L->w_down, b->gate, T, b->x, 1, err));
    }
    if (n_sel > 0) {
        /* final norm of the selected rows into xn (its first n_sel rows), lm_head */
        TRY(greta_gpu_gather_rows(s, b->x, c->dim, d_sel, n_sel, c->dim, b->q, c->dim, err));
        TRY(greta_gpu_rmsnorm(s, b->q, c->dim, b->output_norm, b->xn, c->dim, n_sel, c->dim, c->eps, err));
        TRY(matmul(b, &b->output, b->xn, n_sel, b->logits, 0, err));
    }
    return GRETA_OK;
}

/* ---- decode profile ------------------------------------------------------------------ */

/* After the stream is synchronized: the intervals of the step just run. */
static int prof_collect(gpu_backend *b, greta_error *err)
{
    if (!b->prof_on || b->prof_used < 2)
        return GRETA_OK;
    int seen[GRETA_GPU_PROF_N] = {0};
    for (int i = 1; i < b->prof_used; i++) {
        float ms = 0.0f;
        const int rc = greta_gpu_event_elapsed(b->prof_ev[i - 1], b->prof_ev[i], &ms, err);
        if (rc)
            return rc;
        b->prof.ms[b->prof_blk[i]] += ms;
        seen[b->prof_blk[i]] = 1;
    }
    for (int k = 0; k < GRETA_GPU_PROF_N; k++)
        if (seen[k] && k != GRETA_GPU_PROF_ATTN)
            b->prof.bytes[k] += b->prof_block_bytes[k];
    b->prof.steps++;
    b->prof.tokens += b->prof_tokens;
    b->prof_used = 0;
    return GRETA_OK;
}

static const char *const prof_names[GRETA_GPU_PROF_N] = {"other",    "qkv",    "attention", "wo",
                                                         "ffn_w1w3", "ffn_w2", "lm_head"};

const char *greta_gpu_prof_block_name(int blk)
{
    return blk >= 0 && blk < GRETA_GPU_PROF_N ? prof_names[blk] : "?";
}

static double weight_bytes(const gpu_weight *w)
{
    return (double)ggml_row_bytes(w->type, (uint64_t)w->n_in) * (double)w->n_out;
}

static void prof_free(gpu_backend *b)
{
    for (int i = 0; i < b->prof_cap; i++)
        greta_gpu_event_destroy(&b->prof_ev[i]);
    free(b->prof_ev);
    free(b->prof_blk);
    b->prof_ev = NULL;
    b->prof_blk = NULL;
    b->prof_cap = b->prof_used = 0;
    b->prof_on = 0;
}

int greta_gpu_backend_profile_start(greta_backend *base, greta_error *err)
{
    if (!greta_gpu_backend_is(base))
        return greta_error_set(err, GRETA_ERR_INVALID, "profile: not a GPU backend");
    gpu_backend *b = base->impl;
    prof_free(b);
    const int cap = 2 + 5 * (int)b->c.n_layers + 2;
    b->prof_ev = calloc((size_t)cap, sizeof *b->prof_ev);
    b->prof_blk = calloc((size_t)cap, 1);
    if (!b->prof_ev || !b->prof_blk) {
        prof_free(b);
        return greta_error_set(err, GRETA_ERR_NOMEM, "profile: out of memory");
    }
    for (int i = 0; i < cap; i++) {
        const int rc = greta_gpu_event_create(&b->prof_ev[i], err);
        b->prof_cap = i + 1;
        if (rc) {
            prof_free(b);
            return rc;
        }
    }
    memset(&b->prof, 0, sizeof b->prof);
    memset(b->prof_block_bytes, 0, sizeof b->prof_block_bytes);
    for (int64_t l = 0; l < b->c.n_layers; l++) {
        const gpu_layer *L = &b->layers[l];
        b->prof_block_bytes[GRETA_GPU_PROF_QKV] += weight_bytes(&L->wq) + weight_bytes(&L->wk) + weight_bytes(&L->wv);
        b->prof_block_bytes[GRETA_GPU_PROF_WO] += weight_bytes(&L->wo);
        b->prof_block_bytes[GRETA_GPU_PROF_FFN_W13] += weight_bytes(&L->w_gate) + weight_bytes(&L->w_up);
        b->prof_block_bytes[GRETA_GPU_PROF_FFN_W2] += weight_bytes(&L->w_down);
    }
    b->prof_block_bytes[GRETA_GPU_PROF_LM_HEAD] = weight_bytes(&b->output);
    b->prof_on = 1;
    return GRETA_OK;
}

int greta_gpu_backend_profile_stop(greta_backend *base, greta_gpu_profile *out, greta_error *err)
{
    if (!greta_gpu_backend_is(base))
        return greta_error_set(err, GRETA_ERR_INVALID, "profile: not a GPU backend");
    gpu_backend *b = base->impl;
    if (out)
        *out = b->prof;
    prof_free(b);
    return GRETA_OK;
}

/* ---- greedy lookahead (greta_gpu_backend_opts.lookahead) ---------------------------- */

/* Whether a forward_topk call goes through the lookahead: k 1 of one token
 * with logits, on the decode graph. */
static int la_fits(const gpu_backend *b, const greta_batch *batch, int32_t k)
{
    return b->lookahead && b->use_graph && !b->prof_on && k == 1 && batch->n_tokens == 1 &&
           (!batch->want_logits || batch->want_logits[0]);
}

/* A step the lookahead enqueued that this call does not take: counted and
 * waited for, so its slot is free again (the call's own work runs after
 * it on the stream anyway). Its cache row lies past the sequence's length
 * and is written again before any step reads it. */
static int la_drop(gpu_backend *b, greta_error *err)
{
    if (!b->la_on)
        return GRETA_OK;
    b->la_on = 0;
    b->la_misses++;
    return greta_gpu_event_sync(b->la_ev[b->la_slot], err);
}

/* The top-1 of the step just enqueued (one row): id, val and lse written
 * by the kernel into slot `slot` in host memory, whose event is recorded
 * after it; d_ints become the next step's (greta_gpu_topk1_next: that
 * top-1 at the next position of the same sequence). */
static int la_result(gpu_backend *b, int slot, greta_error *err)
{
    int32_t *r = b->d_la + 4 * slot;
    int rc = greta_gpu_topk1_next(b->stream, b->logits, b->c.vocab, r, (float *)(r + 1), (float *)(r + 2),
                                  b->d_topk_scratch, b->d_ints, err);
    if (!rc)
        rc = greta_gpu_event_record(b->la_ev[slot], b->stream, err);
    return rc;
}

/* Enqueues the step after the one just enqueued (la_result left its ints
 * in d_ints: that step's top-1 at position pos of sequence seq), its
 * result into slot `slot`. */
static int la_enqueue(gpu_backend *b, int32_t seq, int32_t pos, int slot, greta_error *err)
{
    int rc;
    if ((rc = decode_graph(b, 1, 1, one_block_for(b, pos), err)) || (rc = la_result(b, slot, err)))
        return rc;
    b->la_on = 1;
    b->la_slot = slot;
    b->la_seq = seq;
    b->la_pos = pos;
    return GRETA_OK;
}

/* forward_topk through the lookahead (la_fits): the step is the one
 * enqueued by the previous call, or runs now; either way the step after it
 * (where the context has room) is enqueued before this one's result is
 * waited for. */
static int la_forward(gpu_backend *b, const greta_batch *batch, int32_t *id, float *val, float *lse,
                      greta_error *err)
{
    const int32_t seq = batch->seq[0], pos = batch->pos[0];
    int slot, rc;
    if (b->la_on && b->la_seq == seq && b->la_pos == pos && b->la_tok == batch->tokens[0]) {
        slot = b->la_slot;
        b->la_on = 0;
        b->la_hits++;
    } else {
        int32_t n_sel = 0;
        slot = 0;
        if ((rc = la_drop(b, err)) || (rc = run_batch(b, batch, &n_sel, err)))
            return rc;
        (void)n_sel; /* 1: la_fits */
        if ((rc = la_result(b, slot, err)))
            return rc;
    }
    if (((int64_t)pos + 1 < b->n_ctx && (rc = la_enqueue(b, seq, pos + 1, 1 - slot, err))) ||
        (rc = greta_gpu_event_sync(b->la_ev[slot], err)))
        return rc;
    const int32_t *r = b->h_la + 4 * slot;
    *id = r[0];
    memcpy(val, &r[1], sizeof *val);
    memcpy(lse, &r[2], sizeof *lse);
    b->la_tok = *id;
    return GRETA_OK;
}

static int gpu_forward(greta_backend *base, const greta_batch *batch, float *logits, greta_error *err)
{
    gpu_backend *b = base->impl;
    int rc = check_batch(b, batch, err);
    if (rc)
        return rc;
    int32_t n_sel = 0;
    if ((rc = la_drop(b, err)) || (rc = run_batch(b, batch, &n_sel, err)))
        return greta_error_prefix(err, "gpu forward");
    const size_t bytes = (size_t)n_sel * (size_t)b->c.vocab * sizeof(float);
    if ((rc = greta_gpu_copy(b->h_logits, b->logits, bytes, GRETA_GPU_D2H, b->stream, err)) ||
        (rc = greta_gpu_stream_sync(b->stream, err)) || (rc = prof_collect(b, err)))
        return greta_error_prefix(err, "gpu forward");
    if (bytes)
        memcpy(logits, b->h_logits, bytes);
    memcpy(b->seq_len, b->next_pos, (size_t)b->n_seq * sizeof(int32_t));
    return GRETA_OK;
}

/* forward_topk through the lookahead (la_fits): la_forward. */
static int topk_ahead(gpu_backend *b, const greta_batch *batch, int32_t *ids, float *vals, float *lse,
                      greta_error *err)
{
    const int rc = la_forward(b, batch, ids, vals, lse, err);
    if (rc)
        b->la_on = 0; /* the stream's state is unknown: nothing to take */
    return rc;
}

/* forward_topk without it: any step ahead dropped, the batch, the top k of
 * the selected rows; ids, vals and lse packed one after the other, so one
 * copy brings them back (each copy is an operation of its own on the
 * stream). */
static int topk_now(gpu_backend *b, const greta_batch *batch, int32_t k, int32_t *ids, float *vals, float *lse,
                    greta_error *err)
{
    int32_t n_sel = 0;
    int rc;
    if ((rc = la_drop(b, err)) || (rc = run_batch(b, batch, &n_sel, err)))
        return rc;
    const size_t n = (size_t)n_sel * (size_t)k;
    const int32_t *h_ids = (const int32_t *)b->h_topk;
    const float *h_vals = (const float *)(b->h_topk + n * 4), *h_lse = (const float *)(b->h_topk + n * 8);
    if (n_sel > 0 &&
        ((rc = greta_gpu_topk(b->stream, b->logits, b->c.vocab, n_sel, b->c.vocab, k, b->d_topk,
                              (float *)(b->d_topk + n), (float *)(b->d_topk + 2 * n), b->d_topk_scratch, err)) ||
         (rc = greta_gpu_copy(b->h_topk, b->d_topk, (2 * n + (size_t)n_sel) * 4, GRETA_GPU_D2H, b->stream, err))))
        return rc;
    if ((rc = greta_gpu_stream_sync(b->stream, err)) || (rc = prof_collect(b, err)))
        return rc;
    memcpy(ids, h_ids, n * 4);
    memcpy(vals, h_vals, n * 4);
    memcpy(lse, h_lse, (size_t)n_sel * 4);
    return GRETA_OK;
}

/* backend.h forward_topk: the batch as forward, then per requested row the
 * k best logits chosen on the GPU (topk.cu) and the row's log-sum-exp; only
 * those come back (a greedy step reads 12 bytes instead of the vocabulary).
 * Greedy steps of one token go through the lookahead when it is on. */
static int gpu_forward_topk(greta_backend *base, const greta_batch *batch, int32_t k, int32_t *ids, float *vals,
                            float *lse, greta_error *err)
{
    gpu_backend *b = base->impl;
    const int32_t kmax = GRETA_GPU_TOPK_MAX < GRETA_BACKEND_TOPK_MAX ? GRETA_GPU_TOPK_MAX : GRETA_BACKEND_TOPK_MAX;
    if (k < 1 || k > kmax || k > b->c.vocab)
        return greta_error_set(err, GRETA_ERR_INVALID, "forward_topk: k = %d is outside 1..%d", k,
                               kmax < b->c.vocab ? kmax : (int32_t)b->c.vocab);
    if (!ids || !vals || !lse)
        return greta_error_set(err, GRETA_ERR_INVALID, "forward_topk: ids, vals and lse are required");
    int rc = check_batch(b, batch, err);
    if (rc)
        return rc;
    rc = la_fits(b, batch, k) ? topk_ahead(b, batch, ids, vals, lse, err)
                              : topk_now(b, batch, k, ids, vals, lse, err);
    if (rc)
        return greta_error_prefix(err, "gpu forward");
    memcpy(b->seq_len, b->next_pos, (size_t)b->n_seq * sizeof(int32_t));
    return GRETA_OK;
}

static int gpu_seq_truncate(greta_backend *base, int32_t seq, int32_t n_keep, greta_error *err)
{
    gpu_backend *b = base->impl;
    if (seq < 0 || seq >= b->n_seq)
        return greta_error_set(err, GRETA_ERR_INVALID, "seq_truncate: sequence %d is outside 0..%" PRId64, seq,
                               b->n_seq - 1);
    if (n_keep < 0)
        return greta_error_set(err, GRETA_ERR_INVALID, "seq_truncate: n_keep %d is negative", n_keep);
    if (n_keep < b->seq_len[seq])
        b->seq_len[seq] = n_keep; /* positions past it are overwritten when the sequence grows again */
    return GRETA_OK;
}

static int32_t gpu_seq_len(const greta_backend *base, int32_t seq)
{
    const gpu_backend *b = base->impl;
    return seq >= 0 && seq < b->n_seq ? b->seq_len[seq] : 0;
}

/* ---- create / destroy -------------------------------------------------------- */

static void gpu_destroy(greta_backend *base)
{
    if (!base)
        return;
    gpu_backend *b = base->impl;
    if (b->stream) {
        greta_error e = {0};
        (void)greta_gpu_stream_sync(b->stream, &e);
    }
    prof_free(b);
    greta_gpu_free(b->d_weights);
    greta_gpu_free(b->d_kv);
    greta_gpu_free(b->d_scratch);
    greta_gpu_free_host(b->h_ints);
    greta_gpu_free_host(b->h_logits);
    greta_gpu_free_host(b->h_topk);
    greta_gpu_free_host(b->h_la);
    greta_gpu_event_destroy(&b->la_ev[0]);
    greta_gpu_event_destroy(&b->la_ev[1]);
    for (int i = 0; i < GRETA_GPU_MATVEC_MAX_TOK; i++)
        for (int j = 0; j < 2; j++)
            greta_gpu_graph_destroy(&b->graphs[i][j]);
    gpu_prefill_free(&b->pf);
    greta_gpu_stream_destroy(&b->stream);
    free(b->layers);
    free(b->seq_len);
    free(b->next_pos);
    free(b);
}

static const greta_backend_ops gpu_ops = {
    .name = "gpu",
    .forward = gpu_forward,
    .forward_topk = gpu_forward_topk,
    .seq_truncate = gpu_seq_truncate,
    .seq_len = gpu_seq_len,
    .destroy = gpu_destroy,
};

int greta_gpu_backend_is(const greta_backend *b)
{
    return b && b->ops == &gpu_ops;
}

int greta_gpu_backend_lookahead(const greta_backend *base, uint64_t *hits, uint64_t *misses, greta_error *err)
{
    if (!greta_gpu_backend_is(base))
        return greta_error_set(err, GRETA_ERR_INVALID, "lookahead: not a GPU backend");
    const gpu_backend *b = base->impl;
    if (hits)
        *hits = b->la_hits;
    if (misses)
        *misses = b->la_misses;
    return GRETA_OK;
}

static int weight_check(const gguf_tensor *t, int64_t n_in, int64_t n_out, greta_error *err)
{
    if (!ggml_type_supported(t->type) || t->type == GGML_TYPE_Q8_K)
        return greta_error_set(err, GRETA_ERR_UNSUPPORTED, "tensor '%s': type %s is not supported by the GPU backend",
                               t->name, ggml_type_name(t->type));
    if ((int64_t)t->ne[0] != n_in || (int64_t)t->ne[1] != n_out || ggml_row_bytes(t->type, t->ne[0]) == 0)
        return greta_error_set(err, GRETA_ERR_FORMAT,
                               "tensor '%s': shape [%" PRIu64 ", %" PRIu64 "] of type %s, expected [%" PRId64 ", %" PRId64
                               "] with rows a multiple of %u",
                               t->name, t->ne[0], t->ne[1], ggml_type_name(t->type), n_in, n_out,
                               ggml_type_block_elems(t->type));
    return GRETA_OK;
}

static int norm_check(const gguf_tensor *t, int64_t dim, greta_error *err)
{
    if (t->type != GGML_TYPE_F32 || (int64_t)t->ne[0] != dim)
        return greta_error_set(err, GRETA_ERR_FORMAT, "tensor '%s': norm weights must be F32 [%" PRId64 "]", t->name,
                               dim);
    return GRETA_OK;
}

/* Device address of tensor t after upload (weights_layout order). */
typedef struct upload_map {
    const gguf_tensor **t;
    uint64_t *off;
    int n;
} upload_map;

static const void *dev_of(const gpu_backend *b, const upload_map *u, const gguf_tensor *t)
{
    for (int i = 0; i < u->n; i++)
        if (u->t[i] == t)
            return b->d_weights + u->off[i];
    return NULL;
}

static int bind_weights(gpu_backend *b, const greta_model *m, const upload_map *u, greta_error *err)
{
    const gpu_config *c = &b->c;
    int rc;
#define W(dst, t, nin, nout)                                                       \
    do {                                                                           \
        if ((rc = weight_check((t), (nin), (nout), err)))                           \
            return rc;                                                             \
        (dst).type = (t)->type;                                                    \
        (dst).d = dev_of(b, u, (t));                                               \
        (dst).n_in = (nin);                                                        \
        (dst).n_out = (nout);                                                      \
    } while (0)
    W(b->tok_embd, m->tok_embd, c->dim, c->vocab);
    W(b->output, m->output, c->dim, c->vocab);
    if ((rc = norm_check(m->output_norm, c->dim, err)))
        return rc;
    b->output_norm = dev_of(b, u, m->output_norm);
    for (int64_t l = 0; l < c->n_layers; l++) {
        const greta_layer_weights *M = &m->layers[l];
        gpu_layer *L = &b->layers[l];
        if ((rc = norm_check(M->attn_norm, c->dim, err)) || (rc = norm_check(M->ffn_norm, c->dim, err)))
            return rc;
        L->attn_norm = dev_of(b, u, M->attn_norm);
        L->ffn_norm = dev_of(b, u, M->ffn_norm);
        W(L->wq, M->wq, c->dim, c->q_dim);
        W(L->wk, M->wk, c->dim, c->kv_dim);
        W(L->wv, M->wv, c->dim, c->kv_dim);
        W(L->wo, M->wo, c->q_dim, c->dim);
        W(L->w_gate, M->w_gate, c->dim, c->ffn_dim);
        W(L->w_up, M->w_up, c->dim, c->ffn_dim);
        W(L->w_down, M->w_down, c->ffn_dim, c->dim);
    }
#undef W
    return GRETA_OK;
}

/* Checks every tensor, uploads them as they are in the file, binds views. */
static int upload_weights(gpu_backend *b, const greta_model *m, greta_error *err)
{
    const int n = n_model_tensors(m);
    const gguf_tensor **t = calloc((size_t)n, sizeof *t);
    uint64_t *off = calloc((size_t)n, sizeof *off);
    int rc = GRETA_OK;
    if (!t || !off) {
        rc = greta_error_set(err, GRETA_ERR_NOMEM, "gpu backend: out of memory");
        goto done;
    }
    model_tensors(m, t, n);
    uint64_t total = 0;
    for (int i = 0; i < n; i++) {
        off[i] = total;
        total += align_up(t[i]->nbytes);
    }
    b->weights_bytes = total;
    if ((rc = greta_gpu_alloc((void **)&b->d_weights, total, err)))
        goto done;
    upload_map u = {t, off, n};
    if ((rc = bind_weights(b, m, &u, err)))
        goto done;
    for (int i = 0; i < n; i++)
        if ((rc = greta_gpu_copy(b->d_weights + off[i], t[i]->data, t[i]->nbytes, GRETA_GPU_H2D, b->stream, err)))
            goto done;
    rc = greta_gpu_stream_sync(b->stream, err);
done:
    free(t);
    free(off);
    return rc;
}

int greta_gpu_backend_create(const greta_model *m, const greta_backend_params *p, greta_backend **out,
                             greta_error *err)
{
    greta_gpu_backend_opts o = {.kv_type = GRETA_GPU_KV_F16};
    *out = NULL;
    int rc = kv_setting(&o.kv_type, err);
    return rc ? rc : greta_gpu_backend_create_opts(m, p, &o, out, err);
}

int greta_gpu_backend_create_opts(const greta_model *m, const greta_backend_params *p,
                                  const greta_gpu_backend_opts *o, greta_backend **out, greta_error *err)
{
    *out = NULL;
    int rc = check_params(m, p, err);
    if (rc)
        return rc;
    if (o->kv_type != GRETA_GPU_KV_F16 && o->kv_type != GRETA_GPU_KV_F32)
        return greta_error_set(err, GRETA_ERR_INVALID, "gpu backend: KV cache type %d is not fp16 (0) or fp32 (1)",
                               (int)o->kv_type);
    gpu_backend *b = calloc(1, sizeof *b);
    if (!b)
        return greta_error_set(err, GRETA_ERR_NOMEM, "gpu backend: out of memory");
    b->base.ops = &gpu_ops;
    b->base.model = m;
    b->base.params = *p;
    b->base.impl = b;
    greta_backend_shape_from_model(m, &b->c);
    b->n_ctx = p->n_ctx;
    b->n_seq = p->n_seq;
    b->n_batch = p->n_batch;
    b->kv = o->kv_type;
    if ((rc = decode_settings(b, m, o, err)))
        goto fail;
    int prefill;
    if ((rc = gpu_prefill_resolve(o->prefill, &prefill, err)))
        goto fail;
    gpu_sizes s;
    if ((rc = greta_gpu_open(0, &b->info, err)) ||
        (rc = compute_sizes(m, p, b->info.sm_count, b->kv, prefill, &s, err)) || (rc = check_fit(&s, &b->info, p, err)))
        goto fail;
    snprintf(b->base.detail, sizeof b->base.detail, "%.60s, %.30s", b->info.name, b->info.arch);
    b->L = s.L;
    b->kv_bytes = s.kv;
    b->seq_len = calloc((size_t)p->n_seq, sizeof(int32_t));
    b->next_pos = calloc((size_t)p->n_seq, sizeof(int32_t));
    b->layers = calloc((size_t)b->c.n_layers + 1, sizeof *b->layers);
    if (!b->seq_len || !b->next_pos || !b->layers) {
        rc = greta_error_set(err, GRETA_ERR_NOMEM, "gpu backend: out of memory");
        goto fail;
    }
    if ((rc = greta_gpu_stream_create(&b->stream, err)) || (rc = upload_weights(b, m, err)) ||
        (rc = greta_gpu_alloc((void **)&b->d_kv, s.kv, err)) ||
        (rc = greta_gpu_alloc((void **)&b->d_scratch, s.scratch, err)) ||
        (rc = greta_gpu_memset(b->d_kv, 0, s.kv, b->stream, err)) ||
        /* zeroes the attention split counters too (greta_gpu_attention_partial_init's work) */
        (rc = greta_gpu_memset(b->d_scratch, 0, s.scratch, b->stream, err)) ||
        (rc = greta_gpu_alloc_host((void **)&b->h_ints, 4 * (size_t)p->n_batch * sizeof(int32_t), err)) ||
        (rc = greta_gpu_alloc_host((void **)&b->h_logits, s.logits_host, err)) ||
        (rc = greta_gpu_alloc_host((void **)&b->h_topk, (size_t)p->n_batch * (2 * GRETA_GPU_TOPK_MAX + 1) * 4, err)) ||
        (rc = greta_gpu_alloc_host_mapped((void **)&b->h_la, (void **)&b->d_la, 8 * sizeof(int32_t), err)) ||
        (rc = greta_gpu_event_create(&b->la_ev[0], err)) || (rc = greta_gpu_event_create(&b->la_ev[1], err)))
        goto fail;
    memset(b->h_ints, 0, 4 * (size_t)p->n_batch * sizeof(int32_t));
    b->pinned_bytes = s.pinned;
    uint8_t *sc = b->d_scratch;
    b->x = (float *)(sc + s.L.x);
    b->xn = (float *)(sc + s.L.xn);
    b->q = (float *)(sc + s.L.q);
    b->k = (float *)(sc + s.L.k);
    b->v = (float *)(sc + s.L.v);
    b->att = (float *)(sc + s.L.att);
    b->gate = (float *)(sc + s.L.gate);
    b->up = (float *)(sc + s.L.up);
    b->rope = (float *)(sc + s.L.rope);
    b->logits = (float *)(sc + s.L.logits);
    b->partial = (float *)(sc + s.L.partial);
    b->d_ints = (int32_t *)(sc + s.L.ints);
    b->d_topk = (int32_t *)(sc + s.L.topk);
    b->d_topk_scratch = sc + s.L.topk_scratch;
    b->q8 = sc + s.L.q8;
    if ((rc = gpu_prefill_init(&b->pf, prefill, (uint16_t *)(sc + s.L.xh), (int64_t)s.L.xh_elems,
                               (uint16_t *)(sc + s.L.wh), (int64_t)s.L.wh_elems, err)))
        goto fail;
    b->pdl = greta_gpu_set_pdl(b->kernels >= 4);
    greta_gpu_set_decode_table(b->kernels >= 8 ? 2 : b->kernels >= 7);
    if ((rc = greta_gpu_stream_sync(b->stream, err)))
        goto fail;
    uint64_t total_mem;
    if ((rc = greta_gpu_mem_info(&b->free_after_load, &total_mem, err)))
        goto fail;
    fprintf(stderr,
            "gpu: %s (%s, %s driver %d), weights %.1f MiB, KV cache %.1f MiB (%s, n_ctx %d x n_seq %d), "
            "scratch %.1f MiB, pinned host %.1f MiB; %.2f GiB of %.2f GiB free after load\n",
            b->info.name, b->info.arch, b->info.api, b->info.driver_version, (double)b->weights_bytes / 1048576.0,
            (double)b->kv_bytes / 1048576.0, b->kv == GRETA_GPU_KV_F32 ? "fp32" : "fp16", p->n_ctx, p->n_seq,
            (double)s.scratch / 1048576.0,
            (double)b->pinned_bytes / 1048576.0, gib(b->free_after_load), gib(total_mem));
    fprintf(stderr,
            "gpu: decode kernels v%d (int8-activation GEMV: layers %s, lm_head %s), graph %s, early launch (PDL) %s, "
            "greedy lookahead %s\n",
            b->kernels, b->kernels == 2 && b->v2_layers ? "yes" : "no", b->kernels == 2 && b->v2_output ? "yes" : "no",
            b->use_graph ? "on" : "off", b->pdl ? "on" : "off", b->lookahead && b->use_graph ? "on" : "off");
    fprintf(stderr, "gpu: prefill %s from %d tokens (fp16 scratch: activations %.1f MiB, weights %.1f MiB)\n",
            greta_gpu_prefill_name(b->pf.mode), GRETA_GPU_MATVEC_MAX_TOK + 1, (double)s.L.xh_elems * 2 / 1048576.0,
            (double)s.L.wh_elems * 2 / 1048576.0);
    *out = &b->base;
    return GRETA_OK;
fail:
    gpu_destroy(&b->base);
    return rc;
}

int greta_gpu_backend_info(const greta_backend *base, greta_gpu_info *info, greta_gpu_backend_mem *mem,
                           greta_error *err)
{
    if (!greta_gpu_backend_is(base))
        return greta_error_set(err, GRETA_ERR_INVALID, "not a GPU backend");
    const gpu_backend *b = base->impl;
    if (info)
        *info = b->info;
    if (mem) {
        mem->weights_bytes = b->weights_bytes;
        mem->kv_bytes = b->kv_bytes;
        mem->scratch_bytes = b->L.total;
        mem->pinned_bytes = b->pinned_bytes;
        mem->free_after_load = b->free_after_load;
    }
    return GRETA_OK;
}

int greta_gpu_backend_settings_get(const greta_backend *base, greta_gpu_backend_settings *out, greta_error *err)
{
    if (!greta_gpu_backend_is(base))
        return greta_error_set(err, GRETA_ERR_INVALID, "not a GPU backend");
    const gpu_backend *b = base->impl;
    *out = (greta_gpu_backend_settings){.decode_kernels = b->kernels,
                                        .prefill = b->pf.mode,
                                        .kv_type = b->kv,
                                        .graph = b->use_graph != 0,
                                        .lookahead = b->lookahead && b->use_graph,
                                        .pdl = b->pdl != 0};
    return GRETA_OK;
}

int greta_gpu_backend_prefill(const greta_backend *base)
{
    return greta_gpu_backend_is(base) ? ((const gpu_backend *)base->impl)->pf.mode : GRETA_GPU_PREFILL_AUTO;
}

const greta_backend_kind greta_gpu_backend_kind = {
    .name = "gpu",
    .plan = greta_gpu_backend_plan,
    .create = greta_gpu_backend_create,
};
