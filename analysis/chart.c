/*
 * chart.c: timeline points and SVG drawing (see chart.h). Plain SVG 1.1 with inline styles and <title>
 * tooltips: no script, no fonts or images from the network, so the page renders anywhere.
 *
 * Runs in the `cumemtrace` command. Never reads a trace: everything comes from the analyzed cmt_set.
 */
#include "chart.h"

#include <stdlib.h>
#include <string.h>

static const char *const palette[CMT_MAX_LAYERS] = {"#4e79a7", "#f28e2b", "#59a14f", "#b07aa1",
                                                    "#76b7b2", "#edc948", "#ff9da7", "#9c755f",
                                                    "#e15759", "#bab0ac", "#86bcb6", "#d37295"};

int cmt_panel_points(const struct cmt_set *s, const struct cmt_timeline *tl, const struct cmt_panel *p, struct cmt_point **out, size_t *n)
{
    size_t cap = 2 * (size_t)tl->points + 2, k = 0;
    struct cmt_point *pt = calloc(cap, sizeof *pt);
    if (!pt)
        return -1;
    pt[k++].ts = s->t0;
    for (int i = 0; i < tl->points; i++) {
        const struct cmt_bucket *b = &p->b[i];
        if (!b->touched)
            continue;
        pt[k].ts = b->max_ts;
        memcpy(pt[k].v, b->maxv, sizeof pt[k].v);
        k++;
        if (b->end_ts != b->max_ts || memcmp(b->endv, b->maxv, sizeof b->endv) != 0) {
            pt[k].ts = b->end_ts > b->max_ts ? b->end_ts : b->max_ts;
            memcpy(pt[k].v, b->endv, sizeof pt[k].v);
            k++;
        }
    }
    pt[k] = pt[k - 1];
    pt[k].ts = s->tend > pt[k - 1].ts ? s->tend : pt[k - 1].ts;
    k++;
    *out = pt;
    *n = k;
    return 0;
}

size_t cmt_panel_order(const struct cmt_set *s, const struct cmt_timeline *tl, size_t *ix)
{
    size_t k = 0;
    if (s->n > 1)
        for (size_t i = 0; i < tl->npanels; i++)
            if (tl->panels[i].trace < 0)
                ix[k++] = i;
    for (size_t t = 0; t < s->n; t++)
        for (size_t d = 0; d < s->t[t]->ndevs; d++)
            for (size_t i = 0; i < tl->npanels; i++)
                if (tl->panels[i].trace == (int)t && tl->panels[i].dev == (int)d)
                    ix[k++] = i;
    return k;
}

void cmt_panel_title(const struct cmt_set *s, const struct cmt_panel *p, char *buf, size_t len)
{
    if (p->trace < 0) {
        snprintf(buf, len, "all processes, all devices");
        return;
    }
    const struct cmt_trace *t = s->t[p->trace];
    const struct cmt_dev *d = &t->devs[p->dev];
    char label[256] = "", dev[64];
    if (s->n > 1) {
        cmt_trace_label(t, label, sizeof label - 1);
        strcat(label, " ");
    }
    if (d->device < 0)
        snprintf(dev, sizeof dev, "device ?");
    else
        snprintf(dev, sizeof dev, "device %lld", (long long)d->device);
    snprintf(buf, len, "%s%s%s%s", label, dev, d->name ? ": " : "", d->name ? d->name : "");
}

/* A round step near span/want: 1, 2, 2.5 or 5 times a power of ten. */
static double nice_step(double span, int want)
{
    double raw = span / want, p = 1;
    if (raw <= 0)
        return 1;
    while (p * 10 <= raw)
        p *= 10;
    while (p > raw)
        p /= 10;
    double m = raw / p;
    return p * (m <= 1 ? 1 : m <= 2 ? 2 : m <= 2.5 ? 2.5 : m <= 5 ? 5 : 10);
}

struct frame {
    double x0, y0, w, h; /* plot area */
    double tmax;         /* seconds */
    double ymax;         /* bytes */
};

static double X(const struct frame *f, double sec) { return f->x0 + (f->tmax > 0 ? sec / f->tmax : 0) * f->w; }
static double Y(const struct frame *f, double bytes) { return f->y0 + f->h - (f->ymax > 0 ? bytes / f->ymax : 0) * f->h; }

