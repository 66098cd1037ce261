/* test_dequant.c - greta_dequant_row and the fp16/bf16 conversions are bit
 * exact: every file of testdata/quant/dequant-ref (ggml's reference
 * dequantizer) is reproduced byte for byte, and hand-computed blocks give
 * their known values (extreme codes, fp16 subnormal and negative scales,
 * Q5_K high bits, the Q6_K -32 code, F16/BF16 specials, rounding ties). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cJSON.h>

#include "common/gguf.h"
#include "kernels/quant.h"
#include "test_util.h"

static uint32_t bits(float f)
{
    return greta_f32_to_bits(f);
}

/* Asserts the exact bits of a float. */
#define assert_f32_bits(got, want) assert_int_equal(bits(got), bits(want))

/* ---- the reference files ------------------------------------------------------- */

static void test_dequant_reference_files(void **state)
{
    GRETA_TESTDATA_OR_SKIP(idx_path, "quant/dequant-ref/index.json");
    char dir[4096];
    snprintf(dir, sizeof dir, "%s", idx_path);
    *strrchr(dir, '/') = '\0';
    char *json = greta_read_file(idx_path, NULL);
    assert_non_null(json);
    cJSON *root = cJSON_Parse(json);
    assert_non_null(root);
    const cJSON *list = cJSON_GetObjectItemCaseSensitive(root, "tensors");
    assert_true(cJSON_IsArray(list));
    int n = 0;
    const cJSON *e;
    cJSON_ArrayForEach(e, list)
    {
        const char *model = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(e, "model"));
        const char *tname = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(e, "tensor"));
        const char *type = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(e, "type"));
        const char *file = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(e, "file"));
        const double elems = cJSON_GetNumberValue(cJSON_GetObjectItemCaseSensitive(e, "elements"));
        assert_non_null(model);
        assert_non_null(tname);
        assert_non_null(type);
        assert_non_null(file);
        char path[8192];
        snprintf(path, sizeof path, "%s/../%s", dir, model);
        gguf_file *f = NULL;
        greta_error err = {0};
        assert_int_equal(gguf_open(path, &f, &err), 0);
        const gguf_tensor *t = gguf_find_tensor(f, tname);
        assert_non_null(t);
        assert_string_equal(ggml_type_name(t->type), type);
        assert_int_equal(t->n_elements, (uint64_t)elems);
        float *got = malloc(t->n_elements * sizeof(float));
        assert_non_null(got);
        const uint64_t ne0 = t->ne[0], rows = t->n_elements / ne0;
        const uint64_t rb = ggml_row_bytes(t->type, ne0);
        for (uint64_t r = 0; r < rows; r++)
            assert_int_equal(greta_dequant_row(t->type, (const uint8_t *)t->data + r * rb,
                                               got + r * ne0, (int64_t)ne0), 0);
        snprintf(path, sizeof path, "%s/%s", dir, file);
        size_t size = 0;
        char *want = greta_read_file(path, &size);
        assert_non_null(want);
        assert_int_equal(size, t->n_elements * sizeof(float));
        if (memcmp(got, want, size) != 0) {
            for (uint64_t i = 0; i < t->n_elements; i++) {
                uint32_t w;
                memcpy(&w, want + 4 * i, 4);
                if (bits(got[i]) != w)
                    fail_msg("%s %s (%s): element %llu is %08x, reference %08x", model, tname, type,
                             (unsigned long long)i, bits(got[i]), w);
            }
        }
        printf("  %-18s %-22s %-5s %7llu elements: identical\n", model, tname, type,
               (unsigned long long)t->n_elements);
        free(want);
        free(got);
        gguf_close(&f);
        n++;
    }
    assert_int_equal(n, 15); /* every file listed */
    cJSON_Delete(root);
    free(json);
}

/* ---- hand-computed blocks --------------------------------------------------------- */

