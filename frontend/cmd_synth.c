/* cmd_synth.c - `greta synth`: writes a Llama model with random weights in a
 * quantized format (kernels/cpu/synth.h).
 *
 *   greta synth --preset NAME --type TYPE --vocab VOCAB.gguf -o FILE
 *               [--seed N] [--dry-run] [-t N]
 *
 * Exit status: 0 written (or sized); 1 the vocab cannot be read or the file
 * cannot be written; 2 usage.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "commands.h"
#include "kernels/cpu/quant_mix.h"
#include "kernels/cpu/synth.h"
#include "kernels/cpu/threads.h"

static void usage(FILE *out)
{
    fprintf(out, "usage: greta synth --preset NAME --type TYPE --vocab VOCAB.gguf -o FILE\n"
                 "                   [--seed N] [--dry-run] [-t N]\n"
                 "  Writes a Llama model of a preset's shapes with random weights (std %.2f)\n"
                 "  generated directly in TYPE, and the tokenizer of VOCAB.gguf (its token\n"
                 "  count is the vocab size). Norm weights are 1.0.\n"
                 "  --preset NAME  ", (double)GRETA_SYNTH_STD);
    for (unsigned i = 0; greta_synth_preset_at(i); i++)
        fprintf(out, "%s%s", i ? ", " : "", greta_synth_preset_at(i)->name);
    fprintf(out, "\n  --type TYPE    ");
    for (unsigned i = 0; greta_ftype_at(i); i++)
        fprintf(out, "%s%s", i ? ", " : "", greta_ftype_at(i)->name);
    fprintf(out, "\n"
                 "  --seed N       random seed (default 1); same seed, same bytes\n"
                 "  --dry-run      print the exact file size, write nothing (-o not needed)\n"
                 "  -t N           threads (default: all cores); the output is the same\n"
                 "Exit status: 0 ok, 1 vocab/output error, 2 usage.\n");
}

static int parse_u64(const char *s, uint64_t *out)
{
    char *end;
    errno = 0;
    if (*s == '-' || *s == '\0')
        return -1;
    unsigned long long v = strtoull(s, &end, 0);
    if (errno || *end != '\0')
        return -1;
    *out = v;
    return 0;
}

int cmd_synth(int argc, char **argv)
{
    greta_synth_opts o = {.seed = 1, .n_threads = greta_quant_threads_default(), .log = stdout};
    const char *preset = NULL, *type = NULL;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            return 0;
        } else if (!strcmp(a, "--dry-run")) {
            o.dry_run = true;
            continue;
        }
        if (strcmp(a, "--preset") && strcmp(a, "--type") && strcmp(a, "--vocab") && strcmp(a, "-o") &&
            strcmp(a, "--output") && strcmp(a, "--seed") && strcmp(a, "-t") && strcmp(a, "--threads")) {
            fprintf(stderr, "greta synth: unknown argument '%s'\n", a);
            usage(stderr);
            return 2;
        }
        if (!v) {
            fprintf(stderr, "greta synth: %s needs a value\n", a);
            return 2;
        }
        i++;
        if (!strcmp(a, "--preset")) {
            preset = v;
        } else if (!strcmp(a, "--type")) {
            type = v;
        } else if (!strcmp(a, "--vocab")) {
            o.vocab_path = v;
        } else if (!strcmp(a, "-o") || !strcmp(a, "--output")) {
            o.out_path = v;
        } else if (!strcmp(a, "--seed")) {
            if (parse_u64(v, &o.seed) != 0) {
                fprintf(stderr, "greta synth: --seed '%s' is not an unsigned integer\n", v);
                return 2;
            }
        } else if (!(o.n_threads = greta_quant_threads_parse(v))) {
            fprintf(stderr, "greta synth: %s '%s' is not a thread count in 1..%d\n", a, v,
                    GRETA_THREADS_MAX);
            return 2;
        }
    }
    if (!preset || !type || !o.vocab_path || (!o.out_path && !o.dry_run)) {
        fprintf(stderr, "greta synth: --preset, --type, --vocab and -o are required "
                        "(-o not with --dry-run)\n");
        usage(stderr);
        return 2;
    }
    if (!(o.preset = greta_synth_preset_find(preset))) {
        fprintf(stderr, "greta synth: unknown preset '%s' (one of:", preset);
        for (unsigned i = 0; greta_synth_preset_at(i); i++)
            fprintf(stderr, " %s", greta_synth_preset_at(i)->name);
        fprintf(stderr, ")\n");
        return 2;
    }
    if (!(o.ftype = greta_ftype_find(type))) {
        fprintf(stderr, "greta synth: unknown type '%s' (one of:", type);
        for (unsigned i = 0; greta_ftype_at(i); i++)
            fprintf(stderr, " %s", greta_ftype_at(i)->name);
        fprintf(stderr, ")\n");
        return 2;
    }
    greta_error err = {0};
    greta_synth_result r;
    if (greta_synth_model(&o, &r, &err) != 0) {
        fprintf(stderr, "greta synth: %s\n", err.msg);
        return 1;
    }
    if (!o.dry_run)
        printf("synth: wrote %s (%" PRIu64 " bytes, %d threads)\n", o.out_path, r.file_size,
               o.n_threads);
    return 0;
}
