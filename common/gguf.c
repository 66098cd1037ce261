/* gguf.c - GGUF v2/v3 reader: maps the file and validates the header.
 *
 * Parsing walks a cursor over the mapping; every read goes through rd_*()
 * helpers that check the remaining length first and copy with memcpy (no
 * unaligned loads). Tensor data is never touched here: checks use only the
 * tensor table and the file size.
 */
#include "gguf.h"

#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "kernels/quant.h"

#define GGUF_MAX_NESTING 8 /* arrays inside arrays, counting the outer one */

struct gguf_file {
    const uint8_t *base;
    uint64_t size;
    bool mapped;
    char *path;
    uint32_t version;
    uint32_t alignment;
    uint64_t data_offset;
    uint64_t n_kv;
    gguf_kv *kvs;
    uint64_t n_tensors;
    gguf_tensor *tensors;
    uint64_t *kv_sorted;     /* kv indices sorted by key (lookup) */
    uint64_t *tensor_sorted; /* tensor indices sorted by name (lookup) */
    uint64_t *offset_at;     /* while parsing: byte position of each tensor's offset */
    uint64_t *name_at;       /* while parsing: byte position of each tensor's name */
};

const char *gguf_type_name(gguf_type t)
{
    switch (t) {
    case GGUF_TYPE_UINT8: return "u8";
    case GGUF_TYPE_INT8: return "i8";
    case GGUF_TYPE_UINT16: return "u16";
    case GGUF_TYPE_INT16: return "i16";
    case GGUF_TYPE_UINT32: return "u32";
    case GGUF_TYPE_INT32: return "i32";
    case GGUF_TYPE_FLOAT32: return "f32";
    case GGUF_TYPE_BOOL: return "bool";
    case GGUF_TYPE_STRING: return "string";
    case GGUF_TYPE_ARRAY: return "array";
    case GGUF_TYPE_UINT64: return "u64";
    case GGUF_TYPE_INT64: return "i64";
    case GGUF_TYPE_FLOAT64: return "f64";
    default: return "?";
    }
}

/* Size of one element of a fixed-size type, 0 for string/array/unknown. */
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

/* ---- cursor ---------------------------------------------------------------- */

typedef struct cursor {
    const uint8_t *base;
    uint64_t size;
    uint64_t pos;
    greta_error *err;
} cursor;

static uint64_t remaining(const cursor *c) { return c->size - c->pos; }

static int need(cursor *c, uint64_t n, const char *field)
{
    if (n > remaining(c))
        return greta_error_set(c->err, GRETA_ERR_FORMAT,
                               "%s at byte %" PRIu64 ": needs %" PRIu64
                               " bytes but the file ends after %" PRIu64 " (truncated)",
                               field, c->pos, n, remaining(c));
    return 0;
}

static int rd_bytes(cursor *c, void *out, uint64_t n, const char *field)
{
    int rc = need(c, n, field);
    if (rc)
        return rc;
    memcpy(out, c->base + c->pos, (size_t)n);
    c->pos += n;
    return 0;
}

static int rd_u32(cursor *c, uint32_t *v, const char *field)
{
    uint8_t b[4];
    int rc = rd_bytes(c, b, 4, field);
    if (rc)
        return rc;
    *v = (uint32_t)b[0] | (uint32_t)b[1] << 8 | (uint32_t)b[2] << 16 | (uint32_t)b[3] << 24;
    return 0;
}

static int rd_u64(cursor *c, uint64_t *v, const char *field)
{
    uint8_t b[8];
    int rc = rd_bytes(c, b, 8, field);
    if (rc)
        return rc;
    uint64_t x = 0;
    for (int i = 7; i >= 0; i--)
        x = x << 8 | b[i];
    *v = x;
    return 0;
}

/* Reads a string; on success s points into the mapping. */
static int rd_str(cursor *c, gguf_str *s, const char *field)
{
    uint64_t at = c->pos;
    uint64_t len;
    int rc = rd_u64(c, &len, field);
    if (rc)
        return rc;
    if (len > remaining(c))
        return greta_error_set(c->err, GRETA_ERR_FORMAT,
                               "%s: string length %" PRIu64 " at byte %" PRIu64
                               " exceeds the %" PRIu64 " bytes left in the file",
                               field, len, at, remaining(c));
    s->ptr = (const char *)c->base + c->pos;
    s->len = len;
    c->pos += len;
    return 0;
}

/* NUL-terminated copy of a key or tensor name (no empty names, no NUL inside). */
static int dup_name(cursor *c, const gguf_str *s, uint64_t at, const char *what, char **out)
{
    if (s->len == 0)
        return greta_error_set(c->err, GRETA_ERR_FORMAT, "%s at byte %" PRIu64 " is empty", what, at);
    if (memchr(s->ptr, 0, (size_t)s->len))
        return greta_error_set(c->err, GRETA_ERR_FORMAT,
                               "%s at byte %" PRIu64 " contains a NUL byte", what, at);
    char *p = malloc((size_t)s->len + 1);
    if (!p)
        return greta_error_set(c->err, GRETA_ERR_NOMEM, "%s at byte %" PRIu64 ": out of memory",
                               what, at);
    memcpy(p, s->ptr, (size_t)s->len);
    p[s->len] = '\0';
    *out = p;
    return 0;
}

