/* test_gguf_bad.c - malformed GGUF files: a generator writes one bad file per
 * validation rule into the build tree, and each must fail with the specific
 * status and a message naming the field (and the file). Then a truncation
 * sweep (every length of a valid file) and a byte-mutation sweep, which must
 * fail cleanly or open a file whose pointers all stay inside the buffer
 * (ASan/UBSan check that). */
#include "test_util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/gguf.h"
#include "kernels/quant.h"

/* ---- byte builder ------------------------------------------------------------ */

typedef struct bb {
    uint8_t *p;
    size_t len, cap;
} bb;

static void put(bb *b, const void *p, size_t n)
{
    if (b->len + n > b->cap) {
        b->cap = (b->len + n) * 2 + 64;
        b->p = realloc(b->p, b->cap);
        assert_non_null(b->p);
    }
    if (n)
        memcpy(b->p + b->len, p, n);
    b->len += n;
}
static void u32(bb *b, uint32_t v) { put(b, &v, 4); }
static void u64(bb *b, uint64_t v) { put(b, &v, 8); }
static void str(bb *b, const char *s)
{
    u64(b, strlen(s));
    put(b, s, strlen(s));
}
static void header(bb *b, uint32_t version, uint64_t n_tensors, uint64_t n_kv)
{
    u32(b, GGUF_MAGIC);
    u32(b, version);
    u64(b, n_tensors);
    u64(b, n_kv);
}
static void kv_u32(bb *b, const char *k, uint32_t v)
{
    str(b, k);
    u32(b, GGUF_TYPE_UINT32);
    u32(b, v);
}
static void kv_str(bb *b, const char *k, const char *v)
{
    str(b, k);
    u32(b, GGUF_TYPE_STRING);
    str(b, v);
}
static void tinfo(bb *b, const char *name, uint32_t n_dims, const uint64_t *ne, uint32_t type, uint64_t off)
{
    str(b, name);
    u32(b, n_dims);
    for (uint32_t d = 0; d < n_dims; d++)
        u64(b, ne[d]);
    u32(b, type);
    u64(b, off);
}
static void pad(bb *b, size_t align)
{
    while (b->len % align)
        put(b, "", 1);
}
static void zeros(bb *b, size_t n)
{
    for (size_t i = 0; i < n; i++)
        put(b, "", 1);
}

/* A file with one kv and the given tensors (F32 unless said), data zeroed. */
typedef struct tdesc {
    const char *name;
    uint32_t n_dims;
    uint64_t ne[4];
    uint32_t type;
    uint64_t off;
} tdesc;

static void tensor_file(bb *b, const tdesc *t, size_t n, size_t data_bytes)
{
    header(b, 3, n, 1);
    kv_str(b, "general.architecture", "llama");
    for (size_t i = 0; i < n; i++)
        tinfo(b, t[i].name, t[i].n_dims, t[i].ne, t[i].type, t[i].off);
    pad(b, 32);
    zeros(b, data_bytes);
}

/* ---- the cases ------------------------------------------------------------------ */

