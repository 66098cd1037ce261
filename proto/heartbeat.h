/* heartbeat.h - the liveness thread every stage runs.
 *
 * A thread of its own sends a Heartbeat every period_ms to the supervisor's
 * PULL socket (GRETA_EP_HEARTBEAT) from the start, so a long model load or
 * prefill in the main thread is not mistaken for a hang; a stopped (SIGSTOP)
 * or dead process stops beating. Once the stage calls greta_heartbeat_ready
 * (sockets bound, model loaded) it also sends Hello, again every 2 s so a
 * supervisor that adopts the stage learns about it; the supervisor counts a
 * stage as running from its first Hello. The socket is a PUSH with ZMQ_IMMEDIATE and a small
 * high-water mark: while no supervisor listens, beats are dropped, never
 * queued, and the stage keeps serving (a new supervisor adopts it).
 *
 *   greta_heartbeat *hb;
 *   greta_heartbeat_start(zctx, "/run/.../heartbeat.sock", GRETA__STAGE__STAGE_SAMPLER,
 *                         generation, 200, &hb, &err);
 *   ... set up; greta_heartbeat_ready(hb);
 *   ... main loop: greta_heartbeat_progress(hb);
 *   greta_heartbeat_stop(&hb);   (before zmq_ctx_term)
 */
#ifndef GRETA_PROTO_HEARTBEAT_H
#define GRETA_PROTO_HEARTBEAT_H

#include <stdint.h>

#include "common/error.h"

typedef struct greta_heartbeat greta_heartbeat;

/* stage: a Greta__Stage value. */
int greta_heartbeat_start(void *zctx, const char *path, int stage, uint64_t generation, int period_ms,
                          greta_heartbeat **out, greta_error *err);
/* The stage is ready to serve: Hello from now on. */
void greta_heartbeat_ready(greta_heartbeat *hb);
/* Counts one main-loop iteration (reported as Heartbeat.progress). */
void greta_heartbeat_progress(greta_heartbeat *hb);
/* Heartbeats sent so far. */
uint64_t greta_heartbeat_count(const greta_heartbeat *hb);
void greta_heartbeat_stop(greta_heartbeat **hb);

/* Heartbeat period and the supervisor's hang timeout, milliseconds:
 * GRETA_HEARTBEAT_MS (default 200) and GRETA_HANG_TIMEOUT_MS (default 3000),
 * read from the environment so tests can shorten them. */
int greta_heartbeat_period_ms(void);
int greta_hang_timeout_ms(void);

#endif
