/* cmd_inspect.c - `greta inspect FILE [--json]`: a GGUF file's header,
 * metadata, tensor table, parameter count and derived model config.
 *
 * Exit status: 0 shown; 1 the file is not valid GGUF, or it is a llama file
 * with tensors whose model does not validate (the report is still printed,
 * with the error); 2 usage. A file with no tensors (a vocabulary) or another
 * architecture is described without a model, with status 0.
 */
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cJSON.h>

#include "common/utf8.h"
#include "commands.h"
#include "common/gguf.h"
#include "common/model.h"
#include "kernels/quant.h"

#define ARRAY_HEAD 5     /* array elements shown */
#define TEXT_STR_MAX 64  /* bytes of a string shown in text mode */

static void usage(FILE *out)
{
    fprintf(out,
            "usage: greta inspect FILE [--json]\n"
            "  Shows a GGUF file's version, alignment, metadata (arrays abbreviated to\n"
            "  their first %d elements), tensor table, parameter count, bits per weight\n"
            "  and the llama model config derived from it.\n"
            "  --json   print the same as one JSON object\n"
            "Exit status: 0 ok, 1 invalid file or model, 2 usage.\n",
            ARRAY_HEAD);
}

/* ---- shared helpers --------------------------------------------------------- */

typedef struct summary {
    uint64_t params, bytes;
    int model_rc; /* 0 ok, 1 no model (not an error), <0 error */
    greta_error model_err;
    greta_model_config cfg;
    char no_model_reason[GRETA_ERROR_MSG_MAX];
} summary;

static void summarize(const char *path, gguf_file *f, summary *s)
{
    memset(s, 0, sizeof *s);
    for (uint64_t i = 0; i < gguf_n_tensors(f); i++) {
        s->params += gguf_tensor_at(f, i)->n_elements;
        s->bytes += gguf_tensor_at(f, i)->nbytes;
    }
    gguf_str arch = {"", 0};
    greta_error e = {0};
    if (gguf_get_str(f, "general.architecture", &arch, &e) != 0) {
        s->model_rc = 1;
        snprintf(s->no_model_reason, sizeof s->no_model_reason, "%s", e.msg);
        return;
    }
    if (!(arch.len == 5 && memcmp(arch.ptr, "llama", 5) == 0)) {
        s->model_rc = 1;
        snprintf(s->no_model_reason, sizeof s->no_model_reason, "unsupported architecture '%.*s'",
                 arch.len > 64 ? 64 : (int)arch.len, arch.ptr);
        return;
    }
    if (gguf_n_tensors(f) == 0) {
        s->model_rc = 1;
        snprintf(s->no_model_reason, sizeof s->no_model_reason, "no tensors (vocabulary-only file)");
        return;
    }
    /* the model takes ownership of the file on success; give it back after */
    greta_model *m = NULL;
    s->model_rc = greta_model_from_gguf(f, &m, &s->model_err);
    if (s->model_rc == 0) {
        s->cfg = m->cfg;
        m->file = NULL;
        greta_model_close(&m);
    } else {
        greta_error_prefix(&s->model_err, "%s", path);
    }
}

/* malloc'ed NUL-terminated copy for JSON: invalid UTF-8 bytes and NUL become
 * U+FFFD (cJSON escapes the rest). */
static char *json_str(gguf_str s)
{
    return greta_utf8_sanitize(s.ptr, (size_t)s.len);
}

/* Shortest decimal that reads back as the same float (f32) or double. */
static void fmt_real(char *buf, size_t n, double v, bool is_f32)
{
    for (int prec = 1; prec <= 17; prec++) {
        snprintf(buf, n, "%.*g", prec, v);
        double back = strtod(buf, NULL);
        if (is_f32 ? (float)back == (float)v : back == v)
            return;
    }
}

/* ---- text output -------------------------------------------------------------- */

/* Escapes up to max bytes of s into dst (quotes, backslashes and control
 * characters), so a hostile string cannot mess up the terminal. */
static void escape(char *dst, size_t n, const char *src, uint64_t len, uint64_t max)
{
    size_t o = 0;
    uint64_t k = len > max ? max : len;
    for (uint64_t i = 0; i < k && o + 5 < n; i++) {
        unsigned char c = (unsigned char)src[i];
        if (c == '"' || c == '\\')
            o += (size_t)snprintf(dst + o, n - o, "\\%c", c);
        else if (c < 0x20 || c == 0x7f)
            o += (size_t)snprintf(dst + o, n - o, "\\x%02x", c);
        else
            dst[o++] = (char)c;
    }
    dst[o] = '\0';
}

