/* gguf_write.c - GGUF v3 writer.
 *
 * Metadata values are serialized when they are set (each key keeps its own
 * little-endian bytes, so general.alignment can be updated in place); the
 * tensor table is laid out when the header is written. Tensor data is streamed
 * through a buffered FILE into "<path>.tmp", which finish() renames to path.
 * Nothing holds more than one caller buffer of tensor data at a time.
 */
#include "gguf.h"

#include <assert.h>
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <unistd.h>

#include "kernels/quant.h"

_Static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__,
               "the GGUF writer copies raw arrays and expects a little-endian host");

typedef struct wbuf {
    uint8_t *p;
    size_t len, cap;
    bool nomem;
} wbuf;

typedef struct wkv {
    char *key;
    wbuf val; /* u32 value type + value */
} wkv;

typedef struct wtensor {
    char *name;
    uint32_t n_dims;
    uint64_t ne[GGUF_MAX_DIMS];
    uint32_t type;
    uint64_t nbytes;
    uint64_t offset; /* set by layout() */
} wtensor;

enum { W_BUILD, W_WRITING, W_DONE, W_FAILED };

struct gguf_writer {
    uint32_t alignment;
    wkv *kvs;
    size_t n_kv, cap_kv;
    wtensor *tensors;
    size_t n_t, cap_t;
    greta_error last;
    int state;
    FILE *fp;
    char *path, *tmp_path;
    uint64_t data_offset, file_size;
    uint64_t pos;      /* logical bytes written so far (holes included) */
    size_t cur;        /* tensor being written */
    uint64_t cur_done; /* its bytes written */
};

/* ---- buffers ------------------------------------------------------------------ */

static void wb_put(wbuf *b, const void *p, size_t n)
{
    if (b->nomem || n == 0)
        return;
    if (b->len + n > b->cap) {
        size_t cap = b->cap ? b->cap : 64;
        while (cap < b->len + n)
            cap *= 2;
        uint8_t *q = realloc(b->p, cap);
        if (!q) {
            b->nomem = true;
            return;
        }
        b->p = q;
        b->cap = cap;
    }
    memcpy(b->p + b->len, p, n);
    b->len += n;
}

static void wb_u32(wbuf *b, uint32_t v) { wb_put(b, &v, 4); }
static void wb_u64(wbuf *b, uint64_t v) { wb_put(b, &v, 8); }
static void wb_str(wbuf *b, const char *s, uint64_t len)
{
    wb_u64(b, len);
    wb_put(b, s, (size_t)len);
}

static uint64_t type_size(uint32_t t)
{
    switch (t) {
    case GGUF_TYPE_UINT8: case GGUF_TYPE_INT8: case GGUF_TYPE_BOOL: return 1;
    case GGUF_TYPE_UINT16: case GGUF_TYPE_INT16: return 2;
    case GGUF_TYPE_UINT32: case GGUF_TYPE_INT32: case GGUF_TYPE_FLOAT32: return 4;
    case GGUF_TYPE_UINT64: case GGUF_TYPE_INT64: case GGUF_TYPE_FLOAT64: return 8;
    default: return 0;
    }
}

static uint64_t align_up(uint64_t x, uint32_t a) { return (x + a - 1) / a * a; }

/* ---- create / destroy --------------------------------------------------------- */

gguf_writer *gguf_writer_create(greta_error *err)
{
    gguf_writer *w = calloc(1, sizeof *w);
    if (!w) {
        greta_error_set(err, GRETA_ERR_NOMEM, "out of memory for the GGUF writer");
        return NULL;
    }
    w->alignment = GGUF_DEFAULT_ALIGNMENT;
    return w;
}

