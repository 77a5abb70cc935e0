"""The Redis book of the client quotas: one script per admission, one per settlement, each
bounded in time and behind a circuit breaker (see `asyncthrift.gateway.quotas` for what
happens while Redis is unreachable).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from importlib import resources
from typing import Any

from ..core._breaker import Breaker
from ..errors import InvalidArgument
from ..stores.shared._redis import Script, client_from_url
from ..stores.shared.store import budget_tag
from ..stores.spend import SpendHold, check_period, period_id, period_seconds
from ._quota_math import Costs, Limits3, QuotaGrant, Verdict, drain
from .clients import GatewayClient

__all__ = ["RedisQuotas"]

log = logging.getLogger("asyncthrift.gateway")

_SCHEMES = ("redis://", "rediss://", "unix://")


def _script(name: str) -> Script:
    return Script(resources.files(__package__).joinpath(name).read_text(encoding="utf-8"))


def _limit_args(limits: Limits3) -> list[str]:
    return ["-1" if v is None else repr(v) for v in limits]


class RedisQuotas:
    """Quotas and spend caps kept in Redis for every replica using the same `prefix`.

    `clock`: None to let each script read the server's ``TIME`` (replicas agree without
    synchronised clocks); a function to pass its reading instead (tests). `wall` names the
    spend period a hold falls in.
    """

    def __init__(
        self,
        url: str,
        *,
        prefix: str,
        clock: Callable[[], float] | None,
        wall: Callable[[], float],
        period: float,
        timeout: float,
    ) -> None:
        if not isinstance(url, str) or not url.startswith(_SCHEMES):
            raise InvalidArgument(
                f"shared= must be a redis://, rediss:// or unix:// URL, got {url!r}"
            )
        if not prefix or "{" in prefix or "}" in prefix:
            raise InvalidArgument(f"prefix must be a non-empty string without braces: {prefix!r}")
        self._prefix = prefix
        self._clock = clock
        self._wall = wall
        self._period = period
        self._client: Any = client_from_url(url, max(1.0, timeout), {})
        self._admit = _script("quota_admit.lua")
        self._settle = _script("quota_settle.lua")
        self._breaker = Breaker(
            timeout=timeout,
            connect_timeout=max(1.0, timeout),
            failure_threshold=2,
            cooldown=2.0,
            on_down=self._down,
            on_up=lambda: log.info("client quotas: Redis is reachable again"),
            clock=clock or time.monotonic,
        )
        self._pending: set[asyncio.Task[None]] = set()
        self._seen: dict[str, tuple[Costs, float, float | None]] = {}

    @staticmethod
    def _down(exc: Exception) -> None:
        log.warning(
            "client quotas: Redis unavailable (%s: %s); counting rate quotas in this process "
            "and refusing clients with a spend cap until it is back",
            type(exc).__name__,
            str(exc) or "timed out",
        )

    def _keys(self, name: str) -> tuple[str, str]:
        """The client's quota key and the prefix of its spend keys (no name in either)."""
        tag = budget_tag(f"gateway-client:{name}")
        return f"{self._prefix}:{{{tag}}}:quota", f"{self._prefix}:{{{tag}}}:spend:"

    def _now_arg(self) -> str:
        return "" if self._clock is None else repr(self._clock())

    def _spend(self, client: GatewayClient) -> tuple[str, int]:
        """The current spend period's id and its key's ttl (seconds; 0: never expires)."""
        period = check_period(client.spend_period)
        longest = period_seconds(period)
        return period_id(period, self._wall()), 0 if longest is None else int(2 * longest)

    def retry_in(self) -> float:
        """Seconds until Redis is tried again (for a refusal's retry-after)."""
        return self._breaker.retry_in()

    async def admit(
        self, client: GatewayClient, limits: Limits3, costs: Costs, worst: float | None
    ) -> tuple[Verdict, SpendHold | None] | None:
        """One admission in Redis: the verdict, and the spend hold it made if it took one
        (with the period it was counted in); None when Redis cannot be reached (the caller
        falls back). `worst` is None when the client has no spend cap."""
        if not self._breaker.admit():
            return None
        quota_key, spend_prefix = self._keys(client.name)
        current, ttl = self._spend(client)
        cap = client.spend_cap_usd
        args = [
            self._now_arg(),
            repr(self._period),
            *_limit_args(limits),
            *(repr(c) for c in costs),
            repr(worst or 0.0),
            "-1" if cap is None or worst is None else repr(float(cap)),
            str(ttl),
        ]
        keys = [quota_key, spend_prefix + current]
        ok, reply = await self._breaker.call(lambda: self._admit(self._client, keys, args))
        if not ok:
            return None
        rates_ok, spend_ok = int(reply[0]) == 1, int(reply[1]) == 1
        used: Costs = (float(reply[2]), float(reply[3]), float(reply[4]))
        spent = None if worst is None else float(reply[6])
        taken = rates_ok and spend_ok
        self._remember(client.name, used, costs, spent, worst, taken)
        hold = SpendHold(worst, current) if taken and worst is not None else None
        return Verdict(rates_ok, spend_ok, used, spent), hold

    def _remember(
        self,
        name: str,
        used: Costs,
        costs: Costs,
        spent: float | None,
        worst: float | None,
        taken: bool,
    ) -> None:
        """This replica's last reading of the shared levels, for the status page."""
        if taken:
            used = (used[0] + costs[0], used[1] + costs[1], used[2] + costs[2])
            spent = None if spent is None else spent + (worst or 0.0)
        self._seen[name] = (used, time.monotonic(), spent)

    def last_seen(self, name: str, limits: Limits3, period: float) -> tuple[Costs, float | None]:
        """The levels last read for `name`, drained since (no Redis call)."""
        seen = self._seen.get(name)
        if seen is None:
            return (0.0, 0.0, 0.0), None
        used, at, spent = seen
        return drain(used, limits, time.monotonic() - at, period), spent

    def settle(self, grant: QuotaGrant, limits: Limits3, refund: Costs, actual_usd: float) -> None:
        """Give `refund` back and replace the grant's spend hold by `actual_usd`, in Redis, in
        a task of its own (see `QuotaGrant`); `flush` waits for it."""
        task = asyncio.get_running_loop().create_task(
            self._send_settle(grant, limits, refund, actual_usd)
        )
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def _send_settle(
        self, grant: QuotaGrant, limits: Limits3, refund: Costs, actual_usd: float
    ) -> None:
        quota_key, spend_prefix = self._keys(grant.client.name)
        hold = grant.hold
        current, ttl = self._spend(grant.client)
        held_key = spend_prefix + (hold.period if hold is not None else current)
        args = [
            self._now_arg(),
            repr(self._period),
            *_limit_args(limits),
            *(repr(r) for r in refund),
            repr(0.0 if hold is None else hold.worst_usd),
            repr(actual_usd),
            "1" if hold is not None else "0",
            str(ttl),
        ]
        keys = [quota_key, held_key, spend_prefix + current]
        ok, _ = await self._breaker.call(lambda: self._settle(self._client, keys, args))
        if not ok:
            log.warning(
                "client quotas: a settlement of client %r could not reach Redis; its "
                "reservation stays counted until it drains",
                grant.client.name,
            )

    async def flush(self) -> None:
        """Wait until every settlement sent so far has reached Redis (or failed to)."""
        while self._pending:
            await asyncio.gather(*list(self._pending), return_exceptions=True)

    async def aclose(self) -> None:
        """Wait for the settlements under way, then close the Redis client."""
        await self.flush()
        await self._client.aclose()
