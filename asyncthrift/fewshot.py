"""`asyncthrift.fewshot`, the path README.md and docs/ show, re-exported: the module lives
in `asyncthrift.savings.fewshot`, in its layer."""

from .savings.fewshot import (
    Example as Example,
)
from .savings.fewshot import (
    FewShotPool as FewShotPool,
)

__all__ = [
    "Example",
    "FewShotPool",
]
