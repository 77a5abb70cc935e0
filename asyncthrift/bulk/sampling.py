"""What the bulk progress line shows: a `Sample` of the client's counters and limits.

The progress bar (`progress`) only draws samples; reading them from a live `Thrift` (its
stats, and the live limits of a single-key, single-class run) is this module's job, so the
runner keeps to running.
"""

from __future__ import annotations

import time

from ..client.thrift import Thrift
from ..scheduling.budget import LocalBudget
from ..scheduling.limits import Limits, LimitsSpec
from .progress import Sample

__all__ = ["display_budget", "display_limits", "sample_client"]


def display_budget(client: Thrift) -> LocalBudget | None:
    """The one budget of a single-key, single-class run (None when there are several)."""
    budgets = client.budgets()
    if len(budgets) == 1:
        (only,) = budgets.values()
        if len(only) == 1:
            return only[0]
    return None


def display_limits(client: Thrift, configured: LimitsSpec) -> Limits | None:
    """The limits the progress line compares usage with (the live ones when known)."""
    b = display_budget(client)
    if b is not None:
        caps = [None if bucket is None else bucket.capacity for bucket in b.buckets]
        if any(c is not None for c in caps):
            return Limits(caps[0], caps[1], caps[2], b.limits.period)
    return configured if isinstance(configured, Limits) else None


def sample_client(
    client: Thrift,
    configured: LimitsSpec,
    *,
    done: int,
    total: int | None,
    finished: int,
    in_flight: int,
) -> Sample:
    """One reading of a run's progress: the runner's counts and the client's counters."""
    s = client.stats()
    budget = display_budget(client)
    return Sample(
        t=time.monotonic(),
        done=done,
        total=total,
        finished=finished,
        requests=s.upstream_calls,
        input_tokens=s.input_tokens + s.cache_creation_input_tokens,
        output_tokens=s.output_tokens,
        rate_limited=s.rate_limited,
        in_flight=in_flight,
        limits=display_limits(client, configured),
        refilled=None if budget is None else budget.refilled(client.now()),
    )
