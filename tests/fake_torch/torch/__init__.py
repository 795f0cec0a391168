"""A stand-in for PyTorch in tests (no GPU, no torch here): the few functions `cumemtrace run --torch`'s
bootstrap uses, with PyTorch's names and signatures. The snapshot it returns is a real one from the shared
data, named by $FAKE_TORCH_SNAPSHOT; calls are logged to $FAKE_TORCH_LOG (one line each).
"""
from . import _C, cuda  # noqa: F401

__version__ = "0.0.0+fake"
