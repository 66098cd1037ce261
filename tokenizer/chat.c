/* chat.c - built-in chat templates (see chat.h for the formats). A template
 * is written as a sequence of text runs and special tokens into a sink that
 * either builds the text or encodes it to ids. */
#include "chat.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const template_names[] = {"raw", "llama2", "chatml", "llama3"};
#define N_TEMPLATES (sizeof template_names / sizeof template_names[0])

static const char *const role_names[] = {"system", "user", "assistant"};

/* Special tokens each template writes, by text (llama2 uses the vocab's BOS/EOS). */
static const char *const chatml_specials[] = {"<|im_start|>", "<|im_end|>", NULL};
static const char *const llama3_specials[] = {"<|begin_of_text|>", "<|start_header_id|>",
                                              "<|end_header_id|>", "<|eot_id|>", NULL};

const char *greta_chat_template_name(greta_chat_template t)
{
    return (unsigned)t < N_TEMPLATES ? template_names[t] : "?";
}

int greta_chat_template_from_name(const char *name, greta_chat_template *out, greta_error *err)
{
    for (unsigned i = 0; i < N_TEMPLATES; i++)
        if (name && strcmp(name, template_names[i]) == 0) {
            *out = (greta_chat_template)i;
            return GRETA_OK;
        }
    return greta_error_set(err, GRETA_ERR_INVALID,
                           "chat template '%s' is not one of raw, llama2, chatml, llama3",
                           name ? name : "(null)");
}

static bool contains(const char *s, size_t n, const char *needle)
{
    size_t m = strlen(needle);
    for (size_t i = 0; i + m <= n; i++)
        if (memcmp(s + i, needle, m) == 0)
            return true;
    return false;
}

int greta_chat_template_detect(const char *text, size_t len, greta_chat_template *out,
                               greta_error *err)
{
    if (contains(text, len, "<|start_header_id|>") && contains(text, len, "<|eot_id|>"))
        *out = GRETA_CHAT_LLAMA3;
    else if (contains(text, len, "<|im_start|>"))
        *out = GRETA_CHAT_CHATML;
    else if (contains(text, len, "[INST]") && contains(text, len, "<<SYS>>"))
        *out = GRETA_CHAT_LLAMA2;
    else
        return greta_error_set(err, GRETA_ERR_UNSUPPORTED,
                               "tokenizer.chat_template is not a known template (starts '%.*s%s'); "
                               "choose one of raw, llama2, chatml, llama3 explicitly",
                               (int)(len > 40 ? 40 : len), text, len > 40 ? "...'" : "'");
    return GRETA_OK;
}

static int need_piece(const greta_tokenizer *tok, greta_chat_template t, const char *piece,
                      greta_error *err)
{
    if (greta_tokenizer_find_piece(tok, piece, strlen(piece)) < 0)
        return greta_error_set(err, GRETA_ERR_UNSUPPORTED,
                               "chat template %s needs the token %s, which the model's vocabulary "
                               "lacks (this template needs its own vocabulary)",
                               greta_chat_template_name(t), piece);
    return GRETA_OK;
}

int greta_chat_template_check(greta_chat_template t, const greta_tokenizer *tok, greta_error *err)
{
    const char *const *list = NULL;
    switch (t) {
    case GRETA_CHAT_RAW:
        return GRETA_OK;
    case GRETA_CHAT_LLAMA2:
        if (greta_tokenizer_bos(tok) < 0 || greta_tokenizer_eos(tok) < 0)
            return greta_error_set(err, GRETA_ERR_UNSUPPORTED,
                                   "chat template llama2 needs BOS and EOS tokens, which the "
                                   "model's vocabulary lacks");
        return GRETA_OK;
    case GRETA_CHAT_CHATML: list = chatml_specials; break;
    case GRETA_CHAT_LLAMA3: list = llama3_specials; break;
    default:
        return greta_error_set(err, GRETA_ERR_INVALID, "chat template %d does not exist", (int)t);
    }
    for (; *list; list++) {
        int rc = need_piece(tok, t, *list, err);
        if (rc)
            return rc;
    }
    return GRETA_OK;
}

int greta_chat_template_select(const gguf_file *f, const greta_tokenizer *tok,
                               const char *override, greta_chat_template *out,
                               char note[GRETA_CHAT_NOTE_MAX], greta_error *err)
{
    if (note)
        note[0] = '\0';
    greta_chat_template t;
    int rc;
    if (override) {
        rc = greta_chat_template_from_name(override, &t, err);
    } else if (gguf_find_kv(f, "tokenizer.chat_template")) {
        gguf_str s;
        rc = gguf_get_str(f, "tokenizer.chat_template", &s, err);
        if (rc == GRETA_OK)
            rc = greta_chat_template_detect(s.ptr, (size_t)s.len, &t, err);
    } else {
        t = GRETA_CHAT_RAW;
        rc = GRETA_OK;
        if (note)
            snprintf(note, GRETA_CHAT_NOTE_MAX,
                     "the model has no chat template (tokenizer.chat_template); using raw: "
                     "messages are joined without markup");
    }
    if (rc == GRETA_OK)
        rc = greta_chat_template_check(t, tok, err);
    if (rc != GRETA_OK) {
        if (note)
            note[0] = '\0';
        return rc;
    }
    *out = t;
    return GRETA_OK;
}