static void axes(struct sbuf *b, struct frame *f)
{
    /* y: bytes in the unit of the maximum, round steps */
    double unit = 1;
    const char *un = "B";
    static const char *names[] = {"B", "KiB", "MiB", "GiB", "TiB"};
    for (int u = 1; u < 5; u++)
        if (f->ymax >= (double)(1ULL << (10 * u))) {
            unit = (double)(1ULL << (10 * u));
            un = names[u];
        }
    double ystep = nice_step(f->ymax / unit, 4);
    double top = ystep;
    while (top * unit < f->ymax * 1.08) /* headroom for the peak's label */
        top += ystep;
    f->ymax = top * unit;
    for (double v = 0; v <= top + ystep / 2; v += ystep) {
        double y = Y(f, v * unit);
        sb_printf(b, "<line x1='%.1f' x2='%.1f' y1='%.1f' y2='%.1f' stroke='#e5e5e5'/>", f->x0, f->x0 + f->w, y, y);
        sb_printf(b, "<text x='%.1f' y='%.1f' text-anchor='end' font-size='11' fill='#555'>%g %s</text>", f->x0 - 6,
                  y + 4, v, un);
    }
    double xstep = nice_step(f->tmax > 0 ? f->tmax : 1, 6);
    for (double v = 0; v <= f->tmax + 1e-9; v += xstep) {
        double x = X(f, v);
        sb_printf(b, "<line x1='%.1f' x2='%.1f' y1='%.1f' y2='%.1f' stroke='#999'/>", x, x, f->y0 + f->h,
                  f->y0 + f->h + 4);
        sb_printf(b, "<text x='%.1f' y='%.1f' text-anchor='middle' font-size='11' fill='#555'>%g s</text>", x,
                  f->y0 + f->h + 16, v);
    }
    sb_printf(b, "<rect x='%.1f' y='%.1f' width='%.1f' height='%.1f' fill='none' stroke='#999'/>", f->x0, f->y0, f->w,
              f->h);
}

/* Index of the device slot of trace t for a device ordinal (-1 when unknown). */
static int dev_index(const struct cmt_trace *t, int64_t device)
{
    for (size_t i = 0; i < t->ndevs; i++)
        if (t->devs[i].device == device)
            return (int)i;
    return -1;
}

