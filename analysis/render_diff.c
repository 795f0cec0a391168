/*
 * render_diff.c: the comparison of two runs drawn (see diff.h): text for people (aligned tables, the first
 * rows of each), JSON with exact integers, and the viewer's page with both runs.
 *
 * Runs in the `cumemtrace` command. Renders the model diff.c built into an sbuf; computes nothing.
 */
#include "diff.h"

#include "html.h"
#include "render.h"

#include <stdlib.h>
#include <string.h>

static void side_json(struct sbuf *b, const struct cmt_set *s)
{
    sb_puts(b, "{\"paths\":[");
    for (size_t i = 0; i < s->n; i++) {
        sb_puts(b, i ? "," : "");
        sb_json_str(b, s->t[i]->path);
    }
    sb_printf(b, "],\"peak_bytes\":%lld,\"peak_ns\":%lld,\"peak_seq\":%lld,\"failures\":%zu}", (long long)s->peak,
              (long long)(s->peak_trace >= 0 ? s->peak_ts - s->t0 : 0), (long long)s->peak_seq, s->nfails);
}

static const char *signed_bytes(int64_t v, char buf[32])
{
    char t[32];
    buf[0] = v < 0 ? '-' : v > 0 ? '+' : ' ';
    strcpy(buf + (v != 0), cmt_bytes_str(v < 0 ? -v : v, t)); /* at most 12 characters */
    return buf;
}

static void phases_json(struct sbuf *b, const struct cmt_phase_row *rows, size_t n)
{
    sb_putc(b, '[');
    for (size_t i = 0; i < n; i++) {
        sb_printf(b, "%s{\"name\":", i ? "," : "");
        sb_json_str(b, rows[i].name);
        sb_printf(b, ",\"a_count\":%lld,\"b_count\":%lld,\"a_peak_bytes\":%lld,\"b_peak_bytes\":%lld,\"delta_bytes\":%lld}",
                  (long long)rows[i].count[0], (long long)rows[i].count[1], (long long)rows[i].peak[0],
                  (long long)rows[i].peak[1], (long long)(rows[i].peak[1] - rows[i].peak[0]));
    }
    sb_putc(b, ']');
}

static void phases_text(struct sbuf *b, const struct cmt_phase_row *rows, size_t n, int top, const char *indent)
{
    char t1[32], t2[32], t3[32];
    sb_printf(b, "%s%10s %10s %11s  %s\n", indent, "A peak", "B peak", "B - A", "range (count A/B)");
    for (size_t i = 0; i < n && (int)i < top; i++)
        sb_printf(b, "%s%10s %10s %11s  %s (%lld/%lld)\n", indent, cmt_bytes_str(rows[i].peak[0], t1),
                  cmt_bytes_str(rows[i].peak[1], t2), signed_bytes(rows[i].peak[1] - rows[i].peak[0], t3),
                  rows[i].name, (long long)rows[i].count[0], (long long)rows[i].count[1]);
    if ((size_t)top < n)
        sb_printf(b, "%s... %zu more ranges\n", indent, n - (size_t)top);
}

