/* tokenizer.c - loads the SentencePiece vocabulary from GGUF metadata, builds
 * the piece tables, and answers lookups. Encoding is in encode.c, decoding in
 * decode.c. */
#include "tokenizer_internal.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define KEY_MODEL "tokenizer.ggml.model"
#define KEY_TOKENS "tokenizer.ggml.tokens"
#define KEY_SCORES "tokenizer.ggml.scores"
#define KEY_TYPES "tokenizer.ggml.token_type"

/* Optional bool key: default when missing, error when of another type. */
static int get_opt_bool(const gguf_file *f, const char *key, bool def, bool *out, greta_error *err)
{
    *out = def;
    if (!gguf_find_kv(f, key))
        return GRETA_OK;
    return gguf_get_bool(f, key, out, err);
}

/* Optional token-id key: default when missing; 0xFFFFFFFF (or -1) means none;
 * any other value must be a valid id. */
static int get_opt_id(const gguf_file *f, const char *key, int32_t def, int32_t n_vocab,
                      int32_t *out, greta_error *err)
{
    const gguf_kv *kv = gguf_find_kv(f, key);
    if (!kv) {
        *out = def < n_vocab ? def : GRETA_TOKEN_NONE;
        return GRETA_OK;
    }
    int64_t v;
    const gguf_value *val = &kv->value;
    switch (val->type) {
    case GGUF_TYPE_UINT8: case GGUF_TYPE_UINT16: case GGUF_TYPE_UINT32: case GGUF_TYPE_UINT64:
        if (val->v.u64 == 0xFFFFFFFFu || val->v.u64 == UINT64_MAX) {
            *out = GRETA_TOKEN_NONE;
            return GRETA_OK;
        }
        v = val->v.u64 > (uint64_t)INT32_MAX ? INT64_MAX : (int64_t)val->v.u64;
        break;
    case GGUF_TYPE_INT8: case GGUF_TYPE_INT16: case GGUF_TYPE_INT32: case GGUF_TYPE_INT64:
        if (val->v.i64 == -1) {
            *out = GRETA_TOKEN_NONE;
            return GRETA_OK;
        }
        v = val->v.i64;
        break;
    default:
        return greta_error_set(err, GRETA_ERR_TYPE, "%s: stored as %s, expected an integer token id",
                               key, gguf_type_name(val->type));
    }
    if (v < 0 || v >= n_vocab)
        return greta_error_set(err, GRETA_ERR_FORMAT,
                               "%s = %lld is not a token id (vocabulary has %d tokens)",
                               key, (long long)v, (int)n_vocab);
    *out = (int32_t)v;
    return GRETA_OK;
}

/* Parses "<0xNN>" (two hex digits, either case). Returns the byte or -1. */
static int parse_byte_piece(const char *s, size_t len)
{
    if (len != 6 || memcmp(s, "<0x", 3) != 0 || s[5] != '>')
        return -1;
    int v = 0;
    for (int i = 3; i < 5; i++) {
        char c = s[i];
        int d = (c >= '0' && c <= '9') ? c - '0'
              : (c >= 'A' && c <= 'F') ? c - 'A' + 10
              : (c >= 'a' && c <= 'f') ? c - 'a' + 10 : -1;
        if (d < 0)
            return -1;
        v = v * 16 + d;
    }
    return v;
}

static uint32_t table_capacity(int32_t n)
{
    uint32_t cap = 16;
    while (cap < (uint32_t)n * 2u)
        cap <<= 1;
    return cap;
}

/* Inserts id under its text; keeps the first id when a text repeats. */
static void table_insert(tok_slot *tab, uint32_t mask, const greta_tokenizer *t, int32_t id)
{
    const char *s = t->text + t->text_off[id];
    size_t len = t->text_len[id];
    if (tok_lookup(tab, mask, t, s, len) >= 0)
        return;
    uint32_t h = tok_hash(s, len);
    uint32_t i = h & mask;
    while (tab[i].id >= 0)
        i = (i + 1) & mask;
    tab[i].hash = h;
    tab[i].id = id;
}

