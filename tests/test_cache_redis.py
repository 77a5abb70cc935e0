"""RedisCache against a real redis-server on loopback (started by the fixtures).

Covers: round trip, compression format, TTL expiry, namespace isolation, pipelined batches,
a second process reading what this one wrote (and the reverse), Redis killed mid-run
(requests go on, errors counted, logged once), a slow Redis (bounded timeout), the circuit
breaker and recovery, and the tiered memory+Redis cache.
"""

from __future__ import annotations

import asyncio
import logging
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import redis.asyncio as aioredis
from anthropic.types import Message

from asyncthrift.stores.cache import (
    MemoryCache,
    RedisCache,
    TieredCache,
    decode_message,
    encode_message,
    fingerprint,
    make_cache,
    scope_for_key,
)
from tests.redis_server import RedisServer

pytestmark = pytest.mark.redis

ROOT = Path(__file__).resolve().parent.parent


def message(text: str = "Thirty days.") -> Message:
    return Message.model_validate(
        {
            "id": "msg_01",
            "type": "message",
            "role": "assistant",
            "model": "claude-sonnet-4-5",
            "content": [{"type": "text", "text": text}],
            "stop_reason": "end_turn",
            "stop_sequence": None,
            "usage": {"input_tokens": 12, "output_tokens": 4},
        }
    )


@pytest.fixture
async def raw(redis_url: str) -> AsyncIterator[aioredis.Redis]:
    """A plain redis-py client for looking at what the cache wrote."""
    client = aioredis.Redis.from_url(redis_url)
    yield client
    await client.aclose()


@pytest.fixture
async def cache(redis_url: str, redis_namespace: str) -> AsyncIterator[RedisCache]:
    c = RedisCache(redis_url, namespace=redis_namespace, timeout=0.5)
    yield c
    await c.aclose()


async def test_round_trip(cache: RedisCache) -> None:
    assert await cache.get("k") is None
    await cache.set("k", b"value")
    assert await cache.get("k") == b"value"
    s = cache.stats
    assert (s.hits, s.misses, s.sets, s.errors) == (1, 1, 1, 0)


async def test_message_round_trip_equals_original(cache: RedisCache) -> None:
    msg = message("退款政策 " * 2000)  # large: stored compressed
    key = fingerprint(
        {"model": "m", "max_tokens": 9, "messages": [{"role": "user", "content": "q"}]}
    )
    await cache.set(key, encode_message(msg))
    got = await cache.get(key)
    assert got is not None
    assert decode_message(got) == msg


async def test_value_format_and_compression(
    cache: RedisCache, raw: aioredis.Redis, redis_namespace: str
) -> None:
    small, big = b"x" * 100, b"abc" * 10_000
    await cache.set("small", small)
    await cache.set("big", big)
    stored_small = await raw.get(f"{redis_namespace}:small")
    stored_big = await raw.get(f"{redis_namespace}:big")
    assert stored_small == b"\x00" + small
    assert stored_big is not None and stored_big[:1] == b"\x01" and len(stored_big) < len(big) // 10
    assert await cache.get("big") == big
    # incompressible data above the threshold is stored raw, not inflated
    noise = os.urandom(10_000)
    await cache.set("noise", noise)
    assert (await raw.get(f"{redis_namespace}:noise") or b"")[:1] == b"\x00"
    assert await cache.get("noise") == noise


async def test_ttl_per_entry_and_expiry(
    redis_url: str, redis_namespace: str, raw: aioredis.Redis
) -> None:
    c = RedisCache(redis_url, namespace=redis_namespace, ttl=60, timeout=0.5)
    try:
        await c.set("default", b"1")
        await c.set("short", b"2", ttl=0.4)
        await c.set("zero", b"3", ttl=0)  # not stored at all
        assert 59_000 < await raw.pttl(f"{redis_namespace}:default") <= 60_000
        assert 0 < await raw.pttl(f"{redis_namespace}:short") <= 400
        assert await c.get("zero") is None
        assert await c.get("short") == b"2"
        await asyncio.sleep(0.6)
        assert await c.get("short") is None
        assert await c.get("default") == b"1"
    finally:
        await c.aclose()


