/* test_inspect.c - runs `greta inspect` (path in argv[1]) on every GGUF in the
 * test data, in text and --json form, and checks what it prints against the
 * reader; then bad files, a broken model, another architecture and usage
 * errors (exit status and message). */
#include "test_util.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#include <cJSON.h>

#include "common/gguf.h"
#include "common/model.h"

static const char *g_greta;

typedef struct run_result {
    int status;
    char *out, *err;
} run_result;

/* Runs greta with the given arguments (already shell-quoted). */
static run_result run(const char *args)
{
    const char *dir = greta_test_tmpdir("gguf_inspect");
    assert_non_null(dir);
    char out[4400], errp[4400], cmd[16384];
    snprintf(out, sizeof out, "%s/stdout.txt", dir);
    snprintf(errp, sizeof errp, "%s/stderr.txt", dir);
    snprintf(cmd, sizeof cmd, "'%s' %s >'%s' 2>'%s'", g_greta, args, out, errp);
    int st = system(cmd);
    assert_true(st != -1 && WIFEXITED(st));
    run_result r = {WEXITSTATUS(st), greta_read_file(out, NULL), greta_read_file(errp, NULL)};
    assert_non_null(r.out);
    assert_non_null(r.err);
    return r;
}

static void run_free(run_result *r)
{
    free(r->out);
    free(r->err);
}

static uint64_t num_after(const char *text, const char *label)
{
    const char *p = strstr(text, label);
    if (!p)
        fail_msg("'%s' not in output", label);
    return strtoull(p + strlen(label), NULL, 10);
}

static uint64_t json_u64(const cJSON *o, const char *name)
{
    const cJSON *x = cJSON_GetObjectItemCaseSensitive(o, name);
    if (!cJSON_IsNumber(x))
        fail_msg("JSON field '%s' missing or not a number", name);
    return (uint64_t)x->valuedouble;
}

