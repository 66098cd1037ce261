/* tok_test_util.c - see tok_test_util.h. */
#include "tok_test_util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/gguf.h"

#define SEP "\n__ggml_vocab_test__\n"

void tt_load_vectors(const char *inp_path, const char *out_path, vec_case **cases, size_t *n)
{
    size_t inp_n, out_n;
    char *inp = greta_read_file(inp_path, &inp_n);
    char *out = greta_read_file(out_path, &out_n);
    assert_non_null(inp);
    assert_non_null(out);
    size_t cap = 64, count = 0;
    vec_case *c = calloc(cap, sizeof *c);
    assert_non_null(c);
    /* texts: each followed by SEP */
    const size_t sep_n = strlen(SEP);
    size_t pos = 0;
    while (pos < inp_n) {
        const char *end = memmem(inp + pos, inp_n - pos, SEP, sep_n);
        if (!end)
            break;
        if (count == cap) {
            cap *= 2;
            c = realloc(c, cap * sizeof *c);
            assert_non_null(c);
        }
        size_t len = (size_t)(end - (inp + pos));
        c[count].text = malloc(len + 1);
        assert_non_null(c[count].text);
        memcpy(c[count].text, inp + pos, len);
        c[count].text[len] = '\0';
        c[count].len = len;
        c[count].ids = NULL;
        c[count].n_ids = 0;
        count++;
        pos = (size_t)(end - inp) + sep_n;
    }
    /* ids: one line per case */
    char *line = out;
    for (size_t i = 0; i < count; i++) {
        assert_true(line < out + out_n || (line == out + out_n && i == count));
        char *nl = memchr(line, '\n', (size_t)(out + out_n - line));
        assert_non_null(nl);
        *nl = '\0';
        size_t idcap = 16;
        c[i].ids = malloc(idcap * sizeof *c[i].ids);
        assert_non_null(c[i].ids);
        char *p = line;
        for (;;) {
            while (*p == ' ')
                p++;
            if (!*p)
                break;
            char *q;
            long v = strtol(p, &q, 10);
            assert_true(q != p);
            if (c[i].n_ids == idcap) {
                idcap *= 2;
                c[i].ids = realloc(c[i].ids, idcap * sizeof *c[i].ids);
                assert_non_null(c[i].ids);
            }
            c[i].ids[c[i].n_ids++] = (int32_t)v;
            p = q;
        }
        line = nl + 1;
    }
    free(inp);
    free(out);
    *cases = c;
    *n = count;
}

void tt_free_vectors(vec_case *cases, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        free(cases[i].text);
        free(cases[i].ids);
    }
    free(cases);
}

greta_tokenizer *tt_load_tokenizer(const char *path)
{
    gguf_file *f = NULL;
    greta_error err = {0};
    int rc = gguf_open(path, &f, &err);
    if (rc)
        fail_msg("gguf_open %s: %s", path, err.msg);
    greta_tokenizer *tok = NULL;
    rc = greta_tokenizer_create_from_gguf(f, &tok, &err);
    gguf_close(&f);
    if (rc)
        fail_msg("tokenizer from %s: %s", path, err.msg);
    return tok;
}

tt_vocab tt_vocab_defaults(void)
{
    tt_vocab v;
    memset(&v, 0, sizeof v);
    v.bos = v.eos = v.unk = -2;
    v.add_bos = v.add_eos = v.add_space_prefix = -1;
    return v;
}

