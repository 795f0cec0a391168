/*
 * trace.c: opening and validating traces and sets of traces (one file, or the per-process files of a
 * job's directory): format, version, a writer still on it, how it ended; the names of apis and kinds;
 * the type check every reader applies to its rows. The pass is pass.c's, stacks are stacks.c's.
 *
 * Runs in the `cumemtrace` command. Reads traces, never writes them. Returns 0 or -1 with a one-line
 * reason in err; prints only the warnings that must be said once (unfinalized or lossy traces).
 */
#include "analysis.h"

#include "cmt_db.h"
#include "cmt_events.h"

#include <assert.h>
#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>


static char *col_text(sqlite3_stmt *st, int i)
{
    return cmt_text_dup((const char *)sqlite3_column_text(st, i));
}

void cmt_trace_label(const struct cmt_trace *t, char *buf, size_t len)
{
    const char *exe = t->exe ? t->exe : "?";
    const char *slash = strrchr(exe, '/');
    snprintf(buf, len, "%s[%lld]", slash ? slash + 1 : exe, (long long)t->pid);
}

/* ---------------------------------------------------------------------------------------------------
 * Opening */

static int process_alive_here(const struct cmt_trace *t)
{
    char host[HOST_NAME_MAX + 1] = "";
    if (gethostname(host, sizeof host) != 0 || !t->host || strcmp(host, t->host) != 0)
        return 0;
    if (t->pid <= 0 || t->pid > INT_MAX)
        return 0;
    return kill((pid_t)t->pid, 0) == 0 || errno == EPERM;
}

#define WRITER_WAIT_S 600

/* The pid of the traced program if it still runs on this machine, else 0 (read while the writer writes:
 * the file is in WAL mode; any failure means "not known to be running"). */
static long long writer_program(const char *path)
{
    sqlite3 *db = NULL;
    long long pid = 0;
    if (cmt_db_sqlite_open(path, &db, SQLITE_OPEN_READONLY) == SQLITE_OK) {
        sqlite3_busy_timeout(db, 200);
        sqlite3_stmt *st = NULL;
        if (sqlite3_prepare_v2(db, "SELECT pid, host FROM process", -1, &st, NULL) == SQLITE_OK &&
            sqlite3_step(st) == SQLITE_ROW) {
            struct cmt_trace probe = {0};
            probe.pid = sqlite3_column_int64(st, 0);
            probe.host = (char *)sqlite3_column_text(st, 1);
            if (process_alive_here(&probe))
                pid = probe.pid;
        }
        sqlite3_finalize(st);
    }
    sqlite3_close(db);
    return pid;
}

