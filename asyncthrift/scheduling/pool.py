"""`BudgetPool`: the budgets one gate admits on, and which of them pays a request soonest.

A gate (`scheduler.Gate`) fronts one budget per API key of a pool. Choosing among them is a
job of its own, apart from the queue: the budget that can pay soonest (round-robin among
ties, so keys share the load), the keys refused for good (never admitted on again), and
whether a request could ever fit any budget at all. `Gate` extends this class, so the hot
path reads the same slots as before the split and pays no extra call.

While a backlog waits (more requests than the pool has budgets), a request several budgets
can pay now goes to the smallest of them that is at most half the largest (by configured
limits; round-robin among equals, and among the others when no small one can pay it).
Round-robin there spread every run of admissions over all budgets, so that none kept the
level a big `max_tokens` needs: the line being in arrival order, its head then waited for
one budget to bank it while the others' levels sat idle, and a small budget, whose level
sits up to a rounding step of `-remaining` below its server's, banked longest. Spending
the small budgets first keeps the big ones' level for the requests only they can pay. With
few left waiting there is nothing to keep it for, and round-robin drains the budgets evenly
(`tests/test_key_pools.py`: exact buckets, no refunds, small-first to the end finished 2.1 s
after the minimum, this 1.5 s, round-robin 1.0 s). `bench/pool_readings.py` (the pool's
budgets read from the mock's rounded headers, in virtual time, 12 workload draws): the
bench's pool 1.240x the minimum with round-robin, about 1.22x with this (`bench/RESULTS.md`,
branch pool29).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

from ..errors import RequestTooLarge
from .bucket import Budget, Cost

__all__ = ["BudgetPool"]


class BudgetPool:
    """The budgets that can serve one model class, with the disabled ones set aside."""

    __slots__ = ("_budgets", "_dead", "_dead_error", "_least", "_ranks", "_rr")

    def __init__(self, budgets: Sequence[Budget]) -> None:
        if not budgets:
            raise ValueError("a gate needs at least one budget")
        self._budgets = list(budgets)
        self._dead: set[int] = set()
        self._dead_error: Callable[[], BaseException] | None = None
        self._rr = 0
        # spent first while a backlog waits: the budgets at most half the largest, smallest
        # first (inf: not small); `_least` the smallest rank, which ends a scan at once
        self._ranks = _ranks(self._budgets)
        self._least = min(self._ranks)

    @property
    def waiting(self) -> int:
        """Requests queued for these budgets (`Gate` counts its own; none here)."""
        return 0

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
        """The budget that can pay soonest, and its wait; among those that can pay now, the
        smallest while a backlog waits (the module's docstring says why), round-robin
        among ties."""
        budgets = self._budgets
        n = len(budgets)
        dead = self._dead
        if n == 1 and not dead:
            return (0, budgets[0].wait(cost, now)) if budgets[0].too_large(cost) is None else None
        ranks = self._ranks
        small_first = self.waiting > n
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
            if best is None or (
                w < best[1]
                if w > 0.0 or best[1] > 0.0
                else small_first and ranks[i] < ranks[best[0]]
            ):
                best = (i, w)
                if w <= 0.0 and (not small_first or ranks[i] == self._least):
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


def _ranks(budgets: Sequence[Budget]) -> list[float]:
    """Each budget's configured limits, every dimension as a share of the pool's largest,
    summed (rounded, so that equal limits tie), for the budgets at most half the largest's;
    inf for the others and for budgets without `limits`. A budget near the largest's size
    banks a big `max_tokens` as soon: spending it first gains nothing, and 60/40 % of the
    bench's limits ended 0.009 later for it (`tests/pool_reading_sim.py`, 12 draws)."""
    dims = ("rpm", "itpm", "otpm")
    caps = [[getattr(getattr(b, "limits", None), d, None) or 0.0 for d in dims] for b in budgets]
    top = [max(c[d] for c in caps) for d in range(3)]
    sizes = [round(sum(c[d] / top[d] for d in range(3) if top[d] > 0.0), 9) for c in caps]
    half = max(sizes) / 2.0
    return [size if 0.0 < size <= half else math.inf for size in sizes]
