"""Continuously refilling token buckets, the cost of a request, and the `Budget` protocol.

`budget.py` builds the three-dimensional budget of one (key, model class) on these. Pure
arithmetic: no asyncio, no clock of its own. Every method takes `now` (seconds on any
monotonic clock), so the scheduler, the mock server and virtual-time tests drive the same
code. A bucket may go into debt (negative level) when a reconciliation finds that a request
used more than was reserved; refills pay the debt back before anything else is admitted.
"""

from __future__ import annotations

import math
from typing import NamedTuple, Protocol

from ..errors import InvalidArgument

__all__ = ["ZERO", "Budget", "Cost", "ServerView", "TokenBucket"]

#: Relative tolerance for float comparisons: a wait computed as deficit/rate lands the timer
#: exactly where the level reaches the amount, give or take one ulp; never re-arm for that.
_EPS = 1e-9


class Cost(NamedTuple):
    """What one request charges: a request, its input tokens, its output tokens."""

    requests: float
    input_tokens: float
    output_tokens: float


ZERO = Cost(0, 0, 0)


class TokenBucket:
    """A bucket of `capacity` units refilling continuously at `capacity / period` per second.

    This is the algorithm Anthropic documents for its own limiter: bursts up to the full
    capacity, then a steady refill; never reset at minute boundaries.
    """

    __slots__ = ("_held_until", "_level", "_owed", "_stamp", "capacity", "lowered", "rate")

    def __init__(self, capacity: float, period: float, now: float, level: float | None = None):
        if capacity <= 0 or period <= 0:
            raise InvalidArgument(
                f"a bucket needs a positive capacity and period, got capacity={capacity!r}, "
                f"period={period!r}"
            )
        self.capacity = float(capacity)
        self.rate = self.capacity / period
        self._level = self.capacity if level is None else float(level)
        self._stamp = now
        self._held_until = -math.inf
        self._owed = 0.0
        self.lowered = 0.0  # the running total `clamp` took off the level

    def level(self, now: float) -> float:
        """Units available at `now` (negative while in debt)."""
        if now > self._stamp:
            gain = (now - self._stamp) * self.rate
            if self._held_until > self._stamp:  # refill withheld while held (see `hold`)
                withheld = (min(now, self._held_until) - self._stamp) * self.rate
                self._owed += withheld
                gain -= withheld
            if self._owed and now >= self._held_until:  # the hold expired: credit it all
                gain += self._owed
                self._owed = 0.0
            self._level = min(self.capacity, self._level + gain)
            self._stamp = now
        return self._level

    def peek(self, now: float) -> float:
        """`level(now)` without moving the bucket's clock: pure, so safe from another thread."""
        level, stamp, held_until = self._level, self._stamp, self._held_until
        if now <= stamp:
            return level
        gain = (now - stamp) * self.rate
        owed = self._owed
        if held_until > stamp:
            withheld = (min(now, held_until) - stamp) * self.rate
            owed += withheld
            gain -= withheld
        if owed and now >= held_until:
            gain += owed
        return min(self.capacity, level + gain)

    @property
    def held(self) -> bool:
        return self._held_until > self._stamp

    def hold(self, now: float, at_most: float) -> None:
        """Withhold refill from `now` until `release()` (or at most `at_most` seconds).

        A client that takes from a full bucket cannot know when the server will see the
        request: a burst may leave the process seconds later. Refill credited meanwhile
        would be refill the server never had (its bucket sat full). Holding until the
        server's first answer, which then resyncs the level, closes that gap.
        """
        self.level(now)
        self._held_until = now + at_most

    def release(self, now: float, up_to: float) -> None:
        """End the hold, crediting the withheld refill but never above `up_to`.

        `up_to` bounds the level by what the server's answer proves it had.
        """
        level = self.level(now)
        self._held_until = -math.inf
        credit = min(self._owed, max(0.0, up_to - level))
        self._owed = 0.0
        self._level = min(self.capacity, level + credit)

    def wait(self, amount: float, now: float) -> float:
        """Seconds from `now` until `amount` units are available (0.0 if they are now)."""
        deficit = amount - self.level(now)
        if deficit <= _EPS * max(1.0, self.capacity):
            return 0.0
        return deficit / self.rate

    def take(self, amount: float, now: float) -> None:
        """Spend `amount` units; the level may go negative (debt)."""
        self.level(now)
        self._level -= amount

    def give(self, amount: float, now: float) -> None:
        """Return `amount` unused units, never above capacity."""
        self.level(now)
        self._level = min(self.capacity, self._level + amount)

    def clamp(self, ceiling: float, now: float) -> bool:
        """Lower the level to `ceiling` if it is above it; never raise it. True if lowered."""
        level = self.level(now)
        if level > ceiling:
            self.lowered += level - ceiling
            self._level = ceiling
            return True
        return False

    def set_rate(self, rate: float, now: float) -> None:
        """Refill at `rate` from `now` on (the share of a shared key's refill left to us)."""
        self.level(now)
        self.rate = rate

    def resize(self, capacity: float, period: float, now: float) -> None:
        """Adopt a new capacity (e.g. the server reports a lower limit), keeping the level."""
        self.level(now)
        self.capacity = float(capacity)
        self.rate = self.capacity / period
        self._level = min(self._level, self.capacity)

    def __repr__(self) -> str:
        return (
            f"TokenBucket(capacity={self.capacity:g}, rate={self.rate:g}/s, level={self._level:g})"
        )


class ServerView(NamedTuple):
    """What one response's ``anthropic-ratelimit-*`` headers say about one dimension each.

    `None` where the header is absent. A named tuple, not a dataclass: one is built for
    every response, and a tuple is built several times faster than a frozen dataclass.
    """

    requests_limit: float | None = None
    requests_remaining: float | None = None
    input_limit: float | None = None
    input_remaining: float | None = None
    output_limit: float | None = None
    output_remaining: float | None = None
    retry_after: float | None = None
    #: `anthropic-ratelimit-requests-reset` as epoch seconds (server wall clock): with the
    #: exact requests `-remaining` it tells when the server wrote these headers.
    requests_reset: float | None = None
    #: `x-should-retry`: the server's own word on retrying (None: it did not say).
    should_retry: bool | None = None


class Budget(Protocol):
    """The admission interface the scheduler needs from one (key, model class).

    Synchronous on purpose: admission must be O(1) without awaiting. A distributed budget
    keeps a local lease of budget and refills it from Redis in the background, calling the
    scheduler's `poke()` when a lease arrives.
    """

    def too_large(self, cost: Cost) -> str | None: ...
    def wait(self, cost: Cost, now: float) -> float: ...
    def take(self, cost: Cost, now: float) -> Cost: ...
    def give(self, cost: Cost, now: float) -> None: ...
    def closed(self, mark: Cost, now: float) -> None: ...
    def block_until(self, when: float) -> None: ...
    def probing(self, sent_at: float) -> bool: ...
    def observe(
        self,
        view: ServerView,
        sent_mark: Cost,
        sent_at: float,
        now: float,
        *,
        uncharged: Cost = ...,
        refused: bool = ...,
        seen: Cost = ...,
        own: Cost | None = ...,
    ) -> bool: ...
