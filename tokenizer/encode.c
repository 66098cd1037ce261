/* encode.c - SentencePiece BPE encoding (Llama's tokenizer, as llama.cpp runs it).
 *
 * For each text fragment (the whole input, or the text between special tokens
 * when parse_special is on):
 *   1. spaces become "▁", and "▁" is prepended when the fragment starts the
 *      input or follows a special token (add_space_prefix);
 *   2. the text is split into symbols, one per UTF-8 character (an invalid
 *      byte is a symbol of its own);
 *   3. every adjacent pair whose concatenation is a piece goes into a max-heap
 *      keyed by the piece's score (ties: leftmost first); the best pair is
 *      merged and the pairs with its new neighbours are added, until the heap
 *      is empty (stale entries are recognised by their size and skipped);
 *   4. each remaining symbol is its piece's id, or its bytes as <0xNN> tokens,
 *      or unk for a byte without a byte token.
 * When the vocabulary allows it (tok->split_words) step 3 runs on one word
 * ("▁"-run + non-"▁" characters) at a time, which gives the same ids. */
#include "tokenizer_internal.h"

#include <stdlib.h>
#include <string.h>

typedef struct sym {
    int32_t prev, next; /* neighbours in the list, -1 at the ends */
    uint32_t start, n;  /* bytes buf[start .. start+n); n == 0: merged away */
    int32_t id;         /* piece id once known (merged symbols), else -1 */
} sym;

typedef struct bigram {
    float score;
    int32_t left, right; /* symbol indices */
    uint32_t size;       /* bytes of the merged piece */
    int32_t id;          /* the merged piece */
} bigram;

typedef struct enc {
    const greta_tokenizer *t;
    char *buf; size_t buf_n, buf_cap;       /* escaped text of the current run */
    sym *syms; size_t n_syms, syms_cap;
    bigram *heap; size_t heap_n, heap_cap;
    int32_t *out; size_t max, n;            /* n counts every id, out gets the first max */
    greta_error *err;
} enc;

static int grow(void **p, size_t *cap, size_t need, size_t elem, greta_error *err)
{
    if (need <= *cap)
        return GRETA_OK;
    size_t c = *cap ? *cap : 64;
    while (c < need)
        c *= 2;
    void *q = realloc(*p, c * elem);
    if (!q)
        return greta_error_set(err, GRETA_ERR_NOMEM, "tokenizer: out of memory (%zu x %zu bytes)",
                               c, elem);
    *p = q;
    *cap = c;
    return GRETA_OK;
}

static inline void emit(enc *e, int32_t id)
{
    if (e->n < e->max)
        e->out[e->n] = id;
    e->n++;
}

static inline bool before(const bigram *a, const bigram *b)
{
    return a->score > b->score || (a->score == b->score && a->left < b->left);
}

static int heap_push(enc *e, bigram b)
{
    if (e->heap_n == e->heap_cap) {
        int rc = grow((void **)&e->heap, &e->heap_cap, e->heap_n + 1, sizeof *e->heap, e->err);
        if (rc)
            return rc;
    }
    size_t i = e->heap_n++;
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (!before(&b, &e->heap[p]))
            break;
        e->heap[i] = e->heap[p];
        i = p;
    }
    e->heap[i] = b;
    return GRETA_OK;
}

static bigram heap_pop(enc *e)
{
    bigram top = e->heap[0];
    bigram last = e->heap[--e->heap_n];
    size_t n = e->heap_n, i = 0;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= n)
            break;
        if (c + 1 < n && before(&e->heap[c + 1], &e->heap[c]))
            c++;
        if (!before(&e->heap[c], &last))
            break;
        e->heap[i] = e->heap[c];
        i = c;
    }
    if (n)
        e->heap[i] = last;
    return top;
}

static int try_pair(enc *e, int32_t l, int32_t r)
{
    if (l < 0 || r < 0)
        return GRETA_OK;
    const greta_tokenizer *t = e->t;
    uint32_t size = e->syms[l].n + e->syms[r].n;
    if (size > t->max_merge_len)
        return GRETA_OK;
    int32_t id = tok_lookup(t->merge_tab, t->merge_mask, t, e->buf + e->syms[l].start, size);
    if (id < 0)
        return GRETA_OK;
    bigram b = {t->scores[id], l, r, size, id};
    return heap_push(e, b);
}

