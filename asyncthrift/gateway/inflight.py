"""What the handlers share with the gateway: the `Thrift` and the count of requests in
flight (`InFlight`, which the SIGTERM drain waits on). A protocol, so that the handlers do
not import the app that routes to them."""

from __future__ import annotations

import asyncio
from typing import Protocol

from ..client import Thrift
from ..client._forwarding import ForwardedMessages

__all__ = ["InFlight", "Serving"]


class InFlight:
    """How many requests are being answered (a stream until its last byte); draining waits
    for none."""

    def __init__(self) -> None:
        self.count = 0
        self._idle = asyncio.Event()
        self._idle.set()

    def enter(self) -> _Ticket:
        self.count += 1
        self._idle.clear()
        return _Ticket(self)

    def _leave(self) -> None:
        self.count -= 1
        if self.count == 0:
            self._idle.set()

    async def wait_idle(self, seconds: float | None) -> bool:
        """True once nothing is in flight; False if `seconds` pass first."""
        try:
            async with asyncio.timeout(seconds):
                await self._idle.wait()
        except TimeoutError:
            return False
        return True


class _Ticket:
    __slots__ = ("_inflight",)

    def __init__(self, inflight: InFlight) -> None:
        self._inflight: InFlight | None = inflight

    def leave(self) -> None:
        """Once; later calls do nothing."""
        inflight, self._inflight = self._inflight, None
        if inflight is not None:
            inflight._leave()


class Serving(Protocol):
    """The gateway as a handler sees it."""

    @property
    def thrift(self) -> Thrift: ...

    @property
    def forwarded(self) -> ForwardedMessages:
        """``thrift.messages.with_raw_response.forwarding()``, made once: non-streamed
        answers as the upstream's bytes (cache, dedupe and all)."""
        ...

    @property
    def inflight(self) -> InFlight: ...
