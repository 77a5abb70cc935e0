"""While the shared level is below zero, a head the lease does not cover asks for all of
itself and gives back with that call what the lease holds in hand of the dimension it is
short of (`SliceSizing._lend`).

Why: below zero its grant is reserved behind the others' (about 4 s at a 60 s period) however
small its shortfall, and what the process had gathered for its head sat idle beside it
meanwhile: one head gathering per process where one bucket has one (about one max_tokens of
output held idle per process, bench/RESULTS.md `shared27`). Given back in hand it pays the
grants reserved ahead of it sooner (`lease.lua`'s notices); the head waits as long as it
would have. Above zero the shortfall is paid at once: nothing is lent.

The store is scripted and the clock virtual (looptime): deterministic whatever the load.
"""

from __future__ import annotations

import asyncio

import pytest

from asyncthrift import Limits
from asyncthrift.scheduling.bucket import Cost
from asyncthrift.scheduling.scheduler import Gate
from asyncthrift.stores.shared import SharedBudget
from tests.test_shared_share import HEAD, LIMITS, Store, answer, needed

pytestmark = pytest.mark.looptime

SMALL = Cost(1, 10, 10)


def arg(args: list[str], d: int, k: int) -> float:
    """Dimension `d`'s argument `k` (1 capacity, 2 need, 3 ask, 4 give)."""
    return float(args[3 + 7 * d + k])


async def head_after_a_small_one(level_out: float, limits: Limits = LIMITS) -> list[str]:
    """A first grant of 710 output tokens (and plenty of requests and input) for a request
    of 10 with a head of 1,024 queued behind it; the first answered (5 back) while the
    head waits: the arguments of the call that asks for the head."""

    def reply(args: list[str]) -> list[str]:
        granted = (10.0, 10_000.0, 710.0) if len(store.calls) == 1 else needed(args)
        return answer(granted=granted, level=(10.0, 10_000.0, level_out))

    store = Store(reply)
    loop = asyncio.get_running_loop()
    budget = SharedBudget(store, limits, loop.time(), "k/sonnet", ("b", "p"))
    gate = Gate([budget])
    budget.bind(gate)
    small = asyncio.create_task(gate.acquire(SMALL))
    head = asyncio.create_task(gate.acquire(HEAD))
    await asyncio.wait_for(small, 1.0)
    await asyncio.sleep(0.1)
    gate.settled(budget, Cost(0, 0, 5))
    await asyncio.wait_for(head, 2.0)
    for t in store.tasks:
        t.cancel()
    await asyncio.gather(*store.tasks, return_exceptions=True)
    asks = [a for _, a in store.calls[1:] if arg(a, 2, 2) > 0]
    assert len(asks) == 1
    return asks[0]


async def test_below_zero_a_head_gives_back_what_it_gathered_and_asks_for_all_of_itself() -> None:
    args = await head_after_a_small_one(-2880.0)
    assert arg(args, 2, 4) == pytest.approx(705.0)  # the output in hand, given back
    assert arg(args, 2, 2) == pytest.approx(1024.0)  # the whole head needed
    assert arg(args, 0, 2) == 0.0 and arg(args, 1, 2) == 0.0  # held enough: nothing lent


async def test_above_zero_a_head_asks_for_its_shortfall_only() -> None:
    args = await head_after_a_small_one(20_000.0)
    assert arg(args, 2, 4) == 0.0
    assert arg(args, 2, 2) == pytest.approx(1024.0 - 700.0)  # asked at once, before the 5


async def test_a_process_with_a_small_share_of_the_request_rate_keeps_its_refunds() -> None:
    # 2 requests/s shared by 4 processes: 8 requests take 16 s (slices stretched past 4 s
    # to keep about a call per 8 requests); lending at every call sent each head through
    # Redis (0.23 calls per request at 4 processes, 120 s beyond the burst, against 0.17)
    slow = Limits(rpm=120, itpm=600_000, otpm=43_200, period=60.0)
    args = await head_after_a_small_one(-2880.0, slow)
    assert arg(args, 2, 4) == 0.0
    assert arg(args, 2, 2) == pytest.approx(1024.0 - 705.0)
