"""``POST /v1/messages`` (JSON and SSE) and ``POST /v1/messages/count_tokens`` through the
shared `Thrift`: scheduled in the request's lane with its deadline, cached, deduplicated,
packed and retried as the library does for its own callers.

The body's fields go to the SDK's ``create`` by name; a field the installed SDK does not
know goes in ``extra_body``, so a new API field passes through. ``anthropic-beta`` goes on
as a header. A non-streamed answer is the upstream's bytes as they came (the library's
forwarding ``create``: cached, deduplicated and settled as ``create``, without the SDK's
request and response models; a cache hit or a packed answer is the `Message` written back
with the fields it was read with); a stream is the upstream's bytes too, written as they
arrive after the headers (the library's forwarding ``stream``: its usage read for settling,
a cached answer replayed as events). The upstream's ``request-id`` comes back with both.
"""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any, Final

from anthropic.resources.messages import AsyncMessages
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response, StreamingResponse
from starlette.types import Receive, Scope, Send

from ..client._forwarding import ForwardedStream, RawAnswer, ReplayedStream
from ..core.prices import usage_cost
from ..pipeline._forward import EARLY_ANSWER
from .early import ANSWERED, early_of
from .errors import envelope, failure_of
from .exchange import CURRENT, Exchange
from .inflight import Serving
from .intake import until_disconnect

__all__ = ["count_tokens", "create_message", "sdk_kwargs"]


def _params(method: Any) -> frozenset[str]:
    names = set(inspect.signature(method).parameters)
    return frozenset(names - {"self", "extra_headers", "extra_query", "extra_body", "timeout"})


CREATE_PARAMS: Final = _params(AsyncMessages.create)
COUNT_PARAMS: Final = _params(AsyncMessages.count_tokens)
#: Request headers passed on to the upstream (the SDK sets the rest, with its key).
FORWARDED_HEADERS: Final = ("anthropic-beta",)
SSE_HEADERS: Final = {"cache-control": "no-cache", "x-accel-buffering": "no"}


