/* test_run_pipeline.c - `greta run` through the pipeline (the default) against
 * `greta run --inproc`, with stories260K.
 *
 *   test_run_pipeline GROUP     (one ctest entry per group, each with its own instances)
 * groups:
 *   greedy     no instance up: run starts a temporary one, streams the greedy
 *              200 tokens of BOS (= expected_text of stories260K-greedy.json,
 *              byte for byte the --inproc stdout), prints the llama.cpp
 *              timings with the instance start as load time, and the
 *              instance (segment, runtime directory) is gone afterwards; -c
 *              and -t reach the temporary instance; a full context (-c 10)
 *              stops with a note and a prefix of the --inproc text
 *   seeded     a seeded temperature-0.8 run from a prompt ("Once upon a
 *              time"), and one with every sampling flag changed: the same
 *              bytes as --inproc
 *   running    an instance started with `greta up` is reused (same
 *              supervisor, load time 0, still up afterwards) and gives the
 *              --inproc text; each sampling flag changes the --inproc text
 *              and the pipeline follows it (so each is carried); -c, -t,
 *              --backend and -m that do not match the instance are refused
 *   errors     bad flags and environment are refused before any instance
 *              starts (none is left behind)
 *   signal     SIGTERM / SIGINT in the middle of a run: exit 128+N, the
 *              request is cancelled and the temporary instance taken down
 */
#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "test_util.h"

#include "fe_util.h"
#include "proto/endpoint.h"
#include "proto/shm.h"

static const char *g_group;
static const char *g_model;
static char g_tmp[4096];
static char g_inst[48]; /* the group's instance */

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

typedef struct result {
    int rc;
    char *out, *err;
} result;

static void result_free(result *r)
{
    free(r->out);
    free(r->err);
    r->out = r->err = NULL;
}

/* Runs `env ENV greta run ARGS` with stdout and stderr captured. */
static result run(const char *env, const char *args)
{
    result r = {0};
    char cmd[16384];
    fmt(cmd, sizeof cmd, "env %s '%s' run %s < /dev/null", env ? env : "", GRETA_BIN, args);
    fprintf(stderr, "$ %s > '%s/out.txt' 2> '%s/err.txt'\n", cmd, g_tmp, g_tmp);
    r.rc = greta_test_run_cmd(cmd, g_tmp, &r.out, &r.err);
    return r;
}

/* stdout of a successful run (stderr shown on failure). */
static char *run_ok(const char *args)
{
    result r = run(NULL, args);
    if (r.rc != 0)
        fail_msg("greta run %s: exit %d\n%s", args, r.rc, r.err);
    free(r.err);
    return r.out;
}

#define ASSERT_NOT_CONTAINS(hay, needle)                                                                               \
    do {                                                                                                               \
        if (strstr((hay), (needle)))                                                                                   \
            fail_msg("did not expect '%s' in:\n%s", (needle), (hay));                                                  \
    } while (0)

static char *expected_text_nl(void)
{
    const char *p = greta_testdata_find("stories260K-greedy.json");
    if (!p)
        return NULL;
    char *text = greta_read_file(p, NULL);
    assert_non_null(text);
    cJSON *j = cJSON_Parse(text);
    free(text);
    assert_non_null(j);
    const char *want = cJSON_GetObjectItem(j, "expected_text")->valuestring;
    char *s = malloc(strlen(want) + 2);
    assert_non_null(s);
    sprintf(s, "%s\n", want);
    cJSON_Delete(j);
    return s;
}

/* The load-time line's milliseconds. */
static double load_ms(const char *err)
{
    const char *p = strstr(err, "load time =");
    if (!p)
        fail_msg("no load time in:\n%s", err);
    return strtod(p + strlen("load time ="), NULL);
}

