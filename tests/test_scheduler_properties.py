"""Property test: no window of the scheduler's admissions exceeds burst plus refill."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from asyncthrift.scheduling.bucket import Cost
from asyncthrift.scheduling.budget import LocalBudget
from asyncthrift.scheduling.limits import Limits
from asyncthrift.scheduling.scheduler import Gate

from .virtual import run_virtual


@dataclass
class Job:
    arrival: float
    inp: int
    out: int
    hold: float
    used_in: int
    used_out: int


jobs = st.lists(
    st.builds(
        Job,
        arrival=st.floats(min_value=0, max_value=120),
        inp=st.integers(min_value=1, max_value=400),
        out=st.integers(min_value=1, max_value=200),
        hold=st.floats(min_value=0, max_value=5),
        used_in=st.integers(min_value=0, max_value=400),
        used_out=st.integers(min_value=0, max_value=200),
    ),
    min_size=1,
    max_size=120,
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(jobs, st.sampled_from([10.0, 60.0]))
def test_no_window_admits_more_than_burst_plus_refill(workload: list[Job], period: float) -> None:
    limits = Limits(rpm=20, itpm=2000, otpm=800, period=period)
    caps = (20.0, 2000.0, 800.0)
    events: list[tuple[float, int, float]] = []  # (time, dimension, net amount)

    async def main() -> None:
        loop = asyncio.get_running_loop()
        gate = Gate([LocalBudget(limits, loop.time(), hold_bursts=False)], loop=loop)

        async def one(job: Job) -> None:
            await asyncio.sleep(job.arrival)
            cost = Cost(1, job.inp, job.out)
            res = await gate.acquire(cost)
            now = loop.time()
            for d, amount in enumerate(cost):
                events.append((now, d, float(amount)))
            await asyncio.sleep(job.hold)
            used_in = min(job.used_in, job.inp)  # an exact estimate never under-charges
            used_out = min(job.used_out, job.out)
            res.settle(used_in, used_out)
            now = loop.time()
            events.append((now, 1, -(job.inp - used_in)))
            events.append((now, 2, -(job.out - used_out)))

        await asyncio.gather(*(one(j) for j in workload))

    run_virtual(main())
    for d, cap in enumerate(caps):
        rate = cap / period
        series = [(t, a) for t, dd, a in events if dd == d]  # already in execution order
        times = [t for t, _ in series]
        # every window [a, b] between two event instants: net admitted <= burst + refill
        for i, start in enumerate(times):
            net = 0.0
            for t, amount in series[i:]:
                net += amount
                assert net <= cap + rate * (t - start) + 1e-6, (d, start, t, net)
        # and the headline property: any 60 s (one period) window stays under 2x the limit
        assert (
            max((sum(a for t, a in series if s <= t < s + period) for s in times), default=0)
            <= 2 * cap + 1e-6
        )


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(jobs)
def test_a_pool_keeps_every_key_under_its_own_limits_and_serves_everyone(
    workload: list[Job],
) -> None:
    period = 10.0
    pool = (
        Limits(rpm=20, itpm=2000, otpm=800, period=period),
        Limits(rpm=8, otpm=400, period=period),
    )
    events: list[tuple[int, float, int, float]] = []  # (key, time, dimension, net amount)
    done = 0

    async def main() -> None:
        nonlocal done
        loop = asyncio.get_running_loop()
        budgets = [LocalBudget(lim, loop.time(), hold_bursts=False) for lim in pool]
        gate = Gate(budgets, loop=loop)

        async def one(job: Job) -> None:
            nonlocal done
            await asyncio.sleep(job.arrival)
            cost = Cost(1, job.inp, job.out)
            res = await gate.acquire(cost)
            now = loop.time()
            for d, amount in enumerate(cost):
                events.append((res.index, now, d, float(amount)))
            await asyncio.sleep(job.hold)
            used_in, used_out = min(job.used_in, job.inp), min(job.used_out, job.out)
            res.settle(used_in, used_out)
            now = loop.time()
            events.append((res.index, now, 1, -(job.inp - used_in)))
            events.append((res.index, now, 2, -(job.out - used_out)))
            done += 1

        await asyncio.gather(*(one(j) for j in workload))

    run_virtual(main())
    assert done == len(workload)
    for key, limits in enumerate(pool):
        for d, cap in enumerate((limits.rpm, limits.itpm, limits.otpm)):
            if cap is None:
                continue
            rate = cap / period
            series = [(t, a) for k, t, dd, a in events if k == key and dd == d]
            for i, (start, _) in enumerate(series):
                net = 0.0
                for t, amount in series[i:]:
                    net += amount
                    assert net <= cap + rate * (t - start) + 1e-6, (key, d, start, t, net)
