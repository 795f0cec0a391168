/*
 * cmd_flame.c: `cumemtrace flame [--at-peak | --total | --leaked] [--json] [-o FILE] TRACE...`
 *
 * Folded stacks, one line per stack, outermost frame first: `frame;frame;frame bytes`, the input of
 * flamegraph.pl, speedscope and inferno. --at-peak (default) weighs device memory live at the peak,
 * --total every byte ever allocated, --leaked what was live at exit. With several processes each stack
 * gets its process as the root frame.
 * Where the trace has source lines (schema version 4, DWARF), a frame is `function (file.c:12)` (the file's
 * base name, as the text report shows it) and each function inlined into it follows it as a frame of its own,
 * innermost last, suffixed `_[i]`: perf's and flamegraph.pl's mark of an inlined frame (flamegraph.pl colours
 * it apart and drops the suffix from its labels). The line stays parseable: frames split at ';', the count
 * after the last space.
 *
 * Runs in the `cumemtrace` command. Prints only once everything succeeded.
 */
#include "commands.h"

#include "render.h"

#include <getopt.h>
#include <stdlib.h>
#include <string.h>

static void usage(FILE *out)
{
    fprintf(out, "usage: cumemtrace flame [--at-peak | --total | --leaked] [--json] [-o FILE] TRACE|DIR...\n"
                 "  --at-peak   device memory live at the peak (default)\n"
                 "  --total     every byte of device memory allocated\n"
                 "  --leaked    device memory live at exit\n"
                 "  --json      [{\"stack\": [innermost first], \"stack_frames\": [{\"file\", \"line\", \"inlined\"}],\n"
                 "              \"bytes\": N, \"count\": N}] instead of folded lines\n");
}

static const char *base_name(const char *p)
{
    const char *s = strrchr(p, '/');
    return s ? s + 1 : p;
}

/* One folded frame: the name, " (file.c:12)" where the file is known, "_[i]" when inlined. */
static void fold_frame(struct sbuf *t, const char *name, const struct cmt_src *s, int inlined)
{
    sb_puts(t, name ? name : "??");
    if (s && s->file) {
        if (s->line > 0)
            sb_printf(t, " (%s:%d)", base_name(s->file), s->line);
        else
            sb_printf(t, " (%s)", base_name(s->file));
    }
    if (inlined)
        sb_puts(t, "_[i]");
}

struct line {
    char *text;
    int64_t bytes, count;
    const struct cmt_stack *stack;
};

static int cmp_line(const void *a, const void *b)
{
    return strcmp(((const struct line *)a)->text, ((const struct line *)b)->text);
}

int cmd_flame(int argc, char **argv)
{
    static const struct option opts[] = {{"at-peak", no_argument, NULL, 'p'}, {"total", no_argument, NULL, 't'},
                                         {"leaked", no_argument, NULL, 'l'},  {"json", no_argument, NULL, 'j'},
                                         {"output", required_argument, NULL, 'o'}, {"help", no_argument, NULL, 'h'},
                                         {NULL, 0, NULL, 0}};
    enum cmt_select sel = CMT_AT_PEAK;
    int json = 0, c, status = 1, nsel = 0;
    const char *out_path = NULL;
    char err[1024] = "";
    opterr = 0;
    while ((c = getopt_long(argc, argv, "+ho:", opts, NULL)) != -1) {
        switch (c) {
        case 'p': sel = CMT_AT_PEAK; nsel++; break;
        case 't': sel = CMT_TOTAL; nsel++; break;
        case 'l': sel = CMT_LEAKED; nsel++; break;
        case 'j': json = 1; break;
        case 'o': out_path = optarg; break;
        case 'h': usage(stdout); return 0;
        default:
            cmt_log("flame: unknown option or missing value '%s' (see 'cumemtrace flame --help')", argv[optind - 1]);
            return 2;
        }
    }
    if (nsel > 1) {
        cmt_log("flame: choose one of --at-peak, --total, --leaked");
        return 2;
    }
    if (optind >= argc) {
        usage(stderr);
        return 2;
    }
    struct cmt_set s;
    struct sbuf b = {0};
    struct line *lines = NULL;
    size_t nl = 0, cl = 0;
    if (cmt_load(&s, argv + optind, argc - optind, NULL, 0, err, sizeof err) != 0)
        goto out;
    /* Per trace, so that several processes keep their own root frame. */
    struct cmt_set one = s;
    for (size_t ti = 0; ti < s.n; ti++) {
        struct cmt_group *g;
        size_t n;
        one.t = &s.t[ti];
        one.n = 1;
        if (cmt_group_by_stack(&one, sel, &g, &n, err, sizeof err) != 0)
            goto out;
        char label[256];
        cmt_trace_label(s.t[ti], label, sizeof label);
        for (size_t i = 0; i < n; i++) {
            struct sbuf t = {0};
            if (s.n > 1) {
                sb_puts(&t, label);
                sb_putc(&t, ';');
            }
            const struct cmt_stack *k = g[i].stack;
            if (!k->nframes)
                sb_puts(&t, k->key);
            for (int f = k->nframes; f-- > 0;) {
                const struct cmt_frame_src *fs = k->src && f < k->nsrc && k->src[f].n > 0 ? &k->src[f] : NULL;
                fold_frame(&t, k->frames[f], fs ? &fs->s[fs->n - 1] : NULL, 0);
                for (int d = fs ? fs->n - 1 : 0; d-- > 0;) { /* inlined into it: outermost first, innermost last */
                    sb_putc(&t, ';');
                    fold_frame(&t, fs->s[d].function, &fs->s[d], 1);
                }
                if (f)
                    sb_putc(&t, ';');
            }
            struct line *ln = cmt_push(&lines, &nl, &cl, sizeof *ln);
            if (!ln || t.oom) {
                sb_free(&t);
                free(g);
                snprintf(err, sizeof err, "out of memory");
                goto out;
            }
            ln->text = t.p;
            ln->bytes = g[i].bytes;
            ln->count = g[i].count;
            ln->stack = k;
        }
        free(g);
    }
    /* the at-peak selection uses the overall peak, which `one` must not change */
    if (nl)
        qsort(lines, nl, sizeof *lines, cmp_line);
    if (json)
        sb_putc(&b, '[');
    size_t shown = 0;
    for (size_t i = 0; i < nl; i++) {
        if (lines[i].bytes <= 0)
            continue; /* nothing to draw (and flamegraph.pl rejects it) */
        if (json) {
            sb_printf(&b, "%s{\"bytes\":%lld,\"count\":%lld,\"stack\":", shown++ ? ",\n" : "", (long long)lines[i].bytes,
                      (long long)lines[i].count);
            cmt_json_stack(&b, lines[i].stack);
            sb_puts(&b, ",\"stack_frames\":");
            cmt_json_stack_frames(&b, lines[i].stack);
            sb_putc(&b, '}');
        } else {
            sb_printf(&b, "%s %lld\n", lines[i].text, (long long)lines[i].bytes);
        }
    }
    if (json)
        sb_puts(&b, "]\n");
    if (sb_write(&b, out_path, err, sizeof err) != 0)
        goto out;
    status = 0;
out:
    if (status)
        cmt_log("%s", err);
    for (size_t i = 0; i < nl; i++)
        free(lines[i].text);
    free(lines);
    sb_free(&b);
    cmt_set_close(&s);
    return status;
}