static int cmp_special(const void *a, const void *b, void *ctx)
{
    const greta_tokenizer *t = ctx;
    int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
    if (t->text_len[x] != t->text_len[y])
        return t->text_len[x] > t->text_len[y] ? -1 : 1;
    return x < y ? -1 : x > y;
}

/* True if the piece contains "▁" somewhere after a non-"▁" character. */
static bool space_inside(const char *s, size_t len)
{
    size_t i = 0;
    while (i + TOK_SPACE_LEN <= len && memcmp(s + i, TOK_SPACE_UTF8, TOK_SPACE_LEN) == 0)
        i += TOK_SPACE_LEN;
    for (; i + TOK_SPACE_LEN <= len; i++)
        if (memcmp(s + i, TOK_SPACE_UTF8, TOK_SPACE_LEN) == 0)
            return true;
    return false;
}

/* Reads the three arrays, copies texts, scores and types. */
static int load_pieces(greta_tokenizer *t, const gguf_file *f, greta_error *err)
{
    const gguf_value *toks, *scores, *types;
    int rc = gguf_get_arr(f, KEY_TOKENS, GGUF_TYPE_STRING, &toks, err);
    if (rc == GRETA_OK)
        rc = gguf_get_arr(f, KEY_SCORES, GGUF_TYPE_FLOAT32, &scores, err);
    if (rc == GRETA_OK)
        rc = gguf_get_arr(f, KEY_TYPES, GGUF_TYPE_INT32, &types, err);
    if (rc != GRETA_OK)
        return rc == GRETA_ERR_NOT_FOUND
                   ? greta_error_prefix(err, "vocabulary incomplete (%s, %s and %s are required)",
                                        KEY_TOKENS, KEY_SCORES, KEY_TYPES)
                   : rc;
    uint64_t n = toks->v.arr.count;
    if (n == 0 || n > GRETA_TOKENIZER_MAX_VOCAB)
        return greta_error_set(err, GRETA_ERR_FORMAT, "%s has %llu entries (must be 1..%d)",
                               KEY_TOKENS, (unsigned long long)n, GRETA_TOKENIZER_MAX_VOCAB);
    if (scores->v.arr.count != n)
        return greta_error_set(err, GRETA_ERR_FORMAT, "%s has %llu entries but %s has %llu",
                               KEY_SCORES, (unsigned long long)scores->v.arr.count, KEY_TOKENS,
                               (unsigned long long)n);
    if (types->v.arr.count != n)
        return greta_error_set(err, GRETA_ERR_FORMAT, "%s has %llu entries but %s has %llu",
                               KEY_TYPES, (unsigned long long)types->v.arr.count, KEY_TOKENS,
                               (unsigned long long)n);
    t->n_vocab = (int32_t)n;

    uint64_t total = 0;
    for (uint64_t i = 0; i < n; i++) {
        gguf_str s = gguf_arr_str(toks, i);
        if (s.len > GRETA_TOKENIZER_MAX_PIECE)
            return greta_error_set(err, GRETA_ERR_LIMIT, "%s[%llu] is %llu bytes long (limit %d)",
                                   KEY_TOKENS, (unsigned long long)i, (unsigned long long)s.len,
                                   GRETA_TOKENIZER_MAX_PIECE);
        total += s.len + 1;
    }
    if (total > UINT32_MAX)
        return greta_error_set(err, GRETA_ERR_LIMIT, "%s: piece texts total %llu bytes",
                               KEY_TOKENS, (unsigned long long)total);
    t->text = malloc(total);
    t->text_off = malloc(n * sizeof *t->text_off);
    t->text_len = malloc(n * sizeof *t->text_len);
    t->scores = malloc(n * sizeof *t->scores);
    t->types = malloc(n);
    if (!t->text || !t->text_off || !t->text_len || !t->scores || !t->types)
        return greta_error_set(err, GRETA_ERR_NOMEM, "tokenizer: out of memory for %llu pieces",
                               (unsigned long long)n);
    uint32_t off = 0;
    for (uint64_t i = 0; i < n; i++) {
        gguf_str s = gguf_arr_str(toks, i);
        if (s.len)
            memcpy(t->text + off, s.ptr, s.len);
        t->text[off + s.len] = '\0';
        t->text_off[i] = off;
        t->text_len[i] = (uint32_t)s.len;
        off += (uint32_t)s.len + 1;

        float sc = gguf_arr_f32(scores, i);
        if (isnan(sc))
            return greta_error_set(err, GRETA_ERR_FORMAT, "%s[%llu] is NaN", KEY_SCORES,
                                   (unsigned long long)i);
        t->scores[i] = sc;
        int32_t ty = gguf_arr_i32(types, i);
        if (ty < GRETA_TOKEN_NORMAL || ty > GRETA_TOKEN_BYTE)
            return greta_error_set(err, GRETA_ERR_FORMAT,
                                   "%s[%llu] = %d is not a token type (1..6)", KEY_TYPES,
                                   (unsigned long long)i, (int)ty);
        t->types[i] = (uint8_t)ty;
    }
    return GRETA_OK;
}

