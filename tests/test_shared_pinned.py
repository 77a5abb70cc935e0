"""While the shared level is below zero a lease asks again only when nearly empty (or its
head does not fit): an early ask then gets only what the refill paid since anyone's last
call, so it cut the slices thinner and the calls more (`_tuning._LOW_OVERDRAWN`).

The store is scripted and the clock virtual (looptime): deterministic whatever the load.
"""

from __future__ import annotations

import asyncio
import math

import pytest

from asyncthrift.scheduling.bucket import Cost
from asyncthrift.scheduling.scheduler import Gate
from asyncthrift.stores.shared import SharedBudget
from tests.test_shared_share import LIMITS, Store, answer

pytestmark = pytest.mark.looptime

SMALL = Cost(1, 10, 10)  # the requests dimension runs low first


def asked(args: list[str]) -> tuple[float, float, float]:
    a = [float(args[4 + 7 * d + 2]) for d in range(3)]
    return a[0], a[1], a[2]


def needed_now(args: list[str]) -> float:
    return sum(float(args[4 + 7 * d + 1]) for d in range(3))


async def calls_after_using_most_of_a_grant(level_out: float) -> list[list[str]]:
    """A grant of what the first call asks (the level's output at `level_out`), then 70 % of
    its requests admitted: the calls made meanwhile, after the first."""
    store = Store(lambda a: answer(granted=asked(a), level=(0.0, 0.0, level_out)))
    loop = asyncio.get_running_loop()
    budget = SharedBudget(store, LIMITS, loop.time(), "k/sonnet", ("b", "p"))
    gate = Gate([budget])
    budget.bind(gate)
    await asyncio.wait_for(gate.acquire(SMALL), 1.0)
    grant = asked(store.calls[0][1])[0]
    for _ in range(math.ceil(0.7 * grant) - 1):
        await asyncio.wait_for(gate.acquire(SMALL), 1.0)
    await asyncio.sleep(0.1)
    for t in store.tasks:
        t.cancel()
    await asyncio.gather(*store.tasks, return_exceptions=True)
    assert grant >= 10
    return [a for _, a in store.calls[1:]]


async def test_below_zero_a_lease_left_with_a_third_of_its_grant_does_not_ask() -> None:
    assert await calls_after_using_most_of_a_grant(-2880.0) == []


async def test_above_zero_it_asks_for_the_next_slice_before_it_runs_out() -> None:
    later = await calls_after_using_most_of_a_grant(50.0)
    assert len(later) == 1 and needed_now(later[0]) == 0 and asked(later[0])[0] > 0
