/* test_gpu_ops.c - every GPU op against the CPU reference (kernels/cpu), for
 * every weight type, with a stated tolerance per op:
 *
 *   embed (dequant)    bit-exact with greta_dequant_row; embed_rope the same
 *                      rows and greta_gpu_rope_table's table, bit for bit
 *   matvec, gemm       |gpu - cpu| <= 1e-5 * sum_i |w_i x_i|  (fp32, other order)
 *   rmsnorm            |gpu - cpu| <= 4e-6 * |cpu| + 1e-7 * max|x*w|
 *   rope               table within 1 fp32 ulp of greta_cpu_rope_table (both
 *                      from double), rotated pairs within 4e-7 * (|x0| + |x1|)
 *   kv_store           bit-exact: greta_f32_to_fp16 (fp16 cache), the input (fp32)
 *   attention          |gpu - ref| <= 2e-5 * max|v|, ref = the CPU ops on the
 *                      cache's values (fp16-rounded, or fp32 for the fp32 cache)
 *   swiglu             |gpu - cpu| <= 1e-6 * |cpu| + 1e-30
 *   top-k / argmax     exact ids and values (k 1..256); lse within 1e-5;
 *                      topk1_next bit-identical to top-1, its next step's
 *                      ints exact
 *   gather             exact
 * Without a GPU every test is skipped with a message.
 */
#include <math.h>
#include <string.h>

#include "gpu_test_util.h"
#include "kernels/cpu/matmul.h"
#include "kernels/cpu/ops.h"
#include "kernels/cpu/quantize.h"
#include "kernels/quant.h"

static const uint32_t all_types[] = {GGML_TYPE_F32,  GGML_TYPE_F16,  GGML_TYPE_BF16, GGML_TYPE_Q4_0,
                                     GGML_TYPE_Q8_0, GGML_TYPE_Q4_K, GGML_TYPE_Q5_K, GGML_TYPE_Q6_K};
#define N_TYPES (sizeof all_types / sizeof all_types[0])

/* Row lengths per type: one block, a few blocks, and a long row (11008 is
 * Llama-2-7B's FFN width); float types also get lengths that are not a
 * multiple of any warp or vector width. */
static int row_lengths(uint32_t type, int64_t *k)
{
    const uint32_t be = ggml_type_block_elems(type);
    if (be == 1) {
        k[0] = 7, k[1] = 172, k[2] = 4096;
        return 3;
    }
    if (be == 32) {
        k[0] = 32, k[1] = 96, k[2] = 4096;
        return 3;
    }
    k[0] = 256, k[1] = 768, k[2] = 11008;
    return 3;
}

/* ---- embed ------------------------------------------------------------------ */

static void test_embed_all_types(void **state)
{
    GPU_OR_SKIP();
    greta_error err = {0};
    for (size_t ti = 0; ti < N_TYPES; ti++) {
        const uint32_t type = all_types[ti];
        int64_t ks[3];
        const int nk = row_lengths(type, ks);
        for (int ki = 0; ki < nk; ki++) {
            const int64_t dim = ks[ki], vocab = 19;
            void *q;
            float *deq;
            make_weights(type, dim, vocab, 100 + ti, &q, &deq);
            const int32_t ids[] = {0, 18, 5, 5, 11};
            const int32_t n = 5;
            void *d_tab = dev_upload(q, ggml_row_bytes(type, (uint64_t)dim) * (size_t)vocab);
            int32_t *d_ids = dev_upload(ids, sizeof ids);
            const int64_t ld = dim + 3;
            float *d_out = dev_alloc(sizeof(float) * (size_t)(ld * n));
            float *out = xmalloc(sizeof(float) * (size_t)(ld * n));
            /* embed_rope: the same rows, and the rope table of greta_gpu_rope_table */
            const int32_t pos[] = {0, 7, 4095, 100000, 3}, rope_dim = 96;
            int32_t *d_pos = dev_upload(pos, sizeof pos);
            float *d_cs = dev_alloc(sizeof(float) * rope_dim * n), *d_cs2 = dev_alloc(sizeof(float) * rope_dim * n);
            float *cs = xmalloc(sizeof(float) * rope_dim * n), *cs2 = xmalloc(sizeof(float) * rope_dim * n);
            EXPECT_OK(greta_gpu_rope_table(NULL, d_pos, n, rope_dim, 10000.0f, 0.5f, d_cs2, &err));
            for (int fused = 0; fused < 2; fused++) {
                greta_gpu_memset(d_out, 0, sizeof(float) * (size_t)(ld * n), NULL, &err);
                if (fused)
                    EXPECT_OK(greta_gpu_embed_rope(NULL, type, d_tab, dim, vocab, d_ids, n, d_out, ld, d_pos, rope_dim,
                                                   10000.0f, 0.5f, d_cs, &err));
                else
                    EXPECT_OK(greta_gpu_embed(NULL, type, d_tab, dim, vocab, d_ids, n, d_out, ld, &err));
                dev_download(out, d_out, sizeof(float) * (size_t)(ld * n));
                for (int32_t i = 0; i < n; i++)
                    if (memcmp(out + ld * i, deq + dim * ids[i], sizeof(float) * (size_t)dim) != 0)
                        fail_msg("embed%s %s dim %lld: row %d differs from greta_dequant_row", fused ? "_rope" : "",
                                 ggml_type_name(type), (long long)dim, ids[i]);
            }
            dev_download(cs, d_cs, sizeof(float) * rope_dim * n);
            dev_download(cs2, d_cs2, sizeof(float) * rope_dim * n);
            assert_memory_equal(cs, cs2, sizeof(float) * rope_dim * n);
            assert_int_equal(greta_gpu_embed_rope(NULL, type, d_tab, dim, vocab, d_ids, n, d_out, ld, d_pos, 95,
                                                  10000.0f, 0.5f, d_cs, &err),
                             GRETA_ERR_INVALID);
            greta_gpu_free(d_pos), greta_gpu_free(d_cs), greta_gpu_free(d_cs2);
            free(cs), free(cs2);
            greta_gpu_free(d_tab);
            greta_gpu_free(d_ids);
            greta_gpu_free(d_out);
            free(out);
            free(q);
            free(deq);
        }
    }
}

