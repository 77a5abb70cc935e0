"""A time bound and circuit breaker for the calls to one Redis (the cache, shared budgets).

Redis is an optimisation for both of its users here, never a dependency: a call that does not
answer within `timeout` counts as a failure, and after `failure_threshold` failures in a row
the circuit opens, so callers skip Redis for `cooldown` seconds and then let one probe
through (half-open). `connect_timeout` bounds the calls only until the first success (DNS,
TLS, a cold server); once connected, a failure never stretches the bound again (a SIGSTOPped
server stalled every operation for the connect timeout), so a call that needs a new pooled
connection later has `timeout` for it, handshake included: with TLS over a slow link, raise
`timeout` above the handshake's time. A deadline that fires late because our own event loop
was busy grants one more bound (`_Deadline`): the bound is for Redis, not for our loop. One
mechanism for both users, so a fix to it is a fix to both.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

__all__ = ["Breaker"]


class _Deadline:
    """Expires `scope` (an ``asyncio.timeout(None)``) `bound` seconds from now; the bound is
    meant for Redis, not for our own event loop.

    When other tasks held the loop past the deadline (120 requests created at once can take
    60 ms of CPU; so can a GC pause), the timer falls due in the same loop turn that reads
    Redis's answer. A plain ``asyncio.timeout`` cancels the task right there, before it
    can take the answer, and a call Redis answered in 1 ms fails. Two things prevent that:
    expiry goes through ``scope.reschedule(now)``, which runs after the task's wake-up
    already queued in that turn, so an answer read in it wins; and a deadline that fires
    more than half a bound late grants one more bound, once. On an idle loop (a frozen
    Redis) it fires on time and the call costs the bound, no more.
    """

    __slots__ = ("_bound", "_handle", "_loop", "_scope", "_spare")

    def __init__(self, scope: asyncio.Timeout, bound: float) -> None:
        self._loop = asyncio.get_running_loop()
        self._scope = scope
        self._bound = bound
        self._spare = True
        due = self._loop.time() + bound
        self._handle = self._loop.call_at(due, self._fire, due)

    def _fire(self, due: float) -> None:
        now = self._loop.time()
        if self._spare and now - due > self._bound / 2:
            self._spare = False
            self._handle = self._loop.call_at(now + self._bound, self._fire, now + self._bound)
            return
        self._scope.reschedule(now)  # expire: the task is cancelled, TimeoutError at exit

    def cancel(self) -> None:
        self._handle.cancel()


class Breaker:
    """Bounds and counts the calls of one Redis user; says when to skip Redis.

    `on_down(exc)` is called when the failures in a row reach `warn_after` (default: the
    threshold), `on_up()` when a call succeeds after the circuit had opened: the user's own
    log lines, since what "down" means differs (a cache miss, a fallback share).
    """

    __slots__ = (
        "_clock",
        "_connected",
        "_failures",
        "_on_down",
        "_on_up",
        "_open_until",
        "_probing",
        "_warn_after",
        "connect_timeout",
        "cooldown",
        "errors",
        "failure_threshold",
        "last_error",
        "timeout",
        "timeouts",
    )

    def __init__(
        self,
        *,
        timeout: float,
        connect_timeout: float,
        failure_threshold: int,
        cooldown: float,
        on_down: Callable[[Exception], None],
        on_up: Callable[[], None],
        warn_after: int | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.timeout = timeout
        self.connect_timeout = max(connect_timeout, timeout)
        self.failure_threshold = failure_threshold
        self.cooldown = cooldown
        self._on_down = on_down
        self._on_up = on_up
        self._warn_after = failure_threshold if warn_after is None else warn_after
        self._clock = clock
        self._connected = False
        self._failures = 0
        self._open_until = 0.0
        self._probing = False
        self.errors = 0
        self.timeouts = 0
        self.last_error: Exception | None = None  # for the logs and a failing test's message

    @property
    def open(self) -> bool:
        """Whether Redis counts as unreachable now."""
        return self._failures >= self.failure_threshold

    def admit(self) -> bool:
        """Whether to try Redis now: closed circuit, or the single half-open probe."""
        if self._failures < self.failure_threshold:
            return True
        if self._clock() < self._open_until or self._probing:
            return False
        self._probing = True
        return True

    def retry_in(self) -> float:
        """Seconds until the breaker lets a probe through (0 when closed)."""
        if not self.open:
            return 0.0
        return max(0.0, self._open_until - self._clock())

    async def call(self, op: Callable[[], Awaitable[Any]]) -> tuple[bool, Any]:
        """Run one operation within the bound: (True, result), or (False, None) after
        counting the failure. Cancellation passes through."""
        bound = self.timeout if self._connected else self.connect_timeout
        try:
            async with asyncio.timeout(None) as scope:
                deadline = _Deadline(scope, bound)
                try:
                    result = await op()
                finally:
                    deadline.cancel()
        except asyncio.CancelledError:
            self._probing = False
            raise
        except Exception as exc:
            self._failed(exc)
            return False, None
        self._connected = True
        if self._failures:
            if self._failures >= self.failure_threshold:
                self._on_up()
            self._failures = 0
        self._probing = False
        return True, result

    def _failed(self, exc: Exception) -> None:
        self.errors += 1
        self.last_error = exc
        if isinstance(exc, TimeoutError):
            self.timeouts += 1
        self._probing = False
        self._failures += 1
        if self._failures == self._warn_after:
            self._on_down(exc)
        if self._failures >= self.failure_threshold:
            self._open_until = self._clock() + self.cooldown

    def __repr__(self) -> str:
        return f"Breaker({'open' if self.open else 'closed'}, failures={self._failures})"
