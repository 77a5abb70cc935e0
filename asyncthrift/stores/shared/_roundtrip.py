"""The Redis round trip of a `SharedBudget`: what one call of `lease.lua` asks and gives.

Kept apart from `budget` because it is the wire, not the books: `budget` admits, takes and
refunds synchronously from the lease and decides *when* to call Redis; this module decides
*what* one call carries (a slice sized to this process's share and rate, the lease beyond
what it keeps, the ceiling and proof from the headers), encodes the script's arguments,
and folds its answer back into the lease (or hands over to the fallback when Redis is
gone). `RoundTrip` is a base of `SharedBudget`: these are its own methods.
"""

from __future__ import annotations

import asyncio
import logging
import math

from ...scheduling.bucket import ZERO, Cost
from ._lease import Pot
from ._slices import SliceSizing
from ._tuning import (
    _EARLY,
    _INF,
    _KEEP,
    _LOW,
    _LOW_OVERDRAWN,
    _NOW_ONLY,
    _PROBE_SHARE,
    _RENEW,
    _SETTLE_COOLDOWNS,
    _SETTLE_MARGIN,
    _SHARED,
    flow_window,
    horizon_seconds,
    lease_lifetime,
)

__all__ = ["RoundTrip"]

log = logging.getLogger("asyncthrift.shared")


def _num(x: float) -> str:
    return repr(float(x))


