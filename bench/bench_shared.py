"""Shared budgets across processes: throughput and Redis commands per request, 1/2/4/8 processes.

Every process (``tests/shared_worker.py``) runs ``Thrift(shared=redis://...)`` on one key
against one mock (its own process) whose limits bind in all three dimensions, firing its
share of a fixed total workload at a common instant. Reported per run: makespan against the
key's theoretical minimum, requests/s, 429s at the mock, and Redis commands per request
(each process's own count, cross-checked with ``INFO commandstats`` of the server).

    PYTHONPATH=$PWD python bench/bench_shared.py [--total 600] [--period 8] [--plot out.png]

Then the same runs with LiteLLM's Router in place of asyncthrift (`--litellm-budget S`, 0
skips it): one `bench/peers/litellm_router_redis.py` process each, its Redis settings on
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
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from asyncthrift import Limits  # noqa: E402
from asyncthrift.demo import theoretical_minimum  # noqa: E402
from asyncthrift.mock import remote_stats, spawn_mock_process  # noqa: E402
from asyncthrift.mock._tokenizer import analyze_input  # noqa: E402
from asyncthrift.workload import mixed_workload  # noqa: E402
from tests.redis_server import RedisServer  # noqa: E402
from tests.shared_worker import run_workers  # noqa: E402

OUT_RANGE = (40, 300)
LITELLM_WORKER = ROOT / "bench" / "peers" / "litellm_router_redis.py"


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


def _workload(processes: int, total: int, period: float) -> tuple[int, Limits]:
    per = total // processes
    bodies = [b for i in range(processes) for b in mixed_workload(per, seed=100 + i)]
    n = len(bodies)
    total_in = sum(analyze_input(b).total for b in bodies)
    total_out = n * sum(OUT_RANGE) / 2
    return per, Limits(rpm=n / 3, itpm=total_in / 3, otpm=total_out / 3, period=period)


def run(processes: int, total: int, period: float) -> dict[str, float]:
    per, limits = _workload(processes, total, period)
    lim = {"rpm": limits.rpm, "itpm": limits.itpm, "otpm": limits.otpm, "period": period}
    with (
        RedisServer() as server,
        spawn_mock_process(
            limits=limits, latency=0.02, output_tokens=OUT_RANGE, record=True
        ) as url,
    ):
        start_at = time.time() + 3.0 + 0.5 * processes
        cfgs = [
            {
                "n": per,
                "seed": 100 + i,
                "limits": lim,
                "url": url,
                "redis": server.url,
                "start_at": start_at,
            }
            for i in range(processes)
        ]
        reports = run_workers(cfgs, timeout=300)
        c, wall0 = _mock_wall0(url)
        server_commands = commandstats(server.port)
    ok = sum(r["ok"] for r in reports)
    t_min = theoretical_minimum(
        limits, c["ok"] + c["cancelled"], c["input_tokens"], c["output_tokens"]
    )
    makespan = max(r["end"] for r in reports) - start_at
    per_process = [r["commands"] / max(1, r["ok"]) for r in reports]
    return {
        "processes": processes,
        "requests": ok,
        "failed": sum(r["failed"] for r in reports),
        "makespan": makespan,
        "t_min": t_min,
        "ratio": makespan / t_min,
        "throughput": ok / makespan,
        "ideal_throughput": ok / t_min,
        "rate_limited": c["rate_limited"],
        "sent_above_limit": sent_above_limit(c["log"], wall0, start_at, limits),
        "commands_per_request": sum(r["commands"] for r in reports) / max(1, ok),
        "commands_per_request_max": max(per_process),
        "server_commands_per_request": server_commands / max(1, ok),
    }


def run_litellm(processes: int, total: int, period: float, budget: float) -> dict[str, Any]:
    """The same workload through LiteLLM's Router + Redis, one worker process each."""
    per, limits = _workload(processes, total, period)
    lim = {"rpm": limits.rpm, "itpm": limits.itpm, "otpm": limits.otpm, "period": period}
    env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    env.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    env.setdefault("LITELLM_LOCAL_ANTHROPIC_BETA_HEADERS", "True")
    with (
        RedisServer() as server,
        spawn_mock_process(
            limits=limits, latency=0.02, output_tokens=OUT_RANGE, record=True
        ) as url,
        tempfile.TemporaryDirectory(prefix="bench-litellm-redis-") as tmp,
    ):
        outs = [Path(tmp) / f"w{i}.json" for i in range(processes)]
        base = {"limits": lim, "url": url, "redis_port": server.port, "budget": budget}
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
    ap.add_argument("--total", type=int, default=600)
    ap.add_argument("--period", type=float, default=8.0)
    ap.add_argument("--processes", default="1,2,4,8")
    ap.add_argument("--plot", default=None)
    ap.add_argument("--json", default=None)
    ap.add_argument("--litellm-budget", type=float, default=40.0)
    a = ap.parse_args()
    counts = [int(p) for p in a.processes.split(",")]
    rows = [run(p, a.total, a.period) for p in counts]
    peers = (
        [run_litellm(p, a.total, a.period, a.litellm_budget) for p in counts]
        if a.litellm_budget > 0
        else []
    )
    print(
        "| processes | makespan / minimum | requests/s (ideal) | 429s | "
        "Redis cmds/request (max process; server count) |"
    )
    print("|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['processes']} | {r['makespan']:.1f} s / {r['t_min']:.1f} s = {r['ratio']:.2f}x "
            f"| {r['throughput']:.1f} ({r['ideal_throughput']:.1f}) | {r['rate_limited']} "
            f"| {r['commands_per_request']:.3f} ({r['commands_per_request_max']:.3f}; "
            f"{r['server_commands_per_request']:.3f}) |"
        )
    print("\nasyncthrift, requests sent to the mock above rpm (windows of one period):")
    print(", ".join(f"{r['processes']}: {r['sent_above_limit']}" for r in rows))
    if peers:
        print(
            f"\nLiteLLM Router + Redis (stopped after {a.litellm_budget:g} s; "
            f"sync interval {peers[0]['sync_interval']:.3f} s, "
            f"periodic sync tasks running: {sum(p['sync_tasks'] for p in peers)})"
        )
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
        Path(a.json).write_text(json.dumps({"asyncthrift": rows, "litellm": peers}, indent=1))
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
