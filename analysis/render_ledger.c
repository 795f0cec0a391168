/*
 * render_ledger.c: the ledger drawn (see ledger.h): the report's LEDGER section for people and the JSON key
 * "ledger", at the fullest sample, at the process's own peak and at every sample.
 *
 * Runs in the `cumemtrace` command. Renders the model ledger.c built into an sbuf; reads nothing.
 */
#include "ledger.h"

#include <string.h>

/* ---------------------------------------------------------------------------------------------------
 * Rendering */

#define LEDGER_TEXT_ROWS 12

static void text_point(struct sbuf *b, const struct cmt_ledger_dev *ld, const struct cmt_ledger_point *p)
{
    char t1[32], t2[32];
    sb_printf(b, "    %-34s %12s  (total %s - free)\n", "used on the device", cmt_bytes_str(p->used, t1),
              cmt_bytes_str(p->total, t2));
    for (int o = 0; o < CMT_NOWNERS; o++) {
        if (!p->owners[o] && o != CMT_OWN_USER && !(o == CMT_OWN_TORCH && p->has_torch))
            continue;
        sb_printf(b, "      %-32s %12s", cmt_owner_names[o], cmt_bytes_str(p->owners[o], t1));
        if (o == CMT_OWN_USER && p == &ld->p[ld->peak] && ld->nmods) {
            sb_puts(b, "  (");
            for (size_t k = 0; k < ld->nmods && k < 4; k++)
                sb_printf(b, "%s%s %s", k ? ", " : "", ld->user_modules[k].module,
                          cmt_bytes_str(ld->user_modules[k].bytes, t2));
            sb_puts(b, ld->nmods > 4 ? ", ...)" : ")");
        }
        if (o == CMT_OWN_TORCH && p->has_torch)
            sb_printf(b, "  (PyTorch's own count: %s reserved)", cmt_bytes_str(p->torch_reserved, t2));
        sb_putc(b, '\n');
    }
    if (p->pool_reserve)
        sb_printf(b, "      %-32s %12s\n", "stream-ordered pools' reserve", cmt_bytes_str(p->pool_reserve, t1));
    if (p->graph_pool)
        sb_printf(b, "      %-32s %12s\n", "graph memory pool", cmt_bytes_str(p->graph_pool, t1));
    sb_printf(b, "      %-32s %12s  %s\n", "CUDA context", cmt_bytes_str(p->context, t1),
              ld->has_samples ? "(used - the rest, where that is least)" : "(not known: no samples)");
    sb_printf(b, "      %-32s %12s  %s\n", "other processes", cmt_bytes_str(p->other, t1),
              p->has_nvml ? "(NVML)" : "(not known: NVML did not answer)");
    sb_printf(b, "      %-32s %12s\n", "unattributed", cmt_bytes_str(p->unattributed, t1));
}

void cmt_ledger_text(struct sbuf *b, const struct cmt_ledger *l, const struct cmt_set *s)
{
    char t1[32], t2[32], t3[32], t4[32], t5[32], t6[32];
    sb_puts(b, "\nLEDGER (device memory as the driver counts it, part by part)\n");
    if (!l->nd) {
        sb_puts(b, "  no samples: record with CUMEMTRACE_SAMPLE_MS=N (e.g. 100) to see what the device holds\n");
        return;
    }
    for (size_t i = 0; i < l->nd; i++) {
        const struct cmt_ledger_dev *ld = &l->d[i];
        const struct cmt_trace *t = s->t[ld->trace];
        const struct cmt_dev *dv = &t->devs[ld->dev];
        const struct cmt_ledger_point *pk = &ld->p[ld->peak];
        sb_printf(b, "  pid %lld, device %lld (%s): at the fullest sample, %s (seq %lld)\n", (long long)t->pid,
                  (long long)dv->device, dv->name ? dv->name : "?", cmt_time_str(pk->ts - s->t0, t1),
                  (long long)pk->seq);
        text_point(b, ld, pk);
        if (ld->has_own_peak) {
            const struct cmt_ledger_point *op = &ld->own_peak;
            int64_t ours = 0;
            for (int o = 0; o < CMT_NOWNERS; o++)
                ours += op->owners[o];
            sb_printf(b, "    at its own peak, %s (seq %lld): ours %s", cmt_time_str(op->ts - s->t0, t1),
                      (long long)op->seq, cmt_bytes_str(ours, t2));
            for (int o = 0, n = 0; o < CMT_NOWNERS; o++)
                if (op->owners[o])
                    sb_printf(b, "%s%s %s", n++ ? ", " : " (", cmt_owner_names[o], cmt_bytes_str(op->owners[o], t3));
            sb_printf(b, "%s; with reserves, context and others as last sampled the device held about %s\n",
                      ours ? ")" : "", cmt_bytes_str(op->used, t4));
        }
        sb_printf(b, "    over time (%zu samples%s)\n", ld->np, ld->np > LEDGER_TEXT_ROWS ? "; all of them in --json" : "");
        sb_printf(b, "      %12s %12s %12s %12s %12s %12s\n", "at", "used", "ours", "context", "others", "unattributed");
        for (size_t k = 0; k < ld->np; k++) {
            if (ld->np > LEDGER_TEXT_ROWS && k == LEDGER_TEXT_ROWS / 2) {
                sb_printf(b, "      ... %zu more\n", ld->np - LEDGER_TEXT_ROWS);
                k = ld->np - LEDGER_TEXT_ROWS / 2;
            }
            const struct cmt_ledger_point *p = &ld->p[k];
            sb_printf(b, "      %12s %12s %12s %12s %12s %12s\n", cmt_time_str(p->ts - s->t0, t1),
                      cmt_bytes_str(p->used, t2), cmt_bytes_str(cmt_ledger_known(p), t3), cmt_bytes_str(p->context, t4),
                      cmt_bytes_str(p->other, t5), cmt_bytes_str(p->unattributed, t6));
        }
    }
}