/* 1 when the instance's runtime directory exists. */
static int rundir_exists(const char *instance)
{
    char dir[GRETA_PATH_MAX];
    assert_int_equal(greta_runtime_dir(instance, dir, sizeof dir, NULL), 0);
    struct stat sb;
    return stat(dir, &sb) == 0;
}

/* The temporary instance left nothing: not up, no runtime directory, and
 * `greta status` says so. */
static void assert_gone(const char *instance)
{
    assert_false(fe_is_up(instance));
    assert_false(rundir_exists(instance));
    assert_int_equal(fe_run("'%s' status --instance %s | grep -q 'is not up'", GRETA_BIN, instance), 0);
}

static int owner_pid(const char *instance)
{
    char name[128];
    greta_shm *shm = NULL;
    if (greta_shm_name(instance, name, sizeof name, NULL) < 0 || greta_shm_attach(name, &shm, NULL) < 0)
        return -1;
    int pid = atomic_load(&greta_shm_hdr(shm)->owner_pid);
    greta_shm_detach(&shm);
    return pid;
}

static int setup(void **state)
{
    (void)state;
    g_model = fe_setup();
    fe_instance_name(g_inst, sizeof g_inst, g_group);
    fmt(g_tmp, sizeof g_tmp, "%s", greta_test_tmpdir(g_inst));
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    if (g_model) {
        fe_down(g_inst);
        fe_clean(g_inst);
    }
    return 0;
}

#define NEED_MODEL()                                                                                                   \
    if (!g_model) {                                                                                                    \
        GRETA_TESTDATA_OR_SKIP(m_, "stories260K.gguf");                                                                \
        (void)m_;                                                                                                      \
    }

/* ---- groups -------------------------------------------------------------------------- */

static void test_greedy(void **state)
{
    (void)state;
    NEED_MODEL();
    char *want = expected_text_nl();
    assert_non_null(want);
    assert_false(fe_is_up(g_inst));
    char args[8192];
    fmt(args, sizeof args, "-m '%s' --instance %s -n 200 --temp 0", g_model, g_inst);
    result p = run(NULL, args);
    assert_int_equal(p.rc, 0);
    assert_string_equal(p.out, want);
    ASSERT_CONTAINS(p.err, "starting a temporary one");
    ASSERT_CONTAINS(p.err, "(temporary, stops at the end of this command)");
    ASSERT_CONTAINS(p.err, "memory plan (cpu backend, n_ctx 2048, n_seq 1");
    ASSERT_CONTAINS(p.err, "prompt eval time =");
    ASSERT_CONTAINS(p.err, "/     1 tokens");
    ASSERT_CONTAINS(p.err, "/   199 runs");
    ASSERT_CONTAINS(p.err, "generated =        200 tokens");
    ASSERT_CONTAINS(p.err, "total time =");
    assert_true(load_ms(p.err) > 0.0); /* the instance start */
    assert_gone(g_inst);
    /* byte for byte the in-process text */
    fmt(args, sizeof args, "--inproc -m '%s' -n 200 --temp 0", g_model);
    char *inproc = run_ok(args);
    assert_string_equal(p.out, inproc);
    free(inproc);
    result_free(&p);

    /* -c and -t reach the temporary instance */
    fmt(args, sizeof args, "-m '%s' --instance %s -n 3 --temp 0 -c 64 -t 1", g_model, g_inst);
    p = run(NULL, args);
    assert_int_equal(p.rc, 0);
    ASSERT_CONTAINS(p.err, "n_ctx 64,");
    ASSERT_CONTAINS(p.err, "backend cpu (1 thread), context 64, 1 slot");
    result_free(&p);
    assert_gone(g_inst);

    /* a full context: the note, and the text is where --inproc's goes */
    fmt(args, sizeof args, "-m '%s' --instance %s -c 10 -n 50 --temp 0", g_model, g_inst);
    p = run(NULL, args);
    assert_int_equal(p.rc, 0);
    ASSERT_CONTAINS(p.err, "context of 10 positions is full");
    fmt(args, sizeof args, "--inproc -m '%s' -c 10 -n 50 --temp 0", g_model);
    inproc = run_ok(args);
    size_t n = strlen(p.out);
    assert_true(n > 10);
    assert_memory_equal(p.out, inproc, n - 1); /* without the final newline */
    free(inproc);
    result_free(&p);
    assert_gone(g_inst);
    free(want);
}

