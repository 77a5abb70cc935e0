"""Two tiers: a fast local cache in front of a shared one (typically memory over Redis).

A front hit never touches the network; a back hit is copied into the front so the next one
does not either. Writes go to both, so other processes see the answer too.
"""

from __future__ import annotations

from .base import Cache, CacheStats, reject_entry

__all__ = ["TieredCache"]


class TieredCache:
    """`front` first, then `back`; a back hit fills the front.

    `front_ttl` bounds how long a back hit lives in the front (None: the front's default), so
    an entry deleted or expired in the shared tier does not linger locally for much longer.
    `stats` counts hits, misses and rejected entries of the pair (a front miss that the back
    answers is a hit) and sums errors and skips of both tiers; `front.stats` and `back.stats`
    give each tier.
    """

    __slots__ = ("_hits", "_invalid", "_misses", "_sets", "back", "front", "front_ttl")

    def __init__(self, front: Cache, back: Cache, *, front_ttl: float | None = None) -> None:
        self.front = front
        self.back = back
        self.front_ttl = front_ttl
        self._hits = self._misses = self._sets = self._invalid = 0

    async def get(self, key: str) -> bytes | None:
        value = await self.front.get(key)
        if value is None:
            value = await self.back.get(key)
            if value is None:
                self._misses += 1
                return None
            await self.front.set(key, value, self.front_ttl)
        self._hits += 1
        return value

    async def set(self, key: str, value: bytes, ttl: float | None = None) -> None:
        front_ttl = self.front_ttl
        if front_ttl is None or (ttl is not None and ttl < front_ttl):
            front_ttl = ttl
        await self.front.set(key, value, front_ttl)
        await self.back.set(key, value, ttl)
        self._sets += 1

    async def reject(self, key: str) -> None:
        """The value under `key` did not decode: count it once and delete it in both tiers
        (a bad value copied from the back must not outlive its deletion there)."""
        self._invalid += 1
        await reject_entry(self.front, key)
        await reject_entry(self.back, key)

    async def aclose(self) -> None:
        try:
            await self.front.aclose()
        finally:
            await self.back.aclose()

    @property
    def stats(self) -> CacheStats:
        f, b = self.front.stats, self.back.stats
        return CacheStats(
            hits=self._hits,
            misses=self._misses,
            sets=self._sets,
            errors=f.errors + b.errors,
            timeouts=f.timeouts + b.timeouts,
            skipped=f.skipped + b.skipped,
            evictions=f.evictions + b.evictions,
            expirations=f.expirations + b.expirations,
            entries=f.entries,
            bytes=f.bytes,
            invalid=self._invalid,
        )

    def __repr__(self) -> str:
        return f"TieredCache({self.front!r}, {self.back!r})"
