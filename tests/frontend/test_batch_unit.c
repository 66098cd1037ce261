/* test_batch_unit.c - `greta batch` without a pipeline: checking input lines
 * (every refusal names its field), the output line shapes, UTF-8 cleaning,
 * and the journal (new, resumed, torn last line, damaged line, another job).
 */
#include <cjson/cJSON.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "test_util.h"

#include "frontend/batch_journal.h"
#include "frontend/batch_request.h"
#include "greta.pb-c.h"

/* ---- input lines ------------------------------------------------------------------------ */

static void parse_ok(const char *line, greta_batch_req *r)
{
    int rc = greta_batch_req_parse(line, strlen(line), 7, r);
    if (rc != 0)
        fail_msg("refused: %s: %s", r->code, r->message);
    assert_int_equal(r->bad, 0);
}

static void test_chat_line(void **state)
{
    (void)state;
    greta_batch_req r;
    parse_ok("{\"custom_id\":\"r1\",\"method\":\"POST\",\"url\":\"/v1/chat/completions\",\"body\":{\"model\":\"x\","
             "\"messages\":[{\"role\":\"developer\",\"content\":\"Be nice.\"},{\"role\":\"user\",\"content\":"
             "[{\"type\":\"text\",\"text\":\"Hello \"},{\"type\":\"text\",\"text\":\"there\"}]},"
             "{\"role\":\"assistant\",\"content\":\"Hi\"},{\"role\":\"user\",\"content\":\"More\"}],"
             "\"max_completion_tokens\":12,\"temperature\":0.8,\"top_p\":0.5,\"seed\":-3,\"stop\":\"\\n\","
             "\"frequency_penalty\":0.5,\"presence_penalty\":-1,\"logit_bias\":{\"5\":-100,\"17\":2.5}}}",
             &r);
    assert_int_equal(r.line, 7);
    assert_string_equal(r.custom_id, "r1");
    assert_int_equal(r.kind, GRETA_BATCH_CHAT);
    assert_int_equal(r.n_msgs, 4);
    assert_string_equal(r.roles[0], "system");
    assert_string_equal(r.contents[1], "Hello there");
    assert_string_equal(r.roles[2], "assistant");
    assert_int_equal(r.max_tokens, 12);
    assert_true(r.temperature == 0.8f && r.top_p == 0.5f);
    assert_true(r.seed == (uint64_t)(int64_t)-3);
    assert_int_equal(r.n_stop, 1);
    assert_string_equal(r.stop[0], "\n");
    assert_string_equal(r.model, "x");
    assert_true(r.frequency_penalty == 0.5f && r.presence_penalty == -1.0f);
    assert_int_equal(r.n_bias, 2);
    assert_int_equal(r.bias[0].token, 5);
    assert_true(r.bias[0].bias == -100.0f);
    assert_int_equal(r.bias[1].token, 17);
    assert_true(r.bias[1].bias == 2.5f);
    greta_batch_req_free(&r);
    /* defaults: chat runs to the end of the context, temperature 1, seed from custom_id */
    parse_ok("{\"custom_id\":\"r2\",\"method\":\"POST\",\"url\":\"/v1/chat/completions\",\"body\":{\"messages\":"
             "[{\"role\":\"user\",\"content\":\"x\"}],\"n\":1,\"stream\":false,\"presence_penalty\":0}}",
             &r);
    assert_int_equal(r.max_tokens, 0);
    assert_true(r.temperature == 1.0f && r.top_p == 1.0f);
    assert_true(r.seed == greta_batch_hash("r2", 2));
    assert_true(r.seed != greta_batch_hash("r3", 2));
    assert_null(r.model);
    greta_batch_req_free(&r);
}

