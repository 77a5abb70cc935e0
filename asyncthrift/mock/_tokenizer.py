"""The mock's "true" token counter: deterministic, roughly realistic, and deliberately not
the client's formula.

A client estimates input tokens before sending (asyncthrift uses characters per token,
calibrated from observed `usage`). If the mock counted with the same formula, calibration
would never be exercised, so this counter works per *word* instead:

- an ASCII word of up to 6 letters is 1 token, each further 4 letters (or part) add 1;
- digits cost 1 token per group of 3; other letters (accented, Cyrillic, ...) 1 per 3;
- each CJK / kana / hangul character is 1 token, plus 1 for every full run of 5 of them
  (about 1.2 tokens per character on average, like real tokenizers);
- every punctuation or symbol character is 1 token (2 outside the BMP, e.g. emoji);
- spaces are free, a run of whitespace containing a newline is 1 token.

On top of the text, a request pays fixed overheads (framing, per message, system prompt,
tool definitions), so `"hi"` costs 8 tokens as it does on the real API.

`analyze_input` also finds prompt-caching breakpoints (`cache_control` on blocks, or at the
top level for the end of the prompt) in the order the API caches (tools, system, messages),
with the cumulative token count and a hash of the prefix up to each one: the server needs
both to decide cache reads and writes.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import orjson
import xxhash

__all__ = ["Breakpoint", "InputAnalysis", "analyze_input", "count_text"]

_CJK = "\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff\uff66-\uff9f"

# Every match is exactly one token, so counting is `len(findall)`: no Python loop per word.
# An ASCII word's first unit is up to 6 letters (the lookbehind holds only at a word start),
# later units up to 4. Spaces match nothing: they are free.
_ASCII_UNITS = r"(?<![A-Za-z])[A-Za-z]{1,6}|[A-Za-z]{1,4}|\d{1,3}|\n\s*|[^\w\s]|_"
_ASCII_RE = re.compile(_ASCII_UNITS)
_UNICODE_RE = re.compile(_ASCII_UNITS + rf"|[{_CJK}]|[^\W\d_A-Za-z{_CJK}]{{1,3}}")
# Extra tokens outside ASCII: each full run of 5 CJK characters costs one more (so about
# 1.2 tokens per character), and every character outside the BMP (emoji) costs two.
_EXTRA_RE = re.compile(rf"[{_CJK}]{{5}}|[\U00010000-\U0010ffff]")

#: Framing of any request (role markers, end of prompt).
REQUEST_OVERHEAD = 3
#: Per message (role header and separator).
MESSAGE_OVERHEAD = 4
#: A system prompt's own framing.
SYSTEM_OVERHEAD = 3
#: The hidden tool-use system prompt added when `tools` is present.
TOOLS_OVERHEAD = 300
#: A tool_use or tool_result block's framing.
TOOL_BLOCK_OVERHEAD = 8
#: An image (the real cost depends on its size, about 1,600 for a ~1 megapixel image).
IMAGE_TOKENS = 1600


def count_text(text: str) -> int:
    """Tokens in `text` under the rules in the module docstring."""
    if text.isascii():
        return len(_ASCII_RE.findall(text))
    return len(_UNICODE_RE.findall(text)) + len(_EXTRA_RE.findall(text))


@dataclass(frozen=True, slots=True)
class Breakpoint:
    """A `cache_control` marker: the prefix up to and including its block."""

    tokens: int  # cumulative input tokens of the prefix
    key: int  # hash of the model and the prefix's content
    ttl: float  # seconds: 300 ("5m", the default) or 3600 ("1h")


@dataclass(frozen=True, slots=True)
class InputAnalysis:
    """Total input tokens of a request and its prompt-caching breakpoints, in order."""

    total: int
    breakpoints: tuple[Breakpoint, ...]


def _dumps(value: object) -> bytes:
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS)


def _json_tokens(value: object) -> int:
    return count_text(_dumps(value).decode())


def _block_tokens(block: Any) -> int:
    """Tokens of one content block (text, image, document, tool_use, tool_result, ...)."""
    if not isinstance(block, dict):
        return _json_tokens(block)
    kind = block.get("type")
    if kind == "text":
        text = block.get("text")
        return count_text(text) if isinstance(text, str) else 0
    if kind == "image":
        return IMAGE_TOKENS
    if kind == "document":
        source = block.get("source")
        if isinstance(source, dict):
            data = source.get("data")
            if source.get("type") == "text" and isinstance(data, str):
                return count_text(data)
            if isinstance(data, str):
                return max(IMAGE_TOKENS, len(data) // 40)
        return IMAGE_TOKENS
    if kind == "tool_use":
        return (
            TOOL_BLOCK_OVERHEAD
            + count_text(str(block.get("name", "")))
            + _json_tokens(block.get("input", {}))
        )
    if kind == "tool_result":
        content = block.get("content")
        if isinstance(content, str):
            return TOOL_BLOCK_OVERHEAD + count_text(content)
        if isinstance(content, list):
            return TOOL_BLOCK_OVERHEAD + sum(_block_tokens(b) for b in content)
        return TOOL_BLOCK_OVERHEAD
    if kind == "thinking":
        thinking = block.get("thinking")
        return count_text(thinking) if isinstance(thinking, str) else 0
    if kind == "redacted_thinking":
        return len(str(block.get("data", ""))) // 4
    stripped = {k: v for k, v in block.items() if k != "cache_control"}
    return _json_tokens(stripped)


def _ttl(block: Any) -> float | None:
    """The cache TTL if `block` carries a `cache_control` breakpoint."""
    if not isinstance(block, dict):
        return None
    cc = block.get("cache_control")
    if not isinstance(cc, dict):
        return None
    return 3600.0 if cc.get("ttl") == "1h" else 300.0


class _Walker:
    """Sums tokens in caching order while hashing the prefix for breakpoints."""

    __slots__ = ("breakpoints", "hasher", "total")

    def __init__(self, model: str) -> None:
        self.total = REQUEST_OVERHEAD
        self.hasher = xxhash.xxh3_64(model.encode())
        self.breakpoints: list[Breakpoint] = []

    def add(self, tokens: int, content: object, block: object = None) -> None:
        self.total += tokens
        if isinstance(content, dict) and "cache_control" in content:
            content = {k: v for k, v in content.items() if k != "cache_control"}
        self.hasher.update(_dumps(content))
        ttl = _ttl(block)
        if ttl is not None:
            self.breakpoints.append(Breakpoint(self.total, self.hasher.intdigest(), ttl))


def analyze_input(body: dict[str, Any]) -> InputAnalysis:
    """Input tokens of a (validated) Messages or count_tokens body, with cache breakpoints."""
    w = _Walker(str(body.get("model", "")))
    tools = body.get("tools")
    if isinstance(tools, list) and tools:
        w.add(TOOLS_OVERHEAD, "tools")
        for tool in tools:
            stripped = (
                {k: v for k, v in tool.items() if k != "cache_control"}
                if isinstance(tool, dict)
                else tool
            )
            w.add(_json_tokens(stripped), stripped, tool)
    system = body.get("system")
    if isinstance(system, str) and system:
        w.add(SYSTEM_OVERHEAD + count_text(system), system)
    elif isinstance(system, list) and system:
        w.add(SYSTEM_OVERHEAD, "system")
        for block in system:
            w.add(_block_tokens(block), block, block)
    for message in body.get("messages", ()):
        role = message.get("role")
        w.add(MESSAGE_OVERHEAD, role)
        content = message.get("content")
        if isinstance(content, str):
            w.add(count_text(content), content)
        elif isinstance(content, list):
            for block in content:
                w.add(_block_tokens(block), block, block)
    # Top-level `cache_control` marks the last cacheable block: the end of the prompt.
    ttl = _ttl(body)
    if ttl is not None and not (w.breakpoints and w.breakpoints[-1].tokens == w.total):
        w.breakpoints.append(Breakpoint(w.total, w.hasher.intdigest(), ttl))
    return InputAnalysis(w.total, tuple(w.breakpoints))
