"""A spending cap: refuse a request whose worst-case cost could cross it, before it is sent.

Worst case is the calibrated input estimate plus `max_tokens` of output at list price; it is
held while the request is in flight and replaced by the true cost from `usage`. So concurrent
requests can never together overshoot the cap, and a refused request has cost nothing.
"""

from __future__ import annotations

import math

from .errors import BudgetExceeded

__all__ = ["SpendCap"]


class SpendCap:
    """Dollars spent plus dollars held by requests in flight, against `limit_usd`."""

    __slots__ = ("held", "limit_usd", "spent")

    def __init__(self, limit_usd: float) -> None:
        if (
            isinstance(limit_usd, bool)
            or not isinstance(limit_usd, int | float)
            or not math.isfinite(limit_usd)
            or limit_usd < 0
        ):
            raise ValueError(f"spend_cap_usd= must be a number of dollars >= 0, got {limit_usd!r}")
        self.limit_usd = float(limit_usd)
        self.spent = 0.0
        self.held = 0.0

    def hold(self, worst_usd: float) -> None:
        """Hold `worst_usd` for a request about to be sent, or raise `BudgetExceeded`."""
        if self.spent + self.held + worst_usd > self.limit_usd:
            left = max(0.0, self.limit_usd - self.spent - self.held)
            raise BudgetExceeded(
                f"this request could cost up to ${worst_usd:.4f} but only ${left:.4f} of the "
                f"${self.limit_usd:.2f} spend cap is left (spent ${self.spent:.4f}, "
                f"${self.held:.4f} held by requests in flight): lower max_tokens, use a "
                "cheaper model, or raise spend_cap_usd"
            )
        self.held += worst_usd

    def settle(self, worst_usd: float, actual_usd: float) -> None:
        """The response arrived: replace the held worst case by what it really cost."""
        self.held = max(0.0, self.held - worst_usd)
        self.spent += actual_usd

    def release(self, worst_usd: float) -> None:
        """The attempt failed or was cancelled before a response: let the hold go."""
        self.held = max(0.0, self.held - worst_usd)
