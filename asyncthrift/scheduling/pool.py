"""`BudgetPool`: the budgets one gate admits on, and which of them pays a request soonest.

A gate (`scheduler.Gate`) fronts one budget per API key of a pool. Choosing among them is a
job of its own, apart from the queue: the budget that can pay soonest (round-robin among
ties, so keys share the load), the keys refused for good (never admitted on again), and
whether a request could ever fit any budget at all. `Gate` extends this class, so the hot
path reads the same slots as before the split and pays no extra call.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

from ..errors import RequestTooLarge
from .bucket import Budget, Cost

__all__ = ["BudgetPool"]


class BudgetPool:
    """The budgets that can serve one model class, with the disabled ones set aside."""

    __slots__ = ("_budgets", "_dead", "_dead_error", "_rr")

    def __init__(self, budgets: Sequence[Budget]) -> None:
        if not budgets:
            raise ValueError("a gate needs at least one budget")
        self._budgets = list(budgets)
        self._dead: set[int] = set()
        self._dead_error: Callable[[], BaseException] | None = None
        self._rr = 0

    @property
    def usable(self) -> bool:
        """Whether some budget may still admit (not every one is disabled)."""
        return len(self._dead) < len(self._budgets)

    def _check_size(self, cost: Cost) -> None:
        """Raise `RequestTooLarge` if no budget could ever pay `cost` (stops at the first fit)."""
        first: str | None = None
        dead = self._dead
        for i, budget in enumerate(self._budgets):
            if i in dead:
                continue
            reason = budget.too_large(cost)
            if reason is None:
                return
            first = first or reason
        raise RequestTooLarge(str(first))

    def _too_large_reason(self, cost: Cost) -> str:
        for i, budget in enumerate(self._budgets):
            if i not in self._dead:
                reason = budget.too_large(cost)
                if reason is not None:
                    return reason
        return "no budget of this pool can admit this request"

    def _pick(self, cost: Cost, now: float) -> tuple[int, float] | None:
        """The budget that can pay soonest, and its wait; round-robin among ties."""
        budgets = self._budgets
        n = len(budgets)
        dead = self._dead
        if n == 1 and not dead:
            return (0, budgets[0].wait(cost, now)) if budgets[0].too_large(cost) is None else None
        best: tuple[int, float] | None = None
        start = self._rr
        for k in range(n):
            i = (start + k) % n
            if i in dead:
                continue
            b = budgets[i]
            if b.too_large(cost) is not None:
                continue
            w = b.wait(cost, now)
            if best is None or w < best[1]:
                best = (i, w)
                if w <= 0.0:
                    break
        if best is not None:
            self._rr = (best[0] + 1) % n
        return best

    def _pool_wait(self, demand: Cost, now: float) -> float:
        """About how long the usable budgets together take to pay `demand`: each alone in
        ``w_i`` seconds (its own `wait`), together in ``1 / sum(1 / w_i)`` (0 if one can
        pay it now, inf if none can)."""
        rate = 0.0
        for index, budget in enumerate(self._budgets):
            if index in self._dead:
                continue
            w = budget.wait(demand, now)
            if w <= 0.0:
                return 0.0
            rate += 1.0 / w
        return math.inf if rate == 0.0 else 1.0 / rate
