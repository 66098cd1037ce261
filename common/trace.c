/* trace.c - see trace.h. */
#include "trace.h"

#include <cjson/cJSON.h>
#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

struct greta_trace {
    FILE *f;
    int pid;
    char stage[32];
    pthread_mutex_t mu;
    _Atomic uint64_t count;
    uint64_t last_flush_ns;
};

/* Flush at most this often, so a killed stage loses little. */
#define FLUSH_NS 100000000ull

const char *greta_trace_dir(const char *flag)
{
    if (flag && *flag)
        return flag;
    const char *env = getenv("GRETA_TRACE");
    return env && *env ? env : NULL;
}

uint64_t greta_trace_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void json_str(FILE *f, const char *s)
{
    fputc('"', f);
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\')
            fprintf(f, "\\%c", c);
        else if (c < 0x20)
            fprintf(f, "\\u%04x", c);
        else
            fputc(c, f);
    }
    fputc('"', f);
}

int greta_trace_open(const char *dir, const char *stage, greta_trace **out, greta_error *err)
{
    *out = NULL;
    if (!dir)
        return GRETA_OK;
    if (mkdir(dir, 0700) != 0 && errno != EEXIST)
        return greta_error_set(err, GRETA_ERR_IO, "trace directory '%s': %s", dir, strerror(errno));
    greta_trace *t = calloc(1, sizeof *t);
    if (!t)
        return greta_error_set(err, GRETA_ERR_NOMEM, "trace: out of memory");
    t->pid = (int)getpid();
    snprintf(t->stage, sizeof t->stage, "%s", stage);
    char path[4096];
    snprintf(path, sizeof path, "%s/%s-%d.trace.json", dir, stage, t->pid);
    t->f = fopen(path, "w");
    if (!t->f) {
        free(t);
        return greta_error_set(err, GRETA_ERR_IO, "trace file '%s': %s", path, strerror(errno));
    }
    pthread_mutex_init(&t->mu, NULL);
    fprintf(t->f, "[\n{\"name\":\"process_name\",\"ph\":\"M\",\"pid\":%d,\"tid\":%d,\"args\":{\"name\":", t->pid,
            t->pid);
    json_str(t->f, stage);
    fprintf(t->f, "}}\n");
    fflush(t->f);
    t->last_flush_ns = greta_trace_now_ns();
    *out = t;
    return GRETA_OK;
}

void greta_trace_span(greta_trace *t, const char *name, uint64_t start_ns, uint64_t end_ns,
                      uint64_t request_id, const char *arg_name, int64_t arg)
{
    if (!t)
        return;
    uint64_t dur = end_ns > start_ns ? end_ns - start_ns : 0;
    int tid = (int)gettid();
    pthread_mutex_lock(&t->mu);
    fprintf(t->f, ",{\"name\":");
    json_str(t->f, name);
    fprintf(t->f, ",\"cat\":");
    json_str(t->f, t->stage);
    fprintf(t->f, ",\"ph\":\"X\",\"ts\":%llu.%03u,\"dur\":%llu.%03u,\"pid\":%d,\"tid\":%d,\"args\":{",
            (unsigned long long)(start_ns / 1000), (unsigned)(start_ns % 1000),
            (unsigned long long)(dur / 1000), (unsigned)(dur % 1000), t->pid, tid);
    const char *sep = "";
    if (request_id) {
        fprintf(t->f, "\"request_id\":\"%016llx\"", (unsigned long long)request_id);
        sep = ",";
    }
    if (arg_name) {
        fprintf(t->f, "%s", sep);
        json_str(t->f, arg_name);
        fprintf(t->f, ":%lld", (long long)arg);
    }
    fprintf(t->f, "}}\n");
    atomic_fetch_add(&t->count, 1);
    if (end_ns - t->last_flush_ns > FLUSH_NS || end_ns < t->last_flush_ns) {
        fflush(t->f);
        t->last_flush_ns = end_ns;
    }
    pthread_mutex_unlock(&t->mu);
}

