"""`pipeline._departure`: the transport's word that a request's body is written reaches the
budget that admitted it (`LocalBudget.written`), once, at the write; a transport that says
nothing changes nothing. In virtual time, over httpx2 transports without sockets."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx2
import pytest

from asyncthrift import Thrift
from asyncthrift.pipeline._departure import (
    DEPARTURE,
    Departure,
    departure_for,
    with_departures,
)
from asyncthrift.scheduling.bucket import Cost
from asyncthrift.scheduling.budget import LocalBudget
from asyncthrift.scheduling.limits import Limits

from .fake_api import FakeAPI, ok

MODEL = "claude-sonnet-4-5"
HI = [{"role": "user", "content": "hi"}]


def ask(k: int) -> list[dict[str, str]]:
    """A distinct question (identical ones would be answered once: dedupe)."""
    return [{"role": "user", "content": f"question {k}"}]


class WritingTransport(httpx2.AsyncBaseTransport):
    """httpcore's trace events around a body write that takes `write_s` seconds (a loaded
    process, a connection being opened), then `api`'s answer."""

    def __init__(self, api: FakeAPI, write_s: float) -> None:
        self.inner = httpx2.MockTransport(api)
        self.write_s = write_s

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        trace = request.extensions.get("trace")
        if trace is not None:
            await trace("http11.send_request_headers.complete", {})
            await trace("http11.send_request_body.started", {})
        await asyncio.sleep(self.write_s)
        if trace is not None:
            await trace("http11.send_request_body.complete", {})
        return await self.inner.handle_async_request(request)


@pytest.fixture
def words(monkeypatch: pytest.MonkeyPatch) -> list[tuple[Cost, float]]:
    """Every `LocalBudget.written` call: (mark, when)."""
    seen: list[tuple[Cost, float]] = []
    original = LocalBudget.written

    def spy(self: LocalBudget, mark: Cost, now: float) -> None:
        seen.append((mark, now))
        original(self, mark, now)

    monkeypatch.setattr(LocalBudget, "written", spy)
    return seen


async def _answer(body: dict[str, Any], n: int) -> httpx2.Response:
    await asyncio.sleep(2.0)
    return ok(body, output_tokens=20)


@pytest.mark.looptime
async def test_the_write_reaches_the_budget_once_per_request_at_the_write(
    words: list[tuple[Cost, float]],
) -> None:
    loop = asyncio.get_running_loop()
    http = httpx2.AsyncClient(transport=WritingTransport(FakeAPI(_answer), write_s=0.3))
    async with Thrift(
        api_key="k",
        base_url="http://api.test",
        limits=Limits(rpm=1_000, itpm=1_000_000, otpm=100_000, period=60),
        sdk_options={"http_client": http},
    ) as c:
        t0 = loop.time()
        await asyncio.gather(
            *(c.messages.create(model=MODEL, max_tokens=64, messages=ask(k)) for k in range(3))
        )
    assert len(words) == 3
    assert len({mark for mark, _ in words}) == 3  # each request's own admission
    # at the write, not at the admission (the cold start's probe goes first)
    assert all(when - t0 >= 0.3 - 1e-6 for _, when in words)
    assert min(when for _, when in words) - t0 == pytest.approx(0.3, abs=1e-3)


@pytest.mark.looptime
async def test_a_transport_that_says_nothing_changes_nothing(
    words: list[tuple[Cost, float]],
) -> None:
    async with Thrift(
        api_key="k",
        base_url="http://api.test",
        limits=Limits(rpm=1_000, itpm=1_000_000, otpm=100_000, period=60),
        sdk_options=FakeAPI(_answer).sdk_options(),
    ) as c:
        await c.messages.create(model=MODEL, max_tokens=64, messages=HI)
    assert words == []


async def test_a_requests_own_trace_is_kept_and_no_departure_means_no_trace() -> None:
    async def own(event: str, info: Any) -> None:
        return None

    seen: list[Any] = []

    async def handler(request: httpx2.Request) -> httpx2.Response:
        seen.append(request.extensions.get("trace"))
        return httpx2.Response(200)

    http = with_departures(httpx2.AsyncClient(transport=httpx2.MockTransport(handler)))
    assert with_departures(http) is http
    assert len(http.event_hooks["request"]) == 1  # added once
    await http.get("http://x.test/")  # no attempt waiting: nothing asked of the transport
    token = DEPARTURE.set(Departure(lambda: None))
    try:
        await http.get("http://x.test/", extensions={"trace": own})
        await http.get("http://x.test/")
    finally:
        DEPARTURE.reset(token)
    assert seen[0] is None and seen[1] is own and seen[2] is not None
    await http.aclose()


def test_only_a_request_a_bursts_hold_waits_for_is_traced() -> None:
    # a budget full and trusted: its first take is a burst from full (its hold waits for
    # it); once the level is far below the cap, a take during the hold is not
    loop = asyncio.new_event_loop()
    try:
        budget = LocalBudget(Limits(rpm=600, period=60), now=0.0)
        burst = [budget.take(Cost(1, 0, 0), 0.0) for _ in range(600)]
        assert departure_for(budget, burst[0], loop) is not None
        for mark in burst:
            budget.written(mark, 0.1)
        budget.give(Cost(1, 0, 0), 2.0)
        later = budget.take(Cost(1, 0, 0), 2.0)
        assert departure_for(budget, later, loop) is None
        assert departure_for(object(), burst[0], loop) is None  # a budget without `Transit`
    finally:
        loop.close()