static void test_q4_0_known(void **state)
{
    block_q4_0 b[3];
    memset(b, 0x88, sizeof b); /* codes 8: zero */
    b[0].d = 0x3C00;           /* 1.0 */
    b[0].qs[0] = 0xF0;         /* element 0 code 0 -> -8, element 16 code 15 -> 7 */
    b[1].d = 0xC000;           /* -2.0 */
    b[1].qs[1] = 0x0F;         /* element 1 code 15 -> -14, element 17 code 0 -> 16 */
    b[2].d = 0x0001;           /* smallest fp16 subnormal 2^-24 */
    b[2].qs[2] = 0x0F;         /* 7 * 2^-24 and -8 * 2^-24 */
    float y[96];
    assert_int_equal(greta_dequant_row(GGML_TYPE_Q4_0, b, y, 96), 0);
    assert_f32_bits(y[0], -8.0f);
    assert_f32_bits(y[16], 7.0f);
    assert_f32_bits(y[1], 0.0f);
    assert_f32_bits(y[32 + 1], -14.0f);
    assert_f32_bits(y[32 + 17], 16.0f);
    assert_f32_bits(y[32 + 0], -0.0f); /* 0 * -2 is negative zero */
    assert_f32_bits(y[64 + 2], ldexpf(7.0f, -24));
    assert_f32_bits(y[64 + 18], ldexpf(-8.0f, -24));
}

static void test_q8_0_known(void **state)
{
    block_q8_0 b[2];
    memset(b, 0, sizeof b);
    b[0].d = 0x3800; /* 0.5 */
    b[0].qs[0] = -128;
    b[0].qs[1] = 127;
    b[0].qs[2] = 1;
    b[0].qs[3] = -1;
    b[1].d = 0x83FF; /* -(largest subnormal) = -1023 * 2^-24 */
    b[1].qs[0] = 127;
    b[1].qs[1] = -128;
    float y[64];
    assert_int_equal(greta_dequant_row(GGML_TYPE_Q8_0, b, y, 64), 0);
    assert_f32_bits(y[0], -64.0f);
    assert_f32_bits(y[1], 63.5f);
    assert_f32_bits(y[2], 0.5f);
    assert_f32_bits(y[3], -0.5f);
    assert_f32_bits(y[4], 0.0f);
    assert_f32_bits(y[32], ldexpf(-127.0f * 1023.0f, -24));
    assert_f32_bits(y[33], ldexpf(128.0f * 1023.0f, -24));
}

/* Scales sc = {63,1,2,3,63,5,6,7}, mins m = {0,63,1,2,3,63,33,17}, packed by
 * hand following FORMATS.md. */
static const uint8_t k_scales[12] = {0xFF, 0x01, 0x02, 0x03, 0x00, 0xFF, 0x81, 0x42, 0x3F, 0xF5, 0x16, 0x17};

static void test_k_scale_unpack(void **state)
{
    const uint8_t sc_want[8] = {63, 1, 2, 3, 63, 5, 6, 7}, m_want[8] = {0, 63, 1, 2, 3, 63, 33, 17};
    for (int j = 0; j < 8; j++) {
        uint8_t sc, m;
        greta_k_scale_min(j, k_scales, &sc, &m);
        assert_int_equal(sc, sc_want[j]);
        assert_int_equal(m, m_want[j]);
    }
}

static void test_q4_K_known(void **state)
{
    block_q4_K b;
    b.d = 0x3C00;    /* 1.0 */
    b.dmin = 0x3800; /* 0.5 */
    memcpy(b.scales, k_scales, 12);
    for (int c = 0; c < 4; c++)
        memset(b.qs + 32 * c, c % 2 ? 0xF0 : 0x0F, 32);
    b.qs[1] = 0x73; /* element 1 code 3, element 33 code 7 */
    float y[256];
    assert_int_equal(greta_dequant_row(GGML_TYPE_Q4_K, &b, y, 256), 0);
    /* sub-block j: 1.0 * sc[j] * q - 0.5 * m[j] */
    assert_f32_bits(y[0], 945.0f);    /* 63 * 15 - 0 */
    assert_f32_bits(y[32], -31.5f);   /* 1 * 0 - 0.5 * 63 */
    assert_f32_bits(y[64], -0.5f);    /* 2 * 0 - 0.5 * 1 */
    assert_f32_bits(y[96], 44.0f);    /* 3 * 15 - 0.5 * 2 */
    assert_f32_bits(y[128], 943.5f);  /* 63 * 15 - 0.5 * 3 */
    assert_f32_bits(y[160], -31.5f);  /* 5 * 0 - 0.5 * 63 */
    assert_f32_bits(y[192], -16.5f);  /* 6 * 0 - 0.5 * 33 */
    assert_f32_bits(y[224], 96.5f);   /* 7 * 15 - 0.5 * 17 */
    assert_f32_bits(y[1], 189.0f);    /* 63 * 3 */
    assert_f32_bits(y[33], -24.5f);   /* 1 * 7 - 31.5 */
    assert_f32_bits(y[255], 96.5f);
}

