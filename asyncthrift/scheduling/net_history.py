"""What a budget charged, and when: the history its header readings are read against.

A response's rate-limit headers describe the server's level at an unknown instant of the
request's flight; what they say about the level now depends on what this process charged
(or got back) after that instant. `NetHistory` keeps the running totals (`_sent`: every take;
`_net`: takes less refunds) after each change, and answers those questions: what was sent
by a time, what one request took, what was charged after an instant, and the highest a
reading's ``refill since T - net charged after T`` can be. A mixin of `LocalBudget`, apart
so that the arithmetic of time is not mixed with admission's; `SharedBudget` inherits it.
"""

from __future__ import annotations

import bisect
import math

from .bucket import Cost, TokenBucket

__all__ = ["NetHistory"]

#: Takes remembered to answer "what did we send after time t" (trimmed in halves).
_HISTORY = 4096
#: Floats per change in `_history_net` and `_history_sent`: one per dimension, flat. A tuple
#: per change was an allocation the garbage collector tracks, two per take and two per
#: refund: they set the collector off 6 times as often (13 against 2 young collections per
#: 2 000 admissions in ``bench/bench_scheduler.py``'s one-gate case), about 30 % of the
#: instructions per admission there. A float is not tracked.
_STRIDE = 3


class NetHistory:
    """The totals charged after each change, for `LocalBudget` (which sets them up in its
    ``__init__`` and keeps the totals, `_net` and `_sent`) and what its readings ask of
    them."""

    __slots__ = ("_history_floor", "_history_net", "_history_sent", "_history_times")

    _buckets: list[TokenBucket | None]
    _history_floor: tuple[float, float, float]  # the net before the oldest remembered
    _history_net: list[float]  # `_net` after each change, `_STRIDE` floats per change
    _history_sent: list[float]  # `_sent` after each change, likewise
    _history_times: list[float]
    _net: list[float]
    _sent: list[float]

    def _remember(self, now: float) -> None:
        times = self._history_times
        if len(times) >= 2 * _HISTORY:
            self._history_floor = self._net_at(_HISTORY - 1)
            del times[:_HISTORY]
            del self._history_net[: _HISTORY * _STRIDE]
            del self._history_sent[: _HISTORY * _STRIDE]
        times.append(now)
        self._history_net.extend(self._net)
        self._history_sent.extend(self._sent)

    def _net_at(self, k: int) -> tuple[float, float, float]:
        """The net charged after the `k`-th remembered change."""
        nets = self._history_net
        b = k * _STRIDE
        return (nets[b], nets[b + 1], nets[b + 2])

    def _sent_at(self, k: int) -> tuple[float, float, float]:
        """The running total sent after the `k`-th remembered change."""
        sents = self._history_sent
        b = k * _STRIDE
        return (sents[b], sents[b + 1], sents[b + 2])

    def _forget(self, uncharged: Cost, sent_at: float, sent_mark: Cost) -> None:
        """Take `uncharged` (about to be given back) out of the net history from its request's
        admission on, so that no later reading counts its refund as a change the server saw.

        Why: a reading is read against what we charged after its instant, refunds counting
        as charges the other way. The server never charged a refused request; were its
        refund left in the history, every reading of a request sent before that refund would
        credit the server with it. In a run of 429s each refusal then raised the next
        reading's ceiling by one reservation and the level did not come down to the server's
        (measured with the streamed probe of branch ``probe``: a consumer taking 40 % of the
        key, headers as of admission, 174 429s per 400 requests, 79 with this).
        """
        times, nets, sents = self._history_times, self._history_net, self._history_sent
        k = bisect.bisect_left(times, sent_at)
        while k < len(times) and sents[k * _STRIDE] < sent_mark[0]:
            k += 1  # the entry of this request's own take (others may share its instant)
        u0, u1, u2 = uncharged
        for b in range(k * _STRIDE, len(nets), _STRIDE):
            nets[b] -= u0
            nets[b + 1] -= u1
            nets[b + 2] -= u2

    def _sent_until(self, t: float) -> tuple[float, float, float]:
        """The running total sent by time `t` (the oldest remembered if `t` is older)."""
        k = bisect.bisect_right(self._history_times, t)
        return self._sent_at(k - 1) if k else (0.0, 0.0, 0.0)

    def _own_take(self, sent_at: float, sent_mark: Cost) -> tuple[float, float, float]:
        """At most what this request took: everything taken at its admission's instant."""
        times = self._history_times
        k = bisect.bisect_left(times, sent_at)
        # (trimmed from the history: everything sent so far counts as its own)
        before = self._sent_at(k - 1) if k else (0.0, 0.0, 0.0)
        return (
            sent_mark[0] - before[0],
            sent_mark[1] - before[1],
            sent_mark[2] - before[2],
        )

    def _highest_readings(self, sent_at: float, now: float) -> tuple[float, float, float]:
        """Per dimension, the most ``refill since T - net charged after T`` can be.

        ``T`` is the unknown instant the server wrote its headers, in ``[sent_at, now]``.
        Between two of our own changes the expression falls as ``T`` grows, so only the
        instants of our changes (the first is this request's own take) and `now` are
        candidates: one pass over what changed while this request was out.
        """
        net_now = self._net
        b0, b1, b2 = self._buckets
        r0 = 0.0 if b0 is None else b0.rate
        r1 = 0.0 if b1 is None else b1.rate
        r2 = 0.0 if b2 is None else b2.rate
        n0, n1, n2 = net_now
        # "now" itself: the server saw everything we sent (its refill since then is nil)
        h0 = h1 = h2 = 0.0
        times = self._history_times
        nets = self._history_net
        # our own take is at `sent_at` (unless trimmed from the history: then from its start)
        for k in range(bisect.bisect_left(times, sent_at), len(times)):
            span = now - times[k]
            b = k * _STRIDE
            v = nets[b] - n0 + r0 * span
            if v > h0:
                h0 = v
            v = nets[b + 1] - n1 + r1 * span
            if v > h1:
                h1 = v
            v = nets[b + 2] - n2 + r2 * span
            if v > h2:
                h2 = v
        return (h0, h1, h2)

    def _highest_before(self, i: int, sent_at: float, cutoff: float, now: float) -> float:
        """`_highest_readings` of dimension `i` over the instants before `cutoff` only
        (-inf if none: the request's own take came at or after it)."""
        times = self._history_times
        nets = self._history_net
        bucket = self._buckets[i]
        rate = 0.0 if bucket is None else bucket.rate
        net_now = self._net[i]
        best = -math.inf
        for j in range(bisect.bisect_left(times, sent_at), bisect.bisect_left(times, cutoff)):
            v = nets[j * _STRIDE + i] - net_now + rate * (now - times[j])
            if v > best:
                best = v
        return best

    def _net_before_own(self, sent_at: float, sent_mark: Cost) -> tuple[float, float, float]:
        """The net charged total just before the take of the request admitted at `sent_at` as
        `sent_mark`: changes at its instant made before it (a refund that let it in) are not
        in its flight. A loop whose clock reads the same through an iteration (uvloop's, to
        the millisecond) stamps them all alike: counted in, they read a lone client's flight
        hundreds of output tokens short, its readings passed `ForeignShare`'s flight filter
        and a fit took 90 % of the output refill for another consumer for seconds."""
        times, sents = self._history_times, self._history_sent
        k = bisect.bisect_left(times, sent_at)
        while k < len(times) and times[k] <= sent_at and sents[k * _STRIDE] < sent_mark[0]:
            k += 1  # the entry of this request's own take (others may share its instant)
        return self._net_at(k - 1) if k else self._history_floor

    def _net_until(self, t: float, *, strict: bool = False) -> tuple[float, float, float]:
        """The net charged total at time `t` (the oldest remembered if `t` is older).

        `strict` leaves out changes made at exactly `t` (they count as after it).
        """
        times = self._history_times
        i = bisect.bisect_left(times, t) if strict else bisect.bisect_right(times, t)
        return self._net_at(i - 1) if i else self._history_floor
