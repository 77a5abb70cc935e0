r"""Answers identical calls share (`Answers`): the cache, then a twin in flight, else the API
(and stored).

`Answers.fetch` is what ``messages.create`` goes through; a stream only `Answers.lookup`\s
(without leading) and `Answers.store`\s what it read when it ends. It is given the cache,
its TTL and the client's counters; what runs a call that must go to the API is the
`Runner` each fetch is handed (the pipeline).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

from anthropic.types import Message, Usage

from ..core.prices import usage_cost
from ..core.stats import Recorder
from ..errors import DeadlineExceeded
from ..stores.cache import Cache, MemoryCache
from ..stores.cache._written import WrittenEntries
from ..stores.cache.base import (
    TRUNCATED_SKIP_WARNING,
    decode_message,
    encode_message,
    encode_own,
    is_cacheable,
    is_truncated,
    reject_entry,
)
from ._routes import CREATE
from .dedupe import SingleFlight

if TYPE_CHECKING:
    from ._attempt import Call, Runner

__all__ = ["Answers"]

log = logging.getLogger("asyncthrift")


class Answers:
    """The cache (its TTL, whether answers cut at a length limit are kept, whether other
    processes share it) and the calls in flight that identical calls join (dedupe)."""

    __slots__ = (
        "_get_nowait",
        "_written",
        "cache",
        "flight",
        "is_shared",
        "stats",
        "truncated",
        "ttl",
    )

    def __init__(
        self, cache: Cache | None, *, ttl: float | None, truncated: bool, stats: Recorder
    ) -> None:
        self.cache = cache
        self.is_shared = cache is not None and not isinstance(cache, MemoryCache)
        # a hit from the in-process cache needs no coroutine (its `get` only wraps this)
        self._get_nowait: Callable[[str], bytes | None] | None = (
            cache.get_nowait if type(cache) is MemoryCache else None
        )
        # a shared cache's entries this process wrote, to know them when read back
        self._written = WrittenEntries() if self.is_shared else None
        self.ttl = ttl
        self.truncated = truncated
        self.stats = stats
        self.flight: SingleFlight[str, Message] = SingleFlight()

    async def fetch(self, runner: Runner, call: Call) -> Message:
        """A Messages answer from the cache, a twin in flight, or the API (and stored).

        A hit is answered here, without `lookup`'s and `cached`'s coroutines (and, from a
        `MemoryCache`, without the cache's): it is the whole of a repeated call's work."""
        if call.use_cache:
            key, cache = call.key, self.cache
            assert key is not None and cache is not None
            get_nowait = self._get_nowait
            blob = get_nowait(key) if get_nowait is not None else await cache.get(key)
            if blob is not None:
                message = self._decoded(key, blob)
                if message is not None:
                    return message
                await reject_entry(cache, key)  # counted and deleted by the cache
            self.stats.cache_misses += 1
        message, _ = await self.lookup(runner, call, lead=True, looked_up=True)
        assert message is not None
        return message

    async def lookup(
        self, runner: Runner, call: Call, *, lead: bool, looked_up: bool = False
    ) -> tuple[Message | None, str]:
        """The cached answer, else a twin's in flight: (answer, "cache" | "dedupe" | "").

        With `lead`, a call with no twin fetches the answer itself by `runner` (registered,
        with dedupe, so later twins join it; then the source is ""); otherwise it only joins
        one already running, and (None, "") means: run it yourself. With `looked_up` the
        cache was asked already (a miss, counted: `fetch`).
        """
        key = call.key
        assert key is not None
        if call.use_cache and not looked_up:
            message = await self.cached(key)
            if message is not None:
                return message, "cache"
        flight = self.flight
        if call.use_dedupe and (lead or flight.has(key)):
            use_cache = call.use_cache
            while True:
                joining = flight.has(key)
                try:
                    message, joined = await flight.do_joined(
                        key, lambda: self._fetch_and_store(runner, key, call, use_cache)
                    )
                except DeadlineExceeded:
                    if not joining:
                        raise  # this call's own deadline
                    # the twin it joined ran out of *its* deadline: not this call's failure;
                    # join a newer twin, or go itself
                    if lead or flight.has(key):
                        continue
                    return None, ""
                break
            if joined:
                self.count_saved(message.model, message.usage, cache_hit=False)
                return message, "dedupe"
            return message, ""
        if lead:
            return await self._fetch_and_store(runner, key, call, call.use_cache), ""
        return None, ""

    async def store(self, key: str, message: Message) -> None:
        """Cache `message` under `key` if it may be cached; an answer cut at a length limit
        that is not stored (``cache_truncated=False``) is counted, and said once per client."""
        cache = self.cache
        if cache is None:
            return
        if is_cacheable(message, self.truncated):
            if self._get_nowait is not None:  # in this process: validated on first read only
                data = encode_own(message)
            else:
                data = encode_message(message)
                if self._written is not None:
                    self._written.wrote(key, data)
            await cache.set(key, data, self.ttl)
        elif is_truncated(message):
            s = self.stats
            s.cache_truncated_skipped += 1
            if s.cache_truncated_skipped == 1:
                log.warning(TRUNCATED_SKIP_WARNING, message.stop_reason)

    async def cached(self, key: str, *, count_miss: bool = True) -> Message | None:
        """The cached answer for `key`, or None (a miss, or an entry that does not decode);
        a hit is counted as saved, a miss as a miss when `count_miss`."""
        cache = self.cache
        assert cache is not None
        blob = await cache.get(key)
        if blob is not None:
            message = self._decoded(key, blob)
            if message is not None:
                return message
            await reject_entry(cache, key)  # counted and deleted by the cache
        if count_miss:
            self.stats.cache_misses += 1
        return None

    def _decoded(self, key: str, blob: bytes) -> Message | None:
        """The answer in `blob` (read under `key`), counted as saved; None (counted, said)
        if it does not decode: the caller rejects the entry and treats it as a miss."""
        written = self._written
        if written is not None:  # the bytes this process wrote there: validated once
            blob = written.own(key, blob)
        try:
            message = decode_message(blob)
        except ValueError:
            self.stats.cache_errors += 1
            log.warning("a cached entry did not decode; treating it as a miss")
            return None
        self.count_saved(message.model, message.usage, cache_hit=True)
        return message

    async def _fetch_and_store(
        self, runner: Runner, key: str, call: Call, use_cache: bool
    ) -> Message:
        if use_cache and self.is_shared:
            # another process (or a call that finished since our miss) may have stored it
            again = await self.cached(key, count_miss=False)
            if again is not None:
                return again
        via = call.via
        message: Message = await (runner.run(call, CREATE) if via is None else via(runner, call))
        # not another model's answer to this (a packed call's fallback is passed on to its
        # items by `packing`; an adaptive one is the call's own)
        if use_cache and call.fell_back_from is None:
            await self.store(key, message)
        return message

    def count_saved(self, model: str, usage: Usage, *, cache_hit: bool) -> None:
        """Count an answer served from the cache or shared with a twin as saved (also for
        the forwarding route, whose answers are bytes rather than a `Message`)."""
        s = self.stats
        tokens = usage.input_tokens + usage.output_tokens
        dollars = usage_cost(model, usage)
        if cache_hit:
            s.cache_hits += 1
            s.cache_calls_saved += 1
            s.cache_tokens_saved += tokens
            s.cache_dollars_saved += dollars
        else:
            s.dedupe_joins += 1
            s.dedupe_calls_saved += 1
            s.dedupe_tokens_saved += tokens
            s.dedupe_dollars_saved += dollars
        s.upstream_calls_saved += 1
        s.tokens_saved += tokens
        s.dollars_saved += dollars