/* ---- matvec and gemm ------------------------------------------------------------ */

static void check_matmul(uint32_t type, int64_t k, int64_t n, int32_t n_tok, int use_gemm, uint64_t seed)
{
    greta_error err = {0};
    void *q;
    float *deq;
    make_weights(type, k, n, seed, &q, &deq);
    float *x = xmalloc(sizeof(float) * (size_t)(k * n_tok));
    for (int64_t i = 0; i < k * n_tok; i++)
        x[i] = trng_f(&seed);
    float *y0 = xmalloc(sizeof(float) * (size_t)(n * n_tok)); /* initial y (accumulate) */
    for (int64_t i = 0; i < n * n_tok; i++)
        y0[i] = trng_f(&seed);
    /* CPU reference */
    float *ref = xmalloc(sizeof(float) * (size_t)(n * n_tok));
    float *work = xmalloc(sizeof(float) * (size_t)greta_cpu_matmul_work_floats(k, 1));
    greta_cpu_matmul(NULL, GRETA_CPU_ISA_REF, work, type, q, k, n, x, n_tok, ref);
    /* GPU, once overwriting and once accumulating onto y0 */
    const size_t wbytes = ggml_row_bytes(type, (uint64_t)k) * (size_t)n;
    void *d_w = dev_upload(q, wbytes);
    float *d_x = dev_upload(x, sizeof(float) * (size_t)(k * n_tok));
    float *d_y = dev_alloc(sizeof(float) * (size_t)(n * n_tok));
    float *d_ya = dev_upload(y0, sizeof(float) * (size_t)(n * n_tok));
    if (use_gemm) {
        EXPECT_OK(greta_gpu_gemm(NULL, type, d_w, k, n, d_x, k, n_tok, d_y, n, 0, &err));
        EXPECT_OK(greta_gpu_gemm(NULL, type, d_w, k, n, d_x, k, n_tok, d_ya, n, 1, &err));
    } else {
        EXPECT_OK(greta_gpu_matvec(NULL, type, d_w, k, n, d_x, k, n_tok, d_y, n, 0, &err));
        EXPECT_OK(greta_gpu_matvec(NULL, type, d_w, k, n, d_x, k, n_tok, d_ya, n, 1, &err));
    }
    float *y = xmalloc(sizeof(float) * (size_t)(n * n_tok));
    float *ya = xmalloc(sizeof(float) * (size_t)(n * n_tok));
    dev_download(y, d_y, sizeof(float) * (size_t)(n * n_tok));
    dev_download(ya, d_ya, sizeof(float) * (size_t)(n * n_tok));
    for (int32_t t = 0; t < n_tok; t++)
        for (int64_t r = 0; r < n; r++) {
            double mag = 0.0;
            for (int64_t i = 0; i < k; i++)
                mag += fabs((double)deq[r * k + i] * x[t * k + i]);
            const double tol = 1e-5 * mag + 1e-30;
            const double d = fabs((double)y[t * n + r] - ref[t * n + r]);
            const double da = fabs((double)ya[t * n + r] - ((double)y0[t * n + r] + ref[t * n + r]));
            if (!(d <= tol) || !(da <= tol + 1e-6 * fabs(y0[t * n + r])))
                fail_msg("%s %s k %lld n %lld tokens %d: y[%d][%lld] = %.9g (acc %.9g), cpu %.9g, tol %.3g",
                         use_gemm ? "gemm" : "matvec", ggml_type_name(type), (long long)k, (long long)n, n_tok, t,
                         (long long)r, y[t * n + r], ya[t * n + r], ref[t * n + r], tol);
        }
    greta_gpu_free(d_w);
    greta_gpu_free(d_x);
    greta_gpu_free(d_y);
    greta_gpu_free(d_ya);
    free(q), free(deq), free(x), free(y0), free(ref), free(work), free(y), free(ya);
}

static void test_matvec_all_types(void **state)
{
    GPU_OR_SKIP();
    const int32_t toks[] = {1, 2, 8};
    for (size_t ti = 0; ti < N_TYPES; ti++) {
        int64_t ks[3];
        const int nk = row_lengths(all_types[ti], ks);
        for (int ki = 0; ki < nk; ki++)
            for (int j = 0; j < 3; j++) {
                const int64_t n = ks[ki] > 4096 ? 40 : (j == 0 ? 1 : 301);
                check_matmul(all_types[ti], ks[ki], n, toks[j], 0, 7 * ti + ki + 31 * j);
            }
    }
}

static void test_gemm_all_types(void **state)
{
    GPU_OR_SKIP();
    const int32_t toks[] = {9, 64, 130};
    for (size_t ti = 0; ti < N_TYPES; ti++) {
        int64_t ks[3];
        const int nk = row_lengths(all_types[ti], ks);
        for (int ki = 0; ki < nk; ki++)
            for (int j = 0; j < 3; j++) {
                const int64_t n = ks[ki] > 4096 ? 65 : (j == 0 ? 1 : 200);
                check_matmul(all_types[ti], ks[ki], n, toks[j], 1, 1000 + 7 * ti + ki + 31 * j);
            }
    }
}

/* ---- rmsnorm -------------------------------------------------------------------- */

