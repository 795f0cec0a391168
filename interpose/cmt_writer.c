/*
 * cmt_writer.c: the writer thread (see cmt_writer.h).
 *
 * Runs on its own thread, with every signal blocked, so that the application's signals go to its own
 * threads. The only code in the interposer that calls SQLite. It never waits for an application thread,
 * and never calls into the CUDA driver (the recorder describes devices: see cmt_record.h); application
 * threads wait for it only when the queue is full, at fork, and at exit/exec, each time bounded.
 */
#include "cmt_writer.h"

#include "cmt_db.h"
#include "cmt_events.h"
#include "cmt_log.h"
#include "cmt_record.h"
#include "cmt_runtime.h"
#include "cmt_symbols.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/futex.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#define COMMIT_INTERVAL_NS (100ull * 1000 * 1000) /* the most a SIGKILL can cost */
#define BATCH_EVENTS 4096

static pthread_t writer_thread;
static _Atomic int writer_alive;   /* the thread exists and drains the queue */
static _Atomic int stop_requested;
static _Atomic int stop_quick;     /* a fatal signal: finish without building indexes */
static _Atomic int writer_done;    /* the file is finalized and closed (or was never opened) */
static _Atomic int wake_word;
static _Atomic int writer_tid;
static _Atomic int writer_started; /* writer_main holds fork_lock */
static _Atomic int writer_starting; /* between the state change to RUNNING and writer_alive */
/* Held by the writer whenever it is awake, and by fork() (see idle() and cmt_writer_fork_prepare). */
static pthread_mutex_t fork_lock = PTHREAD_MUTEX_INITIALIZER;

/* ---- writer-thread state ------------------------------------------------------------------------ */

static sqlite3 *db;
static sqlite3_stmt *st_event, *st_events_multi, *st_stack, *st_frame, *st_module;
#define EVENT_COLUMNS 18 /* parameters of CMT_SQL_INSERT_EVENT */

/* Rows go in ROWS_PER_INSERT at a time through one multi-row INSERT: SQLite's cost per statement step,
 * not per row, is what limits the writer (about 0.65 M rows/s one by one here, 1 M in groups). */
#define ROWS_PER_INSERT 32

struct pending_row {
    struct cmt_event ev; /* the header only: frames are already interned */
    uint64_t stack_id;
};
static struct pending_row pending[ROWS_PER_INSERT];
static int npending;

static char trace_path[PATH_MAX + 64];
static int in_txn;
static uint64_t last_commit_ns, events_written;

/* Open-addressing map from a non-zero 64-bit key to a 64-bit value. */
struct map {
    uint64_t *keys, *vals;
    uint64_t cap, n;
};

static uint64_t mix(uint64_t x)
{
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdull;
    x ^= x >> 33;
    x *= 0xc4ceb9fe1a85ec53ull;
    return x ^ (x >> 33);
}

static uint64_t *map_slot(struct map *m, uint64_t key)
{
    uint64_t i = mix(key) & (m->cap - 1);
    while (m->keys[i] && m->keys[i] != key)
        i = (i + 1) & (m->cap - 1);
    return &m->keys[i];
}

static int map_get(struct map *m, uint64_t key, uint64_t *val)
{
    if (!m->cap)
        return 0;
    uint64_t *k = map_slot(m, key);
    if (!*k)
        return 0;
    *val = m->vals[k - m->keys];
    return 1;
}

static int map_put(struct map *m, uint64_t key, uint64_t val)
{
    if ((m->n + 1) * 2 > m->cap) {
        struct map g = {0};
        g.cap = m->cap ? m->cap * 2 : 1024;
        g.keys = calloc(g.cap, sizeof *g.keys);
        g.vals = calloc(g.cap, sizeof *g.vals);
        if (!g.keys || !g.vals) {
            free(g.keys);
            free(g.vals);
            return -1;
        }
        for (uint64_t i = 0; i < m->cap; i++)
            if (m->keys[i]) {
                uint64_t *k = map_slot(&g, m->keys[i]);
                *k = m->keys[i];
                g.vals[k - g.keys] = m->vals[i];
                g.n++;
            }
        free(m->keys);
        free(m->vals);
        *m = g;
    }
    uint64_t *k = map_slot(m, key);
    if (!*k)
        m->n++;
    *k = key;
    m->vals[k - m->keys] = val;
    return 0;
}

