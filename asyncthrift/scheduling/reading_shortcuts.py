"""Shortcuts that keep a header reading's cost constant when nothing binds, and change nothing.

A reading (`HeaderResync.observe`) looked at every change this budget made while the
request was out (`NetHistory._highest_readings`), and at every request sent in the second
before it (`Transit.before`, up to 256 of them, and all before those): in a gateway
answering ~500 requests a second those two loops were the largest single items of its
profile (130 us of ~700 us of CPU per request, bench/RESULTS.md, branch ``gw27``). Both are
skipped or cut short only where the skipped work provably adds nothing, so every reading
gives exactly what the full loops give (``tests/test_gateway_reading_shortcuts.py``):

- `LazyHighest`: the highest ``refill since T - net charged after T`` only serves the
  reading's ceiling, and the ceiling only lowers a level above it. That maximum is never
  below zero (``T`` = now), so a level at or below ``remaining - rounding - refused -
  refundable`` is not lowered whatever it is: then it is not computed (the usual case with
  the server's bucket far from empty).
- `TransitSums`: a request that had landed by the instant another one was admitted adds
  nothing to that one's unseen count. At each admission the requests sent before it that had
  all landed by then form a prefix (the low-water mark, moved forward once per request), and
  the loop starts after it. The part of the window counted whole (past the last 256) is a
  difference of running totals, while every cost is a whole number (then any order of
  additions gives the same float); a fractional cost turns that part back into the loop.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

from .bucket import Cost, TokenBucket

__all__ = ["LazyHighest", "TransitSums"]

#: Above this a running total of whole numbers may no longer be exact in a float (2**53).
_EXACT = float(2**53)


class LazyHighest:
    """`NetHistory._highest_readings(sent_at, now)`, computed once and only if a dimension's
    ceiling could lower its level (`at`)."""

    __slots__ = ("_at_admission", "_compute", "_now", "_sent_at", "_values")

    def __init__(
        self,
        compute: Callable[[float, float], tuple[float, float, float]],
        before: Callable[[int, float, float, float], float],
        sent_at: float,
        now: float,
    ) -> None:
        self._compute = compute
        #: `NetHistory._highest_before`: the same over the instants before a cutoff only
        self._at_admission = before
        self._sent_at = sent_at
        self._now = now
        self._values: tuple[float, float, float] | None = None

    def at(self, i: int, bucket: TokenBucket, now: float, lowest_ceiling: float) -> float:
        """Dimension `i`'s highest reading, or a stand-in when the `bucket`'s level at `now`
        is at or below `lowest_ceiling` plus a part of it known cheaply.

        `lowest_ceiling` is the ceiling with the highest reading at its least (zero: the
        instant "now"). The cheap part is the best of the instants at the admission itself
        (its own take: what refilled over the whole flight less what was charged since), a
        lower bound of the highest. When the level is below the ceiling that bound gives,
        nothing is lowered whatever the highest is, and that bound as a stand-in leaves the
        ceiling above the level too: the reading does exactly what it would have done."""
        level = bucket.level(now)
        if level <= lowest_ceiling:
            return 0.0
        values = self._values
        if values is None:
            sent_at = self._sent_at
            first = self._at_admission(i, sent_at, math.nextafter(sent_at, math.inf), self._now)
            if level <= lowest_ceiling + first:  # (-inf when no change at that instant)
                return first
            values = self._values = self._compute(sent_at, self._now)
        return values[i]


class TransitSums:
    """`Transit`'s running totals and low-water marks, aligned with its `_times` (pruned
    with it). `enabled` False turns both off (the reference the tests compare with).

    The running totals are flat floats (three per request, as `NetHistory` keeps its
    history): a tuple per admission would be one more object for the garbage collector to
    track (``tests/test_budget_allocations.py``)."""

    __slots__ = ("_cum", "_i", "_last", "_low", "_next", "_o", "_r", "enabled", "whole")

    def __init__(self, *, enabled: bool = True) -> None:
        self.enabled = enabled
        #: every cost so far was a whole number (the running totals are exact)
        self.whole = True
        self._cum: list[float] = []  # the running totals before each kept request, flat
        self._r = self._i = self._o = 0.0  # the running totals so far
        self._low: list[int] = []  # per kept request: its low-water mark (absolute)
        self._next = 0  # the low-water mark so far (absolute position)
        self._last = float("-inf")  # the latest admission's instant

    def sent(self, cost: Cost, landed: Sequence[float], base: int, now: float) -> None:
        """A request is admitted at `now`, before `Transit` appends it: `landed` (from
        `base` on) is when each one kept landed (inf: not yet)."""
        if not self.enabled:
            return
        r, i, o = self._r, self._i, self._o
        self._cum.extend((r, i, o))
        c0, c1, c2 = cost
        if self.whole and not (
            float(c0).is_integer() and float(c1).is_integer() and float(c2).is_integer()
        ):
            self.whole = False
        r, i, o = self._r, self._i, self._o = r + c0, i + c1, o + c2
        if max(r, i, o) >= _EXACT:
            self.whole = False
        # the prefix of requests landed by `now` (a clock going back starts it over)
        k = base if now < self._last else max(self._next, base)
        self._last = now
        top = base + len(landed)
        while k < top and landed[k - base] <= now:
            k += 1
        self._next = k
        self._low.append(k)

    def pruned(self, cut: int) -> None:
        """`Transit` forgot its first `cut` requests."""
        del self._cum[: 3 * cut]
        del self._low[:cut]

    def landed_before(self, own: int | None, base: int, times: Sequence[float], at: float) -> int:
        """Relative position below which every kept request had landed by `at`, for the
        request at absolute position `own` admitted at or before `at` (0 if unknown)."""
        if own is None or not self.enabled:
            return 0
        k = own - base
        if k < 0 or k >= len(self._low) or times[k] > at:
            return 0
        return max(0, self._low[k] - base)

    def between(self, start: int, stop: int) -> tuple[float, float, float] | None:
        """The costs of kept requests ``[start, stop)`` (relative) added up, or None when
        that must be done one by one (off, or a fractional cost seen)."""
        if not self.enabled or not self.whole:
            return None
        if stop <= start:
            return (0.0, 0.0, 0.0)
        cum = self._cum
        a = 3 * start
        if stop < len(self._low):
            b = 3 * stop
            return (cum[b] - cum[a], cum[b + 1] - cum[a + 1], cum[b + 2] - cum[a + 2])
        return (self._r - cum[a], self._i - cum[a + 1], self._o - cum[a + 2])
