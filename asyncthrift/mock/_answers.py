"""Deterministic answers: the same request always gets the same text, length and stop reason.

The output length is a hash of the canonical request body mapped into the configured
``(lo, hi)`` range and capped by ``max_tokens``. The text is a slice of a fixed corpus of
pieces that each count as exactly one token for the mock tokenizer (short lowercase words,
capitalised sentence starts, full stops), so ``count_text(answer.text) == output_tokens``
holds by construction and a client can check its accounting exactly.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any, Literal

import orjson
import xxhash

from ._tokenizer import count_text

__all__ = [
    "Answer",
    "answer_for",
    "item_answer",
    "last_turn_view",
    "packed_answer",
    "request_hash",
    "split_deltas",
]

StopReason = Literal["end_turn", "max_tokens", "stop_sequence"]

# Every word has at most 6 ASCII letters: exactly one token each.
_VOCABULARY = (
    "the a an and or but if then so as at by for from in into of on to with up out over "
    "under again more most some any each few other such only own same than too very can "
    "will just should now time year people way day man woman child world life hand part "
    "place case week point group number fact water money story month lot right study book "
    "eye job word issue side kind head house friend hour game line end member law car city "
    "name team minute idea kid body back parent face others level office door health person "
    "art war party result change reason moment air force river model token bucket "
    "queue limit rate retry cache answer quota budget mock server client stream signal "
    "quiet bright green calm swift small large early late clear plain simple steady"
)
_WORDS = tuple(_VOCABULARY.split())

_CORPUS_PIECES = 16_384


def _build_corpus() -> tuple[str, ...]:
    """One-token pieces forming sentences: "The", " cat", " sat", "." ..."""
    rng = random.Random(0x5EED)
    pieces: list[str] = []
    while len(pieces) < _CORPUS_PIECES:
        length = rng.randint(4, 14)
        words = [rng.choice(_WORDS) for _ in range(length)]
        pieces.append(" " + words[0].capitalize())
        pieces.extend(" " + w for w in words[1:])
        pieces.append(".")
    return tuple(pieces[:_CORPUS_PIECES])


_CORPUS = _build_corpus()
#: Indices of sentence starts: an answer always begins with a capitalised word.
_STARTS = tuple(i for i, piece in enumerate(_CORPUS) if piece[1:2].isupper())


@dataclass(frozen=True, slots=True)
class Answer:
    """The deterministic outcome of one request."""

    text: str
    output_tokens: int
    stop_reason: StopReason
    stop_sequence: str | None


_NOT_THE_ANSWER = ("stream", "metadata", "max_tokens", "cache_control")


def _plain(value: Any) -> Any:
    """`value` without ``cache_control`` markers, a list of text blocks as its text: what
    the model reads, so a marked prompt gets the answer the unmarked one does."""
    if isinstance(value, list):
        if value and all(isinstance(b, dict) and b.get("type") == "text" for b in value):
            return "".join(str(b.get("text", "")) for b in value)
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items() if k != "cache_control"}
    return value


def request_hash(body: dict[str, Any]) -> int:
    """Hash of everything that changes the answer: not `stream`, `metadata`, the
    ``cache_control`` markers (prompt caching never changes an answer) or `max_tokens`
    (which only cuts it: the same request with a larger limit gets the same text, longer)."""
    canonical = {k: _plain(v) for k, v in body.items() if k not in _NOT_THE_ANSWER}
    return int(xxhash.xxh3_64_intdigest(orjson.dumps(canonical, option=orjson.OPT_SORT_KEYS)))


def last_turn_view(body: dict[str, Any]) -> dict[str, Any]:
    """What a model answering only the last user turn sees: everything but the history."""
    messages = body.get("messages")
    last = None
    if isinstance(messages, list):
        last = next(
            (m for m in reversed(messages) if isinstance(m, dict) and m.get("role") == "user"), None
        )
    return {**{k: v for k, v in body.items() if k != "messages"}, "messages": [last]}


def _text(seed: int, n: int) -> str:
    corpus = _CORPUS
    size = len(corpus)
    start = _STARTS[seed % len(_STARTS)]
    if start + n <= size:
        text = "".join(corpus[start : start + n])
    else:
        parts: list[str] = []
        left = n
        pos = start
        while left > 0:
            take = min(left, size - pos)
            parts.append("".join(corpus[pos : pos + take]))
            left -= take
            pos = 0
        text = "".join(parts)
    return text.lstrip(" ")


def answer_for(
    seed: int, output_range: tuple[int, int], max_tokens: int, stop_sequences: object = None
) -> Answer:
    """The answer for a request whose `request_hash` is `seed`.

    `stop_sequences` is honoured minimally: if one occurs in the generated text, the text is
    cut before its first occurrence (the earliest across sequences), the output is recounted
    and the stop reason is ``"stop_sequence"``. The corpus is English words, so only a stop
    sequence made of those words (or "." and spaces) can ever trigger.
    """
    lo, hi = output_range
    n = lo + (seed >> 17) % (hi - lo + 1)
    reason: StopReason = "end_turn"
    if n > max_tokens:
        n, reason = max_tokens, "max_tokens"
    text = _text(seed, n)
    if isinstance(stop_sequences, list) and stop_sequences:
        cut, found = -1, None
        for seq in stop_sequences:
            if isinstance(seq, str) and seq:
                i = text.find(seq)
                if i >= 0 and (cut < 0 or i < cut):
                    cut, found = i, seq
        if found is not None:
            text = text[:cut]
            return Answer(text, count_text(text), "stop_sequence", found)
    return Answer(text, n, reason, None)


def split_deltas(text: str, words_per_delta: int) -> list[str]:
    """Cut `text` into stream deltas at spaces; ``"".join(result) == text``."""
    if not text:
        return []
    words = text.split(" ")
    step = max(1, words_per_delta)
    out = []
    for i in range(0, len(words), step):
        chunk = " ".join(words[i : i + step])
        out.append(chunk if i == 0 else " " + chunk)
    return out


# -- packed calls: a JSON array keyed by id, as a model answers the packing prompt ----------

_ITEM_PREFIX = '{"id":'


def _system_text(system: object) -> str:
    if isinstance(system, str):
        return system
    if isinstance(system, list):
        return "".join(str(b.get("text", "")) for b in system if isinstance(b, dict))
    return ""


def _packed_items(body: dict[str, Any]) -> list[tuple[str, str]] | None:
    """The (id, text) items of a packing prompt: the last user turn lists objects
    ``{"id": ..., "text": ...}`` one per line and asks for ``"answer"``s; else None."""
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        return None
    last = messages[-1]
    content = last.get("content") if isinstance(last, dict) else None
    if isinstance(content, list):
        content = "".join(
            str(b.get("text", ""))
            for b in content
            if isinstance(b, dict) and b.get("type") == "text"
        )
    if not isinstance(content, str) or '"answer"' not in content:
        return None
    items = []
    for line in content.splitlines():
        if not line.startswith(_ITEM_PREFIX):
            continue
        try:
            obj = orjson.loads(line)
        except orjson.JSONDecodeError:
            continue
        if (
            isinstance(obj, dict)
            and isinstance(obj.get("id"), str)
            and isinstance(obj.get("text"), str)
        ):
            items.append((obj["id"], obj["text"]))
    return items or None


def item_answer(model: str, system: object, text: str, output_range: tuple[int, int]) -> str:
    """The answer the mock gives to one packed item: deterministic in (model, system, text),
    so a test can check every caller got its own."""
    seed = request_hash({"model": model, "system": _system_text(system), "item": text})
    lo, hi = output_range
    return _text(seed, lo + (seed >> 17) % (hi - lo + 1))


def packed_answer(
    body: dict[str, Any], output_range: tuple[int, int], max_tokens: int, faults: float, seed: int
) -> Answer | None:
    """The reply to a packing prompt, or None when `body` is not one.

    One object per line in a JSON array. With probability `faults` per item the reply gets
    that item wrong the ways models do: leaves it out, answers it twice, garbles its object
    (a wrong key, broken JSON, or a mangled id). It never files one item's answer under
    another item's id while leaving that one out: no id-keyed reply format can tell that
    apart from a right answer, so no client could catch it. A reply longer than
    `max_tokens` is cut there (``"max_tokens"``).
    """
    items = _packed_items(body)
    if items is None:
        return None
    model, system = str(body.get("model", "")), body.get("system")
    rng = random.Random(seed)
    lines = []
    for ident, text in items:
        answer = item_answer(model, system, text, output_range)
        entry = orjson.dumps({"id": ident, "answer": answer}).decode()
        if faults > 0 and rng.random() < faults:
            kind = rng.randrange(5)
            if kind == 0:
                continue  # missing
            if kind == 1:
                entry += ",\n" + orjson.dumps({"id": ident, "answer": answer[::-1]}).decode()
            elif kind == 2:
                entry = orjson.dumps({"id": ident, "reply": answer}).decode()
            elif kind == 3:
                entry = '{"id": "' + ident + '", "answer": "' + answer[: len(answer) // 2]
            else:
                entry = orjson.dumps({"id": "#" + ident, "answer": answer}).decode()
        lines.append(entry)
    text = "[\n" + ",\n".join(lines) + "\n]"
    n = count_text(text)
    if n <= max_tokens:
        return Answer(text, n, "end_turn", None)
    lo, hi = 0, len(text)  # the longest prefix within max_tokens
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if count_text(text[:mid]) <= max_tokens:
            lo = mid
        else:
            hi = mid - 1
    cut = text[:lo]
    return Answer(cut, count_text(cut), "max_tokens", None)
