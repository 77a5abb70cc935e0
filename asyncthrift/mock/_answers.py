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

__all__ = ["Answer", "answer_for", "last_turn_view", "request_hash", "split_deltas"]

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


def request_hash(body: dict[str, Any]) -> int:
    """Hash of everything that changes the answer (not `stream`, not `metadata`)."""
    canonical = {k: v for k, v in body.items() if k not in ("stream", "metadata")}
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
