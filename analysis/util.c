/*
 * util.c: what every verb shares besides buffers and maps (sbuf.c, maps.c): one-line errors and
 * warnings, our files beside the executable, trace files on disk (is it ours, is a writer still on it,
 * removing one), size options, and running our Python helpers (see util.h).
 *
 * Runs in the `cumemtrace` command only. Prints only on stderr (cmt_log, cmt_warn); never on stdout.
 */
#include "util.h"
#include "cmt_db.h"

#include <errno.h>
#include <stdio.h>
#include <unistd.h>
#include <limits.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sqlite3.h>
#include <fcntl.h>
#include <sys/wait.h>
#include <time.h>
#include <sys/stat.h>
#include <sys/file.h>

void cmt_log(const char *fmt, ...)
{
    va_list ap;
    fputs("cumemtrace: ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
}

int cmt_fail(char *err, size_t errlen, const char *fmt, ...)
{
    if (err && errlen) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, errlen, fmt, ap);
        va_end(ap);
        /* One line, whatever SQLite's message quoted from a damaged schema. */
        for (char *p = err; *p; p++)
            if (*p == '\n' || *p == '\r') {
                *p = 0;
                break;
            } else if ((unsigned char)*p < 0x20) {
                *p = ' ';
            }
    }
    return -1;
}

/* Warnings wait until the verb has succeeded: a failing run says one line, its error. */
static struct sbuf warnings;

void cmt_warn(const char *fmt, ...)
{
    va_list ap;
    char line[1024];
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    sb_printf(&warnings, "cumemtrace: %s\n", line);
}

void cmt_warn_flush(int print)
{
    if (print && warnings.p)
        fputs(warnings.p, stderr);
    sb_free(&warnings);
}

int cmt_writer_holds(const char *path)
{
    struct stat st;
    if (stat(path, &st) != 0 || !S_ISREG(st.st_mode))
        return 0; /* not a file a writer could hold (validation says what it is) */
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
    if (fd < 0)
        return 0;
    int held = flock(fd, LOCK_SH | LOCK_NB) != 0 && errno == EWOULDBLOCK;
    close(fd);
    return held;
}

int cmt_wait_for_writer(const char *path, unsigned timeout_s, unsigned say_after_ms, int *said)
{
    for (unsigned ms = 0; ms < timeout_s * 1000u; ms += 50) {
        if (!cmt_writer_holds(path))
            return 0;
        if (ms == say_after_ms && !(said && (*said)++))
            fprintf(stderr, "cumemtrace: waiting for the trace writer to finish %s\n", path);
        struct timespec t = {0, 50 * 1000 * 1000};
        nanosleep(&t, NULL);
    }
    return -1;
}

int cmt_is_trace_file(const char *path)
{
    sqlite3 *db = NULL;
    int yes = 0;
    char head[16];
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
    if (fd < 0)
        return 0;
    ssize_t n = read(fd, head, sizeof head);
    close(fd);
    if (n != (ssize_t)sizeof head || memcmp(head, "SQLite format 3", 16) != 0)
        return 0;
    if (cmt_db_sqlite_open(path, &db, SQLITE_OPEN_READONLY) == SQLITE_OK) {
        sqlite3_stmt *st = NULL;
        if (sqlite3_prepare_v2(db, "SELECT value FROM meta WHERE key = 'format'", -1, &st, NULL) == SQLITE_OK &&
            sqlite3_step(st) == SQLITE_ROW && sqlite3_column_text(st, 0) &&
            !strcmp((const char *)sqlite3_column_text(st, 0), "cumemtrace"))
            yes = 1;
        sqlite3_finalize(st);
    }
    sqlite3_close(db);
    return yes;
}

void cmt_remove_trace(const char *path)
{
    static const char *const sides[] = {"", "-wal", "-shm", "-journal"};
    for (int i = 0; i < 4; i++) {
        char p[PATH_MAX + 16];
        snprintf(p, sizeof p, "%s%s", path, sides[i]);
        unlink(p);
    }
}

const char *cmt_base_name(const char *p)
{
    const char *s = p ? strrchr(p, '/') : NULL;
    return s ? s + 1 : p;
}

