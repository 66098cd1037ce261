/* matmul.c - products with GGUF weights on the CPU (see matmul.h). */
#include "matmul.h"

#include <assert.h>
#include <string.h>

#include "kernels/quant.h"
#include "ops.h"

int greta_cpu_isa_resolve(greta_cpu_isa want, greta_cpu_isa *out, greta_error *err)
{
    switch (want) {
    case GRETA_CPU_ISA_AUTO:
        *out = greta_cpu_avx2_available() ? GRETA_CPU_ISA_AVX2 : GRETA_CPU_ISA_REF;
        return GRETA_OK;
    case GRETA_CPU_ISA_REF:
        *out = GRETA_CPU_ISA_REF;
        return GRETA_OK;
    case GRETA_CPU_ISA_AVX2:
        if (!greta_cpu_avx2_available())
            return greta_error_set(err, GRETA_ERR_UNSUPPORTED,
                                   "cpu isa: avx2 is not available on this CPU or build");
        *out = GRETA_CPU_ISA_AVX2;
        return GRETA_OK;
    }
    return greta_error_set(err, GRETA_ERR_INVALID, "cpu isa: unknown value %d", (int)want);
}

const char *greta_cpu_isa_name(greta_cpu_isa isa)
{
    switch (isa) {
    case GRETA_CPU_ISA_AUTO: return "auto";
    case GRETA_CPU_ISA_REF: return "ref";
    case GRETA_CPU_ISA_AVX2: return "avx2";
    }
    return "?";
}

int greta_cpu_isa_parse(const char *s, greta_cpu_isa *out, greta_error *err)
{
    if (!strcmp(s, "auto"))
        *out = GRETA_CPU_ISA_AUTO;
    else if (!strcmp(s, "ref"))
        *out = GRETA_CPU_ISA_REF;
    else if (!strcmp(s, "avx2"))
        *out = GRETA_CPU_ISA_AVX2;
    else
        return greta_error_set(err, GRETA_ERR_INVALID,
                               "cpu isa: '%s' is not one of auto, ref, avx2", s);
    return GRETA_OK;
}

int greta_cpu_matmul_supports(uint32_t type)
{
    switch (type) {
    case GGML_TYPE_F32: case GGML_TYPE_F16: case GGML_TYPE_BF16:
    case GGML_TYPE_Q4_0: case GGML_TYPE_Q8_0:
    case GGML_TYPE_Q4_K: case GGML_TYPE_Q5_K: case GGML_TYPE_Q6_K:
        return 1;
    default:
        return 0;
    }
}

int64_t greta_cpu_matmul_work_floats(int64_t n_in, int n_threads)
{
    return n_in * (int64_t)n_threads;
}

void greta_cpu_dequant_row_isa(greta_cpu_isa isa, uint32_t type, const void *row, float *y, int64_t n)
{
    if (isa == GRETA_CPU_ISA_AVX2) {
        greta_cpu_avx2_dequant_row(type, row, y, n);
        return;
    }
    const int rc = greta_dequant_row(type, row, y, n);
    assert(rc == 0);
    (void)rc;
}

float greta_cpu_dot_isa(greta_cpu_isa isa, const float *a, const float *b, int64_t n)
{
    if (isa == GRETA_CPU_ISA_AVX2)
        return greta_cpu_avx2_dot(a, b, n);
    return greta_cpu_dot(a, b, n);
}

typedef struct matmul_job {
    greta_cpu_isa isa;
    float *work;          /* [n_threads][n_in] */
    uint32_t type;
    const uint8_t *w;
    uint64_t row_bytes;
    int64_t n_in, n_out;
    const float *x;       /* [n_tok][n_in] */
    int64_t n_tok;
    float *y;             /* [n_tok][n_out] */
} matmul_job;

/* Rows [begin, end): dequantize each row once into this thread's buffer,
 * then one canonical dot product per token (with AVX2 and a single token,
 * the fused dequantize-and-dot kernel, which gives the same bits). */
static void matmul_rows(void *ctx, int64_t begin, int64_t end, int thread)
{
    const matmul_job *j = ctx;
    float *wbuf = j->work + (int64_t)thread * j->n_in;
    for (int64_t r = begin; r < end; r++) {
        const uint8_t *row = j->w + (uint64_t)r * j->row_bytes;
        if (j->n_tok == 1 && j->isa == GRETA_CPU_ISA_AVX2) { /* decode: one fused pass */
            j->y[r] = greta_cpu_avx2_dot_row(j->type, row, j->x, j->n_in);
            continue;
        }
        const float *wr = wbuf;
        if (j->type == GGML_TYPE_F32 && ((uintptr_t)row % sizeof(float)) == 0)
            wr = (const float *)(const void *)row; /* use the mapping as is */
        else
            greta_cpu_dequant_row_isa(j->isa, j->type, row, wbuf, j->n_in);
        int64_t t = 0;
        if (j->isa == GRETA_CPU_ISA_AVX2)
            for (; t + 2 <= j->n_tok; t += 2) { /* tokens in pairs: the row is loaded once */
                float y2[2];
                greta_cpu_avx2_dot2(wr, j->x + t * j->n_in, j->x + (t + 1) * j->n_in, j->n_in, y2);
                j->y[t * j->n_out + r] = y2[0];
                j->y[(t + 1) * j->n_out + r] = y2[1];
            }
        for (; t < j->n_tok; t++)
            j->y[t * j->n_out + r] = greta_cpu_dot_isa(j->isa, wr, j->x + t * j->n_in, j->n_in);
    }
}

void greta_cpu_matmul(greta_threadpool *pool, greta_cpu_isa isa, float *work,
                      uint32_t type, const void *w, int64_t n_in, int64_t n_out,
                      const float *x, int64_t n_tok, float *y)
{
    assert(isa == GRETA_CPU_ISA_REF || isa == GRETA_CPU_ISA_AVX2);
    assert(greta_cpu_matmul_supports(type));
    const uint64_t row_bytes = ggml_row_bytes(type, (uint64_t)n_in);
    assert(row_bytes != 0);
    matmul_job j = {
        .isa = isa, .work = work, .type = type, .w = w, .row_bytes = row_bytes,
        .n_in = n_in, .n_out = n_out, .x = x, .n_tok = n_tok, .y = y,
    };
    greta_threadpool_run_work(pool, n_out, n_out * n_in * n_tok, matmul_rows, &j);
}
