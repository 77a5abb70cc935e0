"""`SharedStore`: the Redis connection, script and circuit breaker every shared budget of one
client uses, and the factory of those budgets.

Keys are ``<namespace>:{<tag>:<class>}:b`` (the bucket) and ``...:p`` (processes seen), where
`tag` is a keyed BLAKE2b of the API key (or of the budget name given instead): the key itself
never reaches Redis, and the braces put both keys of one (budget, model class) in one Redis
Cluster slot, so every script call runs on one node.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import secrets
import socket
from collections.abc import Sequence
from typing import Any

from ...core._breaker import Breaker
from ...errors import InvalidArgument
from ...scheduling.budget import LocalBudget
from ...scheduling.limits import Limits
from ...scheduling.scheduler import Gate
from ._notices import Notices, parse_notice
from ._redis import AsyncScriptClient, Script, client_from_url, load_script
from .budget import SharedBudget

log = logging.getLogger("asyncthrift.shared")

__all__ = ["SharedStats", "SharedStore", "budget_tag"]

_TAG_KEY = b"asyncthrift-shared-v1"
_SCHEMES = ("redis://", "rediss://", "unix://")


def budget_tag(identity: str) -> str:
    """A keyed hash of `identity` (an API key): stable across processes, not reversible."""
    return hashlib.blake2b(identity.encode(), key=_TAG_KEY, digest_size=12).hexdigest()


def _redis_down(exc: Exception) -> None:
    log.warning(
        "shared budgets: Redis unavailable (%s: %s); admitting from the fallback share",
        type(exc).__name__,
        str(exc) or "timed out",
    )


def _redis_up() -> None:
    log.info("shared budgets: Redis is reachable again; rejoining")


class SharedStats:
    """What one process's shared budgets cost Redis: counters, not a snapshot class."""

    __slots__ = ("commands", "errors", "grants", "refusals")

    def __init__(self, commands: int, errors: int, grants: int, refusals: int) -> None:
        self.commands = commands
        self.errors = errors
        self.grants = grants
        self.refusals = refusals

    def __repr__(self) -> str:
        return (
            f"SharedStats(commands={self.commands}, errors={self.errors}, "
            f"grants={self.grants}, refusals={self.refusals})"
        )


