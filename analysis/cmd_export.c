/*
 * cmd_export.c: `cumemtrace export --parquet OUT TRACE|DIR...`: a job's traces (one per rank) as one Parquet
 * dataset partitioned by rank, for DuckDB, Spark and the like when a job is too big to report on one
 * machine. schema/README.md ("Parquet export") documents the layout and the queries.
 *
 * The inputs are opened and validated here exactly as `report` opens them (cmt_set_open: existence,
 * format, schema version, a writer still writing waited for or refused, an empty trace in a job directory
 * skipped with a note, a directory's unusable files skipped with one warning line). The writing is
 * analysis/export/cmt_export.py's (pyarrow), run with $CUMEMTRACE_PYTHON or python3 (which it replaces by
 * the pinned venv of scripts/py-env when that python has no pyarrow); it also owns the checks on OUT.
 *
 * Runs in the `cumemtrace` command. Reads traces only. On bad input: one line on stderr, exit status 1.
 */
#include "analysis.h"
#include "commands.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

static void usage(FILE *out)
{
    fprintf(out, "usage: cumemtrace export --parquet OUT [--part-rows N] TRACE|DIR...\n"
                 "  --parquet OUT   writes OUT/{allocations,events,stacks,frames,processes}/rank=R/part-N.parquet\n"
                 "                  (rank from the trace's RANK, -1 without one); OUT must be new, empty, or an\n"
                 "                  earlier export (replaced); see schema/README.md for the layout and queries\n"
                 "  --part-rows N   rows per part file at most (default 4194304)\n"
                 "  needs pyarrow: scripts/py-env makes the pinned environment; CUMEMTRACE_PYTHON picks a python\n");
}

/* A 1,000-rank job is 1,000 open traces while they are validated: more than the usual soft limit of
 * descriptors. Raising the soft limit to the hard one costs nothing; failing to is harmless here. */
static void raise_fd_limit(void)
{
    struct rlimit r;
    if (getrlimit(RLIMIT_NOFILE, &r) == 0 && r.rlim_cur < r.rlim_max) {
        r.rlim_cur = r.rlim_max;
        setrlimit(RLIMIT_NOFILE, &r);
    }
}

/* Runs the writer; its exit status (it says why on stderr), or -1 with a reason in err. */
static int run_writer(char **args, size_t nargs, char *err, size_t errlen)
{
    static const char *const bases[] = {"export", "../share/cumemtrace/export", NULL};
    char script[PATH_MAX];
    if (cmt_find_beside(bases, "cmt_export.py", script) != 0)
        return cmt_fail(err, errlen, "cmt_export.py not found beside this program (export/ or ../share/cumemtrace/export/)");
    return cmt_run_python(script, args, nargs, "export --parquet needs Python 3 with pyarrow", err, errlen);
}

int cmd_export(int argc, char **argv)
{
    const char *out = NULL, *part_rows = NULL;
    char err[1024] = "";
    char **inputs = calloc((size_t)argc + 1, sizeof *inputs);
    int ninputs = 0, status = 1;
    if (!inputs) {
        cmt_log("out of memory");
        return 1;
    }
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
            usage(stdout);
            free(inputs);
            return 0;
        } else if (!strcmp(argv[i], "--parquet") && i + 1 < argc) {
            out = argv[++i];
        } else if (!strcmp(argv[i], "--part-rows") && i + 1 < argc) {
            part_rows = argv[++i];
        } else if (argv[i][0] == '-' && argv[i][1]) {
            cmt_log("export: unknown option or missing value '%s' (see 'cumemtrace export --help')", argv[i]);
            free(inputs);
            return 2;
        } else {
            inputs[ninputs++] = argv[i];
        }
    }
    if (!out || !*out || !ninputs) {
        usage(stderr);
        free(inputs);
        return 2;
    }
    if (part_rows) {
        char *end;
        errno = 0;
        long long n = strtoll(part_rows, &end, 10);
        if (errno || end == part_rows || *end || n < 1) {
            cmt_log("export: --part-rows takes a number of rows (1 or more), not '%s'", part_rows);
            free(inputs);
            return 2;
        }
    }
    raise_fd_limit();

    /* The same validation as report, then the connections are closed: the writer opens each on its own. */
    struct cmt_set s;
    if (cmt_set_open(&s, inputs, ninputs, err, sizeof err) != 0) {
        cmt_log("%s", err);
        cmt_set_close(&s);
        free(inputs);
        return 1;
    }
    size_t nargs = 0;
    char **args = calloc(s.n + 8, sizeof *args);
    char **paths = calloc(s.n + 1, sizeof *paths);
    if (!args || !paths)
        goto oom;
    for (size_t i = 0; i < s.n; i++)
        if (!(paths[i] = strdup(s.t[i]->path)))
            goto oom;
    size_t ntraces = s.n;
    cmt_set_close(&s);
    args[nargs++] = "--tool-version";
    args[nargs++] = CMT_VERSION;
    if (part_rows) {
        args[nargs++] = "--part-rows";
        args[nargs++] = (char *)part_rows;
    }
    args[nargs++] = "--"; /* an OUT or a trace path that starts with '-' stays a path */
    args[nargs++] = "parquet";
    args[nargs++] = (char *)out;
    for (size_t i = 0; i < ntraces; i++)
        args[nargs++] = paths[i];
    int rc = run_writer(args, nargs, err, sizeof err);
    if (rc < 0)
        cmt_log("%s", err);
    status = rc == 0 ? 0 : 1;
    for (size_t i = 0; i < ntraces; i++)
        free(paths[i]);
    free(paths);
    free(args);
    free(inputs);
    return status;
oom:
    cmt_log("out of memory");
    if (paths)
        for (size_t i = 0; i < s.n; i++)
            free(paths[i]);
    free(paths);
    free(args);
    cmt_set_close(&s);
    free(inputs);
    return 1;
}
