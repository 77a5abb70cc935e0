"""`asyncthrift.gateway.early`: a non-streamed answer is written to its client as soon as the
upstream's bytes are read, before the library settles the call, and then nothing more is
sent; the books (the call's statistics, the exchange's telemetry, the access line) are kept
as before, whatever happens after the answer went. Driven in process as uvicorn drives the
app (``http.disconnect`` from `receive` once the response is complete), against a loopback
upstream with fixed bytes."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest
from aiohttp import web

from asyncthrift.gateway.app import Gateway, build_app
from asyncthrift.gateway.clients import GatewayClient
from asyncthrift.gateway.config import GatewayConfig
from asyncthrift.stores.cache.memory import MemoryCache

MODEL = "claude-sonnet-4-6"
#: The upstream's answer as no encoder of ours would write it (spaces, field order).
ANSWER = (
    b'{"id": "msg_1", "type": "message", "role": "assistant", "model": "claude-sonnet-4-6",'
    b' "content": [{"type": "text", "text": "Hi  there"}], "stop_reason": "end_turn", '
    b'"stop_sequence": null, "usage": {"output_tokens": 7, "input_tokens": 12}}'
)


def body(text: str) -> bytes:
    messages = [{"role": "user", "content": text}]
    return orjson.dumps({"model": MODEL, "max_tokens": 64, "messages": messages})


@pytest.fixture
async def upstream() -> AsyncIterator[dict[str, Any]]:
    """A Messages endpoint answering `ANSWER` (or `state["answer"]`), counting its calls."""
    state: dict[str, Any] = {"calls": 0, "answer": ANSWER}

    async def messages(request: web.Request) -> web.Response:
        await request.read()
        state["calls"] += 1
        return web.Response(
            body=state["answer"],
            content_type="application/json",
            headers={"request-id": f"req_{state['calls']}"},
        )

    app = web.Application()
    app.router.add_post("/v1/messages", messages)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    state["url"] = f"http://127.0.0.1:{runner.addresses[0][1]}"
    try:
        yield state
    finally:
        await runner.cleanup()


class Exchange:
    """One request driven through the app as uvicorn drives it: the body, then (once the
    response is complete) ``http.disconnect``; every message sent, and what the library's
    statistics said when the response's body went."""

    def __init__(self, gateway: Gateway, payload: bytes) -> None:
        self.gateway = gateway
        self.payload = payload
        self.sent: list[dict[str, Any]] = []
        self.settled_at_body: int | None = None
        self.complete = asyncio.Event()
        self._read = False

    async def receive(self) -> dict[str, Any]:
        if not self._read:
            self._read = True
            return {"type": "http.request", "body": self.payload, "more_body": False}
        await self.complete.wait()
        return {"type": "http.disconnect"}

    async def send(self, message: dict[str, Any]) -> None:
        self.sent.append(message)
        if message["type"] == "http.response.body" and not message.get("more_body"):
            self.settled_at_body = self.gateway.thrift.stats().succeeded
            self.complete.set()

    async def run(self, app: Any) -> None:
        scope = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": "POST",
            "path": "/v1/messages",
            "raw_path": b"/v1/messages",
            "query_string": b"",
            "root_path": "",
            "scheme": "http",
            "server": ("127.0.0.1", 8080),
            "client": ("127.0.0.1", 50000),
            "headers": [
                (b"x-api-key", b"client-key"),
                (b"content-type", b"application/json"),
                (b"content-length", str(len(self.payload)).encode()),
            ],
        }
        await app(scope, self.receive, self.send)

    @property
    def status(self) -> int:
        return int(self.sent[0]["status"])

    @property
    def headers(self) -> dict[bytes, bytes]:
        return dict(self.sent[0]["headers"])

    @property
    def content(self) -> bytes:
        return b"".join(m.get("body", b"") for m in self.sent[1:])


