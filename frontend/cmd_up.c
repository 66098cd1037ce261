/* cmd_up.c - `greta up`, `greta down`, `greta status`, `greta restart STAGE`:
 * start, stop, inspect and poke a pipeline instance (frontend/supervisor.h).
 *
 *   greta up [-m MODEL] [--instance NAME] [--backend cpu|gpu] [--slots N]
 *            [--ctx N] [-t THREADS] [--trace DIR]
 *   greta down [--instance NAME]
 *   greta status [--instance NAME]
 *   greta restart STAGE [--instance NAME]
 *
 * `up` creates the runtime directory and forks the supervisor into the
 * background (its own session; log in <runtime dir>/supervisor.log), which
 * creates the segment and starts greta-tokenizer, greta-sampler and
 * greta-gpu-worker from the directory of this `greta` binary; `up` returns
 * once every stage said Hello. If the instance's supervisor is dead but
 * stages still run, `up` starts a supervisor that adopts them; a segment
 * left by a dead instance is removed first.
 *
 * Exit status: 0 ok, 1 failure (status: not up), 2 usage.
 */
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "commands.h"
#include "common/model.h"
#include "gpu-worker/engine.h"
#include "proto/endpoint.h"
#include "proto/heartbeat.h"
#include "proto/msg.h"
#include "proto/shm.h"
#include "proto/zsock.h"
#include "supervisor.h"

#define UP_DEFAULT_SLOTS 4
#define UP_WAIT_MS 60000

typedef struct up_opts {
    const char *model;
    const char *instance;
    const char *backend;
    const char *trace;
    int32_t slots, ctx, threads;
} up_opts;

static void usage(FILE *f)
{
    fprintf(f, "usage: greta up [-m MODEL] [--instance NAME] [--backend cpu|gpu] [--slots N]\n"
               "                [--ctx N] [-t THREADS] [--trace DIR]\n"
               "       greta down [--instance NAME]\n"
               "       greta status [--instance NAME]\n"
               "       greta restart tokenizer|sampler|gpu-worker [--instance NAME]\n"
               "  up       starts the pipeline stages under a background supervisor (default\n"
               "           instance 'default', %d slots, context min(model, %d), model %s)\n"
               "  down     stops them and removes the instance's segment and sockets\n"
               "  status   shows the supervisor and each stage (pid, state, restarts)\n"
               "  restart  replaces one stage (requests in flight continue)\n"
               "  --trace DIR  every stage writes Chrome trace events to DIR (greta trace DIR)\n",
               UP_DEFAULT_SLOTS, GRETA_DEFAULT_CTX_MAX, GRETA_DEFAULT_MODEL);
}

static int parse_int(const char *flag, const char *s, int lo, int hi, int32_t *out)
{
    char *end;
    errno = 0;
    long v = s ? strtol(s, &end, 10) : 0;
    if (!s || end == s || *end || errno || v < lo || v > hi) {
        fprintf(stderr, "greta: %s needs an integer in %d..%d (got '%s')\n", flag, lo, hi, s ? s : "");
        return -1;
    }
    *out = (int32_t)v;
    return 0;
}

/* Parses the flags common to the four commands; positional -> *pos. */
static int parse(int argc, char **argv, up_opts *o, const char **pos, int allow_up_flags)
{
    memset(o, 0, sizeof *o);
    o->instance = "default";
    o->threads = -1;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            return 1;
        } else if (!strcmp(a, "--instance") && v) {
            o->instance = v;
            i++;
        } else if (allow_up_flags && !strcmp(a, "-m") && v) {
            o->model = v;
            i++;
        } else if (allow_up_flags && !strcmp(a, "--backend") && v) {
            o->backend = v;
            i++;
        } else if (allow_up_flags && !strcmp(a, "--trace") && v) {
            o->trace = v;
            i++;
        } else if (allow_up_flags && !strcmp(a, "--slots")) {
            if (parse_int(a, v, 1, GRETA_SHM_MAX_SLOTS, &o->slots) < 0)
                return -1;
            i++;
        } else if (allow_up_flags && !strcmp(a, "--ctx")) {
            if (parse_int(a, v, 2, (int)GRETA_SHM_MAX_CTX, &o->ctx) < 0)
                return -1;
            i++;
        } else if (allow_up_flags && !strcmp(a, "-t")) {
            if (parse_int(a, v, 0, 4096, &o->threads) < 0)
                return -1;
            i++;
        } else if (pos && !*pos && a[0] != '-') {
            *pos = a;
        } else {
            fprintf(stderr, "greta %s: unexpected argument '%s'\n", argv[0], a);
            usage(stderr);
            return -1;
        }
    }
    greta_error err = {0};
    if (greta_instance_check(o->instance, &err) < 0) {
        fprintf(stderr, "greta %s: %s\n", argv[0], err.msg);
        return -1;
    }
    if (o->backend && strcmp(o->backend, "cpu") && strcmp(o->backend, "gpu")) {
        fprintf(stderr, "greta %s: --backend must be cpu or gpu (got '%s')\n", argv[0], o->backend);
        return -1;
    }
    return 0;
}

