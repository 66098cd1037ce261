/* test_gpu_decode.c - the decode kernels of issue 7 (kernels/gpu/decode_ops.h)
 * against the CPU reference, and the backend's decode settings.
 *
 * Tolerances (x's int8 error e_b = max|x| over its 32-block / 254):
 *   quantize_q8     d = max|x|/127 and q = rint(x * 127/max|x|) bit-exact (the
 *                   same fp32 operations), block sums within 1e-6 * sum|x|,
 *                   16-sums of q exact
 *   rmsnorm_q8      out within greta_gpu_rmsnorm's test bound of
 *                   greta_cpu_rmsnorm (4e-6 * |cpu| + 1e-7 * max|x*w|), its q8
 *                   the quantization of that out (as above)
 *   matvec_q8       |gpu - ref| <= 1.001 * sum_i |w_i| e_b(i)
 *                                 + 1e-5 * sum_i |w_i| (|x_i| + e_b(i)),
 *                   ref = sum_i w_i x_i in double over the exact weights; 1..3
 *                   matrices of mixed types per launch, 1..8 tokens, overwrite
 *                   and accumulate
 *   matvec_q8_glu   silu(g) * u within the bound that the g and u bounds give
 *   matvec_f32      (v3, fp32 activations) |gpu - ref| <= 1e-5 * sum_i |w_i x_i|
 *                   (fp32 sums in another order), same shapes as matvec_q8,
 *                   rows not a multiple of the rows per warp
 *   decode_table2   table 2's grid for the long-row product (fewer blocks
 *                   than row groups, Q4_K 4096 and Q6_K 4100 rows of 11008):
 *                   the same bits as table 1; the table and its SM count
 *                   set and reset
 *   matvec_f32_glu  silu(g) * u within the bound that the g and u bounds give
 *   f32 fusions     RMSNorm fused into matvec_f32 / matvec_f32_glu, and the
 *                   Q/K/V fusion (RMSNorm + products + RoPE + KV cache, fp16
 *                   and fp32 caches, GQA, partial rotation, 3 tokens) against
 *                   the separate launches (greta_gpu_rmsnorm, the plain
 *                   products, greta_gpu_rope_kv_store): every output and
 *                   cache value within 1e-5 of the array's largest magnitude
 *                   (fp16 cache: within one fp16 rounding, 2^-10 relative)
 *   attention_decode  against greta_gpu_attention (another summation order):
 *                   within 1e-5 of the output's largest magnitude; head_dim
 *                   8..256, GQA, contexts 1..1500, 1 and several splits, fp16
 *                   and fp32 caches, the split kernel (twice: its counters
 *                   reset; decode tables 0 and 1, the prefetch before the
 *                   wait: the same bits) and the one-block kernel; an
 *                   unsupported head_dim and one block with splits refused
 *   one-block buckets  v5 decode across position 256 (one-block attention,
 *                   then the split kernel, a graph each): graph replay
 *                   bit-identical to launching, within 1e-4 of v4
 *   rope_kv_store   bit-identical q, k and cache to greta_gpu_rope (q, k) +
 *                   greta_gpu_kv_store, fp16 and fp32 caches, GQA, partial
 *                   rotation, several sequences; bad shapes refused
 *   backend         quant/gqa-Q4_K_M.gguf: greedy ids of gqa-greedy.json with
 *                   kernels v1..v8 x graph on/off; graph replay bit-identical
 *                   to launching; v2 logits differ from v1 (the option acts) by
 *                   < 5% of the logits' spread, v3 differ from v1 (other
 *                   kernels) by < 1e-4 of it, v5 from v4 likewise, v6 from v5
 *                   by < 1e-3; v7 (the tuning table) bit-identical to v6,
 *                   v8 (table 2) to v7;
 *                   GRETA_GPU_KERNELS /
 *                   GRETA_GPU_GRAPH select the same as the options, bad values
 *                   fail create naming the variable
 *   lookahead       greedy forward_topk steps (k 1) with the lookahead on and
 *                   off: the same ids, values and log-sum-exps, bit for bit,
 *                   while the next call asks for the step taken ahead (every
 *                   step but the first a hit) and when it does not (another
 *                   token, k 2, a forward with logits, another sequence, the
 *                   last position of the context: misses, the results still
 *                   those of lookahead off); GRETA_GPU_LOOKAHEAD selects the
 *                   same as the option, bad values fail create
 *   kv_variable     GRETA_GPU_KV=f32: greta_gpu_backend_create and _plan give
 *                   an fp32 cache of twice the bytes and logits bit for bit
 *                   those of the fp32 option (unset and f16: the fp16 ones,
 *                   which differ); create_opts keeps its option; bad values
 *                   fail create and plan naming the variable
 */
#include <math.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "gpu-worker/gpu_backend.h"
#include "gpu_test_util.h"
#include "kernels/cpu/ops.h"
#include "kernels/cpu/quantize.h"
#include "kernels/gpu/decode_ops.h"
#include "kernels/quant.h"

/* Activations with blocks of very different magnitude (and a zero block). */
static float *make_x(int64_t k, int32_t n_tok, uint64_t seed)
{
    float *x = xmalloc(sizeof(float) * (size_t)(k * n_tok));
    for (int64_t i = 0; i < k * n_tok; i++) {
        const int64_t b = (i % k) / 32;
        const float amp = b % 5 == 1 ? 20.0f : b % 5 == 2 ? 0.001f : 1.0f;
        x[i] = b == 3 ? 0.0f : amp * trng_f(&seed);
    }
    return x;
}

/* Checks a q8 row (decode_ops.h) against the quantization of x [k]. */
static void check_q8_row(const uint8_t *row, const float *x, int64_t k, const char *what)
{
    const int8_t *q = (const int8_t *)row;
    const float *d = (const float *)(row + k), *s = (const float *)(row + k + k / 8);
    const int32_t *t = (const int32_t *)(row + k + k / 4);
    for (int64_t b = 0; b < k / 32; b++) {
        float amax = 0.0f;
        double sum = 0.0, sabs = 0.0;
        for (int i = 0; i < 32; i++) {
            amax = fmaxf(amax, fabsf(x[32 * b + i]));
            sum += x[32 * b + i];
            sabs += fabs(x[32 * b + i]);
        }
        const float dd = amax / 127.0f, id = amax > 0.0f ? 127.0f / amax : 0.0f;
        if (d[b] != dd)
            fail_msg("%s block %lld: d %.9g, expected %.9g", what, (long long)b, d[b], dd);
        if (!(fabs(s[b] - sum) <= 1e-6 * sabs + 1e-30))
            fail_msg("%s block %lld: sum %.9g, expected %.9g", what, (long long)b, s[b], sum);
        int t0 = 0, t1 = 0;
        for (int i = 0; i < 32; i++) {
            const int want = (int)rintf(x[32 * b + i] * id);
            if (q[32 * b + i] != want)
                fail_msg("%s value %lld: q %d, expected %d", what, (long long)(32 * b + i), q[32 * b + i], want);
            if (i < 16)
                t0 += want;
            else
                t1 += want;
        }
        if (t[2 * b] != t0 || t[2 * b + 1] != t1)
            fail_msg("%s block %lld: 16-sums %d %d, expected %d %d", what, (long long)b, t[2 * b], t[2 * b + 1], t0,
                     t1);
    }
}

static void test_quantize_q8(void **state)
{
    GPU_OR_SKIP();
    greta_error err = {0};
    const int64_t k = 768, ld = 1000;
    const int32_t n_tok = 3;
    float *x = make_x(ld, n_tok, 5);
    const int64_t rb = greta_gpu_q8_row_bytes(k);
    assert_int_equal(rb, k + k / 2);
    assert_int_equal(greta_gpu_q8_row_bytes(100), 0);
    float *d_x = dev_upload(x, sizeof(float) * (size_t)(ld * n_tok));
    uint8_t *d_q = dev_alloc((size_t)(rb * n_tok));
    EXPECT_OK(greta_gpu_quantize_q8(NULL, d_x, ld, n_tok, k, d_q, &err));
    uint8_t *h = xmalloc((size_t)(rb * n_tok));
    dev_download(h, d_q, (size_t)(rb * n_tok));
    for (int32_t t = 0; t < n_tok; t++)
        check_q8_row(h + t * rb, x + t * ld, k, "quantize_q8");
    /* RMSNorm + quantize */
    float *w = xmalloc(sizeof(float) * (size_t)k);
    uint64_t seed = 9;
    for (int64_t i = 0; i < k; i++)
        w[i] = 1.0f + 0.5f * trng_f(&seed);
    float *d_w = dev_upload(w, sizeof(float) * (size_t)k);
    float *d_out = dev_alloc(sizeof(float) * (size_t)(k * n_tok));
    EXPECT_OK(greta_gpu_rmsnorm_q8(NULL, d_x, ld, d_w, d_out, k, n_tok, k, 1e-5f, d_q, &err));
    float *out = xmalloc(sizeof(float) * (size_t)(k * n_tok)), *ref = xmalloc(sizeof(float) * (size_t)k);
    dev_download(out, d_out, sizeof(float) * (size_t)(k * n_tok));
    dev_download(h, d_q, (size_t)(rb * n_tok));
    for (int32_t t = 0; t < n_tok; t++) {
        greta_cpu_rmsnorm(ref, x + t * ld, w, k, 1e-5f);
        float mx = 0.0f;
        for (int64_t i = 0; i < k; i++)
            mx = fmaxf(mx, fabsf(ref[i]));
        for (int64_t i = 0; i < k; i++)
            if (!(fabsf(out[t * k + i] - ref[i]) <= 4e-6f * fabsf(ref[i]) + 1e-7f * mx))
                fail_msg("rmsnorm_q8 token %d [%lld]: %.9g, cpu %.9g", t, (long long)i, out[t * k + i], ref[i]);
        check_q8_row(h + t * rb, out + t * k, k, "rmsnorm_q8");
    }
    greta_gpu_free(d_x), greta_gpu_free(d_q), greta_gpu_free(d_w), greta_gpu_free(d_out);
    free(x), free(h), free(w), free(out), free(ref);
}

/* Reference and bound of one row (k values) against token row x when each
 * x is quantized per block of `block` values to within amax / div of the
 * block's largest (plus fp32 rounding). */
static void dot_ref_q(const float *w, const float *x, int64_t k, int block, double div, double *ref, double *tol)
{
    double s = 0.0, qe = 0.0, mag = 0.0;
    for (int64_t b = 0; b < k / block; b++) {
        float amax = 0.0f;
        for (int i = 0; i < block; i++)
            amax = fmaxf(amax, fabsf(x[block * b + i]));
        const double e = amax / div;
        for (int i = 0; i < block; i++) {
            const int64_t j = block * b + i;
            s += (double)w[j] * x[j];
            qe += fabs(w[j]) * e;
            mag += fabs(w[j]) * (fabs(x[j]) + e);
        }
    }
    *ref = s;
    *tol = 1.001 * qe + 1e-5 * mag + 1e-30;
}

/* q8 activations: half a step of amax / 127 per 32 values */
static void dot_ref(const float *w, const float *x, int64_t k, double *ref, double *tol)
{
    dot_ref_q(w, x, k, 32, 254.0, ref, tol);
}

static void check_matvec(int mode, const uint32_t *types, int n_mat, int64_t k, const int64_t *ns, int32_t n_tok,
                         uint64_t seed);

enum { MV_F32, MV_Q8, MV_A16 }; /* check_matvec's GEMVs */

