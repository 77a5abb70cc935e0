"""A Redis answer cache (redis-py asyncio with hiredis) that can never take the app down.

Values are the cache's opaque bytes behind a one-byte header (raw, or zlib-compressed when
that is smaller and the value is above `compress_above`), stored with ``SET ... PX`` so every
entry carries its own TTL. Keys are ``<namespace>:<key>``: a namespace isolates deployments
or test runs sharing one server.

Failure policy: every operation is bounded by `timeout` (a longer `connect_timeout` only until
the first operation succeeds: after that, reconnecting is part of the operation's bound, so a
frozen or unreachable server costs each operation at most `timeout`, never the connect
bound); an error or timeout is counted, logged once per outage,
and answered as a miss / no-op. After `failure_threshold` consecutive failures a circuit
breaker skips Redis entirely for `cooldown` seconds, so a dead server costs nothing per
request; then a single probe operation decides whether to close it again.

``redis`` is imported only when a URL is given, so the core never needs it installed.
"""

from __future__ import annotations

import logging
import time
import zlib
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any, Final, Protocol

from ...core._breaker import Breaker
from ...errors import InvalidArgument
from .base import CacheStats

__all__ = ["AsyncRedisClient", "RedisCache"]

log = logging.getLogger("asyncthrift.cache")

_RAW: Final = b"\x00"
_ZLIB: Final = b"\x01"


class AsyncRedisClient(Protocol):
    """The part of ``redis.asyncio.Redis`` this cache uses (structural, so no import)."""

    def get(self, name: str, /) -> Any: ...

    def set(self, name: str, value: bytes, /, *, px: int | None = None) -> Any: ...

    def mget(self, keys: list[str], /) -> Any: ...

    def delete(self, *names: str) -> Any: ...

    def pipeline(self, transaction: bool = True, /) -> Any: ...

    async def aclose(self) -> None: ...


