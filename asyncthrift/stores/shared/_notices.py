"""Notices from `lease.lua` that stock came back: one subscriber connection per process.

Why: a grant reserved ahead is paid at an instant fixed when it was made. When another
process gives stock back (it ran out of work, or its lease holds more than it keeps) while
the level is below zero, those grants could be paid sooner, but a process learnt it only at
its next call, and at a call per several requests that was seconds later: the last process
of a run waited 2-4 s for grants while the others had given back thousands of tokens, and
lending stock between processes at calls alone was too rare to help (bench/RESULTS.md,
`shared27`, `gw27`). The script publishes what such a give is worth (`lease.lua`'s header)
and each process moves its own grants (`SharedBudget.pay_sooner`): no call, no polling.

Best effort by design: a notice lost (Redis down, the connection lost, a client without
pub/sub such as a Redis Cluster client here) only leaves a grant at its first instant, as
without notices; nothing is admitted early on a notice a process did not get.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

__all__ = ["Notices", "parse_notice"]

log = logging.getLogger("asyncthrift.shared")

#: After the subscription fails (Redis unreachable), wait this long (s) before trying again.
_RETRY = 1.0


def parse_notice(data: str) -> tuple[int, tuple[float, float, float], str] | None:
    """``"seq s1 s2 s3 epoch"`` -> (seq, (s1, s2, s3), epoch); None if malformed."""
    words = data.split(" ", 4)
    if len(words) != 5:
        return None
    try:
        return int(words[0]), (float(words[1]), float(words[2]), float(words[3])), words[4]
    except ValueError:
        return None


class Notices:
    """Subscribes `client` to `pattern` (every bucket's channel of one namespace) and hands
    each message's channel and text to `deliver`, in a background task started by `start`
    (from the running loop) and stopped by `aclose`. Reconnects after a failure."""

    __slots__ = ("_client", "_deliver", "_pattern", "_task")

    def __init__(self, client: Any, pattern: str, deliver: Callable[[str, str], None]) -> None:
        self._client = client
        self._pattern = pattern
        self._deliver = deliver
        self._task: asyncio.Task[None] | None = None

    @staticmethod
    def supported(client: Any) -> bool:
        """Whether `client` can subscribe (redis-py's asyncio ``Redis``; a Cluster client's
        pub/sub goes through one node of its own choosing, not relied on here)."""
        return callable(getattr(client, "pubsub", None)) and "Cluster" not in type(client).__name__

    def start(self) -> None:
        if self._task is None and self.supported(self._client):
            self._task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        while True:
            pubsub = self._client.pubsub(ignore_subscribe_messages=True)
            try:
                await pubsub.psubscribe(self._pattern)
                async for message in pubsub.listen():
                    if message.get("type") == "pmessage":
                        self._deliver(str(message["channel"]), str(message["data"]))
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # Redis gone: notices are an optimisation, try later
                log.debug("shared budgets: notices unavailable (%s: %s)", type(exc).__name__, exc)
            finally:
                try:
                    await pubsub.aclose()
                except Exception:  # pragma: no cover - closing a broken connection
                    pass
            await asyncio.sleep(_RETRY)

    async def aclose(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
