/* test_proto.c - envelope packing/unpacking, bad input, endpoints, sockets. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "test_util.h"

#include "proto/endpoint.h"
#include "proto/msg.h"
#include "proto/zsock.h"

static uint8_t *pack_submit(uint64_t rid, int32_t max_tokens, size_t *len)
{
    Greta__Envelope env;
    Greta__Submit s = GRETA__SUBMIT__INIT;
    Greta__SamplingParams sp = GRETA__SAMPLING_PARAMS__INIT;
    int32_t prompt[3] = {1, 400, 27};
    greta_msg_init(&env, rid);
    sp.temperature = 0.8f;
    sp.seed = 42;
    s.client = greta_msg_bytes("cli-1");
    s.n_prompt = 3;
    s.prompt = prompt;
    s.max_tokens = max_tokens;
    s.sampling = &sp;
    ProtobufCBinaryData stops[1] = {greta_msg_bytes("The end")};
    s.n_stop = 1;
    s.stop = stops;
    env.body_case = GRETA__ENVELOPE__BODY_SUBMIT;
    env.submit = &s;
    uint8_t *buf = NULL;
    greta_error err = {0};
    assert_int_equal(greta_msg_pack(&env, &buf, len, &err), 0);
    return buf;
}

static void test_roundtrip(void **state)
{
    (void)state;
    size_t len;
    uint8_t *buf = pack_submit(0x1234567890abcdefull, 200, &len);
    Greta__Envelope *e = NULL;
    uint64_t rid = 0;
    greta_error err = {0};
    assert_int_equal(greta_msg_unpack(buf, len, &e, &rid, &err), 0);
    assert_non_null(e);
    assert_int_equal(e->version, GRETA_PROTO_VERSION);
    assert_true(e->request_id == 0x1234567890abcdefull);
    assert_true(rid == 0x1234567890abcdefull);
    assert_int_equal(e->body_case, GRETA__ENVELOPE__BODY_SUBMIT);
    assert_int_equal(e->submit->n_prompt, 3);
    assert_int_equal(e->submit->prompt[1], 400);
    assert_int_equal(e->submit->max_tokens, 200);
    assert_true(e->submit->sampling->temperature == 0.8f);
    assert_true(e->submit->sampling->seed == 42);
    char s[64];
    assert_string_equal(greta_msg_cstr(e->submit->stop[0], s, sizeof s), "The end");
    assert_string_equal(greta_msg_cstr(e->submit->client, s, sizeof s), "cli-1");
    greta_msg_free(&e);
    assert_null(e);
    free(buf);
}

static void test_every_truncation_is_refused_or_valid(void **state)
{
    (void)state;
    size_t len;
    uint8_t *buf = pack_submit(77, 5, &len);
    /* every strict prefix either fails to decode or fails validation;
     * none crashes (ASan) and none yields a Submit equal to the original */
    int refused = 0;
    for (size_t n = 0; n < len; n++) {
        Greta__Envelope *e = NULL;
        greta_error err = {0};
        int rc = greta_msg_unpack(buf, n, &e, NULL, &err);
        if (rc < 0) {
            refused++;
            assert_null(e);
            assert_true(err.msg[0] != '\0');
        } else {
            assert_false(e->body_case == GRETA__ENVELOPE__BODY_SUBMIT && e->submit->n_prompt == 3 &&
                         e->submit->n_stop == 1);
            greta_msg_free(&e);
        }
    }
    assert_true(refused >= (int)len / 2);
    /* the empty message */
    Greta__Envelope *e = NULL;
    greta_error err = {0};
    assert_int_equal(greta_msg_unpack(buf, 0, &e, NULL, &err), GRETA_ERR_FORMAT);
    assert_non_null(strstr(err.msg, "empty"));
    /* cut inside the prompt field: malformed protobuf */
    assert_int_equal(greta_msg_unpack(buf, len - 1, &e, NULL, &err), GRETA_ERR_FORMAT);
    free(buf);
}

static void test_random_bytes(void **state)
{
    (void)state;
    uint64_t x = 0x9e3779b97f4a7c15ull;
    int ok = 0, bad = 0;
    for (int it = 0; it < 2000; it++) {
        uint8_t buf[96];
        size_t n = (size_t)(it % 96);
        for (size_t i = 0; i < n; i++) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            buf[i] = (uint8_t)x;
        }
        Greta__Envelope *e = NULL;
        greta_error err = {0};
        if (greta_msg_unpack(buf, n, &e, NULL, &err) == 0) {
            ok++;
            assert_int_equal(e->version, GRETA_PROTO_VERSION);
            assert_int_not_equal(e->body_case, GRETA__ENVELOPE__BODY__NOT_SET);
            greta_msg_free(&e);
        } else {
            bad++;
            assert_null(e);
        }
    }
    assert_true(bad > 1900); /* random bytes essentially never pass the version check */
    (void)ok;
}

