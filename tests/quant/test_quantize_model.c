/* test_quantize_model.c - `greta quantize` (greta_quantize_file and the CLI):
 * per-tensor types identical to llama.cpp's files for all six file types,
 * the row-length fallbacks of stories260K, metadata copied, F16/BF16 inputs,
 * thread-count independence, and bad input (exit status 2 for usage, 1 for
 * unreadable or non-float input). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/gguf.h"
#include "kernels/cpu/quant_mix.h"
#include "kernels/cpu/quantize_model.h"
#include "kernels/quant.h"
#include "test_util.h"

static char tmp_path[4096 + 64];

static const char *tmp_file(const char *name)
{
    const char *dir = greta_test_tmpdir("quantize_model");
    assert_non_null(dir);
    snprintf(tmp_path, sizeof tmp_path, "%s/%s", dir, name);
    return tmp_path;
}

/* Runs `greta ARGS` (stderr into stdout); returns the exit status and the
 * output in *out (malloc'ed). */
static int run_greta(const char *args, char **out)
{
    char cmd[16384 + 4096], dir[4096]; /* args come from a 16384-byte buffer */
    snprintf(cmd, sizeof cmd, "'%s' %s", GRETA_BIN, args);
    const char *d = greta_test_tmpdir("quantize_model");
    assert_non_null(d);
    snprintf(dir, sizeof dir, "%s", d);
    return greta_test_run_cmd(cmd, dir, out, NULL);
}

static void read_all(const char *path, char **buf, size_t *n)
{
    *buf = greta_read_file(path, n);
    assert_non_null(*buf);
}

/* ---- against llama.cpp's files ------------------------------------------------------ */

static void check_like_llama(const char *ftype, const char *ref_name)
{
    GRETA_TESTDATA_OR_SKIP(in, "quant/gqa-F32.gguf");
    char in_path[4096];
    snprintf(in_path, sizeof in_path, "%s", in);
    GRETA_TESTDATA_OR_SKIP(ref_path, ref_name);
    char out_name[64];
    snprintf(out_name, sizeof out_name, "gqa-%s.gguf", ftype);
    const char *out = tmp_file(out_name);
    greta_error err = {0};
    greta_quantize_summary sum;
    const greta_ftype *ft = greta_ftype_find(ftype);
    assert_non_null(ft);
    if (greta_quantize_file(in_path, out, ft, 2, NULL, &sum, &err) != 0)
        fail_msg("%s", err.msg);
    gguf_file *ours = NULL, *ref = NULL, *src = NULL;
    assert_int_equal(gguf_open(out, &ours, &err), 0);
    assert_int_equal(gguf_open(ref_path, &ref, &err), 0);
    assert_int_equal(gguf_open(in_path, &src, &err), 0);
    assert_int_equal(gguf_n_tensors(ours), gguf_n_tensors(ref));
    assert_int_equal(sum.n_tensors, gguf_n_tensors(ref));
    assert_int_equal(sum.n_fallback, 0);
    assert_int_equal(sum.file_size, gguf_file_size(ours));
    int counts[GGML_TYPE_COUNT] = {0};
    for (uint64_t i = 0; i < gguf_n_tensors(ref); i++) {
        const gguf_tensor *r = gguf_tensor_at(ref, i);
        const gguf_tensor *o = gguf_find_tensor(ours, r->name);
        assert_non_null(o);
        if (o->type != r->type)
            fail_msg("%s: tensor %s is %s, llama.cpp's is %s", ftype, r->name, ggml_type_name(o->type),
                     ggml_type_name(r->type));
        assert_int_equal(o->n_dims, r->n_dims);
        assert_memory_equal(o->ne, r->ne, sizeof o->ne);
        assert_int_equal(o->nbytes, r->nbytes);
        counts[o->type]++;
        /* tensor order is the input's */
        assert_string_equal(gguf_tensor_at(ours, i)->name, gguf_tensor_at(src, i)->name);
    }
    /* metadata: every input key is there, file type and quantization version set */
    uint32_t v;
    assert_int_equal(gguf_get_u32(ours, "general.file_type", &v, &err), 0);
    assert_int_equal(v, ft->file_type);
    assert_int_equal(gguf_get_u32(ref, "general.file_type", &v, &err), 0);
    assert_int_equal(v, ft->file_type);
    assert_int_equal(gguf_get_u32(ours, "general.quantization_version", &v, &err), 0);
    assert_int_equal(v, 2);
    assert_int_equal(gguf_n_kv(ours), gguf_n_kv(src) + 1);
    for (uint64_t i = 0; i < gguf_n_kv(src); i++) {
        const gguf_kv *a = gguf_kv_at(src, i);
        const gguf_kv *b = gguf_find_kv(ours, a->key);
        assert_non_null(b);
        assert_int_equal(a->value.type, b->value.type);
    }
    const gguf_value *toks;
    assert_int_equal(gguf_get_arr(ours, "tokenizer.ggml.tokens", GGUF_TYPE_STRING, &toks, &err), 0);
    assert_int_equal(toks->v.arr.count, 512);
    float base;
    assert_int_equal(gguf_get_f32(ours, "llama.rope.freq_base", &base, &err), 0);
    assert_true(base == 10011.0f);
    printf("  %-6s matches llama.cpp: F32 %d, Q8_0 %d, Q4_0 %d, Q4_K %d, Q5_K %d, Q6_K %d; %llu bytes "
           "(llama.cpp %llu)\n", ftype, counts[GGML_TYPE_F32], counts[GGML_TYPE_Q8_0],
           counts[GGML_TYPE_Q4_0], counts[GGML_TYPE_Q4_K], counts[GGML_TYPE_Q5_K],
           counts[GGML_TYPE_Q6_K], (unsigned long long)gguf_file_size(ours),
           (unsigned long long)gguf_file_size(ref));
    gguf_close(&ours);
    gguf_close(&ref);
    gguf_close(&src);
}

