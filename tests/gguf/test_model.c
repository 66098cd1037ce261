/* test_model.c - llama config and tensor resolution (common/model.c): the real
 * models match PROVENANCE.md, and generated files with one thing wrong fail
 * with the right status and a message naming the key or tensor. Also the
 * sparse 7B-shaped file: opening it must not read tensor data. */
#include "test_util.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "common/gguf.h"
#include "common/model.h"
#include "kernels/quant.h"

/* ---- real files ------------------------------------------------------------------ */

static void open_model(const char *name, greta_model **m)
{
    const char *path = greta_testdata_find(name);
    *m = NULL;
    if (!path)
        return;
    greta_error err = {0};
    if (greta_model_open(path, m, &err) != 0)
        fail_msg("%s: %s", name, err.msg);
}

static void test_stories260k(void **state)
{
    (void)state;
    greta_model *m;
    open_model("stories260K.gguf", &m);
    if (!m) {
        skip();
        return;
    }
    const greta_model_config *c = &m->cfg;
    assert_int_equal(c->dim, 64);
    assert_int_equal(c->n_layers, 5);
    assert_int_equal(c->n_heads, 8);
    assert_int_equal(c->n_kv_heads, 4);
    assert_int_equal(c->head_dim, 8);
    assert_int_equal(c->vocab_size, 512); /* from tokenizer.ggml.tokens */
    assert_int_equal(c->ffn_dim, 172);
    assert_int_equal(c->context_length, 2048);
    assert_int_equal(c->rope_dim, 8);
    assert_true(c->rope_freq_base == 10000.0f);
    assert_true(c->rope_freq_scale == 1.0f);
    assert_true(c->rms_eps == 1e-5f);
    assert_false(c->tied_output);
    assert_string_equal(m->tok_embd->name, "token_embd.weight");
    assert_string_equal(m->output->name, "output.weight");
    assert_string_equal(m->layers[4].w_down->name, "blk.4.ffn_down.weight");
    assert_int_equal(m->layers[2].wk->ne[1], 32);
    assert_int_equal(m->layers[0].attn_norm->type, GGML_TYPE_F32);
    greta_model_close(&m);
    assert_null(m);
    greta_model_close(&m);
}

static void test_tiny_random(void **state)
{
    (void)state;
    greta_model *m;
    open_model("llama-2-tiny-random.gguf", &m);
    if (!m) {
        skip();
        return;
    }
    const greta_model_config *c = &m->cfg;
    assert_int_equal(c->dim, 8);
    assert_int_equal(c->n_layers, 1);
    assert_int_equal(c->n_heads, 2);
    assert_int_equal(c->n_kv_heads, 2);
    assert_int_equal(c->vocab_size, 32000);
    assert_int_equal(c->ffn_dim, 32);
    assert_int_equal(c->context_length, 4096);
    assert_int_equal(c->rope_dim, 4);
    assert_true(c->rope_freq_base == 10000.0f);
    assert_int_equal(m->tok_embd->type, GGML_TYPE_F16);
    assert_int_equal(m->layers[0].wq->type, GGML_TYPE_F16);
    assert_int_equal(m->output_norm->type, GGML_TYPE_F32);
    greta_model_close(&m);
}