static void map_free(struct map *m)
{
    free(m->keys);
    free(m->vals);
    memset(m, 0, sizeof *m);
}

static struct map frame_ids;  /* ip -> frame_id */
static struct map stack_ids;  /* stack hash -> index into stacks[] (+1) */
static struct map seen_tids;  /* tid -> 1 */
static struct map seen_devs;  /* device + 1 -> 1 */

/* Known stacks, for exact comparison behind the hash. */
struct stack_rec {
    uint64_t hash;
    uint64_t id;
    uint32_t n;
    uintptr_t *frames;
    uint64_t next; /* index+1 of the next record with the same hash, 0 = none */
};
static struct stack_rec *stacks;
static uint64_t nstacks, cap_stacks, next_frame_id = 1;
static long next_module_id = 1;

static uint64_t hash_frames(const uintptr_t *f, unsigned n)
{
    uint64_t h = 0x9e3779b97f4a7c15ull ^ n;
    for (unsigned i = 0; i < n; i++)
        h = mix(h ^ f[i]) + i;
    return h ? h : 1;
}

static void reset_state(void)
{
    map_free(&frame_ids);
    map_free(&stack_ids);
    map_free(&seen_tids);
    map_free(&seen_devs);
    for (uint64_t i = 0; i < nstacks; i++)
        free(stacks[i].frames);
    free(stacks);
    stacks = NULL;
    nstacks = cap_stacks = 0;
    next_frame_id = 1;
    next_module_id = 1;
    cmt_symbols_reset();
    db = NULL;
    st_event = st_events_multi = st_stack = st_frame = st_module = NULL;
    npending = 0;
    in_txn = 0;
    events_written = 0;
}

/* ---- SQLite helpers ------------------------------------------------------------------------------ */

static int sql_fail(const char *what)
{
    cmt_log("cannot write %s (%s: %s); recording stops, the program continues", trace_path, what,
            db ? sqlite3_errmsg(db) : "no database");
    return -1;
}

static void bind_opt(sqlite3_stmt *st, int i, int present, uint64_t v)
{
    if (present)
        sqlite3_bind_int64(st, i, (sqlite3_int64)v);
    else
        sqlite3_bind_null(st, i);
}

static int step_reset(sqlite3_stmt *st)
{
    int rc = sqlite3_step(st);
    sqlite3_reset(st);
    return rc == SQLITE_DONE ? 0 : -1;
}

static int exec_sql(const char *sql)
{
    return sqlite3_exec(db, sql, NULL, NULL, NULL) == SQLITE_OK ? 0 : -1;
}

static int flush_rows(void);

static int commit(void)
{
    if (!in_txn)
        return 0;
    if (flush_rows() != 0)
        return sql_fail("insert");
    char sql[160];
    snprintf(sql, sizeof sql, "UPDATE process SET events_written = %llu, events_lost = %llu; COMMIT",
             (unsigned long long)events_written, (unsigned long long)atomic_load(&cmt_lost));
    in_txn = 0;
    last_commit_ns = cmt_now_ns();
    if (exec_sql(sql) != 0)
        return sql_fail("commit");
    return 0;
}

static int begin(void)
{
    if (in_txn)
        return 0;
    if (exec_sql("BEGIN") != 0)
        return sql_fail("begin");
    in_txn = 1;
    return 0;
}

/* ---- opening the file ---------------------------------------------------------------------------- */

static int is_dir(const char *p)
{
    struct stat st;
    return stat(p, &st) == 0 && S_ISDIR(st.st_mode);
}

/* Creates the file exclusively, so two processes never share one: a forked child or an exec'ed program
 * finds its parent's name taken and writes STEM.PROGRAM-PID.db beside it. */
static int claim(const char *path)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (fd < 0)
        return -errno;
    close(fd);
    return 0;
}

