/* supervisor.c - see supervisor.h. */
#include "supervisor.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "proto/endpoint.h"
#include "proto/heartbeat.h"
#include "proto/msg.h"
#include "proto/zsock.h"

/* Signal flags: the handlers set these and nothing else. */
static volatile sig_atomic_t g_sigchld;
static volatile sig_atomic_t g_sigterm;

static void on_sigchld(int sig)
{
    (void)sig;
    g_sigchld = 1;
}

static void on_sigterm(int sig)
{
    (void)sig;
    g_sigterm = 1;
}

/* Run-time bookkeeping of one stage (private to the supervisor). */
typedef struct stage_rt {
    int child;            /* 1: forked by us (waitpid); 0: adopted (pid + start time checks) */
    int64_t started_ms;   /* spawn or adoption time */
    int64_t restart_at_ms;
    int backoff_ms;       /* delay before the next restart */
    int requested;        /* restart asked for by Control RESTART: no backoff */
    int old_pid;
    int delay_ms;         /* backoff applied to the pending restart (for the log) */
    char reason[160];
    char logpath[GRETA_PATH_MAX + 32];
} stage_rt;

typedef struct sup {
    const greta_supervisor_config *cfg;
    greta_shm *shm;
    stage_rt rt[GRETA_STAGE_COUNT];
    int stop;
    int64_t last_check_ms; /* previous check_stages (0: none yet) */
} sup;

/* The main loop's poll period, and the lateness of a loop turn beyond it
 * that counts as the supervisor having been away (see check_stages). */
#define SUP_POLL_MS 50
#define SUP_AWAY_MS 100

void greta_stage_policy_default(greta_stage_policy *p)
{
    memset(p, 0, sizeof *p);
    p->restart = 1;
    p->backoff_min_ms = 100;
    p->backoff_max_ms = 5000;
    p->stable_ms = 10000;
    p->hang_timeout_ms = greta_hang_timeout_ms();
    p->start_grace_ms = 10000;
}

