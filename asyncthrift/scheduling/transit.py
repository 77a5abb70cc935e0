"""`Transit`: what this process sent that may not have reached the server yet.

A response's headers describe the server's level at an instant at or after their request
reached it. Requests sent *before* that one need not have arrived by then: concurrent
connections do not keep our order (a burst opening new connections is overtaken by a later
request on a warm one). So a reading's lower bound of the server's level must count as
unseen not only what was sent after its request, but also what was sent before it and still
on its way. Without that, the last request of a burst, read at its admission before the rest
of the burst arrived, lifted the local level by a whole bucket and a hundred 429s followed
(`LocalBudget`'s reading floor, a consumer taking 40 % of the key, headers as of admission).

A request is on its way from its admission here until its answer lands (`landed`) or its
attempt ends without one (`closed`: failed, cancelled, timed out; whatever had not reached
the server by then never will). Within `HORIZON` of its admission every such request counts.
Past it, one that is still out keeps counting, up to `STRAGGLE` seconds (the most
`_LATE_KEPT` of them): a loaded process may hold a burst's tail for seconds before writing
it, while a request admitted later overtakes it on a warm connection and reads the bucket
full (a floor rise of 28,600 output tokens of 32,000 and 49 x 429, at load 9 on 2 cores,
when every request counted for `HORIZON` alone). Counting one as unseen only lowers a lower
bound, so an answer that is slow to come costs some lift, never a 429.

A request the transport has written (`written`: its body handed to the socket,
`pipeline._departure`) is no longer held in this process: it reaches the server within
`WIRE` of any request written after it. So a reading counts as seen every request written
`WIRE` or more before its own request was written (before it was admitted, if the transport
said nothing of it), whether admitted before or after it; the rest counts as above. Without
word from the transport (another transport, an older SDK), nothing changes.

The same word bounds when a burst has reached the server (`new_epoch`, `departed`): once
every request admitted since the hold after a burst began has been written (or has landed),
the last of them was counted by `WIRE` after its write at the latest, and from then on the
server refills as this process's level does, whatever it wasted before at its cap.
"""

from __future__ import annotations

import bisect
import itertools

from .bucket import Cost
from .reading_shortcuts import TransitSums

__all__ = ["HORIZON", "STRAGGLE", "WIRE", "Transit"]

#: Seconds within which every request not yet landed counts as possibly unseen (connection
#: set-up and the client's own queueing, not the answer's generation).
HORIZON = 1.0
#: Seconds a request still out past `HORIZON` keeps counting (then it has reached the
#: server whatever became of it: this bounds what a request never closed counts).
STRAGGLE = 10.0
#: Seconds within which a request written to its socket before another one may still reach the
#: server's count after it: the spread of two requests' way from the socket to the server's
#: admission (network, proxies, the server's own queue). Not a fit to any run: one lost
#: segment resent after Linux's least retransmission timeout (200 ms), plus a one-way trip
#: to a distant edge (under 150 ms), plus a busy server's event loop (under 150 ms). A
#: request later than that counts as seen too early: its cost in a lower bound, for one
#: reading (the next readings see it).
WIRE = 0.5
#: A reading looks at most this many recent requests back; past that, all of them count.
_SCAN = 256
#: Requests past `HORIZON` kept at most (the oldest go first).
_LATE_KEPT = 256


_NEVER = float("inf")


class _Epoch:
    """One dimension's hold after a burst, from `at`: the positions not yet departed, and
    the latest instant one that departed reaches the server."""

    __slots__ = ("at", "out", "reach")

    def __init__(self, at: float) -> None:
        self.at = at
        self.out: set[int] = set()
        self.reach = -_NEVER


_NO_EPOCHS: list[_Epoch | None] = [None, None, None]


class _Late:
    """A request still out past `HORIZON`: when it was admitted, its cost, when it landed
    and when the transport wrote it (`_NEVER`: not yet, or it does not say)."""

    __slots__ = ("at", "cost", "landed", "written")

    def __init__(self, at: float, cost: Cost, written: float) -> None:
        self.at = at
        self.cost = cost
        self.landed = _NEVER
        self.written = written


