/*
 * torch_import.c: cumemtrace-import-torch, the writer that brings a PyTorch memory snapshot (a
 * torch.cuda.memory._dump_snapshot pickle) into a trace: `cumemtrace-import-torch SNAPSHOT TRACE REASON`.
 *
 * A new file when TRACE does not exist, else an existing trace (upgraded in place from an older schema
 * version when needed) whose driver segments the allocator's are joined with by address. The file is
 * created and migrated here, through schema/cmt_db.h; reading the pickle and writing the rows is
 * importers/torch/cmt_torch_import.py's (a restricted unpickler: no Python global is ever loaded), run
 * with python3.
 *
 * A writer apart from the analyzer: the `cumemtrace` command never opens a trace for writing; its verbs
 * import-torch and run --torch start this program (analysis/cmd_import_torch.c, cmt_torch_import) and
 * wait for it. Not meant to be run by hand, though it is safe to.
 *
 * On bad input: one line on stderr, exit status 1, and a trace this program created is removed again.
 * Usage errors: exit status 2.
 */
#include "cmt_db.h"
#include "util.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* Creates or upgrades TRACE; *created tells whether it is new. */
static int prepare_trace(const char *path, int *created, char *err, size_t errlen)
{
    sqlite3 *db = NULL;
    struct stat st;
    *created = 0;
    if (stat(path, &st) != 0) {
        if (errno != ENOENT) {
            snprintf(err, errlen, "%s: %s", path, strerror(errno));
            return -1;
        }
        if (cmt_db_create(path, &db, err, errlen) != 0)
            return -1;
        *created = 1;
        /* one self-contained file, as a finalized trace is */
        int rc = cmt_db_exec(db, "PRAGMA journal_mode=DELETE", err, errlen);
        sqlite3_close(db);
        if (rc != 0)
            cmt_remove_trace(path);
        return rc;
    }
    int version = 0;
    if (cmt_db_open_update(path, &db, &version, err, errlen) != 0)
        return -1;
    sqlite3_close(db);
    if (version < CMT_SCHEMA_VERSION)
        cmt_warn("note: %s upgraded from schema version %d to %d", path, version, CMT_SCHEMA_VERSION);
    return 0;
}

static int import(const char *snap, const char *trace, const char *reason, char *err, size_t errlen)
{
    int created = 0;
    if (access(snap, R_OK) != 0) {
        snprintf(err, errlen, "%s: %s", snap, strerror(errno));
        return -1;
    }
    if (prepare_trace(trace, &created, err, errlen) != 0)
        return -1;
    char *args[] = {"import", (char *)snap, (char *)trace, "--reason", (char *)reason, NULL};
    int rc = cmt_torch_python("cmt_torch_import.py", args, err, errlen);
    if (rc != 0) {
        if (rc > 0) /* the helper said why on stderr */
            err[0] = 0;
        if (created)
            cmt_remove_trace(trace);
        return -1;
    }
    return 0;
}

int main(int argc, char **argv)
{
    char err[1024] = "";
    if (argc != 4 || (strcmp(argv[3], "import") && strcmp(argv[3], "exit") && strcmp(argv[3], "oom"))) {
        fprintf(stderr, "usage: cumemtrace-import-torch SNAPSHOT.pickle TRACE.db import|exit|oom\n"
                        "  (run by `cumemtrace import-torch` and `cumemtrace run --torch`)\n");
        return 2;
    }
    if (import(argv[1], argv[2], argv[3], err, sizeof err) != 0) {
        cmt_warn_flush(0);
        if (err[0])
            cmt_log("%s", err);
        return 1;
    }
    cmt_warn_flush(1);
    return 0;
}
