/* tokenizer.h - Llama SentencePiece (BPE) tokenizer read from a GGUF vocabulary,
 * one-shot and incremental (streaming) detokenizer.
 *
 * Vocabulary (GGUF keys, see docs/TOKENIZER.md):
 *   tokenizer.ggml.model       string, must be "llama"
 *   tokenizer.ggml.tokens      array[string]  piece text, id = index
 *   tokenizer.ggml.scores      array[f32]     merge priority (higher first)
 *   tokenizer.ggml.token_type  array[i32]     greta_token_type (1..6)
 *   tokenizer.ggml.{bos,eos,unknown,padding}_token_id  u32, optional
 *       (defaults 1, 2, 0, none; 0xFFFFFFFF or -1 means none)
 *   tokenizer.ggml.add_bos_token / add_eos_token / add_space_prefix  bool,
 *       optional (defaults true / false / true)
 * All three arrays are required and must have the same length.
 *
 * Encoding (SentencePiece BPE as llama.cpp does it): spaces become U+2581
 * ("▁"), one "▁" is prepended to each text fragment that starts the input or
 * follows a special token, adjacent symbols are merged best score first
 * (ties: leftmost), characters with no piece fall back to <0xNN> byte tokens
 * (or to unk when the byte token is missing). Invalid UTF-8 bytes are byte
 * fallback too: each invalid byte is a symbol of its own.
 *
 * The handle is immutable after creation: one tokenizer may be used from
 * several threads at once (encode/decode allocate their own scratch).
 */
#ifndef GRETA_TOKENIZER_H
#define GRETA_TOKENIZER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/error.h"
#include "common/gguf.h"

typedef struct greta_tokenizer greta_tokenizer; /* opaque */

/* Token types as stored in tokenizer.ggml.token_type (llama.cpp numbering). */
typedef enum greta_token_type {
    GRETA_TOKEN_NORMAL = 1,
    GRETA_TOKEN_UNKNOWN = 2,
    GRETA_TOKEN_CONTROL = 3,
    GRETA_TOKEN_USER_DEFINED = 4,
    GRETA_TOKEN_UNUSED = 5,
    GRETA_TOKEN_BYTE = 6,
} greta_token_type;

#define GRETA_TOKEN_NONE (-1)            /* "no such token" (e.g. no pad id) */
#define GRETA_TOKENIZER_MAX_VOCAB (1 << 24)
#define GRETA_TOKENIZER_MAX_PIECE 1024   /* longest accepted piece, bytes */
/* Default limit on the bytes of one encode call (greta_tokenizer_set_max_input). */
#define GRETA_TOKENIZER_DEFAULT_MAX_INPUT ((size_t)16 << 20)

/* Reads the vocabulary from an open GGUF file. The tokenizer copies what it
 * needs, so f may be closed afterwards. On failure *out is NULL and err names
 * the key (and index) that is missing or wrong. */
int greta_tokenizer_create_from_gguf(const gguf_file *f, greta_tokenizer **out,
                                     greta_error *err);
void greta_tokenizer_destroy(greta_tokenizer **tok);

int32_t greta_tokenizer_vocab_size(const greta_tokenizer *tok);
int32_t greta_tokenizer_bos(const greta_tokenizer *tok); /* GRETA_TOKEN_NONE if none */
int32_t greta_tokenizer_eos(const greta_tokenizer *tok);
int32_t greta_tokenizer_unk(const greta_tokenizer *tok);
int32_t greta_tokenizer_pad(const greta_tokenizer *tok);
bool greta_tokenizer_add_bos(const greta_tokenizer *tok);          /* model default */
bool greta_tokenizer_add_eos(const greta_tokenizer *tok);          /* model default */
bool greta_tokenizer_add_space_prefix(const greta_tokenizer *tok);

/* Piece text of a token as stored in the vocabulary ("▁Hello", "<0x0A>",
 * "<s>"), NUL-terminated, length in *len (may be NULL). NULL if id is out of
 * range. */
const char *greta_tokenizer_token_piece(const greta_tokenizer *tok, int32_t id, size_t *len);
/* greta_token_type of id, or 0 if id is out of range. */
int greta_tokenizer_token_type(const greta_tokenizer *tok, int32_t id);
/* Id of a piece given by its exact text (any token type), or GRETA_TOKEN_NONE. */
int32_t greta_tokenizer_find_piece(const greta_tokenizer *tok, const char *text, size_t len);

/* ---- encoding ---------------------------------------------------------- */

enum {
    GRETA_ENCODE_ADD_BOS = 1u << 0,       /* prepend BOS */
    GRETA_ENCODE_ADD_EOS = 1u << 1,       /* append EOS */
    GRETA_ENCODE_PARSE_SPECIAL = 1u << 2, /* control, user-defined and unknown
                                             token texts in the input become
                                             their ids; otherwise plain text */
};