/* One product's cases: each type at row lengths 256, 768 and 11008 for the
 * token counts toks (rows: 1 with the first count, else 301; long_rows at
 * 11008), seeds ti * seed_mul + 3 ki + j; then Q/K/V-like, three matrices
 * of mixed types in one launch (rows 256, mix_k_rows, 67) for 1 and
 * mix_tok tokens, seeds mix_seed and mix_seed + 1. */
static void matvec_cases(int mode, const int32_t toks[4], int64_t long_rows, uint64_t seed_mul, int64_t mix_k_rows,
                         int32_t mix_tok, uint64_t mix_seed)
{
    const uint32_t types[] = {GGML_TYPE_Q4_K, GGML_TYPE_Q6_K};
    const int64_t ks[] = {256, 768, 11008};
    for (int ti = 0; ti < 2; ti++)
        for (int ki = 0; ki < 3; ki++)
            for (int j = 0; j < 4; j++) {
                const int64_t n[1] = {ks[ki] > 4096 ? long_rows : (j == 0 ? 1 : 301)};
                check_matvec(mode, &types[ti], 1, ks[ki], n, toks[j], seed_mul * ti + 3 * ki + j);
            }
    const uint32_t mix[3] = {GGML_TYPE_Q4_K, GGML_TYPE_Q4_K, GGML_TYPE_Q6_K};
    const int64_t ns[3] = {256, mix_k_rows, 67};
    check_matvec(mode, mix, 3, 512, ns, 1, mix_seed);
    check_matvec(mode, mix, 3, 512, ns, mix_tok, mix_seed + 1);
}

static void test_matvec_q8(void **state)
{
    GPU_OR_SKIP();
    const int32_t toks[] = {1, 2, 5, 8};
    matvec_cases(MV_Q8, toks, 40, 11, 64, 6, 77);
}

static void test_matvec_q8_glu(void **state)
{
    GPU_OR_SKIP();
    greta_error err = {0};
    const int64_t k = 768, n = 301;
    for (int32_t n_tok = 1; n_tok <= 5; n_tok += 4) {
        void *qg, *qu;
        float *dg, *du;
        make_weights(GGML_TYPE_Q4_K, k, n, 3, &qg, &dg);
        make_weights(GGML_TYPE_Q6_K, k, n, 4, &qu, &du);
        float *x = make_x(k, n_tok, 17);
        const int64_t rb = greta_gpu_q8_row_bytes(k);
        float *d_x = dev_upload(x, sizeof(float) * (size_t)(k * n_tok));
        uint8_t *d_q = dev_alloc((size_t)(rb * n_tok));
        void *d_g = dev_upload(qg, ggml_row_bytes(GGML_TYPE_Q4_K, k) * n);
        void *d_u = dev_upload(qu, ggml_row_bytes(GGML_TYPE_Q6_K, k) * n);
        float *d_o = dev_alloc(sizeof(float) * (size_t)(n * n_tok));
        const greta_gpu_mv_mat g = {.type = GGML_TYPE_Q4_K, .w = d_g, .n = n},
                               u = {.type = GGML_TYPE_Q6_K, .w = d_u, .n = n};
        EXPECT_OK(greta_gpu_quantize_q8(NULL, d_x, k, n_tok, k, d_q, &err));
        EXPECT_OK(greta_gpu_matvec_q8_glu(NULL, d_q, k, n_tok, &g, &u, d_o, n, &err));
        float *o = xmalloc(sizeof(float) * (size_t)(n * n_tok));
        dev_download(o, d_o, sizeof(float) * (size_t)(n * n_tok));
        for (int32_t t = 0; t < n_tok; t++)
            for (int64_t r = 0; r < n; r++) {
                double gr, gt, ur, ut;
                dot_ref(dg + r * k, x + t * k, k, &gr, &gt);
                dot_ref(du + r * k, x + t * k, k, &ur, &ut);
                const double sg = gr / (1.0 + exp(-gr)), ref = sg * ur;
                const double tol = 1.1 * gt * (fabs(ur) + ut) + (fabs(sg) + 1.1 * gt) * ut + 1e-5 * fabs(ref) + 1e-30;
                if (!(fabs(o[t * n + r] - ref) <= tol))
                    fail_msg("matvec_q8_glu tokens %d: out[%d][%lld] = %.9g, ref %.9g, tol %.3g", n_tok, t,
                             (long long)r, o[t * n + r], ref, tol);
            }
        greta_gpu_free(d_x), greta_gpu_free(d_q), greta_gpu_free(d_g), greta_gpu_free(d_u), greta_gpu_free(d_o);
        free(qg), free(qu), free(dg), free(du), free(x), free(o);
    }
}

/* fp32 reference and the fp32 bound of one row against token row x. */
static void dot_ref_f32(const float *w, const float *x, int64_t k, double *ref, double *tol)
{
    double s = 0.0, mag = 0.0;
    for (int64_t j = 0; j < k; j++) {
        s += (double)w[j] * x[j];
        mag += fabs((double)w[j] * x[j]);
    }
    *ref = s;
    *tol = 1e-5 * mag + 1e-30;
}

/* The a16 bound (act16.cuh): each value within half a scale step
 * (amax / 32767 of its 16-value block), plus fp32 rounding. */
static void dot_ref_a16(const float *w, const float *x, int64_t k, double *ref, double *tol)
{
    dot_ref_q(w, x, k, 16, 2.0 * 32767.0, ref, tol);
}

/* n_mat matrices of the given types (rows ns) against x [n_tok][k], in one
 * launch, plain and accumulating onto y0: the int8-activation GEMV (MV_Q8:
 * greta_gpu_matvec_q8 on x quantized once, bound dot_ref), the fp32 one
 * (MV_F32: greta_gpu_matvec_f32, bound dot_ref_f32) or the a16 one
 * (MV_A16: greta_gpu_matvec_a16 on x quantized once, bound dot_ref_a16). */
static void check_matvec(int mode, const uint32_t *types, int n_mat, int64_t k, const int64_t *ns, int32_t n_tok,
                         uint64_t seed)
{
    const int q8 = mode == MV_Q8;
    const char *what = q8 ? "matvec_q8" : mode == MV_A16 ? "matvec_a16" : "matvec_f32";
    const int64_t ld_a = greta_gpu_a16_row_bytes(k);
    greta_error err = {0};
    void *q[3], *d_w[3];
    float *deq[3], *d_y[3], *y0[3];
    greta_gpu_mv_mat m[3];
    float *x = make_x(k, n_tok, seed);
    float *d_x = dev_upload(x, sizeof(float) * (size_t)(k * n_tok));
    uint8_t *d_q = NULL;
    if (q8) {
        d_q = dev_alloc((size_t)(greta_gpu_q8_row_bytes(k) * n_tok));
        EXPECT_OK(greta_gpu_quantize_q8(NULL, d_x, k, n_tok, k, d_q, &err));
    }
    if (mode == MV_A16) {
        d_q = dev_alloc((size_t)(ld_a * n_tok));
        EXPECT_OK(greta_gpu_quantize_a16(NULL, d_x, k, n_tok, k, d_q, ld_a, &err));
    }
    for (int i = 0; i < n_mat; i++) {
        make_weights(types[i], k, ns[i], seed + 100 * i, &q[i], &deq[i]);
        d_w[i] = dev_upload(q[i], ggml_row_bytes(types[i], (uint64_t)k) * (size_t)ns[i]);
        y0[i] = xmalloc(sizeof(float) * (size_t)(ns[i] * n_tok));
        for (int64_t j = 0; j < ns[i] * n_tok; j++)
            y0[i][j] = trng_f(&seed);
        d_y[i] = dev_upload(y0[i], sizeof(float) * (size_t)(ns[i] * n_tok));
        m[i] = (greta_gpu_mv_mat){.type = types[i], .w = d_w[i], .n = ns[i], .y = d_y[i], .ld_y = ns[i]};
    }
    for (int acc = 0; acc < 2; acc++) {
        if (acc)
            for (int i = 0; i < n_mat; i++) /* back to y0 to accumulate onto it */
                EXPECT_OK(greta_gpu_copy(d_y[i], y0[i], sizeof(float) * (size_t)(ns[i] * n_tok), GRETA_GPU_H2D,
                                         NULL, &err));
        if (q8)
            EXPECT_OK(greta_gpu_matvec_q8(NULL, d_q, k, n_tok, m, n_mat, acc, &err));
        else if (mode == MV_A16)
            EXPECT_OK(greta_gpu_matvec_a16(NULL, d_q, ld_a, k, n_tok, m, n_mat, acc, NULL, &err));
        else
            EXPECT_OK(greta_gpu_matvec_f32(NULL, d_x, k, k, n_tok, m, n_mat, acc, NULL, &err));
        for (int i = 0; i < n_mat; i++) {
            float *y = xmalloc(sizeof(float) * (size_t)(ns[i] * n_tok));
            dev_download(y, d_y[i], sizeof(float) * (size_t)(ns[i] * n_tok));
            for (int32_t t = 0; t < n_tok; t++)
                for (int64_t r = 0; r < ns[i]; r++) {
                    double ref, tol;
                    (q8 ? dot_ref : mode == MV_A16 ? dot_ref_a16 : dot_ref_f32)(deq[i] + r * k, x + t * k, k, &ref,
                                                                                 &tol);
                    const double base = acc ? y0[i][t * ns[i] + r] : 0.0;
                    const double got = y[t * ns[i] + r];
                    if (!(fabs(got - (base + ref)) <= tol + 1e-6 * fabs(base)))
                        fail_msg("%s %s (matrix %d of %d) k %lld tokens %d acc %d: y[%d][%lld] = %.9g, ref %.9g, "
                                 "tol %.3g",
                                 what, ggml_type_name(types[i]), i, n_mat, (long long)k, n_tok, acc, t, (long long)r,
                                 got, base + ref, tol);
                }
            free(y);
        }
    }
    for (int i = 0; i < n_mat; i++) {
        greta_gpu_free(d_w[i]), greta_gpu_free(d_y[i]);
        free(q[i]), free(deq[i]), free(y0[i]);
    }
    greta_gpu_free(d_x), greta_gpu_free(d_q);
    free(x);
}

static void test_matvec_f32(void **state)
{
    GPU_OR_SKIP();
    const int32_t toks[] = {1, 2, 3, 8};
    matvec_cases(MV_F32, toks, 41, 13, 65, 5, 79);
}

/* Decode table 2 (v8): the long-row product of one token in a grid the GPU
 * holds at once (fewer blocks than row groups): the same bits as table 1's
 * block per group, for a 4096 x 11008 Q4_K matrix (512 groups of 8 rows:
 * more than a GPU of fewer than 256 SMs holds at 2 blocks per SM) and a
 * Q6_K one of 4100 rows (513 groups, the last of 4 rows). */
