"""`asyncthrift.packing`, the path README.md and docs/ show, re-exported: the module lives
in `asyncthrift.savings.packing`, in its layer."""

from .savings.packing import (
    Pack as Pack,
)
from .savings.packing import (
    Packer as Packer,
)

__all__ = [
    "Pack",
    "Packer",
]
