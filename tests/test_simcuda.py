"""Tests of the simulated driver itself (simgpu/: libcuda.so.1; tests/clients/cudart_like) and of the example
workload, without the interposer.

Each scenario runs in a child Python process that loads libcuda.so.1 through ctypes with a fresh
environment (the driver reads SIMCUDA_* once, and its state lives for the process), and prints one JSON
object that the test asserts on. Exact values throughout: a change in the simulator's behaviour must show.
"""
import collections
import json
import os
import subprocess
import sys
import textwrap
import unittest

import cmtlib
from cmtlib import GiB, MiB

LIB = os.path.join(cmtlib.SIMCUDA_DIR, "libcuda.so.1")
CUDART_LIKE = os.path.join(cmtlib.CLIENTS, "cudart_like")
SHADOW = os.path.join(cmtlib.CLIENTS, "libsimcuda_shadow.so")
TRAIN_SIM = os.path.join(cmtlib.BUILD, "examples", "train_sim")
PROCS = os.path.join(cmtlib.ROOT, "simgpu", "procs.tsv")
LOOKUPS = os.path.join(cmtlib.SHARED, "data", "cudart13-lookups.tsv")

BASE = 0x7A0000000000  # device 0's first address (simcuda_driver.h)
LOW_BASE = 0x40000000  # first v1 address
PAGE = 2 * MiB

SUCCESS, INVALID_VALUE, OUT_OF_MEMORY, NOT_INITIALIZED = 0, 1, 2, 3
INVALID_CONTEXT, NOT_FOUND, NOT_SUPPORTED = 201, 500, 801

# Loaded into every child: the library, typed wrappers for the calls the scenarios make, and R, the dict
# printed as JSON at the end.
PRELUDE = r'''
import ctypes, json, sys, threading
from ctypes import byref, c_char_p, c_int, c_size_t, c_uint, c_uint64, c_ulong, c_void_p, POINTER
cu = ctypes.CDLL("libcuda.so.1")
cu.simcuda_used_bytes.restype = c_size_t
cu.simcuda_capacity.restype = c_size_t
cu.simcuda_pool_reserved_bytes.restype = c_size_t
cu.simcuda_call_count.restype = c_ulong
cu.simcuda_call_count.argtypes = [c_char_p]
R = {}

def init():
    assert cu.cuInit(0) == 0
    dev, ctx = c_int(), c_void_p()
    assert cu.cuDeviceGet(byref(dev), 0) == 0
    assert cu.cuDevicePrimaryCtxRetain(byref(ctx), dev) == 0
    assert cu.cuCtxSetCurrent(ctx) == 0
    return ctx

def alloc(n):
    p = c_uint64()
    rc = cu.cuMemAlloc_v2(byref(p), c_size_t(n))
    return rc, p.value

def free(p):
    return cu.cuMemFree_v2(c_uint64(p))

def used():
    return cu.simcuda_used_bytes(0)

def live():
    return cu.simcuda_live_allocations(0)

def stream():
    s = c_void_p()
    assert cu.cuStreamCreate(byref(s), 0) == 0
    return s

def alloc_async(n, s):
    p = c_uint64()
    rc = cu.cuMemAllocAsync_ptsz(byref(p), c_size_t(n), s)
    return rc, p.value

def free_async(p, s):
    return cu.cuMemFreeAsync_ptsz(c_uint64(p), s)

def pool_attr(pool, attr):
    v = c_uint64()
    assert cu.cuMemPoolGetAttribute(pool, attr, byref(v)) == 0
    return v.value

class Prop(ctypes.Structure):  # CUmemAllocationProp
    _fields_ = [("type", c_int), ("requestedHandleTypes", c_int), ("loc_type", c_int), ("loc_id", c_int),
                ("win32HandleMetaData", c_void_p), ("compressionType", ctypes.c_ubyte),
                ("gpuDirectRDMACapable", ctypes.c_ubyte), ("usage", ctypes.c_ushort), ("reserved", ctypes.c_ubyte * 4)]

class AccessDesc(ctypes.Structure):  # CUmemAccessDesc
    _fields_ = [("loc_type", c_int), ("loc_id", c_int), ("flags", c_int)]

def device_prop():
    return Prop(type=1, loc_type=1, loc_id=0)  # PINNED, LOCATION_TYPE_DEVICE

def proc(name, version, flags=0):
    fn, status = c_void_p(), c_int(-1)
    rc = cu.cuGetProcAddress_v2(c_char_p(name.encode()), byref(fn), c_int(version), c_uint64(flags), byref(status))
    return rc, fn.value, status.value

def addr_of(name):
    return ctypes.cast(getattr(cu, name), c_void_p).value
'''


def drive(test, body, memory="24GiB", extra=None, args=()):
    """Runs BODY (Python, after PRELUDE) in a child on the simulated driver; returns its R dict."""
    code = PRELUDE + textwrap.dedent(body) + "\nprint(json.dumps(R))\n"
    p = cmtlib.run([sys.executable, "-c", code] + list(args),
                   cmtlib.sim_env(memory=memory, preload=False, extra=extra), check=False)
    test.assertEqual(p.returncode, 0, "child failed:\n" + p.stderr)
    lines = p.stdout.splitlines()
    test.assertEqual(len(lines), 1, "the driver must print nothing on stdout: %r" % p.stdout)
    return json.loads(lines[0])


def load_procs():
    """procs.tsv as {base: [(version, concrete, per_thread or None)]}, versions ascending."""
    table = collections.defaultdict(list)
    for line in open(PROCS):
        if line.startswith("#"):
            continue
        base, ver, conc, pt = line.rstrip("\n").split("\t")
        table[base].append((int(ver), conc, None if pt == "-" else pt))
    for v in table.values():
        v.sort()
    return table


def expected_lookup(table, name, version, flags):
    """The cuGetProcAddress contract, written independently of the C: (symbol or None, symbolStatus)."""
    if name not in table:
        return None, 1
    fit = [v for v in table[name] if v[0] <= version]
    if not fit:
        return None, 2
    _, conc, pt = fit[-1]
    return (pt if flags & 2 and pt else conc), 0