static void json_point(struct sbuf *b, const struct cmt_ledger_point *p, const struct cmt_set *s)
{
    sb_printf(b, "{\"seq\":%lld,\"ts_ns\":%lld,\"used_bytes\":%lld,\"total_bytes\":%lld", (long long)p->seq,
              (long long)(p->ts - s->t0), (long long)p->used, (long long)p->total);
    for (int o = 0; o < CMT_NOWNERS; o++)
        sb_printf(b, ",\"%s\":%lld", cmt_owner_keys[o], (long long)p->owners[o]);
    sb_printf(b, ",\"pool_reserve\":%lld,\"graph_pool\":%lld,\"context\":%lld,\"other_processes\":",
              (long long)p->pool_reserve, (long long)p->graph_pool, (long long)p->context);
    if (p->has_nvml)
        sb_printf(b, "%lld", (long long)p->other);
    else
        sb_puts(b, "null");
    sb_printf(b, ",\"unattributed\":%lld,\"torch_reserved\":", (long long)p->unattributed);
    if (p->has_torch)
        sb_printf(b, "%lld}", (long long)p->torch_reserved);
    else
        sb_puts(b, "null}");
}

void cmt_ledger_json(struct sbuf *b, const struct cmt_ledger *l, const struct cmt_set *s, size_t each_end)
{
    sb_puts(b, ",\"ledger\":[");
    for (size_t i = 0; i < l->nd; i++) {
        const struct cmt_ledger_dev *ld = &l->d[i];
        const struct cmt_trace *t = s->t[ld->trace];
        const struct cmt_dev *dv = &t->devs[ld->dev];
        sb_printf(b, "%s{\"pid\":%lld,\"device\":", i ? "," : "", (long long)t->pid);
        if (dv->device >= 0)
            sb_printf(b, "%lld", (long long)dv->device);
        else
            sb_puts(b, "null");
        sb_puts(b, ",\"uuid\":");
        sb_json_str(b, dv->uuid);
        sb_puts(b, ",\"context_bytes\":");
        if (ld->has_samples)
            sb_printf(b, "%lld", (long long)ld->context);
        else
            sb_puts(b, "null");
        sb_puts(b, ",\"at_peak\":");
        json_point(b, &ld->p[ld->peak], s);
        sb_puts(b, ",\"at_own_peak\":");
        if (ld->has_own_peak)
            json_point(b, &ld->own_peak, s);
        else
            sb_puts(b, "null");
        sb_puts(b, ",\"user_modules_at_peak\":[");
        for (size_t k = 0; k < ld->nmods; k++) {
            sb_puts(b, k ? ",{\"module\":" : "{\"module\":");
            sb_json_str(b, ld->user_modules[k].module);
            sb_printf(b, ",\"bytes\":%lld}", (long long)ld->user_modules[k].bytes);
        }
        sb_puts(b, "],\"samples\":[");
        for (size_t k = 0; k < ld->np; k++) {
            if (!cmt_shown(k, ld->np, each_end))
                continue;
            if (k)
                sb_putc(b, ',');
            json_point(b, &ld->p[k], s);
        }
        sb_puts(b, "]}");
    }
    sb_putc(b, ']');
}

