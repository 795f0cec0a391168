/*
 * render.h: the renderers: the report model (report.h) as text for people (render_text.c), as JSON
 * (render_json.c) and as the viewer's page (render_page.c); the timeline's panels (render_timeline.c); and
 * a stack as text or JSON, the way every verb shows one (render_stack.c). Renderers only render: what they show is in the model.
 *
 * Runs in the `cumemtrace` command; writes into an sbuf only.
 */
#ifndef CMT_RENDER_H
#define CMT_RENDER_H

#include "report.h"
#include "timeline.h"

struct cmt_rules;

void cmt_render_text(struct sbuf *b, const struct cmt_report *r);
void cmt_render_json(struct sbuf *b, const struct cmt_report *r);
/* The same for the viewer's page: long lists (failures, OOMs and their verdicts, ledger samples) cut to their
 * first and last CMT_TEXT_EACH_END, with "failures_total" and "ooms_total" added; --json has them all. */
void cmt_render_json_page(struct sbuf *b, const struct cmt_report *r);
/* The page colours bands by component under rules (NULL: all "other"). 0, or -1 with a reason in err. */
int cmt_render_page(struct sbuf *b, struct cmt_report *r, const struct cmt_rules *rules, char *err, size_t errlen);

/* The timeline (render_timeline.c), each 0 or -1 (out of memory; the page: with a reason in err). */
int cmt_timeline_csv(struct sbuf *b, const struct cmt_set *s, const struct cmt_timeline *tl);
int cmt_timeline_chrome(struct sbuf *b, const struct cmt_set *s, const struct cmt_timeline *tl);
int cmt_timeline_svg(struct sbuf *b, const struct cmt_set *s, const struct cmt_timeline *tl); /* with phase bands */
int cmt_timeline_html(struct sbuf *b, struct cmt_set *s, const struct cmt_timeline *tl, const struct cmt_rules *rules,
                      int allocator, char *err, size_t errlen);
/* --allocator: the allocator level's curves as "csv", "json" or "svg". */
int cmt_timeline_allocator(struct sbuf *b, const struct cmt_set *s, const struct cmt_acurve *c, size_t n,
                           const char *format);

/* Folded stacks (render_flame.c): per trace ti, its groups g[ti][0..ng[ti]); json: the JSON array instead.
 * 0, or -1 out of memory. */
int cmt_flame_render(struct sbuf *b, const struct cmt_set *s, struct cmt_group *const *g, const size_t *ng,
                     int json);

/* A stack one frame a line (inlined frames and file:line under their frame), at most max_frames (0: all). */
void cmt_stack_lines(struct sbuf *b, const struct cmt_stack *k, const char *indent, int max_frames);
/* " (file.c:12)" (the file's base name; " (file.c)" without a line) for a location with a file, nothing
 * without one: how every renderer writes a frame's place. */
void cmt_src_suffix(struct sbuf *b, const struct cmt_src *s);
/* The frames as a JSON array of strings. */
void cmt_json_stack(struct sbuf *b, const struct cmt_stack *k);
/* Parallel to cmt_json_stack's array: each frame's {"file", "line", "inlined": [{"function", "file",
 * "line"}...]} (schema version 4's frame_lines; nulls and [] where unknown). */
void cmt_json_stack_frames(struct sbuf *b, const struct cmt_stack *k);

#endif
