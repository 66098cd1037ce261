/* test_gemm_mma.c - the matrix-core GEMM (kernels/gpu/gemm_mma.cu) against a
 * plain CPU reference: the weights decoded by greta_dequant_row, the
 * products summed in double.
 *
 * Tolerance (prefill_ops.h): both operands are rounded to fp16 (relative
 * error 2^-11 each) and summed in fp32 on the tensor cores, so
 *     |gpu - ref| <= 3e-3 * sum_i |w_i x_i| + 1e-6
 * for every output (the 1e-6 covers fp16 subnormal rounding of tiny values).
 * The largest observed error relative to sum_i |w_i x_i| is printed.
 *
 * Covered: every supported weight type; row lengths of one block, a few
 * blocks and 11008 (float types: 7 and 172, not multiples of the 32-wide k
 * step); token counts and weight-row counts that are not multiples of any
 * tile; every tile (k steps of 32 and 64) and AUTO; fp32 and fp16
 * activations; row strides larger than the row (and odd ones, which disable
 * vector loads); accumulate; bad arguments; the fp32 -> fp16 converter
 * bit-exact against greta_f32_to_fp16. greta_gpu_gemm_f16 (fp16 weights in
 * memory) has its own, tighter bound (test_gemm_f16 below) and is checked
 * after greta_gpu_dequant_f16 as the prefill uses it.
 * Without a GPU every test is skipped with a message.
 */
#include <math.h>
#include <string.h>

#include "gpu_test_util.h"
#include "kernels/cpu/quantize.h"
#include "kernels/gpu/prefill_ops.h"
#include "kernels/quant.h"

static const uint32_t all_types[] = {GGML_TYPE_Q4_K, GGML_TYPE_Q6_K, GGML_TYPE_Q8_0, GGML_TYPE_Q4_0,
                                     GGML_TYPE_Q5_K, GGML_TYPE_F16,  GGML_TYPE_BF16, GGML_TYPE_F32};
#define N_TYPES (sizeof all_types / sizeof all_types[0])

static int row_lengths(uint32_t type, int64_t *k)
{
    const uint32_t be = ggml_type_block_elems(type);
    if (be == 1) {
        k[0] = 7, k[1] = 172, k[2] = 4096;
        return 3;
    }
    if (be == 32) {
        k[0] = 32, k[1] = 96, k[2] = 4128;
        return 3;
    }
    k[0] = 256, k[1] = 768, k[2] = 11008;
    return 3;
}

typedef struct mm_case {
    int64_t n;
    int32_t n_tok;
    int64_t ld_x_extra, ld_y_extra;
    greta_gpu_act act;
    int accumulate;
    unsigned tiles; /* bit t: run greta_gpu_mma_tile t */
} mm_case;

#define ALL_TILES ((1u << GRETA_GPU_MMA_TILE_COUNT) - 2u) /* every explicit tile */
#define TILE(t) (1u << (t))

/* Runs one case with each tile of c->tiles against one reference; returns
 * the largest |gpu - ref| / sum|w x|. */
