/* test_quantize.c - the reference quantizers: known answers, error bounds,
 * bad input, and quality against llama.cpp: quantizing gqa-F32.gguf gives,
 * tensor by tensor, an RMS error at most 1.05x that of llama.cpp's own file
 * for the same type (Q8_0, Q4_0, Q4_K, Q5_K, Q6_K). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/gguf.h"
#include "kernels/cpu/quantize.h"
#include "kernels/quant.h"
#include "test_util.h"

/* Deterministic pseudo-random normal-ish values (sum of uniforms). */
static void fill_random(float *x, int64_t n, uint32_t seed, float scale)
{
    uint32_t s = seed * 2654435761u + 1;
    for (int64_t i = 0; i < n; i++) {
        float acc = 0.0f;
        for (int k = 0; k < 4; k++) {
            s = s * 1664525u + 1013904223u;
            acc += (float)(s >> 8) / 16777216.0f;
        }
        x[i] = (acc - 2.0f) * scale;
    }
}

static double rms_err(const float *a, const float *b, int64_t n)
{
    double s = 0.0;
    for (int64_t i = 0; i < n; i++)
        s += ((double)a[i] - b[i]) * ((double)a[i] - b[i]);
    return sqrt(s / (double)n);
}

static double rms(const float *a, int64_t n)
{
    double s = 0.0;
    for (int64_t i = 0; i < n; i++)
        s += (double)a[i] * a[i];
    return sqrt(s / (double)n);
}

/* Quantizes and dequantizes n values; returns RMS error / RMS of x. */
static double roundtrip(uint32_t type, const float *x, float *y, int64_t n)
{
    void *q = malloc(ggml_row_bytes(type, (uint64_t)n));
    assert_non_null(q);
    assert_int_equal(greta_quantize_row(type, x, q, n), 0);
    assert_int_equal(greta_dequant_row(type, q, y, n), 0);
    free(q);
    return rms_err(x, y, n) / rms(x, n);
}

static void test_known_q8_0(void **state)
{
    float x[32] = {0};
    x[0] = 1.27f;
    x[1] = -0.635f;
    x[2] = 0.01f;
    block_q8_0 b;
    assert_int_equal(greta_quantize_row(GGML_TYPE_Q8_0, x, &b, 32), 0);
    assert_int_equal(b.d, greta_f32_to_fp16(0.01f));
    assert_int_equal(b.qs[0], 127);
    assert_int_equal(b.qs[1], -64); /* -63.5 rounds half to even */
    assert_int_equal(b.qs[2], 1);
    assert_int_equal(b.qs[3], 0);
}

static void test_known_exact_grid(void **state)
{
    /* values already on a grid come back exactly */
    float x[256], y[256];
    for (int i = 0; i < 32; i++)
        x[i] = (float)((i % 15) - 7) * 0.25f; /* Q4_0: -7..7 times 0.25 */
    x[5] = -2.0f;                              /* code -8 */
    assert_true(roundtrip(GGML_TYPE_Q4_0, x, y, 32) == 0.0);
    for (int i = 0; i < 32; i++)
        x[i] = (float)((i * 37) % 255 - 127) / 64.0f;
    x[0] = 127.0f / 64.0f;
    assert_true(roundtrip(GGML_TYPE_Q8_0, x, y, 32) == 0.0);
    for (int i = 0; i < 256; i++)
        x[i] = (float)(i % 16) * 0.5f; /* 0..7.5: one Q4_K scale, no min */
    assert_true(roundtrip(GGML_TYPE_Q4_K, x, y, 256) < 1e-3);
    for (int i = 0; i < 256; i++)
        x[i] = (float)(i % 32) * 0.5f;
    assert_true(roundtrip(GGML_TYPE_Q5_K, x, y, 256) < 1e-3);
    for (int i = 0; i < 256; i++) /* codes -32..31 times 0.5, -32 in every sub-block */
        x[i] = i % 16 == 0 ? -16.0f : (float)((i * 5) % 63 - 31) * 0.5f;
    assert_true(roundtrip(GGML_TYPE_Q6_K, x, y, 256) == 0.0);
}