async def test_no_ttl_means_no_expiry(
    redis_url: str, redis_namespace: str, raw: aioredis.Redis
) -> None:
    c = RedisCache(redis_url, namespace=redis_namespace, ttl=None, timeout=0.5)
    try:
        await c.set("k", b"v")
        assert await raw.pttl(f"{redis_namespace}:k") == -1
    finally:
        await c.aclose()


async def test_namespace_isolation(
    redis_url: str, redis_namespace: str, raw: aioredis.Redis
) -> None:
    a = RedisCache(redis_url, namespace=redis_namespace + "-a", timeout=0.5)
    b = RedisCache(redis_url, namespace=redis_namespace + "-b", timeout=0.5)
    try:
        await a.set("same-key", b"from a")
        assert await b.get("same-key") is None
        await b.set("same-key", b"from b")
        assert await a.get("same-key") == b"from a"
        assert await b.get("same-key") == b"from b"
        names = sorted([k async for k in raw.scan_iter(match=f"{redis_namespace}-*")])
        assert names == [
            f"{redis_namespace}-a:same-key".encode(),
            f"{redis_namespace}-b:same-key".encode(),
        ]
    finally:
        await a.aclose()
        await b.aclose()


async def test_tenants_scoped_by_api_key_never_share(
    cache: RedisCache, raw: aioredis.Redis
) -> None:
    params = {"model": "m", "max_tokens": 9, "messages": [{"role": "user", "content": "q"}]}
    k1 = fingerprint(params, scope=scope_for_key("sk-tenant-one"))
    k2 = fingerprint(params, scope=scope_for_key("sk-tenant-two"))
    await cache.set(k1, b"one's answer")
    assert await cache.get(k2) is None
    keys = [k async for k in raw.scan_iter(match=f"{cache.namespace}:*")]
    assert keys and all(b"sk-tenant" not in k for k in keys)


async def test_pipelined_batches(cache: RedisCache) -> None:
    items = {f"k{i}": f"v{i}".encode() * (1 + i * 500) for i in range(20)}
    await cache.set_many(items, ttl=30)
    got = await cache.get_many([*items, "missing"])
    assert got == [*items.values(), None]
    assert cache.stats.sets == 20
    assert await cache.get_many([]) == []


async def test_borrowed_client_is_not_closed(redis_url: str, redis_namespace: str) -> None:
    client = aioredis.Redis.from_url(redis_url)
    c = RedisCache(client, namespace=redis_namespace)
    await c.set("k", b"v")
    await c.aclose()
    assert await client.get(f"{redis_namespace}:k") == b"\x00v"  # still usable
    await client.aclose()


async def test_decode_responses_client_is_refused(redis_url: str) -> None:
    client = aioredis.Redis.from_url(redis_url, decode_responses=True)
    try:
        with pytest.raises(ValueError, match="decode_responses=False"):
            RedisCache(client)
    finally:
        await client.aclose()


async def test_unreadable_entry_is_a_counted_miss(
    cache: RedisCache, raw: aioredis.Redis, redis_namespace: str
) -> None:
    await raw.set(f"{redis_namespace}:bad", b"\x07junk")
    await raw.set(f"{redis_namespace}:badz", b"\x01not zlib")
    assert await cache.get("bad") is None
    assert await cache.get("badz") is None
    assert cache.stats.errors == 2 and cache.stats.misses == 2


CHILD_READ = """
import asyncio, sys
from asyncthrift.stores.cache import RedisCache, decode_message

async def main():
    c = RedisCache(sys.argv[1], namespace=sys.argv[2], timeout=2.0)
    data = await c.get(sys.argv[3])
    await c.aclose()
    print("MISS" if data is None else decode_message(data).model_dump_json())

asyncio.run(main())
"""

