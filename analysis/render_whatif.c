/*
 * render_whatif.c: what-if runs drawn (see whatif.h): the table for people (`whatif`, report's WHAT IF
 * section) and the JSON (`whatif --json`'s "configs" and "gpu", report --json's "whatif" and "whatif_gpu").
 *
 * Runs in the `cumemtrace` command. Renders into an sbuf; computes nothing.
 */
#include "whatif.h"

#include "util.h"

#include <stdio.h>
#include <string.h>

static void cap_str(uint64_t c, char *buf)
{
    if (c == UINT64_MAX)
        strcpy(buf, "unlimited");
    else
        cmt_bytes_str((int64_t)c, buf);
}

/* The configurations as a JSON array (whatif --json's "configs", report --json's "whatif"). */
void cmt_whatif_json(struct sbuf *b, const struct cmt_whatif_outcome *out, int nconf)
{
    sb_putc(b, '[');
    for (int k = 0; k <= nconf; k++) {
        const struct cmt_whatif_outcome *o = &out[k];
        double frag = o->st.peak_reserved ? 1.0 - (double)o->st.allocated_at_peak_reserved / (double)o->st.peak_reserved
                                          : 0.0;
        sb_printf(b, "%s{\"alloc_conf\":", k ? "," : "");
        sb_json_str(b, o->label);
        sb_puts(b, ",\"capacity_bytes\":");
        if (o->conf.capacity == UINT64_MAX)
            sb_puts(b, "null");
        else
            sb_printf(b, "%llu", (unsigned long long)o->conf.capacity);
        sb_printf(b, ",\"peak_reserved_bytes\":%llu,\"peak_allocated_bytes\":%llu,\"fragmentation_at_peak\":%.6f,"
                     "\"segments_allocated\":%llu,\"oom\":%s,\"ooms\":%lld,\"first_oom\":",
                  (unsigned long long)o->st.peak_reserved, (unsigned long long)o->st.peak_allocated, frag,
                  (unsigned long long)o->st.segments_allocated, o->oom ? "true" : "false", (long long)o->oom);
        if (o->oom)
            sb_printf(b, "{\"entry_id\":%lld,\"size\":%lld,\"reserved_bytes\":%llu,\"allocated_bytes\":%llu}",
                      (long long)o->oom_entry, (long long)o->oom_size, (unsigned long long)o->oom_reserved,
                      (unsigned long long)o->oom_allocated);
        else
            sb_puts(b, "null");
        if (k == 0)
            sb_printf(b, ",\"check\":{\"entries\":%lld,\"reserved_mismatches\":%lld,\"first_mismatch_entry\":%lld},"
                         "\"check_blocks\":{\"segments\":%lld,\"segment_mismatches\":%lld,\"first_segment_mismatch_entry\":%lld,"
                         "\"addresses\":%lld,\"address_mismatches\":%lld,\"first_address_mismatch_entry\":%lld,"
                         "\"allocated_mismatches\":%lld,\"first_allocated_mismatch_entry\":%lld}",
                      (long long)o->checked, (long long)o->mismatches, (long long)o->first_mismatch,
                      (long long)o->segments_checked, (long long)o->segment_mismatches,
                      (long long)o->first_segment_mismatch, (long long)o->addresses_checked,
                      (long long)o->address_mismatches, (long long)o->first_address_mismatch,
                      (long long)o->allocated_mismatches, (long long)o->first_allocated_mismatch);
        sb_printf(b, ",\"private_pools\":%d", o->private_pools);
        if (k == 0) {
            sb_puts(b, ",\"recorded_garbage_collection_threshold\":");
            if (o->recorded_gc > 0)
                sb_printf(b, "{\"threshold\":%g,\"applied\":false,\"why\":", o->recorded_gc);
            else
                sb_puts(b, "null");
            if (o->recorded_gc > 0) {
                sb_json_str(b, CMT_WHATIF_GC_WHY);
                sb_putc(b, '}');
            }
        }
        sb_putc(b, '}');
    }
    sb_putc(b, ']');
}