/* Byte fallback for one symbol that is no piece. */
static int emit_bytes(enc *e, const sym *s)
{
    const greta_tokenizer *t = e->t;
    for (uint32_t k = 0; k < s->n; k++) {
        uint8_t b = (uint8_t)e->buf[s->start + k];
        int32_t id = t->byte_id[b];
        if (id < 0)
            id = t->unk;
        if (id < 0)
            return greta_error_set(e->err, GRETA_ERR_NOT_FOUND,
                                   "text byte 0x%02X has no token: the vocabulary has neither "
                                   "<0x%02X> nor an unknown token", b, b);
        emit(e, id);
    }
    return GRETA_OK;
}

/* Runs BPE over buf[0 .. buf_n) and emits its ids. */
static int bpe_run(enc *e)
{
    const greta_tokenizer *t = e->t;
    size_t n = e->buf_n;
    if (n == 0)
        return GRETA_OK;
    int rc = grow((void **)&e->syms, &e->syms_cap, n, sizeof *e->syms, e->err);
    if (rc)
        return rc;
    const unsigned char *u = (const unsigned char *)e->buf;
    int32_t k = 0;
    for (size_t pos = 0; pos < n; k++) {
        size_t len = tok_utf8_len(u + pos, n - pos);
        if (len == 0)
            len = 1;
        e->syms[k] = (sym){k - 1, k + 1, (uint32_t)pos, (uint32_t)len, -1};
        pos += len;
    }
    e->syms[k - 1].next = -1;
    e->n_syms = (size_t)k;

    e->heap_n = 0;
    for (int32_t i = 0; i + 1 < k; i++)
        if ((rc = try_pair(e, i, i + 1)))
            return rc;
    while (e->heap_n) {
        bigram b = heap_pop(e);
        sym *l = &e->syms[b.left], *r = &e->syms[b.right];
        if (l->n == 0 || r->n == 0 || l->n + r->n != b.size)
            continue; /* stale: one side was merged elsewhere */
        l->n += r->n;
        l->id = b.id;
        r->n = 0;
        l->next = r->next;
        if (r->next >= 0)
            e->syms[r->next].prev = b.left;
        if ((rc = try_pair(e, l->prev, b.left)) || (rc = try_pair(e, b.left, l->next)))
            return rc;
    }

    for (int32_t i = 0; i >= 0; i = e->syms[i].next) {
        const sym *s = &e->syms[i];
        int32_t id = s->id;
        if (id < 0)
            id = tok_lookup(t->merge_tab, t->merge_mask, t, e->buf + s->start, s->n);
        if (id >= 0)
            emit(e, id);
        else if ((rc = emit_bytes(e, s)))
            return rc;
    }
    return GRETA_OK;
}

static inline int buf_add(enc *e, const char *s, size_t n)
{
    if (e->buf_n + n > e->buf_cap) {
        int rc = grow((void **)&e->buf, &e->buf_cap, e->buf_n + n, 1, e->err);
        if (rc)
            return rc;
    }
    memcpy(e->buf + e->buf_n, s, n);
    e->buf_n += n;
    return GRETA_OK;
}

/* Length of the "▁" (a space or a literal U+2581) at text[i], or 0. */
static inline size_t space_at(const char *s, size_t i, size_t n)
{
    if (s[i] == ' ')
        return 1;
    if ((uint8_t)s[i] == 0xE2 && i + 2 < n && (uint8_t)s[i + 1] == 0x96 && (uint8_t)s[i + 2] == 0x81)
        return 3;
    return 0;
}

