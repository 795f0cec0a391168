/*
 * cmt_hooks.c: the exported wrappers, one per line of hooks.def.
 *
 * Runs on application threads. Each wrapper returns exactly the CUresult the real driver returned; our
 * own work happens around the call and never changes it (see cmt_record.h for what that work may do).
 */
#include "cmt_record.h"
#include "cmt_resolve.h"

#include "cmt_events.h"

#include <errno.h>
#include <stdint.h>

/* Fill statements used in hooks.def. `e` is the event, `r` the driver's result. */
#define SET(field, flag, value)                                                                         \
    do {                                                                                                \
        e->field = (uint64_t)(value);                                                                   \
        e->present |= (flag);                                                                           \
    } while (0)
#define ADDR(v) SET(address, CMT_HAS_ADDRESS, (uintptr_t)(v))
#define OUT_ADDR(p)                                                                                     \
    do {                                                                                                \
        if (r == CUDA_SUCCESS && (p))                                                                   \
            ADDR(*(p));                                                                                 \
    } while (0)
#define SIZE(v) SET(size, CMT_HAS_SIZE, (v))
#define STREAM(v) SET(stream, CMT_HAS_STREAM, (uintptr_t)(v))
#define HANDLE(v) SET(handle, CMT_HAS_HANDLE, (uintptr_t)(v))
#define OUT_HANDLE(p)                                                                                   \
    do {                                                                                                \
        if (r == CUDA_SUCCESS && (p))                                                                   \
            HANDLE(*(p));                                                                               \
    } while (0)
#define AUX(v) SET(aux, CMT_HAS_AUX, (v))
#define OUT_AUX(p)                                                                                      \
    do {                                                                                                \
        if (r == CUDA_SUCCESS && (p))                                                                   \
            AUX(*(p));                                                                                  \
    } while (0)
/* Physical memory created for a device says so in its properties, not in the current context. */
/* Read only when the driver read it too (it succeeded, or got as far as running out of memory): a
 * program may pass a bad pointer on purpose to get an error back. */
#define PROP_DEVICE(prop)                                                                               \
    do {                                                                                                \
        if ((r == CUDA_SUCCESS || r == CUDA_ERROR_OUT_OF_MEMORY) && (prop) &&                           \
            (prop)->location.type == CU_MEM_LOCATION_TYPE_DEVICE) {                                     \
            e->device = (prop)->location.id;                                                            \
            e->present |= CMT_HAS_DEVICE;                                                               \
        }                                                                                               \
    } while (0)
/* An IPC handle does not say how large the allocation is; the driver's address range does. */
#define IPC_SIZE(p)                                                                                     \
    do {                                                                                                \
        if (r == CUDA_SUCCESS && (p)) {                                                                 \
            uint64_t sz_ = cmt_record_range_size((uint64_t)*(p));                                       \
            if (sz_)                                                                                    \
                SIZE(sz_);                                                                              \
        }                                                                                               \
    } while (0)

/* An address the program passes in, recorded only once the driver accepted it (a failed acquire has no
 * address, as everywhere else). */
#define IN_ADDR_OK(p)                                                                                   \
    do {                                                                                                \
        if (r == CUDA_SUCCESS)                                                                          \
            ADDR(p);                                                                                    \
    } while (0)
/* A graph memory node: its size and device as asked, its address once the driver gave it. */
#define GRAPH_ALLOC(np)                                                                                 \
    do {                                                                                                \
        if ((r == CUDA_SUCCESS || r == CUDA_ERROR_OUT_OF_MEMORY) && (np)) {                             \
            SIZE((np)->bytesize);                                                                       \
            if ((np)->poolProps.location.type == CU_MEM_LOCATION_TYPE_DEVICE) {                         \
                e->device = (np)->poolProps.location.id;                                                \
                e->present |= CMT_HAS_DEVICE;                                                           \
            }                                                                                           \
            if (r == CUDA_SUCCESS)                                                                      \
                ADDR((np)->dptr);                                                                       \
        }                                                                                               \
    } while (0)
/* The device's graph memory pool as the driver reports it, after a successful call. */
#define GRAPH_MEM()                                                                                     \
    do {                                                                                                \
        if (r == CUDA_SUCCESS)                                                                          \
            cmt_record_graph_mem(e);                                                                    \
    } while (0)
#define ARRAY_SIZE(d, W, H, depth, levels, flags)                                                       \
    do {                                                                                                \
        if ((r == CUDA_SUCCESS || r == CUDA_ERROR_OUT_OF_MEMORY) && (d))                                \
            SIZE(cmt_array_bytes((d)->Format, (d)->NumChannels, (d)->W, (d)->H, (depth), (levels), (flags))); \
    } while (0)

/* The bytes of a CUDA array as the program described it: width x max(height, 1) x max(depth, 1) x
 * channels x the format's bytes per channel, summed over mipmap levels (level l halves width, height and,
 * unless the array is layered, depth, rounding down, never below 1). Formats whose element is not a
 * whole number of bytes per channel (block-compressed, NV12...) give 0: unknown. */
static uint64_t cmt_array_bytes(unsigned format, unsigned channels, uint64_t w, uint64_t h, uint64_t d,
                                unsigned levels, unsigned flags)
{
    uint64_t elem;
    switch (format) {
    case CU_AD_FORMAT_UNSIGNED_INT8:
    case CU_AD_FORMAT_SIGNED_INT8: elem = 1; break;
    case CU_AD_FORMAT_UNSIGNED_INT16:
    case CU_AD_FORMAT_SIGNED_INT16:
    case CU_AD_FORMAT_HALF: elem = 2; break;
    case CU_AD_FORMAT_UNSIGNED_INT32:
    case CU_AD_FORMAT_SIGNED_INT32:
    case CU_AD_FORMAT_FLOAT: elem = 4; break;
    default: return 0;
    }
    if (channels != 1 && channels != 2 && channels != 4)
        return 0;
    int layered = (flags & CUDA_ARRAY3D_LAYERED) != 0;
    uint64_t total = 0;
    for (unsigned l = 0; l < (levels ? levels : 1) && l < 64; l++) {
        uint64_t lw = w >> l, lh = h >> l, ld = layered ? d : d >> l;
        uint64_t bytes = (lw ? lw : 1) * (lh ? lh : 1);
        bytes *= ld ? ld : 1;
        total += bytes * channels * elem;
    }
    return total;
}

#define CMT_HOOK(name, base, since, per_thread, when, params, args, fill)                                  \
    CMT_EXPORT CUresult CUDAAPI name params                                                             \
    {                                                                                                   \
        __typeof__(&name) real = __atomic_load_n(&cmt_real_##name, __ATOMIC_ACQUIRE); \
        if (!real)                                                                                      \
            real = (__typeof__(&name))cmt_resolve_real(CMT_HOOK_ID_##name);                             \
        if (!real)                                                                                      \
            return CUDA_ERROR_NOT_INITIALIZED; /* defensive: no libcuda could be found at all */        \
        struct cmt_call c;                                                                              \
        if (!cmt_call_begin(&c, CMT_API_##name, CMT_WHEN_##when))                                       \
            return real args;                                                                           \
        CUresult r = real args;                                                                         \
        int driver_errno = errno; /* the program sees errno as the driver left it */                   \
        cmt_call_end(&c, r);                                                                            \
        struct cmt_event *e = &c.u.ev;                                                                  \
        fill;                                                                                           \
        cmt_call_commit(&c);                                                                            \
        errno = driver_errno;                                                                           \
        return r;                                                                                       \
    }
#include "hooks.def"
#undef CMT_HOOK
