/* cmd_batch.c - `greta batch`: run an OpenAI Batch API input file through a
 * pipeline instance, many requests at once, resumably.
 *
 *   greta batch IN.jsonl -o OUT.jsonl [--concurrency N] [--instance NAME] [-m MODEL]
 *
 * Each non-blank input line is one request (format: frontend/batch_request.h).
 * A line that cannot be run (bad JSON, a missing or repeated custom_id, an
 * unknown url, a bad parameter, a prompt longer than the context) becomes an
 * error line in the output; the job goes on. The first line with a given
 * custom_id runs, later ones are errors ("duplicate_custom_id").
 *
 * N worker threads (default 8, at most the instance's slots), each with its
 * own client connection, keep N requests in flight; the gpu-worker decodes
 * all of them in the same steps. Progress goes to the journal OUT.jsonl.journal
 * (frontend/batch_journal.h); OUT.jsonl is written at the end, one line per
 * input line in input order, and the journal removed. After a crash or
 * kill -9, the same command resumes: answered lines are not run again, and
 * requests that were in flight are found again by their request id (when
 * the instance still runs them), so each custom_id appears exactly once and
 * greedy or seeded output is the same as without the interruption.
 *
 * Ctrl-C (SIGINT) or SIGTERM: no new requests start, those in flight finish
 * and are journaled, then exit 1 (a second Ctrl-C ends at once; the journal
 * is safe either way).
 * stderr: a progress bar with rate and ETA when it is a terminal; a summary
 * line at the end.
 * Exit status: 0 the output was written (it may hold per-line errors),
 * 1 failure (instance, files, interrupted: rerun to resume), 2 usage.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "batch_journal.h"
#include "batch_request.h"
#include "commands.h"
#include "instance.h"
#include "proto/client.h"
#include "proto/msg.h"
#include "proto/zsock.h"

_Static_assert(GRETA_BATCH_MAX_BIAS == GRETA_MSG_MAX_BIAS, "logit_bias limits of batch lines and messages");

#define BATCH_DEFAULT_CONCURRENCY 8
#define BATCH_MAX_CONCURRENCY 256
#define BATCH_BUSY_WAIT_MS 300000 /* all slots taken (by other clients) this long: give up */

static volatile sig_atomic_t g_stop;

static void on_signal(int sig)
{
    (void)sig;
    g_stop = 1;
}

static void usage(FILE *f)
{
    fprintf(f,
            "usage: greta batch IN.jsonl -o OUT.jsonl [--concurrency N] [--instance NAME] [-m MODEL]\n"
            "  Runs every line of IN.jsonl (OpenAI Batch API format: custom_id, method, url\n"
            "  /v1/chat/completions or /v1/completions, body) and writes one answer per line\n"
            "  to OUT.jsonl, in input order. Bad lines become error lines, never a failed job.\n"
            "  -o OUT.jsonl       output file (the journal OUT.jsonl.journal makes the job\n"
            "                     resumable: rerun the same command after a crash)\n"
            "  --concurrency N    requests in flight at once, decoded together (default %d;\n"
            "                     at most the instance's slots)\n"
            "  --instance NAME    instance to use (default 'default'); when it is not up, a\n"
            "                     temporary one with N slots is started and stopped at the end\n"
            "  -m MODEL           model of a temporary instance (a running one must serve it)\n"
            "Exit status: 0 output written, 1 failure or interrupted (rerun to resume), 2 usage.\n",
            BATCH_DEFAULT_CONCURRENCY);
}

/* ---- the job ----------------------------------------------------------------------- */

