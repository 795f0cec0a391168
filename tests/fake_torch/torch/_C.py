"""torch._C stand-in: the out-of-memory observer registry."""
_oom_observers = []


def _cuda_attach_out_of_memory_observer(cb):
    _oom_observers.append(cb)
