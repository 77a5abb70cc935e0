"""Counters and latency samples, and the frozen `Stats` snapshot `client.stats()` returns.

Recording is a few integer additions and one deque append on the hot path; percentiles are
computed only when a snapshot is taken, over the most recent samples (a bounded window, so
a long-running service never grows its memory and the figures describe recent behaviour).
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, fields
from typing import Final

__all__ = ["Recorder", "Stats", "nearest_rank", "percentile"]


def nearest_rank(values: Iterable[float], q: float) -> float:
    """The `q` quantile (a fraction in [0, 1]) of `values` (at least one) by nearest rank:
    the smallest value with a share of at least `q` of them at or below it."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


def percentile(sorted_values: list[float], q: float) -> float:
    """Nearest-rank percentile of an ascending list (0.0 for no samples)."""
    if not sorted_values:
        return 0.0
    k = min(len(sorted_values) - 1, max(0, round(q / 100.0 * len(sorted_values) + 0.5) - 1))
    return sorted_values[k]


@dataclass(frozen=True, slots=True)
class Stats:
    """A point-in-time snapshot of one client. Latencies are in seconds."""

    requests: int = 0
    """Calls to messages.create / stream made by the application."""
    succeeded: int = 0
    failed: int = 0
    upstream_calls: int = 0
    """HTTP attempts actually sent to the API (retries included)."""
    retries: int = 0
    rate_limited: int = 0
    """429 responses received."""
    overloaded: int = 0
    """529 responses received."""
    server_errors: int = 0
    connection_errors: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cache_creation_input_tokens: int = 0
    cache_read_input_tokens: int = 0
    cost_usd: float = 0.0
    cache_hits: int = 0
    cache_misses: int = 0
    cache_errors: int = 0
    dedupe_joins: int = 0
    upstream_calls_saved: int = 0
    tokens_saved: int = 0
    dollars_saved: float = 0.0
    queued: int = 0
    """Requests waiting for admission right now."""
    in_flight: int = 0
    """Upstream calls under way right now."""
    queue_wait_p50: float = 0.0
    queue_wait_p90: float = 0.0
    queue_wait_p99: float = 0.0
    latency_p50: float = 0.0
    latency_p90: float = 0.0
    latency_p99: float = 0.0
    batch_requests: int = 0
    """Requests submitted through ``client.batches`` (in every batch created)."""
    batch_results: int = 0
    """Batch results read back through ``client.batches.results``."""
    batch_cost_usd: float = 0.0
    """Cost of those results at the batch price (half); included in `cost_usd`."""
    compression_tokens_saved: int = 0
    """Input tokens removed by the opt-in history compression (`asyncthrift.compression`)."""
    keys_disabled: int = 0
    """API keys refused by the API (401/403) and disabled for good."""
    rerouted: int = 0
    """Attempts refused with their key (401/403) and sent again on another key."""
    fallbacks: int = 0
    """Calls answered by a fallback model (see ``Thrift(fallback=...)``) instead of theirs."""
    # -- savings by technique (issue #12); the totals above add cache, dedupe and packing --
    cache_calls_saved: int = 0
    """Upstream calls not made because the cache held the answer."""
    cache_tokens_saved: int = 0
    cache_dollars_saved: float = 0.0
    dedupe_calls_saved: int = 0
    """Upstream calls not made because an identical call was in flight."""
    dedupe_tokens_saved: int = 0
    dedupe_dollars_saved: float = 0.0
    packed_calls: int = 0
    """Upstream calls that answered several packed requests."""
    packed_items: int = 0
    """Requests answered from a packed call."""
    pack_resent: int = 0
    """Packed requests re-sent alone (missing, duplicated, malformed or cut in the reply)."""
    packing_calls_saved: int = 0
    packing_tokens_saved: int = 0
    """Input tokens (as billed) the packed requests would have sent alone, less the packed
    calls' own."""
    packing_dollars_saved: float = 0.0
    prompt_cache_tokens_saved: int = 0
    """Input tokens read from the API's prompt cache (billed at 0.1x, free for ITPM)."""
    prompt_cache_dollars_saved: float = 0.0
    """Reads at 0.9x the input price, less cache writes at 0.25x (may be negative)."""
    prompt_cache_marked: int = 0
    """Requests to which ``auto_cache_control`` added a breakpoint."""
    max_tokens_lowered: int = 0
    """Calls sent with an adaptive ``max_tokens`` below their caller's."""
    max_tokens_reserve_saved: int = 0
    """Output tokens of OTPM reservation not held thanks to adaptive ``max_tokens``."""
    max_tokens_reasked: int = 0
    """Answers cut at the adaptive limit and asked again with the caller's ``max_tokens``."""
    max_tokens_dollars_lost: float = 0.0
    """What the cut answers cost (the price of adaptive ``max_tokens``)."""
    # -- issue #21: what the cache skipped and when packing stood aside (appended last) --
    cache_truncated_skipped: int = 0
    """Answers cut at a length limit (``max_tokens``) not stored because
    ``cache_truncated=False`` (the default); the first is also logged, once per client."""
    pack_alone: int = 0
    """Packable requests sent alone without a packed call: to learn a new group's answers
    (`Pack.learn`), while packing was off for their group, or where a packed call was
    predicted to cost more (`Pack.cost_guard`)."""
    pack_paused: int = 0
    """Times packing was turned off for a group (each logged with the group and why): the
    sum of the next three, by reason."""
    pack_paused_long_answers: int = 0
    """... because its answers ran longer than their ``max_tokens``."""
    pack_paused_resends: int = 0
    """... because too many of its packed items were re-sent alone."""
    pack_paused_cost: int = 0
    """... because a packed call cost more than its answered items would have alone."""
    pack_paused_at: float = 0.0
    """When packing was last turned off for a group (Unix time; 0.0: never)."""

    def as_dict(self) -> dict[str, float | int]:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    def __str__(self) -> str:
        """One line a person reads at a glance (``print(client.stats())``); every field is in
        ``repr()`` and `as_dict`."""
        failed = f", {self.failed} failed" if self.failed else ""
        saved = ""
        if self.upstream_calls_saved or self.dollars_saved:
            saved = (
                f", saved ${self.dollars_saved:.4f} ({self.upstream_calls_saved} calls not made)"
            )
        return (
            f"{self.requests} requests ({self.succeeded} ok{failed}) in "
            f"{self.upstream_calls} upstream calls, {self.rate_limited} 429s, "
            f"{self.retries} retries; cost ${self.cost_usd:.4f}{saved}; "
            f"latency p50 {self.latency_p50:.2f}s p99 {self.latency_p99:.2f}s"
        )


