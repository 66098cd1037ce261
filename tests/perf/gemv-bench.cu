/* gemv-bench.cu - GB/s of the decode GEMV "v3" (kernels/gpu/matvec_f32.cuh)
 * on the Llama-2-7B Q4_K_M decode shapes, for launch-shape variants (rows
 * per group R, register budget MINB blocks per SM) and, as the floor,
 * a kernel that only reads the same bytes. Not a test: it prints numbers
 * for choosing the library's MV3_* constants.
 *
 *   gemv-bench [ITERS]      (default 200 launches per shape and variant)
 *
 * Weights are random bytes with small fp16 scales (speed does not depend
 * on the values); every shape's weights together exceed the L2 cache, and
 * the shapes rotate through 8 copies so each launch reads from DRAM. Time
 * per launch from GPU events around ITERS back-to-back launches.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define BENCH_NAME "gemv-bench"
#include "kernels/gpu/decode_ops.h" /* greta_gpu_quantize_a16 */
#include "kernels/gpu/matvec_f32.cuh"
#include "tests/perf/bench_util.cuh"


#define COPIES 8

typedef struct shape {
    const char *name;
    uint32_t type;
    int64_t k, n;
    int glu; /* gate + up of n rows each */
} shape;

static void fill(uint8_t *h, size_t bytes, uint32_t type, uint64_t *seed)
{
    for (size_t i = 0; i < bytes; i++) {
        *seed = *seed * 6364136223846793005ull + 1442695040888963407ull;
        h[i] = (uint8_t)(*seed >> 56);
    }
    /* fp16 scales of about 1e-3 (no NaN/Inf) */
    const size_t bs = type == GGML_TYPE_Q6_K ? sizeof(block_q6_K) : sizeof(block_q4_K);
    for (size_t b = 0; b + bs <= bytes; b += bs) {
        if (type == GGML_TYPE_Q6_K) {
            h[b + 208] = 0x10, h[b + 209] = 0x14;
        } else {
            h[b + 0] = 0x10, h[b + 1] = 0x14, h[b + 2] = 0x10, h[b + 3] = 0x14;
        }
    }
}

typedef bool (*launch_fn)(const uint8_t *w, const uint8_t *w2, const shape *s, const float *x, float *y);

/* The arguments of one matrix's product in groups of R rows. */
static mv3_args one_matrix(const uint8_t *w, const shape *s, float *y, int R)
{
    mv3_args A;
    memset(&A, 0, sizeof A);
    A.w[0] = w;
    A.y[0] = y;
    A.n[0] = s->n;
    A.ld_y[0] = s->n;
    A.type[0] = s->type;
    A.row_bytes[0] = (int64_t)ggml_row_bytes(s->type, s->k);
    A.end[0] = A.end[1] = A.end[2] = (s->n + R - 1) / R;
    return A;
}

/* R rows per group (gate + up: R/2 of each), register budget MINB blocks per SM. */
template <int R, int MINB>
static bool launch_mv(const uint8_t *w, const uint8_t *w2, const shape *s, const float *x, float *y)
{
    if (s->glu) {
        mv3_glu_kernel<1, false, R / 2, MINB><<<(unsigned)((s->n + R / 2 - 1) / (R / 2)), MV3_BLOCK>>>(
            s->type, w, w2, (int64_t)ggml_row_bytes(s->type, s->k), s->n, x, s->k, s->k, nullptr, 0.0f, y, s->n);
        return true;
    }
    const mv3_args A = one_matrix(w, s, y, R);
    mv3_kernel<1, false, false, R, MINB><<<(unsigned)A.end[0], MV3_BLOCK>>>(A, x, s->k, s->k, 0);
    return true;
}

/* v5's launch with the arithmetic taken out: the same groups, units per
 * thread, weight and activation loads, block reduction and stores, but
 * each loaded word is only XORed in. What it gains over "R8 minB3" is
 * what the arithmetic costs in that structure (a diagnostic, not a GEMV). */
template <uint32_t TYPE, int R>
__device__ __forceinline__ void loads_only_group(const mv_rows &rows, int64_t n_units, const float *x,
                                                 float (&acc)[1][R])
{
    mv_unit<R> U;
    for (int64_t u = threadIdx.x; u < n_units; u += blockDim.x) {
        unit_load<TYPE, R, R>(rows, u, U);
        float4 va[4], vb[4];
        float sxa, sxb, ss = 0.0f;
        load_x2<false>(x, nullptr, u * 32, u * 32 + 16, va, vb, sxa, sxb, ss);
#pragma unroll
        for (int r = 0; r < R; r++) {
            uint32_t h = 0;
#pragma unroll
            for (int j = 0; j < 9; j++)
                h ^= U.w[r][j];
            acc[0][r] += __uint_as_float(h & 0x007fffffu) + sxa + sxb;
        }
    }
}

