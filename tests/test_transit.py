"""`Transit`: what a reading may not have seen, with requests still out past `HORIZON`."""

from __future__ import annotations

import pytest

from asyncthrift.scheduling.bucket import Cost
from asyncthrift.scheduling.transit import HORIZON, STRAGGLE, Transit


def burst(transit: Transit, n: int, at: float, output: float = 100.0) -> list[Cost]:
    """`n` requests of one request and `output` tokens each, admitted at `at`."""
    marks = []
    for k in range(n):
        mark = Cost(k + 1.0, 0.0, (k + 1) * output)
        transit.sent(mark, Cost(1.0, 0.0, output), at)
        marks.append(mark)
    return marks


def later(transit: Transit, marks: list[Cost], at: float) -> Cost:
    """One more request admitted at `at`, after `marks`."""
    last = marks[-1]
    mark = Cost(last[0] + 1.0, 0.0, last[2] + 100.0)
    transit.sent(mark, Cost(1.0, 0.0, 100.0), at)
    return mark


def test_a_burst_still_in_the_process_counts_past_the_horizon() -> None:
    # a loaded process admitted a burst of 100 at 0 s and had not written its tail at 1.5 s,
    # when a request admitted then overtook it on a warm connection: its reading did not
    # count the tail (it read the bucket full, and the floor lifted the level by it)
    transit = Transit()
    marks = burst(transit, 100, 0.0)
    for m in marks[:60]:
        transit.landed(m, 1.0)
    mark = later(transit, marks, 1.5)
    assert HORIZON < 1.5  # admitted past the horizon before the reading
    assert transit.before(mark, 1.5) == pytest.approx((40.0, 0.0, 4_000.0))


def test_a_request_that_ended_without_an_answer_stops_counting() -> None:
    # cancelled or failed: whatever had not reached the server then never will
    transit = Transit()
    marks = burst(transit, 100, 0.0)
    for m in marks[:60]:
        transit.landed(m, 1.0)
    for m in marks[60:]:
        transit.closed(m, 1.2)
    mark = later(transit, marks, 1.5)
    assert transit.before(mark, 1.5) == (0.0, 0.0, 0.0)


def test_requests_out_longer_than_straggle_have_reached_the_server() -> None:
    transit = Transit()
    marks = burst(transit, 100, 0.0)
    mark = later(transit, marks, STRAGGLE + 0.5)
    assert transit.before(mark, STRAGGLE + 0.5) == (0.0, 0.0, 0.0)


def test_within_the_horizon_everything_not_landed_counts_as_before() -> None:
    transit = Transit()
    marks = burst(transit, 10, 0.0)
    for m in marks[:4]:
        transit.landed(m, 0.2)
    mark = later(transit, marks, 0.5)
    assert transit.before(mark, 0.5) == pytest.approx((6.0, 0.0, 600.0))


def test_what_stays_out_is_bounded() -> None:
    # answers that never come (and no attempt closed): what counts past the horizon is
    # at most 256 requests, the most recent (without the bound: 1,400 more here)
    transit = Transit()
    marks: list[Cost] = []
    for second in range(8):
        marks += burst_from(transit, len(marks), 200, float(second))
    mark = later(transit, marks, 8.0)
    counted = transit.before(mark, 8.0)[0]
    assert 200 + 1 < counted <= 200 + 256


def burst_from(transit: Transit, first: int, n: int, at: float) -> list[Cost]:
    marks = []
    for k in range(first, first + n):
        mark = Cost(k + 1.0, 0.0, (k + 1) * 10.0)
        transit.sent(mark, Cost(1.0, 0.0, 10.0), at)
        marks.append(mark)
    return marks
