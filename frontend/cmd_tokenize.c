/* cmd_tokenize.c - `greta tokenize`: text to token ids and pieces, or ids back
 * to text, with a model's (or vocab-only GGUF's) tokenizer.
 *
 *   greta tokenize -m MODEL [--ids] [--json] [--special] [--no-bos] TEXT|-
 *   greta tokenize -m MODEL --decode [--json] [--special] ID...
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "commands.h"
#include "common/gguf.h"
#include "tokenizer/tokenizer.h"

static void usage(FILE *out)
{
    fprintf(out,
            "usage: greta tokenize -m MODEL [--ids] [--json] [--special] [--no-bos] TEXT|-\n"
            "       greta tokenize -m MODEL --decode [--json] [--special] ID...\n"
            "\n"
            "Encodes TEXT ('-' reads it from stdin, bytes as they are) with the model's\n"
            "tokenizer and prints one line per token: id, a tab, the piece.\n"
            "  -m, --model PATH  GGUF file with a tokenizer (a model or a vocab-only file)\n"
            "  --ids             print only the ids, space-separated, on one line\n"
            "  --json            print {\"ids\": [...], \"pieces\": [...]} (decode: {\"text\": ...})\n"
            "  --special         encode: control/user-defined token texts such as <s> become\n"
            "                    their ids; decode: write control tokens' text\n"
            "  --no-bos          encode: do not add BOS (default: the model's add_bos_token)\n"
            "  --decode          the arguments are ids; print the text they decode to\n");
}

/* Writes s as a JSON string; invalid UTF-8 bytes become U+FFFD. */
static void json_str(FILE *out, const char *s, size_t n)
{
    const unsigned char *u = (const unsigned char *)s;
    fputc('"', out);
    for (size_t i = 0; i < n;) {
        unsigned c = u[i];
        if (c == '"' || c == '\\') {
            fprintf(out, "\\%c", c);
            i++;
        } else if (c == '\n') {
            fputs("\\n", out);
            i++;
        } else if (c == '\t') {
            fputs("\\t", out);
            i++;
        } else if (c == '\r') {
            fputs("\\r", out);
            i++;
        } else if (c < 0x20 || c == 0x7F) {
            fprintf(out, "\\u%04x", c);
            i++;
        } else if (c < 0x80) {
            fputc((int)c, out);
            i++;
        } else {
            size_t k = c >= 0xC2 && c < 0xE0 ? 2 : c >= 0xE0 && c < 0xF0 ? 3 : c >= 0xF0 && c < 0xF5 ? 4 : 0;
            bool ok = k > 0 && i + k <= n;
            for (size_t j = 1; ok && j < k; j++)
                ok = (u[i + j] & 0xC0) == 0x80;
            if (ok && k == 3)
                ok = !(c == 0xE0 && u[i + 1] < 0xA0) && !(c == 0xED && u[i + 1] > 0x9F);
            if (ok && k == 4)
                ok = !(c == 0xF0 && u[i + 1] < 0x90) && !(c == 0xF4 && u[i + 1] > 0x8F);
            if (ok) {
                fwrite(u + i, 1, k, out);
                i += k;
            } else {
                fputs("\\ufffd", out);
                i++;
            }
        }
    }
    fputc('"', out);
}

/* Reads all of stdin, at most limit + 1 bytes (so an over-long input still
 * reaches the tokenizer's limit check). */
static char *read_stdin(size_t limit, size_t *len)
{
    size_t cap = 4096, n = 0;
    char *buf = malloc(cap);
    while (buf) {
        if (n == cap) {
            if (cap > limit)
                break;
            char *q = realloc(buf, cap * 2);
            if (!q) {
                free(buf);
                return NULL;
            }
            buf = q;
            cap *= 2;
        }
        size_t k = fread(buf + n, 1, cap - n, stdin);
        n += k;
        if (k == 0)
            break;
    }
    if (buf && ferror(stdin)) {
        free(buf);
        return NULL;
    }
    *len = n;
    return buf;
}

static int do_encode(const greta_tokenizer *tok, const char *text, size_t len, bool ids_only,
                     bool json, bool special, bool no_bos)
{
    uint32_t flags = greta_tokenizer_default_flags(tok);
    if (no_bos)
        flags &= ~(uint32_t)GRETA_ENCODE_ADD_BOS;
    if (special)
        flags |= GRETA_ENCODE_PARSE_SPECIAL;
    greta_error err = {0};
    size_t n = 0, max = len <= greta_tokenizer_max_input(tok) ? greta_tokenizer_max_tokens(len) : 0;
    int32_t *ids = malloc((max ? max : 1) * sizeof *ids);
    if (!ids) {
        fprintf(stderr, "greta tokenize: out of memory\n");
        return 1;
    }
    if (greta_tokenizer_encode(tok, text, len, flags, ids, max, &n, &err)) {
        fprintf(stderr, "greta tokenize: %s\n", err.msg);
        free(ids);
        return 1;
    }
    if (json) {
        printf("{\"ids\": [");
        for (size_t i = 0; i < n; i++)
            printf("%s%d", i ? ", " : "", (int)ids[i]);
        printf("], \"pieces\": [");
        for (size_t i = 0; i < n; i++) {
            size_t pl;
            const char *p = greta_tokenizer_token_piece(tok, ids[i], &pl);
            if (i)
                printf(", ");
            json_str(stdout, p, pl);
        }
        printf("]}\n");
    } else if (ids_only) {
        for (size_t i = 0; i < n; i++)
            printf("%s%d", i ? " " : "", (int)ids[i]);
        printf("\n");
    } else {
        for (size_t i = 0; i < n; i++) {
            size_t pl;
            const char *p = greta_tokenizer_token_piece(tok, ids[i], &pl);
            printf("%d\t%.*s\n", (int)ids[i], (int)pl, p);
        }
    }
    free(ids);
    return 0;
}

