/* pty_util.c - see pty_util.h. */
#include "pty_util.h"

#include <errno.h>
#include <poll.h>
#include <pty.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static long long now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int pty_slack_ms(int ms)
{
    return ms > 0 && ms < (1 << 30) / PTY_SLACK ? ms * PTY_SLACK : ms;
}

int pty_spawn(pty_proc *p, char *const argv[], char *const env_extra[])
{
    memset(p, 0, sizeof p[0]);
    p->cap = 1 << 16;
    p->out = calloc(p->cap, 1);
    if (!p->out)
        return -1;
    struct winsize ws = {.ws_row = 40, .ws_col = 120};
    fflush(NULL);
    pid_t pid = forkpty(&p->fd, NULL, NULL, &ws);
    if (pid < 0)
        return -1;
    if (pid == 0) {
        for (size_t i = 0; env_extra && env_extra[i]; i++)
            putenv(env_extra[i]);
        setenv("TERM", "xterm", 1);
        execv(argv[0], argv);
        _exit(127);
    }
    p->pid = pid;
    return 0;
}

int pty_send(pty_proc *p, const char *s)
{
    size_t n = strlen(s);
    while (n) {
        ssize_t w = write(p->fd, s, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return -1;
        s += w;
        n -= (size_t)w;
    }
    return 0;
}

/* Reads what is there within ms; 0 on EOF. */
static int pump(pty_proc *p, int ms)
{
    if (p->eof)
        return 0;
    struct pollfd pf = {.fd = p->fd, .events = POLLIN};
    int r = poll(&pf, 1, ms);
    if (r <= 0)
        return 1;
    char buf[4096];
    ssize_t n = read(p->fd, buf, sizeof buf);
    if (n <= 0) { /* EIO once the child side is closed */
        p->eof = 1;
        return 0;
    }
    if (p->len + (size_t)n + 1 > p->cap) {
        size_t cap = (p->len + (size_t)n + 1) * 2;
        char *o = realloc(p->out, cap);
        if (!o)
            return 0;
        p->out = o;
        p->cap = cap;
    }
    memcpy(p->out + p->len, buf, (size_t)n);
    p->len += (size_t)n;
    p->out[p->len] = '\0';
    fprintf(stderr, "%.*s", (int)n, buf);
    return 1;
}

long pty_expect(pty_proc *p, const char *needle, int timeout_ms)
{
    timeout_ms = pty_slack_ms(timeout_ms);
    long long end = now_ms() + timeout_ms;
    for (;;) {
        char *hit = strstr(p->out + p->mark, needle);
        if (hit) {
            p->mark = (size_t)(hit - p->out) + strlen(needle);
            return (long)p->mark;
        }
        long long left = end - now_ms();
        if (p->eof || left <= 0) {
            fprintf(stderr, "\n[pty_expect: '%s' not seen in %d ms%s]\n", needle, timeout_ms,
                    p->eof ? " (the program ended)" : "");
            return -1;
        }
        pump(p, (int)(left < 50 ? left : 50));
    }
}

void pty_drain(pty_proc *p, int ms)
{
    long long end = now_ms() + ms;
    while (now_ms() < end && pump(p, 20)) {
    }
}

int pty_wait(pty_proc *p, int timeout_ms)
{
    timeout_ms = pty_slack_ms(timeout_ms);
    long long end = now_ms() + timeout_ms;
    while (now_ms() < end) {
        int st;
        pid_t r = waitpid(p->pid, &st, WNOHANG);
        if (r == p->pid) {
            pty_drain(p, 50);
            p->pid = 0;
            return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
        }
        if (!pump(p, 20))
            usleep(10000);
    }
    fprintf(stderr, "\n[pty_wait: pid %d still running after %d ms]\n", (int)p->pid, timeout_ms);
    return -1;
}

void pty_kill(pty_proc *p)
{
    if (p->pid > 0) {
        kill(p->pid, SIGKILL);
        waitpid(p->pid, NULL, 0);
        p->pid = 0;
    }
}

void pty_close(pty_proc *p)
{
    pty_kill(p);
    if (p->fd > 0)
        close(p->fd);
    free(p->out);
    memset(p, 0, sizeof p[0]);
}
