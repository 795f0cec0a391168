/*
 * diff.h: the comparison of two runs (`cumemtrace diff A B`) as a model, built once (cmt_diff_build) and
 * drawn by render_diff.c (text, JSON, the viewer's page): the two peaks; what was live at each peak per
 * stack and per module, matched by symbolized frames (addresses differ between runs), largest growth
 * first; components and fragmentation of the allocator level; phases (per range name, peak A and peak B);
 * and with --align RANGE the Nth instance of RANGE in A against the Nth in B, with the phases inside each.
 *
 * Runs in the `cumemtrace` command; reads the two analyzed sets only.
 */
#ifndef CMT_DIFF_H
#define CMT_DIFF_H

#include "ranges.h"
#include "torch.h"

struct cmt_diff_row {
    const char *name;
    const struct cmt_stack *stack; /* stack rows: from whichever side had it first; NULL for modules */
    int64_t a, b;
};

/* --align: one instance of the range on each side (NULL where that side has fewer), the phases inside. */
struct cmt_diff_inst {
    const struct cmt_range_inst *x, *y;
    struct cmt_phase_row *rows;
    size_t nr;
};

struct cmt_diff {
    struct cmt_set *a, *b;
    struct cmt_diff_row *rows, *mods; /* by stack, by module: largest growth first */
    size_t nrows, nmods;
    struct cmt_phase_row *phases; /* per range name, largest growth first */
    size_t nphases;
    struct cmt_torch xa, xb;
    const char *align; /* NULL: no --align */
    struct cmt_range_inst *ia, *ib;
    size_t na, nb;
    struct cmt_diff_inst *inst; /* max(na, nb) */
    size_t ninst;
    /* owned groupings the rows point into */
    struct cmt_group *sa, *sb, *ma, *mb;
};

/* After cmt_load of both sides. align: a range name or NULL. 0, or -1 with a reason in err. */
int cmt_diff_build(struct cmt_diff *d, struct cmt_set *a, struct cmt_set *b, const char *align, char *err,
                   size_t errlen);
void cmt_diff_free(struct cmt_diff *d);

/* The phase that grew most among rows (sorted largest growth first), or NULL if none grew. */
const char *cmt_diff_grew(const struct cmt_phase_row *rows, size_t n);

/* render_diff.c. Labels are how the user named A and B. top: rows per table in text. */
void cmt_diff_text(struct sbuf *out, const struct cmt_diff *d, const char *alabel, const char *blabel, int top);
void cmt_diff_json(struct sbuf *out, const struct cmt_diff *d);
/* The viewer's page: both runs' bands, totals overlaid, growth by stack and phase; text: the text diff shown
 * on the page ("" with --json). 0, or -1 with a reason in err. */
struct cmt_rules;
int cmt_diff_page(struct sbuf *out, const struct cmt_diff *d, const char *alabel, const char *blabel,
                  const struct cmt_rules *rules, const char *text, char *err, size_t errlen);

#endif
