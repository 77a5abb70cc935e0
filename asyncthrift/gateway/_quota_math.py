"""What a client quota decides, the same for the local and the Redis books: the bucket
arithmetic (mirrored by ``quota_admit.lua``), the refusal's message and headers, and the
grant that is settled exactly once.

Kept apart from `quotas` so the two books cannot drift: both hand a `Verdict` (the levels
before the request, and whether it fits) to `refuse` or `grant_headers`.
"""

from __future__ import annotations

import datetime
import math
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import NamedTuple

from ..errors import InvalidArgument
from ..stores.spend import SpendHold, SpendPeriod, period_id, refusal
from .clients import ClientQuota, GatewayClient

__all__ = [
    "Costs",
    "Limits3",
    "QuotaGrant",
    "QuotaRefusal",
    "Verdict",
    "check_quota",
    "drain",
    "grant_headers",
    "refuse",
    "unchecked_spend",
]

Costs = tuple[float, float, float]
"""Requests, input tokens, output tokens."""
Limits3 = tuple[float | None, float | None, float | None]
"""A client's rpm, itpm, otpm (None: no limit)."""

HEADER = "x-asyncthrift-client-ratelimit-"
SPEND_HEADER = "x-asyncthrift-client-spend-"
_DIMS = ("requests", "input-tokens", "output-tokens")
_UNITS = ("requests", "input tokens", "output tokens")
_NAMES = ("rpm", "itpm", "otpm")
#: Retry-after for a spend cap with no period (it never resets by itself).
_NO_PERIOD_RETRY = 3600.0


class Verdict(NamedTuple):
    """What a book found: whether the rates and the cap fit, the units used before this
    request, and the dollars spent plus held before it (None: no cap)."""

    rates_ok: bool
    spend_ok: bool
    used: Costs
    spent: float | None


@dataclass(frozen=True, slots=True)
class QuotaRefusal:
    """A request over its client's own quota or spend cap: answer 429 at once."""

    message: str  # for the error envelope: names the client's quota, not the upstream's
    retry_after: float  # seconds
    headers: Mapping[str, str]  # x-asyncthrift-client-ratelimit-*; the caller adds retry-after


Finish = Callable[["QuotaGrant", Costs, float, bool], Awaitable[None]]


class QuotaGrant:
    """One admitted request's share of its client's quota, settled exactly once, whatever
    happens: `settle` with the usage, or `release` when nothing was sent. Neither waits for
    Redis: a settlement to send runs as its own task (so the answer is not delayed by a round
    trip, and a caller cancelled meanwhile cannot lose it); `ClientQuotas.flush` and
    `aclose` wait for those tasks."""

    __slots__ = ("_done", "_finish", "backend", "client", "costs", "headers", "hold")

    def __init__(
        self,
        finish: Finish,
        client: GatewayClient,
        costs: Costs,
        backend: str,
        headers: Mapping[str, str],
    ) -> None:
        self._finish = finish
        self._done = False
        self.client = client
        self.costs = costs
        self.backend = backend  # "local", "redis" or "none" (nothing to count)
        self.headers = headers  # the client's quota after this request, for the response
        self.hold: SpendHold | None = None  # the spend cap's worst case, set by the book

    @property
    def settled(self) -> bool:
        return self._done

    async def settle(self, *, input_tokens: int, output_tokens: int, cost_usd: float) -> None:
        """The answer came: give back what was reserved and not used, charge `cost_usd`."""
        refund = (0.0, self.costs[1] - input_tokens, self.costs[2] - output_tokens)
        await self._once(refund, max(0.0, cost_usd), False)

    async def release(self) -> None:
        """Nothing was sent upstream: give everything back (the request too)."""
        await self._once(self.costs, 0.0, True)

    async def _once(self, refund: Costs, actual_usd: float, released: bool) -> None:
        if self._done:
            return
        self._done = True
        await self._finish(self, refund, actual_usd, released)

    def __repr__(self) -> str:
        state = "settled" if self._done else "held"
        return f"QuotaGrant({self.client.name!r}, {self.backend}, {state})"


def check_quota(quota: ClientQuota | None) -> Limits3:
    """The quota as limits, or InvalidArgument saying which one is wrong."""
    if quota is None:
        return (None, None, None)
    values = (quota.rpm, quota.itpm, quota.otpm)
    for name, value in zip(_NAMES, values, strict=True):
        if value is not None and (
            isinstance(value, bool) or not isinstance(value, int) or value <= 0
        ):
            raise InvalidArgument(f"quota {name} must be a whole number > 0 or unset: {value!r}")
    return (
        None if values[0] is None else float(values[0]),
        None if values[1] is None else float(values[1]),
        None if values[2] is None else float(values[2]),
    )