static void c_empty(bb *b) { (void)b; }
static void c_trunc_header(bb *b)
{
    header(b, 3, 0, 0);
    b->len = 12;
}
static void c_trunc_key(bb *b)
{
    header(b, 3, 0, 1);
    u64(b, 20);
    put(b, "abcde", 5);
}
static void c_trunc_value(bb *b)
{
    header(b, 3, 0, 1);
    str(b, "k");
    u32(b, GGUF_TYPE_UINT32);
    put(b, "\1\2", 2);
}
static void c_trunc_tensor_info(bb *b)
{
    header(b, 3, 1, 0);
    str(b, "a.rather.long.tensor.name");
    u32(b, 2);
    u64(b, 32);
    put(b, "\1\0\0", 3);
}
static void c_trunc_data(bb *b)
{
    tdesc t[] = {{"w", 2, {8, 4}, GGML_TYPE_F32, 0}};
    tensor_file(b, t, 1, 128);
    b->len -= 1;
}
static void c_bad_magic(bb *b)
{
    header(b, 3, 0, 0);
    memcpy(b->p, "GGUG", 4);
}
static void c_version1(bb *b) { header(b, 1, 0, 0); }
static void c_version4(bb *b) { header(b, 4, 0, 0); }
static void c_huge_nkv(bb *b)
{
    header(b, 3, 0, UINT64_MAX / 2);
    kv_u32(b, "k", 1);
}
static void c_huge_ntensors(bb *b)
{
    header(b, 3, 1ull << 60, 0);
    zeros(b, 64);
}
static void c_huge_string(bb *b)
{
    header(b, 3, 0, 1);
    str(b, "k");
    u32(b, GGUF_TYPE_STRING);
    u64(b, UINT64_MAX - 5);
    put(b, "abc", 3);
}
static void c_bad_value_type(bb *b)
{
    header(b, 3, 0, 1);
    str(b, "k");
    u32(b, 13);
    u32(b, 0);
}
static void c_bad_elem_type(bb *b)
{
    header(b, 3, 0, 1);
    str(b, "k");
    u32(b, GGUF_TYPE_ARRAY);
    u32(b, 77);
    u64(b, 1);
    u32(b, 0);
}
static void c_huge_array(bb *b)
{
    header(b, 3, 0, 1);
    str(b, "k");
    u32(b, GGUF_TYPE_ARRAY);
    u32(b, GGUF_TYPE_UINT32);
    u64(b, 1ull << 62);
    u32(b, 0);
}
static void c_huge_nested_count(bb *b)
{
    header(b, 3, 0, 1);
    str(b, "k");
    u32(b, GGUF_TYPE_ARRAY);
    u32(b, GGUF_TYPE_ARRAY);
    u64(b, 1);
    u32(b, GGUF_TYPE_STRING);
    u64(b, 1ull << 40);
    str(b, "x");
}
static void c_too_deep(bb *b)
{
    header(b, 3, 0, 1);
    str(b, "deep");
    u32(b, GGUF_TYPE_ARRAY);
    for (int i = 0; i < 9; i++) {
        u32(b, GGUF_TYPE_ARRAY);
        u64(b, 1);
    }
    u32(b, GGUF_TYPE_UINT8);
    u64(b, 0);
}
static void c_bad_bool(bb *b)
{
    header(b, 3, 0, 1);
    str(b, "flag");
    u32(b, GGUF_TYPE_BOOL);
    put(b, "\2", 1);
    zeros(b, 8);
}
static void c_empty_key(bb *b)
{
    header(b, 3, 0, 1);
    kv_u32(b, "", 1);
}
static void c_nul_in_key(bb *b)
{
    header(b, 3, 0, 1);
    u64(b, 3);
    put(b, "a\0b", 3);
    u32(b, GGUF_TYPE_UINT8);
    put(b, "\1", 1);
}
static void c_dup_key(bb *b)
{
    header(b, 3, 0, 3);
    kv_u32(b, "x.one", 1);
    kv_u32(b, "x.two", 2);
    kv_u32(b, "x.one", 3);
}
static void c_align_zero(bb *b)
{
    header(b, 3, 0, 1);
    kv_u32(b, "general.alignment", 0);
}
static void c_align_npot(bb *b)
{
    header(b, 3, 0, 1);
    kv_u32(b, "general.alignment", 48);
}
static void c_align_type(bb *b)
{
    header(b, 3, 0, 1);
    kv_str(b, "general.alignment", "32");
}
static void c_ndims0(bb *b)
{
    tdesc t[] = {{"w", 0, {0}, GGML_TYPE_F32, 0}};
    tensor_file(b, t, 1, 64);
}
static void c_ndims5(bb *b)
{
    header(b, 3, 1, 0);
    str(b, "w5");
    u32(b, 5);
    for (int i = 0; i < 5; i++)
        u64(b, 2);
    u32(b, GGML_TYPE_F32);
    u64(b, 0);
    pad(b, 32);
    zeros(b, 128);
}
static void c_zero_dim(bb *b)
{
    tdesc t[] = {{"w", 2, {8, 0}, GGML_TYPE_F32, 0}};
    tensor_file(b, t, 1, 64);
}
static void c_dim_overflow(bb *b)
{
    tdesc t[] = {{"w", 3, {1ull << 32, 1ull << 31, 4}, GGML_TYPE_F32, 0}};
    tensor_file(b, t, 1, 64);
}
static void c_bytes_overflow(bb *b)
{
    /* elements fit in int64, bytes (x4) do not */
    tdesc t[] = {{"w", 2, {1ull << 31, 1ull << 31}, GGML_TYPE_F32, 0}};
    tensor_file(b, t, 1, 64);
}
static void c_unknown_type(bb *b)
{
    tdesc t[] = {{"w", 1, {32}, 99, 0}};
    tensor_file(b, t, 1, 128);
}
static void c_unsupported_type(bb *b)
{
    tdesc t[] = {{"w", 1, {32}, GGML_TYPE_Q4_1, 0}};
    tensor_file(b, t, 1, 128);
}
static void c_q8k_in_file(bb *b)
{
    tdesc t[] = {{"w", 1, {256}, GGML_TYPE_Q8_K, 0}};
    tensor_file(b, t, 1, 320);
}
static void c_row_not_block(bb *b)
{
    tdesc t[] = {{"w", 2, {100, 2}, GGML_TYPE_Q4_K, 0}};
    tensor_file(b, t, 1, 512);
}
static void c_misaligned(bb *b)
{
    tdesc t[] = {{"a", 1, {8}, GGML_TYPE_F32, 0}, {"b", 1, {8}, GGML_TYPE_F32, 40}};
    tensor_file(b, t, 2, 128);
}
static void c_past_eof(bb *b)
{
    tdesc t[] = {{"w", 1, {8}, GGML_TYPE_F32, 1ull << 40}};
    tensor_file(b, t, 1, 64);
}
static void c_offset_wrap(bb *b)
{
    tdesc t[] = {{"w", 1, {64}, GGML_TYPE_F32, UINT64_MAX - 31}};
    tensor_file(b, t, 1, 256);
}
static void c_overlap(bb *b)
{
    tdesc t[] = {{"a", 1, {16}, GGML_TYPE_F32, 0}, {"b", 1, {8}, GGML_TYPE_F32, 32}};
    tensor_file(b, t, 2, 128);
}
static void c_dup_tensor(bb *b)
{
    tdesc t[] = {{"same", 1, {8}, GGML_TYPE_F32, 0}, {"same", 1, {8}, GGML_TYPE_F32, 32}};
    tensor_file(b, t, 2, 64);
}
static void c_empty_name(bb *b)
{
    tdesc t[] = {{"", 1, {8}, GGML_TYPE_F32, 0}};
    tensor_file(b, t, 1, 64);
}
static void c_alignment_applies(bb *b)
{
    /* alignment 64: an offset of 32 is misaligned */
    header(b, 3, 2, 1);
    kv_u32(b, "general.alignment", 64);
    tinfo(b, "a", 1, (uint64_t[]){8}, GGML_TYPE_F32, 0);
    tinfo(b, "b", 1, (uint64_t[]){8}, GGML_TYPE_F32, 32);
    pad(b, 64);
    zeros(b, 128);
}

