/* gemm-bench.cu - prefill kernel benchmark (issue 8), CUDA only.
 *
 *   build-cuda/bin/gemm-bench            (no arguments; text to stdout)
 *
 * 1. GEMM TFLOP/s for the Llama-2-7B projection shapes at n_tok = 512
 *    (n_in x n_out: 4096x4096 = wq/wk/wv/wo, 4096x11008 = gate/up,
 *    11008x4096 = down, 4096x32000 = output) for Q4_K and Q6_K weights:
 *    greta_gpu_gemm_mma (each tile and AUTO, fp32 and fp16 activations),
 *    two bench-only pipeline variants (weights decoded before the MMAs of a
 *    step; after them from prefetched lines), the CUDA-core greta_gpu_gemm
 *    (first shape),
 *    and cuBLAS fp16 GEMM (cublasGemmEx, fp32 accumulation) on weights
 *    already dequantized to fp16 as the roofline reference. cuBLAS is
 *    linked into this program only.
 * 2. A sweep over n_tok (8..512) on 4096x4096 Q4_K: where the tensor-core
 *    kernel overtakes the GEMV and the CUDA-core GEMM.
 * 3. Prefill attention for 32 heads x 128 at 512 queries from position 0
 *    and from position 4096: greta_gpu_flash_attn (KV store fused) against
 *    greta_gpu_kv_store + greta_gpu_attention.
 * 4. A per-layer estimate of pp512 from the measured pieces.
 * `gemm-bench --prefill` instead times only what the backend's prefill
 * paths run for each shape (issue 8): greta_gpu_dequant_f16 alone,
 * cuBLAS on fp16 weights alone, the two together (the cublas path), and
 * greta_gpu_gemm_mma_f16 AUTO (the mma path), greta_gpu_gemm_f16 per tile on
 * the decoded weights and with the decoding (the dqmma path), at 512 and
 * 2048 tokens.
 * Weights are random blocks (speed does not depend on values) in enough
 * copies to exceed the L2 cache, used in rotation. Each figure: 7 runs of
 * 10 calls after a warm-up, mean and min..max of the per-call time.
 */
#include <cublas_v2.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/gpu/gemm_mma.cuh"
#include "kernels/gpu/gpu_ops.h"
#include "kernels/gpu/prefill_ops.h"

