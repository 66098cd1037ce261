/* zsock.h - small ZeroMQ helpers shared by the stages and clients.
 *
 * Every socket gets LINGER 0 (closing never waits on a dead peer) and a
 * ZMQ_MAXMSGSIZE of 4 * GRETA_MSG_MAX (a peer sending more is disconnected
 * by ZeroMQ; between GRETA_MSG_MAX and that, the stage answers "oversized").
 * Sends never block: a full queue is reported as GRETA_ERR_TIMEOUT.
 * Receives take a timeout, so no stage waits forever on a dead peer.
 *
 * Framing: DEALER/PUSH send one frame, the packed Envelope. A ROUTER receives
 * [routing id][payload] and replies the same way. Anything else (extra frames,
 * an empty payload, bytes that do not unpack) is a rejected message: the
 * receive still succeeds, with env == NULL and the reason in err.
 */
#ifndef GRETA_PROTO_ZSOCK_H
#define GRETA_PROTO_ZSOCK_H

#include <stddef.h>
#include <stdint.h>
#include <zmq.h>

#include "common/error.h"
#include "msg.h"

#define GRETA_ZRID_MAX 255

typedef struct greta_zmsg {
    uint8_t rid[GRETA_ZRID_MAX]; /* routing id (ROUTER sockets), rid_len bytes */
    size_t rid_len;
    Greta__Envelope *env;        /* the message; NULL when it was rejected */
    uint64_t request_id;         /* request id when the protobuf decoded, else 0 */
    size_t size;                 /* payload bytes */
    greta_error err;             /* why it was rejected */
} greta_zmsg;

/* A socket of the given ZMQ type with the defaults above; NULL on error. */
void *greta_zsock_new(void *ctx, int type, greta_error *err);

/* Binds to ipc://path (a stale socket file is replaced), then chmod 0600. */
int greta_zsock_bind(void *sock, const char *path, greta_error *err);
int greta_zsock_connect(void *sock, const char *path, greta_error *err);
/* Sets the routing id (before connect). */
int greta_zsock_set_id(void *sock, const void *id, size_t n, greta_error *err);
void greta_zsock_close(void **sock);

/* Sends env (with a routing-id frame first when rid != NULL). */
int greta_zsend(void *sock, const uint8_t *rid, size_t rid_len, const Greta__Envelope *env, greta_error *err);
/* Sends raw bytes as one frame (tests: malformed input). */
int greta_zsend_raw(void *sock, const uint8_t *rid, size_t rid_len, const void *data, size_t len,
                    greta_error *err);
/* Replies Error{code, message} to rid for request_id. */
int greta_zsend_error(void *sock, const uint8_t *rid, size_t rid_len, uint64_t request_id, int code,
                      const char *message);

/* Waits up to timeout_ms (-1: forever, 0: poll) for one message.
 * Returns 1 with *m filled (m->env NULL and m->err set when rejected),
 * 0 on timeout or signal, negative on a socket error.
 * router: the socket is a ROUTER (first frame is the routing id). */
int greta_zrecv(void *sock, int router, greta_zmsg *m, int timeout_ms, greta_error *err);
void greta_zmsg_clear(greta_zmsg *m);

/* Monotonic milliseconds (CLOCK_MONOTONIC). */
int64_t greta_now_ms(void);

#endif
