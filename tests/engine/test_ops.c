/* test_ops.c - the CPU reference ops, the thread pool and the quantized
 * matmul: exact definitions, ISA and thread-count independence (bit for bit)
 * and agreement with a float64 computation. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/cpu/matmul.h"
#include "kernels/cpu/ops.h"
#include "kernels/cpu/threads.h"
#include "kernels/quant.h"
#include "test_util.h"

static uint64_t rng = 0x1234567u;

static uint32_t rnd(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (uint32_t)(rng >> 11);
}

static float rndf(void) /* uniform in [-1, 1) */
{
    return (float)((double)(rnd() & 0xffffff) / (double)0x800000 - 1.0);
}

static void fill(float *x, int64_t n)
{
    for (int64_t i = 0; i < n; i++)
        x[i] = rndf();
}

/* ---- canonical dot --------------------------------------------------------------- */

/* The definition of ops.h, written out independently. */
static float dot_definition(const float *a, const float *b, int64_t n)
{
    float acc[32] = {0};
    for (int64_t i = 0; i < n; i++) {
        float p = a[i] * b[i];
        acc[i % 32] = acc[i % 32] + p;
    }
    float r[8];
    for (int k = 0; k < 8; k++) {
        float x = acc[k] + acc[k + 8];
        float y = acc[k + 16] + acc[k + 24];
        r[k] = x + y;
    }
    float s0 = r[0] + r[4], s1 = r[1] + r[5], s2 = r[2] + r[6], s3 = r[3] + r[7];
    float u0 = s0 + s2, u1 = s1 + s3;
    return u0 + u1;
}

static const int64_t lengths[] = {1, 2, 7, 8, 31, 32, 33, 63, 64, 100, 172, 256, 1000, 4099};

static void test_dot_definition(void **state)
{
    float a[4099], b[4099];
    for (size_t li = 0; li < sizeof lengths / sizeof lengths[0]; li++) {
        const int64_t n = lengths[li];
        fill(a, n);
        fill(b, n);
        const float got = greta_cpu_dot(a, b, n);
        const float want = dot_definition(a, b, n);
        assert_memory_equal(&got, &want, sizeof got);
        double exact = 0, mag = 0;
        for (int64_t i = 0; i < n; i++) {
            exact += (double)a[i] * b[i];
            mag += fabs((double)a[i] * b[i]);
        }
        assert_true(fabs(got - exact) <= 1e-6 * mag + 1e-30);
    }
    /* a known value: 1*1 + 2*2 + ... + 40*40 = 22140 exactly */
    float x[40];
    for (int i = 0; i < 40; i++)
        x[i] = (float)(i + 1);
    assert_true(greta_cpu_dot(x, x, 40) == 22140.0f);
}

static void test_dot_avx2_bitexact(void **state)
{
    if (!greta_cpu_avx2_available()) {
        skip();
        return;
    }
    float a[4099], b[4099];
    for (int rep = 0; rep < 3; rep++)
        for (size_t li = 0; li < sizeof lengths / sizeof lengths[0]; li++) {
            const int64_t n = lengths[li];
            fill(a, n);
            fill(b, n);
            const float r = greta_cpu_dot(a, b, n), v = greta_cpu_avx2_dot(a, b, n);
            assert_memory_equal(&r, &v, sizeof r);
        }
}

/* ---- random rows of every type ------------------------------------------------------ */

static const uint32_t all_types[] = {GGML_TYPE_F32, GGML_TYPE_F16, GGML_TYPE_BF16, GGML_TYPE_Q4_0,
                                     GGML_TYPE_Q8_0, GGML_TYPE_Q4_K, GGML_TYPE_Q5_K, GGML_TYPE_Q6_K};
#define N_TYPES (sizeof all_types / sizeof all_types[0])

static void put_fp16(uint8_t *p, float v)
{
    greta_fp16 h = greta_f32_to_fp16(v);
    memcpy(p, &h, 2);
}