static int choose_path(char *out, size_t len)
{
    const char *o = cmt_config.output;
    int pid = (int)getpid();
    size_t olen = strlen(o);
    if (!olen || is_dir(o) || o[olen - 1] == '/') {
        const char *dir = olen ? o : ".";
        if (olen && !is_dir(o))
            mkdir(o, 0755);
        for (int k = 0; k < 100; k++) {
            int n = k ? snprintf(out, len, "%s/cumemtrace-%s-%d.%d.db", dir, cmt_config.prog, pid, k)
                      : snprintf(out, len, "%s/cumemtrace-%s-%d.db", dir, cmt_config.prog, pid);
            if (n < 0 || (size_t)n >= len)
                return -ENAMETOOLONG;
            int rc = claim(out);
            if (rc == 0)
                return 0;
            if (rc != -EEXIST)
                return rc;
        }
        return -EEXIST;
    }
    int rc = claim(o);
    snprintf(out, len, "%s", o);
    if (rc != -EEXIST)
        return rc;
    char stem[PATH_MAX];
    snprintf(stem, sizeof stem, "%s", o);
    char *dot = strrchr(stem, '.'), *slash = strrchr(stem, '/');
    if (dot && (!slash || dot > slash))
        *dot = 0;
    for (int k = 0; k < 100; k++) {
        int n = k ? snprintf(out, len, "%s.%s-%d.%d.db", stem, cmt_config.prog, pid, k)
                  : snprintf(out, len, "%s.%s-%d.db", stem, cmt_config.prog, pid);
        if (n < 0 || (size_t)n >= len)
            return -ENAMETOOLONG;
        rc = claim(out);
        if (rc != -EEXIST)
            return rc;
    }
    return -EEXIST;
}

static void json_string(char **p, char *end, const char *s)
{
    if (*p < end)
        *(*p)++ = '"';
    for (; *s && *p + 7 < end; s++) {
        unsigned char ch = (unsigned char)*s;
        if (ch == '"' || ch == '\\')
            *p += sprintf(*p, "\\%c", ch);
        else if (ch < 0x20)
            *p += sprintf(*p, "\\u%04x", ch);
        else
            *(*p)++ = (char)ch;
    }
    if (*p < end)
        *(*p)++ = '"';
}

/* argv from /proc/self/cmdline as a JSON array. */
static char *argv_json(void)
{
    static char cmd[32768];
    int fd = open("/proc/self/cmdline", O_RDONLY | O_CLOEXEC);
    ssize_t n = fd >= 0 ? read(fd, cmd, sizeof cmd - 1) : -1;
    if (fd >= 0)
        close(fd);
    if (n < 0)
        n = 0;
    cmd[n] = 0;
    size_t cap = (size_t)n * 6 + 16;
    char *out = malloc(cap), *p = out, *end = out + cap - 2;
    if (!out)
        return NULL;
    *p++ = '[';
    for (ssize_t i = 0; i < n; i += (ssize_t)strlen(cmd + i) + 1) {
        if (p[-1] != '[')
            *p++ = ',';
        json_string(&p, end, cmd + i);
    }
    *p++ = ']';
    *p = 0;
    return out;
}

