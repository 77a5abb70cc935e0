"""How fast the shared foreign learner (`stores.shared._foreign_fit.ForeignFit`) finds another
consumer at the real 60 s period, and how close it lands, in virtual time.

Why this shape: at the real period with four processes a process reads few answers once the
first burst is over (its quarter of ~5 requests/s, in bunches of two to five within a few
tens of milliseconds, with pauses of several seconds while it waits for a grant); the fit
asked ten bunches over 12 s and added a standard error, so the first estimate came 25-45 s
into a 50 s run and then stood 15-45 % above the consumer (`bench/bench_shared.py --period 60
--processes 4 --shadow-load 0.4`, 1.23-1.27x the minimum at the refill it leaves, where the
same processes told the consumer's share from the start measured 1.16x). Refill that a too
high estimate withholds is lost for good; a level that runs a little ahead is taken back by
the header ceiling. No clock, no Redis: the readings are computed, the instants given.
"""

from __future__ import annotations

import random

import pytest

from asyncthrift.stores.shared._foreign import _Others
from asyncthrift.stores.shared._foreign_fit import WINDOW, ForeignFit

PERIOD = 60.0
CAPS = [564.0, 360_000.0, 43_200.0]  # bench_shared's four-process limits, about
FULL = [c / PERIOD for c in CAPS]
START = 15.0  # the first window after the burst teaches nothing (`_foreign._QUIET`)


def share_at(t: float, schedule: list[tuple[float, float]]) -> float:
    """The other consumer's share of each limit at `t` (the mock's ``shadow_schedule``)."""
    share = 0.0
    for at, s in schedule:
        if t >= at:
            share = s
    return share


def run(
    seed: int, schedule: list[tuple[float, float]], *, dim: int, until: float = 60.0
) -> list[tuple[float, float | None]]:
    """Feed a `ForeignFit` one process's readings of dimension `dim` from `START` to `until`;
    return (t, estimate) after each.

    Bunches of 2-5 readings every 0.2-0.6 s, and one time in six a pause of 3-5 s (waiting
    for a grant). The quantity read grows at the other consumer's rate; its errors: the
    other processes' charges known at this process's calls (every 0.4-2 s) and moved
    between them at a rate off by up to ±100 % of their three quarters of what is left, and
    for tokens the `-remaining` rounding to a thousand of a level that wanders.
    """
    rng = random.Random(seed)
    fit = ForeignFit(list(CAPS), PERIOD)
    full = FULL[dim]
    rounding = 0.0 if dim == 0 else 1000.0
    noise = rounding / 2 / 3**0.5
    t, foreign = START, 0.0
    next_call = known_at = rate_error = 0.0
    out: list[tuple[float, float | None]] = []
    while t < until:
        dt = rng.uniform(3.0, 5.0) if rng.random() < 1 / 6 else rng.uniform(0.2, 0.6)
        foreign += share_at(t, schedule) * full * dt
        t += dt
        for _ in range(rng.randint(2, 5)):
            t += rng.uniform(0.005, 0.03)
            if t >= next_call:
                known_at, next_call = t, t + rng.uniform(0.4, 2.0)
                rate_error = rng.uniform(-1.0, 1.0)
            left = (1.0 - share_at(t, schedule)) * full
            guessed_over = rate_error * 0.75 * left * (t - known_at)
            level = CAPS[dim] * 0.05 * (1.0 + rng.uniform(-0.5, 0.5))
            read = round(level / rounding) * rounding if rounding else level
            fit.stale(t)
            fit.learn(dim, foreign + level - read - guessed_over, t, noise)
            out.append((t, fit.estimates[dim]))
    return out


def first_certain(series: list[tuple[float, float | None]]) -> float:
    """The instant of the first estimate above zero (inf: none)."""
    return next((t for t, e in series if e is not None and e > 0.0), float("inf"))


def mean_share(series: list[tuple[float, float | None]], dim: int, after: float = 0.0) -> float:
    picked = [0.0 if e is None else max(0.0, e) for t, e in series if t >= after]
    return sum(picked) / len(picked) / FULL[dim]


def test_a_consumer_of_requests_is_found_within_about_half_a_window() -> None:
    # exact readings (requests): five bunches over half a window tell it apart (6.6-11.6 s
    # after START here); before, ten bunches over 12 s put it 14.5-24.8 s after
    firsts = [first_certain(run(seed, [(0.0, 0.4)], dim=0)) - START for seed in range(8)]
    assert max(firsts) <= PERIOD * WINDOW * 0.85, firsts
    assert sum(firsts) / len(firsts) <= PERIOD * WINDOW * 0.65, firsts


