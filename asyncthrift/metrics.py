"""`asyncthrift.metrics`, the path README.md and docs/ show, re-exported: the module lives
in `asyncthrift.observability.metrics`, in its layer."""

from .observability.metrics import (
    DEFAULT_BUCKETS as DEFAULT_BUCKETS,
)
from .observability.metrics import (
    Observer as Observer,
)
from .observability.metrics import (
    PrometheusMetrics as PrometheusMetrics,
)
from .observability.metrics import (
    RequestRecord as RequestRecord,
)
from .observability.metrics import (
    Tracing as Tracing,
)
from .observability.metrics import (
    lane_name as lane_name,
)
from .observability.metrics import (
    outcome_of as outcome_of,
)
from .observability.metrics import (
    status_of as status_of,
)

__all__ = [
    "DEFAULT_BUCKETS",
    "Observer",
    "PrometheusMetrics",
    "RequestRecord",
    "Tracing",
    "lane_name",
    "outcome_of",
    "status_of",
]
