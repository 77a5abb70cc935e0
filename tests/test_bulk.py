"""The bulk runner's parts (id table, reader, journal, progress) and whole in-process runs.

Runs go through `run_bulk` against an in-process `MockServer`, so they exercise the real
client and HTTP path without paying for a subprocess; the kill/restart and signal tests
that need a real process are in test_bulk_kill.py.
"""

from __future__ import annotations

import asyncio
import io
import os
import random
from pathlib import Path
from typing import Any

import orjson
import pytest

from asyncthrift import Limits
from asyncthrift.bulk import BulkConfig, BulkReport, run_bulk
from asyncthrift.bulk.cli import main as cli_main
from asyncthrift.bulk.idset import ABSENT, IdTable
from asyncthrift.bulk.journal import DONE, Journal, JournalBusy, succeeded_line
from asyncthrift.bulk.progress import Sample, format_duration, human, render
from asyncthrift.bulk.reader import BadLine, Item, count_lines, parse_line
from asyncthrift.mock import Faults, MockServer

MODEL = "claude-sonnet-4-6"

# pytest-asyncio asks for the current loop around each test; with none set, Python 3.11 makes
# one that is never closed, and its ResourceWarning fails a later test under -W error.
asyncio.set_event_loop(None)


def request(custom_id: str, text: str = "hello", **extra: Any) -> dict[str, Any]:
    return {
        "custom_id": custom_id,
        "params": {
            "model": MODEL,
            "max_tokens": 32,
            "messages": [{"role": "user", "content": f"{text} ({custom_id})"}],
        },
        **extra,
    }


def write_jsonl(path: Path, rows: list[dict[str, Any] | bytes]) -> None:
    with path.open("wb") as f:
        for row in rows:
            f.write(row if isinstance(row, bytes) else orjson.dumps(row) + b"\n")


def results(path: Path) -> dict[str, dict[str, Any]]:
    """custom_id -> result, asserting every id appears once."""
    out: dict[str, dict[str, Any]] = {}
    for raw in path.read_bytes().splitlines():
        row = orjson.loads(raw)
        assert row["custom_id"] not in out, f"{row['custom_id']} written twice"
        out[row["custom_id"]] = row["result"]
    return out


async def run(tmp_path: Path, mock: MockServer, **overrides: Any) -> tuple[BulkReport, str]:
    err = io.StringIO()
    options: dict[str, Any] = {
        "input": tmp_path / "in.jsonl",
        "output": tmp_path / "out.jsonl",
        "api_key": "test",
        "base_url": mock.base_url,
        "quiet": True,
        "handle_signals": False,
    }
    options.update(overrides)
    report = await run_bulk(BulkConfig(**options), stderr=err)
    return report, err.getvalue()


# -- the id table -------------------------------------------------------------------------


def test_id_table_matches_a_dict_through_growth() -> None:
    rng = random.Random(7)
    table = IdTable(capacity=8)
    model: dict[str, int] = {}
    for _ in range(20_000):
        key = f"id-{rng.randrange(6000)}"
        if rng.random() < 0.5:
            state = rng.randint(1, 255)
            assert table.set(key, state) == model.get(key, ABSENT)
            model[key] = state
        else:
            assert table.get(key) == model.get(key, ABSENT)
    assert len(table) == len(model)
    assert all(table.get(k) == v for k, v in model.items())
    assert table.get("never-added") == ABSENT
    assert table.nbytes <= 17 * 4 * len(model)  # load factor stays above 1/4 after growth


def test_id_table_rejects_out_of_range_states() -> None:
    with pytest.raises(ValueError):
        IdTable().set("a", 0)
    with pytest.raises(ValueError):
        IdTable().set("a", 256)


# -- the reader ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"{oops\n", "invalid JSON"),
        (b"[1, 2]\n", "not a JSON object"),
        (b'{"params": {}}\n', "missing custom_id"),
        (b'{"custom_id": 7, "params": {}}\n', "custom_id must be a non-empty string"),
        (b'{"custom_id": "", "params": {}}\n', "custom_id must be a non-empty string"),
    ],
)
def test_lines_without_a_usable_id_are_bad_lines(raw: bytes, reason: str) -> None:
    parsed = parse_line(12, raw)
    assert isinstance(parsed, BadLine)
    assert parsed.lineno == 12
    assert reason in parsed.reason