/* ---- rendering ----------------------------------------------------------- */

typedef struct sink {
    const greta_tokenizer *tok;
    bool to_ids;
    char *text; size_t cap, len;      /* text mode */
    int32_t *ids; size_t max, n;      /* ids mode: n counts all ids */
    char *pend; size_t pend_n, pend_cap; /* ids mode: text not yet encoded */
    int rc;
    greta_error *err;
} sink;

static void put_text(sink *s, const char *p, size_t n)
{
    if (s->rc || n == 0)
        return;
    if (!s->to_ids) {
        if (s->text && s->len + n < s->cap)
            memcpy(s->text + s->len, p, n);
        s->len += n;
        return;
    }
    if (s->pend_n + n > s->pend_cap) {
        size_t c = s->pend_cap ? s->pend_cap : 256;
        while (c < s->pend_n + n)
            c *= 2;
        char *q = realloc(s->pend, c);
        if (!q) {
            s->rc = greta_error_set(s->err, GRETA_ERR_NOMEM, "chat: out of memory");
            return;
        }
        s->pend = q;
        s->pend_cap = c;
    }
    memcpy(s->pend + s->pend_n, p, n);
    s->pend_n += n;
}

static void put_str(sink *s, const char *str) { put_text(s, str, strlen(str)); }

/* Encodes the pending text run. */
static void flush_text(sink *s)
{
    if (s->rc || !s->to_ids || s->pend_n == 0)
        return;
    if (s->pend_n > greta_tokenizer_max_input(s->tok)) {
        s->rc = greta_error_set(s->err, GRETA_ERR_LIMIT,
                                "chat: a text run of %zu bytes is over the tokenizer limit of %zu",
                                s->pend_n, greta_tokenizer_max_input(s->tok));
        return;
    }
    size_t room = s->n < s->max ? s->max - s->n : 0;
    size_t k = 0;
    greta_error e2 = {0};
    int rc = greta_tokenizer_encode(s->tok, s->pend, s->pend_n, 0, room ? s->ids + s->n : NULL,
                                    room, &k, &e2);
    if (rc != GRETA_OK && rc != GRETA_ERR_LIMIT) {
        if (s->err)
            *s->err = e2;
        s->rc = rc;
        return;
    }
    s->n += k; /* LIMIT: k is the count needed; the caller reports it */
    s->pend_n = 0;
}

static void put_special(sink *s, int32_t id)
{
    if (s->rc)
        return;
    if (!s->to_ids) {
        size_t n;
        const char *p = greta_tokenizer_token_piece(s->tok, id, &n);
        put_text(s, p, n);
        return;
    }
    flush_text(s);
    if (s->n < s->max)
        s->ids[s->n] = id;
    s->n++;
}

static void put_special_named(sink *s, const char *piece)
{
    /* presence was checked by greta_chat_template_check */
    put_special(s, greta_tokenizer_find_piece(s->tok, piece, strlen(piece)));
}

static bool is_ws(char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f';
}

/* Strips ASCII whitespace at both ends (Python's str.strip on ASCII text). */
static void strip(const char **p, size_t *n)
{
    while (*n && is_ws((*p)[0])) {
        (*p)++;
        (*n)--;
    }
    while (*n && is_ws((*p)[*n - 1]))
        (*n)--;
}

static int check_msgs(const greta_chat_msg *msgs, size_t n, greta_error *err)
{
    for (size_t i = 0; i < n; i++) {
        if ((unsigned)msgs[i].role > GRETA_ROLE_ASSISTANT)
            return greta_error_set(err, GRETA_ERR_INVALID, "chat: message %zu has role %d", i,
                                   (int)msgs[i].role);
        if (!msgs[i].content && msgs[i].len)
            return greta_error_set(err, GRETA_ERR_INVALID, "chat: message %zu has NULL content", i);
    }
    return GRETA_OK;
}