void gguf_writer_destroy(gguf_writer **pw)
{
    if (!pw || !*pw)
        return;
    gguf_writer *w = *pw;
    if (w->fp) {
        fclose(w->fp);
        if (w->tmp_path)
            unlink(w->tmp_path);
    }
    for (size_t i = 0; i < w->n_kv; i++) {
        free(w->kvs[i].key);
        free(w->kvs[i].val.p);
    }
    for (size_t i = 0; i < w->n_t; i++)
        free(w->tensors[i].name);
    free(w->kvs);
    free(w->tensors);
    free(w->path);
    free(w->tmp_path);
    free(w);
    *pw = NULL;
}

const greta_error *gguf_writer_error(const gguf_writer *w) { return &w->last; }

/* ---- metadata ------------------------------------------------------------------- */

__attribute__((format(printf, 3, 4))) static int fail(gguf_writer *w, int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(w->last.msg, sizeof w->last.msg, fmt, ap);
    va_end(ap);
    w->last.code = code;
    return code;
}

static wkv *find_kv(gguf_writer *w, const char *key)
{
    for (size_t i = 0; i < w->n_kv; i++)
        if (strcmp(w->kvs[i].key, key) == 0)
            return &w->kvs[i];
    return NULL;
}

/* Takes ownership of val. replace: update an existing key in place. */
static int put_kv(gguf_writer *w, const char *key, wbuf *val, bool replace)
{
    int rc = 0;
    if (w->state != W_BUILD)
        rc = fail(w, GRETA_ERR_STATE, "key '%s': metadata must be set before gguf_writer_begin", key);
    else if (val->nomem)
        rc = fail(w, GRETA_ERR_NOMEM, "key '%s': out of memory", key);
    else if (key[0] == '\0')
        rc = fail(w, GRETA_ERR_INVALID, "empty key");
    if (!rc && strcmp(key, "general.alignment") == 0) {
        uint32_t t, a = 0;
        memcpy(&t, val->p, 4);
        if (t == GGUF_TYPE_UINT32)
            memcpy(&a, val->p + 4, 4);
        if (t != GGUF_TYPE_UINT32 || a == 0 || (a & (a - 1)) != 0)
            rc = fail(w, GRETA_ERR_INVALID, "key '%s' must be a u32 power of two", key);
        else
            w->alignment = a;
    }
    wkv *old = rc ? NULL : find_kv(w, key);
    if (!rc && old && !replace)
        rc = fail(w, GRETA_ERR_INVALID, "duplicate key '%s'", key);
    if (rc) {
        free(val->p);
        return rc;
    }
    if (old) {
        free(old->val.p);
        old->val = *val;
        return 0;
    }
    if (w->n_kv == w->cap_kv) {
        size_t cap = w->cap_kv ? 2 * w->cap_kv : 16;
        wkv *k = realloc(w->kvs, cap * sizeof *k);
        if (!k) {
            free(val->p);
            return fail(w, GRETA_ERR_NOMEM, "key '%s': out of memory", key);
        }
        w->kvs = k;
        w->cap_kv = cap;
    }
    char *copy = strdup(key);
    if (!copy) {
        free(val->p);
        return fail(w, GRETA_ERR_NOMEM, "key '%s': out of memory", key);
    }
    w->kvs[w->n_kv].key = copy;
    w->kvs[w->n_kv].val = *val;
    w->n_kv++;
    return 0;
}

static int put_scalar(gguf_writer *w, const char *key, gguf_type t, const void *v, size_t n)
{
    wbuf b = {0};
    wb_u32(&b, t);
    wb_put(&b, v, n);
    return put_kv(w, key, &b, false);
}

void gguf_writer_set_alignment(gguf_writer *w, uint32_t alignment)
{
    assert(alignment != 0 && (alignment & (alignment - 1)) == 0);
    assert(w->state == W_BUILD);
    bool have = find_kv(w, "general.alignment") != NULL;
    w->alignment = alignment;
    if (!have && alignment == GGUF_DEFAULT_ALIGNMENT)
        return; /* the default needs no key */
    wbuf b = {0};
    wb_u32(&b, GGUF_TYPE_UINT32);
    wb_u32(&b, alignment);
    put_kv(w, "general.alignment", &b, true);
}