static void test_seeded(void **state)
{
    (void)state;
    NEED_MODEL();
    const char *flags[] = {
        "-p 'Once upon a time' -n 200 --temp 0.8 --seed 42",
        "-p 'Once upon a time' -n 120 --temp 1.1 --seed 5 --top-k 0 --top-p 0.9 --min-p 0.1 --repeat-penalty 1.3",
    };
    for (size_t i = 0; i < sizeof flags / sizeof flags[0]; i++) {
        char args[8192];
        fmt(args, sizeof args, "-m '%s' --instance %s %s", g_model, g_inst, flags[i]);
        char *pipe = run_ok(args);
        assert_gone(g_inst);
        fmt(args, sizeof args, "--inproc -m '%s' %s", g_model, flags[i]);
        char *inproc = run_ok(args);
        assert_memory_equal(pipe, "Once upon a time", 16);
        assert_true(strlen(pipe) > 200);
        assert_string_equal(pipe, inproc);
        free(pipe);
        free(inproc);
    }
}

static void test_running(void **state)
{
    (void)state;
    NEED_MODEL();
    char *want = expected_text_nl();
    assert_non_null(want);
    assert_int_equal(fe_up(g_inst, g_model, NULL), 0);
    int sup = owner_pid(g_inst);
    assert_true(sup > 0);
    char args[8192];
    fmt(args, sizeof args, "--instance %s -n 200 --temp 0", g_inst); /* no -m: the instance's model */
    result p = run(NULL, args);
    assert_int_equal(p.rc, 0);
    assert_string_equal(p.out, want);
    ASSERT_CONTAINS(p.err, "(running, reused)");
    ASSERT_NOT_CONTAINS(p.err, "temporary");
    ASSERT_CONTAINS(p.err, "load time =       0.00 ms");
    ASSERT_CONTAINS(p.err, "generated =        200 tokens");
    result_free(&p);
    assert_true(fe_is_up(g_inst));
    assert_int_equal(owner_pid(g_inst), sup); /* no new supervisor */

    /* every sampling flag is carried: it changes the text, and the pipeline follows */
    const char *base = "-p 'Once upon a time' -n 60 --temp 1.0 --seed 7";
    fmt(args, sizeof args, "--inproc -m '%s' %s", g_model, base);
    char *inproc_base = run_ok(args);
    const char *flags[] = {"--seed 8", "--temp 0.3", "--top-k 3", "--top-p 0.5", "--min-p 0.3",
                           "--repeat-penalty 1.5"};
    for (size_t i = 0; i < sizeof flags / sizeof flags[0]; i++) {
        fmt(args, sizeof args, "--inproc -m '%s' %s %s", g_model, base, flags[i]);
        char *inproc = run_ok(args);
        if (!strcmp(inproc, inproc_base))
            fail_msg("%s does not change the --inproc text: a useless check", flags[i]);
        fmt(args, sizeof args, "--instance %s -m '%s' %s %s", g_inst, g_model, base, flags[i]);
        char *pipe = run_ok(args);
        if (strcmp(pipe, inproc))
            fail_msg("%s: pipeline\n%s\n--inproc\n%s", flags[i], pipe, inproc);
        free(pipe);
        free(inproc);
    }
    free(inproc_base);

    /* what the running instance cannot do is refused, not ignored */
    const char *other = greta_testdata_find("llama-2-tiny-random.gguf");
    char other_arg[4200] = "";
    if (other)
        fmt(other_arg, sizeof other_arg, "-m '%s'", other);
    struct {
        const char *flags;
        int rc;
        const char *msg;
    } refused[] = {
        {"-c 100", 2, "has a context of 2048, not -c 100"},
        {"-t 3", 2, "not -t 3"},
        {"--backend gpu", 2, "runs the cpu backend, not --backend gpu"},
        {other_arg, 1, "not -m"},
        {"--temp -1", 2, "temperature"},
    };
    for (size_t i = 0; i < sizeof refused / sizeof refused[0]; i++) {
        if (!refused[i].flags[0])
            continue; /* no other model in the test data */
        fmt(args, sizeof args, "--instance %s -n 5 %s", g_inst, refused[i].flags);
        p = run(NULL, args);
        if (p.rc != refused[i].rc || !strstr(p.err, refused[i].msg))
            fail_msg("'%s': exit %d (want %d), stderr:\n%s", refused[i].flags, p.rc, refused[i].rc, p.err);
        assert_string_equal(p.out, "");
        result_free(&p);
    }
    /* flags that match are fine */
    fmt(args, sizeof args, "--instance %s -m '%s' -c 2048 -t 1 --backend cpu -n 5 --temp 0", g_inst, g_model);
    p = run(NULL, args);
    assert_int_equal(p.rc, 0);
    assert_memory_equal(p.out, want, 10);
    result_free(&p);
    assert_true(fe_is_up(g_inst));
    assert_int_equal(owner_pid(g_inst), sup);
    free(want);
}

