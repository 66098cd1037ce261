/* test_tokenizer_encode.c - encoding and one-shot decoding rules: merge
 * priority, byte fallback and unk, the word-split and whole-text BPE paths,
 * special tokens only with parse_special, invalid UTF-8 (byte fallback per
 * invalid byte), empty input, the input limit, small output buffers, decode
 * flags and bad ids. */
#include "tok_test_util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SP "\xE2\x96\x81" /* ▁ */

/* V1: merges decided by score; "z" and 0xA9 have neither a piece nor a byte token. */
static const char *const v1_pieces[] = {
    "<unk>", "<s>", "</s>", "<0x0A>", "<0xC3>", SP, "a", "b", "c", "ab", "bc", SP "a", "abc",
    "<|user|>", SP SP,
};
static const float v1_scores[] = {0, 0, 0, 0, 0, -1, -2, -3, -4, -5, -0.5f, -6, -7, 0, -8};
static const int32_t v1_types[] = {2, 3, 3, 6, 6, 1, 1, 1, 1, 1, 1, 1, 1, 4, 1};

/* V2: a piece with "▁" inside ("a▁b"): BPE must run over the whole text. */
static const char *const v2_pieces[] = {"<unk>", "<s>", "</s>", SP, "a", "b", "a" SP, "a" SP "b", SP "a"};
static const float v2_scores[] = {0, 0, 0, -1, -2, -3, -4, -5, -6};
static const int32_t v2_types[] = {2, 3, 3, 1, 1, 1, 1, 1, 1};

static greta_tokenizer *make(const char *name, const char *const *p, const float *s,
                             const int32_t *t, size_t n, tt_vocab *over)
{
    tt_vocab v = over ? *over : tt_vocab_defaults();
    v.pieces = p;
    v.scores = s;
    v.types = t;
    v.n = n;
    greta_tokenizer *tok = NULL;
    greta_error err = {0};
    if (tt_tokenizer_from_vocab(name, &v, &tok, &err))
        fail_msg("%s: %s", name, err.msg);
    return tok;
}

#define V1(name, over) make(name, v1_pieces, v1_scores, v1_types, 15, over)

static void expect_ids(const greta_tokenizer *tok, const char *text, size_t len, uint32_t flags,
                       const int32_t *want, size_t n_want)
{
    size_t n;
    int32_t *ids = tt_encode(tok, text, len, flags, &n);
    if (n != n_want || memcmp(ids, want, n * sizeof *ids) != 0) {
        fprintf(stderr, "text '%s': got", text);
        for (size_t i = 0; i < n; i++)
            fprintf(stderr, " %d", (int)ids[i]);
        fprintf(stderr, ", want");
        for (size_t i = 0; i < n_want; i++)
            fprintf(stderr, " %d", (int)want[i]);
        fprintf(stderr, "\n");
        fail();
    }
    free(ids);
}
#define EXPECT(tok, text, flags, ...)                                                   \
    do {                                                                                \
        const int32_t w_[] = {__VA_ARGS__};                                             \
        expect_ids(tok, text, sizeof(text) - 1, flags, w_, sizeof w_ / sizeof *w_);    \
    } while (0)

static void test_merge_priority(void **state)
{
    (void)state;
    greta_tokenizer *tok = V1("v1", NULL);
    /* "▁abc": bc (-0.5) first, then ▁a (-6); ab (-5) went stale, abc never forms */
    EXPECT(tok, "abc", 0, 11, 10);
    /* "▁ab": ab (-5) beats ▁a (-6); "▁ab" is no piece */
    EXPECT(tok, "ab", 0, 5, 9);
    /* spaces: "▁▁a" -> ▁▁ (-8) loses to ▁a (-6) */
    EXPECT(tok, " a", 0, 5, 11);
    /* "▁a▁▁a": both ▁a (-6) before ▁▁ (-8), which then cannot form */
    EXPECT(tok, "a  a", GRETA_ENCODE_ADD_BOS | GRETA_ENCODE_ADD_EOS, 1, 11, 5, 11, 2);
    /* "▁▁▁": ▁▁ (leftmost of two equal pairs), then ▁ */
    EXPECT(tok, "  ", 0, 14, 5);
    greta_tokenizer_destroy(&tok);
}

