"""Twins of a forwarded call in flight share its answer, and the first runs it in its own task.

`asyncthrift.pipeline.dedupe.SingleFlight` runs the shared work as a task of its own, which
every caller (the first too) awaits through ``asyncio.shield``: cancelling any one caller
leaves it running for the others. A gateway pays for that on every request (a task, a
shield, an outer future and two more turns of the loop before its answer is written), while
identical requests at the same instant are rare there. `InlineFlight` runs the work in the
first caller's task instead; a twin awaits its outcome. What changes is only the rare case
where the first caller leaves (its client disconnected) while twins wait: its call ends
with it, as a lone call would (the library settles what it sent), and a waiting twin runs
the call itself (or joins another twin that already did). Exceptions reach every twin (the
same object: treat it as read-only); a twin whose first caller ran out of *its* deadline
runs or joins afresh rather than inherit that.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Hashable
from typing import Generic, TypeVar

from ..errors import DeadlineExceeded

__all__ = ["InlineFlight"]

K = TypeVar("K", bound=Hashable)
T = TypeVar("T")


class InlineFlight(Generic[K, T]):
    """Calls in flight by key: the first caller's future of its outcome, which twins await."""

    __slots__ = ("_calls",)

    def __init__(self) -> None:
        self._calls: dict[K, asyncio.Future[T]] = {}

    def has(self, key: K) -> bool:
        """Whether a call for `key` is in flight now (a `do` would join it)."""
        return key in self._calls

    async def do(self, key: K, fn: Callable[[], Awaitable[T]]) -> tuple[T, bool]:
        """``(result, joined)``: `fn()`'s, run here, or that of the call for `key` already
        in flight (``joined``: an upstream call saved)."""
        while True:
            outcome = self._calls.get(key)
            if outcome is None:
                return await self._lead(key, fn), False
            try:
                return await asyncio.shield(outcome), True
            except asyncio.CancelledError:
                if not outcome.cancelled() or _cancelling():
                    raise  # this caller itself is cancelled
                # the first caller left: run it here, or join whoever did first
            except DeadlineExceeded:
                pass  # the first caller's own deadline ran out: run it here, or join afresh

    async def _lead(self, key: K, fn: Callable[[], Awaitable[T]]) -> T:
        outcome: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._calls[key] = outcome
        try:
            result = await fn()
        except asyncio.CancelledError:
            self._forget(key, outcome)
            outcome.cancel()  # twins waiting run it themselves
            raise
        except BaseException as exc:
            self._forget(key, outcome)
            outcome.set_exception(exc)
            outcome.exception()  # delivered to the twins, or to nobody: retrieved
            raise
        self._forget(key, outcome)
        outcome.set_result(result)
        return result

    def _forget(self, key: K, outcome: asyncio.Future[T]) -> None:
        if self._calls.get(key) is outcome:
            del self._calls[key]


def _cancelling() -> bool:
    """Whether the running task is being cancelled (not merely woken by a cancelled future)."""
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0
