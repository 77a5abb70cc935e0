"""``OUT.jsonl.batches``, the *ledger* of a batch-mode run: every batch it created, and when.

Batch mode (`batchmode`) writes a record before each create request goes out and after each
step of the batch's life, so that a run killed at any point knows on restart which lines are
already in a batch. The record kinds and what they prove are in `batchmode`'s docstring;
this module only reads and appends them (one fsynced ``write()`` each, under an exclusive
lock), and keeps the state they add up to.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

__all__ = ["BatchLedger", "Intent", "ledger_path"]


@dataclass(slots=True)
class Intent:
    token: str
    at: float
    ids: list[str]
    batch: str | None = None
    gone: bool = False
    collected: bool = False


class BatchLedger:
    """``OUT.jsonl.batches``: append-only, one fsynced ``write()`` per record."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.intents: dict[str, Intent] = {}
        self.by_batch: dict[str, Intent] = {}
        self._fd: int | None = None

    def open(self) -> None:
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            raise
        self._fd = fd
        data = b""
        with open(fd, "rb", closefd=False) as f:
            data = f.read()
        keep = data.rfind(b"\n") + 1
        if keep < len(data):  # a torn last record: it never happened
            os.ftruncate(fd, keep)
        for raw in data[:keep].splitlines():
            try:
                self._apply(orjson.loads(raw))
            except (orjson.JSONDecodeError, KeyError, TypeError):
                continue

    def _apply(self, rec: dict[str, Any]) -> None:
        op = rec["op"]
        if op == "intent":
            self.intents[rec["token"]] = Intent(rec["token"], float(rec["at"]), list(rec["ids"]))
        elif op == "created":
            intent = self.intents[rec["token"]]
            intent.batch = rec["batch"]
            self.by_batch[rec["batch"]] = intent
        elif op == "gone":
            self.intents[rec["token"]].gone = True
        elif op == "collected":
            found = self.by_batch.get(rec["batch"])
            if found is not None:
                found.collected = True

    def record(self, rec: dict[str, Any]) -> None:
        fd = self._fd
        if fd is None:
            raise RuntimeError("the ledger is not open")
        line = orjson.dumps(rec, option=orjson.OPT_APPEND_NEWLINE)
        view = memoryview(line)
        while view:
            view = view[os.write(fd, view) :]
        os.fsync(fd)
        self._apply(rec)

    def pending(self) -> list[Intent]:
        """Intents whose create may or may not have happened, oldest first."""
        return sorted(
            (i for i in self.intents.values() if i.batch is None and not i.gone),
            key=lambda i: i.at,
        )

    def open_batches(self) -> Iterator[Intent]:
        return (i for i in self.intents.values() if i.batch is not None and not i.collected)

    def close(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)


def ledger_path(output: Path) -> Path:
    return output.with_name(output.name + ".batches")
