"""`Transit.written`: a request the transport wrote is seen by the readings of requests
written `WIRE` after it; without word from the transport, nothing changes."""

from __future__ import annotations

import pytest

from asyncthrift.scheduling.bucket import Cost, ServerView
from asyncthrift.scheduling.budget import LocalBudget
from asyncthrift.scheduling.limits import Limits
from asyncthrift.scheduling.transit import HORIZON, WIRE, Transit


def burst(transit: Transit, n: int, at: float, first: int = 0) -> list[Cost]:
    """`n` requests of one request and 100 output tokens each, admitted at `at`."""
    marks = []
    for k in range(first, first + n):
        mark = Cost(k + 1.0, 0.0, (k + 1) * 100.0)
        transit.sent(mark, Cost(1.0, 0.0, 100.0), at)
        marks.append(mark)
    return marks


def test_requests_written_wire_before_a_request_count_as_seen_by_its_reading() -> None:
    transit = Transit()
    marks = burst(transit, 10, 0.0)
    for m in marks[:6]:
        transit.written(m, 0.1)
    mine = burst(transit, 1, 1.5, first=10)[0]
    transit.written(mine, 1.5)
    assert HORIZON < 1.5 and 1.5 - WIRE > 0.1
    # the four never written may still be held in this process: they count
    assert transit.before(mine, 1.5) == pytest.approx((4.0, 0.0, 400.0))


def test_without_word_from_the_transport_every_request_still_out_counts() -> None:
    transit = Transit()
    marks = burst(transit, 10, 0.0)
    mine = burst(transit, 1, 1.5, first=10)[0]
    assert transit.before(mine, 1.5) == pytest.approx((10.0, 0.0, 1_000.0))
    del marks


def test_a_request_written_within_wire_of_the_reading_request_still_counts() -> None:
    # it may reach the server after the later one (another connection, the network)
    transit = Transit()
    marks = burst(transit, 4, 0.0)
    mine = burst(transit, 1, 1.0, first=4)[0]
    for m in marks:
        transit.written(m, 1.2)
    transit.written(mine, 1.2 + WIRE * 0.9)
    assert transit.before(mine, 1.0) == pytest.approx((4.0, 0.0, 400.0))
    transit = Transit()
    marks = burst(transit, 4, 0.0)
    mine = burst(transit, 1, 1.0, first=4)[0]
    for m in marks:
        transit.written(m, 1.2)
    transit.written(mine, 1.2 + WIRE * 1.1)
    assert transit.before(mine, 1.0) == (0.0, 0.0, 0.0)


def test_a_request_not_yet_written_is_placed_at_its_admission() -> None:
    # its reading describes an instant after it reached the server, so after its admission
    transit = Transit()
    marks = burst(transit, 3, 0.0)
    transit.written(marks[0], 0.05)
    transit.written(marks[1], 0.8)
    mine = burst(transit, 1, 0.6, first=3)[0]
    assert transit.before(mine, 0.6) == pytest.approx((2.0, 0.0, 200.0))


def test_requests_admitted_after_but_written_wire_before_are_seen() -> None:
    # a burst whose first request waited for a connection while the rest went out: its
    # reading saw those (the caller counts everything sent after it; this takes them off)
    transit = Transit()
    marks = burst(transit, 8, 0.0)
    for k, m in enumerate(marks[1:]):
        transit.written(m, 0.1 + 0.01 * k)
    transit.written(marks[0], 1.0)
    assert transit.before(marks[0], 0.0) == pytest.approx((-7.0, 0.0, -700.0))
    # one written too close to it is not
    transit = Transit()
    marks = burst(transit, 3, 0.0)
    transit.written(marks[1], 0.2)
    transit.written(marks[2], 1.0 - WIRE / 2)
    transit.written(marks[0], 1.0)
    assert transit.before(marks[0], 0.0) == pytest.approx((-1.0, 0.0, -100.0))


def test_only_the_first_word_counts_and_unknown_marks_are_ignored() -> None:
    transit = Transit()
    marks = burst(transit, 2, 0.0)
    transit.written(marks[0], 0.1)
    transit.written(marks[0], 5.0)  # a redirect's second request proves nothing more
    transit.written(Cost(99.0, 0.0, 0.0), 0.1)
    mine = burst(transit, 1, 2.0, first=2)[0]
    assert transit.before(mine, 2.0) == pytest.approx((1.0, 0.0, 100.0))


def test_requests_kept_past_the_horizon_keep_when_they_were_written() -> None:
    # over 64 requests, so the horizon's window is pruned and the still-out move aside
    transit = Transit()
    marks = burst(transit, 100, 0.0)
    for m in marks[:70]:
        transit.written(m, 0.3)
    later = burst(transit, 1, 2.0, first=100)[0]
    for m in marks[70:]:
        transit.written(m, 2.2)  # written after they left the window
    transit.written(later, 2.1)
    mine = burst(transit, 1, 3.0, first=101)[0]
    transit.written(mine, 3.0)
    # all of them written WIRE before `mine` was: seen, past the horizon or not
    assert transit.before(mine, 3.0) == (0.0, 0.0, 0.0)
    last = burst(transit, 1, 3.1, first=102)[0]
    transit.written(last, 2.6)  # impossible order, read as no earlier than its admission
    assert transit.before(last, 3.1) == pytest.approx((1.0, 0.0, 100.0))  # `mine`, 3.0


def _burst_from_full(budget: LocalBudget) -> list[Cost]:
    """600 requests admitted at once from a full bucket of 600 per minute (10/s)."""
    return [budget.take(Cost(1, 0, 0), 0.0) for _ in range(600)]


def test_the_hold_after_a_burst_ends_on_what_the_written_burst_proves() -> None:
    # all but the first request of the burst were written by 0.4 s; the first waited for a
    # connection until 1 s, and its answer (5 s) read the server as of its arrival: 9 left
    # (refill since the burst arrived, less itself). The reading saw the whole burst.
    proven = LocalBudget(Limits(rpm=600, period=60), now=0.0)
    marks = _burst_from_full(proven)
    for k, m in enumerate(marks[1:]):
        proven.written(m, 0.4 * k / 600)
    proven.written(marks[0], 1.0)
    view = ServerView(requests_limit=600, requests_remaining=9)
    proven.observe(view, marks[0], sent_at=0.0, now=5.0)
    assert proven.peek(5.0)[0] == pytest.approx(9.0)
    # without word from the transport the reading may have missed the whole burst
    blind = LocalBudget(Limits(rpm=600, period=60), now=0.0)
    marks = _burst_from_full(blind)
    blind.observe(view, marks[0], sent_at=0.0, now=5.0)
    assert blind.peek(5.0)[0] == pytest.approx(0.0)


def test_the_hold_credits_nothing_for_a_burst_written_with_its_first_answer() -> None:
    # the burst went out in one write window with the request read: none of it is proven
    budget = LocalBudget(Limits(rpm=600, period=60), now=0.0)
    marks = _burst_from_full(budget)
    for m in marks:
        budget.written(m, 1.0)
    view = ServerView(requests_limit=600, requests_remaining=9)
    budget.observe(view, marks[0], sent_at=0.0, now=5.0)
    assert budget.peek(5.0)[0] == pytest.approx(0.0)
