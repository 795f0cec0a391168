/*
 * cmd_timeline.c: `cumemtrace timeline [--by kind|module] [--points N] -o FILE TRACE...`
 *
 * Device memory over time per device, stacked by kind or by module, with the peak and the failures
 * marked. The format follows FILE's extension (or --format): .svg standalone, .html self-contained,
 * .csv one row per point, .json the Chrome trace event format (counter tracks and instant events) that
 * Perfetto and chrome://tracing open. Points are the highest and the last state of each of N time buckets,
 * so the peak is always drawn exactly.
 *
 * Runs in the `cumemtrace` command. Writes FILE only once everything succeeded.
 */
#include "commands.h"

#include "chart.h"
#include "report.h"

#include <getopt.h>
#include <stdlib.h>
#include <string.h>

static void usage(FILE *out)
{
    fprintf(out, "usage: cumemtrace timeline [--by kind|module] [--points N] [--format F] -o FILE TRACE|DIR...\n"
                 "  -o FILE       output; the format follows the extension: .svg .html .csv .json (Chrome trace)\n"
                 "                ('-' writes to standard output, CSV unless --format says otherwise)\n"
                 "  --format F    svg, html, csv or json, whatever the extension\n"
                 "  --by B        stack the layers by kind (default) or by module\n"
                 "  --points N    time buckets (default 2000)\n");
}

static int write_csv(struct sbuf *b, const struct cmt_set *s)
{
    size_t *ix = calloc(s->npanels + 1, sizeof *ix);
    if (!ix)
        return -1;
    size_t k = cmt_panel_order(s, ix);
    sb_puts(b, "time_ns,pid,device");
    for (int l = 0; l < s->nlayers; l++)
        sb_printf(b, ",%s_bytes", s->layer_names[l]);
    sb_puts(b, ",device_memory_bytes\n");
    for (size_t i = 0; i < k; i++) {
        const struct cmt_panel *p = &s->panels[ix[i]];
        struct cmt_point *pt;
        size_t n;
        if (cmt_panel_points(s, p, &pt, &n) != 0) {
            free(ix);
            return -1;
        }
        for (size_t j = 0; j < n; j++) {
            int64_t tot = 0;
            if (p->trace < 0) {
                sb_printf(b, "%lld,all,all", (long long)(pt[j].ts - s->t0));
                for (int l = 0; l < s->nlayers; l++)
                    sb_puts(b, ",");
                tot = pt[j].v[0];
            } else {
                const struct cmt_dev *d = &s->t[p->trace]->devs[p->dev];
                sb_printf(b, "%lld,%lld,", (long long)(pt[j].ts - s->t0), (long long)s->t[p->trace]->pid);
                if (d->device >= 0)
                    sb_printf(b, "%lld", (long long)d->device);
                for (int l = 0; l < s->nlayers; l++) {
                    sb_printf(b, ",%lld", (long long)pt[j].v[l]);
                    if (s->layer_physical[l])
                        tot += pt[j].v[l];
                }
            }
            sb_printf(b, ",%lld\n", (long long)tot);
        }
        free(pt);
    }
    free(ix);
    return 0;
}

