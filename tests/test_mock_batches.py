"""The mock's Message Batches API, driven by the real SDK over HTTP."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import anthropic
import pytest

from asyncthrift.mock import MockServer

MODEL = "claude-sonnet-4-5"


def req(i: int, **params: Any) -> dict[str, Any]:
    body = {"model": MODEL, "max_tokens": 40, "messages": [{"role": "user", "content": f"q {i}"}]}
    body.update(params)
    return {"custom_id": f"r-{i}", "params": body}


@pytest.fixture
async def sdk_mock(request: pytest.FixtureRequest) -> AsyncIterator[tuple[MockServer, Any]]:
    overrides = getattr(request, "param", {})
    async with MockServer(**{"batch_latency": 0.1, **overrides}) as mock:
        sdk = anthropic.AsyncAnthropic(api_key="k", base_url=mock.base_url, max_retries=0)
        try:
            yield mock, sdk
        finally:
            await sdk.close()


async def wait_ended(sdk: Any, batch_id: str) -> Any:
    async with asyncio.timeout(10):
        while True:
            b = await sdk.messages.batches.retrieve(batch_id)
            if b.processing_status == "ended":
                return b
            await asyncio.sleep(0.02)


async def test_round_trip_answers_equal_messages_create(sdk_mock: Any) -> None:
    mock, sdk = sdk_mock
    requests = [req(i) for i in range(20)] + [{"custom_id": "bad", "params": {"model": MODEL}}]
    batch = await sdk.messages.batches.create(requests=requests)
    assert batch.processing_status == "in_progress"
    assert batch.request_counts.processing == 21
    assert batch.results_url is None
    ended = await wait_ended(sdk, batch.id)
    assert ended.request_counts.succeeded == 20
    assert ended.request_counts.errored == 1
    assert ended.ended_at is not None and ended.results_url
    got = {r.custom_id: r.result async for r in await sdk.messages.batches.results(batch.id)}
    assert got["bad"].type == "errored"
    assert got["bad"].error.error.type == "invalid_request_error"
    for i in range(20):
        direct = await sdk.messages.create(**requests[i]["params"])
        result = got[f"r-{i}"]
        assert result.type == "succeeded"
        assert result.message.content == direct.content
        assert result.message.usage == direct.usage
    assert mock.counters.batch_creates == 1
    assert mock.counters.batch_requests == 21


@pytest.mark.parametrize(
    "sdk_mock", [{"batch_latency": 0.0, "batch_seconds_per_request": 0.05}], indirect=True
)
async def test_cancel_goes_through_canceling_to_ended(sdk_mock: Any) -> None:
    _, sdk = sdk_mock
    batch = await sdk.messages.batches.create(requests=[req(i) for i in range(40)])
    await asyncio.sleep(0.3)  # about 6 finished
    canceled = await sdk.messages.batches.cancel(batch.id)
    assert canceled.processing_status == "canceling"
    assert canceled.cancel_initiated_at is not None
    ended = await wait_ended(sdk, batch.id)
    counts = ended.request_counts
    assert counts.canceled > 20 and counts.succeeded > 0
    assert counts.succeeded + counts.canceled == 40
    types = [r.result.type async for r in await sdk.messages.batches.results(batch.id)]
    assert types.count("canceled") == counts.canceled


@pytest.mark.parametrize(
    "sdk_mock",
    [{"batch_latency": 0.0, "batch_seconds_per_request": 0.05, "batch_expiry": 0.2}],
    indirect=True,
)
async def test_expiry_ends_the_batch_with_the_rest_expired(sdk_mock: Any) -> None:
    _, sdk = sdk_mock
    batch = await sdk.messages.batches.create(requests=[req(i) for i in range(10)])
    ended = await wait_ended(sdk, batch.id)
    assert ended.request_counts.expired == 6
    assert ended.request_counts.succeeded == 4


async def test_list_is_newest_first_with_cursors(sdk_mock: Any) -> None:
    _, sdk = sdk_mock
    ids = [(await sdk.messages.batches.create(requests=[req(i)])).id for i in range(5)]
    page = await sdk.messages.batches.list(limit=2)
    assert [b.id for b in page.data] == ids[::-1][:2]
    assert page.has_more and page.first_id == ids[4] and page.last_id == ids[3]
    assert [b.id async for b in sdk.messages.batches.list(limit=2)] == ids[::-1]
    before = await sdk.messages.batches.list(before_id=ids[1], limit=2)
    assert [b.id for b in before.data] == [ids[3], ids[2]]


@pytest.mark.parametrize(
    "sdk_mock", [{"batch_rpm": 3, "batch_period": 60, "batch_queue_limit": 5}], indirect=True
)
async def test_batch_limits_answer_429(sdk_mock: Any) -> None:
    mock, sdk = sdk_mock
    await sdk.messages.batches.create(requests=[req(i) for i in range(4)])
    with pytest.raises(anthropic.RateLimitError) as queue:
        await sdk.messages.batches.create(requests=[req(i) for i in range(2)])
    assert "processing queue" in str(queue.value)
    await sdk.messages.batches.list()
    with pytest.raises(anthropic.RateLimitError) as rate:
        await sdk.messages.batches.list()
    assert int(rate.value.response.headers["retry-after"]) >= 1
    assert mock.counters.batch_rate_limited == 2


async def test_envelope_errors(sdk_mock: Any) -> None:
    _, sdk = sdk_mock
    with pytest.raises(anthropic.BadRequestError):
        await sdk.messages.batches.create(requests=[req(1), req(1)])
    with pytest.raises(anthropic.BadRequestError):
        await sdk.messages.batches.create(requests=[{"custom_id": "no spaces!", "params": {}}])
    with pytest.raises(anthropic.NotFoundError):
        await sdk.messages.batches.retrieve("msgbatch_nope")
    async with MockServer(batch_max_requests=3) as small:
        sdk2 = anthropic.AsyncAnthropic(api_key="k", base_url=small.base_url, max_retries=0)
        with pytest.raises(anthropic.BadRequestError, match="at most 3"):
            await sdk2.messages.batches.create(requests=[req(i) for i in range(4)])
        await sdk2.close()
