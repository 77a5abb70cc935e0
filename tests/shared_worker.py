"""One worker process of the shared-budget workloads (tests and `bench/bench_shared.py`).

``python -m tests.shared_worker CONFIG_JSON OUT_JSON``: waits until the config's wall-clock
``start_at``, fires its whole workload at once through ``Thrift(shared=...)``, and writes
what it measured. `run_workers` starts several and collects their reports.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


async def _work(cfg: dict[str, Any]) -> dict[str, Any]:
    from asyncthrift import Limits, Thrift
    from asyncthrift.shared import SharedBudget
    from asyncthrift.workload import mixed_workload

    bodies = mixed_workload(cfg["n"], seed=cfg["seed"], chinese_share=cfg.get("chinese", 0.4))
    limits = Limits(**cfg["limits"])
    client = Thrift(
        api_key=cfg.get("api_key", "k"),
        base_url=cfg["url"],
        limits=limits,
        shared=cfg["redis"],
        shared_fallback=cfg.get("fallback"),
        max_retries=8,
    )
    ok = failed = 0
    ends: list[float] = []
    errors: list[str] = []
    fallback_takes = 0
    fallback_time = 0.0

    async def one(body: dict[str, Any]) -> None:
        nonlocal ok, failed
        try:
            await client.messages.create(**body)
        except Exception as exc:
            failed += 1
            errors.append(f"{type(exc).__name__}: {exc}"[:200])
        else:
            ok += 1
        ends.append(time.time())

    async def watch() -> None:
        # how long this process admitted from its fallback, and how much
        nonlocal fallback_time
        step = 0.01
        while True:
            await asyncio.sleep(step)
            for budgets in client.budgets().values():
                for b in budgets:
                    if isinstance(b, SharedBudget) and b.mode != "shared":
                        fallback_time += step
                        break

    async with client:
        client._model_class(bodies[0]["model"])  # build the budget before the clock starts
        await asyncio.sleep(max(0.0, cfg["start_at"] - time.time()))
        watcher = asyncio.create_task(watch())
        await asyncio.gather(*(one(b) for b in bodies))
        watcher.cancel()
        stats = client.stats()
        store = client._pipeline.shared
        assert store is not None
        shared = store.stats()
        for b in store.budgets:
            fallback_takes += b.fallback_takes
    return {
        "ok": ok,
        "failed": failed,
        "errors": errors[:5],
        "end": max(ends) if ends else cfg["start_at"],
        "rate_limited": stats.rate_limited,
        "upstream_calls": stats.upstream_calls,
        "commands": shared.commands,
        "redis_errors": shared.errors,
        "grants": shared.grants,
        "fallback_takes": fallback_takes,
        "fallback_time": fallback_time,
    }


def run_workers(configs: list[dict[str, Any]], timeout: float = 120.0) -> list[dict[str, Any]]:
    """Run one worker process per config; their reports, in order."""
    env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    with tempfile.TemporaryDirectory(prefix="asyncthrift-shared-") as tmp:
        procs = []
        outs = []
        for i, cfg in enumerate(configs):
            out = Path(tmp) / f"w{i}.json"
            outs.append(out)
            procs.append(
                subprocess.Popen(
                    [sys.executable, "-m", "tests.shared_worker", json.dumps(cfg), str(out)],
                    cwd=ROOT,
                    env=env,
                )
            )
        deadline = time.monotonic() + timeout
        for p in procs:
            try:
                p.wait(timeout=max(1.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        return [json.loads(o.read_text()) if o.exists() else {"missing": True} for o in outs]


def main() -> None:
    cfg = json.loads(sys.argv[1])
    report = asyncio.run(_work(cfg))
    Path(sys.argv[2]).write_text(json.dumps(report))


if __name__ == "__main__":
    main()
