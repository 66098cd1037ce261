/* model.c - Llama config and tensor table from a GGUF file. */
#include "model.h"

#include <assert.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/quant.h"

#define MODEL_MAX_LAYERS 4096
#define MODEL_MAX_DIM (1u << 20)

/* Optional key: NOT_FOUND leaves *out at its default. */
static int opt_u32(const gguf_file *f, const char *key, uint32_t *out, greta_error *err)
{
    int rc = gguf_get_u32(f, key, out, err);
    if (rc == GRETA_ERR_NOT_FOUND) {
        greta_error_clear(err);
        return 0;
    }
    return rc;
}

static int opt_f32(const gguf_file *f, const char *key, float *out, greta_error *err)
{
    int rc = gguf_get_f32(f, key, out, err);
    if (rc == GRETA_ERR_NOT_FOUND) {
        greta_error_clear(err);
        return 0;
    }
    return rc;
}

static int req_u32(const gguf_file *f, const char *key, uint32_t *out, greta_error *err)
{
    int rc = gguf_get_u32(f, key, out, err);
    if (rc == GRETA_ERR_NOT_FOUND)
        return greta_error_set(err, rc, "required key '%s' is missing", key);
    if (!rc && (*out == 0 || *out > MODEL_MAX_DIM))
        return greta_error_set(err, GRETA_ERR_FORMAT, "key '%s' = %" PRIu32 " must be 1..%u", key,
                               *out, MODEL_MAX_DIM);
    return rc;
}

static bool str_eq(gguf_str s, const char *c)
{
    return s.len == strlen(c) && memcmp(s.ptr, c, (size_t)s.len) == 0;
}

static int read_rope_scaling(const gguf_file *f, greta_model_config *cfg, greta_error *err)
{
    gguf_str type = {0};
    int rc = gguf_get_str(f, "llama.rope.scaling.type", &type, err);
    bool have_type = rc == 0;
    if (rc == GRETA_ERR_NOT_FOUND)
        greta_error_clear(err);
    else if (rc)
        return rc;
    float factor = 0.0f;
    rc = gguf_get_f32(f, "llama.rope.scaling.factor", &factor, err);
    bool have_factor = rc == 0;
    if (rc == GRETA_ERR_NOT_FOUND)
        greta_error_clear(err);
    else if (rc)
        return rc;
    cfg->rope_freq_scale = 1.0f;
    if (have_type && str_eq(type, "none"))
        return 0;
    if (have_type && !str_eq(type, "linear")) {
        int n = type.len > 64 ? 64 : (int)type.len;
        return greta_error_set(err, GRETA_ERR_UNSUPPORTED,
                               "llama.rope.scaling.type '%.*s' is not supported (only 'linear' and 'none')",
                               n, type.ptr);
    }
    /* 'linear', or no type: like llama.cpp, a factor alone means linear scaling */
    if (!have_factor) {
        if (have_type)
            return greta_error_set(err, GRETA_ERR_NOT_FOUND,
                                   "llama.rope.scaling.type is 'linear' but llama.rope.scaling.factor is missing");
        return 0;
    }
    if (!(factor > 0.0f) || !isfinite(factor))
        return greta_error_set(err, GRETA_ERR_FORMAT,
                               "llama.rope.scaling.factor = %g must be a positive finite number",
                               (double)factor);
    cfg->rope_freq_scale = 1.0f / factor;
    return 0;
}