int gguf_writer_set_u32(gguf_writer *w, const char *key, uint32_t v)
{
    return put_scalar(w, key, GGUF_TYPE_UINT32, &v, 4);
}

int gguf_writer_set_i32(gguf_writer *w, const char *key, int32_t v)
{
    return put_scalar(w, key, GGUF_TYPE_INT32, &v, 4);
}

int gguf_writer_set_u64(gguf_writer *w, const char *key, uint64_t v)
{
    return put_scalar(w, key, GGUF_TYPE_UINT64, &v, 8);
}

int gguf_writer_set_f32(gguf_writer *w, const char *key, float v)
{
    return put_scalar(w, key, GGUF_TYPE_FLOAT32, &v, 4);
}

int gguf_writer_set_bool(gguf_writer *w, const char *key, bool v)
{
    uint8_t b = v ? 1 : 0;
    return put_scalar(w, key, GGUF_TYPE_BOOL, &b, 1);
}

int gguf_writer_set_str(gguf_writer *w, const char *key, const char *v)
{
    wbuf b = {0};
    wb_u32(&b, GGUF_TYPE_STRING);
    wb_str(&b, v, strlen(v));
    return put_kv(w, key, &b, false);
}

int gguf_writer_set_arr(gguf_writer *w, const char *key, gguf_type elem_type, const void *data,
                        uint64_t count)
{
    uint64_t sz = type_size(elem_type);
    if (sz == 0)
        return fail(w, GRETA_ERR_INVALID,
                    "key '%s': gguf_writer_set_arr takes fixed-size element types only", key);
    if (elem_type == GGUF_TYPE_BOOL)
        for (uint64_t i = 0; i < count; i++)
            if (((const uint8_t *)data)[i] > 1)
                return fail(w, GRETA_ERR_INVALID, "key '%s': bool element is not 0 or 1", key);
    if (count > SIZE_MAX / sz)
        return fail(w, GRETA_ERR_NOMEM, "key '%s': array too large", key);
    wbuf b = {0};
    wb_u32(&b, GGUF_TYPE_ARRAY);
    wb_u32(&b, elem_type);
    wb_u64(&b, count);
    wb_put(&b, data, (size_t)(count * sz));
    return put_kv(w, key, &b, false);
}

int gguf_writer_set_arr_str(gguf_writer *w, const char *key, const gguf_str *items, uint64_t count)
{
    wbuf b = {0};
    wb_u32(&b, GGUF_TYPE_ARRAY);
    wb_u32(&b, GGUF_TYPE_STRING);
    wb_u64(&b, count);
    for (uint64_t i = 0; i < count; i++)
        wb_str(&b, items[i].ptr, items[i].len);
    return put_kv(w, key, &b, false);
}

