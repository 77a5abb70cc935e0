"""`ForeignFit`: the rate someone outside a shared budget spends from its key, from readings.

The pure part of `_foreign` (no clock, no Redis: fed readings and instants, so the
virtual-time tests drive it directly): a least-squares slope, per dimension, of
``full refill since a fixed instant - every process's net charges by a reading - remaining``
over a sliding window, as `scheduling.foreign.ForeignShare` fits a local budget's (that one
sets a bucket's rate; this one only estimates, and `lease.lua` applies the processes'
average). Kept apart so that the learner can be read and tested without the round trip.
"""

from __future__ import annotations

import math
from collections import deque

from ...scheduling.running_fit import Point, RunningFit

__all__ = ["WINDOW", "ForeignFit"]

#: The window the slope is fitted over, a fraction of the period (longer than
#: `ForeignShare`'s 0.15: the others' charges between their calls add noise) ...
WINDOW = 0.25
#: ... whose points must span this part of it (most of it: a short span of rounded
#: readings gives slopes of half the limit), and number at least this many (kept however
#: old while fewer: a process sees only its share of the answers).
_MIN_SPAN = 0.8
_FEWEST = 5
#: The span asked of a dimension read exactly (requests: no rounding, the others' charges
#: between calls the only noise), where half a window tells a consumer apart.
_MIN_SPAN_EXACT = 0.4
#: A slope counts as someone else's once it is this many standard errors above zero (more
#: than `ForeignShare`'s two: the others' charges between their calls make the noise of
#: consecutive readings alike, and a phantom consumer slows every process).
_SIGNIFICANT = 3.0
#: ... and this share of the limit's rate at least: with no other consumer the quantity
#: drifts by up to a tenth of it over a window (the instants readings are taken at, the
#: others' charges between their calls), and a consumer that small is the header
#: ceiling's to take back, not worth slowing every process for.
_LEAST = 0.15
#: Readings within this fraction of the period of a bunch's first are one point, their mean
#: (answers come in bunches whose readings err alike: the same rounding, the same guess at
#: the others' charges; at 0.002, and keeping only a bunch's first reading, four processes
#: alone on a key found a phantom consumer of 5-8 % of the limits on average).
_MIN_INTERVAL = 0.01
#: The residuals' lag-1 autocorrelation counted at most this high (`_Slope.slope`).
_MAX_RHO = 0.9
#: The estimate's bounds, as shares of a limit's rate (below zero so that noise averages
#: out across processes; only a positive average slows the shared refill).
_MAX_SHARE = 0.9
_MIN_SHARE = -0.25
#: After a 429 the server's level does not explain: at least this share is someone else's.
_REFUSED_SHARE = 0.5
#: Standard errors added to a certain slope.
_SAFETY = 0.0
#: Standard errors by which the last half window's slope must be lower to replace it.
_SLOWED = 2.0