int greta_model_config_read(const gguf_file *f, greta_model_config *cfg, greta_error *err)
{
    memset(cfg, 0, sizeof *cfg);
    gguf_str arch;
    int rc = gguf_get_str(f, "general.architecture", &arch, err);
    if (rc == GRETA_ERR_NOT_FOUND)
        return greta_error_set(err, rc, "required key 'general.architecture' is missing");
    if (rc)
        return rc;
    if (!str_eq(arch, "llama")) {
        int n = arch.len > 64 ? 64 : (int)arch.len;
        return greta_error_set(err, GRETA_ERR_UNSUPPORTED,
                               "unsupported architecture '%.*s' (general.architecture; only 'llama')", n,
                               arch.ptr);
    }
    if ((rc = req_u32(f, "llama.embedding_length", &cfg->dim, err)) ||
        (rc = req_u32(f, "llama.block_count", &cfg->n_layers, err)) ||
        (rc = req_u32(f, "llama.attention.head_count", &cfg->n_heads, err)) ||
        (rc = req_u32(f, "llama.feed_forward_length", &cfg->ffn_dim, err)) ||
        (rc = req_u32(f, "llama.context_length", &cfg->context_length, err)))
        return rc;
    if (cfg->n_layers > MODEL_MAX_LAYERS)
        return greta_error_set(err, GRETA_ERR_LIMIT, "llama.block_count = %" PRIu32 " exceeds %d",
                               cfg->n_layers, MODEL_MAX_LAYERS);
    if (cfg->dim % cfg->n_heads)
        return greta_error_set(err, GRETA_ERR_FORMAT,
                               "llama.embedding_length = %" PRIu32
                               " is not a multiple of llama.attention.head_count = %" PRIu32,
                               cfg->dim, cfg->n_heads);
    cfg->head_dim = cfg->dim / cfg->n_heads;

    cfg->n_kv_heads = cfg->n_heads;
    if ((rc = opt_u32(f, "llama.attention.head_count_kv", &cfg->n_kv_heads, err)))
        return rc;
    if (cfg->n_kv_heads == 0 || cfg->n_heads % cfg->n_kv_heads)
        return greta_error_set(err, GRETA_ERR_FORMAT,
                               "llama.attention.head_count_kv = %" PRIu32
                               " must be nonzero and divide llama.attention.head_count = %" PRIu32,
                               cfg->n_kv_heads, cfg->n_heads);

    cfg->rope_dim = cfg->head_dim;
    if ((rc = opt_u32(f, "llama.rope.dimension_count", &cfg->rope_dim, err)))
        return rc;
    if (cfg->rope_dim == 0 || cfg->rope_dim > cfg->head_dim || cfg->rope_dim % 2)
        return greta_error_set(err, GRETA_ERR_FORMAT,
                               "llama.rope.dimension_count = %" PRIu32
                               " must be even and 1..head_dim (%" PRIu32 ")",
                               cfg->rope_dim, cfg->head_dim);

    cfg->rope_freq_base = 10000.0f;
    if ((rc = opt_f32(f, "llama.rope.freq_base", &cfg->rope_freq_base, err)))
        return rc;
    if (!(cfg->rope_freq_base > 0.0f) || !isfinite(cfg->rope_freq_base))
        return greta_error_set(err, GRETA_ERR_FORMAT,
                               "llama.rope.freq_base = %g must be a positive finite number",
                               (double)cfg->rope_freq_base);
    if ((rc = read_rope_scaling(f, cfg, err)))
        return rc;

    cfg->rms_eps = 1e-5f;
    if ((rc = opt_f32(f, "llama.attention.layer_norm_rms_epsilon", &cfg->rms_eps, err)))
        return rc;
    if (!(cfg->rms_eps > 0.0f) || !isfinite(cfg->rms_eps))
        return greta_error_set(err, GRETA_ERR_FORMAT,
                               "llama.attention.layer_norm_rms_epsilon = %g must be a positive finite number",
                               (double)cfg->rms_eps);

    rc = gguf_get_u32(f, "llama.vocab_size", &cfg->vocab_size, err);
    if (rc == GRETA_ERR_NOT_FOUND) {
        greta_error_clear(err);
        const gguf_value *tokens;
        rc = gguf_get_arr(f, "tokenizer.ggml.tokens", GGUF_TYPE_STRING, &tokens, err);
        if (rc == GRETA_ERR_NOT_FOUND)
            return greta_error_set(err, rc,
                                   "no vocabulary size: neither llama.vocab_size nor tokenizer.ggml.tokens is present");
        if (rc)
            return rc;
        if (tokens->v.arr.count > MODEL_MAX_DIM * 16u)
            return greta_error_set(err, GRETA_ERR_LIMIT,
                                   "tokenizer.ggml.tokens has %" PRIu64 " entries (limit %u)",
                                   tokens->v.arr.count, MODEL_MAX_DIM * 16u);
        cfg->vocab_size = (uint32_t)tokens->v.arr.count;
    } else if (rc) {
        return rc;
    }
    if (cfg->vocab_size == 0)
        return greta_error_set(err, GRETA_ERR_FORMAT, "vocabulary size is 0");
    cfg->tied_output = gguf_find_tensor(f, "output.weight") == NULL;
    greta_error_clear(err);
    return 0;
}

/* ---- tensors ---------------------------------------------------------------- */

static void shape_str(char *buf, size_t n, const uint64_t *ne, uint32_t n_dims)
{
    size_t o = 0;
    o += (size_t)snprintf(buf + o, n - o, "[");
    for (uint32_t d = 0; d < n_dims && o < n; d++)
        o += (size_t)snprintf(buf + o, n - o, "%s%" PRIu64, d ? ", " : "", ne[d]);
    if (o < n)
        snprintf(buf + o, n - o, "]");
}

