"""`BudgetPool`: the budgets one gate admits on, and which of them pays a request soonest.

A gate (`scheduler.Gate`) fronts one budget per API key of a pool. Choosing among them is a
job of its own, apart from the queue: the budget that can pay soonest (round-robin among
ties, so keys share the load), the keys refused for good (never admitted on again), and
whether a request could ever fit any budget at all. `Gate` extends this class, so the hot
path reads the same slots as before the split and pays no extra call.

Waiting requests are spread by `_route`: the head of the line goes to the budget that can
pay it soonest, and each waiter behind it to the budget that can pay it soonest after the
head's cost where the head waits (in-flight holds and retry-after blocks being already in
each budget's level and `wait`). A request that does not fit the budget with room thus no
longer holds it idle: one behind it that fits is admitted there (a single line in front of
budgets of 50/30/20 % left the small one idle behind big heads).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from .bucket import Budget, Cost
from .errors import RequestTooLarge

__all__ = ["BudgetPool"]


def _plus(a: Cost, b: Cost) -> Cost:
    return Cost(a[0] + b[0], a[1] + b[1], a[2] + b[2])


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

    def _route(self, cost: Cost, queued: list[Cost | None], now: float) -> tuple[int, float] | None:
        """The budget that admits `cost` soonest after what waits ahead of it there, and when.

        `queued[i]` is the cost waiting ahead of it for budget `i` (None: none); the wait on
        `i` is then the time `i` can pay that and `cost` together. None: no usable
        budget can ever pay `cost`. Round-robin among ties, as `_pick`.
        """
        budgets = self._budgets
        n = len(budgets)
        dead = self._dead
        best: tuple[int, float] | None = None
        start = self._rr
        for k in range(n):
            i = (start + k) % n
            if i in dead:
                continue
            b = budgets[i]
            if b.too_large(cost) is not None:
                continue
            ahead = queued[i]
            w = b.wait(cost if ahead is None else _plus(ahead, cost), now)
            if best is None or w < best[1]:
                best = (i, w)
                if w <= 0.0:
                    break
        if best is not None and best[1] <= 0.0:
            self._rr = (best[0] + 1) % n
        return best