/* Random bytes for `rows` rows of n elements, with finite scales. */
static uint8_t *random_matrix(uint32_t type, int64_t n, int64_t rows)
{
    const uint64_t rb = ggml_row_bytes(type, (uint64_t)n);
    assert_true(rb > 0);
    uint8_t *w = malloc(rb * (uint64_t)rows);
    assert_non_null(w);
    for (uint64_t i = 0; i < rb * (uint64_t)rows; i++)
        w[i] = (uint8_t)rnd();
    const uint64_t nel = (uint64_t)n * (uint64_t)rows;
    const uint32_t bb = ggml_type_block_bytes(type);
    const uint64_t nblocks = nel / ggml_type_block_elems(type);
    for (uint64_t i = 0; i < nblocks; i++) {
        uint8_t *blk = w + i * bb;
        switch (type) {
        case GGML_TYPE_F32: {
            float v = rndf();
            memcpy(blk, &v, 4);
            break;
        }
        case GGML_TYPE_F16: put_fp16(blk, rndf()); break;
        case GGML_TYPE_BF16: {
            greta_bf16 h = greta_f32_to_bf16(rndf());
            memcpy(blk, &h, 2);
            break;
        }
        case GGML_TYPE_Q4_0: case GGML_TYPE_Q8_0: put_fp16(blk, rndf() * 0.01f); break;
        case GGML_TYPE_Q4_K: case GGML_TYPE_Q5_K:
            put_fp16(blk, rndf() * 0.01f);
            put_fp16(blk + 2, rndf() * 0.01f);
            break;
        case GGML_TYPE_Q6_K: put_fp16(blk + offsetof(block_q6_K, d), rndf() * 0.01f); break;
        }
    }
    return w;
}

static int64_t row_len(uint32_t type)
{
    return ggml_type_block_elems(type) == 1 ? 300 : 512; /* 300: not a multiple of 8 or 32 */
}

static void test_dequant_avx2_bitexact(void **state)
{
    if (!greta_cpu_avx2_available()) {
        skip();
        return;
    }
    float ref[512 * 4], simd[512 * 4];
    for (size_t ti = 0; ti < N_TYPES; ti++) {
        const uint32_t type = all_types[ti];
        const int64_t n = row_len(type) * 4;
        uint8_t *w = random_matrix(type, row_len(type), 4);
        greta_cpu_dequant_row_isa(GRETA_CPU_ISA_REF, type, w, ref, n);
        memset(simd, 0xff, sizeof simd);
        greta_cpu_dequant_row_isa(GRETA_CPU_ISA_AVX2, type, w, simd, n);
        for (int64_t i = 0; i < n; i++)
            if (memcmp(&ref[i], &simd[i], 4) != 0)
                fail_msg("%s element %ld: ref %.9g avx2 %.9g", ggml_type_name(type), (long)i,
                         (double)ref[i], (double)simd[i]);
        free(w);
    }
}

static void test_fused_dot_avx2_bitexact(void **state)
{
    if (!greta_cpu_avx2_available()) {
        skip();
        return;
    }
    float x[2048], w[2048];
    for (size_t ti = 0; ti < N_TYPES; ti++) {
        const uint32_t type = all_types[ti];
        const int64_t bs = ggml_type_block_elems(type);
        const int64_t ns[4] = {bs == 1 ? 7 : bs, bs == 1 ? 300 : 2 * bs, bs == 1 ? 1024 : 512, 2048};
        for (int k = 0; k < 4; k++) {
            const int64_t n = ns[k];
            uint8_t *row = random_matrix(type, n, 1);
            fill(x, n);
            greta_cpu_dequant_row_isa(GRETA_CPU_ISA_REF, type, row, w, n);
            const float ref = greta_cpu_dot(w, x, n);
            const float fused = greta_cpu_avx2_dot_row(type, row, x, n);
            if (memcmp(&ref, &fused, sizeof ref) != 0)
                fail_msg("%s n=%ld: reference %.9g, fused avx2 %.9g", ggml_type_name(type), (long)n,
                         (double)ref, (double)fused);
            free(row);
        }
    }
}

/* ---- matmul ----------------------------------------------------------------------------- */