static void test_rmsnorm(void **state)
{
    GPU_OR_SKIP();
    greta_error err = {0};
    const int64_t lens[] = {8, 64, 172, 4096, 11008};
    uint64_t seed = 5;
    for (size_t li = 0; li < sizeof lens / sizeof lens[0]; li++) {
        const int64_t n = lens[li];
        const int32_t T = 3;
        float *x = xmalloc(sizeof(float) * (size_t)(n * T)), *w = xmalloc(sizeof(float) * (size_t)n);
        for (int64_t i = 0; i < n * T; i++)
            x[i] = (i % 97 == 0 ? 30.0f : 1.0f) * trng_f(&seed);
        for (int64_t i = 0; i < n; i++)
            w[i] = 1.0f + 0.5f * trng_f(&seed);
        float *ref = xmalloc(sizeof(float) * (size_t)(n * T));
        for (int32_t t = 0; t < T; t++)
            greta_cpu_rmsnorm(ref + t * n, x + t * n, w, n, 1e-5f);
        float *d_x = dev_upload(x, sizeof(float) * (size_t)(n * T)), *d_w = dev_upload(w, sizeof(float) * (size_t)n);
        float *d_y = dev_alloc(sizeof(float) * (size_t)(n * T));
        EXPECT_OK(greta_gpu_rmsnorm(NULL, d_x, n, d_w, d_y, n, T, n, 1e-5f, &err));
        float *y = xmalloc(sizeof(float) * (size_t)(n * T));
        dev_download(y, d_y, sizeof(float) * (size_t)(n * T));
        for (int64_t i = 0; i < n * T; i++) {
            const double tol = 4e-6 * fabs(ref[i]) + 1e-7;
            if (!(fabs((double)y[i] - ref[i]) <= tol))
                fail_msg("rmsnorm n %lld: out[%lld] = %.9g, cpu %.9g", (long long)n, (long long)i, y[i], ref[i]);
        }
        /* in place (out == x) */
        EXPECT_OK(greta_gpu_rmsnorm(NULL, d_x, n, d_w, d_x, n, T, n, 1e-5f, &err));
        float *y2 = xmalloc(sizeof(float) * (size_t)(n * T));
        dev_download(y2, d_x, sizeof(float) * (size_t)(n * T));
        assert_memory_equal(y, y2, sizeof(float) * (size_t)(n * T));
        greta_gpu_free(d_x), greta_gpu_free(d_w), greta_gpu_free(d_y);
        free(x), free(w), free(ref), free(y), free(y2);
    }
}

/* ---- rope ------------------------------------------------------------------------ */

static void test_rope(void **state)
{
    GPU_OR_SKIP();
    greta_error err = {0};
    const int32_t pos[] = {0, 1, 17, 4095, 100000};
    const int32_t T = 5, n_heads = 4, head_dim = 128;
    const int32_t rope_dims[] = {128, 64, 8};
    const float bases[] = {10000.0f, 500000.0f, 10011.0f};
    const float scales[] = {1.0f, 0.25f, 1.0f};
    uint64_t seed = 9;
    int32_t *d_pos = dev_upload(pos, sizeof pos);
    for (int c = 0; c < 3; c++) {
        const int32_t rd = rope_dims[c];
        const int64_t ld = n_heads * head_dim + 4;
        float *x = xmalloc(sizeof(float) * (size_t)(ld * T));
        for (int64_t i = 0; i < ld * T; i++)
            x[i] = 2.0f * trng_f(&seed);
        float *cs_ref = xmalloc(sizeof(float) * (size_t)(rd * T)), *ref = xmalloc(sizeof(float) * (size_t)(ld * T));
        memcpy(ref, x, sizeof(float) * (size_t)(ld * T));
        for (int32_t t = 0; t < T; t++) {
            greta_cpu_rope_table(cs_ref + t * rd, rd, pos[t], bases[c], scales[c]);
            greta_cpu_rope(ref + t * ld, n_heads, head_dim, rd, cs_ref + t * rd);
        }
        float *d_cs = dev_alloc(sizeof(float) * (size_t)(rd * T)), *d_x = dev_upload(x, sizeof(float) * (size_t)(ld * T));
        EXPECT_OK(greta_gpu_rope_table(NULL, d_pos, T, rd, bases[c], scales[c], d_cs, &err));
        EXPECT_OK(greta_gpu_rope(NULL, d_x, ld, T, n_heads, head_dim, rd, d_cs, &err));
        float *cs = xmalloc(sizeof(float) * (size_t)(rd * T)), *y = xmalloc(sizeof(float) * (size_t)(ld * T));
        dev_download(cs, d_cs, sizeof(float) * (size_t)(rd * T));
        dev_download(y, d_x, sizeof(float) * (size_t)(ld * T));
        for (int64_t i = 0; i < rd * T; i++)
            if (!(fabsf(cs[i] - cs_ref[i]) <= 1.2e-7f))
                fail_msg("rope table rope_dim %d: cs[%lld] = %.9g, cpu %.9g", rd, (long long)i, cs[i], cs_ref[i]);
        for (int32_t t = 0; t < T; t++)
            for (int64_t i = 0; i < ld; i++) {
                const int64_t j = t * ld + i, pair = i - (i % 2);
                const float mag = fabsf(x[t * ld + pair]) + fabsf(x[t * ld + pair + 1]);
                if (!(fabsf(y[j] - ref[j]) <= 4e-7f * mag))
                    fail_msg("rope rope_dim %d pos %d: x[%lld] = %.9g, cpu %.9g", rd, pos[t], (long long)i, y[j], ref[j]);
            }
        greta_gpu_free(d_cs), greta_gpu_free(d_x);
        free(x), free(cs_ref), free(ref), free(cs), free(y);
    }
    greta_gpu_free(d_pos);
}

/* ---- KV store and attention -------------------------------------------------------- */

typedef struct att_case {
    int32_t n_heads, n_kv, head_dim, n_ctx;
    int32_t len0, len1; /* context of sequence 0 and 1 after the store (len1 0: one sequence) */
    int32_t n_q0, n_q1; /* queries: the last n_q tokens of each sequence */
    int32_t n_split;
    greta_gpu_kv_type kv;
} att_case;

static float fp16_round(float v) { return greta_fp16_to_f32(greta_f32_to_fp16(v)); }

