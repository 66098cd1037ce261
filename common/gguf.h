/* gguf.h - GGUF v2/v3 reader (mmap) and writer.
 *
 * File layout (little-endian, see ../shared/docs/FORMATS.md):
 *   u32 magic 'GGUF' | u32 version | u64 n_tensors | u64 n_kv
 *   n_kv      x { string key | u32 value_type | value }
 *   n_tensors x { string name | u32 n_dims | u64 ne[n_dims] | u32 ggml_type | u64 offset }
 *   padding to general.alignment (default 32)
 *   tensor data, each tensor at data_start + offset
 * string = u64 length + bytes (no NUL).
 *
 * The reader maps the file read-only and parses only the header: opening a
 * 4 GB model touches no tensor data. Every count, length and offset is checked
 * against the file size before use; a failure returns a negative greta_status
 * and a message naming the field and its byte offset.
 *
 * Strings returned by the reader point into the mapping and are NOT
 * NUL-terminated (use the length), except key and tensor names, which the
 * reader copies and terminates.
 */
#ifndef GRETA_GGUF_H
#define GRETA_GGUF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "error.h"

#define GGUF_MAGIC 0x46554747u /* "GGUF" little-endian */
#define GGUF_DEFAULT_ALIGNMENT 32
#define GGUF_MAX_DIMS 4

typedef enum gguf_type {
    GGUF_TYPE_UINT8 = 0,
    GGUF_TYPE_INT8 = 1,
    GGUF_TYPE_UINT16 = 2,
    GGUF_TYPE_INT16 = 3,
    GGUF_TYPE_UINT32 = 4,
    GGUF_TYPE_INT32 = 5,
    GGUF_TYPE_FLOAT32 = 6,
    GGUF_TYPE_BOOL = 7,
    GGUF_TYPE_STRING = 8,
    GGUF_TYPE_ARRAY = 9,
    GGUF_TYPE_UINT64 = 10,
    GGUF_TYPE_INT64 = 11,
    GGUF_TYPE_FLOAT64 = 12,
    GGUF_TYPE_COUNT
} gguf_type;

const char *gguf_type_name(gguf_type t);

/* A string inside the mapping (not NUL-terminated). */
typedef struct gguf_str {
    const char *ptr;
    uint64_t len;
} gguf_str;

/* One metadata value. Scalars are decoded; arrays keep a pointer to their
 * raw little-endian elements, plus decoded children for arrays of strings
 * and arrays of arrays (so element i is O(1)). */
typedef struct gguf_value gguf_value;
struct gguf_value {
    gguf_type type;
    union {
        uint64_t u64;  /* UINT8/16/32/64, BOOL (0/1) */
        int64_t i64;   /* INT8/16/32/64 */
        double f64;    /* FLOAT32/FLOAT64 */
        gguf_str str;  /* STRING */
        struct {
            gguf_type elem_type;
            uint64_t count;
            const uint8_t *data;    /* raw elements (fixed-size types) */
            gguf_value *items;      /* decoded elements for STRING/ARRAY, else NULL */
        } arr;
    } v;
};

typedef struct gguf_kv {
    char *key;           /* NUL-terminated copy */
    gguf_value value;
    uint64_t file_offset; /* byte offset of the key's length field */
} gguf_kv;

typedef struct gguf_tensor {
    char *name;           /* NUL-terminated copy */
    uint32_t n_dims;
    uint64_t ne[GGUF_MAX_DIMS]; /* ne[0] = row length; unused dims are 1 */
    uint32_t type;        /* ggml type id (kernels/quant.h: ggml_type) */
    uint64_t offset;      /* relative to the data section */
    uint64_t n_elements;
    uint64_t nbytes;
    const void *data;     /* inside the mapping */
} gguf_tensor;

typedef struct gguf_file gguf_file; /* opaque */

/* Opens and validates a GGUF file. On failure *out is NULL. */
int gguf_open(const char *path, gguf_file **out, greta_error *err);
/* Same over a caller-owned buffer (kept alive until close; used by tests). */
int gguf_open_memory(const void *buf, size_t size, gguf_file **out, greta_error *err);
void gguf_close(gguf_file **f);

uint32_t gguf_version(const gguf_file *f);
uint32_t gguf_alignment(const gguf_file *f);
uint64_t gguf_file_size(const gguf_file *f);
uint64_t gguf_data_offset(const gguf_file *f); /* start of tensor data in the file */
const char *gguf_path(const gguf_file *f);     /* "" for memory files */

/* Metadata */
uint64_t gguf_n_kv(const gguf_file *f);
const gguf_kv *gguf_kv_at(const gguf_file *f, uint64_t i);
const gguf_kv *gguf_find_kv(const gguf_file *f, const char *key); /* NULL if missing */

/* Typed lookups. Missing key: GRETA_ERR_NOT_FOUND. Wrong type: GRETA_ERR_TYPE
 * with a message naming the key, the stored type and the wanted type.
 * Integer getters accept any integer type whose value fits the target. */
