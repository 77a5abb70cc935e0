"""The gateway bench's load balancer: each request to the replica with the fewest outstanding.

A deployment puts its gateway replicas behind a balancer (nginx ``least_conn``, Envoy's
``LEAST_REQUEST``, HAProxy ``leastconn``): it picks a replica when a request reaches it,
among those answering fewest requests at that moment, and counts a request outstanding
until its answer has been sent on. `LeastOutstanding` is that, as an httpx transport under
the SDK clients of `bench/bench_gateway.py`: the replica is chosen when the request goes on
the wire (after the SDK has built it), not when the caller's task starts, and the request
stays counted until the SDK has read and closed its answer. Ties go round robin, from the
replica after the last one chosen, so with nothing answered yet (a burst that is all on the
wire before the first answer, as the bench's is) it is plain round robin: it gives no
replica less work than a real balancer would, nor more.

``balance="round-robin"`` in `bench_gateway.drive` is the old client-side split (request i
to replica i mod R, fixed when the task starts), kept to compare.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

import httpx2

__all__ = ["LeastOutstanding"]


class _Counted(httpx2.AsyncByteStream):
    """An answer's body that calls `done` once, when it is closed (the SDK closes it after
    reading it whole, or on an error)."""

    def __init__(self, inner: Any, done: Callable[[], None]) -> None:
        self._inner = inner
        self._done: Callable[[], None] | None = done

    async def __aiter__(self) -> AsyncIterator[bytes]:
        async for chunk in self._inner:
            yield chunk

    async def aclose(self) -> None:
        try:
            await self._inner.aclose()
        finally:
            done, self._done = self._done, None
            if done is not None:
                done()


class LeastOutstanding(httpx2.AsyncBaseTransport):
    """Sends each request to the one of `urls` with the fewest requests outstanding (ties:
    round robin); `on_pick(index)` is told which, in the sending task's context."""

    def __init__(
        self,
        urls: Sequence[str],
        inner: httpx2.AsyncBaseTransport,
        on_pick: Callable[[int], None] | None = None,
    ) -> None:
        if not urls:
            raise ValueError("no replica to balance over")
        self.targets = [httpx2.URL(u) for u in urls]
        self.outstanding = [0] * len(urls)
        self.picked = [0] * len(urls)
        self._next = 0
        self._inner = inner
        self._on_pick = on_pick

    def pick(self) -> int:
        """The replica with the fewest outstanding, the first such from the round robin's
        position; the position moves past it."""
        n = len(self.targets)
        best = self._next
        for k in range(1, n):
            r = (self._next + k) % n
            if self.outstanding[r] < self.outstanding[best]:
                best = r
        self._next = (best + 1) % n
        return best

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        r = self.pick()
        target = self.targets[r]
        request.url = request.url.copy_with(
            scheme=target.scheme, host=target.host, port=target.port
        )
        request.headers["host"] = target.netloc.decode("ascii")
        self.outstanding[r] += 1
        self.picked[r] += 1
        if self._on_pick is not None:
            self._on_pick(r)
        released = False

        def done() -> None:
            nonlocal released
            if not released:
                released = True
                self.outstanding[r] -= 1

        try:
            response = await self._inner.handle_async_request(request)
        except BaseException:
            done()
            raise
        response.stream = _Counted(response.stream, done)
        return response

    async def aclose(self) -> None:
        await self._inner.aclose()
