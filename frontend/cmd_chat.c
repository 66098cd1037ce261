/* cmd_chat.c - `greta chat`: an interactive conversation with the model of a
 * pipeline instance, rendered with the model's chat template.
 *
 *   greta chat [--instance NAME] [-m MODEL] [--system TEXT] [--temp T] [--seed S] [-n N]
 *
 * Uses the running instance NAME (default "default") or starts a temporary
 * one (frontend/instance.h). A model without a chat template gets the raw
 * template (the messages concatenated), which is said once at the start.
 *
 * Input: on a terminal, libedit line editing with history (saved in
 * $XDG_STATE_HOME/greta/chat_history, default ~/.local/state/greta/...);
 * otherwise plain lines from stdin. Multi-line input: a line ending with a
 * backslash continues on the next line (the backslash becomes a newline), and
 * a line starting with """ opens a block that runs to a line ending with """.
 * The answer streams to stdout as it is generated. Ctrl-C during an answer
 * stops it (the request is cancelled; the partial answer stays in the
 * conversation) and returns to the prompt; Ctrl-C at the prompt drops the
 * line; Ctrl-D or /quit leaves.
 *
 * Commands: /system [TEXT] (show or set the system prompt), /reset (forget the
 * conversation, keep the system prompt), /temp [T] (show or set the
 * temperature), /save FILE and /load FILE (the conversation as JSON:
 * {"temperature": T, "messages": [{"role": ..., "content": ...}, ...]}),
 * /stats (the last answer's time to first token and tokens/s), /help, /quit.
 *
 * Sampling: --temp (default 0.8), top-k 40, top-p 0.95, min-p 0.05 (as greta
 * run); --seed S (default random) seeds every answer; -n N caps an answer's
 * tokens (default: until end of sequence or a full context).
 * Exit status: 0 at /quit or end of input, 1 failure, 2 usage.
 */
#include <cjson/cJSON.h>
#include <errno.h>
#include <histedit.h>
#include <inttypes.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "commands.h"
#include "common/gguf.h"
#include "instance.h"
#include "proto/client.h"
#include "proto/msg.h"
#include "tokenizer/chat.h"
#include "tokenizer/tokenizer.h"

#define CHAT_MAX_FILE ((size_t)16 << 20)

static volatile sig_atomic_t g_interrupt;

static void on_sigint(int sig)
{
    (void)sig;
    g_interrupt = 1;
}

static void usage(FILE *f)
{
    fprintf(f, "usage: greta chat [--instance NAME] [-m MODEL] [--system TEXT] [--temp T] [--seed S] [-n N]\n"
               "  Talks with the model of instance NAME (default 'default'; started for this\n"
               "  chat and stopped after it when it is not up), with the model's chat template.\n"
               "  -m MODEL        model of a temporary instance (a running one must serve it)\n"
               "  --system TEXT   system prompt\n"
               "  --temp T        temperature (default 0.8; 0 = greedy)\n"
               "  --seed S        RNG seed of every answer (default random)\n"
               "  -n N            at most N tokens per answer (default: until the end)\n"
               "Input: a line ending with \\ continues; \"\"\" starts and ends a multi-line block.\n"
               "Commands: /system [TEXT]  /reset  /temp [T]  /save FILE  /load FILE  /stats  /help  /quit\n"
               "Ctrl-C stops an answer; Ctrl-D or /quit leaves.\n");
}

/* ---- the conversation -------------------------------------------------------------- */

typedef struct chat_msg {
    char *role; /* "user" or "assistant" */
    char *content;
} chat_msg;

typedef struct chat_stats {
    int valid;
    uint32_t prompt_tokens, completion_tokens;
    double ttft_ms, tokens_per_s, seconds;
    const char *finish;
} chat_stats;

typedef struct chat {
    greta_instance *inst;
    greta_client *c;
    char *system; /* NULL: none */
    chat_msg *msgs;
    size_t n, cap;
    float temp;
    uint64_t seed;
    int32_t n_predict; /* 0: until the end */
    chat_stats last;
    /* input */
    EditLine *el;
    History *hist;
    char hist_path[4096];
    int continuation; /* prompt: 0 ">>> ", 1 "... " */
} chat;

