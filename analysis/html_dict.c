/*
 * html_dict.c: the viewer page's dictionary (see html.h): every string and every stack (its frames, module,
 * component, and file:line with inlined frames where DWARF gave them) stored once and referred to by index,
 * which keeps a page of a million bands small; and the end of a trace on the page's time axis.
 *
 * Runs in the `cumemtrace` command; writes into an sbuf only.
 */
#include "html.h"

#include "rules.h"

#include <stdlib.h>
#include <string.h>

/* ---------------------------------------------------------------------------------------------------
 * Dictionary: strings and stacks, each once per page */

static int64_t str_ix(struct cmt_html_dict *d, const char *s)
{
    if (!s)
        s = "";
    int64_t *p = smap_get(&d->str, s);
    if (p)
        return *p;
    if (smap_put(&d->str, s, (int64_t)d->nstr) != 0)
        return -1;
    sb_puts(&d->strs, d->nstr ? "," : "");
    sb_json_str(&d->strs, s);
    return (int64_t)d->nstr++;
}

int64_t cmt_html_str(struct cmt_html_dict *d, const char *s)
{
    return str_ix(d, s);
}

/* A stack's source locations as its row's "l" (see html.h): per frame 0, or [file, line, then per inlined
 * function innermost first: function, file, line], strings as indexes (a file's name once per page); nothing
 * when no frame has one (traces before schema version 4, code without debug information). 0, or -1 when out of
 * memory. */
static int src_json(struct sbuf *row, struct cmt_html_dict *d, const struct cmt_frame_src *src, int n)
{
    int any = 0;
    for (int i = 0; src && i < n && !any; i++)
        any = src[i].n > 0;
    if (!any)
        return 0;
    sb_puts(row, ",\"l\":[");
    for (int i = 0; i < n; i++) {
        const struct cmt_frame_src *fs = &src[i];
        sb_puts(row, i ? "," : "");
        if (fs->n <= 0) {
            sb_putc(row, '0');
            continue;
        }
        const struct cmt_src *own = &fs->s[fs->n - 1];
        int64_t f = own->file ? str_ix(d, own->file) : -1;
        sb_printf(row, "[%lld,%d", (long long)f, own->line > 0 ? own->line : 0);
        for (int k = 0; k < fs->n - 1; k++) {
            const struct cmt_src *s = &fs->s[k];
            int64_t fn = str_ix(d, s->function ? s->function : "??"), ff = s->file ? str_ix(d, s->file) : -1;
            if (fn < 0 || (s->file && ff < 0))
                return -1;
            sb_printf(row, ",%lld,%lld,%d", (long long)fn, (long long)ff, s->line > 0 ? s->line : 0);
        }
        sb_putc(row, ']');
        if (own->file && f < 0)
            return -1;
    }
    sb_putc(row, ']');
    return row->oom ? -1 : 0;
}

static int64_t stack_add(struct cmt_html_dict *d, const char *key, char *const *frames, int n, const char *module,
                         int comp, const struct cmt_frame_src *src)
{
    int64_t *p = smap_get(&d->stk, key);
    if (p)
        return *p;
    struct sbuf row = {0};
    sb_puts(&row, "{\"f\":[");
    for (int i = 0; i < n; i++) {
        int64_t ix = str_ix(d, frames[i]);
        if (ix < 0) {
            sb_free(&row);
            return -1;
        }
        sb_printf(&row, "%s%lld", i ? "," : "", (long long)ix);
    }
    int64_t m = module ? str_ix(d, module) : -1;
    sb_printf(&row, "],\"m\":%lld,\"c\":%d", (long long)m, comp);
    if (src_json(&row, d, src, n) != 0) {
        sb_free(&row);
        return -1;
    }
    sb_putc(&row, '}');
    if (row.oom || smap_put(&d->stk, key, (int64_t)d->nstk) != 0) {
        sb_free(&row);
        return -1;
    }
    sb_puts(&d->stacks, d->nstk ? "," : "");
    sb_put(&d->stacks, row.p, row.len);
    sb_free(&row);
    return (int64_t)d->nstk++;
}

int64_t cmt_html_stack_add(struct cmt_html_dict *d, const char *key, char *const *frames, int n, const char *module,
                           int comp)
{
    return stack_add(d, key, frames, n, module, comp, NULL);
}

int64_t cmt_html_stack(struct cmt_html_dict *d, const struct cmt_stack *k)
{
    if (!k)
        return -1;
    int64_t *p = smap_get(&d->stk, k->key ? k->key : "");
    if (p)
        return *p;
    int comp = d->rules ? cmt_rules_match_stack(d->rules, k) : CMT_C_OTHER;
    /* a stack without frames shows its key ("[no stack]", "[unknown]") as its one frame */
    char *one[1] = {k->key};
    return stack_add(d, k->key ? k->key : "", k->nframes ? k->frames : one, k->nframes ? k->nframes : 1, k->module,
                     comp, k->nframes && k->src && k->nsrc >= k->nframes ? k->src : NULL);
}

void cmt_html_dict_json(struct sbuf *b, const struct cmt_html_dict *d)
{
    sb_puts(b, ",\"strings\":[");
    if (d->strs.p)
        sb_put(b, d->strs.p, d->strs.len);
    sb_puts(b, "],\"stacks\":[");
    if (d->stacks.p)
        sb_put(b, d->stacks.p, d->stacks.len);
    sb_puts(b, "],\"components\":[");
    for (int c = 0; c < CMT_NCOMP; c++) {
        sb_puts(b, c ? "," : "");
        sb_json_str(b, cmt_comp_names[c]);
    }
    sb_puts(b, "],\"apis\":[");
    for (int a = 0; a < CMT_NAPIS; a++) {
        sb_puts(b, a ? "," : "");
        sb_json_str(b, a ? cmt_api_name(a) : "unknown");
    }
    sb_puts(b, "],\"kinds\":[");
    for (int k = 0; k < CMT_NKINDS; k++) {
        sb_puts(b, k ? "," : "");
        sb_json_str(b, k ? cmt_kind_name(k) : "unknown");
    }
    sb_putc(b, ']');
}

void cmt_html_dict_free(struct cmt_html_dict *d)
{
    smap_free(&d->str);
    smap_free(&d->stk);
    sb_free(&d->strs);
    sb_free(&d->stacks);
}

int64_t cmt_html_trace_end(const struct cmt_trace *t)
{
    return t->has_end && t->end_ns > t->last_ts ? t->end_ns : t->last_ts;
}