def drain(used: Costs | list[float], limits: Limits3, elapsed: float, period: float) -> Costs:
    """The units still counted `elapsed` seconds later: each dimension drains at its
    ``limit / period`` per second (Anthropic's bucket, seen from the used side)."""
    elapsed = max(0.0, elapsed)
    out = [0.0, 0.0, 0.0]
    for d in range(3):
        limit = limits[d]
        if limit is not None:
            out[d] = max(0.0, used[d] - elapsed * limit / period)
    return (out[0], out[1], out[2])


def rfc3339(wall: float) -> str:
    """`wall` as the API's ``-reset`` headers write it: UTC, whole seconds, rounded up."""
    when = datetime.datetime.fromtimestamp(math.ceil(wall), datetime.UTC)
    return when.strftime("%Y-%m-%dT%H:%M:%SZ")


def _rate_headers(used: Costs, limits: Limits3, period: float, wall: float) -> dict[str, str]:
    """limit, remaining and reset (when the bucket is empty again) per limited dimension."""
    headers: dict[str, str] = {}
    for d, limit in enumerate(limits):
        if limit is None:
            continue
        headers[f"{HEADER}{_DIMS[d]}-limit"] = str(int(limit))
        headers[f"{HEADER}{_DIMS[d]}-remaining"] = str(max(0, math.floor(limit - used[d])))
        headers[f"{HEADER}{_DIMS[d]}-reset"] = rfc3339(wall + used[d] * period / limit)
    return headers


def _spend_headers(cap: float | None, spent: float | None, period: str | None) -> dict[str, str]:
    if cap is None or spent is None:
        return {}
    headers = {
        f"{SPEND_HEADER}limit-usd": f"{cap:.4f}",
        f"{SPEND_HEADER}remaining-usd": f"{max(0.0, cap - spent):.4f}",
    }
    if period is not None:
        headers[f"{SPEND_HEADER}period"] = period
    return headers


def grant_headers(
    limits: Limits3,
    after: Verdict,
    period: float,
    wall: float,
    cap: float | None,
    spend_period: SpendPeriod | None,
) -> dict[str, str]:
    """The client's quota after an admission (`after.used` includes the request)."""
    headers = _rate_headers(after.used, limits, period, wall)
    headers.update(_spend_headers(cap, after.spent, spend_period))
    return headers


def refuse(
    client: GatewayClient,
    limits: Limits3,
    costs: Costs,
    worst: float,
    verdict: Verdict,
    period: float,
    wall: float,
    cap: float | None,
    spend_period: SpendPeriod | None,
) -> QuotaRefusal:
    """The refusal `verdict` means: which of the client's limits, and when to come back."""
    reasons: list[str] = []
    retry = 0.0
    for d, limit in enumerate(limits):
        if limit is None or verdict.used[d] + costs[d] <= limit:
            continue
        if costs[d] > limit:
            reasons.append(
                f"this request needs {costs[d]:,.0f} {_UNITS[d]} but the quota is "
                f"{limit:,.0f} per minute: it can never fit (lower max_tokens or raise the "
                "quota in the keys file)"
            )
            retry = max(retry, period)
            continue
        left = max(0.0, limit - verdict.used[d])
        reasons.append(
            f"{costs[d]:,.0f} {_UNITS[d]} asked, {left:,.0f} of its {limit:,.0f} per minute left"
        )
        retry = max(retry, (verdict.used[d] + costs[d] - limit) * period / limit)
    if verdict.rates_ok and not verdict.spend_ok and cap is not None:
        spent = verdict.spent or 0.0
        reasons.append(refusal(worst, cap, spent, 0.0, period_id(spend_period, wall)))
        retry = max(retry, _next_period(spend_period, wall))
    message = f"client {client.name!r} is over its own quota: " + "; ".join(reasons)
    headers = _rate_headers(verdict.used, limits, period, wall)
    headers.update(_spend_headers(cap, verdict.spent, spend_period))
    return QuotaRefusal(message, max(1.0, math.ceil(retry)), headers)


def _next_period(period: SpendPeriod | None, wall: float) -> float:
    """Seconds until the next spend period starts (an hour when the cap has no period):
    a hint, since a hold released meanwhile may make room sooner."""
    if period is None:
        return _NO_PERIOD_RETRY
    if period == "hour":
        return 3600.0 - wall % 3600.0
    now = period_id(period, wall)
    ahead = 86400.0 - wall % 86400.0  # UTC days are whole multiples of 86400 epoch seconds
    while period_id(period, wall + ahead) == now:
        ahead += 86400.0
    return ahead


def unchecked_spend(client: GatewayClient, retry_in: float) -> QuotaRefusal:
    """The refusal while Redis cannot be reached and the client has a spend cap."""
    return QuotaRefusal(
        f"client {client.name!r} has a spend cap that cannot be checked now (the gateway's "
        "Redis is unreachable): the request was not sent",
        max(1.0, math.ceil(retry_in)),
        {},
    )
