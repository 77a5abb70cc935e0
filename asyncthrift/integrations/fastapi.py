"""FastAPI (Starlette) integration: one shared client, backpressure as 503/504/402, SSE.

::

    from asyncthrift.integrations.fastapi import ThriftDep, install, sse_response, thrift_lifespan

    app = FastAPI(lifespan=thrift_lifespan(limits="tier2", cache="memory"))
    install(app)                      # QueueFull -> 503, DeadlineExceeded -> 504, ...

    @app.post("/chat")
    async def chat(body: Chat, client: ThriftDep):
        stream = await client.messages.create(..., stream=True, deadline=10)
        return sse_response(stream)

The stream is opened (admitted, first event read) *before* the response starts, so a
request that cannot be admitted still gets a proper 503/504 status; after that, errors
arrive as an SSE ``error`` event. The client lives on the app's event loop: create it in the
lifespan (never at import time) and share it; one client per process is the point.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Annotated, Any

from anthropic import AsyncStream
from anthropic.types import RawMessageStreamEvent
from fastapi import Depends, FastAPI, Request
from starlette.responses import Response, StreamingResponse

from ..client.thrift import Thrift
from ..observability.metrics import Observer, PrometheusMetrics
from .common import MAPPED_ERRORS, error_answer, sse_events

__all__ = [
    "ThriftDep",
    "get_thrift",
    "install",
    "metrics_route",
    "sse_response",
    "thrift_exception_handler",
    "thrift_lifespan",
]

_STATE_ATTR = "thrift"


def thrift_lifespan(
    factory: Callable[[], Thrift] | None = None,
    *,
    observers: Sequence[Observer] = (),
    lifespan: Callable[[FastAPI], AbstractAsyncContextManager[Any]] | None = None,
    **thrift_kwargs: Any,
) -> Callable[[FastAPI], AbstractAsyncContextManager[None]]:
    """A FastAPI ``lifespan`` that opens one `Thrift` at startup and closes it at shutdown.

    The client is built by `factory` or from `thrift_kwargs` (``Thrift(**thrift_kwargs)``),
    stored on ``app.state.thrift``, tracked by each of `observers` (metrics, tracing), and
    closed after the app's own `lifespan` (if given) has shut down.
    """

    @asynccontextmanager
    async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
        client = factory() if factory is not None else Thrift(**thrift_kwargs)
        setattr(app.state, _STATE_ATTR, client)
        for observer in observers:
            observer.track(client)
        try:
            if lifespan is None:
                yield
            else:
                async with lifespan(app):
                    yield
        finally:
            for observer in observers:
                observer.untrack(client)
            await client.aclose()

    return _lifespan


def get_thrift(request: Request) -> Thrift:
    """Dependency: the app's shared client (set up by `thrift_lifespan`)."""
    client = getattr(request.app.state, _STATE_ATTR, None)
    if not isinstance(client, Thrift):
        raise RuntimeError(
            "no Thrift client on app.state: create the app with "
            "FastAPI(lifespan=thrift_lifespan(...))"
        )
    return client


ThriftDep = Annotated[Thrift, Depends(get_thrift)]
"""``client: ThriftDep`` in a handler's signature receives the shared client."""


async def thrift_exception_handler(request: Request, exc: Exception) -> Response:
    """Answer a backpressure error with its status and ``Retry-After``; re-raise others."""
    answer = error_answer(exc)
    if answer is None:
        raise exc
    return Response(
        answer.body,
        status_code=answer.status,
        headers=answer.headers,
        media_type="application/json",
    )


def install(app: FastAPI) -> None:
    """Register `thrift_exception_handler` for every error `error_answer` maps."""
    for exc_type in MAPPED_ERRORS:
        app.add_exception_handler(exc_type, thrift_exception_handler)


def sse_response(
    stream: AsyncStream[RawMessageStreamEvent], *, headers: dict[str, str] | None = None
) -> StreamingResponse:
    """Relay `stream` to the browser as ``text/event-stream`` in the API's event format.

    Buffering proxies are asked not to hold the events back; a browser that goes away
    closes the stream (and refunds its unused budget).
    """
    hdrs = {"cache-control": "no-cache", "x-accel-buffering": "no", **(headers or {})}
    return StreamingResponse(sse_events(stream), media_type="text/event-stream", headers=hdrs)


def metrics_route(app: FastAPI, metrics: PrometheusMetrics, path: str = "/metrics") -> None:
    """Serve `metrics`' registry in the Prometheus text format at `path`.

    Scraped on the app's own event loop, so reading the clients' state never races it.
    """
    from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

    async def _metrics() -> Response:
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    app.add_api_route(path, _metrics, methods=["GET"], include_in_schema=False)
