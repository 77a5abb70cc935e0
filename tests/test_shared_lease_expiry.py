"""A lease is spent only while Redis still records it.

`lease.lua` gives back to the level what a process holds once it has not called for the
lease's lifetime (a killed process's lease returns). A living process whose renewal is late
(a loop busy for a second at a 4 s period, a stalled call) must not keep spending that lease:
whatever it spent after Redis gave it back would be spent twice, once from its lease and once
by a process that took it from the level, and the server answers 429. The store is scripted
and the clock virtual (looptime): deterministic whatever the machine's load.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from asyncthrift.scheduling.bucket import Cost
from asyncthrift.scheduling.scheduler import Gate
from asyncthrift.stores.shared import SharedBudget
from tests.test_shared_share import LIMITS, Store, answer

pytestmark = pytest.mark.looptime

LIFETIME = LIMITS.period * 0.5  # `_tuning.lease_lifetime`: half a period


def asked(args: list[str]) -> tuple[float, float, float]:
    """What the call asks (the need plus a slice), per dimension: what these answers grant."""
    a = [float(args[4 + 7 * d + 2]) for d in range(3)]
    return a[0], a[1], a[2]


class StalledStore(Store):
    """A store granting what is asked, its calls taking the round trips listed in `trips`,
    then 2 ms each."""

    def __init__(self, trips: list[float]) -> None:
        super().__init__(lambda args: answer(granted=asked(args), level=(500, 500_000, 40_000)))
        self.trips = trips

    async def call(self, budget: Any, args: list[str]) -> tuple[bool, Any]:
        self.calls.append((asyncio.get_running_loop().time(), args))
        self.called.set()
        await asyncio.sleep(self.trips.pop(0) if self.trips else 0.002)
        return True, self.reply(args)


class Busy(SharedBudget):
    """A process admitting often enough never to count as idle (its lease stays with it)."""

    __slots__ = ()

    def _idle_after(self) -> float:
        return self.limits.period


SMALL = Cost(1, 100, 100)  # the lease of one call covers dozens of these


async def admit_every_second(gate: Gate, budget: SharedBudget, until: float) -> None:
    """One small admission a second (the lease stays busy, never idle) until `until`, each
    paid from the lease at once."""
    loop = asyncio.get_running_loop()
    while loop.time() + 1.0 < until:
        await asyncio.sleep(1.0)
        assert budget.wait(SMALL, loop.time()) == 0.0
        await gate.acquire(SMALL)


async def stop(store: Store) -> None:
    for t in store.tasks:
        t.cancel()
    await asyncio.gather(*store.tasks, return_exceptions=True)


async def test_a_lease_whose_renewal_is_late_admits_nothing_until_a_call_answers() -> None:
    # the first call answers at once; the renewal (due half a lifetime later) stalls 40 s
    store = StalledStore([0.002, 40.0])
    loop = asyncio.get_running_loop()
    budget = Busy(store, LIMITS, loop.time(), "k/sonnet", ("b", "p"))
    gate = Gate([budget])
    budget.bind(gate)
    await gate.acquire(SMALL)  # the first admission leases far more than one request
    first = store.calls[0][0]
    # within the lifetime the lease is spent as usual, the renewal out and stalled
    await admit_every_second(gate, budget, first + LIFETIME * 0.97)
    assert len(store.calls) == 2
    await asyncio.sleep(first + LIFETIME + 0.5 - loop.time())
    # past the lifetime without an answer: Redis may have given the lease back
    assert budget.wait(SMALL, loop.time()) > 0.0
    # the stalled renewal answers at 55 s, but it may have run at 15 s: its record may be
    # gone by now too, so another call renews it before the lease is spent again
    waiter = asyncio.create_task(gate.acquire(SMALL))
    await asyncio.sleep(first + LIFETIME * 0.5 + 40.0 - loop.time())
    assert not waiter.done()
    await asyncio.sleep(0.1)
    assert len(store.calls) >= 3 and waiter.done()
    assert budget.wait(SMALL, loop.time()) == 0.0
    await stop(store)


async def test_a_lease_renewed_in_time_is_never_held_up() -> None:
    store = StalledStore([])
    loop = asyncio.get_running_loop()
    budget = Busy(store, LIMITS, loop.time(), "k/sonnet", ("b", "p"))
    gate = Gate([budget])
    budget.bind(gate)
    await gate.acquire(SMALL)
    await admit_every_second(gate, budget, loop.time() + LIFETIME * 3)
    await stop(store)
