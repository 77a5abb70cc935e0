"""The fallback mode of a `SharedBudget`: admitting locally while Redis is unreachable.

Kept apart from the shared path because it is a different regime with its own budget: a
`LocalBudget` of a conservative share of the limits (or nothing, ``fallback="closed"``),
entered when the store's circuit breaker opens and left, with the debt it ran up charged,
when Redis answers again.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from ..bucket import Cost
from ..budget import LocalBudget
from ._tuning import _CLOSED, _FALLBACK, _SHARED

if TYPE_CHECKING:
    from .budget import SharedBudget

__all__ = ["enter_fallback", "fit", "rejoin"]

log = logging.getLogger("asyncthrift.shared")


def fit(cost: Cost, fb: LocalBudget) -> Cost:
    """`cost` cut to the fallback's capacities (a big request must still go, eventually)."""
    b = fb.buckets
    return Cost(*(c if bk is None else min(c, bk.capacity) for c, bk in zip(cost, b, strict=True)))


def enter_fallback(b: SharedBudget, now: float) -> None:
    """Redis is unreachable: admit from a local share of the limits until it answers."""
    share = b._store.fallback_share(b.processes)
    held = [b._lease[i] + b._pending[i] for i in range(3)]
    if share is None:
        b._mode = _CLOSED
        b._fb = None
    else:
        fb = LocalBudget(b.limits.scaled(share), now, name=f"{b.name}/fallback", hold_bursts=False)
        for i, bucket in enumerate(fb.buckets):
            # starts with what the lease held, no more: grants still to be paid for at a
            # later instant (reserved ahead) are not there yet, so not usable now either
            if bucket is not None:
                bucket.clamp(max(0.0, b._lease[i]), now)
        b._fb = fb
        b._mode = _FALLBACK
    # the lease was charged to Redis already: only what is admitted beyond it is debt
    b._fb_debt = [-held[i] for i in range(3)]
    b._fb_debt_base = list(b._fb_debt)  # charged again if Redis gave that lease back
    b.fallback_lease += max(0.0, b._lease[0])
    b._lease = [0.0, 0.0, 0.0]
    b._pending = [0.0, 0.0, 0.0]
    b._pots.clear()
    b._head = None
    log.warning(
        "shared budget %s: Redis unreachable; admitting from %s",
        b.name,
        "nothing (fallback='closed')" if share is None else f"a local share of {share:.3g}",
    )
    b._wake()


def rejoin(b: SharedBudget, res: list[str], *, loop_now: float) -> None:
    """Redis answered (and took the debt): admit from shared leases again."""
    b.processes = max(1, int(res[6]))
    b._mode = _SHARED
    b._fb = None
    b._fb_debt = [0.0, 0.0, 0.0]
    b._last_take = loop_now
    log.info("shared budget %s: Redis answers again; admitting from shared leases", b.name)
    b._wake()
