"""The acceptance workloads at the API's real 60 s period, under every mock setting.

    python bench/acceptance.py --jobs 6                 # everything: 2 latency variants x
                                                        # 5 settings x 9 workloads, ~15 min
    python bench/acceptance.py --variants fast --settings completion-seconds \\
        --workloads mixed,cancel-finish --jobs 2        # a subset

The CI tests (``tests/test_workloads_http.py``) compress time: 6-20 s "minutes", answers in
20 ms, ``max_tokens`` close to the answer. Real answers take seconds and callers reserve
several times the tokens they get, so reservations are held far longer against the refill,
and fixed costs (the cold start's probe, header windows, the hold after a burst) weigh
differently. This bench runs every workload of that file at ``period=60`` with:

- 600 mixed requests (40 % Chinese; ``chinese``: all Chinese), ``max_tokens`` drawn from
  64..1024, answers of 40..120 output tokens (about 80);
- latency variant ``fast``: 200 ms + 1 ms per output token; ``slow``: 2 s + 20 ms per
  token; 10 % jitter either way;
- limits sized so that all three dimensions bind, with about 30 s of work beyond the first
  burst (the demand of each dimension is 1.5 times its limit);
- every mock setting: rows ``headers_at``-``reset_precision``, plus ``skew`` (completion,
  seconds, the mock's clock 2.7 s ahead of the client's); ``abandoned`` (what the server
  does with a non-streamed answer whose client went away) is the column suffix of the
  workloads that abandon requests (``cancel-finish``, ``cancel-stop``); the others cannot
  tell the two apart and run under the default, ``finish``.

Each cell is a separate process (its own mock process and its own client; the cells are
I/O bound, so ``--jobs`` run at once). The makespan is divided by the **ideal**: the
makespan of a clairvoyant client that sends the same requests in the same order the instant
the server's buckets (simulated exactly: reservation of ``max_tokens``, refund at
completion, the share another consumer leaves) can take them, with the mock's latency
without jitter. It is the least any client can do against this server (except where half
the requests are cancelled 1 s in: the ideal sends, and pays for, the doomed requests it
can before then, as an eager client would; one that holds back at first can beat it); the
ratio is what asyncthrift loses to not knowing the server's state. 429s are the mock's
count (for the drained key: after the drain). Writes ``bench/results/acceptance.md`` and a plot of
admitted tokens per second against the limit for one run, ``bench/results/acceptance.png``.
"""

from __future__ import annotations

import argparse
import asyncio
import heapq
import json
import math
import random
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from common import RESULTS, admitted_per_second, draw_admitted, md_table, write_result

from asyncthrift import Limits
from asyncthrift.scheduling.bucket import TokenBucket

PERIOD = 60.0
N = 600
OUTPUT_TOKENS = (40, 120)
MAX_TOKENS = tuple(range(64, 1025))
JITTER = 0.1
BEYOND_BURST = 30.0  # seconds of work beyond the first burst, per dimension
SHADOW = 0.4
CANCEL_AT = 1.0  # seconds after the start, when the doomed half is cancelled

#: (base seconds, seconds per output token) of the mock's answers.
VARIANTS: dict[str, tuple[float, float]] = {"fast": (0.2, 0.001), "slow": (2.0, 0.02)}

#: Rows: the mock's header settings (and a clock skew).
SETTINGS: dict[str, dict[str, Any]] = {
    **{
        f"{at}-{precision}": {"headers_at": at, "reset_precision": precision}
        for at in ("completion", "admission")
        for precision in ("seconds", "milliseconds")
    },
    "skew": {"headers_at": "completion", "reset_precision": "seconds", "clock_skew": 2.7},
}

