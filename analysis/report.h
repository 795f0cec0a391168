/*
 * report.h: the summary of an analyzed set of traces that `report` prints (text, JSON, HTML) and `diff`
 * compares: headline numbers, top stacks and modules at the peak, leaks, failures, largest allocations,
 * size histogram, churn.
 *
 * Runs in the `cumemtrace` command. Reads stacks and timestamps through the set's open traces.
 */
#ifndef CMT_REPORT_H
#define CMT_REPORT_H

#include "analysis.h"

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
    const char *whatif_json, *whatif_text; /* report --whatif: keys to add to the JSON, a section of text */
};

int cmt_report_build(struct cmt_report *r, struct cmt_set *s, char *err, size_t errlen);
void cmt_report_free(struct cmt_report *r);


/* Text helpers shared by the verbs. */
void cmt_stack_lines(struct sbuf *b, const struct cmt_stack *k, const char *indent, int max_frames);
void cmt_json_stack(struct sbuf *b, const struct cmt_stack *k);
/* Parallel to cmt_json_stack's array: each frame's {"file", "line", "inlined": [{"function", "file",
 * "line"}...]} (schema version 4's frame_lines; nulls and [] where unknown). */
void cmt_json_stack_frames(struct sbuf *b, const struct cmt_stack *k);

#endif
