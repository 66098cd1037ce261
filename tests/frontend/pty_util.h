/* pty_util.h - run a command on a pseudo-terminal and talk to it (tests of
 * interactive commands: greta chat, greta batch's progress bar).
 *
 *   pty_proc p;
 *   char *argv[] = {GRETA_BIN, "chat", ..., NULL};
 *   pty_spawn(&p, argv, env_extra);          // env_extra: "NAME=value" strings, NULL-terminated
 *   pty_expect(&p, ">>> ", 5000);            // offset just after the match, or -1 on timeout/EOF
 *   pty_send(&p, "Once upon a time\r");
 *   pty_send(&p, "\x03");                     // Ctrl-C: SIGINT to the foreground process group
 *   pty_wait(&p, 5000);                      // exit status, or -1 (then pty_kill)
 *
 * Everything the command writes is kept in p.out (NUL-terminated); a search
 * starts at p.mark, which each successful pty_expect moves past its match.
 * Every output is echoed to stderr with a prefix, so a failing test shows
 * the session.
 *
 * Deadlines: pty_expect and pty_wait return as soon as the event happens;
 * their timeouts are only upper bounds, and each is stretched by PTY_SLACK
 * (pty_slack_ms) so a loaded CI machine (ctest -j2 on 2 cores, ASan) does
 * not turn a slow answer into a failure. Write the timeout an idle machine
 * needs.
 */
#ifndef GRETA_TEST_PTY_UTIL_H
#define GRETA_TEST_PTY_UTIL_H

#include <stddef.h>
#include <sys/types.h>

/* Factor applied to every deadline of these helpers (and fe_wait_down). */
#define PTY_SLACK 3

typedef struct pty_proc {
    pid_t pid;
    int fd;    /* master side */
    char *out; /* everything read so far, NUL-terminated */
    size_t len, cap;
    size_t mark; /* where the next pty_expect searches from */
    int eof;
} pty_proc;

/* Starts argv[0] (a path) with env_extra added to the environment, on a new
 * 120x40 terminal. 0 or -1. */
int pty_spawn(pty_proc *p, char *const argv[], char *const env_extra[]);
/* Writes s to the terminal. */
int pty_send(pty_proc *p, const char *s);
/* Waits for needle in the output after p->mark; returns the offset after the
 * match (and moves p->mark there), or -1. */
long pty_expect(pty_proc *p, const char *needle, int timeout_ms);
/* Reads whatever arrives for ms milliseconds. */
void pty_drain(pty_proc *p, int ms);
/* Waits for the process to exit (reading its output); exit status, 128+signal,
 * or -1 on timeout. */
int pty_wait(pty_proc *p, int timeout_ms);
/* ms * PTY_SLACK: a deadline as the helpers apply it. */
int pty_slack_ms(int ms);
/* SIGKILL and reap. */
void pty_kill(pty_proc *p);
/* Closes the master and frees the output. */
void pty_close(pty_proc *p);

#endif
