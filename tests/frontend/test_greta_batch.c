/* test_greta_batch.c - `greta batch` end to end with stories260K.
 *
 *   test_greta_batch GROUP    (one ctest entry per group, each with its own instance)
 * groups:
 *   lines        valid lines of both urls answered with the client library's
 *                text (greedy, seeded, default seed, stop string); malformed
 *                JSON, missing and repeated custom_id, unknown url, bad
 *                parameters, a token outside the vocabulary and a prompt
 *                longer than the context become per-line errors naming the
 *                field; blank lines are skipped; usage errors
 *   concurrency  --concurrency 1 never shares a step, 8 does (the worker's
 *                step statistics and the batch summary), with the same
 *                answers; more than the instance's slots is capped; the
 *                progress bar shows on a terminal only
 *   resume-running    kill -9 of the client at a random point of a job on a
 *                running instance, then the same command again: every
 *                custom_id exactly once, answers identical to an
 *                uninterrupted run (greedy and seeded temperature 0.8 lines)
 *   resume-temporary  the same with the temporary instance the command
 *                starts itself (the kill also takes that instance down), after
 *                a SIGTERM first (in-flight requests finish, exit 1)
 */
#include <cjson/cJSON.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "test_util.h"

#include "fe_util.h"
#include "pty_util.h"

#include "proto/endpoint.h"

static const char *g_group;
static const char *g_model;
static char g_instance[48];
static char g_dir[4096];
static unsigned g_rand;

static int setup(void **state)
{
    (void)state;
    g_model = fe_setup();
    fe_instance_name(g_instance, sizeof g_instance, g_group);
    snprintf(g_dir, sizeof g_dir, "%s", greta_test_tmpdir(g_instance));
    g_rand = (unsigned)time(NULL) ^ (unsigned)getpid();
    fprintf(stderr, "instance %s, random seed %u\n", g_instance, g_rand);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    if (g_model) {
        fe_down(g_instance);
        fe_clean(g_instance);
    }
    return 0;
}

static void path_of(char *buf, size_t n, const char *name)
{
    snprintf(buf, n, "%s/%s", g_dir, name);
}