static int push_msg(chat *ch, const char *role, const char *content, size_t len)
{
    if (ch->n == ch->cap) {
        size_t cap = ch->cap ? ch->cap * 2 : 16;
        chat_msg *m = realloc(ch->msgs, cap * sizeof *m);
        if (!m)
            return -1;
        ch->msgs = m;
        ch->cap = cap;
    }
    char *r = strdup(role), *c = malloc(len + 1);
    if (!r || !c) {
        free(r);
        free(c);
        return -1;
    }
    memcpy(c, content, len);
    c[len] = '\0';
    ch->msgs[ch->n++] = (chat_msg){r, c};
    return 0;
}

static void pop_msg(chat *ch)
{
    if (!ch->n)
        return;
    ch->n--;
    free(ch->msgs[ch->n].role);
    free(ch->msgs[ch->n].content);
}

static void clear_msgs(chat *ch)
{
    while (ch->n)
        pop_msg(ch);
}

/* ---- one answer ---------------------------------------------------------------------- */

typedef struct answer {
    char *text;
    size_t len, cap;
    double t_first, t_last;
    uint32_t tokens;
    int oom;
} answer;

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static int on_delta(void *ctx, uint32_t index, int32_t token, const char *text, size_t len, int batch_size)
{
    (void)index, (void)batch_size;
    answer *a = ctx;
    if (token >= 0) {
        double t = now_s();
        if (!a->tokens)
            a->t_first = t;
        a->t_last = t;
        a->tokens++;
    }
    if (len) {
        fwrite(text, 1, len, stdout);
        fflush(stdout);
        if (a->len + len + 1 > a->cap) {
            size_t cap = (a->len + len + 1) * 2;
            char *p = realloc(a->text, cap);
            if (!p) {
                a->oom = 1;
                return 1;
            }
            a->text = p;
            a->cap = cap;
        }
        memcpy(a->text + a->len, text, len);
        a->len += len;
    }
    return g_interrupt ? 1 : 0;
}

static const char *finish_name(int reason)
{
    switch (reason) {
    case GRETA__FINISH_REASON__FINISH_EOS:
        return "end of sequence";
    case GRETA__FINISH_REASON__FINISH_LENGTH:
        return "length (-n)";
    case GRETA__FINISH_REASON__FINISH_STOP:
        return "stop string";
    case GRETA__FINISH_REASON__FINISH_CANCELLED:
        return "stopped (Ctrl-C)";
    case GRETA__FINISH_REASON__FINISH_CONTEXT:
        return "context full";
    default:
        return "error";
    }
}

/* Sends the conversation plus `user`, streams the answer. 0, or -1 after
 * reporting an error (the user message is then dropped again). */
