"""The forwarding route of ``messages.create(stream=True)``: the upstream's server-sent
events passed on as the bytes that came (`ForwardedStream`), only what settling needs read.

Why: a gateway passes a stream on. Through the SDK every event is parsed into its model and
the gateway wrote it back with ``to_json``, event by event: CPU per event, and bytes that
were the gateway's, not the upstream's. Here the response is opened on the admitted key's
client (`Endpoint`, as the non-streamed forwarding route), its headers go to the budget's
resync at once (``headers_at_start``), the first event is read before the stream is handed
over (a 429/529 or an ``error`` event before it is retried as any failed call, as
``create(stream=True)`` does), and each chunk goes on unchanged once the events it
completes have been read with orjson.

The books are the library's own `StreamLedger` (settled exactly once: complete at
``message_stop``, abandoned when closed early, failed at an ``error`` event; a complete
answer cached): it is shown the SDK's event objects, built as the SDK builds them, for the
events that carry usage (``message_start``, ``message_delta``, ``message_stop``), or for
every event when the answer is to be cached (the cache stores the accumulated `Message`);
the other events only add their text's token estimate to what it counts as delivered.
"""

from __future__ import annotations

import asyncio
import re
import weakref
from collections.abc import AsyncIterator, Mapping
from typing import Any, Final, cast

import anthropic
import httpx2
import orjson
from anthropic.types import Message, Usage

from ..core._sdk import build_event, status_error
from ..core.tokens import text_tokens
from ._attempt import Attempt, Plan, Planner, SendFailed
from ._forward import ForwardRoute, request_parts
from ._forward_http import Reply, failure
from ._routes import stream_error_meaning
from ._stream_ledger import StreamLedger
from .replay import replay_events

__all__ = ["ForwardStreamRoute", "ForwardedStream", "ReplayedStream", "SseEvents"]

#: The end of one event: a blank line, in any of the line endings SSE allows.
_EVENT_END: Final = re.compile(rb"\r\n\r\n|\n\n|\r\r")
_LINE_END: Final = re.compile(rb"\r\n|\r|\n")
#: The events whose SDK objects the ledger needs to settle (the rest only when caching).
_SETTLING: Final = frozenset({"message_start", "message_delta", "message_stop"})
#: The events the SDK builds into objects (a ``ping`` it skips).
_MESSAGE_EVENTS: Final = _SETTLING | {
    "content_block_start",
    "content_block_delta",
    "content_block_stop",
}
#: Where a delta carries its text, by the delta's type.
_DELTA_TEXT: Final = {
    "text_delta": "text",
    "input_json_delta": "partial_json",
    "thinking_delta": "thinking",
}


class SseEvents:
    """Server-sent events cut out of the bytes as they come: (event name, its data)."""

    __slots__ = ("_rest",)

    def __init__(self) -> None:
        self._rest = b""

    def feed(self, chunk: bytes) -> list[tuple[str, bytes]]:
        """The events `chunk` completes (an event cut across chunks waits for its end)."""
        buffer = self._rest + chunk if self._rest else chunk
        events: list[tuple[str, bytes]] = []
        start = 0
        for end in _EVENT_END.finditer(buffer):
            event = _parse(buffer[start : end.start()])
            if event is not None:
                events.append(event)
            start = end.end()
        self._rest = buffer[start:]
        return events


def _parse(block: bytes) -> tuple[str, bytes] | None:
    """One event's lines as (name, data); None for one without data (a comment)."""
    name = b"message"
    data: list[bytes] = []
    for line in _LINE_END.split(block):
        field, _, value = line.partition(b":")
        if value.startswith(b" "):
            value = value[1:]
        if field == b"event":
            name = value
        elif field == b"data":
            data.append(value)
    return (name.decode(), b"\n".join(data)) if data else None


class _Opened:
    """A stream's response once its first event has come: what was read, and the rest."""

    __slots__ = ("events", "first", "head", "reply", "sdk", "url")

    def __init__(
        self,
        sdk: anthropic.AsyncAnthropic,
        url: str,
        reply: Reply,
        head: list[bytes],
        events: SseEvents,
        first: list[tuple[str, bytes]],
    ) -> None:
        self.sdk = sdk
        self.url = url
        self.reply = reply
        self.head = head  # the chunks read to the end of the first event
        self.events = events  # what reads the rest (holding any part of an event read)
        self.first = first  # the events those chunks completed


class _Upstream:
    """What the ledger closes and reads the ``request-id`` from (an `AsyncStream`'s
    ``close()`` and ``response.headers``), over the raw response."""

    __slots__ = ("reply", "response")

    def __init__(self, reply: Reply) -> None:
        self.reply = reply
        self.response = self  # `response.headers`: the reply's own

    @property
    def headers(self) -> Mapping[str, str]:
        return self.reply.headers

    async def close(self) -> None:
        await self.reply.close()


