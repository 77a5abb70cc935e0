"""The server side of rate limiting: buckets per (api key, model class), shadow load, headers.

Built on `asyncthrift.scheduling.bucket.TokenBucket` so the mock and the client share one definition
of a continuously refilling bucket; this module only adds what a server does differently:
refusing instead of queueing, an invisible co-tenant (`shadow_load`), and reporting state in
``anthropic-ratelimit-*`` headers.
"""

from __future__ import annotations

import math
import time

from ..scheduling.bucket import TokenBucket
from ..scheduling.limits import Limits
from ._config import RemainingRounding, ResetPrecision

__all__ = ["DIMENSIONS", "ServerBudget", "rfc3339"]

#: Header infix and human name of each dimension, in Cost order.
DIMENSIONS = (
    ("requests", "requests"),
    ("input-tokens", "input tokens"),
    ("output-tokens", "output tokens"),
)

_EPS = 1e-9


#: Formatted "YYYY-MM-DDTHH:MM:SS" by epoch second. strftime is the costly part of a header,
#: and one response's resets (three dimensions, often in the same few seconds) and the next
#: response's share prefixes: a small map hits where a single cached second would thrash.
_prefixes: dict[int, str] = {}
_PREFIXES_MAX = 256


def rfc3339(t: float, precision: ResetPrecision = "milliseconds") -> str:
    """Wall-clock `t` as RFC 3339 UTC, rounded *up* to the millisecond or whole second.

    Up, because a reset is "when the bucket will be full again": a later instant is still
    true of a full bucket, an earlier one is not. Whole seconds round the millisecond value
    up again, so the seconds form is never earlier than the milliseconds form.
    """
    ms = math.ceil(t * 1000.0 - 1e-6)
    if precision == "seconds":
        secs, ms = -(-ms // 1000), -1
    else:
        secs, ms = divmod(ms, 1000)
    prefix = _prefixes.get(secs)
    if prefix is None:
        if len(_prefixes) >= _PREFIXES_MAX:
            _prefixes.clear()
        prefix = _prefixes[secs] = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(secs))
    return f"{prefix}Z" if ms < 0 else f"{prefix}.{ms:03d}Z"


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(float(value))


class _Dimension:
    """One bucket plus the shadow consumer's lazy share of its refill.

    The shadow models another client of the same key that consumes a fraction `shadow` of
    the refill rate continuously (a fraction that changes at the instants of `schedule`, if
    any). Taken lazily whenever the bucket is touched: the level becomes what it would be
    with refill rate ``(1 - shadow) * rate`` since the last touch (exact, including the cap
    at capacity), but the shadow only ever takes what is available — it never pushes the
    bucket into debt.
    """

    __slots__ = (
        "_last_level",
        "_last_time",
        "_next_step",
        "_shadowed",
        "_steps",
        "bucket",
        "eff_rate",
        "limit_text",
        "shadow",
    )

    def __init__(
        self,
        capacity: float,
        period: float,
        shadow: float,
        now: float,
        schedule: tuple[tuple[float, float], ...] = (),
    ) -> None:
        self.bucket = TokenBucket(capacity, period, now)
        self.shadow = shadow
        self.eff_rate = self.bucket.rate * (1.0 - shadow)
        self.limit_text = _number(capacity)
        self._last_level = self.bucket.capacity
        self._last_time = now
        # `MockConfig.shadow_schedule` on this bucket's clock: (instant, share) from then on
        self._steps = tuple((now + t, share) for t, share in schedule)
        self._next_step = 0
        self._shadowed = shadow > 0.0 or any(share > 0.0 for _, share in schedule)

    @property
    def capacity(self) -> float:
        return self.bucket.capacity

    def sync(self, now: float) -> float:
        """The level at `now` after the shadow took its share since the last touch."""
        level = self.bucket.level(now)
        if self._shadowed and now > self._last_time:
            target, t = self._last_level, self._last_time
            steps, k = self._steps, self._next_step
            while k < len(steps) and steps[k][0] <= now:  # the other consumer changed pace
                at, self.shadow = steps[k]
                if at > t:
                    target, t = min(self.capacity, target + self.eff_rate * (at - t)), at
                self.eff_rate = self.bucket.rate * (1.0 - self.shadow)
                k += 1
            self._next_step = k
            target = min(self.capacity, target + self.eff_rate * (now - t))
            share = min(level - target, max(0.0, level))
            if share > 0.0:
                self.bucket.take(share, now)
                level -= share
        self._last_level = level
        self._last_time = max(now, self._last_time)
        return level

    def wait(self, amount: float, level: float) -> float:
        """Seconds until `amount` is available from `level`, at the effective refill rate."""
        deficit = amount - level
        if deficit <= _EPS * max(1.0, self.capacity):
            return 0.0
        return deficit / self.eff_rate

    def take(self, amount: float, now: float) -> None:
        self.sync(now)
        self.bucket.take(amount, now)
        self._last_level -= amount

    def give(self, amount: float, now: float) -> None:
        self.sync(now)
        self.bucket.give(amount, now)
        self._last_level = self.bucket.level(now)

    def until_full(self, level: float) -> float:
        return max(0.0, self.capacity - level) / self.eff_rate