#: Columns: the workloads of tests/test_workloads_http.py.
WORKLOADS: dict[str, str] = {
    "mixed": "600 mixed requests (40 % Chinese), all three limits binding",
    "chinese": "the same, all Chinese",
    "shared": "mixed, on a key another consumer eats 40 % of every limit of",
    "cancel-finish": "mixed; half cancelled 1 s in (queued or in flight); the server "
    "finishes and charges an abandoned answer",
    "cancel-stop": "the same; the server stops an abandoned answer",
    "interactive": "the mixed requests as a batch backlog, and 40 interactive requests "
    "arriving one every 0.5 s from 2 s on (cell: also their median wait ÷ the answer latency)",
    "drained": "mixed, on a key another consumer emptied (input) just before the start and "
    "keeps spending a little from",
    "learnt": "mixed, with no limits given: learnt from the headers",
    "faults": "mixed, with 5 % 529s, 2 % 500s and 1 % dropped connections",
}


@dataclass(frozen=True, slots=True)
class Cell:
    workload: str
    setting: str
    variant: str

    @property
    def name(self) -> str:
        return f"{self.variant}/{self.setting}/{self.workload}"


# -- the requests and what an ideal client would do with them --------------------------------


def bodies_of(workload: str) -> list[dict[str, Any]]:
    from asyncthrift.tools.workload import mixed_workload

    share = 1.0 if workload == "chinese" else 0.4
    return mixed_workload(N, seed=11, chinese_share=share, max_tokens=MAX_TOKENS)


def interactive_bodies() -> list[dict[str, Any]]:
    from asyncthrift.tools.workload import mixed_workload

    return mixed_workload(40, seed=3, max_tokens=MAX_TOKENS)


def demand(bodies: list[dict[str, Any]]) -> list[tuple[float, float, float]]:
    """Per body: (input tokens, max_tokens, output tokens of the mock's answer)."""
    from asyncthrift.mock._answers import answer_for, request_hash
    from asyncthrift.mock._tokenizer import analyze_input

    return [
        (
            float(analyze_input(b).total),
            float(b["max_tokens"]),
            float(answer_for(request_hash(b), OUTPUT_TOKENS, b["max_tokens"]).output_tokens),
        )
        for b in bodies
    ]


def sized_limits(bodies: list[dict[str, Any]], workload: str = "mixed") -> Limits:
    """Limits under which every dimension's demand is `BEYOND_BURST` s beyond its burst
    (for a workload that cancels half: the demand of the half it keeps)."""
    doomed = doomed_of(workload)
    d = [x for i, x in enumerate(demand(bodies)) if i not in doomed]
    scale = 1.0 + BEYOND_BURST / PERIOD
    return Limits(
        rpm=round(len(d) / scale),
        itpm=round(sum(x[0] for x in d) / scale),
        otpm=round(sum(x[2] for x in d) / scale),
        period=PERIOD,
    )


def ideal_makespan(
    bodies: list[dict[str, Any]],
    limits: Limits,
    variant: str,
    *,
    share: float = 1.0,
    input_level: float | None = None,
    doomed: frozenset[int] = frozenset(),
    abandoned: str = "finish",
) -> float:
    """The makespan of a clairvoyant FIFO client against the mock's exact buckets.

    Each request is sent the instant the server's three buckets can take (1, input,
    max_tokens); its unused output comes back at completion, ``base + per_token * answer``
    later (no jitter). `share`: the part of each refill another consumer leaves;
    `input_level`: the input bucket's level at the start (None: full). `doomed`: indexes
    cancelled at `CANCEL_AT`: not sent if not admitted by then; in flight then, charged in
    full (`abandoned` "finish") or refunded all but what was produced (``"stop"``). The
    makespan is that of the others.
    """
    base, per_token = VARIANTS[variant]
    caps = (limits.rpm, limits.itpm, limits.otpm)
    buckets = [
        TokenBucket(c, PERIOD / share, 0.0, level=input_level if k == 1 else None)
        for k, c in enumerate(caps)
        if c is not None
    ]
    refunds: list[tuple[float, float]] = []
    t, end = 0.0, 0.0
    for index, (inp, max_tokens, answer) in enumerate(demand(bodies)):
        cost = (1.0, inp, max_tokens)
        # a doomed request holds the head of the line until it is admitted or cancelled
        horizon = CANCEL_AT if index in doomed else math.inf
        while True:
            wait = max(b.wait(a, t) for b, a in zip(buckets, cost, strict=True))
            if refunds and t + wait > refunds[0][0] and refunds[0][0] < horizon:
                when, amount = heapq.heappop(refunds)
                t = max(t, when)
                buckets[2].give(amount, t)
                continue
            break
        if t + wait >= horizon:
            continue  # still queued when cancelled: never sent
        t += wait
        for b, a in zip(buckets, cost, strict=True):
            b.take(a, t)
        done = t + base + per_token * answer
        if index in doomed and done > CANCEL_AT and abandoned == "stop":
            produced = max(0.0, min(answer, (CANCEL_AT - t - base) / per_token))
            heapq.heappush(refunds, (CANCEL_AT, max_tokens - produced))
        else:
            heapq.heappush(refunds, (done, max_tokens - answer))
        if index not in doomed:
            end = max(end, done)
    return end


