/* test_gguf_roundtrip.c - writer -> reader round trips, typed lookups,
 * writer error handling, copying metadata between files, and every real
 * GGUF file in the test data. */
#include "test_util.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "common/gguf.h"
#include "kernels/quant.h"

static const char *tmp_path(const char *name)
{
    static char path[4600];
    const char *dir = greta_test_tmpdir("gguf_roundtrip");
    assert_non_null(dir);
    snprintf(path, sizeof path, "%s/%s", dir, name);
    return path;
}

static uint64_t file_bytes(const char *path)
{
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    return (uint64_t)st.st_size;
}

/* Deep equality of two decoded values (strings and nested arrays included). */
static int value_eq(const gguf_value *a, const gguf_value *b)
{
    if (a->type != b->type)
        return 0;
    switch (a->type) {
    case GGUF_TYPE_INT8: case GGUF_TYPE_INT16: case GGUF_TYPE_INT32: case GGUF_TYPE_INT64:
        return a->v.i64 == b->v.i64;
    case GGUF_TYPE_FLOAT32: case GGUF_TYPE_FLOAT64:
        return memcmp(&a->v.f64, &b->v.f64, sizeof(double)) == 0;
    case GGUF_TYPE_STRING:
        return a->v.str.len == b->v.str.len && memcmp(a->v.str.ptr, b->v.str.ptr, a->v.str.len) == 0;
    case GGUF_TYPE_ARRAY: {
        if (a->v.arr.elem_type != b->v.arr.elem_type || a->v.arr.count != b->v.arr.count)
            return 0;
        gguf_type et = a->v.arr.elem_type;
        if (et == GGUF_TYPE_STRING || et == GGUF_TYPE_ARRAY) {
            for (uint64_t i = 0; i < a->v.arr.count; i++)
                if (!value_eq(&a->v.arr.items[i], &b->v.arr.items[i]))
                    return 0;
            return 1;
        }
        size_t sz = et == GGUF_TYPE_UINT8 || et == GGUF_TYPE_INT8 || et == GGUF_TYPE_BOOL ? 1
                    : et == GGUF_TYPE_UINT16 || et == GGUF_TYPE_INT16                      ? 2
                    : et == GGUF_TYPE_UINT32 || et == GGUF_TYPE_INT32 || et == GGUF_TYPE_FLOAT32 ? 4
                                                                                                   : 8;
        return a->v.arr.count == 0 || memcmp(a->v.arr.data, b->v.arr.data, sz * a->v.arr.count) == 0;
    }
    default:
        return a->v.u64 == b->v.u64;
    }
}

/* ---- every value type ---------------------------------------------------------- */

typedef struct tensor_spec {
    const char *name;
    uint32_t n_dims;
    uint64_t ne[4];
    uint32_t type;
} tensor_spec;

static const tensor_spec k_tensors[] = {
    {"t.f32", 2, {3, 5, 1, 1}, GGML_TYPE_F32},
    {"t.f16", 3, {7, 2, 3, 1}, GGML_TYPE_F16},
    {"t.bf16", 1, {9, 1, 1, 1}, GGML_TYPE_BF16},
    {"t.q4_0", 2, {64, 3, 1, 1}, GGML_TYPE_Q4_0},
    {"t.q8_0", 4, {32, 2, 2, 2}, GGML_TYPE_Q8_0},
    {"t.q4_k", 2, {256, 2, 1, 1}, GGML_TYPE_Q4_K},
    {"t.q5_k", 2, {512, 1, 1, 1}, GGML_TYPE_Q5_K},
    {"t.q6_k", 2, {256, 3, 1, 1}, GGML_TYPE_Q6_K},
};
#define N_TENSORS (sizeof k_tensors / sizeof k_tensors[0])

static uint8_t pattern(size_t tensor, uint64_t i) { return (uint8_t)(tensor * 37 + i * 13 + (i >> 8)); }

/* Builds the values used by the round trip: scalars of all 11 fixed types,
 * a string, arrays of each fixed type, of strings, and arrays of arrays. */
typedef struct values {
    gguf_value scalars[12];
    const char *scalar_keys[12];
    size_t n_scalars;
} values;

static const uint8_t a_u8[] = {0, 1, 255};
static const int8_t a_i8[] = {-128, 0, 127};
static const uint16_t a_u16[] = {0, 65535};
static const int16_t a_i16[] = {-32768, 32767, -1};
static const uint32_t a_u32[] = {0, 4294967295u, 7};
static const int32_t a_i32[] = {-2147483647 - 1, 2147483647, -5};
static const float a_f32[] = {1.5f, -0.0f, 3.4e38f, 1e-45f};
static const uint8_t a_bool[] = {1, 0, 1};
static const uint64_t a_u64[] = {UINT64_MAX, 0};
static const int64_t a_i64[] = {INT64_MIN, INT64_MAX};
static const double a_f64[] = {3.141592653589793, -1e300};

