/*
 * cmt_cuda.h: includes NVIDIA's cuda.h the way the driver itself is built (__CUDA_API_VERSION_INTERNAL),
 * so that every concrete entry point is declared under its real ELF name (cuMemAlloc with the 32-bit v1
 * ABI beside cuMemAlloc_v2, cuMemAllocAsync beside cuMemAllocAsync_ptsz) and our wrappers are checked
 * against NVIDIA's prototypes.
 */
#ifndef CMT_CUDA_H
#define CMT_CUDA_H

#define __CUDA_API_VERSION_INTERNAL 1
#include <cuda.h>

/* The only symbols we export: the driver entry points we wrap, dlsym and the exec family. */
#define CMT_EXPORT __attribute__((visibility("default")))

#endif
