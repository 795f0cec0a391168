/*
 * trace.c: opening and validating traces, the one pass over their events, symbolization of stacks, and
 * the groupings every verb prints (see analysis.h for the accounting rules).
 *
 * Runs in the `cumemtrace` command. Reads traces, never writes them. Returns 0 or -1 with a one-line
 * reason in err; prints only the warnings that must be said once (unfinalized or lossy traces).
 */
#include "analysis.h"
#include "ranges.h"
#include "torch.h"

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

/* libstdc++'s demangler, callable from C. */
char *__cxa_demangle(const char *mangled, char *buf, size_t *len, int *status);

static const char *const api_names[CMT_NAPIS] = {
    [0] = "unknown",
#define X(id, name, base, op, kind) [id] = #name,
    CMT_API_LIST(X)
#undef X
};
static const char *const kind_names[CMT_NKINDS] = {
    [0] = "unknown",
#define X(id, name, str) [id] = str,
    CMT_KIND_LIST(X)
#undef X
};


const char *cmt_api_name(int api) { return api > 0 && api < CMT_NAPIS ? api_names[api] : "unknown"; }
const char *cmt_kind_name(int kind) { return kind > 0 && kind < CMT_NKINDS ? kind_names[kind] : "unknown"; }

/* One line for an SQLite error met while reading: corruption found mid-query is the usual cause. */
static int db_fail(struct cmt_trace *t, int rc, char *err, size_t errlen)
{
    int code = rc & 0xff;
    if (code == SQLITE_CORRUPT || code == SQLITE_NOTADB)
        return cmt_fail(err, errlen, "%s: corrupt trace: %s", t->path, sqlite3_errmsg(t->db));
    if (code == SQLITE_NOMEM)
        return cmt_fail(err, errlen, "%s: out of memory while reading the trace", t->path);
    return cmt_fail(err, errlen, "%s: cannot read trace: %s", t->path, sqlite3_errmsg(t->db));
}

int cmt_row_check(const char *path, sqlite3_stmt *st, const char *spec, const char *what, long long id,
                  char *err, size_t errlen)
{
    for (int c = 0; spec[c] && c < sqlite3_column_count(st); c++) {
        int type = sqlite3_column_type(st, c);
        char want = spec[c];
        if (want == '-' || (type == SQLITE_NULL && (want == 'I' || want == 'T')) ||
            (type == SQLITE_INTEGER && (want == 'i' || want == 'I')) ||
            (type == SQLITE_TEXT && (want == 't' || want == 'T')))
            continue;
        return cmt_fail(err, errlen, "%s: corrupt trace: %s %lld has %s in column %s", path, what, id,
                        type == SQLITE_NULL ? "no value" : type == SQLITE_TEXT ? "text" :
                        type == SQLITE_INTEGER ? "an integer" : type == SQLITE_FLOAT ? "a real number" : "a blob",
                        sqlite3_column_name(st, c));
    }
    return 0;
}

#define CMT_MAX_SIZE ((int64_t)1 << 56) /* 64 PiB: far beyond any device, far below overflow */
#define CMT_MAX_TS ((int64_t)1 << 62)   /* ~146 years of CLOCK_MONOTONIC */

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
        return db_fail(t, rc, err, errlen);
    rc = sqlite3_step(st);
    if (rc != SQLITE_ROW) {
        if (rc == SQLITE_DONE)
            cmt_fail(err, errlen, "%s: incomplete trace: no process row (the program died while starting?)",
                 t->path);
        else
            db_fail(t, rc, err, errlen);
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
                            " (SELECT max(seq) FROM events)",
                            -1, &st, NULL);
    if (rc != SQLITE_OK)
        return db_fail(t, rc, err, errlen);
    rc = sqlite3_step(st);
    if (rc != SQLITE_ROW) {
        db_fail(t, rc, err, errlen);
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
        return cmt_fail(err, errlen, "%s: empty trace: no events recorded (the program made no CUDA memory calls)",
                    t->path);
    }
    if (!has_start || t->start_ns > t->first_ts)
        t->start_ns = t->first_ts;

    rc = sqlite3_prepare_v2(t->db, "SELECT device, name, total_bytes, uuid FROM devices ORDER BY device", -1,
                            &st, NULL);
    if (rc != SQLITE_OK)
        return db_fail(t, rc, err, errlen);
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
        return db_fail(t, rc, err, errlen);

    rc = sqlite3_prepare_v2(t->db,
                            "SELECT seq, ts_ns, api, op, kind, device, address, size, handle, result,"
                            " stack_id, free_bytes, total_bytes, aux FROM events ORDER BY seq",
                            -1, &t->events, NULL);
    if (rc != SQLITE_OK)
        return db_fail(t, rc, err, errlen);
    rc = sqlite3_prepare_v2(t->db,
                            "SELECT f.function, m.path, f.ip, m.base, f.frame_id FROM stacks s"
                            " JOIN frames f ON f.frame_id = s.frame_id"
                            " LEFT JOIN modules m ON m.module_id = f.module_id"
                            " WHERE s.stack_id = ? ORDER BY s.depth",
                            -1, &t->stack_q, NULL);
    if (rc != SQLITE_OK)
        return db_fail(t, rc, err, errlen);
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

