"""CPU per admitted request of the core scheduler, with many requests waiting behind a limit.

Drives `asyncthrift.scheduling.scheduler.Gate` over
`asyncthrift.scheduling.budget.LocalBudget` directly (no HTTP).
N worker tasks each loop forever: ``acquire`` a request, ``settle`` it with a usage below
the reservation (the refund every real response causes), yield once (the "send"), and queue
again at the back. The request limit binds (input and output limits have 4x headroom), so in
steady state N requests always wait and the scheduler admits at the configured rate. The
figure is process CPU time (`time.process_time`) per admission: the median over several
short windows, each point on a fresh loop, kinds interleaved.

Two parts:

1. Scale, on a virtual clock. The standard asyncio loop with a clock that jumps to the next
   timer instead of sleeping (`VirtualClockLoop`): every admission still waits for the
   gate's timer, but no CPU goes to the kernel's wake-ups, so the figures are the Python
   work alone and stable on a shared machine. Sweeps: requests waiting (1k..100k, one gate);
   independent gates (1, 10, 100 = keys x model classes, each with its own timer, 10k
   waiting spread over them, the rate split evenly); keys in one pool (1, 10, 100 budgets
   behind one gate). Plotted in ``results/scheduler.png``.
2. Real time, on the loop a user runs (uvloop when importable): 3k and 30k requests waiting
   at 4000 admissions/s, and 3k at 400/s (where every admission needs a timer of its own).

What the columns mean:

- ``floor``: the least any one-timer limiter can cost: the same worker tasks behind a FIFO
  of futures, one continuously refilling counter and one timer. What is left above it is the
  scheduler's own share (heap, three buckets, reservation, refund).
- ``asyncthrift``: `Gate` as shipped. ``share`` = asyncthrift - floor, in microseconds.
- ``fires/adm``, ``arms/adm``: how often the gate's one timer ran, and how many timers it
  created, per admission (at most 1 each is the design; more means it woke before the head
  fitted, or re-armed on refunds).
- ``ms-ceil``: `Gate` with one change: the timer is armed at the first whole millisecond at
  or after the instant the head fits (an absolute grid). uvloop (libuv) keeps time and timers
  in whole milliseconds and rounds a delay to the nearest one, so a timer can fire up to
  0.5 ms early, and a delay under 0.5 ms becomes ``call_soon``. The gate as first written
  re-armed for the remainder on every loop iteration until the clock ticked over: a busy
  spin (23-38 timer runs per admission and a whole core at 4000 admissions/s in this bench).
  Since 9b13cc9 the shipped gate never arms closer than 1 ms, which ends the spin but still
  fires early when a delay rounds down (then once more 1 ms later); ``ms-ceil`` never fires
  early.
- ``aiolimiter``: `aiolimiter.AsyncLimiter` (a heap of waiters, one timer) with the same
  waiters and rate, as an outside reference.
- ``x 1k`` / ``x 1``: CPU per admission of this row over the first row's, same column.
- ``adm/s``, ``CPU``: admissions per second achieved (real time) and CPU time over wall
  time (1.0 = one core busy).

Run ``python bench/bench_scheduler.py`` (about 1-2 minutes); ``--quick`` for a smoke run;
``--gates-only`` for the independent-gates sweep alone (printed, each round's ratios shown).
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import math
import selectors
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from common import RESULTS, md_table, median, resolve_loop, run, write_result

from asyncthrift.scheduling.bucket import Cost
from asyncthrift.scheduling.budget import LocalBudget
from asyncthrift.scheduling.limits import Limits
from asyncthrift.scheduling.scheduler import Gate

#: One request: the request limit binds; tokens have headroom (see `limits_for`).
COST = Cost(1, 500, 256)
#: What the pretend response reports: settle() refunds 20 input and 156 output tokens.
USAGE = (480.0, 100.0)
#: Refill period of the buckets: short, so the burst (rate x period) is small and the limit
#: binds from the first milliseconds (the scheduler's code path does not depend on it), but
#: never so short that a bucket holds fewer than `MIN_BURST` requests.
PERIOD = 0.05
MIN_BURST = 4.0

Admit = Callable[[], Awaitable[None]]
QUEUE_KINDS = ("floor", "asyncthrift", "ms-ceil", "aiolimiter")


def limits_for(rate: float) -> Limits:
    """Limits admitting `rate` requests per second; token limits 4x what that rate uses."""
    period = max(PERIOD, MIN_BURST / rate)
    burst = rate * period
    return Limits(
        rpm=burst,
        itpm=burst * COST.input_tokens * 4,
        otpm=burst * COST.output_tokens * 4,
        period=period,
    )


def ceil_ms(instant: float, now: float) -> float:
    """The first whole millisecond at or after `instant`, and at least one after `now`.

    libuv's timer resolution is a millisecond, and uvloop's clock reads whole milliseconds.
    An absolute grid, not now + a rounded wait, so the same head gives the same instant
    however often it is recomputed (the gate's ``_timer_at == when`` check then keeps the
    armed timer). Integer milliseconds, because a clock reading such as 5436.552 s is not
    exact in binary: rounding it up could land on `now` itself, a delay of 0, which uvloop
    runs at once, and the limiter would spin until the clock ticks over.
    """
    now_ms = round(now * 1000.0)
    return max(now_ms + 1, math.ceil(instant * 1000.0 - 1e-6)) / 1000.0


class CountingGate(Gate):
    """`Gate` as shipped, counting its timer callbacks and the timers it creates."""

    __slots__ = ("arms", "fires")

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.arms = 0
        self.fires = 0

    def _arm(self, when: float) -> None:
        before = self._timer
        super()._arm(when)
        if self._timer is not before:
            self.arms += 1

    def _on_timer(self) -> None:
        self.fires += 1
        super()._on_timer()


class MsCeilGate(CountingGate):
    """The proposed fix: arm at the first whole millisecond at or after the head fits."""

    __slots__ = ()

    def _arm(self, when: float) -> None:
        super()._arm(ceil_ms(when, self._get_loop().time()))


class FloorLimiter:
    """The least a one-timer limiter can do: a FIFO of futures, a counter, one timer.

    The counter refills continuously at `rate` up to `capacity`; the timer is armed for the
    whole millisecond at which the head fits, so it never fires early.
    """

    __slots__ = (
        "_capacity",
        "_level",
        "_loop",
        "_queue",
        "_rate",
        "_stamp",
        "_timer",
        "arms",
        "fires",
    )

    def __init__(self, rate: float, capacity: float, loop: asyncio.AbstractEventLoop) -> None:
        self._rate = rate
        self._capacity = capacity
        self._level = 0.0  # starts drained, like the other kinds
        self._loop = loop
        self._stamp = loop.time()
        self._queue: collections.deque[asyncio.Future[None]] = collections.deque()
        self._timer: asyncio.TimerHandle | None = None
        self.arms = 0
        self.fires = 0

    def _refill(self) -> float:
        now = self._loop.time()
        self._level = min(self._capacity, self._level + (now - self._stamp) * self._rate)
        self._stamp = now
        return now

    async def acquire(self) -> None:
        if not self._queue:
            self._refill()
            if self._level >= 1.0:
                self._level -= 1.0
                return
        future = self._loop.create_future()
        self._queue.append(future)
        if self._timer is None:
            self._arm(self._loop.time())
        await future

    def _arm(self, now: float) -> None:
        wait = (1.0 - self._level) / self._rate
        self.arms += 1
        self._timer = self._loop.call_at(ceil_ms(now + wait, now), self._fire)

    def _fire(self) -> None:
        self.fires += 1
        self._timer = None
        now = self._refill()
        queue = self._queue
        while queue and self._level >= 1.0 - 1e-9:
            future = queue.popleft()
            if not future.done():
                self._level -= 1.0
                future.set_result(None)
        if queue:
            self._arm(now)


class _Clock:
    __slots__ = ("now",)

    def __init__(self) -> None:
        self.now = 0.0


class _JumpingSelector(selectors.DefaultSelector):
    """Polls without blocking, and moves the clock forward by the time it would have slept.

    The clock also moves 1 µs (about one real loop iteration) whenever the loop polls with
    nothing ready to run: a limiter that re-arms for a remainder too small to move a float
    clock (aiolimiter does) would otherwise spin forever at one instant, where real time
    would have moved on.
    """

    def __init__(self, clock: _Clock) -> None:
        super().__init__()
        self._clock = clock
        self.loop: asyncio.AbstractEventLoop | None = None

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        if timeout is None:
            raise RuntimeError("virtual clock: nothing scheduled, the loop would wait forever")
        if timeout > 0 or not getattr(self.loop, "_ready", True):
            self._clock.now += max(timeout, 1e-6)
        return super().select(0)


class VirtualClockLoop(asyncio.SelectorEventLoop):
    """The standard loop, with a clock that jumps to the next timer instead of sleeping."""

    def __init__(self) -> None:
        clock = _Clock()
        selector = _JumpingSelector(clock)
        super().__init__(selector)
        selector.loop = self
        self._virtual = clock

    def time(self) -> float:
        return self._virtual.now


@dataclass(frozen=True, slots=True)
class Sample:
    """One measured configuration."""

    kind: str
    waiters: int
    gates: int
    keys: int
    rate: float
    """Admissions per second achieved in the window (configured: the `--rate`)."""
    cpu_us: float
    """Process CPU time per admission, microseconds."""
    busy: float
    """Process CPU time over wall time in the window (1.0 = one core saturated)."""
    fires: float
    """Gate timer callbacks per admission (NaN for other kinds)."""
    arms: float
    """Gate timers created per admission (NaN for other kinds)."""


def gate_admit(gate: Gate) -> Admit:
    """Acquire one request from `gate` and settle it with `USAGE` (the refund every response
    causes)."""

    async def admit() -> None:
        reservation = await gate.acquire(COST)
        reservation.settle(*USAGE)

    return admit


def build(
    kind: str, gates: int, keys: int, rate: float, loop: asyncio.AbstractEventLoop
) -> tuple[list[Admit], list[CountingGate | FloorLimiter]]:
    """One admit callable per gate (total rate split evenly), and the gates to read counts."""
    admits: list[Admit] = []
    counted: list[CountingGate | FloorLimiter] = []
    per_gate = rate / gates
    for _ in range(gates):
        if kind in ("asyncthrift", "ms-ceil"):
            per_key = per_gate / keys
            limits = limits_for(per_key)
            now = loop.time()
            # no server answers here, so no burst holds (LocalBudget's own advice for a
            # simulation of the scheduler alone): they would wait for an answer that never comes
            budgets = [LocalBudget(limits, now, hold_bursts=False) for _ in range(keys)]
            for b in budgets:
                assert limits.rpm is not None
                b.take(Cost(limits.rpm, 0, 0), now)  # start drained: the limit binds at once
            cls = {"ms-ceil": MsCeilGate}.get(kind, CountingGate)
            gate = cls(budgets, loop=loop)
            counted.append(gate)
            admit = gate_admit(gate)
        elif kind == "floor":
            floor = FloorLimiter(per_gate, limits_for(per_gate).rpm or 1.0, loop)
            counted.append(floor)
            admit = floor.acquire
        elif kind == "aiolimiter":
            from aiolimiter import AsyncLimiter

            limits = limits_for(per_gate)
            limiter = AsyncLimiter(limits.rpm or 1.0, limits.period)
            limiter._level = limiter.max_rate  # start drained, like the other kinds
            limiter._last_check = loop.time()
            admit = limiter.acquire
        else:
            raise ValueError(kind)
        admits.append(admit)
    return admits, counted


async def measure(
    kind: str,
    *,
    waiters: int,
    gates: int = 1,
    keys: int = 1,
    rate: float,
    warmup: float,
    window: float,
    windows: int,
) -> Sample:
    """Steady-state CPU per admission of `kind` with `waiters` requests always queued.

    Median over `windows` windows of `window` seconds each, after `warmup` seconds.
    """
    loop = asyncio.get_running_loop()
    admits, counted = build(kind, gates, keys, rate, loop)
    admitted = 0
    stop = False

    async def worker(admit: Admit) -> None:
        nonlocal admitted
        while not stop:
            await admit()
            admitted += 1
            # the admitted request "goes out": yield to the loop as a real send would; without
            # it a worker admitted on the fast path (nobody waiting) would never let go
            await asyncio.sleep(0)

    def fires_arms() -> tuple[int, int]:
        return sum(g.fires for g in counted), sum(g.arms for g in counted)

    tasks = [loop.create_task(worker(admits[i % gates])) for i in range(waiters)]
    await asyncio.sleep(0)  # every worker has queued its first request
    await asyncio.sleep(warmup)
    per_window: list[tuple[float, float, float, int, int, int]] = []
    for _ in range(windows):  # several short windows: the median shrugs off a noisy one
        c0, (f0, a0) = admitted, fires_arms()
        t0, p0 = time.perf_counter(), time.process_time()
        await asyncio.sleep(window)
        t1, p1 = time.perf_counter(), time.process_time()
        c1, (f1, a1) = admitted, fires_arms()
        n = max(1, c1 - c0)
        per_window.append(
            (
                (p1 - p0) / n * 1e6,
                (c1 - c0) / window,  # per second of loop time (virtual or real)
                (p1 - p0) / (t1 - t0),
                c1 - c0,
                f1 - f0,
                a1 - a0,
            )
        )
    stop = True
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    total = max(1, sum(w[3] for w in per_window))
    return Sample(
        kind=kind,
        waiters=waiters,
        gates=gates,
        keys=keys,
        rate=median([w[1] for w in per_window]),
        cpu_us=median([w[0] for w in per_window]),
        busy=median([w[2] for w in per_window]),
        fires=sum(w[4] for w in per_window) / total if counted else math.nan,
        arms=sum(w[5] for w in per_window) / total if counted else math.nan,
    )


def one(loop: str, kind: str, **kw: int | float) -> Sample:
    """Measure one configuration on a fresh loop: `loop` is ``virtual`` or a `run` loop name."""
    coro = measure(kind, **kw)  # type: ignore[arg-type]
    if loop == "virtual":
        with asyncio.Runner(loop_factory=VirtualClockLoop) as runner:
            return runner.run(coro)
    return run(coro, loop)


def f1(x: float) -> str:
    return "n/a" if math.isnan(x) else f"{x:.1f}"


def f2(x: float) -> str:
    return "n/a" if math.isnan(x) else f"{x:.2f}"


Table = dict[tuple[str, int], Sample]


def median_sample(samples: list[Sample]) -> Sample:
    """Field-wise median of repeated measurements of one configuration."""
    first = samples[0]
    return Sample(
        kind=first.kind,
        waiters=first.waiters,
        gates=first.gates,
        keys=first.keys,
        rate=median([x.rate for x in samples]),
        cpu_us=median([x.cpu_us for x in samples]),
        busy=median([x.busy for x in samples]),
        fires=median([x.fires for x in samples]),
        arms=median([x.arms for x in samples]),
    )


def rel(table: Table, kind: str, x: int, base: int) -> str:
    """CPU per admission at `x` over CPU per admission at `base`, same kind."""
    return f2(table[kind, x].cpu_us / table[kind, base].cpu_us)


def gates_only(
    rounds: int,
    fan: list[int],
    waiters: int,
    virtual: dict[str, float],
    say: Callable[[str, Sample], None],
) -> None:
    """The independent-gates sweep alone (``--gates-only``): each round measures every gate
    count, floor and asyncthrift interleaved, and prints its ratios, so a noisy round shows."""
    collected: dict[tuple[str, int], list[Sample]] = {}
    for r in range(rounds):
        for g in fan:
            for kind in ("floor", "asyncthrift"):
                s = one("virtual", kind, waiters=waiters, gates=g, **virtual)
                collected.setdefault((kind, g), []).append(s)
                say("gates", s)
        top, base = max(fan), fan[0]
        ours = collected["asyncthrift", top][-1].cpu_us / collected["asyncthrift", base][-1].cpu_us
        floor = collected["floor", top][-1].cpu_us / collected["floor", base][-1].cpu_us
        print(
            f"round {r + 1}: {top} gates over {base}: asyncthrift {ours:.2f}x, floor {floor:.2f}x"
        )
    table = {key: median_sample(samples) for key, samples in collected.items()}
    print(f"median of {rounds} rounds:")
    for g in fan:
        floor_us, ours_us = table["floor", g].cpu_us, table["asyncthrift", g].cpu_us
        print(
            f"  {g:>3} gates: floor {floor_us:5.1f} µs ({rel(table, 'floor', g, fan[0])}x), "
            f"asyncthrift {ours_us:5.1f} µs ({rel(table, 'asyncthrift', g, fan[0])}x)"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--loop", choices=("auto", "uvloop", "asyncio"), default="auto")
    parser.add_argument("--rate", type=float, default=4000.0, help="admissions/s (all gates)")
    parser.add_argument(
        "--admissions", type=int, default=1000, help="admissions per window (virtual clock)"
    )
    parser.add_argument("--window", type=float, default=0.3, help="seconds per real window")
    parser.add_argument("--windows", type=int, default=3, help="windows per point (median)")
    parser.add_argument("--rounds", type=int, default=3, help="virtual-clock rounds (median)")
    parser.add_argument("--real-rounds", type=int, default=2, help="real-time rounds (median)")
    parser.add_argument("--quick", action="store_true", help="small sizes, for a smoke run")
    parser.add_argument("--no-write", action="store_true", help="print only")
    parser.add_argument(
        "--gates-only",
        action="store_true",
        help="only the independent-gates sweep (virtual clock), printed, nothing written",
    )
    args = parser.parse_args()

    sizes = [1_000, 3_000, 10_000] if args.quick else [1_000, 3_000, 10_000, 30_000, 100_000]
    fan = [1, 10] if args.quick else [1, 10, 100]
    fan_waiters = 3_000 if args.quick else 10_000
    virtual = {
        "rate": args.rate,
        "warmup": 0.05,
        "window": args.admissions / args.rate,
        "windows": args.windows,
    }
    t_start = time.perf_counter()

    def say(part: str, s: Sample) -> None:
        print(
            f"  {part:6} {s.kind:11} N={s.waiters:>7,} G={s.gates:>3} K={s.keys:>3}: "
            f"{s.cpu_us:7.1f} µs/adm  {s.rate:6.0f} adm/s  fires {s.fires:5.2f}",
            flush=True,
        )

    # -- part 1: scale, virtual clock ------------------------------------------------------
    for kind in ("floor", "asyncthrift"):  # warm the process up; the first points ran slow
        one("virtual", kind, waiters=sizes[0], **virtual)
    if args.gates_only:
        gates_only(args.rounds, fan, fan_waiters, virtual, say)
        return
    collected: dict[tuple[str, str, int], list[Sample]] = {}
    for _ in range(args.rounds):  # whole sweeps repeated: a noisy spell hits one round only
        for n in sizes:
            for kind in ("floor", "asyncthrift", "aiolimiter"):
                s = one("virtual", kind, waiters=n, **virtual)
                collected.setdefault(("queue", kind, n), []).append(s)
                say("queue", s)
        for g in fan:
            for kind in ("floor", "asyncthrift"):
                s = one("virtual", kind, waiters=fan_waiters, gates=g, **virtual)
                collected.setdefault(("gates", kind, g), []).append(s)
                say("gates", s)
        for k in fan:
            for kind in ("asyncthrift",):
                s = one("virtual", kind, waiters=fan_waiters, keys=k, **virtual)
                collected.setdefault(("pool", kind, k), []).append(s)
                say("pool", s)
    queue: Table = {}
    gates: Table = {}
    pool: Table = {}
    for (sweep, kind, x), samples in collected.items():
        {"queue": queue, "gates": gates, "pool": pool}[sweep][kind, x] = median_sample(samples)

    # -- part 2: real time, the user's loop ----------------------------------------------------
    real_cases = [(args.rate, 3_000), (args.rate, 30_000), (args.rate / 10, 3_000)]
    if args.quick:
        real_cases = [(args.rate, 1_000), (args.rate, 3_000)]
    rounds: dict[tuple[str, float, int], list[Sample]] = {}
    for _ in range(args.real_rounds):  # whole rounds interleaved: noise hits every kind
        for rate, n in real_cases:
            for kind in ("floor", "asyncthrift", "ms-ceil"):
                s = one(
                    args.loop,
                    kind,
                    waiters=n,
                    rate=rate,
                    warmup=0.3,
                    window=args.window,
                    windows=args.windows,
                )
                rounds.setdefault((kind, rate, n), []).append(s)
                say("real", s)
    real = {key: median_sample(samples) for key, samples in rounds.items()}
    elapsed = time.perf_counter() - t_start

    # -- tables ----------------------------------------------------------------------------
    base = sizes[0]
    q_table = md_table(
        [
            "waiting",
            "floor µs/adm",
            "asyncthrift µs/adm",
            "share µs",
            "asyncthrift x 1k",
            "floor x 1k",
            "aiolimiter µs/adm",
            "aiolimiter x 1k",
            "fires/adm",
        ],
        [
            [
                f"{n:,}",
                f1(queue["floor", n].cpu_us),
                f1(queue["asyncthrift", n].cpu_us),
                f1(queue["asyncthrift", n].cpu_us - queue["floor", n].cpu_us),
                rel(queue, "asyncthrift", n, base),
                rel(queue, "floor", n, base),
                f1(queue["aiolimiter", n].cpu_us),
                rel(queue, "aiolimiter", n, base),
                f2(queue["asyncthrift", n].fires),
            ]
            for n in sizes
        ],
    )
    g_table = md_table(
        ["gates", "floor µs/adm", "asyncthrift µs/adm", "share µs", "asyncthrift x 1", "floor x 1"],
        [
            [
                g,
                f1(gates["floor", g].cpu_us),
                f1(gates["asyncthrift", g].cpu_us),
                f1(gates["asyncthrift", g].cpu_us - gates["floor", g].cpu_us),
                rel(gates, "asyncthrift", g, fan[0]),
                rel(gates, "floor", g, fan[0]),
            ]
            for g in fan
        ],
    )
    k_table = md_table(
        ["keys in the pool", "asyncthrift µs/adm", "x 1"],
        [[k, f1(pool["asyncthrift", k].cpu_us), rel(pool, "asyncthrift", k, fan[0])] for k in fan],
    )
    r_rows = []
    for rate, n in real_cases:
        fl, th, fx = (real[k, rate, n] for k in ("floor", "asyncthrift", "ms-ceil"))
        r_rows.append(
            [
                f"{rate:.0f}",
                f"{n:,}",
                f1(fl.cpu_us),
                f2(fl.fires),
                f1(th.cpu_us),
                f1(th.cpu_us - fl.cpu_us),
                f2(th.fires),
                f2(th.arms),
                f"{th.rate:.0f} / {th.busy:.0%}",
                f1(fx.cpu_us),
                f1(fx.cpu_us - fl.cpu_us),
                f2(fx.fires),
                f2(fx.arms),
                f"{fx.rate:.0f} / {fx.busy:.0%}",
            ]
        )
    r_table = md_table(
        [
            "rate/s",
            "waiting",
            "floor µs/adm",
            "floor fires/adm",
            "asyncthrift µs/adm",
            "share µs",
            "fires/adm",
            "arms/adm",
            "adm/s / CPU",
            "ms-ceil µs/adm",
            "ms-ceil share µs",
            "ms-ceil fires/adm",
            "ms-ceil arms/adm",
            "ms-ceil adm/s / CPU",
        ],
        r_rows,
    )

    # -- the claims --------------------------------------------------------------------------
    small, large = (3_000, 30_000) if not args.quick else (1_000, 3_000)
    v_ratio = queue["asyncthrift", large].cpu_us / queue["asyncthrift", small].cpu_us
    v_share = median([queue["asyncthrift", n].cpu_us - queue["floor", n].cpu_us for n in sizes])
    r_th = (
        real["asyncthrift", args.rate, large].cpu_us / real["asyncthrift", args.rate, small].cpu_us
    )
    r_fx = real["ms-ceil", args.rate, large].cpu_us / real["ms-ceil", args.rate, small].cpu_us
    r_fires = max(real["asyncthrift", rate, n].fires for rate, n in real_cases)
    top = max(fan)
    headline = (
        f"virtual clock: {large:,}/{small:,} waiting {v_ratio:.2f}x, "
        f"{sizes[-1]:,}/{base:,} {rel(queue, 'asyncthrift', sizes[-1], base)}x, "
        f"share {v_share:.0f} µs, {top} gates/1 {rel(gates, 'asyncthrift', top, fan[0])}x, "
        f"{top} keys/1 {rel(pool, 'asyncthrift', top, fan[0])}x; "
        f"{resolve_loop(args.loop)}: {large:,}/{small:,} asyncthrift {r_th:.2f}x "
        f"(ms-ceil {r_fx:.2f}x), up to {r_fires:.1f} timer fires/adm"
    )
    summary = "\n".join(
        [
            f"- Virtual clock, CPU per admission with {large:,} waiting over {small:,}: "
            f"{v_ratio:.2f}x; {sizes[-1]:,} over {base:,}: "
            f"{rel(queue, 'asyncthrift', sizes[-1], base)}x (floor "
            f"{rel(queue, 'floor', sizes[-1], base)}x, aiolimiter "
            f"{rel(queue, 'aiolimiter', sizes[-1], base)}x).",
            f"- The scheduler's own share (over the floor), median over the queue sizes: "
            f"{v_share:.0f} µs per admission.",
            f"- {top} independent gates over 1: {rel(gates, 'asyncthrift', top, fan[0])}x; "
            f"{top} keys in one pool over 1: {rel(pool, 'asyncthrift', top, fan[0])}x, "
            f"{pool['asyncthrift', top].cpu_us:.0f} µs per admission at {top} keys (the size "
            "check stops at the first budget that fits, and a refund looks at the head "
            "against the refunded budget alone; up to b75cddc both visited the whole pool: "
            "405 µs, 11.65x).",
            f"- Real time on {resolve_loop(args.loop)} at {args.rate:.0f}/s, {large:,} over "
            f"{small:,} waiting: asyncthrift {r_th:.2f}x, ms-ceil {r_fx:.2f}x; the shipped "
            f"gate's timer ran up to {r_fires:.2f} times per admission (ms-ceil: up to "
            f"{max(real['ms-ceil', rate, n].fires for rate, n in real_cases):.2f}).",
            f"- Wall time {elapsed:.0f} s.",
        ]
    )
    plot = None if args.no_write else plot_figures(sizes, fan, queue, gates, pool)
    body = "\n\n".join(
        [
            f"Request limit binding at {args.rate:.0f} admissions/s in total. Virtual clock: "
            f"the median of {args.rounds} rounds (whole sweeps, interleaved) of the median of "
            f"{args.windows} windows of {args.admissions} admissions. Real time: the median of "
            f"{args.real_rounds} rounds of the median of {args.windows} windows of "
            f"{args.window} s after 0.3 s. "
            "Process CPU time per admission; compare columns within one run only.",
            "## Summary\n\n" + summary,
            "## 1. Requests waiting, one gate (virtual clock)\n\n" + q_table,
            f"## 1. Independent gates, {fan_waiters:,} waiting (virtual clock)\n\n" + g_table,
            f"## 1. Keys in one pool, {fan_waiters:,} waiting (virtual clock)\n\n" + k_table,
            *([f"![scheduler scaling]({plot})"] if plot else []),
            f"## 2. Real time, {resolve_loop(args.loop)}\n\n" + r_table,
            "## What the columns mean\n\n" + (__doc__ or "").split("What the columns mean:")[1],
        ]
    )
    print()
    print("\n\n".join([q_table, g_table, k_table, r_table, summary]))
    if not args.no_write:
        path = write_result("scheduler", "Scheduler CPU per admission", args.loop, body, headline)
        print(f"\nwrote {path}")


def plot_figures(
    sizes: list[int], fan: list[int], queue: Table, gates: Table, pool: Table
) -> str | None:
    """Write ``results/scheduler.png`` (three panels); its file name, or None without matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed: no plot (pip install matplotlib)")
        return None
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.5))
    panels: list[tuple[Any, Table, list[int], str, tuple[str, ...]]] = [
        (
            axes[0],
            queue,
            sizes,
            "requests waiting (one gate)",
            ("floor", "asyncthrift", "aiolimiter"),
        ),
        (axes[1], gates, fan, "independent gates (10k waiting)", ("floor", "asyncthrift")),
        (axes[2], pool, fan, "keys in one pool (10k waiting)", ("asyncthrift",)),
    ]
    for ax, table, xs, label, kinds in panels:
        for kind in kinds:
            ax.plot(xs, [table[kind, x].cpu_us for x in xs], marker="o", label=kind)
        ax.set_xscale("log")
        ax.set_xlabel(label)
        ax.set_ylabel("process CPU µs per admission")
        ax.set_ylim(bottom=0)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend()
    fig.suptitle("asyncthrift scheduler, virtual clock: CPU per admission under a binding limit")
    fig.tight_layout()
    RESULTS.mkdir(parents=True, exist_ok=True)
    fig.savefig(RESULTS / "scheduler.png", dpi=110)
    plt.close(fig)
    return "scheduler.png"


if __name__ == "__main__":
    main()
