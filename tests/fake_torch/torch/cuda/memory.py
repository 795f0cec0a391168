"""torch.cuda.memory stand-in: _record_memory_history and _snapshot."""
import os
import pickle

recording = None


class _NoGlobals(pickle.Unpickler):
    def find_class(self, module, name):
        raise pickle.UnpicklingError("global %s.%s refused" % (module, name))


def _record_memory_history(enabled="all", context="all", stacks="all", max_entries=9223372036854775807,
                           device=None, clear_history=False):
    global recording
    recording = {"max_entries": max_entries, "stacks": stacks}
    from . import _log
    _log("record max_entries=%s stacks=%s" % (max_entries, stacks))


def _snapshot(device=None):
    from . import _log
    _log("snapshot")
    with open(os.environ["FAKE_TORCH_SNAPSHOT"], "rb") as f:
        return _NoGlobals(f).load()