static void stack_src_free(struct cmt_stack *k);

static void trace_free(struct cmt_trace *t)
{
    if (!t)
        return;
    cmt_ranges_free(t);
    sqlite3_finalize(t->events);
    sqlite3_finalize(t->stack_q);
    sqlite3_finalize(t->lines_q);
    sqlite3_close(t->db);
    for (size_t i = 0; i < t->ndevs; i++) {
        free(t->devs[i].name);
        free(t->devs[i].uuid);
    }
    for (size_t i = 0; i < t->nstacks; i++) {
        struct cmt_stack *k = t->stacks[i];
        stack_src_free(k);
        for (int j = 0; j < k->nframes; j++)
            free(k->frames[j]);
        free(k->frames);
        free(k->module);
        free(k->key);
        free(k);
    }
    free(t->stacks);
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
    for (size_t i = 0; i < s->npanels; i++)
        free(s->panels[i].b);
    free(s->panels);
    for (int i = 0; i < CMT_MAX_LAYERS; i++)
        free(s->layer_names[i]);
    smap_free(&s->module_layer);
    memset(s, 0, sizeof *s);
}

/* ---------------------------------------------------------------------------------------------------
 * Stacks */

static const char *base_name(const char *p)
{
    const char *s = p ? strrchr(p, '/') : NULL;
    return s ? s + 1 : p;
}

/* Our interposer, the driver and the runtime are how every allocation arrives, never why. */
static int uninteresting_module(const char *path)
{
    const char *b = base_name(path);
    return b && (!strncmp(b, "libcumemtrace", 13) || !strncmp(b, "libcuda", 7));
}

static char *frame_name(const char *function, const char *module, int64_t ip, int64_t base, int has_mod)
{
    char buf[128];
    if (function && *function) {
        int status = -1;
        char *d = function[0] == '_' && function[1] == 'Z' ? __cxa_demangle(function, NULL, NULL, &status)
                                                           : NULL;
        if (d && status == 0) {
            /* flame graphs' folded format separates frames with ';' and ends at a newline */
            for (char *p = d; *p; p++)
                if (*p == ';' || *p == '\n' || *p == '\r')
                    *p = *p == ';' ? ':' : ' ';
            return d;
        }
        free(d);
        /* GCC's local clones (forward_layer.isra.0, f.constprop.2, f.part.1, f.cold) are the function
         * a person wrote; the same function in another build may not be cloned at all. */
        static const char *const clones[] = {".isra.", ".constprop.", ".part.", ".cold", ".lto_priv.", NULL};
        size_t cut = strlen(function);
        for (int i = 0; clones[i]; i++) {
            const char *c = strstr(function, clones[i]);
            if (c && c > function && (size_t)(c - function) < cut)
                cut = (size_t)(c - function);
        }
        char *name = strndup(function, cut);
        for (char *p = name; p && *p; p++) /* the folded format's separators */
            if (*p == ';' || *p == '\n' || *p == '\r')
                *p = *p == ';' ? ':' : ' ';
        return name;
    }
    if (has_mod)
        snprintf(buf, sizeof buf, "%s+0x%llx", base_name(module), (unsigned long long)ip - (unsigned long long)base);
    else
        snprintf(buf, sizeof buf, "0x%llx", (unsigned long long)ip);
    return strdup(buf);
}

static void stack_src_free(struct cmt_stack *k)
{
    if (!k->src)
        return;
    for (int j = 0; j < k->nsrc; j++) {
        for (int d = 0; d < k->src[j].n; d++) {
            free(k->src[j].s[d].function);
            free(k->src[j].s[d].file);
        }
        free(k->src[j].s);
    }
    free(k->src);
    k->src = NULL;
}

/* Fills k->src[i] for frame i (frame_id fid) from frame_lines. Damaged rows (wrong types) are skipped:
 * lines are an aid, never a reason to refuse a trace. */
static int frame_src_load(struct cmt_trace *t, struct cmt_stack *k, int i, int64_t fid)
{
    if (!t->lines_q)
        return 0;
    struct cmt_frame_src *fs = &k->src[i];
    size_t cap = 0, n = 0;
    int rc;
    sqlite3_reset(t->lines_q);
    sqlite3_bind_int64(t->lines_q, 1, fid);
    while ((rc = sqlite3_step(t->lines_q)) == SQLITE_ROW && n < 64) {
        int ft = sqlite3_column_type(t->lines_q, 0), lt = sqlite3_column_type(t->lines_q, 2);
        if ((ft != SQLITE_TEXT && ft != SQLITE_NULL) || (lt != SQLITE_INTEGER && lt != SQLITE_NULL))
            continue;
        struct cmt_src *slot = cmt_push(&fs->s, &n, &cap, sizeof *slot);
        if (!slot)
            return -1;
        memset(slot, 0, sizeof *slot);
        fs->n = (int)n;
        const char *fn = (const char *)sqlite3_column_text(t->lines_q, 0);
        if (fn && *fn) {
            char *raw = frame_name(fn, NULL, 0, 0, 0);
            slot->function = cmt_text_dup(raw);
            free(raw);
        }
        if (sqlite3_column_type(t->lines_q, 1) == SQLITE_TEXT)
            slot->file = cmt_text_dup((const char *)sqlite3_column_text(t->lines_q, 1));
        int64_t line = sqlite3_column_int64(t->lines_q, 2);
        slot->line = line > 0 && line < INT32_MAX ? (int)line : 0;
    }
    sqlite3_reset(t->lines_q);
    return 0;
}