static int write_process_rows(void)
{
    char host[256] = "", exe[PATH_MAX] = "";
    gethostname(host, sizeof host - 1);
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    exe[n > 0 ? n : 0] = 0;
    char *argv = argv_json();
    sqlite3_stmt *st = NULL;
    int rc = -1;
    if (sqlite3_prepare_v2(db,
                           "INSERT INTO process(pid, ppid, host, exe, argv, start_unix_ns, start_ns, stack_depth)"
                           " VALUES (?,?,?,?,?,?,?,?)",
                           -1, &st, NULL) != SQLITE_OK)
        goto out;
    sqlite3_bind_int(st, 1, (int)getpid());
    sqlite3_bind_int(st, 2, (int)getppid());
    sqlite3_bind_text(st, 3, host, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(st, 4, exe, -1, SQLITE_TRANSIENT);
    if (argv)
        sqlite3_bind_text(st, 5, argv, -1, SQLITE_TRANSIENT);
    sqlite3_bind_int64(st, 6, (sqlite3_int64)cmt_config.start_unix_ns);
    sqlite3_bind_int64(st, 7, (sqlite3_int64)cmt_config.start_ns);
    sqlite3_bind_int(st, 8, (int)cmt_config.depth);
    if (step_reset(st) != 0)
        goto out;
    sqlite3_finalize(st);
    st = NULL;
    if (sqlite3_prepare_v2(db, "INSERT OR REPLACE INTO env(name, value) VALUES (?,?)", -1, &st, NULL) != SQLITE_OK)
        goto out;
    for (const char *e = cmt_config.env; *e; e += strlen(e) + 1) {
        const char *eq = strchr(e, '=');
        if (!eq)
            continue;
        sqlite3_bind_text(st, 1, e, (int)(eq - e), SQLITE_TRANSIENT);
        sqlite3_bind_text(st, 2, eq + 1, -1, SQLITE_TRANSIENT);
        if (step_reset(st) != 0)
            goto out;
    }
    sqlite3_finalize(st);
    st = NULL;
    char sql[256];
    snprintf(sql, sizeof sql,
             "INSERT INTO meta VALUES ('tool_version', '%s'); INSERT INTO meta VALUES ('clock', 'CLOCK_MONOTONIC');",
             CMT_VERSION);
    rc = sqlite3_exec(db, sql, NULL, NULL, NULL) == SQLITE_OK ? 0 : -1;
out:
    sqlite3_finalize(st);
    free(argv);
    return rc;
}

static int prepare_multi_insert(void)
{
    static const char row[] = ",(?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)";
    _Static_assert(sizeof row - 3 == EVENT_COLUMNS * 2, "one '?,' per column");
    char sql[sizeof CMT_SQL_INSERT_EVENT + ROWS_PER_INSERT * sizeof row];
    char *p = sql + sprintf(sql, "%s", CMT_SQL_INSERT_EVENT);
    for (int i = 1; i < ROWS_PER_INSERT; i++)
        p += sprintf(p, "%s", row);
    if (sqlite3_prepare_v2(db, sql, -1, &st_events_multi, NULL) != SQLITE_OK)
        return -1;
    /* Guard against the schema's insert changing shape without this file following. */
    return sqlite3_bind_parameter_count(st_events_multi) == EVENT_COLUMNS * ROWS_PER_INSERT ? 0 : -1;
}

static int open_trace(void)
{
    int rc = choose_path(trace_path, sizeof trace_path);
    if (rc != 0) {
        cmt_log("cannot create a trace file at %s: %s; the program runs on without recording",
                trace_path[0] ? trace_path : cmt_config.output, strerror(-rc));
        return -1;
    }
    char err[512];
    rc = cmt_db_create(trace_path, &db, err, sizeof err);
    /* A 64 MiB page cache and rarer WAL checkpoints: the writer appends, nothing reads. */
    if (rc == 0)
        sqlite3_exec(db, "PRAGMA cache_size=-65536; PRAGMA wal_autocheckpoint=16384;", NULL, NULL, NULL);
    if (rc == 0 && (write_process_rows() != 0 ||
                    sqlite3_prepare_v2(db, CMT_SQL_INSERT_EVENT, -1, &st_event, NULL) != SQLITE_OK ||
                    prepare_multi_insert() != 0 ||
                    sqlite3_prepare_v2(db, CMT_SQL_INSERT_STACK, -1, &st_stack, NULL) != SQLITE_OK ||
                    sqlite3_prepare_v2(db, CMT_SQL_INSERT_FRAME, -1, &st_frame, NULL) != SQLITE_OK ||
                    sqlite3_prepare_v2(db, CMT_SQL_INSERT_MODULE, -1, &st_module, NULL) != SQLITE_OK)) {
        snprintf(err, sizeof err, "%s", sqlite3_errmsg(db));
        rc = -1;
    }
    if (rc != 0) {
        cmt_log("cannot create trace %s: %s; the program runs on without recording", trace_path, err);
        return -1;
    }
    return 0;
}

/* ---- one event ----------------------------------------------------------------------------------- */

static int write_module(struct cmt_module *m)
{
    m->id = next_module_id++;
    sqlite3_bind_int64(st_module, 1, m->id);
    sqlite3_bind_text(st_module, 2, m->path, -1, SQLITE_STATIC);
    if (m->build_id[0])
        sqlite3_bind_text(st_module, 3, m->build_id, -1, SQLITE_STATIC);
    else
        sqlite3_bind_null(st_module, 3);
    sqlite3_bind_int64(st_module, 4, (sqlite3_int64)m->base);
    sqlite3_bind_int64(st_module, 5, (sqlite3_int64)(m->hi - m->lo));
    return step_reset(st_module);
}

static int frame_id(uintptr_t ip, uint64_t *id)
{
    if (map_get(&frame_ids, (uint64_t)ip, id))
        return 0;
    struct cmt_frame_info fi;
    cmt_symbols_lookup(ip, &fi);
    if (fi.module && !fi.module->id && write_module(fi.module) != 0)
        return -1;
    *id = next_frame_id++;
    sqlite3_bind_int64(st_frame, 1, (sqlite3_int64)*id);
    sqlite3_bind_int64(st_frame, 2, (sqlite3_int64)ip);
    bind_opt(st_frame, 3, fi.module != NULL, fi.module ? (uint64_t)fi.module->id : 0);
    if (fi.function) {
        sqlite3_bind_text(st_frame, 4, fi.function, -1, SQLITE_STATIC);
        sqlite3_bind_int64(st_frame, 5, (sqlite3_int64)fi.symbol_offset);
    } else {
        sqlite3_bind_null(st_frame, 4);
        sqlite3_bind_null(st_frame, 5);
    }
    if (step_reset(st_frame) != 0)
        return -1;
    return map_put(&frame_ids, (uint64_t)ip, *id);
}

static int stack_id(const uintptr_t *frames, unsigned n, uint64_t *id)
{
    uint64_t h = hash_frames(frames, n), idx;
    if (map_get(&stack_ids, h, &idx)) {
        for (uint64_t i = idx; i; i = stacks[i - 1].next) {
            struct stack_rec *s = &stacks[i - 1];
            if (s->n == n && !memcmp(s->frames, frames, n * sizeof *frames)) {
                *id = s->id;
                return 0;
            }
        }
    }
    if (nstacks == cap_stacks) {
        uint64_t ncap = cap_stacks ? cap_stacks * 2 : 1024;
        struct stack_rec *g = realloc(stacks, ncap * sizeof *g);
        if (!g)
            return -1;
        stacks = g;
        cap_stacks = ncap;
    }
    struct stack_rec *s = &stacks[nstacks];
    s->frames = malloc(n * sizeof *frames);
    if (!s->frames)
        return -1;
    memcpy(s->frames, frames, n * sizeof *frames);
    s->n = n;
    s->hash = h;
    s->id = nstacks + 1;
    s->next = map_get(&stack_ids, h, &idx) ? idx : 0;
    nstacks++;
    if (map_put(&stack_ids, h, nstacks) != 0)
        return -1;
    for (unsigned d = 0; d < n; d++) {
        uint64_t fid;
        if (frame_id(frames[d], &fid) != 0)
            return -1;
        sqlite3_bind_int64(st_stack, 1, (sqlite3_int64)s->id);
        sqlite3_bind_int(st_stack, 2, (int)d);
        sqlite3_bind_int64(st_stack, 3, (sqlite3_int64)fid);
        if (step_reset(st_stack) != 0)
            return -1;
    }
    *id = s->id;
    return 0;
}

static int note_thread(int tid)
{
    uint64_t v;
    if (map_get(&seen_tids, (uint64_t)tid, &v))
        return 0;
    char path[64], name[64] = "";
    snprintf(path, sizeof path, "/proc/self/task/%d/comm", tid);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd >= 0) {
        ssize_t n = read(fd, name, sizeof name - 1);
        close(fd);
        name[n > 0 ? n : 0] = 0;
        char *nl = strchr(name, '\n');
        if (nl)
            *nl = 0;
    }
    char *sql = sqlite3_mprintf("INSERT OR IGNORE INTO threads VALUES (%d, %Q)", tid, name[0] ? name : NULL);
    int rc = sql && sqlite3_exec(db, sql, NULL, NULL, NULL) == SQLITE_OK ? 0 : -1;
    sqlite3_free(sql);
    return rc == 0 ? map_put(&seen_tids, (uint64_t)tid, 1) : -1;
}

