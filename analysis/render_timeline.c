/*
 * render_timeline.c: the timeline's panels drawn (see timeline.h, render.h): CSV one row per point, the
 * Chrome trace event format (counter tracks, instant events, phase slices) that Perfetto opens, the
 * standalone SVG with the phase bands under it, the viewer's page, and the allocator level's curves
 * (--allocator) as CSV, JSON or SVG.
 *
 * Runs in the `cumemtrace` command. Renders into an sbuf; the page's bands read stacks on demand.
 */
#include "render.h"

#include "chart.h"
#include "html.h"

#include <stdlib.h>
#include <string.h>

int cmt_timeline_csv(struct sbuf *b, const struct cmt_set *s, const struct cmt_timeline *tl)
{
    size_t *ix = calloc(tl->npanels + 1, sizeof *ix);
    if (!ix)
        return -1;
    size_t k = cmt_panel_order(s, tl, ix);
    sb_puts(b, "time_ns,pid,device");
    for (int l = 0; l < tl->nlayers; l++)
        sb_printf(b, ",%s_bytes", tl->layer_names[l]);
    sb_puts(b, ",device_memory_bytes\n");
    for (size_t i = 0; i < k; i++) {
        const struct cmt_panel *p = &tl->panels[ix[i]];
        struct cmt_point *pt;
        size_t n;
        if (cmt_panel_points(s, tl, p, &pt, &n) != 0) {
            free(ix);
            return -1;
        }
        for (size_t j = 0; j < n; j++) {
            int64_t tot = 0;
            if (p->trace < 0) {
                sb_printf(b, "%lld,all,all", (long long)(pt[j].ts - s->t0));
                for (int l = 0; l < tl->nlayers; l++)
                    sb_puts(b, ",");
                tot = pt[j].v[0];
            } else {
                const struct cmt_dev *d = &s->t[p->trace]->devs[p->dev];
                sb_printf(b, "%lld,%lld,", (long long)(pt[j].ts - s->t0), (long long)s->t[p->trace]->pid);
                if (d->device >= 0)
                    sb_printf(b, "%lld", (long long)d->device);
                for (int l = 0; l < tl->nlayers; l++) {
                    sb_printf(b, ",%lld", (long long)pt[j].v[l]);
                    if (tl->layer_physical[l])
                        tot += pt[j].v[l];
                }
            }
            sb_printf(b, ",%lld\n", (long long)tot);
        }
        free(pt);
    }
    free(ix);
    return 0;
}

