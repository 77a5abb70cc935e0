"""Streaming under the scheduler, with the SDK's own stream types.

``await client.messages.create(..., stream=True)`` returns an `anthropic.AsyncStream` of the
SDK's raw events and ``async with client.messages.stream(...) as s`` yields the SDK's
`AsyncMessageStream` (``text_stream``, ``get_final_message()``, ...), built over that stream.
The SDK is used as is: we call ``sdk.messages.create(stream=True)`` on the admitted key's
client, whose `AsyncStream` already carries the HTTP response (headers for the budget
resync), and wrap it in `ThriftEventStream`, an `AsyncStream` subclass that passes every event
through unchanged while it keeps the books. So the caller sees exactly the events, types,
errors and ``request_id`` the bare SDK would give.

The books, per stream (a `StreamLedger`, kept in `_stream_ledger`: accounting, not transport):

* **Admission** is the non-streamed path's: a stream is a *route* of the one pipeline
  (`asyncthrift.client._pipeline`), which estimates, reserves ``max_tokens`` of output, waits in the
  lane and retries; only its innermost send differs.
* **Opening reads the first event** before handing the stream over. A 429/529 (or an
  ``error`` event, or a dropped connection) before it is retried through the scheduler like
  any failed call, invisibly to the caller; ``message_start`` brings the true input tokens.
* **Reconciliation** happens when ``message_stop`` arrives, from ``message_start`` and the
  cumulative ``message_delta`` usage: the unused output reservation goes back at once.
* **Abandoning** a stream half-way (``close()``, leaving the ``async with``, breaking out and
  dropping it, cancelling the reader) closes the HTTP response and settles the reservation
  with the input the server reported and the output delivered so far (the larger of the
  last reported count and an estimate of the deltas received); the rest is refunded. An
  error event mid-stream surfaces as the SDK's own `APIStatusError` and settles the same way.
  Whatever happens, the pipeline's `Attempt` settles the reservation exactly once.
* **Cache and dedupe.** A request whose answer is cached, or whose twin is in flight (a
  non-streamed call, say), is answered by replaying that `Message` as a well-formed event
  sequence (`asyncthrift.pipeline.replay`); a streamed answer read to the end is stored in
  the cache like any other. A live stream does not register itself for dedupe: its pace
  is its reader's, and a joiner could not get a complete answer from a reader that stops half-way.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from types import TracebackType
from typing import Any, Final, Generic, Protocol

import anthropic
import httpx2
from anthropic import AsyncStream
from anthropic.lib.streaming import AsyncMessageStream, BetaAsyncMessageStream
from anthropic.types import RawMessageStreamEvent

from ..core._sdk import ResponseFormatT, stream_parts, with_output_format
from ..pipeline._attempt import Attempt, Call, Plan, Planner, Route, SendFailed
from ..pipeline._routes import BETA_MESSAGES, MESSAGES, Resource, stream_error_meaning
from ..pipeline._stream_ledger import StreamLedger, close_quietly
from ..pipeline.replay import REPLAY_HEADER, ReplayStream, replay_events
from ._pipeline import Pipeline

__all__ = [
    "BETA_STREAM",
    "REPLAY_HEADER",
    "BetaStreamManager",
    "Closable",
    "RawStreamResponse",
    "ReplayStream",
    "StreamManager",
    "ThriftEventStream",
    "ThriftStreamManager",
    "open_event_stream",
    "replay_events",
]


class Closable(Protocol):
    """What a stream manager closes when its block ends (and a raw response, its caller)."""

    async def close(self) -> None: ...


# -- the entry points ---------------------------------------------------------------------------


async def open_event_stream(
    pipeline: Pipeline, call: Call, route: Route | None = None
) -> AsyncStream[RawMessageStreamEvent]:
    """``messages.create(stream=True)``: admitted, opened and holding its first event.

    Returns the SDK's `AsyncStream` type: a `ThriftEventStream` over a live response, or a
    `ReplayStream` of a cached or shared answer. `route`: `BETA_STREAM` for
    ``beta.messages`` (default `STREAM`).
    """
    # a live stream's end is recorded when its reader finishes (`StreamLedger.settle`)
    return await pipeline.bracket(
        call, _lookup_or_open(pipeline, call, route or STREAM), ends=False
    )


async def _lookup_or_open(
    pipeline: Pipeline, call: Call, route: Route
) -> AsyncStream[RawMessageStreamEvent]:
    """Cache, then a twin in flight, then a live stream (the order of the non-streamed path)."""
    if call.key is not None:
        message, source = await pipeline.answers.lookup(pipeline, call, lead=False)
        if message is not None:
            pipeline.finish(call, None)
            return ReplayStream(message, source=source, sdk=call.sdks[0])
    stream: ThriftEventStream = await pipeline.run(call, route)
    return stream


class StreamManager:
    """What ``messages.stream(...)`` and ``beta.messages.stream(...)`` share: nothing is sent
    until the ``async with`` is entered (`_send`); leaving it closes the stream (and settles
    its reservation) however the block ends. Each subclass wraps the scheduled raw stream
    in its SDK stream type."""

    __slots__ = ("_kwargs", "_open", "_stream")

    def __init__(
        self,
        open_stream: Callable[[dict[str, Any]], Awaitable[AsyncStream[Any]]],
        kwargs: dict[str, Any],
    ) -> None:
        self._open = open_stream
        self._kwargs = kwargs
        self._stream: Closable | None = None

    async def _send(self) -> tuple[AsyncStream[Any], Any]:
        """The scheduled raw stream (``output_format`` merged into ``output_config`` as the
        SDK merges it), and the ``output_format`` for the SDK's stream type."""
        output_format, kwargs = with_output_format(self._kwargs)
        raw = await self._open(kwargs)
        return raw, anthropic.NOT_GIVEN if output_format is None else output_format

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._stream is not None:
            stream, self._stream = self._stream, None
            await stream.close()


