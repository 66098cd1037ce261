/* batch_request.c - see batch_request.h. */
#include "batch_request.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "greta.pb-c.h"

#define SEED_MAX 9007199254740992.0 /* 2^53: integers a JSON double holds exactly */

void greta_batch_req_refuse(greta_batch_req *r, const char *code, const char *fmt, ...)
{
    r->bad = 1;
    snprintf(r->code, sizeof r->code, "%s", code);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(r->message, sizeof r->message, fmt, ap);
    va_end(ap);
}

uint64_t greta_batch_hash(const void *data, size_t len)
{
    const unsigned char *p = data;
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < len; i++) {
        h ^= p[i];
        h *= 1099511628211ull;
    }
    return h;
}

void greta_batch_req_free(greta_batch_req *r)
{
    if (!r)
        return;
    for (size_t i = 0; i < r->n_msgs; i++) {
        if (r->roles)
            free(r->roles[i]);
        if (r->contents)
            free(r->contents[i]);
    }
    free(r->roles);
    free(r->contents);
    free(r->custom_id);
    free(r->prompt);
    free(r->prompt_ids);
    for (size_t i = 0; i < r->n_stop; i++)
        free(r->stop[i]);
    free(r->model);
    memset(r, 0, sizeof *r);
}

/* ---- field checks ------------------------------------------------------------------ */

/* A short rendering of a JSON value for messages. */
static void show(const cJSON *v, char *buf, size_t n)
{
    char *s = cJSON_PrintUnformatted(v);
    if (!s) {
        snprintf(buf, n, "?");
        return;
    }
    if (strlen(s) > 40)
        snprintf(buf, n, "%.37s...", s);
    else
        snprintf(buf, n, "%s", s);
    free(s);
}

/* Number field in [lo, hi] (open at lo when lo_open); absent or null: def. */
static int get_number(greta_batch_req *r, const cJSON *body, const char *key, double lo, int lo_open, double hi,
                      double def, double *out)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(body, key);
    *out = def;
    if (!v || cJSON_IsNull(v))
        return 0;
    char got[64];
    show(v, got, sizeof got);
    if (!cJSON_IsNumber(v) || !isfinite(v->valuedouble) || v->valuedouble > hi ||
        (lo_open ? v->valuedouble <= lo : v->valuedouble < lo)) {
        if (lo_open)
            greta_batch_req_refuse(r, "invalid_request", "body.%s: must be a number in (%g, %g] (got %s)", key, lo, hi,
                                   got);
        else
            greta_batch_req_refuse(r, "invalid_request", "body.%s: must be a number in %g..%g (got %s)", key, lo, hi,
                                   got);
        return -1;
    }
    *out = v->valuedouble;
    return 0;
}

/* Integer field in [lo, hi]; absent or null: def. */
static int get_int(greta_batch_req *r, const cJSON *body, const char *key, double lo, double hi, double def,
                   double *out)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(body, key);
    *out = def;
    if (!v || cJSON_IsNull(v))
        return 0;
    char got[64];
    show(v, got, sizeof got);
    if (!cJSON_IsNumber(v) || !isfinite(v->valuedouble) || v->valuedouble != floor(v->valuedouble) ||
        v->valuedouble < lo || v->valuedouble > hi) {
        greta_batch_req_refuse(r, "invalid_request", "body.%s: must be an integer in %.0f..%.0f (got %s)", key, lo, hi,
                               got);
        return -1;
    }
    *out = v->valuedouble;
    return 0;
}

/* Fields we do not implement: accepted only with their neutral value. */
static int check_neutral(greta_batch_req *r, const cJSON *body)
{
    static const struct {
        const char *key;
        int kind; /* 0: number 0, 1: number 1, 2: false/null, 3: null */
    } fields[] = {
        {"n", 1}, {"best_of", 1}, {"stream", 2}, {"logprobs", 2}, {"echo", 2}, {"suffix", 3},
    };
    for (size_t i = 0; i < sizeof fields / sizeof fields[0]; i++) {
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(body, fields[i].key);
        if (!v || cJSON_IsNull(v))
            continue;
        int ok = 0;
        switch (fields[i].kind) {
        case 0:
            ok = cJSON_IsNumber(v) && v->valuedouble == 0.0;
            break;
        case 1:
            ok = cJSON_IsNumber(v) && v->valuedouble == 1.0;
            break;
        case 2:
            ok = cJSON_IsFalse(v);
            break;
        default:
            ok = 0;
        }
        if (!ok) {
            char got[64];
            show(v, got, sizeof got);
            static const char *const want[] = {"0", "1", "false", "null"};
            greta_batch_req_refuse(r, "invalid_request", "body.%s: not supported (only %s; got %s)", fields[i].key,
                                   want[fields[i].kind], got);
            return -1;
        }
    }
    return 0;
}

