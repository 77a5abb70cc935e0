"""Shared budgets across processes: throughput and Redis commands per request, 1/2/4/8 processes.

Every process (``tests/shared_worker.py``) runs ``Thrift(shared=redis://...)`` on one key
against one mock (its own process) whose limits bind in all three dimensions, firing its
share of a fixed total workload at a common instant. Reported per run: makespan against the
key's theoretical minimum, requests/s, 429s at the mock, and Redis commands per request
(each process's own count, cross-checked with ``INFO commandstats`` of the server).

    PYTHONPATH=$PWD python bench/bench_shared.py [--total 600] [--period 8] [--plot out.png]

LiteLLM's Router in Redis mode is not run here: see bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

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


def run(processes: int, total: int, period: float) -> dict[str, float]:
    per = total // processes
    bodies = [b for i in range(processes) for b in mixed_workload(per, seed=100 + i)]
    n = len(bodies)
    total_in = sum(analyze_input(b).total for b in bodies)
    total_out = n * sum(OUT_RANGE) / 2
    limits = Limits(rpm=n / 3, itpm=total_in / 3, otpm=total_out / 3, period=period)
    lim = {"rpm": limits.rpm, "itpm": limits.itpm, "otpm": limits.otpm, "period": period}
    with (
        RedisServer() as server,
        spawn_mock_process(limits=limits, latency=0.02, output_tokens=OUT_RANGE) as url,
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
        c = remote_stats(url)
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
        "commands_per_request": sum(r["commands"] for r in reports) / max(1, ok),
        "commands_per_request_max": max(per_process),
        "server_commands_per_request": server_commands / max(1, ok),
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--total", type=int, default=600)
    ap.add_argument("--period", type=float, default=8.0)
    ap.add_argument("--processes", default="1,2,4,8")
    ap.add_argument("--plot", default=None)
    ap.add_argument("--json", default=None)
    a = ap.parse_args()
    rows = [run(int(p), a.total, a.period) for p in a.processes.split(",")]
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
    if a.json:
        Path(a.json).write_text(json.dumps(rows, indent=1))
    if a.plot:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(1, 2, figsize=(9, 3.5))
        xs = [r["processes"] for r in rows]
        ax[0].plot(xs, [r["throughput"] for r in rows], "o-", label="asyncthrift shared")
        ax[0].plot(xs, [r["ideal_throughput"] for r in rows], "k--", label="limit (ideal)")
        ax[0].set_xlabel("processes")
        ax[0].set_ylabel("requests/s")
        ax[0].legend()
        ax[1].plot(xs, [r["commands_per_request"] for r in rows], "o-", label="mean")
        ax[1].plot(xs, [r["commands_per_request_max"] for r in rows], "x:", label="max process")
        ax[1].set_xlabel("processes")
        ax[1].set_ylabel("Redis commands / request")
        ax[1].legend()
        fig.tight_layout()
        fig.savefig(a.plot, dpi=100)


if __name__ == "__main__":
    main()