/* Devices are described by the writer, not the recorder: these queries need no context and are rare. */
static int note_device(int dev)
{
    uint64_t v;
    if (map_get(&seen_devs, (uint64_t)dev + 1, &v))
        return 0;
    /* Described by the recorder (cmt_record.h says why not here); NULL columns if it could not be. */
    const struct cmt_device_info *info = cmt_record_device_info(dev);
    char *sql = sqlite3_mprintf("INSERT OR IGNORE INTO devices VALUES (%d, %Q, ?, %Q, ?)", dev,
                                info && info->name[0] ? info->name : NULL, info && info->uuid[0] ? info->uuid : NULL);
    sqlite3_stmt *st = NULL;
    int rc = -1;
    if (sql && sqlite3_prepare_v2(db, sql, -1, &st, NULL) == SQLITE_OK) {
        bind_opt(st, 1, info && info->have_total, info ? info->total_bytes : 0);
        bind_opt(st, 2, info && info->have_version, info ? (uint64_t)info->driver_version : 0);
        rc = step_reset(st);
    }
    sqlite3_finalize(st);
    sqlite3_free(sql);
    return rc == 0 ? map_put(&seen_devs, (uint64_t)dev + 1, 1) : -1;
}

static void bind_event(sqlite3_stmt *st, int base, const struct cmt_event *e, uint64_t sid)
{
    sqlite3_bind_int64(st, base + 1, (sqlite3_int64)e->seq);
    sqlite3_bind_int64(st, base + 2, (sqlite3_int64)e->ts_ns);
    sqlite3_bind_int(st, base + 3, e->tid);
    sqlite3_bind_int(st, base + 4, e->api);
    sqlite3_bind_int(st, base + 5, e->op);
    sqlite3_bind_int(st, base + 6, e->kind);
    bind_opt(st, base + 7, e->present & CMT_HAS_DEVICE, (uint64_t)(int64_t)e->device);
    bind_opt(st, base + 8, e->present & CMT_HAS_CONTEXT, e->context);
    bind_opt(st, base + 9, e->present & CMT_HAS_ADDRESS, e->address);
    bind_opt(st, base + 10, e->present & CMT_HAS_SIZE, e->size);
    bind_opt(st, base + 11, e->present & CMT_HAS_STREAM, e->stream);
    bind_opt(st, base + 12, e->present & CMT_HAS_HANDLE, e->handle);
    bind_opt(st, base + 13, e->present & CMT_HAS_AUX, e->aux);
    sqlite3_bind_int(st, base + 14, e->result);
    sqlite3_bind_int64(st, base + 15, (sqlite3_int64)e->duration_ns);
    bind_opt(st, base + 16, e->nframes != 0, sid);
    bind_opt(st, base + 17, e->present & CMT_HAS_MEMINFO, e->free_bytes);
    bind_opt(st, base + 18, e->present & CMT_HAS_MEMINFO, e->total_bytes);
}

