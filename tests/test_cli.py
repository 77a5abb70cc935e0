"""The command line: the demo (README's first command) and the subcommand wiring."""

from __future__ import annotations

import io

import pytest

from asyncthrift.cli import main
from asyncthrift.demo import run_demo


async def test_demo_shows_asyncthrift_with_no_429_and_the_bare_sdk_without() -> None:
    out = io.StringIO()
    bare, thrift = await run_demo(requests=40, period=2.0, latency=0.01, quiet=True, out=out)
    assert thrift.ok == 40 and thrift.failed == 0 and thrift.rate_limited == 0
    assert bare.rate_limited > 0  # the same workload, fired at once, hits the limits
    table = out.getvalue()
    assert "| asyncthrift | 40/40 | 0 | 0 |" in table
    assert "theoretical minimum makespan" in table


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
