"""The raw-response views of the Messages facades: ``with_raw_response`` and
``with_streaming_response``, for ``client.messages`` and ``client.beta.messages`` alike.

Why a module of its own: these views answer the SDK's raw response types (headers,
``parse()``, a context manager that closes the response) instead of the parsed answer, but
go through the same pipeline, scheduled and retried, never cached or shared. They are one
implementation typed twice (plain and beta answers), so neither facade owns them.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from types import TracebackType
from typing import TYPE_CHECKING, Any, Generic, Literal, TypeVar, overload

import anthropic
from anthropic import AsyncAPIResponse

from ..pipeline._attempt import Route
from ..pipeline._options import stream_requested
from ..pipeline._routes import MESSAGES, RAW_CREATE, Resource
from ._forwarding import ForwardedMessages
from ._pipeline import COUNT_TOKENS_CLASS, Pipeline
from .counting import count_tokens, split_count_kwargs
from .streaming import STREAM, Closable, RawStreamResponse, ThriftEventStream, open_event_stream

if TYPE_CHECKING:
    from anthropic import Omit

__all__ = ["RawMessages", "StreamedResponse", "StreamingMessages"]

_M = TypeVar("_M")  # the answer of create: Message, or BetaMessage
_C = TypeVar("_C")  # the answer of count_tokens: MessageTokensCount, or its beta twin
_R = TypeVar("_R", bound=Closable)  # a raw response: AsyncAPIResponse, RawStreamResponse


class RawMessages(Generic[_M, _C]):
    """`client.messages.with_raw_response` (and ``beta.messages``'s): `create` and
    `count_tokens` answering the SDK's `AsyncAPIResponse`, as the SDK's ``with_raw_response``
    does, through the pipeline (scheduled, retried, never cached or shared)."""

    __slots__ = ("_create", "_max_retries", "_pipeline", "_resource", "_sdks", "_stream")

    def __init__(
        self,
        pipeline: Pipeline,
        sdks: Sequence[anthropic.AsyncAnthropic],
        max_retries: int,
        *,
        create: Route = RAW_CREATE,
        stream: Route = STREAM,
        resource: Resource = MESSAGES,
    ) -> None:
        self._pipeline = pipeline
        self._sdks = sdks
        self._max_retries = max_retries
        self._create = create
        self._stream = stream
        self._resource = resource

    @overload
    async def create(self, *, stream: Literal[True], **kwargs: Any) -> RawStreamResponse: ...

    @overload
    async def create(
        self, *, stream: Literal[False] | Omit = ..., **kwargs: Any
    ) -> AsyncAPIResponse[_M]: ...

    async def create(self, **kwargs: Any) -> AsyncAPIResponse[_M] | RawStreamResponse:
        """`messages.with_raw_response.create(...)`: the raw response of a scheduled call.

        With ``stream=True``, a `RawStreamResponse`: headers at once, ``await parse()`` the
        scheduled event stream (as the SDK's ``AsyncAPIResponse[AsyncStream[...]]``)."""
        p = self._pipeline
        if stream_requested(kwargs):
            kwargs = dict(kwargs)
            del kwargs["stream"]
            call = p.start("stream", kwargs, self._sdks, self._max_retries, shareable=False)
            stream = await open_event_stream(p, call, self._stream)  # finishes it if it fails
            assert isinstance(stream, ThriftEventStream)  # never a replay: not shareable
            return RawStreamResponse(stream, retries_taken=call.number)
        call = p.start("create", kwargs, self._sdks, self._max_retries, shareable=False)
        response: AsyncAPIResponse[_M] = await p.run_to_end(call, self._create)
        return response

    async def count_tokens(self, **kwargs: Any) -> AsyncAPIResponse[_C]:
        """`messages.with_raw_response.count_tokens(...)`: scheduled as `count_tokens` is."""
        calibrate, kwargs = split_count_kwargs(kwargs)
        p = self._pipeline
        call = p.start(COUNT_TOKENS_CLASS, kwargs, self._sdks, self._max_retries, shareable=False)
        response: AsyncAPIResponse[_C] = await count_tokens(
            p, call, calibrate, raw=True, resource=self._resource
        )
        return response

    def forwarding(self) -> ForwardedMessages:
        """``create`` for a proxy: the answer's bytes as the upstream sent them, with the
        cache, dedupe and everything else of ``create`` (`ForwardedMessages`; keep the one
        this makes: it holds its calls in flight)."""
        beta = self._resource is not MESSAGES
        return ForwardedMessages(self._pipeline, self._sdks, self._max_retries, beta=beta)


class StreamedResponse(Generic[_R]):
    """``async with ...with_streaming_response.create(...) as response``: the raw response
    of one scheduled call, sent when the block is entered and closed when it ends.

    The SDK's version defers reading the body to the caller; here a non-streamed answer is
    read before the block starts (its usage settles the budget at once), so ``read()``,
    ``json()``, ``iter_bytes()`` and ``parse()`` replay it. With ``stream=True`` the response
    is a `RawStreamResponse`, its events read as they come."""

    __slots__ = ("_open", "_response")

    def __init__(self, open_response: Callable[[], Awaitable[_R]]) -> None:
        self._open: Callable[[], Awaitable[_R]] = open_response
        self._response: _R | None = None

    async def __aenter__(self) -> _R:
        self._response = await self._open()
        return self._response

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        response, self._response = self._response, None
        if response is not None:
            await response.close()


class StreamingMessages(Generic[_M, _C]):
    """`client.messages.with_streaming_response` (and ``beta.messages``'s), as the SDK's:
    each method returns an async context manager of the raw response of a scheduled call."""

    __slots__ = ("_raw",)

    def __init__(self, raw: RawMessages[_M, _C]) -> None:
        self._raw = raw

    @overload
    def create(
        self, *, stream: Literal[True], **kwargs: Any
    ) -> StreamedResponse[RawStreamResponse]: ...

    @overload
    def create(
        self, *, stream: Literal[False] | Omit = ..., **kwargs: Any
    ) -> StreamedResponse[AsyncAPIResponse[_M]]: ...

    def create(self, **kwargs: Any) -> Any:
        """``async with ...with_streaming_response.create(...) as response``."""
        return StreamedResponse(lambda: self._raw.create(**kwargs))

    def count_tokens(self, **kwargs: Any) -> StreamedResponse[AsyncAPIResponse[_C]]:
        """``async with ...with_streaming_response.count_tokens(...) as response``."""
        return StreamedResponse(lambda: self._raw.count_tokens(**kwargs))
