"""Key pools over real HTTP against the mock in its own process, in real time: a pool of
budgets with different limits and a revoked key runs at about the sum of the limits."""

from __future__ import annotations

import asyncio
import time

import pytest

from asyncthrift import KeyConfig, Limits, Thrift
from asyncthrift.demo import theoretical_minimum
from asyncthrift.mock import remote_stats, spawn_mock_process
from asyncthrift.workload import mixed_workload
from tests.test_workloads_http import sized_limits

pytestmark = pytest.mark.slow


def scaled(limits: Limits, share: float) -> Limits:
    assert limits.rpm is not None and limits.itpm is not None and limits.otpm is not None
    return Limits(
        rpm=limits.rpm * share,
        itpm=limits.itpm * share,
        otpm=limits.otpm * share,
        period=limits.period,
    )


async def test_a_pool_of_three_budgets_and_a_revoked_key_runs_at_the_sum_of_the_limits() -> None:
    bodies = mixed_workload(600, seed=21)
    out_range = (40, 300)
    total = sized_limits(bodies, period=12.0, mock_tokens=out_range)
    shares = {"small": 1 / 6, "medium": 2 / 6, "large": 3 / 6}
    pool = {name: scaled(total, share) for name, share in shares.items()}
    keys = [KeyConfig(api_key=name, limits=lim, name=name) for name, lim in pool.items()]
    # the revoked key claims the largest limits: it would have taken the biggest share
    keys.insert(1, KeyConfig(api_key="revoked", limits=scaled(total, 0.5), name="revoked"))
    with spawn_mock_process(
        api_keys=list(pool), key_limits=pool, latency=0.02, output_tokens=out_range
    ) as url:
        async with Thrift(keys=keys, base_url=url) as client:
            t0 = time.monotonic()
            results = await asyncio.gather(*(client.messages.create(**b) for b in bodies))
            makespan = time.monotonic() - t0
            s = client.stats()
        c = await asyncio.to_thread(remote_stats, url)
    assert len(results) == 600 and s.succeeded == 600
    assert c["by_status"].get("401") == 1, c["by_status"]  # dropped after its first 401
    assert s.keys_disabled == 1 and s.rerouted == 1
    assert c["rate_limited"] == 0 and s.rate_limited == 0
    t_min = theoretical_minimum(total, 600, c["input_tokens"], c["output_tokens"])
    assert t_min > 8.0  # the workload really binds
    print(f"pool makespan {makespan:.2f}s, minimum {t_min:.2f}s, {makespan / t_min:.3f}x")
    assert makespan <= 1.15 * t_min, (makespan, t_min)


async def test_two_keys_of_one_budget_get_its_limits_once() -> None:
    # the mock gives each key its own buckets, as if they were two organisations: a client
    # told they share one budget must still keep to that budget's limits (it is the truth
    # the mock cannot see), so the run takes the one budget's minimum, not half of it
    bodies = mixed_workload(200, seed=22)
    out_range = (40, 300)
    limits = sized_limits(bodies, period=4.0, mock_tokens=out_range)
    keys = [
        KeyConfig(api_key="a", limits=limits, budget="org"),
        KeyConfig(api_key="b", limits=limits, budget="org"),
    ]
    with spawn_mock_process(limits=limits, latency=0.02, output_tokens=out_range) as url:
        async with Thrift(keys=keys, base_url=url) as client:
            t0 = time.monotonic()
            await asyncio.gather(*(client.messages.create(**b) for b in bodies))
            makespan = time.monotonic() - t0
        c = await asyncio.to_thread(remote_stats, url)
    t_min = theoretical_minimum(limits, 200, c["input_tokens"], c["output_tokens"])
    print(f"shared budget makespan {makespan:.2f}s, one budget's minimum {t_min:.2f}s")
    assert makespan >= 0.95 * t_min, (makespan, t_min)
