/* test_supervisor.c - the supervisor over tiny fake stages: restart of a
 * killed stage, hang detection (SIGSTOP), no false hang after the supervisor
 * itself was paused, backoff, control messages, and adoption of live stages
 * after the supervisor itself was killed. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "test_util.h"

#include "frontend/supervisor.h"
#include "proto/endpoint.h"
#include "proto/heartbeat.h"
#include "proto/msg.h"
#include "proto/zsock.h"

typedef struct fixture {
    char instance[32];
    char rundir[GRETA_PATH_MAX];
    char shm_name[64];
    char logpath[GRETA_PATH_MAX + 32];
    pid_t sup;
    greta_shm *shm; /* the test's own mapping */
} fixture;

static fixture F;

static int64_t now_ms(void)
{
    return greta_now_ms();
}

/* Polls cond() every 10 ms for up to ms; the result of the last call. */
#define WAIT_FOR(cond, ms)                                                                         \
    ({                                                                                             \
        int64_t _end = now_ms() + (ms);                                                            \
        int _ok;                                                                                   \
        while (!(_ok = (cond)) && now_ms() < _end)                                                 \
            usleep(10000);                                                                         \
        _ok;                                                                                       \
    })

static int stage_pid(int i)
{
    return atomic_load(&greta_shm_stage_at(F.shm, i)->pid);
}

static int stage_state(int i)
{
    return (int)atomic_load(&greta_shm_stage_at(F.shm, i)->state);
}

static int all_running(void)
{
    for (int i = 0; i < GRETA_STAGE_COUNT; i++)
        if (stage_state(i) != GRETA_STAGE_RUNNING)
            return 0;
    return 1;
}

static int count_in_log(const char *needle)
{
    size_t n;
    char *text = greta_read_file(F.logpath, &n);
    if (!text)
        return 0;
    int c = 0;
    for (char *p = text; (p = strstr(p, needle)) != NULL; p += strlen(needle))
        c++;
    free(text);
    return c;
}

/* Forks a supervisor over fake stages. exit_ms >= 0: stages crash after it. */
static pid_t fork_supervisor(int adopt, int exit_ms)
{
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid)
        return pid;
    if (exit_ms >= 0) {
        char v[16];
        snprintf(v, sizeof v, "%d", exit_ms);
        setenv("FAKE_STAGE_EXIT_MS", v, 1);
    }
    greta_error err = {0};
    greta_shm *shm = NULL;
    if (greta_shm_attach(F.shm_name, &shm, &err) < 0) {
        fprintf(stderr, "supervisor: %s\n", err.msg);
        _exit(10);
    }
    greta_supervisor_config cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.instance = F.instance;
    cfg.rundir = F.rundir;
    cfg.shm_name = F.shm_name;
    cfg.adopt = adopt;
    cfg.log = fopen(F.logpath, "a");
    for (int i = 0; i < GRETA_STAGE_COUNT; i++) {
        greta_stage_policy *p = &cfg.policy[i];
        greta_stage_policy_default(p);
        p->backoff_min_ms = 50;
        p->backoff_max_ms = 400;
        p->stable_ms = 5000;
        p->hang_timeout_ms = 500;
        p->start_grace_ms = 2000;
        p->argv[0] = FAKE_STAGE_PATH;
        p->argv[1] = "--instance";
        p->argv[2] = F.instance;
        p->argv[3] = "--stage";
        p->argv[4] = greta_stage_name(i);
    }
    int rc = greta_supervisor_run(&cfg, shm, &err);
    if (rc < 0)
        fprintf(stderr, "supervisor: %s\n", err.msg);
    fclose(cfg.log);
    greta_shm_detach(&shm);
    _exit(rc < 0 ? 11 : 0);
}

