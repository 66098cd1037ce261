/* test_memplan.c - the memory plan: exact sizes, the check against the
 * memory available, the default fit of a Llama-2 7B Q4_K_M model on a 24 GB
 * machine, and no allocation at all while tokens are processed (malloc,
 * calloc, realloc and posix_memalign are wrapped at link time and counted). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "etest.h"
#include "kernels/cpu/quant_mix.h"
#include "kernels/quant.h"
#include "test_util.h"

/* ---- allocation counting (link with --wrap=malloc,...) -------------------------- */

static volatile int counting; /* volatile: malloc is assumed not to read globals */
static volatile long n_allocs; /* volatile: nor to write them */

void *__real_malloc(size_t n);
void *__real_calloc(size_t a, size_t b);
void *__real_realloc(void *p, size_t n);
int __real_posix_memalign(void **p, size_t a, size_t n);

void *__wrap_malloc(size_t n)
{
    if (counting)
        __atomic_add_fetch(&n_allocs, 1, __ATOMIC_RELAXED);
    return __real_malloc(n);
}

void *__wrap_calloc(size_t a, size_t b)
{
    if (counting)
        __atomic_add_fetch(&n_allocs, 1, __ATOMIC_RELAXED);
    return __real_calloc(a, b);
}

void *__wrap_realloc(void *p, size_t n)
{
    if (counting)
        __atomic_add_fetch(&n_allocs, 1, __ATOMIC_RELAXED);
    return __real_realloc(p, n);
}

int __wrap_posix_memalign(void **p, size_t a, size_t n)
{
    if (counting)
        __atomic_add_fetch(&n_allocs, 1, __ATOMIC_RELAXED);
    return __real_posix_memalign(p, a, n);
}

static void test_no_allocation_per_token(void **state)
{
    GRETA_TESTDATA_OR_SKIP(s, "stories260K.gguf");
    greta_engine *e = etest_open(s, 64, 2, 0, 2, 0);
    /* the wrapper sees the engine's own allocations */
    long before = n_allocs;
    counting = 1;
    void *volatile probe = malloc(16); /* volatile: the compiler may not drop the pair */
    counting = 0;
    free(probe);
    assert_int_equal(n_allocs, before + 1);

    const int32_t prompt[4] = {1, 403, 407, 261};
    int32_t out[40];
    greta_gen_stats st;
    greta_error err = {0};
    greta_generate_params gp = {.prompt = prompt, .n_prompt = 4, .n_predict = 40, .eos_token = -1,
                                .tokens_out = out};
    n_allocs = 0;
    counting = 1;
    int rc = greta_engine_generate(e, &gp, &st, &err);
    /* a batch of two sequences, too */
    int32_t tok[2] = {out[0], 1}, pos[2] = {greta_engine_seq_len(e, 0), 0}, seq[2] = {0, 1};
    const greta_batch b = {.n_tokens = 2, .tokens = tok, .pos = pos, .seq = seq};
    const float *l;
    int rc2 = greta_engine_forward(e, &b, &l, &err);
    counting = 0;
    assert_int_equal(rc, 0);
    assert_int_equal(rc2, 0);
    assert_int_equal(st.n_generated, 40);
    assert_int_equal(n_allocs, 0);
    greta_engine_destroy(&e);
}

/* ---- sizes ------------------------------------------------------------------------------ */

static void test_plan_sizes(void **state)
{
    GRETA_TESTDATA_OR_SKIP(s, "stories260K.gguf");
    greta_model *m = NULL;
    greta_error err = {0};
    assert_int_equal(greta_model_open(s, &m, &err), 0);
    greta_engine_params p;
    greta_engine_params_default(&p);
    p.n_ctx = 100;
    p.n_seq = 3;
    p.n_batch = 16;
    p.n_threads = 2;
    greta_backend_params bp;
    greta_mem_plan plan;
    assert_int_equal(greta_engine_plan_model(m, &p, &bp, &plan, &err), 0);
    assert_string_equal(plan.backend, "cpu");
    /* K and V, 3 sequences, 5 layers, 100 positions, 4 kv heads x 8 dims, fp32 */
    assert_int_equal(plan.kv_bytes, 2ull * 3 * 5 * 100 * 32 * 4);
    assert_int_equal(plan.logits_bytes, 16ull * 512 * 4);
    uint64_t w = 0;
    for (uint64_t i = 0; i < gguf_n_tensors(m->file); i++)
        w += gguf_tensor_at(m->file, i)->nbytes;
    assert_int_equal(plan.weights_bytes, w); /* every tensor is used */
    assert_true(plan.scratch_bytes > 16ull * 64 * 4 * 3);
    assert_int_equal(plan.total_bytes, plan.weights_bytes + plan.kv_bytes + plan.scratch_bytes + plan.logits_bytes);
    /* defaults: n_ctx = the model's 2048, one sequence, batch 512 */
    greta_engine_params_default(&p);
    assert_int_equal(greta_engine_plan_model(m, &p, &bp, &plan, &err), 0);
    assert_int_equal(bp.n_ctx, 2048);
    assert_int_equal(bp.n_seq, 1);
    assert_int_equal(bp.n_batch, 512);
    assert_true(bp.n_threads >= 1);
    char text[1024];
    greta_engine_plan_format(&plan, &bp, text, sizeof text);
    assert_non_null(strstr(text, "KV cache"));
    assert_non_null(strstr(text, "n_ctx 2048"));

    /* the check */
    assert_int_equal(greta_engine_plan_check(&plan, plan.total_bytes, &err), 0);
    assert_int_equal(greta_engine_plan_check(&plan, plan.total_bytes - 1, &err), GRETA_ERR_NOMEM);
    assert_non_null(strstr(err.msg, "memory plan: needs"));
    assert_non_null(strstr(err.msg, "-c"));
    /* an engine that does not fit is refused before allocating */
    greta_engine *e = NULL;
    p.mem_available = 1 << 20;
    assert_int_equal(greta_engine_from_model(m, &p, &e, &err), GRETA_ERR_NOMEM);
    assert_null(e);
    assert_non_null(strstr(err.msg, "available"));
    /* ... and one that fits is made with exactly that plan */
    p.mem_available = plan.total_bytes;
    assert_int_equal(greta_engine_from_model(m, &p, &e, &err), 0);
    assert_int_equal(greta_engine_plan(e)->total_bytes, plan.total_bytes);
    greta_engine_destroy(&e); /* closes m */
}