static void test_gqa_quant_files(void **state)
{
    (void)state;
    static const struct {
        const char *name;
        uint32_t q_type, out_type;
    } files[] = {
        {"quant/gqa-F32.gguf", GGML_TYPE_F32, GGML_TYPE_F32},
        {"quant/gqa-BF16.gguf", GGML_TYPE_BF16, GGML_TYPE_BF16},
        {"quant/gqa-Q4_0.gguf", GGML_TYPE_Q4_0, GGML_TYPE_Q6_K},
        {"quant/gqa-Q8_0.gguf", GGML_TYPE_Q8_0, GGML_TYPE_Q8_0},
        {"quant/gqa-Q4_K_S.gguf", GGML_TYPE_Q4_K, GGML_TYPE_Q6_K},
        {"quant/gqa-Q4_K_M.gguf", GGML_TYPE_Q4_K, GGML_TYPE_Q6_K},
        {"quant/gqa-Q5_K_M.gguf", GGML_TYPE_Q5_K, GGML_TYPE_Q6_K},
        {"quant/gqa-Q6_K.gguf", GGML_TYPE_Q6_K, GGML_TYPE_Q6_K},
    };
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
        greta_model *m;
        open_model(files[i].name, &m);
        if (!m) {
            skip();
            return;
        }
        const greta_model_config *c = &m->cfg;
        assert_int_equal(c->dim, 256);
        assert_int_equal(c->n_layers, 3);
        assert_int_equal(c->n_heads, 4);
        assert_int_equal(c->n_kv_heads, 2);
        assert_int_equal(c->ffn_dim, 512);
        assert_int_equal(c->context_length, 512);
        assert_int_equal(c->vocab_size, 512);
        assert_true(c->rope_freq_base == 10011.0f);
        assert_true(c->rms_eps == 1e-5f);
        assert_false(c->tied_output);
        if (m->layers[0].wq->type != files[i].q_type || m->output->type != files[i].out_type)
            fail_msg("%s: attn_q %s, output %s", files[i].name, ggml_type_name(m->layers[0].wq->type),
                     ggml_type_name(m->output->type));
        greta_model_close(&m);
    }
}

static void test_vocab_only(void **state)
{
    (void)state;
    GRETA_TESTDATA_OR_SKIP(path, "ggml-vocab-llama-spm.gguf");
    greta_error err = {0};
    gguf_file *f = NULL;
    assert_int_equal(gguf_open(path, &f, &err), 0);
    greta_model_config c;
    assert_int_equal(greta_model_config_read(f, &c, &err), 0);
    assert_int_equal(c.vocab_size, 32000); /* llama.vocab_size */
    assert_int_equal(c.dim, 4096);
    assert_int_equal(c.rope_dim, 128);
    assert_true(c.tied_output); /* no output.weight */
    gguf_close(&f);
    greta_model *m = NULL;
    assert_int_not_equal(greta_model_open(path, &m, &err), 0);
    assert_null(m);
    assert_non_null(strstr(err.msg, "ggml-vocab-llama-spm.gguf"));
}

/* ---- generated models ------------------------------------------------------------- */

/* Options of a generated tiny llama: dim 16, 2 layers, 4 heads, 2 kv heads,
 * ffn 32, vocab 24 (from the tokens array unless vocab_key). */
typedef struct gen {
    const char *arch;         /* default "llama" */
    const char *skip_key;     /* key left out */
    const char *str_key;      /* key written as a string instead of u32 */
    uint32_t kv_heads;        /* 0: key absent (defaults to heads) */
    const char *skip_tensor;  /* tensor left out */
    const char *bad_tensor;   /* tensor written with ne1 + 1 */
    const char *f16_tensor;   /* tensor written as F16 */
    bool vocab_key;           /* write llama.vocab_size = 24 (and no tokens) */
    bool no_vocab;            /* neither vocab_size nor tokens */
    const char *rope_type;    /* llama.rope.scaling.type */
    float rope_factor;        /* llama.rope.scaling.factor when > 0 */
    float freq_base;          /* when > 0 */
    uint32_t rope_dim;        /* when > 0 */
} gen;

enum { G_DIM = 16, G_LAYERS = 2, G_HEADS = 4, G_FFN = 32, G_VOCAB = 24 };

static uint64_t g_data_bytes; /* tensor bytes of the model being generated */

static void add_t(gguf_writer *w, const gen *g, const char *name, uint64_t ne0, uint64_t ne1, bool norm)
{
    if (g->skip_tensor && !strcmp(g->skip_tensor, name))
        return;
    if (g->bad_tensor && !strcmp(g->bad_tensor, name)) {
        if (norm)
            ne0 += 1;
        else
            ne1 += 1;
    }
    uint32_t type = g->f16_tensor && !strcmp(g->f16_tensor, name) ? GGML_TYPE_F16 : GGML_TYPE_F32;
    uint64_t ne[2] = {ne0, ne1};
    assert_int_equal(gguf_writer_add_tensor(w, name, norm ? 1 : 2, ne, type), 0);
    g_data_bytes += ggml_row_bytes(type, ne0) * ne1;
}

static void put_u32(gguf_writer *w, const gen *g, const char *key, uint32_t v)
{
    if (g->skip_key && !strcmp(g->skip_key, key))
        return;
    if (g->str_key && !strcmp(g->str_key, key))
        assert_int_equal(gguf_writer_set_str(w, key, "16"), 0);
    else
        assert_int_equal(gguf_writer_set_u32(w, key, v), 0);
}

