"""Streaming under the scheduler, with the SDK's own stream types.

``await client.messages.create(..., stream=True)`` returns an `anthropic.AsyncStream` of the
SDK's raw events and ``async with client.messages.stream(...) as s`` yields the SDK's
`AsyncMessageStream` (``text_stream``, ``get_final_message()``, ...), built over that stream.
The SDK is used as is: we call ``sdk.messages.create(stream=True)`` on the admitted key's
client, whose `AsyncStream` already carries the HTTP response (headers for the budget
resync), and wrap it in `ThriftEventStream`, an `AsyncStream` subclass that passes every event
through unchanged while it keeps the books. So the caller sees exactly the events, types,
errors and ``request_id`` the bare SDK would give.

The books, per stream:

* **Admission** is the non-streamed path's: estimate, reserve ``max_tokens`` of output, wait in
  the lane (`Thrift._plan`, `Thrift._admit`).
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
  Whatever happens, the reservation is settled exactly once.
* **Cache and dedupe.** A request whose answer is cached, or whose twin is in flight (a
  non-streamed call, say), is answered by replaying that `Message` as a well-formed event
  sequence (`replay_events`); a streamed answer read to the end is stored in the cache like
  any other. A live stream does not register itself for dedupe: its pace is its reader's,
  and a joiner could not get a complete answer from a reader that stops half-way.
"""

from __future__ import annotations

import asyncio
import logging
import math
import weakref
from collections.abc import AsyncIterator, Mapping
from types import TracebackType
from typing import TYPE_CHECKING, Any, Final, cast

import anthropic
import httpx2
import orjson
from anthropic import AsyncStream
from anthropic._models import construct_type
from anthropic.lib.streaming import AsyncMessageStream
from anthropic.types import (
    InputJSONDelta,
    Message,
    RawContentBlockDeltaEvent,
    RawMessageDeltaEvent,
    RawMessageStartEvent,
    RawMessageStopEvent,
    RawMessageStreamEvent,
    TextDelta,
    ThinkingDelta,
    Usage,
)

from ._options import RequestOptions, split_options
from .cache.base import encode_message, is_cacheable
from .cache.keys import fingerprint
from .client import _Attempts
from .metrics import RequestRecord, hub_for, status_of
from .tokens import text_tokens

if TYPE_CHECKING:
    from anthropic.types.parsed_message import ParsedMessage

    from .client import Thrift, _Plan
    from .metrics import _Hub
    from .scheduler import Reservation

__all__ = [
    "REPLAY_HEADER",
    "ReplayStream",
    "ThriftEventStream",
    "ThriftStreamManager",
    "open_event_stream",
    "replay_events",
]

log = logging.getLogger("asyncthrift")

REPLAY_HEADER: Final = "x-asyncthrift-replay"
"""Response header of a replayed stream: ``cache`` or ``dedupe`` (absent on a live stream)."""

#: What an ``error`` event's type means as an HTTP status, to decide retries and refunds the
#: way the non-streamed path does for the same error.
_EVENT_ERROR_STATUS: Final = {
    "rate_limit_error": 429,
    "overloaded_error": 529,
    "api_error": 500,
    "timeout_error": 504,
}

#: Tasks closing streams that were dropped without being closed (kept alive until done).
_CLOSING: set[asyncio.Task[None]] = set()


# -- the entry points ---------------------------------------------------------------------------


async def open_event_stream(
    client: Thrift, kwargs: dict[str, Any]
) -> AsyncStream[RawMessageStreamEvent]:
    """``messages.create(stream=True)``: admitted, opened and holding its first event.

    Returns the SDK's `AsyncStream` type: a `ThriftEventStream` over a live response, or a
    `ReplayStream` of a cached or shared answer.
    """
    kwargs = dict(kwargs)
    kwargs.pop("stream", None)
    opts, params = split_options(kwargs)
    if client._closed:
        raise RuntimeError("this Thrift client is closed; create a new one")
    hub = hub_for(client)
    rec = hub.start("stream", params.get("model"), opts.level)
    stats = client._stats
    stats.requests += 1
    started = asyncio.get_running_loop().time()
    try:
        with hub.activate(rec):
            stream = await _lookup_or_open(client, params, opts, hub, rec, started)
    except BaseException as exc:
        stats.failed += 1
        hub.finish(rec, exc)
        raise
    return stream