static void write_everything(const char *path, uint32_t alignment, uint64_t *declared_size)
{
    greta_error err = {0};
    gguf_writer *w = gguf_writer_create(&err);
    assert_non_null(w);
    if (alignment)
        gguf_writer_set_alignment(w, alignment);

    assert_int_equal(gguf_writer_set_u32(w, "s.u32", 4000000000u), 0);
    assert_int_equal(gguf_writer_set_i32(w, "s.i32", -123456), 0);
    assert_int_equal(gguf_writer_set_u64(w, "s.u64", UINT64_MAX - 1), 0);
    assert_int_equal(gguf_writer_set_f32(w, "s.f32", 0.1f), 0);
    assert_int_equal(gguf_writer_set_bool(w, "s.bool", true), 0);
    assert_int_equal(gguf_writer_set_str(w, "s.str", "h\xc3\xa9llo \"w\"\n"), 0);
    assert_int_equal(gguf_writer_set_str(w, "s.empty", ""), 0);
    /* the types without a dedicated setter go through set_value */
    gguf_value v = {.type = GGUF_TYPE_UINT8, .v.u64 = 200};
    assert_int_equal(gguf_writer_set_value(w, "s.u8", &v), 0);
    v = (gguf_value){.type = GGUF_TYPE_INT8, .v.i64 = -100};
    assert_int_equal(gguf_writer_set_value(w, "s.i8", &v), 0);
    v = (gguf_value){.type = GGUF_TYPE_UINT16, .v.u64 = 65000};
    assert_int_equal(gguf_writer_set_value(w, "s.u16", &v), 0);
    v = (gguf_value){.type = GGUF_TYPE_INT16, .v.i64 = -30000};
    assert_int_equal(gguf_writer_set_value(w, "s.i16", &v), 0);
    v = (gguf_value){.type = GGUF_TYPE_INT64, .v.i64 = INT64_MIN + 3};
    assert_int_equal(gguf_writer_set_value(w, "s.i64", &v), 0);
    v = (gguf_value){.type = GGUF_TYPE_FLOAT64, .v.f64 = -2.718281828459045};
    assert_int_equal(gguf_writer_set_value(w, "s.f64", &v), 0);

    assert_int_equal(gguf_writer_set_arr(w, "a.u8", GGUF_TYPE_UINT8, a_u8, 3), 0);
    assert_int_equal(gguf_writer_set_arr(w, "a.i8", GGUF_TYPE_INT8, a_i8, 3), 0);
    assert_int_equal(gguf_writer_set_arr(w, "a.u16", GGUF_TYPE_UINT16, a_u16, 2), 0);
    assert_int_equal(gguf_writer_set_arr(w, "a.i16", GGUF_TYPE_INT16, a_i16, 3), 0);
    assert_int_equal(gguf_writer_set_arr(w, "a.u32", GGUF_TYPE_UINT32, a_u32, 3), 0);
    assert_int_equal(gguf_writer_set_arr(w, "a.i32", GGUF_TYPE_INT32, a_i32, 3), 0);
    assert_int_equal(gguf_writer_set_arr(w, "a.f32", GGUF_TYPE_FLOAT32, a_f32, 4), 0);
    assert_int_equal(gguf_writer_set_arr(w, "a.bool", GGUF_TYPE_BOOL, a_bool, 3), 0);
    assert_int_equal(gguf_writer_set_arr(w, "a.u64", GGUF_TYPE_UINT64, a_u64, 2), 0);
    assert_int_equal(gguf_writer_set_arr(w, "a.i64", GGUF_TYPE_INT64, a_i64, 2), 0);
    assert_int_equal(gguf_writer_set_arr(w, "a.f64", GGUF_TYPE_FLOAT64, a_f64, 2), 0);
    assert_int_equal(gguf_writer_set_arr(w, "a.empty", GGUF_TYPE_UINT32, NULL, 0), 0);
    gguf_str strs[] = {{"alpha", 5}, {"", 0}, {"with\0nul", 8}};
    assert_int_equal(gguf_writer_set_arr_str(w, "a.str", strs, 3), 0);

    /* array of arrays: [[1,2,3],[]] of u32, and [[["x","yz"]],[[]]] of strings */
    gguf_value inner_u32[2] = {
        {.type = GGUF_TYPE_ARRAY, .v.arr = {GGUF_TYPE_UINT32, 3, (const uint8_t *)a_u32, NULL}},
        {.type = GGUF_TYPE_ARRAY, .v.arr = {GGUF_TYPE_UINT32, 0, NULL, NULL}},
    };
    v = (gguf_value){.type = GGUF_TYPE_ARRAY, .v.arr = {GGUF_TYPE_ARRAY, 2, NULL, inner_u32}};
    assert_int_equal(gguf_writer_set_value(w, "a.nested", &v), 0);
    gguf_value leaf_strs[2] = {{.type = GGUF_TYPE_STRING, .v.str = {"x", 1}},
                               {.type = GGUF_TYPE_STRING, .v.str = {"yz", 2}}};
    gguf_value mid[2] = {
        {.type = GGUF_TYPE_ARRAY, .v.arr = {GGUF_TYPE_STRING, 2, NULL, leaf_strs}},
        {.type = GGUF_TYPE_ARRAY, .v.arr = {GGUF_TYPE_STRING, 0, NULL, NULL}},
    };
    gguf_value outer[2] = {
        {.type = GGUF_TYPE_ARRAY, .v.arr = {GGUF_TYPE_ARRAY, 1, NULL, &mid[0]}},
        {.type = GGUF_TYPE_ARRAY, .v.arr = {GGUF_TYPE_ARRAY, 1, NULL, &mid[1]}},
    };
    v = (gguf_value){.type = GGUF_TYPE_ARRAY, .v.arr = {GGUF_TYPE_ARRAY, 2, NULL, outer}};
    assert_int_equal(gguf_writer_set_value(w, "a.nested3", &v), 0);

    for (size_t i = 0; i < N_TENSORS; i++)
        assert_int_equal(gguf_writer_add_tensor(w, k_tensors[i].name, k_tensors[i].n_dims,
                                                k_tensors[i].ne, k_tensors[i].type),
                         0);
    *declared_size = gguf_writer_file_size(w);
    assert_int_equal(gguf_writer_begin(w, path, &err), 0);
    /* stream each tensor in uneven chunks, and the last two in one call */
    uint8_t buf[4096];
    for (size_t i = 0; i + 2 < N_TENSORS; i++) {
        uint64_t n = 1;
        for (int d = 0; d < 4; d++)
            n *= k_tensors[i].ne[d];
        uint64_t bytes = ggml_row_bytes(k_tensors[i].type, k_tensors[i].ne[0]) * (n / k_tensors[i].ne[0]);
        uint64_t done = 0;
        size_t chunk = 1;
        while (done < bytes) {
            size_t c = chunk;
            if (c > bytes - done)
                c = (size_t)(bytes - done);
            for (size_t j = 0; j < c; j++)
                buf[j] = pattern(i, done + j);
            assert_int_equal(gguf_writer_write_data(w, buf, c, &err), 0);
            done += c;
            chunk = chunk * 3 + 1;
        }
    }
    uint64_t b6 = ggml_row_bytes(GGML_TYPE_Q5_K, 512), b7 = ggml_row_bytes(GGML_TYPE_Q6_K, 256) * 3;
    assert_true(b6 + b7 <= sizeof buf);
    for (uint64_t j = 0; j < b6; j++)
        buf[j] = pattern(6, j);
    for (uint64_t j = 0; j < b7; j++)
        buf[b6 + j] = pattern(7, j);
    assert_int_equal(gguf_writer_write_data(w, buf, (size_t)(b6 + b7), &err), 0);
    assert_int_equal(gguf_writer_finish(w, &err), 0);
    gguf_writer_destroy(&w);
    assert_null(w);
}

