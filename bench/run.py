"""asyncthrift against its peers: one mock, one set of workloads, every client in one run.

    python bench/run.py                 # everything: table + plots in bench/results/
    python bench/run.py --peers sdk,asyncthrift_peer --scale 0.5   # a quick look
    python bench/run.py --bulk-memory   # the runner's memory on a 1 M-line input (slow)

How it is fair: the mock runs in its own process pinned to one core, each client in its own
process pinned to the other (so a client's CPU time is its own and LiteLLM's import or
threads cannot disturb the others); every client gets the same requests, submitted all at
once, the same limits, and a freshly reset mock (counters zeroed, buckets full). The
server's side (429s, admitted tokens over time) is read from the mock, not from the
clients. Each run has a deadline of 1.5 times its theoretical minimum plus 4 s, after
which what is unfinished counts as failed.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path[:0] = [str(HERE), str(ROOT)]

from common import revision  # noqa: E402
from workloads import Workload, build, mock_config  # noqa: E402

from asyncthrift.mock import remote_reset, remote_stats, spawn_mock_process  # noqa: E402

RESULTS = HERE / "results"
API_KEY = "bench-key"


# -- the child: one client, every workload ----------------------------------------------------


def _pin(cpu: int) -> None:
    if hasattr(os, "sched_setaffinity") and (os.cpu_count() or 1) > 1:
        os.sched_setaffinity(0, {cpu})


async def _one_run(peer: Any, base_url: str, workload: Workload) -> dict[str, Any]:
    from peers import RunContext

    loop = asyncio.get_running_loop()
    ctx = RunContext(base_url=base_url, api_key=API_KEY, workload=workload, loop_time=loop.time)
    cap = 1.5 * workload.theoretical_min + 4.0
    remote_reset(base_url)
    cpu0 = time.process_time()
    ctx.t0 = loop.time()
    task = asyncio.create_task(peer.run(ctx))
    try:
        await asyncio.wait_for(asyncio.shield(task), cap)
        cut = False
    except TimeoutError:
        cut = True
        task.cancel()
        try:
            await task
        except BaseException:
            pass
    except Exception as exc:  # a peer that crashes is reported, not fatal to the bench
        cut = False
        ctx.notes.append(f"peer raised {type(exc).__name__}: {exc}")
    cpu = time.process_time() - cpu0
    server = remote_stats(base_url)
    n = len(workload.requests)
    done = [t for t, ok in zip(ctx.finished_at, ctx.ok, strict=True) if ok and t is not None]
    finals = [t for t in ctx.finished_at if t is not None]
    return {
        "workload": workload.name,
        "n": n,
        "succeeded": len(done),
        "rate_limited": server["rate_limited"],
        "server_requests": server["requests"],
        "retries": ctx.retries,
        "makespan": max(done) if len(done) == n else None,
        "last_outcome": max(finals) if finals else None,
        "cut_at_deadline": cut,
        "deadline": cap,
        "theoretical_min": workload.theoretical_min,
        "latencies": sorted(done),
        "cpu_seconds": cpu,
        "errors": ctx.errors,
        "notes": ctx.notes,
        "log": server["log"],
    }


async def _child_main(peer_name: str, urls: dict[str, str], scale: float) -> list[dict[str, Any]]:
    from peers import load

    peer = load(peer_name)
    out = []
    for workload in build(scale):
        url = urls["shared" if workload.shadow_load else "plain"]
        out.append(await _one_run(peer, url, workload))
    return out


def child(args: argparse.Namespace) -> int:
    _pin(0)
    urls = dict(item.split("=", 1) for item in args.urls.split(","))
    runner: Any = asyncio.run
    try:
        import uvloop

        runner = uvloop.run
    except ImportError:
        pass
    results = runner(_child_main(args.child, urls, args.scale))
    Path(args.result).write_text(json.dumps(results))
    return 0


# -- the parent: mocks, children, table, plots -------------------------------------------------


def _percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    k = min(len(values) - 1, max(0, round(q / 100 * len(values) + 0.5) - 1))
    return values[k]


def _fmt(v: float | None, spec: str) -> str:
    return "—" if v is None else format(v, spec)


def table(results: dict[str, list[dict[str, Any]]], titles: dict[str, str]) -> str:
    """The markdown table: one row per (workload, client)."""
    head = (
        "| workload | client | success | 429s | retries | makespan ÷ min | p50 latency | "
        "p99 latency | CPU s / 1k req |\n|---|---|---:|---:|---:|---:|---:|---:|---:|\n"
    )
    rows = []
    workloads = [r["workload"] for r in next(iter(results.values()))]
    for w_i, w in enumerate(workloads):
        for peer, runs in results.items():
            r = runs[w_i]
            ratio = (
                f"{r['makespan'] / r['theoretical_min']:.2f}"
                if r["makespan"] is not None
                else f"✗ ({r['succeeded'] / r['n']:.0%} done)"
            )
            lat = r["latencies"]
            rows.append(
                f"| {w} | {titles[peer]} | {r['succeeded']}/{r['n']} | {r['rate_limited']} | "
                f"{r['retries']} | {ratio} | {_fmt(_percentile(lat, 50), '.2f')} s | "
                f"{_fmt(_percentile(lat, 99), '.2f')} s | "
                f"{r['cpu_seconds'] / r['n'] * 1000:.2f} |"
            )
    return head + "\n".join(rows) + "\n"


def winners(results: dict[str, list[dict[str, Any]]], titles: dict[str, str]) -> list[str]:
    """Columns where some peer does strictly better than asyncthrift, per workload."""
    ours = results.get("asyncthrift_peer")
    if ours is None:
        return []
    out = []
    for w_i, mine in enumerate(ours):
        for peer, runs in results.items():
            if peer == "asyncthrift_peer":
                continue
            r = runs[w_i]
            w = r["workload"]
            lat, my_lat = r["latencies"], mine["latencies"]
            complete = r["succeeded"] == r["n"]
            checks = [
                ("429s", r["rate_limited"] < mine["rate_limited"]),
                ("retries", r["retries"] < mine["retries"]),
                (
                    "makespan",
                    complete and mine["makespan"] is not None and r["makespan"] < mine["makespan"],
                ),
                (
                    "p50 latency",
                    complete and (_percentile(lat, 50) or 1e9) < (_percentile(my_lat, 50) or 0),
                ),
                (
                    "p99 latency",
                    complete and (_percentile(lat, 99) or 1e9) < (_percentile(my_lat, 99) or 0),
                ),
                ("CPU", r["cpu_seconds"] < mine["cpu_seconds"]),
            ]
            for column, better in checks:
                if better:
                    out.append(f"{w}: {titles[peer]} beats asyncthrift on {column}")
    return out


def plots(
    results: dict[str, list[dict[str, Any]]], titles: dict[str, str], scale: float
) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    workloads = {w.name: w for w in build(scale)}
    files = []
    peers = list(results)
    for w_i, name in enumerate(workloads):
        w = workloads[name]
        lim = w.limits
        cols = 3
        rows = (len(peers) + cols - 1) // cols
        fig, axes = plt.subplots(
            rows, cols, figsize=(15, 3.6 * rows), sharex=True, sharey=True, squeeze=False
        )
        horizon = max((r[w_i]["last_outcome"] or 0.0) for r in results.values())
        horizon = max(horizon, w.theoretical_min) * 1.05
        bin_s = max(0.25, horizon / 80)
        nbins = int(horizon / bin_s) + 1
        for ax, peer in zip(axes.flat, peers, strict=False):
            r = results[peer][w_i]
            tin = [0.0] * nbins
            tout = [0.0] * nbins
            refused = []
            for t, _cls, inp, outp, status in r["log"]:
                b = min(nbins - 1, int(t / bin_s))
                if status == 200:
                    tin[b] += inp / bin_s
                    tout[b] += outp / bin_s
                elif status == 429:
                    refused.append(t)
            xs = [i * bin_s for i in range(nbins)]
            ax.step(xs, tin, where="post", label="input tokens/s admitted", color="tab:blue")
            ax.step(xs, tout, where="post", label="output tokens/s admitted", color="tab:orange")
            share = 1 - w.shadow_load
            assert lim.itpm is not None and lim.otpm is not None
            ax.axhline(
                lim.itpm / lim.period * share, color="tab:blue", ls="--", lw=1, label="input limit"
            )
            ax.axhline(
                lim.otpm / lim.period * share,
                color="tab:orange",
                ls="--",
                lw=1,
                label="output limit",
            )
            if refused:
                ax.plot(refused, [0] * len(refused), "|", color="red", ms=12, label="429")
            ax.axvline(w.theoretical_min, color="gray", ls=":", lw=1, label="theoretical min")
            status = (
                f"done in {r['makespan']:.1f} s"
                if r["makespan"] is not None
                else f"{r['succeeded']}/{r['n']} done"
            )
            ax.set_title(f"{titles[peer]} — {status}, {r['rate_limited']} × 429", fontsize=10)
            ax.set_xlabel("seconds")
            ax.set_ylabel("tokens / s")
            ax.grid(alpha=0.3)
        for ax in list(axes.flat)[len(peers) :]:
            ax.axis("off")
        axes.flat[0].legend(fontsize=7, loc="upper right")
        note = " (limit lines: the share left by the other consumer)" if w.shadow_load else ""
        fig.suptitle(f"{w.title}: tokens admitted by the server per second{note}")
        fig.tight_layout()
        path = RESULTS / f"admitted_{name}.png"
        fig.savefig(path, dpi=80)
        plt.close(fig)
        files.append(path.name)

    fig, axes = plt.subplots(1, len(workloads), figsize=(15, 4.2), squeeze=False)
    for ax, (w_i, name) in zip(axes.flat, enumerate(workloads), strict=True):
        for peer in peers:
            r = results[peer][w_i]
            lat = r["latencies"]
            if lat:
                ys = [(i + 1) / r["n"] for i in range(len(lat))]
                ax.step(lat, ys, where="post", label=titles[peer])
        ax.axvline(workloads[name].theoretical_min, color="gray", ls=":", lw=1)
        ax.set_title(workloads[name].title, fontsize=10)
        ax.set_xlabel("seconds from submission to answer")
        ax.set_ylabel("share of all requests answered")
        ax.set_ylim(0, 1.02)
        ax.grid(alpha=0.3)
    axes.flat[0].legend(fontsize=7, loc="lower right")
    fig.suptitle("Latency CDFs (everything submitted at t = 0; failures never reach the top)")
    fig.tight_layout()
    path = RESULTS / "latency_cdf.png"
    fig.savefig(path, dpi=80)
    plt.close(fig)
    files.append(path.name)
    return files


def parent(args: argparse.Namespace) -> int:
    from peers import PEERS, load

    started = time.monotonic()
    names = args.peers.split(",") if args.peers else list(PEERS)
    workloads = build(args.scale)
    for w in workloads:
        print(
            f"workload {w.name}: {len(w.requests)} requests, "
            f"theoretical min {w.theoretical_min:.1f} s"
        )
    RESULTS.mkdir(exist_ok=True)
    results: dict[str, list[dict[str, Any]]] = {}
    titles: dict[str, str] = {}
    skipped: dict[str, str] = {}
    shadow = next(w.shadow_load for w in workloads if w.shadow_load)
    with (
        spawn_mock_process(mock_config(0.0), cpu=1) as plain,
        spawn_mock_process(mock_config(shadow), cpu=1) as shared,
        tempfile.TemporaryDirectory() as tmp,
    ):
        for name in names:
            titles[name] = load(name).TITLE if name != "litellm_router" else "LiteLLM Router"
            out = Path(tmp) / f"{name}.json"
            t = time.monotonic()
            argv = [
                sys.executable, str(Path(__file__).resolve()), "--child", name,
                "--urls", f"plain={plain},shared={shared}", "--result", str(out),
                "--scale", str(args.scale),
            ]  # fmt: skip
            proc = subprocess.run(argv, capture_output=True, text=True, timeout=600)
            if proc.returncode != 0 or not out.exists():
                reason = (proc.stderr.strip().splitlines() or ["no output"])[-1]
                skipped[name] = reason
                print(f"  {name}: FAILED ({reason})")
                continue
            results[name] = json.loads(out.read_text())
            summary = ", ".join(
                f"{r['workload']} {r['succeeded']}/{r['n']} ok, {r['rate_limited']}×429, "
                + (f"{r['makespan']:.1f}s" if r["makespan"] is not None else "incomplete")
                for r in results[name]
            )
            print(f"  {name}: {summary} ({time.monotonic() - t:.0f} s)")
    files = plots(results, titles, args.scale)
    wins = winners(results, titles)
    command = "python bench/run.py" + (f" --scale {args.scale}" if args.scale != 1.0 else "")
    if args.peers:
        command += f" --peers {args.peers}"
    cfg = mock_config(0.0)
    lines = [
        "# asyncthrift against its peers",
        "",
        f"Generated by `{command}` on {dt.date.today().isoformat()} "
        f"({os.cpu_count()} cores, Python {sys.version.split()[0]}; "
        f"whole run {time.monotonic() - started:.0f} s). Read peers_explained.md beside this "
        "file for what the numbers mean and why each peer behaves as it does.",
        "",
        f"Code measured: {revision()}. Mock header variant (the mock's defaults): "
        f"headers_at={cfg.headers_at}, reset_precision={cfg.reset_precision}, "
        f"remaining_rounding={cfg.remaining_rounding}; "
        "`python bench/bench_headers.py` runs asyncthrift under every variant.",
        "",
        "Workloads (all requests submitted at t = 0; limits per "
        f"{workloads[0].limits.period:g} s, i.e. time compressed "
        f"60/{workloads[0].limits.period:g}×):",
        "",
    ]
    for w in workloads:
        lim = w.limits
        lines.append(
            f"- **{w.name}** — {w.title}: {len(w.requests)} requests, "
            f"{sum(w.input_tokens):,} input / {sum(w.output_tokens):,} output tokens "
            f"(max_tokens reserved {sum(b['max_tokens'] for b in w.requests):,}); limits "
            f"{lim.rpm:g} req / {lim.itpm:,.0f} in / {lim.otpm:,.0f} out per {lim.period:g} s; "
            f"theoretical minimum {w.theoretical_min:.1f} s"
        )
    lines += ["", table(results, titles)]
    if skipped:
        lines.append("Not run: " + "; ".join(f"{k}: {v}" for k, v in skipped.items()) + "\n")
    notes = sorted({n for runs in results.values() for r in runs for n in r["notes"]})
    if notes:
        lines += ["Notes: " + "; ".join(notes), ""]
    lines += ["## Where a peer beats asyncthrift", ""]
    lines += [f"- {w}" for w in wins] or ["- nowhere"]
    lines += ["", "## Plots", ""]
    lines += [f"![{f}]({f})" for f in files]
    (RESULTS / "peers.md").write_text("\n".join(lines) + "\n")
    slim = {
        p: [{k: v for k, v in r.items() if k not in ("log", "latencies")} for r in runs]
        for p, runs in results.items()
    }
    (RESULTS / "peers.json").write_text(json.dumps(slim, indent=1) + "\n")
    print(table(results, titles))
    print("\n".join(wins))
    print(
        f"wrote {RESULTS / 'peers.md'} and {', '.join(files)} in {time.monotonic() - started:.0f} s"
    )
    return 0


# -- the bulk runner's memory ------------------------------------------------------------------


def _write_input(path: Path, lines: int, params: bool = True) -> None:
    import orjson

    with path.open("wb", buffering=1 << 20) as f:
        for i in range(lines):
            body: dict[str, Any] = {
                "model": "claude-sonnet-4-6",
                "max_tokens": 64,
                "messages": [
                    {
                        "role": "user",
                        "content": f"Classify ticket {i}: the printer on floor {i % 9} "
                        "is jammed again.",
                    }
                ],
            }
            row = {"custom_id": f"ticket-{i:07d}", "params": body if params else {"model": "x"}}
            f.write(orjson.dumps(row) + b"\n")


def _write_done(path: Path, lines: int) -> None:
    """Result lines for the first `lines` ids, as an interrupted run would have left them."""
    import orjson

    msg = {"id": "msg_0", "type": "message", "role": "assistant", "model": "claude-sonnet-4-6",
           "content": [{"type": "text", "text": "Hardware issue."}], "stop_reason": "end_turn",
           "stop_sequence": None, "usage": {"input_tokens": 24, "output_tokens": 4}}  # fmt: skip
    with path.open("wb", buffering=1 << 20) as f:
        for i in range(lines):
            row = {"custom_id": f"ticket-{i:07d}", "result": {"type": "succeeded", "message": msg}}
            f.write(orjson.dumps(row) + b"\n")


def _sample_rss(
    argv: list[str], env: dict[str, str]
) -> tuple[list[tuple[float, float]], float, float, int]:
    """Run `argv`; (time, RSS MiB) every 0.1 s, peak RSS MiB (VmHWM), seconds, exit code."""
    t0 = time.monotonic()
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    series: list[tuple[float, float]] = []
    peak = 0.0
    while proc.poll() is None:
        try:
            status = Path(f"/proc/{proc.pid}/status").read_text()
        except OSError:
            break
        fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
        rss = int(fields.get("VmRSS", "0 kB").split()[0]) / 1024
        peak = max(peak, int(fields.get("VmHWM", "0 kB").split()[0]) / 1024)
        series.append((time.monotonic() - t0, rss))
        time.sleep(0.1)
    return series, peak, time.monotonic() - t0, proc.wait()


def bulk_memory(lines: int) -> int:
    """Peak memory of `asyncthrift run` on `lines`-line inputs; writes bulk_memory.{md,png}.

    Sending a million real requests through the SDK would take hours of CPU (about 7 ms
    per request here, nearly all in the SDK), so the 1 M-line figures exercise every part of
    the runner that grows with the input instead: (a) a resumed run whose output already
    holds all but the last 2,000 results (reads 1 M input lines and 1 M-2,000 output lines,
    holds every id, runs 2,000 requests), (b) a run of 1 M lines with invalid params (reads,
    tracks and writes an errored result for every line without the network), next to
    (c) 2,000 real requests from scratch, the baseline.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    RESULTS.mkdir(exist_ok=True)
    real = 2000
    env = {**os.environ, "PYTHONPATH": str(ROOT), "ANTHROPIC_API_KEY": "bench-key"}
    rows = []
    fig, ax = plt.subplots(figsize=(9, 4.5))
    with spawn_mock_process(cpu=1) as url, tempfile.TemporaryDirectory() as tmp:
        cases = [
            (f"{real:,} requests from scratch", real, 0, True),
            (f"{lines:,} lines, resumed with {real:,} left", lines, lines - real, True),
            (f"{lines:,} lines, invalid params (no network)", lines, 0, False),
        ]
        for label, n, done, params in cases:
            src, out = Path(tmp) / "in.jsonl", Path(tmp) / "out.jsonl"
            _write_input(src, n, params)
            out.unlink(missing_ok=True)
            if done:
                _write_done(out, done)
            argv = [sys.executable, "-m", "asyncthrift.bulk", "run", str(src), "-o", str(out),
                    "--base-url", url, "--rpm", "100000", "-q"]  # fmt: skip
            series, peak, seconds, code = _sample_rss(argv, env)
            results = out.read_bytes().count(b"\n")
            rows.append((label, n, peak, seconds, code, results, src.stat().st_size))
            ax.plot(
                [t for t, _ in series],
                [r for _, r in series],
                label=f"{label}: peak {peak:.0f} MiB",
            )
            print(
                f"{label}: peak RSS {peak:.0f} MiB, {seconds:.0f} s, exit {code}, "
                f"{results:,} results"
            )
    ax.set_xlabel("seconds")
    ax.set_ylabel("resident memory (MiB)")
    ax.set_title("asyncthrift run: memory over the run")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(RESULTS / "bulk_memory.png", dpi=80)
    from asyncthrift.bulk.idset import IdTable

    table = IdTable()
    for i in range(lines):
        table.set(f"ticket-{i:07d}", 1)
    md = [
        "# Bulk runner memory",
        "",
        f"Generated by `python bench/run.py --bulk-memory` on {dt.date.today().isoformat()} "
        f"({os.cpu_count()} cores, Python {sys.version.split()[0]}). Peak resident memory (VmHWM) "
        "of the `asyncthrift run` process, default --max-in-flight 256:",
        "",
        "| run | input lines | input size | peak RSS | time | results written | exit |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for label, n, peak, seconds, code, results, size in rows:
        md.append(
            f"| {label} | {n:,} | {size / 2**20:.0f} MiB | {peak:.0f} MiB | {seconds:.0f} s "
            f"| {results:,} | {code} |"
        )
    md += [
        "",
        "The input is streamed and at most --max-in-flight requests are held, so memory does not "
        "depend on the size of the lines. What grows with the number of lines is the table of "
        f"custom_ids (for duplicates and resume): {table.nbytes / 2**20:.0f} MiB for "
        f"{lines:,} ids ({table.nbytes / lines:.0f} bytes per id: 128-bit hashes in arrays, "
        "not Python strings).",
        "",
        "![memory over time](bulk_memory.png)",
    ]
    (RESULTS / "bulk_memory.md").write_text("\n".join(md) + "\n")
    print(f"wrote {RESULTS / 'bulk_memory.md'}")
    return 0


def main() -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    from peers import PEERS

    p.add_argument("--peers", help="comma-separated subset of: " + ", ".join(PEERS))
    p.add_argument(
        "--scale", type=float, default=1.0, help="multiply the workloads' request counts"
    )
    p.add_argument(
        "--bulk-memory", action="store_true", help="measure the bulk runner on 1 M lines"
    )
    p.add_argument("--lines", type=int, default=1_000_000, help=argparse.SUPPRESS)
    p.add_argument("--child", help=argparse.SUPPRESS)
    p.add_argument("--urls", help=argparse.SUPPRESS)
    p.add_argument("--result", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        return child(args)
    if args.bulk_memory:
        return bulk_memory(args.lines)
    return parent(args)


if __name__ == "__main__":
    sys.exit(main())