static int ask(chat *ch, const char *user, size_t len)
{
    if (push_msg(ch, "user", user, len) < 0) {
        fprintf(stderr, "greta chat: out of memory\n");
        return -1;
    }
    size_t n_all = ch->n + (ch->system ? 1 : 0);
    const char **roles = calloc(n_all, sizeof *roles), **contents = calloc(n_all, sizeof *contents);
    if (!roles || !contents) {
        free(roles);
        free(contents);
        pop_msg(ch);
        fprintf(stderr, "greta chat: out of memory\n");
        return -1;
    }
    size_t k = 0;
    if (ch->system) {
        roles[k] = "system";
        contents[k++] = ch->system;
    }
    for (size_t i = 0; i < ch->n; i++) {
        roles[k] = ch->msgs[i].role;
        contents[k++] = ch->msgs[i].content;
    }
    greta_error err = {0};
    double t0 = now_s();
    int32_t *ids = NULL;
    size_t n_ids = 0;
    uint64_t rid = greta_client_request_id();
    int rc = greta_client_encode_chat(ch->c, rid, roles, contents, n_all, &ids, &n_ids, &err);
    free(roles);
    free(contents);
    uint32_t n_ctx = greta_instance_n_ctx(ch->inst);
    if (rc == 0 && n_ids >= n_ctx)
        rc = greta_error_set(&err, GRETA_ERR_LIMIT,
                             "the conversation is %zu tokens and fills the context of %u: /reset starts over", n_ids,
                             n_ctx);
    if (rc < 0) {
        fprintf(stderr, "greta chat: %s\n", err.msg);
        free(ids);
        pop_msg(ch);
        return -1;
    }
    uint32_t room = n_ctx - (uint32_t)n_ids + 1; /* the last position's logits still give a token */
    greta_client_request q = {
        .prompt = ids,
        .n_prompt = n_ids,
        .max_tokens = ch->n_predict > 0 && (uint32_t)ch->n_predict < room ? ch->n_predict : (int32_t)room,
        .temperature = ch->temp,
        .top_k = 40,
        .top_p = 0.95f,
        .min_p = 0.05f,
        .seed = ch->seed,
    };
    answer a = {0};
    greta_client_result res;
    memset(&res, 0, sizeof res);
    rc = greta_client_submit(ch->c, rid, &q, NULL, &err);
    free(ids);
    if (rc == 0)
        rc = greta_client_stream(ch->c, rid, 0, on_delta, &a, &res, &err);
    int stopped = rc == GRETA_ERR_STATE && g_interrupt && !a.oom;
    greta_error e2 = {0};
    if (stopped) {
        greta_client_cancel(ch->c, rid, &e2);
        res.finish_reason = GRETA__FINISH_REASON__FINISH_CANCELLED;
        res.completion_tokens = a.tokens;
        res.prompt_tokens = (uint32_t)n_ids;
    }
    greta_client_release(ch->c, rid, &e2);
    double t_end = now_s();
    fputc('\n', stdout);
    if (stopped)
        fputs("[stopped]\n", stdout);
    fflush(stdout);
    if (rc < 0 && !stopped) {
        fprintf(stderr, "greta chat: %s\n", a.oom ? "out of memory" : err.msg);
        free(a.text);
        pop_msg(ch);
        return -1;
    }
    if (push_msg(ch, "assistant", a.text ? a.text : "", a.len) < 0)
        fprintf(stderr, "greta chat: out of memory (the answer is not kept)\n");
    free(a.text);
    ch->last = (chat_stats){
        .valid = 1,
        .prompt_tokens = res.prompt_tokens,
        .completion_tokens = res.completion_tokens,
        .ttft_ms = a.tokens ? (a.t_first - t0) * 1e3 : NAN,
        .tokens_per_s = a.tokens >= 2 && a.t_last > a.t_first ? (a.tokens - 1) / (a.t_last - a.t_first) : NAN,
        .seconds = t_end - t0,
        .finish = finish_name(res.finish_reason),
    };
    return 0;
}

/* ---- /save and /load ----------------------------------------------------------------- */

static int save(const chat *ch, const char *path)
{
    cJSON *root = cJSON_CreateObject();
    cJSON_AddNumberToObject(root, "temperature", ch->temp);
    cJSON *arr = cJSON_AddArrayToObject(root, "messages");
    if (ch->system) {
        cJSON *m = cJSON_CreateObject();
        cJSON_AddStringToObject(m, "role", "system");
        cJSON_AddStringToObject(m, "content", ch->system);
        cJSON_AddItemToArray(arr, m);
    }
    for (size_t i = 0; i < ch->n; i++) {
        cJSON *m = cJSON_CreateObject();
        cJSON_AddStringToObject(m, "role", ch->msgs[i].role);
        cJSON_AddStringToObject(m, "content", ch->msgs[i].content);
        cJSON_AddItemToArray(arr, m);
    }
    char *s = cJSON_Print(root);
    cJSON_Delete(root);
    FILE *f = s ? fopen(path, "w") : NULL;
    int ok = f && fputs(s, f) >= 0 && fputc('\n', f) != EOF;
    if (f && fclose(f) != 0)
        ok = 0;
    if (!ok)
        fprintf(stderr, "greta chat: /save %s: %s\n", path, s ? strerror(errno) : "out of memory");
    else
        printf("saved %zu messages to %s\n", ch->n + (ch->system ? 1 : 0), path);
    free(s);
    return ok ? 0 : -1;
}