typedef struct batch_job {
    greta_batch_req *reqs; /* [n_reqs] non-blank lines, in input order */
    size_t n_reqs;
    size_t n_lines;  /* lines of the input (blank ones included) */
    size_t *pending; /* [n_pending] indexes into reqs still to run, in run order */
    size_t n_pending;
    _Atomic size_t next; /* next index into pending */
    greta_batch_journal *journal;
    greta_instance *inst;
    const char *model_name; /* for the response bodies */
    int64_t created;
    /* progress and totals (this run) */
    _Atomic size_t completed, errors, running_threads;
    _Atomic uint64_t tokens;
    _Atomic uint32_t max_batch;
    _Atomic int fatal;
    pthread_mutex_t mu;
    char fatal_msg[GRETA_ERROR_MSG_MAX + GRETA_BATCH_MAX_ID + 8];
} batch_job;

static void set_fatal(batch_job *job, const greta_error *err, const char *custom_id)
{
    pthread_mutex_lock(&job->mu);
    if (!atomic_load(&job->fatal))
        snprintf(job->fatal_msg, sizeof job->fatal_msg, "%.*s%s%s", GRETA_BATCH_MAX_ID, custom_id ? custom_id : "",
                 custom_id ? ": " : "", err->msg);
    atomic_store(&job->fatal, 1);
    pthread_mutex_unlock(&job->mu);
}

/* Errors caused by the request itself (a per-line error), not by the instance. */
static int per_line(int code)
{
    return code == GRETA_ERR_INVALID || code == GRETA_ERR_FORMAT || code == GRETA_ERR_LIMIT ||
           code == GRETA_ERR_UNSUPPORTED || code == GRETA_ERR_TYPE;
}

typedef struct text_buf {
    char *p;
    size_t len, cap;
    int oom;
} text_buf;

static int on_delta(void *ctx, uint32_t index, int32_t token, const char *text, size_t len, int batch_size)
{
    (void)index, (void)token, (void)batch_size;
    text_buf *b = ctx;
    if (!len)
        return 0;
    if (b->len + len + 1 > b->cap) {
        size_t cap = (b->len + len + 1) * 2;
        char *p = realloc(b->p, cap);
        if (!p) {
            b->oom = 1;
            return 1;
        }
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->len, text, len);
    b->len += len;
    return 0;
}

static void note_max(_Atomic uint32_t *m, uint32_t v)
{
    uint32_t cur = atomic_load(m);
    while (v > cur && !atomic_compare_exchange_weak(m, &cur, v)) {
    }
}

/* Journals the refusal of r (a per-line error found while running it). */
static void finish_refused(batch_job *job, greta_batch_req *r)
{
    char *line = greta_batch_format_error(r);
    greta_error err = {0};
    if (!line || greta_batch_journal_done(job->journal, r->line, line, &err) < 0) {
        if (!line)
            greta_error_set(&err, GRETA_ERR_NOMEM, "out of memory");
        set_fatal(job, &err, r->custom_id);
    } else {
        atomic_fetch_add(&job->errors, 1);
        atomic_fetch_add(&job->completed, 1);
    }
    free(line);
}

/* Encodes the prompt of r: *ids malloc'ed. */
static int encode(greta_client *c, const greta_batch_req *r, int32_t **ids, size_t *n, greta_error *err)
{
    uint64_t rid = greta_client_request_id();
    if (r->kind == GRETA_BATCH_CHAT)
        return greta_client_encode_chat(c, rid, (const char *const *)r->roles, (const char *const *)r->contents,
                                        r->n_msgs, ids, n, err);
    if (r->prompt)
        return greta_client_encode(c, rid, r->prompt, strlen(r->prompt), 1, ids, n, err);
    *ids = malloc(r->n_prompt_ids * sizeof **ids);
    if (!*ids)
        return greta_error_set(err, GRETA_ERR_NOMEM, "out of memory");
    memcpy(*ids, r->prompt_ids, r->n_prompt_ids * sizeof **ids);
    *n = r->n_prompt_ids;
    return GRETA_OK;
}

/* Submits, waiting while every slot is busy (other clients, or requests of a
 * killed run that are still finishing). */