@unittest.skipUnless(os.path.exists(LIB), "simulated driver not built: " + LIB)
class SimDriverTest(unittest.TestCase):

    def test_capacity_parsing(self):
        for spec, want in [("24GiB", 24 * GiB), ("512MiB", 512 * MiB), ("1G", GiB), ("4194304", 4 * MiB),
                           ("3MiB", 2 * MiB), ("2gb", 2 * GiB)]:
            r = drive(self, """
                init()
                total = c_size_t()
                R['rc'] = cu.cuDeviceTotalMem_v2(byref(total), 0)
                R['total'] = total.value
                R['cap'] = cu.simcuda_capacity(0)
            """, memory=spec)
            self.assertEqual((r['rc'], r['total'], r['cap']), (0, want, want), spec)

    def test_oom_at_exact_page_boundary(self):
        r = drive(self, """
            init()
            R['a'] = alloc(16 * 2**20 - 1)        # 8 pages
            R['b'] = alloc(16 * 2**20 + 1)        # 9 pages
            R['c'] = alloc(30 * 2**20)            # 15 pages: 32 of 32
            R['used_full'] = used()
            f, t = c_size_t(), c_size_t()
            cu.cuMemGetInfo_v2(byref(f), byref(t))
            R['info'] = [f.value, t.value]
            R['over'] = alloc(1)[0]               # not one more byte
            R['used_after_oom'] = used()
            R['free_b'] = free(R['b'][1])
            R['refit'] = alloc(18 * 2**20)[0]     # 9 pages fit again
            R['over2'] = alloc(1)[0]
            R['live'] = live()
        """, memory="64MiB")
        self.assertEqual(r['a'][0], SUCCESS)
        self.assertEqual(r['b'][0], SUCCESS)
        self.assertEqual(r['c'][0], SUCCESS)
        self.assertEqual(r['used_full'], 64 * MiB)
        self.assertEqual(r['info'], [0, 64 * MiB])
        self.assertEqual(r['over'], OUT_OF_MEMORY)
        self.assertEqual(r['used_after_oom'], 64 * MiB)
        self.assertEqual(r['free_b'], SUCCESS)
        self.assertEqual(r['refit'], SUCCESS)
        self.assertEqual(r['over2'], OUT_OF_MEMORY)
        self.assertEqual(r['live'], 3)

    def test_addresses_first_fit_and_reused(self):
        r = drive(self, """
            init()
            a = alloc(2**20)[1]; b = alloc(3 * 2**20 + 5)[1]; c = alloc(2**20)[1]
            R['first'] = [a, b, c]
            free(b)
            R['into_hole'] = alloc(4 * 2**20)[1]   # exactly b's two pages
            free(a)
            R['small_into_a'] = alloc(100)[1]
            R['next'] = alloc(2 * 2**20 + 1)[1]    # does not fit any hole: after c
            R['double_free'] = [free(c), free(c)]
            R['unknown'] = free(0x1234)
        """)
        self.assertEqual(r['first'], [BASE, BASE + PAGE, BASE + 3 * PAGE])
        self.assertEqual(r['into_hole'], BASE + PAGE)
        self.assertEqual(r['small_into_a'], BASE)
        self.assertEqual(r['next'], BASE + 4 * PAGE)
        self.assertEqual(r['double_free'], [SUCCESS, INVALID_VALUE])
        self.assertEqual(r['unknown'], INVALID_VALUE)

    def test_v1_allocations_below_4gib(self):
        r = drive(self, """
            init()
            p = c_uint()
            R['v1'] = [cu.cuMemAlloc(byref(p), c_uint(3 * 2**20)), p.value]
            R['v2'] = alloc(2**20)
            q, pitch = c_uint(), c_uint()
            R['pitch'] = [cu.cuMemAllocPitch(byref(q), byref(pitch), c_uint(1000), c_uint(10), c_uint(4)),
                          q.value, pitch.value]
            R['free_v1'] = [cu.cuMemFree(c_uint(R['v1'][1])), cu.cuMemFree(c_uint(q.value))]
            big = []
            for i in range(4):                     # the low region holds three 1 GiB allocations
                rc = cu.cuMemAlloc(byref(p), c_uint(2**30))
                big.append([rc, p.value if rc == 0 else None])
            R['big'] = big
            R['used'] = used()
        """)
        self.assertEqual(r['v1'], [SUCCESS, LOW_BASE])
        self.assertEqual(r['v2'], [SUCCESS, BASE])
        self.assertEqual(r['pitch'], [SUCCESS, LOW_BASE + 2 * PAGE, 1024])
        self.assertEqual(r['free_v1'], [SUCCESS, SUCCESS])
        self.assertEqual(r['big'], [[SUCCESS, LOW_BASE], [SUCCESS, LOW_BASE + GiB], [SUCCESS, LOW_BASE + 2 * GiB],
                                    [OUT_OF_MEMORY, None]])
        for rc, addr in r['big'][:3]:
            self.assertLessEqual(addr + GiB, 1 << 32)
        self.assertEqual(r['used'], 3 * GiB + PAGE)

    def test_errors_as_the_real_driver(self):
        r = drive(self, """
            R['before_init'] = [alloc(1)[0], cu.cuDeviceGetCount(byref(c_int())), cu.cuCtxGetCurrent(byref(c_void_p()))]
            R['version'] = [cu.cuDriverGetVersion(byref(c_int())), ]
            v = c_int(); cu.cuDriverGetVersion(byref(v)); R['version'].append(v.value)
            assert cu.cuInit(0) == 0
            R['no_ctx'] = [alloc(1)[0], cu.cuCtxSynchronize(), cu.cuMemFreeHost(c_void_p(1))]
            init()
            R['null_out'] = cu.cuMemAlloc_v2(None, c_size_t(1))
            R['zero'] = alloc(0)[0]
            R['bad_device'] = cu.cuDeviceGet(byref(c_int()), 7)
            R['stub'] = cu.cuTexObjectCreate()
            names = {}
            for code in (0, 1, 2, 3, 201, 801):
                s, n = c_char_p(), c_char_p()
                cu.cuGetErrorString(code, byref(s)); cu.cuGetErrorName(code, byref(n))
                names[code] = [n.value.decode(), s.value.decode()]
            R['names'] = names
            R['unknown_code'] = cu.cuGetErrorName(123456, byref(c_char_p()))
            attrs = {}
            for a in (75, 76, 16, 102, 115, 41):
                x = c_int(); cu.cuDeviceGetAttribute(byref(x), a, 0); attrs[a] = x.value
            R['attrs'] = attrs
        """)
        self.assertEqual(r['before_init'], [NOT_INITIALIZED] * 3)
        self.assertEqual(r['version'], [SUCCESS, 13000])
        self.assertEqual(r['no_ctx'], [INVALID_CONTEXT] * 3)
        self.assertEqual(r['null_out'], INVALID_VALUE)
        self.assertEqual(r['zero'], INVALID_VALUE)
        self.assertEqual(r['bad_device'], 101)
        self.assertEqual(r['stub'], NOT_SUPPORTED)
        self.assertEqual(r['names'], {
            "0": ["CUDA_SUCCESS", "no error"], "1": ["CUDA_ERROR_INVALID_VALUE", "invalid argument"],
            "2": ["CUDA_ERROR_OUT_OF_MEMORY", "out of memory"],
            "3": ["CUDA_ERROR_NOT_INITIALIZED", "initialization error"],
            "201": ["CUDA_ERROR_INVALID_CONTEXT", "invalid device context"],
            "801": ["CUDA_ERROR_NOT_SUPPORTED", "operation not supported"]})
        self.assertEqual(r['unknown_code'], INVALID_VALUE)
        # compute capability 9.0, 132 SMs, memory pools, VMM, unified addressing
        self.assertEqual(r['attrs'], {"75": 9, "76": 0, "16": 132, "102": 1, "115": 1, "41": 1})

    def test_current_context_is_per_thread(self):
        r = drive(self, """
            ctx = init()
            out = {}
            def other():
                c = c_void_p(5)
                out['current'] = [cu.cuCtxGetCurrent(byref(c)), c.value]
                out['alloc'] = alloc(1)[0]
                out['push'] = cu.cuCtxPushCurrent_v2(ctx)
                out['alloc_after_push'] = alloc(1)[0]
                pc = c_void_p()
                out['pop'] = [cu.cuCtxPopCurrent_v2(byref(pc)), pc.value == ctx.value, cu.cuCtxPopCurrent_v2(None)]
            t = threading.Thread(target=other); t.start(); t.join()
            R['thread'] = out
            mine = c_void_p()
            R['create'] = cu.cuCtxCreate_v4(byref(mine), None, 0, 0)
            cur = c_void_p(); cu.cuCtxGetCurrent(byref(cur))
            R['created_is_current'] = cur.value == mine.value
            R['in_created'] = alloc(5 * 2**20)[0]
            R['used_before_destroy'] = used()
            R['destroy'] = cu.cuCtxDestroy_v2(mine)
            R['used_after_destroy'] = used()        # the context's memory went with it
            R['primary_again'] = cur.value != ctx.value and alloc(1)[0]
            R['destroy_primary'] = cu.cuCtxDestroy_v2(ctx)
        """)
        self.assertEqual(r['thread'], {"current": [SUCCESS, None], "alloc": INVALID_CONTEXT, "push": SUCCESS,
                                       "alloc_after_push": SUCCESS, "pop": [SUCCESS, True, INVALID_CONTEXT]})
        self.assertEqual(r['create'], SUCCESS)
        self.assertTrue(r['created_is_current'])
        self.assertEqual(r['in_created'], SUCCESS)
        self.assertEqual(r['used_before_destroy'], 2 * MiB + 6 * MiB)
        self.assertEqual(r['destroy'], SUCCESS)
        self.assertEqual(r['used_after_destroy'], 2 * MiB)
        self.assertEqual(r['primary_again'], SUCCESS)
        self.assertEqual(r['destroy_primary'], INVALID_CONTEXT)

    def test_managed_is_charged_host_is_not_and_both_are_real_memory(self):
        r = drive(self, """
            init()
            m = c_uint64()
            R['managed'] = cu.cuMemAllocManaged(byref(m), c_size_t(3 * 2**20), 1)
            ctypes.memset(m.value, 0x5a, 3 * 2**20)
            R['used_managed'] = used()
            h = c_void_p()
            R['host'] = cu.cuMemHostAlloc(byref(h), c_size_t(8 * 2**20), 0)
            ctypes.memset(h.value, 0xa5, 8 * 2**20)
            R['used_host'] = used()
            src = ctypes.create_string_buffer(b'xyz', 3)
            R['htod_managed'] = cu.cuMemcpyHtoD_v2(m, src, c_size_t(3))
            R['managed_bytes'] = ctypes.string_at(m.value, 4).decode('latin-1')
            base, size = c_uint64(), c_size_t()
            R['range'] = [cu.cuMemGetAddressRange_v2(byref(base), byref(size), c_uint64(m.value + 100)),
                          base.value == m.value, size.value]
            d = alloc(2**20)[1]
            R['htod_past_end'] = cu.cuMemcpyHtoD_v2(c_uint64(d + 2**20 - 1), src, c_size_t(2))
            R['range_unknown'] = cu.cuMemGetAddressRange_v2(byref(base), byref(size), c_uint64(0x1000))
            R['free_host_as_device'] = free(h.value)
            R['frees'] = [cu.cuMemFreeHost(h), free(m.value), cu.cuMemFreeHost(h)]
            R['bad_flags'] = cu.cuMemAllocManaged(byref(m), c_size_t(1), 4)
            R['used_end'] = used()
        """)
        self.assertEqual(r['managed'], SUCCESS)
        self.assertEqual(r['used_managed'], 4 * MiB)
        self.assertEqual(r['host'], SUCCESS)
        self.assertEqual(r['used_host'], 4 * MiB)
        self.assertEqual(r['htod_managed'], SUCCESS)
        self.assertEqual(r['managed_bytes'], "xyzZ")
        self.assertEqual(r['range'], [SUCCESS, True, 3 * MiB])
        self.assertEqual(r['htod_past_end'], INVALID_VALUE)
        self.assertEqual(r['range_unknown'], NOT_FOUND)
        self.assertEqual(r['free_host_as_device'], INVALID_VALUE)
        self.assertEqual(r['frees'], [SUCCESS, SUCCESS, INVALID_VALUE])
        self.assertEqual(r['bad_flags'], INVALID_VALUE)
        self.assertEqual(r['used_end'], 2 * MiB)

    def test_pool_keeps_memory_until_synchronize(self):
        RESERVED_CUR, RESERVED_HIGH, USED_CUR, USED_HIGH, THRESHOLD = 5, 6, 7, 8, 4
        r = drive(self, """
            init()
            s = stream()
            pool = c_void_p(); cu.cuDeviceGetMemPool(byref(pool), 0)
            a = alloc_async(3 * 2**20, s)
            R['a'] = a
            R['after_alloc'] = [used(), pool_attr(pool, 5), pool_attr(pool, 7)]
            R['free'] = free_async(a[1], s)
            R['after_free'] = [used(), pool_attr(pool, 5), pool_attr(pool, 7), live()]
            R['reuse'] = alloc_async(3 * 2**20, s)        # the same chunk, no new capacity
            R['after_reuse'] = used()
            free_async(R['reuse'][1], s)
            R['sync'] = cu.cuStreamSynchronize_ptsz(s)
            R['after_sync'] = [used(), pool_attr(pool, 5)]
            thr = c_uint64(8 * 2**20)
            R['set_threshold'] = cu.cuMemPoolSetAttribute(pool, 4, byref(thr))
            x = alloc_async(6 * 2**20, s)[1]; y = alloc_async(4 * 2**20, s)[1]
            free_async(x, s); free_async(y, s)
            cu.cuCtxSynchronize()                          # 10 MiB reserved > 8: the newest chunk goes
            R['after_threshold_sync'] = [used(), pool_attr(pool, 5), pool_attr(pool, 6), pool_attr(pool, 8)]
            R['trim'] = cu.cuMemPoolTrimTo(pool, c_size_t(0))
            R['after_trim'] = [used(), pool_attr(pool, 5)]
            R['bad_stream'] = alloc_async(1, c_void_p(0x1234))[0]
        """)
        self.assertEqual(r['a'], [SUCCESS, BASE])
        # reserved is the 4 MiB chunk; used is what was asked, at 512-byte granularity (pool_used_bytes)
        self.assertEqual(r['after_alloc'], [4 * MiB, 4 * MiB, 3 * MiB])
        self.assertEqual(r['free'], SUCCESS)
        self.assertEqual(r['after_free'], [4 * MiB, 4 * MiB, 0, 0])
        self.assertEqual(r['reuse'], [SUCCESS, BASE])
        self.assertEqual(r['after_reuse'], 4 * MiB)
        self.assertEqual(r['sync'], SUCCESS)
        self.assertEqual(r['after_sync'], [0, 0])
        self.assertEqual(r['set_threshold'], SUCCESS)
        self.assertEqual(r['after_threshold_sync'], [6 * MiB, 6 * MiB, 10 * MiB, 10 * MiB])  # used high: 6 + 4
        self.assertEqual(r['trim'], SUCCESS)
        self.assertEqual(r['after_trim'], [0, 0])
        self.assertEqual(r['bad_stream'], 400)

    def test_pool_reserve_counts_against_capacity(self):
        r = drive(self, """
            init()
            s = stream()
            a = alloc_async(8 * 2**20, s)[1]
            free_async(a, s)
            R['while_reserved'] = alloc(10 * 2**20)[0]     # 8 of 16 MiB still held by the pool
            cu.cuStreamSynchronize(s)
            R['after_sync'] = alloc(10 * 2**20)[0]
            pool = c_void_p()
            props = (ctypes.c_byte * 88)()
            ctypes.memmove(props, (c_int * 4)(1, 0, 1, 0), 16)   # PINNED, no handles, DEVICE 0
            R['create'] = cu.cuMemPoolCreate(byref(pool), props)
            p = c_uint64()
            R['from_pool'] = cu.cuMemAllocFromPoolAsync_ptsz(byref(p), c_size_t(4 * 2**20), pool, s)
            R['used'] = used()
            R['destroy_default'] = cu.cuMemPoolDestroy(c_void_p(None))
            R['destroy'] = cu.cuMemPoolDestroy(pool)       # an allocation is outstanding
            R['used_after_destroy'] = used()
            R['free'] = free_async(p.value, s)
            R['used_end'] = used()
        """, memory="16MiB")
        self.assertEqual(r['while_reserved'], OUT_OF_MEMORY)
        self.assertEqual(r['after_sync'], SUCCESS)
        self.assertEqual(r['create'], SUCCESS)
        self.assertEqual(r['from_pool'], SUCCESS)
        self.assertEqual(r['used'], 14 * MiB)
        self.assertEqual(r['destroy_default'], INVALID_VALUE)
        self.assertEqual(r['destroy'], SUCCESS)
        self.assertEqual(r['used_after_destroy'], 14 * MiB)
        self.assertEqual(r['free'], SUCCESS)
        self.assertEqual(r['used_end'], 10 * MiB)

    def test_vmm_capacity_returns_when_unmapped_and_released(self):
        r = drive(self, """
            init()
            prop = device_prop()
            g = c_size_t()
            R['gran'] = [cu.cuMemGetAllocationGranularity(byref(g), byref(prop), 0), g.value]
            va = c_uint64()
            R['reserve'] = cu.cuMemAddressReserve(byref(va), c_size_t(16 * 2**20), c_size_t(0), c_uint64(0), c_uint64(0))
            R['after_reserve'] = used()
            R['bad_reserve'] = cu.cuMemAddressReserve(byref(c_uint64()), c_size_t(2**20), c_size_t(0), c_uint64(0), c_uint64(0))
            h = c_uint64()
            R['create'] = cu.cuMemCreate(byref(h), c_size_t(4 * 2**20), byref(prop), c_uint64(0))
            R['after_create'] = [used(), live()]
            R['bad_maps'] = [cu.cuMemMap(c_uint64(va.value + 14 * 2**20), c_size_t(4 * 2**20), c_size_t(0), h, c_uint64(0)),
                             cu.cuMemMap(va, c_size_t(3 * 2**20), c_size_t(0), h, c_uint64(0)),
                             cu.cuMemMap(c_uint64(0x1000000), c_size_t(4 * 2**20), c_size_t(0), h, c_uint64(0))]
            R['map'] = cu.cuMemMap(va, c_size_t(4 * 2**20), c_size_t(0), h, c_uint64(0))
            R['overlap'] = cu.cuMemMap(c_uint64(va.value + 2 * 2**20), c_size_t(2 * 2**20), c_size_t(0), h, c_uint64(0))
            d = AccessDesc(loc_type=1, loc_id=0, flags=3)
            R['access'] = cu.cuMemSetAccess(va, c_size_t(4 * 2**20), byref(d), c_size_t(1))
            R['access_unmapped'] = cu.cuMemSetAccess(va, c_size_t(8 * 2**20), byref(d), c_size_t(1))
            R['release'] = cu.cuMemRelease(h)
            R['after_release'] = [used(), live()]          # still mapped: still charged
            R['release_again'] = cu.cuMemRelease(h)
            R['free_mapped_va'] = cu.cuMemAddressFree(va, c_size_t(16 * 2**20))
            R['unmap'] = cu.cuMemUnmap(va, c_size_t(4 * 2**20))
            R['after_unmap'] = [used(), live()]
            # the other order: unmapped first, released last
            h2 = c_uint64()
            cu.cuMemCreate(byref(h2), c_size_t(2 * 2**20), byref(prop), c_uint64(0))
            cu.cuMemMap(va, c_size_t(2 * 2**20), c_size_t(0), h2, c_uint64(0))
            cu.cuMemUnmap(va, c_size_t(2 * 2**20))
            R['unmapped_not_released'] = used()
            cu.cuMemRelease(h2)
            R['released_last'] = used()
            R['address_free'] = cu.cuMemAddressFree(va, c_size_t(16 * 2**20))
        """, memory="64MiB")
        self.assertEqual(r['gran'], [SUCCESS, 2 * MiB])
        self.assertEqual(r['reserve'], SUCCESS)
        self.assertEqual(r['after_reserve'], 0)
        self.assertEqual(r['bad_reserve'], INVALID_VALUE)
        self.assertEqual(r['create'], SUCCESS)
        self.assertEqual(r['after_create'], [4 * MiB, 1])
        self.assertEqual(r['bad_maps'], [INVALID_VALUE] * 3)
        self.assertEqual(r['map'], SUCCESS)
        self.assertEqual(r['overlap'], INVALID_VALUE)
        self.assertEqual(r['access'], SUCCESS)
        self.assertEqual(r['access_unmapped'], INVALID_VALUE)
        self.assertEqual(r['release'], SUCCESS)
        self.assertEqual(r['after_release'], [4 * MiB, 1])
        self.assertEqual(r['release_again'], INVALID_VALUE)
        self.assertEqual(r['free_mapped_va'], INVALID_VALUE)
        self.assertEqual(r['unmap'], SUCCESS)
        self.assertEqual(r['after_unmap'], [0, 0])
        self.assertEqual(r['unmapped_not_released'], 2 * MiB)
        self.assertEqual(r['released_last'], 0)
        self.assertEqual(r['address_free'], SUCCESS)

    def test_fault_injection(self):
        r = drive(self, """
            init()
            R['allocs'] = [alloc(2**20) for _ in range(4)]
            R['used'] = used()
            prop = device_prop()
            h = c_uint64()
            R['create'] = [cu.cuMemCreate(byref(h), c_size_t(2 * 2**20), byref(prop), c_uint64(0)),
                           cu.cuMemCreate(byref(h), c_size_t(2 * 2**20), byref(prop), c_uint64(0))]
            good = [a[1] for a in R['allocs'] if a[0] == 0]
            R['frees'] = [free(p) for p in good]
            R['live'] = live()
            R['counts'] = [cu.simcuda_call_count(b"cuMemAlloc_v2"), cu.simcuda_call_count(b"cuMemFree_v2"),
                           cu.simcuda_call_count(b"cuMemCreate"), cu.simcuda_call_count(b"cuMemAlloc"),
                           cu.simcuda_call_count(b"noSuchFunction")]
        """, extra={"SIMCUDA_FAIL": "cuMemAlloc_v2:3:2,cuMemCreate:1:999,cuMemFree_v2:2+:1"})
        self.assertEqual([a[0] for a in r['allocs']], [SUCCESS, SUCCESS, OUT_OF_MEMORY, SUCCESS])
        self.assertEqual(r['allocs'][3][1], BASE + 2 * PAGE)  # the failed call allocated nothing
        self.assertEqual(r['used'], 3 * PAGE)
        self.assertEqual(r['create'], [999, SUCCESS])
        self.assertEqual(r['frees'], [SUCCESS, INVALID_VALUE, INVALID_VALUE])
        self.assertEqual(r['live'], 2 + 1)  # two allocations whose frees were failed, one VMM handle
        self.assertEqual(r['counts'], [4, 3, 2, 0, 0])

    def test_ipc_same_process_refused_other_process_maps(self):
        r = drive(self, """
            init()
            d = alloc(3 * 2**20)[1]
            hb = (ctypes.c_char * 64)()
            R['get'] = cu.cuIpcGetMemHandle(byref(hb), c_uint64(d))
            R['get_interior'] = cu.cuIpcGetMemHandle(byref(hb), c_uint64(d + 64))
            cu.cuIpcGetMemHandle(byref(hb), c_uint64(d))
            R['handle'] = bytes(hb).hex()
            class H(ctypes.Structure):
                _fields_ = [("reserved", ctypes.c_char * 64)]
            h = H(); ctypes.memmove(byref(h), hb, 64)
            R['same_process'] = [cu.cuIpcOpenMemHandle_v2(byref(c_uint64()), h, 1),
                                 cu.cuIpcOpenMemHandle(byref(c_uint64()), h, 1)]
        """)
        self.assertEqual(r['get'], SUCCESS)
        self.assertEqual(r['get_interior'], INVALID_VALUE)
        self.assertEqual(r['same_process'], [INVALID_CONTEXT, INVALID_CONTEXT])
        handle = bytes.fromhex(r['handle'])
        self.assertEqual(handle[:8], b"simcuIPC")
        self.assertEqual(int.from_bytes(handle[16:24], "little"), BASE)
        self.assertEqual(int.from_bytes(handle[24:32], "little"), 3 * MiB)
        r = drive(self, """
            init()
            first = alloc(2**20)[1]
            class H(ctypes.Structure):
                _fields_ = [("reserved", ctypes.c_char * 64)]
            h = H(); ctypes.memmove(byref(h), bytes.fromhex(sys.argv[1]), 64)
            p, q = c_uint64(), c_uint64()
            R['open'] = [cu.cuIpcOpenMemHandle_v2(byref(p), h, 1), p.value - first]
            R['open_again'] = [cu.cuIpcOpenMemHandle_v2(byref(q), h, 1), q.value == p.value]
            R['charged'] = [used(), live()]
            base, size = c_uint64(), c_size_t()
            R['range'] = [cu.cuMemGetAddressRange_v2(byref(base), byref(size), p), size.value]
            R['free_as_device'] = free(p.value)
            R['close'] = [cu.cuIpcCloseMemHandle(p), cu.cuIpcCloseMemHandle(p), cu.cuIpcCloseMemHandle(p)]
        """, args=[r['handle']])
        self.assertEqual(r['open'], [SUCCESS, PAGE])      # a fresh mapping of its own, after `first`
        self.assertEqual(r['open_again'], [SUCCESS, True])
        self.assertEqual(r['charged'], [2 * MiB, 1])       # only `first`: the mapping costs nothing
        self.assertEqual(r['range'], [SUCCESS, 3 * MiB])
        self.assertEqual(r['free_as_device'], INVALID_VALUE)
        self.assertEqual(r['close'], [SUCCESS, SUCCESS, INVALID_VALUE])

    def test_get_proc_address_contract(self):
        r = drive(self, """
            rows = [("cuMemAlloc", 2000, 0), ("cuMemAlloc", 3020, 0), ("cuMemAllocAsync", 11020, 2),
                    ("cuMemAllocAsync", 11020, 0), ("cuMemAllocAsync", 11010, 0), ("cuGetProcAddress", 11030, 0),
                    ("cuGetProcAddress", 12000, 0), ("cuStreamGetCaptureInfo", 10010, 0),
                    ("cuStreamGetCaptureInfo", 11030, 0), ("cuStreamGetCaptureInfo", 12030, 0),
                    ("cuIpcOpenMemHandle", 4010, 0), ("cuIpcOpenMemHandle", 11000, 0),
                    ("cuMemcpyHtoD", 3020, 2), ("cuMemcpyHtoD", 3020, 1), ("cuMemFree", 13000, 0),
                    ("", 0, 0), ("cuNoSuchThing", 13000, 0), ("cuMemAlloc_v2", 13000, 0)]
            names = {addr_of(n): n for n in ["cuMemAlloc", "cuMemAlloc_v2", "cuMemAllocAsync", "cuMemAllocAsync_ptsz",
                     "cuGetProcAddress", "cuGetProcAddress_v2", "cuStreamGetCaptureInfo", "cuStreamGetCaptureInfo_v2",
                     "cuStreamGetCaptureInfo_v3", "cuIpcOpenMemHandle", "cuIpcOpenMemHandle_v2",
                     "cuMemcpyHtoD_v2_ptds", "cuMemcpyHtoD_v2", "cuMemFree_v2"]}
            R['rows'] = [[rc, names.get(fn, fn), st] for rc, fn, st in (proc(*row) for row in rows)]
            fn = c_void_p()
            R['v1_abi'] = [cu.cuGetProcAddress(c_char_p(b"cuMemAlloc"), byref(fn), c_int(3020), c_uint64(0)),
                           names.get(fn.value)]
            R['too_new'] = proc("cuMemAlloc", 13010)[0]
            R['bad_flags'] = proc("cuMemAlloc", 3020, 4)[0]
            R['null'] = cu.cuGetProcAddress_v2(None, byref(fn), c_int(3020), c_uint64(0), None)
            R['count'] = cu.simcuda_call_count(b"cuGetProcAddress_v2")
        """)
        self.assertEqual(r['rows'], [
            [0, "cuMemAlloc", 0], [0, "cuMemAlloc_v2", 0], [0, "cuMemAllocAsync_ptsz", 0], [0, "cuMemAllocAsync", 0],
            [0, None, 2], [0, "cuGetProcAddress", 0], [0, "cuGetProcAddress_v2", 0], [0, "cuStreamGetCaptureInfo", 0],
            [0, "cuStreamGetCaptureInfo_v2", 0], [0, "cuStreamGetCaptureInfo_v3", 0], [0, "cuIpcOpenMemHandle", 0],
            [0, "cuIpcOpenMemHandle_v2", 0], [0, "cuMemcpyHtoD_v2_ptds", 0], [0, "cuMemcpyHtoD_v2", 0],
            [0, "cuMemFree_v2", 0], [0, None, 1], [0, None, 1], [0, None, 1]])
        self.assertEqual(r['v1_abi'], [SUCCESS, "cuMemAlloc_v2"])
        self.assertEqual(r['too_new'], INVALID_VALUE)
        self.assertEqual(r['bad_flags'], INVALID_VALUE)
        self.assertEqual(r['null'], INVALID_VALUE)
        self.assertEqual(r['count'], 21)  # 18 rows, too_new, bad_flags, null

    def test_threads_allocate_concurrently(self):
        r = drive(self, """
            init()
            ctx = c_void_p(); cu.cuCtxGetCurrent(byref(ctx))
            errors = []
            def worker():
                cu.cuCtxSetCurrent(ctx)
                for i in range(200):
                    rc, p = alloc((i % 7 + 1) * 2**20)
                    if rc or free(p):
                        errors.append(rc)
            ts = [threading.Thread(target=worker) for _ in range(8)]
            [t.start() for t in ts]; [t.join() for t in ts]
            R['errors'] = errors
            R['end'] = [used(), live(), cu.simcuda_call_count(b"cuMemAlloc_v2"), cu.simcuda_call_count(b"cuMemFree_v2")]
        """)
        self.assertEqual(r['errors'], [])
        self.assertEqual(r['end'], [0, 0, 1600, 1600])

    def test_every_concrete_name_is_exported(self):
        table = load_procs()
        names = sorted({c for v in table.values() for _, c, _ in v} | {p for v in table.values() for _, _, p in v if p})
        r = drive(self, """
            R['missing'] = [n for n in json.loads(sys.argv[1]) if not hasattr(cu, n)]
        """, args=[json.dumps(names)])
        self.assertEqual(r['missing'], [])
        self.assertGreater(len(names), 650)

    def test_stream_capture_records_nodes_and_runs_nothing(self):
        # A capture on stream s (global mode): copies, memsets and host functions become nodes and do not
        # run; s2 joins by waiting for an event recorded in it; the graph instantiates and launches (nothing
        # runs then either); an executable graph outlives cuGraphDestroy of its graph, as PyTorch needs.
        r = drive(self, """
            ctx = init()
            s, s2 = stream(), stream()
            def capturing(st):
                v = c_int(-1); rc = cu.cuStreamIsCapturing(st, byref(v)); return [rc, v.value]
            def info(st):
                v, i, g = c_int(-1), c_uint64(99), c_void_p()
                rc = cu.cuStreamGetCaptureInfo_v3(st, byref(v), byref(i), byref(g), None, None, None)
                return [rc, v.value, i.value, g.value is not None]
            def mode(m):
                v = c_int(m); assert cu.cuThreadExchangeStreamCaptureMode(byref(v)) == 0; return v.value
            def end(st):
                g = c_void_p(); rc = cu.cuStreamEndCapture(st, byref(g)); return rc, g
            calls = []
            HOSTFN = ctypes.CFUNCTYPE(None, c_void_p)
            hostfn = HOSTFN(lambda _: calls.append(1))
            p = alloc(4096)[1]
            host = (ctypes.c_ubyte * 4096)()
            cu.cuMemsetD8_v2(c_uint64(p), 0, c_size_t(4096))
            R['idle'] = [capturing(s), info(s)]
            R['legacy'] = cu.cuStreamBeginCapture_v2(None, 0)
            R['begin'] = cu.cuStreamBeginCapture_v2(s, 0)
            R['again'] = cu.cuStreamBeginCapture_v2(s, 0)
            R['active'] = [capturing(s), info(s), capturing(s2)]
            R['ops'] = [cu.cuMemsetD8Async(c_uint64(p), 7, c_size_t(4096), s),
                        cu.cuMemcpyDtoHAsync_v2(host, c_uint64(p), c_size_t(16), s),
                        cu.cuLaunchHostFunc(s, hostfn, None)]
            ev = c_void_p(); cu.cuEventCreate(byref(ev), 0)
            R['join'] = [cu.cuEventRecord(ev, s), cu.cuStreamWaitEvent(s2, ev, 0), info(s2)]
            R['s2_memset'] = cu.cuMemsetD32Async(c_uint64(p), 1, c_size_t(4), s2)
            R['end_on_s2'] = end(s2)[0]
            R['sync_memset_runs'] = cu.cuMemsetD8_v2(c_uint64(p + 4095), 5, c_size_t(1))  # not on a stream
            old = mode(2)                                     # relaxed: cuMemAlloc allowed meanwhile
            R['relaxed_alloc'] = alloc(4096)[0]
            mode(old)
            rc, g = end(s)
            R['end'] = [rc, g.value is not None, capturing(s), capturing(s2)]
            n = c_size_t(0)
            R['nodes'] = cu.cuGraphGetNodes(g, None, byref(n)), n.value
            nodes = (c_void_p * 6)(); room = c_size_t(6)                # room for 6: 2 left NULL
            R['room'] = [cu.cuGraphGetNodes(g, nodes, byref(room)), room.value, [x is None for x in nodes]]
            types = []
            for x in nodes[:n.value]:
                t = c_int(-1); cu.cuGraphNodeGetType(c_void_p(x), byref(t)); types.append(t.value)
            R['types'] = types
            x = c_void_p()
            R['instantiate'] = cu.cuGraphInstantiateWithFlags(byref(x), g, c_uint64(1))
            R['destroy_graph'] = cu.cuGraphDestroy(g)
            R['launch'] = [cu.cuGraphUpload(x, s), cu.cuGraphLaunch(x, s), cu.cuGraphLaunch(x, s),
                           cu.cuStreamSynchronize(s)]
            cu.cuMemcpyDtoH_v2(host, c_uint64(p), c_size_t(4096))
            R['memory'] = [host[0], host[4095], len(calls)]    # the memset never ran, the host function neither
            R['exec_destroy'] = cu.cuGraphExecDestroy(x)
            # unsafe calls in a global capture invalidate it
            R['begin2'] = cu.cuStreamBeginCapture_v2(s, 0)
            R['unsafe'] = [alloc(4096)[0], free(p), capturing(s),
                           cu.cuMemsetD8Async(c_uint64(p), 7, c_size_t(1), s), end(s)[0], capturing(s)]
            # a thread-local capture forbids its own thread only; synchronizing the stream is refused
            R['begin3'] = cu.cuStreamBeginCapture_v2(s, 1)
            other = []
            t = threading.Thread(target=lambda: other.extend([cu.cuCtxSetCurrent(ctx), alloc(4096)[0], end(s)[0]])); t.start(); t.join()
            R['thread_local'] = [other, cu.cuStreamSynchronize(s), capturing(s)[1], end(s)[0]]
            # the legacy stream breaks a capture of a blocking stream
            R['begin4'] = cu.cuStreamBeginCapture_v2(s, 2)
            R['implicit'] = [cu.cuMemsetD8Async(c_uint64(p), 1, c_size_t(1), None), capturing(s)[1], end(s)[0]]
        """)
        self.assertEqual(r['idle'], [[SUCCESS, 0], [SUCCESS, 0, 0, False]])
        self.assertEqual((r['legacy'], r['begin'], r['again']), (900, SUCCESS, 401))  # UNSUPPORTED, ILLEGAL_STATE
        self.assertEqual(r['active'], [[SUCCESS, 1], [SUCCESS, 1, 1, True], [SUCCESS, 0]])
        self.assertEqual(r['ops'], [SUCCESS] * 3)
        self.assertEqual(r['join'], [SUCCESS, SUCCESS, [SUCCESS, 1, 1, True]])
        self.assertEqual(r['s2_memset'], SUCCESS)
        self.assertEqual(r['end_on_s2'], 903)  # CUDA_ERROR_STREAM_CAPTURE_UNMATCHED
        self.assertEqual((r['sync_memset_runs'], r['relaxed_alloc']), (SUCCESS, SUCCESS))
        self.assertEqual(r['end'], [SUCCESS, True, [SUCCESS, 0], [SUCCESS, 0]])
        self.assertEqual(r['nodes'], [SUCCESS, 4])
        self.assertEqual(r['room'], [SUCCESS, 4, [False] * 4 + [True] * 2])
        self.assertEqual(r['types'], [2, 1, 3, 2])  # memset, memcpy, host, memset (s2's)
        self.assertEqual((r['instantiate'], r['destroy_graph']), (SUCCESS, SUCCESS))
        self.assertEqual(r['launch'], [SUCCESS] * 4)
        self.assertEqual(r['memory'], [0, 5, 0])
        self.assertEqual(r['exec_destroy'], SUCCESS)
        # UNSUPPORTED twice (each invalidates), then INVALIDATED for more work and at the end
        self.assertEqual((r['begin2'], r['unsafe']), (SUCCESS, [900, 900, [SUCCESS, 2], 901, 901, [SUCCESS, 0]]))
        # the other thread may allocate, but not end a thread-local capture (WRONG_THREAD)
        self.assertEqual((r['begin3'], r['thread_local']), (SUCCESS, [[SUCCESS, SUCCESS, 908], 900, 2, 901]))
        self.assertEqual((r['begin4'], r['implicit']), (SUCCESS, [906, 2, 901]))  # IMPLICIT