static void test_matmul_every_type(void **state)
{
    enum { N_OUT = 37, N_TOK = 5 };
    greta_threadpool *pool2 = NULL, *pool3 = NULL;
    greta_error err = {0};
    assert_int_equal(greta_threadpool_create(2, &pool2, &err), 0);
    assert_int_equal(greta_threadpool_create(3, &pool3, &err), 0);
    const int avx2 = greta_cpu_avx2_available();
    for (size_t ti = 0; ti < N_TYPES; ti++) {
        const uint32_t type = all_types[ti];
        const int64_t n = row_len(type);
        assert_true(greta_cpu_matmul_supports(type));
        uint8_t *w = random_matrix(type, n, N_OUT);
        float *x = malloc(sizeof(float) * (size_t)(n * N_TOK));
        float *work = malloc(sizeof(float) * (size_t)greta_cpu_matmul_work_floats(n, 3));
        float y1[N_TOK][N_OUT], yb[N_TOK][N_OUT], yv[N_TOK][N_OUT];
        float *wf = malloc(sizeof(float) * (size_t)(n * N_OUT));
        assert_non_null(x);
        assert_non_null(work);
        assert_non_null(wf);
        fill(x, n * N_TOK);
        /* one token at a time, one thread, reference */
        for (int t = 0; t < N_TOK; t++)
            greta_cpu_matmul(NULL, GRETA_CPU_ISA_REF, work, type, w, n, N_OUT, x + t * n, 1, y1[t]);
        /* all tokens at once, three threads, reference */
        greta_cpu_matmul(pool3, GRETA_CPU_ISA_REF, work, type, w, n, N_OUT, x, N_TOK, &yb[0][0]);
        assert_memory_equal(y1, yb, sizeof y1);
        if (avx2) { /* two threads, AVX2: all tokens at once, then one at a time (fused kernel) */
            greta_cpu_matmul(pool2, GRETA_CPU_ISA_AVX2, work, type, w, n, N_OUT, x, N_TOK, &yv[0][0]);
            assert_memory_equal(y1, yv, sizeof y1);
            memset(yv, 0, sizeof yv);
            for (int t = 0; t < N_TOK; t++)
                greta_cpu_matmul(pool2, GRETA_CPU_ISA_AVX2, work, type, w, n, N_OUT, x + t * n, 1, yv[t]);
            assert_memory_equal(y1, yv, sizeof y1);
        }
        /* against float64 over the dequantized weights */
        assert_int_equal(greta_dequant_row(type, w, wf, n * N_OUT), 0);
        for (int t = 0; t < N_TOK; t++)
            for (int r = 0; r < N_OUT; r++) {
                double s = 0, mag = 0;
                for (int64_t i = 0; i < n; i++) {
                    s += (double)wf[r * n + i] * x[t * n + i];
                    mag += fabs((double)wf[r * n + i] * x[t * n + i]);
                }
                if (fabs(y1[t][r] - s) > 1e-6 * mag + 1e-30)
                    fail_msg("%s: y[%d][%d] = %.9g, float64 %.9g", ggml_type_name(type), t, r,
                             (double)y1[t][r], s);
            }
        free(w);
        free(x);
        free(work);
        free(wf);
    }
    greta_threadpool_destroy(&pool2);
    greta_threadpool_destroy(&pool3);
    assert_null(pool2);
}

/* ---- thread pool --------------------------------------------------------------------------- */

typedef struct count_job {
    int *hits;
    int used[GRETA_THREADS_MAX]; /* used[t]: thread t ran a range (each t writes its own) */
} count_job;

static void count_items(void *ctx, int64_t begin, int64_t end, int thread)
{
    count_job *j = ctx;
    for (int64_t i = begin; i < end; i++)
        j->hits[i]++;
    if (thread >= 0 && thread < GRETA_THREADS_MAX)
        j->used[thread] = 1;
    else if (end > begin)
        j->hits[begin] += 1000; /* a bad thread index fails the count check */
}