/* ---- status ------------------------------------------------------------------ */

static void print_status(greta_shm *shm, FILE *f)
{
    greta_shm_header *h = greta_shm_hdr(shm);
    int alive = greta_shm_owner_alive(shm);
    fprintf(f, "instance %s: supervisor pid %d (%s), generation %llu\n", h->instance, atomic_load(&h->owner_pid),
            alive ? "running" : "dead", (unsigned long long)atomic_load(&h->generation));
    fprintf(f, "model %s, backend %s, %u slots x %u ctx, vocab %u%s%s\n", h->model_path, h->backend, h->n_slots,
            h->n_ctx, h->n_vocab, h->trace_dir[0] ? ", tracing to " : "", h->trace_dir);
    int64_t now = greta_now_ms();
    fprintf(f, "%-12s %8s %-9s %8s %14s\n", "stage", "pid", "state", "restarts", "heartbeat_ms");
    for (int i = 0; i < GRETA_STAGE_COUNT; i++) {
        greta_shm_stage *st = greta_shm_stage_at(shm, i);
        int64_t hb = (int64_t)atomic_load(&st->heartbeat_ms);
        fprintf(f, "%-12s %8d %-9s %8u %14lld\n", greta_stage_name(i), atomic_load(&st->pid),
                greta_stage_state_name((int)atomic_load(&st->state)), atomic_load(&st->restarts),
                (long long)(hb && now > hb ? now - hb : 0));
    }
    uint32_t active = 0;
    for (uint32_t i = 0; i < h->n_slots; i++)
        active += atomic_load(&greta_shm_slot_at(shm, i)->state) != GRETA_SLOT_FREE;
    fprintf(f, "requests in slots: %u of %u\n", active, h->n_slots);
}

int cmd_status(int argc, char **argv)
{
    up_opts o;
    int rc = parse(argc, argv, &o, NULL, 0);
    if (rc)
        return rc > 0 ? 0 : 2;
    char name[128];
    greta_error err = {0};
    greta_shm *shm = NULL;
    if (greta_shm_name(o.instance, name, sizeof name, &err) < 0 || greta_shm_attach(name, &shm, &err) < 0) {
        if (err.code == GRETA_ERR_NOT_FOUND)
            printf("instance %s is not up\n", o.instance);
        else
            fprintf(stderr, "greta status: %s\n", err.msg);
        return 1;
    }
    print_status(shm, stdout);
    int up = greta_shm_owner_alive(shm);
    greta_shm_detach(&shm);
    return up ? 0 : 1;
}

/* ---- up ---------------------------------------------------------------------- */

/* The directory of this executable, where the stage binaries are. */
static int bin_dir(char *buf, size_t n)
{
    char exe[4096];
    ssize_t k = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (k <= 0)
        return -1;
    exe[k] = '\0';
    snprintf(buf, n, "%s", dirname(exe));
    return 0;
}

typedef struct up_plan {
    up_opts o;
    char rundir[GRETA_PATH_MAX];
    char shm_name[128];
    char model[GRETA_SHM_PATH_LEN];
    char trace[GRETA_SHM_PATH_LEN];
    char bins[GRETA_STAGE_COUNT][4096 + 32];
    greta_shm_geometry g;
    int adopt;
} up_plan;

