"""The floor of `bench_pools.py`'s pool: exact buckets, and which budget takes which request.

`shared_floor.py` asks how close an exact in-order client can come to the minimum on one
key; this asks the same of the pool cell: the three budgets of `bench_pools.py` (50 / 30 /
20 % of the work's limits) and the revoked key (30 % claimed, refused at once), the bench's
own bodies, answers (`answer_for`, 40-120 tokens capped by `max_tokens`) and latency model
(200 ms + 1 ms per output token, ±10 % jitter). Each budget knows the server's level
exactly (no headers, no rounding, no other consumer); requests are admitted in arrival
order (FIFO over *when*), the head as soon as some budget holds its whole cost, and a
dispatch rule chooses *which* of the budgets that can pay it takes it:

- ``rr``: round robin among them (the pool's rule before branch pool29: the first budget,
  from a turning start, whose `wait` is 0),
- ``pool29``: while more requests wait than there are budgets, the smallest of those at
  most half the largest, else round robin (the pool's rule since),
- ``big``: the one with the largest refill rate, ``small``: the smallest,
- ``bestfit`` / ``worstfit``: the least / most output level left after it, in seconds of
  that budget's own refill,
- ``drain``: the most output level in seconds of its own refill before it (drains banks),
- ``share``: the one whose share of everything admitted so far is furthest below its share
  of the limits (by output reserved),
- ``size``: big `max_tokens` to big budgets: the smallest budget whose output rate
  covers the request's `max_tokens` in at most `SIZE_SECONDS`, else the biggest that can pay.

One key holding the summed limits is the same simulation with one budget. The revoked key
is tried like the others until its first request comes back refused (after `REFUSED_IN`),
which is then first in line again.

    PYTHONPATH=$PWD python bench/pool_floor.py [--beyond 25 120] [--seeds 1]
"""

from __future__ import annotations

import argparse
import copy
import heapq
import random
import sys
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from asyncthrift import Limits  # noqa: E402
from asyncthrift.mock._answers import answer_for, request_hash  # noqa: E402
from asyncthrift.mock._tokenizer import analyze_input  # noqa: E402
from asyncthrift.tools.demo import theoretical_minimum  # noqa: E402
from asyncthrift.tools.workload import mixed_workload  # noqa: E402
from bench.bench_pools import (  # noqa: E402
    MAX_TOKENS,
    OUT_RANGE,
    REVOKED_SHARE,
    SHARES,
    expected_output,
)

REFUSED_IN = 0.01
SIZE_SECONDS = 3.0
EPS = 1e-9

Req = tuple[float, float, float, float]  # input tokens, max_tokens, output tokens, latency


def requests(n: int, beyond: float, period: float, seed: int) -> tuple[list[Req], Limits]:
    """The bench's bodies (seed 18; other seeds: another draw) and `workload`'s limits."""
    bodies = mixed_workload(n, seed=seed, max_tokens=MAX_TOKENS)
    burst = 1.0 + beyond / period
    total = Limits(
        rpm=n / burst,
        itpm=sum(analyze_input(b).total for b in bodies) / burst,
        otpm=sum(expected_output(b["max_tokens"]) for b in bodies) / burst,
        period=period,
    )
    rng = random.Random(seed)
    out: list[Req] = []
    for b in bodies:
        produced = answer_for(request_hash(b), OUT_RANGE, b["max_tokens"]).output_tokens
        jitter = 1.0 + 0.1 * (2.0 * rng.random() - 1.0)
        latency = (0.2 + 0.001 * produced) * jitter
        out.append(
            (float(analyze_input(b).total), float(b["max_tokens"]), float(produced), latency)
        )
    return out, total


class Pool:
    """Exact buckets (rpm, itpm, otpm) refilled continuously; refunds at each answer's end."""

    def __init__(self, caps: list[tuple[float, float, float]], period: float) -> None:
        self.caps = caps
        self.rates = [tuple(c / period for c in cap) for cap in caps]
        self.level = [list(cap) for cap in caps]
        self.t = 0.0
        self.dead: set[int] = set()
        self.admitted_out = [0.0] * len(caps)
        self.waiting = 0  # requests in line, the head included (set before each choice)

    def advance(self, to: float) -> None:
        dt = to - self.t
        for b, cap in enumerate(self.caps):
            lv, r = self.level[b], self.rates[b]
            for d in range(3):
                lv[d] = min(cap[d], lv[d] + r[d] * dt)
        self.t = to

    def wait(self, b: int, cost: tuple[float, float, float]) -> float:
        lv, r = self.level[b], self.rates[b]
        return max(0.0, *((cost[d] - lv[d]) / r[d] for d in range(3)))

    def live(self) -> list[int]:
        return [b for b in range(len(self.caps)) if b not in self.dead]