static int add_stop(greta_batch_req *r, const cJSON *v, const char *where)
{
    if (!cJSON_IsString(v)) {
        greta_batch_req_refuse(r, "invalid_request", "%s: must be a string", where);
        return -1;
    }
    size_t n = strlen(v->valuestring);
    if (n == 0 || n > GRETA_BATCH_MAX_STOP_LEN) {
        greta_batch_req_refuse(r, "invalid_request", "%s: must be 1..%d bytes (got %zu)", where,
                               GRETA_BATCH_MAX_STOP_LEN, n);
        return -1;
    }
    if (!(r->stop[r->n_stop] = strdup(v->valuestring))) {
        greta_batch_req_refuse(r, "invalid_request", "out of memory");
        return -1;
    }
    r->n_stop++;
    return 0;
}

static int get_stop(greta_batch_req *r, const cJSON *body)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(body, "stop");
    if (!v || cJSON_IsNull(v))
        return 0;
    if (cJSON_IsString(v))
        return add_stop(r, v, "body.stop");
    if (!cJSON_IsArray(v)) {
        greta_batch_req_refuse(r, "invalid_request", "body.stop: must be a string or a list of strings");
        return -1;
    }
    int n = cJSON_GetArraySize(v);
    if (n > GRETA_BATCH_MAX_STOP) {
        greta_batch_req_refuse(r, "invalid_request", "body.stop: at most %d strings (got %d)", GRETA_BATCH_MAX_STOP, n);
        return -1;
    }
    for (int i = 0; i < n; i++) {
        char where[32];
        snprintf(where, sizeof where, "body.stop[%d]", i);
        if (add_stop(r, cJSON_GetArrayItem(v, i), where) < 0)
            return -1;
    }
    return 0;
}

/* content: a string or a list of {type: "text", text: string} parts. */
static char *get_content(greta_batch_req *r, const cJSON *v, int i)
{
    if (cJSON_IsString(v))
        return strdup(v->valuestring);
    if (!cJSON_IsArray(v)) {
        greta_batch_req_refuse(r, "invalid_request",
                               "body.messages[%d].content: must be a string or a list of text "
                               "parts",
                               i);
        return NULL;
    }
    size_t len = 0;
    int n = cJSON_GetArraySize(v);
    for (int k = 0; k < n; k++) {
        const cJSON *p = cJSON_GetArrayItem(v, k);
        const cJSON *type = cJSON_GetObjectItemCaseSensitive(p, "type");
        const cJSON *text = cJSON_GetObjectItemCaseSensitive(p, "text");
        if (!cJSON_IsString(type) || strcmp(type->valuestring, "text") != 0 || !cJSON_IsString(text)) {
            greta_batch_req_refuse(r, "invalid_request",
                                   "body.messages[%d].content[%d]: only {\"type\": \"text\", \"text\": ...} parts are "
                                   "supported",
                                   i, k);
            return NULL;
        }
        len += strlen(text->valuestring);
    }
    char *s = malloc(len + 1);
    if (!s)
        return NULL;
    s[0] = '\0';
    for (int k = 0; k < n; k++)
        strcat(s, cJSON_GetObjectItemCaseSensitive(cJSON_GetArrayItem(v, k), "text")->valuestring);
    return s;
}

