"""Key pools: budgets shared by keys of one organisation, a 429 cooling only its budget, and
keys the API refuses (401/403) disabled for good with their requests sent elsewhere."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import anthropic
import pytest

from asyncthrift import KeyConfig, Limits, Thrift
from asyncthrift.bucket import Cost
from asyncthrift.budget import LocalBudget
from asyncthrift.errors import NoKeysLeft
from asyncthrift.mock import MockServer
from asyncthrift.scheduler import Gate
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


# -- configuration -----------------------------------------------------------------------------


async def test_two_keys_naming_one_budget_share_its_buckets_and_its_limits_count_once() -> None:
    limits = Limits(rpm=10, itpm=100_000, otpm=10_000)
    keys = [
        KeyConfig(api_key="k1", limits=limits, budget="org-a"),
        KeyConfig(api_key="k2", budget="org-a"),  # takes the limits its budget-mate gives
        KeyConfig(api_key="k3", limits=limits),
    ]
    async with MockServer() as mock, Thrift(keys=keys, base_url=mock.base_url) as c:
        mc = c._model_class(SONNET)
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
        assert c._pipeline.refused == {0: "403 permission_error (permission_error)"}
        assert c.stats().keys_disabled == 1 and c.stats().rerouted == 1
