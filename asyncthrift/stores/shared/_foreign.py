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
call reports what this process charged since its last report and its recent rate, and the
answer says the others' total as of that call and their summed rate, so the others' charges
at a reading's instant are that total moved by their rate (`ForeignFit.others_at`). A
least-squares slope of the quantity over a window of the period (as `ForeignShare`, counted
only once it stands out of the noise, a standard error on the safe side, half the limit
assumed after an unexplained 429) is this process's estimate; each call reports it, Redis
averages the live estimates of every process and refills the shared level at the limit's
rate less that average (`lease.lua`), and grants paid for by the refill are paid at that
rate here too (`_pay_rate`).

Safe under either reading of what the API leaves open: the reading's instant (admission or
completion) is taken at the middle of the request's flight and readings across a burst are
left out (as `ForeignShare`); token `-remaining` rounding is noise the fit averages out; an
estimate is kept only while it is fresh (a consumer that stops is forgotten within a
window), and a 429 raises it at once. The header ceiling stays: it still removes what the
level ran ahead by before the estimate caught up.
"""

from __future__ import annotations

import bisect
import logging
import math
from collections import deque

from ...scheduling.bucket import ZERO, Cost, ServerView
from ...scheduling.limits import Limits
from ._roundtrip import RoundTrip

__all__ = ["ForeignFit", "SharedForeign"]

log = logging.getLogger("asyncthrift.shared")

#: The window the slope is fitted over, a fraction of the period (longer than
#: `ForeignShare`'s 0.15: the others' charges between their calls add noise) ...
_WINDOW = 0.25
#: ... whose points must span this part of it, and number at least this many (kept however
#: old while fewer: a process sees only its share of the answers).
_MIN_SPAN = 0.4
_FEWEST = 10
#: Readings closer together than this fraction of the period are one point.
_MIN_INTERVAL = 0.002
#: The estimate's bounds, as shares of a limit's rate (below zero so that noise averages
#: out across processes; only a positive average slows the shared refill).
_MAX_SHARE = 0.9
_MIN_SHARE = -0.25
#: After a 429 the server's level does not explain: at least this share is someone else's.
_REFUSED_SHARE = 0.5
#: A reading teaches nothing if more than this share of the capacity was charged (by every
#: process) while its request was out: its instant is too uncertain (a burst).
_FLIGHT_MAX = 0.05
#: Readings of the first part of a window after the first answer teach nothing (a burst's).
_QUIET = 0.5
#: A reading teaches nothing either while the other processes hold more than this share of
#: the capacity as leases (a burst's): how much of it they spent by the reading is unknown.
_ROOM_MAX = 0.25
#: The answers' others' totals kept, in periods (readings older than their request are
#: placed against the oldest kept).
_KEEP_POINTS = 1.0
Triple = tuple[float, float, float]

#: The prefix of this module's argument and answer in `lease.lua` (read from the end).
TAG = "F1"


class _Slope:
    """Running least-squares sums over a sliding window of (t, y) points."""

    __slots__ = ("points", "st", "stt", "sty", "sy", "syy", "t0", "y0")

    def __init__(self) -> None:
        self.points: deque[tuple[float, float]] = deque()
        self.t0 = self.y0 = 0.0
        self.st = self.sy = self.stt = self.sty = self.syy = 0.0

    def clear(self) -> None:
        self.points.clear()
        self.st = self.sy = self.stt = self.sty = self.syy = 0.0

    def add(self, t: float, y: float) -> None:
        if not self.points:
            self.t0, self.y0 = t, y  # small numbers in the sums: no cancellation
        t, y = t - self.t0, y - self.y0
        self.points.append((t, y))
        self.st += t
        self.sy += y
        self.stt += t * t
        self.sty += t * y
        self.syy += y * y

    def drop_before(self, t: float, keep: int) -> None:
        t -= self.t0
        points = self.points
        while len(points) > keep and points[0][0] < t:
            u, y = points.popleft()
            self.st -= u
            self.sy -= y
            self.stt -= u * u
            self.sty -= u * y
            self.syy -= y * y

    def span(self) -> float:
        return self.points[-1][0] - self.points[0][0] if self.points else 0.0

    def last(self) -> float:
        return self.points[-1][0] + self.t0 if self.points else -math.inf

    def slope(self) -> tuple[float, float]:
        """The slope and its standard error (0, inf without enough points)."""
        n = len(self.points)
        sxx = self.stt - self.st * self.st / n if n else 0.0
        if n < 3 or sxx <= 0.0:
            return 0.0, math.inf
        sxy = self.sty - self.st * self.sy / n
        syy = self.syy - self.sy * self.sy / n
        slope = sxy / sxx
        return slope, math.sqrt(max(0.0, syy - slope * sxy) / (n - 2) / sxx)


class ForeignFit:
    """Per dimension, the rate (units/s) someone outside the shared budget spends from the
    key, as far as this process's readings tell (None: not known yet). Pure: fed readings
    and instants, no clock, no Redis (the virtual-time tests drive it directly)."""

    __slots__ = ("_fits", "estimates", "full", "period")

    def __init__(self, caps: list[float], period: float) -> None:
        self.period = period
        self.full = [c / period for c in caps]
        self._fits = (_Slope(), _Slope(), _Slope())
        self.estimates: list[float | None] = [None, None, None]

    def learn(self, i: int, unexplained: float, now: float) -> None:
        """Add a reading of dimension `i`: `unexplained` is ``full refill since a fixed
        instant - every process's net charges by the reading - remaining``."""
        fit, period = self._fits[i], self.period
        if now - fit.last() < period * _MIN_INTERVAL:
            return
        fit.add(now, unexplained)
        fit.drop_before(now - period * _WINDOW, _FEWEST)
        if len(fit.points) < _FEWEST or fit.span() < period * _WINDOW * _MIN_SPAN:
            return
        slope, error = fit.slope()
        # certainly someone else: one standard error more (a 429 costs more than a wait);
        # not told apart from the noise: no reason to slow down
        slope = slope + error if slope > 2.0 * error else min(slope, 0.0)
        full = self.full[i]
        self.estimates[i] = min(max(slope, full * _MIN_SHARE), full * _MAX_SHARE)

    def restart(self, i: int) -> None:
        """The server's bucket near full: its refill may have been wasted at the cap, which
        nobody spent, and whoever else spends leaves us more than we use. Start over."""
        self._fits[i].clear()
        self.estimates[i] = 0.0

    def refused(self, i: int) -> None:
        """A 429 on dimension `i`: someone else takes at least `_REFUSED_SHARE` of it until
        a window of fresh readings says how much (a consumer that starts is found by the
        fit only a window later)."""
        self._fits[i].clear()
        floor = self.full[i] * _REFUSED_SHARE
        current = self.estimates[i]
        if current is None or current < floor:
            self.estimates[i] = floor

    def stale(self, now: float) -> None:
        """Forget an estimate whose latest reading is older than a window and a half: a
        consumer that stopped must not slow the shared refill for longer than it takes the
        fit to see it (fits that keep old points keep their estimate only while fed)."""
        for i in range(3):
            fit = self._fits[i]
            if fit.points and now - fit.last() > self.period * _WINDOW * 1.5:
                fit.clear()
                self.estimates[i] = None

    def clear(self) -> None:
        for fit in self._fits:
            fit.clear()
        self.estimates = [None, None, None]


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
        """The others' net charges of dimension `i` at loop time `t` (None: no answer yet)."""
        times = self.times
        if not times:
            return None
        k = bisect.bisect_right(times, t) - 1
        if k < 0:
            k = 0
        moved = self.rates[k][i] * (t - times[k])
        return self.totals[k][i] + max(-self.rooms[k][i], min(moved, self.rooms[k][i]))

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
        "_fx_others",
        "_fx_pending",
        "_fx_quiet_until",
        "_fx_reported",
    )

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
        self.lease_cuts = 0.0

    def _foreign_fit(self) -> ForeignFit:
        caps = tuple(self._cap)
        if self._fx is None or caps != self._fx_caps:
            self._fx = ForeignFit(list(self._cap), self.limits.period)
            self._fx_caps = caps
            self._fx_others.clear()
        return self._fx

    def _others_held(self, i: int, now: float) -> float:
        """What the other processes still hold of dimension `i` as leases at loop time
        `now`, as far as the answers tell (what they held after their last calls, less what
        their rates spent since): a part of the server's level the shared level is not."""
        others = self._fx_others
        if not others.times:
            return 0.0
        k = len(others.times) - 1
        moved = others.rates[k][i] * max(0.0, now - others.times[k])
        return max(0.0, others.rooms[k][i] - moved)

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
            self._fx_quiet_until = now + self.limits.period * _WINDOW * _QUIET
        others = self._fx_others
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
                fit.refused(i)  # this dimension refused it: our level ran ahead
                continue
            if quiet:
                continue
            if remaining >= cap - 2 * tolerance[i] - 1:
                fit.restart(i)
                continue
            o_mid, o_sent, o_now = others.at(i, mid), others.at(i, sent_at), others.at(i, now)
            if o_mid is None or o_sent is None or o_now is None:
                continue
            flight = self._net[i] - before[i]
            if abs(flight + o_now - o_sent) > cap * _FLIGHT_MAX:
                continue
            if others.room(i, mid) > cap * _ROOM_MAX:
                continue  # the others hold a burst's leases: what they spent is anyone's guess
            # the request's unused output comes back to us; a reading may have it already
            refundable = max(0.0, took[i] - seen[i] - uncharged[i]) if i == 2 else 0.0
            spent = self._net[i] - flight / 2 - refundable - (refused and i == 0) + o_mid
            fit.learn(i, fit.full[i] * now - spent - remaining, now)

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
    ) -> list[str]:
        """The round trip's arguments and, last, this process's report (`lease.lua` reads it
        from the end): ``F1 charged x3, rate x3, estimate x3`` (``x``: no estimate)."""
        args = super()._script_args(
            need, ask, give, debt, clamp=clamp, proof=proof, holds=holds, prior=prior
        )
        fit = self._foreign_fit()
        net = list(self._net)
        self._fx_pending = net
        charged = [net[i] - self._fx_reported[i] for i in range(3)]
        est = ["x" if e is None else repr(float(e)) for e in fit.estimates]
        words = [TAG, *(repr(float(x)) for x in charged), *est]
        args.append(" ".join(words))
        return args

    def _seen(self, res: list[str], loop_now: float) -> None:
        """The answer's report of the others (their total and rate) and the foreign rates
        in force; a bucket Redis lost (a new epoch) restarts what was learnt."""
        epoch = self._epoch
        super()._seen(res, loop_now)
        if epoch and self._epoch != epoch:
            self._foreign_fit().clear()
            self._fx_others.clear()
        if self._fx_pending is not None:
            self._fx_reported = self._fx_pending
            self._fx_pending = None
        for word in reversed(res[-3:]):
            if isinstance(word, str) and word.startswith(TAG + " "):
                x = [float(v) for v in word.split()[1:14]]
                others = self._fx_others
                if x[9]:
                    others.clear()  # our record is new: its reported total restarted
                others.add(loop_now, (x[0], x[1], x[2]), (x[3], x[4], x[5]), (x[10], x[11], x[12]))
                others.trim(loop_now - self.limits.period * _KEEP_POINTS)
                self._fx_applied = [max(0.0, x[6 + i]) for i in range(3)]
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
