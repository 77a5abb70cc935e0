"""``python -m asyncthrift.mock``: run a mock Anthropic API server until interrupted.

Prints ``listening on http://HOST:PORT`` (flushed) once it accepts connections and, with
``--ready-file``, writes the base URL to that file (atomically) for a parent process.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import logging
import os
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import get_args

from ..scheduling.limits import PRESETS, Limits, LimitsSpec
from ._config import (
    DEFAULT_OUTPUT_TOKENS,
    Abandoned,
    Faults,
    HeadersAt,
    MockConfig,
    RemainingRounding,
    ResetPrecision,
)
from ._server import MockServer

__all__ = ["build_parser", "config_from_args", "main"]

_DEFAULTS = MockConfig()


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="asyncthrift mock",
        description="Run a local mock of the Anthropic Messages API (rate limits, faults, SSE).",
    )
    p.add_argument("--host", default="127.0.0.1", help="bind address (default: loopback only)")
    p.add_argument("--port", type=int, default=0, help="port (default: any free port)")
    g = p.add_argument_group("rate limits (per api key and model class)")
    g.add_argument("--limits", help=f"a preset: {', '.join(PRESETS)}")
    g.add_argument("--rpm", type=float, help="requests per period")
    g.add_argument("--itpm", type=float, help="input tokens per period")
    g.add_argument("--otpm", type=float, help="output tokens per period")
    g.add_argument("--period", type=float, help="refill period in seconds (default 60)")
    g.add_argument("--shadow-load", type=float, default=0.0, help="share of refill eaten unseen")
    g.add_argument("--output-charge", choices=("reserve", "actual"), default="reserve")
    g.add_argument("--retry-after-ms", action="store_true", help="also send retry-after-ms")
    g.add_argument("--count-tokens-rpm", type=float)
    g.add_argument("--api-key", action="append", dest="api_keys", help="accept only these keys")
    h = p.add_argument_group("rate-limit headers (readings the API documentation leaves open)")
    h.add_argument(
        "--reset-precision",
        choices=get_args(ResetPrecision),
        default=_DEFAULTS.reset_precision,
        help="-reset in whole seconds (documented form) or milliseconds; both round up",
    )
    h.add_argument(
        "--headers-at",
        choices=get_args(HeadersAt),
        default=_DEFAULTS.headers_at,
        help="instant a non-streamed response's headers describe (streams: admission)",
    )
    h.add_argument(
        "--remaining-rounding",
        choices=get_args(RemainingRounding),
        default=_DEFAULTS.remaining_rounding,
        help="how token -remaining is rounded to a thousand",
    )
    h.add_argument(
        "--no-round-remaining",
        dest="remaining_rounding",
        action="store_const",
        const="exact",
        help="same as --remaining-rounding exact",
    )
    h.add_argument(
        "--clock-skew",
        type=float,
        default=_DEFAULTS.clock_skew,
        help="seconds the mock's wall clock (in -reset) runs ahead of the client's",
    )
    h.add_argument(
        "--abandoned",
        choices=get_args(Abandoned),
        default=_DEFAULTS.abandoned,
        help="a non-streamed answer whose client went away: finished and charged, or stopped",
    )
    a = p.add_argument_group("answers and timing")
    a.add_argument("--latency", type=float, default=0.0, help="seconds before the answer")
    a.add_argument("--latency-per-token", type=float, default=0.0, help="seconds per token")
    a.add_argument("--latency-jitter", type=float, default=0.0, help="relative, e.g. 0.1")
    a.add_argument("--output-tokens", type=int, nargs=2, metavar=("LO", "HI"))
    f = p.add_argument_group("faults (probability per request)")
    f.add_argument("--overloaded", type=float, default=0.0, help="529 overloaded_error")
    f.add_argument("--server-error", type=float, default=0.0, help="500 api_error")
    f.add_argument("--drop", type=float, default=0.0, help="close without a response")
    f.add_argument("--stream-error", type=float, default=0.0, help="error event mid-stream")
    f.add_argument(
        "--rate-limited", type=float, default=0.0, help="429 with room left (acceleration limit)"
    )
    f.add_argument("--seed", type=int, default=0)
    o = p.add_argument_group("process")
    o.add_argument("--record", action="store_true", help="keep an admission log in /_mock/stats")
    o.add_argument("--config-json", help="a full MockConfig as JSON (overrides the flags above)")
    o.add_argument("--ready-file", help="write the base URL here once listening")
    o.add_argument("--cpu", type=int, help="pin this process to one CPU (Linux)")
    o.add_argument("--no-uvloop", action="store_true", help="use asyncio's default event loop")
    o.add_argument("--quiet", action="store_true", help="do not print the listening line")
    return p


def config_from_args(args: argparse.Namespace) -> MockConfig:
    """The `MockConfig` the command-line flags describe."""
    if args.config_json:
        return dataclasses.replace(MockConfig.from_json(args.config_json), host=args.host)
    limits: LimitsSpec = None
    if args.limits:
        preset = PRESETS.get(args.limits.lower())
        if preset is None:
            raise SystemExit(f"unknown limits preset {args.limits!r}: use {', '.join(PRESETS)}")
        period = args.period or 60.0
        limits = {cls: dataclasses.replace(lim, period=period) for cls, lim in preset.items()}
    elif args.rpm or args.itpm or args.otpm:
        limits = Limits(args.rpm, args.itpm, args.otpm, args.period or 60.0)
    lo, hi = args.output_tokens or DEFAULT_OUTPUT_TOKENS
    return MockConfig(
        host=args.host,
        port=args.port,
        limits=limits,
        api_keys=frozenset(args.api_keys) if args.api_keys else None,
        output_charge=args.output_charge,
        shadow_load=args.shadow_load,
        reset_precision=args.reset_precision,
        headers_at=args.headers_at,
        remaining_rounding=args.remaining_rounding,
        clock_skew=args.clock_skew,
        abandoned=args.abandoned,
        retry_after_ms=args.retry_after_ms,
        count_tokens_rpm=args.count_tokens_rpm,
        latency=args.latency,
        latency_per_token=args.latency_per_token,
        latency_jitter=args.latency_jitter,
        faults=Faults(
            overloaded=args.overloaded,
            server_error=args.server_error,
            drop=args.drop,
            stream_error=args.stream_error,
            rate_limited=args.rate_limited,
            seed=args.seed,
        ),
        record=args.record,
        output_tokens=(lo, hi),
    )


def _write_ready(path: str, base_url: str) -> None:
    """Write atomically, so a polling parent never reads a half-written URL."""
    tmp = Path(path + ".tmp")
    tmp.write_text(base_url)
    tmp.replace(path)


async def _serve(config: MockConfig, ready_file: str | None, quiet: bool) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    async with MockServer(config) as mock:
        if not quiet:
            print(f"listening on {mock.base_url}", flush=True)
        if ready_file:
            _write_ready(ready_file, mock.base_url)
        await stop.wait()


def _loop_factory(no_uvloop: bool) -> Callable[[], asyncio.AbstractEventLoop] | None:
    if no_uvloop:
        return None
    try:
        import uvloop
    except ImportError:
        return None
    factory: Callable[[], asyncio.AbstractEventLoop] = uvloop.new_event_loop
    return factory


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``python -m asyncthrift.mock`` (and ``asyncthrift mock``)."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        config = config_from_args(args)
    except (TypeError, ValueError) as exc:
        print(f"asyncthrift mock: {exc}", file=sys.stderr)
        return 2
    if args.cpu is not None and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {args.cpu})
    with asyncio.Runner(loop_factory=_loop_factory(args.no_uvloop)) as runner:
        try:
            runner.run(_serve(config, args.ready_file, args.quiet))
        except KeyboardInterrupt:
            pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
