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

from .bucket import TokenBucket
from .header_instant import HeaderInstant
from .running_fit import RunningFit

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
#: A reading teaches nothing if more than this share of the capacity was charged while
#: its request was out (a burst): its instant is too uncertain. Nor while more than this
#: share is abandoned output held (`ForeignShare.read`).
_FLIGHT_MAX = 0.05
#: After a burst's hold ends, readings are left out for this part of the window.
_QUIET = 0.5
#: The share assumed taken by others after a 429 that our level does not explain.
_REFUSED_SHARE = 0.5
_FOREIGN_MIN_SHARE = -0.25
#: A slope this many standard errors above zero is another consumer, certainly.
_CERTAIN = 2.0
#: Where in its flight a reading is (`RunningFit.theta`) is fitted over this part of the
#: period, and taken halfway while the readings cannot tell.
_THETA_WINDOW = 1.0
_THETA_UNKNOWN = 0.5
#: The largest share of a limit's refill a fit gives to other consumers while their whole
#: spending over its span is within one rounding step of `-remaining` (`ForeignShare.learn`).
_STEP_SHARE = 0.5
#: The most a fitted line rises over its span through one step of the data (`learn`).
_STEP_RISE = 1.5


class ForeignShare:
    """Per dimension: the estimated rate (units/s) at which someone else spends from the key."""

    __slots__ = ("_fits", "_instants", "_quiet_until", "_refused_at", "instant", "rates")

    def __init__(self, now: float) -> None:
        self.rates = [0.0, 0.0, 0.0]
        self._fits = (RunningFit(), RunningFit(), RunningFit())
        # the same points over a longer window, for where in the flight readings are
        # (`RunningFit.theta`: a property of the server, not of the moment)
        self._instants = (RunningFit(), RunningFit(), RunningFit())
        self._quiet_until = [now, now, now]
        # per dimension, when a 429 last proved someone else spends (`refused`)
        self._refused_at = [-math.inf, -math.inf, -math.inf]
        # which instant a non-streamed answer's headers describe, learnt from the requests
        # dimension (`HeaderInstant`; `_instants` fits it per dimension for the slope only)
        self.instant = HeaderInstant()

    def after_burst(self, i: int, now: float, period: float) -> None:
        """A burst from full was just answered: its answers keep coming back for a while,
        each reading's instant uncertain by much of the capacity. Learn nothing from
        dimension `i` for half a window (a fit through the burst's tail found a lone client
        spending 90 % of its output limit for someone else)."""
        self._fits[i].clear()
        self._quiet_until[i] = now + period * _WINDOW * _QUIET

    def read(
        self,
        i: int,
        bucket: TokenBucket,
        near_full: bool,
        *,
        unexplained: float,
        ambiguity: float,
        flight: float,
        held: float,
        now: float,
        period: float,
        step: float = 0.0,
    ) -> None:
        """A reading of dimension `i` (`HeaderResync._ceiling`): `learn` from it, unless
        it says too little. `flight` is what we charged while its request was out, `held`
        the abandoned output held here (`LocalBudget.hold_abandoned`), `step` how coarse
        its `-remaining` is (`learn`).

        - The server's bucket near full (`near_full`): its refill may have been wasted at
          its cap, which nobody spent: start over (`restart`).
        - More than `_FLIGHT_MAX` of the capacity abandoned and held here: a server that
          stopped those answers has refunded it already, one that finishes them has not;
          the readings are off by up to that much until it is given back, and by a step
          when it is (read as another consumer: 0.6-0.8 of the output limit in
          ``tests/test_abandoned.py``). Forget the points, keep the estimate.
        - More than `_FLIGHT_MAX` of the capacity charged in flight (a burst): the
          reading's instant is too uncertain; skip it.
        """
        if near_full:
            self.restart(i, now, bucket, period)
        elif held > bucket.capacity * _FLIGHT_MAX:
            self._fits[i].clear()
        elif abs(flight) <= bucket.capacity * _FLIGHT_MAX:
            self.learn(i, bucket, unexplained, now, period, ambiguity, step)

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
        self._refused_at[i] = now
        full = bucket.capacity / period
        if self.rates[i] < full * _REFUSED_SHARE:
            self.rates[i] = full * _REFUSED_SHARE
            bucket.set_rate(full - self.rates[i], now)

    def learn(
        self,
        i: int,
        bucket: TokenBucket,
        unexplained: float,
        now: float,
        period: float,
        ambiguity: float = 0.0,
        step: float = 0.0,
    ) -> None:
        """Add a reading of dimension `i`; refill the bucket at the limit's rate less the
        estimate of what others spend.

        `step` is the width of the band a `-remaining` may be rounded within (a thousand
        for rounded token counts, 0 if exact). A certain slope whose rise over the fitted
        span is within what one step gives a line may be the readings crossing one
        rounding boundary (rounding is no white noise but a step function of the level):
        it is believed up to `_STEP_SHARE` of the refill only, unless a 429 proved
        another consumer within the last period (`refused`). Why: one step inside the
        window made a lone client's fit certain of another consumer taking 0.9 of a small
        budget's output limit (150 tokens/s, `bench/bench_pools.py`'s 20 % budget at the
        real period); refilled at a tenth of its rate the budget then sent so little that
        no reading corrected it for half a minute (``tests/reading_sim.py``'s simulation
        of that budget: 51.5 s instead of 30.3 s). Why not ignore such a slope: on a budget
        that small another consumer's 40-60 % is within a step over the window too;
        ignored, the simulation met 51 429s instead of 38 (40 seeds, 40-60 % consumers,
        both header instants and roundings); capped, 38 (and 122 instead of 116 with a
        consumer taking 75 %, where 1.2 per 100 requests meet one either way).

        `unexplained` is ``full refill since some fixed instant - our net charges since
        then - the server's remaining`` as of this reading: its slope over the window is
        the others' rate. The estimate may go below zero, so that a lone consumer's noise
        averages out instead of ratcheting up against a floor; only a positive estimate
        slows the refill.

        `unexplained` takes the reading as of its arrival here; `ambiguity` is how much
        lower it is if the reading is as of the request's admission instead (the refill
        and net charges of its flight, its own unused output: see `HeaderResync._ceiling`).
        Which instant a server's headers describe is not documented, but it does not
        change from one answer to the next: the fit takes ``unexplained - theta *
        ambiguity`` with one `theta` in [0, 1] fitted alongside the slope. Why: with
        `theta` fixed (the flight's charges counted half, its refill not at all), headers
        as of admission made a lone client's ambiguity a trend (it grows by half a flight
        of refill as the queue drains and less goes out during each flight, and it moves
        with each answer's own refund) that the fit read as another consumer: 0.3 of the
        request and input limits at 2 s + 20 ms/token answers, in the virtual-time
        simulation of ``tests/test_foreign.py``. Fitted, an ambiguity that moves with time
        alone leaves the slope uncertain, and an uncertain slope slows nothing.
        """
        if now < self._quiet_until[i]:
            return
        fit = self._fits[i]
        points = fit.points
        if points and now - fit.base - points[-1][0] < period * _MIN_INTERVAL:
            return
        fit.add(now, ambiguity, unexplained)
        fit.drop_before(now - period * _WINDOW, _FEWEST)
        instants = self._instants[i]
        instants.add(now, ambiguity, unexplained)
        instants.drop_before(now - period * _THETA_WINDOW, _FEWEST)
        if len(points) < _FEWEST or fit.span() < period * _WINDOW * _MIN_SPAN:
            return
        full = bucket.capacity / period
        theta = self._instants[i].theta()
        if theta is None:
            theta = _THETA_UNKNOWN
        slope, error = fit.slope(theta)
        # a least-squares line through points spread evenly over the span with one step
        # of `step` halfway rises by 1.5 steps over it (its slope is 1.5 * step / span)
        within_step = slope * fit.span() <= _STEP_RISE * step
        certain = slope > _CERTAIN * error
        if certain:
            # and without its most outlying reading (one that caught a refund on its way,
            # say, tilts the line while it is at one end of the window)
            alone, alone_error = fit.without_worst(theta)
            certain = alone > _CERTAIN * alone_error
        if certain:
            # someone else spends, certainly: count a standard error more, so that the
            # estimate errs on the side of leaving them their share (a 429 costs more)
            slope += error
            if within_step and now - self._refused_at[i] > period:
                slope = min(slope, full * _STEP_SHARE)
        else:
            # not told apart from the readings' noise (a burst's answers coming back, the
            # rounding): no reason to slow down; a 429 says otherwise (`refused`)
            slope = min(slope, 0.0)
        rate = min(max(slope, full * _FOREIGN_MIN_SHARE), full * _FOREIGN_MAX_SHARE)
        self.rates[i] = rate
        bucket.set_rate(full - max(0.0, rate), now)
