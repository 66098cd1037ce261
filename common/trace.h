/* trace.h - Chrome trace-event writer (one file per process) and the merger
 * behind `greta trace DIR`.
 *
 * Enabled by `--trace DIR` or GRETA_TRACE=DIR. Each process writes
 * DIR/<stage>-<pid>.trace.json in the Chrome "JSON array" format, one event
 * per line:
 *   [
 *   {"name":"process_name","ph":"M","pid":P,"tid":P,"args":{"name":"sampler"}}
 *   ,{"name":"sample","cat":"sampler","ph":"X","ts":12.345,"dur":6.789,"pid":P,"tid":T,
 *     "args":{"request_id":"0x1f..","step":41}}
 *   ...
 *   ]
 * ts/dur are microseconds (three decimals: nanosecond resolution) of
 * CLOCK_MONOTONIC, so the stages of one machine line up. The closing ']' is
 * written at close; a killed process leaves it out, which the format allows
 * and the merger accepts (a torn last line is skipped and counted).
 *
 * Span names used by the pipeline: encode, queue_wait, prefill, decode_step,
 * logits_handoff, sample, detokenize, deliver.
 *
 * Off means a NULL handle: every call site is `if (t)`-guarded through the
 * macros below, so tracing costs one pointer test when off.
 */
#ifndef GRETA_TRACE_H
#define GRETA_TRACE_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "error.h"

typedef struct greta_trace greta_trace;

/* The trace directory: flag if not NULL/empty, else $GRETA_TRACE, else NULL. */
const char *greta_trace_dir(const char *flag);

/* Opens DIR/<stage>-<pid>.trace.json (creating DIR, mode 0700, if missing)
 * and writes the process_name metadata event. dir NULL: *out = NULL, tracing
 * off, returns 0. */
int greta_trace_open(const char *dir, const char *stage, greta_trace **out, greta_error *err);
/* Writes the closing ']' and closes. */
void greta_trace_close(greta_trace **t);

/* CLOCK_MONOTONIC in nanoseconds. */
uint64_t greta_trace_now_ns(void);

/* A complete ("X") event [start_ns, end_ns) with the request id (0: none) and
 * optionally one integer argument (arg_name NULL: none). Thread-safe. */
void greta_trace_span(greta_trace *t, const char *name, uint64_t start_ns, uint64_t end_ns,
                      uint64_t request_id, const char *arg_name, int64_t arg);
/* Events written so far (tests). */
uint64_t greta_trace_count(const greta_trace *t);
/* Writes buffered events to the file. */
void greta_trace_flush(greta_trace *t);

#define GRETA_TRACE_BEGIN(t) ((t) ? greta_trace_now_ns() : 0)
#define GRETA_TRACE_END(t, name, start, rid, arg_name, arg)                                       \
    do {                                                                                       \
        if (t)                                                                                 \
            greta_trace_span((t), (name), (start), greta_trace_now_ns(), (rid), (arg_name), (arg)); \
    } while (0)

/* One row of the per-stage table: spans of one name in one stage. */
typedef struct greta_trace_stat {
    char stage[32];
    char name[48];
    uint64_t count;
    double total_us, mean_us, p50_us, p99_us; /* p50/p99: nearest rank */
} greta_trace_stat;

/* Merges every *.trace.json in dir into out_path as {"traceEvents":[...]}
 * (opens in Perfetto and chrome://tracing) and computes the table, sorted by
 * stage then name (*stats malloc'ed, *n_stats rows). *skipped counts lines
 * that did not parse (torn by a killed process). Files that are not traces
 * are an error naming the file. */
int greta_trace_merge(const char *dir, const char *out_path, greta_trace_stat **stats, size_t *n_stats,
                      size_t *skipped, greta_error *err);
void greta_trace_print_table(FILE *f, const greta_trace_stat *stats, size_t n);

#endif
