"""The intake's pieces in-process, on hand-made ASGI channels: the body read with a cap (413
before reading when Content-Length says so, else at the first byte past it), a call that
stops when its client disconnects, and the exchange settling its quota grant once; the
drain in virtual time (looptime): SIGTERM waits for what is in flight, up to ``--grace``."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
import uvicorn
from starlette.requests import Request

from asyncthrift.gateway.app import Gateway
from asyncthrift.gateway.clients import GatewayClient
from asyncthrift.gateway.config import GatewayConfig
from asyncthrift.gateway.errors import GatewayError
from asyncthrift.gateway.exchange import Exchange
from asyncthrift.gateway.inflight import InFlight
from asyncthrift.gateway.intake import ClientGone, read_body, until_disconnect
from asyncthrift.gateway.serve import _DrainingServer

Message = dict[str, Any]


def _request(chunks: list[bytes], headers: dict[str, str]) -> tuple[Request, list[int]]:
    """A request whose body arrives in `chunks`; the list counts the chunks handed out."""
    handed: list[int] = []

    async def receive() -> Message:
        if len(handed) < len(chunks):
            handed.append(1)
            more = len(handed) < len(chunks)
            return {"type": "http.request", "body": chunks[len(handed) - 1], "more_body": more}
        return {"type": "http.disconnect"}

    scope = {
        "type": "http",
        "method": "POST",
        "path": "/v1/messages",
        "headers": [(k.encode(), v.encode()) for k, v in headers.items()],
    }
    return Request(scope, receive), handed


async def test_a_declared_size_over_the_cap_is_refused_before_reading() -> None:
    request, handed = _request([b"x" * 10] * 5, {"content-length": "50"})
    with pytest.raises(GatewayError) as caught:
        await read_body(request, limit=49)
    assert caught.value.status == 413
    assert handed == []  # not one byte read


async def test_an_undeclared_body_is_cut_at_the_first_chunk_past_the_cap() -> None:
    request, handed = _request([b"x" * 10] * 5, {})
    with pytest.raises(GatewayError) as caught:
        await read_body(request, limit=25)
    assert caught.value.status == 413
    assert len(handed) == 3  # 30 bytes: the third chunk crossed it; the rest never read
    request, _ = _request([b"ab", b"cd"], {"content-length": "4"})
    assert await read_body(request, limit=4) == b"abcd"


def _channel() -> tuple[Callable[[], Awaitable[Message]], asyncio.Event]:
    gone = asyncio.Event()

    async def receive() -> Message:
        await gone.wait()
        return {"type": "http.disconnect"}

    return receive, gone


async def test_a_call_ends_with_its_answer_while_the_client_stays() -> None:
    receive, _ = _channel()

    async def answer() -> str:
        await asyncio.sleep(0)
        return "answer"

    assert await until_disconnect(receive, answer()) == "answer"


async def test_a_disconnect_cancels_the_call_at_once() -> None:
    receive, gone = _channel()
    started, cancelled = asyncio.Event(), asyncio.Event()

    async def waits_for_budget() -> str:
        started.set()
        try:
            await asyncio.Event().wait()  # queued for ever
        except asyncio.CancelledError:
            cancelled.set()
            raise
        return "never"

    call = asyncio.create_task(until_disconnect(receive, waits_for_budget()))
    await started.wait()
    gone.set()
    with pytest.raises(ClientGone):
        await call
    assert cancelled.is_set()  # the queued call was cancelled, not left behind


async def test_a_failing_call_raises_its_own_error() -> None:
    receive, _ = _channel()

    async def fails() -> None:
        raise ValueError("upstream said no")

    with pytest.raises(ValueError, match="upstream said no"):
        await until_disconnect(receive, fails())


class _Grant:
    def __init__(self) -> None:
        self.calls: list[tuple[str, tuple[int, int, float]]] = []

    async def settle(self, *, input_tokens: int, output_tokens: int, cost_usd: float) -> None:
        self.calls.append(("settle", (input_tokens, output_tokens, cost_usd)))

    async def release(self) -> None:
        self.calls.append(("release", (0, 0, 0.0)))


def _exchange(grant: _Grant, *, sent: bool) -> Exchange:
    exchange = Exchange(
        client=GatewayClient(name="ci"), lane="batch", deadline=5.0, body={}, grant=grant
    )
    exchange.sent = sent
    exchange.held = (100, 50, 0.01)
    return exchange


@pytest.mark.parametrize(
    ("sent", "status", "reason", "expected"),
    [
        (False, 529, "deadline", ("release", (0, 0, 0.0))),  # never sent: all back
        (True, 499, "disconnected", ("settle", (100, 50, 0.01))),  # maybe charged: held
        (True, 502, "upstream", ("settle", (100, 50, 0.01))),
        (True, 400, "upstream", ("settle", (0, 0, 0.0))),  # refused upstream: not charged
        (True, 529, "upstream-429", ("settle", (0, 0, 0.0))),
    ],
)
async def test_a_failure_settles_the_grant_once(
    sent: bool, status: int, reason: str, expected: tuple[str, tuple[int, int, float]]
) -> None:
    grant = _Grant()
    exchange = _exchange(grant, sent=sent)
    await exchange.fail(status, reason)
    await exchange.finish(200, input_tokens=1, output_tokens=1, cost_usd=1.0)  # too late
    assert grant.calls == [expected]
    assert exchange.log["outcome"] == status


@pytest.mark.parametrize(
    ("admitted", "packing", "expected"),
    [
        # admitted by the scheduler here, its sending seen elsewhere: settled to its usage
        (True, False, ("settle", (12, 30, 0.002))),
        # neither admitted nor sent, no packing: a cache hit or a twin of a call in flight,
        # which cost the upstream and the bill nothing: nothing is charged
        (False, False, ("release", (0, 0, 0.0))),
        # with --pack a packed request goes out in the packer's task (no hook here sees it
        # admitted or sent): an answer with usage is charged, so a quota never leaks
        (False, True, ("settle", (12, 30, 0.002))),
    ],
)
async def test_an_answer_is_charged_unless_it_never_reached_the_upstream(
    admitted: bool, packing: bool, expected: tuple[str, tuple[int, int, float]]
) -> None:
    grant = _Grant()
    exchange = _exchange(grant, sent=False)
    exchange.admitted, exchange.packing = admitted, packing
    await exchange.finish(200, input_tokens=12, output_tokens=30, cost_usd=0.002)
    assert grant.calls == [expected]


async def test_count_tokens_and_batches_keep_what_they_held_once_answered() -> None:
    """Their answers carry no usage: the hold is the charge (a refusal gives it back)."""
    grant = _Grant()
    exchange = _exchange(grant, sent=False)
    exchange.keep_held = True
    await exchange.finish(200)
    assert grant.calls == [("settle", (100, 50, 0.01))]
    refused = _Grant()
    exchange = _exchange(refused, sent=False)
    exchange.keep_held = True
    await exchange.fail(400, "invalid")
    assert refused.calls == [("release", (0, 0, 0.0))]


@pytest.mark.looptime
async def test_in_flight_is_idle_once_every_ticket_is_back() -> None:
    inflight = InFlight()
    assert await inflight.wait_idle(0)
    first, second = inflight.enter(), inflight.enter()
    first.leave()
    first.leave()  # once only
    assert inflight.count == 1
    assert not await inflight.wait_idle(5.0)  # five virtual seconds, still one out
    asyncio.get_running_loop().call_later(3.0, second.leave)
    assert await inflight.wait_idle(10.0)
    assert inflight.count == 0


@pytest.mark.looptime
async def test_sigterm_drains_then_exits_and_a_second_signal_exits_now() -> None:
    gateway = Gateway(GatewayConfig(upstream_keys=("k",), grace=30.0))
    server = _DrainingServer(uvicorn.Config(app=None), gateway, url="http://x", ready=None)
    ticket = gateway.inflight.enter()  # a request being answered
    server.signalled()
    assert gateway.draining and not server.should_exit
    await asyncio.sleep(10.0)
    assert not server.should_exit  # still finishing it
    ticket.leave()
    await asyncio.sleep(0.1)
    assert server.should_exit and not server.force_exit

    stuck = Gateway(GatewayConfig(upstream_keys=("k",), grace=30.0))
    server = _DrainingServer(uvicorn.Config(app=None), stuck, url="http://x", ready=None)
    stuck.inflight.enter()  # never comes back
    server.signalled()
    await asyncio.sleep(29.0)
    assert not server.should_exit
    await asyncio.sleep(2.0)
    assert server.should_exit and not server.force_exit  # --grace is up
    server.signalled()
    assert server.force_exit
