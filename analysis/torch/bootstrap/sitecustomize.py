"""cumemtrace's `run --torch` bootstrap: put first on PYTHONPATH by the launcher (cmd_run.c), imported by
Python at start-up as `sitecustomize`.

Runs inside the profiled Python program, so it must never change what the program does: every failure is
caught and said in one line on stderr, and the program goes on. It does nothing until the program itself
imports torch; then, once CUDA is initialized (torch.cuda._lazy_call), it turns on
torch.cuda.memory._record_memory_history (CUMEMTRACE_TORCH_MAX_ENTRIES entries, default 100000; stacks
CUMEMTRACE_TORCH_STACKS: all (Python and C++, the default) or python), attaches an out-of-memory observer
(torch._C._cuda_attach_out_of_memory_observer) that writes a snapshot at every OOM, and writes one more at
exit. Snapshots go to $CUMEMTRACE_TORCH_SNAPSHOT.PID.exit.pickle and .PID.oomN.pickle; the launcher
imports them into the trace once the program has ended.

Any sitecustomize the program had (later on sys.path) is still run: we load it under another name.
"""
import os
import sys

_PREFIX = os.environ.get("CUMEMTRACE_TORCH_SNAPSHOT")
_HERE = os.path.dirname(os.path.abspath(__file__))


def _say(msg):
    try:
        sys.stderr.write("cumemtrace: torch bootstrap: %s\n" % msg)
    except Exception:  # stderr closed: nothing more to do
        pass


def _chain():
    """Runs the sitecustomize we shadow, if there is one."""
    try:
        import importlib.machinery
        import importlib.util
        paths = [p for p in sys.path if os.path.abspath(p or ".") != _HERE]
        spec = importlib.machinery.PathFinder.find_spec("sitecustomize", paths)
        if spec is None or spec.loader is None:
            return
        mod = importlib.util.module_from_spec(spec)
        sys.modules["_cumemtrace_chained_sitecustomize"] = mod
        spec.loader.exec_module(mod)
    except Exception as e:
        _say("the program's own sitecustomize failed: %s: %s" % (type(e).__name__, e))


_state = {"armed": False, "ooms": 0, "done": False}


def _dump(kind):
    import pickle
    import torch
    snap = torch.cuda.memory._snapshot()
    path = "%s.%d.%s.pickle" % (_PREFIX, os.getpid(), kind)
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        pickle.dump(snap, f, protocol=4)
    os.replace(tmp, path)


def _on_oom(*args):
    try:
        _state["ooms"] += 1
        _dump("oom%d" % _state["ooms"])
    except Exception as e:
        _say("cannot write the snapshot at an out-of-memory: %s: %s" % (type(e).__name__, e))


def _at_exit():
    if not _state["armed"] or _state["done"]:
        return
    _state["done"] = True
    try:
        _dump("exit")
    except Exception as e:
        _say("cannot write the snapshot at exit: %s: %s" % (type(e).__name__, e))


def _enable():
    if _state["armed"]:
        return
    try:
        import torch
        try:
            entries = int(os.environ.get("CUMEMTRACE_TORCH_MAX_ENTRIES", "100000"))
        except ValueError:
            entries = 100000
        stacks = os.environ.get("CUMEMTRACE_TORCH_STACKS", "all")
        if stacks not in ("all", "python"):
            stacks = "all"
        torch.cuda.memory._record_memory_history(max_entries=entries, stacks=stacks)
        _state["armed"] = True
        import atexit
        atexit.register(_at_exit)
    except Exception as e:
        _say("cannot record the allocator's history (%s: %s); tracing the driver only" % (type(e).__name__, e))
        return
    try:
        torch._C._cuda_attach_out_of_memory_observer(_on_oom)
    except Exception as e:
        _say("no out-of-memory observer (%s: %s); the snapshot at exit still holds the oom entries"
             % (type(e).__name__, e))


def _torch_imported(torch):
    """Called once `import torch` has finished."""
    try:
        cuda = torch.cuda
        if cuda.is_initialized():
            _enable()
        else:
            cuda._lazy_call(_enable)  # runs when the program first initializes CUDA
    except Exception as e:
        _say("cannot hook CUDA initialization (%s: %s); tracing the driver only" % (type(e).__name__, e))


class _WatchTorch:
    """A meta-path finder that lets the real finders find torch, then runs our hook after it executed."""

    def find_spec(self, name, path=None, target=None):
        if name != "torch":
            return None
        try:
            sys.meta_path.remove(self)  # once: the hook needs torch, not its submodules
        except ValueError:
            pass
        try:
            import importlib.util
            spec = importlib.util.find_spec(name)
        except Exception:
            return None
        if spec is None or spec.loader is None or not hasattr(spec.loader, "exec_module"):
            return spec
        real = spec.loader

        class _Loader:
            def __getattr__(self, attr):  # get_resource_reader, is_package, ...: the real loader's
                return getattr(real, attr)

            def create_module(self, s):
                return real.create_module(s)

            def exec_module(self, module):
                real.exec_module(module)
                _torch_imported(module)

        spec.loader = _Loader()
        return spec


def _install():
    if not _PREFIX:
        return
    try:
        if "torch" in sys.modules:
            _torch_imported(sys.modules["torch"])
        else:
            sys.meta_path.insert(0, _WatchTorch())
    except Exception as e:
        _say("cannot watch for torch (%s: %s)" % (type(e).__name__, e))


_install()
_chain()
