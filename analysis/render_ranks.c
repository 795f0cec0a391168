/*
 * render_ranks.c: the per-rank view drawn (see ranks.h): the report's RANKS section for people and the
 * JSON keys "ranks", "rank_summary" and "rank_devices".
 *
 * Runs in the `cumemtrace` command. Renders the model ranks.c built into an sbuf; reads nothing.
 */
#include "ranks.h"

#include <stdlib.h>
#include <string.h>

static void rank_name(char *buf, size_t len, const struct cmt_rank *r, const struct cmt_set *s)
{
    if (r->has_rank)
        snprintf(buf, len, "%lld", (long long)r->rank);
    else
        snprintf(buf, len, "- (pid %lld)", (long long)s->t[r->trace]->pid);
}

/* The physical GPUs in a stable order for people: by host, then ordinal. */
static int cmp_shared(const void *a, const void *b, void *arg)
{
    const struct cmt_set *s = arg;
    const struct cmt_shared_dev *x = &s->shared[*(const size_t *)a], *y = &s->shared[*(const size_t *)b];
    int h = strcmp(x->host ? x->host : "", y->host ? y->host : "");
    if (h)
        return h;
    return x->device < y->device ? -1 : x->device > y->device;
}

static const struct cmt_dev *peak_dev(const struct cmt_rank *r, const struct cmt_set *s)
{
    return r->peak_dev >= 0 ? &s->t[r->trace]->devs[r->peak_dev] : NULL;
}

void cmt_ranks_text(struct sbuf *b, const struct cmt_ranks *k, const struct cmt_set *s)
{
    if (!k->any_rank)
        return;
    char t1[32], t2[32], t3[32], rn[48];
    sb_printf(b, "\nRANKS (%zu processes)\n", k->n);
    sb_printf(b, "  %-6s %-8s %-20s %10s %12s  %-8s %-40s %s\n", "rank", "pid", "host", "peak", "at", "device",
              "uuid", "out of memory / phase at the peak");
    for (size_t i = 0; i < k->n; i++) {
        const struct cmt_rank *r = &k->r[i];
        const struct cmt_trace *t = s->t[r->trace];
        const struct cmt_dev *dv = peak_dev(r, s);
        char dev[32];
        if (!dv || dv->device < 0)
            snprintf(dev, sizeof dev, "-");
        else
            snprintf(dev, sizeof dev, "%lld", (long long)dv->device);
        rank_name(rn, sizeof rn, r, s);
        sb_printf(b, "  %-6s %-8lld %-20s %10s %12s  %-8s %-40s ", rn, (long long)t->pid, t->host ? t->host : "?",
                  cmt_bytes_str(r->peak, t1), r->peak ? cmt_time_str(r->peak_ts - s->t0, t2) : "-", dev,
                  dv && dv->uuid ? dv->uuid : "-");
        if (r->nooms)
            sb_printf(b, "%lld, first at %s (%s)%s", (long long)r->nooms, cmt_time_str(r->first_oom_ts - s->t0, t3),
                      cmt_bytes_str(r->first_oom_size, t1), (int)i == k->first_oom ? "  <- first in the job" : "");
        else
            sb_puts(b, "-");
        for (size_t j = 0; j < r->at_peak.n; j++)
            sb_printf(b, "%s%s", j ? " > " : "  in ", r->at_peak.names[j]);
        sb_putc(b, '\n');
    }
    const struct cmt_rank *w = &k->r[k->worst], *l = &k->r[k->least];
    rank_name(rn, sizeof rn, w, s);
    sb_printf(b, "  worst rank %s: peak %s\n", rn, cmt_bytes_str(w->peak, t1));
    rank_name(rn, sizeof rn, l, s);
    sb_printf(b, "  imbalance: max - min %s (least: rank %s, %s)", cmt_bytes_str(w->peak - l->peak, t1), rn,
              cmt_bytes_str(l->peak, t2));
    if (l->peak > 0)
        sb_printf(b, ", max / min %.3f", (double)w->peak / (double)l->peak);
    sb_putc(b, '\n');
    if (k->first_oom >= 0) {
        const struct cmt_rank *o = &k->r[k->first_oom];
        rank_name(rn, sizeof rn, o, s);
        sb_printf(b, "  first out of memory: rank %s at %s (wall clock), asking for %s\n", rn,
                  cmt_time_str(o->first_oom_ts - s->t0, t1), cmt_bytes_str(o->first_oom_size, t2));
    } else {
        sb_puts(b, "  no rank ran out of memory\n");
    }

    sb_puts(b, "\nDEVICES ACROSS RANKS (one physical GPU: same host and uuid)\n");
    size_t *order = malloc((s->nshared ? s->nshared : 1) * sizeof *order);
    if (!order) {
        b->oom = 1;
        return;
    }
    for (size_t g = 0; g < s->nshared; g++)
        order[g] = g;
    qsort_r(order, s->nshared, sizeof *order, cmp_shared, (void *)s);
    for (size_t oi = 0; oi < s->nshared; oi++) {
        size_t g = order[oi];
        const struct cmt_shared_dev *sd = &s->shared[g];
        struct sbuf who = {0};
        int64_t sum = 0, total = 0;
        int nr = 0;
        const char *name = NULL;
        for (size_t i = 0; i < k->n; i++) {
            const struct cmt_trace *t = s->t[k->r[i].trace];
            for (size_t d = 0; d < t->ndevs; d++) {
                if (t->devs[d].shared != (int)g + 1)
                    continue;
                rank_name(rn, sizeof rn, &k->r[i], s);
                sb_printf(&who, "%s%s", nr++ ? ", " : "", rn);
                sum += t->devs[d].peak;
                if (t->devs[d].total_bytes)
                    total = t->devs[d].total_bytes;
                if (t->devs[d].name)
                    name = t->devs[d].name;
            }
        }
        sb_printf(b, "  %s device %lld %s (%s)%s: rank%s %s\n", sd->host ? sd->host : "?", (long long)sd->device,
                  sd->uuid ? sd->uuid : "(no uuid)", name ? name : "?", nr > 1 ? ", shared" : "", nr > 1 ? "s" : "",
                  who.p ? who.p : "");
        sb_printf(b, "    peak together %s at %s (the ranks' own peaks sum to %s)", cmt_bytes_str(sd->peak, t1),
                  cmt_time_str(sd->peak_ts - s->t0, t2), cmt_bytes_str(sum, t3));
        if (total)
            sb_printf(b, " of %s", cmt_bytes_str(total, t1));
        sb_putc(b, '\n');
        sb_free(&who);
    }
    free(order);
}

