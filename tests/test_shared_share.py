"""How a `SharedBudget` shares the refill with the other processes, seen from what it sends
to Redis and when: its backlog with every call, its share by backlog, the end of a run (a
head asks whether the level pays it now), and a cold bucket polled less and less often.

The store is scripted (each `lease.lua` answer is written here) and the clock is virtual
(looptime): deterministic whatever the machine's load.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Callable
from typing import Any

import pytest

from asyncthrift import Limits
from asyncthrift.core._breaker import Breaker
from asyncthrift.scheduling.bucket import Cost
from asyncthrift.scheduling.scheduler import Gate
from asyncthrift.stores.shared import SharedBudget

pytestmark = pytest.mark.looptime

LIMITS = Limits(rpm=600, itpm=600_000, otpm=43_200, period=60.0)
HEAD = Cost(1, 1000, 1024)
BACKLOG = 42  # ARGV[43]: the process's backlog (0-based index in the arguments)
ASK_OUT = 4 + 7 * 2 + 2  # the output dimension's ask


def answer(
    *,
    status: int = 0,
    granted: tuple[float, float, float] = (0.0, 0.0, 0.0),
    level: tuple[float, float, float] = (10.0, 10_000.0, -2880.0),
    active: int = 4,
    backlogs: float | None = None,
    retry: float = 0.0,
) -> list[str]:
    """A `lease.lua` answer (see its header), paid at once."""
    res = [str(status), *map(str, granted), "0", str(retry), str(active)]
    res += [*map(str, level), str(active), *map(str, granted), "e", "1", "0", "0", "0", "0"]
    return res if backlogs is None else [*res, str(backlogs)]


class Store:
    """A `LeaseStore` whose answers `reply(args)` writes; it records each call's instant."""

    def __init__(self, reply: Callable[[list[str]], list[str]]) -> None:
        self.breaker = Breaker(
            timeout=1.0,
            connect_timeout=1.0,
            failure_threshold=3,
            cooldown=2.0,
            on_down=lambda exc: None,
            on_up=lambda: None,
        )
        self.process_id = "proc-a"
        self.closed = False
        self.tasks: set[asyncio.Task[None]] = set()
        self.calls: list[tuple[float, list[str]]] = []
        self.called = asyncio.Event()
        self.reply = reply

    def fallback_share(self, processes: int) -> float | None:
        return 1.0 / processes

    async def calls_reach(self, n: int) -> None:
        while len(self.calls) < n:
            self.called.clear()
            await self.called.wait()

    async def call(self, budget: Any, args: list[str]) -> tuple[bool, Any]:
        self.calls.append((asyncio.get_running_loop().time(), args))
        self.called.set()
        await asyncio.sleep(0.002)  # a round trip
        return True, self.reply(args)


async def queue(store: Store, n: int) -> tuple[Gate, list[asyncio.Task[Any]]]:
    """A gate over one shared budget on `store`, `n` requests of `HEAD` queued in it."""
    loop = asyncio.get_running_loop()
    budget = SharedBudget(store, LIMITS, loop.time(), "k/sonnet", ("b", "p"))
    gate = Gate([budget])
    budget.bind(gate)
    tasks = [asyncio.create_task(gate.acquire(HEAD)) for _ in range(n)]
    await asyncio.sleep(0)
    return gate, tasks


async def stop(store: Store, tasks: list[asyncio.Task[Any]]) -> None:
    for t in [*tasks, *store.tasks]:
        t.cancel()
    await asyncio.gather(*tasks, *store.tasks, return_exceptions=True)


def needed(args: list[str]) -> tuple[float, float, float]:
    """What the call needs (the head's shortfall), per dimension: what these answers grant."""
    n = [float(args[4 + 7 * d + 1]) for d in range(3)]
    return n[0], n[1], n[2]


async def test_every_call_carries_the_backlog_and_the_share_follows_the_backlogs() -> None:
    others = [30.0]

    def reply(args: list[str]) -> list[str]:
        return answer(granted=needed(args), backlogs=float(args[BACKLOG]) + others[0])

    store = Store(reply)
    _, tasks = await queue(store, 40)
    await store.calls_reach(3)
    others[0] = 0.0  # the others have nothing left now: this process may take all the refill
    await store.calls_reach(5)
    sent = [a for _, a in store.calls]
    assert [int(a[BACKLOG]) for a in sent] == [40, 39, 38, 37, 36]  # one head per call
    # a slice is the process's share of 4 s of the output refill (720 tokens/s), 1.5 targets
    # asked: 38 of 68 waiting (the answer to the call before said 30 elsewhere), then alone
    assert float(sent[2][ASK_OUT]) == pytest.approx(1.5 * 2880 * 38 / 68, rel=0.01)
    assert float(sent[4][ASK_OUT]) == pytest.approx(1.5 * 2880, rel=0.01)
    await stop(store, tasks)


