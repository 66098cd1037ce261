/* gpu_prefill.c - prefill path selection and its matrix products (see
 * gpu_prefill.h and greta_gpu_prefill in gpu_backend.h). */
#include "gpu_prefill.h"

#include <stdlib.h>
#include <string.h>

#include "gpu_backend.h"
#include "kernels/quant.h"

static const char *const prefill_names[] = {"auto", "v1", "mma", "cublas", "dqmma"};

const char *greta_gpu_prefill_name(int p)
{
    return p >= 0 && p < (int)(sizeof prefill_names / sizeof prefill_names[0]) ? prefill_names[p] : NULL;
}

int greta_gpu_prefill_parse(const char *s, int *out, greta_error *err)
{
    for (int i = 0; s && i < (int)(sizeof prefill_names / sizeof prefill_names[0]); i++)
        if (!strcmp(s, prefill_names[i])) {
            *out = i;
            return GRETA_OK;
        }
    return greta_error_set(err, GRETA_ERR_INVALID, "prefill path '%.40s': expected auto, v1, mma, cublas or dqmma",
                           s ? s : "(null)");
}

int gpu_prefill_resolve(int want, int *mode, greta_error *err)
{
    if (want < GRETA_GPU_PREFILL_AUTO || want > GRETA_GPU_PREFILL_DQMMA)
        return greta_error_set(err, GRETA_ERR_INVALID,
                               "gpu backend: prefill %d is not 0..4 (auto, v1, mma, cublas, dqmma)", want);
    if (want == GRETA_GPU_PREFILL_AUTO) {
        const char *e = getenv("GRETA_GPU_PREFILL");
        if (e && *e && greta_gpu_prefill_parse(e, &want, err))
            return greta_error_prefix(err, "environment variable GRETA_GPU_PREFILL");
    }
    if (want == GRETA_GPU_PREFILL_AUTO) {
#if defined(GRETA_HAVE_GPU_BLAS)
        want = GRETA_GPU_PREFILL_CUBLAS;
#else
        want = GRETA_GPU_PREFILL_DQMMA;
#endif
    }
#if !defined(GRETA_HAVE_GPU_BLAS)
    if (want == GRETA_GPU_PREFILL_CUBLAS)
        return greta_error_set(err, GRETA_ERR_UNSUPPORTED,
                               "prefill path cublas: this build has no cuBLAS (CUDA builds that find it only); "
                               "use mma");
#endif
    *mode = want;
    return GRETA_OK;
}

void gpu_prefill_sizes(int mode, int64_t n_batch, int64_t max_k, int64_t max_w, uint64_t *xh_elems,
                       uint64_t *wh_elems)
{
    *xh_elems = *wh_elems = 0;
    if (n_batch <= GRETA_GPU_MATVEC_MAX_TOK || mode == GRETA_GPU_PREFILL_V1)
        return;
    *xh_elems = (uint64_t)n_batch * (uint64_t)max_k;
    if (mode == GRETA_GPU_PREFILL_CUBLAS || mode == GRETA_GPU_PREFILL_DQMMA)
        *wh_elems = (uint64_t)(max_w > max_k ? max_w : max_k);
}

int gpu_prefill_init(gpu_prefill *pf, int mode, uint16_t *xh, int64_t xh_elems, uint16_t *wh, int64_t wh_elems,
                     greta_error *err)
{
    memset(pf, 0, sizeof *pf);
    pf->mode = mode;
    pf->xh = xh, pf->xh_elems = xh_elems;
    pf->wh = wh, pf->wh_elems = wh_elems;
#if defined(GRETA_HAVE_GPU_BLAS)
    if (mode == GRETA_GPU_PREFILL_CUBLAS && wh_elems > 0)
        return greta_gpu_blas_create(&pf->blas, err);
#else
    (void)err;
#endif
    return GRETA_OK;
}

void gpu_prefill_free(gpu_prefill *pf)
{
#if defined(GRETA_HAVE_GPU_BLAS)
    greta_gpu_blas_destroy(&pf->blas);
#endif
    memset(pf, 0, sizeof *pf);
}

/* One fp16 GEMM of the decoded path: cuBLAS (CUBLAS) or ours (DQMMA). */
static int gemm_decoded(gpu_prefill *pf, greta_gpu_stream *s, const uint16_t *w, int64_t ld_w, int64_t k, int64_t n,
                        const uint16_t *x16, int64_t ld_x, int32_t n_tok, float *y, int64_t ld_y, int accumulate,
                        greta_error *err)
{
#if defined(GRETA_HAVE_GPU_BLAS)
    if (pf->mode == GRETA_GPU_PREFILL_CUBLAS)
        return greta_gpu_blas_gemm_f16(pf->blas, s, w, ld_w, k, n, x16, ld_x, n_tok, y, ld_y, accumulate, err);
#else
    (void)pf;
#endif
    return greta_gpu_gemm_f16(s, w, ld_w, k, n, x16, ld_x, n_tok, y, ld_y, accumulate, GRETA_GPU_MMA_AUTO, err);
}

