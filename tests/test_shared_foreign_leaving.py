"""Another consumer that starts and stops, and processes that stop working: what a shared
budget's foreign learner (`stores.shared._foreign`) reports to the shared refill.

Why: with `bench/bench_shared.py --period 60 --processes 4 --shadow-schedule
0:0,10:0.4,30:0` the estimates in force in Redis still took 0.16-0.5 of each limit 8-13 s
after the consumer stopped, and among them those of processes that had finished their work
(their last call returned their idle lease; `lease.lua` counted their estimates for 0.375
of the period). No clock, no Redis: the instants are the loop's, moved back by the test.
"""

from __future__ import annotations

import asyncio

import pytest

from asyncthrift import Limits
from asyncthrift.scheduling.bucket import Cost, ServerView
from asyncthrift.stores.shared import SharedBudget
from tests.test_shared_clamp import _Store

LIMITS = Limits(rpm=60, itpm=60_000, otpm=6_000, period=60.0)


def _estimates_reported(admitted_ago: float) -> list[str]:
    """The estimates the closing call of a process reports (``x``: none) after a 429 on
    the output tokens, `admitted_ago` seconds after its last admission."""
    now = asyncio.get_running_loop().time() - admitted_ago
    budget = SharedBudget(_Store(), LIMITS, now, "k", ("b", "p"))  # type: ignore[arg-type]
    budget.give(Cost(0, 1000, 0), now)  # some input lease, for the closing call to give back
    # a 429 on the output tokens: half the limit is someone else's (`ForeignFit.refused`)
    view = ServerView(output_limit=6000, output_remaining=0)
    budget.observe(view, Cost(0, 0, 0), now, now, refused=True)
    args = budget.release_args()
    assert args is not None
    words = args[-1].split()
    assert words[0] == "F1"
    return words[4:7]


async def test_a_busy_process_reports_its_estimate() -> None:
    # admitted just now: it reads headers, its estimate is fresh and counts
    assert _estimates_reported(0.0) == ["x", "x", repr(50.0)]


@pytest.mark.parametrize("idle_for", [30.0, 100.0])
async def test_an_idle_process_reports_no_estimate(idle_for: float) -> None:
    # nothing waits, nothing admitted for longer than the lease counts as busy: its last
    # call (the return of its idle lease) takes its record out of the average in force
    assert _estimates_reported(idle_for) == ["x", "x", "x"]
