/* test_flash_attn.c - the prefill flash attention (kernels/gpu/flash_attn.cu)
 * against a plain CPU reference in double: scores over the fp16 keys,
 * causal softmax, weighted sum of the fp16 values.
 *
 * The queries are fp16-representable, so the tensor-core kernel (which
 * rounds Q, K, P and V to fp16) differs from the reference only by the fp16
 * rounding of the softmax weights P (relative 2^-11) and fp32 sums:
 *     |gpu - ref| <= 2e-3 * max|v|
 * per output (max over the values the row attends to). The tiled fallback
 * works in fp32 and meets it with room to spare. (With arbitrary fp32
 * queries the rounding of Q adds a score error of up to
 * 2^-11 * sum_d |q_d k_d| / sqrt(head_dim): prefill_ops.h.)
 *
 * Covered: head_dim 64 and 128 (tensor cores on NVIDIA), 8, 80 and 256
 * (tiled); MHA and GQA; chunks from position 0 and continuing a cached
 * context (up to 4000 positions); query counts that are not multiples of
 * the tiles; a second sequence slot; the fused KV store (cache rows of the
 * chunk bit-exact with greta_f32_to_fp16, all other rows untouched) and the
 * plain mode reading a pre-filled cache; a cache pointer that is not 16-byte
 * aligned (the tiled path); bad arguments.
 */
#include <math.h>
#include <string.h>

#include "gpu_test_util.h"
#include "kernels/gpu/prefill_ops.h"
#include "kernels/quant.h"

#define SENTINEL 0x5a5a /* a finite fp16 (203.25) that marks unwritten cache rows */

typedef struct fa_case {
    int32_t n_heads, n_kv, head_dim, n_ctx;
    int32_t p0, n_tok;
    int32_t seq, n_seq;
    int fused;    /* 1: k_new / v_new given; 0: the cache holds the chunk */
    int misalign; /* 1: cache pointers offset by one element */
} fa_case;

