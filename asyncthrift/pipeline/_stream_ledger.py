"""The books of one live stream: its usage as the events pass, and its settling.

Kept apart from `streaming` because it is accounting, not transport: `streaming` opens the
response and passes the SDK's events through (`ThriftEventStream`), while a `StreamLedger` counts
what they deliver, folds the reported usage, settles the pipeline's `Attempt` exactly once
(complete, abandoned or failed), stores a complete answer in the cache and closes a stream
dropped unclosed. The stream the caller holds and the SDK iterator's copy share one.
"""

from __future__ import annotations

import asyncio
import logging
import math
from typing import TYPE_CHECKING, Any, Final

from anthropic import APIStatusError, AsyncStream
from anthropic.types import Message, RawMessageStreamEvent, Usage

from ..core._sdk import accumulate
from ..core.tokens import text_tokens

if TYPE_CHECKING:
    from anthropic.types.parsed_message import ParsedMessage

    from ._attempt import Attempt

__all__ = ["StreamLedger", "close_quietly"]

log = logging.getLogger("asyncthrift")

#: Tasks closing streams that were dropped without being closed (kept alive until done).
_CLOSING: set[asyncio.Task[None]] = set()

_USAGE_FIELDS: Final = (
    "output_tokens",
    "input_tokens",
    "cache_creation_input_tokens",
    "cache_read_input_tokens",
    "server_tool_use",
)


async def close_quietly(stream: AsyncStream[Any]) -> None:
    try:
        await stream.close()
    except Exception:  # closing a broken response: nothing left to save
        pass


class StreamLedger:
    """The books of one live streamed attempt, until the pipeline's `Attempt` is settled.

    Shared by the stream the caller holds and the copy the SDK's iterator runs on.
    """

    __slots__ = (
        "attempt",
        "cache_key",
        "closed",
        "complete",
        "delivered",
        "json_bufs",
        "model",
        "settled",
        "snapshot",
        "upstream",
        "usage",
    )

    def __init__(self, attempt: Attempt, upstream: AsyncStream[RawMessageStreamEvent]) -> None:
        call = attempt.call
        self.attempt = attempt
        self.upstream = upstream
        self.model: str = call.params["model"]
        # another model's answer (a fallback) is not cached as the answer to this call
        self.cache_key = call.key if call.use_cache and call.fell_back_from is None else None
        self.usage: Usage | None = None
        self.delivered = 0.0
        self.complete = False
        self.settled = False
        self.closed = False
        self.snapshot: ParsedMessage[Any] | None = None
        self.json_bufs: dict[int, bytes] = {}

    def observe(self, event: RawMessageStreamEvent) -> None:
        """Account for one event on its way to the caller.

        Events are told apart by their ``type``, not their class: a ``beta.messages`` stream
        carries the SDK's ``BetaRaw*`` event classes, of the same shape.
        """
        if event.type == "content_block_delta":
            d = event.delta
            if d.type == "text_delta":
                self.delivered += text_tokens(d.text)
            elif d.type == "input_json_delta":
                self.delivered += text_tokens(d.partial_json)
            elif d.type == "thinking_delta":
                self.delivered += text_tokens(d.thinking)
        elif event.type == "message_start":
            self.usage = event.message.usage
            self.model = event.message.model or self.model
        elif event.type == "message_delta":
            self._merge_usage(event.usage)
        if self.cache_key is not None:
            self._accumulate(event)
        if event.type == "message_stop":
            self.complete = True
            self.settle(None)

    def _merge_usage(self, delta: Any) -> None:
        """Fold a ``message_delta``'s cumulative usage into what ``message_start`` reported."""
        update = {
            name: value
            for name in _USAGE_FIELDS
            if (value := getattr(delta, name, None)) is not None
        }
        if self.usage is None:
            self.usage = Usage.model_construct(**{"input_tokens": 0, "output_tokens": 0, **update})
        else:
            self.usage = self.usage.model_copy(update=update)

    def _accumulate(self, event: RawMessageStreamEvent) -> None:
        try:
            self.snapshot = accumulate(event, self.snapshot, self.json_bufs)
        except Exception:  # an event we cannot fold: serve the stream, just do not cache it
            log.debug("streamed answer not cacheable: could not accumulate", exc_info=True)
            self.cache_key = None
            self.snapshot = None

    def settle(self, error: BaseException | None) -> None:
        """End the attempt and the call (once). `error`: why the stream ended early, if it did."""
        if self.settled:
            return
        self.settled = True
        attempt = self.attempt
        usage = self.usage
        if self.complete and usage is not None:
            attempt.succeeded(self.model, usage)
        else:
            why = error or asyncio.CancelledError()
            if usage is None:
                attempt.failed(why, None)
            else:
                # Ended early: at least what the server reported or what we saw, whichever is
                # larger (a message_delta is often only sent at the end).
                produced = max(usage.output_tokens, math.ceil(self.delivered))
                usage = usage.model_copy(update={"output_tokens": produced})
                if isinstance(error, APIStatusError):
                    attempt.failed(error, usage)  # the server ended it, counting what it sent
                else:
                    # the caller left: the server stops at its next write, having produced
                    # maybe more than was read; keep the output until it surely stopped
                    attempt.abandoned(why, usage)
        ended = None if self.complete else (error or asyncio.CancelledError())
        attempt.context.finish(attempt.call, ended)

    async def aclose(self) -> None:
        """Settle (abandoned if not complete), close the response, store a complete answer."""
        if self.closed:
            return
        self.closed = True
        self.settle(None)
        await close_quietly(self.upstream)
        if self.complete and self.cache_key is not None and self.snapshot is not None:
            try:
                message = Message.model_validate(self.snapshot.to_dict(mode="json"))
            except Exception:
                log.debug("streamed answer not cacheable: not a valid Message", exc_info=True)
                return
            message._request_id = self.upstream.response.headers.get("request-id")
            await self.attempt.context.store_answer(self.cache_key, message)

    def collected(self, loop: asyncio.AbstractEventLoop) -> None:
        """The stream was garbage-collected unclosed: close and settle it on the loop soon.

        Never settles here directly: a collection can run in the middle of the scheduler's
        own bookkeeping, which a refund must not re-enter.
        """
        if self.closed or loop.is_closed():
            return
        try:
            loop.call_soon_threadsafe(self._spawn_close)
        except RuntimeError:  # the loop closed meanwhile
            pass

    def _spawn_close(self) -> None:
        if self.closed:
            return
        task = asyncio.ensure_future(self.aclose())
        _CLOSING.add(task)
        task.add_done_callback(_CLOSING.discard)