@unittest.skipUnless(os.path.exists(CUDART_LIKE), "cudart_like not built")
class CudartLikeTest(unittest.TestCase):

    def setUp(self):
        if not os.path.exists(LOOKUPS):
            self.skipTest("../shared/data/cudart13-lookups.tsv is not present beside the checkout")

    def run_cudart_like(self, *args, extra=None):
        return cmtlib.run([CUDART_LIKE, LOOKUPS] + list(args), cmtlib.sim_env(preload=False, extra=extra))

    def check_rows(self, lines):
        table = load_procs()
        rows = [l.rstrip("\n").split("\t") for l in open(LOOKUPS)][1:]
        self.assertEqual(len(rows), 440)
        self.assertEqual(len(lines), 440)
        for (name, ver, flags), line in zip(rows, lines):
            want, status = expected_lookup(table, name, int(ver), int(flags))
            if name == "":
                self.assertEqual(line, "\t0\t0\t0\t1\t-\t-")
                continue
            self.assertIsNotNone(want, "row %s %s %s must resolve" % (name, ver, flags))
            self.assertEqual(line, "\t".join([name, ver, flags, "0", "0", want, "libcuda.so.1"]))

    def test_every_tsv_row_resolves(self):
        p = self.run_cudart_like()
        self.check_rows(p.stdout.splitlines())
        self.assertEqual(p.stderr, "")
        out = dict((l.split("\t")[0] + "@" + l.split("\t")[1] + "/" + l.split("\t")[2], l.split("\t")[5])
                   for l in p.stdout.splitlines())
        self.assertEqual(out["cuMemAllocAsync@11020/2"], "cuMemAllocAsync_ptsz")
        self.assertEqual(out["cuMemcpyHtoD@7000/2"], "cuMemcpyHtoD_v2_ptds")
        self.assertEqual(out["cuGetProcAddress@11030/0"], "cuGetProcAddress")

    def test_alloc_mode(self):
        p = self.run_cudart_like("alloc")
        lines = p.stdout.splitlines()
        self.check_rows(lines[:440])
        b = BASE
        self.assertEqual(lines[440:], [
            "alloc 0x%x 1048576" % b, "alloc 0x%x 3145733" % (b + PAGE), "alloc 0x%x 67108864" % (b + 3 * PAGE),
            "free 0x%x" % b, "alloc 0x%x 1048576" % b,
            "alloc 0x%x 2097152" % (b + 35 * PAGE), "alloc 0x%x 5242880" % (b + 36 * PAGE),
            "free 0x%x" % (b + 35 * PAGE), "free 0x%x" % (b + 36 * PAGE),
            "free 0x%x" % b, "free 0x%x" % (b + PAGE), "free 0x%x" % (b + 3 * PAGE)])

    @unittest.skipUnless(os.path.exists(SHADOW), "libsimcuda_shadow.so not built")
    def test_pointers_bind_to_the_driver_not_to_a_preloaded_library(self):
        # -Bsymbolic: with same-named functions preloaded, cuGetProcAddress still hands out its own.
        p = self.run_cudart_like("alloc", extra={"LD_PRELOAD": SHADOW})
        lines = p.stdout.splitlines()
        self.check_rows(lines[:440])
        self.assertEqual(lines[440], "alloc 0x%x 1048576" % BASE)