static int do_decode(const greta_tokenizer *tok, char **args, int n_args, bool json, bool special)
{
    if (n_args == 0) {
        fprintf(stderr, "greta tokenize: --decode needs at least one id\n");
        return 2;
    }
    int32_t *ids = malloc((size_t)n_args * sizeof *ids);
    if (!ids)
        return 1;
    for (int i = 0; i < n_args; i++) {
        char *end;
        errno = 0;
        long v = strtol(args[i], &end, 10);
        if (errno || end == args[i] || *end || v < 0 || v >= greta_tokenizer_vocab_size(tok)) {
            fprintf(stderr, "greta tokenize: '%s' is not a token id (0..%d)\n", args[i],
                    (int)greta_tokenizer_vocab_size(tok) - 1);
            free(ids);
            return 1;
        }
        ids[i] = (int32_t)v;
    }
    greta_error err = {0};
    uint32_t flags = special ? GRETA_DECODE_SPECIAL : 0;
    size_t len = 0;
    greta_tokenizer_decode(tok, ids, (size_t)n_args, flags, NULL, 0, &len, &err);
    char *text = malloc(len + 1);
    int rc = text ? greta_tokenizer_decode(tok, ids, (size_t)n_args, flags, text, len + 1, &len, &err)
                  : GRETA_ERR_NOMEM;
    if (rc) {
        fprintf(stderr, "greta tokenize: %s\n", text ? err.msg : "out of memory");
    } else if (json) {
        printf("{\"text\": ");
        json_str(stdout, text, len);
        printf("}\n");
    } else {
        fwrite(text, 1, len, stdout);
        printf("\n");
    }
    free(text);
    free(ids);
    return rc ? 1 : 0;
}

int cmd_tokenize(int argc, char **argv)
{
    const char *model = NULL;
    bool ids_only = false, json = false, special = false, no_bos = false, decode = false;
    char **pos = calloc((size_t)argc + 1, sizeof *pos);
    int n_pos = 0;
    if (!pos)
        return 1;
    bool opts_done = false;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (opts_done || a[0] != '-' || !strcmp(a, "-")) {
            pos[n_pos++] = argv[i];
        } else if (!strcmp(a, "--")) {
            opts_done = true;
        } else if (!strcmp(a, "-m") || !strcmp(a, "--model")) {
            if (i + 1 >= argc) {
                fprintf(stderr, "greta tokenize: %s needs a path\n", a);
                free(pos);
                return 2;
            }
            model = argv[++i];
        } else if (!strcmp(a, "--ids")) {
            ids_only = true;
        } else if (!strcmp(a, "--json")) {
            json = true;
        } else if (!strcmp(a, "--special")) {
            special = true;
        } else if (!strcmp(a, "--no-bos")) {
            no_bos = true;
        } else if (!strcmp(a, "--decode")) {
            decode = true;
        } else if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            free(pos);
            return 0;
        } else {
            fprintf(stderr, "greta tokenize: unknown option '%s'\n", a);
            usage(stderr);
            free(pos);
            return 2;
        }
    }
    int status = 2;
    if (!model) {
        fprintf(stderr, "greta tokenize: -m MODEL is required\n");
        usage(stderr);
    } else if (!decode && n_pos != 1) {
        fprintf(stderr, "greta tokenize: give one TEXT argument (or '-' for stdin), got %d\n", n_pos);
        usage(stderr);
    } else if (decode && (ids_only || no_bos)) {
        fprintf(stderr, "greta tokenize: --ids and --no-bos apply to encoding, not --decode\n");
    } else {
        greta_error err = {0};
        gguf_file *f = NULL;
        greta_tokenizer *tok = NULL;
        status = 1;
        if (gguf_open(model, &f, &err)) {
            fprintf(stderr, "greta tokenize: %s\n", err.msg);
        } else if (greta_tokenizer_create_from_gguf(f, &tok, &err)) {
            fprintf(stderr, "greta tokenize: %s: %s\n", model, err.msg);
        } else if (decode) {
            status = do_decode(tok, pos, n_pos, json, special);
        } else if (!strcmp(pos[0], "-")) {
            size_t len = 0;
            char *text = read_stdin(greta_tokenizer_max_input(tok), &len);
            if (!text)
                fprintf(stderr, "greta tokenize: cannot read stdin\n");
            else if (len > greta_tokenizer_max_input(tok))
                fprintf(stderr, "greta tokenize: stdin has more than %zu bytes, the tokenizer's "
                                "input limit\n", greta_tokenizer_max_input(tok));
            else
                status = do_encode(tok, text, len, ids_only, json, special, no_bos);
            free(text);
        } else {
            status = do_encode(tok, pos[0], strlen(pos[0]), ids_only, json, special, no_bos);
        }
        greta_tokenizer_destroy(&tok);
        gguf_close(&f);
    }
    free(pos);
    return status;
}
