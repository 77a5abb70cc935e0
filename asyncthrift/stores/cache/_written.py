"""What this process wrote to a shared cache (`WrittenEntries`): a read that finds the same
bytes there decodes them validated once, not on every hit.

A Redis entry may come from any process, so `decode_message` validates it completely on
every read. Validation is a function of the bytes alone: bytes equal to what this process
wrote and validated once give the same `Message` again. So the last entries it wrote are
kept here as `OwnEntry`s (validated on their first read, copied after), and a read whose
bytes equal one of them decodes that; bytes another process wrote under the key, or
anything else, differ and are validated as usual. Bounded like a small `MemoryCache`.
"""

from __future__ import annotations

from typing import Final

from .base import OwnEntry
from .memory import MemoryCache

__all__ = ["WrittenEntries"]

MAX_ENTRIES: Final = 256
MAX_BYTES: Final = 8 * 1024 * 1024


class WrittenEntries:
    """The last entries this process wrote to a shared cache, by key."""

    __slots__ = ("_entries",)

    def __init__(self, max_entries: int = MAX_ENTRIES, max_bytes: int = MAX_BYTES) -> None:
        self._entries = MemoryCache(max_entries=max_entries, max_bytes=max_bytes, ttl=None)

    def wrote(self, key: str, data: bytes) -> None:
        """Remember that this process stored `data` under `key`."""
        self._entries.set_nowait(key, OwnEntry(data))

    def own(self, key: str, blob: bytes) -> bytes:
        """`blob`, read under `key`: as this process's `OwnEntry` if it wrote these bytes."""
        mine = self._entries.get_nowait(key)
        return mine if mine is not None and mine == blob else blob
