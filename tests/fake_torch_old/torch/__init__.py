"""A torch whose API differs (no memory history at all): the bootstrap must say so once and step aside."""
from . import cuda  # noqa: F401
