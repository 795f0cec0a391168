/*
 * cmd_report.c: `cumemtrace report [--json] [--html FILE] [--top N] TRACE...`
 *
 * What a person asks first: how much device memory the program needed at most, when, and who held it;
 * what was still held at exit; which allocations failed and why. Text by default (aligned tables, human
 * units), --json with exact integers, --html one self-contained
 * interactive page (analysis/html.c and analysis/viewer/: bands over time, flame graph of the peak, the allocator's
 * segments).
 *
 * Runs in the `cumemtrace` command. Builds its whole output in memory and prints it only on success.
 */
#include "commands.h"

#include "chart.h"
#include "cmt_events.h"
#include "html.h"
#include "ledger.h"
#include "ranges.h"
#include "ranks.h"
#include "whatif.h"
#include "report.h"
#include "torch.h"

#include <getopt.h>
#include <stdlib.h>
#include <string.h>

static void usage(FILE *out)
{
    fprintf(out, "usage: cumemtrace report [--json] [--html FILE] [--top N] [--rules FILE] [--params N [--mixed]]"
                 " [--whatif CONF]... [--whatif-gpu GPU] TRACE|DIR...\n"
                 "  --json       machine-readable output (exact bytes, ns since the start)\n"
                 "  --html FILE  also write the viewer: one self-contained page (every allocation a band over time,\n"
                 "               hover for its stack, zoom; flame graph of the peak; allocator segments; tables)\n"
                 "  --top N      stacks listed per table (default 10)\n"
                 "  --rules FILE component rules instead of the shipped ones (see share/cumemtrace/torch/rules.txt)\n"
                 "  --params N   the model's parameter count: expected vs measured parameters, gradients and\n"
                 "               optimizer state (fp32 Adam: 4 + 4 + 8 bytes each; --mixed: 2 + 2 + 12)\n"
                 "  --whatif CONF  add the what-if table (as `cumemtrace whatif` prints it; in the text, the JSON's\n"
                 "               \"whatif\" and the page): the allocator history replayed as recorded and under CONF\n"
                 "               (repeatable; e.g. expandable_segments:True, max_split_size_mb:128)\n"
                 "  --whatif-gpu GPU  the what-if runs on that device (a preset or a size), as whatif --gpu\n");
}

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
static void json_argv(struct sbuf *b, const char *json)
{
    if (!json || json[0] != '[') {
        sb_puts(b, "null");
        return;
    }
    struct sbuf arg = {0};
    int n = 0;
    sb_putc(b, '[');
    for (const char *p = json; *p; p++) {
        if (*p != '"')
            continue;
        arg.len = 0;
        if (arg.p)
            arg.p[0] = 0;
        for (p++; *p && *p != '"'; p++) {
            if (*p == '\\' && p[1])
                p++;
            sb_putc(&arg, *p);
        }
        sb_puts(b, n++ ? "," : "");
        sb_json_str(b, arg.p ? arg.p : "");
        if (!*p)
            break;
    }
    sb_putc(b, ']');
    sb_free(&arg);
}

/* ---------------------------------------------------------------------------------------------------
 * Text */

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

static void report_text(struct sbuf *b, struct cmt_report *r, const struct cmt_torch *x,
                        const struct cmt_range_report *rr, const struct cmt_ranks *k, const struct cmt_ledger *l,
                        int top)
{
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
        if (s->nfails > 2 * CMT_TEXT_EACH_END && i == CMT_TEXT_EACH_END) {
            sb_printf(b, "  ... %zu more failed allocations (all of them in --json)\n", s->nfails - 2 * CMT_TEXT_EACH_END);
            i = s->nfails - CMT_TEXT_EACH_END;
        }
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
    if (r->whatif_text) {
        sb_puts(b, "\nWHAT IF (PyTorch's caching allocator replayed, analysis/allocmodel.c)\n");
        sb_puts(b, r->whatif_text);
    }
}

/* ---------------------------------------------------------------------------------------------------
 * JSON: exact integers, times in ns since the (earliest) start */