static int trace_open(struct cmt_trace *t, int in_dir, int *empty, char *err, size_t errlen)
{
    sqlite3_stmt *st = NULL;
    int rc;
    *empty = 0;
    if (cmt_writer_holds(t->path)) {
        /* The writer holds its flock until the file is final: while the program runs (refused), or while
         * the writer finishes after it, draining and building indexes (waited for). */
        long long pid = writer_program(t->path);
        if (pid > 0)
            return cmt_fail(err, errlen,
                            "%s: trace still being written (process %lld is running); analyze it after it exits",
                            t->path, pid);
        if (cmt_wait_for_writer(t->path, WRITER_WAIT_S, 500, NULL) != 0)
            return cmt_fail(err, errlen, "%s: the trace writer has not finished it in %d s", t->path, WRITER_WAIT_S);
    }
    if (cmt_db_open_read(t->path, &t->db, NULL, err, errlen) != 0)
        return -1;
    /* Read the file through mmap: the pass reads every page once; copying each into the page cache is
     * wasted work. A failure here only costs speed. */
    sqlite3_exec(t->db, "PRAGMA mmap_size=1099511627776", NULL, NULL, NULL);
    rc = sqlite3_prepare_v2(t->db,
                            "SELECT pid, ppid, host, exe, argv, start_unix_ns, start_ns, end_ns, finalized,"
                            " events_written, events_lost, stack_depth FROM process",
                            -1, &st, NULL);
    if (rc != SQLITE_OK)
        return cmt_db_read_fail(t, rc, err, errlen);
    rc = sqlite3_step(st);
    if (rc != SQLITE_ROW) {
        if (rc == SQLITE_DONE)
            cmt_fail(err, errlen, "%s: incomplete trace: no process row (the program died while starting?)",
                 t->path);
        else
            cmt_db_read_fail(t, rc, err, errlen);
        sqlite3_finalize(st);
        return -1;
    }
    t->pid = sqlite3_column_int64(st, 0);
    t->ppid = sqlite3_column_int64(st, 1);
    t->host = col_text(st, 2);
    t->exe = col_text(st, 3);
    t->argv = col_text(st, 4);
    t->start_unix_ns = sqlite3_column_int64(st, 5);
    int has_start = sqlite3_column_type(st, 6) != SQLITE_NULL;
    t->start_ns = sqlite3_column_int64(st, 6);
    t->has_end = sqlite3_column_type(st, 7) != SQLITE_NULL;
    t->end_ns = sqlite3_column_int64(st, 7);
    /* Times outside what CLOCK_MONOTONIC can read are damage: ignore them, the events give the axis. */
    if (t->start_ns < 0 || t->start_ns > CMT_MAX_TS)
        has_start = 0;
    if (t->end_ns < 0 || t->end_ns > CMT_MAX_TS)
        t->has_end = 0;
    if (t->start_unix_ns < 0 || t->start_unix_ns > CMT_MAX_TS)
        t->start_unix_ns = 0; /* unknown: ranks' wall clock then starts at 0 (and never overflows) */
    t->finalized = sqlite3_column_int(st, 8);
    t->events_written = sqlite3_column_int64(st, 9);
    t->events_lost = sqlite3_column_int64(st, 10);
    t->stack_depth = sqlite3_column_int64(st, 11);
    sqlite3_finalize(st);
    st = NULL;

    /* The last and first events: emptiness, and the time axis before the pass. */
    rc = sqlite3_prepare_v2(t->db,
                            "SELECT (SELECT ts_ns FROM events ORDER BY seq DESC LIMIT 1),"
                            " (SELECT ts_ns FROM events ORDER BY seq LIMIT 1),"
                            " (SELECT seq FROM events ORDER BY seq DESC LIMIT 1)",
                            -1, &st, NULL);
    if (rc != SQLITE_OK)
        return cmt_db_read_fail(t, rc, err, errlen);
    rc = sqlite3_step(st);
    if (rc != SQLITE_ROW) {
        cmt_db_read_fail(t, rc, err, errlen);
        sqlite3_finalize(st);
        return -1;
    }
    int no_events = sqlite3_column_type(st, 0) == SQLITE_NULL;
    t->last_ts = sqlite3_column_int64(st, 0);
    t->first_ts = sqlite3_column_int64(st, 1);
    t->last_seq_in_file = sqlite3_column_int64(st, 2);
    sqlite3_finalize(st);
    st = NULL;
    /* Schema version 2: the allocator's history (an imported snapshot) is on the same time axis. A version
     * 1 file has no such table and the prepare fails: nothing to add. */
    if (sqlite3_prepare_v2(t->db, "SELECT min(ts_ns), max(ts_ns) FROM alloc_trace", -1, &st, NULL) == SQLITE_OK &&
        sqlite3_step(st) == SQLITE_ROW && sqlite3_column_type(st, 0) != SQLITE_NULL) {
        int64_t lo = sqlite3_column_int64(st, 0), hi = sqlite3_column_int64(st, 1);
        if (lo <= -CMT_MAX_TS || hi > CMT_MAX_TS) {
            /* found by the fuzzer: the span of such times overflowed the report's duration (times before
             * the trace's clock began are possible: a snapshot older than the run, mapped onto its axis) */
            sqlite3_finalize(st);
            return cmt_fail(err, errlen, "%s: corrupt trace: an allocator entry's ts_ns (%lld) is not a time",
                            t->path, (long long)(lo <= -CMT_MAX_TS ? lo : hi));
        }
        if (no_events || lo < t->first_ts)
            t->first_ts = lo;
        if (no_events || hi > t->last_ts)
            t->last_ts = hi;
        no_events = 0;
    }
    sqlite3_finalize(st);
    st = NULL;
    if (no_events) {
        *empty = 1;
        if (t->events_lost > 0) /* made, but none written: a writer killed before its first commit, or stalled */
            return cmt_fail(err, errlen, "%s: empty trace: none of its events was written, %lld were lost while tracing",
                            t->path, (long long)t->events_lost);
        return cmt_fail(err, errlen, "%s: empty trace: no events recorded (the program made no CUDA memory calls)",
                    t->path);
    }
    if (!has_start || t->start_ns > t->first_ts)
        t->start_ns = t->first_ts;

    rc = sqlite3_prepare_v2(t->db, "SELECT device, name, total_bytes, uuid FROM devices ORDER BY device", -1,
                            &st, NULL);
    if (rc != SQLITE_OK)
        return cmt_db_read_fail(t, rc, err, errlen);
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        struct cmt_dev *d = cmt_push(&t->devs, &t->ndevs, &t->devcap, sizeof *d);
        if (!d) {
            sqlite3_finalize(st);
            return cmt_fail(err, errlen, "out of memory");
        }
        d->device = sqlite3_column_int64(st, 0);
        d->name = col_text(st, 1);
        d->total_bytes = sqlite3_column_int64(st, 2);
        d->uuid = col_text(st, 3);
    }
    sqlite3_finalize(st);
    if (rc != SQLITE_DONE)
        return cmt_db_read_fail(t, rc, err, errlen);

    rc = sqlite3_prepare_v2(t->db,
                            "SELECT seq, ts_ns, api, op, kind, device, address, size, handle, result,"
                            " stack_id, free_bytes, total_bytes, aux FROM events ORDER BY seq",
                            -1, &t->events, NULL);
    if (rc != SQLITE_OK)
        return cmt_db_read_fail(t, rc, err, errlen);
    rc = sqlite3_prepare_v2(t->db,
                            "SELECT f.function, m.path, f.ip, m.base, f.frame_id FROM stacks s"
                            " JOIN frames f ON f.frame_id = s.frame_id"
                            " LEFT JOIN modules m ON m.module_id = f.module_id"
                            " WHERE s.stack_id = ? ORDER BY s.depth",
                            -1, &t->stack_q, NULL);
    if (rc != SQLITE_OK)
        return cmt_db_read_fail(t, rc, err, errlen);
    /* Schema version 4: source lines of frames. An older file has no such table and the prepare fails:
     * stacks without lines. */
    if (sqlite3_prepare_v2(t->db, "SELECT function, file, line FROM frame_lines WHERE frame_id = ? ORDER BY depth",
                           -1, &t->lines_q, NULL) != SQLITE_OK)
        t->lines_q = NULL;

    /* How the program ended, as its writer saw it (meta.end_reason; absent in older traces). */
    if (sqlite3_prepare_v2(t->db, "SELECT value FROM meta WHERE key = 'end_reason'", -1, &st, NULL) == SQLITE_OK) {
        if (sqlite3_step(st) == SQLITE_ROW && sqlite3_column_type(st, 0) == SQLITE_TEXT) {
            const char *v = (const char *)sqlite3_column_text(st, 0);
            if (!strcmp(v, "exit") || !strcmp(v, "exec") || !strcmp(v, "killed"))
                snprintf(t->end_reason, sizeof t->end_reason, "%s", v);
        }
        sqlite3_finalize(st);
        st = NULL;
    }
    if (!t->finalized)
        cmt_warn("warning: %s was not finalized (its writer was killed, or the trace predates the separate writer);"
                 " analyzing the events it holds", t->path);
    if (t->events_lost > 0)
        cmt_warn("warning: %s: %lld events were lost while tracing; totals may be off", t->path,
                (long long)t->events_lost);
    (void)in_dir;
    return 0;
}

