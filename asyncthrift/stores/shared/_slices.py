"""What a `SharedBudget` asks Redis for: the size of a slice, per dimension.

Kept apart from the round trip (`_roundtrip`) because sizing is policy, not wire: how much
of the shared level this process should hold (its fair share of a burst, of the refill its
queue needs, of its recent rate, never more than `MAX_SHARE` of a capacity) is the part
that changes when the scale-out figures do, and it reads only the books. `SliceSizing` is a
base of `SharedBudget`: these are its own methods.
"""

from __future__ import annotations

from ...scheduling.bucket import Cost
from ._fallback import FallbackBooks
from ._tuning import (
    _BURST,
    _COLD_POLL,
    _COLD_POLL_MAX,
    _INF,
    _LOW,
    _REFUNDS_SHARE,
    _REFUNDS_WAIT,
    _WINDOW_MAX,
    MAX_SHARE,
    horizon_seconds,
    slice_seconds,
)

__all__ = ["SliceSizing"]


class SliceSizing(FallbackBooks):
    """What to ask (`_asks`), whether to wait for this process's own refunds instead
    (`_over_burst_share`), and how large a slice is (`_slice_sizes`, `_slice`)."""

    __slots__ = (
        "_big",
        "_cold_polls",
        "_level",
        "_low",
        "_not_before",
        "_now_only",
        "_now_only_at",
        "_others_at",
        "_overdrawn",
        "_target",
    )

    _low: list[float]  # below this, ask again
    _cold_polls: int  # refusals of a cold bucket in a row (each waits longer)
    _target: list[float]  # the lease the last slice aimed at
    _big: list[float]  # the largest single cost admitted so far
    _level: list[float]  # the shared level the last call reported
    _overdrawn: bool  # the shared level was below zero at the last call
    _now_only: bool  # the next call asks the head's need only if the level pays it now
    _now_only_at: float  # no such call before this instant
    _others_at: float  # when the others' backlog (`_others_waiting`) was heard
    _not_before: float  # no call before this instant (loop time)

    def _asks(
        self, now: float, head: Cost | None, recent: bool
    ) -> tuple[list[float], list[float], bool]:
        """(need, ask, asking): what the head lacks, what to ask per dimension, and whether
        to ask at all (the lease is short of the head or below `_low`)."""
        need = [0.0, 0.0, 0.0]
        ask = [0.0, 0.0, 0.0]
        if self._now_only:
            # the head's shortfall from what is paid for already, nothing more (`_may_swap`)
            for i in self._dims:
                if head is not None:
                    need[i] = ask[i] = max(0.0, head[i] - self._lease[i])
            self._now_only = any(need)
            return need, ask, self._now_only
        if head is None and not recent:
            return need, ask, False
        lease, pending = self._lease, self._pending
        short = False
        for i in self._dims:
            held = lease[i] + pending[i]
            if head is not None and head[i] > held:
                need[i] = head[i] - held
                short = True
            if held < self._low[i]:
                short = True
        if not short:
            return need, ask, False
        self._decay_took(now)
        if self._over_burst_share(need, now):
            return need, ask, False
        self._estimate(now)
        self._slice(head, need, ask)
        return need, ask, True

    def _lend(
        self, head: Cost | None, need: list[float], ask: list[float], give: list[float]
    ) -> None:
        """While the shared level is overdrawn, a head that the lease and its grants on their
        way do not cover asks for all of itself, and what the lease holds in hand of each
        dimension it is short of goes back with the call (a give in hand below zero pays the
        grants reserved ahead sooner: `lease.lua`'s notices). Its grant is reserved behind
        the others' either way (the level sits at the reserve-ahead floor), and what it had
        gathered waited idle beside it: one head gathering per process, where one bucket
        has one head (about one max_tokens of output held idle per process).

        Not where this process's share of the request rate is too low to make
        `_MIN_REQUESTS` within `_WINDOW_MAX` (its slices stretched to keep about one call
        per 8 requests): there its refunds fund its next heads between calls, and lending
        them at every call sent each head through Redis (4 processes at 120 s beyond the
        burst: 0.23 calls per request against 0.17)."""
        if not self._overdrawn or head is None or self._now_only:
            return
        if slice_seconds(self.limits.period, self._per_process_rpm()) > _WINDOW_MAX:
            return
        lease = self._lease
        for i in self._dims:
            lent = lease[i] - give[i]
            if need[i] > 0 and lent > 0:
                give[i] += lent
                need[i] += lent
                ask[i] += lent

    def _over_burst_share(self, need: list[float], now: float) -> bool:
        """Whether to wait for this process's own refunds instead of asking: it is short
        only of output tokens, has requests in flight (their unused max_tokens come back to
        the lease within a second), and took its fair share of the output capacity lately,
        or the shared level is overdrawn (for at most `_REFUNDS_WAIT` since its last
        admission). The process that proved a cold bucket learnt the level 50 ms before the
        others and, each head asking its need, took 29,300 of 43,200 output tokens in 60 ms.
        While the level is overdrawn an ask waits behind the grants reserved ahead anyway
        (4 s at a 60 s period), and one sized before the refunds land reserved what they
        then covered: it came back as lease held idle while the head waited for its grant
        (500-650 output tokens per process at 4 processes) and cost a call."""
        gate = self._gate
        if gate is None or gate.held <= 0 or self._cap[2] <= 0:
            return False
        if any(need[i] > 0 for i in self._dims if i != 2) or need[2] <= 0:
            return False
        if self._overdrawn:  # (a long answer in flight does not hold the head up for long)
            window = horizon_seconds(self.limits.period, self._per_process_rpm())
            if now - self._last_take < min(_REFUNDS_WAIT, window * _REFUNDS_SHARE):
                return True
        return self._took[2] >= self._cap[2] * self._work_share()

    def _others_done_at(self) -> float:
        """When the other processes will have worked off the backlog they had at this
        process's last call (loop time, inf: not known), at their share of the request rate.

        From then on a head here that waits for a grant reserved ahead asks, every
        `_NOW_ONLY` s, whether the shared level pays it now (`_now_only`). At the end of a
        run the others finish and give back what they held (grants reserved ahead of this
        process's included), but a grant's instant is fixed when it is made: the last
        process waited 2-4 s for its last grants while the level held thousands of tokens,
        and never called to learn it (its head was paid for, later)."""
        gate = self._gate
        others = self._others_waiting
        if gate is None or others < 0 or self._rate[0] <= 0 or self.active <= 1:
            return _INF  # (alone lately: the grants reserved ahead are this process's own)
        mine = gate.waiting
        rate = self._rate[0] * (others / (others + mine) if others + mine > 0 else 1.0)
        return self._others_at + (others / rate if others > 0 else 0.0)

    def _slice_sizes(self, head: Cost | None) -> tuple[list[float], list[float], float]:
        """(chunk, burst, scale): per dimension, the slice from the refill the lease aims
        at, more while the bucket holds a burst (asked, not kept), and the one scale that
        keeps every ask within `MAX_SHARE` of its capacity (the dimensions keep their
        proportions)."""
        chunk = [0.0, 0.0, 0.0]
        burst = [0.0, 0.0, 0.0]
        scale = 1.0
        gate = self._gate
        waiting = gate.waiting if gate is not None else 0
        sent = self._sent
        share = self._work_share()
        period = self.limits.period
        window = slice_seconds(period, self._per_process_rpm())
        for i in self._dims:
            # with requests queued here: this process's fair share of a slice's window of
            # the shared refill (one over the processes asking lately), but no more than the
            # queue needs at its mean cost so far (a burst's last slices do not strand
            # budget others wait for); otherwise its recent rate over the window, at most
            # twice its share. While the bucket holds more (a burst), the ask is a fair
            # share of `_BURST` of the level the last call saw, so a burst is drawn in a few
            # calls; what the lease then holds beyond its target still goes back (refunds
            # are not hoarded)
            fair = self._cap[i] / period * window * share
            # ... and no more of a burst, over a window, than this process's fair share of
            # the capacity: a process whose heads kept asking took 29,300 of 43,200 output
            # tokens in 80 ms (its own burst), then gave back 11,000 that the others, holding
            # grants reserved seconds ahead, saw only at their next call
            burst_room = self._cap[i] * share - self._took[i]
            fair_burst = max(fair, min(self._level[i] * _BURST * share, burst_room))
            if waiting and sent[0] > 0:
                queue = waiting * sent[i] / sent[0]
                c = max(0.0, min(fair, queue))
                cb = max(0.0, min(fair_burst, queue))
            else:
                c = cb = min(self._est[i] * window, 2.0 * fair)
            if head is not None:
                c, cb = max(c, head[i]), max(cb, head[i])
            chunk[i], burst[i] = c, cb
            if cb > self._cap[i] * MAX_SHARE:
                scale = min(scale, self._cap[i] * MAX_SHARE / cb)
        return chunk, burst, scale

    def _slice(self, head: Cost | None, need: list[float], ask: list[float]) -> None:
        """Fill `ask` with a slice (`_slice_sizes`) less what the lease holds, and set each
        dimension's target."""
        chunk, burst, scale = self._slice_sizes(head)
        lease, pending = self._lease, self._pending
        for i in self._dims:
            # a dimension asks only what it lacks (the head plus a slice); one that holds
            # enough asks nothing, so a dimension the others overdrew (reserved ahead) does
            # not hold up the grant of the one short. It then holds about `_LOW` + 1 targets
            # and asks again once below `_LOW` of one. A target is at least the largest
            # request seen: a lease that cannot pay for one sends each such request to Redis
            # (max_tokens of 1024 against a slice of 700 output tokens did)
            target = max(min(chunk[i], burst[i] * scale), self._big[i])
            if head is not None:
                target = max(target, head[i])
            want = max(target * (1.0 + _LOW), burst[i] * scale)
            ask[i] = max(need[i], want - (lease[i] + pending[i]), 0.0)
            self._target[i] = target

    def _pay_rate(self, i: int) -> float:
        """The rate the shared level refills dimension `i` at (`_foreign` lowers it)."""
        return self._rate[i]

    def _cold_poll(self) -> float:
        """How long to wait before asking a cold bucket again: `_COLD_POLL`, doubling with
        each refusal in a row up to `_COLD_POLL_MAX`. The probe's answer takes a round trip
        to the API (0.3-0.6 s with real latency): polls every 50 ms were 6-9 refused calls
        per process, a fifth of its commands at 4 processes and more at 8."""
        wait = min(_COLD_POLL * 2.0**self._cold_polls, _COLD_POLL_MAX)
        self._cold_polls += 1
        return wait