_DERIVED = frozenset(
    {
        "queued",
        "queue_wait_p50",
        "queue_wait_p90",
        "queue_wait_p99",
        "latency_p50",
        "latency_p90",
        "latency_p99",
        # supplied by the client at snapshot (`batches.stats_overrides`,
        # `compression.compression_overrides`), not counted by the `Recorder`
        "batch_requests",
        "batch_results",
        "batch_cost_usd",
        "compression_tokens_saved",
        "pack_paused",  # the sum of the pack_paused_* reasons
    }
)
#: The counters a `Recorder` keeps: every `Stats` field but those computed at snapshot.
_COUNTED: Final = tuple(f.name for f in fields(Stats) if f.name not in _DERIVED)
_ZERO: Final = {f.name: f.default for f in fields(Stats)}


class Recorder:
    """Mutable counters behind `Stats`; owned by one client, touched only on its loop."""

    __slots__ = (*_COUNTED, "latencies", "queue_waits")

    # every counted field of `Stats`, typed as there (tests/test_stats_fields.py checks)
    requests: int
    succeeded: int
    failed: int
    upstream_calls: int
    retries: int
    rate_limited: int
    overloaded: int
    server_errors: int
    connection_errors: int
    input_tokens: int
    output_tokens: int
    cache_creation_input_tokens: int
    cache_read_input_tokens: int
    cost_usd: float
    cache_hits: int
    cache_misses: int
    cache_errors: int
    cache_truncated_skipped: int
    dedupe_joins: int
    upstream_calls_saved: int
    tokens_saved: int
    dollars_saved: float
    in_flight: int
    keys_disabled: int
    rerouted: int
    fallbacks: int
    cache_calls_saved: int
    cache_tokens_saved: int
    cache_dollars_saved: float
    dedupe_calls_saved: int
    dedupe_tokens_saved: int
    dedupe_dollars_saved: float
    packed_calls: int
    packed_items: int
    pack_resent: int
    pack_alone: int
    pack_paused_long_answers: int
    pack_paused_resends: int
    pack_paused_cost: int
    pack_paused_at: float
    packing_calls_saved: int
    packing_tokens_saved: int
    packing_dollars_saved: float
    prompt_cache_tokens_saved: int
    prompt_cache_dollars_saved: float
    prompt_cache_marked: int
    max_tokens_lowered: int
    max_tokens_reserve_saved: int
    max_tokens_reasked: int
    max_tokens_dollars_lost: float

    def __init__(self, window: int = 10_000) -> None:
        for name in _COUNTED:
            setattr(self, name, _ZERO[name])
        self.queue_waits: deque[float] = deque(maxlen=window)
        self.latencies: deque[float] = deque(maxlen=window)

    def snapshot(self, *, queued: int = 0, **overrides: int | float) -> Stats:
        waits = sorted(self.queue_waits)
        lats = sorted(self.latencies)
        values: dict[str, int | float] = {name: getattr(self, name) for name in _COUNTED}
        values.update(
            queued=queued,
            queue_wait_p50=percentile(waits, 50),
            queue_wait_p90=percentile(waits, 90),
            queue_wait_p99=percentile(waits, 99),
            latency_p50=percentile(lats, 50),
            latency_p90=percentile(lats, 90),
            latency_p99=percentile(lats, 99),
            pack_paused=(
                self.pack_paused_long_answers + self.pack_paused_resends + self.pack_paused_cost
            ),
        )
        values.update(overrides)
        return Stats(**values)  # type: ignore[arg-type]
