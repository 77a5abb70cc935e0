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
from typing import Any, Final

import orjson

from .idset import IdTable

__all__ = [
    "API_ERROR_TYPES",
    "Journal",
    "JournalBusy",
    "OutputUnusable",
    "ResumeState",
    "api_error_type",
    "errored_line",
    "succeeded_line",
]

#: The state an id has in the runner's table once the output holds its result.
DONE = 1
#: The state of an id whose final result is ``errored`` (or ``expired``/``canceled``): done
#: for a plain run, to send again for ``--retry-errored``. A ``succeeded`` line anywhere
#: makes an id `DONE` for good, so a succeeded request is never sent again.
ERRORED = 4

#: Result types that ``--retry-errored`` sends again.
RETRYABLE_RESULTS = frozenset({"errored", "expired", "canceled"})

_CHUNK = 1 << 20


class JournalBusy(RuntimeError):
    """Another process is writing to the same output file."""


class OutputUnusable(Exception):
    """The output cannot be the journal (not writable, no such directory, the input itself);
    found before anything is sent. The message says what to change."""


@dataclass(frozen=True, slots=True)
class ResumeState:
    """What `Journal.open` found in an existing output file."""

    results: int
    """Result lines already present (their ids are marked `DONE` in the table)."""
    repaired_bytes: int
    """Bytes of a torn last line that were cut off (0 if the file ended cleanly)."""
    unreadable: tuple[int, ...]
    """Line numbers of complete lines that are not result lines (left as they are)."""
    errored: int = 0
    """Ids whose final result is errored, expired or canceled (state `ERRORED`)."""


def succeeded_line(custom_id: str, message: dict[str, Any]) -> bytes:
    """A Batches-API ``succeeded`` result line, newline included."""
    return orjson.dumps(
        {"custom_id": custom_id, "result": {"type": "succeeded", "message": message}},
        option=orjson.OPT_APPEND_NEWLINE,
    )


#: The error types a Batches-API errored result may carry (the SDK's ``ErrorObject`` union).
API_ERROR_TYPES: Final = frozenset(
    {
        "invalid_request_error",
        "authentication_error",
        "billing_error",
        "permission_error",
        "not_found_error",
        "rate_limit_error",
        "timeout_error",
        "api_error",
        "overloaded_error",
    }
)
#: The error type of an HTTP status, for an error that did not name one the API knows.
_TYPE_OF_STATUS: Final = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "billing_error",
    403: "permission_error",
    404: "not_found_error",
    413: "invalid_request_error",
    429: "rate_limit_error",
    504: "timeout_error",
    529: "overloaded_error",
}


def api_error_type(error_type: str, status: int | None = None) -> str:
    """`error_type` if the Batches API's errored results can carry it, else the one they
    would for the same failure (by `status`, else ``invalid_request_error`` for a 4xx or a
    request refused before it was sent, ``api_error`` for the rest)."""
    if error_type in API_ERROR_TYPES:
        return error_type
    if status is not None:
        if status in _TYPE_OF_STATUS:
            return _TYPE_OF_STATUS[status]
        return "invalid_request_error" if 400 <= status < 500 else "api_error"
    return "invalid_request_error"


def errored_line(
    custom_id: str,
    error_type: str,
    message: str,
    *,
    status: int | None = None,
    request_id: str | None = None,
) -> bytes:
    """A Batches-API ``errored`` result line, newline included.

    Shaped as the API writes it (``anthropic.types.messages.MessageBatchIndividualResponse``):
    the result's ``error`` is an error *response* wrapping the error object,
    ``{"type": "error", "error": {"type": ..., "message": ...}}``. An `error_type` the API's
    results never carry (``request_too_large``, ``http_<status>``) is written as the type
    they would (see `api_error_type`), and kept at the head of the message.
    """
    kind = api_error_type(error_type, status)
    if kind != error_type:
        message = f"{error_type}: {message}"
    response: dict[str, Any] = {"type": "error", "error": {"type": kind, "message": message}}
    if request_id is not None:
        response["request_id"] = request_id
    return orjson.dumps(
        {"custom_id": custom_id, "result": {"type": "errored", "error": response}},
        option=orjson.OPT_APPEND_NEWLINE,
    )


