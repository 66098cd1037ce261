/* zsock.c - see zsock.h. */
#include "zsock.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

int64_t greta_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void *greta_zsock_new(void *ctx, int type, greta_error *err)
{
    void *s = zmq_socket(ctx, type);
    if (!s) {
        greta_error_set(err, GRETA_ERR_IO, "zmq_socket: %s", zmq_strerror(zmq_errno()));
        return NULL;
    }
    int linger = 0;
    int64_t maxmsg = 4 * (int64_t)GRETA_MSG_MAX;
    int ivl = 50, ivl_max = 500;
    zmq_setsockopt(s, ZMQ_LINGER, &linger, sizeof linger);
    zmq_setsockopt(s, ZMQ_MAXMSGSIZE, &maxmsg, sizeof maxmsg);
    zmq_setsockopt(s, ZMQ_RECONNECT_IVL, &ivl, sizeof ivl);
    zmq_setsockopt(s, ZMQ_RECONNECT_IVL_MAX, &ivl_max, sizeof ivl_max);
    return s;
}

int greta_zsock_bind(void *sock, const char *path, greta_error *err)
{
    char ep[300];
    snprintf(ep, sizeof ep, "ipc://%s", path);
    unlink(path); /* a file left by a dead process would make bind fail */
    if (zmq_bind(sock, ep) != 0)
        return greta_error_set(err, GRETA_ERR_IO, "bind '%s': %s", ep, zmq_strerror(zmq_errno()));
    if (chmod(path, 0600) != 0)
        return greta_error_set(err, GRETA_ERR_IO, "chmod 0600 '%s': %s", path, strerror(errno));
    return GRETA_OK;
}

int greta_zsock_connect(void *sock, const char *path, greta_error *err)
{
    char ep[300];
    snprintf(ep, sizeof ep, "ipc://%s", path);
    if (zmq_connect(sock, ep) != 0)
        return greta_error_set(err, GRETA_ERR_IO, "connect '%s': %s", ep, zmq_strerror(zmq_errno()));
    return GRETA_OK;
}

int greta_zsock_set_id(void *sock, const void *id, size_t n, greta_error *err)
{
    if (zmq_setsockopt(sock, ZMQ_ROUTING_ID, id, n) != 0)
        return greta_error_set(err, GRETA_ERR_INVALID, "routing id: %s", zmq_strerror(zmq_errno()));
    return GRETA_OK;
}

void greta_zsock_close(void **sock)
{
    if (sock && *sock) {
        zmq_close(*sock);
        *sock = NULL;
    }
}

int greta_zsend_raw(void *sock, const uint8_t *rid, size_t rid_len, const void *data, size_t len,
                    greta_error *err)
{
    if (rid && zmq_send(sock, rid, rid_len, ZMQ_SNDMORE | ZMQ_DONTWAIT) < 0)
        goto fail;
    if (zmq_send(sock, data, len, ZMQ_DONTWAIT) < 0)
        goto fail;
    return GRETA_OK;
fail:
    if (zmq_errno() == EAGAIN)
        return greta_error_set(err, GRETA_ERR_TIMEOUT, "send: peer not reachable (queue full)");
    return greta_error_set(err, GRETA_ERR_IO, "send: %s", zmq_strerror(zmq_errno()));
}

int greta_zsend(void *sock, const uint8_t *rid, size_t rid_len, const Greta__Envelope *env, greta_error *err)
{
    uint8_t *buf;
    size_t len;
    int rc = greta_msg_pack(env, &buf, &len, err);
    if (rc < 0)
        return rc;
    rc = greta_zsend_raw(sock, rid, rid_len, buf, len, err);
    free(buf);
    return rc;
}

int greta_zsend_error(void *sock, const uint8_t *rid, size_t rid_len, uint64_t request_id, int code,
                      const char *message)
{
    Greta__Envelope env;
    Greta__Error e = GRETA__ERROR__INIT;
    greta_msg_init(&env, request_id);
    e.code = code < 0 ? code : GRETA_ERR_INVALID;
    e.message = greta_msg_bytes(message);
    env.body_case = GRETA__ENVELOPE__BODY_ERROR;
    env.error = &e;
    return greta_zsend(sock, rid, rid_len, &env, NULL);
}

/* Reads the remaining parts of a multipart message and drops them. */
static int drain(void *sock)
{
    int n = 0, more = 0;
    size_t sz = sizeof more;
    zmq_getsockopt(sock, ZMQ_RCVMORE, &more, &sz);
    while (more) {
        zmq_msg_t part;
        zmq_msg_init(&part);
        if (zmq_msg_recv(&part, sock, 0) < 0) {
            zmq_msg_close(&part);
            break;
        }
        n++;
        more = zmq_msg_more(&part);
        zmq_msg_close(&part);
    }
    return n;
}

int greta_zrecv(void *sock, int router, greta_zmsg *m, int timeout_ms, greta_error *err)
{
    memset(m, 0, sizeof *m);
    zmq_pollitem_t it = {sock, 0, ZMQ_POLLIN, 0};
    int pr = zmq_poll(&it, 1, timeout_ms);
    if (pr < 0) {
        if (zmq_errno() == EINTR)
            return 0;
        return greta_error_set(err, GRETA_ERR_IO, "poll: %s", zmq_strerror(zmq_errno()));
    }
    if (pr == 0 || !(it.revents & ZMQ_POLLIN))
        return 0;

    zmq_msg_t part;
    zmq_msg_init(&part);
    if (zmq_msg_recv(&part, sock, ZMQ_DONTWAIT) < 0) {
        zmq_msg_close(&part);
        return zmq_errno() == EAGAIN || zmq_errno() == EINTR
                   ? 0
                   : greta_error_set(err, GRETA_ERR_IO, "recv: %s", zmq_strerror(zmq_errno()));
    }
    if (router) {
        size_t n = zmq_msg_size(&part);
        m->rid_len = n < GRETA_ZRID_MAX ? n : GRETA_ZRID_MAX;
        memcpy(m->rid, zmq_msg_data(&part), m->rid_len);
        int more = zmq_msg_more(&part);
        zmq_msg_close(&part);
        zmq_msg_init(&part);
        if (!more || zmq_msg_recv(&part, sock, 0) < 0) {
            zmq_msg_close(&part);
            greta_error_set(&m->err, GRETA_ERR_FORMAT, "message: routing id without payload");
            return 1;
        }
    }
    m->size = zmq_msg_size(&part);
    if (zmq_msg_more(&part)) {
        int extra = drain(sock);
        zmq_msg_close(&part);
        greta_error_set(&m->err, GRETA_ERR_FORMAT, "message: %d frames, expected one (a packed greta.Envelope)",
                        extra + 1);
        return 1;
    }
    greta_msg_unpack(zmq_msg_data(&part), m->size, &m->env, &m->request_id, &m->err);
    zmq_msg_close(&part);
    return 1;
}

void greta_zmsg_clear(greta_zmsg *m)
{
    greta_msg_free(&m->env);
}
