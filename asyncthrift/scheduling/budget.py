"""The three-dimensional budget of one (key, model class) in this process: `LocalBudget`.

Three `TokenBucket`s (requests, input tokens, output tokens) and what keeps them honest
against the server: the resync from ``anthropic-ratelimit-*`` headers, read only as far as
the evidence goes; the hold after a burst from full; the cold start; the estimate of what
other consumers of the key spend. Pure arithmetic like `bucket.py`: every method takes `now`.

This module is admission (`wait`, `take`, `give`, the cold start's pacing, the output of
abandoned answers held back) and the budget's state; how a response's headers are read is
`resync.HeaderResync`, and the history of what was charged when, which those readings are
read against, `net_history.NetHistory` (both mixins of `LocalBudget`, sharing its slots).
"""

from __future__ import annotations

import math

from .bucket import _EPS, Cost, TokenBucket
from .floor import ReadingFloor
from .foreign import ForeignShare
from .limits import Limits
from .resync import TOKEN_ROUNDING, HeaderResync
from .transit import Transit

__all__ = ["TOKEN_ROUNDING", "LocalBudget"]

#: After a cold start's first request, how long (a fraction of the period, at most
#: `_PROBE_MAX` seconds) the others wait for its answer before one more request goes out.
_PROBE_SHARE = 0.1
_PROBE_MAX = 5.0

#: The longest a bucket withholds refill waiting for the server's first answer after a
#: burst from full, as a fraction of the period (then it credits the refill regardless).
_MAX_HOLD = 0.5

_DIMENSIONS = (
    ("requests", "rpm", "requests per minute"),
    ("input_tokens", "itpm", "input tokens per minute"),
    ("output_tokens", "otpm", "output tokens per minute"),
)


