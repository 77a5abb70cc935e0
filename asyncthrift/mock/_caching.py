"""Prompt caching, as far as rate limits and usage care: which prefix tokens are read from
cache (free for ITPM) and which are written (charged as ``cache_creation_input_tokens``).

Only hashes and expiry times are stored. A breakpoint's prefix is cached once it is at
least the model's minimum cacheable length; a later request whose breakpoint hashes to a
live entry reads it and refreshes its TTL, as the API does.
"""

from __future__ import annotations

from typing import NamedTuple

from ..scheduling.limits import model_class
from ._tokenizer import InputAnalysis

__all__ = ["CacheSplit", "PromptCache", "min_cacheable"]

_MAX_ENTRIES = 100_000


def min_cacheable(model: str) -> int:
    """Minimum cacheable prefix: 2048 tokens for Haiku, 1024 for the others."""
    return 2048 if model_class(model) == "haiku" else 1024


class CacheSplit(NamedTuple):
    """How a request's input tokens split between fresh input, cache writes and reads."""

    input_tokens: int
    cache_creation: int
    cache_read: int


class PromptCache:
    """Live cached prefixes by hash, with expiry on the server's monotonic clock."""

    __slots__ = ("_entries", "ttl_scale")

    def __init__(self, ttl_scale: float = 1.0) -> None:
        self.ttl_scale = ttl_scale
        self._entries: dict[tuple[str, int], float] = {}

    def clear(self) -> None:
        self._entries.clear()

    def split(self, scope: str, analysis: InputAnalysis, minimum: int, now: float) -> CacheSplit:
        """The split for `analysis` given the current cache; changes nothing."""
        if not analysis.breakpoints:
            return CacheSplit(analysis.total, 0, 0)
        read = 0
        for bp in reversed(analysis.breakpoints):
            expiry = self._entries.get((scope, bp.key))
            if expiry is not None and expiry > now:
                read = bp.tokens
                break
        last = analysis.breakpoints[-1].tokens
        creation = last - read if last >= minimum and last > read else 0
        return CacheSplit(analysis.total - read - creation, creation, read)

    def commit(self, scope: str, analysis: InputAnalysis, minimum: int, now: float) -> None:
        """Write (or refresh) every breakpoint long enough to be cached."""
        entries = self._entries
        if len(entries) > _MAX_ENTRIES:
            for key in [k for k, exp in entries.items() if exp <= now]:
                del entries[key]
        for bp in analysis.breakpoints:
            if bp.tokens >= minimum:
                entries[(scope, bp.key)] = now + bp.ttl * self.ttl_scale
