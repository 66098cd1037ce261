/* batch_journal.c - see batch_journal.h. */
#include "batch_journal.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define JOURNAL_VERSION 1

struct greta_batch_journal {
    int fd;
    pthread_mutex_t mu;
    size_t n_lines;
    uint64_t *rid; /* [n_lines + 1] by line number */
    char **out;    /* [n_lines + 1] by line number */
    size_t done, skipped;
};

static int write_all(greta_batch_journal *j, const char *s, size_t n, greta_error *err)
{
    /* one write per record: O_APPEND keeps records whole and in order */
    while (n) {
        ssize_t w = write(j->fd, s, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return greta_error_set(err, GRETA_ERR_IO, "journal: write: %s", strerror(errno));
        s += w;
        n -= (size_t)w;
    }
    return GRETA_OK;
}

/* Applies one parsed record; -1 if it is not a valid record. */
static int apply(greta_batch_journal *j, const cJSON *rec)
{
    const cJSON *line = cJSON_GetObjectItemCaseSensitive(rec, "line");
    if (!cJSON_IsNumber(line) || line->valuedouble < 1 || line->valuedouble > (double)j->n_lines ||
        line->valuedouble != (double)(size_t)line->valuedouble)
        return -1;
    size_t n = (size_t)line->valuedouble;
    const cJSON *rid = cJSON_GetObjectItemCaseSensitive(rec, "rid");
    const cJSON *out = cJSON_GetObjectItemCaseSensitive(rec, "out");
    if (cJSON_IsString(rid)) {
        char *end;
        errno = 0;
        unsigned long long v = strtoull(rid->valuestring, &end, 16);
        if (*end || errno || strlen(rid->valuestring) != 16)
            return -1;
        j->rid[n] = v;
        return 0;
    }
    if (cJSON_IsString(out)) {
        char *copy = strdup(out->valuestring);
        if (!copy)
            return -1;
        if (!j->out[n])
            j->done++;
        free(j->out[n]);
        j->out[n] = copy;
        return 0;
    }
    return -1;
}

/* Reads the whole journal; checks the header; cuts a torn last line. */
static int load(greta_batch_journal *j, const char *path, const char *job_key, greta_error *err)
{
    struct stat st;
    if (fstat(j->fd, &st) != 0)
        return greta_error_set(err, GRETA_ERR_IO, "journal %s: %s", path, strerror(errno));
    size_t size = (size_t)st.st_size;
    char *buf = malloc(size + 1);
    if (!buf)
        return greta_error_set(err, GRETA_ERR_NOMEM, "journal %s: out of memory", path);
    size_t got = 0;
    while (got < size) {
        ssize_t r = pread(j->fd, buf + got, size - got, (off_t)got);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            break;
        got += (size_t)r;
    }
    buf[got] = '\0';
    size_t good = 0; /* bytes of whole, valid lines (where appending continues) */
    int rc = GRETA_OK, header = 0;
    for (size_t pos = 0; pos < got;) {
        char *nl = memchr(buf + pos, '\n', got - pos);
        size_t len = nl ? (size_t)(nl - (buf + pos)) : got - pos;
        cJSON *rec = cJSON_ParseWithLength(buf + pos, len);
        int ok = rec != NULL;
        if (!header) {
            const cJSON *v = cJSON_GetObjectItemCaseSensitive(rec, "greta_batch_journal");
            const cJSON *key = cJSON_GetObjectItemCaseSensitive(rec, "job");
            if (!nl || !ok || !cJSON_IsNumber(v) || !cJSON_IsString(key)) {
                cJSON_Delete(rec);
                if (!nl) /* killed while writing the header: start again */
                    break;
                rc = greta_error_set(err, GRETA_ERR_FORMAT,
                                     "journal %s: line 1 is not a greta batch journal header (remove the file to "
                                     "start the job over)",
                                     path);
                break;
            }
            if (v->valuedouble != JOURNAL_VERSION || strcmp(key->valuestring, job_key) != 0) {
                rc = greta_error_set(err, GRETA_ERR_STATE,
                                     "journal %s belongs to another job (input or model changed: it has '%s', this "
                                     "run is '%s'); remove it to start over",
                                     path, key->valuestring, job_key);
                cJSON_Delete(rec);
                break;
            }
            header = 1;
        } else if (!nl) {
            cJSON_Delete(rec);
            break; /* torn last line: cut */
        } else if (!ok || apply(j, rec) < 0) {
            j->skipped++;
        }
        cJSON_Delete(rec);
        pos += len + (nl ? 1 : 0);
        good = pos;
    }
    free(buf);
    if (rc < 0)
        return rc;
    if (good < got && ftruncate(j->fd, (off_t)good) != 0)
        return greta_error_set(err, GRETA_ERR_IO, "journal %s: truncate: %s", path, strerror(errno));
    return header ? 1 : 0;
}

int greta_batch_journal_open(const char *path, const char *job_key, size_t n_lines, greta_batch_journal **out,
                             int *resumed, greta_error *err)
{
    *out = NULL;
    *resumed = 0;
    greta_batch_journal *j = calloc(1, sizeof *j);
    if (!j)
        return greta_error_set(err, GRETA_ERR_NOMEM, "journal: out of memory");
    pthread_mutex_init(&j->mu, NULL);
    j->n_lines = n_lines;
    j->rid = calloc(n_lines + 1, sizeof *j->rid);
    j->out = calloc(n_lines + 1, sizeof *j->out);
    j->fd = open(path, O_RDWR | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
    int rc = GRETA_OK;
    if (!j->rid || !j->out)
        rc = greta_error_set(err, GRETA_ERR_NOMEM, "journal: out of memory");
    else if (j->fd < 0)
        rc = greta_error_set(err, GRETA_ERR_IO, "journal %s: %s", path, strerror(errno));
    if (rc == 0)
        rc = load(j, path, job_key, err);
    if (rc == 0) { /* new (or torn before its header was whole) */
        if (ftruncate(j->fd, 0) != 0) {
            rc = greta_error_set(err, GRETA_ERR_IO, "journal %s: truncate: %s", path, strerror(errno));
        } else {
            cJSON *h = cJSON_CreateObject();
            cJSON_AddNumberToObject(h, "greta_batch_journal", JOURNAL_VERSION);
            cJSON_AddStringToObject(h, "job", job_key);
            char *s = cJSON_PrintUnformatted(h);
            cJSON_Delete(h);
            size_t n = s ? strlen(s) : 0;
            char *line = s ? malloc(n + 2) : NULL;
            if (line) {
                memcpy(line, s, n);
                line[n] = '\n';
                rc = write_all(j, line, n + 1, err);
            } else {
                rc = greta_error_set(err, GRETA_ERR_NOMEM, "journal: out of memory");
            }
            free(line);
            free(s);
        }
    } else if (rc == 1) {
        *resumed = 1;
        rc = GRETA_OK;
    }
    if (rc < 0) {
        greta_batch_journal_close(&j);
        return rc;
    }
    *out = j;
    return GRETA_OK;
}

void greta_batch_journal_close(greta_batch_journal **pj)
{
    if (!pj || !*pj)
        return;
    greta_batch_journal *j = *pj;
    if (j->fd >= 0)
        close(j->fd);
    if (j->out)
        for (size_t i = 0; i <= j->n_lines; i++)
            free(j->out[i]);
    free(j->out);
    free(j->rid);
    pthread_mutex_destroy(&j->mu);
    free(j);
    *pj = NULL;
}

uint64_t greta_batch_journal_rid(greta_batch_journal *j, size_t line)
{
    pthread_mutex_lock(&j->mu);
    uint64_t r = line >= 1 && line <= j->n_lines ? j->rid[line] : 0;
    pthread_mutex_unlock(&j->mu);
    return r;
}

const char *greta_batch_journal_output(greta_batch_journal *j, size_t line)
{
    pthread_mutex_lock(&j->mu);
    const char *s = line >= 1 && line <= j->n_lines ? j->out[line] : NULL;
    pthread_mutex_unlock(&j->mu);
    return s;
}

size_t greta_batch_journal_done_count(greta_batch_journal *j)
{
    pthread_mutex_lock(&j->mu);
    size_t n = j->done;
    pthread_mutex_unlock(&j->mu);
    return n;
}

size_t greta_batch_journal_skipped(greta_batch_journal *j)
{
    return j->skipped;
}

/* Writes one record (a JSON object) and applies it. */
static int record(greta_batch_journal *j, cJSON *rec, greta_error *err)
{
    char *s = cJSON_PrintUnformatted(rec);
    size_t n = s ? strlen(s) : 0;
    char *line = s ? malloc(n + 2) : NULL;
    int rc;
    if (!line) {
        rc = greta_error_set(err, GRETA_ERR_NOMEM, "journal: out of memory");
    } else {
        memcpy(line, s, n);
        line[n] = '\n';
        pthread_mutex_lock(&j->mu);
        rc = write_all(j, line, n + 1, err);
        if (rc == 0 && apply(j, rec) < 0)
            rc = greta_error_set(err, GRETA_ERR_NOMEM, "journal: out of memory");
        pthread_mutex_unlock(&j->mu);
    }
    free(line);
    free(s);
    cJSON_Delete(rec);
    return rc;
}

int greta_batch_journal_submit(greta_batch_journal *j, size_t line, uint64_t rid, greta_error *err)
{
    char hex[17];
    snprintf(hex, sizeof hex, "%016" PRIx64, rid);
    cJSON *rec = cJSON_CreateObject();
    cJSON_AddNumberToObject(rec, "line", (double)line);
    cJSON_AddStringToObject(rec, "rid", hex);
    return record(j, rec, err);
}

int greta_batch_journal_done(greta_batch_journal *j, size_t line, const char *out, greta_error *err)
{
    cJSON *rec = cJSON_CreateObject();
    cJSON_AddNumberToObject(rec, "line", (double)line);
    cJSON_AddStringToObject(rec, "out", out);
    return record(j, rec, err);
}
