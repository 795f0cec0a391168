/*
 * analysis.h: the analyzer's model of one or several traces (one run of a program, or the per-process
 * files of one multi-process job) and the single pass that fills it.
 *
 * The pass reads `SELECT ... FROM events ORDER BY seq` once per file, merging several files by time, and
 * pairs releases with acquires in C (hash maps keyed by address per op family, and by handle for
 * cuMemRelease): O(events). It never uses the schema's pairing views, which are for users' own SQL.
 * Stacks are read only when asked for (cmt_stack_get), one small indexed query each, and cached.
 *
 * Memory accounting (issue 3): device memory counts physical bytes only: kinds device, stream_ordered
 * (until cuMemFreeAsync), vmm_physical (from cuMemCreate until the last cuMemRelease of its handle:
 * cuMemRetainAllocationHandle and an import of a live handle add references) and array. VA reservations
 * and mappings are address space, not memory; managed, host-pinned, host-registered and imported memory
 * and graph memory nodes' addresses are tracked on their own.
 * The peak is the first moment the live device bytes of all devices of all traces reached their
 * maximum; per-device and per-process peaks are kept beside it.
 *
 * Runs in the `cumemtrace` command. Reads traces only through schema/cmt_db.h's cmt_db_open_read and
 * plain SELECTs; never writes to a trace.
 */
#ifndef CMT_ANALYSIS_H
#define CMT_ANALYSIS_H

#include "cmt_events.h"
#include "util.h"

#include <sqlite3.h>
#include <stdint.h>

#define CMT_NO_STACK (-1)
/* What a driver can hand out and when: beyond these a size or time is damage (and would overflow sums). */
#define CMT_MAX_SIZE ((int64_t)1 << 56) /* 64 PiB: far beyond any device, far below overflow */
#define CMT_MAX_TS ((int64_t)1 << 62)   /* ~146 years of CLOCK_MONOTONIC */
#define CMT_LIVE INT64_MAX
/* Tables indexed by kind or api id (schema/cmt_events.h); slot 0 counts unknown ones. */
#define CMT_NKINDS CMT_KIND_COUNT_PLUS_ONE
#define CMT_NAPIS CMT_API_COUNT_PLUS_ONE

/* One successful acquire of memory (kinds device, managed, host_pinned, stream_ordered, vmm_physical).
 * Reservations, mappings and IPC opens are tracked by size only. 32 bytes: 10 M events fit easily. */
struct cmt_rec {
    int64_t seq;      /* the acquire */
    int64_t free_seq; /* the release paired with it, CMT_LIVE while live (and at exit: a leak) */
    int64_t size;
    int32_t stack_id; /* CMT_NO_STACK if none */
    int16_t dev;      /* index into the trace's devs[] */
    uint8_t kind;
    uint8_t api;
};

/* A stack, symbolized for display: demangled names, innermost first, the uninteresting innermost frames
 * (our interposer, libcuda, libcudart) folded away. */
/* A source location of a frame (schema version 4's frame_lines). */
struct cmt_src {
    char *function; /* display name (demangled, clones folded); NULL when DWARF named none */
    char *file;     /* as recorded (absolute where the writer could); NULL when unknown */
    int line;       /* 0 when unknown */
};

/* A frame's source locations, innermost first: [0 .. n-2] the functions inlined into it, [n-1] the frame's
 * own function at its line. n = 0: no debug information. */
struct cmt_frame_src {
    int n;
    struct cmt_src *s;
};

struct cmt_stack {
    int nframes;
    char **frames;
    struct cmt_frame_src *src; /* parallel to frames (NULL in traces before schema version 4); never in key */
    int nsrc;                  /* entries of src filled */
    char *module; /* basename of the innermost kept frame's module, "[unknown]" if none */
    char *key;    /* frames joined by '\n': the identity of a stack across runs (addresses differ) */
};

struct cmt_dev {
    int64_t device; /* CUdevice ordinal, -1 when unknown */
    char *name, *uuid;
    int64_t total_bytes; /* 0 when unknown */
    int64_t live, peak, peak_ts, peak_seq;
    int shared; /* 1 + index into the set's shared[] (one physical GPU: host and uuid); 0 before set */
};

