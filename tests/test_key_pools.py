"""Key pools: budgets shared by keys of one organisation, a 429 cooling only its budget, and
keys the API refuses (401/403) disabled for good with their requests sent elsewhere."""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from typing import Any

import anthropic
import pytest

from asyncthrift import KeyConfig, Limits, Thrift
from asyncthrift.errors import NoKeysLeft
from asyncthrift.mock import MockServer
from asyncthrift.scheduling.bucket import Cost
from asyncthrift.scheduling.budget import LocalBudget
from asyncthrift.scheduling.scheduler import Gate
from tests.fake_api import FakeAPI, error, ok
from tests.virtual import run_virtual

SONNET = "claude-sonnet-4-6"


def req(i: int = 0, **kw: Any) -> dict[str, Any]:
    return {
        "model": SONNET,
        "max_tokens": 50,
        "messages": [{"role": "user", "content": f"question {i}"}],
        **kw,
    }


# -- the gate: disabling one budget of a pool ------------------------------------------------


def gate_of(names: str, limits: Limits) -> tuple[Gate, list[LocalBudget]]:
    """A gate over one budget of `limits` per name (no burst hold: plain buckets)."""
    loop = asyncio.get_running_loop()
    budgets = [LocalBudget(limits, loop.time(), name=n, hold_bursts=False) for n in names]
    return Gate(budgets, loop=loop), budgets


def test_a_disabled_budget_admits_nothing_and_its_waiters_go_to_the_others() -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        gate, _ = gate_of("ab", Limits(rpm=1, period=10.0))
        one = Cost(1, 0, 0)
        first = await gate.acquire(one)
        second = await gate.acquire(one)
        assert {first.index, second.index} == {0, 1}
        waiter = asyncio.ensure_future(gate.acquire(one))
        await asyncio.sleep(1.0)
        assert not waiter.done()
        gate.disable(0, lambda: NoKeysLeft("none"))
        t0 = loop.time()
        got = await waiter
        assert got.index == 1  # budget 1 refilled first: the same time either way
        assert loop.time() - t0 == pytest.approx(9.0, abs=0.01)
        # from now on, only budget 1 admits, even when budget 0 is full again
        await asyncio.sleep(30.0)
        assert (await gate.acquire(one)).index == 1

    run_virtual(main())


def test_when_every_budget_is_disabled_waiters_and_newcomers_get_the_error() -> None:
    async def main() -> None:
        gate, _ = gate_of("ab", Limits(rpm=1, period=10.0))
        one = Cost(1, 0, 0)
        await gate.acquire(one)
        await gate.acquire(one)
        waiters = [asyncio.ensure_future(gate.acquire(one)) for _ in range(3)]
        await asyncio.sleep(0.5)
        gate.disable(1, lambda: NoKeysLeft("no keys"))
        await asyncio.sleep(0.1)
        assert not any(w.done() for w in waiters)
        gate.disable(0, lambda: NoKeysLeft("no keys"))
        for w in waiters:
            with pytest.raises(NoKeysLeft):
                await w
        assert gate.waiting == 0
        with pytest.raises(NoKeysLeft):
            await gate.acquire(one)
        assert gate.try_acquire(one) is None

    run_virtual(main())


def test_a_block_on_one_budget_does_not_slow_the_others() -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        gate, budgets = gate_of("abc", Limits(rpm=10, period=10.0))
        budgets[0].block_until(loop.time() + 1000.0)  # a 429 on budget a
        t0 = loop.time()
        got = [await gate.acquire(Cost(1, 0, 0)) for _ in range(20)]
        assert loop.time() - t0 == 0.0  # b and c: 20 requests of burst, at once
        assert {r.index for r in got} == {1, 2}

    run_virtual(main())


# -- the gate: one line, its head to the budget that admits it soonest -----------------------------


def gate_over(limits: list[Limits]) -> tuple[Gate, list[LocalBudget]]:
    """A gate over one plain budget (no burst hold, no cold start) per `limits`."""
    loop = asyncio.get_running_loop()
    budgets = [
        LocalBudget(lim, loop.time(), name=f"b{i}", hold_bursts=False)
        for i, lim in enumerate(limits)
    ]
    return Gate(budgets, loop=loop), budgets


async def admitted_at(gate: Gate, cost: Cost, t0: float) -> tuple[float, int]:
    r = await gate.acquire(cost)
    return asyncio.get_running_loop().time() - t0, r.index