static void check_file(const char *name)
{
    GRETA_TESTDATA_OR_SKIP(path, name);
    char quoted[4400];
    snprintf(quoted, sizeof quoted, "inspect '%s'", path);
    greta_error err = {0};
    gguf_file *f = NULL;
    assert_int_equal(gguf_open(path, &f, &err), 0);
    uint64_t params = 0, bytes = 0;
    for (uint64_t i = 0; i < gguf_n_tensors(f); i++) {
        params += gguf_tensor_at(f, i)->n_elements;
        bytes += gguf_tensor_at(f, i)->nbytes;
    }
    greta_model_config cfg;
    bool is_model = gguf_n_tensors(f) > 0 && greta_model_config_read(f, &cfg, &err) == 0;

    /* text */
    run_result r = run(quoted);
    if (r.status != 0)
        fail_msg("%s: exit %d: %s", name, r.status, r.err);
    assert_int_equal(num_after(r.out, "version:"), gguf_version(f));
    assert_int_equal(num_after(r.out, "alignment:"), gguf_alignment(f));
    assert_int_equal(num_after(r.out, "data offset:"), gguf_data_offset(f));
    assert_int_equal(num_after(r.out, "metadata ("), gguf_n_kv(f));
    assert_int_equal(num_after(r.out, "tensors ("), gguf_n_tensors(f));
    assert_int_equal(num_after(r.out, "parameters:"), params);
    assert_non_null(strstr(r.out, "general.architecture"));
    assert_non_null(strstr(r.out, "array[string] x "));
    if (is_model) {
        assert_non_null(strstr(r.out, "model config (llama):"));
        assert_int_equal(num_after(r.out, "  dim "), cfg.dim);
        assert_int_equal(num_after(r.out, "  n_kv_heads "), cfg.n_kv_heads);
        assert_int_equal(num_after(r.out, "  vocab_size "), cfg.vocab_size);
        /* every tensor has a row */
        for (uint64_t i = 0; i < gguf_n_tensors(f); i++)
            assert_non_null(strstr(r.out, gguf_tensor_at(f, i)->name));
    } else {
        assert_non_null(strstr(r.out, "model: none"));
    }
    run_free(&r);

    /* JSON */
    snprintf(quoted, sizeof quoted, "inspect '%s' --json", path);
    r = run(quoted);
    assert_int_equal(r.status, 0);
    cJSON *j = cJSON_Parse(r.out);
    if (!j)
        fail_msg("%s: --json output does not parse", name);
    assert_int_equal(json_u64(j, "version"), gguf_version(f));
    assert_int_equal(json_u64(j, "alignment"), gguf_alignment(f));
    assert_int_equal(json_u64(j, "data_offset"), gguf_data_offset(f));
    assert_int_equal(json_u64(j, "file_size"), gguf_file_size(f));
    assert_int_equal(json_u64(j, "parameters"), params);
    assert_int_equal(json_u64(j, "tensor_bytes"), bytes);
    const cJSON *md = cJSON_GetObjectItemCaseSensitive(j, "metadata");
    assert_true(cJSON_IsArray(md));
    assert_int_equal(cJSON_GetArraySize(md), gguf_n_kv(f));
    for (uint64_t i = 0; i < gguf_n_kv(f); i++) {
        const gguf_kv *kv = gguf_kv_at(f, i);
        const cJSON *o = cJSON_GetArrayItem(md, (int)i);
        assert_string_equal(cJSON_GetObjectItemCaseSensitive(o, "key")->valuestring, kv->key);
        assert_string_equal(cJSON_GetObjectItemCaseSensitive(o, "type")->valuestring,
                            gguf_type_name(kv->value.type));
        if (kv->value.type == GGUF_TYPE_ARRAY) {
            assert_int_equal(json_u64(o, "count"), kv->value.v.arr.count);
            const cJSON *head = cJSON_GetObjectItemCaseSensitive(o, "head");
            uint64_t want = kv->value.v.arr.count < 5 ? kv->value.v.arr.count : 5;
            assert_int_equal(cJSON_GetArraySize(head), want);
            if (kv->value.v.arr.elem_type == GGUF_TYPE_STRING && want > 0) {
                gguf_str s0 = gguf_arr_str(&kv->value, 0);
                const cJSON *h0 = cJSON_GetArrayItem(head, 0);
                assert_true(cJSON_IsString(h0));
                assert_int_equal(strlen(h0->valuestring), s0.len);
                assert_memory_equal(h0->valuestring, s0.ptr, s0.len);
            }
        } else if (kv->value.type == GGUF_TYPE_UINT32) {
            assert_int_equal(json_u64(o, "value"), kv->value.v.u64);
        } else if (kv->value.type == GGUF_TYPE_FLOAT32) {
            const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, "value");
            assert_true((float)v->valuedouble == (float)kv->value.v.f64);
        }
    }
    const cJSON *ts = cJSON_GetObjectItemCaseSensitive(j, "tensors");
    assert_int_equal(cJSON_GetArraySize(ts), gguf_n_tensors(f));
    for (uint64_t i = 0; i < gguf_n_tensors(f); i++) {
        const gguf_tensor *t = gguf_tensor_at(f, i);
        const cJSON *o = cJSON_GetArrayItem(ts, (int)i);
        assert_string_equal(cJSON_GetObjectItemCaseSensitive(o, "name")->valuestring, t->name);
        assert_int_equal(json_u64(o, "offset"), t->offset);
        assert_int_equal(json_u64(o, "bytes"), t->nbytes);
        const cJSON *sh = cJSON_GetObjectItemCaseSensitive(o, "shape");
        assert_int_equal(cJSON_GetArraySize(sh), t->n_dims);
        assert_int_equal((uint64_t)cJSON_GetArrayItem(sh, 0)->valuedouble, t->ne[0]);
    }
    const cJSON *model = cJSON_GetObjectItemCaseSensitive(j, "model");
    const cJSON *bpw = cJSON_GetObjectItemCaseSensitive(j, "bits_per_weight");
    if (is_model) {
        assert_true(cJSON_IsObject(model));
        assert_int_equal(json_u64(model, "dim"), cfg.dim);
        assert_int_equal(json_u64(model, "n_layers"), cfg.n_layers);
        assert_int_equal(json_u64(model, "n_heads"), cfg.n_heads);
        assert_int_equal(json_u64(model, "n_kv_heads"), cfg.n_kv_heads);
        assert_int_equal(json_u64(model, "ffn_dim"), cfg.ffn_dim);
        assert_int_equal(json_u64(model, "vocab_size"), cfg.vocab_size);
        assert_true((float)cJSON_GetObjectItemCaseSensitive(model, "rope_freq_base")->valuedouble ==
                    cfg.rope_freq_base);
        assert_true((float)cJSON_GetObjectItemCaseSensitive(model, "rms_eps")->valuedouble == cfg.rms_eps);
        assert_true(fabs(bpw->valuedouble - (double)bytes * 8.0 / (double)params) < 1e-9);
    } else {
        assert_true(cJSON_IsNull(model));
        assert_true(cJSON_IsString(cJSON_GetObjectItemCaseSensitive(j, "no_model")));
        assert_true(cJSON_IsNull(bpw));
    }
    printf("  %-28s ok (%llu tensors, %llu params)\n", name, (unsigned long long)gguf_n_tensors(f),
           (unsigned long long)params);
    cJSON_Delete(j);
    run_free(&r);
    gguf_close(&f);
}