static void test_completion_line(void **state)
{
    (void)state;
    greta_batch_req r;
    parse_ok("{\"custom_id\":\"c\",\"method\":\"POST\",\"url\":\"/v1/completions\",\"body\":{\"prompt\":\"Once\","
             "\"stop\":[\"a\",\"bb\",\"ccc\",\"dddd\"],\"seed\":9007199254740992}}",
             &r);
    assert_int_equal(r.kind, GRETA_BATCH_COMPLETION);
    assert_string_equal(r.prompt, "Once");
    assert_int_equal(r.max_tokens, 16); /* OpenAI's default for completions */
    assert_int_equal(r.n_stop, 4);
    assert_string_equal(r.stop[3], "dddd");
    assert_true(r.seed == 9007199254740992ull);
    greta_batch_req_free(&r);
    parse_ok("{\"custom_id\":\"c\",\"method\":\"POST\",\"url\":\"/v1/completions\",\"body\":{\"prompt\":[\"One\"]}}",
             &r);
    assert_string_equal(r.prompt, "One");
    greta_batch_req_free(&r);
    parse_ok("{\"custom_id\":\"c\",\"method\":\"POST\",\"url\":\"/v1/completions\",\"body\":{\"prompt\":[1,5,9],"
             "\"max_tokens\":3}}  ",
             &r);
    assert_null(r.prompt);
    assert_int_equal(r.n_prompt_ids, 3);
    assert_int_equal(r.prompt_ids[2], 9);
    greta_batch_req_free(&r);
}

typedef struct bad_case {
    const char *line;
    const char *code;
    const char *message; /* substring */
    int has_id;
} bad_case;

#define CHAT_HEAD "{\"custom_id\":\"k\",\"method\":\"POST\",\"url\":\"/v1/chat/completions\",\"body\":"
#define COMP_HEAD "{\"custom_id\":\"k\",\"method\":\"POST\",\"url\":\"/v1/completions\",\"body\":"
#define MSGS "\"messages\":[{\"role\":\"user\",\"content\":\"x\"}]"