static void test_byte_fallback_and_unk(void **state)
{
    (void)state;
    greta_tokenizer *tok = V1("v1", NULL);
    EXPECT(tok, "\n", 0, 5, 3);              /* <0x0A> */
    EXPECT(tok, "z", 0, 5, 0);               /* no piece, no <0x7A>: unk */
    EXPECT(tok, "\xC3\xA9", 0, 5, 4, 0);     /* é: <0xC3>, then 0xA9 -> unk */
    greta_tokenizer_destroy(&tok);

    /* without an unknown token such text cannot be encoded */
    tt_vocab over = tt_vocab_defaults();
    over.unk = 0xFFFFFFFFu;
    tok = V1("v1_nounk", &over);
    assert_int_equal(greta_tokenizer_unk(tok), GRETA_TOKEN_NONE);
    int32_t ids[16];
    size_t n;
    greta_error err = {0};
    assert_int_equal(greta_tokenizer_encode(tok, "az", 2, 0, ids, 16, &n, &err), GRETA_ERR_NOT_FOUND);
    assert_non_null(strstr(err.msg, "0x7A"));
    EXPECT(tok, "a\n", 0, 11, 3);            /* still fine where byte tokens exist */
    greta_tokenizer_destroy(&tok);
}

static void test_whole_text_path(void **state)
{
    (void)state;
    greta_tokenizer *tok = make("v2", v2_pieces, v2_scores, v2_types, 9, NULL);
    /* "▁a▁b": a▁ (-4), then a▁b (-5) across the space */
    EXPECT(tok, "a b", 0, 3, 7);
    EXPECT(tok, "b a", 0, 3, 5, 8); /* ▁ b ▁ a: only ▁a (-6) forms */
    EXPECT(tok, "a a b", 0, 3, 6, 7); /* ▁ a▁ a▁b: the second a▁ (-4) went to a▁b (-5) */
    greta_tokenizer_destroy(&tok);
}

static void test_space_prefix_off(void **state)
{
    (void)state;
    tt_vocab over = tt_vocab_defaults();
    over.add_space_prefix = 0;
    greta_tokenizer *tok = V1("v1_noprefix", &over);
    EXPECT(tok, "ab", 0, 9);
    EXPECT(tok, " ab", 0, 5, 9);
    size_t len;
    int32_t ids[] = {5, 9};
    char *text = tt_decode(tok, ids, 2, 0, &len);
    assert_string_equal(text, " ab"); /* nothing stripped without the prefix */
    free(text);
    greta_tokenizer_destroy(&tok);
}

static void test_parse_special(void **state)
{
    (void)state;
    greta_tokenizer *tok = V1("v1", NULL);
    /* user-defined <|user|> (13) and control </s> only with parse_special;
     * each text fragment gets its own "▁" prefix, as in llama.cpp */
    EXPECT(tok, "a<|user|>b", GRETA_ENCODE_PARSE_SPECIAL, 11, 13, 5, 7);
    EXPECT(tok, "ab</s>", GRETA_ENCODE_PARSE_SPECIAL, 5, 9, 2);
    EXPECT(tok, "</s>", GRETA_ENCODE_PARSE_SPECIAL, 2);
    EXPECT(tok, "<s><s>", GRETA_ENCODE_PARSE_SPECIAL, 1, 1);
    /* as plain text: every character unknown here, no special id appears */
    EXPECT(tok, "</s>", 0, 5, 0, 0, 0, 0);
    greta_tokenizer_destroy(&tok);

    GRETA_TESTDATA_OR_SKIP(p, "ggml-vocab-llama-spm.gguf");
    tok = tt_load_tokenizer(p);
    EXPECT(tok, "<s>Hello</s>", GRETA_ENCODE_PARSE_SPECIAL, 1, 15043, 2);
    EXPECT(tok, "Hello<unk>", GRETA_ENCODE_PARSE_SPECIAL, 15043, 0);
    /* as text: "▁<", "s", ">", "Hello", "</", "s", ">" */
    EXPECT(tok, "<s>Hello</s>", 0, 529, 29879, 29958, 10994, 829, 29879, 29958);
    size_t n, len;
    int32_t *ids = tt_encode(tok, "<s>Hello</s>", 12, 0, &n);
    char *text = tt_decode(tok, ids, n, 0, &len);
    assert_string_equal(text, "<s>Hello</s>");
    free(text);
    free(ids);
    greta_tokenizer_destroy(&tok);
}

