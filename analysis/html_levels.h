/*
 * html_levels.h: inside the viewer's data (html.c): one level's allocations as bands with their detail levels
 * (html_levels.c), and the allocator level of PyTorch traces (html_torch.c). Not for the verbs: they use html.h.
 *
 * Runs in the `cumemtrace` command.
 */
#ifndef CMT_HTML_LEVELS_H
#define CMT_HTML_LEVELS_H

#include "html.h"

/* One allocation of a level. */
struct cmt_html_item {
    int64_t start, end, size; /* ns since the run's start; bytes */
    int64_t sseq, eseq;       /* order among equal times (eseq INT64_MAX while live) */
    int64_t stack_id;         /* raw id in its trace (driver stacks or alloc_stacks) */
    int32_t trace, dev;
    int16_t api;
    uint8_t kind, live, has_stack;
};

/* Resolves an item's stack to the page's stack index: >= -1, or < -1 with a reason in err. */
typedef int64_t (*cmt_html_stack_fn)(void *ctx, const struct cmt_html_item *it, char *err, size_t errlen);

/* Writes one LEVEL object (html.h) for items (sorted here): the largest CMT_VIEWER_BANDS one by one, the rest
 * merged per bucket, the exact total, and with with_peak the stacks live at the level's peak. 0 or -1. */
int cmt_html_level(struct sbuf *b, struct cmt_html_item *it, size_t n, int64_t dur, cmt_html_stack_fn fn, void *ctx,
                   int with_peak, char *err, size_t errlen);

/* Adds a stack under key (frames innermost first); its index, or -1 when out of memory. */
int64_t cmt_html_stack_add(struct cmt_html_dict *d, const char *key, char *const *frames, int n, const char *module,
                           int comp);

/* The allocator level of the set's PyTorch histories: its LEVEL object into level (*any 0 when no trace has
 * one) and the "segments" array (peak and OOM moments) into segs. 0 or -1. */
int cmt_html_allocator(struct sbuf *level, struct sbuf *segs, struct cmt_html_dict *d, struct cmt_set *s, int64_t dur,
                       int *any, char *err, size_t errlen);

/* A trace's end on its own clock: the finalized end, or its last event. */
int64_t cmt_html_trace_end(const struct cmt_trace *t);

#endif
