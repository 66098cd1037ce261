/* test_tokenizer_vectors.c - the Llama-2 tokenizer against llama.cpp's own
 * output: ggml-vocab-llama-spm.gguf.inp/.out (46 cases), llama2-extra (17),
 * llama2-corpus (1,500), token for token. The .out files hold ids without BOS
 * (add_special = false, parse_special = false; the dummy-prefix space still
 * applies). For every case also: decode(encode(s)) == s, and the streaming
 * decoder fed one id at a time gives the one-shot decoder's bytes. Then the
 * same round trips over a generated corpus on the Llama-2 vocabulary and on
 * stories260K's 512-token vocabulary. */
#include "tok_test_util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static greta_tokenizer *llama_tok;

static int setup(void **state)
{
    (void)state;
    const char *p = greta_testdata_find("ggml-vocab-llama-spm.gguf");
    if (p)
        llama_tok = tt_load_tokenizer(p);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    greta_tokenizer_destroy(&llama_tok);
    return 0;
}

static void print_ids(const char *label, const int32_t *ids, size_t n)
{
    fprintf(stderr, "  %s:", label);
    for (size_t i = 0; i < n; i++)
        fprintf(stderr, " %d", (int)ids[i]);
    fprintf(stderr, "\n");
}

/* Checks one vector: ids, round trip, streaming. Returns true when it passes. */
static bool check_case(const greta_tokenizer *tok, const vec_case *c, size_t idx)
{
    size_t n;
    int32_t *ids = tt_encode(tok, c->text, c->len, 0, &n);
    bool ok = n == c->n_ids && memcmp(ids, c->ids, n * sizeof *ids) == 0;
    if (!ok) {
        fprintf(stderr, "case %zu: ids differ for '%s'\n", idx, c->text);
        print_ids("expected", c->ids, c->n_ids);
        print_ids("got     ", ids, n);
    }
    size_t len, slen;
    char *text = tt_decode(tok, ids, n, 0, &len);
    if (len != c->len || memcmp(text, c->text, len) != 0) {
        fprintf(stderr, "case %zu: round trip gives '%s' for '%s'\n", idx, text, c->text);
        ok = false;
    }
    char *stream = tt_stream_decode(tok, ids, n, 0, &slen);
    if (slen != len || memcmp(stream, text, len) != 0) {
        fprintf(stderr, "case %zu: streaming decode differs\n", idx);
        ok = false;
    }
    /* with BOS: ids shift by one, decoding is unchanged */
    size_t nb;
    int32_t *bids = tt_encode(tok, c->text, c->len, GRETA_ENCODE_ADD_BOS, &nb);
    if (nb != n + 1 || bids[0] != greta_tokenizer_bos(tok) || memcmp(bids + 1, ids, n * sizeof *ids)) {
        fprintf(stderr, "case %zu: ids with BOS are not BOS + ids\n", idx);
        ok = false;
    }
    char *btext = tt_decode(tok, bids, nb, 0, &len);
    char *bstream = tt_stream_decode(tok, bids, nb, 0, &slen);
    if (len != c->len || memcmp(btext, c->text, len) || slen != len || memcmp(bstream, btext, len)) {
        fprintf(stderr, "case %zu: decode with BOS differs\n", idx);
        ok = false;
    }
    free(bids);
    free(btext);
    free(bstream);
    free(stream);
    free(text);
    free(ids);
    return ok;
}

static void run_vectors(const char *inp_name, const char *out_name, size_t expect_count)
{
    if (!llama_tok) {
        GRETA_TESTDATA_OR_SKIP(p, "ggml-vocab-llama-spm.gguf");
        (void)p;
    }
    GRETA_TESTDATA_OR_SKIP(inp, inp_name);
    char inp_path[4096];
    snprintf(inp_path, sizeof inp_path, "%s", inp);
    GRETA_TESTDATA_OR_SKIP(outp, out_name);
    vec_case *cases;
    size_t n;
    tt_load_vectors(inp_path, outp, &cases, &n);
    assert_int_equal(n, expect_count);
    size_t failed = 0;
    for (size_t i = 0; i < n; i++)
        if (!check_case(llama_tok, &cases[i], i))
            failed++;
    tt_free_vectors(cases, n);
    if (failed)
        fail_msg("%zu of %zu cases failed", failed, n);
}