static void json_groups(struct sbuf *b, const struct cmt_group *g, size_t n, int top, int with_stack)
{
    sb_putc(b, '[');
    for (size_t i = 0; i < n && (top <= 0 || (int)i < top); i++) {
        sb_printf(b, "%s{\"bytes\":%lld,\"count\":%lld,", i ? "," : "", (long long)g[i].bytes, (long long)g[i].count);
        if (with_stack) {
            sb_printf(b, "\"module\":");
            sb_json_str(b, g[i].stack->module);
            sb_puts(b, ",\"stack\":");
            cmt_json_stack(b, g[i].stack);
            sb_puts(b, ",\"stack_frames\":");
            cmt_json_stack_frames(b, g[i].stack);
        } else {
            sb_puts(b, "\"module\":");
            sb_json_str(b, g[i].name);
        }
        sb_putc(b, '}');
    }
    sb_putc(b, ']');
}

static void report_json(struct sbuf *b, struct cmt_report *r, const struct cmt_torch *x,
                        const struct cmt_range_report *rr, const struct cmt_ranks *k, const struct cmt_ledger *l,
                        int top)
{
    struct cmt_set *s = r->s;
    sb_puts(b, "{\"format\":\"cumemtrace-report\",\"version\":1,\"traces\":[");
    for (size_t ti = 0; ti < s->n; ti++) {
        struct cmt_trace *t = s->t[ti];
        int64_t end = t->has_end && t->end_ns > t->last_ts ? t->end_ns : t->last_ts;
        sb_puts(b, ti ? ",{" : "{");
        sb_puts(b, "\"path\":");
        sb_json_str(b, t->path);
        sb_printf(b, ",\"pid\":%lld,\"ppid\":%lld,\"host\":", (long long)t->pid, (long long)t->ppid);
        sb_json_str(b, t->host);
        sb_puts(b, ",\"exe\":");
        sb_json_str(b, t->exe);
        sb_puts(b, ",\"argv\":");
        json_argv(b, t->argv);
        sb_puts(b, ",\"end_reason\":");
        if (t->end_reason[0])
            sb_json_str(b, t->end_reason);
        else
            sb_puts(b, "null");
        sb_printf(b,
                  ",\"finalized\":%s,\"events\":%lld,\"events_lost\":%lld,\"start_unix_ns\":%lld,\"start_ns\":%lld,"
                  "\"duration_ns\":%lld,\"peak_bytes\":%lld,\"peak_ns\":%lld,\"peak_seq\":%lld,"
                  "\"unmatched_releases\":%lld,\"devices\":[",
                  t->finalized ? "true" : "false", (long long)t->n_events, (long long)t->events_lost,
                  (long long)t->start_unix_ns, (long long)(t->start_ns - s->t0), (long long)(end - t->start_ns),
                  (long long)t->peak, (long long)(t->peak ? t->peak_ts - s->t0 : 0), (long long)t->peak_seq,
                  (long long)t->unmatched_releases);
        for (size_t d = 0; d < t->ndevs; d++) {
            const struct cmt_dev *dv = &t->devs[d];
            sb_printf(b, "%s{\"device\":", d ? "," : "");
            if (dv->device < 0)
                sb_puts(b, "null");
            else
                sb_printf(b, "%lld", (long long)dv->device);
            sb_puts(b, ",\"name\":");
            sb_json_str(b, dv->name);
            sb_puts(b, ",\"uuid\":");
            sb_json_str(b, dv->uuid);
            sb_printf(b, ",\"total_bytes\":%lld,\"peak_bytes\":%lld,\"peak_ns\":%lld,\"peak_seq\":%lld,\"live_at_exit_bytes\":%lld}",
                      (long long)dv->total_bytes, (long long)dv->peak, (long long)(dv->peak ? dv->peak_ts - s->t0 : 0),
                      (long long)dv->peak_seq, (long long)dv->live);
        }
        sb_puts(b, "]}");
    }
    sb_printf(b, "],\"peak_bytes\":%lld,\"peak_ns\":%lld,\"peak_seq\":%lld,\"peak_pid\":", (long long)s->peak,
              (long long)(s->peak_trace >= 0 ? s->peak_ts - s->t0 : 0), (long long)s->peak_seq);
    if (s->peak_trace >= 0)
        sb_printf(b, "%lld", (long long)s->t[s->peak_trace]->pid);
    else
        sb_puts(b, "null");
    sb_printf(b, ",\"duration_ns\":%lld,\"events\":%lld,\"leaked_bytes\":%lld,\"leaked_count\":%lld",
              (long long)r->duration_ns, (long long)r->events, (long long)r->leaked_bytes, (long long)r->leaked_count);
    sb_printf(b,
              ",\"other_memory\":{\"managed\":{\"peak_bytes\":%lld,\"live_at_exit_bytes\":%lld},"
              "\"host_pinned\":{\"peak_bytes\":%lld,\"live_at_exit_bytes\":%lld},"
              "\"va_reserved\":{\"peak_bytes\":%lld,\"live_at_exit_bytes\":%lld},"
              "\"vmm_mapped\":{\"peak_bytes\":%lld},\"ipc\":{\"peak_bytes\":%lld}}",
              (long long)r->kind_peak[2], (long long)r->kind_leaked[2], (long long)r->kind_peak[3],
              (long long)r->kind_leaked[3], (long long)r->kind_peak[5], (long long)r->kind_leaked[5],
              (long long)r->kind_peak[7], (long long)r->kind_peak[8]);
    /* inside other_memory, added after the fact: the closing brace above is taken back */
    b->len--;
    sb_printf(b,
              ",\"host_registered\":{\"peak_bytes\":%lld,\"live_at_exit_bytes\":%lld},"
              "\"graph_nodes\":{\"peak_bytes\":%lld,\"live_at_exit_bytes\":%lld},"
              "\"vmm_imported\":{\"live_at_exit_bytes\":%lld}}",
              (long long)r->kind_peak[CMT_KIND_HOST_REGISTERED], (long long)r->kind_leaked[CMT_KIND_HOST_REGISTERED],
              (long long)r->kind_peak[CMT_KIND_GRAPH], (long long)r->kind_leaked[CMT_KIND_GRAPH],
              (long long)r->kind_leaked[CMT_KIND_VMM_IMPORTED]);
    sb_puts(b, ",\"top_at_peak\":");
    json_groups(b, r->top, r->ntop, top, 1);
    sb_puts(b, ",\"modules_at_peak\":");
    json_groups(b, r->mods, r->nmods, 0, 0);
    sb_puts(b, ",\"leaks\":");
    json_groups(b, r->leaks, r->nleaks, top, 1);
    sb_puts(b, ",\"failures\":[");
    for (size_t i = 0; i < s->nfails; i++) {
        const struct cmt_failure *f = &s->fails[i];
        sb_printf(b, "%s{\"seq\":%lld,\"ts_ns\":%lld,\"pid\":%lld,\"api\":\"%s\",\"kind\":\"%s\",\"device\":", i ? "," : "",
                  (long long)f->seq, (long long)(f->ts - s->t0), (long long)s->t[f->trace]->pid, cmt_api_name(f->api),
                  cmt_kind_name(f->kind));
        if (f->device < 0)
            sb_puts(b, "null");
        else
            sb_printf(b, "%lld", (long long)f->device);
        sb_printf(b, ",\"size\":%lld,\"result\":%lld,\"result_name\":", (long long)f->size, (long long)f->result);
        sb_json_str(b, cmt_result_name(f->result));
        if (f->has_free)
            sb_printf(b, ",\"free_bytes\":%lld,\"total_bytes\":%lld", (long long)f->free_bytes, (long long)f->total_bytes);
        else
            sb_puts(b, ",\"free_bytes\":null,\"total_bytes\":null");
        sb_printf(b, ",\"live_bytes\":%lld,\"stack\":", (long long)f->live_bytes);
        cmt_json_stack(b, r->fail_stacks[i]);
        sb_puts(b, ",\"stack_frames\":");
        cmt_json_stack_frames(b, r->fail_stacks[i]);
        sb_puts(b, ",\"ranges\":");
        if (i < rr->nfail)
            cmt_ranges_json_stack(b, &rr->at_fail[i]);
        else
            sb_puts(b, "[]");
        sb_putc(b, '}');
    }
    sb_puts(b, "],\"largest\":[");
    for (int i = 0; i < r->nbig; i++) {
        const struct cmt_big *g = &r->big[i];
        sb_printf(b, "%s{\"size\":%lld,\"seq\":%lld,\"pid\":%lld,\"kind\":\"%s\",\"api\":\"%s\",\"ts_ns\":%lld,\"free_ns\":",
                  i ? "," : "", (long long)g->r.size, (long long)g->r.seq, (long long)s->t[g->trace]->pid,
                  cmt_kind_name(g->r.kind), cmt_api_name(g->r.api), (long long)(g->ts - s->t0));
        if (g->free_ts < 0)
            sb_puts(b, "null");
        else
            sb_printf(b, "%lld", (long long)(g->free_ts - s->t0));
        sb_puts(b, ",\"stack\":");
        cmt_json_stack(b, g->stack);
        sb_puts(b, ",\"stack_frames\":");
        cmt_json_stack_frames(b, g->stack);
        sb_putc(b, '}');
    }
    sb_puts(b, "],\"histogram\":[");
    int first = 1;
    for (int i = 0; i < CMT_NHIST; i++)
        if (r->hist_count[i]) {
            sb_printf(b, "%s{\"max_bytes\":%lld,\"count\":%lld,\"bytes\":%lld}", first ? "" : ",",
                      (long long)((int64_t)1 << i), (long long)r->hist_count[i], (long long)r->hist_bytes[i]);
            first = 0;
        }
    sb_printf(b, "],\"churn\":{\"allocations\":%lld,\"frees\":%lld,\"bytes_allocated\":%lld,\"bytes_freed\":%lld}",
              (long long)r->allocs, (long long)r->frees, (long long)r->bytes_alloc, (long long)r->bytes_freed);
    sb_puts(b, ",\"events_by_api\":{");
    first = 1;
    for (int a = 0; a < CMT_NAPIS; a++)
        if (r->api_count[a]) {
            sb_printf(b, "%s\"%s\":%lld", first ? "" : ",", cmt_api_name(a), (long long)r->api_count[a]);
            first = 0;
        }
    sb_putc(b, '}');
    cmt_ranges_json(b, rr);
    cmt_heaps_json(b, s, rr->heaps, rr->nheaps);
    cmt_ranks_json(b, k, s);
    cmt_ledger_json(b, l, s);
    cmt_torch_json(b, x, s);
    if (r->whatif_json)
        sb_puts(b, r->whatif_json);
    sb_puts(b, "}\n");
}

