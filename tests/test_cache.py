"""Answer caches without a server: codec, cacheability, MemoryCache, TieredCache, make_cache."""

from __future__ import annotations

import asyncio
import zlib
from typing import Any

import orjson
import pytest
from anthropic._models import construct_type
from anthropic.types import Message

from asyncthrift.stores.cache import (
    Cache,
    CacheStats,
    MemoryCache,
    RedisCache,
    TieredCache,
    decode_message,
    encode_message,
    fingerprint,
    is_cacheable,
    make_cache,
)


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def wire_message(**over: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": "msg_01XFDUDYJgAACzvnptvVoYEL",
        "type": "message",
        "role": "assistant",
        "model": "claude-sonnet-4-5",
        "content": [{"type": "text", "text": "Thirty days, receipt required."}],
        "stop_reason": "end_turn",
        "stop_sequence": None,
        "usage": {
            "input_tokens": 25,
            "output_tokens": 9,
            "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": 0,
        },
    }
    body.update(over)
    return body


def sdk_message(**over: Any) -> Message:
    """A Message built the way the SDK builds a response (lenient construct from JSON)."""
    msg = construct_type(type_=Message, value=wire_message(**over))
    assert isinstance(msg, Message)
    return msg


# -- codec ------------------------------------------------------------------------------------

MESSAGES = {
    "text": {},
    "tool_use": {
        "content": [
            {"type": "text", "text": "Looking it up."},
            {"type": "tool_use", "id": "toolu_1", "name": "lookup", "input": {"q": "refund"}},
        ],
        "stop_reason": "tool_use",
    },
    "thinking": {
        "content": [
            {"type": "thinking", "thinking": "Consider policy.", "signature": "sig=="},
            {"type": "text", "text": "30 days."},
        ]
    },
    "stop_sequence": {"stop_reason": "stop_sequence", "stop_sequence": "END"},
    "unknown server field": {"brand_new_field": {"x": [1, 2]}},
    # a datetime, written as a string: strict validation from Python objects refuses it,
    # so this entry takes decode_message's JSON fallback
    "container": {"container": {"id": "container_1", "expires_at": "2026-12-07T12:00:00Z"}},
    "unicode": {"content": [{"type": "text", "text": "退款政策：三十天 ✓ \u2028 emoji 🎉"}]},
}


@pytest.mark.parametrize("over", list(MESSAGES.values()), ids=list(MESSAGES))
def test_encode_decode_round_trip_equals_original(over: dict[str, Any]) -> None:
    msg = sdk_message(**over)
    data = encode_message(msg)
    assert isinstance(data, bytes)
    back = decode_message(data)
    assert isinstance(back, Message)
    assert back == msg
    assert back.model_dump() == msg.model_dump()
    assert back is not msg


def test_round_trip_of_a_validated_message() -> None:
    msg = Message.model_validate(wire_message())
    assert decode_message(encode_message(msg)) == msg


def test_decode_tolerates_content_a_newer_sdk_would_know() -> None:
    data = orjson.dumps(
        wire_message(content=[{"type": "hologram", "payload": 1}], stop_reason="new_reason")
    )
    msg = decode_message(data)
    assert msg.stop_reason == "new_reason"  # type: ignore[comparison-overlap]


def test_a_newer_sdks_entry_with_a_container_decodes() -> None:
    """Both fallbacks in turn: a datetime string (JSON validation) and an unknown block."""
    data = orjson.dumps(
        wire_message(
            content=[{"type": "hologram", "payload": 1}],
            container={"id": "container_1", "expires_at": "2026-12-07T12:00:00Z"},
        )
    )
    msg = decode_message(data)
    assert msg.container is not None and msg.container.expires_at.year == 2026


def test_the_request_id_survives_the_round_trip() -> None:
    msg = sdk_message()
    msg._request_id = "req_original"
    back = decode_message(encode_message(msg))
    assert back._request_id == "req_original"
    assert back == msg and back.model_dump() == msg.model_dump()  # not a field or an extra
    assert "_request_id" not in back.model_dump(exclude_unset=True)
    newer = orjson.loads(encode_message(msg))
    newer["content"] = [{"type": "hologram", "payload": 1}]
    assert decode_message(orjson.dumps(newer))._request_id == "req_original"


def test_an_entry_without_a_request_id_decodes_with_none() -> None:
    """Entries written before the request id was stored still decode."""
    assert decode_message(orjson.dumps(wire_message()))._request_id is None