static void write_text(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

static char *read_text(const char *path)
{
    size_t n;
    char *s = greta_read_file(path, &n);
    if (!s)
        fail_msg("cannot read %s", path);
    return s;
}

/* The output file as an array of parsed lines. */
static cJSON *read_lines(const char *path, int *n)
{
    char *text = read_text(path);
    cJSON *arr = cJSON_CreateArray();
    *n = 0;
    for (char *line = strtok(text, "\n"); line; line = strtok(NULL, "\n")) {
        cJSON *j = cJSON_Parse(line);
        if (!j)
            fail_msg("%s: line %d is not JSON: %s", path, *n + 1, line);
        cJSON_AddItemToArray(arr, j);
        (*n)++;
    }
    free(text);
    return arr;
}

static const char *custom_id(const cJSON *line)
{
    const cJSON *c = cJSON_GetObjectItem(line, "custom_id");
    return cJSON_IsString(c) ? c->valuestring : NULL;
}

static const cJSON *body_of(const cJSON *line)
{
    return cJSON_GetObjectItem(cJSON_GetObjectItem(line, "response"), "body");
}

static const char *answer_text(const cJSON *line)
{
    const cJSON *c0 = cJSON_GetArrayItem(cJSON_GetObjectItem(body_of(line), "choices"), 0);
    const cJSON *t = cJSON_GetObjectItem(c0, "text");
    if (!t)
        t = cJSON_GetObjectItem(cJSON_GetObjectItem(c0, "message"), "content");
    return cJSON_IsString(t) ? t->valuestring : NULL;
}

static const char *finish_of(const cJSON *line)
{
    const cJSON *c0 = cJSON_GetArrayItem(cJSON_GetObjectItem(body_of(line), "choices"), 0);
    const cJSON *f = cJSON_GetObjectItem(c0, "finish_reason");
    return cJSON_IsString(f) ? f->valuestring : "";
}

static int usage_of(const cJSON *line, const char *field)
{
    const cJSON *v = cJSON_GetObjectItem(cJSON_GetObjectItem(body_of(line), "usage"), field);
    return cJSON_IsNumber(v) ? v->valueint : -1;
}

static void expect_error(const cJSON *line, const char *id, const char *code, const char *msg, int lineno)
{
    const cJSON *e = cJSON_GetObjectItem(line, "error");
    if (!cJSON_IsObject(e))
        fail_msg("line %d (%s): expected error %s", lineno, id ? id : "null", code);
    assert_true(cJSON_IsNull(cJSON_GetObjectItem(line, "response")));
    if (id)
        assert_string_equal(custom_id(line), id);
    else
        assert_true(cJSON_IsNull(cJSON_GetObjectItem(line, "custom_id")));
    assert_string_equal(cJSON_GetObjectItem(e, "code")->valuestring, code);
    const char *m = cJSON_GetObjectItem(e, "message")->valuestring;
    if (!strstr(m, msg))
        fail_msg("line %d: message '%s' lacks '%s'", lineno, m, msg);
    assert_int_equal(cJSON_GetObjectItem(e, "line")->valueint, lineno);
}

static void expect_answer(const cJSON *line, const char *id, const char *object, const char *text)
{
    if (!cJSON_IsNull(cJSON_GetObjectItem(line, "error")))
        fail_msg("%s: unexpected error %s", id, cJSON_PrintUnformatted(cJSON_GetObjectItem(line, "error")));
    assert_string_equal(custom_id(line), id);
    assert_int_equal(cJSON_GetObjectItem(cJSON_GetObjectItem(line, "response"), "status_code")->valueint, 200);
    assert_string_equal(cJSON_GetObjectItem(body_of(line), "object")->valuestring, object);
    assert_string_equal(cJSON_GetObjectItem(body_of(line), "model")->valuestring, "stories260K.gguf");
    assert_string_equal(answer_text(line), text);
    assert_int_equal(usage_of(line, "total_tokens"),
                     usage_of(line, "prompt_tokens") + usage_of(line, "completion_tokens"));
}

static uint64_t fnv1a(const char *s)
{
    uint64_t h = 1469598103934665603ull;
    for (; *s; s++) {
        h ^= (unsigned char)*s;
        h *= 1099511628211ull;
    }
    return h;
}

/* ---- lines ------------------------------------------------------------------------------ */

static void test_lines(void **state)
{
    (void)state;
    if (!g_model)
        skip();
    assert_int_equal(fe_up(g_instance, g_model, "--slots 4 --ctx 64"), 0);
    char in[4200], out[4200], err[4200];
    path_of(in, sizeof in, "in.jsonl");
    path_of(out, sizeof out, "out.jsonl");
    path_of(err, sizeof err, "err.txt");
    char long_prompt[600] = "[", full_prompt[600] = "[";
    for (int i = 0; i < 70; i++)
        strcat(long_prompt, i ? ",1" : "1");
    strcat(long_prompt, "]");
    for (int i = 0; i < 64; i++) /* exactly the context: the last position's logits still give a token */
        strcat(full_prompt, i ? ",1" : "1");
    strcat(full_prompt, "]");
    /* the first token of the greedy answer, to ban with logit_bias */
    char greedy[4096];
    int32_t t0 = -1;
    greta_client_request gq = {.max_tokens = 12};
    assert_int_equal(fe_reference_req(g_instance, NULL, "Once upon a time", 0, &gq, greedy, sizeof greedy, NULL, &t0),
                     0);
    assert_true(t0 >= 0);
    char input[8192];
    snprintf(
        input, sizeof input,
        "{\"custom_id\":\"greedy\",\"method\":\"POST\",\"url\":\"/v1/completions\",\"body\":{\"prompt\":\"Once upon "
        "a time\",\"max_tokens\":12,\"temperature\":0}}\n"
        "{\"custom_id\":\"chat\",\"method\":\"POST\",\"url\":\"/v1/chat/completions\",\"body\":{\"messages\":["
        "{\"role\":\"user\",\"content\":\"The cat\"}],\"max_tokens\":10,\"temperature\":0}}\n"
        "   \n"
        "{not json\n"
        "{\"method\":\"POST\",\"url\":\"/v1/completions\",\"body\":{\"prompt\":\"x\"}}\n"
        "{\"custom_id\":\"greedy\",\"method\":\"POST\",\"url\":\"/v1/completions\",\"body\":{\"prompt\":\"x\"}}\n"
        "{\"custom_id\":\"emb\",\"method\":\"POST\",\"url\":\"/v1/embeddings\",\"body\":{\"input\":\"x\"}}\n"
        "{\"custom_id\":\"hot\",\"method\":\"POST\",\"url\":\"/v1/completions\",\"body\":{\"prompt\":\"x\","
        "\"temperature\":3}}\n"
        "{\"custom_id\":\"vocab\",\"method\":\"POST\",\"url\":\"/v1/completions\",\"body\":{\"prompt\":[1,600]}}\n"
        "{\"custom_id\":\"long\",\"method\":\"POST\",\"url\":\"/v1/completions\",\"body\":{\"prompt\":%s}}\n"
        "{\"custom_id\":\"stop\",\"method\":\"POST\",\"url\":\"/v1/completions\",\"body\":{\"prompt\":\"Lily\","
        "\"max_tokens\":40,\"temperature\":0,\"stop\":[\".\"]}}\n"
        "{\"custom_id\":\"seeded\",\"method\":\"POST\",\"url\":\"/v1/chat/completions\",\"body\":{\"messages\":["
        "{\"role\":\"user\",\"content\":\"The dog\"}],\"max_tokens\":10,\"temperature\":0.8,\"top_p\":0.9,"
        "\"seed\":11}}\n"
        "{\"custom_id\":\"noseed\",\"method\":\"POST\",\"url\":\"/v1/completions\",\"body\":{\"prompt\":\"Tom\","
        "\"max_tokens\":8}}\n"
        "{\"custom_id\":\"tool\",\"method\":\"POST\",\"url\":\"/v1/chat/completions\",\"body\":{\"messages\":["
        "{\"role\":\"tool\",\"content\":\"x\"}]}}\n"
        "[1,2,3]\n"
        "{\"custom_id\":\"penalty\",\"method\":\"POST\",\"url\":\"/v1/completions\",\"body\":{\"prompt\":"
        "\"Once upon a time\",\"max_tokens\":40,\"temperature\":0,\"frequency_penalty\":2,"
        "\"presence_penalty\":0.5}}\n"
        "{\"custom_id\":\"bias\",\"method\":\"POST\",\"url\":\"/v1/completions\",\"body\":{\"prompt\":"
        "\"Once upon a time\",\"max_tokens\":12,\"temperature\":0,\"logit_bias\":{\"%d\":-100}}}\n"
        "{\"custom_id\":\"badbias\",\"method\":\"POST\",\"url\":\"/v1/completions\",\"body\":{\"prompt\":"
        "\"x\",\"logit_bias\":{\"x\":1}}}\n"
        "{\"custom_id\":\"full\",\"method\":\"POST\",\"url\":\"/v1/completions\",\"body\":{\"prompt\":%s,"
        "\"temperature\":0}}\n",
        long_prompt, (int)t0, full_prompt);
    write_text(in, input);
    assert_int_equal(
        fe_run("%s batch %s -o %s --instance %s --concurrency 4 2>%s", GRETA_BIN, in, out, g_instance, err), 0);
    int n = 0;
    cJSON *lines = read_lines(out, &n);
    assert_int_equal(n, 18); /* one per non-blank input line */
    char ref[4096];
    uint32_t nref = 0;
    assert_int_equal(fe_reference(g_instance, NULL, "Once upon a time", 0, 12, 0, 0, 0, 0, 0, ref, sizeof ref, &nref),
                     0);
    const cJSON *l = cJSON_GetArrayItem(lines, 0);
    expect_answer(l, "greedy", "text_completion", ref);
    assert_int_equal(usage_of(l, "completion_tokens"), 12);
    assert_int_equal(usage_of(l, "prompt_tokens"), 5); /* BOS + 4 */
    assert_string_equal(finish_of(l), "length");
    assert_int_equal(fe_reference(g_instance, NULL, "The cat", 1, 10, 0, 0, 0, 0, 0, ref, sizeof ref, NULL), 0);
    l = cJSON_GetArrayItem(lines, 1);
    expect_answer(l, "chat", "chat.completion", ref);
    assert_string_equal(
        cJSON_GetObjectItem(
            cJSON_GetObjectItem(cJSON_GetArrayItem(cJSON_GetObjectItem(body_of(l), "choices"), 0), "message"), "role")
            ->valuestring,
        "assistant");
    expect_error(cJSON_GetArrayItem(lines, 2), NULL, "invalid_json", "line 4: not valid JSON", 4);
    expect_error(cJSON_GetArrayItem(lines, 3), NULL, "invalid_request", "custom_id: missing", 5);
    expect_error(cJSON_GetArrayItem(lines, 4), "greedy", "duplicate_custom_id", "already used on line 1", 6);
    expect_error(cJSON_GetArrayItem(lines, 5), "emb", "unsupported_url", "/v1/embeddings", 7);
    expect_error(cJSON_GetArrayItem(lines, 6), "hot", "invalid_request", "body.temperature", 8);
    expect_error(cJSON_GetArrayItem(lines, 7), "vocab", "invalid_request", "outside the vocabulary", 9);
    expect_error(cJSON_GetArrayItem(lines, 8), "long", "prompt_too_long", "the context holds 64", 10);
    /* stop: the text ends before the first "." of the unstopped answer */
    assert_int_equal(fe_reference(g_instance, NULL, "Lily", 0, 40, 0, 0, 0, 0, 0, ref, sizeof ref, NULL), 0);
    char *dot = strchr(ref, '.');
    assert_non_null(dot);
    *dot = '\0';
    l = cJSON_GetArrayItem(lines, 9);
    expect_answer(l, "stop", "text_completion", ref);
    assert_string_equal(finish_of(l), "stop");
    assert_int_equal(fe_reference(g_instance, NULL, "The dog", 1, 10, 0.8f, 0, 0.9f, 0, 11, ref, sizeof ref, NULL), 0);
    expect_answer(cJSON_GetArrayItem(lines, 10), "seeded", "chat.completion", ref);
    /* no seed: the seed is the FNV-1a hash of custom_id, temperature 1 */
    assert_int_equal(
        fe_reference(g_instance, NULL, "Tom", 0, 8, 1.0f, 0, 1.0f, 0, fnv1a("noseed"), ref, sizeof ref, NULL), 0);
    expect_answer(cJSON_GetArrayItem(lines, 11), "noseed", "text_completion", ref);
    expect_error(cJSON_GetArrayItem(lines, 12), "tool", "invalid_request", "body.messages[0].role", 14);
    expect_error(cJSON_GetArrayItem(lines, 13), NULL, "invalid_request", "must be a JSON object", 15);
    /* penalties over the whole history change the greedy answer, as in the client library */
    greta_client_request pq = {
        .max_tokens = 40, .frequency_penalty = 2.0f, .presence_penalty = 0.5f, .repeat_last_n = -1};
    assert_int_equal(fe_reference_req(g_instance, NULL, "Once upon a time", 0, &pq, ref, sizeof ref, NULL, NULL), 0);
    expect_answer(cJSON_GetArrayItem(lines, 14), "penalty", "text_completion", ref);
    char plain[4096];
    assert_int_equal(
        fe_reference(g_instance, NULL, "Once upon a time", 0, 40, 0, 0, 0, 0, 0, plain, sizeof plain, NULL), 0);
    assert_string_not_equal(ref, plain);
    /* logit_bias -100 on the greedy first token: another answer, as in the client library */
    greta_client_bias ban = {t0, -100.0f};
    greta_client_request bq = {.max_tokens = 12, .bias = &ban, .n_bias = 1};
    assert_int_equal(fe_reference_req(g_instance, NULL, "Once upon a time", 0, &bq, ref, sizeof ref, NULL, NULL), 0);
    expect_answer(cJSON_GetArrayItem(lines, 15), "bias", "text_completion", ref);
    assert_string_not_equal(ref, greedy);
    expect_error(cJSON_GetArrayItem(lines, 16), "badbias", "invalid_request", "body.logit_bias: key \"x\"", 18);
    /* a prompt of exactly the 64 positions: one token, from the last position's logits */
    l = cJSON_GetArrayItem(lines, 17);
    assert_int_equal(usage_of(l, "prompt_tokens"), 64);
    assert_int_equal(usage_of(l, "completion_tokens"), 1);
    assert_string_equal(finish_of(l), "length");
    cJSON_Delete(lines);
    char *e = read_text(err);
    assert_non_null(strstr(e, "18 requests: 8 answered, 10 errors"));
    assert_null(strstr(e, "ETA")); /* no progress bar when stderr is a file */
    free(e);
    char journal[4300];
    snprintf(journal, sizeof journal, "%s.journal", out);
    assert_int_equal(access(journal, F_OK), -1); /* removed once the output is written */

    /* usage and file errors */
    assert_int_equal(fe_run("%s batch %s --instance %s", GRETA_BIN, in, g_instance), 2);
    assert_int_equal(fe_run("%s batch -o %s --instance %s", GRETA_BIN, out, g_instance), 2);
    assert_int_equal(fe_run("%s batch %s -o %s --concurrency 0", GRETA_BIN, in, out), 2);
    assert_int_equal(fe_run("%s batch %s/none.jsonl -o %s --instance %s", GRETA_BIN, g_dir, out, g_instance), 1);
    assert_int_equal(fe_run("%s batch %s -o %s/no/such/dir/out.jsonl --instance %s", GRETA_BIN, in, g_dir, g_instance),
                     1);
    const char *other = greta_testdata_find("llama-2-tiny-random.gguf");
    if (other) {
        assert_int_equal(
            fe_run("%s batch %s -o %s --instance %s -m %s 2>%s", GRETA_BIN, in, out, g_instance, other, err), 1);
        e = read_text(err);
        assert_non_null(strstr(e, "serves"));
        free(e);
    }
    /* a journal of another input is refused, not mixed in */
    snprintf(journal, sizeof journal, "%s.journal", out);
    write_text(journal, "{\"greta_batch_journal\":1,\"job\":\"input 3 bytes fnv1a 0000000000000000, model x\"}\n");
    assert_int_equal(fe_run("%s batch %s -o %s --instance %s 2>%s", GRETA_BIN, in, out, g_instance, err), 1);
    e = read_text(err);
    assert_non_null(strstr(e, "belongs to another job"));
    free(e);
    unlink(journal);
}

/* ---- concurrency ---------------------------------------------------------------------------- */

static const char *const prompts[] = {"Once upon a time", "The cat",  "Lily",     "Tom was", "One day", "The sun",
                                      "A little bird",    "The dog",  "Sara",     "The car", "Ben",     "In the park",
                                      "The girl",         "Mom said", "The tree", "A big"};

static void write_jobs(const char *path, int n, int max_tokens)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    for (int i = 0; i < n; i++) {
        const char *p = prompts[i % 16];
        int mt = max_tokens + (i % 4) * 6; /* staggered ends: some request is always in flight */
        if (i % 2 == 0)                    /* greedy completion */
            fprintf(f,
                    "{\"custom_id\":\"req-%d\",\"method\":\"POST\",\"url\":\"/v1/completions\",\"body\":{\"prompt\":"
                    "\"%s\",\"max_tokens\":%d,\"temperature\":0}}\n",
                    i, p, mt);
        else /* seeded chat at temperature 0.8 */
            fprintf(f,
                    "{\"custom_id\":\"req-%d\",\"method\":\"POST\",\"url\":\"/v1/chat/completions\",\"body\":{"
                    "\"messages\":[{\"role\":\"user\",\"content\":\"%s\"}],\"max_tokens\":%d,\"temperature\":0.8,"
                    "\"seed\":%d}}\n",
                    i, p, mt, 100 + i);
    }
    fclose(f);
}

