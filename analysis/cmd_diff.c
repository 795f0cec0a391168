/*
 * cmd_diff.c: `cumemtrace diff [--json] [--top N] [-o FILE.svg|.html] A B`
 *
 * Two runs of one program (each a trace or a directory of per-process traces): the peak of each and the
 * difference; what was live at each peak, per stack and per module, stacks matched by their symbolized
 * frames (addresses differ between runs; file:line and inlined functions as the report shows them, from
 * whichever side had the stack first), the largest growth first; optionally an overlay of the two
 * timelines (.svg), or the viewer page (.html, analysis/html.c) with both runs, their totals overlaid from
 * each run's start, and growth by stack. Phases (NVTX ranges, analysis/ranges.c): per range name the peak
 * inside it in A and in B and which grew most; --align RANGE pairs the Nth instance of RANGE in A with the
 * Nth in B (step N against step N) and says, per instance, which phase inside it grew; the .html page has the
 * growth by phase, and with --align offsets B's time so that the chosen instance starts with A's.
 *
 * Runs in the `cumemtrace` command. Prints only once everything succeeded.
 */
#include "commands.h"

#include "chart.h"
#include "html.h"
#include "ranges.h"
#include "render.h"
#include "torch.h"

#include <getopt.h>
#include <stdlib.h>
#include <string.h>

static void usage(FILE *out)
{
    fprintf(out, "usage: cumemtrace diff [--json] [--top N] [--align RANGE] [-o FILE.svg|FILE.html] A B\n"
                 "  A, B      a trace or a directory of per-process traces, one run each\n"
                 "  --json    machine-readable output (exact bytes)\n"
                 "  --top N   rows per table in text (default 20)\n"
                 "  --align RANGE  compare the Nth instance of the range named RANGE in A with the Nth in B\n"
                 "            (e.g. step N against step N) and the phases inside each\n"
                 "  -o FILE   also write the two timelines overlaid (.svg), or the viewer with both runs (.html)\n");
}

struct row {
    const char *name;
    const struct cmt_stack *stack; /* from whichever side had it */
    int64_t a, b;
};

static int cmp_row(const void *x, const void *y)
{
    const struct row *p = x, *q = y;
    int64_t dp = p->b - p->a, dq = q->b - q->a;
    if (dp != dq)
        return dp > dq ? -1 : 1;
    if (p->b != q->b)
        return p->b > q->b ? -1 : 1;
    return strcmp(p->name, q->name);
}

/* Joins the two sides' groups by name; rows are sorted largest growth first. */
static int join(const struct cmt_group *ga, size_t na, const struct cmt_group *gb, size_t nb, struct row **out,
                size_t *nout)
{
    struct smap ix = {0};
    struct row *r = calloc(na + nb + 1, sizeof *r);
    size_t n = 0;
    if (!r)
        return -1;
    for (int side = 0; side < 2; side++) {
        const struct cmt_group *g = side ? gb : ga;
        size_t ng = side ? nb : na;
        for (size_t i = 0; i < ng; i++) {
            int64_t *p = smap_get(&ix, g[i].name);
            if (!p) {
                if (smap_put(&ix, g[i].name, (int64_t)n) != 0) {
                    smap_free(&ix);
                    free(r);
                    return -1;
                }
                r[n].name = g[i].name;
                r[n].stack = g[i].stack;
                p = smap_get(&ix, g[i].name);
                n++;
            }
            if (side)
                r[*p].b += g[i].bytes;
            else
                r[*p].a += g[i].bytes;
        }
    }
    smap_free(&ix);
    if (n)
        qsort(r, n, sizeof *r, cmp_row);
    *out = r;
    *nout = n;
    return 0;
}

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