class ForwardStreamRoute:
    """``messages.create(stream=True)`` forwarded: see the module's docstring. It sends by
    the non-streamed forwarding route's endpoints (one per SDK client)."""

    __slots__ = ("_route",)
    headers_at_start = True

    def __init__(self, route: ForwardRoute) -> None:
        self._route = route

    def plan(self, planner: Planner, params: Mapping[str, Any]) -> Plan:
        return planner.plan(params)

    async def send(self, sdk: anthropic.AsyncAnthropic, params: dict[str, Any]) -> _Opened:
        endpoint = self._route.endpoint(sdk)
        body, headers, query = request_parts({**params, "stream": True}, endpoint.headers)
        reply = await endpoint.open(sdk, body, headers, query)
        events = SseEvents()
        head: list[bytes] = []
        first: list[tuple[str, bytes]] = []
        try:
            async for chunk in reply.chunks():
                head.append(chunk)
                first = events.feed(chunk)
                if first:
                    name, data = first[0]
                    if name == "error":
                        raise _error_event(sdk, reply, data, endpoint.url)
                    break
        except BaseException as exc:
            await reply.close()
            if isinstance(exc, anthropic.APIStatusError):
                meaning = stream_error_meaning(exc, None, sdk)
                if meaning is not exc:
                    raise SendFailed(meaning, exc) from exc
                raise
            if isinstance(exc, Exception):
                raise failure(exc, endpoint.url) from exc
            raise
        return _Opened(sdk, endpoint.url, reply, head, events, first)

    def received(self, attempt: Attempt, result: Any) -> ForwardedStream:
        opened: _Opened = result
        upstream = cast("anthropic.AsyncStream[Any]", _Upstream(opened.reply))
        return ForwardedStream(opened, StreamLedger(attempt, upstream))


def _error_event(
    sdk: anthropic.AsyncAnthropic, reply: Reply, data: bytes, url: str
) -> anthropic.APIStatusError:
    """An ``error`` event as the SDK raises it (a status error of the 200 it came in)."""
    try:
        body: object = orjson.loads(data)
    except orjson.JSONDecodeError:
        body = data.decode("utf-8", "replace")
    response = httpx2.Response(
        200, headers=list(reply.headers.items()), request=httpx2.Request("POST", url)
    )
    return status_error(sdk, f"stream error event: {body}", body, response)


class ForwardedStream:
    """A live forwarded stream: its response's ``request_id``, then its bytes (`chunks`)
    as the upstream sent them. Read to its end, closed early or dropped, the ledger settles
    the reservation once; `error` is an ``error`` event's or a failed read's SDK error."""

    __slots__ = ("__weakref__", "_ledger", "_opened", "error")

    def __init__(self, opened: _Opened, ledger: StreamLedger) -> None:
        self._opened = opened
        self._ledger = ledger
        self.error: anthropic.APIError | None = None
        self._observe(opened.first)  # message_start: the input is known, even if never read
        weakref.finalize(self, ledger.collected, asyncio.get_running_loop()).atexit = False

    @property
    def request_id(self) -> str | None:
        return self._opened.reply.headers.get("request-id")

    @property
    def model(self) -> str:
        return self._ledger.model

    @property
    def usage(self) -> Usage | None:
        """The usage reported so far (``message_start``'s, then each ``message_delta``'s)."""
        return self._ledger.usage

    async def chunks(self) -> AsyncIterator[bytes]:
        """The upstream's bytes, each chunk once the events it completes are read."""
        opened = self._opened
        ledger = self._ledger
        try:
            for chunk in opened.head:
                yield chunk
            opened.head = []
            async for chunk in opened.reply.chunks():
                self._observe(opened.events.feed(chunk))
                yield chunk
        except Exception as exc:
            if isinstance(exc, anthropic.APIError):
                self.error = exc
                ledger.settle(exc)
                raise
            self.error = failure(exc, opened.url)
            ledger.settle(self.error)
            raise self.error from exc
        finally:
            await ledger.aclose()

    async def close(self) -> None:
        """Close the response and settle the reservation (refunding what was not used)."""
        await self._ledger.aclose()

    def _observe(self, events: list[tuple[str, bytes]]) -> None:
        ledger = self._ledger
        for name, data in events:
            if name == "error":
                self.error = _error_event(
                    self._opened.sdk, self._opened.reply, data, self._opened.url
                )
                ledger.settle(self.error)  # as `ThriftEventStream` settles the SDK's
            elif name in _SETTLING or (ledger.cache_key is not None and name in _MESSAGE_EVENTS):
                ledger.observe(build_event(orjson.loads(data)))
            elif name == "content_block_delta":
                delta = orjson.loads(data).get("delta") or {}
                text = delta.get(_DELTA_TEXT.get(str(delta.get("type")), ""))
                if isinstance(text, str):
                    ledger.delivered += text_tokens(text)


class ReplayedStream:
    """A cached answer or a twin's, as the event stream the API would have sent for it
    (`replay_events`), written as server-sent events; nothing is sent or reserved."""

    __slots__ = ("_message", "error")

    def __init__(self, message: Message) -> None:
        self._message = message
        self.error: anthropic.APIError | None = None

    @property
    def request_id(self) -> str | None:
        return self._message.id  # as `ReplayStream`'s synthetic response says

    @property
    def model(self) -> str:
        return self._message.model

    @property
    def usage(self) -> Usage | None:
        return self._message.usage

    async def chunks(self) -> AsyncIterator[bytes]:
        for event in replay_events(self._message):
            data = event.to_json(indent=None).encode()
            yield b"event: " + event.type.encode() + b"\ndata: " + data + b"\n\n"

    async def close(self) -> None:
        return None
