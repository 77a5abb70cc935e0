"""Running coroutines in virtual time (looptime), for hypothesis tests that cannot be async."""

from __future__ import annotations

from collections.abc import Coroutine
from typing import Any, TypeVar

import looptime

T = TypeVar("T")


def run_virtual(coro: Coroutine[Any, Any, T]) -> T:
    """Run `coro` on a fresh loop whose clock jumps to the next timer: no real waiting."""
    loop = looptime.new_event_loop(start=0.0)
    try:
        return loop.run_until_complete(coro)
    finally:
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()
