"""Where the shared budgets' time goes, from a `bench_shared` run's traces: the output tokens
the key's limit had made available that were neither spent nor reserved by a request in
flight (held idle in the processes' leases, or reserved ahead and not yet usable), and when
each process's last answer came.

Why this measure: at the real period with `max_tokens` five times the answer, every limit
is spent at its rate once the first bucket is gone, so what a run loses is stock, not
rate. Every output token held idle is one the run's last requests cannot spend: the
makespan's excess over the minimum is about the stock held idle at the end divided by the
refill rate. One process without Redis held 700-1,500 output tokens so (1-2 s of the
refill); four sharing one key held 2,200-4,800 (3-6.7 s), about one `max_tokens` of 1,024
per process: each process's head waits for a lease that covers it whole while the tokens
it has gathered so far sit unused (bench/RESULTS.md, `shared27`).

The request each answer belongs to is matched in order within its process (answers come
back in about the order they were sent; the error on a sum over a process is small).
"""

from __future__ import annotations

import statistics
from typing import Any

__all__ = ["idle_output", "last_answers"]


def _events(row: dict[str, Any]) -> list[tuple[float, float, float]]:
    """(seconds from the start, change of output reserved in flight, output spent)."""
    start = row["start_at"]
    events: list[tuple[float, float, float]] = []
    for tr in row["traces"]:
        admitted = sorted(tr["admitted"])
        for a in admitted:
            events.append((a[0] - start, a[3], 0.0))
        for k, d in enumerate(sorted(tr["done"])):
            reserved = admitted[k][3] if k < len(admitted) else 0.0
            events.append((d[0] - start, -reserved, d[2]))
    events.sort()
    return events


def idle_output(row: dict[str, Any], step: float = 0.5, skip: float = 5.0) -> tuple[float, float]:
    """(tokens, seconds of the refill): the median over the run, sampled every `step` s from
    `skip` s after the start (the first burst) to the last admission, of the output tokens
    made available (a full bucket plus the refill since the start) less those spent by
    answers and those reserved by requests in flight."""
    lim = row["limits"]
    cap, rate = lim["otpm"], lim["otpm"] / lim["period"]
    events = _events(row)
    last = max((t for t, change, _ in events if change > 0), default=0.0)
    samples: list[float] = []
    reserved = spent = 0.0
    k, t = 0, skip
    while t <= last:
        while k < len(events) and events[k][0] <= t:
            reserved += events[k][1]
            spent += events[k][2]
            k += 1
        samples.append(cap + rate * t - spent - reserved)
        t += step
    idle = statistics.median(samples) if samples else 0.0
    return idle, idle / rate


def last_answers(row: dict[str, Any]) -> list[float]:
    """Each process's last answer, seconds from the start, in the processes' order."""
    start = row["start_at"]
    return [max((d[0] for d in tr["done"]), default=start) - start for tr in row["traces"]]
