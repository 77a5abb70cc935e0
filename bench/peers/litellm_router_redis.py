"""One worker process of LiteLLM's Router sharing one key through Redis (`bench/bench_shared.py`).

    python bench/peers/litellm_router_redis.py CONFIG_JSON OUT_JSON

Configured as the single-process peer (`litellm_router.py`, same caller-side retry on 429s)
plus its Redis settings on the Router, ``redis_host``/``redis_port``: one deployment
``anthropic/<model>`` at the mock with ``rpm``, ``itpm`` and ``otpm``,
``routing_strategy="simple-shuffle"``, ``optional_pre_call_checks=["enforce_model_rate_limits"]``.

Protocol with the parent: import LiteLLM and build the Router (seconds of CPU, not timed),
write ``<OUT_JSON>.ready``, wait for ``<OUT_JSON>.go`` holding the common start wall time,
then fire the whole share at that instant. Every process anchors LiteLLM's compressed clock
at that same instant (``%H-%M`` windows of ``period`` real seconds, the first starting at
the common start), so all of them read and write the same Redis keys. Stops at ``budget`` seconds
after the start; what is unfinished then counts as not finished.

``DEFAULT_REDIS_SYNC_INTERVAL`` (1 real second) is set to ``period / 60`` s when the config
says ``scale_sync`` (its module copies too); the report says whether any periodic sync task
ran at all (under simple-shuffle and enforce_model_rate_limits none is created in 1.110.2:
the pre-call check increments Redis on every request).
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(BENCH))
sys.path.insert(0, str(BENCH.parent))
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # offline, before importing it
os.environ.setdefault("LITELLM_LOCAL_ANTHROPIC_BETA_HEADERS", "True")
os.environ.setdefault("LITELLM_LOG", "ERROR")

import litellm  # noqa: E402
import litellm.constants as _constants  # noqa: E402
import litellm.router_strategy.base_routing_strategy as _base_strategy  # noqa: E402
import litellm.router_strategy.budget_limiter as _budget_limiter  # noqa: E402
from litellm import Router  # noqa: E402

from peers.litellm_router import (  # noqa: E402
    MAX_ATTEMPTS,
    _compress_litellm_clock,
    _retry_after,
)


def _scale_sync_interval(seconds: float) -> None:
    for module in (_constants, _base_strategy, _budget_limiter):
        module.DEFAULT_REDIS_SYNC_INTERVAL = seconds  # type: ignore[misc]


def _sync_tasks() -> int:
    return sum(
        1
        for t in asyncio.all_tasks()
        if "periodic_sync" in getattr(t.get_coro(), "__qualname__", "")
    )


async def _work(cfg: dict[str, Any], out: Path) -> dict[str, Any]:
    from asyncthrift.tools.workload import mixed_workload

    period = cfg["limits"]["period"]
    scale = period / 60.0
    if cfg.get("scale_sync", True):
        _scale_sync_interval(scale)
    shape = {"max_tokens": tuple(cfg["max_tokens"])} if "max_tokens" in cfg else {}
    bodies = mixed_workload(cfg["n"], seed=cfg["seed"], **shape)
    lim = cfg["limits"]
    router = Router(
        model_list=[
            {
                "model_name": "bench",
                "litellm_params": {
                    "model": f"anthropic/{bodies[0]['model']}",
                    "api_base": cfg["url"],
                    "api_key": cfg.get("api_key", "k"),
                    "rpm": int(lim["rpm"]),
                    "itpm": int(lim["itpm"]),
                    "otpm": int(lim["otpm"]),
                },
            }
        ],
        routing_strategy="simple-shuffle",
        optional_pre_call_checks=["enforce_model_rate_limits"],
        redis_host="127.0.0.1",
        redis_port=cfg["redis_port"],
        num_retries=0,
    )
    out.with_suffix(".ready").write_text("1")
    go = out.with_suffix(".go")
    while not go.exists():  # noqa: ASYNC110  (a file the parent process writes)
        await asyncio.sleep(0.02)
    start_at = float(go.read_text())
    _compress_litellm_clock(scale, real0=start_at)
    await asyncio.sleep(max(0.0, start_at - time.time()))
    sync_tasks = _sync_tasks()

    ok = failed = own_429 = server_429 = 0
    ends: list[float] = []
    errors: dict[str, int] = {}

    async def one(body: dict[str, Any]) -> None:
        nonlocal ok, failed, own_429, server_429
        for attempt in range(MAX_ATTEMPTS):
            try:
                await router.acompletion(
                    model="bench", messages=body["messages"], max_tokens=body["max_tokens"]
                )
            except litellm.RateLimitError as exc:
                own = not getattr(exc, "llm_provider", "")
                if own:
                    own_429 += 1
                else:
                    server_429 += 1
                if attempt == MAX_ATTEMPTS - 1:
                    failed += 1
                    return
                after = _retry_after(exc)
                if after is None:
                    after = 60.0 if own else 1.0
                await asyncio.sleep(after * scale if own else after)
            except Exception as exc:  # final, as in the single-process peer
                failed += 1
                kind = type(exc).__name__
                errors[kind] = errors.get(kind, 0) + 1
                return
            else:
                ok += 1
                ends.append(time.time())
                return

    tasks = [asyncio.create_task(one(b)) for b in bodies]
    deadline = start_at + cfg["budget"]
    _, pending = await asyncio.wait(tasks, timeout=max(0.0, deadline - time.time()))
    for t in pending:
        t.cancel()
    await asyncio.gather(*pending, return_exceptions=True)
    return {
        "ok": ok,
        "failed": failed,
        "unfinished": len(pending),
        "errors": errors,
        "start_at": start_at,
        "end": max(ends) if ends else start_at,
        "own_429": own_429,
        "server_429": server_429,
        "sync_tasks": sync_tasks,
        "sync_interval": _base_strategy.DEFAULT_REDIS_SYNC_INTERVAL,
    }


def main() -> None:
    cfg = json.loads(sys.argv[1])
    out = Path(sys.argv[2])
    report = asyncio.run(_work(cfg, out))
    out.write_text(json.dumps(report))
    os._exit(0)  # LiteLLM's background tasks and clients: nothing left to flush


if __name__ == "__main__":
    main()