static void test_all_testdata(void **state)
{
    (void)state;
    static const char *files[] = {
        "stories260K.gguf",        "llama-2-tiny-random.gguf", "ggml-vocab-llama-spm.gguf",
        "quant/gqa-F32.gguf",      "quant/gqa-BF16.gguf",      "quant/gqa-Q4_0.gguf",
        "quant/gqa-Q8_0.gguf",     "quant/gqa-Q4_K_S.gguf",    "quant/gqa-Q4_K_M.gguf",
        "quant/gqa-Q5_K_M.gguf",   "quant/gqa-Q6_K.gguf",
    };
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++)
        check_file(files[i]);
}

static void test_known_values(void **state)
{
    (void)state;
    GRETA_TESTDATA_OR_SKIP(path, "stories260K.gguf");
    char args[4400];
    snprintf(args, sizeof args, "inspect '%s'", path);
    run_result r = run(args);
    assert_int_equal(r.status, 0);
    /* PROVENANCE.md: 292,800 parameters, F32 -> 32 bits per weight */
    assert_int_equal(num_after(r.out, "parameters:"), 292800);
    assert_non_null(strstr(r.out, "bits per weight: 32.0000"));
    assert_non_null(strstr(r.out, "data offset:  14176"));
    assert_non_null(strstr(r.out, "[\"<unk>\", \"<s>\", \"</s>\", \"<0x00>\", \"<0x01>\", ... (507 more)]"));
    assert_non_null(strstr(r.out, "layer_norm_rms_epsilon     f32                    1e-05"));
    assert_non_null(strstr(r.out, "blk.0.ffn_down.weight            F32   [172, 64]"));
    assert_non_null(strstr(r.out, "tied_output      false"));
    run_free(&r);
}

static const char *write_tmp(const char *name, const void *data, size_t n)
{
    static char path[4400];
    snprintf(path, sizeof path, "%s/%s", greta_test_tmpdir("gguf_inspect"), name);
    FILE *fp = fopen(path, "wb");
    assert_non_null(fp);
    assert_int_equal(fwrite(data, 1, n, fp), n);
    fclose(fp);
    return path;
}

