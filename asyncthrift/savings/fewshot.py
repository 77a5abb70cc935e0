"""`FewShotPool`: the k most relevant examples for an input, from a local pool.

A prompt that carries every example grows with the rules. Picking, per input, the few
examples most like it keeps the prompt the same length however large the pool gets.
Relevance is local and fast: BM25 over word tokens (with word-bigram terms, so "refund
status" outranks a text that merely has both words), in pure Python, no model and no
download. Ties go to the example added first, so the choice is deterministic (and a
prompt built from it stays cacheable).

    pool = FewShotPool()
    pool.add("Where is my parcel?", "Your parcel is ...")
    shots = pool.select("my parcel has not arrived", k=3)
    messages = pool.as_messages(shots) + [{"role": "user", "content": question}]
"""

from __future__ import annotations

import itertools
import math
import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Final

__all__ = ["Example", "FewShotPool"]

_WORD: Final = re.compile(r"\w+")


def _terms(text: str) -> list[str]:
    words = [w.lower() for w in _WORD.findall(text)]
    return words + [f"{a} {b}" for a, b in itertools.pairwise(words)]


@dataclass(frozen=True, slots=True)
class Example:
    """One example: an input and the answer it should get."""

    input: str
    output: str


class FewShotPool:
    """Examples indexed for BM25 retrieval (`k1`, `b` as in Okapi BM25)."""

    __slots__ = ("_df", "_lengths", "_postings", "b", "examples", "k1")

    def __init__(
        self,
        examples: Iterable[Example | tuple[str, str]] = (),
        *,
        k1: float = 1.5,
        b: float = 0.75,
    ):
        self.k1 = k1
        self.b = b
        self.examples: list[Example] = []
        self._postings: dict[str, list[tuple[int, int]]] = {}
        self._df: Counter[str] = Counter()
        self._lengths: list[int] = []
        for example in examples:
            if isinstance(example, Example):
                self.add(example.input, example.output)
            else:
                self.add(*example)

    def __len__(self) -> int:
        return len(self.examples)

    def add(self, input: str, output: str) -> None:
        """Add one example (indexed on its input)."""
        i = len(self.examples)
        self.examples.append(Example(input, output))
        counts = Counter(_terms(input))
        self._lengths.append(sum(counts.values()))
        for term, tf in counts.items():
            self._postings.setdefault(term, []).append((i, tf))
            self._df[term] += 1

    def scores(self, text: str) -> dict[int, float]:
        """BM25 score of every example sharing a term with `text` (index -> score)."""
        n = len(self.examples)
        if not n:
            return {}
        avg = sum(self._lengths) / n or 1.0
        out: dict[int, float] = {}
        for term in set(_terms(text)):
            postings = self._postings.get(term)
            if not postings:
                continue
            df = self._df[term]
            idf = math.log(1.0 + (n - df + 0.5) / (df + 0.5))
            for i, tf in postings:
                norm = tf + self.k1 * (1.0 - self.b + self.b * self._lengths[i] / avg)
                out[i] = out.get(i, 0.0) + idf * tf * (self.k1 + 1.0) / norm
        return out

    def select(self, text: str, k: int = 3) -> list[Example]:
        """The `k` examples most relevant to `text`, best first (fewer if fewer match)."""
        if k < 1:
            return []
        ranked = sorted(self.scores(text).items(), key=lambda kv: (-kv[1], kv[0]))
        return [self.examples[i] for i, _ in ranked[:k]]

    @staticmethod
    def as_messages(examples: Iterable[Example]) -> list[dict[str, Any]]:
        """Examples as alternating user/assistant turns, to put before the real question."""
        out: list[dict[str, Any]] = []
        for e in examples:
            out.append({"role": "user", "content": e.input})
            out.append({"role": "assistant", "content": e.output})
        return out
