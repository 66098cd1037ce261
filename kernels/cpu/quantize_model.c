/* quantize_model.c - streaming GGUF -> GGUF quantizer (see quantize_model.h). */
#include "quantize_model.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "common/gguf.h"
#include "kernels/quant.h"
#include "quantize.h"
#include "threads.h"

/* Rows converted per step: about this many input bytes. */
#define CHUNK_BYTES (8u << 20)

typedef struct qjob {
    const gguf_tensor *t;
    uint32_t out_type;
    uint64_t in_row_bytes, out_row_bytes;
    uint64_t row0;     /* first row of this chunk */
    uint8_t *out;      /* chunk output */
    float **tmp;       /* [thread][ne0] */
    int64_t *bad_row;  /* [thread]: first row that failed, or -1 */
} qjob;

static void quant_rows(void *ctx, int64_t begin, int64_t end, int thread)
{
    qjob *j = ctx;
    const int64_t ne0 = (int64_t)j->t->ne[0];
    float *tmp = j->tmp[thread];
    for (int64_t r = begin; r < end; r++) {
        const uint8_t *src = (const uint8_t *)j->t->data + (j->row0 + (uint64_t)r) * j->in_row_bytes;
        greta_dequant_row(j->t->type, src, tmp, ne0);
        if (greta_quantize_row(j->out_type, tmp, j->out + (uint64_t)r * j->out_row_bytes, ne0) != 0) {
            if (j->bad_row[thread] < 0)
                j->bad_row[thread] = (int64_t)j->row0 + r;
            return;
        }
    }
}

static void shape_str(const gguf_tensor *t, char *buf, size_t n)
{
    size_t k = (size_t)snprintf(buf, n, "[");
    for (uint32_t d = 0; d < t->n_dims && k < n; d++)
        k += (size_t)snprintf(buf + k, n - k, "%s%" PRIu64, d ? ", " : "", t->ne[d]);
    if (k < n)
        snprintf(buf + k, n - k, "]");
}

static uint32_t count_layers(const gguf_file *f)
{
    int max = -1;
    for (uint64_t i = 0; i < gguf_n_tensors(f); i++) {
        const int l = greta_tensor_layer(gguf_tensor_at(f, i)->name);
        if (l > max)
            max = l;
    }
    return (uint32_t)(max + 1);
}

/* Converts one tensor chunk by chunk into the writer. */
static int write_tensor(gguf_writer *w, greta_threadpool *pool, const gguf_tensor *t,
                        uint32_t out_type, const char *in_path, greta_error *err)
{
    const int nt = greta_threadpool_size(pool);
    const uint64_t ne0 = t->ne[0], rows = t->n_elements / ne0;
    qjob j = {.t = t, .out_type = out_type};
    j.in_row_bytes = ggml_row_bytes(t->type, ne0);
    j.out_row_bytes = ggml_row_bytes(out_type, ne0);
    uint64_t chunk = CHUNK_BYTES / j.in_row_bytes;
    if (chunk == 0)
        chunk = 1;
    if (chunk > rows)
        chunk = rows;
    int rc = 0;
    j.out = malloc(chunk * j.out_row_bytes);
    j.tmp = calloc((size_t)nt, sizeof *j.tmp);
    j.bad_row = malloc((size_t)nt * sizeof *j.bad_row);
    if (!j.out || !j.tmp || !j.bad_row)
        rc = greta_error_set(err, GRETA_ERR_NOMEM, "tensor '%s': out of memory", t->name);
    for (int i = 0; !rc && i < nt; i++) {
        j.tmp[i] = malloc(ne0 * sizeof(float));
        j.bad_row[i] = -1;
        if (!j.tmp[i])
            rc = greta_error_set(err, GRETA_ERR_NOMEM, "tensor '%s': out of memory", t->name);
    }
    for (uint64_t r = 0; !rc && r < rows; r += chunk) {
        const uint64_t n = rows - r < chunk ? rows - r : chunk;
        j.row0 = r;
        greta_threadpool_run(pool, (int64_t)n, quant_rows, &j);
        int64_t bad = -1;
        for (int i = 0; i < nt; i++)
            if (j.bad_row[i] >= 0 && (bad < 0 || j.bad_row[i] < bad))
                bad = j.bad_row[i];
        if (bad >= 0)
            rc = greta_error_set(err, GRETA_ERR_INVALID,
                                 "%s: tensor '%s' row %" PRId64 " holds a NaN or infinity; "
                                 "it cannot be quantized to %s", in_path, t->name, bad,
                                 ggml_type_name(out_type));
        else
            rc = gguf_writer_write_data(w, j.out, n * j.out_row_bytes, err);
    }
    for (int i = 0; j.tmp && i < nt; i++)
        free(j.tmp[i]);
    free(j.tmp);
    free(j.bad_row);
    free(j.out);
    return rc;
}

static int writer_fail(gguf_writer *w, greta_error *err, const char *path)
{
    const greta_error *we = gguf_writer_error(w);
    return greta_error_set(err, we->code ? we->code : GRETA_ERR_INVALID, "%s: %s", path, we->msg);
}