static struct cmt_stack *stack_load(struct cmt_trace *t, int32_t stack_id, char *err, size_t errlen)
{
    struct cmt_stack *k = calloc(1, sizeof *k);
    struct sbuf key = {0};
    size_t cap = 0, n = 0;
    int rc = SQLITE_DONE, folding = 1;
    if (!k)
        goto oom;
    if (stack_id != CMT_NO_STACK) {
        sqlite3_reset(t->stack_q);
        sqlite3_bind_int64(t->stack_q, 1, stack_id);
        while ((rc = sqlite3_step(t->stack_q)) == SQLITE_ROW) {
            if (cmt_row_check(t->path, t->stack_q, "TTiI", "stack", (long long)stack_id, err, errlen) != 0) {
                sqlite3_reset(t->stack_q);
                goto error;
            }
            const char *fn = (const char *)sqlite3_column_text(t->stack_q, 0);
            const char *mod = (const char *)sqlite3_column_text(t->stack_q, 1);
            int has_mod = sqlite3_column_type(t->stack_q, 1) != SQLITE_NULL;
            if (folding && has_mod && uninteresting_module(mod))
                continue;
            if (folding)
                k->module = cmt_text_dup(has_mod ? base_name(mod) : "[unknown]");
            folding = 0;
            char **slot = cmt_push(&k->frames, &n, &cap, sizeof *slot);
            if (!slot)
                goto oom;
            k->nframes = (int)n;
            char *raw = frame_name(fn, mod, sqlite3_column_int64(t->stack_q, 2), sqlite3_column_int64(t->stack_q, 3),
                                   has_mod);
            *slot = cmt_text_dup(raw);
            free(raw);
            if (!*slot)
                goto oom;
            if (t->lines_q) {
                struct cmt_frame_src *ns = realloc(k->src, n * sizeof *ns);
                if (!ns)
                    goto oom;
                k->src = ns;
                k->src[n - 1] = (struct cmt_frame_src){0, NULL};
                k->nsrc = (int)n;
                if (frame_src_load(t, k, (int)n - 1, sqlite3_column_int64(t->stack_q, 4)) != 0)
                    goto oom;
            }
            if (n > 1)
                sb_putc(&key, '\n');
            sb_puts(&key, *slot);
        }
        sqlite3_reset(t->stack_q);
        if (rc != SQLITE_DONE) {
            db_fail(t, rc, err, errlen);
            goto error;
        }
    }
    if (!k->module)
        k->module = strdup(stack_id == CMT_NO_STACK ? "[no stack]" : "[unknown]");
    if (n == 0)
        sb_puts(&key, stack_id == CMT_NO_STACK ? "[no stack]" : "[no frames]");
    if (key.oom || !key.p || !k->module)
        goto oom;
    k->key = key.p;
    return k;
oom:
    cmt_fail(err, errlen, "out of memory");
error:
    if (k) {
        stack_src_free(k);
        for (int j = 0; j < k->nframes; j++)
            free(k->frames[j]);
        free(k->frames);
        free(k->module);
        free(k);
    }
    sb_free(&key);
    return NULL;
}

int cmt_stack_get(struct cmt_trace *t, int32_t stack_id, const struct cmt_stack **out, char *err, size_t errlen)
{
    int64_t *ix = imap_get(&t->stack_ix, (uint64_t)(int64_t)stack_id);
    if (ix) {
        *out = t->stacks[*ix];
        return 0;
    }
    struct cmt_stack *k = stack_load(t, stack_id, err, errlen);
    if (!k)
        return -1;
    struct cmt_stack **slot = cmt_push(&t->stacks, &t->nstacks, &t->stackcap, sizeof *slot);
    if (!slot || imap_put(&t->stack_ix, (uint64_t)(int64_t)stack_id, (int64_t)t->nstacks - 1) != 0) {
        if (slot)
            t->nstacks--;
        free(k->key);
        stack_src_free(k);
        for (int j = 0; j < k->nframes; j++)
            free(k->frames[j]);
        free(k->frames);
        free(k->module);
        free(k);
        return cmt_fail(err, errlen, "out of memory");
    }
    *slot = k;
    *out = k;
    return 0;
}

/* ---------------------------------------------------------------------------------------------------
 * The pass */

static int dev_slot(struct cmt_trace *t, int has_dev, int64_t device)
{
    int64_t want = has_dev ? device : -1;
    for (size_t i = 0; i < t->ndevs; i++)
        if (t->devs[i].device == want)
            return (int)i;
    struct cmt_dev *d = cmt_push(&t->devs, &t->ndevs, &t->devcap, sizeof *d);
    if (!d)
        return -1;
    d->device = want;
    return (int)t->ndevs - 1;
}

