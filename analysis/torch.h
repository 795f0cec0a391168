/*
 * torch.h: PyTorch's caching-allocator level (schema version 2, issue 4): finding our Python helper and
 * shipped data beside the executable, running the helper, and the analyses that read the allocator tables
 * and the driver events together: fragmentation per device, the OOM verdict, and component attribution
 * by a rules file.
 *
 * Runs in the `cumemtrace` command. Reads traces (alloc_* tables and events); the import itself is the
 * Python helper's (analysis/torch/cmt_torch.py), which writes.
 */
#ifndef CMT_TORCH_H
#define CMT_TORCH_H

#include "analysis.h"
#include "whatif.h"

/* Finds REL (e.g. "cmt_torch.py", "rules.txt", "bootstrap") under our data directory: $CUMEMTRACE_TORCH_DIR,
 * then the build tree (EXEDIR/torch), then an installed layout (EXEDIR/../share/cumemtrace/torch). 0 or -1. */
int cmt_torch_find(const char *rel, char *out, size_t len);

/* Runs `python3 cmt_torch.py ARGS...` and waits; its stderr is the user's. Returns its exit status, or
 * -1 with a reason in err when it could not be started. */
int cmt_torch_python(char *const *args, char *err, size_t errlen);
/* The newest imported allocator history of a trace (alloc_snapshots), or -1 when it has none (or is a
 * version 1 file, without the table). */
int64_t cmt_torch_newest_snapshot(struct cmt_trace *t);

/* Imports one snapshot into trace (created, or upgraded to version 2, first; a trace created here is removed
 * again on failure). 0, or -1 with a reason in err (empty when the helper already said it on stderr). */
int cmt_torch_import(const char *snap, const char *trace, const char *reason, char *err, size_t errlen);

/* Component names, lower-case words (also the timeline layers of --by component). */
#define CMT_NCOMP 11
extern const char *const cmt_comp_names[CMT_NCOMP];
enum cmt_comp {
    CMT_C_PARAMETERS, CMT_C_GRADIENTS, CMT_C_OPTIMIZER_STATE, CMT_C_ACTIVATIONS, CMT_C_TEMPORARIES,
    CMT_C_KV_CACHE, CMT_C_WORKSPACE, CMT_C_NCCL, CMT_C_CUDA_GRAPHS, CMT_C_INPUTS, CMT_C_OTHER
};

/* A rules file: lines "COMPONENT WHERE GLOB" (see analysis/torch/rules.txt). */
struct cmt_rule {
    int comp;
    char where; /* 'p' python file:function, 'l' python file:line, 'n' native symbol, 'm' module, 'a' any */
    char *glob;
};
struct cmt_rules {
    struct cmt_rule *r;
    size_t n, cap;
    char *path;
};
/* path NULL: the shipped rules. */
int cmt_rules_load(struct cmt_rules *rs, const char *path, char *err, size_t errlen);
void cmt_rules_free(struct cmt_rules *rs);
/* The component of one symbolized driver stack (innermost frame first; the first frame any rule matches
 * decides; CMT_C_OTHER when none does). */
int cmt_rules_match_stack(const struct cmt_rules *rs, const struct cmt_stack *k);
/* The same as a timeline's classifier (timeline.h): rules is a const struct cmt_rules *. */
int cmt_rules_classify(const void *rules, const struct cmt_stack *k);
/* One frame against the rules (file order, first match): a Python frame by function and file:line, a
 * native one by function and module (any may be NULL). The component, or -1. */
int cmt_rules_match_frame(const struct cmt_rules *rs, const char *pyfunc, const char *pyline, const char *native,
                          const char *module);

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
void cmt_torch_json(struct sbuf *b, const struct cmt_torch *x, const struct cmt_set *s);

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
