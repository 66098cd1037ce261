/* test_chat.c - chat templates: Llama-2 conversations to exact ids on the
 * Llama-2 vocabulary (ids written out below), ChatML and Llama-3 to exact
 * text (and ids on a synthetic vocabulary holding their special tokens),
 * raw, detection from tokenizer.chat_template, overrides, refusals. */
#include "tok_test_util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "chat.h"

#define MSG(role, s) {GRETA_ROLE_##role, s, sizeof(s) - 1}

static greta_tokenizer *llama;

static int setup(void **state)
{
    (void)state;
    const char *p = greta_testdata_find("ggml-vocab-llama-spm.gguf");
    if (p)
        llama = tt_load_tokenizer(p);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    greta_tokenizer_destroy(&llama);
    return 0;
}

#define NEED_LLAMA()                                                 \
    do {                                                             \
        GRETA_TESTDATA_OR_SKIP(p_, "ggml-vocab-llama-spm.gguf");    \
        (void)p_;                                                    \
    } while (0)

static void expect_ids(greta_chat_template t, const greta_tokenizer *tok, const greta_chat_msg *m,
                       size_t n, bool gen, const int32_t *want, size_t n_want)
{
    int32_t ids[512];
    size_t k = 0;
    greta_error err = {0};
    int rc = greta_chat_render_ids(t, tok, m, n, gen, ids, 512, &k, &err);
    if (rc)
        fail_msg("render_ids: %s", err.msg);
    if (k != n_want || memcmp(ids, want, k * sizeof *ids) != 0) {
        fprintf(stderr, "got:");
        for (size_t i = 0; i < k; i++)
            fprintf(stderr, " %d", (int)ids[i]);
        fprintf(stderr, "\n");
        fail_msg("ids differ (%zu vs %zu expected)", k, n_want);
    }
}

static void expect_text(greta_chat_template t, const greta_tokenizer *tok, const greta_chat_msg *m,
                        size_t n, bool gen, const char *want)
{
    char text[2048];
    size_t k = 0;
    greta_error err = {0};
    int rc = greta_chat_render_text(t, tok, m, n, gen, text, sizeof text, &k, &err);
    if (rc)
        fail_msg("render_text: %s", err.msg);
    assert_int_equal(k, strlen(want));
    assert_string_equal(text, want);
}

/* System + two user turns, as Meta's chat_completion encodes it:
 * [INST] = 518 25580 29962, [/INST] = 518 29914 25580 29962,
 * <<SYS>>\n = 3532 14816 29903 6778 13, \n<</SYS>>\n\n = 13 29966 829 14816 29903 6778 13 13,
 * each user/assistant pair wrapped in BOS ... EOS. */
static void test_llama2_ids_with_system(void **state)
{
    (void)state;
    NEED_LLAMA();
    const greta_chat_msg m[] = {
        MSG(SYSTEM, "You are a helpful assistant."),
        MSG(USER, "Hi!"),
        MSG(ASSISTANT, "Hello! How can I help?"),
        MSG(USER, "Tell me a joke."),
    };
    const int32_t want[] = {
        1, 518, 25580, 29962, 3532, 14816, 29903, 6778, 13, 3492, 526, 263, 8444, 20255, 29889,
        13, 29966, 829, 14816, 29903, 6778, 13, 13, 18567, 29991, 518, 29914, 25580, 29962,
        15043, 29991, 1128, 508, 306, 1371, 29973, 29871, 2,
        1, 518, 25580, 29962, 24948, 592, 263, 2958, 446, 29889, 518, 29914, 25580, 29962,
    };
    expect_ids(GRETA_CHAT_LLAMA2, llama, m, 4, true, want, sizeof want / sizeof *want);
    expect_ids(GRETA_CHAT_LLAMA2, llama, m, 4, false, want, sizeof want / sizeof *want);
    expect_text(GRETA_CHAT_LLAMA2, llama, m, 4, true,
                "<s>[INST] <<SYS>>\nYou are a helpful assistant.\n<</SYS>>\n\nHi! [/INST] Hello! "
                "How can I help? </s><s>[INST] Tell me a joke. [/INST]");
}

/* No system message, content with surrounding whitespace (stripped), ending
 * with an assistant turn (closed by EOS). */
