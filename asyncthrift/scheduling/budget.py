"""The three-dimensional budget of one (key, model class) in this process: `LocalBudget`.

Three `TokenBucket`s (requests, input tokens, output tokens) and what keeps them honest
against the server: the resync from ``anthropic-ratelimit-*`` headers, read only as far as
the evidence goes; the hold after a burst from full; the cold start; the estimate of what
other consumers of the key spend. Pure arithmetic like `bucket.py`: every method takes `now`.
"""

from __future__ import annotations

import bisect
import math

from .bucket import _EPS, ZERO, Cost, ServerView, TokenBucket
from .floor import ReadingFloor
from .foreign import ForeignShare
from .limits import Limits
from .transit import HORIZON, Transit

__all__ = ["TOKEN_ROUNDING", "LocalBudget"]

#: Token `-remaining` headers are rounded to a thousand, in a direction the API does not
#: document (down or to nearest): a reading is read as this much below what it says (until
#: a count that is not a multiple of a thousand shows the server reports exactly). Safe
#: under either: rounded to nearest, the truth may be 500 lower, which at a binding limit
#: is a 429 at the margin (measured: 12 per 400 requests with another consumer of the
#: key); rounded down, we hold back at most 1,500 tokens the server has. That is a
#: constant offset, not lost throughput: the refill rate is unchanged.
TOKEN_ROUNDING = 500.0

#: After a cold start's first request, how long (a fraction of the period, at most
#: `_PROBE_MAX` seconds) the others wait for its answer before one more request goes out.
_PROBE_SHARE = 0.1
_PROBE_MAX = 5.0

#: The longest a bucket withholds refill waiting for the server's first answer after a
#: burst from full, as a fraction of the period (then it credits the refill regardless).
_MAX_HOLD = 0.5

#: Another consumer's estimated share of a limit below which we count as alone on the key
#: (the estimate's noise), and may lift our level on the readings' lower bounds.
_ALONE = 0.05
#: A reading teaches `ForeignShare` nothing if more than this share of the capacity was
#: charged while its request was out (a burst): its instant is too uncertain.
_FLIGHT_MAX = 0.05
#: How far below the server's count of a request's input our estimate may be (the
#: calibrator's largest margin, `tokens.Calibrator.margin`).
_SHORT = 0.25

#: `ServerView[:6]` (limits and remainings) of a response without rate-limit headers.
_NO_COUNTS = (None, None, None, None, None, None)

#: Takes remembered to answer "what did we send after time t" (trimmed in halves).
_HISTORY = 4096


_DIMENSIONS = (
    ("requests", "rpm", "requests per minute"),
    ("input_tokens", "itpm", "input tokens per minute"),
    ("output_tokens", "otpm", "output tokens per minute"),
)