/* ---- values ------------------------------------------------------------------ */

static void value_free(gguf_value *v)
{
    if (v->type != GGUF_TYPE_ARRAY || !v->v.arr.items)
        return;
    if (v->v.arr.elem_type == GGUF_TYPE_ARRAY)
        for (uint64_t i = 0; i < v->v.arr.count; i++)
            value_free(&v->v.arr.items[i]);
    free(v->v.arr.items);
    v->v.arr.items = NULL;
}

static int check_type(cursor *c, uint32_t t, uint64_t at, const char *key)
{
    if (t >= GGUF_TYPE_COUNT)
        return greta_error_set(c->err, GRETA_ERR_FORMAT,
                               "key '%s': value type %" PRIu32 " at byte %" PRIu64
                               " is not a GGUF value type (0..12)",
                               key, t, at);
    return 0;
}

/* Reads a value of type t (already read) at the cursor. depth counts arrays. */
static int rd_value(cursor *c, uint32_t t, gguf_value *v, const char *key, int depth)
{
    char field[96];
    uint64_t at = c->pos;
    v->type = (gguf_type)t;
    uint64_t sz = type_size(t);
    if (sz) {
        uint8_t b[8] = {0};
        snprintf(field, sizeof field, "%s value", gguf_type_name((gguf_type)t));
        int rc = need(c, sz, field);
        if (rc)
            return greta_error_prefix(c->err, "key '%s'", key);
        memcpy(b, c->base + c->pos, (size_t)sz);
        c->pos += sz;
        uint64_t u = 0;
        for (int i = (int)sz - 1; i >= 0; i--)
            u = u << 8 | b[i];
        switch (t) {
        case GGUF_TYPE_UINT8: case GGUF_TYPE_UINT16: case GGUF_TYPE_UINT32: case GGUF_TYPE_UINT64:
            v->v.u64 = u;
            break;
        case GGUF_TYPE_BOOL:
            if (u > 1)
                return greta_error_set(c->err, GRETA_ERR_FORMAT,
                                       "key '%s': bool value %" PRIu64 " at byte %" PRIu64
                                       " is not 0 or 1",
                                       key, u, at);
            v->v.u64 = u;
            break;
        case GGUF_TYPE_INT8: v->v.i64 = (int8_t)(uint8_t)u; break;
        case GGUF_TYPE_INT16: v->v.i64 = (int16_t)(uint16_t)u; break;
        case GGUF_TYPE_INT32: v->v.i64 = (int32_t)(uint32_t)u; break;
        case GGUF_TYPE_INT64: memcpy(&v->v.i64, &u, 8); break;
        case GGUF_TYPE_FLOAT32: {
            uint32_t u32 = (uint32_t)u;
            float f;
            memcpy(&f, &u32, 4);
            v->v.f64 = f;
            break;
        }
        case GGUF_TYPE_FLOAT64: memcpy(&v->v.f64, &u, 8); break;
        default: break;
        }
        return 0;
    }
    if (t == GGUF_TYPE_STRING) {
        snprintf(field, sizeof field, "key '%.40s' string", key);
        return rd_str(c, &v->v.str, field);
    }
    /* array */
    if (depth >= GGUF_MAX_NESTING)
        return greta_error_set(c->err, GRETA_ERR_LIMIT,
                               "key '%s': array at byte %" PRIu64
                               " nests deeper than %d levels",
                               key, at, GGUF_MAX_NESTING);
    uint32_t et;
    uint64_t count;
    int rc = rd_u32(c, &et, "array element type");
    if (!rc)
        rc = rd_u64(c, &count, "array count");
    if (rc)
        return greta_error_prefix(c->err, "key '%s'", key);
    if (et >= GGUF_TYPE_COUNT)
        return greta_error_set(c->err, GRETA_ERR_FORMAT,
                               "key '%s': array element type %" PRIu32 " at byte %" PRIu64
                               " is not a GGUF value type (0..12)",
                               key, et, at);
    v->v.arr.elem_type = (gguf_type)et;
    v->v.arr.count = 0;
    v->v.arr.items = NULL;
    v->v.arr.data = c->base + c->pos;
    /* smallest encoding of one element: fixed size, 8 (string), 12 (array) */
    uint64_t min_elem = sz = type_size(et);
    if (et == GGUF_TYPE_STRING)
        min_elem = 8;
    else if (et == GGUF_TYPE_ARRAY)
        min_elem = 12;
    if (count > remaining(c) / min_elem)
        return greta_error_set(c->err, GRETA_ERR_FORMAT,
                               "key '%s': array count %" PRIu64 " at byte %" PRIu64
                               " (elements of %s) exceeds what the %" PRIu64
                               " bytes left in the file can hold",
                               key, count, at + 4, gguf_type_name((gguf_type)et), remaining(c));
    if (sz) {
        if (et == GGUF_TYPE_BOOL)
            for (uint64_t i = 0; i < count; i++)
                if (c->base[c->pos + i] > 1)
                    return greta_error_set(c->err, GRETA_ERR_FORMAT,
                                           "key '%s': bool element %" PRIu64 " = %u at byte %" PRIu64
                                           " is not 0 or 1",
                                           key, i, c->base[c->pos + i], c->pos + i);
        v->v.arr.count = count;
        c->pos += count * sz;
        return 0;
    }
    gguf_value *items = calloc(count ? (size_t)count : 1, sizeof *items);
    if (!items)
        return greta_error_set(c->err, GRETA_ERR_NOMEM, "key '%s': out of memory for %" PRIu64
                               " array elements", key, count);
    v->v.arr.items = items;
    for (uint64_t i = 0; i < count; i++) {
        v->v.arr.count = i + 1; /* so value_free sees the items filled so far */
        items[i].type = (gguf_type)et;
        if (et == GGUF_TYPE_STRING) {
            snprintf(field, sizeof field, "key '%.40s' element %" PRIu64, key, i);
            rc = rd_str(c, &items[i].v.str, field);
        } else {
            rc = rd_value(c, et, &items[i], key, depth + 1);
        }
        if (rc)
            return rc;
    }
    v->v.arr.count = count;
    return 0;
}

