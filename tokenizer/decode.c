/* decode.c - token ids back to bytes: one-shot (greta_tokenizer_decode) and
 * incremental (greta_detok_*). Both follow the same rules (tokenizer.h); the
 * incremental one additionally holds back an incomplete UTF-8 sequence. */
#include "tokenizer_internal.h"

#include <string.h>

/* Surface of one token under the decode flags, and whether it is written at
 * all (an omitted control token is not). */
static bool token_surface(const greta_tokenizer *t, int32_t id, uint32_t flags,
                          const char **s, size_t *n)
{
    if (t->types[id] == GRETA_TOKEN_CONTROL && !(flags & GRETA_DECODE_SPECIAL))
        return false;
    *s = t->surf + t->surf_off[id];
    *n = t->surf_len[id];
    return true;
}

/* True if the first written piece should lose its leading space. */
static bool strip_first(const greta_tokenizer *t, int32_t id, uint32_t flags)
{
    uint8_t ty = t->types[id];
    return t->add_space_prefix && !(flags & GRETA_DECODE_KEEP_SPACE) &&
           (ty == GRETA_TOKEN_NORMAL || ty == GRETA_TOKEN_USER_DEFINED || ty == GRETA_TOKEN_UNUSED) &&
           t->text_len[id] >= TOK_SPACE_LEN &&
           memcmp(t->text + t->text_off[id], TOK_SPACE_UTF8, TOK_SPACE_LEN) == 0;
}

int greta_tokenizer_decode(const greta_tokenizer *tok, const int32_t *ids, size_t n,
                           uint32_t flags, char *out, size_t cap, size_t *n_out,
                           greta_error *err)
{
    *n_out = 0;
    size_t len = 0;
    bool at_start = true;
    for (size_t i = 0; i < n; i++) {
        int32_t id = ids[i];
        if (id < 0 || id >= tok->n_vocab)
            return greta_error_set(err, GRETA_ERR_INVALID,
                                   "decode: token id %d at index %zu is out of range [0, %d)",
                                   (int)id, i, (int)tok->n_vocab);
        const char *s;
        size_t m;
        if (!token_surface(tok, id, flags, &s, &m))
            continue;
        if (at_start && strip_first(tok, id, flags)) {
            s++;
            m--;
        }
        at_start = false;
        if (out && len + m < cap)
            memcpy(out + len, s, m);
        len += m;
    }
    *n_out = len;
    if (!out || len + 1 > cap)
        return greta_error_set(err, GRETA_ERR_LIMIT,
                               "decode: the text needs %zu bytes + NUL, buffer holds %zu", len, cap);
    out[len] = '\0';
    return GRETA_OK;
}

/* ---- incremental ------------------------------------------------------- */

void greta_detok_init(greta_detok_state *st, uint32_t flags)
{
    memset(st, 0, sizeof *st);
    st->version = GRETA_DETOK_VERSION;
    st->flags = flags;
    st->at_start = 1;
}

size_t greta_detok_max_out(const greta_tokenizer *tok)
{
    return tok->max_surf_len + 4;
}

/* Bytes a sequence starting with lead byte c needs (2..4), 0 if c leads none. */
static unsigned seq_need(uint8_t c)
{
    return c >= 0xC2 && c < 0xE0 ? 2 : c >= 0xE0 && c < 0xF0 ? 3 : c >= 0xF0 && c < 0xF5 ? 4 : 0;
}

/* Whether byte b may follow the k (1..3) held bytes p[0..k). */
static bool continues(const uint8_t *p, unsigned k, uint8_t b)
{
    if ((b & 0xC0) != 0x80)
        return false;
    if (k == 1) {
        uint8_t c = p[0];
        if (c == 0xE0) return b >= 0xA0;
        if (c == 0xED) return b <= 0x9F;
        if (c == 0xF0) return b >= 0x90;
        if (c == 0xF4) return b <= 0x8F;
    }
    return true;
}