/* Chrome trace event format: times in microseconds. One process per trace, one counter track per device. */
int cmt_timeline_chrome(struct sbuf *b, const struct cmt_set *s, const struct cmt_timeline *tl)
{
    char t1[32], name[400];
    sb_puts(b, "{\"displayTimeUnit\":\"ms\",\"otherData\":{\"generator\":\"cumemtrace " CMT_VERSION "\"},\"traceEvents\":[");
    int first = 1;
#define SEP() (first ? (first = 0, "") : ",\n")
    for (size_t ti = 0; ti < s->n; ti++) {
        char label[256];
        cmt_trace_label(s->t[ti], label, sizeof label);
        sb_printf(b, "%s{\"ph\":\"M\",\"name\":\"process_name\",\"pid\":%lld,\"tid\":0,\"args\":{\"name\":", SEP(),
                  (long long)s->t[ti]->pid);
        sb_json_str(b, label);
        sb_puts(b, "}}");
    }
    for (size_t i = 0; i < tl->npanels; i++) {
        const struct cmt_panel *p = &tl->panels[i];
        if (p->trace < 0)
            continue;
        const struct cmt_trace *t = s->t[p->trace];
        const struct cmt_dev *d = &t->devs[p->dev];
        struct cmt_point *pt;
        size_t n;
        if (cmt_panel_points(s, tl, p, &pt, &n) != 0)
            return -1;
        if (d->device >= 0)
            snprintf(name, sizeof name, "GPU %lld memory", (long long)d->device);
        else
            snprintf(name, sizeof name, "GPU ? memory");
        for (size_t j = 0; j < n; j++) {
            sb_printf(b, "%s{\"ph\":\"C\",\"name\":", SEP());
            sb_json_str(b, name);
            sb_printf(b, ",\"pid\":%lld,\"tid\":0,\"ts\":%.3f,\"args\":{", (long long)t->pid,
                      (double)(pt[j].ts - s->t0) / 1e3);
            int f = 1;
            for (int l = 0; l < tl->nlayers; l++) {
                if (!tl->layer_physical[l])
                    continue;
                sb_printf(b, "%s", f ? "" : ",");
                sb_json_str(b, tl->layer_names[l]);
                sb_printf(b, ":%lld", (long long)pt[j].v[l]);
                f = 0;
            }
            sb_puts(b, "}}");
        }
        /* managed and host-pinned memory: their own track, never stacked onto device memory */
        if (tl->by == CMT_BY_KIND) {
            int any = 0;
            for (size_t j = 0; j < n; j++)
                any |= pt[j].v[3] || pt[j].v[4];
            for (size_t j = 0; any && j < n; j++)
                sb_printf(b, "%s{\"ph\":\"C\",\"name\":\"%s other memory\",\"pid\":%lld,\"tid\":0,\"ts\":%.3f,"
                             "\"args\":{\"managed\":%lld,\"host_pinned\":%lld}}",
                          SEP(), name, (long long)t->pid, (double)(pt[j].ts - s->t0) / 1e3, (long long)pt[j].v[3],
                          (long long)pt[j].v[4]);
        }
        free(pt);
        if (d->peak > 0)
            sb_printf(b, "%s{\"ph\":\"i\",\"s\":\"p\",\"name\":\"peak %s\",\"pid\":%lld,\"tid\":0,\"ts\":%.3f,"
                         "\"args\":{\"bytes\":%lld,\"seq\":%lld,\"device\":%lld}}",
                      SEP(), cmt_bytes_str(d->peak, t1), (long long)t->pid, (double)(d->peak_ts - s->t0) / 1e3,
                      (long long)d->peak, (long long)d->peak_seq, (long long)d->device);
    }
    for (size_t i = 0; i < s->nfails; i++) {
        const struct cmt_failure *f = &s->fails[i];
        const char *rn = cmt_result_name(f->result);
        sb_printf(b, "%s{\"ph\":\"i\",\"s\":\"p\",\"name\":\"failed %s %s\",\"pid\":%lld,\"tid\":0,\"ts\":%.3f,"
                     "\"args\":{\"size\":%lld,\"result\":%lld,\"error\":\"%s\",\"seq\":%lld,\"device\":%lld}}",
                  SEP(), cmt_api_name(f->api), cmt_bytes_str(f->size, t1), (long long)s->t[f->trace]->pid,
                  (double)(f->ts - s->t0) / 1e3, (long long)f->size, (long long)f->result, rn ? rn : "error",
                  (long long)f->seq, (long long)f->device);
    }
    cmt_ranges_chrome(b, s, &first);
#undef SEP
    sb_puts(b, "\n]}\n");
    return 0;
}

/* .html: the viewer (analysis/html.c): every allocation a band, zoom, flame graph of the peak; --by and
 * --allocator pick what it shows first. */
int cmt_timeline_html(struct sbuf *b, struct cmt_set *s, const struct cmt_timeline *tl, const struct cmt_rules *rules,
                      int allocator, char *err, size_t errlen)
{
    struct cmt_html_dict d = {.rules = rules};
    struct sbuf data = {0};
    char label[256] = "run";
    int rc = -1;
    if (s->n == 1)
        cmt_trace_label(s->t[0], label, sizeof label);
    sb_printf(&data, "{\"kind\":\"timeline\",\"title\":\"cumemtrace timeline\",\"generator\":\"cumemtrace " CMT_VERSION
                     "\",\"level\":\"%s\",\"colour\":\"%s\",\"runs\":[",
              allocator ? "allocator" : "driver",
              tl->by == CMT_BY_MODULE ? "module" : tl->by == CMT_BY_CLASS ? "component" : "");
    if (cmt_html_run(&data, &d, s, label, err, errlen) != 0)
        goto out;
    sb_putc(&data, ']');
    cmt_html_dict_json(&data, &d);
    sb_putc(&data, '}');
    if (cmt_html_page(b, "cumemtrace timeline", &data) != 0) {
        snprintf(err, errlen, "out of memory while writing the page");
        goto out;
    }
    rc = 0;
out:
    sb_free(&data);
    cmt_html_dict_free(&d);
    return rc;
}

