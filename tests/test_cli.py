"""The command line: the demo (README's first command) and the subcommand wiring."""

from __future__ import annotations

import argparse
import io
import subprocess
import sys

import pytest

import asyncthrift
from asyncthrift import Stats
from asyncthrift.tools.cli import build_parser, main
from asyncthrift.tools.demo import MAKESPAN_LEGEND, run_demo


async def test_demo_shows_asyncthrift_with_no_429_and_the_bare_sdk_without() -> None:
    out = io.StringIO()
    bare, thrift = await run_demo(requests=40, period=2.0, latency=0.01, quiet=True, out=out)
    assert thrift.ok == 40 and thrift.failed == 0 and thrift.rate_limited == 0
    assert bare.rate_limited > 0  # the same workload, fired at once, hits the limits
    table = out.getvalue()
    assert "| asyncthrift | 40/40 | 0 | 0 |" in table
    assert "theoretical minimum makespan" in table
    assert MAKESPAN_LEGEND in table  # the makespan / min column explained (#21)
    assert "1.00x is the best any client can do" in table


@pytest.mark.parametrize("sub", ["demo", "run", "mock", "bench"])
def test_every_subcommand_has_help(sub: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main([sub, "--help"])
    assert info.value.code == 0
    assert "usage: asyncthrift" in capsys.readouterr().out


def test_bench_without_a_key_says_what_to_do(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    assert main(["bench"]) == 2
    assert "--mock" in capsys.readouterr().err


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["--version"])
    assert info.value.code == 0
    assert capsys.readouterr().out.strip() == f"asyncthrift {asyncthrift.__version__}"


def test_python_dash_m_prints_the_version() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "asyncthrift", "--version"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"asyncthrift {asyncthrift.__version__}"


def test_every_bench_option_has_help() -> None:
    parser = build_parser()
    bench = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices[
        "bench"
    ]
    options = [a for a in bench._actions if a.option_strings and a.dest != "help"]
    assert options
    missing = [a.option_strings[0] for a in options if not a.help]
    assert missing == []


def test_str_of_stats_is_a_short_summary_and_repr_the_full_dump() -> None:
    s = Stats(
        requests=12,
        succeeded=11,
        failed=1,
        upstream_calls=9,
        retries=2,
        rate_limited=1,
        cost_usd=0.01234,
        upstream_calls_saved=3,
        dollars_saved=0.005,
        latency_p50=0.25,
        latency_p99=1.5,
    )
    text = str(s)
    assert text == (
        "12 requests (11 ok, 1 failed) in 9 upstream calls, 1 429s, 2 retries; "
        "cost $0.0123, saved $0.0050 (3 calls not made); latency p50 0.25s p99 1.50s"
    )
    assert "\n" not in text and len(text) < 200
    assert repr(s).startswith("Stats(requests=12,")
    assert "max_tokens_dollars_lost=" in repr(s)
    assert str(Stats()) == (
        "0 requests (0 ok) in 0 upstream calls, 0 429s, 0 retries; cost $0.0000; "
        "latency p50 0.00s p99 0.00s"
    )
