"""Another consumer of a shared key, learnt from the headers and applied to the shared level.

Why: a `SharedBudget`'s shared level refills in Redis at the key's whole rate, and its only
guard against a consumer outside the shared budget (a notebook, another service on the same
key) was the header ceiling (`_ceilings`), which subtracts this process's lease but not the
other processes': between readings the level ran ahead of the server by the other consumer's
spending, up to what the other processes held, and they spent it (12-33 x 429 per 400
requests with a consumer eating 40 % of the key, `bench/bench_shared.py --shadow-load 0.4`).
A local budget learns that consumer's rate (`scheduling.foreign.ForeignShare`) and refills
at what it leaves; this does the same for the shared level.

How: each reading says ``refill since a fixed instant - what *every* process of the shared
budget charged by the reading - remaining``, which grows at exactly the others' rate (a
constant otherwise, give or take the rounding and the requests in flight). This process
knows its own charges exactly (`NetHistory`); the other processes' come from Redis: each
call reports what this process charged since its last report, Redis keeps each process's
total and rate (`lease.lua`), and the answer says the others' total as of that call, their
summed rate and how much more their leases let them spend; a reading waits for the next
answer, and the others' charges at its instant are the line between the two answers around
it (`_Others.at`; after the last answer, its total moved by their rate, never by more than
their leases). A least-squares slope of the quantity over a window of the period
(`ForeignFit`: counted only once it stands out of the noise, the slope itself and not a
standard error above, half the limit assumed after an unexplained 429) is this process's
estimate; each
call reports it, Redis averages the live estimates of every process and refills the shared
level at the limit's rate less that average, and grants paid for by the refill are paid at
that rate here too (`_pay_rate`). What the level ran ahead by before the estimate caught up
is taken back by the header ceiling, and a lease above what the server has is given up
(`_ceilings.HeaderCeilings._cut_lease`).

Safe under either reading of what the API leaves open: the reading's instant (admission or
completion) is taken at the middle of the request's flight and readings across a burst are
left out (as `ForeignShare`), and so are those of the first window and those taken while the
other processes hold a burst's leases; token `-remaining` rounding is noise the fit averages out; an
estimate is kept only while it is fresh (a consumer that stops is forgotten within a
window), and a 429 raises it at once. The header ceiling stays: it still removes what the
level ran ahead by before the estimate caught up.
"""

from __future__ import annotations

import asyncio
import bisect
import logging
import math
from collections import deque

from ...scheduling.bucket import ZERO, Cost, ServerView
from ...scheduling.limits import Limits
from ._foreign_fit import WINDOW, ForeignFit
from ._roundtrip import RoundTrip

__all__ = ["SharedForeign"]

log = logging.getLogger("asyncthrift.shared")

#: A reading teaches nothing if more than this share of the capacity was charged (by every
#: process) while its request was out: its instant is too uncertain (a burst).
_FLIGHT_MAX = 0.05
#: Readings of a window after the first answer teach nothing (a burst's, and the
#: reservations its refunds let in: at half a window, fits through them found 90 % of the
#: output limit spent by someone else, and the shared refill nearly stopped).
_QUIET = 1.0
#: A reading teaches nothing either while the other processes hold more than this share of
#: the capacity as leases (a burst's): how much of it they spent by the reading is unknown.
_ROOM_MAX = 0.25
#: The answers' others' totals kept, in periods (readings older than their request are
#: placed against the oldest kept).
_KEEP_POINTS = 1.0
#: Readings held for the next answer at most (the oldest go first: a process that stopped
#: calling Redis has no use for them).
_WAIT_MAX = 256
Triple = tuple[float, float, float]
#: A reading held until an answer comes after it (`SharedForeign._learn_waiting`):
#: dimension, sent at, the flight's middle, read at, this process's charges in the flight,
#: and ``full refill - this process's charges - remaining`` (the others' charges to come).
_Waiting = tuple[int, float, float, float, float, float]

#: The prefix of this module's argument and answer in `lease.lua` (read from the end).
TAG = "F1"