static void run_att_case(const att_case *ac, uint64_t seed)
{
    greta_error err = {0};
    const int32_t H = ac->n_heads, KV = ac->n_kv, D = ac->head_dim, C = ac->n_ctx;
    const int32_t n_seq = ac->len1 ? 2 : 1;
    const int32_t kv_dim = KV * D, q_dim = H * D;
    /* the store batch: every position of both sequences */
    const int32_t n_st = ac->len0 + ac->len1;
    int32_t *pos = xmalloc(sizeof(int32_t) * (size_t)n_st), *seq = xmalloc(sizeof(int32_t) * (size_t)n_st);
    float *k = xmalloc(sizeof(float) * (size_t)n_st * kv_dim), *v = xmalloc(sizeof(float) * (size_t)n_st * kv_dim);
    for (int32_t i = 0; i < n_st; i++) {
        seq[i] = i < ac->len0 ? 0 : 1;
        pos[i] = i < ac->len0 ? i : i - ac->len0;
    }
    for (int64_t i = 0; i < (int64_t)n_st * kv_dim; i++) {
        k[i] = 2.0f * trng_f(&seed);
        v[i] = trng_f(&seed);
    }
    const size_t cache_elems = (size_t)n_seq * KV * C * D, eb = greta_gpu_kv_elem_bytes(ac->kv);
    void *d_kc = dev_alloc(cache_elems * eb), *d_vc = dev_alloc(cache_elems * eb);
    float *d_k = dev_upload(k, sizeof(float) * (size_t)n_st * kv_dim), *d_v = dev_upload(v, sizeof(float) * (size_t)n_st * kv_dim);
    int32_t *d_pos = dev_upload(pos, sizeof(int32_t) * (size_t)n_st), *d_seq = dev_upload(seq, sizeof(int32_t) * (size_t)n_st);
    EXPECT_OK(greta_gpu_kv_store(NULL, d_k, d_v, kv_dim, n_st, d_pos, d_seq, d_kc, d_vc, ac->kv, KV, D, C, &err));
    uint8_t *kc = xmalloc(cache_elems * eb), *vc = xmalloc(cache_elems * eb);
    dev_download(kc, d_kc, cache_elems * eb);
    dev_download(vc, d_vc, cache_elems * eb);
    for (int32_t i = 0; i < n_st; i++)
        for (int32_t h = 0; h < KV; h++)
            for (int32_t d = 0; d < D; d++) {
                const size_t off = (((size_t)seq[i] * KV + h) * C + pos[i]) * D + d;
                const size_t src = (size_t)i * kv_dim + (size_t)h * D + d;
                int same;
                if (ac->kv == GRETA_GPU_KV_F16)
                    same = ((uint16_t *)kc)[off] == greta_f32_to_fp16(k[src]) &&
                           ((uint16_t *)vc)[off] == greta_f32_to_fp16(v[src]);
                else
                    same = memcmp(&((float *)kc)[off], &k[src], 4) == 0 && memcmp(&((float *)vc)[off], &v[src], 4) == 0;
                if (!same)
                    fail_msg("kv_store: token %d head %d dim %d is not the input (rounded to the cache type)", i, h, d);
            }
    /* queries: the last n_q0 tokens of sequence 0 then the last n_q1 of sequence 1 */
    const int32_t nq = ac->n_q0 + ac->n_q1;
    int32_t *qpos = xmalloc(sizeof(int32_t) * (size_t)nq), *qseq = xmalloc(sizeof(int32_t) * (size_t)nq);
    for (int32_t i = 0; i < nq; i++) {
        qseq[i] = i < ac->n_q0 ? 0 : 1;
        qpos[i] = i < ac->n_q0 ? ac->len0 - ac->n_q0 + i : ac->len1 - ac->n_q1 + (i - ac->n_q0);
    }
    const int64_t ldq = q_dim + 8;
    float *q = xmalloc(sizeof(float) * (size_t)(nq * ldq));
    for (int64_t i = 0; i < nq * ldq; i++)
        q[i] = trng_f(&seed);
    float *d_q = dev_upload(q, sizeof(float) * (size_t)(nq * ldq));
    int32_t *d_qpos = dev_upload(qpos, sizeof(int32_t) * (size_t)nq), *d_qseq = dev_upload(qseq, sizeof(int32_t) * (size_t)nq);
    float *d_out = dev_alloc(sizeof(float) * (size_t)nq * q_dim);
    const int64_t pf = greta_gpu_attention_partial_floats(nq, H, D, ac->n_split);
    float *d_part = pf ? dev_alloc(sizeof(float) * (size_t)pf) : NULL;
    EXPECT_OK(greta_gpu_attention_partial_init(NULL, d_part, nq, H, D, ac->n_split, &err));
    EXPECT_OK(greta_gpu_attention(NULL, d_q, ldq, d_kc, d_vc, ac->kv, d_qpos, d_qseq, nq, H, KV, D, C, ac->n_split,
                                  d_part, d_out, q_dim, &err));
    float *out = xmalloc(sizeof(float) * (size_t)nq * q_dim);
    dev_download(out, d_out, sizeof(float) * (size_t)nq * q_dim);
    if (ac->n_split > 1) {
        /* the splits merge in the launch, the last block of each (token,
         * head) leaving its counter at 0: the same call on the same buffer
         * again (a graph replay) gives the same bits, also after a call of
         * another shape (one token, another split; its rows where the first
         * call's were, its counters where they always are) */
        float *again = xmalloc(sizeof(float) * (size_t)nq * q_dim);
        for (int round = 0; round < 2; round++) {
            if (round == 1) {
                const int32_t s2 = ac->n_split > 2 ? ac->n_split - 1 : 2; /* its rows fit in pf */
                EXPECT_OK(greta_gpu_attention(NULL, d_q, ldq, d_kc, d_vc, ac->kv, d_qpos, d_qseq, 1, H, KV, D, C, s2,
                                              d_part, d_out, q_dim, &err));
                dev_download(again, d_out, sizeof(float) * (size_t)q_dim);
                for (int32_t i = 0; i < q_dim; i++)
                    if (!(fabsf(again[i] - out[i]) <= 1e-5f * (1.0f + fabsf(out[i]))))
                        fail_msg("attention (heads %d): token 0 dim %d in %d splits = %.9g, in %d: %.9g", H, i, s2,
                                 again[i], ac->n_split, out[i]);
            }
            EXPECT_OK(greta_gpu_memset(d_out, 0, sizeof(float) * (size_t)nq * q_dim, NULL, &err));
            EXPECT_OK(greta_gpu_attention(NULL, d_q, ldq, d_kc, d_vc, ac->kv, d_qpos, d_qseq, nq, H, KV, D, C,
                                          ac->n_split, d_part, d_out, q_dim, &err));
            dev_download(again, d_out, sizeof(float) * (size_t)nq * q_dim);
            if (memcmp(again, out, sizeof(float) * (size_t)nq * q_dim) != 0)
                fail_msg("attention (heads %d, split %d): run %d on the same partial buffer differs", H, ac->n_split,
                         round + 2);
        }
        free(again);
    }
    /* reference: the CPU ops over the fp16-rounded keys and values */
    const int32_t max_len = ac->len0 > ac->len1 ? ac->len0 : ac->len1;
    float *kh = xmalloc(sizeof(float) * (size_t)max_len * D), *vh = xmalloc(sizeof(float) * (size_t)max_len * D);
    float *att = xmalloc(sizeof(float) * (size_t)max_len), *ref = xmalloc(sizeof(float) * (size_t)D);
    for (int32_t i = 0; i < nq; i++)
        for (int32_t h = 0; h < H; h++) {
            const int32_t kvh = h / (H / KV), n_pos = qpos[i] + 1;
            float vmax = 0.0f;
            for (int32_t j = 0; j < n_pos; j++)
                for (int32_t d = 0; d < D; d++) {
                    const size_t src = (size_t)(qseq[i] == 0 ? j : ac->len0 + j) * kv_dim + (size_t)kvh * D + d;
                    const int f16 = ac->kv == GRETA_GPU_KV_F16;
                    kh[(size_t)j * D + d] = f16 ? fp16_round(k[src]) : k[src];
                    vh[(size_t)j * D + d] = f16 ? fp16_round(v[src]) : v[src];
                    if (fabsf(vh[(size_t)j * D + d]) > vmax)
                        vmax = fabsf(vh[(size_t)j * D + d]);
                }
            const float *qh = q + i * ldq + (int64_t)h * D;
            for (int32_t j = 0; j < n_pos; j++)
                att[j] = greta_cpu_dot(qh, kh + (size_t)j * D, D) / sqrtf((float)D);
            greta_cpu_softmax(att, n_pos);
            greta_cpu_weighted_sum(ref, att, vh, n_pos, D, D);
            for (int32_t d = 0; d < D; d++) {
                const float g = out[(size_t)i * q_dim + (size_t)h * D + d];
                if (!(fabsf(g - ref[d]) <= 2e-5f * vmax))
                    fail_msg("attention (heads %d, kv %d, dim %d, split %d, %s cache): token %d (seq %d pos %d) head %d "
                             "dim %d = %.9g, ref %.9g",
                             H, KV, D, ac->n_split, ac->kv == GRETA_GPU_KV_F16 ? "fp16" : "fp32", i, qseq[i], qpos[i],
                             h, d, g, ref[d]);
            }
        }
    greta_gpu_free(d_kc), greta_gpu_free(d_vc), greta_gpu_free(d_k), greta_gpu_free(d_v), greta_gpu_free(d_pos);
    greta_gpu_free(d_seq), greta_gpu_free(d_q), greta_gpu_free(d_qpos), greta_gpu_free(d_qseq), greta_gpu_free(d_out);
    greta_gpu_free(d_part);
    free(pos), free(seq), free(k), free(v), free(kc), free(vc), free(qpos), free(qseq), free(q), free(out);
    free(kh), free(vh), free(att), free(ref);
}

