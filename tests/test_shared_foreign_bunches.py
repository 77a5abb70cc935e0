"""The shared foreign learner's phantom with no other consumer (`_foreign_fit.ForeignFit`), in
virtual time: readings that come in bunches and whose error persists from one reading to the
next, as they do for processes sharing a key.

Why this shape: a process knows the other processes' charges exactly only at its own calls to
Redis; between them it extrapolates at their reported rate, and that rate is off by a different
amount after every call. The error of the ``unexplained`` quantity is then a random slope per
stretch between two calls (0.4-1.2 s), on top of the `-remaining` rounding, and the answers'
readings come in bunches of two to five within a few tens of milliseconds. Fitted as if every
reading were independent, those slopes stood "three standard errors" above zero often enough
to slow the shared refill by ~3 % on average here, and by 5-8 % in traces of
``tests/test_shared_workloads.py``'s four processes (1.06-1.09x against 1.03-1.04x with the
foreign rate off). No clock, no Redis: the readings are computed, the instants given.
"""

from __future__ import annotations

import math
import random

import pytest

from asyncthrift.stores.shared._foreign_fit import ForeignFit

PERIOD = 8.0  # the compressed test's period
CAP = 34_000.0  # its output tokens per period
FULL = CAP / PERIOD
OTHERS = 0.75  # three other processes spend three quarters of the refill
RATE_ERROR = 0.5  # the others' reported rate is off by up to this share after each call


def run(seed: int, *, foreign: float = 0.0, until: float = 40.0) -> list[float | None]:
    """Feed a `ForeignFit` bunched readings to `until`; return its estimate after each one.

    The server's level wanders slowly (never near the cap) and is read rounded to a thousand;
    another consumer, if any, spends `foreign` of the limit's rate; the others' charges are
    known exactly at this process's calls (every 0.4-1.2 s) and extrapolated between them at
    a rate off by a random share (uniform within `RATE_ERROR`, either way).
    """
    rng = random.Random(seed)
    fit = ForeignFit([0.0, 0.0, CAP], PERIOD)
    t = next_call = known_at = rate_error = 0.0
    estimates: list[float | None] = []
    while t < until:
        t += rng.uniform(0.1, 0.4)
        for _ in range(rng.randint(2, 5)):
            t += rng.uniform(0.005, 0.03)
            if t >= next_call:
                known_at, next_call = t, t + rng.uniform(0.4, 1.2)
                rate_error = rng.uniform(-RATE_ERROR, RATE_ERROR)
            guessed_over = rate_error * OTHERS * FULL * (t - known_at)
            level = CAP * (0.15 + 0.05 * math.sin(t / 3.0))
            remaining = round(level / 1000.0) * 1000.0
            fit.stale(t)
            fit.learn(2, level - remaining + foreign * FULL * t - guessed_over, t)
            estimates.append(fit.estimates[2])
    return estimates


def mean_share(estimates: list[float | None]) -> float:
    return sum(0.0 if e is None else max(0.0, e) for e in estimates) / len(estimates) / FULL


def test_alone_bunched_readings_do_not_slow_the_shared_refill() -> None:
    # before the fix: 0.018-0.036 per seed, 0.031 on average (a phantom of 3 % of the
    # refill, every process's average in force); after: 0.001-0.009
    shares = [mean_share(run(seed)) for seed in range(10)]
    assert sum(shares) / len(shares) <= 0.012, shares
    assert max(shares) <= 0.015, shares


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_a_consumer_is_still_found_through_that_noise(seed: int) -> None:
    estimates = run(seed, foreign=0.4)
    later = estimates[len(estimates) // 4 :]  # after the first windows
    assert all(e is not None for e in later)
    assert 0.33 <= mean_share(later) <= 0.55, mean_share(later)
