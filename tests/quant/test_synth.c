/* test_synth.c - `greta synth` (greta_synth_model and the CLI): the Llama-2
 * presets' parameter counts and the 7B Q4_K_M file size, determinism (same
 * seed and any thread count: same bytes; another seed: other bytes), the
 * calibration (std 0.02 +-10% per matrix, mean ~0, no all-zero block) for
 * every type, tokenizer metadata copied, the file opening as a model, and
 * CLI errors (exit status 2 usage, 1 bad vocab). */
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/gguf.h"
#include "common/model.h"
#include "kernels/cpu/synth.h"
#include "kernels/quant.h"
#include "test_util.h"

#define SIZE_7B_Q4_K_M 4081004448ull

static char tmp_path[4096 + 64];

static const char *tmp_file(const char *name)
{
    const char *dir = greta_test_tmpdir("synth");
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
    const char *d = greta_test_tmpdir("synth");
    assert_non_null(d);
    snprintf(dir, sizeof dir, "%s", d);
    return greta_test_run_cmd(cmd, dir, out, NULL);
}

/* Writes preset/type into name under the tmp dir; returns the path (static). */
static const char *synth(const char *preset, const char *type, const char *vocab, uint64_t seed,
                         int threads, const char *name, greta_synth_result *res)
{
    static char path[4200];
    snprintf(path, sizeof path, "%s", tmp_file(name));
    greta_synth_opts o = {.preset = greta_synth_preset_find(preset), .ftype = greta_ftype_find(type),
                          .vocab_path = vocab, .out_path = path, .seed = seed, .n_threads = threads};
    assert_non_null(o.preset);
    assert_non_null(o.ftype);
    greta_error err = {0};
    if (greta_synth_model(&o, res, &err) != 0)
        fail_msg("%s", err.msg);
    return path;
}

/* ---- presets and sizes -------------------------------------------------------------- */

static void test_llama2_presets_dry_run(void **state)
{
    GRETA_TESTDATA_OR_SKIP(vocab, "ggml-vocab-llama-spm.gguf");
    static const struct {
        const char *name;
        uint64_t params;
    } cases[] = {
        {"llama2-7b", 6738415616ull}, {"llama2-13b", 13015864320ull}, {"llama2-70b", 68976648192ull}};
    uint64_t size_7b = 0;
    for (size_t i = 0; i < 3; i++) {
        const char *out = tmp_file("never-written.gguf");
        greta_synth_opts o = {.preset = greta_synth_preset_find(cases[i].name),
                              .ftype = greta_ftype_find("Q4_K_M"), .vocab_path = vocab,
                              .out_path = out, .seed = 1, .n_threads = 1, .dry_run = true};
        assert_non_null(o.preset);
        greta_synth_result r;
        greta_error err = {0};
        if (greta_synth_model(&o, &r, &err) != 0)
            fail_msg("%s", err.msg);
        assert_int_equal(r.n_params, cases[i].params);
        assert_int_equal(r.vocab_size, 32000);
        assert_int_equal(r.n_tensors, 9 * o.preset->n_layers + 3);
        assert_null(fopen(out, "rb"));
        printf("  %-10s Q4_K_M: %" PRIu64 " parameters, %" PRIu64 " bytes (%.3f bpw)\n", cases[i].name,
               r.n_params, r.file_size, (double)r.file_size * 8.0 / (double)r.n_params);
        if (i == 0)
            size_7b = r.file_size;
    }
    const double rel = fabs((double)size_7b - (double)SIZE_7B_Q4_K_M) / (double)SIZE_7B_Q4_K_M;
    printf("  7B Q4_K_M: %" PRIu64 " bytes vs reference %llu: %.5f%% off\n", size_7b,
           (unsigned long long)SIZE_7B_Q4_K_M, rel * 100.0);
    assert_true(rel <= 0.001);
    /* presets as documented */
    const greta_synth_preset *p = greta_synth_preset_find("llama2-70b");
    assert_int_equal(p->n_kv_heads, 8);
    assert_int_equal(p->ffn_dim, 28672);
    p = greta_synth_preset_find("tiny");
    assert_int_equal(p->dim % 256, 0);
    assert_int_equal(p->ffn_dim % 256, 0);
    assert_true(p->n_kv_heads < p->n_heads);
    assert_null(greta_synth_preset_find("llama3-8b"));
}

/* ---- determinism ------------------------------------------------------------------- */