typedef struct bad_case {
    const char *name;
    void (*build)(bb *b);
    int code;
    const char *field; /* must appear in the message */
    const char *more;  /* a second fragment (byte offset etc.), or NULL */
} bad_case;

static const bad_case k_cases[] = {
    {"empty", c_empty, GRETA_ERR_FORMAT, "magic", "truncated"},
    {"trunc-header", c_trunc_header, GRETA_ERR_FORMAT, "n_tensors", "at byte 8"},
    {"trunc-key", c_trunc_key, GRETA_ERR_FORMAT, "key #0", "string length 20 at byte 24"},
    {"trunc-value", c_trunc_value, GRETA_ERR_FORMAT, "key 'k'", "u32 value at byte 37"},
    {"trunc-tensor-info", c_trunc_tensor_info, GRETA_ERR_FORMAT, "tensor 'a.rather.long.tensor.name' ne[1]",
     "truncated"},
    {"trunc-data", c_trunc_data, GRETA_ERR_FORMAT, "tensor 'w'", "past the end"},
    {"bad-magic", c_bad_magic, GRETA_ERR_FORMAT, "magic at byte 0", "GGUF"},
    {"version-1", c_version1, GRETA_ERR_UNSUPPORTED, "version at byte 4 is 1", NULL},
    {"version-4", c_version4, GRETA_ERR_UNSUPPORTED, "version at byte 4 is 4", NULL},
    {"huge-n_kv", c_huge_nkv, GRETA_ERR_FORMAT, "n_kv", "at byte 16"},
    {"huge-n_tensors", c_huge_ntensors, GRETA_ERR_FORMAT, "n_tensors", "at byte 8"},
    {"huge-string", c_huge_string, GRETA_ERR_FORMAT, "key 'k' string", "at byte 37"},
    {"bad-value-type", c_bad_value_type, GRETA_ERR_FORMAT, "key 'k': value type 13", "at byte 33"},
    {"bad-elem-type", c_bad_elem_type, GRETA_ERR_FORMAT, "key 'k': array element type 77", "at byte 37"},
    {"huge-array", c_huge_array, GRETA_ERR_FORMAT, "key 'k': array count", "at byte 41"},
    {"huge-nested-count", c_huge_nested_count, GRETA_ERR_FORMAT, "key 'k': array count 1099511627776",
     NULL},
    {"too-deep", c_too_deep, GRETA_ERR_LIMIT, "key 'deep'", "nests deeper than 8"},
    {"bad-bool", c_bad_bool, GRETA_ERR_FORMAT, "key 'flag': bool value 2", "at byte 40"},
    {"empty-key", c_empty_key, GRETA_ERR_FORMAT, "key #0", "is empty"},
    {"nul-in-key", c_nul_in_key, GRETA_ERR_FORMAT, "key #0", "NUL"},
    {"dup-key", c_dup_key, GRETA_ERR_FORMAT, "duplicate key 'x.one'", "#0 at byte 24 and #2 at byte 66"},
    {"align-zero", c_align_zero, GRETA_ERR_FORMAT, "general.alignment", "not a nonzero power of two"},
    {"align-48", c_align_npot, GRETA_ERR_FORMAT, "general.alignment", "= 48"},
    {"align-type", c_align_type, GRETA_ERR_FORMAT, "general.alignment", "type string"},
    {"n_dims-0", c_ndims0, GRETA_ERR_FORMAT, "tensor 'w': n_dims = 0", "at byte"},
    {"n_dims-5", c_ndims5, GRETA_ERR_FORMAT, "tensor 'w5': n_dims = 5", "at byte 34"},
    {"zero-dim", c_zero_dim, GRETA_ERR_FORMAT, "tensor 'w': ne[1] = 0", "at byte"},
    {"dim-overflow", c_dim_overflow, GRETA_ERR_FORMAT, "tensor 'w': ne[", "overflows"},
    {"bytes-overflow", c_bytes_overflow, GRETA_ERR_FORMAT, "tensor 'w'", "byte size overflows"},
    {"unknown-type", c_unknown_type, GRETA_ERR_FORMAT, "tensor 'w': ggml type 99", "not a known"},
    {"unsupported-type", c_unsupported_type, GRETA_ERR_UNSUPPORTED, "tensor 'w': ggml type Q4_1", "not supported"},
    {"q8k-in-file", c_q8k_in_file, GRETA_ERR_UNSUPPORTED, "tensor 'w': ggml type Q8_K", NULL},
    {"row-not-block", c_row_not_block, GRETA_ERR_FORMAT, "tensor 'w': ne[0] = 100", "block size 256"},
    {"misaligned", c_misaligned, GRETA_ERR_FORMAT, "tensor 'b': offset 40", "alignment 32"},
    {"past-eof", c_past_eof, GRETA_ERR_FORMAT, "tensor 'w'", "past the end"},
    {"offset-wrap", c_offset_wrap, GRETA_ERR_FORMAT, "tensor 'w'", "past the end"},
    {"overlap", c_overlap, GRETA_ERR_FORMAT, "tensor 'a'", "overlaps tensor 'b' at offset 32 (offset at byte"},
    {"dup-tensor", c_dup_tensor, GRETA_ERR_FORMAT, "duplicate tensor 'same'", "#1 at byte"},
    {"empty-name", c_empty_name, GRETA_ERR_FORMAT, "tensor #0 name", "is empty"},
    {"alignment-64", c_alignment_applies, GRETA_ERR_FORMAT, "tensor 'b': offset 32", "alignment 64"},
};