class ThriftStreamManager(StreamManager, Generic[ResponseFormatT]):
    """``async with client.messages.stream(...) as stream``: the SDK's `AsyncMessageStream`
    (see `StreamManager`). ``output_format=`` works as in the SDK."""

    __slots__ = ()

    async def __aenter__(self) -> AsyncMessageStream[ResponseFormatT]:
        raw, output_format = await self._send()
        stream: AsyncMessageStream[ResponseFormatT] = AsyncMessageStream(
            raw, output_format=output_format
        )
        self._stream = stream
        return stream


class BetaStreamManager(StreamManager, Generic[ResponseFormatT]):
    """``async with client.beta.messages.stream(...) as stream``: the SDK's
    `BetaAsyncMessageStream` over a scheduled stream (see `StreamManager`)."""

    __slots__ = ()

    async def __aenter__(self) -> BetaAsyncMessageStream[ResponseFormatT]:
        raw, output_format = await self._send()
        stream: BetaAsyncMessageStream[ResponseFormatT] = BetaAsyncMessageStream(
            raw, output_format=output_format
        )
        self._stream = stream
        return stream


# -- the route ----------------------------------------------------------------------------------


class _StreamRoute:
    """The pipeline's innermost step for a stream: open it and read its first event."""

    __slots__ = ("resource",)
    headers_at_start = True

    def __init__(self, resource: Resource = MESSAGES) -> None:
        self.resource = resource

    def plan(self, planner: Planner, params: Mapping[str, Any]) -> Plan:
        return planner.plan(params)

    async def send(self, sdk: anthropic.AsyncAnthropic, params: dict[str, Any]) -> Any:
        upstream: AsyncStream[RawMessageStreamEvent] | None = None
        try:
            upstream = await self.resource(sdk).create(**params, stream=True)
            try:
                first: RawMessageStreamEvent | None = await upstream.__anext__()
            except StopAsyncIteration:
                first = None
        except BaseException as exc:
            if upstream is not None:
                await close_quietly(upstream)
            meaning = stream_error_meaning(exc, upstream, sdk)
            if meaning is not exc:
                raise SendFailed(meaning, exc) from exc
            raise
        return upstream, first

    def received(self, attempt: Attempt, result: Any) -> Any:
        upstream, first = result
        return ThriftEventStream(upstream, first, StreamLedger(attempt, upstream))