/* Encodes one raw-text fragment (n > 0). */
static int encode_fragment(enc *e, const char *text, size_t n, bool prefix)
{
    const greta_tokenizer *t = e->t;
    size_t i = 0;
    int rc;
    e->buf_n = 0;
    if (prefix && (rc = buf_add(e, TOK_SPACE_UTF8, TOK_SPACE_LEN)))
        return rc;
    if (!t->split_words) {
        /* whole fragment as one run: escape it all */
        if ((rc = grow((void **)&e->buf, &e->buf_cap, e->buf_n + 3 * n, 1, e->err)))
            return rc;
        for (; i < n; i++) {
            if (text[i] == ' ') {
                memcpy(e->buf + e->buf_n, TOK_SPACE_UTF8, TOK_SPACE_LEN);
                e->buf_n += TOK_SPACE_LEN;
            } else {
                e->buf[e->buf_n++] = text[i];
            }
        }
        return bpe_run(e);
    }
    /* word by word: a run of "▁" then a run of other bytes */
    while (i < n) {
        size_t sl;
        while (i < n && (sl = space_at(text, i, n)) != 0) {
            if ((rc = buf_add(e, TOK_SPACE_UTF8, TOK_SPACE_LEN)))
                return rc;
            i += sl;
        }
        size_t j = i;
        while (j < n && !space_at(text, j, n))
            j++;
        if ((rc = buf_add(e, text + i, j - i)) || (rc = bpe_run(e)))
            return rc;
        e->buf_n = 0;
        i = j;
    }
    if (e->buf_n) /* the prefix alone cannot be left over, but stay safe */
        return bpe_run(e);
    return GRETA_OK;
}

/* Longest special piece at text[pos], or -1. */
static int32_t match_special(const greta_tokenizer *t, const char *text, size_t pos, size_t n)
{
    if (!t->special_first[(uint8_t)text[pos]])
        return -1;
    for (int32_t k = 0; k < t->n_special; k++) {
        int32_t id = t->special[k];
        uint32_t len = t->text_len[id];
        if (len <= n - pos && memcmp(text + pos, t->text + t->text_off[id], len) == 0)
            return id;
    }
    return -1;
}

size_t greta_tokenizer_max_tokens(size_t len)
{
    /* each input byte gives at most 3 ids (a space without a "▁" piece gives
     * three byte tokens), each fragment's "▁" prefix 3 more, plus BOS/EOS */
    return 6 * len + 5;
}

int greta_tokenizer_encode(const greta_tokenizer *tok, const char *text, size_t len,
                           uint32_t flags, int32_t *out, size_t max, size_t *n_out,
                           greta_error *err)
{
    *n_out = 0;
    if (len > tok->max_input)
        return greta_error_set(err, GRETA_ERR_LIMIT,
                               "encode: input is %zu bytes, over the tokenizer limit of %zu bytes",
                               len, tok->max_input);
    if (!text && len)
        return greta_error_set(err, GRETA_ERR_INVALID, "encode: NULL text");
    if ((flags & GRETA_ENCODE_ADD_BOS) && tok->bos < 0)
        return greta_error_set(err, GRETA_ERR_NOT_FOUND, "add_bos asked but the vocabulary has no BOS");
    if ((flags & GRETA_ENCODE_ADD_EOS) && tok->eos < 0)
        return greta_error_set(err, GRETA_ERR_NOT_FOUND, "add_eos asked but the vocabulary has no EOS");

    enc e = {.t = tok, .out = out, .max = out ? max : 0, .err = err};
    int rc = GRETA_OK;
    if (flags & GRETA_ENCODE_ADD_BOS)
        emit(&e, tok->bos);
    /* every fragment starts the input or follows a special token, so each
     * one gets the "▁" prefix (llama.cpp does the same) */
    bool prefix = tok->add_space_prefix;
    if (flags & GRETA_ENCODE_PARSE_SPECIAL) {
        size_t frag = 0;
        for (size_t pos = 0; pos < len && rc == GRETA_OK;) {
            int32_t id = match_special(tok, text, pos, len);
            if (id < 0) {
                pos++;
                continue;
            }
            if (pos > frag)
                rc = encode_fragment(&e, text + frag, pos - frag, prefix);
            emit(&e, id);
            pos += tok->text_len[id];
            frag = pos;
        }
        if (rc == GRETA_OK && frag < len)
            rc = encode_fragment(&e, text + frag, len - frag, prefix);
    } else if (len > 0) {
        rc = encode_fragment(&e, text, len, tok->add_space_prefix);
    }
    if (rc == GRETA_OK && (flags & GRETA_ENCODE_ADD_EOS))
        emit(&e, tok->eos);
    free(e.buf);
    free(e.syms);
    free(e.heap);
    if (rc != GRETA_OK)
        return rc;
    *n_out = e.n;
    if (e.n > e.max)
        return greta_error_set(err, GRETA_ERR_LIMIT, "encode: %zu ids do not fit the %zu given",
                               e.n, e.max);
    return GRETA_OK;
}
