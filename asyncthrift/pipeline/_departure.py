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
  installed, built here by `aiohttp_client`; and the gateway's own sessions,
  `departing_session`): its sessions make their requests as `DepartingRequest`, whose
  body writer (``ClientRequest.write_bytes``, the task aiohttp runs to hand the body to the
  socket) says so when it returns.

Any other transport (a user's own aiohttp client, a mock transport, a test double) says
nothing: its requests count as they did before, until they land. Slower, never less safe.

What it costs: only a request a burst's hold waits for (`LocalBudget.wants_written`) gets a
`Departure`; on aiohttp any other request pays one more coroutine frame. The first version
traced through an `aiohttp.TraceConfig`, which makes aiohttp build a `Trace` and await every
signal of every request it covers (start, connection, headers, each chunk either way, end):
with nothing binding every request is in a hold (a bucket near its cap), so every request
paid it (bench/RESULTS.md, speed28's section).

The attempt waiting for the request sets `DEPARTURE` (a context variable: the SDK sends from
the caller's task, and aiohttp writes a body from a task created from it, which copies the
context).
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable, Mapping
from contextvars import ContextVar
from typing import Any, Final

__all__ = [
    "BODY_WRITTEN",
    "DEPARTURE",
    "Departure",
    "aiohttp_client",
    "departing_request",
    "departing_session",
    "departure_for",
    "with_departures",
]

#: httpcore's trace events for a request whose body is all written (HTTP/1.1, HTTP/2).
BODY_WRITTEN: Final = frozenset(
    {"http11.send_request_body.complete", "http2.send_request_body.complete"}
)


class Departure:
    """One attempt's request on its way out: `written` calls `on_written` once, when the
    transport has written its body."""

    __slots__ = ("_on_written", "done")

    def __init__(self, on_written: Callable[[], None]) -> None:
        self._on_written = on_written
        self.done = False

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
        return None  # only a burst's hold waits for it
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
    if DEPARTURE.get() is not None:
        request.extensions.setdefault("trace", _httpcore_trace)  # never over a user's own


def with_departures(http: Any) -> Any:
    """`http` (an httpx client) with the request hook that asks for departures."""
    hooks = dict(http.event_hooks)
    if _mark_request not in hooks.get("request", []):
        hooks["request"] = [*hooks.get("request", []), _mark_request]
        http.event_hooks = hooks
    return http


@functools.cache
def departing_request() -> type[Any]:
    """aiohttp's `ClientRequest`, saying when its body is written: its ``write_bytes`` (the
    task that hands the body to the socket, after the headers) tells the attempt's
    `DEPARTURE`, if one waits, once it returns. A write that failed says so too: the
    request then fails, and a request that never reached the server is counted by no
    reading, which is what a departed one is taken to be."""
    import aiohttp

    class DepartingRequest(aiohttp.ClientRequest):
        async def write_bytes(self, *args: Any, **kwargs: Any) -> None:
            await super().write_bytes(*args, **kwargs)
            departure = DEPARTURE.get()
            if departure is not None:
                departure.written()

    return DepartingRequest


def departing_session(**kwargs: Any) -> Any:
    """An `aiohttp.ClientSession` (of `kwargs`) whose requests say when they are written."""
    import aiohttp

    return aiohttp.ClientSession(request_class=departing_request(), **kwargs)


def aiohttp_client(**kwargs: Any) -> Any:
    """The SDK's `DefaultAioHttpClient`, its session's requests saying when they are
    written (None: the SDK's aiohttp transport is not where this expects it)."""
    import aiohttp
    import anthropic

    from ..core._sdk import aiohttp_transport

    found = aiohttp_transport()
    if found is None:
        return None
    transport_class, limits = found

    class _DepartingAiohttpTransport(transport_class):  # type: ignore[misc, valid-type]
        def get_client(self) -> aiohttp.ClientSession:
            """The session the SDK's transport makes (`get_client`), its requests made as
            `departing_request`'s (a session takes its request class only when made)."""
            made: aiohttp.ClientSession = super().get_client()
            connector = made.connector
            made.detach()  # the connector goes on with the session made here
            session: aiohttp.ClientSession = departing_session(connector=connector)
            return session

    return anthropic.DefaultAioHttpClient(
        transport=_DepartingAiohttpTransport(limits=limits), **kwargs
    )
