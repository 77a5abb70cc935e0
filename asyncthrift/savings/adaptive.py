"""Adaptive ``max_tokens``: reserve what a task's answers need, not the caller's ceiling.

Why: the output bucket (OTPM) is charged ``max_tokens`` at admission and refunded only when
the answer arrives, so a caller who asks for 1024 tokens and gets 80 holds twelve times the
budget it uses for the whole call, and twelve times fewer calls fit at once (the seed
article's 3.3, done from data instead of a table).

Per request ``task="classify"`` (or ``Thrift(task=...)`` for every call) names a kind of
work. `Adaptive` keeps each (model, task)'s recent output lengths and, once it has seen
`min_samples` complete answers, sends ``max_tokens`` = a high percentile of them with a
margin, never above the caller's. An answer cut at that lowered limit is never returned:
the call is asked again with the caller's own ``max_tokens`` (the cut answer's cost is
counted in ``max_tokens_dollars_lost``), and its full length joins the samples, so a task
whose answers grow raises its own limit.
"""

from __future__ import annotations

import asyncio
import math
from collections import deque
from typing import TYPE_CHECKING, Final

from anthropic.types import Message

from ..core.prices import usage_cost
from ..core.stats import nearest_rank
from ..pipeline._routes import CREATE

if TYPE_CHECKING:
    from ..pipeline._attempt import Call, Runner

__all__ = ["Adaptive"]

_MAX_TASKS: Final = 1024


class Adaptive:
    """Output lengths per (model, task), and the ``max_tokens`` they justify."""

    __slots__ = ("_pioneers", "_samples", "_wake", "margin", "min_samples", "percentile", "window")

    def __init__(
        self,
        *,
        percentile: float = 99.0,
        margin: float = 1.25,
        min_samples: int = 20,
        window: int = 500,
    ) -> None:
        self.percentile = percentile
        self.margin = margin
        self.min_samples = min_samples
        self.window = window
        self._samples: dict[tuple[str, str], deque[int]] = {}
        self._pioneers: dict[tuple[str, str], int] = {}  # calls sent to learn from, in flight
        self._wake: dict[tuple[str, str], asyncio.Event] = {}

    def limit(self, model: str, task: str, ceiling: int) -> int:
        """The ``max_tokens`` to send for a call of `task` whose caller asked `ceiling`."""
        samples = self._samples.get((model, task))
        if samples is None or len(samples) < self.min_samples:
            return ceiling
        high = nearest_rank(samples, self.percentile / 100.0)
        return max(1, min(ceiling, math.ceil(high * self.margin) + 8))

    def observe(self, model: str, task: str, output_tokens: int) -> None:
        """A complete answer's length (never a cut one: it would teach a limit too low)."""
        key = (model, task)
        samples = self._samples.get(key)
        if samples is None:
            if len(self._samples) >= _MAX_TASKS:  # task names come from callers: bounded
                self._samples.clear()
            samples = self._samples[key] = deque(maxlen=self.window)
        samples.append(output_tokens)

    def need(self, p: Runner, call: Call, ceiling: int) -> int:
        """Output tokens to plan for `call` (its task's limit, or `ceiling`)."""
        task = call.opts.task or p.default_task
        return ceiling if task is None else self.limit(call.params["model"], task, ceiling)

    async def _learn(self, p: Runner, call: Call, key: tuple[str, str]) -> bool:
        """Wait while enough calls of an unlearnt task are already in flight to teach it
        (a burst would otherwise go out at the ceiling before the first answer is back);
        True: this call is one of those teachers."""
        loop = p.loop
        t0 = loop.time()
        while True:
            n = len(self._samples.get(key, ()))
            if n >= self.min_samples:
                break
            if self._pioneers.get(key, 0) < self.min_samples - n:
                self._pioneers[key] = self._pioneers.get(key, 0) + 1
                call.waited += loop.time() - t0
                return True
            wake = self._wake.get(key)
            if wake is None:
                wake = self._wake[key] = asyncio.Event()
            await wake.wait()
        call.waited += loop.time() - t0
        return False

    def _taught(self, key: tuple[str, str]) -> None:
        self._pioneers[key] -= 1
        wake = self._wake.pop(key, None)
        if wake is not None:
            wake.set()

    async def run(self, p: Runner, call: Call) -> Message:
        """`call` sent with its task's ``max_tokens``; asked again in full if cut there."""
        task = call.opts.task or p.default_task
        assert task is not None
        model = call.params["model"]
        key = (model, task)
        if len(self._samples.get(key, ())) >= self.min_samples or not await self._learn(
            p, call, key
        ):
            return await self._run(p, call, model, task)
        try:
            return await self._run(p, call, model, task)
        finally:
            self._taught(key)

    async def _run(self, p: Runner, call: Call, model: str, task: str) -> Message:
        original = call.params
        ceiling = int(original["max_tokens"])
        lowered = self.limit(model, task, ceiling)
        s = p.stats
        if lowered < ceiling:
            call.params = {**original, "max_tokens": lowered}
            s.max_tokens_lowered += 1
            s.max_tokens_reserve_saved += ceiling - lowered
            message: Message = await p.run(call, CREATE)
            if message.stop_reason != "max_tokens":
                if call.fell_back_from is None:  # a fallback model's length is not `model`'s
                    self.observe(model, task, message.usage.output_tokens)
                return message
            u = message.usage
            s.max_tokens_reasked += 1
            s.max_tokens_reserve_saved -= ceiling - lowered
            s.max_tokens_dollars_lost += usage_cost(message.model, u)
            # asked again in full, of the model that answered (a fallback keeps its model)
            call.params = {**original, "model": call.params["model"]}
        message = await p.run(call, CREATE)
        if message.stop_reason != "max_tokens" and call.fell_back_from is None:
            self.observe(model, task, message.usage.output_tokens)
        return message