/* Invalid UTF-8: each byte that does not start a valid sequence (truncated,
 * overlong, surrogate, > U+10FFFF, stray continuation) is one symbol and
 * falls back to its byte token; the valid text around it merges normally.
 * Decoding gives the exact bytes back. */
static void test_invalid_utf8(void **state)
{
    (void)state;
    GRETA_TESTDATA_OR_SKIP(p, "ggml-vocab-llama-spm.gguf");
    greta_tokenizer *tok = tt_load_tokenizer(p);
    struct {
        const char *text;
        size_t len;
        const char *pieces[8];
    } cases[] = {
        {"a\xFF" "b", 3, {SP "a", "<0xFF>", "b"}},
        {"\xC3", 1, {SP, "<0xC3>"}},                          /* truncated 2-byte */
        {"\xE2\x82x", 3, {SP, "<0xE2>", "<0x82>", "x"}},      /* truncated 3-byte */
        {"\xED\xA0\x80", 3, {SP, "<0xED>", "<0xA0>", "<0x80>"}}, /* surrogate */
        {"\xC0\xAF", 2, {SP, "<0xC0>", "<0xAF>"}},             /* overlong '/' */
        {"\xF4\x90\x80\x80", 4, {SP, "<0xF4>", "<0x90>", "<0x80>", "<0x80>"}}, /* > U+10FFFF */
        {"\x80" "ab", 3, {SP, "<0x80>", "ab"}},               /* stray continuation */
        {"\xE0" "ab", 3, {SP, "<0xE0>", "ab"}},               /* lead byte, then ASCII */
    };
    for (size_t c = 0; c < sizeof cases / sizeof *cases; c++) {
        size_t n;
        int32_t *ids = tt_encode(tok, cases[c].text, cases[c].len, 0, &n);
        size_t k = 0;
        while (k < 8 && cases[c].pieces[k])
            k++;
        if (n != k)
            fail_msg("case %zu: %zu ids, want %zu", c, n, k);
        for (size_t i = 0; i < k; i++) {
            int32_t want = greta_tokenizer_find_piece(tok, cases[c].pieces[i], strlen(cases[c].pieces[i]));
            assert_true(want >= 0);
            if (ids[i] != want)
                fail_msg("case %zu id %zu: %d, want %d (%s)", c, i, (int)ids[i], (int)want,
                         cases[c].pieces[i]);
        }
        size_t len, slen;
        char *text = tt_decode(tok, ids, n, 0, &len);
        char *stream = tt_stream_decode(tok, ids, n, 0, &slen);
        assert_int_equal(len, cases[c].len);
        assert_memory_equal(text, cases[c].text, len);
        assert_int_equal(slen, len);
        assert_memory_equal(stream, text, len);
        free(stream);
        free(text);
        free(ids);
    }
    greta_tokenizer_destroy(&tok);
}

/* Random bytes (mostly invalid UTF-8, NULs included): byte-exact round trip
 * and streaming equality on both real vocabularies; with parse_special no
 * crash and only valid ids. */
static void random_bytes_on(const char *file)
{
    GRETA_TESTDATA_OR_SKIP(p, file);
    greta_tokenizer *tok = tt_load_tokenizer(p);
    uint64_t rng = 0xDEADBEEFCAFEull;
    char buf[96];
    for (int c = 0; c < 1500; c++) {
        rng ^= rng << 13; rng ^= rng >> 7; rng ^= rng << 17;
        size_t len = rng % sizeof buf;
        for (size_t i = 0; i < len; i++) {
            rng ^= rng << 13; rng ^= rng >> 7; rng ^= rng << 17;
            /* favour bytes around UTF-8 boundaries and ASCII */
            static const uint8_t pick[] = {0x00, ' ', 'a', '<', 's', '>', '\n', 0x7F, 0x80, 0xBF,
                                           0xC0, 0xC2, 0xDF, 0xE0, 0xE2, 0x96, 0x81, 0xED, 0xF0,
                                           0xF4, 0xF5, 0xFF, 0x9F, 0xA0};
            buf[i] = (rng & 1) ? (char)pick[(rng >> 8) % sizeof pick] : (char)(rng >> 16);
        }
        if (memmem(buf, len, SP, 3))
            continue; /* a literal U+2581 decodes as a space, by design */
        size_t n, dlen, slen;
        int32_t *ids = tt_encode(tok, buf, len, GRETA_ENCODE_ADD_BOS, &n);
        char *text = tt_decode(tok, ids, n, 0, &dlen);
        char *stream = tt_stream_decode(tok, ids, n, 0, &slen);
        if (dlen != len || memcmp(text, buf, len) != 0)
            fail_msg("%s: random case %d does not round-trip", file, c);
        assert_int_equal(slen, dlen);
        assert_memory_equal(stream, text, dlen);
        free(stream);
        free(text);
        free(ids);
        ids = tt_encode(tok, buf, len, GRETA_ENCODE_PARSE_SPECIAL, &n);
        for (size_t i = 0; i < n; i++)
            assert_true(ids[i] >= 0 && ids[i] < greta_tokenizer_vocab_size(tok));
        free(ids);
    }
    greta_tokenizer_destroy(&tok);
}