/* Same custom_ids in the same order with the same choices, usage and errors. */
static void same_answers(const char *a_path, const char *b_path, int want_n)
{
    int na = 0, nb = 0;
    cJSON *a = read_lines(a_path, &na), *b = read_lines(b_path, &nb);
    assert_int_equal(na, want_n);
    assert_int_equal(nb, want_n);
    for (int i = 0; i < na; i++) {
        const cJSON *x = cJSON_GetArrayItem(a, i), *y = cJSON_GetArrayItem(b, i);
        assert_string_equal(custom_id(x), custom_id(y));
        assert_true(cJSON_IsNull(cJSON_GetObjectItem(x, "error")));
        assert_true(cJSON_IsNull(cJSON_GetObjectItem(y, "error")));
        if (!cJSON_Compare(cJSON_GetObjectItem(body_of(x), "choices"), cJSON_GetObjectItem(body_of(y), "choices"), 1) ||
            !cJSON_Compare(cJSON_GetObjectItem(body_of(x), "usage"), cJSON_GetObjectItem(body_of(y), "usage"), 1))
            fail_msg("%s differs:\n  %s\n  %s", custom_id(x), cJSON_PrintUnformatted(body_of(x)),
                     cJSON_PrintUnformatted(body_of(y)));
    }
    cJSON_Delete(a);
    cJSON_Delete(b);
}