/* Chrome trace event format: times in microseconds. One process per trace, one counter track per device. */
static int write_chrome(struct sbuf *b, const struct cmt_set *s)
{
    char t1[32], name[400];
    sb_puts(b, "{\"displayTimeUnit\":\"ms\",\"otherData\":{\"generator\":\"cumemtrace " CMT_VERSION "\"},\"traceEvents\":[");
    int first = 1;
#define SEP() (first ? (first = 0, "") : ",\n")
    for (size_t ti = 0; ti < s->n; ti++) {
        char label[256];
        cmt_trace_label(s->t[ti], label, sizeof label);
        sb_printf(b, "%s{\"ph\":\"M\",\"name\":\"process_name\",\"pid\":%lld,\"tid\":0,\"args\":{\"name\":", SEP(),
                  (long long)s->t[ti]->pid);
        sb_json_str(b, label);
        sb_puts(b, "}}");
    }
    for (size_t i = 0; i < s->npanels; i++) {
        const struct cmt_panel *p = &s->panels[i];
        if (p->trace < 0)
            continue;
        const struct cmt_trace *t = s->t[p->trace];
        const struct cmt_dev *d = &t->devs[p->dev];
        struct cmt_point *pt;
        size_t n;
        if (cmt_panel_points(s, p, &pt, &n) != 0)
            return -1;
        if (d->device >= 0)
            snprintf(name, sizeof name, "GPU %lld memory", (long long)d->device);
        else
            snprintf(name, sizeof name, "GPU ? memory");
        for (size_t j = 0; j < n; j++) {
            sb_printf(b, "%s{\"ph\":\"C\",\"name\":", SEP());
            sb_json_str(b, name);
            sb_printf(b, ",\"pid\":%lld,\"tid\":0,\"ts\":%.3f,\"args\":{", (long long)t->pid,
                      (double)(pt[j].ts - s->t0) / 1e3);
            int f = 1;
            for (int l = 0; l < s->nlayers; l++) {
                if (!s->layer_physical[l])
                    continue;
                sb_printf(b, "%s", f ? "" : ",");
                sb_json_str(b, s->layer_names[l]);
                sb_printf(b, ":%lld", (long long)pt[j].v[l]);
                f = 0;
            }
            sb_puts(b, "}}");
        }
        /* managed and host-pinned memory: their own track, never stacked onto device memory */
        if (s->opt.by == CMT_BY_KIND) {
            int any = 0;
            for (size_t j = 0; j < n; j++)
                any |= pt[j].v[3] || pt[j].v[4];
            for (size_t j = 0; any && j < n; j++)
                sb_printf(b, "%s{\"ph\":\"C\",\"name\":\"%s other memory\",\"pid\":%lld,\"tid\":0,\"ts\":%.3f,"
                             "\"args\":{\"managed\":%lld,\"host_pinned\":%lld}}",
                          SEP(), name, (long long)t->pid, (double)(pt[j].ts - s->t0) / 1e3, (long long)pt[j].v[3],
                          (long long)pt[j].v[4]);
        }
        free(pt);
        if (d->peak > 0)
            sb_printf(b, "%s{\"ph\":\"i\",\"s\":\"p\",\"name\":\"peak %s\",\"pid\":%lld,\"tid\":0,\"ts\":%.3f,"
                         "\"args\":{\"bytes\":%lld,\"seq\":%lld,\"device\":%lld}}",
                      SEP(), cmt_bytes_str(d->peak, t1), (long long)t->pid, (double)(d->peak_ts - s->t0) / 1e3,
                      (long long)d->peak, (long long)d->peak_seq, (long long)d->device);
    }
    for (size_t i = 0; i < s->nfails; i++) {
        const struct cmt_failure *f = &s->fails[i];
        const char *rn = cmt_result_name(f->result);
        sb_printf(b, "%s{\"ph\":\"i\",\"s\":\"p\",\"name\":\"failed %s %s\",\"pid\":%lld,\"tid\":0,\"ts\":%.3f,"
                     "\"args\":{\"size\":%lld,\"result\":%lld,\"error\":\"%s\",\"seq\":%lld,\"device\":%lld}}",
                  SEP(), cmt_api_name(f->api), cmt_bytes_str(f->size, t1), (long long)s->t[f->trace]->pid,
                  (double)(f->ts - s->t0) / 1e3, (long long)f->size, (long long)f->result, rn ? rn : "error",
                  (long long)f->seq, (long long)f->device);
    }
#undef SEP
    sb_puts(b, "\n]}\n");
    return 0;
}