static struct cmt_panel *panel_get(struct cmt_set *s, int trace, int dev)
{
    for (size_t i = 0; i < s->npanels; i++)
        if (s->panels[i].trace == trace && s->panels[i].dev == dev)
            return &s->panels[i];
    struct cmt_panel *p = cmt_push(&s->panels, &s->npanels, &s->panelcap, sizeof *p);
    if (!p)
        return NULL;
    p->trace = trace;
    p->dev = dev;
    p->b = calloc((size_t)s->opt.points, sizeof *p->b);
    if (!p->b) {
        s->npanels--;
        return NULL;
    }
    return p;
}

static void panel_sample(struct cmt_set *s, struct cmt_panel *p, int64_t ts)
{
    int64_t span = s->tend - s->t0;
    int64_t rel = ts - s->t0;
    int nb = s->opt.points;
    /* clamped before the conversion: an event outside [t0, tend] (a damaged time) lands in an end bucket */
    double x = span > 0 ? (double)rel / (double)span * nb : 0;
    int i = x < 0 ? 0 : x >= nb ? nb - 1 : (int)x;
    struct cmt_bucket *b = &p->b[i];
    int64_t total = 0;
    for (int l = 0; l < s->nlayers; l++)
        if (s->layer_physical[l])
            total += p->vals[l];
    if (!b->touched || total > b->max_total) {
        b->max_total = total;
        b->max_ts = ts;
        memcpy(b->maxv, p->vals, sizeof b->maxv);
    }
    b->touched = 1;
    b->end_ts = ts;
    memcpy(b->endv, p->vals, sizeof b->endv);
}

/* The timeline layer of an allocation: its kind, or the module its stack was made in. */
static int layer_of(struct cmt_set *s, struct cmt_trace *t, const struct cmt_rec *r, char *err, size_t errlen)
{
    if (s->opt.by == CMT_BY_KIND) {
        switch (r->kind) {
        case CMT_KIND_DEVICE:
        case CMT_KIND_ARRAY: return 0;
        case CMT_KIND_STREAM_ORDERED: return 1;
        case CMT_KIND_VMM_PHYSICAL: return 2;
        case CMT_KIND_MANAGED: return 3;
        case CMT_KIND_HOST_PINNED: return 4;
        default: return -2;
        }
    }
    if (!CMT_KIND_IS_PHYSICAL(r->kind))
        return -2;
    const struct cmt_stack *k;
    if (cmt_stack_get(t, r->stack_id, &k, err, errlen) != 0)
        return -1;
    if (s->opt.by == CMT_BY_COMPONENT) { /* layers are the components, in their order */
        struct cmt_stack *mk = (struct cmt_stack *)k; /* ours: the trace owns its stacks */
        if (!mk->comp1)
            mk->comp1 = cmt_rules_match_stack(s->opt.rules, k) + 1; /* once per stack, not per allocation */
        return mk->comp1 - 1;
    }
    int64_t *l = smap_get(&s->module_layer, k->module);
    if (l)
        return (int)*l;
    /* First modules seen get their own layer; the last layer collects the rest. */
    int ix = s->nlayers < CMT_MAX_LAYERS - 1 ? s->nlayers : CMT_MAX_LAYERS - 1;
    if (ix == s->nlayers) {
        s->layer_names[ix] = strdup(ix == CMT_MAX_LAYERS - 1 ? "other" : k->module);
        s->layer_physical[ix] = 1;
        s->nlayers++;
        if (!s->layer_names[ix])
            return cmt_fail(err, errlen, "out of memory");
    }
    if (smap_put(&s->module_layer, k->module, ix) != 0)
        return cmt_fail(err, errlen, "out of memory");
    return ix;
}

/* The set's slot for the physical GPU behind a device of a trace: same host and uuid (or ordinal when the
 * trace has no uuid for it). 0 on success. */
static int shared_slot(struct cmt_set *s, struct cmt_trace *t, struct cmt_dev *dv)
{
    for (size_t i = 0; i < s->nshared; i++) {
        struct cmt_shared_dev *g = &s->shared[i];
        int same_host = (!g->host && !t->host) || (g->host && t->host && !strcmp(g->host, t->host));
        int same_dev = g->uuid || dv->uuid ? g->uuid && dv->uuid && !strcmp(g->uuid, dv->uuid) : g->device == dv->device;
        if (same_host && same_dev) {
            dv->shared = (int)i + 1;
            return 0;
        }
    }
    struct cmt_shared_dev *g = cmt_push(&s->shared, &s->nshared, &s->sharedcap, sizeof *g);
    if (!g)
        return -1;
    g->host = t->host;
    g->uuid = dv->uuid;
    g->device = dv->device;
    dv->shared = (int)s->nshared;
    return 0;
}

