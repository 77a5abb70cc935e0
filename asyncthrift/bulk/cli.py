"""``asyncthrift run IN.jsonl -o OUT.jsonl``: the command line of the bulk runner.

`add_arguments` and `run_command` are what the top-level ``asyncthrift`` command wires into
its ``run`` subcommand; ``python -m asyncthrift.bulk`` runs the same thing on its own.
Every problem with the arguments is reported before any request is sent, with exit status 2.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, TypeVar

from ..scheduling.limits import PRESETS, Limits, LimitsSpec
from .config import BulkConfig
from .journal import JournalBusy, OutputUnusable
from .report import EXIT_USAGE, BulkReport
from .runner import run_bulk

__all__ = ["add_arguments", "build_config", "main", "run_command"]

_T = TypeVar("_T")

DEFAULT_API = "https://api.anthropic.com"


class UsageError(Exception):
    """A bad combination of arguments; the message says what to change."""


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a number >= 1, got {value}")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"expected a number > 0, got {text}")
    return value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``run`` options to `parser` (the lead's ``asyncthrift run`` subparser)."""
    parser.description = (
        "Run every request of a JSONL file (Message Batches request shape) under the key's "
        "rate limits, writing one Batches-shaped result line per custom_id. Safe to kill at "
        "any moment: run the same command again to resume."
    )
    parser.add_argument("input", type=Path, metavar="IN.jsonl", help="requests, one per line")
    parser.add_argument(
        "-o",
        "--output",
        type=Path,
        required=True,
        metavar="OUT.jsonl",
        help="results, appended; ids already there are skipped",
    )
    parser.add_argument(
        "--retry-errored",
        action="store_true",
        help="send again the lines whose recorded result is errored (or expired/canceled), "
        "e.g. after fixing them; the new result is appended and supersedes the old one",
    )
    batch = parser.add_argument_group(
        "Message Batches", "half price for work that can wait (results within 24 h)"
    )
    batch.add_argument(
        "--batch",
        nargs="?",
        const="on",
        choices=("on", "auto"),
        default=None,
        help="send the lines through the Message Batches API; 'auto': only when the input "
        "has at least --batch-threshold lines and none has priority interactive",
    )
    batch.add_argument(
        "--batch-size",
        type=_positive_int,
        default=100_000,
        metavar="N",
        help="requests per batch (default and API maximum 100000; 256 MB also caps it)",
    )
    batch.add_argument(
        "--batch-threshold",
        type=_positive_int,
        default=1000,
        metavar="N",
        help="lines from which --batch auto uses batches (default 1000)",
    )
    batch.add_argument(
        "--poll",
        type=_positive_float,
        default=5.0,
        metavar="SECONDS",
        help="first interval between polls of open batches (grows to 60 s while none ends)",
    )
    batch.add_argument(
        "--batch-grace",
        type=_positive_float,
        default=30.0,
        metavar="SECONDS",
        help="how long a batch whose create was cut off may take to appear in the list",
    )
    parser.add_argument(
        "--base-url",
        default=None,
        metavar="URL",
        help=f"API endpoint (default: $ANTHROPIC_BASE_URL, then {DEFAULT_API})",
    )
    parser.add_argument(
        "--api-key-env",
        default="ANTHROPIC_API_KEY",
        metavar="NAME",
        help="environment variable holding the API key (default: ANTHROPIC_API_KEY)",
    )
    limits = parser.add_argument_group(
        "limits", "the key's rate limits: a tier preset, or your own numbers per period"
    )
    limits.add_argument("--limits", choices=sorted(PRESETS), default=None, help="a tier preset")
    limits.add_argument("--rpm", type=_positive_float, metavar="N", help="requests per period")
    limits.add_argument("--itpm", type=_positive_float, metavar="N", help="input tokens per period")
    limits.add_argument(
        "--otpm", type=_positive_float, metavar="N", help="output tokens per period"
    )
    limits.add_argument(
        "--period",
        type=_positive_float,
        default=60.0,
        metavar="SECONDS",
        help="the limits' refill period (60 for the real API; shorter compresses time "
        "against the mock)",
    )
    parser.add_argument(
        "--cache",
        default=None,
        metavar="memory|redis://...",
        help="answer cache: identical requests are answered once",
    )
    parser.add_argument(
        "--max-in-flight",
        type=_positive_int,
        default=256,
        metavar="N",
        help="requests queued or on the wire at once (default 256); bounds memory",
    )
    parser.add_argument(
        "--mock",
        action="store_true",
        help="serve the run from the built-in mock server (no key, no cost)",
    )
    parser.add_argument(
        "-q",
        "--quiet",
        action="store_true",
        help="no progress line and no summary unless something is left undone",
    )


