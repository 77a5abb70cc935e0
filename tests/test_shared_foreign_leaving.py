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
import itertools
import random

import pytest

from asyncthrift import Limits
from asyncthrift.scheduling.bucket import Cost, ServerView
from asyncthrift.stores.shared import SharedBudget
from asyncthrift.stores.shared._foreign_fit import ForeignFit
from tests.test_shared_clamp import _Store
from tests.test_shared_foreign_converge import CAPS, PERIOD, START, share_at

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


Series = list[tuple[float, list[float | None]]]


def _follow(seed: int, schedule: list[tuple[float, float]]) -> Series:
    """One process's readings of all three dimensions from the end of the quiet first window
    to 70 s, fed to a `ForeignFit` (as `test_shared_foreign_converge.run`, every dimension
    at once): requests read exactly but for the others' charges between calls (±6), tokens
    rounded to a thousand and moved by the flights (±1,500); (t, estimates) after each."""
    rng = random.Random(seed)
    fit = ForeignFit(list(CAPS), PERIOD)
    full = [c / PERIOD for c in CAPS]
    t, consumed = START, [0.0, 0.0, 0.0]
    out: Series = []
    while t < 70.0:
        dt = rng.uniform(3.0, 5.0) if rng.random() < 1 / 6 else rng.uniform(0.2, 0.6)
        t += dt
        for i in range(3):
            consumed[i] += share_at(t, schedule) * full[i] * dt
        fit.stale(t)
        for i in range(3):
            if i == 0:
                read = consumed[0] + rng.uniform(-6.0, 6.0)
            else:
                read = round((consumed[i] + rng.uniform(-1500.0, 1500.0)) / 1000.0) * 1000.0
            fit.learn(i, read, t, 0.0 if i == 0 else 1000.0 / 2 / 3**0.5)
        out.append((t, list(fit.estimates)))
    return out


def _someone(e: float | None) -> bool:
    return e is not None and e > 0.0


@pytest.mark.parametrize("seed", range(6))
def test_the_tokens_forget_a_consumer_the_requests_saw_leave(seed: int) -> None:
    # as bench_shared's --shadow-schedule 0:0,10:0.4,30:0, stopping later (a process's
    # sparse readings may find it only after 30 s): once the requests' estimate falls from
    # someone to nobody, no token estimate is left in force (before: the token fits, on
    # rounded readings, kept 0.1-0.5 of their limits for seconds more)
    series = _follow(seed, [(10.0, 0.4), (40.0, 0.0)])
    found = [t for t, e in series if _someone(e[0])]
    assert found and found[0] < 40.0, "the requests did not find the consumer"
    gone = next(
        (k for k, (t, e) in enumerate(series) if t > found[0] and t > 40.0 and not _someone(e[0])),
        None,
    )
    assert gone is not None, "the requests never saw it leave"
    t, estimates = series[gone]
    assert not _someone(estimates[1]) and not _someone(estimates[2]), (t, estimates)


@pytest.mark.parametrize("seed", range(6))
def test_a_consumer_that_stays_keeps_its_token_estimates(seed: int) -> None:
    # 40 % all along: a token estimate, once found, is never forgotten (the requests'
    # estimate never falls to nobody), and the input's is found and kept to the end
    series = _follow(seed, [(0.0, 0.4)])
    for (_, a), (t, b) in itertools.pairwise(series):
        for i in (1, 2):
            assert not (_someone(a[i]) and b[i] is None), (t, i, a, b)
    assert all(_someone(e[1]) for t, e in series if t > 45.0)
