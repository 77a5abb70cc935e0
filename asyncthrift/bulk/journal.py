"""The output file as an append-only journal: what makes a run resumable after any kill.

Every result line is handed to the kernel with one ``write()`` on an ``O_APPEND`` descriptor
the moment its request finishes, so a SIGKILL loses nothing already answered: the page cache
outlives the process. The only damage a kill (or a full disk, or a power cut) can do is a
torn last line; `Journal.open` repairs it and reads back the ids already written, so a new
run with the same arguments redoes nothing and drops nothing.

An exclusive `flock` on the output keeps two runs from interleaving into one file; the
kernel releases it when the holder dies, however it dies.
"""

from __future__ import annotations

import errno
import fcntl
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from .idset import IdTable

__all__ = ["Journal", "JournalBusy", "ResumeState", "errored_line", "succeeded_line"]

#: The state an id has in the runner's table once the output holds its result.
DONE = 1

_CHUNK = 1 << 20


class JournalBusy(RuntimeError):
    """Another process is writing to the same output file."""


@dataclass(frozen=True, slots=True)
class ResumeState:
    """What `Journal.open` found in an existing output file."""

    results: int
    """Result lines already present (their ids are marked `DONE` in the table)."""
    repaired_bytes: int
    """Bytes of a torn last line that were cut off (0 if the file ended cleanly)."""
    unreadable: tuple[int, ...]
    """Line numbers of complete lines that are not result lines (left as they are)."""


def succeeded_line(custom_id: str, message: dict[str, Any]) -> bytes:
    """A Batches-API ``succeeded`` result line, newline included."""
    return orjson.dumps(
        {"custom_id": custom_id, "result": {"type": "succeeded", "message": message}},
        option=orjson.OPT_APPEND_NEWLINE,
    )


def errored_line(custom_id: str, error_type: str, message: str) -> bytes:
    """A Batches-API ``errored`` result line, newline included."""
    return orjson.dumps(
        {
            "custom_id": custom_id,
            "result": {"type": "errored", "error": {"type": error_type, "message": message}},
        },
        option=orjson.OPT_APPEND_NEWLINE,
    )


def _result_id(raw: bytes) -> str | None:
    """The custom_id of a result line, or None if it is not one."""
    try:
        obj = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(obj, dict) or not isinstance(obj.get("result"), dict):
        return None
    custom_id = obj.get("custom_id")
    return custom_id if isinstance(custom_id, str) and custom_id else None


class Journal:
    """The output file, opened for appending after repair and a scan of what it holds."""

    __slots__ = ("_fd", "path", "written")

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None
        self.written = 0

    def open(self, table: IdTable) -> ResumeState:
        """Lock, repair and scan the file; mark every id it holds as `DONE` in `table`."""
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(fd)
            if exc.errno in (errno.EWOULDBLOCK, errno.EACCES):
                raise JournalBusy(
                    f"{self.path} is being written by another run (it holds the file's lock); "
                    "wait for it to finish or choose another -o"
                ) from None
            raise
        self._fd = fd
        repaired = self._repair_tail(fd)
        results = 0
        unreadable: list[int] = []
        with open(fd, "rb", buffering=_CHUNK, closefd=False) as f:
            f.seek(0)
            for lineno, raw in enumerate(f, start=1):
                custom_id = _result_id(raw)
                if custom_id is None:
                    unreadable.append(lineno)
                    continue
                table.set(custom_id, DONE)
                results += 1
        return ResumeState(results, repaired, tuple(unreadable))

    @staticmethod
    def _repair_tail(fd: int) -> int:
        """Make the file end with a complete line; return how many bytes were cut off.

        A last line without its newline is the trace of a write cut short. If it happens to
        be a whole result line (someone removed the newline), it is kept and terminated.
        """
        size = os.fstat(fd).st_size
        if size == 0:
            return 0
        end = size
        tail = b""
        while end > 0:
            start = max(0, end - 65536)
            chunk = os.pread(fd, end - start, start)
            cut = chunk.rfind(b"\n")
            if cut >= 0:
                tail = chunk[cut + 1 :] + tail
                keep = start + cut + 1
                break
            tail = chunk + tail
            end = start
        else:
            keep = 0
        if keep == size:
            return 0
        if _result_id(tail) is not None:
            os.write(fd, b"\n")
            return 0
        os.ftruncate(fd, keep)
        return size - keep

    def append(self, line: bytes) -> None:
        """Write one complete line with a single ``write()`` (retried if the kernel splits it)."""
        fd = self._fd
        if fd is None:
            raise RuntimeError("the journal is not open")
        view = memoryview(line)
        while view:
            n = os.write(fd, view)
            view = view[n:]
        self.written += 1

    def close(self) -> None:
        """Flush to disk and release the lock."""
        fd, self._fd = self._fd, None
        if fd is not None:
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
