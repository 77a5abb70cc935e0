"""The Messages API's error envelope, and what each failure becomes in it.

Every error the gateway answers has the API's shape
(``{"type": "error", "error": {"type": ..., "message": ...}}``), so a client's SDK raises the
same typed exception it would against the API. An upstream rate limit never reaches a client:
a 429 that survived the scheduler's retries becomes a 529 ``overloaded_error`` with
``retry-after``, like a request that waited past its deadline. Messages never carry a key:
they are written here or are the upstream's own error body, which names no key.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

import anthropic
import orjson
from starlette.responses import Response

from ..errors import (
    BudgetExceeded,
    ClientClosed,
    DeadlineExceeded,
    InvalidArgument,
    NoKeysLeft,
    QueueFull,
    RequestTooLarge,
)

__all__ = ["GatewayError", "envelope", "error_response", "failure_of"]

log = logging.getLogger("asyncthrift.gateway")

#: The API's error type for each status the gateway answers.
ERROR_TYPES: Final = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    405: "invalid_request_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    502: "api_error",
    503: "overloaded_error",
    504: "api_error",
    529: "overloaded_error",
}


@dataclass
class GatewayError(Exception):
    """A failure the gateway answers in the error envelope (raised inside a handler)."""

    status: int
    message: str
    retry_after: float | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    body: bytes | None = None  # the upstream's own error body, passed through as it came
    reason: str = ""  # a short word for logs and metrics ("auth", "deadline", ...)

    def response(self) -> Response:
        return error_response(
            self.status,
            self.message,
            retry_after=self.retry_after,
            headers=self.headers,
            body=self.body,
        )


def envelope(status: int, message: str, error_type: str | None = None) -> bytes:
    """The API's error body for `status`."""
    kind = error_type or ERROR_TYPES.get(status, "api_error")
    return orjson.dumps({"type": "error", "error": {"type": kind, "message": message}})


def error_response(
    status: int,
    message: str,
    *,
    retry_after: float | None = None,
    headers: Mapping[str, str] | None = None,
    body: bytes | None = None,
) -> Response:
    """A JSON error response in the envelope (or `body`, an upstream error body as sent)."""
    out = dict(headers or {})
    if retry_after is not None:
        out["retry-after"] = str(max(1, math.ceil(retry_after)))
    content = body if body is not None else envelope(status, message)
    return Response(content, status_code=status, headers=out, media_type="application/json")


def failure_of(exc: BaseException) -> GatewayError:
    """What the client is told about `exc`, raised by the library or the SDK."""
    if isinstance(exc, GatewayError):
        return exc
    if isinstance(exc, DeadlineExceeded | QueueFull):
        wait = exc.retry_after if exc.retry_after is not None else 1.0
        return GatewayError(529, f"Overloaded: {exc}", retry_after=wait, reason="deadline")
    if isinstance(exc, BudgetExceeded):
        return GatewayError(529, f"Overloaded: {exc}", retry_after=exc.retry_after, reason="spend")
    if isinstance(exc, ClientClosed):
        return GatewayError(503, "The gateway is shutting down", retry_after=1.0, reason="drain")
    if isinstance(exc, RequestTooLarge | InvalidArgument | TypeError):
        return GatewayError(400, str(exc), reason="invalid")
    if isinstance(exc, NoKeysLeft):
        return GatewayError(502, "The gateway's upstream key was refused", reason="upstream")
    if isinstance(exc, anthropic.APIStatusError):
        return _upstream_status(exc)
    if isinstance(exc, anthropic.APITimeoutError):
        return GatewayError(504, "The upstream API timed out", reason="upstream")
    if isinstance(exc, anthropic.APIConnectionError):
        return GatewayError(502, "The upstream API could not be reached", reason="upstream")
    log.error("gateway: unexpected %s", type(exc).__name__, exc_info=exc)
    return GatewayError(500, "Internal gateway error", reason="internal")


def _upstream_status(exc: anthropic.APIStatusError) -> GatewayError:
    """The upstream's own error, with its body and ``request-id``; a 429 (left after the
    scheduler's retries) becomes a 529, so clients never see a rate limit."""
    headers = {}
    request_id = exc.response.headers.get("request-id")
    if request_id:
        headers["request-id"] = request_id
    retry = _seconds(exc.response.headers.get("retry-after"))
    if exc.status_code == 429:
        return GatewayError(
            529,
            "Overloaded: the upstream is at its rate limit; retry later",
            retry_after=retry if retry is not None else 1.0,
            headers=headers,
            reason="upstream-429",
        )
    body = _error_body(exc.body)
    return GatewayError(
        exc.status_code,
        exc.message,
        retry_after=retry,
        headers=headers,
        body=body,
        reason="upstream",
    )


def _error_body(body: object) -> bytes | None:
    """The upstream's error body if it is the envelope, else None (one is written)."""
    if isinstance(body, dict) and body.get("type") == "error":
        return orjson.dumps(body)
    return None


def _seconds(value: Any) -> float | None:
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        return None
    return seconds if math.isfinite(seconds) and seconds >= 0 else None
