"""An in-memory Anthropic API behind httpx2's MockTransport: the SDK's transport seam.

No sockets, so tests that use it can run in virtual time (looptime) and assert timings to
the millisecond. The real HTTP path is exercised against `asyncthrift.mock` elsewhere.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import httpx2
import orjson
from anthropic.types import Message

from asyncthrift.pipeline.replay import replay_events

Handler = Callable[[dict[str, Any], int], Awaitable[httpx2.Response] | httpx2.Response]


def message_json(
    body: dict[str, Any], *, input_tokens: int = 10, output_tokens: int = 5
) -> dict[str, Any]:
    return {
        "id": "msg_test",
        "type": "message",
        "role": "assistant",
        "model": body["model"],
        "content": [{"type": "text", "text": "ok"}],
        "stop_reason": "end_turn",
        "stop_sequence": None,
        "usage": {
            "input_tokens": input_tokens,
            "output_tokens": output_tokens,
            "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": 0,
        },
    }


def ok(
    body: dict[str, Any], headers: dict[str, str] | None = None, **usage: int
) -> httpx2.Response:
    return httpx2.Response(200, json=message_json(body, **usage), headers=headers or {})


def error(status: int, kind: str, headers: dict[str, str] | None = None) -> httpx2.Response:
    payload = {"type": "error", "error": {"type": kind, "message": kind}, "request_id": "req_x"}
    return httpx2.Response(status, json=payload, headers=headers or {})


def sse(response: httpx2.Response, delay: float = 0.0) -> httpx2.Response:
    """`response` (a 200 with a message) as the stream a ``stream=True`` request gets: its
    headers at once, ``message_start`` at once, the rest of the events `delay` seconds later
    (headers at the stream's start, as the API sends them)."""
    message = Message.model_validate(orjson.loads(response.content))
    events = [
        b"event: " + e.type.encode() + b"\ndata: " + orjson.dumps(e.to_dict()) + b"\n\n"
        for e in replay_events(message)
    ]

    async def body() -> AsyncIterator[bytes]:
        for k, event in enumerate(events):
            if k == 1 and delay > 0:
                await asyncio.sleep(delay)
            yield event

    headers = {k: v for k, v in response.headers.items() if k.lower() != "content-length"}
    headers["content-type"] = "text/event-stream"
    return httpx2.Response(200, headers=headers, content=body())


class FakeAPI:
    """Counts calls and their loop times; `handler(body, n)` decides each response.

    A ``stream=True`` request the handler answers with a plain 200 message gets it as a
    stream (`sse`): the client sends a cold start's probe that way.
    """

    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.calls: list[float] = []
        self.keys: list[str] = []

    async def __call__(self, request: httpx2.Request) -> httpx2.Response:
        loop = asyncio.get_running_loop()
        self.calls.append(loop.time())
        auth = request.headers.get("authorization", "")
        self.keys.append(request.headers.get("x-api-key") or auth.removeprefix("Bearer "))
        body = orjson.loads(request.content)
        result = self.handler(body, len(self.calls))
        response = result if isinstance(result, httpx2.Response) else await result
        if body.get("stream") and response.status_code == 200 and _is_message(response):
            return sse(response)
        return response

    def sdk_options(self) -> dict[str, Any]:
        return {"http_client": httpx2.AsyncClient(transport=httpx2.MockTransport(self))}


def _is_message(response: httpx2.Response) -> bool:
    if not response.headers.get("content-type", "").startswith("application/json"):
        return False
    try:
        return bool(orjson.loads(response.content).get("type") == "message")
    except (orjson.JSONDecodeError, AttributeError, httpx2.ResponseNotRead):
        return False
