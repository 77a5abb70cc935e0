"""Key pools at the real period: a pool of budgets with different limits plus a revoked key.

One client with ``keys=[...]``: three keys on three budgets holding 50 / 30 / 20 % of the
work's limits, and a revoked key (the mock answers it 401) claiming limits too. The mock runs
in its own process with realistic answers (200 ms + 1 ms per output token, 10 % jitter;
``max_tokens`` 64-1024 for answers of about 80 tokens) and each key's limits, all three
binding: the limits are sized so that the work takes `beyond` seconds after the first burst
at the summed limits. The clock starts once the client is built. Reported: makespan against
the minimum of the summed limits (from the mock's own counts), 401s and 429s, and per key
what it served and when its last answer came back against its share. The baseline of the
same run is one key holding the summed limits alone (`--no-baseline` skips it).

    PYTHONPATH=$PWD python bench/bench_pools.py [--period 60] [--beyond 25,120] [--requests 800]

Each run at the real period takes about `beyond` + 15 s, twice with the baseline.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from asyncthrift import KeyConfig, Limits, Thrift  # noqa: E402
from asyncthrift.mock import remote_stats, spawn_mock_process  # noqa: E402
from asyncthrift.mock._tokenizer import analyze_input  # noqa: E402
from asyncthrift.tools.demo import theoretical_minimum  # noqa: E402
from asyncthrift.tools.workload import mixed_workload  # noqa: E402
from bench.pool_trace import GateTrace, report, traced  # noqa: E402
from tests.key_pool_helpers import PerKey, scaled  # noqa: E402

#: Answer lengths the mock draws from (capped by max_tokens): about 80 tokens.
OUT_RANGE = (40, 120)
#: What callers ask for: far more than they get.
MAX_TOKENS = tuple(range(64, 1025))
SHARES = {"half": 0.5, "third": 0.3, "fifth": 0.2}
REVOKED_SHARE = 0.3


def expected_output(max_tokens: int) -> float:
    lo, hi = OUT_RANGE
    return sum(min(t, max_tokens) for t in range(lo, hi + 1)) / (hi - lo + 1)


def workload(n: int, beyond: float, period: float) -> tuple[list[dict[str, Any]], Limits]:
    """`n` bodies and limits under which each dimension takes `beyond` s after the burst."""
    bodies = mixed_workload(n, seed=18, max_tokens=MAX_TOKENS)
    total_in = sum(analyze_input(b).total for b in bodies)
    total_out = sum(expected_output(b["max_tokens"]) for b in bodies)
    burst = 1.0 + beyond / period  # demand = capacity + rate * beyond
    return bodies, Limits(
        rpm=n / burst, itpm=total_in / burst, otpm=total_out / burst, period=period
    )


async def _drive(
    keys: list[KeyConfig], url: str, bodies: list[dict[str, Any]], trace: GateTrace | None
) -> dict[str, Any]:
    seen = PerKey()
    async with Thrift(keys=keys, base_url=url, observers=[seen]) as client:
        seen.t0 = t0 = time.monotonic()
        sampler = None
        if trace is not None:
            trace.t0 = asyncio.get_running_loop().time()
            sampler = asyncio.ensure_future(trace.sample())
        results = await asyncio.gather(
            *(client.messages.create(**b) for b in bodies), return_exceptions=True
        )
        makespan = time.monotonic() - t0
        if sampler is not None:
            sampler.cancel()
        s = client.stats()
    failed = [r for r in results if isinstance(r, BaseException)]
    return {
        "makespan": makespan,
        "succeeded": s.succeeded,
        "failed": len(failed),
        "first_error": repr(failed[0]) if failed else None,
        "statuses": {k: dict(v) for k, v in seen.statuses.items()},
        "last_ok": seen.last_ok,
    }


def run(
    n: int, beyond: float, period: float, mock: dict[str, Any], pool: bool, trace: bool = False
) -> dict[str, Any]:
    bodies, total = workload(n, beyond, period)
    if pool:
        limits = {name: scaled(total, share) for name, share in SHARES.items()}
        keys = [KeyConfig(api_key=k, limits=v, name=k) for k, v in limits.items()]
        # the revoked key claims limits too: it would have taken a share
        keys.insert(1, KeyConfig(api_key="revoked", limits=scaled(total, REVOKED_SHARE)))
    else:
        limits = {"whole": total}
        keys = [KeyConfig(api_key="whole", limits=total, name="whole")]
    with spawn_mock_process(
        api_keys=list(limits),
        key_limits=limits,
        latency=0.2,
        latency_per_token=0.001,
        latency_jitter=0.1,
        output_tokens=OUT_RANGE,
        **mock,
    ) as url:
        gates = GateTrace() if trace else None
        if gates is None:
            out = asyncio.run(_drive(keys, url, bodies, None))
        else:
            with traced(gates):
                out = asyncio.run(_drive(keys, url, bodies, gates))
        c = remote_stats(url)
    t_min = theoretical_minimum(
        total, c["ok"] + c["cancelled"], c["input_tokens"], c["output_tokens"]
    )
    served = {k: v.get(200, 0) for k, v in out["statuses"].items()}
    return {
        "pool": pool,
        "beyond": beyond,
        "requests": n,
        **out,
        "t_min": t_min,
        "ratio": out["makespan"] / t_min,
        "rate_limited": c["rate_limited"],
        "unauthorized": c["by_status"].get("401", 0),
        "served": served,
        "mock_output_tokens": c["output_tokens"],
        "trace": [] if gates is None else report(gates),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--period", type=float, default=60.0, help="seconds (60: the API's)")
    ap.add_argument("--beyond", default="25,120", help="seconds of work beyond the burst")
    ap.add_argument("--requests", type=int, default=800)
    ap.add_argument("--no-baseline", action="store_true", help="skip the one-key baseline")
    ap.add_argument("--headers-at", default="completion", choices=["completion", "admission"])
    ap.add_argument("--reset-precision", default="seconds", choices=["seconds", "milliseconds"])
    ap.add_argument("--remaining-rounding", default="nearest", choices=["nearest", "down", "exact"])
    ap.add_argument("--json", default=None)
    ap.add_argument(
        "--trace",
        action="store_true",
        help="per budget: admissions per 5 s and the reading offset (bench/pool_trace.py)",
    )
    a = ap.parse_args()
    mock = {
        "headers_at": a.headers_at,
        "reset_precision": a.reset_precision,
        "remaining_rounding": a.remaining_rounding,
    }
    rows = []
    for beyond in (float(b) for b in a.beyond.split(",")):
        for pool in (True,) if a.no_baseline else (True, False):
            row = run(a.requests, beyond, a.period, mock, pool, a.trace)
            rows.append(row)
            print(json.dumps(row), file=sys.stderr, flush=True)
    print(f"period {a.period:g} s, {a.requests} requests, mock {mock}")
    print("| work beyond the burst | client | makespan / minimum | 401s | 429s | failed |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        who = "pool 50/30/20 % + revoked" if r["pool"] else "one key, summed limits"
        print(
            f"| {r['beyond']:g} s | {who} | {r['makespan']:.1f} s / {r['t_min']:.1f} s = "
            f"**{r['ratio']:.2f}x** | {r['unauthorized']} | {r['rate_limited']} | {r['failed']} |"
        )
    for r in rows:
        if r["pool"]:
            total = sum(r["served"].values())
            parts = ", ".join(
                f"{k} {r['served'].get(k, 0) / total:.0%} (last at {r['last_ok'].get(k, 0):.1f} s)"
                for k in SHARES
            )
            print(f"{r['beyond']:g} s: served by key: {parts}")
    for r in rows:
        for line in r["trace"]:
            print(f"{r['beyond']:g} s, {'pool' if r['pool'] else 'one key'}: {line}")
    if a.json:
        Path(a.json).write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
