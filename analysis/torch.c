/*
 * torch.c: the allocator level of a set of analyzed traces (see torch.h): per trace, its newest allocator
 * snapshot when it has one (alloclevel.c), else its driver events (driverlevel.c), under the component
 * rules (rules.c). Components and OOMs come from the allocator tables when a trace has them, else from
 * driver events (each cuMemAlloc'ed segment attributed by its stack; failures read for the caching
 * allocator's release-and-retry pattern). Its report sections are render_torch.c's.
 *
 * Runs in the `cumemtrace` command. Reads traces only; returns 0 or -1 with a reason in err.
 */
#include "components.h"

#include <stdlib.h>
#include <string.h>

int cmt_torch_build(struct cmt_torch *x, struct cmt_set *s, const struct cmt_torch_options *o, char *err,
                    size_t errlen)
{
    struct cmt_rules rules;
    struct smap siteix = {0};
    memset(x, 0, sizeof *x);
    x->params = o->params;
    x->mixed = o->mixed;
    if (cmt_rules_load(&rules, o->rules, err, errlen) != 0)
        return -1;
    int rc = 0;
    for (size_t ti = 0; ti < s->n && rc == 0; ti++) {
        int64_t sid = cmt_torch_newest_snapshot(s->t[ti]);
        if (sid >= 0) {
            x->has_alloc = 1;
            rc = cmt_alloc_level(x, s, ti, sid, &rules, &siteix, err, errlen);
        } else {
            rc = cmt_driver_level(x, s, ti, &rules, err, errlen);
        }
    }
    smap_free(&siteix);
    cmt_rules_free(&rules);
    return rc;
}

void cmt_torch_free(struct cmt_torch *x)
{
    for (size_t i = 0; i < x->nsites; i++)
        free(x->sites[i].name);
    free(x->sites);
    free(x->frag);
    free(x->ooms);
    memset(x, 0, sizeof *x);
}