const char *tt_write_vocab(const char *name, const tt_vocab *v)
{
    static char path[4096];
    const char *dir = greta_test_tmpdir("tokenizer");
    assert_non_null(dir);
    snprintf(path, sizeof path, "%s/%s.gguf", dir, name);
    greta_error err = {0};
    gguf_writer *w = gguf_writer_create(&err);
    assert_non_null(w);
    assert_int_equal(gguf_writer_set_str(w, "general.architecture", "llama"), 0);
    if (!v->omit_model)
        assert_int_equal(gguf_writer_set_str(w, "tokenizer.ggml.model", v->model ? v->model : "llama"), 0);
    if (!v->omit_tokens) {
        gguf_str *items = calloc(v->n ? v->n : 1, sizeof *items);
        assert_non_null(items);
        for (size_t i = 0; i < v->n; i++)
            items[i] = (gguf_str){v->pieces[i], strlen(v->pieces[i])};
        assert_int_equal(gguf_writer_set_arr_str(w, "tokenizer.ggml.tokens", items, v->n), 0);
        free(items);
    }
    if (!v->omit_scores)
        assert_int_equal(gguf_writer_set_arr(w, "tokenizer.ggml.scores", GGUF_TYPE_FLOAT32, v->scores,
                                             v->n_scores ? v->n_scores : v->n), 0);
    if (!v->omit_types)
        assert_int_equal(gguf_writer_set_arr(w, "tokenizer.ggml.token_type", GGUF_TYPE_INT32, v->types,
                                             v->n_types ? v->n_types : v->n), 0);
    if (v->bos != -2)
        assert_int_equal(gguf_writer_set_u32(w, "tokenizer.ggml.bos_token_id", (uint32_t)v->bos), 0);
    if (v->eos != -2)
        assert_int_equal(gguf_writer_set_u32(w, "tokenizer.ggml.eos_token_id", (uint32_t)v->eos), 0);
    if (v->unk != -2)
        assert_int_equal(gguf_writer_set_u32(w, "tokenizer.ggml.unknown_token_id", (uint32_t)v->unk), 0);
    if (v->add_bos >= 0)
        assert_int_equal(gguf_writer_set_bool(w, "tokenizer.ggml.add_bos_token", v->add_bos), 0);
    if (v->add_eos >= 0)
        assert_int_equal(gguf_writer_set_bool(w, "tokenizer.ggml.add_eos_token", v->add_eos), 0);
    if (v->add_space_prefix >= 0)
        assert_int_equal(gguf_writer_set_bool(w, "tokenizer.ggml.add_space_prefix", v->add_space_prefix), 0);
    if (v->chat_template)
        assert_int_equal(gguf_writer_set_str(w, "tokenizer.chat_template", v->chat_template), 0);
    if (gguf_writer_begin(w, path, &err) || gguf_writer_finish(w, &err))
        fail_msg("writing %s: %s", path, err.msg);
    gguf_writer_destroy(&w);
    return path;
}

int tt_tokenizer_from_vocab(const char *name, const tt_vocab *v, greta_tokenizer **tok,
                            greta_error *err)
{
    const char *path = tt_write_vocab(name, v);
    gguf_file *f = NULL;
    int rc = gguf_open(path, &f, err);
    if (rc)
        fail_msg("gguf_open %s: %s", path, err->msg);
    rc = greta_tokenizer_create_from_gguf(f, tok, err);
    gguf_close(&f);
    return rc;
}

static uint64_t next(uint64_t *s)
{
    uint64_t x = *s;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return *s = x;
}

size_t tt_gen_string(uint64_t *rng, char *buf, size_t cap)
{
    static const char *const words[] = {
        "the", "The", "tokenizer", "Hello", "world", "quick", "brown", "fox", "jumps", "over",
        "lazy", "dog", "I", "a", "don't", "it's", "re-enter", "https://example.com/a?b=c",
        "x", "zz", "QQQ", "e.g.", "(parenthesis)", "[bracket]", "{brace}", "<tag>", "</s>",
        "<s>", "<unk>", "<0x0A>", "_under_score_", "3.14159", "1,000,000", "2024-01-01",
    };
    static const char *const intl[] = {
        "café", "naïve", "Ångström", "façade", "Müller", "señor", "œuvre", "Ærø", "Łódź",
        "日本語", "中文字符", "漢字", "東京", "한국어", "Привет", "мир", "Ελληνικά",
        "العربية", "हिन्दी", "ภาษาไทย", "עברית", "ño", "ß", "Ω", "µ", "€", "™", "…", "—",
    };
    static const char *const emoji[] = {
        "😀", "🎉", "👍🏽", "👨‍👩‍👧", "🇯🇵", "❤️", "🙂", "🚀", "🦙", "🧑🏿‍💻", "⭐", "☃",
    };
    static const char *const spaces[] = {
        " ", "  ", "   ", "    ", "\n", "\n\n", "\t", "\t\t", " \n", "\r\n", "\n ", " \t ",
        "        ", "\n\n\n",
    };
    size_t len = 0;
    size_t parts = 1 + next(rng) % 12;
    for (size_t i = 0; i < parts; i++) {
        const char *p;
        char num[32];
        switch (next(rng) % 6) {
        case 0: case 1: p = words[next(rng) % (sizeof words / sizeof *words)]; break;
        case 2: p = intl[next(rng) % (sizeof intl / sizeof *intl)]; break;
        case 3: p = emoji[next(rng) % (sizeof emoji / sizeof *emoji)]; break;
        case 4: p = spaces[next(rng) % (sizeof spaces / sizeof *spaces)]; break;
        default:
            snprintf(num, sizeof num, "%llu", (unsigned long long)(next(rng) % 100000));
            p = num;
        }
        size_t n = strlen(p);
        if (len + n + 1 > cap)
            break;
        memcpy(buf + len, p, n);
        len += n;
        if (next(rng) % 3 == 0 && len + 2 <= cap)
            buf[len++] = ' ';
    }
    buf[len] = '\0';
    return len;
}

