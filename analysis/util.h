/*
 * util.h: the analyzer's small tools: a growable text buffer (every verb builds its whole output in one
 * and prints it only once the analysis succeeded, so a failure never leaves half an answer on stdout),
 * JSON/XML escaping, human units, hash maps keyed by integers and by strings, and the one logging function.
 *
 * Runs in the `cumemtrace` command only. Never touches SQLite.
 */
#ifndef CMT_UTIL_H
#define CMT_UTIL_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- the one logging function: "cumemtrace: " + message + newline on stderr ---- */
void cmt_log(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Formats a one-line reason into err (if any) and returns -1: `return cmt_fail(err, errlen, ...)`. */
int cmt_fail(char *err, size_t errlen, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* A copy of s that is valid UTF-8 without control characters (invalid bytes become U+FFFD): strings
 * read from a trace may be anything, our output must be text. NULL for NULL or out of memory. */
char *cmt_text_dup(const char *s);

/* Long lists in text and HTML output (failures, OOMs) show this many from each end. */
#define CMT_TEXT_EACH_END 10
struct sbuf;
/* At index i of a list of n shown to people: i, or, at the first entry to leave out, the index of the first
 * of the last CMT_TEXT_EACH_END after printing "INDENT... N more WHAT (all of them in --json)". */
size_t cmt_text_elide(struct sbuf *b, size_t i, size_t n, const char *indent, const char *what);
/* The same choice for JSON lists cut for a page: whether entry i of n is among the first and last each_end
 * (each_end 0: every entry is). Entry 0 always is. */
static inline int cmt_shown(size_t i, size_t n, size_t each_end)
{
    return !each_end || n <= 2 * each_end || i < each_end || i >= n - each_end;
}

/* A line for the user ("cumemtrace: ..."), printed (by main) only if the verb succeeds: a failing run
 * says one line, its error. */
void cmt_warn(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void cmt_warn_flush(int print);

/* The part of a path after its last '/' (NULL-safe: NULL for NULL). */
const char *cmt_base_name(const char *p);

/* The first readable REL[i]/NAME (or REL[i], if NAME is NULL) relative to the directory of the running
 * executable, as a real path in out (PATH_MAX bytes): our files beside us, in the build tree or
 * installed. 0, or -1 if none. */
int cmt_find_beside(const char *const *rel, const char *name, char *out);

/* Removes a trace file and its -wal, -shm and -journal companions (errors ignored: absent is fine). */
/* "4096", "512MiB", "8G", "1TiB" (binary units, case-insensitive) into bytes. 0, or -1 if not a size. */
int cmt_parse_size(const char *s, uint64_t *out);
/* A cumemtrace-writer holds an flock on a trace while it writes it and until it is final. */
int cmt_writer_holds(const char *path);
/* Waits (at most timeout_s) until no writer holds path; says so on stderr once it has waited say_after_ms
 * (once in all, when said is given). 0, or -1 on timeout. */
int cmt_wait_for_writer(const char *path, unsigned timeout_s, unsigned say_after_ms, int *said);
/* True if path is an SQLite file whose meta says format = cumemtrace. */
int cmt_is_trace_file(const char *path);
void cmt_remove_trace(const char *path);

/* ---- growable text buffer; an allocation failure sets oom and later writes are dropped ---- */
struct sbuf {
    char *p;
    size_t len, cap;
    int oom;
};
void sb_printf(struct sbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void sb_put(struct sbuf *b, const char *s, size_t n);
void sb_puts(struct sbuf *b, const char *s);
void sb_putc(struct sbuf *b, char c);
void sb_json_str(struct sbuf *b, const char *s); /* "..." with JSON escapes; NULL becomes null */
void sb_xml(struct sbuf *b, const char *s);      /* text with &<>"' escaped */
void sb_free(struct sbuf *b);
/* Writes the buffer to path ("-" or NULL: stdout). 0 or -1 with a reason in err. */
int sb_write(const struct sbuf *b, const char *path, char *err, size_t errlen);

/* ---- human units (text output only; JSON carries exact integers) ---- */
const char *cmt_bytes_str(int64_t bytes, char buf[32]);  /* "1.5 GiB", "512 B" */
const char *cmt_count_str(int64_t n, char buf[32]);      /* "10,000,000" */
const char *cmt_time_str(int64_t ns, char buf[32]);      /* "3.214 s", "12.5 ms", "840 us" */
const char *cmt_result_name(int64_t result);             /* "CUDA_ERROR_OUT_OF_MEMORY" or NULL */

/* ---- open-addressing map from uint64 to int64 (any key: UINT64_MAX, the table's empty mark, is kept
 * beside the table, since a damaged trace can hold any value) ---- */
struct imap {
    uint64_t *keys;
    int64_t *vals;
    size_t cap, n;
    int has_max;
    int64_t max_val;
};
int imap_put(struct imap *m, uint64_t key, int64_t val); /* insert or replace; -1 on allocation failure */
int64_t *imap_get(const struct imap *m, uint64_t key);  /* NULL if absent */
int imap_del(struct imap *m, uint64_t key, int64_t *val); /* 1 removed (old value in *val), 0 absent */
void imap_free(struct imap *m);

/* ---- map from string (copied) to int64 ---- */
struct smap {
    char **keys;
    int64_t *vals;
    size_t cap, n;
};
int64_t *smap_get(const struct smap *m, const char *key);
int smap_put(struct smap *m, const char *key, int64_t val);
void smap_free(struct smap *m);

/* A pointer vector append: grows *arr (element size esz) to hold *n + 1 elements; returns the new
 * element (zeroed) or NULL. Inline: the allocator model's replay appends on its hot path. */
static inline void *cmt_push(void *arrp, size_t *n, size_t *cap, size_t esz)
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

/* Runs argv[0] (looked up in PATH unless it has a slash) with argv and waits. Returns its exit status (it says
 * why on stderr; 127 and a line naming needed_for when it cannot be run), or -1 with a reason in err. */
int cmt_run_program(char *const *argv, const char *needed_for, char *err, size_t errlen);

/* Runs our Python helper `script` (found by the caller) with args (nargs of them) under $CUMEMTRACE_PYTHON
 * or python3, isolated (-I: neither the user's site packages nor PYTHON* variables change it), and waits.
 * Returns its exit status (it says why on stderr), or -1 with a reason in err. `needed_for` completes the
 * line printed when Python cannot be run ("... needs Python 3 to read PyTorch snapshots"). */
int cmt_run_python(const char *script, char *const *args, size_t nargs, const char *needed_for, char *err,
                   size_t errlen);

/* Finds REL (e.g. "cmt_torch_export.py", "rules.txt", "bootstrap") under our data directory: $CUMEMTRACE_TORCH_DIR,
 * then the build tree (EXEDIR/torch), then an installed layout (EXEDIR/../share/cumemtrace/torch). 0 or -1. */
int cmt_torch_find(const char *rel, char *out, size_t len);

/* Runs `python3 NAME ARGS...` (NAME found by cmt_torch_find: cmt_torch_export.py, cmt_torch_import.py) and
 * waits; its stderr is the user's. Returns its exit status, or -1 with a reason in err when it could not
 * be started. */
int cmt_torch_python(const char *name, char *const *args, char *err, size_t errlen);

#endif
