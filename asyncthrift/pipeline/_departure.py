"""When a request has left this process: the transport's word that its body was written.

Why: a reading of the server's level (`scheduling.resync.HeaderResync`) must count as possibly
unseen whatever this process sent that may not have reached the server yet
(`scheduling.transit.Transit`). Admitted is not sent: a loaded process held a burst's tail
1.4-1.7 s before writing it, so every request admitted here counted as possibly unseen until
its answer landed, and the hold after a burst (2.67 s of every limit at 2 s + 20 ms per
token) could not end on what its first answers proved. Once the transport has written a
request, it is on the wire: `Transit` counts it as seen by the readings of requests written
`transit.WIRE` after it.

Two transports say when a body is written:

- httpcore (httpx's own transport, HTTP/1.1 and HTTP/2: the SDK's `DefaultAsyncHttpxClient`
  and any httpx client built on it): the request's ``trace`` extension, events
  ``http11.send_request_body.complete`` and ``http2.send_request_body.complete``, which a
  request hook sets (`with_departures`) when the request has none of its own.
- aiohttp (the SDK's `DefaultAioHttpClient`, this client's default when aiohttp is
  installed, built here by `aiohttp_client`): an `aiohttp.TraceConfig` on its session, whose
  ``on_request_chunk_sent`` counts the body's bytes against its ``content-length``. aiohttp
  calls it just before it hands a chunk to the socket, so the word goes out on the event
  loop's next turn, after the write.

Any other transport (a user's own aiohttp client, a mock transport, a test double) says
nothing: its requests count as they did before, until they land. Slower, never less safe.

Only a request a burst's hold waits for (`LocalBudget.wants_written`) asks: tracing has a
cost (aiohttp awaits every signal of every request it covers; `bench_overhead.py` "as
configured" read 1.16-1.25 with every request traced, 1.32-1.48 without, in the same
minutes), so the others go untraced, on aiohttp through a plain session of their own
(`_Routed`).

The attempt waiting for the request sets `DEPARTURE` (a context variable: the SDK sends from
the caller's task, and aiohttp writes a body from a task created from it, which copies the
context).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from contextvars import ContextVar
from typing import Any, Final

__all__ = [
    "BODY_WRITTEN",
    "DEPARTURE",
    "Departure",
    "aiohttp_client",
    "departure_for",
    "with_departures",
]

#: httpcore's trace events for a request whose body is all written (HTTP/1.1, HTTP/2).
BODY_WRITTEN: Final = frozenset(
    {"http11.send_request_body.complete", "http2.send_request_body.complete"}
)


class Departure:
    """One attempt's request on its way out: `written` calls `on_written` once, when the
    transport has written its body (`_body_bytes` of them, counted by aiohttp's trace)."""

    __slots__ = ("_body_bytes", "_on_written", "_sent", "done")

    def __init__(self, on_written: Callable[[], None]) -> None:
        self._on_written = on_written
        self._body_bytes = -1  # unknown until the request hook reads its content-length
        self._sent = 0
        self.done = False

    def expect(self, headers: Mapping[str, str]) -> None:
        """The request's headers are final: its body is `content-length` bytes."""
        length = headers.get("content-length")
        self._body_bytes = int(length) if length is not None and length.isdigit() else -1

    def chunk_sent(self, size: int) -> bool:
        """`size` bytes of the body are about to be written: True if that is all of it."""
        self._sent += size
        return 0 <= self._body_bytes <= self._sent

    def written(self) -> None:
        if not self.done:
            self.done = True
            self._on_written()


def departure_for(budget: object, mark: Any, loop: asyncio.AbstractEventLoop) -> Departure | None:
    """The departure that tells `budget` when the request it admitted as `mark` is written
    (`LocalBudget.written`); None for a budget that does not count what is on its way."""
    written = getattr(budget, "written", None)
    wanted = getattr(budget, "wants_written", None)
    if written is None or wanted is None or not wanted(mark):
        return None  # only a burst's hold waits for it: the rest go untraced (cheaper)
    return Departure(lambda: written(mark, loop.time()))


#: The departure of the request the attempt running in this task is sending (None: none).
DEPARTURE: ContextVar[Departure | None] = ContextVar("asyncthrift_departure", default=None)


async def _httpcore_trace(event: str, info: Mapping[str, Any]) -> None:
    if event in BODY_WRITTEN:
        departure = DEPARTURE.get()
        if departure is not None:
            departure.written()


async def _mark_request(request: Any) -> None:
    """Request hook: have the transport report this request's departure, if one waits."""
    departure = DEPARTURE.get()
    if departure is None:
        return
    departure.expect(request.headers)
    request.extensions.setdefault("trace", _httpcore_trace)  # never over a user's own


def with_departures(http: Any) -> Any:
    """`http` (an httpx client) with the request hook that asks for departures."""
    hooks = dict(http.event_hooks)
    if _mark_request not in hooks.get("request", []):
        hooks["request"] = [*hooks.get("request", []), _mark_request]
        http.event_hooks = hooks
    return http


async def _aiohttp_chunk_sent(session: Any, context: Any, params: Any) -> None:
    departure = DEPARTURE.get()
    if departure is not None and not departure.done and departure.chunk_sent(len(params.chunk)):
        # called just before the chunk goes to the socket: say so once it has
        asyncio.get_running_loop().call_soon(departure.written)


class _Routed:
    """An httpx transport sending a request whose departure is awaited (`DEPARTURE`) on a
    traced aiohttp session and the others on a plain one: aiohttp's tracing builds a `Trace`
    and awaits every signal of every request it covers, a cost only a burst's hold needs."""

    def __init__(self, plain: Any, traced: Any) -> None:
        self._plain = plain
        self._traced = traced

    async def handle_async_request(self, request: Any) -> Any:
        chosen = self._plain if DEPARTURE.get() is None else self._traced
        return await chosen.handle_async_request(request)

    async def aclose(self) -> None:
        await self._plain.aclose()
        await self._traced.aclose()


def aiohttp_client(**kwargs: Any) -> Any:
    """The SDK's `DefaultAioHttpClient`, its requests of a burst's hold on a session that
    traces when a body is written (None: the SDK's aiohttp transport is not where this
    expects it)."""
    import aiohttp
    import anthropic
    import httpx2

    from ..core._sdk import aiohttp_transport

    found = aiohttp_transport()
    if found is None:
        return None
    transport_class, limits = found

    class _TracedAiohttpTransport(transport_class):  # type: ignore[misc, valid-type]
        def get_client(self) -> aiohttp.ClientSession:
            session: aiohttp.ClientSession = super().get_client()
            trace = aiohttp.TraceConfig()
            trace.on_request_chunk_sent.append(_aiohttp_chunk_sent)
            trace.freeze()
            session.trace_configs.append(trace)
            return session

    class _RoutedTransport(_Routed, httpx2.AsyncBaseTransport):
        pass

    routed = _RoutedTransport(
        transport_class(limits=limits), _TracedAiohttpTransport(limits=limits)
    )
    return anthropic.DefaultAioHttpClient(transport=routed, **kwargs)
