/*
 * cmt_shm.h: the memory the profiled program shares with its trace writer (a separate process,
 * writer/cumemtrace-writer), and the only channel between them.
 *
 * The program creates it (a memfd, mapped MAP_SHARED) at its first recorded event, fills in this header,
 * and spawns the writer with the memfd as its descriptor 3 and the read end of a pipe as its descriptor 4
 * (the program keeps the write end, close-on-exec, and never writes it: its end of file tells the writer
 * that the program's image is gone, by exit, signal or exec). Then the program only pushes events into
 * the ring that follows the header; the writer drains it, symbolizes from /proc/PID/maps and the ELF
 * files, writes SQLite, and finalizes the trace after the program is gone, however it ended.
 *
 * Layout: this header (CMT_SHM_HEADER_SIZE bytes), then the ring's slots (ring_capacity * ring_slot_size).
 * A private contract between two binaries of the same build: magic and version must match exactly.
 */
#ifndef CMT_SHM_H
#define CMT_SHM_H

#include <limits.h>
#include <stdatomic.h>
#include <stdint.h>

#define CMT_SHM_MAGIC 0x434d5453484d3031ull /* "CMTSHM01" */
#define CMT_SHM_VERSION 3 /* 2: NVTX records in the ring (below); 3: manifest */
#define CMT_SHM_HEADER_SIZE 65536
#define CMT_SHM_MAX_DEVICES 64

/* What the program says about itself (prog_state). */
enum cmt_prog_state {
    CMT_PROG_RUNNING = 0,
    CMT_PROG_EXITING, /* exit() (our destructor) or _exit has begun: the end is near and orderly */
    CMT_PROG_EXEC,    /* an exec is under way; back to RUNNING if it fails */
};

/* What the writer says about itself (writer_state). */
enum cmt_writer_state {
    CMT_WRITER_STARTING = 0, /* spawned, not yet ready */
    CMT_WRITER_READY,        /* the trace file exists and is locked; draining */
    CMT_WRITER_FAILED,       /* could not record: error[] says why; the program stops recording */
    CMT_WRITER_DONE,         /* finalized (only once the program is gone) */
};

struct cmt_shm_device {
    _Atomic int state; /* 0 not described, 1 being described, 2 described */
    int have_total, have_version, driver_version;
    uint64_t total_bytes;
    char name[256];
    char uuid[48];
};

struct cmt_shm_ring {
    _Alignas(64) _Atomic uint64_t enqueue_pos; /* producers */
    _Alignas(64) _Atomic uint64_t dequeue_pos; /* the writer; producers read it to see progress */
};

struct cmt_shm {
    uint64_t magic;
    uint32_t version, header_size;
    /* set by the program before spawning, read-only afterwards */
    int32_t pid;
    uint32_t depth;
    uint64_t start_ns, start_unix_ns;
    uint32_t ring_capacity, ring_slot_size, ring_max_frames;
    uint32_t debug_writer_delay_ms;
    char output[PATH_MAX];
    char manifest[PATH_MAX]; /* CUMEMTRACE_MANIFEST (set by `cumemtrace run`): the writer appends its trace's
                              * name there, so run lists exactly the traces of its run; "" for none */
    char prog[64];
    char env[1024];
    /* live */
    _Atomic uint32_t wake;         /* futex word (shared): the program sets it and wakes the writer */
    _Atomic uint32_t ready;        /* futex word (shared): the writer sets it to 1 once READY or FAILED */
    _Atomic uint32_t space;        /* futex word (shared): bumped by the writer when it freed slots */
    _Atomic uint32_t space_waiters; /* a producer sleeps on `space` */
    _Atomic int prog_state;        /* enum cmt_prog_state */
    _Atomic int writer_state;      /* enum cmt_writer_state */
    _Atomic int32_t writer_pid;    /* the writer's; its watchdog's once it took over (writer/writer.c) */
    _Atomic uint64_t lost;         /* events the program could not queue */
    _Atomic uint64_t exit_ns;      /* CLOCK_MONOTONIC when exit or _exit began (0: not seen) */
    char trace_path[PATH_MAX + 64]; /* written by the writer before READY */
    char error[1024];               /* written by the writer before FAILED */
    struct cmt_shm_device devices[CMT_SHM_MAX_DEVICES];
    struct cmt_shm_ring ring;
};

_Static_assert(sizeof(struct cmt_shm) <= CMT_SHM_HEADER_SIZE, "the header fits its reserved space");

/* NVTX records (interpose/cmt_nvtx.c) travel in the same ring as memory events, as a struct cmt_event
 * whose `op` is CMT_SHM_REC_NVTX, a value no memory op uses; the writer stores them in the ranges and
 * marks tables (schema/cumemtrace_v3.sql), never in events. Fields:
 *   op       CMT_SHM_REC_NVTX
 *   kind     enum cmt_nvtx_kind
 *   seq      from the same counter as memory events (ordering ranges against allocations)
 *   ts_ns    CLOCK_MONOTONIC of the NVTX call; tid: the calling thread
 *   api      the domain's index (0: the default domain)
 *   result   push: the level of the range opened (0: outermost); pop: the level of the range closed
 *            (the writer resynchronizes its per-thread stack with it after a lost record); -1 elsewhere
 *   address  start/end: the range id nvtxRangeStart* returned (unique in the process)
 *   aux      the attributes' category (0 when none)
 *   size     bytes of the domain name at the start of the payload (0: the default domain)
 *   handle   bytes of the message after it; present & CMT_HAS_HANDLE is clear when there is no message
 *   nframes  8-byte words of payload in frames[]: the domain name then the message, UTF-8, no NUL
 * Every slot has room for CMT_RING_MIN_WORDS words whatever the stack depth (cmt_ring_layout). */
#define CMT_SHM_REC_NVTX 0xF0
#define CMT_NVTX_DOMAIN_MAX 64    /* bytes of a domain name kept */
#define CMT_NVTX_MESSAGE_MAX 248  /* bytes of a message kept (cut at a UTF-8 character boundary) */

enum cmt_nvtx_kind {
    CMT_NVTX_PUSH = 1,
    CMT_NVTX_POP = 2,
    CMT_NVTX_START = 3,
    CMT_NVTX_END = 4,
    CMT_NVTX_MARK = 5,
    /* The memory extension (nvToolsExtMem.h): a custom allocator's heaps and the regions (blocks) it
     * hands out of them. Fields as above, and: stream = the heap's id (what nvtxMemHeapRegister
     * returned); address, aux = the heap's or the region's base and size (region unregister: address
     * only); result = the heap's usage flags. The message, where there is one, is the heap's or the
     * region's name. */
    CMT_NVTX_HEAP_REGISTER = 6,
    CMT_NVTX_HEAP_UNREGISTER = 7,
    CMT_NVTX_HEAP_RESET = 8,       /* every region of the heap is gone */
    CMT_NVTX_REGION_REGISTER = 9,
    CMT_NVTX_REGION_RESIZE = 10,
    CMT_NVTX_REGION_UNREGISTER = 11,
    CMT_NVTX_REGION_NAME = 12,
};

#endif
