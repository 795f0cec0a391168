/*
 * ranges.h: phases of a run (NVTX ranges, PyTorch annotations: the ranges table of schema version 3) and
 * what device memory did inside them; and the heaps and regions of custom allocators that NVTX's memory
 * extension described (mem_heaps, mem_regions).
 *
 * The model: each trace's ranges, loaded before the pass; the pass (pass.c) tells its observer of
 * every change of the process's live device bytes, which gives every range instance its peak: the most
 * device memory of its process live at any moment between its start and its end (the level at its start
 * included). A range still open when the trace ends is closed there. Membership is by sequence number:
 * an event is inside a range when start_seq < seq < end_seq (one counter orders both).
 *
 * The stack at the peak is taken on the thread of the peak allocation, or, when that thread had no range
 * open, on the thread that opened the innermost range open then (cmt_ranges_stack_at).
 *
 * Names: a range's name is its message ("(unnamed)" without one), prefixed "DOMAIN:" outside NVTX's
 * default domain.
 *
 * The comparisons diff makes (per range name, and --align's instance by instance) are here too; the
 * renderers for report (text, JSON) and timeline (Chrome trace slices, SVG bands) are render_ranges.c's,
 * over this model only.
 *
 * Runs in the `cumemtrace` command; reads traces only.
 */
#ifndef CMT_RANGES_H
#define CMT_RANGES_H

#include "analysis.h"

struct cmt_range {
    int64_t id, start_seq, end_seq; /* end_seq: INT64_MAX while open at the end */
    int64_t start_ns, end_ns;       /* end_ns: -1 while open at the end */
    int64_t tid;                    /* -1 when unknown (imported) */
    int32_t depth;                  /* push ranges: nesting level; -1 for start/end ranges */
    int push;                       /* 1: push/pop (nested on its thread), 0: start/end */
    char *name;                     /* display name (see above) */
    char *domain;                   /* NVTX domain; NULL for the default one */
    int64_t parent_id;              /* push: the enclosing range's id; -1 when outermost (or not recorded) */
    int64_t peak;                   /* filled by the pass */
};

struct cmt_ranges {
    struct cmt_range *r; /* by start_seq */
    size_t n, cap;
    size_t next;         /* the pass: the first range not yet opened */
    size_t *open;        /* the pass: ranges open now */
    size_t nopen, opencap;
};

/* The pass's observer of phases (cmt_load adds it to every pass): at its start each trace's ranges are
 * loaded into t->ranges (none for traces older than schema version 3); every change of a process's live
 * device bytes updates the peaks of the ranges open then; at the end ranges still open are closed at the
 * final level. */
struct cmt_observer cmt_ranges_observer(void);

/* Per range name: instances, and the highest of their peaks. */
struct cmt_range_peak {
    const char *name;
    int64_t count, peak;
};

/* A stack of range names, outermost first (names owned by the traces' ranges). */
struct cmt_range_stack {
    const char **names;
    size_t n;
    int64_t tid;     /* the thread whose ranges these are; -1 when none */
    int same_thread; /* 1: the event's own thread; 0: another (see cmt_ranges_stack_at) */
};

struct cmt_range_report {
    int any;                          /* some trace has ranges */
    struct cmt_heap *heaps;           /* the memory extension's heaps (cmt_heaps_load) */
    size_t nheaps;
    struct cmt_range_stack at_peak;   /* on the thread of the peak allocation */
    struct cmt_range_stack *at_fail;  /* one per s->fails[] */
    size_t nfail;
    struct cmt_range_peak *peaks;     /* by peak, highest first, then by name */
    size_t npeaks;
};

int cmt_ranges_report(struct cmt_range_report *rr, struct cmt_set *s, char *err, size_t errlen);
void cmt_ranges_report_free(struct cmt_range_report *rr);

/* The push ranges open on the thread of event seq of trace ti when it happened, outermost first. If that
 * thread had none open (PyTorch's backward allocates on its autograd threads while the phases are pushed
 * on the main thread), those of the thread whose innermost open range began last, with same_thread 0. */
int cmt_ranges_stack_at(struct cmt_set *s, int ti, int64_t seq, struct cmt_range_stack *out, char *err,
                        size_t errlen);

/* Renderers: the report's section (text), and its two JSON keys ("ranges_at_peak", "range_peaks",
 * written with a leading comma). */
void cmt_ranges_text(struct sbuf *b, const struct cmt_range_report *rr);
void cmt_ranges_json(struct sbuf *b, const struct cmt_range_report *rr);
void cmt_ranges_json_stack(struct sbuf *b, const struct cmt_range_stack *k);
void cmt_ranges_text_stack(struct sbuf *b, const struct cmt_range_stack *k);
/* Chrome trace events (timeline -o X.json): a slice per range on its thread; *first: nothing written yet
 * (no comma before the first). */
void cmt_ranges_chrome(struct sbuf *b, const struct cmt_set *s, int *first);
/* timeline -o X.svg's phase bands (cmd_timeline.c stacks them under the chart): one SVG row per thread and
 * nesting level (12 at most), on the chart's time axis; past 1,000 bands in a row, one narrower than a pixel already drawn is skipped. */
int cmt_ranges_svg(struct sbuf *b, const struct cmt_set *s);

/* diff: the instances of the ranges named name, by start (several processes merged by time). */
struct cmt_range_inst {
    int trace;
    const struct cmt_range *r;
};
int cmt_ranges_instances(const struct cmt_set *s, const char *name, struct cmt_range_inst **out, size_t *n);

/* diff: per range name, instances and highest peak on each side ([0] = A, [1] = B), largest growth first
 * (ties: the deeper phase first). aligned: only the ranges that start inside instances ia and ib (step N
 * of A against step N of B), the instances themselves left out; a NULL instance: that side has none. */
struct cmt_phase_row {
    const char *name;
    int64_t count[2], peak[2];
    int32_t depth; /* deepest nesting level seen (-1: start/end ranges only) */
};
int cmt_ranges_phases(const struct cmt_set *a, const struct cmt_range_inst *ia, const struct cmt_set *b,
                      const struct cmt_range_inst *ib, int aligned, struct cmt_phase_row **out, size_t *n);

/* NVTX's memory extension (mem_heaps, mem_regions): per heap of a custom allocator, the driver allocation
 * holding it and the regions live at the peak (the set's peak in its trace, a trace's own peak in the
 * others) and at the end. Region sizes are their last (after nvtxMemRegionsResize). */
struct cmt_heap {
    int trace;
    int64_t id, usage, size, event_seq; /* size, event_seq: -1 when unknown */
    char *name;                         /* display name, as for ranges */
    int64_t regions_at_peak, bytes_at_peak, regions_at_end, bytes_at_end;
    int registered_at_end;
};
int cmt_heaps_load(struct cmt_set *s, struct cmt_heap **out, size_t *n, char *err, size_t errlen);
void cmt_heaps_free(struct cmt_heap *h, size_t n);
void cmt_heaps_text(struct sbuf *b, const struct cmt_heap *h, size_t n);
void cmt_heaps_json(struct sbuf *b, const struct cmt_set *s, const struct cmt_heap *h, size_t n); /* ",\"nvtx_heaps\":[...]" */

#endif
