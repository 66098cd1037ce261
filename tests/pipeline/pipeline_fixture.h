/* pipeline_fixture.h - what the multi-process pipeline tests share: one
 * instance per test program run (named after the pid and the group), the
 * `greta` binary (g_greta_bin: the build's GRETA_BIN unless the program's
 * command line names another), the stories260K model, the stage logs.
 *
 * pipeline_setup() points the runtime directory at /tmp (short socket paths),
 * shortens heartbeats and the hang timeout, and finds the model (g_model NULL:
 * the test skips). pipeline_teardown() runs `greta down`, prints the tail of
 * every log (ctest --output-on-failure shows it) and removes the directory.
 */
#ifndef GRETA_TESTS_PIPELINE_FIXTURE_H
#define GRETA_TESTS_PIPELINE_FIXTURE_H

#include <stdint.h>

#include "proto/endpoint.h"
#include "proto/shm.h"

extern const char *g_group;        /* the test group (argv[1]) */
extern char g_instance[40];        /* t<pid>-<group> */
extern char g_rundir[GRETA_PATH_MAX];
extern const char *g_model;        /* stories260K.gguf, NULL when missing */
extern const char *g_greta_bin;    /* the greta binary the tests run (default GRETA_BIN) */

int64_t now_ms(void);

/* Polls cond every 5 ms for up to ms milliseconds; the last value of cond. */
#define WAIT_FOR(cond, ms)                                                                         \
    ({                                                                                             \
        int64_t _end = now_ms() + (ms);                                                            \
        int _ok;                                                                                   \
        while (!(_ok = (cond)) && now_ms() < _end)                                                 \
            usleep(5000);                                                                          \
        _ok;                                                                                       \
    })

/* system() of a formatted command (echoed to stderr); its exit status. */
int run_cmd(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* greta up -m MODEL --instance INSTANCE -t 1 EXTRA */
int greta_up(const char *extra);
void greta_down(void);
/* The instance's segment (fails the test when it cannot be attached). */
greta_shm *attach(void);
int count_in_file(const char *path, const char *needle);
/* Occurrences of needle in <rundir>/<log>.log. */
int count_in_log(const char *log, const char *needle);

int pipeline_setup(void **state);
int pipeline_teardown(void **state);

#endif
