"""`asyncthrift.logging`, the path README.md and docs/ show, re-exported: the module lives
in `asyncthrift.observability.request_log`, in its layer."""

from .observability.request_log import (
    JsonFormatter as JsonFormatter,
)
from .observability.request_log import (
    RedactingFilter as RedactingFilter,
)
from .observability.request_log import (
    RequestLog as RequestLog,
)
from .observability.request_log import (
    configure_logging as configure_logging,
)
from .observability.request_log import (
    redact as redact,
)

__all__ = [
    "JsonFormatter",
    "RedactingFilter",
    "RequestLog",
    "configure_logging",
    "redact",
]