static void report_ok(void *ctx)
{
    int fd = *(int *)ctx;
    if (fd >= 0 && write(fd, "ok", 2) < 0) {
        /* the parent is gone: carry on */
    }
    if (fd >= 0)
        close(fd);
    *(int *)ctx = -1;
}

/* Runs in the background child: creates (or adopts) the segment, reports on
 * fd ("ok" once the stages are started or adopted, else the error), then
 * supervises until shutdown. Never returns. */
static void supervisor_main(up_plan *p, int fd)
{
    setsid();
    umask(077);
    char logpath[GRETA_PATH_MAX + 32];
    snprintf(logpath, sizeof logpath, "%s/supervisor.log", p->rundir);
    FILE *log = fopen(logpath, "a");
    int nul = open("/dev/null", O_RDWR);
    if (log) {
        dup2(fileno(log), 1);
        dup2(fileno(log), 2);
    }
    if (nul >= 0)
        dup2(nul, 0);
    /* keep no descriptor of the caller (a pipe it reads to EOF, ...) */
    for (int k = 3; k < 1024; k++)
        if (k != fd && (!log || k != fileno(log)))
            close(k);
    greta_error err = {0};
    greta_shm *shm = NULL;
    int rc;
    if (p->adopt) {
        rc = greta_shm_attach(p->shm_name, &shm, &err);
        if (rc == 0)
            greta_shm_take_ownership(shm); /* before "ok": `up` then sees a live owner */
    } else {
        rc = greta_shm_create(p->shm_name, p->o.instance, &p->g, &shm, &err);
        if (rc == 0) {
            greta_shm_header *h = greta_shm_hdr(shm);
            snprintf(h->model_path, sizeof h->model_path, "%s", p->model);
            snprintf(h->backend, sizeof h->backend, "%s", p->o.backend ? p->o.backend : "cpu");
            snprintf(h->trace_dir, sizeof h->trace_dir, "%s", p->trace);
            h->n_threads = p->o.threads > 0 ? p->o.threads : 0;
        }
    }
    if (rc < 0) {
        if (write(fd, err.msg, strlen(err.msg)) < 0) {
            /* the parent is gone */
        }
        _exit(1);
    }
    greta_supervisor_config cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.instance = p->o.instance;
    cfg.rundir = p->rundir;
    cfg.shm_name = p->shm_name;
    cfg.log = log ? log : stderr;
    cfg.adopt = p->adopt;
    cfg.on_ready = report_ok;
    cfg.ready_ctx = &fd;
    /* the worker gets backend and threads from the segment (as stored at
     * creation, so an adopting supervisor starts it the same way) */
    greta_shm_header *h = greta_shm_hdr(shm);
    char threads[16];
    snprintf(threads, sizeof threads, "%d", h->n_threads);
    for (int i = 0; i < GRETA_STAGE_COUNT; i++) {
        greta_stage_policy *pol = &cfg.policy[i];
        greta_stage_policy_default(pol);
        pol->argv[0] = p->bins[i];
        pol->argv[1] = "--instance";
        pol->argv[2] = p->o.instance;
        if (i == GRETA_STAGE_WORKER) {
            pol->argv[3] = "--backend";
            pol->argv[4] = h->backend[0] ? h->backend : "cpu";
            pol->argv[5] = "--threads";
            pol->argv[6] = threads;
        }
    }
    rc = greta_supervisor_run(&cfg, shm, &err);
    if (rc < 0) {
        fprintf(cfg.log, "supervisor: %s\n", err.msg);
        if (fd >= 0 && write(fd, err.msg, strlen(err.msg)) < 0) {
            /* the parent is gone */
        }
    }
    greta_shm_detach(&shm);
    _exit(rc < 0 ? 1 : 0);
}

/* The stage binaries, next to this one. */
static int find_bins(up_plan *p, greta_error *err)
{
    char dir[4096];
    if (bin_dir(dir, sizeof dir) < 0)
        return greta_error_set(err, GRETA_ERR_IO, "cannot find the directory of the greta binary");
    for (int i = 0; i < GRETA_STAGE_COUNT; i++) {
        snprintf(p->bins[i], sizeof p->bins[i], "%s/greta-%s", dir, greta_stage_name(i));
        if (access(p->bins[i], X_OK) != 0)
            return greta_error_set(err, GRETA_ERR_NOT_FOUND, "stage binary '%s' is missing (build it)", p->bins[i]);
    }
    return GRETA_OK;
}