/* ---------------------------------------------------------------------------------------------------
 * HTML: the viewer (analysis/html.c) over this report's JSON and the run's bands */

static int report_html(struct sbuf *b, struct cmt_report *r, const struct cmt_torch *x,
                       const struct cmt_range_report *rr, const struct cmt_ranks *k, const struct cmt_ledger *l,
                       int top, const struct cmt_rules *rules, char *err, size_t errlen)
{
    struct cmt_set *s = r->s;
    struct cmt_html_dict d = {.rules = rules};
    struct sbuf data = {0}, why = {0};
    char label[256] = "run";
    int rc = -1;
    if (s->n == 1)
        cmt_trace_label(s->t[0], label, sizeof label);
    sb_puts(&data, "{\"kind\":\"report\",\"title\":\"cumemtrace report\",\"generator\":\"cumemtrace " CMT_VERSION
                   "\",\"report\":");
    report_json(&data, r, x, rr, k, l, top);
    cmt_torch_text(&why, x, s);
    sb_puts(&data, ",\"torch_text\":");
    sb_json_str(&data, why.p ? why.p : "");
    sb_puts(&data, ",\"runs\":[");
    if (cmt_html_run(&data, &d, s, label, err, errlen) != 0)
        goto out;
    sb_putc(&data, ']');
    cmt_html_dict_json(&data, &d);
    sb_putc(&data, '}');
    if (cmt_html_page(b, "cumemtrace report", &data) != 0) {
        snprintf(err, errlen, "out of memory while writing the page");
        goto out;
    }
    rc = 0;
out:
    sb_free(&data);
    sb_free(&why);
    cmt_html_dict_free(&d);
    return rc;
}

