/*
 * stacks.c: a trace's stacks symbolized for display (see analysis.h, struct cmt_stack): frames named
 * (demangled, GCC's clones folded, module+offset when unnamed), the CUDA libraries' innermost frames
 * folded away, file:line and inlined frames from schema version 4's frame_lines. Read on demand, one
 * small indexed query per stack, cached per trace.
 *
 * Runs in the `cumemtrace` command. Reads traces only; returns 0 or -1 with a one-line reason in err.
 */
#include "analysis.h"

#include <stdlib.h>
#include <string.h>

/* libstdc++'s demangler, callable from C. */
char *__cxa_demangle(const char *mangled, char *buf, size_t *len, int *status);

/* ---------------------------------------------------------------------------------------------------
 * Stacks */

/* Our interposer, the driver and the runtime are how every allocation arrives, never why. */
static int uninteresting_module(const char *path)
{
    const char *b = cmt_base_name(path);
    return b && (!strncmp(b, "libcumemtrace", 13) || !strncmp(b, "libcuda", 7));
}

static char *frame_name(const char *function, const char *module, int64_t ip, int64_t base, int has_mod)
{
    char buf[128];
    if (function && *function) {
        int status = -1;
        char *d = function[0] == '_' && function[1] == 'Z' ? __cxa_demangle(function, NULL, NULL, &status)
                                                           : NULL;
        if (d && status == 0) {
            /* flame graphs' folded format separates frames with ';' and ends at a newline */
            for (char *p = d; *p; p++)
                if (*p == ';' || *p == '\n' || *p == '\r')
                    *p = *p == ';' ? ':' : ' ';
            return d;
        }
        free(d);
        /* GCC's local clones (forward_layer.isra.0, f.constprop.2, f.part.1, f.cold) are the function
         * a person wrote; the same function in another build may not be cloned at all. */
        static const char *const clones[] = {".isra.", ".constprop.", ".part.", ".cold", ".lto_priv.", NULL};
        size_t cut = strlen(function);
        for (int i = 0; clones[i]; i++) {
            const char *c = strstr(function, clones[i]);
            if (c && c > function && (size_t)(c - function) < cut)
                cut = (size_t)(c - function);
        }
        char *name = strndup(function, cut);
        for (char *p = name; p && *p; p++) /* the folded format's separators */
            if (*p == ';' || *p == '\n' || *p == '\r')
                *p = *p == ';' ? ':' : ' ';
        return name;
    }
    if (has_mod)
        snprintf(buf, sizeof buf, "%s+0x%llx", cmt_base_name(module), (unsigned long long)ip - (unsigned long long)base);
    else
        snprintf(buf, sizeof buf, "0x%llx", (unsigned long long)ip);
    return strdup(buf);
}

static void stack_src_free(struct cmt_stack *k)
{
    if (!k->src)
        return;
    for (int j = 0; j < k->nsrc; j++) {
        for (int d = 0; d < k->src[j].n; d++) {
            free(k->src[j].s[d].function);
            free(k->src[j].s[d].file);
        }
        free(k->src[j].s);
    }
    free(k->src);
    k->src = NULL;
}

/* Fills k->src[i] for frame i (frame_id fid) from frame_lines. Damaged rows (wrong types) are skipped:
 * lines are an aid, never a reason to refuse a trace. */
static int frame_src_load(struct cmt_trace *t, struct cmt_stack *k, int i, int64_t fid)
{
    if (!t->lines_q)
        return 0;
    struct cmt_frame_src *fs = &k->src[i];
    size_t cap = 0, n = 0;
    int rc;
    sqlite3_reset(t->lines_q);
    sqlite3_bind_int64(t->lines_q, 1, fid);
    while ((rc = sqlite3_step(t->lines_q)) == SQLITE_ROW && n < 64) {
        int ft = sqlite3_column_type(t->lines_q, 0), lt = sqlite3_column_type(t->lines_q, 2);
        if ((ft != SQLITE_TEXT && ft != SQLITE_NULL) || (lt != SQLITE_INTEGER && lt != SQLITE_NULL))
            continue;
        struct cmt_src *slot = cmt_push(&fs->s, &n, &cap, sizeof *slot);
        if (!slot)
            return -1;
        memset(slot, 0, sizeof *slot);
        fs->n = (int)n;
        const char *fn = (const char *)sqlite3_column_text(t->lines_q, 0);
        if (fn && *fn) {
            char *raw = frame_name(fn, NULL, 0, 0, 0);
            slot->function = cmt_text_dup(raw);
            free(raw);
        }
        if (sqlite3_column_type(t->lines_q, 1) == SQLITE_TEXT)
            slot->file = cmt_text_dup((const char *)sqlite3_column_text(t->lines_q, 1));
        int64_t line = sqlite3_column_int64(t->lines_q, 2);
        slot->line = line > 0 && line < INT32_MAX ? (int)line : 0;
    }
    sqlite3_reset(t->lines_q);
    return 0;
}