static int submit(batch_job *job, greta_client *c, uint64_t rid, const greta_client_request *q, greta_error *err)
{
    int64_t give_up = greta_now_ms() + BATCH_BUSY_WAIT_MS;
    for (;;) {
        int rc = greta_client_submit(c, rid, q, NULL, err);
        /* the worker answers LIMIT "all N slots are busy" (the prompt length,
         * its other LIMIT, was checked before) */
        if (rc != GRETA_ERR_LIMIT || !strstr(err->msg, "busy") || greta_now_ms() > give_up || atomic_load(&job->fatal))
            return rc;
        greta_error_clear(err);
        usleep(20000);
    }
}

static void run_one(batch_job *job, greta_client *c, greta_batch_req *r)
{
    uint32_t n_ctx = greta_instance_n_ctx(job->inst);
    int32_t *ids = NULL;
    size_t n = 0;
    greta_error err = {0};
    int rc = encode(c, r, &ids, &n, &err);
    if (rc < 0) {
        if (per_line(rc)) {
            greta_batch_req_refuse(r, "invalid_request", "%s: %s",
                                   r->kind == GRETA_BATCH_CHAT ? "body.messages" : "body.prompt", err.msg);
            finish_refused(job, r);
        } else {
            set_fatal(job, &err, r->custom_id);
        }
        return;
    }
    if (n > n_ctx) {
        greta_batch_req_refuse(r, "prompt_too_long", "the prompt is %zu tokens; the context holds %u", n, n_ctx);
        finish_refused(job, r);
        free(ids);
        return;
    }
    uint32_t room = n_ctx - (uint32_t)n + 1; /* the last position's logits still give a token */
    greta_client_bias bias[GRETA_BATCH_MAX_BIAS];
    for (size_t i = 0; i < r->n_bias; i++)
        bias[i] = (greta_client_bias){r->bias[i].token, r->bias[i].bias};
    greta_client_request q = {
        .prompt = ids,
        .n_prompt = n,
        .max_tokens = r->max_tokens && (uint32_t)r->max_tokens < room ? r->max_tokens : (int32_t)room,
        .temperature = r->temperature,
        .top_p = r->top_p,
        .seed = r->seed,
        .stop = (const char *const *)r->stop,
        .n_stop = r->n_stop,
        .frequency_penalty = r->frequency_penalty,
        .presence_penalty = r->presence_penalty,
        .repeat_last_n = r->frequency_penalty != 0 || r->presence_penalty != 0 ? -1 : 0, /* the whole history */
        .bias = bias,
        .n_bias = r->n_bias,
    };
    uint64_t rid = greta_batch_journal_rid(job->journal, r->line);
    if (!rid) {
        rid = greta_client_request_id();
        if (greta_batch_journal_submit(job->journal, r->line, rid, &err) < 0) {
            set_fatal(job, &err, r->custom_id);
            free(ids);
            return;
        }
    }
    text_buf text = {0};
    greta_client_result res;
    for (int attempt = 0;; attempt++) {
        text.len = 0;
        rc = submit(job, c, rid, &q, &err);
        if (rc == 0)
            rc = greta_client_stream(c, rid, 0, on_delta, &text, &res, &err);
        /* the request vanished under us (its slot went to another request
         * between a rerun's Submit and Resume): run it again from scratch */
        if (rc != GRETA_ERR_NOT_FOUND || attempt >= 2)
            break;
        greta_error_clear(&err);
    }
    free(ids);
    if (rc == 0 || per_line(rc)) {
        greta_error rel = {0};
        greta_client_release(c, rid, &rel);
    }
    if (rc < 0 || text.oom) {
        if (per_line(rc)) {
            greta_batch_req_refuse(r, "invalid_request", "%s", err.msg);
            finish_refused(job, r);
        } else {
            if (text.oom)
                greta_error_set(&err, GRETA_ERR_NOMEM, "out of memory");
            set_fatal(job, &err, r->custom_id);
        }
        free(text.p);
        return;
    }
    if (res.finish_reason == GRETA__FINISH_REASON__FINISH_ERROR ||
        res.finish_reason == GRETA__FINISH_REASON__FINISH_CANCELLED) {
        greta_batch_req_refuse(r, "generation_failed", "generation ended with %s after %u tokens",
                               res.finish_reason == GRETA__FINISH_REASON__FINISH_ERROR ? "an error" : "a cancel",
                               res.completion_tokens);
        finish_refused(job, r);
        free(text.p);
        return;
    }
    greta_batch_result out = {
        .request_id = rid,
        .text = text.p,
        .len = text.len,
        .finish_reason = res.finish_reason,
        .prompt_tokens = res.prompt_tokens,
        .completion_tokens = res.completion_tokens,
        .created = job->created,
        .model = job->model_name,
    };
    char *line = greta_batch_format_response(r, &out);
    free(text.p);
    if (!line) {
        greta_error_set(&err, GRETA_ERR_NOMEM, "out of memory");
        set_fatal(job, &err, r->custom_id);
        return;
    }
    if (greta_batch_journal_done(job->journal, r->line, line, &err) < 0) {
        set_fatal(job, &err, r->custom_id);
    } else {
        atomic_fetch_add(&job->tokens, res.completion_tokens);
        note_max(&job->max_batch, res.max_batch);
        atomic_fetch_add(&job->completed, 1);
    }
    free(line);
}