static void check_everything(const gguf_file *f, uint32_t alignment)
{
    greta_error err = {0};
    assert_int_equal(gguf_version(f), 3);
    assert_int_equal(gguf_alignment(f), alignment);
    assert_int_equal(gguf_data_offset(f) % alignment, 0);
    /* insertion order is kept (general.alignment first when set) */
    uint64_t first = alignment != GGUF_DEFAULT_ALIGNMENT ? 1 : 0;
    assert_string_equal(gguf_kv_at(f, first)->key, "s.u32");
    assert_string_equal(gguf_kv_at(f, gguf_n_kv(f) - 1)->key, "a.nested3");
    assert_int_equal(gguf_n_kv(f), first + 28);
    if (first)
        assert_string_equal(gguf_kv_at(f, 0)->key, "general.alignment");
    else
        assert_null(gguf_find_kv(f, "general.alignment"));

    uint32_t u32;
    int32_t i32;
    uint64_t u64;
    float f32;
    bool b;
    gguf_str s;
    assert_int_equal(gguf_get_u32(f, "s.u32", &u32, &err), 0);
    assert_int_equal(u32, 4000000000u);
    assert_int_equal(gguf_get_i32(f, "s.i32", &i32, &err), 0);
    assert_int_equal(i32, -123456);
    assert_int_equal(gguf_get_u64(f, "s.u64", &u64, &err), 0);
    assert_true(u64 == UINT64_MAX - 1);
    assert_int_equal(gguf_get_f32(f, "s.f32", &f32, &err), 0);
    assert_true(f32 == 0.1f);
    assert_int_equal(gguf_get_bool(f, "s.bool", &b, &err), 0);
    assert_true(b);
    assert_int_equal(gguf_get_str(f, "s.str", &s, &err), 0);
    assert_int_equal(s.len, 11);
    assert_memory_equal(s.ptr, "h\xc3\xa9llo \"w\"\n", 11);
    assert_int_equal(gguf_get_str(f, "s.empty", &s, &err), 0);
    assert_int_equal(s.len, 0);
    assert_int_equal(gguf_find_kv(f, "s.u8")->value.v.u64, 200);
    assert_int_equal(gguf_find_kv(f, "s.i8")->value.v.i64, -100);
    assert_int_equal(gguf_find_kv(f, "s.u16")->value.v.u64, 65000);
    assert_int_equal(gguf_find_kv(f, "s.i16")->value.v.i64, -30000);
    assert_true(gguf_find_kv(f, "s.i64")->value.v.i64 == INT64_MIN + 3);
    assert_true(gguf_find_kv(f, "s.f64")->value.v.f64 == -2.718281828459045);
    assert_int_equal(gguf_find_kv(f, "s.i8")->value.type, GGUF_TYPE_INT8);

    /* integer getters convert when the value fits */
    assert_int_equal(gguf_get_u32(f, "s.u8", &u32, &err), 0);
    assert_int_equal(u32, 200);
    assert_int_equal(gguf_get_i32(f, "s.i16", &i32, &err), 0);
    assert_int_equal(i32, -30000);
    assert_int_equal(gguf_get_f32(f, "s.f64", &f32, &err), 0);
    assert_true(f32 == (float)-2.718281828459045);

    const gguf_value *a;
    assert_int_equal(gguf_get_arr(f, "a.u32", GGUF_TYPE_UINT32, &a, &err), 0);
    assert_int_equal(a->v.arr.count, 3);
    assert_int_equal(gguf_arr_u32(a, 1), 4294967295u);
    assert_int_equal(gguf_get_arr(f, "a.i32", GGUF_TYPE_INT32, &a, &err), 0);
    assert_int_equal(gguf_arr_i32(a, 0), INT32_MIN);
    assert_int_equal(gguf_arr_i32(a, 2), -5);
    assert_int_equal(gguf_get_arr(f, "a.f32", GGUF_TYPE_FLOAT32, &a, &err), 0);
    assert_true(gguf_arr_f32(a, 0) == 1.5f && gguf_arr_f32(a, 2) == 3.4e38f && gguf_arr_f32(a, 3) == 1e-45f);
    assert_true(signbit(gguf_arr_f32(a, 1)));
    struct {
        const char *key;
        gguf_type t;
        const void *data;
        size_t bytes;
    } fixed[] = {
        {"a.u8", GGUF_TYPE_UINT8, a_u8, sizeof a_u8},     {"a.i8", GGUF_TYPE_INT8, a_i8, sizeof a_i8},
        {"a.u16", GGUF_TYPE_UINT16, a_u16, sizeof a_u16}, {"a.i16", GGUF_TYPE_INT16, a_i16, sizeof a_i16},
        {"a.bool", GGUF_TYPE_BOOL, a_bool, sizeof a_bool}, {"a.u64", GGUF_TYPE_UINT64, a_u64, sizeof a_u64},
        {"a.i64", GGUF_TYPE_INT64, a_i64, sizeof a_i64},  {"a.f64", GGUF_TYPE_FLOAT64, a_f64, sizeof a_f64},
    };
    for (size_t i = 0; i < sizeof fixed / sizeof fixed[0]; i++) {
        assert_int_equal(gguf_get_arr(f, fixed[i].key, fixed[i].t, &a, &err), 0);
        assert_memory_equal(a->v.arr.data, fixed[i].data, fixed[i].bytes);
    }
    assert_int_equal(gguf_get_arr(f, "a.empty", GGUF_TYPE_COUNT, &a, &err), 0);
    assert_int_equal(a->v.arr.count, 0);
    assert_int_equal(gguf_get_arr(f, "a.str", GGUF_TYPE_STRING, &a, &err), 0);
    assert_int_equal(a->v.arr.count, 3);
    assert_int_equal(gguf_arr_str(a, 0).len, 5);
    assert_memory_equal(gguf_arr_str(a, 0).ptr, "alpha", 5);
    assert_int_equal(gguf_arr_str(a, 1).len, 0);
    assert_int_equal(gguf_arr_str(a, 2).len, 8);
    assert_memory_equal(gguf_arr_str(a, 2).ptr, "with\0nul", 8);

    assert_int_equal(gguf_get_arr(f, "a.nested", GGUF_TYPE_ARRAY, &a, &err), 0);
    assert_int_equal(a->v.arr.count, 2);
    assert_int_equal(a->v.arr.items[0].v.arr.elem_type, GGUF_TYPE_UINT32);
    assert_int_equal(a->v.arr.items[0].v.arr.count, 3);
    assert_int_equal(gguf_arr_u32(&a->v.arr.items[0], 2), 7);
    assert_int_equal(a->v.arr.items[1].v.arr.count, 0);
    assert_int_equal(gguf_get_arr(f, "a.nested3", GGUF_TYPE_ARRAY, &a, &err), 0);
    const gguf_value *m0 = &a->v.arr.items[0].v.arr.items[0];
    assert_int_equal(m0->v.arr.elem_type, GGUF_TYPE_STRING);
    assert_int_equal(m0->v.arr.count, 2);
    assert_memory_equal(gguf_arr_str(m0, 1).ptr, "yz", 2);
    assert_int_equal(a->v.arr.items[1].v.arr.items[0].v.arr.count, 0);

    /* tensors: shapes, sizes, alignment and data */
    assert_int_equal(gguf_n_tensors(f), N_TENSORS);
    uint64_t prev_end = 0;
    for (size_t i = 0; i < N_TENSORS; i++) {
        const gguf_tensor *t = gguf_tensor_at(f, i);
        assert_string_equal(t->name, k_tensors[i].name);
        assert_ptr_equal(gguf_find_tensor(f, k_tensors[i].name), t);
        assert_int_equal(t->n_dims, k_tensors[i].n_dims);
        assert_int_equal(t->type, k_tensors[i].type);
        uint64_t n = 1;
        for (int d = 0; d < 4; d++) {
            assert_int_equal(t->ne[d], k_tensors[i].ne[d]);
            n *= t->ne[d];
        }
        assert_int_equal(t->n_elements, n);
        assert_int_equal(t->nbytes, n / ggml_type_block_elems(t->type) * ggml_type_block_bytes(t->type));
        assert_int_equal(t->offset % alignment, 0);
        assert_true(t->offset >= prev_end);
        prev_end = t->offset + t->nbytes;
        const uint8_t *p = t->data;
        for (uint64_t j = 0; j < t->nbytes; j++)
            if (p[j] != pattern(i, j))
                fail_msg("tensor %s byte %llu differs", t->name, (unsigned long long)j);
    }
    assert_null(gguf_find_tensor(f, "t.missing"));
    assert_null(gguf_find_kv(f, "missing.key"));
}