/* Applies +size or -size of an allocation to every counter and, for device memory, the peaks. */
static int account(struct cmt_set *s, size_t ti, const struct cmt_rec *r, int sign, int64_t seq, int64_t ts,
                   char *err, size_t errlen)
{
    struct cmt_trace *t = s->t[ti];
    int64_t d = sign * r->size;
    t->kind_live[r->kind] += d;
    if (t->kind_live[r->kind] > t->kind_peak[r->kind])
        t->kind_peak[r->kind] = t->kind_live[r->kind];
    if (CMT_KIND_IS_PHYSICAL(r->kind)) {
        struct cmt_dev *dv = &t->devs[r->dev];
        dv->live += d;
        if (dv->live > dv->peak) {
            dv->peak = dv->live;
            dv->peak_ts = ts;
            dv->peak_seq = seq;
        }
        if (!dv->shared && shared_slot(s, t, dv) != 0)
            return cmt_fail(err, errlen, "out of memory");
        struct cmt_shared_dev *g = &s->shared[dv->shared - 1];
        g->live += d;
        if (g->live > g->peak) {
            g->peak = g->live;
            g->peak_ts = ts;
        }
        t->live += d;
        cmt_ranges_observe(t, seq, t->live - d, t->live);
        if (t->live > t->peak) {
            t->peak = t->live;
            t->peak_ts = ts;
            t->peak_seq = seq;
            t->peak_dev = r->dev;
        }
        s->live += d;
        if (s->live > s->peak) {
            s->peak = s->live;
            s->peak_ts = ts;
            s->peak_seq = seq;
            s->peak_trace = (int)ti;
            /* Remember how far each trace had got: what was live then is decided after the pass. */
            for (size_t i = 0; i < s->n; i++)
                s->t[i]->snap_seq = s->t[i]->exited ? 0 : s->t[i]->cur_seq;
        }
    }
    if (s->opt.timeline) {
        int l = layer_of(s, t, r, err, errlen);
        if (l == -1)
            return -1;
        if (l >= 0) {
            struct cmt_panel *p = panel_get(s, (int)ti, r->dev);
            if (!p)
                return cmt_fail(err, errlen, "out of memory");
            p->vals[l] += d;
            panel_sample(s, p, ts);
        }
        if (CMT_KIND_IS_PHYSICAL(r->kind)) {
            struct cmt_panel *all = panel_get(s, -1, 0);
            if (!all)
                return cmt_fail(err, errlen, "out of memory");
            all->vals[0] = s->live;
            panel_sample(s, all, ts);
        }
    }
    return 0;
}

enum { C_SEQ, C_TS, C_API, C_OP, C_KIND, C_DEV, C_ADDR, C_SIZE, C_HANDLE, C_RESULT, C_STACK, C_FREE, C_TOTAL, C_AUX };