static void test_zero_and_constant_rows(void **state)
{
    static const uint32_t types[] = {GGML_TYPE_Q8_0, GGML_TYPE_Q4_0, GGML_TYPE_Q4_K, GGML_TYPE_Q5_K,
                                     GGML_TYPE_Q6_K};
    float x[512] = {0}, y[512];
    for (size_t t = 0; t < sizeof types / sizeof types[0]; t++) {
        uint8_t q[1024]; /* room for any type, F32 included */
        assert_int_equal(greta_quantize_row(types[t], x, q, 256), 0);
        assert_int_equal(greta_dequant_row(types[t], q, y, 256), 0);
        for (int i = 0; i < 256; i++)
            assert_true(y[i] == 0.0f);
    }
    for (int i = 0; i < 256; i++)
        x[i] = -0.75f; /* constant negative: K-quants store it as a min */
    for (size_t t = 0; t < sizeof types / sizeof types[0]; t++)
        assert_true(roundtrip(types[t], x, y, 256) < 2e-3);
}

static void test_error_bounds_random(void **state)
{
    /* relative RMS error for gaussian-like data, with margin over the
     * theoretical value of each format */
    static const struct {
        uint32_t type;
        double max_rel;
    } cases[] = {
        {GGML_TYPE_Q8_0, 0.006}, {GGML_TYPE_Q4_0, 0.09}, {GGML_TYPE_Q4_K, 0.08},
        {GGML_TYPE_Q5_K, 0.04},  {GGML_TYPE_Q6_K, 0.02}, {GGML_TYPE_F16, 0.0003},
        {GGML_TYPE_BF16, 0.002},
    };
    const int64_t n = 4096;
    float *x = malloc(n * sizeof *x), *y = malloc(n * sizeof *y);
    fill_random(x, n, 3, 0.02f);
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        const double r = roundtrip(cases[c].type, x, y, n);
        printf("  %-5s relative RMS error %.5f (bound %.4f)\n", ggml_type_name(cases[c].type), r,
               cases[c].max_rel);
        assert_true(r < cases[c].max_rel);
        assert_true(r > 0.0);
    }
    assert_true(roundtrip(GGML_TYPE_F32, x, y, n) == 0.0);
    free(x);
    free(y);
}

static void test_deterministic(void **state)
{
    float x[1024];
    fill_random(x, 1024, 9, 1.0f);
    uint8_t a[1024], b[1024];
    memset(a, 0xAA, sizeof a);
    memset(b, 0x55, sizeof b);
    assert_int_equal(greta_quantize_row(GGML_TYPE_Q4_K, x, a, 1024), 0);
    assert_int_equal(greta_quantize_row(GGML_TYPE_Q4_K, x, b, 1024), 0);
    assert_memory_equal(a, b, ggml_row_bytes(GGML_TYPE_Q4_K, 1024));
}

static void test_bad_input(void **state)
{
    float x[512] = {0};
    uint8_t q[2048];
    assert_int_equal(greta_quantize_row(GGML_TYPE_Q4_K, x, q, 255), GRETA_ERR_INVALID);
    assert_int_equal(greta_quantize_row(GGML_TYPE_Q4_K, x, q, 0), GRETA_ERR_INVALID);
    assert_int_equal(greta_quantize_row(GGML_TYPE_Q8_0, x, q, 48), GRETA_ERR_INVALID);
    assert_int_equal(greta_quantize_row(GGML_TYPE_Q8_0, x, q, -32), GRETA_ERR_INVALID);
    assert_int_equal(greta_quantize_row(GGML_TYPE_Q4_1, x, q, 32), GRETA_ERR_UNSUPPORTED);
    assert_int_equal(greta_quantize_row(GGML_TYPE_Q8_K, x, q, 256), GRETA_ERR_UNSUPPORTED);
    assert_int_equal(greta_quantize_row(1234, x, q, 256), GRETA_ERR_UNSUPPORTED);
    assert_false(greta_quantize_supported(GGML_TYPE_Q8_K));
    assert_true(greta_quantize_supported(GGML_TYPE_Q5_K));
    x[100] = NAN;
    assert_int_equal(greta_quantize_row(GGML_TYPE_Q6_K, x, q, 256), GRETA_ERR_INVALID);
    x[100] = INFINITY;
    assert_int_equal(greta_quantize_row(GGML_TYPE_Q4_0, x, q, 256), GRETA_ERR_INVALID);
    /* float formats carry specials through */
    assert_int_equal(greta_quantize_row(GGML_TYPE_F16, x, q, 256), 0);
    uint16_t h;
    memcpy(&h, q + 200, 2);
    assert_int_equal(h, 0x7C00);
}

/* ---- quality against llama.cpp ----------------------------------------------------- */

typedef struct done_entry {
    char name[64];
    uint32_t type;
} done_entry;

