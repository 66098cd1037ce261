/* endpoint.c - see endpoint.h. */
#include "endpoint.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

int greta_instance_check(const char *name, greta_error *err)
{
    if (!name || !name[0])
        return greta_error_set(err, GRETA_ERR_INVALID, "instance name: empty");
    size_t n = strlen(name);
    if (n > GRETA_INSTANCE_MAX)
        return greta_error_set(err, GRETA_ERR_INVALID, "instance name '%.40s...': longer than %d characters",
                               name, GRETA_INSTANCE_MAX);
    if (name[0] == '.' || name[0] == '-')
        return greta_error_set(err, GRETA_ERR_INVALID, "instance name '%s': must not start with '%c'", name,
                               name[0]);
    for (size_t i = 0; i < n; i++) {
        char c = name[i];
        int ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                 c == '_' || c == '.' || c == '-';
        if (!ok)
            return greta_error_set(err, GRETA_ERR_INVALID,
                                   "instance name '%s': character %zu is not one of [A-Za-z0-9_.-]", name, i);
    }
    return GRETA_OK;
}

static int parent_dir(char *buf, size_t n, greta_error *err)
{
    const char *xdg = getenv("XDG_RUNTIME_DIR");
    int w;
    if (xdg && xdg[0] == '/')
        w = snprintf(buf, n, "%s/greta", xdg);
    else
        w = snprintf(buf, n, "/tmp/greta-%u", (unsigned)getuid());
    if (w < 0 || (size_t)w >= n)
        return greta_error_set(err, GRETA_ERR_LIMIT, "runtime directory: XDG_RUNTIME_DIR too long");
    return GRETA_OK;
}

int greta_runtime_dir(const char *instance, char *buf, size_t n, greta_error *err)
{
    int rc = greta_instance_check(instance, err);
    if (rc < 0)
        return rc;
    char parent[GRETA_PATH_MAX];
    if ((rc = parent_dir(parent, sizeof parent, err)) < 0)
        return rc;
    int w = snprintf(buf, n, "%s/%s", parent, instance);
    if (w < 0 || (size_t)w >= n)
        return greta_error_set(err, GRETA_ERR_LIMIT, "runtime directory '%s/%s': too long", parent, instance);
    return GRETA_OK;
}

/* mkdir 0700 if missing; then insist on a directory we own with mode 0700. */
static int private_dir(const char *path, greta_error *err)
{
    if (mkdir(path, 0700) != 0 && errno != EEXIST)
        return greta_error_set(err, GRETA_ERR_IO, "runtime directory '%s': mkdir: %s", path, strerror(errno));
    struct stat st;
    if (lstat(path, &st) != 0)
        return greta_error_set(err, GRETA_ERR_IO, "runtime directory '%s': %s", path, strerror(errno));
    if (!S_ISDIR(st.st_mode))
        return greta_error_set(err, GRETA_ERR_IO, "runtime directory '%s': not a directory", path);
    if (st.st_uid != getuid())
        return greta_error_set(err, GRETA_ERR_IO, "runtime directory '%s': owned by uid %u, not by us (%u)",
                               path, (unsigned)st.st_uid, (unsigned)getuid());
    if ((st.st_mode & 0777) != 0700 && chmod(path, 0700) != 0)
        return greta_error_set(err, GRETA_ERR_IO, "runtime directory '%s': mode %03o, chmod 0700: %s", path,
                               (unsigned)(st.st_mode & 0777), strerror(errno));
    return GRETA_OK;
}

int greta_runtime_dir_create(const char *instance, char *buf, size_t n, greta_error *err)
{
    int rc = greta_runtime_dir(instance, buf, n, err);
    if (rc < 0)
        return rc;
    char parent[GRETA_PATH_MAX];
    if ((rc = parent_dir(parent, sizeof parent, err)) < 0)
        return rc;
    if ((rc = private_dir(parent, err)) < 0)
        return rc;
    return private_dir(buf, err);
}

int greta_endpoint_path(const char *dir, const char *name, char *buf, size_t n, greta_error *err)
{
    struct sockaddr_un sa;
    int w = snprintf(buf, n, "%s/%s.sock", dir, name);
    if (w < 0 || (size_t)w >= n || (size_t)w >= sizeof sa.sun_path)
        return greta_error_set(err, GRETA_ERR_LIMIT,
                               "endpoint '%s/%s.sock': longer than the %zu bytes a unix socket path may have",
                               dir, name, sizeof sa.sun_path - 1);
    return GRETA_OK;
}

int greta_shm_name(const char *instance, char *buf, size_t n, greta_error *err)
{
    int rc = greta_instance_check(instance, err);
    if (rc < 0)
        return rc;
    int w = snprintf(buf, n, "/greta-%u-%s", (unsigned)getuid(), instance);
    if (w < 0 || (size_t)w >= n)
        return greta_error_set(err, GRETA_ERR_LIMIT, "segment name for '%s': too long", instance);
    return GRETA_OK;
}

static int ends_with(const char *s, const char *suffix)
{
    size_t a = strlen(s), b = strlen(suffix);
    return a >= b && !strcmp(s + a - b, suffix);
}

void greta_runtime_dir_clean(const char *dir, int remove_logs)
{
    DIR *d = opendir(dir);
    if (!d)
        return;
    struct dirent *ent;
    char path[GRETA_PATH_MAX + 300];
    while ((ent = readdir(d)) != NULL) {
        if (ends_with(ent->d_name, ".sock") || (remove_logs && ends_with(ent->d_name, ".log"))) {
            snprintf(path, sizeof path, "%s/%s", dir, ent->d_name);
            unlink(path);
        }
    }
    closedir(d);
    rmdir(dir);
}
