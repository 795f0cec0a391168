/*
 * torch.h: PyTorch's caching-allocator level (schema version 2, issue 4): the analyses that read the
 * allocator tables and the driver events together (torch.c, alloclevel.c, driverlevel.c, components.c):
 * fragmentation per device, the OOM verdict, and component attribution by a rules file (rules.h); and its
 * report sections (render_torch.c).
 *
 * Runs in the `cumemtrace` command. Reads traces (alloc_* tables and events); the import itself is the
 * importer's (cumemtrace-import-torch, importers/), which writes.
 */
#ifndef CMT_TORCH_H
#define CMT_TORCH_H

#include "analysis.h"
#include "rules.h"
#include "whatif.h"


/* Imports one snapshot into trace (created, or upgraded to version 2, first; a trace created here is removed
 * again on failure). 0, or -1 with a reason in err (empty when the helper already said it on stderr). */
int cmt_torch_import(const char *snap, const char *trace, const char *reason, char *err, size_t errlen);

/* Fragmentation of one device at the allocator level. */
struct cmt_frag {
    int trace;
    int64_t device;
    int64_t end_alloc, end_reserved, end_requested, end_internal, end_external, end_largest_free;
    int64_t peak_alloc, peak_reserved_then, peak_ts, peak_requested, peak_largest_free;
    int64_t max_reserved; /* highest reserved over the history */
    int64_t nsegments, segments_with_free;
};

/* One failed allocation with its verdict. */
struct cmt_oom {
    int trace;
    int source; /* 0 allocator 'oom' entry, 1 driver failure */
    int64_t device, ts, size, free_bytes, reserved, allocated, largest_free;
    int has_free, estimated, fragmentation;
    int64_t released_bytes, released_segments; /* driver: what the cache gave back before the retry */
    int retry;                                  /* driver: -1 none seen, 0 failed, 1 succeeded */
    int64_t retry_seq;                          /* driver: the retry's seq, -1 if none */
    int64_t seq;                                /* driver seq or alloc_trace entry_id */
    int api;                                    /* driver: the entry point that failed */
    int has_mv;                                 /* allocator: the model's verdict (whatif.h) in mv */
    struct cmt_mverdict mv;
};

struct cmt_site {
    char *name;
    int comp;
    int64_t bytes_at_peak, bytes_at_end, requested_at_end;
};

struct cmt_torch {
    int has_alloc;          /* some trace holds allocator data */
    struct cmt_frag *frag;
    size_t nfrag, fragcap;
    struct cmt_oom *ooms;
    size_t nooms, oomcap;
    int64_t comp_peak[CMT_NCOMP], comp_end[CMT_NCOMP], comp_req_end[CMT_NCOMP];
    int64_t comp_whole_peak, comp_whole_end;
    struct cmt_site *sites;
    size_t nsites, sitecap;
    /* expected bytes when a parameter count is known */
    int64_t params;
    int mixed;
};

struct cmt_torch_options {
    const char *rules;  /* NULL: shipped */
    int64_t params;     /* 0: unknown */
    int mixed;          /* mixed precision (2 + 2 + 12 bytes per parameter) */
};

/* After cmt_set_analyze: reads every trace's allocator tables and its driver failures. */
int cmt_torch_build(struct cmt_torch *x, struct cmt_set *s, const struct cmt_torch_options *o, char *err,
                    size_t errlen);
void cmt_torch_free(struct cmt_torch *x);

/* Advice lines for one OOM, at most 4; returns how many. */
int cmt_oom_advice(const struct cmt_oom *o, char out[4][256]);

/* Report sections. */
void cmt_torch_text(struct sbuf *b, const struct cmt_torch *x, const struct cmt_set *s);
/* each_end > 0: only the first and last each_end OOMs (a page's copy; --json has all: 0). */
void cmt_torch_json(struct sbuf *b, const struct cmt_torch *x, const struct cmt_set *s, size_t each_end);

/* Allocator-level curves of one device for the timeline: time, allocated, reserved, and component bytes. */
struct cmt_apoint {
    int64_t ts, allocated, reserved;
    int64_t comp[CMT_NCOMP];
};
struct cmt_acurve {
    int trace;
    int64_t device;
    struct cmt_apoint *p;
    size_t n;
};
/* One curve per device of each trace with allocator data, at most `points` points each (the highest
 * allocated and the last state of each bucket). */
int cmt_torch_curves(struct cmt_set *s, const struct cmt_rules *rules, int points, struct cmt_acurve **out,
                     size_t *n, char *err, size_t errlen);
void cmt_torch_curves_free(struct cmt_acurve *c, size_t n);

#endif