/* Inserts the pending rows: a full group with the multi-row statement, a partial one row by row. */
static int flush_rows(void)
{
    int n = npending;
    npending = 0;
    if (n == ROWS_PER_INSERT) {
        for (int i = 0; i < n; i++)
            bind_event(st_events_multi, i * EVENT_COLUMNS, &pending[i].ev, pending[i].stack_id);
        if (step_reset(st_events_multi) != 0)
            return -1;
    } else {
        for (int i = 0; i < n; i++) {
            bind_event(st_event, 0, &pending[i].ev, pending[i].stack_id);
            if (step_reset(st_event) != 0)
                return -1;
        }
    }
    events_written += (uint64_t)n;
    return 0;
}

static int write_event(const struct cmt_event *e)
{
    uint64_t sid = 0;
    if (note_thread(e->tid) != 0 || ((e->present & CMT_HAS_DEVICE) && e->device >= 0 && note_device(e->device) != 0) ||
        (e->nframes && stack_id(e->frames, e->nframes, &sid) != 0))
        return -1;
    pending[npending].ev = *e;
    pending[npending].stack_id = sid;
    if (++npending == ROWS_PER_INSERT)
        return flush_rows();
    return 0;
}

/* ---- the thread ---------------------------------------------------------------------------------- */

static void futex_wait(_Atomic int *word, int expected, uint64_t timeout_ns)
{
    struct timespec ts = {(time_t)(timeout_ns / 1000000000ull), (long)(timeout_ns % 1000000000ull)};
    syscall(SYS_futex, word, FUTEX_WAIT_PRIVATE, expected, &ts, NULL, 0);
}

void cmt_writer_wake(void)
{
    if (atomic_exchange(&wake_word, 1) == 0)
        syscall(SYS_futex, &wake_word, FUTEX_WAKE_PRIVATE, 1, NULL, NULL, 0);
}

/* Drains up to max events; returns how many, or -1 after a write failure. */
static long drain(long max)
{
    long n = 0;
    struct cmt_event *e;
    while (n < max && (e = cmt_ring_peek(&cmt_queue))) {
        if (begin() != 0)
            return -1;
        int rc = write_event(e);
        cmt_ring_release(&cmt_queue);
        if (rc != 0) {
            sql_fail("insert");
            return -1;
        }
        n++;
    }
    return n;
}