static int draw_panel(struct sbuf *b, const struct cmt_set *s, const struct cmt_timeline *tl, const struct cmt_panel *p,
                      double top)
{
    struct cmt_point *pt;
    size_t n;
    char t1[32], t2[32], title[400];
    if (cmt_panel_points(s, tl, p, &pt, &n) != 0)
        return -1;
    int nl = p->trace < 0 ? 1 : tl->nlayers;
    struct frame f = {80, top + 24, 840, 190, (double)(s->tend - s->t0) / 1e9, 0};
    for (size_t i = 0; i < n; i++) {
        double tot = 0;
        for (int l = 0; l < nl; l++)
            if (p->trace < 0 || tl->layer_physical[l])
                tot += (double)pt[i].v[l];
        if (tot > f.ymax)
            f.ymax = tot;
    }
    if (f.ymax <= 0)
        f.ymax = 1024;
    cmt_panel_title(s, p, title, sizeof title);
    sb_printf(b, "<g><text x='%.1f' y='%.1f' font-size='13' font-weight='600'>", f.x0, top + 14);
    sb_xml(b, title);
    sb_puts(b, "</text>");
    axes(b, &f);
    /* stacked layers, bottom first: each a closed step-shaped area between cumulative sums */
    double *cum = calloc(n, sizeof *cum);
    if (!cum) {
        free(pt);
        return -1;
    }
    for (int l = 0; l < nl; l++) {
        if (p->trace >= 0 && !tl->layer_physical[l])
            continue;
        int any = 0;
        for (size_t i = 0; i < n; i++)
            any |= pt[i].v[l] != 0;
        if (!any)
            continue;
        sb_printf(b, "<path fill='%s' fill-opacity='0.85' stroke='none' d='M%.1f %.1f", palette[l % CMT_MAX_LAYERS],
                  X(&f, 0), Y(&f, cum[0] + (double)pt[0].v[l]));
        for (size_t i = 1; i < n; i++) {
            sb_printf(b, "H%.1fV%.1f", X(&f, (double)(pt[i].ts - s->t0) / 1e9), Y(&f, cum[i] + (double)pt[i].v[l]));
        }
        /* back along the bottom: left of point i the level is that of point i - 1 */
        sb_printf(b, "V%.1f", Y(&f, cum[n - 1]));
        for (size_t i = n - 1; i > 0; i--)
            sb_printf(b, "V%.1fH%.1f", Y(&f, cum[i - 1]), X(&f, (double)(pt[i - 1].ts - s->t0) / 1e9));
        sb_puts(b, "Z'><title>");
        sb_xml(b, p->trace < 0 ? "device memory" : tl->layer_names[l]);
        sb_puts(b, "</title></path>");
        for (size_t i = 0; i < n; i++)
            cum[i] += (double)pt[i].v[l];
    }
    free(cum);
    /* peak: of this device, or of everything for the sum panel */
    int64_t peak, peak_ts;
    if (p->trace < 0) {
        peak = s->peak;
        peak_ts = s->peak_ts;
    } else {
        peak = s->t[p->trace]->devs[p->dev].peak;
        peak_ts = s->t[p->trace]->devs[p->dev].peak_ts;
    }
    if (peak > 0) {
        double x = X(&f, (double)(peak_ts - s->t0) / 1e9), y = Y(&f, (double)peak);
        sb_printf(b,
                  "<line x1='%.1f' x2='%.1f' y1='%.1f' y2='%.1f' stroke='#c0392b' stroke-dasharray='4 3'/>"
                  "<circle cx='%.1f' cy='%.1f' r='3.5' fill='#c0392b'/>"
                  "<text x='%.1f' y='%.1f' font-size='11' fill='#c0392b' text-anchor='%s'>peak %s at %s</text>",
                  x, x, f.y0, f.y0 + f.h, x, y, x + (x > f.x0 + f.w * 0.7 ? -6 : 6), y < f.y0 + 12 ? f.y0 + 12 : y - 4,
                  x > f.x0 + f.w * 0.7 ? "end" : "start", cmt_bytes_str(peak, t1), cmt_time_str(peak_ts - s->t0, t2));
    }
    /* failures: a red mark at the top edge, the details in a tooltip */
    for (size_t i = 0; i < s->nfails; i++) {
        const struct cmt_failure *fl = &s->fails[i];
        if (p->trace >= 0 && (fl->trace != p->trace || dev_index(s->t[fl->trace], fl->device) != p->dev))
            continue;
        double x = X(&f, (double)(fl->ts - s->t0) / 1e9);
        const char *rn = cmt_result_name(fl->result);
        sb_printf(b,
                  "<path d='M%.1f %.1fl-5 -9h10z' fill='#c0392b'><title>failed %s of %s at %s: %s (%lld)</title></path>",
                  x, f.y0, cmt_api_name(fl->api), cmt_bytes_str(fl->size, t1), cmt_time_str(fl->ts - s->t0, t2),
                  rn ? rn : "error", (long long)fl->result);
    }
    /* legend, on the title's line to the right */
    double lx = f.x0 + 420;
    if (p->trace >= 0)
        for (int l = 0; l < nl; l++) {
            if (!tl->layer_physical[l])
                continue;
            sb_printf(b, "<rect x='%.1f' y='%.1f' width='10' height='10' fill='%s'/>", lx, top + 5, palette[l]);
            sb_printf(b, "<text x='%.1f' y='%.1f' font-size='11'>", lx + 14, top + 14);
            sb_xml(b, tl->layer_names[l]);
            sb_puts(b, "</text>");
            lx += 24 + 7.0 * (double)strlen(tl->layer_names[l]);
        }
    sb_puts(b, "</g>");
    free(pt);
    return 0;
}

static void svg_open(struct sbuf *b, double h, const char *title)
{
    sb_printf(b,
              "<svg xmlns='http://www.w3.org/2000/svg' width='960' height='%.0f' viewBox='0 0 960 %.0f'"
              " font-family='sans-serif'><title>",
              h, h);
    sb_xml(b, title);
    sb_puts(b, "</title><rect width='100%' height='100%' fill='white'/>");
}