static void test_decode_table2(void **state)
{
    GPU_OR_SKIP();
    greta_error err = {0};
    assert_int_equal(greta_gpu_set_decode_table(2), 2);
    assert_true(greta_gpu_decode_sm_count() > 0);
    assert_int_equal(greta_gpu_set_decode_table(1), 1);
    assert_int_equal(greta_gpu_decode_sm_count(), 0);
    const int64_t k = 11008;
    const uint32_t types[2] = {GGML_TYPE_Q4_K, GGML_TYPE_Q6_K};
    const int64_t ns[2] = {4096, 4100};
    float *x = make_x(k, 1, 61);
    float *d_x = dev_upload(x, sizeof(float) * (size_t)k);
    for (int i = 0; i < 2; i++) {
        const int64_t n = ns[i];
        const size_t bytes = ggml_row_bytes(types[i], (uint64_t)k) * (size_t)n, bs = types[i] == GGML_TYPE_Q6_K ? sizeof(block_q6_K) : sizeof(block_q4_K);
        uint8_t *w = xmalloc(bytes);
        uint64_t sd = 67 + (uint64_t)i;
        for (size_t j = 0; j < bytes; j++)
            w[j] = (uint8_t)(trng_next(&sd) >> 56);
        for (size_t b = 0; b + bs <= bytes; b += bs) { /* fp16 scales of about 1e-3: no Inf or NaN */
            uint8_t *h = w + b + (types[i] == GGML_TYPE_Q6_K ? 208 : 0);
            h[0] = 0x10, h[1] = 0x14;
            if (types[i] == GGML_TYPE_Q4_K)
                h[2] = 0x10, h[3] = 0x14;
        }
        void *d_w = dev_upload(w, bytes);
        float *d_y = dev_alloc(sizeof(float) * (size_t)n);
        float *y[2];
        for (int table = 1; table <= 2; table++) {
            assert_int_equal(greta_gpu_set_decode_table(table), table);
            const greta_gpu_mv_mat m = {.type = types[i], .w = d_w, .n = n, .y = d_y, .ld_y = n};
            EXPECT_OK(greta_gpu_matvec_f32(NULL, d_x, k, k, 1, &m, 1, 0, NULL, &err));
            y[table - 1] = xmalloc(sizeof(float) * (size_t)n);
            dev_download(y[table - 1], d_y, sizeof(float) * (size_t)n);
        }
        assert_memory_equal(y[0], y[1], sizeof(float) * (size_t)n);
        for (int64_t r = 0; r < n; r++)
            assert_true(isfinite(y[1][r]));
        greta_gpu_free(d_w), greta_gpu_free(d_y);
        free(w), free(y[0]), free(y[1]);
    }
    greta_gpu_set_decode_table(0);
    assert_int_equal(greta_gpu_set_decode_table(5), 0); /* unknown tables: 0 */
    greta_gpu_free(d_x);
    free(x);
}

/* v6: the a16 activations (act16.cuh) and the products from them. */
static void test_quantize_a16(void **state)
{
    GPU_OR_SKIP();
    greta_error err = {0};
    const int64_t k = 768, ld_a = greta_gpu_a16_row_bytes(k) + 16; /* and a stride beyond one row */
    const int32_t n_tok = 3;
    float *x = make_x(k, n_tok, 23);
    for (int i = 0; i < 16; i++)
        x[k + 64 + i] = 0.0f; /* a zero block */
    x[5] = 3e4f, x[6] = -1e-7f;  /* a wide block */
    float *d_x = dev_upload(x, sizeof(float) * (size_t)(k * n_tok));
    uint8_t *d_a = dev_alloc((size_t)(ld_a * n_tok)), *a = xmalloc((size_t)(ld_a * n_tok));
    EXPECT_OK(greta_gpu_quantize_a16(NULL, d_x, k, n_tok, k, d_a, ld_a, &err));
    dev_download(a, d_a, (size_t)(ld_a * n_tok));
    for (int32_t t = 0; t < n_tok; t++) {
        const uint8_t *row = a + t * ld_a;
        const int16_t *q = (const int16_t *)row;
        const float *d = (const float *)(row + 2 * k), *sm = (const float *)(row + 2 * k + 4 * (k / 16));
        for (int64_t b = 0; b < k / 16; b++) {
            float amax = 0.0f;
            for (int i = 0; i < 16; i++)
                amax = fmaxf(amax, fabsf(x[t * k + 16 * b + i]));
            assert_true(d[b] == amax / 32767.0f);
            for (int i = 0; i < 16; i++) {
                const double xi = x[t * k + 16 * b + i], e = fabs((double)d[b] * q[16 * b + i] - xi);
                if (!(e <= 0.5001 * d[b] + 1e-7 * fabs(xi)))
                    fail_msg("a16 token %d value %lld: code %d x scale %.9g vs %.9g", t, (long long)(16 * b + i),
                             q[16 * b + i], d[b], xi);
            }
        }
        for (int64_t h = 0; h < k / 16; h++) {
            double sum = 0.0, mag = 0.0;
            for (int i = 0; i < 16; i++)
                sum += x[t * k + 16 * h + i], mag += fabs(x[t * k + 16 * h + i]);
            assert_true(fabs(sm[h] - sum) <= 1e-6 * mag + 1e-30);
        }
    }
    /* RMSNorm with the a16 rows in the same launch: the same fp32 output as
     * greta_gpu_rmsnorm, and the same codes as quantizing that output */
    const int64_t n = 4096, lda = greta_gpu_a16_row_bytes(n);
    float *xn = make_x(n, n_tok, 29), *g = make_x(n, 1, 31);
    float *d_xn = dev_upload(xn, sizeof(float) * (size_t)(n * n_tok)), *d_g = dev_upload(g, sizeof(float) * n);
    float *o1 = dev_alloc(sizeof(float) * (size_t)(n * n_tok)), *o2 = dev_alloc(sizeof(float) * (size_t)(n * n_tok));
    uint8_t *a1 = dev_alloc((size_t)(lda * n_tok)), *a2 = dev_alloc((size_t)(lda * n_tok));
    EXPECT_OK(greta_gpu_rmsnorm(NULL, d_xn, n, d_g, o1, n, n_tok, n, 1e-5f, &err));
    EXPECT_OK(greta_gpu_quantize_a16(NULL, o1, n, n_tok, n, a1, lda, &err));
    EXPECT_OK(greta_gpu_rmsnorm_a16(NULL, d_xn, n, d_g, o2, n, n_tok, n, 1e-5f, a2, lda, &err));
    float *h1 = xmalloc(sizeof(float) * (size_t)(n * n_tok)), *h2 = xmalloc(sizeof(float) * (size_t)(n * n_tok));
    dev_download(h1, o1, sizeof(float) * (size_t)(n * n_tok));
    dev_download(h2, o2, sizeof(float) * (size_t)(n * n_tok));
    assert_memory_equal(h1, h2, sizeof(float) * (size_t)(n * n_tok));
    uint8_t *b1 = xmalloc((size_t)(lda * n_tok)), *b2 = xmalloc((size_t)(lda * n_tok));
    dev_download(b1, a1, (size_t)(lda * n_tok));
    dev_download(b2, a2, (size_t)(lda * n_tok));
    assert_memory_equal(b1, b2, (size_t)(lda * n_tok));
    /* bad arguments */
    assert_int_equal(greta_gpu_quantize_a16(NULL, d_x, k, 1, 100, d_a, ld_a, &err), GRETA_ERR_INVALID);
    assert_int_equal(greta_gpu_quantize_a16(NULL, d_x, k, 1, k, d_a, ld_a - 8, &err), GRETA_ERR_INVALID);
    assert_int_equal(greta_gpu_rmsnorm_a16(NULL, d_xn, n, d_g, o2, n, 1, 300, 1e-5f, a2, lda, &err),
                     GRETA_ERR_INVALID);
    assert_non_null(strstr(err.msg, "rmsnorm_a16"));
    assert_int_equal(greta_gpu_a16_row_bytes(100), 0);
    assert_true(greta_gpu_rmsnorm_a16_supported(4096));
    assert_false(greta_gpu_rmsnorm_a16_supported(300));
    assert_false(greta_gpu_rmsnorm_a16_supported(1 << 20)); /* wider than the kernel holds */
    assert_int_equal(greta_gpu_rmsnorm_a16(NULL, d_xn, 1 << 20, d_g, o2, 1 << 20, 1, 1 << 20, 1e-5f, a2,
                                           greta_gpu_a16_row_bytes(1 << 20), &err),
                     GRETA_ERR_INVALID);
    greta_gpu_free(d_x), greta_gpu_free(d_a), greta_gpu_free(d_xn), greta_gpu_free(d_g), greta_gpu_free(o1),
        greta_gpu_free(o2), greta_gpu_free(a1), greta_gpu_free(a2);
    free(x), free(a), free(xn), free(g), free(h1), free(h2), free(b1), free(b2);
}

static void test_matvec_a16(void **state)
{
    GPU_OR_SKIP();
    const int32_t toks[] = {1, 2, 3, 8};
    matvec_cases(MV_A16, toks, 41, 19, 65, 5, 83);
}

static void test_matvec_f32_glu(void **state)
{
    GPU_OR_SKIP();
    greta_error err = {0};
    const int64_t k = 768, n_all = 301;
    const uint32_t types[2] = {GGML_TYPE_Q4_K, GGML_TYPE_Q6_K};
    for (int ti = 0; ti < 2; ti++)
        for (int32_t n_tok = 1; n_tok <= 5; n_tok += 2) {
            const int64_t n = n_tok == 5 ? 3 : n_all; /* and a group with fewer rows than a block takes */
            const uint32_t ty = types[ti];
            void *qg, *qu;
            float *dg, *du;
            make_weights(ty, k, n, 3 + ti, &qg, &dg);
            make_weights(ty, k, n, 5 + ti, &qu, &du);
            float *x = make_x(k, n_tok, 17 + n_tok);
            float *d_x = dev_upload(x, sizeof(float) * (size_t)(k * n_tok));
            void *d_g = dev_upload(qg, ggml_row_bytes(ty, k) * n), *d_u = dev_upload(qu, ggml_row_bytes(ty, k) * n);
            float *d_o = dev_alloc(sizeof(float) * (size_t)(n * n_tok));
            const greta_gpu_mv_mat g = {.type = ty, .w = d_g, .n = n}, u = {.type = ty, .w = d_u, .n = n};
            /* fp32 activations, then (v6) their a16 form */
            const int64_t ld_a = greta_gpu_a16_row_bytes(k);
            void *d_a = dev_alloc((size_t)(ld_a * n_tok));
            EXPECT_OK(greta_gpu_quantize_a16(NULL, d_x, k, n_tok, k, d_a, ld_a, &err));
            for (int a16 = 0; a16 < 2; a16++) {
                if (a16) { /* v7's launch shapes, then v6's: the same bits */
                    greta_gpu_set_decode_table(1);
                    EXPECT_OK(greta_gpu_matvec_a16_glu(NULL, d_a, ld_a, k, n_tok, &g, &u, d_o, n, &err));
                    float *o7 = xmalloc(sizeof(float) * (size_t)(n * n_tok));
                    dev_download(o7, d_o, sizeof(float) * (size_t)(n * n_tok));
                    greta_gpu_set_decode_table(0);
                    EXPECT_OK(greta_gpu_matvec_a16_glu(NULL, d_a, ld_a, k, n_tok, &g, &u, d_o, n, &err));
                    float *o6 = xmalloc(sizeof(float) * (size_t)(n * n_tok));
                    dev_download(o6, d_o, sizeof(float) * (size_t)(n * n_tok));
                    assert_memory_equal(o6, o7, sizeof(float) * (size_t)(n * n_tok));
                    free(o6), free(o7);
                } else
                    EXPECT_OK(greta_gpu_matvec_f32_glu(NULL, d_x, k, k, n_tok, &g, &u, NULL, d_o, n, &err));
                float *o = xmalloc(sizeof(float) * (size_t)(n * n_tok));
                dev_download(o, d_o, sizeof(float) * (size_t)(n * n_tok));
                for (int32_t t = 0; t < n_tok; t++)
                    for (int64_t r = 0; r < n; r++) {
                        double gr, gt, ur, ut;
                        (a16 ? dot_ref_a16 : dot_ref_f32)(dg + r * k, x + t * k, k, &gr, &gt);
                        (a16 ? dot_ref_a16 : dot_ref_f32)(du + r * k, x + t * k, k, &ur, &ut);
                        const double sg = gr / (1.0 + exp(-gr)), ref = sg * ur;
                        const double tol =
                            1.1 * gt * (fabs(ur) + ut) + (fabs(sg) + 1.1 * gt) * ut + 1e-5 * fabs(ref) + 1e-30;
                        if (!(fabs(o[t * n + r] - ref) <= tol))
                            fail_msg("matvec_%s_glu %s tokens %d rows %lld: out[%d][%lld] = %.9g, ref %.9g, tol %.3g",
                                     a16 ? "a16" : "f32", ggml_type_name(ty), n_tok, (long long)n, t, (long long)r,
                                     o[t * n + r], ref, tol);
                    }
                free(o);
            }
            greta_gpu_free(d_a);
            greta_gpu_free(d_x), greta_gpu_free(d_g), greta_gpu_free(d_u), greta_gpu_free(d_o);
            free(qg), free(qu), free(dg), free(du), free(x);
        }
}

