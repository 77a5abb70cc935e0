"""The gateway's forwarding ``create`` (``messages.with_raw_response.forwarding()``) against
the in-process mock: the upstream's bytes, with ``create``'s cache, dedupe, retries and
settling, on both senders (the SDK's httpx2 client, and aiohttp straight).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import anthropic
import orjson
import pytest
from anthropic.types import Message

from asyncthrift import Thrift
from asyncthrift.mock import Faults, MockServer
from asyncthrift.pipeline._forward import request_parts

MODEL = "claude-sonnet-4-6"
SENDERS = ["aiohttp", "httpx"]


def req(text: str, **kw: Any) -> dict[str, Any]:
    return {
        "model": MODEL,
        "max_tokens": 1024,  # above the mock's answer lengths: complete, cacheable answers
        "messages": [{"role": "user", "content": text}],
        **kw,
    }


def without_id(body: bytes) -> dict[str, Any]:
    value: dict[str, Any] = orjson.loads(body)
    value.pop("id")
    return value


@pytest.fixture
async def mock() -> AsyncIterator[MockServer]:
    async with MockServer(latency=0.02) as server:
        yield server


@pytest.mark.parametrize("http", SENDERS)
async def test_the_answer_is_the_upstreams_bytes_and_settles_the_budget(
    mock: MockServer, http: str
) -> None:
    async with Thrift(api_key="k", base_url=mock.base_url, http=http, dedupe=False) as c:
        forwarded = c.messages.with_raw_response.forwarding()
        try:
            answer = await forwarded.create(**req("what is a token bucket?"))
            direct = await c.messages.create(**req("what is a token bucket?"))
        finally:
            await forwarded.aclose()
        parsed = Message.model_validate_json(answer.body)
        assert parsed.model_dump(exclude={"id"}) == direct.model_dump(exclude={"id"})
        assert without_id(answer.body) == without_id(direct.to_json(indent=None).encode())
        assert answer.request_id is not None and answer.request_id.startswith("req_")
        assert (answer.model, answer.stop_reason) == (parsed.model, parsed.stop_reason)
        assert answer.usage.input_tokens == parsed.usage.input_tokens
        assert answer.usage.output_tokens == parsed.usage.output_tokens
        stats = c.stats()
        assert stats.upstream_calls == 2 and stats.in_flight == 0
        assert stats.input_tokens == 2 * parsed.usage.input_tokens
        assert stats.output_tokens == answer.usage.output_tokens + direct.usage.output_tokens
    assert mock.counters.requests == 2


@pytest.mark.parametrize("http", SENDERS)
async def test_twins_share_one_upstream_call_and_the_same_bytes(
    mock: MockServer, http: str
) -> None:
    async with Thrift(api_key="k", base_url=mock.base_url, http=http, dedupe=True) as c:
        forwarded = c.messages.with_raw_response.forwarding()
        try:
            answers = await asyncio.gather(*(forwarded.create(**req("same?")) for _ in range(20)))
        finally:
            await forwarded.aclose()
        assert mock.counters.requests == 1
        assert {a.body for a in answers} == {answers[0].body}
        stats = c.stats()
        assert stats.upstream_calls == 1 and stats.dedupe_joins == 19


async def test_a_cache_hit_answers_what_was_stored(mock: MockServer) -> None:
    async with Thrift(api_key="k", base_url=mock.base_url, cache="memory") as c:
        forwarded = c.messages.with_raw_response.forwarding()
        try:
            first = await forwarded.create(**req("cache me"))
            again = await forwarded.create(**req("cache me"))
            plain = await c.messages.create(**req("cache me"))  # the library's own reader
        finally:
            await forwarded.aclose()
        assert mock.counters.requests == 1
        assert orjson.loads(again.body) == orjson.loads(first.body)
        assert again.request_id == first.request_id is not None
        assert plain.id == orjson.loads(first.body)["id"]
        assert c.stats().cache_hits == 2


@pytest.mark.parametrize("http", SENDERS)
async def test_an_upstream_429_is_retried_and_a_400_is_the_sdks_error(http: str) -> None:
    # seed 3: the first request meets one 429 (the scheduler then holds the key ~1 s)
    faults = Faults(rate_limited=0.5, rate_limited_retry_after=0.01, seed=3)
    async with (
        MockServer(latency=0.005, faults=faults) as mock,
        Thrift(api_key="k", base_url=mock.base_url, http=http, dedupe=False) as c,
    ):
        forwarded = c.messages.with_raw_response.forwarding()
        try:
            answer = await forwarded.create(**req("question 0"))
            with pytest.raises(anthropic.BadRequestError) as caught:
                bad = req("x", messages=[{"role": "robot", "content": "x"}])
                await forwarded.create(**bad)  # the mock's 400, as the API's
        finally:
            await forwarded.aclose()
        assert answer.usage.output_tokens > 0
        assert c.stats().rate_limited > 0  # the upstream did say 429, and it was retried
        body = caught.value.body
        assert isinstance(body, dict) and body["error"]["type"] == "invalid_request_error"
        assert caught.value.request_id is not None
        assert c.stats().in_flight == 0


async def test_a_stream_is_refused() -> None:
    async with Thrift(api_key="k", base_url="http://127.0.0.1:9") as c:
        forwarded = c.messages.with_raw_response.forwarding()
        with pytest.raises(ValueError, match="stream"):
            await forwarded.create(**req("x"), stream=True)


def test_extra_body_headers_and_query_go_where_the_sdk_puts_them() -> None:
    base = {"x-api-key": "k"}
    params = {
        "model": MODEL,
        "max_tokens": 5,
        "extra_body": {"new_field": 1},
        "extra_headers": {"anthropic-beta": "b1"},
        "extra_query": {"beta": "true"},
    }
    body, headers, query = request_parts(params, base)
    assert orjson.loads(body) == {"model": MODEL, "max_tokens": 5, "new_field": 1}
    assert headers == {"x-api-key": "k", "anthropic-beta": "b1"} and base == {"x-api-key": "k"}
    assert query == {"beta": "true"}
    plain = {"model": MODEL, "max_tokens": 5}
    assert request_parts(plain, base) == (orjson.dumps(plain), base, None)
