"""While the shared level is overdrawn, a head short only of output tokens waits for the
refunds of this process's requests in flight before it asks Redis (`_slices`).

An ask made then waits behind the grants reserved ahead anyway (4 s at a 60 s period), and
one sized before the refunds land reserves what they then cover: it came back as lease held
idle (500-650 output tokens per process at 4 processes) and a call per 3-6 requests. The
store is scripted and the clock virtual (looptime): deterministic whatever the load.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from asyncthrift.scheduling.bucket import Cost
from asyncthrift.scheduling.scheduler import Gate
from asyncthrift.stores.shared import SharedBudget
from tests.test_shared_share import HEAD, LIMITS, Store, answer, needed

pytestmark = pytest.mark.looptime

NEED_OUT = 4 + 7 * 2 + 1  # the output dimension's need in the script's arguments


async def two_heads(level_out: float) -> tuple[Store, Any, Gate, SharedBudget]:
    """Two requests of `HEAD` queued; each answer grants the output the call needs and
    plenty of requests and input (so only output can be short), the output level at
    `level_out` (below zero: overdrawn). The first is admitted and stays in flight."""

    def reply(args: list[str]) -> list[str]:
        n = needed(args)
        granted = (max(n[0], 10.0), max(n[1], 10_000.0), n[2])
        return answer(granted=granted, level=(10.0, 10_000.0, level_out))

    store = Store(reply)
    loop = asyncio.get_running_loop()
    budget = SharedBudget(store, LIMITS, loop.time(), "k/sonnet", ("b", "p"))
    gate = Gate([budget])
    budget.bind(gate)
    first = asyncio.create_task(gate.acquire(HEAD))
    second = asyncio.create_task(gate.acquire(HEAD))
    await asyncio.wait_for(asyncio.shield(first), 1.0)
    await asyncio.sleep(0.5)
    return store, second, gate, budget


async def test_an_overdrawn_level_waits_for_the_refunds_in_flight() -> None:
    store, second, gate, budget = await two_heads(-2880.0)
    assert len(store.calls) == 1 and not second.done()  # no ask for the second head
    # the first answer lands: 944 of its 1024 output tokens come back, 80 are charged
    gate.settled(budget, Cost(0, 0, 944))
    await asyncio.wait_for(second, 1.0)
    # 944 of 1024 held, nothing in flight: then it asks, once, giving back the 944 it holds
    # (a head below zero asks for all of itself: `SliceSizing._lend`, test_shared_lend.py)
    asks = [a for _, a in store.calls[1:] if float(a[NEED_OUT]) > 0]
    assert [float(a[NEED_OUT]) for a in asks] == [1024.0]
    assert float(asks[0][NEED_OUT + 2]) == pytest.approx(944.0)
    for t in store.tasks:
        t.cancel()
    await asyncio.gather(*store.tasks, return_exceptions=True)


async def test_a_level_with_room_is_asked_at_once() -> None:
    store, second, _, _ = await two_heads(20_000.0)
    # the level is not overdrawn: the second head's shortfall is asked for at once
    assert second.done()
    assert [float(a[NEED_OUT]) for _, a in store.calls][:2] == [1024.0, 1024.0]
    for t in store.tasks:
        t.cancel()
    await asyncio.gather(*store.tasks, return_exceptions=True)


async def test_a_long_answer_in_flight_holds_the_head_up_one_second_at_most() -> None:
    store, second, _, _ = await two_heads(-2880.0)
    assert len(store.calls) == 1  # 0.5 s after the first admission: still waiting
    await asyncio.wait_for(second, 1.0)  # the first never lands; the head asks anyway
    t, a = store.calls[1]
    assert float(a[NEED_OUT]) == 1024.0
    assert 0.95 <= t - store.calls[0][0] <= 1.1, t
    for task in store.tasks:
        task.cancel()
    await asyncio.gather(*store.tasks, return_exceptions=True)
