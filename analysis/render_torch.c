/*
 * render_torch.c: the allocator level's report sections (see torch.h): FRAGMENTATION, OUT OF MEMORY with
 * verdicts and advice, COMPONENTS and sites, as text for people and as the JSON keys of `report --json`.
 *
 * Runs in the `cumemtrace` command. Renders the model cmt_torch_build made; reads nothing, prints nothing.
 */
#include "torch.h"

#include <stdlib.h>
#include <string.h>

/* ---------------------------------------------------------------------------------------------------
 * Output */

static double ratio(int64_t part, int64_t whole) { return whole > 0 ? (double)part / (double)whole : 0.0; }

static int cmp_site(const void *a, const void *b)
{
    const struct cmt_site *x = a, *y = b;
    int64_t kx = x->bytes_at_end > x->bytes_at_peak ? x->bytes_at_end : x->bytes_at_peak;
    int64_t ky = y->bytes_at_end > y->bytes_at_peak ? y->bytes_at_end : y->bytes_at_peak;
    if (kx != ky)
        return kx > ky ? -1 : 1;
    return strcmp(x->name, y->name);
}

int cmt_oom_advice(const struct cmt_oom *o, char out[4][256])
{
    char t1[32], t2[32], t3[32];
    int k = 0;
    const struct cmt_mverdict *v = o->has_mv ? &o->mv : NULL;
    if (v && v->kind == CMT_MV_FRAGMENTATION && v->fits_with[0])
        snprintf(out[k++], 256, "set PYTORCH_CUDA_ALLOC_CONF=%s: this run replayed with it serves the request "
                                "(reserved %s then, %s less than the allocator needed)", v->fits_with,
                 cmt_bytes_str(v->fits_reserved_bytes, t1), cmt_bytes_str(v->saves_bytes, t2));
    if (v && v->kind == CMT_MV_OUTSIDE)
        snprintf(out[k++], 256, "%s of device memory was held outside the caching allocator (other libraries' "
                                "cudaMalloc, workspaces) and the allocator lacked %s: free or shrink that memory",
                 cmt_bytes_str(v->outside_bytes, t1), cmt_bytes_str(v->short_bytes, t3));
    if (v && v->kind == CMT_MV_FRAGMENTATION && !v->fits_with[0])
        snprintf(out[k++], 256, "no setting the model tried (expandable_segments:True, max_split_size_mb 20 to "
                                "1024) serves this request on this device");
    if (o->fragmentation) {
        if (!v || strncmp(v->fits_with, "expandable", 10))
            snprintf(out[k++], 256, "set PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True: segments then grow in "
                                    "place instead of leaving unusable pieces between them");
        if (!v || strncmp(v->fits_with, "max_split", 9))
            snprintf(out[k++], 256, "or max_split_size_mb:%lld (below the %s request) so large cached blocks are "
                                    "not split for small tensors",
                     (long long)((o->size >> 20) > 20 ? (o->size >> 20) / 2 : 20), cmt_bytes_str(o->size, t1));
        if (k < 3)
            snprintf(out[k++], 256, "garbage_collection_threshold:0.8 reclaims unused cached blocks before the "
                                    "allocator runs out");
    } else {
        int64_t missing = o->size - (o->has_free ? o->free_bytes : 0) - (o->reserved - o->allocated);
        snprintf(out[k++], 256, "the device is short of about %s: reduce the batch size (or sequence length), "
                                "use activation checkpointing or lower precision",
                 cmt_bytes_str(missing > 0 ? missing : o->size, t1));
        if (o->reserved > o->allocated && k < 4)
            snprintf(out[k++], 256, "%s is reserved but unallocated: garbage_collection_threshold:0.8 or "
                                    "expandable_segments:True return it sooner", cmt_bytes_str(o->reserved - o->allocated, t2));
    }
    return k;
}

