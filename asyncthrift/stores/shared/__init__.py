"""Budgets shared by many processes through Redis: ``Thrift(shared="redis://...")``.

Every process with the same Redis and API key shares one set of buckets per model class;
each admits from a local lease refilled in the background (see `SharedBudget`), and falls
back to a local share of the limits while Redis is unreachable.
"""

from __future__ import annotations

from ...errors import InvalidArgument
from .budget import SharedBudget
from .store import SharedStats, SharedStore, budget_tag

__all__ = ["SharedBudget", "SharedStats", "SharedStore", "budget_tag", "make_shared"]


def make_shared(
    spec: str | SharedStore | None, fallback: float | str | None = None
) -> SharedStore | None:
    """The store described by `spec` (a URL, a `SharedStore`, or None for none)."""
    if spec is None:
        if fallback is not None:
            raise InvalidArgument("shared_fallback= needs shared='redis://...'")
        return None
    if isinstance(spec, SharedStore):
        if fallback is not None:
            raise InvalidArgument("pass shared_fallback= to the SharedStore, not to Thrift")
        return spec
    if isinstance(spec, str):
        return SharedStore(spec, fallback=fallback)
    raise TypeError(f"shared= must be a redis:// URL or a SharedStore, got {type(spec).__name__}")