static void test_q5_K_known(void **state)
{
    block_q5_K b;
    b.d = 0x3C00;
    b.dmin = 0x3800;
    memcpy(b.scales, k_scales, 12);
    memset(b.qs, 0xFF, sizeof b.qs);
    memset(b.qh, 0xFF, sizeof b.qh); /* every code 31 */
    b.qs[1] = 0x00;
    b.qh[1] = 0x01; /* element 1: only chunk 0's low high-bit: code 16 */
    b.qs[96 + 2] = 0x00;
    b.qh[2] = 0x80; /* element 226 (chunk 3 high): code 16; element 194: code 0 */
    float y[256];
    assert_int_equal(greta_dequant_row(GGML_TYPE_Q5_K, &b, y, 256), 0);
    assert_f32_bits(y[0], 1953.0f);   /* 63 * 31 */
    assert_f32_bits(y[32], -0.5f);    /* 1 * 31 - 31.5 */
    assert_f32_bits(y[64], 61.5f);    /* 2 * 31 - 0.5 */
    assert_f32_bits(y[96], 92.0f);    /* 3 * 31 - 1 */
    assert_f32_bits(y[128], 1951.5f); /* 63 * 31 - 1.5 */
    assert_f32_bits(y[160], 123.5f);  /* 5 * 31 - 31.5 */
    assert_f32_bits(y[192], 169.5f);  /* 6 * 31 - 16.5 */
    assert_f32_bits(y[224], 208.5f);  /* 7 * 31 - 8.5 */
    assert_f32_bits(y[1], 1008.0f);   /* 63 * 16 */
    assert_f32_bits(y[33], -31.5f);   /* 1 * 0 - 31.5 */
    assert_f32_bits(y[65], 29.5f);    /* qs[33] low 15, qh[1] bit 2 clear: 2 * 15 - 0.5 */
    assert_f32_bits(y[2], 945.0f);    /* qh[2] bit 0 clear: code 15 */
    assert_f32_bits(y[34], -16.5f);   /* 1 * 15 - 31.5 */
    assert_f32_bits(y[226], 103.5f);  /* 7 * 16 - 8.5 */
    assert_f32_bits(y[194], -16.5f);  /* 6 * 0 - 16.5 */
}

static void test_q6_K_known(void **state)
{
    static const int8_t sc[16] = {1, -1, 2, -128, 127, 3, -5, 7, 9, 10, 11, 12, 13, 14, 15, 16};
    block_q6_K b[2];
    memset(b, 0, sizeof b); /* codes 0: value -32 */
    b[0].d = 0x3C00;        /* 1.0 */
    memcpy(b[0].scales, sc, 16);
    b[0].ql[0] = 0xFF;
    b[0].qh[0] = 0xFF; /* element 0 and 64: code 63 -> 31; elements 32, 96: (3 << 4) - 32 = 16 */
    b[1].d = 0x8001;   /* -2^-24 */
    memcpy(b[1].scales, sc, 16);
    float y[512];
    assert_int_equal(greta_dequant_row(GGML_TYPE_Q6_K, b, y, 512), 0);
    assert_f32_bits(y[0], 31.0f);      /* 1 * 1 * 31 */
    assert_f32_bits(y[1], -32.0f);     /* 1 * 1 * -32 */
    assert_f32_bits(y[16], 32.0f);     /* sc[1] = -1 */
    assert_f32_bits(y[32], 32.0f);     /* sc[2] = 2, q 16 */
    assert_f32_bits(y[48], 4096.0f);   /* sc[3] = -128, q -32 */
    assert_f32_bits(y[64], 3937.0f);   /* sc[4] = 127, q 31 */
    assert_f32_bits(y[65], -4064.0f);  /* 127 * -32 */
    assert_f32_bits(y[96], -80.0f);    /* sc[6] = -5, q 16 */
    assert_f32_bits(y[128], -288.0f);  /* second half: sc[8] = 9 */
    assert_f32_bits(y[255], -512.0f);  /* sc[15] = 16 */
    /* negative subnormal d: (-2^-24 * -128) * -32 = -2^-12 */
    assert_f32_bits(y[256 + 48], -ldexpf(1.0f, -12));
    assert_f32_bits(y[256 + 0], ldexpf(32.0f, -24));
}

