"""A compact set of custom_ids with a small state per id, for resuming million-line runs.

A runner must remember every custom_id it has seen (to skip duplicates) and every id the
output already holds (to resume). A Python ``set[str]`` costs about 100 bytes per id, so a
10 M-line job would hold a gigabyte just for bookkeeping. This table stores the 128-bit
xxh3 hash of each id in two ``array('Q')`` columns plus one state byte: 17 bytes per slot
and a load factor kept between 1/4 and 1/2, so 34 to 68 bytes per id (34 MiB for 1 M ids).
With 128-bit hashes the chance of two distinct ids colliding in a 10 M-id run is about
10^-25, so a hash stands for its id.

Open addressing with linear probing keeps it to a few array reads per operation, which is
fast enough in pure Python for millions of ids (about a microsecond each).
"""

from __future__ import annotations

from array import array
from typing import Final

import xxhash

__all__ = ["ABSENT", "IdTable"]

#: The state of an id the table has never seen. Callers use states 1..255.
ABSENT: Final = 0

_MASK64: Final = (1 << 64) - 1


class IdTable:
    """Maps custom_id -> a state in 1..255; ids never added read as `ABSENT`."""

    __slots__ = ("_hi", "_lo", "_mask", "_size", "_state")

    def __init__(self, capacity: int = 1 << 12) -> None:
        cap = 8
        while cap < capacity:
            cap <<= 1
        self._alloc(cap)
        self._size = 0

    def _alloc(self, cap: int) -> None:
        self._hi = array("Q", bytes(8 * cap))
        self._lo = array("Q", bytes(8 * cap))
        self._state = bytearray(cap)
        self._mask = cap - 1

    @staticmethod
    def _hash(custom_id: str) -> tuple[int, int]:
        h = xxhash.xxh3_128_intdigest(custom_id.encode("utf-8", "surrogatepass"))
        return h >> 64, h & _MASK64

    def _slot(self, hi: int, lo: int) -> int:
        """The slot holding (hi, lo), or the empty slot where it would go."""
        mask = self._mask
        state, his, los = self._state, self._hi, self._lo
        i = lo & mask
        while state[i] and not (los[i] == lo and his[i] == hi):
            i = (i + 1) & mask
        return i

    def get(self, custom_id: str) -> int:
        """The state stored for `custom_id`, or `ABSENT`."""
        hi, lo = self._hash(custom_id)
        return self._state[self._slot(hi, lo)]

    def set(self, custom_id: str, state: int) -> int:
        """Store `state` (1..255) for `custom_id`; return the state it had before."""
        if not 0 < state < 256:
            raise ValueError(f"state must be in 1..255, got {state}")
        hi, lo = self._hash(custom_id)
        i = self._slot(hi, lo)
        previous = self._state[i]
        if previous == ABSENT:
            if 2 * (self._size + 1) > len(self._state):
                self._grow()
                i = self._slot(hi, lo)
            self._hi[i] = hi
            self._lo[i] = lo
            self._size += 1
        self._state[i] = state
        return previous

    def _grow(self) -> None:
        his, los, states = self._hi, self._lo, self._state
        self._alloc(2 * len(states))
        for j, s in enumerate(states):
            if s:
                i = self._slot(his[j], los[j])
                self._hi[i] = his[j]
                self._lo[i] = los[j]
                self._state[i] = s

    def __len__(self) -> int:
        return self._size

    @property
    def nbytes(self) -> int:
        """Memory held by the table's columns, for the scale report."""
        return len(self._state) * 17
