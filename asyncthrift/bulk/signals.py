"""SIGINT and SIGTERM during a bulk run: handlers installed for the run, removed after.

The runner decides what a signal means (drain what was sent, then abandon); this module
only routes the signals to it on the event loop, and copes with the places that cannot
(a thread other than the main one, uvloop there, Windows).
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import AsyncIterator, Callable

__all__ = ["signals_to"]


@contextlib.asynccontextmanager
async def signals_to(handler: Callable[[str], object], *, enabled: bool) -> AsyncIterator[None]:
    """While inside, SIGINT and SIGTERM call ``handler(signal name)`` (if `enabled`)."""
    if not enabled:
        yield
        return
    loop = asyncio.get_running_loop()
    installed = []
    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(sig, handler, sig.name)
            installed.append(sig)
        except (NotImplementedError, RuntimeError, ValueError):  # not the main thread
            # (uvloop raises ValueError there), or Windows
            pass
    try:
        yield
    finally:
        for sig in installed:
            loop.remove_signal_handler(sig)