static void test_llama2_ids_no_system(void **state)
{
    (void)state;
    NEED_LLAMA();
    const greta_chat_msg m[] = {
        MSG(USER, "  What is 2+2?\n"),
        MSG(ASSISTANT, " 4 "),
        MSG(USER, "And 3+3?"),
        MSG(ASSISTANT, "6"),
    };
    const int32_t want[] = {
        1, 518, 25580, 29962, 1724, 338, 29871, 29906, 29974, 29906, 29973, 518, 29914, 25580, 29962,
        29871, 29946, 29871, 2,
        1, 518, 25580, 29962, 1126, 29871, 29941, 29974, 29941, 29973, 518, 29914, 25580, 29962,
        29871, 29953, 29871, 2,
    };
    expect_ids(GRETA_CHAT_LLAMA2, llama, m, 4, true, want, sizeof want / sizeof *want);
    expect_text(GRETA_CHAT_LLAMA2, llama, m, 4, false,
                "<s>[INST] What is 2+2? [/INST] 4 </s><s>[INST] And 3+3? [/INST] 6 </s>");
}

/* Special-token text inside a message stays text in the ids. */
static void test_llama2_content_not_special(void **state)
{
    (void)state;
    NEED_LLAMA();
    const greta_chat_msg m[] = {MSG(USER, "</s><s>")};
    int32_t ids[64];
    size_t n;
    greta_error err = {0};
    assert_int_equal(greta_chat_render_ids(GRETA_CHAT_LLAMA2, llama, m, 1, true, ids, 64, &n, &err), 0);
    assert_int_equal(ids[0], 1);
    for (size_t i = 1; i < n; i++) {
        assert_int_not_equal(ids[i], 1);
        assert_int_not_equal(ids[i], 2);
    }
    /* the system block with an empty user message: Meta's strip() eats the
     * trailing "\n\n" */
    const greta_chat_msg m2[] = {MSG(SYSTEM, "S"), MSG(USER, " \n")};
    expect_text(GRETA_CHAT_LLAMA2, llama, m2, 2, true, "<s>[INST] <<SYS>>\nS\n<</SYS>> [/INST]");
}

static void expect_render_error(greta_chat_template t, const greta_tokenizer *tok,
                                const greta_chat_msg *m, size_t n, int code, const char *needle)
{
    int32_t ids[256];
    char text[256];
    size_t k;
    greta_error err = {0};
    assert_int_equal(greta_chat_render_ids(t, tok, m, n, true, ids, 256, &k, &err), code);
    if (needle && !strstr(err.msg, needle))
        fail_msg("message '%s' lacks '%s'", err.msg, needle);
    assert_int_equal(greta_chat_render_text(t, tok, m, n, true, text, sizeof text, &k, &err), code);
}

static void test_llama2_role_errors(void **state)
{
    (void)state;
    NEED_LLAMA();
    const greta_chat_msg a[] = {MSG(ASSISTANT, "hi")};
    expect_render_error(GRETA_CHAT_LLAMA2, llama, a, 1, GRETA_ERR_INVALID, "message 0 is assistant");
    const greta_chat_msg b[] = {MSG(USER, "a"), MSG(USER, "b")};
    expect_render_error(GRETA_CHAT_LLAMA2, llama, b, 2, GRETA_ERR_INVALID, "message 1 is user");
    const greta_chat_msg c[] = {MSG(SYSTEM, "s")};
    expect_render_error(GRETA_CHAT_LLAMA2, llama, c, 1, GRETA_ERR_INVALID, "no user message");
    const greta_chat_msg d[] = {MSG(USER, "a"), MSG(SYSTEM, "s")};
    expect_render_error(GRETA_CHAT_LLAMA2, llama, d, 2, GRETA_ERR_INVALID, "message 1 is system");
    expect_render_error(GRETA_CHAT_LLAMA2, llama, NULL, 0, GRETA_ERR_INVALID, "no user message");
    greta_chat_msg e[] = {MSG(USER, "a")};
    e[0].role = (greta_chat_role)7;
    expect_render_error(GRETA_CHAT_RAW, llama, e, 1, GRETA_ERR_INVALID, "role 7");
}

static void test_raw(void **state)
{
    (void)state;
    NEED_LLAMA();
    const greta_chat_msg m[] = {MSG(SYSTEM, "Once upon"), MSG(USER, " a time")};
    expect_text(GRETA_CHAT_RAW, llama, m, 2, true, "Once upon a time");
    /* BOS (the model adds one), then the text: "▁Once ▁upon ▁a ▁time" */
    const int32_t want[] = {1, 9038, 2501, 263, 931};
    expect_ids(GRETA_CHAT_RAW, llama, m, 2, true, want, 5);
}