/* ---- open ---------------------------------------------------------------------- */

/* qsort has no context argument; sort index arrays through small structs. */
typedef struct name_idx {
    const char *name;
    uint64_t idx;
} name_idx;

static int cmp_name_idx(const void *a, const void *b)
{
    const name_idx *x = a, *y = b;
    return strcmp(x->name, y->name);
}

typedef struct off_idx {
    uint64_t off;
    uint64_t idx;
} off_idx;

static int cmp_off_idx(const void *a, const void *b)
{
    const off_idx *x = a, *y = b;
    return x->off < y->off ? -1 : x->off > y->off;
}

/* Sorts names; reports the first duplicate. out receives the sorted indices. */
static int sort_names(cursor *c, uint64_t n, const char *(*get)(const gguf_file *, uint64_t),
                      uint64_t (*pos)(const gguf_file *, uint64_t), const gguf_file *f,
                      const char *what, uint64_t *out)
{
    if (n == 0)
        return 0;
    name_idx *tmp = malloc((size_t)n * sizeof *tmp);
    if (!tmp)
        return greta_error_set(c->err, GRETA_ERR_NOMEM, "out of memory sorting %ss", what);
    for (uint64_t i = 0; i < n; i++) {
        tmp[i].name = get(f, i);
        tmp[i].idx = i;
    }
    qsort(tmp, (size_t)n, sizeof *tmp, cmp_name_idx);
    int rc = 0;
    for (uint64_t i = 0; i < n; i++) {
        out[i] = tmp[i].idx;
        if (i > 0 && !rc && strcmp(tmp[i - 1].name, tmp[i].name) == 0) {
            uint64_t first = tmp[i - 1].idx < tmp[i].idx ? tmp[i - 1].idx : tmp[i].idx;
            uint64_t second = tmp[i - 1].idx < tmp[i].idx ? tmp[i].idx : tmp[i - 1].idx;
            rc = greta_error_set(c->err, GRETA_ERR_FORMAT,
                                 "duplicate %s '%s' (#%" PRIu64 " at byte %" PRIu64 " and #%" PRIu64
                                 " at byte %" PRIu64 ")",
                                 what, tmp[i].name, first, pos(f, first), second, pos(f, second));
        }
    }
    free(tmp);
    return rc;
}

static const char *kv_name(const gguf_file *f, uint64_t i) { return f->kvs[i].key; }
static const char *tensor_name(const gguf_file *f, uint64_t i) { return f->tensors[i].name; }
static uint64_t kv_pos(const gguf_file *f, uint64_t i) { return f->kvs[i].file_offset; }
static uint64_t tensor_pos(const gguf_file *f, uint64_t i) { return f->name_at[i]; }

