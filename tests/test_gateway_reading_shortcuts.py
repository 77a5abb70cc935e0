"""`reading_shortcuts`: a header reading skips work only where that work adds nothing.

Each scenario runs twice in virtual time (explicit instants, no clock), once with the
shortcuts and once with them turned into the full loops they replace, and every result a
reading gives (its return value, the budget's level, what the readings' lower bounds lifted,
`Transit.before`) must be equal, not approximately: float for float.
"""

from __future__ import annotations

import heapq
import itertools
import random
from collections.abc import Callable
from typing import Any

import pytest

from asyncthrift.scheduling.bucket import Cost, ServerView
from asyncthrift.scheduling.budget import LocalBudget
from asyncthrift.scheduling.limits import Limits
from asyncthrift.scheduling.reading_shortcuts import LazyHighest, TransitSums
from asyncthrift.scheduling.transit import Transit


def _slow(monkeypatch: pytest.MonkeyPatch) -> None:
    """The shortcuts off: every reading computes its highest readings and loops over all."""

    def every_time(self: LazyHighest, i: int, bucket: Any, now: float, lowest: float) -> float:
        return self._compute(self._sent_at, self._now)[i]

    monkeypatch.setattr(LazyHighest, "at", every_time)
    monkeypatch.setattr(TransitSums, "between", lambda self, start, stop: None)
    monkeypatch.setattr(TransitSums, "landed_before", lambda self, own, base, times, at: 0)


def _counting(monkeypatch: pytest.MonkeyPatch) -> dict[str, int]:
    """Counts how often each shortcut saved work (so that the comparison is not vacuous)."""
    saved = {"highest": 0, "sums": 0, "skipped": 0}
    at, between, landed_before = LazyHighest.at, TransitSums.between, TransitSums.landed_before

    def spy_at(self: LazyHighest, i: int, bucket: Any, now: float, lowest: float) -> float:
        got = at(self, i, bucket, now, lowest)
        saved["highest"] += self._values is None  # computed nothing (yet)
        return got

    def spy_between(self: TransitSums, start: int, stop: int) -> Any:
        got = between(self, start, stop)
        saved["sums"] += got is not None and stop > start
        return got

    def spy_landed(self: TransitSums, own: int | None, base: int, times: Any, t: float) -> int:
        w = landed_before(self, own, base, times, t)
        saved["skipped"] += w
        return w

    monkeypatch.setattr(LazyHighest, "at", spy_at)
    monkeypatch.setattr(TransitSums, "between", spy_between)
    monkeypatch.setattr(TransitSums, "landed_before", spy_landed)
    return saved


