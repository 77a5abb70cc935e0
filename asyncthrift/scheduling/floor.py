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
This class keeps the recent ones, as offsets from our own level when they were read, and
says by how much the level may safely rise: a high quantile of them, not the maximum, so
one odd reading (another answer's refund the server made but we have not read yet) cannot
raise it alone.
"""

from __future__ import annotations

__all__ = ["ReadingFloor"]

#: Readings kept per dimension, and the fewest that allow a rise.
_KEPT = 16
_FEWEST = 8
#: The quantile of the kept offsets the level may rise by (1.0 would be the maximum).
_QUANTILE = 0.875
#: Readings older than this fraction of the period are forgotten: an unseen consumer's
#: spending since then would make them stale.
_MAX_AGE = 0.05


class ReadingFloor:
    """Per dimension: recent lower bounds of the server's level, relative to our own level."""

    __slots__ = ("_offsets", "_times", "lifted")

    def __init__(self) -> None:
        self._offsets: list[list[float]] = [[], [], []]
        self._times: list[list[float]] = [[], [], []]
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

    def rise(
        self,
        i: int,
        lower_bound: float,
        level: float,
        now: float,
        period: float,
        *,
        alone: bool = True,
    ) -> float:
        """Record a lower bound of the server's level; how much our `level` may rise (>= 0).

        The offsets kept are relative to our level: after a rise they are shifted by it,
        so that the same evidence is not credited twice. Not `alone` on the key (another
        consumer's spending makes kept bounds stale), only this reading's bound counts.
        """
        offsets, times = self._offsets[i], self._times[i]
        if not alone:
            offsets.clear()
            times.clear()
            rise = max(0.0, lower_bound - level)
            self.lifted[i] += rise
            return rise
        cutoff = now - period * _MAX_AGE
        while times and (times[0] < cutoff or len(times) >= _KEPT):
            del times[0]
            del offsets[0]
        times.append(now)
        offsets.append(lower_bound - level)
        if len(offsets) < _FEWEST:
            return 0.0
        ranked = sorted(offsets)
        # never the highest: with `_FEWEST` kept, the quantile's index was the last, and one
        # reading lifted the level alone (a request that overtook a burst still in the
        # process read the bucket full: 28-31k output tokens of 32k, then 43-50 x 429)
        rise = ranked[min(len(ranked) - 2, int(_QUANTILE * len(ranked)))]
        if rise <= 0.0:
            return 0.0
        for k in range(len(offsets)):
            offsets[k] -= rise
        self.lifted[i] += rise
        return rise