static int parse_chat(greta_batch_req *r, const cJSON *body)
{
    const cJSON *m = cJSON_GetObjectItemCaseSensitive(body, "messages");
    if (!m) {
        greta_batch_req_refuse(r, "invalid_request", "body.messages: missing");
        return -1;
    }
    int n = cJSON_IsArray(m) ? cJSON_GetArraySize(m) : -1;
    if (n < 1 || n > GRETA_BATCH_MAX_MSGS) {
        greta_batch_req_refuse(r, "invalid_request", "body.messages: must be a list of 1..%d messages",
                               GRETA_BATCH_MAX_MSGS);
        return -1;
    }
    r->roles = calloc((size_t)n, sizeof *r->roles);
    r->contents = calloc((size_t)n, sizeof *r->contents);
    if (!r->roles || !r->contents) {
        greta_batch_req_refuse(r, "invalid_request", "out of memory");
        return -1;
    }
    for (int i = 0; i < n; i++) {
        const cJSON *msg = cJSON_GetArrayItem(m, i);
        const cJSON *role = cJSON_GetObjectItemCaseSensitive(msg, "role");
        const cJSON *content = cJSON_GetObjectItemCaseSensitive(msg, "content");
        if (!cJSON_IsObject(msg)) {
            greta_batch_req_refuse(r, "invalid_request", "body.messages[%d]: must be an object", i);
            return -1;
        }
        const char *rs = cJSON_IsString(role) ? role->valuestring : NULL;
        const char *mapped = NULL;
        if (rs && (!strcmp(rs, "system") || !strcmp(rs, "developer")))
            mapped = "system";
        else if (rs && !strcmp(rs, "user"))
            mapped = "user";
        else if (rs && !strcmp(rs, "assistant"))
            mapped = "assistant";
        if (!mapped) {
            char got[64];
            if (role)
                show(role, got, sizeof got);
            else
                snprintf(got, sizeof got, "nothing");
            greta_batch_req_refuse(r, "invalid_request",
                                   "body.messages[%d].role: must be system, developer, user or assistant (got %s)", i,
                                   got);
            return -1;
        }
        if (!content) {
            greta_batch_req_refuse(r, "invalid_request", "body.messages[%d].content: missing", i);
            return -1;
        }
        r->roles[i] = strdup(mapped);
        r->contents[i] = get_content(r, content, i);
        r->n_msgs = (size_t)i + 1;
        if (!r->contents[i] || !r->roles[i]) {
            if (!r->bad)
                greta_batch_req_refuse(r, "invalid_request", "out of memory");
            return -1;
        }
    }
    return 0;
}

static int parse_completion(greta_batch_req *r, const cJSON *body)
{
    const cJSON *p = cJSON_GetObjectItemCaseSensitive(body, "prompt");
    if (!p) {
        greta_batch_req_refuse(r, "invalid_request", "body.prompt: missing");
        return -1;
    }
    if (cJSON_IsArray(p) && cJSON_GetArraySize(p) == 1 && cJSON_IsString(cJSON_GetArrayItem(p, 0)))
        p = cJSON_GetArrayItem(p, 0);
    if (cJSON_IsString(p)) {
        if (!(r->prompt = strdup(p->valuestring))) {
            greta_batch_req_refuse(r, "invalid_request", "out of memory");
            return -1;
        }
        return 0;
    }
    int n = cJSON_IsArray(p) ? cJSON_GetArraySize(p) : -1;
    if (n < 1) {
        greta_batch_req_refuse(r, "invalid_request",
                               "body.prompt: must be a string, a list of one string or a non-empty list of token ids");
        return -1;
    }
    r->prompt_ids = malloc((size_t)n * sizeof *r->prompt_ids);
    if (!r->prompt_ids) {
        greta_batch_req_refuse(r, "invalid_request", "out of memory");
        return -1;
    }
    for (int i = 0; i < n; i++) {
        const cJSON *v = cJSON_GetArrayItem(p, i);
        if (!cJSON_IsNumber(v) || v->valuedouble != floor(v->valuedouble) || v->valuedouble < 0 ||
            v->valuedouble > 2147483647.0) {
            greta_batch_req_refuse(r, "invalid_request",
                                   cJSON_IsString(v) ? "body.prompt[%d]: one prompt per line (a list of several "
                                                       "prompts is not supported)"
                                                     : "body.prompt[%d]: must be a token id (an integer >= 0)",
                                   i);
            return -1;
        }
        r->prompt_ids[i] = (int32_t)v->valuedouble;
    }
    r->n_prompt_ids = (size_t)n;
    return 0;
}

