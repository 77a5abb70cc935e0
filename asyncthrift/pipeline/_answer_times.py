"""`AnswerTimes`: how long and how late a model class's answers run, learnt from completed ones.

A request cancelled (or timed out, or dropped) after it was sent may still be generated to
the end and charged by the server: the documentation is silent, and users report timed-out
requests using their quota. Its output reservation is therefore kept until the answer would
have completed at the latest, and then only what the answer could not have produced goes
back (`Reservation.abandon`). Both bounds come from here: the longest answer recently seen
(`longest`) and an upper envelope of the time an answer of n tokens takes (`duration`),
fitted as fixed latency plus seconds per output token. Pure arithmetic, no clock.
"""

from __future__ import annotations

from collections import deque
from typing import Final

__all__ = ["AnswerTimes"]

#: Completed answers remembered (the fit is computed only when a request is abandoned).
_WINDOW: Final = 256
#: Below this many answers the fit is not trusted: all the time is charged per token.
_FIT_MIN: Final = 8
#: Nothing observed yet: assume answers this slow (fixed seconds, seconds per token).
_UNKNOWN: Final = (10.0, 0.05)
#: Margin on every estimate of a duration (jitter beyond what the window has seen).
_MARGIN: Final = 1.1


class AnswerTimes:
    """Completed answers of one model class: (output tokens, seconds from admission to end).

    `observe` is O(1); `longest` and `duration` are O(window) and run only for an abandoned
    request. An answer cut at its ``max_tokens`` says answers are not bounded by their own
    length here, so `longest` then assumes the whole ``max_tokens``.
    """

    __slots__ = ("_capped", "_samples")

    def __init__(self) -> None:
        self._samples: deque[tuple[float, float]] = deque(maxlen=_WINDOW)
        self._capped: deque[bool] = deque(maxlen=_WINDOW)

    def observe(self, seconds: float, output_tokens: float, max_tokens: float | None) -> None:
        """A completed answer of `output_tokens` took `seconds` from admission to its end."""
        if seconds < 0 or output_tokens < 0:
            return
        self._samples.append((float(output_tokens), float(seconds)))
        self._capped.append(max_tokens is not None and output_tokens >= max_tokens)

    def longest(self, max_tokens: float) -> float:
        """The most output an answer to a request allowed `max_tokens` can be expected to have."""
        samples = self._samples
        if not samples or any(self._capped):
            return max_tokens
        seen = max(tokens for tokens, _ in samples)
        if len(samples) < _FIT_MIN:
            seen *= 2.0  # a few answers say little about the longest
        return min(max_tokens, seen)

    def duration(self, tokens: float) -> float:
        """An upper estimate of the seconds from admission to the end of a `tokens` answer."""
        samples = self._samples
        if not samples:
            fixed, per_token = _UNKNOWN
            return fixed + per_token * tokens
        if len(samples) < _FIT_MIN:
            # too few to separate fixed latency from per-token time: charge it all per token,
            # which over-estimates any answer longer than the ones seen
            slowest = max(s for _, s in samples)
            per_token = max(s / max(t, 1.0) for t, s in samples)
            return _MARGIN * max(slowest, per_token * tokens)
        n = len(samples)
        mean_t = sum(t for t, _ in samples) / n
        mean_s = sum(s for _, s in samples) / n
        var = sum((t - mean_t) ** 2 for t, _ in samples)
        cov = sum((t - mean_t) * (s - mean_s) for t, s in samples)
        slope = max(0.0, cov / var) if var > 0 else 0.0
        fixed = max(s - slope * t for t, s in samples)  # every answer seen fits under it
        return _MARGIN * (fixed + slope * tokens)