static void test_q4_k_m(void **state) { check_like_llama("Q4_K_M", "quant/gqa-Q4_K_M.gguf"); }
static void test_q4_k_s(void **state) { check_like_llama("Q4_K_S", "quant/gqa-Q4_K_S.gguf"); }
static void test_q5_k_m(void **state) { check_like_llama("Q5_K_M", "quant/gqa-Q5_K_M.gguf"); }
static void test_q6_k(void **state) { check_like_llama("Q6_K", "quant/gqa-Q6_K.gguf"); }
static void test_q8_0(void **state) { check_like_llama("Q8_0", "quant/gqa-Q8_0.gguf"); }
static void test_q4_0(void **state) { check_like_llama("Q4_0", "quant/gqa-Q4_0.gguf"); }

/* ---- type rules ------------------------------------------------------------------- */

static void test_mix_rules(void **state)
{
    const greta_ftype *m = greta_ftype_find("Q4_K_M"), *s = greta_ftype_find("Q4_K_S");
    assert_non_null(m);
    assert_null(greta_ftype_find("q4_k_m"));
    assert_null(greta_ftype_find("Q2_K"));
    const uint64_t ne[2] = {4096, 4096};
    char name[64];
    /* 32 layers: Q6_K in layers 0-3, 6, 9, ..., 27, 28-31 */
    int q6 = 0;
    for (int i = 0; i < 32; i++) {
        snprintf(name, sizeof name, "blk.%d.ffn_down.weight", i);
        const uint32_t t = greta_ftype_tensor_type(m, name, 2, ne, 32, NULL);
        const int want = i < 4 || i >= 28 || (i - 4) % 3 == 2;
        assert_int_equal(t, want ? GGML_TYPE_Q6_K : GGML_TYPE_Q4_K);
        q6 += t == GGML_TYPE_Q6_K;
        snprintf(name, sizeof name, "blk.%d.attn_k.weight", i);
        assert_int_equal(greta_ftype_tensor_type(m, name, 2, ne, 32, NULL), GGML_TYPE_Q4_K);
        snprintf(name, sizeof name, "blk.%d.attn_v.weight", i);
        assert_int_equal(greta_ftype_tensor_type(s, name, 2, ne, 32, NULL),
                         i < 4 ? GGML_TYPE_Q5_K : GGML_TYPE_Q4_K);
    }
    assert_int_equal(q6, 16);
    assert_int_equal(greta_ftype_tensor_type(m, "output.weight", 2, ne, 32, NULL), GGML_TYPE_Q6_K);
    assert_int_equal(greta_ftype_tensor_type(greta_ftype_find("Q8_0"), "output.weight", 2, ne, 32, NULL),
                     GGML_TYPE_Q8_0);
    assert_int_equal(greta_ftype_tensor_type(m, "output_norm.weight", 1, ne, 32, NULL), GGML_TYPE_F32);
    uint32_t wanted;
    const uint64_t odd[2] = {172, 64}, r64[2] = {64, 64};
    assert_int_equal(greta_ftype_tensor_type(m, "blk.0.ffn_up.weight", 2, odd, 5, &wanted), GGML_TYPE_F16);
    assert_int_equal(wanted, GGML_TYPE_Q4_K);
    assert_int_equal(greta_ftype_tensor_type(m, "blk.0.attn_q.weight", 2, r64, 5, &wanted), GGML_TYPE_Q8_0);
    assert_int_equal(greta_tensor_layer("blk.12.attn_q.weight"), 12);
    assert_int_equal(greta_tensor_layer("blk.x.attn_q.weight"), -1);
    assert_int_equal(greta_tensor_layer("blk.3"), -1);
    assert_int_equal(greta_tensor_layer("output.weight"), -1);
}

