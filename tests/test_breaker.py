"""The Redis time bound (asyncthrift._breaker) in virtual time: which calls get the long
connect bound and which the short per-operation one.

A call costs `delay` seconds of loop time; a call bounded by 0.05 s that needs 0.2 s (a new
TLS connection on a busy box) fails, one bounded by 1 s does not.
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
    assert not (await b.call(op(0.2)))[0]  # one at a time: warm
    assert b.timeouts == 1


async def test_a_call_beyond_the_warm_concurrency_gets_the_connect_bound_one_at_a_time() -> None:
    b = breaker()
    assert (await b.call(op(0.01)))[0]  # one connection, warm
    # three at once: the first fits the warm connection and must be quick; the second needs
    # a new connection and gets the long bound; the third, while the second is still
    # connecting, gets the short one (a frozen server stalls one call that long, not all)
    results = await asyncio.gather(b.call(op(0.01)), b.call(op(0.2)), b.call(op(0.2)))
    assert [ok for ok, _ in results] == [True, True, False]
    assert b.timeouts == 1
    # two calls together have succeeded, so two at once are both on the short bound now
    pair = await asyncio.gather(b.call(op(0.2)), b.call(op(0.2)))
    assert [ok for ok, _ in pair] == [False, False]


async def test_failures_do_not_widen_the_bound() -> None:
    b = breaker()
    assert (await b.call(op(0.01)))[0]
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    for _ in range(5):
        assert not (await b.call(op(10)))[0]  # a frozen server
    assert loop.time() - t0 == pytest.approx(5 * TIMEOUT)
