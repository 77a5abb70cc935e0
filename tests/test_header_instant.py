"""Which instant non-streamed headers describe, learnt from the requests dimension
(`scheduling.header_instant.HeaderInstant`), and what knowing it saves. Virtual time only:
`tests/reading_sim.py` steps a budget against the mock's own buckets, and the synthetic
servers below are arithmetic."""

from __future__ import annotations

import math
import random
import statistics

import pytest

from asyncthrift.scheduling.budget import LocalBudget
from asyncthrift.scheduling.header_instant import HeaderInstant
from asyncthrift.scheduling.limits import Limits
from tests import reading_sim
from tests.reading_sim import Shape, simulate

#: `bench/acceptance.py`'s mixed workload's limits (600 requests, 30 s beyond the burst).
_LIMITS = Limits(rpm=400, itpm=250_000, otpm=32_000, period=60.0)


def _run(
    monkeypatch: pytest.MonkeyPatch, headers_at: str, seed: int, **kw: object
) -> tuple[reading_sim.Outcome, LocalBudget]:
    budgets: list[LocalBudget] = []

    class Kept(LocalBudget):
        __slots__ = ()

        def __init__(self, *args: object, **kwargs: object) -> None:
            super().__init__(*args, **kwargs)  # type: ignore[arg-type]
            budgets.append(self)

    monkeypatch.setattr(reading_sim, "LocalBudget", Kept)
    out = simulate(_LIMITS, 600, headers_at=headers_at, seed=seed, **kw)  # type: ignore[arg-type]
    return out, budgets[0]


@pytest.mark.parametrize("headers_at", ["admission", "completion"])
@pytest.mark.parametrize("shape", [Shape(), Shape(base=2.0, per_token=0.02)], ids=["fast", "slow"])
def test_a_lone_budget_learns_the_instant_its_headers_describe(
    monkeypatch: pytest.MonkeyPatch, headers_at: str, shape: Shape
) -> None:
    out, budget = _run(monkeypatch, headers_at, 3, shape=shape)
    assert out.refused == 0
    assert budget.headers_at == headers_at


def test_headers_as_of_admission_no_longer_clamp_each_answer_unused_reservation(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Fast answers (0.3 s, under `HORIZON`): every instant of the flight may have been the
    answer's end, so each reading's ceiling took the answer's unused reservation off, which a
    server writing headers at admission never refunded by then. Before: the output level sat
    1,620 tokens below the server (mean of three seeds) against 1,030 under completion headers;
    knowing the instant, within a few hundred of it, and no 429."""
    offsets = {}
    for headers_at in ("admission", "completion"):
        runs = [_run(monkeypatch, headers_at, seed)[0] for seed in (3, 4, 5)]
        assert all(r.refused == 0 for r in runs)
        offsets[headers_at] = statistics.mean(r.offset for r in runs)
    assert offsets["admission"] < offsets["completion"] + 300.0


# -- synthetic servers: the requests dimension alone, exactly ------------------------------


def _readings(
    headers_at: str,
    *,
    seed: int,
    hold: float = 0.0,
    lag: float = 0.0,
    other: float = 0.0,
    n: int = 600,
) -> list[tuple[float, float, float, float, float]]:
    """A lone client's readings against a server of 400 requests a minute: (remaining,
    sent_at, taken by its take, now, taken by now). Requests go in bursts after refunds, as a
    gate lets them; each is held here up to `hold` s before it reaches the server (a stalled
    loop: taken, not written), answers in 0.25-0.35 s, lands up to `lag` s late; another
    consumer spends `other` requests a second at random."""
    rng = random.Random(seed)
    rate, cap = 400 / 60, 400.0
    takes: list[float] = []
    t = 0.0
    while len(takes) < n:  # a burst of 1-8 at once, at the refill's pace on average
        k = rng.randint(1, 8)
        takes.extend([t] * k)
        t += k / rate * rng.uniform(0.5, 1.5)
    # one after the other as taken (a burst's requests reach the server in turn), unless held
    arrive = [s + 1e-4 * j + rng.uniform(0.0, hold) for j, s in enumerate(takes)]
    arrivals = sorted(
        [(a, 1.0) for a in arrive]
        + [(x * 0.01, 1.0) for x in range(int(t * 100)) if rng.random() < other / 100]
    )
    out = []
    for j, s in enumerate(takes):
        done = arrive[j] + rng.uniform(0.25, 0.35)
        now = done + 0.005 + rng.uniform(0.0, lag)
        instant = arrive[j] if headers_at == "admission" else done
        # the server: a full bucket at 0, refilled, less every arrival by then
        arrived = sum(w for a, w in arrivals if a <= instant)
        remaining = math.floor(cap + rate * instant - arrived - 600)  # far below the cap
        taken_now = sum(1 for x in takes if x <= now)
        out.append((float(remaining), s, float(j + 1), now, float(taken_now)))
    out.sort(key=lambda r: r[3])
    return out


def _learnt(
    readings: list[tuple[float, float, float, float, float]],
    instant: HeaderInstant | None = None,
) -> list[str | None]:
    """What `instant` (a new one if None) holds after each of `readings`."""
    instant = HeaderInstant() if instant is None else instant
    seen: list[str | None] = []
    for remaining, sent_at, own, now, taken_now in readings:
        instant.read(
            remaining,
            400 / 60,
            sent_at=sent_at,
            taken_by_own=own,
            now=now,
            taken_now=taken_now,
            period=60.0,
        )
        seen.append(instant.at)
    return seen


@pytest.mark.parametrize("headers_at", ["admission", "completion"])
def test_the_synthetic_server_instant_is_learnt(headers_at: str) -> None:
    for seed in range(5):
        assert _learnt(_readings(headers_at, seed=seed))[-1] == headers_at


@pytest.mark.parametrize("headers_at", ["admission", "completion"])
@pytest.mark.parametrize(
    ("hold", "lag", "other"),
    [(0.3, 0.0, 0.0), (0.0, 0.3, 0.0), (0.3, 0.3, 0.0), (0.0, 0.0, 2.7), (0.3, 0.3, 2.7)],
)
def test_never_the_wrong_instant(headers_at: str, hold: float, lag: float, other: float) -> None:
    """A stalled loop (requests held before they are written, answers read late) and
    another consumer (40 % of the requests) blur the votes: never into the wrong mode."""
    wrong = "completion" if headers_at == "admission" else "admission"
    for seed in range(5):
        seen = _learnt(_readings(headers_at, seed=seed, hold=hold, lag=lag, other=other))
        assert wrong not in seen


def test_a_429_forgets_the_instant_for_good() -> None:
    instant = HeaderInstant()
    _learnt(_readings("admission", seed=1), instant)
    assert instant.at == "admission"
    instant.refused()
    _learnt(_readings("admission", seed=2), instant)
    assert instant.at is None