/* ---- stories260K: row-length fallbacks ----------------------------------------------- */

static void test_stories_fallbacks(void **state)
{
    GRETA_TESTDATA_OR_SKIP(in, "stories260K.gguf");
    char in_path[4096];
    snprintf(in_path, sizeof in_path, "%s", in);
    const char *out = tmp_file("stories-Q4_K_M.gguf");
    char *log_buf = NULL;
    size_t log_len = 0;
    FILE *log = open_memstream(&log_buf, &log_len);
    greta_error err = {0};
    greta_quantize_summary sum;
    if (greta_quantize_file(in_path, out, greta_ftype_find("Q4_K_M"), 1, log, &sum, &err) != 0)
        fail_msg("%s", err.msg);
    fclose(log);
    printf("%s", log_buf);
    assert_int_equal(sum.n_tensors, 48);
    assert_int_equal(sum.n_fallback, 37); /* every matrix */
    gguf_file *f = NULL, *src = NULL;
    assert_int_equal(gguf_open(out, &f, &err), 0);
    assert_int_equal(gguf_open(in_path, &src, &err), 0);
    for (uint64_t i = 0; i < gguf_n_tensors(f); i++) {
        const gguf_tensor *t = gguf_tensor_at(f, i), *s = gguf_find_tensor(src, t->name);
        uint32_t want = t->n_dims == 1 ? GGML_TYPE_F32 : t->ne[0] == 172 ? GGML_TYPE_F16 : GGML_TYPE_Q8_0;
        assert_int_equal(t->type, want);
        /* values: close to the F32 original */
        float *a = malloc(t->n_elements * sizeof(float));
        const uint64_t rb = ggml_row_bytes(t->type, t->ne[0]);
        for (uint64_t r = 0; r < t->n_elements / t->ne[0]; r++)
            greta_dequant_row(t->type, (const uint8_t *)t->data + r * rb, a + r * t->ne[0], (int64_t)t->ne[0]);
        double e = 0.0, n = 0.0;
        for (uint64_t k = 0; k < t->n_elements; k++) {
            const double d = (double)a[k] - ((const float *)s->data)[k];
            e += d * d;
            n += (double)a[k] * a[k];
        }
        assert_true(sqrt(e / n) < (t->type == GGML_TYPE_Q8_0 ? 0.01 : 0.001));
        free(a);
    }
    assert_non_null(strstr(log_buf, "blk.0.ffn_down.weight"));
    assert_non_null(strstr(log_buf, "F32 -> F16  (fallback: Q4_K needs rows that are a multiple of 256, ne[0] = 172)"));
    assert_non_null(strstr(log_buf, "F32 -> Q8_0  (fallback: Q6_K needs rows"));
    assert_non_null(strstr(log_buf, "37 fallback(s)"));
    gguf_close(&f);
    gguf_close(&src);
    free(log_buf);
}

/* ---- F16 / BF16 inputs, threads ---------------------------------------------------- */