static void test_llama_spm_vectors(void **state)
{
    (void)state;
    run_vectors("ggml-vocab-llama-spm.gguf.inp", "ggml-vocab-llama-spm.gguf.out", 46);
}

static void test_llama2_extra_vectors(void **state)
{
    (void)state;
    run_vectors("llama2-extra.inp", "llama2-extra.out", 17);
}

static void test_llama2_corpus_vectors(void **state)
{
    (void)state;
    run_vectors("llama2-corpus.inp", "llama2-corpus.out", 1500);
}

/* A few cases written out here, so that a wrong reading of the files cannot
 * hide a failure: "Hello world" -> 15043 3186; " Hello world" -> 29871 15043 3186. */
static void test_known_ids(void **state)
{
    (void)state;
    GRETA_TESTDATA_OR_SKIP(p, "ggml-vocab-llama-spm.gguf");
    (void)p;
    size_t n;
    int32_t *ids = tt_encode(llama_tok, "Hello world", 11, GRETA_ENCODE_ADD_BOS, &n);
    int32_t want1[] = {1, 15043, 3186};
    assert_int_equal(n, 3);
    assert_memory_equal(ids, want1, sizeof want1);
    free(ids);
    ids = tt_encode(llama_tok, " Hello world", 12, 0, &n);
    int32_t want2[] = {29871, 15043, 3186};
    assert_int_equal(n, 3);
    assert_memory_equal(ids, want2, sizeof want2);
    free(ids);
    /* "\n" has no piece: byte fallback <0x0A> = 13 after the "▁" prefix */
    ids = tt_encode(llama_tok, "\n", 1, 0, &n);
    int32_t want3[] = {29871, 13};
    assert_int_equal(n, 2);
    assert_memory_equal(ids, want3, sizeof want3);
    free(ids);
}

static void round_trip_corpus(const greta_tokenizer *tok, uint64_t seed, size_t count)
{
    uint64_t rng = seed;
    char buf[512];
    size_t failed = 0;
    for (size_t i = 0; i < count; i++) {
        size_t len = tt_gen_string(&rng, buf, sizeof buf);
        size_t n, tlen, slen;
        int32_t *ids = tt_encode(tok, buf, len, GRETA_ENCODE_ADD_BOS, &n);
        char *text = tt_decode(tok, ids, n, 0, &tlen);
        char *stream = tt_stream_decode(tok, ids, n, 0, &slen);
        if (tlen != len || memcmp(text, buf, len) != 0) {
            if (failed++ < 5)
                fprintf(stderr, "round trip %zu: '%s' -> '%s'\n", i, buf, text);
        } else if (slen != tlen || memcmp(stream, text, tlen) != 0) {
            if (failed++ < 5)
                fprintf(stderr, "streaming %zu differs for '%s'\n", i, buf);
        }
        free(stream);
        free(text);
        free(ids);
    }
    if (failed)
        fail_msg("%zu of %zu generated strings failed", failed, count);
}

static void test_round_trip_generated_llama2(void **state)
{
    (void)state;
    GRETA_TESTDATA_OR_SKIP(p, "ggml-vocab-llama-spm.gguf");
    (void)p;
    round_trip_corpus(llama_tok, 0x9E3779B97F4A7C15ull, 2000);
}