static char *read_file(const char *path, size_t *n, char *why, size_t why_n)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        snprintf(why, why_n, "%s", strerror(errno));
        return NULL;
    }
    char *buf = malloc(CHAT_MAX_FILE + 1);
    size_t got = buf ? fread(buf, 1, CHAT_MAX_FILE + 1, f) : 0;
    fclose(f);
    if (!buf || got > CHAT_MAX_FILE) {
        snprintf(why, why_n, buf ? "larger than %zu bytes" : "out of memory", CHAT_MAX_FILE);
        free(buf);
        return NULL;
    }
    buf[got] = '\0';
    *n = got;
    return buf;
}

/* Replaces the conversation with the file's; the old one stays on error. */
static int load(chat *ch, const char *path)
{
    char why[256];
    size_t n = 0;
    char *text = read_file(path, &n, why, sizeof why);
    if (!text) {
        fprintf(stderr, "greta chat: /load %s: %s\n", path, why);
        return -1;
    }
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts(text, n, &end, 0);
    int rc = 0;
    const cJSON *arr = cJSON_GetObjectItemCaseSensitive(root, "messages");
    const cJSON *temp = cJSON_GetObjectItemCaseSensitive(root, "temperature");
    if (!root) {
        fprintf(stderr, "greta chat: /load %s: not valid JSON (at byte %zu)\n", path,
                end && end >= text ? (size_t)(end - text) : 0);
        rc = -1;
    } else if (!cJSON_IsArray(arr)) {
        fprintf(stderr, "greta chat: /load %s: messages: missing or not a list\n", path);
        rc = -1;
    } else if (temp && (!cJSON_IsNumber(temp) || !(temp->valuedouble >= 0) || temp->valuedouble > 100)) {
        fprintf(stderr, "greta chat: /load %s: temperature: must be a number in 0..100\n", path);
        rc = -1;
    }
    int count = rc == 0 ? cJSON_GetArraySize(arr) : 0;
    for (int i = 0; rc == 0 && i < count; i++) {
        const cJSON *m = cJSON_GetArrayItem(arr, i);
        const cJSON *role = cJSON_GetObjectItemCaseSensitive(m, "role");
        const cJSON *content = cJSON_GetObjectItemCaseSensitive(m, "content");
        int sys = cJSON_IsString(role) && !strcmp(role->valuestring, "system");
        if (!cJSON_IsString(role) ||
            !(sys ? i == 0 : !strcmp(role->valuestring, "user") || !strcmp(role->valuestring, "assistant"))) {
            fprintf(stderr, "greta chat: /load %s: messages[%d].role: must be user or assistant (system only first)\n",
                    path, i);
            rc = -1;
        } else if (!cJSON_IsString(content)) {
            fprintf(stderr, "greta chat: /load %s: messages[%d].content: must be a string\n", path, i);
            rc = -1;
        }
    }
    if (rc == 0) {
        clear_msgs(ch);
        free(ch->system);
        ch->system = NULL;
        for (int i = 0; i < count; i++) {
            const cJSON *m = cJSON_GetArrayItem(arr, i);
            const char *role = cJSON_GetObjectItemCaseSensitive(m, "role")->valuestring;
            const char *content = cJSON_GetObjectItemCaseSensitive(m, "content")->valuestring;
            if (!strcmp(role, "system"))
                ch->system = strdup(content);
            else if (push_msg(ch, role, content, strlen(content)) < 0)
                rc = -1;
        }
        if (temp)
            ch->temp = (float)temp->valuedouble;
        if (rc == 0)
            printf("loaded %d messages from %s\n", count, path);
        else
            fprintf(stderr, "greta chat: /load: out of memory\n");
    }
    cJSON_Delete(root);
    free(text);
    return rc;
}

/* ---- commands ------------------------------------------------------------------------ */

static void print_stats(const chat *ch)
{
    const chat_stats *s = &ch->last;
    if (!s->valid) {
        printf("no answer yet\n");
        return;
    }
    printf("last answer: %u prompt tokens, %u generated tokens in %.3f s; time to first token %.1f ms; "
           "%.1f tokens/s; finished: %s\n",
           s->prompt_tokens, s->completion_tokens, s->seconds, s->ttft_ms, s->tokens_per_s, s->finish);
}

static const char *skip_ws(const char *s)
{
    while (*s == ' ' || *s == '\t')
        s++;
    return s;
}

