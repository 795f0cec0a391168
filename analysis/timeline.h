/*
 * timeline.h: device memory over time as panels of time buckets (one panel per device of each trace,
 * and one for the sum of everything), filled by an observer of the pass (cmt_timeline_observer). Each
 * bucket keeps the layers' values at its highest total and at its end, so a chart of any width shows
 * every peak. Layers are the memory kinds, the modules allocations were made in, or classes a caller
 * gives (the components of PyTorch's rules: the verb passes the classifier, this file knows no rules).
 *
 * Runs in the `cumemtrace` command; drawn by chart.c (SVG), cmd_timeline.c (CSV, Chrome trace JSON).
 */
#ifndef CMT_TIMELINE_H
#define CMT_TIMELINE_H

#include "analysis.h"

#define CMT_MAX_LAYERS 12

struct cmt_bucket {
    int64_t max_ts, end_ts, max_total;
    int touched;
    int64_t maxv[CMT_MAX_LAYERS], endv[CMT_MAX_LAYERS];
};
struct cmt_panel {
    int trace; /* -1: the sum of all traces and devices (layer 0 only) */
    int dev;
    int64_t vals[CMT_MAX_LAYERS];
    struct cmt_bucket *b;
};

enum cmt_layering { CMT_BY_KIND, CMT_BY_MODULE, CMT_BY_CLASS };

struct cmt_timeline {
    /* set by the caller before the pass */
    int points; /* buckets per panel (0: 2000) */
    enum cmt_layering by;
    /* CMT_BY_CLASS: the class of a stack (0 .. nclasses-1), asked once per stack, and the class names */
    int (*classify)(const void *cctx, const struct cmt_stack *k);
    const void *cctx;
    const char *const *class_names;
    int nclasses;

    /* filled by the pass */
    int64_t t0, tend; /* the set's time axis */
    struct cmt_panel *panels;
    size_t npanels, panelcap;
    int nlayers;
    char *layer_names[CMT_MAX_LAYERS];
    int layer_physical[CMT_MAX_LAYERS];
    struct smap module_layer;
    struct imap class_of; /* stack (its address) -> class + 1 */
};

/* The observer that fills tl; tl must outlive the pass. */
struct cmt_observer cmt_timeline_observer(struct cmt_timeline *tl);
void cmt_timeline_free(struct cmt_timeline *tl);

#endif