static double run_case(uint32_t type, int64_t k, const void *wq, const float *wd, const mm_case *c, uint64_t seed)
{
    greta_error err = {0};
    const int64_t n = c->n, ld_x = k + c->ld_x_extra, ld_y = n + c->ld_y_extra;
    const int32_t T = c->n_tok;
    /* activations: fp32, or fp16 bits (the reference then uses the rounded values) */
    float *x = xmalloc(sizeof(float) * (size_t)(T * ld_x));
    uint16_t *xh = xmalloc(sizeof(uint16_t) * (size_t)(T * ld_x));
    for (int64_t i = 0; i < T * ld_x; i++) {
        x[i] = trng_f(&seed);
        xh[i] = greta_f32_to_fp16(x[i]);
        if (c->act == GRETA_GPU_ACT_F16)
            x[i] = greta_fp16_to_f32(xh[i]);
    }
    float *y0 = xmalloc(sizeof(float) * (size_t)(T * ld_y)), *y = xmalloc(sizeof(float) * (size_t)(T * ld_y));
    for (int64_t i = 0; i < T * ld_y; i++)
        y0[i] = c->accumulate ? 4.0f * trng_f(&seed) : NAN; /* NaN: every output must be written */
    /* reference and magnitude sum|w x| per output */
    double *ref = xmalloc(sizeof(double) * (size_t)(T * n)), *mag = xmalloc(sizeof(double) * (size_t)(T * n));
    for (int32_t t = 0; t < T; t++)
        for (int64_t r = 0; r < n; r++) {
            double a = 0.0, m = 0.0;
            const float *wr = wd + r * k, *xr = x + t * ld_x;
            for (int64_t i = 0; i < k; i++) {
                a += (double)wr[i] * (double)xr[i];
                m += fabs((double)wr[i] * (double)xr[i]);
            }
            if (c->accumulate) {
                a += (double)y0[t * ld_y + r];
                m += fabs((double)y0[t * ld_y + r]) * 1e-4; /* the fp32 add */
            }
            ref[t * n + r] = a, mag[t * n + r] = m;
        }
    const size_t wbytes = ggml_row_bytes(type, (uint64_t)k) * (size_t)n;
    void *d_w = dev_upload(wq, wbytes);
    void *d_x = c->act == GRETA_GPU_ACT_F16 ? dev_upload(xh, sizeof(uint16_t) * (size_t)(T * ld_x))
                                            : dev_upload(x, sizeof(float) * (size_t)(T * ld_x));
    double worst = 0.0;
    for (int tile = 0; tile < GRETA_GPU_MMA_TILE_COUNT; tile++) {
        if (!(c->tiles & TILE(tile)))
            continue;
        float *d_y = dev_upload(y0, sizeof(float) * (size_t)(T * ld_y));
        EXPECT_OK(greta_gpu_gemm_mma_ex(NULL, type, d_w, k, n, d_x, c->act, ld_x, T, d_y, ld_y, c->accumulate,
                                        (greta_gpu_mma_tile)tile, &err));
        dev_download(y, d_y, sizeof(float) * (size_t)(T * ld_y));
        greta_gpu_free(d_y);
        for (int32_t t = 0; t < T; t++) {
            for (int64_t r = 0; r < n; r++) {
                const double got = y[t * ld_y + r], e = fabs(got - ref[t * n + r]), m = mag[t * n + r];
                if (!(e <= 3e-3 * m + 1e-6))
                    fail_msg("gemm_mma %s k %lld n %lld tokens %d tile %d act %s acc %d: y[%d][%lld] = %.9g, "
                             "ref %.9g (|err| %.3g > 3e-3 * %.6g)",
                             ggml_type_name(type), (long long)k, (long long)n, T, tile,
                             c->act == GRETA_GPU_ACT_F16 ? "f16" : "f32", c->accumulate, t, (long long)r, got,
                             ref[t * n + r], e, m);
                if (m > 0 && e / m > worst)
                    worst = e / m;
            }
            /* the padding between rows is untouched */
            for (int64_t r = n; r < ld_y; r++)
                if (c->accumulate ? y[t * ld_y + r] != y0[t * ld_y + r] : !isnan(y[t * ld_y + r]))
                    fail_msg("gemm_mma tile %d wrote y[%d][%lld], beyond n = %lld", tile, t, (long long)r,
                             (long long)n);
        }
    }
    greta_gpu_free(d_w), greta_gpu_free(d_x);
    free(x), free(xh), free(y0), free(y), free(ref), free(mag);
    return worst;
}

