"""`asyncthrift.counting`, the path README.md and docs/ show, re-exported: the module lives
in `asyncthrift.client.counting`, in its layer."""

from .client.counting import *  # noqa: F403 (exactly its `__all__`)
from .client.counting import __all__ as __all__
