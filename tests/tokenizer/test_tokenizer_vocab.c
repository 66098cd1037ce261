/* test_tokenizer_vocab.c - loading the vocabulary from GGUF: accessors on the
 * real files, and a clear error for every missing or inconsistent field of a
 * synthetic vocabulary. */
#include "tok_test_util.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SP "\xE2\x96\x81" /* ▁ */

static const char *const pieces[] = {"<unk>", "<s>", "</s>", "<0x0A>", SP, "a", "b"};
static const float scores[] = {0, 0, 0, 0, -1, -2, -3};
static const int32_t types[] = {2, 3, 3, 6, 1, 1, 1};
#define N_PIECES (sizeof pieces / sizeof *pieces)

static tt_vocab base(void)
{
    tt_vocab v = tt_vocab_defaults();
    v.pieces = pieces;
    v.scores = scores;
    v.types = types;
    v.n = N_PIECES;
    return v;
}

/* Expects creation to fail with code and a message containing each needle. */
static void expect_error(const char *name, const tt_vocab *v, int code, const char *needle1,
                         const char *needle2)
{
    greta_tokenizer *tok = NULL;
    greta_error err = {0};
    int rc = tt_tokenizer_from_vocab(name, v, &tok, &err);
    if (rc != code)
        fail_msg("%s: expected status %d, got %d (%s)", name, code, rc, err.msg);
    assert_null(tok);
    if (needle1 && !strstr(err.msg, needle1))
        fail_msg("%s: message '%s' does not mention '%s'", name, err.msg, needle1);
    if (needle2 && !strstr(err.msg, needle2))
        fail_msg("%s: message '%s' does not mention '%s'", name, err.msg, needle2);
}

static void test_llama_vocab_fields(void **state)
{
    (void)state;
    GRETA_TESTDATA_OR_SKIP(p, "ggml-vocab-llama-spm.gguf");
    greta_tokenizer *tok = tt_load_tokenizer(p);
    assert_int_equal(greta_tokenizer_vocab_size(tok), 32000);
    assert_int_equal(greta_tokenizer_bos(tok), 1);
    assert_int_equal(greta_tokenizer_eos(tok), 2);
    assert_int_equal(greta_tokenizer_unk(tok), 0);
    assert_int_equal(greta_tokenizer_pad(tok), GRETA_TOKEN_NONE);
    assert_true(greta_tokenizer_add_bos(tok));
    assert_false(greta_tokenizer_add_eos(tok));
    assert_true(greta_tokenizer_add_space_prefix(tok));
    assert_int_equal(greta_tokenizer_default_flags(tok), GRETA_ENCODE_ADD_BOS);
    size_t len;
    assert_string_equal(greta_tokenizer_token_piece(tok, 15043, &len), SP "Hello");
    assert_int_equal(len, 8);
    assert_string_equal(greta_tokenizer_token_piece(tok, 13, NULL), "<0x0A>");
    assert_null(greta_tokenizer_token_piece(tok, 32000, NULL));
    assert_null(greta_tokenizer_token_piece(tok, -1, NULL));
    assert_int_equal(greta_tokenizer_token_type(tok, 0), GRETA_TOKEN_UNKNOWN);
    assert_int_equal(greta_tokenizer_token_type(tok, 1), GRETA_TOKEN_CONTROL);
    assert_int_equal(greta_tokenizer_token_type(tok, 13), GRETA_TOKEN_BYTE);
    assert_int_equal(greta_tokenizer_token_type(tok, 15043), GRETA_TOKEN_NORMAL);
    assert_int_equal(greta_tokenizer_token_type(tok, 32000), 0);
    assert_int_equal(greta_tokenizer_find_piece(tok, SP "Hello", 8), 15043);
    assert_int_equal(greta_tokenizer_find_piece(tok, "</s>", 4), 2);
    assert_int_equal(greta_tokenizer_find_piece(tok, "<0xFF>", 6), 3 + 255);
    assert_int_equal(greta_tokenizer_find_piece(tok, "no such piece", 13), GRETA_TOKEN_NONE);
    greta_tokenizer_destroy(&tok);
    assert_null(tok);
    greta_tokenizer_destroy(&tok); /* twice is harmless */
}