static void test_gemm_mma_all_types(void **state)
{
    GPU_OR_SKIP();
    for (size_t ti = 0; ti < N_TYPES; ti++) {
        const uint32_t type = all_types[ti];
        int64_t ks[3];
        const int nk = row_lengths(type, ks);
        double worst = 0.0;
        for (int ki = 0; ki < nk; ki++) {
            const int64_t k = ks[ki];
            const int64_t n_max = 200;
            void *wq;
            float *wd;
            make_weights(type, k, n_max, 1000 + ti * 10 + (uint64_t)ki, &wq, &wd);
            const mm_case cases[] = {
                /* n, tokens, ld_x extra, ld_y extra, act, accumulate, tiles */
                {136, 130, 0, 0, GRETA_GPU_ACT_F32, 0, ALL_TILES},
                {200, 17, 4, 5, GRETA_GPU_ACT_F16, 1, TILE(GRETA_GPU_MMA_AUTO) | TILE(GRETA_GPU_MMA_128x128_K64)},
                {72, 33, 1, 3, GRETA_GPU_ACT_F32, 1, TILE(GRETA_GPU_MMA_64x64) | TILE(GRETA_GPU_MMA_64x128_K64)},
                {1, 65, 3, 0, GRETA_GPU_ACT_F16, 0, TILE(GRETA_GPU_MMA_128x128) | TILE(GRETA_GPU_MMA_64x128_K64)},
            }; /* case 3: odd ld_x (scalar loads); case 4: one weight row */
            for (size_t ci = 0; ci < sizeof cases / sizeof cases[0]; ci++) {
                const double w = run_case(type, k, wq, wd, &cases[ci], 77 + ci);
                if (w > worst)
                    worst = w;
            }
            free(wq), free(wd);
        }
        print_message("gemm_mma %-4s: worst |err| / sum|w x| = %.2e (bound 3e-3)\n", ggml_type_name(type), worst);
    }
}

/* The 7B projection width at a realistic prompt length, once per model type. */
static void test_gemm_mma_7b_rows(void **state)
{
    GPU_OR_SKIP();
    const uint32_t types[] = {GGML_TYPE_Q4_K, GGML_TYPE_Q6_K};
    for (int ti = 0; ti < 2; ti++) {
        void *wq;
        float *wd;
        make_weights(types[ti], 4096, 96, 500 + (uint64_t)ti, &wq, &wd);
        const mm_case c = {96, 200, 0, 0, GRETA_GPU_ACT_F32, 0, TILE(GRETA_GPU_MMA_AUTO) | ALL_TILES};
        const double w = run_case(types[ti], 4096, wq, wd, &c, 9);
        print_message("gemm_mma %-4s k 4096, 200 tokens: worst |err| / sum|w x| = %.2e\n",
                      ggml_type_name(types[ti]), w);
        free(wq), free(wd);
    }
}

static void test_f32_to_f16(void **state)
{
    GPU_OR_SKIP();
    greta_error err = {0};
    const int32_t rows = 3;
    const int64_t n = 1500, ld_x = 1503, ld_o = 1510;
    float *x = xmalloc(sizeof(float) * (size_t)(rows * ld_x));
    uint64_t seed = 5;
    for (int64_t i = 0; i < rows * ld_x; i++)
        x[i] = ldexpf(trng_f(&seed), (int)(trng_next(&seed) % 50) - 30); /* subnormal to overflowing */
    x[0] = INFINITY, x[1] = -INFINITY, x[2] = 65519.0f, x[3] = 65520.0f, x[4] = -0.0f, x[5] = 5.96e-8f;
    uint16_t *o = xmalloc(sizeof(uint16_t) * (size_t)(rows * ld_o));
    float *d_x = dev_upload(x, sizeof(float) * (size_t)(rows * ld_x));
    uint16_t *d_o = dev_alloc(sizeof(uint16_t) * (size_t)(rows * ld_o));
    EXPECT_OK(greta_gpu_f32_to_f16(NULL, d_x, ld_x, rows, n, d_o, ld_o, &err));
    dev_download(o, d_o, sizeof(uint16_t) * (size_t)(rows * ld_o));
    for (int32_t r = 0; r < rows; r++)
        for (int64_t i = 0; i < ld_o; i++) {
            const uint16_t want = i < n ? greta_f32_to_fp16(x[r * ld_x + i]) : 0;
            if (o[r * ld_o + i] != want)
                fail_msg("f32_to_f16 [%d][%lld] of %.9g = 0x%04x, want 0x%04x", r, (long long)i, x[r * ld_x + i],
                         o[r * ld_o + i], want);
        }
    assert_int_equal(greta_gpu_f32_to_f16(NULL, d_x, 10, 1, 11, d_o, 11, &err), GRETA_ERR_INVALID);
    greta_gpu_free(d_x), greta_gpu_free(d_o);
    free(x), free(o);
}

