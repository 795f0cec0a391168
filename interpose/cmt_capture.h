/*
 * cmt_capture.h: the program's side of the separate trace writer (cmt_capture.c; the layout they share is
 * cmt_shm.h, the writer itself is writer/).
 */
#ifndef CMT_CAPTURE_H
#define CMT_CAPTURE_H

#include "cmt_event.h"
#include "cmt_shm.h"

extern struct cmt_shm *cmt_shm; /* NULL until the first recorded event of this process */

/* cmt_shm as any thread may read it (set once by the thread that starts recording). */
static inline struct cmt_shm *cmt_shm_get(void)
{
    return __atomic_load_n(&cmt_shm, __ATOMIC_ACQUIRE);
}

/* From the constructor: where the writer executable is (beside this library, or $CUMEMTRACE_WRITER). */
void cmt_capture_init(void);

/* The first recorded event: shared memory, the writer spawned, its file created (bounded wait). State
 * IDLE -> RUNNING, or DISABLED with one line on stderr. Returns 0 or -1. */
int cmt_capture_start(void);

/* Returns once the thread that started recording has the queue set up (or recording is off). */
void cmt_capture_await(void);

/* If the writer reported a failure: say it once and stop recording. Cheap; any thread. */
void cmt_capture_check(void);

/* Nudges the writer (the queue is filling up). Any thread; async-signal-safe. */
void cmt_capture_wake(void);

/* Queues e (cmt_ring_push), and wakes the writer when the queue is more than half full (looked at once
 * every 64 positions: reading where the writer is costs a cache miss). Returns 0, or -1 if full. */
int cmt_capture_push(const struct cmt_event *e);

/* The queue is full: sleeps until the writer has freed slots, or timeout_ns. */
void cmt_capture_wait_for_space(uint64_t timeout_ns);

/* True while a writer exists that is (or will be) draining the queue. */
int cmt_capture_writer_alive(void);

/* Tells the writer how the program is going (enum cmt_prog_state). Async-signal-safe. */
void cmt_capture_mark(int prog_state);

/* In a forked child: the parent's writer and memory are not ours; forget them, touching nothing shared. */
void cmt_capture_forget_after_fork(void);

#endif