static void render_llama2(sink *s, const greta_chat_msg *m, size_t n)
{
    size_t first = 0;
    const greta_chat_msg *sys = NULL;
    if (n > 0 && m[0].role == GRETA_ROLE_SYSTEM) {
        sys = &m[0];
        first = 1;
    }
    if (first >= n) {
        s->rc = greta_error_set(s->err, GRETA_ERR_INVALID,
                                "chat (llama2): the conversation has no user message");
        return;
    }
    int32_t bos = greta_tokenizer_bos(s->tok), eos = greta_tokenizer_eos(s->tok);
    for (size_t i = first; i < n && !s->rc; i++) {
        greta_chat_role want = (i - first) % 2 == 0 ? GRETA_ROLE_USER : GRETA_ROLE_ASSISTANT;
        if (m[i].role != want) {
            s->rc = greta_error_set(s->err, GRETA_ERR_INVALID,
                                    "chat (llama2): message %zu is %s, expected %s (after an optional "
                                    "first system message, roles alternate user/assistant)",
                                    i, role_names[m[i].role], role_names[want]);
            return;
        }
        const char *p = m[i].content;
        size_t len = m[i].len;
        if (want == GRETA_ROLE_ASSISTANT) {
            strip(&p, &len);
            put_str(s, " ");
            put_text(s, p, len);
            put_str(s, " ");
            put_special(s, eos);
            continue;
        }
        put_special(s, bos);
        put_str(s, "[INST] ");
        if (i == first && sys) {
            /* Meta: (B_SYS + system + E_SYS + user).strip() */
            const char *sp = sys->content;
            size_t sn = sys->len;
            size_t ulen_full = m[i].len;
            const char *up = m[i].content;
            while (ulen_full && is_ws(up[ulen_full - 1]))
                ulen_full--;
            put_str(s, "<<SYS>>\n");
            put_text(s, sp, sn);
            if (ulen_full == 0) {
                put_str(s, "\n<</SYS>>");
            } else {
                put_str(s, "\n<</SYS>>\n\n");
                put_text(s, up, ulen_full);
            }
        } else {
            strip(&p, &len);
            put_text(s, p, len);
        }
        put_str(s, " [/INST]");
    }
}

static void render_chatml(sink *s, const greta_chat_msg *m, size_t n, bool gen)
{
    for (size_t i = 0; i < n; i++) {
        put_special_named(s, "<|im_start|>");
        put_str(s, role_names[m[i].role]);
        put_str(s, "\n");
        put_text(s, m[i].content, m[i].len);
        put_special_named(s, "<|im_end|>");
        put_str(s, "\n");
    }
    if (gen) {
        put_special_named(s, "<|im_start|>");
        put_str(s, "assistant\n");
    }
}

static void render_llama3(sink *s, const greta_chat_msg *m, size_t n, bool gen)
{
    put_special_named(s, "<|begin_of_text|>");
    for (size_t i = 0; i < n; i++) {
        const char *p = m[i].content;
        size_t len = m[i].len;
        strip(&p, &len);
        put_special_named(s, "<|start_header_id|>");
        put_str(s, role_names[m[i].role]);
        put_special_named(s, "<|end_header_id|>");
        put_str(s, "\n\n");
        put_text(s, p, len);
        put_special_named(s, "<|eot_id|>");
    }
    if (gen) {
        put_special_named(s, "<|start_header_id|>");
        put_str(s, "assistant");
        put_special_named(s, "<|end_header_id|>");
        put_str(s, "\n\n");
    }
}

static int render(greta_chat_template t, sink *s, const greta_chat_msg *msgs, size_t n, bool gen)
{
    int rc = greta_chat_template_check(t, s->tok, s->err);
    if (rc == GRETA_OK)
        rc = check_msgs(msgs, n, s->err);
    if (rc)
        return rc;
    bool model_bos = s->to_ids && greta_tokenizer_add_bos(s->tok);
    switch (t) {
    case GRETA_CHAT_RAW:
        if (model_bos)
            put_special(s, greta_tokenizer_bos(s->tok));
        for (size_t i = 0; i < n; i++)
            put_text(s, msgs[i].content, msgs[i].len);
        break;
    case GRETA_CHAT_LLAMA2: render_llama2(s, msgs, n); break;
    case GRETA_CHAT_CHATML:
        if (model_bos)
            put_special(s, greta_tokenizer_bos(s->tok));
        render_chatml(s, msgs, n, gen);
        break;
    case GRETA_CHAT_LLAMA3: render_llama3(s, msgs, n, gen); break;
    }
    flush_text(s);
    return s->rc;
}

int greta_chat_render_text(greta_chat_template t, const greta_tokenizer *tok,
                           const greta_chat_msg *msgs, size_t n_msgs, bool add_generation_prompt,
                           char *out, size_t cap, size_t *n_out, greta_error *err)
{
    sink s = {.tok = tok, .to_ids = false, .text = out, .cap = out ? cap : 0, .err = err};
    *n_out = 0;
    int rc = render(t, &s, msgs, n_msgs, add_generation_prompt);
    if (rc)
        return rc;
    *n_out = s.len;
    if (s.len + 1 > s.cap)
        return greta_error_set(err, GRETA_ERR_LIMIT, "chat: the text needs %zu bytes + NUL, buffer holds %zu",
                               s.len, cap);
    out[s.len] = '\0';
    return GRETA_OK;
}

int greta_chat_render_ids(greta_chat_template t, const greta_tokenizer *tok,
                          const greta_chat_msg *msgs, size_t n_msgs, bool add_generation_prompt,
                          int32_t *out, size_t max, size_t *n_out, greta_error *err)
{
    sink s = {.tok = tok, .to_ids = true, .ids = out, .max = out ? max : 0, .err = err};
    *n_out = 0;
    int rc = render(t, &s, msgs, n_msgs, add_generation_prompt);
    free(s.pend);
    if (rc)
        return rc;
    *n_out = s.n;
    if (s.n > s.max)
        return greta_error_set(err, GRETA_ERR_LIMIT, "chat: %zu ids do not fit the %zu given", s.n, max);
    return GRETA_OK;
}
