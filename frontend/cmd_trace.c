/* cmd_trace.c - `greta trace DIR [-o FILE]`: merge the per-stage Chrome
 * traces of DIR into one file (default DIR/merged.json, opens in Perfetto)
 * and print a per-stage table of span durations. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "commands.h"
#include "common/trace.h"

static void usage(FILE *f)
{
    fprintf(f, "usage: greta trace DIR [-o FILE]\n"
               "  merges DIR/*.trace.json (written by --trace DIR or GRETA_TRACE=DIR) into\n"
               "  FILE (default DIR/merged.json) and prints count, total, mean, p50 and p99\n"
               "  of every span per stage.\n");
}

int cmd_trace(int argc, char **argv)
{
    const char *dir = NULL, *out = NULL;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
            usage(stdout);
            return 0;
        } else if (!strcmp(argv[i], "-o") && i + 1 < argc) {
            out = argv[++i];
        } else if (argv[i][0] != '-' && !dir) {
            dir = argv[i];
        } else {
            fprintf(stderr, "greta trace: unexpected argument '%s'\n", argv[i]);
            usage(stderr);
            return 2;
        }
    }
    if (!dir) {
        usage(stderr);
        return 2;
    }
    char def[4096];
    if (!out) {
        snprintf(def, sizeof def, "%s/merged.json", dir);
        out = def;
    }
    greta_trace_stat *st = NULL;
    size_t n = 0, skipped = 0;
    greta_error err = {0};
    if (greta_trace_merge(dir, out, &st, &n, &skipped, &err) < 0) {
        fprintf(stderr, "greta trace: %s\n", err.msg);
        return 1;
    }
    greta_trace_print_table(stdout, st, n);
    printf("merged trace: %s\n", out);
    if (skipped)
        printf("skipped %zu torn line(s) (a stage was killed while writing)\n", skipped);
    free(st);
    return 0;
}