static void *worker_main(void *arg)
{
    batch_job *job = arg;
    greta_client *c = NULL;
    greta_error err = {0};
    if (greta_client_open(greta_instance_name(job->inst), &c, &err) < 0) {
        set_fatal(job, &err, NULL);
    } else {
        while (!g_stop && !atomic_load(&job->fatal)) {
            size_t k = atomic_fetch_add(&job->next, 1);
            if (k >= job->n_pending)
                break;
            run_one(job, c, &job->reqs[job->pending[k]]);
        }
    }
    greta_client_close(&c);
    atomic_fetch_sub(&job->running_threads, 1);
    return NULL;
}

/* ---- input ------------------------------------------------------------------------- */

static char *read_all(const char *path, size_t *n, greta_error *err)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        greta_error_set(err, GRETA_ERR_IO, "%s: %s", path, strerror(errno));
        return NULL;
    }
    size_t cap = 1 << 16, len = 0;
    char *buf = malloc(cap);
    size_t r;
    while (buf && (r = fread(buf + len, 1, cap - len - 1, f)) > 0) {
        len += r;
        if (cap - len - 1 == 0) {
            char *p = realloc(buf, cap * 2);
            if (!p) {
                free(buf);
                buf = NULL;
                break;
            }
            buf = p;
            cap *= 2;
        }
    }
    int bad = ferror(f);
    fclose(f);
    if (!buf || bad) {
        free(buf);
        greta_error_set(err, bad ? GRETA_ERR_IO : GRETA_ERR_NOMEM, "%s: %s", path,
                        bad ? "read error" : "out of memory");
        return NULL;
    }
    buf[len] = '\0';
    *n = len;
    return buf;
}

/* custom_id -> first line, for the duplicate check (open addressing). */
typedef struct id_set {
    const greta_batch_req **slot;
    size_t cap;
} id_set;

static const greta_batch_req *id_set_add(id_set *s, const greta_batch_req *r)
{
    uint64_t h = greta_batch_hash(r->custom_id, strlen(r->custom_id));
    for (size_t i = (size_t)(h & (s->cap - 1));; i = (i + 1) & (s->cap - 1)) {
        if (!s->slot[i]) {
            s->slot[i] = r;
            return NULL;
        }
        if (!strcmp(s->slot[i]->custom_id, r->custom_id))
            return s->slot[i];
    }
}

