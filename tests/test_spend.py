"""The spend cap: per period (``spend_period=``), behind the `SpendLedger` interface, and
shared by several processes through Redis (`RedisSpendLedger`, against a real redis-server).
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from asyncthrift import Thrift
from asyncthrift.client import make_spend_ledger
from asyncthrift.errors import BudgetExceeded
from asyncthrift.mock import MockServer
from asyncthrift.stores.spend import SpendCap, SpendHold, period_id
from asyncthrift.stores.spend_redis import RedisSpendLedger
from tests.test_fallback import by_hand

SONNET = "claude-sonnet-4-6"
HAIKU = "claude-haiku-4-5"

# 2025-01-15 23:59:00 UTC and a minute later
BEFORE_MIDNIGHT = 1736985540.0
AFTER_MIDNIGHT = BEFORE_MIDNIGHT + 60.0


def req(i: int, model: str = SONNET, max_tokens: int = 200) -> dict[str, Any]:
    return {
        "model": model,
        "max_tokens": max_tokens,
        "messages": [{"role": "user", "content": f"tell me about number {i}"}],
    }


async def spend_until_refused(clients: list[Thrift]) -> tuple[list[Any], int]:
    """Two workers, one per client, each asking until the shared cap refuses it once:
    (every answer, how many were refused)."""
    answered: list[Any] = []
    refused = 0

    async def worker(client: Thrift, base: int) -> None:
        nonlocal refused
        for i in range(100):
            try:
                answered.append(await client.messages.create(**req(base + i)))
            except BudgetExceeded:
                refused += 1
                return

    await asyncio.gather(worker(clients[0], 0), worker(clients[1], 1000))
    return answered, refused


class Clock:
    def __init__(self, t: float) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def test_period_ids_are_utc_calendar_periods() -> None:
    assert period_id("day", BEFORE_MIDNIGHT) == "2025-01-15"
    assert period_id("day", AFTER_MIDNIGHT) == "2025-01-16"
    assert period_id("hour", BEFORE_MIDNIGHT) == "2025-01-15T23"
    assert period_id("week", BEFORE_MIDNIGHT) == "2025-W03"
    assert period_id("month", BEFORE_MIDNIGHT) == "2025-01"
    assert period_id(None, BEFORE_MIDNIGHT) == "all"


async def test_a_daily_cap_restarts_at_midnight_and_a_hold_across_it_lands_in_the_new_day() -> None:
    clock = Clock(BEFORE_MIDNIGHT)
    cap = SpendCap(1.0, period="day", clock=clock)
    first = await cap.hold(0.6)
    cap.settle(first, 0.5)
    in_flight = await cap.hold(0.4)  # 0.5 spent + 0.4 held: 0.1 left today
    with pytest.raises(BudgetExceeded, match=r"for 2025-01-15 \(UTC\)"):
        await cap.hold(0.2)
    clock.t = AFTER_MIDNIGHT
    # a new day: nothing spent yet, but the request still in flight is still held
    with pytest.raises(BudgetExceeded):
        await cap.hold(0.7)
    again = await cap.hold(0.6)
    cap.settle(in_flight, 0.3)  # answered after midnight: charged to the new day
    assert cap.spent == pytest.approx(0.3) and cap.held == pytest.approx(0.6)
    cap.release(again)
    assert cap.held == 0.0


def test_spend_options_are_validated() -> None:
    with pytest.raises(ValueError, match="spend_period="):
        Thrift(api_key="k", spend_cap_usd=1.0, spend_period="fortnight")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="needs spend_cap_usd"):
        Thrift(api_key="k", spend_period="day")
    assert make_spend_ledger(None) is None
    ledger = make_spend_ledger(2.0, "day")
    assert isinstance(ledger, SpendCap) and ledger.period == "day"


async def test_the_local_cap_counts_exactly_the_cost_computed_by_hand_from_usage() -> None:
    async with (
        MockServer() as mock,
        Thrift(api_key="k", base_url=mock.base_url, spend_cap_usd=0.05, spend_period="day") as c,
    ):
        msgs = []
        for i in range(200):
            try:
                msgs.append(await c.messages.create(**req(i, HAIKU if i % 2 else SONNET)))
            except BudgetExceeded:
                break
        else:
            pytest.fail("the cap never refused")
        cap = c.spend
        assert isinstance(cap, SpendCap)
        assert c.stats().cost_usd == pytest.approx(by_hand(msgs), rel=1e-12)
        assert cap.spent == pytest.approx(by_hand(msgs), rel=1e-12) and cap.held == 0.0
        assert cap.spent <= 0.05 and mock.counters.requests == len(msgs)


# -- shared through Redis ----------------------------------------------------------------------


@pytest.mark.redis
async def test_shared_makes_the_spend_cap_count_every_process(
    redis_url: str, redis_namespace: str
) -> None:
    from asyncthrift.stores.shared import SharedStore

    limit = 0.05
    async with MockServer(latency=0.005) as mock:
        clients = [
            Thrift(
                api_key="k",
                base_url=mock.base_url,
                spend_cap_usd=limit,
                shared=SharedStore(redis_url, namespace=redis_namespace),
            )
            for _ in range(2)
        ]
        assert all(isinstance(c.spend, RedisSpendLedger) for c in clients)
        answered, refused = await spend_until_refused(clients)
        for client in clients:
            await client.aclose()
    one, two = (c.stats().cost_usd for c in clients)
    assert refused == 2 and one > 0 and two > 0  # both spent from the one cap
    assert one + two == pytest.approx(by_hand(answered), rel=1e-12)
    assert one + two <= limit  # together, never past it: alone, each would spend 0.05
    reader = RedisSpendLedger(redis_url, limit, namespace=redis_namespace)
    try:
        # nothing is held any more: Redis holds exactly what both spent, in the period's key
        assert await reader.spent(period_id(None, 0.0)) == pytest.approx(one + two, abs=1e-9)
    finally:
        await reader.aclose()


@pytest.mark.redis
async def test_the_redis_ledger_is_atomic_per_period_and_settles_into_the_answer_s_period(
    redis_url: str, redis_namespace: str
) -> None:
    clock = Clock(BEFORE_MIDNIGHT)
    ledger = RedisSpendLedger(redis_url, 1.0, period="day", namespace=redis_namespace, clock=clock)
    try:
        holds = await asyncio.gather(*(ledger.hold(0.3) for _ in range(3)))
        assert all(isinstance(h, SpendHold) for h in holds)
        with pytest.raises(BudgetExceeded, match=r"only \$0\.1000"):
            await ledger.hold(0.3)
        clock.t = AFTER_MIDNIGHT
        ledger.settle(holds[0], 0.25)  # answered after midnight
        ledger.release(holds[1])
        await ledger.flush()
        assert await ledger.spent("2025-01-15") == pytest.approx(0.3)  # holds[2] still held
        assert await ledger.spent("2025-01-16") == pytest.approx(0.25)
        await ledger.hold(0.75)
        with pytest.raises(BudgetExceeded):
            await ledger.hold(0.01)
    finally:
        await ledger.aclose()


async def test_an_unreachable_redis_refuses_the_request() -> None:
    ledger = RedisSpendLedger("redis://127.0.0.1:1/0", 1.0, timeout=0.5)
    try:
        with pytest.raises(BudgetExceeded, match="could not be checked"):
            await ledger.hold(0.1)
    finally:
        await ledger.aclose()
