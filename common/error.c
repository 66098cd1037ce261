#include "error.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

int greta_error_set(greta_error *err, int code, const char *fmt, ...)
{
    if (err) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err->msg, sizeof err->msg, fmt, ap);
        va_end(ap);
        err->code = code;
    }
    return code;
}

int greta_error_prefix(greta_error *err, const char *fmt, ...)
{
    if (!err)
        return GRETA_ERR_INVALID;
    char prefix[GRETA_ERROR_MSG_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(prefix, sizeof prefix, fmt, ap);
    va_end(ap);
    /* Build "prefix: old" by hand: the combined text may be cut at the end. */
    char old[GRETA_ERROR_MSG_MAX];
    memcpy(old, err->msg, sizeof old);
    old[sizeof old - 1] = '\0';
    size_t cap = sizeof err->msg - 1;
    size_t n = strnlen(prefix, cap);
    memcpy(err->msg, prefix, n);
    const char sep[] = ": ";
    for (size_t i = 0; i < 2 && n < cap; i++)
        err->msg[n++] = sep[i];
    size_t m = strnlen(old, cap - n);
    memcpy(err->msg + n, old, m);
    err->msg[n + m] = '\0';
    return err->code;
}

void greta_error_clear(greta_error *err)
{
    if (err) {
        err->code = GRETA_OK;
        err->msg[0] = '\0';
    }
}

const char *greta_status_name(int code)
{
    switch (code) {
    case GRETA_OK: return "ok";
    case GRETA_ERR_INVALID: return "invalid";
    case GRETA_ERR_IO: return "io";
    case GRETA_ERR_NOMEM: return "nomem";
    case GRETA_ERR_FORMAT: return "format";
    case GRETA_ERR_UNSUPPORTED: return "unsupported";
    case GRETA_ERR_NOT_FOUND: return "not-found";
    case GRETA_ERR_TYPE: return "type";
    case GRETA_ERR_LIMIT: return "limit";
    case GRETA_ERR_GPU: return "gpu";
    case GRETA_ERR_TIMEOUT: return "timeout";
    case GRETA_ERR_STATE: return "state";
    default: return "unknown";
    }
}
