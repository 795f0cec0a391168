/*
 * cmt_nvtx.h: libcumemtrace.so as an NVTX injection library (cmt_nvtx.c).
 *
 * NVTX v3 (header-only, compiled into the program, PyTorch and libraries) loads the library named by
 * NVTX_INJECTION64_PATH at the first NVTX call and calls its InitializeInjectionNvtx2, which points NVTX's
 * callback tables at our functions. Those record range push/pop, start/end, marks and domains into the
 * same queue as memory events (the record's layout is in cmt_shm.h).
 */
#ifndef CMT_NVTX_H
#define CMT_NVTX_H

/* On the thread that has just started recording (before its own event is queued): queues the ranges
 * opened before the first memory event, which are still open. */
void cmt_nvtx_capture_started(void);

/* In a forked child, on the thread that forked. */
void cmt_nvtx_after_fork(void);

#endif