def test_no_waiter_passes_the_head_of_a_pool() -> None:
    # budget 0 refills 100 output tokens/s, budget 1 30/s and can pay neither request. The
    # head waits 9 s for budget 0; the one behind it fits budget 0 sooner (4 s), but only
    # after the head: it is admitted when budget 0 has paid both
    async def main() -> None:
        loop = asyncio.get_running_loop()
        gate, _ = gate_over([Limits(otpm=1000, period=10.0), Limits(otpm=300, period=10.0)])
        await gate.acquire(Cost(0, 0, 1000))
        await gate.acquire(Cost(0, 0, 300))
        t0 = loop.time()
        head = asyncio.ensure_future(admitted_at(gate, Cost(0, 0, 900), t0))
        behind = asyncio.ensure_future(admitted_at(gate, Cost(0, 0, 400), t0))  # too big for 1
        assert await head == (pytest.approx(9.0, abs=0.01), 0)
        assert await behind == (pytest.approx(13.0, abs=0.01), 0)

    run_virtual(main())


def test_a_backlog_is_split_across_budgets_in_proportion_to_their_limits() -> None:
    # 50 / 30 / 20 requests per 10 s, 300 queued at once: the first 100 are the three
    # bursts, the other 200 go at the summed 10 per second, so all are in by 20 s, each
    # budget having admitted its share
    async def main() -> None:
        loop = asyncio.get_running_loop()
        gate, _ = gate_over([Limits(rpm=n, period=10.0) for n in (50, 30, 20)])
        t0 = loop.time()
        got = await asyncio.gather(*(admitted_at(gate, Cost(1, 0, 0), t0) for _ in range(300)))
        assert max(t for t, _ in got) == pytest.approx(20.0, abs=0.11)
        counts = Counter(index for _, index in got)
        assert [counts[i] for i in range(3)] == [pytest.approx(n, abs=1) for n in (150, 90, 60)]

    run_virtual(main())


def test_a_backlog_of_mixed_sizes_ends_near_the_summed_minimum() -> None:
    # output tokens bind: 1000 / 600 / 400 per 10 s, 300 requests of 20 to 400 tokens. The
    # head of one line to the budget that pays it soonest keeps the mix the same on every
    # budget, so they end together: all are in within a big request's refill of the
    # minimum of the summed limits ((total - 2000) / 200 per s)
    async def main() -> None:
        loop = asyncio.get_running_loop()
        caps = (1000, 600, 400)
        gate, _ = gate_over([Limits(otpm=n, period=10.0) for n in caps])
        sizes = [20 + (i * 37) % 381 for i in range(300)]
        t0 = loop.time()
        got = await asyncio.gather(*(admitted_at(gate, Cost(0, 0, n), t0) for n in sizes))
        minimum = (sum(sizes) - sum(caps)) / (sum(caps) / 10.0)
        took = max(t for t, _ in got)
        assert minimum <= took <= minimum + 400 / 200, (took, minimum)

    run_virtual(main())


def test_the_waiters_of_a_revoked_budget_go_to_the_others_when_they_can_pay() -> None:
    # three budgets, all empty; budget 2 would pay the two waiters soonest (in 1 and 2 s);
    # it is revoked: they are admitted on 0 and 1 as soon as those can pay them
    async def main() -> None:
        loop = asyncio.get_running_loop()
        gate, _ = gate_over([Limits(rpm=n, period=10.0) for n in (1, 1, 10)])
        for _ in range(12):
            await gate.acquire(Cost(1, 0, 0))
        t0 = loop.time()
        waiters = [asyncio.ensure_future(admitted_at(gate, Cost(1, 0, 0), t0)) for _ in range(2)]
        await asyncio.sleep(0.5)
        assert not any(w.done() for w in waiters)
        gate.disable(2, lambda: NoKeysLeft("none"))
        got = sorted(await asyncio.gather(*waiters))
        assert [i for _, i in got] in ([0, 1], [1, 0])
        assert [t for t, _ in got] == [pytest.approx(10.0, abs=0.01)] * 2

    run_virtual(main())


# -- configuration -----------------------------------------------------------------------------


async def test_two_keys_naming_one_budget_share_its_buckets_and_its_limits_count_once() -> None:
    limits = Limits(rpm=10, itpm=100_000, otpm=10_000)
    keys = [
        KeyConfig(api_key="k1", limits=limits, budget="org-a"),
        KeyConfig(api_key="k2", budget="org-a"),  # takes the limits its budget-mate gives
        KeyConfig(api_key="k3", limits=limits),
    ]
    async with MockServer() as mock, Thrift(keys=keys, base_url=mock.base_url) as c:
        mc = c.model_class(SONNET)
        assert mc.budgets[0] is mc.budgets[1] and mc.budgets[2] is not mc.budgets[0]
        assert [b.name for b in c.budgets()["sonnet"]] == ["org-a/sonnet", "key2/sonnet"]
        await asyncio.gather(*(c.messages.create(**req(i)) for i in range(20)))
        assert c.stats().succeeded == 20
        reqs = [b.peek(c.now())[0] for b in c.budgets()["sonnet"]]
        assert sum(reqs) == pytest.approx(0, abs=0.1)  # 10 + 10, not 10 + 10 + 10


