"""What a failed attempt means for its call (`Failures`): retried, rerouted, fallen back, or
raised.

A stage of the request pipeline with what it decides from: the retry policy, the queue
counter (a closing client retries nothing), the model classes (a refused key is disabled
there) and the counters. The pipeline asks it once per failed attempt (`after`), after the
attempt's reservation is settled by the attempt itself.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping

import anthropic
import httpx2

from ..core._status import error_status
from ..core.stats import Recorder
from ..scheduling.bucket import ServerView
from ..scheduling.lanes import QueueCounter
from ._attempt import Attempt, Call, SendFailed
from ._classes import ModelClasses
from ._model_fallback import fall_back
from .retry import RetryPolicy, classify, server_view

__all__ = ["Failures"]

log = logging.getLogger("asyncthrift")


class Failures:
    """Settles a failed attempt and decides what its call does next."""

    __slots__ = ("models", "queue", "retry", "stats")

    def __init__(
        self, retry: RetryPolicy, *, queue: QueueCounter, models: ModelClasses, stats: Recorder
    ) -> None:
        self.retry = retry
        self.queue = queue
        self.models = models
        self.stats = stats

    def after(self, attempt: Attempt, exc: BaseException, box: list[Mapping[str, str]]) -> float:
        """Settle a failed attempt; the delay before retrying it, or raise what failed it."""
        if isinstance(exc, SendFailed):
            meaning, original = exc.meaning, exc.original
        else:
            meaning = original = exc
        if box:
            attempt.view = server_view(box[-1])
        elif isinstance(meaning, anthropic.APIStatusError):  # a transport without the hook
            attempt.view = server_view(meaning.response.headers)
        elif not isinstance(
            meaning, anthropic.APIError | asyncio.CancelledError | httpx2.TransportError | OSError
        ):
            attempt.sent = False  # the SDK refused the arguments before sending
        # a refused key is disabled before its reservation goes back, which wakes the queue
        call = attempt.call
        if call.chain and error_status(meaning) == 529:  # overloaded: the next model answers
            attempt.failed(meaning)
            self.queue.check_open()
            fall_back(call, call.chain[0], "overloaded (529)")
            return 0.0
        others_left = isinstance(
            meaning, anthropic.AuthenticationError | anthropic.PermissionDeniedError
        ) and self.models.refuse(attempt.index, meaning)
        attempt.failed(meaning)
        if others_left:
            self.queue.check_open()  # closed: ClientClosed (from `exc`), not a reroute
            self.stats.rerouted += 1
            return 0.0  # back in line (same place), on another key
        delay = None
        if isinstance(meaning, anthropic.APIStatusError | anthropic.APIConnectionError):
            delay = self._retry_delay(meaning, attempt.view, attempt.call)
        if delay is None:
            if original is exc:
                raise exc
            raise original from None
        return delay

    def _retry_delay(self, exc: BaseException, view: ServerView, call: Call) -> float | None:
        """Seconds to wait before re-queueing after `exc`, or None if it must not be retried."""
        decision = classify(exc, view)
        if not decision.retry or call.number >= call.max_retries:
            return None
        self.queue.check_open()  # closed: ClientClosed (from `exc`), not a retry
        if decision.status == 429:
            delay = 0.0  # the budget itself is blocked until retry-after
        elif decision.retry_after is not None:
            delay = decision.retry_after
        else:
            delay = self.retry.backoff(call.number)
        call.number += 1  # a retry keeps its place in line: `enqueued_at` is unchanged
        self.stats.retries += 1
        log.debug("retry %d after %.3fs: %s", call.number, delay, type(exc).__name__)
        return delay
