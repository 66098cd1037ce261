/* test_greta_chat.c - `greta chat` driven through a pseudo-terminal (pty_util.h),
 * with stories260K (no chat template: raw).
 *
 *   test_greta_chat GROUP     (one ctest entry per group, each with its own instance)
 * groups:
 *   basic      a running instance: streamed answer equal to the client
 *              library's greedy text, line editing (Ctrl-A, Ctrl-D) and
 *              history recall (Up), multi-line input (\ and """), /stats,
 *              /system, /temp, /save + /reset + /load round trip, unknown
 *              command, /quit exit 0, the history file; then a piped (not a
 *              terminal) session and -m naming another model than the
 *              instance's (refused)
 *   interrupt  Ctrl-C in the middle of an answer stops it (cancelled and
 *              released: the instance's slot is free again), Ctrl-C at the
 *              prompt drops the line, and a further prompt is answered
 *   temporary  no instance up: chat starts a temporary one (-m), says once
 *              that the raw template is used, --system/--temp/--seed/-n
 *              reproduce the client library's seeded answer, the instance is
 *              gone after /quit, and also after kill -9 of the chat
 */
#include <cjson/cJSON.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "test_util.h"

#include "fe_util.h"
#include "pty_util.h"

#include "proto/endpoint.h"
#include "proto/shm.h"

#define N_TOKENS 24

static const char *g_group;
static const char *g_model;
static char g_instance[48];
static char g_home[4096];
static char g_env_home[4200];
static char g_env_state[] = "XDG_STATE_HOME=";