@pytest.mark.parametrize(
    ("row", "problem"),
    [
        ({"custom_id": "a"}, "missing params"),
        ({"custom_id": "a", "params": "hi"}, "params must be a JSON object"),
        ({"custom_id": "a", "params": {"max_tokens": 5, "messages": [{}]}}, "params.model"),
        (
            {"custom_id": "a", "params": {"model": MODEL, "max_tokens": 0, "messages": [{}]}},
            "params.max_tokens",
        ),
        ({"custom_id": "a", "params": {"model": MODEL, "max_tokens": 5}}, "params.messages"),
        (
            {"custom_id": "a", "params": {**request("a")["params"], "stream": True}},
            "params.stream",
        ),
        (
            {"custom_id": "a", "params": {**request("a")["params"], "priority": "batch"}},
            "params.priority is not a Messages API field",
        ),
        ({**request("a"), "priority": "urgent"}, "invalid priority"),
    ],
)
def test_invalid_params_become_items_with_a_problem(row: dict[str, Any], problem: str) -> None:
    parsed = parse_line(3, orjson.dumps(row))
    assert isinstance(parsed, Item)
    assert parsed.custom_id == "a"
    assert parsed.problem is not None and problem in parsed.problem


def test_a_good_line_keeps_params_and_priority() -> None:
    row = request("x", priority="batch")
    parsed = parse_line(1, orjson.dumps(row) + b"\n")
    assert parsed == Item(1, "x", row["params"], "batch", None)
    assert parse_line(2, b"  \n") is None


def test_count_lines_counts_a_last_line_without_newline(tmp_path: Path) -> None:
    p = tmp_path / "f"
    p.write_bytes(b"a\nb\nc")
    assert count_lines(p) == 3
    p.write_bytes(b"a\nb\n")
    assert count_lines(p) == 2
    p.write_bytes(b"")
    assert count_lines(p) == 0


# -- the journal --------------------------------------------------------------------------


def test_journal_cuts_a_torn_last_line_and_reads_back_done_ids(tmp_path: Path) -> None:
    out = tmp_path / "out.jsonl"
    good = succeeded_line("a", {"id": "msg_1"}) + succeeded_line("b", {"id": "msg_2"})
    out.write_bytes(good + b'{"custom_id": "c", "resu')
    table = IdTable()
    journal = Journal(out)
    state = journal.open(table)
    try:
        assert state.results == 2
        assert state.repaired_bytes == len(b'{"custom_id": "c", "resu')
        assert (table.get("a"), table.get("b"), table.get("c")) == (DONE, DONE, ABSENT)
        journal.append(succeeded_line("c", {"id": "msg_3"}))
    finally:
        journal.close()
    assert set(results(out)) == {"a", "b", "c"}


def test_journal_keeps_a_whole_last_line_missing_only_its_newline(tmp_path: Path) -> None:
    out = tmp_path / "out.jsonl"
    out.write_bytes(succeeded_line("a", {}) + succeeded_line("b", {}).rstrip(b"\n"))
    table = IdTable()
    journal = Journal(out)
    state = journal.open(table)
    journal.close()
    assert state.repaired_bytes == 0 and state.results == 2
    assert out.read_bytes().endswith(b"\n")


def test_journal_reports_foreign_lines_and_refuses_a_second_writer(tmp_path: Path) -> None:
    out = tmp_path / "out.jsonl"
    out.write_bytes(b"not json\n" + succeeded_line("a", {}) + b'{"custom_id": "x"}\n')
    first = Journal(out)
    state = first.open(IdTable())
    try:
        assert state.unreadable == (1, 3)
        with pytest.raises(JournalBusy, match="another run"):
            Journal(out).open(IdTable())
    finally:
        first.close()
    second = Journal(out)
    second.open(IdTable())  # the lock went with the first writer
    second.close()


# -- the progress line --------------------------------------------------------------------


