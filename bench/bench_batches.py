"""Batches vs Messages for one bulk run, and history compression, against the mock.

``PYTHONPATH=. python bench/bench_batches.py [--lines 10000]`` prints a Markdown table:
wall time, API calls and billed cost of ``asyncthrift run`` with and without ``--batch`` on
the same input (the mock answers both identically), then the input tokens saved by
`asyncthrift.compression` on repetitive support chats.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import sys
import tempfile
import time
from pathlib import Path

import orjson

from asyncthrift import Limits, Thrift
from asyncthrift.bulk import BulkConfig, run_bulk
from asyncthrift.mock import MockServer
from asyncthrift.savings.compression import Compressor, enable_compression

MODEL = "claude-sonnet-4-6"


def make_input(path: Path, n: int) -> None:
    with path.open("wb") as f:
        for i in range(n):
            row = {
                "custom_id": f"doc-{i:06d}",
                "params": {
                    "model": MODEL,
                    "max_tokens": 64,
                    "messages": [{"role": "user", "content": f"Summarise document {i}: " * 8}],
                },
            }
            f.write(orjson.dumps(row) + b"\n")


async def bulk(n: int) -> list[str]:
    rows = [
        "| mode | lines | wall s | API calls | batches | billed $ |",
        "|---|---|---|---|---|---|",
    ]
    limits = Limits(rpm=4000, itpm=2_000_000, otpm=400_000, period=60)  # tier 4
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "in.jsonl"
        make_input(src, n)
        async with MockServer(limits=limits, latency=0.3, batch_latency=2.0) as mock:
            for mode in (None, "on"):
                c = mock.counters
                calls0 = c.requests + c.batch_api_requests
                config = BulkConfig(
                    input=src, output=Path(tmp) / f"out-{mode}.jsonl", api_key="k",
                    base_url=mock.base_url, limits=limits, quiet=True, handle_signals=False,
                    batch=mode, batch_size=5000, batch_poll=0.5,
                )  # fmt: skip
                t0 = time.perf_counter()
                report = await run_bulk(config, stderr=io.StringIO())
                wall = time.perf_counter() - t0
                assert report.exit_code == 0 and report.stats is not None
                calls = c.requests + c.batch_api_requests - calls0
                rows.append(
                    f"| {'--batch' if mode else 'messages'} | {n:,} | {wall:.1f} | {calls:,} | "
                    f"{c.batch_creates if mode else 0} | {report.stats.cost_usd:.4f} |"
                )
    return rows


def support_chat(turns: int, seed: int) -> list[dict[str, object]]:
    greeting = "Thank you for contacting Acme support, my name is Dana and I am happy to help."
    policy = (
        "Refunds are processed within five to seven business days after the returned item "
        "reaches our warehouse. We never ask for your full card number over chat. "
    )
    order = f"My order number is {seed} and it was placed in March for two blue kettles."
    messages: list[dict[str, object]] = []
    for i in range(turns):
        messages.append({"role": "user", "content": f"{order} Update {i}: any news on parcel {i}?"})
        messages.append({"role": "assistant", "content": f"{greeting} {policy}Parcel {i} moved."})
    messages.append({"role": "user", "content": "Can I change the delivery address?"})
    return messages


async def compression(chats: int) -> list[str]:
    rows = ["| turns | chats | input tokens plain | compressed | saved | answers unchanged |",
            "|---|---|---|---|---|---|"]  # fmt: skip
    for turns in (6, 20, 50):
        async with MockServer(answer_from="last_turn") as mock:
            same = True
            async with Thrift(api_key="k", base_url=mock.base_url) as plain:
                answers = [
                    (await plain.messages.create(
                        model=MODEL, max_tokens=64, messages=support_chat(turns, s)
                    )).content
                    for s in range(chats)
                ]  # fmt: skip
            before = mock.counters.input_tokens
            async with Thrift(api_key="k", base_url=mock.base_url) as client:
                enable_compression(client, Compressor(min_tokens=200))
                for s in range(chats):
                    m = await client.messages.create(
                        model=MODEL, max_tokens=64, messages=support_chat(turns, s)
                    )
                    same = same and m.content == answers[s]
            after = mock.counters.input_tokens - before
        rows.append(
            f"| {turns} | {chats} | {before:,} | {after:,} | {1 - after / before:.0%} | {same} |"
        )
    return rows


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--lines", type=int, default=10_000)
    parser.add_argument("--chats", type=int, default=20)
    args = parser.parse_args()
    for line in await bulk(args.lines):
        print(line)
    print()
    for line in await compression(args.chats):
        print(line)
    sys.stdout.flush()


if __name__ == "__main__":
    asyncio.run(main())
