/* test_detok.c - the incremental (streaming) decoder: partial UTF-8 held
 * back until complete, invalid sequences passed through, state resumed from
 * a copy of its bytes (as from shared memory) by another tokenizer instance,
 * corrupted states refused, flags, small buffers. (Equality with the one-shot
 * decoder over every test string is in test_tokenizer_vectors.) */
#include "tok_test_util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static greta_tokenizer *tok;

static int setup(void **state)
{
    (void)state;
    const char *p = greta_testdata_find("ggml-vocab-llama-spm.gguf");
    if (p)
        tok = tt_load_tokenizer(p);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    greta_tokenizer_destroy(&tok);
    return 0;
}

#define NEED_TOK()                                                   \
    do {                                                             \
        GRETA_TESTDATA_OR_SKIP(p_, "ggml-vocab-llama-spm.gguf");    \
        (void)p_;                                                    \
    } while (0)

/* Pushes one id and returns what it wrote (static buffer, NUL-terminated). */
static const char *push(greta_detok_state *st, int32_t id, size_t *n)
{
    static char buf[2048];
    greta_error err = {0};
    int rc = greta_detok_push(tok, st, id, buf, sizeof buf - 1, n, &err);
    if (rc)
        fail_msg("push %d: %s", (int)id, err.msg);
    buf[*n] = '\0';
    return buf;
}

/* "🦙" has no piece: <0xF0> <0x9F> <0xA6> <0x99>. Nothing comes out until the
 * fourth byte; then all four at once. */
static void test_emoji_held_until_complete(void **state)
{
    (void)state;
    NEED_TOK();
    int32_t ids[] = {1, 15043, 29871, 243, 162, 169, 156, 3186};
    greta_detok_state st;
    greta_detok_init(&st, 0);
    size_t n;
    assert_string_equal(push(&st, ids[0], &n), "");
    assert_string_equal(push(&st, ids[1], &n), "Hello");
    assert_string_equal(push(&st, ids[2], &n), " ");
    assert_string_equal(push(&st, ids[3], &n), "");
    assert_int_equal(st.n_pending, 1);
    assert_string_equal(push(&st, ids[4], &n), "");
    assert_string_equal(push(&st, ids[5], &n), "");
    assert_int_equal(st.n_pending, 3);
    assert_string_equal(push(&st, ids[6], &n), "\xF0\x9F\xA6\x99");
    assert_int_equal(st.n_pending, 0);
    assert_string_equal(push(&st, ids[7], &n), " world");
    assert_int_equal(st.n_tokens, 8);
    assert_int_equal(st.n_bytes, strlen("Hello \xF0\x9F\xA6\x99 world"));
    /* the encoder produces exactly these ids */
    size_t k;
    int32_t *enc = tt_encode(tok, "Hello \xF0\x9F\xA6\x99 world", 16, GRETA_ENCODE_ADD_BOS, &k);
    assert_int_equal(k, 8);
    assert_memory_equal(enc, ids, sizeof ids);
    free(enc);
}

/* A sequence that cannot complete is written as it is, then decoding goes on. */
static void test_invalid_sequence_passes_through(void **state)
{
    (void)state;
    NEED_TOK();
    greta_detok_state st;
    greta_detok_init(&st, GRETA_DECODE_KEEP_SPACE);
    size_t n;
    assert_string_equal(push(&st, 3 + 0xE2, &n), "");
    assert_string_equal(push(&st, 3 + 0x82, &n), "");
    /* "▁Hello" cannot continue E2 82: both bytes come out raw, then the text */
    const char *out = push(&st, 15043, &n);
    assert_int_equal(n, 8);
    assert_memory_equal(out, "\xE2\x82 Hello", 8);
    /* a stray continuation byte and 0xFF are written at once */
    assert_int_equal(push(&st, 3 + 0x80, &n)[0], (char)0x80);
    assert_int_equal(n, 1);
    assert_int_equal(push(&st, 3 + 0xFF, &n)[0], (char)0xFF);
    /* E0 must be followed by A0..BF: E0 80 is invalid at once */
    push(&st, 3 + 0xE0, &n);
    assert_int_equal(n, 0);
    out = push(&st, 3 + 0x80, &n);
    assert_int_equal(n, 2);
    assert_memory_equal(out, "\xE0\x80", 2);
    /* flush writes a held partial sequence */
    push(&st, 3 + 0xF0, &n);
    push(&st, 3 + 0x9F, &n);
    char buf[64];
    greta_error err = {0};
    assert_int_equal(greta_detok_flush(tok, &st, buf, sizeof buf, &n, &err), 0);
    assert_int_equal(n, 2);
    assert_memory_equal(buf, "\xF0\x9F", 2);
    assert_int_equal(st.n_pending, 0);
    assert_int_equal(greta_detok_flush(tok, &st, buf, sizeof buf, &n, &err), 0);
    assert_int_equal(n, 0);
}

