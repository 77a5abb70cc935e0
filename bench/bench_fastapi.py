"""The FastAPI chat example under load, through a binding output-token limit.

    python bench/bench_fastapi.py                      # 200 browsers for 20 s (the issue's run)
    python bench/bench_fastapi.py --clients 30 --seconds 2

Three processes on loopback, so that no two share an event loop: the mock API (binding
OTPM, streamed answers paced per token), ``examples/fastapi_chat.py`` under uvicorn (one
shared `Thrift`, SSE relay, mapped backpressure), and this load generator — `clients`
browsers, each posting a chat and reading the SSE answer to its end, back to back.

Checked: every status is 200 or a mapped backpressure answer (503/504 with Retry-After),
every 200 streams a complete answer (ends with ``message_stop``, non-empty text). Measured:
the latency the web integration adds, per request, as the time to the response head seen
by the browser minus ``x-asyncthrift-open-ms`` (what admission and the upstream's first
event took inside the handler; the app measures it and sends it in a header). That
difference is uvicorn, FastAPI routing and validation, the SSE response start and the
loopback HTTP hops. Writes ``bench/results/fastapi.md``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import socket
import statistics
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import orjson

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from asyncthrift import Limits  # noqa: E402
from asyncthrift.core.stats import percentile  # noqa: E402
from asyncthrift.mock import remote_stats, spawn_mock_process  # noqa: E402

_SERVER = """\
import sys
sys.path[:0] = [sys.argv[1], sys.argv[1] + "/examples"]
import uvicorn, fastapi_chat
uvicorn.run(fastapi_chat.create_app(deadline=float(sys.argv[3])), host="127.0.0.1",
            port=int(sys.argv[2]), log_level="warning", access_log=False, loop="auto",
            http="auto")