static int handle_event(struct cmt_set *s, size_t ti, sqlite3_stmt *st, char *err, size_t errlen)
{
    struct cmt_trace *t = s->t[ti];
    /* Every column the pass reads is an integer (or NULL where the schema allows it). */
    if (cmt_row_check(t->path, st, "iiiiiIIIIiIII", "event", (long long)sqlite3_column_int64(st, C_SEQ), err,
                      errlen) != 0)
        return -1;
    int64_t seq = sqlite3_column_int64(st, C_SEQ), ts = sqlite3_column_int64(st, C_TS);
    int api = sqlite3_column_int(st, C_API), op = sqlite3_column_int(st, C_OP), kind = sqlite3_column_int(st, C_KIND);
    int64_t addr = sqlite3_column_int64(st, C_ADDR), size = sqlite3_column_int64(st, C_SIZE);
    int64_t result = sqlite3_column_int64(st, C_RESULT);
    int has_dev = sqlite3_column_type(st, C_DEV) != SQLITE_NULL;
    /* What a driver can hand out, and when: anything else is damage, and would overflow the sums. */
    if (size < 0 || size > CMT_MAX_SIZE)
        return cmt_fail(err, errlen, "%s: corrupt trace: event %lld has an impossible size (%lld)", t->path,
                        (long long)seq, (long long)size);
    if (ts < 0 || ts > CMT_MAX_TS)
        return cmt_fail(err, errlen, "%s: corrupt trace: event %lld has an impossible time (%lld)", t->path,
                        (long long)seq, (long long)ts);
    int64_t device = sqlite3_column_int64(st, C_DEV);
    int32_t stack_id = sqlite3_column_type(st, C_STACK) == SQLITE_NULL ? CMT_NO_STACK
                                                                        : (int32_t)sqlite3_column_int64(st, C_STACK);
    t->n_events++;
    t->cur_seq = seq;
    t->api_count[api > 0 && api < CMT_NAPIS ? api : 0]++;
    if (kind < 0 || kind >= CMT_NKINDS)
        kind = 0;

    if (result != 0) {
        if (!CMT_OP_IS_ACQUIRE(op)) {
            if (CMT_OP_IS_RELEASE(op))
                t->failed_releases++;
            return 0;
        }
        struct cmt_failure *f = cmt_push(&s->fails, &s->nfails, &s->failcap, sizeof *f);
        if (!f)
            return cmt_fail(err, errlen, "out of memory");
        f->trace = (int)ti;
        f->seq = seq;
        f->ts = ts;
        f->size = size;
        f->result = result;
        f->has_free = sqlite3_column_type(st, C_FREE) != SQLITE_NULL;
        f->free_bytes = sqlite3_column_int64(st, C_FREE);
        f->total_bytes = sqlite3_column_int64(st, C_TOTAL);
        f->live_bytes = t->live;
        f->device = has_dev ? device : -1;
        f->stack_id = stack_id;
        f->api = (uint8_t)(api > 0 && api < CMT_NAPIS ? api : 0);
        f->kind = (uint8_t)kind;
        return 0;
    }

    switch (op) {
    case CMT_OP_SAMPLE: {
        /* Kept as they are for the ledger (ledger.c): a few per second at most. */
        struct cmt_sample *x = cmt_push(&t->samples, &t->nsamples, &t->samplecap, sizeof *x);
        if (!x)
            return cmt_fail(err, errlen, "out of memory");
        x->seq = seq;
        x->ts = ts;
        x->api = api;
        x->kind = kind;
        x->device = has_dev ? device : -1;
#define OPTIONAL(field, c, bit)                                                                         \
        do {                                                                                            \
            if (sqlite3_column_type(st, c) != SQLITE_NULL) {                                            \
                x->field = sqlite3_column_int64(st, c);                                                 \
                x->present |= bit;                                                                      \
            }                                                                                           \
        } while (0)
        OPTIONAL(size, C_SIZE, CMT_SAMPLE_SIZE);
        OPTIONAL(aux, C_AUX, CMT_SAMPLE_AUX);
        OPTIONAL(handle, C_HANDLE, CMT_SAMPLE_HANDLE);
        OPTIONAL(free_bytes, C_FREE, CMT_SAMPLE_FREE);
        OPTIONAL(total_bytes, C_TOTAL, CMT_SAMPLE_TOTAL);
#undef OPTIONAL
        return 0;
    }
    case CMT_OP_RETAIN:
    case CMT_OP_CREATE: {
        /* Another reference to a handle already live here (a retain, an import of our own export): the
         * memory stays with the first acquire until the last release. */
        uint64_t h = (uint64_t)sqlite3_column_int64(st, C_HANDLE);
        if (imap_get(&t->by_handle, h)) {
            int64_t *n = imap_get(&t->handle_refs, h);
            if (imap_put(&t->handle_refs, h, (n ? *n : 0) + 1) != 0)
                return cmt_fail(err, errlen, "out of memory");
            return 0;
        }
        if (op == CMT_OP_RETAIN) {
            t->unmatched_releases++; /* a reference to a handle created before tracing began */
            return 0;
        }
        if (kind != CMT_KIND_VMM_IMPORTED)
            kind = CMT_KIND_VMM_PHYSICAL;
        __attribute__((fallthrough)); /* a new handle: recorded as an allocation is */
    }
    case CMT_OP_ALLOC: {
        int dv = dev_slot(t, has_dev, device);
        struct cmt_rec *r = cmt_push(&t->recs, &t->nrecs, &t->reccap, sizeof *r);
        if (dv < 0 || !r)
            return cmt_fail(err, errlen, "out of memory");
        r->seq = seq;
        r->free_seq = CMT_LIVE;
        r->size = size;
        r->stack_id = stack_id;
        r->dev = (int16_t)dv;
        r->kind = (uint8_t)kind;
        r->api = (uint8_t)(api > 0 && api < CMT_NAPIS ? api : 0);
        int64_t ix = (int64_t)t->nrecs - 1;
        /* A second acquire of a live address (should not happen) leaves the first one live forever. */
        if (imap_put(op == CMT_OP_CREATE ? &t->by_handle : &t->by_addr,
                     (uint64_t)sqlite3_column_int64(st, op == CMT_OP_CREATE ? C_HANDLE : C_ADDR), ix) != 0)
            return cmt_fail(err, errlen, "out of memory");
        return account(s, ti, r, +1, seq, ts, err, errlen);
    }
    case CMT_OP_FREE:
    case CMT_OP_RELEASE: {
        int64_t ix;
        uint64_t key = (uint64_t)(op == CMT_OP_RELEASE ? sqlite3_column_int64(st, C_HANDLE) : addr);
        int64_t *refs = op == CMT_OP_RELEASE ? imap_get(&t->handle_refs, key) : NULL;
        if (refs && *refs > 0) {
            if (--*refs == 0)
                imap_del(&t->handle_refs, key, &ix);
            return 0; /* a retained or imported reference given back: the memory stays */
        }
        if (!imap_del(op == CMT_OP_RELEASE ? &t->by_handle : &t->by_addr, key, &ix)) {
            t->unmatched_releases++; /* allocated before tracing began, or never allocated */
            return 0;
        }
        struct cmt_rec *r = &t->recs[ix];
        r->free_seq = seq;
        return account(s, ti, r, -1, seq, ts, err, errlen);
    }
    case CMT_OP_RESERVE:
    case CMT_OP_IPC_OPEN: {
        int k = op == CMT_OP_RESERVE ? CMT_KIND_VA_RESERVATION : CMT_KIND_IPC;
        if (imap_put(op == CMT_OP_RESERVE ? &t->by_reserve : &t->by_ipc, (uint64_t)addr, size) != 0)
            return cmt_fail(err, errlen, "out of memory");
        t->kind_live[k] += size;
        if (t->kind_live[k] > t->kind_peak[k])
            t->kind_peak[k] = t->kind_live[k];
        return 0;
    }
    case CMT_OP_UNRESERVE:
    case CMT_OP_IPC_CLOSE: {
        int k = op == CMT_OP_UNRESERVE ? CMT_KIND_VA_RESERVATION : CMT_KIND_IPC;
        int64_t sz;
        if (imap_del(op == CMT_OP_UNRESERVE ? &t->by_reserve : &t->by_ipc, (uint64_t)addr, &sz))
            t->kind_live[k] -= sz;
        else
            t->unmatched_releases++;
        return 0;
    }
    case CMT_OP_MAP: {
        struct cmt_map *m = cmt_push(&t->maps, &t->nmaps, &t->mapcap, sizeof *t->maps);
        if (!m)
            return cmt_fail(err, errlen, "out of memory");
        m->address = addr;
        m->size = size;
        t->kind_live[CMT_KIND_VMM_MAPPING] += size;
        if (t->kind_live[CMT_KIND_VMM_MAPPING] > t->kind_peak[CMT_KIND_VMM_MAPPING])
            t->kind_peak[CMT_KIND_VMM_MAPPING] = t->kind_live[CMT_KIND_VMM_MAPPING];
        return 0;
    }
    case CMT_OP_UNMAP: {
        /* One unmap may cover several mappings; mappings are few, a scan is enough. */
        int found = 0;
        for (size_t i = 0; i < t->nmaps;) {
            int64_t a = t->maps[i].address;
            if (a == addr || (size > 0 && a >= addr && a - addr < size)) {
                t->kind_live[CMT_KIND_VMM_MAPPING] -= t->maps[i].size;
                t->maps[i] = t->maps[--t->nmaps];
                found = 1;
            } else {
                i++;
            }
        }
        if (!found)
            t->unmatched_releases++;
        return 0;
    }
    default:
        return 0; /* trim, or an op newer than this analyzer: nothing to account */
    }
}