static void test_roundtrip_all_types(void **state)
{
    (void)state;
    uint32_t aligns[] = {0, 64, 8, 4096};
    for (size_t k = 0; k < sizeof aligns / sizeof aligns[0]; k++) {
        char name[64];
        snprintf(name, sizeof name, "all-types-%u.gguf", aligns[k]);
        const char *path = tmp_path(name);
        uint64_t declared;
        write_everything(path, aligns[k], &declared);
        assert_int_equal(file_bytes(path), declared);
        uint32_t align = aligns[k] ? aligns[k] : GGUF_DEFAULT_ALIGNMENT;
        greta_error err = {0};
        gguf_file *f = NULL;
        assert_int_equal(gguf_open(path, &f, &err), 0);
        assert_string_equal(gguf_path(f), path);
        assert_int_equal(gguf_file_size(f), declared);
        check_everything(f, align);

        /* the same bytes through gguf_open_memory, from an odd address */
        size_t size;
        char *buf = greta_read_file(path, &size);
        assert_non_null(buf);
        char *odd = malloc(size + 1);
        memcpy(odd + 1, buf, size);
        gguf_file *g = NULL;
        assert_int_equal(gguf_open_memory(odd + 1, size, &g, &err), 0);
        assert_string_equal(gguf_path(g), "");
        check_everything(g, align);

        /* copy every kv into a new file; values must be equal */
        gguf_writer *w = gguf_writer_create(&err);
        for (uint64_t i = 0; i < gguf_n_kv(f); i++)
            assert_int_equal(gguf_writer_copy_kv(w, gguf_kv_at(f, i)), 0);
        const char *cpath = tmp_path("copy.gguf");
        assert_int_equal(gguf_writer_begin(w, cpath, &err), 0);
        assert_int_equal(gguf_writer_finish(w, &err), 0);
        gguf_writer_destroy(&w);
        gguf_file *c = NULL;
        assert_int_equal(gguf_open(cpath, &c, &err), 0);
        assert_int_equal(gguf_n_kv(c), gguf_n_kv(f));
        assert_int_equal(gguf_alignment(c), align);
        for (uint64_t i = 0; i < gguf_n_kv(f); i++) {
            assert_string_equal(gguf_kv_at(c, i)->key, gguf_kv_at(f, i)->key);
            assert_true(value_eq(&gguf_kv_at(c, i)->value, &gguf_kv_at(f, i)->value));
        }
        gguf_close(&c);
        gguf_close(&g);
        gguf_close(&f);
        assert_null(f);
        gguf_close(&f); /* closing NULL is fine */
        free(odd);
        free(buf);
    }
}