/* .svg: the chart, and when the run has phases (NVTX ranges) their bands under it on the same time axis
 * (cmt_ranges_svg draws on the chart's geometry): the two drawings stacked in one document. */
static double svg_height(const struct sbuf *b)
{
    const char *h = b->p ? strstr(b->p, " height='") : NULL;
    return h ? atof(h + 9) : 0;
}

int cmt_timeline_svg(struct sbuf *b, const struct cmt_set *s, const struct cmt_timeline *tl)
{
    int any = 0;
    for (size_t i = 0; i < s->n; i++)
        any |= s->t[i]->ranges && s->t[i]->ranges->n;
    if (!any)
        return cmt_svg_timeline(b, s, tl);
    struct sbuf chart = {0}, bands = {0};
    int rc = -1;
    if (cmt_svg_timeline(&chart, s, tl) != 0 || cmt_ranges_svg(&bands, s) != 0 || chart.oom || bands.oom)
        goto out;
    double h1 = svg_height(&chart), h2 = svg_height(&bands);
    sb_printf(b, "<svg xmlns='http://www.w3.org/2000/svg' width='960' height='%.0f' viewBox='0 0 960 %.0f'>"
                 "<title>cumemtrace: device memory over time, and the phases</title>\n",
              h1 + h2, h1 + h2);
    sb_put(b, chart.p, chart.len);
    /* the bands' own <svg>, moved below the chart */
    sb_printf(b, "<svg y='%.0f'", h1);
    sb_put(b, bands.p + 4, bands.len - 4);
    sb_puts(b, "</svg>\n");
    rc = b->oom ? -1 : 0;
out:
    sb_free(&chart);
    sb_free(&bands);
    return rc;
}