static void test_deterministic(void **state)
{
    GRETA_TESTDATA_OR_SKIP(v, "stories260K.gguf");
    char vocab[4096];
    snprintf(vocab, sizeof vocab, "%s", v);
    greta_synth_result r;
    char *a, *b, *c;
    size_t na, nb, nc;
    a = greta_read_file(synth("tiny", "Q4_K_M", vocab, 7, 1, "det-a.gguf", &r), &na);
    b = greta_read_file(synth("tiny", "Q4_K_M", vocab, 7, 3, "det-b.gguf", &r), &nb);
    c = greta_read_file(synth("tiny", "Q4_K_M", vocab, 8, 2, "det-c.gguf", &r), &nc);
    assert_non_null(a);
    assert_non_null(b);
    assert_non_null(c);
    assert_int_equal(na, r.file_size);
    assert_int_equal(na, nb);
    assert_memory_equal(a, b, na); /* 1 thread == 3 threads */
    assert_int_equal(na, nc);
    assert_true(memcmp(a, c, na) != 0); /* another seed */
    /* the data differ nearly everywhere, not only in the seed key */
    size_t diff = 0;
    for (size_t i = 0; i < na; i++)
        diff += a[i] != c[i];
    assert_true(diff > na / 2);
    free(a);
    free(b);
    free(c);
    /* the block API: a range equals its blocks made one by one */
    uint8_t range[4 * 210], one[210];
    assert_int_equal(greta_synth_blocks(GGML_TYPE_Q6_K, 5, 99, 10, 4, range), 0);
    for (int i = 0; i < 4; i++) {
        assert_int_equal(greta_synth_blocks(GGML_TYPE_Q6_K, 5, 99, 10 + (uint64_t)i, 1, one), 0);
        assert_memory_equal(range + 210 * i, one, 210);
    }
    assert_int_equal(greta_synth_blocks(GGML_TYPE_F16, 5, 99, 0, 1, one), GRETA_ERR_UNSUPPORTED);
    assert_true(greta_synth_tensor_key("blk.0.attn_q.weight") != greta_synth_tensor_key("blk.0.attn_k.weight"));
}

/* ---- calibration, all types ------------------------------------------------------------ */

static void check_stats(const char *path, const greta_ftype *ft, uint32_t n_layers)
{
    gguf_file *f = NULL;
    greta_error err = {0};
    assert_int_equal(gguf_open(path, &f, &err), 0);
    double lo = 1.0, hi = 0.0;
    for (uint64_t i = 0; i < gguf_n_tensors(f); i++) {
        const gguf_tensor *t = gguf_tensor_at(f, i);
        assert_int_equal(t->type, greta_ftype_tensor_type(ft, t->name, t->n_dims, t->ne, n_layers, NULL));
        float *y = malloc(t->n_elements * sizeof(float));
        assert_int_equal(greta_dequant_row(t->type, t->data, y, (int64_t)t->n_elements), 0);
        if (t->n_dims == 1) {
            for (uint64_t k = 0; k < t->n_elements; k++)
                assert_true(y[k] == 1.0f);
            free(y);
            continue;
        }
        double s = 0.0, s2 = 0.0;
        const uint32_t be = ggml_type_block_elems(t->type);
        for (uint64_t k = 0; k < t->n_elements; k += be) {
            int nonzero = 0;
            for (uint32_t j = 0; j < be; j++) {
                s += y[k + j];
                s2 += (double)y[k + j] * y[k + j];
                nonzero |= y[k + j] != 0.0f;
            }
            if (!nonzero)
                fail_msg("%s: %s block %" PRIu64 " is all zero", path, t->name, k / be);
        }
        const double n = (double)t->n_elements, mean = s / n, sd = sqrt(s2 / n - mean * mean);
        if (!(fabs(sd - 0.02) <= 0.002) || !(fabs(mean) < 0.001))
            fail_msg("%s: %s (%s) std %.5f mean %.6f", path, t->name, ggml_type_name(t->type), sd, mean);
        lo = fmin(lo, sd);
        hi = fmax(hi, sd);
        free(y);
    }
    printf("  %-6s %" PRIu64 " tensors: std per matrix %.5f .. %.5f\n", ft->name, gguf_n_tensors(f), lo, hi);
    gguf_close(&f);
}

