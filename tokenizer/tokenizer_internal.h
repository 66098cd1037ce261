/* tokenizer_internal.h - the tokenizer's private structure, shared by
 * tokenizer.c (loading, lookups), encode.c and decode.c. Not installed. */
#ifndef GRETA_TOKENIZER_INTERNAL_H
#define GRETA_TOKENIZER_INTERNAL_H

#include "tokenizer.h"

/* "▁" (U+2581), SentencePiece's visible space. */
#define TOK_SPACE_UTF8 "\xE2\x96\x81"
#define TOK_SPACE_LEN 3
/* SentencePiece's surface of the unknown token (" ⁇ "). */
#define TOK_UNK_SURFACE " \xE2\x81\x87 "

/* One slot of the open-addressing piece table. id < 0: empty. */
typedef struct tok_slot {
    uint32_t hash;
    int32_t id;
} tok_slot;

struct greta_tokenizer {
    int32_t n_vocab;
    char *text;          /* piece texts, each NUL-terminated, [text_size] */
    uint32_t *text_off;  /* [n_vocab] offset of each piece in text */
    uint32_t *text_len;  /* [n_vocab] piece length in bytes */
    char *surf;          /* decoded surfaces ("▁" -> " ", bytes raw), [surf_size] */
    uint32_t *surf_off;  /* [n_vocab] */
    uint32_t *surf_len;  /* [n_vocab] */
    float *scores;       /* [n_vocab] */
    uint8_t *types;      /* [n_vocab] greta_token_type */
    int32_t byte_id[256];/* id of <0xNN>, or -1 */

    /* piece text -> id for pieces that BPE may form (normal, user-defined):
     * open addressing, linear probing, capacity a power of two */
    tok_slot *merge_tab;
    uint32_t merge_mask;
    /* the same over every piece (greta_tokenizer_find_piece) */
    tok_slot *all_tab;
    uint32_t all_mask;
    uint32_t max_merge_len; /* longest mergeable piece, bytes */

    /* control, user-defined and unknown ids, longest text first (parse_special) */
    int32_t *special;
    int32_t n_special;
    uint8_t special_first[256]; /* 1 if some special text starts with this byte */

    int32_t bos, eos, unk, pad;
    bool add_bos, add_eos, add_space_prefix;
    /* true when every piece holding "▁" has it only as a leading run, so no
     * merge can join a non-"▁" character to a following "▁": encode then runs
     * BPE word by word, which gives the same result with small heaps */
    bool split_words;
    size_t max_surf_len;
    size_t max_input;
};

/* FNV-1a over len bytes. */
static inline uint32_t tok_hash(const char *s, size_t len)
{
    uint32_t h = 2166136261u;
    for (size_t i = 0; i < len; i++) {
        h ^= (uint8_t)s[i];
        h *= 16777619u;
    }
    return h;
}

/* Id of a mergeable piece, or -1. */
static inline int32_t tok_lookup(const tok_slot *tab, uint32_t mask, const greta_tokenizer *t,
                                 const char *s, size_t len)
{
    uint32_t h = tok_hash(s, len);
    for (uint32_t i = h & mask;; i = (i + 1) & mask) {
        const tok_slot *e = &tab[i];
        if (e->id < 0)
            return -1;
        if (e->hash == h && t->text_len[e->id] == len) {
            const char *p = t->text + t->text_off[e->id];
            size_t k = 0;
            while (k < len && p[k] == s[k])
                k++;
            if (k == len)
                return e->id;
        }
    }
}

/* Length of the valid UTF-8 sequence starting at s[0] (n bytes available),
 * or 0 when s[0] does not start one (invalid or truncated). Strict rules:
 * no overlong forms, no surrogates, nothing above U+10FFFF. */
static inline size_t tok_utf8_len(const unsigned char *s, size_t n)
{
    unsigned c = s[0];
    if (c < 0x80)
        return 1;
    if (c < 0xC2)
        return 0;
    if (c < 0xE0)
        return (n >= 2 && (s[1] & 0xC0) == 0x80) ? 2 : 0;
    if (c < 0xF0) {
        if (n < 3 || (s[2] & 0xC0) != 0x80)
            return 0;
        unsigned lo = c == 0xE0 ? 0xA0 : 0x80, hi = c == 0xED ? 0x9F : 0xBF;
        return (s[1] >= lo && s[1] <= hi) ? 3 : 0;
    }
    if (c < 0xF5) {
        if (n < 4 || (s[2] & 0xC0) != 0x80 || (s[3] & 0xC0) != 0x80)
            return 0;
        unsigned lo = c == 0xF0 ? 0x90 : 0x80, hi = c == 0xF4 ? 0x8F : 0xBF;
        return (s[1] >= lo && s[1] <= hi) ? 4 : 0;
    }
    return 0;
}

#endif
