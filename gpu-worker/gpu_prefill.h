/* gpu_prefill.h - the matrix products of the GPU backend's prefill path
 * (issue 8; paths: greta_gpu_prefill in gpu_backend.h). Internal to
 * gpu-worker: gpu_backend.c owns the buffers (inside its scratch
 * allocation) and calls these for batches of more than
 * GRETA_GPU_MATVEC_MAX_TOK tokens.
 *
 *   y[t][r] (+)= sum_i x[t][i] * W[r][i]     (W: n rows of k, native blocks)
 *
 * Scratch (device, fp16 bits):
 *   xh  [n_batch][max k]  the activations rounded to fp16, when the caller
 *                         passes fp32 ones (the prefill layer passes fp16
 *                         rows made by greta_gpu_rmsnorm_f16/swiglu_f16)
 *   wh  CUBLAS only: the largest layer matrix (n_out * n_in) decoded to
 *                    fp16; a matrix with more elements (lm_head) is done in
 *                    slices of wh_elems / k rows.
 */
#ifndef GRETA_GPU_PREFILL_H
#define GRETA_GPU_PREFILL_H

#include <stdint.h>

#include "common/error.h"
#include "kernels/gpu/prefill_ops.h"

typedef struct gpu_prefill {
    int mode;          /* greta_gpu_prefill, resolved (V1, MMA or CUBLAS) */
    uint16_t *xh, *wh; /* device, see above (views into the backend's scratch) */
    int64_t xh_elems, wh_elems;
    greta_gpu_blas *blas; /* CUBLAS */
} gpu_prefill;

/* want (greta_gpu_prefill) -> the path to use: AUTO reads GRETA_GPU_PREFILL
 * (an unknown value: GRETA_ERR_INVALID naming the variable), then the
 * build's default; CUBLAS on a build without it: GRETA_ERR_UNSUPPORTED. */
int gpu_prefill_resolve(int want, int *mode, greta_error *err);

/* Elements of the two scratch buffers for a mode, n_batch tokens, inputs
 * of at most max_k elements and layer matrices of at most max_w elements. */
void gpu_prefill_sizes(int mode, int64_t n_batch, int64_t max_k, int64_t max_w, uint64_t *xh_elems,
                       uint64_t *wh_elems);

/* Binds the scratch and creates what the mode needs (the cuBLAS handle). */
int gpu_prefill_init(gpu_prefill *pf, int mode, uint16_t *xh, int64_t xh_elems, uint16_t *wh, int64_t wh_elems,
                     greta_error *err);
void gpu_prefill_free(gpu_prefill *pf);

/* The product for n_tok > GRETA_GPU_MATVEC_MAX_TOK tokens with the mode's
 * kernels: x16 (fp16 rows of ld_x) when not NULL, else x (fp32 rows of
 * ld_x, rounded into xh first). V1: greta_gpu_gemm on x (x16 unused). */
int gpu_prefill_matmul(gpu_prefill *pf, greta_gpu_stream *s, uint32_t type, const void *w, int64_t k, int64_t n,
                       const float *x, const uint16_t *x16, int64_t ld_x, int32_t n_tok, float *y, int64_t ld_y,
                       int accumulate, greta_error *err);

#endif
