/* threads.c - fixed pthread pool (see threads.h). */
#include "threads.h"

#include <pthread.h>
#include <sched.h>
#include <stdlib.h>
#include <unistd.h>

int greta_threads_available(void)
{
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof set, &set) == 0) {
        int n = CPU_COUNT(&set);
        if (n > 0)
            return n;
    }
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? (int)n : 1;
}

struct greta_threadpool {
    int n_threads;
    pthread_t *workers;       /* [n_threads - 1] */
    pthread_mutex_t mu;
    pthread_cond_t start;     /* a new job (or shutdown) is posted */
    pthread_cond_t done;      /* the last worker finished the job */
    uint64_t generation;      /* bumped once per job */
    int pending;              /* workers still running the current job */
    int shutdown;
    /* the current job */
    greta_task_fn fn;
    void *ctx;
    int64_t n;
};

typedef struct worker_arg {
    greta_threadpool *pool;
    int index; /* 1..n_threads-1 */
} worker_arg;

static void run_range(greta_threadpool *p, int index)
{
    const int64_t t = p->n_threads;
    const int64_t begin = p->n * index / t;
    const int64_t end = p->n * (index + 1) / t;
    if (begin < end)
        p->fn(p->ctx, begin, end, index);
}

static void *worker_main(void *arg)
{
    worker_arg wa = *(worker_arg *)arg;
    free(arg);
    greta_threadpool *p = wa.pool;
    uint64_t seen = 0;
    pthread_mutex_lock(&p->mu);
    for (;;) {
        while (!p->shutdown && p->generation == seen)
            pthread_cond_wait(&p->start, &p->mu);
        if (p->shutdown)
            break;
        seen = p->generation;
        pthread_mutex_unlock(&p->mu);
        run_range(p, wa.index);
        pthread_mutex_lock(&p->mu);
        if (--p->pending == 0)
            pthread_cond_signal(&p->done);
    }
    pthread_mutex_unlock(&p->mu);
    return NULL;
}

int greta_threadpool_create(int n_threads, greta_threadpool **out, greta_error *err)
{
    *out = NULL;
    if (n_threads < 1 || n_threads > GRETA_THREADS_MAX)
        return greta_error_set(err, GRETA_ERR_INVALID, "threads: %d is outside 1..%d",
                               n_threads, GRETA_THREADS_MAX);
    greta_threadpool *p = calloc(1, sizeof *p);
    if (!p)
        return greta_error_set(err, GRETA_ERR_NOMEM, "threads: out of memory");
    p->n_threads = n_threads;
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->start, NULL);
    pthread_cond_init(&p->done, NULL);
    if (n_threads > 1) {
        p->workers = calloc((size_t)n_threads - 1, sizeof *p->workers);
        if (!p->workers) {
            greta_threadpool_destroy(&p);
            return greta_error_set(err, GRETA_ERR_NOMEM, "threads: out of memory");
        }
    }
    for (int i = 1; i < n_threads; i++) {
        worker_arg *wa = malloc(sizeof *wa);
        int rc = wa ? 0 : -1;
        if (wa) {
            wa->pool = p;
            wa->index = i;
            rc = pthread_create(&p->workers[i - 1], NULL, worker_main, wa);
            if (rc != 0)
                free(wa);
        }
        if (rc != 0) {
            p->n_threads = i; /* only workers 1..i-1 exist */
            greta_threadpool_destroy(&p);
            return greta_error_set(err, GRETA_ERR_NOMEM, "threads: cannot start thread %d of %d",
                                   i + 1, n_threads);
        }
    }
    *out = p;
    return GRETA_OK;
}

void greta_threadpool_destroy(greta_threadpool **pool)
{
    if (!pool || !*pool)
        return;
    greta_threadpool *p = *pool;
    pthread_mutex_lock(&p->mu);
    p->shutdown = 1;
    pthread_cond_broadcast(&p->start);
    pthread_mutex_unlock(&p->mu);
    for (int i = 1; i < p->n_threads; i++)
        pthread_join(p->workers[i - 1], NULL);
    pthread_cond_destroy(&p->start);
    pthread_cond_destroy(&p->done);
    pthread_mutex_destroy(&p->mu);
    free(p->workers);
    free(p);
    *pool = NULL;
}

int greta_threadpool_size(const greta_threadpool *pool)
{
    return pool ? pool->n_threads : 1;
}

void greta_threadpool_run(greta_threadpool *pool, int64_t n, greta_task_fn fn, void *ctx)
{
    if (n <= 0)
        return;
    if (!pool || pool->n_threads == 1 || n == 1) {
        fn(ctx, 0, n, 0);
        return;
    }
    greta_threadpool *p = pool;
    pthread_mutex_lock(&p->mu);
    p->fn = fn;
    p->ctx = ctx;
    p->n = n;
    p->pending = p->n_threads - 1;
    p->generation++;
    pthread_cond_broadcast(&p->start);
    pthread_mutex_unlock(&p->mu);
    run_range(p, 0);
    pthread_mutex_lock(&p->mu);
    while (p->pending > 0)
        pthread_cond_wait(&p->done, &p->mu);
    pthread_mutex_unlock(&p->mu);
}

void greta_threadpool_run_work(greta_threadpool *pool, int64_t n, int64_t work, greta_task_fn fn,
                               void *ctx)
{
    if (work < GRETA_THREADS_MIN_WORK) {
        if (n > 0)
            fn(ctx, 0, n, 0);
        return;
    }
    greta_threadpool_run(pool, n, fn, ctx);
}
