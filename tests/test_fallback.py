"""Model fallback: ``Thrift(fallback={model: [models...]})`` answers with the next model on
an overload (529) or when the model's queue wait would pass the request's deadline."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from asyncthrift import Limits, Thrift
from asyncthrift.mock import Faults, MockServer
from asyncthrift.pipeline._routes import FALLBACK_HEADER
from tests.fake_api import FakeAPI, error, ok

OPUS = "claude-opus-4-1"
SONNET = "claude-sonnet-4-6"
HAIKU = "claude-haiku-4-5"
CHAIN = {OPUS: [SONNET, HAIKU]}

#: USD per million tokens (input, output), from the published price table.
PRICE = {OPUS: (15.0, 75.0), SONNET: (3.0, 15.0), HAIKU: (1.0, 5.0)}


def req(model: str = OPUS, i: int = 0, **kw: Any) -> dict[str, Any]:
    return {
        "model": model,
        "max_tokens": 64,
        "messages": [{"role": "user", "content": f"question number {i}"}],
        **kw,
    }


def by_hand(messages: list[Any]) -> float:
    total = 0.0
    for m in messages:
        p_in, p_out = PRICE[m.model]
        total += (m.usage.input_tokens * p_in + m.usage.output_tokens * p_out) / 1e6
    return total


async def test_an_overloaded_model_is_answered_by_the_next_one() -> None:
    def handler(body: dict[str, Any], n: int) -> Any:
        if body["model"] == OPUS:
            return error(529, "overloaded_error", {"retry-after": "30"})
        return ok(body, input_tokens=100, output_tokens=20)

    api = FakeAPI(handler)
    async with Thrift(
        api_key="k", base_url="http://api.test", sdk_options=api.sdk_options(), fallback=CHAIN
    ) as c:
        msg = await c.messages.create(**req())
        assert msg.model == SONNET  # the answering model
        s = c.stats()
        assert s.fallbacks == 1 and s.overloaded == 1 and s.retries == 0 and s.succeeded == 1
        assert s.cost_usd == pytest.approx((100 * 3.0 + 20 * 15.0) / 1e6)
        raw = await c.messages.with_raw_response.create(**req(i=1))
        assert raw.headers[FALLBACK_HEADER] == OPUS
        assert (await raw.parse()).model == SONNET
        # a model without a chain, and a call answered by its own model, are untouched
        plain = await c.messages.with_raw_response.create(**req(SONNET, i=2))
        assert FALLBACK_HEADER not in plain.headers
        assert c.stats().fallbacks == 2


async def test_without_fallback_an_overload_is_retried_on_the_same_model() -> None:
    def handler(body: dict[str, Any], n: int) -> Any:
        return error(529, "overloaded_error", {"retry-after": "0"}) if n == 1 else ok(body)

    api = FakeAPI(handler)
    async with Thrift(api_key="k", base_url="http://api.test", sdk_options=api.sdk_options()) as c:
        assert (await c.messages.create(**req())).model == OPUS
        assert c.stats().fallbacks == 0 and c.stats().retries == 1


async def test_the_whole_chain_overloaded_retries_the_last_model() -> None:
    seen: list[str] = []

    def handler(body: dict[str, Any], n: int) -> Any:
        seen.append(body["model"])
        if len(seen) <= 3:
            return error(529, "overloaded_error", {"retry-after": "0"})
        return ok(body)

    api = FakeAPI(handler)
    async with Thrift(
        api_key="k", base_url="http://api.test", sdk_options=api.sdk_options(), fallback=CHAIN
    ) as c:
        assert (await c.messages.create(**req())).model == HAIKU
    assert seen == [OPUS, SONNET, HAIKU, HAIKU]


async def test_overloads_against_the_mock_fall_back_and_cost_matches_usage_by_hand() -> None:
    faults = Faults(overloaded=0.3, seed=7)
    async with (
        MockServer(faults=faults, overloaded_retry_after=0.0) as mock,
        Thrift(api_key="k", base_url=mock.base_url, fallback=CHAIN, cache="memory") as c,
    ):
        msgs = await asyncio.gather(*(c.messages.create(**req(i=i)) for i in range(60)))
        s = c.stats()
        answered = {m: sum(1 for x in msgs if x.model == m) for m in PRICE}
        assert s.succeeded == 60 and answered[SONNET] > 0 and answered[OPUS] > 0
        assert s.fallbacks == answered[SONNET] + answered[HAIKU]
        assert s.overloaded == mock.counters.overloaded
        assert s.cost_usd == pytest.approx(by_hand(msgs), rel=1e-9)
        # an answer from a fallback model is not cached as the answer to the opus call
        fell = next(i for i, m in enumerate(msgs) if m.model != OPUS)
        again = await c.messages.create(**req(i=fell))
        assert c.stats().cache_hits == 0 or again.model == OPUS


async def test_a_queue_wait_past_the_deadline_goes_to_the_next_model() -> None:
    # opus: 5 requests a minute; sonnet: plenty. Past the first few, an opus request would
    # wait seconds, its deadline is 2 s: sonnet answers instead, at once
    limits = {"claude-opus": Limits(rpm=5), "claude-sonnet": Limits(rpm=1000)}
    async with (
        MockServer(limits=limits) as mock,
        Thrift(api_key="k", base_url=mock.base_url, limits=limits, fallback=CHAIN) as c,
    ):
        # one answer from each model first: a cold budget's level is unknown until then
        # (it waits for its first answer), and an estimate is only as good as the level
        warm = [await c.messages.create(**req(m, i=-1)) for m in (OPUS, SONNET)]
        msgs = await asyncio.gather(
            *(c.messages.create(**req(i=i), deadline=2.0) for i in range(20))
        )
        s = c.stats()
    models = [m.model for m in msgs]
    assert 1 <= models.count(OPUS) <= 4 and models.count(SONNET) == 20 - models.count(OPUS)
    assert s.fallbacks == models.count(SONNET) and s.failed == 0
    msgs += warm
    assert s.cost_usd == pytest.approx(by_hand(msgs), rel=1e-9)
    assert s.queue_wait_p99 < 2.0


async def test_without_a_deadline_a_busy_model_is_waited_for() -> None:
    limits = {"claude-opus": Limits(rpm=600, period=1.0)}
    async with (
        MockServer(limits=limits) as mock,
        Thrift(api_key="k", base_url=mock.base_url, limits=limits, fallback=CHAIN) as c,
    ):
        msgs = await asyncio.gather(*(c.messages.create(**req(i=i)) for i in range(20)))
    assert {m.model for m in msgs} == {OPUS}


def test_fallback_is_validated() -> None:
    with pytest.raises(TypeError, match="fallback="):
        Thrift(api_key="k", fallback=[OPUS])  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="list of model ids"):
        Thrift(api_key="k", fallback={OPUS: SONNET})  # type: ignore[dict-item]
    with pytest.raises(ValueError, match="its own fallback"):
        Thrift(api_key="k", fallback={OPUS: [OPUS]})
    with pytest.raises(ValueError, match="non-empty"):
        Thrift(api_key="k", fallback={OPUS: []})


def test_the_gate_estimates_the_wait_of_the_queue_ahead() -> None:
    from asyncthrift.scheduling.bucket import Cost
    from asyncthrift.scheduling.budget import LocalBudget
    from asyncthrift.scheduling.scheduler import Gate
    from tests.virtual import run_virtual

    async def main() -> None:
        loop = asyncio.get_running_loop()
        limits = Limits(rpm=10, period=10.0)  # one request a second once the burst is spent
        one = Cost(1, 0, 0)
        budgets = [LocalBudget(limits, loop.time(), hold_bursts=False) for _ in range(2)]
        single = Gate(budgets[:1], loop=loop)
        assert single.expected_wait(one) == 0.0
        for _ in range(10):
            await single.acquire(one)
        waiters = [asyncio.ensure_future(single.acquire(one, level=0)) for _ in range(5)]
        await asyncio.sleep(0)
        assert single.expected_wait(one, level=0) == pytest.approx(6.0)  # 5 ahead, then it
        assert single.expected_wait(one, level=1) == pytest.approx(1.0)  # goes ahead of them
        pool = Gate(budgets, loop=loop)  # the second budget is full: 10 at once
        assert pool.expected_wait(Cost(16, 0, 0)) == pytest.approx(1 / (1 / 16 + 1 / 6))
        for w in waiters:
            w.cancel()
        await asyncio.gather(*waiters, return_exceptions=True)

    run_virtual(main())
