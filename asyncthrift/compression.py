"""`asyncthrift.compression`, the path README.md and docs/ show, re-exported: the module lives
in `asyncthrift.savings.compression`, in its layer."""

from .savings.compression import (
    Compressible as Compressible,
)
from .savings.compression import (
    Compressor as Compressor,
)
from .savings.compression import (
    compress_kwargs as compress_kwargs,
)
from .savings.compression import (
    compression_overrides as compression_overrides,
)
from .savings.compression import (
    enable_compression as enable_compression,
)

__all__ = [
    "Compressible",
    "Compressor",
    "compress_kwargs",
    "compression_overrides",
    "enable_compression",
]