Rule = Callable[[Pool, list[int], tuple[float, float, float]], int]


def _rr() -> Rule:
    turn = [0]

    def rule(pool: Pool, ready: list[int], cost: tuple[float, float, float]) -> int:
        n = len(pool.caps)
        for k in range(n):
            b = (turn[0] + k) % n
            if b in ready:
                turn[0] = (b + 1) % n
                return b
        raise AssertionError

    return rule


def _key(score: Callable[[Pool, int, tuple[float, float, float]], float]) -> Callable[[], Rule]:
    def make() -> Rule:
        return lambda pool, ready, cost: max(ready, key=lambda b: score(pool, b, cost))

    return make


def _pool29() -> Rule:
    """The pool's rule since branch pool29: while more requests wait than there are
    budgets, the smallest of those at most half the largest; round robin among equals,
    among the others, and after that."""
    round_robin = _rr()

    def rule(pool: Pool, ready: list[int], cost: tuple[float, float, float]) -> int:
        if pool.waiting > len(pool.caps):
            half = max(r[2] for r in pool.rates) / 2.0
            small = [b for b in ready if pool.rates[b][2] <= half]
            if small:
                least = min(pool.rates[b][2] for b in small)
                ready = [b for b in small if pool.rates[b][2] <= least]
        return round_robin(pool, ready, cost)

    return rule


def _size(pool: Pool, ready: list[int], cost: tuple[float, float, float]) -> int:
    fits = [b for b in ready if cost[2] <= pool.rates[b][2] * SIZE_SECONDS]
    if fits:
        return min(fits, key=lambda b: pool.rates[b][2])
    return max(ready, key=lambda b: pool.rates[b][2])


def _share(pool: Pool, ready: list[int], cost: tuple[float, float, float]) -> int:
    total = sum(pool.admitted_out) + cost[2]
    live_rate = sum(pool.rates[b][2] for b in pool.live())
    return min(ready, key=lambda b: pool.admitted_out[b] / total - pool.rates[b][2] / live_rate)


RULES: dict[str, Callable[[], Rule]] = {
    "rr": _rr,
    "pool29": _pool29,
    "big": _key(lambda p, b, c: p.rates[b][2]),
    "small": _key(lambda p, b, c: -p.rates[b][2]),
    "bestfit": _key(lambda p, b, c: -(p.level[b][2] - c[2]) / p.rates[b][2]),
    "bestfit-tokens": _key(lambda p, b, c: -(p.level[b][2] - c[2])),
    "bestfit-all": _key(
        lambda p, b, c: -max((p.level[b][d] - c[d]) / p.rates[b][d] for d in range(3))
    ),
    "bestfit-min": _key(
        lambda p, b, c: -min((p.level[b][d] - c[d]) / p.rates[b][d] for d in range(3))
    ),
    "worstfit": _key(lambda p, b, c: (p.level[b][2] - c[2]) / p.rates[b][2]),
    "drain": _key(lambda p, b, c: p.level[b][2] / p.rates[b][2]),
    "share": lambda: _share,
    "size": lambda: _size,
}


class Sim:
    """An exact in-order pool: the state of one run, copyable (for the ``plan`` rule)."""

    def __init__(
        self,
        reqs: list[Req],
        caps: list[tuple[float, float, float]],
        period: float,
        revoked: int | None,
    ) -> None:
        self.reqs = reqs
        self.pool = Pool(caps, period)
        self.flight: list[tuple[float, int, float]] = []  # (end, budget, output refund)
        self.retry: list[tuple[float, int]] = []  # (when refused, request) of the revoked key
        self.queue = list(range(len(reqs)))[::-1]
        self.revoked = revoked
        self.last = 0.0

    def copy(self) -> Sim:
        other = Sim.__new__(Sim)
        other.reqs, other.revoked, other.last = self.reqs, self.revoked, self.last
        other.pool = copy.deepcopy(self.pool)
        other.flight, other.retry, other.queue = (
            list(self.flight),
            list(self.retry),
            list(self.queue),
        )
        return other

    def head(self) -> tuple[tuple[float, float, float], list[int]] | None:
        """The head's cost and the budgets that can pay it now, after moving time to the
        first instant one can (None when everything is admitted)."""
        pool = self.pool
        while self.queue or self.retry:
            if self.retry and self.retry[0][0] <= pool.t + EPS:
                self.queue.append(self.retry.pop()[1])  # first in line again
            inp, mx, _, _ = self.reqs[self.queue[-1]]
            cost = (1.0, inp, mx)
            ready = [b for b in pool.live() if pool.wait(b, cost) <= EPS]
            if ready:
                return cost, ready
            nxt = min(pool.t + pool.wait(b, cost) for b in pool.live())
            if self.flight and self.flight[0][0] < nxt:
                nxt = self.flight[0][0]
            if self.retry and self.retry[0][0] < nxt:
                nxt = self.retry[0][0]
            pool.advance(max(nxt, pool.t))
            while self.flight and self.flight[0][0] <= pool.t + EPS:
                _, fb, refund = heapq.heappop(self.flight)
                pool.level[fb][2] = min(pool.caps[fb][2], pool.level[fb][2] + refund)
        return None

    def admit(self, b: int) -> None:
        pool = self.pool
        k = self.queue.pop()
        inp, mx, produced, latency = self.reqs[k]
        lv = pool.level[b]
        for d, c in enumerate((1.0, inp, mx)):
            lv[d] -= c
        pool.admitted_out[b] += mx
        if b == self.revoked:
            pool.dead.add(b)
            self.retry.append((pool.t + REFUSED_IN, k))
            return
        heapq.heappush(self.flight, (pool.t + latency, b, mx - produced))
        self.last = max(self.last, pool.t + latency)

    def run(self, rule: Rule) -> float:
        while (h := self.head()) is not None:
            cost, ready = h
            self.pool.waiting = len(self.queue) + len(self.retry)
            self.admit(rule(self.pool, ready, cost))
        return self.last