static void test_bad_inputs(void **state)
{
    (void)state;
    GRETA_TESTDATA_OR_SKIP(src, "stories260K.gguf");
    size_t size;
    char *buf = greta_read_file(src, &size);
    assert_non_null(buf);
    char args[4600];

    /* truncated file: one line naming the problem, exit 1, nothing on stdout */
    const char *bad = write_tmp("truncated.gguf", buf, 5000);
    for (int json = 0; json < 2; json++) {
        snprintf(args, sizeof args, "inspect '%s'%s", bad, json ? " --json" : "");
        run_result r = run(args);
        assert_int_equal(r.status, 1);
        assert_string_equal(r.out, "");
        assert_non_null(strstr(r.err, "greta inspect: "));
        assert_non_null(strstr(r.err, "truncated.gguf"));
        assert_non_null(strstr(r.err, "tokenizer.ggml"));
        assert_non_null(strstr(r.err, "at byte"));
        char *nl = strchr(r.err, '\n');
        assert_non_null(nl);
        assert_int_equal(nl[1], '\0'); /* exactly one line */
        run_free(&r);
    }
    /* bad magic */
    buf[0] = 'X';
    bad = write_tmp("magic.gguf", buf, size);
    snprintf(args, sizeof args, "inspect '%s'", bad);
    run_result r = run(args);
    assert_int_equal(r.status, 1);
    assert_non_null(strstr(r.err, "magic"));
    run_free(&r);
    free(buf);

    /* missing file */
    r = run("inspect /nonexistent/model.gguf");
    assert_int_equal(r.status, 1);
    assert_non_null(strstr(r.err, "/nonexistent/model.gguf"));
    run_free(&r);

    /* a llama file whose tensors do not make a model: report + exit 1 */
    greta_error err = {0};
    char path[4400];
    snprintf(path, sizeof path, "%s/broken-model.gguf", greta_test_tmpdir("gguf_inspect"));
    gguf_writer *w = gguf_writer_create(&err);
    gguf_writer_set_str(w, "general.architecture", "llama");
    gguf_writer_set_u32(w, "llama.embedding_length", 8);
    gguf_writer_set_u32(w, "llama.block_count", 1);
    gguf_writer_set_u32(w, "llama.attention.head_count", 2);
    gguf_writer_set_u32(w, "llama.feed_forward_length", 16);
    gguf_writer_set_u32(w, "llama.context_length", 64);
    gguf_writer_set_u32(w, "llama.vocab_size", 4);
    for (int i = 0; i < 9; i++) {
        char n[32];
        snprintf(n, sizeof n, "extra.%d", i);
        gguf_writer_add_tensor(w, n, 1, (uint64_t[]){8}, 0);
    }
    gguf_writer_add_tensor(w, "token_embd.weight", 2, (uint64_t[]){8, 5}, 0);
    assert_int_equal(gguf_writer_begin(w, path, &err), 0);
    assert_int_equal(gguf_writer_write_zeros(w, 9 * 32 + 160, &err), 0);
    assert_int_equal(gguf_writer_finish(w, &err), 0);
    gguf_writer_destroy(&w);
    snprintf(args, sizeof args, "inspect '%s'", path);
    r = run(args);
    assert_int_equal(r.status, 1);
    assert_non_null(strstr(r.out, "tensors (10)"));
    assert_non_null(strstr(r.out, "model: error:"));
    assert_non_null(strstr(r.err, "token_embd.weight' has shape [8, 5], expected [8, 4]"));
    run_free(&r);
    snprintf(args, sizeof args, "inspect --json '%s'", path);
    r = run(args);
    assert_int_equal(r.status, 1);
    cJSON *j = cJSON_Parse(r.out);
    assert_non_null(j);
    assert_true(cJSON_IsNull(cJSON_GetObjectItemCaseSensitive(j, "model")));
    assert_non_null(strstr(cJSON_GetObjectItemCaseSensitive(j, "model_error")->valuestring, "token_embd.weight"));
    cJSON_Delete(j);
    run_free(&r);

    /* another architecture: described, no model, exit 0 */
    snprintf(path, sizeof path, "%s/gpt2.gguf", greta_test_tmpdir("gguf_inspect"));
    w = gguf_writer_create(&err);
    gguf_writer_set_str(w, "general.architecture", "gpt2");
    gguf_writer_set_str(w, "odd\x01key", "bad \xff utf8 \x7f");
    gguf_writer_add_tensor(w, "x", 1, (uint64_t[]){4}, 0);
    assert_int_equal(gguf_writer_begin(w, path, &err), 0);
    assert_int_equal(gguf_writer_write_data(w, "0123456789abcdef", 16, &err), 0);
    assert_int_equal(gguf_writer_finish(w, &err), 0);
    gguf_writer_destroy(&w);
    snprintf(args, sizeof args, "inspect '%s'", path);
    r = run(args);
    assert_int_equal(r.status, 0);
    assert_non_null(strstr(r.out, "model: none (unsupported architecture 'gpt2')"));
    assert_non_null(strstr(r.out, "\"bad \xff utf8 \\x7f\""));
    assert_non_null(strstr(r.out, "  odd\\x01key ")); /* control characters escaped */
    run_free(&r);
    snprintf(args, sizeof args, "inspect '%s' --json", path);
    r = run(args);
    assert_int_equal(r.status, 0);
    j = cJSON_Parse(r.out);
    assert_non_null(j);
    const cJSON *md = cJSON_GetObjectItemCaseSensitive(j, "metadata");
    /* invalid UTF-8 became U+FFFD, control characters are escaped by cJSON */
    assert_string_equal(cJSON_GetObjectItemCaseSensitive(cJSON_GetArrayItem(md, 1), "value")->valuestring,
                        "bad \xef\xbf\xbd utf8 \x7f");
    assert_string_equal(cJSON_GetObjectItemCaseSensitive(cJSON_GetArrayItem(md, 1), "key")->valuestring,
                        "odd\x01key");
    assert_non_null(strstr(cJSON_GetObjectItemCaseSensitive(j, "no_model")->valuestring, "gpt2"));
    cJSON_Delete(j);
    run_free(&r);
}