def _result(raw: bytes) -> tuple[str, object] | None:
    """(custom_id, result type) of a result line, or None if it is not one."""
    try:
        obj = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(obj, dict):
        return None
    result = obj.get("result")
    if not isinstance(result, dict):
        return None
    custom_id = obj.get("custom_id")
    if not isinstance(custom_id, str) or not custom_id:
        return None
    return custom_id, result.get("type")


def _result_id(raw: bytes) -> str | None:
    """The custom_id of a result line, or None if it is not one."""
    found = _result(raw)
    return None if found is None else found[0]


def _unusable(path: Path, exc: OSError) -> OutputUnusable:
    """A clear `OutputUnusable` for an `OSError` met opening `path`."""
    parent = path.parent
    if isinstance(exc, FileNotFoundError) or not parent.is_dir():
        why = f"its directory {parent} does not exist: create it or choose another -o"
    elif isinstance(exc, PermissionError):
        why = (
            "permission denied (a read-only file, or a directory you cannot write to): "
            "make it writable or choose another -o"
        )
    elif isinstance(exc, IsADirectoryError):
        why = "it is a directory: give a file name"
    else:
        why = exc.strerror or str(exc)
    return OutputUnusable(f"cannot write the output {path}: {why}")


def _same_file(fd: int, other: Path) -> bool:
    """Whether the open file `fd` is `other` (device and inode: links and paths alike)."""
    try:
        theirs = os.stat(other)
    except OSError:
        return False
    mine = os.fstat(fd)
    return (mine.st_dev, mine.st_ino) == (theirs.st_dev, theirs.st_ino)


class Journal:
    """The output file, opened for appending after repair and a scan of what it holds."""

    __slots__ = ("_fd", "path", "written")

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None
        self.written = 0

    def open(self, table: IdTable, *, source: Path | None = None) -> ResumeState:
        """Lock, repair and scan the file; mark the ids it holds in `table`.

        An id is `DONE` once any of its lines is ``succeeded``; otherwise its last line
        decides: ``errored``/``expired``/``canceled`` make it `ERRORED` (a later line for the
        same id, written by ``--retry-errored``, supersedes an earlier one). Raises
        `OutputUnusable` if the file cannot be opened for writing or is `source` itself (the
        same file under another name or a hard link), before touching it.
        """
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o644)
        except OSError as exc:
            raise _unusable(self.path, exc) from None
        try:
            if source is not None and _same_file(fd, source):
                raise OutputUnusable(
                    f"the output {self.path} is the input file {source} (the same file under "
                    "another name or a hard link): the run would append results to its own "
                    "input; choose another -o"
                )
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(fd)
            if exc.errno in (errno.EWOULDBLOCK, errno.EACCES):
                raise JournalBusy(
                    f"{self.path} is being written by another run (it holds the file's lock); "
                    "wait for it to finish or choose another -o"
                ) from None
            raise
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd
        repaired = self._repair_tail(fd)
        results = 0
        errored = 0
        unreadable: list[int] = []
        with open(fd, "rb", buffering=_CHUNK, closefd=False) as f:
            f.seek(0)
            for lineno, raw in enumerate(f, start=1):
                found = _result(raw)
                if found is None:
                    unreadable.append(lineno)
                    continue
                custom_id, kind = found
                results += 1
                if kind in RETRYABLE_RESULTS:
                    before = table.get(custom_id)
                    if before != DONE:  # a succeeded line stands whatever follows it
                        table.set(custom_id, ERRORED)
                        errored += before != ERRORED
                elif table.set(custom_id, DONE) == ERRORED:
                    errored -= 1
        return ResumeState(results, repaired, tuple(unreadable), errored)

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
