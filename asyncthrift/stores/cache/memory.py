"""An in-process LRU answer cache bounded by entries and bytes, with TTL.

One `OrderedDict` gives O(1) get, set, refresh and eviction. Nothing here awaits, so a `get`
completes within the caller's step: a memory hit costs a dict lookup, and no other task can
slip in between a miss and the call that follows it.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping

from ...errors import InvalidArgument
from .base import CacheStats, OwnEntry

__all__ = ["MemoryCache"]

_OVERHEAD = 64
"""Bytes charged per entry beyond key and value (tuple, dict slot): keeps many tiny entries
from exceeding the real footprint by much."""

_CHECKED_OVERHEAD = 4608
"""Bytes charged beyond twice its length for an `OwnEntry`, which keeps the validated
`Message` it decodes to (its models, dicts and strings: about 4.5 KB plus the text, measured
for a one-block answer)."""


class MemoryCache:
    """LRU cache of bytes, bounded by `max_entries` and `max_bytes`, entries live `ttl` s.

    `ttl=None` keeps entries until evicted. `clock` is injectable (a monotonic seconds
    function) so expiry can be tested without waiting. A value larger than `max_bytes` on its
    own is not stored. Not thread-safe: use it from one event loop.
    """

    __slots__ = (
        "_bytes",
        "_clock",
        "_data",
        "_evictions",
        "_expirations",
        "_hits",
        "_invalid",
        "_misses",
        "_sets",
        "max_bytes",
        "max_entries",
        "ttl",
    )

    def __init__(
        self,
        max_entries: int = 10_000,
        max_bytes: int = 64 * 1024 * 1024,
        ttl: float | None = 3600.0,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if max_entries < 1:
            raise InvalidArgument(f"MemoryCache max_entries must be >= 1, got {max_entries!r}")
        if max_bytes < 1:
            raise InvalidArgument(f"MemoryCache max_bytes must be >= 1, got {max_bytes!r}")
        if ttl is not None and ttl <= 0:
            raise InvalidArgument(f"MemoryCache ttl must be > 0 seconds or None, got {ttl!r}")
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self.ttl = ttl
        self._clock = clock
        # key -> (value, expires_at or inf, charged size)
        self._data: OrderedDict[str, tuple[bytes, float, int]] = OrderedDict()
        self._bytes = 0
        self._hits = self._misses = self._sets = 0
        self._evictions = self._expirations = 0
        self._invalid = 0

    def __len__(self) -> int:
        return len(self._data)

    def get_nowait(self, key: str) -> bytes | None:
        """`get` without the coroutine: for callers that want a hit with no await at all."""
        item = self._data.get(key)
        if item is None:
            self._misses += 1
            return None
        value, expires_at, _ = item
        if expires_at <= self._clock():
            self._drop(key)
            self._expirations += 1
            self._misses += 1
            return None
        self._data.move_to_end(key)
        self._hits += 1
        return value

    def set_nowait(self, key: str, value: bytes, ttl: float | None = None) -> None:
        """`set` without the coroutine."""
        size = len(key) + len(value) + _OVERHEAD
        if type(value) is OwnEntry:  # it will also hold its validated message
            size += len(value) + _CHECKED_OVERHEAD
        if key in self._data:
            self._drop(key)
        if size > self.max_bytes:
            return
        ttl = self.ttl if ttl is None else ttl
        expires_at = float("inf") if ttl is None else self._clock() + ttl
        self._data[key] = (value, expires_at, size)
        self._bytes += size
        self._sets += 1
        data = self._data
        while len(data) > self.max_entries or self._bytes > self.max_bytes:
            _, (_, _, old) = data.popitem(last=False)
            self._bytes -= old
            self._evictions += 1

    async def get(self, key: str) -> bytes | None:
        return self.get_nowait(key)

    async def set(self, key: str, value: bytes, ttl: float | None = None) -> None:
        self.set_nowait(key, value, ttl)

    async def get_many(self, keys: Iterable[str]) -> list[bytes | None]:
        """Values for `keys` in order (None where missing)."""
        return [self.get_nowait(k) for k in keys]

    async def set_many(self, items: Mapping[str, bytes], ttl: float | None = None) -> None:
        """Store every item of `items` with the same `ttl`."""
        for k, v in items.items():
            self.set_nowait(k, v, ttl)

    def delete(self, key: str) -> bool:
        """Remove `key`; True if it was present."""
        if key in self._data:
            self._drop(key)
            return True
        return False

    async def reject(self, key: str) -> None:
        """The value under `key` did not decode: count it and drop it."""
        self._invalid += 1
        self.delete(key)

    def clear(self) -> None:
        """Remove every entry (counters are kept)."""
        self._data.clear()
        self._bytes = 0

    async def aclose(self) -> None:
        self.clear()

    @property
    def stats(self) -> CacheStats:
        return CacheStats(
            hits=self._hits,
            misses=self._misses,
            sets=self._sets,
            evictions=self._evictions,
            expirations=self._expirations,
            entries=len(self._data),
            bytes=self._bytes,
            invalid=self._invalid,
        )

    def _drop(self, key: str) -> None:
        _, _, size = self._data.pop(key)
        self._bytes -= size

    def __repr__(self) -> str:
        return (
            f"MemoryCache(entries={len(self._data)}/{self.max_entries}, "
            f"bytes={self._bytes}/{self.max_bytes}, ttl={self.ttl})"
        )
