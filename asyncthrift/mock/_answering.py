"""An admitted mock request until it ends: its output settled once, its stream written.

`MockServer` (`_server`) decides whether a request is answered; from the moment it is
admitted, this module carries it: `Answering` settles the output charge exactly once however
the response ends (completed, cut off, client gone), and `stream_response` writes an SSE
answer paced by the latency model, counting what actually went out.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator
from typing import TYPE_CHECKING, Final

from ._answers import Answer, split_deltas
from ._http_types import StreamResponse
from ._ratelimit import ServerBudget
from ._sse import delta_event, error_event, start_events, stop_events
from ._tokenizer import count_text

if TYPE_CHECKING:
    from ._server import MockServer

__all__ = ["NO_BUDGET", "Answering", "stream_response"]


class Answering:
    """An admitted request until it completes: settles its output charge exactly once.

    With ``output_charge="reserve"`` max_tokens was taken at admission and the unused part
    is refunded; with ``"actual"`` the produced output is charged now. Either way the
    counters learn the output produced, and `in_flight` drops. A stream updates `produced`
    as deltas go out and the HTTP layer calls `finish` however the response ends. `at` is
    the loop time of the settle, the instant completion-time headers describe.
    """

    __slots__ = ("at", "budget", "completed", "done", "max_tokens", "produced", "reserve", "server")

    def __init__(
        self, server: MockServer, budget: ServerBudget, max_tokens: int, reserve: bool
    ) -> None:
        self.server = server
        self.budget = budget
        self.max_tokens = max_tokens
        self.reserve = reserve
        self.produced = 0
        self.completed = False
        self.done = False
        self.at = 0.0  # when it was settled (loop time)

    def settle(self, produced: int, completed: bool) -> None:
        self.produced, self.completed = produced, completed
        self.finish()

    def finish(self) -> None:
        if self.done:
            return
        self.done = True
        server = self.server
        now = self.at = server._now()
        produced = self.produced
        if self.reserve:
            self.budget.give(2, float(self.max_tokens - produced), now)
        else:
            self.budget.give(2, -float(produced), now)
        c = server.counters
        c.output_tokens += produced
        c.in_flight -= 1
        if not self.completed:
            c.cancelled += 1
            c.abandoned_output_tokens += produced


def stream_response(
    server: MockServer,
    model: str,
    answer: Answer,
    usage: dict[str, int],
    settle: Answering,
    base: float,
    per_token: float,
    fail: bool,
) -> StreamResponse:
    """The SSE response of one admitted stream, which settles its output however it ends.

    Without any latency the whole body is built now and sent with the head in one write
    (the generator then only settles); otherwise events are paced by the latency model.
    """
    deltas = split_deltas(answer.text, server.config.stream_chunk_words)
    fail_at = -1
    if fail:
        fail_at = max(1, len(deltas) // 2) if len(deltas) > 1 else 0
        server.counters.stream_errors += 1
    sent = deltas if fail_at < 0 else deltas[:fail_at]
    end = error_event(server._id("req")) if fail_at >= 0 else stop_events(answer)
    start = start_events(server._id("msg"), model, usage)
    if base <= 0 and per_token <= 0:
        body = b"".join([start, *map(delta_event, sent), end])
        settle.produced = answer.output_tokens if fail_at < 0 else count_text("".join(sent))
        settle.completed = True
        return StreamResponse(200, _no_chunks(), prefix=body, on_close=settle.finish)
    return StreamResponse(
        200, _paced(start, sent, end, settle, base, per_token), on_close=settle.finish
    )


async def _no_chunks() -> AsyncGenerator[bytes, None]:
    """An empty body: everything was sent as the response's prefix."""
    nothing: tuple[bytes, ...] = ()
    for chunk in nothing:
        yield chunk


async def _paced(
    start: bytes, sent: list[str], end: bytes, settle: Answering, base: float, per_token: float
) -> AsyncGenerator[bytes, None]:
    """Events after `base` seconds, each delta after `per_token` per token it carries.

    Counts what went out in `settle.produced`; the HTTP layer settles when the response ends.
    """
    if base > 0:
        await asyncio.sleep(base)
    yield start
    for text in sent:
        tokens = count_text(text)
        if per_token > 0:
            await asyncio.sleep(per_token * tokens)
        settle.produced += tokens
        yield delta_event(text)
    settle.completed = True
    yield end


class _Unlimited(ServerBudget):
    """A budget with no bucket at all (an unlimited model class): settling is a no-op."""

    def __init__(self) -> None:
        self.dims = (None, None, None)


NO_BUDGET: Final = _Unlimited()