def _budget_run(seed: int, *, fractional: bool, rounded: bool) -> list[object]:
    """A budget under a mix of light and binding spells: overlapping requests of random
    flights, headers read at a random instant of each flight from a simulated server, some
    attempts closed without an answer. Returns everything each reading gave."""
    rng = random.Random(seed)
    limits = Limits(rpm=600, itpm=400_000, otpm=60_000, period=60.0)
    budget = LocalBudget(limits, 0.0)
    server = [600.0, 400_000.0, 60_000.0]
    rates = [600.0 / 60.0, 400_000.0 / 60.0, 60_000.0 / 60.0]
    out: list[tuple[float, int, Cost, Cost, float, float]] = []  # (lands, n, mark, cost, ...)
    order = itertools.count()
    seen: list[object] = []
    now = 0.0
    for step in range(1_500):
        busy = (step // 250) % 2 == 1  # binding spells: big, frequent requests
        now += rng.uniform(0.0005, 0.004 if busy else 0.02)
        for k in range(3):
            server[k] = min(limits_of(limits)[k], server[k] + rates[k] * 0.003)
        # answers landing by now, in the order they land
        while out and out[0][0] <= now:
            lands, _, mark, cost, sent_at, used = heapq.heappop(out)
            if rng.random() < 0.05:
                budget.closed(mark, lands)
                seen.append(("closed", budget.peek(lands)))
                continue
            server[2] += cost[2] - used  # the server refunds the unused output
            remaining = [max(0.0, s) for s in server]
            if rounded:
                remaining[1] = float(round(remaining[1] / 1000) * 1000)
                remaining[2] = float(round(remaining[2] / 1000) * 1000)
            view = ServerView(
                requests_limit=600,
                requests_remaining=remaining[0],
                input_limit=400_000,
                input_remaining=remaining[1],
                output_limit=60_000,
                output_remaining=remaining[2],
            )
            changed = budget.observe(view, mark, sent_at, lands)
            seen.append((changed, budget.peek(lands), budget.lifted_by_readings))
        # a new request
        inputs = rng.randint(200, 4_000) * (5 if busy else 1)
        if fractional and rng.random() < 0.5:
            inputs += 0.25
        cost = Cost(1.0, float(inputs), float(rng.choice((256, 1024, 4096))))
        mark = budget.take(cost, now)
        for k in range(3):
            server[k] -= cost[k]
        used = float(rng.randint(10, int(cost[2])))
        lands = now + rng.uniform(0.02, 0.6 if busy else 0.1)
        heapq.heappush(out, (lands, next(order), mark, cost, now, used))
    return seen


def limits_of(limits: Limits) -> tuple[float, float, float]:
    return (float(limits.rpm or 0), float(limits.itpm or 0), float(limits.otpm or 0))


def _twice(
    monkeypatch: pytest.MonkeyPatch, run: Callable[[], list[object]]
) -> tuple[list[object], list[object], dict[str, int]]:
    with monkeypatch.context() as m:
        saved = _counting(m)
        fast = run()
    with monkeypatch.context() as m:
        _slow(m)
        slow = run()
    return fast, slow, saved


@pytest.mark.parametrize(
    ("seed", "fractional", "rounded"),
    [(1, False, True), (2, False, False), (3, True, True)],
)
def test_a_budget_reads_every_header_as_without_the_shortcuts(
    monkeypatch: pytest.MonkeyPatch, seed: int, fractional: bool, rounded: bool
) -> None:
    fast, slow, saved = _twice(
        monkeypatch, lambda: _budget_run(seed, fractional=fractional, rounded=rounded)
    )
    assert len(fast) > 1_000
    assert fast == slow  # float for float
    assert saved["highest"] > 100  # readings that skipped the highest readings' loop
    assert saved["skipped"] > 100  # readings that started Transit's loop past landed ones
    if not fractional:
        assert saved["sums"] > 0  # more than 256 in the window: summed from running totals


def _transit_run(seed: int, fractional: bool) -> list[object]:
    """`Transit.before` at each answer of a stream of requests: up to ~900 a second (past
    `_SCAN` in the window), flights of 0-3 s (some past the horizon), some closed."""
    rng = random.Random(seed)
    transit = Transit()
    out: list[tuple[float, int, Cost, float]] = []
    order = itertools.count()
    sent = [0.0, 0.0, 0.0]
    got: list[object] = []
    now = 0.0
    for _ in range(2_500):
        now += rng.expovariate(900.0)
        while out and out[0][0] <= now:
            lands, _, mark, at = heapq.heappop(out)
            got.append(transit.before(mark, at))
            transit.landed(mark, lands)
        cost = Cost(1.0, float(rng.randint(1, 900)) + (0.5 if fractional else 0.0), 512.0)
        sent = [s + c for s, c in zip(sent, cost, strict=True)]
        mark = Cost(*sent)
        transit.sent(mark, cost, now)
        flight = rng.uniform(1.0, 3.0) if rng.random() < 0.02 else rng.uniform(0.0, 0.2)
        if rng.random() < 0.03:
            transit.closed(mark, now + flight)
        else:
            heapq.heappush(out, (now + flight, next(order), mark, now))
    return got


@pytest.mark.parametrize(("seed", "fractional"), [(4, False), (5, True)])
def test_transit_counts_what_it_counted_without_the_shortcuts(
    monkeypatch: pytest.MonkeyPatch, seed: int, fractional: bool
) -> None:
    fast, slow, saved = _twice(monkeypatch, lambda: _transit_run(seed, fractional))
    assert len(fast) > 2_000
    assert fast == slow
    assert saved["skipped"] > 500
    assert (saved["sums"] > 0) is not fractional


def test_a_landing_stamped_after_a_later_admission_still_counts_for_it() -> None:
    # instants from different callers: an answer recorded as landed at 5.5 before a request
    # admitted at 5.2 (by its own clock) was taken; for that request it had not landed yet
    transit = Transit()
    a, b = Cost(1.0, 0.0, 1.0), Cost(2.0, 0.0, 2.0)
    transit.sent(a, Cost(1.0, 0.0, 1.0), 5.0)
    transit.landed(a, 5.5)
    transit.sent(b, Cost(1.0, 0.0, 1.0), 5.2)  # its clock is behind: a landed after it
    reference = Transit()
    reference._sums = TransitSums(enabled=False)
    reference.sent(a, Cost(1.0, 0.0, 1.0), 5.0)
    reference.landed(a, 5.5)
    reference.sent(b, Cost(1.0, 0.0, 1.0), 5.2)
    assert transit.before(b, 5.2) == reference.before(b, 5.2) == (1.0, 0.0, 1.0)
