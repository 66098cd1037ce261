#include "test_util.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

const char *greta_testdata_dir(void)
{
    static char dir[4096];
    const char *env = getenv("GRETA_TESTDATA");
    if (env && *env)
        snprintf(dir, sizeof dir, "%s", env);
    else
        snprintf(dir, sizeof dir, "%s/../shared/testdata", GRETA_SOURCE_DIR);
    return dir;
}

const char *greta_testdata_find(const char *name)
{
    static char path[4096 + 256];
    snprintf(path, sizeof path, "%s/%s", greta_testdata_dir(), name);
    if (access(path, R_OK) == 0)
        return path;
    const char *req = getenv("GRETA_REQUIRE_TESTDATA");
    if (req && strcmp(req, "1") == 0) {
        fail_msg("required test data '%s' is missing (GRETA_REQUIRE_TESTDATA=1); "
                 "get it with deploy/fetch-testdata.sh or set GRETA_TESTDATA", path);
        return NULL;
    }
    fprintf(stderr, "SKIP: test data '%s' not found; run deploy/fetch-testdata.sh "
                    "or set GRETA_TESTDATA\n", path);
    return NULL;
}

char *greta_read_file(const char *path, size_t *size)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    if (fseek(f, 0, SEEK_END) != 0) {
        fclose(f);
        return NULL;
    }
    long n = ftell(f);
    if (n < 0 || fseek(f, 0, SEEK_SET) != 0) {
        fclose(f);
        return NULL;
    }
    char *buf = malloc((size_t)n + 1);
    if (buf && fread(buf, 1, (size_t)n, f) != (size_t)n) {
        free(buf);
        buf = NULL;
    }
    fclose(f);
    if (buf) {
        buf[n] = '\0';
        if (size)
            *size = (size_t)n;
    }
    return buf;
}

const char *greta_test_tmpdir(const char *test_name)
{
    static char dir[4200];
    /* the build tree's tmp/, or /tmp/greta-tests-UID where the build tree is
     * not there (a test program copied to the GPU machine) */
    struct stat st;
    char base[4096];
    if (stat(GRETA_TEST_BINARY_DIR, &st) == 0 && S_ISDIR(st.st_mode))
        snprintf(base, sizeof base, "%s/tmp", GRETA_TEST_BINARY_DIR);
    else
        snprintf(base, sizeof base, "/tmp/greta-tests-%u", (unsigned)getuid());
    if (mkdir(base, 0700) != 0 && errno != EEXIST) {
        fprintf(stderr, "test tmpdir: cannot create %s: %s\n", base, strerror(errno));
        return NULL;
    }
    snprintf(dir, sizeof dir, "%s/%s", base, test_name);
    if (mkdir(dir, 0700) != 0 && errno != EEXIST) {
        fprintf(stderr, "test tmpdir: cannot create %s: %s\n", dir, strerror(errno));
        return NULL;
    }
    return dir;
}

int greta_test_run_cmd(const char *cmd, const char *dir, char **out, char **err)
{
    static char line[32768];
    int k = err ? snprintf(line, sizeof line, "%s > '%s/out.txt' 2> '%s/err.txt'", cmd, dir, dir)
                : snprintf(line, sizeof line, "%s > '%s/out.txt' 2>&1", cmd, dir);
    if (k < 0 || (size_t)k >= sizeof line)
        fail_msg("command line does not fit %zu bytes: %s", sizeof line, cmd);
    const int st = system(line);
    char path[4200];
    snprintf(path, sizeof path, "%s/out.txt", dir);
    *out = greta_read_file(path, NULL);
    assert_non_null(*out);
    if (err) {
        snprintf(path, sizeof path, "%s/err.txt", dir);
        *err = greta_read_file(path, NULL);
        assert_non_null(*err);
    }
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}
