"""The progress line of ``asyncthrift run --batch``: batches and their states, not requests.

A plain run's line (`progress.ProgressBar` over `sampling` samples) counts requests and
tokens against the limits; a batch-mode run has no limits to show, only batches that stay
open for minutes to hours, so it draws its own line from the run's state.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Protocol, TextIO

from .progress import ProgressBar, format_duration, human

if TYPE_CHECKING:
    from ..core.stats import Stats
    from .progress import Sample

__all__ = ["BatchProgress", "BatchRunView", "OpenBatch", "eta", "status_line"]


class OpenBatch(Protocol):
    """One open batch as the progress line reads it (`batchmode`'s record of it)."""

    @property
    def n(self) -> int: ...

    @property
    def status(self) -> str: ...

    @property
    def counts(self) -> Mapping[str, int]: ...

    @property
    def opened(self) -> float | None: ...


class _StatsSource(Protocol):
    def stats(self) -> Stats: ...


class BatchRunView(Protocol):
    """What the progress line reads of a batch-mode run (`batchmode.BatchRun`), so this
    module does not depend on the run that draws it."""

    @property
    def total(self) -> int | None: ...

    @property
    def done(self) -> int: ...

    @property
    def started(self) -> float: ...

    @property
    def created(self) -> int: ...

    @property
    def ended_seconds(self) -> float: ...

    @property
    def ended_requests(self) -> int: ...

    @property
    def open(self) -> Mapping[str, OpenBatch]: ...

    @property
    def client(self) -> _StatsSource: ...

    def sample(self) -> Sample: ...


# the API's request_counts of a batch, in the order shown
_COUNTS = ("processing", "succeeded", "errored", "canceled", "expired")


def status_line(run: BatchRunView, now: float | None = None) -> str:
    """Done/total, batches by state, their requests by the API's `request_counts` (as of
    the last poll), cost at the batch price, ETA (see `eta`; `now`: `time.monotonic()`)."""
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
    if total and done < total:
        left = eta(run, time.monotonic() if now is None else now)
        parts.append("ETA " + ("?" if left is None else format_duration(left)))
    return " | ".join(parts)


def eta(run: BatchRunView, now: float) -> float | None:
    """Seconds until the open batches (and the lines not yet submitted) should have ended,
    or None before any batch of this run has ended (nothing to go by).

    Why not lines done over time elapsed, as a plain run: a batch's results all arrive when
    it ends, so while batches process nothing finishes, and that pace falls and its ETA
    climbs for as long as they run. Instead each open batch is expected to end at its
    creation plus its requests at the pace this run's ended batches took (seconds per
    request), so between ends the ETA counts down with the clock, and it is revised only
    when a batch ends (new evidence) or a new one is created.
    """
    if run.ended_requests <= 0:
        return None
    per_request = run.ended_seconds / run.ended_requests
    ends = [
        (b.opened if b.opened is not None else run.started) + per_request * b.n
        for b in run.open.values()
    ]
    unsubmitted = (run.total or 0) - run.done - sum(b.n for b in run.open.values())
    if unsubmitted > 0:  # still being read: they go in a batch created about now
        ends.append(now + per_request * unsubmitted)
    return max(0.0, max(ends, default=now) - now)


class BatchProgress(ProgressBar):
    """The progress line of a batch-mode run, drawn from `status_line`."""

    def __init__(self, run: BatchRunView, stream: TextIO, *, tty: bool, interval: float | None):
        super().__init__(stream, run.sample, tty=tty, interval=interval)
        self._run = run
        self._final_drawn = False

    def draw(self) -> None:
        run = self._run
        total = run.total
        final = total is not None and total > 0 and run.done >= total
        if final and self._final_drawn:
            return  # the final line is drawn once, however long the run takes to stop
        self._final_drawn = final
        line = status_line(run)
        if self._tty:
            self._stream.write("\r\x1b[2K" + line[:200])
            self._drawn = True
        else:
            self._stream.write(line + "\n")
        self._stream.flush()