static void trace_free(struct cmt_trace *t)
{
    if (!t)
        return;
    if (t->ranges_free)
        t->ranges_free(t);
    sqlite3_finalize(t->events);
    sqlite3_finalize(t->stack_q);
    sqlite3_finalize(t->lines_q);
    sqlite3_close(t->db);
    for (size_t i = 0; i < t->ndevs; i++) {
        free(t->devs[i].name);
        free(t->devs[i].uuid);
    }
    cmt_stacks_free(t);
    free(t->devs);
    free(t->recs);
    free(t->maps);
    free(t->samples);
    imap_free(&t->by_addr);
    imap_free(&t->by_reserve);
    imap_free(&t->by_handle);
    imap_free(&t->handle_refs);
    imap_free(&t->by_ipc);
    imap_free(&t->stack_ix);
    free(t->path);
    free(t->host);
    free(t->exe);
    free(t->argv);
    free(t);
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

static int add_file(struct cmt_set *s, size_t *cap, const char *path, int in_dir, char *err, size_t errlen)
{
    struct cmt_trace *t = calloc(1, sizeof *t);
    if (!t || !(t->path = strdup(path))) {
        free(t);
        return cmt_fail(err, errlen, "out of memory");
    }
    int empty = 0;
    if (trace_open(t, in_dir, &empty, err, errlen) != 0) {
        trace_free(t);
        /* In a directory of per-process traces, a process without events is not an error. */
        if (in_dir && empty) {
            cmt_log("note: %s holds no events; skipped", path);
            return 0;
        }
        return -1;
    }
    struct cmt_trace **slot = cmt_push(&s->t, &s->n, cap, sizeof *slot);
    if (!slot) {
        trace_free(t);
        return cmt_fail(err, errlen, "out of memory");
    }
    *slot = t;
    return 0;
}

int cmt_set_open(struct cmt_set *s, char **paths, int npaths, char *err, size_t errlen)
{
    size_t cap = 0;
    memset(s, 0, sizeof *s);
    /* One thread uses each connection: SQLite's per-call mutexes are pure cost in the pass (about a
     * tenth of it). Refused harmlessly if SQLite was already initialized. */
    sqlite3_config(SQLITE_CONFIG_MULTITHREAD);
    s->peak_trace = -1;
    for (int i = 0; i < npaths; i++) {
        struct stat st;
        if (stat(paths[i], &st) != 0)
            return cmt_fail(err, errlen, "%s: %s", paths[i], strerror(errno));
        if (!S_ISDIR(st.st_mode)) {
            if (add_file(s, &cap, paths[i], 0, err, errlen) != 0)
                return -1;
            continue;
        }
        DIR *d = opendir(paths[i]);
        if (!d)
            return cmt_fail(err, errlen, "%s: %s", paths[i], strerror(errno));
        char **names = NULL;
        size_t nn = 0, nc = 0;
        struct dirent *e;
        int bad = 0;
        while ((e = readdir(d))) {
            size_t l = strlen(e->d_name);
            if (l < 4 || strcmp(e->d_name + l - 3, ".db") != 0)
                continue;
            char **slot = cmt_push(&names, &nn, &nc, sizeof *slot);
            if (!slot || !(*slot = strdup(e->d_name))) {
                bad = 1;
                break;
            }
        }
        closedir(d);
        if (!bad && nn) /* qsort's array may not be NULL, even for no elements */
            qsort(names, nn, sizeof *names, cmp_str);
        size_t before = s->n;
        /* A job's directory: one unusable file (foreign, truncated, a process killed while creating it)
         * must not hide the others. Each is named, with its reason, in one warning line. */
        struct sbuf skipped = {0};
        int nskipped = 0;
        for (size_t j = 0; j < nn && !bad; j++) {
            char full[PATH_MAX];
            snprintf(full, sizeof full, "%s/%s", paths[i], names[j]);
            char why[512];
            if (add_file(s, &cap, full, 1, why, sizeof why) != 0) {
                const char *r = why;
                size_t fl = strlen(full);
                if (!strncmp(r, full, fl) && r[fl] == ':')
                    r += fl + 2; /* the reason without the path it starts with */
                sb_printf(&skipped, "%s%s (%s)", nskipped++ ? "; " : "", names[j], r);
            }
        }
        if (nskipped && s->n > before) {
            cmt_warn("warning: %s: skipped %d unusable file%s: %s", paths[i], nskipped, nskipped > 1 ? "s" : "",
                     skipped.p ? skipped.p : "");
        } else if (nskipped) {
            cmt_fail(err, errlen, "%s: no usable trace in this directory: %s", paths[i], skipped.p ? skipped.p : "");
            bad = 3;
        }
        sb_free(&skipped);
        for (size_t j = 0; j < nn; j++)
            free(names[j]);
        free(names);
        if (bad == 1)
            return cmt_fail(err, errlen, "out of memory");
        if (bad)
            return -1;
        if (s->n == before)
            return cmt_fail(err, errlen, "%s: no traces with events in this directory (*.db)", paths[i]);
    }
    if (s->n == 0)
        return cmt_fail(err, errlen, "no trace given");
    s->t0 = INT64_MAX;
    s->tend = INT64_MIN;
    for (size_t i = 0; i < s->n; i++) {
        struct cmt_trace *t = s->t[i];
        if (t->start_ns < s->t0)
            s->t0 = t->start_ns;
        int64_t end = t->has_end && t->end_ns > t->last_ts ? t->end_ns : t->last_ts;
        if (end > s->tend)
            s->tend = end;
    }
    return 0;
}

void cmt_set_close(struct cmt_set *s)
{
    for (size_t i = 0; i < s->n; i++)
        trace_free(s->t[i]);
    free(s->t);
    free(s->fails);
    free(s->shared);
    memset(s, 0, sizeof *s);
}

/* ---------------------------------------------------------------------------------------------------
 * The allocator histories a trace holds */

int64_t cmt_torch_newest_snapshot(struct cmt_trace *t)
{
    sqlite3_stmt *st = NULL;
    int64_t sid = -1;
    /* a version 1 file has no such table: prepare fails, and that means no allocator data */
    if (sqlite3_prepare_v2(t->db, "SELECT max(snapshot_id) FROM alloc_snapshots", -1, &st, NULL) == SQLITE_OK &&
        sqlite3_step(st) == SQLITE_ROW && sqlite3_column_type(st, 0) != SQLITE_NULL)
        sid = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    return sid;
}
