"""A spend cap shared through Redis: every process using the same Redis and namespace counts
against one cap, optionally per calendar period (UTC).

One key per period, ``{namespace}:spend:<period>``, holds dollars spent plus dollars held by
requests in flight in every process. A hold is one Lua script (check the cap, then
``INCRBYFLOAT`` the worst case, atomically, so two processes can never both take the last
dollar); a settle is another (give the worst case back to the period it was held in, charge
the true cost to the current one). Keys expire two periods after their last change.

Failure is closed: a hold that cannot reach Redis raises `BudgetExceeded` (nothing is sent),
since a cap that cannot be checked is not a cap. A settle that cannot reach Redis leaves the
worst case counted there: the cap then errs on the safe side. A process killed with requests
in flight leaves their worst cases counted until the period ends, for the same reason.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any, Final

from ..errors import BudgetExceeded, InvalidArgument
from .spend import (
    SpendHold,
    SpendPeriod,
    check_limit,
    check_period,
    period_id,
    period_seconds,
    refusal,
)

__all__ = ["RedisSpendLedger"]

log = logging.getLogger("asyncthrift")

#: KEYS[1] the period's key; ARGV: worst case, limit, ttl (0: none).
#: Returns {1, total} when held, {0, total} when the cap would be crossed (totals as strings:
#: a Lua number would come back truncated to an integer).
_HOLD: Final = """
local total = tonumber(redis.call('GET', KEYS[1]) or '0')
if total + tonumber(ARGV[1]) > tonumber(ARGV[2]) then
  return {0, tostring(total)}
end
local now = redis.call('INCRBYFLOAT', KEYS[1], ARGV[1])
if tonumber(ARGV[3]) > 0 then redis.call('EXPIRE', KEYS[1], ARGV[3]) end
return {1, now}
"""

#: KEYS[1] the hold's period key, KEYS[2] the current period's; ARGV: worst, actual, ttl.
_SETTLE: Final = """
redis.call('INCRBYFLOAT', KEYS[1], -tonumber(ARGV[1]))
local now = redis.call('INCRBYFLOAT', KEYS[2], ARGV[2])
if tonumber(ARGV[3]) > 0 then
  redis.call('EXPIRE', KEYS[1], ARGV[3])
  redis.call('EXPIRE', KEYS[2], ARGV[3])
end
return now
"""


class RedisSpendLedger:
    """`SpendLedger` kept in Redis, shared by every process using `namespace` there.

    `url_or_client`: a ``redis://`` URL (the ledger creates and closes its client) or a
    ``redis.asyncio.Redis`` (left open). `timeout` bounds each hold's round trip.
    """

    def __init__(
        self,
        url_or_client: object,
        limit_usd: float,
        *,
        period: SpendPeriod | None = None,
        namespace: str = "asyncthrift",
        timeout: float = 1.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.limit_usd = check_limit(limit_usd)
        self.period = check_period(period)
        if not namespace or "{" in namespace or "}" in namespace:
            raise InvalidArgument(
                f"namespace must be a non-empty string without braces: {namespace!r}"
            )
        self.namespace = namespace
        self.timeout = timeout
        self._clock = clock
        longest = period_seconds(self.period)
        self._ttl = 0 if longest is None else int(2 * longest)
        if isinstance(url_or_client, str):
            try:
                import redis.asyncio as aioredis
            except ImportError as exc:  # pragma: no cover - depends on the environment
                raise ImportError(
                    "a shared spend cap needs redis-py: pip install 'asyncthrift[redis]'"
                ) from exc
            self._client: Any = aioredis.Redis.from_url(url_or_client)
            self._owned = True
        else:
            self._client = url_or_client
            self._owned = False
        self._hold = self._client.register_script(_HOLD)
        self._settle = self._client.register_script(_SETTLE)
        self._pending: set[asyncio.Task[None]] = set()

    def key(self, period: str) -> str:
        """The Redis key of `period` (hash-tagged: every period's key in one cluster slot)."""
        return f"{{{self.namespace}}}:spend:{period}"

    def current(self) -> str:
        return period_id(self.period, self._clock())

    async def spent(self, period: str | None = None) -> float:
        """Dollars spent plus held in `period` (default: the current one), every process."""
        raw = await self._client.get(self.key(period or self.current()))
        return 0.0 if raw is None else float(raw)

    async def hold(self, worst_usd: float) -> SpendHold:
        current = self.current()
        try:
            async with asyncio.timeout(self.timeout):
                args = [repr(worst_usd), repr(self.limit_usd), self._ttl]
                ok, total = await self._hold(keys=[self.key(current)], args=args)
        except Exception as exc:
            raise BudgetExceeded(
                f"the shared spend cap could not be checked ({type(exc).__name__}: {exc}): the "
                "request was not sent. Check that Redis is reachable"
            ) from exc
        if not int(ok):
            raise BudgetExceeded(refusal(worst_usd, self.limit_usd, float(total), 0.0, current))
        return SpendHold(worst_usd, current)

    def settle(self, hold: SpendHold, actual_usd: float) -> None:
        self._background(hold, actual_usd)

    def release(self, hold: SpendHold) -> None:
        self._background(hold, 0.0)

    def _background(self, hold: SpendHold, actual_usd: float) -> None:
        task = asyncio.get_running_loop().create_task(self._send_settle(hold, actual_usd))
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def _send_settle(self, hold: SpendHold, actual_usd: float) -> None:
        keys = [self.key(hold.period), self.key(self.current())]
        try:
            await self._settle(keys=keys, args=[repr(hold.worst_usd), repr(actual_usd), self._ttl])
        except Exception as exc:
            log.warning(
                "the shared spend cap could not be settled (%s: %s): $%.4f stays counted",
                type(exc).__name__,
                exc,
                hold.worst_usd,
            )

    async def flush(self) -> None:
        """Wait until every settle and release sent so far has reached Redis."""
        while self._pending:
            await asyncio.gather(*list(self._pending), return_exceptions=True)

    async def aclose(self) -> None:
        await self.flush()
        if self._owned:
            await self._client.aclose()

    def __repr__(self) -> str:
        return (
            f"RedisSpendLedger(namespace={self.namespace!r}, limit_usd={self.limit_usd}, "
            f"period={self.period!r})"
        )