"""


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of process `pid` (Linux /proc), 0.0 where unavailable."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return 0.0


@dataclass
class Results:
    statuses: Counter[int] = field(default_factory=Counter)
    retry_after_missing: int = 0
    transport_errors: Counter[str] = field(default_factory=Counter)
    incomplete: int = 0
    added_ms: list[float] = field(default_factory=list)
    open_ms: list[float] = field(default_factory=list)
    head_ms: list[float] = field(default_factory=list)
    total_ms: list[float] = field(default_factory=list)
    output_tokens: int = 0
    app_cpu: float = 0.0
    generator_busy: float = 0.0
    baseline_added_ms: list[float] = field(default_factory=list)
    sdk_cpu: tuple[float, float] = (0.0, 0.0)
    load: tuple[float, float] = (0.0, 0.0)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


async def wait_ready(url: str, within: float = 60.0) -> None:
    deadline = time.monotonic() + within
    async with aiohttp.ClientSession() as http:
        while True:
            try:
                async with http.get(url + "/") as r:
                    if r.status == 200:
                        return
            except aiohttp.ClientConnectionError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError("the FastAPI example did not start")
            await asyncio.sleep(0.1)


async def browser(
    http: aiohttp.ClientSession, url: str, i: int, until: float, res: Results
) -> None:
    n = 0
    while time.monotonic() < until:
        n += 1
        body = {"message": f"browser {i} asks question {n} about token buckets", "max_tokens": 128}
        t0 = time.perf_counter()
        try:
            await one_chat(http, url, body, t0, res)
        except aiohttp.ClientError as exc:
            res.transport_errors[type(exc).__name__] += 1


async def one_chat(
    http: aiohttp.ClientSession, url: str, body: dict[str, Any], t0: float, res: Results
) -> None:
    """Post one chat, read its SSE answer to the end, record what the browser saw."""
    async with http.post(url + "/chat", json=body) as r:
        head = time.perf_counter()
        res.statuses[r.status] += 1
        if r.status != 200:
            await r.read()
            if r.status in (503, 504) and "retry-after" not in r.headers:
                res.retry_after_missing += 1
            return
        opened = float(r.headers["x-asyncthrift-open-ms"])
        last, text, out = "", 0, 0
        async for line in r.content:
            if not line.startswith(b"data: "):
                continue
            event = orjson.loads(line[6:])
            last = event["type"]
            if last == "content_block_delta":
                text += len(event["delta"].get("text", ""))
            elif last == "message_delta":
                out = event["usage"]["output_tokens"]
        end = time.perf_counter()
    if last != "message_stop" or not text:
        res.incomplete += 1
        return
    res.output_tokens += out
    head_ms = (head - t0) * 1000.0
    res.head_ms.append(head_ms)
    res.open_ms.append(opened)
    res.added_ms.append(head_ms - opened)
    res.total_ms.append((end - t0) * 1000.0)


async def stream_cpu(url: str, n: int = 100, rounds: int = 3) -> tuple[float, float]:
    """CPU ms per streamed answer read in full: the bare SDK, and through `Thrift`.

    Same process, same mock, 10 at a time, after a warm-up, in alternating rounds (median):
    what the streaming layer itself costs, apart from the web stack and the machine's load.
    """
    import anthropic

    from asyncthrift import Thrift

    kw = {"model": "claude-sonnet-4-6", "max_tokens": 128}

    async def drive(create: Any, tag: str) -> float:
        async def one(i: int) -> None:
            msgs = [{"role": "user", "content": f"{tag} {i}"}]
            async for _ in await create(**kw, messages=msgs, stream=True):
                pass

        t0 = time.process_time()
        for k in range(n // 10):
            await asyncio.gather(*(one(k * 10 + i) for i in range(10)))
        return (time.process_time() - t0) * 1000.0 / n

    sdk = anthropic.AsyncAnthropic(api_key="bench", base_url=url, max_retries=0)
    bare: list[float] = []
    ours: list[float] = []
    async with Thrift(api_key="bench", base_url=url, dedupe=False) as client:
        await drive(sdk.messages.create, "warm bare")
        await drive(client.messages.create, "warm thrift")
        for r in range(rounds):
            bare.append(await drive(sdk.messages.create, f"bare {r}"))
            ours.append(await drive(client.messages.create, f"thrift {r}"))
    await sdk.close()
    return statistics.median(bare), statistics.median(ours)


def pct(values: list[float]) -> str:
    s = sorted(values)
    return " / ".join(f"{percentile(s, q):.1f}" for q in (50, 90, 99))


async def run(args: argparse.Namespace) -> tuple[Results, dict[str, float], float]:
    limits = Limits(rpm=100_000, itpm=10_000_000, otpm=args.otpm, period=args.period)
    mock_cfg = {
        "limits": limits,
        "latency": args.latency,
        "latency_per_token": args.per_token,
        "output_tokens": (16, 128),
    }
    with spawn_mock_process(output_tokens=(16, 128)) as plain_url:
        sdk_cpu = await stream_cpu(plain_url)
    with spawn_mock_process(**mock_cfg) as mock_url:
        port = free_port()
        env = {
            **os.environ,
            "ANTHROPIC_API_KEY": "bench",
            "ANTHROPIC_BASE_URL": mock_url,
            "THRIFT_LIMITS_RPM": str(limits.rpm),
            "THRIFT_LIMITS_ITPM": str(limits.itpm),
            "THRIFT_LIMITS_OTPM": str(limits.otpm),
            "THRIFT_LIMITS_PERIOD": str(args.period),
            "THRIFT_MAX_QUEUE": str(args.max_queue),
        }
        server = subprocess.Popen(  # noqa: ASYNC220 - started once, before any load
            [sys.executable, "-c", _SERVER, str(ROOT), str(port), str(args.deadline)],
            env=env,
            stdin=subprocess.DEVNULL,
        )
        try:
            url = f"http://127.0.0.1:{port}"
            await wait_ready(url)
            res = Results(sdk_cpu=sdk_cpu)
            connector = aiohttp.TCPConnector(limit=args.clients + 8)
            timeout = aiohttp.ClientTimeout(total=120)
            async with aiohttp.ClientSession(connector=connector, timeout=timeout) as http:
                if args.baseline_seconds > 0:
                    # a few browsers first, far below the limit: the web layer's own cost
                    base = Results()
                    until = time.monotonic() + args.baseline_seconds
                    await asyncio.gather(
                        *(browser(http, url, -1 - i, until, base) for i in range(3))
                    )
                    res.baseline_added_ms = base.added_ms
                    await asyncio.sleep(args.period)  # let the budget refill before the load
                cpu0, load0 = cpu_seconds(server.pid), os.getloadavg()[0]
                own0 = time.process_time()
                t0 = time.monotonic()
                until = t0 + args.seconds
                await asyncio.gather(
                    *(browser(http, url, i, until, res) for i in range(args.clients))
                )
                elapsed = time.monotonic() - t0
                res.app_cpu = cpu_seconds(server.pid) - cpu0
                res.generator_busy = (time.process_time() - own0) / elapsed
                res.load = (load0, os.getloadavg()[0])
            stats = remote_stats(mock_url)
        finally:
            server.terminate()
            server.wait(10)
    return res, stats, elapsed


def report(args: argparse.Namespace, res: Results, mock: dict[str, float], elapsed: float) -> str:
    ok = res.statuses[200]
    unmapped = {s: n for s, n in res.statuses.items() if s >= 500 and s not in (503, 504)}
    rate = args.otpm / args.period
    lines = [
        "# FastAPI example under load",
        "",
        f"Command: `python bench/bench_fastapi.py --clients {args.clients} "
        f"--seconds {args.seconds:g}` ({time.strftime('%Y-%m-%d')})  ",
        f"Machine: {platform.machine()}, {os.cpu_count()} CPUs, Python "
        f"{platform.python_version()}, {platform.system()}; mock, uvicorn app and load "
        "generator in three processes on loopback.",
        "",
        f"Limit: OTPM {args.otpm:,.0f} per {args.period:g} s ({rate:,.0f} output tokens/s), "
        f"max_tokens 128, answers 16-128 tokens paced at {args.per_token * 1000:g} ms/token "
        f"after {args.latency * 1000:g} ms; admission deadline {args.deadline:g} s.",
        "",
        "| figure | value |",
        "|---|---|",
        f"| browsers x duration (until the last answer ended) | {args.clients} x {elapsed:.1f} s |",
        f"| responses by status | {dict(sorted(res.statuses.items()))} |",
        f"| unmapped 5xx | {sum(unmapped.values())} |",
        f"| connections failed (browser side) | {dict(res.transport_errors) or 0} |",
        f"| 503/504 without Retry-After | {res.retry_after_missing} |",
        f"| streamed answers complete | {ok - res.incomplete} of {ok} |",
        f"| answers/s | {ok / elapsed:.1f} |",
        f"| output tokens/s (refill {rate:,.0f}/s on a full bucket of {args.otpm:,.0f}) | "
        f"{res.output_tokens / elapsed:,.0f} |",
        f"| 429s seen by the mock | {mock['rate_limited']:.0f} |",
        f"| **added latency of the web layer, ms (p50 / p90 / p99)** | {pct(res.added_ms)} |",
        f"| the same with 3 browsers, far below the limit, ms | {pct(res.baseline_added_ms)} |",
        f"| admission + first event inside the handler, ms | {pct(res.open_ms)} |",
        f"| time to response head at the browser, ms | {pct(res.head_ms)} |",
        f"| time to the end of the answer, ms | {pct(res.total_ms)} |",
        f"| app process CPU per answer, ms | {res.app_cpu * 1000.0 / max(1, ok):.2f} |",
        f"| load average (1 min) at start / end | {res.load[0]:.1f} / {res.load[1]:.1f} |",
        f"| load generator CPU busy | {res.generator_busy:.0%} |",
        f"| client CPU per streamed answer, bare SDK / through Thrift, ms | "
        f"{res.sdk_cpu[0]:.2f} / {res.sdk_cpu[1]:.2f} |",
        "",
        "Added latency = time to the response head at the browser minus the handler's own "
        "`x-asyncthrift-open-ms`: uvicorn, FastAPI routing and body validation, the SSE "
        "response start and two loopback HTTP hops (browser to app). "
        f"Median {statistics.median(res.added_ms) if res.added_ms else 0:.2f} ms. Under load it "
        "includes waiting for the app's event loop (hundreds of open requests relaying "
        "events) and, on a shared machine, for a CPU: compare the load average and the app's "
        "CPU per answer. The 3-browser row is the layer's own cost.",
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    p.add_argument("--clients", type=int, default=200)
    p.add_argument("--seconds", type=float, default=20.0)
    p.add_argument("--otpm", type=float, default=12_000, help="output tokens per period")
    p.add_argument("--period", type=float, default=6.0)
    p.add_argument("--latency", type=float, default=0.2)
    p.add_argument("--per-token", type=float, default=0.005)
    p.add_argument("--deadline", type=float, default=10.0)
    p.add_argument("--max-queue", type=int, default=1000)
    p.add_argument("--baseline-seconds", type=float, default=5.0)
    p.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "fastapi.md")
    args = p.parse_args(argv)
    res, mock, elapsed = asyncio.run(run(args))
    text = report(args, res, mock, elapsed)
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text)
    bad = (
        res.incomplete
        or res.transport_errors
        or any(s >= 500 and s not in (503, 504) for s in res.statuses)
    )
    return 1 if bad else 0


if __name__ == "__main__":
    raise SystemExit(main())