class SharedStore:
    """Shared budgets in one Redis (or Redis Cluster): see the module docstring.

    `url_or_client`: a ``redis://``, ``rediss://`` or ``unix://`` URL (add ``?cluster=true``
    for Redis Cluster; the store then owns the client) or a ``redis.asyncio`` client created
    with ``decode_responses=True`` (left open: its owner closes it).

    `timeout`: a call of the script not answered within it counts as a failure, and
    `failure_threshold` of them in a row put the process on its fallback. Half a second, not
    the round trip's few milliseconds: a stalled event loop (a GC pause, a busy host) times
    out a call whose answer has arrived, and one process on its fallback admits its share
    on top of what the others take from Redis (the 429s of three loaded bench runs at
    50 ms). Admissions go on from the lease meanwhile; only a head waiting for a grant
    waits up to `failure_threshold` x `timeout` longer when Redis hangs.

    `fallback`: what a process admits while Redis is unreachable: a fraction of the limits,
    ``None`` (the default) for the limits divided by the processes last seen, or
    ``"closed"`` to admit nothing until Redis is back (requests wait, up to their deadline).
    """

    __slots__ = (
        "_budgets",
        "_channels",
        "_notices",
        "_owned",
        "breaker",
        "client",
        "closed",
        "fallback",
        "namespace",
        "process_id",
        "script",
        "tasks",
    )

    def __init__(
        self,
        url_or_client: str | AsyncScriptClient,
        *,
        namespace: str = "asyncthrift",
        fallback: float | str | None = None,
        timeout: float = 0.5,
        connect_timeout: float = 1.0,
        failure_threshold: int = 3,
        cooldown: float = 1.0,
        **redis_kwargs: Any,
    ) -> None:
        if (
            fallback is not None
            and fallback != "closed"
            and (
                isinstance(fallback, bool)
                or not isinstance(fallback, int | float)
                or not 0 < fallback <= 1
            )
        ):
            raise InvalidArgument(
                "shared_fallback= must be a fraction of the limits in (0, 1], "
                f"None (limits / processes seen) or 'closed', got {fallback!r}"
            )
        if timeout <= 0 or connect_timeout <= 0 or cooldown < 0:
            raise InvalidArgument(
                "shared Redis timeouts must be > 0 seconds (cooldown >= 0), got "
                f"timeout={timeout!r}, connect_timeout={connect_timeout!r}, cooldown={cooldown!r}"
            )
        if failure_threshold < 1:
            raise InvalidArgument(
                f"shared Redis failure_threshold must be >= 1, got {failure_threshold!r}"
            )
        self.breaker = Breaker(
            timeout=timeout,
            connect_timeout=connect_timeout,
            failure_threshold=failure_threshold,
            cooldown=cooldown,
            on_down=_redis_down,
            on_up=_redis_up,
        )
        if isinstance(url_or_client, str):
            if not url_or_client.lower().startswith(_SCHEMES):
                raise InvalidArgument(
                    f"shared= must be a redis://, rediss:// or unix:// URL, got {url_or_client!r}"
                )
            self.client: AsyncScriptClient = client_from_url(
                url_or_client, self.breaker.connect_timeout, redis_kwargs
            )
            self._owned = True
        else:
            if redis_kwargs:
                raise TypeError("redis options apply only when the store creates the client")
            self.client = url_or_client
            self._owned = False
        self.namespace = namespace
        self.fallback = fallback
        self.script = Script(load_script("lease.lua"))
        self.process_id = f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"
        self.tasks: set[asyncio.Task[None]] = set()
        self._budgets: list[SharedBudget] = []
        # stock given back pays grants reserved ahead sooner: told by `lease.lua` (`_notices`)
        self._channels: dict[str, list[SharedBudget]] = {}
        pattern = f"{namespace}:{{*}}:n" if namespace else "{*}:n"
        self._notices = Notices(self.client, pattern, self._deliver)
        self.closed = False

    def budget(
        self, identity: str, label: str, limits: Limits, now: float, name: str
    ) -> LocalBudget:
        """The budget of (`identity`, `label`), shared; without a configured limit it admits
        locally until the headers say the key's limits, then shares those."""
        tag = f"{{{budget_tag(identity)}:{label}}}"
        prefix = f"{self.namespace}:{tag}" if self.namespace else tag
        budget = SharedBudget(self, limits, now, name, (f"{prefix}:b", f"{prefix}:p"))
        self._budgets.append(budget)
        self._channels.setdefault(budget.channel, []).append(budget)
        return budget

    def _deliver(self, channel: str, data: str) -> None:
        """A notice of `lease.lua` on `channel`: to the budgets of that bucket here."""
        budgets = self._channels.get(channel)
        notice = parse_notice(data) if budgets else None
        if budgets is None or notice is None:
            return
        seq, sooner, epoch = notice
        for budget in budgets:
            budget.pay_sooner(epoch, seq, sooner)

    def attach(self, gate: Gate, budgets: Sequence[LocalBudget]) -> None:
        """Have `budgets` poke `gate` (theirs) when a lease arrives."""
        for b in budgets:
            if isinstance(b, SharedBudget):
                b.bind(gate)

    def fallback_share(self, processes: int) -> float | None:
        if self.fallback == "closed":
            return None
        if self.fallback is None:
            return 1.0 / max(1, processes)
        return float(self.fallback)

    async def call(self, budget: SharedBudget, args: list[str]) -> tuple[bool, Any]:
        script, client = self.script, self.client
        if not self.closed:
            self._notices.start()
        return await self.breaker.call(lambda: script(client, budget.keys, args))

    def stats(self) -> SharedStats:
        return SharedStats(
            commands=self.script.commands,
            errors=self.breaker.errors,
            grants=sum(b.grants for b in self._budgets),
            refusals=sum(b.refusals for b in self._budgets),
        )

    @property
    def budgets(self) -> list[SharedBudget]:
        return list(self._budgets)

    async def aclose(self) -> None:
        """Stop the background tasks, give every unused lease and refund back, close."""
        if self.closed:
            return
        self.closed = True
        tasks = list(self.tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await self._notices.aclose()
        if not self.breaker.open:
            for budget in self._budgets:
                args = budget.release_args()
                if args is not None:
                    await self.call(budget, args)
        if self._owned:
            await self.client.aclose()