static void test_errors(void **state)
{
    (void)state;
    NEED_MODEL();
    struct {
        const char *env;
        const char *flags;
        int rc;
        const char *msg;
    } cases[] = {
#ifndef GRETA_HAVE_GPU
        {NULL, "--backend gpu", 1, "not built with GPU support"},
#endif
        {NULL, "--backend tpu", 2, "--backend must be cpu or gpu"},
        {NULL, "--inproc", 2, "--instance is for the pipeline"},
        {NULL, "-c 1", 2, "-c needs 2..1048576 positions for the pipeline"},
        {NULL, "-c 2000000", 2, "-c needs 2..1048576"},
        {NULL, "-n -4", 2, "-n needs an integer"},
        {NULL, "--temp -1", 2, "temperature"},
        {NULL, "--top-p 0", 2, "top_p"},
        {NULL, "--min-p 2", 2, "min_p"},
        {NULL, "--repeat-penalty 0", 2, "repeat_penalty"},
        {NULL, "--seed -5", 2, "--seed"},
        {NULL, "--bogus x", 2, "unknown option '--bogus'"},
        {"GRETA_MEM_AVAILABLE=1000000", "", 1, "only 0.00 GiB are available"},
        {"GRETA_MEM_AVAILABLE=lots", "", 2, "GRETA_MEM_AVAILABLE"},
    };
    char args[8192];
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        fmt(args, sizeof args, "-m '%s' --instance %s -n 5 %s", g_model, g_inst, cases[i].flags);
        result r = run(cases[i].env, args);
        if (r.rc != cases[i].rc || !strstr(r.err, cases[i].msg))
            fail_msg("'%s': exit %d (want %d), stderr:\n%s", cases[i].flags, r.rc, cases[i].rc, r.err);
        ASSERT_NOT_CONTAINS(r.err, "starting a temporary one");
        result_free(&r);
        assert_gone(g_inst);
    }
    /* a bad instance name, a missing model and a missing prompt file */
    fmt(args, sizeof args, "-m '%s' --instance 'a/b' -n 5", g_model);
    result r = run(NULL, args);
    assert_int_equal(r.rc, 2);
    ASSERT_CONTAINS(r.err, "--instance");
    result_free(&r);
    fmt(args, sizeof args, "-m /nonexistent/model.gguf --instance %s -n 5", g_inst);
    r = run(NULL, args);
    assert_int_equal(r.rc, 1);
    ASSERT_CONTAINS(r.err, "/nonexistent/model.gguf");
    result_free(&r);
    fmt(args, sizeof args, "-m '%s' --instance %s -f /nonexistent/prompt.txt", g_model, g_inst);
    r = run(NULL, args);
    assert_int_equal(r.rc, 1);
    ASSERT_CONTAINS(r.err, "/nonexistent/prompt.txt");
    result_free(&r);
    assert_gone(g_inst);
    /* the prompt must leave room for a token in the context */
    fmt(args, sizeof args, "-m '%s' --instance %s -c 3 -p 'Once upon a time' -n 5", g_model, g_inst);
    r = run(NULL, args);
    assert_int_equal(r.rc, 1);
    ASSERT_CONTAINS(r.err, "leaves no room in the context of 3");
    result_free(&r);
    assert_gone(g_inst);
}

