"""The aiohttp twin of ``fastapi_chat.py``: one shared client, SSE, mapped backpressure.

Run it the same way (``python examples/aiohttp_chat.py``, port 8080 by default) after
starting the mock; the page, the ``/chat`` body and the answers are the same.
"""

from __future__ import annotations

import os
import time
from typing import Any

from _shared import DEADLINE, MODEL, PAGE, limits_from_env
from aiohttp import web
from prometheus_client import CollectorRegistry

from asyncthrift.integrations.aiohttp import (
    THRIFT,
    error_middleware,
    metrics_handler,
    sse_response,
    thrift_ctx,
)
from asyncthrift.observability.metrics import PrometheusMetrics

DEADLINE_KEY = web.AppKey("deadline", float)


async def chat(request: web.Request) -> web.StreamResponse:
    body = await request.json()
    message = body.get("message") if isinstance(body, dict) else None
    max_tokens = body.get("max_tokens", 512) if isinstance(body, dict) else 512
    if not isinstance(message, str) or not message or not isinstance(max_tokens, int):
        raise web.HTTPBadRequest(text='send {"message": "...", "max_tokens": 512}')
    started = time.perf_counter()
    stream = await request.app[THRIFT].messages.create(
        model=MODEL,
        max_tokens=max_tokens,
        messages=[{"role": "user", "content": message}],
        stream=True,
        priority="interactive",
        deadline=request.app[DEADLINE_KEY],
    )
    opened_ms = (time.perf_counter() - started) * 1000.0
    headers = {"x-asyncthrift-open-ms": f"{opened_ms:.3f}"}
    return await sse_response(request, stream, headers=headers)


async def page(request: web.Request) -> web.Response:
    return web.Response(text=PAGE, content_type="text/html")


def create_app(*, deadline: float = DEADLINE, **thrift_kwargs: Any) -> web.Application:
    """The app. `deadline`: seconds a request may wait for admission; `thrift_kwargs` go to
    `Thrift` (default: limits and queue bound from the environment)."""
    thrift_kwargs.setdefault("limits", limits_from_env())
    thrift_kwargs.setdefault("max_queue", int(os.environ.get("THRIFT_MAX_QUEUE", "1000")))
    metrics = PrometheusMetrics(CollectorRegistry())
    app = web.Application(middlewares=[error_middleware])
    app[DEADLINE_KEY] = deadline
    app.cleanup_ctx.append(thrift_ctx(observers=[metrics], **thrift_kwargs))
    app.router.add_post("/chat", chat)
    app.router.add_get("/", page)
    app.router.add_get("/metrics", metrics_handler(metrics))
    return app


if __name__ == "__main__":
    web.run_app(create_app(), host="127.0.0.1", port=int(os.environ.get("PORT", "8080")))