int cmd_report(int argc, char **argv)
{
    static const struct option opts[] = {{"json", no_argument, NULL, 'j'},
                                         {"html", required_argument, NULL, 'H'},
                                         {"top", required_argument, NULL, 't'},
                                         {"rules", required_argument, NULL, 'r'},
                                         {"params", required_argument, NULL, 'p'},
                                         {"mixed", no_argument, NULL, 'm'},
                                         {"whatif", required_argument, NULL, 'w'},
                                         {"whatif-gpu", required_argument, NULL, 'g'},
                                         {"help", no_argument, NULL, 'h'},
                                         {NULL, 0, NULL, 0}};
    int json = 0, top = 10, c, status = 1, nwhatif = 0;
    const char *html = NULL, *whatif[16], *whatif_gpu = NULL;
    char err[1024] = "";
    struct cmt_torch_options to = {0};
    opterr = 0;
    while ((c = getopt_long(argc, argv, "+h", opts, NULL)) != -1) {
        switch (c) {
        case 'j': json = 1; break;
        case 'H': html = optarg; break;
        case 't':
            top = atoi(optarg);
            if (top <= 0) {
                cmt_log("report: --top needs a positive number");
                return 2;
            }
            break;
        case 'r': to.rules = optarg; break;
        case 'p': {
            char *end = NULL;
            to.params = strtoll(optarg, &end, 10);
            if (to.params <= 0 || !end || *end) {
                cmt_log("report: --params needs a positive number of parameters");
                return 2;
            }
            break;
        }
        case 'm': to.mixed = 1; break;
        case 'w':
            if (nwhatif == (int)(sizeof whatif / sizeof whatif[0])) {
                cmt_log("report: at most %d --whatif", nwhatif);
                return 2;
            }
            whatif[nwhatif++] = optarg;
            break;
        case 'g': whatif_gpu = optarg; break;
        case 'h': usage(stdout); return 0;
        default:
            cmt_log("report: unknown option '%s' (see 'cumemtrace report --help')", argv[optind - 1]);
            return 2;
        }
    }
    if (optind >= argc) {
        usage(stderr);
        return 2;
    }
    struct cmt_set s;
    struct cmt_report r = {0};
    struct cmt_torch x = {0};
    struct cmt_range_report rr = {0};
    struct cmt_ranks k = {0};
    struct cmt_ledger l = {0};
    struct sbuf out = {0}, page = {0}, wjson = {0}, wtext = {0};
    struct cmt_rules rules = {0};
    int have_rules = 0;
    if (cmt_load(&s, argv + optind, argc - optind, NULL, 0, err, sizeof err) != 0 ||
        cmt_report_build(&r, &s, err, sizeof err) != 0 || cmt_torch_build(&x, &s, &to, err, sizeof err) != 0 ||
        cmt_ranges_report(&rr, &s, err, sizeof err) != 0 || cmt_ranks_build(&k, &s, err, sizeof err) != 0 ||
        cmt_ledger_build(&l, &s, err, sizeof err) != 0)
        goto out;
    if (nwhatif || whatif_gpu) {
        /* the what-if table asked for: the allocator history of the one trace given */
        if (s.n != 1) {
            snprintf(err, sizeof err, "report: --whatif reads the allocator history of one trace; %zu were given",
                     s.n);
            goto out;
        }
        if (cmt_whatif_report(s.t[0]->path, whatif, nwhatif, whatif_gpu, &wjson, &wtext, err, sizeof err) != 0)
            goto out;
        if (wjson.oom || wtext.oom) {
            snprintf(err, sizeof err, "out of memory");
            goto out;
        }
        r.whatif_json = wjson.p;
        r.whatif_text = wtext.p;
    }
    if (json)
        report_json(&out, &r, &x, &rr, &k, &l, top);
    else
        report_text(&out, &r, &x, &rr, &k, &l, top);
    if (html) {
        /* components of the bands: the same rules as the report's (shipped, or --rules) */
        if (cmt_rules_load(&rules, to.rules, err, sizeof err) != 0) {
            if (to.rules)
                goto out;
            err[0] = 0; /* no shipped rules beside us: every band is "other" by component */
        } else
            have_rules = 1;
        if (report_html(&page, &r, &x, &rr, &k, &l, top, have_rules ? &rules : NULL, err, sizeof err) != 0)
            goto out;
    }
    if ((html && sb_write(&page, html, err, sizeof err) != 0) || sb_write(&out, NULL, err, sizeof err) != 0)
        goto out;
    if (html)
        cmt_log("report written to %s", html);
    status = 0;
out:
    if (status)
        cmt_log("%s", err);
    sb_free(&out);
    sb_free(&page);
    sb_free(&wjson);
    sb_free(&wtext);
    cmt_report_free(&r);
    cmt_torch_free(&x);
    cmt_ranges_report_free(&rr);
    cmt_rules_free(&rules);
    cmt_ranks_free(&k);
    cmt_ledger_free(&l);
    cmt_set_close(&s);
    return status;
}
