"""What a response's rate-limit headers say about the server's level: `HeaderResync`.

A ``-remaining`` is the server's level somewhere in the request's flight, a token count
may be rounded, and others spend from the key too: `HeaderResync.observe` reads a reading
only as far as that goes (the ceiling, the lower bounds that may lift the level, limits
only the headers name, the end of a burst's hold), against what this process charged
meanwhile (`NetHistory`). A mixin of `LocalBudget`, apart from admission (`wait`, `take`,
`give`): where a change to how headers are read goes. `SharedBudget` overrides `_observe`.
"""

from __future__ import annotations

import math

from .bucket import ZERO, Cost, ServerView, TokenBucket
from .floor import ReadingFloor
from .foreign import ForeignShare
from .limits import Limits
from .net_history import NetHistory
from .reading_shortcuts import LazyHighest
from .transit import HORIZON, Transit

__all__ = ["TOKEN_ROUNDING", "HeaderResync"]

#: Token `-remaining` headers are rounded to a thousand, in a direction the API does not
#: document (down or to nearest): a reading is read as this much below what it says (until
#: a count that is not a multiple of a thousand shows the server reports exactly). Safe
#: under either: rounded to nearest, the truth may be 500 lower, which at a binding limit
#: is a 429 at the margin (measured: 12 per 400 requests with another consumer of the
#: key); rounded down, we hold back at most 1,500 tokens the server has. That is a
#: constant offset, not lost throughput: the refill rate is unchanged.
TOKEN_ROUNDING = 500.0

#: Another consumer's estimated share of a limit below which we count as alone on the key
#: (the estimate's noise), and may lift our level on the readings' lower bounds.
_ALONE = 0.05
#: How far below the server's count of a request's input our estimate may be (the
#: calibrator's largest margin, `tokens.Calibrator.margin`).
_SHORT = 0.25

#: `ServerView[:6]` (limits and remainings) of a response without rate-limit headers.
_NO_COUNTS = (None, None, None, None, None, None)


