"""The progress line of ``asyncthrift run --batch``: batches and their states, not requests.

A plain run's line (`progress.ProgressBar` over `sampling` samples) counts requests and
tokens against the limits; a batch-mode run has no limits to show, only batches that stay
open for minutes to hours, so it draws its own line from the run's state.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, TextIO

from .progress import ProgressBar, format_duration, human

if TYPE_CHECKING:
    from .batchmode import BatchRun

__all__ = ["BatchProgress", "status_line"]

# the API's request_counts of a batch, in the order shown
_COUNTS = ("processing", "succeeded", "errored", "canceled", "expired")


def status_line(run: BatchRun) -> str:
    """Done/total, batches by state, their requests by the API's `request_counts` (as of
    the last poll), cost at the batch price, ETA."""
    total = run.total
    done = run.done
    parts = [f"{done:,}/{total:,}" if total else f"{done:,}/?"]
    states: dict[str, int] = {}
    counts = dict.fromkeys(_COUNTS, 0)
    for b in run.open.values():
        states[b.status] = states.get(b.status, 0) + 1
        if b.counts:
            for name in _COUNTS:
                counts[name] += b.counts.get(name, 0)
        else:  # not polled yet: all of it waits
            counts["processing"] += b.n
    parts.append(
        f"batches {run.created} created, {len(run.open)} open"
        + "".join(f" {k} {v}" for k, v in sorted(states.items()))
    )
    shown = [f"{human(v)} {k}" for k, v in counts.items() if v or k == "processing"]
    parts.append("open batches' requests: " + ", ".join(shown))
    s = run.client.stats()
    parts.append(f"${s.cost_usd:,.2f} at batch price")
    elapsed = time.monotonic() - run.started
    if total and done < total:
        pace = run.finished / elapsed if elapsed > 0 and run.finished else 0.0
        parts.append("ETA " + (format_duration((total - done) / pace) if pace else "?"))
    return " | ".join(parts)


class BatchProgress(ProgressBar):
    """The progress line of a batch-mode run, drawn from `status_line`."""

    def __init__(self, run: BatchRun, stream: TextIO, *, tty: bool, interval: float | None):
        super().__init__(stream, run.sample, tty=tty, interval=interval)
        self._run = run

    def draw(self) -> None:
        line = status_line(self._run)
        if self._tty:
            self._stream.write("\r\x1b[2K" + line[:200])
            self._drawn = True
        else:
            self._stream.write(line + "\n")
        self._stream.flush()