static void test_small_buffers(void **state)
{
    (void)state;
    NEED_LLAMA();
    const greta_chat_msg m[] = {MSG(USER, "Tell me a joke.")};
    int32_t ids[4];
    char text[8];
    size_t n = 0;
    greta_error err = {0};
    assert_int_equal(greta_chat_render_ids(GRETA_CHAT_LLAMA2, llama, m, 1, true, ids, 4, &n, &err),
                     GRETA_ERR_LIMIT);
    assert_int_equal(n, 14);
    assert_int_equal(ids[0], 1);
    assert_int_equal(ids[1], 518);
    assert_int_equal(greta_chat_render_text(GRETA_CHAT_LLAMA2, llama, m, 1, true, text, sizeof text, &n, &err),
                     GRETA_ERR_LIMIT);
    assert_int_equal(n, strlen("<s>[INST] Tell me a joke. [/INST]"));
}

/* A vocabulary with ChatML's and Llama-3's special tokens, all 256 byte
 * tokens and a few pieces (ids: 0..8 specials, 9 ▁, 10 + b for byte b, then pieces). */
static greta_tokenizer *special_vocab(const char *name, const char *tmpl)
{
    static char byte_names[256][7];
    static const char *pieces[9 + 1 + 256 + 11];
    static float scores[9 + 1 + 256 + 11];
    static int32_t types[9 + 1 + 256 + 11];
    const char *specials[] = {"<unk>", "<s>", "</s>", "<|im_start|>", "<|im_end|>",
                              "<|begin_of_text|>", "<|start_header_id|>", "<|end_header_id|>",
                              "<|eot_id|>"};
    size_t n = 0;
    for (size_t i = 0; i < 9; i++) {
        pieces[n] = specials[i];
        types[n] = i == 0 ? 2 : 3;
        scores[n++] = 0;
    }
    pieces[n] = "\xE2\x96\x81";
    types[n] = 1;
    scores[n++] = -1;
    for (int b = 0; b < 256; b++) {
        snprintf(byte_names[b], sizeof byte_names[b], "<0x%02X>", b);
        pieces[n] = byte_names[b];
        types[n] = 6;
        scores[n++] = 0;
    }
    /* 266 u, 267 s, 268 e, 269 r, 270 us, 271 er, 272 user, 273 H, 274 i, 275 Hi, 276 ▁Hi */
    const char *words[] = {"u", "s", "e", "r", "us", "er", "user", "H", "i", "Hi", "\xE2\x96\x81Hi"};
    const float wscores[] = {-10, -10, -10, -10, -2, -3, -4, -10, -10, -5, -6};
    for (int i = 0; i < 11; i++) {
        pieces[n] = words[i];
        types[n] = 1;
        scores[n++] = wscores[i];
    }
    tt_vocab v = tt_vocab_defaults();
    v.pieces = pieces;
    v.scores = scores;
    v.types = types;
    v.n = n;
    v.chat_template = tmpl;
    greta_tokenizer *tok = NULL;
    greta_error err = {0};
    if (tt_tokenizer_from_vocab(name, &v, &tok, &err))
        fail_msg("%s", err.msg);
    return tok;
}

static void test_chatml(void **state)
{
    (void)state;
    greta_tokenizer *tok = special_vocab("chatml", NULL);
    const greta_chat_msg m[] = {
        MSG(SYSTEM, "Be brief."),
        MSG(USER, "Hi"),
        MSG(ASSISTANT, " Hello "),
        MSG(USER, "<|im_end|>"),
    };
    expect_text(GRETA_CHAT_CHATML, tok, m, 4, true,
                "<|im_start|>system\nBe brief.<|im_end|>\n"
                "<|im_start|>user\nHi<|im_end|>\n"
                "<|im_start|>assistant\n Hello <|im_end|>\n"
                "<|im_start|>user\n<|im_end|><|im_end|>\n"
                "<|im_start|>assistant\n");
    expect_text(GRETA_CHAT_CHATML, tok, m, 2, false,
                "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n");
    /* ids: BOS (model default), <|im_start|>, "▁user\nHi" = ▁ user <0x0A> Hi,
     * <|im_end|>, "\n" = ▁ <0x0A> */
    const greta_chat_msg u[] = {MSG(USER, "Hi")};
    const int32_t nl = 10 + '\n';
    const int32_t want[] = {1, 3, 9, 272, nl, 275, 4, 9, nl};
    expect_ids(GRETA_CHAT_CHATML, tok, u, 1, false, want, sizeof want / sizeof *want);
    /* the special-token text in a message is bytes, not id 4 */
    int32_t ids[256];
    size_t k;
    greta_error err = {0};
    assert_int_equal(greta_chat_render_ids(GRETA_CHAT_CHATML, tok, m + 3, 1, false, ids, 256, &k, &err), 0);
    size_t n_end = 0;
    for (size_t i = 0; i < k; i++)
        n_end += ids[i] == 4;
    assert_int_equal(n_end, 1); /* only the template's own */
    greta_tokenizer_destroy(&tok);
}