class HeaderResync(NetHistory):
    """`LocalBudget`'s reading of response headers (its state is set up in
    `LocalBudget.__init__`; the slots here are those a reading sets)."""

    __slots__ = ("_caps", "_cold_since", "_exact_tokens", "_hold_next", "_probe_at", "_warm_until")

    _caps: tuple[float, float, float]
    _cold_since: float | None
    _cold_start: bool
    _exact_tokens: bool
    _floor: ReadingFloor
    _foreign: ForeignShare
    _held_abandoned: list[float]
    _hold_bursts: bool
    _hold_marks: list[float]
    _hold_next: bool
    _probe_at: float | None
    _transit: Transit
    _warm_until: float
    lifts: bool
    limits: Limits

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
        (`ReadingFloor`, each read as low as any rounding and instant allow: `_reading_floor`;
        else the client sat 3 s of the output limit below the server at 60 s periods). A
        burst's hold ends crediting withheld refill up to that bound.

        The first answer after a cold start (see `cold_start`) is read the other way, at the
        lowest consistent reading: nothing is known yet, and one conservative round trip
        costs less than a burst of 429s.

        Abandoned answers (cancelled, timed out or dropped after being sent): the server may
        stop one or finish and charge it. Its output reservation stays charged here until
        the answer would have completed (`Reservation.abandon`, timed by
        `pipeline._answer_times.AnswerTimes`); a reading that moves the level meanwhile may
        count the server's refund of it, so it credits the held output first, once
        (`hold_abandoned`). Then all but the longest answer seen goes back, less what
        readings credited: the level never runs ahead of a server that charged the answer,
        nor of one that stopped it.

        Which instant non-streamed headers describe is learnt from the requests dimension
        (`HeaderInstant`); until it is known, every reading is read both ways.
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
        highest = LazyHighest(self._highest_readings, self._highest_before, sent_at, now)
        took = self._own_take(sent_at, sent_mark) if own is None else own
        if view.requests_remaining is not None and self._buckets[0] is not None:
            before = self._net_before_own(sent_at, sent_mark)[0]  # a request costs 1 there
            self._foreign.instant.observe(
                view.requests_remaining, self._buckets[0].capacity, self.limits.period,
                sent_at=sent_at, taken_by_own=before + 1.0, now=now, taken_now=self._net[0],
                skip=cold or any(uncharged) or any(seen), refused=refused,
            )  # fmt: skip
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
                highest=highest,
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
        """No rate-limit headers (a proxy): end a burst's hold, crediting no unproven refill."""
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
        highest: LazyHighest,
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
        self._floor.refunding(i, refundable, sent_mark[0])  # bounds read meanwhile may have it
        floor: float | None = None
        if remaining is not None and not cold:
            unseen = self._sent[i] - sent_mark[i] + in_transit
            floor = self._reading_floor(
                i, remaining, tolerance, unseen, uncharged[i], refundable, sent_at, now
            )
        if bucket.held and sent_mark[i] >= self._hold_marks[i]:
            # the server answered the burst: credit refill withheld meanwhile only as far as
            # this reading or the burst's departure prove the server has it (it may have sat
            # full while the burst was on its way: all but `HORIZON` met 31 429s under load)
            up_to = bucket.level(now) + self._transit.refill_since_departed(i, bucket.rate, now)
            bucket.release(now, up_to=up_to if floor is None else max(up_to, floor))
            self._foreign.after_burst(i, now, self.limits.period)
        if remaining is None:
            return False
        ceiling = self._ceiling(
            i,
            bucket,
            remaining,
            tolerance,
            cold=cold,
            highest=highest.at(i, bucket, now, remaining - tolerance - uncharged[i] - refundable),
            took=took,
            sent_mark=sent_mark,
            sent_at=sent_at,
            now=now,
            uncharged=uncharged,
            refundable=refundable,
            refused=refused,
            seen=seen,
        )
        changed, level = False, bucket.level(now)
        if bucket.clamp(ceiling, now):
            changed = True
            self._floor.lowered(i, level - ceiling)
            if i == 2:  # to a level that may count an abandoned answer's refund already
                self._credit_abandoned(level - ceiling)
            if refused and not cold:  # refused above the server: someone else spends faster
                self._foreign.refused(i, bucket, now, self.limits.period)
        most = ceiling + 3.0 * tolerance  # this reading read high: no lift goes above it
        if floor is not None and self.lifts and self._lift(i, bucket, floor, most, sent_mark, now):
            changed = True
        return changed

    def _lift(
        self, i: int, bucket: TokenBucket, floor: float, most: float, sent_mark: Cost, now: float
    ) -> bool:
        """Lift our level on the recent lower bounds (`ReadingFloor`), to `most` at most."""
        alone = self._foreign.rates[i] <= bucket.capacity / self.limits.period * _ALONE
        args = (i, floor, level := bucket.level(now), now, self.limits.period)
        rise = self._floor.rise(
            *args, alone=alone, order=sent_mark[0], rate=bucket.rate, most=most - level
        )
        if rise > 0.0:
            if i == 2:  # perhaps an abandoned answer's refund, made by the server already
                self._credit_abandoned(rise)
            bucket.give(rise, now)
        return rise > 0.0

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
        took: float,
        sent_mark: Cost,
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
            after = self._net[i] - self._net_before_own(sent_at, sent_mark)[i] - seen[i]
            self._foreign.restart(i, now, bucket, self.limits.period)
            return remaining - tolerance - after
        # this request's unused reservation comes back to us once settled; a reading as of
        # the answer's end (within `HORIZON` of its arrival here) has it already, one as of
        # admission not (taken off every instant: 2.5 times the lowering at 2 s answers)
        if refundable > 0.0 and self._foreign.instant.at != "admission":
            early = self._highest_before(i, sent_at, now - HORIZON, now)
            highest = max(highest - refundable, early)
        ceiling = remaining - tolerance + highest - uncharged[i]
        # what the server had that neither we spent nor it still has, as of now and how
        # much less as of the admission: it grows at the rate someone else spends
        full = bucket.capacity / self.limits.period
        flight = self._net[i] - self._net_before_own(sent_at, sent_mark)[i]
        spent = self._net[i] - refundable - uncharged[i] - (refused and i == 0)
        self._foreign.read(
            i,
            bucket,
            remaining >= bucket.capacity - 2 * tolerance - 1,
            unexplained=full * now - spent - remaining,
            ambiguity=full * (now - sent_at) - (flight - took) + refundable,
            flight=flight,
            held=self._held_abandoned[0] if i == 2 else 0.0,
            now=now,
            period=self.limits.period,
            step=2.0 * tolerance,
        )
        return ceiling

    def _credit_abandoned(self, amount: float) -> None:
        """A reading set the output level (lifted or lowered it by `amount`) to a level
        that may count the server's refund of abandoned output held here: that much of it,
        as far as it goes, is taken as given back already (`release_abandoned`), once."""
        held = self._held_abandoned
        credit = min(amount, held[0])
        held[0] -= credit
        held[1] += credit

    def _capacities(self) -> tuple[float, float, float]:
        """Each dimension's capacity (inf = unlimited); refreshed whenever a bucket changes."""
        r, i, o = (math.inf if b is None else b.capacity for b in self._buckets)
        return (r, i, o)
