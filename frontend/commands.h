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

#endif