class _Others:
    """The other processes' net charges over time, from the answers of this process's calls:
    at each answer (loop time) their total and their summed rate."""

    __slots__ = ("rates", "rooms", "times", "totals")

    def __init__(self) -> None:
        self.times: list[float] = []
        self.totals: list[tuple[float, float, float]] = []
        self.rates: list[tuple[float, float, float]] = []
        self.rooms: list[tuple[float, float, float]] = []

    def add(self, t: float, total: Triple, rate: Triple, room: Triple) -> None:
        """An answer at loop time `t`: the others' total, their summed rate, and how much
        more they can spend before their leases run out (the rate moves the total at most
        that far)."""
        self.times.append(t)
        self.totals.append(total)
        self.rates.append(rate)
        self.rooms.append(room)

    def trim(self, before: float) -> None:
        k = bisect.bisect_left(self.times, before)
        if k > 1:
            k -= 1  # keep one at or before `before`
            del self.times[:k], self.totals[:k], self.rates[:k], self.rooms[:k]

    def room(self, i: int, t: float) -> float:
        """How far the others' charges at loop time `t` are uncertain (their leases then)."""
        times = self.times
        k = max(0, bisect.bisect_right(times, t) - 1)
        return self.rooms[k][i] if times else math.inf

    def at(self, i: int, t: float) -> float | None:
        """The others' net charges of dimension `i` at loop time `t` (None: no answer yet):
        between two answers, the line between their totals; after the last one, its total
        moved by their rate (at most by the room their leases left)."""
        times = self.times
        if not times:
            return None
        k = bisect.bisect_right(times, t) - 1
        if k < 0:
            k = 0
        if k + 1 < len(times) and times[k + 1] > times[k]:
            a, b = self.totals[k][i], self.totals[k + 1][i]
            return a + (b - a) * (t - times[k]) / (times[k + 1] - times[k])
        moved = self.rates[k][i] * (t - times[k])
        return self.totals[k][i] + max(-self.rooms[k][i], min(moved, self.rooms[k][i]))

    def last(self) -> float:
        """The loop time of the latest answer (-inf: none)."""
        return self.times[-1] if self.times else -math.inf

    def clear(self) -> None:
        self.times.clear()
        self.totals.clear()
        self.rates.clear()
        self.rooms.clear()


