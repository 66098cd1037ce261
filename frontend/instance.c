/* instance.c - see instance.h. */
#include "instance.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "proto/endpoint.h"
#include "proto/shm.h"
#include "proto/zsock.h"

/* How long greta_instance_open waits for the `greta down` of an earlier
 * command's temporary instance of the same name (down itself gives up
 * after about 17 s). */
#define DOWN_WAIT_MS 30000

struct greta_instance {
    char name[GRETA_INSTANCE_MAX + 1];
    char model[GRETA_SHM_PATH_LEN];
    uint32_t n_ctx, n_slots, n_vocab;
    char backend[16];
    int32_t n_threads;
    int temporary;
    int watch_fd;    /* write end of the watchdog's pipe (temporary instances), else -1 */
    pid_t watch_pid; /* the watchdog, which becomes `greta down` */
};

const char *greta_instance_name(const greta_instance *in)
{
    return in->name;
}
int greta_instance_temporary(const greta_instance *in)
{
    return in->temporary;
}
const char *greta_instance_model(const greta_instance *in)
{
    return in->model;
}
uint32_t greta_instance_n_ctx(const greta_instance *in)
{
    return in->n_ctx;
}
uint32_t greta_instance_n_slots(const greta_instance *in)
{
    return in->n_slots;
}
uint32_t greta_instance_n_vocab(const greta_instance *in)
{
    return in->n_vocab;
}
const char *greta_instance_backend(const greta_instance *in)
{
    return in->backend;
}
int32_t greta_instance_n_threads(const greta_instance *in)
{
    return in->n_threads;
}

/* Reads the geometry of a live instance; 1 if it is up, 0 if not, < 0 on error. */
static int probe(greta_instance *in, greta_error *err)
{
    char shm_name[128];
    int rc = greta_shm_name(in->name, shm_name, sizeof shm_name, err);
    if (rc < 0)
        return rc;
    greta_shm *shm = NULL;
    rc = greta_shm_attach(shm_name, &shm, err);
    if (rc == GRETA_ERR_NOT_FOUND) {
        greta_error_clear(err);
        return 0;
    }
    if (rc < 0)
        return greta_error_prefix(err, "instance %s", in->name);
    int up = !greta_shm_is_stale(shm);
    if (up) {
        greta_shm_header *h = greta_shm_hdr(shm);
        snprintf(in->model, sizeof in->model, "%.*s", (int)sizeof h->model_path - 1, h->model_path);
        in->n_ctx = h->n_ctx;
        in->n_slots = h->n_slots;
        in->n_vocab = h->n_vocab;
        snprintf(in->backend, sizeof in->backend, "%.*s", (int)sizeof h->backend - 1,
                 h->backend[0] ? h->backend : "cpu");
        in->n_threads = h->n_threads;
    }
    greta_shm_detach(&shm);
    return up;
}

static void wait_child(pid_t pid, int *status)
{
    int st = 0;
    while (waitpid(pid, &st, 0) < 0 && errno == EINTR) {
    }
    if (status)
        *status = st;
}

/* The down lock of instance `name`: <runtime parent>/.NAME.down, next to
 * the runtime directory (which the supervisor removes before its `greta
 * down` is over, so it cannot carry the lock; no instance name starts with
 * '.'). A watchdog holds it (flock) from the end of its command until its
 * `greta down` has finished, then removes it. */
static int down_lock_path(const char *name, char *buf, size_t n, greta_error *err)
{
    char dir[GRETA_PATH_MAX];
    int rc = greta_runtime_dir(name, dir, sizeof dir, err);
    if (rc < 0)
        return rc;
    const char *slash = strrchr(dir, '/');
    int w = slash ? snprintf(buf, n, "%.*s/.%s.down", (int)(slash - dir), dir, slash + 1) : -1;
    if (w < 0 || (size_t)w >= n)
        return greta_error_set(err, GRETA_ERR_LIMIT, "down lock of '%s': path too long", dir);
    return GRETA_OK;
}

/* Waits (DOWN_WAIT_MS at most) while the watchdog of an earlier command is
 * taking a temporary instance of this name down. Its `greta down` removes
 * the segment and the sockets of the name when it ends, so an instance
 * started meanwhile would lose them (and a command would use the dying one):
 * after a kill -9, the rerun's own `greta up` failed that way ("segment
 * does not exist") when it came before the old down's last step. */
