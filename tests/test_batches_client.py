"""`client.batches` against the mock: splitting, scheduling on its own budget, results, cost."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from asyncthrift import Thrift
from asyncthrift.mock import MockServer
from asyncthrift.savings.batches import BatchBudget, split_requests

MODEL = "claude-sonnet-4-5"


def req(i: int) -> dict[str, Any]:
    return {
        "custom_id": f"c-{i}",
        "params": {
            "model": MODEL,
            "max_tokens": 64,
            "messages": [{"role": "user", "content": f"Summarise item {i}."}],
        },
    }


def test_split_requests_respects_count_and_bytes() -> None:
    requests = [req(i) for i in range(25)]
    assert [len(c) for c in split_requests(requests, max_requests=10)] == [10, 10, 5]
    one = len(__import__("orjson").dumps(requests[0])) + 1
    chunks = split_requests(requests, max_bytes=64 * 1024 + 3 * one + 2)
    assert all(len(c) <= 3 for c in chunks) and sum(map(len, chunks)) == 25
    with pytest.raises(ValueError, match="more than a batch holds"):
        split_requests(requests, max_bytes=64 * 1024 + 10)


async def test_create_wait_results_and_half_price() -> None:
    async with (
        MockServer(batch_latency=0.1) as mock,
        Thrift(api_key="k", base_url=mock.base_url) as client,
    ):
        client.batches.max_requests = 7
        batches = await client.batches.create(requests=[req(i) for i in range(20)])
        assert [b.request_counts.processing for b in batches] == [7, 7, 6]
        got: dict[str, Any] = {}
        for b in batches:
            ended = await client.batches.wait(b.id, poll=0.02)
            assert ended.processing_status == "ended"
            async for r in client.batches.results(b.id):
                got[r.custom_id] = r.result
        assert len(got) == 20
        s = client.stats()
        assert s.batch_requests == 20 and s.batch_results == 20
        batch_cost = s.batch_cost_usd
        assert s.cost_usd == pytest.approx(batch_cost)
        for i in range(20):
            direct = await client.messages.create(**req(i)["params"], cache=False)
            assert direct.content == got[f"c-{i}"].message.content
        plain = client.stats().cost_usd - batch_cost
        assert batch_cost == pytest.approx(plain / 2)
        names = [b.id async for b in client.batches.list(limit=2)]
        assert names == [b.id for b in reversed(batches)]


async def test_batch_calls_wait_on_their_own_budget_and_obey_429() -> None:
    async with (
        MockServer(batch_rpm=2, batch_period=1.0) as mock,
        Thrift(api_key="k", base_url=mock.base_url) as client,
    ):
        b = (await client.batches.create(requests=[req(0)]))[0]
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        for _ in range(4):  # the server allows 2 per second: 429s are retried after waits
            await client.batches.retrieve(b.id)
        assert loop.time() - t0 >= 0.9
        assert client.stats().requests == 0  # the Messages side saw nothing
        assert mock.counters.batch_api_requests >= 5


async def test_budget_paces_locally() -> None:
    budget = BatchBudget(rpm=10, period=1.0)
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    for _ in range(15):
        await budget.acquire()
    assert loop.time() - t0 == pytest.approx(0.5, abs=0.15)
