"""The packed call's text: how items are written into one prompt, and how the reply is split.

The format is the seed article's (its 1.2 and 2.3): the last user message lists the items
one JSON object per line, ``{"id": "<id>", "text": "<text>"}``, and asks for a JSON array
``[{"id": "<id>", "answer": "<text>"}, ...]``. Splitting is deliberately suspicious: an id
that is missing, appears twice, carries no string answer, or whose answer is longer than
its caller's ``max_tokens`` gets nothing here, and its caller re-sends alone. A caller
therefore never receives another item's answer, a cut answer, or a guess.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any, Final

import orjson
from anthropic.types import Message, TextBlock, Usage

from ..core.tokens import text_tokens

__all__ = [
    "HEADER",
    "ITEM_OVERHEAD",
    "item_text",
    "object_tokens",
    "packed_content",
    "parse_reply",
    "share",
    "split_message",
]

HEADER: Final = (
    "Answer each item below on its own, exactly as if it were the only request you were "
    "given. The items follow, one JSON object per line:"
)
FOOTER: Final = (
    "Reply with only a JSON array holding one object per item, in any order: "
    '[{"id": "<id>", "answer": "<your answer to that item\'s text>"}, ...]'
)
ITEM_OVERHEAD: Final = 12
"""Output tokens one item's JSON wrapping costs (``{"id": "12", "answer": "..."},``)."""

_DECODER: Final = json.JSONDecoder()


def item_text(params: Mapping[str, Any]) -> str | None:
    """The text of a request that is one user turn of text, else None (not packable)."""
    messages = params.get("messages")
    if not isinstance(messages, list | tuple) or len(messages) != 1:
        return None
    m = messages[0]
    if not isinstance(m, Mapping) or m.get("role") != "user" or set(m) - {"role", "content"}:
        return None
    content = m.get("content")
    if isinstance(content, str):
        return content
    if isinstance(content, list | tuple) and len(content) == 1:
        block = content[0]
        if (
            isinstance(block, Mapping)
            and block.get("type") == "text"
            and isinstance(block.get("text"), str)
            and not set(block) - {"type", "text", "cache_control"}
        ):
            return str(block["text"])
    return None


def packed_content(items: Sequence[tuple[str, str]]) -> str:
    """The packed user turn for (id, text) pairs."""
    lines = [HEADER]
    lines.extend(orjson.dumps({"id": i, "text": t}).decode() for i, t in items)
    lines.append(FOOTER)
    return "\n".join(lines)


def _objects(text: str) -> list[Any]:
    """The JSON values of the reply's array; when it does not parse as a whole (garbled or
    cut), every complete object that does, scanning left to right."""
    start = text.find("[")
    end = text.rfind("]")
    if 0 <= start < end:
        try:
            whole = orjson.loads(text[start : end + 1])
        except orjson.JSONDecodeError:
            pass
        else:
            if isinstance(whole, list):
                return whole
    found: list[Any] = []
    i = text.find("{")
    while i >= 0:
        try:
            value, after = _DECODER.raw_decode(text, i)
        except ValueError:
            i = text.find("{", i + 1)
            continue
        found.append(value)
        i = text.find("{", after)  # never look inside an object already read
    return found


def object_tokens(ident: str, answer: str) -> float:
    """Estimated tokens of one item's object in a reply (``{"id": ..., "answer": ...},``)."""
    return text_tokens(orjson.dumps({"id": ident, "answer": answer}).decode()) + 0.5


def parse_reply(text: str, limits: Mapping[str, int], ratio: float = 1.0) -> dict[str, str]:
    """The answers of the reply that can be trusted, by id.

    `limits` maps each id sent to its caller's ``max_tokens``. An id is answered only if it
    occurs exactly once among the reply's objects, with a string ``answer`` whose length
    fits its limit; every other id (missing, duplicated, malformed, unknown, too long) is
    left out, and its caller re-sends alone. The length is the local estimate times
    `ratio`, the reply's own billed output tokens per estimated token (its calibration).
    """
    seen: dict[str, int] = {}
    answers: dict[str, str] = {}
    for obj in _objects(text):
        if not isinstance(obj, dict):
            continue
        ident = obj.get("id")
        if isinstance(ident, int) and not isinstance(ident, bool):
            ident = str(ident)
        if not isinstance(ident, str) or ident not in limits:
            continue
        seen[ident] = seen.get(ident, 0) + 1
        answer = obj.get("answer")
        if isinstance(answer, str) and set(obj) == {"id", "answer"}:
            answers[ident] = answer
    return {
        i: a
        for i, a in answers.items()
        if seen[i] == 1 and a.strip() and text_tokens(a) * ratio <= limits[i]
    }


def share(total: int, weights: Sequence[float]) -> list[int]:
    """`total` split in proportion to `weights`, in integers that add up to `total`
    (largest remainder), so the callers' usage adds up to what the call was billed."""
    if not weights:
        return []
    mass = sum(weights)
    if mass <= 0:
        weights, mass = [1.0] * len(weights), float(len(weights))
    exact = [total * w / mass for w in weights]
    parts = [int(x) for x in exact]
    left = total - sum(parts)
    order = sorted(range(len(exact)), key=lambda k: exact[k] - parts[k], reverse=True)
    for k in order[:left]:
        parts[k] += 1
    return parts


def split_message(
    packed: Message, answers: Sequence[tuple[str, str, str]], common_tokens: float
) -> list[Message]:
    """One `Message` per (id, item text, answer), with a fair share of `packed`'s usage.

    Input is shared by each item's own text plus an equal part of what they had in common
    (`common_tokens`: system prompt, tools, instructions); output by each answer's length;
    cache tokens equally. Each message keeps the packed call's model and request id.
    """
    u = packed.usage
    n = len(answers)
    own = [text_tokens(text) for _, text, _ in answers]
    inputs = share(u.input_tokens, [common_tokens / n + o for o in own])
    outputs = share(u.output_tokens, [ITEM_OVERHEAD + text_tokens(a) for _, _, a in answers])
    writes = share(u.cache_creation_input_tokens or 0, [1.0] * n)
    reads = share(u.cache_read_input_tokens or 0, [1.0] * n)
    request_id = getattr(packed, "_request_id", None)
    out = []
    for k, (ident, _, answer) in enumerate(answers):
        msg = Message(
            id=f"{packed.id}_{ident}",
            type="message",
            role="assistant",
            model=packed.model,
            content=[TextBlock(type="text", text=answer)],
            stop_reason="end_turn",
            stop_sequence=None,
            usage=Usage(
                input_tokens=inputs[k],
                output_tokens=outputs[k],
                cache_creation_input_tokens=writes[k],
                cache_read_input_tokens=reads[k],
            ),
        )
        msg._request_id = request_id
        out.append(msg)
    return out