def doomed_of(workload: str) -> frozenset[int]:
    """The requests a workload cancels `CANCEL_AT` s in (half, at random), if any."""
    if not workload.startswith("cancel"):
        return frozenset()
    return frozenset(random.Random(4).sample(range(N), N // 2))


# -- one cell, in its own process ------------------------------------------------------------


async def _drain(url: str, drained: asyncio.Event, stop: asyncio.Event) -> None:
    """Another consumer: empties the key's input bucket, then sends a little every 0.5 s."""
    import anthropic

    big = {
        "model": "claude-sonnet-4-6",
        "max_tokens": 16,
        "messages": [{"role": "user", "content": "lorem ipsum dolor " * 3000}],
    }
    async with anthropic.AsyncAnthropic(api_key="k", base_url=url, max_retries=0) as sdk:
        refused = False
        while not refused:  # waves of 20 at once: answers may take seconds
            outcomes = await asyncio.gather(
                *(sdk.messages.create(**big) for _ in range(20)), return_exceptions=True
            )
            refused = any(isinstance(o, anthropic.RateLimitError) for o in outcomes)
        drained.set()
        small = {**big, "messages": [{"role": "user", "content": "x"}]}
        while not stop.is_set():
            await asyncio.sleep(0.5)
            try:
                await sdk.messages.create(**small)
            except anthropic.RateLimitError:
                pass


async def _run_cell(cell: Cell, want_log: bool) -> dict[str, Any]:
    from asyncthrift import Thrift
    from asyncthrift.mock import Faults, remote_stats, spawn_mock_process

    w = cell.workload
    bodies = bodies_of(w)
    limits = sized_limits(bodies, w)
    doomed = doomed_of(w)
    base, per_token = VARIANTS[cell.variant]
    setting = dict(SETTINGS[cell.setting])
    mock: dict[str, Any] = {
        "limits": limits,
        "output_tokens": OUTPUT_TOKENS,
        "latency": base,
        "latency_per_token": per_token,
        "latency_jitter": JITTER,
        "record": want_log,
        **setting,
    }
    if w == "shared":
        mock["shadow_load"] = SHADOW
    if w == "cancel-stop":
        mock["abandoned"] = "stop"
    if w == "faults":
        mock["faults"] = Faults(overloaded=0.05, server_error=0.02, drop=0.01, seed=42)
        mock["overloaded_retry_after"] = 1.0
    answer_latency = base + per_token * sum(OUTPUT_TOKENS) / 2
    planned = ideal_makespan(bodies, limits, cell.variant)
    cap = 3.0 * planned + 60.0
    out: dict[str, Any] = {"cell": asdict(cell)}
    with spawn_mock_process(**mock) as url:
        before = {"rate_limited": 0, "requests": 0}
        drainer = None
        stop = asyncio.Event()
        if w == "drained":
            drained = asyncio.Event()
            drainer = asyncio.create_task(_drain(url, drained, stop))
            await drained.wait()
            before = await asyncio.to_thread(remote_stats, url)
        client_limits = Limits(period=PERIOD) if w == "learnt" else limits
        waits: list[float] = []
        async with Thrift(api_key="k", base_url=url, limits=client_limits) as client:
            t0 = time.monotonic()
            foreign_seconds = [0.0, 0.0, 0.0]
            sampler = asyncio.create_task(_sample_foreign(client, foreign_seconds))
            if w == "interactive":
                tasks = [
                    asyncio.create_task(client.messages.create(**b, priority="batch"))
                    for b in bodies
                ]

                async def one(body: dict[str, Any]) -> None:
                    s = time.monotonic()
                    await client.messages.create(**body, priority="interactive")
                    waits.append(time.monotonic() - s)

                await asyncio.sleep(2.0)
                for body in interactive_bodies():
                    tasks.append(asyncio.create_task(one(body)))
                    await asyncio.sleep(0.5)
                kept = tasks
            else:
                tasks = [asyncio.create_task(client.messages.create(**b)) for b in bodies]
                kept = tasks
                if doomed:
                    kept = [t for i, t in enumerate(tasks) if i not in doomed]
                    await asyncio.sleep(CANCEL_AT)
                    for i in doomed:
                        tasks[i].cancel()
            done, pending = await asyncio.wait(kept, timeout=cap)
            makespan = time.monotonic() - t0
            sampler.cancel()
            for task in pending:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            s = client.stats()
            # diagnostics: what the budget believes of the server at the end
            budget = client.budgets()["sonnet"][0]
            out["client"] = {
                "foreign_rates": list(budget._foreign.rates),
                "refill_rates": [b.rate if b else None for b in budget.buckets],
                "lowered_by_headers": [getattr(b, "lowered", None) for b in budget.buckets],
                "lifted_by_readings": list(getattr(budget, "lifted_by_readings", ())),
                # per hold after a burst: seconds of refill its written burst proved (None:
                # not all written by its first answer; absent: a tree without the signal)
                # seconds the budget took over 5 % of a limit's refill for other consumers
                # (a lone client's false fit: refill withheld it never gets back)
                "foreign_seconds": [round(x, 1) for x in foreign_seconds],
                # which instant non-streamed headers describe, as learnt (`HeaderInstant`;
                # absent: a tree without it) and the votes (admission, completion)
                "header_instant": _header_instant(budget),
                "departure_proofs": [
                    p[1] for p in getattr(getattr(budget, "_transit", None), "departure_proofs", [])
                ],
            }
        failed = sum(1 for t in done if t.exception() is not None) + len(pending)
        stop.set()
        if drainer is not None:
            await drainer
        server = await asyncio.to_thread(remote_stats, url)
    all_bodies = bodies + interactive_bodies() if w == "interactive" else bodies
    # a workload that cancels half: the ideal also sends (and is charged for) what is
    # cancelled later, as an eager client does; one that sends less at first (the cold
    # start's probe) can beat it, so a ratio below 1 is possible there
    ideal = ideal_makespan(
        all_bodies,
        limits,
        cell.variant,
        share=1.0 - SHADOW if w == "shared" else 1.0,
        input_level=0.0 if w == "drained" else None,
        doomed=doomed,
        abandoned=mock.get("abandoned", "finish"),
    )
    sent = server["requests"] - before["requests"]
    r429 = server["rate_limited"] - before["rate_limited"]
    out.update(
        makespan=makespan,
        ideal=ideal,
        ratio=makespan / ideal,
        failed=failed,
        kept=len(kept),
        r429=r429,
        sent=sent,
        per100=100.0 * r429 / max(1, sent),
        retries=s.retries,
        cancelled_by_mock=server["cancelled"],
        abandoned_output=server["abandoned_output_tokens"],
        output_tokens=server["output_tokens"],
        limits=[limits.rpm, limits.itpm, limits.otpm],
        answer_latency=answer_latency,
        wait_p50=statistics.median(waits) if waits else None,
    )
    if want_log:
        out["log"] = server["log"]
    return out


def _header_instant(budget: Any) -> list[Any] | None:
    instant = getattr(budget._foreign, "instant", None)
    return None if instant is None else [instant.at, *instant.votes]


async def _sample_foreign(client: Any, seconds: list[float]) -> None:
    """Per dimension, add up the seconds the client's budget gives other consumers more than
    5 % of the limit's refill (`ForeignShare.rates`), sampled every 0.1 s: a diagnostic."""
    step = 0.1
    while True:
        await asyncio.sleep(step)
        for budgets in client.budgets().values():
            budget = budgets[0]
            rates = budget._foreign.rates
            for i, bucket in enumerate(budget.buckets):
                if bucket is not None and rates[i] > 0.05 * bucket.capacity / PERIOD:
                    seconds[i] += step


def cell_main(spec: str, out_path: str, want_log: bool) -> None:
    cell = Cell(**json.loads(spec))
    try:
        import uvloop

        result = uvloop.run(_run_cell(cell, want_log))
    except ImportError:
        result = asyncio.run(_run_cell(cell, want_log))
    Path(out_path).write_text(json.dumps(result))


# -- the orchestra ---------------------------------------------------------------------------


def run_cells(
    cells: list[Cell], jobs: int, plot_cell: Cell | None, keep: Path | None
) -> dict[str, dict[str, Any]]:
    """Run every cell as its own process, `jobs` at a time; their results by name.

    With `keep`, each cell's result is kept there as JSON, and a cell already there is
    reused, not run again (to complete a run whose cells failed, or rebuild its tables).
    """
    results: dict[str, dict[str, Any]] = {}
    tmp = keep if keep is not None else Path(tempfile.mkdtemp(prefix="acceptance-"))
    tmp.mkdir(parents=True, exist_ok=True)
    queue = []
    for cell in cells:
        done = tmp / (cell.name.replace("/", "_") + ".json")
        if keep is not None and done.exists():
            results[cell.name] = json.loads(done.read_text())
        else:
            queue.append(cell)
    running: list[tuple[Cell, subprocess.Popen[bytes], Path, float]] = []
    while queue or running:
        while queue and len(running) < jobs:
            cell = queue.pop(0)
            out = tmp / (cell.name.replace("/", "_") + ".json")
            argv = [sys.executable, __file__, "--cell", json.dumps(asdict(cell)), "--out", str(out)]
            if cell == plot_cell:
                argv.append("--log")
            proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL)
            running.append((cell, proc, out, time.monotonic()))
        time.sleep(0.5)
        for item in list(running):
            cell, proc, out, started = item
            if proc.poll() is None:
                if time.monotonic() - started > 600:
                    proc.kill()
                    proc.wait()
                else:
                    continue
            running.remove(item)
            if proc.returncode == 0 and out.exists():
                r = json.loads(out.read_text())
                results[cell.name] = r
                print(
                    f"{cell.name:45s} {_cell_text(r):28s} makespan {r['makespan']:.1f} s, "
                    f"ideal {r['ideal']:.1f} s, foreign (s) {r['client'].get('foreign_seconds')}, "
                    f"instant {r['client'].get('header_instant')}",
                    flush=True,
                )
            else:
                print(f"{cell.name:45s} FAILED (exit {proc.returncode})", flush=True)
    return results


def _cell_text(r: dict[str, Any] | None) -> str:
    if r is None:
        return "—"
    if r["failed"]:
        return f"✗ {r['kept'] - r['failed']}/{r['kept']} ok"
    text = f"{r['ratio']:.2f}, {r['r429']} × 429 ({r['per100']:.1f}/100)"
    if r.get("wait_p50") is not None:
        text += f", wait {r['wait_p50'] / r['answer_latency']:.1f}×"
    return text


def plot(r: dict[str, Any], path: Path) -> None:
    """Admitted requests / input / output tokens per second against the limit, one run."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rpm, itpm, otpm = r["limits"]
    dims = [
        ("requests / s", rpm, "tab:green"),
        ("input tokens / s", itpm, "tab:blue"),
        ("output tokens / s (produced)", otpm, "tab:orange"),
    ]
    bin_s = 2.0
    horizon = max(r["makespan"], r["ideal"]) * 1.05
    nbins = int(horizon / bin_s) + 1
    xs = [i * bin_s for i in range(nbins + 1)]
    t0 = min((e[0] for e in r["log"]), default=0.0)
    series, refused = admitted_per_second(r["log"], bin_s, nbins, t0)
    fig, axes = plt.subplots(1, 3, figsize=(15, 3.4))
    for ax, (label, cap, color), ys in zip(axes, dims, series, strict=True):
        draw_admitted(
            ax,
            xs,
            ys,
            color=color,
            rate=cap / PERIOD,
            limit_label="limit (refill rate)",
            marks=[
                (r["ideal"], "gray", "ideal makespan"),
                (r["makespan"], "red", "makespan"),
            ],
            bin_s=bin_s,
            refused=refused,
        )
        ax.set_title(label, fontsize=10)
        ax.set_xlabel("seconds since the first admission")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7, loc="upper right")
    c = r["cell"]
    fig.suptitle(
        f"{c['workload']} / {c['setting']} / {c['variant']}: {_cell_text(r)}; {bin_s:g} s bins",
        fontsize=10,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--workloads", default=",".join(WORKLOADS))
    parser.add_argument("--settings", default=",".join(SETTINGS))
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--jobs", type=int, default=4, help="cells run at once (processes)")
    parser.add_argument("--no-write", action="store_true", help="print only")
    parser.add_argument(
        "--keep", type=Path, help="keep each cell's result in this directory; reuse those there"
    )
    parser.add_argument("--cell", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    parser.add_argument("--log", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.cell:
        cell_main(args.cell, args.out, args.log)
        return
    picked = {}
    for name, pool in (("workloads", WORKLOADS), ("settings", SETTINGS), ("variants", VARIANTS)):
        chosen = getattr(args, name).split(",")
        unknown = [c for c in chosen if c not in pool]
        if unknown:
            raise SystemExit(f"unknown {name} {unknown}; choose from {list(pool)}")
        picked[name] = chosen
    cells = [
        Cell(w, s, v)
        for v in picked["variants"]
        for s in picked["settings"]
        for w in picked["workloads"]
    ]
    plot_cell = cells[0]
    started = time.monotonic()
    results = run_cells(cells, max(1, args.jobs), plot_cell, args.keep)
    wall = time.monotonic() - started
    tables = []
    for v in picked["variants"]:
        base, per_token = VARIANTS[v]
        rows = [
            [s, *(_cell_text(results.get(Cell(w, s, v).name)) for w in picked["workloads"])]
            for s in picked["settings"]
        ]
        tables.append(
            f"### `{v}`: answers of {base * 1000:g} ms + {per_token * 1000:g} ms per output "
            f"token\n\n" + md_table(["setting", *picked["workloads"]], rows)
        )
    print("\n\n".join(tables) + f"\n\nwall time {wall:.0f} s")
    if args.no_write:
        return
    png = RESULTS / "acceptance.png"
    plotted = results.get(plot_cell.name)
    if plotted is not None and "log" in plotted:
        plot(plotted, png)
    detail = md_table(
        [
            "cell",
            "makespan s",
            "ideal s",
            "ratio",
            "429s",
            "sent",
            "retries",
            "abandoned output (mock)",
            "failed",
        ],
        [
            [
                name,
                f"{r['makespan']:.1f}",
                f"{r['ideal']:.1f}",
                f"{r['ratio']:.3f}",
                r["r429"],
                r["sent"],
                r["retries"],
                r["abandoned_output"],
                r["failed"],
            ]
            for name, r in sorted(results.items())
        ],
    )
    body = "\n".join(
        [
            (__doc__ or "").split("\n\n", 2)[2].strip(),
            "",
            "Workloads:",
            "",
            *(f"- **{w}**: {WORKLOADS[w]}" for w in picked["workloads"]),
            "",
            f"One run per cell, {args.jobs} cells at once; wall time {wall:.0f} s. "
            "Cells: makespan ÷ ideal, the mock's 429s (per 100 requests it received).",
            "",
            *tables,
            "",
            "## Every cell",
            "",
            detail,
            "",
            f"![admitted per second]({png.name})",
        ]
    )
    headline = "; ".join(f"{name} {_cell_text(r)}" for name, r in sorted(results.items()))[:2000]
    path = write_result(
        "acceptance", "Acceptance workloads at the real 60 s period", "auto", body, headline, keep=3
    )
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