class ThriftStreamManager:
    """``async with client.messages.stream(...) as stream``: the SDK's `AsyncMessageStream`.

    Nothing is sent until the ``async with`` is entered; leaving it closes the stream (and
    settles its reservation) however the block ends. ``output_format=`` works as in the SDK.
    """

    __slots__ = ("_client", "_kwargs", "_stream")

    def __init__(self, client: Thrift, kwargs: dict[str, Any]) -> None:
        self._client = client
        self._kwargs = kwargs
        self._stream: AsyncMessageStream[Any] | None = None

    async def __aenter__(self) -> AsyncMessageStream[Any]:
        kwargs = dict(self._kwargs)
        output_format = kwargs.pop("output_format", None)
        if output_format is not None:
            kwargs["output_config"] = _output_config(output_format, kwargs.get("output_config"))
        raw = await open_event_stream(self._client, kwargs)
        fmt: Any = anthropic.NOT_GIVEN if output_format is None else output_format
        self._stream = AsyncMessageStream(raw, output_format=fmt)
        return self._stream

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._stream is not None:
            stream, self._stream = self._stream, None
            await stream.close()


def _output_config(output_format: Any, output_config: Any) -> dict[str, Any]:
    """``output_config`` with ``format`` built from a pydantic type, exactly as the SDK does."""
    if isinstance(output_format, Mapping):
        raise TypeError(
            "`output_format` must be a type; pass a schema dict as "
            "`output_config={'format': ...}` instead"
        )
    from anthropic.lib._parse._transform import cached_json_schema, transform_schema
    from pydantic import TypeAdapter

    schema = cached_json_schema(TypeAdapter(output_format))
    fmt = {"type": "json_schema", "schema": transform_schema(schema)}
    return {**(output_config or {}), "format": fmt}


# -- the request path ---------------------------------------------------------------------------


async def _lookup_or_open(
    client: Thrift,
    params: dict[str, Any],
    opts: RequestOptions,
    hub: _Hub,
    rec: RequestRecord | None,
    started: float,
) -> AsyncStream[RawMessageStreamEvent]:
    """Cache, then a twin in flight, then a live stream (the order of the non-streamed path)."""
    use_cache = client._cache is not None and opts.cache is not False
    use_dedupe = client._dedupe if opts.dedupe is None else opts.dedupe
    key: str | None = None
    if use_cache or use_dedupe:
        key = fingerprint(params, scope=client._keys[0].scope)
    if use_cache and key is not None:
        message = await client._cached(key)  # counts the hit (and what it saved) or the miss
        if message is not None:
            return _replayed(client, message, "cache", hub, rec, started)
    if use_dedupe and key is not None and client._flight.has(key):
        k = key
        message, joined = await client._flight.do_joined(
            k, lambda: client._fetch_and_store(k, params, opts, use_cache)
        )
        if joined:
            client._count_saved(message, cache_hit=False)
        return _replayed(client, message, "dedupe", hub, rec, started)
    return await _open_live(client, params, opts, key if use_cache else None, hub, rec, started)


def _replayed(
    client: Thrift,
    message: Message,
    source: str,
    hub: _Hub,
    rec: RequestRecord | None,
    started: float,
) -> ReplayStream:
    stats = client._stats
    stats.succeeded += 1
    stats.latencies.append(asyncio.get_running_loop().time() - started)
    hub.finish(rec, None)
    return ReplayStream(message, source=source, sdk=client._keys[0].sdk)


async def _open_live(
    client: Thrift,
    params: dict[str, Any],
    opts: RequestOptions,
    cache_key: str | None,
    hub: _Hub,
    rec: RequestRecord | None,
    started: float,
) -> ThriftEventStream:
    """Admit, open and read the first event; retry what fails before it like any call."""
    plan = client._plan(params)
    attempt = _Attempts(asyncio.get_running_loop().time())
    while True:
        reservation = await client._admit(plan, opts, attempt)
        try:
            return await _attempt(client, plan, reservation, params, cache_key, hub, rec, started)
        except _RetryableBeforeFirstEvent as wrapped:
            delay = client._retry_delay(wrapped.decision, attempt)
            if delay is None:
                raise wrapped.original from None
        except (anthropic.APIStatusError, anthropic.APIConnectionError) as exc:
            delay = client._retry_delay(exc, attempt)
            if delay is None:
                raise
        if delay > 0:
            await asyncio.sleep(delay)


class _RetryableBeforeFirstEvent(Exception):
    """An error that ended a stream before its first event, with what it means for retries.

    `decision` is the equivalent `APIStatusError`/`APIConnectionError` (an ``overloaded_error``
    event is a 529); `original` is what the SDK raised, which the caller gets if no retry is
    left.
    """

    def __init__(self, decision: BaseException, original: BaseException) -> None:
        super().__init__(str(original))
        self.decision = decision
        self.original = original


