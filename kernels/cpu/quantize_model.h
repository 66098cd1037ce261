/* quantize_model.h - quantizes a whole GGUF model file (`greta quantize`).
 *
 * Input: a GGUF file whose tensors are all F32, F16 or BF16. Output: the same
 * metadata (every key copied, general.file_type and
 * general.quantization_version = 2 set) and the same tensors in the same
 * order, each converted to the type quant_mix.h gives it. Tensor data is
 * streamed: at most a few MiB of rows are held at a time, converted by
 * n_threads threads (the result does not depend on the thread count).
 */
#ifndef GRETA_CPU_QUANTIZE_MODEL_H
#define GRETA_CPU_QUANTIZE_MODEL_H

#include <stdint.h>
#include <stdio.h>

#include "common/error.h"
#include "quant_mix.h"

typedef struct greta_quantize_summary {
    uint64_t n_tensors;
    uint64_t n_fallback; /* tensors whose row length forced another type */
    uint64_t n_elements; /* all tensors */
    uint64_t in_bytes;   /* tensor data read */
    uint64_t out_bytes;  /* tensor data written (without padding) */
    uint64_t file_size;  /* the output file */
} greta_quantize_summary;

/* Quantizes in_path into out_path (written as out_path.tmp, renamed when
 * complete). log (may be NULL) gets one line per tensor - index, name,
 * shape, "OLD -> NEW", and the reason for a fallback - then the totals.
 * Errors: GRETA_ERR_UNSUPPORTED for a tensor that is not F32/F16/BF16,
 * GRETA_ERR_INVALID for a NaN/inf in a tensor that becomes a block type,
 * and those of gguf_open / the writer; messages name the file and tensor. */
int greta_quantize_file(const char *in_path, const char *out_path, const greta_ftype *ft,
                        int n_threads, FILE *log, greta_quantize_summary *sum, greta_error *err);

#endif
