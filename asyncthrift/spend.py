"""`asyncthrift.spend`, the path README.md and docs/ show, re-exported: the module lives
in `asyncthrift.stores.spend`, in its layer."""

from .stores.spend import (
    SPEND_PERIODS as SPEND_PERIODS,
)
from .stores.spend import (
    SpendCap as SpendCap,
)
from .stores.spend import (
    SpendHold as SpendHold,
)
from .stores.spend import (
    SpendLedger as SpendLedger,
)
from .stores.spend import (
    SpendPeriod as SpendPeriod,
)
from .stores.spend import (
    check_limit as check_limit,
)
from .stores.spend import (
    check_period as check_period,
)
from .stores.spend import (
    period_id as period_id,
)
from .stores.spend import (
    period_seconds as period_seconds,
)

__all__ = [
    "SPEND_PERIODS",
    "SpendCap",
    "SpendHold",
    "SpendLedger",
    "SpendPeriod",
    "check_limit",
    "check_period",
    "period_id",
    "period_seconds",
]
