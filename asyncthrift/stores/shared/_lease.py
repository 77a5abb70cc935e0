"""The lease's books of a `SharedBudget`: the state it keeps and the rates it is sized by.

The first of `SharedBudget`'s bases (`LeaseBooks`, then `_fallback.FallbackBooks`,
`_slices.SliceSizing`, `_roundtrip.RoundTrip`, `_ceilings.HeaderCeilings`): each adds methods
over this state, as methods of the budget itself, so no module edits another object's
privates. `LeaseStore` is what a budget asks
of the store it leases from.
"""

from __future__ import annotations

import asyncio
import math
from collections import deque
from typing import TYPE_CHECKING, Any, Protocol

from ...scheduling.bucket import Cost
from ...scheduling.budget import LocalBudget
from ._tuning import _IDLE, _IDLE_GAPS, _LIFE_USED, lease_lifetime, slice_seconds

if TYPE_CHECKING:
    from ...core._breaker import Breaker
    from ...scheduling.scheduler import Gate

__all__ = ["LeaseBooks", "LeaseStore", "Pot", "covered_at"]


class Pot:
    """The part of a grant the shared level did not pay for at once: per dimension, an
    amount the refill pays for evenly from `start` to `end` (loop time).

    `lease.lua` grants in order: a grant reserved ahead is paid for by the refill that
    follows what earlier grants took, from the instant the level it was taken from is
    back to zero (`start`) until the instant all of it is (`end`). Released as it is paid
    (`release`), not all at `end`: a pot held whole until its last token was paid for
    left a process's admissions in bursts every few seconds (a whole slice's window) with
    nothing between, where a local bucket admits as the refill trickles in.

    `seq` is the bucket's sequence number after the call that granted it: a notice that
    stock came back before it (`shift`, `_notices`) moves it earlier, a later one does not.
    """

    __slots__ = ("end", "released", "seq", "start", "total")

    def __init__(
        self, start: list[float], end: list[float], total: list[float], seq: int = 0
    ) -> None:
        self.start = start
        self.end = end
        self.total = total
        self.seq = seq
        self.released = [0.0, 0.0, 0.0]

    def shift(self, i: int, seconds: float) -> None:
        """Paid for `seconds` sooner in dimension `i`: stock given back to the level ahead of
        this grant's turn pays the grants reserved ahead that many seconds of refill early."""
        self.start[i] -= seconds
        self.end[i] -= seconds

    def paid(self, i: int, when: float) -> float:
        """How much of dimension `i` the refill has paid for by `when`."""
        s, e, t = self.start[i], self.end[i], self.total[i]
        if when >= e:
            return t
        if when <= s:
            return 0.0
        return t * (when - s) / (e - s)

    def release(self, i: int, now: float) -> float:
        """What of dimension `i` became usable since the last release."""
        p = self.paid(i, now)
        delta = p - self.released[i]
        self.released[i] = p
        return delta

    def done(self, now: float) -> bool:
        return all(now >= e for e in self.end)