/* The state is plain bytes: copy it mid-emoji, resume with another
 * tokenizer instance, and the output is the same as without the break. */
static void test_resume_from_copied_state(void **state)
{
    (void)state;
    NEED_TOK();
    const char *text = "Ünïcödé 🦙🎉 naïve 日本語\nend";
    size_t n, len;
    int32_t *ids = tt_encode(tok, text, strlen(text), GRETA_ENCODE_ADD_BOS, &n);
    char *whole = tt_stream_decode(tok, ids, n, 0, &len);
    assert_string_equal(whole, text);
    for (size_t cut = 0; cut <= n; cut++) {
        char out[512];
        size_t total = 0, k;
        greta_error err = {0};
        greta_detok_state st;
        greta_detok_init(&st, 0);
        for (size_t i = 0; i < cut; i++) {
            assert_int_equal(greta_detok_push(tok, &st, ids[i], out + total, sizeof out - total, &k, &err), 0);
            total += k;
        }
        unsigned char shm[sizeof st]; /* "shared memory" */
        memcpy(shm, &st, sizeof st);
        memset(&st, 0xAA, sizeof st);
        GRETA_TESTDATA_OR_SKIP(p, "ggml-vocab-llama-spm.gguf");
        greta_tokenizer *tok2 = tt_load_tokenizer(p);
        greta_detok_state resumed;
        memcpy(&resumed, shm, sizeof resumed);
        for (size_t i = cut; i < n; i++) {
            assert_int_equal(greta_detok_push(tok2, &resumed, ids[i], out + total, sizeof out - total, &k, &err), 0);
            total += k;
        }
        assert_int_equal(greta_detok_flush(tok2, &resumed, out + total, sizeof out - total, &k, &err), 0);
        total += k;
        assert_int_equal(total, len);
        assert_memory_equal(out, text, len);
        assert_int_equal(resumed.n_tokens, n);
        greta_tokenizer_destroy(&tok2);
    }
    free(whole);
    free(ids);
}

static void test_state_is_plain_and_fixed(void **state)
{
    (void)state;
    assert_int_equal(sizeof(greta_detok_state), 40);
    greta_detok_state a, b;
    memset(&a, 0x55, sizeof a);
    memset(&b, 0x11, sizeof b);
    greta_detok_init(&a, GRETA_DECODE_SPECIAL);
    greta_detok_init(&b, GRETA_DECODE_SPECIAL);
    assert_memory_equal(&a, &b, sizeof a); /* init leaves no garbage */
    assert_int_equal(a.version, GRETA_DETOK_VERSION);
    assert_int_equal(a.at_start, 1);
}

