/* kernel-trace.c - a CUPTI injection library (CUDA builds; a developer
 * tool, checked by tests/gpu/test-kernel-trace.sh on the GPU machine):
 * the start and end of every kernel the process runs, graph nodes
 * included, so the time of a replayed decode step can be split into the
 * kernels and the gaps between them (issue 7: where each microsecond
 * goes). ncu serializes kernels and greta bench --profile runs without the
 * graph; this sees the replay as it runs.
 *
 *   CUDA_INJECTION64_PATH=build/lib/libgreta-kernel-trace.so \
 *   GRETA_KERNEL_TRACE=out.csv greta bench ...
 *
 * At exit it writes out.csv (start_ns,end_ns,grid,block,name; sorted by
 * start) and prints a per-kernel table to stderr over the kernels after
 * the first GRETA_KERNEL_TRACE_SKIP (default 0): count, mean duration, the
 * mean gap from the end of the kernel before (negative: they overlapped,
 * as programmatic dependent launch allows), and the exclusive time: how
 * far the kernel moved the latest end of any kernel so far (idle time
 * before it included; 0 for one that ended inside another). Overlapped
 * kernels' durations add up to more than the time that passed; their
 * exclusive times add up to the span, so they say what each kernel costs
 * a decode step. */
#include <cupti.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    uint64_t start, end;
    int32_t grid, block;
    char name[96];
} krec;

static krec *g_recs;
static size_t g_n, g_cap;

#define BUF_BYTES (8u << 20)

static void CUPTIAPI buf_request(uint8_t **buf, size_t *size, size_t *max_records)
{
    *buf = aligned_alloc(8, BUF_BYTES);
    *size = *buf ? BUF_BYTES : 0;
    *max_records = 0;
}

static void keep(const CUpti_ActivityKernel10 *k)
{
    if (g_n == g_cap) {
        const size_t cap = g_cap ? 2 * g_cap : 65536;
        krec *r = realloc(g_recs, cap * sizeof *r);
        if (!r)
            return;
        g_recs = r;
        g_cap = cap;
    }
    krec *r = &g_recs[g_n++];
    r->start = k->start;
    r->end = k->end;
    r->grid = k->gridX * k->gridY * k->gridZ;
    r->block = k->blockX * k->blockY * k->blockZ;
    snprintf(r->name, sizeof r->name, "%s", k->name ? k->name : "?");
}

static void CUPTIAPI buf_complete(CUcontext ctx, uint32_t stream, uint8_t *buf, size_t size, size_t valid)
{
    (void)ctx, (void)stream, (void)size;
    CUpti_Activity *rec = NULL;
    while (cuptiActivityGetNextRecord(buf, valid, &rec) == CUPTI_SUCCESS)
        if (rec->kind == CUPTI_ACTIVITY_KIND_CONCURRENT_KERNEL || rec->kind == CUPTI_ACTIVITY_KIND_KERNEL)
            keep((const CUpti_ActivityKernel10 *)rec);
    free(buf);
}

static int by_start(const void *a, const void *b)
{
    const krec *x = a, *y = b;
    return x->start < y->start ? -1 : x->start > y->start;
}

typedef struct {
    char name[96];
    long n;
    double dur, gap, excl;
} kagg;

static void report(void)
{
    cuptiActivityFlushAll(1);
    qsort(g_recs, g_n, sizeof *g_recs, by_start);
    const char *path = getenv("GRETA_KERNEL_TRACE");
    FILE *f = path && *path ? fopen(path, "w") : NULL;
    if (f) {
        fprintf(f, "start_ns,end_ns,grid,block,name\n");
        for (size_t i = 0; i < g_n; i++)
            fprintf(f, "%llu,%llu,%d,%d,%s\n", (unsigned long long)g_recs[i].start,
                    (unsigned long long)g_recs[i].end, g_recs[i].grid, g_recs[i].block, g_recs[i].name);
        fclose(f);
    }
    const char *sk = getenv("GRETA_KERNEL_TRACE_SKIP");
    size_t skip = sk ? (size_t)strtoull(sk, NULL, 10) : 0;
    if (skip >= g_n)
        return;
    kagg *a = calloc(256, sizeof *a);
    int na = 0;
    double busy = 0, gaps = 0;
    uint64_t last_end = g_recs[skip].start;
    for (size_t i = skip; i < g_n && a; i++) {
        const krec *r = &g_recs[i];
        int j = 0;
        while (j < na && strcmp(a[j].name, r->name))
            j++;
        if (j == na && na < 256)
            snprintf(a[na++].name, sizeof a->name, "%s", r->name);
        if (j == na)
            continue;
        const double gap = i > skip ? ((double)r->start - (double)g_recs[i - 1].end) : 0.0;
        a[j].n++;
        a[j].dur += (double)(r->end - r->start);
        a[j].gap += gap;
        busy += (double)(r->end - r->start);
        if (r->start > last_end)
            gaps += (double)(r->start - last_end); /* time no kernel ran */
        if (r->end > last_end) {
            a[j].excl += (double)(r->end - last_end);
            last_end = r->end;
        }
    }
    const double span = (double)(last_end - g_recs[skip].start);
    fprintf(stderr, "kernel-trace: %zu kernels, span %.1f us, kernel time %.1f us, idle %.1f us (%.1f%%)\n",
            g_n - skip, span / 1e3, busy / 1e3, gaps / 1e3, span > 0 ? 100.0 * gaps / span : 0.0);
    fprintf(stderr, "%-70s %7s %10s %10s %10s %10s %10s\n", "kernel", "count", "mean us", "total us", "gap us",
            "excl us", "excl tot us");
    for (int j = 0; j < na; j++)
        fprintf(stderr, "%-70.70s %7ld %10.2f %10.1f %10.2f %10.2f %10.1f\n", a[j].name, a[j].n,
                a[j].dur / a[j].n / 1e3, a[j].dur / 1e3, a[j].gap / a[j].n / 1e3, a[j].excl / a[j].n / 1e3,
                a[j].excl / 1e3);
    free(a);
}

int InitializeInjection(void)
{
    if (cuptiActivityRegisterCallbacks(buf_request, buf_complete) != CUPTI_SUCCESS ||
        cuptiActivityEnable(CUPTI_ACTIVITY_KIND_CONCURRENT_KERNEL) != CUPTI_SUCCESS) {
        fprintf(stderr, "kernel-trace: CUPTI activity setup failed\n");
        return 0;
    }
    atexit(report);
    return 1;
}