class SharedForeign(RoundTrip):
    """A `SharedBudget`'s share of the foreign-rate learning: what it reports with every
    call (`_script_args`), what the answer says of the other processes (`_seen`), and what
    a reading teaches (`_learn_foreign`). A base of `SharedBudget`: its own methods."""

    __slots__ = (
        "_fx",
        "_fx_applied",
        "_fx_caps",
        "_fx_noise",
        "_fx_others",
        "_fx_pending",
        "_fx_quiet_until",
        "_fx_reported",
        "_fx_waiting",
        "lease_cuts",
    )

    lease_cuts: float  # lease given up to readings below it (`_ceilings`; capacities, summed)

    def __init__(
        self,
        limits: Limits,
        now: float,
        name: str = "",
        *,
        hold_bursts: bool = True,
        cold_start: bool = False,
    ) -> None:
        super().__init__(limits, now, name, hold_bursts=hold_bursts, cold_start=cold_start)
        self._fx: ForeignFit | None = None  # built for the limits in force (`_foreign_fit`)
        self._fx_caps: tuple[float, ...] = ()
        self._fx_others = _Others()
        self._fx_reported = [0.0, 0.0, 0.0]  # net charges reported to Redis so far
        self._fx_pending: list[float] | None = None  # reported by the call on its way
        self._fx_applied = [0.0, 0.0, 0.0]  # the foreign rates the shared level refills less
        self._fx_quiet_until: float | None = None  # set by the first reading
        self._fx_waiting: deque[_Waiting] = deque(maxlen=_WAIT_MAX)
        self._fx_noise = [0.0, 0.0, 0.0]  # a reading's standard error from its rounding
        self.lease_cuts = 0.0

    def _foreign_fit(self) -> ForeignFit:
        caps = tuple(self._cap)
        if self._fx is None or caps != self._fx_caps:
            self._fx = ForeignFit(list(self._cap), self.limits.period)
            self._fx_caps = caps
            self._fx_others.clear()
            self._fx_waiting.clear()
        return self._fx

    def _foreign_seen(self, i: int) -> bool:
        """Whether someone outside the shared budget spends dimension `i`, as far as the
        processes know: an estimate above zero in force, or this process's own (a 429 sets
        one at once)."""
        own = self._fx.estimates[i] if self._fx is not None else None
        return self._fx_applied[i] > 0.0 or (own is not None and own > 0.0)

    def _pay_rate(self, i: int) -> float:
        """The rate the shared level refills dimension `i` at (grants reserved ahead are paid
        at it): the limit's, less the other consumers' the processes learnt together."""
        return self._rate[i] - self._fx_applied[i]

    def _learn_foreign(
        self,
        view: ServerView,
        sent_mark: Cost,
        sent_at: float,
        now: float,
        *,
        uncharged: Cost = ZERO,
        refused: bool = False,
        seen: Cost = ZERO,
        own: Cost | None = None,
        tolerance: tuple[float, float, float] = (0.0, 0.0, 0.0),
    ) -> None:
        """What a reading says of consumers outside the shared budget (module docstring)."""
        fit = self._foreign_fit()
        if self._fx_quiet_until is None:
            # the first burst's answers keep coming back for a while, each reading's instant
            # uncertain by much of the capacity (a fit through them found a lone process's
            # own refunds as 90 % of the output limit spent by someone else)
            self._fx_quiet_until = now + self.limits.period * WINDOW * _QUIET
        remainings = (view.requests_remaining, view.input_remaining, view.output_remaining)
        before = self._net_until(sent_at, strict=True)
        took = self._own_take(sent_at, sent_mark) if own is None else own
        mid = (sent_at + now) / 2
        fit.stale(now)
        quiet = now < self._fx_quiet_until
        for i in self._dims:
            remaining = remainings[i]
            if remaining is None:
                continue
            cap = self._cap[i]
            if refused and remaining - tolerance[i] < took[i]:
                self._fx_forget(i)
                fit.refused(i, now)  # this dimension refused it: our level ran ahead
                continue
            if quiet:
                continue
            if remaining >= cap - 2 * tolerance[i] - 1:
                self._fx_forget(i)
                fit.restart(i)
                continue
            flight = self._net[i] - before[i]
            # the request's unused output comes back to us; a reading may have it already
            refundable = max(0.0, took[i] - seen[i] - uncharged[i]) if i == 2 else 0.0
            spent = self._net[i] - flight / 2 - refundable - (refused and i == 0)
            partial = fit.full[i] * now - spent - remaining
            self._fx_waiting.append((i, sent_at, mid, now, flight, partial))
            self._fx_noise[i] = tolerance[i] / math.sqrt(3.0)  # uniform within ±tolerance
        self._learn_waiting()

    def _fx_forget(self, i: int) -> None:
        """Drop the readings of dimension `i` still waiting (its fit starts over)."""
        waiting = self._fx_waiting
        if any(w[0] == i for w in waiting):
            kept = [w for w in waiting if w[0] != i]
            waiting.clear()
            waiting.extend(kept)

    def _learn_waiting(self) -> None:
        """Teach the fit the waiting readings that an answer now follows.

        Why wait: the other processes' charges at a reading's instant were extrapolated from
        the last answer at their reported rate, and that rate is off by a different amount
        after every call: a random slope per stretch between two calls (with no other
        consumer, a stretch read 25-35 requests high for a second, 0.06 of the limit, and
        a fit of five points took it for someone else). Between two answers their charges
        are the line between the two totals, off by far less; the wait is one call."""
        others, waiting = self._fx_others, self._fx_waiting
        fit = self._fx
        if fit is None:
            waiting.clear()
            return
        last = others.last()
        while waiting and waiting[0][3] <= last:
            i, sent_at, mid, now, flight, partial = waiting.popleft()
            o_mid, o_sent, o_now = others.at(i, mid), others.at(i, sent_at), others.at(i, now)
            if o_mid is None or o_sent is None or o_now is None:
                continue
            cap = self._cap[i]
            if abs(flight + o_now - o_sent) > cap * _FLIGHT_MAX:
                continue
            if others.room(i, mid) > cap * _ROOM_MAX:
                continue  # the others hold a burst's leases: what they spent is anyone's guess
            fit.learn(i, partial - o_mid, now, self._fx_noise[i])

    def _script_args(
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
        """The round trip's arguments and, last, this process's report (`lease.lua` reads it
        from the end): ``F1 charged x3, rate x3, estimate x3`` (``x``: no estimate; also
        while this process is idle, `_idle_report`)."""
        args = super()._script_args(
            need,
            ask,
            give,
            debt,
            clamp=clamp,
            proof=proof,
            holds=holds,
            prior=prior,
            clamp_ages=clamp_ages,
            now_only=now_only,
        )
        fit = self._foreign_fit()
        net = list(self._net)
        self._fx_pending = net
        charged = [net[i] - self._fx_reported[i] for i in range(3)]
        idle = self._idle_report()
        est = ["x" if e is None or idle else repr(float(e)) for e in fit.estimates]
        words = [TAG, *(repr(float(x)) for x in charged), *est]
        args.append(" ".join(words))
        return args

    def _idle_report(self) -> bool:
        """Whether this call reports no estimate because this process is idle (nothing
        waits here, nothing admitted lately: its idle lease goes back with this call).

        Why: `lease.lua` averages the estimates of every record reported within 0.375 of
        the period, and a process with nothing left to do makes its last call (the return
        of its idle lease) and stops; its last estimate then slowed the refill of those
        still working for up to 22 s, past the consumer's stop as well (with
        `--shadow-schedule 0:0,10:0.4,30:0` the last process still working refilled at
        0.16/0.24/0.32 of the limits less at 43 s, 13 s after the consumer stopped, while
        its own estimates said 0/0/0.17). An idle process reads no headers, so it has
        nothing fresh to say; its record drops out of the average and comes back with its
        next busy call."""
        try:
            now = asyncio.get_running_loop().time()
        except RuntimeError:  # not on a loop (a test of the arguments alone): as busy
            return False
        return not self._busy(now)

    def _seen(self, res: list[str], loop_now: float) -> None:
        """The answer's report of the others (their total and rate) and the foreign rates
        in force; a bucket Redis lost (a new epoch) restarts what was learnt."""
        epoch = self._epoch
        super()._seen(res, loop_now)
        if epoch and self._epoch != epoch:
            self._foreign_fit().clear()
            self._fx_others.clear()
            self._fx_waiting.clear()
        if self._fx_pending is not None:
            self._fx_reported = self._fx_pending
            self._fx_pending = None
        for word in reversed(res[-3:]):
            if isinstance(word, str) and word.startswith(TAG + " "):
                x = [float(v) for v in word.split()[1:14]]
                others = self._fx_others
                if x[9]:
                    others.clear()  # our record is new: its reported total restarted
                    self._fx_waiting.clear()
                others.add(loop_now, (x[0], x[1], x[2]), (x[3], x[4], x[5]), (x[10], x[11], x[12]))
                others.trim(loop_now - self.limits.period * _KEEP_POINTS)
                self._fx_applied = [max(0.0, x[6 + i]) for i in range(3)]
                self._learn_waiting()
                if log.isEnabledFor(logging.DEBUG):
                    log.debug(
                        "%s foreign t=%.3f applied=%s own=%s others=%s",
                        self.name,
                        loop_now,
                        [round(v, 2) for v in self._fx_applied],
                        [None if e is None else round(e, 2) for e in self._foreign_fit().estimates],
                        [round(v) for v in x[:6]],
                    )
                break
