"""Prices in USD per million tokens, as data in one place.

Newer model ids fall back to their family's latest price with one logged warning, so a new
model never breaks cost accounting. Cache writes cost 1.25x (5 min) of the input price,
cache reads 0.1x; the Message Batches API costs half.
"""

from __future__ import annotations

import functools
import logging
from dataclasses import dataclass
from typing import Final, Protocol

__all__ = [
    "CACHE_READ",
    "CACHE_WRITE",
    "PRICES",
    "Price",
    "UsageLike",
    "cost_usd",
    "price_for",
    "usage_cost",
]

log = logging.getLogger("asyncthrift")


@dataclass(frozen=True, slots=True)
class Price:
    input: float
    output: float


#: Longest matching prefix wins; family names are the fallback.
PRICES: dict[str, Price] = {
    "claude-opus-4-5": Price(5.0, 25.0),
    "claude-opus-4-1": Price(15.0, 75.0),
    "claude-opus-4": Price(15.0, 75.0),
    "claude-sonnet-4-5": Price(3.0, 15.0),
    "claude-sonnet-4": Price(3.0, 15.0),
    "claude-haiku-4-5": Price(1.0, 5.0),
    "claude-3-5-haiku": Price(0.80, 4.0),
    "opus": Price(5.0, 25.0),
    "sonnet": Price(3.0, 15.0),
    "haiku": Price(1.0, 5.0),
}
CACHE_WRITE: Final = 1.25
"""A cache write's price, per token, as a share of the input price (5-minute cache)."""
CACHE_READ: Final = 0.10
"""A cache read's price, per token, as a share of the input price."""
_BATCH = 0.5
_warned: set[str] = set()
_by_length = sorted(PRICES, key=len, reverse=True)


@functools.lru_cache(maxsize=1024)  # every response prices its model: look it up once
def price_for(model: str) -> Price | None:
    """The price of `model` by its longest listed prefix, else its family's."""
    m = model.lower()
    for prefix in _by_length:
        if m.startswith(prefix):
            return PRICES[prefix]
    for family in ("opus", "sonnet", "haiku"):
        if family in m:
            if m not in _warned:
                _warned.add(m)
                log.warning("no price listed for %r: using the %s family's price", model, family)
            return PRICES[family]
    return None


def cost_usd(
    model: str,
    input_tokens: float,
    output_tokens: float,
    cache_creation_input_tokens: float = 0.0,
    cache_read_input_tokens: float = 0.0,
    *,
    batch: bool = False,
) -> float:
    """Dollar cost of one response's usage (0.0 for a model with no known price)."""
    price = price_for(model)
    if price is None:
        return 0.0
    dollars = (
        input_tokens * price.input
        + cache_creation_input_tokens * price.input * CACHE_WRITE
        + cache_read_input_tokens * price.input * CACHE_READ
        + output_tokens * price.output
    ) / 1e6
    return dollars * _BATCH if batch else dollars


class UsageLike(Protocol):
    """The token counts of a response's ``usage`` (the SDK's `Usage`, its beta twin, ...)."""

    @property
    def input_tokens(self) -> int: ...

    @property
    def output_tokens(self) -> int: ...

    @property
    def cache_creation_input_tokens(self) -> int | None: ...

    @property
    def cache_read_input_tokens(self) -> int | None: ...


def usage_cost(model: str, usage: UsageLike, *, output: bool = True, batch: bool = False) -> float:
    """What a response's `usage` of `model` cost: input, cache writes and reads, and (unless
    `output` is False) output; `batch`: at the Message Batches API's price. The one place
    cost is computed from a usage, so every counter prices the same tokens alike."""
    return cost_usd(
        model,
        usage.input_tokens,
        usage.output_tokens if output else 0,
        usage.cache_creation_input_tokens or 0,
        usage.cache_read_input_tokens or 0,
        batch=batch,
    )