static void test_pick(void **state)
{
    GPU_OR_SKIP();
    /* a small batch never gets the 128-token tile (32 blocks for 4096 rows
     * would leave most multiprocessors idle) */
    assert_int_not_equal(greta_gpu_gemm_mma_pick(4096, 16), GRETA_GPU_MMA_128x128);
    const greta_gpu_mma_tile t = greta_gpu_gemm_mma_pick(4096, 512);
    assert_true(t > GRETA_GPU_MMA_AUTO && t < GRETA_GPU_MMA_TILE_COUNT);
    print_message("gemm_mma AUTO: 4096 rows x 16 tokens -> tile %d, x 512 tokens -> tile %d, 11008 x 512 -> %d\n",
                  (int)greta_gpu_gemm_mma_pick(4096, 16), (int)t, (int)greta_gpu_gemm_mma_pick(11008, 512));
}

static void test_gemm_mma_bad_arguments(void **state)
{
    GPU_OR_SKIP();
    greta_error err = {0};
    float *d = dev_alloc(1 << 20);
    assert_int_equal(greta_gpu_gemm_mma(NULL, GGML_TYPE_Q8_K, d, 256, 4, d, 256, 20, d, 4, 0, &err),
                     GRETA_ERR_UNSUPPORTED);
    assert_non_null(strstr(err.msg, "Q8_K"));
    /* k not a whole number of blocks, ld_x < k, ld_y < n */
    assert_int_equal(greta_gpu_gemm_mma(NULL, GGML_TYPE_Q4_K, d, 100, 4, d, 100, 20, d, 4, 0, &err),
                     GRETA_ERR_INVALID);
    assert_non_null(strstr(err.msg, "gemm_mma"));
    assert_int_equal(greta_gpu_gemm_mma(NULL, GGML_TYPE_F16, d, 64, 4, d, 63, 20, d, 4, 0, &err), GRETA_ERR_INVALID);
    assert_int_equal(greta_gpu_gemm_mma_f16(NULL, GGML_TYPE_F16, d, 64, 4, (uint16_t *)d, 64, 20, d, 3, 0, &err),
                     GRETA_ERR_INVALID);
    assert_int_equal(greta_gpu_gemm_mma_ex(NULL, GGML_TYPE_F16, d, 64, 4, d, GRETA_GPU_ACT_F32, 64, 20, d, 4, 0,
                                           (greta_gpu_mma_tile)7, &err),
                     GRETA_ERR_INVALID);
    assert_non_null(strstr(err.msg, "tile"));
    assert_int_equal(greta_gpu_gemm_mma_ex(NULL, GGML_TYPE_F16, d, 64, 4, d, (greta_gpu_act)3, 64, 20, d, 4, 0,
                                           GRETA_GPU_MMA_AUTO, &err),
                     GRETA_ERR_INVALID);
    assert_int_equal(greta_gpu_gemm_mma(NULL, GGML_TYPE_F16, NULL, 64, 4, d, 64, 20, d, 4, 0, &err),
                     GRETA_ERR_INVALID);
    /* no tokens: nothing to do, nothing written */
    EXPECT_OK(greta_gpu_gemm_mma(NULL, GGML_TYPE_F16, d, 64, 4, d, 64, 0, d, 4, 0, &err));
    EXPECT_OK(greta_gpu_stream_sync(NULL, &err));
    greta_gpu_free(d);
}

