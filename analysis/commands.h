/*
 * commands.h: the verbs of the `cumemtrace` command. Each verb lives in its own file (cmd_NAME.c) and
 * is listed once in main.c's command table. A verb returns the process exit status; only main and the
 * verbs choose exit codes and print the final message.
 */
#ifndef CMT_COMMANDS_H
#define CMT_COMMANDS_H

int cmd_run(int argc, char **argv);
int cmd_report(int argc, char **argv);   /* cmd_report.c */
int cmd_timeline(int argc, char **argv); /* cmd_timeline.c */
int cmd_flame(int argc, char **argv);    /* cmd_flame.c */
int cmd_diff(int argc, char **argv);     /* cmd_diff.c */
int cmd_import_torch(int argc, char **argv); /* cmd_import_torch.c */
int cmd_export_torch(int argc, char **argv); /* cmd_import_torch.c */
int cmd_whatif(int argc, char **argv);   /* cmd_whatif.c */
int cmd_export(int argc, char **argv);   /* cmd_export.c */

#endif