def test_the_estimate_is_the_consumers_share_not_a_standard_error_above() -> None:
    # a consumer at 40 % of the requests read through the others' charges between calls,
    # off by 15 requests either way: the slope stands far above its standard error (0.08 of
    # the limit), and the estimate is that slope (before: a standard error above it)
    fit = ForeignFit(list(CAPS), PERIOD)
    points: list[tuple[float, float]] = []
    t = START
    for k in range(22):
        t = START + 0.7 * k
        y = 0.4 * FULL[0] * t + (15.0 if k % 2 else -15.0)
        points.append((t, y))
        fit.learn(0, y, t)
    kept = [(u, y) for u, y in points if u >= t - PERIOD * WINDOW]
    mt = sum(u for u, _ in kept) / len(kept)
    my = sum(y for _, y in kept) / len(kept)
    slope = sum((u - mt) * (y - my) for u, y in kept) / sum((u - mt) ** 2 for u, _ in kept)
    assert fit.estimates[0] == pytest.approx(slope, rel=1e-6)
    assert slope == pytest.approx(0.4 * FULL[0], rel=0.1)


@pytest.mark.parametrize("dim", [0, 1, 2])
def test_alone_the_sparse_readings_find_nobody(dim: int) -> None:
    shares = [mean_share(run(seed, [], dim=dim), dim) for seed in range(8)]
    assert sum(shares) / len(shares) <= 0.01, shares
    assert max(shares) <= 0.03, shares


@pytest.mark.parametrize("seed", range(6))
def test_a_consumer_that_starts_and_stops_is_followed_at_the_real_period(seed: int) -> None:
    # bench_shared's --shadow-schedule 0:0,10:0.4,30:0 read on the requests: found before it
    # stops (before: 29.5-35 s, or never, in the same readings) ...
    series = run(seed, [(10.0, 0.4), (30.0, 0.0)], dim=0, until=80.0)
    assert first_certain(series) < 28.0, first_certain(series)
    before_stop = [e for t, e in series if t < 30.0][-1]
    assert before_stop is not None and before_stop >= 0.2 * FULL[0], before_stop
    # ... and gone within a window and a half of its stop (its points age out of the fit)
    after = [0.0 if e is None else e for t, e in series if t >= 30.0 + PERIOD * WINDOW * 1.5]
    assert after and max(after) <= 0.05 * FULL[0], max(after)


def test_a_429s_estimate_goes_after_a_window_unless_the_fit_replaces_it() -> None:
    fit = ForeignFit(list(CAPS), PERIOD)
    fit.refused(2, 10.0)
    assert fit.estimates[2] == pytest.approx(0.5 * FULL[2])
    fit.stale(10.0 + PERIOD * WINDOW * 0.9)
    assert fit.estimates[2] == pytest.approx(0.5 * FULL[2])
    fit.stale(10.0 + PERIOD * WINDOW * 1.1)  # no fresh readings said anything since
    assert fit.estimates[2] is None
    # a fit that replaced it stands on its own readings
    fit.refused(0, 20.0)
    t = 20.0
    while t < 40.0:
        t += 0.7
        fit.learn(0, 0.4 * FULL[0] * t, t)
    assert fit.estimates[0] == pytest.approx(0.4 * FULL[0], rel=0.02)
    fit.stale(t + 1.0)
    assert fit.estimates[0] == pytest.approx(0.4 * FULL[0], rel=0.02)


def test_between_two_answers_the_others_charges_are_interpolated() -> None:
    others = _Others()
    assert others.at(0, 1.0) is None
    # at 10 s they had charged 100, at 12 s 140; their rate said 50/s, their room 30
    others.add(10.0, (100.0, 0.0, 0.0), (50.0, 0.0, 0.0), (30.0, 0.0, 0.0))
    assert others.at(0, 10.4) == pytest.approx(120.0)  # extrapolated: 100 + 50 x 0.4
    assert others.at(0, 11.0) == pytest.approx(130.0)  # at most by the room left
    others.add(12.0, (140.0, 0.0, 0.0), (0.0, 0.0, 0.0), (0.0, 0.0, 0.0))
    assert others.at(0, 10.4) == pytest.approx(108.0)  # on the line between the answers
    assert others.at(0, 11.5) == pytest.approx(130.0)
    assert others.at(0, 13.0) == pytest.approx(140.0)  # after the last: its rate, 0
    assert others.last() == 12.0


def test_a_consumer_that_stops_is_dropped_once_the_last_half_window_says_so() -> None:
    # steady readings of a consumer at 40 % that stops at 40 s: the window's slope halves
    # only once half the window is past the stop and reaches zero after a whole one;
    # the last half window's slope, certainly lower, says it sooner
    fit = ForeignFit(list(CAPS), PERIOD)
    consumed, t, k = 0.0, START, 0
    dropped = float("inf")
    while t < 70.0:
        t, k = t + 0.7, k + 1
        consumed += (0.4 * FULL[0] if t <= 40.0 else 0.0) * 0.7
        fit.learn(0, consumed + (2.0 if k % 2 else -2.0), t)
        e = fit.estimates[0]
        if t > 40.0 and e is not None and e < 0.1 * FULL[0]:
            dropped = min(dropped, t - 40.0)
    assert dropped <= 6.0, dropped  # 4.4 s; the window alone: 7.9 s
