"""One structured line per request (``asyncthrift.gateway.access`` logger), written when its
last byte is sent: method, path (no query), status, client name, lane, time queued, total
time, tokens, the upstream's ``request-id``. Never a key, a header value or a body; the
handler `serve` installs also redacts anything key-shaped that would reach it anyway
(`asyncthrift.observability.request_log.RedactingFilter`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import MutableMapping
from typing import Any, Final

from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = ["FIELDS_KEY", "AccessLog", "fields_of"]

#: Where the handlers leave the access log's fields in the ASGI scope.
FIELDS_KEY: Final = "asyncthrift.gateway.fields"


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
        status = seen["status"] or fields.get("status", 0)
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
        line["status"] = status
        self.logger.log(level, "%s %s %s", line["method"], line["path"], status, extra=line)