static int setup(void **state)
{
    (void)state;
    memset(&F, 0, sizeof F);
    const char *tmp = greta_test_tmpdir("supervisor");
    char xdg[GRETA_PATH_MAX];
    snprintf(xdg, sizeof xdg, "%s/xdg", tmp);
    mkdir(xdg, 0700);
    setenv("XDG_RUNTIME_DIR", xdg, 1);
    setenv("GRETA_HEARTBEAT_MS", "50", 1);
    snprintf(F.instance, sizeof F.instance, "sup-%d", (int)getpid());
    greta_error err = {0};
    assert_int_equal(greta_runtime_dir_create(F.instance, F.rundir, sizeof F.rundir, &err), 0);
    assert_int_equal(greta_shm_name(F.instance, F.shm_name, sizeof F.shm_name, &err), 0);
    snprintf(F.logpath, sizeof F.logpath, "%s/supervisor.log", F.rundir);
    unlink(F.logpath);
    greta_shm_unlink(F.shm_name, NULL);
    greta_shm_geometry g = {2, 64, 32, 0};
    assert_int_equal(greta_shm_create(F.shm_name, F.instance, &g, &F.shm, &err), 0);
    return 0;
}

static void kill_all(void)
{
    if (F.sup > 0) {
        kill(F.sup, SIGKILL);
        waitpid(F.sup, NULL, 0);
        F.sup = 0;
    }
    for (int i = 0; F.shm && i < GRETA_STAGE_COUNT; i++) {
        int pid = stage_pid(i);
        if (pid > 0) {
            kill(pid, SIGCONT);
            kill(pid, SIGKILL);
        }
    }
}

static int teardown(void **state)
{
    (void)state;
    kill_all();
    greta_shm_detach(&F.shm);
    greta_shm_unlink(F.shm_name, NULL);
    return 0;
}

static int control(int cmd, const char *stage, Greta__Envelope **reply)
{
    greta_error err = {0};
    int rc = greta_supervisor_control(F.rundir, cmd, stage, 3000, reply, &err);
    if (rc < 0)
        fprintf(stderr, "control: %s\n", err.msg);
    return rc;
}

static void test_restart_killed_stage(void **state)
{
    (void)state;
    F.sup = fork_supervisor(0, -1);
    assert_true(WAIT_FOR(all_running(), 5000));
    int old = stage_pid(GRETA_STAGE_SAMPLER);
    int tok = stage_pid(GRETA_STAGE_TOKENIZER);
    fprintf(stderr, "kill -9 sampler pid %d\n", old);
    kill(old, SIGKILL);
    assert_true(WAIT_FOR(stage_pid(GRETA_STAGE_SAMPLER) != old && stage_pid(GRETA_STAGE_SAMPLER) > 0 &&
                             stage_state(GRETA_STAGE_SAMPLER) == GRETA_STAGE_RUNNING,
                         5000));
    assert_int_equal(atomic_load(&greta_shm_stage_at(F.shm, GRETA_STAGE_SAMPLER)->restarts), 1);
    assert_int_equal(count_in_log("restart stage=sampler"), 1);
    assert_int_equal(count_in_log("reason=\"killed by signal 9\""), 1);
    assert_int_equal(count_in_log("restart stage="), 1); /* nothing else restarted */
    assert_int_equal(stage_pid(GRETA_STAGE_TOKENIZER), tok);

    /* status over the control socket */
    Greta__Envelope *r = NULL;
    assert_int_equal(control(GRETA__CONTROL__COMMAND__STATUS, "", &r), 0);
    assert_true(r->control_reply->ok);
    assert_int_equal(r->control_reply->supervisor_pid, F.sup);
    assert_int_equal(r->control_reply->n_stages, 3);
    assert_int_equal(r->control_reply->stages[1]->pid, stage_pid(GRETA_STAGE_SAMPLER));
    assert_int_equal(r->control_reply->stages[1]->restarts, 1);
    greta_msg_free(&r);

    /* restart on request */
    int w = stage_pid(GRETA_STAGE_WORKER);
    assert_int_equal(control(GRETA__CONTROL__COMMAND__RESTART, "gpu-worker", &r), 0);
    assert_true(r->control_reply->ok);
    greta_msg_free(&r);
    assert_true(WAIT_FOR(stage_pid(GRETA_STAGE_WORKER) != w && stage_state(GRETA_STAGE_WORKER) == GRETA_STAGE_RUNNING,
                         5000));
    assert_int_equal(count_in_log("restart stage=gpu-worker"), 1);
    assert_int_equal(count_in_log("reason=\"restart requested\" backoff_ms=0"), 1);
    /* an unknown stage is refused with a reason */
    assert_int_equal(control(GRETA__CONTROL__COMMAND__RESTART, "frontend", &r), 0);
    assert_false(r->control_reply->ok);
    char msg[256];
    assert_non_null(strstr(greta_msg_cstr(r->control_reply->message, msg, sizeof msg), "unknown stage"));
    greta_msg_free(&r);

    /* junk on the control socket: an error reply, and the supervisor still serves */
    void *zctx = zmq_ctx_new();
    greta_error err = {0};
    void *d = greta_zsock_new(zctx, ZMQ_DEALER, &err);
    char path[GRETA_PATH_MAX];
    greta_endpoint_path(F.rundir, GRETA_EP_SUPERVISOR, path, sizeof path, &err);
    greta_zsock_connect(d, path, &err);
    greta_zsend_raw(d, NULL, 0, "\x08\x07garbage", 9, &err);
    greta_zmsg m;
    assert_int_equal(greta_zrecv(d, 0, &m, 3000, &err), 1);
    assert_non_null(m.env);
    assert_int_equal(m.env->body_case, GRETA__ENVELOPE__BODY_ERROR);
    greta_zmsg_clear(&m);
    /* junk on the heartbeat socket: logged */
    void *p = greta_zsock_new(zctx, ZMQ_PUSH, &err);
    greta_endpoint_path(F.rundir, GRETA_EP_HEARTBEAT, path, sizeof path, &err);
    greta_zsock_connect(p, path, &err);
    greta_zsend_raw(p, NULL, 0, "\xff\xff\xff", 3, &err);
    assert_true(WAIT_FOR(count_in_log("heartbeat socket: rejected message") == 1, 3000));
    greta_zsock_close(&p);
    greta_zsock_close(&d);
    zmq_ctx_term(zctx);
    assert_int_equal(control(GRETA__CONTROL__COMMAND__STATUS, "", &r), 0);
    greta_msg_free(&r);

    /* shutdown: stages stop, the segment goes */
    int pids[3] = {stage_pid(0), stage_pid(1), stage_pid(2)};
    assert_int_equal(control(GRETA__CONTROL__COMMAND__SHUTDOWN, "", &r), 0);
    greta_msg_free(&r);
    int status;
    assert_int_equal(waitpid(F.sup, &status, 0), F.sup);
    F.sup = 0;
    assert_int_equal(WEXITSTATUS(status), 0);
    for (int i = 0; i < 3; i++)
        assert_false(greta_proc_alive(pids[i], 0));
    greta_shm *again = NULL;
    assert_int_equal(greta_shm_attach(F.shm_name, &again, &err), GRETA_ERR_NOT_FOUND);
}

