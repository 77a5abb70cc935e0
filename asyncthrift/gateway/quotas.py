"""Per-client quotas and spend caps of the gateway, enforced across replicas.

The upstream key's budget is the scheduler's job: over it, a request waits. A client's own
quota is different: it is the operator's promise to the *other* clients that one of them
(a runaway notebook, an agent in a loop) cannot take the whole key. So a client over its
quota is refused at once, with a 429 naming *its* quota (``x-asyncthrift-client-ratelimit-*``
headers, never the upstream's), and never waits: waiting would only hold its place in the
shared queue.

A quota counts as the scheduler reserves: one request, the input estimate and the whole
``max_tokens`` at admission, then the unused part given back when the answer's ``usage`` is
known (`QuotaGrant.settle`), or everything when nothing was sent (`QuotaGrant.release`).
Each dimension is a bucket of `limit` units draining at `limit / 60` per second, as
Anthropic's own limiter. A spend cap holds the worst case (`worst_usd`) and replaces it by
the true cost on settle (`asyncthrift.stores.spend`'s rules, per calendar period, UTC).

``shared=None`` counts in this process. ``shared="redis://..."`` counts in Redis for every
replica: one Lua script per admission (every dimension and the cap checked and taken
together, on the server's clock, so replicas' clocks never matter) and one per settlement
(`quota_admit.lua`, `quota_settle.lua`), sent in the background so no answer waits for
it. Keys are ``<prefix>:{<tag>}:quota`` and ``...:spend:<period>``, where `tag` is a keyed
hash of the client's name (no name, key or secret reaches Redis; one hash tag per client
keeps a script on one Cluster node).

**If Redis is unreachable** (each call bounded by `timeout`; after two failures in a row
Redis is skipped for a few seconds, then probed again): rate quotas fall back to this
process alone, so each replica enforces the client's whole quota by itself (a client may
then get up to N times its quota across N replicas, but never more than the upstream
budget, which the scheduler still guards), and a client **with a spend cap is refused**:
a cap that cannot be checked is not a cap (the project's rule, as `RedisSpendLedger`). A
settlement that cannot reach Redis leaves the reservation counted there: it drains within
a minute, and a spend hold stays counted, erring on the safe side.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from typing import Any

from ..errors import BudgetExceeded, InvalidArgument
from ..stores.spend import SpendCap, check_limit, check_period
from ._quota_math import (
    Costs,
    Limits3,
    QuotaGrant,
    QuotaRefusal,
    Verdict,
    check_quota,
    drain,
    grant_headers,
    refuse,
    unchecked_spend,
)
from ._quota_redis import RedisQuotas
from .clients import GatewayClient

__all__ = ["ClientQuotas", "QuotaGrant", "QuotaRefusal"]

log = logging.getLogger("asyncthrift.gateway")

#: Anthropic's period, and so a quota's: "per minute".
PERIOD = 60.0


class _Book:
    """One client's quota use in this process: units used per dimension at `stamp`, and its
    spend cap (`SpendCap`, whose period rolls on the wall clock)."""

    __slots__ = ("spend", "stamp", "used")

    def __init__(self, spend: SpendCap | None, now: float) -> None:
        self.used: list[float] = [0.0, 0.0, 0.0]
        self.stamp = now
        self.spend = spend

    def level(self, limits: Limits3, now: float, period: float) -> Costs:
        """The units used at `now` (drained since the last look), and move the stamp."""
        self.used = list(drain(self.used, limits, now - self.stamp, period))
        self.stamp = max(self.stamp, now)
        return (self.used[0], self.used[1], self.used[2])

    def give_back(self, refund: Costs) -> None:
        for d in range(3):
            self.used[d] = max(0.0, self.used[d] - refund[d])


class ClientQuotas:
    """Every client's quota and spend cap: see the module docstring.

    `clients` are checked here (a quota or cap the keys file got wrong fails at start, not
    at the first request). `clock` is the local quotas' clock (seconds, monotonic); with
    `shared` Redis's own ``TIME`` is used unless a clock is given (tests, virtual time:
    every replica must then read the same one, so ``time.monotonic`` counts as none).
    `wall` gives epoch seconds for the spend periods and the ``-reset`` headers.
    """

    def __init__(
        self,
        clients: Iterable[GatewayClient],
        *,
        shared: str | None = None,
        prefix: str = "asyncthrift:gateway",
        clock: Callable[[], float] | None = None,
        wall: Callable[[], float] = time.time,
        period: float = PERIOD,
        timeout: float = 0.25,
    ) -> None:
        self._clock = clock or time.monotonic  # the local books' (and the fallback's)
        self._wall = wall
        self._period = period
        self._books: dict[str, _Book] = {}
        self._limits: dict[str, Limits3] = {}
        for client in clients:
            self._check(client)
        self._redis: RedisQuotas | None = None
        if clock is time.monotonic:  # one host's monotonic clock means nothing to another's
            clock = None
        if shared is not None:
            self._redis = RedisQuotas(
                shared, prefix=prefix, clock=clock, wall=wall, period=period, timeout=timeout
            )

    def _check(self, client: GatewayClient) -> Limits3:
        """The client's limits, checked once per name (a clear error naming the client)."""
        known = self._limits.get(client.name)
        if known is not None:
            return known
        try:
            limits = check_quota(client.quota)
            cap = None
            if client.spend_cap_usd is not None:
                cap = SpendCap(
                    check_limit(client.spend_cap_usd),
                    period=check_period(client.spend_period),
                    clock=self._wall,
                )
        except InvalidArgument as exc:
            raise InvalidArgument(f"client {client.name!r}: {exc}") from None
        self._limits[client.name] = limits
        self._books[client.name] = _Book(cap, self._clock())
        return limits

    @property
    def shared(self) -> bool:
        """Whether the quotas are counted in Redis (across replicas)."""
        return self._redis is not None

    async def admit(
        self, client: GatewayClient, *, input_tokens: int, max_tokens: int, worst_usd: float
    ) -> QuotaGrant | QuotaRefusal:
        """Take one request (`input_tokens` estimated, `max_tokens` reserved, `worst_usd` held)
        from the client's quota and cap, or refuse it at once; never waits for room."""
        limits = self._check(client)
        book = self._books[client.name]
        costs: Costs = (1.0, float(max(0, input_tokens)), float(max(0, max_tokens)))
        worst = max(0.0, float(worst_usd))
        capped = book.spend is not None
        if limits == (None, None, None) and not capped:
            return QuotaGrant(self._finish, client, costs, "none", {})
        if self._redis is not None:
            found = await self._redis.admit(client, limits, costs, worst if capped else None)
            if found is not None:
                answer = self._conclude(client, limits, costs, worst, found[0], "redis")
                if isinstance(answer, QuotaGrant):
                    answer.hold = found[1]
                return answer
            if capped:
                return unchecked_spend(client, self._redis.retry_in())
        return self._admit_local(client, book, limits, costs, worst)

    def _admit_local(
        self, client: GatewayClient, book: _Book, limits: Limits3, costs: Costs, worst: float
    ) -> QuotaGrant | QuotaRefusal:
        """Check every dimension, then hold the spend, then take: all or nothing."""
        used = book.level(limits, self._clock(), self._period)
        fits = zip(used, costs, limits, strict=True)
        rates_ok = all(lim is None or u + c <= lim for u, c, lim in fits)
        spend = book.spend
        spend_ok, spent, hold = True, None, None
        if spend is not None:
            spent = spend.spent + spend.held  # before this request (a new period rolls below)
            if rates_ok:
                try:
                    hold = spend.hold_now(worst)
                except BudgetExceeded:
                    spend_ok = False
                spent = spend.spent + spend.held - (worst if hold else 0.0)
        verdict = Verdict(rates_ok, spend_ok, used, spent)
        answer = self._conclude(client, limits, costs, worst, verdict, "local")
        if isinstance(answer, QuotaGrant):
            book.used = [u + c for u, c in zip(used, costs, strict=True)]
            answer.hold = hold
        return answer

    def _conclude(
        self,
        client: GatewayClient,
        limits: Limits3,
        costs: Costs,
        worst: float,
        verdict: Verdict,
        backend: str,
    ) -> QuotaGrant | QuotaRefusal:
        """The grant (with the headers after it) or the refusal `verdict` means."""
        cap = client.spend_cap_usd
        period = check_period(client.spend_period)
        if not (verdict.rates_ok and verdict.spend_ok):
            return refuse(
                client, limits, costs, worst, verdict, self._period, self._wall(), cap, period
            )
        used = verdict.used
        taken: Costs = (used[0] + costs[0], used[1] + costs[1], used[2] + costs[2])
        spent = None if verdict.spent is None else verdict.spent + worst
        after = Verdict(True, True, taken, spent)
        headers = grant_headers(limits, after, self._period, self._wall(), cap, period)
        return QuotaGrant(self._finish, client, costs, backend, headers)

    async def _finish(
        self, grant: QuotaGrant, refund: Costs, actual_usd: float, released: bool
    ) -> None:
        """Give `refund` back and charge `actual_usd` for `grant`, where it was admitted."""
        if grant.backend == "none":
            return
        if grant.backend == "redis" and self._redis is not None:
            self._redis.settle(grant, self._limits[grant.client.name], refund, actual_usd)
            return
        book = self._books[grant.client.name]
        book.level(self._limits[grant.client.name], self._clock(), self._period)
        book.give_back(refund)
        if book.spend is not None and grant.hold is not None:
            if released:
                book.spend.release(grant.hold)
            else:
                book.spend.settle(grant.hold, actual_usd)

    def snapshot(self) -> dict[str, dict[str, Any]]:
        """Per client: its limits, the units used now, its spend (for the status page). In
        Redis mode the levels are this replica's last reading of the shared ones."""
        now = self._clock()
        out: dict[str, dict[str, Any]] = {}
        for name, limits in self._limits.items():
            book = self._books[name]
            if self._redis is not None:
                used, spent = self._redis.last_seen(name, limits, self._period)
            else:
                used, spent = book.level(limits, now, self._period), None
                if book.spend is not None:
                    spent = book.spend.spent + book.spend.held
            out[name] = {
                "limits": {"rpm": limits[0], "itpm": limits[1], "otpm": limits[2]},
                "used": {"rpm": used[0], "itpm": used[1], "otpm": used[2]},
                "spend_cap_usd": None if book.spend is None else book.spend.limit_usd,
                "spent_usd": spent,
            }
        return out

    async def flush(self) -> None:
        """Wait until the settlements sent to Redis so far have arrived (tests, shutdown)."""
        if self._redis is not None:
            await self._redis.flush()

    async def aclose(self) -> None:
        """Wait for the settlements still on their way to Redis, then close its client."""
        if self._redis is not None:
            await self._redis.aclose()

    def __repr__(self) -> str:
        where = "redis" if self._redis is not None else "local"
        return f"ClientQuotas({len(self._limits)} clients, {where})"