static void test_quality_vs_llama_cpp(void **state)
{
    static const char *files[] = {"quant/gqa-Q8_0.gguf", "quant/gqa-Q4_0.gguf",
                                  "quant/gqa-Q4_K_S.gguf", "quant/gqa-Q4_K_M.gguf",
                                  "quant/gqa-Q5_K_M.gguf", "quant/gqa-Q6_K.gguf"};
    GRETA_TESTDATA_OR_SKIP(f32_path, "quant/gqa-F32.gguf");
    gguf_file *src = NULL;
    greta_error err = {0};
    assert_int_equal(gguf_open(f32_path, &src, &err), 0);
    done_entry done[256];
    int n_done = 0, per_type[GGML_TYPE_COUNT] = {0};
    double worst[GGML_TYPE_COUNT] = {0};
    printf("  %-26s %-5s %12s %12s %7s\n", "tensor", "type", "rms ours", "rms llama", "ratio");
    for (size_t fi = 0; fi < sizeof files / sizeof files[0]; fi++) {
        GRETA_TESTDATA_OR_SKIP(path, files[fi]);
        gguf_file *ref = NULL;
        assert_int_equal(gguf_open(path, &ref, &err), 0);
        for (uint64_t i = 0; i < gguf_n_tensors(ref); i++) {
            const gguf_tensor *rt = gguf_tensor_at(ref, i);
            if (ggml_type_block_elems(rt->type) <= 1)
                continue;
            int seen = 0;
            for (int k = 0; k < n_done; k++)
                seen |= done[k].type == rt->type && strcmp(done[k].name, rt->name) == 0;
            if (seen)
                continue;
            assert_true(n_done < 256);
            snprintf(done[n_done].name, sizeof done[n_done].name, "%s", rt->name);
            done[n_done++].type = rt->type;
            const gguf_tensor *st = gguf_find_tensor(src, rt->name);
            assert_non_null(st);
            assert_int_equal(st->type, GGML_TYPE_F32);
            assert_int_equal(st->n_elements, rt->n_elements);
            const int64_t n = (int64_t)st->n_elements, ne0 = (int64_t)st->ne[0];
            const uint64_t rb = ggml_row_bytes(rt->type, (uint64_t)ne0);
            float *ours = malloc((size_t)n * sizeof(float)), *theirs = malloc((size_t)n * sizeof(float));
            uint8_t *q = malloc(rb);
            assert_non_null(ours);
            assert_non_null(theirs);
            assert_non_null(q);
            for (int64_t r = 0; r < n / ne0; r++) {
                assert_int_equal(greta_quantize_row(rt->type, (const float *)st->data + r * ne0, q, ne0), 0);
                assert_int_equal(greta_dequant_row(rt->type, q, ours + r * ne0, ne0), 0);
                assert_int_equal(greta_dequant_row(rt->type, (const uint8_t *)rt->data + (uint64_t)r * rb,
                                                   theirs + r * ne0, ne0), 0);
            }
            const double eo = rms_err(ours, st->data, n), et = rms_err(theirs, st->data, n);
            const double ratio = eo / et;
            printf("  %-26s %-5s %12.6g %12.6g %7.4f\n", rt->name, ggml_type_name(rt->type), eo, et, ratio);
            if (ratio > worst[rt->type])
                worst[rt->type] = ratio;
            per_type[rt->type]++;
            if (!(ratio <= 1.05))
                fail_msg("%s as %s: RMS error %.6g is %.4fx llama.cpp's %.6g (limit 1.05x)", rt->name,
                         ggml_type_name(rt->type), eo, ratio, et);
            free(ours);
            free(theirs);
            free(q);
        }
        gguf_close(&ref);
    }
    static const uint32_t need[] = {GGML_TYPE_Q8_0, GGML_TYPE_Q4_0, GGML_TYPE_Q4_K, GGML_TYPE_Q5_K,
                                    GGML_TYPE_Q6_K};
    for (size_t k = 0; k < sizeof need / sizeof need[0]; k++) {
        printf("  %s: %d tensors, worst ratio %.4f\n", ggml_type_name(need[k]), per_type[need[k]],
               worst[need[k]]);
        assert_true(per_type[need[k]] >= 10);
    }
    gguf_close(&src);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_known_q8_0),
        cmocka_unit_test(test_known_exact_grid),
        cmocka_unit_test(test_zero_and_constant_rows),
        cmocka_unit_test(test_error_bounds_random),
        cmocka_unit_test(test_deterministic),
        cmocka_unit_test(test_bad_input),
        cmocka_unit_test(test_quality_vs_llama_cpp),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