int cmt_svg_timeline(struct sbuf *b, const struct cmt_set *s, const struct cmt_timeline *tl)
{
    size_t *ix = calloc(tl->npanels + 1, sizeof *ix);
    if (!ix)
        return -1;
    size_t k = cmt_panel_order(s, tl, ix);
    double ph = 250;
    svg_open(b, k ? ph * (double)k + 10 : 60, "cumemtrace: device memory over time");
    if (!k)
        sb_puts(b, "<text x='20' y='30' font-size='13'>no device memory was allocated</text>");
    for (size_t i = 0; i < k; i++)
        if (draw_panel(b, s, tl, &tl->panels[ix[i]], 10 + ph * (double)i) != 0) {
            free(ix);
            return -1;
        }
    sb_puts(b, "</svg>\n");
    free(ix);
    return 0;
}

static const struct cmt_panel *sum_panel(const struct cmt_timeline *tl)
{
    for (size_t i = 0; i < tl->npanels; i++)
        if (tl->panels[i].trace < 0)
            return &tl->panels[i];
    return NULL;
}

int cmt_svg_overlay(struct sbuf *b, const struct cmt_set *a, const struct cmt_timeline *ta, const char *alabel,
                    const struct cmt_set *c, const struct cmt_timeline *tc, const char *blabel)
{
    const struct cmt_set *sets[2] = {a, c};
    const struct cmt_timeline *tls[2] = {ta, tc};
    const char *labels[2] = {alabel, blabel};
    const char *colors[2] = {"#4e79a7", "#e15759"};
    struct cmt_point *pt[2] = {NULL, NULL};
    size_t n[2] = {0, 0};
    struct frame f = {80, 40, 840, 260, 0, 0};
    char t1[32], t2[32];
    int rc = -1;
    for (int i = 0; i < 2; i++) {
        const struct cmt_panel *p = sum_panel(tls[i]);
        double span = (double)(sets[i]->tend - sets[i]->t0) / 1e9;
        if (span > f.tmax)
            f.tmax = span;
        if ((double)sets[i]->peak > f.ymax)
            f.ymax = (double)sets[i]->peak;
        if (p && cmt_panel_points(sets[i], tls[i], p, &pt[i], &n[i]) != 0)
            goto out;
    }
    if (f.ymax <= 0)
        f.ymax = 1024;
    svg_open(b, 350, "cumemtrace diff: device memory over time");
    sb_puts(b, "<text x='80' y='20' font-size='13' font-weight='600'>device memory over time (all devices), since each run's start</text>");
    axes(b, &f);
    for (int i = 0; i < 2; i++) {
        const struct cmt_set *s = sets[i];
        if (n[i]) {
            sb_printf(b, "<path fill='none' stroke='%s' stroke-width='1.6' d='M%.1f %.1f", colors[i], X(&f, 0),
                      Y(&f, (double)pt[i][0].v[0]));
            for (size_t j = 1; j < n[i]; j++)
                sb_printf(b, "H%.1fV%.1f", X(&f, (double)(pt[i][j].ts - s->t0) / 1e9), Y(&f, (double)pt[i][j].v[0]));
            sb_puts(b, "'><title>");
            sb_xml(b, labels[i]);
            sb_puts(b, "</title></path>");
        }
        if (s->peak > 0) {
            double x = X(&f, (double)(s->peak_ts - s->t0) / 1e9), y = Y(&f, (double)s->peak);
            sb_printf(b, "<circle cx='%.1f' cy='%.1f' r='4' fill='%s'><title>peak %s at %s</title></circle>", x, y,
                      colors[i], cmt_bytes_str(s->peak, t1), cmt_time_str(s->peak_ts - s->t0, t2));
        }
        sb_printf(b, "<rect x='%.1f' y='%d' width='12' height='3' fill='%s'/><text x='%.1f' y='%d' font-size='11'>%s: ",
                  f.x0 + 420 * i, 332, colors[i], f.x0 + 420 * i + 16, 337, i ? "B" : "A");
        sb_xml(b, labels[i]);
        sb_printf(b, " (peak %s)</text>", cmt_bytes_str(s->peak, t1));
    }
    sb_puts(b, "</svg>\n");
    rc = 0;
out:
    free(pt[0]);
    free(pt[1]);
    return rc;
}