int cmt_find_beside(const char *const *rel, const char *name, char *out)
{
    char dir[PATH_MAX], cand[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", dir, sizeof dir - 1);
    if (n <= 0)
        return -1;
    dir[n] = 0;
    char *slash = strrchr(dir, '/');
    if (!slash)
        return -1;
    *slash = 0;
    for (size_t i = 0; rel[i]; i++) {
        int len = name ? snprintf(cand, sizeof cand, "%s/%s/%s", dir, rel[i], name)
                       : snprintf(cand, sizeof cand, "%s/%s", dir, rel[i]);
        if (len < 0 || len >= (int)sizeof cand)
            continue;
        if (access(cand, R_OK) == 0 && realpath(cand, out))
            return 0;
    }
    return -1;
}

int cmt_parse_size(const char *s, uint64_t *out)
{
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10), mult = 1;
    if (errno || end == s || *s == '-' || *s == '+' || *s == ' ')
        return -1;
    if (!strcasecmp(end, "KiB") || !strcasecmp(end, "K"))
        mult = 1ull << 10;
    else if (!strcasecmp(end, "MiB") || !strcasecmp(end, "M"))
        mult = 1ull << 20;
    else if (!strcasecmp(end, "GiB") || !strcasecmp(end, "G"))
        mult = 1ull << 30;
    else if (!strcasecmp(end, "TiB") || !strcasecmp(end, "T"))
        mult = 1ull << 40;
    else if (*end)
        return -1;
    if (v > UINT64_MAX / mult)
        return -1;
    *out = v * mult;
    return 0;
}

int cmt_run_program(char *const *argv, const char *needed_for, char *err, size_t errlen)
{
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    if (pid < 0)
        return cmt_fail(err, errlen, "fork: %s", strerror(errno));
    if (pid == 0) {
        execvp(argv[0], argv);
        fprintf(stderr, "cumemtrace: cannot run %s: %s (%s)\n", argv[0], strerror(errno), needed_for);
        _exit(127);
    }
    int status = 0;
    while (waitpid(pid, &status, 0) < 0)
        if (errno != EINTR)
            return cmt_fail(err, errlen, "waitpid: %s", strerror(errno));
    if (WIFSIGNALED(status))
        return cmt_fail(err, errlen, "%s was killed by signal %d", argv[0], WTERMSIG(status));
    return WEXITSTATUS(status);
}

int cmt_run_python(const char *script, char *const *args, size_t nargs, const char *needed_for, char *err,
                   size_t errlen)
{
    const char *py = getenv("CUMEMTRACE_PYTHON");
    if (!py || !*py)
        py = "python3";
    char **argv = calloc(nargs + 4, sizeof *argv);
    if (!argv)
        return cmt_fail(err, errlen, "out of memory");
    argv[0] = (char *)py;
    argv[1] = "-I";
    argv[2] = (char *)script;
    memcpy(argv + 3, args, nargs * sizeof *argv);
    int rc = cmt_run_program(argv, needed_for, err, errlen);
    free(argv);
    return rc;
}

/* ---------------------------------------------------------------------------------------------------
 * Our files and the Python helper */

int cmt_torch_find(const char *rel, char *out, size_t len)
{
    char cand[PATH_MAX * 2];
    const char *env = getenv("CUMEMTRACE_TORCH_DIR");
    if (env && *env) {
        snprintf(cand, sizeof cand, "%s/%s", env, rel);
        if (access(cand, R_OK) == 0 && realpath(cand, out))
            return 0;
    }
    /* beside cumemtrace in the build tree and installed; beside cumemtrace-import-torch (importers/,
     * libexec/cumemtrace/) likewise */
    static const char *const bases[] = {"torch", "../share/cumemtrace/torch", "../analysis/torch",
                                        "../../share/cumemtrace/torch", NULL};
    (void)len;
    return cmt_find_beside(bases, rel, out);
}

int cmt_torch_python(const char *name, char *const *args, char *err, size_t errlen)
{
    char script[PATH_MAX];
    if (cmt_torch_find(name, script, sizeof script) != 0)
        return cmt_fail(err, errlen, "%s not found beside this program (set CUMEMTRACE_TORCH_DIR)", name);
    size_t n = 0;
    while (args[n])
        n++;
    return cmt_run_python(script, args, n, "Python 3 is needed to read PyTorch snapshots", err, errlen);
}

int sb_write(const struct sbuf *b, const char *path, char *err, size_t errlen)
{
    if (b->oom) {
        snprintf(err, errlen, "out of memory while formatting the output");
        return -1;
    }
    int to_stdout = !path || !strcmp(path, "-");
    if (!to_stdout && cmt_is_trace_file(path)) {
        /* the analyzer writes no trace: an output named like one is an input, or someone's data */
        snprintf(err, errlen, "%s is a cumemtrace trace; not overwriting it with this output", path);
        return -1;
    }
    FILE *f = to_stdout ? stdout : fopen(path, "w");
    if (!f) {
        snprintf(err, errlen, "cannot write %s: %s", path, strerror(errno));
        return -1;
    }
    size_t n = b->len ? fwrite(b->p, 1, b->len, f) : 0;
    int bad = n != b->len || fflush(f) != 0;
    if (!to_stdout && fclose(f) != 0)
        bad = 1;
    if (bad) {
        snprintf(err, errlen, "cannot write %s: %s", to_stdout ? "standard output" : path, strerror(errno));
        return -1;
    }
    return 0;
}