static int parse_kvs(cursor *c, gguf_file *f)
{
    for (uint64_t i = 0; i < f->n_kv; i++) {
        gguf_kv *kv = &f->kvs[i];
        uint64_t at = c->pos;
        gguf_str key;
        char field[48];
        snprintf(field, sizeof field, "key #%" PRIu64, i);
        int rc = rd_str(c, &key, field);
        if (!rc)
            rc = dup_name(c, &key, at, field, &kv->key);
        if (rc)
            return rc;
        kv->file_offset = at;
        uint64_t tat = c->pos;
        uint32_t t;
        rc = rd_u32(c, &t, "value type");
        if (rc)
            return greta_error_prefix(c->err, "key '%s'", kv->key);
        rc = check_type(c, t, tat, kv->key);
        if (rc)
            return rc;
        rc = rd_value(c, t, &kv->value, kv->key, 0);
        if (rc)
            return rc;
    }
    return 0;
}

static int parse_alignment(cursor *c, gguf_file *f)
{
    f->alignment = GGUF_DEFAULT_ALIGNMENT;
    const gguf_kv *kv = gguf_find_kv(f, "general.alignment");
    if (!kv)
        return 0;
    if (kv->value.type != GGUF_TYPE_UINT32)
        return greta_error_set(c->err, GRETA_ERR_FORMAT,
                               "key 'general.alignment' at byte %" PRIu64
                               " has type %s, must be u32",
                               kv->file_offset, gguf_type_name(kv->value.type));
    uint64_t a = kv->value.v.u64;
    if (a == 0 || (a & (a - 1)) != 0)
        return greta_error_set(c->err, GRETA_ERR_FORMAT,
                               "key 'general.alignment' at byte %" PRIu64
                               " = %" PRIu64 " is not a nonzero power of two",
                               kv->file_offset, a);
    f->alignment = (uint32_t)a;
    return 0;
}

static int parse_tensor_info(cursor *c, gguf_file *f, uint64_t i)
{
    gguf_tensor *t = &f->tensors[i];
    uint64_t at = c->pos;
    f->name_at[i] = at;
    gguf_str name;
    char field[48];
    snprintf(field, sizeof field, "tensor #%" PRIu64 " name", i);
    int rc = rd_str(c, &name, field);
    if (!rc)
        rc = dup_name(c, &name, at, field, &t->name);
    if (rc)
        return rc;
    uint64_t dat = c->pos;
    rc = rd_u32(c, &t->n_dims, "n_dims");
    if (rc)
        return greta_error_prefix(c->err, "tensor '%s'", t->name);
    if (t->n_dims < 1 || t->n_dims > GGUF_MAX_DIMS)
        return greta_error_set(c->err, GRETA_ERR_FORMAT,
                               "tensor '%s': n_dims = %" PRIu32 " at byte %" PRIu64
                               " must be 1..%d",
                               t->name, t->n_dims, dat, GGUF_MAX_DIMS);
    uint64_t n = 1;
    for (uint32_t d = 0; d < GGUF_MAX_DIMS; d++)
        t->ne[d] = 1;
    for (uint32_t d = 0; d < t->n_dims; d++) {
        uint64_t nat = c->pos;
        rc = rd_u64(c, &t->ne[d], "ne");
        if (rc)
            return greta_error_prefix(c->err, "tensor '%s' ne[%" PRIu32 "]", t->name, d);
        if (t->ne[d] == 0)
            return greta_error_set(c->err, GRETA_ERR_FORMAT,
                                   "tensor '%s': ne[%" PRIu32 "] = 0 at byte %" PRIu64
                                   " (dimensions must be nonzero)",
                                   t->name, d, nat);
        if (t->ne[d] > (uint64_t)INT64_MAX || __builtin_mul_overflow(n, t->ne[d], &n) ||
            n > (uint64_t)INT64_MAX)
            return greta_error_set(c->err, GRETA_ERR_FORMAT,
                                   "tensor '%s': ne[%" PRIu32 "] = %" PRIu64 " at byte %" PRIu64
                                   ": element count overflows",
                                   t->name, d, t->ne[d], nat);
    }
    t->n_elements = n;
    uint64_t tat = c->pos;
    rc = rd_u32(c, &t->type, "ggml type");
    if (rc)
        return greta_error_prefix(c->err, "tensor '%s'", t->name);
    if (t->type >= GGML_TYPE_COUNT || strcmp(ggml_type_name(t->type), "?") == 0)
        return greta_error_set(c->err, GRETA_ERR_FORMAT,
                               "tensor '%s': ggml type %" PRIu32 " at byte %" PRIu64
                               " is not a known ggml type",
                               t->name, t->type, tat);
    if (!ggml_type_supported(t->type))
        return greta_error_set(c->err, GRETA_ERR_UNSUPPORTED,
                               "tensor '%s': ggml type %s (%" PRIu32 ") at byte %" PRIu64
                               " is not supported",
                               t->name, ggml_type_name(t->type), t->type, tat);
    uint64_t row = ggml_row_bytes(t->type, t->ne[0]);
    if (row == 0)
        return greta_error_set(c->err, GRETA_ERR_FORMAT,
                               "tensor '%s': ne[0] = %" PRIu64 " at byte %" PRIu64
                               " is not a multiple of the %s block size %" PRIu32,
                               t->name, t->ne[0], dat + 4, ggml_type_name(t->type),
                               ggml_type_block_elems(t->type));
    if (__builtin_mul_overflow(row, n / t->ne[0], &t->nbytes))
        return greta_error_set(c->err, GRETA_ERR_FORMAT,
                               "tensor '%s': byte size overflows (shape at byte %" PRIu64 ")",
                               t->name, dat);
    uint64_t oat = c->pos;
    rc = rd_u64(c, &t->offset, "offset");
    if (rc)
        return greta_error_prefix(c->err, "tensor '%s'", t->name);
    f->offset_at[i] = oat;
    return 0;
}