static int summary_max_batch(const char *err_path)
{
    char *e = read_text(err_path);
    const char *k = strstr(e, "max batch ");
    int mb = k ? atoi(k + strlen("max batch ")) : -1;
    free(e);
    return mb;
}

static void test_concurrency(void **state)
{
    (void)state;
    if (!g_model)
        skip();
    assert_int_equal(fe_up(g_instance, g_model, "--slots 8"), 0);
    char in[4200], o1[4200], o8[4200], o16[4200], e1[4200], e8[4200], e16[4200];
    path_of(in, sizeof in, "in.jsonl");
    path_of(o1, sizeof o1, "c1.jsonl");
    path_of(o8, sizeof o8, "c8.jsonl");
    path_of(o16, sizeof o16, "c16.jsonl");
    path_of(e1, sizeof e1, "c1.err");
    path_of(e8, sizeof e8, "c8.err");
    path_of(e16, sizeof e16, "c16.err");
    write_jobs(in, 16, 120); /* long enough that requests overlap on a loaded machine too */
    assert_int_equal(fe_run("%s batch %s -o %s --instance %s --concurrency 1 2>%s", GRETA_BIN, in, o1, g_instance, e1),
                     0);
    assert_int_equal(summary_max_batch(e1), 1);
    assert_int_equal(fe_worker_max_batch(g_instance), 1); /* one at a time: never a shared step */
    /* Whether two requests share a step depends on the scheduler: on a
     * loaded 2-core machine one run in ten of 24-token jobs saw none (CI
     * once did). With 120-token jobs none has been seen; a run that still
     * shares no step is repeated, twice at most: batching that does not
     * work fails all three. */
    int mb = -1, wmb = -1;
    for (int attempt = 0; attempt < 3 && mb < 2; attempt++) {
        assert_int_equal(
            fe_run("%s batch %s -o %s --instance %s --concurrency 8 2>%s", GRETA_BIN, in, o8, g_instance, e8), 0);
        mb = summary_max_batch(e8);
        wmb = fe_worker_max_batch(g_instance);
        fprintf(stderr, "concurrency 8, run %d: max batch %d seen by the client, %d by the worker\n", attempt + 1, mb,
                wmb);
    }
    assert_true(mb >= 2 && mb <= 8);
    assert_true(wmb >= mb);
    same_answers(o1, o8, 16); /* decoding together changes no answer */
    /* more than the slots: capped */
    assert_int_equal(
        fe_run("%s batch %s -o %s --instance %s --concurrency 16 2>%s", GRETA_BIN, in, o16, g_instance, e16), 0);
    char *e = read_text(e16);
    assert_non_null(strstr(e, "has 8 slots: --concurrency 16 runs as 8"));
    assert_null(strstr(e, "ETA"));
    free(e);
    same_answers(o1, o16, 16);

    /* on a terminal: the progress bar with rate and ETA */
    char o3[4200];
    path_of(o3, sizeof o3, "c3.jsonl");
    char *argv[] = {GRETA_BIN, "batch", in, "-o", o3, "--instance", g_instance, "--concurrency", "4", NULL};
    pty_proc p;
    assert_int_equal(pty_spawn(&p, argv, NULL), 0);
    assert_true(pty_expect(&p, "req/s  ETA ", 15000) > 0);
    assert_true(pty_expect(&p, "] 16/16", 15000) > 0);
    assert_int_equal(pty_wait(&p, 15000), 0);
    pty_close(&p);
    same_answers(o1, o3, 16);
}