/* Serializes a value body (without its type) into b; depth limits nesting. */
static int put_value(wbuf *b, const gguf_value *v, int depth)
{
    uint64_t sz = type_size(v->type);
    if (sz) {
        uint8_t raw[8];
        switch (v->type) {
        case GGUF_TYPE_FLOAT32: {
            float f = (float)v->v.f64;
            memcpy(raw, &f, 4);
            break;
        }
        case GGUF_TYPE_FLOAT64: memcpy(raw, &v->v.f64, 8); break;
        case GGUF_TYPE_INT8: case GGUF_TYPE_INT16: case GGUF_TYPE_INT32: case GGUF_TYPE_INT64:
            memcpy(raw, &v->v.i64, 8); /* little-endian: the low bytes come first */
            break;
        case GGUF_TYPE_BOOL:
            if (v->v.u64 > 1)
                return GRETA_ERR_INVALID;
            memcpy(raw, &v->v.u64, 8);
            break;
        default: memcpy(raw, &v->v.u64, 8); break;
        }
        wb_put(b, raw, (size_t)sz);
        return 0;
    }
    if (v->type == GGUF_TYPE_STRING) {
        wb_str(b, v->v.str.ptr, v->v.str.len);
        return 0;
    }
    if (v->type != GGUF_TYPE_ARRAY || depth >= 8)
        return GRETA_ERR_INVALID;
    gguf_type et = v->v.arr.elem_type;
    uint64_t n = v->v.arr.count;
    wb_u32(b, et);
    wb_u64(b, n);
    uint64_t esz = type_size(et);
    if (esz) {
        if (n > SIZE_MAX / esz)
            return GRETA_ERR_NOMEM;
        wb_put(b, v->v.arr.data, (size_t)(n * esz));
        return 0;
    }
    if (et != GGUF_TYPE_STRING && et != GGUF_TYPE_ARRAY)
        return GRETA_ERR_INVALID;
    for (uint64_t i = 0; i < n; i++) {
        const gguf_value *it = &v->v.arr.items[i];
        if (it->type != et)
            return GRETA_ERR_INVALID;
        int rc = put_value(b, it, depth + 1);
        if (rc)
            return rc;
    }
    return 0;
}

int gguf_writer_set_value(gguf_writer *w, const char *key, const gguf_value *v)
{
    wbuf b = {0};
    wb_u32(&b, v->type);
    int rc = put_value(&b, v, 0);
    if (rc) {
        free(b.p);
        return fail(w, rc, "key '%s': value is malformed (bad type, bool, or nesting over 8)", key);
    }
    return put_kv(w, key, &b, false);
}

int gguf_writer_copy_kv(gguf_writer *w, const gguf_kv *kv)
{
    return gguf_writer_set_value(w, kv->key, &kv->value);
}

/* ---- tensors ---------------------------------------------------------------------- */

int gguf_writer_add_tensor(gguf_writer *w, const char *name, uint32_t n_dims, const uint64_t *ne,
                           uint32_t type)
{
    if (w->state != W_BUILD)
        return fail(w, GRETA_ERR_STATE, "tensor '%s': tensors must be added before gguf_writer_begin",
                    name);
    if (name[0] == '\0')
        return fail(w, GRETA_ERR_INVALID, "empty tensor name");
    if (n_dims < 1 || n_dims > GGUF_MAX_DIMS)
        return fail(w, GRETA_ERR_INVALID, "tensor '%s': n_dims must be 1..4", name);
    if (!ggml_type_supported(type))
        return fail(w, GRETA_ERR_UNSUPPORTED, "tensor '%s': unsupported ggml type", name);
    wtensor t = {.n_dims = n_dims, .type = type};
    uint64_t n = 1;
    for (uint32_t d = 0; d < GGUF_MAX_DIMS; d++) {
        t.ne[d] = d < n_dims ? ne[d] : 1;
        if (t.ne[d] == 0 || t.ne[d] > (uint64_t)INT64_MAX || __builtin_mul_overflow(n, t.ne[d], &n))
            return fail(w, GRETA_ERR_INVALID, "tensor '%s': a dimension is 0 or the size overflows",
                        name);
    }
    uint64_t row = ggml_row_bytes(type, t.ne[0]);
    if (row == 0)
        return fail(w, GRETA_ERR_INVALID, "tensor '%s': ne[0] is not a multiple of the block size",
                    name);
    if (__builtin_mul_overflow(row, n / t.ne[0], &t.nbytes) || t.nbytes > UINT64_MAX / 2)
        return fail(w, GRETA_ERR_INVALID, "tensor '%s': byte size overflows", name);
    for (size_t i = 0; i < w->n_t; i++)
        if (strcmp(w->tensors[i].name, name) == 0)
            return fail(w, GRETA_ERR_INVALID, "duplicate tensor '%s'", name);
    if (w->n_t == w->cap_t) {
        size_t cap = w->cap_t ? 2 * w->cap_t : 64;
        wtensor *p = realloc(w->tensors, cap * sizeof *p);
        if (!p)
            return fail(w, GRETA_ERR_NOMEM, "tensor '%s': out of memory", name);
        w->tensors = p;
        w->cap_t = cap;
    }
    t.name = strdup(name);
    if (!t.name)
        return fail(w, GRETA_ERR_NOMEM, "tensor '%s': out of memory", name);
    w->tensors[w->n_t++] = t;
    return 0;
}