static void test_bad_lines(void **state)
{
    (void)state;
    static const bad_case cases[] = {
        {"{\"custom_id\": \"k\",", "invalid_json", "not valid JSON", 0},
        {"[1,2]", "invalid_request", "must be a JSON object", 0},
        {"{\"a\":1} x", "invalid_json", "text after the JSON value (at byte 8", 0},
        {"{\"method\":\"POST\",\"url\":\"/v1/completions\",\"body\":{\"prompt\":\"x\"}}", "invalid_request",
         "custom_id: missing", 0},
        {"{\"custom_id\":5,\"method\":\"POST\"}", "invalid_request", "custom_id: must be a string", 0},
        {"{\"custom_id\":\"\",\"method\":\"POST\"}", "invalid_request", "custom_id: must be a string", 0},
        {"{\"custom_id\":\"k\",\"method\":\"GET\",\"url\":\"/v1/completions\",\"body\":{}}", "invalid_request",
         "method: must be \"POST\"", 1},
        {"{\"custom_id\":\"k\",\"method\":\"POST\",\"body\":{}}", "invalid_request", "url: missing", 1},
        {"{\"custom_id\":\"k\",\"method\":\"POST\",\"url\":\"/v1/embeddings\",\"body\":{}}", "unsupported_url",
         "url: \"/v1/embeddings\" is not supported", 1},
        {"{\"custom_id\":\"k\",\"method\":\"POST\",\"url\":\"/v1/completions\"}", "invalid_request", "body: missing",
         1},
        {"{\"custom_id\":\"k\",\"method\":\"POST\",\"url\":\"/v1/completions\",\"body\":3}", "invalid_request",
         "body: must be an object", 1},
        {CHAT_HEAD "{}}", "invalid_request", "body.messages: missing", 1},
        {CHAT_HEAD "{\"messages\":[]}}", "invalid_request", "body.messages: must be a list of 1..256", 1},
        {CHAT_HEAD "{\"messages\":[3]}}", "invalid_request", "body.messages[0]: must be an object", 1},
        {CHAT_HEAD "{\"messages\":[{\"role\":\"user\",\"content\":\"a\"},{\"role\":\"tool\",\"content\":\"b\"}]}}",
         "invalid_request", "body.messages[1].role: must be system, developer, user or assistant (got \"tool\")", 1},
        {CHAT_HEAD "{\"messages\":[{\"role\":\"user\"}]}}", "invalid_request", "body.messages[0].content: missing", 1},
        {CHAT_HEAD "{\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"image_url\"}]}]}}", "invalid_request",
         "body.messages[0].content[0]: only", 1},
        {CHAT_HEAD "{" MSGS ",\"max_tokens\":0}}", "invalid_request", "body.max_tokens: must be an integer in 1..", 1},
        {CHAT_HEAD "{" MSGS ",\"max_tokens\":2.5}}", "invalid_request", "body.max_tokens: must be an integer", 1},
        {CHAT_HEAD "{" MSGS ",\"max_completion_tokens\":\"9\"}}", "invalid_request",
         "body.max_completion_tokens: must be an integer", 1},
        {CHAT_HEAD "{" MSGS ",\"temperature\":2.5}}", "invalid_request",
         "body.temperature: must be a number in 0..2 (got 2.5)", 1},
        {CHAT_HEAD "{" MSGS ",\"temperature\":-1}}", "invalid_request", "body.temperature", 1},
        {CHAT_HEAD "{" MSGS ",\"top_p\":0}}", "invalid_request", "body.top_p: must be a number in (0, 1] (got 0)", 1},
        {CHAT_HEAD "{" MSGS ",\"top_p\":1.5}}", "invalid_request", "body.top_p", 1},
        {CHAT_HEAD "{" MSGS ",\"seed\":1.5}}", "invalid_request", "body.seed: must be an integer", 1},
        {CHAT_HEAD "{" MSGS ",\"seed\":1e300}}", "invalid_request", "body.seed: must be an integer", 1},
        {CHAT_HEAD "{" MSGS ",\"stop\":[\"a\",\"b\",\"c\",\"d\",\"e\"]}}", "invalid_request",
         "body.stop: at most 4 strings (got 5)", 1},
        {CHAT_HEAD "{" MSGS ",\"stop\":[\"a\",7]}}", "invalid_request", "body.stop[1]: must be a string", 1},
        {CHAT_HEAD "{" MSGS ",\"stop\":\"\"}}", "invalid_request", "body.stop: must be 1..63 bytes (got 0)", 1},
        {CHAT_HEAD "{" MSGS ",\"stop\":\"0123456789012345678901234567890123456789012345678901234567890123\"}}",
         "invalid_request", "body.stop: must be 1..63 bytes (got 64)", 1},
        {CHAT_HEAD "{" MSGS ",\"stop\":{}}}", "invalid_request", "body.stop: must be a string or a list", 1},
        {CHAT_HEAD "{" MSGS ",\"n\":2}}", "invalid_request", "body.n: not supported (only 1; got 2)", 1},
        {CHAT_HEAD "{" MSGS ",\"stream\":true}}", "invalid_request", "body.stream: not supported", 1},
        {CHAT_HEAD "{" MSGS ",\"frequency_penalty\":2.5}}", "invalid_request",
         "body.frequency_penalty: must be a number in -2..2 (got 2.5)", 1},
        {CHAT_HEAD "{" MSGS ",\"presence_penalty\":\"1\"}}", "invalid_request", "body.presence_penalty", 1},
        {CHAT_HEAD "{" MSGS ",\"logit_bias\":[1]}}", "invalid_request", "body.logit_bias: must be an object", 1},
        {CHAT_HEAD "{" MSGS ",\"logit_bias\":{\"x\":1}}}", "invalid_request",
         "body.logit_bias: key \"x\" is not a token id", 1},
        {CHAT_HEAD "{" MSGS ",\"logit_bias\":{\"-5\":1}}}", "invalid_request", "is not a token id", 1},
        {CHAT_HEAD "{" MSGS ",\"logit_bias\":{\"5\":101}}}", "invalid_request",
         "body.logit_bias[\"5\"]: must be a number in -100..100", 1},
        {CHAT_HEAD "{" MSGS ",\"logit_bias\":{\"5\":\"a\"}}}", "invalid_request", "body.logit_bias[\"5\"]", 1},
        {CHAT_HEAD "{" MSGS ",\"logprobs\":true}}", "invalid_request", "body.logprobs", 1},
        {COMP_HEAD "{}}", "invalid_request", "body.prompt: missing", 1},
        {COMP_HEAD "{\"prompt\":[]}}", "invalid_request", "body.prompt: must be a string", 1},
        {COMP_HEAD "{\"prompt\":[\"a\",\"b\"]}}", "invalid_request", "body.prompt[0]: one prompt per line", 1},
        {COMP_HEAD "{\"prompt\":[1,-2]}}", "invalid_request", "body.prompt[1]: must be a token id", 1},
        {COMP_HEAD "{\"prompt\":\"x\",\"echo\":true}}", "invalid_request", "body.echo: not supported", 1},
        {COMP_HEAD "{\"prompt\":\"x\",\"suffix\":\"y\"}}", "invalid_request", "body.suffix: not supported", 1},
        {COMP_HEAD "{\"prompt\":\"x\",\"best_of\":3}}", "invalid_request", "body.best_of: not supported", 1},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        greta_batch_req r;
        int rc = greta_batch_req_parse(cases[i].line, strlen(cases[i].line), 3, &r);
        fprintf(stderr, "case %zu: %s -> %s: %s\n", i, cases[i].line, r.code, r.message);
        assert_int_equal(rc, -1);
        assert_int_equal(r.bad, 1);
        assert_string_equal(r.code, cases[i].code);
        if (!strstr(r.message, cases[i].message))
            fail_msg("case %zu: message '%s' lacks '%s'", i, r.message, cases[i].message);
        assert_int_equal(r.custom_id != NULL, cases[i].has_id);
        /* the error line is JSON with the code, message, line and custom_id (or null) */
        char *out = greta_batch_format_error(&r);
        assert_non_null(out);
        assert_null(strchr(out, '\n'));
        cJSON *j = cJSON_Parse(out);
        assert_non_null(j);
        assert_true(cJSON_IsNull(cJSON_GetObjectItem(j, "response")));
        cJSON *e = cJSON_GetObjectItem(j, "error");
        assert_string_equal(cJSON_GetObjectItem(e, "code")->valuestring, cases[i].code);
        assert_string_equal(cJSON_GetObjectItem(e, "message")->valuestring, r.message);
        assert_int_equal(cJSON_GetObjectItem(e, "line")->valueint, 3);
        assert_string_equal(cJSON_GetObjectItem(j, "id")->valuestring, "batch_req_line3");
        cJSON *cid = cJSON_GetObjectItem(j, "custom_id");
        if (cases[i].has_id)
            assert_string_equal(cid->valuestring, "k");
        else
            assert_true(cJSON_IsNull(cid));
        cJSON_Delete(j);
        free(out);
        greta_batch_req_free(&r);
    }
}

