/*
 * ledger_cublas.c: a stand-in for cuBLAS in tests/test_ledger.py, built as libcublas_ledger_stand_in.so:
 * the ledger names an allocation's owner by the module of its stack, and cuBLAS's workspace is allocated
 * from inside a module named libcublas*. Allocates the workspace with the driver, as libcublas's own
 * (static) runtime does.
 */
#define __CUDA_API_VERSION_INTERNAL 1
#include <cuda.h>

__attribute__((visibility("default"), noinline)) int ledger_cublas_workspace(CUdeviceptr *p, size_t bytes)
{
    return (int)cuMemAlloc_v2(p, bytes);
}
