/*
 * util.c: buffers, escaping, units, hash maps and logging for the analyzer (see util.h).
 *
 * Runs in the `cumemtrace` command only. Never touches SQLite; never prints on stdout except through
 * sb_write, which the verbs call once, after the analysis succeeded.
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

static int grow(struct sbuf *b, size_t need)
{
    if (b->oom)
        return -1;
    if (b->len + need + 1 <= b->cap)
        return 0;
    size_t cap = b->cap ? b->cap : 4096;
    while (cap < b->len + need + 1)
        cap *= 2;
    char *p = realloc(b->p, cap);
    if (!p) {
        b->oom = 1;
        return -1;
    }
    b->p = p;
    b->cap = cap;
    return 0;
}

void sb_put(struct sbuf *b, const char *s, size_t n)
{
    if (grow(b, n) != 0)
        return;
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = 0;
}

void sb_puts(struct sbuf *b, const char *s) { sb_put(b, s, strlen(s)); }

void sb_putc(struct sbuf *b, char c) { sb_put(b, &c, 1); }

void sb_printf(struct sbuf *b, const char *fmt, ...)
{
    char small[512];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(small, sizeof small, fmt, ap);
    va_end(ap);
    if (n < 0)
        return;
    if ((size_t)n < sizeof small) {
        sb_put(b, small, (size_t)n);
        return;
    }
    if (grow(b, (size_t)n) != 0)
        return;
    va_start(ap, fmt);
    vsnprintf(b->p + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
}

/* Length of the valid UTF-8 sequence at p (1..4), or 0 if the bytes there are not one. Traces come from
 * symbol tables and /proc: bytes are not promised to be text, and JSON, HTML and SVG must be. */
static int utf8_len(const unsigned char *p)
{
    if (p[0] < 0x80)
        return 1;
    int n = p[0] >= 0xf0 && p[0] <= 0xf4 ? 4 : p[0] >= 0xe0 ? 3 : p[0] >= 0xc2 && p[0] < 0xe0 ? 2 : 0;
    if (!n || (p[0] >= 0xf0 && n != 4))
        return 0;
    for (int i = 1; i < n; i++)
        if ((p[i] & 0xc0) != 0x80)
            return 0;
    if ((n == 3 && p[0] == 0xe0 && p[1] < 0xa0) || (n == 3 && p[0] == 0xed && p[1] >= 0xa0) ||
        (n == 4 && p[0] == 0xf0 && p[1] < 0x90) || (n == 4 && p[0] == 0xf4 && p[1] >= 0x90))
        return 0; /* overlong, surrogate, or beyond U+10FFFF */
    return n;
}

/* Copies the character at *p (advancing it), or U+FFFD for a byte that does not start valid UTF-8. */
static void put_utf8(struct sbuf *b, const unsigned char **p)
{
    if (**p < 0x80) { /* the common case, ASCII */
        sb_putc(b, (char)*(*p)++);
        return;
    }
    int n = utf8_len(*p);
    if (!n) {
        sb_puts(b, "\xef\xbf\xbd");
        (*p)++;
        return;
    }
    for (int i = 0; i < n; i++)
        sb_putc(b, (char)(*p)[i]);
    *p += n;
}

void sb_json_str(struct sbuf *b, const char *s)
{
    if (!s) {
        sb_puts(b, "null");
        return;
    }
    sb_putc(b, '"');
    for (const unsigned char *p = (const unsigned char *)s; *p;) {
        switch (*p) {
        case '"': sb_puts(b, "\\\""); break;
        case '\\': sb_puts(b, "\\\\"); break;
        case '\n': sb_puts(b, "\\n"); break;
        case '\r': sb_puts(b, "\\r"); break;
        case '\t': sb_puts(b, "\\t"); break;
        default:
            if (*p < 0x20)
                sb_printf(b, "\\u%04x", *p);
            else {
                put_utf8(b, &p);
                continue;
            }
        }
        p++;
    }
    sb_putc(b, '"');
}