static void test_bias_limit(void **state)
{
    (void)state;
    char line[4096];
    size_t k = (size_t)snprintf(line, sizeof line, COMP_HEAD "{\"prompt\":\"x\",\"logit_bias\":{");
    for (int i = 0; i < 65; i++)
        k += (size_t)snprintf(line + k, sizeof line - k, "%s\"%d\":1", i ? "," : "", i);
    snprintf(line + k, sizeof line - k, "}}}");
    greta_batch_req r;
    assert_int_equal(greta_batch_req_parse(line, strlen(line), 1, &r), -1);
    assert_non_null(strstr(r.message, "body.logit_bias: at most 64 entries (got 65)"));
    greta_batch_req_free(&r);
    /* 64 is fine */
    char *last = strstr(line, ",\"64\":1");
    assert_non_null(last);
    memmove(last, last + 7, strlen(last + 7) + 1);
    parse_ok(line, &r);
    assert_int_equal(r.n_bias, 64);
    assert_int_equal(r.bias[63].token, 63);
    greta_batch_req_free(&r);
}

/* ---- output ------------------------------------------------------------------------------- */

static void test_format_response(void **state)
{
    (void)state;
    greta_batch_req r;
    parse_ok(CHAT_HEAD "{" MSGS "}}", &r);
    greta_batch_result res = {.request_id = 0x0123456789abcdefull,
                              .text = "Hi \"you\"\n\xff!",
                              .len = 11,
                              .finish_reason = GRETA__FINISH_REASON__FINISH_EOS,
                              .prompt_tokens = 5,
                              .completion_tokens = 3,
                              .created = 1700000000,
                              .model = "m.gguf"};
    char *out = greta_batch_format_response(&r, &res);
    assert_non_null(out);
    assert_null(strchr(out, '\n'));
    cJSON *j = cJSON_Parse(out);
    assert_non_null(j);
    assert_string_equal(cJSON_GetObjectItem(j, "id")->valuestring, "batch_req_0123456789abcdef");
    assert_string_equal(cJSON_GetObjectItem(j, "custom_id")->valuestring, "k");
    assert_true(cJSON_IsNull(cJSON_GetObjectItem(j, "error")));
    cJSON *resp = cJSON_GetObjectItem(j, "response");
    assert_int_equal(cJSON_GetObjectItem(resp, "status_code")->valueint, 200);
    cJSON *body = cJSON_GetObjectItem(resp, "body");
    assert_string_equal(cJSON_GetObjectItem(body, "id")->valuestring, "chatcmpl-0123456789abcdef");
    assert_string_equal(cJSON_GetObjectItem(body, "object")->valuestring, "chat.completion");
    assert_string_equal(cJSON_GetObjectItem(body, "model")->valuestring, "m.gguf");
    assert_int_equal((long long)cJSON_GetObjectItem(body, "created")->valuedouble, 1700000000LL);
    cJSON *c0 = cJSON_GetArrayItem(cJSON_GetObjectItem(body, "choices"), 0);
    assert_string_equal(cJSON_GetObjectItem(cJSON_GetObjectItem(c0, "message"), "content")->valuestring,
                        "Hi \"you\"\n\xEF\xBF\xBD!");
    assert_string_equal(cJSON_GetObjectItem(c0, "finish_reason")->valuestring, "stop");
    cJSON *usage = cJSON_GetObjectItem(body, "usage");
    assert_int_equal(cJSON_GetObjectItem(usage, "prompt_tokens")->valueint, 5);
    assert_int_equal(cJSON_GetObjectItem(usage, "completion_tokens")->valueint, 3);
    assert_int_equal(cJSON_GetObjectItem(usage, "total_tokens")->valueint, 8);
    cJSON_Delete(j);
    free(out);
    greta_batch_req_free(&r);

    parse_ok(COMP_HEAD "{\"prompt\":\"x\",\"model\":\"asked\"}}", &r);
    res.finish_reason = GRETA__FINISH_REASON__FINISH_CONTEXT;
    out = greta_batch_format_response(&r, &res);
    j = cJSON_Parse(out);
    body = cJSON_GetObjectItem(cJSON_GetObjectItem(j, "response"), "body");
    assert_string_equal(cJSON_GetObjectItem(body, "object")->valuestring, "text_completion");
    assert_string_equal(cJSON_GetObjectItem(body, "id")->valuestring, "cmpl-0123456789abcdef");
    assert_string_equal(cJSON_GetObjectItem(body, "model")->valuestring, "asked");
    c0 = cJSON_GetArrayItem(cJSON_GetObjectItem(body, "choices"), 0);
    assert_string_equal(cJSON_GetObjectItem(c0, "text")->valuestring, "Hi \"you\"\n\xEF\xBF\xBD!");
    assert_string_equal(cJSON_GetObjectItem(c0, "finish_reason")->valuestring, "length");
    cJSON_Delete(j);
    free(out);
    greta_batch_req_free(&r);
}