static void test_calibration_all_types(void **state)
{
    GRETA_TESTDATA_OR_SKIP(v, "stories260K.gguf");
    char vocab[4096];
    snprintf(vocab, sizeof vocab, "%s", v);
    for (unsigned i = 0; greta_ftype_at(i); i++) {
        const greta_ftype *ft = greta_ftype_at(i);
        char name[64];
        snprintf(name, sizeof name, "tiny-%s.gguf", ft->name);
        greta_synth_result r;
        const char *path = synth("tiny", ft->name, vocab, 3, 2, name, &r);
        check_stats(path, ft, 2);
    }
}

/* ---- a complete model ---------------------------------------------------------------- */

static void check_model(const char *path, const char *vocab_path, const greta_synth_preset *p,
                        uint32_t vocab)
{
    greta_model *m = NULL;
    greta_error err = {0};
    if (greta_model_open(path, &m, &err) != 0)
        fail_msg("%s", err.msg);
    assert_int_equal(m->cfg.vocab_size, vocab);
    assert_int_equal(m->cfg.dim, p->dim);
    assert_int_equal(m->cfg.n_layers, p->n_layers);
    assert_int_equal(m->cfg.n_heads, p->n_heads);
    assert_int_equal(m->cfg.n_kv_heads, p->n_kv_heads);
    assert_int_equal(m->cfg.ffn_dim, p->ffn_dim);
    assert_int_equal(m->cfg.context_length, p->context);
    assert_true(m->cfg.rope_freq_base == p->rope_base);
    assert_true(m->cfg.rms_eps == p->rms_eps);
    assert_false(m->cfg.tied_output);
    /* every tokenizer key of the vocab file, same type and size */
    gguf_file *v = NULL;
    assert_int_equal(gguf_open(vocab_path, &v, &err), 0);
    int n_tok = 0;
    for (uint64_t i = 0; i < gguf_n_kv(v); i++) {
        const gguf_kv *a = gguf_kv_at(v, i);
        if (strncmp(a->key, "tokenizer.", 10) != 0)
            continue;
        const gguf_kv *b = gguf_find_kv(m->file, a->key);
        assert_non_null(b);
        assert_int_equal(a->value.type, b->value.type);
        if (a->value.type == GGUF_TYPE_ARRAY)
            assert_int_equal(a->value.v.arr.count, b->value.v.arr.count);
        n_tok++;
    }
    assert_true(n_tok >= 4);
    const gguf_value *ta, *tb;
    assert_int_equal(gguf_get_arr(v, "tokenizer.ggml.tokens", GGUF_TYPE_STRING, &ta, &err), 0);
    assert_int_equal(gguf_get_arr(m->file, "tokenizer.ggml.tokens", GGUF_TYPE_STRING, &tb, &err), 0);
    for (uint64_t i = 0; i < ta->v.arr.count; i += 97) {
        gguf_str x = gguf_arr_str(ta, i), y = gguf_arr_str(tb, i);
        assert_int_equal(x.len, y.len);
        assert_memory_equal(x.ptr, y.ptr, x.len);
    }
    uint64_t seed;
    assert_int_equal(gguf_get_u64(m->file, "greta.synth.seed", &seed, &err), 0);
    gguf_close(&v);
    greta_model_close(&m);
}

static void test_opens_as_model(void **state)
{
    GRETA_TESTDATA_OR_SKIP(v, "stories260K.gguf");
    char vocab[4096];
    snprintf(vocab, sizeof vocab, "%s", v);
    greta_synth_result r;
    const char *path = synth("tiny", "Q4_K_M", vocab, 1, 2, "model-tiny.gguf", &r);
    check_model(path, vocab, greta_synth_preset_find("tiny"), 512);
    GRETA_TESTDATA_OR_SKIP(lv, "ggml-vocab-llama-spm.gguf");
    snprintf(vocab, sizeof vocab, "%s", lv);
    path = synth("small", "Q5_K_M", vocab, 1, 2, "model-small.gguf", &r);
    assert_int_equal(r.vocab_size, 32000);
    check_model(path, vocab, greta_synth_preset_find("small"), 32000);
}

/* ---- CLI ------------------------------------------------------------------------------ */