/* ---- typed lookup errors -------------------------------------------------------- */

static void test_lookup_errors(void **state)
{
    (void)state;
    const char *path = tmp_path("lookup.gguf");
    greta_error err = {0};
    gguf_writer *w = gguf_writer_create(&err);
    gguf_writer_set_str(w, "k.str", "x");
    gguf_writer_set_i32(w, "k.neg", -1);
    gguf_writer_set_u64(w, "k.big", 1ull << 40);
    gguf_writer_set_arr(w, "k.arr", GGUF_TYPE_FLOAT32, (float[]){1.0f}, 1);
    assert_int_equal(gguf_writer_begin(w, path, &err), 0);
    assert_int_equal(gguf_writer_finish(w, &err), 0);
    gguf_writer_destroy(&w);
    gguf_file *f = NULL;
    assert_int_equal(gguf_open(path, &f, &err), 0);
    uint32_t u32;
    int32_t i32;
    float f32;
    bool b;
    gguf_str s;
    const gguf_value *a;

    greta_error_clear(&err);
    assert_int_equal(gguf_get_u32(f, "k.missing", &u32, &err), GRETA_ERR_NOT_FOUND);
    assert_non_null(strstr(err.msg, "k.missing"));
    assert_int_equal(gguf_get_u32(f, "k.str", &u32, &err), GRETA_ERR_TYPE);
    assert_non_null(strstr(err.msg, "'k.str'"));
    assert_non_null(strstr(err.msg, "string"));
    assert_non_null(strstr(err.msg, "u32"));
    assert_int_equal(gguf_get_u32(f, "k.neg", &u32, &err), GRETA_ERR_TYPE);
    assert_non_null(strstr(err.msg, "k.neg"));
    assert_int_equal(gguf_get_u32(f, "k.big", &u32, &err), GRETA_ERR_TYPE);
    assert_int_equal(gguf_get_i32(f, "k.big", &i32, &err), GRETA_ERR_TYPE);
    assert_non_null(strstr(err.msg, "does not fit i32"));
    assert_int_equal(gguf_get_f32(f, "k.neg", &f32, &err), GRETA_ERR_TYPE);
    assert_non_null(strstr(err.msg, "i32"));
    assert_non_null(strstr(err.msg, "f32"));
    assert_int_equal(gguf_get_bool(f, "k.str", &b, &err), GRETA_ERR_TYPE);
    assert_int_equal(gguf_get_str(f, "k.neg", &s, &err), GRETA_ERR_TYPE);
    assert_int_equal(gguf_get_arr(f, "k.str", GGUF_TYPE_COUNT, &a, &err), GRETA_ERR_TYPE);
    assert_int_equal(gguf_get_arr(f, "k.arr", GGUF_TYPE_INT32, &a, &err), GRETA_ERR_TYPE);
    assert_non_null(strstr(err.msg, "array[f32]"));
    assert_non_null(strstr(err.msg, "array[i32]"));
    assert_int_equal(gguf_get_arr(f, "k.nothing", GGUF_TYPE_INT32, &a, &err), GRETA_ERR_NOT_FOUND);
    assert_int_equal(gguf_get_i32(f, "k.neg", &i32, &err), 0);
    assert_int_equal(i32, -1);
    gguf_close(&f);

    assert_int_equal(gguf_open(tmp_path("does-not-exist.gguf"), &f, &err), GRETA_ERR_NOT_FOUND);
    assert_null(f);
    assert_non_null(strstr(err.msg, "does-not-exist.gguf"));
}