static int get_bias(greta_batch_req *r, const cJSON *body)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(body, "logit_bias");
    if (!v || cJSON_IsNull(v))
        return 0;
    if (!cJSON_IsObject(v)) {
        greta_batch_req_refuse(r, "invalid_request", "body.logit_bias: must be an object of token id -> bias");
        return -1;
    }
    if (cJSON_GetArraySize(v) > GRETA_BATCH_MAX_BIAS) {
        greta_batch_req_refuse(r, "invalid_request", "body.logit_bias: at most %d entries (got %d)",
                               GRETA_BATCH_MAX_BIAS, cJSON_GetArraySize(v));
        return -1;
    }
    const cJSON *e;
    cJSON_ArrayForEach(e, v)
    {
        const char *k = e->string;
        size_t n = strlen(k);
        int digits = n >= 1 && n <= 10;
        for (size_t i = 0; digits && i < n; i++)
            digits = k[i] >= '0' && k[i] <= '9';
        long long id = digits ? strtoll(k, NULL, 10) : -1;
        if (id < 0 || id > 2147483647) {
            greta_batch_req_refuse(r, "invalid_request", "body.logit_bias: key \"%.40s\" is not a token id", k);
            return -1;
        }
        if (!cJSON_IsNumber(e) || !(e->valuedouble >= -100.0 && e->valuedouble <= 100.0)) {
            greta_batch_req_refuse(r, "invalid_request", "body.logit_bias[\"%s\"]: must be a number in -100..100", k);
            return -1;
        }
        r->bias[r->n_bias].token = (int32_t)id;
        r->bias[r->n_bias].bias = (float)e->valuedouble;
        r->n_bias++;
    }
    return 0;
}

static int parse_obj(greta_batch_req *r, const cJSON *root)
{
    if (!cJSON_IsObject(root)) {
        greta_batch_req_refuse(r, "invalid_request", "the line must be a JSON object");
        return -1;
    }
    const cJSON *id = cJSON_GetObjectItemCaseSensitive(root, "custom_id");
    if (!id) {
        greta_batch_req_refuse(r, "invalid_request", "custom_id: missing");
        return -1;
    }
    if (!cJSON_IsString(id) || !id->valuestring[0] || strlen(id->valuestring) > GRETA_BATCH_MAX_ID) {
        greta_batch_req_refuse(r, "invalid_request", "custom_id: must be a string of 1..%d bytes", GRETA_BATCH_MAX_ID);
        return -1;
    }
    if (!(r->custom_id = strdup(id->valuestring))) {
        greta_batch_req_refuse(r, "invalid_request", "out of memory");
        return -1;
    }
    const cJSON *method = cJSON_GetObjectItemCaseSensitive(root, "method");
    if (!cJSON_IsString(method) || strcmp(method->valuestring, "POST") != 0) {
        greta_batch_req_refuse(r, "invalid_request", "method: must be \"POST\"");
        return -1;
    }
    const cJSON *url = cJSON_GetObjectItemCaseSensitive(root, "url");
    if (!cJSON_IsString(url)) {
        greta_batch_req_refuse(r, "invalid_request", "url: missing (use /v1/chat/completions or /v1/completions)");
        return -1;
    }
    if (!strcmp(url->valuestring, "/v1/chat/completions")) {
        r->kind = GRETA_BATCH_CHAT;
    } else if (!strcmp(url->valuestring, "/v1/completions")) {
        r->kind = GRETA_BATCH_COMPLETION;
    } else {
        char got[64];
        show(url, got, sizeof got);
        greta_batch_req_refuse(r, "unsupported_url",
                               "url: %s is not supported (use /v1/chat/completions or "
                               "/v1/completions)",
                               got);
        return -1;
    }
    const cJSON *body = cJSON_GetObjectItemCaseSensitive(root, "body");
    if (!cJSON_IsObject(body)) {
        greta_batch_req_refuse(r, "invalid_request", "body: %s", body ? "must be an object" : "missing");
        return -1;
    }
    if ((r->kind == GRETA_BATCH_CHAT ? parse_chat(r, body) : parse_completion(r, body)) < 0)
        return -1;
    double d;
    const char *mt = r->kind == GRETA_BATCH_CHAT && cJSON_GetObjectItemCaseSensitive(body, "max_completion_tokens")
                         ? "max_completion_tokens"
                         : "max_tokens";
    if (get_int(r, body, mt, 1, 1 << 30, r->kind == GRETA_BATCH_CHAT ? 0 : 16, &d) < 0)
        return -1;
    r->max_tokens = (int32_t)d;
    if (get_number(r, body, "temperature", 0, 0, 2, 1, &d) < 0)
        return -1;
    r->temperature = (float)d;
    if (get_number(r, body, "top_p", 0, 1, 1, 1, &d) < 0)
        return -1;
    r->top_p = (float)d;
    r->seed = greta_batch_hash(r->custom_id, strlen(r->custom_id));
    const cJSON *seed = cJSON_GetObjectItemCaseSensitive(body, "seed");
    if (seed && !cJSON_IsNull(seed)) {
        if (get_int(r, body, "seed", -SEED_MAX, SEED_MAX, 0, &d) < 0)
            return -1;
        r->seed = (uint64_t)(int64_t)d;
    }
    if (get_number(r, body, "frequency_penalty", -2, 0, 2, 0, &d) < 0)
        return -1;
    r->frequency_penalty = (float)d;
    if (get_number(r, body, "presence_penalty", -2, 0, 2, 0, &d) < 0)
        return -1;
    r->presence_penalty = (float)d;
    if (get_stop(r, body) < 0 || get_bias(r, body) < 0 || check_neutral(r, body) < 0)
        return -1;
    const cJSON *model = cJSON_GetObjectItemCaseSensitive(body, "model");
    if (cJSON_IsString(model) && !(r->model = strdup(model->valuestring))) {
        greta_batch_req_refuse(r, "invalid_request", "out of memory");
        return -1;
    }
    return 0;
}

