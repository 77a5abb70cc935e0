"""One worker process of the shared-budget workloads (tests and `bench/bench_shared.py`).

``python -m tests.shared_worker CONFIG_JSON OUT_JSON``: builds its client (and budget), then
waits until the config's wall-clock ``start_at`` (or, with ``sync``, writes
``<OUT_JSON>.ready`` and waits for ``<OUT_JSON>.go`` holding the start the parent chose once
every worker was ready), fires its whole workload at once through ``Thrift(shared=...)``,
and writes what it measured. With ``trace`` it also records, for the bench's breakdown,
every admission (wall time, cost), every completion (wall time, tokens) and every Redis
call (start, seconds, kind, status, grant). `run_workers` starts several and collects their
reports.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


def _call_kind(args: list[str]) -> str:
    """What one `lease.lua` call was for, from its arguments (see the script's header)."""
    field = [[args[4 + 7 * d + k] for k in range(7)] for d in range(3)]
    if any(float(f[1]) > 0 for f in field):
        return "need"  # a request waits for it
    if any(float(f[2]) > 0 for f in field):
        return "refill"  # the lease ran low, nobody waits yet
    if any(float(f[6]) > 0 for f in field):
        return "rejoin"
    if any(float(f[3]) > 0 for f in field):
        return "return"
    if any(f[4] or f[5] for f in field):
        return "ceiling"
    return "other"


def _trace(trace: dict[str, list[Any]], *, local: bool = False) -> None:
    """Record admissions and Redis calls of this process (class-level wrappers: this process
    is a worker and nothing else). `local`: a client without ``shared=`` (the baseline)."""
    from asyncthrift.scheduling.budget import LocalBudget
    from asyncthrift.stores.shared import SharedBudget, SharedStore

    owner: Any = LocalBudget if local else SharedBudget
    take, call = owner.take, SharedStore.call

    def traced_take(self: LocalBudget, cost: Any, now: float) -> Any:
        trace["admitted"].append([time.time(), *cost])
        return take(self, cost, now)

    async def traced_call(self: SharedStore, budget: SharedBudget, args: list[str]) -> Any:
        t0 = time.time()
        ok, res = await call(self, budget, args)
        status = int(res[0]) if ok else -1
        granted = [float(x) for x in res[1:4]] if ok else [0.0, 0.0, 0.0]
        # after the grant: seconds until it is paid for, and the shared level per dimension
        after = [float(res[4]), *(float(x) for x in res[7:10])] if ok else [0.0] * 4
        trace["calls"].append([t0, time.time() - t0, _call_kind(args), status, *granted, *after])
        return ok, res

    owner.take = traced_take
    SharedStore.call = traced_call  # type: ignore[method-assign]


async def _start_at(cfg: dict[str, Any], out: Path) -> float:
    """The common start: the config's, or the one the parent writes once all are ready."""
    if not cfg.get("sync"):
        return float(cfg["start_at"])
    out.with_suffix(".ready").write_text("")
    go = out.with_suffix(".go")  # written whole (renamed into place)
    while True:
        if go.exists():
            return float(go.read_text())
        await asyncio.sleep(0.01)


async def _work(cfg: dict[str, Any], out: Path) -> dict[str, Any]:
    from asyncthrift import Limits, Thrift
    from asyncthrift.stores.shared import SharedBudget, SharedStats
    from asyncthrift.tools.workload import mixed_workload

    trace: dict[str, list[Any]] = {"admitted": [], "calls": [], "done": [], "lease": []}
    loop = asyncio.get_running_loop()
    if os.environ.get("SHARED_WORKER_LOG"):  # debugging: the shared budgets' own log lines
        import logging

        logging.basicConfig(
            filename=f"{os.environ['SHARED_WORKER_LOG']}.{cfg['seed']}",
            format="%(created).3f %(message)s",
        )
        logging.getLogger("asyncthrift.shared").setLevel(logging.DEBUG)
    if cfg.get("trace"):
        _trace(trace, local=cfg["redis"] is None)
    bodies = mixed_workload(
        cfg["n"],
        seed=cfg["seed"],
        chinese_share=cfg.get("chinese", 0.4),
        **({"max_tokens": tuple(cfg["max_tokens"])} if "max_tokens" in cfg else {}),
    )
    limits = None if cfg["limits"] is None else Limits(**cfg["limits"])
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
    fallback_lease = 0.0

    async def one(body: dict[str, Any]) -> None:
        nonlocal ok, failed
        try:
            answer = await client.messages.create(**body)
        except Exception as exc:
            failed += 1
            errors.append(f"{type(exc).__name__}: {exc}"[:200])
        else:
            ok += 1
            usage = answer.usage
            trace["done"].append([time.time(), usage.input_tokens, usage.output_tokens])
        ends.append(time.time())

    async def watch() -> None:
        # how long this process admitted from its fallback, and how much
        nonlocal fallback_time
        step = 0.01
        k = 0
        last = loop.time()
        while True:
            await asyncio.sleep(step)
            # the time that really passed: a loaded machine's loop wakes later than asked,
            # and counting `step` undercounted the fallback time (the bound a test checks)
            now = loop.time()
            elapsed, last = now - last, now
            k += 1
            for budgets in client.budgets().values():
                for b in budgets:
                    if not isinstance(b, SharedBudget):
                        continue
                    if b.mode != "shared":
                        fallback_time += elapsed
                    if cfg.get("trace") and k % 25 == 0:  # the lease held, every 0.25 s
                        held = b.peek(loop.time())
                        gate = b._gate
                        trace["lease"].append(
                            [time.time(), *(h or 0.0 for h in held),
                             gate.waiting if gate else 0, gate.held if gate else 0]
                        )  # fmt: skip
                    break

    async with client:
        client.model_class(bodies[0]["model"])  # build the budget before the clock starts
        start_at = await _start_at(cfg, out)
        await asyncio.sleep(max(0.0, start_at - time.time()))
        watcher = asyncio.create_task(watch())
        await asyncio.gather(*(one(b) for b in bodies))
        watcher.cancel()
        stats = client.stats()
        store = client.shared
        shared = store.stats() if store is not None else SharedStats(0, 0, 0, 0)
        for b in store.budgets if store is not None else []:
            fallback_takes += b.fallback_takes
            fallback_lease += b.fallback_lease
    return {
        "ok": ok,
        "failed": failed,
        "errors": errors[:5],
        "start_at": start_at,
        "end": max(ends) if ends else start_at,
        "rate_limited": stats.rate_limited,
        "upstream_calls": stats.upstream_calls,
        "commands": shared.commands,
        "redis_errors": shared.errors,
        "grants": shared.grants,
        "fallback_takes": fallback_takes,
        "fallback_time": fallback_time,
        "fallback_lease": fallback_lease,
        "notices": sum(b.notices for b in store.budgets) if store is not None else 0,
        **({"trace": trace} if cfg.get("trace") else {}),
    }


def run_workers(
    configs: list[dict[str, Any]],
    timeout: float = 120.0,
    *,
    on_start: Callable[[float], None] | None = None,
) -> list[dict[str, Any]]:
    """Run one worker process per config; their reports, in order.

    Configs with ``sync`` start together once every worker has built its client: 0.5 s
    after the last is ready; `on_start(start_at)` is then called (before the start)."""
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
        if any(cfg.get("sync") for cfg in configs):
            ready_by = time.monotonic() + 120.0
            while not all(o.with_suffix(".ready").exists() for o in outs):
                if time.monotonic() > ready_by or any(p.poll() is not None for p in procs):
                    for p in procs:
                        p.kill()
                    raise RuntimeError("shared workers did not get ready")
                time.sleep(0.02)
            start_at = time.time() + 0.5
            for o in outs:
                tmp_go = o.with_suffix(".go-tmp")
                tmp_go.write_text(repr(start_at))
                tmp_go.rename(o.with_suffix(".go"))
            if on_start is not None:
                on_start(start_at)
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
    report = asyncio.run(_work(cfg, Path(sys.argv[2])))
    Path(sys.argv[2]).write_text(json.dumps(report))


if __name__ == "__main__":
    main()