static void test_bf16_input(void **state)
{
    GRETA_TESTDATA_OR_SKIP(in, "quant/gqa-BF16.gguf");
    char in_path[4096];
    snprintf(in_path, sizeof in_path, "%s", in);
    const char *out = tmp_file("gqa-bf16-Q8_0.gguf");
    greta_error err = {0};
    if (greta_quantize_file(in_path, out, greta_ftype_find("Q8_0"), 3, NULL, NULL, &err) != 0)
        fail_msg("%s", err.msg);
    gguf_file *f = NULL, *src = NULL;
    assert_int_equal(gguf_open(out, &f, &err), 0);
    assert_int_equal(gguf_open(in_path, &src, &err), 0);
    const gguf_tensor *t = gguf_find_tensor(f, "blk.1.ffn_up.weight");
    const gguf_tensor *s = gguf_find_tensor(src, "blk.1.ffn_up.weight");
    assert_int_equal(t->type, GGML_TYPE_Q8_0);
    assert_int_equal(s->type, GGML_TYPE_BF16);
    float *a = malloc(t->n_elements * sizeof(float)), *b = malloc(t->n_elements * sizeof(float));
    greta_dequant_row(t->type, t->data, a, (int64_t)t->n_elements);
    greta_dequant_row(s->type, s->data, b, (int64_t)s->n_elements);
    double e = 0.0, n = 0.0;
    for (uint64_t k = 0; k < t->n_elements; k++) {
        e += ((double)a[k] - b[k]) * ((double)a[k] - b[k]);
        n += (double)b[k] * b[k];
    }
    assert_true(sqrt(e / n) < 0.01);
    assert_true(sqrt(e / n) > 0.0);
    free(a);
    free(b);
    gguf_close(&f);
    gguf_close(&src);
}

static void test_f16_input_and_threads(void **state)
{
    GRETA_TESTDATA_OR_SKIP(in, "llama-2-tiny-random.gguf");
    char in_path[4096];
    snprintf(in_path, sizeof in_path, "%s", in);
    greta_error err = {0};
    char *a, *b;
    size_t na, nb;
    char p1[4200];
    snprintf(p1, sizeof p1, "%s", tmp_file("tiny-t1.gguf"));
    if (greta_quantize_file(in_path, p1, greta_ftype_find("Q8_0"), 1, NULL, NULL, &err) != 0)
        fail_msg("%s", err.msg);
    const char *p3 = tmp_file("tiny-t3.gguf");
    if (greta_quantize_file(in_path, p3, greta_ftype_find("Q8_0"), 3, NULL, NULL, &err) != 0)
        fail_msg("%s", err.msg);
    read_all(p1, &a, &na);
    read_all(p3, &b, &nb);
    assert_int_equal(na, nb);
    assert_memory_equal(a, b, na); /* same bytes for any thread count */
    free(a);
    free(b);
    gguf_file *f = NULL;
    assert_int_equal(gguf_open(p3, &f, &err), 0);
    /* rows of 8 (F16 in) -> F16; ffn_down rows of 32 -> Q8_0; output.weight stays Q8_0 base */
    assert_int_equal(gguf_find_tensor(f, "blk.0.attn_q.weight")->type, GGML_TYPE_F16);
    assert_int_equal(gguf_find_tensor(f, "blk.0.ffn_down.weight")->type, GGML_TYPE_Q8_0);
    assert_int_equal(gguf_find_tensor(f, "output.weight")->type, GGML_TYPE_F16);
    assert_int_equal(gguf_find_tensor(f, "output_norm.weight")->type, GGML_TYPE_F32);
    gguf_close(&f);
}

/* ---- bad input ---------------------------------------------------------------------- */