static int check_tensor_data(cursor *c, gguf_file *f)
{
    uint64_t avail = f->data_offset <= f->size ? f->size - f->data_offset : 0;
    for (uint64_t i = 0; i < f->n_tensors; i++) {
        gguf_tensor *t = &f->tensors[i];
        uint64_t oat = f->offset_at[i];
        if (t->offset % f->alignment)
            return greta_error_set(c->err, GRETA_ERR_FORMAT,
                                   "tensor '%s': offset %" PRIu64 " at byte %" PRIu64
                                   " is not a multiple of the alignment %" PRIu32,
                                   t->name, t->offset, oat, f->alignment);
        if (t->offset > avail || t->nbytes > avail - t->offset)
            return greta_error_set(c->err, GRETA_ERR_FORMAT,
                                   "tensor '%s': data [%" PRIu64 ", +%" PRIu64
                                   ") (offset at byte %" PRIu64 ") extends past the end of"
                                   " the file (%" PRIu64 " bytes of tensor data from byte %" PRIu64 ")",
                                   t->name, t->offset, t->nbytes, oat, avail, f->data_offset);
        t->data = f->base + f->data_offset + t->offset;
    }
    if (f->n_tensors < 2)
        return 0;
    off_idx *o = malloc((size_t)f->n_tensors * sizeof *o);
    if (!o)
        return greta_error_set(c->err, GRETA_ERR_NOMEM, "out of memory checking tensor overlap");
    for (uint64_t i = 0; i < f->n_tensors; i++) {
        o[i].off = f->tensors[i].offset;
        o[i].idx = i;
    }
    qsort(o, (size_t)f->n_tensors, sizeof *o, cmp_off_idx);
    int rc = 0;
    for (uint64_t i = 1; i < f->n_tensors && !rc; i++) {
        const gguf_tensor *a = &f->tensors[o[i - 1].idx], *b = &f->tensors[o[i].idx];
        if (a->offset + a->nbytes > b->offset)
            rc = greta_error_set(c->err, GRETA_ERR_FORMAT,
                                 "tensor '%s' [%" PRIu64 ", +%" PRIu64 ") (offset at byte %" PRIu64
                                 ") overlaps tensor '%s' at offset %" PRIu64 " (offset at byte %" PRIu64 ")",
                                 a->name, a->offset, a->nbytes, f->offset_at[o[i - 1].idx], b->name,
                                 b->offset, f->offset_at[o[i].idx]);
    }
    free(o);
    return rc;
}

