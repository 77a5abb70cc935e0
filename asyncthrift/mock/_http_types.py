"""What a mock handler is given and returns, and the head of an HTTP/1.1 response.

Why a module of its own: the endpoint handlers (`_messages`, `_batches`, `_refusal`, ...)
build `Response` and `StreamResponse` and read `Request`; they need these shapes, not the
protocol machinery of `_http` (connections, parsing, flow control) that serves them.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Final

__all__ = [
    "REASONS",
    "ErrorFactory",
    "Handler",
    "Request",
    "Response",
    "StreamResponse",
    "default_error",
    "response_head",
]

REASONS: Final = {
    100: "Continue",
    200: "OK",
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    413: "Payload Too Large",
    429: "Too Many Requests",
    431: "Request Header Fields Too Large",
    500: "Internal Server Error",
    501: "Not Implemented",
    529: "Overloaded",
}


@dataclass(slots=True)
class Request:
    """One parsed request. Header names are lower-case; duplicates keep the last value."""

    method: str
    target: str
    headers: dict[str, str]
    body: bytes = b""
    keep_alive: bool = True
    gone: bool = False  # the client went away before its response was written

    @property
    def path(self) -> str:
        return self.target.partition("?")[0]


@dataclass(slots=True)
class Response:
    """A complete response, sent with Content-Length."""

    status: int
    body: bytes
    headers: list[tuple[str, str]] = field(default_factory=list)
    content_type: str = "application/json"


@dataclass(slots=True)
class StreamResponse:
    """A streamed response: the head (with `prefix` as its first chunk, in the same write) is
    sent at once, then each chunk `body` yields.

    `on_close` is called exactly once when the response is over, however it ends (sent,
    client gone, server stopping), even if the generator never started — an unstarted
    generator's ``finally`` would never run, so settle accounts there, not in the generator.
    """

    status: int
    body: AsyncGenerator[bytes, None]
    headers: list[tuple[str, str]] = field(default_factory=list)
    content_type: str = "text/event-stream; charset=utf-8"
    prefix: bytes = b""
    on_close: Callable[[], None] | None = None


Handler = Callable[[Request], Awaitable[Response | StreamResponse | None]]
ErrorFactory = Callable[[int, str], Response]


def response_head(status: int, headers: list[tuple[str, str]], extra: str) -> bytes:
    """The status line and headers of a response, `extra` (pre-formatted header lines)
    appended, ready to write."""
    lines = [f"HTTP/1.1 {status} {REASONS.get(status, 'Unknown')}"]
    lines.extend(f"{name}: {value}" for name, value in headers)
    return ("\r\n".join(lines) + "\r\n" + extra + "\r\n").encode("latin-1")


def default_error(status: int, message: str) -> Response:
    """A plain-text error response (`HttpServer`'s default `ErrorFactory`)."""
    return Response(status, message.encode(), content_type="text/plain; charset=utf-8")