/* ---- resume ------------------------------------------------------------------------------- */

static pid_t spawn_batch(const char *in, const char *out, const char *err, int temporary)
{
    char conc[] = "4";
    char *argv[16];
    int a = 0;
    argv[a++] = GRETA_BIN;
    argv[a++] = "batch";
    argv[a++] = (char *)in;
    argv[a++] = "-o";
    argv[a++] = (char *)out;
    argv[a++] = "--instance";
    argv[a++] = g_instance;
    argv[a++] = "--concurrency";
    argv[a++] = conc;
    if (temporary) {
        argv[a++] = "-m";
        argv[a++] = (char *)g_model;
    }
    argv[a] = NULL;
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0) {
        int fd = open(err, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        if (fd >= 0)
            dup2(fd, 2);
        int nul = open("/dev/null", O_RDONLY);
        if (nul >= 0)
            dup2(nul, 0);
        execv(argv[0], argv);
        _exit(127);
    }
    return pid;
}

/* Occurrences of needle in the whole lines of path: a record torn by the
 * kill (the last line, without its newline) is cut when the journal is
 * opened again, so it is not counted here either. */
static int count_in(const char *path, const char *needle)
{
    size_t n;
    char *s = greta_read_file(path, &n);
    char *end = s ? strrchr(s, '\n') : NULL;
    if (s)
        *(end ? end + 1 : s) = '\0';
    int c = 0;
    for (const char *p = s; p && (p = strstr(p, needle)) != NULL; p += strlen(needle))
        c++;
    free(s);
    return c;
}