class _Slope:
    """A `RunningFit` of (t, y) points (``x = 0``), a bunch of readings folded into one
    point, its standard error widened for the residuals' autocorrelation."""

    __slots__ = ("bunched", "first", "sums")

    def __init__(self) -> None:
        self.sums = RunningFit()
        self.first, self.bunched = -math.inf, 0  # the newest point's bunch: its start, size

    @property
    def points(self) -> deque[Point]:
        return self.sums.points

    def clear(self) -> None:
        self.sums.clear()

    def add(self, t: float, y: float, bunch: float) -> bool:
        """Add the point (t, y), or fold it into the newest point (the mean of a bunch) if
        that bunch began less than `bunch` before `t`; whether a point was added."""
        sums = self.sums
        points = sums.points
        if points and t - self.first < bunch:
            n = self.bunched
            tn, _, yn = points[-1]
            mean = ((tn * n + t - sums.base) / (n + 1), 0.0, (yn * n + y - sums.y0) / (n + 1))
            sums.replace_last(mean)
            self.bunched = n + 1
            return False
        self.first, self.bunched = t, 1
        sums.add(t, 0.0, y)
        return True

    def drop_before(self, t: float, keep: int) -> None:
        self.sums.drop_before(t, keep)

    def span(self) -> float:
        return self.sums.span()

    def last(self) -> float:
        return self.points[-1][0] + self.sums.base if self.points else -math.inf

    def recent(self, since: float, noise: float) -> tuple[float, float, float]:
        """The slope of the points from loop time `since` on, its plain standard error
        (at least what `noise` allows; inf with fewer than four points) and their span."""
        picked = [(t, y) for t, _, y in self.points if t >= since - self.sums.base]
        n = len(picked)
        if n < 4:
            return 0.0, math.inf, 0.0
        mt = sum(t for t, _ in picked) / n
        my = sum(y for _, y in picked) / n
        sxx = sum((t - mt) ** 2 for t, _ in picked)
        if sxx <= 0.0:
            return 0.0, math.inf, 0.0
        slope = sum((t - mt) * (y - my) for t, y in picked) / sxx
        sse = sum((y - my - slope * (t - mt)) ** 2 for t, y in picked)
        error = max(math.sqrt(sse / (n - 2) / sxx), noise / math.sqrt(sxx))
        return slope, error, picked[-1][0] - picked[0][0]

    def slope(self, noise: float = 0.0) -> tuple[float, float]:
        """The slope and its standard error (0, inf without enough points), the error
        widened for the residuals' lag-1 autocorrelation (`_autocorrelation`) and at least
        what `noise` (a reading's known standard error: its rounding) allows."""
        sums = self.sums
        slope, error = sums.slope(0.0)
        if error == math.inf:
            return slope, error
        n = len(sums.points)
        sxx = sums.stt - sums.st * sums.st / n
        rho = self._autocorrelation(slope)
        error *= math.sqrt((1.0 + rho) / (1.0 - rho))
        return slope, max(error, noise / math.sqrt(sxx))

    def _autocorrelation(self, slope: float) -> float:
        """The lag-1 autocorrelation of the residuals about the line, in [0, `_MAX_RHO`].

        Why: the standard error of a least-squares slope assumes independent residuals, and
        these are not: the others' charges between their calls are extrapolated from their
        last report (a sawtooth, reset at each of their calls) and a token reading is rounded
        to a thousand of a level that moves slowly, so consecutive readings err alike. Four
        processes alone on a key read that shared error as a slope "three standard errors"
        above zero often enough to slow the shared refill by 5-8 % (the compressed 4-process
        workload: 1.06-1.09x against 1.03-1.04x with the foreign rate off). Widening the
        error by ``sqrt((1 + rho) / (1 - rho))`` (an AR(1) noise's effective sample size)
        leaves a real consumer's slope, which stands far above it, as certain as before."""
        sums = self.sums
        n = len(sums.points)
        if n < 5:
            return 0.0
        mt, my = sums.st / n, sums.sy / n
        previous = None
        lagged = total = 0.0
        for t, _, y in sums.points:
            r = y - my - slope * (t - mt)
            total += r * r
            if previous is not None:
                lagged += r * previous
            previous = r
        if total <= 0.0:
            return 0.0
        return min(_MAX_RHO, max(0.0, lagged / total))

    def without_worst(self, noise: float = 0.0) -> tuple[float, float]:
        """`slope` with the point farthest from the fitted line left out (one reading that
        caught a refund on its way, say, tilts the line while it is at one end of the
        window), as `scheduling.foreign` checks a local budget's."""
        sums = self.sums
        if len(sums.points) < 4:
            return 0.0, math.inf
        slope, _ = self.slope()
        k = sums.worst(0.0, slope)
        worst = sums.take_out(k)
        try:
            return self.slope(noise)
        finally:
            sums.put_back(k, worst)


