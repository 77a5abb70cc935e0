"""The forwarding ``stream`` (what ``asyncthrift serve`` answers ``"stream": true`` with): the
upstream's server-sent events passed on byte for byte, while the library's books read
their usage (settled once, cached, retried before the first event) as for
``create(stream=True)``. In process, against the mock or a fixed-bytes upstream.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import anthropic
import httpx
import orjson
import pytest
from aiohttp import web

from asyncthrift import Thrift
from asyncthrift.gateway.app import Gateway, build_app
from asyncthrift.gateway.clients import GatewayClient
from asyncthrift.gateway.config import GatewayConfig
from asyncthrift.mock import Faults, MockServer
from asyncthrift.pipeline._forward_stream import SseEvents

MODEL = "claude-sonnet-4-6"
SENDERS = ["aiohttp", "httpx"]

#: An upstream's stream as no encoder of ours would write it: spaces in the JSON, a ping,
#: a comment line, CRLF line ends in one event, fields in an unusual order.
ODD_STREAM = (
    b'event: message_start\ndata: {"type": "message_start", "message": {"id": "msg_1", '
    b'"type": "message", "role": "assistant", "model": "claude-sonnet-4-6", "content": [], '
    b'"stop_reason": null, "stop_sequence": null, '
    b'"usage": {"output_tokens": 1, "input_tokens": 12}}}\n\n'
    b'event: ping\ndata: {"type": "ping"}\n\n'
    b": a comment the SDK ignores\n\n"
    b'event: content_block_start\r\ndata: {"type": "content_block_start", "index": 0, '
    b'"content_block": {"type": "text", "text": ""}}\r\n\r\n'
    b'event: content_block_delta\ndata: {"type":"content_block_delta","index":0,'
    b'"delta":{"type":"text_delta","text":"Hello  there"}}\n\n'
    b'event: content_block_stop\ndata: {"index": 0, "type": "content_block_stop"}\n\n'
    b'event: message_delta\ndata: {"type": "message_delta", "delta": {"stop_reason": '
    b'"end_turn", "stop_sequence": null}, "usage": {"output_tokens": 7}}\n\n'
    b'event: message_stop\ndata: {"type": "message_stop"}\n\n'
)


def req(text: str, **kw: Any) -> dict[str, Any]:
    return {
        "model": MODEL,
        "max_tokens": 1024,
        "messages": [{"role": "user", "content": text}],
        **kw,
    }


def events_of(body: bytes) -> list[dict[str, Any]]:
    """The events' data, ids and the mock's timings left out."""
    parsed = [orjson.loads(data) for _, data in SseEvents().feed(body)]
    for event in parsed:
        event.get("message", {}).pop("id", None)
    return [e for e in parsed if e["type"] != "ping"]


async def read_all(stream: Any) -> bytes:
    return b"".join([chunk async for chunk in stream.chunks()])


@pytest.fixture
async def odd_upstream() -> AsyncIterator[str]:
    """A server that streams `ODD_STREAM`, cut at places inside events and lines."""

    async def messages(request: web.Request) -> web.StreamResponse:
        body = await request.json()
        assert body["stream"] is True
        response = web.StreamResponse(
            headers={"content-type": "text/event-stream", "request-id": "req_odd"}
        )
        await response.prepare(request)
        for start in range(0, len(ODD_STREAM), 97):
            await response.write(ODD_STREAM[start : start + 97])
            await asyncio.sleep(0)
        await response.write_eof()
        return response

    app = web.Application()
    app.router.add_post("/v1/messages", messages)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


@pytest.mark.parametrize("http", SENDERS)
async def test_the_bytes_are_the_upstreams_and_the_usage_settles(
    odd_upstream: str, http: str
) -> None:
    async with Thrift(api_key="k", base_url=odd_upstream, http=http) as c:
        forwarded = c.messages.with_raw_response.forwarding()
        try:
            stream = await forwarded.stream(**req("hi"))
            assert stream.request_id == "req_odd"
            body = await read_all(stream)
        finally:
            await forwarded.aclose()
        assert body == ODD_STREAM
        assert stream.error is None and stream.usage is not None
        assert (stream.usage.input_tokens, stream.usage.output_tokens) == (12, 7)
        stats = c.stats()
        assert (stats.input_tokens, stats.output_tokens) == (12, 7)
        assert stats.in_flight == 0


async def test_the_gateway_answers_a_stream_with_the_upstreams_bytes(odd_upstream: str) -> None:
    config = GatewayConfig(
        base_url=odd_upstream,
        upstream_keys=("sk-up",),
        client_entries=(("client-key", GatewayClient(name="c")),),
    )
    gateway = Gateway(config)
    gateway.open()  # as the lifespan does (httpx's ASGI transport runs none)
    transport = httpx.ASGITransport(app=build_app(gateway))
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://gw") as http:
            response = await http.post(
                "/v1/messages", json=req("hi", stream=True), headers={"x-api-key": "client-key"}
            )
        stats = gateway.thrift.stats()
    finally:
        await gateway.aclose()
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    assert response.headers["request-id"] == "req_odd"
    assert response.content == ODD_STREAM
    assert (stats.input_tokens, stats.output_tokens, stats.in_flight) == (12, 7, 0)


@pytest.mark.parametrize("http", SENDERS)
async def test_a_stream_equals_the_sdks_direct_one_and_a_cached_one_replays(http: str) -> None:
    async with (
        MockServer(latency=0.01) as mock,
        Thrift(api_key="k", base_url=mock.base_url, http=http, cache="memory") as c,
    ):
        forwarded = c.messages.with_raw_response.forwarding()
        try:
            live = await read_all(await forwarded.stream(**req("stream me")))
            replayed = await read_all(await forwarded.stream(**req("stream me")))
        finally:
            await forwarded.aclose()
        sdk = anthropic.AsyncAnthropic(api_key="k", base_url=mock.base_url, max_retries=0)
        async with sdk:
            direct = [
                e.model_dump(mode="json", exclude_unset=True)
                async for e in await sdk.messages.create(**req("stream me"), stream=True)
            ]
        for event in direct:
            event.get("message", {}).pop("id", None)
        assert events_of(live) == direct
        again = events_of(replayed)  # the cached answer as events: same text, end, usage
        assert again[-1] == direct[-1] and again[-2]["delta"] == direct[-2]["delta"]
        assert again[-2]["usage"]["output_tokens"] == direct[-2]["usage"]["output_tokens"]
        texts = [[e["delta"].get("text") for e in s if "delta" in e] for s in (again, direct)]
        assert "".join(filter(None, texts[0])) == "".join(filter(None, texts[1]))
        assert mock.counters.requests == 2  # the forwarded stream's, and the SDK's own
        assert c.stats().cache_hits == 1 and c.stats().in_flight == 0


async def test_an_error_event_mid_stream_is_passed_on_and_settles() -> None:
    async with (
        MockServer(latency=0.01, faults=Faults(stream_error=1.0)) as mock,
        Thrift(api_key="k", base_url=mock.base_url) as c,
    ):
        forwarded = c.messages.with_raw_response.forwarding()
        try:
            stream = await forwarded.stream(**req("fail half-way, please, with many words"))
            body = await read_all(stream)
        finally:
            await forwarded.aclose()
        assert body.rstrip().split(b"\n")[-2] == b"event: error"
        assert isinstance(stream.error, anthropic.APIStatusError)
        assert c.stats().in_flight == 0


async def test_a_stream_left_early_settles_once() -> None:
    async with (
        MockServer(latency=0.01) as mock,
        Thrift(api_key="k", base_url=mock.base_url) as c,
    ):
        forwarded = c.messages.with_raw_response.forwarding()
        try:
            stream = await forwarded.stream(**req("a long one, to be left"))
            chunks = stream.chunks()
            first = await anext(chunks)
            await chunks.aclose()
            await stream.close()
        finally:
            await forwarded.aclose()
        assert first.startswith(b"event: message_start\n")
        stats = c.stats()
        assert stats.in_flight == 0 and stats.input_tokens > 0


def test_events_are_cut_where_they_end_whatever_the_chunks() -> None:
    whole = SseEvents().feed(ODD_STREAM)
    assert [name for name, _ in whole] == [
        "message_start",
        "ping",
        "content_block_start",
        "content_block_delta",
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]
    byte_by_byte = SseEvents()
    pieces = [e for i in range(len(ODD_STREAM)) for e in byte_by_byte.feed(ODD_STREAM[i : i + 1])]
    assert pieces == whole
    assert SseEvents().feed(b"data: a\ndata: b\n\n") == [("message", b"a\nb")]
