"""`asyncthrift.spend_redis`, the path README.md and docs/ show, re-exported: the module lives
in `asyncthrift.stores.spend_redis`, in its layer."""

from .stores.spend_redis import *  # noqa: F403 (exactly its `__all__`)
from .stores.spend_redis import __all__ as __all__