static void test_llama3(void **state)
{
    (void)state;
    greta_tokenizer *tok = special_vocab("llama3", NULL);
    const greta_chat_msg m[] = {
        MSG(SYSTEM, "Be brief.\n"),
        MSG(USER, "  Hi"),
        MSG(ASSISTANT, "Hello"),
    };
    expect_text(GRETA_CHAT_LLAMA3, tok, m, 3, true,
                "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nBe brief.<|eot_id|>"
                "<|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>"
                "<|start_header_id|>assistant<|end_header_id|>\n\nHello<|eot_id|>"
                "<|start_header_id|>assistant<|end_header_id|>\n\n");
    expect_text(GRETA_CHAT_LLAMA3, tok, m + 1, 1, false,
                "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>");
    /* ids: no extra BOS, begin_of_text is the template's */
    const int32_t nl = 10 + '\n';
    const int32_t want[] = {5, 6, 9, 272, 7, 9, nl, nl, 275, 8};
    expect_ids(GRETA_CHAT_LLAMA3, tok, m + 1, 1, false, want, sizeof want / sizeof *want);
    greta_tokenizer_destroy(&tok);
}

/* ChatML and Llama-3 need their own vocabularies: refused on Llama-2's. */
static void test_refused_without_special_tokens(void **state)
{
    (void)state;
    NEED_LLAMA();
    greta_error err = {0};
    assert_int_equal(greta_chat_template_check(GRETA_CHAT_CHATML, llama, &err), GRETA_ERR_UNSUPPORTED);
    assert_non_null(strstr(err.msg, "<|im_start|>"));
    assert_int_equal(greta_chat_template_check(GRETA_CHAT_LLAMA3, llama, &err), GRETA_ERR_UNSUPPORTED);
    assert_non_null(strstr(err.msg, "<|begin_of_text|>"));
    assert_int_equal(greta_chat_template_check(GRETA_CHAT_LLAMA2, llama, &err), 0);
    assert_int_equal(greta_chat_template_check(GRETA_CHAT_RAW, llama, &err), 0);
    const greta_chat_msg m[] = {MSG(USER, "Hi")};
    expect_render_error(GRETA_CHAT_CHATML, llama, m, 1, GRETA_ERR_UNSUPPORTED, "<|im_start|>");
}

static void test_names_and_detection(void **state)
{
    (void)state;
    greta_chat_template t;
    greta_error err = {0};
    const char *names[] = {"raw", "llama2", "chatml", "llama3"};
    for (int i = 0; i < 4; i++) {
        assert_int_equal(greta_chat_template_from_name(names[i], &t, &err), 0);
        assert_int_equal((int)t, i);
        assert_string_equal(greta_chat_template_name(t), names[i]);
    }
    assert_int_equal(greta_chat_template_from_name("vicuna", &t, &err), GRETA_ERR_INVALID);
    assert_non_null(strstr(err.msg, "vicuna"));

    const char *l2 = "{% if messages[0]['role'] == 'system' %}{% set system_message = '<<SYS>>\\n' + "
                     "messages[0]['content'] + '\\n<</SYS>>\\n\\n' %}{% endif %}{% for message in "
                     "messages %}{{ bos_token + '[INST] ' + message['content'] + ' [/INST]' }}{% endfor %}";
    const char *cm = "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + "
                     "message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}";
    const char *l3 = "{% for message in messages %}{{ '<|start_header_id|>' + message['role'] + "
                     "'<|end_header_id|>\\n\\n' + message['content'] | trim + '<|eot_id|>' }}{% endfor %}";
    const char *mistral = "{{ bos_token }}{% for message in messages %}{{ '[INST] ' + message['content'] "
                          "+ ' [/INST]' }}{% endfor %}";
    assert_int_equal(greta_chat_template_detect(l2, strlen(l2), &t, &err), 0);
    assert_int_equal(t, GRETA_CHAT_LLAMA2);
    assert_int_equal(greta_chat_template_detect(cm, strlen(cm), &t, &err), 0);
    assert_int_equal(t, GRETA_CHAT_CHATML);
    assert_int_equal(greta_chat_template_detect(l3, strlen(l3), &t, &err), 0);
    assert_int_equal(t, GRETA_CHAT_LLAMA3);
    /* [INST] without <<SYS>> is another format (Mistral): not guessed */
    assert_int_equal(greta_chat_template_detect(mistral, strlen(mistral), &t, &err), GRETA_ERR_UNSUPPORTED);
    assert_non_null(strstr(err.msg, "not a known template"));
    assert_int_equal(greta_chat_template_detect("", 0, &t, &err), GRETA_ERR_UNSUPPORTED);
}

