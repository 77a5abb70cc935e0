"""What an attempt's end adds to the client's counters (`stats()`): `count_usage`, the
tokens and dollars of an answer (and what prompt caching saved), and `count_error`, a failure
counted once in its kind.

Apart from `Attempt`, which settles its reservation and calls these once when it ends: what
is counted, and how a usage is priced into the counters, changes here alone.
"""

from __future__ import annotations

import anthropic
import httpx2
from anthropic.types import Usage

from ..core._status import error_status
from ..core.prices import cost_usd, usage_cost
from ..core.stats import Recorder

__all__ = ["count_error", "count_usage"]


def count_usage(stats: Recorder, model: str, u: Usage, cache_write: int, cache_read: int) -> float:
    """Count the answer's usage `u` (`cache_write`, `cache_read`: its prompt-cache tokens)
    in `stats`, priced for `model`; returns what it cost, in dollars."""
    stats.input_tokens += u.input_tokens
    stats.output_tokens += u.output_tokens
    stats.cache_creation_input_tokens += cache_write
    stats.cache_read_input_tokens += cache_read
    dollars = usage_cost(model, u)
    stats.cost_usd += dollars
    if cache_write or cache_read:  # prompt caching: what the same tokens cost uncached
        cached = dollars - cost_usd(model, u.input_tokens, u.output_tokens)
        stats.prompt_cache_tokens_saved += cache_read
        stats.prompt_cache_dollars_saved += cost_usd(model, cache_write + cache_read, 0) - cached
    return dollars


def count_error(stats: Recorder, error: BaseException) -> int | None:
    """Count `error` once in its kind; return the HTTP status it stands for."""
    status = error_status(error)
    if status is None:
        if isinstance(error, anthropic.APIConnectionError | httpx2.TransportError):
            stats.connection_errors += 1
    elif status == 429:
        stats.rate_limited += 1
    elif status == 529:
        stats.overloaded += 1
    elif status >= 500:
        stats.server_errors += 1
    return status