/* ---- writer misuse ------------------------------------------------------------------ */

static void test_writer_errors(void **state)
{
    (void)state;
    greta_error err = {0};
    gguf_writer *w = gguf_writer_create(&err);
    assert_int_equal(gguf_writer_set_u32(w, "a", 1), 0);
    assert_int_equal(gguf_writer_set_str(w, "a", "again"), GRETA_ERR_INVALID);
    assert_non_null(strstr(gguf_writer_error(w)->msg, "duplicate key 'a'"));
    assert_int_equal(gguf_writer_set_u32(w, "", 1), GRETA_ERR_INVALID);
    assert_int_equal(gguf_writer_set_u32(w, "general.alignment", 48), GRETA_ERR_INVALID);
    assert_non_null(strstr(gguf_writer_error(w)->msg, "general.alignment"));
    assert_int_equal(gguf_writer_set_str(w, "general.alignment", "64"), GRETA_ERR_INVALID);
    assert_int_equal(gguf_writer_set_arr(w, "b", GGUF_TYPE_STRING, "x", 1), GRETA_ERR_INVALID);
    assert_int_equal(gguf_writer_set_arr(w, "b", GGUF_TYPE_BOOL, (uint8_t[]){2}, 1), GRETA_ERR_INVALID);
    gguf_value bad = {.type = GGUF_TYPE_BOOL, .v.u64 = 5};
    assert_int_equal(gguf_writer_set_value(w, "c", &bad), GRETA_ERR_INVALID);

    uint64_t ne[2] = {32, 2};
    assert_int_equal(gguf_writer_add_tensor(w, "t", 2, ne, GGML_TYPE_Q8_0), 0);
    assert_int_equal(gguf_writer_add_tensor(w, "t", 2, ne, GGML_TYPE_F32), GRETA_ERR_INVALID);
    assert_non_null(strstr(gguf_writer_error(w)->msg, "duplicate tensor 't'"));
    assert_int_equal(gguf_writer_add_tensor(w, "u", 2, ne, GGML_TYPE_Q4_1), GRETA_ERR_UNSUPPORTED);
    assert_int_equal(gguf_writer_add_tensor(w, "u", 2, ne, GGML_TYPE_Q8_K), GRETA_ERR_UNSUPPORTED);
    assert_int_equal(gguf_writer_add_tensor(w, "u", 2, (uint64_t[]){33, 1}, GGML_TYPE_Q8_0), GRETA_ERR_INVALID);
    assert_int_equal(gguf_writer_add_tensor(w, "u", 5, ne, GGML_TYPE_F32), GRETA_ERR_INVALID);
    assert_int_equal(gguf_writer_add_tensor(w, "u", 2, (uint64_t[]){4, 0}, GGML_TYPE_F32), GRETA_ERR_INVALID);
    assert_int_equal(gguf_writer_add_tensor(w, "u", 2, (uint64_t[]){1ull << 40, 1ull << 40}, GGML_TYPE_F32),
                     GRETA_ERR_INVALID);
    assert_int_equal(gguf_writer_add_tensor(w, "v", 1, (uint64_t[]){5}, GGML_TYPE_F16), 0);

    /* too few bytes: finish fails and no file appears */
    const char *path = tmp_path("short.gguf");
    remove(path);
    assert_int_equal(gguf_writer_write_data(w, "x", 1, &err), GRETA_ERR_STATE);
    assert_int_equal(gguf_writer_begin(w, path, &err), 0);
    assert_int_equal(gguf_writer_set_u32(w, "late", 1), GRETA_ERR_STATE);
    assert_int_equal(gguf_writer_add_tensor(w, "late", 1, ne, GGML_TYPE_F32), GRETA_ERR_STATE);
    uint8_t data[80] = {0};
    assert_int_equal(gguf_writer_write_data(w, data, 68, &err), 0);
    assert_int_equal(gguf_writer_finish(w, &err), GRETA_ERR_INVALID);
    assert_non_null(strstr(err.msg, "'v'"));
    gguf_writer_destroy(&w);
    struct stat st;
    assert_int_not_equal(stat(path, &st), 0);

    /* too many bytes */
    w = gguf_writer_create(&err);
    assert_int_equal(gguf_writer_add_tensor(w, "v", 1, (uint64_t[]){5}, GGML_TYPE_F16), 0);
    assert_int_equal(gguf_writer_begin(w, path, &err), 0);
    assert_int_equal(gguf_writer_write_data(w, data, 11, &err), GRETA_ERR_INVALID);
    assert_non_null(strstr(err.msg, "more than"));
    assert_int_equal(gguf_writer_finish(w, &err), GRETA_ERR_STATE);
    gguf_writer_destroy(&w);
    assert_int_not_equal(stat(path, &st), 0);

    /* exact: works, with zeros written as a hole */
    w = gguf_writer_create(&err);
    assert_int_equal(gguf_writer_add_tensor(w, "v", 1, (uint64_t[]){5}, GGML_TYPE_F16), 0);
    assert_int_equal(gguf_writer_add_tensor(w, "z", 1, (uint64_t[]){1000}, GGML_TYPE_F32), 0);
    uint64_t declared = gguf_writer_file_size(w);
    assert_int_equal(gguf_writer_begin(w, path, &err), 0);
    assert_int_equal(gguf_writer_write_data(w, "0123456789", 10, &err), 0);
    assert_int_equal(gguf_writer_write_zeros(w, 4000, &err), 0);
    assert_int_equal(gguf_writer_finish(w, &err), 0);
    assert_int_equal(gguf_writer_finish(w, &err), GRETA_ERR_STATE);
    gguf_writer_destroy(&w);
    assert_int_equal(file_bytes(path), declared);
    gguf_file *f = NULL;
    assert_int_equal(gguf_open(path, &f, &err), 0);
    assert_memory_equal(gguf_find_tensor(f, "v")->data, "0123456789", 10);
    const float *z = gguf_find_tensor(f, "z")->data;
    for (int i = 0; i < 1000; i++)
        assert_true(z[i] == 0.0f);
    gguf_close(&f);

    /* cannot create the file */
    w = gguf_writer_create(&err);
    assert_int_equal(gguf_writer_begin(w, "/nonexistent-dir/x.gguf", &err), GRETA_ERR_IO);
    assert_non_null(strstr(err.msg, "/nonexistent-dir/x.gguf"));
    gguf_writer_destroy(&w);
    gguf_writer_destroy(&w); /* NULL is fine */
}

