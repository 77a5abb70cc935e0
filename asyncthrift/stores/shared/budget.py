"""`SharedBudget`: one (budget, model class) shared by every process through Redis.

Admission stays synchronous and O(1): the scheduler admits from a *lease*, a slice of the
shared buckets this process took from Redis (`lease.lua`), and a background task keeps the
lease topped up. One script call does everything a round trip can carry: ask for a slice
(all three dimensions or nothing), give back refunds and unused lease, lower the shared
level to what the server's headers support, prove a cold bucket's level, register this
process. So Redis sees about one command per slice, not one per request.

While requests queue here a slice is this process's share of `SLICE` of the period's
refill (its backlog over all the processes': every call carries it, the answer sums them, so
the processes end together), at most `_WINDOW_MAX` seconds of it unless this process's share
of the request rate needs longer to make `_MIN_REQUESTS` (the processes asking lately share
it), capped by what
the queue needs, and at least the largest request seen; while the bucket holds a burst the
ask is a fair share of `_BURST` of the level; otherwise it follows this process's recent
rate (at most twice that share). Never more than `MAX_SHARE` of a capacity. Each dimension
asks only what it lacks of its target, so a dimension that holds enough (output tokens
refunded by answers far shorter than their max_tokens) never holds up one that is short;
a grant is shrunk per
dimension to what is left in the shared bucket plus the horizon's refill, and what the
level pays for now is usable at once, the rest at the instant the refill pays for it (the
scheduler's timer waits for that instant: no polling, no second round trip; only at the end
of a run, the others' backlog no more than this one's, does a head that waits long for such
a grant ask whether the level, which the others' returns raise, pays it now). Refunds stay
in the lease; what it holds beyond its target goes back within a second while the shared
level is overdrawn (others wait for it), within half a period otherwise.

Leases expire (`lease.lua`): Redis records what each process holds and gives it back to
the bucket half a period after the process's last call, so a killed process's lease
returns; a living process holding a lease calls at least every quarter period to renew it.
A bucket restored from a snapshot older than what this process saw restarts cold. Without
a configured limit (``Thrift(limits=None)``) the budget admits as a local one until a
response's headers say the key's limits, then shares them.

When Redis is unreachable (the store's circuit breaker is open) the budget admits from a
`LocalBudget` of a conservative share of the limits (`fallback`: by default the limits
divided by the processes last seen), resynced from the headers as any local budget is, and
rejoins when Redis answers again, charging what it admitted meanwhile. If Redis came back
empty, the bucket it lost settles first (`lease.lua`): each process keeps its fallback share
until the settle instant it is told, then stops, and only a probe sent after that proves the
new level (less what the other processes' records say they still hold), so a reading taken
while the others still admitted from their fallback never passes for the level.

This module keeps the books (the lease, refunds) and admits from them; what a header reading
becomes is `_ceilings`'s, when to call Redis and what a call carries `_roundtrip`'s, how much
to ask `_slices`'s, the fallback regime `_fallback`'s, and the numbers above live in
`_tuning` (re-exported here).
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from typing import TYPE_CHECKING

from ...scheduling.bucket import ZERO, Cost
from ...scheduling.budget import LocalBudget
from ...scheduling.limits import Limits
from ._ceilings import HeaderCeilings
from ._fallback import fit
from ._lease import LeaseStore, Pot, covered_at
from ._tuning import (
    _FLUSH,
    _HINT,
    _INF,
    _NOW_ONLY,
    _SHARED,
    HORIZON,
    MAX_SHARE,
    SLICE,
)

if TYPE_CHECKING:
    from ...scheduling.scheduler import Gate

__all__ = ["HORIZON", "MAX_SHARE", "SLICE", "SharedBudget"]

log = logging.getLogger("asyncthrift.shared")


class SharedBudget(HeaderCeilings):
    """A `Budget` whose buckets live in Redis; see the module docstring.

    A `LocalBudget` by type (the inherited history answers "what did this process send
    after T" for the header resync; its buckets are not used while Redis is reachable).
    """

    __slots__ = (
        "_keys",
        "fallback_takes",
        "notices",
    )

    def __init__(
        self, store: LeaseStore, limits: Limits, now: float, name: str, keys: tuple[str, str]
    ) -> None:
        # no configured limit: admit as a local budget until the headers say it (`_learn`)
        learning = limits.unlimited
        super().__init__(limits, now, name, hold_bursts=False, cold_start=learning)
        self._learning = learning
        self._store = store
        self._keys = keys
        period = limits.period
        self._cap = [0.0 if c is None else float(c) for c in (limits.rpm, limits.itpm, limits.otpm)]
        self._rate = [c / period for c in self._cap]
        self._dims = tuple(i for i in range(3) if self._cap[i] > 0)
        self._debt_due = [0.0, 0.0, 0.0]  # spent before sharing: charged with the next call
        self._epoch, self._seq = "", 0  # the bucket's epoch and sequence as last seen (lease.lua)
        self._called_at, self._lease_until = now, _INF  # the last answered call; `_renewed`
        self._fb_debt_base = [0.0, 0.0, 0.0]
        self._lease = [0.0, 0.0, 0.0]
        self._pending = [0.0, 0.0, 0.0]  # granted, paid for only at a later instant (pots)
        self._pots: deque[Pot] = deque()
        self._give_unpaid = [0.0, 0.0, 0.0]  # of the next give, what was reserved ahead
        self._clamp = [_INF, _INF, _INF]  # min over readings of (ceiling - rate * t)
        # the window [sent_at, now] of the reading that set each clamp (its instant T)
        self._clamp_when = [(now, now), (now, now), (now, now)]
        self._proof = [_INF, _INF, _INF]  # the same for the lowest consistent reading
        self._proof_from = -_INF  # readings of requests sent before this prove nothing
        self._settle_at = _INF  # in the fallback: admit nothing from this instant
        self._took = [0.0, 0.0, 0.0]  # granted lately (the burst's share is bounded by it)
        self._took_at = now
        self._head: Cost | None = None
        self._used = [0.0, 0.0, 0.0]
        self._est = list(self._rate)  # this process's rate of consumption (optimistic at first)
        self._est_at = now
        self._last_take = now
        self._low = [0.0, 0.0, 0.0]
        self._keep = [_INF, _INF, _INF]
        self._level = [0.0, 0.0, 0.0]  # the shared level the last call reported
        self._others_waiting = -1.0  # the other processes' backlog (requests; -1: not known)
        self._sent_waiting = 0
        self._now_only = False
        self._now_only_at = now
        self._others_at = now
        self._overdrawn = False  # the shared level was below zero at the last call
        self._big = [0.0, 0.0, 0.0]  # the largest single cost admitted so far, per dimension
        self._target = [0.0, 0.0, 0.0]  # the lease the last slice aimed at, per dimension
        self._hint = min(period * _HINT, 1.0)
        self._kick = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._gate: Gate | None = None
        self._fb: LocalBudget | None = None
        self._fb_debt = [0.0, 0.0, 0.0]
        self._flush_at: asyncio.TimerHandle | None = None
        self._flush_due = False
        self._mode = _SHARED
        self._cold = False
        self._cold_polls = 0
        self._urgent = False
        self._not_before = 0.0
        self.processes = 1  # seen within a period (the fallback share divides by these)
        self.active = 1  # asking lately (slices are a fair share among these)
        self.grants = self.refusals = 0
        self.fallback_takes = 0  # admissions while Redis was unreachable
        self.notices = 0  # notices that paid grants reserved ahead here sooner
        self.fallback_lease = 0.0  # requests the lease held when the fallback began (summed)

    # -- the Budget protocol (synchronous, O(1)) ----------------------------------------------

    def wait(self, cost: Cost, now: float) -> float:
        if self._learning:
            return super().wait(cost, now)
        w = self.blocked_until - now if self.blocked_until > now else 0.0
        if self._mode != _SHARED:
            fb = self._fb
            if fb is None or now >= self._settle_at:
                # fallback="closed": nothing until Redis answers again; or Redis is back and
                # the bucket it lost settles: nothing more from the fallback, rejoin next
                self._want()
                return max(w, self._store.breaker.retry_in(), self._hint)
            return max(w, fb.wait(fit(cost, fb), now))
        if now >= self._lease_until:
            # no call answered within the lease's lifetime (a late renewal): Redis may
            # have given the lease back; admit nothing from it until a call answers
            self._urgent = True
            self._want()
            return max(w, self._hint)
        self._ripen(now)
        lease = self._lease
        for i in self._dims:
            if cost[i] > lease[i] + 1e-9 * self._cap[i]:
                break
        else:
            return w
        if self._pots:  # slices on their way: the instant they have paid for enough
            at = now
            for i in self._dims:
                deficit = cost[i] - lease[i] - 1e-9 * self._cap[i]
                at = max(at, covered_at(self._pots, i, deficit, now))
            if at < _INF:
                due = max(self._now_only_at, self._others_done_at())
                if at - due > _NOW_ONLY:  # the others may be done well before it is paid
                    if now < due:  # look again then
                        return max(w, due - now)
                    self._now_only = True  # ask whether the level pays it now
                    self._now_only_at = now + _NOW_ONLY
                    self._head = cost
                    self._want()
                return max(w, at - now)
        self._head = cost
        self._want()
        return max(w, self._hint)

    def take(self, cost: Cost, now: float) -> Cost:
        if self._learning:
            return super().take(cost, now)
        sent, net = self._sent, self._net
        for i in range(3):
            sent[i] += cost[i]
            net[i] += cost[i]
        self._remember(now)
        self._last_take = now
        # the head admitted: the next one, if it does not fit, says so in `wait` (a stale
        # head kept a finished process from ever returning its idle lease)
        self._head = None
        if self._mode != _SHARED:
            self.fallback_takes += 1
            if self._fb is not None:
                self._fb.take(cost, now)
            for i in self._dims:
                self._fb_debt[i] += cost[i]
            return Cost(sent[0], sent[1], sent[2])
        self._ripen(now)
        lease, used, pending, low, big = (
            self._lease,
            self._used,
            self._pending,
            self._low,
            self._big,
        )
        refetch = False
        for i in self._dims:
            if cost[i] > big[i]:
                big[i] = cost[i]
            lease[i] -= cost[i]
            used[i] += cost[i]
            if lease[i] + pending[i] < low[i]:
                refetch = True
        if refetch:
            self._want()
        return Cost(sent[0], sent[1], sent[2])

    def give(self, cost: Cost, now: float) -> None:
        if self._learning:
            super().give(cost, now)
            return
        net = self._net
        for i in range(3):
            net[i] -= cost[i]
        self._remember(now)
        if self._mode != _SHARED:
            if self._fb is not None:
                self._fb.give(cost, now)
            for i in self._dims:
                self._fb_debt[i] -= cost[i]
            return
        # a refund (or a further charge) stays in the lease, at once usable here; what the
        # lease then holds beyond `_keep` goes back to the shared bucket with the next round
        # trip (the next slice asked for, or the return of an idle lease)
        lease, used = self._lease, self._used
        excess = False
        for i in self._dims:
            lease[i] += cost[i]
            used[i] -= cost[i]  # the rate of slices is the net rate of consumption
            if lease[i] > self._kept(i):
                excess = True
        if self._done_while_others_wait(1):
            self._want()  # the last one in flight: the lease goes back now (`_busy`)
        elif excess and self._flush_at is None and not self._flush_due:
            # soon while others reserve ahead (the shared level is overdrawn): what this
            # process does not need shortens their wait
            delay = self._hint if self._overdrawn else self.limits.period * _FLUSH
            self._flush_at = asyncio.get_running_loop().call_at(now + delay, self._flush)

    def block_until(self, when: float) -> None:
        super().block_until(when)
        if self._fb is not None:
            self._fb.block_until(when)

    # -- views ---------------------------------------------------------------------------------

    def peek(self, now: float) -> tuple[float | None, ...]:
        """Shared: the lease held here per dimension; fallback: the fallback's levels."""
        if self._fb is not None:
            return self._fb.peek(now)
        return tuple(
            None if self._cap[i] <= 0 else self._lease[i] + self._pending[i] for i in range(3)
        )

    @property
    def mode(self) -> str:
        return ("shared", "fallback", "closed")[self._mode]

    @property
    def fallback(self) -> LocalBudget | None:
        """The local budget admitting while Redis is unreachable (None otherwise)."""
        return self._fb

    # -- internals -----------------------------------------------------------------------------

    def bind(self, gate: Gate) -> None:
        """Poke `gate` whenever a lease arrives or the mode changes; while it has waiters
        the lease is not idle."""
        self._gate = gate

    def _ripen(self, now: float) -> None:
        """Move what the refill has paid for of the pots into the lease."""
        pots = self._pots
        if not pots:
            return
        lease, pending = self._lease, self._pending
        for pot in pots:
            for i in self._dims:
                paid = pot.release(i, now)
                lease[i] += paid
                pending[i] -= paid
        while pots and pots[0].done(now):
            pots.popleft()
        if not pots:
            self._pending = [0.0, 0.0, 0.0]

    def release_args(self) -> list[str] | None:
        """The arguments that give everything held back to Redis (None: nothing to give)."""
        if self._flush_at is not None:
            self._flush_at.cancel()
            self._flush_at = None
        if self._mode != _SHARED:
            return None
        give = [self._lease[i] + self._pending[i] for i in range(3)]
        if not any(give[i] for i in self._dims):
            return None
        self._give_unpaid = list(self._pending)
        self._lease = [0.0, 0.0, 0.0]
        self._pending = [0.0, 0.0, 0.0]
        self._pots.clear()
        return self._script_args(ZERO, ZERO, Cost(*give), [0.0, 0.0, 0.0])

    def pay_sooner(self, epoch: str, seq: int, sooner: tuple[float, float, float]) -> None:
        """A notice (`lease.lua`, `_notices`): stock given back in hand to a level below
        zero pays every grant reserved ahead before sequence `seq` `sooner[i]` seconds of
        refill earlier in dimension `i`. Moves this process's pots granted before it, and
        looks at the head again: it may fit now, without a call."""
        if epoch != self._epoch or self._mode != _SHARED or not self._pots:
            return
        moved = False
        for pot in self._pots:
            if pot.seq >= seq:
                continue  # granted after the stock came back: placed behind it already
            for i in self._dims:
                if sooner[i] > 0 and pot.total[i] > pot.released[i]:
                    pot.shift(i, sooner[i])
                    moved = True
        if moved:
            self.notices += 1
            self._ripen(asyncio.get_running_loop().time())
            self._wake()

    @property
    def keys(self) -> tuple[str, str]:
        return self._keys

    @property
    def channel(self) -> str:
        """Where `lease.lua` publishes that stock came back (its bucket's key, ``b`` -> ``n``)."""
        return self._keys[0][:-1] + "n"

    def __repr__(self) -> str:
        return f"SharedBudget({self.name!r}, {self.limits}, mode={self.mode})"
