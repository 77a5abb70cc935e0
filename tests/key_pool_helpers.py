"""Helpers shared by the key-pool HTTP tests and `bench/bench_pools.py`: a share of a budget's
limits, and an observer of which key served what, so both measure the same way."""

from __future__ import annotations

import time
from collections import Counter, defaultdict

from asyncthrift import Limits
from asyncthrift.observability.metrics import Observer, RequestRecord


def scaled(limits: Limits, share: float) -> Limits:
    """`limits` with each dimension multiplied by `share`, over the same period."""
    assert limits.rpm is not None and limits.itpm is not None and limits.otpm is not None
    return Limits(
        rpm=limits.rpm * share,
        itpm=limits.itpm * share,
        otpm=limits.otpm * share,
        period=limits.period,
    )


class PerKey(Observer):
    """Each HTTP attempt's key and status, and when each key's last success came back.

    `last_ok` holds `time.monotonic() - t0`; set `t0` to the run's start for seconds into the
    run, or leave it 0 for the monotonic clock itself.
    """

    def __init__(self) -> None:
        self.t0 = 0.0
        self.statuses: dict[str, Counter[int]] = defaultdict(Counter)
        self.last_ok: dict[str, float] = {}

    def upstream_started(self, rec: RequestRecord, key: str) -> None:
        rec.data[self] = key

    def upstream_finished(
        self, rec: RequestRecord, status: int | None, error: BaseException | None, seconds: float
    ) -> None:
        key = rec.data[self]
        self.statuses[key][status or 0] += 1
        if status == 200:
            self.last_ok[key] = time.monotonic() - self.t0