static void test_random_bytes(void **state)
{
    (void)state;
    random_bytes_on("ggml-vocab-llama-spm.gguf");
    random_bytes_on("stories260K.gguf");
}

static void test_empty_input(void **state)
{
    (void)state;
    greta_tokenizer *tok = V1("v1", NULL);
    int32_t ids[4] = {-7, -7, -7, -7};
    size_t n = 99;
    greta_error err = {0};
    assert_int_equal(greta_tokenizer_encode(tok, "", 0, 0, ids, 4, &n, &err), 0);
    assert_int_equal(n, 0);
    assert_int_equal(greta_tokenizer_encode(tok, NULL, 0, GRETA_ENCODE_PARSE_SPECIAL, ids, 4, &n, &err), 0);
    assert_int_equal(n, 0);
    EXPECT(tok, "", GRETA_ENCODE_ADD_BOS, 1);
    EXPECT(tok, "", GRETA_ENCODE_ADD_BOS | GRETA_ENCODE_ADD_EOS, 1, 2);
    char out[4];
    size_t len = 9;
    assert_int_equal(greta_tokenizer_decode(tok, ids, 0, 0, out, sizeof out, &len, &err), 0);
    assert_int_equal(len, 0);
    assert_string_equal(out, "");
    int32_t bos_eos[] = {1, 2};
    assert_int_equal(greta_tokenizer_decode(tok, bos_eos, 2, 0, out, sizeof out, &len, &err), 0);
    assert_string_equal(out, "");
    greta_tokenizer_destroy(&tok);
}

static void test_input_limit(void **state)
{
    (void)state;
    greta_tokenizer *tok = V1("v1", NULL);
    assert_int_equal(greta_tokenizer_max_input(tok), GRETA_TOKENIZER_DEFAULT_MAX_INPUT);
    /* the default limit, with a real buffer one byte over it */
    size_t big = GRETA_TOKENIZER_DEFAULT_MAX_INPUT + 1;
    char *text = malloc(big);
    assert_non_null(text);
    memset(text, 'a', big);
    int32_t ids[8];
    size_t n = 5;
    greta_error err = {0};
    assert_int_equal(greta_tokenizer_encode(tok, text, big, 0, ids, 8, &n, &err), GRETA_ERR_LIMIT);
    assert_int_equal(n, 0);
    assert_non_null(strstr(err.msg, "limit"));
    free(text);
    /* a lowered limit: exactly at it is fine, one more byte is not */
    greta_tokenizer_set_max_input(tok, 4);
    EXPECT(tok, "abab", 0, 5, 9, 9);
    assert_int_equal(greta_tokenizer_encode(tok, "ababa", 5, 0, ids, 8, &n, &err), GRETA_ERR_LIMIT);
    assert_non_null(strstr(err.msg, "5 bytes"));
    greta_tokenizer_destroy(&tok);
}