@unittest.skipUnless(os.path.exists(TRAIN_SIM), "train_sim not built")
class TrainSimTest(unittest.TestCase):

    def test_runs_out_of_memory_in_step_4_at_8gib(self):
        p = cmtlib.run([TRAIN_SIM], cmtlib.sim_env(memory="8GiB", preload=False))
        self.assertEqual(len(p.stdout.splitlines()), 1)
        self.assertIn("completed=3 oom_step=4 ", p.stdout)
        self.assertIn("CUDA out of memory. Tried to allocate 256.00 MiB. GPU 0 has a total capacity of 8.00 GiB",
                      p.stderr)

    def test_completes_at_24gib(self):
        p = cmtlib.run([TRAIN_SIM, "--steps", "5"], cmtlib.sim_env(memory="24GiB", preload=False))
        self.assertIn("completed=5 oom_step=-1 ", p.stdout)
        self.assertEqual(p.stderr, "")

    def test_options(self):
        p = cmtlib.run([TRAIN_SIM, "--steps", "2", "--layers", "2", "--hidden", "256"],
                       cmtlib.sim_env(memory="8GiB", preload=False))
        self.assertIn("layers=2 hidden=256 steps=2 completed=2 oom_step=-1 ", p.stdout)
        p = cmtlib.run([TRAIN_SIM, "--help"], cmtlib.sim_env(preload=False))
        for opt in ("--steps", "--layers", "--hidden", "--tokens"):
            self.assertIn(opt, p.stdout)
        p = cmtlib.run([TRAIN_SIM, "--bogus"], cmtlib.sim_env(preload=False), check=False)
        self.assertEqual(p.returncode, 2)


if __name__ == "__main__":
    unittest.main()
