"""Input-token estimation that calibrates itself from observed `usage`.

Under-estimating input earns 429s; over-estimating wastes quota until the refund. The raw
estimate is a fast local heuristic (no network, no tokenizer): CJK text is about one token
per character, other text about four characters per token. A per-model-class `Calibrator`
learns the ratio actual/estimate from every response and charges the estimate times that
ratio plus a safety margin that shrinks as the ratio converges. The exact difference is
reconciled when `usage` arrives, so the estimate only has to be good, not perfect.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

import orjson

__all__ = ["Calibrator", "estimate_input_tokens", "text_tokens"]

#: Per-block guesses for content whose size is not its text (the server knows better, and
#: calibration plus reconciliation correct the rest).
_IMAGE_TOKENS = 1600
_DOCUMENT_TOKENS = 2000
_MESSAGE_OVERHEAD = 4
_REQUEST_OVERHEAD = 8


def text_tokens(text: str) -> float:
    """Rough token count of `text` in O(n) C-speed work.

    UTF-8 length minus character count is twice the number of 3-byte characters (CJK,
    kana, hangul), which are about one token each; the rest is about four characters a token.
    """
    n = len(text)
    if n == 0:
        return 0.0
    if text.isascii():
        return n / 4.0
    wide = (len(text.encode("utf-8", "surrogatepass")) - n) / 2.0
    wide = min(wide, float(n))
    return wide + (n - wide) / 4.0


def _content_tokens(content: object) -> float:
    if isinstance(content, str):
        return text_tokens(content)
    if not isinstance(content, Iterable) or isinstance(content, bytes | Mapping):
        return 0.0
    total = 0.0
    for block in content:
        if not isinstance(block, Mapping):
            continue
        kind = block.get("type")
        if kind == "text":
            total += text_tokens(str(block.get("text", "")))
        elif kind == "image":
            total += _IMAGE_TOKENS
        elif kind == "document":
            total += _DOCUMENT_TOKENS
        elif kind == "tool_result":
            total += 8 + _content_tokens(block.get("content", ""))
        elif kind in ("tool_use", "server_tool_use"):
            total += 8 + text_tokens(orjson.dumps(block.get("input", {})).decode())
        elif kind in ("thinking", "redacted_thinking"):
            total += text_tokens(str(block.get("thinking", block.get("data", ""))))
        else:
            total += text_tokens(orjson.dumps(block, default=str).decode())
    return total


def estimate_input_tokens(params: Mapping[str, Any]) -> float:
    """Raw (uncalibrated) input-token estimate of a Messages request body."""
    total = float(_REQUEST_OVERHEAD)
    system = params.get("system")
    if system:
        total += _content_tokens(system)
    for message in params.get("messages") or ():
        if isinstance(message, Mapping):
            total += _MESSAGE_OVERHEAD + _content_tokens(message.get("content", ""))
    tools = params.get("tools")
    if tools:
        total += text_tokens(orjson.dumps(tools, default=str).decode())
    return total


_LOG_2 = math.log(2.0)
_MIN_RATIO = 0.2
_MAX_RATIO = 5.0
_LOG_MIN_RATIO = math.log(_MIN_RATIO)
_LOG_MAX_RATIO = math.log(_MAX_RATIO)


class Calibrator:
    """Learns actual/estimated input for one model class from observed usage.

    The ratio is a running mean for the first observations (fast convergence) and an EWMA
    after that; each observation is clipped to within 2x of the current ratio once a few
    have been seen, so one odd response (a huge image, a cached prefix) cannot swing it.
    The charged estimate carries a margin of twice the observed spread of the log-ratio,
    between 2 % and 25 %.
    """

    __slots__ = ("_factor", "_log_ratio", "_var", "count")

    MIN_RATIO = _MIN_RATIO
    MAX_RATIO = _MAX_RATIO
    ALPHA = 0.05

    def __init__(self) -> None:
        self._log_ratio = 0.0
        self._var = 0.1**2
        self.count = 0
        self._factor = self.ratio * (1.0 + self.margin)  # what `charge` multiplies by

    @property
    def ratio(self) -> float:
        return math.exp(self._log_ratio)

    @property
    def margin(self) -> float:
        return min(0.25, max(0.02, 2.0 * math.sqrt(self._var)))

    def charge(self, raw_estimate: float) -> int:
        """Tokens to reserve for a request whose raw estimate is `raw_estimate`."""
        return max(1, math.ceil(raw_estimate * self._factor))

    def observe(self, raw_estimate: float, actual: float) -> None:
        if raw_estimate <= 0 or actual <= 0:
            return
        x = math.log(actual / raw_estimate)
        x = min(max(x, _LOG_MIN_RATIO), _LOG_MAX_RATIO)
        if self.count >= 5:
            x = min(max(x, self._log_ratio - _LOG_2), self._log_ratio + _LOG_2)
        self.count += 1
        alpha = max(1.0 / self.count, self.ALPHA)
        err = x - self._log_ratio
        self._log_ratio += alpha * err
        if self.count == 1:
            self._var = 0.1**2
        else:
            self._var = (1 - alpha) * (self._var + alpha * err * err)
        self._factor = self.ratio * (1.0 + self.margin)