/* A greta_model of Llama-2 7B shapes with Q4_K_M tensor sizes (no file). */
static void test_plan_7b_fits_24gb(void **state)
{
    enum { L = 32 };
    static gguf_tensor t[3 + 9 * L];
    static greta_layer_weights layers[L];
    greta_model m;
    memset(&m, 0, sizeof m);
    m.cfg = (greta_model_config){.vocab_size = 32000, .dim = 4096, .n_layers = L, .n_heads = 32,
                                 .n_kv_heads = 32, .head_dim = 128, .ffn_dim = 11008,
                                 .context_length = 4096, .rope_dim = 128, .rope_freq_base = 10000,
                                 .rope_freq_scale = 1, .rms_eps = 1e-5f};
    m.layers = layers;
    const greta_ftype *ft = greta_ftype_find("Q4_K_M");
    assert_non_null(ft);
    int k = 0;
    char name[64];
#define TENSOR(dst, nm, d0, d1)                                                              \
    do {                                                                                     \
        gguf_tensor *x = &t[k++];                                                            \
        snprintf(name, sizeof name, "%s", nm);                                               \
        x->ne[0] = d0, x->ne[1] = d1, x->ne[2] = x->ne[3] = 1, x->n_dims = (d1) > 1 ? 2 : 1; \
        x->type = greta_ftype_tensor_type(ft, name, x->n_dims, x->ne, L, NULL);              \
        x->nbytes = ggml_row_bytes(x->type, x->ne[0]) * x->ne[1];                            \
        dst = x;                                                                             \
    } while (0)
    TENSOR(m.tok_embd, "token_embd.weight", 4096, 32000);
    TENSOR(m.output_norm, "output_norm.weight", 4096, 1);
    TENSOR(m.output, "output.weight", 4096, 32000);
    for (int l = 0; l < L; l++) {
        char nm[64];
#define LT(field, sfx, d0, d1)                               \
        snprintf(nm, sizeof nm, "blk.%d." sfx ".weight", l); \
        TENSOR(layers[l].field, nm, d0, d1)
        LT(attn_norm, "attn_norm", 4096, 1);
        LT(wq, "attn_q", 4096, 4096);
        LT(wk, "attn_k", 4096, 4096);
        LT(wv, "attn_v", 4096, 4096);
        LT(wo, "attn_output", 4096, 4096);
        LT(ffn_norm, "ffn_norm", 4096, 1);
        LT(w_gate, "ffn_gate", 4096, 11008);
        LT(w_up, "ffn_up", 4096, 11008);
        LT(w_down, "ffn_down", 11008, 4096);
    }
    greta_engine_params p;
    greta_engine_params_default(&p);
    p.n_threads = 2;
    greta_backend_params bp;
    greta_mem_plan plan;
    greta_error err = {0};
    assert_int_equal(greta_engine_plan_model(&m, &p, &bp, &plan, &err), 0);
    char text[1024];
    greta_engine_plan_format(&plan, &bp, text, sizeof text);
    print_message("Llama-2 7B Q4_K_M, defaults:\n%s", text);
    assert_int_equal(bp.n_ctx, 4096);
    assert_int_equal(plan.kv_bytes, 2ull * 32 * 4096 * 4096 * 4); /* 4 GiB */
    assert_true(plan.weights_bytes > 3800ull << 20 && plan.weights_bytes < 4200ull << 20);
    const uint64_t gb24 = 24000000000ull;
    assert_int_equal(greta_engine_plan_check(&plan, gb24, &err), 0);
    /* five sequences of 4096 (20 GiB of fp32 KV cache) do not fit */
    p.n_seq = 5;
    assert_int_equal(greta_engine_plan_model(&m, &p, &bp, &plan, &err), 0);
    assert_int_equal(greta_engine_plan_check(&plan, gb24, &err), GRETA_ERR_NOMEM);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_no_allocation_per_token),
        cmocka_unit_test(test_plan_sizes),
        cmocka_unit_test(test_plan_7b_fits_24gb),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
