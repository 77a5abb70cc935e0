r"""Answers identical calls share: the cache, then a twin in flight, else the API (and stored).

`fetch` is what ``messages.create`` goes through; a stream only `lookup`\s (without leading)
and `store`\s what it read when it ends.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from anthropic.types import Message

from ._routes import CREATE
from .cache.base import (
    TRUNCATED_SKIP_WARNING,
    decode_message,
    encode_message,
    is_cacheable,
    is_truncated,
    reject_entry,
)
from .errors import DeadlineExceeded
from .prices import usage_cost

if TYPE_CHECKING:
    from ._attempt import Call
    from ._pipeline import Pipeline

__all__ = ["fetch", "lookup", "store"]

log = logging.getLogger("asyncthrift")


async def fetch(p: Pipeline, call: Call) -> Message:
    """A Messages answer from the cache, a twin in flight, or the API (and stored)."""
    message, _ = await lookup(p, call, lead=True)
    assert message is not None
    return message


async def lookup(p: Pipeline, call: Call, *, lead: bool) -> tuple[Message | None, str]:
    """The cached answer, else a twin's in flight: (answer, "cache" | "dedupe" | "").

    With `lead`, a call with no twin fetches the answer itself (registered, with dedupe,
    so later twins join it; then the source is ""); otherwise it only joins one already
    running, and (None, "") means: run it yourself.
    """
    key = call.key
    assert key is not None
    if call.use_cache:
        message = await _cached(p, key)
        if message is not None:
            return message, "cache"
    if call.use_dedupe and (lead or p.flight.has(key)):
        use_cache = call.use_cache
        while True:
            joining = p.flight.has(key)
            try:
                message, joined = await p.flight.do_joined(
                    key, lambda: _fetch_and_store(p, key, call, use_cache)
                )
            except DeadlineExceeded:
                if not joining:
                    raise  # this call's own deadline
                # the twin it joined ran out of *its* deadline: not this call's failure; join
                # a newer twin, or go itself
                if lead or p.flight.has(key):
                    continue
                return None, ""
            break
        if joined:
            _count_saved(p, message, cache_hit=False)
            return message, "dedupe"
        return message, ""
    if lead:
        return await _fetch_and_store(p, key, call, call.use_cache), ""
    return None, ""


async def _cached(p: Pipeline, key: str, *, count_miss: bool = True) -> Message | None:
    """The cached answer for `key`, or None (a miss, or an entry that does not decode)."""
    assert p.cache is not None
    blob = await p.cache.get(key)
    if blob is not None:
        try:
            message = decode_message(blob)
        except ValueError:
            p.stats.cache_errors += 1
            log.warning("a cached entry did not decode; treating it as a miss")
            await reject_entry(p.cache, key)  # counted and deleted by the cache
        else:
            _count_saved(p, message, cache_hit=True)
            return message
    if count_miss:
        p.stats.cache_misses += 1
    return None


async def _fetch_and_store(p: Pipeline, key: str, call: Call, use_cache: bool) -> Message:
    if use_cache and p.cache_is_shared:
        # another process (or a call that finished since our miss) may have stored it
        again = await _cached(p, key, count_miss=False)
        if again is not None:
            return again
    via = call.via
    message: Message = await (p.run(call, CREATE) if via is None else via(p, call))
    # not another model's answer to this (a packed call's fallback is passed on to its
    # items by `packing`; an adaptive one is the call's own)
    if use_cache and call.fell_back_from is None:
        await store(p, key, message)
    return message


async def store(p: Pipeline, key: str, message: Message) -> None:
    """Cache `message` under `key` if it may be cached; an answer cut at a length limit
    that is not stored (``cache_truncated=False``) is counted, and said once per client."""
    if p.cache is None:
        return
    if is_cacheable(message, p.cache_truncated):
        await p.cache.set(key, encode_message(message), p.cache_ttl)
    elif is_truncated(message):
        s = p.stats
        s.cache_truncated_skipped += 1
        if s.cache_truncated_skipped == 1:
            log.warning(TRUNCATED_SKIP_WARNING, message.stop_reason)


def _count_saved(p: Pipeline, message: Message, *, cache_hit: bool) -> None:
    s = p.stats
    u = message.usage
    tokens = u.input_tokens + u.output_tokens
    dollars = usage_cost(message.model, u)
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
