/*
 * render_stack.c: a symbolized stack for people (one frame a line, inlined frames and file:line under
 * their frame) and as JSON (the frames array and its parallel stack_frames), the way every verb shows one.
 *
 * Runs in the `cumemtrace` command; renders into an sbuf, reads nothing.
 */
#include "render.h"

#include <string.h>

/* See render.h. */
void cmt_src_suffix(struct sbuf *b, const struct cmt_src *s)
{
    if (!s->file)
        return;
    if (s->line > 0)
        sb_printf(b, " (%s:%d)", cmt_base_name(s->file), s->line);
    else
        sb_printf(b, " (%s)", cmt_base_name(s->file));
}

void cmt_stack_lines(struct sbuf *b, const struct cmt_stack *k, const char *indent, int max_frames)
{
    if (!k->nframes) {
        sb_printf(b, "%s%s\n", indent, k->key);
        return;
    }
    for (int i = 0; i < k->nframes; i++) {
        if (max_frames > 0 && i == max_frames) {
            sb_printf(b, "%s... %d more frames\n", indent, k->nframes - i);
            break;
        }
        const struct cmt_frame_src *fs = k->src && i < k->nsrc ? &k->src[i] : NULL;
        if (fs && fs->n > 0) {
            for (int d = 0; d < fs->n - 1; d++) { /* the functions inlined into this frame, innermost first */
                sb_printf(b, "%s%s", indent, fs->s[d].function ? fs->s[d].function : "??");
                cmt_src_suffix(b, &fs->s[d]);
                sb_puts(b, " [inlined]\n");
            }
            sb_printf(b, "%s%s", indent, k->frames[i]);
            cmt_src_suffix(b, &fs->s[fs->n - 1]);
            sb_putc(b, '\n');
        } else {
            sb_printf(b, "%s%s\n", indent, k->frames[i]);
        }
    }
}

static void json_src(struct sbuf *b, const struct cmt_src *s)
{
    sb_puts(b, "\"file\":");
    if (s && s->file)
        sb_json_str(b, s->file);
    else
        sb_puts(b, "null");
    if (s && s->line > 0)
        sb_printf(b, ",\"line\":%d", s->line);
    else
        sb_puts(b, ",\"line\":null");
}

void cmt_json_stack_frames(struct sbuf *b, const struct cmt_stack *k)
{
    sb_putc(b, '[');
    for (int i = 0; i < k->nframes; i++) {
        const struct cmt_frame_src *fs = k->src && i < k->nsrc ? &k->src[i] : NULL;
        sb_puts(b, i ? ",{" : "{");
        json_src(b, fs && fs->n ? &fs->s[fs->n - 1] : NULL);
        sb_puts(b, ",\"inlined\":[");
        for (int d = 0; fs && d < fs->n - 1; d++) {
            sb_puts(b, d ? ",{\"function\":" : "{\"function\":");
            if (fs->s[d].function)
                sb_json_str(b, fs->s[d].function);
            else
                sb_puts(b, "null");
            sb_putc(b, ',');
            json_src(b, &fs->s[d]);
            sb_putc(b, '}');
        }
        sb_puts(b, "]}");
    }
    sb_putc(b, ']');
}

void cmt_json_stack(struct sbuf *b, const struct cmt_stack *k)
{
    sb_putc(b, '[');
    for (int i = 0; i < k->nframes; i++) {
        if (i)
            sb_putc(b, ',');
        sb_json_str(b, k->frames[i]);
    }
    sb_putc(b, ']');
}

