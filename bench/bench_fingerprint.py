"""Fingerprint throughput and cache-hit latency.

    python bench/bench_fingerprint.py            # fingerprint table + cache-hit latency
    python bench/bench_fingerprint.py --no-hit   # fingerprint table only

1. Request keys: asyncthrift's `fingerprint` (canonical orjson + xxh3-128) against the seed
   article's ``hashlib.md5(json.dumps(request, sort_keys=True).encode())`` on realistic
   requests of about 1 KB (a FAQ question), 10 KB (a support chat with tool use) and 100 KB
   (a cached policy document plus chat; and, as the worst case for canonicalisation, a long
   history with every assistant turn given as content blocks), in English and Chinese. Both
   are timed in the same run, interleaved, with `timeit` (15 runs, median).
2. Cache-hit latency through the whole ``Thrift.messages.create`` path (fingerprint, lookup,
   decode to an ``anthropic.types.Message``, stats), for ``cache="memory"`` and for Redis on
   loopback (a throwaway redis-server is started if one is installed). Targets: memory
   p50 < 50 µs, Redis p50 < 500 µs.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import hashlib
import json
import platform
import statistics
import sys
import time
import timeit
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from asyncthrift.stores.cache.keys import fingerprint  # noqa: E402

EN = (
    "Our refund policy allows returns within thirty days of delivery for unused items in "
    "their original packaging; digital goods can be refunded if not yet downloaded. "
)
ZH = "退款政策：自收货之日起三十天内，未使用且包装完好的商品可以退货；数字商品未下载前可退款。"


TOOLS = [
    {
        "name": "lookup_order",
        "description": "Find an order by its id and return status and items.",
        "input_schema": {
            "type": "object",
            "properties": {"order_id": {"type": "string", "description": "e.g. A-1234"}},
            "required": ["order_id"],
        },
    }
]


def _size(req: dict[str, Any]) -> int:
    return len(json.dumps(req, ensure_ascii=False).encode())


def faq_request(target: int) -> dict[str, Any]:
    """A single-turn FAQ question: string system prompt and content, no tools."""
    req: dict[str, Any] = {
        "model": "claude-haiku-4-5",
        "max_tokens": 512,
        "temperature": 0.0,
        "system": "You are a support assistant for an online shop. Answer briefly.",
        "messages": [{"role": "user", "content": ""}],
        "metadata": {"user_id": "u-42"},
    }
    text = ""
    while _size(req) < target:
        text += EN if len(text) % 2 else ZH
        req["messages"][0]["content"] = "Question: " + text
    return req


def chat_request(target: int, *, document: int = 0, sdk_blocks: bool = False) -> dict[str, Any]:
    """A support conversation with tool use, grown to about `target` bytes of JSON.

    `document`: bytes of policy text in the system prompt, marked for prompt caching (as a
    long cacheable prefix would be). `sdk_blocks`: every assistant turn given as a list of
    content blocks, as code that appends `response.content` to the history produces.
    """
    req: dict[str, Any] = {
        "model": "claude-sonnet-4-6",
        "max_tokens": 1024,
        "temperature": 0.2,
        "system": "You are a support assistant for an online shop.",
        "tools": TOOLS,
        "messages": [],
        "metadata": {"user_id": "u-42"},
    }
    if document:
        doc = (EN + ZH) * (document // len((EN + ZH).encode()) + 1)
        req["system"] = [
            {"type": "text", "text": req["system"]},
            {"type": "text", "text": doc, "cache_control": {"type": "ephemeral"}},
        ]
    msgs: list[dict[str, Any]] = req["messages"]
    i = 0
    while _size(req) < target:
        text = (EN if i % 3 else ZH) * (1 + i % 4)
        if i % 2 == 0:
            msgs.append({"role": "user", "content": f"Question {i}: {text}"})
        elif i % 6 == 1:
            msgs.append(
                {
                    "role": "assistant",
                    "content": [
                        {"type": "text", "text": f"Let me check. {text}"},
                        {
                            "type": "tool_use",
                            "id": f"toolu_{i:04d}",
                            "name": "lookup_order",
                            "input": {"order_id": f"A-{1000 + i}"},
                        },
                    ],
                }
            )
            msgs.append(
                {
                    "role": "user",
                    "content": [
                        {
                            "type": "tool_result",
                            "tool_use_id": f"toolu_{i:04d}",
                            "content": f"Order A-{1000 + i}: delivered, 2 items.",
                        }
                    ],
                }
            )
        elif sdk_blocks:
            msgs.append({"role": "assistant", "content": [{"type": "text", "text": text}]})
        else:
            msgs.append({"role": "assistant", "content": text})
        i += 1
    if msgs[-1]["role"] != "user":
        msgs.append({"role": "user", "content": "Thanks. Anything else?"})
    return req


CASES: list[tuple[str, dict[str, Any]]] = [
    ("1 KB FAQ question", faq_request(1_000)),
    ("10 KB chat with tool use", chat_request(10_000)),
    ("100 KB cached document + chat", chat_request(100_000, document=80_000)),
    ("100 KB long history, SDK blocks (worst case)", chat_request(100_000, sdk_blocks=True)),
]


def seed_key(req: dict[str, Any]) -> str:
    """The seed article's cache key."""
    return hashlib.md5(json.dumps(req, sort_keys=True).encode()).hexdigest()


