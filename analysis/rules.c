/*
 * rules.c: component rules (see rules.h): loading a rules file (the shipped one beside us, or the user's),
 * and matching Python and native frames against it.
 *
 * Runs in the `cumemtrace` command; reads the rules file only. Returns 0 or -1 with a reason in err.
 */
#include "rules.h"

#include <errno.h>
#include <fnmatch.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char *const cmt_comp_names[CMT_NCOMP] = {"parameters", "gradients",   "optimizer_state", "activations",
                                               "temporaries", "kv_cache",  "workspace",       "nccl",
                                               "cuda_graphs", "inputs",    "other"};
/* ---------------------------------------------------------------------------------------------------
 * Rules */

static int comp_of_name(const char *s)
{
    for (int i = 0; i < CMT_NCOMP; i++)
        if (!strcmp(cmt_comp_names[i], s))
            return i;
    return -1;
}

int cmt_rules_load(struct cmt_rules *rs, const char *path, char *err, size_t errlen)
{
    char shipped[PATH_MAX], line[4096];
    memset(rs, 0, sizeof *rs);
    if (!path) {
        if (cmt_torch_find("rules.txt", shipped, sizeof shipped) != 0)
            return cmt_fail(err, errlen, "the shipped rules file (rules.txt) was not found (set CUMEMTRACE_TORCH_DIR"
                                     " or give --rules FILE)");
        path = shipped;
    }
    FILE *f = fopen(path, "r");
    if (!f)
        return cmt_fail(err, errlen, "%s: %s", path, strerror(errno));
    int lineno = 0, rc = 0;
    while (fgets(line, sizeof line, f)) {
        lineno++;
        char *hash = strchr(line, '#');
        if (hash)
            *hash = 0;
        char *save = NULL, *comp = strtok_r(line, " \t\r\n", &save);
        if (!comp)
            continue;
        char *where = strtok_r(NULL, " \t\r\n", &save), *glob = strtok_r(NULL, " \t\r\n", &save);
        int c = comp_of_name(comp);
        char w = 0;
        if (where) {
            if (!strcmp(where, "python")) w = 'p';
            else if (!strcmp(where, "line")) w = 'l';
            else if (!strcmp(where, "native")) w = 'n';
            else if (!strcmp(where, "module")) w = 'm';
            else if (!strcmp(where, "any")) w = 'a';
        }
        if (c < 0 || !w || !glob || strtok_r(NULL, " \t\r\n", &save)) {
            rc = cmt_fail(err, errlen, "%s:%d: expected 'COMPONENT python|line|native|module|any GLOB' with a component"
                                   " among parameters, gradients, optimizer_state, activations, temporaries,"
                                   " kv_cache, workspace, nccl, cuda_graphs, inputs, other", path, lineno);
            break;
        }
        struct cmt_rule *r = cmt_push(&rs->r, &rs->n, &rs->cap, sizeof *r);
        if (!r || !(r->glob = strdup(glob))) {
            rc = cmt_fail(err, errlen, "out of memory");
            break;
        }
        r->comp = c;
        r->where = w;
    }
    fclose(f);
    if (rc == 0 && !(rs->path = strdup(path)))
        rc = cmt_fail(err, errlen, "out of memory");
    if (rc != 0)
        cmt_rules_free(rs);
    return rc;
}

void cmt_rules_free(struct cmt_rules *rs)
{
    for (size_t i = 0; i < rs->n; i++)
        free(rs->r[i].glob);
    free(rs->r);
    free(rs->path);
    memset(rs, 0, sizeof *rs);
}

/* One frame against every rule, in file order: the component or -1. Fields may be NULL. */
int cmt_rules_match_frame(const struct cmt_rules *rs, const char *pyfunc, const char *pyline, const char *native,
                          const char *module)
{
    for (size_t i = 0; rs && i < rs->n; i++) {
        const struct cmt_rule *r = &rs->r[i];
        const char *cand[4] = {NULL, NULL, NULL, NULL};
        switch (r->where) {
        case 'p': cand[0] = pyfunc; break;
        case 'l': cand[0] = pyline; break;
        case 'n': cand[0] = native; break;
        case 'm': cand[0] = module; break;
        default: cand[0] = pyfunc; cand[1] = pyline; cand[2] = native; cand[3] = module; break;
        }
        for (int j = 0; j < 4; j++)
            if (cand[j] && fnmatch(r->glob, cand[j], 0) == 0)
                return r->comp;
    }
    return -1;
}

int cmt_rules_match_stack(const struct cmt_rules *rs, const struct cmt_stack *k)
{
    for (int i = 0; i < k->nframes; i++) {
        int c = cmt_rules_match_frame(rs, NULL, NULL, k->frames[i], i == 0 ? k->module : NULL);
        if (c >= 0)
            return c;
    }
    if (k->module) {
        int c = cmt_rules_match_frame(rs, NULL, NULL, NULL, k->module);
        if (c >= 0)
            return c;
    }
    return CMT_C_OTHER;
}

int cmt_rules_classify(const void *rules, const struct cmt_stack *k) { return cmt_rules_match_stack(rules, k); }