/* ---- real files ------------------------------------------------------------------------ */

typedef struct real_file {
    const char *name;
    uint64_t n_tensors, n_kv, data_offset, params;
} real_file;

static void check_real(const real_file *r)
{
    GRETA_TESTDATA_OR_SKIP(path, r->name);
    greta_error err = {0};
    gguf_file *f = NULL;
    if (gguf_open(path, &f, &err) != 0)
        fail_msg("%s: %s", r->name, err.msg);
    assert_int_equal(gguf_version(f), 3);
    assert_int_equal(gguf_alignment(f), 32);
    assert_int_equal(gguf_n_tensors(f), r->n_tensors);
    assert_int_equal(gguf_n_kv(f), r->n_kv);
    if (r->data_offset)
        assert_int_equal(gguf_data_offset(f), r->data_offset);
    uint64_t params = 0, end = 0;
    for (uint64_t i = 0; i < gguf_n_tensors(f); i++) {
        const gguf_tensor *t = gguf_tensor_at(f, i);
        params += t->n_elements;
        if (t->offset + t->nbytes > end)
            end = t->offset + t->nbytes;
    }
    if (r->params)
        assert_int_equal(params, r->params);
    if (r->n_tensors) /* models: the last tensor ends at the end of the file */
        assert_int_equal(gguf_data_offset(f) + end, gguf_file_size(f));
    gguf_str s;
    assert_int_equal(gguf_get_str(f, "general.architecture", &s, &err), 0);
    assert_int_equal(s.len, 5);
    assert_memory_equal(s.ptr, "llama", 5);
    const gguf_value *tok;
    assert_int_equal(gguf_get_arr(f, "tokenizer.ggml.tokens", GGUF_TYPE_STRING, &tok, &err), 0);
    assert_true(tok->v.arr.count == 512 || tok->v.arr.count == 32000);
    assert_memory_equal(gguf_arr_str(tok, 1).ptr, "<s>", 3);
    uint32_t bos;
    assert_int_equal(gguf_get_u32(f, "tokenizer.ggml.bos_token_id", &bos, &err), 0);
    assert_int_equal(bos, 1);
    gguf_close(&f);
}

