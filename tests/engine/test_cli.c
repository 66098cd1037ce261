/* test_cli.c - `greta run` and `greta bench` as a user runs them (the greta
 * binary is argv[1]): greedy text of the default model (in process and through
 * a temporary pipeline instance), and in process (--inproc) the default-model
 * lookup, every flag's effect, the memory check, bad arguments, and the
 * bench JSON (its greedy tokens are those of `greta run`; the commit; with
 * argument "gpu", the GPU device fields of `bench --backend gpu`). */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cJSON.h>

#include "test_util.h"

/* snprintf that fails the test instead of truncating. */
__attribute__((format(printf, 3, 4))) static void fmt(char *buf, size_t n, const char *f, ...)
{
    va_list ap;
    va_start(ap, f);
    int k = vsnprintf(buf, n, f, ap);
    va_end(ap);
    if (k < 0 || (size_t)k >= n)
        fail_msg("a formatted string does not fit %zu bytes", n);
}

static const char *greta_bin;
static char tmp[4096];

typedef struct result {
    int rc;
    char *out, *err;
} result;

static void result_free(result *r)
{
    free(r->out);
    free(r->err);
}

/* Runs `env ENV greta ARGS` with stdout and stderr captured. */
static result run(const char *env, const char *args)
{
    result r = {0};
    char cmd[32768];
    fmt(cmd, sizeof cmd, "env %s '%s' %s < /dev/null", env ? env : "", greta_bin, args);
    r.rc = greta_test_run_cmd(cmd, tmp, &r.out, &r.err);
    return r;
}

static char *expected_text(void)
{
    const char *p = greta_testdata_find("stories260K-greedy.json");
    if (!p)
        return NULL;
    char *text = greta_read_file(p, NULL);
    cJSON *j = cJSON_Parse(text);
    free(text);
    assert_non_null(j);
    char *s = strdup(cJSON_GetObjectItem(j, "expected_text")->valuestring);
    cJSON_Delete(j);
    return s;
}

static char model[4096];

static int setup(void **state)
{
    const char *m = greta_testdata_find("stories260K.gguf");
    if (m)
        fmt(model, sizeof model, "%s", m);
    return 0;
}

#define NEED_MODEL()        \
    if (!model[0]) {        \
        GRETA_TESTDATA_OR_SKIP(m_, "stories260K.gguf"); \
        (void)m_;           \
    }

/* ---- greta run ------------------------------------------------------------------ */

static void test_run_greedy_default_model(void **state)
{
    NEED_MODEL();
    char *want = expected_text();
    assert_non_null(want);
    char *with_nl = malloc(strlen(want) + 2);
    sprintf(with_nl, "%s\n", want);
    /* no -m: found in the test data folder */
    result r = run("GRETA_MODEL_DIR=/nonexistent", "run --inproc -n 200 --temp 0");
    assert_int_equal(r.rc, 0);
    assert_string_equal(r.out, with_nl);
    ASSERT_CONTAINS(r.err, "memory plan");
    ASSERT_CONTAINS(r.err, "load time");
    ASSERT_CONTAINS(r.err, "prompt eval time =");
    ASSERT_CONTAINS(r.err, "/     1 tokens");
    ASSERT_CONTAINS(r.err, "eval time =");
    ASSERT_CONTAINS(r.err, "/   199 runs");
    ASSERT_CONTAINS(r.err, "generated =        200 tokens");
    ASSERT_CONTAINS(r.err, "tokens per second");
    result_free(&r);
    /* the pipeline (a temporary instance of the default model) gives the same bytes;
     * tests/frontend/test_run_pipeline.c covers it in depth */
    char args[256];
    fmt(args, sizeof args, "run --instance c%d-greedy -n 200 --temp 0", (int)getpid());
    r = run("GRETA_MODEL_DIR=/nonexistent GRETA_HEARTBEAT_MS=50", args);
    assert_int_equal(r.rc, 0);
    assert_string_equal(r.out, with_nl);
    ASSERT_CONTAINS(r.err, "temporary");
    ASSERT_CONTAINS(r.err, "generated =        200 tokens");
    result_free(&r);
    free(with_nl);
    free(want);
}

