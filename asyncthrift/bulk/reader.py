"""Streaming the input file: one line at a time, each classified before anything is sent.

Input lines use the Message Batches API's request shape, ``{"custom_id": ..., "params":
{...Messages API body...}}``, plus an optional ``"priority"``. A bad line never stops a run:

- unreadable (invalid JSON, not an object) or without a usable ``custom_id``: there is no id
  to write a result under, so it becomes a `BadLine` (reported, no result line);
- missing or invalid ``params`` or ``priority``: an `Item` with a `problem`, which the runner
  writes as an ``errored`` result without calling the API (the Batches API would reject it
  the same way).

Only the checks the API itself would fail are made here; everything else is left to the
server, whose 400 becomes an ``errored`` result too.
"""

from __future__ import annotations

from collections.abc import Generator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from ..scheduling.lanes import Priority, lane_level

__all__ = ["BadLine", "Item", "count_lines", "iter_lines", "parse_line"]

#: asyncthrift's per-request options: not Messages API fields, so not allowed in params.
_CLIENT_OPTIONS = ("priority", "deadline", "cache", "dedupe")

_CHUNK = 1 << 20


@dataclass(frozen=True, slots=True)
class Item:
    """One request to run, or (with `problem`) to answer with an ``errored`` result."""

    lineno: int
    custom_id: str
    params: dict[str, Any]
    priority: Priority = "default"
    problem: str | None = None


@dataclass(frozen=True, slots=True)
class BadLine:
    """A line that cannot get a result line: no readable JSON object or no custom_id."""

    lineno: int
    reason: str


def iter_lines(path: Path) -> Generator[tuple[int, bytes], None, None]:
    """(line number from 1, raw line) for every line of `path`, without loading the file."""
    with path.open("rb", buffering=_CHUNK) as f:
        yield from enumerate(f, start=1)


def count_lines(path: Path) -> int:
    """Lines in `path` (a last line without a newline counts), for the progress total.

    Reads in 1 MiB chunks: about a second per gigabyte, run in a thread beside the job.
    """
    lines = 0
    last = b"\n"
    with path.open("rb", buffering=0) as f:
        while chunk := f.read(_CHUNK):
            lines += chunk.count(b"\n")
            last = chunk[-1:]
    return lines + (last != b"\n")


def _check_params(params: object) -> str | None:
    """Why `params` is not a usable Messages API body, or None if it looks usable."""
    if params is None:
        return "missing params (the Messages API request body)"
    if not isinstance(params, dict):
        return f"params must be a JSON object, got {type(params).__name__}"
    model = params.get("model")
    if not isinstance(model, str) or not model:
        return "params.model is required (a model id string)"
    max_tokens = params.get("max_tokens")
    if isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or max_tokens < 1:
        return f"params.max_tokens is required (an integer >= 1), got {max_tokens!r}"
    messages = params.get("messages")
    if not isinstance(messages, list) or not messages:
        return "params.messages is required (a non-empty list of {role, content})"
    if params.get("stream"):
        return "params.stream is not supported in a bulk run (results are whole messages)"
    for name in _CLIENT_OPTIONS:
        if name in params:
            return f"params.{name} is not a Messages API field (put priority beside params)"
    return None


def parse_line(lineno: int, raw: bytes) -> Item | BadLine | None:
    """Classify one input line; None for a blank line (ignored, as JSONL readers do)."""
    if not raw.strip():
        return None
    try:
        obj = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        return BadLine(lineno, f"invalid JSON ({exc})")
    if not isinstance(obj, dict):
        return BadLine(lineno, f"not a JSON object (got {type(obj).__name__})")
    custom_id = obj.get("custom_id")
    if custom_id is None:
        return BadLine(lineno, "missing custom_id")
    if not isinstance(custom_id, str) or not custom_id:
        return BadLine(lineno, f"custom_id must be a non-empty string, got {custom_id!r}")
    params = obj.get("params")
    problem = _check_params(params)
    priority = obj.get("priority", "default")
    if problem is None:
        try:
            lane_level(priority)
        except (TypeError, ValueError) as exc:
            problem = f"invalid priority: {exc}"
    if problem is not None:
        return Item(lineno, custom_id, {}, "default", problem)
    assert isinstance(params, dict)
    return Item(lineno, custom_id, params, priority)