/* Runs a /command; 1 to quit. */
static int command(chat *ch, const char *line)
{
    char name[16];
    size_t k = 0;
    const char *p = line + 1;
    while (*p && *p != ' ' && *p != '\t' && k + 1 < sizeof name)
        name[k++] = *p++;
    name[k] = '\0';
    const char *arg = skip_ws(p);
    if (!strcmp(name, "quit") || !strcmp(name, "exit") || !strcmp(name, "bye")) {
        return 1;
    } else if (!strcmp(name, "help")) {
        printf("/system [TEXT]  show or set the system prompt\n"
               "/reset          forget the conversation (keeps the system prompt)\n"
               "/temp [T]       show or set the temperature\n"
               "/save FILE      save the conversation as JSON\n"
               "/load FILE      load a conversation saved with /save\n"
               "/stats          the last answer's time to first token and tokens/s\n"
               "/quit           leave (also Ctrl-D)\n"
               "A line ending with \\ continues; \"\"\" starts and ends a multi-line block.\n"
               "Ctrl-C stops an answer.\n");
    } else if (!strcmp(name, "system")) {
        if (!*arg) {
            printf("system prompt: %s\n", ch->system ? ch->system : "(none)");
        } else {
            free(ch->system);
            ch->system = strdup(arg);
            printf("system prompt set\n");
        }
    } else if (!strcmp(name, "reset")) {
        clear_msgs(ch);
        printf("conversation cleared\n");
    } else if (!strcmp(name, "temp")) {
        if (*arg) {
            char *end;
            errno = 0;
            float t = strtof(arg, &end);
            if (end == arg || *skip_ws(end) || errno || !isfinite(t) || t < 0 || t > 100)
                fprintf(stderr, "greta chat: /temp needs a number in 0..100 (got '%s')\n", arg);
            else
                ch->temp = t;
        }
        printf("temperature %g\n", ch->temp);
    } else if (!strcmp(name, "save") || !strcmp(name, "load")) {
        if (!*arg)
            fprintf(stderr, "greta chat: /%s needs a file name\n", name);
        else if (name[0] == 's')
            save(ch, arg);
        else
            load(ch, arg);
    } else if (!strcmp(name, "stats")) {
        print_stats(ch);
    } else {
        fprintf(stderr, "greta chat: unknown command /%s (/help lists them)\n", name);
    }
    fflush(stdout);
    return 0;
}

/* ---- input --------------------------------------------------------------------------- */

static char *prompt_fn(EditLine *el)
{
    chat *ch = NULL;
    el_get(el, EL_CLIENTDATA, &ch);
    return ch && ch->continuation ? "... " : ">>> ";
}

static void history_path(chat *ch)
{
    const char *state = getenv("XDG_STATE_HOME");
    const char *home = getenv("HOME");
    char dir[4096];
    ch->hist_path[0] = '\0';
    if (state && state[0] == '/')
        snprintf(dir, sizeof dir, "%s", state);
    else if (home && home[0])
        snprintf(dir, sizeof dir, "%s/.local/state", home);
    else
        return;
    /* mkdir -p dir/greta (0700 for what we create) */
    char path[4096 + 8];
    snprintf(path, sizeof path, "%s/greta", dir);
    for (char *s = path + 1; *s; s++)
        if (*s == '/') {
            *s = '\0';
            mkdir(path, 0700);
            *s = '/';
        }
    if (mkdir(path, 0700) != 0 && errno != EEXIST)
        return;
    snprintf(ch->hist_path, sizeof ch->hist_path, "%.4080s/chat_history", path);
}

static int input_open(chat *ch)
{
    if (!isatty(0))
        return 0;
    ch->el = el_init("greta", stdin, stdout, stderr);
    ch->hist = history_init();
    if (!ch->el || !ch->hist)
        return -1;
    HistEvent ev;
    history(ch->hist, &ev, H_SETSIZE, 1000);
    history(ch->hist, &ev, H_SETUNIQUE, 1);
    history_path(ch);
    if (ch->hist_path[0])
        history(ch->hist, &ev, H_LOAD, ch->hist_path);
    el_set(ch->el, EL_CLIENTDATA, ch);
    el_set(ch->el, EL_PROMPT, prompt_fn);
    el_set(ch->el, EL_EDITOR, "emacs");
    el_set(ch->el, EL_HIST, history, ch->hist);
    return 0;
}