/* Writes the generated model into the build tree; returns its path. */
static const char *gen_model(const char *name, const gen *g)
{
    static char path[4600];
    snprintf(path, sizeof path, "%s/%s.gguf", greta_test_tmpdir("gguf_model"), name);
    greta_error err = {0};
    gguf_writer *w = gguf_writer_create(&err);
    if (!(g->skip_key && !strcmp(g->skip_key, "general.architecture")))
        assert_int_equal(gguf_writer_set_str(w, "general.architecture", g->arch ? g->arch : "llama"), 0);
    put_u32(w, g, "llama.embedding_length", G_DIM);
    put_u32(w, g, "llama.block_count", G_LAYERS);
    put_u32(w, g, "llama.attention.head_count", G_HEADS);
    put_u32(w, g, "llama.feed_forward_length", G_FFN);
    put_u32(w, g, "llama.context_length", 128);
    if (g->kv_heads)
        put_u32(w, g, "llama.attention.head_count_kv", g->kv_heads);
    if (g->rope_dim)
        put_u32(w, g, "llama.rope.dimension_count", g->rope_dim);
    if (g->freq_base > 0)
        assert_int_equal(gguf_writer_set_f32(w, "llama.rope.freq_base", g->freq_base), 0);
    if (g->rope_type)
        assert_int_equal(gguf_writer_set_str(w, "llama.rope.scaling.type", g->rope_type), 0);
    if (g->rope_factor > 0)
        assert_int_equal(gguf_writer_set_f32(w, "llama.rope.scaling.factor", g->rope_factor), 0);
    if (g->vocab_key) {
        put_u32(w, g, "llama.vocab_size", G_VOCAB);
    } else if (!g->no_vocab) {
        gguf_str toks[G_VOCAB];
        for (int i = 0; i < G_VOCAB; i++)
            toks[i] = (gguf_str){"tok", 3};
        assert_int_equal(gguf_writer_set_arr_str(w, "tokenizer.ggml.tokens", toks, G_VOCAB), 0);
    }
    const uint64_t kv = (uint64_t)(g->kv_heads ? g->kv_heads : G_HEADS) * (G_DIM / G_HEADS);
    g_data_bytes = 0;
    add_t(w, g, "token_embd.weight", G_DIM, G_VOCAB, false);
    add_t(w, g, "output_norm.weight", G_DIM, 1, true);
    add_t(w, g, "output.weight", G_DIM, G_VOCAB, false);
    for (int l = 0; l < G_LAYERS; l++) {
        static const struct {
            const char *suffix;
            int a, b; /* 0 dim, 1 kv, 2 ffn, 3 one */
            bool norm;
        } L[] = {
            {"attn_norm", 0, 3, true}, {"attn_q", 0, 0, false},   {"attn_k", 0, 1, false},
            {"attn_v", 0, 1, false},   {"attn_output", 0, 0, false}, {"ffn_norm", 0, 3, true},
            {"ffn_gate", 0, 2, false}, {"ffn_up", 0, 2, false},   {"ffn_down", 2, 0, false},
        };
        const uint64_t size[4] = {G_DIM, kv, G_FFN, 1};
        for (size_t i = 0; i < sizeof L / sizeof L[0]; i++) {
            char n[64];
            snprintf(n, sizeof n, "blk.%d.%s.weight", l, L[i].suffix);
            add_t(w, g, n, size[L[i].a], size[L[i].b], L[i].norm);
        }
    }
    assert_int_equal(gguf_writer_begin(w, path, &err), 0);
    /* tensor data is zero: the content does not matter to these checks */
    assert_int_equal(gguf_writer_write_zeros(w, g_data_bytes, &err), 0);
    assert_int_equal(gguf_writer_finish(w, &err), 0);
    gguf_writer_destroy(&w);
    return path;
}

