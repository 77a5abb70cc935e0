"""The Redis side of shared budgets: a structural client type, the script, the breaker.

``redis`` is imported only when a URL is given (`client_from_url`), so the core never needs
it installed. The failure policy is the answer cache's (`asyncthrift.cache.redis`): every
call is bounded by `timeout` (a longer `connect_timeout` only until the first success), and
after `failure_threshold` consecutive failures a circuit breaker skips Redis for `cooldown`
seconds, then lets one probe through.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections.abc import Callable, Sequence
from importlib import resources
from typing import Any, Protocol
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

__all__ = ["AsyncScriptClient", "Breaker", "Script", "client_from_url", "load_script"]

log = logging.getLogger("asyncthrift.shared")


class AsyncScriptClient(Protocol):
    """The part of ``redis.asyncio.Redis`` / ``RedisCluster`` used here (structural)."""

    def evalsha(self, sha: str, numkeys: int, /, *keys_and_args: str) -> Any: ...

    def script_load(self, script: str, /) -> Any: ...

    async def aclose(self) -> None: ...


def load_script(name: str) -> str:
    """The text of the Lua resource `name` shipped beside this module."""
    return resources.files(__package__).joinpath(name).read_text(encoding="utf-8")


class Script:
    """A Lua script called by SHA1 (``EVALSHA``), loaded again after ``NOSCRIPT`` (a
    restarted or failed-over server). Counts the commands it sends."""

    __slots__ = ("commands", "sha", "text")

    def __init__(self, text: str) -> None:
        self.text = text
        self.sha = hashlib.sha1(text.encode()).hexdigest()
        self.commands = 0

    async def __call__(
        self, client: AsyncScriptClient, keys: Sequence[str], args: Sequence[str]
    ) -> Any:
        self.commands += 1
        try:
            return await client.evalsha(self.sha, len(keys), *keys, *args)
        except Exception as exc:
            # redis-py raises NoScriptError; other clients keep the server's "NOSCRIPT ..."
            if type(exc).__name__ != "NoScriptError" and "NOSCRIPT" not in str(exc):
                raise
        self.commands += 2
        await client.script_load(self.text)
        return await client.evalsha(self.sha, len(keys), *keys, *args)


class Breaker:
    """Time bound and circuit breaker for the calls of one store (all its budgets)."""

    __slots__ = (
        "_clock",
        "_connected",
        "_failures",
        "_open_until",
        "_probing",
        "connect_timeout",
        "cooldown",
        "errors",
        "failure_threshold",
        "timeout",
    )

    def __init__(
        self,
        *,
        timeout: float,
        connect_timeout: float,
        failure_threshold: int,
        cooldown: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if timeout <= 0 or connect_timeout <= 0 or cooldown < 0:
            raise ValueError("shared Redis timeouts must be > 0 seconds (cooldown >= 0)")
        if failure_threshold < 1:
            raise ValueError("shared Redis failure_threshold must be >= 1")
        self.timeout = timeout
        self.connect_timeout = max(connect_timeout, timeout)
        self.failure_threshold = failure_threshold
        self.cooldown = cooldown
        self._clock = clock
        self._connected = False
        self._failures = 0
        self._open_until = 0.0
        self._probing = False
        self.errors = 0

    @property
    def open(self) -> bool:
        """Whether Redis counts as unreachable (the budgets admit from their fallback)."""
        return self._failures >= self.failure_threshold

    def admit(self) -> bool:
        """Whether to try Redis now: closed circuit, or the single half-open probe."""
        if self._failures < self.failure_threshold:
            return True
        if self._clock() < self._open_until or self._probing:
            return False
        self._probing = True
        return True

    def retry_in(self) -> float:
        """Seconds until the breaker lets a probe through (0 when closed)."""
        if not self.open:
            return 0.0
        return max(0.0, self._open_until - self._clock())

    async def call(self, op: Callable[[], Any]) -> tuple[bool, Any]:
        """Run one operation within the bound: (True, result) or (False, None)."""
        try:
            async with asyncio.timeout(self.timeout if self._connected else self.connect_timeout):
                result = await op()
        except asyncio.CancelledError:
            self._probing = False
            raise
        except Exception as exc:
            self._failed(exc)
            return False, None
        self._connected = True
        if self._failures >= self.failure_threshold:
            log.info("shared budgets: Redis is reachable again; rejoining")
        self._failures = 0
        self._probing = False
        return True, result

    def _failed(self, exc: Exception) -> None:
        self.errors += 1
        self._probing = False
        self._failures += 1
        if self._failures == self.failure_threshold:
            log.warning(
                "shared budgets: Redis unavailable (%s: %s); admitting from the fallback share",
                type(exc).__name__,
                str(exc) or "timed out",
            )
        if self._failures >= self.failure_threshold:
            self._open_until = self._clock() + self.cooldown


def client_from_url(url: str, connect_timeout: float, kwargs: dict[str, Any]) -> Any:
    """A redis-py asyncio client for `url` (``redis://``, ``rediss://``, ``unix://``).

    ``?cluster=true`` in the URL makes it a ``RedisCluster`` client (every key of one bucket
    carries one hash tag, so each script runs on one node).
    """
    try:
        import redis.asyncio as aioredis
        from redis.asyncio.retry import Retry
        from redis.backoff import NoBackoff
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError(
            "shared='redis://...' needs redis-py: pip install 'asyncthrift[redis]'"
        ) from exc
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True)
    cluster = any(k == "cluster" and v.lower() in ("1", "true", "yes") for k, v in query)
    url = urlunsplit(parts._replace(query=urlencode([(k, v) for k, v in query if k != "cluster"])))
    opts: dict[str, Any] = {
        "socket_connect_timeout": connect_timeout,
        # bounded by asyncio.timeout per call instead (see asyncthrift.cache.redis)
        "socket_timeout": None,
        "retry": Retry(NoBackoff(), 0),
    }
    opts.update(kwargs)
    opts["decode_responses"] = True
    if cluster:
        from redis.asyncio.cluster import RedisCluster

        return RedisCluster.from_url(url, **opts)
    opts.setdefault("health_check_interval", 0)
    return aioredis.Redis.from_url(url, **opts)
