"""Counters and latency samples, and the frozen `Stats` snapshot `client.stats()` returns.

Recording is a few integer additions and one deque append on the hot path; percentiles are
computed only when a snapshot is taken, over the most recent samples (a bounded window, so
a long-running service never grows its memory and the figures describe recent behaviour).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, fields

__all__ = ["Recorder", "Stats", "percentile"]


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

    def as_dict(self) -> dict[str, float | int]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


class Recorder:
    """Mutable counters behind `Stats`; owned by one client, touched only on its loop."""

    __slots__ = (
        "cache_creation_input_tokens",
        "cache_errors",
        "cache_hits",
        "cache_misses",
        "cache_read_input_tokens",
        "connection_errors",
        "cost_usd",
        "dedupe_joins",
        "dollars_saved",
        "failed",
        "fallbacks",
        "in_flight",
        "input_tokens",
        "keys_disabled",
        "latencies",
        "output_tokens",
        "overloaded",
        "queue_waits",
        "rate_limited",
        "requests",
        "rerouted",
        "retries",
        "server_errors",
        "succeeded",
        "tokens_saved",
        "upstream_calls",
        "upstream_calls_saved",
    )

    def __init__(self, window: int = 10_000) -> None:
        self.requests = self.succeeded = self.failed = 0
        self.upstream_calls = self.retries = 0
        self.rate_limited = self.overloaded = self.server_errors = self.connection_errors = 0
        self.input_tokens = self.output_tokens = 0
        self.cache_creation_input_tokens = self.cache_read_input_tokens = 0
        self.cost_usd = 0.0
        self.cache_hits = self.cache_misses = self.cache_errors = 0
        self.dedupe_joins = self.upstream_calls_saved = self.tokens_saved = 0
        self.dollars_saved = 0.0
        self.in_flight = 0
        self.keys_disabled = self.rerouted = self.fallbacks = 0
        self.queue_waits: deque[float] = deque(maxlen=window)
        self.latencies: deque[float] = deque(maxlen=window)

    def snapshot(self, *, queued: int = 0, **overrides: int | float) -> Stats:
        waits = sorted(self.queue_waits)
        lats = sorted(self.latencies)
        values: dict[str, int | float] = {
            name: getattr(self, name)
            for name in (
                "requests",
                "succeeded",
                "failed",
                "upstream_calls",
                "retries",
                "rate_limited",
                "overloaded",
                "server_errors",
                "connection_errors",
                "input_tokens",
                "output_tokens",
                "cache_creation_input_tokens",
                "cache_read_input_tokens",
                "cost_usd",
                "cache_hits",
                "cache_misses",
                "cache_errors",
                "dedupe_joins",
                "upstream_calls_saved",
                "tokens_saved",
                "dollars_saved",
                "in_flight",
                "keys_disabled",
                "rerouted",
                "fallbacks",
            )
        }
        values.update(
            queued=queued,
            queue_wait_p50=percentile(waits, 50),
            queue_wait_p90=percentile(waits, 90),
            queue_wait_p99=percentile(waits, 99),
            latency_p50=percentile(lats, 50),
            latency_p90=percentile(lats, 90),
            latency_p99=percentile(lats, 99),
        )
        values.update(overrides)
        return Stats(**values)  # type: ignore[arg-type]