/* Model, geometry and trace directory of a new instance. */
static int plan_up(up_plan *p, greta_error *err)
{
    int rc;
    char path[4096];
    const char *model = p->o.model;
    if (!model) {
        if ((rc = greta_engine_default_model(path, sizeof path, err)) < 0)
            return rc;
        model = path;
    }
    char *abs = realpath(model, NULL);
    if (!abs)
        return greta_error_set(err, GRETA_ERR_IO, "model '%s': %s", model, strerror(errno));
    if (strlen(abs) >= sizeof p->model) {
        free(abs);
        return greta_error_set(err, GRETA_ERR_LIMIT, "model path longer than %zu bytes", sizeof p->model - 1);
    }
    snprintf(p->model, sizeof p->model, "%s", abs);
    free(abs);
    gguf_file *f = NULL;
    greta_model_config cfg;
    if ((rc = gguf_open(p->model, &f, err)) < 0)
        return greta_error_prefix(err, "model '%s'", p->model);
    rc = greta_model_config_read(f, &cfg, err);
    gguf_close(&f);
    if (rc < 0)
        return greta_error_prefix(err, "model '%s'", p->model);
#ifndef GRETA_HAVE_GPU
    if (p->o.backend && !strcmp(p->o.backend, "gpu"))
        return greta_error_set(err, GRETA_ERR_UNSUPPORTED,
                               "--backend gpu: this build has no GPU backend (configure with -DGRETA_GPU=cuda or hip)");
#endif
    uint32_t ctx = cfg.context_length && cfg.context_length < GRETA_DEFAULT_CTX_MAX ? cfg.context_length
                                                                                    : GRETA_DEFAULT_CTX_MAX;
    if (p->o.ctx)
        ctx = (uint32_t)p->o.ctx;
    p->g = (greta_shm_geometry){(uint32_t)(p->o.slots ? p->o.slots : UP_DEFAULT_SLOTS), ctx, cfg.vocab_size, 64};
    greta_shm_layout l;
    if ((rc = greta_shm_layout_compute(&p->g, &l, err)) < 0)
        return rc;
    if (p->o.trace) {
        if (mkdir(p->o.trace, 0700) != 0 && errno != EEXIST)
            return greta_error_set(err, GRETA_ERR_IO, "--trace '%s': %s", p->o.trace, strerror(errno));
        char *t = realpath(p->o.trace, NULL);
        if (!t || strlen(t) >= sizeof p->trace) {
            free(t);
            return greta_error_set(err, GRETA_ERR_IO, "--trace '%s': unusable path", p->o.trace);
        }
        snprintf(p->trace, sizeof p->trace, "%s", t);
        free(t);
    }
    return GRETA_OK;
}

/* Prints the last lines of a stage's log (why it does not start). */
static void print_log_tail(const char *rundir, const char *stage)
{
    char path[GRETA_PATH_MAX + 32];
    snprintf(path, sizeof path, "%s/%s.log", rundir, stage);
    FILE *f = fopen(path, "r");
    if (!f)
        return;
    char lines[5][512];
    int n = 0;
    while (fgets(lines[n % 5], sizeof lines[0], f))
        n++;
    fclose(f);
    fprintf(stderr, "last lines of %s:\n", path);
    for (int i = n > 5 ? n - 5 : 0; i < n; i++)
        fprintf(stderr, "  %s", lines[i % 5]);
}