static void run_fa_case(const fa_case *c, uint64_t seed, double *worst)
{
    greta_error err = {0};
    const int32_t H = c->n_heads, KV = c->n_kv, D = c->head_dim, C = c->n_ctx, T = c->n_tok, p0 = c->p0;
    const int32_t len = p0 + T, kv_dim = KV * D, q_dim = H * D;
    const int64_t ld_q = q_dim + 3, ld_kv = kv_dim + 2, ld_out = q_dim + 1;
    /* keys and values of every position 0..len-1 (fp32), as the cache holds them (fp16) */
    float *kf = xmalloc(sizeof(float) * (size_t)len * kv_dim), *vf = xmalloc(sizeof(float) * (size_t)len * kv_dim);
    for (int64_t i = 0; i < (int64_t)len * kv_dim; i++) {
        kf[i] = trng_f(&seed);
        vf[i] = (1.0f + 0.5f * (float)(i % 3)) * trng_f(&seed);
    }
    const size_t off = c->misalign ? 1 : 0;
    const size_t cache_elems = (size_t)c->n_seq * KV * C * D + off;
    uint16_t *kc = xmalloc(cache_elems * 2), *vc = xmalloc(cache_elems * 2);
    for (size_t i = 0; i < cache_elems; i++)
        kc[i] = vc[i] = SENTINEL;
    const int32_t cached = c->fused ? p0 : len; /* positions in the cache before the call */
    for (int32_t p = 0; p < cached; p++)
        for (int32_t h = 0; h < KV; h++)
            for (int32_t d = 0; d < D; d++) {
                const size_t dst = off + (((size_t)c->seq * KV + h) * C + p) * D + d;
                kc[dst] = greta_f32_to_fp16(kf[(size_t)p * kv_dim + (size_t)h * D + d]);
                vc[dst] = greta_f32_to_fp16(vf[(size_t)p * kv_dim + (size_t)h * D + d]);
            }
    /* the chunk's new keys/values, rows of ld_kv */
    float *kn = xmalloc(sizeof(float) * (size_t)(T * ld_kv)), *vn = xmalloc(sizeof(float) * (size_t)(T * ld_kv));
    for (int32_t t = 0; t < T; t++)
        for (int64_t i = 0; i < ld_kv; i++) {
            kn[t * ld_kv + i] = i < kv_dim ? kf[(size_t)(p0 + t) * kv_dim + i] : NAN;
            vn[t * ld_kv + i] = i < kv_dim ? vf[(size_t)(p0 + t) * kv_dim + i] : NAN;
        }
    float *q = xmalloc(sizeof(float) * (size_t)(T * ld_q));
    for (int64_t i = 0; i < T * ld_q; i++)
        q[i] = greta_fp16_to_f32(greta_f32_to_fp16(trng_f(&seed)));
    uint16_t *d_kc = dev_upload(kc, cache_elems * 2), *d_vc = dev_upload(vc, cache_elems * 2);
    float *d_q = dev_upload(q, sizeof(float) * (size_t)(T * ld_q));
    float *d_kn = c->fused ? dev_upload(kn, sizeof(float) * (size_t)(T * ld_kv)) : NULL;
    float *d_vn = c->fused ? dev_upload(vn, sizeof(float) * (size_t)(T * ld_kv)) : NULL;
    float *d_out = dev_alloc(sizeof(float) * (size_t)(T * ld_out));
    EXPECT_OK(greta_gpu_flash_attn(NULL, d_q, ld_q, d_kn, d_vn, ld_kv, d_kc + off, d_vc + off, c->seq, p0, T, H, KV,
                                   D, C, d_out, ld_out, &err));
    float *out = xmalloc(sizeof(float) * (size_t)(T * ld_out));
    dev_download(out, d_out, sizeof(float) * (size_t)(T * ld_out));
    /* the cache: the chunk's rows written (fused mode), everything else as it was */
    uint16_t *kc2 = xmalloc(cache_elems * 2), *vc2 = xmalloc(cache_elems * 2);
    dev_download(kc2, d_kc, cache_elems * 2);
    dev_download(vc2, d_vc, cache_elems * 2);
    for (int32_t p = cached; p < len; p++)
        for (int32_t h = 0; h < KV; h++)
            for (int32_t d = 0; d < D; d++) {
                const size_t dst = off + (((size_t)c->seq * KV + h) * C + p) * D + d;
                kc[dst] = greta_f32_to_fp16(kf[(size_t)p * kv_dim + (size_t)h * D + d]);
                vc[dst] = greta_f32_to_fp16(vf[(size_t)p * kv_dim + (size_t)h * D + d]);
            }
    for (size_t i = 0; i < cache_elems; i++)
        if (kc2[i] != kc[i] || vc2[i] != vc[i])
            fail_msg("flash_attn (heads %d/%d, dim %d, p0 %d, fused %d): cache element %zu is 0x%04x/0x%04x, "
                     "want 0x%04x/0x%04x",
                     H, KV, D, p0, c->fused, i, kc2[i], vc2[i], kc[i], vc[i]);
    /* reference */
    double *s = xmalloc(sizeof(double) * (size_t)len);
    for (int32_t t = 0; t < T; t++)
        for (int32_t h = 0; h < H; h++) {
            const int32_t kvh = h / (H / KV), pos = p0 + t;
            const float *qh = q + t * ld_q + (int64_t)h * D;
            double mx = -INFINITY, vmax = 0.0;
            for (int32_t j = 0; j <= pos; j++) {
                const uint16_t *kr = kc + off + (((size_t)c->seq * KV + kvh) * C + j) * D;
                double dot = 0.0;
                for (int32_t d = 0; d < D; d++)
                    dot += (double)qh[d] * greta_fp16_to_f32(kr[d]);
                s[j] = dot / sqrt((double)D);
                if (s[j] > mx)
                    mx = s[j];
            }
            double sum = 0.0;
            for (int32_t j = 0; j <= pos; j++)
                sum += (s[j] = exp(s[j] - mx));
            for (int32_t j = 0; j <= pos; j++)
                for (int32_t d = 0; d < D; d++) {
                    const double v = fabs(greta_fp16_to_f32(vc[off + (((size_t)c->seq * KV + kvh) * C + j) * D + d]));
                    if (v > vmax)
                        vmax = v;
                }
            for (int32_t d = 0; d < D; d++) {
                double ref = 0.0;
                for (int32_t j = 0; j <= pos; j++)
                    ref += s[j] * greta_fp16_to_f32(vc[off + (((size_t)c->seq * KV + kvh) * C + j) * D + d]);
                ref /= sum;
                const double got = out[t * ld_out + (int64_t)h * D + d], e = fabs(got - ref);
                if (!(e <= 2e-3 * vmax))
                    fail_msg("flash_attn (heads %d/%d, dim %d, p0 %d, tokens %d, fused %d): token %d head %d dim %d "
                             "= %.9g, ref %.9g (|err| %.3g > 2e-3 * %.4g)",
                             H, KV, D, p0, T, c->fused, t, h, d, got, ref, e, vmax);
                if (e / vmax > *worst)
                    *worst = e / vmax;
            }
        }
    greta_gpu_free(d_kc), greta_gpu_free(d_vc), greta_gpu_free(d_q), greta_gpu_free(d_kn), greta_gpu_free(d_vn);
    greta_gpu_free(d_out);
    free(kf), free(vf), free(kc), free(vc), free(kn), free(vn), free(q), free(out), free(kc2), free(vc2), free(s);
}

