"""The fallback mode of a `SharedBudget`: admitting locally while Redis is unreachable.

Kept apart from the shared path because it is a different regime with its own budget: a
`LocalBudget` of a conservative share of the limits (or nothing, ``fallback="closed"``),
entered when the store's circuit breaker opens and left, with the debt it ran up charged,
when Redis answers again. `FallbackBooks` is a base of `SharedBudget`: these are its own
methods, over the lease's state (`_lease.LeaseBooks`).
"""

from __future__ import annotations

import logging

from ...scheduling.bucket import Cost
from ...scheduling.budget import LocalBudget
from ._lease import LeaseBooks
from ._tuning import _CLOSED, _FALLBACK, _INF, _SHARED

__all__ = ["FallbackBooks", "fit"]

log = logging.getLogger("asyncthrift.shared")


def fit(cost: Cost, fb: LocalBudget) -> Cost:
    """`cost` cut to the fallback's capacities (a big request must still go, eventually)."""
    b = fb.buckets
    return Cost(*(c if bk is None else min(c, bk.capacity) for c, bk in zip(cost, b, strict=True)))


class FallbackBooks(LeaseBooks):
    """How a `SharedBudget` enters and leaves the fallback regime."""

    __slots__ = ()

    def _enter_fallback(self, now: float) -> None:
        """Redis is unreachable: admit from a local share of the limits until it answers."""
        share = self._store.fallback_share(self.processes)
        held = [self._lease[i] + self._pending[i] for i in range(3)]
        if share is None:
            self._mode = _CLOSED
            self._fb = None
        else:
            fb = LocalBudget(
                self.limits.scaled(share), now, name=f"{self.name}/fallback", hold_bursts=False
            )
            for i, bucket in enumerate(fb.buckets):
                # starts with what the lease held, no more: grants still to be paid for at a
                # later instant (reserved ahead) are not there yet, so not usable now either
                if bucket is not None:
                    bucket.clamp(max(0.0, self._lease[i]), now)
            self._fb = fb
            self._mode = _FALLBACK
        # the lease was charged to Redis already: only what is admitted beyond it is debt
        self._fb_debt = [-held[i] for i in range(3)]
        self._fb_debt_base = list(self._fb_debt)  # charged again if Redis gave that lease back
        self.fallback_lease += max(0.0, self._lease[0])
        self._lease = [0.0, 0.0, 0.0]
        self._pending = [0.0, 0.0, 0.0]
        self._pots.clear()
        self._head = None
        # a reading of a request admitted from the fallback predates what the others admit
        # from theirs: it proves nothing about a bucket Redis lost (a probe's reading will)
        self._proof_from = _INF
        log.warning(
            "shared budget %s: Redis unreachable; admitting from %s",
            self.name,
            "nothing (fallback='closed')" if share is None else f"a local share of {share:.3g}",
        )
        self._wake()

    def _rejoin(self, res: list[str], *, loop_now: float) -> None:
        """Redis answered (and took the debt): admit from shared leases again."""
        self.processes = max(1, int(res[6]))
        self._mode = _SHARED
        self._fb = None
        self._fb_debt = [0.0, 0.0, 0.0]
        self._settle_at = _INF
        self._last_take = loop_now
        log.info("shared budget %s: Redis answers again; admitting from shared leases", self.name)
        self._wake()