class LocalBudget(HeaderResync):
    """Three buckets (requests, input, output) for one (key, model class), in this process.

    `sent` is the running total of everything ever taken; a request remembers the total at
    its own admission, so when its response's headers arrive the budget knows what was sent
    after it — what the server had not yet seen when it wrote `-remaining`.

    `hold_bursts`: a take from a full bucket withholds refill until the server's first
    answer to that burst (see `TokenBucket.hold`). Turn it off only for a budget no server
    answers, such as a simulation of the scheduler alone.

    `cold_start`: the budget does not know what others spent from the key before it started
    (another process, an earlier run of a resumed job), nor once it has heard nothing from
    the server for a whole period. Then it sends one request and waits for its answer (a
    tenth of the period at most, then one more goes) and takes the level from it before
    letting the rest burst: one round trip, instead of assuming a full bucket and meeting a
    429 for every request of the burst. While that answer is out the others are not all held
    back: when all three limits are known they go as fast as the refill would pay for them
    from an empty bucket (everything charged since the cold start began, the probe included,
    within ``rate x elapsed`` in every dimension). That is safe whatever the level was (the
    server refills at least that much meanwhile), so arrivals below the limit's rate do not
    queue behind the probe's round trip; a burst still waits for its answer. The client
    turns it on; a bare budget (simulations, tests of the arithmetic) starts full and
    trusted.
    """

    __slots__ = (
        "_buckets",
        "_cold_net",
        "_cold_start",
        "_floor",
        "_foreign",
        "_held_abandoned",
        "_hold_bursts",
        "_hold_marks",
        "_net",
        "_probe_wait",
        "_sent",
        "_transit",
        "blocked_until",
        "lifts",
        "limits",
        "name",
    )

    def __init__(
        self,
        limits: Limits,
        now: float,
        name: str = "",
        *,
        hold_bursts: bool = True,
        cold_start: bool = False,
    ) -> None:
        self.limits = limits
        self.name = name
        self._hold_bursts = hold_bursts
        self._cold_start = cold_start
        # token `-remaining` seen at a value no rounding to a thousand gives: read it exactly
        self._exact_tokens = False
        # cold start: heard from the server until then; the admission time of the one
        # request out while cold (None: none); hold the refill of the next take (`observe`)
        self._warm_until = -math.inf
        self._probe_at: float | None = None
        self._probe_wait = min(limits.period * _PROBE_SHARE, _PROBE_MAX)
        # the first take of this cold spell (None: warm) and the net charged before it: what
        # goes out while the probe is out is paced at the refill (`_cold_pace`)
        self._cold_since: float | None = None
        self._cold_net = (0.0, 0.0, 0.0)
        self._hold_next = False
        self._buckets: list[TokenBucket | None] = [
            None if cap is None else TokenBucket(cap, limits.period, now)
            for cap in (limits.rpm, limits.itpm, limits.otpm)
        ]
        self._caps = self._capacities()
        self._sent = [0.0, 0.0, 0.0]
        # output of abandoned answers still held here, to be given back, and the part of it
        # a lift already credited (`hold_abandoned`)
        self._held_abandoned = [0.0, 0.0]
        # the sent total of the take that started each dimension's hold (see take)
        self._hold_marks = [math.inf, math.inf, math.inf]
        # net charged (takes less refunds) so far, and (time, net) after each change: what we
        # charged or got back after a given instant is the difference of two entries
        self._net = [0.0, 0.0, 0.0]
        # the estimate of what someone else spends from the same key (`ForeignShare`)
        self._foreign = ForeignShare(now)
        # recent lower bounds of the server's level, relative to ours (`ReadingFloor`)
        self._floor = ReadingFloor()
        self._history_times: list[float] = []
        self._transit = Transit()  # what may not have reached the server yet
        self._history_net: list[float] = []  # `_net` after each change (3 floats each)
        self._history_sent: list[float] = []  # `_sent` after each change (3 floats each)
        self._history_floor = (0.0, 0.0, 0.0)  # the net before the oldest remembered change
        self.blocked_until = -math.inf
        # lift the level on the readings' lower bounds (`ReadingFloor`); off for a budget
        # several keys declare they share (`KeyConfig(budget=...)`): their readings may be
        # of buckets the server keeps apart, and one key's full bucket would lift the
        # shared level past the budget's limits
        self.lifts = True

    @property
    def buckets(self) -> tuple[TokenBucket | None, ...]:
        return tuple(self._buckets)

    @property
    def lifted_by_readings(self) -> tuple[float, float, float]:
        """Per dimension, what the readings' lower bounds lifted the level by so far
        (`ReadingFloor`): a diagnostic of how closely readings are read."""
        r, i, o = self._floor.lifted
        return (r, i, o)

    @property
    def headers_at(self) -> str | None:
        """Which instant a non-streamed answer's headers describe, as learnt from the
        requests dimension (`HeaderInstant`): "admission", "completion" or None."""
        return self._foreign.instant.at

    def closed(self, mark: Cost, now: float) -> None:
        """The attempt admitted as `mark` ended at `now` (answered, failed, cancelled): from
        then on it is on nobody's wire (`Transit.closed`)."""
        self._transit.closed(mark, now)

    def wants_written(self, mark: Cost) -> bool:
        """Whether the write of the request admitted as `mark` is worth asking the
        transport about (`Transit.in_epoch`: a burst's hold waits for it)."""
        return self._transit.in_epoch(mark)

    def written(self, mark: Cost, now: float) -> None:
        """The transport wrote the request admitted as `mark` at `now` (`Transit.written`):
        not on its way inside this process any more."""
        self._transit.written(mark, now)

    def hold_abandoned(self, output_tokens: float) -> None:
        """`output_tokens` of an abandoned answer stay charged here until a deferred refund
        gives (most of) them back (`Reservation.abandon`, then `release_abandoned`).

        The server may have refunded them already (it stopped the answer, or finished
        it), so a reading may count them: a lift to its lower bound, or a clamp to its
        upper one, and the deferred refund would count them twice. So a reading that moves
        the level is taken to credit these first (as far as they go), once: the deferred
        refunds then give back that much less.
        """
        self._held_abandoned[0] += max(0.0, output_tokens)

    def release_abandoned(self, output_tokens: float) -> float:
        """The deferred refund of `output_tokens` held by `hold_abandoned` is due: how much
        of it the readings' lifts have credited already (not to be given back again)."""
        held = self._held_abandoned
        credited = min(max(0.0, output_tokens), held[1])
        held[1] -= credited
        held[0] = max(0.0, held[0] - (output_tokens - credited))
        return credited

    def too_large(self, cost: Cost) -> str | None:
        """Why `cost` can never be admitted, or None if it can."""
        caps = self._caps
        if cost[0] <= caps[0] and cost[1] <= caps[1] and cost[2] <= caps[2]:
            return None  # the answer for every admission: three comparisons
        for bucket, amount, (_, field, what) in zip(self._buckets, cost, _DIMENSIONS, strict=True):
            if bucket is not None and amount > bucket.capacity:
                return (
                    f"this request needs {amount:,.0f} {what.split(' per ')[0]} but the {field} "
                    f"limit is {bucket.capacity:,.0f} {what}: it can never be admitted. "
                    + (
                        "Lower max_tokens."
                        if field == "otpm"
                        else "Shorten the prompt or split it into several requests."
                        if field == "itpm"
                        else "Raise the limit."
                    )
                )
        return None

    def wait(self, cost: Cost, now: float) -> float:
        """Seconds until all three dimensions can pay `cost` at once (0.0 = now)."""
        wait = self.blocked_until - now if self.blocked_until > now else 0.0
        probe = self._probe_at
        if probe is not None and probe + self._probe_wait > now:
            # a cold start's first is out: the rest go at the refill's pace, or after it
            cold = min(probe + self._probe_wait - now, self._cold_pace(cost, now))
            if cold > wait:
                wait = cold
        for bucket, amount in zip(self._buckets, cost, strict=True):
            if bucket is not None and amount > 0:
                w = bucket.wait(amount, now)
                if w > wait:
                    wait = w
        return wait

    def _cold_pace(self, cost: Cost, now: float) -> float:
        """Seconds until `cost` fits the refill since the cold start began, from an empty
        bucket: what a server whose level was zero then admits (inf: a limit is unknown)."""
        since = self._cold_since
        if since is None:
            return math.inf
        elapsed = now - since
        wait = 0.0
        for bucket, amount, before, net in zip(
            self._buckets, cost, self._cold_net, self._net, strict=True
        ):
            if bucket is None:
                return math.inf  # a limit we do not know: no pace is safe, wait for the answer
            deficit = net - before + amount - bucket.rate * elapsed
            if deficit > _EPS * max(1.0, bucket.capacity):
                w = deficit / bucket.rate
                if w > wait:
                    wait = w
        return wait

    def take(self, cost: Cost, now: float) -> Cost:
        """Charge `cost`; returns the running total sent, including this cost (its mark)."""
        if self._cold_start and now >= self._warm_until:
            if self._cold_since is None:
                self._cold_since = now
                n = self._net
                self._cold_net = (n[0], n[1], n[2])
            probe = self._probe_at
            if probe is None or probe + self._probe_wait <= now:
                self._probe_at = now  # cold: this request is the probe (see `wait`)
        sent = self._sent
        net = self._net
        hold_next = self._hold_next
        self._hold_next = False
        for i, (bucket, amount) in enumerate(zip(self._buckets, cost, strict=True)):
            sent[i] += amount
            net[i] += amount
            if bucket is not None and amount:
                if (
                    self._hold_bursts
                    and not bucket.held
                    and (hold_next or bucket.level(now) >= bucket.capacity)
                ):
                    # a burst from a full bucket: credit no refill until the server answers
                    self._transit.new_epoch(i, now)  # when the burst has left (`departed`)
                    bucket.hold(now, self.limits.period * _MAX_HOLD)
                    self._hold_marks[i] = sent[i]
                bucket.take(amount, now)
        self._remember(now)
        mark = Cost(sent[0], sent[1], sent[2])
        room = None  # what the held buckets leave (`Transit._join_epochs`)
        if any(b is not None and b.held for b in self._buckets):
            room = tuple(
                (b.level(now), b.rate, b.capacity) if b is not None and b.held else None
                for b in self._buckets
            )
        self._transit.sent(mark, cost, now, room)
        return mark

    def give(self, cost: Cost, now: float) -> None:
        """Refund `cost` (components may be negative: a negative refund is a further charge)."""
        if cost[0] > 0:
            self._probe_at = None  # a request that never went out: it answers nothing
        net = self._net
        for i, (bucket, amount) in enumerate(zip(self._buckets, cost, strict=True)):
            net[i] -= amount
            if bucket is None or not amount:
                continue
            if amount > 0:
                bucket.give(amount, now)
            else:
                bucket.take(-amount, now)
        self._remember(now)

    def probing(self, sent_at: float) -> bool:
        """Whether the request admitted at `sent_at` is a cold start's probe: the one whose
        answer's headers everything else waits for (a route may send it so that they come
        sooner: `_routes.ProbeRoute`)."""
        return self._probe_at is not None and self._probe_at == sent_at

    def block_until(self, when: float) -> None:
        """Admit nothing before `when` (a 429's retry-after); never shortens a block."""
        if when > self.blocked_until:
            self.blocked_until = when

    def refilled(self, now: float) -> tuple[float | None, ...]:
        """Per dimension, the refill credited so far (plus the first level; None = unlimited).

        Net charged plus the level: the difference of two readings is the refill the bucket
        credited in between, which can never exceed the limit's rate. The progress line
        shows usage as the lesser of this and what was spent, so it never reads above a
        limit (a burst from a full bucket is capacity spent, not a rate).
        """
        net = self._net
        return tuple(
            None if b is None else net[i] + b.peek(now) for i, b in enumerate(self._buckets)
        )

    def peek(self, now: float) -> tuple[float | None, ...]:
        """Each dimension's level at `now` (None = unlimited), changing nothing."""
        return tuple(None if b is None else b.peek(now) for b in self._buckets)

    def __repr__(self) -> str:
        return f"LocalBudget({self.name!r}, {self.limits})"