/* Every scalar type and a nested array come out with the right JSON types. */
static void test_value_types_json(void **state)
{
    (void)state;
    greta_error err = {0};
    char path[4400], args[4600];
    snprintf(path, sizeof path, "%s/types.gguf", greta_test_tmpdir("gguf_inspect"));
    gguf_writer *w = gguf_writer_create(&err);
    gguf_value v = {.type = GGUF_TYPE_INT8, .v.i64 = -7};
    gguf_writer_set_value(w, "i8", &v);
    v = (gguf_value){.type = GGUF_TYPE_UINT16, .v.u64 = 65535};
    gguf_writer_set_value(w, "u16", &v);
    v = (gguf_value){.type = GGUF_TYPE_INT64, .v.i64 = -5000000000LL};
    gguf_writer_set_value(w, "i64", &v);
    v = (gguf_value){.type = GGUF_TYPE_FLOAT64, .v.f64 = 0.125};
    gguf_writer_set_value(w, "f64", &v);
    gguf_writer_set_u64(w, "u64big", UINT64_MAX);
    gguf_writer_set_bool(w, "flag", false);
    gguf_writer_set_f32(w, "f32", 1e-5f);
    gguf_writer_set_arr(w, "ints", GGUF_TYPE_INT16, (int16_t[]){-1, 2, -3, 4, -5, 6, -7}, 7);
    gguf_value inner[2] = {{.type = GGUF_TYPE_ARRAY, .v.arr = {GGUF_TYPE_UINT8, 2, (const uint8_t *)"\x05\x06", NULL}},
                           {.type = GGUF_TYPE_ARRAY, .v.arr = {GGUF_TYPE_UINT8, 0, NULL, NULL}}};
    v = (gguf_value){.type = GGUF_TYPE_ARRAY, .v.arr = {GGUF_TYPE_ARRAY, 2, NULL, inner}};
    gguf_writer_set_value(w, "nested", &v);
    assert_int_equal(gguf_writer_begin(w, path, &err), 0);
    assert_int_equal(gguf_writer_finish(w, &err), 0);
    gguf_writer_destroy(&w);

    snprintf(args, sizeof args, "inspect --json '%s'", path);
    run_result r = run(args);
    assert_int_equal(r.status, 0);
    cJSON *j = cJSON_Parse(r.out);
    assert_non_null(j);
    const cJSON *md = cJSON_GetObjectItemCaseSensitive(j, "metadata");
#define ITEM(i) cJSON_GetObjectItemCaseSensitive(cJSON_GetArrayItem(md, i), "value")
    assert_true(ITEM(0)->valuedouble == -7);
    assert_true(ITEM(1)->valuedouble == 65535);
    assert_true(ITEM(2)->valuedouble == -5000000000.0);
    assert_true(ITEM(3)->valuedouble == 0.125);
    assert_string_equal(ITEM(4)->valuestring, "18446744073709551615"); /* beyond 2^53: a string */
    assert_true(cJSON_IsFalse(ITEM(5)));
    assert_true(ITEM(6)->valuedouble == 1e-05); /* shortest form of the f32 */
#undef ITEM
    const cJSON *ints = cJSON_GetArrayItem(md, 7);
    assert_string_equal(cJSON_GetObjectItemCaseSensitive(ints, "elem_type")->valuestring, "i16");
    assert_int_equal(json_u64(ints, "count"), 7);
    const cJSON *head = cJSON_GetObjectItemCaseSensitive(ints, "head");
    assert_int_equal(cJSON_GetArraySize(head), 5);
    assert_true(cJSON_GetArrayItem(head, 4)->valuedouble == -5);
    const cJSON *nested = cJSON_GetArrayItem(md, 8);
    assert_string_equal(cJSON_GetObjectItemCaseSensitive(nested, "elem_type")->valuestring, "array");
    const cJSON *n0 = cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(nested, "head"), 0);
    assert_string_equal(cJSON_GetObjectItemCaseSensitive(n0, "elem_type")->valuestring, "u8");
    assert_true(cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(n0, "head"), 1)->valuedouble == 6);
    assert_true(cJSON_IsNull(cJSON_GetObjectItemCaseSensitive(j, "model")));
    assert_non_null(strstr(cJSON_GetObjectItemCaseSensitive(j, "no_model")->valuestring, "general.architecture"));
    cJSON_Delete(j);
    run_free(&r);

    /* the text form abbreviates the same arrays */
    snprintf(args, sizeof args, "inspect '%s'", path);
    r = run(args);
    assert_int_equal(r.status, 0);
    assert_non_null(strstr(r.out, "array[i16] x 7         [-1, 2, -3, 4, -5, ... (2 more)]"));
    assert_non_null(strstr(r.out, "array[array] x 2       [array[u8] x 2, array[u8] x 0]"));
    assert_non_null(strstr(r.out, "18446744073709551615"));
    run_free(&r);
}

static void test_usage(void **state)
{
    (void)state;
    run_result r = run("inspect");
    assert_int_equal(r.status, 2);
    assert_non_null(strstr(r.err, "usage: greta inspect FILE [--json]"));
    run_free(&r);
    r = run("inspect --frobnicate x.gguf");
    assert_int_equal(r.status, 2);
    assert_non_null(strstr(r.err, "unknown option '--frobnicate'"));
    run_free(&r);
    r = run("inspect a.gguf b.gguf");
    assert_int_equal(r.status, 2);
    run_free(&r);
    r = run("inspect --help");
    assert_int_equal(r.status, 0);
    assert_non_null(strstr(r.out, "--json"));
    run_free(&r);
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: %s PATH-TO-greta\n", argv[0]);
        return 2;
    }
    g_greta = argv[1];
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_all_testdata),
        cmocka_unit_test(test_known_values),
        cmocka_unit_test(test_bad_inputs),
        cmocka_unit_test(test_value_types_json),
        cmocka_unit_test(test_usage),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
