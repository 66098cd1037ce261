/* chat.h - built-in chat templates: render a conversation to text or to ids.
 *
 * Templates (exact output in docs/TOKENIZER.md):
 *   raw     the contents concatenated, nothing added (ids: BOS if the model
 *           adds one, then the text)
 *   llama2  <s>[INST] <<SYS>>\n{system}\n<</SYS>>\n\n{user} [/INST] {assistant} </s>
 *           <s>[INST] {user} [/INST] ...  (Meta's chat_completion; contents
 *           stripped of surrounding whitespace; roles after an optional first
 *           system message must alternate user / assistant)
 *   chatml  <|im_start|>{role}\n{content}<|im_end|>\n ... [<|im_start|>assistant\n]
 *   llama3  <|begin_of_text|><|start_header_id|>{role}<|end_header_id|>\n\n
 *           {content (trimmed)}<|eot_id|> ... [<|start_header_id|>assistant<|end_header_id|>\n\n]
 *
 * Rendering to ids never interprets special-token text inside a message: the
 * template's own special tokens become their ids, and each run of text between
 * them is encoded as plain text (with the "▁" prefix, as llama.cpp does when
 * it tokenizes the rendered text with parse_special).
 */
#ifndef GRETA_CHAT_H
#define GRETA_CHAT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/error.h"
#include "common/gguf.h"
#include "tokenizer.h"

typedef enum greta_chat_template {
    GRETA_CHAT_RAW = 0,
    GRETA_CHAT_LLAMA2 = 1,
    GRETA_CHAT_CHATML = 2,
    GRETA_CHAT_LLAMA3 = 3,
} greta_chat_template;

typedef enum greta_chat_role {
    GRETA_ROLE_SYSTEM = 0,
    GRETA_ROLE_USER = 1,
    GRETA_ROLE_ASSISTANT = 2,
} greta_chat_role;

typedef struct greta_chat_msg {
    greta_chat_role role;
    const char *content; /* UTF-8, need not be NUL-terminated */
    size_t len;          /* bytes of content */
} greta_chat_msg;

#define GRETA_CHAT_NOTE_MAX 160

/* "raw", "llama2", "chatml", "llama3". */
const char *greta_chat_template_name(greta_chat_template t);
/* Parses a template name (as above); GRETA_ERR_INVALID lists the choices. */
int greta_chat_template_from_name(const char *name, greta_chat_template *out, greta_error *err);
/* Recognises a Jinja template text by distinctive substrings:
 *   "<|start_header_id|>" and "<|eot_id|>"  -> llama3
 *   "<|im_start|>"                          -> chatml
 *   "[INST]" and "<<SYS>>"                  -> llama2
 * anything else: GRETA_ERR_UNSUPPORTED (no guessing). */
int greta_chat_template_detect(const char *text, size_t len, greta_chat_template *out,
                               greta_error *err);
/* Picks the template of a model: override (a name) if not NULL, else
 * detection from tokenizer.chat_template, else raw when the file has no
 * template; then checks that tok's vocabulary holds the template's special
 * tokens (GRETA_ERR_UNSUPPORTED naming the missing one). note (may be NULL)
 * receives one line for the user when raw was chosen because the file has no
 * template, else "". */
int greta_chat_template_select(const gguf_file *f, const greta_tokenizer *tok,
                               const char *override, greta_chat_template *out,
                               char note[GRETA_CHAT_NOTE_MAX], greta_error *err);
/* Checks that tok has every special token template t writes. */
int greta_chat_template_check(greta_chat_template t, const greta_tokenizer *tok, greta_error *err);

/* Renders msgs to text (the template's special tokens as their text). Writes
 * a NUL after the text when it fits; *n_out is the text length; a small cap
 * gives GRETA_ERR_LIMIT with *n_out the length needed. add_generation_prompt
 * appends the opening of an assistant turn (chatml, llama3; llama2 and raw
 * have none). */
int greta_chat_render_text(greta_chat_template t, const greta_tokenizer *tok,
                           const greta_chat_msg *msgs, size_t n_msgs, bool add_generation_prompt,
                           char *out, size_t cap, size_t *n_out, greta_error *err);
/* Renders msgs to ids (see above). A small max gives GRETA_ERR_LIMIT with
 * *n_out the count needed. */
int greta_chat_render_ids(greta_chat_template t, const greta_tokenizer *tok,
                          const greta_chat_msg *msgs, size_t n_msgs, bool add_generation_prompt,
                          int32_t *out, size_t max, size_t *n_out, greta_error *err);

#endif