STREAM: Final[Route] = _StreamRoute()
BETA_STREAM: Final[Route] = _StreamRoute(BETA_MESSAGES)


# -- the live stream ----------------------------------------------------------------------------


class ThriftEventStream(AsyncStream[RawMessageStreamEvent]):
    """The SDK's `AsyncStream` of raw events over one admitted response, with its books.

    Every event is the SDK's own object, passed through unchanged and in order; ``response``
    is the live HTTP response. ``close()`` (or ``async with``) closes the response and settles
    the reservation; a stream dropped without closing is closed and settled when collected.
    """

    def __init__(
        self,
        upstream: AsyncStream[RawMessageStreamEvent],
        first: RawMessageStreamEvent | None,
        ledger: StreamLedger,
    ) -> None:
        client, options = stream_parts(upstream)
        super().__init__(
            cast_to=RawMessageStreamEvent,  # type: ignore[arg-type]
            response=upstream.response,
            client=client,
            options=options,
        )
        self._upstream = upstream
        self._first = first
        self._ledger = ledger
        if first is not None:
            ledger.observe(first)  # message_start: the input is known, even if never read
        weakref.finalize(self, ledger.collected, asyncio.get_running_loop()).atexit = False

    async def __stream__(self) -> AsyncIterator[RawMessageStreamEvent]:
        ledger = self._ledger
        try:
            if self._first is not None:
                yield self._first
            async for event in self._upstream:
                ledger.observe(event)
                yield event
        except Exception as exc:
            ledger.settle(exc)
            raise
        finally:
            await ledger.aclose()

    # The upstream stream already reports each event to the SDK's tracing observer (shared
    # through `response`); reporting them again here would count every event twice.
    async def __anext__(self) -> RawMessageStreamEvent:
        return await self._iterator.__anext__()

    async def __aiter__(self) -> AsyncIterator[RawMessageStreamEvent]:
        async for event in self._iterator:
            yield event

    async def close(self) -> None:
        """Close the response and settle the reservation (refunding what was not used)."""
        await self._ledger.aclose()

    @property
    def settled(self) -> bool:
        """Whether the reservation has been reconciled (at ``message_stop`` or on close)."""
        return self._ledger.settled


class RawStreamResponse:
    """``messages.with_raw_response.create(stream=True)``: the response of a scheduled stream.

    As the SDK's raw response, it exposes the HTTP response (``headers``, ``status_code``,
    ``request_id``, ...) before the body is read, and ``await parse()`` gives the event
    stream. That stream is the scheduled `ThriftEventStream`, so reading, closing or dropping
    it settles the reservation as ``create(stream=True)`` does; the raw body is never handed
    out, since bytes read past the books could not be reconciled.
    """

    __slots__ = ("_stream", "retries_taken")

    def __init__(self, stream: ThriftEventStream, retries_taken: int = 0) -> None:
        self._stream = stream
        self.retries_taken = retries_taken

    @property
    def http_response(self) -> httpx2.Response:
        return self._stream.response

    @property
    def headers(self) -> httpx2.Headers:
        return self._stream.response.headers

    @property
    def status_code(self) -> int:
        return self._stream.response.status_code

    @property
    def request_id(self) -> str | None:
        return self._stream.response.headers.get("request-id")

    @property
    def url(self) -> httpx2.URL:
        return self._stream.response.url

    @property
    def method(self) -> str:
        return self._stream.response.request.method

    @property
    def is_closed(self) -> bool:
        return self._stream.response.is_closed

    async def parse(self) -> AsyncStream[RawMessageStreamEvent]:
        """The event stream (the same object on every call)."""
        return self._stream

    async def close(self) -> None:
        """Close the response and settle the reservation, read or not."""
        await self._stream.close()

    def __repr__(self) -> str:
        return f"<RawStreamResponse [{self.status_code}] stream>"