static int check_state(const greta_detok_state *st, greta_error *err)
{
    if (st->version != GRETA_DETOK_VERSION)
        return greta_error_set(err, GRETA_ERR_STATE, "detok state: version %u, expected %u",
                               st->version, GRETA_DETOK_VERSION);
    if (st->at_start > 1)
        return greta_error_set(err, GRETA_ERR_STATE, "detok state: at_start = %u", st->at_start);
    unsigned k = st->n_pending;
    if (k > 3)
        return greta_error_set(err, GRETA_ERR_STATE, "detok state: n_pending = %u (max 3)", k);
    if (k > 0) {
        unsigned need = seq_need(st->pending[0]);
        if (need <= k)
            return greta_error_set(err, GRETA_ERR_STATE,
                                   "detok state: pending[0] = 0x%02X cannot start a %u+ byte sequence",
                                   st->pending[0], k + 1);
        for (unsigned i = 1; i < k; i++)
            if (!continues(st->pending, i, st->pending[i]))
                return greta_error_set(err, GRETA_ERR_STATE,
                                       "detok state: pending[%u] = 0x%02X does not continue the sequence",
                                       i, st->pending[i]);
    }
    return GRETA_OK;
}

/* Feeds bytes through the hold-back machine; writes to out, returns bytes written. */
static size_t feed(greta_detok_state *st, const uint8_t *s, size_t n, char *out)
{
    size_t w = 0;
    for (size_t i = 0; i < n; i++) {
        uint8_t b = s[i];
        unsigned k = st->n_pending;
        if (k > 0) {
            if (continues(st->pending, k, b)) {
                st->pending[k++] = b;
                if (k == seq_need(st->pending[0])) {
                    memcpy(out + w, st->pending, k);
                    w += k;
                    k = 0;
                }
                st->n_pending = (uint8_t)k;
                continue;
            }
            /* cannot complete: write the held bytes as they are */
            memcpy(out + w, st->pending, k);
            w += k;
            st->n_pending = 0;
        }
        if (seq_need(b)) {
            st->pending[0] = b;
            st->n_pending = 1;
        } else {
            out[w++] = (char)b; /* ASCII, or an invalid byte written as is */
        }
    }
    return w;
}

int greta_detok_push(const greta_tokenizer *tok, greta_detok_state *st, int32_t id,
                     char *out, size_t cap, size_t *n, greta_error *err)
{
    *n = 0;
    int rc = check_state(st, err);
    if (rc)
        return rc;
    if (id < 0 || id >= tok->n_vocab)
        return greta_error_set(err, GRETA_ERR_INVALID, "detok: token id %d is out of range [0, %d)",
                               (int)id, (int)tok->n_vocab);
    if (cap < greta_detok_max_out(tok))
        return greta_error_set(err, GRETA_ERR_LIMIT, "detok: output room %zu < %zu (greta_detok_max_out)",
                               cap, greta_detok_max_out(tok));
    st->n_tokens++;
    const char *s;
    size_t m;
    if (!token_surface(tok, id, st->flags, &s, &m))
        return GRETA_OK;
    if (st->at_start && strip_first(tok, id, st->flags)) {
        s++;
        m--;
    }
    st->at_start = 0;
    *n = feed(st, (const uint8_t *)s, m, out);
    st->n_bytes += *n;
    return GRETA_OK;
}

int greta_detok_flush(const greta_tokenizer *tok, greta_detok_state *st,
                      char *out, size_t cap, size_t *n, greta_error *err)
{
    (void)tok;
    *n = 0;
    int rc = check_state(st, err);
    if (rc)
        return rc;
    if (cap < st->n_pending)
        return greta_error_set(err, GRETA_ERR_LIMIT, "detok flush: output room %zu < %u", cap,
                               st->n_pending);
    memcpy(out, st->pending, st->n_pending);
    *n = st->n_pending;
    st->n_bytes += *n;
    st->n_pending = 0;
    return GRETA_OK;
}
