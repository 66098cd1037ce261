/* supervisor.h - runs the pipeline stages of one instance and keeps them alive.
 *
 * The supervisor (the background process of `greta up`) owns the instance's
 * segment (proto/shm.h) and stage table. For each stage a policy row says
 * how to start it and how to restart it. The loop:
 *   - starts every stage (fork + exec of its argv; stdout/stderr appended to
 *     <runtime dir>/<stage>.log);
 *   - records Hello/Heartbeat arrivals (PULL socket GRETA_EP_HEARTBEAT); a
 *     stage counts as running from its first Hello (it is ready to serve);
 *   - reaps children (SIGCHLD only sets a flag) and checks adopted stages
 *     (not our children) by pid + start time;
 *   - kills a stage whose heartbeats stopped for hang_timeout_ms (a stopped
 *     or deadlocked process) with SIGKILL;
 *   - restarts a dead stage after its backoff (doubling from backoff_min_ms to
 *     backoff_max_ms; back to the minimum once a run lasted stable_ms), and
 *     logs one line per restart:
 *       restart stage=NAME old_pid=P new_pid=Q reason="..." backoff_ms=B restarts=N
 *   - answers Control messages (status, restart STAGE, shutdown) on
 *     GRETA_EP_SUPERVISOR.
 * Signal handlers only set flags (SIGCHLD, SIGTERM, SIGINT); the loop acts.
 *
 * Adoption: if the supervisor dies, the stages keep serving. A new supervisor
 * started with adopt = 1 takes over the segment (new generation), keeps the
 * stages whose pid and start time in the stage table are still alive
 * (logging "adopt stage=NAME pid=P") and starts the others.
 *
 * Shutdown (Control SHUTDOWN, SIGTERM, SIGINT): SIGTERM to every stage,
 * SIGKILL after 2 s, then the segment and the runtime directory's sockets
 * are removed.
 */
#ifndef GRETA_SUPERVISOR_H
#define GRETA_SUPERVISOR_H

#include <stdio.h>

#include "common/error.h"
#include "proto/shm.h"

#define GRETA_SUPERVISOR_MAX_ARGS 24

/* How one stage is run (a row of the policy table). */
typedef struct greta_stage_policy {
    const char *argv[GRETA_SUPERVISOR_MAX_ARGS]; /* exec argv, NULL-terminated; argv[0] a path */
    int restart;          /* 1: restart when it dies or hangs; 0: leave it stopped */
    int backoff_min_ms;   /* first restart delay */
    int backoff_max_ms;   /* cap of the doubling */
    int stable_ms;        /* a run this long resets the backoff */
    int hang_timeout_ms;  /* no heartbeat for this long: hung, killed and restarted */
    int start_grace_ms;   /* extra time for the first heartbeat after a start */
} greta_stage_policy;

/* Defaults: restart 1, backoff 100..5000 ms, stable 10 s, hang timeout from
 * greta_hang_timeout_ms(), start grace 10 s. */
void greta_stage_policy_default(greta_stage_policy *p);

typedef struct greta_supervisor_config {
    const char *instance;                         /* instance name */
    const char *rundir;                           /* its runtime directory (exists) */
    const char *shm_name;                         /* its segment name */
    greta_stage_policy policy[GRETA_STAGE_COUNT]; /* indexed by greta_stage_id */
    FILE *log;                                    /* restart/adopt log (line-buffered) */
    int adopt;                                    /* 1: keep live stages of the table */
    void (*on_ready)(void *ctx);                  /* called once every stage was started or adopted */
    void *ready_ctx;
} greta_supervisor_config;

/* Runs until shutdown. shm is the attached (or just created) segment; the
 * supervisor takes ownership of it. Returns 0 after a clean shutdown. On
 * return the segment is unlinked (shm stays mapped; detach it). */
int greta_supervisor_run(const greta_supervisor_config *cfg, greta_shm *shm, greta_error *err);

/* Sends a Control message to a running supervisor and waits up to
 * timeout_ms for the reply (*reply, free with greta_msg_free). */
struct Greta__Envelope;
int greta_supervisor_control(const char *rundir, int command, const char *stage, int timeout_ms,
                             struct Greta__Envelope **reply, greta_error *err);

#endif
