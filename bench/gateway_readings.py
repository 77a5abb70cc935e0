"""CPU of one header reading (`LocalBudget.observe`) with nothing binding, at a request rate.

    PYTHONPATH=$PWD python bench/gateway_readings.py [RATE [READINGS]]   # default 500 20000

A gateway answering hundreds of requests a second reads every answer's headers; what a
reading costs then depends on what was sent meanwhile (`Transit`, `NetHistory`). This drives
one budget as such a gateway would: requests admitted at RATE a second (Poisson), each
answered 50 ms later with headers written at completion by a server with limits far above
the demand (tokens rounded to a thousand), the unused output given back; and times
``observe`` alone (``time.process_time``). No event loop, no I/O: the scheduling layer's own
cost, comparable between trees (bench/RESULTS.md, branch ``gw27``).
"""

from __future__ import annotations

import heapq
import itertools
import random
import sys
import time

from asyncthrift.scheduling.bucket import Cost, ServerView
from asyncthrift.scheduling.budget import LocalBudget
from asyncthrift.scheduling.limits import Limits

FLIGHT = 0.05


def main() -> None:
    rate = float(sys.argv[1]) if len(sys.argv) > 1 else 500.0
    readings = int(sys.argv[2]) if len(sys.argv) > 2 else 20_000
    rng = random.Random(1)
    caps = [1e6, 1e9, 1e9]
    budget = LocalBudget(Limits(rpm=1_000_000, itpm=1_000_000_000, otpm=1_000_000_000), 0.0)
    server = caps[:]
    refill = [c / 60.0 for c in caps]
    out: list[tuple[float, int, Cost, Cost, float, int]] = []
    order = itertools.count()
    now = last = spent = 0.0
    done = 0
    while done < readings:
        now += rng.expovariate(rate)
        for k in range(3):
            server[k] = min(caps[k], server[k] + refill[k] * (now - last))
        last = now
        while out and out[0][0] <= now:
            lands, _, mark, cost, sent_at, used = heapq.heappop(out)
            server[2] += cost[2] - used
            view = ServerView(
                requests_limit=caps[0],
                requests_remaining=float(int(server[0])),
                input_limit=caps[1],
                input_remaining=float(int(server[1] // 1000 * 1000)),
                output_limit=caps[2],
                output_remaining=float(int(server[2] // 1000 * 1000)),
            )
            t = time.process_time()
            budget.observe(view, mark, sent_at, lands)
            spent += time.process_time() - t
            budget.give(Cost(0, 0, cost[2] - used), lands)
            done += 1
        cost = Cost(1, rng.randint(200, 4000), rng.choice((256, 1024, 4096)))
        mark = budget.take(cost, now)
        for k in range(3):
            server[k] -= cost[k]
        heapq.heappush(out, (now + FLIGHT, next(order), mark, cost, now, rng.randint(10, 200)))
    print(f"{rate:g} requests/s: {spent / readings * 1e6:.1f} us CPU per reading ({readings})")


if __name__ == "__main__":
    main()
