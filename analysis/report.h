/*
 * report.h: the report model: everything `report` says about an analyzed set of traces, built once
 * (cmt_report_build) and drawn by the renderers (render.h: text, JSON, the viewer's page), which compute
 * nothing of their own: headline numbers, top stacks and modules at the peak, leaks, failures, largest
 * allocations, size histogram, churn; the allocator level (torch.h), phases (ranges.h), ranks (ranks.h),
 * the ledger (ledger.h) and, when asked, the what-if table.
 *
 * Runs in the `cumemtrace` command. Reads stacks and timestamps through the set's open traces.
 */
#ifndef CMT_REPORT_H
#define CMT_REPORT_H

#include "analysis.h"
#include "ledger.h"
#include "ranges.h"
#include "ranks.h"
#include "torch.h"
#include "whatif.h"

#define CMT_NBIG 10
#define CMT_NHIST 64

struct cmt_big {
    int trace;
    struct cmt_rec r;
    int64_t ts, free_ts; /* free_ts -1 while live */
    const struct cmt_stack *stack;
};

struct cmt_report {
    struct cmt_set *s;
    struct cmt_group *top, *mods, *leaks;
    size_t ntop, nmods, nleaks;
    int64_t leaked_bytes, leaked_count;
    const struct cmt_stack **fail_stacks; /* one per s->fails[] */
    struct cmt_big big[CMT_NBIG];
    int nbig;
    int64_t hist_count[CMT_NHIST], hist_bytes[CMT_NHIST]; /* bucket i: sizes in (2^(i-1), 2^i] */
    int64_t allocs, frees, bytes_alloc, bytes_freed;
    int64_t api_count[CMT_NAPIS];
    int64_t kind_peak[CMT_NKINDS], kind_leaked[CMT_NKINDS]; /* summed over traces */
    int64_t events, duration_ns;
    int top_n; /* entries per table for people (and top_at_peak, leaks in JSON) */

    struct cmt_torch torch;         /* the allocator level */
    struct cmt_range_report ranges; /* phases */
    struct cmt_ranks ranks;         /* per process of a job */
    struct cmt_ledger ledger;       /* where the device's memory went, by owner */
    struct cmt_whatif_outcome *whatif; /* --whatif: runs [0..nwhatif], the recorded one first; NULL without */
    int nwhatif;
    struct cmt_whatif_gpu whatif_gpu; /* --whatif-gpu (spec NULL without) */
};

struct cmt_report_options {
    int top; /* 0: 10 */
    struct cmt_torch_options torch;
    const char *const *whatif; /* --whatif CONF...: the allocator replayed under each (one trace only) */
    int nwhatif;
    const char *whatif_gpu; /* --whatif-gpu */
};

/* After cmt_load: the whole model. 0, or -1 with a reason in err (r is then still freed by cmt_report_free). */
int cmt_report_build(struct cmt_report *r, struct cmt_set *s, const struct cmt_report_options *o, char *err,
                     size_t errlen);
void cmt_report_free(struct cmt_report *r);


#endif