static void test_run_default_model_lookup(void **state)
{
    NEED_MODEL();
    result r = run("GRETA_MODEL_DIR=/nonexistent/models GRETA_TESTDATA=/nonexistent/data", "run --inproc -n 3");
    assert_int_equal(r.rc, 1);
    ASSERT_CONTAINS(r.err, "deploy/fetch-testdata.sh");
    ASSERT_CONTAINS(r.err, "/nonexistent/models");
    ASSERT_CONTAINS(r.err, "/nonexistent/data");
    result_free(&r);
    /* GRETA_MODEL_DIR is searched first */
    char dir[4200], link[4300], env[4400];
    fmt(dir, sizeof dir, "%s/models", tmp);
    mkdir(dir, 0700);
    fmt(link, sizeof link, "%s/stories260K.gguf", dir);
    unlink(link);
    assert_int_equal(symlink(model, link), 0);
    fmt(env, sizeof env, "GRETA_MODEL_DIR='%s' GRETA_TESTDATA=/nonexistent/data", dir);
    r = run(env, "run --inproc -n 3 --temp 0");
    assert_int_equal(r.rc, 0);
    ASSERT_CONTAINS(r.err, link);
    result_free(&r);
}

static void test_run_threads_and_prompt(void **state)
{
    NEED_MODEL();
    char args[8192];
    fmt(args, sizeof args, "run --inproc -m '%s' -p 'Once upon a time' -n 40 --temp 0 -t 1", model);
    result a = run(NULL, args);
    assert_int_equal(a.rc, 0);
    ASSERT_CONTAINS(a.err, "1 thread)");
    assert_memory_equal(a.out, "Once upon a time", 16);
    assert_true(strlen(a.out) > 40);
    fmt(args, sizeof args, "run --inproc -m '%s' -p 'Once upon a time' -n 40 --temp 0 -t 2", model);
    result b = run(NULL, args);
    assert_int_equal(b.rc, 0);
    ASSERT_CONTAINS(b.err, "2 threads)");
    assert_string_equal(a.out, b.out);
    /* the same prompt from a file */
    char file[4200];
    fmt(file, sizeof file, "%s/prompt.txt", tmp);
    FILE *f = fopen(file, "w");
    assert_non_null(f);
    fputs("Once upon a time", f);
    fclose(f);
    fmt(args, sizeof args, "run --inproc -m '%s' -f '%s' -n 40 --temp 0", model, file);
    result c = run(NULL, args);
    assert_int_equal(c.rc, 0);
    assert_string_equal(a.out, c.out);
    /* the greedy continuation of "Once upon a time" is the one of BOS alone */
    char *want = expected_text();
    assert_memory_equal(a.out, want, 40);
    free(want);
    result_free(&a);
    result_free(&b);
    result_free(&c);
}

static char *run_out(const char *flags)
{
    char args[8192];
    fmt(args, sizeof args, "run --inproc -m '%s' -n 60 %s", model, flags);
    result r = run(NULL, args);
    if (r.rc != 0)
        fail_msg("greta %s failed:\n%s", args, r.err);
    free(r.err);
    return r.out;
}

static void test_run_sampling_flags(void **state)
{
    NEED_MODEL();
    char *greedy = run_out("--temp 0");
    char *s7 = run_out("--temp 0.9 --seed 7");
    char *s7b = run_out("--temp 0.9 --seed 7");
    char *s8 = run_out("--temp 0.9 --seed 8");
    assert_string_equal(s7, s7b);       /* a seed gives the same text */
    assert_string_not_equal(s7, s8);    /* another seed another text */
    assert_string_not_equal(s7, greedy);
    /* each truncation, pushed to its limit, leaves only the best token */
    char *k1 = run_out("--temp 0.9 --seed 7 --top-k 1");
    char *p0 = run_out("--temp 1 --seed 7 --top-k 0 --top-p 0.0001 --min-p 0");
    char *m1 = run_out("--temp 1.5 --seed 7 --top-k 0 --top-p 1 --min-p 1");
    assert_string_equal(k1, greedy);
    assert_string_equal(p0, greedy);
    assert_string_equal(m1, greedy);
    /* and loosened, they let other tokens through */
    char *loose = run_out("--temp 1.5 --seed 7 --top-k 0 --top-p 1 --min-p 0");
    assert_string_not_equal(loose, greedy);
    /* the repeat penalty changes the greedy text (stories260K repeats itself) */
    char *rp = run_out("--temp 0 --repeat-penalty 1.5");
    assert_string_not_equal(rp, greedy);
    char *rp1 = run_out("--temp 0 --repeat-penalty 1.0");
    assert_string_equal(rp1, greedy);
    char *all[] = {greedy, s7, s7b, s8, k1, p0, m1, loose, rp, rp1};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
        free(all[i]);
}

/* Two `greta run` at once with no --instance and no running "default": each
 * starts a temporary instance of its own (default-PID), so neither takes
 * the other's slot or stops the other's instance under it. */
