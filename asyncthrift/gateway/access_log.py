"""One structured line per request (``asyncthrift.gateway.access`` logger), written when its
last byte is sent: method, path (no query), status, outcome (the gateway's view: 499 for a
client gone mid-stream), client name, lane, total time, tokens, the upstream's
``request-id``. Never a key, a header value or a body.

It is written on every request, so it is kept cheap: `AccessLog` checks the level before
building anything (and skips the logger's caller lookup), and `AccessLineHandler` (the
handler `serve` gives this logger) writes the line as one JSON object, redacting only the
strings that can carry a request's or the upstream's text (message, method, path,
request-id: `asyncthrift.observability.request_log.redact`, key patterns and every
configured key) instead of the general handler's scrubbing of every field and the message
twice (about 19 µs against 22-30 µs per request, see bench/RESULTS.md).
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Iterable, MutableMapping
from typing import IO, Any, Final

import orjson
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..observability.request_log import record_fields, redact

__all__ = ["FIELDS_KEY", "AccessLineHandler", "AccessLog", "fields_of"]

#: Where the handlers leave the access log's fields in the ASGI scope.
FIELDS_KEY: Final = "asyncthrift.gateway.fields"

#: Fields whose strings the gateway writes itself (never a request's or upstream's text).
_OURS: Final = frozenset({"ts", "level", "logger", "client", "lane"})


def fields_of(scope: MutableMapping[str, Any]) -> dict[str, Any]:
    """The request's access-log fields (the handlers add client, lane, tokens, ...)."""
    fields: dict[str, Any] = scope.setdefault(FIELDS_KEY, {})
    return fields


class AccessLog:
    """ASGI middleware writing the access line for each HTTP request."""

    def __init__(self, app: ASGIApp, logger: logging.Logger) -> None:
        self.app = app
        self.logger = logger

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        fields = fields_of(scope)
        started = time.monotonic()
        seen: dict[str, Any] = {"status": 0}

        async def sending(message: Message) -> None:
            if message["type"] == "http.response.start":
                seen["status"] = message["status"]
                for name, value in message.get("headers", ()):
                    if name == b"request-id":
                        seen["request_id"] = value.decode("latin-1")
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            self._write(scope, fields, seen, time.monotonic() - started)

    def _write(
        self, scope: Scope, fields: dict[str, Any], seen: dict[str, Any], seconds: float
    ) -> None:
        status = seen["status"] or fields.get("outcome", 0)
        level = logging.INFO if status < 500 else logging.WARNING
        if not self.logger.isEnabledFor(level):
            return
        line = {
            "method": scope.get("method"),
            "path": scope.get("path"),
            "status": status,
            "duration_ms": round(seconds * 1000.0, 3),
        }
        line.update(fields)
        if "request_id" in seen:
            line["request_id"] = seen["request_id"]
        # `makeRecord` + `handle`: `Logger.log` would also walk the stack to find the caller
        logger = self.logger
        message = f"{line['method']} {line['path']} {status}"
        logger.handle(logger.makeRecord(logger.name, level, "", 0, message, (), None, extra=line))


class AccessLineHandler(logging.Handler):
    """Writes each record as one JSON line (``ts``, ``level``, ``logger``, ``message`` and
    the extra fields, as `asyncthrift.observability.request_log.JsonFormatter` does), every
    string that may carry outside text redacted: `secrets` and key patterns never reach
    `stream`."""

    def __init__(self, stream: IO[str] | None = None, secrets: Iterable[str] = ()) -> None:
        super().__init__()
        self.stream = stream if stream is not None else sys.stderr
        self.secrets = [s for s in secrets if s]

    def emit(self, record: logging.LogRecord) -> None:
        try:
            out = record_fields(record)
            for key, value in out.items():  # values only: the line stays JSON, keys intact
                if isinstance(value, str) and key not in _OURS:
                    out[key] = redact(value, self.secrets)
            text = orjson.dumps(out, default=repr).decode()
            self.stream.write(text + "\n")
            self.stream.flush()
        except Exception:
            self.handleError(record)
