"""The rounding offset on a small budget, in virtual time: `tests/reading_sim.py` over many seeds.

One budget of `bench/bench_pools.py`'s 20 % share (150 output tokens/s, realistic answers:
200 ms + 1 ms per token, `max_tokens` 64-1024 for answers of about 80 tokens) against the
mock's own buckets, under both header instants and both roundings, alone and with another
consumer on the key. Prints, per cell, the mean makespan and the 429s the server would have
answered. Seconds of CPU, no wall clock: run it with each tree on PYTHONPATH to compare.

    PYTHONPATH=$TREE python bench/reading_sim_tally.py [--seeds 40] [--slow]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.reading_sim import Limits, Shape, pool_fifth, simulate  # noqa: E402

CONSUMERS: dict[str, dict[str, Any]] = {
    "alone": {},
    "40 %": {"shadow": 0.4},
    "40 % from 8 s to 20 s": {"schedule": ((8.0, 0.4), (20.0, 0.0))},
    "40 % from 4 s": {"schedule": ((4.0, 0.4),)},
    "50 %": {"shadow": 0.5},
    "60 %": {"shadow": 0.6},
    "60 % from 10 s": {"schedule": ((10.0, 0.6),)},
    "75 %": {"shadow": 0.75},
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seeds", type=int, default=40)
    ap.add_argument("--slow", action="store_true", help="2 s + 20 ms/token answers, 300 requests")
    a = ap.parse_args()
    if a.slow:
        limits, shape, n = (
            Limits(rpm=300, itpm=150_000, otpm=24_000, period=60),
            Shape(2.0, 0.02),
            300,
        )
    else:
        limits, shape, n = pool_fifth(), Shape(), 160
    seeds = range(3, 3 + a.seeds)
    print("| headers | rounding | consumer | mean makespan | 429s | mean offset |")
    print("|---|---|---|---|---|---|")
    total = 0
    for headers_at in ("completion", "admission"):
        for rounding in ("exact", "nearest", "down"):
            for name, consumer in CONSUMERS.items():
                outs = [
                    simulate(
                        limits,
                        n,
                        shape=shape,
                        headers_at=headers_at,
                        rounding=rounding,
                        seed=seed,
                        **consumer,
                    )
                    for seed in seeds
                ]
                refused = sum(o.refused for o in outs)
                if rounding != "exact":
                    total += refused
                mean = sum(o.makespan for o in outs) / len(outs)
                offset = sum(o.offset for o in outs) / len(outs)
                print(
                    f"| {headers_at} | {rounding} | {name} | {mean:.2f} s | {refused} "
                    f"| {offset:.0f} |"
                )
    print(f"429s, rounded cells: {total}")


if __name__ == "__main__":
    main()