class Transit:
    """Requests sent within `HORIZON`, when each was written and when it landed, in admission
    order; and those past it that were still out when they left that window (`_late`)."""

    __slots__ = (
        "_base",
        "_costs",
        "_epochs",
        "_index",
        "_landed",
        "_late",
        "_sums",
        "_times",
        "_written",
        "departure_proofs",
    )

    def __init__(self) -> None:
        self._times: list[float] = []
        self._costs: list[Cost] = []
        self._landed: list[float] = []
        self._written: list[float] = []
        self._index: dict[Cost, int] = {}  # a request's mark -> its absolute position
        self._base = 0  # the absolute position of `_times[0]`
        self._late: dict[int, _Late] = {}  # absolute position -> request, admission order
        self._sums = TransitSums()  # shortcuts that change nothing (`reading_shortcuts`)
        # per dimension, the hold after a burst there (`new_epoch`; None: none)
        self._epochs: list[_Epoch | None] = [None, None, None]
        # a diagnostic: per output hold ended (`refill_since_departed`), when, and the seconds
        # of refill the burst's departure proved (None: some of it was not written yet)
        self.departure_proofs: list[tuple[float, float | None]] = []

    def sent(
        self,
        mark: Cost,
        cost: Cost,
        now: float,
        room: tuple[tuple[float, float, float] | None, ...] | None = None,
    ) -> None:
        """The request of `mark` (its running total sent) was admitted at `now`. `room`: per
        dimension held after a burst, (level, refill rate, capacity) after this take (see
        `_join_epochs`; None: it joins every epoch)."""
        times = self._times
        if times and times[0] < now - HORIZON and len(times) > 64:
            self._prune(now - HORIZON, now)
        self._sums.sent(cost, self._landed, self._base, now)
        position = self._base + len(times)
        self._index[mark] = position
        times.append(now)
        self._costs.append(cost)
        self._landed.append(_NEVER)
        self._written.append(_NEVER)
        if self._epochs != _NO_EPOCHS:
            self._join_epochs(position, now, room)

    def _join_epochs(
        self, position: int, now: float, room: tuple[tuple[float, float, float] | None, ...] | None
    ) -> None:
        """Add the request at `position` to the epochs it matters to. The server wastes
        refill only at its cap, and it can sit there while requests are on their way only if
        our level, what has not reached it yet and the refill the hold may credit (plus
        `STRAGGLE`'s, the longest a request is taken to be on its way) reach the capacity. A
        request taken below that (after a burst, with the level near empty) cannot make the
        level run ahead of the server: it stays out of the epoch, and the burst's proof does
        not wait for it."""
        unarrived: tuple[float, float, float] | None = None
        for i, epoch in enumerate(self._epochs):
            if epoch is None:
                continue
            if now - epoch.at > STRAGGLE:
                self._epochs[i] = None  # a hold that long ends on its own (`TokenBucket.hold`)
                continue
            held = None if room is None else room[i]
            if held is not None:
                level, rate, capacity = held
                credit = rate * (now - epoch.at + STRAGGLE)
                # what is unarrived is never below 0: scan for it only when it can decide
                if level + credit < capacity:
                    if unarrived is None:
                        unarrived = self._unarrived(now)
                    if level + unarrived[i] + credit < capacity:
                        continue
            epoch.out.add(position)

    def _unarrived(self, now: float) -> tuple[float, float, float]:
        """What may not have reached the server by `now`: sent within `STRAGGLE`, not landed,
        and not written `WIRE` before `now` (past `_SCAN` requests back, all of it)."""
        times, costs, landed, written = self._times, self._costs, self._landed, self._written
        start = bisect.bisect_left(times, now - STRAGGLE)
        scan_from = max(start, len(times) - _SCAN)
        r = i = o = 0.0
        for k in range(start, len(times)):
            if k < scan_from or (landed[k] == _NEVER and written[k] + WIRE > now):
                c = costs[k]
                r += c[0]
                i += c[1]
                o += c[2]
        for late in self._late.values():
            if late.at >= now - STRAGGLE and late.landed == _NEVER and late.written + WIRE > now:
                c = late.cost
                r += c[0]
                i += c[1]
                o += c[2]
        return r, i, o

    def written(self, mark: Cost, now: float) -> None:
        """The transport wrote the request of `mark` (its body handed to the socket) at
        `now`: from then on it is not held in this process. Only the first call counts."""
        k = self._index.get(mark)
        if k is None:
            return
        if k >= self._base:
            written = self._written
            if written[k - self._base] == _NEVER:
                written[k - self._base] = now
        else:
            late = self._late.get(k)
            if late is not None and late.written == _NEVER:
                late.written = now
        self._departed(k, now + WIRE)

    def new_epoch(self, i: int, now: float) -> None:
        """Dimension `i`'s hold after a burst begins at `now`, with the request about to be
        `sent`: `departed` will say when what it sends from then on (`_join_epochs`) has
        reached the server."""
        self._epochs[i] = _Epoch(now)

    def departed(self, i: int) -> float | None:
        """The latest instant at which everything of dimension `i`'s epoch has reached the
        server (`WIRE` after its write, or when it landed); None while some of it may still
        be in this process (or the transport says nothing, or there is no epoch)."""
        epoch = self._epochs[i]
        if epoch is None or epoch.out or epoch.reach == -_NEVER:
            return None
        return epoch.reach

    def in_epoch(self, mark: Cost) -> bool:
        """Whether the request of `mark` is one a burst's proof waits for (`departed`): the
        only ones whose write is worth asking the transport about."""
        k = self._index.get(mark)
        return k is not None and any(e is not None and k in e.out for e in self._epochs)

    def refill_since_departed(self, i: int, rate: float, now: float) -> float:
        """What a server refilling dimension `i` at `rate` has certainly credited since its
        epoch reached it (`departed`), by `now`: 0.0 if that is not known."""
        reach = self.departed(i)
        proofs = self.departure_proofs
        if i == 2 and len(proofs) < 16:
            proofs.append((now, None if reach is None else max(0.0, now - reach)))
        return 0.0 if reach is None else rate * max(0.0, now - reach)

    def _departed(self, k: int, reach: float) -> None:
        """The request at absolute position `k` reaches the server by `reach` at the latest
        (the first word of it counts)."""
        for epoch in self._epochs:
            if epoch is not None and k in epoch.out:
                epoch.out.discard(k)
                if reach > epoch.reach:
                    epoch.reach = reach

    def landed(self, mark: Cost, now: float) -> None:
        """The answer (or refusal) of the request of `mark` arrived at `now`; or its attempt
        ended without one (`closed`). Only the first call counts."""
        k = self._index.pop(mark, None)
        if k is None:
            return
        self._departed(k, now)  # if never written: it reached the server by its answer
        if k >= self._base:
            self._landed[k - self._base] = now
        else:
            late = self._late.get(k)
            if late is not None:
                late.landed = now

    #: An attempt that ended without an answer: from then on it is on nobody's wire.
    closed = landed

    def before(self, mark: Cost, sent_at: float) -> tuple[float, float, float]:
        """What the reading of the request of `mark` (admitted at `sent_at`) may not have
        seen beyond everything sent after it: what was sent before it (or at its instant,
        ahead of it) and had not landed by then, within `STRAGGLE` (past `HORIZON`, what
        was still out), less what was sent after it but written `WIRE` before it (a negative
        term: the caller adds everything sent after it). A request written `WIRE` before
        this one was written (admitted, if that is not known) counts as seen either way."""
        times = self._times
        own = self._index.get(mark)
        cutoff = self._cutoff(own, sent_at)
        end = bisect.bisect_right(times, sent_at) if own is None else own - self._base
        end = max(0, end)
        start = bisect.bisect_left(times, sent_at - HORIZON, 0, end)
        oldest = bisect.bisect_left(times, sent_at - STRAGGLE, 0, start)
        costs, landed, written = self._costs, self._landed, self._written
        r = i = o = 0.0
        scan_from = max(start, end - _SCAN)
        whole = self._sums.between(start, scan_from)
        if whole is not None:
            r, i, o = whole
        for k in range(start, scan_from) if whole is None else ():  # too many: all count
            c = costs[k]
            r += c[0]
            i += c[1]
            o += c[2]
        # before the horizon, and the most recent: what had not landed by `sent_at`, nor
        # been written `WIRE` before this request
        w = self._sums.landed_before(own, self._base, times, sent_at)  # none landed past w
        for k in itertools.chain(range(max(oldest, w), start), range(max(scan_from, w), end)):
            if landed[k] > sent_at and written[k] > cutoff:
                c = costs[k]
                r += c[0]
                i += c[1]
                o += c[2]
        for late in self._late.values():
            if (
                late.landed > sent_at
                and late.written > cutoff
                and sent_at - STRAGGLE <= late.at < sent_at - HORIZON
            ):
                c = late.cost
                r += c[0]
                i += c[1]
                o += c[2]
        # sent after it, but written `WIRE` before it: seen (admitted by then, so the
        # scan stops at the first admitted later)
        if own is not None and own >= self._base:
            for k in range(own - self._base + 1, len(times)):
                if times[k] > cutoff:
                    break
                if written[k] <= cutoff:
                    c = costs[k]
                    r -= c[0]
                    i -= c[1]
                    o -= c[2]
        return r, i, o

    def _cutoff(self, own: int | None, sent_at: float) -> float:
        """The latest instant a request written by then has reached the server before the
        request at absolute position `own` did: `WIRE` before it was written (admitted,
        when the transport has not said)."""
        written = _NEVER
        if own is not None:
            if own >= self._base:
                written = self._written[own - self._base]
            else:
                late = self._late.get(own)
                if late is not None:
                    written = late.written
        return (sent_at if written == _NEVER else max(sent_at, written)) - WIRE

    def _prune(self, before: float, now: float) -> None:
        cut = bisect.bisect_left(self._times, before)
        if not cut:
            return
        late, landed, written = self._late, self._landed, self._written
        for k in range(cut):
            if landed[k] == _NEVER:  # still out: it may be held in this process
                late[self._base + k] = _Late(self._times[k], self._costs[k], written[k])
        self._forget_late(now)
        del self._times[:cut]
        del self._costs[:cut]
        del landed[:cut]
        self._sums.pruned(cut)
        del written[:cut]
        self._base += cut
        if len(self._index) > 4 * (len(self._times) + len(late)) + 64:  # never landed
            base, kept = self._base, late.keys()
            self._index = {m: k for m, k in self._index.items() if k >= base or k in kept}

    def _forget_late(self, now: float) -> None:
        """Drop what was admitted over `STRAGGLE` ago, and the oldest past `_LATE_KEPT`."""
        late = self._late
        for k in list(late):
            if late[k].at >= now - STRAGGLE and len(late) <= _LATE_KEPT:
                break
            del late[k]