static int wait_running(const char *shm_name, const char *rundir, int timeout_ms, greta_error *err)
{
    int64_t end = greta_now_ms() + timeout_ms;
    greta_shm *shm = NULL;
    while (greta_now_ms() < end) {
        if (!shm && greta_shm_attach(shm_name, &shm, NULL) < 0) {
            usleep(20000);
            continue;
        }
        int running = 0;
        for (int i = 0; i < GRETA_STAGE_COUNT; i++) {
            running += atomic_load(&greta_shm_stage_at(shm, i)->state) == GRETA_STAGE_RUNNING;
            if (atomic_load(&greta_shm_stage_at(shm, i)->restarts) >= 3 &&
                atomic_load(&greta_shm_stage_at(shm, i)->state) != GRETA_STAGE_RUNNING) {
                print_log_tail(rundir, greta_stage_name(i));
                greta_shm_detach(&shm);
                return greta_error_set(err, GRETA_ERR_STATE,
                                       "stage %s keeps failing to start (the supervisor keeps trying; "
                                       "`greta down` stops it)",
                                       greta_stage_name(i));
            }
        }
        if (!greta_shm_owner_alive(shm)) {
            greta_shm_detach(&shm);
            return greta_error_set(err, GRETA_ERR_STATE, "the supervisor died (see its log)");
        }
        if (running == GRETA_STAGE_COUNT) {
            print_status(shm, stdout);
            greta_shm_detach(&shm);
            return GRETA_OK;
        }
        usleep(20000);
    }
    greta_shm_detach(&shm);
    return greta_error_set(err, GRETA_ERR_TIMEOUT, "the stages did not all start within %d ms", timeout_ms);
}

int cmd_up(int argc, char **argv)
{
    up_plan p;
    memset(&p, 0, sizeof p);
    int rc = parse(argc, argv, &p.o, NULL, 1);
    if (rc)
        return rc > 0 ? 0 : 2;
    greta_error err = {0};
    if (greta_runtime_dir_create(p.o.instance, p.rundir, sizeof p.rundir, &err) < 0 ||
        greta_shm_name(p.o.instance, p.shm_name, sizeof p.shm_name, &err) < 0) {
        fprintf(stderr, "greta up: %s\n", err.msg);
        return 1;
    }
    greta_shm *old = NULL;
    rc = greta_shm_attach(p.shm_name, &old, &err);
    if (rc == 0) {
        if (greta_shm_owner_alive(old)) {
            printf("instance %s is already up\n", p.o.instance);
            print_status(old, stdout);
            greta_shm_detach(&old);
            return 0;
        }
        if (greta_shm_is_stale(old)) {
            fprintf(stderr, "greta up: removing the segment of dead instance %s (supervisor pid %d)\n",
                    p.o.instance, atomic_load(&greta_shm_hdr(old)->owner_pid));
            greta_shm_detach(&old);
            greta_shm_unlink(p.shm_name, NULL);
            greta_runtime_dir_clean(p.rundir, 0);
        } else {
            p.adopt = 1;
            fprintf(stderr, "greta up: the supervisor of %s is gone but stages still run: adopting them\n",
                    p.o.instance);
            greta_shm_detach(&old);
        }
    } else if (rc != GRETA_ERR_NOT_FOUND) {
        fprintf(stderr, "greta up: %s\n(`greta down --instance %s` removes it)\n", err.msg, p.o.instance);
        return 1;
    }
    if (find_bins(&p, &err) < 0 || (!p.adopt && plan_up(&p, &err) < 0)) {
        fprintf(stderr, "greta up: %s\n", err.msg);
        return 1;
    }
    int fds[2];
    if (pipe(fds) != 0) {
        perror("greta up: pipe");
        return 1;
    }
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    if (pid < 0) {
        perror("greta up: fork");
        return 1;
    }
    if (pid == 0) {
        close(fds[0]);
        if (fork() == 0) /* detach: the grandchild supervises, init reaps it */
            supervisor_main(&p, fds[1]);
        _exit(0);
    }
    close(fds[1]);
    waitpid(pid, NULL, 0);
    char msg[GRETA_ERROR_MSG_MAX + 1];
    ssize_t n = read(fds[0], msg, sizeof msg - 1);
    close(fds[0]);
    msg[n > 0 ? n : 0] = '\0';
    if (strcmp(msg, "ok") != 0) {
        fprintf(stderr, "greta up: supervisor: %s\n", n > 0 ? msg : "exited without a word (see its log)");
        return 1;
    }
    if (wait_running(p.shm_name, p.rundir, UP_WAIT_MS, &err) < 0) {
        fprintf(stderr, "greta up: %s; logs in %s\n", err.msg, p.rundir);
        return 1;
    }
    return 0;
}

/* ---- down / restart ------------------------------------------------------------ */