void cmt_torch_text(struct sbuf *b, const struct cmt_torch *x, const struct cmt_set *s)
{
    char t1[32], t2[32], t3[32], t4[32];
    sb_puts(b, "\nFRAGMENTATION (allocator level: reserved but unallocated / reserved)\n");
    if (!x->nfrag)
        sb_puts(b, "  no allocator data in this trace (import a snapshot: cumemtrace import-torch, or run --torch)\n");
    for (size_t i = 0; i < x->nfrag; i++) {
        const struct cmt_frag *f = &x->frag[i];
        char label[256] = "";
        if (s->n > 1)
            cmt_trace_label(s->t[f->trace], label, sizeof label);
        sb_printf(b, "  %sdevice %lld\n", label, (long long)f->device);
        sb_printf(b, "    at the end   %5.1f%%  reserved %s, allocated %s; internal %s, external %s\n",
                  100 * ratio(f->end_reserved - f->end_alloc, f->end_reserved), cmt_bytes_str(f->end_reserved, t1),
                  cmt_bytes_str(f->end_alloc, t2), cmt_bytes_str(f->end_internal, t3),
                  cmt_bytes_str(f->end_external, t4));
        sb_printf(b, "    at the peak  %5.1f%%  reserved %s, allocated %s (highest allocated) at %s\n",
                  100 * ratio(f->peak_reserved_then - f->peak_alloc, f->peak_reserved_then),
                  cmt_bytes_str(f->peak_reserved_then, t1), cmt_bytes_str(f->peak_alloc, t2),
                  cmt_time_str(f->peak_ts - s->t0, t3));
        sb_printf(b, "    peak-based   %5.1f%%  1 - peak allocated / peak reserved (%s)\n",
                  100 * (1 - ratio(f->peak_alloc, f->max_reserved)), cmt_bytes_str(f->max_reserved, t1));
        sb_printf(b, "    largest free block %s; %lld of %lld segments have free space\n",
                  cmt_bytes_str(f->end_largest_free, t1), (long long)f->segments_with_free, (long long)f->nsegments);
    }
    sb_printf(b, "\nOUT OF MEMORY: %zu\n", x->nooms);
    for (size_t i = 0; i < x->nooms; i++) {
        i = cmt_text_elide(b, i, x->nooms, "  ", "");
        const struct cmt_oom *o = &x->ooms[i];
        sb_printf(b, "  %s of %s on device %lld at %s: %s OOM\n", o->source ? cmt_api_name(o->api) : "allocation",
                  cmt_bytes_str(o->size, t1), (long long)o->device, cmt_time_str(o->ts - s->t0, t2),
                  o->has_mv && o->mv.kind == CMT_MV_OUTSIDE ? "HELD-OUTSIDE-THE-ALLOCATOR"
                  : o->fragmentation                        ? "FRAGMENTATION"
                                                            : "CAPACITY");
        if (o->has_mv) {
            const struct cmt_mverdict *v = &o->mv;
            sb_printf(b, "    model: live %s + request %s against the %s the allocator could have (reserved + "
                         "device free)", cmt_bytes_str(v->live_bytes, t1), cmt_bytes_str(v->request_bytes, t2),
                      cmt_bytes_str(v->capacity_bytes, t3));
            if (v->short_bytes > 0)
                sb_printf(b, ": short %s", cmt_bytes_str(v->short_bytes, t1));
            if (v->outside_bytes > 0)
                sb_printf(b, "; %s held outside the allocator", cmt_bytes_str(v->outside_bytes, t1));
            if (v->kind == CMT_MV_FRAGMENTATION)
                sb_printf(b, "; %s", v->fits_with[0] ? "served when replayed with " : "no setting tried serves it");
            if (v->kind == CMT_MV_FRAGMENTATION && v->fits_with[0])
                sb_puts(b, v->fits_with);
            sb_printf(b, "%s\n", v->reproduced ? "" : " (the model does not reproduce this OOM: read with care)");
        }
        if (o->has_free)
            sb_printf(b, "    device free %s; ", cmt_bytes_str(o->free_bytes, t1));
        else
            sb_puts(b, "    ");
        sb_printf(b, "reserved %s, allocated %s%s, reserved but unallocated %s, largest free block %s\n",
                  cmt_bytes_str(o->reserved, t1), cmt_bytes_str(o->allocated, t2), o->estimated ? " (estimated)" : "",
                  cmt_bytes_str(o->reserved - o->allocated, t3), cmt_bytes_str(o->largest_free, t4));
        if (o->source && o->retry >= 0)
            sb_printf(b, "    release-and-retry: the cache gave back %s in %lld segments, then the retry %s\n",
                      cmt_bytes_str(o->released_bytes, t1), (long long)o->released_segments,
                      o->retry ? "succeeded (recovered: no error reached the program)" : "failed too");
        char adv[4][256];
        int na = cmt_oom_advice(o, adv);
        for (int k = 0; k < na; k++)
            sb_printf(b, "    - %s\n", adv[k]);
    }
    sb_printf(b, "\nCOMPONENTS (%s)\n", x->has_alloc ? "allocator blocks" : "driver allocations by stack");
    sb_printf(b, "  %-16s %10s %7s %10s %7s\n", "component", "at peak", "share", "at end", "share");
    for (int c = 0; c < CMT_NCOMP; c++) {
        if (!x->comp_peak[c] && !x->comp_end[c])
            continue;
        char p1[16], p2[16];
        snprintf(p1, sizeof p1, "%.1f%%", 100 * ratio(x->comp_peak[c], x->comp_whole_peak));
        snprintf(p2, sizeof p2, "%.1f%%", 100 * ratio(x->comp_end[c], x->comp_whole_end));
        sb_printf(b, "  %-16s %10s %7s %10s %7s\n", cmt_comp_names[c], cmt_bytes_str(x->comp_peak[c], t1), p1,
                  cmt_bytes_str(x->comp_end[c], t2), p2);
    }
    if (x->params > 0) {
        int64_t per[3] = {x->mixed ? 2 : 4, x->mixed ? 2 : 4, x->mixed ? 12 : 8};
        int comps[3] = {CMT_C_PARAMETERS, CMT_C_GRADIENTS, CMT_C_OPTIMIZER_STATE};
        sb_printf(b, "  expected for %lld parameters (%s Adam: %lld + %lld + %lld bytes each), measured at the peak:\n",
                  (long long)x->params, x->mixed ? "mixed-precision" : "fp32", (long long)per[0], (long long)per[1],
                  (long long)per[2]);
        for (int k = 0; k < 3; k++)
            sb_printf(b, "    %-16s expected %10s  measured %10s\n", cmt_comp_names[comps[k]],
                      cmt_bytes_str(x->params * per[k], t1), cmt_bytes_str(x->comp_peak[comps[k]], t2));
    }
}

