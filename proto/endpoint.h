/* endpoint.h - per-instance names: runtime directory, socket paths, segment.
 *
 * An instance name (default "default") makes everything unique, so tests and
 * several servers can run side by side:
 *   runtime dir   $XDG_RUNTIME_DIR/greta/<instance>   (when XDG_RUNTIME_DIR is set)
 *                 /tmp/greta-<uid>/<instance>          (otherwise)
 *                 both levels mode 0700, owned by the user;
 *   sockets       ipc://<runtime dir>/<endpoint>.sock  (files chmod 0600)
 *   segment       /greta-<uid>-<instance>             (shm_open name, mode 0600)
 *   logs          <runtime dir>/<stage>.log, supervisor.log
 *
 * Instance names are 1..32 characters of [A-Za-z0-9_.-], not starting with
 * '.' or '-'. Socket paths must fit sockaddr_un (107 bytes); a longer runtime
 * directory is refused with an error naming it.
 */
#ifndef GRETA_PROTO_ENDPOINT_H
#define GRETA_PROTO_ENDPOINT_H

#include <stddef.h>

#include "common/error.h"

#define GRETA_INSTANCE_MAX 32
#define GRETA_PATH_MAX 256

/* Endpoint names (who binds: see docs/PROTOCOL.md). */
#define GRETA_EP_SUPERVISOR "supervisor"       /* ROUTER, control (status/restart/down) */
#define GRETA_EP_HEARTBEAT "heartbeat"         /* PULL at the supervisor: Hello, Heartbeat */
#define GRETA_EP_TOKENIZER "tokenizer"         /* ROUTER: Encode, Resume, Stats */
#define GRETA_EP_TOKEN_EVENTS "tokenizer-events" /* PULL at the tokenizer: TokenEvent */
#define GRETA_EP_WORKER "gpu-worker"           /* ROUTER: Submit, Cancel, Release, Stats */
#define GRETA_EP_STEP_DONE "gpu-worker-steps"  /* PULL at the worker: StepDone */
#define GRETA_EP_STEP_READY "sampler"          /* PULL at the sampler: StepReady */

/* 0 when name is a valid instance name, else an error naming the problem. */
int greta_instance_check(const char *name, greta_error *err);

/* The runtime directory of an instance (not created). */
int greta_runtime_dir(const char *instance, char *buf, size_t n, greta_error *err);

/* Creates the runtime directory (and its parent) with mode 0700 if missing,
 * and refuses one that is not a directory owned by this user with mode 0700. */
int greta_runtime_dir_create(const char *instance, char *buf, size_t n, greta_error *err);

/* Path of a socket file: <dir>/<name>.sock, checked against sockaddr_un. */
int greta_endpoint_path(const char *dir, const char *name, char *buf, size_t n, greta_error *err);

/* shm_open name of the instance's segment. */
int greta_shm_name(const char *instance, char *buf, size_t n, greta_error *err);

/* Removes the socket files (*.sock), and with remove_logs the *.log files,
 * then the directory itself if that left it empty. */
void greta_runtime_dir_clean(const char *dir, int remove_logs);

#endif