template <int R>
__global__ void __launch_bounds__(MV3_BLOCK, 3) loads_only_kernel(const GPU_GRID_CONSTANT mv3_args A, const float *x,
                                                                  int64_t k)
{
    __shared__ float sm[MV3_BLOCK / GPU_MIN_WARP][R];
    const mv3_groups<1, false, R> grp{A, 0};
    const int64_t g = blockIdx.x;
    float acc[1][R];
#pragma unroll
    for (int r = 0; r < R; r++)
        acc[0][r] = 0.0f;
    const mv_rows rows = grp.rows(g);
    if (rows.type == GGML_TYPE_Q6_K)
        loads_only_group<GGML_TYPE_Q6_K, R>(rows, k / 32, x, acc);
    else
        loads_only_group<GGML_TYPE_Q4_K, R>(rows, k / 32, x, acc);
    warp_partials<R>(acc[0], sm);
    __syncthreads();
    grp.done(g, mv_partials<R>{sm, (int)(blockDim.x / GRETA_WARP)}, (int)threadIdx.x);
}

static bool launch_loads_only(const uint8_t *w, const uint8_t *w2, const shape *s, const float *x, float *y)
{
    (void)w2;
    if (s->glu)
        return false;
    const mv3_args A = one_matrix(w, s, y, 8);
    loads_only_kernel<8><<<(unsigned)A.end[0], MV3_BLOCK>>>(A, x, s->k);
    return true;
}

/* v6: the products from a16 activations (act16.cuh), the same launch
 * shape as "R8 minB3"; the activations are the bench's x quantized once
 * per row length (g_a16[0]: k 4096, [1]: k 11008) by the library's
 * greta_gpu_quantize_a16. */
static uint8_t *g_a16[2];

template <int R, int MINB>
static bool launch_a16(const uint8_t *w, const uint8_t *w2, const shape *s, const float *x, float *y)
{
    (void)x;
    const uint8_t *a = g_a16[s->k == 4096 ? 0 : 1];
    const int64_t ld_a = a16_row_bytes(s->k);
    if (s->glu) {
        mv3_glu_kernel<1, false, R / 2, MINB, true><<<(unsigned)((s->n + R / 2 - 1) / (R / 2)), MV3_BLOCK>>>(
            s->type, w, w2, (int64_t)ggml_row_bytes(s->type, s->k), s->n, a, ld_a, s->k, nullptr, 0.0f, y, s->n);
        return true;
    }
    const mv3_args A = one_matrix(w, s, y, R);
    mv3_kernel<1, false, false, R, MINB, true><<<(unsigned)A.end[0], MV3_BLOCK>>>(A, a, ld_a, s->k, 0);
    return true;
}

static int g_sms = 132;

/* the read-only floor (bench_util.cuh) on a shape's bytes */
static bool launch_stream(const uint8_t *w, const uint8_t *w2, const shape *s, const float *x, float *y)
{
    (void)x;
    const int64_t n16 = (int64_t)ggml_row_bytes(s->type, s->k) * s->n / 16;
    stream_kernel<<<g_sms * 8, 256>>>((const uint4 *)w, n16, (const uint4 *)w2, s->glu ? n16 : 0, y);
    return true;
}

typedef struct variant {
    const char *name;
    launch_fn fn;
} variant;