def test_decode_rejects_a_request_id_that_is_not_a_string() -> None:
    with pytest.raises(ValueError):
        decode_message(orjson.dumps({**wire_message(), "_request_id": 5}))


@pytest.mark.parametrize("data", [b"", b"not json", b"[1,2]", b'{"type":"error"}', b"\xff"])
def test_decode_rejects_what_is_not_a_message(data: bytes) -> None:
    with pytest.raises(ValueError):
        decode_message(data)


@pytest.mark.parametrize(
    ("reason", "allow", "expected"),
    [
        ("end_turn", False, True),
        ("stop_sequence", False, True),
        ("tool_use", False, True),
        ("max_tokens", False, False),
        ("max_tokens", True, True),
        ("model_context_window_exceeded", False, False),
        ("model_context_window_exceeded", True, True),
        ("pause_turn", True, False),
        ("refusal", True, False),
        (None, True, False),
    ],
)
def test_is_cacheable(reason: str | None, allow: bool, expected: bool) -> None:
    assert is_cacheable(sdk_message(stop_reason=reason), allow) is expected


# -- MemoryCache ------------------------------------------------------------------------------


async def test_memory_round_trip_and_stats() -> None:
    c = MemoryCache()
    assert isinstance(c, Cache)
    assert await c.get("a") is None
    await c.set("a", b"1")
    assert await c.get("a") == b"1"
    s = c.stats
    assert (s.hits, s.misses, s.sets, s.entries) == (1, 1, 1, 1)
    assert s.bytes > 0


async def test_memory_lru_by_entries() -> None:
    c = MemoryCache(max_entries=3)
    for k in "abc":
        await c.set(k, k.encode())
    assert await c.get("a") == b"a"  # a is now most recent
    await c.set("d", b"d")  # evicts b, the least recently used
    assert await c.get("b") is None
    assert [await c.get(k) for k in "acd"] == [b"a", b"c", b"d"]
    assert c.stats.evictions == 1 and len(c) == 3


async def test_memory_bounded_by_bytes() -> None:
    c = MemoryCache(max_bytes=1000)
    for i in range(10):
        await c.set(f"k{i}", bytes(200))
    assert c.stats.bytes <= 1000
    assert len(c) < 10 and c.stats.evictions == 10 - len(c)
    assert await c.get("k9") is not None  # newest kept
    await c.set("huge", bytes(5000))  # larger than the whole cache: not stored
    assert await c.get("huge") is None
    assert await c.get("k9") is not None  # and nothing was evicted for it


async def test_memory_overwrite_keeps_byte_count_exact() -> None:
    c = MemoryCache()
    await c.set("a", bytes(100))
    one = c.stats.bytes
    await c.set("a", bytes(100))
    assert c.stats.bytes == one
    await c.set("a", bytes(10))
    assert c.stats.bytes == one - 90


async def test_memory_ttl_with_injected_clock() -> None:
    clock = FakeClock()
    c = MemoryCache(ttl=10, clock=clock)
    await c.set("a", b"1")
    await c.set("short", b"2", ttl=1)
    await c.set("forever", b"3", ttl=None)  # None: the cache default (10 s)
    clock.now += 1.5
    assert await c.get("short") is None
    assert await c.get("a") == b"1"
    clock.now += 9
    assert await c.get("a") is None
    assert c.stats.expirations == 2
    assert len(c) == 1  # expired entries are dropped when seen


async def test_memory_without_ttl_and_zero_ttl() -> None:
    clock = FakeClock()
    c = MemoryCache(ttl=None, clock=clock)
    await c.set("a", b"1")
    clock.now += 1e9
    assert await c.get("a") == b"1"
    await c.set("b", b"2", ttl=0)  # a zero TTL is expired at once
    assert await c.get("b") is None


async def test_memory_batches_delete_clear() -> None:
    c = MemoryCache()
    await c.set_many({"a": b"1", "b": b"2"})
    assert await c.get_many(["a", "x", "b"]) == [b"1", None, b"2"]
    assert c.delete("a") and not c.delete("a")
    c.clear()
    assert len(c) == 0 and c.stats.bytes == 0
    await c.aclose()


def test_memory_rejects_bad_bounds() -> None:
    with pytest.raises(ValueError):
        MemoryCache(max_entries=0)
    with pytest.raises(ValueError):
        MemoryCache(max_bytes=0)
    with pytest.raises(ValueError):
        MemoryCache(ttl=-1)