int greta_batch_req_parse(const char *text, size_t len, size_t line, greta_batch_req *r)
{
    memset(r, 0, sizeof *r);
    r->line = line;
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts(text, len, &end, 0);
    if (!root) {
        size_t off = end && end >= text ? (size_t)(end - text) : 0;
        greta_batch_req_refuse(r, "invalid_json", "line %zu: not valid JSON (at byte %zu of the line)", line, off);
        return -1;
    }
    while (end && end < text + len && (*end == ' ' || *end == '\t' || *end == '\r'))
        end++;
    int rc;
    if (end && end < text + len) {
        greta_batch_req_refuse(r, "invalid_json", "line %zu: text after the JSON value (at byte %zu of the line)", line,
                               (size_t)(end - text));
        rc = -1;
    } else {
        rc = parse_obj(r, root);
    }
    cJSON_Delete(root);
    return rc < 0 ? -1 : 0;
}

/* ---- output ------------------------------------------------------------------------ */

char *greta_batch_utf8_clean(const char *s, size_t len)
{
    char *out = malloc(len * 3 + 1); /* each bad byte becomes 3 bytes */
    if (!out)
        return NULL;
    const unsigned char *p = (const unsigned char *)s;
    size_t o = 0, i = 0;
    while (i < len) {
        unsigned c = p[i];
        size_t n = 0;
        uint32_t cp = 0, min = 0;
        if (c >= 0x01 && c < 0x80) {
            out[o++] = (char)c;
            i++;
            continue;
        } else if (c >= 0xC2 && c <= 0xDF) {
            n = 2, cp = c & 0x1F, min = 0x80;
        } else if (c >= 0xE0 && c <= 0xEF) {
            n = 3, cp = c & 0x0F, min = 0x800;
        } else if (c >= 0xF0 && c <= 0xF4) {
            n = 4, cp = c & 0x07, min = 0x10000;
        }
        int ok = n > 0 && i + n <= len;
        for (size_t k = 1; ok && k < n; k++) {
            if ((p[i + k] & 0xC0) != 0x80)
                ok = 0;
            else
                cp = (cp << 6) | (p[i + k] & 0x3F);
        }
        if (ok && (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)))
            ok = 0;
        if (ok) {
            memcpy(out + o, p + i, n);
            o += n;
            i += n;
        } else {
            memcpy(out + o, "\xEF\xBF\xBD", 3);
            o += 3;
            i++;
        }
    }
    out[o] = '\0';
    return out;
}

