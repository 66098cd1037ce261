/* gemm_blas.cu - the vendor alternative of the prefill GEMM (prefill_ops.h):
 * cuBLAS fp16 x fp16 -> fp32 on weights decoded to fp16 by
 * greta_gpu_dequant_f16. Built only for CUDA where CMake found cuBLAS
 * (GRETA_HAVE_GPU_BLAS); the portable path is greta_gpu_gemm_mma.
 *
 * Layout: y[t][r] = sum_i x[t][i] * W[r][i] with row-major W [n][ld_w] and
 * x [n_tok][ld_x] (fp16 bits) and y [n_tok][ld_y] (fp32). In cuBLAS's
 * column-major terms y^T (n x n_tok, ld ld_y) = W (op T of the k x n
 * column-major matrix, ld ld_w) * x^T (k x n_tok, ld ld_x): the "TN" GEMM,
 * fp32 accumulation (CUBLAS_COMPUTE_32F), beta = 1 to accumulate.
 *
 * Compiled to nothing as HIP (tests/gpu/build-check.sh compiles every
 * kernel source for AMD; Debian has no hipBLAS).
 */
#if !defined(__HIP__)
#include <cublas_v2.h>
#include <stdlib.h>

#include "gpu_ops.h"
#include "gpu_port.h"
#include "prefill_ops.h"

struct greta_gpu_blas {
    cublasHandle_t h;
};

static const char *blas_status(cublasStatus_t st)
{
    return cublasGetStatusString(st);
}

extern "C" int greta_gpu_blas_create(greta_gpu_blas **out, greta_error *err)
{
    *out = NULL;
    greta_gpu_blas *b = (greta_gpu_blas *)calloc(1, sizeof *b);
    if (!b)
        return greta_error_set(err, GRETA_ERR_NOMEM, "cuBLAS: out of memory");
    const cublasStatus_t st = cublasCreate(&b->h);
    if (st != CUBLAS_STATUS_SUCCESS) {
        free(b);
        return greta_error_set(err, GRETA_ERR_GPU, "cublasCreate: %s", blas_status(st));
    }
    *out = b;
    return 0;
}

extern "C" void greta_gpu_blas_destroy(greta_gpu_blas **b)
{
    if (!b || !*b)
        return;
    cublasDestroy((*b)->h);
    free(*b);
    *b = NULL;
}

extern "C" int greta_gpu_blas_gemm_f16(greta_gpu_blas *b, greta_gpu_stream *s, const uint16_t *w, int64_t ld_w,
                                       int64_t k, int64_t n, const uint16_t *x, int64_t ld_x, int32_t n_tok, float *y,
                                       int64_t ld_y, int accumulate, greta_error *err)
{
    if (!b || k <= 0 || n <= 0 || n_tok < 0 || ld_w < k || ld_x < k || ld_y < n || k > INT32_MAX || n > INT32_MAX ||
        ld_w > INT32_MAX || ld_x > INT32_MAX || ld_y > INT32_MAX)
        return greta_error_set(err, GRETA_ERR_INVALID, "blas_gemm_f16: bad shape (k %lld, n %lld, tokens %d)",
                               (long long)k, (long long)n, n_tok);
    if (n_tok == 0)
        return 0;
    if (!w || !x || !y)
        return greta_error_set(err, GRETA_ERR_INVALID, "blas_gemm_f16: null operand");
    cublasStatus_t st = cublasSetStream(b->h, (cudaStream_t)s);
    if (st != CUBLAS_STATUS_SUCCESS)
        return greta_error_set(err, GRETA_ERR_GPU, "cublasSetStream: %s", blas_status(st));
    const float alpha = 1.0f, beta = accumulate ? 1.0f : 0.0f;
    st = cublasGemmEx(b->h, CUBLAS_OP_T, CUBLAS_OP_N, (int)n, n_tok, (int)k, &alpha, w, CUDA_R_16F, (int)ld_w, x,
                      CUDA_R_16F, (int)ld_x, &beta, y, CUDA_R_32F, (int)ld_y, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT);
    if (st != CUBLAS_STATUS_SUCCESS)
        return greta_error_set(err, GRETA_ERR_GPU, "cublasGemmEx (%lld x %d x %lld): %s", (long long)n, n_tok,
                               (long long)k, blas_status(st));
    return 0;
}
#endif /* !__HIP__ */
