/* test_trace.c - Chrome trace writer, the merge and the per-stage table. */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "test_util.h"

#include "common/trace.h"

static void test_off_is_null(void **state)
{
    (void)state;
    greta_error err = {0};
    greta_trace *t = (greta_trace *)0x1;
    assert_int_equal(greta_trace_open(NULL, "x", &t, &err), 0);
    assert_null(t);
    uint64_t t0 = GRETA_TRACE_BEGIN(t);
    assert_true(t0 == 0); /* no clock read when off */
    GRETA_TRACE_END(t, "sample", t0, 1, NULL, 0);
    greta_trace_span(NULL, "x", 0, 1, 0, NULL, 0);
    assert_true(greta_trace_count(t) == 0);
    greta_trace_close(&t);

    unsetenv("GRETA_TRACE");
    assert_null(greta_trace_dir(NULL));
    assert_null(greta_trace_dir(""));
    setenv("GRETA_TRACE", "/tmp/from-env", 1);
    assert_string_equal(greta_trace_dir(NULL), "/tmp/from-env");
    assert_string_equal(greta_trace_dir("/tmp/flag"), "/tmp/flag");
    unsetenv("GRETA_TRACE");
}

/* Writes 100 spans of 1..100 us named `name`, plus one other span. */
static void write_stage(const char *dir, const char *stage, const char *name, uint64_t rid)
{
    greta_trace *t = NULL;
    greta_error err = {0};
    assert_int_equal(greta_trace_open(dir, stage, &t, &err), 0);
    assert_non_null(t);
    uint64_t base = greta_trace_now_ns();
    for (uint64_t k = 1; k <= 100; k++)
        greta_trace_span(t, name, base + k * 1000000, base + k * 1000000 + k * 1000, rid, "step", (int64_t)k);
    uint64_t t0 = GRETA_TRACE_BEGIN(t);
    assert_true(t0 >= base);
    GRETA_TRACE_END(t, "deliver", t0, rid, NULL, 0);
    assert_true(greta_trace_count(t) == 101);
    greta_trace_close(&t);
    assert_null(t);
}

