"""`asyncthrift.logging`, the path README.md and docs/ show, re-exported: the module lives
in `asyncthrift.observability.request_log`, in its layer."""

from .observability.request_log import *  # noqa: F403 (exactly its `__all__`)
from .observability.request_log import __all__ as __all__