int32_t *tt_encode(const greta_tokenizer *tok, const char *text, size_t len, uint32_t flags,
                   size_t *n)
{
    size_t max = greta_tokenizer_max_tokens(len);
    int32_t *ids = malloc((max ? max : 1) * sizeof *ids);
    assert_non_null(ids);
    greta_error err = {0};
    int rc = greta_tokenizer_encode(tok, text, len, flags, ids, max, n, &err);
    if (rc)
        fail_msg("encode failed (%d): %s", rc, err.msg);
    return ids;
}

char *tt_decode(const greta_tokenizer *tok, const int32_t *ids, size_t n, uint32_t flags,
                size_t *len)
{
    greta_error err = {0};
    size_t need = 0;
    int rc = greta_tokenizer_decode(tok, ids, n, flags, NULL, 0, &need, &err);
    assert_int_equal(rc, GRETA_ERR_LIMIT);
    char *out = malloc(need + 1);
    assert_non_null(out);
    rc = greta_tokenizer_decode(tok, ids, n, flags, out, need + 1, len, &err);
    if (rc)
        fail_msg("decode failed (%d): %s", rc, err.msg);
    assert_int_equal(*len, need);
    return out;
}

bool tt_valid_utf8(const char *s, size_t n)
{
    const unsigned char *u = (const unsigned char *)s;
    size_t i = 0;
    while (i < n) {
        unsigned c = u[i];
        size_t k;
        unsigned lo = 0x80, hi = 0xBF;
        if (c < 0x80) { i++; continue; }
        else if (c >= 0xC2 && c < 0xE0) k = 2;
        else if (c >= 0xE0 && c < 0xF0) { k = 3; if (c == 0xE0) lo = 0xA0; if (c == 0xED) hi = 0x9F; }
        else if (c >= 0xF0 && c < 0xF5) { k = 4; if (c == 0xF0) lo = 0x90; if (c == 0xF4) hi = 0x8F; }
        else return false;
        if (i + k > n || u[i + 1] < lo || u[i + 1] > hi)
            return false;
        for (size_t j = 2; j < k; j++)
            if ((u[i + j] & 0xC0) != 0x80)
                return false;
        i += k;
    }
    return true;
}

char *tt_stream_decode(const greta_tokenizer *tok, const int32_t *ids, size_t n, uint32_t flags,
                       size_t *len)
{
    size_t room = greta_detok_max_out(tok);
    char *piece = malloc(room);
    size_t cap = 64 + n * room;
    char *out = malloc(cap + 1);
    assert_non_null(piece);
    assert_non_null(out);
    size_t total = 0;
    size_t *cuts = malloc((n + 2) * sizeof *cuts); /* end offset of each push */
    assert_non_null(cuts);
    greta_detok_state st;
    greta_detok_init(&st, flags);
    greta_error err = {0};
    for (size_t i = 0; i < n; i++) {
        size_t k = 0;
        int rc = greta_detok_push(tok, &st, ids[i], piece, room, &k, &err);
        if (rc)
            fail_msg("detok push %zu failed: %s", i, err.msg);
        memcpy(out + total, piece, k);
        total += k;
        cuts[i] = total;
    }
    size_t k = 0;
    assert_int_equal(greta_detok_flush(tok, &st, piece, room, &k, &err), 0);
    memcpy(out + total, piece, k);
    total += k;
    assert_int_equal(st.n_tokens, n);
    assert_int_equal(st.n_bytes, total);
    if (tt_valid_utf8(out, total)) {
        assert_int_equal(k, 0); /* nothing held back at the end of valid text */
        size_t prev = 0;
        for (size_t i = 0; i < n; i++) {
            if (!tt_valid_utf8(out + prev, cuts[i] - prev))
                fail_msg("push %zu wrote an incomplete UTF-8 sequence", i);
            prev = cuts[i];
        }
    }
    out[total] = '\0';
    free(cuts);
    free(piece);
    *len = total;
    return out;
}
