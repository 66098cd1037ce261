/* cli_test_util.h - what the `greta parity` and `greta drift` CLI tests
 * share: running the command into a scratch folder, the GPU probe and JSON
 * reading. Header-only (static inline): each test includes it once. */
#ifndef GRETA_CLI_TEST_UTIL_H
#define GRETA_CLI_TEST_UTIL_H

#include <stdio.h>
#include <stdlib.h>

#include <cJSON.h>

#include "test_util.h"
#ifdef GRETA_TEST_HAVE_GPU
#include "kernels/gpu/gpu_ops.h"
#endif

typedef struct cli_result {
    int rc;
    char *out, *err;
} cli_result;

/* Runs `env ENV GRETA SUBCOMMAND ARGS < /dev/null` with its output in dir. */
static inline cli_result cli_run(const char *greta, const char *subcommand, const char *dir, const char *env,
                                 const char *args)
{
    cli_result r = {0};
    char cmd[16384];
    snprintf(cmd, sizeof cmd, "env %s '%s' %s %s < /dev/null", env ? env : "", greta, subcommand, args);
    r.rc = greta_test_run_cmd(cmd, dir, &r.out, &r.err);
    return r;
}

static inline void cli_result_free(cli_result *r)
{
    free(r->out);
    free(r->err);
}

static inline int cli_have_gpu(void)
{
#ifdef GRETA_TEST_HAVE_GPU
    return greta_gpu_device_count() > 0;
#else
    return 0;
#endif
}

/* Where cli_have_gpu() is false: r, the command run with a GPU option,
 * must have failed with the reason (this build has GPU support but no GPU
 * is present, or no GPU support); then the test is skipped, visibly. */
static inline void cli_no_gpu_skip(cli_result *r)
{
    assert_int_equal(r->rc, 1);
#ifdef GRETA_TEST_HAVE_GPU
    ASSERT_CONTAINS(r->err, "no GPU found");
#else
    ASSERT_CONTAINS(r->err, "not built with GPU support");
#endif
    cli_result_free(r);
    fprintf(stderr, "SKIPPED: no GPU on this machine (the GPU half of this test runs on the GPU machine)\n");
    skip();
}

static inline cJSON *cli_read_json(const char *path)
{
    char *text = greta_read_file(path, NULL);
    assert_non_null(text);
    cJSON *j = cJSON_Parse(text);
    free(text);
    assert_non_null(j);
    return j;
}

#endif
