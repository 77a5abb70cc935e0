"""`Transit`: what this process sent that may not have reached the server yet.

A response's headers describe the server's level at an instant at or after their request
reached it. Requests sent *before* that one need not have arrived by then: concurrent
connections do not keep our order (a burst opening new connections is overtaken by a later
request on a warm one). So a reading's lower bound of the server's level must count as
unseen not only what was sent after its request, but also what was sent before it and still
on its way. Without that, the last request of a burst, read at its admission before the rest
of the burst arrived, lifted the local level by a whole bucket and a hundred 429s followed
(`LocalBudget`'s reading floor, a consumer taking 40 % of the key, headers as of admission).

A request is on its way from its admission here until its answer lands (`landed`), for at
most `HORIZON` seconds: what was sent earlier than that has reached the server whatever
became of it (an abandoned request never lands here; the horizon bounds what it counts).
"""

from __future__ import annotations

import bisect

from .bucket import Cost

__all__ = ["HORIZON", "Transit"]

#: Seconds a request may take to reach the server after its admission here (connection set-up
#: and the client's own queueing, not the answer's generation).
HORIZON = 1.0
#: A reading looks at most this many requests back; past that, all of them count as unseen.
_SCAN = 256


class Transit:
    """Requests sent within `HORIZON` and when each landed, in admission order."""

    __slots__ = ("_base", "_costs", "_index", "_landed", "_times")

    def __init__(self) -> None:
        self._times: list[float] = []
        self._costs: list[Cost] = []
        self._landed: list[float] = []
        self._index: dict[Cost, int] = {}  # a request's mark -> its absolute position
        self._base = 0  # the absolute position of `_times[0]`

    def sent(self, mark: Cost, cost: Cost, now: float) -> None:
        """The request of `mark` (its running total sent) was admitted at `now`."""
        times = self._times
        if times and times[0] < now - HORIZON and len(times) > 64:
            self._prune(now - HORIZON)
        self._index[mark] = self._base + len(times)
        times.append(now)
        self._costs.append(cost)
        self._landed.append(float("inf"))

    def landed(self, mark: Cost, now: float) -> None:
        """The answer (or refusal) of the request of `mark` arrived at `now`."""
        k = self._index.pop(mark, None)
        if k is not None and k >= self._base:
            self._landed[k - self._base] = now

    def before(self, mark: Cost, sent_at: float) -> tuple[float, float, float]:
        """What was sent within `HORIZON` before the request of `mark` (admitted at
        `sent_at`), or at its instant ahead of it, and had not landed by then: possibly
        unseen by that request's reading."""
        times = self._times
        own = self._index.get(mark)
        end = bisect.bisect_right(times, sent_at) if own is None else own - self._base
        start = bisect.bisect_left(times, sent_at - HORIZON, 0, max(0, end))
        costs, landed = self._costs, self._landed
        r = i = o = 0.0
        scan_from = max(start, end - _SCAN)
        for k in range(start, scan_from):  # too many to look at: all count
            c = costs[k]
            r += c[0]
            i += c[1]
            o += c[2]
        for k in range(scan_from, end):
            if landed[k] > sent_at:
                c = costs[k]
                r += c[0]
                i += c[1]
                o += c[2]
        return r, i, o

    def _prune(self, before: float) -> None:
        cut = bisect.bisect_left(self._times, before)
        if cut:
            del self._times[:cut]
            del self._costs[:cut]
            del self._landed[:cut]
            self._base += cut
            if len(self._index) > 4 * len(self._times) + 64:  # marks that never landed
                base = self._base
                self._index = {m: k for m, k in self._index.items() if k >= base}
