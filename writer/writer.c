/*
 * writer.c: cumemtrace-writer, the process that writes a program's trace (see interpose/cmt_shm.h).
 *
 * Spawned by the interposer at the program's first recorded event, with the shared memory as descriptor 3
 * and the read end of the liveness pipe as descriptor 4. It creates the trace file (0600, exclusively,
 * and holds an flock on it while it writes: readers wait on that lock), drains the queue in batches into
 * SQLite (a commit every 100 ms), keeps events in blocks of up to 65,536 (schema/cmt_blocks.h: the block
 * being filled is written again at each commit, so a commit holds every event drained before it),
 * deduplicates stacks, symbolizes new
 * frames from /proc/PID/maps and the ELF files, describes threads from /proc, and, once the program is
 * gone (exit, exec, any signal, SIGKILL), drains what is left and finalizes the file with how it ended.
 * It never touches the program: no ptrace, no signals, nothing written to its memory but the queue's
 * positions. The process spawned forks first: the child is the writer, the parent its watchdog
 * (take_over: if the writer is killed, the watchdog drains the queue and counts what the file lacks).
 */
#include "cmt_blocks.h"
#include "cmt_db.h"
#include "cmt_events.h"
#include "cmt_log.h"
#include "cmt_ring.h"
#include "cmt_shm.h"
#include "cmt_symbols.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/futex.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define COMMIT_INTERVAL_NS (100ull * 1000 * 1000) /* the most a killed writer can cost */
#define BATCH_EVENTS 4096

static struct cmt_shm *shm;
static struct cmt_ring queue;
static int pid;             /* the program's */
static int lock_fd = -1;    /* the trace file, flock'ed while we write */
static uint64_t lost_unpublished; /* claimed slots never published: a producer died mid-copy */
static uint64_t last_event_ns;

static uint64_t cmt_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* Before the writer is ready the program waits for it: a failure goes into the shared memory, where the
 * program's interposer reads it and says it once on the program's stderr. */
static void report_failure(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static uint64_t total_lost(void)
{
    return atomic_load(&shm->lost) + lost_unpublished;
}

/* ---- writer state ------------------------------------------------------------------------ */

static sqlite3 *db;
static sqlite3_stmt *st_block, *st_block_drop, *st_stack, *st_frame, *st_module, *st_frame_line;
static sqlite3_stmt *st_range, *st_range_end, *st_mark; /* NVTX records (write_nvtx) */
static sqlite3_stmt *st_heap, *st_region;               /* NVTX's memory extension (write_mem) */

/* The block being filled (schema/cmt_blocks.h) and the first_seq it was last written under (0: not yet
 * written), since a late event with a lower seq changes its key. */
static struct cmt_block_builder block;
static int64_t block_key;
static uint8_t *block_buf; /* cmt_block_bound(CMT_BLOCK_ROWS) bytes */

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

/* ---- SQLite helpers ------------------------------------------------------------------------------ */

static int sql_fail(const char *what)
{
    snprintf(shm->error, sizeof shm->error, "cannot write %.400s (%.60s: %.200s); recording stops, the program continues; the events committed so far are kept",
             trace_path, what, db ? sqlite3_errmsg(db) : "no database");
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

static int write_block(void);

static int commit(void)
{
    if (!in_txn)
        return 0;
    if (write_block() != 0)
        return sql_fail("insert");
    /* writer_ring_pos: the queue position this commit holds everything before, for the watchdog to count
     * what a killed writer had taken and not committed; writer_unpublished: the slots it found claimed and
     * never published (in events_lost, not in the program's count) */
    char sql[320];
    snprintf(sql, sizeof sql, "UPDATE process SET events_written = %llu, events_lost = %llu;"
             " INSERT OR REPLACE INTO meta VALUES ('writer_ring_pos', %llu), ('writer_unpublished', %llu); COMMIT",
             (unsigned long long)events_written, (unsigned long long)total_lost(), (unsigned long long)queue.out,
             (unsigned long long)lost_unpublished);
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
    /* 0600: a trace holds the program's arguments, paths and environment */
    int fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd < 0)
        return -errno;
    if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
        int e = errno;
        close(fd);
        unlink(path);
        return -e;
    }
    lock_fd = fd;
    snprintf(shm->trace_path, sizeof shm->trace_path, "%s", path);
    return 0;
}

