"""The dispatch of the observers' hooks: what the request pipeline calls, and nothing else.

The pipeline holds one `Observers` per client and calls it at fixed points of every call,
with a `RequestRecord` for that call; `Observers` calls each observer's hook (`Hooks`: the
request-path part of `asyncthrift.metrics.Observer`). Kept apart from `_observers`, whose
`Observer` also knows the client it is attached to, so that the request path depends on
the hooks only, never on the client above it. A client nobody observes pays one empty-list
check per call.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from contextlib import AbstractContextManager, ExitStack, contextmanager
from typing import Any, Final, Protocol

from ..scheduling.lanes import LANES

__all__ = ["Hooks", "Observers", "RequestRecord", "lane_name"]

log = logging.getLogger("asyncthrift")

_LANE_NAMES: Final = {level: name for name, level in LANES.items()}


def lane_name(priority: object) -> str:
    """The lane label of a priority or level: a lane name, an int as text, or ``invalid``."""
    if isinstance(priority, str):
        return priority if priority in LANES else "invalid"
    if isinstance(priority, int) and not isinstance(priority, bool):
        return _LANE_NAMES.get(priority, str(priority))
    return "invalid"


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


class Hooks(Protocol):
    """The hooks the pipeline calls on each observer (see `Observer` for what each means)."""

    def request_started(self, rec: RequestRecord) -> None: ...

    def queue_entered(self, rec: RequestRecord) -> None: ...

    def queue_left(
        self, rec: RequestRecord, waited: float, error: BaseException | None
    ) -> None: ...

    def upstream_started(self, rec: RequestRecord, key: str) -> None: ...

    def upstream_finished(
        self, rec: RequestRecord, status: int | None, error: BaseException | None, seconds: float
    ) -> None: ...

    def request_finished(
        self, rec: RequestRecord, error: BaseException | None, seconds: float
    ) -> None: ...

    def context(self, rec: RequestRecord) -> AbstractContextManager[object] | None: ...


class Observers:
    """The observers of one client and the dispatch of each hook to all of them.

    Every method takes the call's record, None when nobody observed the call when it began
    (then it returns at once).
    """

    __slots__ = ("items", "name")

    def __init__(self, name: str = "default") -> None:
        self.name = name
        self.items: list[Hooks] = []

    def add(self, observer: Hooks) -> None:
        """Dispatch to `observer` from now on (the client checks it is an `Observer`)."""
        if observer not in self.items:
            self.items.append(observer)

    def remove(self, observer: Hooks) -> None:
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
