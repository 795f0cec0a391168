/*
 * load.c: what every verb does first (see analysis.h, cmt_load): open and validate the traces, then the
 * one pass, feeding the model's own observers (phases) and the verb's.
 *
 * Runs in the `cumemtrace` command; prints nothing, returns 0 or -1 with the reason in err.
 */
#include "analysis.h"
#include "ranges.h"

#include <stdlib.h>

int cmt_load(struct cmt_set *s, char **paths, int npaths, const struct cmt_observer *obs, size_t nobs, char *err,
             size_t errlen)
{
    if (cmt_set_open(s, paths, npaths, err, errlen) != 0)
        return -1;
    struct cmt_observer *all = calloc(nobs + 1, sizeof *all);
    if (!all)
        return cmt_fail(err, errlen, "out of memory");
    all[0] = cmt_ranges_observer();
    for (size_t i = 0; i < nobs; i++)
        all[i + 1] = obs[i];
    int rc = cmt_set_analyze(s, all, nobs + 1, err, errlen);
    free(all);
    return rc;
}
