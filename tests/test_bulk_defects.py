"""Bulk runner defects of issues #13 and #14: a refused key, an unusable output, an output
that is the input under another name, and ``--retry-errored``.

CLI runs go through ``cli.main`` in a worker thread (it runs its own event loop) against a
`MockServer` in the test's loop, so the mock's counters show what was sent.
"""

from __future__ import annotations

import asyncio
import io
import os
import random
import sys
from pathlib import Path
from typing import Any

import orjson
import pytest

from asyncthrift import Limits
from asyncthrift.bulk import BulkConfig, run_bulk
from asyncthrift.bulk.cli import main as cli_main
from asyncthrift.bulk.idset import IdTable
from asyncthrift.bulk.journal import DONE, ERRORED, Journal, OutputUnusable
from asyncthrift.mock import MockServer

asyncio.set_event_loop(None)

MODEL = "claude-sonnet-4-6"
ROOT = Path(__file__).resolve().parents[1]


def request(custom_id: str, max_tokens: int = 32) -> dict[str, Any]:
    return {
        "custom_id": custom_id,
        "params": {
            "model": MODEL,
            "max_tokens": max_tokens,
            "messages": [{"role": "user", "content": f"hello ({custom_id})"}],
        },
    }


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> None:
    path.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in rows))


def rows(path: Path) -> list[dict[str, Any]]:
    return [orjson.loads(raw) for raw in path.read_bytes().splitlines()]


def final_results(path: Path) -> dict[str, dict[str, Any]]:
    """custom_id -> its result: a succeeded line stands, otherwise the last line counts."""
    out: dict[str, dict[str, Any]] = {}
    for row in rows(path):
        if out.get(row["custom_id"], {}).get("type") != "succeeded":
            out[row["custom_id"]] = row["result"]
    return out


async def cli(
    argv: list[str], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, key: str
) -> tuple[int, str]:
    monkeypatch.setenv("ANTHROPIC_API_KEY", key)
    monkeypatch.delenv("ANTHROPIC_BASE_URL", raising=False)
    code = await asyncio.to_thread(cli_main, ["run", *argv, "-q"])
    return code, capsys.readouterr().err


# -- a wrong API key ------------------------------------------------------------------------


async def test_a_wrong_key_stops_the_run_writes_nothing_and_a_rerun_answers_every_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    src, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    write_jsonl(src, [request(f"r{i}") for i in range(40)])
    async with MockServer(api_keys={"right-key"}) as mock:
        args = [str(src), "-o", str(out), "--base-url", mock.base_url, "--max-in-flight", "4"]
        code, err = await cli(args, capsys, monkeypatch, "wrong-key")
        assert code == 2, err
        assert out.read_bytes() == b""  # no result line for any refused request
        assert "refused the key" in err and "$ANTHROPIC_API_KEY" in err
        assert "401 authentication_error" in err
        assert mock.counters.requests <= 4  # stopped at the first refusal's batch
        code, err = await cli(args, capsys, monkeypatch, "right-key")
        assert code == 0, err
    got = final_results(out)
    assert len(got) == 40 and all(r["type"] == "succeeded" for r in got.values())


async def test_a_refused_key_from_python_reports_exit_2(tmp_path: Path) -> None:
    src, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    write_jsonl(src, [request(f"r{i}") for i in range(10)])
    async with MockServer(api_keys={"right-key"}) as mock:
        config = BulkConfig(
            input=src, output=out, api_key="wrong", base_url=mock.base_url, quiet=True,
            handle_signals=False, max_in_flight=1,
        )  # fmt: skip
        err = io.StringIO()
        report = await run_bulk(config, stderr=err)
        assert mock.counters.requests == 1
    assert report.exit_code == 2 and report.errored == 0 and report.succeeded == 0
    assert report.fatal is not None and "refused the key" in report.fatal
    assert "stopped: the API refused the key" in err.getvalue()
    assert out.read_bytes() == b""


