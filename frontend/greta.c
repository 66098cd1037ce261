/* greta.c - entry point of the `greta` command: dispatches to a subcommand. */
#include <stdio.h>
#include <string.h>

#include "commands.h"

#ifndef GRETA_VERSION
#define GRETA_VERSION "0.1.0"
#endif

static const greta_command commands[] = {
    {"inspect", cmd_inspect, "show a GGUF file's metadata, tensors and model config"},
    {"tokenize", cmd_tokenize, "text to token ids and pieces, or ids back to text (--decode)"},
    {"quantize", cmd_quantize, "quantize an F32/F16/BF16 model (Q8_0, Q4_0, Q6_K, Q4_K_S/M, Q5_K_M)"},
    {"synth", cmd_synth, "write a random-weight model of Llama-2 shapes in a quantized format"},
    {"run", cmd_run, "generate text from a prompt through an instance (or --inproc), streaming"},
    {"bench", cmd_bench, "measure prompt and generation speed (like llama-bench), JSON results"},
    {"parity", cmd_parity, "compare the GPU backend with the CPU reference, position by position"},
    {"drift", cmd_drift, "FP16-vs-FP32 stability report: GPU vs CPU reference over long generations"},
    {"up", cmd_up, "start the pipeline stages of an instance under a background supervisor"},
    {"down", cmd_down, "stop an instance and remove its segment and sockets"},
    {"status", cmd_status, "show an instance's supervisor and stages"},
    {"restart", cmd_restart, "replace one stage of a running instance"},
    {"trace", cmd_trace, "merge per-stage Chrome traces and print a per-stage table"},
    {"chat", cmd_chat, "chat with the model of an instance (line editing, history, /commands)"},
    {"batch", cmd_batch, "run an OpenAI Batch API .jsonl file, many requests at once, resumable"},
};

static void usage(FILE *out)
{
    fprintf(out, "usage: greta COMMAND [ARGS...]\n\ncommands:\n");
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        fprintf(out, "  %-10s %s\n", commands[i].name, commands[i].summary);
    fprintf(out, "\n'greta COMMAND --help' shows a command's options.\n");
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    const char *name = argv[1];
    if (!strcmp(name, "-h") || !strcmp(name, "--help") || !strcmp(name, "help")) {
        usage(stdout);
        return 0;
    }
    if (!strcmp(name, "--version") || !strcmp(name, "version")) {
        printf("greta %s\n", GRETA_VERSION);
        return 0;
    }
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        if (!strcmp(name, commands[i].name))
            return commands[i].fn(argc - 1, argv + 1);
    fprintf(stderr, "greta: unknown command '%s'\n\n", name);
    usage(stderr);
    return 2;
}
