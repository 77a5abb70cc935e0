"""`asyncthrift run` as a real process: SIGKILL at random points, SIGTERM and double Ctrl-C.

The mock runs in the test's own event loop so its counters can be read at the instant of
each kill; the runner is ``python -m asyncthrift.bulk`` pointed at it with --base-url.
"""

from __future__ import annotations

import asyncio
import io
import os
import random
import re
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson

from asyncthrift import Limits
from asyncthrift.bulk import BulkConfig, run_bulk
from asyncthrift.mock import MockServer

# pytest-asyncio asks for the current loop around each test; with none set, Python 3.11 makes
# one that is never closed, and its ResourceWarning fails a later test under -W error.
asyncio.set_event_loop(None)

MODEL = "claude-sonnet-4-6"
ROOT = Path(__file__).resolve().parents[1]


def make_input(path: Path, n: int) -> None:
    with path.open("wb") as f:
        for i in range(n):
            row = {
                "custom_id": f"item-{i:04d}",
                "params": {
                    "model": MODEL,
                    "max_tokens": 48,
                    "messages": [{"role": "user", "content": f"Summarise document {i} please."}],
                },
            }
            f.write(orjson.dumps(row) + b"\n")


def complete_lines(path: Path) -> int:
    return path.read_bytes().count(b"\n") if path.exists() else 0


def answers(path: Path) -> dict[str, Any]:
    """custom_id -> result with the message id dropped (ids are unique per response)."""
    out: dict[str, Any] = {}
    for raw in path.read_bytes().splitlines():
        row = orjson.loads(raw)
        assert row["custom_id"] not in out, f"{row['custom_id']} written twice"
        result = row["result"]
        assert result["type"] == "succeeded", result
        message = dict(result["message"])
        message.pop("id")
        out[row["custom_id"]] = message
    return out


async def clean_answers(src: Path, tmp_path: Path) -> dict[str, Any]:
    """The answers of one uninterrupted run (answers depend on the request alone)."""
    out = tmp_path / "clean.jsonl"
    async with MockServer() as mock:
        config = BulkConfig(
            input=src, output=out, api_key="test", base_url=mock.base_url,
            quiet=True, handle_signals=False,
        )  # fmt: skip
        report = await run_bulk(config, stderr=io.StringIO())
    assert report.exit_code == 0
    return answers(out)


async def start_runner(
    src: Path, out: Path, mock: MockServer, limits: Limits, max_in_flight: int, log: Path
) -> asyncio.subprocess.Process:
    env = {**os.environ, "ANTHROPIC_API_KEY": "test", "PYTHONPATH": str(ROOT)}
    env.pop("ANTHROPIC_BASE_URL", None)
    argv = [
        "-m", "asyncthrift.bulk", "run", str(src), "-o", str(out),
        "--base-url", mock.base_url,
        "--rpm", str(limits.rpm), "--itpm", str(limits.itpm), "--otpm", str(limits.otpm),
        "--period", str(limits.period),
        "--max-in-flight", str(max_in_flight),
    ]  # fmt: skip
    with log.open("ab") as err:
        return await asyncio.create_subprocess_exec(
            sys.executable, *argv, stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL, stderr=err, env=env, cwd=ROOT,
        )  # fmt: skip


async def until(predicate: Callable[[], bool]) -> None:
    """Poll: what we wait for happens in another process (a file growing), not an Event."""
    async with asyncio.timeout(30):
        while not predicate():  # noqa: ASYNC110
            await asyncio.sleep(0.005)


async def wait_for_lines(out: Path, proc: asyncio.subprocess.Process, target: int) -> None:
    await until(lambda: complete_lines(out) >= target or proc.returncode is not None)


async def test_sigkill_at_random_points_loses_nothing_and_redoes_nothing(tmp_path: Path) -> None:
    seed = random.randrange(1 << 30)
    rng = random.Random(seed)
    n, max_in_flight = 240, 12
    src, out, log = tmp_path / "in.jsonl", tmp_path / "out.jsonl", tmp_path / "runner.log"
    make_input(src, n)
    expected = await clean_answers(src, tmp_path)
    limits = Limits(rpm=6000, itpm=500_000, otpm=200_000, period=6)
    wasted: list[int] = []
    async with MockServer(limits=limits, latency=0.15, latency_jitter=0.5) as mock:
        c = mock.counters
        while len(wasted) < 3:
            calls0, cancelled0, lines0 = c.requests, c.cancelled, complete_lines(out)
            proc = await start_runner(src, out, mock, limits, max_in_flight, log)
            # The first kill may land anywhere, even during start-up; later ones mid-work.
            await wait_for_lines(out, proc, lines0 + rng.randint(0 if not wasted else 1, 50))
            await asyncio.sleep(rng.uniform(0, 0.2))
            assert proc.returncode is None, f"finished before kill {len(wasted) + 1}; seed {seed}"
            proc.kill()
            await proc.wait()
            await asyncio.sleep(0.3)  # the mock notices the dead connections
            new_lines = complete_lines(out) - lines0
            waste = (c.requests - calls0) - new_lines
            # Wasted calls are those in flight at the kill: at most the runner's bound, and at
            # least the answers the mock was still producing when the connection died.
            assert c.cancelled - cancelled0 <= waste <= max_in_flight, (waste, seed)
            wasted.append(waste)
        calls0, lines0 = c.requests, complete_lines(out)
        proc = await start_runner(src, out, mock, limits, max_in_flight, log)
        assert await proc.wait() == 0, log.read_text()
        assert c.requests - calls0 == complete_lines(out) - lines0  # the last run wasted none
        assert c.requests <= n + sum(wasted), (c.requests, wasted, seed)
        assert c.rate_limited == 0
    got = answers(out)
    assert got.keys() == expected.keys()
    assert got == expected