static struct cmt_stack *stack_load(struct cmt_trace *t, int32_t stack_id, char *err, size_t errlen)
{
    struct cmt_stack *k = calloc(1, sizeof *k);
    struct sbuf key = {0};
    size_t cap = 0, n = 0;
    int rc = SQLITE_DONE, folding = 1;
    if (!k)
        goto oom;
    if (stack_id != CMT_NO_STACK) {
        sqlite3_reset(t->stack_q);
        sqlite3_bind_int64(t->stack_q, 1, stack_id);
        while ((rc = sqlite3_step(t->stack_q)) == SQLITE_ROW) {
            if (cmt_row_check(t->path, t->stack_q, "TTiI", "stack", (long long)stack_id, err, errlen) != 0) {
                sqlite3_reset(t->stack_q);
                goto error;
            }
            const char *fn = (const char *)sqlite3_column_text(t->stack_q, 0);
            const char *mod = (const char *)sqlite3_column_text(t->stack_q, 1);
            int has_mod = sqlite3_column_type(t->stack_q, 1) != SQLITE_NULL;
            if (folding && has_mod && uninteresting_module(mod))
                continue;
            if (folding)
                k->module = cmt_text_dup(has_mod ? cmt_base_name(mod) : "[unknown]");
            folding = 0;
            char **slot = cmt_push(&k->frames, &n, &cap, sizeof *slot);
            if (!slot)
                goto oom;
            k->nframes = (int)n;
            char *raw = frame_name(fn, mod, sqlite3_column_int64(t->stack_q, 2), sqlite3_column_int64(t->stack_q, 3),
                                   has_mod);
            *slot = cmt_text_dup(raw);
            free(raw);
            if (!*slot)
                goto oom;
            if (t->lines_q) {
                struct cmt_frame_src *ns = realloc(k->src, n * sizeof *ns);
                if (!ns)
                    goto oom;
                k->src = ns;
                k->src[n - 1] = (struct cmt_frame_src){0, NULL};
                k->nsrc = (int)n;
                if (frame_src_load(t, k, (int)n - 1, sqlite3_column_int64(t->stack_q, 4)) != 0)
                    goto oom;
            }
            if (n > 1)
                sb_putc(&key, '\n');
            sb_puts(&key, *slot);
        }
        sqlite3_reset(t->stack_q);
        if (rc != SQLITE_DONE) {
            cmt_db_read_fail(t, rc, err, errlen);
            goto error;
        }
    }
    if (!k->module)
        k->module = strdup(stack_id == CMT_NO_STACK ? "[no stack]" : "[unknown]");
    if (n == 0)
        sb_puts(&key, stack_id == CMT_NO_STACK ? "[no stack]" : "[no frames]");
    if (key.oom || !key.p || !k->module)
        goto oom;
    k->key = key.p;
    return k;
oom:
    cmt_fail(err, errlen, "out of memory");
error:
    if (k) {
        stack_src_free(k);
        for (int j = 0; j < k->nframes; j++)
            free(k->frames[j]);
        free(k->frames);
        free(k->module);
        free(k);
    }
    sb_free(&key);
    return NULL;
}

int cmt_stack_get(struct cmt_trace *t, int32_t stack_id, const struct cmt_stack **out, char *err, size_t errlen)
{
    int64_t *ix = imap_get(&t->stack_ix, (uint64_t)(int64_t)stack_id);
    if (ix) {
        *out = t->stacks[*ix];
        return 0;
    }
    struct cmt_stack *k = stack_load(t, stack_id, err, errlen);
    if (!k)
        return -1;
    struct cmt_stack **slot = cmt_push(&t->stacks, &t->nstacks, &t->stackcap, sizeof *slot);
    if (!slot || imap_put(&t->stack_ix, (uint64_t)(int64_t)stack_id, (int64_t)t->nstacks - 1) != 0) {
        if (slot)
            t->nstacks--;
        free(k->key);
        stack_src_free(k);
        for (int j = 0; j < k->nframes; j++)
            free(k->frames[j]);
        free(k->frames);
        free(k->module);
        free(k);
        return cmt_fail(err, errlen, "out of memory");
    }
    *slot = k;
    *out = k;
    return 0;
}


void cmt_stacks_free(struct cmt_trace *t)
{
    for (size_t i = 0; i < t->nstacks; i++) {
        struct cmt_stack *k = t->stacks[i];
        stack_src_free(k);
        for (int j = 0; j < k->nframes; j++)
            free(k->frames[j]);
        free(k->frames);
        free(k->module);
        free(k->key);
        free(k);
    }
    free(t->stacks);
    t->stacks = NULL;
    t->nstacks = t->stackcap = 0;
}