static void test_small_output(void **state)
{
    (void)state;
    GRETA_TESTDATA_OR_SKIP(p, "ggml-vocab-llama-spm.gguf");
    greta_tokenizer *tok = tt_load_tokenizer(p);
    int32_t ids[2];
    size_t n = 0;
    greta_error err = {0};
    assert_int_equal(greta_tokenizer_encode(tok, "Hello world", 11, GRETA_ENCODE_ADD_BOS, ids, 2, &n, &err),
                     GRETA_ERR_LIMIT);
    assert_int_equal(n, 3); /* what is needed */
    assert_int_equal(ids[0], 1);
    assert_int_equal(ids[1], 15043);
    assert_int_equal(greta_tokenizer_encode(tok, "Hello world", 11, 0, NULL, 0, &n, &err), GRETA_ERR_LIMIT);
    assert_int_equal(n, 2);
    /* decode into a small buffer */
    int32_t hw[] = {1, 15043, 3186};
    char out[8];
    size_t len = 0;
    assert_int_equal(greta_tokenizer_decode(tok, hw, 3, 0, out, sizeof out, &len, &err), GRETA_ERR_LIMIT);
    assert_int_equal(len, 11);
    assert_non_null(strstr(err.msg, "11 bytes"));
    greta_tokenizer_destroy(&tok);
}

/* 1 MB of generated text, and one 200 KB word without spaces. */
static void test_long_input(void **state)
{
    (void)state;
    GRETA_TESTDATA_OR_SKIP(p, "ggml-vocab-llama-spm.gguf");
    greta_tokenizer *tok = tt_load_tokenizer(p);
    size_t cap = 1 << 20;
    char *text = malloc(cap + 1);
    assert_non_null(text);
    uint64_t rng = 77;
    size_t len = 0;
    while (len + 300 < cap)
        len += tt_gen_string(&rng, text + len, 300);
    size_t n, dlen;
    int32_t *ids = tt_encode(tok, text, len, GRETA_ENCODE_ADD_BOS, &n);
    assert_true(n > len / 8);
    char *back = tt_decode(tok, ids, n, 0, &dlen);
    assert_int_equal(dlen, len);
    assert_memory_equal(back, text, len);
    free(back);
    free(ids);
    for (size_t i = 0; i < 200000; i++)
        text[i] = "abcab"[i % 5];
    ids = tt_encode(tok, text, 200000, 0, &n);
    back = tt_decode(tok, ids, n, 0, &dlen);
    assert_int_equal(dlen, 200000);
    assert_memory_equal(back, text, 200000);
    free(back);
    free(ids);
    free(text);
    greta_tokenizer_destroy(&tok);
}

static void test_decode_rules(void **state)
{
    (void)state;
    GRETA_TESTDATA_OR_SKIP(p, "ggml-vocab-llama-spm.gguf");
    greta_tokenizer *tok = tt_load_tokenizer(p);
    int32_t ids[] = {1, 15043, 13, 3186, 2};
    size_t len;
    char *s = tt_decode(tok, ids, 5, 0, &len);
    assert_string_equal(s, "Hello\n world");
    free(s);
    s = tt_decode(tok, ids, 5, GRETA_DECODE_SPECIAL, &len);
    assert_string_equal(s, "<s> Hello\n world</s>");
    free(s);
    s = tt_decode(tok, ids + 1, 3, GRETA_DECODE_KEEP_SPACE, &len);
    assert_string_equal(s, " Hello\n world");
    free(s);
    /* only one space goes: "▁▁Hello" was " Hello" */
    int32_t two[] = {29871, 15043};
    s = tt_decode(tok, two, 2, 0, &len);
    assert_string_equal(s, " Hello");
    free(s);
    int32_t unk[] = {0};
    s = tt_decode(tok, unk, 1, GRETA_DECODE_KEEP_SPACE, &len);
    assert_string_equal(s, " \xE2\x81\x87 ");
    free(s);
    int32_t bad[] = {15043, 32000};
    char out[64];
    greta_error err = {0};
    assert_int_equal(greta_tokenizer_decode(tok, bad, 2, 0, out, sizeof out, &len, &err), GRETA_ERR_INVALID);
    assert_non_null(strstr(err.msg, "32000"));
    assert_non_null(strstr(err.msg, "index 1"));
    greta_tokenizer_destroy(&tok);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_merge_priority),
        cmocka_unit_test(test_byte_fallback_and_unk),
        cmocka_unit_test(test_whole_text_path),
        cmocka_unit_test(test_space_prefix_off),
        cmocka_unit_test(test_parse_special),
        cmocka_unit_test(test_invalid_utf8),
        cmocka_unit_test(test_random_bytes),
        cmocka_unit_test(test_empty_input),
        cmocka_unit_test(test_input_limit),
        cmocka_unit_test(test_small_output),
        cmocka_unit_test(test_long_input),
        cmocka_unit_test(test_decode_rules),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