static int parse(gguf_file *f, greta_error *err)
{
    cursor c = {.base = f->base, .size = f->size, .pos = 0, .err = err};
    uint32_t magic;
    int rc = rd_u32(&c, &magic, "magic");
    if (rc)
        return rc;
    if (magic != GGUF_MAGIC)
        return greta_error_set(err, GRETA_ERR_FORMAT,
                               "magic at byte 0 is 0x%08" PRIx32 ", not 'GGUF' (0x%08x)", magic,
                               GGUF_MAGIC);
    rc = rd_u32(&c, &f->version, "version");
    if (rc)
        return rc;
    if (f->version != 2 && f->version != 3)
        return greta_error_set(err, GRETA_ERR_UNSUPPORTED,
                               "version at byte 4 is %" PRIu32 "; only GGUF versions 2 and 3 are supported",
                               f->version);
    rc = rd_u64(&c, &f->n_tensors, "n_tensors");
    if (!rc)
        rc = rd_u64(&c, &f->n_kv, "n_kv");
    if (rc)
        return rc;
    /* a kv needs at least 8 + 4 + 1 bytes, a tensor info 8 + 4 + 8 + 4 + 8 */
    if (f->n_kv > remaining(&c) / 13)
        return greta_error_set(err, GRETA_ERR_FORMAT,
                               "n_kv = %" PRIu64 " at byte 16 exceeds what the %" PRIu64
                               " remaining bytes can hold",
                               f->n_kv, remaining(&c));
    if (f->n_tensors > remaining(&c) / 32 ||
        f->n_tensors * 32 > remaining(&c) - f->n_kv * 13)
        return greta_error_set(err, GRETA_ERR_FORMAT,
                               "n_tensors = %" PRIu64 " at byte 8 exceeds what the %" PRIu64
                               " remaining bytes can hold",
                               f->n_tensors, remaining(&c));
    f->kvs = calloc(f->n_kv ? (size_t)f->n_kv : 1, sizeof *f->kvs);
    f->kv_sorted = calloc(f->n_kv ? (size_t)f->n_kv : 1, sizeof *f->kv_sorted);
    f->tensors = calloc(f->n_tensors ? (size_t)f->n_tensors : 1, sizeof *f->tensors);
    f->tensor_sorted = calloc(f->n_tensors ? (size_t)f->n_tensors : 1, sizeof *f->tensor_sorted);
    f->offset_at = calloc(f->n_tensors ? (size_t)f->n_tensors : 1, sizeof *f->offset_at);
    f->name_at = calloc(f->n_tensors ? (size_t)f->n_tensors : 1, sizeof *f->name_at);
    if (!f->kvs || !f->kv_sorted || !f->tensors || !f->tensor_sorted || !f->offset_at || !f->name_at)
        return greta_error_set(err, GRETA_ERR_NOMEM, "out of memory for the header tables");
    uint64_t n_kv = f->n_kv;
    rc = parse_kvs(&c, f);
    if (!rc)
        rc = sort_names(&c, n_kv, kv_name, kv_pos, f, "key", f->kv_sorted);
    if (!rc)
        rc = parse_alignment(&c, f);
    if (rc)
        return rc;
    for (uint64_t i = 0; i < f->n_tensors; i++) {
        rc = parse_tensor_info(&c, f, i);
        if (rc)
            return rc;
    }
    rc = sort_names(&c, f->n_tensors, tensor_name, tensor_pos, f, "tensor", f->tensor_sorted);
    if (rc)
        return rc;
    uint64_t end = c.pos;
    f->data_offset = (end + f->alignment - 1) / f->alignment * f->alignment;
    return check_tensor_data(&c, f);
}

static void file_free(gguf_file *f)
{
    if (f->kvs)
        for (uint64_t i = 0; i < f->n_kv; i++) {
            free(f->kvs[i].key);
            value_free(&f->kvs[i].value);
        }
    if (f->tensors)
        for (uint64_t i = 0; i < f->n_tensors; i++)
            free(f->tensors[i].name);
    free(f->kvs);
    free(f->kv_sorted);
    free(f->tensors);
    free(f->tensor_sorted);
    free(f->offset_at);
    free(f->name_at);
    if (f->mapped && f->base)
        munmap((void *)f->base, (size_t)f->size);
    free(f->path);
    free(f);
}

static int finish_open(gguf_file *f, gguf_file **out, greta_error *err)
{
    int rc = parse(f, err);
    if (rc) {
        if (f->path && f->path[0])
            greta_error_prefix(err, "%s", f->path);
        file_free(f);
        return rc;
    }
    free(f->offset_at);
    free(f->name_at);
    f->offset_at = f->name_at = NULL;
    *out = f;
    return 0;
}

int gguf_open_memory(const void *buf, size_t size, gguf_file **out, greta_error *err)
{
    assert(out);
    *out = NULL;
    gguf_file *f = calloc(1, sizeof *f);
    if (f)
        f->path = calloc(1, 1);
    if (!f || !f->path) {
        free(f);
        return greta_error_set(err, GRETA_ERR_NOMEM, "out of memory");
    }
    f->base = buf;
    f->size = size;
    return finish_open(f, out, err);
}

int gguf_open(const char *path, gguf_file **out, greta_error *err)
{
    assert(path && out);
    *out = NULL;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return greta_error_set(err, errno == ENOENT ? GRETA_ERR_NOT_FOUND : GRETA_ERR_IO,
                               "%s: cannot open: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0) {
        int e = errno;
        close(fd);
        return greta_error_set(err, GRETA_ERR_IO, "%s: cannot stat: %s", path, strerror(e));
    }
    if (!S_ISREG(st.st_mode)) {
        close(fd);
        return greta_error_set(err, GRETA_ERR_IO, "%s: not a regular file", path);
    }
    gguf_file *f = calloc(1, sizeof *f);
    if (f)
        f->path = strdup(path);
    if (!f || !f->path) {
        free(f);
        close(fd);
        return greta_error_set(err, GRETA_ERR_NOMEM, "out of memory");
    }
    f->size = (uint64_t)st.st_size;
    if (f->size > 0) {
        void *p = mmap(NULL, (size_t)f->size, PROT_READ, MAP_PRIVATE, fd, 0);
        if (p == MAP_FAILED) {
            int e = errno;
            close(fd);
            file_free(f);
            return greta_error_set(err, GRETA_ERR_IO, "%s: mmap failed: %s", path, strerror(e));
        }
        f->base = p;
        f->mapped = true;
    } else {
        static const uint8_t empty[1];
        f->base = empty;
    }
    close(fd);
    return finish_open(f, out, err);
}

