/*
 * render_page.c: the report as the viewer's page (`report --html FILE`): the report's JSON, the allocator
 * level's text and the run's bands (html.c) in one self-contained HTML file.
 *
 * Runs in the `cumemtrace` command. Renders into an sbuf; the bands read the traces' stacks on demand.
 */
#include "render.h"

#include "html.h"

#include <string.h>

int cmt_render_page(struct sbuf *b, struct cmt_report *r, const struct cmt_rules *rules, char *err, size_t errlen)
{
    const struct cmt_torch *x = &r->torch;
    struct cmt_set *s = r->s;
    struct cmt_html_dict d = {.rules = rules};
    struct sbuf data = {0}, why = {0};
    char label[256] = "run";
    int rc = -1;
    if (s->n == 1)
        cmt_trace_label(s->t[0], label, sizeof label);
    sb_puts(&data, "{\"kind\":\"report\",\"title\":\"cumemtrace report\",\"generator\":\"cumemtrace " CMT_VERSION
                   "\",\"report\":");
    cmt_render_json_page(&data, r);
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