static void run_cases(const fa_case *cases, size_t n, const char *what)
{
    for (size_t i = 0; i < n; i++) {
        double worst = 0.0;
        run_fa_case(&cases[i], 100 + i, &worst);
        print_message("flash_attn %s: heads %d/%d dim %3d p0 %4d tokens %3d fused %d misalign %d (%s): "
                      "worst |err| / max|v| = %.2e (bound 2e-3)\n",
                      what, cases[i].n_heads, cases[i].n_kv, cases[i].head_dim, cases[i].p0, cases[i].n_tok,
                      cases[i].fused, cases[i].misalign,
                      greta_gpu_flash_attn_uses_mma(cases[i].head_dim) && !cases[i].misalign ? "mma" : "tiled", worst);
    }
}

static void test_flash_attn_mma_dims(void **state)
{
    GPU_OR_SKIP();
    const fa_case cases[] = {
        /* heads, kv, dim, n_ctx, p0, tokens, seq, n_seq, fused, misalign */
        {4, 4, 64, 256, 0, 100, 0, 1, 1, 0},
        {8, 2, 128, 300, 37, 70, 1, 2, 1, 0},
        {4, 2, 128, 256, 130, 64, 0, 1, 0, 0},
        {4, 1, 64, 1200, 1000, 130, 0, 1, 0, 0},
        {2, 1, 128, 4100, 4000, 96, 0, 1, 1, 0},
        {4, 2, 64, 200, 3, 1, 0, 1, 1, 0}, /* one query */
    };
    run_cases(cases, sizeof cases / sizeof cases[0], "mma dims");
}

static void test_flash_attn_tiled_dims(void **state)
{
    GPU_OR_SKIP();
    const fa_case cases[] = {
        {2, 1, 8, 64, 5, 20, 0, 1, 1, 0},
        {3, 1, 80, 100, 0, 33, 0, 1, 0, 0},
        {2, 2, 256, 80, 17, 40, 1, 2, 1, 0},
        {4, 2, 64, 150, 20, 50, 0, 1, 1, 1}, /* misaligned cache: the tiled kernel for dim 64 */
        {2, 1, 48, 600, 500, 17, 0, 1, 0, 0},
    };
    run_cases(cases, sizeof cases / sizeof cases[0], "tiled dims");
}

static void test_flash_attn_bad_arguments(void **state)
{
    GPU_OR_SKIP();
    greta_error err = {0};
    float *d = dev_alloc(1 << 20);
    uint16_t *c = (uint16_t *)d;
    /* 3 heads over 2 kv heads; head_dim 300; chunk past n_ctx; k_new without v_new; negative seq */
    assert_int_equal(greta_gpu_flash_attn(NULL, d, 192, d, d, 128, c, c, 0, 0, 4, 3, 2, 64, 16, d, 192, &err),
                     GRETA_ERR_INVALID);
    assert_non_null(strstr(err.msg, "flash_attn"));
    assert_int_equal(greta_gpu_flash_attn(NULL, d, 600, d, d, 600, c, c, 0, 0, 4, 2, 2, 300, 16, d, 600, &err),
                     GRETA_ERR_INVALID);
    assert_int_equal(greta_gpu_flash_attn(NULL, d, 128, d, d, 128, c, c, 0, 10, 7, 2, 2, 64, 16, d, 128, &err),
                     GRETA_ERR_INVALID);
    assert_int_equal(greta_gpu_flash_attn(NULL, d, 128, d, NULL, 128, c, c, 0, 0, 4, 2, 2, 64, 16, d, 128, &err),
                     GRETA_ERR_INVALID);
    assert_non_null(strstr(err.msg, "v_new"));
    assert_int_equal(greta_gpu_flash_attn(NULL, d, 128, d, d, 128, c, c, -1, 0, 4, 2, 2, 64, 16, d, 128, &err),
                     GRETA_ERR_INVALID);
    /* no tokens: nothing to do */
    EXPECT_OK(greta_gpu_flash_attn(NULL, d, 128, d, d, 128, c, c, 0, 16, 0, 2, 2, 64, 16, d, 128, &err));
    EXPECT_OK(greta_gpu_stream_sync(NULL, &err));
    greta_gpu_free(d);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_flash_attn_mma_dims),
        cmocka_unit_test(test_flash_attn_tiled_dims),
        cmocka_unit_test(test_flash_attn_bad_arguments),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