def test_progress_line_shows_rates_against_limits_and_eta() -> None:
    limits = Limits(rpm=50, itpm=30_000, otpm=8_000, period=60)
    then = Sample(0.0, 100, 1000, 100, 100, 10_000, 2_000, 0, 5, limits)
    now = Sample(10.0, 200, 1000, 200, 200, 15_000, 3_000, 2, 7, limits)
    line = render(now, then, width=400)
    assert "200/1,000" in line and "20%" in line
    assert "10.0/s" in line
    assert "req 600/50 in 30.0k/30.0k out 6.0k/8.0k per min" in line
    assert "429s 2" in line and "in flight 7" in line
    assert "ETA 1:20" in line
    short = render(now, then, width=40)
    assert len(short) == 40 and short.endswith("…")


def test_progress_line_never_shows_usage_above_a_limit() -> None:
    # 100 requests in 10 s against 50 per minute: a burst from a full bucket. Measured as a
    # rate it reads 600/50; the budget credited 50 / 6 of refill meanwhile, which is what the
    # run used of its quota, and what the line shows
    limits = Limits(rpm=50, itpm=30_000, otpm=8_000, period=60)
    then = Sample(0.0, 100, 1000, 100, 100, 10_000, 2_000, 0, 5, limits, (0.0, 0.0, 0.0))
    refill = (50 / 6, 5_000.0, 8_000 / 6)
    now = Sample(10.0, 200, 1000, 200, 200, 15_000, 3_000, 2, 7, limits, refill)
    line = render(now, then, width=400)
    assert "req 50/50 in 30.0k/30.0k out 6.0k/8.0k per min" in line


def test_progress_helpers() -> None:
    assert human(999) == "999" and human(1234) == "1.2k" and human(2_500_000) == "2.5M"
    assert format_duration(65) == "1:05" and format_duration(3725) == "1:02:05"
    compressed = Limits(rpm=50, period=6)
    now = Sample(1.0, 1, None, 1, 1, 0, 0, 0, 0, compressed)
    then = Sample(0.0, 0, None, 0, 0, 0, 0, 0, 0, compressed)
    line = render(now, then, 400)
    assert "1/?" in line and "per 6s" in line and "ETA" not in line


# -- whole runs ---------------------------------------------------------------------------


async def test_a_clean_run_writes_one_result_per_id(tmp_path: Path) -> None:
    write_jsonl(tmp_path / "in.jsonl", [request(f"r{i}") for i in range(40)])
    async with MockServer(limits=Limits(rpm=600, itpm=50_000, otpm=20_000, period=2)) as mock:
        report, err = await run(tmp_path, mock, max_in_flight=8)
        assert mock.counters.requests == 40
        assert mock.counters.rate_limited == 0
    assert report.exit_code == 0 and report.succeeded == 40
    assert err == ""
    got = results(tmp_path / "out.jsonl")
    assert set(got) == {f"r{i}" for i in range(40)}
    message = got["r3"]["message"]
    assert got["r3"]["type"] == "succeeded"
    assert message["type"] == "message" and message["content"][0]["type"] == "text"
    assert message["usage"]["output_tokens"] >= 1


async def test_every_kind_of_bad_line_is_reported_and_the_run_completes(tmp_path: Path) -> None:
    rows: list[dict[str, Any] | bytes] = [
        request("ok1"),  # 1
        b"{not json\n",  # 2: invalid JSON, no result line
        b'{"params": {"model": "x"}}\n',  # 3: missing custom_id, no result line
        request("ok1", text="again"),  # 4: duplicate, skipped
        {"custom_id": "no-params"},  # 5: errored
        {"custom_id": "bad-params", "params": {"model": MODEL}},  # 6: errored
        b"\n",  # 7: blank, ignored
        {**request("bad-prio"), "priority": "soon"},  # 8: errored
        {  # 9: the server's 400 becomes an errored line
            "custom_id": "server-400",
            "params": {"model": MODEL, "max_tokens": 8, "messages": [{"role": "robot"}]},
        },
        request("ok2"),  # 10
    ]
    write_jsonl(tmp_path / "in.jsonl", rows)
    async with MockServer() as mock:
        report, err = await run(tmp_path, mock)
    for lineno, text in [
        (2, "invalid JSON"),
        (3, "missing custom_id"),
        (4, "duplicate custom_id 'ok1'"),
        (5, "missing params"),
        (6, "params.max_tokens"),
        (8, "invalid priority"),
    ]:
        assert f"in.jsonl:{lineno}: {text}" in err, (lineno, err)
    assert "in.jsonl:7:" not in err
    got = results(tmp_path / "out.jsonl")
    assert set(got) == {"ok1", "ok2", "no-params", "bad-params", "bad-prio", "server-400"}
    assert got["ok1"]["type"] == "succeeded"
    assert got["no-params"] == {
        "type": "errored",
        "error": {
            "type": "error",
            "error": {
                "type": "invalid_request_error",
                "message": got["no-params"]["error"]["error"]["message"],
            },
        },
    }
    assert got["server-400"]["type"] == "errored"
    assert got["server-400"]["error"]["type"] == "error"
    assert got["server-400"]["error"]["error"]["type"] == "invalid_request_error"
    assert got["server-400"]["error"]["request_id"]  # the API's request id, for support
    assert (report.bad_lines, report.duplicates, report.blank) == (2, 1, 1)
    assert (report.succeeded, report.errored) == (2, 4)
    assert report.exit_code == 1  # two lines have no result line
    assert "incomplete: 2 bad line(s)" in err


