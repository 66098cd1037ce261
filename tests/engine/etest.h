/* etest.h - helpers shared by the engine tests. */
#ifndef GRETA_ETEST_H
#define GRETA_ETEST_H

#include <stdint.h>

#include <cJSON.h>

#include "gpu-worker/engine.h"

/* Parses a JSON file; NULL (and a failed test) when it cannot. */
cJSON *etest_json_load(const char *path);
/* Reads an array of integers into a malloc'ed buffer; *n = its length. */
int32_t *etest_json_ids(const cJSON *arr, int32_t *n);

/* Opens an engine with the given params (0 = default) or fails the test. */
greta_engine *etest_open(const char *path, int32_t n_ctx, int32_t n_seq, int32_t n_batch,
                         int32_t n_threads, int32_t cpu_isa);

#define ETEST_KEEP_TYPE 0xffffffffu

/* Writes a copy of the GGUF file src to dst: every key and tensor, the
 * matrices (2-D tensors) converted to matrix_type (F32: bit-exact
 * dequantization; F16/BF16: dequantized, then rounded to nearest even) unless
 * it is ETEST_KEEP_TYPE, and the f32 key `key` set to `value` when key is
 * not NULL. */
void etest_write_variant(const char *src, const char *dst, uint32_t matrix_type, const char *key,
                         float value);

/* Logits of every position of tokens[0..n) fed in one batch to sequence 0
 * of a fresh engine state: out[n][vocab]. */
void etest_all_logits(greta_engine *e, const int32_t *tokens, int32_t n, float *out);

#endif
