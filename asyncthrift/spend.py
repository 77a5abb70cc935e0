"""`asyncthrift.spend`, the path README.md and docs/ show, re-exported: the module lives
in `asyncthrift.stores.spend`, in its layer."""

from .stores.spend import *  # noqa: F403 (exactly its `__all__`)
from .stores.spend import __all__ as __all__