def simulate(
    reqs: list[Req],
    caps: list[tuple[float, float, float]],
    period: float,
    rule: Rule,
    revoked: int | None = None,
) -> float:
    """The makespan of an exact in-order pool dispatching the head by `rule`."""
    return Sim(reqs, caps, period, revoked).run(rule)


def planned(
    reqs: list[Req],
    caps: list[tuple[float, float, float]],
    period: float,
    base: str,
    tail: int,
    revoked: int | None = None,
) -> float:
    """`base` until `tail` requests are left; then each choice among the budgets that can
    pay the head now is the one after which `base` ends the run soonest (a one-step
    rollout: an upper bound of what planning the tail can win)."""
    sim = Sim(reqs, caps, period, revoked)
    rule = RULES[base]()
    while (h := sim.head()) is not None:
        cost, ready = h
        if len(ready) == 1:
            sim.admit(ready[0])
            continue
        if len(sim.queue) > tail:
            sim.admit(rule(sim.pool, ready, cost))
            continue
        best = min(ready, key=lambda b: _rollout(sim, b, base))
        sim.admit(best)
    return sim.last


def _rollout(sim: Sim, b: int, base: str) -> float:
    trial = sim.copy()
    trial.admit(b)
    return trial.run(RULES[base]())


def caps_of(total: Limits, share: float) -> tuple[float, float, float]:
    return (
        float(total.rpm or 0) * share,
        float(total.itpm or 0) * share,
        float(total.otpm or 0) * share,
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--beyond", type=float, nargs="+", default=[25.0, 120.0])
    ap.add_argument("--requests", type=int, default=800)
    ap.add_argument("--period", type=float, default=60.0)
    ap.add_argument("--seeds", type=int, default=1, help="18 and the next ones")
    ap.add_argument("--rules", nargs="+", default=list(RULES))
    ap.add_argument("--plan", type=int, nargs="*", default=[], help="tails to plan by rollout")
    a = ap.parse_args()
    for beyond in a.beyond:
        rows: dict[str, list[float]] = {}
        for seed in range(18, 18 + a.seeds):
            reqs, total = requests(a.requests, beyond, a.period, seed)
            t_min = theoretical_minimum(
                total, len(reqs), sum(r[0] for r in reqs), sum(r[2] for r in reqs)
            )
            live = [caps_of(total, s) for s in SHARES.values()]
            pooled = [live[0], caps_of(total, REVOKED_SHARE), *live[1:]]
            one = simulate(reqs, [caps_of(total, 1.0)], a.period, _rr())
            rows.setdefault("one key", []).append(one / t_min)
            for name in a.rules:
                bare = simulate(reqs, live, a.period, RULES[name]())
                rev = simulate(reqs, pooled, a.period, RULES[name](), revoked=1)
                rows.setdefault(f"pool {name}", []).append(bare / t_min)
                rows.setdefault(f"pool {name} + revoked", []).append(rev / t_min)
            for tail in a.plan:
                p = planned(reqs, pooled, a.period, "bestfit", tail, revoked=1)
                rows.setdefault(f"plan last {tail} + revoked", []).append(p / t_min)
        print(f"{beyond:g} s beyond, {a.requests} requests, seeds 18-{17 + a.seeds}:")
        for name, ratios in rows.items():
            mean = sum(ratios) / len(ratios)
            print(f"  {name:24s} mean {mean:.3f}x  ({', '.join(f'{r:.3f}' for r in ratios)})")


if __name__ == "__main__":
    main()
