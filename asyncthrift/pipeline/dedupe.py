"""Singleflight: identical calls in flight share one execution.

The shared work runs as its own `asyncio.Task`; every caller, the first included, awaits it
through `asyncio.shield`. So cancelling any one caller — the first too — leaves the work
running for the others (running it inline in the first caller would cancel everyone). Each
call counts its waiters; when the last one is cancelled nobody wants the result any more,
so the work is cancelled (its own cleanup, such as refunding a budget reservation, runs) and
the last caller waits for that cleanup before its cancellation propagates: no orphan task
outlives its callers. As in Go's ``singleflight``, a finished or abandoned call removes its
map entry only if the entry is still that call.

Joining costs no task: a join is a dict lookup plus the one future `shield` needs.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Awaitable, Callable, Hashable
from typing import Any, Generic, TypeVar

__all__ = ["SingleFlight"]

K = TypeVar("K", bound=Hashable)
T = TypeVar("T")


class _Call(Generic[T]):
    __slots__ = ("task", "waiters")

    def __init__(self, task: asyncio.Future[T]) -> None:
        self.task = task
        self.waiters = 0


class SingleFlight(Generic[K, T]):
    """Share one execution of `fn` among concurrent `do_joined(key, fn)` calls with equal keys.

    Counters: `leaders` (calls that started the work), `joins` (calls that shared work
    already in flight: each one is an upstream call saved), `cancelled` (work cancelled
    because every waiter left). `in_flight` is the number of keys with work running.

    A result or exception is delivered to every waiter (the same object: treat it as
    read-only). `fn` must not call `do_joined` with its own key (it would wait for itself).
    """

    __slots__ = ("_calls", "cancelled", "joins", "leaders")

    def __init__(self) -> None:
        self._calls: dict[K, _Call[T]] = {}
        self.leaders = 0
        self.joins = 0
        self.cancelled = 0

    @property
    def in_flight(self) -> int:
        """Keys whose work is running now."""
        return len(self._calls)

    def has(self, key: K) -> bool:
        """Whether work for `key` is in flight now (a `do_joined` would join it)."""
        call = self._calls.get(key)
        return call is not None and not call.task.done()

    async def do_joined(self, key: K, fn: Callable[[], Awaitable[T]]) -> tuple[T, bool]:
        """``(result, joined)``: the result of `fn()`, shared with every concurrent caller of
        the same `key`, and whether this caller joined work already in flight.

        The first caller starts ``fn()`` as a task (``joined`` False); later callers with an
        equal key join it while it runs (``joined`` True: an upstream call saved). The result
        or exception reaches all of them. Cancelling a caller detaches only that caller,
        unless it is the last: then the work is cancelled too.
        """
        call = self._calls.get(key)
        joined = call is not None and not call.task.done()
        if call is None or not joined:
            task = asyncio.ensure_future(fn())
            call = _Call(task)
            self._calls[key] = call
            task.add_done_callback(functools.partial(self._finished, key, call))
            self.leaders += 1
        else:
            self.joins += 1
        call.waiters += 1
        try:
            return await asyncio.shield(call.task), joined
        except asyncio.CancelledError:
            if call.waiters == 1 and not call.task.done():
                # The last waiter is leaving: nobody wants the result. Cancel the work and let
                # its cleanup finish before our own cancellation goes on.
                call.waiters = 0
                self._forget(key, call)
                call.task.cancel()
                self.cancelled += 1
                try:
                    await asyncio.wait((call.task,))
                except asyncio.CancelledError:
                    pass  # cancelled again while waiting for cleanup: stop waiting
            raise
        finally:
            if call.waiters:
                call.waiters -= 1

    def _finished(self, key: K, call: _Call[T], task: asyncio.Future[T]) -> None:
        self._forget(key, call)
        if not task.cancelled():
            # Mark the exception retrieved: it was delivered to every waiter through shield,
            # or nobody was left to want it (they all left as it finished).
            task.exception()

    def _forget(self, key: K, call: _Call[Any]) -> None:
        if self._calls.get(key) is call:
            del self._calls[key]

    def __repr__(self) -> str:
        return (
            f"SingleFlight(in_flight={len(self._calls)}, leaders={self.leaders}, "
            f"joins={self.joins}, cancelled={self.cancelled})"
        )
