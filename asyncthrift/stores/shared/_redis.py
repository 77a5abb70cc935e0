"""The Redis side of shared budgets: a structural client type, the script, the client.

``redis`` is imported only when a URL is given (`client_from_url`), so the core never needs
it installed. The failure policy is the answer cache's (`asyncthrift.stores.cache.redis`): every
call is bounded by `timeout` (a longer `connect_timeout` only until the first success), and
after `failure_threshold` consecutive failures a circuit breaker skips Redis for `cooldown`
seconds, then lets one probe through.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from importlib import resources
from typing import Any, Protocol
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

__all__ = ["AsyncScriptClient", "Script", "client_from_url", "load_script"]


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
        # bounded by asyncio.timeout per call instead (see asyncthrift.core._breaker)
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
