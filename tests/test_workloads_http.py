"""Issue 2's acceptance workloads: the real SDK over real HTTP against the mock, real time.

Limits use a compressed period (a "minute" of a few seconds) so that a workload where all
three dimensions bind takes seconds; the arithmetic is the same as with 60 s. The mock runs
in its own process, as a real server would: sharing the client's event loop, its CPU would
be charged to the client's makespan.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from asyncthrift import Limits, Thrift
from asyncthrift.demo import theoretical_minimum
from asyncthrift.mock import Faults, MockServer, remote_stats, spawn_mock_process
from asyncthrift.workload import mixed_workload

pytestmark = pytest.mark.slow


async def run_all(client: Thrift, bodies: list[dict[str, Any]]) -> tuple[float, list[Any]]:
    t0 = time.monotonic()
    results = await asyncio.gather(*(client.messages.create(**b) for b in bodies))
    return time.monotonic() - t0, results


def sized_limits(
    bodies: list[dict[str, Any]], period: float, mock_tokens: tuple[int, int]
) -> Limits:
    """Limits under which all three dimensions bind about equally for `bodies`."""
    from asyncthrift.mock._tokenizer import analyze_input

    n = len(bodies)
    total_in = sum(analyze_input(b).total for b in bodies)
    total_out = n * (mock_tokens[0] + mock_tokens[1]) / 2
    return Limits(rpm=n / 2, itpm=total_in / 2, otpm=total_out / 2, period=period)


@pytest.mark.parametrize("chinese_share", [0.4, 1.0], ids=["mixed", "chinese"])
async def test_all_limits_binding_no_429_and_near_minimum_makespan(chinese_share: float) -> None:
    bodies = mixed_workload(600, seed=11, chinese_share=chinese_share)
    out_range = (40, 400)
    # a burst from full costs a fixed ~1 s on this 2-core box (the SDK's CPU to put 300
    # requests on the wire) whatever the period; 20 s keeps that out of the ratio under test
    limits = sized_limits(bodies, period=20.0, mock_tokens=out_range)
    with spawn_mock_process(limits=limits, latency=0.02, output_tokens=out_range) as url:
        async with Thrift(api_key="k", base_url=url, limits=limits) as client:
            makespan, results = await run_all(client, bodies)
            s = client.stats()
        c = await asyncio.to_thread(remote_stats, url)
    assert len(results) == 600 and s.succeeded == 600
    assert c["rate_limited"] == 0 and s.rate_limited == 0
    t_min = theoretical_minimum(limits, 600, c["input_tokens"], c["output_tokens"])
    assert t_min > 15.0  # the workload really binds
    assert makespan <= 1.10 * t_min, (makespan, t_min)


async def test_second_consumer_on_the_same_key() -> None:
    bodies = mixed_workload(400, seed=5)
    out_range = (40, 300)
    limits = sized_limits(bodies, period=10.0, mock_tokens=out_range)
    with spawn_mock_process(
        limits=limits, latency=0.02, output_tokens=out_range, shadow_load=0.4
    ) as url:
        async with Thrift(api_key="k", base_url=url, limits=limits) as client:
            _, results = await run_all(client, bodies)
            s = client.stats()
        c = await asyncio.to_thread(remote_stats, url)
    assert s.succeeded == 400 and len(results) == 400
    assert c["rate_limited"] < 2 * 400 / 100, c["rate_limited"]


async def test_faults_every_request_succeeds_exactly_once() -> None:
    bodies = mixed_workload(300, seed=3)
    faults = Faults(overloaded=0.05, server_error=0.02, drop=0.01, seed=42)
    async with MockServer(
        limits=Limits(rpm=6000, itpm=10**7, otpm=10**6),
        latency=0.01,
        faults=faults,
        overloaded_retry_after=0.05,
    ) as mock:
        async with Thrift(api_key="k", base_url=mock.base_url, limits=Limits(rpm=6000)) as client:
            _, results = await run_all(client, bodies)
            s = client.stats()
        c = mock.counters
    assert len(results) == 300 and s.succeeded == 300 and s.failed == 0
    assert c.ok == 300  # each answered exactly once
    assert c.overloaded + c.server_errors + c.dropped > 0
    assert s.retries == c.overloaded + c.server_errors + c.dropped
    ids = [r.content[0].text for r in results]
    assert len(ids) == 300
