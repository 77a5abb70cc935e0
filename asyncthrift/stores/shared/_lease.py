"""The lease's books of a `SharedBudget`: the state it keeps and the rates it is sized by.

The first of `SharedBudget`'s bases (`LeaseBooks`, then `_fallback.FallbackBooks`, then
`_roundtrip.RoundTrip`): each adds methods over this state, as methods of the budget
itself, so no module edits another object's privates. `LeaseStore` is what a budget asks
of the store it leases from.
"""

from __future__ import annotations

import asyncio
import math
from collections import deque
from typing import TYPE_CHECKING, Any, Protocol

from ...scheduling.bucket import Cost
from ...scheduling.budget import LocalBudget
from ._tuning import _IDLE, _IDLE_GAPS, slice_seconds

if TYPE_CHECKING:
    from ...core._breaker import Breaker
    from ...scheduling.scheduler import Gate

__all__ = ["LeaseBooks", "LeaseStore"]


class LeaseStore(Protocol):
    """What a shared budget asks of the store it leases from (`SharedStore`): its breaker,
    its identity in Redis, one script call, and the fallback share."""

    @property
    def breaker(self) -> Breaker: ...

    @property
    def process_id(self) -> str: ...

    @property
    def closed(self) -> bool: ...

    @property
    def tasks(self) -> set[asyncio.Task[None]]: ...

    def fallback_share(self, processes: int) -> float | None: ...

    async def call(self, budget: Any, args: list[str]) -> tuple[bool, Any]: ...


class LeaseBooks(LocalBudget):
    """The lease's state a `SharedBudget` keeps (declared and stored here), and the rates
    it is sized by: this process's share and consumption, and when it counts as idle."""

    __slots__ = (
        "_cap",
        "_dims",
        "_est",
        "_est_at",
        "_fb",
        "_fb_debt",
        "_fb_debt_base",
        "_gate",
        "_head",
        "_keep",
        "_kick",
        "_last_take",
        "_lease",
        "_mode",
        "_pending",
        "_pots",
        "_proof_from",
        "_rate",
        "_settle_at",
        "_store",
        "_used",
        "active",
        "fallback_lease",
        "processes",
    )

    # the lease: what this process holds of the shared buckets, per dimension
    _store: LeaseStore
    _gate: Gate | None
    _mode: int
    _cap: list[float]
    _rate: list[float]
    _dims: tuple[int, ...]
    _lease: list[float]
    _pending: list[float]  # granted, paid for only at a later instant (`_pots`)
    _pots: deque[tuple[float, tuple[float, float, float]]]
    _head: Cost | None
    _proof_from: float  # readings of requests sent before this (loop time) prove nothing
    _settle_at: float  # the fallback admits nothing from this instant (a lost bucket settles)
    _last_take: float
    _fb: LocalBudget | None
    _fb_debt: list[float]
    _fb_debt_base: list[float]
    _kick: asyncio.Event
    _est: list[float]  # this process's rate of consumption (units/s)
    _est_at: float
    _used: list[float]  # consumed since `_est_at`
    _keep: list[float]  # beyond this (with no requests waiting), give back
    active: int  # processes asking lately
    processes: int
    fallback_lease: float

    def _wake(self) -> None:
        """Look at the gate's head again (a lease arrived, or the mode changed)."""
        if self._gate is not None:
            self._gate.poke()

    def _per_process_rpm(self) -> float:
        """This process's fair share of the shared request rate (requests/s; 0: no rpm)."""
        return self._rate[0] * self._cap_share()

    def _cap_share(self) -> float:
        """This process's fair share of the shared rate: one over the processes asking lately."""
        return 1.0 / max(1, self.active)

    def _estimate(self, now: float) -> None:
        """Update this process's rate of consumption (units/s), averaged over a slice."""
        dt = now - self._est_at
        window = slice_seconds(self.limits.period, self._per_process_rpm())
        if dt < window * 0.1:
            return
        weight = 1.0 - math.exp(-dt / window)
        for i in self._dims:
            self._est[i] += weight * (self._used[i] / dt - self._est[i])
        self._used = [0.0, 0.0, 0.0]
        self._est_at = now

    def _busy(self, now: float) -> bool:
        """Whether requests wait for this budget or were admitted lately."""
        gate = self._gate
        return (gate is not None and gate.waiting > 0) or now - self._last_take < self._idle_after()

    def _kept(self, i: int) -> float:
        """What the lease keeps of dimension `i` before the excess goes back to Redis: the
        last slice's `_keep`, or, while requests wait here, up to this process's fair share
        of the capacity. Refunds are this process's working capital: with max_tokens five
        times the answer, most of what an admission takes comes back within a second, and
        giving it back to Redis (where others' grants wait for their instant) and asking
        for it again capped each process at a few requests in flight during a burst."""
        keep = self._keep[i]
        gate = self._gate
        if gate is not None and gate.waiting > 0:
            keep = max(keep, self._cap[i] * self._cap_share())
        return keep

    def _idle_after(self) -> float:
        """Seconds without an admission after which the lease goes back to Redis."""
        idle = self.limits.period * _IDLE
        requests = self._est[0] if self._cap[0] > 0 else 0.0
        if requests > 0:
            idle = min(idle, max(_IDLE_GAPS / requests, self.limits.period * 0.01))
        return idle
