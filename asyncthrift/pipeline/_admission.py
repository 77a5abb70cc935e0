"""Admission: a call's wait in its model class's gate for a `Reservation`.

Why a module of its own: `Pipeline.run` (``client/_pipeline``) loops over attempts; each
attempt first needs budget, and getting it has rules of its own: the fast path when nobody
waits and the budget fits (no coroutine, no queue), otherwise a wait in the call's lane that
counts against its ``deadline``; the spend cap's worst case held before the gate and
released if admission fails; the queue-wait statistics and the observers' queue hooks. The
gate itself (`scheduling/scheduler.Gate`) knows nothing of calls, deadlines spent in
earlier attempts, spend caps or observers; this is where a call meets it.
"""

from __future__ import annotations

from ..core.stats import Recorder
from ..scheduling.reservation import Reservation
from ..stores.spend import SpendLedger
from ._attempt import Call, Plan
from ._classes import ModelClasses
from ._dispatch import Observers

__all__ = ["Admission"]


class Admission:
    """How the calls of one client are admitted (`now`, else `wait`)."""

    __slots__ = ("models", "observers", "spend", "stats")

    def __init__(
        self,
        models: ModelClasses,
        *,
        stats: Recorder,
        observers: Observers,
        spend: SpendLedger | None,
    ) -> None:
        self.models = models  # its loop is the client's clock
        self.stats = stats
        self.observers = observers
        self.spend = spend

    def now(self, plan: Plan, call: Call) -> Reservation | None:
        """Admitted at once if nobody waits and the budget fits; None: go through `wait`
        (it queues, honours the deadline and holds the spend cap's worst case, so a client
        with a spend cap always takes it)."""
        if self.spend is not None:
            return None
        reservation = plan.mc.gate.try_acquire(plan.cost)
        if reservation is not None:
            stats = self.stats
            if call.number == 0:
                stats.queue_waits.append(0.0)
            stats.upstream_calls += 1
            if call.rec is not None:
                self.observers.queue_entered(call.rec)
                self.observers.queue_left(call.rec, 0.0, None)
        return reservation

    async def wait(self, plan: Plan, call: Call) -> Reservation:
        """Wait in the plan's lane until its cost fits; count the wait against `deadline`."""
        loop = self.models.loop
        t0 = loop.time()
        opts = call.opts
        deadline = None if opts.deadline is None else opts.deadline - call.waited
        rec = call.rec
        if rec is not None:
            self.observers.queue_entered(rec)
        if self.spend is not None:
            call.spend_hold = await self.spend.hold(plan.worst_usd)
        try:
            reservation = await plan.mc.gate.acquire(
                plan.cost, level=opts.level, deadline=deadline, enqueued_at=call.enqueued_at
            )
        except BaseException as exc:
            hold, call.spend_hold = call.spend_hold, None
            if self.spend is not None and hold is not None:
                self.spend.release(hold)
            if rec is not None:
                self.observers.queue_left(rec, loop.time() - t0, exc)
            raise
        waited = loop.time() - t0
        call.waited += waited
        if call.number == 0:
            self.stats.queue_waits.append(call.waited)
        self.stats.upstream_calls += 1
        if rec is not None:
            self.observers.queue_left(rec, waited, None)
        return reservation