/* max |a - b| <= tol * max |a| over n values (what differs: the RMSNorm's
 * rounding order) */
static void expect_close(const float *a, const float *b, int64_t n, double tol, const char *what)
{
    double amax = 0.0, dmax = 0.0;
    int64_t at = 0;
    for (int64_t i = 0; i < n; i++) {
        amax = fmax(amax, fabs(a[i]));
        if (!(fabs((double)a[i] - b[i]) <= dmax)) {
            dmax = fabs((double)a[i] - b[i]);
            at = i;
        }
    }
    if (!(dmax <= tol * amax + 1e-30))
        fail_msg("%s: |d| %.3g at %lld (%.9g vs %.9g) > %.3g * max %.3g", what, dmax, (long long)at, a[at], b[at], tol,
                 amax);
}

static void download_f(float *h, const void *d, int64_t n, greta_gpu_kv_type kv)
{
    if (kv == GRETA_GPU_KV_F32) {
        dev_download(h, d, (size_t)n * 4);
        return;
    }
    uint16_t *t = xmalloc((size_t)n * 2);
    dev_download(t, d, (size_t)n * 2);
    for (int64_t i = 0; i < n; i++)
        h[i] = greta_fp16_to_f32(t[i]);
    free(t);
}

static void test_matvec_f32_fusions(void **state)
{
    GPU_OR_SKIP();
    greta_error err = {0};
    const int64_t dim = 512, hd = 64, n_heads = 8, n_kv = 2, n_ctx = 8, n_ff = 300;
    const int32_t n_tok = 3, pos[3] = {0, 3, 7}, seq[3] = {0, 0, 0};
    float *x = make_x(dim, n_tok, 5), *gam = xmalloc(sizeof(float) * dim);
    uint64_t sd = 3;
    for (int64_t i = 0; i < dim; i++)
        gam[i] = 0.5f + trng_f(&sd);
    float *d_x = dev_upload(x, sizeof(float) * (size_t)(dim * n_tok)), *d_g = dev_upload(gam, sizeof(float) * dim);
    float *d_xn = dev_alloc(sizeof(float) * (size_t)(dim * n_tok));
    int32_t *d_pos = dev_upload(pos, sizeof pos), *d_seq = dev_upload(seq, sizeof seq);
    EXPECT_OK(greta_gpu_rmsnorm(NULL, d_x, dim, d_g, d_xn, dim, n_tok, dim, 1e-5f, &err));
    /* Q/K/V: q Q4_K, k Q4_K, v Q6_K */
    const uint32_t ty[3] = {GGML_TYPE_Q4_K, GGML_TYPE_Q4_K, GGML_TYPE_Q6_K};
    const int64_t ns[3] = {n_heads * hd, n_kv * hd, n_kv * hd};
    void *q[3], *d_w[3];
    float *deq[3];
    for (int i = 0; i < 3; i++) {
        make_weights(ty[i], dim, ns[i], 40 + i, &q[i], &deq[i]);
        d_w[i] = dev_upload(q[i], ggml_row_bytes(ty[i], (uint64_t)dim) * (size_t)ns[i]);
    }
    /* and the same from the a16 form of the normalized x (v6) */
    const int64_t ld_a = greta_gpu_a16_row_bytes(dim);
    uint8_t *d_a = dev_alloc((size_t)(ld_a * n_tok));
    EXPECT_OK(greta_gpu_quantize_a16(NULL, d_xn, dim, n_tok, dim, d_a, ld_a, &err));
    for (int ri = 0; ri < 2; ri++)
        for (int kvt = 0; kvt < 4; kvt++) {
            const int32_t rope_dim = ri ? 32 : 64, a16 = kvt >> 1;
            const greta_gpu_kv_type kv = (kvt & 1) ? GRETA_GPU_KV_F32 : GRETA_GPU_KV_F16;
            const int64_t cache_n = n_kv * n_ctx * hd;
            float *cs = dev_alloc(sizeof(float) * (size_t)(n_tok * rope_dim));
            EXPECT_OK(greta_gpu_rope_table(NULL, d_pos, n_tok, rope_dim, 10000.0f, 1.0f, cs, &err));
            float *y[2][3];
            void *kc[2], *vc[2];
            for (int p = 0; p < 2; p++) {
                for (int i = 0; i < 3; i++)
                    y[p][i] = dev_alloc(sizeof(float) * (size_t)(ns[i] * n_tok));
                kc[p] = dev_alloc((size_t)cache_n * greta_gpu_kv_elem_bytes(kv));
                vc[p] = dev_alloc((size_t)cache_n * greta_gpu_kv_elem_bytes(kv));
                EXPECT_OK(greta_gpu_memset(kc[p], 0, (size_t)cache_n * greta_gpu_kv_elem_bytes(kv), NULL, &err));
                EXPECT_OK(greta_gpu_memset(vc[p], 0, (size_t)cache_n * greta_gpu_kv_elem_bytes(kv), NULL, &err));
            }
            greta_gpu_mv_mat m[2][3];
            for (int p = 0; p < 2; p++)
                for (int i = 0; i < 3; i++)
                    m[p][i] = (greta_gpu_mv_mat){.type = ty[i], .w = d_w[i], .n = ns[i], .y = y[p][i], .ld_y = ns[i]};
            /* separate: RMSNorm (above), products, RoPE + cache */
            if (a16)
                EXPECT_OK(greta_gpu_matvec_a16(NULL, d_a, ld_a, dim, n_tok, m[0], 3, 0, NULL, &err));
            else
                EXPECT_OK(greta_gpu_matvec_f32(NULL, d_xn, dim, dim, n_tok, m[0], 3, 0, NULL, &err));
            EXPECT_OK(greta_gpu_rope_kv_store(NULL, y[0][0], ns[0], y[0][1], y[0][2], ns[1], n_tok, n_heads, n_kv, hd,
                                              rope_dim, cs, d_pos, d_seq, kc[0], vc[0], kv, n_ctx, &err));
            /* fused */
            const greta_gpu_mv_fuse f = {.norm_w = d_g, .eps = 1e-5f, .cs = cs, .rope_dim = rope_dim,
                                         .head_dim = hd, .n_kv_heads = n_kv, .n_ctx = n_ctx, .d_pos = d_pos,
                                         .d_seq = d_seq, .k_cache = kc[1], .v_cache = vc[1], .kv = kv};
            uint8_t *v7[5] = {NULL}; /* v7's launch shapes: y and caches, to compare with v6's bits */
            const size_t v7_bytes[5] = {sizeof(float) * (size_t)(ns[0] * n_tok), sizeof(float) * (size_t)(ns[1] * n_tok),
                                        sizeof(float) * (size_t)(ns[2] * n_tok),
                                        (size_t)cache_n * greta_gpu_kv_elem_bytes(kv),
                                        (size_t)cache_n * greta_gpu_kv_elem_bytes(kv)};
            if (a16) { /* the same fusion but the norm (done before quantizing) */
                greta_gpu_mv_fuse fa = f;
                fa.norm_w = NULL;
                assert_int_equal(greta_gpu_set_decode_table(1), 1);
                EXPECT_OK(greta_gpu_matvec_a16(NULL, d_a, ld_a, dim, n_tok, m[1], 3, 0, &fa, &err));
                const void *src[5] = {y[1][0], y[1][1], y[1][2], kc[1], vc[1]};
                for (int i = 0; i < 5; i++) {
                    v7[i] = xmalloc(v7_bytes[i]);
                    dev_download(v7[i], src[i], v7_bytes[i]);
                }
                EXPECT_OK(greta_gpu_memset(kc[1], 0, v7_bytes[3], NULL, &err));
                EXPECT_OK(greta_gpu_memset(vc[1], 0, v7_bytes[4], NULL, &err));
                assert_int_equal(greta_gpu_set_decode_table(0), 0);
                EXPECT_OK(greta_gpu_matvec_a16(NULL, d_a, ld_a, dim, n_tok, m[1], 3, 0, &fa, &err));
                const void *now[5] = {y[1][0], y[1][1], y[1][2], kc[1], vc[1]};
                for (int i = 0; i < 5; i++) {
                    uint8_t *h = xmalloc(v7_bytes[i]);
                    dev_download(h, now[i], v7_bytes[i]);
                    assert_memory_equal(h, v7[i], v7_bytes[i]);
                    free(h), free(v7[i]);
                }
                assert_int_equal(greta_gpu_matvec_a16(NULL, d_a, ld_a, dim, n_tok, m[1], 3, 0, &f, &err),
                                 GRETA_ERR_INVALID); /* no RMSNorm on a16 inputs */
            } else {
                EXPECT_OK(greta_gpu_matvec_f32(NULL, d_x, dim, dim, n_tok, m[1], 3, 0, &f, &err));
            }
            for (int i = 0; i < 3; i++) {
                float *a = xmalloc(sizeof(float) * (size_t)(ns[i] * n_tok)), *b = xmalloc(sizeof(float) * (size_t)(ns[i] * n_tok));
                dev_download(a, y[0][i], sizeof(float) * (size_t)(ns[i] * n_tok));
                dev_download(b, y[1][i], sizeof(float) * (size_t)(ns[i] * n_tok));
                expect_close(a, b, ns[i] * n_tok, 1e-5, i == 0 ? "fused q" : i == 1 ? "fused k" : "fused v");
                free(a), free(b);
            }
            for (int c = 0; c < 2; c++) {
                float *a = xmalloc(sizeof(float) * (size_t)cache_n), *b = xmalloc(sizeof(float) * (size_t)cache_n);
                download_f(a, c ? vc[0] : kc[0], cache_n, kv);
                download_f(b, c ? vc[1] : kc[1], cache_n, kv);
                expect_close(a, b, cache_n, kv == GRETA_GPU_KV_F32 ? 1e-5 : 1.0 / 1024, c ? "v cache" : "k cache");
                int filled = 0;
                for (int64_t i = 0; i < cache_n; i++)
                    filled += b[i] != 0.0f;
                assert_true(filled >= (int)(n_tok * n_kv * hd) - 2);
                free(a), free(b);
            }
            for (int p = 0; p < 2; p++) {
                for (int i = 0; i < 3; i++)
                    greta_gpu_free(y[p][i]);
                greta_gpu_free(kc[p]), greta_gpu_free(vc[p]);
            }
            greta_gpu_free(cs);
        }
    greta_gpu_free(d_a);
    /* RMSNorm fused into a single product and into gate/up + SiLU */
    void *qg, *qu;
    float *dg, *du;
    make_weights(GGML_TYPE_Q4_K, dim, n_ff, 50, &qg, &dg);
    make_weights(GGML_TYPE_Q4_K, dim, n_ff, 51, &qu, &du);
    void *d_wg = dev_upload(qg, ggml_row_bytes(GGML_TYPE_Q4_K, dim) * n_ff),
         *d_wu = dev_upload(qu, ggml_row_bytes(GGML_TYPE_Q4_K, dim) * n_ff);
    float *o[2] = {dev_alloc(sizeof(float) * (size_t)(n_ff * n_tok)), dev_alloc(sizeof(float) * (size_t)(n_ff * n_tok))};
    const greta_gpu_mv_mat g = {.type = GGML_TYPE_Q4_K, .w = d_wg, .n = n_ff},
                           u = {.type = GGML_TYPE_Q4_K, .w = d_wu, .n = n_ff};
    float *a = xmalloc(sizeof(float) * (size_t)(n_ff * n_tok)), *b = xmalloc(sizeof(float) * (size_t)(n_ff * n_tok));
    const greta_gpu_mv_fuse fn = {.norm_w = d_g, .eps = 1e-5f};
    EXPECT_OK(greta_gpu_matvec_f32_glu(NULL, d_xn, dim, dim, n_tok, &g, &u, NULL, o[0], n_ff, &err));
    EXPECT_OK(greta_gpu_matvec_f32_glu(NULL, d_x, dim, dim, n_tok, &g, &u, &fn, o[1], n_ff, &err));
    dev_download(a, o[0], sizeof(float) * (size_t)(n_ff * n_tok));
    dev_download(b, o[1], sizeof(float) * (size_t)(n_ff * n_tok));
    expect_close(a, b, n_ff * n_tok, 2e-5, "glu with fused RMSNorm");
    const greta_gpu_mv_mat m0 = {.type = GGML_TYPE_Q4_K, .w = d_wg, .n = n_ff, .y = o[0], .ld_y = n_ff},
                           m1 = {.type = GGML_TYPE_Q4_K, .w = d_wg, .n = n_ff, .y = o[1], .ld_y = n_ff};
    EXPECT_OK(greta_gpu_matvec_f32(NULL, d_xn, dim, dim, n_tok, &m0, 1, 0, NULL, &err));
    EXPECT_OK(greta_gpu_matvec_f32(NULL, d_x, dim, dim, n_tok, &m1, 1, 0, &fn, &err));
    dev_download(a, o[0], sizeof(float) * (size_t)(n_ff * n_tok));
    dev_download(b, o[1], sizeof(float) * (size_t)(n_ff * n_tok));
    expect_close(a, b, n_ff * n_tok, 1e-5, "product with fused RMSNorm");
    /* a Q/K/V fusion with matrices that do not fit the heads is refused */
    const greta_gpu_mv_mat bad[3] = {m0, m0, m0};
    const greta_gpu_mv_fuse fb = {.cs = (const float *)d_g, .rope_dim = 64, .head_dim = 64, .n_kv_heads = 2,
                                  .n_ctx = 8, .d_pos = d_pos, .d_seq = d_seq, .k_cache = d_g, .v_cache = d_g};
    assert_int_equal(greta_gpu_matvec_f32(NULL, d_x, dim, dim, 1, bad, 3, 0, &fb, &err), GRETA_ERR_INVALID);
    /* and so is the Q/K/V fusion for gate/up */
    assert_int_equal(greta_gpu_matvec_f32_glu(NULL, d_x, dim, dim, 1, &g, &u, &fb, o[0], n_ff, &err),
                     GRETA_ERR_INVALID);
    free(a), free(b), free(qg), free(qu), free(dg), free(du);
    greta_gpu_free(o[0]), greta_gpu_free(o[1]), greta_gpu_free(d_wg), greta_gpu_free(d_wu);
    for (int i = 0; i < 3; i++)
        greta_gpu_free(d_w[i]), free(q[i]), free(deq[i]);
    greta_gpu_free(d_x), greta_gpu_free(d_g), greta_gpu_free(d_xn), greta_gpu_free(d_pos), greta_gpu_free(d_seq);
    free(x), free(gam);
}

