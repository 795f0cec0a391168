/*
 * whatif.h: out-of-memory verdicts that rest on the allocator model (cmd_whatif.c), for the report.
 *
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

/* The what-if table for the report (report --whatif CONF... [--whatif-gpu GPU]): the trace's recorded
 * allocator history replayed as recorded and under each configuration, as `whatif` does. Appends
 * ',"whatif":[...]' (and ',"whatif_gpu":{...}') to json and the table for people to text. 0, or -1 with a
 * one-line reason. */
struct sbuf;
int cmt_whatif_report(const char *trace, const char *const *confs, int nconf, const char *gpu_spec,
                      struct sbuf *json, struct sbuf *text, char *err, size_t errlen);

#endif