/* --align: instance by instance, with the phases inside each. */
static void aligned_out(struct sbuf *b, int json, int top, const struct cmt_diff *d)
{
    char t1[32], t2[32], t3[32];
    const char *name = d->align;
    if (json) {
        sb_puts(b, ",\"aligned\":{\"range\":");
        sb_json_str(b, name);
        sb_printf(b, ",\"a_count\":%zu,\"b_count\":%zu,\"instances\":[", d->na, d->nb);
    } else {
        sb_printf(b, "\nALIGNED BY RANGE %s (A %zu, B %zu instances)\n", name, d->na, d->nb);
    }
    for (size_t i = 0; i < d->ninst; i++) {
        const struct cmt_range_inst *x = d->inst[i].x, *y = d->inst[i].y;
        const struct cmt_phase_row *rows = d->inst[i].rows;
        size_t nr = d->inst[i].nr;
        int64_t pa = x ? x->r->peak : 0, pb = y ? y->r->peak : 0;
        const char *g = cmt_diff_grew(rows, nr);
        if (json) {
            sb_printf(b, "%s{\"index\":%zu,\"a_peak_bytes\":", i ? "," : "", i);
            if (x)
                sb_printf(b, "%lld", (long long)pa);
            else
                sb_puts(b, "null");
            sb_puts(b, ",\"b_peak_bytes\":");
            if (y)
                sb_printf(b, "%lld", (long long)pb);
            else
                sb_puts(b, "null");
            /* where each instance starts, in ns since its run's start: the viewer aligns by these */
            sb_puts(b, ",\"a_start_ns\":");
            if (x)
                sb_printf(b, "%lld", (long long)(x->r->start_ns - d->a->t0));
            else
                sb_puts(b, "null");
            sb_puts(b, ",\"b_start_ns\":");
            if (y)
                sb_printf(b, "%lld", (long long)(y->r->start_ns - d->b->t0));
            else
                sb_puts(b, "null");
            sb_printf(b, ",\"delta_bytes\":%lld,\"grew\":", (long long)(pb - pa));
            sb_json_str(b, g);
            sb_puts(b, ",\"phases\":");
            phases_json(b, rows, nr);
            sb_putc(b, '}');
        } else {
            sb_printf(b, "  %s %zu: A %s, B %s, %s", name, i, x ? cmt_bytes_str(pa, t1) : "(none)",
                      y ? cmt_bytes_str(pb, t2) : "(none)", signed_bytes(pb - pa, t3));
            if (g)
                sb_printf(b, "; grew most: %s", g);
            sb_putc(b, '\n');
            if (nr)
                phases_text(b, rows, nr, top, "    ");
        }
    }
    if (json)
        sb_puts(b, "]}");
}

void cmt_diff_json(struct sbuf *out, const struct cmt_diff *d)
{
    sb_puts(out, "{\"format\":\"cumemtrace-diff\",\"version\":1,\"a\":");
    side_json(out, d->a);
    sb_puts(out, ",\"b\":");
    side_json(out, d->b);
    sb_printf(out, ",\"peak_delta_bytes\":%lld,\"stacks\":[", (long long)(d->b->peak - d->a->peak));
    for (size_t i = 0; i < d->nrows; i++) {
        sb_printf(out, "%s{\"a_bytes\":%lld,\"b_bytes\":%lld,\"delta_bytes\":%lld,\"module\":", i ? ",\n" : "",
                  (long long)d->rows[i].a, (long long)d->rows[i].b, (long long)(d->rows[i].b - d->rows[i].a));
        sb_json_str(out, d->rows[i].stack->module);
        sb_puts(out, ",\"stack\":");
        cmt_json_stack(out, d->rows[i].stack);
        sb_puts(out, ",\"stack_frames\":");
        cmt_json_stack_frames(out, d->rows[i].stack);
        sb_putc(out, '}');
    }
    sb_puts(out, "],\"modules\":[");
    for (size_t i = 0; i < d->nmods; i++) {
        sb_printf(out, "%s{\"module\":", i ? "," : "");
        sb_json_str(out, d->mods[i].name);
        sb_printf(out, ",\"a_bytes\":%lld,\"b_bytes\":%lld,\"delta_bytes\":%lld}", (long long)d->mods[i].a,
                  (long long)d->mods[i].b, (long long)(d->mods[i].b - d->mods[i].a));
    }
    sb_puts(out, "],\"components\":[");
    for (int c = 0, f = 1; c < CMT_NCOMP; c++) {
        if (!d->xa.comp_peak[c] && !d->xb.comp_peak[c])
            continue;
        sb_printf(out, "%s{\"name\":\"%s\",\"a_bytes_at_peak\":%lld,\"b_bytes_at_peak\":%lld,\"delta_bytes\":%lld}",
                  f ? "" : ",", cmt_comp_names[c], (long long)d->xa.comp_peak[c], (long long)d->xb.comp_peak[c],
                  (long long)(d->xb.comp_peak[c] - d->xa.comp_peak[c]));
        f = 0;
    }
    sb_printf(out, "],\"ooms\":{\"a\":%zu,\"b\":%zu},\"fragmentation\":[", d->xa.nooms, d->xb.nooms);
    for (size_t i = 0; i < d->xa.nfrag || i < d->xb.nfrag; i++) {
        sb_printf(out, "%s{\"device\":%lld", i ? "," : "",
                  (long long)(i < d->xa.nfrag ? d->xa.frag[i].device : d->xb.frag[i].device));
        for (int side = 0; side < 2; side++) {
            const struct cmt_torch *x = side ? &d->xb : &d->xa;
            if (i < x->nfrag && x->frag[i].end_reserved > 0)
                sb_printf(out, ",\"%s_end\":%.6f", side ? "b" : "a",
                          (double)(x->frag[i].end_reserved - x->frag[i].end_alloc) / (double)x->frag[i].end_reserved);
            else
                sb_printf(out, ",\"%s_end\":null", side ? "b" : "a");
        }
        sb_putc(out, '}');
    }
    sb_puts(out, "],\"phases\":");
    phases_json(out, d->phases, d->nphases);
    sb_puts(out, ",\"phase_grew\":");
    sb_json_str(out, cmt_diff_grew(d->phases, d->nphases));
    if (d->align)
        aligned_out(out, 1, 0, d);
    sb_puts(out, "}\n");
}

