/*
 * html.h: the interactive viewer page (`report --html`, `timeline -o X.html`, `diff -o X.html`): one
 * self-contained HTML file, the viewer's script and style (analysis/viewer/, embedded at build time) and
 * the data as one JSON object in a <script type="application/json" id="cmt-data"> element.
 *
 * The data (all sizes exact integers in bytes, all times integers in ns since the run's start):
 *   {"kind": "report" | "timeline" | "diff", "title", "generator",
 *    "strings": [...],                      every frame, module and label, once
 *    "stacks": [{"f": [string ix, innermost first], "m": module ix, "c": component ix, and where the trace has
 *               source lines (schema version 4, DWARF) "l": per frame of "f" 0 (none known) or [file ix, line,
 *               then per function inlined into the frame, innermost first: function ix, file ix, line]
 *               (file ix -1: unknown, line 0: unknown; a file's name is in "strings" once)}],
 *    "components": [...], "apis": [...], "kinds": [...],
 *    "runs": [RUN, ...],                    one for report and timeline, two (A, B) for diff
 *    and per verb: "report" (exactly what `report --json` prints), "torch_text", "growth", "modules"; diff:
 *    "phases" (per range name: counts and peaks in A and B, as `diff --json` prints them) and, with --align
 *    RANGE, "aligned" (the same as in `diff --json`: the instances, each with "a_start_ns"/"b_start_ns" since
 *    its run's start, by which the page offsets B's time)}
 * RUN: {"label", "duration_ns", "peak_bytes", "peak_ns", "failures": [...], "peak_stacks": [[stack, bytes,
 *   count]...], "levels": {"driver": LEVEL, "allocator": LEVEL (traces with an imported PyTorch history)},
 *   "segments": [{"point": "peak"|"oom", "device", "ts_ns", "segs": [{"addr", "size", "blocks": [[offset,
 *   size, stack]...]}]}],
 *   "ranges": RANGES, "ranges_at_peak": [names, outermost first], "ranges_at_peak_thread": {"tid",
 *   "allocating_thread"} | null}
 * RANGES: the run's phases (NVTX ranges, PyTorch annotations) as columns, by start: "name", "domain" (string
 *   ix; domain -1: NVTX's default), "proc" (index in "paths"), "tid" (-1: unknown), "start_ns", "end_ns"
 *   (open at the end: the trace's end, and "open" 1), "depth" (-1: start/end ranges), "parent" (index in these
 *   columns; -1 outermost), "peak_bytes" (the most device memory of its process live inside it), "id" (range_id).
 *   At most CMT_VIEWER_RANGES are kept (outermost first, then longest, so every kept range's parent is kept):
 *   "count" is how many there are in all, "drawn" how many are here.
 * LEVEL: the allocations (device memory; allocator blocks) as bands. Detail levels: at most
 *   CMT_VIEWER_BANDS of them are kept one by one (the largest; "threshold_bytes" is the smallest size kept),
 *   the others are merged per time bucket into one "other" band whose live bytes and count at each bucket's
 *   end are exact ("other_bytes", "other_count", "bucket_ns"), and "merged_allocs"/"merged_bytes" total them.
 *   Bands are columns sorted by start: "start", "end" (the run's end when never freed; "live" says which),
 *   "size", "stack", "api", "kind", "dev"; "total": the exact total as [ts, bytes] points, each bucket's
 *   highest and last state.
 *
 * Runs in the `cumemtrace` command. Reads the analyzed set and, for timestamps of paired frees and the
 * allocator tables, the set's open traces (plain SELECTs); writes into an sbuf only.
 */
#ifndef CMT_HTML_H
#define CMT_HTML_H

#include "analysis.h"
#include "torch.h"

#define CMT_VIEWER_BANDS 20000
#define CMT_VIEWER_BUCKETS 4000
#define CMT_VIEWER_RANGES 10000

/* Strings and stacks shared by every run of one page. */
struct cmt_html_dict {
    const struct cmt_rules *rules; /* components of driver stacks; NULL: every stack is "other" */
    struct smap str, stk;
    struct sbuf strs, stacks;
    size_t nstr, nstk;
};

/* The index of a symbolized stack in the page's table (added on first use); -1 on out of memory. */
int64_t cmt_html_stack(struct cmt_html_dict *d, const struct cmt_stack *k);

/* Writes one RUN object for an analyzed set. 0, or -1 with a reason in err. */
int cmt_html_run(struct sbuf *b, struct cmt_html_dict *d, struct cmt_set *s, const char *label, char *err,
                 size_t errlen);

/* The index of a string in the page's table (added on first use); -1 on out of memory. */
int64_t cmt_html_str(struct cmt_html_dict *d, const char *s);

/* Writes a RUN's ",\"ranges\":..., \"ranges_at_peak\":..., \"ranges_at_peak_thread\":..." (html_ranges.c). */
int cmt_html_ranges(struct sbuf *b, struct cmt_html_dict *d, struct cmt_set *s, char *err, size_t errlen);

/* Writes the dictionary keys ("strings", "stacks", "components", "apis", "kinds"), each preceded by a comma. */
void cmt_html_dict_json(struct sbuf *b, const struct cmt_html_dict *d);
void cmt_html_dict_free(struct cmt_html_dict *d);

/* The page: the embedded viewer around the data object `json` (a complete JSON object). 0, or -1 when out of
 * memory. */
int cmt_html_page(struct sbuf *out, const char *title, const struct sbuf *json);

#endif
