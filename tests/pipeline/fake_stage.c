/* fake_stage.c - a tiny stage for the supervisor tests: heartbeats like a
 * real stage (proto/heartbeat.h) and does nothing else.
 *   fake_stage --instance NAME --stage tokenizer|sampler|gpu-worker
 * FAKE_STAGE_EXIT_MS=N: exits with status 3 after N ms (a crashing stage).
 * SIGTERM: exits 0. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "proto/endpoint.h"
#include "proto/heartbeat.h"
#include "proto/shm.h"
#include "proto/zsock.h"

static volatile sig_atomic_t g_stop;
static void on_term(int sig)
{
    (void)sig;
    g_stop = 1;
}

int main(int argc, char **argv)
{
    const char *instance = NULL, *stage = NULL;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--instance"))
            instance = argv[i + 1];
        else if (!strcmp(argv[i], "--stage"))
            stage = argv[i + 1];
    }
    int id = greta_stage_from_name(stage);
    if (!instance || id < 0) {
        fprintf(stderr, "usage: fake_stage --instance NAME --stage NAME\n");
        return 2;
    }
    static const int proto_stage[GRETA_STAGE_COUNT] = {GRETA__STAGE__STAGE_TOKENIZER, GRETA__STAGE__STAGE_SAMPLER,
                                                       GRETA__STAGE__STAGE_WORKER};
    signal(SIGTERM, on_term);
    greta_error err = {0};
    char dir[GRETA_PATH_MAX], path[GRETA_PATH_MAX];
    if (greta_runtime_dir(instance, dir, sizeof dir, &err) < 0 ||
        greta_endpoint_path(dir, GRETA_EP_HEARTBEAT, path, sizeof path, &err) < 0) {
        fprintf(stderr, "fake_stage: %s\n", err.msg);
        return 1;
    }
    void *zctx = zmq_ctx_new();
    greta_heartbeat *hb = NULL;
    if (greta_heartbeat_start(zctx, path, proto_stage[id], 0, 0, &hb, &err) < 0) {
        fprintf(stderr, "fake_stage: %s\n", err.msg);
        return 1;
    }
    greta_heartbeat_ready(hb);
    const char *ex = getenv("FAKE_STAGE_EXIT_MS");
    int64_t exit_at = ex ? greta_now_ms() + atoi(ex) : -1;
    fprintf(stderr, "fake_stage %s pid %d up\n", stage, (int)getpid());
    while (!g_stop) {
        if (exit_at >= 0 && greta_now_ms() >= exit_at) {
            greta_heartbeat_stop(&hb);
            zmq_ctx_term(zctx);
            return 3;
        }
        greta_heartbeat_progress(hb);
        usleep(5000);
    }
    greta_heartbeat_stop(&hb);
    zmq_ctx_term(zctx);
    return 0;
}
