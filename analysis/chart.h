/*
 * chart.h: the timeline as data points and as SVG, for `timeline` (.svg, .csv, .json) and `diff -o X.svg`;
 * the HTML pages are the viewer's (html.h).
 *
 * Runs in the `cumemtrace` command; draws the panels a timeline observer filled (timeline.h) during the
 * pass over the set. Writes into an sbuf only.
 */
#ifndef CMT_CHART_H
#define CMT_CHART_H

#include "timeline.h"

struct cmt_point {
    int64_t ts; /* absolute CLOCK_MONOTONIC ns */
    int64_t v[CMT_MAX_LAYERS];
};

/* The step function of one panel: a zero point at the start, then per touched bucket the state at its
 * highest total and at its end, then the last state at the end of the axis. *out is malloc'ed. */
int cmt_panel_points(const struct cmt_set *s, const struct cmt_timeline *tl, const struct cmt_panel *p,
                     struct cmt_point **out, size_t *n);

/* Panels to draw, in order: the sum of all traces first when there are several, then one per device of
 * each trace. Returns the count; ix[] receives panel indexes (ix has room for tl->npanels). */
size_t cmt_panel_order(const struct cmt_set *s, const struct cmt_timeline *tl, size_t *ix);

/* A title for a panel: "device 0: NVIDIA H100" or "python[123] device 0: ..." or "all processes". */
void cmt_panel_title(const struct cmt_set *s, const struct cmt_panel *p, char *buf, size_t len);

/* The standalone <svg> of every panel: stacked layers, peak and failures marked. */
int cmt_svg_timeline(struct sbuf *b, const struct cmt_set *s, const struct cmt_timeline *tl);

/* Two runs' total device memory over time since each one's start, one above the other's line. */
int cmt_svg_overlay(struct sbuf *b, const struct cmt_set *a, const struct cmt_timeline *ta, const char *alabel,
                    const struct cmt_set *bset, const struct cmt_timeline *tb, const char *blabel);

#endif
