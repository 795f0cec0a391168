/*
 * render_text.c: the report for people (`cumemtrace report`): aligned tables in human units, the first and
 * last entries of long lists, every section of the report model (report.h) in a fixed order.
 *
 * Runs in the `cumemtrace` command. Renders the model into an sbuf; computes nothing the model lacks.
 */
#include "render.h"

#include "cmt_events.h"

#include <string.h>

static const char *pct(int64_t part, int64_t whole, char buf[16])
{
    if (whole <= 0)
        snprintf(buf, 16, "-");
    else
        snprintf(buf, 16, "%.1f%%", 100.0 * (double)part / (double)whole);
    return buf;
}

static void hist_label(int i, char *buf, size_t len)
{
    char a[32];
    snprintf(buf, len, "<= %s", cmt_bytes_str((int64_t)1 << i, a));
}

/* The program line: argv from its JSON array, shown as a shell would. */
static void argv_text(struct sbuf *b, const char *json)
{
    if (!json) {
        sb_puts(b, "?");
        return;
    }
    int first = 1;
    for (const char *p = json; *p; p++) {
        if (*p != '"')
            continue;
        if (!first)
            sb_putc(b, ' ');
        first = 0;
        for (p++; *p && *p != '"'; p++) {
            if (*p == '\\' && p[1])
                p++;
            sb_putc(b, *p);
        }
        if (!*p)
            break;
    }
}

/* argv as a JSON array, rebuilt from the stored one string by string (the column is not trusted to be
 * valid JSON: a damaged trace must not make our output invalid). */
static void text_stacks(struct sbuf *b, const struct cmt_group *g, size_t n, int top, int64_t whole)
{
    char t1[32], t2[32], t3[16];
    sb_printf(b, "  %10s %7s %10s  %s\n", "bytes", "share", "allocs", "stack (innermost first)");
    for (size_t i = 0; i < n && (int)i < top; i++) {
        sb_printf(b, "  %10s %7s %10s  ", cmt_bytes_str(g[i].bytes, t1), pct(g[i].bytes, whole, t3),
                  cmt_count_str(g[i].count, t2));
        struct sbuf lines = {0};
        cmt_stack_lines(&lines, g[i].stack, "", 8);
        /* first frame on the row, the others aligned under it */
        char *save = NULL, *line = lines.p ? strtok_r(lines.p, "\n", &save) : NULL;
        int first = 1;
        for (; line; line = strtok_r(NULL, "\n", &save)) {
            sb_printf(b, first ? "%s\n" : "                                 %s\n", line);
            first = 0;
        }
        if (first)
            sb_putc(b, '\n');
        sb_free(&lines);
    }
    if ((size_t)top < n)
        sb_printf(b, "  ... %zu more stacks\n", n - (size_t)top);
}