/* greta_gpu_gemm_f16: fp16 weights and activations in memory, so the
 * reference (double, from the same fp16 values) differs only by the fp32
 * sums: |gpu - ref| <= 1e-4 * sum_i |w_i x_i| + 1e-6 (a misplaced operand
 * fragment or a stale stage gives errors of the order of the value).
 * Covered: every tile and AUTO (with the Hopper wgmma kernel on and off),
 * k of one 8-element piece, not a multiple of the 32- or 64-wide step, and
 * 4096; rows and tokens that are not multiples of any tile; padded strides;
 * accumulate; one weight row. */
static double run_f16_case(int64_t k, int64_t n, int32_t T, int64_t ld_w, int64_t ld_x, int64_t ld_y, int accumulate,
                           unsigned tiles, uint64_t seed)
{
    greta_error err = {0};
    uint16_t *w = xmalloc(sizeof(uint16_t) * (size_t)(n * ld_w)), *x = xmalloc(sizeof(uint16_t) * (size_t)(T * ld_x));
    for (int64_t i = 0; i < n * ld_w; i++)
        w[i] = greta_f32_to_fp16(i % ld_w < k ? 0.5f * trng_f(&seed) : NAN); /* NaN padding must not be read */
    for (int64_t i = 0; i < T * ld_x; i++)
        x[i] = greta_f32_to_fp16(i % ld_x < k ? trng_f(&seed) : NAN);
    float *y0 = xmalloc(sizeof(float) * (size_t)(T * ld_y)), *y = xmalloc(sizeof(float) * (size_t)(T * ld_y));
    for (int64_t i = 0; i < T * ld_y; i++)
        y0[i] = accumulate ? 4.0f * trng_f(&seed) : NAN;
    uint16_t *d_w = dev_upload(w, sizeof(uint16_t) * (size_t)(n * ld_w));
    uint16_t *d_x = dev_upload(x, sizeof(uint16_t) * (size_t)(T * ld_x));
    double worst = 0.0;
    for (int tile = 0; tile < GRETA_GPU_MMA_TILE_COUNT; tile++) {
        if (!(tiles & TILE(tile)))
            continue;
        float *d_y = dev_upload(y0, sizeof(float) * (size_t)(T * ld_y));
        EXPECT_OK(greta_gpu_gemm_f16(NULL, d_w, ld_w, k, n, d_x, ld_x, T, d_y, ld_y, accumulate,
                                     (greta_gpu_mma_tile)tile, &err));
        dev_download(y, d_y, sizeof(float) * (size_t)(T * ld_y));
        greta_gpu_free(d_y);
        for (int32_t t = 0; t < T; t++)
            for (int64_t r = 0; r < ld_y; r++) {
                const double got = y[t * ld_y + r];
                if (r >= n) {
                    if (accumulate ? got != y0[t * ld_y + r] : !isnan(got))
                        fail_msg("gemm_f16 tile %d wrote y[%d][%lld], beyond n = %lld", tile, t, (long long)r,
                                 (long long)n);
                    continue;
                }
                double a = accumulate ? (double)y0[t * ld_y + r] : 0.0, m = 0.0;
                for (int64_t i = 0; i < k; i++) {
                    const double p = (double)greta_fp16_to_f32(w[r * ld_w + i]) * greta_fp16_to_f32(x[t * ld_x + i]);
                    a += p, m += fabs(p);
                }
                const double e = fabs(got - a);
                if (!(e <= 1e-4 * m + 1e-6))
                    fail_msg("gemm_f16 k %lld n %lld tokens %d tile %d acc %d: y[%d][%lld] = %.9g, ref %.9g "
                             "(|err| %.3g > 1e-4 * %.6g)",
                             (long long)k, (long long)n, T, tile, accumulate, t, (long long)r, got, a, e, m);
                if (m > 0 && e / m > worst)
                    worst = e / m;
            }
    }
    greta_gpu_free(d_w), greta_gpu_free(d_x);
    free(w), free(x), free(y0), free(y);
    return worst;
}