def per_call_us(
    fns: dict[str, Callable[[], object]], *, repeat: int = 15, seconds: float = 0.05
) -> dict[str, float]:
    """Median time per call in µs of each function, over `repeat` interleaved timeit runs.

    Interleaving (seed, ours, seed, ours, ...) exposes both to the same background load, so
    the ratio holds even on a busy machine.
    """
    timers = {name: timeit.Timer(fn) for name, fn in fns.items()}
    numbers = {}
    for name, timer in timers.items():
        number, took = timer.autorange()
        numbers[name] = max(1, int(number * seconds / took))
    runs: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeat):
        for name, timer in timers.items():
            runs[name].append(timer.timeit(numbers[name]) / numbers[name] * 1e6)
    return {name: statistics.median(r) for name, r in runs.items()}


def bench_fingerprint() -> None:
    print("## Request fingerprint: µs per call (median of 15 interleaved timeit runs)\n")
    print("| request | JSON size | seed md5(json.dumps) | asyncthrift fingerprint | speed-up |")
    print("|---|---:|---:|---:|---:|")
    for label, req in CASES:
        t = per_call_us(
            {"seed": functools.partial(seed_key, req), "ours": functools.partial(fingerprint, req)}
        )
        seed, ours = t["seed"], t["ours"]
        n = _size(req)
        print(f"| {label} | {n:,} B | {seed:,.1f} | {ours:,.1f} | {seed / ours:.1f}x |")
    print()


async def _hit_latency(cache: Any, n: int) -> tuple[float, float, float]:
    from asyncthrift import Thrift
    from asyncthrift.mock import MockServer

    async with (
        MockServer() as mock,
        Thrift(api_key="bench", base_url=mock.base_url, cache=cache) as client,
    ):
        req = {
            "model": "claude-sonnet-4-6",
            "max_tokens": 1024,
            "messages": [{"role": "user", "content": "What is your refund policy? " * 8}],
        }
        await client.messages.create(**req)  # the one upstream call
        samples = []
        clock = time.perf_counter
        for _ in range(n):
            t0 = clock()
            await client.messages.create(**req)
            samples.append(clock() - t0)
        assert mock.counters.requests == 1, "the hits went upstream"
    samples.sort()
    us = [s * 1e6 for s in samples]
    return us[len(us) // 2], us[int(len(us) * 0.99)], statistics.fmean(us)


def bench_hits(n: int) -> None:
    try:
        import asyncthrift.client  # noqa: F401
    except ImportError as exc:
        print(f"(cache-hit latency skipped: asyncthrift.client not importable: {exc})")
        return
    print(f"## Cache hit through `Thrift.messages.create` (µs, {n:,} sequential hits)\n")
    print("| cache | p50 | p99 | mean | target p50 |")
    print("|---|---:|---:|---:|---:|")
    p50, p99, mean = asyncio.run(_hit_latency("memory", n))
    print(f"| memory | {p50:.1f} | {p99:.1f} | {mean:.1f} | < 50 |")
    from tests.redis_server import RedisServer, find_redis_server

    if find_redis_server() is None:
        print("| redis (loopback) | - | - | - | (redis-server not installed) |")
    else:
        with RedisServer() as server:
            p50, p99, mean = asyncio.run(_hit_latency(server.url, n))
        print(f"| redis (loopback) | {p50:.1f} | {p99:.1f} | {mean:.1f} | < 500 |")
    print()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--no-hit", action="store_true", help="skip the cache-hit latency part")
    ap.add_argument("--hits", type=int, default=5000, help="hits to time per cache (5000)")
    args = ap.parse_args()
    print(f"Python {platform.python_version()} on {platform.machine()}, {platform.system()}\n")
    bench_fingerprint()
    if not args.no_hit:
        bench_hits(args.hits)


if __name__ == "__main__":
    main()
