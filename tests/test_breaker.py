"""The Redis time bound (asyncthrift._breaker): in virtual time, which calls get the long
connect bound and which the short per-operation one; in real time, a busy loop.

A call costs `delay` seconds of loop time; a call bounded by 0.05 s that needs 0.2 s (a TLS
handshake on a busy box) fails, one bounded by 1 s does not.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

import pytest

from asyncthrift.core._breaker import Breaker

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


# -- a busy loop, in real time (virtual time cannot block a loop) ------------------------------
# The bound is for Redis, so a deadline that fires late because other tasks held the loop
# grants one more bound. Nothing here asserts a duration: a blocking `time.sleep` stands for
# a GC pause or 120 requests being created at once, and the loop's own ordering decides.


async def hog(seconds: float) -> None:
    """Hold the loop without yielding, after letting the call go out."""
    await asyncio.sleep(0)
    time.sleep(seconds)  # noqa: ASYNC251 - blocking the loop is the point


@pytest.mark.looptime(False)
@pytest.mark.parametrize("held", [1.2 * TIMEOUT, 3 * TIMEOUT])
async def test_a_call_answered_in_time_survives_a_busy_loop(held: float) -> None:
    b = breaker()
    assert (await b.call(op(0.001)))[0]  # connected: the short bound from now on
    # the answer comes after 10 ms, but the loop is held past the deadline (a GC pause,
    # a burst of new requests): the deadline and the answer are due in the same loop turn,
    # and the answer must win, whether the deadline was a little late or very late
    (ok, result), _ = await asyncio.gather(b.call(op(0.01)), hog(held))
    assert ok and result == "ok"
    assert b.errors == 0


@pytest.mark.looptime(False)
async def test_a_frozen_server_still_fails_the_call_behind_a_busy_loop() -> None:
    b = breaker()
    assert (await b.call(op(0.001)))[0]
    (ok, _), _ = await asyncio.gather(b.call(op(10.0)), hog(3 * TIMEOUT))
    assert not ok  # one more bound after the late deadline, then the timeout
    assert b.timeouts == 1