/* One physical GPU as several processes see it (ranks sharing a device): the same host and device uuid.
 * Its live bytes are the sum over the processes on it, in the merged time order (analysis/ranks.c). */
struct cmt_shared_dev {
    const char *host, *uuid; /* owned by the first trace that named it; uuid NULL: the ordinal is all we know */
    int64_t device;
    int64_t live, peak, peak_ts;
};

struct cmt_failure {
    int trace;
    int64_t seq, ts, size, result, free_bytes, total_bytes, live_bytes, device;
    int has_free;
    int32_t stack_id;
    uint8_t api, kind;
};

struct cmt_map {
    int64_t address, size;
};

/* A sample event (op sample), as recorded: see schema/cmt_events.h for what each api's fields hold. */
enum { CMT_SAMPLE_SIZE = 1, CMT_SAMPLE_AUX = 2, CMT_SAMPLE_HANDLE = 4, CMT_SAMPLE_FREE = 8, CMT_SAMPLE_TOTAL = 16 };
struct cmt_sample {
    int64_t seq, ts, device, size, aux, handle, free_bytes, total_bytes;
    int api, kind, present;
};

struct cmt_trace {
    char *path;
    sqlite3 *db;
    sqlite3_stmt *events, *stack_q, *lines_q; /* lines_q: NULL before schema version 4 */
    int64_t pid, ppid, start_unix_ns, start_ns, end_ns, events_written, events_lost, stack_depth;
    int has_end;
    int finalized;
    char end_reason[16]; /* meta.end_reason: "exit", "exec", "killed"; "" when not recorded */
    char *host, *exe, *argv;
    int64_t first_ts, last_ts, last_seq_in_file;

    /* filled by the pass */
    int64_t n_events, cur_seq, api_count[CMT_NAPIS];
    struct cmt_dev *devs;
    size_t ndevs, devcap;
    struct cmt_rec *recs;
    size_t nrecs, reccap;
    struct imap by_addr, by_reserve, by_handle, by_ipc, stack_ix;
    struct imap handle_refs; /* handle -> references beyond the first (retains, imports of a live handle) */
    struct cmt_map *maps;
    size_t nmaps, mapcap;
    struct cmt_sample *samples; /* op sample events, in seq order */
    size_t nsamples, samplecap;
    int64_t kind_live[CMT_NKINDS], kind_peak[CMT_NKINDS];
    int64_t live, peak, peak_ts, peak_seq; /* device memory of this process, all devices */
    int peak_dev;                          /* devs[] slot of the allocation that made the peak */
    int64_t snap_seq;                      /* last seq of this trace processed at the overall peak */
    int exited;                            /* merged pass: the process has ended, its memory is returned */
    int64_t unmatched_releases, failed_releases;

    struct cmt_ranges *ranges; /* ranges.h: phases (schema version 3), loaded by their observer in the pass */
    void (*ranges_free)(struct cmt_trace *t); /* set with ranges by whoever loaded them; trace_free calls it */

    /* stack cache: stack_id -> index into stacks[] */
    struct cmt_stack **stacks;
    size_t nstacks, stackcap;
};

struct cmt_set;

/* An observer of the pass: told of every change of accounted memory in the merged order, after the
 * model's own counters moved (t->live, s->live and the peaks already include it). Phases (ranges.c) and
 * the timeline's panels (timeline.c) are observers; the pass knows none of them by name. Any callback may
 * be NULL; each returns 0, or -1 with a reason in err, which stops the pass. */
struct cmt_observer {
    void *ctx;
    int (*begin)(void *ctx, struct cmt_set *s, char *err, size_t errlen);
    /* allocation r of trace ti gained (sign +1) or gave back (-1) its r->size bytes at (seq, ts) */
    int (*change)(void *ctx, struct cmt_set *s, size_t ti, const struct cmt_rec *r, int sign, int64_t seq,
                  int64_t ts, char *err, size_t errlen);
    /* merged passes: trace ti's process ended at ts; what it held has left s->live */
    int (*exit)(void *ctx, struct cmt_set *s, size_t ti, int64_t ts, char *err, size_t errlen);
    int (*end)(void *ctx, struct cmt_set *s, char *err, size_t errlen);
};