def covered_at(pots: deque[Pot], i: int, deficit: float, now: float) -> float:
    """The first instant (>= `now`) at which `pots` have released `deficit` more of
    dimension `i` (inf: they never will). Their sum is piecewise linear between the pots'
    starts and ends: the first breakpoint that covers it, interpolated back."""
    if deficit <= 0:
        return now
    points = sorted({now, *(p.start[i] for p in pots), *(p.end[i] for p in pots)})
    prev_t, prev_v = now, 0.0
    for t in points:
        if t < now:
            continue
        v = sum(p.paid(i, t) - p.released[i] for p in pots)
        if v >= deficit:
            if v <= prev_v:
                return t
            return prev_t + (t - prev_t) * (deficit - prev_v) / (v - prev_v)
        prev_t, prev_v = t, v
    return math.inf


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
        "_give_unpaid",
        "_head",
        "_keep",
        "_kick",
        "_last_take",
        "_lease",
        "_lease_until",
        "_mode",
        "_others_waiting",
        "_pending",
        "_pots",
        "_proof_from",
        "_rate",
        "_settle_at",
        "_store",
        "_took",
        "_took_at",
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
    _lease_until: float  # Redis records the lease at least until this instant (loop time)
    _pending: list[float]  # granted, paid for only as the refill comes (`_pots`)
    _pots: deque[Pot]
    _give_unpaid: list[float]  # of the next call's give, what was reserved ahead (ARGV[45..47])
    _head: Cost | None
    _proof_from: float  # readings of requests sent before this (loop time) prove nothing
    _settle_at: float  # the fallback admits nothing from this instant (a lost bucket settles)
    _took: list[float]  # granted lately (decays over a slice's window), per dimension
    _took_at: float
    _last_take: float
    _fb: LocalBudget | None
    _fb_debt: list[float]
    _fb_debt_base: list[float]
    _kick: asyncio.Event
    _est: list[float]  # this process's rate of consumption (units/s)
    _est_at: float
    _used: list[float]  # consumed since `_est_at`
    _keep: list[float]  # beyond this (with no requests waiting), give back
    _others_waiting: float  # requests waiting in the other processes at the last call (-1: unknown)
    _level: list[float]  # the shared level the last call reported
    active: int  # processes asking lately
    processes: int
    fallback_lease: float

    def _wake(self) -> None:
        """Look at the gate's head again (a lease arrived, or the mode changed)."""
        if self._gate is not None:
            self._gate.poke()

    def _renewed(self, sent: float) -> None:
        """A call sent at `sent` was answered: the script ran after `sent`, so the lease's
        record in Redis lives at least its lifetime from then. Past that instant Redis may
        have given the lease back to the level (as it does a killed process's), and a
        process that kept spending it, its renewal late behind a busy loop or a slow call,
        would spend it twice: once from its lease, once by whoever took it from the level.
        So `wait` admits nothing from the lease past it until a call answers."""
        self._lease_until = sent + lease_lifetime(self.limits.period) * _LIFE_USED

    def _per_process_rpm(self) -> float:
        """This process's fair share of the shared request rate (requests/s; 0: no rpm)."""
        return self._rate[0] * self._cap_share()

    def _cap_share(self) -> float:
        """This process's fair share of the shared rate: one over the processes asking lately."""
        return 1.0 / max(1, self.active)

    def _work_share(self) -> float:
        """This process's share of the shared refill while requests wait here: its backlog
        over all the processes' (`lease.lua` sums the backlogs their records carry), or one
        over the processes asking lately when none reported one. Shares by backlog make the
        processes end together: with equal shares, a process that took more of the first
        burst finished seconds before the others (ends 21-30 s apart at 4 processes), and
        the last one then waited alone for grants reserved ahead of it."""
        gate = self._gate
        mine = gate.waiting if gate is not None else 0
        if mine <= 0 or self._others_waiting < 0:  # nothing waits here, or not known yet
            return self._cap_share()
        return mine / (mine + self._others_waiting)

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
        """Whether requests wait for this budget or were admitted lately; not once nothing
        waits and nothing is in flight while the others wait (`_done_while_others_wait`)."""
        gate = self._gate
        if gate is not None and gate.waiting > 0:
            return True
        if self._done_while_others_wait(0):
            return False
        return now - self._last_take < self._idle_after()

    def _others_wait(self) -> bool:
        """Whether, at the last call, other processes had requests waiting or the shared
        level was below zero (their grants reserved ahead wait for the refill)."""
        return self._others_waiting > 0 or any(self._level[i] < 0 for i in self._dims)

    def _done_while_others_wait(self, held: int) -> bool:
        """Whether this process ran out of work (nothing waits, `held` in flight at most the
        one settling now) while the others wait: its lease then goes back at once, not
        after the idle timeout (1-2.5 s at 4 gateway replicas, while the last replica
        waited for grants reserved ahead that this stock, given back, pays sooner)."""
        gate = self._gate
        return gate is not None and gate.waiting <= 0 and gate.held <= held and self._others_wait()

    def _decay_took(self, now: float) -> None:
        """Age what this process was granted lately by the time since it was last aged."""
        dt = now - self._took_at
        if dt <= 0:
            return
        window = slice_seconds(self.limits.period, self._per_process_rpm())
        keep = math.exp(-dt / window)
        self._took = [t * keep for t in self._took]
        self._took_at = now

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
            keep = max(keep, self._cap[i] * self._work_share())
        return keep

    def _idle_after(self) -> float:
        """Seconds without an admission after which the lease goes back to Redis."""
        idle = self.limits.period * _IDLE
        requests = self._est[0] if self._cap[0] > 0 else 0.0
        if requests > 0:
            idle = min(idle, max(_IDLE_GAPS / requests, self.limits.period * 0.01))
        return idle