class Lines(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture
async def served(upstream: dict[str, Any]) -> AsyncIterator[tuple[Gateway, Any, Lines]]:
    config = GatewayConfig(
        base_url=upstream["url"],
        upstream_keys=("sk-up",),
        client_entries=(("client-key", GatewayClient(name="c")),),
        cache="memory",
    )
    gateway = Gateway(config)
    gateway.open()  # as the lifespan does
    lines = Lines()
    access = logging.getLogger("test.gateway.early.access")
    access.setLevel(logging.INFO)
    access.propagate = False
    access.addHandler(lines)
    app = build_app(gateway, access_log=access)
    await Exchange(gateway, body("warm")).run(app)  # a cold start's probe goes as a stream
    lines.records.clear()
    try:
        yield gateway, app, lines
    finally:
        access.removeHandler(lines)
        await gateway.aclose()


def _answered(gateway: Gateway) -> int:
    clients = gateway.telemetry.snapshot()["clients"]
    return int(clients["c"]["answered"]) if "c" in clients else 0


async def test_the_answer_goes_before_the_call_is_settled_and_the_books_follow(
    served: tuple[Gateway, Any, Lines],
) -> None:
    gateway, app, lines = served
    exchange = Exchange(gateway, body("hi"))
    await exchange.run(app)
    assert [m["type"] for m in exchange.sent] == ["http.response.start", "http.response.body"]
    assert exchange.status == 200
    assert exchange.content == ANSWER  # the upstream's bytes
    assert exchange.headers[b"request-id"] == b"req_2"
    assert exchange.headers[b"content-type"] == b"application/json"
    assert exchange.headers[b"content-length"] == str(len(ANSWER)).encode()
    assert exchange.settled_at_body == 1  # written before the library settled it
    stats = gateway.thrift.stats()
    assert (stats.succeeded, stats.in_flight) == (2, 0)  # ... which it did after
    assert (stats.input_tokens, stats.output_tokens) == (24, 14)
    assert _answered(gateway) == 2
    (line,) = lines.records
    assert (line.status, line.outcome, line.request_id) == (200, 200, "req_2")  # type: ignore[attr-defined]


async def test_a_cached_answer_goes_the_usual_way_with_the_same_bytes(
    served: tuple[Gateway, Any, Lines], upstream: dict[str, Any]
) -> None:
    gateway, app, _ = served
    first, again = Exchange(gateway, body("same")), Exchange(gateway, body("same"))
    await first.run(app)
    await again.run(app)
    assert upstream["calls"] == 2  # the warm-up's and the first: the second was the cache's
    assert first.settled_at_body == 1  # the first went early
    assert [m["type"] for m in again.sent] == ["http.response.start", "http.response.body"]
    assert again.status == 200
    assert orjson.loads(again.content) == orjson.loads(ANSWER)
    assert again.headers[b"request-id"] == b"req_2"
    assert again.settled_at_body == 3  # through the handler's response, once settled
    assert _answered(gateway) == 3


async def test_a_failure_after_the_answer_went_sends_nothing_more(
    served: tuple[Gateway, Any, Lines], monkeypatch: pytest.MonkeyPatch
) -> None:
    gateway, app, lines = served

    async def broken(self: Any, key: str, value: bytes, ttl: float | None = None) -> None:
        raise ConnectionError("the cache is down")  # storing the answer, after it went

    monkeypatch.setattr(MemoryCache, "set", broken)
    exchange = Exchange(gateway, body("hi"))
    await exchange.run(app)
    assert [m["type"] for m in exchange.sent] == ["http.response.start", "http.response.body"]
    assert (exchange.status, exchange.content) == (200, ANSWER)
    assert gateway.thrift.stats().in_flight == 0  # settled before the store failed
    assert _answered(gateway) == 2
    (line,) = lines.records  # the outcome is the answer the client has, not the failure
    assert (line.status, line.outcome) == (200, 200)  # type: ignore[attr-defined]


async def test_an_answer_that_is_not_a_message_is_not_written_early(
    served: tuple[Gateway, Any, Lines], upstream: dict[str, Any]
) -> None:
    gateway, app, _ = served
    upstream["answer"] = b'{"type": "message", "content": []}'  # no usage
    exchange = Exchange(gateway, body("hi"))
    await exchange.run(app)
    assert [m["type"] for m in exchange.sent] == ["http.response.start", "http.response.body"]
    assert exchange.status >= 500
    assert orjson.loads(exchange.content)["type"] == "error"
    assert gateway.thrift.stats().succeeded == 1  # the warm-up's only