static void test_bad_inputs(void **state)
{
    greta_error err = {0};
    const greta_ftype *ft = greta_ftype_find("Q4_K_M");
    assert_int_equal(greta_quantize_file("/nonexistent/model.gguf", tmp_file("x.gguf"), ft, 1, NULL,
                                         NULL, &err) < 0, 1);
    assert_non_null(strstr(err.msg, "/nonexistent/model.gguf"));
    GRETA_TESTDATA_OR_SKIP(q, "quant/gqa-Q4_K_M.gguf");
    char qpath[4096];
    snprintf(qpath, sizeof qpath, "%s", q);
    greta_error_clear(&err);
    assert_int_equal(greta_quantize_file(qpath, tmp_file("x.gguf"), ft, 1, NULL, NULL, &err),
                     GRETA_ERR_UNSUPPORTED);
    assert_non_null(strstr(err.msg, "quantize needs F32, F16 or BF16"));
    assert_null(fopen(tmp_file("x.gguf"), "rb")); /* nothing written */

    /* a NaN in a matrix: the error names the tensor and row */
    gguf_writer *w = gguf_writer_create(&err);
    const uint64_t ne[2] = {32, 4};
    assert_int_equal(gguf_writer_add_tensor(w, "blk.0.attn_q.weight", 2, ne, GGML_TYPE_F32), 0);
    char nan_path[4200];
    snprintf(nan_path, sizeof nan_path, "%s", tmp_file("nan.gguf"));
    assert_int_equal(gguf_writer_begin(w, nan_path, &err), 0);
    float data[128] = {0};
    data[70] = NAN;
    assert_int_equal(gguf_writer_write_data(w, data, sizeof data, &err), 0);
    assert_int_equal(gguf_writer_finish(w, &err), 0);
    gguf_writer_destroy(&w);
    greta_error_clear(&err);
    assert_int_equal(greta_quantize_file(nan_path, tmp_file("y.gguf"), greta_ftype_find("Q8_0"), 1,
                                         NULL, NULL, &err), GRETA_ERR_INVALID);
    assert_non_null(strstr(err.msg, "tensor 'blk.0.attn_q.weight' row 2 holds a NaN"));
    assert_null(fopen(tmp_file("y.gguf"), "rb"));     /* nothing left behind */
    assert_null(fopen(tmp_file("y.gguf.tmp"), "rb"));
    /* the output directory does not exist */
    GRETA_TESTDATA_OR_SKIP(st, "stories260K.gguf");
    greta_error_clear(&err);
    assert_true(greta_quantize_file(st, "/nonexistent/dir/out.gguf", ft, 1, NULL, NULL, &err) < 0);
    assert_non_null(strstr(err.msg, "/nonexistent/dir/out.gguf"));
}

static void test_cli(void **state)
{
    GRETA_TESTDATA_OR_SKIP(st, "stories260K.gguf");
    char in_path[4096], args[12000];
    snprintf(in_path, sizeof in_path, "%s", st);
    char *out;
    assert_int_equal(run_greta("quantize", &out), 2);
    assert_non_null(strstr(out, "expected IN OUT TYPE"));
    free(out);
    snprintf(args, sizeof args, "quantize '%s' '%s' Q3_K", in_path, tmp_file("cli.gguf"));
    assert_int_equal(run_greta(args, &out), 2);
    assert_non_null(strstr(out, "unknown TYPE 'Q3_K'"));
    free(out);
    snprintf(args, sizeof args, "quantize -t 0 '%s' '%s' Q8_0", in_path, tmp_file("cli.gguf"));
    assert_int_equal(run_greta(args, &out), 2);
    free(out);
    snprintf(args, sizeof args, "quantize --bogus '%s' '%s' Q8_0", in_path, tmp_file("cli.gguf"));
    assert_int_equal(run_greta(args, &out), 2);
    free(out);
    snprintf(args, sizeof args, "quantize /nonexistent.gguf '%s' Q8_0", tmp_file("cli.gguf"));
    assert_int_equal(run_greta(args, &out), 1);
    assert_non_null(strstr(out, "/nonexistent.gguf"));
    free(out);
    GRETA_TESTDATA_OR_SKIP(q, "quant/gqa-Q8_0.gguf");
    snprintf(args, sizeof args, "quantize '%s' '%s' Q4_0", q, tmp_file("cli.gguf"));
    assert_int_equal(run_greta(args, &out), 1);
    assert_non_null(strstr(out, "is Q8_0; quantize needs F32, F16 or BF16"));
    free(out);
    snprintf(args, sizeof args, "quantize -t 2 '%s' '%s' Q4_K_M", in_path, tmp_file("cli.gguf"));
    assert_int_equal(run_greta(args, &out), 0);
    assert_non_null(strstr(out, "[  48/  48]"));
    assert_non_null(strstr(out, "F32 -> F16"));
    assert_non_null(strstr(out, "48 tensors, 292800 elements"));
    free(out);
    assert_int_equal(run_greta("quantize --help", &out), 0);
    assert_non_null(strstr(out, "Q5_K_M"));
    free(out);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_mix_rules),
        cmocka_unit_test(test_q4_k_m),
        cmocka_unit_test(test_q4_k_s),
        cmocka_unit_test(test_q5_k_m),
        cmocka_unit_test(test_q6_k),
        cmocka_unit_test(test_q8_0),
        cmocka_unit_test(test_q4_0),
        cmocka_unit_test(test_stories_fallbacks),
        cmocka_unit_test(test_bf16_input),
        cmocka_unit_test(test_f16_input_and_threads),
        cmocka_unit_test(test_bad_inputs),
        cmocka_unit_test(test_cli),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
