/* test_synth_parity.c - for a small `greta synth` model of every file type
 * (and F16/BF16 copies), the logits computed from the quantized weights
 * equal the logits of the same weights dequantized to F32: within 1e-4
 * relative as the issue asks, and in fact bit for bit, since the CPU backend
 * dequantizes exactly and then computes in fp32 in one fixed order. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "etest.h"
#include "kernels/cpu/quant_mix.h"
#include "kernels/cpu/synth.h"
#include "kernels/quant.h"
#include "test_util.h"

#define N_TOK 6

static void compare_with_f32(const char *quant_path, const char *f32_path, const char *label)
{
    const int32_t toks[N_TOK] = {1, 403, 407, 261, 378, 432};
    greta_engine *q = etest_open(quant_path, 16, 1, 0, 2, 0);
    greta_engine *f = etest_open(f32_path, 16, 1, 0, 2, 0);
    const size_t vocab = greta_engine_config(q)->vocab_size;
    assert_int_equal(greta_engine_config(f)->vocab_size, vocab);
    float *a = malloc(sizeof(float) * vocab * N_TOK), *b = malloc(sizeof(float) * vocab * N_TOK);
    assert_true(a && b);
    etest_all_logits(q, toks, N_TOK, a);
    etest_all_logits(f, toks, N_TOK, b);
    double maxrel = 0, maxabs = 0;
    for (size_t i = 0; i < vocab * N_TOK; i++) {
        assert_true(isfinite(a[i]));
        const double d = fabs((double)a[i] - b[i]);
        if (d > maxabs)
            maxabs = d;
        const double rel = d / (fabs((double)b[i]) > 1e-3 ? fabs((double)b[i]) : 1e-3);
        if (rel > maxrel)
            maxrel = rel;
    }
    print_message("%-8s max |diff| %.3g, max rel %.3g\n", label, maxabs, maxrel);
    assert_true(maxrel <= 1e-4);
    assert_memory_equal(a, b, sizeof(float) * vocab * N_TOK);
    free(a);
    free(b);
    greta_engine_destroy(&q);
    greta_engine_destroy(&f);
}

static void test_synth_every_type(void **state)
{
    GRETA_TESTDATA_OR_SKIP(v, "stories260K.gguf");
    char vocab[4096];
    snprintf(vocab, sizeof vocab, "%s", v);
    const char *dir = greta_test_tmpdir("engine_synth");
    assert_non_null(dir);
    const greta_synth_preset *preset = greta_synth_preset_find("tiny");
    assert_non_null(preset);
    int n = 0;
    char q8[4200] = "";
    for (unsigned i = 0; greta_ftype_at(i); i++, n++) {
        const greta_ftype *ft = greta_ftype_at(i);
        char qpath[4200], fpath[4200];
        snprintf(qpath, sizeof qpath, "%s/tiny-%s.gguf", dir, ft->name);
        snprintf(fpath, sizeof fpath, "%s/tiny-%s-f32.gguf", dir, ft->name);
        greta_synth_opts o = {.preset = preset, .ftype = ft, .vocab_path = vocab, .out_path = qpath,
                              .seed = 7, .n_threads = 1};
        greta_synth_result res;
        greta_error err = {0};
        if (greta_synth_model(&o, &res, &err))
            fail_msg("synth %s: %s", ft->name, err.msg);
        etest_write_variant(qpath, fpath, GGML_TYPE_F32, NULL, 0);
        compare_with_f32(qpath, fpath, ft->name);
        if (ft->base == GGML_TYPE_Q8_0)
            snprintf(q8, sizeof q8, "%s", qpath);
    }
    assert_true(n >= 6);
    /* F16 and BF16 matrices: copies of the Q8_0 model's weights */
    assert_true(q8[0] != '\0');
    const uint32_t half[2] = {GGML_TYPE_F16, GGML_TYPE_BF16};
    for (int h = 0; h < 2; h++) {
        char hpath[4200], fpath[4200];
        snprintf(hpath, sizeof hpath, "%s/tiny-%s.gguf", dir, ggml_type_name(half[h]));
        snprintf(fpath, sizeof fpath, "%s/tiny-%s-f32.gguf", dir, ggml_type_name(half[h]));
        etest_write_variant(q8, hpath, half[h], NULL, 0);
        etest_write_variant(hpath, fpath, GGML_TYPE_F32, NULL, 0);
        compare_with_f32(hpath, fpath, ggml_type_name(half[h]));
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_synth_every_type),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
