"""`asyncthrift.fewshot`, the path README.md and docs/ show, re-exported: the module lives
in `asyncthrift.savings.fewshot`, in its layer."""

from .savings.fewshot import *  # noqa: F403 (exactly its `__all__`)
from .savings.fewshot import __all__ as __all__
