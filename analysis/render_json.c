/*
 * render_json.c: the report for programs (`cumemtrace report --json`): exact integers (bytes, ns since the
 * earliest start), every entry of every list, keys only ever added (tests/golden pin them).
 *
 * Runs in the `cumemtrace` command. Renders the model (report.h) into an sbuf; computes nothing.
 */
#include "render.h"

#include "cmt_events.h"

#include <string.h>

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

static void render_json(struct sbuf *b, const struct cmt_report *r, size_t each_end)
{
    const struct cmt_torch *x = &r->torch;
    const struct cmt_range_report *rr = &r->ranges;
    const struct cmt_ranks *k = &r->ranks;
    const struct cmt_ledger *l = &r->ledger;
    int top = r->top_n;
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
        if (!cmt_shown(i, s->nfails, each_end))
            continue;
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
    cmt_ledger_json(b, l, s, each_end);
    cmt_torch_json(b, x, s, each_end);
    if (each_end)
        sb_printf(b, ",\"failures_total\":%zu,\"ooms_total\":%zu", s->nfails, x->nooms);
    if (r->whatif) {
        sb_puts(b, ",\"whatif\":");
        cmt_whatif_json(b, r->whatif, r->nwhatif);
        if (r->whatif_gpu.spec) {
            sb_puts(b, ",\"whatif_gpu\":");
            cmt_whatif_gpu_json(b, &r->whatif_gpu);
        }
    }
    sb_puts(b, "}\n");
}

void cmt_render_json(struct sbuf *b, const struct cmt_report *r) { render_json(b, r, 0); }

void cmt_render_json_page(struct sbuf *b, const struct cmt_report *r) { render_json(b, r, CMT_TEXT_EACH_END); }
