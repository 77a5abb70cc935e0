"""What the gateway's per-client quotas and telemetry cost a request (issue 20, points 6-7).

    python bench/bench_quotas.py [--requests 3000]

Per request: `ClientQuotas.admit` then `QuotaGrant.settle`, for a client with an rpm, itpm
and otpm quota and a daily spend cap, counted in this process and through Redis (a
redis-server started on loopback, as the tests do). The baseline, measured in the same run,
is what the library's shared spend cap alone already costs (`RedisSpendLedger.hold` plus
its background settle): the quota's one script per admission checks three limits and the cap
together for about the same one round trip. Also: the telemetry's three recording calls per
request, and one ``/metrics`` rendering with 100 clients in 3 lanes.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from asyncthrift.gateway.clients import ClientQuota, GatewayClient
from asyncthrift.gateway.quotas import ClientQuotas, QuotaGrant
from asyncthrift.gateway.telemetry import GatewayTelemetry
from asyncthrift.stores.spend_redis import RedisSpendLedger
from tests.redis_server import RedisServer, find_redis_server

BIG = 10**12
ALICE = GatewayClient(
    "alice",
    quota=ClientQuota(rpm=BIG, itpm=BIG, otpm=BIG),
    spend_cap_usd=1e9,
    spend_period="day",
)


async def timed(n: int, once: Callable[[], Awaitable[None]]) -> tuple[float, float]:
    """p50 and p99 in microseconds of `n` calls of `once` (after 100 to warm up)."""
    for _ in range(100):
        await once()
    took = []
    for _ in range(n):
        t0 = time.perf_counter()
        await once()
        took.append(time.perf_counter() - t0)
    took.sort()
    return statistics.median(took) * 1e6, took[int(n * 0.99)] * 1e6


def quota_round(q: ClientQuotas) -> Callable[[], Awaitable[None]]:
    async def once() -> None:
        grant = await q.admit(ALICE, input_tokens=900, max_tokens=512, worst_usd=0.01)
        assert isinstance(grant, QuotaGrant)
        await grant.settle(input_tokens=880, output_tokens=80, cost_usd=0.004)

    return once


def ledger_round(ledger: RedisSpendLedger) -> Callable[[], Awaitable[None]]:
    async def once() -> None:
        hold = await ledger.hold(0.01)
        ledger.settle(hold, 0.004)

    return once


def telemetry_cost(n: int) -> tuple[float, float]:
    """Microseconds per request of the three recording calls; ms per /metrics rendering."""
    t = GatewayTelemetry([f"client-{i}" for i in range(100)])
    t0 = time.perf_counter()
    for i in range(n):
        name, lane = f"client-{i % 100}", ("interactive", "default", "batch")[i % 3]
        t.queued(name, lane)
        t.left_queue(name, lane, waited=0.003, admitted=True)
        t.finished(name, lane, status=200, cost_usd=0.004, input_tokens=880, output_tokens=80)
    per_request = (time.perf_counter() - t0) / n * 1e6
    t0 = time.perf_counter()
    body = t.prometheus()
    assert body.startswith(b"# HELP")
    return per_request, (time.perf_counter() - t0) * 1e3


async def main(n: int) -> None:
    local = ClientQuotas([ALICE])
    lp50, lp99 = await timed(n * 5, quota_round(local))
    exe = find_redis_server()
    if exe is None:
        raise SystemExit("needs redis-server on PATH")
    with RedisServer(exe) as server:
        shared = ClientQuotas([ALICE], shared=server.url, prefix="bench-quotas")
        ledger = RedisSpendLedger(server.url, 1e9, period="day", namespace="bench-ledger")
        bp50, bp99 = await timed(n, ledger_round(ledger))
        rp50, rp99 = await timed(n, quota_round(shared))
        await shared.aclose()
        await ledger.aclose()
    per_request, render_ms = telemetry_cost(n * 10)
    print(f"local quota admit+settle      p50 {lp50:7.1f} us   p99 {lp99:7.1f} us")
    print(f"redis quota admit+settle      p50 {rp50:7.1f} us   p99 {rp99:7.1f} us")
    print(f"baseline RedisSpendLedger     p50 {bp50:7.1f} us   p99 {bp99:7.1f} us")
    print(f"redis quota / baseline        p50 {rp50 / bp50:5.2f}x   p99 {rp99 / bp99:5.2f}x")
    print(f"telemetry per request (3 calls)   {per_request:6.2f} us")
    print(f"/metrics, 100 clients x 3 lanes   {render_ms:6.2f} ms")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=3000)
    asyncio.run(main(parser.parse_args().requests))
