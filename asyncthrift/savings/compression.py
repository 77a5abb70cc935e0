"""Opt-in compression of long conversation histories: near-duplicate sentences dropped.

Support chats repeat themselves: the same greeting, the same disclaimer, the same pasted
order summary in every other turn. Each repetition is paid for as input on every later
request. `Compressor` drops a sentence of the history when a sentence already kept (earlier
in the conversation) is nearly the same, measured locally and fast: word 3-gram shingles
hashed with xxh3, a 32-value MinHash signature, locality-sensitive banding to find
candidates, and the exact Jaccard similarity of the shingle sets to decide (``threshold``,
0.8 by default). No model, no download.

What is never touched: the last user turn (the question being answered), any block that is
not text (tool_use, tool_result, images, documents, thinking), fenced code blocks
(````` ``` `````), sentences of fewer than ``min_words`` words, and the system prompt. A
message that would lose every sentence keeps its first one. Histories under
``min_tokens`` (estimated) are sent as they are.

Use it on a client (tokens saved appear as ``stats().compression_tokens_saved``)::

    from asyncthrift.compression import Compressor, enable_compression
    enable_compression(client, Compressor(threshold=0.8))

or on its own: ``messages, saved = Compressor().compress(messages)``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any, Final, Protocol

import xxhash

from ..core.tokens import text_tokens
from ..errors import InvalidArgument

__all__ = [
    "Compressible",
    "Compressor",
    "compress_kwargs",
    "compression_overrides",
    "enable_compression",
]

_PERMUTATIONS: Final = 32
_BANDS: Final = 8  # 8 bands of 4 rows: pairs with Jaccard >= 0.7 collide with p > 0.9
_ROWS: Final = _PERMUTATIONS // _BANDS
_PRIME: Final = (1 << 61) - 1
_MASK: Final = (1 << 64) - 1
# Fixed odd multipliers and offsets of the universal-hash permutations (deterministic).
_A: Final = tuple((xxhash.xxh3_64_intdigest(b"a%d" % i) | 1) % _PRIME for i in range(_PERMUTATIONS))
_B: Final = tuple(xxhash.xxh3_64_intdigest(b"b%d" % i) % _PRIME for i in range(_PERMUTATIONS))

_FENCE: Final = re.compile(r"(```.*?(?:```|\Z))", re.S)
_SENTENCE: Final = re.compile(r"[^.!?\n]*(?:[.!?]+|\n|$)")
_WORD: Final = re.compile(r"\w+")


def _shingles(sentence: str) -> frozenset[int]:
    words = [w.lower() for w in _WORD.findall(sentence)]
    if len(words) < 3:
        return frozenset(xxhash.xxh3_64_intdigest(w.encode()) for w in words)
    return frozenset(
        xxhash.xxh3_64_intdigest(" ".join(words[i : i + 3]).encode()) for i in range(len(words) - 2)
    )


def _signature(shingles: frozenset[int]) -> tuple[int, ...]:
    return tuple(min((a * h + b) % _PRIME for h in shingles) for a, b in zip(_A, _B, strict=True))


class _Index:
    """Kept sentences, found by MinHash band collisions and confirmed by exact Jaccard."""

    __slots__ = ("bands", "sets")

    def __init__(self) -> None:
        self.bands: dict[tuple[int, tuple[int, ...]], list[int]] = {}
        self.sets: list[frozenset[int]] = []

    def near(self, shingles: frozenset[int], threshold: float) -> bool:
        sig = _signature(shingles)
        seen: set[int] = set()
        for band in range(_BANDS):
            key = (band, sig[band * _ROWS : (band + 1) * _ROWS])
            for j in self.bands.get(key, ()):
                if j in seen:
                    continue
                seen.add(j)
                other = self.sets[j]
                inter = len(shingles & other)
                if inter and inter / len(shingles | other) >= threshold:
                    return True
        j = len(self.sets)
        self.sets.append(shingles)
        for band in range(_BANDS):
            self.bands.setdefault((band, sig[band * _ROWS : (band + 1) * _ROWS]), []).append(j)
        return False


class Compressor:
    """Drops near-duplicate sentences from a conversation's history (see the module doc)."""

    __slots__ = ("min_tokens", "min_words", "sentences_dropped", "threshold", "tokens_saved")

    def __init__(
        self, *, threshold: float = 0.8, min_words: int = 5, min_tokens: int = 1000
    ) -> None:
        if not 0.0 < threshold <= 1.0:
            raise InvalidArgument(f"threshold must be in (0, 1], got {threshold!r}")
        self.threshold = threshold
        self.min_words = min_words
        self.min_tokens = min_tokens
        self.tokens_saved = 0
        self.sentences_dropped = 0

    def compress(self, messages: Sequence[Mapping[str, Any]]) -> tuple[list[Any], int]:
        """(new messages, estimated tokens saved); `messages` itself is never modified."""
        out = list(messages)
        last_user = max((i for i, m in enumerate(out) if m.get("role") == "user"), default=-1)
        history = out[:last_user] if last_user >= 0 else out
        if sum(_message_tokens(m) for m in history) < self.min_tokens:
            return out, 0
        index = _Index()
        saved = 0.0
        for i, message in enumerate(history):
            content = message.get("content")
            if isinstance(content, str):
                text, cut = self._text(content, index)
                if cut:
                    out[i] = {**message, "content": text}
                    saved += cut
            elif isinstance(content, list):
                blocks: list[Any] = []
                changed = False
                for block in content:
                    if isinstance(block, Mapping) and block.get("type") == "text":
                        text, cut = self._text(str(block.get("text", "")), index)
                        if cut:
                            block = {**block, "text": text}
                            changed = True
                            saved += cut
                    blocks.append(block)
                if changed:
                    out[i] = {**message, "content": blocks}
        tokens = round(saved)
        self.tokens_saved += tokens
        return out, tokens

    def _text(self, text: str, index: _Index) -> tuple[str, float]:
        """`text` without the sentences `index` already holds a near copy of."""
        kept: list[str] = []
        dropped = 0.0
        for part in _FENCE.split(text):
            if part.startswith("```"):
                kept.append(part)  # code is never touched
                continue
            for sentence in _SENTENCE.findall(part):
                if not sentence:
                    continue
                words = len(_WORD.findall(sentence))
                if words >= self.min_words and index.near(_shingles(sentence), self.threshold):
                    dropped += text_tokens(sentence)
                    self.sentences_dropped += 1
                    continue
                kept.append(sentence)
        if not dropped:
            return text, 0.0
        result = "".join(kept).strip()
        if not result:  # keep the message non-empty: its first sentence stays
            first = next((s for s in _SENTENCE.findall(text) if s.strip()), text)
            result = first.strip()
            dropped -= text_tokens(first)
        return result, max(0.0, dropped)