static int write_html(struct sbuf *b, const struct cmt_set *s)
{
    sb_printf(b, "<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'><title>cumemtrace timeline</title>"
                 "<style>%s</style></head><body>\n<h1>Device memory over time</h1>\n<p class='dim'>",
              cmt_html_style);
    for (size_t i = 0; i < s->n; i++) {
        sb_xml(b, s->t[i]->path);
        sb_puts(b, i + 1 < s->n ? ", " : "");
    }
    sb_puts(b, "</p>\n");
    if (cmt_svg_timeline(b, s) != 0)
        return -1;
    sb_puts(b, "</body></html>\n");
    return 0;
}

static const char *ext_format(const char *path)
{
    const char *dot = path ? strrchr(path, '.') : NULL;
    if (!dot)
        return NULL;
    if (!strcmp(dot, ".svg"))
        return "svg";
    if (!strcmp(dot, ".html") || !strcmp(dot, ".htm"))
        return "html";
    if (!strcmp(dot, ".csv"))
        return "csv";
    if (!strcmp(dot, ".json"))
        return "json";
    return NULL;
}

int cmd_timeline(int argc, char **argv)
{
    static const struct option opts[] = {{"by", required_argument, NULL, 'b'},
                                         {"points", required_argument, NULL, 'p'},
                                         {"format", required_argument, NULL, 'f'},
                                         {"output", required_argument, NULL, 'o'},
                                         {"help", no_argument, NULL, 'h'},
                                         {NULL, 0, NULL, 0}};
    struct cmt_options o = {.timeline = 1, .points = 2000, .by = CMT_BY_KIND};
    const char *out_path = NULL, *format = NULL;
    char err[1024] = "";
    int c, status = 1;
    opterr = 0;
    while ((c = getopt_long(argc, argv, "+ho:", opts, NULL)) != -1) {
        switch (c) {
        case 'b':
            if (!strcmp(optarg, "kind"))
                o.by = CMT_BY_KIND;
            else if (!strcmp(optarg, "module"))
                o.by = CMT_BY_MODULE;
            else {
                cmt_log("timeline: --by takes kind or module");
                return 2;
            }
            break;
        case 'p':
            o.points = atoi(optarg);
            if (o.points < 2 || o.points > 1000000) {
                cmt_log("timeline: --points takes a number from 2 to 1000000");
                return 2;
            }
            break;
        case 'f': format = optarg; break;
        case 'o': out_path = optarg; break;
        case 'h': usage(stdout); return 0;
        default:
            cmt_log("timeline: unknown option or missing value '%s' (see 'cumemtrace timeline --help')", argv[optind - 1]);
            return 2;
        }
    }
    if (!out_path) {
        cmt_log("timeline: -o FILE is required (.svg, .html, .csv or .json)");
        return 2;
    }
    if (!format)
        format = ext_format(out_path);
    if (!format && !strcmp(out_path, "-"))
        format = "csv";
    if (!format || (strcmp(format, "svg") && strcmp(format, "html") && strcmp(format, "csv") && strcmp(format, "json"))) {
        cmt_log("timeline: cannot tell the format of '%s': use .svg, .html, .csv or .json, or --format", out_path);
        return 2;
    }
    if (optind >= argc) {
        usage(stderr);
        return 2;
    }
    struct cmt_set s;
    struct sbuf b = {0};
    if (cmt_load(&s, argv + optind, argc - optind, &o, err, sizeof err) != 0)
        goto out;
    int rc;
    if (!strcmp(format, "csv"))
        rc = write_csv(&b, &s);
    else if (!strcmp(format, "json"))
        rc = write_chrome(&b, &s);
    else if (!strcmp(format, "html"))
        rc = write_html(&b, &s);
    else
        rc = cmt_svg_timeline(&b, &s);
    if (rc != 0) {
        snprintf(err, sizeof err, "out of memory while writing the timeline");
        goto out;
    }
    if (sb_write(&b, out_path, err, sizeof err) != 0)
        goto out;
    status = 0;
out:
    if (status)
        cmt_log("%s", err);
    sb_free(&b);
    cmt_set_close(&s);
    return status;
}