static void test_corrupt_state_refused(void **state)
{
    (void)state;
    NEED_TOK();
    char out[256];
    size_t n;
    greta_error err = {0};
    greta_detok_state st, saved;
    /* version */
    greta_detok_init(&st, 0);
    st.version = 99;
    saved = st;
    assert_int_equal(greta_detok_push(tok, &st, 15043, out, sizeof out, &n, &err), GRETA_ERR_STATE);
    assert_non_null(strstr(err.msg, "version"));
    assert_memory_equal(&st, &saved, sizeof st);
    /* n_pending too large */
    greta_detok_init(&st, 0);
    st.n_pending = 5;
    assert_int_equal(greta_detok_push(tok, &st, 15043, out, sizeof out, &n, &err), GRETA_ERR_STATE);
    assert_non_null(strstr(err.msg, "n_pending"));
    /* a held byte that starts no sequence */
    greta_detok_init(&st, 0);
    st.n_pending = 1;
    st.pending[0] = 'A';
    assert_int_equal(greta_detok_push(tok, &st, 15043, out, sizeof out, &n, &err), GRETA_ERR_STATE);
    assert_non_null(strstr(err.msg, "pending[0]"));
    /* a held continuation that does not continue */
    greta_detok_init(&st, 0);
    st.n_pending = 2;
    st.pending[0] = 0xF0;
    st.pending[1] = 0x41;
    assert_int_equal(greta_detok_flush(tok, &st, out, sizeof out, &n, &err), GRETA_ERR_STATE);
    assert_non_null(strstr(err.msg, "pending[1]"));
    /* a complete sequence cannot be pending */
    greta_detok_init(&st, 0);
    st.n_pending = 2;
    st.pending[0] = 0xC3;
    st.pending[1] = 0xA9;
    assert_int_equal(greta_detok_push(tok, &st, 15043, out, sizeof out, &n, &err), GRETA_ERR_STATE);
}

static void test_bad_id_and_small_buffer(void **state)
{
    (void)state;
    NEED_TOK();
    greta_detok_state st, saved;
    greta_detok_init(&st, 0);
    saved = st;
    char out[256];
    size_t n;
    greta_error err = {0};
    assert_int_equal(greta_detok_push(tok, &st, 32000, out, sizeof out, &n, &err), GRETA_ERR_INVALID);
    assert_non_null(strstr(err.msg, "32000"));
    assert_int_equal(greta_detok_push(tok, &st, -3, out, sizeof out, &n, &err), GRETA_ERR_INVALID);
    size_t room = greta_detok_max_out(tok);
    assert_true(room >= 5 && room < sizeof out);
    assert_int_equal(greta_detok_push(tok, &st, 15043, out, room - 1, &n, &err), GRETA_ERR_LIMIT);
    assert_memory_equal(&st, &saved, sizeof st); /* nothing changed */
    assert_int_equal(greta_detok_push(tok, &st, 15043, out, room, &n, &err), 0);
    assert_int_equal(n, 5);
}

/* Flags: SPECIAL writes control tokens; KEEP_SPACE keeps the first piece's
 * space (a continuation after a prompt); the space is stripped only once. */
static void test_flags(void **state)
{
    (void)state;
    NEED_TOK();
    greta_detok_state st;
    size_t n;
    greta_detok_init(&st, GRETA_DECODE_SPECIAL);
    assert_string_equal(push(&st, 1, &n), "<s>");
    assert_string_equal(push(&st, 15043, &n), " Hello");
    assert_string_equal(push(&st, 2, &n), "</s>");
    greta_detok_init(&st, 0);
    assert_string_equal(push(&st, 1, &n), "");
    assert_int_equal(st.at_start, 1); /* an omitted control token is not "first" */
    assert_string_equal(push(&st, 15043, &n), "Hello");
    assert_int_equal(st.at_start, 0);
    assert_string_equal(push(&st, 15043, &n), " Hello");
    greta_detok_init(&st, GRETA_DECODE_KEEP_SPACE);
    assert_string_equal(push(&st, 3186, &n), " world");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_emoji_held_until_complete),
        cmocka_unit_test(test_invalid_sequence_passes_through),
        cmocka_unit_test(test_resume_from_copied_state),
        cmocka_unit_test(test_state_is_plain_and_fixed),
        cmocka_unit_test(test_corrupt_state_refused),
        cmocka_unit_test(test_bad_id_and_small_buffer),
        cmocka_unit_test(test_flags),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