static void test_attention_decode(void **state)
{
    GPU_OR_SKIP();
    greta_error err = {0};
    const struct {
        int32_t hd, n_heads, n_kv, n_ctx, split;
    } cs[] = {{128, 8, 8, 1500, 1}, {128, 8, 2, 1500, 7}, {64, 4, 1, 300, 3}, {8, 2, 2, 40, 1}, {256, 2, 1, 600, 5},
              {32, 6, 3, 100, 2}, {16, 4, 4, 64, 1}};
    for (size_t ci = 0; ci < sizeof cs / sizeof *cs; ci++)
        for (int kvt = 0; kvt < 2; kvt++) {
            const int32_t hd = cs[ci].hd, nh = cs[ci].n_heads, nkv = cs[ci].n_kv, n_ctx = cs[ci].n_ctx;
            const greta_gpu_kv_type kv = kvt ? GRETA_GPU_KV_F32 : GRETA_GPU_KV_F16;
            const int32_t n_tok = 3, pos[3] = {0, n_ctx / 3, n_ctx - 1}, seq[3] = {0, 1, 0};
            const int64_t cache_n = 2LL * nkv * n_ctx * hd, qn = (int64_t)n_tok * nh * hd;
            uint64_t sd = 11 + ci;
            float *q = xmalloc(sizeof(float) * (size_t)qn), *kc = xmalloc(sizeof(float) * (size_t)cache_n),
                  *vc = xmalloc(sizeof(float) * (size_t)cache_n);
            for (int64_t i = 0; i < qn; i++)
                q[i] = 2.0f * trng_f(&sd);
            for (int64_t i = 0; i < cache_n; i++)
                kc[i] = trng_f(&sd), vc[i] = trng_f(&sd);
            void *d_k, *d_v;
            if (kv == GRETA_GPU_KV_F16) {
                uint16_t *hk = xmalloc(2 * (size_t)cache_n), *hv = xmalloc(2 * (size_t)cache_n);
                for (int64_t i = 0; i < cache_n; i++)
                    hk[i] = greta_f32_to_fp16(kc[i]), hv[i] = greta_f32_to_fp16(vc[i]);
                d_k = dev_upload(hk, 2 * (size_t)cache_n), d_v = dev_upload(hv, 2 * (size_t)cache_n);
                free(hk), free(hv);
            } else {
                d_k = dev_upload(kc, 4 * (size_t)cache_n), d_v = dev_upload(vc, 4 * (size_t)cache_n);
            }
            float *d_q = dev_upload(q, sizeof(float) * (size_t)qn);
            int32_t *d_pos = dev_upload(pos, sizeof pos), *d_seq = dev_upload(seq, sizeof seq);
            const int32_t split = cs[ci].split;
            float *d_part = dev_alloc(sizeof(float) * (size_t)(greta_gpu_attention_partial_floats(n_tok, nh, hd, split) + 1));
            EXPECT_OK(greta_gpu_attention_partial_init(NULL, d_part, n_tok, nh, hd, split, &err));
            float *d_o[2] = {dev_alloc(sizeof(float) * (size_t)qn), dev_alloc(sizeof(float) * (size_t)qn)};
            EXPECT_OK(greta_gpu_attention(NULL, d_q, nh * hd, d_k, d_v, kv, d_pos, d_seq, n_tok, nh, nkv, hd, n_ctx,
                                          split, d_part, d_o[0], nh * hd, &err));
            float *a = xmalloc(sizeof(float) * (size_t)qn), *b = xmalloc(sizeof(float) * (size_t)qn),
                  *b0 = xmalloc(sizeof(float) * (size_t)qn);
            dev_download(a, d_o[0], sizeof(float) * (size_t)qn);
            /* the split kernel, then one block per (token, head) */
            for (int one = 0; one < 2; one++) {
                /* twice each: the split counters must be back at zero after a
                 * launch; with decode tables 0 and 1 (the prefetch before the
                 * wait): the same bits */
                for (int rep = 0; rep < 2; rep++) {
                    assert_int_equal(greta_gpu_set_decode_table(rep), rep);
                    EXPECT_OK(greta_gpu_memset(d_o[1], 0xff, sizeof(float) * (size_t)qn, NULL, &err));
                    EXPECT_OK(greta_gpu_attention_decode(NULL, d_q, nh * hd, d_k, d_v, kv, d_pos, d_seq, n_tok, nh,
                                                         nkv, hd, n_ctx, one ? 1 : split, one, d_part, d_o[1],
                                                         nh * hd, &err));
                    dev_download(b, d_o[1], sizeof(float) * (size_t)qn);
                    char what[112];
                    snprintf(what, sizeof what, "attention_decode%s hd %d heads %d/%d ctx %d split %d %s",
                             one ? " one block" : "", hd, nh, nkv, n_ctx, split, kvt ? "f32" : "f16");
                    expect_close(a, b, qn, 1e-5, what);
                    if (rep == 0)
                        memcpy(b0, b, sizeof(float) * (size_t)qn);
                    else
                        assert_memory_equal(b0, b, sizeof(float) * (size_t)qn);
                }
                greta_gpu_set_decode_table(0);
            }
            free(a), free(b), free(b0), free(q), free(kc), free(vc);
            greta_gpu_free(d_k), greta_gpu_free(d_v), greta_gpu_free(d_q), greta_gpu_free(d_pos);
            greta_gpu_free(d_seq), greta_gpu_free(d_part), greta_gpu_free(d_o[0]), greta_gpu_free(d_o[1]);
        }
    assert_false(greta_gpu_attention_decode_supported(96));
    assert_int_equal(greta_gpu_attention_decode(NULL, NULL, 96, NULL, NULL, GRETA_GPU_KV_F16, NULL, NULL, 1, 1, 1, 96,
                                                8, 1, 0, NULL, NULL, 96, &err),
                     GRETA_ERR_UNSUPPORTED);
    /* one block per head takes no splits */
    float *d = dev_alloc(4096);
    assert_int_equal(greta_gpu_attention_decode(NULL, d, 128, d, d, GRETA_GPU_KV_F16, (int32_t *)d, (int32_t *)d, 1, 1,
                                                1, 128, 8, 2, 1, d, d, 128, &err),
                     GRETA_ERR_INVALID);
    assert_non_null(strstr(err.msg, "one block"));
    greta_gpu_free(d);
}