static void resume_case(int temporary)
{
    enum { N = 20, TOKENS = 160 }; /* long enough that a loaded machine still sees the job half done */
    if (!temporary)
        assert_int_equal(fe_up(g_instance, g_model, "--slots 4"), 0);
    char in[4200], ref[4200], out[4200], err[4200], journal[4300];
    path_of(in, sizeof in, "in.jsonl");
    path_of(ref, sizeof ref, "ref.jsonl");
    path_of(out, sizeof out, "out.jsonl");
    path_of(err, sizeof err, "err.txt");
    snprintf(journal, sizeof journal, "%s.journal", out);
    write_jobs(in, N, TOKENS);
    /* the uninterrupted run */
    pid_t pid = spawn_batch(in, ref, err, temporary);
    int st = 0;
    waitpid(pid, &st, 0);
    assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    if (temporary)
        assert_true(fe_wait_down(g_instance, 5000));

    int answered = 0;
    unsigned k0 = 0;
    if (temporary) {
        /* SIGTERM (as Ctrl-C): the requests in flight finish and are journaled, exit 1 */
        k0 = 1 + (unsigned)(rand_r(&g_rand) % 4);
        pid = spawn_batch(in, out, err, temporary);
        for (int waited = 0; waited < 15000 && count_in(journal, "\"out\"") < (int)k0; waited += 2)
            usleep(2000);
        kill(pid, SIGTERM);
        waitpid(pid, &st, 0);
        assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 1);
        char *e = read_text(err);
        assert_non_null(strstr(e, "interrupted;"));
        free(e);
        answered = count_in(journal, "\"out\"");
        fprintf(stderr, "SIGTERM of greta batch at %d of %d answered (target %u)\n", answered, N, k0);
        assert_int_equal(count_in(journal, "\"rid\""), answered); /* nothing left in flight */
        assert_int_equal(access(out, F_OK), -1);
        assert_true(fe_wait_down(g_instance, 5000));
    }

    /* the interrupted one: kill -9 once K answers are journaled */
    unsigned k = (unsigned)answered + 2 + (unsigned)(rand_r(&g_rand) % (N - 8 - answered));
    pid = spawn_batch(in, out, err, temporary);
    for (int waited = 0; waited < 15000 && (answered = count_in(journal, "\"out\"")) < (int)k; waited += 2)
        usleep(2000);
    kill(pid, SIGKILL);
    waitpid(pid, &st, 0);
    assert_true(WIFSIGNALED(st));
    answered = count_in(journal, "\"out\"");
    int in_flight = count_in(journal, "\"rid\"") - answered;
    fprintf(stderr, "kill -9 of greta batch (pid %d) at step: %d of %d answered (target %u), %d in flight%s\n",
            (int)pid, answered, N, k, in_flight, temporary ? "" : " in the running instance");
    assert_true(answered >= (int)k && answered < N);
    assert_int_equal(access(out, F_OK), -1); /* no output before the job is done */
    if (temporary)
        assert_true(fe_wait_down(g_instance, 10000)); /* the watchdog took it down */
    else
        assert_true(fe_is_up(g_instance));

    /* the same command again finishes the job */
    pid = spawn_batch(in, out, err, temporary);
    waitpid(pid, &st, 0);
    char *e = read_text(err);
    fprintf(stderr, "rerun (status %d): %s", st, e); /* before the check: a failure shows why */
    assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    char want[4500];
    snprintf(want, sizeof want, "resuming from %s: %d of %d requests already answered", journal, answered, N);
    assert_non_null(strstr(e, want));
    snprintf(want, sizeof want, "this run: %d requests", N - answered);
    assert_non_null(strstr(e, want));
    free(e);
    assert_int_equal(access(journal, F_OK), -1);
    same_answers(ref, out, N);
    /* each custom_id exactly once */
    int n = 0;
    cJSON *lines = read_lines(out, &n);
    for (int i = 0; i < n; i++) {
        char id[32];
        snprintf(id, sizeof id, "req-%d", i);
        assert_string_equal(custom_id(cJSON_GetArrayItem(lines, i)), id);
    }
    cJSON_Delete(lines);
    if (temporary) {
        assert_true(fe_wait_down(g_instance, 5000));
        /* the down lock (frontend/instance.c) the watchdogs held is gone with them */
        char rundir[GRETA_PATH_MAX], lock[GRETA_PATH_MAX + 64];
        assert_int_equal(greta_runtime_dir(g_instance, rundir, sizeof rundir, NULL), 0);
        *strrchr(rundir, '/') = '\0';
        snprintf(lock, sizeof lock, "%s/.%s.down", rundir, g_instance);
        assert_int_equal(access(lock, F_OK), -1);
    }
}

static void test_resume_running(void **state)
{
    (void)state;
    if (!g_model)
        skip();
    resume_case(0);
}

static void test_resume_temporary(void **state)
{
    (void)state;
    if (!g_model)
        skip();
    resume_case(1);
}

int main(int argc, char **argv)
{
    g_group = argc > 1 ? argv[1] : "lines";
    static const struct {
        const char *name;
        CMUnitTestFunction fn;
    } groups[] = {
        {"lines", test_lines},
        {"concurrency", test_concurrency},
        {"resume-running", test_resume_running},
        {"resume-temporary", test_resume_temporary},
    };
    for (size_t i = 0; i < sizeof groups / sizeof groups[0]; i++)
        if (!strcmp(g_group, groups[i].name)) {
            const struct CMUnitTest t[] = {{groups[i].name, groups[i].fn, setup, teardown, NULL}};
            return cmocka_run_group_tests_name(groups[i].name, t, NULL, NULL);
        }
    fprintf(stderr, "test_greta_batch: unknown group '%s'\n", g_group);
    return 2;
}
