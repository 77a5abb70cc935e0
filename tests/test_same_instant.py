"""Changes stamped at one instant: a loop whose clock reads the same through an iteration
(uvloop's, cached to the millisecond) stamps a refund and the take it lets in alike. A
reading's flight (what this process charged while its request was out) starts at the
request's own take, not at the first change of its instant.

Why: counted in, the refund that let a request in read a lone client's flight hundreds of
output tokens short; its readings then passed `ForeignShare`'s filter of uncertain readings,
and a fit took 90 % of the output refill for another consumer for seconds (the acceptance
bench's slow cancel-finish cell under headers as of admission: 1.15 under uvloop against 1.08
under asyncio's loop, whose clock reads afresh on every call)."""

from __future__ import annotations

from typing import Any

import pytest

from asyncthrift.scheduling.bucket import Cost, ServerView
from asyncthrift.scheduling.budget import LocalBudget
from asyncthrift.scheduling.foreign import ForeignShare
from asyncthrift.scheduling.limits import Limits

LIMITS = Limits(rpm=600, otpm=60_000, period=60)


def _flights(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """The output flight every reading hands to `ForeignShare.read`."""
    seen: list[float] = []
    original = ForeignShare.read

    def read(self: ForeignShare, i: int, *args: Any, **kwargs: Any) -> None:
        if i == 2:
            seen.append(kwargs["flight"])
        original(self, i, *args, **kwargs)

    monkeypatch.setattr(ForeignShare, "read", read)
    return seen


def _view(remaining: float) -> ServerView:
    return ServerView(
        requests_limit=600,
        requests_remaining=500,
        output_limit=60_000,
        output_remaining=remaining,
    )


def _read_one(budget: LocalBudget, *, refund_first: bool, at: float) -> None:
    """A request answered at `at - 5`, its unused output given back at `at`, and a request
    admitted at `at`: the refund first (it let the request in), or after it."""
    first = Cost(1.0, 0.0, 1_000.0)
    mark = budget.take(first, at - 8.0)
    budget.observe(_view(50_000), mark, at - 8.0, at - 5.0, own=first)
    refund = Cost(0.0, 0.0, 800.0)
    mine = Cost(1.0, 0.0, 1_000.0)
    if refund_first:
        budget.give(refund, at)
        mark = budget.take(mine, at)
    else:
        mark = budget.take(mine, at)
        budget.give(refund, at)
    budget.observe(_view(50_000), mark, at, at + 3.0, own=mine)


def test_a_refund_stamped_with_the_take_it_let_in_is_not_in_that_request_flight(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    flights = _flights(monkeypatch)
    budget = LocalBudget(LIMITS, now=0.0)
    _read_one(budget, refund_first=True, at=20.0)
    # its own take only: the refund came before it
    assert flights[-1] == pytest.approx(1_000.0)


def test_a_refund_at_the_same_instant_after_the_take_is_in_its_flight(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    flights = _flights(monkeypatch)
    budget = LocalBudget(LIMITS, now=0.0)
    _read_one(budget, refund_first=False, at=20.0)
    assert flights[-1] == pytest.approx(200.0)


def test_requests_of_one_instant_each_count_their_own_take_and_those_after(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # a burst admitted at one instant: the first one's flight holds the whole burst, the
    # last one's only itself
    flights = _flights(monkeypatch)
    budget = LocalBudget(LIMITS, now=0.0)
    warm = budget.take(Cost(1.0, 0.0, 100.0), 1.0)
    budget.observe(_view(59_000), warm, 1.0, 2.0, own=Cost(1.0, 0.0, 100.0))
    cost = Cost(1.0, 0.0, 100.0)
    marks = [budget.take(cost, 10.0) for _ in range(5)]
    budget.observe(_view(50_000), marks[0], 10.0, 12.0, own=cost)
    budget.observe(_view(50_000), marks[-1], 10.0, 12.5, own=cost)
    assert flights[-2:] == pytest.approx([500.0, 100.0])
