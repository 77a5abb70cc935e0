"""The floor an ideal single client reaches on `bench_shared.py`'s workload: how much of the
makespan's excess over the theoretical minimum no client can avoid.

Why: the theoretical minimum (`theoretical_minimum`) counts only the output actually
produced, but the server reserves `max_tokens` at admission and gives the unused part back
only when the answer ends. So when the last request is admitted, the output bucket must
also cover what the requests still in flight reserved beyond what they will produce (the
"float"), and the last answer still takes its latency. This simulates a client that knows
the server's levels exactly and admits in order (FIFO, as `Thrift` does) the moment every
bucket holds the request's cost, on the same bodies, limits and latency model as the bench
(answers of 200 ms + 1 ms per output token, jitter ±10 %): its makespan over the minimum is
what the target has as room. ``--order`` also tries the best of a few orders (smallest
`max_tokens` last) to show what reordering alone could win.

    PYTHONPATH=$PWD python bench/shared_floor.py [--processes 4] [--beyond 25] [--period 60]
"""

from __future__ import annotations

import argparse
import heapq
import random
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from bench_shared import SHAPES, _workload  # noqa: E402

from asyncthrift.mock._answers import answer_for, request_hash  # noqa: E402
from asyncthrift.mock._tokenizer import analyze_input  # noqa: E402
from asyncthrift.tools.demo import theoretical_minimum  # noqa: E402
from asyncthrift.tools.workload import mixed_workload  # noqa: E402


def _requests(processes: int, total: int, shape: str) -> list[tuple[float, float, float, float]]:
    """(input tokens, max_tokens, output tokens, latency s) per request, processes in turn
    (round robin: the processes' queues interleave at the one key)."""
    sh = SHAPES[shape]
    per = total // processes
    queues = [
        mixed_workload(per, seed=100 + i, max_tokens=sh["max_tokens"]) for i in range(processes)
    ]
    rng = random.Random(5)
    out = []
    for k in range(per):
        for q in queues:
            b = q[k]
            produced = answer_for(
                request_hash(b), sh["output_tokens"], b["max_tokens"]
            ).output_tokens
            jitter = max(0.0, 1.0 + sh["latency_jitter"] * (2.0 * rng.random() - 1.0))
            latency = (sh["latency"] + sh["latency_per_token"] * produced) * jitter
            out.append(
                (float(analyze_input(b).total), float(b["max_tokens"]), float(produced), latency)
            )
    return out


def advance(
    t: float,
    to: float,
    level: list[float],
    caps: tuple[float, float, float],
    rates: list[float],
    flight: list[tuple[float, float]],
) -> float:
    """Refill `level` from `t` to `to`, crediting the answers in `flight` (a heap of (end,
    output refund)) that end by then at their instants; return `to`."""
    while flight and flight[0][0] <= to:
        end, refund = heapq.heappop(flight)
        for d in range(3):
            level[d] = min(caps[d], level[d] + rates[d] * (end - t))
        level[2] = min(caps[2], level[2] + refund)
        t = end
    for d in range(3):
        level[d] = min(caps[d], level[d] + rates[d] * (to - t))
    return to


def simulate(
    reqs: list[tuple[float, float, float, float]], caps: tuple[float, float, float], period: float
) -> float:
    """The makespan of an exact FIFO client: admit the head when every bucket holds it."""
    rates = [c / period for c in caps]
    level = list(caps)
    t = 0.0
    flight: list[tuple[float, float]] = []  # (end, refund of output)
    last_end = 0.0
    for inp, mx, produced, latency in reqs:
        cost = (1.0, inp, mx)
        while True:
            short = max((cost[d] - level[d]) / rates[d] for d in range(3))
            if short <= 1e-12:
                break
            nxt = t + short
            if flight and flight[0][0] < nxt:
                nxt = flight[0][0]
            t = advance(t, nxt, level, caps, rates, flight)
        for d in range(3):
            level[d] -= cost[d]
        heapq.heappush(flight, (t + latency, mx - produced))
        last_end = max(last_end, t + latency)
    return last_end