/* Finds a tensor and checks its shape (ne0 first, 1 or 2 dims) and type. */
static int get_tensor(const gguf_file *f, const char *name, uint64_t ne0, uint64_t ne1, bool norm,
                      const gguf_tensor **out, greta_error *err)
{
    const gguf_tensor *t = gguf_find_tensor(f, name);
    if (!t)
        return greta_error_set(err, GRETA_ERR_NOT_FOUND, "tensor '%s' is missing", name);
    uint64_t want[GGUF_MAX_DIMS] = {ne0, ne1, 1, 1};
    if (memcmp(t->ne, want, sizeof want) != 0) {
        char have[96], exp[64];
        shape_str(have, sizeof have, t->ne, t->n_dims);
        shape_str(exp, sizeof exp, want, norm ? 1 : 2);
        return greta_error_set(err, GRETA_ERR_FORMAT, "tensor '%s' has shape %s, expected %s", name,
                               have, exp);
    }
    if (norm && t->type != GGML_TYPE_F32)
        return greta_error_set(err, GRETA_ERR_UNSUPPORTED,
                               "tensor '%s' has type %s; norm weights must be F32", name,
                               ggml_type_name(t->type));
    *out = t;
    return 0;
}

int greta_model_from_gguf(gguf_file *f, greta_model **out, greta_error *err)
{
    assert(f && out);
    *out = NULL;
    greta_model_config cfg;
    int rc = greta_model_config_read(f, &cfg, err);
    if (rc)
        return rc;
    greta_model *m = calloc(1, sizeof *m);
    if (!m)
        return greta_error_set(err, GRETA_ERR_NOMEM, "out of memory");
    m->cfg = cfg;
    if ((uint64_t)cfg.n_layers * 9 > gguf_n_tensors(f)) {
        free(m);
        return greta_error_set(err, GRETA_ERR_FORMAT,
                               "llama.block_count = %" PRIu32 " needs %" PRIu64
                               " layer tensors but the file has %" PRIu64 " tensors",
                               cfg.n_layers, (uint64_t)cfg.n_layers * 9, gguf_n_tensors(f));
    }
    m->layers = calloc(cfg.n_layers, sizeof *m->layers);
    if (!m->layers) {
        free(m);
        return greta_error_set(err, GRETA_ERR_NOMEM, "out of memory");
    }
    const uint64_t dim = cfg.dim, kv = (uint64_t)cfg.n_kv_heads * cfg.head_dim;
    const uint64_t q = (uint64_t)cfg.n_heads * cfg.head_dim, ffn = cfg.ffn_dim, vocab = cfg.vocab_size;
    rc = get_tensor(f, "token_embd.weight", dim, vocab, false, &m->tok_embd, err);
    if (!rc)
        rc = get_tensor(f, "output_norm.weight", dim, 1, true, &m->output_norm, err);
    if (!rc && !cfg.tied_output)
        rc = get_tensor(f, "output.weight", dim, vocab, false, &m->output, err);
    if (!rc && cfg.tied_output)
        m->output = m->tok_embd;
    for (uint32_t l = 0; l < cfg.n_layers && !rc; l++) {
        greta_layer_weights *L = &m->layers[l];
        struct {
            const char *suffix;
            uint64_t ne0, ne1;
            bool norm;
            const gguf_tensor **dst;
        } want[] = {
            {"attn_norm", dim, 1, true, &L->attn_norm},
            {"attn_q", dim, q, false, &L->wq},
            {"attn_k", dim, kv, false, &L->wk},
            {"attn_v", dim, kv, false, &L->wv},
            {"attn_output", q, dim, false, &L->wo},
            {"ffn_norm", dim, 1, true, &L->ffn_norm},
            {"ffn_gate", dim, ffn, false, &L->w_gate},
            {"ffn_up", dim, ffn, false, &L->w_up},
            {"ffn_down", ffn, dim, false, &L->w_down},
        };
        for (size_t i = 0; i < sizeof want / sizeof want[0] && !rc; i++) {
            char name[64];
            snprintf(name, sizeof name, "blk.%" PRIu32 ".%s.weight", l, want[i].suffix);
            rc = get_tensor(f, name, want[i].ne0, want[i].ne1, want[i].norm, want[i].dst, err);
        }
    }
    if (rc) {
        free(m->layers);
        free(m);
        return rc;
    }
    m->file = f;
    *out = m;
    return 0;
}

int greta_model_open(const char *path, greta_model **out, greta_error *err)
{
    assert(path && out);
    *out = NULL;
    gguf_file *f = NULL;
    int rc = gguf_open(path, &f, err);
    if (rc)
        return rc;
    rc = greta_model_from_gguf(f, out, err);
    if (rc) {
        greta_error_prefix(err, "%s", path);
        gguf_close(&f);
    }
    return rc;
}

void greta_model_close(greta_model **pm)
{
    if (!pm || !*pm)
        return;
    greta_model *m = *pm;
    gguf_close(&m->file);
    free(m->layers);
    free(m);
    *pm = NULL;
}
