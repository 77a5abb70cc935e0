"""`asyncthrift.compression`, the path README.md and docs/ show, re-exported: the module lives
in `asyncthrift.savings.compression`, in its layer."""

from .savings.compression import *  # noqa: F403 (exactly its `__all__`)
from .savings.compression import __all__ as __all__
