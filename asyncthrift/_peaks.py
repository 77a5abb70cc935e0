"""The highest header reading a budget's history allows, in O(log n) per answer: `SuffixPeaks`.

`LocalBudget.observe` lowers the local level to the highest reading consistent with a
response's header window: per dimension, the most ``refill since T - net charged after T``
can be over the instants ``T`` of our own changes since the request was sent. Scanning those
changes cost O(requests in flight) per answer, so O(in flight²) per window of answers: at 64
in flight it was the client's most expensive function of its own, and it grows with the
concurrency. Rewritten as ``max_k (net_k - rate * t_k) + rate * now - net_now``, the
maximum over a suffix of the history is the head of a monotonic stack (values strictly
decreasing, a later entry pops every earlier one it equals or beats), kept up to date as the
history grows: amortised O(1) per change, a bisection per answer.
"""

from __future__ import annotations

import bisect

__all__ = ["SuffixPeaks"]

Triple = tuple[float, float, float]


class SuffixPeaks:
    """Per dimension, the suffix maxima of ``net_k - rate * t_k`` over a budget's history.

    The stacks hold the history entries from index `_from` on, folded up to `_upto`, for the
    refill rates `_rates`. A rate change (another consumer's share learnt, a limit learnt or
    lowered), a query starting before `_from` or a trimmed history starts them again from the
    query's start: never more work than the scan they replace.
    """

    __slots__ = ("_from", "_origin", "_rates", "_times", "_upto", "_values")

    def __init__(self, origin: float) -> None:
        # times are stored as given (for the bisection); values relative to `origin`, so
        # that rate * t stays small next to the nets
        self._origin = origin
        self._rates: Triple | None = None
        self._from = 0
        self._upto = 0
        self._times: tuple[list[float], list[float], list[float]] = ([], [], [])
        self._values: tuple[list[float], list[float], list[float]] = ([], [], [])

    def invalidate(self) -> None:
        """The history's indices moved (trimmed): start again at the next query."""
        self._rates = None

    def highest(
        self,
        times: list[float],
        nets: list[Triple],
        rates: Triple,
        net_now: Triple,
        sent_at: float,
        now: float,
    ) -> Triple:
        """Per dimension, ``max(0, max over t_k >= sent_at of net_k - net_now + rate *
        (now - t_k))``: the history is ``times`` (non-decreasing) and ``nets`` (the net charged
        after each change), appended to since the last call, trimmed only with `invalidate`."""
        start = bisect.bisect_left(times, sent_at)
        if rates != self._rates or start < self._from:
            self._rates = rates
            self._from = self._upto = start
            for column in (*self._times, *self._values):
                column.clear()
        origin = self._origin
        r0, r1, r2 = rates
        (t0, t1, t2), (v0, v1, v2) = self._times, self._values
        for k in range(self._upto, len(times)):
            t = times[k]
            rel = t - origin
            n = nets[k]
            v = n[0] - r0 * rel
            while v0 and v0[-1] <= v:
                v0.pop()
                t0.pop()
            v0.append(v)
            t0.append(t)
            v = n[1] - r1 * rel
            while v1 and v1[-1] <= v:
                v1.pop()
                t1.pop()
            v1.append(v)
            t1.append(t)
            v = n[2] - r2 * rel
            while v2 and v2[-1] <= v:
                v2.pop()
                t2.pop()
            v2.append(v)
            t2.append(t)
        self._upto = len(times)
        span = now - origin
        out = [0.0, 0.0, 0.0]  # "now" itself: the server saw everything we sent
        for d, (ts, vs, rate) in enumerate(((t0, v0, r0), (t1, v1, r1), (t2, v2, r2))):
            i = bisect.bisect_left(ts, sent_at)
            if i < len(vs):
                h = vs[i] + rate * span - net_now[d]
                if h > 0.0:
                    out[d] = h
        return (out[0], out[1], out[2])