async def test_a_cold_bucket_is_polled_less_and_less_often() -> None:
    def reply(args: list[str]) -> list[str]:
        return answer(status=3, retry=5.0, level=(0.0, 0.0, 0.0))  # cold: a probe is out

    store = Store(reply)
    _, tasks = await queue(store, 3)
    await asyncio.sleep(1.5)
    times = [t for t, _ in store.calls]
    gaps = [round(b - a, 6) for a, b in itertools.pairwise(times)]
    # each wait counts from the answer (a 2 ms round trip): 50 ms, doubling, at most 200 ms
    assert gaps[:4] == [0.052, 0.102, 0.202, 0.202], gaps
    assert len(times) <= 9  # 50 ms polls made 29 calls in these 1.5 s
    await stop(store, tasks)


NOW_ONLY = 43  # ARGV[44]: "1" grants the needs only if the level pays them now


def reserved_ahead(
    args: list[str], backlogs: float, *, start: float = 0.0, active: int = 4
) -> list[str]:
    """A grant of the need that the level pays for nothing of now: the refill pays it evenly
    from `start` s on (1024 output tokens: 1.4 s at 720 tokens/s)."""
    need = needed(args)
    if args[NOW_ONLY] == "1":
        level = (50.0, 50_000.0, 5_000.0)
        return answer(granted=need, backlogs=backlogs, level=level, active=active)
    res = answer(granted=need, backlogs=backlogs, active=active)
    res[4] = str(start + 1.5)  # ready
    res[11:14] = ["0", "0", "0"]  # paid now
    res[17:20] = [str(start)] * 3  # the refill starts paying for it then
    return res


async def test_at_the_end_a_head_asks_whether_the_level_pays_it_now() -> None:
    store = Store(lambda args: reserved_ahead(args, backlogs=float(args[BACKLOG])))
    _, tasks = await queue(store, 2)
    await asyncio.sleep(1.0)
    # the others have nothing waiting: past half a second the head asks for its shortfall
    # from what is paid for, now or not at all, and goes at once (not at 1.4 s)
    now_only = [(t, a) for t, a in store.calls if a[NOW_ONLY] == "1"]
    assert now_only, [a[NOW_ONLY] for _, a in store.calls]
    t, a = now_only[0]
    assert 0.5 < t < 0.51  # half a second after its grant, however quiet the process
    assert float(a[ASK_OUT]) == float(a[ASK_OUT - 1]) > 0  # asks its need, nothing more
    assert tasks[0].done()
    await stop(store, tasks)


async def test_a_head_behind_others_backlog_waits_for_its_grant() -> None:
    store = Store(lambda args: reserved_ahead(args, backlogs=float(args[BACKLOG]) + 50))
    _, tasks = await queue(store, 2)
    await asyncio.sleep(1.0)
    assert not tasks[0].done()  # paid for at 1.4 s
    assert all(a[NOW_ONLY] == "0" for _, a in store.calls)
    await asyncio.sleep(0.5)
    assert tasks[0].done()
    await stop(store, tasks)


async def test_a_head_asks_once_the_others_backlog_should_be_worked_off() -> None:
    # 10 requests wait elsewhere, 2 here: at their share of 10 requests/s the others are
    # done in 1.2 s, long before this head's grant (paid for from 3 s to 4.4 s)

    def reply(args: list[str]) -> list[str]:
        others = max(0.0, 10.0 - 10.0 * 10 / 12 * asyncio.get_running_loop().time())
        return reserved_ahead(args, float(args[BACKLOG]) + others, start=3.0)

    store = Store(reply)
    _, tasks = await queue(store, 2)
    await asyncio.sleep(2.0)
    now_only = [t for t, a in store.calls if a[NOW_ONLY] == "1"]
    assert now_only and 1.15 < now_only[0] < 1.35, now_only  # not at 0.5 s, not at 3 s
    assert tasks[0].done()
    await stop(store, tasks)


async def test_a_process_alone_never_asks_for_its_own_grants_now() -> None:
    store = Store(lambda a: reserved_ahead(a, float(a[BACKLOG]), start=3.0, active=1))
    _, tasks = await queue(store, 2)
    await asyncio.sleep(4.0)
    assert all(a[NOW_ONLY] == "0" for _, a in store.calls)
    assert not tasks[0].done()  # (paid for at 4.4 s)
    await stop(store, tasks)
