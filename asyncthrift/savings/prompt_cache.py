"""Automatic prompt caching: mark the longest stable prefix with ``cache_control`` once it pays.

Why: a long system prompt or tool list sent again and again is billed in full each time
unless the caller marks it; marked, a repeat is read at 0.1x the input price and does not
count toward ITPM for most models, so the scheduler can admit more at once. Marking a
prefix that is never repeated costs 1.25x instead, so `AutoCache` marks only a prefix that
is long enough to be cached (the model's minimum, 1024 tokens for Sonnet and Opus, 2048
for Haiku) and was already seen within the cache lifetime (5 minutes).

Candidates, longest first: tools + system + the earlier turns; tools + system; tools. The
breakpoint goes on the last block of the chosen prefix, and never beyond the API's four per
request (a caller's own markers count). Once a marked request's answer shows the prefix
cached (a cache write or read in its ``usage``), later requests with that prefix are
charged at admission for the input *outside* the prefix only, as the API charges ITPM.

``Thrift(auto_cache_control=True)`` turns it on (it is off by default).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

import orjson
import xxhash
from anthropic.types import Usage

from ..core.tokens import estimate_input_tokens
from ..scheduling.limits import model_class

__all__ = ["AutoCache", "Marked", "min_cacheable"]

MAX_BREAKPOINTS: Final = 4
_EPHEMERAL: Final = {"type": "ephemeral"}
_MAX_SEEN: Final = 10_000


def min_cacheable(model: str) -> int:
    """The shortest prefix the API caches: 2048 tokens for Haiku, 1024 for the others."""
    return 2048 if model_class(model) == "haiku" else 1024


class Marked:
    """A prefix marked on one request: its hash and its estimated (raw) tokens."""

    __slots__ = ("key", "tokens")

    def __init__(self, key: str, tokens: float) -> None:
        self.key = key
        self.tokens = tokens


def _count_breakpoints(params: Mapping[str, Any]) -> int:
    n = 1 if params.get("cache_control") else 0
    for part in (params.get("tools"), params.get("system")):
        if isinstance(part, list | tuple):
            n += sum(1 for b in part if isinstance(b, Mapping) and b.get("cache_control"))
    for m in params.get("messages") or ():
        content = m.get("content") if isinstance(m, Mapping) else None
        if isinstance(content, list | tuple):
            n += sum(1 for b in content if isinstance(b, Mapping) and b.get("cache_control"))
    return n


def _with_mark(block: Any) -> Any:
    if not isinstance(block, Mapping) or block.get("type") in ("thinking", "redacted_thinking"):
        return None
    return {**block, "cache_control": _EPHEMERAL}


def _mark_list(blocks: Any) -> list[Any] | None:
    """`blocks` (a string or a list of blocks) with the last block marked, or None."""
    if isinstance(blocks, str):
        return [{"type": "text", "text": blocks, "cache_control": _EPHEMERAL}] if blocks else None
    if not isinstance(blocks, list | tuple) or not blocks:
        return None
    last = _with_mark(blocks[-1])
    return None if last is None else [*blocks[:-1], last]


def _candidates(
    messages: list[Any] | tuple[Any, ...], tools: Any, system: Any
) -> list[tuple[str, dict[str, Any]]]:
    """Where a breakpoint may go, and the prefix it would cache: longest first."""
    candidates = []
    if len(messages) > 1:
        candidates.append(
            ("messages", {"tools": tools, "system": system, "messages": messages[:-1]})
        )
    if system:
        candidates.append(("system", {"tools": tools, "system": system, "messages": []}))
    if tools:
        candidates.append(("tools", {"tools": tools, "system": None, "messages": []}))
    return candidates


def _with_breakpoint(
    params: dict[str, Any],
    where: str,
    messages: list[Any] | tuple[Any, ...],
    tools: Any,
    system: Any,
) -> dict[str, Any] | None:
    """A copy of `params` with a breakpoint at the end of `where` (None: it has no block
    that can carry one)."""
    out = dict(params)
    if where == "messages":
        before = messages[-2]
        content = _mark_list(before.get("content") if isinstance(before, Mapping) else None)
        if content is None:
            return None
        out["messages"] = [*messages[:-2], {**before, "content": content}, messages[-1]]
    elif where == "system":
        new_system = _mark_list(system)
        if new_system is None:
            return None
        out["system"] = new_system
    else:
        new_tools = _mark_list(tools)
        if new_tools is None:
            return None
        out["tools"] = new_tools
    return out


class AutoCache:
    """Prefixes seen (by hash, when) and those the server holds (by hash, until when)."""

    __slots__ = ("_seen", "_written", "ttl")

    def __init__(self, ttl: float = 300.0) -> None:
        self.ttl = ttl
        self._seen: dict[str, float] = {}
        self._written: dict[str, float] = {}

    def mark(
        self, params: dict[str, Any], ratio: float, now: float
    ) -> tuple[dict[str, Any], Marked | None]:
        """`params` with a breakpoint on its longest stable prefix that pays (a copy; the
        caller's dicts are never changed), and what was marked; or `params` and None."""
        if _count_breakpoints(params) >= MAX_BREAKPOINTS:
            return params, None
        messages = params.get("messages")
        if not isinstance(messages, list | tuple) or not messages:
            return params, None
        model = str(params.get("model", ""))
        minimum = min_cacheable(model)
        tools, system = params.get("tools"), params.get("system")
        candidates = _candidates(messages, tools, system)
        seen = self._seen
        if len(seen) > _MAX_SEEN:
            seen.clear()
        chosen = None
        for where, prefix in candidates:
            tokens = estimate_input_tokens(prefix)
            if tokens * ratio < minimum:
                continue  # shorter candidates are shorter still
            try:
                key = (
                    model
                    + ":"
                    + xxhash.xxh3_128_hexdigest(
                        orjson.dumps(prefix, option=orjson.OPT_SORT_KEYS, default=str)
                    )
                )
            except TypeError:
                return params, None
            last = seen.get(key)
            seen[key] = now
            if chosen is None and last is not None and now - last <= self.ttl:
                chosen = (where, Marked(key, tokens))
        if chosen is None:
            return params, None
        where, marked = chosen
        out = _with_breakpoint(params, where, messages, tools, system)
        return (params, None) if out is None else (out, marked)

    def cached_tokens(self, marked: Marked | None, now: float) -> float:
        """Raw input tokens of `marked` the server should read from its cache (0: none)."""
        if marked is None:
            return 0.0
        until = self._written.get(marked.key)
        return marked.tokens if until is not None and until > now else 0.0

    def confirm(self, marked: Marked, usage: Usage, now: float) -> None:
        """A marked request's answer: a cache write or read means the server holds it now."""
        if (usage.cache_creation_input_tokens or 0) or (usage.cache_read_input_tokens or 0):
            written = self._written
            if len(written) > _MAX_SEEN:
                for k in [k for k, t in written.items() if t <= now]:
                    del written[k]
            written[marked.key] = now + self.ttl
        else:
            self._written.pop(marked.key, None)
