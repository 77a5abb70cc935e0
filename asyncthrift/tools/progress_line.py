"""A one-line live progress bar on stderr, dependency-free.

On a terminal it redraws in place a few times a second; elsewhere (CI logs, pipes) it prints a
plain line every few seconds so logs stay readable.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import TextIO

__all__ = ["ProgressLine"]


class ProgressLine:
    """`update(done)` as often as you like; it redraws at most every `interval` seconds."""

    def __init__(
        self,
        total: int | None,
        *,
        label: str = "",
        extra: Callable[[], str] | None = None,
        stream: TextIO | None = None,
        enabled: bool = True,
        width: int = 28,
    ) -> None:
        self.total = total
        self.label = label
        self.extra = extra
        self.stream = stream or sys.stderr
        self.enabled = enabled
        self.width = width
        self.tty = self.stream.isatty()
        self.interval = 0.1 if self.tty else 5.0
        self.started = time.monotonic()
        self._last = 0.0
        self._done = 0

    def update(self, done: int, *, force: bool = False) -> None:
        self._done = done
        now = time.monotonic()
        if not self.enabled or (not force and now - self._last < self.interval):
            return
        self._last = now
        line = self.render(now)
        if self.tty:
            self.stream.write("\r\x1b[2K" + line)
        else:
            self.stream.write(line + "\n")
        self.stream.flush()

    def render(self, now: float | None = None) -> str:
        now = time.monotonic() if now is None else now
        elapsed = now - self.started
        done, total = self._done, self.total
        rate = done / elapsed if elapsed > 0 else 0.0
        if total:
            filled = int(self.width * min(1.0, done / total))
            bar = "#" * filled + "." * (self.width - filled)
            eta = (total - done) / rate if rate > 0 else float("inf")
            eta_s = f"{eta:5.1f}s" if eta != float("inf") else "  ?  "
            head = f"{self.label} [{bar}] {done}/{total} {rate:6.1f}/s eta {eta_s}"
        else:
            head = f"{self.label} {done} done {rate:6.1f}/s"
        tail = self.extra() if self.extra is not None else ""
        return f"{head} {elapsed:5.1f}s {tail}".rstrip()

    def close(self) -> None:
        if not self.enabled:
            return
        self.update(self._done, force=True)
        if self.tty:
            self.stream.write("\n")
            self.stream.flush()