async def test_restarts_under_binding_limits_cost_at_most_one_429_each(tmp_path: Path) -> None:
    # Each run that is killed leaves the key drained; the next starts knowing nothing of it.
    # A run that assumed a full bucket would meet a 429 for most of its first burst; a cold
    # start sends one request and reads the level from its answer first.
    n, max_in_flight = 300, 200
    src, out, log = tmp_path / "in.jsonl", tmp_path / "out.jsonl", tmp_path / "runner.log"
    make_input(src, n)
    limits = Limits(rpm=60, itpm=500_000, otpm=200_000, period=3)  # 20 requests a second
    async with MockServer(limits=limits, latency=0.05) as mock:
        c = mock.counters
        for restart in range(3):
            lines0 = complete_lines(out)
            proc = await start_runner(src, out, mock, limits, max_in_flight, log)
            await wait_for_lines(out, proc, lines0 + 70)  # past the first burst, drained
            assert proc.returncode is None, f"finished before kill {restart + 1}"
            proc.kill()
            await proc.wait()
            assert c.rate_limited <= restart, (c.rate_limited, restart)
        proc = await start_runner(src, out, mock, limits, max_in_flight, log)
        assert await proc.wait() == 0, log.read_text()
        assert c.rate_limited <= 3, c.rate_limited  # at most one per restart
    assert len(answers(out)) == n


async def test_sigterm_drains_what_was_sent_and_cancels_what_was_queued(tmp_path: Path) -> None:
    n, max_in_flight = 50, 30
    src, out, log = tmp_path / "in.jsonl", tmp_path / "out.jsonl", tmp_path / "runner.log"
    make_input(src, n)
    # 10 requests/s (bursts of 12) against 1 s answers: about a dozen on the wire, the rest
    # of the 30 the runner holds wait in the client's queue.
    limits = Limits(rpm=12, itpm=100_000, otpm=100_000, period=1.2)
    async with MockServer(limits=limits, latency=1.0) as mock:
        c = mock.counters
        proc = await start_runner(src, out, mock, limits, max_in_flight, log)
        await wait_for_lines(out, proc, 5)
        proc.send_signal(signal.SIGTERM)
        assert await proc.wait() == 128 + signal.SIGTERM
        text = log.read_text()
        found = re.search(r"SIGTERM: stopping\. Finishing (\d+) request", text)
        assert found is not None, text
        assert 0 < int(found[1]) < max_in_flight  # queued ones were cancelled, not sent
        assert "Run the same command again" in text
        # Every answer the mock produced was received and written, and nothing more was
        # answered. (Answers, not calls: a 429 is answered with nothing and costs nothing.)
        assert c.cancelled == 0
        assert c.ok == complete_lines(out) < n
        proc = await start_runner(src, out, mock, limits, max_in_flight, log)
        assert await proc.wait() == 0
        assert c.ok == n  # nothing done twice
    assert len(answers(out)) == n


async def test_a_second_ctrl_c_abandons_requests_in_flight(tmp_path: Path) -> None:
    n = 40
    src, out, log = tmp_path / "in.jsonl", tmp_path / "out.jsonl", tmp_path / "runner.log"
    make_input(src, n)
    limits = Limits(rpm=6000, itpm=500_000, otpm=200_000, period=6)
    async with MockServer(limits=limits, latency=5.0) as mock:
        proc = await start_runner(src, out, mock, limits, 8, log)
        await until(lambda: mock.counters.in_flight >= 8)
        proc.send_signal(signal.SIGINT)
        await asyncio.sleep(0.3)
        proc.send_signal(signal.SIGINT)
        async with asyncio.timeout(3):  # well before the 5 s answers would arrive
            assert await proc.wait() == 128 + signal.SIGINT
        text = log.read_text()
        assert "SIGINT again: abandoning 8 request(s)" in text
        assert complete_lines(out) == 0
