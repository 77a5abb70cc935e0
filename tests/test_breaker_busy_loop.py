"""The Redis time bound against a busy event loop, in real time (virtual time cannot block a
loop): the bound is for Redis, so a deadline that fires late because other tasks held the
loop grants one more bound. Nothing here asserts a duration; a blocking `time.sleep` stands
for 120 requests being created at once, and the loop's own ordering decides the outcome."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

import pytest

from asyncthrift._breaker import Breaker

TIMEOUT = 0.05


def breaker() -> Breaker:
    return Breaker(
        timeout=TIMEOUT,
        connect_timeout=1.0,
        failure_threshold=100,
        cooldown=1.0,
        on_down=lambda exc: None,
        on_up=lambda: None,
    )


def op(delay: float) -> Callable[[], Awaitable[str]]:
    async def run() -> str:
        await asyncio.sleep(delay)
        return "ok"

    return run


async def hog(seconds: float) -> None:
    """Hold the loop without yielding, after letting the call go out."""
    await asyncio.sleep(0)
    time.sleep(seconds)  # noqa: ASYNC251 - blocking the loop is the point


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


async def test_a_frozen_server_still_fails_the_call_behind_a_busy_loop() -> None:
    b = breaker()
    assert (await b.call(op(0.001)))[0]
    (ok, _), _ = await asyncio.gather(b.call(op(10.0)), hog(3 * TIMEOUT))
    assert not ok  # one more bound after the late deadline, then the timeout
    assert b.timeouts == 1