static void test_hung_stage_replaced(void **state)
{
    (void)state;
    F.sup = fork_supervisor(0, -1);
    assert_true(WAIT_FOR(all_running(), 5000));
    int old = stage_pid(GRETA_STAGE_TOKENIZER);
    fprintf(stderr, "SIGSTOP tokenizer pid %d\n", old);
    kill(old, SIGSTOP);
    assert_true(WAIT_FOR(stage_pid(GRETA_STAGE_TOKENIZER) != old && stage_pid(GRETA_STAGE_TOKENIZER) > 0 &&
                             stage_state(GRETA_STAGE_TOKENIZER) == GRETA_STAGE_RUNNING,
                         5000));
    assert_false(greta_proc_alive(old, 0)); /* the stopped one was killed */
    assert_int_equal(count_in_log("restart stage=tokenizer"), 1);
    assert_int_equal(count_in_log("reason=\"hung: no heartbeat for"), 1);
    assert_int_equal(count_in_log("restart stage="), 1);
}

/* The supervisor itself stopped for three hang timeouts (a starved machine):
 * the beats it did not read meanwhile are not silence, so no stage is
 * killed; a stage that really stops is still caught afterwards. */
static void test_supervisor_pause_forgiven(void **state)
{
    (void)state;
    F.sup = fork_supervisor(0, -1);
    assert_true(WAIT_FOR(all_running(), 5000));
    int pids[3] = {stage_pid(0), stage_pid(1), stage_pid(2)};
    fprintf(stderr, "SIGSTOP supervisor pid %d for 1500 ms\n", F.sup);
    kill(F.sup, SIGSTOP);
    usleep(1500000);
    kill(F.sup, SIGCONT);
    assert_true(WAIT_FOR(count_in_log("supervisor did not run for ") >= 1, 5000));
    usleep(300000); /* several loop turns after the pause */
    for (int i = 0; i < 3; i++)
        assert_int_equal(stage_pid(i), pids[i]);
    assert_int_equal(count_in_log("hung: no heartbeat"), 0);
    assert_int_equal(count_in_log("restart stage="), 0);
    int old = stage_pid(GRETA_STAGE_SAMPLER);
    kill(old, SIGSTOP);
    assert_true(WAIT_FOR(stage_pid(GRETA_STAGE_SAMPLER) != old && stage_pid(GRETA_STAGE_SAMPLER) > 0 &&
                             stage_state(GRETA_STAGE_SAMPLER) == GRETA_STAGE_RUNNING,
                         5000));
    assert_int_equal(count_in_log("restart stage=sampler"), 1);
    assert_int_equal(count_in_log("restart stage="), 1);
}