static void wait_down_done(const char *name, FILE *log)
{
    char path[GRETA_PATH_MAX + 16];
    if (down_lock_path(name, path, sizeof path, NULL) < 0)
        return;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return; /* no down running (the file goes away with its lock) */
    int64_t end = greta_now_ms() + DOWN_WAIT_MS;
    int said = 0;
    while (flock(fd, LOCK_EX | LOCK_NB) != 0 && (errno == EWOULDBLOCK || errno == EINTR) && greta_now_ms() < end) {
        if (!said && log)
            fprintf(log, "greta: instance %s: waiting for the temporary instance of an earlier command to stop\n",
                    name);
        said = 1;
        usleep(20000);
    }
    close(fd); /* and the lock with it: the down it waited for is over */
}

/* The watchdog's end (a forked child: async-signal-safe calls only): takes
 * the down lock (the file still of that name: an earlier holder removes it),
 * runs `greta down` as its child, removes the lock file while it still holds
 * the lock, and exits with down's status. Without the lock it execs down. */
static void run_down(const char *self, char *const argv[], const char *lock_path)
{
    int lk = -1;
    for (int tries = 0; lock_path[0] && tries < 10; tries++) {
        lk = open(lock_path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
        if (lk < 0)
            break;
        int r;
        while ((r = flock(lk, LOCK_EX)) != 0 && errno == EINTR) {
        }
        struct stat a, b;
        if (r == 0 && fstat(lk, &a) == 0 && stat(lock_path, &b) == 0 && a.st_dev == b.st_dev && a.st_ino == b.st_ino)
            break;
        close(lk);
        lk = -1;
    }
    pid_t pid = lk >= 0 ? fork() : -1;
    if (pid == 0 || pid < 0) {
        if (pid < 0 && lk >= 0)
            unlink(lock_path); /* no child to wait for: down runs unlocked, as it is exec'd */
        execv(self, argv);
        _exit(127);
    }
    int st = 0;
    while (waitpid(pid, &st, 0) < 0 && errno == EINTR) {
    }
    unlink(lock_path);
    _exit(WIFEXITED(st) ? WEXITSTATUS(st) : 1);
}

/* Forks the watchdog: it waits for EOF on the pipe, then runs `greta down`
 * under the down lock. */
static int start_watchdog(greta_instance *in, const char *self, greta_error *err)
{
    char lock_path[GRETA_PATH_MAX + 16];
    if (down_lock_path(in->name, lock_path, sizeof lock_path, NULL) < 0)
        lock_path[0] = '\0'; /* (a name too long for it is too long for `greta up` too) */
    int fds[2];
    if (pipe2(fds, O_CLOEXEC) != 0)
        return greta_error_set(err, GRETA_ERR_IO, "pipe: %s", strerror(errno));
    char *argv[] = {"greta", "down", "--instance", in->name, NULL};
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0) {
        close(fds[0]);
        close(fds[1]);
        return greta_error_set(err, GRETA_ERR_IO, "fork: %s", strerror(errno));
    }
    if (pid == 0) {
        setsid(); /* no terminal signals (Ctrl-C is for the command) */
        close(fds[1]);
        int nul = open("/dev/null", O_RDWR);
        if (nul >= 0) {
            dup2(nul, 0);
            dup2(nul, 1);
        }
        for (int k = 3; k < 1024; k++)
            if (k != fds[0])
                close(k);
        char b;
        ssize_t r;
        while ((r = read(fds[0], &b, 1)) != 0 && (r > 0 || errno == EINTR)) {
        }
        run_down(self, argv, lock_path);
    }
    close(fds[0]);
    in->watch_fd = fds[1];
    in->watch_pid = pid;
    return GRETA_OK;
}

