"""A FastAPI chat endpoint that streams answers to the browser as SSE, under asyncthrift.

One shared `Thrift` client schedules every call under the key's limits: a browser request
waits in the interactive lane for at most ``DEADLINE`` seconds and then gets a 504 with
``Retry-After`` (a full queue gets a 503) instead of hanging or earning a 429. Prometheus
metrics are served at ``/metrics``.

Try it against the mock (no API key needed)::

    python -m asyncthrift.mock --port 8765 --rpm 60 --otpm 20000 --period 60 --latency 0.3 \
        --latency-per-token 0.01 &
    ANTHROPIC_API_KEY=test ANTHROPIC_BASE_URL=http://127.0.0.1:8765 \
        THRIFT_LIMITS_RPM=60 THRIFT_LIMITS_OTPM=20000 python examples/fastapi_chat.py

then open http://127.0.0.1:8000/. Against the real API, set ANTHROPIC_API_KEY and
THRIFT_LIMITS=tier1..tier4 (your tier) and leave ANTHROPIC_BASE_URL unset.
"""

from __future__ import annotations

import os
import time
from typing import Any

from _shared import DEADLINE, MODEL, PAGE, limits_from_env
from fastapi import FastAPI
from fastapi.responses import HTMLResponse
from prometheus_client import CollectorRegistry
from pydantic import BaseModel, Field
from starlette.responses import StreamingResponse

from asyncthrift.integrations.fastapi import (
    ThriftDep,
    install,
    metrics_route,
    sse_response,
    thrift_lifespan,
)
from asyncthrift.observability.metrics import PrometheusMetrics


class Chat(BaseModel):
    message: str = Field(min_length=1, max_length=20_000)
    max_tokens: int = Field(default=512, ge=1, le=8192)


def create_app(*, deadline: float = DEADLINE, **thrift_kwargs: Any) -> FastAPI:
    """The app. `deadline`: seconds a request may wait for admission; `thrift_kwargs` go to
    `Thrift` (default: limits and queue bound from the environment)."""
    thrift_kwargs.setdefault("limits", limits_from_env())
    thrift_kwargs.setdefault("max_queue", int(os.environ.get("THRIFT_MAX_QUEUE", "1000")))
    metrics = PrometheusMetrics(CollectorRegistry())
    app = FastAPI(
        title="asyncthrift chat", lifespan=thrift_lifespan(observers=[metrics], **thrift_kwargs)
    )
    install(app)
    metrics_route(app, metrics)

    @app.post("/chat")
    async def chat(body: Chat, client: ThriftDep) -> StreamingResponse:
        started = time.perf_counter()
        stream = await client.messages.create(
            model=MODEL,
            max_tokens=body.max_tokens,
            messages=[{"role": "user", "content": body.message}],
            stream=True,
            priority="interactive",
            deadline=deadline,
        )
        # How long admission and the upstream's first event took: the rest of the time the
        # browser waited is the web stack's (see bench/bench_fastapi.py).
        opened_ms = (time.perf_counter() - started) * 1000.0
        return sse_response(stream, headers={"x-asyncthrift-open-ms": f"{opened_ms:.3f}"})

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def page() -> str:
        return PAGE

    return app


if __name__ == "__main__":
    import uvicorn

    uvicorn.run(create_app(), host="127.0.0.1", port=int(os.environ.get("PORT", "8000")))