static void input_close(chat *ch)
{
    if (ch->el)
        el_end(ch->el);
    if (ch->hist)
        history_end(ch->hist);
}

/* One physical line without its newline (malloc'ed); NULL at end of input or
 * on Ctrl-C (g_interrupt set). */
static char *read_line(chat *ch)
{
    if (ch->el) {
        int count = 0;
        /* Raw mode before the prompt shows: el_gets prints the prompt first
         * and switches the terminal to raw mode only when it reads, so a
         * Ctrl-D typed as soon as ">>> " appears would meet the cooked line
         * discipline, become an EOF marker (a NUL byte once raw) and be lost:
         * the chat would wait forever. el_gets returns in cooked mode. */
        el_set(ch->el, EL_PREP_TERM, 1);
        const char *s = el_gets(ch->el, &count);
        if (g_interrupt || !s || count <= 0)
            return NULL;
        size_t n = strlen(s);
        while (n && (s[n - 1] == '\n' || s[n - 1] == '\r'))
            n--;
        if (n) {
            HistEvent ev;
            history(ch->hist, &ev, H_ENTER, s);
            if (ch->hist_path[0])
                history(ch->hist, &ev, H_SAVE, ch->hist_path);
        }
        return strndup(s, n);
    }
    char *line = NULL;
    size_t cap = 0;
    ssize_t n = getline(&line, &cap, stdin);
    if (n < 0 || g_interrupt) {
        clearerr(stdin);
        free(line);
        return NULL;
    }
    while (n && (line[n - 1] == '\n' || line[n - 1] == '\r'))
        line[--n] = '\0';
    return line;
}

typedef struct strbuf {
    char *p;
    size_t len, cap;
} strbuf;