static void slog(sup *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void slog(sup *s, const char *fmt, ...)
{
    FILE *f = s->cfg->log;
    if (!f)
        return;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    struct tm tm;
    gmtime_r(&ts.tv_sec, &tm);
    char when[32];
    strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%S", &tm);
    fprintf(f, "%s.%03ldZ supervisor[%d]: ", when, ts.tv_nsec / 1000000, (int)getpid());
    va_list ap;
    va_start(ap, fmt);
    vfprintf(f, fmt, ap);
    va_end(ap);
    fputc('\n', f);
    fflush(f);
}

static int stage_of_proto(int proto_stage)
{
    switch (proto_stage) {
    case GRETA__STAGE__STAGE_TOKENIZER: return GRETA_STAGE_TOKENIZER;
    case GRETA__STAGE__STAGE_SAMPLER: return GRETA_STAGE_SAMPLER;
    case GRETA__STAGE__STAGE_WORKER: return GRETA_STAGE_WORKER;
    default: return -1;
    }
}

static void describe_status(int status, char *buf, size_t n)
{
    if (WIFEXITED(status))
        snprintf(buf, n, "exited with status %d", WEXITSTATUS(status));
    else if (WIFSIGNALED(status))
        snprintf(buf, n, "killed by signal %d", WTERMSIG(status));
    else
        snprintf(buf, n, "wait status 0x%x", (unsigned)status);
}

static int spawn(sup *s, int i)
{
    const greta_stage_policy *p = &s->cfg->policy[i];
    stage_rt *rt = &s->rt[i];
    greta_shm_stage *st = greta_shm_stage_at(s->shm, i);
    pid_t pid = fork();
    if (pid < 0) {
        slog(s, "stage %s: fork failed: %s", greta_stage_name(i), strerror(errno));
        return -1;
    }
    if (pid == 0) {
        /* child: only async-signal-safe calls until exec */
        struct sigaction sa;
        memset(&sa, 0, sizeof sa);
        sa.sa_handler = SIG_DFL;
        sigaction(SIGCHLD, &sa, NULL);
        sigaction(SIGTERM, &sa, NULL);
        sigaction(SIGINT, &sa, NULL);
        sigaction(SIGPIPE, &sa, NULL);
        sigset_t none;
        sigemptyset(&none);
        sigprocmask(SIG_SETMASK, &none, NULL);
        int fd = open(rt->logpath, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
        int nul = open("/dev/null", O_RDONLY | O_CLOEXEC);
        if (nul >= 0)
            dup2(nul, 0);
        if (fd >= 0) {
            dup2(fd, 1);
            dup2(fd, 2);
        }
        for (int k = 3; k < 1024; k++)
            close(k);
        execv(p->argv[0], (char *const *)p->argv);
        _exit(127);
    }
    int64_t now = greta_now_ms();
    rt->child = 1;
    rt->started_ms = now;
    rt->requested = 0;
    atomic_store(&st->start_time, greta_proc_start_time(pid));
    atomic_store(&st->heartbeat_ms, (uint64_t)now);
    atomic_store(&st->state, GRETA_STAGE_STARTING);
    atomic_store(&st->pid, (int32_t)pid);
    return (int)pid;
}

/* A stage was found dead: schedule its restart. */
static void stage_died(sup *s, int i, const char *why)
{
    const greta_stage_policy *p = &s->cfg->policy[i];
    stage_rt *rt = &s->rt[i];
    greta_shm_stage *st = greta_shm_stage_at(s->shm, i);
    int pid = atomic_load(&st->pid);
    int64_t now = greta_now_ms();
    if (!rt->reason[0])
        snprintf(rt->reason, sizeof rt->reason, "%s", why);
    slog(s, "stage %s (pid %d) died: %s", greta_stage_name(i), pid, rt->reason);
    rt->old_pid = pid;
    atomic_store(&st->pid, 0);
    atomic_store(&st->start_time, 0);
    if (!p->restart || s->stop) {
        atomic_store(&st->state, GRETA_STAGE_STOPPED);
        return;
    }
    int delay;
    if (rt->requested) {
        delay = 0;
    } else {
        if (now - rt->started_ms >= p->stable_ms || rt->backoff_ms <= 0)
            rt->backoff_ms = p->backoff_min_ms;
        delay = rt->backoff_ms;
        rt->backoff_ms = rt->backoff_ms * 2 > p->backoff_max_ms ? p->backoff_max_ms : rt->backoff_ms * 2;
    }
    rt->restart_at_ms = now + delay;
    rt->delay_ms = delay;
    atomic_store(&st->state, GRETA_STAGE_BACKOFF);
}

static void do_restart(sup *s, int i)
{
    stage_rt *rt = &s->rt[i];
    greta_shm_stage *st = greta_shm_stage_at(s->shm, i);
    int delay = rt->delay_ms;
    int pid = spawn(s, i);
    if (pid < 0) {
        rt->restart_at_ms = greta_now_ms() + s->cfg->policy[i].backoff_max_ms;
        return;
    }
    unsigned n = atomic_fetch_add(&st->restarts, 1) + 1;
    slog(s, "restart stage=%s old_pid=%d new_pid=%d reason=\"%s\" backoff_ms=%d restarts=%u",
         greta_stage_name(i), rt->old_pid, pid, rt->reason, delay, n);
    rt->reason[0] = '\0';
}

static void reap(sup *s)
{
    int status;
    pid_t pid;
    while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
        for (int i = 0; i < GRETA_STAGE_COUNT; i++) {
            greta_shm_stage *st = greta_shm_stage_at(s->shm, i);
            if (atomic_load(&st->pid) == pid && s->rt[i].child) {
                char why[96];
                describe_status(status, why, sizeof why);
                stage_died(s, i, why);
            }
        }
    }
}

static void check_stages(sup *s)
{
    int64_t now = greta_now_ms();
    /* A heartbeat's age is measured from when the supervisor read it. While
     * the supervisor itself did not run (a starved machine, a blocking log
     * write, the adoption waits of on_control), the stages' beats piled up
     * unread and would look like silence: that time is not held against
     * them. A stage that is really stopped is still caught, that much later. */
    int64_t away = s->last_check_ms ? now - s->last_check_ms - SUP_POLL_MS : 0;
    s->last_check_ms = now;
    if (away > SUP_AWAY_MS) {
        for (int i = 0; i < GRETA_STAGE_COUNT; i++) {
            greta_shm_stage *st = greta_shm_stage_at(s->shm, i);
            int64_t hb = (int64_t)atomic_load(&st->heartbeat_ms);
            atomic_store(&st->heartbeat_ms, (uint64_t)(hb + away < now ? hb + away : now));
        }
        slog(s, "supervisor did not run for %lld ms: heartbeat ages paused", (long long)(away + SUP_POLL_MS));
    }
    for (int i = 0; i < GRETA_STAGE_COUNT; i++) {
        const greta_stage_policy *p = &s->cfg->policy[i];
        stage_rt *rt = &s->rt[i];
        greta_shm_stage *st = greta_shm_stage_at(s->shm, i);
        int state = (int)atomic_load(&st->state);
        int pid = atomic_load(&st->pid);
        if (state == GRETA_STAGE_BACKOFF) {
            if (now >= rt->restart_at_ms && !s->stop)
                do_restart(s, i);
            continue;
        }
        if (state != GRETA_STAGE_RUNNING && state != GRETA_STAGE_STARTING)
            continue;
        /* adopted stages are not our children: look at /proc */
        if (!rt->child && !greta_proc_alive(pid, atomic_load(&st->start_time))) {
            stage_died(s, i, "process gone");
            continue;
        }
        int64_t last = (int64_t)atomic_load(&st->heartbeat_ms);
        int64_t limit = p->hang_timeout_ms + (state == GRETA_STAGE_STARTING ? p->start_grace_ms : 0);
        if (now - last > limit && !rt->reason[0]) {
            snprintf(rt->reason, sizeof rt->reason, "hung: no heartbeat for %lld ms", (long long)(now - last));
            slog(s, "stage %s (pid %d) %s; killing it", greta_stage_name(i), pid, rt->reason);
            kill(pid, SIGKILL);
            if (!rt->child) {
                /* not ours to reap: wait briefly for it to go */
                for (int k = 0; k < 100 && greta_proc_alive(pid, 0); k++)
                    usleep(10000);
                stage_died(s, i, rt->reason);
            }
        }
    }
}

static void on_heartbeat(sup *s, const Greta__Envelope *e)
{
    int proto_stage = e->body_case == GRETA__ENVELOPE__BODY_HELLO ? e->hello->stage : e->heartbeat->stage;
    int pid = e->body_case == GRETA__ENVELOPE__BODY_HELLO ? e->hello->pid : e->heartbeat->pid;
    int i = stage_of_proto(proto_stage);
    if (i < 0)
        return;
    greta_shm_stage *st = greta_shm_stage_at(s->shm, i);
    if (atomic_load(&st->pid) != pid)
        return; /* a process we no longer track (killed, or a stray) */
    atomic_store(&st->heartbeat_ms, (uint64_t)greta_now_ms());
    if (e->body_case == GRETA__ENVELOPE__BODY_HELLO && atomic_load(&st->state) == GRETA_STAGE_STARTING) {
        atomic_store(&st->state, GRETA_STAGE_RUNNING);
        slog(s, "stage %s (pid %d) running", greta_stage_name(i), pid);
    }
}

static void on_control(sup *s, void *ctl, const greta_zmsg *m)
{
    const Greta__Control *c = m->env->control;
    Greta__Envelope env;
    Greta__ControlReply r = GRETA__CONTROL_REPLY__INIT;
    Greta__StageInfo info[GRETA_STAGE_COUNT];
    Greta__StageInfo *pinfo[GRETA_STAGE_COUNT];
    char msg[160] = "";
    char name[32];
    greta_msg_init(&env, m->request_id);
    r.ok = 1;
    r.supervisor_pid = (int32_t)getpid();
    if (c->command == GRETA__CONTROL__COMMAND__RESTART) {
        greta_msg_cstr(c->stage, name, sizeof name);
        int i = greta_stage_from_name(name);
        if (i < 0) {
            r.ok = 0;
            snprintf(msg, sizeof msg, "control.stage: unknown stage '%s' (tokenizer, sampler, gpu-worker)", name);
        } else {
            greta_shm_stage *st = greta_shm_stage_at(s->shm, i);
            int pid = atomic_load(&st->pid);
            if (pid > 0 && !s->rt[i].reason[0]) {
                s->rt[i].requested = 1;
                snprintf(s->rt[i].reason, sizeof s->rt[i].reason, "restart requested");
                kill(pid, SIGTERM);
                if (!s->rt[i].child) {
                    for (int k = 0; k < 200 && greta_proc_alive(pid, 0); k++)
                        usleep(10000);
                    if (greta_proc_alive(pid, 0))
                        kill(pid, SIGKILL);
                    stage_died(s, i, "restart requested");
                }
                snprintf(msg, sizeof msg, "restarting %s (pid %d)", name, pid);
            } else {
                snprintf(msg, sizeof msg, "%s is not running; it starts after its backoff", name);
            }
        }
    } else if (c->command == GRETA__CONTROL__COMMAND__SHUTDOWN) {
        s->stop = 1;
        snprintf(msg, sizeof msg, "shutting down");
    }
    int64_t now = greta_now_ms();
    for (int i = 0; i < GRETA_STAGE_COUNT; i++) {
        greta_shm_stage *st = greta_shm_stage_at(s->shm, i);
        greta__stage_info__init(&info[i]);
        info[i].name = greta_msg_bytes(greta_stage_name(i));
        info[i].pid = atomic_load(&st->pid);
        info[i].restarts = atomic_load(&st->restarts);
        info[i].state = greta_msg_bytes(greta_stage_state_name((int)atomic_load(&st->state)));
        int64_t hb = (int64_t)atomic_load(&st->heartbeat_ms);
        info[i].heartbeat_age_ms = now > hb ? (uint64_t)(now - hb) : 0;
        pinfo[i] = &info[i];
    }
    r.n_stages = GRETA_STAGE_COUNT;
    r.stages = pinfo;
    r.message = greta_msg_bytes(msg);
    env.body_case = GRETA__ENVELOPE__BODY_CONTROL_REPLY;
    env.control_reply = &r;
    greta_zsend(ctl, m->rid, m->rid_len, &env, NULL);
}

static void shutdown_stages(sup *s)
{
    for (int i = 0; i < GRETA_STAGE_COUNT; i++) {
        int pid = atomic_load(&greta_shm_stage_at(s->shm, i)->pid);
        if (pid > 0)
            kill(pid, SIGTERM);
    }
    for (int k = 0; k < 200; k++) {
        int alive = 0;
        reap(s);
        for (int i = 0; i < GRETA_STAGE_COUNT; i++) {
            greta_shm_stage *st = greta_shm_stage_at(s->shm, i);
            int pid = atomic_load(&st->pid);
            if (pid > 0 && greta_proc_alive(pid, atomic_load(&st->start_time)))
                alive++;
            else if (pid > 0)
                stage_died(s, i, "shut down");
        }
        if (!alive)
            break;
        usleep(10000);
    }
    for (int i = 0; i < GRETA_STAGE_COUNT; i++) {
        greta_shm_stage *st = greta_shm_stage_at(s->shm, i);
        int pid = atomic_load(&st->pid);
        if (pid > 0) {
            slog(s, "stage %s (pid %d) ignored SIGTERM; SIGKILL", greta_stage_name(i), pid);
            kill(pid, SIGKILL);
            waitpid(pid, NULL, 0);
            stage_died(s, i, "killed at shutdown");
        }
        atomic_store(&st->state, GRETA_STAGE_STOPPED);
    }
}

int greta_supervisor_run(const greta_supervisor_config *cfg, greta_shm *shm, greta_error *err)
{
    sup s;
    memset(&s, 0, sizeof s);
    s.cfg = cfg;
    s.shm = shm;
    g_sigchld = 0;
    g_sigterm = 0;
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_sigchld;
    sa.sa_flags = SA_NOCLDSTOP;
    sigaction(SIGCHLD, &sa, NULL);
    sa.sa_handler = on_sigterm;
    sa.sa_flags = 0;
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);

    char hb_path[GRETA_PATH_MAX], ctl_path[GRETA_PATH_MAX];
    int rc = greta_endpoint_path(cfg->rundir, GRETA_EP_HEARTBEAT, hb_path, sizeof hb_path, err);
    if (rc == 0)
        rc = greta_endpoint_path(cfg->rundir, GRETA_EP_SUPERVISOR, ctl_path, sizeof ctl_path, err);
    if (rc < 0)
        return rc;
    void *zctx = zmq_ctx_new();
    void *hb = greta_zsock_new(zctx, ZMQ_PULL, err);
    void *ctl = hb ? greta_zsock_new(zctx, ZMQ_ROUTER, err) : NULL;
    if (!hb || !ctl || greta_zsock_bind(hb, hb_path, err) < 0 || greta_zsock_bind(ctl, ctl_path, err) < 0) {
        greta_zsock_close(&hb);
        greta_zsock_close(&ctl);
        zmq_ctx_term(zctx);
        return err ? err->code : GRETA_ERR_IO;
    }

    greta_shm_header *h = greta_shm_hdr(shm);
    if (atomic_load(&h->owner_pid) != (int32_t)getpid())
        greta_shm_take_ownership(shm); /* adoption (a creator already owns it) */
    slog(&s, "instance %s: supervisor up (generation %llu)", cfg->instance,
         (unsigned long long)atomic_load(&h->generation));
    for (int i = 0; i < GRETA_STAGE_COUNT; i++) {
        stage_rt *rt = &s.rt[i];
        greta_shm_stage *st = greta_shm_stage_at(shm, i);
        snprintf(rt->logpath, sizeof rt->logpath, "%s/%s.log", cfg->rundir, greta_stage_name(i));
        rt->backoff_ms = cfg->policy[i].backoff_min_ms;
        int pid = atomic_load(&st->pid);
        if (cfg->adopt && pid > 0 && greta_proc_alive(pid, atomic_load(&st->start_time))) {
            rt->child = 0;
            rt->started_ms = greta_now_ms();
            atomic_store(&st->heartbeat_ms, (uint64_t)greta_now_ms());
            atomic_store(&st->state, GRETA_STAGE_RUNNING);
            slog(&s, "adopt stage=%s pid=%d", greta_stage_name(i), pid);
        } else {
            int npid = spawn(&s, i);
            slog(&s, "start stage=%s pid=%d", greta_stage_name(i), npid);
        }
    }

    if (cfg->on_ready)
        cfg->on_ready(cfg->ready_ctx);
    while (!s.stop && !g_sigterm) {
        zmq_pollitem_t items[2] = {{hb, 0, ZMQ_POLLIN, 0}, {ctl, 0, ZMQ_POLLIN, 0}};
        int n = zmq_poll(items, 2, SUP_POLL_MS);
        if (n > 0) {
            greta_zmsg m;
            greta_error e = {0};
            for (int k = 0; k < 64 && greta_zrecv(hb, 0, &m, 0, &e) == 1; k++) {
                if (m.env && (m.env->body_case == GRETA__ENVELOPE__BODY_HELLO ||
                              m.env->body_case == GRETA__ENVELOPE__BODY_HEARTBEAT))
                    on_heartbeat(&s, m.env);
                else
                    slog(&s, "heartbeat socket: rejected message: %s",
                         m.env ? "not a hello/heartbeat" : m.err.msg);
                greta_zmsg_clear(&m);
            }
            while (greta_zrecv(ctl, 1, &m, 0, &e) == 1) {
                if (m.env && m.env->body_case == GRETA__ENVELOPE__BODY_CONTROL) {
                    on_control(&s, ctl, &m);
                } else {
                    const char *why = m.env ? "control socket takes Control messages only" : m.err.msg;
                    slog(&s, "control socket: rejected message: %s", why);
                    greta_zsend_error(ctl, m.rid, m.rid_len, m.request_id, m.env ? GRETA_ERR_INVALID : m.err.code,
                                      why);
                }
                greta_zmsg_clear(&m);
            }
        }
        g_sigchld = 0;
        reap(&s);
        check_stages(&s);
    }
    slog(&s, "instance %s: shutting down%s", cfg->instance, g_sigterm ? " (signal)" : "");
    s.stop = 1;
    shutdown_stages(&s);
    greta_zsock_close(&hb);
    greta_zsock_close(&ctl);
    zmq_ctx_term(zctx);
    greta_shm_unlink(cfg->shm_name, NULL);
    greta_runtime_dir_clean(cfg->rundir, 0);
    slog(&s, "instance %s: down", cfg->instance);
    return GRETA_OK;
}