void cmt_whatif_gpu_json(struct sbuf *b, const struct cmt_whatif_gpu *gpu)
{
    sb_puts(b, "{\"spec\":");
    sb_json_str(b, gpu->spec);
    sb_printf(b, ",\"total_bytes\":%llu,\"context_bytes\":%llu,\"outside_allocator_bytes\":%llu,\"capacity_bytes\":%llu}",
              (unsigned long long)gpu->total, (unsigned long long)gpu->context, (unsigned long long)gpu->outside,
              (unsigned long long)gpu->capacity);
}

/* The table for people (whatif, and report's WHAT IF section). */
void cmt_whatif_text(struct sbuf *b, const struct cmt_whatif_outcome *out, int nconf,
                     const struct cmt_whatif_gpu *gpu)
{
    char t1[32], t2[32], t3[32], t4[32];
    if (gpu->spec)
        sb_printf(b, "on %s: %s of memory, less %s for the CUDA context and %s held outside the caching "
                     "allocator: %s for it\n", gpu->spec, cmt_bytes_str((int64_t)gpu->total, t1),
                  cmt_bytes_str((int64_t)gpu->context, t2), cmt_bytes_str((int64_t)gpu->outside, t3),
                  cmt_bytes_str((int64_t)gpu->capacity, t4));
    sb_printf(b, "%-32s %12s %14s %14s %9s  %s\n", "configuration", "capacity", "peak reserved", "peak allocated",
              "frag", "out of memory");
    for (int k = 0; k <= nconf; k++) {
        const struct cmt_whatif_outcome *o = &out[k];
        double frag = o->st.peak_reserved ? 1.0 - (double)o->st.allocated_at_peak_reserved / (double)o->st.peak_reserved
                                          : 0.0;
        cap_str(o->conf.capacity, t1);
        sb_printf(b, "%-32s %12s %14s %14s %8.1f%%  ", o->label, t1,
                  cmt_bytes_str((int64_t)o->st.peak_reserved, t2), cmt_bytes_str((int64_t)o->st.peak_allocated, t3),
                  100 * frag);
        if (o->oom)
            sb_printf(b, "yes: %s requested at entry %lld (%lld requests fail)\n",
                      cmt_bytes_str(o->oom_size, t4), (long long)o->oom_entry, (long long)o->oom);
        else
            sb_puts(b, "no\n");
    }
    const struct cmt_whatif_outcome *o = &out[0];
    if (o->recorded_gc > 0)
        sb_printf(b, "the recorded garbage_collection_threshold:%g is not applied: %s\n", o->recorded_gc, CMT_WHATIF_GC_WHY);
    if (o->mismatches)
        sb_printf(b, "the model departs from the recorded run at entry %lld (%lld of %lld entries differ in "
                     "reserved bytes): read the what-if figures with that in mind\n",
                  (long long)o->first_mismatch, (long long)o->mismatches, (long long)o->checked);
    else
        sb_printf(b, "the model reproduces the recorded run: reserved bytes equal after all %lld requests\n",
                  (long long)o->checked);
    if (o->segment_mismatches || o->address_mismatches)
        sb_printf(b, "block by block it departs: %lld of %lld new segments differ in size (first at entry %lld), "
                     "%lld of %lld blocks in address (first at entry %lld)\n",
                  (long long)o->segment_mismatches, (long long)o->segments_checked, (long long)o->first_segment_mismatch,
                  (long long)o->address_mismatches, (long long)o->addresses_checked,
                  (long long)o->first_address_mismatch);
    else if (o->addresses_checked)
        sb_printf(b, "block by block too: all %lld new segments of the recorded size, all %lld blocks at the "
                     "recorded address\n", (long long)o->segments_checked, (long long)o->addresses_checked);
    if (o->allocated_mismatches)
        sb_printf(b, "allocated bytes differ from the history's after %lld of %lld requests and frees (first at entry "
                     "%lld)\n", (long long)o->allocated_mismatches, (long long)o->checked,
                  (long long)o->first_allocated_mismatch);
    if (o->private_pools)
        sb_printf(b, "%d private memory pool%s (MemPool, CUDA graphs) replayed apart from the default pools\n",
                  o->private_pools, o->private_pools > 1 ? "s" : "");
}