static void test_bad_files(void **state)
{
    (void)state;
    const char *dir = greta_test_tmpdir("gguf_bad");
    assert_non_null(dir);
    size_t n_cases = sizeof k_cases / sizeof k_cases[0];
    for (size_t i = 0; i < n_cases; i++) {
        const bad_case *c = &k_cases[i];
        bb b = {0};
        c->build(&b);
        char path[4600];
        snprintf(path, sizeof path, "%s/%s.gguf", dir, c->name);
        FILE *fp = fopen(path, "wb");
        assert_non_null(fp);
        assert_int_equal(fwrite(b.p ? (void *)b.p : (void *)"", 1, b.len, fp), b.len);
        fclose(fp);

        greta_error err = {0};
        gguf_file *f = NULL;
        int rc = gguf_open(path, &f, &err);
        printf("  %-18s -> %d %s\n", c->name, rc, err.msg);
        if (rc != c->code)
            fail_msg("%s: expected %s (%d), got %d: %s", c->name, greta_status_name(c->code), c->code, rc,
                     err.msg);
        assert_null(f);
        assert_int_equal(err.code, c->code);
        if (!strstr(err.msg, c->field) || (c->more && !strstr(err.msg, c->more)))
            fail_msg("%s: message '%s' does not contain '%s' / '%s'", c->name, err.msg, c->field,
                     c->more ? c->more : "");
        assert_non_null(strstr(err.msg, path)); /* names the file too */

        /* the same bytes from memory give the same error, without the path */
        greta_error err2 = {0};
        uint8_t *copy = malloc(b.len ? b.len : 1);
        if (b.len)
            memcpy(copy, b.p, b.len);
        assert_int_equal(gguf_open_memory(copy, b.len, &f, &err2), c->code);
        assert_non_null(strstr(err2.msg, c->field));
        free(copy);
        free(b.p);
    }
    printf("  %zu bad-file cases\n", n_cases);
    assert_true(n_cases >= 20);
}

