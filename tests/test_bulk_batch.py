"""``asyncthrift run --batch``: round trips, half price, resume, and SIGKILL at any point.

The kill test mirrors `test_bulk_kill`: the mock runs in the test's loop (its counters are
read at the instant of each kill) and the runner is a real ``python -m asyncthrift.bulk``
process, killed with SIGKILL: once right after a create request reached the mock (whose
answer is held back, so the batch exists but its id never reaches the runner's ledger), and
twice at random points.
"""

from __future__ import annotations

import asyncio
import dataclasses
import io
import os
import random
import sys
import time
from pathlib import Path
from typing import Any

import orjson
import pytest

from asyncthrift.bulk import BulkConfig, run_bulk
from asyncthrift.bulk.batchmode import choose_batch
from asyncthrift.mock import MockServer

asyncio.set_event_loop(None)

MODEL = "claude-sonnet-4-6"
ROOT = Path(__file__).resolve().parents[1]


def make_input(path: Path, n: int, *, priority: str | None = None) -> None:
    with path.open("wb") as f:
        for i in range(n):
            row: dict[str, Any] = {
                "custom_id": f"item-{i:05d}",
                "params": {
                    "model": MODEL,
                    "max_tokens": 48,
                    "messages": [{"role": "user", "content": f"Summarise document {i} please."}],
                },
            }
            if priority is not None and i == n - 1:
                row["priority"] = priority
            f.write(orjson.dumps(row) + b"\n")


def results(path: Path) -> dict[str, Any]:
    """custom_id -> result (message id dropped); fails on an id written twice."""
    out: dict[str, Any] = {}
    for raw in path.read_bytes().splitlines():
        row = orjson.loads(raw)
        assert row["custom_id"] not in out, f"{row['custom_id']} written twice"
        result = row["result"]
        if result["type"] == "succeeded":
            result = dict(result["message"])
            result.pop("id")
        out[row["custom_id"]] = result
    return out


def lines(path: Path) -> int:
    return path.read_bytes().count(b"\n") if path.exists() else 0


async def test_batch_run_answers_like_messages_at_half_the_cost(tmp_path: Path) -> None:
    src = tmp_path / "in.jsonl"
    make_input(src, 300)
    with src.open("ab") as f:  # one line the API would refuse, one the Batches API would
        f.write(b'{"custom_id": "no-params"}\n')
        f.write(b'{"custom_id": "bad id!", "params": {"model": "claude-sonnet-4-6", '
                b'"max_tokens": 5, "messages": [{"role": "user", "content": "x"}]}}\n')  # fmt: skip
    async with MockServer(batch_latency=0.2) as mock:
        reports = {}
        for mode in (None, "on"):
            config = BulkConfig(
                input=src, output=tmp_path / f"out-{mode}.jsonl", api_key="k",
                base_url=mock.base_url, quiet=True, handle_signals=False, batch=mode,
                batch_size=128, batch_poll=0.05,
            )  # fmt: skip
            reports[mode] = await run_bulk(config, stderr=io.StringIO())
        assert mock.counters.batch_creates == 3  # 300 lines in batches of 128
        assert mock.counters.batch_requests == 300
    plain, batch = reports[None], reports["on"]
    assert batch.exit_code == plain.exit_code == 0
    assert batch.succeeded == 300 and batch.errored == 2
    got = results(tmp_path / "out-on.jsonl")
    want = results(tmp_path / "out-None.jsonl")
    items = {k for k in want if k.startswith("item-")}
    assert {k: got[k] for k in items} == {k: want[k] for k in items}  # answers unchanged
    assert got["bad id!"]["type"] == "errored" and "content" in want["bad id!"]
    assert plain.stats is not None and batch.stats is not None
    one = want["bad id!"]["usage"]  # the plain run answered this one; the batch run cannot
    from asyncthrift.core.prices import cost_usd

    extra = cost_usd(MODEL, one["input_tokens"], one["output_tokens"])
    assert batch.stats.cost_usd == pytest.approx((plain.stats.cost_usd - extra) / 2)
    assert batch.stats.batch_requests == 300