static void test_merge_and_table(void **state)
{
    (void)state;
    const char *dir = greta_test_tmpdir("trace_merge");
    char cmd[4200];
    snprintf(cmd, sizeof cmd, "rm -f %s/*.json", dir);
    assert_int_equal(system(cmd), 0);

    /* two processes, two stages, one request id */
    pid_t child = fork();
    assert_true(child >= 0);
    if (child == 0) {
        write_stage(dir, "sampler", "sample", 0xabcdefull);
        _exit(0);
    }
    int status;
    waitpid(child, &status, 0);
    assert_int_equal(WEXITSTATUS(status), 0);
    write_stage(dir, "gpu-worker", "decode_step", 0xabcdefull);

    /* a torn file, as a killed stage leaves it */
    char path[4200];
    snprintf(path, sizeof path, "%s/tokenizer-999999.trace.json", dir);
    FILE *f = fopen(path, "w");
    fprintf(f, "[\n{\"name\":\"process_name\",\"ph\":\"M\",\"pid\":999999,\"tid\":1,\"args\":{\"name\":\"tokenizer\"}}\n"
               ",{\"name\":\"detokenize\",\"cat\":\"tokenizer\",\"ph\":\"X\",\"ts\":5.000,\"dur\":2.500,\"pid\":999999,"
               "\"tid\":1,\"args\":{}}\n"
               ",{\"name\":\"detokenize\",\"cat\":\"tok");
    fclose(f);

    char out[4200];
    snprintf(out, sizeof out, "%s/merged.json", dir);
    greta_trace_stat *st = NULL;
    size_t n = 0, skipped = 0;
    greta_error err = {0};
    assert_int_equal(greta_trace_merge(dir, out, &st, &n, &skipped, &err), 0);
    assert_int_equal(skipped, 1);
    assert_int_equal(n, 5);
    /* sorted by stage, then name */
    assert_string_equal(st[0].stage, "gpu-worker");
    assert_string_equal(st[0].name, "decode_step");
    assert_string_equal(st[1].name, "deliver");
    assert_string_equal(st[2].stage, "sampler");
    assert_string_equal(st[2].name, "deliver");
    assert_string_equal(st[3].stage, "sampler");
    assert_string_equal(st[3].name, "sample");
    assert_string_equal(st[4].stage, "tokenizer");
    assert_int_equal(st[4].count, 1);
    assert_true(st[4].total_us == 2.5);
    for (int i = 0; i < 4; i += 3) {
        assert_int_equal(st[i].count, 100);
        assert_true(st[i].total_us == 5050.0);
        assert_true(st[i].mean_us == 50.5);
        assert_true(st[i].p50_us == 50.0);
        assert_true(st[i].p99_us == 99.0);
    }
    char table[4096];
    FILE *mf = fmemopen(table, sizeof table, "w");
    greta_trace_print_table(mf, st, n);
    fclose(mf);
    assert_non_null(strstr(table, "p99_us"));
    assert_non_null(strstr(table, "sampler      sample                100        5.050       50.5       50.0       99.0"));
    free(st);

    /* the merged file is one JSON object with every event */
    size_t len;
    char *text = greta_read_file(out, &len);
    assert_non_null(text);
    cJSON *root = cJSON_Parse(text);
    assert_non_null(root);
    cJSON *evs = cJSON_GetObjectItemCaseSensitive(root, "traceEvents");
    assert_true(cJSON_IsArray(evs));
    assert_int_equal(cJSON_GetArraySize(evs), 2 * 102 + 2);
    int with_rid = 0, pids = 0;
    cJSON *ev;
    cJSON_ArrayForEach(ev, evs)
    {
        cJSON *args = cJSON_GetObjectItemCaseSensitive(ev, "args");
        cJSON *rid = cJSON_GetObjectItemCaseSensitive(args, "request_id");
        if (cJSON_IsString(rid) && !strcmp(rid->valuestring, "0000000000abcdef"))
            with_rid++;
        if (!strcmp(cJSON_GetObjectItemCaseSensitive(ev, "ph")->valuestring, "M"))
            pids++;
    }
    assert_int_equal(with_rid, 2 * 101);
    assert_int_equal(pids, 3); /* one pid per stage */
    cJSON_Delete(root);
    free(text);

    /* a file that is not a trace is an error naming it */
    snprintf(path, sizeof path, "%s/bogus-1.trace.json", dir);
    f = fopen(path, "w");
    fprintf(f, "hello\n");
    fclose(f);
    assert_int_equal(greta_trace_merge(dir, out, &st, &n, &skipped, &err), GRETA_ERR_FORMAT);
    assert_non_null(strstr(err.msg, "bogus-1.trace.json"));
    unlink(path);

    /* an empty directory */
    const char *empty = greta_test_tmpdir("trace_empty");
    assert_int_equal(greta_trace_merge(empty, NULL, &st, &n, &skipped, &err), GRETA_ERR_NOT_FOUND);
}

/* A process killed mid-run leaves no ']' but everything flushed is usable. */
static void test_killed_writer(void **state)
{
    (void)state;
    const char *dir = greta_test_tmpdir("trace_killed");
    char cmd[4200];
    snprintf(cmd, sizeof cmd, "rm -f %s/*.json", dir);
    assert_int_equal(system(cmd), 0);
    pid_t child = fork();
    if (child == 0) {
        greta_trace *t = NULL;
        greta_trace_open(dir, "sampler", &t, NULL);
        for (int k = 0; k < 10; k++)
            greta_trace_span(t, "sample", 1000, 2000, 7, NULL, 0);
        greta_trace_flush(t);
        _exit(0); /* no close: no closing bracket */
    }
    int status;
    waitpid(child, &status, 0);
    greta_trace_stat *st = NULL;
    size_t n = 0, skipped = 0;
    greta_error err = {0};
    assert_int_equal(greta_trace_merge(dir, NULL, &st, &n, &skipped, &err), 0);
    assert_int_equal(n, 1);
    assert_int_equal(st[0].count, 10);
    assert_true(st[0].p50_us == 1.0);
    assert_int_equal(skipped, 0);
    free(st);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_off_is_null),
        cmocka_unit_test(test_merge_and_table),
        cmocka_unit_test(test_killed_writer),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
