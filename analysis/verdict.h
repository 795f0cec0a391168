/*
 * verdict.h: the end-of-run paragraph of `cumemtrace run --sim-gpu` (verdict.c).
 */
#ifndef CMT_VERDICT_H
#define CMT_VERDICT_H

#include <stdint.h>

/* Prints, on stderr, the peak of the traces in paths against the device's capacity (less context_bytes,
 * the simulated CUDA context's memory), the fit or the first OOM with its verdict, and the components at
 * the allocator's peak. Returns 0, or -1 when the traces could not be read (nothing printed). */
int cmt_run_verdict(char **paths, int npaths, int64_t context_bytes);

#endif
