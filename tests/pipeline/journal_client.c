/* journal_client.c - a batch-style client with a journal, for the restart
 * tests: killed at any point and run again with the same journal, it
 * continues the same request where it stopped.
 *
 *   journal_client --instance NAME --journal FILE [-p PROMPT] [-n N]
 *                  [--temp T] [--seed S]
 *
 * Journal lines (each written with one fflush):
 *   rid <16 hex digits>                 before the request is submitted
 *   tok <index> <token> <hex text|->    one per generated token, in order
 *   end <reason> <completion> <hex tail|->
 * A rerun reads it, resubmits the same request id (the worker answers with
 * the existing slot) and streams from the first token it does not have.
 * A torn last line (killed mid-write) is ignored.
 * Exit status: 0 done, 1 failure, 2 usage.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "proto/client.h"

typedef struct jstate {
    FILE *f;
    uint32_t next;
    char tail[4096];
    size_t tail_len;
} jstate;

static void put_hex(FILE *f, const char *s, size_t n)
{
    if (!n)
        fputc('-', f);
    for (size_t i = 0; i < n; i++)
        fprintf(f, "%02x", (unsigned char)s[i]);
}

static int on_delta(void *ctx, uint32_t index, int32_t token, const char *text, size_t len, int batch)
{
    jstate *j = ctx;
    (void)batch;
    if (token < 0) { /* the tail: written with "end" */
        j->tail_len = len < sizeof j->tail ? len : sizeof j->tail;
        memcpy(j->tail, text, j->tail_len);
        return 0;
    }
    fprintf(j->f, "tok %u %d ", index, token);
    put_hex(j->f, text, len);
    fputc('\n', j->f);
    fflush(j->f);
    j->next = index + 1;
    return 0;
}

int main(int argc, char **argv)
{
    const char *instance = NULL, *journal = NULL, *prompt = "";
    int n = 200;
    float temp = 0.0f;
    unsigned long long seed = 0;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--instance"))
            instance = argv[i + 1];
        else if (!strcmp(argv[i], "--journal"))
            journal = argv[i + 1];
        else if (!strcmp(argv[i], "-p"))
            prompt = argv[i + 1];
        else if (!strcmp(argv[i], "-n"))
            n = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--temp"))
            temp = strtof(argv[i + 1], NULL);
        else if (!strcmp(argv[i], "--seed"))
            seed = strtoull(argv[i + 1], NULL, 10);
        else {
            fprintf(stderr, "journal_client: unknown argument '%s'\n", argv[i]);
            return 2;
        }
    }
    if (!instance || !journal) {
        fprintf(stderr, "usage: journal_client --instance NAME --journal FILE [-p PROMPT] [-n N] [--temp T] [--seed S]\n");
        return 2;
    }
    /* read what an earlier run did */
    unsigned long long rid = 0;
    uint32_t have = 0;
    int ended = 0;
    FILE *f = fopen(journal, "r");
    if (f) {
        char line[8192];
        while (fgets(line, sizeof line, f)) {
            if (!strchr(line, '\n'))
                break; /* torn */
            unsigned idx;
            if (!strncmp(line, "rid ", 4))
                rid = strtoull(line + 4, NULL, 16);
            else if (sscanf(line, "tok %u", &idx) == 1 && idx == have)
                have++;
            else if (!strncmp(line, "end ", 4))
                ended = 1;
        }
        fclose(f);
    }
    if (ended) {
        fprintf(stderr, "journal_client: %s is complete\n", journal);
        return 0;
    }
    /* drop a torn tail before appending */
    if (rid) {
        FILE *in = fopen(journal, "r");
        char *buf = NULL;
        size_t cap = 0, len = 0;
        char line[8192];
        while (in && fgets(line, sizeof line, in) && strchr(line, '\n')) {
            size_t k = strlen(line);
            char *p = realloc(buf, len + k + 1);
            if (!p)
                return 1;
            buf = p;
            memcpy(buf + len, line, k);
            len += k;
            cap = len;
        }
        if (in)
            fclose(in);
        FILE *out = fopen(journal, "w");
        if (!out)
            return 1;
        if (cap)
            fwrite(buf, 1, len, out);
        fclose(out);
        free(buf);
    }
    jstate j = {fopen(journal, "a"), have, {0}, 0};
    if (!j.f) {
        perror("journal_client: journal");
        return 1;
    }
    greta_error err = {0};
    greta_client *c = NULL;
    if (greta_client_open(instance, &c, &err) < 0) {
        fprintf(stderr, "journal_client: %s\n", err.msg);
        return 1;
    }
    if (!rid) {
        rid = greta_client_request_id();
        fprintf(j.f, "rid %016llx\n", rid);
        fflush(j.f);
    } else {
        fprintf(stderr, "journal_client: resuming request %016llx after %u tokens\n", rid, have);
    }
    int32_t *ids = NULL;
    size_t n_ids = 0;
    greta_client_request req = {0};
    greta_client_result res;
    int rc = greta_client_encode(c, rid, prompt, strlen(prompt), 1, &ids, &n_ids, &err);
    if (rc == 0) {
        req.prompt = ids;
        req.n_prompt = n_ids;
        req.max_tokens = n;
        req.temperature = temp;
        req.seed = seed;
        rc = greta_client_submit(c, rid, &req, NULL, &err);
    }
    if (rc == 0)
        rc = greta_client_stream(c, rid, have, on_delta, &j, &res, &err);
    if (rc == 0) {
        fprintf(j.f, "end %d %u ", res.finish_reason, res.completion_tokens);
        put_hex(j.f, j.tail, j.tail_len);
        fputc('\n', j.f);
        fflush(j.f);
        greta_client_release(c, rid, NULL);
        fprintf(stderr, "journal_client: done, %u tokens, %u duplicates dropped, %u resumes\n",
                res.completion_tokens, res.duplicates, res.resumes);
    } else {
        fprintf(stderr, "journal_client: %s\n", err.msg);
    }
    free(ids);
    fclose(j.f);
    greta_client_close(&c);
    return rc == 0 ? 0 : 1;
}