static void test_threadpool(void **state)
{
    const int threads[] = {1, 2, 3, 7};
    const int64_t sizes[] = {0, 1, 2, 5, 100, 1001};
    for (size_t a = 0; a < 4; a++) {
        greta_threadpool *p = NULL;
        greta_error err = {0};
        assert_int_equal(greta_threadpool_create(threads[a], &p, &err), 0);
        assert_int_equal(greta_threadpool_size(p), threads[a]);
        for (size_t b = 0; b < 6; b++)
            for (int rep = 0; rep < 3; rep++) {
                int hits[1001] = {0};
                count_job j = {.hits = hits, .used = {0}};
                greta_threadpool_run(p, sizes[b], count_items, &j);
                for (int64_t i = 0; i < sizes[b]; i++)
                    assert_int_equal(hits[i], 1);
                for (int t = threads[a]; t < GRETA_THREADS_MAX; t++)
                    assert_int_equal(j.used[t], 0);
            }
        greta_threadpool_destroy(&p);
    }
    greta_threadpool *p = NULL;
    greta_error err = {0};
    assert_int_equal(greta_threadpool_create(0, &p, &err), GRETA_ERR_INVALID);
    assert_non_null(strstr(err.msg, "threads"));
    assert_int_equal(greta_threadpool_create(GRETA_THREADS_MAX + 1, &p, &err), GRETA_ERR_INVALID);
    assert_null(p);
    assert_int_equal(greta_threadpool_size(NULL), 1);
}

/* ---- elementwise ops ------------------------------------------------------------------------ */

static void test_rope(void **state)
{
    enum { H = 3, D = 8 };
    float cs[D], x[H * D], x0[H * D];
    fill(x0, H * D);
    /* position 0 turns nothing */
    greta_cpu_rope_table(cs, D, 0, 10000.0f, 1.0f);
    memcpy(x, x0, sizeof x);
    greta_cpu_rope(x, H, D, D, cs);
    assert_memory_equal(x, x0, sizeof x);
    /* against float64 at position 37, base 10011 */
    greta_cpu_rope_table(cs, D, 37, 10011.0f, 1.0f);
    memcpy(x, x0, sizeof x);
    greta_cpu_rope(x, H, D, D, cs);
    for (int h = 0; h < H; h++)
        for (int i = 0; i < D / 2; i++) {
            double th = 37.0 * pow(10011.0, -2.0 * i / D);
            double a = x0[h * D + 2 * i], b = x0[h * D + 2 * i + 1];
            assert_true(fabs(x[h * D + 2 * i] - (a * cos(th) - b * sin(th))) < 1e-6);
            assert_true(fabs(x[h * D + 2 * i + 1] - (a * sin(th) + b * cos(th))) < 1e-6);
        }
    /* linear scaling: position 10 at scale 0.5 is position 5 at scale 1 */
    float cs2[D];
    greta_cpu_rope_table(cs, D, 10, 10000.0f, 0.5f);
    greta_cpu_rope_table(cs2, D, 5, 10000.0f, 1.0f);
    assert_memory_equal(cs, cs2, sizeof cs);
    greta_cpu_rope_table(cs2, D, 10, 10000.0f, 1.0f);
    assert_memory_not_equal(cs, cs2, sizeof cs);
    /* rope_dim < head_dim leaves the rest of each head alone */
    greta_cpu_rope_table(cs, 4, 9, 10000.0f, 1.0f);
    memcpy(x, x0, sizeof x);
    greta_cpu_rope(x, H, D, 4, cs);
    for (int h = 0; h < H; h++) {
        assert_memory_equal(&x[h * D + 4], &x0[h * D + 4], 4 * sizeof(float));
        assert_memory_not_equal(&x[h * D], &x0[h * D], 4 * sizeof(float));
    }
}

