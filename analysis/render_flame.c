/*
 * render_flame.c: stacks as folded lines (`flame`), one line per stack, outermost frame first:
 * `frame;frame;frame bytes`, the input of flamegraph.pl, speedscope and inferno; or as JSON. With several
 * processes each stack gets its process as the root frame.
 * Where the trace has source lines (schema version 4, DWARF), a frame is `function (file.c:12)` (the file's
 * base name, as the text report shows it) and each function inlined into it follows it as a frame of its own,
 * innermost last, suffixed `_[i]`: perf's and flamegraph.pl's mark of an inlined frame (flamegraph.pl colours
 * it apart and drops the suffix from its labels). The line stays parseable: frames split at ';', the count
 * after the last space.
 *
 * Runs in the `cumemtrace` command. Renders groups (groups.c) into an sbuf; reads stacks already loaded.
 */
#include "render.h"

#include <stdlib.h>
#include <string.h>

/* One folded frame: the name, " (file.c:12)" where the file is known, "_[i]" when inlined. */
static void fold_frame(struct sbuf *t, const char *name, const struct cmt_src *s, int inlined)
{
    sb_puts(t, name ? name : "??");
    if (s)
        cmt_src_suffix(t, s);
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

int cmt_flame_render(struct sbuf *b, const struct cmt_set *s, struct cmt_group *const *g, const size_t *ng, int json)
{
    struct line *lines = NULL;
    size_t nl = 0, cl = 0;
    int rc = -1;
    for (size_t ti = 0; ti < s->n; ti++) {
        char label[256];
        cmt_trace_label(s->t[ti], label, sizeof label);
        for (size_t i = 0; i < ng[ti]; i++) {
            struct sbuf t = {0};
            if (s->n > 1) {
                sb_puts(&t, label);
                sb_putc(&t, ';');
            }
            const struct cmt_stack *k = g[ti][i].stack;
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
                goto out;
            }
            ln->text = t.p;
            ln->bytes = g[ti][i].bytes;
            ln->count = g[ti][i].count;
            ln->stack = k;
        }
    }
    if (nl)
        qsort(lines, nl, sizeof *lines, cmp_line);
    if (json)
        sb_putc(b, '[');
    size_t shown = 0;
    for (size_t i = 0; i < nl; i++) {
        if (lines[i].bytes <= 0)
            continue; /* nothing to draw (and flamegraph.pl rejects it) */
        if (json) {
            sb_printf(b, "%s{\"bytes\":%lld,\"count\":%lld,\"stack\":", shown++ ? ",\n" : "", (long long)lines[i].bytes,
                      (long long)lines[i].count);
            cmt_json_stack(b, lines[i].stack);
            sb_puts(b, ",\"stack_frames\":");
            cmt_json_stack_frames(b, lines[i].stack);
            sb_putc(b, '}');
        } else {
            sb_printf(b, "%s %lld\n", lines[i].text, (long long)lines[i].bytes);
        }
    }
    if (json)
        sb_puts(b, "]\n");
    rc = b->oom ? -1 : 0;
out:
    for (size_t i = 0; i < nl; i++)
        free(lines[i].text);
    free(lines);
    return rc;
}