static int parse_input(batch_job *job, const char *text, size_t len, greta_error *err)
{
    size_t lines = 1;
    for (size_t i = 0; i < len; i++)
        lines += text[i] == '\n';
    job->reqs = calloc(lines, sizeof *job->reqs);
    id_set ids = {0};
    ids.cap = 16;
    while (ids.cap < lines * 2)
        ids.cap *= 2;
    ids.slot = calloc(ids.cap, sizeof *ids.slot);
    if (!job->reqs || !ids.slot) {
        free(ids.slot);
        return greta_error_set(err, GRETA_ERR_NOMEM, "out of memory");
    }
    size_t line = 0;
    for (size_t pos = 0; pos < len;) {
        const char *nl = memchr(text + pos, '\n', len - pos);
        size_t n = nl ? (size_t)(nl - (text + pos)) : len - pos;
        line++;
        size_t k = 0;
        while (k < n && (text[pos + k] == ' ' || text[pos + k] == '\t' || text[pos + k] == '\r'))
            k++;
        if (k < n) {
            greta_batch_req *r = &job->reqs[job->n_reqs++];
            if (greta_batch_req_parse(text + pos, n, line, r) == 0) {
                const greta_batch_req *first = id_set_add(&ids, r);
                if (first)
                    greta_batch_req_refuse(r, "duplicate_custom_id", "custom_id: '%.200s' was already used on line %zu",
                                           r->custom_id, first->line);
            }
        }
        pos += n + 1;
    }
    job->n_lines = line;
    free(ids.slot);
    return GRETA_OK;
}

/* ---- output ------------------------------------------------------------------------ */

static int write_output(batch_job *job, const char *out_path, greta_error *err)
{
    char tmp[4096 + 8];
    snprintf(tmp, sizeof tmp, "%s.tmp", out_path);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0)
        return greta_error_set(err, GRETA_ERR_IO, "%s: %s", tmp, strerror(errno));
    FILE *f = fdopen(fd, "w");
    if (!f) {
        close(fd);
        return greta_error_set(err, GRETA_ERR_IO, "%s: %s", tmp, strerror(errno));
    }
    int rc = GRETA_OK;
    for (size_t i = 0; i < job->n_reqs && rc == 0; i++) {
        greta_batch_req *r = &job->reqs[i];
        char *own = NULL;
        const char *line = r->bad ? NULL : greta_batch_journal_output(job->journal, r->line);
        if (!line)
            line = own = greta_batch_format_error(r);
        if (!line)
            rc = greta_error_set(err, GRETA_ERR_NOMEM, "out of memory");
        else if (fputs(line, f) < 0 || fputc('\n', f) < 0)
            rc = greta_error_set(err, GRETA_ERR_IO, "%s: %s", tmp, strerror(errno));
        free(own);
    }
    if (fflush(f) != 0 || fsync(fileno(f)) != 0)
        rc = rc ? rc : greta_error_set(err, GRETA_ERR_IO, "%s: %s", tmp, strerror(errno));
    if (fclose(f) != 0 && rc == 0)
        rc = greta_error_set(err, GRETA_ERR_IO, "%s: %s", tmp, strerror(errno));
    if (rc == 0 && rename(tmp, out_path) != 0)
        rc = greta_error_set(err, GRETA_ERR_IO, "rename %s -> %s: %s", tmp, out_path, strerror(errno));
    if (rc < 0)
        unlink(tmp);
    return rc;
}

/* ---- progress ---------------------------------------------------------------------- */

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static void progress(const batch_job *job, size_t before, size_t total, double t0)
{
    size_t done_now = atomic_load(&job->completed);
    size_t done = before + done_now;
    double el = now_s() - t0;
    double rate = el > 0 ? (double)done_now / el : 0;
    char bar[31];
    size_t fill = total ? done * 30 / total : 30;
    for (size_t i = 0; i < 30; i++)
        bar[i] = i < fill ? '#' : '-';
    bar[30] = '\0';
    char eta[32];
    if (rate > 0) {
        long s = (long)((double)(total - done) / rate + 0.5);
        snprintf(eta, sizeof eta, "%ld:%02ld", s / 60, s % 60);
    } else {
        snprintf(eta, sizeof eta, "--:--");
    }
    fprintf(stderr, "\r\x1b[K[%s] %zu/%zu  %.1f req/s  ETA %s", bar, done, total, rate, eta);
    fflush(stderr);
}

