"""Where a key pool's time goes: per budget, admissions over the run and the reading offset.

`bench_pools.py --trace` installs a `GateTrace` around the gate's public methods (`acquire`,
`try_acquire`, `settled`, `give_back`, `disable`) for one run, and samples every budget's
level (`peek`) four times a second. `report` then says, per budget:

- admissions per 5 s window, and when the revoked key was disabled (how long it took);
- the **reading offset**: an exact bucket replaying the budget's own admissions and
  refunds at its limits (what the server's level is, with nobody else on the key and
  nothing lost in the reading) minus the budget's own level, in seconds of that budget's
  refill, per dimension (requests, input, output). A steady offset is refill the server
  had and the budget never used: the rounding of ``-remaining``, the cold start's first
  reading, a learnt "other consumer" that is not there. A pool pays it once per budget.

Only for diagnosis: the wrappers add a little work on every admission.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from asyncthrift.scheduling.bucket import Budget, Cost
from asyncthrift.scheduling.scheduler import Gate

#: How often the budgets' levels are sampled, in seconds.
SAMPLE_EVERY = 0.25


class GateTrace:
    """Admissions, refunds and level samples of every gate of one run, by budget name."""

    def __init__(self) -> None:
        self.t0 = 0.0
        # (loop time, budget name, +cost taken or -refund given)
        self.events: list[tuple[float, str, tuple[float, float, float]]] = []
        self.disabled: dict[str, float] = {}
        self.samples: list[tuple[float, dict[str, tuple[float | None, ...]]]] = []
        self.budgets: dict[str, Any] = {}
        # each gate's budget indices, by name, as its reservations show them
        self.names: dict[tuple[int, int], str] = {}

    def taken(self, gate: Gate, reservation: Any, cost: Cost) -> None:
        budget = reservation.budget
        name = getattr(budget, "name", str(id(budget)))
        self.budgets[name] = budget
        self.names[(id(gate), reservation.index)] = name
        self.events.append((reservation.sent_at, name, (cost[0], cost[1], cost[2])))

    def given(self, when: float, budget: Budget, refund: Cost) -> None:
        name = getattr(budget, "name", str(id(budget)))
        self.events.append((when, name, (-refund[0], -refund[1], -refund[2])))

    async def sample(self) -> None:
        """Every `SAMPLE_EVERY` s, each budget's level (run as a task; cancel it at the end)."""
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(SAMPLE_EVERY)
            now = loop.time()
            self.samples.append((now, {n: b.peek(now) for n, b in self.budgets.items()}))


@contextmanager
def traced(trace: GateTrace) -> Iterator[None]:
    """Record every gate's admissions and refunds into `trace` while the block runs."""
    acquire, try_acquire = Gate.acquire, Gate.try_acquire
    settled, give_back, disable = Gate.settled, Gate.give_back, Gate.disable

    async def traced_acquire(self: Gate, cost: Cost, **kw: Any) -> Any:
        r = await acquire(self, cost, **kw)
        trace.taken(self, r, cost)
        return r

    def traced_try(self: Gate, cost: Cost) -> Any:
        r = try_acquire(self, cost)
        if r is not None:
            trace.taken(self, r, cost)
        return r

    def traced_settled(self: Gate, budget: Budget, refund: Cost, mark: Cost | None = None) -> None:
        trace.given(self.now(), budget, refund)
        settled(self, budget, refund, mark)

    def traced_give_back(self: Gate, budget: Budget, refund: Cost) -> None:
        trace.given(self.now(), budget, refund)
        give_back(self, budget, refund)

    def traced_disable(self: Gate, index: int, error: Callable[[], BaseException]) -> None:
        # a client disables a refused key on every class's gate; the first time counts
        name = trace.names.get((id(self), index), f"budget {index}")
        trace.disabled.setdefault(name, self.now())
        disable(self, index, error)

    patches: dict[str, Any] = {
        "acquire": traced_acquire,
        "try_acquire": traced_try,
        "settled": traced_settled,
        "give_back": traced_give_back,
        "disable": traced_disable,
    }
    originals = {name: getattr(Gate, name) for name in patches}
    for name, fn in patches.items():
        setattr(Gate, name, fn)
    try:
        yield
    finally:
        for name, fn in originals.items():
            setattr(Gate, name, fn)


def _rates(budget: Any) -> list[float | None]:
    lim = budget.limits
    return [None if cap is None else cap / lim.period for cap in (lim.rpm, lim.itpm, lim.otpm)]


def offsets(trace: GateTrace, name: str) -> list[tuple[float, list[float | None]]]:
    """(seconds into the run, per dimension the exact replay's level minus the budget's own,
    in seconds of the budget's refill) at each sample."""
    budget = trace.budgets[name]
    rates = _rates(budget)
    caps = [None if r is None else r * budget.limits.period for r in rates]
    level = [0.0 if c is None else c for c in caps]
    last = trace.t0
    events = iter(sorted(e for e in trace.events if e[1] == name))
    pending = next(events, None)
    out: list[tuple[float, list[float | None]]] = []
    for when, levels in trace.samples:
        while pending is not None and pending[0] <= when:
            t, _, cost = pending
            for i, cap in enumerate(caps):
                rate = rates[i]
                if cap is not None and rate is not None:
                    level[i] = min(cap, level[i] + rate * (t - last)) - cost[i]
            last = t
            pending = next(events, None)
        own = levels.get(name)
        row: list[float | None] = []
        for i, cap in enumerate(caps):
            rate = rates[i]
            mine = None if own is None else own[i]
            if cap is None or rate is None or mine is None:
                row.append(None)
                continue
            exact = min(cap, level[i] + rate * (when - last))
            row.append((exact - mine) / rate)
        out.append((when - trace.t0, row))
    return out


def report(trace: GateTrace) -> list[str]:
    """Lines for the terminal: per budget, admissions per 5 s and the reading offset."""
    lines: list[str] = []
    admitted: dict[str, dict[int, int]] = defaultdict(lambda: defaultdict(int))
    for when, name, cost in trace.events:
        if cost[0] > 0:
            admitted[name][int((when - trace.t0) // 5)] += 1
    # the last offsets in units, summed over the live budgets, against their summed refill
    units = [0.0, 0.0, 0.0]
    refill = [0.0, 0.0, 0.0]
    for name in sorted(trace.budgets):
        counts = admitted[name]
        windows = " ".join(str(counts[w]) for w in range(max(counts, default=0) + 1))
        dead = trace.disabled.get(name)
        gone = "" if dead is None else f"; disabled at {dead - trace.t0:.2f} s"
        lines.append(f"{name}: admissions per 5 s: {windows}{gone}")
        rows = [r for r in offsets(trace, name) if any(x is not None for x in r[1])]
        if not rows or dead is not None:
            continue
        picks = [rows[0], rows[len(rows) // 2], rows[-1]]
        shown = ", ".join(
            f"{t:.0f} s: " + "/".join("-" if x is None else f"{x:.1f}" for x in row)
            for t, row in picks
        )
        lines.append(f"  reading offset (s of its refill, requests/input/output): {shown}")
        for i, (x, rate) in enumerate(zip(rows[-1][1], _rates(trace.budgets[name]), strict=True)):
            if x is not None and rate is not None:
                units[i] += x * rate
                refill[i] += rate
    if len([n for n in trace.budgets if n not in trace.disabled]) > 1:
        pairs = zip(units, refill, strict=True)
        together = "/".join(f"{u / r:.1f}" if r else "-" for u, r in pairs)
        lines.append(f"all budgets at the end: {together} s of the summed refill")
    return lines