async def test_memory_get_never_yields() -> None:
    """A memory hit completes within the caller's step: no other task runs in between."""
    c = MemoryCache()
    await c.set("a", b"1")
    ran = False

    async def other() -> None:
        nonlocal ran
        ran = True

    t = asyncio.create_task(other())
    assert await c.get("a") == b"1"
    assert not ran
    await t


async def test_faq_workload_hits_after_first_answer() -> None:
    """500 lookups over 100 questions: 100 misses (then stored), 400 hits."""
    c = MemoryCache()
    upstream = 0
    for i in range(500):
        q = i % 100
        key = fingerprint(
            {"model": "m", "max_tokens": 100, "messages": [{"role": "user", "content": f"Q{q}?"}]}
        )
        if await c.get(key) is None:
            upstream += 1
            await c.set(key, encode_message(sdk_message()))
    assert upstream == 100
    assert (c.stats.hits, c.stats.misses) == (400, 100)


# -- TieredCache ------------------------------------------------------------------------------


async def test_tiered_front_back_and_fill() -> None:
    front, back = MemoryCache(), MemoryCache()
    t = TieredCache(front, back)
    assert isinstance(t, Cache)
    await back.set("only-back", b"b")
    assert await t.get("only-back") == b"b"
    assert await front.get("only-back") == b"b"  # filled
    await t.set("both", b"x")
    assert await front.get("both") == b"x" and await back.get("both") == b"x"
    assert await t.get("missing") is None
    s = t.stats
    assert (s.hits, s.misses, s.sets) == (1, 1, 1)
    await t.aclose()


async def test_tiered_front_ttl_caps_local_lifetime() -> None:
    clock = FakeClock()
    front = MemoryCache(ttl=3600, clock=clock)
    back = MemoryCache(ttl=3600, clock=clock)
    t = TieredCache(front, back, front_ttl=5)
    await t.set("a", b"1")
    clock.now += 6
    assert await front.get("a") is None
    assert await t.get("a") == b"1"  # still in the back, refilled in the front


async def test_tiered_counts_back_errors() -> None:
    class Broken:
        async def get(self, key: str) -> bytes | None:
            self.errors += 1
            return None

        async def set(self, key: str, value: bytes, ttl: float | None = None) -> None:
            self.errors += 1

        async def aclose(self) -> None:
            pass

        errors = 0

        @property
        def stats(self) -> CacheStats:
            return CacheStats(errors=self.errors)

    t = TieredCache(MemoryCache(), Broken())
    await t.set("a", b"1")
    assert await t.get("a") == b"1"
    assert await t.get("b") is None
    assert t.stats.errors == 2


# -- make_cache -------------------------------------------------------------------------------


async def test_make_cache_accepts_the_documented_specs() -> None:
    assert make_cache(None) is None
    mem = make_cache("memory", max_entries=5, ttl=60)
    assert isinstance(mem, MemoryCache) and mem.max_entries == 5 and mem.ttl == 60
    red = make_cache("redis://127.0.0.1:1/0", namespace="ns", timeout=0.01)
    assert isinstance(red, RedisCache) and red.namespace == "ns"
    tls = make_cache("rediss://127.0.0.1:1/0")
    assert isinstance(tls, RedisCache)
    tier = make_cache("memory+redis://127.0.0.1:1/0", max_entries=7, namespace="x", ttl=30)
    assert isinstance(tier, TieredCache)
    assert isinstance(tier.front, MemoryCache) and tier.front.max_entries == 7
    assert tier.front.ttl == 30
    assert isinstance(tier.back, RedisCache) and tier.back.namespace == "x"
    assert tier.back.ttl == 30
    own = MemoryCache()
    assert make_cache(own) is own
    for c in (red, tls, tier):
        assert c is not None
        await c.aclose()


@pytest.mark.parametrize(
    "spec", ["", "mem", "redis:/x", "memcached://h", "memory+memory", 42, True]
)
def test_make_cache_rejects_anything_else_clearly(spec: Any) -> None:
    with pytest.raises(ValueError, match="accepts None, 'memory'") as info:
        make_cache(spec)
    if spec is True:
        assert "use 'memory'" in str(info.value)


def test_make_cache_options_only_for_strings() -> None:
    with pytest.raises(TypeError):
        make_cache(MemoryCache(), ttl=3)


def test_compression_helpers_are_zlib() -> None:
    # the Redis value format is documented as a 1-byte header + zlib stream
    assert zlib.decompress(zlib.compress(b"x" * 100, 1)) == b"x" * 100