/* stories260K: padding_token_id = 0xFFFFFFFF means none; no add_* keys. */
static void test_stories_vocab_fields(void **state)
{
    (void)state;
    GRETA_TESTDATA_OR_SKIP(p, "stories260K.gguf");
    greta_tokenizer *tok = tt_load_tokenizer(p);
    assert_int_equal(greta_tokenizer_vocab_size(tok), 512);
    assert_int_equal(greta_tokenizer_pad(tok), GRETA_TOKEN_NONE);
    assert_int_equal(greta_tokenizer_bos(tok), 1);
    assert_true(greta_tokenizer_add_bos(tok));
    assert_false(greta_tokenizer_add_eos(tok));
    greta_tokenizer_destroy(&tok);
}

static void test_synthetic_ok_and_defaults(void **state)
{
    (void)state;
    tt_vocab v = base();
    greta_tokenizer *tok = NULL;
    greta_error err = {0};
    assert_int_equal(tt_tokenizer_from_vocab("ok", &v, &tok, &err), 0);
    assert_int_equal(greta_tokenizer_vocab_size(tok), (int)N_PIECES);
    assert_int_equal(greta_tokenizer_bos(tok), 1);  /* defaults 1, 2, 0 */
    assert_int_equal(greta_tokenizer_eos(tok), 2);
    assert_int_equal(greta_tokenizer_unk(tok), 0);
    assert_true(greta_tokenizer_add_bos(tok));
    assert_true(greta_tokenizer_add_space_prefix(tok));
    greta_tokenizer_destroy(&tok);

    v.bos = 0xFFFFFFFFu; /* none */
    v.add_bos = 0;
    v.add_eos = 1;
    v.add_space_prefix = 0;
    assert_int_equal(tt_tokenizer_from_vocab("ok2", &v, &tok, &err), 0);
    assert_int_equal(greta_tokenizer_bos(tok), GRETA_TOKEN_NONE);
    assert_false(greta_tokenizer_add_bos(tok));
    assert_true(greta_tokenizer_add_eos(tok));
    assert_false(greta_tokenizer_add_space_prefix(tok));
    assert_int_equal(greta_tokenizer_default_flags(tok), GRETA_ENCODE_ADD_EOS);
    /* ADD_BOS without a BOS token is an error at encode time */
    int32_t ids[8];
    size_t n;
    assert_int_equal(greta_tokenizer_encode(tok, "a", 1, GRETA_ENCODE_ADD_BOS, ids, 8, &n, &err),
                     GRETA_ERR_NOT_FOUND);
    assert_non_null(strstr(err.msg, "BOS"));
    greta_tokenizer_destroy(&tok);
}

static void test_missing_fields(void **state)
{
    (void)state;
    tt_vocab v = base();
    v.omit_model = true;
    expect_error("no_model", &v, GRETA_ERR_NOT_FOUND, "tokenizer.ggml.model", NULL);
    v = base();
    v.model = "gpt2";
    expect_error("gpt2", &v, GRETA_ERR_UNSUPPORTED, "tokenizer.ggml.model", "gpt2");
    v = base();
    v.omit_tokens = true;
    expect_error("no_tokens", &v, GRETA_ERR_NOT_FOUND, "tokenizer.ggml.tokens", NULL);
    v = base();
    v.omit_scores = true;
    expect_error("no_scores", &v, GRETA_ERR_NOT_FOUND, "tokenizer.ggml.scores", NULL);
    v = base();
    v.omit_types = true;
    expect_error("no_types", &v, GRETA_ERR_NOT_FOUND, "tokenizer.ggml.token_type", NULL);
    v = base();
    v.n = 0;
    expect_error("empty", &v, GRETA_ERR_FORMAT, "tokenizer.ggml.tokens", "0 entries");
}