int cmt_set_analyze(struct cmt_set *s, const struct cmt_options *o, char *err, size_t errlen)
{
    s->opt = *o;
    if (s->opt.points <= 0)
        s->opt.points = 2000;
    if (s->opt.timeline) {
        if (s->opt.by == CMT_BY_KIND) {
            static const char *names[] = {"device", "stream_ordered", "vmm_physical", "managed", "host_pinned"};
            for (int i = 0; i < 5; i++) {
                s->layer_names[i] = strdup(names[i]);
                s->layer_physical[i] = i < 3;
                if (!s->layer_names[i])
                    return cmt_fail(err, errlen, "out of memory");
            }
            s->nlayers = 5;
        } else if (s->opt.by == CMT_BY_COMPONENT) {
            assert(CMT_NCOMP <= CMT_MAX_LAYERS);
            for (int i = 0; i < CMT_NCOMP; i++) {
                s->layer_names[i] = strdup(cmt_comp_names[i]);
                s->layer_physical[i] = 1;
                if (!s->layer_names[i])
                    return cmt_fail(err, errlen, "out of memory");
            }
            s->nlayers = CMT_NCOMP;
        } else {
            s->nlayers = 0;
        }
    }
    /* Prime one row per trace, then always take the earliest: several processes share one clock
     * (CLOCK_MONOTONIC), so the merged order is the order things happened on this host. Within a trace
     * the order is seq, which the writer made consistent. A trace whose rows are exhausted still has one
     * thing to happen: its process ends, at its end time, and the driver takes back what it held, so it
     * no longer counts in the processes' sum. */
    for (size_t i = 0; i < s->n; i++)
        if (cmt_ranges_load(s->t[i], err, errlen) != 0)
            return -1;
    enum { DONE, ROW, EXIT };
    int *live = calloc(s->n, sizeof *live);
    if (!live)
        return cmt_fail(err, errlen, "out of memory");
    int rc = 0;
    size_t active = 0;
    for (size_t i = 0; i < s->n; i++) {
        int r = sqlite3_step(s->t[i]->events);
        if (r == SQLITE_ROW) {
            live[i] = ROW;
            active++;
        } else if (r != SQLITE_DONE) {
            rc = db_fail(s->t[i], r, err, errlen);
            goto out;
        } else if (s->n > 1) {
            live[i] = EXIT;
            active++;
        }
    }
    while (active) {
        size_t best = 0;
        int64_t best_ts = INT64_MAX;
        for (size_t i = 0; i < s->n && s->n > 1; i++) {
            if (live[i] == DONE)
                continue;
            struct cmt_trace *t = s->t[i];
            int64_t ts = live[i] == ROW ? sqlite3_column_int64(t->events, C_TS)
                                        : (t->has_end && t->end_ns > t->last_ts ? t->end_ns : t->last_ts);
            if (ts < best_ts) {
                best_ts = ts;
                best = i;
            }
        }
        struct cmt_trace *t = s->t[best];
        if (live[best] == EXIT) {
            s->live -= t->live;
            for (size_t d = 0; d < t->ndevs; d++)
                if (t->devs[d].shared)
                    s->shared[t->devs[d].shared - 1].live -= t->devs[d].live;
            t->exited = 1;
            live[best] = DONE;
            active--;
            if (s->opt.timeline) {
                struct cmt_panel *all = panel_get(s, -1, 0);
                if (!all) {
                    rc = cmt_fail(err, errlen, "out of memory");
                    goto out;
                }
                all->vals[0] = s->live;
                panel_sample(s, all, best_ts);
            }
            continue;
        }
        if (handle_event(s, best, t->events, err, errlen) != 0) {
            rc = -1;
            goto out;
        }
        int r = sqlite3_step(t->events);
        if (r != SQLITE_ROW) {
            live[best] = s->n > 1 ? EXIT : DONE;
            if (live[best] == DONE)
                active--;
            if (r != SQLITE_DONE) {
                rc = db_fail(t, r, err, errlen);
                goto out;
            }
        }
    }
    /* Traces that never reached a peak (no device memory at all) keep snap_seq = 0: nothing live. */
    for (size_t i = 0; i < s->n; i++)
        cmt_ranges_finish(s->t[i]);
out:
    free(live);
    return rc;
}