static void test_round_trip_generated_stories260k(void **state)
{
    (void)state;
    GRETA_TESTDATA_OR_SKIP(p, "stories260K.gguf");
    greta_tokenizer *tok = tt_load_tokenizer(p);
    assert_int_equal(greta_tokenizer_vocab_size(tok), 512);
    round_trip_corpus(tok, 12345, 2000);
    /* and every vector string of the Llama-2 files on this vocabulary */
    const char *names[] = {"ggml-vocab-llama-spm.gguf.inp", "llama2-extra.inp", "llama2-corpus.inp"};
    const char *outs[] = {"ggml-vocab-llama-spm.gguf.out", "llama2-extra.out", "llama2-corpus.out"};
    for (int f = 0; f < 3; f++) {
        char inp_path[4096];
        GRETA_TESTDATA_OR_SKIP(inp, names[f]);
        snprintf(inp_path, sizeof inp_path, "%s", inp);
        GRETA_TESTDATA_OR_SKIP(outp, outs[f]);
        vec_case *cases;
        size_t n;
        tt_load_vectors(inp_path, outp, &cases, &n);
        for (size_t i = 0; i < n; i++) {
            size_t k, len, slen;
            int32_t *ids = tt_encode(tok, cases[i].text, cases[i].len, GRETA_ENCODE_ADD_BOS, &k);
            char *text = tt_decode(tok, ids, k, 0, &len);
            char *stream = tt_stream_decode(tok, ids, k, 0, &slen);
            if (len != cases[i].len || memcmp(text, cases[i].text, len))
                fail_msg("%s case %zu: round trip differs on stories260K", names[f], i);
            assert_int_equal(slen, len);
            assert_memory_equal(stream, text, len);
            free(stream);
            free(text);
            free(ids);
        }
        tt_free_vectors(cases, n);
    }
    greta_tokenizer_destroy(&tok);
}

/* stories260K's 512-token vocabulary: the prompt ids llama.cpp produced for
 * testdata/quant/gqa-greedy.json (BOS + prompt), written out here. */
static void test_stories260k_llama_cpp_ids(void **state)
{
    (void)state;
    GRETA_TESTDATA_OR_SKIP(p, "stories260K.gguf");
    greta_tokenizer *tok = tt_load_tokenizer(p);
    static const struct {
        const char *text;
        int32_t ids[12];
        size_t n;
    } cases[] = {
        {"It was a sunny day", {1, 359, 413, 286, 261, 262, 379, 416, 422, 328}, 10},
        {"Mom said no", {1, 392, 287, 336, 297, 414}, 6},
        {"Once upon a time there was", {1, 403, 407, 261, 378, 383, 286}, 7},
        {"She had a big", {1, 338, 381, 261, 370}, 5},
        {"The cat and the bird", {1, 291, 280, 294, 269, 265, 268, 315, 418}, 9},
        {"The dog ran to the", {1, 291, 400, 428, 352, 303, 267, 265}, 8},
        {"They went home", {1, 342, 263, 377, 270, 287, 411}, 7},
    };
    for (size_t c = 0; c < sizeof cases / sizeof *cases; c++) {
        vec_case v = {(char *)cases[c].text, strlen(cases[c].text), (int32_t *)cases[c].ids + 1,
                      cases[c].n - 1};
        if (!check_case(tok, &v, c))
            fail_msg("stories260K case %zu ('%s') failed", c, cases[c].text);
    }
    greta_tokenizer_destroy(&tok);
}

/* llama-2-tiny-random.gguf carries the same vocabulary: same ids. */
static void test_tiny_random_same_vocab(void **state)
{
    (void)state;
    GRETA_TESTDATA_OR_SKIP(p, "llama-2-tiny-random.gguf");
    greta_tokenizer *tok = tt_load_tokenizer(p);
    char inp_path[4096];
    GRETA_TESTDATA_OR_SKIP(inp, "ggml-vocab-llama-spm.gguf.inp");
    snprintf(inp_path, sizeof inp_path, "%s", inp);
    GRETA_TESTDATA_OR_SKIP(outp, "ggml-vocab-llama-spm.gguf.out");
    vec_case *cases;
    size_t n;
    tt_load_vectors(inp_path, outp, &cases, &n);
    for (size_t i = 0; i < n; i++)
        assert_true(check_case(tok, &cases[i], i));
    tt_free_vectors(cases, n);
    greta_tokenizer_destroy(&tok);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_known_ids),
        cmocka_unit_test(test_llama_spm_vectors),
        cmocka_unit_test(test_llama2_extra_vectors),
        cmocka_unit_test(test_llama2_corpus_vectors),
        cmocka_unit_test(test_round_trip_generated_llama2),
        cmocka_unit_test(test_round_trip_generated_stories260k),
        cmocka_unit_test(test_tiny_random_same_vocab),
        cmocka_unit_test(test_stories260k_llama_cpp_ids),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
