/* heartbeat.c - see heartbeat.h. */
#include "heartbeat.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "msg.h"
#include "zsock.h"

struct greta_heartbeat {
    void *sock;
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int stop;
    int stage;
    int period_ms;
    uint64_t generation;
    _Atomic int ready;
    _Atomic uint64_t progress;
    _Atomic uint64_t sent;
};

static int env_ms(const char *name, int def, int lo, int hi)
{
    const char *v = getenv(name);
    if (!v || !*v)
        return def;
    char *end;
    long x = strtol(v, &end, 10);
    if (*end || x < lo || x > hi)
        return def;
    return (int)x;
}

int greta_heartbeat_period_ms(void)
{
    return env_ms("GRETA_HEARTBEAT_MS", 200, 10, 60000);
}

int greta_hang_timeout_ms(void)
{
    return env_ms("GRETA_HANG_TIMEOUT_MS", 3000, 50, 600000);
}

/* 1 when sent (with no supervisor connected, ZMQ_IMMEDIATE drops it). */
static int send_one(greta_heartbeat *hb, int hello)
{
    Greta__Envelope env;
    greta_msg_init(&env, 0);
    Greta__Hello h = GRETA__HELLO__INIT;
    Greta__Heartbeat b = GRETA__HEARTBEAT__INIT;
    if (hello) {
        h.stage = hb->stage;
        h.pid = (int32_t)getpid();
        h.generation = hb->generation;
        env.body_case = GRETA__ENVELOPE__BODY_HELLO;
        env.hello = &h;
    } else {
        b.stage = hb->stage;
        b.pid = (int32_t)getpid();
        b.seq = atomic_load(&hb->sent);
        b.progress = atomic_load(&hb->progress);
        env.body_case = GRETA__ENVELOPE__BODY_HEARTBEAT;
        env.heartbeat = &b;
    }
    if (greta_zsend(hb->sock, NULL, 0, &env, NULL) != 0)
        return 0;
    atomic_fetch_add(&hb->sent, 1);
    return 1;
}

static void *run(void *arg)
{
    greta_heartbeat *hb = arg;
    int64_t last_hello = 0;
    pthread_mutex_lock(&hb->mu);
    while (!hb->stop) {
        /* Hello again every 2 s, so a supervisor that adopts us learns our pid
         * even if it missed the first one. */
        int64_t now = greta_now_ms();
        int hello = atomic_load(&hb->ready) && (last_hello == 0 || now - last_hello >= 2000);
        pthread_mutex_unlock(&hb->mu);
        if (send_one(hb, hello) && hello)
            last_hello = now; /* a Hello that was dropped goes again next period */
        pthread_mutex_lock(&hb->mu);
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts); /* the cv's clock: a wall-clock step must not stop the beats */
        ts.tv_nsec += (long)hb->period_ms * 1000000L;
        ts.tv_sec += ts.tv_nsec / 1000000000L;
        ts.tv_nsec %= 1000000000L;
        if (!hb->stop)
            pthread_cond_timedwait(&hb->cv, &hb->mu, &ts);
    }
    pthread_mutex_unlock(&hb->mu);
    return NULL;
}

int greta_heartbeat_start(void *zctx, const char *path, int stage, uint64_t generation, int period_ms,
                          greta_heartbeat **out, greta_error *err)
{
    *out = NULL;
    greta_heartbeat *hb = calloc(1, sizeof *hb);
    if (!hb)
        return greta_error_set(err, GRETA_ERR_NOMEM, "heartbeat: out of memory");
    hb->stage = stage;
    hb->period_ms = period_ms > 0 ? period_ms : greta_heartbeat_period_ms();
    hb->generation = generation;
    hb->sock = greta_zsock_new(zctx, ZMQ_PUSH, err);
    if (!hb->sock) {
        free(hb);
        return err ? err->code : GRETA_ERR_IO;
    }
    int one = 1, hwm = 4;
    zmq_setsockopt(hb->sock, ZMQ_IMMEDIATE, &one, sizeof one);
    zmq_setsockopt(hb->sock, ZMQ_SNDHWM, &hwm, sizeof hwm);
    int rc = greta_zsock_connect(hb->sock, path, err);
    if (rc < 0) {
        greta_zsock_close(&hb->sock);
        free(hb);
        return rc;
    }
    pthread_mutex_init(&hb->mu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&hb->cv, &ca);
    pthread_condattr_destroy(&ca);
    if (pthread_create(&hb->thread, NULL, run, hb) != 0) {
        greta_zsock_close(&hb->sock);
        pthread_mutex_destroy(&hb->mu);
        pthread_cond_destroy(&hb->cv);
        free(hb);
        return greta_error_set(err, GRETA_ERR_IO, "heartbeat: pthread_create failed");
    }
    *out = hb;
    return GRETA_OK;
}

void greta_heartbeat_ready(greta_heartbeat *hb)
{
    if (hb) {
        atomic_store(&hb->ready, 1);
        pthread_mutex_lock(&hb->mu);
        pthread_cond_signal(&hb->cv); /* Hello now, not after a period */
        pthread_mutex_unlock(&hb->mu);
    }
}

void greta_heartbeat_progress(greta_heartbeat *hb)
{
    if (hb)
        atomic_fetch_add(&hb->progress, 1);
}

uint64_t greta_heartbeat_count(const greta_heartbeat *hb)
{
    return hb ? atomic_load(&((greta_heartbeat *)hb)->sent) : 0;
}

void greta_heartbeat_stop(greta_heartbeat **phb)
{
    if (!phb || !*phb)
        return;
    greta_heartbeat *hb = *phb;
    pthread_mutex_lock(&hb->mu);
    hb->stop = 1;
    pthread_cond_signal(&hb->cv);
    pthread_mutex_unlock(&hb->mu);
    pthread_join(hb->thread, NULL);
    greta_zsock_close(&hb->sock);
    pthread_mutex_destroy(&hb->mu);
    pthread_cond_destroy(&hb->cv);
    free(hb);
    *phb = NULL;
}
