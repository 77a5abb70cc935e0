"""A key pool in virtual time, its real budgets read from the mock's rounded headers.

`tests/reading_sim.py` does this for one budget; here the pool's own `BudgetPool._pick`
chooses among real `LocalBudget`s (cold start on, the burst hold), each against the mock's
own `ServerBudget` of its key (headers at admission or completion, `-remaining` rounded to
nearest / down / exact), requests admitted in arrival order, one budget optionally a
revoked key (its first request comes back refused after the wire's round trip, the key is
disabled, and the request is first in line again). Event by event, no loop, no wall clock:
`bench/pool_readings.py` runs it on `bench/bench_pools.py`'s work, `tests/test_pool_routing.py`
on its own.
"""

from __future__ import annotations

import heapq
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from asyncthrift.mock._ratelimit import ServerBudget
from asyncthrift.pipeline.retry import server_view
from asyncthrift.scheduling.bucket import Cost, ServerView
from asyncthrift.scheduling.budget import LocalBudget
from asyncthrift.scheduling.limits import Limits
from asyncthrift.scheduling.pool import BudgetPool

#: Seconds from admission here to arrival at the server, and from the answer's end back.
WIRE = 0.005

#: One request: (input tokens, max_tokens, output tokens produced, seconds to answer).
Request = tuple[float, float, float, float]


class _Line(BudgetPool):
    """The pool with its line: how many wait, as `Gate` tells it."""

    __slots__ = ("_queue",)

    def __init__(self, budgets: list[LocalBudget], queue: deque[int]) -> None:
        super().__init__(budgets)
        self._queue = queue

    @property
    def waiting(self) -> int:
        return len(self._queue)

    def pick(self, cost: Cost, now: float) -> tuple[int, float] | None:
        return self._pick(cost, now)

    def drop(self, index: int) -> None:
        """What `Gate.disable` does, without a loop to wake waiters on."""
        self._dead.add(index)


@dataclass
class Outcome:
    makespan: float = 0.0
    #: requests the servers would have refused (429)
    refused: int = 0
    served: list[int] = field(default_factory=list)
    #: per budget, the mean of (its server's output level - its own) over the second half
    offsets: list[float] = field(default_factory=list)


def simulate(
    work: list[Request],
    limits: list[Limits],
    *,
    headers_at: str = "completion",
    rounding: str = "nearest",
    revoked: int | None = None,
) -> Outcome:
    """Every request of `work` queued at once on a pool of one budget per `limits`."""
    servers = [ServerBudget(lim, 0.0, 0.0, rounding, "milliseconds") for lim in limits]  # type: ignore[arg-type]
    budgets = [LocalBudget(lim, 0.0, f"b{k}", cold_start=True) for k, lim in enumerate(limits)]
    queue = deque(range(len(work)))
    pool = _Line(budgets, queue)
    events: list[tuple[float, int, str, list[Any]]] = []
    out = Outcome(served=[0] * len(budgets))
    offsets: list[list[tuple[float, float]]] = [[] for _ in budgets]
    seq = 0

    def at(t: float, kind: str, r: list[Any]) -> None:
        nonlocal seq
        seq += 1
        heapq.heappush(events, (t, seq, kind, r))

    def headers(b: int, now: float) -> ServerView:
        return server_view(dict(servers[b].headers(now, 1e9 + now)))

    at(0.0, "wake", [])
    while events:
        now, _, kind, r = heapq.heappop(events)
        if kind == "arrive":  # r: [budget, request, cost, mark, sent_at] + [view]
            b, k, c = r[0], r[1], r[2]
            if b == revoked:
                at(now + WIRE, "refused", r)
                continue
            if servers[b].check(c, now)[0] > 0:
                out.refused += 1
            servers[b].take(c, now)
            r.append(headers(b, now) if headers_at == "admission" else ServerView())
            at(now + work[k][3], "complete", r)
            continue
        if kind == "complete":
            b, k, c = r[0], r[1], r[2]
            servers[b].give(2, c[2] - work[k][2], now)
            if headers_at == "completion":
                r[5] = headers(b, now)
            at(now + WIRE, "answer", r)
            continue
        if kind == "answer":  # read, then settled as `Reservation.settle` does
            b, k, c, mark, sent, view = r
            budgets[b].observe(view, mark, sent, now, own=c)
            budgets[b].give(Cost(0, 0, c[2] - work[k][2]), now)
            budgets[b].closed(mark, now)
            out.served[b] += 1
            out.makespan = now
            level, dim = budgets[b].peek(now)[2], servers[b].dims[2]
            if level is not None and dim is not None:
                offsets[b].append((now, dim.sync(now) - level))
        if kind == "refused":  # a 401: the key disabled, its request first in line again
            b, k, c, mark = r[0], r[1], r[2], r[3]
            budgets[b].give(Cost(0, 0, c[2]), now)
            budgets[b].closed(mark, now)
            pool.drop(b)
            queue.appendleft(k)
        while queue:  # the gate: the head to the budget `_pick` names, else wake then
            inp, max_tokens, _, _ = work[queue[0]]
            cost = Cost(1, inp, max_tokens)
            picked = pool.pick(cost, now)
            assert picked is not None
            b, wait = picked
            if wait > 0:
                at(now + wait, "wake", [])
                break
            k = queue.popleft()
            at(now + WIRE, "arrive", [b, k, cost, budgets[b].take(cost, now), now])
    for series in offsets:
        late = [o for t, o in series if t > out.makespan / 2]
        out.offsets.append(sum(late) / len(late) if late else 0.0)
    return out