def _limits(args: argparse.Namespace) -> LimitsSpec:
    own = (args.rpm, args.itpm, args.otpm)
    period: float = args.period
    if args.limits is not None:
        if any(v is not None for v in own):
            raise UsageError("give either --limits TIER or --rpm/--itpm/--otpm, not both")
        if period == 60.0:
            return str(args.limits)
        return {
            cls: Limits(lim.rpm, lim.itpm, lim.otpm, period)
            for cls, lim in PRESETS[args.limits].items()
        }
    if all(v is None for v in own):
        # rates learnt from the headers; a period other than 60 s says the server's "minute"
        # is compressed (a mock), so the learnt limits refill at the right pace
        return None if period == 60.0 else Limits(period=period)
    return Limits(args.rpm, args.itpm, args.otpm, period)


def _check_output(source: Path, output: Path) -> None:
    """Refuse an output the run could not write, or the input itself, before anything runs.

    (The journal checks again when it opens the file: this is for the early, clear message.)
    """
    if output.exists():
        if os.path.samefile(output, source):
            raise UsageError(
                f"the output {output} is the input file {source} (the same file under another "
                "name or a hard link): choose another -o"
            )
        if not output.is_file():
            raise UsageError(f"output {output} is not a regular file")
        if not os.access(output, os.W_OK):
            raise UsageError(f"cannot write the output {output}: it is read-only")
        return
    parent = output.parent
    if not parent.is_dir():
        raise UsageError(
            f"cannot write the output {output}: its directory {parent} does not exist "
            "(create it or choose another -o)"
        )
    if not os.access(parent, os.W_OK | os.X_OK):
        raise UsageError(
            f"cannot create the output {output}: the directory {parent} is not writable"
        )


def build_config(args: argparse.Namespace) -> BulkConfig:
    """A `BulkConfig` from parsed arguments; raises `UsageError` with what to change."""
    source: Path = args.input
    output: Path = args.output
    if not source.is_file():
        raise UsageError(f"input {source} is not a readable file")
    _check_output(source, output)
    api_key = os.environ.get(args.api_key_env) or None
    if api_key is None and not args.mock:
        raise UsageError(
            f"no API key: set ${args.api_key_env}, choose another variable with "
            "--api-key-env NAME, or try the run against the built-in mock with --mock"
        )
    limits = _limits(args)
    if limits is None and not args.mock:
        print(
            "asyncthrift run: no limits given (--limits TIER or --rpm/--itpm/--otpm): they "
            "are learnt from the first responses' headers, so the first burst may meet 429s",
            file=sys.stderr,
        )
    return BulkConfig(
        input=source,
        output=output,
        api_key=api_key,
        base_url=args.base_url,
        limits=limits,
        cache=args.cache,
        max_in_flight=args.max_in_flight,
        mock=args.mock,
        quiet=args.quiet,
        retry_errored=args.retry_errored,
        batch=args.batch,
        batch_size=args.batch_size,
        batch_threshold=args.batch_threshold,
        batch_poll=args.poll,
        batch_poll_max=max(60.0, args.poll),
        batch_grace=args.batch_grace,
        api_key_env=None if args.mock and api_key is None else args.api_key_env,
    )


def _run(coro: Coroutine[Any, Any, _T]) -> _T:
    """Run on uvloop when it is installed (the ``fast`` extra), else on asyncio's loop."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coro)
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(coro)


def run_command(args: argparse.Namespace) -> int:
    """Execute ``asyncthrift run`` for parsed `args`; returns the process exit status.

    0 when every input line has a result line (errored ones included); 1 when some have none
    (bad lines, retryable failures, a fatal error); 130/143 after Ctrl-C/SIGTERM (rerun to
    finish); 2 for unusable arguments or output (nothing sent) and for a key the API refuses
    (401/403: nothing written for it).
    """
    try:
        config = build_config(args)
        report: BulkReport = _run(run_bulk(config))
    except (UsageError, JournalBusy, OutputUnusable, ValueError) as exc:
        print(f"asyncthrift run: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    return report.exit_code


def main(argv: list[str] | None = None) -> int:
    """``python -m asyncthrift.bulk [run] IN.jsonl -o OUT.jsonl ...``."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["run"]:
        argv = argv[1:]
    parser = argparse.ArgumentParser(prog="asyncthrift run")
    add_arguments(parser)
    return run_command(parser.parse_args(argv))