async def test_a_run_restarted_on_a_finished_output_sends_nothing(tmp_path: Path) -> None:
    write_jsonl(tmp_path / "in.jsonl", [request(f"r{i}") for i in range(10)])
    async with MockServer() as mock:
        first, _ = await run(tmp_path, mock)
        before = (tmp_path / "out.jsonl").read_bytes()
        second, _ = await run(tmp_path, mock)
        assert mock.counters.requests == 10
    assert first.exit_code == second.exit_code == 0
    assert second.already_done == 10 and second.succeeded == 0
    assert (tmp_path / "out.jsonl").read_bytes() == before


async def test_retryable_failures_are_not_written_and_a_rerun_retries_them(
    tmp_path: Path,
) -> None:
    write_jsonl(tmp_path / "in.jsonl", [request(f"r{i}") for i in range(6)])
    async with MockServer(faults=Faults(server_error=1.0)) as broken:
        report, err = await run(tmp_path, broken, thrift_options={"max_retries": 0})
    assert report.transient == 6 and report.exit_code == 1
    assert "in.jsonl:1: 'r0' not done (500 api_error" in err
    assert (tmp_path / "out.jsonl").read_bytes() == b""
    async with MockServer() as healthy:
        report, _ = await run(tmp_path, healthy)
    assert report.exit_code == 0 and set(results(tmp_path / "out.jsonl")) == {
        f"r{i}" for i in range(6)
    }


async def test_a_request_that_can_never_fit_the_limits_is_errored(tmp_path: Path) -> None:
    big = request("big")
    big["params"]["max_tokens"] = 5000
    write_jsonl(tmp_path / "in.jsonl", [big, request("small")])
    async with MockServer() as mock:
        report, _ = await run(tmp_path, mock, limits=Limits(rpm=100, otpm=1000, period=1))
    got = results(tmp_path / "out.jsonl")
    error = got["big"]["error"]["error"]  # the type the Batches API would write; ours in text
    assert error["type"] == "invalid_request_error"
    assert error["message"].startswith("request_too_large: ")
    assert "Lower max_tokens" in error["message"]
    assert got["small"]["type"] == "succeeded" and report.exit_code == 0


def test_cli_exit_codes_and_usage_errors(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    src, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    write_jsonl(src, [request("a"), request("b")])
    assert cli_main(["run", str(src), "-o", str(out)]) == 2
    assert "no API key" in capsys.readouterr().err
    assert cli_main([str(tmp_path / "missing.jsonl"), "-o", str(out), "--mock"]) == 2
    args = [str(src), "-o", str(out), "--mock", "--limits", "tier1", "--rpm", "5"]
    assert cli_main(args) == 2
    assert "not both" in capsys.readouterr().err
    assert cli_main([str(src), "-o", str(out), "--mock", "--rpm", "600", "--period", "1"]) == 0
    captured = capsys.readouterr().err
    assert "2 succeeded" in captured
    assert set(results(out)) == {"a", "b"}
    assert os.path.getsize(out) > 0