/* Opens a generated model; returns the status and fills err / *cfg. */
static int try_model(const char *name, const gen *g, greta_model_config *cfg, greta_error *err)
{
    const char *path = gen_model(name, g);
    greta_model *m = NULL;
    greta_error_clear(err);
    int rc = greta_model_open(path, &m, err);
    printf("  %-16s -> %d %s\n", name, rc, err->msg);
    if (rc == 0) {
        assert_int_equal(err->code, GRETA_OK); /* no stale message on success */
        assert_string_equal(err->msg, "");
        *cfg = m->cfg;
        greta_model_close(&m);
    } else {
        assert_null(m);
        assert_non_null(strstr(err->msg, path)); /* names the file */
    }
    return rc;
}

static void expect_fail(const char *name, const gen *g, int code, const char *frag1, const char *frag2)
{
    greta_model_config cfg;
    greta_error err = {0};
    int rc = try_model(name, g, &cfg, &err);
    if (rc != code)
        fail_msg("%s: expected %s, got %d: %s", name, greta_status_name(code), rc, err.msg);
    if (!strstr(err.msg, frag1) || (frag2 && !strstr(err.msg, frag2)))
        fail_msg("%s: '%s' lacks '%s' / '%s'", name, err.msg, frag1, frag2 ? frag2 : "");
}

static void test_generated_ok(void **state)
{
    (void)state;
    greta_model_config c;
    greta_error err = {0};
    /* defaults: kv heads = heads, rope dim = head dim, base 10000, no scaling */
    assert_int_equal(try_model("defaults", &(gen){0}, &c, &err), 0);
    assert_int_equal(c.n_kv_heads, G_HEADS);
    assert_int_equal(c.head_dim, G_DIM / G_HEADS);
    assert_int_equal(c.rope_dim, G_DIM / G_HEADS);
    assert_int_equal(c.vocab_size, G_VOCAB);
    assert_true(c.rope_freq_base == 10000.0f && c.rope_freq_scale == 1.0f && c.rms_eps == 1e-5f);
    assert_false(c.tied_output);

    assert_int_equal(try_model("gqa", &(gen){.kv_heads = 2, .vocab_key = true, .freq_base = 500000.0f}, &c, &err), 0);
    assert_int_equal(c.n_kv_heads, 2);
    assert_int_equal(c.vocab_size, G_VOCAB);
    assert_true(c.rope_freq_base == 500000.0f);

    assert_int_equal(try_model("rope-linear", &(gen){.rope_type = "linear", .rope_factor = 4.0f}, &c, &err), 0);
    assert_true(c.rope_freq_scale == 0.25f);
    assert_int_equal(try_model("rope-factor-only", &(gen){.rope_factor = 2.0f}, &c, &err), 0);
    assert_true(c.rope_freq_scale == 0.5f);
    assert_int_equal(try_model("rope-none", &(gen){.rope_type = "none", .rope_factor = 8.0f}, &c, &err), 0);
    assert_true(c.rope_freq_scale == 1.0f);
    assert_int_equal(try_model("rope-dim", &(gen){.rope_dim = 2}, &c, &err), 0);
    assert_int_equal(c.rope_dim, 2);

    /* no output.weight: tied to the embedding */
    const char *path = gen_model("tied", &(gen){.skip_tensor = "output.weight"});
    greta_model *m = NULL;
    assert_int_equal(greta_model_open(path, &m, &err), 0);
    assert_true(m->cfg.tied_output);
    assert_ptr_equal(m->output, m->tok_embd);
    assert_int_equal(m->cfg.n_layers, G_LAYERS);
    assert_int_equal(m->layers[1].w_down->ne[0], G_FFN);
    greta_model_close(&m);

    /* F16 matrices are fine */
    assert_int_equal(try_model("f16-matrix", &(gen){.f16_tensor = "blk.1.attn_v.weight"}, &c, &err), 0);
}