static void test_run_concurrent_temporary(void **state)
{
    NEED_MODEL();
    result st = run(NULL, "status");
    const int default_up = st.rc == 0;
    result_free(&st);
    if (default_up) {
        fprintf(stderr, "SKIPPED: an instance 'default' is running on this machine\n");
        skip();
        return;
    }
    char *want = run_out("--temp 0");
    char cmd[16384];
    fmt(cmd, sizeof cmd,
        "env GRETA_HEARTBEAT_MS=50 sh -c '\"$0\" run -m \"$1\" -n 60 --temp 0 >\"$2/a.out\" 2>\"$2/a.err\" & "
        "\"$0\" run -m \"$1\" -n 60 --temp 0 >\"$2/b.out\" 2>\"$2/b.err\"; rb=$?; wait $!; ra=$?; "
        "echo \"$ra $rb\"' '%s' '%s' '%s' < /dev/null",
        greta_bin, model, tmp);
    char *out = NULL, *err = NULL;
    const int rc = greta_test_run_cmd(cmd, tmp, &out, &err);
    assert_int_equal(rc, 0);
    assert_string_equal(out, "0 0\n"); /* both succeeded */
    char path[4200];
    const char *names[2] = {"a", "b"};
    char inst[2][64];
    for (int k = 0; k < 2; k++) {
        fmt(path, sizeof path, "%s/%s.out", tmp, names[k]);
        char *o = greta_read_file(path, NULL);
        assert_non_null(o);
        assert_string_equal(o, want); /* the in-process text */
        free(o);
        fmt(path, sizeof path, "%s/%s.err", tmp, names[k]);
        char *e = greta_read_file(path, NULL);
        assert_non_null(e);
        const char *p = strstr(e, "starting a temporary one, default-");
        if (!p)
            fail_msg("%s.err has no private temporary instance:\n%s", names[k], e);
        const char *name = strchr(p, ',') + 2; /* "default-PID (model ..." */
        size_t n = 0;
        while (name[n] && name[n] != ' ' && n + 1 < sizeof inst[k])
            n++;
        memcpy(inst[k], name, n);
        inst[k][n] = '\0';
        free(e);
    }
    assert_string_not_equal(inst[0], inst[1]);
    free(out);
    free(err);
    free(want);
}

static void test_run_lengths(void **state)
{
    NEED_MODEL();
    char args[8192];
    fmt(args, sizeof args, "run --inproc -m '%s' -n 5 --temp 0", model);
    result r = run(NULL, args);
    assert_int_equal(r.rc, 0);
    ASSERT_CONTAINS(r.err, "generated =          5 tokens");
    ASSERT_CONTAINS(r.out, "Once upon a time,");
    result_free(&r);
    fmt(args, sizeof args, "run --inproc -m '%s' -c 10 -n 50 --temp 0", model);
    r = run(NULL, args);
    assert_int_equal(r.rc, 0);
    ASSERT_CONTAINS(r.err, "n_ctx 10,");
    ASSERT_CONTAINS(r.err, "generated =         10 tokens");
    ASSERT_CONTAINS(r.err, "context of 10 positions is full");
    result_free(&r);
    /* longer than the model's context (2048): allowed, with a note */
    fmt(args, sizeof args, "run --inproc -m '%s' -c 3000 -n 2 --temp 0", model);
    r = run(NULL, args);
    assert_int_equal(r.rc, 0);
    ASSERT_CONTAINS(r.err, "n_ctx 3000,");
    ASSERT_CONTAINS(r.err, "longer than the model's training context (2048)");
    result_free(&r);
}

static void test_run_memory_check(void **state)
{
    NEED_MODEL();
    char args[8192];
    fmt(args, sizeof args, "run --inproc -m '%s' -n 5", model);
    result r = run("GRETA_MEM_AVAILABLE=1000000", args);
    assert_int_equal(r.rc, 1);
    ASSERT_CONTAINS(r.err, "memory plan: needs");
    ASSERT_CONTAINS(r.err, "only 0.00 GiB are available");
    result_free(&r);
    r = run("GRETA_MEM_AVAILABLE=100000000", args);
    assert_int_equal(r.rc, 0);
    result_free(&r);
    r = run("GRETA_MEM_AVAILABLE=lots", args);
    assert_int_equal(r.rc, 2);
    ASSERT_CONTAINS(r.err, "GRETA_MEM_AVAILABLE");
    result_free(&r);
}