/* Sleeps until woken or timeout_ns. The only time the writer lets go of fork_lock: fork() happens while
 * the writer is asleep, never while it is inside SQLite, the symbol tables or even malloc (whose locks,
 * held by us, a sanitizer's allocator would hand the child locked). */
static void idle(uint64_t timeout_ns)
{
    pthread_mutex_unlock(&fork_lock);
    futex_wait(&wake_word, 0, timeout_ns);
    atomic_store(&wake_word, 0);
    pthread_mutex_lock(&fork_lock);
}

/* After our own failure: keep taking events off the queue so that producers never wait on us. */
static void discard_forever(void)
{
    cmt_runtime_disable(NULL);
    while (!atomic_load(&stop_requested)) {
        while (cmt_ring_peek(&cmt_queue))
            cmt_ring_release(&cmt_queue);
        idle(50 * 1000 * 1000);
    }
}

/* Statements first: a connection with live statements does not close. */
static void drop_db(void)
{
    sqlite3_finalize(st_event);
    sqlite3_finalize(st_events_multi);
    sqlite3_finalize(st_stack);
    sqlite3_finalize(st_frame);
    sqlite3_finalize(st_module);
    st_event = st_events_multi = st_stack = st_frame = st_module = NULL;
    sqlite3_close(db);
    db = NULL;
}

static void close_trace(void)
{
    char err[512];
    /* Events still queued now never will be written: claimed but not yet published by a thread that
     * the exit or a fatal signal interrupted, or published behind such a slot. Count them. */
    uint64_t left = cmt_ring_fill(&cmt_queue);
    if (left)
        atomic_fetch_add(&cmt_lost, left);
    if (commit() == 0 &&
        cmt_db_finalize(db, (long long)cmt_now_ns(), !atomic_load(&stop_quick), err, sizeof err) != 0)
        cmt_log("cannot finalize %s: %s (its events are intact)", trace_path, err);
    drop_db();
}

static void *writer_main(void *arg)
{
    (void)arg;
    pthread_mutex_lock(&fork_lock); /* held whenever we are not asleep: see idle() */
    atomic_store(&writer_started, 1);
    atomic_store(&writer_tid, (int)syscall(SYS_gettid));
    pthread_setname_np(pthread_self(), "cumemtrace");
    reset_state(); /* a trace after a failed exec starts from nothing */
    if (open_trace() != 0) {
        discard_forever();
        goto done;
    }
    if (cmt_config.debug_writer_delay_ms) {
        /* A writer that cannot start for a while (a stalled disk), for the loss-accounting test and for
         * timing the writer alone in bench/bench_capture.sh. */
        struct timespec d = {cmt_config.debug_writer_delay_ms / 1000,
                             (long)(cmt_config.debug_writer_delay_ms % 1000) * 1000000};
        pthread_mutex_unlock(&fork_lock);
        nanosleep(&d, NULL);
        pthread_mutex_lock(&fork_lock);
    }
    last_commit_ns = cmt_now_ns();
    uint64_t idle_ns = 1000 * 1000;
    for (;;) {
        long n = drain(BATCH_EVENTS);
        if (n < 0) {
            drop_db();
            discard_forever();
            goto done;
        }
        uint64_t now = cmt_now_ns();
        /* Commit when the queue ran dry or the interval is up: events reach the disk promptly without a
         * transaction per event. */
        if (in_txn && (n < BATCH_EVENTS || now - last_commit_ns >= COMMIT_INTERVAL_NS) && commit() != 0) {
            discard_forever();
            goto done;
        }
        if (n > 0) {
            idle_ns = 1000 * 1000;
            continue;
        }
        if (atomic_load(&stop_requested)) {
            /* One last look: an event may have been queued between the drain and the flag. */
            if (cmt_ring_peek(&cmt_queue))
                continue;
            break;
        }
        idle(idle_ns);
        if (idle_ns < 50 * 1000 * 1000)
            idle_ns *= 2;
    }
    close_trace();
done:
    atomic_store(&writer_alive, 0);
    atomic_store(&writer_done, 1);
    pthread_mutex_unlock(&fork_lock);
    return NULL;
}