static void test_version_and_body(void **state)
{
    (void)state;
    Greta__Envelope env;
    Greta__Ack ack = GRETA__ACK__INIT;
    greta_msg_init(&env, 5);
    env.body_case = GRETA__ENVELOPE__BODY_ACK;
    env.ack = &ack;
    uint8_t *buf;
    size_t len;
    greta_error err = {0};
    /* pack refuses a wrong version */
    env.version = 2;
    assert_int_equal(greta_msg_pack(&env, &buf, &len, &err), GRETA_ERR_INVALID);
    /* craft one by hand: field 1 (version) varint 9, field 2 request id 5, ack (field 18, empty) */
    uint8_t v9[] = {0x08, 0x09, 0x10, 0x05, 0x92, 0x01, 0x00};
    Greta__Envelope *e = NULL;
    uint64_t rid = 0;
    assert_int_equal(greta_msg_unpack(v9, sizeof v9, &e, &rid, &err), GRETA_ERR_UNSUPPORTED);
    assert_non_null(strstr(err.msg, "envelope.version: 9"));
    assert_true(rid == 5); /* the caller can still address its error reply */
    /* version 1 but no body */
    uint8_t nobody[] = {0x08, 0x01, 0x10, 0x05};
    assert_int_equal(greta_msg_unpack(nobody, sizeof nobody, &e, &rid, &err), GRETA_ERR_FORMAT);
    assert_non_null(strstr(err.msg, "envelope.body"));
    /* the valid one */
    uint8_t ok[] = {0x08, 0x01, 0x10, 0x05, 0x92, 0x01, 0x00};
    assert_int_equal(greta_msg_unpack(ok, sizeof ok, &e, &rid, &err), 0);
    assert_int_equal(e->body_case, GRETA__ENVELOPE__BODY_ACK);
    greta_msg_free(&e);
    /* pack refuses a missing body */
    env.version = GRETA_PROTO_VERSION;
    env.body_case = GRETA__ENVELOPE__BODY__NOT_SET;
    assert_int_equal(greta_msg_pack(&env, &buf, &len, &err), GRETA_ERR_INVALID);
}

static void expect_submit_error(int32_t max_tokens, float temp, int n_stop, const char *stop,
                                uint64_t rid, const char *field)
{
    Greta__Envelope env;
    Greta__Submit s = GRETA__SUBMIT__INIT;
    Greta__SamplingParams sp = GRETA__SAMPLING_PARAMS__INIT;
    int32_t prompt[2] = {1, 2};
    greta_msg_init(&env, rid);
    sp.temperature = temp;
    s.n_prompt = 2;
    s.prompt = prompt;
    s.max_tokens = max_tokens;
    s.sampling = &sp;
    ProtobufCBinaryData stops[5];
    for (int i = 0; i < n_stop; i++)
        stops[i] = greta_msg_bytes(stop);
    s.n_stop = (size_t)n_stop;
    s.stop = stops;
    env.body_case = GRETA__ENVELOPE__BODY_SUBMIT;
    env.submit = &s;
    uint8_t *buf;
    size_t len;
    greta_error err = {0};
    assert_int_equal(greta_msg_pack(&env, &buf, &len, &err), 0);
    Greta__Envelope *e = NULL;
    assert_true(greta_msg_unpack(buf, len, &e, NULL, &err) < 0);
    assert_null(e);
    if (!strstr(err.msg, field))
        fail_msg("expected '%s' in '%s'", field, err.msg);
    free(buf);
}