static int choose_path(char *out, size_t len)
{
    const char *o = shm->output;
    size_t olen = strlen(o);
    if (!olen || is_dir(o) || o[olen - 1] == '/') {
        const char *dir = olen ? o : ".";
        if (olen && !is_dir(o))
            mkdir(o, 0700);
        for (int k = 0; k < 100; k++) {
            int n = k ? snprintf(out, len, "%s/cumemtrace-%s-%d.%d.db", dir, shm->prog, pid, k)
                      : snprintf(out, len, "%s/cumemtrace-%s-%d.db", dir, shm->prog, pid);
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
        int n = k ? snprintf(out, len, "%s.%s-%d.%d.db", stem, shm->prog, pid, k)
                  : snprintf(out, len, "%s.%s-%d.db", stem, shm->prog, pid);
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
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/cmdline", pid);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
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
    char host[256] = "", exe[PATH_MAX] = "", path[64];
    gethostname(host, sizeof host - 1);
    snprintf(path, sizeof path, "/proc/%d/exe", pid);
    ssize_t n = readlink(path, exe, sizeof exe - 1);
    exe[n > 0 ? n : 0] = 0;
    int ppid = 0;
    char stat_line[1024];
    snprintf(path, sizeof path, "/proc/%d/stat", pid);
    int sfd = open(path, O_RDONLY | O_CLOEXEC);
    if (sfd >= 0) {
        ssize_t k = read(sfd, stat_line, sizeof stat_line - 1);
        close(sfd);
        stat_line[k > 0 ? k : 0] = 0;
        const char *rp = strrchr(stat_line, ')'); /* the name may hold spaces and parentheses */
        if (rp)
            sscanf(rp + 1, " %*c %d", &ppid);
    }
    char *argv = argv_json();
    sqlite3_stmt *st = NULL;
    int rc = -1;
    if (sqlite3_prepare_v2(db,
                           "INSERT INTO process(pid, ppid, host, exe, argv, start_unix_ns, start_ns, stack_depth)"
                           " VALUES (?,?,?,?,?,?,?,?)",
                           -1, &st, NULL) != SQLITE_OK)
        goto out;
    sqlite3_bind_int(st, 1, pid);
    sqlite3_bind_int(st, 2, ppid);
    sqlite3_bind_text(st, 3, host, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(st, 4, exe, -1, SQLITE_TRANSIENT);
    if (argv)
        sqlite3_bind_text(st, 5, argv, -1, SQLITE_TRANSIENT);
    sqlite3_bind_int64(st, 6, (sqlite3_int64)shm->start_unix_ns);
    sqlite3_bind_int64(st, 7, (sqlite3_int64)shm->start_ns);
    sqlite3_bind_int(st, 8, (int)shm->depth);
    if (step_reset(st) != 0)
        goto out;
    sqlite3_finalize(st);
    st = NULL;
    if (sqlite3_prepare_v2(db, "INSERT OR REPLACE INTO env(name, value) VALUES (?,?)", -1, &st, NULL) != SQLITE_OK)
        goto out;
    shm->env[sizeof shm->env - 1] = 0;
    shm->env[sizeof shm->env - 2] = 0;
    for (const char *e = shm->env; *e; e += strlen(e) + 1) {
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

/* `cumemtrace run` lists exactly the traces of its run: each writer appends "PID<TAB>PATH<NUL>" to the
 * file run named (CUMEMTRACE_MANIFEST), in one write to a file opened for appending, so records of
 * concurrent writers never interleave. Best effort: a run that is gone (the file removed) is no error. */
static void note_in_manifest(void)
{
    if (!shm->manifest[0])
        return;
    char rec[sizeof trace_path + 32];
    int n = snprintf(rec, sizeof rec, "%d\t%s", pid, trace_path);
    if (n < 0 || (size_t)n >= sizeof rec)
        return;
    int fd = open(shm->manifest, O_WRONLY | O_APPEND | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0)
        return;
    if (write(fd, rec, (size_t)n + 1) < 0) {
        /* nothing to do: run falls back to saying no trace was listed */
    }
    close(fd);
}

/* The trace's name, created and locked (claim): before the fork, so that the writer and its watchdog share
 * the lock (an flock belongs to the open file, which both hold): held until both let it go, so no reader
 * ever sees a killed writer's file before the watchdog has counted what it lacks. */
static int claim_trace(void)
{
    struct stat ost;
    size_t olen = strlen(shm->output);
    if (olen && shm->output[olen - 1] != '/' && lstat(shm->output, &ost) == 0 && !S_ISREG(ost.st_mode) &&
        !S_ISDIR(ost.st_mode)) {
        /* a device, a socket, a fifo, a link: not a place for a trace, and nothing to write beside it */
        report_failure("CUMEMTRACE_OUTPUT=%.400s is not a regular file or a directory", shm->output);
        return -1;
    }
    int rc = choose_path(trace_path, sizeof trace_path);
    if (rc != 0) {
        report_failure("cannot create a trace file at %.400s: %s",
                       trace_path[0] ? trace_path : shm->output, strerror(-rc));
        return -1;
    }
    return 0;
}

/* The claimed file becomes a trace: schema, process rows, statements. */
static int open_trace(void)
{
    int rc;
    char err[512];
    block_buf = malloc(cmt_block_bound(CMT_BLOCK_ROWS));
    if (!block_buf || cmt_block_builder_init(&block) != 0) {
        report_failure("cannot create a trace: out of memory");
        return -1;
    }
    rc = cmt_db_create(trace_path, &db, err, sizeof err);
    /* A 64 MiB page cache and rarer WAL checkpoints: the writer appends, nothing reads. */
    if (rc == 0)
        sqlite3_exec(db, "PRAGMA cache_size=-65536; PRAGMA wal_autocheckpoint=16384;", NULL, NULL, NULL);
    if (rc == 0 && (write_process_rows() != 0 ||
                    sqlite3_prepare_v2(db, CMT_SQL_INSERT_BLOCK, -1, &st_block, NULL) != SQLITE_OK ||
                    sqlite3_prepare_v2(db, CMT_SQL_DROP_BLOCK, -1, &st_block_drop, NULL) != SQLITE_OK ||
                    sqlite3_prepare_v2(db, CMT_SQL_INSERT_STACK, -1, &st_stack, NULL) != SQLITE_OK ||
                    sqlite3_prepare_v2(db, CMT_SQL_INSERT_FRAME, -1, &st_frame, NULL) != SQLITE_OK ||
                    sqlite3_prepare_v2(db, CMT_SQL_INSERT_MODULE, -1, &st_module, NULL) != SQLITE_OK ||
                    sqlite3_prepare_v2(db, CMT_SQL_INSERT_FRAME_LINE, -1, &st_frame_line, NULL) != SQLITE_OK ||
                    sqlite3_prepare_v2(db, CMT_SQL_INSERT_RANGE, -1, &st_range, NULL) != SQLITE_OK ||
                    sqlite3_prepare_v2(db, CMT_SQL_END_RANGE, -1, &st_range_end, NULL) != SQLITE_OK ||
                    sqlite3_prepare_v2(db, CMT_SQL_INSERT_MARK, -1, &st_mark, NULL) != SQLITE_OK ||
                    sqlite3_prepare_v2(db, CMT_SQL_INSERT_HEAP, -1, &st_heap, NULL) != SQLITE_OK ||
                    sqlite3_prepare_v2(db, CMT_SQL_INSERT_REGION, -1, &st_region, NULL) != SQLITE_OK)) {
        snprintf(err, sizeof err, "%s", sqlite3_errmsg(db));
        rc = -1;
    }
    if (rc != 0) {
        report_failure("cannot create trace %.300s: %.150s", trace_path, err);
        unlink(trace_path);
        return -1;
    }
    note_in_manifest();
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
    /* Its source lines (schema v4's frame_lines), where the module has DWARF. */
    struct cmt_line lines[CMT_LINES_MAX];
    int nlines = cmt_symbols_lines(ip, fi.module, lines);
    for (int d = 0; d < nlines; d++) {
        sqlite3_bind_int64(st_frame_line, 1, (sqlite3_int64)*id);
        sqlite3_bind_int(st_frame_line, 2, d);
        if (lines[d].function)
            sqlite3_bind_text(st_frame_line, 3, lines[d].function, -1, SQLITE_STATIC);
        else
            sqlite3_bind_null(st_frame_line, 3);
        if (lines[d].file)
            sqlite3_bind_text(st_frame_line, 4, lines[d].file, -1, SQLITE_STATIC);
        else
            sqlite3_bind_null(st_frame_line, 4);
        bind_opt(st_frame_line, 5, lines[d].line > 0, (uint64_t)lines[d].line);
        bind_opt(st_frame_line, 6, lines[d].column > 0, (uint64_t)lines[d].column);
        if (step_reset(st_frame_line) != 0)
            return -1;
    }
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
    snprintf(path, sizeof path, "/proc/%d/task/%d/comm", pid, tid);
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
    /* Described by the recorder in the shared memory (cmt_record.c); NULL columns if it could not be. */
    const struct cmt_shm_device *info = dev < CMT_SHM_MAX_DEVICES &&
        atomic_load_explicit(&shm->devices[dev].state, memory_order_acquire) == 2 ? &shm->devices[dev] : NULL;
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

/* Writes the block being filled under its lowest seq (again, if a commit wrote it before: the row it was
 * written under goes first), and starts a new one once it is full. */
static int write_block(void)
{
    if (!block.n)
        return 0;
    if (block_key) {
        sqlite3_bind_int64(st_block_drop, 1, block_key);
        if (step_reset(st_block_drop) != 0)
            return -1;
    }
    size_t len = cmt_block_finish(&block, block_buf);
    block_key = block.min_seq;
    sqlite3_bind_int64(st_block, 1, block.min_seq);
    sqlite3_bind_int64(st_block, 2, block.max_seq);
    sqlite3_bind_int64(st_block, 3, (sqlite3_int64)block.n);
    sqlite3_bind_blob(st_block, 4, block_buf, (int)len, SQLITE_STATIC);
    if (step_reset(st_block) != 0)
        return -1;
    if (block.n == CMT_BLOCK_ROWS) {
        cmt_block_reset(&block);
        block_key = 0;
    }
    return 0;
}

static void opt(struct cmt_block_row *r, int c, int present, uint64_t v)
{
    r->v[c] = (int64_t)v;
    if (!present)
        r->nulls |= 1u << c;
}

static int write_event(const struct cmt_event *e)
{
    uint64_t sid = 0;
    if (note_thread(e->tid) != 0 || ((e->present & CMT_HAS_DEVICE) && e->device >= 0 && note_device(e->device) != 0) ||
        (e->nframes && stack_id(e->frames, e->nframes, &sid) != 0))
        return -1;
    if (e->ts_ns > last_event_ns)
        last_event_ns = e->ts_ns;
    struct cmt_block_row row, *r = &row;
    r->nulls = 0;
    r->v[CMT_BC_SEQ] = (int64_t)e->seq;
    r->v[CMT_BC_TS] = (int64_t)e->ts_ns;
    r->v[CMT_BC_TID] = e->tid;
    r->v[CMT_BC_API] = e->api;
    r->v[CMT_BC_OP] = e->op;
    r->v[CMT_BC_KIND] = e->kind;
    opt(r, CMT_BC_DEVICE, e->present & CMT_HAS_DEVICE, (uint64_t)(int64_t)e->device);
    opt(r, CMT_BC_CONTEXT, e->present & CMT_HAS_CONTEXT, e->context);
    opt(r, CMT_BC_ADDRESS, e->present & CMT_HAS_ADDRESS, e->address);
    opt(r, CMT_BC_SIZE, e->present & CMT_HAS_SIZE, e->size);
    opt(r, CMT_BC_STREAM, e->present & CMT_HAS_STREAM, e->stream);
    opt(r, CMT_BC_HANDLE, e->present & CMT_HAS_HANDLE, e->handle);
    opt(r, CMT_BC_AUX, e->present & CMT_HAS_AUX, e->aux);
    r->v[CMT_BC_RESULT] = e->result;
    r->v[CMT_BC_DURATION] = (int64_t)e->duration_ns;
    opt(r, CMT_BC_STACK, e->nframes != 0, sid);
    opt(r, CMT_BC_FREE, e->present & CMT_HAS_MEMINFO, e->free_bytes);
    opt(r, CMT_BC_TOTAL, e->present & CMT_HAS_MEMINFO, e->total_bytes);
    if (cmt_block_add(&block, r) != 0)
        return -1;
    events_written++;
    if (block.n == CMT_BLOCK_ROWS)
        return write_block();
    return 0;
}

/* ---- NVTX records: ranges and marks -------------------------------------------------------------- */

/* The interposer's NVTX records (interpose/cmt_shm.h) become rows of ranges and marks
 * (schema/cumemtrace_v3.sql). A range's row is inserted when it opens, with end_* NULL, and completed
 * when it closes: a range still open when the program ends keeps end_ns NULL. Push/pop pair per thread
 * and domain; each record carries the level the interposer counted, so a record lost to a full queue
 * costs that one range, not the nesting of everything after it: a pop of level L closes whatever is
 * open at L and above; a push of level L first closes what is still open at L and above (pops that were
 * lost) at its own time. Start/end pair by the id nvtxRangeStart returned. */
static uint64_t next_range_row = 1;

struct range_stack {
    int64_t *rows;
    int n, cap;
};
static struct range_stack *rstacks;
static uint64_t nrstacks, cap_rstacks;
static struct map rstack_ix;     /* (tid, domain) -> index into rstacks[] + 1 */
static struct map startend_rows; /* NVTX range id -> its row, 0 once ended */

static struct range_stack *range_stack_of(int tid, unsigned dom)
{
    uint64_t key = (1ull << 63) | ((uint64_t)(uint32_t)tid << 16) | (dom & 0xffff), ix;
    if (map_get(&rstack_ix, key, &ix))
        return &rstacks[ix - 1];
    if (nrstacks == cap_rstacks) {
        uint64_t cap = cap_rstacks ? cap_rstacks * 2 : 16;
        struct range_stack *g = realloc(rstacks, cap * sizeof *g);
        if (!g)
            return NULL;
        rstacks = g;
        cap_rstacks = cap;
    }
    memset(&rstacks[nrstacks], 0, sizeof rstacks[0]);
    if (map_put(&rstack_ix, key, nrstacks + 1) != 0)
        return NULL;
    return &rstacks[nrstacks++];
}

static int end_range(int64_t row, const struct cmt_event *e)
{
    sqlite3_bind_int(st_range_end, 1, e->tid);
    sqlite3_bind_int64(st_range_end, 2, (sqlite3_int64)e->seq);
    sqlite3_bind_int64(st_range_end, 3, (sqlite3_int64)e->ts_ns);
    sqlite3_bind_int64(st_range_end, 4, row);
    return step_reset(st_range_end);
}

static void bind_text_opt(sqlite3_stmt *st, int i, int present, const char *s, size_t n)
{
    if (present)
        sqlite3_bind_text(st, i, s, (int)n, SQLITE_TRANSIENT);
    else
        sqlite3_bind_null(st, i);
}

static int insert_range(int64_t row, const char *kind, const struct cmt_event *e, const char *dom, size_t dlen,
                        const char *msg, size_t mlen, int has_msg, int depth, int64_t parent)
{
    sqlite3_bind_int64(st_range, 1, row);
    sqlite3_bind_text(st_range, 2, kind, -1, SQLITE_STATIC);
    bind_text_opt(st_range, 3, e->api != 0, dom, dlen);
    bind_text_opt(st_range, 4, has_msg, msg, mlen);
    sqlite3_bind_int64(st_range, 5, (sqlite3_int64)e->aux);
    sqlite3_bind_int(st_range, 6, e->tid);
    sqlite3_bind_int64(st_range, 7, (sqlite3_int64)e->seq);
    sqlite3_bind_int64(st_range, 8, (sqlite3_int64)e->ts_ns);
    bind_opt(st_range, 9, depth >= 0, (uint64_t)depth);
    bind_opt(st_range, 10, parent > 0, (uint64_t)parent);
    return step_reset(st_range);
}

/* The memory extension: heaps and regions (mem_heaps, mem_regions). A region is known by its address
 * while live; a heap's reset or unregistration ends every live region registered on it. */
static sqlite3_stmt *st_lazy[6];
enum { L_REGION_END, L_REGION_SIZE, L_REGION_NAME, L_HEAP_END, L_HEAP_REGIONS_END, L_ALL_REGIONS_END };
static const char *const lazy_sql[] = {
    "UPDATE mem_regions SET end_seq = ?, end_ns = ? WHERE region_id = ?",
    "UPDATE mem_regions SET size = ? WHERE region_id = ?",
    "UPDATE mem_regions SET name = ? WHERE region_id = ?",
    "UPDATE mem_heaps SET end_seq = ?, end_ns = ? WHERE heap_id = ? AND end_seq IS NULL",
    "UPDATE mem_regions SET end_seq = ?, end_ns = ? WHERE heap_id = ? AND end_seq IS NULL",
    "UPDATE mem_regions SET end_seq = ?, end_ns = ? WHERE end_seq IS NULL",
};
static uint64_t next_region_row = 1;
static struct map live_regions; /* address -> region row, 0 once gone */
static uint64_t *region_heap;   /* region row -> heap id */
static uint64_t *region_addr;   /* region row -> address */
static uint64_t cap_regions;

static sqlite3_stmt *lazy(int which)
{
    if (!st_lazy[which] && sqlite3_prepare_v2(db, lazy_sql[which], -1, &st_lazy[which], NULL) != SQLITE_OK)
        return NULL;
    return st_lazy[which];
}

/* Runs lazy statement `which` with up to three integer parameters, or a text then an integer. */
static int run_lazy(int which, int n, int64_t a, int64_t b, int64_t c)
{
    sqlite3_stmt *st = lazy(which);
    if (!st)
        return -1;
    int64_t v[3] = {a, b, c};
    for (int i = 0; i < n; i++)
        sqlite3_bind_int64(st, i + 1, v[i]);
    return step_reset(st);
}

/* Forgets the live regions of heap (0: of every heap) once their rows are ended. */
static void forget_regions(uint64_t heap)
{
    for (uint64_t row = 1; row < next_region_row; row++) {
        uint64_t cur;
        if ((heap == 0 || region_heap[row] == heap) && map_get(&live_regions, region_addr[row], &cur) && cur == row)
            map_put(&live_regions, region_addr[row], 0);
    }
}

static int write_mem(const struct cmt_event *e, const char *dom, size_t dlen, const char *msg, size_t mlen,
                     int has_msg)
{
    uint64_t row = 0;
    int live = e->address && map_get(&live_regions, e->address, &row) && row;
    switch (e->kind) {
    case CMT_NVTX_HEAP_REGISTER:
        sqlite3_bind_int64(st_heap, 1, (sqlite3_int64)e->stream);
        bind_text_opt(st_heap, 2, e->api != 0, dom, dlen);
        bind_text_opt(st_heap, 3, has_msg, msg, mlen);
        sqlite3_bind_int64(st_heap, 4, e->result);
        bind_opt(st_heap, 5, e->aux != 0, e->address);
        bind_opt(st_heap, 6, e->aux != 0, e->aux);
        sqlite3_bind_int(st_heap, 7, e->tid);
        sqlite3_bind_int64(st_heap, 8, (sqlite3_int64)e->seq);
        sqlite3_bind_int64(st_heap, 9, (sqlite3_int64)e->ts_ns);
        /* OR IGNORE in effect: a heap id seen twice (it cannot be: defensive) must not stop the trace */
        step_reset(st_heap);
        return 0;
    case CMT_NVTX_HEAP_UNREGISTER:
    case CMT_NVTX_HEAP_RESET:
        if (e->kind == CMT_NVTX_HEAP_UNREGISTER &&
            run_lazy(L_HEAP_END, 3, (int64_t)e->seq, (int64_t)e->ts_ns, (int64_t)e->stream) != 0)
            return -1;
        if (e->stream ? run_lazy(L_HEAP_REGIONS_END, 3, (int64_t)e->seq, (int64_t)e->ts_ns, (int64_t)e->stream)
                      : run_lazy(L_ALL_REGIONS_END, 2, (int64_t)e->seq, (int64_t)e->ts_ns, 0))
            return -1;
        forget_regions(e->stream);
        return 0;
    case CMT_NVTX_REGION_REGISTER:
        if (!e->address)
            return 0;
        if (live && run_lazy(L_REGION_END, 3, (int64_t)e->seq, (int64_t)e->ts_ns, (int64_t)row) != 0)
            return -1; /* registered again without unregistering: the old one ends here */
        if (next_region_row >= cap_regions) {
            uint64_t cap = cap_regions ? cap_regions * 2 : 1024;
            uint64_t *h = realloc(region_heap, cap * sizeof *h);
            if (!h)
                return -1;
            region_heap = h;
            uint64_t *a = realloc(region_addr, cap * sizeof *a);
            if (!a)
                return -1;
            region_addr = a;
            cap_regions = cap;
        }
        row = next_region_row++;
        region_heap[row] = e->stream;
        region_addr[row] = e->address;
        sqlite3_bind_int64(st_region, 1, (sqlite3_int64)row);
        sqlite3_bind_int64(st_region, 2, (sqlite3_int64)e->stream);
        sqlite3_bind_int64(st_region, 3, (sqlite3_int64)e->address);
        sqlite3_bind_int64(st_region, 4, (sqlite3_int64)e->aux);
        sqlite3_bind_int(st_region, 5, e->tid);
        sqlite3_bind_int64(st_region, 6, (sqlite3_int64)e->seq);
        sqlite3_bind_int64(st_region, 7, (sqlite3_int64)e->ts_ns);
        if (step_reset(st_region) != 0)
            return -1;
        return map_put(&live_regions, e->address, row);
    case CMT_NVTX_REGION_RESIZE:
        return live ? run_lazy(L_REGION_SIZE, 2, (int64_t)e->aux, (int64_t)row, 0) : 0;
    case CMT_NVTX_REGION_UNREGISTER:
        if (!live)
            return 0; /* never registered, or already gone */
        if (run_lazy(L_REGION_END, 3, (int64_t)e->seq, (int64_t)e->ts_ns, (int64_t)row) != 0)
            return -1;
        return map_put(&live_regions, e->address, 0);
    case CMT_NVTX_REGION_NAME: {
        if (!live)
            return 0;
        sqlite3_stmt *st = lazy(L_REGION_NAME);
        if (!st)
            return -1;
        bind_text_opt(st, 1, has_msg, msg, mlen);
        sqlite3_bind_int64(st, 2, (sqlite3_int64)row);
        return step_reset(st);
    }
    default:
        return 0;
    }
}

static int write_nvtx(const struct cmt_event *e)
{
    if (note_thread(e->tid) != 0)
        return -1;
    if (e->ts_ns > last_event_ns)
        last_event_ns = e->ts_ns;
    const char *dom = (const char *)e->frames;
    size_t room = (size_t)e->nframes * sizeof(uintptr_t), dlen = e->size, mlen = e->handle;
    int has_msg = (e->present & CMT_HAS_HANDLE) != 0;
    if (dlen > room || mlen > room - dlen) {
        dlen = mlen = 0; /* defensive: lengths the payload cannot hold */
        has_msg = 0;
    }
    const char *msg = dom + dlen;
    switch (e->kind) {
    case CMT_NVTX_PUSH:
    case CMT_NVTX_POP: {
        struct range_stack *rs = range_stack_of(e->tid, e->api);
        if (!rs)
            return -1;
        int level = e->result >= 0 ? e->result : rs->n;
        if (e->kind == CMT_NVTX_POP && level >= rs->n)
            return 0; /* its push was lost (or came before recording and was dropped) */
        while (rs->n > level)
            if (end_range(rs->rows[--rs->n], e) != 0)
                return -1;
        if (e->kind == CMT_NVTX_POP)
            return 0;
        if (rs->n == rs->cap) {
            int cap = rs->cap ? rs->cap * 2 : 16;
            int64_t *g = realloc(rs->rows, (size_t)cap * sizeof *g);
            if (!g)
                return -1;
            rs->rows = g;
            rs->cap = cap;
        }
        int64_t row = (int64_t)next_range_row++;
        if (insert_range(row, "push", e, dom, dlen, msg, mlen, has_msg, level, rs->n ? rs->rows[rs->n - 1] : 0) != 0)
            return -1;
        rs->rows[rs->n++] = row;
        return 0;
    }
    case CMT_NVTX_START: {
        int64_t row = (int64_t)next_range_row++;
        if (insert_range(row, "startend", e, dom, dlen, msg, mlen, has_msg, -1, 0) != 0)
            return -1;
        return e->address ? map_put(&startend_rows, e->address, (uint64_t)row) : 0;
    }
    case CMT_NVTX_END: {
        uint64_t row;
        if (!e->address || !map_get(&startend_rows, e->address, &row) || !row)
            return 0; /* never started, or started before recording and not kept, or ended twice */
        if (end_range((int64_t)row, e) != 0)
            return -1;
        return map_put(&startend_rows, e->address, 0);
    }
    case CMT_NVTX_MARK:
        bind_text_opt(st_mark, 1, e->api != 0, dom, dlen);
        bind_text_opt(st_mark, 2, has_msg, msg, mlen);
        sqlite3_bind_int64(st_mark, 3, (sqlite3_int64)e->aux);
        sqlite3_bind_int(st_mark, 4, e->tid);
        sqlite3_bind_int64(st_mark, 5, (sqlite3_int64)e->seq);
        sqlite3_bind_int64(st_mark, 6, (sqlite3_int64)e->ts_ns);
        return step_reset(st_mark);
    default:
        return e->kind >= CMT_NVTX_HEAP_REGISTER ? write_mem(e, dom, dlen, msg, mlen, has_msg) : 0;
    }
}

/* ---- the loop ----------------------------------------------------------------------------------- */

#include <stdarg.h>

static void report_failure(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(shm->error, sizeof shm->error, fmt, ap);
    va_end(ap);
    atomic_store_explicit(&shm->writer_state, CMT_WRITER_FAILED, memory_order_release);
    atomic_store(&shm->ready, 1);
    syscall(SYS_futex, &shm->ready, FUTEX_WAKE, INT32_MAX, NULL, NULL, 0);
}

static void sleep_on_wake(uint64_t timeout_ns)
{
    struct timespec ts = {(time_t)(timeout_ns / 1000000000ull), (long)(timeout_ns % 1000000000ull)};
    cmt_ring_publish(&queue);
    syscall(SYS_futex, &shm->wake, FUTEX_WAIT, 0, &ts, NULL, 0);
    atomic_store(&shm->wake, 0);
}

/* Producers that found the queue full sleep on shm->space: tell them there is room. */
static void wake_producers(void)
{
    if (atomic_exchange(&shm->space_waiters, 0)) {
        atomic_fetch_add(&shm->space, 1);
        syscall(SYS_futex, &shm->space, FUTEX_WAKE, INT32_MAX, NULL, NULL, 0);
    }
}

/* Drains up to max events; returns how many, or -1 after a write failure. */
static long drain(long max)
{
    long n = 0;
    struct cmt_event *e;
    while (n < max && (e = cmt_ring_peek(&queue))) {
        if (begin() != 0)
            return -1;
        int rc = e->op == CMT_SHM_REC_NVTX ? write_nvtx(e) : write_event(e);
        cmt_ring_release(&queue);
        if (rc != 0) {
            sql_fail("insert");
            return -1;
        }
        n++;
        /* Producers waiting for room are woken once half the queue is free, not at every free slot:
         * on few cores each wake-up takes the CPU from us, and a queue we drain in long runs costs less. */
        if ((n & 255) == 0) {
            cmt_ring_publish(&queue);
            if (cmt_ring_fill(&queue) <= (queue.mask + 1) / 2)
                wake_producers();
        }
    }
    if (n) {
        cmt_ring_publish(&queue);
        wake_producers();
    }
    return n;
}

/* Statements first: a connection with live statements does not close. */
static void drop_db(void)
{
    sqlite3_finalize(st_block);
    sqlite3_finalize(st_block_drop);
    sqlite3_finalize(st_stack);
    sqlite3_finalize(st_frame);
    sqlite3_finalize(st_frame_line);
    sqlite3_finalize(st_module);
    sqlite3_finalize(st_range);
    sqlite3_finalize(st_range_end);
    sqlite3_finalize(st_mark);
    sqlite3_finalize(st_heap);
    sqlite3_finalize(st_region);
    for (size_t i = 0; i < sizeof st_lazy / sizeof st_lazy[0]; i++) {
        sqlite3_finalize(st_lazy[i]);
        st_lazy[i] = NULL;
    }
    st_block = st_block_drop = st_stack = st_frame = st_module = st_frame_line = st_range = st_range_end = st_mark = NULL;
    st_heap = st_region = NULL;
    sqlite3_close(db);
    db = NULL;
}

/* ---- is the program still there? ----------------------------------------------------------------- */

static int pidfd = -1;
static int pipe_open = 1; /* the program still holds the pipe's write end */
static uint64_t next_maps_check;

static int program_dead(void)
{
    if (pidfd >= 0) {
        struct pollfd p = {pidfd, POLLIN, 0};
        return poll(&p, 1, 0) == 1;
    }
    return kill(pid, 0) != 0 && errno == ESRCH;
}

/* Our shared memory still mapped in the program: its image is still the one we trace. */
static int program_maps_us(void)
{
    struct stat self;
    if (fstat(3, &self) != 0)
        return 0;
    char path[64], line[4096];
    snprintf(path, sizeof path, "/proc/%d/maps", pid);
    FILE *f = fopen(path, "re");
    if (!f)
        return 0;
    int found = 0;
    while (!found && fgets(line, sizeof line, f)) {
        unsigned long long inode = 0;
        if (sscanf(line, "%*s %*s %*s %*s %llu", &inode) == 1 && inode == (unsigned long long)self.st_ino &&
            strstr(line, "/memfd:cumemtrace"))
            found = 1;
    }
    fclose(f);
    return found;
}

/* 0 while the program's image lives; else how it ended: "exit", "exec" or "killed". */
static const char *program_gone(void)
{
    if (pipe_open) {
        struct pollfd p = {4, POLLIN, 0};
        if (poll(&p, 1, 0) != 1 || !(p.revents & (POLLHUP | POLLERR | POLLIN)))
            return NULL;
        pipe_open = 0; /* the write end is closed: exit, death, exec, or the program closed it */
    }
    int ps = atomic_load(&shm->prog_state);
    /* A dying process closes its descriptors before it is reaped: give it a moment to be seen dead. */
    for (int i = 0; i < 200 && !program_dead(); i++) {
        if (ps == CMT_PROG_EXEC)
            break;
        struct timespec t = {0, 1000 * 1000};
        nanosleep(&t, NULL);
        if (i == 20 && program_maps_us())
            break; /* alive and still itself: it closed our descriptor; watch it another way */
    }
    if (program_dead()) {
        ps = atomic_load(&shm->prog_state); /* as it was left: it may have begun exiting since */
        return ps == CMT_PROG_EXITING ? "exit" : ps == CMT_PROG_EXEC ? "exec" : "killed";
    }
    if (ps == CMT_PROG_EXEC && !program_maps_us())
        return "exec";
    uint64_t now = cmt_now_ns();
    if (now >= next_maps_check) {
        next_maps_check = now + 200ull * 1000 * 1000;
        if (!program_maps_us())
            return "exec"; /* alive, but no longer the image we trace */
    }
    return NULL;
}

/* After our own failure, or the writer's death: keep taking events off the queue, so that the program never
 * waits on us, until it is gone; then what it left in the queue, and the slots claimed but never published.
 * Returns how the program ended; *taken counts what was taken off the queue (published or not). */
static const char *discard_until_gone(uint64_t *taken)
{
    const char *how;
    uint64_t n = 0;
    for (;;) {
        how = program_gone();
        for (;;) {
            while (cmt_ring_peek(&queue)) {
                cmt_ring_release(&queue);
                n++;
            }
            if (!how || !cmt_ring_skip_unpublished(&queue))
                break;
            n++;
        }
        wake_producers();
        if (how)
            break;
        sleep_on_wake(20ull * 1000 * 1000);
    }
    if (taken)
        *taken = n;
    return how;
}

/* ---- the end ------------------------------------------------------------------------------------- */

static void finish_trace(const char *how)
{
    /* The program is gone: nobody will publish anything more. Take every published event, and count the
     * slots claimed but never published (a thread killed mid-copy) as lost. */
    for (;;) {
        long n = drain(BATCH_EVENTS);
        if (n < 0)
            return;
        if (n > 0)
            continue;
        if (!cmt_ring_skip_unpublished(&queue))
            break;
        lost_unpublished++;
    }
    char err[512];
    char *sql = sqlite3_mprintf("INSERT OR REPLACE INTO meta VALUES ('end_reason', %Q)", how);
    if (begin() != 0 || !sql || sqlite3_exec(db, sql, NULL, NULL, NULL) != SQLITE_OK)
        sql_fail("end");
    sqlite3_free(sql);
    /* The end: when exit began if the program said so (events after it, from late destructors, push it
     * later), else when we saw it gone. */
    uint64_t end = atomic_load(&shm->exit_ns);
    if (!end || strcmp(how, "exit") != 0)
        end = cmt_now_ns();
    if (end < last_event_ns)
        end = last_event_ns;
    if (commit() == 0 && cmt_db_finalize(db, (long long)end, 1, err, sizeof err) != 0)
        cmt_log("cannot finalize %s: %s (its events are intact)", trace_path, err);
    drop_db();
}

/* ---- the watchdog ---------------------------------------------------------------------------------- */

/* The writer killed (SIGKILL, the OOM killer): its parent, the watchdog, takes the queue over so that the
 * program never waits on a dead writer, and counts everything the trace will not hold: what the writer had
 * taken off the queue since its last commit (the commit says where it was: meta.writer_ring_pos), what is
 * queued from then on, and what the program could not queue. The file keeps what was committed, readable
 * and not finalized; events_lost says how many events it lacks, meta.writer_killed by which signal. */
static void take_over(int sig)
{
    atomic_store(&shm->writer_pid, (int32_t)getpid());
    int ws = atomic_load_explicit(&shm->writer_state, memory_order_acquire);
    uint64_t dead_at = cmt_ring_take_over(&queue), after = 0;
    if (ws == CMT_WRITER_STARTING) {
        /* A file claimed (before the fork: its name is ours too) but not yet a trace: nothing a reader
         * could use, and its name would push the next run's trace aside. Removed before the program hears. */
        if (trace_path[0]) {
            static const char *const tails[] = {"-journal", "-wal", "-shm", ""};
            for (size_t i = 0; i < sizeof tails / sizeof tails[0]; i++) {
                char p[sizeof trace_path + 16];
                snprintf(p, sizeof p, "%s%s", trace_path, tails[i]);
                unlink(p);
            }
        }
        report_failure("the trace writer was killed (signal %d) before it created its file", sig);
    }
    if (ws != CMT_WRITER_READY) {
        discard_until_gone(NULL);
        return;
    }
    const char *how = discard_until_gone(&after); /* the file stays locked: claimed before the fork */
    sqlite3_stmt *st = NULL;
    uint64_t committed = 0;
    if (cmt_db_sqlite_open(trace_path, &db, SQLITE_OPEN_READWRITE) != SQLITE_OK) {
        cmt_log("cumemtrace-writer: cannot count what the killed writer lost in %s", trace_path);
        return;
    }
    sqlite3_busy_timeout(db, 10000);
    uint64_t unpublished = 0;
    if (sqlite3_prepare_v2(db, "SELECT (SELECT value FROM meta WHERE key = 'writer_ring_pos'),"
                               " (SELECT value FROM meta WHERE key = 'writer_unpublished')", -1, &st, NULL) == SQLITE_OK &&
        sqlite3_step(st) == SQLITE_ROW) {
        committed = (uint64_t)sqlite3_column_int64(st, 0);
        unpublished = (uint64_t)sqlite3_column_int64(st, 1);
    }
    sqlite3_finalize(st);
    uint64_t lost = atomic_load(&shm->lost) + unpublished + (dead_at > committed ? dead_at - committed : 0) + after;
    char *sql = sqlite3_mprintf("BEGIN; UPDATE process SET events_lost = %llu;"
                                " INSERT OR REPLACE INTO meta VALUES ('end_reason', %Q);"
                                " INSERT OR REPLACE INTO meta VALUES ('writer_killed', %d); COMMIT",
                                (unsigned long long)lost, how, sig);
    if (!sql || exec_sql(sql) != 0)
        cmt_log("cumemtrace-writer: cannot count what the killed writer lost in %s: %s", trace_path, sqlite3_errmsg(db));
    /* Back to a rollback journal, as cmt_db_finalize leaves a trace: the writer's WAL checkpointed and
     * removed, one file to copy around, which a reader opens read-only without making -wal and -shm
     * beside it. */
    else if (exec_sql("PRAGMA journal_mode=DELETE") != 0)
        cmt_log("cumemtrace-writer: cannot checkpoint %s: %s", trace_path, sqlite3_errmsg(db));
    sqlite3_free(sql);
    sqlite3_close(db);
    db = NULL;
}

/* The process spawned as the writer forks: the child writes the trace, this parent only waits for it (no
 * CPU; the trace's lock, shared with the writer, let go with the writer's) and takes over if it is killed.
 * Returns the exit status. */
static int watchdog(pid_t writer)
{
    prctl(PR_SET_NAME, "cumemtrace-wdog");
    int nul = open("/dev/null", O_WRONLY | O_CLOEXEC); /* the program's stderr is not ours to keep */
    if (nul >= 0) {
        dup2(nul, 2);
        close(nul);
    }
    int st;
    while (waitpid(writer, &st, 0) < 0)
        if (errno != EINTR)
            return 0;
    if (WIFSIGNALED(st) && atomic_load(&shm->writer_state) != CMT_WRITER_DONE)
        take_over(WTERMSIG(st));
    atomic_store_explicit(&shm->writer_state, CMT_WRITER_DONE, memory_order_release);
    if (lock_fd >= 0)
        close(lock_fd);
    return WIFEXITED(st) ? WEXITSTATUS(st) : 0;
}

static void setup_process(void)
{
    /* Only our descriptors: 0 and 1 are /dev/null, 2 the program's stderr until we are ready, 3 the shared
     * memory, 4 the pipe; whatever else the program had open without close-on-exec is not ours. */
    if (syscall(SYS_close_range, 5u, ~0u, 0u) != 0)
        for (int fd = 5; fd < 65536; fd++)
            close(fd);
    /* SIGXFSZ: a file size limit the program set is ours too; writes past it fail with EFBIG instead. */
    static const int quiet[] = {SIGINT, SIGQUIT, SIGHUP, SIGPIPE, SIGTSTP, SIGTTIN, SIGTTOU, SIGUSR1, SIGUSR2,
                                SIGXFSZ};
    for (size_t i = 0; i < sizeof quiet / sizeof quiet[0]; i++)
        signal(quiet[i], SIG_IGN);
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL); /* the interposer spawned us with every signal blocked */
}

int main(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    setup_process();
    struct stat st;
    if (fstat(3, &st) != 0 || (size_t)st.st_size < CMT_SHM_HEADER_SIZE) {
        cmt_log("cumemtrace-writer is started by libcumemtrace.so, not by hand");
        return 2;
    }
    void *mem = mmap(NULL, (size_t)st.st_size, PROT_READ | PROT_WRITE, MAP_SHARED, 3, 0);
    if (mem == MAP_FAILED) {
        cmt_log("cumemtrace-writer: cannot map the shared memory: %s", strerror(errno));
        return 2;
    }
    shm = mem;
    if (shm->magic != CMT_SHM_MAGIC || shm->version != CMT_SHM_VERSION || shm->header_size != CMT_SHM_HEADER_SIZE ||
        (size_t)st.st_size < CMT_SHM_HEADER_SIZE + (size_t)shm->ring_capacity * shm->ring_slot_size ||
        !shm->ring_capacity || (shm->ring_capacity & (shm->ring_capacity - 1))) {
        cmt_log("cumemtrace-writer: the shared memory is not from this build's libcumemtrace.so");
        return 2;
    }
    pid = shm->pid;
    cmt_ring_attach(&queue, &shm->ring, (unsigned char *)mem + CMT_SHM_HEADER_SIZE, shm->ring_capacity,
                    shm->ring_slot_size, shm->ring_max_frames);
    shm->output[sizeof shm->output - 1] = 0;
    shm->prog[sizeof shm->prog - 1] = 0;
    pidfd = (int)syscall(SYS_pidfd_open, pid, 0);
    cmt_symbols_set_pid(pid);
    /* The file claimed and locked, then, before any SQLite, the fork: the writer is our child, we its
     * watchdog, both holding the file's lock. Without a fork, no watchdog. */
    int fail = claim_trace() != 0;
    pid_t writer = fork();
    if (writer > 0)
        return watchdog(writer);
    atomic_store(&shm->writer_pid, (int32_t)getpid());
    if (!fail)
        fail = open_trace() != 0;
    if (!fail) {
        atomic_store_explicit(&shm->writer_state, CMT_WRITER_READY, memory_order_release);
        atomic_store(&shm->ready, 1);
        syscall(SYS_futex, &shm->ready, FUTEX_WAKE, INT32_MAX, NULL, NULL, 0);
    }
    /* The program's stderr is not ours to keep: a reader of its pipe would wait for us to close it. */
    int nul = open("/dev/null", O_WRONLY | O_CLOEXEC);
    if (nul >= 0) {
        dup2(nul, 2);
        close(nul);
    }
    if (fail) {
        discard_until_gone(NULL);
        return 1;
    }
    if (shm->debug_writer_delay_ms) {
        /* A writer that cannot start for a while (a stalled disk), for the loss-accounting test and for
         * timing the writer alone in bench/bench_capture.sh. */
        struct timespec d = {shm->debug_writer_delay_ms / 1000, (long)(shm->debug_writer_delay_ms % 1000) * 1000000};
        nanosleep(&d, NULL);
    }
    last_commit_ns = cmt_now_ns();
    uint64_t idle_ns = 1000 * 1000;
    const char *how = NULL;
    for (;;) {
        long n = drain(BATCH_EVENTS);
        if (n < 0)
            break;
        uint64_t now = cmt_now_ns();
        /* Commit every 100 ms: each commit writes the block being filled again, so committing whenever the
         * queue ran dry would cost a block's encoding per batch; the program's end commits at once. */
        if (in_txn && now - last_commit_ns >= COMMIT_INTERVAL_NS && commit() != 0)
            break;
        if (n > 0) {
            idle_ns = 1000 * 1000;
            continue;
        }
        if ((how = program_gone()))
            break;
        sleep_on_wake(idle_ns);
        if (idle_ns < 20 * 1000 * 1000)
            idle_ns *= 2;
    }
    if (how) {
        finish_trace(how);
    } else {
        /* SQLite failed: what was committed stays; drain and drop the rest so the program never waits. */
        drop_db();
        atomic_store_explicit(&shm->writer_state, CMT_WRITER_FAILED, memory_order_release);
        discard_until_gone(NULL);
    }
    atomic_store_explicit(&shm->writer_state, CMT_WRITER_DONE, memory_order_release);
    if (lock_fd >= 0)
        close(lock_fd); /* readers waiting for the file go on */
    return 0;
}
