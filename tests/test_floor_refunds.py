"""`ReadingFloor` carries each reading's lower bound forward exactly (issue 18 point 4).

A reading's bound is kept relative to our level, so our own charges and refunds carry it
forward. A refund of a request that was out when another request's reading was taken may
be in that reading already (the server refunded it before that instant; its answer came back
here later): such a bound must not be credited with it again. With that counted, the best
recent bound may lift the level alone, less what an unlearnt consumer may have spent since
(`_DRIFT`). Plain calls (no clock) and `tests/reading_sim.py` (virtual time, event by event).
"""

from __future__ import annotations

import pytest

from asyncthrift.scheduling.floor import _DRIFT, ReadingFloor
from tests.reading_sim import pool_fifth, simulate

PERIOD = 60.0
RATE = 150.0  # the 20 % pool budget's output refill, tokens/s


def _two_bounds(floor: ReadingFloor, bound: float, level: float, now: float) -> float:
    """Two readings of requests 2 and 3 (admitted in that order) agreeing on `bound`: the
    rise they allow (the second best bound lifts, never one alone)."""
    assert floor.rise(2, bound, level, now, PERIOD, order=2.0, rate=RATE) == 0.0
    return floor.rise(2, bound, level, now, PERIOD, order=3.0, rate=RATE)


def test_a_refund_the_bound_may_count_is_not_credited_twice() -> None:
    floor = ReadingFloor()
    # the server has at least 1,500, our level reads 1,000
    assert _two_bounds(floor, 1500.0, 1000.0, 1.0) == 500.0
    # request 1 (admitted before both, answered after them) gives back 900: their readings
    # may have that refund already, so their bounds do not rise with our level
    floor.refunding(2, 900.0, 1.0)
    level = 1500.0 + 900.0
    # a worse reading at once: nothing lifts (main's floor credited the 900 a second time)
    assert floor.rise(2, 0.0, level, 1.0, PERIOD, order=4.0, rate=RATE) == 0.0


def test_a_refund_of_a_later_request_keeps_the_bound() -> None:
    floor = ReadingFloor()
    assert _two_bounds(floor, 1500.0, 1000.0, 1.0) == 500.0
    # request 4 went out after both: their bounds counted its whole charge as possibly
    # unseen, and its refund gives back no more than that charge
    floor.refunding(2, 700.0, 4.0)
    floor.lowered(2, 400.0)  # a clamp to a pessimistic reading, not a change at the server
    assert floor.rise(2, 0.0, 1100.0, 1.0, PERIOD, order=5.0, rate=RATE) == pytest.approx(400.0)


def test_one_odd_bound_does_not_lift_alone() -> None:
    floor = ReadingFloor()
    assert floor.rise(2, 0.0, 0.0, 1.0, PERIOD, order=1.0, rate=RATE) == 0.0
    assert floor.rise(2, 30_000.0, 0.0, 1.0, PERIOD, order=2.0, rate=RATE) == 0.0


def test_a_kept_bound_loses_the_refill_with_its_age() -> None:
    floor = ReadingFloor()
    assert _two_bounds(floor, 1000.0, 1000.0, 1.0) == 0.0
    floor.lowered(2, 600.0)  # a clamp: the bounds are now 600 above our level
    # two seconds later they may be stale by two seconds of an unlearnt consumer
    rise = floor.rise(2, 0.0, 400.0, 3.0, PERIOD, order=4.0, rate=RATE)
    assert rise == pytest.approx(600.0 - 2.0 * _DRIFT * RATE)


def test_another_consumer_keeps_only_the_latest_bound() -> None:
    floor = ReadingFloor()
    _two_bounds(floor, 1000.0, 1000.0, 1.0)
    floor.lowered(2, 600.0)
    assert floor.rise(2, 100.0, 400.0, 1.1, PERIOD, alone=False, order=4.0) == 0.0


def test_no_lift_above_what_the_latest_reading_allows() -> None:
    floor = ReadingFloor()
    assert _two_bounds(floor, 1000.0, 1000.0, 1.0) == 0.0
    # the latest reading clamps us 600 lower: pessimism, or someone else spending, which
    # the kept bounds have not seen; read as high as it may be, it allows 200 above us
    floor.lowered(2, 600.0)
    assert floor.rise(2, 0.0, 400.0, 1.0, PERIOD, order=4.0, rate=RATE, most=200.0) == 200.0


@pytest.mark.parametrize("headers_at", ["completion", "admission"])
@pytest.mark.parametrize("rounding", ["nearest", "down"])
def test_a_lone_small_budget_never_runs_ahead_of_the_server(headers_at: str, rounding: str) -> None:
    for seed in (3, 4):
        out = simulate(pool_fifth(), 160, headers_at=headers_at, rounding=rounding, seed=seed)
        assert out.refused == 0
        assert min(out.offsets) >= 0.0


def test_admission_headers_read_closer_on_a_small_budget() -> None:
    """Headers as of admission, rounded down: the level sat 1,818 output tokens below the
    server on main's floor (mean of these four seeds, 1,711-1,882), 1,645 here."""
    outs = [
        simulate(pool_fifth(), 160, headers_at="admission", rounding="down", seed=s)
        for s in range(3, 7)
    ]
    assert sum(o.offset for o in outs) / len(outs) < 1_720.0