class RedisCache:
    """An answer cache in Redis; see the module docstring for the failure policy.

    `url_or_client` is a ``redis://``/``rediss://`` URL (the cache then owns the client and
    closes it in `aclose`) or an existing ``redis.asyncio.Redis`` created with
    ``decode_responses=False`` (left open: its owner closes it). `redis_kwargs` go to
    ``Redis.from_url`` (e.g. ``max_connections``, ``password``).

    `ttl` is the default entry lifetime in seconds (None: no expiry); `compress_above` the size
    in bytes above which values are zlib-compressed at `compress_level` (None: never).
    """

    __slots__ = (
        "_breaker",
        "_client",
        "_hits",
        "_invalid",
        "_misses",
        "_owned",
        "_prefix",
        "_sets",
        "_skipped",
        "_unreadable",
        "compress_above",
        "compress_level",
        "connect_timeout",
        "cooldown",
        "failure_threshold",
        "namespace",
        "timeout",
        "ttl",
    )

    def __init__(
        self,
        url_or_client: str | AsyncRedisClient,
        *,
        namespace: str = "asyncthrift",
        ttl: float | None = 3600.0,
        compress_above: int | None = 4096,
        compress_level: int = 1,
        timeout: float = 0.05,
        connect_timeout: float = 1.0,
        failure_threshold: int = 3,
        cooldown: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
        **redis_kwargs: Any,
    ) -> None:
        if timeout <= 0 or connect_timeout <= 0:
            raise InvalidArgument(
                f"RedisCache timeouts must be > 0 seconds, got timeout={timeout!r}, "
                f"connect_timeout={connect_timeout!r}"
            )
        if ttl is not None and ttl <= 0:
            raise InvalidArgument(f"RedisCache ttl must be > 0 seconds or None, got {ttl!r}")
        if failure_threshold < 1:
            raise InvalidArgument(
                f"RedisCache failure_threshold must be >= 1, got {failure_threshold!r}"
            )
        self.namespace = namespace
        self.ttl = ttl
        self.compress_above = compress_above
        self.compress_level = compress_level
        self.timeout = timeout
        self.connect_timeout = max(connect_timeout, timeout)
        self.failure_threshold = failure_threshold
        self.cooldown = cooldown
        self._breaker = Breaker(
            timeout=timeout,
            connect_timeout=connect_timeout,
            failure_threshold=failure_threshold,
            cooldown=cooldown,
            on_down=self._down,
            on_up=self._up,
            warn_after=1,  # a cache that stops answering is worth a line at once
            clock=clock,
        )
        self._prefix = f"{namespace}:" if namespace else ""
        if isinstance(url_or_client, str):
            self._client: Any = _client_from_url(url_or_client, self.connect_timeout, redis_kwargs)
            self._owned = True
        else:
            if redis_kwargs:
                raise TypeError("redis_kwargs apply only when RedisCache creates the client")
            pool = getattr(url_or_client, "connection_pool", None)
            if getattr(pool, "connection_kwargs", {}).get("decode_responses"):
                raise InvalidArgument(
                    "RedisCache needs a client created with decode_responses=False: it stores bytes"
                )
            self._client = url_or_client
            self._owned = False
        self._hits = self._misses = self._sets = 0
        self._unreadable = self._skipped = 0
        self._invalid = 0

    # -- the Cache protocol ---------------------------------------------------------------

    async def get(self, key: str) -> bytes | None:
        if not self._admit():
            self._skipped += 1
            self._misses += 1
            return None
        ok, raw = await self._call(lambda: self._client.get(self._prefix + key))
        if not ok:
            self._misses += 1
            return None
        value = self._found(raw)
        if value is None and raw is not None:  # unreadable: no process should read it again
            await self.delete(key)
        return value

    async def set(self, key: str, value: bytes, ttl: float | None = None) -> None:
        px = self._px(ttl)
        if px == 0:
            return
        if not self._admit():
            self._skipped += 1
            return
        data = self._pack(value)
        ok, _ = await self._call(lambda: self._client.set(self._prefix + key, data, px=px))
        if ok:
            self._sets += 1

    async def delete(self, key: str) -> None:
        """Remove `key` (bounded and failure-proof like every operation)."""
        if not self._admit():
            self._skipped += 1
            return
        await self._call(lambda: self._client.delete(self._prefix + key))

    async def reject(self, key: str) -> None:
        """The value under `key` did not decode: count it and delete it, so no process
        reads it again."""
        self._invalid += 1
        await self.delete(key)

    async def aclose(self) -> None:
        if self._owned:
            await self._client.aclose()

    @property
    def stats(self) -> CacheStats:
        return CacheStats(
            hits=self._hits,
            misses=self._misses,
            sets=self._sets,
            errors=self._breaker.errors + self._unreadable,
            timeouts=self._breaker.timeouts,
            skipped=self._skipped,
            invalid=self._invalid,
        )

    # -- batches: one round trip for many keys ----------------------------------------------

    async def get_many(self, keys: Iterable[str]) -> list[bytes | None]:
        """Values for `keys` in order (None where missing), in one ``MGET``."""
        names = [self._prefix + k for k in keys]
        if not names:
            return []
        if not self._admit():
            self._skipped += 1
            self._misses += len(names)
            return [None] * len(names)
        ok, raws = await self._call(lambda: self._client.mget(names))
        if not ok:
            self._misses += len(names)
            return [None] * len(names)
        return [self._found(r) for r in raws]

    async def set_many(self, items: Mapping[str, bytes], ttl: float | None = None) -> None:
        """Store every item with the same `ttl`, pipelined in one round trip."""
        px = self._px(ttl)
        if px == 0 or not items:
            return
        if not self._admit():
            self._skipped += 1
            return
        pipe = self._client.pipeline(False)
        for k, v in items.items():
            pipe.set(self._prefix + k, self._pack(v), px=px)
        ok, _ = await self._call(pipe.execute)
        if ok:
            self._sets += len(items)

    # -- internals --------------------------------------------------------------------------

    async def _call(self, op: Callable[[], Awaitable[Any]]) -> tuple[bool, Any]:
        """Run one Redis operation within the per-op bound: (True, result), or (False, None)
        after counting the failure for the circuit breaker. Cancellation passes through."""
        return await self._breaker.call(op)

    def _admit(self) -> bool:
        """Whether to try Redis now: closed circuit, or the single half-open probe."""
        return self._breaker.admit()

    def _px(self, ttl: float | None) -> int | None:
        """Milliseconds for ``PX``; None for no expiry, 0 for "do not store"."""
        ttl = self.ttl if ttl is None else ttl
        if ttl is None:
            return None
        if ttl <= 0:
            return 0
        return max(1, round(ttl * 1000))

    def _pack(self, value: bytes) -> bytes:
        if self.compress_above is not None and len(value) > self.compress_above:
            packed = zlib.compress(value, self.compress_level)
            if len(packed) + 1 < len(value):
                return _ZLIB + packed
        return _RAW + value

    def _found(self, raw: Any) -> bytes | None:
        if raw is None:
            self._misses += 1
            return None
        try:
            head = raw[:1]
            if head == _RAW:
                value = bytes(raw[1:])
            elif head == _ZLIB:
                value = zlib.decompress(raw[1:])
            else:
                raise ValueError(f"unknown value header {head!r}")
        except (zlib.error, ValueError, TypeError) as exc:
            self._unreadable += 1
            self._invalid += 1
            self._misses += 1
            log.warning("Redis cache: unreadable entry treated as a miss (%s)", exc)
            return None
        self._hits += 1
        return value

    def _down(self, exc: Exception) -> None:
        log.warning(
            "Redis cache %s unavailable (%s: %s); requests go on without it",
            self.namespace,
            type(exc).__name__,
            str(exc) or "timed out",
        )

    def _up(self) -> None:
        log.info("Redis cache %s is reachable again; using it", self.namespace)

    def __repr__(self) -> str:
        state = "open" if self._breaker.open else "closed"
        return f"RedisCache(namespace={self.namespace!r}, ttl={self.ttl}, circuit={state})"


def _client_from_url(url: str, connect_timeout: float, kwargs: dict[str, Any]) -> Any:
    try:
        import redis.asyncio as aioredis
        from redis.asyncio.retry import Retry
        from redis.backoff import NoBackoff
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError(
            "cache='redis://...' needs redis-py: pip install 'asyncthrift[redis]'"
        ) from exc
    opts: dict[str, Any] = {
        "socket_connect_timeout": connect_timeout,
        # Every operation is bounded by asyncio.timeout (`asyncthrift.core._breaker`). redis-py's
        # own socket_timeout wraps writes in asyncio.wait_for, which on Python 3.11 can
        # swallow a cancellation (and so our time bound) when the write completes at the
        # same moment.
        "socket_timeout": None,
        # Fail fast and let the circuit breaker decide: redis-py's own retries would only
        # stretch an outage inside our time bound.
        "retry": Retry(NoBackoff(), 0),
        "health_check_interval": 0,
    }
    opts.update(kwargs)
    opts["decode_responses"] = False
    return aioredis.Redis.from_url(url, **opts)