/* ---- F16 / BF16 ------------------------------------------------------------------- */

static void test_f16_to_f32(void **state)
{
    assert_int_equal(bits(greta_fp16_to_f32(0x0001)), bits(ldexpf(1.0f, -24)));
    assert_int_equal(bits(greta_fp16_to_f32(0x8001)), bits(-ldexpf(1.0f, -24)));
    assert_int_equal(bits(greta_fp16_to_f32(0x03FF)), bits(ldexpf(1023.0f, -24)));
    assert_int_equal(bits(greta_fp16_to_f32(0x0400)), bits(ldexpf(1.0f, -14)));
    assert_int_equal(bits(greta_fp16_to_f32(0x3C00)), bits(1.0f));
    assert_int_equal(bits(greta_fp16_to_f32(0x7BFF)), bits(65504.0f));
    assert_int_equal(bits(greta_fp16_to_f32(0x7C00)), 0x7F800000u);
    assert_int_equal(bits(greta_fp16_to_f32(0xFC00)), 0xFF800000u);
    assert_int_equal(bits(greta_fp16_to_f32(0x7E00)), 0x7FC00000u);
    assert_int_equal(bits(greta_fp16_to_f32(0x7C01)), 0x7F802000u); /* payload kept */
    assert_int_equal(bits(greta_fp16_to_f32(0x8000)), 0x80000000u);
    /* every half: against the textbook formula, and back again */
    for (uint32_t h = 0; h < 65536; h++) {
        const uint32_t s = h >> 15, e = (h >> 10) & 31, m = h & 1023;
        const float f = greta_fp16_to_f32((greta_fp16)h);
        if (e == 31) {
            assert_true(m ? isnan(f) : isinf(f));
            if (m)
                continue;
        } else {
            float want = e ? ldexpf((float)(1024 + m), (int)e - 25) : ldexpf((float)m, -24);
            if (s)
                want = -want;
            assert_int_equal(bits(f), bits(want));
        }
        assert_int_equal(greta_f32_to_fp16(f), h);
    }
    /* the row helper */
    const uint16_t row[4] = {0x3C00, 0xC000, 0x0001, 0x7C00};
    float y[4];
    assert_int_equal(greta_dequant_row(GGML_TYPE_F16, row, y, 4), 0);
    assert_f32_bits(y[1], -2.0f);
    assert_true(isinf(y[3]));
}

