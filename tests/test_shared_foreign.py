"""The shared budget's learner of a consumer outside it (`stores.shared._foreign.ForeignFit`),
in virtual time: readings of a server whose level another consumer spends from at a rate
that starts and stops, with the `-remaining` rounding and the uncertainty about what the
other processes of the shared budget spent between their calls as noise.

No clock and no Redis: the readings are computed, the instants are given.
"""

from __future__ import annotations

import random

import pytest

from asyncthrift.stores.shared._foreign_fit import ForeignFit

PERIOD = 60.0
CAP = 90_000.0  # output tokens per minute (tier 2)
FULL = CAP / PERIOD  # 1,500 tokens/s


def foreign_rate(t: float, schedule: list[tuple[float, float]]) -> float:
    """The other consumer's share of the limit at `t` (the mock's `shadow_schedule`)."""
    share = 0.0
    for at, s in schedule:
        if t >= at:
            share = s
    return share * FULL


def run(
    schedule: list[tuple[float, float]],
    *,
    until: float,
    seed: int = 1,
    rounding: float = 1000.0,
    others_noise: float = 0.0,
) -> list[tuple[float, float | None]]:
    """Feed a `ForeignFit` one reading every 0.05-0.4 s to `until`; return (t, estimate).

    The server's level: it refills at `FULL`; every process of the shared budget together
    spends what the other consumer leaves, less a little (the level hovers low, never at
    the cap); the other consumer spends at its scheduled rate. A reading is the level
    rounded to `rounding` (nearest); what the other processes spent by the reading is known
    to within `others_noise` (uniform, either way).
    """
    rng = random.Random(seed)
    fit = ForeignFit([0.0, 0.0, CAP], PERIOD)
    t, ours, theirs = 0.0, 0.0, 0.0
    level = CAP * 0.1
    out: list[tuple[float, float | None]] = []
    while t < until:
        dt = rng.uniform(0.05, 0.4)
        f = foreign_rate(t, schedule)
        spend = max(0.0, FULL - f) * rng.uniform(0.9, 1.0) * dt
        ours += spend
        theirs += f * dt
        t += dt
        level += FULL * dt - spend - f * dt
        remaining = round(level / rounding) * rounding if rounding else level
        known = ours + rng.uniform(-others_noise, others_noise)
        fit.learn(2, FULL * t - known - remaining, t)
        out.append((t, fit.estimates[2]))
    return out


def estimate_at(series: list[tuple[float, float | None]], t: float) -> float:
    last = 0.0
    for u, e in series:
        if u > t:
            break
        last = 0.0 if e is None else e
    return last


@pytest.mark.parametrize("noise", [0.0, 3000.0])
def test_alone_the_estimate_never_slows_the_shared_refill(noise: float) -> None:
    series = run([], until=120.0, others_noise=noise)
    estimates = [0.0 if e is None else max(0.0, e) for _, e in series]
    # a phantom consumer costs makespan: a few per cent of the refill on average, and a
    # fit that stands out of the noise by chance never for much
    assert sum(estimates) / len(estimates) <= 0.02 * FULL, sum(estimates) / len(estimates)
    assert max(estimates) <= 0.3 * FULL, max(estimates)


@pytest.mark.parametrize("noise", [0.0, 3000.0])
def test_a_consumer_all_along_is_found_within_a_window(noise: float) -> None:
    series = run([(0.0, 0.4)], until=90.0, others_noise=noise)
    for t in (30.0, 60.0, 89.0):
        e = estimate_at(series, t)
        # on the safe side of the truth (a standard error more), not far above it
        assert 0.33 * FULL <= e <= 0.6 * FULL, (t, e / FULL)


def test_a_consumer_that_starts_and_stops_is_followed() -> None:
    series = run([(30.0, 0.4), (90.0, 0.0)], until=150.0, others_noise=2000.0)
    assert estimate_at(series, 29.0) <= 0.05 * FULL
    # found within a window and a half of its start (0.25 of the period: 15 s) ...
    assert estimate_at(series, 30.0 + 25.0) >= 0.3 * FULL
    assert estimate_at(series, 85.0) >= 0.35 * FULL
    # ... and forgotten within as long after it stops
    assert estimate_at(series, 90.0 + 25.0) <= 0.1 * FULL
    assert estimate_at(series, 149.0) <= 0.05 * FULL


def test_a_429_assumes_half_the_limit_until_the_readings_say() -> None:
    fit = ForeignFit([0.0, 0.0, CAP], PERIOD)
    fit.refused(2)
    assert fit.estimates[2] == pytest.approx(0.5 * FULL)
    fit.estimates[2] = 0.7 * FULL
    fit.refused(2)  # never lowers a higher estimate
    assert fit.estimates[2] == pytest.approx(0.7 * FULL)


def test_a_server_bucket_near_full_restarts_the_fit() -> None:
    fit = ForeignFit([0.0, 0.0, CAP], PERIOD)
    fit.estimates[2] = 0.4 * FULL
    fit.restart(2)
    assert fit.estimates[2] == 0.0


def test_an_estimate_without_readings_is_forgotten() -> None:
    series_fit = ForeignFit([0.0, 0.0, CAP], PERIOD)
    t = 0.0
    for k in range(200):
        t = k * 0.1
        series_fit.learn(2, 0.4 * FULL * t, t)  # another consumer at 40 %, exactly
    assert series_fit.estimates[2] == pytest.approx(0.4 * FULL, rel=0.05)
    series_fit.stale(t + PERIOD * 0.25 * 1.4)  # less than a window and a half: kept
    assert series_fit.estimates[2] is not None
    series_fit.stale(t + PERIOD * 0.25 * 1.6)
    assert series_fit.estimates[2] is None
