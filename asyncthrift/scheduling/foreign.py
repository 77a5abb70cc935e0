"""`ForeignShare`: how fast other consumers spend from the same API key, learnt from readings.

A `LocalBudget` (`budget`) credits its buckets the limit's refill. When another process or
client spends from the same key, the server's level falls faster than ours would say.
Each reading tells how much refill the server had that neither we spent nor it still has:
``refill since the start - our net charges - remaining``. Without anybody else that
quantity stays put (give or take the reading's rounding and the requests in flight);
another consumer makes it grow at exactly its rate. This class fits that growth, per
dimension (requests, input, output), over a sliding window of the period, and sets each
bucket's refill to what the others leave.

Why a fit over a window, and not the drift between consecutive resyncs (what it did
before): at the API's real 60 s period a reading is coarse next to the refill between two
answers (token `-remaining` rounded to a thousand is seconds of a small output limit;
each answer's own refund lands before or after its headers). The drift between two
readings was mostly that noise, clipped to the whole refill: the estimate wandered by a
third of the limit, slowing a lone client to 1.4x its minimum makespan and never finding
another consumer's 40 % of the output limit (measured in the virtual-time simulation of
``tests/test_foreign.py``). A least-squares slope over several seconds averages the
rounding out and still follows a consumer that starts or stops within the window.
"""

from __future__ import annotations

import math
from collections import deque

from .bucket import TokenBucket

__all__ = ["ForeignShare"]

#: The window the slope is fitted over, a fraction of the period (9 s at 60 s).
_WINDOW = 0.15
#: A fit needs points spanning at least this part of the window, and this many of them.
#: The window keeps at least `_FEWEST` points however old: with fewer answers a window
#: than that, the estimate was made once and then never revisited (the demo's 12 s period
#: kept one fit's 11 % of the request limit for 9 s).
_MIN_SPAN = 0.4
_FEWEST = 10
#: Points closer together than this fraction of the period are one point (answers come in
#: bunches: a fit over thousands of them a second would cost more than it tells).
_MIN_INTERVAL = 0.002
#: The largest share of a limit's refill the estimate ever gives to other consumers, and
#: the lowest it goes (below zero only so that noise averages out; see `ForeignShare.learn`).
_FOREIGN_MAX_SHARE = 0.9
#: After a burst's hold ends, readings are left out for this part of the window.
_QUIET = 0.5
#: The share assumed taken by others after a 429 that our level does not explain.
_REFUSED_SHARE = 0.5
_FOREIGN_MIN_SHARE = -0.25


class _Fit:
    """Running least-squares sums over a sliding window of (t, y) points (t from `base`)."""

    __slots__ = ("base", "points", "st", "stt", "sty", "sy", "syy", "y0")

    def __init__(self) -> None:
        self.points: deque[tuple[float, float]] = deque()
        self.base = self.y0 = 0.0
        self.st = self.sy = self.stt = self.sty = self.syy = 0.0

    def clear(self) -> None:
        self.points.clear()
        self.st = self.sy = self.stt = self.sty = self.syy = 0.0

    def add(self, t: float, y: float) -> None:
        if not self.points:
            self.base, self.y0 = t, y  # small numbers in the sums: no cancellation
        t -= self.base
        y -= self.y0
        self.points.append((t, y))
        self.st += t
        self.sy += y
        self.stt += t * t
        self.sty += t * y
        self.syy += y * y

    def drop_before(self, t: float, keep: int) -> None:
        """Forget the points older than `t`, but never the newest `keep` of them."""
        t -= self.base
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

    def slope(self) -> tuple[float, float]:
        """The least-squares slope and its standard error (0, inf without enough points)."""
        n = len(self.points)
        sxx = self.stt - self.st * self.st / n if n else 0.0
        if n < 3 or sxx <= 0.0:
            return 0.0, math.inf
        sxy = self.sty - self.st * self.sy / n
        syy = self.syy - self.sy * self.sy / n
        slope = sxy / sxx
        residual = max(0.0, syy - slope * sxy) / (n - 2)
        return slope, math.sqrt(residual / sxx)


class ForeignShare:
    """Per dimension: the estimated rate (units/s) at which someone else spends from the key."""

    __slots__ = ("_fits", "_quiet_until", "rates")

    def __init__(self, now: float) -> None:
        self.rates = [0.0, 0.0, 0.0]
        self._fits = (_Fit(), _Fit(), _Fit())
        self._quiet_until = [now, now, now]

    def after_burst(self, i: int, now: float, period: float) -> None:
        """A burst from full was just answered: its answers keep coming back for a while,
        each reading's instant uncertain by much of the capacity. Learn nothing from
        dimension `i` for half a window (a fit through the burst's tail found a lone client
        spending 90 % of its output limit for someone else)."""
        self._fits[i].clear()
        self._quiet_until[i] = now + period * _WINDOW * _QUIET

    def restart(self, i: int, now: float, bucket: TokenBucket, period: float) -> None:
        """Forget dimension `i`'s points and estimate: a cold reading, or a server bucket
        near full (its refill may have been wasted at the cap, which no consumer spent; and
        whoever else spends leaves us more than we use)."""
        self._fits[i].clear()
        self.rates[i] = 0.0
        bucket.set_rate(bucket.capacity / period, now)

    def refused(self, i: int, bucket: TokenBucket, now: float, period: float) -> None:
        """A 429 found our level of dimension `i` above the server's: assume another
        consumer takes at least `_REFUSED_SHARE` of the refill until a window of fresh
        readings says how much.

        Why: a consumer that starts mid-run is found by the fit only a window later, and
        meanwhile every `retry-after` block credited a block's worth of refill the server
        did not have: 429 after 429 (3 to 10 per 400 requests when another consumer took
        40 % from a few seconds in, in the compressed test).
        """
        self._fits[i].clear()
        full = bucket.capacity / period
        if self.rates[i] < full * _REFUSED_SHARE:
            self.rates[i] = full * _REFUSED_SHARE
            bucket.set_rate(full - self.rates[i], now)

    def learn(
        self, i: int, bucket: TokenBucket, unexplained: float, now: float, period: float
    ) -> None:
        """Add a reading of dimension `i`; refill the bucket at the limit's rate less the
        estimate of what others spend.

        `unexplained` is ``full refill since some fixed instant - our net charges since
        then - the server's remaining`` as of this reading: its slope over the window is
        the others' rate. The estimate may go below zero, so that a lone consumer's noise
        averages out instead of ratcheting up against a floor; only a positive estimate
        slows the refill.
        """
        if now < self._quiet_until[i]:
            return
        fit = self._fits[i]
        points = fit.points
        if points and now - fit.base - points[-1][0] < period * _MIN_INTERVAL:
            return
        fit.add(now, unexplained)
        fit.drop_before(now - period * _WINDOW, _FEWEST)
        if len(points) < _FEWEST or fit.span() < period * _WINDOW * _MIN_SPAN:
            return
        full = bucket.capacity / period
        slope, error = fit.slope()
        if slope > 2.0 * error:
            # someone else spends, certainly: count a standard error more, so that the
            # estimate errs on the side of leaving them their share (a 429 costs more)
            slope += error
        else:
            # not told apart from the readings' noise (a burst's answers coming back, the
            # rounding): no reason to slow down; a 429 says otherwise (`refused`)
            slope = min(slope, 0.0)
        rate = min(max(slope, full * _FOREIGN_MIN_SHARE), full * _FOREIGN_MAX_SHARE)
        self.rates[i] = rate
        bucket.set_rate(full - max(0.0, rate), now)