static void test_rope_kv_store(void **state)
{
    GPU_OR_SKIP();
    greta_error err = {0};
    const int32_t n_tok = 3, n_heads = 8, n_kv = 2, hd = 64, n_ctx = 16, n_seq = 2;
    const int32_t pos[3] = {0, 5, 15}, seq[3] = {1, 0, 1};
    const int32_t rope_dims[2] = {64, 32};
    uint64_t sd = 99;
    const int64_t qn = (int64_t)n_tok * n_heads * hd, kn = (int64_t)n_tok * n_kv * hd;
    float *q = xmalloc(sizeof(float) * (size_t)qn), *k = xmalloc(sizeof(float) * (size_t)kn),
          *v = xmalloc(sizeof(float) * (size_t)kn);
    for (int64_t i = 0; i < qn; i++)
        q[i] = trng_f(&sd);
    for (int64_t i = 0; i < kn; i++)
        k[i] = trng_f(&sd), v[i] = trng_f(&sd);
    int32_t *d_pos = dev_upload(pos, sizeof pos), *d_seq = dev_upload(seq, sizeof seq);
    for (int ri = 0; ri < 2; ri++)
        for (int kvt = 0; kvt < 2; kvt++) {
            const greta_gpu_kv_type kv = kvt ? GRETA_GPU_KV_F32 : GRETA_GPU_KV_F16;
            const size_t cache = (size_t)n_seq * n_kv * n_ctx * hd * greta_gpu_kv_elem_bytes(kv);
            float *cs = dev_alloc(sizeof(float) * (size_t)(n_tok * rope_dims[ri]));
            EXPECT_OK(greta_gpu_rope_table(NULL, d_pos, n_tok, rope_dims[ri], 10000.0f, 1.0f, cs, &err));
            float *dq[2], *dk[2], *dv = dev_upload(v, sizeof(float) * (size_t)kn);
            void *kc[2], *vc[2];
            for (int w = 0; w < 2; w++) {
                dq[w] = dev_upload(q, sizeof(float) * (size_t)qn);
                dk[w] = dev_upload(k, sizeof(float) * (size_t)kn);
                kc[w] = dev_alloc(cache), vc[w] = dev_alloc(cache);
                EXPECT_OK(greta_gpu_memset(kc[w], 0, cache, NULL, &err));
                EXPECT_OK(greta_gpu_memset(vc[w], 0, cache, NULL, &err));
            }
            EXPECT_OK(greta_gpu_rope(NULL, dq[0], n_heads * hd, n_tok, n_heads, hd, rope_dims[ri], cs, &err));
            EXPECT_OK(greta_gpu_rope(NULL, dk[0], n_kv * hd, n_tok, n_kv, hd, rope_dims[ri], cs, &err));
            EXPECT_OK(greta_gpu_kv_store(NULL, dk[0], dv, n_kv * hd, n_tok, d_pos, d_seq, kc[0], vc[0], kv, n_kv, hd,
                                         n_ctx, &err));
            EXPECT_OK(greta_gpu_rope_kv_store(NULL, dq[1], n_heads * hd, dk[1], dv, n_kv * hd, n_tok, n_heads, n_kv,
                                              hd, rope_dims[ri], cs, d_pos, d_seq, kc[1], vc[1], kv, n_ctx, &err));
            uint8_t *a = xmalloc(cache > (size_t)qn * 4 ? cache : (size_t)qn * 4),
                    *b = xmalloc(cache > (size_t)qn * 4 ? cache : (size_t)qn * 4);
            dev_download(a, dq[0], (size_t)qn * 4), dev_download(b, dq[1], (size_t)qn * 4);
            assert_memory_equal(a, b, (size_t)qn * 4);
            dev_download(a, dk[0], (size_t)kn * 4), dev_download(b, dk[1], (size_t)kn * 4);
            assert_memory_equal(a, b, (size_t)kn * 4);
            dev_download(a, kc[0], cache), dev_download(b, kc[1], cache);
            assert_memory_equal(a, b, cache);
            int nonzero = 0;
            for (size_t i = 0; i < cache; i++)
                nonzero += a[i] != 0;
            assert_true(nonzero > 0);
            dev_download(a, vc[0], cache), dev_download(b, vc[1], cache);
            assert_memory_equal(a, b, cache);
            free(a), free(b);
            for (int w = 0; w < 2; w++)
                greta_gpu_free(dq[w]), greta_gpu_free(dk[w]), greta_gpu_free(kc[w]), greta_gpu_free(vc[w]);
            greta_gpu_free(dv), greta_gpu_free(cs);
        }
    /* rope_dim above head_dim; k rows shorter than the kv heads; an unknown cache type */
    assert_int_equal(greta_gpu_rope_kv_store(NULL, q, 8, k, v, 8, 1, 1, 1, 8, 10, q, d_pos, d_seq, q, q,
                                             GRETA_GPU_KV_F16, 4, &err),
                     GRETA_ERR_INVALID);
    assert_int_equal(greta_gpu_rope_kv_store(NULL, q, 16, k, v, 8, 1, 2, 2, 8, 8, q, d_pos, d_seq, q, q,
                                             GRETA_GPU_KV_F16, 4, &err),
                     GRETA_ERR_INVALID);
    assert_int_equal(greta_gpu_rope_kv_store(NULL, q, 8, k, v, 8, 1, 1, 1, 8, 8, q, d_pos, d_seq, q, q,
                                             (greta_gpu_kv_type)7, 4, &err),
                     GRETA_ERR_INVALID);
    greta_gpu_free(d_pos), greta_gpu_free(d_seq);
    free(q), free(k), free(v);
}

static void test_bad_arguments(void **state)
{
    GPU_OR_SKIP();
    greta_error err = {0};
    float *d = dev_alloc(1 << 16);
    assert_false(greta_gpu_matvec_q8_supported(GGML_TYPE_Q8_0, 256));
    assert_false(greta_gpu_matvec_q8_supported(GGML_TYPE_Q4_K, 100));
    assert_true(greta_gpu_matvec_q8_supported(GGML_TYPE_Q6_K, 512));
    assert_false(greta_gpu_matvec_f32_supported(GGML_TYPE_Q8_0, 256));
    assert_false(greta_gpu_matvec_f32_supported(GGML_TYPE_Q4_K, 100));
    assert_true(greta_gpu_matvec_f32_supported(GGML_TYPE_Q6_K, 512));
    greta_gpu_mv_mat m[4] = {{.type = GGML_TYPE_Q4_K, .w = d, .n = 4, .y = d, .ld_y = 4}};
    m[1] = m[2] = m[3] = m[0];
    assert_int_equal(greta_gpu_quantize_q8(NULL, d, 100, 1, 100, d, &err), GRETA_ERR_INVALID);
    assert_non_null(strstr(err.msg, "quantize_q8"));
    assert_int_equal(greta_gpu_rmsnorm_q8(NULL, d, 300, d, d, 300, 1, 300, 1e-5f, d, &err), GRETA_ERR_INVALID);
    assert_int_equal(greta_gpu_matvec_q8(NULL, d, 256, 9, m, 1, 0, &err), GRETA_ERR_INVALID);
    assert_int_equal(greta_gpu_matvec_q8(NULL, d, 256, 1, m, 4, 0, &err), GRETA_ERR_INVALID);
    assert_int_equal(greta_gpu_matvec_q8(NULL, d, 100, 1, m, 1, 0, &err), GRETA_ERR_INVALID);
    m[0].type = GGML_TYPE_F16;
    assert_int_equal(greta_gpu_matvec_q8(NULL, d, 256, 1, m, 1, 0, &err), GRETA_ERR_UNSUPPORTED);
    assert_non_null(strstr(err.msg, "F16"));
    /* the a16 entry points name themselves (a16 rows of 256 values: 640 bytes) */
    assert_int_equal(greta_gpu_matvec_a16(NULL, d, 640, 256, 1, m, 1, 0, NULL, &err), GRETA_ERR_UNSUPPORTED);
    assert_non_null(strstr(err.msg, "matvec_a16: no kernel for F16"));
    m[0].type = GGML_TYPE_Q4_K;
    m[1].n = 5;
    assert_int_equal(greta_gpu_matvec_q8_glu(NULL, d, 256, 1, &m[0], &m[1], d, 8, &err), GRETA_ERR_INVALID);
    assert_int_equal(greta_gpu_matvec_a16_glu(NULL, d, 640, 256, 1, &m[0], &m[1], d, 8, &err), GRETA_ERR_INVALID);
    assert_non_null(strstr(err.msg, "matvec_a16_glu: gate"));
    assert_int_equal(greta_gpu_matvec_f32_glu(NULL, d, 256, 256, 1, &m[0], &m[1], NULL, d, 8, &err),
                     GRETA_ERR_INVALID);
    assert_non_null(strstr(err.msg, "matvec_f32_glu: gate"));
    greta_gpu_free(d);
}

/* ---- backend settings ----------------------------------------------------------- */

typedef struct run_out {
    int32_t ids[64];
    float *last; /* logits of the last decode step */
} run_out;

/* Greedy generation of the first prompt of model `name` in gqa-greedy.json
 * with the given options; returns 0 or the create error. */
static int greedy_run(const char *path, const cJSON *prompt, const greta_gpu_backend_opts *o, run_out *out,
                      greta_error *cerr)
{
    greta_error err = {0};
    greta_model *m = NULL;
    EXPECT_OK(greta_model_open(path, &m, &err));
    greta_backend_params p = {.n_ctx = 64, .n_seq = 1, .n_batch = 32, .n_threads = 1};
    greta_backend *b = NULL;
    int rc = greta_gpu_backend_create_opts(m, &p, o, &b, cerr);
    if (rc) {
        greta_model_close(&m);
        return rc;
    }
    const int32_t vocab = (int32_t)m->cfg.vocab_size;
    float *logits = xmalloc(sizeof(float) * (size_t)vocab);
    const cJSON *pids = cJSON_GetObjectItem(prompt, "prompt_ids"), *want = cJSON_GetObjectItem(prompt, "ids");
    const int32_t np = cJSON_GetArraySize(pids), ng = cJSON_GetArraySize(want);
    int32_t toks[64], pos[64], sq[64] = {0};
    assert_true(np + ng <= 64);
    for (int32_t i = 0; i < np; i++) {
        toks[i] = cJSON_GetArrayItem(pids, i)->valueint;
        pos[i] = i;
    }
    const greta_batch pb = {.n_tokens = np, .tokens = toks, .pos = pos, .seq = sq};
    EXPECT_OK(b->ops->forward(b, &pb, logits, &err));
    for (int32_t g = 0; g < ng; g++) {
        const int32_t id = (int32_t)greta_cpu_argmax(logits, vocab);
        out->ids[g] = id;
        if (id != cJSON_GetArrayItem(want, g)->valueint)
            fail_msg("kernels %d graph %d: token %d is %d, expected %d", o->decode_kernels, o->graph, g, id,
                     cJSON_GetArrayItem(want, g)->valueint);
        const int32_t ps = np + g;
        const greta_batch db = {.n_tokens = 1, .tokens = &id, .pos = &ps, .seq = sq};
        EXPECT_OK(b->ops->forward(b, &db, logits, &err));
    }
    out->last = logits;
    greta_backend_destroy(&b);
    greta_model_close(&m);
    return 0;
}

/* GRETA_GPU_KERNELS=kernels (NULL: unset), the default options: the last
 * logits equal `want` (vocab values). */
static void expect_kernels_var(const char *path, const cJSON *prompt, const char *kernels, const float *want,
                               int vocab)
{
    greta_error err = {0};
    const greta_gpu_backend_opts dflt = {.kv_type = GRETA_GPU_KV_F16};
    run_out e;
    if (kernels)
        setenv("GRETA_GPU_KERNELS", kernels, 1);
    else
        unsetenv("GRETA_GPU_KERNELS");
    EXPECT_OK(greedy_run(path, prompt, &dflt, &e, &err));
    assert_memory_equal(e.last, want, sizeof(float) * vocab);
    free(e.last);
}

