"""`AnswerTimes`: how long and how late a model class's answers run, learnt from what is seen.

A request cancelled (or timed out, or dropped) after it was sent may still be generated to
the end and charged by the server: the documentation is silent, and users report timed-out
requests using their quota. Its output reservation is therefore kept until the answer would
have completed at the latest, and then only what the answer could not have produced goes
back (`Reservation.abandon`). Both bounds come from here: the longest answer recently seen
(`longest`) and an upper envelope of the time an answer of n tokens takes (`duration`),
fixed latency plus seconds per output token.

What it learns from, earliest first: a stream's first text (`first_token`: the fixed
latency, seen a time-to-first-token after sending, before any answer has ended), a stream's
end (`stream_ended`: its seconds per token since its first event), and every completed
answer (`observe`). A cold start's probe is a stream, so a burst cancelled before any answer
came back is held for what the probe showed, not for a prior.

While a burst's first answers come in, the completed ones are the short ones: the long ones
sent with them are still running, and the longest answer seen so far says nothing of them.
So it also keeps the answers still running (`started`, `ended`), and its estimates are
`firm` only once enough answers sent before every one still running have ended; until then
an abandoned request is held while an answer sent with it or earlier still runs
(`running_since`). Both stream figures err long
(the first text comes a chunk late; the pace counts from ``message_start``, which a server
may send before it generates anything), and they serve only until `firm`: from then on the
completed answers alone are fitted. Pure arithmetic, no clock.
"""

from __future__ import annotations

import math
from collections import deque
from typing import Final

__all__ = ["AnswerTimes"]

#: Completed answers (and stream timings) remembered; the fit runs only for abandoned requests.
_WINDOW: Final = 256
#: Below this many completed answers the estimate is provisional (`firm` is False).
_FIT_MIN: Final = 8
#: Nothing observed yet: assume answers this slow (fixed seconds, seconds per token): a slow
#: model's time to first token on a long prompt, and 33 tokens a second.
_UNKNOWN: Final = (5.0, 0.03)
#: Margin on an estimate fitted to `_FIT_MIN` answers or more (jitter beyond the window's).
_MARGIN: Final = 1.1
#: Margin on an estimate from fewer: two answers jittered +-10 % differ by up to 22 %.
_MARGIN_FEW: Final = 1.3


class AnswerTimes:
    """Answers of one model class: completed ones as (output tokens, seconds from admission
    to end), and streams' timings (seconds to the first text, seconds per token).

    Every `observe*` is O(1); `longest` and `duration` are O(window) and run only for an
    abandoned request. An answer cut at its ``max_tokens`` says answers are not bounded by
    their own length here, so `longest` then assumes the whole ``max_tokens``.
    """

    __slots__ = ("_capped", "_first", "_per_token", "_running", "_samples", "_sent")

    def __init__(self) -> None:
        self._samples: deque[tuple[float, float]] = deque(maxlen=_WINDOW)
        self._capped: deque[bool] = deque(maxlen=_WINDOW)
        self._sent: deque[float] = deque(maxlen=_WINDOW)  # each sample's admission time
        self._first: deque[float] = deque(maxlen=_WINDOW)
        self._per_token: deque[float] = deque(maxlen=_WINDOW)
        self._running: dict[object, float] = {}  # answers not ended: their admission time

    def started(self, answer: object, sent_at: float) -> None:
        """`answer` (any hashable, the attempt) was admitted at `sent_at` and is running."""
        self._running[answer] = sent_at

    def ended(self, answer: object) -> None:
        """`answer` ended however it did (answered, failed or abandoned)."""
        self._running.pop(answer, None)

    def observe(
        self,
        seconds: float,
        output_tokens: float,
        max_tokens: float | None,
        sent_at: float = -math.inf,
    ) -> None:
        """A completed answer of `output_tokens` took `seconds` from its admission (at
        `sent_at`) to its end."""
        if seconds < 0 or output_tokens < 0:
            return
        self._samples.append((float(output_tokens), float(seconds)))
        self._capped.append(max_tokens is not None and output_tokens >= max_tokens)
        self._sent.append(sent_at)

    def first_token(self, seconds: float) -> None:
        """A stream's first text came `seconds` after its admission: the fixed part of an
        answer's time (and a chunk of text)."""
        if seconds >= 0:
            self._first.append(float(seconds))

    def stream_ended(self, seconds: float, output_tokens: float) -> None:
        """A stream's `output_tokens` came within `seconds` of its first event (its deltas'
        pace: the time per output token, apart from the fixed latency)."""
        if seconds >= 0 and output_tokens >= 1:
            self._per_token.append(float(seconds) / float(output_tokens))

    @property
    def firm(self) -> bool:
        """Enough answers ended, sent before any answer still running, that the estimates
        will hardly move: an abandoned request's refund may be timed once, not looked at
        again as answers come in. O(window + running)."""
        if len(self._samples) < _FIT_MIN:
            return False
        oldest = min(self._running.values(), default=math.inf)
        return sum(1 for sent in self._sent if sent < oldest) >= _FIT_MIN

    def running_since(self, sent_at: float) -> bool:
        """An answer admitted at or before `sent_at` is still running (its length, and the
        length of those sent with it, not yet seen). O(running)."""
        return any(sent <= sent_at for sent in self._running.values())

    @staticmethod
    def prior(tokens: float) -> float:
        """The seconds a `tokens` answer is assumed to take when nothing was seen: the
        longest an abandoned request is held, whatever is seen meanwhile."""
        fixed, per_token = _UNKNOWN
        return fixed + per_token * tokens

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
        """An upper estimate of the seconds from admission to the end of a `tokens` answer:
        every answer seen fits under it, with a margin for the jitter not yet seen."""
        samples = self._samples
        if len(samples) >= _FIT_MIN:
            per_token = self._slope()
            fixed = max(s - per_token * t for t, s in samples)  # every answer fits under it
            return _MARGIN * (fixed + per_token * tokens)
        if self._per_token or self._first:
            # a stream showed the fixed latency (and, once ended, the pace): the rest from
            # the prior, every completed answer still under the line
            per_token = self._stream_per_token() if self._per_token else _UNKNOWN[1]
            fixed = max(self._first, default=0.0)
            if samples:
                fixed = max(fixed, max(s - per_token * t for t, s in samples))
            return _MARGIN_FEW * (fixed + per_token * tokens)
        if not samples:
            return self.prior(tokens)
        # too few to separate fixed latency from per-token time: charge it all per token,
        # which over-estimates any answer longer than the ones seen
        slowest = max(s for _, s in samples)
        per_token = max(s / max(t, 1.0) for t, s in samples)
        return _MARGIN_FEW * max(slowest, per_token * tokens)

    def _slope(self) -> float:
        """Seconds per token fitted to the completed answers (least squares, at least 0)."""
        samples = self._samples
        n = len(samples)
        mean_t = sum(t for t, _ in samples) / n
        mean_s = sum(s for _, s in samples) / n
        var = sum((t - mean_t) ** 2 for t, _ in samples)
        cov = sum((t - mean_t) * (s - mean_s) for t, s in samples)
        return max(0.0, cov / var) if var > 0 else 0.0

    def _stream_per_token(self) -> float:
        """The slowest pace a stream's deltas came at (0 if no stream ended yet)."""
        return max(self._per_token, default=0.0)
