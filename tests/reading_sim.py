"""One `LocalBudget` against the mock's own buckets (`ServerBudget`), stepped event by event.

No event loop and no wall clock: an explicit clock jumps from event to event (admission,
arrival at the server, the answer's end, its landing here, the gate's next wake), so a run
at the real 60 s period with answers of seconds takes milliseconds and is deterministic.
What it reports is what the reading tests need: the 429s the server would have answered
(counted where they happen, never hidden), the makespan, what the readings lifted, and how
far the budget's output level sat below the server's (the rounding offset, issue 18 point 4).

Every setting the mock has for what the API leaves open is a parameter: `headers_at`,
`rounding`, `output_charge` ("actual" only asks for a non-empty output bucket at admission
and charges the answer at its end), another consumer's share of every refill (`shadow`).
"""

from __future__ import annotations

import heapq
import random
from collections import deque
from dataclasses import dataclass, field

from asyncthrift.mock._ratelimit import ServerBudget
from asyncthrift.pipeline.retry import server_view
from asyncthrift.scheduling.bucket import Cost, ServerView
from asyncthrift.scheduling.budget import LocalBudget
from asyncthrift.scheduling.limits import Limits

#: Seconds from admission here to arrival at the server, and from the answer's end back.
WIRE = 0.005


@dataclass
class Shape:
    """Answers of `base` + `per_token` seconds per output token (10 % jitter), `answers`
    output tokens long (capped by `max_tokens`), callers asking for `max_tokens`."""

    base: float = 0.2
    per_token: float = 0.001
    answers: tuple[int, int] = (40, 120)
    max_tokens: tuple[int, int] = (64, 1024)
    input_tokens: tuple[int, int] = (200, 800)


@dataclass
class Outcome:
    refused: int = 0
    makespan: float = 0.0
    lifted: float = 0.0
    #: mean of (server's output level - ours) over the readings of the run's second half
    offset: float = 0.0
    offsets: list[float] = field(default_factory=list)


def pool_fifth(period: float = 60.0) -> Limits:
    """`bench/bench_pools.py`'s 20 % budget at 25 s beyond the burst (150 output tokens/s)."""
    return Limits(rpm=113, itpm=56_000, otpm=9_000, period=period)


def simulate(
    limits: Limits,
    n: int,
    *,
    shape: Shape | None = None,
    headers_at: str = "completion",
    rounding: str = "nearest",
    output_charge: str = "reserve",
    shadow: float = 0.0,
    schedule: tuple[tuple[float, float], ...] = (),
    seed: int = 3,
) -> Outcome:
    """`n` requests queued at once through one budget (cold start on) against the server.

    `shadow` is another consumer's share of every refill from the start, `schedule` its
    ``(t, share)`` changes after that (`MockConfig.shadow_schedule`). A refused request
    is counted (`Outcome.refused`) and otherwise served as if admitted.
    """
    shape = shape or Shape()
    rng = random.Random(seed)
    jitter = random.Random(seed + 1)
    work = []
    for _ in range(n):
        max_tokens = rng.randint(*shape.max_tokens)
        answer = min(max_tokens, rng.randint(*shape.answers))
        work.append((Cost(1, rng.randint(*shape.input_tokens), max_tokens), answer))
    queue = deque(work)
    server = ServerBudget(limits, shadow, 0.0, rounding, "milliseconds", schedule)  # type: ignore[arg-type]
    budget = LocalBudget(limits, 0.0, cold_start=True)
    reserve = output_charge == "reserve"
    events: list[tuple[float, int, str, list[object]]] = []
    out = Outcome()
    seq = done = 0

    def at(t: float, kind: str, r: list[object]) -> None:
        nonlocal seq
        seq += 1
        heapq.heappush(events, (t, seq, kind, r))

    def headers(now: float) -> ServerView:
        return server_view(dict(server.headers(now, 1e9 + now)))

    at(0.0, "wake", [])
    while events:
        now, _, kind, r = heapq.heappop(events)
        if kind == "arrive":
            c, answer = r[0], r[3]
            assert isinstance(c, Cost) and isinstance(answer, int)
            need = (c[0], c[1], c[2] if reserve else 1.0)
            wait, _ = server.check(need, now)
            if wait > 0:
                out.refused += 1
            server.take((c[0], c[1], c[2] if reserve else 0.0), now)
            r.append(headers(now) if headers_at == "admission" else ServerView())
            seconds = shape.base + shape.per_token * answer
            at(now + seconds * jitter.uniform(0.9, 1.1), "complete", r)
            continue
        if kind == "complete":
            c, answer = r[0], r[3]
            assert isinstance(c, Cost) and isinstance(answer, int)
            if reserve:
                server.give(2, c[2] - answer, now)
            else:
                server.give(2, -float(answer), now)
            if headers_at == "completion":
                r[4] = headers(now)
            at(now + WIRE, "answer", r)
            continue
        if kind == "answer":  # read, then settled as `Reservation.settle` does
            c, mark, sent, answer, view = r
            assert isinstance(c, Cost) and isinstance(mark, Cost) and isinstance(sent, float)
            assert isinstance(answer, int) and isinstance(view, ServerView)
            budget.observe(view, mark, sent, now, own=c)
            budget.give(Cost(0, 0, c[2] - answer), now)
            budget.closed(mark, now)
            done += 1
            out.makespan = now
            level = budget.peek(now)[2]
            dim = server.dims[2]
            if level is not None and dim is not None:
                out.offsets.append(dim.sync(now) - level)
        while queue:  # the gate: admit the head while the budget allows, else wake then
            wait = budget.wait(queue[0][0], now)
            if wait > 0:
                at(now + wait, "wake", [])
                break
            c, answer = queue.popleft()
            at(now + WIRE, "arrive", [c, budget.take(c, now), now, answer])
    assert done == n
    half = out.offsets[len(out.offsets) // 2 :]
    out.offset = sum(half) / max(1, len(half))
    out.lifted = budget.lifted_by_readings[2]
    return out