static void print_str(gguf_str s)
{
    char buf[TEXT_STR_MAX * 4 + 8];
    escape(buf, sizeof buf, s.ptr, s.len, TEXT_STR_MAX);
    printf("\"%s\"", buf);
    if (s.len > TEXT_STR_MAX)
        printf("...(%" PRIu64 " bytes)", s.len);
}

static void print_scalar(const gguf_value *v)
{
    switch (v->type) {
    case GGUF_TYPE_UINT8: case GGUF_TYPE_UINT16: case GGUF_TYPE_UINT32: case GGUF_TYPE_UINT64:
        printf("%" PRIu64, v->v.u64);
        break;
    case GGUF_TYPE_INT8: case GGUF_TYPE_INT16: case GGUF_TYPE_INT32: case GGUF_TYPE_INT64:
        printf("%" PRId64, v->v.i64);
        break;
    case GGUF_TYPE_FLOAT32: case GGUF_TYPE_FLOAT64: {
        char buf[40];
        fmt_real(buf, sizeof buf, v->v.f64, v->type == GGUF_TYPE_FLOAT32);
        printf("%s", buf);
        break;
    }
    case GGUF_TYPE_BOOL: printf("%s", v->v.u64 ? "true" : "false"); break;
    case GGUF_TYPE_STRING: print_str(v->v.str); break;
    default: break;
    }
}

/* Decodes fixed-size array element i into a scalar value. */
static gguf_value arr_elem(const gguf_value *a, uint64_t i)
{
    gguf_value e = {.type = a->v.arr.elem_type};
    if (a->v.arr.items)
        return a->v.arr.items[i];
    const uint8_t *p;
    uint64_t u = 0;
    size_t sz;
    switch (e.type) {
    case GGUF_TYPE_UINT16: case GGUF_TYPE_INT16: sz = 2; break;
    case GGUF_TYPE_UINT32: case GGUF_TYPE_INT32: case GGUF_TYPE_FLOAT32: sz = 4; break;
    case GGUF_TYPE_UINT64: case GGUF_TYPE_INT64: case GGUF_TYPE_FLOAT64: sz = 8; break;
    default: sz = 1; break;
    }
    p = a->v.arr.data + i * sz;
    for (size_t b = sz; b-- > 0;)
        u = u << 8 | p[b];
    switch (e.type) {
    case GGUF_TYPE_INT8: e.v.i64 = (int8_t)(uint8_t)u; break;
    case GGUF_TYPE_INT16: e.v.i64 = (int16_t)(uint16_t)u; break;
    case GGUF_TYPE_INT32: e.v.i64 = (int32_t)(uint32_t)u; break;
    case GGUF_TYPE_INT64: memcpy(&e.v.i64, &u, 8); break;
    case GGUF_TYPE_FLOAT32: {
        uint32_t u32 = (uint32_t)u;
        float x;
        memcpy(&x, &u32, 4);
        e.v.f64 = x;
        break;
    }
    case GGUF_TYPE_FLOAT64: memcpy(&e.v.f64, &u, 8); break;
    default: e.v.u64 = u; break;
    }
    return e;
}

static void print_value(const gguf_value *v)
{
    if (v->type != GGUF_TYPE_ARRAY) {
        print_scalar(v);
        return;
    }
    printf("[");
    uint64_t n = v->v.arr.count;
    for (uint64_t i = 0; i < n && i < ARRAY_HEAD; i++) {
        if (i)
            printf(", ");
        gguf_value e = arr_elem(v, i);
        if (e.type == GGUF_TYPE_ARRAY)
            printf("array[%s] x %" PRIu64, gguf_type_name(e.v.arr.elem_type), e.v.arr.count);
        else
            print_scalar(&e);
    }
    if (n > ARRAY_HEAD)
        printf(", ... (%" PRIu64 " more)", n - ARRAY_HEAD);
    printf("]");
}

static void type_label(const gguf_value *v, char *buf, size_t n)
{
    if (v->type == GGUF_TYPE_ARRAY)
        snprintf(buf, n, "array[%s] x %" PRIu64, gguf_type_name(v->v.arr.elem_type), v->v.arr.count);
    else
        snprintf(buf, n, "%s", gguf_type_name(v->type));
}

