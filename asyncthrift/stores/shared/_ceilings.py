"""What a response's rate-limit headers tell a `SharedBudget`: a ceiling for the shared level
and, while the shared bucket is cold, the proof of its level; and limits learnt from them.

Kept apart from `budget` (the books and admission) and `_roundtrip` (the wire): a reading is
turned into numbers here, sent with the next round trip, and applied by `lease.lua`.
`HeaderCeilings` is a base of `SharedBudget`: these are its own methods.
"""

from __future__ import annotations

import logging

from ...scheduling.bucket import ZERO, Cost, ServerView
from ...scheduling.budget import TOKEN_ROUNDING
from ...scheduling.limits import Limits
from ._foreign import SharedForeign

__all__ = ["HeaderCeilings"]

log = logging.getLogger("asyncthrift.shared")


class HeaderCeilings(SharedForeign):
    """`_observe` (a reading into a ceiling and a proof) and `_learn` (limits from headers)."""

    __slots__ = ("_learning",)

    _learning: bool  # no configured limit: admitting as a local budget until headers say them

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
        """Turn a response's headers into a ceiling for the shared level (sent with the next
        round trip; lowers it, never raises it) and, while the shared bucket is cold, into
        the proof of its level. Read as `LocalBudget.observe` reads them: the server's level
        at an unknown instant T of ``[sent_at, now]``, token readings ±`TOKEN_ROUNDING`.

        The ceiling is the server's level now, as highest as the window allows, less what
        this process holds as lease: the shared level can be no higher (the other processes'
        leases and requests in flight only lower the truth, so ignoring them never lowers
        it too far). It is corrected for this process's own changes since the reading's
        instant, not for the others': it goes to Redis with that instant's window, and
        `lease.lua` moves it by what the other processes gave back and took since (without
        that, a reading from before another process gave back its refunds clamped them away
        again, and the first bucket was never used). The proof takes the lowest reading
        instead, as a cold start does.
        """
        changed = False
        if self._learning:
            changed = super()._observe(
                view,
                sent_mark,
                sent_at,
                now,
                uncharged=uncharged,
                refused=refused,
                seen=seen,
                own=own,
            )
            if not self._learn(view):
                return changed
        if self._fb is not None:
            # not `own=`: the request may have been admitted from the lease, before the
            # fallback began, and its mark is this budget's, not the fallback's; the fallback
            # reads its own take from its history, which overstates it (on the safe side).
            # Told the exact cost, the fallback ran ahead after Redis came back empty
            # (43-87 x 429 per 600 in test_redis_killed_and_restarted_empty_mid_run).
            changed = self._fb.observe(
                view,
                sent_mark,
                sent_at,
                now,
                uncharged=uncharged,
                refused=refused,
                seen=seen,
            )
        remainings = (view.requests_remaining, view.input_remaining, view.output_remaining)
        if remainings == (None, None, None):
            return changed
        self._read_ceilings(remainings, sent_at, now, uncharged=uncharged, seen=seen)
        if not self._cold and self._fb is None:
            # what the gap teaches of consumers outside the shared budget (`_foreign`)
            tol = TOKEN_ROUNDING if not self._exact_tokens else 0.0
            self._learn_foreign(
                view,
                sent_mark,
                sent_at,
                now,
                uncharged=uncharged,
                refused=refused,
                seen=seen,
                own=own,
                tolerance=(0.0, tol, tol),
            )
        if refused or self._cold:
            self._urgent = True  # the shared level is wrong (a 429) or unproven: tell Redis now
            self._not_before = 0.0
            self._want()
        return changed

    def _read_ceilings(
        self,
        remainings: tuple[float | None, float | None, float | None],
        sent_at: float,
        now: float,
        *,
        uncharged: Cost,
        seen: Cost,
    ) -> None:
        """`_observe`'s ceiling and proof per dimension (stored as ``value - rate * t``, sent
        with the next round trip), and the lease given up where it exceeds the ceiling."""
        highest = self._highest_readings(sent_at, now)
        before = self._net_until(sent_at, strict=True)
        net = self._net
        for i in self._dims:
            remaining = remainings[i]
            if remaining is None:
                continue
            if i and remaining % 1000:
                self._exact_tokens = True  # as `LocalBudget.observe`: the server is exact
            tolerance = TOKEN_ROUNDING if i and not self._exact_tokens else 0.0
            held = self._lease[i] + self._pending[i]
            base = remaining - tolerance - held - self._rate[i] * now
            hi = self._cut_lease(i, base + highest[i] - uncharged[i], now)
            lo = base - (net[i] - before[i] - seen[i])
            if hi < self._clamp[i]:
                self._clamp[i] = hi
                self._clamp_when[i] = (sent_at, now)
            if lo < self._proof[i] and sent_at >= self._proof_from:
                self._proof[i] = lo

    def _cut_lease(self, i: int, hi: float, now: float) -> float:
        """A ceiling `hi` (as ``value - rate * now``) below zero: the server has less than
        this process's lease (the reading read as the ceiling reads it: as high as its
        instant allows, as low as its rounding does), and what the lease holds beyond it
        can only be refused. The shared level cannot take back a lease (the
        ceiling lowers only what Redis still has), so the lease gives it up here; returns
        the ceiling less the lease it no longer holds.

        Why: with another consumer on the key the shared level ran ahead of the server
        between readings and handed the excess out as leases before any ceiling reached
        Redis; spent, every token of it was a 429 (one shared process met 22-28 per 400
        requests with a consumer taking 40 %, where a local budget, which clamps its own
        level, met none)."""
        # the ceiling counts what is granted ahead too (`_pending`), paid for by the refill
        # later, which the server's level now cannot show: only the lease is compared, unless
        # another consumer is in evidence (`_foreign_seen`): then the refill pays less than
        # the grant's schedule said, and the server's level must cover the pending part too
        pending = 0.0 if self._foreign_seen(i) else self._pending[i]
        over = -(hi + self._rate[i] * now + pending)
        if over <= 0 or self._cold or self._fb is not None or self._lease[i] <= 0:
            return hi
        cut = min(over, self._lease[i])
        self._lease[i] -= cut
        self.lease_cuts += cut / self._cap[i]
        return hi + cut

    def _learn(self, view: ServerView) -> bool:
        """Limits learnt from a response's headers (``Thrift(limits=None)``): share them from
        now on. What this process spent meanwhile is charged to Redis with the first call
        (unless that call proves a cold bucket's level from these very headers); refunds of
        requests still in flight then come back through the lease, as any refund does."""
        caps = (view.requests_limit, view.input_limit, view.output_limit)
        if not any(c is not None and c > 0 for c in caps):
            return False
        known = [float(c) if c is not None and c > 0 else 0.0 for c in caps]
        period = self.limits.period
        self.limits = Limits(
            rpm=known[0] or None, itpm=known[1] or None, otpm=known[2] or None, period=period
        )
        self._cap = known
        self._rate = [c / period for c in known]
        self._dims = tuple(i for i in range(3) if known[i] > 0)
        self._est = list(self._rate)
        self._debt_due = [max(0.0, self._net[i]) if known[i] else 0.0 for i in range(3)]
        self._learning = False
        self._cold = True  # the shared level is unproven until this reading reaches Redis
        log.info("shared budget %s: limits learnt from the headers (%s); sharing them", self.name,
                 self.limits)  # fmt: skip
        return True