void cmt_torch_json(struct sbuf *b, const struct cmt_torch *x, const struct cmt_set *s, size_t each_end)
{
    sb_puts(b, ",\"fragmentation\":[");
    for (size_t i = 0; i < x->nfrag; i++) {
        const struct cmt_frag *f = &x->frag[i];
        sb_printf(b,
                  "%s{\"pid\":%lld,\"device\":%lld,\"end\":%.6f,\"at_peak\":%.6f,\"peak_based\":%.6f,"
                  "\"end_reserved_bytes\":%lld,\"end_allocated_bytes\":%lld,\"end_requested_bytes\":%lld,"
                  "\"internal_bytes\":%lld,\"external_bytes\":%lld,\"internal\":%.6f,\"external\":%.6f,"
                  "\"peak_allocated_bytes\":%lld,\"reserved_at_peak_bytes\":%lld,\"peak_ns\":%lld,"
                  "\"peak_reserved_bytes\":%lld,\"largest_free_block\":%lld,\"largest_free_block_at_peak\":%lld,"
                  "\"segments\":%lld,\"segments_with_free\":%lld}",
                  i ? "," : "", (long long)s->t[f->trace]->pid, (long long)f->device,
                  ratio(f->end_reserved - f->end_alloc, f->end_reserved),
                  ratio(f->peak_reserved_then - f->peak_alloc, f->peak_reserved_then),
                  1 - ratio(f->peak_alloc, f->max_reserved), (long long)f->end_reserved, (long long)f->end_alloc,
                  (long long)f->end_requested, (long long)f->end_internal, (long long)f->end_external,
                  ratio(f->end_internal, f->end_reserved), ratio(f->end_external, f->end_reserved),
                  (long long)f->peak_alloc, (long long)f->peak_reserved_then, (long long)(f->peak_ts - s->t0),
                  (long long)f->max_reserved, (long long)f->end_largest_free, (long long)f->peak_largest_free,
                  (long long)f->nsegments, (long long)f->segments_with_free);
    }
    sb_puts(b, "],\"ooms\":[");
    for (size_t i = 0; i < x->nooms; i++) {
        if (!cmt_shown(i, x->nooms, each_end))
            continue;
        const struct cmt_oom *o = &x->ooms[i];
        sb_printf(b, "%s{\"source\":\"%s\",\"pid\":%lld,\"device\":%lld,\"ts_ns\":%lld,\"size\":%lld,\"free_bytes\":",
                  i ? "," : "", o->source ? "driver" : "allocator", (long long)s->t[o->trace]->pid,
                  (long long)o->device, (long long)(o->ts - s->t0), (long long)o->size);
        if (o->has_free)
            sb_printf(b, "%lld", (long long)o->free_bytes);
        else
            sb_puts(b, "null");
        sb_printf(b, ",\"reserved_bytes\":%lld,\"allocated_bytes\":%lld,\"reserved_unallocated_bytes\":%lld,"
                     "\"largest_free_block\":%lld,\"estimated\":%s,\"verdict\":\"%s\"",
                  (long long)o->reserved, (long long)o->allocated, (long long)(o->reserved - o->allocated),
                  (long long)o->largest_free, o->estimated ? "true" : "false",
                  o->fragmentation ? "fragmentation" : "capacity");
        if (o->source)
            sb_printf(b, ",\"seq\":%lld,\"released_bytes\":%lld,\"released_segments\":%lld,\"retry\":%s",
                      (long long)o->seq, (long long)o->released_bytes, (long long)o->released_segments,
                      o->retry < 0 ? "null" : o->retry ? "\"succeeded\"" : "\"failed\"");
        else
            sb_printf(b, ",\"entry_id\":%lld", (long long)o->seq);
        sb_puts(b, ",\"advice\":[");
        char adv[4][256];
        int na = cmt_oom_advice(o, adv);
        for (int k = 0; k < na; k++) {
            if (k)
                sb_putc(b, ',');
            sb_json_str(b, adv[k]);
        }
        sb_puts(b, "]}");
    }
    sb_puts(b, "],\"oom_verdicts\":[");
    int firstv = 1;
    for (size_t i = 0; i < x->nooms; i++) {
        const struct cmt_oom *o = &x->ooms[i];
        if (!o->has_mv || !cmt_shown(i, x->nooms, each_end))
            continue;
        const struct cmt_mverdict *v = &o->mv;
        static const char *const kinds[] = {"", "capacity", "fragmentation", "outside_allocator"};
        sb_printf(b, "%s{\"entry_id\":%lld,\"pid\":%lld,\"device\":%lld,\"verdict\":\"%s\",\"request_bytes\":%lld,"
                     "\"live_bytes\":%lld,\"reserved_bytes\":%lld,\"capacity_bytes\":%lld,\"outside_allocator_bytes\":",
                  firstv ? "" : ",", (long long)v->entry_id, (long long)s->t[o->trace]->pid, (long long)v->device,
                  kinds[v->kind], (long long)v->request_bytes, (long long)v->live_bytes, (long long)v->reserved_bytes,
                  (long long)v->capacity_bytes);
        firstv = 0;
        if (v->outside_bytes < 0)
            sb_puts(b, "null");
        else
            sb_printf(b, "%lld", (long long)v->outside_bytes);
        sb_printf(b, ",\"short_bytes\":%lld,\"model_reproduces\":%s,\"fits_with\":", (long long)v->short_bytes,
                  v->reproduced ? "true" : "false");
        if (v->fits_with[0]) {
            sb_puts(b, "{\"alloc_conf\":");
            sb_json_str(b, v->fits_with);
            sb_printf(b, ",\"reserved_bytes\":%lld,\"saves_bytes\":%lld}", (long long)v->fits_reserved_bytes,
                      (long long)v->saves_bytes);
        } else {
            sb_puts(b, "null");
        }
        char adv[4][256];
        int na = cmt_oom_advice(o, adv);
        sb_puts(b, ",\"advice\":");
        if (na)
            sb_json_str(b, adv[0]);
        else
            sb_puts(b, "null");
        sb_putc(b, '}');
    }
    sb_printf(b, "],\"components_source\":\"%s\",\"components\":[", x->has_alloc ? "allocator" : "driver");
    struct cmt_site *sorted = NULL;
    if (x->nsites && (sorted = malloc(x->nsites * sizeof *sorted))) {
        memcpy(sorted, x->sites, x->nsites * sizeof *sorted);
        qsort(sorted, x->nsites, sizeof *sorted, cmp_site);
    }
    int first = 1;
    for (int c = 0; c < CMT_NCOMP; c++) {
        if (!x->comp_peak[c] && !x->comp_end[c])
            continue;
        sb_printf(b, "%s{\"name\":\"%s\",\"bytes_at_peak\":%lld,\"bytes_at_end\":%lld,\"requested_bytes_at_end\":%lld,"
                     "\"share_at_peak\":%.6f,\"share_at_end\":%.6f,\"sites\":[",
                  first ? "" : ",", cmt_comp_names[c], (long long)x->comp_peak[c], (long long)x->comp_end[c],
                  (long long)x->comp_req_end[c], ratio(x->comp_peak[c], x->comp_whole_peak),
                  ratio(x->comp_end[c], x->comp_whole_end));
        first = 0;
        int k = 0;
        for (size_t i = 0; sorted && i < x->nsites && k < 10; i++) {
            if (sorted[i].comp != c || (!sorted[i].bytes_at_peak && !sorted[i].bytes_at_end))
                continue;
            sb_printf(b, "%s{\"site\":", k ? "," : "");
            sb_json_str(b, sorted[i].name);
            sb_printf(b, ",\"bytes_at_peak\":%lld,\"bytes_at_end\":%lld,\"requested_bytes_at_end\":%lld}",
                      (long long)sorted[i].bytes_at_peak, (long long)sorted[i].bytes_at_end,
                      (long long)sorted[i].requested_at_end);
            k++;
        }
        sb_puts(b, "]}");
    }
    free(sorted);
    sb_puts(b, "]");
    if (x->params > 0) {
        int64_t per[3] = {x->mixed ? 2 : 4, x->mixed ? 2 : 4, x->mixed ? 12 : 8};
        int comps[3] = {CMT_C_PARAMETERS, CMT_C_GRADIENTS, CMT_C_OPTIMIZER_STATE};
        sb_printf(b, ",\"expected\":{\"parameters_count\":%lld,\"precision\":\"%s\"", (long long)x->params,
                  x->mixed ? "mixed" : "fp32");
        for (int k = 0; k < 3; k++)
            sb_printf(b, ",\"%s\":{\"expected_bytes\":%lld,\"measured_bytes_at_peak\":%lld}", cmt_comp_names[comps[k]],
                      (long long)(x->params * per[k]), (long long)x->comp_peak[comps[k]]);
        sb_putc(b, '}');
    } else {
        sb_puts(b, ",\"expected\":null");
    }
}