static void test_generated_bad(void **state)
{
    (void)state;
    expect_fail("arch-gpt2", &(gen){.arch = "gpt2"}, GRETA_ERR_UNSUPPORTED, "unsupported architecture 'gpt2'", NULL);
    expect_fail("arch-missing", &(gen){.skip_key = "general.architecture"}, GRETA_ERR_NOT_FOUND,
                "general.architecture", NULL);
    expect_fail("no-block-count", &(gen){.skip_key = "llama.block_count"}, GRETA_ERR_NOT_FOUND,
                "llama.block_count", "missing");
    expect_fail("no-dim", &(gen){.skip_key = "llama.embedding_length"}, GRETA_ERR_NOT_FOUND,
                "llama.embedding_length", NULL);
    expect_fail("no-ctx", &(gen){.skip_key = "llama.context_length"}, GRETA_ERR_NOT_FOUND,
                "llama.context_length", NULL);
    expect_fail("dim-as-string", &(gen){.str_key = "llama.embedding_length"}, GRETA_ERR_TYPE,
                "'llama.embedding_length'", "type string, wanted u32");
    expect_fail("kv-as-string", &(gen){.kv_heads = 2, .str_key = "llama.attention.head_count_kv"},
                GRETA_ERR_TYPE, "llama.attention.head_count_kv", "string");
    expect_fail("kv-heads-3", &(gen){.kv_heads = 3}, GRETA_ERR_FORMAT, "llama.attention.head_count_kv = 3",
                NULL);
    expect_fail("rope-yarn", &(gen){.rope_type = "yarn", .rope_factor = 4.0f}, GRETA_ERR_UNSUPPORTED,
                "llama.rope.scaling.type 'yarn'", NULL);
    expect_fail("rope-linear-nofactor", &(gen){.rope_type = "linear"}, GRETA_ERR_NOT_FOUND,
                "llama.rope.scaling.factor", NULL);
    expect_fail("rope-dim-odd", &(gen){.rope_dim = 3}, GRETA_ERR_FORMAT, "llama.rope.dimension_count = 3", NULL);
    expect_fail("no-vocab", &(gen){.no_vocab = true}, GRETA_ERR_NOT_FOUND, "llama.vocab_size",
                "tokenizer.ggml.tokens");
    expect_fail("bad-shape-k", &(gen){.bad_tensor = "blk.1.attn_k.weight"}, GRETA_ERR_FORMAT,
                "tensor 'blk.1.attn_k.weight' has shape [16, 17], expected [16, 16]", NULL);
    expect_fail("bad-shape-embd", &(gen){.bad_tensor = "token_embd.weight"}, GRETA_ERR_FORMAT,
                "tensor 'token_embd.weight' has shape [16, 25]", NULL);
    expect_fail("bad-shape-norm", &(gen){.bad_tensor = "blk.0.ffn_norm.weight"}, GRETA_ERR_FORMAT,
                "tensor 'blk.0.ffn_norm.weight' has shape [17]", "expected [16]");
    expect_fail("gqa-wrong-k", &(gen){.kv_heads = 2, .bad_tensor = "blk.0.attn_v.weight"}, GRETA_ERR_FORMAT,
                "blk.0.attn_v.weight", "expected [16, 8]");
    expect_fail("missing-tensor", &(gen){.skip_tensor = "blk.1.ffn_up.weight"}, GRETA_ERR_NOT_FOUND,
                "tensor 'blk.1.ffn_up.weight' is missing", NULL);
    expect_fail("missing-norm", &(gen){.skip_tensor = "output_norm.weight"}, GRETA_ERR_NOT_FOUND,
                "output_norm.weight", NULL);
    expect_fail("f16-norm", &(gen){.f16_tensor = "blk.1.attn_norm.weight"}, GRETA_ERR_UNSUPPORTED,
                "tensor 'blk.1.attn_norm.weight' has type F16", "F32");
}

/* ---- sparse 7B ------------------------------------------------------------------------- */

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* Llama-2-7B's tensor table with Q4_K_M-like types (Q6_K for output, attn_v
 * and ffn_down, Q4_K elsewhere), written as a sparse file (~3.9 GB that
 * occupies almost no disk). Opening it and resolving the model must not touch
 * tensor data. */