void gguf_close(gguf_file **f)
{
    if (f && *f) {
        file_free(*f);
        *f = NULL;
    }
}

/* ---- accessors --------------------------------------------------------------------- */

uint32_t gguf_version(const gguf_file *f) { return f->version; }
uint32_t gguf_alignment(const gguf_file *f) { return f->alignment; }
uint64_t gguf_file_size(const gguf_file *f) { return f->size; }
uint64_t gguf_data_offset(const gguf_file *f) { return f->data_offset; }
const char *gguf_path(const gguf_file *f) { return f->path; }
uint64_t gguf_n_kv(const gguf_file *f) { return f->n_kv; }
uint64_t gguf_n_tensors(const gguf_file *f) { return f->n_tensors; }

const gguf_kv *gguf_kv_at(const gguf_file *f, uint64_t i)
{
    assert(i < f->n_kv);
    return &f->kvs[i];
}

const gguf_tensor *gguf_tensor_at(const gguf_file *f, uint64_t i)
{
    assert(i < f->n_tensors);
    return &f->tensors[i];
}

/* Binary search over a sorted index. */
static int64_t find_sorted(const uint64_t *sorted, uint64_t n, const char *(*get)(const gguf_file *, uint64_t),
                           const gguf_file *f, const char *name)
{
    uint64_t lo = 0, hi = n;
    while (lo < hi) {
        uint64_t mid = lo + (hi - lo) / 2;
        int c = strcmp(get(f, sorted[mid]), name);
        if (c == 0)
            return (int64_t)sorted[mid];
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return -1;
}

const gguf_kv *gguf_find_kv(const gguf_file *f, const char *key)
{
    int64_t i = find_sorted(f->kv_sorted, f->n_kv, kv_name, f, key);
    return i < 0 ? NULL : &f->kvs[i];
}

const gguf_tensor *gguf_find_tensor(const gguf_file *f, const char *name)
{
    int64_t i = find_sorted(f->tensor_sorted, f->n_tensors, tensor_name, f, name);
    return i < 0 ? NULL : &f->tensors[i];
}

/* ---- typed lookups ------------------------------------------------------------------- */

static int lookup(const gguf_file *f, const char *key, const gguf_kv **kv, greta_error *err)
{
    *kv = gguf_find_kv(f, key);
    if (!*kv)
        return greta_error_set(err, GRETA_ERR_NOT_FOUND, "key '%s' not found", key);
    return 0;
}

static int type_error(const gguf_kv *kv, const char *want, greta_error *err)
{
    return greta_error_set(err, GRETA_ERR_TYPE, "key '%s' (at byte %" PRIu64 ") has type %s, wanted %s",
                           kv->key, kv->file_offset, gguf_type_name(kv->value.type), want);
}

static bool is_unsigned(gguf_type t)
{
    return t == GGUF_TYPE_UINT8 || t == GGUF_TYPE_UINT16 || t == GGUF_TYPE_UINT32 || t == GGUF_TYPE_UINT64;
}

static bool is_signed(gguf_type t)
{
    return t == GGUF_TYPE_INT8 || t == GGUF_TYPE_INT16 || t == GGUF_TYPE_INT32 || t == GGUF_TYPE_INT64;
}

/* Reads any integer key into [min, max] (as signed 128-bit-free logic). */
static int get_int(const gguf_file *f, const char *key, const char *want, bool want_signed,
                   uint64_t umax, int64_t smin, int64_t smax, uint64_t *uout, int64_t *sout,
                   greta_error *err)
{
    const gguf_kv *kv;
    int rc = lookup(f, key, &kv, err);
    if (rc)
        return rc;
    gguf_type t = kv->value.type;
    if (!is_unsigned(t) && !is_signed(t))
        return type_error(kv, want, err);
    bool fits;
    if (is_unsigned(t)) {
        uint64_t u = kv->value.v.u64;
        fits = want_signed ? u <= (uint64_t)smax : u <= umax;
        if (fits) {
            if (want_signed)
                *sout = (int64_t)u;
            else
                *uout = u;
        }
        if (!fits)
            return greta_error_set(err, GRETA_ERR_TYPE,
                                   "key '%s' (at byte %" PRIu64 "): %s value %" PRIu64 " does not fit %s",
                                   key, kv->file_offset, gguf_type_name(t), u, want);
    } else {
        int64_t s = kv->value.v.i64;
        fits = want_signed ? (s >= smin && s <= smax) : (s >= 0 && (uint64_t)s <= umax);
        if (!fits)
            return greta_error_set(err, GRETA_ERR_TYPE,
                                   "key '%s' (at byte %" PRIu64 "): %s value %" PRId64 " does not fit %s",
                                   key, kv->file_offset, gguf_type_name(t), s, want);
        if (want_signed)
            *sout = s;
        else
            *uout = (uint64_t)s;
    }
    return 0;
}

int gguf_get_u32(const gguf_file *f, const char *key, uint32_t *out, greta_error *err)
{
    uint64_t u = 0;
    int rc = get_int(f, key, "u32", false, UINT32_MAX, 0, 0, &u, NULL, err);
    if (!rc)
        *out = (uint32_t)u;
    return rc;
}

int gguf_get_u64(const gguf_file *f, const char *key, uint64_t *out, greta_error *err)
{
    uint64_t u = 0;
    int rc = get_int(f, key, "u64", false, UINT64_MAX, 0, 0, &u, NULL, err);
    if (!rc)
        *out = u;
    return rc;
}

int gguf_get_i32(const gguf_file *f, const char *key, int32_t *out, greta_error *err)
{
    int64_t s = 0;
    int rc = get_int(f, key, "i32", true, 0, INT32_MIN, INT32_MAX, NULL, &s, err);
    if (!rc)
        *out = (int32_t)s;
    return rc;
}

int gguf_get_f32(const gguf_file *f, const char *key, float *out, greta_error *err)
{
    const gguf_kv *kv;
    int rc = lookup(f, key, &kv, err);
    if (rc)
        return rc;
    if (kv->value.type != GGUF_TYPE_FLOAT32 && kv->value.type != GGUF_TYPE_FLOAT64)
        return type_error(kv, "f32", err);
    *out = (float)kv->value.v.f64;
    return 0;
}

int gguf_get_bool(const gguf_file *f, const char *key, bool *out, greta_error *err)
{
    const gguf_kv *kv;
    int rc = lookup(f, key, &kv, err);
    if (rc)
        return rc;
    if (kv->value.type != GGUF_TYPE_BOOL)
        return type_error(kv, "bool", err);
    *out = kv->value.v.u64 != 0;
    return 0;
}

int gguf_get_str(const gguf_file *f, const char *key, gguf_str *out, greta_error *err)
{
    const gguf_kv *kv;
    int rc = lookup(f, key, &kv, err);
    if (rc)
        return rc;
    if (kv->value.type != GGUF_TYPE_STRING)
        return type_error(kv, "string", err);
    *out = kv->value.v.str;
    return 0;
}

int gguf_get_arr(const gguf_file *f, const char *key, gguf_type elem_type, const gguf_value **out,
                 greta_error *err)
{
    const gguf_kv *kv;
    int rc = lookup(f, key, &kv, err);
    if (rc)
        return rc;
    if (kv->value.type != GGUF_TYPE_ARRAY) {
        char want[32];
        snprintf(want, sizeof want, "array[%s]",
                 elem_type == GGUF_TYPE_COUNT ? "any" : gguf_type_name(elem_type));
        return type_error(kv, want, err);
    }
    if (elem_type != GGUF_TYPE_COUNT && kv->value.v.arr.elem_type != elem_type)
        return greta_error_set(err, GRETA_ERR_TYPE,
                               "key '%s' (at byte %" PRIu64 ") has type array[%s], wanted array[%s]",
                               key, kv->file_offset, gguf_type_name(kv->value.v.arr.elem_type),
                               gguf_type_name(elem_type));
    *out = &kv->value;
    return 0;
}

gguf_str gguf_arr_str(const gguf_value *arr, uint64_t i)
{
    assert(arr->type == GGUF_TYPE_ARRAY && arr->v.arr.elem_type == GGUF_TYPE_STRING);
    assert(i < arr->v.arr.count);
    return arr->v.arr.items[i].v.str;
}

static uint32_t arr_u32_bits(const gguf_value *arr, uint64_t i)
{
    assert(arr->type == GGUF_TYPE_ARRAY && type_size(arr->v.arr.elem_type) == 4);
    assert(i < arr->v.arr.count);
    const uint8_t *p = arr->v.arr.data + 4 * i;
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

float gguf_arr_f32(const gguf_value *arr, uint64_t i)
{
    assert(arr->v.arr.elem_type == GGUF_TYPE_FLOAT32);
    uint32_t u = arr_u32_bits(arr, i);
    float x;
    memcpy(&x, &u, 4);
    return x;
}

int32_t gguf_arr_i32(const gguf_value *arr, uint64_t i)
{
    assert(arr->v.arr.elem_type == GGUF_TYPE_INT32 || arr->v.arr.elem_type == GGUF_TYPE_UINT32);
    uint32_t u = arr_u32_bits(arr, i);
    int32_t x;
    memcpy(&x, &u, 4);
    return x;
}

uint32_t gguf_arr_u32(const gguf_value *arr, uint64_t i)
{
    assert(arr->v.arr.elem_type == GGUF_TYPE_INT32 || arr->v.arr.elem_type == GGUF_TYPE_UINT32);
    return arr_u32_bits(arr, i);
}
