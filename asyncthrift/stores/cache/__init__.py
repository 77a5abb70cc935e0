"""Answer caches: never pay twice for the same request.

`make_cache` turns the ``cache=`` option into a `Cache`; `fingerprint` gives the key. Backends:
`MemoryCache` (in-process LRU with TTL), `RedisCache` (shared, survives restarts, never takes
the app down) and `TieredCache` (memory in front of Redis).
"""

from __future__ import annotations

from typing import Any, Final

from ...errors import InvalidArgument
from .base import Cache, CacheStats, decode_message, encode_message, is_cacheable
from .keys import fingerprint, scope_for_key
from .memory import MemoryCache
from .redis import RedisCache
from .tiered import TieredCache

__all__ = [
    "Cache",
    "CacheStats",
    "MemoryCache",
    "RedisCache",
    "TieredCache",
    "decode_message",
    "encode_message",
    "fingerprint",
    "is_cacheable",
    "make_cache",
    "scope_for_key",
]

_REDIS_SCHEMES: Final = ("redis://", "rediss://", "unix://")
_MEMORY_OPTS: Final = frozenset({"max_entries", "max_bytes", "clock"})
_ACCEPTED: Final = (
    "cache= accepts None, 'memory', a Redis URL ('redis://host:port/db', 'rediss://...', "
    "'unix:///path.sock'), 'memory+redis://...' (memory in front of Redis), "
    "or an object implementing asyncthrift.cache.Cache"
)


def make_cache(spec: str | Cache | None, **opts: Any) -> Cache | None:
    """The cache described by `spec`, or None for no cache.

    - ``None``: no cache.
    - ``"memory"``: `MemoryCache` (`opts`: ``max_entries``, ``max_bytes``, ``ttl``, ``clock``).
    - ``"redis://..."``, ``"rediss://..."``, ``"unix://..."``: `RedisCache` (`opts`:
      ``namespace``, ``ttl``, ``timeout``, ``compress_above``, ... and redis-py options).
    - ``"memory+redis://..."`` (or ``+rediss``/``+unix``): `TieredCache` of both; memory
      options go to the front, the rest to Redis, ``ttl`` to both.
    - a `Cache` object: returned as is (its owner keeps it; `opts` must be empty).
    """
    if spec is None:
        return None
    if isinstance(spec, str):
        s = spec.strip()
        if s.lower() == "memory":
            return MemoryCache(**opts)
        if s.lower().startswith(_REDIS_SCHEMES):
            return RedisCache(s, **opts)
        if s.lower().startswith("memory+"):
            url = s[len("memory+") :]
            if url.lower().startswith(_REDIS_SCHEMES):
                front_opts = {k: v for k, v in opts.items() if k in _MEMORY_OPTS or k == "ttl"}
                back_opts = {k: v for k, v in opts.items() if k not in _MEMORY_OPTS}
                return TieredCache(MemoryCache(**front_opts), RedisCache(url, **back_opts))
        raise InvalidArgument(f"{_ACCEPTED}; got {spec!r}")
    obj: object = spec  # checked at run time: callers are not always type-checked
    if isinstance(obj, Cache):
        if opts:
            raise TypeError(f"cache options {sorted(opts)} apply only when cache= is a string")
        return obj
    hint = " (use 'memory' for an in-process cache)" if obj is True else ""
    raise InvalidArgument(f"{_ACCEPTED}; got {obj!r}{hint}")
