"""The command line: ``asyncthrift demo | run | mock | bench | serve`` (also ``python -m
asyncthrift``).

The library never installs a loop policy on its host; the command line is an application, so
it uses uvloop when it is installed (the ``fast`` extra).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from .. import __version__
from ._run import run_async

__all__ = ["main", "run_async"]


def _demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    results = run_async(
        run_demo(requests=args.requests, period=args.period, latency=args.latency, quiet=args.quiet)
    )
    return 0 if results[-1].failed == 0 else 1


def _run(args: argparse.Namespace) -> int:
    from ..bulk.cli import run_command

    return run_command(args)


def _bench(args: argparse.Namespace) -> int:
    from .loadtest import run_loadtest_command

    return run_loadtest_command(args)


def _serve(args: argparse.Namespace) -> int:
    from ..gateway.serve import serve_command

    return serve_command(args)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="asyncthrift",
        description="Anthropic Messages API calls under your rate limits: "
        "no 429s, no paying twice.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    demo = sub.add_parser(
        "demo", help="bare SDK vs asyncthrift on the built-in mock (no key needed)"
    )
    demo.add_argument("--requests", type=int, default=120, help="workload size (default 120)")
    demo.add_argument(
        "--period",
        type=float,
        default=12.0,
        help="seconds one rate-limit 'minute' lasts (default 12)",
    )
    demo.add_argument("--latency", type=float, default=0.15, help="mock base latency in seconds")
    demo.add_argument("--quiet", action="store_true", help="no progress bars")
    demo.set_defaults(func=_demo)

    run = sub.add_parser("run", help="run a JSONL file of requests through the quota (resumable)")
    try:
        from ..bulk.cli import add_arguments
    except ImportError:  # pragma: no cover - the bulk package is part of the distribution
        pass
    else:
        add_arguments(run)
    run.set_defaults(func=_run)

    # listed for --help only: main() hands `mock ...` to the mock's own command line
    sub.add_parser("mock", help="serve the mock Anthropic API on loopback (see mock --help)")

    bench = sub.add_parser(
        "bench", help="load-test an endpoint (or the built-in mock) through asyncthrift"
    )
    try:
        from .loadtest import add_arguments as add_bench_arguments
    except ImportError:  # pragma: no cover
        pass
    else:
        add_bench_arguments(bench)
    bench.set_defaults(func=_bench)

    serve = sub.add_parser(
        "serve",
        help="the Messages API as a gateway: queues instead of 429s (see serve --help)",
        description="An Anthropic-compatible gateway in front of one asyncthrift client: "
        "point any client's base URL at it. Every option is also an ASYNCTHRIFT_* variable.",
    )
    try:
        from ..gateway.serve import add_serve_arguments
    except ImportError:  # pragma: no cover - starlette/uvicorn are in the `gateway` extra
        pass
    else:
        add_serve_arguments(serve)
    serve.set_defaults(func=_serve)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args_list = list(sys.argv[1:] if argv is None else argv)
    if args_list[:1] == ["mock"]:  # the mock has its own command line; pass it everything
        from ..mock.__main__ import main as mock_main

        return mock_main(args_list[1:])
    parser = build_parser()
    args = parser.parse_args(args_list)
    try:
        code: int = args.func(args)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    return code


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
