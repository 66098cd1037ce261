/* commands.h - the `greta` subcommands. Each lives in frontend/cmd_<name>.c
 * and returns a process exit status (0 ok, 1 runtime failure, 2 usage). */
#ifndef GRETA_COMMANDS_H
#define GRETA_COMMANDS_H

typedef struct greta_command {
    const char *name;
    int (*fn)(int argc, char **argv); /* argv[0] is the command name */
    const char *summary;
} greta_command;

/* commands (keep in the order of the table in greta.c) */
int cmd_inspect(int argc, char **argv);
int cmd_tokenize(int argc, char **argv);
int cmd_quantize(int argc, char **argv);
int cmd_synth(int argc, char **argv);
int cmd_run(int argc, char **argv);
int cmd_bench(int argc, char **argv);
int cmd_parity(int argc, char **argv);
int cmd_drift(int argc, char **argv);
int cmd_up(int argc, char **argv);
int cmd_down(int argc, char **argv);
int cmd_status(int argc, char **argv);
int cmd_restart(int argc, char **argv);
int cmd_trace(int argc, char **argv);
int cmd_chat(int argc, char **argv);
int cmd_batch(int argc, char **argv);

#endif