def simulate_lanes(
    reqs: list[tuple[float, float, float, float]],
    lanes: int,
    caps: tuple[float, float, float],
    period: float,
    pick: str,
) -> float:
    """The same exact client over `lanes` processes' queues (request k in lane k % lanes),
    each FIFO, with one head per lane: "biggest" gathers for the lane head with the largest
    `max_tokens` (the others wait behind it), "fits" admits any lane head that fits, the
    oldest first. No client can order across processes by arrival (there is none): what
    would Redis win by paying the biggest head first?"""
    rates = [c / period for c in caps]
    level = list(caps)
    t = 0.0
    flight: list[tuple[float, float]] = []
    queues = [[r for k, r in enumerate(reqs) if k % lanes == i] for i in range(lanes)]
    pos = [0] * lanes
    last_end = 0.0

    def short(r: tuple[float, float, float, float]) -> float:
        return max((c - level[d]) / rates[d] for d, c in enumerate((1.0, r[0], r[1])))

    while any(pos[i] < len(queues[i]) for i in range(lanes)):
        heads = [(i, queues[i][pos[i]]) for i in range(lanes) if pos[i] < len(queues[i])]
        cands = [max(heads, key=lambda h: h[1][1])] if pick == "biggest" else heads
        fit = [h for h in cands if short(h[1]) <= 1e-12]
        if fit:
            i, r = min(fit, key=lambda h: (pos[h[0]], h[0]))  # the oldest (k = pos * lanes + i)
            for d, c in enumerate((1.0, r[0], r[1])):
                level[d] -= c
            heapq.heappush(flight, (t + r[3], r[1] - r[2]))
            last_end = max(last_end, t + r[3])
            pos[i] += 1
            continue
        to = t + min(short(h[1]) for h in cands)
        if flight and flight[0][0] < to:
            to = flight[0][0]  # an answer's refund may make a head fit sooner
        t = advance(t, to, level, caps, rates, flight)
    return last_end


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--processes", type=int, default=4)
    ap.add_argument("--total", type=int, default=800)
    ap.add_argument("--period", type=float, default=60.0)
    ap.add_argument("--beyond", type=float, nargs="+", default=[25.0, 120.0])
    ap.add_argument("--shape", choices=sorted(SHAPES), default="real")
    a = ap.parse_args()
    for beyond in a.beyond:
        _, lim = _workload(a.processes, a.total, a.period, beyond, a.shape)
        reqs = _requests(a.processes, a.total, a.shape)
        caps = (float(lim.rpm or 0), float(lim.itpm or 0), float(lim.otpm or 0))
        t_min = theoretical_minimum(
            lim, len(reqs), sum(r[0] for r in reqs), sum(r[2] for r in reqs)
        )
        fifo = simulate(reqs, caps, a.period)
        # what the reservation alone costs: the same client, charged only what is produced
        actual = simulate([(i, p, p, lat) for i, _, p, lat in reqs], caps, a.period)
        # reordering: the biggest max_tokens first, so the last in flight reserve little
        by_size = simulate(sorted(reqs, key=lambda r: -r[1]), caps, a.period)
        lanes = {
            p: simulate_lanes(reqs, a.processes, caps, a.period, p) for p in ("biggest", "fits")
        }
        mean_mx = sum(r[1] for r in reqs) / len(reqs)
        mean_out = sum(r[2] for r in reqs) / len(reqs)
        print(
            f"{beyond:g} s beyond, {len(reqs)} requests (mean max_tokens {mean_mx:.0f}, output "
            f"{mean_out:.0f}; {caps[2] / a.period:.0f} output tokens/s): minimum {t_min:.2f} s; "
            f"exact FIFO client {fifo:.2f} s = {fifo / t_min:.3f}x; charged only the output "
            f"{actual:.2f} s = {actual / t_min:.3f}x; biggest max_tokens first "
            f"{by_size:.2f} s = {by_size / t_min:.3f}x; per process FIFO, the biggest lane head "
            f"first {lanes['biggest'] / t_min:.3f}x, any lane head that fits "
            f"{lanes['fits'] / t_min:.3f}x"
        )


if __name__ == "__main__":
    main()