CHILD_WRITE = """
import asyncio, sys
from anthropic.types import Message
from asyncthrift.stores.cache import RedisCache, encode_message

async def main():
    c = RedisCache(sys.argv[1], namespace=sys.argv[2], timeout=2.0)
    msg = Message.model_validate_json(sys.stdin.read())
    await c.set(sys.argv[3], encode_message(msg))
    await c.aclose()
    print("OK" if c.stats.sets == 1 else "FAILED")

asyncio.run(main())
"""


def run_child(code: str, *args: str, stdin: str = "") -> str:
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
    }
    done = subprocess.run(
        [sys.executable, "-c", code, *args],
        input=stdin,
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


async def test_value_written_here_is_read_by_another_process(
    cache: RedisCache, redis_url: str, redis_namespace: str
) -> None:
    msg = message("shared across processes " * 300)
    key = fingerprint(
        {"model": "m", "max_tokens": 9, "messages": [{"role": "user", "content": "x"}]}
    )
    await cache.set(key, encode_message(msg))
    out = await asyncio.to_thread(run_child, CHILD_READ, redis_url, redis_namespace, key)
    assert Message.model_validate_json(out) == msg


async def test_value_written_by_another_process_is_read_here(
    cache: RedisCache, redis_url: str, redis_namespace: str
) -> None:
    msg = message("from the child")
    out = await asyncio.to_thread(
        run_child, CHILD_WRITE, redis_url, redis_namespace, "child-key", stdin=msg.model_dump_json()
    )
    assert out == "OK"
    data = await cache.get("child-key")
    assert data is not None and decode_message(data) == msg


async def test_redis_killed_mid_run(
    own_redis_server: RedisServer, redis_namespace: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Kill the server while a get/set loop runs: every op still returns (a miss or a no-op)
    quickly, errors are counted, the outage is logged once, and later ops are skipped."""
    caplog.set_level(logging.WARNING, logger="asyncthrift.cache")
    c = RedisCache(own_redis_server.url, namespace=redis_namespace, timeout=0.1, cooldown=30)
    try:
        results: list[bytes | None] = []
        slowest = 0.0
        for i in range(200):
            if i == 50:
                own_redis_server.kill()
            t0 = time.perf_counter()
            await c.set(f"k{i}", b"v")
            results.append(await c.get(f"k{i}"))
            slowest = max(slowest, time.perf_counter() - t0)
        assert results[:50] == [b"v"] * 50
        assert results[50:] == [None] * 150
        s = c.stats
        assert s.errors >= 1
        assert s.errors <= c.failure_threshold  # then the circuit opened: no more attempts
        assert s.skipped >= 290
        assert slowest < 0.5  # each op bounded by the timeout
        warnings = [r for r in caplog.records if r.name == "asyncthrift.cache"]
        assert len(warnings) == 1, [r.getMessage() for r in warnings]
        assert "unavailable" in warnings[0].getMessage()
    finally:
        await c.aclose()


async def test_dead_redis_costs_nothing_and_recovers(
    own_redis_server: RedisServer, redis_namespace: str
) -> None:
    now = [0.0]
    c = RedisCache(
        own_redis_server.url,
        namespace=redis_namespace,
        timeout=0.2,
        cooldown=5,
        failure_threshold=2,
        clock=lambda: now[0],
    )
    try:
        await c.set("k", b"v")
        own_redis_server.kill()
        assert await c.get("k") is None
        assert await c.get("k") is None
        assert c.stats.errors == 2  # threshold reached: circuit open
        t0 = time.perf_counter()
        for _ in range(1000):
            assert await c.get("k") is None
        assert time.perf_counter() - t0 < 0.1  # no network, no waiting
        assert c.stats.skipped == 1000 and c.stats.errors == 2
        own_redis_server.start(same_port=True)
        assert await c.get("k") is None  # still inside the cooldown: skipped
        now[0] += 6
        await c.set("k", b"again")  # the probe succeeds and closes the circuit
        assert await c.get("k") == b"again"
        assert c.stats.errors == 2
    finally:
        await c.aclose()


async def test_slow_redis_is_bounded_by_the_timeout(
    redis_url: str, redis_namespace: str, raw: aioredis.Redis
) -> None:
    c = RedisCache(redis_url, namespace=redis_namespace, timeout=0.05, failure_threshold=100)
    try:
        await c.set("k", b"v")  # connected
        await raw.execute_command("CLIENT", "PAUSE", "400", "ALL")  # type: ignore[no-untyped-call]
        t0 = time.perf_counter()
        assert await c.get("k") is None
        elapsed = time.perf_counter() - t0
        assert elapsed < 0.3
        assert c.stats.timeouts == 1 and c.stats.errors == 1
        await asyncio.sleep(0.5)  # the pause ends
        assert await c.get("k") == b"v"
    finally:
        await c.aclose()


async def test_unreachable_from_the_start(redis_namespace: str) -> None:
    """A URL nobody listens on: requests still go on, fast, without redis-server at all."""
    c = RedisCache("redis://127.0.0.1:1/0", namespace=redis_namespace, connect_timeout=0.5)
    try:
        for _ in range(10):
            assert await c.get("k") is None
            await c.set("k", b"v")
        assert c.stats.errors == c.failure_threshold
        assert c.stats.skipped == 20 - c.failure_threshold
    finally:
        await c.aclose()


@pytest.mark.parametrize("steps", [0, 1, 2, 3])
async def test_cancelled_operation_propagates_and_leaves_cache_usable(
    cache: RedisCache, steps: int
) -> None:
    await cache.set("k", b"v")
    task = asyncio.create_task(cache.get("k"))
    for _ in range(steps):
        await asyncio.sleep(0)
    task.cancel()
    try:
        result = await task
    except asyncio.CancelledError:
        result = None
    else:  # the reply was already in: a cancellation that arrives too late is not lost
        assert result == b"v"
    if steps <= 1:  # the reply cannot be in yet: the cancellation must win
        assert task.cancelled()
    assert cache.stats.errors == 0
    assert await cache.get("k") == b"v"


async def test_tiered_memory_over_redis(redis_url: str, redis_namespace: str) -> None:
    tier = make_cache(f"memory+{redis_url}", namespace=redis_namespace, max_entries=100)
    assert isinstance(tier, TieredCache)
    other = RedisCache(redis_url, namespace=redis_namespace)  # another process's view
    try:
        await tier.set("k", b"v")
        assert await other.get("k") == b"v"  # written through to Redis
        await other.set("from-other", b"o")
        assert await tier.get("from-other") == b"o"  # back hit
        assert isinstance(tier.front, MemoryCache)
        assert await tier.front.get("from-other") == b"o"  # filled the front
        assert tier.stats.hits == 1
    finally:
        await tier.aclose()
        await other.aclose()


async def test_tiered_survives_redis_outage(
    own_redis_server: RedisServer, redis_namespace: str
) -> None:
    tier = TieredCache(MemoryCache(), RedisCache(own_redis_server.url, namespace=redis_namespace))
    try:
        await tier.set("k", b"v")
        own_redis_server.kill()
        assert await tier.get("k") == b"v"  # the front still answers
        assert await tier.get("other") is None
        await tier.set("new", b"n")
        assert await tier.get("new") == b"n"
        assert tier.stats.errors >= 1
    finally:
        await tier.aclose()


def test_fixture_fails_in_ci_without_redis(monkeypatch: pytest.MonkeyPatch) -> None:
    from tests import conftest_redis

    monkeypatch.setattr(conftest_redis, "find_redis_server", lambda: None)
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="apt-get install redis-server"):
        conftest_redis.require_redis_server()
    for off in ("", "0", "false"):
        monkeypatch.setenv("CI", off)
        with pytest.raises(pytest.skip.Exception, match="apt-get install redis-server"):
            conftest_redis.require_redis_server()
