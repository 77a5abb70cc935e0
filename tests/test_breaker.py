"""The Redis time bound (asyncthrift._breaker) in virtual time: which calls get the long
connect bound and which the short per-operation one.

A call costs `delay` seconds of loop time; a call bounded by 0.05 s that needs 0.2 s (a TLS
handshake on a busy box) fails, one bounded by 1 s does not.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import pytest

from asyncthrift._breaker import Breaker

pytestmark = pytest.mark.looptime

TIMEOUT, CONNECT = 0.05, 1.0


def breaker(threshold: int = 100) -> Breaker:
    return Breaker(
        timeout=TIMEOUT,
        connect_timeout=CONNECT,
        failure_threshold=threshold,
        cooldown=1.0,
        on_down=lambda exc: None,
        on_up=lambda: None,
    )


def op(delay: float) -> Callable[[], Awaitable[str]]:
    async def run() -> str:
        await asyncio.sleep(delay)
        return "ok"

    return run


async def test_cold_calls_all_get_the_connect_bound() -> None:
    b = breaker()
    results = await asyncio.gather(*(b.call(op(0.2)) for _ in range(3)))
    assert [ok for ok, _ in results] == [True] * 3
    assert b.errors == 0


async def test_once_connected_a_call_gets_the_short_bound() -> None:
    b = breaker()
    assert (await b.call(op(0.2)))[0]
    assert not (await b.call(op(0.2)))[0]  # connected: 0.05 s, not 1 s
    assert b.timeouts == 1


async def test_once_connected_no_call_gets_the_connect_bound_even_in_a_crowd() -> None:
    # a frozen server must cost every call the per-operation bound and no more (issue 14),
    # also when more calls are in flight than ever before (each may need a new connection)
    b = breaker()
    assert (await b.call(op(0.01)))[0]
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    results = await asyncio.gather(*(b.call(op(10)) for _ in range(5)))
    assert [ok for ok, _ in results] == [False] * 5
    assert loop.time() - t0 == pytest.approx(TIMEOUT)
    assert isinstance(b.last_error, TimeoutError)


async def test_failures_do_not_widen_the_bound() -> None:
    b = breaker()
    assert (await b.call(op(0.01)))[0]
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    for _ in range(5):
        assert not (await b.call(op(10)))[0]  # a frozen server
    assert loop.time() - t0 == pytest.approx(5 * TIMEOUT)