uint64_t greta_trace_count(const greta_trace *t)
{
    return t ? atomic_load(&((greta_trace *)t)->count) : 0;
}

void greta_trace_flush(greta_trace *t)
{
    if (!t)
        return;
    pthread_mutex_lock(&t->mu);
    fflush(t->f);
    pthread_mutex_unlock(&t->mu);
}

void greta_trace_close(greta_trace **pt)
{
    if (!pt || !*pt)
        return;
    greta_trace *t = *pt;
    fprintf(t->f, "]\n");
    fclose(t->f);
    pthread_mutex_destroy(&t->mu);
    free(t);
    *pt = NULL;
}

/* ---- merge --------------------------------------------------------------- */

typedef struct span_group {
    char stage[32];
    char name[48];
    double *dur;
    size_t n, cap;
} span_group;

typedef struct merge_state {
    cJSON *events;         /* array, owns the events */
    span_group *groups;
    size_t n_groups, cap_groups;
    struct { int pid; char name[32]; } *procs;
    size_t n_procs, cap_procs;
} merge_state;

static int ends_with(const char *s, const char *suffix)
{
    size_t a = strlen(s), b = strlen(suffix);
    return a >= b && !strcmp(s + a - b, suffix);
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static const char *proc_name(merge_state *m, int pid)
{
    for (size_t i = 0; i < m->n_procs; i++)
        if (m->procs[i].pid == pid)
            return m->procs[i].name;
    return NULL;
}

static int add_proc(merge_state *m, int pid, const char *name)
{
    if (m->n_procs == m->cap_procs) {
        size_t cap = m->cap_procs ? 2 * m->cap_procs : 16;
        void *p = realloc(m->procs, cap * sizeof *m->procs);
        if (!p)
            return -1;
        m->procs = p;
        m->cap_procs = cap;
    }
    m->procs[m->n_procs].pid = pid;
    snprintf(m->procs[m->n_procs].name, sizeof m->procs[0].name, "%s", name);
    m->n_procs++;
    return 0;
}

static int add_span(merge_state *m, const char *stage, const char *name, double dur)
{
    span_group *g = NULL;
    for (size_t i = 0; i < m->n_groups; i++)
        if (!strcmp(m->groups[i].stage, stage) && !strcmp(m->groups[i].name, name)) {
            g = &m->groups[i];
            break;
        }
    if (!g) {
        if (m->n_groups == m->cap_groups) {
            size_t cap = m->cap_groups ? 2 * m->cap_groups : 16;
            void *p = realloc(m->groups, cap * sizeof *m->groups);
            if (!p)
                return -1;
            m->groups = p;
            m->cap_groups = cap;
        }
        g = &m->groups[m->n_groups++];
        memset(g, 0, sizeof *g);
        snprintf(g->stage, sizeof g->stage, "%s", stage);
        snprintf(g->name, sizeof g->name, "%s", name);
    }
    if (g->n == g->cap) {
        size_t cap = g->cap ? 2 * g->cap : 64;
        void *p = realloc(g->dur, cap * sizeof *g->dur);
        if (!p)
            return -1;
        g->dur = p;
        g->cap = cap;
    }
    g->dur[g->n++] = dur;
    return 0;
}

/* Reads one trace file; events are moved into m->events. */
static int merge_file(merge_state *m, const char *path, size_t *skipped, greta_error *err)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return greta_error_set(err, GRETA_ERR_IO, "trace file '%s': %s", path, strerror(errno));
    char *line = NULL;
    size_t cap = 0;
    ssize_t n;
    int lineno = 0, seen_open = 0;
    int rc = GRETA_OK;
    while ((n = getline(&line, &cap, f)) >= 0) {
        lineno++;
        char *s = line;
        while (*s == ' ' || *s == '\t')
            s++;
        while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r' || line[n - 1] == ' '))
            line[--n] = '\0';
        if (!*s)
            continue;
        if (!seen_open) {
            if (strcmp(s, "[") != 0) {
                rc = greta_error_set(err, GRETA_ERR_FORMAT,
                                     "trace file '%s' line %d: not a GRETA trace (expected '[')", path, lineno);
                break;
            }
            seen_open = 1;
            continue;
        }
        if (!strcmp(s, "]"))
            break;
        if (*s == ',')
            s++;
        cJSON *ev = cJSON_Parse(s);
        if (!ev || !cJSON_IsObject(ev)) {
            cJSON_Delete(ev);
            (*skipped)++;
            continue;
        }
        const cJSON *ph = cJSON_GetObjectItemCaseSensitive(ev, "ph");
        const cJSON *pid = cJSON_GetObjectItemCaseSensitive(ev, "pid");
        const cJSON *name = cJSON_GetObjectItemCaseSensitive(ev, "name");
        if (!cJSON_IsString(ph) || !cJSON_IsNumber(pid) || !cJSON_IsString(name)) {
            cJSON_Delete(ev);
            (*skipped)++;
            continue;
        }
        if (!strcmp(ph->valuestring, "M") && !strcmp(name->valuestring, "process_name")) {
            const cJSON *args = cJSON_GetObjectItemCaseSensitive(ev, "args");
            const cJSON *pn = cJSON_GetObjectItemCaseSensitive(args, "name");
            if (cJSON_IsString(pn) && add_proc(m, pid->valueint, pn->valuestring) < 0)
                rc = greta_error_set(err, GRETA_ERR_NOMEM, "trace merge: out of memory");
        } else if (!strcmp(ph->valuestring, "X")) {
            const cJSON *dur = cJSON_GetObjectItemCaseSensitive(ev, "dur");
            const char *stage = proc_name(m, pid->valueint);
            if (cJSON_IsNumber(dur) &&
                add_span(m, stage ? stage : "?", name->valuestring, dur->valuedouble) < 0)
                rc = greta_error_set(err, GRETA_ERR_NOMEM, "trace merge: out of memory");
        }
        cJSON_AddItemToArray(m->events, ev);
        if (rc < 0)
            break;
    }
    free(line);
    fclose(f);
    return rc;
}

