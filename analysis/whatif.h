/*
 * whatif.h: PyTorch's caching allocator replayed from a trace's recorded history through the model
 * (allocmodel.h): the what-if runs of `whatif` and `report --whatif` (whatif.c reads and replays,
 * whatif_run.c composes a run, render_whatif.c draws it), and the out-of-memory verdicts that rest on them.
 *
 * Verdicts: *
 * For every allocator OOM of a trace's latest allocator history: capacity when the live bytes plus the
 * request exceed what the device could give the allocator then (its reserved plus the device's free
 * bytes); memory held outside the allocator when they would have fitted but for device memory the
 * program held elsewhere (driver level, at the failed device allocation); fragmentation otherwise, and
 * then the history is replayed under other settings (expandable_segments:True, max_split_size_mb) with
 * that capacity to find one under which the request is served. The first 16 OOMs get a verdict (the
 * first 4 fragmentation ones the search): each replays the history.
 */
#ifndef CMT_WHATIF_H
#define CMT_WHATIF_H

#include "allocmodel.h"

#include <sqlite3.h>
#include <stddef.h>
#include <stdint.h>

enum { CMT_MV_CAPACITY = 1, CMT_MV_FRAGMENTATION = 2, CMT_MV_OUTSIDE = 3 };

struct cmt_mverdict {
    int64_t entry_id, device;
    int kind;                /* CMT_MV_* */
    int64_t request_bytes;   /* the request rounded as the allocator rounds it */
    int64_t live_bytes;      /* allocated at the OOM */
    int64_t reserved_bytes;  /* reserved at the OOM */
    int64_t capacity_bytes;  /* reserved + the device's free bytes at the OOM */
    int64_t outside_bytes;   /* device memory held outside the allocator then; -1 unknown (no driver level) */
    int64_t short_bytes;     /* live + request - capacity (> 0 for capacity and outside) */
    int reproduced;          /* the model under the recorded settings and this capacity fails here too */
    char fits_with[64];      /* fragmentation: the setting under which the request is served ("" none) */
    int64_t fits_reserved_bytes; /* reserved after the request under that setting */
    int64_t saves_bytes;     /* recorded reserved + the segment the request needed - fits_reserved_bytes */
};

/* The verdicts for the allocator history in db (none when there is no history or no OOM). 0, or -1 with
 * a one-line reason. *out is malloc'ed. */
int cmt_whatif_verdicts(sqlite3 *db, struct cmt_mverdict **out, size_t *n, char *err, size_t errlen);

#define CMT_WHATIF_MAX_CONFS 16

#define CMT_WHATIF_GC_WHY "it acts only under a per-process memory fraction (set_per_process_memory_fraction), which " \
               "neither the snapshot nor the trace records; replay it with --capacity LIMIT --alloc-conf " \
               "garbage_collection_threshold:T"

struct cmt_whatif_entry {
    int64_t id, addr, size, stream, reserved, allocated;
    int by;      /* segment_free/unmap: 1 empty_cache, 2 a retrying malloc, 3 a MemPool's destructor, 0 unknown */
    int64_t device;
    int pool;    /* 0 the default pools, k > 0 the k-th private pool the history names */
    int synthetic;
    char action; /* 'a' alloc, 'f' free_completed, 'q' free_requested of a block whose free completes later
                  * (record_stream), 'g' segment_alloc/map, 'e' empty_cache, 'r' a retry's releases, 'p' a
                  * private pool's release (its MemPool destroyed), 'u' a private pool seen released in a
                  * burst (no longer in use), 'x' other */
};

struct cmt_whatif_outcome {
    const char *label;
    struct cmt_aconf conf;
    struct cmt_astats st;
    int oom;
    int64_t oom_entry, oom_size;
    uint64_t oom_reserved, oom_allocated;
    int64_t checked, mismatches, first_mismatch;
    /* the recorded replay's stricter check: each new segment's (mapping's) size, each block's address
     * (in the recorded address space: a segment's model base pairs with the address the history gave it) */
    int64_t segments_checked, segment_mismatches, first_segment_mismatch;
    int64_t addresses_checked, address_mismatches, first_address_mismatch;
    int64_t allocated_mismatches, first_allocated_mismatch;
    int private_pools;           /* private pools the history uses */
    double recorded_gc;          /* the recorded garbage_collection_threshold (0 none), never applied */
};

/* The device a --gpu names, as the simulated driver presents it. */
struct cmt_whatif_gpu {
    const char *spec;
    uint64_t total, context, outside, capacity;
};

/* The recorded history of a trace's latest snapshot (its busiest device), with the recorded settings,
 * capacity and garbage_collection_threshold. *out is malloc'ed. 0, or -1 with a one-line reason. */
int cmt_whatif_load(const char *path, struct cmt_whatif_entry **out, size_t *n, struct cmt_aconf *rec,
                    uint64_t *rec_capacity, double *rec_gc, char *err, size_t errlen);
/* Replays e[0..n) under o->conf into o's figures; check: compare with the history (the recorded run). */
int cmt_whatif_replay(const struct cmt_whatif_entry *e, size_t n, struct cmt_whatif_outcome *o, int check,
                      char *err, size_t errlen);

/* The what-if runs (whatif_run.c): the recorded configuration into out[0], then each of confs (nconf at
 * most CMT_WHATIF_MAX_CONFS; out has room for nconf + 2) under the capacity gpu->spec or capacity gives
 * (UINT64_MAX: the recorded one). outside: the bytes a --gpu's device loses to memory held outside the
 * allocator, when the caller has analyzed the trace already (cmt_whatif_outside); NULL: this analyzes it.
 * *nout: how many configurations follow the recorded one. 0; -1 with a one-line reason; -2 when an
 * option's value is refused. */
int cmt_whatif_run(const char *trace, const char *const *confs, int nconf, struct cmt_whatif_gpu *gpu,
                   const uint64_t *outside, uint64_t capacity, struct cmt_whatif_outcome *out, int *nout, char *err,
                   size_t errlen);

/* Device memory held outside the caching allocator at the peak of the set's first trace: its driver-level
 * peak device's peak less the allocator's highest reserved there (0 for an imported snapshot, which has no
 * driver level). */
struct cmt_set;
struct cmt_torch;
uint64_t cmt_whatif_outside(const struct cmt_set *s, const struct cmt_torch *x);

/* render_whatif.c: out[0..nout] as a JSON array, the device as a JSON object, the table for people. */
struct sbuf;
void cmt_whatif_json(struct sbuf *b, const struct cmt_whatif_outcome *out, int nout);
void cmt_whatif_gpu_json(struct sbuf *b, const struct cmt_whatif_gpu *gpu);
void cmt_whatif_text(struct sbuf *b, const struct cmt_whatif_outcome *out, int nout,
                     const struct cmt_whatif_gpu *gpu);

#endif
