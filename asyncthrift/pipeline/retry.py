"""What to retry, and when: exponential backoff with full jitter, server hints first.

Retries go back through the scheduler (they pay again), so this module only decides *whether*
an attempt may succeed if repeated and *how long* to wait before re-queueing it. A 429 needs
no sleep here: the server's `retry-after` blocks the whole (key, model class) budget, which
holds every request for it, not just this one.
"""

from __future__ import annotations

import email.utils
import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Final

import anthropic

from ..errors import InvalidArgument
from ..scheduling.bucket import ServerView

__all__ = [
    "NEVER_RETRY",
    "RetryDecision",
    "RetryPolicy",
    "classify",
    "parse_retry_after",
    "server_view",
]

#: Statuses that cannot succeed by repeating the same request.
NEVER_RETRY = frozenset({400, 401, 403, 404, 413})
_RETRY_STATUSES = frozenset({408, 409, 429, 500, 502, 503, 504, 529})


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Full-jitter exponential backoff: sleep U(0, min(cap, base * 2**attempt))."""

    max_retries: int = 5
    base: float = 0.5
    cap: float = 20.0

    def __post_init__(self) -> None:
        if isinstance(self.max_retries, bool) or not isinstance(self.max_retries, int):
            raise TypeError(f"max_retries must be an int, got {self.max_retries!r}")
        if self.max_retries < 0:
            raise InvalidArgument(f"max_retries must be >= 0, got {self.max_retries}")
        if not (self.base > 0 and self.cap >= self.base):
            raise InvalidArgument(
                f"retry backoff needs base > 0 and cap >= base, got base={self.base!r}, "
                f"cap={self.cap!r}"
            )

    def backoff(self, attempt: int, rand: Callable[[], float] = random.random) -> float:
        return rand() * min(self.cap, self.base * (2.0**attempt))


@dataclass(frozen=True, slots=True)
class RetryDecision:
    retry: bool
    status: int | None
    retry_after: float | None


def parse_retry_after(headers: Mapping[str, str], now: float | None = None) -> float | None:
    """Seconds to wait from `retry-after-ms`, else `retry-after` (seconds or HTTP date)."""
    ms = headers.get("retry-after-ms")
    if ms is not None:
        try:
            value = float(ms) / 1000.0
            if value >= 0:
                return value
        except ValueError:
            pass
    raw = headers.get("retry-after")
    if raw is None:
        return None
    try:
        value = float(raw)
        return value if value >= 0 else None
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(raw).timestamp()
    except (TypeError, ValueError, IndexError):
        return None
    return max(0.0, when - (time.time() if now is None else now))


_P = "anthropic-ratelimit-"
#: The response headers `server_view` reads, by their lower-case names as bytes (how httpx
#: keeps them) and as str (any other mapping).
_WANTED: Final = (
    _P + "requests-limit",
    _P + "requests-remaining",
    _P + "requests-reset",
    _P + "input-tokens-limit",
    _P + "input-tokens-remaining",
    _P + "output-tokens-limit",
    _P + "output-tokens-remaining",
    "retry-after-ms",
    "retry-after",
    "x-should-retry",
)
_WANTED_STR: Final = frozenset(_WANTED)
_WANTED_BYTES: Final = {name.encode(): name for name in _WANTED}
_EMPTY_VIEW: Final = ServerView()


def _wanted_headers(headers: Mapping[str, str]) -> dict[str, str]:
    """The headers `server_view` reads, lower-cased, found in one pass over `headers`.

    Why one pass: ``httpx.Headers.get`` scans every header and raises ``KeyError`` inside
    for a missing one, so nine lookups cost about 14 µs per response, more than the rest of
    the scheduler's work on it. Over the raw byte pairs only the names we want are decoded.
    """
    found: dict[str, str] = {}
    raw = getattr(headers, "raw", None)  # httpx / httpx2 `Headers`: [(name, value)] bytes
    if isinstance(raw, list):
        wanted = _WANTED_BYTES
        for key, value in raw:
            name = wanted.get(key.lower())
            if name is not None:
                found[name] = value.decode("latin-1")
        return found
    for key, value in headers.items():
        name = key.lower()
        if name in _WANTED_STR:
            found[name] = value
    return found


def _num(headers: Mapping[str, str], name: str) -> float | None:
    raw = headers.get(name)
    if raw is None:
        return None
    try:
        return float(raw)
    except ValueError:
        return None


def _epoch(headers: Mapping[str, str], name: str) -> float | None:
    raw = headers.get(name)
    if not raw:
        return None
    try:
        return datetime.fromisoformat(raw).timestamp()
    except ValueError:
        return None


def server_view(headers: Mapping[str, str]) -> ServerView:
    """The rate-limit state one response's headers report (`ServerView()` if none)."""
    h = _wanted_headers(headers)
    if not h:
        return _EMPTY_VIEW
    p = _P
    hint = h.get("x-should-retry")
    return ServerView(
        _num(h, p + "requests-limit"),
        _num(h, p + "requests-remaining"),
        _num(h, p + "input-tokens-limit"),
        _num(h, p + "input-tokens-remaining"),
        _num(h, p + "output-tokens-limit"),
        _num(h, p + "output-tokens-remaining"),
        parse_retry_after(h),
        _epoch(h, p + "requests-reset"),
        None if hint is None else hint == "true",
    )


def classify(exc: BaseException, view: ServerView | None = None) -> RetryDecision:
    """Whether an attempt that raised `exc` may succeed if repeated.

    `view` is what its response's headers say, read once by the caller (`server_view`);
    without it they are read here.
    """
    if isinstance(exc, anthropic.APIStatusError):
        status = exc.status_code
        if view is None:
            view = server_view(exc.response.headers)
        after = view.retry_after
        if status in NEVER_RETRY:
            return RetryDecision(False, status, after)
        hint = view.should_retry
        if hint is False:
            return RetryDecision(False, status, after)
        retry = hint is True or status in _RETRY_STATUSES or status >= 500
        return RetryDecision(retry, status, after)
    if isinstance(exc, anthropic.APIConnectionError):  # includes APITimeoutError
        return RetryDecision(True, None, None)
    return RetryDecision(False, None, None)