/* ---- sweeps ------------------------------------------------------------------------- */

/* A small valid file with every kind of header entry. */
static uint8_t *small_file(size_t *size)
{
    char path[4600];
    snprintf(path, sizeof path, "%s/small.gguf", greta_test_tmpdir("gguf_bad"));
    greta_error err = {0};
    gguf_writer *w = gguf_writer_create(&err);
    gguf_writer_set_str(w, "general.architecture", "llama");
    gguf_writer_set_u32(w, "u", 7);
    gguf_writer_set_f32(w, "f", 0.5f);
    gguf_writer_set_bool(w, "b", true);
    gguf_str strs[] = {{"ab", 2}, {"", 0}, {"xyz", 3}};
    gguf_writer_set_arr_str(w, "s", strs, 3);
    gguf_writer_set_arr(w, "i", GGUF_TYPE_INT32, (int32_t[]){1, -2, 3}, 3);
    gguf_writer_set_arr(w, "bools", GGUF_TYPE_BOOL, (uint8_t[]){0, 1}, 2);
    gguf_value leaf[2] = {{.type = GGUF_TYPE_STRING, .v.str = {"q", 1}}, {.type = GGUF_TYPE_STRING, .v.str = {"rs", 2}}};
    gguf_value inner[2] = {{.type = GGUF_TYPE_ARRAY, .v.arr = {GGUF_TYPE_STRING, 2, NULL, leaf}},
                           {.type = GGUF_TYPE_ARRAY, .v.arr = {GGUF_TYPE_UINT16, 0, NULL, NULL}}};
    inner[1].v.arr.elem_type = GGUF_TYPE_STRING;
    gguf_value outer = {.type = GGUF_TYPE_ARRAY, .v.arr = {GGUF_TYPE_ARRAY, 2, NULL, inner}};
    gguf_writer_set_value(w, "nested", &outer);
    /* the last tensor (32 bytes) ends on the alignment: no trailing padding,
     * so only the full file is complete */
    assert_int_equal(gguf_writer_add_tensor(w, "t.q8", 1, (uint64_t[]){32}, GGML_TYPE_Q8_0), 0);
    assert_int_equal(gguf_writer_add_tensor(w, "t.q4k", 1, (uint64_t[]){256}, GGML_TYPE_Q4_K), 0);
    assert_int_equal(gguf_writer_add_tensor(w, "t.f32", 2, (uint64_t[]){4, 2}, GGML_TYPE_F32), 0);
    assert_int_equal(gguf_writer_begin(w, path, &err), 0);
    uint8_t data[256];
    for (int i = 0; i < 256; i++)
        data[i] = (uint8_t)i;
    assert_int_equal(gguf_writer_write_data(w, data, 34, &err), 0);
    assert_int_equal(gguf_writer_write_data(w, data, 144, &err), 0);
    assert_int_equal(gguf_writer_write_data(w, data, 32, &err), 0);
    assert_int_equal(gguf_writer_finish(w, &err), 0);
    gguf_writer_destroy(&w);
    uint8_t *buf = (uint8_t *)greta_read_file(path, size);
    assert_non_null(buf);
    return buf;
}