static int sb_add(strbuf *b, const char *s, size_t n)
{
    if (b->len + n + 1 > b->cap) {
        size_t cap = (b->len + n + 1) * 2;
        char *p = realloc(b->p, cap);
        if (!p)
            return -1;
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
    return 0;
}

/* Reads one message (multi-line rules above) into *out. 1: got one,
 * 0: end of input, -1: Ctrl-C (dropped). *multi: it spanned several lines. */
static int read_message(chat *ch, strbuf *out, int *multi)
{
    out->len = 0;
    sb_add(out, "", 0);
    ch->continuation = 0;
    *multi = 0;
    int block = 0;       /* inside a """ block */
    size_t in_block = 0; /* lines of the block's text so far */
    for (;;) {
        char *line = read_line(ch);
        if (!line) {
            if (g_interrupt)
                return -1;
            return out->len || *multi ? 1 : 0;
        }
        size_t n = strlen(line);
        const char *s = line;
        int close = 0;
        if (!block && !*multi && n >= 3 && !strncmp(s, "\"\"\"", 3)) {
            block = *multi = 1;
            s += 3;
            n -= 3;
            if (!n) { /* the text starts on the next line */
                free(line);
                *multi = ch->continuation = 1;
                continue;
            }
        }
        if (block) {
            close = n >= 3 && !strcmp(s + n - 3, "\"\"\"");
            if (close)
                n -= 3;
            if (n || !close) {
                if (in_block++)
                    sb_add(out, "\n", 1);
                sb_add(out, s, n);
            }
            free(line);
            if (close)
                return 1;
            *multi = ch->continuation = 1;
            continue;
        }
        if (n && s[n - 1] == '\\') {
            sb_add(out, s, n - 1);
            sb_add(out, "\n", 1);
            *multi = ch->continuation = 1;
            free(line);
            continue;
        }
        sb_add(out, s, n);
        free(line);
        return 1;
    }
}

/* ---- main ---------------------------------------------------------------------------- */

static int parse_num(const char *flag, const char *s, double lo, double hi, double *out)
{
    char *end;
    errno = 0;
    double v = s ? strtod(s, &end) : 0;
    if (!s || end == s || *end || errno || !isfinite(v) || v < lo || v > hi) {
        fprintf(stderr, "greta chat: %s needs a number in %g..%g (got '%s')\n", flag, lo, hi, s ? s : "");
        return -1;
    }
    *out = v;
    return 0;
}

/* Says once when the model has no chat template (raw is used). */
static void template_note(const char *model)
{
    gguf_file *f = NULL;
    greta_tokenizer *tok = NULL;
    greta_error err = {0};
    char note[GRETA_CHAT_NOTE_MAX] = "";
    greta_chat_template t;
    if (gguf_open(model, &f, &err) == 0 && greta_tokenizer_create_from_gguf(f, &tok, &err) == 0 &&
        greta_chat_template_select(f, tok, NULL, &t, note, &err) == 0) {
        if (note[0])
            fprintf(stderr, "greta chat: %s\n", note);
    } else {
        fprintf(stderr, "greta chat: %s\n", err.msg);
    }
    greta_tokenizer_destroy(&tok);
    gguf_close(&f);
}

int cmd_chat(int argc, char **argv)
{
    chat ch;
    memset(&ch, 0, sizeof ch);
    ch.temp = 0.8f;
    ch.seed = greta_client_request_id();
    const char *instance = NULL, *model = NULL, *system = NULL;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        double d = 0;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            return 0;
        } else if (!strcmp(a, "--instance") && v) {
            instance = v;
        } else if (!strcmp(a, "-m") && v) {
            model = v;
        } else if (!strcmp(a, "--system") && v) {
            system = v;
        } else if (!strcmp(a, "--temp")) {
            if (parse_num(a, v, 0, 100, &d) < 0)
                return 2;
            ch.temp = (float)d;
        } else if (!strcmp(a, "--seed")) {
            if (parse_num(a, v, 0, 9007199254740992.0, &d) < 0 || d != floor(d)) {
                if (v && d != floor(d))
                    fprintf(stderr, "greta chat: --seed needs an integer (got '%s')\n", v);
                return 2;
            }
            ch.seed = (uint64_t)d;
        } else if (!strcmp(a, "-n")) {
            if (parse_num(a, v, 1, 1 << 30, &d) < 0 || d != floor(d)) {
                if (v && d != floor(d))
                    fprintf(stderr, "greta chat: -n needs an integer (got '%s')\n", v);
                return 2;
            }
            ch.n_predict = (int32_t)d;
        } else {
            fprintf(stderr, "greta chat: unexpected argument '%s'\n", a);
            usage(stderr);
            return 2;
        }
        i++;
    }
    if (system)
        ch.system = strdup(system);
    greta_error err = {0};
    greta_instance_opts io = {.name = instance, .model = model, .slots = 1, .log = stderr};
    if (greta_instance_open(&io, &ch.inst, &err) < 0 ||
        greta_client_open(greta_instance_name(ch.inst), &ch.c, &err) < 0) {
        fprintf(stderr, "greta chat: %s\n", err.msg);
        greta_instance_close(&ch.inst);
        free(ch.system);
        return 1;
    }
    template_note(greta_instance_model(ch.inst));
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_sigint; /* no SA_RESTART: a read at the prompt returns */
    sigaction(SIGINT, &sa, NULL);
    int status = 0;
    if (input_open(&ch) < 0) {
        fprintf(stderr, "greta chat: cannot set up line editing\n");
        status = 1;
    } else if (ch.el) {
        fprintf(stderr, "greta chat: model %s, instance %s%s. /help for commands, Ctrl-D or /quit to leave.\n",
                greta_instance_model(ch.inst), greta_instance_name(ch.inst),
                greta_instance_temporary(ch.inst) ? " (temporary)" : "");
    }
    strbuf msg = {0};
    while (status == 0) {
        g_interrupt = 0;
        int multi = 0;
        int r = read_message(&ch, &msg, &multi);
        if (r == 0) {
            if (ch.el)
                fputc('\n', stdout);
            break;
        }
        if (r < 0) {
            fputs("^C\n", stdout);
            fflush(stdout);
            continue;
        }
        const char *s = skip_ws(msg.p);
        if (!*s)
            continue;
        if (s[0] == '/' && !multi) {
            if (command(&ch, s))
                break;
            continue;
        }
        ask(&ch, msg.p, msg.len);
    }
    free(msg.p);
    input_close(&ch);
    clear_msgs(&ch);
    free(ch.msgs);
    free(ch.system);
    greta_client_close(&ch.c);
    greta_instance_close(&ch.inst);
    return status;
}