class LocalBudget:
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
        "_caps",
        "_cold_net",
        "_cold_since",
        "_cold_start",
        "_exact_tokens",
        "_floor",
        "_foreign",
        "_held_abandoned",
        "_history_floor",
        "_history_net",
        "_history_sent",
        "_history_times",
        "_hold_bursts",
        "_hold_marks",
        "_hold_next",
        "_net",
        "_probe_at",
        "_probe_wait",
        "_sent",
        "_transit",
        "_warm_until",
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
        self._history_net: list[tuple[float, float, float]] = []
        self._history_sent: list[tuple[float, float, float]] = []  # `_sent` after each change
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

    def _credit_abandoned(self, amount: float) -> None:
        """A reading set the output level (lifted or lowered it by `amount`) to a level
        that may count the server's refund of abandoned output held here: that much of it,
        as far as it goes, is taken as given back already (`release_abandoned`), once."""
        held = self._held_abandoned
        credit = min(amount, held[0])
        held[0] -= credit
        held[1] += credit

    def release_abandoned(self, output_tokens: float) -> float:
        """The deferred refund of `output_tokens` held by `hold_abandoned` is due: how much
        of it the readings' lifts have credited already (not to be given back again)."""
        held = self._held_abandoned
        credited = min(max(0.0, output_tokens), held[1])
        held[1] -= credited
        held[0] = max(0.0, held[0] - (output_tokens - credited))
        return credited

    def _capacities(self) -> tuple[float, float, float]:
        """Each dimension's capacity (inf = unlimited); refreshed whenever a bucket changes."""
        r, i, o = (math.inf if b is None else b.capacity for b in self._buckets)
        return (r, i, o)

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
                    bucket.hold(now, self.limits.period * _MAX_HOLD)
                    self._hold_marks[i] = sent[i]
                bucket.take(amount, now)
        self._remember(now)
        mark = Cost(sent[0], sent[1], sent[2])
        self._transit.sent(mark, cost, now)
        return mark

    def _remember(self, now: float) -> None:
        times = self._history_times
        if len(times) >= 2 * _HISTORY:
            self._history_floor = self._history_net[_HISTORY - 1]
            del times[:_HISTORY]
            del self._history_net[:_HISTORY]
            del self._history_sent[:_HISTORY]
        times.append(now)
        n = self._net
        self._history_net.append((n[0], n[1], n[2]))
        s = self._sent
        self._history_sent.append((s[0], s[1], s[2]))

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

    def observe(
        self,
        view: ServerView,
        sent_mark: Cost,
        sent_at: float,
        now: float,
        *,
        uncharged: Cost = ZERO,
        refused: bool = False,
        seen: Cost = ZERO,
        own: Cost | None = None,
    ) -> bool:
        """Resync from a response's headers; True if the gate should look at its head again.

        See `_observe` for how the headers are read. A refused request's `uncharged` part
        is then taken out of the history, as if it had never been sent (`_forget`).
        """
        changed = self._observe(
            view, sent_mark, sent_at, now, uncharged=uncharged, refused=refused, seen=seen, own=own
        )
        if refused and any(uncharged):
            self._forget(uncharged, sent_at, sent_mark)
        self._transit.landed(sent_mark, now)
        return changed

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
        while k < len(times) and sents[k][0] < sent_mark[0]:
            k += 1  # the entry of this request's own take (others may share its instant)
        u0, u1, u2 = uncharged
        for j in range(k, len(nets)):
            n = nets[j]
            nets[j] = (n[0] - u0, n[1] - u1, n[2] - u2)

    def _observe(
        self,
        view: ServerView,
        sent_mark: Cost,
        sent_at: float,
        now: float,
        *,
        uncharged: Cost = ZERO,
        refused: bool = False,
        seen: Cost = ZERO,
        own: Cost | None = None,
    ) -> bool:
        """Resync from a response's headers; True if the gate should look at its head again.

        `sent_at` is when this request was admitted here and `sent_mark` what had been sent
        by then, its own cost included. `uncharged` is the part of its cost the server refused
        to charge (a 429 or 529), which the caller is about to give back: the server's
        `-remaining` does not include it. `refused` says it was such a refusal: the request
        itself stays spent here, whether or not the server counted it (it may not have).
        `seen` is the part of its own charge the reading certainly includes: a stream's
        headers go out at its start, with its whole reservation charged. `own` is this
        request's own charge; without it, everything taken at its admission's instant is
        counted as its own, which overstates it by the rest of a burst admitted at once
        (read as this request's refundable output, a burst's whole reservation came off the
        ceiling: the demo sat 5,000 output tokens below the server after its first burst).

        What is assumed about the headers, and why: a `-remaining` is the server's level at
        one instant somewhere in ``[sent_at, now]`` (admission and completion are both
        readings the documentation allows; a streamed response's headers go out at its
        start), a token `-remaining` may be `TOKEN_ROUNDING` above the truth, and `-reset` is
        good only to a whole second, so it is not used to place the instant. Each
        candidate instant ``T`` gives a reading ``remaining - (net charged here after T) +
        refill since T``; the server's level now is at most the highest of them. The local
        level is lowered to that and no further: a gap the window explains is not somebody
        else's spending. Lowering to the lowest reading instead counted a burst twice and
        stalled the queue for refill the server already had (2.6-3.3x the minimum makespan
        against a server writing headers at completion). The local level is also lowered
        by this request's output reservation, which a non-streamed answer's reading may
        have refunded already and which comes back to us when it is settled. A gap that
        grows over several seconds is learnt as another consumer's rate
        (`ForeignShare.learn`, a least-squares slope), which refills us at what is left.

        A single header never raises the local level, but their lower bounds together may
        (`ReadingFloor`): each reading is also read as low as any rounding and instant
        allow, less everything we sent after this request (possibly unseen), its output
        reservation and, for input, a quarter of what may still be out (the server counts
        input its own way). A high quantile of the recent ones lifts the level; only the
        latest does when another consumer spends. Without it every clamp to a reading's
        pessimistic side lowered the level and nothing raised it: at the real 60 s period
        the client sat 1,400 output tokens (3 s of that limit) below the server to the end
        of the run. The hold after a burst ends crediting the withheld refill up to that
        lower bound.

        The first answer after a cold start (see `cold_start`) is read the other way, at the
        lowest consistent reading: nothing is known yet, and one conservative round trip
        costs less than a burst of 429s.

        Abandoned answers (a request cancelled, timed out or dropped after it was sent): the
        server may stop one at the disconnect or finish it and charge its output, and this
        budget does not know which. Its output reservation stays charged here until the
        answer would have completed (`Reservation.abandon`), so a reading in between may
        show the server above the local level by the unused part (the server stopped it, or
        finished it already): that is a gap the other way, which lowers nothing. A reading
        that moves the level meanwhile (a lift to the readings' lower bounds, a clamp to
        this one) may count that refund, so it is taken to credit the held output first,
        once (`hold_abandoned`). When the reservation is then given back, all but the
        longest answer seen goes back, less what readings credited: the local level never
        runs ahead of a server that charged the answer, nor of one that stopped it.
        When the answer would have completed is learnt from the answers seen (a cold
        start's streamed probe first: `pipeline._answer_times.AnswerTimes`).
        """
        cold = self._probe_at is not None
        self._probe_at = None
        self._cold_since = None
        if self._cold_start:
            self._warm_until = now + self.limits.period
        if view[:6] == _NO_COUNTS:
            self._end_hold_unproven(sent_mark, now)
            return cold
        cold, changed = self._learn_limits(view, now, cold)
        remainings = (view.requests_remaining, view.input_remaining, view.output_remaining)
        highest = self._highest_readings(sent_at, now)
        took = self._own_take(sent_at, sent_mark) if own is None else own
        # once per reading, not per dimension (it scans what is out); a cold one has no floor
        in_transit = ZERO if cold else self._transit.before(sent_mark, sent_at)
        for i, remaining in enumerate(remainings):
            bucket = self._buckets[i]
            if bucket is None:
                continue
            if self._resync_one(
                i,
                bucket,
                remaining,
                cold=cold,
                highest=highest[i],
                took=took[i],
                in_transit=in_transit[i],
                sent_mark=sent_mark,
                sent_at=sent_at,
                now=now,
                uncharged=uncharged,
                refused=refused,
                seen=seen,
            ):
                changed = True
        return changed

    def _end_hold_unproven(self, sent_mark: Cost, now: float) -> None:
        """No rate-limit headers (a proxy, or a server without limits): nothing to resync
        but the end of a burst's hold, which credits no refill the server did not prove."""
        for i, bucket in enumerate(self._buckets):
            if bucket is not None and bucket.held and sent_mark[i] >= self._hold_marks[i]:
                bucket.release(now, up_to=bucket.level(now))

    def _learn_limits(self, view: ServerView, now: float, cold: bool) -> tuple[bool, bool]:
        """Buckets for limits only the headers name, and smaller limits resized: (cold,
        changed), a bucket new from the headers reading its level as after a cold start."""
        changed = cold
        for i, limit in enumerate((view.requests_limit, view.input_limit, view.output_limit)):
            if limit is None or limit <= 0:
                continue
            bucket = self._buckets[i]
            if bucket is None:
                # a limit learnt from the headers: its level is read as after a cold start
                self._buckets[i] = TokenBucket(limit, self.limits.period, now)
                cold = changed = True
            elif limit < bucket.capacity - 0.5:
                bucket.resize(limit, self.limits.period, now)
                changed = True
        if changed:
            self._caps = self._capacities()
        if cold:
            self._hold_next = self._hold_bursts
        return cold, changed

    def _resync_one(
        self,
        i: int,
        bucket: TokenBucket,
        remaining: float | None,
        *,
        cold: bool,
        highest: float,
        took: float,
        in_transit: float,
        sent_mark: Cost,
        sent_at: float,
        now: float,
        uncharged: Cost,
        refused: bool,
        seen: Cost,
    ) -> bool:
        """`observe` for dimension `i` (see there): the end of a burst's hold, the ceiling
        the reading sets, and the lift the recent lower bounds allow; True if it changed."""
        if remaining is not None and i and remaining % 1000:
            self._exact_tokens = True  # a count no rounding gives: the server is exact
        tolerance = TOKEN_ROUNDING if i and not self._exact_tokens else 0.0
        # this request's unused output reservation, which comes back to us once it is
        # settled, and which a non-streamed answer's reading may have refunded already
        # (its input is mostly used; a refused request's comes back as `uncharged`)
        refundable = max(0.0, took - seen[i] - uncharged[i]) if i == 2 else 0.0
        floor: float | None = None
        if remaining is not None and not cold:
            unseen = self._sent[i] - sent_mark[i] + in_transit
            floor = self._reading_floor(
                i, remaining, tolerance, unseen, uncharged[i], refundable, sent_at, now
            )
        if bucket.held and sent_mark[i] >= self._hold_marks[i]:
            # the server answered the burst. Refill withheld meanwhile is credited only
            # as far as this reading proves the server has it: its bucket may have sat
            # full while the burst was on its way (crediting all but `HORIZON` of it met
            # 31 429s on a loaded box, where a burst of 600 took longer to leave)
            level = bucket.level(now)
            bucket.release(now, up_to=level if floor is None else max(level, floor))
            self._foreign.after_burst(i, now, self.limits.period)
        if remaining is None:
            return False
        ceiling = self._ceiling(
            i,
            bucket,
            remaining,
            tolerance,
            cold=cold,
            highest=highest,
            sent_at=sent_at,
            now=now,
            uncharged=uncharged,
            refundable=refundable,
            refused=refused,
            seen=seen,
        )
        changed = False
        level = bucket.level(now)
        if bucket.clamp(ceiling, now):
            changed = True
            self._floor.lowered(i, level - ceiling)
            if i == 2:  # to a level that may count an abandoned answer's refund already
                self._credit_abandoned(level - ceiling)
            if refused and not cold:
                # refused with our level above what the server reports: someone else
                # spends faster than we thought (`ForeignShare.refused`)
                self._foreign.refused(i, bucket, now, self.limits.period)
        if floor is not None and self.lifts:
            # the best recent lower bounds (only this one's if someone else spends) may
            # lift our level to what the server certainly has (`ReadingFloor`)
            alone = self._foreign.rates[i] <= bucket.capacity / self.limits.period * _ALONE
            level = bucket.level(now)
            rise = self._floor.rise(i, floor, level, now, self.limits.period, alone=alone)
            if rise > 0.0:
                if i == 2:  # perhaps an abandoned answer's refund, made by the server already
                    self._credit_abandoned(rise)
                bucket.give(rise, now)
                changed = True
        return changed

    def _reading_floor(
        self,
        i: int,
        remaining: float,
        tolerance: float,
        unseen: float,
        uncharged: float,
        refundable: float,
        sent_at: float,
        now: float,
    ) -> float:
        """The least the server's level can be now by this reading (`observe`), as our
        level will read once the request is settled: rounded up, no refill since, less
        what it may not have seen (`unseen`: everything we took after this request at any
        instant its headers may describe, and what we took before it still on its way,
        `Transit`) and what comes back to us (its unused reservation, any refused part)."""
        floor = remaining - tolerance - unseen - uncharged - refundable
        if i == 1:
            # the server charges its own input count, which our estimate may fall
            # short of (by the calibrator's largest margin) for every request that
            # may still be out: the ones sent within two of this one's flights
            floor -= _SHORT * (self._sent[1] - self._sent_until(2 * sent_at - now)[1])
        return floor

    def _ceiling(
        self,
        i: int,
        bucket: TokenBucket,
        remaining: float,
        tolerance: float,
        *,
        cold: bool,
        highest: float,
        sent_at: float,
        now: float,
        uncharged: Cost,
        refundable: float,
        refused: bool,
        seen: Cost,
    ) -> float:
        """The highest the server's level can be now by this reading (`observe`), and
        what the gap teaches of other consumers (`ForeignShare`)."""
        if cold:
            # everything charged since this request, itself included unless the reading
            # certainly has it, counts as unseen (a non-streamed answer's reading may
            # have its unused output refunded already)
            after = self._net[i] - self._net_until(sent_at, strict=True)[i] - seen[i]
            self._foreign.restart(i, now, bucket, self.limits.period)
            return remaining - tolerance - after
        # this request's unused reservation comes back to us once it is settled,
        # and the reading may have it already (a non-streamed answer's at completion):
        # if its instant is the answer's end, within `HORIZON` of its arrival here; one
        # from earlier in the flight (headers as of admission) does not have it. Taking
        # it off every instant clamped such readings by the whole unused reservation
        # (headers as of admission, 2 s + 20 ms/token: 2.5 times the lowering)
        if refundable > 0.0:
            early = self._highest_before(i, sent_at, now - HORIZON, now)
            highest = max(highest - refundable, early)
        ceiling = remaining - tolerance + highest - uncharged[i]
        # what the server had that neither we spent nor it still has: it grows at
        # the rate someone else spends (`ForeignShare`). A bucket near full may
        # have wasted refill at its cap, which nobody spent: start over.
        # The reading's instant is anywhere in the request's flight: what we
        # charged meanwhile is counted half, and a reading across a burst (more
        # than `_FLIGHT_MAX` of the capacity charged in flight) says too little.
        flight = self._net[i] - self._net_until(sent_at, strict=True)[i]
        if remaining >= bucket.capacity - 2 * tolerance - 1:
            self._foreign.restart(i, now, bucket, self.limits.period)
        elif abs(flight) <= bucket.capacity * _FLIGHT_MAX:
            full = bucket.capacity / self.limits.period
            spent = self._net[i] - flight / 2 - refundable - (refused and i == 0)
            self._foreign.learn(i, bucket, full * now - spent - remaining, now, self.limits.period)
        return ceiling

    def _sent_until(self, t: float) -> tuple[float, float, float]:
        """The running total sent by time `t` (the oldest remembered if `t` is older)."""
        k = bisect.bisect_right(self._history_times, t)
        return self._history_sent[k - 1] if k else (0.0, 0.0, 0.0)

    def _own_take(self, sent_at: float, sent_mark: Cost) -> tuple[float, float, float]:
        """At most what this request took: everything taken at its admission's instant."""
        times = self._history_times
        k = bisect.bisect_left(times, sent_at)
        # (trimmed from the history: everything sent so far counts as its own)
        before = self._history_sent[k - 1] if k else (0.0, 0.0, 0.0)
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
            net = nets[k]
            v = net[0] - n0 + r0 * span
            if v > h0:
                h0 = v
            v = net[1] - n1 + r1 * span
            if v > h1:
                h1 = v
            v = net[2] - n2 + r2 * span
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
            v = nets[j][i] - net_now + rate * (now - times[j])
            if v > best:
                best = v
        return best

    def _net_until(self, t: float, *, strict: bool = False) -> tuple[float, float, float]:
        """The net charged total at time `t` (the oldest remembered if `t` is older).

        `strict` leaves out changes made at exactly `t` (they count as after it).
        """
        times = self._history_times
        i = bisect.bisect_left(times, t) if strict else bisect.bisect_right(times, t)
        return self._history_net[i - 1] if i else self._history_floor

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
