/* stage.h - what every pipeline stage process does at start and stop.
 *
 *   greta-<stage> --instance NAME
 *
 * greta_stage_init: umask 077, SIGTERM/SIGINT set a stop flag (nothing else),
 * SIGPIPE ignored; attaches the instance's segment (refusing a bad one),
 * creates the ZeroMQ context, starts the heartbeat thread (proto/heartbeat.h)
 * and opens the trace file when tracing is on (the segment's trace_dir from
 * `greta up --trace`, else GRETA_TRACE). Logs go to stderr, which the supervisor
 * appends to <runtime dir>/<stage>.log.
 */
#ifndef GRETA_PROTO_STAGE_H
#define GRETA_PROTO_STAGE_H

#include "common/error.h"
#include "common/trace.h"
#include "endpoint.h"
#include "heartbeat.h"
#include "shm.h"

typedef struct greta_stage_ctx {
    int id;                      /* greta_stage_id */
    const char *name;            /* "tokenizer", ... */
    char instance[GRETA_INSTANCE_MAX + 1];
    char rundir[GRETA_PATH_MAX];
    greta_shm *shm;
    void *zctx;
    greta_heartbeat *hb;
    greta_trace *trace;          /* NULL: tracing off */
    uint64_t rejected;           /* malformed or refused messages so far */
} greta_stage_ctx;

/* Parses --instance (other arguments are left to the caller: argv entries
 * it consumed are replaced by NULL). */
int greta_stage_init(greta_stage_ctx *c, int stage_id, int argc, char **argv, greta_error *err);
void greta_stage_fini(greta_stage_ctx *c);

/* 1 once SIGTERM or SIGINT arrived. */
int greta_stage_stopping(void);

/* Path of endpoint `name` in the instance's runtime directory. */
int greta_stage_endpoint(const greta_stage_ctx *c, const char *name, char *buf, size_t n, greta_error *err);

/* "<time> <stage>[pid]: message" on stderr. */
void greta_stage_log(const greta_stage_ctx *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Logs and counts a rejected message (and answers it with an Error when rid
 * is not NULL: a ROUTER peer). */
void greta_stage_reject(greta_stage_ctx *c, void *sock, const uint8_t *rid, size_t rid_len, uint64_t request_id,
                        int code, const char *what);

#endif
