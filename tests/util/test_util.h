/* test_util.h - helpers shared by the cmocka test programs.
 *
 * Test data (../shared/testdata beside the repository, or GRETA_TESTDATA) is
 * looked up by file name. A missing file skips the test with a message naming
 * the file and deploy/fetch-testdata.sh; with GRETA_REQUIRE_TESTDATA=1 (set by
 * .ci/run) a missing file fails the test instead.
 */
#ifndef GRETA_TEST_UTIL_H
#define GRETA_TEST_UTIL_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
/* cmocka needs the includes above first */
#include <cmocka.h>

/* Directory of the test data: $GRETA_TESTDATA, else <repo>/../shared/testdata. */
const char *greta_testdata_dir(void);

/* Full path of a test-data file in a static buffer (valid until the next call),
 * or NULL when it does not exist: then the calling test is skipped (or fails
 * under GRETA_REQUIRE_TESTDATA=1) and the caller must return. Use through
 * the macro below, which returns from the test for you. */
const char *greta_testdata_find(const char *name);

#define GRETA_TESTDATA_OR_SKIP(var, name)                                      \
    const char *var = greta_testdata_find(name);                               \
    if (!var) {                                                                \
        skip();                                                                \
        return;                                                                \
    }

/* Fails the test unless needle occurs in hay (printing hay). */
#define ASSERT_CONTAINS(hay, needle)                                              \
    do {                                                                          \
        if (!strstr((hay), (needle)))                                             \
            fail_msg("expected '%s' in output:\n%s", (needle), (hay));           \
    } while (0)

/* Reads a whole file into a malloc'ed NUL-terminated buffer (size without the
 * NUL in *size). NULL on failure. */
char *greta_read_file(const char *path, size_t *size);

/* A fresh directory under the build tree for files a test writes
 * (removed by nothing: the build tree is disposable); /tmp/greta-tests-UID
 * where the build tree is not there (a test copied to the GPU machine). */
const char *greta_test_tmpdir(const char *test_name);

/* Runs the shell command CMD with its stdout captured in DIR/out.txt and its
 * stderr in DIR/err.txt (with err NULL: stderr goes into out.txt too, as
 * `2>&1`); both are then read into malloc'ed NUL-terminated buffers *out and
 * *err. CMD carries its own stdin redirection if it needs one. Returns the
 * exit status, -1 when the command did not exit normally. Fails the test when
 * the command line does not fit or an output file cannot be read. */
int greta_test_run_cmd(const char *cmd, const char *dir, char **out, char **err);

#endif