/* The model's default flags: ADD_BOS / ADD_EOS from add_bos_token / add_eos_token. */
uint32_t greta_tokenizer_default_flags(const greta_tokenizer *tok);

/* Bytes one encode call accepts (default GRETA_TOKENIZER_DEFAULT_MAX_INPUT);
 * longer input fails with GRETA_ERR_LIMIT. Not thread-safe against encodes. */
void greta_tokenizer_set_max_input(greta_tokenizer *tok, size_t max_bytes);
size_t greta_tokenizer_max_input(const greta_tokenizer *tok);

/* Upper bound of the ids encode can produce for len bytes of input. */
size_t greta_tokenizer_max_tokens(size_t len);

/* Encodes len bytes of text (need not be NUL-terminated; len 0 is fine).
 * Writes at most max ids to out and the count to *n_out. If max is too small
 * it returns GRETA_ERR_LIMIT with *n_out set to the count needed (out holds
 * the first max ids). Input over the input limit: GRETA_ERR_LIMIT, *n_out 0. */
int greta_tokenizer_encode(const greta_tokenizer *tok, const char *text, size_t len,
                           uint32_t flags, int32_t *out, size_t max, size_t *n_out,
                           greta_error *err);

/* ---- decoding ---------------------------------------------------------- */

enum {
    GRETA_DECODE_SPECIAL = 1u << 0,    /* write control tokens' text (else omitted) */
    GRETA_DECODE_KEEP_SPACE = 1u << 1, /* keep the leading space of the first
                                          piece (else removed when the vocab
                                          adds a space prefix, as SentencePiece
                                          does); use it to decode a continuation */
};

/* Decodes ids to bytes: "▁" becomes a space, <0xNN> its raw byte, the unknown
 * token " \xE2\x81\x87 " (" ⁇ ", as SentencePiece), control tokens nothing
 * (or their text with GRETA_DECODE_SPECIAL). The first piece that is written
 * loses one leading space (unless GRETA_DECODE_KEEP_SPACE or the vocab has
 * add_space_prefix = false). The output is exact bytes, possibly invalid
 * UTF-8 where byte tokens say so. Writes a NUL after the text when it fits;
 * *n_out is the text length. If cap < length + 1: GRETA_ERR_LIMIT with *n_out
 * the length needed. An id out of range: GRETA_ERR_INVALID. */
int greta_tokenizer_decode(const greta_tokenizer *tok, const int32_t *ids, size_t n,
                           uint32_t flags, char *out, size_t cap, size_t *n_out,
                           greta_error *err);

/* Incremental decoder for streaming. The state is a plain fixed-size struct
 * (no pointers) that can live in shared memory and be resumed by another
 * process. Tokens are pushed one at a time; each push writes only complete
 * UTF-8 sequences and holds back a trailing incomplete one (up to 3 bytes)
 * until its continuation arrives. Bytes that can no longer form a valid
 * sequence are written as they are, so the concatenated output of every push
 * plus the final flush equals greta_tokenizer_decode of the same ids with the
 * same flags, byte for byte. */
#define GRETA_DETOK_VERSION 1u
typedef struct greta_detok_state {
    uint32_t version;    /* GRETA_DETOK_VERSION */
    uint32_t flags;      /* GRETA_DECODE_* given to init */
    uint8_t at_start;    /* 1 until the first piece is written */
    uint8_t n_pending;   /* bytes held in pending (0..3) */
    uint8_t pending[4];  /* start of an incomplete UTF-8 sequence */
    uint8_t reserved[6]; /* zero */
    uint64_t n_tokens;   /* tokens pushed so far */
    uint64_t n_bytes;    /* bytes written so far (pushes + flushes) */
} greta_detok_state;     /* 40 bytes */

void greta_detok_init(greta_detok_state *st, uint32_t flags);
/* Most bytes one push or flush can write: give at least this much room. */
size_t greta_detok_max_out(const greta_tokenizer *tok);
/* Pushes one id; writes *n bytes to out (no NUL). Fails without changing the
 * state if id is out of range (GRETA_ERR_INVALID), cap < greta_detok_max_out
 * (GRETA_ERR_LIMIT) or the state is not a valid one (GRETA_ERR_STATE). */
int greta_detok_push(const greta_tokenizer *tok, greta_detok_state *st, int32_t id,
                     char *out, size_t cap, size_t *n, greta_error *err);
/* Writes the held-back bytes (an incomplete sequence) as they are. The state
 * stays usable: later pushes continue the same text. */
int greta_detok_flush(const greta_tokenizer *tok, greta_detok_state *st,
                      char *out, size_t cap, size_t *n, greta_error *err);

#endif