/* Each case with the Hopper kernel on (tile AUTO from GRETA_GPU_WGMMA_MIN_TOK
 * tokens, where available) and off (AUTO picks an mma.sync tile). */
static void test_gemm_f16(void **state)
{
    GPU_OR_SKIP();
    print_message("gemm_f16: wgmma kernel %s\n", greta_gpu_wgmma_available() ? "available" : "not available");
    for (int on = 1; on >= 0; on--) {
        assert_int_equal(greta_gpu_set_wgmma(on), on && greta_gpu_wgmma_available());
        double worst = 0.0, v;
        const unsigned all = ALL_TILES | TILE(GRETA_GPU_MMA_AUTO);
        /* k, n, tokens, ld_w, ld_x, ld_y, accumulate, tiles */
        v = run_f16_case(8, 136, 130, 8, 16, 136, 0, all, 1);
        worst = v > worst ? v : worst;
        v = run_f16_case(40, 200, 17, 48, 40, 205, 1, all, 2);
        worst = v > worst ? v : worst;
        v = run_f16_case(4096, 72, 200, 4104, 4096, 72, 0, all, 3);
        worst = v > worst ? v : worst;
        v = run_f16_case(264, 1, 65, 264, 272, 3, 1, TILE(GRETA_GPU_MMA_AUTO) | TILE(GRETA_GPU_MMA_64x64), 4);
        worst = v > worst ? v : worst;
        v = run_f16_case(136, 260, 300, 136, 144, 263, 1, TILE(GRETA_GPU_MMA_AUTO), 5);
        worst = v > worst ? v : worst;
        print_message("gemm_f16 (wgmma %s): worst |err| / sum|w x| = %.2e (bound 1e-4)\n", on ? "on" : "off", worst);
    }
    greta_gpu_set_wgmma(1);
}

/* The decoded-weights path as the prefill uses it: greta_gpu_dequant_f16,
 * then greta_gpu_gemm_f16, against the reference on the exactly decoded
 * weights, with gemm_mma's bound (the weights are rounded to fp16 too). */
static void test_dequant_then_gemm_f16(void **state)
{
    GPU_OR_SKIP();
    greta_error err = {0};
    const uint32_t types[] = {GGML_TYPE_Q4_K, GGML_TYPE_Q6_K};
    for (int ti = 0; ti < 2; ti++) {
        const int64_t k = 4096, n = 96;
        const int32_t T = 130;
        void *wq;
        float *wd;
        make_weights(types[ti], k, n, 700 + (uint64_t)ti, &wq, &wd);
        uint64_t seed = 31;
        uint16_t *xh = xmalloc(sizeof(uint16_t) * (size_t)(T * k));
        for (int64_t i = 0; i < T * k; i++)
            xh[i] = greta_f32_to_fp16(trng_f(&seed));
        void *d_wq = dev_upload(wq, ggml_row_bytes(types[ti], (uint64_t)k) * (size_t)n);
        uint16_t *d_wh = dev_alloc(sizeof(uint16_t) * (size_t)(n * k)), *d_x = dev_upload(xh, sizeof(uint16_t) * (size_t)(T * k));
        float *d_y = dev_alloc(sizeof(float) * (size_t)(T * n)), *y = xmalloc(sizeof(float) * (size_t)(T * n));
        EXPECT_OK(greta_gpu_dequant_f16(NULL, types[ti], d_wq, k, n, d_wh, k, &err));
        EXPECT_OK(greta_gpu_gemm_f16(NULL, d_wh, k, k, n, d_x, k, T, d_y, n, 0, GRETA_GPU_MMA_AUTO, &err));
        dev_download(y, d_y, sizeof(float) * (size_t)(T * n));
        double worst = 0.0;
        for (int32_t t = 0; t < T; t++)
            for (int64_t r = 0; r < n; r++) {
                double a = 0.0, m = 0.0;
                for (int64_t i = 0; i < k; i++) {
                    const double p = (double)wd[r * k + i] * greta_fp16_to_f32(xh[t * k + i]);
                    a += p, m += fabs(p);
                }
                const double e = fabs(y[t * n + r] - a);
                if (!(e <= 3e-3 * m + 1e-6))
                    fail_msg("dequant_f16 + gemm_f16 %s: y[%d][%lld] = %.9g, ref %.9g", ggml_type_name(types[ti]), t,
                             (long long)r, y[t * n + r], a);
                if (m > 0 && e / m > worst)
                    worst = e / m;
            }
        print_message("dequant_f16 + gemm_f16 %-4s k 4096, 130 tokens: worst |err| / sum|w x| = %.2e (bound 3e-3)\n",
                      ggml_type_name(types[ti]), worst);
        greta_gpu_free(d_wq), greta_gpu_free(d_wh), greta_gpu_free(d_x), greta_gpu_free(d_y);
        free(wq), free(wd), free(xh), free(y);
    }
}

