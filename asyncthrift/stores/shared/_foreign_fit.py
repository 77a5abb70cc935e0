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

__all__ = ["WINDOW", "ForeignFit"]

#: The window the slope is fitted over, a fraction of the period (longer than
#: `ForeignShare`'s 0.15: the others' charges between their calls add noise) ...
WINDOW = 0.25
#: ... whose points must span this part of it (most of it: a short span of rounded
#: readings gives slopes of half the limit), and number at least this many (kept however
#: old while fewer: a process sees only its share of the answers).
_MIN_SPAN = 0.8
_FEWEST = 10
#: A slope counts as someone else's once it is this many standard errors above zero (more
#: than `ForeignShare`'s two: the others' charges between their calls make the noise of
#: consecutive readings alike, and a phantom consumer slows every process).
_SIGNIFICANT = 3.0
#: Readings closer together than this fraction of the period are one point.
_MIN_INTERVAL = 0.002
#: The estimate's bounds, as shares of a limit's rate (below zero so that noise averages
#: out across processes; only a positive average slows the shared refill).
_MAX_SHARE = 0.9
_MIN_SHARE = -0.25
#: After a 429 the server's level does not explain: at least this share is someone else's.
_REFUSED_SHARE = 0.5


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
        fit.drop_before(now - period * WINDOW, _FEWEST)
        if len(fit.points) < _FEWEST or fit.span() < period * WINDOW * _MIN_SPAN:
            return
        slope, error = fit.slope()
        # certainly someone else: one standard error more (a 429 costs more than a wait);
        # not told apart from the noise: no reason to slow down
        slope = slope + error if slope > _SIGNIFICANT * error else min(slope, 0.0)
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
            if fit.points and now - fit.last() > self.period * WINDOW * 1.5:
                fit.clear()
                self.estimates[i] = None

    def clear(self) -> None:
        for fit in self._fits:
            fit.clear()
        self.estimates = [None, None, None]
