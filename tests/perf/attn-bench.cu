/* attn-bench.cu - GB/s of the decode attention (kernels/gpu/attention.cuh)
 * on the Llama-2-7B shape at a long context, for launch-shape variants
 * (threads, positions in flight per group) and split counts, against a kernel that only reads the same bytes. Not a
 * test: it prints numbers for choosing the library's constants.
 *
 *   attn-bench [ITERS] [CONTEXT]   (defaults 200 launches, 4096 positions)
 *
 * 32 heads of 128 dims, fp16 cache; one token at position CONTEXT - 1.
 * The launches rotate through 4 layers' caches (over the L2 size), so each
 * reads from DRAM. Every variant's output is compared with the first's
 * (the largest difference is printed: the variants add in other orders).
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define BENCH_NAME "attn-bench"
#include "kernels/gpu/attention.cuh"
#include "tests/perf/bench_util.cuh"


#define LAYERS 4
#define HEADS 32
#define HD 128

typedef void (*launch_fn)(const dec_args &A);

template <int THREADS, int U> static void launch(const dec_args &A)
{
    attention_dec_kernel<uint16_t, HD / 8, THREADS, U, false>
        <<<dim3(HEADS, 1, A.n_split), THREADS>>>(A);
}

template <int THREADS, int U> static void launch16(const dec_args &A)
{
    attention_dec_kernel<uint16_t, HD / 16, THREADS, U, false, 16>
        <<<dim3(HEADS, 1, A.n_split), THREADS>>>(A);
}

typedef struct variant {
    const char *name;
    launch_fn fn;
} variant;

static uint16_t to_half(float f)
{
    /* values in [-1, 1]: round to nearest through the fp16 bit layout */
    if (f == 0.0f)
        return 0;
    uint16_t s = f < 0 ? 0x8000 : 0;
    float a = fabsf(f);
    int e;
    float m = frexpf(a, &e); /* a = m * 2^e, m in [0.5, 1) */
    int he = e - 1 + 15;
    if (he <= 0)
        return s;
    uint32_t mant = (uint32_t)lrintf((m * 2.0f - 1.0f) * 1024.0f);
    if (mant == 1024) {
        mant = 0;
        he++;
    }
    return (uint16_t)(s | (he << 10) | mant);
}

