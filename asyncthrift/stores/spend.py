"""A spending cap: refuse a request whose worst-case cost could cross it, before it is sent.

Worst case is the calibrated input estimate plus `max_tokens` of output at list price; it is
held while the request is in flight and replaced by the true cost from `usage`. So concurrent
requests can never together overshoot the cap, and a refused request has cost nothing.

The cap is kept by a `SpendLedger`: `SpendCap` counts this process alone; a shared ledger
(`asyncthrift.spend_redis.RedisSpendLedger`) counts every process that uses the same Redis.
Either may count per calendar period (UTC): ``period="day"`` starts from zero at midnight.
A hold remembers the period it was made in, so a request in flight across midnight gives
its hold back to the old period and charges what it really cost to the new one.
"""

from __future__ import annotations

import datetime
import math
import time
from collections.abc import Callable
from typing import Final, Literal, NamedTuple, Protocol, get_args

from ..errors import BudgetExceeded, InvalidArgument

__all__ = [
    "SPEND_PERIODS",
    "SpendCap",
    "SpendHold",
    "SpendLedger",
    "SpendPeriod",
    "check_limit",
    "check_period",
    "period_id",
    "period_seconds",
]

SpendPeriod = Literal["hour", "day", "week", "month"]
SPEND_PERIODS: Final = get_args(SpendPeriod)


def check_limit(limit_usd: object) -> float:
    """`limit_usd` as dollars, or ValueError."""
    if (
        isinstance(limit_usd, bool)
        or not isinstance(limit_usd, int | float)
        or not math.isfinite(limit_usd)
        or limit_usd < 0
    ):
        raise InvalidArgument(f"spend_cap_usd= must be a number of dollars >= 0, got {limit_usd!r}")
    return float(limit_usd)


def check_period(period: object) -> SpendPeriod | None:
    if period is None or period in SPEND_PERIODS:
        return period  # type: ignore[return-value]
    allowed = ", ".join(repr(p) for p in SPEND_PERIODS)
    raise InvalidArgument(f"spend_period= must be {allowed} or None (no period), got {period!r}")


def period_id(period: SpendPeriod | None, wall: float) -> str:
    """The name of the calendar period (UTC) that `wall` (epoch seconds) falls in."""
    if period is None:
        return "all"
    t = time.gmtime(wall)
    if period == "hour":
        return time.strftime("%Y-%m-%dT%H", t)
    if period == "day":
        return time.strftime("%Y-%m-%d", t)
    if period == "week":
        year, week, _ = datetime.date(t.tm_year, t.tm_mon, t.tm_mday).isocalendar()
        return f"{year}-W{week:02d}"
    return time.strftime("%Y-%m", t)


def period_seconds(period: SpendPeriod | None) -> float | None:
    """The longest a period lasts (None: no period)."""
    return {"hour": 3600.0, "day": 86400.0, "week": 7 * 86400.0, "month": 31 * 86400.0}.get(
        period or ""
    )


class SpendHold(NamedTuple):
    """The worst case held for one attempt, and the period it was held in."""

    worst_usd: float
    period: str


class SpendLedger(Protocol):
    """Where a spend cap is kept: this process (`SpendCap`) or shared (Redis).

    `hold` is the only step that may wait (a shared ledger asks its server); `settle` and
    `release` never block the caller (a shared ledger sends them in the background and
    `aclose` waits for them).
    """

    limit_usd: float

    async def hold(self, worst_usd: float) -> SpendHold:
        """Hold `worst_usd` for a request about to be sent, or raise `BudgetExceeded`."""
        ...

    def settle(self, hold: SpendHold, actual_usd: float) -> None:
        """The response arrived: replace the held worst case by what it really cost."""
        ...

    def release(self, hold: SpendHold) -> None:
        """The attempt failed or was cancelled before a response: let the hold go."""
        ...

    async def aclose(self) -> None: ...


def refusal(worst_usd: float, limit_usd: float, spent: float, held: float, period: str) -> str:
    """The message of `BudgetExceeded`: what is left, and what to change."""
    left = max(0.0, limit_usd - spent - held)
    where = "" if period == "all" else f" for {period} (UTC)"
    return (
        f"this request could cost up to ${worst_usd:.4f} but only ${left:.4f} of the "
        f"${limit_usd:.2f} spend cap{where} is left (spent ${spent:.4f}, ${held:.4f} held by "
        "requests in flight): lower max_tokens, use a cheaper model, or raise spend_cap_usd"
    )


class SpendCap:
    """Dollars spent (this period) plus dollars held by requests in flight, against
    `limit_usd`, in this process. `clock` gives epoch seconds (for the period only)."""

    __slots__ = ("_clock", "_period_id", "held", "limit_usd", "period", "spent")

    def __init__(
        self,
        limit_usd: float,
        *,
        period: SpendPeriod | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.limit_usd = check_limit(limit_usd)
        self.period = check_period(period)
        self._clock = clock
        self._period_id = period_id(self.period, clock())
        self.spent = 0.0
        self.held = 0.0

    def _roll(self) -> str:
        """The current period's id; a new period starts with nothing spent."""
        if self.period is None:
            return "all"
        now = period_id(self.period, self._clock())
        if now != self._period_id:
            self._period_id = now
            self.spent = 0.0
        return now

    def hold_now(self, worst_usd: float) -> SpendHold:
        """`hold`, synchronously."""
        current = self._roll()
        if self.spent + self.held + worst_usd > self.limit_usd:
            raise BudgetExceeded(refusal(worst_usd, self.limit_usd, self.spent, self.held, current))
        self.held += worst_usd
        return SpendHold(worst_usd, current)

    async def hold(self, worst_usd: float) -> SpendHold:
        return self.hold_now(worst_usd)

    def settle(self, hold: SpendHold, actual_usd: float) -> None:
        self._roll()
        self.held = max(0.0, self.held - hold.worst_usd)
        self.spent += actual_usd  # in the period it was answered in

    def release(self, hold: SpendHold) -> None:
        self.held = max(0.0, self.held - hold.worst_usd)

    async def aclose(self) -> None:
        return None
