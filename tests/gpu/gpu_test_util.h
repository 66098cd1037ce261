/* gpu_test_util.h - small helpers shared by the GPU test programs. */
#ifndef GRETA_GPU_TEST_UTIL_H
#define GRETA_GPU_TEST_UTIL_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "test_util.h"
#include "kernels/cpu/quantize.h"
#include "kernels/gpu/gpu_ops.h"
#include "kernels/quant.h"

/* Skips the calling test, visibly, when this machine has no GPU. */
#define GPU_OR_SKIP()                                                                      \
    do {                                                                                   \
        if (greta_gpu_device_count() == 0) {                                               \
            fprintf(stderr, "SKIPPED: no GPU on this machine (GPU tests run on the GPU "   \
                            "machine: tests/gpu/run-gpu-tests.sh)\n");                     \
            skip();                                                                        \
            return;                                                                        \
        }                                                                                  \
    } while (0)

/* Asserts a greta call returned 0; the call reports into a greta_error
 * named `err` in the calling scope. */
#define EXPECT_OK(call)                                                                    \
    do {                                                                                   \
        int rc_ok_ = (call);                                                               \
        if (rc_ok_ != 0)                                                                   \
            fail_msg("%s failed: %d %s", #call, rc_ok_, err.msg);                          \
    } while (0)

/* Deterministic test randomness. */
static inline uint64_t trng_next(uint64_t *s)
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* Uniform in [-1, 1). */
static inline float trng_f(uint64_t *s)
{
    return (float)((double)(trng_next(s) >> 11) * (2.0 / 9007199254740992.0) - 1.0);
}

static inline void *xmalloc(size_t n)
{
    void *p = malloc(n ? n : 1);
    assert_non_null(p);
    return p;
}

/* A random weight matrix of n rows x k in `type` (quantized from floats,
 * every 7th row an outlier row 160x larger), and its exact fp32 decoding
 * (greta_dequant_row); both malloc'ed, row-major. */
static inline void make_weights(uint32_t type, int64_t k, int64_t n, uint64_t seed, void **q, float **deq)
{
    const uint64_t rb = ggml_row_bytes(type, (uint64_t)k);
    assert_true(rb > 0);
    *q = xmalloc(rb * (size_t)n);
    *deq = xmalloc(sizeof(float) * (size_t)(k * n));
    float *row = xmalloc(sizeof(float) * (size_t)k);
    for (int64_t r = 0; r < n; r++) {
        const float amp = (r % 7 == 3) ? 8.0f : 0.05f;
        for (int64_t i = 0; i < k; i++)
            row[i] = amp * trng_f(&seed);
        assert_int_equal(greta_quantize_row(type, row, (uint8_t *)*q + rb * r, k), 0);
        assert_int_equal(greta_dequant_row(type, (uint8_t *)*q + rb * r, *deq + k * r, k), 0);
    }
    free(row);
}

/* Device copies of host data and back (synchronous). */
static inline void *dev_upload(const void *h, size_t n)
{
    greta_error e = {0};
    void *d = NULL;
    if (greta_gpu_alloc(&d, n, &e) || greta_gpu_copy(d, h, n, GRETA_GPU_H2D, NULL, &e) ||
        greta_gpu_stream_sync(NULL, &e))
        fail_msg("upload of %zu bytes: %s", n, e.msg);
    return d;
}

static inline void *dev_alloc(size_t n)
{
    greta_error e = {0};
    void *d = NULL;
    if (greta_gpu_alloc(&d, n, &e) || greta_gpu_memset(d, 0, n, NULL, &e))
        fail_msg("alloc of %zu bytes: %s", n, e.msg);
    return d;
}

static inline void dev_download(void *h, const void *d, size_t n)
{
    greta_error e = {0};
    if (greta_gpu_copy(h, d, n, GRETA_GPU_D2H, NULL, &e) || greta_gpu_stream_sync(NULL, &e))
        fail_msg("download of %zu bytes: %s", n, e.msg);
}

#endif