/* Touches every pointer the reader hands out (ASan checks the bounds). */
static unsigned touch_all(const gguf_file *f)
{
    unsigned sum = 0;
    for (uint64_t i = 0; i < gguf_n_kv(f); i++) {
        const gguf_kv *kv = gguf_kv_at(f, i);
        sum += (unsigned)strlen(kv->key);
        const gguf_value *v = &kv->value;
        if (v->type == GGUF_TYPE_STRING && v->v.str.len)
            sum += (unsigned char)v->v.str.ptr[v->v.str.len - 1];
        if (v->type == GGUF_TYPE_ARRAY && v->v.arr.elem_type == GGUF_TYPE_STRING)
            for (uint64_t j = 0; j < v->v.arr.count; j++) {
                gguf_str s = gguf_arr_str(v, j);
                if (s.len)
                    sum += (unsigned char)s.ptr[0] + (unsigned char)s.ptr[s.len - 1];
            }
    }
    for (uint64_t i = 0; i < gguf_n_tensors(f); i++) {
        const gguf_tensor *t = gguf_tensor_at(f, i);
        const uint8_t *p = t->data;
        sum += p[0] + p[t->nbytes - 1] + (unsigned)strlen(t->name);
    }
    return sum;
}

/* Opens an exact-size heap copy, so ASan sees any read past the end. */
static int open_copy(const uint8_t *buf, size_t len, greta_error *err, unsigned *sum)
{
    uint8_t *copy = malloc(len ? len : 1);
    assert_non_null(copy);
    if (len)
        memcpy(copy, buf, len);
    gguf_file *f = NULL;
    int rc = gguf_open_memory(copy, len, &f, err);
    if (rc == 0) {
        *sum += touch_all(f);
        gguf_close(&f);
    } else {
        assert_null(f);
        assert_true(rc < 0);
        assert_true(err->msg[0] != '\0');
    }
    free(copy);
    return rc;
}

static void test_truncation_sweep(void **state)
{
    (void)state;
    size_t size;
    uint8_t *buf = small_file(&size);
    unsigned sum = 0;
    greta_error err = {0};
    for (size_t len = 0; len < size; len++) {
        int rc = open_copy(buf, len, &err, &sum);
        if (rc == 0)
            fail_msg("a %zu-byte prefix of the %zu-byte file opened", len, size);
    }
    assert_int_equal(open_copy(buf, size, &err, &sum), 0);
    printf("  small file: %zu prefixes failed cleanly\n", size);
    free(buf);
}

static void test_truncation_sweep_real(void **state)
{
    (void)state;
    GRETA_TESTDATA_OR_SKIP(path, "stories260K.gguf");
    size_t size;
    uint8_t *buf = (uint8_t *)greta_read_file(path, &size);
    assert_non_null(buf);
    /* every cut through the header and the first tensor's data */
    size_t stop = 14176 + 64;
    unsigned sum = 0;
    greta_error err = {0};
    for (size_t len = 0; len < stop; len++)
        assert_true(open_copy(buf, len, &err, &sum) < 0);
    /* and a few cuts further in */
    for (size_t len = stop; len < size; len += 4099)
        assert_true(open_copy(buf, len, &err, &sum) < 0);
    assert_true(open_copy(buf, size - 1, &err, &sum) < 0);
    assert_non_null(strstr(err.msg, "past the end"));
    assert_int_equal(open_copy(buf, size, &err, &sum), 0);
    free(buf);
}

static void test_mutation_sweep(void **state)
{
    (void)state;
    size_t size;
    uint8_t *buf = small_file(&size);
    uint8_t *m = malloc(size);
    unsigned sum = 0;
    size_t opened = 0, failed = 0;
    for (size_t pos = 0; pos < size; pos++) {
        const uint8_t vals[] = {0x00, 0xff, (uint8_t)(buf[pos] ^ 0x01), (uint8_t)(buf[pos] ^ 0x80),
                                (uint8_t)(buf[pos] + 8)};
        for (size_t k = 0; k < sizeof vals; k++) {
            memcpy(m, buf, size);
            m[pos] = vals[k];
            greta_error err = {0};
            if (open_copy(m, size, &err, &sum) == 0)
                opened++;
            else
                failed++;
        }
    }
    printf("  mutations: %zu opened, %zu rejected (checksum %u)\n", opened, failed, sum);
    assert_true(failed > 0 && opened > 0);
    free(m);
    free(buf);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bad_files),
        cmocka_unit_test(test_truncation_sweep),
        cmocka_unit_test(test_truncation_sweep_real),
        cmocka_unit_test(test_mutation_sweep),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
