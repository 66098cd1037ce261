/* instance.h - "use a running instance or start a temporary one" for the
 * client commands (greta chat, greta batch).
 *
 *   greta_instance_opts o = {.name = "default", .model = NULL, .slots = 8, .log = stderr};
 *   greta_instance *in; greta_instance_open(&o, &in, &err);
 *   ... greta_client_open(greta_instance_name(in), &c, &err) ...
 *   greta_instance_close(&in);   // stops the instance if it was temporary
 *
 * If the named instance is up (its supervisor is alive), it is used as it is;
 * a model given in the options must then be the one it serves (same real
 * path), else GRETA_ERR_STATE names both. Otherwise a temporary instance of
 * that name is started with `greta up --instance NAME [-m MODEL] [--slots N]`
 * (this executable, /proc/self/exe) and stopped again with `greta down` when
 * the command ends. A small watchdog process, started before `up` and holding
 * the read end of a pipe, runs the `down` as soon as the command's end of
 * the pipe closes, so the temporary instance also goes away when the command
 * is killed (kill -9 included). The watchdog and `up` run in sessions of
 * their own: Ctrl-C at the terminal reaches the command only. From the
 * command's end until its `down` is over, the watchdog holds the instance's
 * down lock (flock of <runtime parent>/.NAME.down, removed afterwards);
 * greta_instance_open waits for it (30 s at most) before it looks at the
 * instance, so a command run again right after a kill -9 neither uses the
 * instance that is going down nor starts one that the old `down` then
 * takes apart (it removes the segment and sockets of the name as it ends).
 *
 * Geometry of the instance (from its segment header) is available for the
 * client's checks: context length, slots, vocabulary, model path, backend,
 * worker threads. A temporary instance gets the backend, context and threads
 * of the options (greta run passes its own).
 */
#ifndef GRETA_FRONTEND_INSTANCE_H
#define GRETA_FRONTEND_INSTANCE_H

#include <stdint.h>
#include <stdio.h>

#include "common/error.h"

typedef struct greta_instance greta_instance;

typedef struct greta_instance_opts {
    const char *name;  /* instance name; NULL: "default" when it is up, else a temporary instance of
                          this command's own, "default-PID" (concurrent commands do not share it) */
    const char *model; /* model path, or NULL: any for a running instance, the default for a temporary one */
    int slots;         /* slots of a temporary instance (0: greta up's default) */
    FILE *log;         /* one line when a temporary instance is started (NULL: quiet) */
    const char *backend; /* backend of a temporary instance (NULL: greta up's default, cpu) */
    int ctx;             /* context length of a temporary instance (0: greta up's default) */
    int threads;         /* worker threads of a temporary instance (0: all it may use) */
} greta_instance_opts;

/* 1 when instance `name` is up (its supervisor is alive), 0 when not, < 0 on
 * error (a bad name, an unreadable segment). Starts nothing. */
int greta_instance_is_up(const char *name, greta_error *err);

int greta_instance_open(const greta_instance_opts *o, greta_instance **out, greta_error *err);
/* Stops a temporary instance (waits for its `down`); a running one is left alone. */
void greta_instance_close(greta_instance **in);

const char *greta_instance_name(const greta_instance *in);
int greta_instance_temporary(const greta_instance *in);     /* 1: started by greta_instance_open */
const char *greta_instance_model(const greta_instance *in); /* real path of the served model */
uint32_t greta_instance_n_ctx(const greta_instance *in);
uint32_t greta_instance_n_slots(const greta_instance *in);
uint32_t greta_instance_n_vocab(const greta_instance *in);
const char *greta_instance_backend(const greta_instance *in); /* "cpu" or "gpu" */
int32_t greta_instance_n_threads(const greta_instance *in);    /* worker threads, 0: all it may use */

#endif