/* Decode W to fp16 (F16 weights are used as they are) and multiply, in
 * slices of rows that fit wh. */
static int matmul_decoded(gpu_prefill *pf, greta_gpu_stream *s, uint32_t type, const void *w, int64_t k, int64_t n,
                          const uint16_t *x16, int64_t ld_x, int32_t n_tok, float *y, int64_t ld_y, int accumulate,
                          greta_error *err)
{
    if (type == GGML_TYPE_F16)
        return gemm_decoded(pf, s, (const uint16_t *)w, k, k, n, x16, ld_x, n_tok, y, ld_y, accumulate, err);
    const int64_t row_bytes = (int64_t)ggml_row_bytes(type, (uint64_t)k);
    const int64_t rows = pf->wh_elems / k;
    for (int64_t r0 = 0; r0 < n; r0 += rows) {
        const int64_t nr = n - r0 < rows ? n - r0 : rows;
        int rc = greta_gpu_dequant_f16(s, type, (const uint8_t *)w + r0 * row_bytes, k, nr, pf->wh, k, err);
        if (!rc)
            rc = gemm_decoded(pf, s, pf->wh, k, k, nr, x16, ld_x, n_tok, y + r0, ld_y, accumulate, err);
        if (rc)
            return rc;
    }
    return GRETA_OK;
}

int gpu_prefill_matmul(gpu_prefill *pf, greta_gpu_stream *s, uint32_t type, const void *w, int64_t k, int64_t n,
                       const float *x, const uint16_t *x16, int64_t ld_x, int32_t n_tok, float *y, int64_t ld_y,
                       int accumulate, greta_error *err)
{
    if (pf->mode == GRETA_GPU_PREFILL_V1 || (!x16 && pf->mode == GRETA_GPU_PREFILL_MMA)) {
        if (!x)
            return greta_error_set(err, GRETA_ERR_INVALID, "prefill matmul: path %s needs fp32 activations",
                                   greta_gpu_prefill_name(pf->mode));
        return pf->mode == GRETA_GPU_PREFILL_V1
                   ? greta_gpu_gemm(s, type, w, k, n, x, ld_x, n_tok, y, ld_y, accumulate, err)
                   : greta_gpu_gemm_mma(s, type, w, k, n, x, ld_x, n_tok, y, ld_y, accumulate, err);
    }
    if (!x16) {
        if ((int64_t)n_tok * k > pf->xh_elems)
            return greta_error_set(err, GRETA_ERR_INVALID, "prefill matmul: %d x %lld activations exceed the scratch",
                                   n_tok, (long long)k);
        int rc = greta_gpu_f32_to_f16(s, x, ld_x, n_tok, k, pf->xh, k, err);
        if (rc)
            return rc;
        x16 = pf->xh;
        ld_x = k;
    }
    if (pf->mode == GRETA_GPU_PREFILL_MMA)
        return greta_gpu_gemm_mma_f16(s, type, w, k, n, x16, ld_x, n_tok, y, ld_y, accumulate, err);
    /* the decoded paths; the GEMM needs k and the strides in whole 8-element pieces */
    const int decoded_ok = pf->wh_elems >= k && k % 8 == 0 && ld_x % 8 == 0 && (uintptr_t)x16 % 16 == 0 &&
                           (type != GGML_TYPE_F16 || (uintptr_t)w % 16 == 0);
#if defined(GRETA_HAVE_GPU_BLAS)
    if (pf->mode == GRETA_GPU_PREFILL_CUBLAS && pf->blas && pf->wh_elems >= k)
        return matmul_decoded(pf, s, type, w, k, n, x16, ld_x, n_tok, y, ld_y, accumulate, err);
#endif
    if (pf->mode == GRETA_GPU_PREFILL_DQMMA && decoded_ok)
        return matmul_decoded(pf, s, type, w, k, n, x16, ld_x, n_tok, y, ld_y, accumulate, err);
    /* CUBLAS without its scratch (cannot happen after init), or a shape the
     * decoded GEMM does not take: the native-block kernel */
    return greta_gpu_gemm_mma_f16(s, type, w, k, n, x16, ld_x, n_tok, y, ld_y, accumulate, err);
}