static void test_backend_settings(void **state)
{
    GPU_OR_SKIP();
    GRETA_TESTDATA_OR_SKIP(json_found, "quant/gqa-greedy.json");
    char json_path[4096]; /* the macro's path may not outlive the next use */
    snprintf(json_path, sizeof json_path, "%s", json_found);
    GRETA_TESTDATA_OR_SKIP(model_path, "quant/gqa-Q4_K_M.gguf");
    size_t n = 0;
    char *text = greta_read_file(json_path, &n);
    assert_non_null(text);
    cJSON *j = cJSON_Parse(text);
    free(text);
    assert_non_null(j);
    const cJSON *prompt = cJSON_GetObjectItem(cJSON_GetObjectItem(j, "models"), "gqa-Q4_K_M.gguf")->child;
    assert_non_null(prompt);
    unsetenv("GRETA_GPU_KERNELS");
    unsetenv("GRETA_GPU_GRAPH");
    greta_error err = {0};
    run_out r[16];
    for (int i = 0; i < 16; i++) {
        const greta_gpu_backend_opts o = {.kv_type = GRETA_GPU_KV_F16, .decode_kernels = 1 + i / 2, .graph = 1 + i % 2};
        EXPECT_OK(greedy_run(model_path, prompt, &o, &r[i], &err));
    }
    const int vocab = 512;
    double lo = 1e30, hi = -1e30, maxd = 0.0, maxd3 = 0.0, maxd5 = 0.0, maxd6 = 0.0;
    for (int v = 0; v < vocab; v++) {
        lo = fmin(lo, r[0].last[v]), hi = fmax(hi, r[0].last[v]);
        maxd = fmax(maxd, fabs((double)r[0].last[v] - r[2].last[v]));
        maxd3 = fmax(maxd3, fabs((double)r[0].last[v] - r[4].last[v]));
        maxd5 = fmax(maxd5, fabs((double)r[6].last[v] - r[8].last[v]));
        maxd6 = fmax(maxd6, fabs((double)r[8].last[v] - r[10].last[v]));
    }
    /* graph replay = the same kernels launched one by one */
    assert_memory_equal(r[0].last, r[1].last, sizeof(float) * vocab);
    assert_memory_equal(r[2].last, r[3].last, sizeof(float) * vocab);
    assert_memory_equal(r[4].last, r[5].last, sizeof(float) * vocab);
    assert_memory_equal(r[6].last, r[7].last, sizeof(float) * vocab);
    assert_memory_equal(r[8].last, r[9].last, sizeof(float) * vocab);
    assert_memory_equal(r[10].last, r[11].last, sizeof(float) * vocab);
    assert_memory_equal(r[12].last, r[13].last, sizeof(float) * vocab);
    assert_memory_equal(r[14].last, r[15].last, sizeof(float) * vocab);
    /* v7 = v6's products in other launch shapes, v8 = v7 with w_down in other grids: the same bits */
    assert_memory_equal(r[10].last, r[12].last, sizeof(float) * vocab);
    assert_memory_equal(r[12].last, r[14].last, sizeof(float) * vocab);
    /* v4 = v3's kernels launched early (PDL): the same bits */
    assert_memory_equal(r[4].last, r[6].last, sizeof(float) * vocab);
    print_message("v1 vs v2 (int8 activations): max |d logit| %.3g, logit range %.3g\n", maxd, hi - lo);
    print_message("v1 vs v3 (fp32, other kernels): max |d logit| %.3g\n", maxd3);
    print_message("v4 vs v5 (attention splits in another order): max |d logit| %.3g\n", maxd5);
    assert_true(maxd5 < 1e-4 * (hi - lo));
    /* v6: Q/K/V, gate/up and lm_head from 16-bit activation codes (greedy_run checked its ids) */
    print_message("v5 vs v6 (a16 activations): max |d logit| %.3g\n", maxd6);
    assert_true(maxd6 > 0.0);
    assert_true(maxd6 < 1e-3 * (hi - lo));
    assert_true(maxd > 0.0);
    assert_true(maxd < 0.05 * (hi - lo));
    assert_true(maxd3 > 0.0);
    assert_true(maxd3 < 1e-4 * (hi - lo));
    /* the variables select the same as the options */
    setenv("GRETA_GPU_GRAPH", "0", 1);
    expect_kernels_var(model_path, prompt, "v1", r[1].last, vocab);
    expect_kernels_var(model_path, prompt, "v3", r[5].last, vocab);
    unsetenv("GRETA_GPU_GRAPH");
    /* whether this GPU can launch early (NVIDIA sm_90+) */
    const int can_pdl = greta_gpu_set_pdl(1);
    greta_gpu_set_pdl(0);
    expect_kernels_var(model_path, prompt, NULL, r[14].last, vocab); /* the default: v8, graph on */
    assert_int_equal(greta_gpu_pdl_enabled(), can_pdl);
    print_message("v4: programmatic dependent launch %s\n", can_pdl ? "on" : "not available (same kernels as v3)");
    expect_kernels_var(model_path, prompt, "v4", r[6].last, vocab);
    expect_kernels_var(model_path, prompt, "v3", r[4].last, vocab);
    assert_int_equal(greta_gpu_pdl_enabled(), 0);
    expect_kernels_var(model_path, prompt, "v6", r[10].last, vocab);
    expect_kernels_var(model_path, prompt, "v7", r[12].last, vocab);
    expect_kernels_var(model_path, prompt, "v8", r[14].last, vocab);
    assert_int_equal(greta_gpu_decode_table(), 2);
    const greta_gpu_backend_opts dflt = {.kv_type = GRETA_GPU_KV_F16};
    run_out e;
    setenv("GRETA_GPU_KERNELS", "v9", 1);
    assert_int_equal(greedy_run(model_path, prompt, &dflt, &e, &err), GRETA_ERR_INVALID);
    assert_non_null(strstr(err.msg, "GRETA_GPU_KERNELS"));
    unsetenv("GRETA_GPU_KERNELS");
    setenv("GRETA_GPU_GRAPH", "yes", 1);
    assert_int_equal(greedy_run(model_path, prompt, &dflt, &e, &err), GRETA_ERR_INVALID);
    assert_non_null(strstr(err.msg, "GRETA_GPU_GRAPH"));
    unsetenv("GRETA_GPU_GRAPH");
    const greta_gpu_backend_opts bad = {.kv_type = GRETA_GPU_KV_F16, .decode_kernels = 9};
    assert_int_equal(greedy_run(model_path, prompt, &bad, &e, &err), GRETA_ERR_INVALID);
    for (int i = 0; i < 16; i++)
        free(r[i].last);
    cJSON_Delete(j);
}

/* v5's context buckets: decode steps from position 250 to 261 (one-block
 * attention below 256, the split kernel from 256 on, a graph each) after a
 * 250-token prefill. Graph replay equals launching (so each bucket's graph
 * holds its own kernels and the switch happens on the right step), and v5
 * stays within 1e-4 of the logits' spread of v4 (which splits throughout)
 * at every step. */
static void test_one_block_buckets(void **state)
{
    GPU_OR_SKIP();
    GRETA_TESTDATA_OR_SKIP(model_path, "quant/gqa-Q4_K_M.gguf");
    greta_error err = {0};
    greta_model *m = NULL;
    EXPECT_OK(greta_model_open(model_path, &m, &err));
    const int32_t vocab = (int32_t)m->cfg.vocab_size, n_pre = 250, n_dec = 12;
    int32_t *toks = xmalloc(sizeof(int32_t) * (size_t)n_pre), *pos = xmalloc(sizeof(int32_t) * (size_t)n_pre),
            *sq = calloc((size_t)n_pre, sizeof(int32_t));
    uint64_t sd = 5;
    for (int32_t i = 0; i < n_pre; i++)
        toks[i] = 1 + (int32_t)(trng_f(&sd) * 0.5f * (float)(vocab - 2) + 0.5f * (float)(vocab - 2)), pos[i] = i;
    float *lg[3];
    const int kern[3] = {5, 5, 4}, graph[3] = {1, 2, 1};
    for (int r = 0; r < 3; r++) {
        const greta_gpu_backend_opts o = {.kv_type = GRETA_GPU_KV_F16, .decode_kernels = kern[r], .graph = graph[r]};
        greta_backend_params p = {.n_ctx = 320, .n_seq = 1, .n_batch = 256, .n_threads = 1};
        greta_backend *b = NULL;
        EXPECT_OK(greta_gpu_backend_create_opts(m, &p, &o, &b, &err));
        lg[r] = xmalloc(sizeof(float) * (size_t)vocab * (size_t)n_dec);
        float *logits = xmalloc(sizeof(float) * (size_t)vocab);
        const greta_batch pb = {.n_tokens = n_pre, .tokens = toks, .pos = pos, .seq = sq};
        EXPECT_OK(b->ops->forward(b, &pb, logits, &err));
        for (int32_t g = 0; g < n_dec; g++) {
            const int32_t id = (int32_t)greta_cpu_argmax(logits, vocab), ps = n_pre + g, s0 = 0;
            const greta_batch db = {.n_tokens = 1, .tokens = &id, .pos = &ps, .seq = &s0};
            EXPECT_OK(b->ops->forward(b, &db, logits, &err));
            memcpy(lg[r] + (size_t)g * (size_t)vocab, logits, sizeof(float) * (size_t)vocab);
        }
        free(logits);
        greta_backend_destroy(&b);
    }
    assert_memory_equal(lg[0], lg[1], sizeof(float) * (size_t)vocab * (size_t)n_dec);
    for (int32_t g = 0; g < n_dec; g++) {
        const float *a = lg[0] + (size_t)g * (size_t)vocab, *c = lg[2] + (size_t)g * (size_t)vocab;
        double lo = 1e30, hi = -1e30, md = 0.0;
        for (int32_t v = 0; v < vocab; v++)
            lo = fmin(lo, c[v]), hi = fmax(hi, c[v]), md = fmax(md, fabs((double)a[v] - c[v]));
        if (!(md < 1e-4 * (hi - lo)))
            fail_msg("step at position %d: v5 vs v4 max |d logit| %.3g, spread %.3g", n_pre + g, md, hi - lo);
    }
    for (int r = 0; r < 3; r++)
        free(lg[r]);
    free(toks), free(pos), free(sq);
    greta_model_close(&m);
}

/* ---- greedy lookahead ------------------------------------------------------------- */

/* One call of the lookahead script run on a backend: a forward_topk of k
 * (0: forward with logits) for token `tok` (-1: the previous call's top-1
 * of that sequence, -2: the token after it) of sequence seq at its next
 * position. */
typedef struct la_call {
    int32_t seq, k, tok;
} la_call;

typedef struct la_out {
    int32_t ids[512];
    float vals[512], lse[512];
    uint64_t hits, misses;
} la_out;

/* Runs the script on a fresh backend with the given lookahead option (and
 * GRETA_GPU_LOOKAHEAD as the caller set it); every call's top k (or, for
 * forward, the argmax of the logits and the first logit) into out. */
static int la_run(const greta_model *m, int lookahead, const la_call *calls, int n, la_out *out, greta_error *cerr)
{
    greta_error err = {0};
    const greta_gpu_backend_opts o = {.kv_type = GRETA_GPU_KV_F16, .lookahead = lookahead};
    greta_backend_params p = {.n_ctx = 40, .n_seq = 2, .n_batch = 16, .n_threads = 1};
    greta_backend *b = NULL;
    int rc = greta_gpu_backend_create_opts(m, &p, &o, &b, cerr);
    if (rc)
        return rc;
    const int32_t vocab = (int32_t)m->cfg.vocab_size;
    float *logits = xmalloc(sizeof(float) * (size_t)vocab);
    int32_t last[2] = {1, 1}, len[2] = {0, 0};
    memset(out, 0, sizeof *out);
    int o_i = 0;
    for (int i = 0; i < n; i++) {
        const int32_t sq = calls[i].seq, ps = len[sq];
        const int32_t tok = calls[i].tok == -2 ? (last[sq] + 1) % vocab : last[sq];
        const greta_batch bt = {.n_tokens = 1, .tokens = &tok, .pos = &ps, .seq = &sq};
        if (calls[i].k == 0) {
            EXPECT_OK(b->ops->forward(b, &bt, logits, &err));
            last[sq] = (int32_t)greta_cpu_argmax(logits, vocab);
            out->ids[o_i] = last[sq], out->vals[o_i] = logits[0], out->lse[o_i] = logits[vocab - 1];
            o_i++;
        } else {
            int32_t ids[4];
            float vals[4], lse;
            EXPECT_OK(b->ops->forward_topk(b, &bt, calls[i].k, ids, vals, &lse, &err));
            last[sq] = ids[0];
            for (int j = 0; j < calls[i].k; j++, o_i++)
                out->ids[o_i] = ids[j], out->vals[o_i] = vals[j], out->lse[o_i] = lse;
        }
        assert_true(o_i <= 500);
        len[sq]++;
        assert_int_equal(b->ops->seq_len(b, sq), len[sq]);
    }
    EXPECT_OK(greta_gpu_backend_lookahead(b, &out->hits, &out->misses, &err));
    free(logits);
    greta_backend_destroy(&b);
    return 0;
}