int main(int argc, char **argv)
{
    const int iters = argc > 1 ? atoi(argv[1]) : 200;
    const int ctx = argc > 2 ? atoi(argv[2]) : 4096;
    if (iters < 1 || ctx < 64 || ctx > 65536) {
        fprintf(stderr, "usage: attn-bench [ITERS >= 1] [CONTEXT 64..65536]\n");
        return 2;
    }
    const int32_t n_ctx = ctx + 33;
    const variant variants[] = {
        {"128x4", launch<128, 4>},          {"128x2", launch<128, 2>},          {"128x8", launch<128, 8>},
        {"128x2 16/lane", launch16<128, 2>}, {"128x4 16/lane", launch16<128, 4>}, {"256x2 16/lane", launch16<256, 2>},
        {"64x4 16/lane", launch16<64, 4>},
    };
    const int splits[] = {12, 16, 17, 22, 33};
    cudaDeviceProp prop;
    CK(cudaGetDeviceProperties(&prop, 0));
    printf("attn-bench: %s, %d SMs, context %d, %d heads x %d, fp16 cache, %d launches per cell\n", prop.name,
           prop.multiProcessorCount, ctx, HEADS, HD, iters);
    const size_t elems = (size_t)HEADS * n_ctx * HD;
    uint16_t *kc[LAYERS], *vc[LAYERS];
    {
        uint16_t *h = (uint16_t *)malloc(elems * sizeof(uint16_t));
        uint64_t sd = 11;
        for (int l = 0; l < LAYERS; l++)
            for (int kv = 0; kv < 2; kv++) {
                for (size_t i = 0; i < elems; i++) {
                    sd = sd * 6364136223846793005ull + 1442695040888963407ull;
                    h[i] = to_half((float)((int)(sd >> 40) % 2001 - 1000) * 1e-3f);
                }
                uint16_t **dst = kv ? &vc[l] : &kc[l];
                CK(cudaMalloc(dst, elems * sizeof(uint16_t)));
                CK(cudaMemcpy(*dst, h, elems * sizeof(uint16_t), cudaMemcpyHostToDevice));
            }
        free(h);
    }
    float *q, *out, *ref, *partial, *y;
    int32_t *ints;
    CK(cudaMalloc(&q, HEADS * HD * sizeof(float)));
    CK(cudaMalloc(&out, HEADS * HD * sizeof(float)));
    CK(cudaMalloc(&ref, HEADS * HD * sizeof(float)));
    CK(cudaMalloc(&y, sizeof(float)));
    const size_t pfl = GRETA_GPU_ATTENTION_SPLIT_ROWS + (size_t)HEADS * 64 * (HD + 2);
    CK(cudaMalloc(&partial, pfl * sizeof(float)));
    CK(cudaMemset(partial, 0, pfl * sizeof(float)));
    CK(cudaMalloc(&ints, 2 * sizeof(int32_t)));
    {
        float hq[HEADS * HD];
        uint64_t sd = 5;
        for (int i = 0; i < HEADS * HD; i++) {
            sd = sd * 6364136223846793005ull + 1442695040888963407ull;
            hq[i] = (float)((int)(sd >> 40) % 2001 - 1000) * 3e-3f;
        }
        CK(cudaMemcpy(q, hq, sizeof hq, cudaMemcpyHostToDevice));
        const int32_t hi[2] = {ctx - 1, 0};
        CK(cudaMemcpy(ints, hi, sizeof hi, cudaMemcpyHostToDevice));
    }
    const double bytes = 2.0 * HEADS * ctx * HD * sizeof(uint16_t);
    printf("| variant |");
    for (size_t s = 0; s < sizeof splits / sizeof *splits; s++)
        printf(" %d splits us (GB/s) |", splits[s]);
    printf(" max diff |\n");
    for (size_t v = 0; v < sizeof variants / sizeof *variants; v++) {
        printf("| %s |", variants[v].name);
        float diff = 0.0f;
        for (size_t s = 0; s < sizeof splits / sizeof *splits; s++) {
            dec_args A = {q, HEADS * HD, kc[0], vc[0], ints, ints + 1, HEADS, HEADS, n_ctx, splits[s], partial, out,
                          HEADS * HD};
            variants[v].fn(A);
            CK(cudaDeviceSynchronize());
            CK(cudaGetLastError());
            {
                float a[HEADS * HD], b[HEADS * HD];
                if (v == 0 && s == 0)
                    CK(cudaMemcpy(ref, out, sizeof a, cudaMemcpyDeviceToDevice));
                CK(cudaMemcpy(a, out, sizeof a, cudaMemcpyDeviceToHost));
                CK(cudaMemcpy(b, ref, sizeof b, cudaMemcpyDeviceToHost));
                for (int i = 0; i < HEADS * HD; i++)
                    diff = fmaxf(diff, fabsf(a[i] - b[i]));
            }
            const auto go = [&](int i) {
                A.kc = kc[i % LAYERS], A.vc = vc[i % LAYERS];
                variants[v].fn(A);
            };
            for (int i = 0; i < 8; i++) /* warm-up */
                go(i);
            double us;
            if (time_launches(iters, go, &us))
                return 1;
            printf(" %.1f (%.0f) |", us, bytes / (us * 1e-6) / 1e9);
        }
        printf(" %.2e |\n", diff);
        fflush(stdout);
    }
    /* the floor, one launch per layer's K and V */
    const int64_t n16 = (int64_t)(bytes / 2 / 16);
    double us;
    if (time_launches(
            iters,
            [&](int i) {
                stream_kernel<<<prop.multiProcessorCount * 8, 256>>>((const uint4 *)kc[i % LAYERS], n16,
                                                                    (const uint4 *)vc[i % LAYERS], n16, y);
            },
            &us))
        return 1;
    printf("| read only | %.1f (%.0f) |\n", us, bytes / (us * 1e-6) / 1e9);
    return 0;
}