static void test_sparse_7b(void **state)
{
    (void)state;
    const uint64_t dim = 4096, ffn = 11008, vocab = 32000;
    const uint32_t layers = 32;
    char path[4600];
    snprintf(path, sizeof path, "%s/sparse-7b.gguf", greta_test_tmpdir("gguf_model"));
    greta_error err = {0};
    gguf_writer *w = gguf_writer_create(&err);
    gguf_writer_set_str(w, "general.architecture", "llama");
    gguf_writer_set_str(w, "general.name", "sparse-llama-2-7b-shape");
    gguf_writer_set_u32(w, "llama.context_length", 4096);
    gguf_writer_set_u32(w, "llama.embedding_length", (uint32_t)dim);
    gguf_writer_set_u32(w, "llama.block_count", layers);
    gguf_writer_set_u32(w, "llama.feed_forward_length", (uint32_t)ffn);
    gguf_writer_set_u32(w, "llama.attention.head_count", 32);
    gguf_writer_set_u32(w, "llama.attention.head_count_kv", 32);
    gguf_writer_set_u32(w, "llama.rope.dimension_count", 128);
    gguf_writer_set_f32(w, "llama.attention.layer_norm_rms_epsilon", 1e-5f);
    gguf_writer_set_u32(w, "llama.vocab_size", (uint32_t)vocab);
    uint64_t data = 0;
#define ADD(name, nd, a, b, type)                                                              \
    do {                                                                                       \
        uint64_t ne_[2] = {a, b};                                                              \
        assert_int_equal(gguf_writer_add_tensor(w, name, nd, ne_, type), 0);                   \
        data += ggml_row_bytes(type, a) * b;                                                   \
    } while (0)
    ADD("token_embd.weight", 2, dim, vocab, GGML_TYPE_Q4_K);
    ADD("output_norm.weight", 1, dim, 1, GGML_TYPE_F32);
    ADD("output.weight", 2, dim, vocab, GGML_TYPE_Q6_K);
    for (uint32_t l = 0; l < layers; l++) {
        char n[64];
        uint32_t hi = (l % 3 == 0) ? GGML_TYPE_Q6_K : GGML_TYPE_Q4_K;
#define L(suffix, nd, a, b, type)                                        \
    snprintf(n, sizeof n, "blk.%u." suffix ".weight", l);                \
    ADD(n, nd, a, b, type)
        L("attn_norm", 1, dim, 1, GGML_TYPE_F32);
        L("attn_q", 2, dim, dim, GGML_TYPE_Q4_K);
        L("attn_k", 2, dim, dim, GGML_TYPE_Q4_K);
        L("attn_v", 2, dim, dim, hi);
        L("attn_output", 2, dim, dim, GGML_TYPE_Q4_K);
        L("ffn_norm", 1, dim, 1, GGML_TYPE_F32);
        L("ffn_gate", 2, dim, ffn, GGML_TYPE_Q4_K);
        L("ffn_up", 2, dim, ffn, GGML_TYPE_Q4_K);
        L("ffn_down", 2, ffn, dim, hi);
#undef L
    }
#undef ADD
    uint64_t declared = gguf_writer_file_size(w);
    assert_int_equal(gguf_writer_begin(w, path, &err), 0);
    assert_int_equal(gguf_writer_write_zeros(w, data, &err), 0);
    assert_int_equal(gguf_writer_finish(w, &err), 0);
    gguf_writer_destroy(&w);

    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal((uint64_t)st.st_size, declared);
    assert_true(st.st_size > 3800000000LL);

    double t0 = now_s();
    gguf_file *f = NULL;
    if (gguf_open(path, &f, &err) != 0)
        fail_msg("%s", err.msg);
    double t1 = now_s();
    greta_model *m = NULL;
    if (greta_model_open(path, &m, &err) != 0)
        fail_msg("%s", err.msg);
    double t2 = now_s();
    assert_int_equal(gguf_n_tensors(f), 3 + 9 * layers);
    assert_int_equal(m->cfg.dim, dim);
    assert_int_equal(m->cfg.n_layers, layers);
    assert_int_equal(m->cfg.vocab_size, vocab);
    assert_int_equal(m->layers[31].w_down->ne[0], ffn);
    printf("  sparse 7B: %.2f GB file (%.1f MB on disk), %llu tensors; gguf_open %.3f ms, "
           "greta_model_open %.3f ms\n",
           (double)st.st_size / 1e9, (double)st.st_blocks * 512.0 / 1e6,
           (unsigned long long)gguf_n_tensors(f), (t1 - t0) * 1e3, (t2 - t1) * 1e3);
    greta_model_close(&m);
    gguf_close(&f);
    unlink(path);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_stories260k),
        cmocka_unit_test(test_tiny_random),
        cmocka_unit_test(test_gqa_quant_files),
        cmocka_unit_test(test_vocab_only),
        cmocka_unit_test(test_generated_ok),
        cmocka_unit_test(test_generated_bad),
        cmocka_unit_test(test_sparse_7b),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