void cmt_diff_text(struct sbuf *out, const struct cmt_diff *d, const char *alabel, const char *blabel, int top)
{
    char t1[32], t2[32], t3[32];
    sb_printf(out, "A  %s%s\n", alabel, d->a->n > 1 ? " (several processes)" : "");
    sb_printf(out, "B  %s%s\n\n", blabel, d->b->n > 1 ? " (several processes)" : "");
    sb_printf(out, "PEAK DEVICE MEMORY\n  A %10s at %s\n", cmt_bytes_str(d->a->peak, t1),
              cmt_time_str(d->a->peak_trace >= 0 ? d->a->peak_ts - d->a->t0 : 0, t2));
    sb_printf(out, "  B %10s at %s\n", cmt_bytes_str(d->b->peak, t1),
              cmt_time_str(d->b->peak_trace >= 0 ? d->b->peak_ts - d->b->t0 : 0, t2));
    sb_printf(out, "  %12s", signed_bytes(d->b->peak - d->a->peak, t1));
    if (d->a->peak > 0)
        sb_printf(out, " (%+.1f%%)", 100.0 * (double)(d->b->peak - d->a->peak) / (double)d->a->peak);
    sb_printf(out, "\n  failed allocations: A %zu, B %zu\n", d->a->nfails, d->b->nfails);
    sb_puts(out, "\nLIVE AT PEAK BY STACK (largest growth first)\n");
    sb_printf(out, "  %10s %10s %11s  %s\n", "A", "B", "B - A", "stack (innermost first)");
    for (size_t i = 0; i < d->nrows && (int)i < top; i++) {
        sb_printf(out, "  %10s %10s %11s  ", cmt_bytes_str(d->rows[i].a, t1), cmt_bytes_str(d->rows[i].b, t2),
                  signed_bytes(d->rows[i].b - d->rows[i].a, t3));
        /* the frames as the report lists them (with file:line and inlined functions where known), the
         * first beside the figures, the others under it */
        struct sbuf fl = {0};
        cmt_stack_lines(&fl, d->rows[i].stack, "", 6);
        if (fl.oom) {
            sb_free(&fl);
            out->oom = 1; /* the caller sees it */
            return;
        }
        int first = 1;
        for (const char *p = fl.p; p && *p; first = 0) {
            size_t len = strcspn(p, "\n");
            sb_printf(out, "%s%.*s\n", first ? "" : "                                     ", (int)len, p);
            p += len + (p[len] == '\n');
        }
        sb_free(&fl);
    }
    if ((size_t)top < d->nrows)
        sb_printf(out, "  ... %zu more stacks\n", d->nrows - (size_t)top);
    sb_puts(out, "\nLIVE AT PEAK BY MODULE\n");
    sb_printf(out, "  %10s %10s %11s  %s\n", "A", "B", "B - A", "module");
    for (size_t i = 0; i < d->nmods && (int)i < top; i++)
        sb_printf(out, "  %10s %10s %11s  %s\n", cmt_bytes_str(d->mods[i].a, t1), cmt_bytes_str(d->mods[i].b, t2),
                  signed_bytes(d->mods[i].b - d->mods[i].a, t3), d->mods[i].name);
    sb_puts(out, "\nCOMPONENTS AT PEAK\n");
    sb_printf(out, "  %10s %10s %11s  %s\n", "A", "B", "B - A", "component");
    for (int c = 0; c < CMT_NCOMP; c++)
        if (d->xa.comp_peak[c] || d->xb.comp_peak[c])
            sb_printf(out, "  %10s %10s %11s  %s\n", cmt_bytes_str(d->xa.comp_peak[c], t1),
                      cmt_bytes_str(d->xb.comp_peak[c], t2), signed_bytes(d->xb.comp_peak[c] - d->xa.comp_peak[c], t3),
                      cmt_comp_names[c]);
    sb_printf(out, "  out-of-memory events: A %zu, B %zu\n", d->xa.nooms, d->xb.nooms);
    for (size_t i = 0; i < d->xa.nfrag && i < d->xb.nfrag; i++)
        sb_printf(out, "  fragmentation at the end, device %lld: A %.1f%%, B %.1f%%\n", (long long)d->xa.frag[i].device,
                  d->xa.frag[i].end_reserved ? 100.0 * (double)(d->xa.frag[i].end_reserved - d->xa.frag[i].end_alloc) /
                                                (double)d->xa.frag[i].end_reserved : 0.0,
                  d->xb.frag[i].end_reserved ? 100.0 * (double)(d->xb.frag[i].end_reserved - d->xb.frag[i].end_alloc) /
                                                (double)d->xb.frag[i].end_reserved : 0.0);
    if (d->nphases) {
        const char *g = cmt_diff_grew(d->phases, d->nphases);
        sb_printf(out, "\nPHASES (peak device memory inside each range)%s%s\n", g ? "; grew most: " : "",
                  g ? g : "");
        phases_text(out, d->phases, d->nphases, top, "  ");
    }
    if (d->align)
        aligned_out(out, 0, top, d);
}

