"""`asyncthrift.metrics`, the path README.md and docs/ show, re-exported: the module lives
in `asyncthrift.observability.metrics`, in its layer."""

from .observability.metrics import *  # noqa: F403 (exactly its `__all__`)
from .observability.metrics import __all__ as __all__
