/*
 * cmd_import_torch.c: `cumemtrace import-torch SNAPSHOT.pickle -o TRACE.db` and
 * `cumemtrace export-torch TRACE -o OUT.pickle`.
 *
 * import-torch brings PyTorch's caching-allocator view (a torch.cuda.memory._dump_snapshot pickle) into a
 * trace: a new file when TRACE does not exist, else an existing trace (upgraded in place from schema
 * version 1 when needed) whose driver segments the allocator's are joined with by address. The writing is
 * cumemtrace-import-torch's (importers/torch_import.c), a writer apart from the analyzer: this verb checks
 * its options and waits for it (cmt_torch_import, also run --torch's).
 * export-torch writes the newest snapshot of a trace back as a pickle (or, for a driver-only trace, one
 * segment per allocation) that pytorch.org/memory_viz opens.
 *
 * Runs in the `cumemtrace` command; never opens a trace for writing. On bad input: one line on stderr, exit
 * status 1, and a trace the importer created is removed again.
 */
#include "commands.h"

#include "cmt_db.h"
#include "torch.h"
#include "util.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static void usage(FILE *out)
{
    fprintf(out, "usage: cumemtrace import-torch SNAPSHOT.pickle -o TRACE.db [--reason import|exit|oom]\n"
                 "  SNAPSHOT   a torch.cuda.memory._dump_snapshot() pickle (read without loading any Python global)\n"
                 "  -o TRACE   the trace to write: created if absent; an existing trace (even schema version 1)\n"
                 "             gains the allocator tables, joined with its driver segments by address\n");
}


int cmt_torch_import(const char *snap, const char *trace, const char *reason, char *err, size_t errlen)
{
    /* the build tree's importers/, or an installed libexec/cumemtrace/ */
    static const char *const bases[] = {"../importers", "../libexec/cumemtrace", NULL};
    char exe[PATH_MAX];
    if (cmt_find_beside(bases, "cumemtrace-import-torch", exe) != 0)
        return cmt_fail(err, errlen, "cumemtrace-import-torch not found beside this program (an incomplete install?)");
    char *argv[] = {exe, (char *)snap, (char *)trace, (char *)reason, NULL};
    int rc = cmt_run_program(argv, "it imports PyTorch snapshots", err, errlen);
    if (rc > 0)
        err[0] = 0; /* the importer said why on stderr */
    return rc == 0 ? 0 : -1;
}

int cmd_import_torch(int argc, char **argv)
{
    const char *snap = NULL, *out = NULL, *reason = "import";
    char err[1024] = "";
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
            usage(stdout);
            return 0;
        } else if (!strcmp(argv[i], "-o") && i + 1 < argc) {
            out = argv[++i];
        } else if (!strcmp(argv[i], "--reason") && i + 1 < argc) {
            reason = argv[++i];
        } else if (argv[i][0] == '-' && argv[i][1]) {
            cmt_log("import-torch: unknown option or missing value '%s' (see 'cumemtrace import-torch --help')",
                    argv[i]);
            return 2;
        } else if (!snap) {
            snap = argv[i];
        } else {
            cmt_log("import-torch: one snapshot at a time ('%s' is one too many)", argv[i]);
            return 2;
        }
    }
    if (!snap || !out) {
        usage(stderr);
        return 2;
    }
    if (strcmp(reason, "import") && strcmp(reason, "exit") && strcmp(reason, "oom")) {
        cmt_log("import-torch: --reason takes import, exit or oom");
        return 2;
    }
    if (cmt_torch_import(snap, out, reason, err, sizeof err) != 0) {
        if (err[0])
            cmt_log("%s", err);
        return 1;
    }
    return 0;
}

int cmd_export_torch(int argc, char **argv)
{
    const char *trace = NULL, *out = NULL;
    char err[1024] = "";
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
            printf("usage: cumemtrace export-torch TRACE -o OUT.pickle\n"
                   "  writes the trace's allocator history (or its driver allocations) as a memory snapshot\n"
                   "  that https://pytorch.org/memory_viz opens\n");
            return 0;
        } else if (!strcmp(argv[i], "-o") && i + 1 < argc) {
            out = argv[++i];
        } else if (argv[i][0] == '-' && argv[i][1]) {
            cmt_log("export-torch: unknown option or missing value '%s'", argv[i]);
            return 2;
        } else if (!trace) {
            trace = argv[i];
        } else {
            cmt_log("export-torch: one trace at a time");
            return 2;
        }
    }
    if (!trace || !out) {
        fprintf(stderr, "usage: cumemtrace export-torch TRACE -o OUT.pickle\n");
        return 2;
    }
    sqlite3 *db = NULL;
    /* the same checks as every reader: existence, format, version */
    if (cmt_db_open_read(trace, &db, NULL, err, sizeof err) != 0) {
        cmt_log("%s", err);
        return 1;
    }
    sqlite3_close(db);
    char *args[] = {"export", (char *)trace, (char *)out, NULL};
    int rc = cmt_torch_python("cmt_torch_export.py", args, err, sizeof err);
    if (rc < 0)
        cmt_log("%s", err);
    return rc == 0 ? 0 : 1;
}
