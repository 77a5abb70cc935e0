"""What the mock saw: counters for assertions and benches, and an optional admission log.

Tests assert on these instead of guessing from client-side numbers (e.g. "zero 429s",
"peak concurrency never above N"); `/_mock/stats` serves the same dict to other processes.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field, fields
from typing import Any, NamedTuple

__all__ = ["Admission", "MockCounters"]


class Admission(NamedTuple):
    """One decided Messages request, for plots (no API key: just the model class).

    `t` is seconds since the server started (or was last reset). `status` is the HTTP status
    answered (0 for a dropped connection). `output_tokens` is what the answer will produce
    for a 200, and `max_tokens` otherwise (what the request asked to reserve).
    """

    t: float
    model_class: str
    input_tokens: int
    output_tokens: int
    status: int


@dataclass(slots=True)
class MockCounters:
    """Counters since start or the last reset (`MockServer.reset()` clears them in place).

    Token counters are what the rate limiter charged: `input_tokens` is input plus cache
    creation (cache reads are counted apart and never charged), `output_tokens` is the output
    actually produced, settled when each answer completes (refunds already deducted).
    """

    requests: int = 0  # POST /v1/messages received (any outcome)
    by_status: Counter[int] = field(default_factory=Counter)
    ok: int = 0
    rate_limited: int = 0
    overloaded: int = 0
    server_errors: int = 0
    dropped: int = 0
    stream_errors: int = 0
    streams: int = 0
    count_tokens: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_tokens: int = 0
    cache_creation_tokens: int = 0
    # admitted answers whose client went away before getting them: stopped then (streams,
    # and non-streamed ones with abandoned="stop") or finished unheard (abandoned="finish")
    cancelled: int = 0
    abandoned_output_tokens: int = 0  # output charged for those (in `output_tokens` too)
    in_flight: int = 0
    peak_in_flight: int = 0
    log: list[Admission] = field(default_factory=list)
    batch_api_requests: int = 0  # requests to any /v1/messages/batches endpoint
    batch_creates: int = 0  # batches created
    batch_requests: int = 0  # requests submitted in created batches
    batch_results: int = 0  # requests of ended batches (any result type)
    batch_results_served: int = 0  # results files served
    batch_cancels: int = 0
    batch_rate_limited: int = 0  # 429s of the batch endpoints (rate or queue limit)
    batch_input_tokens: int = 0  # usage of succeeded batch results
    batch_output_tokens: int = 0

    def clear(self) -> None:
        """Reset every counter to zero, keeping the same object (tests may hold it)."""
        for f in fields(self):
            if f.name == "in_flight":
                continue  # answers still running will decrement it when they settle
            value = getattr(self, f.name)
            if isinstance(value, int):
                setattr(self, f.name, 0)
            else:
                value.clear()
        self.peak_in_flight = self.in_flight

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able snapshot (status codes become string keys, log entries lists)."""
        out: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name == "by_status":
                value = {str(k): v for k, v in sorted(value.items())}
            elif f.name == "log":
                value = [list(a) for a in value]
            out[f.name] = value
        return out
