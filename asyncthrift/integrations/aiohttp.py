"""aiohttp integration: one shared client, backpressure as 503/504/402, SSE.

::

    from asyncthrift.integrations.aiohttp import THRIFT, error_middleware, sse_response, thrift_ctx

    app = web.Application(middlewares=[error_middleware])
    app.cleanup_ctx.append(thrift_ctx(limits="tier2", cache="memory"))

    async def chat(request: web.Request) -> web.StreamResponse:
        stream = await request.app[THRIFT].messages.create(..., stream=True, deadline=10)
        return await sse_response(request, stream)

As with FastAPI, the stream is opened before the response is prepared, so admission errors
still get their status; after that, errors arrive as an SSE ``error`` event.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any

from aiohttp import web
from anthropic import AsyncStream
from anthropic.types import RawMessageStreamEvent

from ..client.thrift import Thrift
from ..observability.metrics import Observer, PrometheusMetrics
from .common import error_answer, sse_error, sse_event

__all__ = ["THRIFT", "error_middleware", "metrics_handler", "sse_response", "thrift_ctx"]

THRIFT: web.AppKey[Thrift] = web.AppKey("asyncthrift.thrift", Thrift)
"""The app key of the shared client: ``request.app[THRIFT]``."""

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def thrift_ctx(
    factory: Callable[[], Thrift] | None = None,
    *,
    observers: Sequence[Observer] = (),
    **thrift_kwargs: Any,
) -> Callable[[web.Application], AsyncIterator[None]]:
    """A ``cleanup_ctx`` entry: open one `Thrift` at startup as ``app[THRIFT]``, close it at
    cleanup. Built by `factory` or ``Thrift(**thrift_kwargs)``; tracked by `observers`."""

    async def _ctx(app: web.Application) -> AsyncIterator[None]:
        client = factory() if factory is not None else Thrift(**thrift_kwargs)
        app[THRIFT] = client
        for observer in observers:
            observer.track(client)
        try:
            yield
        finally:
            for observer in observers:
                observer.untrack(client)
            await client.aclose()

    return _ctx


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Answer backpressure errors with their status and ``Retry-After`` (see `common`)."""
    try:
        return await handler(request)
    except Exception as exc:
        answer = error_answer(exc)
        if answer is None:
            raise
        return web.Response(
            body=answer.body,
            status=answer.status,
            headers=answer.headers,
            content_type="application/json",
        )


async def sse_response(
    request: web.Request,
    stream: AsyncStream[RawMessageStreamEvent],
    *,
    headers: dict[str, str] | None = None,
) -> web.StreamResponse:
    """Relay `stream` as ``text/event-stream`` in the API's event format; close it at the end.

    A browser that goes away (a failed write, or the handler cancelled) closes the stream,
    hanging up upstream and refunding its unused budget.
    """
    response = web.StreamResponse(
        headers={
            "content-type": "text/event-stream",
            "cache-control": "no-cache",
            "x-accel-buffering": "no",
            **(headers or {}),
        }
    )
    try:
        await response.prepare(request)
        try:
            async for event in stream:
                await response.write(sse_event(event))
        except (ConnectionResetError, ConnectionError):
            return response  # the browser left
        except Exception as exc:
            await response.write(sse_error(exc))
        await response.write_eof()
    finally:
        await stream.close()
    return response


def metrics_handler(metrics: PrometheusMetrics) -> Handler:
    """A handler serving `metrics`' registry in the Prometheus text format."""
    from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

    async def _metrics(request: web.Request) -> web.StreamResponse:
        body = generate_latest(metrics.registry)
        return web.Response(body=body, headers={"content-type": CONTENT_TYPE_LATEST})

    return _metrics