static void test_attention(void **state)
{
    GPU_OR_SKIP();
    const att_case cases[] = {
        /* heads kv dim ctx  len0 len1 nq0 nq1 split cache */
        {8, 8, 64, 16, 1, 0, 1, 0, 1, GRETA_GPU_KV_F16},           /* first token */
        {8, 4, 8, 64, 37, 0, 1, 0, 3, GRETA_GPU_KV_F16},           /* stories260K heads, GQA 2, split decode */
        {8, 2, 128, 512, 300, 0, 1, 0, 8, GRETA_GPU_KV_F16},       /* GQA 4 */
        {8, 1, 256, 256, 130, 0, 33, 0, 1, GRETA_GPU_KV_F16},      /* GQA 8, prefill of 33, head_dim 256 */
        {4, 2, 64, 600, 513, 0, 64, 0, 1, GRETA_GPU_KV_F16},       /* prefill past 512 */
        {32, 32, 128, 4096, 4096, 0, 1, 0, 16, GRETA_GPU_KV_F16},  /* long context decode (Llama-2-7B shape) */
        {32, 32, 128, 4096, 4000, 0, 1, 0, 1, GRETA_GPU_KV_F16},   /* the same in one chunk */
        {8, 4, 64, 128, 3, 0, 1, 0, 8, GRETA_GPU_KV_F16},          /* more splits than positions */
        {8, 2, 64, 128, 100, 10, 2, 3, 4, GRETA_GPU_KV_F16},       /* two sequences in one batch */
        {8, 4, 8, 64, 37, 0, 1, 0, 3, GRETA_GPU_KV_F32},       /* the fp32 cache (measurements) */
        {32, 32, 128, 2048, 2000, 0, 17, 0, 1, GRETA_GPU_KV_F32},
        {6, 2, 96, 200, 150, 0, 1, 0, 5, GRETA_GPU_KV_F16},        /* head_dim 96: lanes with one dim pair less */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        run_att_case(&cases[i], 77 + i);
}

/* ---- swiglu, gather, top-k ------------------------------------------------------------ */

static void test_swiglu(void **state)
{
    GPU_OR_SKIP();
    greta_error err = {0};
    const int64_t n = 11008, ld = 11008 + 16;
    const int32_t T = 3;
    uint64_t seed = 3;
    float *g = xmalloc(sizeof(float) * (size_t)(ld * T)), *u = xmalloc(sizeof(float) * (size_t)(ld * T));
    for (int64_t i = 0; i < ld * T; i++) {
        g[i] = 12.0f * trng_f(&seed);
        u[i] = trng_f(&seed);
    }
    float *ref = xmalloc(sizeof(float) * (size_t)(ld * T));
    memcpy(ref, g, sizeof(float) * (size_t)(ld * T));
    for (int32_t t = 0; t < T; t++)
        greta_cpu_swiglu(ref + t * ld, u + t * ld, n);
    float *d_g = dev_upload(g, sizeof(float) * (size_t)(ld * T)), *d_u = dev_upload(u, sizeof(float) * (size_t)(ld * T));
    EXPECT_OK(greta_gpu_swiglu(NULL, d_g, d_u, ld, T, n, &err));
    float *y = xmalloc(sizeof(float) * (size_t)(ld * T));
    dev_download(y, d_g, sizeof(float) * (size_t)(ld * T));
    for (int32_t t = 0; t < T; t++)
        for (int64_t i = 0; i < ld; i++) {
            const int64_t j = t * ld + i;
            const float want = i < n ? ref[j] : g[j]; /* padding untouched */
            if (!(fabsf(y[j] - want) <= 1e-6f * fabsf(want) + 1e-30f))
                fail_msg("swiglu: [%d][%lld] = %.9g, cpu %.9g", t, (long long)i, y[j], want);
        }
    greta_gpu_free(d_g), greta_gpu_free(d_u);
    free(g), free(u), free(ref), free(y);
}

static void test_gather(void **state)
{
    GPU_OR_SKIP();
    greta_error err = {0};
    const int64_t n = 300, ld = 301;
    float *x = xmalloc(sizeof(float) * (size_t)(ld * 6));
    for (int64_t i = 0; i < ld * 6; i++)
        x[i] = (float)i;
    const int32_t rows[] = {5, 0, 5, 2};
    float *d_x = dev_upload(x, sizeof(float) * (size_t)(ld * 6));
    int32_t *d_rows = dev_upload(rows, sizeof rows);
    float *d_o = dev_alloc(sizeof(float) * (size_t)(n * 4));
    EXPECT_OK(greta_gpu_gather_rows(NULL, d_x, ld, d_rows, 4, n, d_o, n, &err));
    float *o = xmalloc(sizeof(float) * (size_t)(n * 4));
    dev_download(o, d_o, sizeof(float) * (size_t)(n * 4));
    for (int r = 0; r < 4; r++)
        assert_memory_equal(o + r * n, x + rows[r] * ld, sizeof(float) * (size_t)n);
    greta_gpu_free(d_x), greta_gpu_free(d_rows), greta_gpu_free(d_o);
    free(x), free(o);
}

/* host top-k in the kernel's order */
static int before(float a, int ia, float b, int ib)
{
    if (isnan(a) != isnan(b))
        return !isnan(a);
    if (!isnan(a) && a != b)
        return a > b;
    return ia < ib;
}

static void test_topk(void **state)
{
    GPU_OR_SKIP();
    greta_error err = {0};
    const int64_t n = 32000;
    const int32_t rows = 3;
    uint64_t seed = 17;
    float *x = xmalloc(sizeof(float) * (size_t)(n * rows));
    for (int64_t i = 0; i < n * rows; i++)
        x[i] = 10.0f * trng_f(&seed);
    /* row 0: ties at the top (lower id first), -inf where a thread starts;
     * row 1: NaN and inf; row 2: all equal */
    x[100] = x[7] = x[31999] = 50.0f;
    x[0] = x[1024] = -INFINITY;
    x[n + 3] = NAN;
    x[n + 9] = INFINITY;
    for (int64_t i = 0; i < n; i++)
        x[2 * n + i] = 1.0f;
    float *d_x = dev_upload(x, sizeof(float) * (size_t)(n * rows));
    /* with scratch, k = 1 spreads each row over several blocks (twice: each
     * call must leave the scratch ready for the next) */
    const int64_t scratch_bytes = greta_gpu_topk_scratch_bytes(rows);
    assert_true(scratch_bytes > 0);
    void *d_scratch = dev_alloc((size_t)scratch_bytes);
    EXPECT_OK(greta_gpu_memset(d_scratch, 0, (size_t)scratch_bytes, NULL, &err));
    const int32_t ks[] = {1, 5, 64, 256, 1, 1};
    for (int ki = 0; ki < 6; ki++) {
        const int32_t k = ks[ki];
        void *scratch = ki >= 4 ? d_scratch : NULL;
        int32_t *d_ids = dev_alloc(sizeof(int32_t) * (size_t)(k * rows));
        float *d_vals = dev_alloc(sizeof(float) * (size_t)(k * rows)), *d_lse = dev_alloc(sizeof(float) * rows);
        EXPECT_OK(greta_gpu_topk(NULL, d_x, n, rows, n, k, d_ids, d_vals, d_lse, scratch, &err));
        int32_t *ids = xmalloc(sizeof(int32_t) * (size_t)(k * rows));
        float *vals = xmalloc(sizeof(float) * (size_t)(k * rows)), lse[3];
        dev_download(ids, d_ids, sizeof(int32_t) * (size_t)(k * rows));
        dev_download(vals, d_vals, sizeof(float) * (size_t)(k * rows));
        dev_download(lse, d_lse, sizeof lse);
        for (int32_t r = 0; r < rows; r++) {
            const float *xr = x + r * n;
            /* selection: the j-th best is the best not before the (j-1)-th */
            int prev = -1;
            for (int32_t j = 0; j < k; j++) {
                int best = -1;
                for (int64_t i = 0; i < n; i++)
                    if ((prev < 0 || before(xr[prev], prev, xr[i], (int)i)) &&
                        (best < 0 || before(xr[i], (int)i, xr[best], best)))
                        best = (int)i;
                if (ids[r * k + j] != best)
                    fail_msg("topk k %d row %d rank %d: id %d, want %d", k, r, j, ids[r * k + j], best);
                assert_memory_equal(&vals[r * k + j], &xr[best], sizeof(float));
                prev = best;
            }
            if (r == 0) {
                assert_int_equal(ids[0], 7);
                double m = -INFINITY, s = 0.0;
                for (int64_t i = 0; i < n; i++)
                    m = fmax(m, xr[i]);
                for (int64_t i = 0; i < n; i++)
                    s += exp((double)xr[i] - m);
                if (!(fabs(lse[0] - (m + log(s))) <= 1e-5))
                    fail_msg("topk lse %.9g, want %.9g", lse[0], m + log(s));
            }
            if (r == 1) {
                assert_int_equal(ids[k], 9); /* inf first, NaN never while numbers remain */
                assert_true(isnan(lse[1]));  /* a row with NaN or +inf has no finite lse */
            }
        }
        greta_gpu_free(d_ids), greta_gpu_free(d_vals), greta_gpu_free(d_lse);
        free(ids), free(vals);
    }
    /* k = 1 on a row that is not 16-byte aligned (the element-wise path): x[1 ..] of row 0,
     * in one block and split */
    int32_t *d_id = dev_alloc(sizeof(int32_t));
    float *d_v = dev_alloc(sizeof(float)), *d_l = dev_alloc(sizeof(float));
    double m1 = -INFINITY, s1 = 0.0;
    for (int64_t i = 1; i < n; i++)
        m1 = fmax(m1, x[i]);
    for (int64_t i = 1; i < n; i++)
        s1 += exp((double)x[i] - m1);
    for (int split = 0; split < 2; split++) {
        EXPECT_OK(greta_gpu_topk(NULL, d_x + 1, n, 1, n - 1, 1, d_id, d_v, d_l, split ? d_scratch : NULL, &err));
        int32_t id1;
        float l1;
        dev_download(&id1, d_id, sizeof id1);
        dev_download(&l1, d_l, sizeof l1);
        assert_int_equal(id1, 6); /* x[7], the first of the ties at 50 */
        if (!(fabs(l1 - (m1 + log(s1))) <= 1e-5))
            fail_msg("topk lse (unaligned row, split %d) %.9g, want %.9g", split, l1, m1 + log(s1));
        /* topk1_next: the same results, and the next step's ints (token = the
         * argmax, position + 1, the rest kept) */
        const int32_t ints0[4] = {123, 41, 3, 0};
        int32_t *d_next = dev_upload(ints0, sizeof ints0), next[4], id2;
        float v1, v2, l2;
        dev_download(&v1, d_v, sizeof v1);
        EXPECT_OK(greta_gpu_topk1_next(NULL, d_x + 1, n - 1, d_id, d_v, d_l, split ? d_scratch : NULL, d_next, &err));
        dev_download(&id2, d_id, sizeof id2);
        dev_download(&v2, d_v, sizeof v2);
        dev_download(&l2, d_l, sizeof l2);
        dev_download(next, d_next, sizeof next);
        assert_int_equal(id2, id1);
        assert_memory_equal(&v2, &v1, sizeof v1);
        assert_memory_equal(&l2, &l1, sizeof l1);
        assert_int_equal(next[0], id1);
        assert_int_equal(next[1], 42);
        assert_int_equal(next[2], 3);
        assert_int_equal(next[3], 0);
        assert_int_equal(greta_gpu_topk1_next(NULL, d_x, n, d_id, d_v, d_l, NULL, NULL, &err), GRETA_ERR_INVALID);
        greta_gpu_free(d_next);
    }
    greta_gpu_free(d_scratch);
    greta_gpu_free(d_id), greta_gpu_free(d_v), greta_gpu_free(d_l);
    greta_gpu_free(d_x);
    free(x);
}

/* ---- runtime: graphs, events, errors ----------------------------------------------------- */

static void test_graph_replay(void **state)
{
    GPU_OR_SKIP();
    greta_error err = {0};
    const int64_t n = 1000;
    float *x = xmalloc(sizeof(float) * n), *w = xmalloc(sizeof(float) * n);
    uint64_t seed = 1;
    for (int64_t i = 0; i < n; i++) {
        x[i] = trng_f(&seed);
        w[i] = 1.0f;
    }
    float *d_x = dev_upload(x, sizeof(float) * n), *d_w = dev_upload(w, sizeof(float) * n);
    float *d_y = dev_alloc(sizeof(float) * n);
    greta_gpu_stream *s = NULL;
    greta_gpu_graph *g = NULL;
    greta_gpu_event *e0 = NULL, *e1 = NULL;
    EXPECT_OK(greta_gpu_stream_create(&s, &err));
    EXPECT_OK(greta_gpu_event_create(&e0, &err));
    EXPECT_OK(greta_gpu_event_create(&e1, &err));
    EXPECT_OK(greta_gpu_graph_begin(s, &err));
    EXPECT_OK(greta_gpu_rmsnorm(s, d_x, n, d_w, d_y, n, 1, n, 1e-5f, &err));
    EXPECT_OK(greta_gpu_graph_end(s, &g, &err));
    float *y = xmalloc(sizeof(float) * n);
    dev_download(y, d_y, sizeof(float) * n);
    for (int64_t i = 0; i < n; i++)
        assert_true(y[i] == 0.0f); /* captured, not run */
    EXPECT_OK(greta_gpu_event_record(e0, s, &err));
    EXPECT_OK(greta_gpu_graph_launch(g, s, &err));
    EXPECT_OK(greta_gpu_graph_launch(g, s, &err));
    EXPECT_OK(greta_gpu_event_record(e1, s, &err));
    float ms = -1.0f;
    EXPECT_OK(greta_gpu_event_elapsed(e0, e1, &ms, &err));
    assert_true(ms >= 0.0f);
    EXPECT_OK(greta_gpu_stream_sync(s, &err));
    float *ref = xmalloc(sizeof(float) * n);
    greta_cpu_rmsnorm(ref, x, w, n, 1e-5f);
    dev_download(y, d_y, sizeof(float) * n);
    for (int64_t i = 0; i < n; i++)
        assert_true(fabsf(y[i] - ref[i]) <= 4e-6f * fabsf(ref[i]) + 1e-7f);
    greta_gpu_graph_destroy(&g);
    assert_null(g);
    greta_gpu_event_destroy(&e0);
    greta_gpu_event_destroy(&e1);
    greta_gpu_stream_destroy(&s);
    assert_null(s);
    greta_gpu_free(d_x), greta_gpu_free(d_w), greta_gpu_free(d_y);
    free(x), free(w), free(y), free(ref);
}

static void test_bad_arguments(void **state)
{
    GPU_OR_SKIP();
    greta_error err = {0};
    float *d = dev_alloc(1 << 20);
    /* too many tokens for the GEMV, a type without kernels, a bad k */
    assert_int_equal(greta_gpu_matvec(NULL, GGML_TYPE_F32, d, 64, 4, d, 64, 9, d, 4, 0, &err), GRETA_ERR_INVALID);
    assert_non_null(strstr(err.msg, "matvec"));
    assert_int_equal(greta_gpu_gemm(NULL, GGML_TYPE_Q8_K, d, 256, 4, d, 256, 20, d, 4, 0, &err),
                     GRETA_ERR_UNSUPPORTED);
    assert_non_null(strstr(err.msg, "Q8_K"));
    assert_int_equal(greta_gpu_embed(NULL, GGML_TYPE_Q4_1, d, 256, 4, (int32_t *)d, 1, d, 256, &err),
                     GRETA_ERR_UNSUPPORTED);
    assert_int_equal(greta_gpu_matvec(NULL, GGML_TYPE_Q4_K, d, 100, 4, d, 100, 1, d, 4, 0, &err), GRETA_ERR_INVALID);
    assert_int_equal(greta_gpu_attention(NULL, d, 300 * 2, d, d, GRETA_GPU_KV_F16, (int32_t *)d, (int32_t *)d, 1, 2, 2,
                                         300, 16, 1, NULL, d, 600, &err),
                     GRETA_ERR_INVALID); /* head_dim over 256 */
    assert_int_equal(greta_gpu_attention(NULL, d, 64 * 3, d, d, GRETA_GPU_KV_F16, (int32_t *)d, (int32_t *)d, 1, 3, 2,
                                         64, 16, 1, NULL, d, 192, &err),
                     GRETA_ERR_INVALID); /* 3 heads over 2 kv heads */
    assert_int_equal(greta_gpu_attention(NULL, d, 64, d, d, (greta_gpu_kv_type)7, (int32_t *)d, (int32_t *)d, 1, 1, 1,
                                         64, 16, 1, NULL, d, 64, &err),
                     GRETA_ERR_INVALID); /* no such cache type */
    assert_int_equal(greta_gpu_attention(NULL, d, 256, d, d, GRETA_GPU_KV_F16, (int32_t *)d, (int32_t *)d,
                                         GRETA_GPU_ATTENTION_SPLIT_ROWS / 128 + 1, 128, 128, 2, 16, 2, d, d, 256, &err),
                     GRETA_ERR_INVALID); /* more token-heads than split counters */
    assert_non_null(strstr(err.msg, "token-heads"));
    assert_int_equal(greta_gpu_kv_store(NULL, d, d, 63, 1, (int32_t *)d, (int32_t *)d, d, d, GRETA_GPU_KV_F16, 1, 63,
                                        16, &err),
                     GRETA_ERR_INVALID); /* odd head_dim */
    assert_int_equal(greta_gpu_topk(NULL, d, 300, 1, 300, 257, (int32_t *)d, d, NULL, NULL, &err), GRETA_ERR_INVALID);
    assert_int_equal(greta_gpu_topk(NULL, d, 100, 1, 100, 101, (int32_t *)d, d, NULL, NULL, &err), GRETA_ERR_INVALID);
    assert_int_equal(greta_gpu_rope(NULL, d, 64, 1, 1, 64, 7, d, &err), GRETA_ERR_INVALID);
    /* runtime failures are reported, not fatal: an allocation too large for
     * any GPU, a copy to a null address */
    void *huge = NULL;
    assert_int_equal(greta_gpu_alloc(&huge, (size_t)1 << 60, &err), GRETA_ERR_NOMEM);
    assert_null(huge);
    assert_non_null(strstr(err.msg, "GPU allocation"));
    assert_int_equal(greta_gpu_copy(NULL, d, 64, GRETA_GPU_D2D, NULL, &err), GRETA_ERR_GPU);
    assert_non_null(strstr(err.msg, "gpu_memcpy_async"));
    /* and the device still works afterwards */
    EXPECT_OK(greta_gpu_memset(d, 0, 64, NULL, &err));
    EXPECT_OK(greta_gpu_stream_sync(NULL, &err));
    greta_gpu_free(d);
}

static void test_device_info(void **state)
{
    GPU_OR_SKIP();
    greta_error err = {0};
    greta_gpu_info info;
    EXPECT_OK(greta_gpu_open(0, &info, &err));
    assert_true(info.name[0] != '\0');
    assert_true(info.warp_size == 32 || info.warp_size == 64);
    assert_true(info.total_mem > 0 && info.free_mem <= info.total_mem);
    assert_true(info.sm_count > 0);
    print_message("GPU 0: %s (%s, %s), driver %d, runtime %d, %d SMs, warp %d, %.1f GiB\n", info.name, info.arch,
                  info.api, info.driver_version, info.runtime_version, info.sm_count, info.warp_size,
                  (double)info.total_mem / 1073741824.0);
    assert_int_equal(greta_gpu_open(greta_gpu_device_count(), &info, &err), GRETA_ERR_INVALID);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_device_info),   cmocka_unit_test(test_embed_all_types),
        cmocka_unit_test(test_matvec_all_types), cmocka_unit_test(test_gemm_all_types),
        cmocka_unit_test(test_rmsnorm),       cmocka_unit_test(test_rope),
        cmocka_unit_test(test_attention),     cmocka_unit_test(test_swiglu),
        cmocka_unit_test(test_gather),        cmocka_unit_test(test_topk),
        cmocka_unit_test(test_graph_replay),  cmocka_unit_test(test_bad_arguments),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