static void test_gemm_f16_bad_arguments(void **state)
{
    GPU_OR_SKIP();
    greta_error err = {0};
    uint16_t *d = dev_alloc(1 << 20);
    float *y = dev_alloc(1 << 20);
    /* k not a multiple of 8; ld_w, ld_x not multiples of 8; misaligned w, x; ld_y < n; tile out of range */
    assert_int_equal(greta_gpu_gemm_f16(NULL, d, 12, 12, 4, d, 16, 20, y, 4, 0, GRETA_GPU_MMA_AUTO, &err),
                     GRETA_ERR_INVALID);
    assert_non_null(strstr(err.msg, "gemm_f16"));
    assert_int_equal(greta_gpu_gemm_f16(NULL, d, 20, 16, 4, d, 16, 20, y, 4, 0, GRETA_GPU_MMA_AUTO, &err),
                     GRETA_ERR_INVALID);
    assert_int_equal(greta_gpu_gemm_f16(NULL, d, 16, 16, 4, d, 18, 20, y, 4, 0, GRETA_GPU_MMA_AUTO, &err),
                     GRETA_ERR_INVALID);
    assert_int_equal(greta_gpu_gemm_f16(NULL, d + 4, 16, 16, 4, d, 16, 20, y, 4, 0, GRETA_GPU_MMA_AUTO, &err),
                     GRETA_ERR_INVALID);
    assert_int_equal(greta_gpu_gemm_f16(NULL, d, 16, 16, 4, d + 1, 16, 20, y, 4, 0, GRETA_GPU_MMA_AUTO, &err),
                     GRETA_ERR_INVALID);
    assert_int_equal(greta_gpu_gemm_f16(NULL, d, 16, 16, 4, d, 16, 20, y, 3, 0, GRETA_GPU_MMA_AUTO, &err),
                     GRETA_ERR_INVALID);
    assert_int_equal(greta_gpu_gemm_f16(NULL, d, 16, 16, 4, d, 16, 20, y, 4, 0, (greta_gpu_mma_tile)9, &err),
                     GRETA_ERR_INVALID);
    assert_non_null(strstr(err.msg, "tile"));
    assert_int_equal(greta_gpu_gemm_f16(NULL, NULL, 16, 16, 4, d, 16, 20, y, 4, 0, GRETA_GPU_MMA_AUTO, &err),
                     GRETA_ERR_INVALID);
    EXPECT_OK(greta_gpu_gemm_f16(NULL, d, 16, 16, 4, d, 16, 0, y, 4, 0, GRETA_GPU_MMA_AUTO, &err));
    EXPECT_OK(greta_gpu_stream_sync(NULL, &err));
    greta_gpu_free(d), greta_gpu_free(y);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_gemm_mma_all_types), cmocka_unit_test(test_gemm_mma_7b_rows),
        cmocka_unit_test(test_f32_to_f16),         cmocka_unit_test(test_pick),
        cmocka_unit_test(test_gemm_mma_bad_arguments), cmocka_unit_test(test_gemm_f16),
        cmocka_unit_test(test_dequant_then_gemm_f16),   cmocka_unit_test(test_gemm_f16_bad_arguments),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