/* ---- layout and writing -------------------------------------------------------------- */

/* Computes offsets, the data offset and the file size for the current state. */
static void layout(gguf_writer *w)
{
    uint64_t h = 24;
    for (size_t i = 0; i < w->n_kv; i++)
        h += 8 + strlen(w->kvs[i].key) + w->kvs[i].val.len;
    for (size_t i = 0; i < w->n_t; i++)
        h += 8 + strlen(w->tensors[i].name) + 4 + 8 * (uint64_t)w->tensors[i].n_dims + 4 + 8;
    w->data_offset = align_up(h, w->alignment);
    uint64_t off = 0;
    for (size_t i = 0; i < w->n_t; i++) {
        w->tensors[i].offset = off;
        off = align_up(off + w->tensors[i].nbytes, w->alignment);
    }
    w->file_size = w->data_offset + off;
}

uint64_t gguf_writer_file_size(const gguf_writer *w)
{
    layout((gguf_writer *)w);
    return w->file_size;
}

static int io_fail(gguf_writer *w, greta_error *err, const char *what)
{
    int e = errno;
    w->state = W_FAILED;
    return greta_error_set(err, GRETA_ERR_IO, "%s: %s failed: %s", w->tmp_path ? w->tmp_path : "?",
                           what, strerror(e));
}

static int put_zeros(gguf_writer *w, uint64_t n, greta_error *err)
{
    static const uint8_t zeros[256];
    while (n > 0) {
        size_t k = n < sizeof zeros ? (size_t)n : sizeof zeros;
        if (fwrite(zeros, 1, k, w->fp) != k)
            return io_fail(w, err, "write");
        n -= k;
        w->pos += k;
    }
    return 0;
}

int gguf_writer_begin(gguf_writer *w, const char *path, greta_error *err)
{
    if (w->state != W_BUILD)
        return greta_error_set(err, GRETA_ERR_STATE, "%s: gguf_writer_begin called twice", path);
    layout(w);
    w->path = strdup(path);
    size_t n = strlen(path) + 5;
    w->tmp_path = malloc(n);
    if (!w->path || !w->tmp_path)
        return greta_error_set(err, GRETA_ERR_NOMEM, "%s: out of memory", path);
    snprintf(w->tmp_path, n, "%s.tmp", path);
    w->fp = fopen(w->tmp_path, "wb");
    if (!w->fp)
        return io_fail(w, err, "create");
    setvbuf(w->fp, NULL, _IOFBF, 1 << 20);
    w->state = W_WRITING;

    wbuf h = {0};
    wb_u32(&h, GGUF_MAGIC);
    wb_u32(&h, 3);
    wb_u64(&h, w->n_t);
    wb_u64(&h, w->n_kv);
    for (size_t i = 0; i < w->n_kv; i++) {
        wb_str(&h, w->kvs[i].key, strlen(w->kvs[i].key));
        wb_put(&h, w->kvs[i].val.p, w->kvs[i].val.len);
    }
    for (size_t i = 0; i < w->n_t; i++) {
        const wtensor *t = &w->tensors[i];
        wb_str(&h, t->name, strlen(t->name));
        wb_u32(&h, t->n_dims);
        for (uint32_t d = 0; d < t->n_dims; d++)
            wb_u64(&h, t->ne[d]);
        wb_u32(&h, t->type);
        wb_u64(&h, t->offset);
    }
    if (h.nomem) {
        free(h.p);
        w->state = W_FAILED;
        return greta_error_set(err, GRETA_ERR_NOMEM, "%s: out of memory for the header", path);
    }
    size_t wrote = fwrite(h.p, 1, h.len, w->fp);
    free(h.p);
    if (wrote != h.len)
        return io_fail(w, err, "write");
    w->pos = h.len;
    return put_zeros(w, w->data_offset - w->pos, err);
}

