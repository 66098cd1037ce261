/* tok_test_util.h - helpers for the tokenizer tests: vocabularies from test
 * data, llama.cpp .inp/.out vectors, synthetic GGUF vocabularies, a seeded
 * string generator. */
#ifndef GRETA_TOK_TEST_UTIL_H
#define GRETA_TOK_TEST_UTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "test_util.h"
#include "tokenizer.h"

/* One case of a llama.cpp .inp/.out pair: text and ids without BOS. */
typedef struct vec_case {
    char *text;
    size_t len;
    int32_t *ids;
    size_t n_ids;
} vec_case;

/* Reads NAME.inp/NAME.out style files (full paths). Fails the test on a
 * malformed file. */
void tt_load_vectors(const char *inp_path, const char *out_path, vec_case **cases, size_t *n);
void tt_free_vectors(vec_case *cases, size_t n);

/* Opens a GGUF file and creates its tokenizer (fails the test on error). */
greta_tokenizer *tt_load_tokenizer(const char *path);

/* Synthetic vocabulary: pieces with scores and types; writes a GGUF file
 * under the test tmpdir with the three arrays plus the given extra keys and
 * returns its path (static buffer). Any of the arrays may be left out
 * (omit_*), or given a wrong length (n_scores/n_types overrides). */
typedef struct tt_vocab {
    const char *const *pieces;
    const float *scores;
    const int32_t *types;
    size_t n;
    bool omit_model, omit_tokens, omit_scores, omit_types;
    const char *model;          /* default "llama" */
    size_t n_scores, n_types;   /* 0: n */
    /* extra keys: u32 ids (-2 = leave out), bools (-1 = leave out) */
    int64_t bos, eos, unk;
    int add_bos, add_eos, add_space_prefix;
    const char *chat_template;  /* NULL: none */
} tt_vocab;

/* Defaults: bos/eos/unk left out, bools left out. */
tt_vocab tt_vocab_defaults(void);
const char *tt_write_vocab(const char *name, const tt_vocab *v);

/* Tokenizer of a synthetic vocab; on failure returns the status and err. */
int tt_tokenizer_from_vocab(const char *name, const tt_vocab *v, greta_tokenizer **tok,
                            greta_error *err);

/* Deterministic generator (xorshift) of strings mixing ASCII words,
 * accented Latin, CJK, emoji (with ZWJ sequences and modifiers), digits,
 * punctuation, and runs of spaces, newlines and tabs. Writes up to cap-1
 * bytes plus NUL; returns the length. */
size_t tt_gen_string(uint64_t *rng, char *buf, size_t cap);

/* Encode helper: asserts success, returns malloc'ed ids. */
int32_t *tt_encode(const greta_tokenizer *tok, const char *text, size_t len, uint32_t flags,
                   size_t *n);
/* Decode helper: asserts success, returns malloc'ed NUL-terminated text. */
char *tt_decode(const greta_tokenizer *tok, const int32_t *ids, size_t n, uint32_t flags,
                size_t *len);
/* Streams ids one by one through greta_detok_push + flush and returns the
 * concatenated output (malloc'ed); checks that every push wrote only
 * complete UTF-8 sequences when the final text is valid UTF-8. */
char *tt_stream_decode(const greta_tokenizer *tok, const int32_t *ids, size_t n, uint32_t flags,
                       size_t *len);

/* True if s[0..n) is valid UTF-8. */
bool tt_valid_utf8(const char *s, size_t n);

#endif