static void test_field_validation(void **state)
{
    (void)state;
    expect_submit_error(0, 0.0f, 0, "", 9, "submit.max_tokens");
    expect_submit_error(10, -1.0f, 0, "", 9, "submit.sampling.temperature");
    expect_submit_error(10, 0.0f / 0.0f, 0, "", 9, "submit.sampling.temperature");
    expect_submit_error(10, 0.0f, 5, "x", 9, "submit.stop");
    expect_submit_error(10, 0.0f, 1, "0123456789012345678901234567890123456789012345678901234567890123456789",
                        9, "submit.stop[0]");
    expect_submit_error(10, 0.0f, 0, "", 0, "envelope.request_id");

    /* StepDone with mismatched lengths */
    Greta__Envelope env;
    Greta__StepDone sd = GRETA__STEP_DONE__INIT;
    int32_t slots[2] = {0, 1}, toks[1] = {5};
    greta_msg_init(&env, 0);
    sd.step = 3;
    sd.n_slots = 2;
    sd.slots = slots;
    sd.n_tokens = 1;
    sd.tokens = toks;
    env.body_case = GRETA__ENVELOPE__BODY_STEP_DONE;
    env.step_done = &sd;
    uint8_t *buf;
    size_t len;
    greta_error err = {0};
    assert_int_equal(greta_msg_pack(&env, &buf, &len, &err), 0);
    Greta__Envelope *e = NULL;
    assert_int_equal(greta_msg_unpack(buf, len, &e, NULL, &err), GRETA_ERR_FORMAT);
    assert_non_null(strstr(err.msg, "step_done.tokens"));
    free(buf);
}

static void test_oversized(void **state)
{
    (void)state;
    size_t big = GRETA_MSG_MAX + 100;
    uint8_t *buf = calloc(1, big);
    Greta__Envelope *e = NULL;
    greta_error err = {0};
    assert_int_equal(greta_msg_unpack(buf, big, &e, NULL, &err), GRETA_ERR_LIMIT);
    assert_non_null(strstr(err.msg, "oversized"));
    free(buf);
    /* pack refuses too: an Encode with 1.1 MB of text */
    Greta__Envelope env;
    Greta__Encode enc = GRETA__ENCODE__INIT;
    char *text = malloc(big);
    memset(text, 'a', big - 1);
    text[big - 1] = 0;
    greta_msg_init(&env, 1);
    enc.text = greta_msg_bytes(text);
    env.body_case = GRETA__ENVELOPE__BODY_ENCODE;
    env.encode = &enc;
    uint8_t *out;
    size_t len;
    assert_int_equal(greta_msg_pack(&env, &out, &len, &err), GRETA_ERR_LIMIT);
    free(text);
}