class ForeignFit:
    """Per dimension, the rate (units/s) someone outside the shared budget spends from the
    key, as far as this process's readings tell (None: not known yet). Pure: fed readings
    and instants, no clock, no Redis (the virtual-time tests drive it directly)."""

    __slots__ = ("_fits", "_refused_at", "estimates", "full", "period")

    def __init__(self, caps: list[float], period: float) -> None:
        self.period = period
        self.full = [c / period for c in caps]
        self._fits = (_Slope(), _Slope(), _Slope())
        self.estimates: list[float | None] = [None, None, None]
        # when a 429 set an estimate no fit has replaced yet (`refused`, `stale`)
        self._refused_at: list[float | None] = [None, None, None]

    def learn(self, i: int, unexplained: float, now: float, noise: float = 0.0) -> None:
        """Add a reading of dimension `i`: `unexplained` is ``full refill since a fixed
        instant - every process's net charges by the reading - remaining``, known to within
        `noise` (a standard error: the `-remaining` rounding's)."""
        fit, period = self._fits[i], self.period
        if not fit.add(now, unexplained, period * _MIN_INTERVAL):
            return  # one more reading of a bunch: its mean counts as one point
        fit.drop_before(now - period * WINDOW, _FEWEST)
        least_span = period * WINDOW * (_MIN_SPAN if noise else _MIN_SPAN_EXACT)
        if len(fit.points) < _FEWEST or fit.span() < least_span:
            return
        full = self.full[i]
        least = full * _LEAST
        slope, error = fit.slope(noise)
        certain = slope > max(_SIGNIFICANT * error, least)
        if certain:
            alone, alone_error = fit.without_worst(noise)  # and not by one outlying reading
            certain = alone > max(_SIGNIFICANT * alone_error, least)
        # certainly someone else: the slope itself (more overstates the consumer, and the
        # refill it takes from every process is lost for good, where a level that runs a
        # little ahead is taken back by the header ceiling); not told apart from the
        # noise: no reason to slow down
        slope = slope + _SAFETY * error if certain else min(slope, 0.0)
        if certain:
            slope = self._slowed(i, slope, now, noise)
        self._refused_at[i] = None
        before = self.estimates[i]
        self.estimates[i] = min(max(slope, full * _MIN_SHARE), full * _MAX_SHARE)
        if i == 0 and before is not None and before > 0.0 and slope <= 0.0:
            self._left()

    def _left(self) -> None:
        """The requests say the other consumer left (their estimate fell from someone to
        nobody): forget the tokens' estimates and start their fits over.

        Why: a consumer that sends no requests is charged no more input, and its answers in
        flight end within seconds, but the token fits, fed rounded readings of a level the
        flights move by thousands, see it go a window later than the requests (exact) do,
        and a 429's floor stands for its window regardless: with `--shadow-schedule
        0:0,10:0.4,30:0` the estimates in force still took 0.3-0.5 of the output limit
        8 s after the consumer stopped, and 0.25-0.3 of the input's. A consumer that goes
        on spending tokens is found again by their fits (and the header ceiling holds
        the level meanwhile); one that sends few requests never had a requests estimate
        above zero to lose."""
        for j in (1, 2):
            estimate = self.estimates[j]
            if estimate is not None and estimate > 0.0:
                self._fits[j].clear()
                self._refused_at[j] = None
                self.estimates[j] = None

    def _slowed(self, i: int, slope: float, now: float, noise: float) -> float:
        """`slope`, or the last half window's when that is below half of it and certainly
        lower (`_SLOWED` of its errors): the consumer slowed down or stopped.

        Why: a window's slope keeps a consumer that stopped at half its rate for half a
        window and gone only after a whole one, slowing every process meanwhile (with
        `--shadow-schedule 0:0,10:0.4,30:0` the processes still took 0.4-0.5 of the
        output limit as someone else's 6-8 s after it stopped). Only downwards: a consumer
        that starts is the 429's (`refused`) and the header ceiling's."""
        fit = self._fits[i]
        half = self.period * WINDOW / 2
        recent, error, span = fit.recent(now - half, noise)
        if span >= half * 0.6 and recent < min(slope / 2, slope - _SLOWED * error):
            return max(recent, 0.0)
        return slope

    def restart(self, i: int) -> None:
        """The server's bucket near full: its refill may have been wasted at the cap, which
        nobody spent, and whoever else spends leaves us more than we use. Start over."""
        self._fits[i].clear()
        self._refused_at[i] = None
        self.estimates[i] = 0.0

    def refused(self, i: int, now: float | None = None) -> None:
        """A 429 on dimension `i`: someone else takes at least `_REFUSED_SHARE` of it until
        a window of fresh readings says how much (a consumer that starts is found by the
        fit only a window later), or for a window after `now` at most (see `stale`)."""
        self._fits[i].clear()
        floor = self.full[i] * _REFUSED_SHARE
        current = self.estimates[i]
        if current is None or current < floor:
            self.estimates[i] = floor
        if now is not None:
            self._refused_at[i] = now

    def stale(self, now: float) -> None:
        """Forget an estimate whose latest reading is older than a window and a half: a
        consumer that stopped must not slow the shared refill for longer than it takes the
        fit to see it (fits that keep old points keep their estimate only while fed). An
        estimate a 429 set and no fit replaced goes after a window: kept until the fit had
        points enough, it held the output refill at half the limit for 30 s of a 50 s
        run with a consumer at 40 % (`bench_shared.py --shadow-load 0.4`)."""
        window = self.period * WINDOW
        for i in range(3):
            fit = self._fits[i]
            if fit.points and now - fit.last() > window * 1.5:
                fit.clear()
                self.estimates[i] = None
            refused_at = self._refused_at[i]
            if refused_at is not None and now - refused_at > window:
                self._refused_at[i] = None
                self.estimates[i] = None

    def clear(self) -> None:
        for fit in self._fits:
            fit.clear()
        self._refused_at = [None, None, None]
        self.estimates = [None, None, None]
