"""Framework-neutral pieces: backpressure errors as HTTP answers, streams as SSE bytes.

Backpressure is the client telling the caller to slow down, never a bug, so each case gets
the status an HTTP client or load balancer already understands, and ``Retry-After`` when the
scheduler knows how long the head of the queue must still wait:

==========================  ======  =================================================
error                        status  meaning
==========================  ======  =================================================
`QueueFull`                  503     too many requests already wait: shed load
`DeadlineExceeded`           504     not admitted within the request's ``deadline=``
`BudgetExceeded`             402     a spending cap would be crossed
`RequestTooLarge`            413     can never fit the limits: change the request
``anthropic.RateLimitError``  503    the API still said 429 after every retry
``anthropic`` 529 overloaded  503    the API was overloaded after every retry
==========================  ======  =================================================

Bodies use the API's own error shape, ``{"type": "error", "error": {"type", "message"}}``.
"""

from __future__ import annotations

import math
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any, Final

import anthropic
import orjson
from anthropic import AsyncStream
from anthropic.types import RawMessageStreamEvent

from ..errors import BudgetExceeded, DeadlineExceeded, QueueFull, RequestTooLarge, ThriftError
from ..pipeline.retry import parse_retry_after

__all__ = ["MAPPED_ERRORS", "ErrorAnswer", "error_answer", "sse_error", "sse_event", "sse_events"]

MAPPED_ERRORS: Final[tuple[type[Exception], ...]] = (
    ThriftError,
    anthropic.RateLimitError,
    anthropic.InternalServerError,
)
"""Exception types an application registers its handler for (`error_answer` decides)."""


@dataclass(frozen=True, slots=True)
class ErrorAnswer:
    """An HTTP answer for an error: status, headers and a JSON body (bytes)."""

    status: int
    headers: dict[str, str]
    body: bytes


def _retry_after(seconds: float | None) -> dict[str, str]:
    if seconds is None or not math.isfinite(seconds):
        return {}
    return {"Retry-After": str(max(1, math.ceil(seconds)))}


def _body(kind: str, message: str) -> bytes:
    return orjson.dumps({"type": "error", "error": {"type": kind, "message": message}})


def error_answer(exc: BaseException) -> ErrorAnswer | None:
    """The HTTP answer for `exc`, or None if it is not a backpressure error to map."""
    if isinstance(exc, QueueFull):
        return ErrorAnswer(503, _retry_after(exc.retry_after or 1.0), _body("queue_full", str(exc)))
    if isinstance(exc, DeadlineExceeded):
        hdrs = _retry_after(exc.retry_after or 1.0)
        return ErrorAnswer(504, hdrs, _body("deadline_exceeded", str(exc)))
    if isinstance(exc, BudgetExceeded):
        hdrs = _retry_after(exc.retry_after)
        return ErrorAnswer(402, hdrs, _body("budget_exceeded", str(exc)))
    if isinstance(exc, RequestTooLarge):
        return ErrorAnswer(413, {}, _body("request_too_large", str(exc)))
    if isinstance(exc, anthropic.APIStatusError) and exc.status_code in (429, 529):
        hdrs = _retry_after(parse_retry_after(exc.response.headers) or 1.0)
        kind = "rate_limit_error" if exc.status_code == 429 else "overloaded_error"
        return ErrorAnswer(503, hdrs, _body(kind, "the upstream API is saturated; retry later"))
    return None


def sse_event(event: RawMessageStreamEvent) -> bytes:
    """One event in the API's own SSE wire format (``event: <type>`` + its JSON)."""
    data = orjson.dumps(event.model_dump(mode="json", exclude_unset=True))
    return b"event: %s\ndata: %s\n\n" % (event.type.encode(), data)


def sse_error(exc: BaseException) -> bytes:
    """An ``error`` event, as the API sends one mid-stream, for an error after the head."""
    kind, message = "api_error", "the stream failed"
    if isinstance(exc, anthropic.APIStatusError):
        body: Any = exc.body
        err = body.get("error") if isinstance(body, dict) else None
        if isinstance(err, dict):
            kind = str(err.get("type", kind))
            message = str(err.get("message", message))
    elif isinstance(exc, ThriftError):
        kind, message = type(exc).__name__, str(exc)
    return b"event: error\ndata: %s\n\n" % _body(kind, message)


async def sse_events(stream: AsyncStream[RawMessageStreamEvent]) -> AsyncIterator[bytes]:
    """`stream` as SSE bytes; closes it however the relay ends.

    An error mid-stream becomes a final ``error`` event (the status line was sent long ago).
    If the browser goes away, the framework stops iterating and closes this generator, which
    closes `stream`: the upstream response is hung up and its unused budget refunded.
    """
    try:
        async for event in stream:
            yield sse_event(event)
    except Exception as exc:
        yield sse_error(exc)
    finally:
        await stream.close()