static int setup(void **state)
{
    (void)state;
    g_model = fe_setup();
    fe_instance_name(g_instance, sizeof g_instance, g_group);
    snprintf(g_home, sizeof g_home, "%s", greta_test_tmpdir(g_instance));
    snprintf(g_env_home, sizeof g_env_home, "HOME=%s", g_home);
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

static char *env_extra[] = {g_env_home, g_env_state, NULL};

static long long now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* The first line of ref (at most 60 bytes): what must show on the terminal. */
static void first_line(const char *ref, char *out, size_t n)
{
    size_t k = 0;
    while (ref[k] && ref[k] != '\n' && k < 60 && k + 1 < n) {
        out[k] = ref[k];
        k++;
    }
    out[k] = '\0';
}

static void expect(pty_proc *p, const char *needle, int ms)
{
    if (pty_expect(p, needle, ms) < 0) {
        pty_close(p);
        fail_msg("expected '%s' on the terminal", needle);
    }
}

/* Sends keys at a prompt, waits for reply and the next prompt (keys are
 * only sent while libedit reads them raw). */
static void say(pty_proc *p, const char *keys, const char *reply)
{
    pty_send(p, keys);
    expect(p, reply, 5000);
    expect(p, ">>> ", 5000);
}

static cJSON *load_json(const char *path)
{
    size_t n;
    char *text = greta_read_file(path, &n);
    assert_non_null(text);
    cJSON *j = cJSON_Parse(text);
    free(text);
    assert_non_null(j);
    return j;
}

static const char *msg_field(const cJSON *root, int i, const char *field)
{
    const cJSON *m = cJSON_GetArrayItem(cJSON_GetObjectItem(root, "messages"), i);
    const cJSON *v = cJSON_GetObjectItem(m, field);
    return cJSON_IsString(v) ? v->valuestring : "(missing)";
}

/* ---- basic ------------------------------------------------------------------------------ */

static void test_basic(void **state)
{
    (void)state;
    if (!g_model)
        skip();
    assert_int_equal(fe_up(g_instance, g_model, "--slots 2"), 0);
    char ref[8192], line1[64];
    assert_int_equal(
        fe_reference(g_instance, NULL, "Once upon a time", 1, N_TOKENS, 0, 0, 0, 0, 0, ref, sizeof ref, NULL), 0);
    first_line(ref, line1, sizeof line1);
    assert_true(strlen(line1) >= 10);

    char n_arg[16];
    snprintf(n_arg, sizeof n_arg, "%d", N_TOKENS);
    char *argv[] = {GRETA_BIN, "chat", "--instance", g_instance, "--temp", "0", "-n", n_arg, NULL};
    pty_proc p;
    assert_int_equal(pty_spawn(&p, argv, env_extra), 0);
    expect(&p, "/help for commands", 10000);
    expect(&p, ">>> ", 5000);
    /* line editing: two stray characters removed at the start of the line */
    pty_send(&p, "XXOnce upon a time");
    pty_drain(&p, 100);
    pty_send(&p, "\x01\x04\x04\r"); /* Ctrl-A, Ctrl-D twice, Enter */
    expect(&p, line1, 10000);
    expect(&p, ">>> ", 10000);
    pty_send(&p, "/stats\r");
    char want[64];
    snprintf(want, sizeof want, "%d generated tokens", N_TOKENS);
    expect(&p, want, 5000);
    expect(&p, "time to first token", 1000);
    expect(&p, "tokens/s; finished: length", 1000);
    expect(&p, ">>> ", 5000);

    /* multi-line input: a trailing backslash, then a """ block */
    pty_send(&p, "Once upon\\\r");
    expect(&p, "... ", 5000);
    pty_send(&p, "a time\r");
    expect(&p, ">>> ", 10000);
    pty_send(&p, "\"\"\"\r");
    expect(&p, "... ", 5000);
    pty_send(&p, "The cat\r");
    expect(&p, "... ", 5000);
    pty_send(&p, "sat down\"\"\"\r");
    expect(&p, ">>> ", 10000);

    say(&p, "/system Be brief.\r", "system prompt set");
    say(&p, "/system\r", "system prompt: Be brief.");
    say(&p, "/temp 0.5\r", "temperature 0.5");
    say(&p, "/temp lots\r", "/temp needs a number");
    say(&p, "/bogus\r", "unknown command /bogus");

    char f1[4200], f2[4200], f3[4200];
    snprintf(f1, sizeof f1, "%s/one.json", g_home);
    snprintf(f2, sizeof f2, "%s/two.json", g_home);
    snprintf(f3, sizeof f3, "%s/three.json", g_home);
    char cmd[4300];
    snprintf(cmd, sizeof cmd, "/save %s\r", f1);
    say(&p, cmd, "saved 7 messages");
    say(&p, "/reset\r", "conversation cleared");
    snprintf(cmd, sizeof cmd, "/save %s\r", f2);
    say(&p, cmd, "saved 1 messages");
    snprintf(cmd, sizeof cmd, "/load %s/missing.json\r", g_home);
    say(&p, cmd, "No such file");
    snprintf(cmd, sizeof cmd, "/load %s\r", f1);
    say(&p, cmd, "loaded 7 messages");
    snprintf(cmd, sizeof cmd, "/save %s\r", f3);
    say(&p, cmd, "saved 7 messages");

    /* history: Up twice brings back "/temp 0.3" */
    say(&p, "/temp 0.3\r", "temperature 0.3");
    say(&p, "/temp 0\r", "temperature 0\r");
    say(&p, "\x1b[A\x1b[A\r", "temperature 0.3");

    pty_send(&p, "/quit\r");
    assert_int_equal(pty_wait(&p, 10000), 0);
    pty_close(&p);

    /* the saved conversation */
    cJSON *one = load_json(f1);
    assert_int_equal(cJSON_GetArraySize(cJSON_GetObjectItem(one, "messages")), 7);
    assert_true(cJSON_GetObjectItem(one, "temperature")->valuedouble == 0.5);
    assert_string_equal(msg_field(one, 0, "role"), "system");
    assert_string_equal(msg_field(one, 0, "content"), "Be brief.");
    assert_string_equal(msg_field(one, 1, "role"), "user");
    assert_string_equal(msg_field(one, 1, "content"), "Once upon a time");
    assert_string_equal(msg_field(one, 2, "role"), "assistant");
    assert_string_equal(msg_field(one, 2, "content"), ref);
    assert_string_equal(msg_field(one, 3, "content"), "Once upon\na time");
    assert_string_equal(msg_field(one, 5, "content"), "The cat\nsat down");
    assert_string_equal(msg_field(one, 6, "role"), "assistant");
    cJSON_Delete(one);
    size_t n1, n3;
    char *t1 = greta_read_file(f1, &n1), *t3 = greta_read_file(f3, &n3);
    assert_non_null(t1);
    assert_non_null(t3);
    assert_string_equal(t1, t3); /* /save after /load writes the same conversation */
    free(t1);
    free(t3);
    char hist[4300];
    snprintf(hist, sizeof hist, "%s/.local/state/greta/chat_history", g_home);
    size_t nh;
    char *h = greta_read_file(hist, &nh);
    assert_non_null(h);
    assert_non_null(strstr(h, "Once"));
    assert_non_null(strstr(h, "/temp"));
    free(h);

    /* not a terminal: plain lines from stdin, no prompt */
    char out[4300];
    snprintf(out, sizeof out, "%s/piped.txt", g_home);
    assert_int_equal(fe_run("printf 'Once upon a time\\n/stats\\n' | %s chat --instance %s --temp 0 -n %d >%s",
                            GRETA_BIN, g_instance, N_TOKENS, out),
                     0);
    size_t no;
    char *piped = greta_read_file(out, &no);
    assert_non_null(piped);
    assert_non_null(strstr(piped, ref));
    assert_non_null(strstr(piped, want));
    assert_null(strstr(piped, ">>> "));
    free(piped);

    /* -m must name the model the running instance serves */
    const char *other = greta_testdata_find("llama-2-tiny-random.gguf");
    if (other) {
        char err[4300];
        snprintf(err, sizeof err, "%s/m.err", g_home);
        assert_int_equal(fe_run("%s chat --instance %s -m %s </dev/null 2>%s", GRETA_BIN, g_instance, other, err), 1);
        size_t ne;
        char *e = greta_read_file(err, &ne);
        assert_non_null(e);
        assert_non_null(strstr(e, "serves"));
        free(e);
    }
    assert_int_equal(fe_run("%s chat --temp warm </dev/null", GRETA_BIN), 2);
}

/* ---- interrupt --------------------------------------------------------------------------- */

static int slots_in_use(void)
{
    char out[4300];
    snprintf(out, sizeof out, "%s/status.txt", g_home);
    fe_run("%s status --instance %s >%s", GRETA_BIN, g_instance, out);
    size_t n;
    char *s = greta_read_file(out, &n);
    int used = -1;
    const char *k = s ? strstr(s, "requests in slots: ") : NULL;
    if (k)
        used = atoi(k + strlen("requests in slots: "));
    free(s);
    return used;
}

/* Stops the instance's gpu-worker (SIGSTOP) so that a streaming answer can
 * not finish; its pid, or 0 (running again) when no request is generating
 * any more: the answer ended before the test could stop it. */
static int freeze_answer(greta_shm *shm)
{
    int w = atomic_load(&greta_shm_stage_at(shm, GRETA_STAGE_WORKER)->pid);
    kill(w, SIGSTOP);
    for (long long end = now_ms() + pty_slack_ms(5000); greta_proc_state(w) != 'T' && now_ms() < end;)
        usleep(1000);
    int active = 0;
    for (uint32_t i = 0; i < greta_shm_hdr(shm)->n_slots; i++)
        active += atomic_load(&greta_shm_slot_at(shm, i)->state) == GRETA_SLOT_ACTIVE;
    if (!active) {
        kill(w, SIGCONT);
        return 0;
    }
    return w;
}

static void test_interrupt(void **state)
{
    (void)state;
    if (!g_model)
        skip();
    assert_int_equal(fe_up(g_instance, g_model, "--slots 1"), 0);
    char ref[8192], line1[64];
    assert_int_equal(fe_reference(g_instance, NULL, "Once upon a time", 1, 8, 0, 0, 0, 0, 0, ref, sizeof ref, NULL), 0);
    first_line(ref, line1, sizeof line1);
    char shm_name[128];
    greta_shm *shm = NULL;
    assert_int_equal(greta_shm_name(g_instance, shm_name, sizeof shm_name, NULL), 0);
    assert_int_equal(greta_shm_attach(shm_name, &shm, NULL), 0);
    char *argv[] = {GRETA_BIN, "chat", "--instance", g_instance, "--temp", "0", "-n", "600", NULL};
    pty_proc p;
    assert_int_equal(pty_spawn(&p, argv, env_extra), 0);
    expect(&p, ">>> ", 10000);
    /* Ctrl-C must land while the answer streams: the gpu-worker is held
     * (SIGSTOP) from when the answer shows until the terminal has echoed the
     * ^C (the SIGINT is sent by then), so a fast build on a loaded machine
     * cannot finish all 600 tokens first. An answer that still ended before
     * the hold is asked again. */
    int held = 0;
    for (int attempt = 0; attempt < 8 && !held; attempt++) {
        pty_send(&p, "Once upon a time\r");
        expect(&p, line1, 10000); /* the answer is streaming */
        if (!(held = freeze_answer(shm))) {
            fprintf(stderr, "\n[the answer ended before the test could hold it; again]\n");
            expect(&p, ">>> ", 10000);
            say(&p, "/reset\r", "conversation cleared");
        }
    }
    assert_true(held > 0);
    pty_send(&p, "\x03");
    expect(&p, "^C", 5000);
    kill(held, SIGCONT);
    expect(&p, "[stopped]", 5000);
    expect(&p, ">>> ", 5000);
    greta_shm_detach(&shm);
    say(&p, "/stats\r", "finished: stopped (Ctrl-C)");
    /* "last answer: P prompt tokens, N generated tokens": N < 600 */
    const char *s = strstr(p.out, "prompt tokens, ");
    assert_non_null(s);
    int generated = atoi(s + strlen("prompt tokens, "));
    fprintf(stderr, "\n[stopped after %d of 600 tokens]\n", generated);
    assert_true(generated >= 1 && generated < 600);
    /* the request was cancelled and released: its slot is free */
    int used = -1;
    for (long long end = now_ms() + pty_slack_ms(5000); (used = slots_in_use()) != 0 && now_ms() < end;)
        usleep(20000);
    assert_int_equal(used, 0);

    /* Ctrl-C at the prompt drops the line; the chat goes on */
    pty_send(&p, "never sent");
    pty_drain(&p, 100);
    pty_send(&p, "\x03");
    expect(&p, "^C", 5000);
    expect(&p, ">>> ", 5000);
    say(&p, "/reset\r", "conversation cleared");
    pty_send(&p, "The dog\r");
    expect(&p, "The dog", 5000);
    expect(&p, ">>> ", 15000); /* answered to the end (length or end of sequence) */
    pty_send(&p, "/stats\r");
    expect(&p, "generated tokens", 5000);
    long fin = pty_expect(&p, "finished: ", 1000);
    assert_true(fin > 0);
    assert_true(strncmp(p.out + fin, "stopped", 7) != 0);
    expect(&p, ">>> ", 5000);
    char cmd[4300];
    snprintf(cmd, sizeof cmd, "/save %s/int.json\r", g_home);
    say(&p, cmd, "saved 2 messages");
    pty_send(&p, "\x04"); /* Ctrl-D at an empty prompt leaves */
    assert_int_equal(pty_wait(&p, 10000), 0);
    pty_close(&p);
    char f[4300];
    snprintf(f, sizeof f, "%s/int.json", g_home);
    cJSON *j = load_json(f);
    assert_string_equal(msg_field(j, 0, "content"), "The dog");
    assert_null(strstr(msg_field(j, 0, "content"), "never sent"));
    cJSON_Delete(j);
}

/* ---- temporary --------------------------------------------------------------------------- */

static int count(const char *hay, const char *needle)
{
    int c = 0;
    for (const char *s = hay; (s = strstr(s, needle)) != NULL; s += strlen(needle))
        c++;
    return c;
}

static void test_temporary(void **state)
{
    (void)state;
    if (!g_model)
        skip();
    fe_down(g_instance);
    assert_false(fe_is_up(g_instance));
    char *argv[] = {GRETA_BIN,    "chat",
                    "--instance", g_instance,
                    "-m",         (char *)g_model,
                    "--system",   "Tell a story.",
                    "--temp",     "1.5",
                    "--seed",     "5",
                    "-n",         "16",
                    NULL};
    pty_proc p;
    assert_int_equal(pty_spawn(&p, argv, env_extra), 0);
    expect(&p, "starting a temporary one", 10000);
    expect(&p, ">>> ", 15000);
    assert_int_equal(count(p.out, "using raw"), 1);
    assert_true(fe_is_up(g_instance));
    char ref[8192], line1[64];
    uint32_t n_ref = 0;
    assert_int_equal(fe_reference(g_instance, "Tell a story.", "Once upon a time", 1, 16, 1.5f, 40, 0.95f, 0.05f, 5,
                                  ref, sizeof ref, &n_ref),
                     0);
    first_line(ref, line1, sizeof line1);
    char other[8192], greedy[8192];
    assert_int_equal(fe_reference(g_instance, "Tell a story.", "Once upon a time", 1, 16, 1.5f, 40, 0.95f, 0.05f, 6,
                                  other, sizeof other, NULL),
                     0);
    assert_int_equal(fe_reference(g_instance, "Tell a story.", "Once upon a time", 1, 16, 0, 0, 0, 0, 0, greedy,
                                  sizeof greedy, NULL),
                     0);
    fprintf(stderr, "\n[seed 5: '%s'; seed 6: '%s'; greedy: '%s']\n", ref, other, greedy);
    assert_string_not_equal(ref, other);  /* the seed matters ... */
    assert_string_not_equal(ref, greedy); /* ... and so does the temperature */
    say(&p, "/system\r", "system prompt: Tell a story.");
    pty_send(&p, "Once upon a time\r");
    expect(&p, line1, 10000);
    expect(&p, ">>> ", 10000);
    char want[64];
    snprintf(want, sizeof want, "%u generated tokens", n_ref);
    say(&p, "/stats\r", want);
    pty_send(&p, "/quit\r");
    assert_int_equal(pty_wait(&p, 15000), 0);
    assert_int_equal(count(p.out, "using raw"), 1);
    pty_close(&p);
    assert_true(fe_wait_down(g_instance, 2000)); /* stopped before chat returned */

    /* kill -9 of the chat: the watchdog takes the temporary instance down */
    char *argv2[] = {GRETA_BIN, "chat", "--instance", g_instance, "-m", (char *)g_model, NULL};
    assert_int_equal(pty_spawn(&p, argv2, env_extra), 0);
    expect(&p, ">>> ", 15000);
    assert_true(fe_is_up(g_instance));
    fprintf(stderr, "\n[kill -9 of greta chat pid %d]\n", (int)p.pid);
    pty_kill(&p);
    pty_close(&p);
    assert_true(fe_wait_down(g_instance, 10000));
}

int main(int argc, char **argv)
{
    g_group = argc > 1 ? argv[1] : "basic";
    const struct CMUnitTest basic[] = {cmocka_unit_test_setup_teardown(test_basic, setup, teardown)};
    const struct CMUnitTest interrupt[] = {cmocka_unit_test_setup_teardown(test_interrupt, setup, teardown)};
    const struct CMUnitTest temporary[] = {cmocka_unit_test_setup_teardown(test_temporary, setup, teardown)};
    if (!strcmp(g_group, "basic"))
        return cmocka_run_group_tests_name("chat basic", basic, NULL, NULL);
    if (!strcmp(g_group, "interrupt"))
        return cmocka_run_group_tests_name("chat interrupt", interrupt, NULL, NULL);
    if (!strcmp(g_group, "temporary"))
        return cmocka_run_group_tests_name("chat temporary", temporary, NULL, NULL);
    fprintf(stderr, "test_greta_chat: unknown group '%s' (basic, interrupt, temporary)\n", g_group);
    return 2;
}