int gguf_get_u32(const gguf_file *f, const char *key, uint32_t *out, greta_error *err);
int gguf_get_i32(const gguf_file *f, const char *key, int32_t *out, greta_error *err);
int gguf_get_u64(const gguf_file *f, const char *key, uint64_t *out, greta_error *err);
int gguf_get_f32(const gguf_file *f, const char *key, float *out, greta_error *err); /* FLOAT32 or FLOAT64 */
int gguf_get_bool(const gguf_file *f, const char *key, bool *out, greta_error *err);
int gguf_get_str(const gguf_file *f, const char *key, gguf_str *out, greta_error *err);
/* Array lookup: checks the element type (pass GGUF_TYPE_COUNT to accept any). */
int gguf_get_arr(const gguf_file *f, const char *key, gguf_type elem_type,
                 const gguf_value **out, greta_error *err);

/* Element access for arrays (unaligned-safe). i must be < count. */
gguf_str gguf_arr_str(const gguf_value *arr, uint64_t i);
float gguf_arr_f32(const gguf_value *arr, uint64_t i);
int32_t gguf_arr_i32(const gguf_value *arr, uint64_t i);
uint32_t gguf_arr_u32(const gguf_value *arr, uint64_t i);

/* Tensors */
uint64_t gguf_n_tensors(const gguf_file *f);
const gguf_tensor *gguf_tensor_at(const gguf_file *f, uint64_t i);
const gguf_tensor *gguf_find_tensor(const gguf_file *f, const char *name); /* NULL if missing */

/* ---- Writer ---------------------------------------------------------------
 * Builds a GGUF v3 file: add metadata and tensor descriptions, then write the
 * header and stream tensor data in the order the tensors were added.
 *
 *   gguf_writer *w = gguf_writer_create(&err);
 *   gguf_writer_set_str(w, "general.architecture", "llama");
 *   gguf_writer_add_tensor(w, "tok.weight", 2, ne, GGML_TYPE_Q4_K);
 *   gguf_writer_begin(w, "out.gguf", &err);      // writes header + padding
 *   gguf_writer_write_data(w, bytes, n, &err);   // tensor data, in order
 *   gguf_writer_finish(w, &err);                 // pads, checks sizes, closes
 *   gguf_writer_destroy(&w);
 */
typedef struct gguf_writer gguf_writer;

gguf_writer *gguf_writer_create(greta_error *err);
void gguf_writer_destroy(gguf_writer **w);
void gguf_writer_set_alignment(gguf_writer *w, uint32_t alignment);
int gguf_writer_set_u32(gguf_writer *w, const char *key, uint32_t v);
int gguf_writer_set_i32(gguf_writer *w, const char *key, int32_t v);
int gguf_writer_set_u64(gguf_writer *w, const char *key, uint64_t v);
int gguf_writer_set_f32(gguf_writer *w, const char *key, float v);
int gguf_writer_set_bool(gguf_writer *w, const char *key, bool v);
int gguf_writer_set_str(gguf_writer *w, const char *key, const char *v);
/* Raw array of fixed-size elements (count elements of elem_type). */
int gguf_writer_set_arr(gguf_writer *w, const char *key, gguf_type elem_type,
                        const void *data, uint64_t count);
int gguf_writer_set_arr_str(gguf_writer *w, const char *key, const gguf_str *items, uint64_t count);
/* Copies a value read from another file (any type, including nested arrays). */
int gguf_writer_copy_kv(gguf_writer *w, const gguf_kv *kv);
/* Any value, described as the reader decodes it (scalars in u64/i64/f64,
 * strings, arrays with raw data or items; nesting allowed). */
int gguf_writer_set_value(gguf_writer *w, const char *key, const gguf_value *v);

int gguf_writer_add_tensor(gguf_writer *w, const char *name, uint32_t n_dims,
                           const uint64_t *ne, uint32_t ggml_type);
/* Total bytes the file will have (header + padding + aligned data). */
uint64_t gguf_writer_file_size(const gguf_writer *w);
int gguf_writer_begin(gguf_writer *w, const char *path, greta_error *err);
/* Appends tensor data; padding between tensors is inserted automatically
 * when one tensor's bytes are complete. */
int gguf_writer_write_data(gguf_writer *w, const void *data, size_t n, greta_error *err);
/* Appends n zero bytes of tensor data without writing them: the file gets a
 * hole (sparse on filesystems that support it). Used for zero-filled
 * tensors and for large test files. */
int gguf_writer_write_zeros(gguf_writer *w, uint64_t n, greta_error *err);
/* Pads, checks that exactly the declared bytes were written, closes the file
 * and renames "<path>.tmp" to path (the file appears only when complete). */
int gguf_writer_finish(gguf_writer *w, greta_error *err);
/* Status and message of the last failed set_* / copy_kv / add_tensor call
 * (those return only a status): duplicate key or tensor, bad type, ... */
const greta_error *gguf_writer_error(const gguf_writer *w);

#endif
