"""Scheduler overhead when no limit binds: asyncthrift's throughput against the bare SDK's.

The mock Anthropic server runs with zero latency and no limits in its own process (pinned
to CPU 1; this process to CPU 0 when the machine has two), so the client is the bottleneck
and what separates the clients is the client-side work per request. Every client fires the
same N requests under the same concurrency (an `asyncio.Semaphore`, the way users fire the
bare SDK), on the same event loop (uvloop when importable), one client object each, reused
across rounds (connections stay warm) after a warm-up. Runs are short and interleaved, the
order rotating each round, so a noisy spell on the shared machine hits every client; the
figures are medians over many rounds of per-round ratios.

asyncthrift gives the SDK its aiohttp transport when aiohttp is installed (``http="auto"``),
while ``AsyncAnthropic()`` defaults to httpx, so a bare-vs-asyncthrift ratio with default
settings mixes the transport into the scheduler's overhead. Four clients separate the two:

- ``bare``: ``anthropic.AsyncAnthropic(api_key=..., base_url=..., max_retries=0)`` (httpx).
- ``bare/aiohttp``: the same with ``http_client=anthropic.DefaultAioHttpClient()``.
- ``raw/aiohttp``: that client through ``messages.with_raw_response.create(...)`` then
  ``.parse()``, the SDK's documented way to read response headers: what the SDK itself
  charges for exposing them. (asyncthrift used it before b4168ad; it now reads the
  rate-limit headers with a response hook on the HTTP client and calls plain ``create``.)
- ``asyncthrift``: ``Thrift(api_key=..., base_url=..., limits=None, dedupe=False)``: nothing
  binds and nothing is shared, the pure scheduling path (aiohttp when installed).
- ``asyncthrift/httpx``: the same with ``http="httpx"``.

What the columns mean:

- ``req/s``: requests completed per second of wall time in one run.
- ``CPU µs/req``: this process's CPU time (`time.process_time`) per request: the client's
  own work (the mock is another process).
- ``same transport``: asyncthrift's req/s over the bare SDK's on the same transport in the
  same round, then the bare SDK's CPU per request over asyncthrift's: the scheduler's
  overhead alone. The client is CPU-bound, so the two agree on a quiet machine; the CPU
  ratio is steadier when other processes take the core in bursts. The claim is a median
  throughput ratio of at least 0.9.
- ``as configured``: ``asyncthrift`` (default transport) over ``bare`` (the SDK's default):
  what a user switching from the bare SDK sees (issue 17's "throughput with nothing
  binding", target >= 1.35), by req/s and then by CPU per request (``bare``'s over
  ``asyncthrift``'s), the steadier of the two on a shared machine. The summary's figure
  pools every round (each client's requests over its summed wall, or CPU, time), not a
  median of per-round ratios: a full collection of the garbage collector (60-110 ms here,
  "Garbage collection per client") falls in one run of a few hundred requests or in none,
  which swung a per-round ratio by a quarter; pooled, each client pays for the collections
  in proportion to what it allocated. It is also given by req/s net of the time this
  process waited for a CPU (``/proc/thread-self/schedstat``), which other processes' load
  adds to a run's wall time at random.
- ``raw path``: ``raw/aiohttp``'s req/s over ``bare/aiohttp``'s, same round.

A last section runs the bare SDK and asyncthrift over the SDK's transport seam (an in-memory
``httpx2.MockTransport``, no sockets): CPU per request of the client-side work alone, where
asyncthrift's own share stands out from the HTTP stack's noise.

Run ``python bench/bench_overhead.py`` (about a minute and a half); ``--quick`` for a smoke
run. The mock sends no rate-limit headers by default, so asyncthrift learns no limits and
holds no burst; ``--mock-limits wide`` has it send limits far above the demand, as the real
API always sends its key's: asyncthrift then learns them, its buckets sit full and every
request is taken during a burst's hold (and asked for its departure,
`asyncthrift.pipeline._departure`).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import math
import os
import statistics
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import anthropic
import httpx2
from common import md_table, median, resolve_loop, run, write_result

from asyncthrift import Limits, Thrift
from asyncthrift.mock import remote_stats, spawn_mock_process

MODEL = "claude-sonnet-4-6"
MAX_TOKENS = 64
KINDS = ("bare", "bare/aiohttp", "raw/aiohttp", "asyncthrift", "asyncthrift/httpx")
SEAM_KINDS = ("bare", "asyncthrift")
#: ``--mock-limits wide``: limits the mock sends in its headers, far above any demand here
WIDE = Limits(rpm=1_000_000, itpm=1_000_000_000, otpm=100_000_000)
#: (asyncthrift kind, bare kind on the same transport)
PAIRS = (("asyncthrift", "bare/aiohttp"), ("asyncthrift/httpx", "bare"))

Create = Callable[..., Awaitable[Any]]


def prompt(i: int) -> list[dict[str, str]]:
    """A short, distinct user message (about 60 tokens): no two requests are identical."""
    return [
        {
            "role": "user",
            "content": f"Request {i}: summarise in one sentence why a token bucket refills "
            "continuously instead of resetting at minute boundaries, and what that means for "
            "a client that sends bursts of requests.",
        }
    ]


class GcClock:
    """The garbage collector's pauses in this process (`gc.callbacks`): seconds in all and
    full (oldest-generation) collections, read before and after each run."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self.full = 0
        self._start = 0.0

    def __call__(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._start = time.perf_counter()
            return
        self.seconds += time.perf_counter() - self._start
        if info["generation"] == 2:
            self.full += 1


GC = GcClock()


@dataclass(frozen=True, slots=True)
class Run:
    """One client's pass over the N requests."""

    kind: str
    requests: int
    wall: float
    cpu: float
    gc_s: float = 0.0
    full_gcs: int = 0
    waited: float = 0.0
    """Seconds this process's thread was ready to run but waited for a CPU (another
    process had it: `/proc/self/schedstat`), 0.0 where the kernel does not say."""

    @property
    def rate(self) -> float:
        return self.requests / self.wall

    @property
    def cpu_us(self) -> float:
        return self.cpu / self.requests * 1e6


async def drive(kind: str, create: Create, n: int, concurrency: int, offset: int) -> Run:
    """Send `n` requests through `create` with at most `concurrency` in flight."""
    sem = asyncio.Semaphore(concurrency)

    async def one(i: int) -> None:
        async with sem:
            await create(model=MODEL, max_tokens=MAX_TOKENS, messages=prompt(offset + i))

    t0, p0, g0, f0 = time.perf_counter(), time.process_time(), GC.seconds, GC.full
    w0 = cpu_wait()
    await asyncio.gather(*(one(i) for i in range(n)))
    wall, cpu = time.perf_counter() - t0, time.process_time() - p0
    return Run(kind, n, wall, cpu, GC.seconds - g0, GC.full - f0, cpu_wait() - w0)


def cpu_wait() -> float:
    """Seconds this thread has waited on a run queue so far (Linux schedstat; else 0.0)."""
    try:
        with open("/proc/thread-self/schedstat") as f:
            return int(f.read().split()[1]) / 1e9
    except (OSError, IndexError, ValueError):
        return 0.0


async def bench(url: str, n: int, concurrency: int, rounds: int, warmup: int) -> list[Run]:
    """Warm every client up, then `rounds` interleaved passes of every client."""
    bare = anthropic.AsyncAnthropic(api_key="k", base_url=url, max_retries=0)
    bare_aio = anthropic.AsyncAnthropic(
        api_key="k", base_url=url, max_retries=0, http_client=anthropic.DefaultAioHttpClient()
    )
    thrift = Thrift(api_key="k", base_url=url, limits=None, dedupe=False)

    async def raw(**kwargs: Any) -> Any:
        response = await bare_aio.messages.with_raw_response.create(**kwargs)
        return await response.parse()

    thrift_httpx = Thrift(api_key="k", base_url=url, limits=None, dedupe=False, http="httpx")
    creates: dict[str, Create] = {
        "bare": bare.messages.create,
        "bare/aiohttp": bare_aio.messages.create,
        "raw/aiohttp": raw,
        "asyncthrift": thrift.messages.create,
        "asyncthrift/httpx": thrift_httpx.messages.create,
    }
    runs: list[Run] = []
    offset = 0
    try:
        for kind in KINDS:
            await drive(kind, creates[kind], warmup, concurrency, offset)
            offset += warmup
        for r in range(rounds):
            # rotate the order each round so no client always runs first after a pause
            order = KINDS[r % len(KINDS) :] + KINDS[: r % len(KINDS)]
            for kind in order:
                result = await drive(kind, creates[kind], n, concurrency, offset)
                offset += n
                runs.append(result)
                print(
                    f"  round {r + 1} {kind:17} {result.rate:7.0f} req/s "
                    f"{result.cpu_us:6.0f} µs CPU/req, gc {result.gc_s * 1e3:5.1f} ms "
                    f"({result.full_gcs} full)",
                    flush=True,
                )
        for client in (thrift, thrift_httpx):
            s = client.stats()
            if s.failed or s.rate_limited or s.retries:
                raise RuntimeError(f"asyncthrift saw failures, 429s or retries: {s}")
    finally:
        await bare.close()
        await bare_aio.close()
        await thrift.aclose()
        await thrift_httpx.aclose()
    return runs


@dataclass(frozen=True, slots=True)
class Pooled:
    """One client's runs taken together: requests over the sum of their wall (and CPU)
    times. A full collection of the garbage collector costs tens of milliseconds and falls
    in whichever run's allocations tip it over, so one run of a few hundred requests has one
    or none and a ratio of two runs swings by a quarter; over every round, each client pays
    for the collections in proportion to what it allocated."""

    requests: int
    wall: float
    cpu: float
    gc_s: float
    waited: float

    @classmethod
    def of(cls, runs: list[Run]) -> Pooled:
        return cls(
            sum(x.requests for x in runs),
            sum(x.wall for x in runs),
            sum(x.cpu for x in runs),
            sum(x.gc_s for x in runs),
            sum(x.waited for x in runs),
        )

    @property
    def rate(self) -> float:
        return self.requests / self.wall if self.wall else math.nan

    @property
    def cpu_us(self) -> float:
        return self.cpu / self.requests * 1e6 if self.requests else math.nan

    @property
    def net_rate(self) -> float:
        """Requests per second of wall time less the time this process waited for a CPU:
        what the run would have done on a core of its own (the mock's waits still count)."""
        net = self.wall - self.waited
        return self.requests / net if net > 0 else math.nan

    @property
    def gc_us(self) -> float:
        return self.gc_s / self.requests * 1e6 if self.requests else math.nan


def quartiles(values: list[float]) -> tuple[float, float]:
    """The first and third quartiles of `values` (NaN, NaN when fewer than two)."""
    if len(values) < 2:
        return math.nan, math.nan
    q = statistics.quantiles(values, n=4)
    return q[0], q[2]


#: The answer of the in-memory transport: a short text and its usage.
ANSWER = {
    "id": "msg_bench",
    "type": "message",
    "role": "assistant",
    "model": MODEL,
    "content": [{"type": "text", "text": "A token bucket refills continuously. " * 4}],
    "stop_reason": "end_turn",
    "stop_sequence": None,
    "usage": {
        "input_tokens": 60,
        "output_tokens": 40,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 0,
    },
}


def in_memory() -> httpx2.AsyncClient:
    """An HTTP client whose transport answers every request at once, in this process."""

    def answer(request: httpx2.Request) -> httpx2.Response:
        return httpx2.Response(200, json=ANSWER)

    return httpx2.AsyncClient(transport=httpx2.MockTransport(answer))


async def seam(n: int, concurrency: int, rounds: int) -> list[Run]:
    """Both clients over the SDK's transport seam (no sockets, no server): CPU per request
    of the client-side work alone, where asyncthrift's own share is not lost in the noise."""
    bare = anthropic.AsyncAnthropic(api_key="k", max_retries=0, http_client=in_memory())
    thrift = Thrift(
        api_key="k", limits=None, dedupe=False, sdk_options={"http_client": in_memory()}
    )
    creates: dict[str, Create] = {
        "bare": bare.messages.create,
        "asyncthrift": thrift.messages.create,
    }
    runs: list[Run] = []
    try:
        for kind, create in creates.items():
            await drive(kind, create, n // 2, concurrency, 0)
        for r in range(rounds):
            for kind in SEAM_KINDS if r % 2 == 0 else SEAM_KINDS[::-1]:
                runs.append(await drive(kind, creates[kind], n, concurrency, r * n))
    finally:
        await bare.close()
        await thrift.aclose()
    return runs


def pin_self() -> bool:
    """Pin this process to CPU 0 (the mock goes to CPU 1); False where that is impossible."""
    if (os.cpu_count() or 1) < 2 or not hasattr(os, "sched_setaffinity"):
        return False
    os.sched_setaffinity(0, {0})
    return True


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--loop", choices=("auto", "uvloop", "asyncio"), default="auto")
    parser.add_argument("-n", type=int, default=600, help="requests per run")
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=200, help="requests per client first")
    parser.add_argument("--seam-n", type=int, default=300, help="requests per seam run")
    parser.add_argument("--seam-rounds", type=int, default=20)
    parser.add_argument("--no-pin", action="store_true", help="do not pin to CPUs")
    parser.add_argument(
        "--mock-limits",
        choices=("none", "wide"),
        default="none",
        help="wide: the mock sends rate-limit headers of limits far above the demand, which "
        "asyncthrift learns (as from the real API): its buckets sit full, every burst is held",
    )
    parser.add_argument("--quick", action="store_true", help="small run, for a smoke test")
    parser.add_argument("--no-write", action="store_true", help="print only")
    args = parser.parse_args()
    if args.quick:
        args.n, args.rounds, args.warmup = 300, 2, 50
        args.seam_n, args.seam_rounds = 300, 2

    pinned = not args.no_pin and pin_self()
    gc.callbacks.append(GC)
    t_start = time.perf_counter()
    limits = WIDE if args.mock_limits == "wide" else None
    with spawn_mock_process(latency=0.0, limits=limits, cpu=1 if pinned else None) as url:
        runs = run(bench(url, args.n, args.concurrency, args.rounds, args.warmup), args.loop)
        served = remote_stats(url)
    seam_runs = run(seam(args.seam_n, args.concurrency, args.seam_rounds), args.loop)
    elapsed = time.perf_counter() - t_start

    by_round = [runs[i : i + len(KINDS)] for i in range(0, len(runs), len(KINDS))]
    ratios: dict[str, list[float]] = {mine: [] for mine, _ in PAIRS}
    extra: dict[str, list[float]] = {mine: [] for mine, _ in PAIRS}
    by_cpu: dict[str, list[float]] = {mine: [] for mine, _ in PAIRS}
    configured: list[float] = []
    configured_cpu: list[float] = []
    raw_path: list[float] = []
    rows = []
    for i, group in enumerate(by_round):
        r = {x.kind: x for x in group}
        for mine, theirs in PAIRS:
            ratios[mine].append(r[mine].rate / r[theirs].rate)
            extra[mine].append(r[mine].cpu_us - r[theirs].cpu_us)
            by_cpu[mine].append(r[theirs].cpu_us / r[mine].cpu_us)
        configured.append(r["asyncthrift"].rate / r["bare"].rate)
        configured_cpu.append(r["bare"].cpu_us / r["asyncthrift"].cpu_us)
        raw_path.append(r["raw/aiohttp"].rate / r["bare/aiohttp"].rate)
        rows.append(
            [str(i + 1)]
            + [f"{r[k].rate:.0f} / {r[k].cpu_us:.0f}" for k in KINDS]
            + [f"{ratios[mine][-1]:.3f} / {by_cpu[mine][-1]:.3f}" for mine, _ in PAIRS]
            + [f"{configured[-1]:.3f} / {configured_cpu[-1]:.3f}", f"{raw_path[-1]:.3f}"]
        )
    med = {k: median([x.rate for x in runs if x.kind == k]) for k in KINDS}
    med_cpu = {k: median([x.cpu_us for x in runs if x.kind == k]) for k in KINDS}
    pooled = {k: Pooled.of([x for x in runs if x.kind == k]) for k in KINDS}
    as_configured = pooled["asyncthrift"].rate / pooled["bare"].rate
    as_configured_cpu = pooled["bare"].cpu_us / pooled["asyncthrift"].cpu_us
    as_configured_net = pooled["asyncthrift"].net_rate / pooled["bare"].net_rate
    waited_share = sum(x.waited for x in runs) / sum(x.wall for x in runs)
    rows.append(
        ["**median**"]
        + [f"{med[k]:.0f} / {med_cpu[k]:.0f}" for k in KINDS]
        + [f"**{median(ratios[mine]):.3f}** / **{median(by_cpu[mine]):.3f}**" for mine, _ in PAIRS]
        + [
            f"**{median(configured):.3f}** / **{median(configured_cpu):.3f}**",
            f"**{median(raw_path):.3f}**",
        ]
    )
    rows.append(
        ["**all rounds**"]
        + [f"{pooled[k].rate:.0f} / {pooled[k].cpu_us:.0f}" for k in KINDS]
        + [
            f"{pooled[mine].rate / pooled[theirs].rate:.3f} / "
            f"{pooled[theirs].cpu_us / pooled[mine].cpu_us:.3f}"
            for mine, theirs in PAIRS
        ]
        + [f"**{as_configured:.3f}** / **{as_configured_cpu:.3f}**", ""]
    )
    table = md_table(
        ["round"]
        + [f"{k} req/s / CPU µs/req" for k in KINDS]
        + ["same transport, aiohttp (req/s / CPU)", "same transport, httpx (req/s / CPU)"]
        + ["as configured (req/s / CPU)", "raw path"],
        rows,
    )
    gc_table = md_table(
        ["client", "runs with a full collection", "gc ms per run (median)", "gc µs per request"],
        [
            [
                k,
                f"{sum(1 for x in runs if x.kind == k and x.full_gcs)} of {args.rounds}",
                f"{median([x.gc_s * 1e3 for x in runs if x.kind == k]):.1f}",
                f"{pooled[k].gc_us:.0f}",
            ]
            for k in KINDS
        ],
    )
    spread = max(configured) - min(configured) if configured else math.nan
    q1, q3 = quartiles(configured)
    pairs = [seam_runs[i : i + 2] for i in range(0, len(seam_runs), 2)]
    seam_rows = []
    seam_extra, seam_ratio = [], []
    for i, pair in enumerate(pairs):
        r = {x.kind: x for x in pair}
        seam_extra.append(r["asyncthrift"].cpu_us - r["bare"].cpu_us)
        seam_ratio.append(r["bare"].cpu_us / r["asyncthrift"].cpu_us)
        seam_rows.append(
            [
                str(i + 1),
                f"{r['bare'].cpu_us:.0f}",
                f"{r['asyncthrift'].cpu_us:.0f}",
                f"{seam_extra[-1]:.0f}",
                f"{seam_ratio[-1]:.3f}",
            ]
        )
    seam_rows.append(
        [
            "**median**",
            f"{median([x.cpu_us for x in seam_runs if x.kind == 'bare']):.0f}",
            f"{median([x.cpu_us for x in seam_runs if x.kind == 'asyncthrift']):.0f}",
            f"**{median(seam_extra):.0f}**",
            f"**{median(seam_ratio):.3f}**",
        ]
    )
    seam_table = md_table(
        ["round", "bare CPU µs/req", "asyncthrift CPU µs/req", "asyncthrift adds µs", "ratio"],
        seam_rows,
    )
    aio, hx = median(ratios["asyncthrift"]), median(ratios["asyncthrift/httpx"])
    caio, chx = median(by_cpu["asyncthrift"]), median(by_cpu["asyncthrift/httpx"])
    verdict = "holds" if min(aio, hx) >= 0.9 else "does NOT hold"
    summary = (
        f"Median throughput ratio asyncthrift / bare SDK on the same transport: aiohttp "
        f"{aio:.3f}, httpx {hx:.3f} (claim: >= 0.9, {verdict}); by CPU per request, which "
        f"other processes' bursts disturb less: aiohttp {caio:.3f}, httpx {chx:.3f}. "
        "asyncthrift adds "
        f"{median(extra['asyncthrift']):.0f} µs (aiohttp) and "
        f"{median(extra['asyncthrift/httpx']):.0f} µs (httpx) of client CPU per request over "
        f"the bare SDK's {med_cpu['bare/aiohttp']:.0f} and {med_cpu['bare']:.0f} µs. As "
        f"configured (asyncthrift's default transport against the SDK's default), all "
        f"rounds pooled (requests over wall time, every client's share of the process's "
        f"full garbage collections included): **{as_configured:.3f}** by req/s, "
        f"{as_configured_cpu:.3f} by CPU per request, {as_configured_net:.3f} by req/s net of "
        f"this process's waits for a CPU ({waited_share:.0%} of the runs' wall time) "
        f"(target >= 1.35); per round: median "
        f"{median(configured):.3f}, quartiles {q1:.3f}-{q3:.3f}, range {spread:.3f}. "
        f"The SDK's raw-response path alone runs at "
        f"{median(raw_path):.3f} of plain create() (aiohttp). The mock answered "
        f"{served.get('ok', '?')} requests, "
        f"{served.get('rate_limited', '?')} of them 429. Over the SDK's transport seam (no "
        f"sockets), asyncthrift's own work is {median(seam_extra):.0f} µs per request, a "
        f"throughput ratio of {median(seam_ratio):.3f} for a client with nothing else to do. "
        f"Wall time {elapsed:.0f} s."
    )
    headline = (
        f"same transport: aiohttp {aio:.3f} (CPU {caio:.3f}), httpx {hx:.3f} (CPU {chx:.3f}); "
        f"raw path {median(raw_path):.3f}; seam +{median(seam_extra):.0f} µs/req "
        f"({median(seam_ratio):.3f}); "
        f"as configured "
        f"{as_configured:.3f} (CPU {as_configured_cpu:.3f}, net of CPU waits "
        f"{as_configured_net:.3f}; per-round median "
        f"{median(configured):.3f}, quartiles {q1:.3f}-{q3:.3f}); "
        f"+{median(extra['asyncthrift']):.0f} µs CPU/req (aiohttp), "
        f"+{median(extra['asyncthrift/httpx']):.0f} µs (httpx)"
    )
    body = "\n\n".join(
        [
            f"{args.n} requests per run, concurrency {args.concurrency}, {args.rounds} "
            f"interleaved rounds after {args.warmup} warm-up requests per client; mock: "
            f"latency 0, {'limits far above the demand in its headers' if limits else 'no limits'}"
            f", own process{' on CPU 1 (client on CPU 0)' if pinned else ''}"
            f"; loop {resolve_loop(args.loop)}; model {MODEL}, max_tokens {MAX_TOKENS}.",
            "## Summary\n\n" + summary,
            "## Runs against the mock server\n\n" + table,
            "## Garbage collection per client (this process's pauses during its runs)\n\n"
            + gc_table,
            f"## Over the SDK's transport seam ({args.seam_n} requests per run, "
            f"{args.seam_rounds} rounds, alternating order)\n\n"
            "Both clients on `httpx2.AsyncClient(transport=httpx2.MockTransport(...))` "
            "answering a fixed message at once: no sockets, no server, the same SDK code. "
            "The difference is asyncthrift's own client-side work per request.\n\n" + seam_table,
            "## What the columns mean\n\n" + (__doc__ or "").split("What the columns mean:")[1],
        ]
    )
    print()
    print(table)
    print()
    print(gc_table)
    print()
    print(seam_table)
    print()
    print(summary)
    if not args.no_write:
        path = write_result(
            "overhead", "Scheduler overhead, nothing binding", args.loop, body, headline
        )
        print(f"\nwrote {path}")


if __name__ == "__main__":
    main()