class ServerBudget:
    """The three buckets of one (api key, model class); `None` = unlimited dimension.

    `rounding` and `precision` are how `headers` writes token `-remaining` and `-reset`
    (see `MockConfig.remaining_rounding` and `MockConfig.reset_precision`).
    """

    __slots__ = ("dims", "limits", "precision", "rounding")

    def __init__(
        self,
        limits: Limits,
        shadow: float,
        now: float,
        rounding: RemainingRounding = "nearest",
        precision: ResetPrecision = "seconds",
        schedule: tuple[tuple[float, float], ...] = (),
    ) -> None:
        self.limits = limits
        self.rounding = rounding
        self.precision = precision
        self.dims: tuple[_Dimension | None, ...] = tuple(
            None if cap is None else _Dimension(cap, limits.period, shadow, now, schedule)
            for cap in (limits.rpm, limits.itpm, limits.otpm)
        )

    def never_fits(self, need: tuple[float, float, float]) -> int | None:
        """Index of a dimension whose capacity is below `need` (it can never pass), or None."""
        for i, (dim, amount) in enumerate(zip(self.dims, need, strict=True)):
            if dim is not None and amount > dim.capacity + _EPS:
                return i
        return None

    def check(self, need: tuple[float, float, float], now: float) -> tuple[float, int]:
        """(seconds until all dimensions can pay `need`, index of the slowest dimension).

        Syncs every bucket (so the shadow takes its share first); charges nothing.
        """
        worst, which = 0.0, -1
        for i, (dim, amount) in enumerate(zip(self.dims, need, strict=True)):
            if dim is None:
                continue
            level = dim.sync(now)
            if amount > 0:
                w = dim.wait(amount, level)
                if w > worst:
                    worst, which = w, i
        return worst, which

    def take(self, cost: tuple[float, float, float], now: float) -> None:
        for dim, amount in zip(self.dims, cost, strict=True):
            if dim is not None and amount:
                dim.take(amount, now)

    def give(self, index: int, amount: float, now: float) -> None:
        """Refund (amount > 0) or further charge (amount < 0) one dimension."""
        dim = self.dims[index]
        if dim is None or not amount:
            return
        if amount > 0:
            dim.give(amount, now)
        else:
            dim.take(-amount, now)

    def headers(self, now: float, wall: float) -> list[tuple[str, str]]:
        """``anthropic-ratelimit-*`` headers for the state at `now`; charges nothing.

        Each bucket is synced first, so the shadow's share since the last touch is gone
        whenever the headers are written (at admission, at a refusal or at completion).
        `-remaining` is floored, and for tokens rounded to a thousand as `rounding` says
        ("nearest" goes half up, but back down where up would exceed the limit: no server
        reports more remaining than its limit). `-reset` is when the bucket would be full at
        the effective refill rate, rounded up to `precision`. The combined ``tokens-*``
        reports the token dimension with the least left (compared before rounding).
        """
        out: list[tuple[str, str]] = []
        rounding, precision = self.rounding, self.precision
        tightest: tuple[float, int, int, str] | None = None  # (level, remaining, index, reset)
        for i, dim in enumerate(self.dims):
            if dim is None:
                continue
            level = dim.sync(now)
            remaining = max(0, math.floor(level + _EPS))
            if i and rounding != "exact":
                down = remaining - remaining % 1000
                if rounding == "nearest" and remaining - down >= 500:
                    up = down + 1000
                    remaining = up if up <= dim.capacity else down
                else:
                    remaining = down
            reset = rfc3339(wall + dim.until_full(level), precision)
            infix = DIMENSIONS[i][0]
            out.append((f"anthropic-ratelimit-{infix}-limit", dim.limit_text))
            out.append((f"anthropic-ratelimit-{infix}-remaining", str(remaining)))
            out.append((f"anthropic-ratelimit-{infix}-reset", reset))
            if i and (tightest is None or level < tightest[0]):
                tightest = (level, remaining, i, reset)
        if tightest is not None:
            _, remaining, i, reset = tightest
            dim = self.dims[i]
            assert dim is not None
            out.append(("anthropic-ratelimit-tokens-limit", dim.limit_text))
            out.append(("anthropic-ratelimit-tokens-remaining", str(remaining)))
            out.append(("anthropic-ratelimit-tokens-reset", reset))
        return out