static int start_temporary(greta_instance *in, const char *wanted, const greta_instance_opts *o, greta_error *err)
{
    char self[4096];
    ssize_t k = readlink("/proc/self/exe", self, sizeof self - 1);
    if (k <= 0)
        return greta_error_set(err, GRETA_ERR_IO, "cannot find the greta executable (/proc/self/exe)");
    self[k] = '\0';
    char slots[16], ctx[16], threads[16];
    snprintf(slots, sizeof slots, "%d", o->slots);
    snprintf(ctx, sizeof ctx, "%d", o->ctx);
    snprintf(threads, sizeof threads, "%d", o->threads);
    char *argv[18];
    int a = 0;
    argv[a++] = "greta";
    argv[a++] = "up";
    argv[a++] = "--instance";
    argv[a++] = in->name;
    if (o->model) {
        argv[a++] = "-m";
        argv[a++] = (char *)o->model;
    }
    if (o->slots > 0) {
        argv[a++] = "--slots";
        argv[a++] = slots;
    }
    if (o->backend) {
        argv[a++] = "--backend";
        argv[a++] = (char *)o->backend;
    }
    if (o->ctx > 0) {
        argv[a++] = "--ctx";
        argv[a++] = ctx;
    }
    if (o->threads > 0) {
        argv[a++] = "-t";
        argv[a++] = threads;
    }
    argv[a] = NULL;
    if (o->log)
        fprintf(o->log,
                "greta: instance %s is not up: starting a temporary one, %s (model %s); it stops when this "
                "command ends\n",
                wanted, in->name, o->model ? o->model : "default");
    int rc = start_watchdog(in, self, err);
    if (rc < 0)
        return rc;
    in->temporary = 1;
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0)
        return greta_error_set(err, GRETA_ERR_IO, "fork: %s", strerror(errno));
    if (pid == 0) {
        setsid();
        int nul = open("/dev/null", O_RDWR);
        if (nul >= 0) {
            dup2(nul, 0);
            dup2(nul, 1); /* `up` prints the status table; errors still go to stderr */
        }
        execv(self, argv);
        _exit(127);
    }
    int st = 0;
    wait_child(pid, &st);
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
        return greta_error_set(err, GRETA_ERR_STATE, "could not start temporary instance %s (greta up failed)",
                               in->name);
    rc = probe(in, err);
    if (rc < 0)
        return rc;
    if (rc == 0)
        return greta_error_set(err, GRETA_ERR_STATE, "temporary instance %s went away right after starting", in->name);
    return GRETA_OK;
}

int greta_instance_is_up(const char *name, greta_error *err)
{
    greta_instance in;
    memset(&in, 0, sizeof in);
    int rc = greta_instance_check(name, err);
    if (rc < 0)
        return greta_error_prefix(err, "--instance");
    snprintf(in.name, sizeof in.name, "%s", name);
    return probe(&in, err);
}

int greta_instance_open(const greta_instance_opts *o, greta_instance **out, greta_error *err)
{
    *out = NULL;
    const char *name = o->name ? o->name : "default";
    int rc = greta_instance_check(name, err);
    if (rc < 0)
        return greta_error_prefix(err, "--instance");
    greta_instance *in = calloc(1, sizeof *in);
    if (!in)
        return greta_error_set(err, GRETA_ERR_NOMEM, "out of memory");
    in->watch_fd = -1;
    snprintf(in->name, sizeof in->name, "%s", name);
    wait_down_done(in->name, o->log);
    rc = probe(in, err);
    if (rc == 1 && o->model) {
        char *want = realpath(o->model, NULL);
        if (!want) {
            rc = greta_error_set(err, GRETA_ERR_IO, "-m %s: %s", o->model, strerror(errno));
        } else {
            if (strcmp(want, in->model) != 0)
                rc = greta_error_set(err, GRETA_ERR_STATE,
                                     "instance %s serves %s, not -m %s (leave out -m, or use another --instance)",
                                     in->name, in->model, want);
            free(want);
        }
    } else if (rc == 0) {
        if (!o->name) /* nobody named it: a private name, so another command never takes (or stops) it */
            snprintf(in->name, sizeof in->name, "default-%d", (int)getpid());
        rc = start_temporary(in, name, o, err);
    }
    if (rc < 0) {
        greta_instance_close(&in);
        return rc;
    }
    *out = in;
    return GRETA_OK;
}

void greta_instance_close(greta_instance **pin)
{
    if (!pin || !*pin)
        return;
    greta_instance *in = *pin;
    if (in->watch_fd >= 0) {
        close(in->watch_fd); /* the watchdog runs `greta down` now */
        int st = 0;
        wait_child(in->watch_pid, &st);
        char dir[GRETA_PATH_MAX];
        if (WIFEXITED(st) && WEXITSTATUS(st) == 0 && greta_runtime_dir(in->name, dir, sizeof dir, NULL) == 0)
            greta_runtime_dir_clean(dir, 1); /* its logs too: nobody asked for this instance */
    }
    free(in);
    *pin = NULL;
}