/* Byte tokens, surfaces, tables, special list. */
static int build_tables(greta_tokenizer *t, greta_error *err)
{
    int32_t n = t->n_vocab;
    for (int b = 0; b < 256; b++)
        t->byte_id[b] = -1;
    uint64_t surf_total = 0;
    int32_t n_special = 0;
    for (int32_t i = 0; i < n; i++) {
        const char *s = t->text + t->text_off[i];
        uint32_t len = t->text_len[i];
        switch (t->types[i]) {
        case GRETA_TOKEN_BYTE: {
            int b = parse_byte_piece(s, len);
            if (b < 0)
                return greta_error_set(err, GRETA_ERR_FORMAT,
                                       "%s[%d] has type byte but its text '%.*s' is not <0xNN>",
                                       KEY_TOKENS, (int)i, (int)len, s);
            if (t->byte_id[b] < 0)
                t->byte_id[b] = i;
            surf_total += 1;
            break;
        }
        case GRETA_TOKEN_UNKNOWN:
            surf_total += sizeof TOK_UNK_SURFACE - 1;
            n_special++;
            break;
        case GRETA_TOKEN_CONTROL:
        case GRETA_TOKEN_USER_DEFINED:
            n_special++;
            surf_total += len;
            break;
        default:
            surf_total += len;
        }
    }
    t->surf = malloc(surf_total + 1);
    t->surf_off = malloc((size_t)n * sizeof *t->surf_off);
    t->surf_len = malloc((size_t)n * sizeof *t->surf_len);
    t->merge_mask = table_capacity(n) - 1;
    t->all_mask = t->merge_mask;
    t->merge_tab = malloc(((size_t)t->merge_mask + 1) * sizeof *t->merge_tab);
    t->all_tab = malloc(((size_t)t->all_mask + 1) * sizeof *t->all_tab);
    t->special = malloc(((size_t)n_special + 1) * sizeof *t->special);
    if (!t->surf || !t->surf_off || !t->surf_len || !t->merge_tab || !t->all_tab || !t->special)
        return greta_error_set(err, GRETA_ERR_NOMEM, "tokenizer: out of memory for tables");
    for (uint32_t i = 0; i <= t->merge_mask; i++)
        t->merge_tab[i].id = -1;
    for (uint32_t i = 0; i <= t->all_mask; i++)
        t->all_tab[i].id = -1;

    uint32_t off = 0;
    t->split_words = true;
    for (int32_t i = 0; i < n; i++) {
        const char *s = t->text + t->text_off[i];
        uint32_t len = t->text_len[i];
        uint8_t ty = t->types[i];
        char *d = t->surf + off;
        uint32_t m = 0;
        if (ty == GRETA_TOKEN_BYTE) {
            d[m++] = (char)parse_byte_piece(s, len);
        } else if (ty == GRETA_TOKEN_UNKNOWN) {
            memcpy(d, TOK_UNK_SURFACE, sizeof TOK_UNK_SURFACE - 1);
            m = sizeof TOK_UNK_SURFACE - 1;
        } else if (ty == GRETA_TOKEN_CONTROL) {
            memcpy(d, s, len);
            m = len;
        } else { /* normal, user-defined, unused: "▁" -> ' ' */
            for (uint32_t k = 0; k < len;) {
                if (k + TOK_SPACE_LEN <= len && memcmp(s + k, TOK_SPACE_UTF8, TOK_SPACE_LEN) == 0) {
                    d[m++] = ' ';
                    k += TOK_SPACE_LEN;
                } else {
                    d[m++] = s[k++];
                }
            }
        }
        t->surf_off[i] = off;
        t->surf_len[i] = m;
        off += m;
        if (m > t->max_surf_len)
            t->max_surf_len = m;

        if (len > 0)
            table_insert(t->all_tab, t->all_mask, t, i);
        if (len > 0 && (ty == GRETA_TOKEN_NORMAL || ty == GRETA_TOKEN_USER_DEFINED)) {
            table_insert(t->merge_tab, t->merge_mask, t, i);
            if (len > t->max_merge_len)
                t->max_merge_len = len;
            if (space_inside(s, len))
                t->split_words = false;
        }
        if (len > 0 && (ty == GRETA_TOKEN_CONTROL || ty == GRETA_TOKEN_USER_DEFINED ||
                        ty == GRETA_TOKEN_UNKNOWN)) {
            t->special[t->n_special++] = i;
            t->special_first[(uint8_t)s[0]] = 1;
        }
    }
    qsort_r(t->special, (size_t)t->n_special, sizeof *t->special, cmp_special, t);
    return GRETA_OK;
}