/* Advances through the tensor data by n bytes, from data (or as a hole when
 * data is NULL), padding after each tensor that completes. */
static int advance(gguf_writer *w, const uint8_t *data, uint64_t n, greta_error *err)
{
    if (w->state != W_WRITING)
        return greta_error_set(err, GRETA_ERR_STATE, "gguf writer: data written outside begin/finish");
    while (n > 0) {
        if (w->cur >= w->n_t) {
            w->state = W_FAILED;
            return greta_error_set(err, GRETA_ERR_INVALID,
                                   "%s: %" PRIu64 " bytes of tensor data more than the %zu tensors declare",
                                   w->path, n, w->n_t);
        }
        const wtensor *t = &w->tensors[w->cur];
        uint64_t take = t->nbytes - w->cur_done;
        if (take > n)
            take = n;
        if (data) {
            if (fwrite(data, 1, (size_t)take, w->fp) != take)
                return io_fail(w, err, "write");
            data += take;
        } else if (fseeko(w->fp, (off_t)take, SEEK_CUR) != 0) {
            return io_fail(w, err, "seek");
        }
        w->pos += take;
        w->cur_done += take;
        n -= take;
        if (w->cur_done == t->nbytes) {
            w->cur++;
            w->cur_done = 0;
            int rc = put_zeros(w, align_up(t->nbytes, w->alignment) - t->nbytes, err);
            if (rc)
                return rc;
        }
    }
    return 0;
}

int gguf_writer_write_data(gguf_writer *w, const void *data, size_t n, greta_error *err)
{
    return advance(w, data, n, err);
}

int gguf_writer_write_zeros(gguf_writer *w, uint64_t n, greta_error *err)
{
    return advance(w, NULL, n, err);
}

int gguf_writer_finish(gguf_writer *w, greta_error *err)
{
    if (w->state != W_WRITING)
        return greta_error_set(err, GRETA_ERR_STATE, "gguf writer: finish without a successful begin");
    if (w->cur < w->n_t) {
        w->state = W_FAILED;
        return greta_error_set(err, GRETA_ERR_INVALID,
                               "%s: tensor data incomplete: tensor '%s' (#%zu of %zu) has %" PRIu64
                               " of %" PRIu64 " bytes",
                               w->path, w->tensors[w->cur].name, w->cur, w->n_t, w->cur_done,
                               w->tensors[w->cur].nbytes);
    }
    if (fflush(w->fp) != 0)
        return io_fail(w, err, "flush");
    /* a trailing hole needs the size set explicitly */
    if (ftruncate(fileno(w->fp), (off_t)w->pos) != 0)
        return io_fail(w, err, "truncate");
    off_t end = ftello(w->fp);
    if (end < 0 || (uint64_t)end != w->file_size || w->pos != w->file_size) {
        w->state = W_FAILED;
        return greta_error_set(err, GRETA_ERR_STATE,
                               "%s: wrote %" PRIu64 " bytes, layout says %" PRIu64, w->path, w->pos,
                               w->file_size);
    }
    FILE *fp = w->fp;
    w->fp = NULL;
    if (fclose(fp) != 0) {
        unlink(w->tmp_path);
        return io_fail(w, err, "close");
    }
    if (rename(w->tmp_path, w->path) != 0) {
        unlink(w->tmp_path);
        return io_fail(w, err, "rename");
    }
    w->state = W_DONE;
    return 0;
}
