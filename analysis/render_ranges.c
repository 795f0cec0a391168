/*
 * render_ranges.c: phases drawn (see ranges.h): the report's sections (text, JSON keys), a stack of range
 * names, Chrome trace slices, the SVG bands under `timeline -o X.svg`, and the NVTX heaps' section.
 *
 * Runs in the `cumemtrace` command. Renders the model ranges.c built into an sbuf; reads nothing.
 */
#include "ranges.h"

#include <stdlib.h>
#include <string.h>

/* ---- renderers ----------------------------------------------------------------------------------- */

void cmt_ranges_text_stack(struct sbuf *b, const struct cmt_range_stack *k)
{
    for (size_t i = 0; i < k->n; i++)
        sb_printf(b, "%s%s", i ? " > " : "", k->names[i]);
}

void cmt_ranges_json_stack(struct sbuf *b, const struct cmt_range_stack *k)
{
    sb_putc(b, '[');
    for (size_t i = 0; i < k->n; i++) {
        if (i)
            sb_putc(b, ',');
        sb_json_str(b, k->names[i]);
    }
    sb_putc(b, ']');
}

void cmt_ranges_text(struct sbuf *b, const struct cmt_range_report *rr)
{
    char t1[32], t2[32];
    if (!rr->any)
        return;
    sb_puts(b, "\nPHASES (NVTX RANGES)\n  at the peak: ");
    if (rr->at_peak.n)
        cmt_ranges_text_stack(b, &rr->at_peak);
    else
        sb_puts(b, "(no range open)");
    if (rr->at_peak.n && !rr->at_peak.same_thread)
        sb_printf(b, " (thread %lld; none was open on the allocating thread)", (long long)rr->at_peak.tid);
    sb_printf(b, "\n  %-40s %10s %12s\n", "range", "count", "peak");
    for (size_t i = 0; i < rr->npeaks; i++)
        sb_printf(b, "  %-40s %10s %12s\n", rr->peaks[i].name, cmt_count_str(rr->peaks[i].count, t1),
                  cmt_bytes_str(rr->peaks[i].peak, t2));
}

void cmt_ranges_json(struct sbuf *b, const struct cmt_range_report *rr)
{
    sb_puts(b, ",\"ranges_at_peak\":");
    cmt_ranges_json_stack(b, &rr->at_peak);
    if (rr->at_peak.tid >= 0)
        sb_printf(b, ",\"ranges_at_peak_thread\":{\"tid\":%lld,\"allocating_thread\":%s}",
                  (long long)rr->at_peak.tid, rr->at_peak.same_thread ? "true" : "false");
    else
        sb_puts(b, ",\"ranges_at_peak_thread\":null");
    sb_puts(b, ",\"range_peaks\":[");
    for (size_t i = 0; i < rr->npeaks; i++) {
        sb_printf(b, "%s{\"name\":", i ? "," : "");
        sb_json_str(b, rr->peaks[i].name);
        sb_printf(b, ",\"count\":%lld,\"peak_bytes\":%lld}", (long long)rr->peaks[i].count,
                  (long long)rr->peaks[i].peak);
    }
    sb_putc(b, ']');
}

