"""`asyncthrift demo`: the bare SDK against asyncthrift, on the built-in mock, side by side.

Starts the mock in-process with tier-1 limits (time-compressed so the demo takes seconds, not
minutes), sends the same mixed English/Chinese workload through (a) the bare SDK fired all at
once, as most code does, and (b) asyncthrift, and prints a table: successes, 429s received,
retries, makespan, makespan over the theoretical minimum, and latency percentiles.
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TextIO

import anthropic

from ..client.thrift import Thrift
from ..core.stats import percentile
from ..scheduling.limits import PRESETS, Limits
from .progress_line import ProgressLine
from .workload import mixed_workload

__all__ = ["MAKESPAN_LEGEND", "DemoResult", "run_demo", "theoretical_minimum"]

#: What the table's ``makespan / min`` column means, printed under it.
MAKESPAN_LEGEND = (
    "makespan / min: the time to finish every request over that theoretical minimum. "
    "1.00x is the best any client can do under these limits; below 1x, requests were "
    "not served (failed fast on 429s) rather than served faster."
)


@dataclass
class DemoResult:
    name: str
    total: int
    ok: int = 0
    failed: int = 0
    rate_limited: int = 0
    retries: int = 0
    makespan: float = 0.0
    latencies: list[float] = field(default_factory=list)


def theoretical_minimum(
    limits: Limits, requests: float, input_tokens: float, output_tokens: float
) -> float:
    """Max over dimensions of (demand beyond the initial burst) / refill rate, in seconds."""
    best = 0.0
    for cap, demand in (
        (limits.rpm, requests),
        (limits.itpm, input_tokens),
        (limits.otpm, output_tokens),
    ):
        if cap is not None and demand > cap:
            best = max(best, (demand - cap) / (cap / limits.period))
    return best


async def _drive(
    name: str,
    bodies: list[dict[str, Any]],
    call: Callable[[dict[str, Any]], Awaitable[Any]],
    counters: Callable[[], tuple[int, int]],
    quiet: bool,
) -> DemoResult:
    """Fire every body at once through `call`; measure outcomes and latencies."""
    result = DemoResult(name, len(bodies))
    before_429, before_calls = counters()
    bar = ProgressLine(
        len(bodies),
        label=f"{name:>12}",
        extra=lambda: f"ok {result.ok} failed {result.failed} 429s {counters()[0] - before_429}",
        enabled=not quiet,
    )
    started = time.monotonic()

    async def one(body: dict[str, Any]) -> None:
        t0 = time.monotonic()
        try:
            await call(body)
        except (TimeoutError, anthropic.APIError):
            result.failed += 1
        else:
            result.ok += 1
            result.latencies.append(time.monotonic() - t0)
        bar.update(result.ok + result.failed)

    await asyncio.gather(*(one(b) for b in bodies))
    result.makespan = time.monotonic() - started
    bar.close()
    after_429, after_calls = counters()
    result.rate_limited = after_429 - before_429
    result.retries = max(0, (after_calls - before_calls) - len(bodies))
    return result


def _table(results: list[DemoResult], t_min: float) -> str:
    head = (
        "| client | ok | failed | 429s | retries | makespan | makespan / min | p50 | p99 |\n"
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|"
    )
    rows = [head]
    for r in results:
        lats = sorted(r.latencies)
        ratio = f"{r.makespan / t_min:.2f}x" if t_min > 0 else "n/a"
        rows.append(
            f"| {r.name} | {r.ok}/{r.total} | {r.failed} | {r.rate_limited} | {r.retries} | "
            f"{r.makespan:.1f}s | {ratio} | {percentile(lats, 50):.2f}s | "
            f"{percentile(lats, 99):.2f}s |"
        )
    return "\n".join(rows)


async def run_demo(
    *,
    requests: int = 120,
    period: float = 12.0,
    latency: float = 0.15,
    quiet: bool = False,
    out: TextIO | None = None,
) -> list[DemoResult]:
    """Run the side-by-side comparison and print the table; returns both results."""
    from ..mock import MockServer

    out = out or sys.stdout
    tier1 = PRESETS["tier1"]["sonnet"]
    limits = Limits(tier1.rpm, tier1.itpm, tier1.otpm, period=period)
    bodies = mixed_workload(requests)
    print(
        f"asyncthrift demo: {requests} mixed English/Chinese requests against the built-in mock\n"
        f"limits: tier-1 Sonnet ({tier1.rpm:g} RPM, {tier1.itpm:,.0f} ITPM, "
        f"{tier1.otpm:,.0f} OTPM),"
        f" time compressed: one 'minute' lasts {period:g}s\n",
        file=out,
    )
    async with MockServer(limits=limits, latency=latency, latency_per_token=0.001) as mock:

        def counters() -> tuple[int, int]:
            c = mock.counters
            return c.rate_limited, c.requests

        bare = anthropic.AsyncAnthropic(api_key="demo", base_url=mock.base_url)  # SDK defaults
        try:
            a = await _drive(
                "bare SDK", bodies, lambda b: bare.messages.create(**b), counters, quiet
            )
        finally:
            await bare.close()
        mock.reset()
        async with Thrift(api_key="demo", base_url=mock.base_url, limits=limits) as client:
            b = await _drive(
                "asyncthrift", bodies, lambda x: client.messages.create(**x), counters, quiet
            )
            s = client.stats()
    t_min = theoretical_minimum(
        limits, requests, s.input_tokens + s.cache_creation_input_tokens, s.output_tokens
    )
    print("\n" + _table([a, b], t_min), file=out)
    print(
        f"\ntheoretical minimum makespan: {t_min:.1f}s (demand beyond the burst / refill rate, "
        f"slowest of the three limits); asyncthrift used {s.input_tokens:,} input and "
        f"{s.output_tokens:,} output tokens, ${s.cost_usd:.4f} at list price.\n"
        f"{MAKESPAN_LEGEND}",
        file=out,
    )
    return [a, b]
