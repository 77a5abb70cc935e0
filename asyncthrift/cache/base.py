"""The `Cache` protocol, its counters, and the Message <-> bytes codec.

A cache stores opaque bytes under string keys; what the bytes mean (an encoded
`anthropic.types.Message`) is decided here, once, so every backend stores the same format and
one process can read what another wrote. The protocol is structural: any object with these
methods works, so an application can plug in its own store without subclassing.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Protocol, runtime_checkable

import orjson
from anthropic.types import Message
from pydantic import ValidationError

__all__ = [
    "COMPLETE_STOP_REASONS",
    "TRUNCATED_STOP_REASONS",
    "Cache",
    "CacheStats",
    "decode_message",
    "encode_message",
    "is_cacheable",
]


@dataclass(frozen=True, slots=True)
class CacheStats:
    """A snapshot of one cache's counters (each counts operations, not requests).

    - `hits` / `misses`: `get` calls that found / did not find a live entry.
    - `sets`: entries stored.
    - `errors`: operations that failed (backend error, timeout, undecodable value); a failed
      `get` also counts as a miss, never as an exception to the caller.
    - `timeouts`: the subset of `errors` that hit the per-operation time bound.
    - `skipped`: operations not attempted because the backend is known to be down (circuit
      open): they cost nothing and count as misses / no-ops.
    - `evictions`: entries dropped to stay within the size bounds.
    - `expirations`: entries found past their TTL and dropped.
    - `entries` / `bytes`: current size, where the backend knows it (0 otherwise).
    """

    hits: int = 0
    misses: int = 0
    sets: int = 0
    errors: int = 0
    timeouts: int = 0
    skipped: int = 0
    evictions: int = 0
    expirations: int = 0
    entries: int = 0
    bytes: int = 0


@runtime_checkable
class Cache(Protocol):
    """What asyncthrift needs from an answer cache.

    Implementations must never raise on `get`/`set` for backend trouble: a cache outage must
    not become an outage of the application, so failures are counted in `stats` and behave
    as a miss (get) or a no-op (set).
    """

    async def get(self, key: str) -> bytes | None:
        """The value stored under `key`, or None if absent, expired or unavailable."""
        ...

    async def set(self, key: str, value: bytes, ttl: float | None = None) -> None:
        """Store `value` under `key` for `ttl` seconds (None: the cache's default TTL)."""
        ...

    async def aclose(self) -> None:
        """Release connections; the cache must not be used afterwards."""
        ...

    @property
    def stats(self) -> CacheStats:
        """A snapshot of the counters."""
        ...


COMPLETE_STOP_REASONS: Final[frozenset[str]] = frozenset({"end_turn", "stop_sequence", "tool_use"})
"""Stop reasons of a finished answer, which the same request would get again."""

TRUNCATED_STOP_REASONS: Final[frozenset[str]] = frozenset(
    {"max_tokens", "model_context_window_exceeded"}
)
"""Stop reasons of an answer cut short by a length limit: cacheable only on request.

``pause_turn`` (an unfinished server-tool turn), ``refusal`` and a missing stop reason are
never stored: they are not the complete answer the request asked for.
"""


def is_cacheable(msg: Message, allow_truncated: bool = False) -> bool:
    """Whether `msg` is a complete, successful answer worth storing."""
    reason = msg.stop_reason
    if reason in COMPLETE_STOP_REASONS:
        return True
    return allow_truncated and reason in TRUNCATED_STOP_REASONS


def encode_message(msg: Message) -> bytes:
    """`msg` as orjson bytes, exactly the fields that were set (as the server sent them).

    ``exclude_unset`` keeps entries small and faithful: fields the server did not send are
    restored to their defaults on decode, so ``decode_message(encode_message(m)) == m``.
    Fields this SDK version does not know (kept by the SDK as extras) are kept too.
    """
    return orjson.dumps(msg.model_dump(mode="json", exclude_unset=True))


def decode_message(data: bytes) -> Message:
    """The `Message` that `encode_message` encoded, equal to the original.

    Validation (~20 µs) is strict so that a corrupt entry fails here, not in the caller; an
    entry written by a newer SDK that this one does not fully understand (a new block type or
    stop reason) is still returned, built leniently the way the SDK builds responses.
    Raises `ValueError` for bytes that are not an encoded message.
    """
    obj = orjson.loads(data)
    if not isinstance(obj, dict) or obj.get("type") != "message":
        raise ValueError("cache entry is not an encoded Message")
    try:
        return Message.model_validate(obj)
    except ValidationError:
        from anthropic._models import construct_type

        msg = construct_type(type_=Message, value=obj)
        if not isinstance(msg, Message):  # pragma: no cover - construct_type returns Message
            raise ValueError("cache entry is not an encoded Message") from None
        return msg