static void test_endpoints(void **state)
{
    (void)state;
    greta_error err = {0};
    char buf[GRETA_PATH_MAX];
    assert_int_equal(greta_instance_check("test-1.a_b", &err), 0);
    assert_int_equal(greta_instance_check("", &err), GRETA_ERR_INVALID);
    assert_int_equal(greta_instance_check("../x", &err), GRETA_ERR_INVALID);
    assert_int_equal(greta_instance_check("a/b", &err), GRETA_ERR_INVALID);
    assert_non_null(strstr(err.msg, "character 1"));
    assert_int_equal(greta_instance_check("-x", &err), GRETA_ERR_INVALID);
    assert_int_equal(greta_instance_check("012345678901234567890123456789012", &err), GRETA_ERR_INVALID);

    const char *tmp = greta_test_tmpdir("proto_endpoints");
    char xdg[GRETA_PATH_MAX];
    snprintf(xdg, sizeof xdg, "%s/xdg", tmp);
    mkdir(xdg, 0700);
    setenv("XDG_RUNTIME_DIR", xdg, 1);
    assert_int_equal(greta_runtime_dir_create("ep", buf, sizeof buf, &err), 0);
    char want[GRETA_PATH_MAX + 20];
    snprintf(want, sizeof want, "%s/greta/ep", xdg);
    assert_string_equal(buf, want);
    struct stat st;
    assert_int_equal(stat(buf, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0700);
    /* a directory with a wider mode is tightened */
    chmod(buf, 0755);
    assert_int_equal(greta_runtime_dir_create("ep", buf, sizeof buf, &err), 0);
    assert_int_equal(stat(buf, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0700);

    char path[GRETA_PATH_MAX];
    assert_int_equal(greta_endpoint_path(buf, GRETA_EP_WORKER, path, sizeof path, &err), 0);
    snprintf(want, sizeof want, "%s/gpu-worker.sock", buf);
    assert_string_equal(path, want);
    char longdir[200];
    memset(longdir, 'd', sizeof longdir - 1);
    longdir[0] = '/';
    longdir[sizeof longdir - 1] = 0;
    assert_int_equal(greta_endpoint_path(longdir, "x", path, sizeof path, &err), GRETA_ERR_LIMIT);
    assert_non_null(strstr(err.msg, "unix socket path"));

    /* without XDG_RUNTIME_DIR: /tmp/greta-<uid>/<instance> */
    unsetenv("XDG_RUNTIME_DIR");
    assert_int_equal(greta_runtime_dir("ep", buf, sizeof buf, &err), 0);
    snprintf(want, sizeof want, "/tmp/greta-%u/ep", (unsigned)getuid());
    assert_string_equal(buf, want);
    assert_int_equal(greta_shm_name("ep", buf, sizeof buf, &err), 0);
    snprintf(want, sizeof want, "/greta-%u-ep", (unsigned)getuid());
    assert_string_equal(buf, want);
    assert_int_equal(greta_shm_name("a b", buf, sizeof buf, &err), GRETA_ERR_INVALID);
}

/* A ROUTER gets junk, a valid message and multipart junk from one DEALER;
 * each bad one is a rejection with a reason, the good one decodes. */
static void test_router_rejects_junk(void **state)
{
    (void)state;
    greta_error err = {0};
    const char *tmp = greta_test_tmpdir("proto_router");
    char path[GRETA_PATH_MAX];
    snprintf(path, sizeof path, "%s/r.sock", tmp);
    void *ctx = zmq_ctx_new();
    void *r = greta_zsock_new(ctx, ZMQ_ROUTER, &err);
    void *d = greta_zsock_new(ctx, ZMQ_DEALER, &err);
    assert_non_null(r);
    assert_int_equal(greta_zsock_bind(r, path, &err), 0);
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    assert_int_equal(greta_zsock_set_id(d, "client-7", 8, &err), 0);
    assert_int_equal(greta_zsock_connect(d, path, &err), 0);

    greta_zmsg m;
    /* random bytes */
    const uint8_t junk[] = {0xff, 0x00, 0x13, 0x37, 0x42};
    assert_int_equal(greta_zsend_raw(d, NULL, 0, junk, sizeof junk, &err), 0);
    assert_int_equal(greta_zrecv(r, 1, &m, 2000, &err), 1);
    assert_null(m.env);
    assert_int_equal(m.rid_len, 8);
    assert_memory_equal(m.rid, "client-7", 8);
    assert_int_equal(m.err.code, GRETA_ERR_FORMAT);
    /* the ROUTER answers with an Error the client can decode */
    assert_int_equal(greta_zsend_error(r, m.rid, m.rid_len, m.request_id, m.err.code, m.err.msg), 0);
    greta_zmsg reply;
    assert_int_equal(greta_zrecv(d, 0, &reply, 2000, &err), 1);
    assert_non_null(reply.env);
    assert_int_equal(reply.env->body_case, GRETA__ENVELOPE__BODY_ERROR);
    assert_int_equal(reply.env->error->code, GRETA_ERR_FORMAT);
    greta_zmsg_clear(&reply);

    /* two frames */
    assert_int_equal(zmq_send(d, "a", 1, ZMQ_SNDMORE), 1);
    assert_int_equal(zmq_send(d, "b", 1, 0), 1);
    assert_int_equal(greta_zrecv(r, 1, &m, 2000, &err), 1);
    assert_null(m.env);
    assert_non_null(strstr(m.err.msg, "2 frames"));

    /* oversized (between GRETA_MSG_MAX and the ZeroMQ limit) */
    size_t big = GRETA_MSG_MAX + 1;
    uint8_t *bigbuf = calloc(1, big);
    assert_int_equal(greta_zsend_raw(d, NULL, 0, bigbuf, big, &err), 0);
    free(bigbuf);
    assert_int_equal(greta_zrecv(r, 1, &m, 2000, &err), 1);
    assert_null(m.env);
    assert_int_equal(m.err.code, GRETA_ERR_LIMIT);

    /* then a good one still works */
    size_t len;
    uint8_t *buf = pack_submit(99, 3, &len);
    assert_int_equal(greta_zsend_raw(d, NULL, 0, buf, len, &err), 0);
    free(buf);
    assert_int_equal(greta_zrecv(r, 1, &m, 2000, &err), 1);
    assert_non_null(m.env);
    assert_true(m.request_id == 99);
    greta_zmsg_clear(&m);

    /* nothing more: a timeout, not a hang */
    assert_int_equal(greta_zrecv(r, 1, &m, 20, &err), 0);

    greta_zsock_close(&d);
    greta_zsock_close(&r);
    zmq_ctx_term(ctx);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_roundtrip),
        cmocka_unit_test(test_every_truncation_is_refused_or_valid),
        cmocka_unit_test(test_random_bytes),
        cmocka_unit_test(test_version_and_body),
        cmocka_unit_test(test_field_validation),
        cmocka_unit_test(test_oversized),
        cmocka_unit_test(test_endpoints),
        cmocka_unit_test(test_router_rejects_junk),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