/* Starts `greta run` with stdout on a pipe, waits for generated text, sends
 * sig, and checks the exit status and that the temporary instance is gone. */
static void interrupt_with(int sig)
{
    int fds[2];
    assert_int_equal(pipe(fds), 0);
    char errpath[4200];
    fmt(errpath, sizeof errpath, "%s/sig-%d.txt", g_tmp, sig);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        dup2(fds[1], 1);
        int e = open(errpath, O_WRONLY | O_CREAT | O_TRUNC, 0600);
        if (e >= 0)
            dup2(e, 2);
        close(fds[0]);
        char *argv[] = {GRETA_BIN, "run",    "-m",   (char *)g_model, "--instance", g_inst,
                        "-c",      "8192",   "-n",   "8000",          "--temp",     "0.8",
                        "--seed",  "1",      "-p",   "Once",          NULL};
        execv(GRETA_BIN, argv);
        _exit(127);
    }
    close(fds[1]);
    char buf[4096];
    size_t got = 0;
    while (got < 64) { /* the prompt and some generated text */
        struct pollfd pfd = {fds[0], POLLIN, 0};
        if (poll(&pfd, 1, 20000) <= 0)
            break;
        ssize_t k = read(fds[0], buf, sizeof buf);
        if (k <= 0)
            break;
        got += (size_t)k;
    }
    assert_true(got >= 64);
    assert_int_equal(kill(pid, sig), 0);
    while (read(fds[0], buf, sizeof buf) > 0) {
    }
    close(fds[0]);
    int st = 0;
    assert_int_equal(waitpid(pid, &st, 0), pid);
    char *err = greta_read_file(errpath, NULL);
    assert_non_null(err);
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 128 + sig)
        fail_msg("greta run after signal %d: status %#x, stderr:\n%s", sig, st, err);
    ASSERT_CONTAINS(err, "interrupted");
    ASSERT_CONTAINS(err, "stopping the temporary instance");
    free(err);
    assert_gone(g_inst);
}

static void test_signal(void **state)
{
    (void)state;
    NEED_MODEL();
    interrupt_with(SIGTERM);
    interrupt_with(SIGINT);
}

int main(int argc, char **argv)
{
    g_group = argc > 1 ? argv[1] : "greedy";
    struct {
        const char *name;
        CMUnitTestFunction fn;
    } groups[] = {
        {"greedy", test_greedy}, {"seeded", test_seeded}, {"running", test_running},
        {"errors", test_errors}, {"signal", test_signal},
    };
    for (size_t i = 0; i < sizeof groups / sizeof groups[0]; i++) {
        if (strcmp(g_group, groups[i].name))
            continue;
        const struct CMUnitTest tests[] = {
            {groups[i].name, groups[i].fn, setup, teardown, NULL},
        };
        return cmocka_run_group_tests_name("greta run pipeline", tests, NULL, NULL);
    }
    fprintf(stderr, "test_run_pipeline: unknown group '%s' (greedy, seeded, running, errors, signal)\n", g_group);
    return 2;
}