/* The allocator level: per device, allocated and reserved curves and allocated stacked by component. */
int cmt_timeline_allocator(struct sbuf *b, const struct cmt_set *s, const struct cmt_acurve *c, size_t n,
                           const char *format)
{
    static const char *const colors[CMT_NCOMP] = {"#4e79a7", "#f28e2b", "#59a14f", "#b07aa1", "#76b7b2", "#edc948",
                                                  "#ff9da7", "#9c755f", "#e15759", "#86bcb6", "#bab0ac"};
    char t1[32], t2[32];
    if (!strcmp(format, "csv")) {
        sb_puts(b, "time_ns,pid,device,allocated_bytes,reserved_bytes");
        for (int k = 0; k < CMT_NCOMP; k++)
            sb_printf(b, ",%s_bytes", cmt_comp_names[k]);
        sb_putc(b, '\n');
        for (size_t i = 0; i < n; i++)
            for (size_t j = 0; j < c[i].n; j++) {
                const struct cmt_apoint *p = &c[i].p[j];
                sb_printf(b, "%lld,%lld,%lld,%lld,%lld", (long long)(p->ts - s->t0), (long long)s->t[c[i].trace]->pid,
                          (long long)c[i].device, (long long)p->allocated, (long long)p->reserved);
                for (int k = 0; k < CMT_NCOMP; k++)
                    sb_printf(b, ",%lld", (long long)p->comp[k]);
                sb_putc(b, '\n');
            }
        return b->oom ? -1 : 0;
    }
    if (!strcmp(format, "json")) {
        sb_puts(b, "{\"displayTimeUnit\":\"ms\",\"traceEvents\":[");
        int first = 1;
        for (size_t i = 0; i < n; i++)
            for (size_t j = 0; j < c[i].n; j++) {
                const struct cmt_apoint *p = &c[i].p[j];
                sb_printf(b, "%s{\"ph\":\"C\",\"name\":\"GPU %lld allocator\",\"pid\":%lld,\"tid\":0,\"ts\":%.3f,"
                             "\"args\":{\"allocated\":%lld,\"reserved_unallocated\":%lld}}",
                          first ? "" : ",\n", (long long)c[i].device, (long long)s->t[c[i].trace]->pid,
                          (double)(p->ts - s->t0) / 1e3, (long long)p->allocated, (long long)(p->reserved - p->allocated));
                first = 0;
            }
        sb_puts(b, "\n]}\n");
        return b->oom ? -1 : 0;
    }
    /* svg (.html goes to the viewer, which has the allocator's blocks) */
    const double W = 960, H = 300, L = 70, T = 30;
    double tmax = (double)(s->tend - s->t0);
    sb_printf(b, "<svg xmlns='http://www.w3.org/2000/svg' width='%.0f' height='%.0f' font-family='sans-serif' "
                 "font-size='11'>\n", W + L + 200, (H + T + 40) * (double)n + 10);
    for (size_t i = 0; i < n; i++) {
        double y0 = (H + T + 40) * (double)i + T, ymax = 1;
        for (size_t j = 0; j < c[i].n; j++)
            if (c[i].p[j].reserved > ymax)
                ymax = (double)c[i].p[j].reserved;
        sb_printf(b, "<text x='%.0f' y='%.0f' font-weight='bold'>device %lld: allocated (filled, by component) and "
                     "reserved (line), up to %s</text>\n", L, y0 - 8, (long long)c[i].device,
                  cmt_bytes_str((int64_t)ymax, t1));
        sb_printf(b, "<rect x='%.0f' y='%.0f' width='%.0f' height='%.0f' fill='none' stroke='#999'/>\n", L, y0, W, H);
#define PX(ts) (L + (tmax > 0 ? (double)((ts) - s->t0) / tmax : 0) * W)
#define PY(v) (y0 + H - (double)(v) / ymax * H)
        /* stacked components, the first at the bottom */
        for (int k = CMT_NCOMP - 1; k >= 0; k--) {
            int any = 0;
            for (size_t j = 0; j < c[i].n && !any; j++)
                any = c[i].p[j].comp[k] != 0;
            if (!any)
                continue;
            sb_printf(b, "<polygon fill='%s' fill-opacity='0.85' points='", colors[k]);
            for (size_t j = 0; j < c[i].n; j++) {
                int64_t top = 0;
                for (int q = 0; q <= k; q++)
                    top += c[i].p[j].comp[q];
                sb_printf(b, "%.1f,%.1f ", PX(c[i].p[j].ts), PY(top));
            }
            for (size_t j = c[i].n; j-- > 0;) {
                int64_t bot = 0;
                for (int q = 0; q < k; q++)
                    bot += c[i].p[j].comp[q];
                sb_printf(b, "%.1f,%.1f ", PX(c[i].p[j].ts), PY(bot));
            }
            sb_printf(b, "'><title>%s</title></polygon>\n", cmt_comp_names[k]);
        }
        static const char *const curve[2] = {"allocated", "reserved"};
        for (int k = 0; k < 2; k++) {
            sb_printf(b, "<polyline fill='none' stroke='%s' stroke-width='1.5' points='", k ? "#c0392b" : "#222");
            for (size_t j = 0; j < c[i].n; j++)
                sb_printf(b, "%.1f,%.1f ", PX(c[i].p[j].ts), PY(k ? c[i].p[j].reserved : c[i].p[j].allocated));
            sb_printf(b, "'><title>%s</title></polyline>\n", curve[k]);
        }
#undef PX
#undef PY
        double ly = y0;
        for (int k = 0; k < 2; k++, ly += 14)
            sb_printf(b, "<text x='%.0f' y='%.0f' fill='%s'>%s</text>\n", L + W + 10, ly + 10, k ? "#c0392b" : "#222",
                      curve[k]);
        for (int k = 0; k < CMT_NCOMP; k++, ly += 14)
            sb_printf(b, "<rect x='%.0f' y='%.0f' width='10' height='10' fill='%s'/><text x='%.0f' y='%.0f'>%s</text>\n",
                      L + W + 10, ly + 1, colors[k], L + W + 24, ly + 10, cmt_comp_names[k]);
        sb_printf(b, "<text x='%.0f' y='%.0f'>0</text><text x='%.0f' y='%.0f' text-anchor='end'>%s</text>\n", L,
                  y0 + H + 14, L + W, y0 + H + 14, cmt_time_str(s->tend - s->t0, t2));
    }
    sb_puts(b, "</svg>\n");
    return b->oom ? -1 : 0;
}

