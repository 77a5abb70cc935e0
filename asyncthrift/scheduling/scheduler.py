"""Admission control: priority lanes with aging in one heap, and one timer per gate.

A `Gate` stands in front of the budgets that can serve one model class (one budget per API
key in a pool). Waiters sit in a single heap ordered by ``enqueued_at - lane_boost``: strict
priority for bounded waits, and an old batch request eventually overtakes new interactive
work, without re-sorting. Only the head is ever examined. When it does not fit, one
`TimerHandle` is armed for the earliest instant it will (the max over the budget's three
buckets of deficit / refill rate); refunds and server resyncs re-examine the head at once.
Nothing polls, and admission, refund and timer firing are O(1) or O(log n).

Closing (`QueueCounter.close`, then `Gate.close`) fails every waiter at once with
`ClientClosed` and refuses newcomers; `Gate.idle` resolves when nothing waits and every
reservation was given back, which is how the client waits for requests in flight.

New callers never barge past queued waiters: a request is admitted on the fast path only
when nobody is waiting. A big request at the head therefore blocks smaller ones behind it
instead of starving, which is what keeps the makespan close to the theoretical minimum.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import math
from collections.abc import Callable, Sequence

from ..errors import InvalidArgument, RequestTooLarge
from .bucket import Budget, Cost
from .lanes import LANES, QueueCounter, lane_level
from .pool import BudgetPool
from .refusals import (
    closed_while_waiting,
    deadline_before_admission,
    deadline_missed,
    queue_full,
)
from .reservation import Reservation

__all__ = ["LANES", "Gate", "QueueCounter", "Reservation", "lane_level"]

#: The shortest timer the gate arms, in seconds (see `_drain`).
_MIN_TIMER = 0.001


class _Ticket:
    __slots__ = ("cost", "future")

    def __init__(self, cost: Cost, future: asyncio.Future[Reservation]) -> None:
        self.cost = cost
        self.future = future


class Gate(BudgetPool):
    """One admission queue in front of the budgets that can serve one model class."""

    __slots__ = (
        "_counter",
        "_heap",
        "_held",
        "_idle",
        "_later",
        "_live",
        "_loop",
        "_seq",
        "_timer",
        "_timer_at",
        "aging",
        "name",
    )

    def __init__(
        self,
        budgets: Sequence[Budget],
        *,
        aging: float = 60.0,
        counter: QueueCounter | None = None,
        name: str = "",
        loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        super().__init__(budgets)
        if not math.isfinite(aging) or aging < 0:
            raise InvalidArgument(f"aging must be a finite number of seconds >= 0, got {aging!r}")
        self._counter = counter or QueueCounter(None)
        self._heap: list[tuple[float, int, _Ticket]] = []
        self._held = 0
        self._idle: list[asyncio.Future[None]] = []
        self._later: set[asyncio.TimerHandle] = set()
        self._live = 0
        self._loop = loop
        self._seq = itertools.count()
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = math.inf
        self.aging = aging
        self.name = name

    # -- public -----------------------------------------------------------------------------

    @property
    def waiting(self) -> int:
        """Requests queued here and not yet admitted, cancelled or timed out."""
        return self._live

    @property
    def held(self) -> int:
        """Reservations admitted here and not yet settled or released (requests in flight)."""
        return self._held

    def now(self) -> float:
        return self._get_loop().time()

    def close(self) -> None:
        """Fail every waiter now with `ClientClosed` (nothing was sent; nothing was taken from
        a budget) and disarm the timer. Reservations already held are left to finish; await
        `idle()` for them. Call `QueueCounter.close` first so that nobody queues again.
        Refunds deferred by `later` are dropped: what an abandoned answer may still cost
        stays spent (the safe side), and closing never waits for one."""
        heap, self._heap = self._heap, []
        self._disarm()
        for handle in self._later:
            handle.cancel()
        self._later.clear()
        counter = self._counter
        for _, _, ticket in heap:
            future = ticket.future
            if future.done():  # cancelled or timed out; already uncounted
                continue
            self._live -= 1
            counter.waiting -= 1
            future.set_exception(closed_while_waiting())
        self._check_idle()

    async def idle(self) -> None:
        """Return once nothing waits here and every reservation was settled or released."""
        if not self._live and not self._held:
            return
        future: asyncio.Future[None] = self._get_loop().create_future()
        self._idle.append(future)
        await future

    async def acquire(
        self,
        cost: Cost,
        *,
        level: int = 1,
        deadline: float | None = None,
        enqueued_at: float | None = None,
    ) -> Reservation:
        """Wait until `cost` can be paid, pay it, and return the reservation.

        `enqueued_at` (default now) orders the request within its lane: a retry passes its
        first arrival time, so it goes ahead of newer work of the same priority.
        """
        loop = self._get_loop()
        now = loop.time()
        self._counter.check_open()
        if self._dead_error is not None and not self.usable:
            raise self._dead_error()
        reservation = self._admit_at_once(cost, now)
        if reservation is not None:
            return reservation
        self._check_size(cost)
        counter = self._counter
        if counter.limit is not None and counter.waiting >= counter.limit:
            raise queue_full(counter.waiting, counter.limit, self._head_wait(now))
        if deadline is not None and deadline <= 0:
            raise deadline_before_admission(self._head_wait(now))
        future: asyncio.Future[Reservation] = loop.create_future()
        ticket = _Ticket(cost, future)
        arrived = now if enqueued_at is None else enqueued_at
        entry = (arrived - level * self.aging, next(self._seq), ticket)
        heapq.heappush(self._heap, entry)
        self._live += 1
        counter.waiting += 1
        if self._heap[0] is entry:
            self._drain()
        try:
            if deadline is None:
                return await future
            async with asyncio.timeout(deadline):
                return await future
        except TimeoutError:
            self._abandon(future)
            now = loop.time()
            picked = self._pick(cost, now)
            hint = self._head_wait(now) or (None if picked is None else picked[1])
            assert deadline is not None  # only a deadline times out
            raise deadline_missed(deadline, hint) from None
        except BaseException:
            self._abandon(future)
            raise

    def try_acquire(self, cost: Cost) -> Reservation | None:
        """Admit `cost` now if nobody waits and a budget can pay it at once; else None.

        The synchronous fast path of `acquire` (same rules, no barging): a caller that gets
        None awaits `acquire`, which queues it or raises. Saves creating and running a
        coroutine for the common case of a limit that is not binding.
        """
        if self._counter.closed:
            return None  # `acquire` raises ClientClosed
        return self._admit_at_once(cost, self._get_loop().time())

    def poke(self) -> None:
        """Re-examine the head now: budget came back or the server changed our view."""
        if self._live:
            self._drain()

    def expected_wait(self, cost: Cost, *, level: int = 1, now: float | None = None) -> float:
        """An estimate of how long a request of `cost` queued now at `level` would wait.

        The demand of every waiter ahead of it (by the heap's order) plus its own, paid by
        the pool: each usable budget alone would pay it in ``w_i`` seconds (its own
        `wait`), together in about ``1 / sum(1 / w_i)``. It ignores refunds still to come
        from requests in flight, so it errs long. O(waiters): for routing decisions only
        (a model fallback against a deadline), never on the admission path.
        """
        now = self.now() if now is None else now
        mine = now - level * self.aging
        r, i, o = cost
        for key, _, ticket in self._heap:
            if key <= mine and not ticket.future.done():
                c = ticket.cost
                r, i, o = r + c[0], i + c[1], o + c[2]
        return self._pool_wait(Cost(r, i, o), now)

    def later(self, when: float, callback: Callable[[], None]) -> None:
        """Call `callback` at loop time `when`, unless the gate closes first (then never).

        For refunds that must wait (`Reservation.abandon`): one loop timer each, cancelled
        by `close`, so they neither keep `idle()` waiting nor outlive the client.
        """
        if self._counter.closed:
            return
        handles: list[asyncio.TimerHandle] = []

        def fire() -> None:
            self._later.discard(handles[0])
            callback()

        handles.append(self._get_loop().call_at(when, fire))
        self._later.add(handles[0])

    def give_back(self, budget: Budget, refund: Cost) -> None:
        """Refund `refund` to `budget` outside any reservation's settling (a deferred refund)
        and look at the head again."""
        budget.give(refund, self._get_loop().time())
        if self._live:
            self._drain()

    def disable(self, index: int, error: Callable[[], BaseException]) -> None:
        """Never admit on budget `index` again (its key was refused for good).

        Waiters are not tied to a budget, so they go to the others. Once every budget is
        disabled, every waiter and every later `acquire` fails with a fresh `error()`.
        Reservations already held on `index` settle as usual.
        """
        if not 0 <= index < len(self._budgets) or index in self._dead:
            return
        self._dead.add(index)
        self._dead_error = error
        if self._live:
            self._drain()  # the head may have been waiting for the disabled budget

    # -- internals --------------------------------------------------------------------------

    def _get_loop(self) -> asyncio.AbstractEventLoop:
        loop = self._loop
        if loop is None:
            loop = self._loop = asyncio.get_running_loop()
        return loop

    def _admit_at_once(self, cost: Cost, now: float) -> Reservation | None:
        """Admit `cost` if nobody waits and a budget can pay it now (no barging); else None."""
        if self._live:
            return None
        picked = self._pick(cost, now)
        if picked is None or picked[1] > 0.0:
            return None
        return self._admit(picked[0], cost, now)

    def _admit(self, index: int, cost: Cost, now: float) -> Reservation:
        budget = self._budgets[index]
        mark = budget.take(cost, now)
        self._held += 1
        return Reservation(self, index, budget, cost, mark, now)

    def _drain(self) -> None:
        """Admit heads while they fit; otherwise arm the one timer for when the head will."""
        now = self._get_loop().time()
        heap = self._heap
        counter = self._counter
        while heap:
            ticket = heap[0][2]
            future = ticket.future
            if future.done():  # cancelled or timed out; already uncounted
                heapq.heappop(heap)
                continue
            picked = self._pick(ticket.cost, now)
            if picked is None:  # every budget disabled, or a resync shrank them below it
                heapq.heappop(heap)
                self._live -= 1
                counter.waiting -= 1
                if self._dead_error is not None and not self.usable:
                    future.set_exception(self._dead_error())
                else:
                    future.set_exception(RequestTooLarge(self._too_large_reason(ticket.cost)))
                if self._idle:
                    self._check_idle()
                continue
            index, wait = picked
            if wait > 0.0:
                # never closer than a millisecond: loops with ms timer resolution (uvloop)
                # fire a sub-ms timer early, and re-arming it at once would spin
                self._arm(now + max(wait, _MIN_TIMER))
                return
            heapq.heappop(heap)
            self._live -= 1
            counter.waiting -= 1
            future.set_result(self._admit(index, ticket.cost, now))
        self._disarm()

    def _abandon(self, future: asyncio.Future[Reservation]) -> None:
        """The waiter left (cancelled or deadline): uncount it, or refund if just admitted."""
        if future.done() and not future.cancelled() and future.exception() is None:
            future.result().release(sent=False)
            return
        if not future.done():
            future.cancel()
        if future.cancelled():
            self._live -= 1
            self._counter.waiting -= 1
            if self._heap and self._heap[0][2].future is future:
                self._drain()
            if self._idle:
                self._check_idle()

    def _check_idle(self) -> None:
        """Wake the `idle()` waiters if nothing waits and nothing is held."""
        if self._live or self._held:
            return
        waiters, self._idle = self._idle, []
        for future in waiters:
            if not future.done():
                future.set_result(None)

    def settled(self, budget: Budget, refund: Cost, mark: Cost | None = None) -> None:
        """A reservation on `budget` ended, giving `refund` back (`Refunds.settled`): one
        admission fewer held, and the head looked at again."""
        now = self._get_loop().time()
        budget.give(refund, now)
        if mark is not None:
            budget.closed(mark, now)
        self._held -= 1
        if not self._live:
            if self._idle and not self._held:
                self._check_idle()
            return
        if len(self._budgets) > 1:
            # A pool: only `budget` changed, and the armed timer already covers every other
            # budget, so look at the head against this one alone (O(1), not a scan of the
            # pool on every settle) and drain only if it now fits here before the timer.
            heap = self._heap
            while heap and heap[0][2].future.done():
                heapq.heappop(heap)  # cancelled or timed out; already uncounted
            if not heap:
                return
            wait = budget.wait(heap[0][2].cost, now)
            if wait > 0.0 and now + wait >= self._timer_at:
                return
        self._drain()

    def _head_wait(self, now: float) -> float | None:
        for _, _, ticket in self._heap:
            if not ticket.future.done():
                picked = self._pick(ticket.cost, now)
                return None if picked is None else picked[1]
        return None

    def _arm(self, when: float) -> None:
        if self._timer is not None:
            if self._timer_at == when:
                return
            self._timer.cancel()
        self._timer_at = when
        self._timer = self._get_loop().call_at(when, self._on_timer)

    def _disarm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
            self._timer_at = math.inf

    def _on_timer(self) -> None:
        self._timer = None
        self._timer_at = math.inf
        self._drain()
