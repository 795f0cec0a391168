/*
 * main.c: the `cumemtrace` command. A table of verbs (name, function, one-line summary), as git.c keeps
 * one; everything else lives in one file per verb.
 */
#include "commands.h"
#include "util.h"

#include <stdio.h>
#include <string.h>

struct command {
    const char *name;
    int (*fn)(int argc, char **argv);
    const char *summary;
};

static const struct command commands[] = {
    {"run", cmd_run, "run a command with GPU memory tracing: cumemtrace run [-o PATH] [--sim-gpu SIZE] -- CMD..."},
    {"report", cmd_report, "peak, who held it, leaks, failures: cumemtrace report [--json] [--html FILE] TRACE..."},
    {"timeline", cmd_timeline, "memory over time: cumemtrace timeline -o FILE.svg|.html|.csv|.json TRACE..."},
    {"flame", cmd_flame, "folded stacks for flame graphs: cumemtrace flame [--at-peak|--total|--leaked] TRACE..."},
    {"diff", cmd_diff, "compare two runs: cumemtrace diff [--json] [-o FILE.svg|.html] A B"},
    {"import-torch", cmd_import_torch, "add a PyTorch memory snapshot: cumemtrace import-torch SNAPSHOT.pickle -o TRACE"},
    {"whatif", cmd_whatif, "the caching allocator replayed under other settings: cumemtrace whatif TRACE [--alloc-conf CONF]..."},
    {"export", cmd_export, "traces as a Parquet dataset by rank: cumemtrace export --parquet OUT TRACE|DIR..."},
    {"export-torch", cmd_export_torch, "a trace as a snapshot for memory_viz: cumemtrace export-torch TRACE -o OUT.pickle"},
};

static void usage(FILE *out)
{
    fprintf(out, "usage: cumemtrace VERB [ARGS...]\n\nverbs:\n");
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        fprintf(out, "  %-12s %s\n", commands[i].name, commands[i].summary);
    fprintf(out, "\n'cumemtrace VERB --help' describes one verb.\n");
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help")) {
        usage(stdout);
        return 0;
    }
    if (!strcmp(argv[1], "--version")) {
        printf("cumemtrace %s\n", CMT_VERSION);
        return 0;
    }
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        if (!strcmp(argv[1], commands[i].name)) {
            int status = commands[i].fn(argc - 1, argv + 1);
            cmt_warn_flush(status == 0);
            return status;
        }
    fprintf(stderr, "cumemtrace: unknown verb '%s' (see 'cumemtrace --help')\n", argv[1]);
    return 2;
}