void cmt_render_text(struct sbuf *b, const struct cmt_report *r)
{
    const struct cmt_torch *x = &r->torch;
    const struct cmt_range_report *rr = &r->ranges;
    const struct cmt_ranks *k = &r->ranks;
    const struct cmt_ledger *l = &r->ledger;
    int top = r->top_n;
    struct cmt_set *s = r->s;
    char t1[32], t2[32], t3[32], t4[16];
    for (size_t ti = 0; ti < s->n; ti++) {
        struct cmt_trace *t = s->t[ti];
        if (s->n > 1)
            sb_printf(b, "process %zu of %zu\n", ti + 1, s->n);
        sb_printf(b, "trace     %s%s\n", t->path, t->finalized ? "" : "  (not finalized: its writer was killed)");
        if (t->end_reason[0])
            sb_printf(b, "ended     %s\n", !strcmp(t->end_reason, "exit") ? "by exit" :
                                          !strcmp(t->end_reason, "exec") ? "by exec (the new image has its own trace)" :
                                          "killed by a signal");
        sb_puts(b, "program   ");
        argv_text(b, t->argv);
        sb_printf(b, "\n          pid %lld on %s\n", (long long)t->pid, t->host ? t->host : "?");
        int64_t end = t->has_end && t->end_ns > t->last_ts ? t->end_ns : t->last_ts;
        sb_printf(b, "duration  %s, %s events", cmt_time_str(end - t->start_ns, t1), cmt_count_str(t->n_events, t2));
        if (t->events_lost)
            sb_printf(b, " (%s lost)", cmt_count_str(t->events_lost, t3));
        sb_putc(b, '\n');
        for (size_t d = 0; d < t->ndevs; d++) {
            const struct cmt_dev *dv = &t->devs[d];
            sb_printf(b, "%s", d ? "          " : "devices   ");
            if (dv->device < 0)
                sb_puts(b, "?: unknown device");
            else
                sb_printf(b, "%lld: %s", (long long)dv->device, dv->name ? dv->name : "?");
            if (dv->total_bytes)
                sb_printf(b, ", %s", cmt_bytes_str(dv->total_bytes, t1));
            sb_putc(b, '\n');
        }
        sb_putc(b, '\n');
    }

    sb_puts(b, "PEAK DEVICE MEMORY\n");
    if (s->peak_trace < 0 && x && x->has_alloc && !r->events) {
        sb_puts(b, "  no driver-level events (an imported allocator snapshot): its view is the allocator level,\n"
                   "  FRAGMENTATION, OUT OF MEMORY and COMPONENTS below (sites with their Python frames)\n");
    } else if (s->peak_trace < 0) {
        sb_puts(b, "  no device memory was allocated\n");
    } else {
        sb_printf(b, "  %s at %s (seq %lld%s", cmt_bytes_str(s->peak, t1), cmt_time_str(s->peak_ts - s->t0, t2),
                  (long long)s->peak_seq, s->n > 1 ? " in " : ")");
        if (s->n > 1) {
            char label[256];
            cmt_trace_label(s->t[s->peak_trace], label, sizeof label);
            sb_printf(b, "%s), all processes summed", label);
        }
        sb_putc(b, '\n');
    }
    sb_printf(b, "  %-28s %-8s %10s %8s %12s %12s\n", "process", "device", "peak", "of total", "at", "seq");
    for (size_t ti = 0; ti < s->n; ti++) {
        struct cmt_trace *t = s->t[ti];
        char label[256];
        cmt_trace_label(t, label, sizeof label);
        for (size_t d = 0; d < t->ndevs; d++) {
            const struct cmt_dev *dv = &t->devs[d];
            char dev[32];
            snprintf(dev, sizeof dev, dv->device < 0 ? "?" : "%lld", (long long)dv->device);
            sb_printf(b, "  %-28s %-8s %10s %8s %12s %12lld\n", label, dev, cmt_bytes_str(dv->peak, t1),
                      pct(dv->peak, dv->total_bytes, t4), cmt_time_str(dv->peak_ts - s->t0, t2),
                      (long long)dv->peak_seq);
        }
        if (s->n > 1 || t->ndevs > 1)
            sb_printf(b, "  %-28s %-8s %10s %8s %12s %12lld\n", label, "all", cmt_bytes_str(t->peak, t1), "",
                      cmt_time_str(t->peak_ts - s->t0, t2), (long long)t->peak_seq);
    }
    cmt_ranks_text(b, k, s);
    cmt_ledger_text(b, l, s);
    sb_puts(b, "\nOTHER MEMORY (not counted as device memory)\n");
    sb_printf(b, "  %-34s peak %10s   live at exit %10s\n", "managed (cuMemAllocManaged)",
              cmt_bytes_str(r->kind_peak[2], t1), cmt_bytes_str(r->kind_leaked[2], t2));
    sb_printf(b, "  %-34s peak %10s   live at exit %10s\n", "host pinned (cuMemAllocHost...)",
              cmt_bytes_str(r->kind_peak[3], t1), cmt_bytes_str(r->kind_leaked[3], t2));
    sb_printf(b, "  %-34s peak %10s   (address space)\n", "VA reserved (cuMemAddressReserve)",
              cmt_bytes_str(r->kind_peak[5], t1));
    if (r->kind_peak[7])
        sb_printf(b, "  %-34s peak %10s   (views of physical handles)\n", "VMM mapped (cuMemMap)",
                  cmt_bytes_str(r->kind_peak[7], t1));
    if (r->kind_peak[8])
        sb_printf(b, "  %-34s peak %10s   (other processes' memory)\n", "IPC opened", cmt_bytes_str(r->kind_peak[8], t1));
    if (r->kind_peak[CMT_KIND_HOST_REGISTERED])
        sb_printf(b, "  %-34s peak %10s   live at exit %10s\n", "host registered (cuMemHostRegister)",
                  cmt_bytes_str(r->kind_peak[CMT_KIND_HOST_REGISTERED], t1),
                  cmt_bytes_str(r->kind_leaked[CMT_KIND_HOST_REGISTERED], t2));
    if (r->kind_peak[CMT_KIND_GRAPH])
        sb_printf(b, "  %-34s peak %10s   (addresses; the graph pool's memory is sampled)\n",
                  "graph memory nodes", cmt_bytes_str(r->kind_peak[CMT_KIND_GRAPH], t1));

    int64_t at_peak_count = 0;
    for (size_t i = 0; i < r->ntop; i++)
        at_peak_count += r->top[i].count;
    sb_printf(b, "\nLIVE AT PEAK: TOP STACKS (%s in %s allocations)\n", cmt_bytes_str(s->peak, t1),
              cmt_count_str(at_peak_count, t2));
    if (r->ntop)
        text_stacks(b, r->top, r->ntop, top, s->peak);
    else
        sb_puts(b, "  nothing\n");

    sb_puts(b, "\nLIVE AT PEAK: BY MODULE (innermost frame outside the CUDA libraries)\n");
    for (size_t i = 0; i < r->nmods && (int)i < top; i++)
        sb_printf(b, "  %10s %7s %10s  %s\n", cmt_bytes_str(r->mods[i].bytes, t1), pct(r->mods[i].bytes, s->peak, t4),
                  cmt_count_str(r->mods[i].count, t2), r->mods[i].name);
    if (!r->nmods)
        sb_puts(b, "  nothing\n");

    sb_printf(b, "\nLIVE AT EXIT (LEAKS): %s in %s allocations\n", cmt_bytes_str(r->leaked_bytes, t1),
              cmt_count_str(r->leaked_count, t2));
    if (r->nleaks)
        text_stacks(b, r->leaks, r->nleaks, top, r->leaked_bytes);

    sb_printf(b, "\nFAILED ALLOCATIONS: %zu\n", s->nfails);
    for (size_t i = 0; i < s->nfails; i++) {
        /* For people: the first ones (how it began) and the last ones (what ended it); --json has all. */
        i = cmt_text_elide(b, i, s->nfails, "  ", "failed allocations");
        const struct cmt_failure *f = &s->fails[i];
        const char *rn = cmt_result_name(f->result);
        sb_printf(b, "  %s of %s at %s (seq %lld", cmt_api_name(f->api), cmt_bytes_str(f->size, t1),
                  cmt_time_str(f->ts - s->t0, t2), (long long)f->seq);
        if (s->n > 1) {
            char label[256];
            cmt_trace_label(s->t[f->trace], label, sizeof label);
            sb_printf(b, ", %s", label);
        }
        if (f->device >= 0)
            sb_printf(b, ", device %lld", (long long)f->device);
        sb_printf(b, "): %s (%lld)\n", rn ? rn : "error", (long long)f->result);
        if (f->has_free)
            sb_printf(b, "    device free %s of %s; ", cmt_bytes_str(f->free_bytes, t1),
                      cmt_bytes_str(f->total_bytes, t2));
        else
            sb_puts(b, "    ");
        sb_printf(b, "this process held %s\n", cmt_bytes_str(f->live_bytes, t3));
        if (i < rr->nfail && rr->at_fail[i].n) {
            sb_puts(b, "    in ");
            cmt_ranges_text_stack(b, &rr->at_fail[i]);
            sb_putc(b, '\n');
        }
        cmt_stack_lines(b, r->fail_stacks[i], "      ", 8);
    }
    cmt_ranges_text(b, rr);
    cmt_heaps_text(b, rr->heaps, rr->nheaps);
    cmt_torch_text(b, x, s);

    sb_puts(b, "\nLARGEST ALLOCATIONS\n");
    sb_printf(b, "  %10s  %-14s %-22s %12s %12s  %s\n", "size", "kind", "api", "at", "freed at", "innermost frame");
    for (int i = 0; i < r->nbig; i++) {
        const struct cmt_big *g = &r->big[i];
        char freed[32];
        if (g->free_ts < 0)
            snprintf(freed, sizeof freed, "never");
        else
            cmt_time_str(g->free_ts - s->t0, freed);
        sb_printf(b, "  %10s  %-14s %-22s %12s %12s  %s\n", cmt_bytes_str(g->r.size, t1), cmt_kind_name(g->r.kind),
                  cmt_api_name(g->r.api), cmt_time_str(g->ts - s->t0, t2), freed,
                  g->stack->nframes ? g->stack->frames[0] : g->stack->key);
    }

    sb_puts(b, "\nSIZE HISTOGRAM (device memory allocations)\n");
    int lo = CMT_NHIST, hi = -1;
    int64_t maxc = 0;
    for (int i = 0; i < CMT_NHIST; i++)
        if (r->hist_count[i]) {
            if (i < lo)
                lo = i;
            hi = i;
            if (r->hist_count[i] > maxc)
                maxc = r->hist_count[i];
        }
    for (int i = lo; i <= hi; i++) {
        char label[48];
        hist_label(i, label, sizeof label);
        int bar = maxc ? (int)((40 * r->hist_count[i] + maxc - 1) / maxc) : 0;
        sb_printf(b, "  %12s %12s %10s  ", label, cmt_count_str(r->hist_count[i], t1), cmt_bytes_str(r->hist_bytes[i], t2));
        for (int k = 0; k < bar; k++)
            sb_putc(b, '#');
        sb_putc(b, '\n');
    }
    if (hi < 0)
        sb_puts(b, "  no allocations\n");

    sb_puts(b, "\nCHURN (device memory)\n");
    sb_printf(b, "  allocations %s, frees %s\n", cmt_count_str(r->allocs, t1), cmt_count_str(r->frees, t2));
    sb_printf(b, "  allocated %s in total, %s freed", cmt_bytes_str(r->bytes_alloc, t1), cmt_bytes_str(r->bytes_freed, t2));
    if (s->peak > 0)
        sb_printf(b, "; %.1f times the peak", (double)r->bytes_alloc / (double)s->peak);
    sb_putc(b, '\n');
    if (r->duration_ns > 0)
        sb_printf(b, "  %.1f allocations per second\n", (double)r->allocs * 1e9 / (double)r->duration_ns);

    sb_puts(b, "\nEVENTS BY API\n");
    for (int a = 1; a < CMT_NAPIS; a++)
        if (r->api_count[a])
            sb_printf(b, "  %-30s %12s\n", cmt_api_name(a), cmt_count_str(r->api_count[a], t1));
    if (r->api_count[0])
        sb_printf(b, "  %-30s %12s\n", "(unknown api)", cmt_count_str(r->api_count[0], t1));
    if (r->whatif) {
        sb_puts(b, "\nWHAT IF (PyTorch's caching allocator replayed, analysis/allocmodel.c)\n");
        cmt_whatif_text(b, r->whatif, r->nwhatif, &r->whatif_gpu);
    }
}