/* ---------------------------------------------------------------------------------------------------
 * Groupings */

static int rec_selected(const struct cmt_trace *t, const struct cmt_rec *r, enum cmt_select sel, int peak_set)
{
    if (!CMT_KIND_IS_PHYSICAL(r->kind))
        return 0;
    switch (sel) {
    case CMT_AT_PEAK: return peak_set && r->seq <= t->snap_seq && r->free_seq > t->snap_seq;
    case CMT_LEAKED: return r->free_seq == CMT_LIVE;
    case CMT_TOTAL: return 1;
    }
    return 0;
}

static int cmp_group(const void *a, const void *b)
{
    const struct cmt_group *x = a, *y = b;
    if (x->bytes != y->bytes)
        return x->bytes > y->bytes ? -1 : 1;
    if (x->count != y->count)
        return x->count > y->count ? -1 : 1;
    return strcmp(x->name, y->name);
}

static int group(struct cmt_set *s, enum cmt_select sel, int by_module, struct cmt_group **out, size_t *nout,
                 char *err, size_t errlen)
{
    struct smap ix = {0};
    struct cmt_group *g = NULL;
    size_t n = 0, cap = 0;
    int rc = -1;
    *out = NULL;
    *nout = 0;
    for (size_t ti = 0; ti < s->n; ti++) {
        struct cmt_trace *t = s->t[ti];
        /* First by stack id within the trace (cheap), then by symbolized key across traces. Keys are
         * stack_id + 1: CMT_NO_STACK (-1) would otherwise be the map's reserved empty key. */
        struct imap per = {0};
        struct { int32_t stack; int64_t bytes, count; } *acc = NULL;
        size_t na = 0, ca = 0;
        int bad = 0;
        for (size_t i = 0; i < t->nrecs && !bad; i++) {
            const struct cmt_rec *r = &t->recs[i];
            if (!rec_selected(t, r, sel, s->peak_trace >= 0))
                continue;
            int64_t *p = imap_get(&per, (uint64_t)((int64_t)r->stack_id + 1));
            if (!p) {
                if (!cmt_push(&acc, &na, &ca, sizeof *acc) ||
                    imap_put(&per, (uint64_t)((int64_t)r->stack_id + 1), (int64_t)na - 1) != 0) {
                    bad = 1;
                    break;
                }
                acc[na - 1].stack = r->stack_id;
                p = imap_get(&per, (uint64_t)((int64_t)r->stack_id + 1));
            }
            acc[*p].bytes += r->size;
            acc[*p].count++;
        }
        imap_free(&per);
        for (size_t i = 0; i < na && !bad; i++) {
            const struct cmt_stack *k;
            if (cmt_stack_get(t, acc[i].stack, &k, err, errlen) != 0) {
                bad = 2;
                break;
            }
            const char *name = by_module ? k->module : k->key;
            int64_t *p = smap_get(&ix, name);
            if (!p) {
                struct cmt_group *e = cmt_push(&g, &n, &cap, sizeof *e);
                if (!e || smap_put(&ix, name, (int64_t)n - 1) != 0) {
                    bad = 1;
                    break;
                }
                e->stack = by_module ? NULL : k;
                e->name = name;
                p = smap_get(&ix, name);
            }
            g[*p].bytes += acc[i].bytes;
            g[*p].count += acc[i].count;
        }
        free(acc);
        if (bad == 1)
            cmt_fail(err, errlen, "out of memory");
        if (bad)
            goto out;
    }
    if (n)
        qsort(g, n, sizeof *g, cmp_group);
    *out = g;
    *nout = n;
    g = NULL;
    rc = 0;
out:
    free(g);
    smap_free(&ix);
    return rc;
}

int cmt_group_by_stack(struct cmt_set *s, enum cmt_select sel, struct cmt_group **out, size_t *n, char *err,
                       size_t errlen)
{
    return group(s, sel, 0, out, n, err, errlen);
}

int cmt_group_by_module(struct cmt_set *s, enum cmt_select sel, struct cmt_group **out, size_t *n, char *err,
                        size_t errlen)
{
    return group(s, sel, 1, out, n, err, errlen);
}
