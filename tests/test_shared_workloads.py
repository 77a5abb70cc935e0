"""The acceptance workloads of shared budgets: 4 worker processes, one key, one Redis.

Each worker (`tests/shared_worker.py`) fires its whole workload at once at a common
wall-clock instant; the mock (its own process) counts 429s and tokens. Limits use a
compressed period and bind in all three dimensions; the theoretical minimum is that of the
whole key (`asyncthrift.tools.demo.theoretical_minimum`).
"""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import pytest

from asyncthrift import Limits
from asyncthrift.mock import remote_stats, spawn_mock_process
from asyncthrift.mock._tokenizer import analyze_input
from asyncthrift.tools.demo import theoretical_minimum
from asyncthrift.tools.workload import mixed_workload
from tests.redis_server import RedisServer
from tests.shared_worker import run_workers

pytestmark = [pytest.mark.slow, pytest.mark.redis]

WORKERS = 4
PER_WORKER = 150
PERIOD = 8.0
OUT_RANGE = (40, 300)


def key_limits() -> Limits:
    """All three dimensions bind: the key can take a third of the whole workload at once."""
    bodies = [b for i in range(WORKERS) for b in mixed_workload(PER_WORKER, seed=100 + i)]
    total_in = sum(analyze_input(b).total for b in bodies)
    total_out = len(bodies) * sum(OUT_RANGE) / 2
    n = len(bodies)
    return Limits(rpm=n / 3, itpm=total_in / 3, otpm=total_out / 3, period=PERIOD)


def configs(limits: Limits, url: str, redis_url: str) -> list[dict[str, Any]]:
    """The workers' configs: they start together once every one has built its client (a
    start fixed a few seconds ahead counted a loaded machine's imports as makespan)."""
    lim = {"rpm": limits.rpm, "itpm": limits.itpm, "otpm": limits.otpm, "period": limits.period}
    return [
        {
            "n": PER_WORKER,
            "seed": 100 + i,
            "limits": lim,
            "url": url,
            "redis": redis_url,
            "sync": True,
        }
        for i in range(WORKERS)
    ]


async def test_four_processes_share_one_key_without_429s(own_redis_server: RedisServer) -> None:
    limits = key_limits()
    with spawn_mock_process(limits=limits, latency=0.02, output_tokens=OUT_RANGE) as url:
        reports = await asyncio.to_thread(run_workers, configs(limits, url, own_redis_server.url))
        c = await asyncio.to_thread(remote_stats, url)
    start_at = reports[0]["start_at"]
    assert all(r.get("ok") == PER_WORKER and r["failed"] == 0 for r in reports), reports
    assert c["rate_limited"] == 0 and sum(r["rate_limited"] for r in reports) == 0
    t_min = theoretical_minimum(
        limits, c["ok"] + c["cancelled"], c["input_tokens"], c["output_tokens"]
    )
    makespan = max(r["end"] for r in reports) - start_at
    per_request = [r["commands"] / r["ok"] for r in reports]
    print(f"makespan {makespan:.2f}s, minimum {t_min:.2f}s, commands/request {per_request}")
    print(f"ends {[round(r['end'] - start_at, 2) for r in reports]}")
    assert t_min > 12.0  # the workload really binds
    assert makespan <= 1.15 * t_min, (makespan, t_min)
    # Redis commands per request, the mean over the processes and the worst process: a
    # guard against a return to a call per request, not the target (issue 18's <= 0.15 is
    # bench_shared's, at the real period). Issue #11 measured means 0.14-0.16 (worst 0.19)
    # here; 57900fc 0.17; the other consumer's learner and the lease cut (stop 25) raised it
    # to 0.18-0.205 (worst 0.25) through a phantom consumer; with that phantom mostly gone
    # (stop 26: bunched readings, autocorrelated errors) 0.178-0.200 in seven runs at load
    # average 6-13 (worst process 0.213), so 0.23 / 0.28 leave a margin for a loaded machine.
    assert sum(per_request) / len(per_request) <= 0.23, per_request
    assert max(per_request) <= 0.28, per_request


async def test_redis_killed_and_restarted_empty_mid_run(own_redis_server: RedisServer) -> None:
    limits = key_limits()
    outage = 5.0
    with spawn_mock_process(limits=limits, latency=0.02, output_tokens=OUT_RANGE) as url:
        killed_at: list[float] = []
        threads: list[threading.Thread] = []

        def chaos(start_at: float) -> None:
            time.sleep(max(0.0, start_at + 5.0 - time.time()))
            killed_at.append(time.time())
            own_redis_server.kill()
            time.sleep(outage)
            own_redis_server.start(same_port=True)  # empty: no persistence

        def on_start(start_at: float) -> None:
            threads.append(threading.Thread(target=chaos, args=(start_at,), daemon=True))
            threads[0].start()

        reports = await asyncio.to_thread(
            run_workers, configs(limits, url, own_redis_server.url), on_start=on_start
        )
        threads[0].join()
        c = await asyncio.to_thread(remote_stats, url)
    assert all(r.get("ok") == PER_WORKER and r["failed"] == 0 for r in reports), reports
    # issue 18: not one 429. Redis came back empty while every process admitted from its
    # fallback share: the bucket it lost settles (lease.lua) until each has found Redis
    # back and stopped its fallback, and only then does a probe's reading prove its level
    # (before: 0-7 x 429 at the rejoin, a reading that predated the others' fallback
    # admissions proving a fresh bucket)
    assert c["rate_limited"] == 0, c["rate_limited"]
    # every process still at work when Redis went away fell back (one that had finished its
    # share before the kill never needed Redis again)
    working = [r for r in reports if r["end"] > killed_at[0] + 0.5]
    assert working, (killed_at, reports)
    assert all(r["redis_errors"] > 0 and r["fallback_time"] > 0 for r in working), [
        {k: r[k] for k in ("end", "redis_errors", "fallback_time", "fallback_takes", "commands")}
        | {"killed_at": killed_at[0]}
        for r in reports
    ]
    # the default share is the limit divided by the processes seen: at most a quarter's
    # refill over the time each spent in fallback, plus what its lease held when it began
    assert limits.rpm is not None
    rate = limits.rpm / PERIOD / WORKERS
    for r in reports:
        allowed = rate * r["fallback_time"] + r["fallback_lease"] + 2
        assert r["fallback_takes"] <= allowed, (r, allowed)
