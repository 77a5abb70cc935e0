"""Shared budgets across processes: makespan and Redis commands per request, 1/2/4/8 processes.

Every process (``tests/shared_worker.py``) runs ``Thrift(shared=redis://...)`` on one key
against one mock (its own process) whose limits bind in all three dimensions: the work is
one full bucket plus ``--beyond`` seconds of refill in each. A real redis-server; the clock
starts once every worker has built its client. The default shape is realistic (answers of
200 ms + 1 ms per output token, ±10 %, about 80 tokens, for max_tokens of 64-1024);
``--shape fast`` is the earlier 20 ms one. Reported per run: makespan against the key's
theoretical minimum, requests/s, 429s at the mock, Redis commands per request (each
process's own count, cross-checked with ``INFO commandstats``), and a breakdown per process
(admissions against the limit, the first admission, lease sizes, Redis calls by kind and
the time they took). ``--outage AT,S`` kills Redis AT s after the start and restarts it
empty S s later; ``--timeline out.png`` draws admissions and tokens per second per process.

    PYTHONPATH=$PWD python bench/bench_shared.py --period 60 [--processes 4] [--beyond 25]
        [--timeline out.png] [--outage 12,5] [--litellm-budget 120]

Then, with ``--litellm-budget S``, the same runs with LiteLLM's Router in place of
asyncthrift: one `bench/peers/litellm_router_redis.py` process each, its Redis settings on
the Router, one common compressed clock anchored at the common start. It is stopped after
S seconds; what it has not finished by then is reported as a share finished. Redis
commands are every command the server counted between the start and the end (`INFO
commandstats`, INFO itself excluded). "Sent above the limit" is, for both clients, the sum
over the windows of the common clock (one period each, the first at the start) of the
requests reaching the mock beyond the key's rpm.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from asyncthrift import Limits  # noqa: E402
from asyncthrift.mock import remote_stats, spawn_mock_process  # noqa: E402
from asyncthrift.mock._answers import answer_for, request_hash  # noqa: E402
from asyncthrift.mock._tokenizer import analyze_input  # noqa: E402
from asyncthrift.tools.demo import theoretical_minimum  # noqa: E402
from asyncthrift.tools.workload import mixed_workload  # noqa: E402
from tests.redis_server import RedisServer  # noqa: E402
from tests.shared_worker import run_workers  # noqa: E402

sys.path.insert(0, str(ROOT / "bench"))
from shared_idle import idle_output, last_answers  # noqa: E402

#: The workload's shape: the mock's latency and answer lengths, the requests' max_tokens.
#: "real" (the default): answers of 200 ms + 1 ms per output token, ±10 %, about 80
#: tokens long, for max_tokens of 64-1024 (five times the answer on average); "fast": the
#: earlier compressed shape, 20 ms answers of 40-300 tokens for max_tokens of 256-512.
SHAPES: dict[str, dict[str, Any]] = {
    "real": {
        "latency": 0.2,
        "latency_per_token": 0.001,
        "latency_jitter": 0.1,
        "output_tokens": (60, 100),
        "max_tokens": (64, 128, 256, 512, 1024),
    },
    "fast": {
        "latency": 0.02,
        "latency_per_token": 0.0,
        "latency_jitter": 0.0,
        "output_tokens": (40, 300),
        "max_tokens": (256, 384, 512),
    },
}
LITELLM_WORKER = ROOT / "bench" / "peers" / "litellm_router_redis.py"
#: the trace's call kinds, in the order the breakdown prints them
KINDS = ("need", "refill", "return", "ceiling", "rejoin", "other")


def commandstats(port: int) -> int:
    """Script calls the server has counted (evalsha + script load + eval)."""
    import redis

    r = redis.Redis(port=port)
    stats = r.info("commandstats")
    r.close()
    return sum(
        int(v["calls"])
        for k, v in stats.items()
        if k in ("cmdstat_evalsha", "cmdstat_eval", "cmdstat_script|load", "cmdstat_script")
    )


def all_commands(port: int) -> dict[str, int]:
    """Calls per command the server has counted, INFO excluded (the bench's own probe)."""
    import redis

    r = redis.Redis(port=port)
    stats = r.info("commandstats")
    r.close()
    return {
        k.removeprefix("cmdstat_"): int(v["calls"]) for k, v in stats.items() if k != "cmdstat_info"
    }


def sent_above_limit(log: list[list[Any]], wall0: float, start_at: float, lim: Limits) -> int:
    """Requests reaching the mock beyond rpm, summed over windows of one period from start_at.

    `log` is the mock's admission log (seconds since the mock started, ...); `wall0` the wall
    time the mock started.
    """
    per_window: dict[int, int] = {}
    for entry in log:
        k = int((wall0 + entry[0] - start_at) // lim.period)
        per_window[k] = per_window.get(k, 0) + 1
    rpm = lim.rpm or 0.0
    return int(sum(max(0.0, c - rpm) for c in per_window.values()))


def _mock_wall0(url: str) -> tuple[dict[str, Any], float]:
    t = time.time()
    c = remote_stats(url)
    return c, t - c["uptime"]


def _workload(
    processes: int, total: int, period: float, beyond: float, shape: str
) -> tuple[int, Limits]:
    """Each process's share, and limits under which the whole work is one full bucket plus
    `beyond` seconds of refill in every dimension (all three bind at once)."""
    sh = SHAPES[shape]
    per = total // processes
    bodies = [
        b
        for i in range(processes)
        for b in mixed_workload(per, seed=100 + i, max_tokens=sh["max_tokens"])
    ]
    n = len(bodies)
    total_in = sum(analyze_input(b).total for b in bodies)
    total_out = sum(
        answer_for(request_hash(b), sh["output_tokens"], b["max_tokens"]).output_tokens
        for b in bodies
    )
    share = period / (period + beyond)
    return per, Limits(rpm=n * share, itpm=total_in * share, otpm=total_out * share, period=period)


#: The mock's readings of what the API leaves open (``--headers-at``, ``--reset-precision``).
MOCK_SETTINGS: dict[str, Any] = {}


def _mock(limits: Limits, shape: str) -> Any:
    sh = SHAPES[shape]
    return spawn_mock_process(
        **MOCK_SETTINGS,
        limits=limits,
        latency=sh["latency"],
        latency_per_token=sh["latency_per_token"],
        latency_jitter=sh["latency_jitter"],
        output_tokens=sh["output_tokens"],
        record=True,
    )


def left_minimum(
    limits: Limits, demands: tuple[float, float, float], load: float, schedule: list[Any]
) -> float:
    """`theoretical_minimum` at the refill another consumer leaves: it eats `load` of every
    limit's refill, or from each ``(t, share)`` of `schedule` on that share (the mock's
    ``shadow_load`` / ``shadow_schedule``, from the first request: about the start)."""
    steps = [(0.0, load)] + [(float(t), float(x)) for t, x in schedule]
    best = 0.0
    for cap, demand in zip((limits.rpm, limits.itpm, limits.otpm), demands, strict=True):
        if cap is None or demand <= cap:
            continue
        rate, left, t = cap / limits.period, demand - cap, 0.0
        for k, (at, share) in enumerate(steps):
            end = steps[k + 1][0] if k + 1 < len(steps) else float("inf")
            got = rate * (1.0 - share) * (end - max(at, t))
            if got >= left:
                t = max(at, t) + left / (rate * (1.0 - share))
                break
            left -= got
            t = end
        best = max(best, t)
    return best


#: ``--shadow-load`` and ``--shadow-schedule`` as given (for `left_minimum`).
SHADOW: dict[str, Any] = {"load": 0.0, "schedule": []}


def run(
    processes: int,
    total: int,
    period: float,
    *,
    beyond: float = 25.0,
    shape: str = "real",
    outage: tuple[float, float] | None = None,
    local: bool = False,
) -> dict[str, Any]:
    """One run of `processes` workers; with `outage` (at, seconds) Redis is SIGKILLed `at`
    seconds after the start and restarted empty on its port `seconds` later; `local`: one
    client without ``shared=`` (the baseline: one process with the key's whole limit)."""
    per, limits = _workload(processes, total, period, beyond, shape)
    lim = {"rpm": limits.rpm, "itpm": limits.itpm, "otpm": limits.otpm, "period": period}
    timers: list[threading.Timer] = []
    with RedisServer() as server, _mock(limits, shape) as url:
        cfgs = [
            {
                "n": per,
                "seed": 100 + i,
                "limits": lim,
                "url": url,
                "redis": None if local else server.url,
                "max_tokens": SHAPES[shape]["max_tokens"],
                "sync": True,
                "trace": True,
            }
            for i in range(processes)
        ]
        server_commands = 0

        def outage_at(start_at: float) -> None:
            if outage is None:
                return
            at, seconds = outage

            def kill() -> None:
                nonlocal server_commands
                server_commands += commandstats(server.port)
                server.kill()

            now = time.time()
            timers.append(threading.Timer(start_at + at - now, kill))
            timers.append(
                threading.Timer(start_at + at + seconds - now, lambda: server.start(same_port=True))
            )
            for t in timers:
                t.start()

        reports = run_workers(cfgs, timeout=600, on_start=outage_at)
        for t in timers:
            t.join()
        missing = [r for r in reports if r.get("missing")]
        if missing:
            raise RuntimeError(f"{len(missing)} worker(s) wrote no report")
        c, wall0 = _mock_wall0(url)
        server_commands += commandstats(server.port)
    start_at = reports[0]["start_at"]
    ok = sum(r["ok"] for r in reports)
    t_min = theoretical_minimum(
        limits, c["ok"] + c["cancelled"], c["input_tokens"], c["output_tokens"]
    )
    makespan = max(r["end"] for r in reports) - start_at
    t_left = left_minimum(
        limits,
        (c["ok"] + c["cancelled"], c["input_tokens"], c["output_tokens"]),
        SHADOW["load"],
        SHADOW["schedule"],
    )
    per_process = [r["commands"] / max(1, r["ok"]) for r in reports]
    return {
        "processes": processes,
        "local": local,
        "shape": shape,
        "period": period,
        "beyond": beyond,
        "outage": outage,
        "limits": lim,
        "requests": ok,
        "sent": per * processes,
        "failed": sum(r["failed"] for r in reports),
        "errors": [e for r in reports for e in r["errors"]][:5],
        "makespan": makespan,
        "t_min": t_min,
        "ratio": makespan / t_min,
        "t_min_left": t_left,
        "ratio_left": makespan / t_left if t_left > 0 else float("nan"),
        "throughput": ok / makespan,
        "ideal_throughput": ok / t_min,
        "rate_limited": c["rate_limited"],
        "sent_above_limit": sent_above_limit(c["log"], wall0, start_at, limits),
        "refused_at": [round(wall0 + e[0] - start_at, 1) for e in c["log"] if e[-1] == 429],
        "commands_per_request": sum(r["commands"] for r in reports) / max(1, ok),
        "commands_per_request_max": max(per_process),
        "server_commands_per_request": server_commands / max(1, ok),
        "fallback_takes": sum(r["fallback_takes"] for r in reports),
        # notices that paid grants reserved ahead sooner (`lease.lua`; absent before them)
        "notices": sum(r.get("notices", 0) for r in reports),
        "start_at": start_at,
        "traces": [r["trace"] for r in reports],
    }


def breakdown(row: dict[str, Any]) -> list[str]:
    """Where the time goes, per process: admissions against the limit, the first admission
    (the cold start), lease sizes, time in Redis calls and the calls by kind."""
    lim, start = row["limits"], row["start_at"]
    period = lim["period"]
    lines = [
        f"{row['processes']} processes, {row['shape']} shape, period {period:g} s "
        f"(limit {lim['rpm'] / period:.2f} requests/s, {lim['otpm'] / period:.0f} output "
        f"tokens/s): makespan {row['makespan']:.1f} s, minimum {row['t_min']:.1f} s",
        "| process | admitted | first admission (s) | admitted/s after the burst "
        "(share of the limit) | grants: median requests / output tokens | Redis calls "
        "(need/refill/return/ceiling/rejoin) | refused | s in Redis calls |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for i, tr in enumerate(row["traces"]):
        adm = sorted(a[0] - start for a in tr["admitted"])
        calls = tr["calls"]
        grants = [c for c in calls if c[3] in (0, 1) and c[2] in ("need", "refill")]
        g_req = statistics.median(c[4] for c in grants) if grants else 0.0
        g_out = statistics.median(c[6] for c in grants) if grants else 0.0
        kinds = "/".join(str(sum(1 for c in calls if c[2] == k)) for k in KINDS[:5])
        refused = sum(1 for c in calls if c[3] in (2, 3))
        # the burst: admissions within the first 2 s; the rate after it, to the last one
        later = [t for t in adm if t > 2.0]
        rate = len(later) / (later[-1] - 2.0) if len(later) > 1 else 0.0
        lines.append(
            f"| {i} | {len(adm)} | {adm[0] if adm else float('nan'):.2f} "
            f"| {rate:.2f} ({rate / (lim['rpm'] / period):.0%}) | {g_req:.1f} / {g_out:.0f} "
            f"| {kinds} | {refused} | {sum(c[1] for c in calls):.2f} |"
        )
    idle, seconds = idle_output(row)
    ends = ", ".join(f"{t:.1f}" for t in last_answers(row))
    lines.append(
        f"Output tokens held idle (made available, neither spent nor in flight; median from "
        f"5 s to the last admission): {idle:.0f} = {seconds:.2f} s of the refill. "
        f"Last answer per process (s): {ends}. Notices that paid grants sooner: "
        f"{row.get('notices', 0)}."
    )
    return lines


def timeline(rows: list[dict[str, Any]], path: str) -> None:
    """Admitted requests/s and tokens/s per process (1 s bins) against the limit."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(rows), 3, figsize=(14, 3.2 * len(rows)), squeeze=False)
    for ax, row in zip(axes, rows, strict=True):
        lim, start = row["limits"], row["start_at"]
        period = lim["period"]
        end = int(row["makespan"]) + 2
        xs = list(range(end))
        total_req = [0.0] * end
        total_in = [0.0] * end
        total_out = [0.0] * end
        for i, tr in enumerate(row["traces"]):
            req = [0.0] * end
            for a in tr["admitted"]:
                k = int(a[0] - start)
                if 0 <= k < end:
                    req[k] += 1
                    total_in[k] += a[2]
            out = [0.0] * end
            for d in tr["done"]:
                k = int(d[0] - start)
                if 0 <= k < end:
                    out[k] += d[2]
                    total_out[k] += d[2]
            for k in range(end):
                total_req[k] += req[k]
            ax[0].step(xs, req, where="post", lw=0.8, label=f"process {i}")
            ax[2].step(xs, out, where="post", lw=0.8)
        ax[0].step(xs, total_req, where="post", color="k", lw=1.2, label="all")
        ax[1].step(xs, total_in, where="post", color="k", lw=1.2, label="all (admitted)")
        ax[2].step(xs, total_out, where="post", color="k", lw=1.2, label="all (answered)")
        for a, cap, what in (
            (ax[0], lim["rpm"], "requests/s"),
            (ax[1], lim["itpm"], "input tokens/s"),
            (ax[2], lim["otpm"], "output tokens/s"),
        ):
            a.axhline(cap / period, color="r", ls="--", lw=1, label="limit (refill rate)")
            a.set_ylim(0, 3 * cap / period)
            a.set_ylabel(what)
            a.set_xlabel("s since the start (the burst is off the scale)")
        ax[0].set_title(
            f"{row['processes']} processes: makespan {row['makespan']:.1f} s, "
            f"minimum {row['t_min']:.1f} s",
            fontsize=9,
        )
        ax[0].legend(fontsize=7, ncol=2)
        ax[2].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=90)


def run_litellm(
    processes: int, total: int, period: float, budget: float, *, beyond: float, shape: str
) -> dict[str, Any]:
    """The same workload through LiteLLM's Router + Redis, one worker process each."""
    per, limits = _workload(processes, total, period, beyond, shape)
    lim = {"rpm": limits.rpm, "itpm": limits.itpm, "otpm": limits.otpm, "period": period}
    env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    env.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    env.setdefault("LITELLM_LOCAL_ANTHROPIC_BETA_HEADERS", "True")
    with (
        RedisServer() as server,
        _mock(limits, shape) as url,
        tempfile.TemporaryDirectory(prefix="bench-litellm-redis-") as tmp,
    ):
        outs = [Path(tmp) / f"w{i}.json" for i in range(processes)]
        base = {
            "limits": lim,
            "url": url,
            "redis_port": server.port,
            "budget": budget,
            "max_tokens": SHAPES[shape]["max_tokens"],
        }
        cfgs = [{**base, "n": per, "seed": 100 + i, "scale_sync": True} for i in range(processes)]
        start_at, before = _launch_litellm(cfgs, outs, env, server.port, budget)
        reports = [json.loads(o.read_text()) if o.exists() else {"missing": True} for o in outs]
        after = all_commands(server.port)
        by_command = {k: v - before.get(k, 0) for k, v in after.items() if v - before.get(k, 0)}
        commands = sum(by_command.values())
        c, wall0 = _mock_wall0(url)
    missing = [r for r in reports if r.get("missing")]
    if missing:
        raise RuntimeError(f"{len(missing)} LiteLLM worker(s) wrote no report")
    ok = sum(r["ok"] for r in reports)
    n = per * processes
    t_min = theoretical_minimum(
        limits, c["ok"] + c["cancelled"], c["input_tokens"], c["output_tokens"]
    )
    finished = ok == n
    makespan = max(r["end"] for r in reports) - start_at
    errors: dict[str, int] = {}
    for r in reports:
        for k, v in r["errors"].items():
            errors[k] = errors.get(k, 0) + v
    return {
        "processes": processes,
        "requests": n,
        "ok": ok,
        "finished_share": ok / n,
        "finished": finished,
        "failed": sum(r["failed"] for r in reports),
        "unfinished": sum(r["unfinished"] for r in reports),
        "errors": errors,
        "makespan": makespan if finished else None,
        "budget": budget,
        "t_min": t_min,
        "t_min_all": theoretical_minimum(
            limits,
            n,
            c["input_tokens"] * n / max(1, c["ok"]),
            c["output_tokens"] * n / max(1, c["ok"]),
        ),
        "ratio": makespan / t_min if finished else None,
        "throughput": ok / (makespan if finished else budget),
        "rate_limited": c["rate_limited"],
        "sent_to_mock": c["requests"],
        "sent_above_limit": sent_above_limit(c["log"], wall0, start_at, limits),
        "refused_at": [round(wall0 + e[0] - start_at, 1) for e in c["log"] if e[-1] == 429],
        "own_429": sum(r["own_429"] for r in reports),
        "server_commands": commands,
        "server_commands_per_request": commands / max(1, ok),
        "commands_by_name": by_command,
        "sync_tasks": sum(r["sync_tasks"] for r in reports),
        "sync_interval": reports[0]["sync_interval"],
    }


def _launch_litellm(
    cfgs: list[dict[str, Any]], outs: list[Path], env: dict[str, str], port: int, budget: float
) -> tuple[float, dict[str, int]]:
    """Start the workers, wait until all are ready, give them one start instant, wait for
    them; the start and the server's command count just before it."""
    started = []
    for cfg, out in zip(cfgs, outs, strict=True):
        p = subprocess.Popen(
            [sys.executable, str(LITELLM_WORKER), json.dumps(cfg), str(out)],
            cwd=ROOT,
            env=env,
        )
        started.append(p)
    deadline = time.monotonic() + 120.0
    while not all(out.with_suffix(".ready").exists() for out in outs):
        if time.monotonic() > deadline or any(p.poll() is not None for p in started):
            for p in started:
                p.kill()
            raise RuntimeError("LiteLLM workers did not get ready")
        time.sleep(0.05)
    before = all_commands(port)
    start_at = time.time() + 1.0
    for out in outs:
        out.with_suffix(".go").write_text(repr(start_at))
    for p in started:
        try:
            p.wait(timeout=budget + 30.0)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
    return start_at, before


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--total", type=int, default=800)
    ap.add_argument("--period", type=float, default=8.0)
    ap.add_argument(
        "--beyond", type=float, default=25.0, help="seconds of work beyond the first burst"
    )
    ap.add_argument("--shape", choices=sorted(SHAPES), default="real")
    ap.add_argument("--processes", default="1,2,4,8")
    ap.add_argument(
        "--outage",
        default=None,
        help="AT,SECONDS: SIGKILL Redis AT s after the start, restart it empty SECONDS later",
    )
    ap.add_argument("--plot", default=None)
    ap.add_argument("--timeline", default=None, help="admissions per process over time (png)")
    ap.add_argument("--json", default=None)
    ap.add_argument("--litellm-budget", type=float, default=0.0, help="0 skips LiteLLM")
    ap.add_argument(
        "--baseline",
        action="store_true",
        help="first one process without shared= (the key's whole limit, no Redis)",
    )
    ap.add_argument(
        "--headers-at",
        choices=("completion", "admission"),
        default="completion",
        help="the instant the mock's rate-limit headers describe",
    )
    ap.add_argument("--reset-precision", choices=("seconds", "milliseconds"), default="seconds")
    ap.add_argument(
        "--shadow-load",
        type=float,
        default=0.0,
        help="another consumer of the key eats this fraction of every limit (the mock's)",
    )
    ap.add_argument(
        "--shadow-schedule",
        default="",
        help="T:SHARE,...: from T s after the first request the other consumer eats SHARE",
    )
    a = ap.parse_args()
    schedule = [
        (float(t), float(x))
        for t, x in (pair.split(":") for pair in a.shadow_schedule.split(",") if pair)
    ]
    MOCK_SETTINGS.update(
        headers_at=a.headers_at,
        reset_precision=a.reset_precision,
        shadow_load=a.shadow_load,
        shadow_schedule=tuple(schedule),
    )
    SHADOW.update(load=a.shadow_load, schedule=schedule)
    counts = [int(p) for p in a.processes.split(",")]
    outage = None
    if a.outage:
        at, seconds = (float(x) for x in a.outage.split(","))
        outage = (at, seconds)
    rows = [
        run(p, a.total, a.period, beyond=a.beyond, shape=a.shape, outage=outage) for p in counts
    ]
    if a.baseline:
        rows.insert(0, run(1, a.total, a.period, beyond=a.beyond, shape=a.shape, local=True))
    peers = (
        [
            run_litellm(p, a.total, a.period, a.litellm_budget, beyond=a.beyond, shape=a.shape)
            for p in counts
        ]
        if a.litellm_budget > 0
        else []
    )
    print(
        f"shape {a.shape}, period {a.period:g} s, {a.total} requests, {a.beyond:g} s beyond "
        f"the burst, headers at {a.headers_at}, reset in {a.reset_precision}, another "
        f"consumer {a.shadow_load:g} {a.shadow_schedule}"
        f"{f', Redis down {outage[1]:g} s at {outage[0]:g} s' if outage else ''}"
    )
    print(
        "| processes | makespan / minimum | requests/s (ideal) | 429s | failed "
        "| Redis cmds/request (max process; server count) | fallback admissions |"
    )
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {'1, no Redis' if r['local'] else r['processes']} "
            f"| {r['makespan']:.1f} s / {r['t_min']:.1f} s = {r['ratio']:.2f}x "
            f"| {r['throughput']:.1f} ({r['ideal_throughput']:.1f}) | {r['rate_limited']} "
            f"| {r['failed']} of {r['sent']} "
            f"| {r['commands_per_request']:.3f} ({r['commands_per_request_max']:.3f}; "
            f"{r['server_commands_per_request']:.3f}) | {r['fallback_takes']} |"
        )
    if a.shadow_load or schedule:
        print(
            "\nagainst the minimum at the refill the other consumer leaves: "
            + ", ".join(
                f"{r['processes']}: {r['makespan']:.1f} s / {r['t_min_left']:.1f} s = "
                f"{r['ratio_left']:.2f}x"
                for r in rows
            )
        )
    print(
        "429s at (s from the start): "
        + "; ".join(f"{r['processes']}: {r['refused_at']}" for r in rows)
    )
    print("\nasyncthrift, requests sent to the mock above rpm (windows of one period):")
    print(", ".join(f"{r['processes']}: {r['sent_above_limit']}" for r in rows))
    for r in rows:
        print()
        print("\n".join(breakdown(r)))
        if r["errors"]:
            print("errors:", r["errors"])
    if peers:
        print(f"\nLiteLLM Router + Redis (stopped after {a.litellm_budget:g} s)")
        print(
            "| processes | makespan / minimum (or finished in budget) | requests/s (ideal) "
            "| 429s at the mock | sent above rpm | LiteLLM's own 429s "
            "| Redis cmds/request (server count) |"
        )
        print("|---|---|---|---|---|---|---|")
        for p in peers:
            done = (
                f"{p['makespan']:.1f} s / {p['t_min']:.1f} s = {p['ratio']:.2f}x"
                if p["finished"]
                else f"✗ {100 * p['finished_share']:.0f} % in {p['budget']:g} s "
                f"(minimum for all {p['t_min_all']:.1f} s)"
            )
            print(
                f"| {p['processes']} | {done} | {p['throughput']:.1f} "
                f"({p['requests'] / p['t_min_all']:.1f}) | {p['rate_limited']} "
                f"| {p['sent_above_limit']} | {p['own_429']} "
                f"| {p['server_commands_per_request']:.1f} |"
            )
        for p in peers:
            top = sorted(p["commands_by_name"].items(), key=lambda kv: -kv[1])[:6]
            print(f"{p['processes']} processes, commands: {top}; errors: {p['errors']}")
    if a.json:
        Path(a.json).write_text(json.dumps({"asyncthrift": rows, "litellm": peers}))
    if a.timeline:
        timeline(rows, a.timeline)
    if a.plot:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(1, 2, figsize=(9, 3.5))
        xs = [r["processes"] for r in rows]
        ax[0].plot(xs, [r["throughput"] for r in rows], "o-", label="asyncthrift shared")
        if peers:
            ax[0].plot(xs, [p["throughput"] for p in peers], "s-", label="LiteLLM Router + Redis")
        ax[0].plot(xs, [r["ideal_throughput"] for r in rows], "k--", label="limit (ideal)")
        ax[0].set_xlabel("processes")
        ax[0].set_ylabel("requests/s")
        ax[0].legend()
        ax[1].plot(xs, [r["commands_per_request"] for r in rows], "o-", label="asyncthrift mean")
        ax[1].plot(
            xs, [r["commands_per_request_max"] for r in rows], "x:", label="asyncthrift max process"
        )
        if peers:
            ax[1].plot(
                xs,
                [p["server_commands_per_request"] for p in peers],
                "s-",
                label="LiteLLM Router + Redis",
            )
            ax[1].set_yscale("log")
        ax[1].set_xlabel("processes")
        ax[1].set_ylabel("Redis commands / request")
        ax[1].legend()
        fig.tight_layout()
        fig.savefig(a.plot, dpi=100)


if __name__ == "__main__":
    main()