static void test_run_bad_arguments(void **state)
{
    NEED_MODEL();
    struct {
        const char *args;
        int rc;
        const char *msg;
    } cases[] = {
#ifndef GRETA_HAVE_GPU
        {"--backend gpu", 1, "not built with GPU support"},
#endif
        {"--backend tpu", 2, "--backend must be cpu or gpu"},
        {"-n abc", 2, "-n needs an integer"},
        {"-n -4", 2, "-n needs an integer"},
        {"-c 0", 2, "-c needs an integer"},
        {"-t 0", 2, "-t needs an integer"},
        {"--temp -1", 2, "temperature"},
        {"--top-p 0", 2, "top_p"},
        {"--min-p 2", 2, "min_p"},
        {"--repeat-penalty 0", 2, "repeat_penalty"},
        {"--seed -5", 2, "--seed"},
        {"--bogus x", 2, "unknown option '--bogus'"},
        {"-p a -f b", 2, "not both"},
        {"-f /nonexistent/prompt.txt", 1, "/nonexistent/prompt.txt"},
        {"-n", 2, "-n needs a value"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char args[8192];
        fmt(args, sizeof args, "run --inproc -m '%s' %s", model, cases[i].args);
        result r = run(NULL, args);
        if (r.rc != cases[i].rc || !strstr(r.err, cases[i].msg))
            fail_msg("'%s': exit %d (want %d), stderr:\n%s", cases[i].args, r.rc, cases[i].rc, r.err);
        result_free(&r);
    }
    result r = run(NULL, "run --inproc -m /nonexistent/model.gguf -n 1");
    assert_int_equal(r.rc, 1);
    ASSERT_CONTAINS(r.err, "/nonexistent/model.gguf");
    result_free(&r);
    r = run(NULL, "run --help");
    assert_int_equal(r.rc, 0);
    ASSERT_CONTAINS(r.out, "--inproc");
    ASSERT_CONTAINS(r.out, "--instance NAME");
    ASSERT_CONTAINS(r.out, "--repeat-penalty");
    result_free(&r);
}

/* ---- greta bench ------------------------------------------------------------------ */

static cJSON *load_json(const char *path)
{
    char *text = greta_read_file(path, NULL);
    assert_non_null(text);
    cJSON *j = cJSON_Parse(text);
    free(text);
    assert_non_null(j);
    return j;
}

static void test_bench_json(void **state)
{
    NEED_MODEL();
    char json[4200], args[16384];
    fmt(json, sizeof json, "%s/bench.json", tmp);
    unlink(json);
    fmt(args, sizeof args, "bench -m '%s' -p 8 -n 16 -r 2 -t 1,2 --json '%s'", model, json);
    result r = run(NULL, args);
    if (r.rc != 0)
        fail_msg("bench failed:\n%s", r.err);
    ASSERT_CONTAINS(r.out, "| pp8 |");
    ASSERT_CONTAINS(r.out, "| tg16 |");
    ASSERT_CONTAINS(r.err, "memory plan");
    result_free(&r);
    cJSON *j = load_json(json);
    assert_string_equal(cJSON_GetObjectItem(j, "backend")->valuestring, "cpu");
    assert_true(strlen(cJSON_GetObjectItem(j, "commit")->valuestring) >= 7);
    const cJSON *mach = cJSON_GetObjectItem(j, "machine");
    assert_non_null(cJSON_GetObjectItem(mach, "cpu"));
    assert_true(cJSON_GetObjectItem(mach, "cpus_online")->valuedouble >= 1);
    const cJSON *m = cJSON_GetObjectItem(j, "model");
    assert_string_equal(cJSON_GetObjectItem(m, "sha256")->valuestring,
                        "270cba1bd5109f42d03350f60406024560464db173c0e387d91f0426d3bd256d");
    assert_string_equal(cJSON_GetObjectItem(m, "hash_method")->valuestring, "sha256 of the whole file");
    assert_int_equal((int)cJSON_GetObjectItem(m, "size_bytes")->valuedouble, 1185376);
    const cJSON *fl = cJSON_GetObjectItem(j, "flags");
    assert_int_equal(cJSON_GetObjectItem(fl, "p")->valueint, 8);
    assert_int_equal(cJSON_GetObjectItem(fl, "r")->valueint, 2);
    assert_int_equal(cJSON_GetArraySize(cJSON_GetObjectItem(fl, "t")), 2);
    const cJSON *res = cJSON_GetObjectItem(j, "results");
    assert_int_equal(cJSON_GetArraySize(res), 4); /* (pp8, tg16) x (1, 2 threads) */

    /* greedy text of greta run for the same model */
    fmt(args, sizeof args, "run --inproc -m '%s' -n 16 --temp 0", model);
    result g = run(NULL, args);
    assert_int_equal(g.rc, 0);
    g.out[strlen(g.out) - 1] = '\0'; /* the final newline */
    const char *gj = greta_testdata_find("stories260K-greedy.json");
    char *gtext = greta_read_file(gj, NULL);
    cJSON *gjson = cJSON_Parse(gtext);
    free(gtext);
    const cJSON *ids = cJSON_GetObjectItem(gjson, "ids");

    const cJSON *it;
    int i = 0;
    cJSON_ArrayForEach(it, res) {
        const int threads = cJSON_GetObjectItem(it, "threads")->valueint;
        assert_int_equal(threads, i < 2 ? 1 : 2);
        ASSERT_CONTAINS(cJSON_GetObjectItem(it, "backend_detail")->valuestring, threads == 1 ? "1 thread" : "2 threads");
        assert_true(cJSON_GetObjectItem(it, "tokens_per_s_mean")->valuedouble > 0);
        assert_true(cJSON_GetObjectItem(it, "tokens_per_s_std")->valuedouble >= 0);
        assert_int_equal(cJSON_GetArraySize(cJSON_GetObjectItem(it, "samples_tokens_per_s")), 2);
        const char *test = cJSON_GetObjectItem(it, "test")->valuestring;
        if (!strcmp(test, "pp8")) {
            assert_true(cJSON_GetObjectItem(it, "ttft_ms_mean")->valuedouble > 0);
        } else {
            assert_string_equal(test, "tg16");
            assert_string_equal(cJSON_GetObjectItem(it, "argmax")->valuestring, "host"); /* CPU: no forward_topk */
            assert_true(cJSON_GetObjectItem(it, "ms_per_token_p50")->valuedouble <=
                        cJSON_GetObjectItem(it, "ms_per_token_p99")->valuedouble);
            const cJSON *toks = cJSON_GetObjectItem(it, "tokens");
            assert_int_equal(cJSON_GetArraySize(toks), 16);
            for (int k = 0; k < 16; k++)
                assert_int_equal(cJSON_GetArrayItem(toks, k)->valueint, cJSON_GetArrayItem(ids, k + 1)->valueint);
            assert_string_equal(cJSON_GetObjectItem(it, "text")->valuestring, g.out);
        }
        i++;
    }
    cJSON_Delete(gjson);
    result_free(&g);
    cJSON_Delete(j);
}

static void test_bench_depth_isa(void **state)
{
    NEED_MODEL();
    char json[4200], args[16384];
    fmt(json, sizeof json, "%s/bench-ref.json", tmp);
    fmt(args, sizeof args, "bench -m '%s' -p 4 -n 4 -r 1 -d 0,8 -t 1 --cpu-isa ref --json '%s'", model, json);
    result r = run(NULL, args);
    if (r.rc != 0)
        fail_msg("bench failed:\n%s", r.err);
    ASSERT_CONTAINS(r.out, "pp4 @ d8");
    ASSERT_CONTAINS(r.out, "tg4 @ d8");
    result_free(&r);
    cJSON *j = load_json(json);
    assert_string_equal(cJSON_GetObjectItem(j, "cpu_isa")->valuestring, "ref");
    const cJSON *res = cJSON_GetObjectItem(j, "results");
    assert_int_equal(cJSON_GetArraySize(res), 4);
    const int depth[4] = {0, 0, 8, 8};
    for (int i = 0; i < 4; i++) {
        const cJSON *it = cJSON_GetArrayItem(res, i);
        assert_int_equal(cJSON_GetObjectItem(it, "depth")->valueint, depth[i]);
        ASSERT_CONTAINS(cJSON_GetObjectItem(it, "backend_detail")->valuestring, "ref kernels");
    }
    /* the greedy tokens from BOS: 403 407 261 378 */
    const cJSON *toks = cJSON_GetObjectItem(cJSON_GetArrayItem(res, 1), "tokens");
    const int want[4] = {403, 407, 261, 378};
    for (int k = 0; k < 4; k++)
        assert_int_equal(cJSON_GetArrayItem(toks, k)->valueint, want[k]);
    cJSON_Delete(j);
}

/* The commit: $GRETA_COMMIT when set (the GPU machine has no git), else git
 * rev-parse HEAD when it gives an object name, else "unknown" (a git that
 * answers "HEAD", as in a repository without commits, is not believed). No
 * "gpu" object for the CPU backend. */
static void test_bench_commit(void **state)
{
    NEED_MODEL();
    char json[4200], args[16384], bin[4200], fake[4300];
    fmt(json, sizeof json, "%s/bench-commit.json", tmp);
    fmt(args, sizeof args, "bench -m '%s' -p 2 -n 2 -r 1 -t 1 --json '%s'", model, json);
    result r = run("GRETA_COMMIT=bench-commit-123", args);
    if (r.rc != 0)
        fail_msg("bench failed:\n%s", r.err);
    result_free(&r);
    cJSON *j = load_json(json);
    assert_string_equal(cJSON_GetObjectItem(j, "commit")->valuestring, "bench-commit-123");
    assert_string_equal(cJSON_GetObjectItem(j, "commit_source")->valuestring, "$GRETA_COMMIT");
    assert_true(cJSON_IsNull(cJSON_GetObjectItem(j, "commit_dirty")));
    assert_null(cJSON_GetObjectItem(j, "gpu"));
    cJSON_Delete(j);
    /* a git that prints HEAD and fails */
    fmt(bin, sizeof bin, "%s/fakegit", tmp);
    mkdir(bin, 0755);
    fmt(fake, sizeof fake, "%s/git", bin);
    FILE *f = fopen(fake, "w");
    assert_non_null(f);
    fputs("#!/bin/sh\necho HEAD\necho \"fatal: ambiguous argument 'HEAD'\" >&2\nexit 128\n", f);
    fclose(f);
    assert_int_equal(chmod(fake, 0755), 0);
    char env[4400];
    fmt(env, sizeof env, "-u GRETA_COMMIT PATH='%s':\"$PATH\"", bin);
    r = run(env, args);
    if (r.rc != 0)
        fail_msg("bench failed:\n%s", r.err);
    result_free(&r);
    j = load_json(json);
    assert_string_equal(cJSON_GetObjectItem(j, "commit")->valuestring, "unknown");
    ASSERT_CONTAINS(cJSON_GetObjectItem(j, "commit_source")->valuestring, "none");
    assert_true(cJSON_IsNull(cJSON_GetObjectItem(j, "commit_dirty")));
    cJSON_Delete(j);
}

/* On a GPU: the device in the JSON ("gpu") and the commit from
 * $GRETA_COMMIT. Skipped without GPU support or a GPU. */
static void test_bench_gpu(void **state)
{
    NEED_MODEL();
    char json[4200], args[16384];
    fmt(json, sizeof json, "%s/bench-gpu.json", tmp);
    unlink(json);
    fmt(args, sizeof args, "bench -m '%s' --backend gpu -p 8 -n 8 -r 1 --json '%s'", model, json);
    result r = run("GRETA_COMMIT=gpu-bench-commit", args);
    if (r.rc != 0 && (strstr(r.err, "not built with GPU support") || strstr(r.err, "no GPU found"))) {
        result_free(&r);
        fprintf(stderr, "SKIPPED: no GPU (this part runs on the GPU machine, tests/gpu/run-gpu-tests.sh)\n");
        skip();
        return;
    }
    if (r.rc != 0)
        fail_msg("bench --backend gpu failed:\n%s", r.err);
    result_free(&r);
    cJSON *j = load_json(json);
    assert_string_equal(cJSON_GetObjectItem(j, "backend")->valuestring, "gpu");
    assert_string_equal(cJSON_GetObjectItem(j, "commit")->valuestring, "gpu-bench-commit");
    const cJSON *g = cJSON_GetObjectItem(j, "gpu");
    assert_non_null(g);
    const char *name = cJSON_GetObjectItem(g, "device")->valuestring;
    print_message("gpu: %s, %s, %s, driver %d, runtime %d, %.0f bytes\n", name,
                  cJSON_GetObjectItem(g, "arch")->valuestring, cJSON_GetObjectItem(g, "api")->valuestring,
                  cJSON_GetObjectItem(g, "driver_version")->valueint,
                  cJSON_GetObjectItem(g, "runtime_version")->valueint,
                  cJSON_GetObjectItem(g, "total_mem_bytes")->valuedouble);
    assert_true(strlen(name) > 0);
    assert_true(cJSON_GetObjectItem(g, "driver_version")->valueint >= 1000);
    assert_true(cJSON_GetObjectItem(g, "runtime_version")->valueint >= 1000);
    const double total = cJSON_GetObjectItem(g, "total_mem_bytes")->valuedouble;
    const double free_after = cJSON_GetObjectItem(g, "free_mem_after_load_bytes")->valuedouble;
    assert_true(total >= 1e9 && free_after > 0 && free_after < total);
    /* tg8: the GPU backend picks each token itself (forward_topk, k = 1): the greedy tokens of the model */
    const char *gj = greta_testdata_find("stories260K-greedy.json");
    char *gtext = greta_read_file(gj, NULL);
    cJSON *gjson = cJSON_Parse(gtext);
    free(gtext);
    const cJSON *ids = cJSON_GetObjectItem(gjson, "ids"), *it;
    int n_tg = 0;
    cJSON_ArrayForEach(it, cJSON_GetObjectItem(j, "results")) {
        if (strcmp(cJSON_GetObjectItem(it, "test")->valuestring, "tg8"))
            continue;
        n_tg++;
        assert_string_equal(cJSON_GetObjectItem(it, "argmax")->valuestring, "backend");
        const cJSON *toks = cJSON_GetObjectItem(it, "tokens");
        assert_int_equal(cJSON_GetArraySize(toks), 8);
        for (int k = 0; k < 8; k++)
            assert_int_equal(cJSON_GetArrayItem(toks, k)->valueint, cJSON_GetArrayItem(ids, k + 1)->valueint);
    }
    assert_int_equal(n_tg, 1);
    const cJSON *st = cJSON_GetObjectItem(g, "settings"); /* what the backend resolved: the defaults */
    assert_string_equal(cJSON_GetObjectItem(st, "kv_cache")->valuestring, "fp16");
    assert_string_equal(cJSON_GetObjectItem(st, "decode_kernels")->valuestring, "v8");
    assert_true(cJSON_IsTrue(cJSON_GetObjectItem(st, "lookahead")));
    cJSON_Delete(j);
    /* GRETA_GPU_KV=f32: an fp32 cache (twice the bytes in the load line), the same greedy tokens */
    unlink(json);
    fmt(args, sizeof args, "bench -m '%s' --backend gpu -p 0 -n 8 -r 1 --json '%s'", model, json);
    r = run("GRETA_GPU_KV=f32 GRETA_GPU_LOOKAHEAD=0", args);
    if (r.rc != 0)
        fail_msg("bench with GRETA_GPU_KV=f32 failed:\n%s", r.err);
    ASSERT_CONTAINS(r.err, "(fp32, n_ctx");
    result_free(&r);
    j = load_json(json);
    st = cJSON_GetObjectItem(cJSON_GetObjectItem(j, "gpu"), "settings");
    assert_string_equal(cJSON_GetObjectItem(st, "kv_cache")->valuestring, "fp32");
    assert_true(cJSON_IsFalse(cJSON_GetObjectItem(st, "lookahead")));
    const cJSON *tg = cJSON_GetArrayItem(cJSON_GetObjectItem(j, "results"), 0);
    assert_string_equal(cJSON_GetObjectItem(tg, "test")->valuestring, "tg8");
    for (int k = 0; k < 8; k++)
        assert_int_equal(cJSON_GetArrayItem(cJSON_GetObjectItem(tg, "tokens"), k)->valueint,
                         cJSON_GetArrayItem(ids, k + 1)->valueint);
    cJSON_Delete(j);
    cJSON_Delete(gjson);
    r = run("GRETA_GPU_KV=fp32", args);
    assert_int_equal(r.rc, 1);
    ASSERT_CONTAINS(r.err, "GRETA_GPU_KV='fp32': expected f16 or f32");
    result_free(&r);
    /* through the pipeline (a temporary instance on the GPU backend): the worker's greedy steps are taken
     * ahead of the sampler's answers, and its stats say so */
    unlink(json);
    fmt(args, sizeof args, "bench --pipeline -m '%s' --backend gpu -n 16 -r 1 --json '%s'", model, json);
    r = run(NULL, args);
    if (r.rc != 0)
        fail_msg("bench --pipeline --backend gpu failed:\n%s\n%s", r.out, r.err);
    ASSERT_CONTAINS(r.out, "worker lookahead");
    result_free(&r);
    j = load_json(json);
    const cJSON *pj = cJSON_GetObjectItem(j, "pipeline");
    const double hits = cJSON_GetObjectItem(pj, "lookahead_hits")->valuedouble,
                 misses = cJSON_GetObjectItem(pj, "lookahead_misses")->valuedouble;
    print_message("pipeline tg16: worker lookahead %.0f hits, %.0f misses\n", hits, misses);
    assert_true(hits >= 8 && hits <= 16);
    assert_true(misses >= 0 && misses <= 2);
    cJSON_Delete(j);
    /* --profile: one more tg per depth with GPU events per block */
    unlink(json);
    fmt(args, sizeof args, "bench -m '%s' --backend gpu -p 0 -n 8 -r 1 --profile --json '%s'", model, json);
    r = run(NULL, args);
    if (r.rc != 0)
        fail_msg("bench --profile failed:\n%s", r.err);
    ASSERT_CONTAINS(r.out, "profile tg8 @ d0");
    ASSERT_CONTAINS(r.out, "| ffn_w1w3 |");
    result_free(&r);
    j = load_json(json);
    const cJSON *prof = cJSON_GetArrayItem(cJSON_GetObjectItem(j, "profile"), 0);
    assert_non_null(prof);
    assert_true(cJSON_GetObjectItem(prof, "steps")->valuedouble >= 8);
    assert_true(cJSON_GetObjectItem(prof, "tokens_per_s_profile_off")->valuedouble > 0);
    assert_true(cJSON_GetObjectItem(prof, "tokens_per_s_profile_on")->valuedouble > 0);
    const cJSON *blocks = cJSON_GetObjectItem(prof, "blocks");
    assert_int_equal(cJSON_GetArraySize(blocks), 7);
    double ms = 0.0;
    for (int i = 0; i < 7; i++)
        ms += cJSON_GetObjectItem(cJSON_GetArrayItem(blocks, i), "ms_per_token")->valuedouble;
    assert_true(ms > 0.0);
    assert_true(cJSON_GetObjectItem(cJSON_GetArrayItem(blocks, 1), "gb_per_s")->valuedouble > 0.0); /* qkv */
    cJSON_Delete(j);
}

static void test_bench_bad_arguments(void **state)
{
    NEED_MODEL();
    struct {
        const char *args;
        int rc;
        const char *msg;
    } cases[] = {
#ifndef GRETA_HAVE_GPU
        {"--backend gpu", 1, "not built with GPU support"},
#endif
        {"--backend x", 2, "--backend must be cpu or gpu"},
        {"-r 0", 2, "-r needs an integer"},
        {"-p 0 -n 0", 2, "nothing to do"},
        {"-d 1,x", 2, "-d needs an integer"},
        {"-t 0", 2, "-t needs an integer"},
        {"--cpu-isa sse9", 2, "sse9"},
        {"--json", 2, "--json needs a value"},
        {"--bogus 1", 2, "unknown option '--bogus'"},
        {"--profile", 2, "--profile times the GPU decode step"},
        {"--profile --backend gpu -n 0", 2, "--profile times the GPU decode step"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char args[8192];
        fmt(args, sizeof args, "bench -m '%s' -p 2 -n 2 -r 1 %s", model, cases[i].args);
        result r = run(NULL, args);
        if (r.rc != cases[i].rc || !strstr(r.err, cases[i].msg))
            fail_msg("'%s': exit %d (want %d), stderr:\n%s", cases[i].args, r.rc, cases[i].rc, r.err);
        result_free(&r);
    }
    result r = run("GRETA_MEM_AVAILABLE=1000", "bench -p 2 -n 2 -r 1");
    assert_int_equal(r.rc, 1);
    ASSERT_CONTAINS(r.err, "memory plan: needs");
    result_free(&r);
}

/* argv[2] "gpu": only the GPU test (its own ctest entry and a line of
 * tests/gpu/run-gpu-tests.sh), else everything but it. */
int main(int argc, char **argv)
{
    if (argc < 2 || (argc > 2 && strcmp(argv[2], "gpu"))) {
        fprintf(stderr, "usage: test_cli PATH-TO-GRETA [gpu]\n");
        return 2;
    }
    greta_bin = argv[1];
    /* the GPU entry runs beside the others under ctest -j: its own directory */
    const char *d = greta_test_tmpdir(argc > 2 ? "engine_cli_gpu" : "engine_cli");
    if (!d)
        return 1;
    fmt(tmp, sizeof tmp, "%s", d);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_run_greedy_default_model),
        cmocka_unit_test(test_run_default_model_lookup),
        cmocka_unit_test(test_run_concurrent_temporary),
        cmocka_unit_test(test_run_threads_and_prompt),
        cmocka_unit_test(test_run_sampling_flags),
        cmocka_unit_test(test_run_lengths),
        cmocka_unit_test(test_run_memory_check),
        cmocka_unit_test(test_run_bad_arguments),
        cmocka_unit_test(test_bench_json),
        cmocka_unit_test(test_bench_depth_isa),
        cmocka_unit_test(test_bench_commit),
        cmocka_unit_test(test_bench_bad_arguments),
    };
    const struct CMUnitTest gpu_tests[] = {
        cmocka_unit_test(test_bench_gpu),
    };
    if (argc > 2)
        return cmocka_run_group_tests(gpu_tests, setup, NULL);
    return cmocka_run_group_tests(tests, setup, NULL);
}