void cmt_ranks_json(struct sbuf *b, const struct cmt_ranks *k, const struct cmt_set *s)
{
    sb_puts(b, ",\"ranks\":[");
    for (size_t i = 0; i < k->n; i++) {
        const struct cmt_rank *r = &k->r[i];
        const struct cmt_trace *t = s->t[r->trace];
        const struct cmt_dev *dv = peak_dev(r, s);
        sb_puts(b, i ? ",{\"rank\":" : "{\"rank\":");
        if (r->has_rank)
            sb_printf(b, "%lld", (long long)r->rank);
        else
            sb_puts(b, "null");
#define OPT(key, v)                                                                                     \
    do {                                                                                                \
        if ((v) >= 0)                                                                                   \
            sb_printf(b, ",\"" key "\":%lld", (long long)(v));                                         \
        else                                                                                            \
            sb_puts(b, ",\"" key "\":null");                                                           \
    } while (0)
        OPT("local_rank", r->local_rank);
        OPT("world_size", r->world_size);
        sb_printf(b, ",\"pid\":%lld,\"host\":", (long long)t->pid);
        sb_json_str(b, t->host);
        sb_printf(b, ",\"peak_bytes\":%lld,\"peak_ns\":%lld,\"peak_unix_ns\":%lld", (long long)r->peak,
                  (long long)(r->peak ? r->peak_ts - s->t0 : 0), (long long)r->peak_unix_ns);
        sb_puts(b, ",\"device\":");
        if (dv && dv->device >= 0)
            sb_printf(b, "%lld", (long long)dv->device);
        else
            sb_puts(b, "null");
        sb_puts(b, ",\"device_uuid\":");
        sb_json_str(b, dv ? dv->uuid : NULL);
        sb_printf(b, ",\"failures\":%lld,\"ooms\":%lld", (long long)r->nfails, (long long)r->nooms);
        sb_puts(b, ",\"ranges_at_peak\":[");
        for (size_t j = 0; j < r->at_peak.n; j++) {
            if (j)
                sb_putc(b, ',');
            sb_json_str(b, r->at_peak.names[j]);
        }
        sb_putc(b, ']');
        if (r->nooms)
            sb_printf(b, ",\"first_oom_ns\":%lld,\"first_oom_unix_ns\":%lld,\"first_oom_bytes\":%lld}",
                      (long long)(r->first_oom_ts - s->t0), (long long)r->first_oom_unix_ns,
                      (long long)r->first_oom_size);
        else
            sb_puts(b, ",\"first_oom_ns\":null,\"first_oom_unix_ns\":null,\"first_oom_bytes\":null}");
    }
    sb_putc(b, ']');
    sb_puts(b, ",\"rank_summary\":");
    if (!k->n) {
        sb_puts(b, "null");
    } else {
        const struct cmt_rank *w = &k->r[k->worst], *l = &k->r[k->least];
        sb_puts(b, "{\"worst_rank\":");
        if (w->has_rank)
            sb_printf(b, "%lld", (long long)w->rank);
        else
            sb_puts(b, "null");
        sb_printf(b, ",\"worst_pid\":%lld,\"max_peak_bytes\":%lld,\"min_peak_bytes\":%lld,\"imbalance_bytes\":%lld",
                  (long long)s->t[w->trace]->pid, (long long)w->peak, (long long)l->peak, (long long)(w->peak - l->peak));
        if (l->peak > 0)
            sb_printf(b, ",\"imbalance_ratio\":%.6f", (double)w->peak / (double)l->peak);
        else
            sb_puts(b, ",\"imbalance_ratio\":null");
        sb_puts(b, ",\"first_oom_rank\":");
        if (k->first_oom >= 0 && k->r[k->first_oom].has_rank)
            sb_printf(b, "%lld", (long long)k->r[k->first_oom].rank);
        else
            sb_puts(b, "null");
        sb_puts(b, ",\"first_oom_pid\":");
        if (k->first_oom >= 0)
            sb_printf(b, "%lld}", (long long)s->t[k->r[k->first_oom].trace]->pid);
        else
            sb_puts(b, "null}");
    }
    sb_puts(b, ",\"rank_devices\":[");
    for (size_t g = 0; g < s->nshared; g++) {
        const struct cmt_shared_dev *sd = &s->shared[g];
        sb_puts(b, g ? ",{\"host\":" : "{\"host\":");
        sb_json_str(b, sd->host);
        sb_puts(b, ",\"uuid\":");
        sb_json_str(b, sd->uuid);
        sb_puts(b, ",\"device\":");
        if (sd->device >= 0)
            sb_printf(b, "%lld", (long long)sd->device);
        else
            sb_puts(b, "null");
        sb_printf(b, ",\"peak_bytes\":%lld,\"peak_ns\":%lld,\"ranks\":[", (long long)sd->peak,
                  (long long)(sd->peak ? sd->peak_ts - s->t0 : 0));
        int nr = 0;
        int64_t sum = 0;
        for (size_t i = 0; i < k->n; i++) {
            const struct cmt_trace *t = s->t[k->r[i].trace];
            for (size_t d = 0; d < t->ndevs; d++) {
                if (t->devs[d].shared != (int)g + 1)
                    continue;
                sb_printf(b, "%s{\"rank\":", nr++ ? "," : "");
                if (k->r[i].has_rank)
                    sb_printf(b, "%lld", (long long)k->r[i].rank);
                else
                    sb_puts(b, "null");
                sb_printf(b, ",\"pid\":%lld,\"peak_bytes\":%lld}", (long long)t->pid, (long long)t->devs[d].peak);
                sum += t->devs[d].peak;
            }
        }
        sb_printf(b, "],\"sum_of_rank_peaks_bytes\":%lld,\"shared\":%s}", (long long)sum, nr > 1 ? "true" : "false");
    }
    sb_putc(b, ']');
}