static void test_cli(void **state)
{
    GRETA_TESTDATA_OR_SKIP(lv, "ggml-vocab-llama-spm.gguf");
    char llama_vocab[4096], args[16384], o1[4200], o2[4200];
    snprintf(llama_vocab, sizeof llama_vocab, "%s", lv);
    char *out;
    snprintf(args, sizeof args, "synth --preset llama2-7b --type Q4_K_M --vocab '%s' --dry-run", llama_vocab);
    assert_int_equal(run_greta(args, &out), 0);
    const char *p = strstr(out, "file size ");
    assert_non_null(p);
    const unsigned long long size = strtoull(p + 10, NULL, 10);
    printf("  greta synth --dry-run llama2-7b Q4_K_M: %llu bytes\n", size);
    assert_true(fabs((double)size - (double)SIZE_7B_Q4_K_M) <= 0.001 * (double)SIZE_7B_Q4_K_M);
    free(out);

    GRETA_TESTDATA_OR_SKIP(sv, "stories260K.gguf");
    char vocab[4096];
    snprintf(vocab, sizeof vocab, "%s", sv);
    snprintf(o1, sizeof o1, "%s", tmp_file("cli-1.gguf"));
    snprintf(o2, sizeof o2, "%s", tmp_file("cli-2.gguf"));
    snprintf(args, sizeof args, "synth --preset tiny --type Q6_K --vocab '%s' -o '%s' -t 1", vocab, o1);
    assert_int_equal(run_greta(args, &out), 0);
    assert_non_null(strstr(out, "1 threads"));
    free(out);
    snprintf(args, sizeof args, "synth --preset tiny --type Q6_K --vocab '%s' -o '%s' -t 2 --seed 1", vocab, o2);
    assert_int_equal(run_greta(args, &out), 0);
    assert_non_null(strstr(out, "2 threads"));
    free(out);
    size_t n1, n2;
    char *b1 = greta_read_file(o1, &n1), *b2 = greta_read_file(o2, &n2);
    assert_int_equal(n1, n2);
    assert_memory_equal(b1, b2, n1); /* default seed is 1; thread count changes nothing */
    free(b2);
    snprintf(args, sizeof args, "synth --preset tiny --type Q6_K --vocab '%s' -o '%s' --seed 0x2a", vocab, o2);
    assert_int_equal(run_greta(args, &out), 0);
    assert_non_null(strstr(out, "seed 42"));
    free(out);
    b2 = greta_read_file(o2, &n2);
    assert_int_equal(n1, n2);
    assert_true(memcmp(b1, b2, n1) != 0);
    free(b1);
    free(b2);

    static const struct {
        const char *args;
        int status;
        const char *msg;
    } bad[] = {
        {"synth", 2, "are required"},
        {"synth --preset nope --type Q4_K_M --vocab V -o O", 2, "unknown preset 'nope'"},
        {"synth --preset tiny --type Q2_K --vocab V -o O", 2, "unknown type 'Q2_K'"},
        {"synth --preset tiny --type Q4_K_M -o O", 2, "are required"},
        {"synth --preset tiny --type Q4_K_M --vocab V", 2, "are required"},
        {"synth --preset tiny --type Q4_K_M --vocab V -o O --seed -1", 2, "--seed '-1'"},
        {"synth --preset tiny --type Q4_K_M --vocab V -o O -t 0", 2, "thread count"},
        {"synth --preset tiny --type Q4_K_M --vocab V -o O --frobnicate", 2, "unknown argument"},
        {"synth --preset tiny --type Q4_K_M --vocab /nonexistent.gguf -o O", 1, "/nonexistent.gguf"},
        {"synth --preset", 2, "needs a value"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        const int st = run_greta(bad[i].args, &out);
        if (st != bad[i].status || !strstr(out, bad[i].msg))
            fail_msg("'%s': status %d, output: %s", bad[i].args, st, out);
        free(out);
    }
    /* a vocab file without tokenizer.ggml.tokens */
    gguf_writer *w = gguf_writer_create(NULL);
    assert_int_equal(gguf_writer_set_str(w, "general.architecture", "llama"), 0);
    snprintf(o1, sizeof o1, "%s", tmp_file("no-tokens.gguf"));
    assert_int_equal(gguf_writer_begin(w, o1, NULL), 0);
    assert_int_equal(gguf_writer_finish(w, NULL), 0);
    gguf_writer_destroy(&w);
    snprintf(args, sizeof args, "synth --preset tiny --type Q4_K_M --vocab '%s' --dry-run", o1);
    assert_int_equal(run_greta(args, &out), 1);
    assert_non_null(strstr(out, "tokenizer.ggml.tokens"));
    free(out);
    assert_int_equal(run_greta("synth --help", &out), 0);
    assert_non_null(strstr(out, "llama2-70b"));
    free(out);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_llama2_presets_dry_run),
        cmocka_unit_test(test_deterministic),
        cmocka_unit_test(test_calibration_all_types),
        cmocka_unit_test(test_opens_as_model),
        cmocka_unit_test(test_cli),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
