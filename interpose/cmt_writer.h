/*
 * cmt_writer.h: the background thread that owns the trace file.
 *
 * It opens the file, drains the queue in batches into SQLite (one transaction per batch, a commit at
 * least every 100 ms), deduplicates stacks, symbolizes new frames, describes devices and threads, and
 * finalizes the file at exit or exec. Nothing else in the interposer touches SQLite.
 */
#ifndef CMT_WRITER_H
#define CMT_WRITER_H

/* Starts the thread (first recorded event of this process). Application thread; returns 0 or -1. */
int cmt_writer_start(void);

/* Nudges a sleeping writer (the queue is filling up). Any thread; async-signal-safe. */
void cmt_writer_wake(void);

/* True while the writer thread exists and is draining the queue. */
int cmt_writer_alive(void);

/* True on the writer thread itself. */
int cmt_writer_is_self(void);

/* Asks the writer to drain everything queued, finalize and close the file (quick: without building the
 * indexes, for a dying process), and waits at most timeout_ms for it. Async-signal-safe (flags and
 * nanosleep only). Returns 0 if the file was closed in time. */
int cmt_writer_stop(unsigned timeout_ms, int quick);

/* True when no writer is running or about to run: a new one may be started (after a failed exec). */
int cmt_writer_finished(void);

/* Clears a previous stop request before the writer may be started again (after a failed exec). */
void cmt_writer_rearm(void);

/* In a forked child: the writer thread did not survive the fork; forget it and its file (the parent's)
 * without touching either. */
void cmt_writer_forget_after_fork(void);

/* fork() must not happen in the middle of the writer's SQLite work: the child would inherit SQLite's
 * global mutexes locked. The atfork handlers hold this around fork. */
void cmt_writer_fork_prepare(void);
void cmt_writer_fork_parent(void);
/* Returns -1 if the writer could not be stopped in time for the fork: then this child must not record. */
int cmt_writer_fork_child(void);

#endif
