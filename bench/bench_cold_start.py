"""What the scheduler alone adds to latency at 95 % of tier-4 RPM, in virtual time.

    python bench/bench_cold_start.py             # 10 s and 35 s windows, a few seconds

`bench_latency.py` runs the workload against the mock in real time, where the shared
machine's CPU noise (event-loop lag of 100 ms and more at a load average of 5) decides the
tail. This bench runs the same arrivals with the clock virtual (looptime) and the upstream
the SDK's in-memory transport answering in exactly 300 ms with a full tier-4 bucket in its
headers, so a request's latency is 300 ms plus the time the scheduler held it, to the
microsecond, and every run gives the same figures. What holds requests here is the cold
start: the first request goes before the others burst (see `LocalBudget`); the arrivals of
its round trip wait or go at the refill's pace. Over a short window they are a larger share
of the requests, so p99 is given for the first 10 s and for 35 s (bench_latency's window).

Poisson arrivals at 63.3/s (seed 2), prompts of about 490 tokens, ``max_tokens=256``,
answers of 40-160 output tokens (seed 1), ``Thrift(limits={"claude-sonnet": tier 4})``.
"""

from __future__ import annotations

import argparse

import looptime
from common import md_table, percentile

# the repository root: `common` put it on sys.path
from tests.cold_start import UPSTREAM, run_cold_start


async def latencies(duration: float) -> list[float]:
    """Each request's latency (virtual seconds from its arrival to its answer), in order."""
    return (await run_cold_start(duration)).latencies


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--windows", type=float, nargs="+", default=[10.0, 35.0])
    args = parser.parse_args()
    rows = []
    for window in args.windows:
        loop = looptime.new_event_loop(start=0.0)
        try:
            lat = loop.run_until_complete(latencies(window))
        finally:
            loop.close()
        slow = sum(1 for x in lat if x > 1.10 * UPSTREAM)
        rows.append(
            [
                f"{window:g} s",
                str(len(lat)),
                f"{percentile(lat, 50):.3f}",
                f"{percentile(lat, 99):.3f}",
                f"{max(lat):.3f}",
                str(slow),
                " ".join(f"{x * 1e3:.0f}" for x in lat[:16]),
            ]
        )
    print(
        md_table(
            [
                "window",
                "requests",
                "p50 s",
                "p99 s",
                "max s",
                "> 1.10 x upstream",
                "first 16 latencies, ms",
            ],
            rows,
        )
    )


if __name__ == "__main__":
    main()
