/* stage.c - see stage.h. */
#include "stage.h"

#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "msg.h"
#include "zsock.h"

static volatile sig_atomic_t g_stop;

static void on_stop(int sig)
{
    (void)sig;
    g_stop = 1;
}

int greta_stage_stopping(void)
{
    return g_stop != 0;
}

static const int proto_stage[GRETA_STAGE_COUNT] = {GRETA__STAGE__STAGE_TOKENIZER, GRETA__STAGE__STAGE_SAMPLER,
                                                   GRETA__STAGE__STAGE_WORKER};

int greta_stage_init(greta_stage_ctx *c, int stage_id, int argc, char **argv, greta_error *err)
{
    memset(c, 0, sizeof *c);
    c->id = stage_id;
    c->name = greta_stage_name(stage_id);
    umask(077);
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_stop;
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);

    const char *instance = NULL;
    for (int i = 1; i < argc; i++) {
        if (!argv[i])
            continue;
        if (!strcmp(argv[i], "--instance") && i + 1 < argc) {
            instance = argv[i + 1];
            argv[i] = argv[i + 1] = NULL;
            i++;
        }
    }
    if (!instance)
        return greta_error_set(err, GRETA_ERR_INVALID, "--instance NAME is required");
    int rc = greta_instance_check(instance, err);
    if (rc < 0)
        return rc;
    snprintf(c->instance, sizeof c->instance, "%s", instance);
    if ((rc = greta_runtime_dir(instance, c->rundir, sizeof c->rundir, err)) < 0)
        return rc;
    char shm_name[128];
    if ((rc = greta_shm_name(instance, shm_name, sizeof shm_name, err)) < 0)
        return rc;
    if ((rc = greta_shm_attach(shm_name, &c->shm, err)) < 0)
        return rc;
    c->zctx = zmq_ctx_new();
    if (!c->zctx)
        return greta_error_set(err, GRETA_ERR_IO, "zmq_ctx_new failed");
    char hb[GRETA_PATH_MAX];
    if ((rc = greta_stage_endpoint(c, GRETA_EP_HEARTBEAT, hb, sizeof hb, err)) < 0)
        return rc;
    greta_shm_header *h = greta_shm_hdr(c->shm);
    if ((rc = greta_heartbeat_start(c->zctx, hb, proto_stage[stage_id], atomic_load(&h->generation), 0, &c->hb,
                                    err)) < 0)
        return rc;
    const char *tdir = greta_trace_dir(h->trace_dir[0] ? h->trace_dir : NULL);
    if ((rc = greta_trace_open(tdir, c->name, &c->trace, err)) < 0)
        return rc;
    greta_stage_log(c, "up: instance %s, segment generation %llu%s%s", c->instance,
                    (unsigned long long)atomic_load(&h->generation), tdir ? ", tracing to " : "", tdir ? tdir : "");
    return GRETA_OK;
}

void greta_stage_fini(greta_stage_ctx *c)
{
    greta_heartbeat_stop(&c->hb);
    greta_trace_close(&c->trace);
    if (c->zctx) {
        zmq_ctx_term(c->zctx);
        c->zctx = NULL;
    }
    greta_shm_detach(&c->shm);
}

int greta_stage_endpoint(const greta_stage_ctx *c, const char *name, char *buf, size_t n, greta_error *err)
{
    return greta_endpoint_path(c->rundir, name, buf, n, err);
}

void greta_stage_log(const greta_stage_ctx *c, const char *fmt, ...)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    struct tm tm;
    gmtime_r(&ts.tv_sec, &tm);
    char when[32];
    strftime(when, sizeof when, "%H:%M:%S", &tm);
    char line[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    fprintf(stderr, "%s.%03ld %s[%d]: %s\n", when, ts.tv_nsec / 1000000, c->name, (int)getpid(), line);
    fflush(stderr);
}

void greta_stage_reject(greta_stage_ctx *c, void *sock, const uint8_t *rid, size_t rid_len, uint64_t request_id,
                        int code, const char *what)
{
    c->rejected++;
    greta_stage_log(c, "rejected message (request %016llx): %s", (unsigned long long)request_id, what);
    if (sock && rid)
        greta_zsend_error(sock, rid, rid_len, request_id, code < 0 ? code : GRETA_ERR_INVALID, what);
}