async def _attempt(
    client: Thrift,
    plan: _Plan,
    reservation: Reservation,
    params: dict[str, Any],
    cache_key: str | None,
    hub: _Hub,
    rec: RequestRecord | None,
    started: float,
) -> ThriftEventStream:
    """One HTTP attempt: open the stream under `reservation` and read its first event."""
    key = client._keys[reservation.index]
    stats = client._stats
    stats.in_flight += 1
    up_started = hub.upstream_started(rec, key.name)
    upstream: AsyncStream[RawMessageStreamEvent] | None = None
    try:
        with hub.activate(rec):
            upstream = await key.sdk.messages.create(**params, stream=True)
            try:
                first: RawMessageStreamEvent | None = await upstream.__anext__()
            except StopAsyncIteration:
                first = None
    except BaseException as exc:
        stats.in_flight -= 1
        if upstream is not None:
            await _close_quietly(upstream)
        decision = _before_first_event(exc, upstream, key.sdk)
        client._on_failure(plan, reservation, decision)
        hub.upstream_finished(rec, status_of(decision), exc, up_started)
        if decision is not exc:
            raise _RetryableBeforeFirstEvent(decision, exc) from exc
        raise
    client._on_response_headers(plan, reservation, upstream.response.headers)
    ledger = _Ledger(
        client, plan, reservation, upstream, params, cache_key, hub, rec, started, up_started
    )
    return ThriftEventStream(upstream, first, ledger)


def _before_first_event(
    exc: BaseException,
    upstream: AsyncStream[RawMessageStreamEvent] | None,
    sdk: anthropic.AsyncAnthropic,
) -> BaseException:
    """What `exc`, raised before the first event, means for retries and refunds.

    An HTTP error status or a failed connect is already what the non-streamed path sees. An
    ``error`` event in a 200 response becomes the status error its type stands for, and a
    connection dropped while reading becomes an `APIConnectionError`; anything else (a
    cancellation, a 200 error of another type) is returned as is.
    """
    if isinstance(exc, anthropic.APIStatusError) and exc.status_code == 200:
        body = exc.body
        kind = None
        if isinstance(body, Mapping):
            err = body.get("error")
            kind = err.get("type") if isinstance(err, Mapping) else None
        status = _EVENT_ERROR_STATUS.get(kind) if isinstance(kind, str) else None
        if status is None:
            return exc
        response = httpx2.Response(status, headers=exc.response.headers, request=exc.request)
        return sdk._make_status_error(str(exc), body=body, response=response)
    if isinstance(exc, httpx2.TransportError) and upstream is not None:
        return anthropic.APIConnectionError(request=upstream.response.request)
    return exc


async def _close_quietly(stream: AsyncStream[Any]) -> None:
    try:
        await stream.close()
    except Exception:  # closing a broken response: nothing left to save
        pass


# -- the live stream ----------------------------------------------------------------------------