int greta_supervisor_control(const char *rundir, int command, const char *stage, int timeout_ms,
                             struct Greta__Envelope **reply, greta_error *err)
{
    *reply = NULL;
    char path[GRETA_PATH_MAX];
    int rc = greta_endpoint_path(rundir, GRETA_EP_SUPERVISOR, path, sizeof path, err);
    if (rc < 0)
        return rc;
    void *zctx = zmq_ctx_new();
    void *d = greta_zsock_new(zctx, ZMQ_DEALER, err);
    if (!d) {
        zmq_ctx_term(zctx);
        return GRETA_ERR_IO;
    }
    rc = greta_zsock_connect(d, path, err);
    uint64_t rid = ((uint64_t)getpid() << 32) ^ (uint64_t)greta_now_ms();
    if (rc == 0) {
        Greta__Envelope env;
        Greta__Control c = GRETA__CONTROL__INIT;
        greta_msg_init(&env, rid);
        c.command = command;
        c.stage = greta_msg_bytes(stage);
        env.body_case = GRETA__ENVELOPE__BODY_CONTROL;
        env.control = &c;
        rc = greta_zsend(d, NULL, 0, &env, err);
    }
    int64_t deadline = greta_now_ms() + timeout_ms;
    while (rc == 0) {
        int64_t left = deadline - greta_now_ms();
        if (left <= 0) {
            rc = greta_error_set(err, GRETA_ERR_TIMEOUT, "supervisor at '%s': no answer in %d ms", path,
                                 timeout_ms);
            break;
        }
        greta_zmsg m;
        int r = greta_zrecv(d, 0, &m, (int)left, err);
        if (r < 0) {
            rc = r;
            break;
        }
        if (r == 0)
            continue;
        if (m.env && m.request_id == rid && m.env->body_case == GRETA__ENVELOPE__BODY_CONTROL_REPLY) {
            *reply = m.env;
            break;
        }
        if (m.env && m.request_id == rid && m.env->body_case == GRETA__ENVELOPE__BODY_ERROR) {
            char msg[256];
            rc = greta_error_set(err, m.env->error->code, "supervisor: %s",
                                 greta_msg_cstr(m.env->error->message, msg, sizeof msg));
        }
        greta_zmsg_clear(&m);
    }
    greta_zsock_close(&d);
    zmq_ctx_term(zctx);
    return rc;
}