void cmt_ranges_chrome(struct sbuf *b, const struct cmt_set *s, int *first)
{
    /* Push ranges nest on their thread: complete slices ("X") on it. Start/end ranges may end on another
     * thread and overlap anything: async slices ("b"/"e"), one track per name. Open at the end: they
     * last until the trace's end. Imported ranges (no thread) go on the process's main thread. */
    for (size_t ti = 0; ti < s->n; ti++) {
        const struct cmt_trace *t = s->t[ti];
        const struct cmt_ranges *g = t->ranges;
        int64_t end = t->has_end && t->end_ns > t->last_ts ? t->end_ns : t->last_ts;
        for (size_t i = 0; g && i < g->n; i++) {
            const struct cmt_range *r = &g->r[i];
            int64_t e = r->end_ns >= 0 ? r->end_ns : end;
            if (e < r->start_ns)
                e = r->start_ns;
            long long tid = r->tid >= 0 ? (long long)r->tid : (long long)t->pid;
            if (r->push) {
                sb_printf(b, "%s{\"ph\":\"X\",\"cat\":\"nvtx\",\"name\":", *first ? "" : ",\n");
                sb_json_str(b, r->name);
                sb_printf(b, ",\"pid\":%lld,\"tid\":%lld,\"ts\":%.3f,\"dur\":%.3f,\"args\":{\"peak_bytes\":%lld,"
                             "\"range_id\":%lld,\"open_at_end\":%s}}",
                          (long long)t->pid, tid, (double)(r->start_ns - s->t0) / 1e3, (double)(e - r->start_ns) / 1e3,
                          (long long)r->peak, (long long)r->id, r->end_ns < 0 ? "true" : "false");
            } else {
                for (int k = 0; k < 2; k++) {
                    sb_printf(b, "%s{\"ph\":\"%s\",\"cat\":\"nvtx\",\"id\":%lld,\"name\":", *first ? "" : ",\n",
                              k ? "e" : "b", (long long)r->id);
                    sb_json_str(b, r->name);
                    sb_printf(b, ",\"pid\":%lld,\"tid\":%lld,\"ts\":%.3f", (long long)t->pid, tid,
                              (double)((k ? e : r->start_ns) - s->t0) / 1e3);
                    if (!k)
                        sb_printf(b, ",\"args\":{\"peak_bytes\":%lld,\"range_id\":%lld}", (long long)r->peak,
                                  (long long)r->id);
                    sb_putc(b, '}');
                    *first = 0;
                }
            }
            *first = 0;
        }
    }
}

/* ---- bands under the SVG timeline (timeline -o X.svg) -------------------------------------------- */

#define BAND_ROWS 12 /* (thread, level) rows drawn at most */

static unsigned name_hue(const char *s)
{
    unsigned h = 2166136261u;
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 16777619u;
    return h % 360;
}

int cmt_ranges_svg(struct sbuf *b, const struct cmt_set *s)
{
    /* The timeline's geometry (chart.c): plot from x = 80, 840 wide, over t0..tend. One row per thread
     * and nesting level (start/end ranges on a row of their own per thread), outermost first. */
    int64_t row_tid[BAND_ROWS];
    int row_depth[BAND_ROWS], row_trace[BAND_ROWS], nrows = 0;
    double span = (double)(s->tend - s->t0);
    for (size_t ti = 0; ti < s->n; ti++) {
        const struct cmt_ranges *g = s->t[ti]->ranges;
        for (size_t i = 0; g && i < g->n; i++) {
            const struct cmt_range *r = &g->r[i];
            int depth = r->push ? r->depth : 1000;
            int found = 0;
            for (int k = 0; k < nrows && !found; k++)
                found = row_trace[k] == (int)ti && row_tid[k] == r->tid && row_depth[k] == depth;
            if (!found && nrows < BAND_ROWS) {
                int k = nrows++;
                /* keep rows ordered by trace, thread, level */
                while (k > 0 && (row_trace[k - 1] > (int)ti || (row_trace[k - 1] == (int)ti &&
                                 (row_tid[k - 1] > r->tid || (row_tid[k - 1] == r->tid && row_depth[k - 1] > depth))))) {
                    row_trace[k] = row_trace[k - 1];
                    row_tid[k] = row_tid[k - 1];
                    row_depth[k] = row_depth[k - 1];
                    k--;
                }
                row_trace[k] = (int)ti;
                row_tid[k] = r->tid;
                row_depth[k] = depth;
            }
        }
    }
    double h = 20 + 18.0 * nrows;
    sb_printf(b, "<svg xmlns='http://www.w3.org/2000/svg' width='960' height='%.0f' viewBox='0 0 960 %.0f'"
                 " font-family='sans-serif'><title>phases</title><rect width='100%%' height='100%%' fill='white'/>",
              h, h);
    for (int k = 0; k < nrows; k++) {
        double y = 10 + 18.0 * k;
        sb_printf(b, "<text x='74' y='%.1f' text-anchor='end' font-size='10' fill='#555'>", y + 12);
        if (row_tid[k] >= 0)
            sb_printf(b, "tid %lld%s", (long long)row_tid[k], row_depth[k] == 1000 ? " s/e" : "");
        else
            sb_puts(b, "torch");
        sb_puts(b, "</text>");
        const struct cmt_trace *t = s->t[row_trace[k]];
        const struct cmt_ranges *g = t->ranges;
        int64_t end = t->has_end && t->end_ns > t->last_ts ? t->end_ns : t->last_ts;
        /* past 1,000 bands in a row, a range narrower than a pixel where the row's last band already drew is
         * skipped: a row holds at most a few rectangles per pixel more however many ranges there are */
        double drawn_to = -1;
        int nbands = 0;
        for (size_t i = 0; g && i < g->n; i++) {
            const struct cmt_range *r = &g->r[i];
            if (r->tid != row_tid[k] || (r->push ? r->depth : 1000) != row_depth[k])
                continue;
            int64_t e = r->end_ns >= 0 ? r->end_ns : end;
            if (e < s->t0 || r->start_ns > s->tend)
                continue; /* off the chart's axis (clocks of another process, a damaged trace) */
            double x0 = 80 + (span > 0 ? (double)(r->start_ns - s->t0) / span : 0) * 840;
            double x1 = 80 + (span > 0 ? (double)(e - s->t0) / span : 0) * 840;
            if (x1 > 920)
                x1 = 920;
            if (x1 - x0 < 1) {
                if (nbands >= 1000 && x0 < drawn_to)
                    continue;
                x1 = x0 + 1;
            }
            drawn_to = x1;
            nbands++;
            char t1[32];
            sb_printf(b, "<g><title>");
            sb_xml(b, r->name);
            sb_printf(b, ": peak %s</title><rect x='%.1f' y='%.1f' width='%.1f' height='16' fill='hsl(%u,55%%,70%%)'"
                         " stroke='white' stroke-width='0.5'/>",
                      cmt_bytes_str(r->peak, t1), x0, y, x1 - x0, name_hue(r->name));
            if (x1 - x0 > 40) {
                sb_printf(b, "<text x='%.1f' y='%.1f' font-size='10'>", x0 + 3, y + 12);
                sb_xml(b, r->name);
                sb_puts(b, "</text>");
            }
            sb_puts(b, "</g>");
        }
    }
    sb_puts(b, "</svg>\n");
    return 0;
}