def test_the_progress_line_shows_batches_and_the_apis_request_counts() -> None:
    from types import SimpleNamespace

    from asyncthrift.bulk.batchmode import _Open
    from asyncthrift.bulk.batchprogress import status_line

    t0 = 1000.0
    ended = _Open("msgbatch_1", 64, "ended", {"processing": 0, "succeeded": 56, "errored": 8})
    polled = _Open("msgbatch_2", 50, "in_progress", {"processing": 50, "succeeded": 0}, t0 - 5)
    fresh = _Open("msgbatch_3", 30, opened=t0)  # created, not polled yet: all of it waits
    run = SimpleNamespace(
        total=200, done=40, finished=40, created=4, started=t0 - 10.0,
        open={b.id: b for b in (ended, polled, fresh)},
        ended_seconds=40.0, ended_requests=40,  # one batch of 40 ended after 40 s: 1 s each
        client=SimpleNamespace(stats=lambda: SimpleNamespace(cost_usd=1.5)),
    )  # fmt: skip
    line = status_line(run, now=t0)  # type: ignore[arg-type]
    assert line.startswith("40/200 | batches 4 created, 3 open ended 1 in_progress 2 | "), line
    assert "open batches' requests: 80 processing, 56 succeeded, 8 errored | " in line, line
    # the last to end: msgbatch_1 (resumed: from the run's start) at t0 - 10 + 64 s
    assert "$1.50 at batch price" in line and "ETA 0:54" in line, line
    run.ended_requests = 0  # before any batch of this run has ended: nothing to go by
    assert status_line(run, now=t0).endswith("ETA ?")  # type: ignore[arg-type]


def test_the_batch_eta_counts_down_while_batches_process(monkeypatch: Any) -> None:
    """Nothing finishes while batches process (their results come when they end): the ETA
    must count down with the clock, not climb as a pace of lines per second falls."""
    from types import SimpleNamespace

    from asyncthrift.bulk import batchprogress
    from asyncthrift.bulk.batchmode import _Open

    clock = [500.0]
    monkeypatch.setattr(batchprogress.time, "monotonic", lambda: clock[0])
    run = SimpleNamespace(
        total=300, done=100, finished=100, created=3, started=400.0,
        open={"b2": _Open("b2", 100, opened=450.0), "b3": _Open("b3", 100, opened=450.0)},
        ended_seconds=100.0, ended_requests=100,  # b1: 100 requests in 100 s
        client=SimpleNamespace(stats=lambda: SimpleNamespace(cost_usd=0.0)),
    )  # fmt: skip
    shown = []
    for _ in range(6):
        line = batchprogress.status_line(run)  # type: ignore[arg-type]
        shown.append(line.rsplit("ETA ", 1)[1])
        clock[0] += 5.0
    assert shown == ["0:50", "0:45", "0:40", "0:35", "0:30", "0:25"], shown


def test_the_final_batch_progress_line_is_drawn_once() -> None:
    from types import SimpleNamespace

    from asyncthrift.bulk.batchprogress import BatchProgress

    run = SimpleNamespace(
        total=10, done=4, finished=4, created=1, started=time.monotonic(), open={},
        ended_seconds=1.0, ended_requests=4, sample=lambda: None,
        client=SimpleNamespace(stats=lambda: SimpleNamespace(cost_usd=0.0)),
    )  # fmt: skip
    out = io.StringIO()
    progress = BatchProgress(run, out, tty=False, interval=1.0)  # type: ignore[arg-type]
    progress.draw()
    progress.draw()  # still under way: every tick is drawn (a log shows it is alive)
    run.done = 10
    for _ in range(3):  # the run stopping: results in, the poller and feeder winding down
        progress.draw()
    drawn = out.getvalue().splitlines()
    assert len(drawn) == 3 and drawn[0] == drawn[1], drawn
    assert drawn[-1].startswith("10/10 | ")


async def test_a_batch_run_draws_its_progress_from_the_polls(tmp_path: Path) -> None:
    src = tmp_path / "in.jsonl"
    make_input(src, 120)
    stderr = io.StringIO()
    async with MockServer(batch_latency=0.1, batch_seconds_per_request=0.01) as mock:
        config = BulkConfig(
            input=src, output=tmp_path / "out.jsonl", api_key="k", base_url=mock.base_url,
            handle_signals=False, batch="on", batch_size=64, batch_poll=0.05,
            batch_poll_max=0.05, progress_interval=0.05,
        )  # fmt: skip
        report = await run_bulk(config, stderr=stderr)
    assert report.exit_code == 0 and report.succeeded == 120
    shown = [line for line in stderr.getvalue().splitlines() if "batches " in line]
    assert any(
        line.startswith("0/120 | batches 2 created, 2 open in_progress 2 | ")
        and "open batches' requests: 120 processing |" in line
        for line in shown
    ), shown
    assert shown[-1].startswith("120/120 | batches 2 created, 0 open | "), shown