def sdk_kwargs(
    body: Mapping[str, Any],
    params: frozenset[str],
    headers: Mapping[str, str],
    query: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """The SDK call's arguments for `body`: known fields by name, the rest as ``extra_body``,
    ``anthropic-beta`` as an extra header, the query (the SDK's beta calls add
    ``?beta=true``) as ``extra_query``."""
    kwargs = {k: v for k, v in body.items() if k in params}
    extra = {k: v for k, v in body.items() if k not in params}
    if extra:
        kwargs["extra_body"] = extra
    forwarded = {h: headers[h] for h in FORWARDED_HEADERS if h in headers}
    if forwarded:
        kwargs["extra_headers"] = forwarded
    if query:
        kwargs["extra_query"] = dict(query)
    return kwargs


def query_of(request: Request) -> Mapping[str, str] | None:
    """The request's query (None when it has none: starlette would still parse it)."""
    return request.query_params if request.scope.get("query_string") else None


def _options(exchange: Exchange) -> dict[str, Any]:
    return {"priority": exchange.lane, "deadline": exchange.deadline}


def _request_id_headers(request_id: object) -> dict[str, str]:
    return {"request-id": request_id} if isinstance(request_id, str) and request_id else {}


async def create_message(request: Request, gateway: Serving, exchange: Exchange) -> Response:
    """``POST /v1/messages``: the answer, or (``"stream": true``) its event stream."""
    kwargs = sdk_kwargs(exchange.body, CREATE_PARAMS, request.headers, query_of(request))
    kwargs.pop("stream", None)
    if exchange.body.get("stream") is True:
        return await _stream(request, gateway, exchange, kwargs)
    CURRENT.set(exchange)
    early = early_of(request.scope)
    if early is None:
        return await _answer(request, gateway, exchange, kwargs)
    EARLY_ANSWER.set(early)  # written as soon as it is read: the books follow
    call = gateway.forwarded.create(**kwargs, **_options(exchange))
    try:
        answer = await until_disconnect(request.receive, call, answered=early.is_sent)
    except Exception:
        if early.answer is None:
            raise
        answer = early.answer  # the client has it; the library settled the call itself
    if not early.sent:  # a cache hit, a twin's, a packed answer: not through the route
        return await _respond(exchange, answer)
    await _finish(exchange, answer)
    return ANSWERED


async def _answer(
    request: Request, gateway: Serving, exchange: Exchange, kwargs: dict[str, Any]
) -> Response:
    """The answer once the library has settled it (off the shortcut's path)."""
    call = gateway.forwarded.create(**kwargs, **_options(exchange))
    answer = await until_disconnect(request.receive, call)
    return await _respond(exchange, answer)


async def _finish(exchange: Exchange, answer: RawAnswer) -> None:
    usage = answer.usage
    await exchange.finish(
        200,
        input_tokens=usage.input_tokens,
        output_tokens=usage.output_tokens,
        cost_usd=usage_cost(answer.model, usage),
    )


async def _respond(exchange: Exchange, answer: RawAnswer) -> Response:
    await _finish(exchange, answer)
    # the upstream's request-id (a cached answer keeps the one it was first answered with)
    return Response(
        answer.body, media_type="application/json", headers=_request_id_headers(answer.request_id)
    )


async def _stream(
    request: Request, gateway: Serving, exchange: Exchange, kwargs: dict[str, Any]
) -> Response:
    """Wait for admission and the first event (the client leaving meanwhile cancels it),
    then send the headers and pass the upstream's bytes on as they come."""
    CURRENT.set(exchange)
    call = gateway.forwarded.stream(**kwargs, **_options(exchange))
    stream = await until_disconnect(request.receive, call)
    headers = dict(SSE_HEADERS)
    headers.update(_request_id_headers(stream.request_id))
    ticket = gateway.inflight.enter()  # the body outlives the handler: keep draining honest
    return EventStreamResponse(stream, exchange, ticket.leave, headers)


class EventStreamResponse(StreamingResponse):
    """The forwarded stream's bytes (the upstream's server-sent events), each chunk written
    as it arrives.

    However the response ends (the last event, an error mid-stream, the client gone, or
    never started), the stream is closed (the library settles its reservation), the
    exchange settled with the usage seen, and the in-flight ticket given back, once each."""

    def __init__(
        self,
        source: ForwardedStream | ReplayedStream,
        exchange: Exchange,
        leave: Callable[[], None],
        headers: Mapping[str, str],
    ) -> None:
        self._source = source
        self._exchange = exchange
        self._leave = leave
        self._status = 200
        self._ended = False  # the source read to its end (or its error event written)
        super().__init__(self._events(), media_type="text/event-stream", headers=headers)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        except (ClientDisconnect, OSError):
            pass  # the client left mid-stream: no one to tell
        finally:
            if not self._ended:
                self._status = 499
            await self._close()

    async def _events(self) -> AsyncIterator[bytes]:
        """A failed read mid-stream ends it with an ``error`` event (the API's way); an
        ``error`` event the upstream sent is passed on as it came."""
        source = self._source
        try:
            async for chunk in source.chunks():
                yield chunk
        except Exception as exc:  # the headers are sent: the API's in-stream error event
            failure = failure_of(exc)
            self._status = failure.status
            yield _frame("error", failure.body or envelope(failure.status, failure.message))
        else:
            if source.error is not None:
                self._status = failure_of(source.error).status
        self._ended = True

    async def _close(self) -> None:
        source = self._source
        try:
            await source.close()
        finally:
            usage = source.usage
            await self._exchange.finish(
                self._status,
                input_tokens=0 if usage is None else usage.input_tokens,
                output_tokens=0 if usage is None else usage.output_tokens,
                cost_usd=0.0 if usage is None else usage_cost(source.model, usage),
            )
            self._leave()


def _frame(event: str, data: bytes) -> bytes:
    return b"event: " + event.encode() + b"\ndata: " + data + b"\n\n"


async def count_tokens(request: Request, gateway: Serving, exchange: Exchange) -> Response:
    """``POST /v1/messages/count_tokens``: on count_tokens' own budget; the upstream's bytes."""
    kwargs = sdk_kwargs(exchange.body, COUNT_PARAMS, request.headers, query_of(request))
    raw = gateway.thrift.messages.with_raw_response.count_tokens(**kwargs, **_options(exchange))
    response = await until_disconnect(request.receive, raw)
    content = await response.read()
    await exchange.finish(response.status_code)
    return Response(
        content,
        status_code=response.status_code,
        media_type="application/json",
        headers=_request_id_headers(response.headers.get("request-id")),
    )