class _Ledger:
    """The books of one live streamed attempt; settles its reservation exactly once.

    Shared by the stream the caller holds and the copy the SDK's iterator runs on.
    """

    __slots__ = (
        "cache_key",
        "client",
        "closed",
        "complete",
        "delivered",
        "hub",
        "json_bufs",
        "model",
        "plan",
        "rec",
        "reservation",
        "settled",
        "snapshot",
        "started",
        "up_started",
        "upstream",
        "usage",
    )

    def __init__(
        self,
        client: Thrift,
        plan: _Plan,
        reservation: Reservation,
        upstream: AsyncStream[RawMessageStreamEvent],
        params: Mapping[str, Any],
        cache_key: str | None,
        hub: _Hub,
        rec: RequestRecord | None,
        started: float,
        up_started: float,
    ) -> None:
        self.client = client
        self.plan = plan
        self.reservation = reservation
        self.upstream = upstream
        self.model: str = params["model"]
        self.cache_key = cache_key
        self.hub = hub
        self.rec = rec
        self.started = started
        self.up_started = up_started
        self.usage: Usage | None = None
        self.delivered = 0.0
        self.complete = False
        self.settled = False
        self.closed = False
        self.snapshot: ParsedMessage[Any] | None = None
        self.json_bufs: dict[int, bytes] = {}

    def observe(self, event: RawMessageStreamEvent) -> None:
        """Account for one event on its way to the caller."""
        if isinstance(event, RawContentBlockDeltaEvent):
            d = event.delta
            if isinstance(d, TextDelta):
                self.delivered += text_tokens(d.text)
            elif isinstance(d, InputJSONDelta):
                self.delivered += text_tokens(d.partial_json)
            elif isinstance(d, ThinkingDelta):
                self.delivered += text_tokens(d.thinking)
        elif isinstance(event, RawMessageStartEvent):
            self.usage = event.message.usage
            self.model = event.message.model or self.model
        elif isinstance(event, RawMessageDeltaEvent):
            self._merge_usage(event.usage)
        if self.cache_key is not None:
            self._accumulate(event)
        if isinstance(event, RawMessageStopEvent):
            self.complete = True
            self.settle(None)

    def _merge_usage(self, delta: Any) -> None:
        """Fold a ``message_delta``'s cumulative usage into what ``message_start`` reported."""
        update = {
            name: value
            for name in (
                "output_tokens",
                "input_tokens",
                "cache_creation_input_tokens",
                "cache_read_input_tokens",
                "server_tool_use",
            )
            if (value := getattr(delta, name, None)) is not None
        }
        if self.usage is None:
            self.usage = Usage.model_construct(**{"input_tokens": 0, "output_tokens": 0, **update})
        else:
            self.usage = self.usage.model_copy(update=update)

    def _accumulate(self, event: RawMessageStreamEvent) -> None:
        from anthropic.lib.streaming._messages import accumulate_event

        try:
            self.snapshot = accumulate_event(
                event=event, current_snapshot=self.snapshot, json_bufs=self.json_bufs
            )
        except Exception:  # an event we cannot fold: serve the stream, just do not cache it
            log.debug("streamed answer not cacheable: could not accumulate", exc_info=True)
            self.cache_key = None
            self.snapshot = None

    def settle(self, error: BaseException | None) -> None:
        """Reconcile the reservation (once). `error`: why the stream ended early, if it did."""
        if self.settled:
            return
        self.settled = True
        client = self.client
        stats = client._stats
        stats.in_flight -= 1
        usage = self.usage
        if usage is not None:
            if not self.complete:
                # Ended early: charge what the server reported or what we saw, whichever is
                # larger (a message_delta is often only sent at the end).
                produced = max(usage.output_tokens, math.ceil(self.delivered))
                usage = usage.model_copy(update={"output_tokens": produced})
            client._on_usage(self.plan, self.reservation, self.model, usage)
        else:
            client._on_failure(self.plan, self.reservation, error or asyncio.CancelledError())
        if not self.complete:
            _count_stream_error(client, error)
        status = 200 if error is None else status_of(error)
        self.hub.upstream_finished(self.rec, status, error, self.up_started)
        if self.complete:
            stats.succeeded += 1
            stats.latencies.append(asyncio.get_running_loop().time() - self.started)
            self.hub.finish(self.rec, None)
        else:
            stats.failed += 1
            self.hub.finish(self.rec, error or asyncio.CancelledError())

    async def aclose(self) -> None:
        """Settle (abandoned if not complete), close the response, store a complete answer."""
        if self.closed:
            return
        self.closed = True
        self.settle(None)
        await _close_quietly(self.upstream)
        if self.complete and self.cache_key is not None and self.snapshot is not None:
            await self._store(self.cache_key, self.snapshot)

    async def _store(self, key: str, snapshot: ParsedMessage[Any]) -> None:
        client = self.client
        cache = client._cache
        if cache is None:
            return
        try:
            message = Message.model_validate(snapshot.to_dict(mode="json"))
        except Exception:
            log.debug("streamed answer not cacheable: not a valid Message", exc_info=True)
            return
        if is_cacheable(message, client._cache_truncated):
            await cache.set(key, encode_message(message), client._cache_ttl)

    def collected(self, loop: asyncio.AbstractEventLoop) -> None:
        """The stream was garbage-collected unclosed: close and settle it on the loop soon.

        Never settles here directly: a collection can run in the middle of the scheduler's
        own bookkeeping, which a refund must not re-enter.
        """
        if self.closed or loop.is_closed():
            return
        try:
            loop.call_soon_threadsafe(self._spawn_close)
        except RuntimeError:  # the loop closed meanwhile
            pass

    def _spawn_close(self) -> None:
        if self.closed:
            return
        task = asyncio.ensure_future(self.aclose())
        _CLOSING.add(task)
        task.add_done_callback(_CLOSING.discard)


def _count_stream_error(client: Thrift, error: BaseException | None) -> None:
    stats = client._stats
    if isinstance(error, anthropic.APIStatusError):
        kind = _EVENT_ERROR_STATUS.get(_error_type(error) or "", error.status_code)
        if kind == 429:
            stats.rate_limited += 1
        elif kind == 529:
            stats.overloaded += 1
        elif kind >= 500:
            stats.server_errors += 1
    elif isinstance(error, anthropic.APIConnectionError | httpx2.TransportError):
        stats.connection_errors += 1