/* The phase that grew most among rows (sorted largest growth first), or NULL if none grew. */
static const char *grew(const struct cmt_phase_row *rows, size_t n)
{
    return n && rows[0].peak[1] > rows[0].peak[0] ? rows[0].name : NULL;
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
static int aligned_out(struct sbuf *b, int json, int top, const char *name, const struct cmt_set *a,
                       const struct cmt_set *bs, char *err, size_t errlen)
{
    struct cmt_range_inst *ia = NULL, *ib = NULL;
    size_t na = 0, nb = 0;
    int rc = -1;
    char t1[32], t2[32], t3[32];
    if (cmt_ranges_instances(a, name, &ia, &na) != 0 || cmt_ranges_instances(bs, name, &ib, &nb) != 0) {
        cmt_fail(err, errlen, "out of memory");
        goto out;
    }
    if (!na && !nb) {
        cmt_fail(err, errlen, "diff: --align %s: neither A nor B has a range of that name", name);
        goto out;
    }
    if (json) {
        sb_puts(b, ",\"aligned\":{\"range\":");
        sb_json_str(b, name);
        sb_printf(b, ",\"a_count\":%zu,\"b_count\":%zu,\"instances\":[", na, nb);
    } else {
        sb_printf(b, "\nALIGNED BY RANGE %s (A %zu, B %zu instances)\n", name, na, nb);
    }
    for (size_t i = 0; i < na || i < nb; i++) {
        const struct cmt_range_inst *x = i < na ? &ia[i] : NULL, *y = i < nb ? &ib[i] : NULL;
        struct cmt_phase_row *rows = NULL;
        size_t nr = 0;
        if (cmt_ranges_phases(a, x, bs, y, 1, &rows, &nr) != 0) {
            cmt_fail(err, errlen, "out of memory");
            goto out;
        }
        int64_t pa = x ? x->r->peak : 0, pb = y ? y->r->peak : 0;
        const char *g = grew(rows, nr);
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
                sb_printf(b, "%lld", (long long)(x->r->start_ns - a->t0));
            else
                sb_puts(b, "null");
            sb_puts(b, ",\"b_start_ns\":");
            if (y)
                sb_printf(b, "%lld", (long long)(y->r->start_ns - bs->t0));
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
        free(rows);
    }
    if (json)
        sb_puts(b, "]}");
    rc = 0;
out:
    free(ia);
    free(ib);
    return rc;
}

int cmd_diff(int argc, char **argv)
{
    static const struct option opts[] = {{"json", no_argument, NULL, 'j'},
                                         {"top", required_argument, NULL, 't'},
                                         {"output", required_argument, NULL, 'o'},
                                         {"align", required_argument, NULL, 'a'},
                                         {"help", no_argument, NULL, 'h'},
                                         {NULL, 0, NULL, 0}};
    int json = 0, top = 20, c, status = 1;
    const char *out_path = NULL, *align = NULL;
    char err[1024] = "", t1[32], t2[32], t3[32];
    opterr = 0;
    while ((c = getopt_long(argc, argv, "+ho:", opts, NULL)) != -1) {
        switch (c) {
        case 'j': json = 1; break;
        case 't':
            top = atoi(optarg);
            if (top <= 0) {
                cmt_log("diff: --top needs a positive number");
                return 2;
            }
            break;
        case 'o': out_path = optarg; break;
        case 'a': align = optarg; break;
        case 'h': usage(stdout); return 0;
        default:
            cmt_log("diff: unknown option or missing value '%s' (see 'cumemtrace diff --help')", argv[optind - 1]);
            return 2;
        }
    }
    if (argc - optind != 2) {
        usage(stderr);
        return 2;
    }
    const char *ext = out_path ? strrchr(out_path, '.') : NULL;
    int html = ext && (!strcmp(ext, ".html") || !strcmp(ext, ".htm"));
    if (out_path && !html && !(ext && !strcmp(ext, ".svg"))) {
        cmt_log("diff: -o takes a .svg or .html file");
        return 2;
    }
    struct cmt_set a, bs;
    struct cmt_group *sa = NULL, *sb = NULL, *ma = NULL, *mb = NULL;
    size_t nsa = 0, nsb = 0, nma = 0, nmb = 0, nrows = 0, nmods = 0;
    struct row *rows = NULL, *mods = NULL;
    struct cmt_phase_row *phases = NULL;
    size_t nphases = 0;
    struct cmt_torch xa = {0}, xb = {0};
    struct cmt_torch_options to = {0};
    struct sbuf out = {0}, pic = {0};
    struct cmt_timeline ta = {.points = 1000, .by = CMT_BY_KIND}, tb = ta;
    struct cmt_observer oa = cmt_timeline_observer(&ta), ob = cmt_timeline_observer(&tb);
    size_t want_tl = out_path != NULL && !html; /* the SVG overlay */
    struct cmt_rules rules = {0};
    /* the viewer colours by component: the shipped rules when they are beside us, else all "other" */
    int have_rules = html && cmt_rules_load(&rules, NULL, err, sizeof err) == 0;
    err[0] = 0;
    memset(&bs, 0, sizeof bs);
    if (cmt_load(&a, argv + optind, 1, &oa, want_tl, err, sizeof err) != 0 ||
        cmt_load(&bs, argv + optind + 1, 1, &ob, want_tl, err, sizeof err) != 0)
        goto out;
    if (cmt_group_by_stack(&a, CMT_AT_PEAK, &sa, &nsa, err, sizeof err) != 0 ||
        cmt_group_by_stack(&bs, CMT_AT_PEAK, &sb, &nsb, err, sizeof err) != 0 ||
        cmt_group_by_module(&a, CMT_AT_PEAK, &ma, &nma, err, sizeof err) != 0 ||
        cmt_group_by_module(&bs, CMT_AT_PEAK, &mb, &nmb, err, sizeof err) != 0)
        goto out;
    if (cmt_torch_build(&xa, &a, &to, err, sizeof err) != 0 || cmt_torch_build(&xb, &bs, &to, err, sizeof err) != 0)
        goto out;
    if (join(sa, nsa, sb, nsb, &rows, &nrows) != 0 || join(ma, nma, mb, nmb, &mods, &nmods) != 0 ||
        cmt_ranges_phases(&a, NULL, &bs, NULL, 0, &phases, &nphases) != 0) {
        snprintf(err, sizeof err, "out of memory");
        goto out;
    }
    if (json) {
        sb_puts(&out, "{\"format\":\"cumemtrace-diff\",\"version\":1,\"a\":");
        side_json(&out, &a);
        sb_puts(&out, ",\"b\":");
        side_json(&out, &bs);
        sb_printf(&out, ",\"peak_delta_bytes\":%lld,\"stacks\":[", (long long)(bs.peak - a.peak));
        for (size_t i = 0; i < nrows; i++) {
            sb_printf(&out, "%s{\"a_bytes\":%lld,\"b_bytes\":%lld,\"delta_bytes\":%lld,\"module\":", i ? ",\n" : "",
                      (long long)rows[i].a, (long long)rows[i].b, (long long)(rows[i].b - rows[i].a));
            sb_json_str(&out, rows[i].stack->module);
            sb_puts(&out, ",\"stack\":");
            cmt_json_stack(&out, rows[i].stack);
            sb_puts(&out, ",\"stack_frames\":");
            cmt_json_stack_frames(&out, rows[i].stack);
            sb_putc(&out, '}');
        }
        sb_puts(&out, "],\"modules\":[");
        for (size_t i = 0; i < nmods; i++) {
            sb_printf(&out, "%s{\"module\":", i ? "," : "");
            sb_json_str(&out, mods[i].name);
            sb_printf(&out, ",\"a_bytes\":%lld,\"b_bytes\":%lld,\"delta_bytes\":%lld}", (long long)mods[i].a,
                      (long long)mods[i].b, (long long)(mods[i].b - mods[i].a));
        }
        sb_puts(&out, "],\"components\":[");
        for (int c = 0, f = 1; c < CMT_NCOMP; c++) {
            if (!xa.comp_peak[c] && !xb.comp_peak[c])
                continue;
            sb_printf(&out, "%s{\"name\":\"%s\",\"a_bytes_at_peak\":%lld,\"b_bytes_at_peak\":%lld,\"delta_bytes\":%lld}",
                      f ? "" : ",", cmt_comp_names[c], (long long)xa.comp_peak[c], (long long)xb.comp_peak[c],
                      (long long)(xb.comp_peak[c] - xa.comp_peak[c]));
            f = 0;
        }
        sb_printf(&out, "],\"ooms\":{\"a\":%zu,\"b\":%zu},\"fragmentation\":[", xa.nooms, xb.nooms);
        for (size_t i = 0; i < xa.nfrag || i < xb.nfrag; i++) {
            sb_printf(&out, "%s{\"device\":%lld", i ? "," : "",
                      (long long)(i < xa.nfrag ? xa.frag[i].device : xb.frag[i].device));
            for (int side = 0; side < 2; side++) {
                const struct cmt_torch *x = side ? &xb : &xa;
                if (i < x->nfrag && x->frag[i].end_reserved > 0)
                    sb_printf(&out, ",\"%s_end\":%.6f", side ? "b" : "a",
                              (double)(x->frag[i].end_reserved - x->frag[i].end_alloc) / (double)x->frag[i].end_reserved);
                else
                    sb_printf(&out, ",\"%s_end\":null", side ? "b" : "a");
            }
            sb_putc(&out, '}');
        }
        sb_puts(&out, "],\"phases\":");
        phases_json(&out, phases, nphases);
        sb_puts(&out, ",\"phase_grew\":");
        sb_json_str(&out, grew(phases, nphases));
        if (align && aligned_out(&out, 1, top, align, &a, &bs, err, sizeof err) != 0)
            goto out;
        sb_puts(&out, "}\n");
    } else {
        sb_printf(&out, "A  %s%s\n", argv[optind], a.n > 1 ? " (several processes)" : "");
        sb_printf(&out, "B  %s%s\n\n", argv[optind + 1], bs.n > 1 ? " (several processes)" : "");
        sb_printf(&out, "PEAK DEVICE MEMORY\n  A %10s at %s\n", cmt_bytes_str(a.peak, t1),
                  cmt_time_str(a.peak_trace >= 0 ? a.peak_ts - a.t0 : 0, t2));
        sb_printf(&out, "  B %10s at %s\n", cmt_bytes_str(bs.peak, t1),
                  cmt_time_str(bs.peak_trace >= 0 ? bs.peak_ts - bs.t0 : 0, t2));
        sb_printf(&out, "  %12s", signed_bytes(bs.peak - a.peak, t1));
        if (a.peak > 0)
            sb_printf(&out, " (%+.1f%%)", 100.0 * (double)(bs.peak - a.peak) / (double)a.peak);
        sb_printf(&out, "\n  failed allocations: A %zu, B %zu\n", a.nfails, bs.nfails);
        sb_puts(&out, "\nLIVE AT PEAK BY STACK (largest growth first)\n");
        sb_printf(&out, "  %10s %10s %11s  %s\n", "A", "B", "B - A", "stack (innermost first)");
        for (size_t i = 0; i < nrows && (int)i < top; i++) {
            sb_printf(&out, "  %10s %10s %11s  ", cmt_bytes_str(rows[i].a, t1), cmt_bytes_str(rows[i].b, t2),
                      signed_bytes(rows[i].b - rows[i].a, t3));
            /* the frames as the report lists them (with file:line and inlined functions where known), the
             * first beside the figures, the others under it */
            struct sbuf fl = {0};
            cmt_stack_lines(&fl, rows[i].stack, "", 6);
            if (fl.oom) {
                sb_free(&fl);
                snprintf(err, sizeof err, "out of memory");
                goto out;
            }
            int first = 1;
            for (const char *p = fl.p; p && *p; first = 0) {
                size_t len = strcspn(p, "\n");
                sb_printf(&out, "%s%.*s\n", first ? "" : "                                     ", (int)len, p);
                p += len + (p[len] == '\n');
            }
            sb_free(&fl);
        }
        if ((size_t)top < nrows)
            sb_printf(&out, "  ... %zu more stacks\n", nrows - (size_t)top);
        sb_puts(&out, "\nLIVE AT PEAK BY MODULE\n");
        sb_printf(&out, "  %10s %10s %11s  %s\n", "A", "B", "B - A", "module");
        for (size_t i = 0; i < nmods && (int)i < top; i++)
            sb_printf(&out, "  %10s %10s %11s  %s\n", cmt_bytes_str(mods[i].a, t1), cmt_bytes_str(mods[i].b, t2),
                      signed_bytes(mods[i].b - mods[i].a, t3), mods[i].name);
        sb_puts(&out, "\nCOMPONENTS AT PEAK\n");
        sb_printf(&out, "  %10s %10s %11s  %s\n", "A", "B", "B - A", "component");
        for (int c = 0; c < CMT_NCOMP; c++)
            if (xa.comp_peak[c] || xb.comp_peak[c])
                sb_printf(&out, "  %10s %10s %11s  %s\n", cmt_bytes_str(xa.comp_peak[c], t1),
                          cmt_bytes_str(xb.comp_peak[c], t2), signed_bytes(xb.comp_peak[c] - xa.comp_peak[c], t3),
                          cmt_comp_names[c]);
        sb_printf(&out, "  out-of-memory events: A %zu, B %zu\n", xa.nooms, xb.nooms);
        for (size_t i = 0; i < xa.nfrag && i < xb.nfrag; i++)
            sb_printf(&out, "  fragmentation at the end, device %lld: A %.1f%%, B %.1f%%\n", (long long)xa.frag[i].device,
                      xa.frag[i].end_reserved ? 100.0 * (double)(xa.frag[i].end_reserved - xa.frag[i].end_alloc) /
                                                    (double)xa.frag[i].end_reserved : 0.0,
                      xb.frag[i].end_reserved ? 100.0 * (double)(xb.frag[i].end_reserved - xb.frag[i].end_alloc) /
                                                    (double)xb.frag[i].end_reserved : 0.0);
        if (nphases) {
            const char *g = grew(phases, nphases);
            sb_printf(&out, "\nPHASES (peak device memory inside each range)%s%s\n", g ? "; grew most: " : "",
                      g ? g : "");
            phases_text(&out, phases, nphases, top, "  ");
        }
        if (align && aligned_out(&out, 0, top, align, &a, &bs, err, sizeof err) != 0)
            goto out;
    }
    if (out_path && html) {
        /* the viewer (analysis/html.c): both runs' bands, their totals overlaid, growth by stack */
        struct cmt_html_dict d = {.rules = have_rules ? &rules : NULL};
        struct sbuf data = {0};
        sb_puts(&data, "{\"kind\":\"diff\",\"title\":\"cumemtrace diff\",\"generator\":\"cumemtrace " CMT_VERSION
                       "\",\"runs\":[");
        int rc = cmt_html_run(&data, &d, &a, argv[optind], err, sizeof err);
        sb_putc(&data, ',');
        if (rc == 0)
            rc = cmt_html_run(&data, &d, &bs, argv[optind + 1], err, sizeof err);
        sb_puts(&data, "],\"growth\":[");
        for (size_t i = 0; rc == 0 && i < nrows; i++)
            sb_printf(&data, "%s{\"a\":%lld,\"b\":%lld,\"stack\":%lld}", i ? "," : "", (long long)rows[i].a,
                      (long long)rows[i].b, (long long)cmt_html_stack(&d, rows[i].stack));
        /* by phase: the text diff's table (peak A, peak B per range name), and with --align the instances */
        sb_puts(&data, "],\"phases\":");
        phases_json(&data, phases, nphases);
        if (rc == 0 && align && aligned_out(&data, 1, top, align, &a, &bs, err, sizeof err) != 0)
            rc = -1;
        sb_puts(&data, ",\"diff_text\":");
        sb_json_str(&data, json ? "" : out.p);
        cmt_html_dict_json(&data, &d);
        sb_putc(&data, '}');
        if (rc == 0 && cmt_html_page(&pic, "cumemtrace diff", &data) != 0)
            rc = cmt_fail(err, sizeof err, "out of memory while writing the page");
        sb_free(&data);
        cmt_html_dict_free(&d);
        if (rc != 0 || sb_write(&pic, out_path, err, sizeof err) != 0)
            goto out;
    } else if (out_path) {
        if (cmt_svg_overlay(&pic, &a, &ta, argv[optind], &bs, &tb, argv[optind + 1]) != 0) {
            snprintf(err, sizeof err, "out of memory while drawing");
            goto out;
        }
        if (sb_write(&pic, out_path, err, sizeof err) != 0)
            goto out;
    }
    if (sb_write(&out, NULL, err, sizeof err) != 0)
        goto out;
    status = 0;
out:
    if (status)
        cmt_log("%s", err);
    free(sa);
    free(sb);
    free(ma);
    free(mb);
    free(rows);
    free(mods);
    free(phases);
    sb_free(&out);
    sb_free(&pic);
    cmt_torch_free(&xa);
    cmt_torch_free(&xb);
    cmt_rules_free(&rules);
    cmt_timeline_free(&ta);
    cmt_timeline_free(&tb);
    cmt_set_close(&a);
    cmt_set_close(&bs);
    return status;
}