struct cmt_set {
    struct cmt_trace **t;
    size_t n;
    int64_t t0, tend; /* the time axis: earliest start, latest event or end */
    int64_t live, peak, peak_ts, peak_seq;
    int peak_trace;
    struct cmt_shared_dev *shared; /* physical GPUs by host and uuid, with their summed live bytes */
    size_t nshared, sharedcap;
    struct cmt_failure *fails;
    size_t nfails, failcap;
};

/* Opens every path (a trace file, or a directory of per-process *.db traces), validates each (format,
 * version, not being written, not empty) and warns once on stderr about unfinalized or lossy ones. */
int cmt_set_open(struct cmt_set *s, char **paths, int npaths, char *err, size_t errlen);
/* The one pass over the events of all traces (pass.c), telling each observer, in order. */
int cmt_set_analyze(struct cmt_set *s, const struct cmt_observer *obs, size_t nobs, char *err, size_t errlen);
void cmt_set_close(struct cmt_set *s);

/* What every verb does first (load.c): opens paths, then the pass with the model's own observers (phases)
 * and the caller's (obs, nobs: e.g. the timeline's). On failure prints nothing and fills err. */
int cmt_load(struct cmt_set *s, char **paths, int npaths, const struct cmt_observer *obs, size_t nobs, char *err,
             size_t errlen);

/* The newest imported allocator history of a trace (alloc_snapshots), or -1 when it has none (or is a
 * version 1 file, without the table). */
int64_t cmt_torch_newest_snapshot(struct cmt_trace *t);

/* Frees the trace's stack cache (stacks.c). */
void cmt_stacks_free(struct cmt_trace *t);

/* The symbolized stack (cached); *out is never NULL on success (an empty stack for CMT_NO_STACK). */
int cmt_stack_get(struct cmt_trace *t, int32_t stack_id, const struct cmt_stack **out, char *err,
                  size_t errlen);

/* Which allocations an aggregation looks at. */
enum cmt_select {
    CMT_AT_PEAK, /* device memory live at the overall peak */
    CMT_LEAKED,  /* device memory live at exit */
    CMT_TOTAL,   /* every device-memory allocation, live or not */
};

/* Bytes and counts grouped by symbolized stack (key) or by module; sorted by bytes, largest first. */
struct cmt_group {
    const struct cmt_stack *stack; /* a representative; NULL for module groups */
    const char *name;              /* the stack key or the module name (owned by the stack cache) */
    int64_t bytes, count;
};
int cmt_group_by_stack(struct cmt_set *s, enum cmt_select sel, struct cmt_group **out, size_t *n,
                       char *err, size_t errlen);
int cmt_group_by_module(struct cmt_set *s, enum cmt_select sel, struct cmt_group **out, size_t *n,
                        char *err, size_t errlen);

/* Process label "exe[pid]" basename, for several traces. */
void cmt_trace_label(const struct cmt_trace *t, char *buf, size_t len);

/* rows.c: the vocabulary's names, and one line for an SQLite error met while reading a trace. */
const char *cmt_api_name(int api);
const char *cmt_kind_name(int kind);
int cmt_db_read_fail(const struct cmt_trace *t, int rc, char *err, size_t errlen);

/* Checks the types of a row just stepped against spec, one letter per column: 'i' an integer, 'I' an
 * integer or NULL, 't' text, 'T' text or NULL, '-' anything. A value of another type is damage that SQLite
 * would otherwise quietly read as 0 or "": returns -1 with "PATH: corrupt trace: WHAT ID has text in
 * column NAME" in err (what: "event", "stack", "allocator entry"...), 0 if every column is as expected. */
int cmt_row_check(const char *path, sqlite3_stmt *st, const char *spec, const char *what, long long id,
                  char *err, size_t errlen);

#endif