static void shape_text(const gguf_tensor *t, char *buf, size_t n)
{
    size_t o = (size_t)snprintf(buf, n, "[");
    for (uint32_t d = 0; d < t->n_dims && o < n; d++)
        o += (size_t)snprintf(buf + o, n - o, "%s%" PRIu64, d ? ", " : "", t->ne[d]);
    if (o < n)
        snprintf(buf + o, n - o, "]");
}

static void print_f32(const char *label, float x)
{
    char buf[40];
    fmt_real(buf, sizeof buf, x, true);
    printf("  %-16s %s\n", label, buf);
}

static void print_config(const greta_model_config *c)
{
    printf("model config (llama):\n");
    printf("  vocab_size       %" PRIu32 "\n", c->vocab_size);
    printf("  dim              %" PRIu32 "\n", c->dim);
    printf("  n_layers         %" PRIu32 "\n", c->n_layers);
    printf("  n_heads          %" PRIu32 "\n", c->n_heads);
    printf("  n_kv_heads       %" PRIu32 "\n", c->n_kv_heads);
    printf("  head_dim         %" PRIu32 "\n", c->head_dim);
    printf("  ffn_dim          %" PRIu32 "\n", c->ffn_dim);
    printf("  context_length   %" PRIu32 "\n", c->context_length);
    printf("  rope_dim         %" PRIu32 "\n", c->rope_dim);
    print_f32("rope_freq_base", c->rope_freq_base);
    print_f32("rope_freq_scale", c->rope_freq_scale);
    print_f32("rms_eps", c->rms_eps);
    printf("  tied_output      %s\n", c->tied_output ? "true" : "false");
}

static void print_text(const char *path, const gguf_file *f, const summary *s)
{
    printf("file:         %s\n", path);
    printf("version:      %" PRIu32 "\n", gguf_version(f));
    printf("alignment:    %" PRIu32 "\n", gguf_alignment(f));
    printf("data offset:  %" PRIu64 "\n", gguf_data_offset(f));
    printf("file size:    %" PRIu64 "\n", gguf_file_size(f));
    printf("\nmetadata (%" PRIu64 " keys):\n", gguf_n_kv(f));
    for (uint64_t i = 0; i < gguf_n_kv(f); i++) {
        const gguf_kv *kv = gguf_kv_at(f, i);
        char tl[64];
        type_label(&kv->value, tl, sizeof tl);
        char key[512];
        escape(key, sizeof key, kv->key, strlen(kv->key), 120);
        printf("  %-42s %-22s ", key, tl);
        print_value(&kv->value);
        printf("\n");
    }
    printf("\ntensors (%" PRIu64 "):\n", gguf_n_tensors(f));
    if (gguf_n_tensors(f))
        printf("  %-32s %-5s %-22s %12s %12s\n", "name", "type", "shape", "offset", "bytes");
    for (uint64_t i = 0; i < gguf_n_tensors(f); i++) {
        const gguf_tensor *t = gguf_tensor_at(f, i);
        char sh[96];
        shape_text(t, sh, sizeof sh);
        char name[512];
        escape(name, sizeof name, t->name, strlen(t->name), 120);
        printf("  %-32s %-5s %-22s %12" PRIu64 " %12" PRIu64 "\n", name, ggml_type_name(t->type), sh,
               t->offset, t->nbytes);
    }
    printf("\nparameters:      %" PRIu64 "\n", s->params);
    printf("tensor bytes:    %" PRIu64 "\n", s->bytes);
    if (s->params)
        printf("bits per weight: %.4f\n", (double)s->bytes * 8.0 / (double)s->params);
    else
        printf("bits per weight: n/a\n");
    printf("\n");
    if (s->model_rc == 0)
        print_config(&s->cfg);
    else if (s->model_rc > 0)
        printf("model: none (%s)\n", s->no_model_reason);
    else
        printf("model: error: %s\n", s->model_err.msg);
}

/* ---- JSON output -------------------------------------------------------------- */

/* u64 as a JSON number when exact in a double, else as a decimal string. */
static cJSON *json_u64(uint64_t u)
{
    if (u <= (1ull << 53))
        return cJSON_CreateNumber((double)u);
    char buf[32];
    snprintf(buf, sizeof buf, "%" PRIu64, u);
    return cJSON_CreateString(buf);
}

static cJSON *json_i64(int64_t x)
{
    if (x >= -(1ll << 53) && x <= (1ll << 53))
        return cJSON_CreateNumber((double)x);
    char buf[32];
    snprintf(buf, sizeof buf, "%" PRId64, x);
    return cJSON_CreateString(buf);
}