# -- an unusable output ---------------------------------------------------------------------


async def test_output_in_a_missing_directory_is_refused_before_anything_is_sent(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    src, out = tmp_path / "in.jsonl", tmp_path / "no-such-dir" / "out.jsonl"
    write_jsonl(src, [request("a")])
    async with MockServer() as mock:
        code, err = await cli(
            [str(src), "-o", str(out), "--base-url", mock.base_url], capsys, monkeypatch, "k"
        )
        assert code == 2
        assert "does not exist" in err and "Traceback" not in err
        config = BulkConfig(
            input=src, output=out, api_key="k", base_url=mock.base_url, quiet=True,
            handle_signals=False,
        )  # fmt: skip
        with pytest.raises(OutputUnusable, match="does not exist"):
            await run_bulk(config, stderr=io.StringIO())
        assert mock.counters.requests == 0


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes read-only files anyway")
async def test_a_read_only_output_is_refused_before_anything_is_sent(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    src, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    write_jsonl(src, [request("a")])
    out.write_bytes(b"")
    out.chmod(0o444)
    async with MockServer() as mock:
        code, err = await cli(
            [str(src), "-o", str(out), "--base-url", mock.base_url], capsys, monkeypatch, "k"
        )
        assert code == 2 and "read-only" in err and "Traceback" not in err
        config = BulkConfig(
            input=src, output=out, api_key="k", base_url=mock.base_url, quiet=True,
            handle_signals=False,
        )  # fmt: skip
        with pytest.raises(OutputUnusable, match="permission denied"):
            await run_bulk(config, stderr=io.StringIO())
        assert mock.counters.requests == 0


async def test_an_output_the_journal_cannot_open_is_a_clear_error(tmp_path: Path) -> None:
    """Past the command line's checks (the Python API): the journal's own refusal."""
    src, out = tmp_path / "in.jsonl", tmp_path / "a-directory"
    write_jsonl(src, [request("a")])
    out.mkdir()
    async with MockServer() as mock:
        config = BulkConfig(
            input=src, output=out, api_key="k", base_url=mock.base_url, quiet=True,
            handle_signals=False,
        )  # fmt: skip
        with pytest.raises(OutputUnusable, match="cannot write the output"):
            await run_bulk(config, stderr=io.StringIO())
        assert mock.counters.requests == 0


# -- the output is the input ----------------------------------------------------------------


@pytest.mark.parametrize("how", ["hard link", "symlink"])
async def test_an_output_that_is_the_input_under_another_name_is_refused(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    how: str,
) -> None:
    src, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    write_jsonl(src, [request("a"), request("b")])
    (os.link if how == "hard link" else os.symlink)(src, out)
    before = src.read_bytes()
    async with MockServer() as mock:
        code, err = await cli(
            [str(src), "-o", str(out), "--base-url", mock.base_url], capsys, monkeypatch, "k"
        )
        assert code == 2 and "is the input file" in err
        config = BulkConfig(
            input=src, output=out, api_key="k", base_url=mock.base_url, quiet=True,
            handle_signals=False,
        )  # fmt: skip
        with pytest.raises(OutputUnusable, match="is the input file"):
            await run_bulk(config, stderr=io.StringIO())
        assert mock.counters.requests == 0
    assert src.read_bytes() == before


def test_the_journal_refuses_its_source_even_without_a_torn_tail_repair(tmp_path: Path) -> None:
    src = tmp_path / "in.jsonl"
    src.write_bytes(b'{"custom_id": "a"}\n{"custom_id": "torn')  # repair would cut this
    os.link(src, tmp_path / "out.jsonl")
    with pytest.raises(OutputUnusable):
        Journal(tmp_path / "out.jsonl").open(IdTable(), source=src)
    assert src.read_bytes().endswith(b"torn")


# -- --retry-errored ------------------------------------------------------------------------


def result_line(custom_id: str, kind: str) -> bytes:
    result: dict[str, Any] = {"type": kind}
    if kind == "succeeded":
        result["message"] = {"id": "m"}
    elif kind == "errored":
        result["error"] = {
            "type": "error",
            "error": {"type": "invalid_request_error", "message": "x"},
        }
    return orjson.dumps({"custom_id": custom_id, "result": result}) + b"\n"


def test_journal_states_a_succeeded_line_stands_else_the_last_line_counts(
    tmp_path: Path,
) -> None:
    out = tmp_path / "out.jsonl"
    out.write_bytes(
        result_line("a", "errored")
        + result_line("b", "succeeded")
        + result_line("a", "succeeded")  # a retry that succeeded
        + result_line("c", "errored")
        + result_line("c", "errored")  # a retry that errored again
        + result_line("d", "succeeded")
        + result_line("d", "errored")  # never written by a run; a success still stands
        + result_line("e", "expired")
        + result_line("f", "canceled")
        + b'{"custom_id": "g", "result": {"type": "succ'  # torn by a kill
    )
    table = IdTable()
    journal = Journal(out)
    state = journal.open(table)
    journal.close()
    assert {k: table.get(k) for k in "abcdefg"} == {
        "a": DONE, "b": DONE, "c": ERRORED, "d": DONE, "e": ERRORED, "f": ERRORED, "g": 0,
    }  # fmt: skip
    assert state.errored == 3 and state.results == 9 and state.repaired_bytes > 0


async def test_retry_errored_resends_fixed_lines_and_a_plain_rerun_hints_at_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    src, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    broken = [request(f"bad{i}", max_tokens=10**6) for i in range(3)]  # errored: too large
    write_jsonl(src, [request(f"ok{i}") for i in range(5)] + broken)
    async with MockServer() as mock:
        args = [str(src), "-o", str(out), "--base-url", mock.base_url]
        code, err = await cli(args, capsys, monkeypatch, "k")
        assert code == 0
        assert "3 line(s) have an errored result" in err and "--retry-errored" in err
        sent = mock.counters.requests  # the errored ones may be refused before the API

        # the user fixes the lines and runs again, as before: nothing is sent, but a hint
        write_jsonl(src, [request(f"ok{i}") for i in range(5)] + [
            request(f"bad{i}") for i in range(3)
        ])  # fmt: skip
        code, err = await cli(args, capsys, monkeypatch, "k")
        assert code == 0 and mock.counters.requests == sent
        assert "3 line(s) have an errored result" in err and "--retry-errored" in err

        code, err = await cli([*args, "--retry-errored"], capsys, monkeypatch, "k")
        assert code == 0, err
        assert mock.counters.requests == sent + 3  # only the three errored lines went again
        assert "--retry-errored to send" not in err

        code, _ = await cli([*args, "--retry-errored"], capsys, monkeypatch, "k")
        assert code == 0 and mock.counters.requests == sent + 3  # nothing errored is left
    got = final_results(out)
    assert len(got) == 8 and all(r["type"] == "succeeded" for r in got.values())
    lines = rows(out)
    assert len(lines) == 11  # the errored lines stay, superseded by the appended results
    assert [r["custom_id"] for r in lines[-3:]] == ["bad0", "bad1", "bad2"]


async def test_retry_errored_killed_at_random_points_neither_redoes_nor_drops(
    tmp_path: Path,
) -> None:
    """SIGKILL a real ``--retry-errored`` process mid-run, repeatedly, then let it finish:
    every id ends with exactly one succeeded line and no succeeded request was sent twice."""
    seed = random.randrange(1 << 30)
    rng = random.Random(seed)
    n = 120
    src, out, log = tmp_path / "in.jsonl", tmp_path / "out.jsonl", tmp_path / "runner.log"
    write_jsonl(src, [request(f"item-{i:03d}", max_tokens=10**6) for i in range(n)])
    limits = Limits(rpm=6000, itpm=500_000, otpm=10**9, period=6)
    async with MockServer(limits=limits, latency=0.1, latency_jitter=0.5) as mock:
        config = BulkConfig(
            input=src, output=out, api_key="test", base_url=mock.base_url, quiet=True,
            handle_signals=False,
        )  # fmt: skip
        report = await run_bulk(config, stderr=io.StringIO())
        assert report.errored == n
        write_jsonl(src, [request(f"item-{i:03d}") for i in range(n)])  # fixed
        env = {**os.environ, "ANTHROPIC_API_KEY": "test", "PYTHONPATH": str(ROOT)}
        env.pop("ANTHROPIC_BASE_URL", None)
        argv = [
            "-m", "asyncthrift.bulk", "run", str(src), "-o", str(out), "--retry-errored",
            "--base-url", mock.base_url, "--max-in-flight", "8", "--rpm", "6000",
            "--itpm", "500000", "--otpm", "1000000000", "--period", "6",
        ]  # fmt: skip

        async def start() -> asyncio.subprocess.Process:
            with log.open("ab") as err:
                return await asyncio.create_subprocess_exec(
                    sys.executable, *argv, stdin=asyncio.subprocess.DEVNULL,
                    stdout=asyncio.subprocess.DEVNULL, stderr=err, env=env, cwd=ROOT,
                )  # fmt: skip

        def succeeded() -> int:
            return sum(r["result"]["type"] == "succeeded" for r in rows(out))

        for _ in range(3):
            target = succeeded() + rng.randint(1, 30)
            proc = await start()
            async with asyncio.timeout(30):
                while succeeded() < target and proc.returncode is None:  # noqa: ASYNC110
                    await asyncio.sleep(0.005)
            await asyncio.sleep(rng.uniform(0, 0.1))
            assert proc.returncode is None, f"finished before the kill; seed {seed}"
            proc.kill()
            await proc.wait()
            await asyncio.sleep(0.2)
        proc = await start()
        assert await proc.wait() == 0, log.read_text()
    per_id: dict[str, int] = {}
    for row in rows(out):
        if row["result"]["type"] == "succeeded":
            per_id[row["custom_id"]] = per_id.get(row["custom_id"], 0) + 1
    assert len(per_id) == n, seed
    assert set(per_id.values()) == {1}, seed  # no succeeded request written twice
    assert all(r["type"] == "succeeded" for r in final_results(out).values())


async def test_a_permission_error_opening_the_output_is_a_clear_error_even_as_root(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The read-only case where the tests run as root: the refusal is simulated."""
    from asyncthrift.bulk import cli as cli_module
    from asyncthrift.bulk import journal as journal_module

    src, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    write_jsonl(src, [request("a")])
    out.write_bytes(b"")
    real_access, real_open = os.access, os.open

    def no_write(path: Any, mode: int, **kw: Any) -> bool:
        return False if Path(path) == out and mode & os.W_OK else real_access(path, mode, **kw)

    def refuse(path: Any, flags: int, *args: Any, **kw: Any) -> int:
        if Path(path) == out:
            raise PermissionError(13, "Permission denied", str(path))
        return real_open(path, flags, *args, **kw)

    async with MockServer() as mock:
        monkeypatch.setattr(cli_module.os, "access", no_write)
        code, err = await cli(
            [str(src), "-o", str(out), "--base-url", mock.base_url], capsys, monkeypatch, "k"
        )
        assert code == 2 and "read-only" in err and "Traceback" not in err
        monkeypatch.setattr(journal_module.os, "open", refuse)
        config = BulkConfig(
            input=src, output=out, api_key="k", base_url=mock.base_url, quiet=True,
            handle_signals=False,
        )  # fmt: skip
        with pytest.raises(OutputUnusable, match="permission denied"):
            await run_bulk(config, stderr=io.StringIO())
        assert mock.counters.requests == 0
