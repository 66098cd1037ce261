/* fe_util.c - see fe_util.h. */
#include "fe_util.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "test_util.h"

#include "pty_util.h"

#include "proto/client.h"
#include "proto/endpoint.h"
#include "proto/shm.h"
#include "proto/zsock.h"

const char *fe_setup(void)
{
    unsetenv("XDG_RUNTIME_DIR");
    setenv("GRETA_HEARTBEAT_MS", "50", 1);
    unsetenv("GRETA_TRACE");
    const char *m = greta_testdata_find("stories260K.gguf");
    if (!m)
        return NULL;
    static char model[4096];
    snprintf(model, sizeof model, "%s", m);
    return model;
}

void fe_instance_name(char *buf, size_t n, const char *tag)
{
    snprintf(buf, n, "f%d-%.20s", (int)getpid(), tag);
}

int fe_run(const char *fmt, ...)
{
    char cmd[16384];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cmd, sizeof cmd, fmt, ap);
    va_end(ap);
    fprintf(stderr, "$ %s\n", cmd);
    int st = system(cmd);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

int fe_up(const char *instance, const char *model, const char *extra)
{
    return fe_run("%s up -m %s --instance %s -t 1 %s >/dev/null", GRETA_BIN, model, instance, extra ? extra : "");
}

void fe_down(const char *instance)
{
    fe_run("%s down --instance %s >/dev/null", GRETA_BIN, instance);
}

int fe_is_up(const char *instance)
{
    char name[128];
    greta_shm *shm = NULL;
    if (greta_shm_name(instance, name, sizeof name, NULL) < 0 || greta_shm_attach(name, &shm, NULL) < 0)
        return 0;
    int up = !greta_shm_is_stale(shm);
    greta_shm_detach(&shm);
    return up;
}

int fe_wait_down(const char *instance, int ms)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    long long end = (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000 + pty_slack_ms(ms);
    for (;;) {
        if (!fe_is_up(instance))
            return 1;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        if ((long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000 >= end)
            break;
        usleep(20000);
    }
    fprintf(stderr, "[fe_wait_down: instance %s still up after %d ms]\n", instance, pty_slack_ms(ms));
    return !fe_is_up(instance);
}

void fe_clean(const char *instance)
{
    char dir[GRETA_PATH_MAX];
    if (greta_runtime_dir(instance, dir, sizeof dir, NULL) == 0)
        greta_runtime_dir_clean(dir, 1);
}

typedef struct ref_buf {
    char *out;
    size_t cap, len;
    int32_t first;
} ref_buf;

static int on_delta(void *ctx, uint32_t index, int32_t token, const char *text, size_t len, int batch)
{
    (void)batch;
    ref_buf *b = ctx;
    if (index == 0 && token >= 0)
        b->first = token;
    if (b->len + len + 1 > b->cap)
        return 1;
    memcpy(b->out + b->len, text, len);
    b->len += len;
    b->out[b->len] = '\0';
    return 0;
}

int fe_reference_req(const char *instance, const char *system, const char *prompt, int chat,
                     const greta_client_request *tmpl, char *out, size_t cap, uint32_t *completion_tokens,
                     int32_t *first_token)
{
    greta_client *c = NULL;
    greta_error err = {0};
    int32_t *ids = NULL;
    size_t n = 0;
    uint64_t rid = greta_client_request_id();
    int rc = greta_client_open(instance, &c, &err);
    if (rc == 0) {
        if (chat) {
            const char *roles[2] = {"system", "user"}, *contents[2] = {system, prompt};
            int k = system ? 0 : 1;
            rc = greta_client_encode_chat(c, rid, roles + k, contents + k, (size_t)(2 - k), &ids, &n, &err);
        } else {
            rc = greta_client_encode(c, rid, prompt, strlen(prompt), 1, &ids, &n, &err);
        }
    }
    greta_client_result res;
    ref_buf b = {out, cap, 0, -1};
    out[0] = '\0';
    if (rc == 0) {
        greta_client_request q = *tmpl;
        q.prompt = ids;
        q.n_prompt = n;
        rc = greta_client_submit(c, rid, &q, NULL, &err);
        if (rc == 0)
            rc = greta_client_stream(c, rid, 0, on_delta, &b, &res, &err);
        greta_client_release(c, rid, NULL);
    }
    if (rc < 0)
        fprintf(stderr, "fe_reference: %s\n", err.msg);
    else if (completion_tokens)
        *completion_tokens = res.completion_tokens;
    if (first_token)
        *first_token = b.first;
    free(ids);
    greta_client_close(&c);
    return rc < 0 ? -1 : 0;
}

int fe_reference(const char *instance, const char *system, const char *prompt, int chat, int max_tokens, float temp,
                 int top_k, float top_p, float min_p, uint64_t seed, char *out, size_t cap, uint32_t *completion_tokens)
{
    greta_client_request q = {
        .max_tokens = max_tokens, .temperature = temp, .top_k = top_k, .top_p = top_p, .min_p = min_p, .seed = seed};
    return fe_reference_req(instance, system, prompt, chat, &q, out, cap, completion_tokens, NULL);
}

int fe_worker_max_batch(const char *instance)
{
    greta_client *c = NULL;
    greta_error err = {0};
    uint32_t mb = 0;
    int rc = greta_client_open(instance, &c, &err);
    if (rc == 0)
        rc = greta_client_stats(c, 1, &mb, NULL, NULL, &err);
    greta_client_close(&c);
    return rc < 0 ? -1 : (int)mb;
}