static void test_inconsistent_fields(void **state)
{
    (void)state;
    tt_vocab v = base();
    v.n_scores = N_PIECES - 1;
    expect_error("short_scores", &v, GRETA_ERR_FORMAT, "tokenizer.ggml.scores", "6 entries");
    v = base();
    v.n_types = N_PIECES - 2;
    expect_error("short_types", &v, GRETA_ERR_FORMAT, "tokenizer.ggml.token_type", "5 entries");

    int32_t bad_types[N_PIECES];
    memcpy(bad_types, types, sizeof types);
    bad_types[5] = 7;
    v = base();
    v.types = bad_types;
    expect_error("bad_type", &v, GRETA_ERR_FORMAT, "token_type[5] = 7", NULL);

    /* a byte token whose text is not <0xNN> */
    const char *bad_pieces[N_PIECES];
    memcpy(bad_pieces, pieces, sizeof pieces);
    bad_pieces[3] = "<0xZZ>";
    v = base();
    v.pieces = bad_pieces;
    expect_error("bad_byte", &v, GRETA_ERR_FORMAT, "tokenizer.ggml.tokens[3]", "<0xZZ>");

    float nan_scores[N_PIECES];
    memcpy(nan_scores, scores, sizeof scores);
    nan_scores[4] = NAN;
    v = base();
    v.scores = nan_scores;
    expect_error("nan_score", &v, GRETA_ERR_FORMAT, "scores[4]", "NaN");

    v = base();
    v.bos = 999;
    expect_error("bos_range", &v, GRETA_ERR_FORMAT, "tokenizer.ggml.bos_token_id", "999");
    v = base();
    v.unk = N_PIECES;
    expect_error("unk_range", &v, GRETA_ERR_FORMAT, "tokenizer.ggml.unknown_token_id", NULL);
    v = base();
    v.eos = 0xFFFFFFFFu;
    v.add_eos = 1;
    expect_error("eos_needed", &v, GRETA_ERR_FORMAT, "add_eos_token", "EOS");
}

static void test_wrong_types(void **state)
{
    (void)state;
    /* tokens stored as something else than array[string]: write a vocab whose
     * scores array is int32 by passing types as scores */
    greta_error err = {0};
    const char *dir = greta_test_tmpdir("tokenizer");
    assert_non_null(dir);
    char path[4096];
    snprintf(path, sizeof path, "%s/wrong_types.gguf", dir);
    gguf_writer *w = gguf_writer_create(&err);
    assert_non_null(w);
    gguf_str items[N_PIECES];
    for (size_t i = 0; i < N_PIECES; i++)
        items[i] = (gguf_str){pieces[i], strlen(pieces[i])};
    assert_int_equal(gguf_writer_set_str(w, "tokenizer.ggml.model", "llama"), 0);
    assert_int_equal(gguf_writer_set_arr_str(w, "tokenizer.ggml.tokens", items, N_PIECES), 0);
    assert_int_equal(gguf_writer_set_arr(w, "tokenizer.ggml.scores", GGUF_TYPE_INT32, types, N_PIECES), 0);
    assert_int_equal(gguf_writer_set_arr(w, "tokenizer.ggml.token_type", GGUF_TYPE_INT32, types, N_PIECES), 0);
    assert_int_equal(gguf_writer_set_str(w, "tokenizer.ggml.bos_token_id", "one"), 0);
    assert_int_equal(gguf_writer_begin(w, path, &err), 0);
    assert_int_equal(gguf_writer_finish(w, &err), 0);
    gguf_writer_destroy(&w);
    gguf_file *f = NULL;
    assert_int_equal(gguf_open(path, &f, &err), 0);
    greta_tokenizer *tok = NULL;
    int rc = greta_tokenizer_create_from_gguf(f, &tok, &err);
    assert_int_equal(rc, GRETA_ERR_TYPE);
    assert_non_null(strstr(err.msg, "tokenizer.ggml.scores"));
    assert_null(tok);
    gguf_close(&f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_llama_vocab_fields),
        cmocka_unit_test(test_stories_vocab_fields),
        cmocka_unit_test(test_synthetic_ok_and_defaults),
        cmocka_unit_test(test_missing_fields),
        cmocka_unit_test(test_inconsistent_fields),
        cmocka_unit_test(test_wrong_types),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
