"""A time bound and circuit breaker for the calls to one Redis (the cache, shared budgets).

Redis is an optimisation for both of its users here, never a dependency: a call that does not
answer within `timeout` counts as a failure, and after `failure_threshold` failures in a row
the circuit opens, so callers skip Redis for `cooldown` seconds and then let one probe
through (half-open). `connect_timeout` bounds the calls only until the first success (DNS,
TLS, a cold server); once connected, a failure never stretches the bound again (a SIGSTOPped
server stalled every operation for the connect timeout). So a call that needs a new pooled
connection later (more calls in flight than before) has `timeout` for it, handshake included:
with TLS over a slow link, raise `timeout` above the handshake's time. One mechanism for both
users, so a fix to it is a fix to both.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

__all__ = ["Breaker"]


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
        try:
            async with asyncio.timeout(self.timeout if self._connected else self.connect_timeout):
                result = await op()
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
