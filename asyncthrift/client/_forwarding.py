"""``client.messages.with_raw_response.forwarding()``: ``create`` for a proxy, whose answer
is the upstream's bytes (`RawAnswer`) instead of a `Message`.

Why: a gateway passes each answer on as it came; parsing it into a `Message` and writing it
back costs more CPU than the rest of its work (bench/RESULTS.md, "Gateway pass-through").
Everything else is ``create``'s: scheduled in its lane with its deadline, retried, budgets
settled from the usage; the cache and in-flight dedupe kept (twins get the same bytes, the
first caller running the call in its own task, `asyncthrift.pipeline._forward_flight`; a
cache hit is the stored answer written back as JSON); packing, adaptive ``max_tokens``
and compression too (a packed or adaptive call is answered as a `Message` and written
back). One `ForwardedMessages` keeps its own calls in flight and, when the client sends with
aiohttp, its own aiohttp sessions: make one per client, keep it, and ``await aclose()`` it
after the client (`asyncthrift.gateway` does).

The arguments are ``create``'s as JSON values (a parsed request body, fields the SDK does
not know under ``extra_body``); ``stream=True`` is refused by ``create``: `stream` forwards a
stream, the upstream's server-sent events as they came, its books kept as
``create(stream=True)`` keeps them (`asyncthrift.pipeline._forward_stream`). Not
done for a forwarded answer: the SDK's client-side checks of the arguments (the API makes
its own) and confirming an automatic prompt-cache breakpoint (``auto_cache_control``).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import anthropic
import orjson

from ..errors import InvalidArgument
from ..pipeline._attempt import Call
from ..pipeline._forward import ForwardRoute, RawAnswer
from ..pipeline._forward_flight import InlineFlight
from ..pipeline._forward_stream import ForwardedStream, ForwardStreamRoute, ReplayedStream
from ..pipeline._options import stream_requested
from ..savings.compression import compress_kwargs
from ..stores.cache.base import (
    COMPLETE_STOP_REASONS,
    REQUEST_ID_KEY,
    TRUNCATED_SKIP_WARNING,
    TRUNCATED_STOP_REASONS,
)
from ._pipeline import Pipeline

__all__ = ["ForwardedMessages", "ForwardedStream", "RawAnswer", "ReplayedStream"]

log = logging.getLogger("asyncthrift")


class ForwardedMessages:
    """See the module's docstring."""

    __slots__ = ("_flight", "_max_retries", "_pipeline", "_route", "_sdks", "_stream_route")

    def __init__(
        self,
        pipeline: Pipeline,
        sdks: Sequence[anthropic.AsyncAnthropic],
        max_retries: int,
        *,
        beta: bool = False,
    ) -> None:
        self._pipeline = pipeline
        self._sdks = sdks
        self._max_retries = max_retries
        self._route = ForwardRoute(sdks, beta=beta)
        self._stream_route = ForwardStreamRoute(self._route)
        self._flight: InlineFlight[str, RawAnswer] = InlineFlight()  # no task per call

    async def create(self, **kwargs: Any) -> RawAnswer:
        """``messages.create(**kwargs)`` (asyncthrift's options included), its answer the
        upstream's bytes; a cache hit or a twin's answer has the same `RawAnswer` fields."""
        if stream_requested(kwargs):
            raise InvalidArgument("forwarding: create(stream=True): use forwarding's stream()")
        p = self._pipeline
        kwargs = compress_kwargs(p.compressor, kwargs)
        kwargs.pop("stream", None)
        call = p.start("create", kwargs, self._sdks, self._max_retries)
        if call.via is not None:  # packed or adaptive: a Message, written back
            return await p.bracket(call, self._as_message(call))
        if call.key is None:
            return await p.bracket(call, p.run(call, self._route))
        return await p.bracket(call, self._lookup(call, call.key))

    async def stream(self, **kwargs: Any) -> ForwardedStream | ReplayedStream:
        """``messages.create(stream=True, **kwargs)``, admitted and holding its first event,
        its answer the upstream's server-sent events as they came (`ForwardedStream`); a
        cached answer or a twin's in flight is replayed as events (`ReplayedStream`)."""
        p = self._pipeline
        kwargs = compress_kwargs(p.compressor, kwargs)
        kwargs.pop("stream", None)
        call = p.start("stream", kwargs, self._sdks, self._max_retries)
        # a live stream's end is recorded when its reader finishes (`StreamLedger.settle`)
        return await p.bracket(call, self._open(call), ends=False)

    async def aclose(self) -> None:
        """Close its own HTTP sessions (after the client's calls have ended: a gateway
        closes it after `Thrift.aclose`)."""
        await self._route.aclose()

    async def _open(self, call: Call) -> ForwardedStream | ReplayedStream:
        """The cache, then a twin in flight, then a live stream (as ``create(stream=True)``)."""
        p = self._pipeline
        if call.key is not None:
            message, _ = await p.answers.lookup(p, call, lead=False)
            if message is not None:
                p.finish(call, None)
                return ReplayedStream(message)
        stream: ForwardedStream = await p.run(call, self._stream_route)
        return stream

    async def _as_message(self, call: Call) -> RawAnswer:
        p = self._pipeline
        via = call.via
        assert via is not None
        message = await (p.answers.fetch(p, call) if call.key is not None else via(p, call))
        return RawAnswer.of_message(message)

    async def _lookup(self, call: Call, key: str) -> RawAnswer:
        """The cache, then a twin in flight, else the upstream (and stored), as
        `asyncthrift.pipeline._lookup.Answers` does for `Message` answers."""
        if call.use_cache:
            hit = await self._cached(key)
            if hit is not None:
                return hit
        if not call.use_dedupe:
            return await self._fetch_and_store(call, key)
        answer, joined = await self._flight.do(key, lambda: self._fetch_and_store(call, key))
        if joined:
            self._pipeline.answers.count_saved(answer.model, answer.usage, cache_hit=False)
        return answer

    async def _fetch_and_store(self, call: Call, key: str) -> RawAnswer:
        p = self._pipeline
        if call.use_cache and p.answers.is_shared:
            again = await self._cached(key, count_miss=False)  # another process stored it
            if again is not None:
                return again
        answer: RawAnswer = await p.run(call, self._route)
        if call.use_cache and call.fell_back_from is None:
            await self._store(key, answer)
        return answer

    async def _cached(self, key: str, *, count_miss: bool = True) -> RawAnswer | None:
        """The cached answer (validated as the cache's `Message` entries are), or None."""
        message = await self._pipeline.answers.cached(key, count_miss=count_miss)
        return None if message is None else RawAnswer.of_message(message)

    async def _store(self, key: str, answer: RawAnswer) -> None:
        """Store `answer` as the cache stores a `Message` (its fields as sent, and its
        request id), if it is complete (or cut at a length limit, when those are kept)."""
        answers = self._pipeline.answers
        cache = answers.cache
        if cache is None:
            return
        reason = answer.stop_reason
        if reason in COMPLETE_STOP_REASONS or (
            answers.truncated and reason in TRUNCATED_STOP_REASONS
        ):
            entry = dict(answer.data)
            if answer.request_id is not None:
                entry[REQUEST_ID_KEY] = answer.request_id
            await cache.set(key, orjson.dumps(entry), answers.ttl)
        elif reason in TRUNCATED_STOP_REASONS:
            stats = answers.stats
            stats.cache_truncated_skipped += 1
            if stats.cache_truncated_skipped == 1:
                log.warning(TRUNCATED_SKIP_WARNING, reason)
