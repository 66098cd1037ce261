/* etest.c - helpers shared by the engine tests (see etest.h). */
#include "etest.h"

#include <stdlib.h>
#include <string.h>

#include "common/gguf.h"
#include "kernels/quant.h"
#include "test_util.h"

cJSON *etest_json_load(const char *path)
{
    size_t n = 0;
    char *text = greta_read_file(path, &n);
    if (!text)
        fail_msg("cannot read %s", path);
    cJSON *j = cJSON_ParseWithLength(text, n);
    free(text);
    if (!j)
        fail_msg("%s is not valid JSON", path);
    return j;
}

int32_t *etest_json_ids(const cJSON *arr, int32_t *n)
{
    assert_true(cJSON_IsArray(arr));
    *n = cJSON_GetArraySize(arr);
    int32_t *ids = malloc(sizeof(int32_t) * (size_t)(*n + 1));
    assert_non_null(ids);
    for (int32_t i = 0; i < *n; i++)
        ids[i] = (int32_t)cJSON_GetArrayItem(arr, i)->valuedouble;
    return ids;
}

greta_engine *etest_open(const char *path, int32_t n_ctx, int32_t n_seq, int32_t n_batch,
                         int32_t n_threads, int32_t cpu_isa)
{
    greta_engine_params p;
    greta_engine_params_default(&p);
    p.n_ctx = n_ctx;
    p.n_seq = n_seq;
    p.n_batch = n_batch;
    p.n_threads = n_threads;
    p.cpu_isa = cpu_isa;
    greta_engine *e = NULL;
    greta_error err = {0};
    if (greta_engine_open(path, &p, &e, &err) != 0)
        fail_msg("engine open %s: %s", path, err.msg);
    return e;
}

void etest_write_variant(const char *src, const char *dst, uint32_t matrix_type, const char *key,
                         float value)
{
    greta_error err = {0};
    gguf_file *f = NULL;
    if (gguf_open(src, &f, &err))
        fail_msg("%s", err.msg);
    gguf_writer *w = gguf_writer_create(&err);
    assert_non_null(w);
    for (uint64_t i = 0; i < gguf_n_kv(f); i++) {
        const gguf_kv *kv = gguf_kv_at(f, i);
        if (key && !strcmp(kv->key, key))
            continue;
        assert_int_equal(gguf_writer_copy_kv(w, kv), 0);
    }
    if (key)
        assert_int_equal(gguf_writer_set_f32(w, key, value), 0);
    for (uint64_t i = 0; i < gguf_n_tensors(f); i++) {
        const gguf_tensor *t = gguf_tensor_at(f, i);
        const uint32_t type = matrix_type == ETEST_KEEP_TYPE || t->n_dims < 2 ? t->type : matrix_type;
        assert_int_equal(gguf_writer_add_tensor(w, t->name, t->n_dims, t->ne, type), 0);
    }
    if (gguf_writer_begin(w, dst, &err))
        fail_msg("%s", err.msg);
    for (uint64_t i = 0; i < gguf_n_tensors(f); i++) {
        const gguf_tensor *t = gguf_tensor_at(f, i);
        if (matrix_type == ETEST_KEEP_TYPE || t->n_dims < 2) {
            assert_int_equal(gguf_writer_write_data(w, t->data, t->nbytes, &err), 0);
            continue;
        }
        float *buf = malloc(t->n_elements * sizeof(float));
        assert_non_null(buf);
        assert_int_equal(greta_dequant_row(t->type, t->data, buf, (int64_t)t->n_elements), 0);
        if (matrix_type == GGML_TYPE_F16 || matrix_type == GGML_TYPE_BF16) {
            uint16_t *h = malloc(t->n_elements * 2);
            assert_non_null(h);
            for (uint64_t k = 0; k < t->n_elements; k++)
                h[k] = matrix_type == GGML_TYPE_F16 ? greta_f32_to_fp16(buf[k]) : greta_f32_to_bf16(buf[k]);
            assert_int_equal(gguf_writer_write_data(w, h, t->n_elements * 2, &err), 0);
            free(h);
        } else {
            assert_int_equal(matrix_type, GGML_TYPE_F32);
            assert_int_equal(gguf_writer_write_data(w, buf, t->n_elements * sizeof(float), &err), 0);
        }
        free(buf);
    }
    if (gguf_writer_finish(w, &err))
        fail_msg("%s", err.msg);
    gguf_writer_destroy(&w);
    gguf_close(&f);
}

void etest_all_logits(greta_engine *e, const int32_t *tokens, int32_t n, float *out)
{
    greta_error err = {0};
    const int32_t vocab = (int32_t)greta_engine_config(e)->vocab_size;
    int32_t *pos = malloc(sizeof(int32_t) * (size_t)n), *seq = calloc((size_t)n, sizeof(int32_t));
    uint8_t *want = malloc((size_t)n);
    assert_true(pos && seq && want);
    for (int32_t i = 0; i < n; i++) {
        pos[i] = i;
        want[i] = 1;
    }
    assert_int_equal(greta_engine_seq_clear(e, 0, &err), 0);
    const greta_batch b = {.n_tokens = n, .tokens = tokens, .pos = pos, .seq = seq, .want_logits = want};
    const float *logits = NULL;
    if (greta_engine_forward(e, &b, &logits, &err))
        fail_msg("forward: %s", err.msg);
    memcpy(out, logits, sizeof(float) * (size_t)n * (size_t)vocab);
    free(pos);
    free(seq);
    free(want);
}
