"""Each replica's share of admissions over a binding run, and what its shared budget heard.

    PYTHONPATH=$PWD python bench/gateway_shares.py OUT.json [--logs DIR] [--step 2.5]

Reads what ``bench/bench_gateway.py --out OUT.json`` wrote (binding rows) and, with
``--logs`` (that run's ``--logs DIR``, run with ``BENCH_GATEWAY_DEBUG_SHARED=1``), the
replicas' shared-budget debug lines. Prints, per window of ``--step`` seconds:

- per replica: the requests still waiting at the window's start and their ``max_tokens``,
  and those admitted in it (admission estimated as `bench_gateway.timeline` does: the
  answer's end less the mock's latency for its length). A replica that admits nothing
  while others still do, with requests waiting, is the one that will end late;
- from the debug lines (every replica's round trips to Redis in that window): how many,
  the longest wait before a grant is paid for (``ready``, seconds: a grant reserved ahead),
  the shared output level's lowest and highest, output granted, asked and given back, and
  the backlog all replicas reported.
"""

from __future__ import annotations

import argparse
import ast
import json
import re
from collections import defaultdict
from pathlib import Path
from typing import Any

import acceptance
from bench_gateway import VARIANT, binding_workload

#: `lease.lua`'s answer, by position: the fields read here
_GRANTED_O, _READY, _LEVEL_O, _BACKLOGS = 3, 4, 9, 20


def admissions(row: dict[str, Any], bodies: list[dict[str, Any]], step: float) -> list[str]:
    base, per_token = acceptance.VARIANTS[VARIANT]
    outcomes = row["outcomes"]
    replicas = row["replicas"]
    admitted = [o["done"] - base - per_token * o["output_tokens"] for o in outcomes]
    end = max(o["done"] for o in outcomes)
    heads = " | ".join(f"r{r}: waiting n/max_tokens, admitted" for r in range(replicas))
    lines = [f"t s   {heads}   (s from the driver's start)"]
    t = 0.0
    while t < end:
        cells = []
        for r in range(replicas):
            mine = [i for i in range(len(outcomes)) if outcomes[i]["replica"] == r]
            waiting = [i for i in mine if admitted[i] >= t]
            now = [i for i in mine if t <= admitted[i] < t + step]
            tokens = sum(bodies[i]["max_tokens"] for i in waiting) / 1000.0
            cells.append(f"{len(waiting):3d}/{tokens:5.1f}k {len(now):3d}")
        lines.append(f"{t:5.1f} " + " | ".join(cells))
        t += step
    return lines


def round_trips(log_dir: Path, step: float) -> list[str]:
    calls: list[tuple[float, list[str], list[float], list[float]]] = []
    for path in sorted(log_dir.glob("gateway-*.log")):
        for line in path.read_text().splitlines():
            if "asyncthrift.shared" not in line or " foreign " in line:
                continue
            message = json.loads(line)["message"]
            reply = message.split("-> ", 1)[-1]
            found = re.search(r" t=([0-9.]+)", message)
            if found is None or not reply.startswith("["):
                continue
            asked = re.search(r"ask=(\[[^\]]*\])", message)
            given = re.search(r"give=(\[[^\]]*\])", message)
            calls.append(
                (
                    float(found.group(1)),
                    ast.literal_eval(reply),
                    ast.literal_eval(asked.group(1)) if asked else [0, 0, 0],
                    ast.literal_eval(given.group(1)) if given else [0, 0, 0],
                )
            )
    if not calls:
        return ["(no shared-budget debug lines: run with BENCH_GATEWAY_DEBUG_SHARED=1)"]
    t0 = min(c[0] for c in calls)
    bins: dict[int, list[tuple[list[str], list[float], list[float]]]] = defaultdict(list)
    for t, reply, asked, given in calls:
        bins[int((t - t0) // step)].append((reply, asked, given))
    lines = ["round trips to Redis, all replicas, s from the first (at the first admission):"]
    for k in sorted(bins):
        window = bins[k]
        levels = [float(reply[_LEVEL_O]) for reply, _, _ in window]
        lines.append(
            f"{k * step:5.1f} s: {len(window):3d} calls, ready <= "
            f"{max(float(reply[_READY]) for reply, _, _ in window):4.1f} s, output level "
            f"{min(levels):8.0f} .. {max(levels):7.0f}, output granted "
            f"{sum(float(reply[_GRANTED_O]) for reply, _, _ in window):7.0f} / asked "
            f"{sum(asked[2] for _, asked, _ in window):7.0f} / given back "
            f"{sum(given[2] for _, _, given in window):7.0f}, backlogs {window[-1][0][_BACKLOGS]}"
        )
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--logs", type=Path, default=None)
    parser.add_argument("--step", type=float, default=2.5)
    args = parser.parse_args()
    data = json.loads(args.out.read_text())
    for row in data["binding"]:
        if row["kind"] != "asyncthrift" or row["replicas"] < 2:
            continue
        work = binding_workload(row["requests"], row["period"], 25.0)
        print(f"\n{row['replicas']} replicas, {row['setting']}: makespan {row['makespan']:.1f} s")
        print("\n".join(admissions(row, work.bodies, args.step)))
        if args.logs is not None:
            name = f"asyncthrift-{row['replicas']}-{row['setting']}{'-warm' if row['warm'] else ''}"
            print("\n".join(round_trips(args.logs / name, args.step)))


if __name__ == "__main__":
    main()
