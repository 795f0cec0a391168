/*
 * ranks.h: the ranks of a distributed job (torchrun and the like: one process per rank, RANK, LOCAL_RANK
 * and WORLD_SIZE in its environment, one trace each in one directory): each rank's peak, when and on which
 * device; the worst rank and the imbalance between ranks; which rank ran out of memory first; and the
 * physical GPUs that several ranks share.
 *
 * Runs in the `cumemtrace` command, after the one pass (analysis.h). Reads each trace's env table; never
 * writes. Builders return 0 or -1 with a one-line reason; renderers only format what was built.
 */
#ifndef CMT_RANKS_H
#define CMT_RANKS_H

#include "analysis.h"
#include "ranges.h"

struct cmt_rank {
    int trace;                          /* index into the set */
    int has_rank;                       /* RANK was set (rank, local_rank, world_size valid when >= 0) */
    int64_t rank, local_rank, world_size;
    int64_t peak, peak_ts, peak_unix_ns; /* the process's device memory peak, all its devices */
    int peak_dev;                       /* devs[] slot of the peak's allocation, -1 if nothing allocated */
    int64_t nfails, nooms;
    int64_t first_oom_ts, first_oom_unix_ns, first_oom_size, first_oom_device; /* valid when nooms > 0 */
    struct cmt_range_stack at_peak;     /* the phases (NVTX ranges) open at the process's peak, outermost first */
};

struct cmt_ranks {
    struct cmt_rank *r; /* sorted by rank (traces without RANK last, by pid) */
    size_t n;
    int any_rank;       /* at least one trace has RANK: the job is a distributed one */
    int worst, least;   /* indices into r: highest and lowest peak (first by rank on ties) */
    int first_oom;      /* index into r of the earliest out-of-memory by wall clock; -1 if none */
};

/* Builds the table for every trace of the set (analyzed). */
int cmt_ranks_build(struct cmt_ranks *k, struct cmt_set *s, char *err, size_t errlen);
void cmt_ranks_free(struct cmt_ranks *k);

/* The RANKS and SHARED DEVICES sections (text; nothing when no trace has RANK), and the JSON keys
 * "ranks", "rank_summary" and "rank_devices" (each preceded by a comma). */
void cmt_ranks_text(struct sbuf *b, const struct cmt_ranks *k, const struct cmt_set *s);
void cmt_ranks_json(struct sbuf *b, const struct cmt_ranks *k, const struct cmt_set *s);

#endif
