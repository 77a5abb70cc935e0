"""The key pool in virtual time with the real budgets and the server's rounded headers.

`pool_floor.py` gives the pool exact buckets; `bench_pools.py` runs the real client against
the mock, where one run differs from the next by ±0.03. This sits between them and is
deterministic: the pool's own `BudgetPool._pick` chooses among real `LocalBudget`s (cold
start on, the client's burst hold), each read from the mock's own `ServerBudget` of its key
(headers at admission or completion, `-remaining` rounded to nearest / down / exact), in
arrival order, with `bench_pools.py`'s bodies, answers and latency model (±10 % jitter,
5 ms of wire each way) and the revoked key (a 401 on its first request, which is then first
in line again). The simulation is `tests/pool_reading_sim.py`: event by event, no loop.

    PYTHONPATH=$PWD python bench/pool_readings.py [--seeds 18 19 20] [--beyond 25]
        [--headers-at completion] [--rounding nearest] [--one-key]

Prints makespan over the minimum, the 429s the servers would have answered, and per budget
what it served and the mean offset of its output level below its server's (second half).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from asyncthrift.tools.demo import theoretical_minimum  # noqa: E402
from bench.bench_pools import REVOKED_SHARE, SHARES  # noqa: E402
from bench.pool_floor import requests  # noqa: E402
from tests.key_pool_helpers import scaled  # noqa: E402
from tests.pool_reading_sim import simulate as simulate_pool  # noqa: E402


def simulate(
    seed: int = 18,
    beyond: float = 25.0,
    *,
    headers_at: str = "completion",
    rounding: str = "nearest",
    one_key: bool = False,
    revoked: bool = True,
    n: int = 800,
    period: float = 60.0,
    shares: tuple[float, ...] = tuple(SHARES.values()),
) -> dict[str, Any]:
    """The bench's pool (or one key of the summed limits) on workload draw `seed`."""
    work, total = requests(n, beyond, period, seed)
    parts = [1.0] if one_key else list(shares)
    dead = None
    if revoked and not one_key:
        parts.insert(1, REVOKED_SHARE)
        dead = 1
    out = simulate_pool(
        work,
        [scaled(total, s) for s in parts],
        headers_at=headers_at,
        rounding=rounding,
        revoked=dead,
    )
    t_min = theoretical_minimum(total, n, sum(q[0] for q in work), sum(q[2] for q in work))
    return {
        "ratio": out.makespan / t_min,
        "makespan": out.makespan,
        "t_min": t_min,
        "refused": out.refused,
        "served": out.served,
        "offsets": out.offsets,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[18])
    ap.add_argument("--beyond", type=float, default=25.0)
    ap.add_argument("--headers-at", default="completion", choices=["completion", "admission"])
    ap.add_argument("--rounding", default="nearest", choices=["nearest", "down", "exact"])
    ap.add_argument("--one-key", action="store_true")
    a = ap.parse_args()
    ratios = []
    for seed in a.seeds:
        out = simulate(
            seed, a.beyond, headers_at=a.headers_at, rounding=a.rounding, one_key=a.one_key
        )
        ratios.append(out["ratio"])
        offs = ", ".join(f"{o:.0f}" for o in out["offsets"])
        print(
            f"seed {seed}: {out['ratio']:.3f}x ({out['makespan']:.2f} / {out['t_min']:.2f} s), "
            f"429s {out['refused']}, served {out['served']}, output offsets {offs}"
        )
    print(f"mean {sum(ratios) / len(ratios):.3f}x over {len(ratios)} seeds")


if __name__ == "__main__":
    main()
