"""The FastAPI and aiohttp examples, served for real on loopback, in front of the mock.

Everything goes over sockets: browser-like client -> uvicorn / aiohttp -> Thrift -> mock.
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anthropic
import httpx
import orjson
import pytest
import uvicorn
from aiohttp import web
from fastapi import FastAPI

from asyncthrift import Limits, QueueFull, Thrift
from asyncthrift.errors import BudgetExceeded, DeadlineExceeded, RequestTooLarge
from asyncthrift.integrations.common import error_answer
from asyncthrift.mock import MockServer

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples"))
import aiohttp_chat
import fastapi_chat

pytestmark = pytest.mark.slow

MODEL = fastapi_chat.MODEL


@asynccontextmanager
async def serve_fastapi(app: FastAPI) -> AsyncIterator[str]:
    """Run `app` under uvicorn on a free loopback port (lifespan included)."""
    config = uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan="on")
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    while not server.started:
        if task.done():
            task.result()
        await asyncio.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task


@asynccontextmanager
async def serve_aiohttp(app: web.Application) -> AsyncIterator[str]:
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    server = site._server
    assert server is not None
    port = server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


async def read_sse(response: httpx.Response) -> list[dict[str, Any]]:
    """Every event of an SSE body, as the JSON of its data line."""
    events = []
    async for line in response.aiter_lines():
        if line.startswith("data: "):
            events.append(orjson.loads(line[6:]))
    return events


def text_of(events: list[dict[str, Any]]) -> str:
    return "".join(
        e["delta"]["text"]
        for e in events
        if e["type"] == "content_block_delta" and e["delta"]["type"] == "text_delta"
    )


async def expected_text(base_url: str, message: str, max_tokens: int) -> str:
    """What the mock answers to this request (its answers are deterministic)."""
    async with anthropic.AsyncAnthropic(api_key="k", base_url=base_url) as sdk:
        msg = await sdk.messages.create(
            model=MODEL, max_tokens=max_tokens, messages=[{"role": "user", "content": message}]
        )
    return msg.content[0].text  # type: ignore[union-attr]


@pytest.mark.parametrize("framework", ["fastapi", "aiohttp"])
async def test_chat_streams_the_whole_answer_as_sse(framework: str) -> None:
    async with MockServer(latency=0.01, latency_per_token=0.001) as mock:
        kw: dict[str, Any] = {"api_key": "k", "base_url": mock.base_url}
        server = (
            serve_fastapi(fastapi_chat.create_app(**kw))
            if framework == "fastapi"
            else serve_aiohttp(aiohttp_chat.create_app(**kw))
        )
        async with server as url, httpx.AsyncClient(base_url=url) as http:
            page = await http.get("/")
            assert page.status_code == 200 and "text/html" in page.headers["content-type"]
            body = {"message": "Explain token buckets", "max_tokens": 120}
            async with http.stream("POST", "/chat", json=body) as r:
                assert r.status_code == 200
                assert r.headers["content-type"].startswith("text/event-stream")
                assert float(r.headers["x-asyncthrift-open-ms"]) > 0
                events = await read_sse(r)
        assert [e["type"] for e in events][:2] == ["message_start", "content_block_start"]
        assert events[-1]["type"] == "message_stop"
        assert text_of(events) == await expected_text(mock.base_url, body["message"], 120)


@pytest.mark.parametrize("framework", ["fastapi", "aiohttp"])
async def test_backpressure_is_mapped_to_503_and_504_with_retry_after(framework: str) -> None:
    async with MockServer(latency=0.01) as mock:
        # one request per minute: the first is admitted, the rest must wait
        kw: dict[str, Any] = {
            "api_key": "k",
            "base_url": mock.base_url,
            "limits": Limits(rpm=1),
            "max_queue": 1,
            "deadline": 0.3,
        }
        server = (
            serve_fastapi(fastapi_chat.create_app(**kw))
            if framework == "fastapi"
            else serve_aiohttp(aiohttp_chat.create_app(**kw))
        )
        async with server as url, httpx.AsyncClient(base_url=url) as http:
            ok = await http.post("/chat", json={"message": "first"})
            assert ok.status_code == 200
            waiting = asyncio.create_task(http.post("/chat", json={"message": "second"}))
            await asyncio.sleep(0.1)
            full = await http.post("/chat", json={"message": "third"})
            late = await waiting
        assert full.status_code == 503
        assert full.json()["error"]["type"] == "queue_full"
        assert late.status_code == 504
        assert late.json()["error"]["type"] == "deadline_exceeded"
        assert int(full.headers["retry-after"]) >= 50  # the next request slot is ~60 s away
        assert int(late.headers["retry-after"]) >= 1
        assert mock.counters.requests == 1


async def test_a_browser_that_leaves_hangs_up_upstream_and_refunds() -> None:
    async with MockServer(latency=0.01, latency_per_token=0.02, output_tokens=(200, 200)) as mock:
        app = fastapi_chat.create_app(
            api_key="k", base_url=mock.base_url, limits=Limits(otpm=100_000, period=600)
        )
        async with serve_fastapi(app) as url, httpx.AsyncClient(base_url=url) as http:
            async with http.stream(
                "POST", "/chat", json={"message": "go on", "max_tokens": 500}
            ) as r:
                async for line in r.aiter_lines():
                    if "text_delta" in line:
                        break  # the browser tab is closed
            client: Thrift = app.state.thrift
            for _ in range(100):
                if client.stats().in_flight == 0 and mock.counters.cancelled:
                    break
                await asyncio.sleep(0.02)
            s = client.stats()
            assert (s.in_flight, s.failed, mock.counters.cancelled) == (0, 1, 1)
            out = client.budgets()["sonnet"][0].peek(asyncio.get_running_loop().time())[2]
            # the server stopped the stream at its next write, but the client cannot know how
            # much it produced: with no answer seen yet to say how long one runs, the 500
            # reserved stay spent (tests/test_abandoned.py: given back once answers are seen)
            assert out is not None and 100_000 - out > 300


async def test_short_load_through_a_binding_limit() -> None:
    """30 browsers for 2 s against a limit that admits about half of them: no unmapped 5xx,
    every admitted answer streamed whole (the full version is bench/bench_fastapi.py)."""
    limits = Limits(rpm=600, otpm=3_000, period=2)
    async with MockServer(
        limits=limits, latency=0.02, latency_per_token=0.001, output_tokens=(16, 64)
    ) as mock:
        app = fastapi_chat.create_app(
            api_key="k", base_url=mock.base_url, limits=limits, deadline=0.5
        )
        statuses: list[int] = []
        incomplete = 0

        async def browser(http: httpx.AsyncClient, i: int, until: float) -> None:
            nonlocal incomplete
            n = 0
            while time.monotonic() < until:
                n += 1
                body = {"message": f"browser {i} question {n}", "max_tokens": 64}
                async with http.stream("POST", "/chat", json=body) as r:
                    statuses.append(r.status_code)
                    if r.status_code == 200:
                        events = await read_sse(r)
                        if not events or events[-1]["type"] != "message_stop":
                            incomplete += 1
                    else:
                        await r.aread()

        async with serve_fastapi(app) as url:
            limits_http = httpx.Limits(max_connections=100)
            async with httpx.AsyncClient(base_url=url, timeout=30, limits=limits_http) as http:
                until = time.monotonic() + 2.0
                await asyncio.gather(*(browser(http, i, until) for i in range(30)))
    assert statuses.count(200) >= 30
    assert set(statuses) <= {200, 503, 504}
    assert incomplete == 0


def test_error_mapping_table() -> None:
    cases: list[tuple[BaseException, int, str]] = [
        (QueueFull("full", retry_after=2.2), 503, "3"),
        (DeadlineExceeded("late", retry_after=None), 504, "1"),
        (BudgetExceeded("cap", retry_after=30.0), 402, "30"),
    ]
    for exc, status, retry in cases:
        answer = error_answer(exc)
        assert answer is not None and answer.status == status
        assert answer.headers["Retry-After"] == retry
        assert orjson.loads(answer.body)["type"] == "error"
    too_large = error_answer(RequestTooLarge("never fits"))
    assert too_large is not None and too_large.status == 413 and not too_large.headers
    assert error_answer(ValueError("not ours")) is None