async def test_rerun_submits_nothing_and_retry_errored_resubmits(tmp_path: Path) -> None:
    src, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    make_input(src, 40)
    async with MockServer(
        batch_latency=0.0, batch_seconds_per_request=0.02, batch_expiry=0.3
    ) as mock:
        config = BulkConfig(
            input=src, output=out, api_key="k", base_url=mock.base_url, quiet=True,
            handle_signals=False, batch="on", batch_poll=0.05,
        )  # fmt: skip
        first = await run_bulk(config, stderr=io.StringIO())
        expired = first.errored
        assert first.succeeded + expired == 40 and 20 < expired < 30  # the rest expired
        again = await run_bulk(config, stderr=io.StringIO())
        assert again.already_done == 40 and mock.counters.batch_requests == 40
        mock.config = dataclasses.replace(mock.config, batch_expiry=86400.0)
        retry = BulkConfig(**{**_fields(config), "retry_errored": True})
        third = await run_bulk(retry, stderr=io.StringIO())
        assert third.retried == expired and third.succeeded == expired
        assert mock.counters.batch_requests == 40 + expired
    final: dict[str, str] = {}
    for raw in out.read_bytes().splitlines():
        row = orjson.loads(raw)
        final[row["custom_id"]] = row["result"]["type"]
    assert set(final.values()) == {"succeeded"} and len(final) == 40


def _fields(obj: Any) -> dict[str, Any]:
    return {name: getattr(obj, name) for name in obj.__dataclass_fields__}


def test_batch_auto_needs_a_large_input_and_no_urgent_line(tmp_path: Path) -> None:
    src = tmp_path / "in.jsonl"
    make_input(src, 50)
    base = BulkConfig(input=src, output=tmp_path / "o", batch="auto", batch_threshold=40)
    assert choose_batch(base)
    assert not choose_batch(BulkConfig(**{**_fields(base), "batch_threshold": 51}))
    make_input(src, 50, priority="interactive")
    assert not choose_batch(base)


async def start_runner(src: Path, out: Path, base_url: str, log: Path) -> Any:
    env = {**os.environ, "ANTHROPIC_API_KEY": "test", "PYTHONPATH": str(ROOT)}
    env.pop("ANTHROPIC_BASE_URL", None)
    argv = [
        "-m", "asyncthrift.bulk", "run", str(src), "-o", str(out), "--base-url", base_url,
        "--batch", "--batch-size", "1000", "--poll", "0.05", "--batch-grace", "1", "-q",
    ]  # fmt: skip
    with log.open("ab") as err:
        return await asyncio.create_subprocess_exec(
            sys.executable, *argv, stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL, stderr=err, env=env, cwd=ROOT,
        )  # fmt: skip


@pytest.mark.slow
async def test_sigkill_anywhere_never_submits_a_line_twice(tmp_path: Path) -> None:
    seed = random.randrange(1 << 30)
    rng = random.Random(seed)
    n = 10_000
    src, out, log = tmp_path / "in.jsonl", tmp_path / "out.jsonl", tmp_path / "runner.log"
    make_input(src, n)
    async with MockServer(
        batch_latency=0.3, batch_seconds_per_request=0.0002, batch_create_latency=0.2
    ) as mock:
        c = mock.counters
        for kill in ("after-create", "random", "random"):
            creates0, lines0 = c.batch_creates, lines(out)
            proc = await start_runner(src, out, mock.base_url, log)
            async with asyncio.timeout(30):
                if kill == "after-create":
                    # The create is in the mock (the batch exists); its answer is held back.
                    while c.batch_creates == creates0 + rng.randint(0, 1):  # noqa: ASYNC110
                        await asyncio.sleep(0.001)
                    while c.batch_creates <= creates0:  # noqa: ASYNC110
                        await asyncio.sleep(0.001)
                else:
                    target = lines0 + rng.randint(0, 2500)
                    while lines(out) < target and proc.returncode is None:  # noqa: ASYNC110
                        await asyncio.sleep(0.005)
                    await asyncio.sleep(rng.uniform(0, 0.3))
            assert proc.returncode is None, f"finished before the {kill} kill; seed {seed}"
            proc.kill()
            await proc.wait()
        proc = await start_runner(src, out, mock.base_url, log)
        async with asyncio.timeout(60):
            assert await proc.wait() == 0, log.read_text()
        assert c.batch_requests == n, (c.batch_requests, seed)  # none submitted twice
        assert c.rate_limited == 0 and c.requests == 0  # never the Messages endpoint
    got = results(out)
    assert len(got) == n  # none lost, none written twice (results() checks)
    assert all("content" in v for v in got.values())
    assert "found batch" in log.read_text()  # the orphan was found by listing
