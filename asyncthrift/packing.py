"""`asyncthrift.packing`, the path README.md and docs/ show, re-exported: the module lives
in `asyncthrift.savings.packing`, in its layer."""

from .savings.packing import *  # noqa: F403 (exactly its `__all__`)
from .savings.packing import __all__ as __all__