def _error_type(error: anthropic.APIStatusError) -> str | None:
    body = error.body
    if isinstance(body, Mapping):
        err = body.get("error")
        if isinstance(err, Mapping):
            kind = err.get("type")
            return kind if isinstance(kind, str) else None
    return None


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
        ledger: _Ledger,
    ) -> None:
        super().__init__(
            cast_to=RawMessageStreamEvent,  # type: ignore[arg-type]
            response=upstream.response,
            client=upstream._client,
            options=upstream._options,
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


# -- replays ------------------------------------------------------------------------------------


class ReplayStream(AsyncStream[RawMessageStreamEvent]):
    """A cached or shared `Message` served as the SDK's `AsyncStream` of raw events.

    Nothing is sent and nothing is reserved. ``response`` is a synthetic 200 whose
    ``request-id`` is the message id and whose `REPLAY_HEADER` says where the answer came from.
    """

    def __init__(self, message: Message, *, source: str, sdk: anthropic.AsyncAnthropic) -> None:
        response = httpx2.Response(
            200,
            headers={"request-id": message.id, REPLAY_HEADER: source},
            request=httpx2.Request("POST", str(sdk.base_url).rstrip("/") + "/v1/messages"),
        )
        super().__init__(
            cast_to=RawMessageStreamEvent,  # type: ignore[arg-type]
            response=response,
            client=sdk,
        )
        self._message = message
        self.source = source

    async def __stream__(self) -> AsyncIterator[RawMessageStreamEvent]:
        for event in replay_events(self._message):
            yield event


def _event(data: dict[str, Any]) -> RawMessageStreamEvent:
    """An event built exactly as the SDK builds one from the wire."""
    event = construct_type(type_=RawMessageStreamEvent, value=data)
    return cast("RawMessageStreamEvent", event)


def replay_events(message: Message) -> list[RawMessageStreamEvent]:
    """The event sequence the API would stream for `message`, one delta per block.

    Accumulating it (the SDK's `AsyncMessageStream.get_final_message()`) gives back `message`:
    ``message_start`` carries the input usage and an output count of 1, as the API's does;
    ``message_delta`` carries the stop reason and the full usage.
    """
    dump = message.model_dump(mode="json", exclude_unset=True)
    usage = dict(dump.get("usage") or {})
    start = {
        **dump,
        "content": [],
        "stop_reason": None,
        "stop_sequence": None,
        "usage": {**usage, "output_tokens": min(1, usage.get("output_tokens", 0))},
    }
    events = [_event({"type": "message_start", "message": start})]
    for index, block in enumerate(dump.get("content") or []):
        first, deltas = _block_events(block)
        start_event = {"type": "content_block_start", "index": index, "content_block": first}
        events.append(_event(start_event))
        events.extend(
            _event({"type": "content_block_delta", "index": index, "delta": d}) for d in deltas
        )
        events.append(_event({"type": "content_block_stop", "index": index}))
    delta_usage = {
        k: v
        for k, v in usage.items()
        if k
        in (
            "output_tokens",
            "input_tokens",
            "cache_creation_input_tokens",
            "cache_read_input_tokens",
            "server_tool_use",
        )
    }
    events.append(
        _event(
            {
                "type": "message_delta",
                "delta": {
                    "stop_reason": dump.get("stop_reason"),
                    "stop_sequence": dump.get("stop_sequence"),
                },
                "usage": delta_usage,
            }
        )
    )
    events.append(_event({"type": "message_stop"}))
    return events


def _block_events(block: dict[str, Any]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """A content block as (its ``content_block_start`` form, its deltas)."""
    kind = block.get("type")
    if kind == "text":
        start: dict[str, Any] = {**block, "text": ""}
        deltas: list[dict[str, Any]] = []
        if block.get("text"):
            deltas.append({"type": "text_delta", "text": block["text"]})
        citations = block.get("citations")
        if citations:
            start["citations"] = []
            deltas.extend({"type": "citations_delta", "citation": c} for c in citations)
        return start, deltas
    if kind in ("tool_use", "server_tool_use"):
        partial = orjson.dumps(block.get("input") or {}).decode()
        return {**block, "input": {}}, [{"type": "input_json_delta", "partial_json": partial}]
    if kind == "thinking":
        deltas = [{"type": "thinking_delta", "thinking": block.get("thinking", "")}]
        if block.get("signature"):
            deltas.append({"type": "signature_delta", "signature": block["signature"]})
        return {**block, "thinking": "", "signature": ""}, deltas
    # redacted_thinking, server tool results and anything newer arrive whole at the start
    return block, []
