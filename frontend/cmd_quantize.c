/* cmd_quantize.c - `greta quantize [-t N] IN OUT TYPE`: converts an F32/F16/
 * BF16 GGUF model into a quantized one (kernels/cpu/quantize_model.h does
 * the work; the type rules are in kernels/cpu/quant_mix.h).
 *
 * Exit status: 0 written; 1 the input cannot be read or quantized, or the
 * output cannot be written; 2 usage (arguments, unknown TYPE, bad -t).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "commands.h"
#include "kernels/cpu/quant_mix.h"
#include "kernels/cpu/quantize_model.h"
#include "kernels/cpu/threads.h"

static void usage(FILE *out)
{
    fprintf(out, "usage: greta quantize [-t N] IN.gguf OUT.gguf TYPE\n"
                 "  Quantizes a model whose tensors are F32, F16 or BF16.\n"
                 "  TYPE:");
    for (unsigned i = 0; greta_ftype_at(i); i++)
        fprintf(out, " %s", greta_ftype_at(i)->name);
    fprintf(out, "\n"
                 "  _M types use Q6_K for output.weight and for attn_v/ffn_down of some layers;\n"
                 "  Q4_K_S uses Q6_K for output.weight and Q5_K for early attn_v/ffn_down;\n"
                 "  1-D tensors stay F32; rows that a type's block does not divide fall back\n"
                 "  to Q8_0 (multiple of 32) or F16.\n"
                 "  -t N, --threads N   threads (default: all cores); the output is the same\n"
                 "Exit status: 0 ok, 1 input/output error, 2 usage.\n");
}

int cmd_quantize(int argc, char **argv)
{
    const char *pos[3];
    int n_pos = 0, threads = greta_quant_threads_default();
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            return 0;
        } else if (!strcmp(a, "-t") || !strcmp(a, "--threads")) {
            if (i + 1 >= argc || !(threads = greta_quant_threads_parse(argv[++i]))) {
                fprintf(stderr, "greta quantize: %s needs a thread count in 1..%d\n", a,
                        GRETA_THREADS_MAX);
                return 2;
            }
        } else if (a[0] == '-' && a[1] != '\0') {
            fprintf(stderr, "greta quantize: unknown option '%s'\n", a);
            usage(stderr);
            return 2;
        } else if (n_pos < 3) {
            pos[n_pos++] = a;
        } else {
            fprintf(stderr, "greta quantize: unexpected argument '%s'\n", a);
            usage(stderr);
            return 2;
        }
    }
    if (n_pos != 3) {
        fprintf(stderr, "greta quantize: expected IN OUT TYPE\n");
        usage(stderr);
        return 2;
    }
    const greta_ftype *ft = greta_ftype_find(pos[2]);
    if (!ft) {
        fprintf(stderr, "greta quantize: unknown TYPE '%s' (one of:", pos[2]);
        for (unsigned i = 0; greta_ftype_at(i); i++)
            fprintf(stderr, " %s", greta_ftype_at(i)->name);
        fprintf(stderr, ")\n");
        return 2;
    }
    greta_error err = {0};
    if (greta_quantize_file(pos[0], pos[1], ft, threads, stdout, NULL, &err) != 0) {
        fprintf(stderr, "greta quantize: %s\n", err.msg);
        return 1;
    }
    return 0;
}
