"""Observers by contract: the hooks the request pipeline calls, and their dispatch.

As aiohttp's ``TraceConfig``: observers are handed to the client (``Thrift(observers=[...])``
or ``client.add_observer(...)``) and the pipeline calls each hook at a fixed point of every
call, with a `RequestRecord` for that call. Nothing is patched on a client; a client nobody
observes pays one empty-list check per call.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterator
from contextlib import AbstractContextManager, ExitStack, contextmanager
from typing import TYPE_CHECKING, Any, Final

import anthropic

from ._status import status_of
from .errors import ThriftError
from .lanes import LANES

if TYPE_CHECKING:
    from .client import Thrift

__all__ = [
    "Observer",
    "Observers",
    "RequestRecord",
    "lane_name",
    "outcome_of",
    "status_of",
]

log = logging.getLogger("asyncthrift")

_LANE_NAMES: Final = {level: name for name, level in LANES.items()}


def lane_name(priority: object) -> str:
    """The lane label of a priority or level: a lane name, an int as text, or ``invalid``."""
    if isinstance(priority, str):
        return priority if priority in LANES else "invalid"
    if isinstance(priority, int) and not isinstance(priority, bool):
        return _LANE_NAMES.get(priority, str(priority))
    return "invalid"


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


class RequestRecord:
    """One application call as the hooks see it. `data` holds per-observer state (spans).

    `model_class` is the class the client scheduled the call in (every model id the client
    does not know shares one, so the label's values stay bounded).
    """

    __slots__ = ("attempts", "client", "data", "kind", "lane", "model", "model_class", "started")

    def __init__(
        self, client: str, kind: str, model: str, lane: str, model_class: str = "unknown"
    ) -> None:
        self.client = client
        self.kind = kind
        self.model = model
        self.model_class = model_class
        self.lane = lane
        self.started = time.monotonic()
        self.attempts = 0
        self.data: dict[object, Any] = {}


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


class Observers:
    """The observers of one client and the dispatch of each hook to all of them.

    Every method takes the call's record, None when nobody observed the call when it began
    (then it returns at once).
    """

    __slots__ = ("items", "name")

    def __init__(self, observers: list[Observer] | None = None, name: str = "default") -> None:
        self.name = name
        self.items: list[Observer] = []
        for obs in observers or ():
            self.add(obs)

    def add(self, observer: Observer) -> None:
        if not isinstance(observer, Observer):
            raise TypeError(f"observers must be asyncthrift Observer instances, got {observer!r}")
        if observer not in self.items:
            self.items.append(observer)

    def remove(self, observer: Observer) -> None:
        if observer in self.items:
            self.items.remove(observer)

    def _each(self, hook: str, *args: Any) -> None:
        for obs in self.items:
            try:
                getattr(obs, hook)(*args)
            except Exception:  # an observer must never break a request
                log.exception("observer hook %s failed", hook)

    def start(self, kind: str, model: str, level: int, model_class: str) -> RequestRecord | None:
        """A record for a new call, or None when nobody observes (so callers skip the rest)."""
        if not self.items:
            return None
        rec = RequestRecord(self.name, kind, model, lane_name(level), model_class)
        self._each("request_started", rec)
        return rec

    def finish(self, rec: RequestRecord | None, error: BaseException | None) -> None:
        if rec is not None:
            self._each("request_finished", rec, error, time.monotonic() - rec.started)

    def queue_entered(self, rec: RequestRecord | None) -> None:
        if rec is not None:
            self._each("queue_entered", rec)

    def queue_left(
        self, rec: RequestRecord | None, waited: float, error: BaseException | None
    ) -> None:
        if rec is not None:
            self._each("queue_left", rec, waited, error)

    def upstream_started(self, rec: RequestRecord | None, key: str) -> float:
        """Dispatch and return the start time for `upstream_finished`."""
        if rec is not None:
            rec.attempts += 1
            self._each("upstream_started", rec, key)
        return time.monotonic()

    def upstream_finished(
        self,
        rec: RequestRecord | None,
        status: int | None,
        error: BaseException | None,
        started: float,
    ) -> None:
        if rec is not None:
            self._each("upstream_finished", rec, status, error, time.monotonic() - started)

    @contextmanager
    def activate(self, rec: RequestRecord | None) -> Iterator[None]:
        """Enter every observer's context for `rec` (tracing: its current span)."""
        if rec is None:
            yield
            return
        with ExitStack() as stack:
            for obs in self.items:
                cm = obs.context(rec)
                if cm is not None:
                    stack.enter_context(cm)
            yield