int greta_quantize_file(const char *in_path, const char *out_path, const greta_ftype *ft,
                        int n_threads, FILE *log, greta_quantize_summary *sum, greta_error *err)
{
    greta_quantize_summary s = {0};
    gguf_file *f = NULL;
    gguf_writer *w = NULL;
    greta_threadpool *pool = NULL;
    uint32_t *types = NULL;
    int rc = gguf_open(in_path, &f, err);
    if (rc)
        return rc;
    const uint64_t nt = gguf_n_tensors(f);
    for (uint64_t i = 0; i < nt; i++) {
        const gguf_tensor *t = gguf_tensor_at(f, i);
        if (t->type != GGML_TYPE_F32 && t->type != GGML_TYPE_F16 && t->type != GGML_TYPE_BF16) {
            rc = greta_error_set(err, GRETA_ERR_UNSUPPORTED,
                                 "%s: tensor '%s' is %s; quantize needs F32, F16 or BF16 tensors "
                                 "(an unquantized model)", in_path, t->name, ggml_type_name(t->type));
            goto out;
        }
    }
    rc = greta_threadpool_create(n_threads, &pool, err);
    if (rc)
        goto out;
    w = gguf_writer_create(err);
    types = calloc(nt ? nt : 1, sizeof *types);
    if (!w || !types) {
        rc = greta_error_set(err, GRETA_ERR_NOMEM, "out of memory");
        goto out;
    }
    for (uint64_t i = 0; i < gguf_n_kv(f); i++) {
        const gguf_kv *kv = gguf_kv_at(f, i);
        if (strcmp(kv->key, "general.file_type") == 0 ||
            strcmp(kv->key, "general.quantization_version") == 0)
            continue;
        if (gguf_writer_copy_kv(w, kv) != 0) {
            rc = writer_fail(w, err, out_path);
            goto out;
        }
    }
    if (gguf_writer_set_u32(w, "general.quantization_version", 2) != 0 ||
        gguf_writer_set_u32(w, "general.file_type", ft->file_type) != 0) {
        rc = writer_fail(w, err, out_path);
        goto out;
    }
    const uint32_t n_layers = count_layers(f);
    for (uint64_t i = 0; i < nt; i++) {
        const gguf_tensor *t = gguf_tensor_at(f, i);
        types[i] = greta_ftype_tensor_type(ft, t->name, t->n_dims, t->ne, n_layers, NULL);
        if (gguf_writer_add_tensor(w, t->name, t->n_dims, t->ne, types[i]) != 0) {
            rc = writer_fail(w, err, out_path);
            goto out;
        }
    }
    rc = gguf_writer_begin(w, out_path, err);
    if (rc)
        goto out;
    for (uint64_t i = 0; i < nt; i++) {
        const gguf_tensor *t = gguf_tensor_at(f, i);
        uint32_t wanted;
        greta_ftype_tensor_type(ft, t->name, t->n_dims, t->ne, n_layers, &wanted);
        if (log) {
            char shape[96];
            shape_str(t, shape, sizeof shape);
            fprintf(log, "[%4" PRIu64 "/%4" PRIu64 "] %-32s %-18s %4s -> %s", i + 1, nt, t->name,
                    shape, ggml_type_name(t->type), ggml_type_name(types[i]));
            if (wanted != types[i])
                fprintf(log, "  (fallback: %s needs rows that are a multiple of %u, ne[0] = %" PRIu64 ")",
                        ggml_type_name(wanted), ggml_type_block_elems(wanted), t->ne[0]);
            fputc('\n', log);
            fflush(log);
        }
        rc = write_tensor(w, pool, t, types[i], in_path, err);
        if (rc)
            goto out;
        s.n_tensors++;
        s.n_fallback += wanted != types[i];
        s.n_elements += t->n_elements;
        s.in_bytes += t->nbytes;
        s.out_bytes += ggml_row_bytes(types[i], t->ne[0]) * (t->n_elements / t->ne[0]);
    }
    s.file_size = gguf_writer_file_size(w);
    rc = gguf_writer_finish(w, err);
    if (rc)
        goto out;
    if (log) {
        const double n = s.n_elements ? (double)s.n_elements : 1.0;
        fprintf(log, "%" PRIu64 " tensors, %" PRIu64 " elements: %.2f MiB (%.2f bpw) -> %.2f MiB "
                     "(%.2f bpw), type %s; file %" PRIu64 " bytes; %" PRIu64 " fallback(s)\n",
                s.n_tensors, s.n_elements, (double)s.in_bytes / 1048576.0, (double)s.in_bytes * 8.0 / n,
                (double)s.out_bytes / 1048576.0, (double)s.out_bytes * 8.0 / n, ft->name, s.file_size,
                s.n_fallback);
    }
    if (sum)
        *sum = s;
out:
    free(types);
    gguf_writer_destroy(&w);
    greta_threadpool_destroy(&pool);
    gguf_close(&f);
    return rc;
}