int greta_tokenizer_create_from_gguf(const gguf_file *f, greta_tokenizer **out, greta_error *err)
{
    if (!f || !out)
        return greta_error_set(err, GRETA_ERR_INVALID, "tokenizer: NULL argument");
    *out = NULL;
    gguf_str model;
    int rc = gguf_get_str(f, KEY_MODEL, &model, err);
    if (rc != GRETA_OK)
        return rc == GRETA_ERR_NOT_FOUND
                   ? greta_error_set(err, rc, "%s is missing: the file has no tokenizer", KEY_MODEL)
                   : rc;
    if (model.len != 5 || memcmp(model.ptr, "llama", 5) != 0)
        return greta_error_set(err, GRETA_ERR_UNSUPPORTED,
                               "%s = '%.*s': only \"llama\" (SentencePiece) is supported", KEY_MODEL,
                               (int)(model.len > 64 ? 64 : model.len), model.ptr);

    greta_tokenizer *t = calloc(1, sizeof *t);
    if (!t)
        return greta_error_set(err, GRETA_ERR_NOMEM, "tokenizer: out of memory");
    t->max_input = GRETA_TOKENIZER_DEFAULT_MAX_INPUT;
    rc = load_pieces(t, f, err);
    if (rc == GRETA_OK)
        rc = build_tables(t, err);
    if (rc == GRETA_OK)
        rc = get_opt_id(f, "tokenizer.ggml.bos_token_id", 1, t->n_vocab, &t->bos, err);
    if (rc == GRETA_OK)
        rc = get_opt_id(f, "tokenizer.ggml.eos_token_id", 2, t->n_vocab, &t->eos, err);
    if (rc == GRETA_OK)
        rc = get_opt_id(f, "tokenizer.ggml.unknown_token_id", 0, t->n_vocab, &t->unk, err);
    if (rc == GRETA_OK)
        rc = get_opt_id(f, "tokenizer.ggml.padding_token_id", -1, t->n_vocab, &t->pad, err);
    if (rc == GRETA_OK)
        rc = get_opt_bool(f, "tokenizer.ggml.add_bos_token", true, &t->add_bos, err);
    if (rc == GRETA_OK)
        rc = get_opt_bool(f, "tokenizer.ggml.add_eos_token", false, &t->add_eos, err);
    if (rc == GRETA_OK)
        rc = get_opt_bool(f, "tokenizer.ggml.add_space_prefix", true, &t->add_space_prefix, err);
    if (rc == GRETA_OK && t->add_bos && t->bos < 0)
        rc = greta_error_set(err, GRETA_ERR_FORMAT,
                             "tokenizer.ggml.add_bos_token is true but there is no BOS token");
    if (rc == GRETA_OK && t->add_eos && t->eos < 0)
        rc = greta_error_set(err, GRETA_ERR_FORMAT,
                             "tokenizer.ggml.add_eos_token is true but there is no EOS token");
    if (rc != GRETA_OK) {
        greta_tokenizer_destroy(&t);
        return rc;
    }
    *out = t;
    return GRETA_OK;
}

