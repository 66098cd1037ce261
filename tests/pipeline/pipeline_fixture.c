/* pipeline_fixture.c - see pipeline_fixture.h. */
#include "pipeline_fixture.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "test_util.h"

#include "proto/zsock.h"

const char *g_group = "basic";
char g_instance[40];
char g_rundir[GRETA_PATH_MAX];
const char *g_model;
const char *g_greta_bin = GRETA_BIN;

int64_t now_ms(void)
{
    return greta_now_ms();
}

int run_cmd(const char *fmt, ...)
{
    char cmd[8192];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cmd, sizeof cmd, fmt, ap);
    va_end(ap);
    fprintf(stderr, "$ %s\n", cmd);
    int st = system(cmd);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

int greta_up(const char *extra)
{
    return run_cmd("%s up -m %s --instance %s -t 1 %s", g_greta_bin, g_model, g_instance, extra ? extra : "");
}

void greta_down(void)
{
    run_cmd("%s down --instance %s >/dev/null", g_greta_bin, g_instance);
}

greta_shm *attach(void)
{
    char name[128];
    greta_error err = {0};
    greta_shm *shm = NULL;
    greta_shm_name(g_instance, name, sizeof name, &err);
    if (greta_shm_attach(name, &shm, &err) < 0)
        fail_msg("attach: %s", err.msg);
    return shm;
}

int count_in_file(const char *path, const char *needle)
{
    size_t n;
    char *text = greta_read_file(path, &n);
    if (!text)
        return 0;
    int c = 0;
    for (char *p = text; (p = strstr(p, needle)) != NULL; p += strlen(needle))
        c++;
    free(text);
    return c;
}

int count_in_log(const char *log, const char *needle)
{
    char path[GRETA_PATH_MAX + 32];
    snprintf(path, sizeof path, "%s/%s.log", g_rundir, log);
    return count_in_file(path, needle);
}

int pipeline_setup(void **state)
{
    (void)state;
    unsetenv("XDG_RUNTIME_DIR"); /* short socket paths: /tmp/greta-<uid>/<instance> */
    setenv("GRETA_HEARTBEAT_MS", "50", 1);
    setenv("GRETA_HANG_TIMEOUT_MS", "1000", 1);
    unsetenv("GRETA_TRACE");
    unsetenv("GRETA_HANDOFF");
    g_model = greta_testdata_find("stories260K.gguf");
    if (!g_model)
        return 0;
    static char model[4096];
    snprintf(model, sizeof model, "%s", g_model);
    g_model = model;
    snprintf(g_instance, sizeof g_instance, "t%d-%.12s", (int)getpid(), g_group);
    greta_error err = {0};
    greta_runtime_dir(g_instance, g_rundir, sizeof g_rundir, &err);
    return 0;
}

int pipeline_teardown(void **state)
{
    (void)state;
    if (!g_model)
        return 0;
    greta_down();
    /* the logs go to the test output (ctest --output-on-failure), then away */
    const char *logs[] = {"supervisor", "tokenizer", "sampler", "gpu-worker"};
    for (size_t i = 0; i < sizeof logs / sizeof logs[0]; i++) {
        char path[GRETA_PATH_MAX + 32];
        snprintf(path, sizeof path, "%s/%s.log", g_rundir, logs[i]);
        size_t n;
        char *text = greta_read_file(path, &n);
        if (text && n)
            fprintf(stderr, "---- %s.log\n%s", logs[i], n > 4000 ? text + n - 4000 : text);
        free(text);
    }
    greta_runtime_dir_clean(g_rundir, 1);
    return 0;
}