/* A float as the number with the shortest decimal form that reads back. */
static cJSON *json_real(double v, bool is_f32)
{
    char buf[40];
    fmt_real(buf, sizeof buf, v, is_f32);
    return cJSON_CreateNumber(strtod(buf, NULL));
}

static cJSON *json_scalar(const gguf_value *v)
{
    switch (v->type) {
    case GGUF_TYPE_UINT8: case GGUF_TYPE_UINT16: case GGUF_TYPE_UINT32: case GGUF_TYPE_UINT64:
        return json_u64(v->v.u64);
    case GGUF_TYPE_INT8: case GGUF_TYPE_INT16: case GGUF_TYPE_INT32: case GGUF_TYPE_INT64:
        return json_i64(v->v.i64);
    case GGUF_TYPE_FLOAT32: case GGUF_TYPE_FLOAT64:
        /* JSON has no NaN/inf: those become strings */
        if (v->v.f64 != v->v.f64 || v->v.f64 > 1.7e308 || v->v.f64 < -1.7e308) {
            char buf[32];
            snprintf(buf, sizeof buf, "%g", v->v.f64);
            return cJSON_CreateString(buf);
        }
        return json_real(v->v.f64, v->type == GGUF_TYPE_FLOAT32);
    case GGUF_TYPE_BOOL: return cJSON_CreateBool(v->v.u64 != 0);
    case GGUF_TYPE_STRING: {
        char *s = json_str(v->v.str);
        cJSON *j = s ? cJSON_CreateString(s) : NULL;
        free(s);
        return j;
    }
    default: return cJSON_CreateNull();
    }
}

/* Adds "type":"array","elem_type":...,"count":N,"head":[first elements] to o;
 * arrays nested deeper than JSON_HEAD_DEPTH show no head (bounds the output). */
#define JSON_HEAD_DEPTH 3
static cJSON *json_array_fill(cJSON *o, const gguf_value *v, int depth)
{
    cJSON_AddStringToObject(o, "type", "array");
    cJSON_AddStringToObject(o, "elem_type", gguf_type_name(v->v.arr.elem_type));
    cJSON_AddItemToObject(o, "count", json_u64(v->v.arr.count));
    if (depth >= JSON_HEAD_DEPTH)
        return o;
    cJSON *head = cJSON_AddArrayToObject(o, "head");
    for (uint64_t i = 0; i < v->v.arr.count && i < ARRAY_HEAD; i++) {
        gguf_value e = arr_elem(v, i);
        cJSON_AddItemToArray(head, e.type == GGUF_TYPE_ARRAY ? json_array_fill(cJSON_CreateObject(), &e, depth + 1)
                                                             : json_scalar(&e));
    }
    return o;
}

static cJSON *json_config(const greta_model_config *c)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "architecture", "llama");
    cJSON_AddNumberToObject(o, "vocab_size", c->vocab_size);
    cJSON_AddNumberToObject(o, "dim", c->dim);
    cJSON_AddNumberToObject(o, "n_layers", c->n_layers);
    cJSON_AddNumberToObject(o, "n_heads", c->n_heads);
    cJSON_AddNumberToObject(o, "n_kv_heads", c->n_kv_heads);
    cJSON_AddNumberToObject(o, "head_dim", c->head_dim);
    cJSON_AddNumberToObject(o, "ffn_dim", c->ffn_dim);
    cJSON_AddNumberToObject(o, "context_length", c->context_length);
    cJSON_AddNumberToObject(o, "rope_dim", c->rope_dim);
    cJSON_AddItemToObject(o, "rope_freq_base", json_real(c->rope_freq_base, true));
    cJSON_AddItemToObject(o, "rope_freq_scale", json_real(c->rope_freq_scale, true));
    cJSON_AddItemToObject(o, "rms_eps", json_real(c->rms_eps, true));
    cJSON_AddBoolToObject(o, "tied_output", c->tied_output);
    return o;
}