void greta_tokenizer_destroy(greta_tokenizer **tok)
{
    if (!tok || !*tok)
        return;
    greta_tokenizer *t = *tok;
    free(t->text);
    free(t->text_off);
    free(t->text_len);
    free(t->surf);
    free(t->surf_off);
    free(t->surf_len);
    free(t->scores);
    free(t->types);
    free(t->merge_tab);
    free(t->all_tab);
    free(t->special);
    free(t);
    *tok = NULL;
}

int32_t greta_tokenizer_vocab_size(const greta_tokenizer *tok) { return tok->n_vocab; }
int32_t greta_tokenizer_bos(const greta_tokenizer *tok) { return tok->bos; }
int32_t greta_tokenizer_eos(const greta_tokenizer *tok) { return tok->eos; }
int32_t greta_tokenizer_unk(const greta_tokenizer *tok) { return tok->unk; }
int32_t greta_tokenizer_pad(const greta_tokenizer *tok) { return tok->pad; }
bool greta_tokenizer_add_bos(const greta_tokenizer *tok) { return tok->add_bos; }
bool greta_tokenizer_add_eos(const greta_tokenizer *tok) { return tok->add_eos; }
bool greta_tokenizer_add_space_prefix(const greta_tokenizer *tok) { return tok->add_space_prefix; }

uint32_t greta_tokenizer_default_flags(const greta_tokenizer *tok)
{
    return (tok->add_bos ? GRETA_ENCODE_ADD_BOS : 0u) | (tok->add_eos ? GRETA_ENCODE_ADD_EOS : 0u);
}

void greta_tokenizer_set_max_input(greta_tokenizer *tok, size_t max_bytes)
{
    tok->max_input = max_bytes;
}

size_t greta_tokenizer_max_input(const greta_tokenizer *tok) { return tok->max_input; }

const char *greta_tokenizer_token_piece(const greta_tokenizer *tok, int32_t id, size_t *len)
{
    if (id < 0 || id >= tok->n_vocab)
        return NULL;
    if (len)
        *len = tok->text_len[id];
    return tok->text + tok->text_off[id];
}

int greta_tokenizer_token_type(const greta_tokenizer *tok, int32_t id)
{
    if (id < 0 || id >= tok->n_vocab)
        return 0;
    return tok->types[id];
}

int32_t greta_tokenizer_find_piece(const greta_tokenizer *tok, const char *text, size_t len)
{
    if (len == 0)
        return GRETA_TOKEN_NONE;
    int32_t id = tok_lookup(tok->all_tab, tok->all_mask, tok, text, len);
    return id < 0 ? GRETA_TOKEN_NONE : id;
}