static void test_backoff_doubles(void **state)
{
    (void)state;
    /* every stage crashes 30 ms after it starts */
    F.sup = fork_supervisor(0, 30);
    assert_true(WAIT_FOR(count_in_log("restart stage=sampler") >= 5, 8000));
    kill_all();
    /* the sampler's delays: 50, 100, 200, 400, 400 (capped) */
    size_t n;
    char *text = greta_read_file(F.logpath, &n);
    assert_non_null(text);
    int want[] = {50, 100, 200, 400, 400}, k = 0;
    for (char *p = text; k < 5 && (p = strstr(p, "restart stage=sampler")) != NULL; p++) {
        char *b = strstr(p, "backoff_ms=");
        assert_non_null(b);
        assert_int_equal(atoi(b + 11), want[k]);
        char *r = strstr(p, "restarts=");
        assert_int_equal(atoi(r + 9), k + 1);
        assert_non_null(strstr(p, "reason=\"exited with status 3\""));
        k++;
    }
    assert_int_equal(k, 5);
    free(text);
}

static void test_adopt_after_supervisor_death(void **state)
{
    (void)state;
    F.sup = fork_supervisor(0, -1);
    assert_true(WAIT_FOR(all_running(), 5000));
    int pids[3] = {stage_pid(0), stage_pid(1), stage_pid(2)};
    uint64_t gen = atomic_load(&greta_shm_hdr(F.shm)->generation);
    fprintf(stderr, "kill -9 supervisor pid %d\n", F.sup);
    kill(F.sup, SIGKILL);
    waitpid(F.sup, NULL, 0);
    F.sup = 0;
    /* the stages keep running without it; the segment is not stale */
    usleep(200000);
    for (int i = 0; i < 3; i++)
        assert_true(greta_proc_alive(pids[i], 0));
    assert_false(greta_shm_owner_alive(F.shm));
    assert_false(greta_shm_is_stale(F.shm));

    F.sup = fork_supervisor(1, -1);
    assert_true(WAIT_FOR(count_in_log("adopt stage=") == 3, 5000));
    assert_true(WAIT_FOR(greta_shm_owner_alive(F.shm), 2000));
    assert_true(atomic_load(&greta_shm_hdr(F.shm)->generation) == gen + 1);
    for (int i = 0; i < 3; i++)
        assert_int_equal(stage_pid(i), pids[i]); /* same processes */
    assert_int_equal(count_in_log("restart stage="), 0);
    /* heartbeats reach the new supervisor: nothing is declared hung */
    usleep(800000);
    for (int i = 0; i < 3; i++)
        assert_int_equal(stage_pid(i), pids[i]);

    /* an adopted stage (not its child) that dies is still replaced */
    kill(pids[GRETA_STAGE_WORKER], SIGKILL);
    assert_true(WAIT_FOR(stage_pid(GRETA_STAGE_WORKER) != pids[GRETA_STAGE_WORKER] &&
                             stage_state(GRETA_STAGE_WORKER) == GRETA_STAGE_RUNNING,
                         5000));
    assert_int_equal(count_in_log("restart stage=gpu-worker"), 1);
    assert_int_equal(count_in_log("restart stage="), 1);
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_restart_killed_stage, setup, teardown),
        cmocka_unit_test_setup_teardown(test_hung_stage_replaced, setup, teardown),
        cmocka_unit_test_setup_teardown(test_supervisor_pause_forgiven, setup, teardown),
        cmocka_unit_test_setup_teardown(test_backoff_doubles, setup, teardown),
        cmocka_unit_test_setup_teardown(test_adopt_after_supervisor_death, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
