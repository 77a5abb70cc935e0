"""`ReadingFloor`: how far below the server's level a budget's own level sits, from many readings.

A `LocalBudget` (`budget`) lowers its level to what each response's headers allow and
never raises it: one reading taken at face value could credit budget the server never had.
But every reading is coarse (token `-remaining` rounded to a thousand, either way; its
instant anywhere in the request's flight), so each clamp lowers the level by up to a
rounding step below the truth, and the level never gets it back: the client then runs on a
constant offset below the server (measured at the real 60 s period: 1,400 output tokens,
three seconds of an output limit of 28,000 a minute, in every dimension's makespan).

Each reading also gives a *lower bound* of the server's level: its `-remaining` read as
low as any rounding and any instant allow. One bound says little (it is a rounding step
below the truth on a bad draw), but as our own charges move the server's level across the
rounding steps the bounds land at every phase, and the best of them is close to the truth.
This class keeps the recent ones, as offsets from our own level when they were read (so
our own charges, refunds and refill carry them forward), and says by how much the level
may safely rise: the second best of them (one odd reading never lifts it alone), each less
what a consumer too small for `ForeignShare` to have learnt may have spent since it was
read (`_DRIFT`). Carrying a bound forward by our refunds is right only for refunds the
server made after the bound's instant: a refund of a request that was out when the bound
was read may be in it already (`refunding` takes those off). Before that was counted, such
bounds could lift the level above the server, and the rise was a high quantile of eight or
more readings: a 20 % pool budget, answering twice a second, rarely had eight within the
3 s kept.
"""

from __future__ import annotations

import math

__all__ = ["ReadingFloor"]

#: Readings kept per dimension.
_KEPT = 16
#: A kept bound loses this fraction of the refill rate per second of its age: what another
#: consumer too small or too new for `ForeignShare` to have learnt may have spent since.
#: `tests/reading_sim.py`, 20 % pool budget, 20 seeds x 24 cells (`bench/RESULTS.md`,
#: branch pool28): without it (the best bound of the last 3 s at face value) 99 429s with
#: another consumer at 40-60 % (main's floor: 23); 1.0: 1; 0.5: 2 and 2 % faster alone.
_DRIFT = 0.5
#: Readings older than this fraction of the period are forgotten: an unseen consumer's
#: spending since then would make them stale.
_MAX_AGE = 0.05


class ReadingFloor:
    """Per dimension: recent lower bounds of the server's level, relative to our own level."""

    __slots__ = ("_offsets", "_orders", "_times", "lifted")

    def __init__(self) -> None:
        self._offsets: list[list[float]] = [[], [], []]
        self._times: list[list[float]] = [[], [], []]
        # the admission order (requests sent so far, its own included) of each's request
        self._orders: list[list[float]] = [[], [], []]
        # per dimension, everything the readings lifted the level by so far (a diagnostic)
        self.lifted = [0.0, 0.0, 0.0]

    def lowered(self, i: int, amount: float) -> None:
        """Our level of dimension `i` was lowered by `amount`: the kept offsets grow by it.

        A clamp lowers it to one reading's pessimistic side; the kept lower bounds, if
        they say otherwise, lift it back at the next reading. A real fall of the server's
        level (someone else spending) shows in every new bound, and in `ForeignShare`.
        """
        offsets = self._offsets[i]
        for k in range(len(offsets)):
            offsets[k] += amount

    def refunding(self, i: int, amount: float, order: float) -> None:
        """`amount` of dimension `i`, reserved by the request admitted `order`-th, is about
        to come back to our level: the kept bounds of requests admitted after it may count it.

        Such a bound's request went out while this one was out, so the server may have
        made this refund before that reading's instant (this answer ended there and came
        back here later): the bound has the refund already, and our level is about to get
        it too. Kept relative to our level, that bound would be credited with the refund a
        second time, so its offset shrinks by it. The bounds of requests admitted after
        this one need no such care: they counted its whole charge as possibly unseen, and
        its refund takes back no more than that charge.
        """
        if amount <= 0.0:
            return
        offsets, orders = self._offsets[i], self._orders[i]
        for k in range(len(orders)):
            if orders[k] > order:
                offsets[k] -= amount

    def rise(
        self,
        i: int,
        lower_bound: float,
        level: float,
        now: float,
        period: float,
        *,
        alone: bool = True,
        order: float = math.inf,
        rate: float = 0.0,
        most: float = math.inf,
    ) -> float:
        """Record a lower bound of the server's level; how much our `level` may rise (>= 0).

        The offsets kept are relative to our level: after a rise they are shifted by it,
        so that the same evidence is not credited twice. Not `alone` on the key (another
        consumer's spending makes kept bounds stale), only this reading's bound counts.
        No rise goes past `most`: what this reading allows read as high as it may be (a
        clamp may be someone else's spending, which the kept bounds have not seen).
        """
        offsets, times, orders = self._offsets[i], self._times[i], self._orders[i]
        if not alone:
            offsets.clear()
            times.clear()
            orders.clear()
            rise = max(0.0, min(lower_bound - level, most))
            self.lifted[i] += rise
            return rise
        cutoff = now - period * _MAX_AGE
        while times and (times[0] < cutoff or len(times) >= _KEPT):
            del times[0]
            del offsets[0]
            del orders[0]
        times.append(now)
        offsets.append(lower_bound - level)
        orders.append(order)
        if len(offsets) < 2:
            return 0.0
        # the second best bound, each less what an unlearnt consumer may have spent since
        # it was read: never the best alone (a request that overtook a burst still in the
        # process read its bucket full, 28-31k output tokens of 32k: 43-50 x 429 followed)
        drift = _DRIFT * rate
        ranked = sorted(o - drift * (now - t) for o, t in zip(offsets, times, strict=True))
        rise = min(ranked[-2], most)
        if rise <= 0.0:
            return 0.0
        for k in range(len(offsets)):
            offsets[k] -= rise
        self.lifted[i] += rise
        return rise