int cmt_writer_start(void)
{
    atomic_store(&writer_starting, 1);
    int expected = CMT_IDLE;
    if (!atomic_compare_exchange_strong(&cmt_state, &expected, CMT_RUNNING)) {
        atomic_store(&writer_starting, 0);
        return 0; /* another thread started it, or recording is off */
    }
    atomic_store(&writer_done, 0);
    atomic_store(&writer_started, 0);
    atomic_store(&writer_alive, 1);
    atomic_store(&writer_starting, 0);
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old); /* the new thread inherits this mask */
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    int rc = pthread_create(&writer_thread, &attr, writer_main, NULL);
    pthread_attr_destroy(&attr);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (rc != 0) {
        atomic_store(&writer_alive, 0);
        atomic_store(&writer_done, 1);
        cmt_runtime_disable("cannot start the writer thread");
        return -1;
    }
    /* Once, for microseconds: until the new thread holds fork_lock, a fork() could catch it half-born
     * (inside the thread library or a sanitizer's bookkeeping). */
    while (!atomic_load(&writer_started) && !atomic_load(&writer_done))
        sched_yield();
    return 0;
}

int cmt_writer_alive(void)
{
    return atomic_load(&writer_alive);
}

int cmt_writer_is_self(void)
{
    return atomic_load(&writer_tid) == (int)syscall(SYS_gettid);
}

int cmt_writer_stop(unsigned timeout_ms, int quick)
{
    if (cmt_writer_is_self())
        return -1; /* exit() called from our own thread: it cannot wait for itself */
    atomic_store(&stop_quick, quick);
    /* Asked before looking: a writer being started right now (between the state change and its flags)
     * sees the request as soon as it runs. */
    atomic_store(&stop_requested, 1);
    cmt_writer_wake();
    const struct timespec pause = {0, 1000 * 1000};
    for (unsigned ms = 0; ms < timeout_ms; ms++) {
        if (atomic_load(&writer_done))
            return 0;
        if (!atomic_load(&writer_alive) && !atomic_load(&writer_starting))
            return -1; /* no writer: nothing to wait for (defensive: callers only stop a started one) */
        nanosleep(&pause, NULL);
    }
    return atomic_load(&writer_done) ? 0 : -1;
}

int cmt_writer_finished(void)
{
    return atomic_load(&writer_done) || (!atomic_load(&writer_alive) && !atomic_load(&writer_starting));
}

void cmt_writer_rearm(void)
{
    atomic_store(&stop_requested, 0);
    atomic_store(&stop_quick, 0);
}

void cmt_writer_forget_after_fork(void)
{
    /* The parent's SQLite handle is not ours to use or close (its locks and WAL belong to the parent);
     * drop it on the floor. The maps were allocated with malloc, which is fork-safe. */
    reset_state();
    atomic_store(&writer_alive, 0);
    atomic_store(&writer_done, 0);
    atomic_store(&stop_requested, 0);
    atomic_store(&stop_quick, 0);
    atomic_store(&writer_starting, 0);
    atomic_store(&wake_word, 0);
    atomic_store(&writer_tid, 0);
}

/* fork() waits for the writer to go to sleep, but not for long: a writer held up (finalizing a large
 * trace at exit, a slow disk) must not hold up the program. If it does not come, the child is forked
 * with the writer mid-work, and the child does not record (cmt_writer_fork_child says so). */
static int fork_locked;

void cmt_writer_fork_prepare(void)
{
    struct timespec t;
    clock_gettime(CLOCK_REALTIME, &t);
    t.tv_nsec += 200 * 1000 * 1000;
    if (t.tv_nsec >= 1000000000) {
        t.tv_sec++;
        t.tv_nsec -= 1000000000;
    }
    fork_locked = pthread_mutex_timedlock(&fork_lock, &t) == 0;
}

void cmt_writer_fork_parent(void)
{
    if (fork_locked)
        pthread_mutex_unlock(&fork_lock);
}

int cmt_writer_fork_child(void)
{
    if (fork_locked) {
        pthread_mutex_unlock(&fork_lock);
        return 0;
    }
    /* The lock was held by a thread that does not exist here, maybe inside SQLite or malloc: start
     * over with a fresh lock, and leave SQLite alone in this process. */
    pthread_mutex_t fresh = PTHREAD_MUTEX_INITIALIZER;
    fork_lock = fresh;
    return -1;
}