def _message_tokens(message: Mapping[str, Any]) -> float:
    content = message.get("content")
    if isinstance(content, str):
        return text_tokens(content)
    total = 0.0
    if isinstance(content, list):
        for block in content:
            if isinstance(block, Mapping) and block.get("type") == "text":
                total += text_tokens(str(block.get("text", "")))
    return total


# -- on a client -------------------------------------------------------------------------------


class Compressible(Protocol):
    """A client whose calls' history a `Compressor` may shorten (a `Thrift`)."""

    compressor: Compressor | None


def enable_compression(client: Compressible, compressor: Compressor | None = None) -> Compressor:
    """Compress the history of every ``messages.create``/``stream`` call of `client` (and
    of every `with_options` copy of it): sets ``client.compressor``."""
    found = compressor if compressor is not None else Compressor()
    client.compressor = found
    return found


def compress_kwargs(compressor: Compressor | None, kwargs: dict[str, Any]) -> dict[str, Any]:
    """`kwargs` with its ``messages`` compressed by `compressor` (None: compression off)."""
    if compressor is None:
        return kwargs
    messages = kwargs.get("messages")
    if not isinstance(messages, Sequence) or isinstance(messages, str):
        return kwargs
    new, saved = compressor.compress(messages)
    return {**kwargs, "messages": new} if saved else kwargs


def compression_overrides(compressor: Compressor | None) -> dict[str, int | float]:
    """The compression figure of a client's ``stats()`` (none while it is off)."""
    return {} if compressor is None else {"compression_tokens_saved": compressor.tokens_saved}