class RoundTrip(SliceSizing):
    """One call of the script when anything is due (a slice, a return, a ceiling, a
    rejoin), in steps: what to ask (`_asks`, from `SliceSizing`), what to give back
    (`_gives`), the arguments (`_trip_args`, `_script_args`), and what the answer changes
    (`_granted`); and the background task that makes the calls (`_want` wakes it,
    `_next_timeout` says when it must look again with nothing else happening)."""

    __slots__ = (
        "_called_at",
        "_clamp",
        "_clamp_when",
        "_cold",
        "_debt_due",
        "_epoch",
        "_flush_at",
        "_flush_due",
        "_hint",
        "_proof",
        "_sent_waiting",
        "_seq",
        "_task",
        "_urgent",
        "grants",
        "refusals",
    )

    _cold: bool
    _urgent: bool
    _flush_due: bool
    _flush_at: asyncio.TimerHandle | None
    _called_at: float
    _clamp: list[float]
    _clamp_when: list[tuple[float, float]]  # the reading's window [sent_at, seen] (loop time)
    _proof: list[float]
    _debt_due: list[float]
    _epoch: str
    _seq: int
    _sent_waiting: int  # the backlog the last call carried
    _hint: float  # the pause after a failed call, and the longest wait a refusal advises
    _task: asyncio.Task[None] | None  # the background task that makes the calls
    grants: int
    refusals: int

    async def _round_trip(self, now: float) -> None:
        """One call of the script if anything is due: a slice, a return, a ceiling, a rejoin."""
        if self._mode != _SHARED:
            await self._try_rejoin()
            return
        head = self._head
        recent = self._busy(now)
        need, ask, asking = self._asks(now, head, recent)
        give, idle_return = self._gives(asking, head, recent)
        if asking and not idle_return:
            self._lend(head, need, ask, give)
        lease, pending, dims = self._lease, self._pending, self._dims
        # (`_EARLY`: its timer's instant, rounded a hair short of it, spun the task in place)
        renew_at = self._called_at + lease_lifetime(self.limits.period) * _RENEW
        renew = now >= renew_at - _EARLY and any(lease[i] + pending[i] for i in dims)
        if not (asking or idle_return or self._urgent or renew) and not (
            self._flush_due and any(give[i] > 0 for i in dims)
        ):
            self._flush_due = False
            return
        now_only = self._now_only
        self._now_only = False
        args = self._trip_args(now, need, ask, give, idle_return, now_only=now_only)
        ok, res = await self._store.call(self, args)
        loop_now = asyncio.get_running_loop().time()
        if not ok:
            self._trip_failed(give, loop_now)
            return
        self._renewed(now)
        if log.isEnabledFor(logging.DEBUG):
            log.debug(
                "%s t=%.3f need=%s ask=%s give=%s -> %s",
                self.name,
                now,
                [round(x) for x in need],
                [round(x) for x in ask],
                [round(x) for x in give],
                res,
            )
        self._debt_due = [0.0, 0.0, 0.0]  # charged (or proved moot by a cold bucket's proof)
        self._seen(res, loop_now)
        if now_only and res[0] == "2":
            # not paid now: the grant reserved ahead stands (the others idle: it stays so)
            self.refusals += 1
            if self._others_waiting <= 0:
                self._now_only_at = _INF
            return
        self._granted(res, asking, loop_now)

    async def _try_rejoin(self) -> None:
        """In the fallback: call Redis (if the breaker lets) with the debt; rejoin if it answers."""
        store = self._store
        if not store.breaker.admit():
            return
        debt = [max(0.0, min(self._fb_debt[i], self._cap[i])) for i in range(3)]
        prior = [max(0.0, -self._fb_debt_base[i]) for i in range(3)]
        sent = asyncio.get_running_loop().time()
        ok, res = await store.call(self, self._script_args(ZERO, ZERO, ZERO, debt, prior=prior))
        if ok:
            loop_now = asyncio.get_running_loop().time()
            self._seen(res, loop_now)
            self._renewed(sent)
            settle = float(res[16]) if len(res) > 16 else 0.0
            if settle > 0 and self._fb is not None:
                # Redis lost the bucket: keep the fallback share until it has settled, then
                # admit nothing more from it and rejoin (a reading after that proves it)
                self._settle_at = loop_now + settle
                self._not_before = self._settle_at
                self._kick.set()
                return
            self._rejoin(res, loop_now=loop_now)

    def _gives(self, asking: bool, head: Cost | None, recent: bool) -> tuple[list[float], bool]:
        """(give, idle_return): the lease beyond what this process keeps goes back; all of
        it when idle (nothing asked, no head, nothing admitted lately)."""
        lease, pending = self._lease, self._pending
        give = [0.0, 0.0, 0.0]
        for i in self._dims:  # lease beyond what this process keeps goes back
            give[i] += max(0.0, lease[i] - self._kept(i))
        if not asking and head is None and not recent:
            holding = [lease[i] + pending[i] for i in range(3)]
            if any(holding[i] for i in self._dims):
                self._give_unpaid = list(pending)  # (reserved ahead: moves no grant sooner)
                return holding, True
        return give, False

    def _trip_args(
        self,
        now: float,
        need: list[float],
        ask: list[float],
        give: list[float],
        idle_return: bool,
        *,
        now_only: bool = False,
    ) -> list[str]:
        """The script's arguments for this call, the lease given back (all of it on an
        idle return) and the readings' ceiling and proof handed over."""
        lease, pending = self._lease, self._pending
        if not idle_return:
            for i in self._dims:
                lease[i] -= give[i]
        clamp, proof, when = self._clamp, self._proof, self._clamp_when
        self._clamp = [_INF, _INF, _INF]
        self._proof = [_INF, _INF, _INF]
        self._clamp_when = [(now, now), (now, now), (now, now)]
        self._flush_due = self._urgent = False
        if self._flush_at is not None:
            self._flush_at.cancel()
            self._flush_at = None
        rate = self._rate
        args = self._script_args(
            Cost(*need),
            Cost(*ask),
            Cost(*give),
            list(self._debt_due),
            # the ceilings were read less what the lease held then; what this call gives
            # back of it is in the level before the ceiling applies (without it, a ceiling
            # took the very lease this call returned)
            clamp=[c + rate[i] * now + give[i] for i, c in enumerate(clamp)],
            proof=[c + rate[i] * now for i, c in enumerate(proof)],
            holds=[0.0, 0.0, 0.0] if idle_return else [lease[i] + pending[i] for i in range(3)],
            clamp_ages=[(max(0.0, now - lo), max(0.0, now - hi)) for lo, hi in when],
            now_only=now_only,
        )
        if idle_return:
            self._lease = [0.0, 0.0, 0.0]
            self._pending = [0.0, 0.0, 0.0]
            self._pots.clear()
        return args

    def _trip_failed(self, give: list[float], loop_now: float) -> None:
        """The call failed: the lease given back was not; fall back if the breaker opened,
        else try again after its timeout."""
        store = self._store
        for i in self._dims:  # not returned after all
            self._lease[i] += give[i]
        if store.breaker.open:
            self._enter_fallback(loop_now)
        else:
            self._not_before = loop_now + store.breaker.timeout
            self._kick.set()

    def _granted(self, res: list[str], asking: bool, loop_now: float) -> None:
        """Fold the script's answer into the lease: the processes, the shared level, and a
        grant (usable now, or at the instant it is paid for) or a refusal."""
        status = int(res[0])
        granted = (float(res[1]), float(res[2]), float(res[3]))
        ready, retry = float(res[4]), float(res[5])
        self.processes = max(1, int(res[6]))
        self.active = max(1, int(res[10]))
        self._level = [float(res[7]), float(res[8]), float(res[9])]
        self._overdrawn = any(self._level[i] < 0 for i in self._dims)
        if status == 1:  # a probe: only readings of requests sent from now prove the level
            self._proof_from = loop_now
        if status not in (0, 1):
            self.refusals += 1
            self._cold = status == 3
            if not self._cold:
                self._cold_polls = 0
            wait = min(retry, self._cold_poll()) if self._cold else retry
            self._not_before = loop_now + min(wait, self.limits.period)
            self._kick.set()  # ask again then
            return
        self._cold = status == 1
        self._cold_polls = 0
        if not asking:
            return
        self.grants += 1
        self._head = None
        self._decay_took(loop_now)
        for i in self._dims:
            self._took[i] += granted[i]
        paid = (float(res[11]), float(res[12]), float(res[13])) if ready > 0 else granted
        later = [granted[i] - paid[i] for i in range(3)]
        for i in self._dims:
            self._lease[i] += paid[i]
        if ready > 0 and any(later[i] > 0 for i in self._dims):
            # the rest is paid for by the refill, evenly, from the instant the level it was
            # taken from is back at zero (res[17:20]) until all of it is
            start = [loop_now + float(res[17 + i]) for i in range(3)]
            end = [
                start[i] + later[i] / self._pay_rate(i) if self._pay_rate(i) > 0 else start[i]
                for i in range(3)
            ]
            self._pots.append(Pot(start, end, later, self._seq))
            # the level did not pay it now: asking again at once whether it does is moot
            self._now_only_at = loop_now + _NOW_ONLY
            for i in self._dims:
                self._pending[i] += later[i]
        for i in self._dims:
            target = max(self._target[i], granted[i])
            self._low[i] = target * (_LOW_OVERDRAWN if self._overdrawn else _LOW)
            # while the shared level is overdrawn others wait for it: keep no more than
            # the target; else up to `_KEEP` targets (refunds stay usable here)
            self._keep[i] = target * ((1.0 + _LOW) if self._overdrawn else _KEEP)
        self._wake()

    def _script_args(  # the order `lease.lua` reads its ARGV in
        self,
        need: Cost,
        ask: Cost,
        give: Cost | list[float],
        debt: list[float],
        *,
        clamp: list[float] | None = None,
        proof: list[float] | None = None,
        holds: list[float] | None = None,
        prior: list[float] | None = None,
        clamp_ages: list[tuple[float, float]] | None = None,
        now_only: bool = False,
    ) -> list[str]:
        period = self.limits.period
        args = [
            self._store.process_id,
            _num(period),
            _num(horizon_seconds(period, self._per_process_rpm())),
            _num(min(period * _PROBE_SHARE, 5.0)),
        ]
        for i in range(3):
            c = clamp[i] if clamp is not None else _INF
            p = proof[i] if proof is not None else _INF
            args += [
                _num(self._cap[i]),
                _num(need[i]),
                _num(ask[i]),
                _num(give[i]),
                "" if not math.isfinite(c) else _num(c),
                "" if not math.isfinite(p) else _num(p),
                _num(debt[i]),
            ]
        args.append(_num(lease_lifetime(period)))
        args += [_num(holds[i] if holds is not None else 0.0) for i in range(3)]
        args += [_num(prior[i] if prior is not None else 0.0) for i in range(3)]
        args += [self._epoch, "" if not self._epoch else str(self._seq)]
        args.append(_num(self._store.breaker.cooldown * _SETTLE_COOLDOWNS + _SETTLE_MARGIN))
        # the flows' record's life; each clamp's reading's age, earliest and latest (s)
        args.append(_num(flow_window(period)))
        ages = clamp_ages if clamp_ages is not None else [(0.0, 0.0)] * 3
        args += [_num(a[0]) for a in ages]
        args += [_num(a[1]) for a in ages]
        # this process's backlog: the answer sums every live process's (`_work_share`)
        gate = self._gate
        self._sent_waiting = gate.waiting if gate is not None else 0
        args.append(str(self._sent_waiting))
        args.append("1" if now_only else "0")
        args += [_num(x) for x in self._give_unpaid]
        self._give_unpaid = [0.0, 0.0, 0.0]
        return args

    def _seen(self, res: list[str], loop_now: float) -> None:
        """What every answer says: the bucket's epoch and sequence, and that the lease's
        record was renewed now."""
        if len(res) > 15:
            self._epoch, self._seq = res[14], int(res[15])
        if len(res) > 20:  # the backlogs of every live process, this one's as sent
            self._others_waiting = max(0.0, float(res[20]) - self._sent_waiting)
            self._others_at = loop_now
        self._called_at = loop_now

    # -- the background task: one per budget, woken by `_want`, calling when due --------------

    def _want(self) -> None:
        if self._task is None:
            if self._store.closed:
                return
            self._task = asyncio.get_running_loop().create_task(self._run())
            self._store.tasks.add(self._task)
        self._kick.set()

    def _flush(self) -> None:
        self._flush_at = None
        self._flush_due = True
        self._want()

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            timeout = self._next_timeout(loop.time())
            if not self._kick.is_set() and timeout != 0.0:
                try:
                    async with asyncio.timeout(timeout):
                        await self._kick.wait()
                except TimeoutError:
                    pass
            self._kick.clear()
            now = loop.time()
            if self._not_before - now > _EARLY:
                continue  # (a timer may fire up to the clock's resolution early)
            try:
                await self._round_trip(now)
            except asyncio.CancelledError:
                raise
            except Exception:  # a bug must not stop admission: log, back off, go on
                log.exception("shared budget %s: round trip failed", self.name)
                self._not_before = loop.time() + self._hint

    def _next_timeout(self, now: float) -> float | None:
        """Seconds until something is due with nothing else happening (None: nothing)."""
        due = _INF
        if self._not_before > now:
            due = self._not_before
        elif self._mode != _SHARED:
            due = now + max(self._store.breaker.retry_in(), 0.001)
        if self._mode == _SHARED and any(self._lease[i] + self._pending[i] for i in self._dims):
            # renew the lease's record before Redis gives it back
            due = min(due, self._called_at + lease_lifetime(self.limits.period) * _RENEW)
            idle_at = self._last_take + self._idle_after()
            if self._busy(now):  # look again after a while
                idle_at = max(idle_at, now + self._idle_after())
            due = min(due, max(idle_at, now))
        return None if due == _INF else max(0.0, due - now)
