"""A non-streamed answer written to its client the moment the upstream's bytes are read.

Why: with nothing binding, a request's time through the gateway is mostly its own work on
the way, and after the upstream's answer came the library still settles it (the usage
against the reservation, the budget resynced from the answer's headers, observers,
statistics) and the gateway counts it (telemetry, the client's quota) before a byte goes
back: about a quarter of the gateway's own time per request (bench/RESULTS.md, speed28's
section). None of that can change the answer once it has been read and parsed as a
Messages answer, so the forwarding route hands it here first (`EARLY_ANSWER`) and the rest
follows while the client already reads it.

`EarlyAnswer` is made per request by the gateway's shortcut for ``POST /v1/messages`` and
kept in the ASGI scope (`early_of`): the handler sets it as the call's `EARLY_ANSWER`;
the shortcut sends nothing more once it has answered (whatever the handler returns then,
even an error of the settling that follows: the client has its answer). Its `send` is the
one the shortcut was given (the access log's, so the line still has the status and the
``request-id``). A client gone by then is not an error: the library settles the call as
it would have.
"""

from __future__ import annotations

from collections.abc import MutableMapping
from typing import Any, Final

from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from ..pipeline._forward import RawAnswer

__all__ = ["ANSWERED", "EARLY_KEY", "EarlyAnswer", "early_of"]

#: Where the shortcut leaves a request's `EarlyAnswer` in the ASGI scope.
EARLY_KEY: Final = "asyncthrift.gateway.early"
_JSON: Final = (b"content-type", b"application/json")


class EarlyAnswer:
    """Writes one answer (`__call__`), at most once; `sent`: it has."""

    __slots__ = ("_send", "answer", "sent")

    def __init__(self, send: Send) -> None:
        self._send = send
        self.sent = False
        self.answer: RawAnswer | None = None

    async def __call__(self, answer: RawAnswer) -> None:
        if self.sent:
            return
        self.sent = True
        self.answer = answer
        body = answer.body
        headers = [(b"content-length", str(len(body)).encode()), _JSON]
        request_id = answer.request_id
        if request_id:
            headers.append((b"request-id", request_id.encode("latin-1")))
        try:
            await self._send({"type": "http.response.start", "status": 200, "headers": headers})
            await self._send({"type": "http.response.body", "body": body})
        except Exception:  # the client is gone: the call is settled as before
            return

    def is_sent(self) -> bool:
        return self.sent


def early_of(scope: MutableMapping[str, Any]) -> EarlyAnswer | None:
    """The request's `EarlyAnswer` (None: not on the shortcut's path)."""
    early: EarlyAnswer | None = scope.get(EARLY_KEY)
    return early


class _Answered(Response):
    """What a handler returns once its answer is written: nothing more to send."""

    def __init__(self) -> None:
        super().__init__(status_code=200)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        return None


#: The handler's response when `EarlyAnswer` has answered (sends nothing).
ANSWERED: Final = _Answered()