static void test_f32_to_f16_rounding(void **state)
{
    assert_int_equal(greta_f32_to_fp16(1.0f + ldexpf(1.0f, -11)), 0x3C00);        /* tie -> even */
    assert_int_equal(greta_f32_to_fp16(1.0f + ldexpf(3.0f, -11)), 0x3C02);        /* tie -> even (up) */
    assert_int_equal(greta_f32_to_fp16(nextafterf(1.0f + ldexpf(1.0f, -11), 2.0f)), 0x3C01);
    assert_int_equal(greta_f32_to_fp16(ldexpf(1.0f, -25)), 0x0000);               /* tie to 0 */
    assert_int_equal(greta_f32_to_fp16(nextafterf(ldexpf(1.0f, -25), 1.0f)), 0x0001);
    assert_int_equal(greta_f32_to_fp16(ldexpf(3.0f, -25)), 0x0002);               /* 1.5 ulp -> 2 */
    assert_int_equal(greta_f32_to_fp16(ldexpf(5.0f, -25)), 0x0002);               /* 2.5 ulp -> 2 */
    assert_int_equal(greta_f32_to_fp16(-ldexpf(1.0f, -25)), 0x8000);              /* -0 */
    assert_int_equal(greta_f32_to_fp16(ldexpf(2047.0f, -25)), 0x0400);            /* 1023.5 ulp -> normal */
    assert_int_equal(greta_f32_to_fp16(ldexpf(2045.0f, -25)), 0x03FE);            /* 1022.5 -> even */
    assert_int_equal(greta_f32_to_fp16(65519.0f), 0x7BFF);
    assert_int_equal(greta_f32_to_fp16(65520.0f), 0x7C00); /* tie with 65536 -> even = inf */
    assert_int_equal(greta_f32_to_fp16(-1e9f), 0xFC00);
    assert_int_equal(greta_f32_to_fp16(INFINITY), 0x7C00);
    const greta_fp16 n = greta_f32_to_fp16(NAN);
    assert_int_equal(n & 0x7C00, 0x7C00);
    assert_true((n & 0x3FF) != 0);
    assert_int_equal(greta_f32_to_fp16(0.1f), 0x2E66);
    assert_int_equal(greta_f32_to_fp16(-0.333333343f), 0xB555);
}

static void test_bf16(void **state)
{
    assert_f32_bits(greta_bf16_to_f32(0x3F80), 1.0f);
    assert_f32_bits(greta_bf16_to_f32(0x4049), 3.140625f);
    assert_int_equal(bits(greta_bf16_to_f32(0xFF80)), 0xFF800000u);
    assert_true(isnan(greta_bf16_to_f32(0x7FC0)));
    assert_int_equal(bits(greta_bf16_to_f32(0x0001)), 0x00010000u); /* subnormal */
    assert_int_equal(greta_f32_to_bf16(greta_bits_to_f32(0x3F808000u)), 0x3F80); /* tie -> even */
    assert_int_equal(greta_f32_to_bf16(greta_bits_to_f32(0x3F818000u)), 0x3F82); /* tie -> even */
    assert_int_equal(greta_f32_to_bf16(greta_bits_to_f32(0x3F808001u)), 0x3F81);
    assert_int_equal(greta_f32_to_bf16(greta_bits_to_f32(0x7F7FFFFFu)), 0x7F80); /* max -> inf */
    const greta_bf16 n = greta_f32_to_bf16(greta_bits_to_f32(0x7F800001u)); /* NaN, low payload */
    assert_true(isnan(greta_bf16_to_f32(n)));
    const uint16_t row[3] = {0x3F80, 0xC000, 0x0000};
    float y[3];
    assert_int_equal(greta_dequant_row(GGML_TYPE_BF16, row, y, 3), 0);
    assert_f32_bits(y[1], -2.0f);
}

static void test_bad_type(void **state)
{
    float y[32];
    uint8_t x[64] = {0};
    assert_int_equal(greta_dequant_row(GGML_TYPE_Q4_1, x, y, 32), -1);
    assert_int_equal(greta_dequant_row(99, x, y, 32), -1);
    assert_int_equal(ggml_row_bytes(GGML_TYPE_Q4_K, 255), 0);
    assert_int_equal(ggml_row_bytes(GGML_TYPE_Q4_K, 512), 288);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_dequant_reference_files),
        cmocka_unit_test(test_q4_0_known),
        cmocka_unit_test(test_q8_0_known),
        cmocka_unit_test(test_k_scale_unpack),
        cmocka_unit_test(test_q4_K_known),
        cmocka_unit_test(test_q5_K_known),
        cmocka_unit_test(test_q6_K_known),
        cmocka_unit_test(test_f16_to_f32),
        cmocka_unit_test(test_f32_to_f16_rounding),
        cmocka_unit_test(test_bf16),
        cmocka_unit_test(test_bad_type),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
