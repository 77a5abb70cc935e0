"""A malformed cache entry is rejected, counted, deleted and answered from the API (issue #14).

A shared cache is input from outside the process: one bad value under a request's key used to
break that prompt for every caller until it expired (an AttributeError on ``usage``, a
TypeError on a string count), and a tiered cache kept a copy in memory after the Redis entry
was deleted. Every poisoned shape below, in memory, in Redis and in memory+Redis, for
``create`` and for streaming, must now be a counted miss that the API answers and replaces.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest
import redis.asyncio as aioredis
from anthropic.types import Message

from asyncthrift import Thrift
from asyncthrift.mock import MockServer
from asyncthrift.stores.cache import (
    Cache,
    MemoryCache,
    RedisCache,
    TieredCache,
    decode_message,
    encode_message,
    fingerprint,
    scope_for_key,
)
from asyncthrift.stores.cache.base import MAX_TOKEN_COUNT, InvalidEntry

MODEL = "claude-sonnet-4-6"
API_KEY = "k"


def good(**over: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": "msg_01",
        "type": "message",
        "role": "assistant",
        "model": MODEL,
        "content": [{"type": "text", "text": "cached"}],
        "stop_reason": "end_turn",
        "stop_sequence": None,
        "usage": {"input_tokens": 5, "output_tokens": 3},
    }
    body.update(over)
    return body


def usage(**over: Any) -> dict[str, Any]:
    return good(usage={"input_tokens": 5, "output_tokens": 3, **over})


def without(name: str) -> dict[str, Any]:
    body = good()
    del body[name]
    return body


POISONED: dict[str, bytes] = {
    "NUL then JSON": b'\x00{"type":"message"}',
    "bare type": b'{"type":"message"}',
    "not JSON": b"not json at all",
    "bad bytes": b"\xff\xfe\x00\x01",
    "empty": b"",
    "JSON list": b"[1, 2]",
    "JSON string": b'"message"',
    "an error body": b'{"type":"error","error":{"type":"api_error"}}',
    "missing usage": orjson.dumps(without("usage")),
    "usage null": orjson.dumps(good(usage=None)),
    "usage a list": orjson.dumps(good(usage=[5, 3])),
    "input_tokens string 1e9": orjson.dumps(usage(input_tokens="1e9")),
    "input_tokens numeric string": orjson.dumps(usage(input_tokens="12")),
    "input_tokens float": orjson.dumps(usage(input_tokens=1.5)),
    "input_tokens bool": orjson.dumps(usage(input_tokens=True)),
    "input_tokens negative": orjson.dumps(usage(input_tokens=-5)),
    "input_tokens huge": orjson.dumps(usage(input_tokens=10**15)),
    "output_tokens missing": orjson.dumps(good(usage={"input_tokens": 5})),
    "cache read negative": orjson.dumps(usage(cache_read_input_tokens=-1)),
    "cache write huge": orjson.dumps(usage(cache_creation_input_tokens=MAX_TOKEN_COUNT + 1)),
    "content an object": orjson.dumps(good(content={"type": "text", "text": "x"})),
    "content a string": orjson.dumps(good(content="cached")),
    "content missing": orjson.dumps(without("content")),
    "block not an object": orjson.dumps(good(content=[5])),
    "block without type": orjson.dumps(good(content=[{"text": "x"}])),
    "block type not a string": orjson.dumps(good(content=[{"type": 5, "text": "x"}])),
    "text not a string": orjson.dumps(good(content=[{"type": "text", "text": 7}])),
    "tool input not an object": orjson.dumps(
        good(content=[{"type": "tool_use", "id": "t", "name": "n", "input": "x"}])
    ),
    "bad block beside an unknown one": orjson.dumps(
        good(content=[{"type": "hologram"}, {"type": "text", "text": None}])
    ),
    "role user": orjson.dumps(good(role="user")),
    "model a number": orjson.dumps(good(model=5)),
    "stop_reason a number": orjson.dumps(good(stop_reason=7)),
    "id missing": orjson.dumps(without("id")),
}


@pytest.mark.parametrize("data", list(POISONED.values()), ids=list(POISONED))
def test_decode_rejects_every_poisoned_shape(data: bytes) -> None:
    with pytest.raises(InvalidEntry):
        decode_message(data)


def test_decode_still_accepts_what_a_newer_sdk_wrote() -> None:
    data = orjson.dumps(
        good(
            content=[{"type": "hologram", "payload": [1]}, {"type": "text", "text": "ok"}],
            stop_reason="new_reason",
        )
    )
    msg = decode_message(data)
    assert msg.usage.input_tokens == 5
    assert msg.stop_reason == "new_reason"  # type: ignore[comparison-overlap]


def test_decode_accepts_counts_up_to_the_bound() -> None:
    msg = decode_message(orjson.dumps(usage(input_tokens=MAX_TOKEN_COUNT)))
    assert msg.usage.input_tokens == MAX_TOKEN_COUNT


# -- end to end: poisoned entries in every backend, create and streaming -------------------


def req(text: str) -> dict[str, Any]:
    return {
        "model": MODEL,
        "max_tokens": 1024,  # above the mock's answer lengths: complete, cacheable answers
        "messages": [{"role": "user", "content": text}],
    }


def key_of(text: str) -> str:
    return fingerprint(req(text), scope=scope_for_key(API_KEY))


@pytest.fixture
async def mock() -> AsyncIterator[MockServer]:
    async with MockServer() as server:
        yield server


async def ask(client: Thrift, text: str, streamed: bool) -> Message:
    if streamed:
        async with client.messages.stream(**req(text)) as stream:
            return await stream.get_final_message()
    message = await client.messages.create(**req(text))
    assert isinstance(message, Message)
    return message


async def check_every_shape(
    mock: MockServer,
    cache: Cache,
    poison: Any,
    streamed: bool,
    counted_by: list[Any],
) -> None:
    """Poison each shape under its own prompt's key; ask; expect the API's answer, stored."""
    async with Thrift(api_key=API_KEY, base_url=mock.base_url, cache=cache) as client:
        for i, (name, data) in enumerate(POISONED.items()):
            text = f"poisoned prompt {i} ({'stream' if streamed else 'create'})"
            key = key_of(text)
            await poison(key, data)
            sent = mock.counters.requests
            answer = await ask(client, text, streamed)
            assert mock.counters.requests == sent + 1, name  # answered by the API
            stored = await cache.get(key)
            assert stored is not None, name  # the bad entry was replaced by the answer
            assert decode_message(stored).model_dump() == answer.model_dump(), name
            for stats_of in counted_by:
                assert stats_of().invalid == i + 1, name
            again = await ask(client, text, streamed)  # now a plain hit
            assert mock.counters.requests == sent + 1, name
            assert again.content == answer.content
        s = client.stats()
        assert s.cache_errors >= len(POISONED)


@pytest.mark.parametrize("streamed", [False, True], ids=["create", "stream"])
async def test_poisoned_memory_entries(mock: MockServer, streamed: bool) -> None:
    cache = MemoryCache()

    async def poison(key: str, data: bytes) -> None:
        await cache.set(key, data)

    await check_every_shape(mock, cache, poison, streamed, [lambda: cache.stats])


@pytest.fixture
async def raw(redis_url: str) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.Redis.from_url(redis_url)
    yield client
    await client.aclose()


@pytest.mark.redis
@pytest.mark.parametrize("streamed", [False, True], ids=["create", "stream"])
async def test_poisoned_redis_entries(
    mock: MockServer,
    redis_url: str,
    redis_namespace: str,
    raw: aioredis.Redis,
    streamed: bool,
) -> None:
    cache = RedisCache(redis_url, namespace=redis_namespace, timeout=2.0)

    async def poison(key: str, data: bytes) -> None:
        # another process wrote it: the raw-value header and then the bad payload
        await raw.set(f"{redis_namespace}:{key}", b"\x00" + data)

    try:
        await check_every_shape(mock, cache, poison, streamed, [lambda: cache.stats])
    finally:
        await cache.aclose()


@pytest.mark.redis
@pytest.mark.parametrize("streamed", [False, True], ids=["create", "stream"])
async def test_poisoned_entries_in_memory_over_redis(
    mock: MockServer,
    redis_url: str,
    redis_namespace: str,
    raw: aioredis.Redis,
    streamed: bool,
) -> None:
    back = RedisCache(redis_url, namespace=redis_namespace, timeout=2.0)
    front = MemoryCache()
    tier = TieredCache(front, back)

    async def poison(key: str, data: bytes) -> None:
        await raw.set(f"{redis_namespace}:{key}", b"\x00" + data)

    try:
        await check_every_shape(mock, tier, poison, streamed, [lambda: tier.stats])
    finally:
        await tier.aclose()


@pytest.mark.redis
async def test_a_bad_value_copied_into_memory_does_not_outlive_redis(
    mock: MockServer, redis_url: str, redis_namespace: str, raw: aioredis.Redis
) -> None:
    """The issue's scenario: read through the tier, the bad value reached the front; now it
    is deleted from both tiers at once, and an unreadable header is deleted from Redis too."""
    back = RedisCache(redis_url, namespace=redis_namespace, timeout=2.0)
    front = MemoryCache()
    tier = TieredCache(front, back)
    text = "the poisoned prompt"
    key = key_of(text)
    name = f"{redis_namespace}:{key}"
    try:
        await raw.set(name, b'\x00{"type":"message"}')
        async with Thrift(api_key=API_KEY, base_url=mock.base_url, cache=tier) as client:
            first = await client.messages.create(**req(text))
            assert mock.counters.requests == 1
            assert tier.stats.invalid == 1 and front.stats.invalid == 1
            assert back.stats.invalid == 1
            good_value = await raw.get(name)
            assert good_value is not None and decode_message(good_value[1:]) == first
            assert front.get_nowait(key) == good_value[1:]

            # a value with an unknown header never reaches the client: deleted in Redis
            await raw.set(f"{redis_namespace}:other", b"\x07junk")
            assert await back.get("other") is None
            assert await raw.exists(f"{redis_namespace}:other") == 0
    finally:
        await tier.aclose()


async def test_a_cache_without_reject_still_recovers(mock: MockServer) -> None:
    """A user's own `Cache` (no ``reject``): the entry is a miss and is overwritten."""

    class Plain:
        def __init__(self) -> None:
            self.inner = MemoryCache()

        async def get(self, key: str) -> bytes | None:
            return await self.inner.get(key)

        async def set(self, key: str, value: bytes, ttl: float | None = None) -> None:
            await self.inner.set(key, value, ttl)

        async def aclose(self) -> None:
            await self.inner.aclose()

        @property
        def stats(self) -> Any:
            return self.inner.stats

    cache = Plain()
    key = key_of("plain")
    await cache.set(key, POISONED["input_tokens string 1e9"])
    async with Thrift(api_key=API_KEY, base_url=mock.base_url, cache=cache) as client:
        answer = await client.messages.create(**req("plain"))
        assert mock.counters.requests == 1
        stored = await cache.get(key)
        assert stored is not None and decode_message(stored) == answer
        assert client.stats().cache_errors >= 1  # read twice: once more before the call


def test_encoded_answers_are_never_rejected() -> None:
    msg = Message.model_validate(good())
    assert decode_message(encode_message(msg)) == msg