/* ---- main -------------------------------------------------------------------------- */

static int parse_int(const char *flag, const char *s, long lo, long hi, long *out)
{
    char *end;
    errno = 0;
    long v = s ? strtol(s, &end, 10) : 0;
    if (!s || end == s || *end || errno || v < lo || v > hi) {
        fprintf(stderr, "greta batch: %s needs an integer in %ld..%ld (got '%s')\n", flag, lo, hi, s ? s : "");
        return -1;
    }
    *out = v;
    return 0;
}

static void free_job(batch_job *job)
{
    for (size_t i = 0; i < job->n_reqs; i++)
        greta_batch_req_free(&job->reqs[i]);
    free(job->reqs);
    free(job->pending);
    greta_batch_journal_close(&job->journal);
    greta_instance_close(&job->inst);
    pthread_mutex_destroy(&job->mu);
}

int cmd_batch(int argc, char **argv)
{
    const char *in_path = NULL, *out_path = NULL, *instance = NULL, *model = NULL;
    long concurrency = BATCH_DEFAULT_CONCURRENCY;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            return 0;
        } else if (!strcmp(a, "-o") && v) {
            out_path = v;
            i++;
        } else if (!strcmp(a, "--concurrency")) {
            if (parse_int(a, v, 1, BATCH_MAX_CONCURRENCY, &concurrency) < 0)
                return 2;
            i++;
        } else if (!strcmp(a, "--instance") && v) {
            instance = v;
            i++;
        } else if (!strcmp(a, "-m") && v) {
            model = v;
            i++;
        } else if (a[0] != '-' && !in_path) {
            in_path = a;
        } else {
            fprintf(stderr, "greta batch: unexpected argument '%s'\n", a);
            usage(stderr);
            return 2;
        }
    }
    if (!in_path || !out_path) {
        fprintf(stderr, "greta batch: %s\n", !in_path ? "name the input file" : "-o OUT.jsonl is required");
        usage(stderr);
        return 2;
    }
    greta_error err = {0};
    size_t in_len = 0;
    char *in_text = read_all(in_path, &in_len, &err);
    if (!in_text) {
        fprintf(stderr, "greta batch: %s\n", err.msg);
        return 1;
    }
    batch_job job;
    memset(&job, 0, sizeof job);
    pthread_mutex_init(&job.mu, NULL);
    job.created = (int64_t)time(NULL);
    int rc = parse_input(&job, in_text, in_len, &err);
    uint64_t in_hash = greta_batch_hash(in_text, in_len);
    free(in_text);
    if (rc == 0) {
        greta_instance_opts io = {.name = instance, .model = model, .slots = (int)concurrency, .log = stderr};
        rc = greta_instance_open(&io, &job.inst, &err);
    }
    char journal_path[4096 + 16];
    snprintf(journal_path, sizeof journal_path, "%s.journal", out_path);
    int resumed = 0;
    if (rc == 0) {
        const char *m = greta_instance_model(job.inst);
        const char *base = strrchr(m, '/');
        job.model_name = base ? base + 1 : m;
        char key[4096 + 128];
        snprintf(key, sizeof key, "input %zu bytes fnv1a %016" PRIx64 ", model %s", in_len, in_hash, m);
        rc = greta_batch_journal_open(journal_path, key, job.n_lines, &job.journal, &resumed, &err);
    }
    if (rc < 0) {
        fprintf(stderr, "greta batch: %s\n", err.msg);
        free_job(&job);
        return 1;
    }
    /* what is left to run: requests that were in flight first (their slots
     * may still be held), then the rest in input order */
    size_t valid = 0, before = 0;
    job.pending = calloc(job.n_reqs ? job.n_reqs : 1, sizeof *job.pending);
    for (int pass = 0; pass < 2 && job.pending; pass++)
        for (size_t i = 0; i < job.n_reqs; i++) {
            greta_batch_req *r = &job.reqs[i];
            if (r->bad)
                continue;
            int done = greta_batch_journal_output(job.journal, r->line) != NULL;
            if (pass == 0) {
                valid++;
                before += done;
            }
            if (!done && (greta_batch_journal_rid(job.journal, r->line) != 0) == (pass == 0))
                job.pending[job.n_pending++] = i;
        }
    if (resumed)
        fprintf(stderr, "greta batch: resuming from %s: %zu of %zu requests already answered, %zu to run\n",
                journal_path, before, valid, job.n_pending);
    long slots = (long)greta_instance_n_slots(job.inst);
    if (concurrency > slots) {
        fprintf(stderr, "greta batch: instance %s has %ld slots: --concurrency %ld runs as %ld\n",
                greta_instance_name(job.inst), slots, concurrency, slots);
        concurrency = slots;
    }
    size_t n_threads = (size_t)concurrency < job.n_pending ? (size_t)concurrency : job.n_pending;

    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sa.sa_flags = (int)SA_RESETHAND; /* a second Ctrl-C ends at once */
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    int tty = isatty(2);
    double t0 = now_s();
    pthread_t *th = calloc(n_threads ? n_threads : 1, sizeof *th);
    atomic_store(&job.running_threads, n_threads);
    size_t started = 0;
    for (; th && started < n_threads; started++)
        if (pthread_create(&th[started], NULL, worker_main, &job) != 0)
            break;
    atomic_fetch_sub(&job.running_threads, n_threads - started);
    if (started < n_threads) {
        greta_error_set(&err, GRETA_ERR_NOMEM, "cannot start %zu threads", n_threads);
        set_fatal(&job, &err, NULL);
    }
    while (atomic_load(&job.running_threads) > 0) {
        if (tty)
            progress(&job, before, valid, t0);
        usleep(100000);
    }
    for (size_t i = 0; i < started; i++)
        pthread_join(th[i], NULL);
    free(th);
    if (tty) {
        progress(&job, before, valid, t0);
        fputc('\n', stderr);
    }
    double el = now_s() - t0;
    int status = 0;
    if (atomic_load(&job.fatal)) {
        fprintf(stderr,
                "greta batch: %s\ngreta batch: stopped; %s keeps the progress: rerun the same command to "
                "resume\n",
                job.fatal_msg, journal_path);
        status = 1;
    } else if (g_stop && greta_batch_journal_done_count(job.journal) < valid) {
        fprintf(stderr, "greta batch: interrupted; %s keeps the progress: rerun the same command to resume\n",
                journal_path);
        status = 1;
    } else if (write_output(&job, out_path, &err) < 0) {
        fprintf(stderr, "greta batch: %s\n", err.msg);
        status = 1;
    } else {
        unlink(journal_path);
        size_t refused = 0;
        for (size_t i = 0; i < job.n_reqs; i++) {
            const char *o = job.reqs[i].bad ? NULL : greta_batch_journal_output(job.journal, job.reqs[i].line);
            refused += job.reqs[i].bad || (o && strstr(o, "\"response\":null") != NULL);
        }
        uint64_t toks = atomic_load(&job.tokens);
        fprintf(stderr,
                "greta batch: %zu requests: %zu answered, %zu errors; this run: %zu requests, %" PRIu64
                " tokens in %.2f s (%.1f tokens/s, %.1f req/s), concurrency %ld, max batch %u; wrote %s\n",
                job.n_reqs, job.n_reqs - refused, refused, atomic_load(&job.completed), toks, el,
                el > 0 ? (double)toks / el : 0.0, el > 0 ? (double)atomic_load(&job.completed) / el : 0.0, concurrency,
                atomic_load(&job.max_batch), out_path);
    }
    free_job(&job);
    return status;
}