static void test_lookahead(void **state)
{
    GPU_OR_SKIP();
    GRETA_TESTDATA_OR_SKIP(model_path, "quant/gqa-Q4_K_M.gguf");
    greta_error err = {0};
    greta_model *m = NULL;
    EXPECT_OK(greta_model_open(model_path, &m, &err));
    unsetenv("GRETA_GPU_LOOKAHEAD");
    /* sequence 0: 12 greedy steps (11 hits), another token (a miss), 5
     * greedy steps, k 2 (a miss), 3 greedy, a forward with logits (a miss),
     * 3 greedy, sequence 1 for 4 steps (a miss, then hits), sequence 0
     * again (a miss) up to the context's last position (no step ahead of
     * it: n_ctx 40) */
    la_call calls[80];
    int n = 0, hits_on = 0, misses_on = 0;
    for (int i = 0; i < 12; i++)
        calls[n++] = (la_call){0, 1, -1};
    calls[n++] = (la_call){0, 1, -2};
    for (int i = 0; i < 5; i++)
        calls[n++] = (la_call){0, 1, -1};
    calls[n++] = (la_call){0, 2, -1};
    for (int i = 0; i < 3; i++)
        calls[n++] = (la_call){0, 1, -1};
    calls[n++] = (la_call){0, 0, -1};
    for (int i = 0; i < 3; i++)
        calls[n++] = (la_call){0, 1, -1};
    for (int i = 0; i < 4; i++)
        calls[n++] = (la_call){1, 1, -1};
    const int used0 = 12 + 1 + 5 + 1 + 3 + 1 + 3;
    for (int i = used0; i < 40; i++)
        calls[n++] = (la_call){0, 1, -1};
    /* expected: a hit for each greedy call right after a greedy call of the
     * same sequence whose next position fits */
    int32_t pos0 = 0, pos1 = 0;
    for (int i = 0; i < n; i++) {
        const int32_t ps = calls[i].seq ? pos1 : pos0;
        const int hit = i > 0 && calls[i].k == 1 && calls[i].tok == -1 && calls[i - 1].k == 1 &&
                        calls[i - 1].seq == calls[i].seq && ps < 40;
        hits_on += hit;
        /* a step taken ahead (after a greedy call whose next position fits)
         * that this call does not take */
        const int32_t pp = i > 0 ? (calls[i - 1].seq ? pos1 : pos0) - 1 : 0;
        if (i > 0 && calls[i - 1].k == 1 && pp + 1 < 40 && !hit)
            misses_on++;
        if (calls[i].seq)
            pos1++;
        else
            pos0++;
    }
    la_out on, off, env_off, env_on;
    EXPECT_OK(la_run(m, 1, calls, n, &on, &err));
    EXPECT_OK(la_run(m, 2, calls, n, &off, &err));
    assert_memory_equal(on.ids, off.ids, sizeof on.ids);
    assert_memory_equal(on.vals, off.vals, sizeof on.vals);
    assert_memory_equal(on.lse, off.lse, sizeof on.lse);
    print_message("lookahead on: %llu hits, %llu misses (expected %d, %d)\n", (unsigned long long)on.hits,
                  (unsigned long long)on.misses, hits_on, misses_on);
    assert_int_equal(on.hits, hits_on);
    assert_int_equal(on.misses, misses_on);
    assert_int_equal(off.hits, 0);
    assert_int_equal(off.misses, 0);
    /* the variable: the default (0) option follows it; on by default */
    setenv("GRETA_GPU_LOOKAHEAD", "0", 1);
    EXPECT_OK(la_run(m, 0, calls, 14, &env_off, &err));
    assert_int_equal(env_off.hits, 0);
    setenv("GRETA_GPU_LOOKAHEAD", "1", 1);
    EXPECT_OK(la_run(m, 0, calls, 14, &env_on, &err));
    assert_int_equal(env_on.hits, 12);
    assert_int_equal(env_on.misses, 1);
    assert_memory_equal(env_on.ids, env_off.ids, 14 * sizeof(int32_t));
    unsetenv("GRETA_GPU_LOOKAHEAD");
    EXPECT_OK(la_run(m, 0, calls, 14, &env_on, &err));
    assert_int_equal(env_on.hits, 12);
    setenv("GRETA_GPU_LOOKAHEAD", "yes", 1);
    assert_int_equal(la_run(m, 0, calls, 14, &env_on, &err), GRETA_ERR_INVALID);
    assert_non_null(strstr(err.msg, "GRETA_GPU_LOOKAHEAD"));
    unsetenv("GRETA_GPU_LOOKAHEAD");
    assert_int_equal(la_run(m, 3, calls, 14, &env_on, &err), GRETA_ERR_INVALID);
    assert_non_null(strstr(err.msg, "lookahead 3"));
    greta_model_close(&m);
}

/* GRETA_GPU_KV: greta_gpu_backend_create and _plan take the cache type
 * from it (the logits bit for bit those of the option, the cache twice the
 * bytes); create_opts keeps its option's; bad values fail both, named. */
static void kv_var_run(const greta_model *m, const char *var, const greta_gpu_backend_opts *o, float *logits,
                       uint64_t *kv_bytes)
{
    greta_error err = {0};
    greta_backend_params p = {.n_ctx = 64, .n_seq = 1, .n_batch = 32, .n_threads = 1};
    greta_backend *b = NULL;
    if (var)
        setenv("GRETA_GPU_KV", var, 1);
    else
        unsetenv("GRETA_GPU_KV");
    if (o)
        EXPECT_OK(greta_gpu_backend_create_opts(m, &p, o, &b, &err));
    else
        EXPECT_OK(greta_gpu_backend_create(m, &p, &b, &err));
    greta_gpu_backend_mem mem;
    EXPECT_OK(greta_gpu_backend_info(b, NULL, &mem, &err));
    *kv_bytes = mem.kv_bytes;
    greta_mem_plan plan;
    EXPECT_OK(greta_gpu_backend_plan(m, &p, &plan, &err));
    if (!o) /* the plan follows the variable, as create does */
        assert_int_equal(plan.kv_bytes, mem.kv_bytes);
    /* 20 tokens: a prefill, then 4 decode steps that read the cache */
    int32_t toks[20], pos[20], sq[20] = {0};
    for (int i = 0; i < 20; i++)
        toks[i] = 1 + (i * 37) % ((int32_t)m->cfg.vocab_size - 1), pos[i] = i;
    const greta_batch pb = {.n_tokens = 16, .tokens = toks, .pos = pos, .seq = sq};
    EXPECT_OK(b->ops->forward(b, &pb, logits, &err));
    for (int i = 16; i < 20; i++) {
        const greta_batch db = {.n_tokens = 1, .tokens = &toks[i], .pos = &pos[i], .seq = sq};
        EXPECT_OK(b->ops->forward(b, &db, logits, &err));
    }
    greta_backend_destroy(&b);
    unsetenv("GRETA_GPU_KV");
}

static void test_kv_variable(void **state)
{
    GPU_OR_SKIP();
    GRETA_TESTDATA_OR_SKIP(model_path, "quant/gqa-Q4_K_M.gguf");
    greta_error err = {0};
    greta_model *m = NULL;
    EXPECT_OK(greta_model_open(model_path, &m, &err));
    const size_t vocab = m->cfg.vocab_size;
    float *l16 = xmalloc(sizeof(float) * vocab), *l32 = xmalloc(sizeof(float) * vocab),
          *lv = xmalloc(sizeof(float) * vocab);
    const greta_gpu_backend_opts o16 = {.kv_type = GRETA_GPU_KV_F16}, o32 = {.kv_type = GRETA_GPU_KV_F32};
    uint64_t b16, b32, bv;
    kv_var_run(m, NULL, &o16, l16, &b16);
    kv_var_run(m, NULL, &o32, l32, &b32);
    assert_int_equal(b32, 2 * b16);
    double maxd = 0.0;
    for (size_t i = 0; i < vocab; i++)
        maxd = fmax(maxd, fabs((double)l16[i] - l32[i]));
    print_message("fp16 vs fp32 cache: max |d logit| %.3g\n", maxd);
    assert_true(maxd > 0.0); /* the cache's rounding shows in the logits */
    kv_var_run(m, NULL, NULL, lv, &bv); /* unset: fp16 */
    assert_int_equal(bv, b16);
    assert_memory_equal(lv, l16, sizeof(float) * vocab);
    kv_var_run(m, "f16", NULL, lv, &bv);
    assert_int_equal(bv, b16);
    assert_memory_equal(lv, l16, sizeof(float) * vocab);
    kv_var_run(m, "f32", NULL, lv, &bv);
    assert_int_equal(bv, b32);
    assert_memory_equal(lv, l32, sizeof(float) * vocab);
    kv_var_run(m, "f32", &o16, lv, &bv); /* the option decides for create_opts */
    assert_int_equal(bv, b16);
    assert_memory_equal(lv, l16, sizeof(float) * vocab);
    greta_backend_params p = {.n_ctx = 64, .n_seq = 1, .n_batch = 32, .n_threads = 1};
    greta_backend *b = NULL;
    greta_mem_plan plan;
    setenv("GRETA_GPU_KV", "fp32", 1);
    assert_int_equal(greta_gpu_backend_create(m, &p, &b, &err), GRETA_ERR_INVALID);
    assert_null(b);
    assert_non_null(strstr(err.msg, "GRETA_GPU_KV='fp32'"));
    assert_int_equal(greta_gpu_backend_plan(m, &p, &plan, &err), GRETA_ERR_INVALID);
    assert_non_null(strstr(err.msg, "GRETA_GPU_KV"));
    unsetenv("GRETA_GPU_KV");
    free(l16);
    free(l32);
    free(lv);
    greta_model_close(&m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_quantize_q8),   cmocka_unit_test(test_matvec_q8),
        cmocka_unit_test(test_matvec_q8_glu), cmocka_unit_test(test_matvec_f32), cmocka_unit_test(test_decode_table2),
        cmocka_unit_test(test_quantize_a16),
        cmocka_unit_test(test_matvec_a16),
        cmocka_unit_test(test_matvec_f32_glu), cmocka_unit_test(test_matvec_f32_fusions),
        cmocka_unit_test(test_rope_kv_store), cmocka_unit_test(test_attention_decode), cmocka_unit_test(test_one_block_buckets),
        cmocka_unit_test(test_bad_arguments),
        cmocka_unit_test(test_backend_settings), cmocka_unit_test(test_lookahead),
        cmocka_unit_test(test_kv_variable),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
