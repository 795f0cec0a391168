/*
 * commands.h: the verbs of the `cumemtrace` command. Each verb lives in its own file (cmd_NAME.c) and
 * is listed once in main.c's command table. A verb returns the process exit status; only main and the
 * verbs choose exit codes and print the final message.
 */
#ifndef CMT_COMMANDS_H
#define CMT_COMMANDS_H

int cmd_run(int argc, char **argv);

#endif