static void test_rmsnorm_softmax_swiglu(void **state)
{
    float x[100], w[100], y[100];
    fill(x, 100);
    fill(w, 100);
    greta_cpu_rmsnorm(y, x, w, 100, 1e-5f);
    double ss = 0;
    for (int i = 0; i < 100; i++)
        ss += (double)x[i] * x[i];
    const double s = 1.0 / sqrt(ss / 100 + 1e-5);
    for (int i = 0; i < 100; i++)
        assert_true(fabs(y[i] - x[i] * s * w[i]) < 1e-6);
    greta_cpu_rmsnorm(x, x, w, 100, 1e-5f); /* in place */
    assert_memory_equal(x, y, sizeof y);

    float p[5] = {1, 2, 3, 4, 1000};
    greta_cpu_softmax(p, 5);
    assert_true(p[4] == 1.0f && p[0] == 0.0f);
    float q[3] = {0, logf(2.0f), logf(5.0f)};
    greta_cpu_softmax(q, 3);
    assert_true(fabsf(q[0] - 0.125f) < 1e-7f && fabsf(q[1] - 0.25f) < 1e-7f && fabsf(q[2] - 0.625f) < 1e-7f);

    float g[3] = {0, 2, -3}, u[3] = {5, 0.5f, 2};
    greta_cpu_swiglu(g, u, 3);
    assert_true(g[0] == 0.0f);
    assert_true(fabs(g[1] - 2.0 / (1.0 + exp(-2.0)) * 0.5) < 1e-6);
    assert_true(fabs(g[2] - (-3.0 / (1.0 + exp(3.0))) * 2) < 1e-6);

    float v[3 * 4] = {1, 2, 3, 4, 10, 20, 30, 40, 100, 200, 300, 400}, out[2];
    const float aw[3] = {0.5f, 0.25f, 0.25f};
    greta_cpu_weighted_sum(out, aw, v + 1, 3, 4, 2); /* columns 1 and 2 */
    assert_true(out[0] == 0.5f * 2 + 0.25f * 20 + 0.25f * 200);
    assert_true(out[1] == 0.5f * 3 + 0.25f * 30 + 0.25f * 300);
}

static void test_argmax(void **state)
{
    const float a[5] = {1, 3, 3, -1, 2};
    assert_int_equal(greta_cpu_argmax(a, 5), 1); /* lowest id wins the tie */
    const float b[3] = {NAN, -5, NAN};
    assert_int_equal(greta_cpu_argmax(b, 3), 1); /* NaN never wins */
    const float c[2] = {-INFINITY, -INFINITY};
    assert_int_equal(greta_cpu_argmax(c, 2), 0);
}

static void test_isa_names(void **state)
{
    greta_cpu_isa isa;
    greta_error err = {0};
    assert_int_equal(greta_cpu_isa_parse("ref", &isa, &err), 0);
    assert_int_equal(isa, GRETA_CPU_ISA_REF);
    assert_int_equal(greta_cpu_isa_parse("avx2", &isa, &err), 0);
    assert_int_equal(isa, GRETA_CPU_ISA_AVX2);
    assert_int_equal(greta_cpu_isa_parse("sse9", &isa, &err), GRETA_ERR_INVALID);
    assert_non_null(strstr(err.msg, "sse9"));
    assert_int_equal(greta_cpu_isa_resolve(GRETA_CPU_ISA_AUTO, &isa, &err), 0);
    assert_int_equal(isa, greta_cpu_avx2_available() ? GRETA_CPU_ISA_AVX2 : GRETA_CPU_ISA_REF);
    assert_string_equal(greta_cpu_isa_name(GRETA_CPU_ISA_REF), "ref");
    assert_false(greta_cpu_matmul_supports(GGML_TYPE_Q8_K));
    assert_false(greta_cpu_matmul_supports(GGML_TYPE_Q2_K));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_dot_definition),
        cmocka_unit_test(test_dot_avx2_bitexact),
        cmocka_unit_test(test_dequant_avx2_bitexact),
        cmocka_unit_test(test_fused_dot_avx2_bitexact),
        cmocka_unit_test(test_matmul_every_type),
        cmocka_unit_test(test_threadpool),
        cmocka_unit_test(test_rope),
        cmocka_unit_test(test_rmsnorm_softmax_swiglu),
        cmocka_unit_test(test_argmax),
        cmocka_unit_test(test_isa_names),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
