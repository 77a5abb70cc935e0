"""Observers by contract: the hooks the request pipeline calls (their dispatch: `_dispatch`).

As aiohttp's ``TraceConfig``: observers are handed to the client (``Thrift(observers=[...])``
or ``client.add_observer(...)``) and the pipeline calls each hook at a fixed point of every
call, with a `RequestRecord` for that call. Nothing is patched on a client; a client nobody
observes pays one empty-list check per call.
"""

from __future__ import annotations

import asyncio
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING

import anthropic

from ..core._status import status_of
from ..errors import ThriftError
from ..pipeline._dispatch import Observers, RequestRecord, lane_name

if TYPE_CHECKING:
    from .thrift import Thrift

__all__ = [
    "Observer",
    "Observers",
    "RequestRecord",
    "lane_name",
    "outcome_of",
    "status_of",
]


def outcome_of(error: BaseException | None) -> str:
    """A bounded-cardinality label for how a request ended."""
    if error is None:
        return "ok"
    if isinstance(error, asyncio.CancelledError | GeneratorExit):
        return "cancelled"
    if isinstance(error, ThriftError):
        name = type(error).__name__
        return "".join("_" + c.lower() if c.isupper() else c for c in name).lstrip("_")
    if isinstance(error, anthropic.APIStatusError):
        return f"http_{error.status_code}"
    if isinstance(error, anthropic.APIConnectionError):
        return "connection"
    return "error"


class Observer:
    """Receives the request-path hooks of the clients it observes; every hook is a no-op here.

    Hooks run on the event loop, inside the request path: keep them O(1), never block and
    never raise (a raising hook is logged and ignored, never the caller's problem).
    """

    def track(self, client: Thrift, name: str = "default") -> None:
        """Start receiving `client`'s hooks; `name` is its ``client`` label.

        The same as ``client.add_observer(self, name=name)``.
        """
        client.add_observer(self, name=name)

    def untrack(self, client: Thrift) -> None:
        """Stop receiving `client`'s hooks (``client.remove_observer(self)``)."""
        client.remove_observer(self)

    def attached(self, client: Thrift, name: str) -> None:
        """This observer was given to `client`, whose ``client`` label is `name`."""

    def detached(self, client: Thrift) -> None:
        """This observer was removed from `client`."""

    def request_started(self, rec: RequestRecord) -> None:
        """An application call began (before the cache lookup)."""

    def queue_entered(self, rec: RequestRecord) -> None:
        """The call (or one of its retries) started waiting for admission."""

    def queue_left(self, rec: RequestRecord, waited: float, error: BaseException | None) -> None:
        """Admission ended: admitted (`error` None) or gave up (deadline, queue full, cancel)."""

    def upstream_started(self, rec: RequestRecord, key: str) -> None:
        """An HTTP attempt is about to be sent with key `key`; `rec.attempts` counts it."""

    def upstream_finished(
        self, rec: RequestRecord, status: int | None, error: BaseException | None, seconds: float
    ) -> None:
        """The attempt ended: `status` is the HTTP status (None: no response)."""

    def request_finished(
        self, rec: RequestRecord, error: BaseException | None, seconds: float
    ) -> None:
        """The application call ended (a stream: when it was read to the end or closed)."""

    def context(self, rec: RequestRecord) -> AbstractContextManager[object] | None:
        """A context to enter around awaited work of `rec` (tracing: the current span)."""
        return None
