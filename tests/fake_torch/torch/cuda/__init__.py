"""torch.cuda stand-in: lazy initialization as PyTorch does it (_lazy_call queues until init())."""
import os

from . import memory  # noqa: F401

_initialized = False
_queued = []


def _log(line):
    path = os.environ.get("FAKE_TORCH_LOG")
    if path:
        with open(path, "a") as f:
            f.write(line + "\n")


def is_initialized():
    return _initialized


def _lazy_call(fn):
    if _initialized:
        fn()
    else:
        _queued.append(fn)


def init():
    global _initialized
    if _initialized:
        return
    _initialized = True
    _log("cuda init")
    for fn in _queued:
        fn()


def fake_oom(device=0, alloc=1 << 30, device_allocated=0, device_free=0):
    """What the caching allocator does before raising OutOfMemoryError: call every observer."""
    from .. import _C
    for cb in _C._oom_observers:
        cb(device, alloc, device_allocated, device_free)
