/* error.h - status codes and error messages shared by every GRETA CORE module.
 *
 * Two kinds of failure (docs/STYLE practice 3):
 *   - untrusted input (files, messages, CLI arguments, shared memory) returns a
 *     negative status and fills a greta_error whose message names the field,
 *     and where it makes sense the byte offset, that was wrong;
 *   - programmer mistakes are caught by assert().
 * Library code never calls exit() or abort().
 *
 * Usage:
 *   greta_error err = {0};
 *   if (gguf_open(path, &f, &err) != 0) fprintf(stderr, "%s\n", err.msg);
 */
#ifndef GRETA_ERROR_H
#define GRETA_ERROR_H

#include <stddef.h>

typedef enum greta_status {
    GRETA_OK = 0,
    GRETA_ERR_INVALID = -1,     /* bad argument or malformed input */
    GRETA_ERR_IO = -2,          /* open/read/write/mmap failed */
    GRETA_ERR_NOMEM = -3,       /* allocation failed or a size overflowed */
    GRETA_ERR_FORMAT = -4,      /* file or message does not follow its format */
    GRETA_ERR_UNSUPPORTED = -5, /* valid, but not supported by this build */
    GRETA_ERR_NOT_FOUND = -6,   /* missing key, tensor, file or id */
    GRETA_ERR_TYPE = -7,        /* value has another type than asked for */
    GRETA_ERR_LIMIT = -8,       /* input exceeds a documented limit */
    GRETA_ERR_GPU = -9,         /* GPU runtime reported an error */
    GRETA_ERR_TIMEOUT = -10,    /* a peer did not answer in time */
    GRETA_ERR_STATE = -11,      /* operation not valid in the current state */
} greta_status;

#define GRETA_ERROR_MSG_MAX 512

typedef struct greta_error {
    int code;                       /* a greta_status, GRETA_OK when clear */
    char msg[GRETA_ERROR_MSG_MAX];  /* NUL-terminated, human readable */
} greta_error;

/* Sets err (if not NULL) and returns code, so callers can write
 *   return greta_error_set(err, GRETA_ERR_FORMAT, "tensor '%s': ...", name); */
int greta_error_set(greta_error *err, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Prepends "prefix: " to an existing message (adds context on the way up). */
int greta_error_prefix(greta_error *err, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

void greta_error_clear(greta_error *err);

/* Short name of a status code ("format", "io", ...). */
const char *greta_status_name(int code);

#endif