def test_keys_of_one_budget_must_agree_on_its_limits() -> None:
    with pytest.raises(ValueError, match=r"budget 'org'.*different limits"):
        Thrift(
            keys=[
                KeyConfig(api_key="a", limits=Limits(rpm=10), budget="org"),
                KeyConfig(api_key="b", limits=Limits(rpm=20), budget="org"),
            ]
        )
    with pytest.raises(ValueError, match="budget"):
        KeyConfig(api_key="a", budget="")
    assert "budget='org'" in repr(KeyConfig(api_key="a", budget="org"))


# -- refused keys, against the mock ---------------------------------------------------------------


async def test_a_revoked_key_is_dropped_after_its_first_401_and_its_requests_finish_elsewhere(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.ERROR, logger="asyncthrift")
    limits = Limits(rpm=200, itpm=400_000, otpm=40_000, period=2.0)
    good = ["g1", "g2", "g3"]
    keys = [KeyConfig(api_key=k, limits=limits) for k in good[:2]]
    keys += [
        KeyConfig(api_key="revoked", limits=limits, name="old"),
        KeyConfig(api_key="g3", limits=limits),
    ]
    async with (
        MockServer(api_keys=good, latency=0.01) as mock,
        Thrift(keys=keys, base_url=mock.base_url) as c,
    ):
        results = await asyncio.gather(*(c.messages.create(**req(i)) for i in range(600)))
        s = c.stats()
        assert len(results) == 600 and s.succeeded == 600 and s.failed == 0
        # dropped at its first 401; while that answer was on its way the cold budgets let
        # requests go at the refill's pace, this key's too: each refusal was rerouted
        refused = mock.counters.by_status[401]
        assert s.keys_disabled == 1 and s.rerouted == refused >= 1
        # later calls never reach the revoked key
        await asyncio.gather(*(c.messages.create(**req(i, max_tokens=7)) for i in range(30)))
        assert mock.counters.by_status[401] == refused
    errors = [r for r in caplog.records if "refused" in r.getMessage()]
    assert len(errors) == 1 and "'old'" in errors[0].getMessage()
    assert "401" in errors[0].getMessage() and "revoked" not in errors[0].getMessage()


async def test_a_revoked_key_under_concurrency_without_limits_reroutes_every_refusal() -> None:
    # no limits: no cold-start probe holds the burst back, so many go out on the bad key
    keys = [KeyConfig(api_key="good"), KeyConfig(api_key="bad")]
    async with (
        MockServer(api_keys=["good"], latency=0.01) as mock,
        Thrift(keys=keys, base_url=mock.base_url, max_retries=0) as c,
    ):
        await asyncio.gather(*(c.messages.create(**req(i)) for i in range(100)))
        s = c.stats()
        refused = mock.counters.by_status[401]
        assert s.succeeded == 100 and s.keys_disabled == 1 and s.rerouted == refused >= 1


async def test_when_no_key_is_left_callers_get_a_typed_error_that_says_why() -> None:
    keys = [KeyConfig(api_key="bad1"), KeyConfig(api_key="bad2", name="second")]
    async with (
        MockServer(api_keys=["good"]) as mock,
        Thrift(keys=keys, base_url=mock.base_url, limits=None) as c,
    ):
        # the call that met the last refusal gets the API's own error ...
        with pytest.raises(anthropic.AuthenticationError):
            await c.messages.create(**req())
        assert mock.counters.by_status[401] == 2  # tried both keys
        # ... and every later one NoKeysLeft, without sending anything
        with pytest.raises(NoKeysLeft, match="key0: 401 authentication_error") as info:
            await c.messages.create(**req())
        assert set(info.value.reasons) == {"key0", "second"}
        assert "create a new client" in str(info.value)
        assert mock.counters.requests == 2
        assert c.stats().keys_disabled == 2


async def test_a_403_disables_the_key_too() -> None:
    api = FakeAPI(
        lambda body, n: error(403, "permission_error") if api.keys[-1] == "a" else ok(body)
    )
    keys = [KeyConfig(api_key="a"), KeyConfig(api_key="b")]
    async with Thrift(keys=keys, base_url="http://api.test", sdk_options=api.sdk_options()) as c:
        for i in range(10):
            await c.messages.create(**req(i))
        assert api.keys.count("a") == 1 and api.keys.count("b") == 10
        assert c.disabled_keys() == {"key0": "403 permission_error (permission_error)"}
        assert c.stats().keys_disabled == 1 and c.stats().rerouted == 1
