/* fe_util.h - helpers of the frontend end-to-end tests (greta chat, greta batch):
 * per-test instances, shell commands, and reference answers computed through
 * the client library (proto/client.h), which the commands must reproduce.
 */
#ifndef GRETA_TEST_FE_UTIL_H
#define GRETA_TEST_FE_UTIL_H

#include <stddef.h>
#include <stdint.h>

#include "proto/client.h"

/* Environment for the tests: short socket paths (/tmp/greta-<uid>/...), fast
 * heartbeats. Returns the stories260K path (static) or NULL (then skip). */
const char *fe_setup(void);

/* A per-process instance name "f<pid>-<tag>" (static buffer per call site: copy it). */
void fe_instance_name(char *buf, size_t n, const char *tag);

/* system(3) of a printf-formatted command, echoed to stderr; exit status or -1. */
int fe_run(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* greta up / down of an instance (-t 1, the given extra flags). */
int fe_up(const char *instance, const char *model, const char *extra);
void fe_down(const char *instance);
/* 1 when the instance's segment exists and is not stale. */
int fe_is_up(const char *instance);
/* Waits up to ms (times PTY_SLACK, pty_util.h) for the instance to be gone; 1 when it is. */
int fe_wait_down(const char *instance, int ms);
/* Removes the instance's runtime directory (logs included). */
void fe_clean(const char *instance);

/* Generates through the client library: plain prompt (BOS + text) or, when
 * chat, a chat of an optional system message and one user message. top_k/top_p/min_p as greta_client_request.
 * Writes the text (NUL-terminated) to out. 0 or -1. */
int fe_reference(const char *instance, const char *system, const char *prompt, int chat, int max_tokens, float temp,
                 int top_k, float top_p, float min_p, uint64_t seed, char *out, size_t cap,
                 uint32_t *completion_tokens);

/* The same with every sampling field of tmpl (prompt and n_prompt are
 * ignored); *first_token (may be NULL) gets the first generated token. */
int fe_reference_req(const char *instance, const char *system, const char *prompt, int chat,
                     const greta_client_request *tmpl, char *out, size_t cap, uint32_t *completion_tokens,
                     int32_t *first_token);

/* Worker stats of the instance: largest batch of one step; -1 on error. */
int fe_worker_max_batch(const char *instance);

#endif