void cmt_heaps_text(struct sbuf *b, const struct cmt_heap *h, size_t n)
{
    char t1[32], t2[32], t3[32];
    if (!n)
        return;
    sb_puts(b, "\nCUSTOM ALLOCATORS (NVTX memory extension: heaps and the regions handed out of them)\n");
    for (size_t i = 0; i < n; i++) {
        sb_printf(b, "  %s: %s", h[i].name, h[i].size >= 0 ? cmt_bytes_str(h[i].size, t1) : "size unknown");
        if (h[i].event_seq >= 0)
            sb_printf(b, " in the driver allocation of seq %lld", (long long)h[i].event_seq);
        sb_printf(b, "%s\n    at the peak %lld regions, %s; at the end %lld regions, %s\n",
                  h[i].registered_at_end ? "" : " (unregistered)", (long long)h[i].regions_at_peak,
                  cmt_bytes_str(h[i].bytes_at_peak, t2), (long long)h[i].regions_at_end,
                  cmt_bytes_str(h[i].bytes_at_end, t3));
    }
}

void cmt_heaps_json(struct sbuf *b, const struct cmt_set *s, const struct cmt_heap *h, size_t n)
{
    sb_puts(b, ",\"nvtx_heaps\":[");
    for (size_t i = 0; i < n; i++) {
        sb_printf(b, "%s{\"name\":", i ? "," : "");
        sb_json_str(b, h[i].name);
        sb_printf(b, ",\"pid\":%lld,\"heap_id\":%lld,\"usage\":%lld,\"size\":", (long long)s->t[h[i].trace]->pid,
                  (long long)h[i].id, (long long)h[i].usage);
        if (h[i].size >= 0)
            sb_printf(b, "%lld", (long long)h[i].size);
        else
            sb_puts(b, "null");
        sb_puts(b, ",\"event_seq\":");
        if (h[i].event_seq >= 0)
            sb_printf(b, "%lld", (long long)h[i].event_seq);
        else
            sb_puts(b, "null");
        sb_printf(b, ",\"regions_at_peak\":%lld,\"region_bytes_at_peak\":%lld,\"regions_at_end\":%lld,"
                     "\"region_bytes_at_end\":%lld,\"registered_at_end\":%s}",
                  (long long)h[i].regions_at_peak, (long long)h[i].bytes_at_peak, (long long)h[i].regions_at_end,
                  (long long)h[i].bytes_at_end, h[i].registered_at_end ? "true" : "false");
    }
    sb_putc(b, ']');
}