static void test_real_files(void **state)
{
    (void)state;
    static const real_file files[] = {
        {"stories260K.gguf", 48, 19, 14176, 292800},
        {"llama-2-tiny-random.gguf", 12, 18, 724416, 513048},
        {"ggml-vocab-llama-spm.gguf", 0, 22, 0, 0},
        {"quant/gqa-F32.gguf", 30, 19, 0, 0},
        {"quant/gqa-BF16.gguf", 30, 20, 0, 0},
        {"quant/gqa-Q4_0.gguf", 30, 20, 0, 0},
        {"quant/gqa-Q8_0.gguf", 30, 20, 0, 0},
        {"quant/gqa-Q4_K_S.gguf", 30, 20, 0, 0},
        {"quant/gqa-Q4_K_M.gguf", 30, 20, 0, 0},
        {"quant/gqa-Q5_K_M.gguf", 30, 20, 0, 0},
        {"quant/gqa-Q6_K.gguf", 30, 20, 0, 0},
    };
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++)
        check_real(&files[i]);
}

/* A real file copied through the writer (metadata by copy_kv, tensors by
 * streaming) comes out byte-identical. */
static void test_real_copy_identical(void **state)
{
    (void)state;
    static const char *names[] = {"stories260K.gguf", "llama-2-tiny-random.gguf", "quant/gqa-Q4_K_M.gguf"};
    for (size_t k = 0; k < sizeof names / sizeof names[0]; k++) {
        GRETA_TESTDATA_OR_SKIP(path, names[k]);
        greta_error err = {0};
        gguf_file *f = NULL;
        assert_int_equal(gguf_open(path, &f, &err), 0);
        gguf_writer *w = gguf_writer_create(&err);
        for (uint64_t i = 0; i < gguf_n_kv(f); i++)
            assert_int_equal(gguf_writer_copy_kv(w, gguf_kv_at(f, i)), 0);
        for (uint64_t i = 0; i < gguf_n_tensors(f); i++) {
            const gguf_tensor *t = gguf_tensor_at(f, i);
            assert_int_equal(gguf_writer_add_tensor(w, t->name, t->n_dims, t->ne, t->type), 0);
        }
        assert_int_equal(gguf_writer_file_size(w), gguf_file_size(f));
        const char *out = tmp_path("copy-real.gguf");
        assert_int_equal(gguf_writer_begin(w, out, &err), 0);
        for (uint64_t i = 0; i < gguf_n_tensors(f); i++) {
            const gguf_tensor *t = gguf_tensor_at(f, i);
            assert_int_equal(gguf_writer_write_data(w, t->data, t->nbytes, &err), 0);
        }
        assert_int_equal(gguf_writer_finish(w, &err), 0);
        gguf_writer_destroy(&w);
        size_t n1, n2;
        char *a = greta_read_file(path, &n1), *b = greta_read_file(out, &n2);
        assert_int_equal(n1, n2);
        assert_memory_equal(a, b, n1);
        free(a);
        free(b);
        gguf_close(&f);
    }
}

/* GGUF v2 has the v3 layout (64-bit counts and lengths): it must open too. */
static void test_version2(void **state)
{
    (void)state;
    uint64_t declared;
    const char *path = tmp_path("v2.gguf");
    write_everything(path, 0, &declared);
    size_t size;
    char *buf = greta_read_file(path, &size);
    assert_non_null(buf);
    assert_int_equal(buf[4], 3);
    buf[4] = 2;
    greta_error err = {0};
    gguf_file *f = NULL;
    assert_int_equal(gguf_open_memory(buf, size, &f, &err), 0);
    assert_int_equal(gguf_version(f), 2);
    assert_int_equal(gguf_n_tensors(f), N_TENSORS);
    gguf_close(&f);
    free(buf);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_roundtrip_all_types),
        cmocka_unit_test(test_version2),
        cmocka_unit_test(test_lookup_errors),
        cmocka_unit_test(test_writer_errors),
        cmocka_unit_test(test_real_files),
        cmocka_unit_test(test_real_copy_identical),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