int cmd_down(int argc, char **argv)
{
    up_opts o;
    int rc = parse(argc, argv, &o, NULL, 0);
    if (rc)
        return rc > 0 ? 0 : 2;
    char rundir[GRETA_PATH_MAX], name[128];
    greta_error err = {0};
    if (greta_runtime_dir(o.instance, rundir, sizeof rundir, &err) < 0 ||
        greta_shm_name(o.instance, name, sizeof name, &err) < 0) {
        fprintf(stderr, "greta down: %s\n", err.msg);
        return 1;
    }
    greta_shm *shm = NULL;
    rc = greta_shm_attach(name, &shm, &err);
    if (rc == GRETA_ERR_NOT_FOUND) {
        printf("instance %s is not up\n", o.instance);
        greta_runtime_dir_clean(rundir, 0);
        return 0;
    }
    if (rc < 0) {
        fprintf(stderr, "greta down: %s; removing it\n", err.msg);
        greta_shm_unlink(name, NULL);
        greta_runtime_dir_clean(rundir, 0);
        return 0;
    }
    if (greta_shm_owner_alive(shm)) {
        Greta__Envelope *r = NULL;
        if (greta_supervisor_control(rundir, GRETA__CONTROL__COMMAND__SHUTDOWN, "", 5000, &r, &err) == 0) {
            greta_msg_free(&r);
            for (int k = 0; k < 1000 && greta_shm_owner_alive(shm); k++)
                usleep(10000);
        } else {
            fprintf(stderr, "greta down: %s; stopping the processes directly\n", err.msg);
        }
    }
    /* whatever is left (supervisor dead or not answering): signal the processes */
    int pids[GRETA_STAGE_COUNT + 1];
    uint64_t starts[GRETA_STAGE_COUNT + 1];
    for (int i = 0; i < GRETA_STAGE_COUNT; i++) {
        pids[i] = atomic_load(&greta_shm_stage_at(shm, i)->pid);
        starts[i] = atomic_load(&greta_shm_stage_at(shm, i)->start_time);
    }
    pids[GRETA_STAGE_COUNT] = atomic_load(&greta_shm_hdr(shm)->owner_pid);
    starts[GRETA_STAGE_COUNT] = atomic_load(&greta_shm_hdr(shm)->owner_start);
    for (int i = 0; i <= GRETA_STAGE_COUNT; i++)
        if (greta_proc_alive(pids[i], starts[i]))
            kill(pids[i], SIGTERM);
    for (int k = 0; k < 200; k++) {
        int alive = 0;
        for (int i = 0; i <= GRETA_STAGE_COUNT; i++)
            alive += greta_proc_alive(pids[i], starts[i]);
        if (!alive)
            break;
        usleep(10000);
    }
    for (int i = 0; i <= GRETA_STAGE_COUNT; i++)
        if (greta_proc_alive(pids[i], starts[i]))
            kill(pids[i], SIGKILL);
    greta_shm_detach(&shm);
    greta_shm_unlink(name, NULL);
    greta_runtime_dir_clean(rundir, 0);
    printf("instance %s is down\n", o.instance);
    return 0;
}

int cmd_restart(int argc, char **argv)
{
    up_opts o;
    const char *stage = NULL;
    int rc = parse(argc, argv, &o, &stage, 0);
    if (rc)
        return rc > 0 ? 0 : 2;
    if (!stage || greta_stage_from_name(stage) < 0) {
        fprintf(stderr, "greta restart: name a stage: tokenizer, sampler or gpu-worker\n");
        return 2;
    }
    char rundir[GRETA_PATH_MAX];
    greta_error err = {0};
    Greta__Envelope *r = NULL;
    if (greta_runtime_dir(o.instance, rundir, sizeof rundir, &err) < 0 ||
        greta_supervisor_control(rundir, GRETA__CONTROL__COMMAND__RESTART, stage, 5000, &r, &err) < 0) {
        fprintf(stderr, "greta restart: %s\n", err.msg);
        return 1;
    }
    char msg[256];
    greta_msg_cstr(r->control_reply->message, msg, sizeof msg);
    int ok = r->control_reply->ok;
    greta_msg_free(&r);
    if (ok)
        printf("%s\n", msg);
    else
        fprintf(stderr, "greta restart: %s\n", msg);
    return ok ? 0 : 1;
}
