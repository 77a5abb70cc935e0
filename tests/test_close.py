"""`aclose()`/`close()` with requests waiting and in flight (#14 item 2)."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx2
import pytest

from asyncthrift import Limits, Thrift
from asyncthrift.errors import ClientClosed

from .fake_api import FakeAPI, error, ok
from .test_client import client, req

pytestmark = pytest.mark.looptime


def slow_ok(seconds: float = 1.0) -> Any:
    async def handler(body: dict[str, Any], n: int) -> httpx2.Response:
        await asyncio.sleep(seconds)
        return ok(body)

    return handler


async def _settle() -> None:
    for _ in range(20):
        await asyncio.sleep(0)


def _gates(c: Thrift) -> list[Any]:
    return [mc.gate for mc in c.model_classes().values()]


@pytest.mark.parametrize("method", ["aclose", "close"])
async def test_close_fails_every_waiter_at_once_and_sends_nothing_more(method: str) -> None:
    api = FakeAPI(slow_ok(1.0))
    loop = asyncio.get_running_loop()
    c = client(api, limits=Limits(rpm=5))
    tasks = [asyncio.create_task(c.messages.create(**req(f"r{i}"))) for i in range(205)]
    await asyncio.sleep(0.1)  # the first ones are in flight, the rest wait for budget
    sent = len(api.calls)
    assert 1 <= sent <= 5
    assert c.stats().queued == 205 - sent
    t0 = loop.time()
    closing = asyncio.create_task(getattr(c, method)())
    async with asyncio.timeout(600):
        waiters = await asyncio.gather(*tasks[sent:], return_exceptions=True)
        assert loop.time() - t0 <= 0.1  # at once, not after the budget or retries
        assert all(isinstance(e, ClientClosed) for e in waiters), waiters[:3]
        assert "closed" in str(waiters[0]) and "drain=True" in str(waiters[0])
        done = await asyncio.gather(*tasks[:sent], return_exceptions=True)
        await closing
    assert not any(isinstance(r, BaseException) for r in done), done  # in flight: finished
    assert len(api.calls) == sent  # the server received nothing more
    s = c.stats()
    assert (s.requests, s.succeeded, s.failed) == (205, sent, 205 - sent)
    assert (s.upstream_calls, s.retries, s.in_flight) == (sent, 0, 0)
    assert c.stats().queued == 0  # the client-wide count that max_queue is checked against
    assert all(g.held == 0 and g.waiting == 0 for g in _gates(c))  # nothing leaked
    with pytest.raises(ClientClosed, match="closed"):  # a newcomer: at once, not sent
        await c.messages.create(**req("late"))
    assert len(api.calls) == sent


async def test_a_request_arriving_while_closing_gets_client_closed() -> None:
    api = FakeAPI(slow_ok(5.0))
    c = client(api, limits=Limits(rpm=5))
    first = asyncio.create_task(c.messages.create(**req("a")))
    await asyncio.sleep(0.1)
    closing = asyncio.create_task(c.aclose())
    await _settle()
    assert not closing.done()  # waits for the request in flight
    with pytest.raises(ClientClosed):
        await c.messages.create(**req("b"))
    await first
    await closing
    assert len(api.calls) == 1


async def test_drain_lets_queued_requests_finish_first() -> None:
    api = FakeAPI(slow_ok(0.5))
    c = client(api, limits=Limits(rpm=60))
    tasks = [asyncio.create_task(c.messages.create(**req(f"r{i}"))) for i in range(8)]
    await asyncio.sleep(0.1)
    assert c.stats().queued > 0
    await c.aclose(drain=True)
    results = await asyncio.gather(*tasks, return_exceptions=True)
    assert not any(isinstance(r, BaseException) for r in results), results
    assert len(api.calls) == 8 and c.stats().succeeded == 8
    assert all(g.held == 0 and g.waiting == 0 for g in _gates(c))


async def test_drain_seconds_bounds_the_wait_then_fails_the_rest() -> None:
    api = FakeAPI(slow_ok(0.1))
    loop = asyncio.get_running_loop()
    c = client(api, limits=Limits(rpm=6))  # one every 10 s
    tasks = [asyncio.create_task(c.messages.create(**req(f"r{i}"))) for i in range(20)]
    await asyncio.sleep(0.05)
    t0 = loop.time()
    await c.close(drain=15)
    assert loop.time() - t0 == pytest.approx(15, abs=0.01)
    results = await asyncio.gather(*tasks, return_exceptions=True)
    ok_n = sum(not isinstance(r, BaseException) for r in results)
    assert ok_n == len(api.calls) and ok_n < 20
    assert all(isinstance(r, ClientClosed) for r in results if isinstance(r, BaseException))
    assert all(g.held == 0 and g.waiting == 0 for g in _gates(c))


async def test_an_attempt_failing_after_close_is_not_retried() -> None:
    async def handler(body: dict[str, Any], n: int) -> httpx2.Response:
        await asyncio.sleep(1.0)
        return error(529, "overloaded_error")

    api = FakeAPI(handler)
    c = client(api, limits=Limits(rpm=50))
    task = asyncio.create_task(c.messages.create(**req()))
    await asyncio.sleep(0.1)
    await c.aclose()
    with pytest.raises(ClientClosed) as info:
        await task
    assert info.value.__context__ is not None  # chained to the 529
    assert len(api.calls) == 1
    s = c.stats()
    assert (s.upstream_calls, s.retries, s.in_flight) == (1, 0, 0)
    assert all(g.held == 0 and g.waiting == 0 for g in _gates(c))


async def test_close_is_idempotent_and_validates() -> None:
    api = FakeAPI(slow_ok(0.0))
    c = client(api, limits=Limits(rpm=50))
    with pytest.raises(ValueError, match="drain="):
        await c.aclose(drain=-1)
    assert not c.is_closed()
    await c.aclose()
    await c.close()  # a second close returns at once