static double nearest_rank(const double *sorted, size_t n, double p)
{
    size_t k = (size_t)ceil(p / 100.0 * (double)n);
    if (k < 1)
        k = 1;
    return sorted[k - 1];
}

static int cmp_stat(const void *a, const void *b)
{
    const greta_trace_stat *x = a, *y = b;
    int c = strcmp(x->stage, y->stage);
    return c ? c : strcmp(x->name, y->name);
}

int greta_trace_merge(const char *dir, const char *out_path, greta_trace_stat **stats, size_t *n_stats,
                      size_t *skipped, greta_error *err)
{
    *stats = NULL;
    *n_stats = 0;
    *skipped = 0;
    DIR *d = opendir(dir);
    if (!d)
        return greta_error_set(err, GRETA_ERR_IO, "trace directory '%s': %s", dir, strerror(errno));
    char **names = NULL;
    size_t n_names = 0, cap_names = 0;
    struct dirent *ent;
    int rc = GRETA_OK;
    while ((ent = readdir(d)) != NULL) {
        if (!ends_with(ent->d_name, ".trace.json"))
            continue;
        if (n_names == cap_names) {
            cap_names = cap_names ? 2 * cap_names : 16;
            char **p = realloc(names, cap_names * sizeof *names);
            if (!p) {
                rc = greta_error_set(err, GRETA_ERR_NOMEM, "trace merge: out of memory");
                break;
            }
            names = p;
        }
        names[n_names] = strdup(ent->d_name);
        if (!names[n_names]) {
            rc = greta_error_set(err, GRETA_ERR_NOMEM, "trace merge: out of memory");
            break;
        }
        n_names++;
    }
    closedir(d);
    merge_state m = {0};
    m.events = cJSON_CreateArray();
    if (rc == 0 && n_names == 0)
        rc = greta_error_set(err, GRETA_ERR_NOT_FOUND, "trace directory '%s': no *.trace.json files", dir);
    if (rc == 0 && !m.events)
        rc = greta_error_set(err, GRETA_ERR_NOMEM, "trace merge: out of memory");
    if (names)
        qsort(names, n_names, sizeof *names, cmp_str);
    /* metadata first, so every span finds its stage: two passes would re-read;
     * instead process_name lines are the first event of each file, and spans of a
     * pid always come from its own file. */
    for (size_t i = 0; rc == 0 && i < n_names; i++) {
        char path[4096];
        snprintf(path, sizeof path, "%s/%s", dir, names[i]);
        rc = merge_file(&m, path, skipped, err);
    }
    if (rc == 0 && out_path) {
        cJSON *root = cJSON_CreateObject();
        cJSON_AddItemToObject(root, "traceEvents", m.events);
        cJSON_AddStringToObject(root, "displayTimeUnit", "ms");
        m.events = NULL;
        char *text = cJSON_PrintUnformatted(root);
        cJSON_Delete(root);
        FILE *f = text ? fopen(out_path, "w") : NULL;
        if (!text)
            rc = greta_error_set(err, GRETA_ERR_NOMEM, "trace merge: out of memory");
        else if (!f)
            rc = greta_error_set(err, GRETA_ERR_IO, "merged trace '%s': %s", out_path, strerror(errno));
        else {
            fputs(text, f);
            fputc('\n', f);
            if (fclose(f) != 0)
                rc = greta_error_set(err, GRETA_ERR_IO, "merged trace '%s': write failed", out_path);
        }
        free(text);
    }
    cJSON_Delete(m.events);
    if (rc == 0 && m.n_groups) {
        *stats = calloc(m.n_groups, sizeof **stats);
        if (!*stats)
            rc = greta_error_set(err, GRETA_ERR_NOMEM, "trace merge: out of memory");
    }
    for (size_t i = 0; i < m.n_groups; i++) {
        span_group *g = &m.groups[i];
        if (rc == 0) {
            greta_trace_stat *s = &(*stats)[i];
            qsort(g->dur, g->n, sizeof *g->dur, cmp_double);
            snprintf(s->stage, sizeof s->stage, "%s", g->stage);
            snprintf(s->name, sizeof s->name, "%s", g->name);
            s->count = g->n;
            for (size_t k = 0; k < g->n; k++)
                s->total_us += g->dur[k];
            s->mean_us = s->total_us / (double)g->n;
            s->p50_us = nearest_rank(g->dur, g->n, 50.0);
            s->p99_us = nearest_rank(g->dur, g->n, 99.0);
        }
        free(g->dur);
    }
    if (rc == 0) {
        *n_stats = m.n_groups;
        qsort(*stats, *n_stats, sizeof **stats, cmp_stat);
    }
    free(m.groups);
    free(m.procs);
    for (size_t i = 0; i < n_names; i++)
        free(names[i]);
    free(names);
    return rc;
}

void greta_trace_print_table(FILE *f, const greta_trace_stat *s, size_t n)
{
    fprintf(f, "%-12s %-16s %8s %12s %10s %10s %10s\n", "stage", "span", "count", "total_ms", "mean_us",
            "p50_us", "p99_us");
    for (size_t i = 0; i < n; i++)
        fprintf(f, "%-12s %-16s %8llu %12.3f %10.1f %10.1f %10.1f\n", s[i].stage, s[i].name,
                (unsigned long long)s[i].count, s[i].total_us / 1000.0, s[i].mean_us, s[i].p50_us,
                s[i].p99_us);
}
