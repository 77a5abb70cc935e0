"""A frozen Redis (SIGSTOP) costs each cache operation the per-operation bound, no more.

Issue #14: after the first timeout, later operations waited for the connect timeout (1 s)
instead of the 50 ms per-operation bound, so a request stalled for about 2 s. Timings are
measured with the loop clock against the bound under test, with generous slack, and always
far below the connect timeout the bug used to cost.
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Iterator

import pytest

from asyncthrift import Thrift
from asyncthrift.mock import MockServer
from asyncthrift.stores.cache import RedisCache
from tests.redis_server import RedisServer

pytestmark = pytest.mark.redis

TIMEOUT = 0.05
CONNECT_TIMEOUT = 3.0  # what the bug cost per operation; the bound below is far under it
SLACK = 0.5


@pytest.fixture
def frozen(own_redis_server: RedisServer) -> Iterator[RedisServer]:
    """The server, to be SIGSTOPped by the test; always SIGCONTed afterwards."""
    try:
        yield own_redis_server
    finally:
        proc = own_redis_server.proc
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGCONT)


def freeze(server: RedisServer) -> None:
    assert server.proc is not None
    server.proc.send_signal(signal.SIGSTOP)


async def timed(coro: object) -> float:
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    await coro  # type: ignore[misc]
    return loop.time() - t0


async def test_each_operation_on_a_frozen_redis_costs_the_operation_bound(
    frozen: RedisServer, redis_namespace: str
) -> None:
    c = RedisCache(
        frozen.url,
        namespace=redis_namespace,
        timeout=TIMEOUT,
        connect_timeout=CONNECT_TIMEOUT,
        failure_threshold=10,  # keep the circuit closed: every operation really tries
    )
    try:
        await c.set("k", b"v")
        assert await c.get("k") == b"v"  # connected
        freeze(frozen)
        costs = []
        for i in range(6):
            costs.append(await timed(c.get("k")))
            costs.append(await timed(c.set(f"k{i}", b"v")))
        assert all(cost < TIMEOUT + SLACK for cost in costs), costs
        assert c.stats.timeouts == c.stats.errors == 10  # then the circuit opened
        assert c.stats.skipped == 2
    finally:
        frozen.proc.send_signal(signal.SIGCONT)  # type: ignore[union-attr]
        await c.aclose()


async def test_recovers_after_sigcont(frozen: RedisServer, redis_namespace: str) -> None:
    now = [0.0]
    c = RedisCache(
        frozen.url,
        namespace=redis_namespace,
        timeout=0.5,
        connect_timeout=CONNECT_TIMEOUT,
        failure_threshold=2,
        cooldown=5,
        clock=lambda: now[0],
    )
    try:
        await c.set("k", b"v")
        freeze(frozen)
        assert await c.get("k") is None
        assert await c.get("k") is None
        assert c.stats.errors == 2  # circuit open
        frozen.proc.send_signal(signal.SIGCONT)  # type: ignore[union-attr]
        now[0] += 6
        assert await c.get("k") == b"v"  # the probe reconnects within the operation bound
    finally:
        await c.aclose()


async def test_requests_go_to_the_api_quickly_while_redis_is_frozen(
    frozen: RedisServer, redis_namespace: str
) -> None:
    cache = RedisCache(
        frozen.url, namespace=redis_namespace, timeout=TIMEOUT, connect_timeout=CONNECT_TIMEOUT
    )
    ask = {"model": "claude-sonnet-4-6", "max_tokens": 64}
    async with (
        MockServer() as mock,
        Thrift(api_key="k", base_url=mock.base_url, cache=cache) as client,
    ):
        await client.messages.create(**ask, messages=[{"role": "user", "content": "warm"}])
        freeze(frozen)
        for i in range(3):
            cost = await timed(
                client.messages.create(**ask, messages=[{"role": "user", "content": f"q {i}"}])
            )
            # get, get again before sending, set: three operations at most, each bounded
            assert cost < 3 * TIMEOUT + SLACK, cost
        assert mock.counters.requests == 4
    await cache.aclose()