int cmt_diff_page(struct sbuf *out, const struct cmt_diff *d, const char *alabel, const char *blabel,
                  const struct cmt_rules *rules, const char *text, char *err, size_t errlen)
{
    /* the viewer (analysis/html.c): both runs' bands, their totals overlaid, growth by stack */
    struct cmt_html_dict dict = {.rules = rules};
    struct sbuf data = {0};
    sb_puts(&data, "{\"kind\":\"diff\",\"title\":\"cumemtrace diff\",\"generator\":\"cumemtrace " CMT_VERSION
                   "\",\"runs\":[");
    int rc = cmt_html_run(&data, &dict, d->a, alabel, err, errlen);
    sb_putc(&data, ',');
    if (rc == 0)
        rc = cmt_html_run(&data, &dict, d->b, blabel, err, errlen);
    sb_puts(&data, "],\"growth\":[");
    for (size_t i = 0; rc == 0 && i < d->nrows; i++)
        sb_printf(&data, "%s{\"a\":%lld,\"b\":%lld,\"stack\":%lld}", i ? "," : "", (long long)d->rows[i].a,
                  (long long)d->rows[i].b, (long long)cmt_html_stack(&dict, d->rows[i].stack));
    /* by phase: the text diff's table (peak A, peak B per range name), and with --align the instances */
    sb_puts(&data, "],\"phases\":");
    phases_json(&data, d->phases, d->nphases);
    if (d->align)
        aligned_out(&data, 1, 0, d);
    sb_puts(&data, ",\"diff_text\":");
    sb_json_str(&data, text);
    cmt_html_dict_json(&data, &dict);
    sb_putc(&data, '}');
    if (rc == 0 && cmt_html_page(out, "cumemtrace diff", &data) != 0)
        rc = cmt_fail(err, errlen, "out of memory while writing the page");
    sb_free(&data);
    cmt_html_dict_free(&dict);
    return rc;
}
