"""A budget's take and refund leave almost nothing for the garbage collector.

Each change is remembered (`NetHistory`), and it used to be remembered as two tuples: four
tracked allocations per admission that lived on, setting the collector off 6 times as often
with a backlog waiting (bench/RESULTS.md, "Issue 19's two worse figures"). Counted with the
collector off, so the count is exact: allocations of tracked objects less their frees.
"""

from __future__ import annotations

import gc

from asyncthrift.scheduling.bucket import Cost
from asyncthrift.scheduling.budget import LocalBudget
from asyncthrift.scheduling.limits import Limits


def test_a_take_and_its_refund_keep_at_most_one_tracked_object() -> None:
    budget = LocalBudget(Limits(rpm=1e6, itpm=1e9, otpm=1e9, period=60.0), 0.0, hold_bursts=False)
    cost, refund = Cost(1, 500, 256), Cost(0, 20, 156)
    for k in range(100):  # lists and dicts past their first growth
        budget.take(cost, k * 0.001)
        budget.give(refund, k * 0.001)
    n = 1000
    gc.collect()
    gc.disable()
    try:
        before = gc.get_count()[0]
        for k in range(100, 100 + n):
            budget.take(cost, k * 0.001)
            budget.give(refund, k * 0.001)
        kept = gc.get_count()[0] - before
    finally:
        gc.enable()
    # the take's mark (kept while its request may be in transit); the history keeps floats
    assert kept <= 1.2 * n