#define CK(call)                                                                                    \
    do {                                                                                            \
        cudaError_t e_ = (call);                                                                    \
        if (e_ != cudaSuccess) {                                                                    \
            fprintf(stderr, "%s:%d %s: %s\n", __FILE__, __LINE__, #call, cudaGetErrorString(e_));   \
            exit(1);                                                                                \
        }                                                                                           \
    } while (0)
#define CG(call)                                                                                    \
    do {                                                                                            \
        greta_error err_ = {};                                                                     \
        if ((call) != 0) {                                                                          \
            fprintf(stderr, "%s:%d %s: %s\n", __FILE__, __LINE__, #call, err_.msg);                 \
            exit(1);                                                                                \
        }                                                                                           \
    } while (0)
#define CB(call)                                                                                    \
    do {                                                                                            \
        cublasStatus_t s_ = (call);                                                                 \
        if (s_ != CUBLAS_STATUS_SUCCESS) {                                                          \
            fprintf(stderr, "%s:%d %s: cuBLAS status %d\n", __FILE__, __LINE__, #call, (int)s_);    \
            exit(1);                                                                                \
        }                                                                                           \
    } while (0)

#define RUNS 7
#define CALLS 10

typedef struct timing {
    double mean_us, min_us, max_us;
} timing;

/* Times fn(i) (i = call index, for rotating copies): RUNS x CALLS calls. */
template <typename F> static timing time_it(F fn)
{
    cudaEvent_t a, b;
    CK(cudaEventCreate(&a));
    CK(cudaEventCreate(&b));
    for (int i = 0; i < 3; i++)
        fn(i);
    CK(cudaDeviceSynchronize());
    timing t = {0.0, 1e30, 0.0};
    int call = 0;
    for (int r = 0; r < RUNS; r++) {
        CK(cudaEventRecord(a, 0));
        for (int c = 0; c < CALLS; c++)
            fn(call++);
        CK(cudaEventRecord(b, 0));
        CK(cudaEventSynchronize(b));
        float ms = 0.0f;
        CK(cudaEventElapsedTime(&ms, a, b));
        const double us = 1000.0 * ms / CALLS;
        t.mean_us += us / RUNS;
        t.min_us = fmin(t.min_us, us);
        t.max_us = fmax(t.max_us, us);
    }
    CK(cudaGetLastError());
    CK(cudaEventDestroy(a));
    CK(cudaEventDestroy(b));
    return t;
}

static uint64_t rng_state = 0x1234567887654321ull;
static uint64_t rng(void)
{
    uint64_t z = (rng_state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* Random blocks of `type` with finite, small scales. */
static void random_weights(uint32_t type, int64_t k, int64_t n, uint8_t *out)
{
    const uint64_t rb = ggml_row_bytes(type, (uint64_t)k);
    const size_t total = rb * (size_t)n;
    for (size_t i = 0; i < total; i += 8) {
        const uint64_t v = rng();
        memcpy(out + i, &v, total - i < 8 ? total - i : 8);
    }
    const size_t nb = total / ggml_type_block_bytes(type);
    for (size_t b = 0; b < nb; b++) {
        const float d = 1e-3f * (1.0f + (float)(rng() % 1000) / 1000.0f);
        const greta_fp16 h = greta_f32_to_fp16(d);
        if (type == GGML_TYPE_Q4_K) {
            block_q4_K *q = (block_q4_K *)out + b;
            q->d = h, q->dmin = h;
        } else if (type == GGML_TYPE_Q6_K) {
            block_q6_K *q = (block_q6_K *)out + b;
            q->d = h;
        }
    }
}

/* W (native) -> fp16 [n][k] for cuBLAS: one 8-element group per thread. */
template <uint32_t TYPE>
__global__ void dequant_f16_kernel(const uint8_t *w, int64_t row_bytes, int64_t k, int64_t n, __half *out)
{
    const int64_t g = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    const int64_t per_row = k / 8;
    if (g >= per_row * n)
        return;
    const int64_t r = g / per_row, c = (g % per_row) * 8;
    float v[8];
    gpu_deq<TYPE>::load(w + r * row_bytes, c, v);
    for (int j = 0; j < 8; j++)
        out[r * k + c + j] = __float2half_rn(v[j]);
}

static void dequant_f16(uint32_t type, const void *w, int64_t k, int64_t n, __half *out)
{
    const int64_t groups = k / 8 * n;
    const int64_t rb = (int64_t)ggml_row_bytes(type, (uint64_t)k);
    const unsigned blocks = (unsigned)((groups + 255) / 256);
    if (type == GGML_TYPE_Q4_K)
        dequant_f16_kernel<GGML_TYPE_Q4_K><<<blocks, 256>>>((const uint8_t *)w, rb, k, n, out);
    else
        dequant_f16_kernel<GGML_TYPE_Q6_K><<<blocks, 256>>>((const uint8_t *)w, rb, k, n, out);
    CK(cudaGetLastError());
}

static void print_row(const char *what, timing t, double flop)
{
    printf("  %-46s %9.1f us  (%7.1f..%7.1f)  %7.1f TFLOP/s\n", what, t.mean_us, t.min_us, t.max_us,
           flop / (t.mean_us * 1e-6) / 1e12);
}

/* One weight matrix in `copies` rotating device copies (native and fp16). */
typedef struct wset {
    uint32_t type;
    int64_t k, n;
    int copies;
    void *w[8];
    __half *wh[8];
} wset;

static void wset_make(wset *s, uint32_t type, int64_t k, int64_t n, int with_f16)
{
    s->type = type, s->k = k, s->n = n;
    const size_t bytes = ggml_row_bytes(type, (uint64_t)k) * (size_t)n;
    const size_t hbytes = (size_t)k * n * 2;
    const size_t per_copy = bytes + (with_f16 ? hbytes : 0);
    s->copies = (int)((150u << 20) / per_copy) + 1; /* > L2 (50 MiB on H100) in rotation */
    if (s->copies > 8)
        s->copies = 8;
    uint8_t *h = (uint8_t *)malloc(bytes);
    for (int c = 0; c < s->copies; c++) {
        random_weights(type, k, n, h);
        CK(cudaMalloc(&s->w[c], bytes));
        CK(cudaMemcpy(s->w[c], h, bytes, cudaMemcpyHostToDevice));
        s->wh[c] = NULL;
        if (with_f16) {
            CK(cudaMalloc(&s->wh[c], hbytes));
            dequant_f16(type, s->w[c], k, n, s->wh[c]);
        }
    }
    free(h);
    CK(cudaDeviceSynchronize());
}

static void wset_free(wset *s)
{
    for (int c = 0; c < s->copies; c++) {
        cudaFree(s->w[c]);
        cudaFree(s->wh[c]);
    }
}

static void cublas_gemm(cublasHandle_t h, const __half *wh, const __half *xh, float *y, int64_t k, int64_t n,
                        int32_t n_tok)
{
    /* column-major view: Y^T [n x n_tok] = W^T^T ... = op(W)[n x k] * X^T [k x n_tok] */
    const float one = 1.0f, zero = 0.0f;
    CB(cublasGemmEx(h, CUBLAS_OP_T, CUBLAS_OP_N, (int)n, n_tok, (int)k, &one, wh, CUDA_R_16F, (int)k, xh, CUDA_R_16F,
                    (int)k, &zero, y, CUDA_R_32F, (int)n, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
}

/* max |a - b| / max |b| over n values (device). */
static double rel_diff(const float *d_a, const float *d_b, size_t n)
{
    float *a = (float *)malloc(n * 4), *b = (float *)malloc(n * 4);
    CK(cudaMemcpy(a, d_a, n * 4, cudaMemcpyDeviceToHost));
    CK(cudaMemcpy(b, d_b, n * 4, cudaMemcpyDeviceToHost));
    double md = 0.0, mb = 0.0;
    size_t bad = 0, same = 0;
    for (size_t i = 0; i < n; i++) {
        if (!isfinite(a[i]) || !isfinite(b[i])) {
            bad++;
            continue;
        }
        same += a[i] == b[i];
        md = fmax(md, fabs((double)a[i] - b[i]));
        mb = fmax(mb, fabs((double)b[i]));
    }
    printf("  (max |cuBLAS| %.4g, %zu non-finite, %zu of %zu equal)\n", mb, bad, same, n);
    free(a), free(b);
    return bad ? NAN : mb > 0 ? md / mb : md;
}

/* per-layer times (us) of the 7B shapes for the estimate: AUTO with fp32
 * activations, and the best tile with fp16 activations */
static double t_q4k[4], t_q6k[4], b_q4k[4], b_q6k[4];

static void bench_shapes(cublasHandle_t cb, const float *d_x, const uint16_t *d_xh, float *d_y, float *d_y2)
{
    const int32_t T = 512;
    const int64_t shapes[4][2] = {{4096, 4096}, {4096, 11008}, {11008, 4096}, {4096, 32000}};
    const uint32_t types[2] = {GGML_TYPE_Q4_K, GGML_TYPE_Q6_K};
    printf("\n== GEMM, n_tok = %d (y[512][n_out] = x[512][n_in] W^T) ==\n", T);
    for (int ti = 0; ti < 2; ti++)
        for (int si = 0; si < 4; si++) {
            const uint32_t type = types[ti];
            const int64_t k = shapes[si][0], n = shapes[si][1];
            const double flop = 2.0 * T * k * n;
            wset ws;
            wset_make(&ws, type, k, n, 1);
            printf("%s  n_in %lld  n_out %lld  (%d weight copies, AUTO tile %d)\n", ggml_type_name(type),
                   (long long)k, (long long)n, ws.copies, (int)greta_gpu_gemm_mma_pick(n, T));
            const __half *xh = (const __half *)d_xh;
            timing tc = time_it([&](int i) { cublas_gemm(cb, ws.wh[i % ws.copies], xh, d_y2, k, n, T); });
            print_row("cuBLAS fp16 (dequantized W)", tc, flop);
            timing td = time_it([&](int i) {
                dequant_f16(type, ws.w[i % ws.copies], k, n, ws.wh[i % ws.copies]);
                cublas_gemm(cb, ws.wh[i % ws.copies], xh, d_y2, k, n, T);
            });
            print_row("dequant to fp16 + cuBLAS", td, flop);
            const char *names[GRETA_GPU_MMA_TILE_COUNT] = {"AUTO", "128x128", "64x128", "64x64", "128x128 K64",
                                                           "64x128 K64"};
            double best_f16 = 1e30, auto_f32 = 0.0;
            for (int act = 0; act < 2; act++)
                for (int tile = 0; tile < GRETA_GPU_MMA_TILE_COUNT; tile++) {
                    const void *xin = act ? (const void *)d_xh : (const void *)d_x;
                    timing t = time_it([&](int i) {
                        CG(greta_gpu_gemm_mma_ex(NULL, type, ws.w[i % ws.copies], k, n, xin, (greta_gpu_act)act, k,
                                                 T, d_y, n, 0, (greta_gpu_mma_tile)tile, &err_));
                    });
                    char label[64];
                    snprintf(label, sizeof label, "mma %s, %s x", names[tile], act ? "fp16" : "fp32");
                    print_row(label, t, flop);
                    if (act == 0 && tile == 0)
                        auto_f32 = t.mean_us;
                    if (act == 1 && tile > 0)
                        best_f16 = fmin(best_f16, t.mean_us);
                }
            for (int pipe = MMA_PIPE_EARLY; pipe <= MMA_PIPE_PREFETCH; pipe += 2) {
                timing te = time_it([&](int i) {
                    greta_error err_ = {};
                    const void *w = ws.w[i % ws.copies];
                    const int64_t rb = (int64_t)ggml_row_bytes(type, k);
                    int rc;
                    if (type == GGML_TYPE_Q4_K)
                        rc = pipe == MMA_PIPE_EARLY
                                 ? gemm_mma_launch<GGML_TYPE_Q4_K, uint16_t, 128, 128, 32, MMA_PIPE_EARLY>(
                                       0, w, rb, k, n, d_xh, k, T, d_y, n, 0, &err_)
                                 : gemm_mma_launch<GGML_TYPE_Q4_K, uint16_t, 128, 128, 32, MMA_PIPE_PREFETCH>(
                                       0, w, rb, k, n, d_xh, k, T, d_y, n, 0, &err_);
                    else
                        rc = pipe == MMA_PIPE_EARLY
                                 ? gemm_mma_launch<GGML_TYPE_Q6_K, uint16_t, 128, 128, 32, MMA_PIPE_EARLY>(
                                       0, w, rb, k, n, d_xh, k, T, d_y, n, 0, &err_)
                                 : gemm_mma_launch<GGML_TYPE_Q6_K, uint16_t, 128, 128, 32, MMA_PIPE_PREFETCH>(
                                       0, w, rb, k, n, d_xh, k, T, d_y, n, 0, &err_);
                    if (rc) {
                        fprintf(stderr, "pipeline variant: %s\n", err_.msg);
                        exit(1);
                    }
                });
                print_row(pipe == MMA_PIPE_EARLY ? "mma 128x128, decode early, fp16 x"
                                                 : "mma 128x128, decode late + prefetch, fp16 x",
                          te, flop);
            }
            if (si == 0 && ti == 0) {
                timing tg = time_it([&](int i) {
                    CG(greta_gpu_gemm(NULL, type, ws.w[i % ws.copies], k, n, d_x, k, T, d_y2, n, 0, &err_));
                });
                print_row("gemm.cu fp32 CUDA cores", tg, flop);
            }
            /* agreement of the tensor-core result with cuBLAS on the same weights */
            CG(greta_gpu_gemm_mma(NULL, type, ws.w[0], k, n, d_x, k, T, d_y, n, 0, &err_));
            cublas_gemm(cb, ws.wh[0], xh, d_y2, k, n, T);
            CK(cudaDeviceSynchronize());
            printf("  max |mma - cuBLAS| / max |cuBLAS| = %.2e\n", rel_diff(d_y, d_y2, (size_t)T * n));
            if (si < 3) {
                (ti == 0 ? t_q4k : t_q6k)[si] = auto_f32;
                (ti == 0 ? b_q4k : b_q6k)[si] = best_f16;
            }
            wset_free(&ws);
        }
}

/* --prefill: the pieces of the backend's prefill paths per 7B shape. */
static void bench_prefill_paths(cublasHandle_t cb, const uint16_t *d_xh, float *d_y)
{
    const int64_t shapes[4][2] = {{4096, 4096}, {4096, 11008}, {11008, 4096}, {4096, 32000}};
    const uint32_t types[2] = {GGML_TYPE_Q4_K, GGML_TYPE_Q6_K};
    const int32_t toks[2] = {512, 2048};
    printf("\n== prefill paths (library kernels), y[T][n_out] = x[T][n_in] W^T ==\n");
    for (int ti = 0; ti < 2; ti++)
        for (int si = 0; si < 4; si++) {
            const uint32_t type = types[ti];
            const int64_t k = shapes[si][0], n = shapes[si][1];
            wset ws;
            wset_make(&ws, type, k, n, 1);
            const double gb = ((double)ggml_row_bytes(type, (uint64_t)k) * n + 2.0 * k * n) / 1e9;
            printf("%s  n_in %lld  n_out %lld  (%d weight copies)\n", ggml_type_name(type), (long long)k,
                   (long long)n, ws.copies);
            timing tq = time_it([&](int i) {
                CG(greta_gpu_dequant_f16(NULL, type, ws.w[i % ws.copies], k, n, (uint16_t *)ws.wh[i % ws.copies], k,
                                         &err_));
            });
            printf("  %-46s %9.1f us  (%7.1f..%7.1f)  %7.0f GB/s\n", "greta_gpu_dequant_f16", tq.mean_us, tq.min_us,
                   tq.max_us, gb / (tq.mean_us * 1e-6));
            for (int xi = 0; xi < 2; xi++) {
                const int32_t T = toks[xi];
                const double flop = 2.0 * T * k * n;
                const __half *xh = (const __half *)d_xh;
                char label[80];
                timing tc = time_it([&](int i) { cublas_gemm(cb, ws.wh[i % ws.copies], xh, d_y, k, n, T); });
                snprintf(label, sizeof label, "T %d: cuBLAS fp16 alone", T);
                print_row(label, tc, flop);
                timing td = time_it([&](int i) {
                    CG(greta_gpu_dequant_f16(NULL, type, ws.w[i % ws.copies], k, n, (uint16_t *)ws.wh[i % ws.copies],
                                             k, &err_));
                    cublas_gemm(cb, ws.wh[i % ws.copies], xh, d_y, k, n, T);
                });
                snprintf(label, sizeof label, "T %d: dequant_f16 + cuBLAS (cublas path)", T);
                print_row(label, td, flop);
                timing tm = time_it([&](int i) {
                    CG(greta_gpu_gemm_mma_f16(NULL, type, ws.w[i % ws.copies], k, n, d_xh, k, T, d_y, n, 0, &err_));
                });
                snprintf(label, sizeof label, "T %d: gemm_mma_f16 AUTO (mma path)", T);
                print_row(label, tm, flop);
                for (int tile = GRETA_GPU_MMA_AUTO; tile <= GRETA_GPU_MMA_64x64; tile++) {
                    timing tf = time_it([&](int i) {
                        CG(greta_gpu_gemm_f16(NULL, (const uint16_t *)ws.wh[i % ws.copies], k, k, n, d_xh, k, T, d_y,
                                              n, 0, (greta_gpu_mma_tile)tile, &err_));
                    });
                    static const char *const tn[] = {"AUTO", "128x128", "64x128", "64x64"};
                    snprintf(label, sizeof label, "T %d: gemm_f16 %s alone", T, tn[tile]);
                    print_row(label, tf, flop);
                }
                timing tg = time_it([&](int i) {
                    CG(greta_gpu_dequant_f16(NULL, type, ws.w[i % ws.copies], k, n, (uint16_t *)ws.wh[i % ws.copies],
                                             k, &err_));
                    CG(greta_gpu_gemm_f16(NULL, (const uint16_t *)ws.wh[i % ws.copies], k, k, n, d_xh, k, T, d_y, n,
                                          0, GRETA_GPU_MMA_AUTO, &err_));
                });
                snprintf(label, sizeof label, "T %d: dequant_f16 + gemm_f16 (dqmma path)", T);
                print_row(label, tg, flop);
            }
            wset_free(&ws);
        }
}

/* --f16: launch variants of gemm_f16_kernel (tile, k step, stages,
 * blocks per SM of the register budget) on fp16
 * weights, 7B shapes, 512 tokens; the library's choice is greta_gpu_gemm_f16. */
template <int BM, int BN, int BK, int S, int MINB>
static void f16_variant(const char *name, const __half *wh, int64_t k, int64_t n, const uint16_t *d_xh, float *d_y,
                        int32_t T, const float *ref)
{
    const double flop = 2.0 * T * k * n;
    timing t = time_it([&](int) {
        CG((gemm_f16_launch<BM, BN, BK, S, MINB>(0, (const uint16_t *)wh, k, k, n, d_xh, k, T, d_y, n, 0,
                                                      &err_)));
    });
    CK(cudaDeviceSynchronize());
    char label[96];
    snprintf(label, sizeof label, "T %d: %s", T, name);
    print_row(label, t, flop);
    printf("    max |variant - library| / max |library| = %.2e\n", rel_diff(d_y, ref, (size_t)T * n));
}

static void bench_f16_variants(const uint16_t *d_xh, float *d_y, float *d_y2)
{
    const int64_t shapes[4][2] = {{4096, 4096}, {4096, 11008}, {11008, 4096}, {4096, 32000}};
    const int32_t T = 512;
    printf("\n== gemm_f16 variants (fp16 weights), y[T][n_out] = x[T][n_in] W^T ==\n");
    for (int si = 0; si < 4; si++) {
        const int64_t k = shapes[si][0], n = shapes[si][1];
        wset ws;
        wset_make(&ws, GGML_TYPE_Q4_K, k, n, 1);
        const __half *wh = ws.wh[0];
        printf("n_in %lld  n_out %lld\n", (long long)k, (long long)n);
        CG(greta_gpu_dequant_f16(NULL, GGML_TYPE_Q4_K, ws.w[0], k, n, (uint16_t *)wh, k, &err_));
        CG(greta_gpu_gemm_f16(NULL, (const uint16_t *)wh, k, k, n, d_xh, k, T, d_y2, n, 0, GRETA_GPU_MMA_AUTO, &err_));
        {
            greta_gpu_set_wgmma(0);
            CG(greta_gpu_gemm_f16(NULL, (const uint16_t *)wh, k, k, n, d_xh, k, T, d_y2, n, 0, GRETA_GPU_MMA_AUTO,
                                  &err_));
            greta_gpu_set_wgmma(1);
            const double flop = 2.0 * T * k * n;
            timing t = time_it([&](int) {
                CG(greta_gpu_gemm_f16(NULL, (const uint16_t *)wh, k, k, n, d_xh, k, T, d_y, n, 0, GRETA_GPU_MMA_AUTO,
                                      &err_));
            });
            CK(cudaDeviceSynchronize());
            print_row(greta_gpu_wgmma_available() ? "T 512: wgmma 128x128 k64 s5 (AUTO)" : "T 512: AUTO (no wgmma)", t,
                      flop);
            printf("    max |wgmma - mma.sync AUTO| / max = %.2e\n", rel_diff(d_y, d_y2, (size_t)T * n));
        }
        f16_variant<128, 128, 32, 4, 2>("128x128 k32 s4 (v0)", wh, k, n, d_xh, d_y, T, d_y2);
        f16_variant<128, 128, 64, 3, 1>("128x128 k64 s3", wh, k, n, d_xh, d_y, T, d_y2);
        f16_variant<128, 128, 32, 6, 1>("128x128 k32 s6", wh, k, n, d_xh, d_y, T, d_y2);
        f16_variant<128, 128, 32, 8, 1>("128x128 k32 s8", wh, k, n, d_xh, d_y, T, d_y2);
        f16_variant<128, 128, 64, 4, 1>("128x128 k64 s4", wh, k, n, d_xh, d_y, T, d_y2);
        f16_variant<128, 128, 64, 5, 1>("128x128 k64 s5", wh, k, n, d_xh, d_y, T, d_y2);
        f16_variant<128, 128, 128, 3, 1>("128x128 k128 s3", wh, k, n, d_xh, d_y, T, d_y2);
        f16_variant<64, 128, 64, 4, 2>("64x128 k64 s4 minb2", wh, k, n, d_xh, d_y, T, d_y2);
        f16_variant<64, 128, 64, 3, 2>("64x128 k64 s3 minb2", wh, k, n, d_xh, d_y, T, d_y2);
        f16_variant<64, 128, 32, 8, 1>("64x128 k32 s8", wh, k, n, d_xh, d_y, T, d_y2);
        wset_free(&ws);
    }
}

static void bench_sweep(const float *d_x, const uint16_t *d_xh, float *d_y)
{
    const int64_t k = 4096, n = 4096;
    const uint32_t type = GGML_TYPE_Q4_K;
    printf("\n== n_tok sweep, Q4_K 4096x4096 (us per call) ==\n");
    printf("  %6s %9s %9s %9s %9s %9s %9s %9s %9s %9s\n", "n_tok", "matvec", "gemm.cu", "mma AUTO", "128x128",
           "64x128", "64x64", "128x128K64", "64x128K64", "AUTO f16x");
    wset ws;
    wset_make(&ws, type, k, n, 0);
    const int32_t toks[] = {8, 16, 24, 32, 48, 64, 128, 256, 512};
    for (size_t i = 0; i < sizeof toks / sizeof toks[0]; i++) {
        const int32_t T = toks[i];
        double mv = NAN;
        if (T <= GRETA_GPU_MATVEC_MAX_TOK)
            mv = time_it([&](int c) {
                     CG(greta_gpu_matvec(NULL, type, ws.w[c % ws.copies], k, n, d_x, k, T, d_y, n, 0, &err_));
                 }).mean_us;
        const double gm = time_it([&](int c) {
                              CG(greta_gpu_gemm(NULL, type, ws.w[c % ws.copies], k, n, d_x, k, T, d_y, n, 0, &err_));
                          }).mean_us;
        double mt[GRETA_GPU_MMA_TILE_COUNT];
        for (int tile = 0; tile < GRETA_GPU_MMA_TILE_COUNT; tile++)
            mt[tile] = time_it([&](int c) {
                           CG(greta_gpu_gemm_mma_ex(NULL, type, ws.w[c % ws.copies], k, n, d_x, GRETA_GPU_ACT_F32, k,
                                                    T, d_y, n, 0, (greta_gpu_mma_tile)tile, &err_));
                       }).mean_us;
        const double mh = time_it([&](int c) {
                              CG(greta_gpu_gemm_mma_f16(NULL, type, ws.w[c % ws.copies], k, n, d_xh, k, T, d_y, n, 0,
                                                        &err_));
                          }).mean_us;
        printf("  %6d %9.1f %9.1f %9.1f %9.1f %9.1f %9.1f %9.1f %9.1f %9.1f   (AUTO = tile %d)\n", T, mv, gm, mt[0],
               mt[1], mt[2], mt[3], mt[4], mt[5], mh, (int)greta_gpu_gemm_mma_pick(n, T));
    }
    wset_free(&ws);
}

static double t_att[2];

static void bench_attention(void)
{
    const int32_t H = 32, KV = 32, D = 128, C = 4608, T = 512;
    printf("\n== prefill attention, %d heads x %d, %d queries (us per layer) ==\n", H, D, T);
    const size_t cache = (size_t)KV * C * D;
    uint16_t *kc, *vc;
    float *q, *kn, *vn, *out;
    int32_t *d_pos, *d_seq;
    CK(cudaMalloc(&kc, cache * 2));
    CK(cudaMalloc(&vc, cache * 2));
    CK(cudaMalloc(&q, sizeof(float) * T * H * D));
    CK(cudaMalloc(&kn, sizeof(float) * T * KV * D));
    CK(cudaMalloc(&vn, sizeof(float) * T * KV * D));
    CK(cudaMalloc(&out, sizeof(float) * T * H * D));
    CK(cudaMalloc(&d_pos, sizeof(int32_t) * T));
    CK(cudaMalloc(&d_seq, sizeof(int32_t) * T));
    /* small random values everywhere (speed does not depend on them) */
    {
        float *h = (float *)malloc(sizeof(float) * T * H * D);
        for (int64_t i = 0; i < (int64_t)T * H * D; i++)
            h[i] = (float)((int64_t)(rng() % 2001) - 1000) * 1e-3f;
        CK(cudaMemcpy(q, h, sizeof(float) * T * H * D, cudaMemcpyHostToDevice));
        CK(cudaMemcpy(kn, h, sizeof(float) * T * KV * D, cudaMemcpyHostToDevice));
        CK(cudaMemcpy(vn, h, sizeof(float) * T * KV * D, cudaMemcpyHostToDevice));
        free(h);
        CK(cudaMemset(kc, 0x22, cache * 2));
        CK(cudaMemset(vc, 0x22, cache * 2));
    }
    const int32_t p0s[2] = {0, 4096};
    for (int pi = 0; pi < 2; pi++) {
        const int32_t p0 = p0s[pi];
        int32_t hp[T], hs[T];
        double keys = 0.0;
        for (int t = 0; t < T; t++)
            hp[t] = p0 + t, hs[t] = 0, keys += p0 + t + 1;
        CK(cudaMemcpy(d_pos, hp, sizeof hp, cudaMemcpyHostToDevice));
        CK(cudaMemcpy(d_seq, hs, sizeof hs, cudaMemcpyHostToDevice));
        const double flop = 4.0 * D * H * keys;
        printf("p0 %d (%d keys for the last query)\n", p0, p0 + T);
        timing tf = time_it([&](int) {
            CG(greta_gpu_flash_attn(NULL, q, H * D, kn, vn, KV * D, kc, vc, 0, p0, T, H, KV, D, C, out, H * D, &err_));
        });
        print_row(greta_gpu_flash_attn_uses_mma(D) ? "flash_attn (mma, KV store fused)" : "flash_attn (tiled)", tf,
                  flop);
        timing ta = time_it([&](int) {
            CG(greta_gpu_kv_store(NULL, kn, vn, KV * D, T, d_pos, d_seq, kc, vc, GRETA_GPU_KV_F16, KV, D, C, &err_));
            CG(greta_gpu_attention(NULL, q, H * D, kc, vc, GRETA_GPU_KV_F16, d_pos, d_seq, T, H, KV, D, C, 1, NULL, out, H * D, &err_));
        });
        print_row("kv_store + attention.cu", ta, flop);
        t_att[pi] = tf.mean_us;
    }
    cudaFree(kc), cudaFree(vc), cudaFree(q), cudaFree(kn), cudaFree(vn), cudaFree(out), cudaFree(d_pos);
    cudaFree(d_seq);
}

int main(int argc, char **argv)
{
    const int prefill_only = argc == 2 && !strcmp(argv[1], "--prefill");
    const int f16_only = argc == 2 && !strcmp(argv[1], "--f16");
    if (argc > 1 && !prefill_only && !f16_only) {
        fprintf(stderr, "usage: gemm-bench [--prefill | --f16]\n");
        return 2;
    }
    greta_gpu_info info;
    CG(greta_gpu_open(0, &info, &err_));
    printf("gemm-bench: %s (%s), %d SMs, driver %d, runtime %d\n", info.name, info.arch, info.sm_count,
           info.driver_version, info.runtime_version);
    cublasHandle_t cb;
    CB(cublasCreate(&cb));
    const int64_t kmax = 11008, T = prefill_only ? 2048 : 512;
    float *d_x, *d_y, *d_y2;
    uint16_t *d_xh;
    CK(cudaMalloc(&d_x, sizeof(float) * T * kmax));
    CK(cudaMalloc(&d_xh, sizeof(uint16_t) * T * kmax));
    CK(cudaMalloc(&d_y, sizeof(float) * T * 32000));
    CK(cudaMalloc(&d_y2, sizeof(float) * T * 32000));
    {
        float *h = (float *)malloc(sizeof(float) * T * kmax);
        for (int64_t i = 0; i < T * kmax; i++)
            h[i] = (float)((int64_t)(rng() % 2001) - 1000) * 1e-3f;
        CK(cudaMemcpy(d_x, h, sizeof(float) * T * kmax, cudaMemcpyHostToDevice));
        free(h);
    }
    CG(greta_gpu_f32_to_f16(NULL, d_x, kmax, (int32_t)T, kmax, d_xh, kmax, &err_));
    if (prefill_only) {
        bench_prefill_paths(cb, d_xh, d_y);
        return 0;
    }
    if (f16_only) {
        bench_f16_variants(d_xh, d_y, d_y2);
        return 0;
    }
    bench_shapes(cb, d_x, d_xh, d_y, d_y2);
    bench_sweep(d_x, d_xh, d_y);
    bench_attention();
    /* pp512 estimate: per layer wq wk wv wo (4096x4096), gate up (4096x11008),
     * down (11008x4096); Q4_K_M gives attn_v and ffn_down Q6_K in about half
     * the layers; plus attention; the small ops (norms, rope, swiglu) and
     * the output row are left out. */
    for (int v = 0; v < 2; v++) {
        const double *a = v ? b_q4k : t_q4k, *b = v ? b_q6k : t_q6k;
        const double layer = 3.5 * a[0] + 0.5 * b[0] + 2.0 * a[1] + 0.5 * a[2] + 0.5 * b[2];
        for (int pi = 0; pi < 2; pi++) {
            const double us = 32.0 * (layer + t_att[pi]);
            printf("\nestimate pp512%s (%s): 32 x (%.1f GEMM + %.1f attention) us = %.2f ms -> %.0f tokens/s "
                   "(GEMMs and attention only)\n",
                   pi ? " @ d4096" : "", v ? "best tile, fp16 x" : "AUTO, fp32 x", layer, t_att[pi], us / 1000.0,
                   512.0 / (us * 1e-6));
        }
    }
    cublasDestroy(cb);
    cudaFree(d_x), cudaFree(d_xh), cudaFree(d_y), cudaFree(d_y2);
    return 0;
}