void sb_xml(struct sbuf *b, const char *s)
{
    if (!s)
        return;
    for (const unsigned char *p = (const unsigned char *)s; *p;) {
        switch (*p) {
        case '&': sb_puts(b, "&amp;"); break;
        case '<': sb_puts(b, "&lt;"); break;
        case '>': sb_puts(b, "&gt;"); break;
        case '"': sb_puts(b, "&quot;"); break;
        case '\'': sb_puts(b, "&#39;"); break;
        default:
            if (*p >= 0x20) {
                put_utf8(b, &p);
                continue;
            }
            if (*p == '\n' || *p == '\t')
                sb_putc(b, (char)*p);
        }
        p++;
    }
}

void sb_free(struct sbuf *b)
{
    free(b->p);
    memset(b, 0, sizeof *b);
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

const char *cmt_bytes_str(int64_t bytes, char buf[32])
{
    static const char *units[] = {"B", "KiB", "MiB", "GiB", "TiB", "PiB"};
    int neg = bytes < 0;
    double v = neg ? -(double)bytes : (double)bytes;
    int u = 0;
    while (v >= 1024.0 && u < 5) {
        v /= 1024.0;
        u++;
    }
    if (u == 0)
        snprintf(buf, 32, "%s%lld B", neg ? "-" : "", (long long)(neg ? -bytes : bytes));
    else if (v < 10) {
        /* three significant digits below 10 (1.25 GiB), trailing zero dropped but one decimal kept */
        char num[16];
        snprintf(num, sizeof num, "%.2f", v);
        size_t l = strlen(num);
        if (num[l - 1] == '0' && num[l - 2] != '.')
            num[l - 1] = 0;
        snprintf(buf, 32, "%s%s %s", neg ? "-" : "", num, units[u]);
    } else
        snprintf(buf, 32, "%s%.1f %s", neg ? "-" : "", v, units[u]);
    return buf;
}

const char *cmt_count_str(int64_t n, char buf[32])
{
    char raw[32];
    int neg = n < 0;
    snprintf(raw, sizeof raw, "%llu", (unsigned long long)(neg ? -(n + 1) + 1ULL : (uint64_t)n));
    size_t len = strlen(raw), o = 0;
    if (neg)
        buf[o++] = '-';
    for (size_t i = 0; i < len; i++) {
        if (i && (len - i) % 3 == 0)
            buf[o++] = ',';
        buf[o++] = raw[i];
    }
    buf[o] = 0;
    return buf;
}

const char *cmt_time_str(int64_t ns, char buf[32])
{
    double a = ns < 0 ? -(double)ns : (double)ns;
    const char *sign = ns < 0 ? "-" : "";
    if (a >= 1e9)
        snprintf(buf, 32, "%s%.3f s", sign, a / 1e9);
    else if (a >= 1e6)
        snprintf(buf, 32, "%s%.1f ms", sign, a / 1e6);
    else if (a >= 1e3)
        snprintf(buf, 32, "%s%.1f us", sign, a / 1e3);
    else
        snprintf(buf, 32, "%s%.0f ns", sign, a);
    return buf;
}

const char *cmt_result_name(int64_t r)
{
    switch (r) {
    case 0: return "CUDA_SUCCESS";
    case 1: return "CUDA_ERROR_INVALID_VALUE";
    case 2: return "CUDA_ERROR_OUT_OF_MEMORY";
    case 3: return "CUDA_ERROR_NOT_INITIALIZED";
    case 4: return "CUDA_ERROR_DEINITIALIZED";
    case 100: return "CUDA_ERROR_NO_DEVICE";
    case 101: return "CUDA_ERROR_INVALID_DEVICE";
    case 201: return "CUDA_ERROR_INVALID_CONTEXT";
    case 400: return "CUDA_ERROR_INVALID_HANDLE";
    case 700: return "CUDA_ERROR_ILLEGAL_ADDRESS";
    case 801: return "CUDA_ERROR_NOT_SUPPORTED";
    case 999: return "CUDA_ERROR_UNKNOWN";
    default: return NULL;
    }
}

/* ---- integer map: linear probing, backward-shift deletion (no tombstones) ---- */

static inline uint64_t mix64(uint64_t x)
{
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdULL;
    x ^= x >> 33;
    x *= 0xc4ceb9fe1a85ec53ULL;
    x ^= x >> 33;
    return x;
}

#define IMAP_EMPTY UINT64_MAX

static int imap_grow(struct imap *m)
{
    size_t cap = m->cap ? m->cap * 2 : 1024;
    uint64_t *keys = malloc(cap * sizeof *keys);
    int64_t *vals = malloc(cap * sizeof *vals);
    if (!keys || !vals) {
        free(keys);
        free(vals);
        return -1;
    }
    memset(keys, 0xff, cap * sizeof *keys);
    for (size_t i = 0; i < m->cap; i++) {
        if (m->keys[i] == IMAP_EMPTY)
            continue;
        size_t j = mix64(m->keys[i]) & (cap - 1);
        while (keys[j] != IMAP_EMPTY)
            j = (j + 1) & (cap - 1);
        keys[j] = m->keys[i];
        vals[j] = m->vals[i];
    }
    free(m->keys);
    free(m->vals);
    m->keys = keys;
    m->vals = vals;
    m->cap = cap;
    return 0;
}

int imap_put(struct imap *m, uint64_t key, int64_t val)
{
    if (key == IMAP_EMPTY) {
        m->has_max = 1;
        m->max_val = val;
        return 0;
    }
    if ((m->n + 1) * 2 > m->cap && imap_grow(m) != 0)
        return -1;
    size_t j = mix64(key) & (m->cap - 1);
    while (m->keys[j] != IMAP_EMPTY && m->keys[j] != key)
        j = (j + 1) & (m->cap - 1);
    if (m->keys[j] == IMAP_EMPTY)
        m->n++;
    m->keys[j] = key;
    m->vals[j] = val;
    return 0;
}

int64_t *imap_get(const struct imap *m, uint64_t key)
{
    if (key == IMAP_EMPTY)
        return m->has_max ? (int64_t *)&m->max_val : NULL;
    if (!m->cap)
        return NULL;
    size_t j = mix64(key) & (m->cap - 1);
    while (m->keys[j] != IMAP_EMPTY) {
        if (m->keys[j] == key)
            return &m->vals[j];
        j = (j + 1) & (m->cap - 1);
    }
    return NULL;
}

int imap_del(struct imap *m, uint64_t key, int64_t *val)
{
    if (key == IMAP_EMPTY) {
        if (!m->has_max)
            return 0;
        if (val)
            *val = m->max_val;
        m->has_max = 0;
        return 1;
    }
    if (!m->cap)
        return 0;
    size_t mask = m->cap - 1, j = mix64(key) & mask;
    while (m->keys[j] != key) {
        if (m->keys[j] == IMAP_EMPTY)
            return 0;
        j = (j + 1) & mask;
    }
    if (val)
        *val = m->vals[j];
    /* Backward shift: move later members of the probe run into the hole so lookups never stop early. */
    size_t hole = j;
    for (size_t k = (j + 1) & mask; m->keys[k] != IMAP_EMPTY; k = (k + 1) & mask) {
        size_t home = mix64(m->keys[k]) & mask;
        int movable = hole <= k ? (home <= hole || home > k) : (home <= hole && home > k);
        if (movable) {
            m->keys[hole] = m->keys[k];
            m->vals[hole] = m->vals[k];
            hole = k;
        }
    }
    m->keys[hole] = IMAP_EMPTY;
    m->n--;
    return 1;
}

void imap_free(struct imap *m)
{
    free(m->keys);
    free(m->vals);
    memset(m, 0, sizeof *m);
}

/* ---- string map ---- */

static uint64_t str_hash(const char *s)
{
    uint64_t h = 1469598103934665603ULL;
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211ULL;
    return h;
}

int64_t *smap_get(const struct smap *m, const char *key)
{
    if (!m->cap)
        return NULL;
    size_t j = str_hash(key) & (m->cap - 1);
    while (m->keys[j]) {
        if (!strcmp(m->keys[j], key))
            return &m->vals[j];
        j = (j + 1) & (m->cap - 1);
    }
    return NULL;
}

int smap_put(struct smap *m, const char *key, int64_t val)
{
    int64_t *old = smap_get(m, key);
    if (old) {
        *old = val;
        return 0;
    }
    if ((m->n + 1) * 2 > m->cap) {
        size_t cap = m->cap ? m->cap * 2 : 256;
        char **keys = calloc(cap, sizeof *keys);
        int64_t *vals = calloc(cap, sizeof *vals);
        if (!keys || !vals) {
            free(keys);
            free(vals);
            return -1;
        }
        for (size_t i = 0; i < m->cap; i++) {
            if (!m->keys[i])
                continue;
            size_t j = str_hash(m->keys[i]) & (cap - 1);
            while (keys[j])
                j = (j + 1) & (cap - 1);
            keys[j] = m->keys[i];
            vals[j] = m->vals[i];
        }
        free(m->keys);
        free(m->vals);
        m->keys = keys;
        m->vals = vals;
        m->cap = cap;
    }
    char *copy = strdup(key);
    if (!copy)
        return -1;
    size_t j = str_hash(key) & (m->cap - 1);
    while (m->keys[j])
        j = (j + 1) & (m->cap - 1);
    m->keys[j] = copy;
    m->vals[j] = val;
    m->n++;
    return 0;
}

void smap_free(struct smap *m)
{
    for (size_t i = 0; i < m->cap; i++)
        free(m->keys[i]);
    free(m->keys);
    free(m->vals);
    memset(m, 0, sizeof *m);
}

void *cmt_push(void *arrp, size_t *n, size_t *cap, size_t esz)
{
    char **arr = arrp;
    if (*n == *cap) {
        size_t nc = *cap ? *cap * 2 : 16;
        char *p = realloc(*arr, nc * esz);
        if (!p)
            return NULL;
        *arr = p;
        *cap = nc;
    }
    char *e = *arr + (*n)++ * esz;
    memset(e, 0, esz);
    return e;
}

char *cmt_strdup(const char *s) { return s ? strdup(s) : NULL; }

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

char *cmt_text_dup(const char *s)
{
    if (!s)
        return NULL;
    struct sbuf b = {0};
    for (const unsigned char *p = (const unsigned char *)s; *p;) {
        if (*p < 0x20) {
            sb_putc(&b, ' ');
            p++;
        } else {
            put_utf8(&b, &p);
        }
    }
    if (b.oom) {
        sb_free(&b);
        return NULL;
    }
    return b.p ? b.p : strdup("");
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
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    if (pid < 0) {
        free(argv);
        return cmt_fail(err, errlen, "fork: %s", strerror(errno));
    }
    if (pid == 0) {
        execvp(py, argv);
        fprintf(stderr, "cumemtrace: cannot run %s: %s (%s)\n", py, strerror(errno), needed_for);
        _exit(127);
    }
    free(argv);
    int status = 0;
    while (waitpid(pid, &status, 0) < 0)
        if (errno != EINTR)
            return cmt_fail(err, errlen, "waitpid: %s", strerror(errno));
    if (WIFSIGNALED(status))
        return cmt_fail(err, errlen, "%s was killed by signal %d", py, WTERMSIG(status));
    return WEXITSTATUS(status);
}