static void test_utf8_clean(void **state)
{
    (void)state;
    static const struct {
        const char *in;
        size_t len;
        const char *out;
    } cases[] = {
        {"abc", 3, "abc"},
        {"\xC3\xA9", 2, "\xC3\xA9"},                                 /* é */
        {"\xF0\x9F\x98\x80", 4, "\xF0\x9F\x98\x80"},                 /* emoji */
        {"\xC3", 1, "\xEF\xBF\xBD"},                                 /* truncated */
        {"\xC0\xAF", 2, "\xEF\xBF\xBD\xEF\xBF\xBD"},                 /* overlong */
        {"\xED\xA0\x80", 3, "\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD"}, /* surrogate */
        {"a\0b", 3,
         "a\xEF\xBF\xBD"
         "b"},                                                                       /* NUL */
        {"\xF4\x90\x80\x80", 4, "\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD"}, /* > U+10FFFF */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char *s = greta_batch_utf8_clean(cases[i].in, cases[i].len);
        assert_non_null(s);
        assert_string_equal(s, cases[i].out);
        free(s);
    }
}

/* ---- journal ------------------------------------------------------------------------------ */

static void append(const char *path, const char *text)
{
    int fd = open(path, O_WRONLY | O_APPEND);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
    close(fd);
}

static void test_journal(void **state)
{
    (void)state;
    char path[4200];
    snprintf(path, sizeof path, "%s/out.jsonl.journal", greta_test_tmpdir("batch_journal"));
    unlink(path);
    greta_error err = {0};
    greta_batch_journal *j = NULL;
    int resumed = -1;
    assert_int_equal(greta_batch_journal_open(path, "job A", 10, &j, &resumed, &err), 0);
    assert_int_equal(resumed, 0);
    assert_int_equal(greta_batch_journal_submit(j, 2, 0xabcull, &err), 0);
    assert_int_equal(greta_batch_journal_submit(j, 5, 0x5ull, &err), 0);
    assert_int_equal(greta_batch_journal_done(j, 2, "{\"x\":\"one \\\"two\\\"\"}", &err), 0);
    assert_int_equal(greta_batch_journal_done_count(j), 1);
    greta_batch_journal_close(&j);

    /* resumed: the records are back */
    assert_int_equal(greta_batch_journal_open(path, "job A", 10, &j, &resumed, &err), 0);
    assert_int_equal(resumed, 1);
    assert_true(greta_batch_journal_rid(j, 2) == 0xabcull);
    assert_true(greta_batch_journal_rid(j, 5) == 0x5ull);
    assert_true(greta_batch_journal_rid(j, 3) == 0);
    assert_string_equal(greta_batch_journal_output(j, 2), "{\"x\":\"one \\\"two\\\"\"}");
    assert_null(greta_batch_journal_output(j, 5));
    assert_int_equal(greta_batch_journal_done_count(j), 1);
    greta_batch_journal_close(&j);

    /* a damaged line in the middle is skipped; a torn last line is cut */
    append(path, "garbage\n{\"line\":99,\"out\":\"x\"}\n{\"line\":5,\"out\":\"{\\\"five\\\":5}\"}\n{\"line\":7,\"ou");
    assert_int_equal(greta_batch_journal_open(path, "job A", 10, &j, &resumed, &err), 0);
    assert_int_equal(greta_batch_journal_skipped(j), 2);
    assert_string_equal(greta_batch_journal_output(j, 5), "{\"five\":5}");
    assert_null(greta_batch_journal_output(j, 7));
    assert_int_equal(greta_batch_journal_done_count(j), 2);
    assert_int_equal(greta_batch_journal_done(j, 7, "{}", &err), 0);
    greta_batch_journal_close(&j);
    size_t n;
    char *text = greta_read_file(path, &n);
    assert_non_null(text);
    assert_null(strstr(text, "\"ou{")); /* the torn bytes are gone, the new record whole */
    assert_non_null(strstr(text, "{\"line\":7,\"out\":\"{}\"}\n"));
    free(text);
    assert_int_equal(greta_batch_journal_open(path, "job A", 10, &j, &resumed, &err), 0);
    assert_string_equal(greta_batch_journal_output(j, 7), "{}");
    assert_int_equal(greta_batch_journal_done_count(j), 3);
    greta_batch_journal_close(&j);

    /* another job's journal is refused and left alone */
    assert_int_equal(greta_batch_journal_open(path, "job B", 10, &j, &resumed, &err), GRETA_ERR_STATE);
    assert_null(j);
    assert_non_null(strstr(err.msg, "belongs to another job"));
    assert_non_null(strstr(err.msg, "job A"));
    assert_int_equal(greta_batch_journal_open(path, "job A", 10, &j, &resumed, &err), 0);
    greta_batch_journal_close(&j);

    /* not a journal at all */
    FILE *f = fopen(path, "w");
    fputs("hello\n", f);
    fclose(f);
    assert_int_equal(greta_batch_journal_open(path, "job A", 10, &j, &resumed, &err), GRETA_ERR_FORMAT);
    assert_non_null(strstr(err.msg, "not a greta batch journal"));
    /* killed while writing the header: starts again */
    f = fopen(path, "w");
    fputs("{\"greta_batch_jou", f);
    fclose(f);
    assert_int_equal(greta_batch_journal_open(path, "job A", 10, &j, &resumed, &err), 0);
    assert_int_equal(resumed, 0);
    greta_batch_journal_close(&j);
    unlink(path);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_chat_line),  cmocka_unit_test(test_completion_line), cmocka_unit_test(test_bad_lines),
        cmocka_unit_test(test_bias_limit), cmocka_unit_test(test_format_response), cmocka_unit_test(test_utf8_clean),
        cmocka_unit_test(test_journal),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
