/*
 * cmt_record.h: what a wrapper does around the real driver call, on the application's thread.
 *
 * Runs on application threads. Never blocks on a lock, never calls SQLite, never allocates; the only
 * driver calls are the cheap queries that place the event (current context, its device) and, after a
 * failed allocation, cuMemGetInfo. If the queue is full it waits a bounded time for the writer, then
 * counts the event as lost. With CUMEMTRACE_SAMPLE_MS (opt-in), a call may also take a sample after its
 * event: cuMemGetInfo, pool and NVML queries (cmt_record.c says when; NVML is dlopen'ed at the first one).
 */
#ifndef CMT_RECORD_H
#define CMT_RECORD_H

#include "cmt_event.h"

#include <stdint.h>

enum cmt_when { CMT_WHEN_BEFORE, CMT_WHEN_AFTER };

struct cmt_call {
    uint64_t t0;
    int when;
    union {
        struct cmt_event ev;
        unsigned char raw[sizeof(struct cmt_event) + CMT_MAX_DEPTH * sizeof(uintptr_t)];
    } u;
};

/* errno: cmt_call_begin keeps it as it found it; what happens after the driver call (end, the fill,
 * commit) may change it, and the wrapper puts back the value the driver left (cmt_hooks.c).
 *
 * Returns 1 if this call is to be recorded (then end and commit must follow), 0 to just pass through
 * (recording off, or a driver entry point called from inside another one on this thread). */
int cmt_call_begin(struct cmt_call *c, int api, int when);
void cmt_call_end(struct cmt_call *c, int result);
void cmt_call_commit(struct cmt_call *c);

/* For fills: the device's graph memory pool (cuDeviceGetGraphMemAttribute) into a SAMPLE event: size =
 * reserved, aux = used, both current. Nothing when the event has no device or the driver cannot say. */
struct cmt_event;
void cmt_record_graph_mem(struct cmt_event *e);

/* For fills: the size of the allocation containing a device address (IPC mappings), 0 if unknown. */
uint64_t cmt_record_range_size(uint64_t address);

/* The program is about to close (or replace) descriptors lo..hi: if libunwind's pipe is among them,
 * libunwind is not used again (cmt_record.c says why). Any thread; async-signal-safe. */
void cmt_unwind_fds_closing(unsigned lo, unsigned hi);

/* Once, from cmt_runtime_init, before any call is recorded. */
void cmt_record_init(void);

/* In a forked child, on the thread that forked: its cached thread id belongs to the parent. */
void cmt_record_after_fork(void);

#endif
