/* threads.h - a fixed pthread pool for the CPU reference ops.
 *
 * greta_threadpool_run(pool, n, fn, ctx) splits the items 0..n-1 into
 * n_threads contiguous ranges (thread i gets [n*i/T, n*(i+1)/T)) and runs
 * fn on each range, the calling thread taking range 0; it returns when all
 * ranges are done. The split is static, so which thread computes an item is
 * a pure function of (n, T) - and the ops are written so that no sum depends
 * on it anyway: each output element is computed whole by one thread.
 *
 * Workers sleep on a condition variable between jobs (the machine may be
 * shared; no spinning). A NULL pool runs everything on the caller.
 */
#ifndef GRETA_CPU_THREADS_H
#define GRETA_CPU_THREADS_H

#include <stdint.h>

#include "common/error.h"

#define GRETA_THREADS_MAX 256

/* fn(ctx, begin, end, thread): items [begin, end); thread in 0..n_threads-1. */
typedef void (*greta_task_fn)(void *ctx, int64_t begin, int64_t end, int thread);

typedef struct greta_threadpool greta_threadpool;

/* n_threads in 1..GRETA_THREADS_MAX (1 starts no worker). */
int greta_threadpool_create(int n_threads, greta_threadpool **out, greta_error *err);
void greta_threadpool_destroy(greta_threadpool **pool);
/* CPUs this process may run on (its affinity mask; else the online CPUs;
 * at least 1). */
int greta_threads_available(void);
/* Threads that run a job (1 for a NULL pool). */
int greta_threadpool_size(const greta_threadpool *pool);
/* Runs fn over n items as described above. Not reentrant: one job at a time. */
void greta_threadpool_run(greta_threadpool *pool, int64_t n, greta_task_fn fn, void *ctx);

/* Jobs smaller than this (in about one multiply-add per unit) run on the
 * calling thread alone: waking the workers would cost more than they save. */
#define GRETA_THREADS_MIN_WORK (1 << 17)

/* greta_threadpool_run, or fn(ctx, 0, n, 0) on the caller when `work`
 * (the job's size in multiply-adds, roughly) is below GRETA_THREADS_MIN_WORK.
 * Callers whose results do not depend on the split (all of ours) use it. */
void greta_threadpool_run_work(greta_threadpool *pool, int64_t n, int64_t work, greta_task_fn fn,
                               void *ctx);

#endif
