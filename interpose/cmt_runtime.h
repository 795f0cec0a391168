/*
 * cmt_runtime.h: process-wide state of the interposer, shared by the recorder (application threads) and
 * the lifecycle code (init, fork, exec, exit). The writer is another process (cmt_capture.h).
 */
#ifndef CMT_RUNTIME_H
#define CMT_RUNTIME_H

#include "cmt_ring.h"

#include <limits.h>
#include <stdatomic.h>
#include <stdint.h>

enum cmt_state {
    CMT_IDLE = 0,  /* nothing recorded yet in this process: no file, no writer */
    CMT_RUNNING,   /* the writer was spawned (it may still be opening the file) */
    CMT_DISABLED,  /* recording is off: configured so, or our own failure (reported once) */
};

struct cmt_config {
    char output[PATH_MAX]; /* CUMEMTRACE_OUTPUT: a file, or a directory (existing, or ending in '/') */
    char manifest[PATH_MAX]; /* CUMEMTRACE_MANIFEST: run's list of the traces of its run (absolute), or "" */
    unsigned depth;        /* CUMEMTRACE_STACK_DEPTH: frames per stack, 0 = no stacks */
    unsigned queue;        /* CUMEMTRACE_QUEUE: events the queue holds before producers wait */
    char prog[64];         /* program name, for default file names */
    char env[1024];        /* allow-listed environment at start: NAME=VALUE\0...\0 */
    uint64_t start_ns;     /* CLOCK_MONOTONIC at start (or at fork, in a child) */
    uint64_t start_unix_ns;
    uint64_t sample_ns;    /* CUMEMTRACE_SAMPLE_MS in ns: device memory sampled at most this often, 0 = never */
    unsigned debug_writer_delay_ms; /* CUMEMTRACE_DEBUG_WRITER_DELAY_MS: the writer starts this late (tests, benchmarks) */
};

extern struct cmt_config cmt_config;
extern struct cmt_ring cmt_queue; /* attached to the shared memory at the first event */
extern _Atomic int cmt_state;
extern _Atomic uint64_t cmt_seq;  /* last sequence number handed out */

uint64_t cmt_now_ns(void);

/* Reads the configuration and sets up the queue; idempotent and thread-safe. Returns 0 if recording is
 * possible. Called by the constructor and, should a hook run before it, by the recorder. */
int cmt_runtime_init(void);

/* Turns recording off for good after our own failure, saying why once on stderr. */
void cmt_runtime_disable(const char *why);

#endif