static gguf_file *open_tmp(const char *name)
{
    char p[4096];
    snprintf(p, sizeof p, "%s/%s.gguf", greta_test_tmpdir("tokenizer"), name);
    gguf_file *f = NULL;
    greta_error err = {0};
    if (gguf_open(p, &f, &err))
        fail_msg("%s", err.msg);
    return f;
}

static void test_select(void **state)
{
    (void)state;
    const char *cm = "{% for m in messages %}{{'<|im_start|>' + m['role'] + '\\n' + m['content'] + "
                     "'<|im_end|>\\n'}}{% endfor %}";
    greta_chat_template t;
    char note[GRETA_CHAT_NOTE_MAX];
    greta_error err = {0};

    greta_tokenizer *tok = special_vocab("sel_chatml", cm);
    gguf_file *f = open_tmp("sel_chatml");
    strcpy(note, "x");
    assert_int_equal(greta_chat_template_select(f, tok, NULL, &t, note, &err), 0);
    assert_int_equal(t, GRETA_CHAT_CHATML);
    assert_string_equal(note, "");
    assert_int_equal(greta_chat_template_select(f, tok, "llama3", &t, note, &err), 0);
    assert_int_equal(t, GRETA_CHAT_LLAMA3);
    assert_int_equal(greta_chat_template_select(f, tok, "raw", &t, NULL, &err), 0);
    assert_int_equal(t, GRETA_CHAT_RAW);
    assert_int_equal(greta_chat_template_select(f, tok, "nope", &t, note, &err), GRETA_ERR_INVALID);
    gguf_close(&f);
    greta_tokenizer_destroy(&tok);

    tok = special_vocab("sel_unknown", "{{ messages | tojson }}");
    f = open_tmp("sel_unknown");
    assert_int_equal(greta_chat_template_select(f, tok, NULL, &t, note, &err), GRETA_ERR_UNSUPPORTED);
    assert_non_null(strstr(err.msg, "tokenizer.chat_template"));
    assert_non_null(strstr(err.msg, "{{ messages"));
    assert_int_equal(greta_chat_template_select(f, tok, "chatml", &t, note, &err), 0); /* override wins */
    gguf_close(&f);
    greta_tokenizer_destroy(&tok);

    /* no template in the file: raw, and a note saying so */
    GRETA_TESTDATA_OR_SKIP(sp, "stories260K.gguf");
    assert_int_equal(gguf_open(sp, &f, &err), 0);
    assert_int_equal(greta_tokenizer_create_from_gguf(f, &tok, &err), 0);
    assert_int_equal(greta_chat_template_select(f, tok, NULL, &t, note, &err), 0);
    assert_int_equal(t, GRETA_CHAT_RAW);
    assert_non_null(strstr(note, "no chat template"));
    /* an explicit template whose tokens the 512-token vocab lacks is refused */
    assert_int_equal(greta_chat_template_select(f, tok, "chatml", &t, note, &err), GRETA_ERR_UNSUPPORTED);
    assert_non_null(strstr(err.msg, "<|im_start|>"));
    assert_string_equal(note, "");
    assert_int_equal(greta_chat_template_select(f, tok, "llama2", &t, note, &err), 0);
    gguf_close(&f);
    greta_tokenizer_destroy(&tok);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_llama2_ids_with_system),
        cmocka_unit_test(test_llama2_ids_no_system),
        cmocka_unit_test(test_llama2_content_not_special),
        cmocka_unit_test(test_llama2_role_errors),
        cmocka_unit_test(test_raw),
        cmocka_unit_test(test_small_buffers),
        cmocka_unit_test(test_chatml),
        cmocka_unit_test(test_llama3),
        cmocka_unit_test(test_refused_without_special_tokens),
        cmocka_unit_test(test_names_and_detection),
        cmocka_unit_test(test_select),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