int main(int argc, char **argv)
{
    const int iters = argc > 1 ? atoi(argv[1]) : 200;
    if (iters < 1) {
        fprintf(stderr, "usage: gemv-bench [ITERS >= 1]\n");
        return 2;
    }
    const shape shapes[] = {
        {"qkv 12288x4096 Q4_K", GGML_TYPE_Q4_K, 4096, 12288, 0},
        {"wo 4096x4096 Q4_K", GGML_TYPE_Q4_K, 4096, 4096, 0},
        {"gate+up 2x11008x4096 Q4_K", GGML_TYPE_Q4_K, 4096, 11008, 1},
        {"down 4096x11008 Q4_K", GGML_TYPE_Q4_K, 11008, 4096, 0},
        {"down 4096x11008 Q6_K", GGML_TYPE_Q6_K, 11008, 4096, 0},
        {"lm_head 32000x4096 Q6_K", GGML_TYPE_Q6_K, 4096, 32000, 0},
    };
    /* R: rows per group (gate + up: R/2 of each); the library's: R8 minB4 */
    const variant variants[] = {
        {"R8 minB3", launch_mv<8, 3>}, {"R8 minB2", launch_mv<8, 2>}, {"R4 minB4", launch_mv<4, 4>},
        {"R4 minB3", launch_mv<4, 3>}, {"R4 minB2", launch_mv<4, 2>},
        {"a16 R8 minB3", launch_a16<8, 3>}, {"a16 R8 minB4", launch_a16<8, 4>}, {"a16 R8 minB5", launch_a16<8, 5>},
        {"a16 R4 minB6", launch_a16<4, 6>}, {"a16 R4 minB8", launch_a16<4, 8>}, {"a16 R16 minB2", launch_a16<16, 2>},
        {"loads only", launch_loads_only}, {"read only", launch_stream},
    };
    cudaDeviceProp prop;
    CK(cudaGetDeviceProperties(&prop, 0));
    printf("gemv-bench: %s, %d SMs, %d launches per shape and variant\n", prop.name, prop.multiProcessorCount, iters);
    g_sms = prop.multiProcessorCount;
    float *x, *y;
    CK(cudaMalloc(&x, 16384 * sizeof(float)));
    CK(cudaMalloc(&y, 2 * 32000 * sizeof(float)));
    {
        float hx[16384];
        uint64_t sd = 7;
        for (int i = 0; i < 16384; i++) {
            sd = sd * 6364136223846793005ull + 1442695040888963407ull;
            hx[i] = (float)((int)(sd >> 40) % 2001 - 1000) * 1e-3f;
        }
        CK(cudaMemcpy(x, hx, sizeof hx, cudaMemcpyHostToDevice));
    }
    const int64_t a16_k[2] = {4096, 11008};
    for (int i = 0; i < 2; i++) {
        CK(cudaMalloc(&g_a16[i], (size_t)a16_row_bytes(a16_k[i])));
        greta_error err = {};
        if (greta_gpu_quantize_a16(NULL, x, a16_k[i], 1, a16_k[i], g_a16[i], a16_row_bytes(a16_k[i]), &err)) {
            fprintf(stderr, "gemv-bench: %s\n", err.msg);
            return 1;
        }
    }
    printf("| shape | MB |");
    for (size_t v = 0; v < sizeof variants / sizeof *variants; v++)
        printf(" %s us (GB/s) |", variants[v].name);
    printf("\n");
    for (size_t si = 0; si < sizeof shapes / sizeof *shapes; si++) {
        const shape *s = &shapes[si];
        const size_t bytes = ggml_row_bytes(s->type, s->k) * (size_t)s->n;
        const int nm = s->glu ? 2 : 1;
        uint8_t *w[COPIES][2];
        uint8_t *h = (uint8_t *)malloc(bytes);
        uint64_t seed = 1 + si;
        for (int c = 0; c < COPIES; c++)
            for (int m = 0; m < nm; m++) {
                CK(cudaMalloc(&w[c][m], bytes));
                fill(h, bytes, s->type, &seed);
                CK(cudaMemcpy(w[c][m], h, bytes, cudaMemcpyHostToDevice));
            }
        free(h);
        printf("| %s | %.1f |", s->name, (double)bytes * nm / 1e6);
        for (size_t v = 0; v < sizeof variants / sizeof *variants; v++) {
            if (!variants[v].fn(w[0][0], w[0][nm - 1], s, x, y)) {
                printf(" - |");
                continue;
            }
            const auto go = [&](int i) { variants[v].fn(w[i % COPIES][0], w[i % COPIES][nm - 1], s, x, y); };
            for (int i = 0; i < 8; i++) /* warm-up */
                go(i);
            double us;
            if (time_launches(iters, go, &us))
                return 1;
            printf(" %.1f (%.0f) |", us, (double)bytes * nm / (us * 1e-6) / 1e9);
        }
        printf("\n");
        fflush(stdout);
        for (int c = 0; c < COPIES; c++)
            for (int m = 0; m < nm; m++)
                CK(cudaFree(w[c][m]));
    }
    return 0;
}