static int print_json(const char *path, const gguf_file *f, const summary *s)
{
    cJSON *root = cJSON_CreateObject();
    cJSON_AddStringToObject(root, "file", path);
    cJSON_AddNumberToObject(root, "version", gguf_version(f));
    cJSON_AddNumberToObject(root, "alignment", gguf_alignment(f));
    cJSON_AddItemToObject(root, "data_offset", json_u64(gguf_data_offset(f)));
    cJSON_AddItemToObject(root, "file_size", json_u64(gguf_file_size(f)));
    cJSON *md = cJSON_AddArrayToObject(root, "metadata");
    for (uint64_t i = 0; i < gguf_n_kv(f); i++) {
        const gguf_kv *kv = gguf_kv_at(f, i);
        cJSON *o = cJSON_CreateObject();
        char *key = json_str((gguf_str){kv->key, strlen(kv->key)});
        cJSON_AddItemToObject(o, "key", cJSON_CreateString(key ? key : ""));
        free(key);
        if (kv->value.type == GGUF_TYPE_ARRAY) {
            json_array_fill(o, &kv->value, 0);
        } else {
            cJSON_AddStringToObject(o, "type", gguf_type_name(kv->value.type));
            cJSON_AddItemToObject(o, "value", json_scalar(&kv->value));
        }
        cJSON_AddItemToArray(md, o);
    }
    cJSON *ts = cJSON_AddArrayToObject(root, "tensors");
    for (uint64_t i = 0; i < gguf_n_tensors(f); i++) {
        const gguf_tensor *t = gguf_tensor_at(f, i);
        cJSON *o = cJSON_CreateObject();
        char *name = json_str((gguf_str){t->name, strlen(t->name)});
        cJSON_AddItemToObject(o, "name", cJSON_CreateString(name ? name : ""));
        free(name);
        cJSON_AddStringToObject(o, "type", ggml_type_name(t->type));
        cJSON *sh = cJSON_AddArrayToObject(o, "shape");
        for (uint32_t d = 0; d < t->n_dims; d++)
            cJSON_AddItemToArray(sh, json_u64(t->ne[d]));
        cJSON_AddItemToObject(o, "offset", json_u64(t->offset));
        cJSON_AddItemToObject(o, "bytes", json_u64(t->nbytes));
        cJSON_AddItemToArray(ts, o);
    }
    cJSON_AddItemToObject(root, "parameters", json_u64(s->params));
    cJSON_AddItemToObject(root, "tensor_bytes", json_u64(s->bytes));
    if (s->params)
        cJSON_AddNumberToObject(root, "bits_per_weight", (double)s->bytes * 8.0 / (double)s->params);
    else
        cJSON_AddNullToObject(root, "bits_per_weight");
    if (s->model_rc == 0) {
        cJSON_AddItemToObject(root, "model", json_config(&s->cfg));
    } else {
        cJSON_AddNullToObject(root, "model");
        char *m = json_str((gguf_str){s->model_rc > 0 ? s->no_model_reason : s->model_err.msg,
                                      strlen(s->model_rc > 0 ? s->no_model_reason : s->model_err.msg)});
        cJSON_AddStringToObject(root, s->model_rc > 0 ? "no_model" : "model_error", m ? m : "");
        free(m);
    }
    char *txt = cJSON_Print(root);
    cJSON_Delete(root);
    if (!txt) {
        fprintf(stderr, "greta inspect: out of memory printing JSON\n");
        return 1;
    }
    fputs(txt, stdout);
    fputc('\n', stdout);
    cJSON_free(txt);
    return 0;
}

int cmd_inspect(int argc, char **argv)
{
    const char *path = NULL;
    int json = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--json")) {
            json = 1;
        } else if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
            usage(stdout);
            return 0;
        } else if (argv[i][0] == '-' && argv[i][1] != '\0') {
            fprintf(stderr, "greta inspect: unknown option '%s'\n", argv[i]);
            usage(stderr);
            return 2;
        } else if (path) {
            fprintf(stderr, "greta inspect: more than one FILE ('%s' and '%s')\n", path, argv[i]);
            return 2;
        } else {
            path = argv[i];
        }
    }
    if (!path) {
        usage(stderr);
        return 2;
    }
    greta_error err = {0};
    gguf_file *f = NULL;
    if (gguf_open(path, &f, &err) != 0) {
        fprintf(stderr, "greta inspect: %s\n", err.msg);
        return 1;
    }
    summary s;
    summarize(path, f, &s);
    int rc = json ? print_json(path, f, &s) : (print_text(path, f, &s), 0);
    if (fflush(stdout) != 0)
        rc = 1;
    if (s.model_rc < 0) {
        fprintf(stderr, "greta inspect: %s\n", s.model_err.msg);
        rc = 1;
    }
    gguf_close(&f);
    return rc;
}
