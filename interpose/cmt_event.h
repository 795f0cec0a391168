/*
 * cmt_event.h: one recorded call as it travels from an application thread to the writer thread.
 *
 * Fixed header followed by nframes instruction pointers (innermost first). Fields whose presence varies
 * carry a bit in `present`; absent fields become SQL NULL.
 */
#ifndef CMT_EVENT_H
#define CMT_EVENT_H

#include <stdint.h>

#define CMT_MAX_DEPTH 256

enum cmt_present {
    CMT_HAS_DEVICE = 1 << 0,
    CMT_HAS_CONTEXT = 1 << 1,
    CMT_HAS_ADDRESS = 1 << 2,
    CMT_HAS_SIZE = 1 << 3,
    CMT_HAS_STREAM = 1 << 4,
    CMT_HAS_HANDLE = 1 << 5,
    CMT_HAS_AUX = 1 << 6,
    CMT_HAS_MEMINFO = 1 << 7,
};

struct cmt_event {
    uint64_t seq;
    uint64_t ts_ns;
    uint64_t duration_ns;
    uint64_t context;
    uint64_t address;
    uint64_t size;
    uint64_t stream;
    uint64_t handle;
    uint64_t aux;
    uint64_t free_bytes;
    uint64_t total_bytes;
    int32_t tid;
    int32_t device;
    int32_t result;
    uint16_t api;
    uint8_t op;
    uint8_t kind;
    uint16_t present;
    uint16_t nframes;
    uint32_t reserved;
    uintptr_t frames[]; /* nframes entries */
};

#endif
