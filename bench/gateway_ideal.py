"""The gateway bench's minimum once the requests' arrival is known: what the driver's own
sending costs, told apart from what the gateways cost.

`acceptance.ideal_makespan` (the bench's ``ideal``, the figure the target is stated
against) has every request in hand at the start. The bench's driver is one process that
builds all of them with the SDK before the first is sent, so on this 2-core box the last
goes on the wire 0.4 s after the start when the box is quiet and 1-3 s after it under load
(its CPU: ~1.8 s per 600 requests), while the mock's buckets start full at the start and
their refill is lost while they are full. `ideal_after_arrivals` is the same clairvoyant
FIFO client (the mock's exact buckets, ``max_tokens`` reserved, the unused part back at the
answer, answers of the mock's latency without jitter) that may admit a request only once it
has been sent: the least any gateway could do with the requests as this driver sent them.
The ratio against it is a diagnosis, not the target's figure.
"""

from __future__ import annotations

import heapq
from collections.abc import Sequence
from typing import Any

import acceptance

from asyncthrift import Limits
from asyncthrift.scheduling.bucket import TokenBucket

__all__ = ["ideal_after_arrivals"]


def ideal_after_arrivals(
    bodies: Sequence[dict[str, Any]],
    limits: Limits,
    variant: str,
    arrivals: Sequence[float],
) -> float:
    """The makespan (from the driver's start) of a clairvoyant FIFO client, in order of
    arrival, that sends request i no sooner than ``arrivals[i]`` (seconds)."""
    base, per_token = acceptance.VARIANTS[variant]
    caps = (limits.rpm, limits.itpm, limits.otpm)
    buckets = [TokenBucket(c, limits.period, 0.0) for c in caps if c is not None]
    demand = acceptance.demand(list(bodies))
    order = sorted(range(len(demand)), key=lambda i: arrivals[i])
    refunds: list[tuple[float, float]] = []
    t, end = 0.0, 0.0
    for index in order:
        inp, max_tokens, answer = demand[index]
        cost = (1.0, inp, max_tokens)
        t = max(t, arrivals[index])
        while True:
            wait = max(b.wait(a, t) for b, a in zip(buckets, cost, strict=True))
            if refunds and t + wait > refunds[0][0]:
                when, amount = heapq.heappop(refunds)
                t = max(t, when)
                buckets[2].give(amount, t)
                continue
            break
        t += wait
        for b, a in zip(buckets, cost, strict=True):
            b.take(a, t)
        done = t + base + per_token * answer
        heapq.heappush(refunds, (done, max_tokens - answer))
        end = max(end, done)
    return end