static const char *finish_name(int reason)
{
    switch (reason) {
    case GRETA__FINISH_REASON__FINISH_LENGTH:
    case GRETA__FINISH_REASON__FINISH_CONTEXT:
        return "length";
    default:
        return "stop";
    }
}

static char *print_line(cJSON *root)
{
    char *s = root ? cJSON_PrintUnformatted(root) : NULL;
    cJSON_Delete(root);
    return s;
}

char *greta_batch_format_response(const greta_batch_req *r, const greta_batch_result *res)
{
    char rid[17], id[48];
    snprintf(rid, sizeof rid, "%016llx", (unsigned long long)res->request_id);
    char *text = greta_batch_utf8_clean(res->text ? res->text : "", res->text ? res->len : 0);
    if (!text)
        return NULL;
    cJSON *root = cJSON_CreateObject();
    snprintf(id, sizeof id, "batch_req_%s", rid);
    cJSON_AddStringToObject(root, "id", id);
    char *cid = greta_batch_utf8_clean(r->custom_id, strlen(r->custom_id));
    char *model = r->model ? greta_batch_utf8_clean(r->model, strlen(r->model)) : NULL;
    cJSON_AddStringToObject(root, "custom_id", cid ? cid : "");
    cJSON *resp = cJSON_AddObjectToObject(root, "response");
    cJSON_AddNumberToObject(resp, "status_code", 200);
    cJSON_AddStringToObject(resp, "request_id", rid);
    cJSON *body = cJSON_AddObjectToObject(resp, "body");
    int chat = r->kind == GRETA_BATCH_CHAT;
    snprintf(id, sizeof id, "%s%s", chat ? "chatcmpl-" : "cmpl-", rid);
    cJSON_AddStringToObject(body, "id", id);
    cJSON_AddStringToObject(body, "object", chat ? "chat.completion" : "text_completion");
    cJSON_AddNumberToObject(body, "created", (double)res->created);
    cJSON_AddStringToObject(body, "model", model ? model : (res->model ? res->model : ""));
    cJSON *choices = cJSON_AddArrayToObject(body, "choices");
    cJSON *c = cJSON_CreateObject();
    cJSON_AddItemToArray(choices, c);
    if (chat) {
        cJSON_AddNumberToObject(c, "index", 0);
        cJSON *msg = cJSON_AddObjectToObject(c, "message");
        cJSON_AddStringToObject(msg, "role", "assistant");
        cJSON_AddStringToObject(msg, "content", text);
    } else {
        cJSON_AddStringToObject(c, "text", text);
        cJSON_AddNumberToObject(c, "index", 0);
    }
    cJSON_AddNullToObject(c, "logprobs");
    cJSON_AddStringToObject(c, "finish_reason", finish_name(res->finish_reason));
    cJSON *usage = cJSON_AddObjectToObject(body, "usage");
    cJSON_AddNumberToObject(usage, "prompt_tokens", res->prompt_tokens);
    cJSON_AddNumberToObject(usage, "completion_tokens", res->completion_tokens);
    cJSON_AddNumberToObject(usage, "total_tokens", (double)res->prompt_tokens + res->completion_tokens);
    cJSON_AddNullToObject(root, "error");
    free(text);
    free(cid);
    free(model);
    return print_line(root);
}

char *greta_batch_format_error(const greta_batch_req *r)
{
    char id[48];
    snprintf(id, sizeof id, "batch_req_line%zu", r->line);
    cJSON *root = cJSON_CreateObject();
    cJSON_AddStringToObject(root, "id", id);
    if (r->custom_id) {
        char *cid = greta_batch_utf8_clean(r->custom_id, strlen(r->custom_id));
        cJSON_AddStringToObject(root, "custom_id", cid ? cid : "");
        free(cid);
    } else {
        cJSON_AddNullToObject(root, "custom_id");
    }
    cJSON_AddNullToObject(root, "response");
    cJSON *e = cJSON_AddObjectToObject(root, "error");
    cJSON_AddStringToObject(e, "code", r->code);
    char *msg = greta_batch_utf8_clean(r->message, strlen(r->message));
    cJSON_AddStringToObject(e, "message", msg ? msg : "");
    free(msg);
    cJSON_AddNumberToObject(e, "line", (double)r->line);
    return print_line(root);
}
