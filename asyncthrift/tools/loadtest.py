"""`asyncthrift bench`: a load test through asyncthrift, against an endpoint or the built-in mock.

Arrivals are Poisson at `--rate` requests per second (or all at once with ``--rate 0``), the
mixed English/Chinese workload of the demo, and the client's own stats at the end: 429s,
retries, queue wait and end-to-end latency percentiles, tokens and cost.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import sys
import time
from contextlib import AsyncExitStack
from typing import Any

import anthropic

from ..client.thrift import Thrift
from ..errors import ThriftError
from ..scheduling.limits import PRESETS, Limits
from .progress_line import ProgressLine
from .workload import DEFAULT_MODEL, mixed_workload

__all__ = ["add_arguments", "run_loadtest", "run_loadtest_command"]


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--base-url",
        default=None,
        help="endpoint to load (default ANTHROPIC_BASE_URL, then the official API); "
        "needs ANTHROPIC_API_KEY",
    )
    p.add_argument(
        "--mock", action="store_true", help="serve from the built-in mock instead (no key needed)"
    )
    p.add_argument(
        "--requests", type=int, default=500, help="how many requests to send (default 500)"
    )
    p.add_argument(
        "--rate", type=float, default=0.0, help="Poisson arrivals per second; 0 = all at once"
    )
    p.add_argument(
        "--limits",
        default=None,
        help="the client's limits as a preset: tier1..tier4 (its Sonnet row); "
        "or give --rpm/--itpm/--otpm",
    )
    p.add_argument(
        "--rpm", type=float, default=None, help="requests per period (default: unlimited)"
    )
    p.add_argument(
        "--itpm", type=float, default=None, help="input tokens per period (default: unlimited)"
    )
    p.add_argument(
        "--otpm", type=float, default=None, help="output tokens per period (default: unlimited)"
    )
    p.add_argument(
        "--period",
        type=float,
        default=60.0,
        help="seconds per rate-limit window (default 60, the API's; shorter compresses time, "
        "and --mock uses the same)",
    )
    p.add_argument(
        "--model", default=DEFAULT_MODEL, help=f"model of every request (default {DEFAULT_MODEL})"
    )
    p.add_argument(
        "--latency",
        type=float,
        default=0.3,
        help="the mock's base answer latency in seconds (with --mock; default 0.3)",
    )
    p.add_argument(
        "--seed", type=int, default=7, help="seed of the workload and arrivals (default 7)"
    )
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def _limits(args: argparse.Namespace) -> Limits | None:
    if args.limits:
        if args.limits not in PRESETS:
            raise SystemExit(f"--limits must be one of {', '.join(PRESETS)}, got {args.limits!r}")
        base = PRESETS[args.limits]["sonnet"]
        return Limits(base.rpm, base.itpm, base.otpm, period=args.period)
    if args.rpm or args.itpm or args.otpm:
        return Limits(args.rpm, args.itpm, args.otpm, period=args.period)
    return None


async def run_loadtest(args: argparse.Namespace) -> dict[str, Any]:
    limits = _limits(args)
    bodies = mixed_workload(args.requests, seed=args.seed, model=args.model)
    rng = random.Random(args.seed)
    async with AsyncExitStack() as stack:
        base_url = args.base_url
        api_key = os.environ.get("ANTHROPIC_API_KEY")
        if args.mock:
            from ..mock import MockServer

            mock = await stack.enter_async_context(MockServer(limits=limits, latency=args.latency))
            base_url, api_key = mock.base_url, "mock"
        client = await stack.enter_async_context(
            Thrift(api_key=api_key, base_url=base_url, limits=limits)
        )
        bar = ProgressLine(
            len(bodies),
            label="bench",
            extra=lambda: f"429s {client.stats().rate_limited}",
            enabled=not args.quiet,
        )
        done = failed = 0

        async def one(body: dict[str, Any]) -> None:
            nonlocal done, failed
            try:
                await client.messages.create(**body)
            except (anthropic.APIError, ThriftError):
                failed += 1
            done += 1
            bar.update(done)

        started = time.monotonic()
        tasks = []
        for body in bodies:
            tasks.append(asyncio.create_task(one(body)))
            if args.rate > 0:
                await asyncio.sleep(rng.expovariate(args.rate))
        await asyncio.gather(*tasks)
        bar.close()
        elapsed = time.monotonic() - started
        s = client.stats()
    return {"elapsed": elapsed, "failed": failed, **s.as_dict()}


def run_loadtest_command(args: argparse.Namespace) -> int:
    from ._run import run_async

    if not args.mock and not os.environ.get("ANTHROPIC_API_KEY"):
        print(
            "no key: pass --mock, or set ANTHROPIC_API_KEY (and --base-url for another endpoint)",
            file=sys.stderr,
        )
        return 2
    r = run_async(run_loadtest(args))
    print(
        f"{r['requests']} requests in {r['elapsed']:.1f}s: {r['succeeded']} ok, "
        f"{r['failed']} failed, "
        f"{r['rate_limited']} 429s, {r['retries']} retries\n"
        f"queue wait p50 {r['queue_wait_p50'] * 1000:.0f} ms "
        f"p99 {r['queue_wait_p99'] * 1000:.0f} ms; "
        f"latency p50 {r['latency_p50'] * 1000:.0f} ms p90 {r['latency_p90'] * 1000:.0f} ms "
        f"p99 {r['latency_p99'] * 1000:.0f} ms\n"
        f"tokens in {r['input_tokens']:,} out {r['output_tokens']:,}; cost ${r['cost_usd']:.4f}"
    )
    return 0 if r["failed"] == 0 else 1
