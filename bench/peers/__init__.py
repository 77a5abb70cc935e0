"""The clients compared by the bench, one module per peer, each configured at its best.

Every peer module has ``NAME``, ``TITLE`` and ``async def run(ctx: RunContext) -> None``: it
submits every request of ``ctx.workload`` at once against ``ctx.base_url`` and calls
``ctx.done(i, ok)`` when request ``i`` has its final outcome. Re-attempts (a server 429, a
local rejection, any retry) are added to ``ctx.retries``. The harness stamps the times,
enforces the deadline and reads the server's side (429s, admitted tokens) from the mock.

Time is compressed (limits per ``workload.limits.period`` seconds instead of 60), so every
constant a peer has in seconds of a real minute is scaled by ``ctx.scale = period / 60``:
the cookbook's 15 s pause, the seed throttle's backoff, LiteLLM's calendar minute.
"""

from __future__ import annotations

import asyncio
import contextvars
import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

import anthropic
from workloads import Workload

__all__ = ["PEERS", "AttemptCounter", "RunContext", "load"]

#: In table order: the naive baseline first, asyncthrift last.
PEERS = (
    "sdk",
    "seed_throttle",
    "aiolimiter_peer",
    "cookbook",
    "litellm_router",
    "asyncthrift_peer",
)


def load(name: str) -> ModuleType:
    return importlib.import_module(f"peers.{name}")


@dataclass(slots=True)
class RunContext:
    """What a peer gets, and where it reports."""

    base_url: str
    api_key: str
    workload: Workload
    loop_time: Callable[[], float]
    t0: float = 0.0
    retries: int = 0
    finished_at: list[float | None] = field(default_factory=list)
    ok: list[bool] = field(default_factory=list)
    errors: dict[str, int] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        n = len(self.workload.requests)
        self.finished_at = [None] * n
        self.ok = [False] * n

    @property
    def scale(self) -> float:
        """Real seconds per second of a 60-second-minute world (period / 60)."""
        return self.workload.limits.period / 60.0

    def done(self, i: int, ok: bool, error: BaseException | None = None) -> None:
        if self.finished_at[i] is None:
            self.finished_at[i] = self.loop_time() - self.t0
            self.ok[i] = ok
            if error is not None:
                kind = type(error).__name__
                self.errors[kind] = self.errors.get(kind, 0) + 1


class AttemptCounter:
    """Counts HTTP attempts per logical request through the SDK's httpx request hook.

    The SDK retries inside one ``create()`` call; the hook sees each attempt, and a context
    variable (set in the request's own task) says which request it belongs to.
    """

    def __init__(self, ctx: RunContext) -> None:
        self._ctx = ctx
        self._current: contextvars.ContextVar[list[int]] = contextvars.ContextVar("attempts")

    def begin(self) -> None:
        """Call at the start of each request's task."""
        self._current.set([0])

    async def _hook(self, request: Any) -> None:
        cell = self._current.get(None)
        if cell is not None:
            cell[0] += 1
            if cell[0] > 1:
                self._ctx.retries += 1

    def sdk(self, max_retries: int) -> anthropic.AsyncAnthropic:
        """The SDK client, on the same transport asyncthrift uses (aiohttp when installed,
        as the SDK recommends for concurrency), so the CPU column compares the clients'
        own work rather than two HTTP stacks."""
        hooks = {"request": [self._hook]}
        try:
            import aiohttp  # noqa: F401

            http: Any = anthropic.DefaultAioHttpClient(event_hooks=hooks)
        except ImportError:
            http = anthropic.DefaultAsyncHttpxClient(event_hooks=hooks)
        return anthropic.AsyncAnthropic(
            api_key=self._ctx.api_key,
            base_url=self._ctx.base_url,
            max_retries=max_retries,
            http_client=http,
        )


async def gather_all(ctx: RunContext, one: Callable[[int, dict[str, Any]], Any]) -> None:
    """Start every request at once and wait for all (the harness cancels at the deadline)."""
    tasks = [asyncio.create_task(one(i, body)) for i, body in enumerate(ctx.workload.requests)]
    try:
        await asyncio.gather(*tasks, return_exceptions=True)
    finally:
        for t in tasks:
            t.cancel()
